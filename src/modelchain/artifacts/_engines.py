"""Hashing engines: SHA-256, sharded SHA-256 and BLAKE3 over files, on a small pool of
threads (hashlib and blake3 release the GIL) with fixed-size buffers, answered from the
digest cache where it can; a safetensors file's tensors are hashed from the same reads,
and so is an upload to an artifact store (a ``Tee``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import count
from queue import SimpleQueue
from typing import Any, Protocol

from ..core.manifest import BLAKE3, TensorDigest, object_ref
from ..errors import UsageError
from ._safetensors import TensorSweep, tensor_spans
from ._walk import changed, same_file, unreadable
from .cache import DigestCache

__all__ = [
    "CHUNK",
    "PIPELINE_MIN",
    "Entry",
    "Hasher",
    "Progress",
    "Tee",
    "Upload",
    "default_workers",
    "hash_entries",
    "new_hasher",
]

Progress = Callable[[int, int], None]
"""Called with (bytes hashed, bytes to hash) from worker threads, at most about 10 times a
second and once at the end. Files answered from the cache are not counted in either."""

# Measured on the 2-core reference VM: reads of 256 KiB to 16 MiB, readinto or pread, with
# or without fadvise(SEQUENTIAL), hash within 3% of each other; mmap was 5% slower.
# 4 MiB keeps per-worker memory small and system calls few.
CHUNK = 4 << 20
# A file at least this big, with cores left idle by the rest of the work, is read on one
# thread and hashed on others (file and tensors in parallel), overlapping I/O and hashing:
# measured +5% for one big file, and a safetensors file with its tensors at 0.93 of the
# file-only speed instead of about half.
PIPELINE_MIN = 64 << 20
_RING = 3  # buffers in flight per pipelined file: 12 MiB
_PROGRESS_INTERVAL = 0.1
# Timestamps come from a coarse clock: a write in the same tick as the last one can leave
# mtime and ctime unchanged. A file is only cached when it was last changed well before we
# started reading it (git's "racily clean" rule); 2 s on filesystems with whole seconds.
_RACY_NS = 100_000_000
_RACY_COARSE_NS = 2_000_000_000


class Hasher(Protocol):
    def update(self, data: memoryview | bytes, /) -> object: ...
    def hexdigest(self) -> str: ...


class Upload(Protocol):
    """One object on its way into a store: written chunk by chunk, then committed under
    the ref its bytes hashed to, or aborted (nothing appears under any ref)."""

    def write(self, data: memoryview, /) -> None: ...
    def commit(self, ref: str, /) -> None: ...
    def abort(self) -> None: ...


class Tee(Protocol):
    """Where the bytes read for hashing go as well (an artifact store), so that hashing
    and uploading a file read it once. ``has`` lets a cached file that is already
    stored be answered without any read; ``upload(resume)`` names a large file's upload
    by the file, so that an interrupted one is continued (``_resume_name``)."""

    def has(self, ref: str, /) -> bool: ...
    def upload(self, resume: str | None = None) -> Upload: ...


class _ShardedHasher:
    """Sharded SHA-256 (``sha256-sharded-<bytes>``) over a stream: the same digest the
    parallel engine makes, for callers that see the bytes once, in order."""

    def __init__(self, shard: int) -> None:
        self._shard = shard
        self._h = hashlib.sha256()
        self._filled = 0
        self._digests: list[bytes] = []

    def update(self, data: memoryview | bytes, /) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            n = min(self._shard - self._filled, view.nbytes)
            self._h.update(view[:n])
            self._filled += n
            view = view[n:]
            if self._filled == self._shard:
                self._digests.append(self._h.digest())
                self._h = hashlib.sha256()
                self._filled = 0

    def hexdigest(self) -> str:
        digests = self._digests + ([self._h.digest()] if self._filled else [])
        return hashlib.sha256(b"".join(digests)).hexdigest()


def new_hasher(algorithm: str) -> Hasher:
    """A streaming hasher whose hex digest is a manifest's file digest by ``algorithm``."""
    shard = _shard_size(algorithm)
    if shard is not None:
        return _ShardedHasher(shard)
    if algorithm == BLAKE3:
        hasher: Hasher = _blake3().blake3(max_threads=1)
        return hasher
    return hashlib.sha256()


# A file at least this large is uploaded so that an interruption can be continued.
RESUME_MIN = 16 << 20

_Consumer = Callable[[int, memoryview], None]  # (offset in file, bytes read there)


class _Cancelled(Exception):
    """Another worker failed or the caller was interrupted: stop reading."""


@dataclass(frozen=True)
class Entry:
    """A file to hash: its OMS path (relative POSIX, ``.`` for a single file), what to
    open, how errors name it (the path as the caller wrote it), its stat when listed, and
    whether to parse it as safetensors and hash each tensor."""

    rel: str
    path: str
    shown: str
    st: os.stat_result
    tensors: bool


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(32, n))


class _Run:
    """State shared by the workers of one hash_path call."""

    def __init__(
        self,
        algorithm: str,
        workers: int,
        total: int,
        progress: Progress | None,
        cache: DigestCache | None,
        started_ns: int,
        allow_symlinks: bool,
        tee: Tee | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.tee = tee
        self.workers = workers
        self.total = total
        self.done = 0
        self.progress = progress
        self.cache = cache
        self.started_ns = started_ns
        self.allow_symlinks = allow_symlinks
        self.stop = threading.Event()
        self.results: dict[str, tuple[str, tuple[TensorDigest, ...]]] = {}
        self._lock = threading.Lock()
        self._next_report = 0.0
        self._local = threading.local()

    def buffer(self) -> bytearray:
        buf: bytearray | None = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = bytearray(CHUNK)
        return buf

    def advance(self, n: int) -> None:
        if self.stop.is_set():
            raise _Cancelled
        with self._lock:
            self.done += n
            if self.progress is not None:
                now = time.monotonic()
                if now >= self._next_report:
                    self._next_report = now + _PROGRESS_INTERVAL
                    # Called under the lock so that reports never go backwards.
                    self.progress(self.done, self.total)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)

    def spare_cores_for(self, size: int) -> bool:
        """Whether the rest of the work leaves the other workers idle for more than half
        the time this file takes (a pipeline competing with busy workers only slows them)."""
        if size < PIPELINE_MIN or self.workers < 2:
            return False
        others = max(0, self.total - self.done - size)
        return 2 * others < size * (self.workers - 1)

    def remember(
        self, entry: Entry, key: str, digest: str, tensors: tuple[TensorDigest, ...]
    ) -> None:
        self.results[entry.rel] = (digest, tensors)
        if self.cache is None:
            return
        st = entry.st
        last_change = max(st.st_mtime_ns, st.st_ctime_ns)
        coarse = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
        if self.started_ns - last_change > (_RACY_COARSE_NS if coarse else _RACY_NS):
            self.cache.put(st, key, digest, tensors)


def _open(entry: Entry, run: _Run) -> tuple[int, os.stat_result]:
    # O_NONBLOCK: never hang on a file swapped for a fifo since it was listed.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not run.allow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(entry.path, flags)
    except OSError as exc:
        raise unreadable(entry.shown, exc) from exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise unreadable(entry.shown, exc) from exc
    if not same_file(st, entry.st):
        os.close(fd)
        raise changed(entry.shown)
    return fd, st


def _pump(fd: int, consumers: list[_Consumer], run: _Run) -> int:
    """Read ``fd`` to its end, giving each chunk to every consumer in turn; bytes read."""
    buf = run.buffer()
    view = memoryview(buf)
    offset = 0
    while True:
        n = os.readv(fd, [buf])
        if n == 0:
            return offset
        chunk = view[:n]
        for consume in consumers:
            consume(offset, chunk)
        offset += n
        run.advance(n)


def _pump_pipelined(fd: int, consumers: list[_Consumer], run: _Run) -> int:
    """As :func:`_pump`, but this thread only reads: each consumer runs on its own thread,
    so reading, hashing the file and hashing its tensors overlap. ``_RING`` buffers."""
    ring = [bytearray(CHUNK) for _ in range(_RING)]
    inboxes: list[SimpleQueue[tuple[int, memoryview] | None]] = [SimpleQueue() for _ in consumers]
    # Each consumer acknowledges chunks in order, so the next acknowledgement from every
    # consumer frees the oldest buffer in flight.
    acks: list[SimpleQueue[None]] = [SimpleQueue() for _ in consumers]
    failures: list[BaseException] = []

    def serve(
        consume: _Consumer,
        inbox: SimpleQueue[tuple[int, memoryview] | None],
        ack: SimpleQueue[None],
    ) -> None:
        while (item := inbox.get()) is not None:
            try:
                if not failures:
                    consume(*item)
            except BaseException as exc:
                failures.append(exc)
            finally:
                ack.put(None)

    threads = [
        threading.Thread(target=serve, args=(c, q, a), name="modelchain-hash", daemon=True)
        for c, q, a in zip(consumers, inboxes, acks, strict=True)
    ]
    for t in threads:
        t.start()
    offset = 0
    in_flight = 0
    try:
        for i in count():
            if failures:
                break
            if in_flight == _RING:
                for ack in acks:
                    ack.get()
                in_flight -= 1
            buf = ring[i % _RING]
            n = os.readv(fd, [buf])
            if n == 0:
                break
            chunk = memoryview(buf)[:n]
            for inbox in inboxes:
                inbox.put((offset, chunk))
            in_flight += 1
            offset += n
            run.advance(n)
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for t in threads:
            t.join()
    if failures:
        raise failures[0]
    return offset


def _blake3() -> Any:
    """The blake3 package, which only the opt-in BLAKE3 engine needs."""
    try:
        import blake3
    except ImportError as exc:
        raise UsageError(
            "the blake3 engine needs the blake3 package: pip install 'modelchain[fast]'"
        ) from exc
    return blake3


def _blake3_alone(fd: int, entry: Entry, run: _Run) -> str:
    """BLAKE3 of a big file hashed while other workers have little to do: the blake3
    package's own multi-threaded mmap path (copying through a buffer first measured 20-40%
    slower). It maps the file we opened, through /proc, not whatever the path names now.
    As with any mmap, truncating the file while it is hashed kills the process (SIGBUS):
    one reason plain SHA-256 stays the default."""
    blake3 = _blake3()
    threads = blake3.blake3.AUTO if run.workers >= default_workers() else run.workers
    hasher = blake3.blake3(max_threads=threads)
    proc = f"/proc/self/fd/{fd}"
    hasher.update_mmap(proc if os.path.exists(proc) else entry.path)
    run.advance(entry.st.st_size)
    return str(hasher.hexdigest())


def _resume_name(entry: Entry) -> str | None:
    """What names a large file's upload so that, interrupted, it can be continued: the
    file as it is now (path, inode, size, mtime). Small files just start over."""
    st = entry.st
    if st.st_size < RESUME_MIN:
        return None
    who = f"{os.path.abspath(entry.path)}\0{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(who.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _hash_whole(entry: Entry, key: str, run: _Run) -> None:
    """SHA-256 or BLAKE3 of one file (and SHA-256 of its tensors); with a tee, any
    algorithm, streaming the same reads into the store."""
    fd, _ = _open(entry, run)
    sweep = None
    upload = run.tee.upload(_resume_name(entry)) if run.tee is not None else None
    try:
        try:
            spare = run.spare_cores_for(entry.st.st_size)
            if run.algorithm == BLAKE3 and spare and upload is None:
                digest = _blake3_alone(fd, entry, run)
                read = entry.st.st_size  # what was mapped; the fstat below catches any change
            else:
                hasher = new_hasher(run.algorithm)

                def whole(offset: int, chunk: memoryview) -> None:
                    hasher.update(chunk)

                consumers: list[_Consumer] = [whole]
                if entry.tensors:
                    sweep = TensorSweep(tensor_spans(fd, entry.st.st_size, entry.shown))
                    consumers.append(sweep)
                if upload is not None:
                    write = upload.write
                    consumers.append(lambda offset, chunk: write(chunk))
                pump = _pump_pipelined if spare else _pump
                read = pump(fd, consumers, run)
                digest = hasher.hexdigest()
            after = os.fstat(fd)
        except OSError as exc:
            raise unreadable(entry.shown, exc) from exc
        finally:
            os.close(fd)
        if read != entry.st.st_size or not same_file(after, entry.st):
            raise changed(entry.shown)
        if upload is not None:
            # The bytes uploaded are the bytes hashed: the object is its digest's.
            upload.commit(object_ref(run.algorithm, digest))
            upload = None
    finally:
        if upload is not None:
            upload.abort()
    tensors = sweep.digests() if sweep is not None else ()
    run.remember(entry, key, digest, tensors)


class _ShardedFile:
    """Collects the shard digests of one file as workers finish ranges of them."""

    def __init__(self, entry: Entry, key: str, shard: int) -> None:
        self.entry = entry
        self.key = key
        self.shard = shard
        count = -(-entry.st.st_size // shard)
        self.digests: list[bytes] = [b""] * count
        self.pending = count
        self.done = False
        self.lock = threading.Lock()

    def finish(self, first: int, digests: list[bytes], run: _Run) -> None:
        with self.lock:
            self.digests[first : first + len(digests)] = digests
            self.pending -= len(digests)
            complete = self.pending == 0 and not self.done
            self.done = self.done or complete
        if complete:
            root = hashlib.sha256(b"".join(self.digests)).hexdigest()
            run.remember(self.entry, self.key, root, ())


def _hash_shards(file: _ShardedFile, first: int, count: int, run: _Run) -> None:
    """SHA-256 of shards ``first .. first+count-1`` of a file, read with pread."""
    entry, shard = file.entry, file.shard
    size = entry.st.st_size
    buf = run.buffer()
    view = memoryview(buf)
    fd, _ = _open(entry, run)
    out: list[bytes] = []
    try:
        for index in range(first, first + count):
            h = hashlib.sha256()
            pos, end = index * shard, min(size, (index + 1) * shard)
            while pos < end:
                n = os.preadv(fd, [view[: min(CHUNK, end - pos)]], pos)
                if n == 0:
                    raise changed(entry.shown)
                h.update(view[:n])
                pos += n
                run.advance(n)
            out.append(h.digest())
        after = os.fstat(fd)
    except OSError as exc:
        raise unreadable(entry.shown, exc) from exc
    finally:
        os.close(fd)
    if not same_file(after, entry.st):
        raise changed(entry.shown)
    file.finish(first, out, run)


def _run_tasks(tasks: list[Callable[[], None]], run: _Run) -> None:
    """Run ``tasks`` on ``run.workers`` threads (inline when one would do); first error wins."""
    if run.workers < 2 or len(tasks) < 2:
        for task in tasks:
            task()
        return
    lock = threading.Lock()
    todo = iter(tasks)
    errors: list[BaseException] = []

    def work() -> None:
        while not run.stop.is_set():
            with lock:
                task = next(todo, None)
            if task is None:
                return
            try:
                task()
            except BaseException as exc:
                errors.append(exc)
                run.stop.set()
                return

    threads = [
        threading.Thread(target=work, name="modelchain-hash", daemon=True)
        for _ in range(min(run.workers, len(tasks)))
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        run.stop.set()  # interrupted: workers stop at their next chunk
        for t in threads:
            t.join()
    real = [e for e in errors if not isinstance(e, _Cancelled)]
    if real:
        raise real[0]


def _shard_size(algorithm: str) -> int | None:
    if algorithm.startswith("sha256-sharded-"):
        return int(algorithm.rsplit("-", 1)[1])
    return None


def _cache_key(algorithm: str, tensors: bool) -> str:
    return f"{algorithm}+tensors" if tensors else algorithm


def hash_entries(
    entries: list[Entry],
    *,
    algorithm: str,
    workers: int,
    cache: DigestCache | None,
    progress: Progress | None,
    started_ns: int,
    allow_symlinks: bool,
    tee: Tee | None = None,
) -> dict[str, tuple[str, tuple[TensorDigest, ...]]]:
    """The digest (and tensor digests) of every entry, by OMS path. ``started_ns``: when
    the caller began, before listing the files (what the cache may trust is older).

    With a ``tee``, every file read is also uploaded from the same reads, and a cached
    file is read only when the tee does not hold its digest yet; sharded digests are then
    made by one sequential read per file rather than by shards in parallel."""
    shard = None if tee is not None else _shard_size(algorithm)
    run = _Run(algorithm, workers, 0, progress, cache, started_ns, allow_symlinks, tee)
    todo: list[Entry] = []
    for e in entries:
        hit = cache.get(e.st, _cache_key(algorithm, e.tensors)) if cache is not None else None
        if hit is not None and tee is not None and not tee.has(object_ref(algorithm, hit[0])):
            hit = None
        if hit is not None:
            run.results[e.rel] = hit
        else:
            todo.append(e)
    run.total = sum(e.st.st_size for e in todo)

    tasks: list[Callable[[], None]] = []
    if shard is None:
        # Largest first, so that no big file starts last while other workers sit idle.
        for e in sorted(todo, key=lambda e: -e.st.st_size):
            tasks.append(partial(_hash_whole, e, _cache_key(algorithm, e.tensors), run))
    else:
        per_task = max(1, CHUNK // shard)  # a task reads at least CHUNK bytes when it can
        for e in todo:
            file = _ShardedFile(e, algorithm, shard)
            if not file.digests:  # empty: no shards, but still open it (readable, unchanged)
                tasks.append(partial(_hash_shards, file, 0, 0, run))
            for first in range(0, len(file.digests), per_task):
                count = min(per_task, len(file.digests) - first)
                tasks.append(partial(_hash_shards, file, first, count, run))
    try:
        _run_tasks(tasks, run)
    finally:
        if cache is not None:
            cache.flush()
    run.finish()
    return run.results
