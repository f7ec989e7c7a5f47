"""EU AI Act Article 12 record-keeping export: the ledger's entries in a time
range as JSON Lines, each with its exact bytes and an inclusion proof against
one checkpoint (written once, as the first line), and the offline check of it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..core.checkpoint import Checkpoint, open_checkpoint
from ..core.identity import VerifierKey
from ..core.merkle import leaf_hash, verify_inclusion
from ..core.receipt import InclusionReceipt
from ..core.tx import LogEntry
from ..errors import Error, MalformedError, ProofError, UsageError
from ._evidence import Evidence, rfc3339

if TYPE_CHECKING:
    from ..ledger import Ledger

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
                    "entry": base64.b64encode(data).decode("ascii"),
                    "proof": ev.receipt(entry.index).to_text(),
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


def verify_logs(lines: Iterable[str], log_key: VerifierKey | str) -> LogsCheck:
    """Check an ``export_logs`` file offline: the checkpoint's signature, and for
    every line that its fields are those of its entry bytes, that the bytes hash
    to the leaf hash, that the proof includes it in that checkpoint, and that its
    time is in the declared range. Raises (SignatureError, ProofError,
    MalformedError) at the first fault; completeness (that no entry in the range
    was left out) needs the log itself."""
    key = VerifierKey.from_string(log_key) if isinstance(log_key, str) else log_key
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise MalformedError("the export is empty: its first line must be the checkpoint")
    head = _parse(first, 1)
    if head.get("kind") != "checkpoint" or head.get("format") != LOGS_FORMAT:
        raise MalformedError(f"line 1 must be the checkpoint of a {LOGS_FORMAT} export")
    note = str(head.get("note", "")).encode("utf-8")
    cp, _ = open_checkpoint(note, key)
    if (head.get("size"), head.get("origin")) != (cp.size, cp.origin):
        raise ProofError("line 1 states another size or origin than its signed checkpoint")
    start, end = head.get("from_ms"), head.get("to_ms")
    count, last = 0, -1
    for number, text in enumerate(it, start=2):
        if not text.strip():
            continue
        line = _parse(text, number)
        try:
            _check_line(line, number, note, cp, start, end)
        except (KeyError, TypeError, binascii.Error) as exc:
            raise MalformedError(f"line {number} is not an entry line: {exc!r}") from exc
        if line["index"] <= last:
            raise ProofError(f"line {number}: entry {line['index']} is out of order or repeated")
        last = line["index"]
        count += 1
    return LogsCheck(cp, count, start, end)


def _check_line(
    line: dict[str, Any],
    number: int,
    note: bytes,
    cp: Checkpoint,
    start: int | None,
    end: int | None,
) -> None:
    if line.get("kind") != "entry":
        raise MalformedError(f"line {number} is not an entry line")
    data = base64.b64decode(line["entry"], validate=True)
    leaf = leaf_hash(data)
    if leaf.hex() != line["leaf_hash"]:
        raise ProofError(f"line {number}: the entry bytes do not hash to its leaf hash")
    try:
        entry = LogEntry.decode(data)
    except Error as exc:
        raise ProofError(f"line {number}: the entry bytes are not a log entry: {exc}") from exc
    tx = entry.transaction
    stated = {
        "index": entry.index,
        "type": tx.type,
        "actor": tx.actor,
        "time_ms": tx.time,
        "body": tx.body,
        "outcome": entry.outcome.to_json(),
    }
    for name, value in stated.items():
        if line[name] != value:
            raise ProofError(f"line {number}: its {name} is not the one in its entry bytes")
    if tx.ledger != cp.origin:
        raise ProofError(f"line {number}: entry {entry.index} belongs to ledger {tx.ledger}")
    if (start is not None and tx.time < start) or (end is not None and tx.time > end):
        raise ProofError(f"line {number}: entry {entry.index} is outside the exported range")
    receipt = InclusionReceipt.from_text(line["proof"])
    if receipt.index != entry.index:
        raise ProofError(f"line {number}: the proof is for entry {receipt.index}")
    if receipt.checkpoint != note:
        raise ProofError(f"line {number}: the proof is against another checkpoint")
    if entry.index >= cp.size:
        raise ProofError(f"line {number}: entry {entry.index} is beyond the checkpoint")
    verify_inclusion(entry.index, cp.size, leaf, list(receipt.proof), cp.root)
