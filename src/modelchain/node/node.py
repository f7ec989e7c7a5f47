"""The node: admit -> order -> execute -> append -> acknowledge; checkpoints
are published beside it.

Admission (parsing, limits, known keys, replay window, then signatures in
batches) runs before ordering. Admitted envelopes go to the sequencer; one
writer thread consumes the ordered stream in batches, applies each with the
executor (which skips duplicates and enforces the genesis rule identically on
every node) and commits it as one durable group commit before any of its
submitters is acknowledged. The publisher signs checkpoints in its own thread.

A resubmission of an envelope already in the log, byte for byte, is answered
with its existing index and outcome and writes nothing. Nothing raises out of
the writer: a failed append fails its batch, a failed checkpoint is retried,
and a fault after which the store's contents are uncertain stops writes
(NodeStoppedError) rather than the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from ..contracts import ContractSet
from ..contracts.governance import max_validity_ms
from ..contracts.state import StateReader
from ..contracts.versions import WINDOW_VERSION, active_version
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey, verifier_of, verify_batch
from ..core.merkle import leaf_hash
from ..core.policy import CheckpointPolicy
from ..core.tx import (
    LogEntry,
    Outcome,
    Transaction,
    check_time,
    decode_submission,
)
from ..errors import (
    Error,
    InputError,
    MalformedError,
    NodeStoppedError,
    PushbackError,
    SignatureError,
    StorageError,
    UnknownKeyError,
    UsageError,
    ValidityWindowError,
    WrongLedgerError,
)
from ..storage.protocols import LedgerStore
from .cosigning import ClusterPublisher, CosignatureBoard, Divergence
from .executor import Applied, Duplicate, Executed, Executor, Refused
from .publisher import CheckpointPublisher
from .sequencer import Admitted, Ordered, Sequencer
from .verifier import SignatureVerifier, default_verifier

__all__ = [
    "POSITION_KEY",
    "Ack",
    "Cosigning",
    "Node",
    "NodeConfig",
    "check_submission",
    "order_position",
    "system_clock_ms",
]

_log = logging.getLogger("modelchain.node")


# The store's meta key for how far this node applied a durable order.
POSITION_KEY = "order_position"


def order_position(store: LedgerStore) -> tuple[int, int]:
    """How far ``store`` applied a durable order, read in one go: the next
    position and the log's size then (0, 0 when it applied none)."""
    value = store.meta(POSITION_KEY)
    if value is None:
        return 0, 0
    position, _, size = value.partition(" ")
    return int(position), int(size or 0)


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class NodeConfig:
    max_backlog: int = 20_000  # admitted transactions waiting for the writer
    max_batch: int = 2_000  # most entries per group commit
    skew_ms: int = 5 * 60 * 1000  # accepted distance between tx time and node clock
    checkpoint_every: int = 1_000  # publish after this many new entries ...
    checkpoint_interval_ms: int = 1_000  # ... or this long after the first unpublished one


@dataclass(frozen=True)
class Cosigning:
    """A cluster node's part in checkpoints: its name in the checkpoint
    ``policy`` (whose quorum makes a checkpoint final) and the ``board`` the
    nodes post their cosignatures on."""

    node: str
    policy: Callable[[], CheckpointPolicy | None]  # the ledger's, None before genesis
    board: CosignatureBoard
    final_wait_s: float = 5.0  # how long a read that needs a fresh checkpoint waits


@dataclass(frozen=True)
class Ack:
    """A durable append: the entry's index, leaf hash and outcome."""

    index: int
    leaf_hash: bytes
    outcome: Outcome


@dataclass(frozen=True)
class _Prepared:
    """A transaction that passed every check but the signature arithmetic."""

    envelope: Envelope
    tx: Transaction
    pae: bytes
    pairs: tuple[tuple[VerifierKey, bytes], ...]


def check_submission(
    data: bytes, origin: str, contracts: ContractSet, state: StateReader
) -> tuple[Envelope, Transaction, tuple[tuple[VerifierKey, bytes], ...]]:
    """The checks of a submission that need only the ledger's state: shape,
    limits, ledger, type, and signers that are members (each key once, the
    actor among them). Returns the keys and signatures left to verify."""
    env, tx = decode_submission(data)
    return env, tx, _check_signers(env, tx, origin, contracts, state)


def _check_signers(
    env: Envelope, tx: Transaction, origin: str, contracts: ContractSet, state: StateReader
) -> tuple[tuple[VerifierKey, bytes], ...]:
    if tx.ledger != origin:
        raise WrongLedgerError(f"transaction is for ledger {tx.ledger!r}, not {origin!r}")
    contracts.check(tx)
    pairs: list[tuple[VerifierKey, bytes]] = []
    keyids: set[str] = set()
    names: set[str] = set()
    for sig in env.signatures:
        if sig.keyid in keyids:
            raise MalformedError(f"key {sig.keyid} signed twice")
        found = contracts.signer(state, sig.keyid, tx)
        if found is None:
            raise UnknownKeyError(f"key {sig.keyid} is not the key of any member of {origin}")
        keyids.add(sig.keyid)
        names.add(found[0])
        pairs.append((found[1], sig.sig))
    if tx.actor not in names:
        raise SignatureError(f"the actor {tx.actor!r} did not sign this transaction")
    return tuple(pairs)


def _check_window_version(tx: Transaction, state: LedgerStore) -> None:
    """A validity window only under a contract-set version that has one: nodes
    of older releases cannot read a transaction that carries it."""
    if tx.window is None:
        return
    version = active_version(state, state.size)
    if version < WINDOW_VERSION:
        raise ValidityWindowError(
            f"this ledger runs contract-set version {version}; a transaction with a "
            f"validity window (not_before, expires) needs version {WINDOW_VERSION}: "
            f"its admins switch with `modelchain contracts activate {WINDOW_VERSION} --at N`"
        )


def _unexpected(exc: BaseException) -> InputError:
    """A bug of ours met while checking one transaction: logged in full, and
    answered for that transaction alone."""
    _log.error("checking a submission failed unexpectedly", exc_info=exc)
    return InputError(
        f"this transaction could not be checked ({type(exc).__name__}); nothing was written"
    )


_PARALLEL_MIN = 64  # below this, verifying in place beats the trip to a worker


T = TypeVar("T")


def _take_batch(q: queue.Queue[T | None], first: T | None, limit: int) -> tuple[list[T], bool]:
    """``first`` and whatever else is already waiting, up to ``limit`` items;
    the flag says the stop marker (None) was taken."""
    batch: list[T] = []
    item = first
    while True:
        if item is None:
            return batch, True
        batch.append(item)
        if len(batch) >= limit:
            return batch, False
        try:
            item = q.get_nowait()
        except queue.Empty:
            return batch, False


class Node:
    def __init__(
        self,
        store: LedgerStore,
        log_signer: Signer,
        contracts: ContractSet,
        sequencer: Sequencer,
        config: NodeConfig | None = None,
        clock: Callable[[], int] = system_clock_ms,
        verifier: SignatureVerifier | None = None,
        cosigning: Cosigning | None = None,
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.config = config or NodeConfig()
        self.origin = log_signer.name
        self.log_key = verifier_of(log_signer)
        self._sequencer = sequencer
        # Alone, the genesis must name this node's key; in a cluster a node may
        # join after genesis (a policy set since names it): its publisher
        # checks the current policy names it instead.
        self._executor = Executor(
            contracts, self.origin, self.log_key if cosigning is None else None
        )
        self._clock = clock
        # Admitted transactions not yet answered (including those still having
        # their signatures verified): the bound of the backlog.
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        self._verifier = verifier if verifier is not None else default_verifier()
        self._admission: queue.Queue[tuple[_Prepared, Future[Ack]] | None] = queue.Queue()
        # This node's submitters waiting for their envelope to come out of the
        # order, by nonce: whichever node ordered it, the first item with the
        # same envelope answers them.
        self._waiting: dict[str, list[tuple[Envelope, Future[Ack]]]] = {}
        self._waiting_lock = threading.Lock()
        # The next position of the order to apply: kept with the entries when
        # the order outlives this process, so a restart resumes where it was.
        self._position = order_position(store)[0] if sequencer.durable else 0
        self._failures = 0  # consecutive failed group commits
        self._wakeup = threading.Event()  # the writer must look up: closing or stopped
        self._closed = False  # no new submissions
        self._draining = False  # the writer stops once this node's submitters are answered
        self.commits = 0  # group commits made: entries / commits is the batch size
        self.fault: str | None = None  # why writes stopped, once they have
        # More for cluster_status, from what follows this node (its witness pusher).
        self.status_parts: list[Callable[[], Mapping[str, object]]] = []
        self._final_wait = cosigning.final_wait_s if cosigning is not None else 0.0
        self._publisher: CheckpointPublisher
        if cosigning is None:
            self._publisher = CheckpointPublisher(
                store,
                log_signer,
                every=self.config.checkpoint_every,
                interval_ms=self.config.checkpoint_interval_ms,
                on_fault=self._halt,
            )
        else:
            self._publisher = ClusterPublisher(
                store,
                log_signer,
                node=cosigning.node,
                policy=cosigning.policy,
                board=cosigning.board,
                every=self.config.checkpoint_every,
                interval_ms=self.config.checkpoint_interval_ms,
                on_fault=self._halt,
            )
        self._writer = threading.Thread(target=self._run, name="modelchain-writer", daemon=True)
        self._writer.start()
        self._admitter = threading.Thread(
            target=self._run_admission, name="modelchain-admission", daemon=True
        )
        self._admitter.start()

    # -- admission -----------------------------------------------------------

    def _prepare(self, data: bytes) -> _Prepared | Ack:
        """Every check that can refuse a transaction before it is ordered,
        except the signature arithmetic: parsing, limits, ledger, type, time,
        known keys. An envelope already in the log gets its existing
        acknowledgement."""
        env, tx = decode_submission(data)
        try:
            pairs = _check_signers(env, tx, self.origin, self.contracts, self.store)
            _check_window_version(tx, self.store)
            self.contracts.check_under(tx, active_version(self.store, self.store.size))
            check_time(tx, self._clock(), self.config.skew_ms, max_validity_ms(self.store))
        except Error:
            # A retry of a logged envelope may be refused now (its time is past
            # the window, its signer since revoked): it still gets its entry.
            # Retries within the window are answered after ordering, so the
            # common path pays no lookup here.
            known = self._logged(env, tx)
            if known is not None:
                return known
            raise
        return _Prepared(env, tx, env.pae(), pairs)

    def _logged(self, env: Envelope, tx: Transaction) -> Ack | None:
        """The acknowledgement of ``env`` if the log holds it already (another
        transaction reusing its nonce goes on through admission, to be refused
        as a replay once ordered)."""
        index = self.store.nonce_index(tx.nonce)
        if index is None or tx.ledger != self.origin:
            return None
        return self._existing(index, env)

    def _existing(self, index: int, env: Envelope) -> Ack | None:
        data = self.store.entry(index)
        entry = LogEntry.decode(data)
        if entry.envelope != env:
            return None
        return Ack(index, leaf_hash(data), entry.outcome)

    def precheck(self, data: bytes) -> None:
        """Raise what admission would, short of verifying signatures: for a
        caller that signed the data itself and wants to refuse a whole batch
        before submitting any of it."""
        self._prepare(data)

    def admit(self, data: bytes) -> tuple[Envelope, Transaction]:
        """Every check that can refuse a transaction before it is ordered."""
        p = self._prepare(data)
        if isinstance(p, Ack):
            entry = LogEntry.decode(self.store.entry(p.index))
            return entry.envelope, entry.transaction
        for key, sig in p.pairs:
            key.verify(p.pae, sig)
        return p.envelope, p.tx

    def _reserve(self, count: int) -> None:
        if self.fault is not None:
            raise NodeStoppedError(f"this node stopped taking writes: {self.fault}")
        if self._closed:
            raise StorageError("the node is closed")
        with self._backlog_lock:
            if self._backlog + count > self.config.max_backlog:
                raise PushbackError(
                    f"{self._backlog} transactions are waiting (limit "
                    f"{self.config.max_backlog}); retry shortly",
                    retry_after=0.5,
                )
            self._backlog += count

    @property
    def backlog(self) -> int:
        """Admitted transactions not yet durable."""
        return self._backlog

    @property
    def position(self) -> int:
        """How much of the order this node has applied: the next position."""
        return self._position

    @property
    def checkpoint_size(self) -> int:
        """The size of the latest checkpoint this node published."""
        return self._publisher.size

    @property
    def checkpoint_time(self) -> float:
        """When this node last signed a checkpoint (or started), Unix seconds."""
        return self._publisher.time

    @property
    def checkpoint_failures(self) -> int:
        """Checkpoints that could not be stored (each retried)."""
        return self._publisher.failures

    def _release(self, count: int) -> None:
        with self._backlog_lock:
            self._backlog -= count

    def submit_async(self, data: bytes) -> Future[Ack]:
        """Admit ``data``; the future resolves once its entry is durable.

        Malformed input, a wrong ledger or time, an unknown key and overload
        (PushbackError) raise here; a signature that does not verify and a
        nonce the log already holds for another transaction fail the future.
        Nothing refused is ever written."""
        self._reserve(1)
        try:
            prepared = self._prepare(data)
        except Error:
            self._release(1)
            raise
        except BaseException as exc:
            self._release(1)
            raise _unexpected(exc) from exc
        fut: Future[Ack] = Future()
        if isinstance(prepared, Ack):
            self._release(1)
            fut.set_result(prepared)
        else:
            self._admission.put((prepared, fut))
        return fut

    def submit(self, data: bytes, timeout: float | None = 60.0) -> Ack:
        """Submit and wait until the entry is durable."""
        return self.submit_async(data).result(timeout)

    def submit_many(self, batch: Sequence[bytes]) -> list[Future[Ack]]:
        """Admit a batch; each future resolves once its entry is durable or
        fails with the reason it was refused. Raises PushbackError (admitting
        none) when overloaded."""
        self._reserve(len(batch))
        futures: list[Future[Ack]] = []
        try:
            for data in batch:
                fut: Future[Ack] = Future()
                try:
                    prepared = self._prepare(data)
                except Error as exc:
                    self._release(1)
                    fut.set_exception(exc)
                except Exception as exc:
                    self._release(1)
                    fut.set_exception(_unexpected(exc))
                else:
                    if isinstance(prepared, Ack):
                        self._release(1)
                        fut.set_result(prepared)
                    else:
                        self._admission.put((prepared, fut))
                futures.append(fut)
        except BaseException:
            # Whatever was not admitted gives its reserved place back: a leaked
            # reservation would shrink the backlog for good.
            self._release(len(batch) - len(futures))
            raise
        return futures

    def _run_admission(self) -> None:
        """Verify signatures of what waits, as one batch: in worker processes
        when the batch is big enough to pay for the trip, else here. Batches
        grow by themselves under load, as group commits do."""
        stop = False
        while not stop:
            batch, stop = _take_batch(self._admission, self._admission.get(), self.config.max_batch)
            if not batch:
                continue
            checks = [(k.public_key, p.pae, s) for p, _ in batch for k, s in p.pairs]
            results: list[bool] | None = None
            if len(batch) >= _PARALLEL_MIN:
                try:
                    results = self._verifier.verify_many(checks).result()
                except Exception:  # the workers broke: verify here instead
                    results = None
            if results is None:
                results = verify_batch(checks)
            self._order(batch, results)

    def _order(self, ready: list[tuple[_Prepared, Future[Ack]]], results: Sequence[bool]) -> None:
        """Hand the verified part of ``ready`` to the sequencer, each submitter
        waiting for its envelope to come out of the order."""
        at = 0
        batch: list[Admitted] = []
        futures: list[Future[Ack]] = []
        for p, fut in ready:
            ok = results[at : at + len(p.pairs)]
            at += len(p.pairs)
            if not all(ok):
                self._release(1)
                who = p.pairs[ok.index(False)][0].name
                fut.set_exception(SignatureError(f"signature by {who} does not verify"))
            elif not fut.set_running_or_notify_cancel():
                self._release(1)  # cancelled before it was ordered
            else:
                batch.append(Admitted(p.envelope, p.tx))
                futures.append(fut)
        if not batch:
            return
        with self._waiting_lock:
            # Checked under the lock that _stop_writes empties the waiters with.
            stopped = self.fault
            if stopped is None:
                for item, fut in zip(batch, futures, strict=True):
                    self._waiting.setdefault(item.tx.nonce, []).append((item.envelope, fut))
        if stopped is not None:
            self._fail(futures, NodeStoppedError(f"this node stopped taking writes: {stopped}"))
            return
        try:
            positions = self._sequencer.submit(batch)
        except BaseException as exc:
            positions = Future()
            positions.set_exception(exc)

        def ordered(done: Future[range]) -> None:
            exc = done.exception()
            if exc is not None:
                err = exc if isinstance(exc, Error) else StorageError(f"ordering failed: {exc!r}")
                self._unwait(batch, futures, err)

        positions.add_done_callback(ordered)

    def _fail(self, futures: Sequence[Future[Ack]], err: BaseException) -> None:
        self._release(len(futures))
        for fut in futures:
            if not fut.done():
                fut.set_exception(err)

    def _unwait(
        self, batch: Sequence[Admitted], futures: Sequence[Future[Ack]], err: BaseException
    ) -> None:
        """Fail the submitters of ``batch`` still waiting (the order refused it)."""
        gone: list[Future[Ack]] = []
        with self._waiting_lock:
            for item, fut in zip(batch, futures, strict=True):
                waiters = self._waiting.get(item.tx.nonce)
                if waiters is None:
                    continue
                for w in waiters:
                    if w[1] is fut:
                        waiters.remove(w)
                        gone.append(fut)
                        break
                if not waiters:
                    del self._waiting[item.tx.nonce]
        self._fail(gone, err)

    # -- the writer ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._write_loop()
        except BaseException as exc:
            self._stop_writes(exc)

    def _write_loop(self) -> None:
        while True:
            if self.fault is not None:  # set by the publisher: a refused checkpoint
                raise NodeStoppedError(self.fault)
            items = self._sequencer.read(self._position, self.config.max_batch, self._wakeup)
            if items:
                self._write(items)
            elif self._draining and not self._waiting:
                return

    def _write(self, items: list[Ordered]) -> None:
        """Apply and append ``items``; answer this node's submitters. On a
        failure fail their futures, and raise only if the store may now hold
        something other than what this writer believes."""
        try:
            batch = self._checked([item for _, item in items])
            applied = self._executor.execute(self.store, batch)
            position = items[-1][0] + 1
            meta = None
            if self._sequencer.durable:
                size = self.store.size + len(applied.entries)
                meta = {POSITION_KEY: f"{position} {size}"}
            leaves = applied.commit(self.store, meta)
        except BaseException as exc:
            if not isinstance(exc, Error):
                _log.error("appending a batch failed unexpectedly", exc_info=exc)
            err = exc if isinstance(exc, Error) else StorageError(f"append failed: {exc!r}")
            # Nothing of the batch was applied; a stream that keeps its history
            # gives it again from this position.
            self._answer(items, lambda _: err)
            self.store.check_writable()
            # Before the batch is tried again (a shared stream gives it again),
            # a back-off, so that a failing store is not hammered.
            self._failures += 1
            self._wakeup.wait(min(1.0, 0.005 * 2 ** min(self._failures, 8)))
            return
        self._failures = 0
        self._position = position
        if applied.entries:
            self.commits += 1
            self._publisher.wrote(self.store.size)
            self._sequencer.applied(position)
        self._answer(items, lambda k: self._ack(applied, leaves, items[k][1], k))

    def _checked(self, batch: list[Admitted]) -> list[Admitted]:
        """``batch`` with the envelopes another node ordered checked where it
        is cheap: signatures verified together (in worker processes for a
        big batch) under the keys the state gives before the batch. What
        cannot be checked so (a key added within the batch, a signature that
        fails) is left to the executor, which checks it at its place in the
        order, so every node decides it alike."""
        todo: list[tuple[int, bytes, list[tuple[VerifierKey, bytes]]]] = []
        with self._waiting_lock:
            waiting = self._waiting
            for k, item in enumerate(batch):
                if item.checked:
                    continue
                mine = waiting.get(item.tx.nonce)
                if mine is not None and any(w[0] == item.envelope for w in mine):
                    batch[k] = Admitted(item.envelope, item.tx)  # admitted here
                    continue
                pairs = []
                for sig in item.envelope.signatures:
                    found = self.contracts.signer(self.store, sig.keyid, item.tx)
                    if found is None:
                        break
                    pairs.append((found[1], sig.sig))
                else:
                    todo.append((k, item.envelope.pae(), pairs))
        if not todo:
            return batch
        checks = [(key.public_key, pae, sig) for _, pae, pairs in todo for key, sig in pairs]
        results: list[bool] | None = None
        if len(todo) >= _PARALLEL_MIN:
            try:
                results = self._verifier.verify_many(checks).result()
            except Exception:  # the workers broke: verify here instead
                results = None
        if results is None:
            results = verify_batch(checks)
        at = 0
        for k, _, pairs in todo:
            if all(results[at : at + len(pairs)]):
                batch[k] = Admitted(batch[k].envelope, batch[k].tx)
            at += len(pairs)
        return batch

    def _ack(self, applied: Applied, leaves: list[bytes], item: Admitted, k: int) -> Ack | Error:
        result = applied.results[k]
        if isinstance(result, Executed):
            return Ack(result.index, leaves[result.index - applied.first], result.outcome)
        if isinstance(result, Refused):
            return result.error
        assert isinstance(result, Duplicate)
        if not result.identical:
            return result.error(item.tx.nonce)
        if result.index >= applied.first:  # logged earlier in this batch
            done = applied.results[
                next(
                    j
                    for j, r in enumerate(applied.results)
                    if isinstance(r, Executed) and r.index == result.index
                )
            ]
            assert isinstance(done, Executed)
            return Ack(done.index, leaves[done.index - applied.first], done.outcome)
        try:
            ack = self._existing(result.index, item.envelope)
        except Error as exc:
            return exc
        assert ack is not None
        return ack

    def _answer(self, items: list[Ordered], result: Callable[[int], Ack | Error]) -> None:
        """Answer this node's submitters waiting for ``items``."""
        answers: list[tuple[Future[Ack], int]] = []
        with self._waiting_lock:
            waiting = self._waiting
            for k, (_, item) in enumerate(items):
                waiters = waiting.get(item.tx.nonce)
                if waiters is None:
                    continue
                env = item.envelope
                if len(waiters) == 1 and (waiters[0][0] is env or waiters[0][0] == env):
                    del waiting[item.tx.nonce]
                    answers.append((waiters[0][1], k))
                    continue
                keep = []
                for w in waiters:
                    if w[0] is env or w[0] == env:
                        answers.append((w[1], k))
                    else:
                        keep.append(w)
                if keep:
                    waiting[item.tx.nonce] = keep
                else:
                    del waiting[item.tx.nonce]
        if not answers:
            return
        self._release(len(answers))
        for fut, k in answers:
            got = result(k)
            if isinstance(got, Ack):
                fut.set_result(got)
            else:
                fut.set_exception(got)

    def _halt(self, reason: str) -> None:
        """Stop writes from now on (the publisher met a rollback or a
        divergence; a divergence's reason is refined once its first differing
        entry is found)."""
        if self.fault is None or (self.divergence is not None and reason != self.fault):
            self.fault = reason
        self._wakeup.set()
        self._sequencer.wake()

    def _stop_writes(self, exc: BaseException) -> None:
        """The writer cannot go on: refuse writes from now on (503, /healthz
        fails), and fail whoever waits instead of leaving them waiting."""
        if self.fault is None:
            self.fault = exc.message if isinstance(exc, Error) else repr(exc)
        reason = self.fault
        _log.critical("the writer stopped; this node takes no more writes", exc_info=exc)
        err = NodeStoppedError(f"this node stopped taking writes: {reason}")
        with self._waiting_lock:
            waiting = [fut for waiters in self._waiting.values() for _, fut in waiters]
            self._waiting.clear()
        self._fail(waiting, err)

    # -- checkpoints ---------------------------------------------------------

    def publish_checkpoint(self) -> bytes | None:
        """Sign and store a checkpoint of the current size if it is new;
        return the latest checkpoint note (None for an empty log)."""
        if self.fault is not None:
            raise NodeStoppedError(f"this node stopped taking writes: {self.fault}")
        note = self._publisher.publish()
        publisher = self._publisher
        # In a cluster a checkpoint counts once final: wait a while for the others.
        if (
            isinstance(publisher, ClusterPublisher)
            and not self._closed
            and publisher.wait_final(publisher.size, self._final_wait)
        ):
            latest = self.store.checkpoint()
            note = None if latest is None else latest[1]
        return note

    @property
    def final_size(self) -> int:
        """The size of the latest final checkpoint (in a cluster: cosigned by a
        quorum of nodes; alone: the latest this node signed)."""
        p = self._publisher
        return p.final_size if isinstance(p, ClusterPublisher) else p.size

    def cluster_status(self) -> dict[str, object] | None:
        """Where this cluster node stands (None for a node alone): its name,
        size and root, the order position it applied, its latest final
        checkpoint and why it stopped, if it did."""
        p = self._publisher
        if not isinstance(p, ClusterPublisher):
            return None
        size, root = self.store.head()
        d = p.divergence
        status: dict[str, object] = {
            "node": p.node,
            "size": size,
            "root": root.hex(),
            "applied_revision": self._position >> 16,
            "position": dict(zip(("position", "size"), order_position(self.store), strict=True)),
            "final_size": p.final_size,
            "final_time": round(p.final_time, 3),
            "fault": self.fault,
            "divergence": None
            if d is None
            else {
                "size": d.size,
                "mine": d.mine.hex(),
                "theirs": d.theirs.hex(),
                "nodes": d.nodes,
                "first_entry": d.first_entry,
            },
        }
        for part in self.status_parts:
            status.update(part())
        return status

    def on_final(self, listener: Callable[[int, bytes], None]) -> None:
        """Call ``listener(size, note)`` for each new final checkpoint of a
        cluster node (quickly: it runs under the publisher's lock)."""
        p = self._publisher
        if not isinstance(p, ClusterPublisher):
            raise UsageError("only a cluster node has final checkpoints to follow")
        p.listeners.append(listener)

    def locate_divergence(self, locate: Callable[[int, int], int | None]) -> None:
        """How a cluster node finds the first entry where it differs from the
        others, given the last agreed size and the size of the divergence."""
        p = self._publisher
        if isinstance(p, ClusterPublisher):
            p.locate = locate

    @property
    def divergence(self) -> Divergence | None:
        """Where this node found itself on another root than a quorum's."""
        p = self._publisher
        return p.divergence if isinstance(p, ClusterPublisher) else None

    def close(self) -> None:
        """Finish admitted work, publish a final checkpoint, stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._admission.put(None)  # admitted work reaches the order first
        self._admitter.join()
        self._verifier.close()
        self._draining = True
        self._wakeup.set()
        self._sequencer.wake()
        self._writer.join()
        self._publisher.stop()
        if self.fault is None:
            self.publish_checkpoint()
