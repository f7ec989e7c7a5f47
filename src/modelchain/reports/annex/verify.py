"""Checking a document offline, with only the log's verifier key; and reading
the JSON document back from its JSON or PDF rendering."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...contracts import types as tx_types
from ...core.checkpoint import Checkpoint
from ...core.identity import VerifierKey
from ...core.policy import CheckpointPolicy, as_policy
from ...core.tx import LogEntry
from ...errors import MalformedError, ProofError, UsageError
from .._evidence import check_cited, open_ref
from .model import AnnexIV

__all__ = ["AnnexCheck", "read_annex_iv", "verify_annex_iv"]


@dataclass(frozen=True)
class AnnexCheck:
    """What a verified Annex IV document holds."""

    checkpoint: Checkpoint
    model: str
    version: int
    statements: int
    entries: int


def verify_annex_iv(
    obj: Mapping[str, Any], log_key: CheckpointPolicy | VerifierKey | str
) -> AnnexCheck:
    """Check an Annex IV JSON document offline, with only the log's verifier key.

    The checkpoint must be signed by ``log_key``; every cited entry's bytes must
    hash to its leaf hash, state its own index, type, actor, time and outcome,
    and be included in that checkpoint by its tlog-proof; every statement must
    cite at least one entry and only entries the document proves; and the
    document's subject must be what its registration entry registered (the
    model's name and the version's artifact digest). The prose is not re-derived:
    a reader checks a statement against the bodies of the entries it cites.
    Raises SignatureError, ProofError or MalformedError at the first fault."""
    policy = as_policy(log_key)
    doc = AnnexIV.from_json(obj)
    note, cp = open_ref(obj["checkpoint"], policy, "the document")
    if doc.origin != cp.origin:
        raise ProofError(f"the document names ledger {doc.origin}, its checkpoint {cp.origin}")
    proven: dict[int, LogEntry] = {}
    for cited in obj["entries"]:
        entry = check_cited(cited, f"cited entry {cited['index']}", note, cp)
        if entry.index in proven:
            raise ProofError(f"entry {entry.index} is cited twice")
        proven[entry.index] = entry
    statements = 0
    for section in doc.sections:
        for st in section.statements:
            unproven = [i for i in st.entries if i not in proven]
            if not st.entries or unproven:
                raise ProofError(
                    f"section {section.number}: a {st.kind} statement cites "
                    + (f"entries {unproven} the document does not prove" if unproven else "none")
                )
            statements += 1
    _check_subject(doc, proven)
    return AnnexCheck(cp, doc.model, doc.version, statements, len(proven))


def _check_subject(doc: AnnexIV, proven: Mapping[int, LogEntry]) -> None:
    """The version the document is about was registered, under its name, with
    the artifact digest the document states."""
    subject = [
        st
        for st in doc.section("general").statements
        if st.kind == "version" and st.data.get("subject") and st.data.get("version") == doc.version
    ]
    if len(subject) != 1:
        raise ProofError(f"the document does not state its subject, version {doc.version}")
    tx = proven[subject[0].entries[0]].transaction
    body = tx.body
    artifact = body.get("artifact")
    if (
        tx.type != tx_types.MODEL_REGISTER
        or body.get("name") != doc.model
        or not isinstance(artifact, dict)
        or artifact.get("digest") != subject[0].data.get("digest")
    ):
        raise ProofError(
            f"the entry the document cites for {doc.model} version {doc.version} "
            "does not register those bytes under that name"
        )


def read_annex_iv(data: bytes) -> dict[str, Any]:
    """The JSON document in ``data``: the JSON rendering itself, or the PDF
    rendering, which carries it as the attachment ``annex-iv.json`` (the HTML
    rendering does not carry it). Raises MalformedError."""
    if data.startswith(b"%PDF-"):
        data = _pdf_attachment(data, "annex-iv.json")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise MalformedError(f"not an Annex IV JSON or PDF document: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedError("an Annex IV document is a JSON object")
    return obj


def _pdf_attachment(data: bytes, name: str) -> bytes:
    try:
        import pypdf
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # the server extra brings it
        raise UsageError(
            "reading a PDF report needs pypdf: pip install 'modelchain[server]'"
        ) from exc
    try:
        found = pypdf.PdfReader(io.BytesIO(data)).attachments.get(name, [])
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise MalformedError(f"the PDF cannot be read: {exc}") from exc
    if len(found) != 1:
        raise MalformedError(f"the PDF does not carry exactly one {name}")
    return found[0]
