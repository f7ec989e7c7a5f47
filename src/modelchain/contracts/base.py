"""The contract dispatcher, the state overlay and the rules common to every type.

State is a map from string keys to JSON values. Execution is a pure function of
(state, index, transaction, signer key ids): no clock, no randomness, no I/O.
The contract-set version active at the index (``versions``) is part of the
state; a set that does not know it refuses to execute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..core.canonical import JSONValue
from ..core.identity import VerifierKey
from ..core.names import check_name
from ..core.tx import Outcome, Transaction
from ..errors import ContractVersionError, MalformedError, UnknownTypeError
from .state import LEDGER_KEY, StateReader
from .types import GENESIS
from .versions import CURRENT_VERSION, KNOWN_VERSIONS, active_version

__all__ = [
    "Call",
    "ContractSet",
    "Handler",
    "Overlay",
    "Rejected",
    "StateReader",
    "TypeRule",
    "is_int",
    "names",
]


class Rejected(Exception):
    """Raised by a handler to reject a transaction; the entry is still logged."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Overlay:
    """Writes buffered over a reader; ``None`` marks a deletion."""

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self.writes: dict[str, JSONValue | None] = {}
        self.notes: list[str] = []  # what the outcome says the contract did on its own

    def get_state(self, key: str) -> JSONValue | None:
        if key in self.writes:
            return self.writes[key]
        return self._base.get_state(key)

    def put(self, key: str, value: JSONValue) -> None:
        self.writes[key] = value

    def delete(self, key: str) -> None:
        self.writes[key] = None


@dataclass(frozen=True)
class Call:
    """One transaction as a handler sees it."""

    index: int
    tx: Transaction
    signers: tuple[str, ...]  # member names of every verified signature, in order
    keyids: tuple[str, ...] = ()  # the key id of each of those signatures
    version: int = CURRENT_VERSION  # the contract-set version it runs under


Handler = Callable[[Overlay, Call], None]
BodyCheck = Callable[[Mapping[str, Any]], None]
ContextFn = Callable[["StateReader", Call], dict[str, Any]]


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer. ``true`` is not 1 anywhere in a body: bool is a subclass
    of int in Python, so every integer field is checked with this."""
    return isinstance(value, int) and not isinstance(value, bool)


def names(*paths: str) -> BodyCheck:
    """An admission check that the fields at ``paths`` (dotted, into objects)
    are names (``core.names``); an absent field or a null is left to ``check``."""

    def check(body: Mapping[str, Any]) -> None:
        for path in paths:
            value: object = body
            for part in path.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None:
                check_name(value, path)

    return check


@dataclass(frozen=True)
class TypeRule:
    """How one transaction type is validated (statically) and executed, and what
    its policies see beyond the common context.

    ``check`` is the body's schema, applied at admission and to every logged
    entry when it is replayed. ``admit`` holds the rules added since entries
    were first logged (the name syntax): applied at admission only, so a log
    written before them still replays to the same outcomes. Under a version
    before ``since`` the type is unknown, as it was."""

    check: BodyCheck
    execute: Handler
    context: ContextFn | None = None
    admit: BodyCheck | None = None
    since: int = 1  # the contract-set version that brought the type


Gate = Callable[[Overlay, Call, TypeRule], None]
VersionedCheck = Callable[[Transaction, int], None]  # MalformedError if the body does not fit


class ContractSet:
    """Dispatches transactions to their handlers by type."""

    def __init__(
        self,
        rules: Mapping[str, TypeRule],
        resolve_signer: Callable[[StateReader, str, Transaction], tuple[str, VerifierKey] | None],
        authorize: Callable[[StateReader, Call], None],
        gate: Gate | None = None,
        versions: frozenset[int] = KNOWN_VERSIONS,
        versioned_check: VersionedCheck | None = None,
    ) -> None:
        self._rules = dict(rules)
        self._resolve = resolve_signer
        self._authorize = authorize
        self._gate = gate
        self._versioned_check = versioned_check
        self._versions = frozenset(versions)

    @property
    def versions(self) -> frozenset[int]:
        """The contract-set versions this set executes."""
        return self._versions

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._rules)

    def rule(self, type_: str) -> TypeRule | None:
        return self._rules.get(type_)

    def check(self, tx: Transaction) -> None:
        """Static checks at admission: the type is known, its body well-formed and
        the names in it spelled as names."""
        rule = self.check_logged(tx)
        if rule.admit is not None:
            rule.admit(tx.body)
        if tx.type == GENESIS:
            self._require_known(_genesis_version(tx), 0)

    def check_logged(self, tx: Transaction) -> TypeRule:
        """The static checks every logged entry is held to when replayed: the
        type is known and its body well-formed. Returns the type's rule."""
        rule = self._rules.get(tx.type)
        if rule is None:
            raise UnknownTypeError(
                f"no contract handles transaction type {tx.type!r}; "
                f"known types: {', '.join(sorted(self._rules))}"
            )
        rule.check(tx.body)
        return rule

    def check_under(self, tx: Transaction, version: int) -> None:
        """The checks of a body that depend on the contract-set version it will run
        under (personal fields: ``personal.require_committed``); MalformedError."""
        if self._versioned_check is not None:
            self._versioned_check(tx, version)

    def version_at(self, state: StateReader, index: int, tx: Transaction | None = None) -> int:
        """The contract-set version the entry at ``index`` (``tx``) runs under;
        ContractVersionError if this set does not know it."""
        if tx is not None and tx.type == GENESIS and state.get_state(LEDGER_KEY) is None:
            version = _genesis_version(tx)
        else:
            version = active_version(state, index)
        self._require_known(version, index)
        return version

    def _require_known(self, version: int, index: int) -> None:
        if version not in self._versions:
            known = ", ".join(str(v) for v in sorted(self._versions))
            raise ContractVersionError(
                f"entry {index} runs under contract-set version {version}, which this "
                f"modelchain does not know (it knows {known}); it was not executed: "
                "upgrade modelchain to a release with that version",
                version,
                index,
            )

    def signer(
        self, state: StateReader, keyid: str, tx: Transaction
    ) -> tuple[str, VerifierKey] | None:
        """The member name and key behind a DSSE key id, in ``state`` (for ``tx``)."""
        return self._resolve(state, keyid, tx)

    def execute(
        self, state: StateReader, index: int, tx: Transaction, keyids: tuple[str, ...]
    ) -> tuple[Outcome, dict[str, JSONValue | None]]:
        """Run one transaction; return its outcome and the state writes it makes.
        ContractVersionError, and no outcome, if the version active at ``index``
        is not one this set knows."""
        version = self.version_at(state, index, tx)
        overlay = Overlay(state)
        try:
            rule = self._rules.get(tx.type)
            if rule is not None and version < rule.since:
                rule = None  # the type came with a later version: as it was refused before
            if rule is None:  # a log written by a newer version: deterministic refusal
                raise Rejected("unknown_type", f"no contract handles {tx.type!r}")
            try:
                rule.check(tx.body)
                self.check_under(tx, version)
            except MalformedError as exc:
                raise Rejected("malformed_body", exc.message) from exc
            names = []
            for kid in keyids:
                found = self._resolve(overlay, kid, tx)
                if found is None:
                    raise Rejected("unknown_signer", f"key {kid} belongs to no active member")
                names.append(found[0])
            call = Call(index, tx, tuple(names), keyids, version)
            self._authorize(overlay, call)
            if self._gate is not None:
                self._gate(overlay, call, rule)
            rule.execute(overlay, call)
        except Rejected as rej:
            return Outcome.rejected(rej.code, rej.reason), {}
        return Outcome.noted("; ".join(overlay.notes)), overlay.writes


def _genesis_version(tx: Transaction) -> int:
    """The version a genesis starts the ledger on (1 if it names none: made
    before versions were recorded; a malformed one is left to ``check``)."""
    version = tx.body.get("contracts", 1)
    return version if is_int(version) else 1
