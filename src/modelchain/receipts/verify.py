"""Offline checks of inference receipts and reveals: the record is in its batch, the batch
entry is in the log under a signed checkpoint, and a revealed value matches its salted
hash. Pure: values in, a record out or a ProofError (MalformedError for unreadable input).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..contracts.types import INFERENCE_BATCH
from ..core import canonical
from ..core.b64 import b64, unb64
from ..core.identity import VerifierKey
from ..core.merkle import leaf_hash, verify_inclusion
from ..core.policy import CheckpointPolicy, as_policy, verify_checkpoint
from ..core.tlogproof import TlogProof, verify_tlog_proof
from ..core.tx import LogEntry
from ..errors import MalformedError, ProofError
from .encoding import RECEIPT_VERSION, SALT_SIZE, decode_value, encode_value

__all__ = ["reveal", "verify_inference_receipt", "verify_reveal"]

_sha = hashlib.sha256


def _hex(text: object, what: str, size: int) -> bytes:
    try:
        if not isinstance(text, str):
            raise ValueError
        out = bytes.fromhex(text)
    except ValueError as exc:
        raise MalformedError(f"{what} must be hex") from exc
    if len(out) != size:
        raise MalformedError(f"{what} must be {size} bytes")
    return out


def _as_receipt(receipt: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    obj = canonical.loads(receipt) if isinstance(receipt, str | bytes) else receipt
    if not isinstance(obj, Mapping) or not {"record", "batch", "ledger"} <= set(obj):
        raise MalformedError("an inference receipt has record, batch and ledger")
    return obj


def verify_inference_receipt(
    receipt: Mapping[str, Any] | str | bytes,
    log_key: CheckpointPolicy | VerifierKey | str,
    checkpoint: bytes | str | None = None,
) -> dict[str, Any]:
    """Check a receipt offline: the record is in the batch, the batch entry (accepted,
    same root, count, model, version, time range) is in the log, the checkpoint is
    accepted by ``log_key`` (a checkpoint policy, or a log key alone: its
    signature and the cosignatures the policy asks for). For a cluster, pass its
    policy: the checkpoint may carry any node's log signature, and it counts only
    once final (the quorum of node cosignatures). With ``checkpoint`` (a signed
    note the verifier trusts), the receipt's checkpoint must be that same tree.
    Returns the record.

    Raises ProofError or SignatureError (a checkpoint the policy does not accept
    names the unmet group), or MalformedError for a receipt that cannot be read."""
    policy = as_policy(log_key)
    r = _as_receipt(receipt)
    record, batch, led = r["record"], r["batch"], r["ledger"]
    if not isinstance(record, dict) or not isinstance(batch, dict) or not isinstance(led, dict):
        raise MalformedError("record, batch and ledger are objects")
    if record.get("v") != RECEIPT_VERSION:
        raise MalformedError(f"unknown record version {record.get('v')!r}")
    leaf = leaf_hash(canonical.dumps(record))
    root = _hex(batch.get("root"), "batch root", 32)
    count, index = batch.get("count"), batch.get("index_in_batch")
    if not isinstance(count, int) or not isinstance(index, int):
        raise MalformedError("batch count and index_in_batch are integers")
    path = batch.get("path")
    if not isinstance(path, list):
        raise MalformedError("batch path is a list")
    verify_inclusion(index, count, leaf, [unb64(p, "batch path hash") for p in path], root)

    entry_bytes = unb64(led.get("entry"), "ledger entry")
    entry = LogEntry.decode(entry_bytes)
    tx = entry.transaction
    if tx.type != INFERENCE_BATCH:
        raise ProofError(f"ledger entry is a {tx.type}, not {INFERENCE_BATCH}")
    if not entry.outcome.accepted:
        raise ProofError(f"the ledger rejected this batch: {entry.outcome.reason}")
    body = tx.body
    if body.get("root") != root.hex() or body.get("count") != count:
        raise ProofError("the ledger entry commits to a different batch root or count")
    if body.get("model") != record.get("model") or body.get("version") != record.get("version"):
        raise ProofError("the record's model version is not the batch's")
    t = record.get("time_ms")
    if not isinstance(t, int) or not body["first_time"] <= t <= body["last_time"]:
        raise ProofError("the record's time is outside the batch's time range")

    proof = TlogProof.from_text(str(led.get("tlog_proof", "")))
    if proof.index != led.get("entry_index") or entry.index != proof.index:
        raise ProofError("the tlog-proof is for another entry index")
    cp = verify_tlog_proof(proof, leaf_hash(entry_bytes), policy)
    if tx.ledger != cp.origin:
        raise ProofError(f"the entry is for ledger {tx.ledger}, the checkpoint is of {cp.origin}")
    if checkpoint is not None:
        trusted, _ = verify_checkpoint(checkpoint, policy)
        if (trusted.size, trusted.root) != (cp.size, cp.root):
            raise ProofError(
                f"the receipt's checkpoint (size {cp.size}) is not the given one "
                f"(size {trusted.size}); fetch a receipt for that checkpoint"
            )
    return dict(record)


def reveal(
    receipt: Mapping[str, Any] | str | bytes, inputs: Any = None, outputs: Any = None
) -> dict[str, Any]:
    """What an auditor needs to check one decision: the receipt plus the encoded
    input and/or output. Raises ProofError if a value does not match its hash."""
    r = dict(_as_receipt(receipt))
    out: dict[str, Any] = {"receipt": r}
    for name, value, salt in (("input", inputs, "salt_input"), ("output", outputs, "salt_output")):
        if value is None:
            continue
        enc = encode_value(value)
        if _sha(_hex(r.get(salt), salt, SALT_SIZE) + enc).hexdigest() != r["record"].get(
            f"{name}_hash"
        ):
            raise ProofError(f"the {name} given does not match the receipt's {name}_hash")
        out[name] = b64(enc)
    return out


def verify_reveal(
    revealed: Mapping[str, Any] | str | bytes,
    log_key: CheckpointPolicy | VerifierKey | str,
    checkpoint: bytes | str | None = None,
) -> dict[str, Any]:
    """Verify a reveal: the receipt, then each revealed value against its salted hash.
    Returns ``{"record", "input"?, "output"?}`` with values decoded."""
    obj = canonical.loads(revealed) if isinstance(revealed, str | bytes) else revealed
    if not isinstance(obj, Mapping) or "receipt" not in obj:
        raise MalformedError("a reveal holds a receipt")
    r = _as_receipt(obj["receipt"])
    record = verify_inference_receipt(r, log_key, checkpoint)
    out: dict[str, Any] = {"record": record}
    for name in ("input", "output"):
        if name not in obj:
            continue
        enc = unb64(obj[name], name)
        salt = _hex(r.get(f"salt_{name}"), f"salt_{name}", SALT_SIZE)
        if _sha(salt + enc).hexdigest() != record.get(f"{name}_hash"):
            raise ProofError(f"the revealed {name} does not match the record's {name}_hash")
        out[name] = decode_value(enc)
    return out
