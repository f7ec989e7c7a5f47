"""The node: admit -> sequence -> execute -> append -> acknowledge -> checkpoint.

Admission (parsing, signatures, replay window) runs in the submitting thread,
so signature checks use every core. One writer thread drains a bounded queue in
batches: each batch is executed and committed in one durable SQLite transaction
(group commit) before any of its submitters is acknowledged.

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
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from ..contracts import ContractSet, Overlay
from ..contracts.state import StateReader
from ..core.checkpoint import Checkpoint, sign_checkpoint
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey, verifier_of, verify_batch
from ..core.merkle import leaf_hash
from ..core.tx import (
    LogEntry,
    Outcome,
    Transaction,
    check_time,
    decode_submission,
    encode_entry,
)
from ..errors import (
    Error,
    InputError,
    MalformedError,
    NodeStoppedError,
    PushbackError,
    ReplayError,
    RollbackError,
    SignatureError,
    StorageError,
    UnknownKeyError,
    WrongLedgerError,
)
from ..storage.sqlite import IndexRow, SqliteStore
from .sequencer import Sequencer
from .verifier import SignatureVerifier, default_verifier

__all__ = ["Ack", "Node", "NodeConfig", "check_submission", "system_clock_ms"]

_log = logging.getLogger("modelchain.node")


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


@dataclass
class _Admitted:
    envelope: Envelope
    tx: Transaction
    future: Future[Ack]


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
        store: SqliteStore,
        log_signer: Signer,
        contracts: ContractSet,
        sequencer: Sequencer,
        config: NodeConfig | None = None,
        clock: Callable[[], int] = system_clock_ms,
        verifier: SignatureVerifier | None = None,
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.config = config or NodeConfig()
        self.origin = log_signer.name
        self.log_key = verifier_of(log_signer)
        self._signer = log_signer
        self._sequencer = sequencer
        self._clock = clock
        # Unbounded queue; the backlog counter is the bound (it also counts
        # transactions still having their signatures verified).
        self._queue: queue.Queue[_Admitted | None] = queue.Queue()
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        self._verifier = verifier if verifier is not None else default_verifier()
        self._admission: queue.Queue[tuple[_Prepared, Future[Ack]] | None] = queue.Queue()
        self._cp_lock = threading.Lock()
        latest = store.checkpoint()
        self._cp_size = latest[0] if latest else 0
        self.checkpoint_time = time.time()  # when this node last signed one (or started)
        self._cp_due: float | None = None
        self._closed = False
        self.commits = 0  # group commits made: entries / commits is the batch size
        self.checkpoint_failures = 0  # checkpoints that could not be stored (retried)
        self._cp_retries = 0  # consecutive failures, for the back-off
        self.fault: str | None = None  # why writes stopped, once they have
        self._writer = threading.Thread(target=self._run, name="modelchain-writer", daemon=True)
        self._writer.start()
        self._admitter = threading.Thread(
            target=self._run_admission, name="modelchain-admission", daemon=True
        )
        self._admitter.start()

    # -- admission -----------------------------------------------------------

    def _prepare(self, data: bytes) -> _Prepared | Ack:
        """Every check that can refuse a transaction before the log, except the
        signature arithmetic: parsing, limits, ledger, type, time, known keys.
        An envelope already in the log gets its existing acknowledgement."""
        env, tx = decode_submission(data)
        try:
            pairs = _check_signers(env, tx, self.origin, self.contracts, self.store)
            check_time(tx, self._clock(), self.config.skew_ms)
            if self.store.size == 0 and tx.body.get("log_key") != self.log_key.to_string():
                raise WrongLedgerError(
                    "the first transaction must be a genesis naming this log's key"
                )
        except Error:
            # A retry of a logged envelope may be refused now (its time is past
            # the window, its signer since revoked): it still gets its entry.
            # Retries within the window are answered by the writer, so the
            # common path pays no lookup here.
            known = self._logged(env, tx)
            if known is not None:
                return known
            raise
        return _Prepared(env, tx, env.pae(), pairs)

    def _logged(self, env: Envelope, tx: Transaction) -> Ack | None:
        """The acknowledgement of ``env`` if the log holds it already (another
        transaction reusing its nonce goes on through admission, to be refused
        as a replay once its signatures are known to be good)."""
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
        """Every check that can refuse a transaction before it reaches the log."""
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
    def checkpoint_size(self) -> int:
        return self._cp_size

    def _release(self, count: int) -> None:
        with self._backlog_lock:
            self._backlog -= count

    def submit_async(self, data: bytes) -> Future[Ack]:
        """Admit ``data``; the future resolves once its entry is durable.

        Malformed input, a wrong ledger or time, an unknown key and overload
        (PushbackError) raise here; a signature that does not verify fails the
        future. Nothing refused is ever written."""
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
            self._enqueue_verified(batch, results)

    def _enqueue_verified(
        self, ready: list[tuple[_Prepared, Future[Ack]]], results: Sequence[bool]
    ) -> None:
        at = 0
        for p, fut in ready:
            ok = results[at : at + len(p.pairs)]
            at += len(p.pairs)
            if all(ok):
                self._queue.put(_Admitted(p.envelope, p.tx, fut))
                continue
            self._release(1)
            who = p.pairs[ok.index(False)][0].name
            fut.set_exception(SignatureError(f"signature by {who} does not verify"))

    # -- the writer ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._write_loop()
        except BaseException as exc:
            self._stop_writes(exc)

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            if self.fault is not None:  # set by a checkpoint published for a reader
                raise NodeStoppedError(self.fault)
            timeout = None
            if self._cp_due is not None:
                timeout = max(0.0, self._cp_due - time.monotonic())
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._maybe_checkpoint(force_time=True)
                continue
            batch, stop = _take_batch(self._queue, first, self.config.max_batch)
            if batch:
                try:
                    self._write(batch)
                finally:
                    self._release(len(batch))
                self._maybe_checkpoint(force_time=False)

    def _write(self, batch: list[_Admitted]) -> None:
        """Append ``batch``; on failure fail its futures, and raise only if the
        store may now hold something other than what this writer believes."""
        try:
            self._process(batch)
        except BaseException as exc:
            if not isinstance(exc, Error):
                _log.error("appending a batch failed unexpectedly", exc_info=exc)
            err = exc if isinstance(exc, Error) else StorageError(f"append failed: {exc!r}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            self.store.check_writable()

    def _stop_writes(self, exc: BaseException) -> None:
        """The writer cannot go on: refuse writes from now on (503, /healthz
        fails), and fail whatever is queued instead of leaving it waiting."""
        if self.fault is None:
            self.fault = exc.message if isinstance(exc, Error) else repr(exc)
        reason = self.fault
        _log.critical("the writer stopped; this node takes no more writes", exc_info=exc)
        err = NodeStoppedError(f"this node stopped taking writes: {reason}")
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._release(1)
            if not item.future.done():
                item.future.set_exception(err)

    def _process(self, batch: list[_Admitted]) -> None:
        live: list[_Admitted] = []
        firsts: dict[str, _Admitted] = {}  # nonce -> the item that will carry it
        twins: list[tuple[_Admitted, _Admitted]] = []  # byte-identical resubmissions
        used = self.store.used_nonces([item.tx.nonce for item in batch])
        for item in batch:
            nonce = item.tx.nonce
            if item.future.set_running_or_notify_cancel() is False:
                continue
            if nonce in used:
                try:
                    ack = self._existing(used[nonce], item.envelope)
                except Error as exc:
                    item.future.set_exception(exc)
                    continue
                if ack is not None:  # logged after this copy was admitted
                    item.future.set_result(ack)
                else:
                    item.future.set_exception(
                        ReplayError(
                            f"nonce {nonce} was already used at index {used[nonce]} by "
                            "another transaction; this one was not applied"
                        )
                    )
                continue
            twin = firsts.get(nonce)
            if twin is not None:
                if twin.envelope == item.envelope:
                    twins.append((item, twin))
                else:
                    item.future.set_exception(
                        ReplayError(
                            f"nonce {nonce} was already used in this batch by another "
                            "transaction; this one was not applied"
                        )
                    )
                continue
            firsts[nonce] = item
            live.append(item)
        if not live:
            return
        first = self._sequencer.sequence(len(live))
        state = Overlay(self.store)
        entries = []
        outcomes = []
        try:
            for i, item in enumerate(live):
                keyids = tuple(s.keyid for s in item.envelope.signatures)
                outcome, writes = self.contracts.execute(state, first + i, item.tx, keyids)
                state.writes.update(writes)
                outcomes.append(outcome)
                entries.append(encode_entry(first + i, item.envelope, outcome))
            index = [
                IndexRow.of(it.tx, out.accepted) for it, out in zip(live, outcomes, strict=True)
            ]
            leaves = self.store.append(entries, [it.tx.nonce for it in live], state.writes, index)
        except BaseException:
            self._sequencer.release(first, len(live))
            raise  # _write fails every future of the batch, twins included
        self.commits += 1
        if self._cp_due is None:
            self._cp_due = time.monotonic() + self.config.checkpoint_interval_ms / 1000
        acks = {}
        for i, item in enumerate(live):
            acks[item.tx.nonce] = ack = Ack(first + i, leaves[i], outcomes[i])
            item.future.set_result(ack)
        for twin, carrier in twins:
            twin.future.set_result(acks[carrier.tx.nonce])

    # -- checkpoints ---------------------------------------------------------

    def _maybe_checkpoint(self, force_time: bool) -> None:
        pending = self.store.size - self._cp_size
        due = self._cp_due is not None and time.monotonic() >= self._cp_due
        if pending >= self.config.checkpoint_every or (pending > 0 and (due or force_time)):
            try:
                self.publish_checkpoint()
            except Error as exc:
                # Writes go on; the checkpoint is tried again after a back-off.
                self.checkpoint_failures += 1
                self._cp_retries += 1
                delay = min(30.0, 0.25 * 2 ** min(self._cp_retries, 7))
                self._cp_due = time.monotonic() + delay
                if self.fault is not None:
                    raise  # the log key must never sign that: stop writes
                _log.error(
                    f"publishing a checkpoint failed ({exc.message}); retrying in {delay:.1f}s"
                )
            else:
                self._cp_retries = 0

    def publish_checkpoint(self) -> bytes | None:
        """Sign and store a checkpoint of the current size if it is new;
        return the latest checkpoint note (None for an empty log)."""
        if self.fault is not None:
            raise NodeStoppedError(f"this node stopped taking writes: {self.fault}")
        with self._cp_lock:
            size, root = self.store.head()
            if size > self._cp_size or (size and self.store.checkpoint() is None):
                note = sign_checkpoint(Checkpoint(self.origin, size, root), self._signer)
                try:
                    self.store.put_checkpoint(size, root, note.to_bytes())
                except RollbackError as exc:
                    # Whoever asked, the writer must not go on under this key.
                    self.fault = exc.message
                    raise NodeStoppedError(
                        f"this node stopped taking writes: {exc.message}"
                    ) from exc
                self._cp_size = size
                self.checkpoint_time = time.time()
            self._cp_due = None
            latest = self.store.checkpoint()
            return None if latest is None else latest[1]

    def close(self) -> None:
        """Finish queued work, publish a final checkpoint, stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._admission.put(None)  # admitted work reaches the writer first
        self._admitter.join()
        self._verifier.close()
        self._queue.put(None)
        self._writer.join()
        if self.fault is None:
            self.publish_checkpoint()
