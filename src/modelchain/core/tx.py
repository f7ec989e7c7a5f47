"""Transactions and log entries: their schema, limits and canonical bytes.

A transaction is a DSSE envelope whose payload is canonical JSON
``{v, ledger, type, actor, nonce, time, body}``, plus ``not_before`` and
``expires`` when it carries an explicit validity window; a log entry is canonical JSON
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
    ValidityWindowError,
)
from . import canonical
from .dsse import Envelope, sign_envelope
from .identity import Signer
from .times import human_duration, rfc3339

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
_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: a window ends by then
# An explicit validity window: both fields or neither (without them a
# transaction encodes exactly as before they existed).
_WINDOW = frozenset({"not_before", "expires"})


@dataclass(frozen=True)
class Transaction:
    ledger: str
    type: str
    actor: str
    nonce: str
    time: int  # milliseconds since the Unix epoch, UTC
    body: dict[str, Any] = field(default_factory=dict)
    v: int = TX_VERSION
    # The validity window, milliseconds like ``time``: when set, admission
    # accepts the transaction while the node's clock is within
    # [not_before, expires] instead of within the skew of ``time``.
    not_before: int | None = None
    expires: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self)

    @property
    def window(self) -> tuple[int, int] | None:
        """``(not_before, expires)``, or None: the skew around ``time`` applies."""
        if self.not_before is None or self.expires is None:
            return None
        return self.not_before, self.expires

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "v": self.v,
            "ledger": self.ledger,
            "type": self.type,
            "actor": self.actor,
            "nonce": self.nonce,
            "time": self.time,
            "body": self.body,
        }
        if self.window is not None:
            obj["not_before"], obj["expires"] = self.window
        return obj

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
        wanted = _FIELDS | _WINDOW if _WINDOW & set(obj) else _FIELDS
        if set(obj) != wanted:
            missing = sorted(wanted - set(obj))
            extra = sorted(set(obj) - wanted)
            raise MalformedError(f"transaction fields wrong: missing {missing}, unexpected {extra}")
        return cls(
            ledger=obj["ledger"],
            type=obj["type"],
            actor=obj["actor"],
            nonce=obj["nonce"],
            time=obj["time"],
            body=obj["body"],
            v=obj["v"],
            not_before=obj.get("not_before"),
            expires=obj.get("expires"),
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
    if (tx.not_before is None) != (tx.expires is None):
        raise MalformedError("a validity window has both not_before and expires, or neither")
    for bound in (tx.not_before, tx.expires):
        if bound is not None and (not _is_int(bound) or not 0 <= bound <= _LAST_MS):
            raise MalformedError(
                "not_before and expires must be integer milliseconds since the epoch, "
                "at most the end of year 9999"
            )
    window = tx.window
    if window is not None and window[0] > window[1]:
        raise MalformedError("the validity window ends (expires) before it starts (not_before)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def check_time(tx: Transaction, now_ms: int, skew_ms: int, max_window_ms: int) -> None:
    """Refuse a transaction whose time is outside ``now +- skew`` (replay
    window). One with a validity window lives from the earlier of its time and
    ``not_before`` to ``expires``: refuse it if that is longer than
    ``max_window_ms`` (the ledger's governance sets it), if it was made after
    it expired, or if ``now`` is not within the window, give or take ``skew``."""
    window = tx.window
    if window is not None:
        not_before, expires = window
        if tx.time > expires + skew_ms:
            # ``time`` orders history and the audit trail: when it was made.
            raise ValidityWindowError(
                f"the transaction's time ({_when(tx.time)}) is after it expires "
                f"({rfc3339(expires)})"
            )
        start = min(tx.time, not_before)
        if expires - start > max_window_ms:
            since = "its time" if tx.time < not_before else "not_before"
            raise ValidityWindowError(
                f"the transaction's validity window is {human_duration(expires - start)} "
                f"(from {since} to expires); this ledger allows at most "
                f"{human_duration(max_window_ms)} (its admins raise it with "
                "`modelchain governance validity`)"
            )
        if now_ms + skew_ms < not_before:
            raise ClockSkewError(
                f"the transaction is valid from {rfc3339(not_before)}, "
                f"{human_duration(not_before - now_ms)} from now (submit it then)"
            )
        if now_ms - skew_ms > expires:
            raise ClockSkewError(
                f"the transaction expired at {rfc3339(expires)}, "
                f"{human_duration(now_ms - expires)} ago: draft and sign it again"
            )
        return
    if abs(tx.time - now_ms) > skew_ms:
        direction = "in the future" if tx.time > now_ms else "in the past"
        raise ClockSkewError(
            f"transaction time is {abs(tx.time - now_ms) / 1000:.1f}s {direction}; "
            f"the window is +-{skew_ms / 1000:.1f}s (check the signer's clock)"
        )


def _when(ms: int) -> str:
    # ``time`` has no upper bound (it never needed one): past year 9999, the number.
    return rfc3339(ms) if ms <= _LAST_MS else f"{ms} ms since the epoch"


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
