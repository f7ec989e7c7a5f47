"""Artifact manifests: which files (and tensors) make up a model or dataset, by digest.

The root follows OpenSSF Model Signing files mode: SHA-256 over the raw
per-file digests concatenated in OMS order (paths compared by components). A
digest's name carries every parameter that shaped it, e.g. ``sha256``,
``sha256-sharded-1073741824`` or ``blake3``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MalformedError

__all__ = [
    "BLAKE3",
    "SHA256",
    "FileDigest",
    "Manifest",
    "ManifestDiff",
    "TensorDigest",
    "check_algorithm",
    "diff_manifests",
    "manifest_of",
    "object_ref",
    "oms_sort_key",
    "parse_object_ref",
    "sharded",
]

SHA256 = "sha256"  # the plain SHA-256 of each file: OMS files mode, sha256sum, HF LFS oid
BLAKE3 = "blake3"
_SHARDED = re.compile(r"sha256-sharded-([1-9][0-9]*)\Z")
_HEX = re.compile(r"[0-9a-f]{64}\Z")


def sharded(shard_size: int) -> str:
    """Name of the sharded SHA-256 engine: per-file digest = SHA-256 over the
    SHA-256 of each ``shard_size``-byte shard, in order."""
    if shard_size <= 0:
        raise MalformedError("shard size must be positive")
    return f"sha256-sharded-{shard_size}"


def check_algorithm(name: str) -> str:
    if name in (SHA256, BLAKE3) or _SHARDED.match(name):
        return name
    raise MalformedError(
        f"unknown digest algorithm {name!r}: use sha256, blake3 or sha256-sharded-<bytes>"
    )


def object_ref(algorithm: str, digest: str) -> str:
    """How an artifact store names one file's bytes: ``<algorithm>:<hex digest>``, the
    algorithm saying every parameter of the digest (``sha256-sharded-1073741824:...``)."""
    return f"{algorithm}:{digest}"


def parse_object_ref(ref: str) -> tuple[str, str]:
    """(algorithm, hex digest) of an object ref; MalformedError for anything else."""
    algorithm, sep, digest = ref.partition(":")
    if not sep or not _HEX.match(digest):
        raise MalformedError(f"bad object reference {ref!r}: expected <algorithm>:<64 hex>")
    check_algorithm(algorithm)
    return algorithm, digest


def oms_sort_key(path: str) -> tuple[str, ...]:
    """OMS orders resources by path components (so 'a/b' sorts before 'a.b')."""
    return tuple(path.split("/"))


def _check_path(path: str) -> None:
    if path == ".":
        return
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise MalformedError(f"manifest path {path!r} must be relative POSIX without . or ..")


@dataclass(frozen=True)
class TensorDigest:
    """One tensor of a safetensors file: SHA-256 of its raw bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "digest": self.digest,
        }

    def __post_init__(self) -> None:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in self.shape):
            raise MalformedError(f"tensor {self.name}: shape must be non-negative integers")
        if not isinstance(self.digest, str) or not _HEX.match(self.digest):
            raise MalformedError(f"tensor {self.name}: digest must be 64 lowercase hex")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TensorDigest:
        try:
            return cls(str(obj["name"]), str(obj["dtype"]), tuple(obj["shape"]), obj["digest"])
        except (KeyError, TypeError) as exc:
            raise MalformedError(f"bad tensor entry: {exc}") from exc


@dataclass(frozen=True)
class FileDigest:
    path: str  # relative POSIX path; "." for a single-file artifact
    size: int
    digest: str  # hex, by the manifest's algorithm
    tensors: tuple[TensorDigest, ...] = ()

    def __post_init__(self) -> None:
        _check_path(self.path)
        if not _HEX.match(self.digest):
            raise MalformedError(f"{self.path}: digest must be 64 lowercase hex characters")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "digest": self.digest}
        if self.tensors:
            out["tensors"] = [t.to_json() for t in self.tensors]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FileDigest:
        try:
            size = obj["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise MalformedError(f"{obj['path']}: size must be a non-negative integer")
            return cls(
                obj["path"],
                size,
                obj["digest"],
                tuple(TensorDigest.from_json(t) for t in obj.get("tensors", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"bad file entry: {exc}") from exc


@dataclass(frozen=True)
class Manifest:
    """The digests of an artifact's files, in OMS order."""

    name: str  # the folder or file name (the OMS subject name)
    algorithm: str
    files: tuple[FileDigest, ...]
    ignored: tuple[str, ...] = ()  # paths left out (.git, ...), listed so nothing hides
    allow_symlinks: bool = False
    format: str = "unknown"
    _by_path: dict[str, FileDigest] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        check_algorithm(self.algorithm)
        if not self.files:
            raise MalformedError("a manifest needs at least one file")
        ordered = tuple(sorted(self.files, key=lambda f: oms_sort_key(f.path)))
        if ordered != self.files:
            object.__setattr__(self, "files", ordered)
        for f in self.files:
            if f.path in self._by_path:
                raise MalformedError(f"{f.path} is listed twice")
            self._by_path[f.path] = f

    @property
    def root(self) -> bytes:
        return hashlib.sha256(b"".join(bytes.fromhex(f.digest) for f in self.files)).digest()

    @property
    def digest(self) -> str:
        """``<algorithm>:<hex root>``, e.g. ``sha256:9f2c...``."""
        return f"{self.algorithm}:{self.root.hex()}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileDigest | None:
        return self._by_path.get(path)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "algorithm": self.algorithm,
            "digest": self.digest,
            "format": self.format,
            "allow_symlinks": self.allow_symlinks,
            "ignored": list(self.ignored),
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Manifest:
        try:
            manifest = cls(
                name=obj["name"],
                algorithm=obj["algorithm"],
                files=tuple(FileDigest.from_json(f) for f in obj["files"]),
                ignored=tuple(obj.get("ignored", ())),
                allow_symlinks=bool(obj.get("allow_symlinks", False)),
                format=obj.get("format", "unknown"),
            )
        except (KeyError, TypeError) as exc:
            raise MalformedError(f"bad manifest: {exc}") from exc
        if "digest" in obj and obj["digest"] != manifest.digest:
            raise MalformedError("manifest digest does not match its files")
        return manifest


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    tensors_added: tuple[str, ...]  # "file:tensor"
    tensors_removed: tuple[str, ...]
    tensors_changed: tuple[str, ...]

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        out = [f"added {p}" for p in self.added]
        out += [f"removed {p}" for p in self.removed]
        out += [f"changed {p}" for p in self.changed]
        out += [f"changed {t}" for t in self.tensors_changed]
        out += [f"added {t}" for t in self.tensors_added]
        out += [f"removed {t}" for t in self.tensors_removed]
        return out

    def to_json(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "tensors_added": list(self.tensors_added),
            "tensors_removed": list(self.tensors_removed),
            "tensors_changed": list(self.tensors_changed),
        }


def _tensor_map(f: FileDigest | None) -> dict[str, TensorDigest]:
    return {} if f is None else {t.name: t for t in f.tensors}


def diff_manifests(old: Manifest, new: Manifest) -> ManifestDiff:
    """Files and tensors added, removed and changed from ``old`` to ``new``.

    Manifests made with different algorithms cannot be compared file by file."""
    if old.algorithm != new.algorithm:
        raise MalformedError(
            f"cannot compare a {old.algorithm} manifest with a {new.algorithm} one"
        )
    a = {f.path: f for f in old.files}
    b = {f.path: f for f in new.files}
    changed = sorted(
        (p for p in a.keys() & b.keys() if a[p].digest != b[p].digest), key=oms_sort_key
    )
    t_added: list[str] = []
    t_removed: list[str] = []
    t_changed: list[str] = []
    for path in sorted(a.keys() | b.keys(), key=oms_sort_key):
        ta, tb = _tensor_map(a.get(path)), _tensor_map(b.get(path))
        t_added += [f"{path}:{n}" for n in sorted(tb.keys() - ta.keys())]
        t_removed += [f"{path}:{n}" for n in sorted(ta.keys() - tb.keys())]
        t_changed += [
            f"{path}:{n}" for n in sorted(ta.keys() & tb.keys()) if ta[n].digest != tb[n].digest
        ]
    return ManifestDiff(
        added=tuple(sorted(b.keys() - a.keys(), key=oms_sort_key)),
        removed=tuple(sorted(a.keys() - b.keys(), key=oms_sort_key)),
        changed=tuple(changed),
        tensors_added=tuple(t_added),
        tensors_removed=tuple(t_removed),
        tensors_changed=tuple(t_changed),
    )


def manifest_of(name: str, algorithm: str, files: Iterable[FileDigest], **kw: Any) -> Manifest:
    return Manifest(name=name, algorithm=algorithm, files=tuple(files), **kw)
