"""The receipt log: records model decisions and batches them into the ledger.

``ReceiptLog.record(inputs, outputs)`` hashes the input and output, each with a
fresh 16-byte salt, and appends the record to a per-record journal beside the
receipt store with one ``write()``; it never waits on the ledger. A background
thread closes a batch every ``batch_size`` records or ``batch_ms`` milliseconds,
builds its RFC 9162 tree from the journal, writes it to the receipt store
(SQLite, WAL, beside the caller) and then submits one ``inference.batch``
transaction carrying the root, the count and the time range.

Durability: once ``record()`` returns, the record is in the kernel's page cache
and survives the death of the process (``kill -9`` included), though not a power
loss unless the log was opened with ``durability="fsync"`` (then every
``record()`` waits for the disk) or ``sync()`` has returned since. A log opened
on the same store later recovers every journal record that is not yet in a
written batch, forms batches of them and submits them as usual. Batches written
but not yet in the ledger (unreachable ledger, crash) stay on disk and are
submitted in order by the next ``ReceiptLog`` on the same store; each batch's
transaction nonce is its batch id, so a batch is never logged twice.

The journal is a folder ``<store>.journal`` of segment files, one per batch,
each named for the log session that writes it and locked (``flock``) while that
session lives. A batch row records its session and the sequence number of its
last record, and is written only if that session's earlier rows end before its
first record, in the same SQLite transaction: so a record reaches the store at
most once, whichever process recovers it and whenever one is killed; the
segment is deleted only after its batch is committed.

Nothing here reads the environment: the store's path is the caller's choice
(``Ledger.receipts`` picks one under the client's home). The journal's format is in
``journal``, the store's schema in ``store``, the leaf's encoding in ``encoding``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contracts.state import deployment_key, model_key
from ..contracts.types import INFERENCE_BATCH
from ..core import canonical
from ..core.b64 import b64
from ..core.identity import Signer
from ..core.merkle import MemoryTree, leaf_hash
from ..errors import Error, NotFoundError, PushbackError, StorageError, UsageError
from ..storage.files import fsync_dir
from .encoding import BIG, RECEIPT_VERSION, SALT_SIZE, salted
from .journal import (
    Parsed,
    Session,
    check_extension,
    pack_record,
    parse_segment,
    read_fd,
    segment_head,
)
from .store import (
    BatchWriter,
    count_pending,
    find_batch,
    mark_batch,
    open_store,
    pending_batches,
    read_only,
)
from .worker import BatchWorker

if TYPE_CHECKING:
    from ..ledger.port import LedgerPort

__all__ = ["DURABILITY", "ReceiptLog"]

DURABILITY = ("process", "fsync")
"""``process``: a returned ``record()`` survives the process being killed;
``fsync``: it survives a power loss too (each ``record()`` waits for the disk)."""

_sha = hashlib.sha256
_urandom = os.urandom
_time_ns = time.time_ns
_write = os.write
_crc32 = zlib.crc32

# Closed batches whose segments still wait to be written to the store. More than
# this means the store cannot keep up (or is failing): record() pushes back
# rather than holding an open file and unbounded memory per batch.
_MAX_WAITING = 64


class _Segment:
    """A journal segment this process writes: one batch, locked while open."""

    __slots__ = ("count", "fd", "first_seq", "path", "plain")

    def __init__(self, path: Path, fd: int, first_seq: int) -> None:
        self.path = path
        self.fd = fd
        self.first_seq = first_seq
        self.count = 0
        self.plain = True


class ReceiptLog:
    """Batches inference records into ``inference.batch`` transactions.

    ``store`` is the path of the receipt store (its journal goes beside it);
    ``Ledger.receipts()`` chooses one under the client's home when not given.
    ``ledger`` may be ``None`` (or closed, or read-only): batches then wait in
    the store until a log on the same store can reach a ledger. ``version`` is
    the model version; without it, the version deployed to ``env``, else the
    latest registered one. With ``pin_env`` each batch names ``env`` and the
    ledger rejects it unless that version is deployed there when the batch
    arrives (so a batch queued across a rollback would be rejected).
    ``durability`` is one of ``DURABILITY``. Opening a log recovers the journal
    records that logs on the same store left unbatched (killed, or closed while
    the store failed) and writes them as batches before it returns.

    ``worker``: build and write batches in a separate process, so that the
    process calling ``record()`` spends its interpreter on nothing else. ``None``
    (the default) starts one once a batch of at least 1,024 records fills before
    ``batch_ms`` (sustained load); ``False`` keeps the work on the log's thread.
    Without ``background`` there is no thread and no worker: a full batch is
    written by the ``record()`` call that fills it, and ``flush()`` submits.
    """

    def __init__(
        self,
        ledger: LedgerPort | None,
        model: str,
        env: str | None = None,
        version: int | None = None,
        *,
        signer: Signer | None = None,
        store: str | os.PathLike[str] | None = None,
        origin: str | None = None,
        batch_size: int = 4096,
        batch_ms: int = 200,
        background: bool = True,
        retry_ms: int = 1000,
        pin_env: bool = False,
        durability: str = "process",
        worker: bool | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise UsageError("model must be a non-empty string")
        if batch_size < 1 or batch_ms < 1:
            raise UsageError("batch_size and batch_ms must be positive")
        if durability not in DURABILITY:
            raise UsageError(f"durability is one of {', '.join(DURABILITY)}, not {durability!r}")
        if store is None:
            raise UsageError(
                "give the receipt store's path (store=...); Ledger.receipts() picks one "
                "under the ledger client's home"
            )
        self.ledger = ledger
        self.model = model
        self.env = env
        self.signer = signer if signer is not None else (ledger.identity if ledger else None)
        if origin is None:
            if ledger is None:
                raise UsageError("without a ledger, give the origin (or a store path)")
            origin = ledger.origin
        self.origin = origin
        self.version = self._resolve_version(version)
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.retry_ms = retry_ms
        self.durability = durability
        self.last_error: str | None = None
        self.damaged: list[Path] = []
        self.path = Path(store)
        self.journal = self.path.with_name(self.path.name + ".journal")
        self.journal.mkdir(mode=0o700, parents=True, exist_ok=True)
        if durability == "fsync":
            fsync_dir(self.journal.parent)
        self._session = Session(secrets.token_hex(8), model, self.version, env if pin_env else None)
        self._rid_prefix = self._session.id + "-"
        self._started = time.time_ns()
        self._db = open_store(self.path)
        self._db_closed = False  # after close(), lookups read the store on their own
        self._dblock = threading.Lock()
        self._writer = BatchWriter(self._db, self._dblock, self.path)
        self._use_worker = worker
        self._worker: BatchWorker | None = None
        # Hot-path state, guarded by _lock.
        self._lock = threading.Lock()
        self._seg: _Segment | None = None
        self._fd = -1
        self._n = 0
        self._seq = 0
        self._plain = True
        self._salts = b""
        self._opened = 0.0
        self._closed: list[_Segment] = []
        self._closing = False
        # Background work: one processing pass at a time.
        self._work = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._next_retry = 0.0
        self._thread: threading.Thread | None = None
        try:
            self._recover()
        except BaseException:
            self._db.close()
            raise
        if background:
            if worker:
                self._start_worker()
            self._thread = threading.Thread(target=self._run, name="modelchain-receipts")
            self._thread.daemon = True
            self._thread.start()
        else:
            self._process(submit=True, force=False)

    def _resolve_version(self, version: int | None) -> int:
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise UsageError("version must be an integer >= 1")
            return version
        if self.ledger is None:
            raise UsageError("without a ledger, give the model version")
        get = self.ledger.store.get_state
        if self.env is not None:
            dep = get(deployment_key(self.model, self.env))
            if not isinstance(dep, dict):
                raise NotFoundError(f"model {self.model} is not deployed to {self.env}")
            return int(dep["version"])
        entity = get(model_key(self.model))
        if not isinstance(entity, dict) or not entity.get("latest"):
            raise NotFoundError(f"model {self.model} has no registered version")
        return int(entity["latest"])

    # -- hot path ------------------------------------------------------------------

    def record(
        self,
        inputs: Any,
        outputs: Any,
        meta: Any = None,
        request_id: str | None = None,
    ) -> str:
        """Record one decision; returns its request id once the record is in the
        journal (never waits on the ledger). PushbackError if batches cannot be
        written to the store as fast as they fill."""
        if request_id is None and meta is None:
            ext, rl, ml = b"", 0, 0
        else:
            ext, rl, ml = check_extension(request_id, meta)
        # Bytes and str are hashed inline: a function call is a third of the budget.
        ti, to = type(inputs), type(outputs)
        with self._lock:
            if self._fd < 0:
                self._open_segment()
            n = self._n
            o = n << 5
            salts = self._salts
            if ti is bytes and len(inputs) < BIG:
                ih = _sha(salts[o : o + 16] + b"B" + inputs).digest()
            elif ti is str:
                ih = _sha(salts[o : o + 16] + b"S" + inputs.encode()).digest()
            else:
                ih = salted(salts[o : o + 16], inputs)
            if to is str:
                oh = _sha(salts[o + 16 : o + 32] + b"S" + outputs.encode()).digest()
            elif to is bytes and len(outputs) < BIG:
                oh = _sha(salts[o + 16 : o + 32] + b"B" + outputs).digest()
            else:
                oh = salted(salts[o + 16 : o + 32], outputs)
            # A number is used once even if its write fails.
            self._seq = seq = self._seq + 1
            rec = pack_record(seq, _time_ns() // 1_000_000, rl, ml, salts[o : o + 32], ih, oh)
            if ext:
                rec += ext
                self._plain = False
            rec += _crc32(rec).to_bytes(4, "little")
            try:
                if _write(self._fd, rec) != len(rec):
                    raise OSError("short write (disk full?)")
            except OSError as exc:
                # What reached the file is a torn last record, which recovery skips;
                # nothing more goes into this segment.
                self._plain = False
                self._close_locked()
                raise StorageError(f"cannot write to the receipt journal: {exc}") from exc
            self._n = n = n + 1
            if n < self.batch_size:
                return request_id if request_id is not None else self._rid_prefix + str(seq)
            self._close_locked()
        # A full batch: the background thread writes it; without one, this thread does.
        if self._thread is not None:
            self._wake.set()
        else:
            self._process_quietly(submit=False)
        return request_id if request_id is not None else self._rid_prefix + str(seq)

    def _open_segment(self) -> None:
        """Start the journal segment of the next batch (under _lock)."""
        if self._closing:
            raise UsageError("this receipt log is closed")
        if len(self._closed) >= _MAX_WAITING:
            raise PushbackError(
                f"{len(self._closed)} batches wait to be written to {self.path}; retry later",
                retry_after=self.batch_ms / 1000,
            )
        first = self._seq + 1
        name = f"{self._started:020d}-{self._session.id}-{first:020d}"
        tmp = self.journal / (name + ".tmp")
        path = self.journal / (name + ".seg")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND
        if self.durability == "fsync":
            flags |= os.O_DSYNC
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot create a receipt journal segment: {exc}") from exc
        try:
            # Locked and given its header before it gets a name that recovery reads:
            # a recovering log skips a locked segment, and never sees one half made.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write(fd, segment_head(self._session, first))
            os.rename(tmp, path)
            if self.durability == "fsync":
                fsync_dir(self.journal)
        except OSError as exc:
            os.close(fd)
            for left in (tmp, path):
                with contextlib.suppress(OSError):
                    os.unlink(left)
            raise StorageError(f"cannot create a receipt journal segment: {exc}") from exc
        self._seg = _Segment(path, fd, first)
        self._fd = fd
        self._n = 0
        self._plain = True
        self._salts = _urandom(2 * SALT_SIZE * self.batch_size)
        self._opened = time.monotonic()

    def _close_locked(self) -> None:
        if self._seg is not None:
            self._seg.count = self._n
            self._seg.plain = self._plain
            self._closed.append(self._seg)
            self._seg = None
            self._fd = -1
            self._n = 0

    # -- background ----------------------------------------------------------------

    def _run(self) -> None:
        tick = self.batch_ms / 1000
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            stop = self._stop
            self._process_quietly(submit=True, force=stop)
            if stop:
                return

    def _process_quietly(self, *, submit: bool, force: bool = False) -> None:
        try:
            self._process(submit=submit, force=force)
        except Exception as exc:  # the batch stays queued; the error is reported
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _process(self, *, submit: bool, force: bool) -> None:
        if self._db_closed:
            raise UsageError(
                f"this receipt log is closed; a ReceiptLog opened on {self.path} "
                "writes and submits what waits"
            )
        with self._work:
            with self._lock:
                if self._seg is not None and (
                    force or time.monotonic() - self._opened >= self.batch_ms / 1000
                ):
                    self._close_locked()
                waiting = list(self._closed)
            for seg in waiting:
                self._persist(seg)
                with self._lock:
                    self._closed.pop(0)
            if submit and (force or time.monotonic() >= self._next_retry):
                self._submit_pending()

    def _persist(self, seg: _Segment) -> None:
        """Write a closed segment's batch to the store, then delete the segment."""
        if (
            self._use_worker is None
            and self._thread is not None
            and seg.count >= max(1024, self.batch_size)
        ):
            # A batch of 1,024 or more filled up: a sustained load (see __init__).
            self._use_worker = True
            self._start_worker()
        parsed: Parsed | None = None
        worker = self._worker
        if worker is not None and worker.ready():
            try:
                parsed = worker.persist(seg.path, seg.plain)
            except StorageError as exc:
                # Try once here: the same failure then reaches the caller as ours.
                self.last_error = f"the receipt worker failed: {exc}"
            except OSError as exc:
                # The worker died: this thread takes over; a batch it committed first
                # is found in the store and not written again.
                self._worker = None
                worker.stop()
                self.last_error = f"the receipt worker stopped ({exc}); writing on a thread"
        elif worker is not None and worker.failed:
            self._worker = None
            worker.stop()
        if parsed is None:
            parsed = parse_segment(read_fd(seg.fd), plain=seg.plain)
            self._writer.store(parsed)
        self._retire(seg.path, parsed)
        os.close(seg.fd)

    def _start_worker(self) -> None:
        try:
            self._worker = BatchWorker(self.path)
        except OSError as exc:  # the thread does the work
            self.last_error = f"cannot start a receipt worker: {exc}"

    def _retire(self, path: Path, parsed: Parsed) -> None:
        """Delete a segment whose records are in the store, or set a damaged one aside
        (its records before the damage are in the store) for someone to look at."""
        try:
            if parsed.damaged:
                aside = path.with_suffix(".damaged")
                os.replace(path, aside)
                self.damaged.append(aside)
                self.last_error = f"journal segment {aside} is damaged: {parsed.problem}"
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass  # its owner finished it while we waited for the lock

    def _recover(self) -> None:
        """Write the batches of journal segments that no live log holds, oldest first."""
        for name in sorted(os.listdir(self.journal)):
            if not name.endswith((".seg", ".tmp")):
                continue
            path = self.journal / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # finished by its owner meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live log is writing it
                if name.endswith(".tmp"):
                    # Killed while making a segment: it has no record yet.
                    path.unlink(missing_ok=True)
                    continue
                parsed = parse_segment(read_fd(fd))
                self._writer.store(parsed)
                self._retire(path, parsed)
            finally:
                os.close(fd)

    def _submit_pending(self) -> None:
        """Submit every written batch not yet in the ledger, in order; stop at the first
        that cannot be submitted (it and those after it wait for the next attempt)."""
        with self._dblock:
            rows = pending_batches(self._db)
        for seq, batch_id, model, version, env, root, count, first, last in rows:
            try:
                status, index, error = self._submit_one(
                    batch_id, model, version, env, root, count, first, last
                )
            except (Error, OSError, sqlite3.Error) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._next_retry = time.monotonic() + self.retry_ms / 1000
                return
            with self._dblock:
                mark_batch(self._db, seq, status, index, error)
        self.last_error = None

    def _submit_one(
        self,
        batch_id: str,
        model: str,
        version: int,
        env: str | None,
        root: bytes,
        count: int,
        first: int,
        last: int,
    ) -> tuple[str, int, str | None]:
        led = self.ledger
        if led is None:
            raise UsageError("no ledger to submit to")
        if led.origin != self.origin:
            raise UsageError(f"the ledger is {led.origin}, this store belongs to {self.origin}")
        if self.signer is None:
            raise UsageError("no signer for inference.batch transactions")
        done = led.store.nonce_index(batch_id)
        if done is None:
            body: dict[str, Any] = {
                "model": model,
                "version": version,
                "root": root.hex(),
                "count": count,
                "first_time": first,
                "last_time": last,
                "batch_id": batch_id,
            }
            if env is not None:
                body["env"] = env
            tx = led.transaction(INFERENCE_BATCH, body, self.signer.name, nonce=batch_id)
            ack = led.submit(tx.sign(self.signer))
            if not ack.outcome.accepted:
                return "rejected", ack.index, f"{ack.outcome.code}: {ack.outcome.reason}"
            return "submitted", ack.index, None
        outcome = led.entry(done).outcome
        if not outcome.accepted:
            return "rejected", done, f"{outcome.code}: {outcome.reason}"
        return "submitted", done, None

    # -- control -------------------------------------------------------------------

    def sync(self) -> None:
        """Close the open batch and return once every record so far is in the store
        (which survives a power loss: it is written with SQLite's synchronous=FULL)."""
        self._process(submit=False, force=True)

    def flush(self) -> int:
        """Close the open batch, write it, submit what waits; return how many batches
        are still waiting (0 once the ledger has taken them all)."""
        self._process(submit=True, force=True)
        return self.pending()

    def pending(self) -> int:
        with self._reading() as db:
            return count_pending(db)

    def close(self) -> None:
        """Write and submit what waits, stop the background thread and close the store.
        A batch that cannot be written stays in the journal for the next log."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            if self._thread is not None:
                self._stop = True
                self._wake.set()
                self._thread.join()
                self._thread = None
            self._process(submit=True, force=True)
        finally:
            with self._lock:
                for seg in self._closed:
                    os.close(seg.fd)
                self._closed.clear()
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
            with self._dblock:
                self._db.close()
                self._db_closed = True

    def __enter__(self) -> ReceiptLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- receipts ------------------------------------------------------------------

    def batch_status(self, request_id: str) -> str:
        """``pending``, ``submitted`` or ``rejected``; NotFoundError if the record is
        not (yet) in the store."""
        return str(self._lookup(request_id)[1]["status"])

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The store, to read: the log's own connection, or after close() one opened
        read-only for this lookup (receipts stay answerable once the log is closed)."""
        with self._dblock:
            if not self._db_closed:
                try:
                    yield self._db
                except sqlite3.Error as exc:
                    raise StorageError(f"cannot read the receipt store {self.path}: {exc}") from exc
                return
        with read_only(self.path) as db:
            yield db

    def _lookup(self, request_id: str) -> tuple[int, dict[str, Any]]:
        with self._reading() as db:
            batch = find_batch(db, request_id, self.path)
        # Find the leaf by its request id: leaves are canonical JSON, one a line.
        leaves = bytes(batch["leaves"])
        needle = b'"request_id":' + canonical.dumps(request_id) + b","
        pos = leaves.find(needle)
        while pos >= 0:
            # The needle could also sit inside a record's meta: confirm on the leaf.
            start = leaves.rfind(b"\n", 0, pos) + 1
            end = leaves.find(b"\n", pos)
            leaf = leaves[start : end if end >= 0 else len(leaves)]
            if canonical.loads_canonical(leaf).get("request_id") == request_id:
                return leaves.count(b"\n", 0, pos), batch
            pos = leaves.find(needle, pos + 1)
        raise NotFoundError(f"no record {request_id!r} in {self.path}")

    def receipt(self, request_id: str) -> dict[str, Any]:
        """A complete receipt: the record and its salts, its path in the batch, and a
        C2SP tlog-proof of the batch entry. NotFoundError while the batch is not in
        the ledger."""
        idx, batch = self._lookup(request_id)
        if batch["status"] == "pending" and not self._db_closed:
            self.flush()
            idx, batch = self._lookup(request_id)
        if batch["status"] == "pending":
            raise NotFoundError(
                f"the batch of {request_id!r} was not in the ledger when this receipt log "
                f"closed ({self.last_error or 'not submitted'}); a ReceiptLog opened on "
                f"{self.path} with the ledger submits it"
            )
        if batch["status"] != "submitted":
            raise NotFoundError(
                f"the batch of {request_id!r} is {batch['status']}: {batch['error'] or ''}"
            )
        led = self.ledger
        if led is None:
            raise UsageError("this receipt log has no ledger to prove its batches in")
        entry_index = int(batch["entry_index"])
        leaves = bytes(batch["leaves"]).split(b"\n")
        tree = MemoryTree(leaf_hash(x) for x in leaves)
        salts = bytes(batch["salts"])
        o = idx << 5
        return {
            "v": RECEIPT_VERSION,
            "record": canonical.loads_canonical(leaves[idx]),
            "salt_input": salts[o : o + 16].hex(),
            "salt_output": salts[o + 16 : o + 32].hex(),
            "batch": {
                "id": batch["batch_id"],
                "root": bytes(batch["root"]).hex(),
                "count": int(batch["count"]),
                "index_in_batch": idx,
                "path": [b64(h) for h in tree.inclusion_proof(idx)],
            },
            "ledger": {
                "entry_index": entry_index,
                "tlog_proof": led.tlog_proof(entry_index).to_text(),
                "entry": b64(led.entry_bytes(entry_index)),
            },
        }
