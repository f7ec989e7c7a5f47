"""Artifact stores from Python: ``led.artifacts`` pulls registered versions verified
against the ledger (recording the access), says which objects the ledger's versions
reference, and keeps stores tidy (``gc``) and in step with one another (``sync``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..contracts.state import entity_key
from ..contracts.types import ACCESS_LOG
from ..core import canonical
from ..core.identity import Signer
from ..core.manifest import Manifest, object_ref
from ..errors import IntegrityError, NotFoundError, StorageError, UsageError
from ..storage.protocols import ArtifactStore, StoredObject
from ._facade import Facade

if TYPE_CHECKING:
    from ..storage.artifacts import PullResult

__all__ = [
    "GC_MIN_AGE_S",
    "Artifacts",
    "GcResult",
    "StoreSpec",
    "SyncResult",
    "as_store",
    "manifest_bytes",
    "manifest_ref",
]

GC_MIN_AGE_S = 3600.0  # unreferenced objects younger than this are kept by gc

StoreSpec = ArtifactStore | str | os.PathLike[str]
"""An artifact store, or where one is: a folder or an fsspec URL (``s3://bucket/prefix``)."""

Moved = Callable[[int], None]  # bytes just moved


def as_store(spec: StoreSpec) -> ArtifactStore:
    """``spec`` itself, or the store it names."""
    if isinstance(spec, str | os.PathLike):
        from ..storage.artifacts import open_store

        return open_store(spec)
    return spec


def manifest_bytes(manifest: Manifest) -> bytes:
    """A manifest as it is stored: its canonical JSON (the bytes its ref hashes)."""
    return canonical.dumps(manifest.to_json())


def manifest_ref(manifest: Manifest) -> str:
    """The ref a manifest is stored under: the SHA-256 of its canonical JSON (what the
    ledger's ``manifest_ref`` names when the manifest is too large to go inline)."""
    import hashlib

    return object_ref("sha256", hashlib.sha256(manifest_bytes(manifest)).hexdigest())


@dataclass(frozen=True)
class GcResult:
    """Objects no registered version references (deleted when ``deleted``), those kept
    because they are too recent (a registration may be about to reference them), and
    uploads that were interrupted long ago."""

    unreferenced: tuple[StoredObject, ...]
    recent: tuple[StoredObject, ...]
    stale_uploads: tuple[str, ...]
    deleted: bool

    @property
    def size(self) -> int:
        return sum(o.size for o in self.unreferenced)


@dataclass(frozen=True)
class SyncResult:
    """What a sync did for each object the ledger references: copied (verified),
    already present, missing from the source, or damaged there (not copied)."""

    copied: tuple[str, ...]
    present: int
    missing: tuple[str, ...]
    damaged: tuple[str, ...]


class Artifacts(Facade):
    """The artifact stores beside the ledger: ``led.artifacts``."""

    def versions(self) -> list[tuple[str, dict[str, Any]]]:
        """Every registered model and dataset version record, with its kind."""
        out = []
        for kind in ("model", "dataset"):
            for key, value in self._led.store.state_prefix(entity_key(kind, "")):
                if "@" in key[len(kind) + 1 :]:
                    record = canonical.loads(value)
                    if isinstance(record, dict):
                        out.append((kind, record))
        return out

    def referenced(self) -> dict[str, int]:
        """Every object some registered version references, with its size: each file's
        bytes and each version's manifest."""
        refs: dict[str, int] = {}
        for _, record in self.versions():
            manifest = self.manifest_of(record)
            for f in manifest.files:
                refs[object_ref(manifest.algorithm, f.digest)] = f.size
            refs[manifest_ref(manifest)] = len(manifest_bytes(manifest))
        return refs

    def hash_and_store(
        self,
        path: str | os.PathLike[str],
        store: StoreSpec,
        *,
        algorithm: str,
        progress: Callable[[int, int], None] | None = None,
        allow_symlinks: bool = False,
        manifest: Manifest | None = None,
    ) -> Manifest:
        """Hash ``path`` and upload its files to ``store`` from the same reads (a file
        the store already holds, and the cache knows, is not read), then store the
        manifest too. With ``manifest`` (already computed), the files must match it."""
        s = as_store(store)
        algorithm = manifest.algorithm if manifest is not None else algorithm
        found = self._hash(path, algorithm, progress, allow_symlinks, True, s)
        if manifest is not None and found.digest != manifest.digest:
            raise IntegrityError(f"{path} changed since it was hashed: {found.digest}")
        self.put_manifest(s, found)
        return found

    def put_manifest(self, store: StoreSpec, manifest: Manifest) -> str:
        """Store ``manifest`` itself beside its files; return its ref."""
        from ..storage.artifacts import put_bytes

        return put_bytes(as_store(store), manifest_bytes(manifest))

    def resolve(
        self, kind: str, name: str, version: int | None = None, env: str | None = None
    ) -> tuple[int, Manifest]:
        """The version (the latest, a given one, or the one deployed to ``env``) and its
        registered manifest, as the ledger records them."""
        if kind not in ("model", "dataset"):
            raise UsageError(f"artifacts are models or datasets, not {kind!r}")
        if env is not None:
            if version is not None:
                raise UsageError("give a version or an environment, not both")
            if kind != "model":
                raise UsageError("only models are deployed to environments")
            version = self._deployed(name, env)
        record = self._version(kind, name, version)
        return int(record["version"]), self.manifest_of(record)

    def pull(
        self,
        kind: str,
        name: str,
        dest: str | os.PathLike[str],
        *,
        stores: Sequence[StoreSpec],
        version: int | None = None,
        env: str | None = None,
        purpose: str = "pull",
        signer: Signer | None = None,
        progress: Moved | None = None,
    ) -> tuple[int, PullResult]:
        """Fetch a registered version's files into ``dest``, every byte checked against
        the manifest the ledger records, falling back from one store to the next where
        an object is missing or damaged. Once everything is verified the access is
        recorded (``access.log``), and only then are the files placed in ``dest``:
        on any failure ``dest`` is left as it was. Returns (version, PullResult)."""
        from ..storage.artifacts import pull_manifest

        who = self._signer(signer)  # before any transfer: a pull is always recorded
        number, manifest = self.resolve(kind, name, version, env)
        opened = [as_store(s) for s in stores]

        def record() -> None:
            body = {"artifact": {"kind": kind, "name": name, "version": number}}
            self._submit(ACCESS_LOG, {**body, "purpose": purpose}, who)

        result = pull_manifest(opened, manifest, dest, progress=progress, before_placing=record)
        return number, result

    def unreferenced(self, store: StoreSpec) -> list[StoredObject]:
        refs = self.referenced()
        return [o for o in as_store(store).objects() if o.ref not in refs]

    def gc(
        self, store: StoreSpec, *, delete: bool = False, min_age_s: float = GC_MIN_AGE_S
    ) -> GcResult:
        """The objects in ``store`` that no registered version references, and uploads
        interrupted more than a day ago; removed only with ``delete``. Objects written
        less than ``min_age_s`` ago are kept: a register uploads its files before its
        transaction is accepted, and would otherwise lose them to a gc in between."""
        from ..storage.artifacts import FsspecArtifactStore

        s = as_store(store)
        now = time.time()
        unused: list[StoredObject] = []
        recent: list[StoredObject] = []
        for o in self.unreferenced(s):
            young = o.modified is not None and now - o.modified < min_age_s
            (recent if young else unused).append(o)
        stale = s.stale_uploads() if isinstance(s, FsspecArtifactStore) else []
        if delete:
            for o in unused:
                s.delete(o.ref)
            if isinstance(s, FsspecArtifactStore):
                for path in stale:
                    s.remove_path(path)
        return GcResult(tuple(unused), tuple(recent), tuple(stale), delete)

    def sync(
        self, dest: StoreSpec, source: StoreSpec, *, progress: Moved | None = None
    ) -> SyncResult:
        """Copy into ``dest`` every object the ledger references that ``source`` holds
        and ``dest`` lacks, each verified by its digest on the way."""
        from ..storage.artifacts import copy_object

        d, s = as_store(dest), as_store(source)
        copied, missing, damaged = [], [], []
        present = 0
        for ref, size in sorted(self.referenced().items()):
            if d.has(ref):
                present += 1
                continue
            try:
                copy_object(s, d, ref, size, progress)
            except NotFoundError:
                missing.append(ref)
                continue
            except IntegrityError:
                damaged.append(ref)
                continue
            except StorageError:
                raise
            copied.append(ref)
        return SyncResult(tuple(copied), present, tuple(missing), tuple(damaged))
