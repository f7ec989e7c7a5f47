"""Personal fields (contract-set version 8 on, ADR 18): which fields of which
transaction types may hold personal data, and the rules that keep their values
off the ledger.

From version 8 such a field holds "" or a salted commitment ``{"_sd": DIGEST}``
(``core.disclosure``: an SD-JWT disclosure's digest); the value and its salt
live off the ledger, encrypted, and an erasure destroys them. Admission refuses
a value (nothing is logged); a value that reached the log anyway is rejected,
and a commitment under an earlier version is too (its nodes would show it as
text). ``record.erase`` records that committed fields of an entry are erased,
so that every reader, on every node, shows them as erased.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.disclosure import is_commitment
from ..core.tx import Transaction
from ..errors import MalformedError
from .base import BodyCheck, Call, Overlay, Rejected, TypeRule, is_int
from .state import erased_field_key
from .types import (
    ACCESS_LOG,
    ARTIFACT_ERASE,
    ARTIFACT_KEY_FETCH,
    DATASET_INGEST,
    DATASET_REGISTER,
    FL_TASK_CREATE,
    MEMBER_REVOKE,
    MODEL_APPROVE,
    MODEL_REJECT,
    MODEL_REVOKE,
    MODEL_ROLLBACK,
    RECORD_ERASE,
)
from .versions import PERSONAL_VERSION

__all__ = [
    "MAX_ERASED_FIELDS",
    "PERSONAL_FIELDS",
    "commitments_in",
    "committed_fields",
    "erase_fields",
    "personal_rules",
    "require_committed",
    "shown",
    "with_commitments",
]

# The fields of each type that may hold personal data: free text (comments,
# reasons, purposes, descriptions) and identifiers of people or sources
# (collectors, sources, batches). Everything else in a body is structure the
# contracts compute on (names, digests, numbers) and stays in the clear.
PERSONAL_FIELDS: Mapping[str, tuple[str, ...]] = {
    DATASET_REGISTER: ("source", "description"),
    DATASET_INGEST: ("source", "batch", "collected_by"),
    MODEL_APPROVE: ("comment",),
    MODEL_REJECT: ("comment",),
    MODEL_ROLLBACK: ("reason",),
    MODEL_REVOKE: ("reason",),
    MEMBER_REVOKE: ("reason",),
    ACCESS_LOG: ("purpose",),
    ARTIFACT_KEY_FETCH: ("purpose",),
    ARTIFACT_ERASE: ("reason",),
    FL_TASK_CREATE: ("description",),
    RECORD_ERASE: ("reason",),
}
MAX_ERASED_FIELDS = 64  # commitments one record.erase may name
_STANDIN = "committed"  # what a type's own check sees in place of a commitment


def with_commitments(type_: str, check: BodyCheck) -> BodyCheck:
    """``check`` that also takes a commitment wherever a personal field of ``type_``
    holds text: the type's own check sees a short non-empty text in its place."""
    fields = PERSONAL_FIELDS.get(type_, ())
    if not fields:
        return check

    def checked(body: Mapping[str, Any]) -> None:
        if any(is_commitment(body.get(f)) for f in fields):
            body = {
                k: (_STANDIN if k in fields and is_commitment(v) else v) for k, v in body.items()
            }
        check(body)

    return checked


def committed_fields(tx: Transaction) -> dict[str, str]:
    """The digests of the committed fields of ``tx``: {field: digest}."""
    return {
        f: tx.body[f]["_sd"]
        for f in PERSONAL_FIELDS.get(tx.type, ())
        if is_commitment(tx.body.get(f))
    }


def require_committed(tx: Transaction, version: int) -> None:
    """MalformedError unless the personal fields of ``tx`` are as ``version`` wants:
    "" or a commitment from version 8 on, never a commitment before it."""
    fields = PERSONAL_FIELDS.get(tx.type, ())
    if version >= PERSONAL_VERSION:
        plain = [f for f in fields if isinstance(tx.body.get(f), str) and tx.body[f] != ""]
        if plain:
            raise MalformedError(
                f"{tx.type}: {', '.join(plain)} may hold personal data and must be a salted "
                f'commitment {{"_sd": DIGEST}} on this ledger (contract-set version {version}), '
                "not text: modelchain's SDK and CLI commit them for you (upgrade modelchain)"
            )
    elif any(is_commitment(tx.body.get(f)) for f in fields):
        raise MalformedError(
            f"{tx.type}: committed fields need contract-set version {PERSONAL_VERSION}; "
            f"this ledger runs {version}"
        )


def commitments_in(value: object) -> list[str]:
    """The digests of every commitment in ``value`` (any JSON), in order."""
    if is_commitment(value):
        return [value["_sd"]]
    if isinstance(value, dict):
        return [d for v in value.values() for d in commitments_in(v)]
    if isinstance(value, list):
        return [d for v in value for d in commitments_in(v)]
    return []


def erase_fields(state: Overlay, call: Call, entry: int, digests: list[str], reason: Any) -> int:
    """Record the erasure of the committed fields ``digests`` of entry ``entry`` (those
    not erased already); how many were new."""
    record = {
        "entry": entry,
        "reason": reason,
        "by": call.tx.actor,
        "signers": list(dict.fromkeys(call.signers)),
        "index": call.index,
        "time": call.tx.time,
    }
    fresh = [d for d in dict.fromkeys(digests) if state.get_state(erased_field_key(d)) is None]
    for digest in fresh:
        state.put(erased_field_key(digest), record)
    return len(fresh)


def shown(value: object) -> str:
    """A personal field in a contract's message: its text, or that it is committed."""
    return "(a committed field)" if is_commitment(value) else str(value)


def check_record_erase(body: Mapping[str, Any]) -> None:
    if set(body) != {"entry", "fields", "reason"}:
        raise MalformedError("record.erase body is {entry, fields, reason}")
    if not (is_int(body["entry"]) and body["entry"] >= 0):
        raise MalformedError("entry is the index of a logged entry")
    fields = body["fields"]
    if not (
        isinstance(fields, list)
        and 1 <= len(fields) <= MAX_ERASED_FIELDS
        and all(is_commitment({"_sd": d}) for d in fields)
        and len(set(fields)) == len(fields)
    ):
        raise MalformedError(
            f"fields is a list of 1-{MAX_ERASED_FIELDS} distinct commitment digests "
            "(base64url SHA-256) of the entry's committed fields"
        )
    reason = body["reason"]
    if not (isinstance(reason, str) and 1 <= len(reason) <= 2000):
        raise MalformedError("reason is a string of 1-2000 characters")


def exec_record_erase(state: Overlay, call: Call) -> None:
    body = call.tx.body
    if body["entry"] >= call.index:
        raise Rejected("no_entry", f"entry {body['entry']} is not logged before this one")
    if not erase_fields(state, call, body["entry"], body["fields"], body["reason"]):
        raise Rejected("already_erased", "every field named was erased already")


def personal_rules() -> dict[str, TypeRule]:
    return {RECORD_ERASE: TypeRule(check_record_erase, exec_record_erase, since=PERSONAL_VERSION)}
