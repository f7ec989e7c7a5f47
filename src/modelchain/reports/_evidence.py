"""The proofs behind a report: one pinned checkpoint, and for every entry a
report cites, its exact bytes, leaf hash and a C2SP tlog-proof against that
checkpoint; and the offline check of such a citation."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from ..core.b64 import b64
from ..core.checkpoint import Checkpoint
from ..core.merkle import leaf_hash, verify_inclusion
from ..core.policy import CheckpointPolicy, verify_checkpoint
from ..core.times import parse_time, rfc3339
from ..core.tlogproof import TlogProof
from ..core.tx import LogEntry
from ..errors import Error, MalformedError, NotFoundError, ProofError

if TYPE_CHECKING:
    from ..ledger.ledger import Ledger

__all__ = [
    "CheckpointRef",
    "CitedEntry",
    "Evidence",
    "check_cited",
    "open_ref",
    "parse_time",
    "rfc3339",
]


@dataclass(frozen=True)
class CheckpointRef:
    """The signed checkpoint a report was produced against.

    ``log_key`` is the key whose log signature the note carries. A cluster's
    notes each carry the signature of the node that served them, and count
    only with a quorum of node cosignatures: ``policy`` is then the cluster's
    checkpoint policy (tlog-policy text), which is what a reader must pin;
    None for a single-node ledger, whose output is unchanged.
    """

    origin: str
    size: int
    root: str  # base64, as in the note
    note: str  # the signed note, verbatim
    log_key: str  # the C2SP verifier key that signs it
    policy: str | None = None  # a cluster's checkpoint policy

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "note": self.note,
            "log_key": self.log_key,
        }
        if self.policy is not None:
            out["policy"] = self.policy
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CheckpointRef:
        policy = obj.get("policy")
        return cls(
            obj["origin"],
            obj["size"],
            obj["root"],
            obj["note"],
            obj["log_key"],
            None if policy is None else str(policy),
        )


@dataclass(frozen=True)
class CitedEntry:
    """A ledger entry a report cites, with its tlog-proof against the report's checkpoint."""

    index: int
    type: str
    actor: str
    time_ms: int
    outcome: Mapping[str, str]
    leaf_hash: str  # hex
    proof: str  # C2SP tlog-proof text
    entry: str  # the entry's exact bytes, base64

    @property
    def time(self) -> str:
        return rfc3339(self.time_ms)

    @property
    def link(self) -> str:
        # Relative, so that whoever hosts the report decides where entries live.
        return f"entries/{self.index}"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "actor": self.actor,
            "time": self.time,
            "time_ms": self.time_ms,
            "outcome": dict(self.outcome),
            "leaf_hash": self.leaf_hash,
            "link": self.link,
            "proof": self.proof,
            "entry": self.entry,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CitedEntry:
        return cls(
            obj["index"],
            obj["type"],
            obj["actor"],
            obj["time_ms"],
            dict(obj["outcome"]),
            obj["leaf_hash"],
            obj["proof"],
            obj["entry"],
        )


class Evidence:
    """Pins the ledger's checkpoint once, so that every proof in one report is
    against the same tree even while the ledger grows."""

    def __init__(self, led: Ledger) -> None:
        self._led = led
        self._note = led.checkpoint()
        policy = led.policy
        # Checked here, not only by the reader: a report must never carry a
        # checkpoint its own policy does not accept (for a cluster: a final one).
        result = policy.evaluate(self._note).require()
        cp = result.checkpoint
        self.checkpoint: Checkpoint = cp
        self.ref = CheckpointRef(
            cp.origin,
            cp.size,
            b64(cp.root),
            self._note.decode("utf-8"),
            result.log.to_string(),  # a cluster node's own key, not genesis's log_key
            policy.to_text() if policy.nodes else None,
        )
        self._decoded: dict[int, tuple[bytes, LogEntry]] = {}
        self._cited: dict[int, CitedEntry] = {}

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def covers(self, index: object) -> TypeGuard[int]:
        return isinstance(index, int) and 0 <= index < self.checkpoint.size

    def entry(self, index: int) -> LogEntry:
        return self._load(index)[1]

    def _load(self, index: int) -> tuple[bytes, LogEntry]:
        if not self.covers(index):
            raise NotFoundError(
                f"entry {index} is not covered by the checkpoint of size {self.size}"
            )
        found = self._decoded.get(index)
        if found is None:
            data = self._led.entry_bytes(index)
            found = (data, LogEntry.decode(data))
            self._decoded[index] = found
        return found

    def scan(self) -> Iterator[tuple[bytes, LogEntry]]:
        """Every entry the checkpoint covers, in order."""
        for _, data in self._led.store.entries(0, self.size):
            yield data, LogEntry.decode(data)

    def tlog_proof(self, index: int) -> TlogProof:
        proof = self._led.inclusion_proof(index, self.size)
        return TlogProof(index=index, proof=tuple(proof), checkpoint=self._note)

    def cite(self, index: int, data: bytes | None = None, entry: LogEntry | None = None) -> None:
        """Record that the report cites ``index``; its proof is made now."""
        if index in self._cited:
            return
        if data is None or entry is None:
            data, entry = self._load(index)
        tx = entry.transaction
        self._cited[index] = CitedEntry(
            index=index,
            type=tx.type,
            actor=tx.actor,
            time_ms=tx.time,
            outcome=entry.outcome.to_json(),
            leaf_hash=leaf_hash(data).hex(),
            proof=self.tlog_proof(index).to_text(),
            entry=b64(data),
        )

    def cited(self) -> tuple[CitedEntry, ...]:
        return tuple(self._cited[i] for i in sorted(self._cited))


# -- checking offline ------------------------------------------------------------------


def open_ref(
    head: Mapping[str, Any], policy: CheckpointPolicy, where: str
) -> tuple[bytes, Checkpoint]:
    """The signed note a report names and what it says, checked under ``policy``;
    the origin, size and root the report states beside it must be the note's."""
    note = str(head.get("note", "")).encode("utf-8")
    cp, _ = verify_checkpoint(note, policy)
    stated = (head.get("origin"), head.get("size"), head.get("root"))
    if stated != (cp.origin, cp.size, b64(cp.root)):
        raise ProofError(f"{where} states another origin, size or root than its signed checkpoint")
    return note, cp


def _stated(entry: LogEntry) -> dict[str, Any]:
    """What a citation states beside the entry bytes, as the bytes say it."""
    tx = entry.transaction
    return {
        "index": entry.index,
        "type": tx.type,
        "actor": tx.actor,
        "time_ms": tx.time,
        "outcome": entry.outcome.to_json(),
    }


def check_cited(cited: Mapping[str, Any], where: str, note: bytes, cp: Checkpoint) -> LogEntry:
    """Check one cited entry offline and return it decoded: its bytes hash to
    its leaf hash, the fields it states are those of its bytes, it belongs to
    the checkpoint's log, and its tlog-proof includes it in that checkpoint.
    Raises ProofError, or MalformedError for what is not a citation at all."""
    try:
        data = base64.b64decode(cited["entry"], validate=True)
        leaf = leaf_hash(data)
        if leaf.hex() != cited["leaf_hash"]:
            raise ProofError(f"{where}: the entry bytes do not hash to its leaf hash")
        try:
            entry = LogEntry.decode(data)
        except Error as exc:
            raise ProofError(f"{where}: the entry bytes are not a log entry: {exc}") from exc
        for name, value in _stated(entry).items():
            if cited[name] != value:
                raise ProofError(f"{where}: its {name} is not the one in its entry bytes")
        receipt = TlogProof.from_text(cited["proof"])
    except (KeyError, TypeError, binascii.Error) as exc:
        raise MalformedError(f"{where} is not a cited entry: {exc!r}") from exc
    ledger = entry.transaction.ledger
    if ledger != cp.origin:
        raise ProofError(f"{where}: entry {entry.index} belongs to ledger {ledger}")
    if receipt.index != entry.index:
        raise ProofError(f"{where}: the proof is for entry {receipt.index}")
    if receipt.checkpoint != note:
        raise ProofError(f"{where}: the proof is against another checkpoint")
    if entry.index >= cp.size:
        raise ProofError(f"{where}: entry {entry.index} is beyond the checkpoint")
    verify_inclusion(entry.index, cp.size, leaf, list(receipt.proof), cp.root)
    return entry
