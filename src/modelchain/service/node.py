"""The node: admit -> sequence -> execute -> append -> acknowledge -> checkpoint.

Admission (parsing, signatures, replay window) runs in the submitting thread,
so signature checks use every core. One writer thread drains a bounded queue in
batches: each batch is executed and committed in one durable SQLite transaction
(group commit) before any of its submitters is acknowledged.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from ..contracts import ContractSet, Overlay
from ..core.checkpoint import Checkpoint, sign_checkpoint
from ..core.dsse import Envelope
from ..core.identity import Signer, verifier_of
from ..core.tx import Outcome, Transaction, check_time, decode_submission, encode_entry
from ..engines.sequencer import Sequencer
from ..errors import (
    Error,
    MalformedError,
    PushbackError,
    ReplayError,
    SignatureError,
    StorageError,
    UnknownKeyError,
    WrongLedgerError,
)
from ..storage.sqlite import SqliteStore

__all__ = ["Ack", "Node", "NodeConfig", "system_clock_ms"]


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


@dataclass
class _Admitted:
    envelope: Envelope
    tx: Transaction
    future: Future[Ack]


_STOP = object()


class Node:
    def __init__(
        self,
        store: SqliteStore,
        log_signer: Signer,
        contracts: ContractSet,
        sequencer: Sequencer,
        config: NodeConfig | None = None,
        clock: Callable[[], int] = system_clock_ms,
    ) -> None:
        self.store = store
        self.contracts = contracts
        self.config = config or NodeConfig()
        self.origin = log_signer.name
        self.log_key = verifier_of(log_signer)
        self._signer = log_signer
        self._sequencer = sequencer
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(maxsize=self.config.max_backlog)
        self._cp_lock = threading.Lock()
        latest = store.checkpoint()
        self._cp_size = latest[0] if latest else 0
        self._cp_due: float | None = None
        self._closed = False
        self.commits = 0  # group commits made: entries / commits is the batch size
        self._writer = threading.Thread(target=self._run, name="modelchain-writer", daemon=True)
        self._writer.start()

    # -- admission -----------------------------------------------------------

    def admit(self, data: bytes) -> tuple[Envelope, Transaction]:
        """Every check that can refuse a transaction before it reaches the log."""
        env, tx = decode_submission(data)
        if tx.ledger != self.origin:
            raise WrongLedgerError(f"transaction is for ledger {tx.ledger!r}, not {self.origin!r}")
        self.contracts.check(tx)
        check_time(tx, self._clock(), self.config.skew_ms)
        if self.store.size == 0 and tx.body.get("log_key") != self.log_key.to_string():
            raise WrongLedgerError("the first transaction must be a genesis naming this log's key")
        pae = env.pae()
        keyids: set[str] = set()
        names: set[str] = set()
        for sig in env.signatures:
            if sig.keyid in keyids:
                raise MalformedError(f"key {sig.keyid} signed twice")
            found = self.contracts.signer(self.store, sig.keyid, tx)
            if found is None:
                raise UnknownKeyError(
                    f"key {sig.keyid} is not the key of any member of {self.origin}"
                )
            name, key = found
            key.verify(pae, sig.sig)
            keyids.add(sig.keyid)
            names.add(name)
        if tx.actor not in names:
            raise SignatureError(f"the actor {tx.actor!r} did not sign this transaction")
        return env, tx

    def submit_async(self, data: bytes) -> Future[Ack]:
        """Admit ``data`` and queue it; the future resolves once it is durable."""
        if self._closed:
            raise StorageError("the node is closed")
        env, tx = self.admit(data)
        fut: Future[Ack] = Future()
        try:
            self._queue.put_nowait(_Admitted(env, tx, fut))
        except queue.Full:
            raise PushbackError(
                f"{self.config.max_backlog} transactions are waiting; retry shortly",
                retry_after=0.5,
            ) from None
        return fut

    def submit(self, data: bytes, timeout: float | None = 60.0) -> Ack:
        return self.submit_async(data).result(timeout)

    # -- the writer ----------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            timeout = None
            if self._cp_due is not None:
                timeout = max(0.0, self._cp_due - time.monotonic())
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._maybe_checkpoint(force_time=True)
                continue
            batch: list[_Admitted] = []
            item: object = first
            while True:
                if item is _STOP:
                    stop = True
                else:
                    assert isinstance(item, _Admitted)
                    batch.append(item)
                if stop or len(batch) >= self.config.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._process(batch)
                self._maybe_checkpoint(force_time=False)

    def _process(self, batch: list[_Admitted]) -> None:
        live: list[_Admitted] = []
        seen: set[str] = set()
        for item in batch:
            nonce = item.tx.nonce
            if item.future.set_running_or_notify_cancel() is False:
                continue
            used = None if nonce in seen else self.store.nonce_index(nonce)
            if nonce in seen or used is not None:
                where = "in this batch" if used is None else f"at index {used}"
                item.future.set_exception(
                    ReplayError(
                        f"nonce {nonce} was already used {where}; the retry was not applied"
                    )
                )
                continue
            seen.add(nonce)
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
            leaves = self.store.append(entries, [it.tx.nonce for it in live], state.writes)
        except BaseException as exc:
            self._sequencer.release(first, len(live))
            err = exc if isinstance(exc, Error) else StorageError(f"append failed: {exc}")
            for item in live:
                item.future.set_exception(err)
            return
        self.commits += 1
        if self._cp_due is None:
            self._cp_due = time.monotonic() + self.config.checkpoint_interval_ms / 1000
        for i, item in enumerate(live):
            item.future.set_result(Ack(first + i, leaves[i], outcomes[i]))

    # -- checkpoints ---------------------------------------------------------

    def _maybe_checkpoint(self, force_time: bool) -> None:
        pending = self.store.size - self._cp_size
        due = self._cp_due is not None and time.monotonic() >= self._cp_due
        if pending >= self.config.checkpoint_every or (pending > 0 and (due or force_time)):
            self.publish_checkpoint()

    def publish_checkpoint(self) -> bytes | None:
        """Sign and store a checkpoint of the current size if it is new;
        return the latest checkpoint note (None for an empty log)."""
        with self._cp_lock:
            size = self.store.size
            if size > self._cp_size or (size and self.store.checkpoint() is None):
                root = self.store.root()
                note = sign_checkpoint(Checkpoint(self.origin, size, root), self._signer)
                self.store.put_checkpoint(size, note.to_bytes())
                self._cp_size = size
            self._cp_due = None
            latest = self.store.checkpoint()
            return None if latest is None else latest[1]

    def close(self) -> None:
        """Finish queued work, publish a final checkpoint, stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join()
        self.publish_checkpoint()
