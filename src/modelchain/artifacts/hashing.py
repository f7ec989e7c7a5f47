"""Hash a model or dataset on disk into a :class:`Manifest`, and verify one against disk.

Files are hashed on a small pool of threads (hashlib and blake3 release the GIL) with
fixed-size buffers; a safetensors file's tensors are hashed from the same reads as the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from itertools import count, pairwise
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Protocol

from ..core.manifest import (
    BLAKE3,
    SHA256,
    FileDigest,
    Manifest,
    TensorDigest,
    check_algorithm,
    diff_manifests,
    oms_sort_key,
)
from ..errors import ArtifactError, IntegrityError, NotFoundError, UsageError
from .cache import DigestCache
from .formats import detect_format

__all__ = ["DEFAULT_IGNORES", "Progress", "hash_path", "verify_path"]

# Tool and version-control litter, ignored wherever it appears (and listed in the manifest).
# .gitattributes is not here: in a Hugging Face repository it says which files are LFS.
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".DS_Store",
    ".ipynb_checkpoints",
)

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
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library enforces
_PROGRESS_INTERVAL = 0.1
# Timestamps come from a coarse clock: a write in the same tick as the last one can leave
# mtime and ctime unchanged. A file is only cached when it was last changed well before we
# started reading it (git's "racily clean" rule); 2 s on filesystems with whole seconds.
_RACY_NS = 100_000_000
_RACY_COARSE_NS = 2_000_000_000
_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


Consumer = Callable[[int, memoryview], None]  # (offset in file, bytes read there)


class _Cancelled(Exception):
    """Another worker failed or the caller was interrupted: stop reading."""


@dataclass(frozen=True)
class _Entry:
    rel: str  # OMS path: relative POSIX, "." for a single file
    path: str  # what to open
    shown: str  # how errors name it: the path as the caller wrote it
    st: os.stat_result
    tensors: bool  # parse as safetensors and hash each tensor


@dataclass(frozen=True)
class _Span:
    begin: int  # absolute file offsets
    end: int
    name: str
    dtype: str
    shape: tuple[int, ...]


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def _changed(entry: _Entry) -> ArtifactError:
    return ArtifactError(
        f"{entry.shown} changed while it was being hashed; hash it again once nothing writes to it"
    )


def _unreadable(shown: str, exc: OSError) -> ArtifactError:
    return ArtifactError(f"cannot read {shown}: {exc.strerror or exc}")


def _default_workers() -> int:
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
    ) -> None:
        self.algorithm = algorithm
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
        self, entry: _Entry, key: str, digest: str, tensors: tuple[TensorDigest, ...]
    ) -> None:
        self.results[entry.rel] = (digest, tensors)
        if self.cache is None:
            return
        st = entry.st
        last_change = max(st.st_mtime_ns, st.st_ctime_ns)
        coarse = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
        if self.started_ns - last_change > (_RACY_COARSE_NS if coarse else _RACY_NS):
            self.cache.put(st, key, digest, tensors)


# --- walking -------------------------------------------------------------------------------


def _check_name(rel: str, shown: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ArtifactError(f"{shown!r}: file name is not valid UTF-8") from None
    if "\\" in rel:
        raise ArtifactError(f"{shown}: a backslash in a file name cannot be an OMS path")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _refuse_link(shown: str) -> ArtifactError:
    return ArtifactError(
        f"{shown} is a symbolic link; links are refused unless allowed (allow_symlinks)"
    )


def _walk(
    root: str,
    root_st: os.stat_result,
    shown_root: str,
    names: frozenset[str],
    paths: frozenset[str],
    allow_symlinks: bool,
) -> tuple[list[tuple[str, str, str, os.stat_result]], list[str]]:
    """Every regular file under ``root`` as (rel, path, shown, stat), and the ignored paths."""
    files: list[tuple[str, str, str, os.stat_result]] = []
    ignored: list[str] = []
    real_root = os.path.realpath(root)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))
    ]
    while stack:
        directory, prefix, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                found = list(it)
        except OSError as exc:
            raise _unreadable(os.path.join(shown_root, prefix) or shown_root, exc) from exc
        for e in found:
            rel = prefix + e.name
            shown = os.path.join(shown_root, rel)
            if e.name in names or rel in paths:
                ignored.append(rel)
                continue
            _check_name(rel, shown)
            try:
                if e.is_symlink():
                    if not allow_symlinks:
                        raise _refuse_link(shown)
                    target = os.path.realpath(e.path)
                    if os.path.commonpath([real_root, target]) != real_root:
                        raise ArtifactError(
                            f"{shown} is a symbolic link that points outside {shown_root}"
                        )
                    try:
                        st = os.stat(e.path)
                    except FileNotFoundError:
                        raise ArtifactError(f"{shown} is a broken symbolic link") from None
                else:
                    st = e.stat(follow_symlinks=False)
            except OSError as exc:
                raise _unreadable(shown, exc) from exc
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    raise ArtifactError(f"{shown} is a symbolic link to a folder that contains it")
                stack.append((e.path, rel + "/", ancestors | {ident}))
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, e.path, shown, st))
            else:
                raise ArtifactError(f"{shown} is a {_kind(st.st_mode)}, not a regular file")
    return files, ignored


# --- reading ---------------------------------------------------------------------------------


def _open(entry: _Entry, run: _Run) -> tuple[int, os.stat_result]:
    # O_NONBLOCK: never hang on a file swapped for a fifo since it was listed.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not run.allow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(entry.path, flags)
    except OSError as exc:
        raise _unreadable(entry.shown, exc) from exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise _unreadable(entry.shown, exc) from exc
    if not _same_file(st, entry.st):
        os.close(fd)
        raise _changed(entry)
    return fd, st


def _pump(fd: int, consumers: list[Consumer], run: _Run) -> int:
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


def _pump_pipelined(fd: int, consumers: list[Consumer], run: _Run) -> int:
    """As :func:`_pump`, but this thread only reads: each consumer runs on its own thread,
    so reading, hashing the file and hashing its tensors overlap. ``_RING`` buffers."""
    ring = [bytearray(CHUNK) for _ in range(_RING)]
    inboxes: list[SimpleQueue[tuple[int, memoryview] | None]] = [SimpleQueue() for _ in consumers]
    # Each consumer acknowledges chunks in order, so the next acknowledgement from every
    # consumer frees the oldest buffer in flight.
    acks: list[SimpleQueue[None]] = [SimpleQueue() for _ in consumers]
    failures: list[BaseException] = []

    def serve(
        consume: Consumer, inbox: SimpleQueue[tuple[int, memoryview] | None], ack: SimpleQueue[None]
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


class _TensorSweep:
    """Hashes each tensor's bytes from the chunks of a sequential read of its file."""

    def __init__(self, spans: list[_Span]) -> None:
        self.spans = spans  # sorted, not overlapping
        self.hashers = [hashlib.sha256() for _ in spans]
        self.first = 0  # spans before this one are complete

    def __call__(self, offset: int, chunk: memoryview) -> None:
        end = offset + len(chunk)
        spans = self.spans
        i = self.first
        while i < len(spans) and spans[i].end <= offset:
            i += 1
        self.first = i
        while i < len(spans) and spans[i].begin < end:
            s = spans[i]
            lo, hi = max(s.begin, offset), min(s.end, end)
            if hi > lo:
                self.hashers[i].update(chunk[lo - offset : hi - offset])
            i += 1

    def digests(self) -> tuple[TensorDigest, ...]:
        out = [
            TensorDigest(s.name, s.dtype, s.shape, h.hexdigest())
            for s, h in zip(self.spans, self.hashers, strict=True)
        ]
        return tuple(sorted(out, key=lambda t: t.name))


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        got = os.pread(fd, min(n, 1 << 30), offset)
        if not got:
            break
        parts.append(got)
        n -= len(got)
        offset += len(got)
    return b"".join(parts)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in safetensors header")
    return out


def _safetensors_spans(fd: int, entry: _Entry) -> list[_Span]:
    """The tensors of a safetensors file, from its header: 8-byte little-endian length, then
    JSON of name -> {dtype, shape, data_offsets (relative to the end of the header)}."""
    size = entry.st.st_size

    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"{entry.shown}: malformed safetensors header: {why}")

    head = _pread_exact(fd, 8, 0)
    if len(head) < 8:
        raise bad("the file is shorter than 8 bytes")
    (n,) = struct.unpack("<Q", head)
    if n > _SAFETENSORS_MAX_HEADER or 8 + n > size:
        raise bad(f"header length {n} does not fit a {size}-byte file")
    raw = _pread_exact(fd, n, 8)
    if len(raw) != n:
        raise _changed(entry)
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise bad(str(exc)) from exc
    if not isinstance(header, dict):
        raise bad("not a JSON object")
    data_start, data_len = 8 + n, size - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise bad(f"tensor {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise bad(f"tensor {name!r} has no dtype")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {name!r} has a bad shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len
        ):
            raise bad(f"tensor {name!r} has bad data_offsets")
        bits = _DTYPE_BITS.get(dtype)
        if bits is not None:
            count = 1
            for d in shape:
                count *= d
            if count * bits % 8 or count * bits // 8 != offsets[1] - offsets[0]:
                raise bad(f"tensor {name!r}: {dtype}{shape} does not fill its data_offsets")
        spans.append(
            _Span(data_start + offsets[0], data_start + offsets[1], name, dtype, tuple(shape))
        )
    spans.sort(key=lambda s: (s.begin, s.end))
    for a, b in pairwise(spans):
        if b.begin < a.end:
            raise bad(f"tensors {a.name!r} and {b.name!r} overlap")
    return spans


# --- engines ---------------------------------------------------------------------------------


def _blake3() -> Any:
    """The blake3 package, which only the opt-in BLAKE3 engine needs."""
    try:
        import blake3
    except ImportError as exc:
        raise UsageError(
            "the blake3 engine needs the blake3 package: pip install 'modelchain[fast]'"
        ) from exc
    return blake3


def _blake3_alone(fd: int, entry: _Entry, run: _Run) -> str:
    """BLAKE3 of a big file hashed while other workers have little to do: the blake3
    package's own multi-threaded mmap path (copying through a buffer first measured 20-40%
    slower). It maps the file we opened, through /proc, not whatever the path names now.
    As with any mmap, truncating the file while it is hashed kills the process (SIGBUS):
    one reason plain SHA-256 stays the default."""
    blake3 = _blake3()
    threads = blake3.blake3.AUTO if run.workers >= _default_workers() else run.workers
    hasher = blake3.blake3(max_threads=threads)
    proc = f"/proc/self/fd/{fd}"
    hasher.update_mmap(proc if os.path.exists(proc) else entry.path)
    run.advance(entry.st.st_size)
    return str(hasher.hexdigest())


def _hash_whole(entry: _Entry, key: str, run: _Run) -> None:
    """SHA-256 or BLAKE3 of one file (and SHA-256 of its tensors)."""
    fd, _ = _open(entry, run)
    sweep = None
    try:
        spare = run.spare_cores_for(entry.st.st_size)
        if run.algorithm == BLAKE3 and spare:
            digest = _blake3_alone(fd, entry, run)
            read = entry.st.st_size  # what was mapped; the fstat below catches any change
        else:
            hasher: _Hasher = (
                _blake3().blake3(max_threads=1) if run.algorithm == BLAKE3 else hashlib.sha256()
            )

            def whole(offset: int, chunk: memoryview) -> None:
                hasher.update(chunk)

            consumers: list[Consumer] = [whole]
            if entry.tensors:
                sweep = _TensorSweep(_safetensors_spans(fd, entry))
                consumers.append(sweep)
            pump = _pump_pipelined if spare else _pump
            read = pump(fd, consumers, run)
            digest = hasher.hexdigest()
        after = os.fstat(fd)
    except OSError as exc:
        raise _unreadable(entry.shown, exc) from exc
    finally:
        os.close(fd)
    if read != entry.st.st_size or not _same_file(after, entry.st):
        raise _changed(entry)
    tensors = sweep.digests() if sweep is not None else ()
    run.remember(entry, key, digest, tensors)


class _ShardedFile:
    """Collects the shard digests of one file as workers finish ranges of them."""

    def __init__(self, entry: _Entry, key: str, shard: int) -> None:
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
                    raise _changed(entry)
                h.update(view[:n])
                pos += n
                run.advance(n)
            out.append(h.digest())
        after = os.fstat(fd)
    except OSError as exc:
        raise _unreadable(entry.shown, exc) from exc
    finally:
        os.close(fd)
    if not _same_file(after, entry.st):
        raise _changed(entry)
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


# --- public ----------------------------------------------------------------------------------


def _hash(
    path: str | os.PathLike[str],
    *,
    algorithm: str,
    allow_symlinks: bool,
    names: frozenset[str],
    paths: frozenset[str],
    cache: DigestCache | None,
    workers: int | None,
    tensors: bool,
    progress: Progress | None,
) -> Manifest:
    started_ns = time.time_ns()
    check_algorithm(algorithm)
    if workers is None:
        workers = _default_workers()
    elif workers < 1:
        raise UsageError("workers must be at least 1")
    shown_root = os.fspath(path)
    root = os.path.abspath(shown_root)
    try:
        lst = os.lstat(root)
        if stat.S_ISLNK(lst.st_mode):
            if not allow_symlinks:
                raise _refuse_link(shown_root)
            try:
                st = os.stat(root)
            except FileNotFoundError:
                raise ArtifactError(f"{shown_root} is a broken symbolic link") from None
        else:
            st = lst
    except FileNotFoundError as exc:
        raise NotFoundError(f"{shown_root}: no such file or folder") from exc
    except OSError as exc:
        raise _unreadable(shown_root, exc) from exc

    name = os.path.basename(root.rstrip("/")) or "/"
    ignored: list[str] = []
    if stat.S_ISDIR(st.st_mode):
        found, ignored = _walk(root, st, shown_root, names, paths, allow_symlinks)
        if not found:
            extra = (
                f" ({len(ignored)} ignored: {', '.join(sorted(ignored)[:5])})" if ignored else ""
            )
            raise ArtifactError(f"{shown_root} is an empty folder: nothing to hash{extra}")
    elif stat.S_ISREG(st.st_mode):
        found = [(".", root, shown_root, st)]
    else:
        raise ArtifactError(f"{shown_root} is a {_kind(st.st_mode)}, not a file or folder")

    parse_tensors = tensors and algorithm == SHA256
    entries = [
        _Entry(rel, p, shown, s, parse_tensors and p.lower().endswith(".safetensors"))
        for rel, p, shown, s in found
    ]
    shard = _shard_size(algorithm)
    run = _Run(algorithm, workers, 0, progress, cache, started_ns, allow_symlinks)
    todo: list[_Entry] = []
    for e in entries:
        hit = cache.get(e.st, _cache_key(algorithm, e.tensors)) if cache is not None else None
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

    files = []
    for e in entries:
        digest, tensor_digests = run.results[e.rel]
        files.append(FileDigest(e.rel, e.st.st_size, digest, tensor_digests))
    if stat.S_ISDIR(st.st_mode):
        kind = detect_format(Path(root), files=[e.rel for e in entries])
    else:
        kind = detect_format(Path(root))
    return Manifest(
        name=name,
        algorithm=algorithm,
        files=tuple(files),
        ignored=tuple(sorted(ignored, key=oms_sort_key)),
        allow_symlinks=allow_symlinks,
        format=kind,
    )


def _split_ignore(ignore: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    if isinstance(ignore, str):
        ignore = (ignore,)
    names: set[str] = set()
    paths: set[str] = set()
    for item in ignore:
        item = item.strip("/")
        if item:
            (paths if "/" in item else names).add(item)
    return frozenset(names), frozenset(paths)


def hash_path(
    path: str | os.PathLike[str],
    *,
    algorithm: str = SHA256,
    allow_symlinks: bool = False,
    ignore: Iterable[str] = DEFAULT_IGNORES,
    cache: DigestCache | None = None,
    workers: int | None = None,
    tensors: bool = True,
    progress: Progress | None = None,
) -> Manifest:
    """The manifest of a file or folder.

    A file gives one entry named ``.``; a folder gives every regular file under it, by
    relative POSIX path. ``algorithm`` is ``sha256`` (each file's plain SHA-256: OMS files
    mode, ``sha256sum``, Hugging Face LFS oid), ``blake3``, or ``sha256-sharded-<bytes>``
    (SHA-256 over the SHA-256 of each shard, shards hashed in parallel; an empty file has
    no shards, so its digest is SHA-256 of nothing). A big BLAKE3 file hashed alone is
    memory-mapped, as the blake3 package does: truncating it meanwhile kills the process.

    ``ignore`` holds names skipped wherever they appear (``.git``), or paths relative to the
    folder when they contain a ``/`` between names (``docs/drafts``); what was skipped is
    listed in ``Manifest.ignored``. Symbolic links are refused unless ``allow_symlinks``,
    and even then must stay inside the folder. A file that changes while it is hashed is
    an ArtifactError, never a digest of torn bytes.

    With ``tensors`` and ``sha256``, each ``*.safetensors`` file also gets the SHA-256 of
    every tensor's raw bytes, from the same reads as the file; other algorithms skip
    tensors, since SHA-256 would then be the bottleneck they were chosen to avoid.

    ``cache`` answers unchanged files without reading them. ``workers`` defaults to the
    usable cores. ``progress`` gets (bytes hashed, bytes to hash) from worker threads.
    """
    names, paths = _split_ignore(ignore)
    return _hash(
        path,
        algorithm=algorithm,
        allow_symlinks=allow_symlinks,
        names=names,
        paths=paths,
        cache=cache,
        workers=workers,
        tensors=tensors,
        progress=progress,
    )


def _difference_lines(registered: Manifest, found: Manifest) -> tuple[str, ...]:
    d = diff_manifests(registered, found)
    changed: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    a = {f.path: f for f in registered.files}
    b = {f.path: f for f in found.files}
    # Tensor lines only for files present in both: an added or removed file says enough.
    for path in sorted(a.keys() & b.keys(), key=oms_sort_key):
        old = {t.name: t.digest for t in a[path].tensors}
        new = {t.name: t.digest for t in b[path].tensors}
        changed += [f"{path}:{n}" for n in sorted(old.keys() & new.keys()) if old[n] != new[n]]
        added += [f"{path}:{n}" for n in sorted(new.keys() - old.keys())]
        removed += [f"{path}:{n}" for n in sorted(old.keys() - new.keys())]
    lines = [f"changed {p}" for p in (*d.changed, *changed)]
    lines += [f"added {p}" for p in (*d.added, *added)]
    lines += [f"removed {p}" for p in (*d.removed, *removed)]
    return tuple(lines)


def verify_path(
    path: str | os.PathLike[str],
    manifest: Manifest,
    *,
    cache: DigestCache | None = None,
    progress: Progress | None = None,
    allow_symlinks: bool | None = None,
) -> None:
    """Re-hash ``path`` with the manifest's algorithm; raise IntegrityError unless every
    file (and every tensor it recorded) matches.

    Trusts no cache unless one is given. Skips what the manifest lists as ignored, and the
    default ignores except those the manifest hashed. ``allow_symlinks`` defaults to the
    manifest's own setting.
    """
    hashed_parts = {part for f in manifest.files for part in f.path.split("/")}
    found = _hash(
        path,
        algorithm=manifest.algorithm,
        allow_symlinks=manifest.allow_symlinks if allow_symlinks is None else allow_symlinks,
        names=frozenset(DEFAULT_IGNORES) - hashed_parts,
        paths=frozenset(manifest.ignored),
        cache=cache,
        workers=None,
        tensors=any(f.tensors for f in manifest.files),
        progress=progress,
    )
    # A file registered without tensor digests is compared by its file digest alone.
    untensored = {f.path for f in manifest.files if not f.tensors}
    found = replace(
        found,
        files=tuple(replace(f, tensors=()) if f.path in untensored else f for f in found.files),
    )
    lines = _difference_lines(manifest, found)
    if not lines and found.root == manifest.root:
        return
    raise IntegrityError(
        f"{os.fspath(path)} does not match {manifest.name} ({manifest.digest}):"
        f" {len(lines)} difference{'s' if len(lines) != 1 else ''}",
        differences=lines,
    )
