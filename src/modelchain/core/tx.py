"""Transactions and log entries: their schema, limits and canonical bytes.

A transaction is a DSSE envelope whose payload is canonical JSON
``{v, ledger, type, actor, nonce, time, body}``; a log entry is canonical JSON
``{index, envelope, outcome}`` and its leaf hash is the RFC 9162 leaf hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ClockSkewError,
    MalformedError,
    OversizeError,
    PayloadTypeError,
)
from . import canonical
from .dsse import Envelope, sign_envelope
from .identity import Signer

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_ENVELOPE_BYTES",
    "MAX_NESTING",
    "PAYLOAD_TYPE",
    "TX_VERSION",
    "LogEntry",
    "Outcome",
    "Transaction",
    "check_nesting",
    "check_time",
    "decode_submission",
    "encode_entry",
]

PAYLOAD_TYPE = "application/vnd.modelchain.tx+json"
TX_VERSION = 1
# A submitted envelope is at most 64 KiB; the entry that wraps it must still fit
# the 65,535-byte limit of a tlog-tiles entry bundle, so the envelope limit
# leaves room for the index and the outcome.
MAX_ENVELOPE_BYTES = 64 * 1024 - 1024
MAX_ENTRY_BYTES = 65535
MAX_REASON_CHARS = 300
# Arrays and objects in a body nest at most this deep (the body itself is level
# 1). Checked at admission only: entries logged before the limit still verify.
MAX_NESTING = 64

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
_TYPE = re.compile(r"[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+\Z")
_ACTOR = re.compile(r"[A-Za-z0-9._@-]{1,128}\Z")
_ORIGIN = re.compile(r"[\x21-\x7e]{1,255}\Z")
_FIELDS = frozenset({"v", "ledger", "type", "actor", "nonce", "time", "body"})


@dataclass(frozen=True)
class Transaction:
    ledger: str
    type: str
    actor: str
    nonce: str
    time: int  # milliseconds since the Unix epoch, UTC
    body: dict[str, Any] = field(default_factory=dict)
    v: int = TX_VERSION

    def __post_init__(self) -> None:
        _check_fields(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "ledger": self.ledger,
            "type": self.type,
            "actor": self.actor,
            "nonce": self.nonce,
            "time": self.time,
            "body": self.body,
        }

    def payload(self) -> bytes:
        return canonical.dumps(self.to_json())

    def sign(self, *signers: Signer) -> Envelope:
        """A DSSE envelope of this transaction signed by every signer given."""
        payload = self.payload()
        _check_payload_nesting(payload, self.body)
        env = sign_envelope(PAYLOAD_TYPE, payload, signers)
        if len(env.to_bytes()) > MAX_ENVELOPE_BYTES:
            raise OversizeError(f"transaction is larger than {MAX_ENVELOPE_BYTES} bytes signed")
        return env

    @classmethod
    def from_json(cls, obj: object) -> Transaction:
        if not isinstance(obj, dict):
            raise MalformedError("transaction payload must be a JSON object")
        if set(obj) != _FIELDS:
            missing = sorted(_FIELDS - set(obj))
            extra = sorted(set(obj) - _FIELDS)
            raise MalformedError(f"transaction fields wrong: missing {missing}, unexpected {extra}")
        return cls(
            ledger=obj["ledger"],
            type=obj["type"],
            actor=obj["actor"],
            nonce=obj["nonce"],
            time=obj["time"],
            body=obj["body"],
            v=obj["v"],
        )


def _check_fields(tx: Transaction) -> None:
    if tx.v != TX_VERSION or isinstance(tx.v, bool):
        raise MalformedError(f"unsupported transaction version {tx.v!r}")
    for name, rx in (("ledger", _ORIGIN), ("type", _TYPE), ("actor", _ACTOR), ("nonce", _NONCE)):
        value = getattr(tx, name)
        if not isinstance(value, str) or not rx.match(value):
            raise MalformedError(f"transaction {name} {value!r} is not valid")
    if not isinstance(tx.time, int) or isinstance(tx.time, bool) or tx.time < 0:
        raise MalformedError("transaction time must be non-negative integer milliseconds")
    if not isinstance(tx.body, dict):
        raise MalformedError("transaction body must be a JSON object")


def check_nesting(body: dict[str, Any]) -> None:
    """Refuse a body whose arrays and objects nest deeper than MAX_NESTING."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, level = stack.pop()
        if level > MAX_NESTING:
            raise MalformedError(
                f"the transaction body nests deeper than {MAX_NESTING} levels of arrays and objects"
            )
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))


def _check_payload_nesting(payload: bytes, body: dict[str, Any]) -> None:
    # Nesting cannot exceed the number of opening brackets (those inside
    # strings only make this count larger), so most bodies need no walk.
    if payload.count(b"{") + payload.count(b"[") > MAX_NESTING:
        check_nesting(body)


def check_time(tx: Transaction, now_ms: int, skew_ms: int) -> None:
    """Refuse a transaction whose time is outside ``now +- skew`` (replay window)."""
    if abs(tx.time - now_ms) > skew_ms:
        direction = "in the future" if tx.time > now_ms else "in the past"
        raise ClockSkewError(
            f"transaction time is {abs(tx.time - now_ms) / 1000:.1f}s {direction}; "
            f"the window is +-{skew_ms / 1000:.1f}s (check the signer's clock)"
        )


def decode_submission(data: bytes) -> tuple[Envelope, Transaction]:
    """Statically check a submitted envelope: size, JSON, payloadType, base64,
    canonical payload and transaction schema. Signatures are checked later,
    against ledger state."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise OversizeError(f"envelope is {len(data)} bytes; the limit is {MAX_ENVELOPE_BYTES}")
    env = Envelope.from_bytes(data)
    if env.payload_type != PAYLOAD_TYPE:
        raise PayloadTypeError(f"payloadType {env.payload_type!r} is not {PAYLOAD_TYPE!r}")
    tx = Transaction.from_json(canonical.loads_canonical(env.payload))
    _check_payload_nesting(env.payload, tx.body)
    return env, tx


@dataclass(frozen=True)
class Outcome:
    """What executing a transaction did: accepted (with a note when the contract
    did more than asked, e.g. an automatic rollback), or rejected with a reason
    code and a reason."""

    accepted: bool
    code: str = ""
    reason: str = ""

    @classmethod
    def ok(cls) -> Outcome:
        return _ACCEPTED

    @classmethod
    def rejected(cls, code: str, reason: str) -> Outcome:
        return cls(False, code, reason[:MAX_REASON_CHARS])

    @classmethod
    def noted(cls, note: str) -> Outcome:
        return cls(True, "", note[:MAX_REASON_CHARS]) if note else _ACCEPTED

    def to_json(self) -> dict[str, str]:
        if self.accepted:
            return (
                {"result": "accepted", "reason": self.reason}
                if self.reason
                else {"result": "accepted"}
            )
        return {"result": "rejected", "code": self.code, "reason": self.reason}

    @classmethod
    def from_json(cls, obj: object) -> Outcome:
        if obj == {"result": "accepted"}:
            return _ACCEPTED
        if (
            isinstance(obj, dict)
            and set(obj) == {"result", "reason"}
            and obj["result"] == "accepted"
            and isinstance(obj["reason"], str)
            and obj["reason"]
        ):
            return cls(True, "", obj["reason"])
        if (
            isinstance(obj, dict)
            and set(obj) == {"result", "code", "reason"}
            and obj["result"] == "rejected"
            and isinstance(obj["code"], str)
            and isinstance(obj["reason"], str)
        ):
            return cls(False, obj["code"], obj["reason"])
        raise MalformedError(f"bad outcome {obj!r}")


_ACCEPTED = Outcome(True)


def encode_entry(index: int, envelope: Envelope, outcome: Outcome) -> bytes:
    data = canonical.dumps(
        {"index": index, "envelope": envelope.to_json(), "outcome": outcome.to_json()}
    )
    if len(data) > MAX_ENTRY_BYTES:
        raise OversizeError(f"log entry would be {len(data)} bytes; the limit is {MAX_ENTRY_BYTES}")
    return data


@dataclass(frozen=True)
class LogEntry:
    index: int
    envelope: Envelope
    outcome: Outcome
    transaction: Transaction

    @classmethod
    def decode(cls, data: bytes) -> LogEntry:
        """Parse stored entry bytes, which must be canonical."""
        obj = canonical.loads_canonical(data)
        if not isinstance(obj, dict) or set(obj) != {"index", "envelope", "outcome"}:
            raise MalformedError("a log entry is {index, envelope, outcome}")
        index = obj["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MalformedError("entry index must be a non-negative integer")
        env = Envelope.from_json(obj["envelope"])
        if env.payload_type != PAYLOAD_TYPE:
            raise PayloadTypeError(f"entry payloadType {env.payload_type!r}")
        tx = Transaction.from_json(canonical.loads_canonical(env.payload))
        return cls(index, env, Outcome.from_json(obj["outcome"]), tx)

    def to_json(self) -> dict[str, Any]:
        """A readable form: the decoded transaction beside the envelope."""
        return {
            "index": self.index,
            "outcome": self.outcome.to_json(),
            "transaction": self.transaction.to_json(),
            "signatures": [s.keyid for s in self.envelope.signatures],
        }


def signer_key_ids(env: Envelope) -> Iterable[str]:
    return (s.keyid for s in env.signatures)
