"""The artifact store: model and dataset files (and their manifests) beside the ledger,
named by the digest the ledger records, in a local folder or on any fsspec filesystem
(S3-compatible through s3fs).

An object lives at ``<algorithm>/<2 hex>/<64 hex>`` under the store's root. A write
goes to ``tmp/<random>`` and is moved under its name only once it is complete and its
digest known, so no reader sees half an object under a digest; a large file's upload
is named by its source instead (``tmp/resume-<name>``), so that an interrupted one is
continued, its kept bytes checked, rather than started again. Nothing read from a store
is trusted: ``fetch`` and ``copy_object`` hash every byte against the ref asked for.
Encrypted objects (``storage.crypt``) are addressed by their ciphertext's SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..artifacts.hashing import new_hasher
from ..core.manifest import Manifest, object_ref, parse_object_ref
from ..errors import IntegrityError, MalformedError, NotFoundError, StorageError, UsageError
from .protocols import ArtifactStore, StoredObject
from .uploads import _TMP, CHUNK, ObjectUpload, _io_error, _MultipartUpload, _WriteBack

__all__ = [
    "CHUNK",
    "FetchFrom",
    "FetchObject",
    "FsspecArtifactStore",
    "ObjectUpload",
    "PullResult",
    "StoredObject",
    "copy_object",
    "fetch",
    "fetch_first",
    "open_store",
    "pull_manifest",
    "put_bytes",
    "verify_objects",
]

_STALE_TMP_S = 24 * 3600  # an upload left this long in tmp/ was interrupted

Progress = Callable[[int], None]  # called with bytes just moved


@dataclass
class FsspecArtifactStore:
    """An artifact store on an fsspec filesystem: the local one for a folder, s3fs for
    ``s3://bucket/prefix``, or any other. ``url`` is how it was named (for messages)."""

    fs: Any
    root: str
    url: str
    local: bool = field(init=False)
    # Told how many bytes of an interrupted upload were found good and kept (the CLI
    # prints it); None: nobody is told.
    on_resume: Callable[[int], None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        self.local = "file" in protocols or "local" in protocols
        self.root = self.root.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _key(self, ref: str) -> str:
        algorithm, digest = parse_object_ref(ref)
        return self._path(f"{algorithm}/{digest[:2]}/{digest}")

    def _makedirs(self, path: str) -> None:
        # Object stores have no folders; creating one there may mean creating a bucket.
        if self.local:
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)

    def _fresh(self, path: str) -> str:
        # s3fs answers from listings it cached; another process may have written since.
        self.fs.invalidate_cache(path)
        return path

    def has(self, ref: str, /) -> bool:
        try:
            return bool(self.fs.exists(self._fresh(self._key(ref))))
        except Exception as exc:
            raise _io_error(f"cannot read the artifact store {self.url}", exc) from exc

    def size(self, ref: str) -> int | None:
        """The stored size of ``ref``, or None if the store lacks it."""
        try:
            return int(self.fs.size(self._fresh(self._key(ref))))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise _io_error(f"cannot read the artifact store {self.url}", exc) from exc

    def upload(self, resume: str | None = None) -> ObjectUpload | _MultipartUpload:
        """A new object's upload; ``resume`` names its source so that an interrupted
        upload of the same source is continued (``ObjectUpload`` on a local store,
        ``_MultipartUpload`` on S3)."""
        if resume is not None and not self.local and hasattr(self.fs, "call_s3"):
            return _MultipartUpload(self, resume)
        return ObjectUpload(self, resume)

    def open_read(self, ref: str, offset: int = 0) -> IO[bytes]:
        """The object's bytes from ``offset``, unchecked (``fetch`` checks them)."""
        try:
            f: IO[bytes] = self.fs.open(self._key(ref), "rb", block_size=CHUNK, cache_type="none")
        except FileNotFoundError as exc:
            raise NotFoundError(f"{ref} is not in the artifact store {self.url}") from exc
        except Exception as exc:
            raise _io_error(f"cannot read {ref} from {self.url}", exc) from exc
        if offset:
            f.seek(offset)
        return f

    def objects(self) -> Iterator[StoredObject]:
        """Every object held, sorted by ref; temporary uploads are left out."""
        try:
            found: Mapping[str, Any] = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise _io_error(f"cannot list the artifact store {self.url}", exc) from exc
        out = []
        for path, info in found.items():
            parts = path[len(self.root) + 1 :].split("/") if path.startswith(self.root) else []
            if len(parts) != 3 or parts[0] == _TMP or parts[1] != parts[2][:2]:
                continue
            try:
                ref = object_ref(parts[0], parts[2])
                parse_object_ref(ref)
            except MalformedError:
                continue
            out.append(StoredObject(ref, int(info.get("size") or 0), _modified(info)))
        yield from sorted(out, key=lambda o: o.ref)

    def stale_uploads(self, older_than_s: float = _STALE_TMP_S) -> list[str]:
        """Temporary uploads left in ``tmp/`` for longer than ``older_than_s``."""
        try:
            found = self.fs.find(self._path(_TMP), detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise _io_error(f"cannot list the artifact store {self.url}", exc) from exc
        now = time.time()
        stale = []
        for path in found:
            try:
                modified = self.fs.modified(path).timestamp()
            except Exception:
                continue  # a filesystem that cannot say when: keep it
            if now - modified > older_than_s:
                stale.append(path)
        for path, initiated in self._open_multipart():
            if now - initiated > older_than_s and path not in stale:
                stale.append(path)
        return stale

    def _open_multipart(self) -> list[tuple[str, float]]:
        """S3: the multipart uploads left open in ``tmp/`` (interrupted resumable
        uploads, which are not objects yet), by path, with when each began."""
        if self.local or not hasattr(self.fs, "call_s3"):
            return []
        bucket, key, _ = self.fs.split_path(self._path(_TMP))
        try:
            found = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key + "/")
        except Exception as exc:
            raise _io_error(f"cannot list the artifact store {self.url}", exc) from exc
        return [
            (f"{bucket}/{u['Key']}", _modified({"created": u.get("Initiated")}) or 0.0)
            for u in found.get("Uploads", [])
        ]

    def delete(self, ref: str) -> None:
        self.remove_path(self._key(ref))

    def remove_path(self, path: str) -> None:
        """Remove one path of the store (a stale upload, with any multipart upload left
        open there); gone already is fine."""
        try:
            if not self.local and hasattr(self.fs, "call_s3"):
                bucket, key, _ = self.fs.split_path(path)
                found = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
                for u in found.get("Uploads", []):
                    if u.get("Key") == key:
                        self.fs.call_s3(
                            "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=u["UploadId"]
                        )
            self.fs.rm(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise _io_error(f"cannot delete {path} from {self.url}", exc) from exc


def _modified(info: Mapping[str, Any]) -> float | None:
    """When a listed file was written, from what fsspec filesystems report."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value: Any = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if hasattr(value, "timestamp"):  # a datetime (s3fs)
            return float(value.timestamp())
    return None


def open_store(url: str | os.PathLike[str], **storage_options: Any) -> FsspecArtifactStore:
    """The artifact store at ``url``: a folder, or an fsspec URL (``s3://bucket/prefix``,
    with ``storage_options`` such as ``client_kwargs={"endpoint_url": ...}``; s3fs and
    botocore also read their own settings, e.g. ``AWS_ENDPOINT_URL``)."""
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise UsageError("the artifact store needs fsspec: pip install fsspec") from exc
    text = os.fspath(url)
    if "://" not in text:
        text = os.path.abspath(text)
    try:
        fs, root = fsspec.url_to_fs(text, **storage_options)
    except ImportError as exc:
        raise UsageError(
            f"the artifact store {text} needs its fsspec driver ({exc.name}): "
            "for S3, pip install 'modelchain[store]'"
        ) from exc
    except ValueError as exc:
        raise UsageError(f"bad artifact store URL {text!r}: {exc}") from exc
    return FsspecArtifactStore(fs, root, text)


def put_bytes(store: ArtifactStore, data: bytes) -> str:
    """Store ``data`` (a manifest) under its SHA-256; return the ref."""
    ref = object_ref("sha256", hashlib.sha256(data).hexdigest())
    if not store.has(ref):
        upload = store.upload()
        try:
            upload.write(data)
            upload.commit(ref)
        except BaseException:
            upload.abort()
            raise
    return ref


def _damaged(ref: str, store: ArtifactStore, what: str) -> IntegrityError:
    return IntegrityError(f"{ref} in the artifact store {store.url} is damaged: {what}")


def _stream(
    src: IO[bytes],
    write: Callable[[bytes], object],
    hasher: Any,
    have: int,
    size: int | None,
    ref: str,
    store: ArtifactStore,
    progress: Progress | None,
) -> int:
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return have
        have += len(chunk)
        if size is not None and have > size:
            raise _damaged(ref, store, f"longer than the {size} bytes registered")
        hasher.update(chunk)
        write(chunk)
        if progress is not None:
            progress(len(chunk))


class _FileWriter:
    """Writes chunks to a local file on a thread of its own, writing back as it goes,
    while the caller reads and hashes the next ones: at most two chunks queued."""

    def __init__(self, out: IO[bytes], written: int) -> None:
        self._out = out
        self._write_back = _WriteBack(out, written)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="modelchain-fetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._failed:
                continue
            try:
                self._out.write(chunk)
                self._write_back.wrote(self._out.tell())
            except BaseException as exc:
                self._failed.append(exc)

    def write(self, chunk: bytes) -> None:
        if self._failed:
            raise self._failed[0]
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait for every chunk to be written; raise what the writer met, if anything."""
        self._queue.put(None)
        self._thread.join()
        if self._failed:
            raise self._failed[0]


def fetch(
    store: ArtifactStore,
    ref: str,
    size: int,
    path: Path,
    progress: Progress | None = None,
) -> None:
    """Copy object ``ref`` (``size`` bytes, as registered) from ``store`` into ``path``,
    continuing a partial copy already there. Raises IntegrityError, with ``path``
    removed, unless the bytes are exactly the ref's; NotFoundError if the store lacks it."""
    algorithm, digest = parse_object_ref(ref)
    for attempt in range(2):
        hasher = new_hasher(algorithm)
        have = path.stat().st_size if path.exists() else 0
        if have > size:
            path.unlink()
            have = 0
        resumed = have > 0
        with open(path, "ab" if resumed else "wb") as out:
            if resumed:
                # The hash state of the prefix already fetched: re-read it locally.
                with open(path, "rb") as prefix:
                    while block := prefix.read(CHUNK):
                        hasher.update(block)
            writer = _FileWriter(out, have)
            try:
                try:
                    with store.open_read(ref, have) as src:
                        have = _stream(src, writer.write, hasher, have, size, ref, store, progress)
                finally:
                    writer.close()
            except IntegrityError:
                out.close()
                path.unlink()
                raise
            except (NotFoundError, StorageError):
                raise
            except Exception as exc:
                raise _io_error(f"cannot read {ref} from {store.url}", exc) from exc
            out.flush()
            os.fsync(out.fileno())
        if have == size and hasher.hexdigest() == digest:
            return
        path.unlink()
        if not resumed or attempt:
            found = "shorter than registered" if have < size else "its bytes hash to another digest"
            raise _damaged(ref, store, found)
        # A resumed prefix may be what was wrong: fetch the whole object once more.


def copy_object(
    src: ArtifactStore,
    dst: ArtifactStore,
    ref: str,
    size: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Copy ``ref`` from ``src`` to ``dst``, hashing on the way: IntegrityError (and
    nothing stored) unless the bytes are the ref's."""
    algorithm, digest = parse_object_ref(ref)
    hasher = new_hasher(algorithm)
    upload = dst.upload()
    try:
        with src.open_read(ref) as f:
            have = _stream(f, upload.write, hasher, 0, size, ref, src, progress)
        if (size is not None and have != size) or hasher.hexdigest() != digest:
            raise _damaged(ref, src, "its bytes hash to another digest")
        upload.commit(ref)
    except BaseException:
        upload.abort()
        raise


def verify_objects(
    store: ArtifactStore,
    objects: Iterable[StoredObject] | None = None,
    progress: Progress | None = None,
) -> list[StoredObject]:
    """Re-hash every object (or those given); return the ones whose bytes are not their ref's."""
    damaged = []
    for obj in store.objects() if objects is None else objects:
        algorithm, digest = parse_object_ref(obj.ref)
        hasher = new_hasher(algorithm)
        try:
            with store.open_read(obj.ref) as f:
                _stream(f, lambda b: None, hasher, 0, None, obj.ref, store, progress)
        except NotFoundError:
            damaged.append(obj)
            continue
        if hasher.hexdigest() != digest:
            damaged.append(obj)
    return damaged


@dataclass(frozen=True)
class PullResult:
    """What a pull placed: the files, their bytes, which store served each object, and
    what was wrong with the stores passed over (missing or damaged objects)."""

    dest: Path
    files: int
    size: int
    served: dict[str, str]  # ref -> store url
    problems: tuple[str, ...]


def _target(dest: Path, manifest: Manifest, rel: str) -> Path:
    if rel != ".":
        return dest.joinpath(*rel.split("/"))
    name = manifest.name
    if name in ("", ".", "..", "/") or "/" in name or "\\" in name:
        raise MalformedError(f"a single-file manifest named {name!r} has no file name to pull to")
    return dest / name


FetchObject = Callable[
    [Sequence[ArtifactStore], str, int, str, Path, list[str], Progress | None], str
]
"""Fetch object (ref, size, shown as) from the first of the stores that holds a good
copy into a path; note what was wrong with the others; return the store's URL."""


FetchFrom = Callable[[ArtifactStore], None]
"""Fetch one object from one store into the path a pull stages it at. Raises
NotFoundError when the store lacks it, IntegrityError when its copy is not the
registered bytes, StorageError when the store cannot be read."""


def fetch_first(
    stores: Sequence[ArtifactStore],
    fetch_from: FetchFrom,
    *,
    shown: str,
    ref: str,
    problems: list[str],
    holds: str = "the registered bytes",
) -> str:
    """Try ``fetch_from`` on each store in turn until one serves a good copy of ``ref``
    (shown to users as ``shown``); note in ``problems`` what was wrong with the stores
    passed over and return the URL of the one that served. When none does: IntegrityError
    if some copy was damaged (none ``holds`` the right bytes), StorageError if some store
    could not be read, NotFoundError if none has it. Plain and decrypting fetches both
    fall back through here, each with its own ``fetch_from``."""
    damaged = failed = False
    mine: list[str] = []
    for store in stores:
        try:
            fetch_from(store)
            problems.extend(mine)
            return store.url
        except NotFoundError:
            mine.append(f"{store.url}: {shown} ({ref}) is missing")
        except IntegrityError as exc:
            damaged = True
            mine.append(f"{store.url}: {shown} ({ref}) is damaged: {exc}")
        except StorageError as exc:
            failed = True
            mine.append(f"{store.url}: {exc}")
    where = ", ".join(s.url for s in stores)
    if damaged:
        raise IntegrityError(f"{shown}: no artifact store holds {holds} ({where})", tuple(mine))
    if failed:
        # What was fetched stays beside DEST: the next pull continues from there.
        raise StorageError(f"{shown}: could not fetch {ref}: " + "; ".join(mine))
    raise NotFoundError(f"{shown} ({ref}) is in none of the artifact stores: {where}")


def _fetch_any(
    stores: Sequence[ArtifactStore],
    ref: str,
    size: int,
    shown: str,
    path: Path,
    problems: list[str],
    progress: Progress | None,
) -> str:
    def fetch_from(store: ArtifactStore) -> None:
        fetch(store, ref, size, path, progress)

    return fetch_first(stores, fetch_from, shown=shown, ref=ref, problems=problems)


def pull_manifest(
    stores: Sequence[ArtifactStore],
    manifest: Manifest,
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    before_placing: Callable[[], None] | None = None,
    fetch_object: FetchObject | None = None,
) -> PullResult:
    """Fetch every file of ``manifest`` into ``dest``, verified, from the first store
    that holds a good copy of it.

    Objects go to a staging folder beside ``dest`` (``.<name>.modelchain-pull``), where
    an interrupted pull leaves them to be continued; only when every one is verified is
    ``before_placing`` called (to record the access) and are the files moved into
    ``dest``. On any failure nothing in ``dest`` is created or changed.
    ``fetch_object`` replaces how one object is fetched (an encrypted version's
    objects are decrypted, ``storage.crypt``); it has ``_fetch_any``'s signature."""
    if not stores:
        raise UsageError("a pull needs at least one artifact store")
    dest = Path(dest).absolute()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is not a folder")
    staging = dest.parent / f".{dest.name}.modelchain-pull"
    staging.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    served: dict[str, str] = {}
    staged: dict[str, Path] = {}
    targets = [(f, _target(dest, manifest, f.path)) for f in manifest.files]
    for f, _ in targets:
        ref = object_ref(manifest.algorithm, f.digest)
        if ref in staged:
            continue
        part = staging / f"{manifest.algorithm}-{f.digest}.part"
        shown = manifest.name if f.path == "." else f.path
        fetch_one = fetch_object or _fetch_any
        served[ref] = fetch_one(stores, ref, f.size, shown, part, problems, progress)
        staged[ref] = part
    if before_placing is not None:
        before_placing()
    left = {
        ref: sum(1 for f, _ in targets if object_ref(manifest.algorithm, f.digest) == ref)
        for ref in staged
    }
    for f, target in targets:
        ref = object_ref(manifest.algorithm, f.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        left[ref] -= 1
        if left[ref]:
            shutil.copyfile(staged[ref], target)  # the same bytes at another path
        else:
            os.replace(staged[ref], target)
    shutil.rmtree(staging, ignore_errors=True)
    return PullResult(dest, len(targets), manifest.size, served, tuple(problems))
