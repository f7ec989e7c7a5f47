"""The checkpoint publisher: signs and stores checkpoints in its own thread,
fed by the writer, so that signing (a hardware key, later cosignatures or an
anchor) never stalls writes.

A checkpoint is published once ``every`` entries are unpublished, ``interval``
after the first unpublished one, on demand (a read that needs a fresh one) and
on close. A failure is counted and retried after a back-off; a checkpoint the
store refuses as a rollback stops the node's writes (the log key must never
sign it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..core.checkpoint import Checkpoint, sign_checkpoint
from ..core.identity import Signer
from ..errors import Error, NodeStoppedError, RollbackError
from ..storage.protocols import LedgerStore

__all__ = ["CheckpointPublisher"]

_log = logging.getLogger("modelchain.node")


class CheckpointPublisher:
    """Publishes the checkpoints of ``store`` under ``signer``'s name and key;
    ``on_fault`` is told why, once a checkpoint is refused as a rollback."""

    def __init__(
        self,
        store: LedgerStore,
        signer: Signer,
        *,
        every: int,
        interval_ms: int,
        on_fault: Callable[[str], None],
    ) -> None:
        self._store = store
        self._signer = signer
        self._every = every
        self._interval = interval_ms / 1000
        self._on_fault = on_fault
        latest = store.checkpoint()
        self.size = latest[0] if latest else 0  # of the latest published checkpoint
        self.time = time.time()  # when one was last signed (or this started)
        self.failures = 0  # checkpoints that could not be stored (retried)
        self.fault: str | None = None
        self._lock = threading.Lock()  # one publication at a time
        self._cond = threading.Condition(threading.Lock())
        self._written = store.size  # the store's size, as the writer last said
        # When the first unpublished entry is due (entries left unpublished by
        # a crash are due at once).
        self._due: float | None = time.monotonic() if self._written > self.size else None
        self._retry_at: float | None = None  # back-off after a failure
        self._retries = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="modelchain-publisher", daemon=True)
        self._thread.start()

    def wrote(self, size: int) -> None:
        """The writer made the log ``size`` entries long (called after each commit)."""
        with self._cond:
            self._written = size
            if self._due is None:
                self._due = time.monotonic() + self._interval
                self._cond.notify()
            elif size - self.size >= self._every:
                self._cond.notify()

    def _wait(self) -> bool:
        """Wait until a checkpoint is due; False once stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                pending = self._written - self.size
                if self._retry_at is not None:
                    wake: float | None = self._retry_at
                elif pending >= self._every:
                    return True
                else:
                    wake = self._due if pending > 0 else None
                if wake is not None and now >= wake:
                    self._retry_at = None
                    return True
                self._cond.wait(None if wake is None else wake - now)
            return False

    def _run(self) -> None:
        while self.fault is None and self._wait():
            try:
                self.publish()
            except Error as exc:
                if self.fault is not None:
                    return
                self.failures += 1
                self._retries += 1
                delay = min(30.0, 0.25 * 2 ** min(self._retries, 7))
                with self._cond:
                    self._retry_at = time.monotonic() + delay
                _log.error(
                    f"publishing a checkpoint failed ({exc.message}); retrying in {delay:.1f}s"
                )
            except BaseException as exc:  # a bug of ours: logged, retried like a failure
                _log.error("publishing a checkpoint failed unexpectedly", exc_info=exc)
                self.failures += 1
                with self._cond:
                    self._retry_at = time.monotonic() + 1.0
            else:
                self._retries = 0

    def publish(self) -> bytes | None:
        """Sign and store a checkpoint of the store's current size if it is
        new; return the latest checkpoint note (None for an empty log)."""
        if self.fault is not None:
            raise NodeStoppedError(f"this node stopped taking writes: {self.fault}")
        with self._lock:
            size, root = self._store.head()
            if size > self.size or (size and self._store.checkpoint() is None):
                note = sign_checkpoint(Checkpoint(self._signer.name, size, root), self._signer)
                try:
                    self._store.put_checkpoint(size, root, note.to_bytes())
                except RollbackError as exc:
                    # Whoever asked, the node must not go on under this key.
                    self.fault = exc.message
                    self._on_fault(exc.message)
                    raise NodeStoppedError(
                        f"this node stopped taking writes: {exc.message}"
                    ) from exc
                self.size = size
                self.time = time.time()
            with self._cond:
                # What the writer made since the head was read is due in turn.
                more = self._written > self.size
                self._due = time.monotonic() + self._interval if more else None
                self._retry_at = None
            latest = self._store.checkpoint()
            return None if latest is None else latest[1]

    def stop(self) -> None:
        """Stop the thread (without a final checkpoint: the caller publishes it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
