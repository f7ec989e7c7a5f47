"""The executor: the one path from an ordered stream of envelopes to log
entries and state writes, used by the node's writer, the verified replica and
``log verify``.

``execute`` turns ordered, admitted envelopes into entries. The rules that
depend on the log are applied here, after ordering, so that every node that
applies the same order makes the same log: an envelope whose nonce the log
already holds is skipped (answered with that entry when it is the same
envelope byte for byte, refused as a replay otherwise), and the first entry
must be a genesis naming this log's key. ``replay`` re-derives entries that
were already logged and raises AuditError where they differ from what
``execute`` would have made, verifying their signatures in batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from ..contracts import GENESIS, ContractSet, Overlay
from ..contracts.genesis import checkpoint_policy
from ..contracts.state import StateReader
from ..core.canonical import JSONValue
from ..core.dsse import Envelope
from ..core.identity import VerifierKey, verify_batch
from ..core.tx import LogEntry, Outcome, Transaction, encode_entry
from ..errors import AuditError, Error, ReplayError, SignatureError, WrongLedgerError
from ..storage.protocols import IndexRow, LedgerStore
from .sequencer import Admitted
from .verifier import SignatureVerifier

__all__ = [
    "Applied",
    "Duplicate",
    "Executed",
    "ExecutionBase",
    "Executor",
    "Refused",
    "SignatureChecks",
]


class ExecutionBase(Protocol):
    """What execution reads of the log so far: its size, state and nonces."""

    @property
    def size(self) -> int: ...

    def get_state(self, key: str) -> JSONValue | None: ...

    def used_nonces(self, nonces: Sequence[str]) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Executed:
    """An envelope that became the entry at ``index``."""

    index: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An envelope whose nonce the entry at ``index`` holds: skipped. When it is
    that entry's envelope byte for byte (``identical``), its submitter is
    answered with that entry; otherwise it is a replay."""

    index: int
    identical: bool

    def error(self, nonce: str) -> ReplayError:
        return ReplayError(
            f"nonce {nonce} was already used at index {self.index} by another "
            "transaction; this one was not applied"
        )


@dataclass(frozen=True, slots=True)
class Refused:
    """An envelope a rule of the log refuses: skipped, its submitter told why."""

    error: Error


Result = Executed | Duplicate | Refused


@dataclass
class Applied:
    """What one batch of the stream made: a result per item, and the entries,
    nonces, state writes and index rows to append as one group commit."""

    first: int  # index of the first entry
    results: list[Result] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    nonces: list[str] = field(default_factory=list)
    writes: dict[str, JSONValue | None] = field(default_factory=dict)
    rows: list[IndexRow] = field(default_factory=list)
    signatures: int = 0  # signatures checked (replay)

    def commit(self, store: LedgerStore, meta: Mapping[str, str] | None = None) -> list[bytes]:
        """Append what this batch made to ``store`` (with ``meta``, in the same
        commit); return the leaf hashes. A batch that made no entry writes
        nothing, ``meta`` included: applying its stretch again makes no entry
        either."""
        if not self.entries:
            return []
        return store.append(self.entries, self.nonces, self.writes, self.rows, meta)


_GENESIS_RULE = "the first transaction must be a genesis naming this log's key"


class Executor:
    """Applies ordered envelopes to state with ``contracts``, for the log of
    ``origin`` whose checkpoints ``log_key`` signs (either may be None for a
    replay that learns them from the genesis entry)."""

    def __init__(
        self, contracts: ContractSet, origin: str | None, log_key: VerifierKey | None
    ) -> None:
        self.contracts = contracts
        self.origin = origin
        self.log_key = None if log_key is None else log_key.to_string()

    def _rule(self, index: int, tx: Transaction) -> str | None:
        """Why the log's own rules refuse ``tx`` at ``index``, if they do."""
        if self.origin is not None and tx.ledger != self.origin:
            return f"transaction is for ledger {tx.ledger!r}, not {self.origin!r}"
        if index == 0 and (tx.type != GENESIS or not self._names_log_key(tx)):
            return _GENESIS_RULE
        return None

    def _names_log_key(self, genesis: Transaction) -> bool:
        """Whether ``genesis`` makes this log's key one that signs its
        checkpoints: its ``log_key``, or (a cluster, where each node signs
        with its own key) one of the logs its checkpoint policy names."""
        if self.log_key is None or genesis.body.get("log_key") == self.log_key:
            return True
        try:
            policy = checkpoint_policy(genesis.body)
        except (Error, KeyError, TypeError, ValueError):
            return False  # a malformed genesis: the contract says why, if it gets there
        return any(log.key.to_string() == self.log_key for log in policy.logs)

    def _signatures(self, state: StateReader, tx: Transaction, env: Envelope) -> Error | None:
        """For an envelope this node did not admit: the first signature that
        does not verify under the key ``state`` gives its key id. A key id no
        member holds is left to the contracts, which refuse it on the record,
        as they do for envelopes this node admitted."""
        pae = env.pae()
        for sig in env.signatures:
            found = self.contracts.signer(state, sig.keyid, tx)
            if found is None:
                continue
            try:
                found[1].verify(pae, sig.sig)
            except SignatureError as exc:
                return exc
        return None

    # -- making entries ------------------------------------------------------

    def execute(self, store: LedgerStore, items: Sequence[Admitted]) -> Applied:
        """Execute ``items`` (in stream order) after the log in ``store``."""
        first = store.size
        out = Applied(first)
        used = store.used_nonces([item.tx.nonce for item in items])
        state = Overlay(store)
        mine: dict[str, tuple[int, Envelope]] = {}  # nonce -> its entry in this batch
        for item in items:
            tx, env = item.tx, item.envelope
            nonce = tx.nonce
            at = used.get(nonce)
            if at is not None:
                logged = LogEntry.decode(store.entry(at)).envelope
                out.results.append(Duplicate(at, logged == env))
                continue
            twin = mine.get(nonce)
            if twin is not None:
                out.results.append(Duplicate(twin[0], twin[1] == env))
                continue
            index = first + len(out.entries)
            why = self._rule(index, tx)
            if why is not None:
                out.results.append(Refused(WrongLedgerError(why)))
                continue
            if not item.checked:
                bad = self._signatures(state, tx, env)
                if bad is not None:
                    out.results.append(Refused(bad))
                    continue
            keyids = tuple(s.keyid for s in env.signatures)
            outcome, writes = self.contracts.execute(state, index, tx, keyids)
            state.writes.update(writes)
            mine[nonce] = (index, env)
            out.results.append(Executed(index, outcome))
            out.entries.append(encode_entry(index, env, outcome))
            out.nonces.append(nonce)
            out.rows.append(IndexRow.of(tx, outcome.accepted))
        out.writes = state.writes
        return out

    # -- re-deriving logged entries ------------------------------------------

    def replay(
        self, base: ExecutionBase, entries: Sequence[bytes], sigs: SignatureChecks
    ) -> Applied:
        """Re-derive ``entries`` (the log's next ones after ``base``): AuditError
        for the first that ``execute`` would not have made exactly so. Their
        signatures are queued on ``sigs``; the caller settles them."""
        first = base.size
        out = Applied(first)
        try:
            self._replay(base, entries, sigs, out)
        except AuditError:
            sigs.settle()  # an earlier bad signature is the first bad entry
            raise
        return out

    def _replay(
        self, base: ExecutionBase, entries: Sequence[bytes], sigs: SignatureChecks, out: Applied
    ) -> None:
        state = Overlay(base)
        # Decoded first, so that the chunk's nonces are looked up at once; a bad
        # entry's error is raised when its turn comes, after those before it.
        decoded: list[LogEntry | AuditError] = []
        for offset, data in enumerate(entries):
            try:
                decoded.append(self._decode(out.first + offset, data))
            except AuditError as exc:
                decoded.append(exc)
        used = base.used_nonces([e.transaction.nonce for e in decoded if isinstance(e, LogEntry)])
        mine: dict[str, int] = {}
        for offset, entry in enumerate(decoded):
            index = out.first + offset
            if isinstance(entry, AuditError):
                raise entry
            tx = entry.transaction
            if self.origin is None and index == 0:
                self.origin = tx.ledger
            if self.origin is not None and tx.ledger != self.origin:
                raise AuditError(f"entry {index} is for ledger {tx.ledger!r}", index)
            at = used.get(tx.nonce, mine.get(tx.nonce))
            if at is not None:
                raise AuditError(f"entry {index} replays the nonce of entry {at}", index)
            mine[tx.nonce] = index
            try:
                self.contracts.check_logged(tx)
            except Error as exc:
                raise AuditError(
                    f"entry {index} could never have been admitted: {exc.message}", index
                ) from exc
            if index == 0:
                self._replay_genesis(tx)
            pae = entry.envelope.pae()
            for sig in entry.envelope.signatures:
                found = self.contracts.signer(state, sig.keyid, tx)
                if found is None:
                    raise AuditError(f"entry {index} is signed by unknown key {sig.keyid}", index)
                sigs.add(index, found[1], pae, sig.sig)
            out.signatures += len(entry.envelope.signatures)
            keyids = tuple(s.keyid for s in entry.envelope.signatures)
            outcome, writes = self.contracts.execute(state, index, tx, keyids)
            if outcome != entry.outcome:
                raise AuditError(
                    f"entry {index}: recorded outcome {entry.outcome.to_json()} but "
                    f"re-execution gives {outcome.to_json()}",
                    index,
                )
            state.writes.update(writes)
            out.results.append(Executed(index, outcome))
            out.nonces.append(tx.nonce)
            out.rows.append(IndexRow.of(tx, outcome.accepted))
        out.entries = list(entries)
        out.writes = state.writes

    @staticmethod
    def _decode(index: int, data: bytes) -> LogEntry:
        try:
            entry = LogEntry.decode(data)
        except Error as exc:
            raise AuditError(f"entry {index} is malformed: {exc.message}", index) from exc
        if encode_entry(entry.index, entry.envelope, entry.outcome) != data:
            # e.g. base64 re-spelled in its padding bits: same values, other bytes
            raise AuditError(f"entry {index} is not in its canonical encoding", index)
        if entry.index != index:
            raise AuditError(f"entry {index} claims index {entry.index}", index)
        return entry

    def _replay_genesis(self, tx: Transaction) -> None:
        if tx.type != GENESIS:
            raise AuditError(f"entry 0 is a {tx.type!r}, not a genesis", 0)
        if not self._names_log_key(tx):
            raise AuditError(
                "the genesis entry names another log key than the one trusted (neither its "
                "log_key nor one of its checkpoint policy's logs)",
                0,
            )


_SIGNATURE_BATCH = 4096


class SignatureChecks:
    """Signature checks gathered during a replay and verified in batches,
    in worker processes when the verifier has them, while the replay goes on."""

    def __init__(self, verifier: SignatureVerifier) -> None:
        self._verifier = verifier
        self._checks: list[tuple[bytes, bytes, bytes]] = []
        self._owners: list[tuple[int, str]] = []
        self._in_flight: list[
            tuple[Future[list[bool]], list[tuple[bytes, bytes, bytes]], list[tuple[int, str]]]
        ] = []

    def add(self, index: int, key: VerifierKey, message: bytes, signature: bytes) -> None:
        self._checks.append((key.public_key, message, signature))
        self._owners.append((index, key.name))
        if len(self._checks) >= _SIGNATURE_BATCH:
            self._in_flight.append(
                (self._verifier.verify_many(self._checks), self._checks, self._owners)
            )
            self._checks, self._owners = [], []
            while len(self._in_flight) > 2:  # bound the memory held by pending batches
                self._settle_one()

    def _settle_one(self) -> None:
        fut, checks, owners = self._in_flight.pop(0)
        try:
            results = fut.result()
        except Exception:  # the workers broke: verify here instead
            results = verify_batch(checks)
        for ok, (index, name) in zip(results, owners, strict=True):
            if not ok:
                raise AuditError(f"entry {index}: signature by {name} does not verify", index)

    def settle(self) -> None:
        """Wait for every check so far; raise for the first that fails."""
        if self._checks:
            # A small remainder is cheaper to check here than to send to a worker
            # (and a small ledger never starts one).
            fut: Future[list[bool]] = Future()
            fut.set_result(verify_batch(self._checks))
            self._in_flight.append((fut, self._checks, self._owners))
            self._checks, self._owners = [], []
        while self._in_flight:
            self._settle_one()
