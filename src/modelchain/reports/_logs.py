"""EU AI Act Article 12 record-keeping export: the ledger's entries in a time
range as JSON Lines, each with its exact bytes and an inclusion proof against
one checkpoint (written once, as the first line), and the offline check of it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..core.b64 import b64
from ..core.checkpoint import Checkpoint
from ..core.identity import VerifierKey
from ..core.merkle import leaf_hash
from ..core.policy import CheckpointPolicy, as_policy
from ..errors import MalformedError, ProofError, UsageError
from ._evidence import Evidence, check_cited, open_ref, rfc3339

if TYPE_CHECKING:
    from ..ledger.ledger import Ledger

__all__ = ["LOGS_FORMAT", "LogsCheck", "export_logs", "verify_logs"]

LOGS_FORMAT = "modelchain.dev/logs/v1"


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def export_logs(led: Ledger, start_ms: int | None, end_ms: int | None, out: IO[str]) -> int:
    """Write every entry whose transaction time lies in ``[start_ms, end_ms]``
    (inclusive; None is open) and that the current checkpoint covers; return
    how many entries were written.

    The first line (``"kind": "checkpoint"``) is the signed checkpoint every
    proof is against; each further line (``"kind": "entry"``) carries the
    entry's index, type, actor, time, body, outcome, signing key ids, leaf hash,
    exact bytes (base64) and C2SP tlog-proof."""
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise UsageError(
            f"the range starts ({rfc3339(start_ms)}) after it ends ({rfc3339(end_ms)})"
        )
    ev = Evidence(led)
    ref = ev.ref
    out.write(
        _line(
            {
                "kind": "checkpoint",
                "format": LOGS_FORMAT,
                "origin": ref.origin,
                "size": ref.size,
                "root": ref.root,
                "note": ref.note,
                "log_key": ref.log_key,
                **({} if ref.policy is None else {"policy": ref.policy}),
                "from_ms": start_ms,
                "to_ms": end_ms,
                "from": None if start_ms is None else rfc3339(start_ms),
                "to": None if end_ms is None else rfc3339(end_ms),
            }
        )
    )
    written = 0
    # Transaction times are only roughly ordered (a skew window), so the whole
    # log is scanned rather than searched.
    for data, entry in ev.scan():
        tx = entry.transaction
        if (start_ms is not None and tx.time < start_ms) or (
            end_ms is not None and tx.time > end_ms
        ):
            continue
        out.write(
            _line(
                {
                    "kind": "entry",
                    "index": entry.index,
                    "type": tx.type,
                    "actor": tx.actor,
                    "time": rfc3339(tx.time),
                    "time_ms": tx.time,
                    "body": tx.body,
                    "outcome": entry.outcome.to_json(),
                    "signatures": [s.keyid for s in entry.envelope.signatures],
                    "leaf_hash": leaf_hash(data).hex(),
                    "entry": b64(data),
                    "proof": ev.tlog_proof(entry.index).to_text(),
                }
            )
        )
        written += 1
    return written


@dataclass(frozen=True)
class LogsCheck:
    """What a verified export holds."""

    checkpoint: Checkpoint
    entries: int
    start_ms: int | None
    end_ms: int | None


def _parse(text: str, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise MalformedError(f"line {number} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedError(f"line {number} is not a JSON object")
    return obj


def verify_logs(lines: Iterable[str], log_key: CheckpointPolicy | VerifierKey | str) -> LogsCheck:
    """Check an ``export_logs`` file offline: the checkpoint's signature, and for
    every line that its fields are those of its entry bytes, that the bytes hash
    to the leaf hash, that the proof includes it in that checkpoint, and that its
    time is in the declared range. Raises (SignatureError, ProofError,
    MalformedError) at the first fault; completeness (that no entry in the range
    was left out) needs the log itself."""
    policy = as_policy(log_key)
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise MalformedError("the export is empty: its first line must be the checkpoint")
    head = _parse(first, 1)
    if head.get("kind") != "checkpoint" or head.get("format") != LOGS_FORMAT:
        raise MalformedError(f"line 1 must be the checkpoint of a {LOGS_FORMAT} export")
    note, cp = open_ref(head, policy, "line 1")
    start, end = head.get("from_ms"), head.get("to_ms")
    count, last = 0, -1
    for number, text in enumerate(it, start=2):
        if not text.strip():
            continue
        line = _parse(text, number)
        if line.get("kind") != "entry":
            raise MalformedError(f"line {number} is not an entry line")
        where = f"line {number}"
        entry = check_cited(line, where, note, cp)
        tx = entry.transaction
        if line.get("body") != tx.body:
            raise ProofError(f"{where}: its body is not the one in its entry bytes")
        if (start is not None and tx.time < start) or (end is not None and tx.time > end):
            raise ProofError(f"{where}: entry {entry.index} is outside the exported range")
        if entry.index <= last:
            raise ProofError(f"{where}: entry {entry.index} is out of order or repeated")
        last = entry.index
        count += 1
    return LogsCheck(cp, count, start, end)
