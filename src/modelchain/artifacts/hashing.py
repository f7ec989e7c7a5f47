"""Hash a model or dataset on disk into a :class:`Manifest`, and verify one against disk.

The public hashing API. Which files an artifact is lives in ``_walk``, how they are
hashed in ``_engines`` (SHA-256, sharded, BLAKE3; threads, cache) and per-tensor digests
of safetensors files in ``_safetensors``, as model-transparency splits serialization
from hashing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..core.manifest import (
    SHA256,
    FileDigest,
    Manifest,
    check_algorithm,
    diff_manifests,
    oms_sort_key,
)
from ..errors import IntegrityError, UsageError
from ._engines import (
    Entry,
    Hasher,
    Progress,
    Tee,
    Upload,
    default_workers,
    hash_entries,
    new_hasher,
)
from ._walk import DEFAULT_IGNORES, list_files, split_ignore
from .cache import DigestCache
from .formats import detect_format

__all__ = [
    "DEFAULT_IGNORES",
    "Hasher",
    "Progress",
    "Tee",
    "Upload",
    "hash_path",
    "new_hasher",
    "verify_path",
]


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
    tee: Tee | None = None,
) -> Manifest:
    started_ns = time.time_ns()
    check_algorithm(algorithm)
    if workers is None:
        workers = default_workers()
    elif workers < 1:
        raise UsageError("workers must be at least 1")
    listing = list_files(path, names, paths, allow_symlinks)
    parse_tensors = tensors and algorithm == SHA256
    entries = [
        Entry(rel, p, shown, s, parse_tensors and p.lower().endswith(".safetensors"))
        for rel, p, shown, s in listing.files
    ]
    results = hash_entries(
        entries,
        algorithm=algorithm,
        workers=workers,
        cache=cache,
        progress=progress,
        started_ns=started_ns,
        allow_symlinks=allow_symlinks,
        tee=tee,
    )
    files = []
    for e in entries:
        digest, tensor_digests = results[e.rel]
        files.append(FileDigest(e.rel, e.st.st_size, digest, tensor_digests))
    root = listing.root
    if listing.is_dir:
        kind = detect_format(Path(root), files=[e.rel for e in entries])
    else:
        kind = detect_format(Path(root))
    return Manifest(
        name=os.path.basename(root.rstrip("/")) or "/",
        algorithm=algorithm,
        files=tuple(files),
        ignored=tuple(sorted(listing.ignored, key=oms_sort_key)),
        allow_symlinks=allow_symlinks,
        format=kind,
    )


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
    tee: Tee | None = None,
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

    ``tee`` (an artifact store) receives every file from the same reads that hash it, so
    hashing and uploading read each file once; a file it already holds is not read again
    when the cache knows its digest.
    """
    names, paths = split_ignore(ignore)
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
        tee=tee,
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
