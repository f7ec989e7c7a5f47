"""Artifact stores from Python: ``led.artifacts`` pulls registered versions verified
against the ledger (recording the access), says which objects the ledger's versions
reference, and keeps stores tidy (``gc``) and in step with one another (``sync``).

Encrypted versions (ADR 17): ``encrypt`` stores a registered version's files encrypted
under a fresh data key wrapped by the organisation's KEK (``KeyService``) and records
how (``artifact.store``); ``grant``/``revoke`` say who may obtain the key; ``pull``
asks the ledger for it (``artifact.key.fetch``: refused, and logged, without a grant)
before the KEK holder unwraps it; ``erase`` records an erasure and destroys the key,
the stored objects and a dataset's record-proof key.

Replication (contract-set version 8, ADR 19): ``record_replica`` checks every object
of a version in a store by digest and records that the signer's organisation holds
a copy (``artifact.replica``); ``record_replicas`` does so for every version a store
holds in full (after a ``sync``); ``replication`` lists each version's copies
against the factor governance set (``led.members.replication``)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..contracts.access import member_org
from ..contracts.governance import replication_copies
from ..contracts.personal import PERSONAL_FIELDS, committed_fields
from ..contracts.state import entity_key, erased_key, grant_key, replicas_key, stored_key
from ..contracts.types import (
    ACCESS_LOG,
    ARTIFACT_ERASE,
    ARTIFACT_GRANT,
    ARTIFACT_KEY_FETCH,
    ARTIFACT_REPLICA,
    ARTIFACT_REVOKE,
    ARTIFACT_STORE,
    RECORD_ERASE,
)
from ..core import canonical
from ..core.identity import Signer
from ..core.manifest import Manifest, object_ref
from ..errors import ErasedError, IntegrityError, NotFoundError, StorageError, UsageError
from ..keys.wrap import DataKeyStore, KeyWrap
from ..node.node import Ack
from ..storage.protocols import ArtifactStore, StoredObject
from ._facade import Facade

if TYPE_CHECKING:
    from pathlib import Path

    from ..storage.artifacts import PullResult

__all__ = [
    "GC_MIN_AGE_S",
    "Artifacts",
    "ErasureResult",
    "FieldErasure",
    "GcResult",
    "KeyService",
    "RecordedCopies",
    "ReplicationStatus",
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


@dataclass(frozen=True)
class RecordedCopies:
    """What ``record_replicas`` recorded (kind, name, version), and what it found
    damaged in versions it therefore did not record."""

    recorded: tuple[tuple[str, str, int], ...]
    damaged: tuple[str, ...]


@dataclass(frozen=True)
class ReplicationStatus:
    """One version's recorded copies against the ledger's replication factor
    (``required`` 0: none set). ``orgs`` maps each organisation holding a verified
    copy to its record {location, by, index, time}."""

    kind: str
    name: str
    version: int
    orgs: dict[str, dict[str, Any]]
    required: int

    @property
    def copies(self) -> int:
        return len(self.orgs)

    @property
    def under_replicated(self) -> bool:
        return self.copies < self.required


@dataclass(frozen=True)
class KeyService:
    """The organisation's key-encryption key and the key stores holding wrapped data
    keys: new keys go to the first; an erasure destroys the key in every one. Whoever
    holds the KEK is where grants are enforced: it unwraps a data key only for a key
    request the ledger accepted."""

    kek: KeyWrap
    stores: tuple[DataKeyStore, ...]

    def __post_init__(self) -> None:
        if not self.stores:
            raise UsageError("a key service needs at least one key store")


@dataclass(frozen=True)
class FieldErasure:
    """What ``erase_fields`` did: the ``record.erase`` entry, the fields it erased and
    the disclosures deleted from this side's vault."""

    index: int
    fields: tuple[str, ...]
    deleted: int


@dataclass(frozen=True)
class ErasureResult:
    """What an erasure destroyed: the key entries, the stored objects (by store),
    a dataset version's record-proof key, and the disclosures of the version's
    committed personal fields (contract-set version 8 on) deleted from this side's vault."""

    index: int | None
    keys_destroyed: tuple[str, ...]
    objects_deleted: tuple[str, ...]
    record_key_destroyed: bool
    fields_deleted: int = 0


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
        for kind, record in self.versions():
            name, version = record["name"], int(record["version"])
            if self.erasure(kind, name, version) is not None:
                continue  # erased: nothing of it is to be kept
            refs.update(self._objects(kind, record))
        return refs

    def objects_of(self, kind: str, name: str, version: int) -> dict[str, int]:
        """The objects a copy of a version consists of, with their sizes: the
        ciphertexts ``artifact.store`` recorded for an encrypted version, else each
        file's bytes and the manifest."""
        return self._objects(kind, self._version(kind, name, version))

    def _objects(self, kind: str, record: dict[str, Any]) -> dict[str, int]:
        stored = self.stored(kind, record["name"], int(record["version"]))
        if stored is not None:  # encrypted: only the ciphertexts are in stores
            return {str(o["ciphertext"]): int(o["size"]) for o in stored["objects"]}
        manifest = self.manifest_of(record)
        refs = {object_ref(manifest.algorithm, f.digest): f.size for f in manifest.files}
        refs[manifest_ref(manifest)] = len(manifest_bytes(manifest))
        return refs

    def stored(self, kind: str, name: str, version: int) -> dict[str, Any] | None:
        """How a version is stored encrypted (``artifact.store``), or None if it is not."""
        found = self._state(stored_key(kind, name, version))
        return found if isinstance(found, dict) else None

    def erasure(self, kind: str, name: str, version: int) -> dict[str, Any] | None:
        """A version's erasure {reason, by, signers, index, time}, or None."""
        found = self._state(erased_key(kind, name, version))
        return found if isinstance(found, dict) else None

    def _not_erased(self, kind: str, name: str, version: int) -> None:
        erased = self.erasure(kind, name, version)
        if erased is not None:
            raise ErasedError(
                f"{kind} {name} version {version} was erased at entry {erased['index']} "
                f"by {erased['by']}: {erased['reason']}"
            )

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
        keys: KeyService | None = None,
    ) -> tuple[int, PullResult]:
        """Fetch a registered version's files into ``dest``, every byte checked against
        the manifest the ledger records, falling back from one store to the next where
        an object is missing or damaged. Once everything is verified the access is
        recorded (``access.log``), and only then are the files placed in ``dest``:
        on any failure ``dest`` is left as it was. Returns (version, PullResult).

        An encrypted version needs ``keys``: its data key is requested first
        (``fetch_key``: refused without a grant), and each object is decrypted and
        checked whole before anything is placed. An erased version: ErasedError."""
        from ..storage.artifacts import pull_manifest

        who = self._signer(signer)  # before any transfer: a pull is always recorded
        number, manifest = self.resolve(kind, name, version, env)
        self._not_erased(kind, name, number)
        opened = [as_store(s) for s in stores]
        fetch_object = None
        stored = self.stored(kind, name, number)
        if stored is not None:
            if keys is None:
                raise UsageError(
                    f"{kind} {name} version {number} is stored encrypted: pulling it needs "
                    "the organisation's key service (the KEK and its key stores)"
                )
            data_key = self.fetch_key(kind, name, number, keys, purpose=purpose, signer=who)
            fetch_object = _decrypting(kind, name, number, stored, data_key)

        def record() -> None:
            body = {"artifact": {"kind": kind, "name": name, "version": number}}
            self._submit(ACCESS_LOG, {**body, "purpose": purpose}, who)

        result = pull_manifest(
            opened,
            manifest,
            dest,
            progress=progress,
            before_placing=record,
            fetch_object=fetch_object,
        )
        return number, result

    # -- encryption, grants, erasure (contract-set version 7) -----------------------

    def encrypt(
        self,
        kind: str,
        name: str,
        version: int,
        path: str | os.PathLike[str],
        store: StoreSpec,
        keys: KeyService,
        *,
        signer: Signer | None = None,
        progress: Moved | None = None,
    ) -> Ack:
        """Store a registered version's files (at ``path``, as registered) encrypted in
        ``store``: one fresh data key for the version, each distinct file encrypted with
        Tink's streaming AEAD, the data key wrapped by the KEK into the first key store,
        and ``artifact.store`` recording the ciphertext digests, the location and the
        key entry's id (never a key). A file that changed since it was registered
        stores nothing (IntegrityError)."""
        import secrets
        from pathlib import Path

        from ..keys.wrap import WrappedKey
        from ..storage.crypt import SCHEME, associated_data, encrypt_file, new_data_key

        self._not_erased(kind, name, version)
        record = self._version(kind, name, version)
        manifest = self.manifest_of(record)
        s = as_store(store)
        root = Path(path)
        data_key = new_data_key()
        entry = secrets.token_hex(16)
        objects: dict[str, dict[str, Any]] = {}
        for f in manifest.files:
            ref = object_ref(manifest.algorithm, f.digest)
            if ref in objects:
                continue
            src = root if f.path == "." else root.joinpath(*f.path.split("/"))
            ad = associated_data(kind, name, version, ref)
            cref, size = encrypt_file(s, src, ref, data_key, ad, progress)
            objects[ref] = {"digest": ref, "ciphertext": cref, "size": size}
        home = keys.stores[0]
        home.put(WrappedKey(entry, keys.kek.kek_id, keys.kek.wrap(data_key)))
        body = {
            "artifact": {"kind": kind, "name": name, "version": version},
            "scheme": SCHEME,
            "key": entry,
            "location": s.url,
            "objects": sorted(objects.values(), key=lambda o: o["digest"]),
        }
        try:
            return self._submit(ARTIFACT_STORE, body, signer)
        except BaseException:
            home.destroy(entry)  # the ciphertexts are left for gc: unreferenced
            raise

    def grant(
        self,
        kind: str,
        name: str,
        member: str,
        *,
        version: int | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Let ``member`` obtain the data key of ``version`` of ``name`` (every version
        when None); replaces the member's earlier grant for ``name``."""
        body = {"artifact": {"kind": kind, "name": name}, "member": member, "version": version}
        return self._submit(ARTIFACT_GRANT, body, signer)

    def revoke(self, kind: str, name: str, member: str, *, signer: Signer | None = None) -> Ack:
        """Withdraw ``member``'s grant for ``name`` (keys it already obtained are its)."""
        body = {"artifact": {"kind": kind, "name": name}, "member": member}
        return self._submit(ARTIFACT_REVOKE, body, signer)

    def grants(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The grants in force for ``name``: {member, version, by, index, time}."""
        out = []
        for _, value in self._led.store.state_prefix(grant_key(kind, name, "")):
            found = canonical.loads(value)
            if isinstance(found, dict):
                out.append(found)
        return sorted(out, key=lambda g: str(g["member"]))

    def fetch_key(
        self,
        kind: str,
        name: str,
        version: int,
        keys: KeyService,
        *,
        purpose: str = "pull",
        signer: Signer | None = None,
    ) -> bytes:
        """The data key of an encrypted version, for ``signer``: the request is logged
        (``artifact.key.fetch``) and, unless the member registered the version's
        storage or holds a grant, rejected (RejectedError, the refusal in the log);
        only an accepted request has the KEK unwrap the key."""
        self._not_erased(kind, name, version)
        body = {"artifact": {"kind": kind, "name": name, "version": version}, "purpose": purpose}
        self._submit(ARTIFACT_KEY_FETCH, body, signer)
        stored = self.stored(kind, name, version)
        assert stored is not None  # the contract accepts a request only for a stored version
        entry = str(stored["key"])
        for ks in keys.stores:
            if ks.has(entry):
                wrapped = ks.get(entry)
                if wrapped.kek_id != keys.kek.kek_id:
                    raise UsageError(
                        f"the data key of {kind} {name} version {version} is wrapped by "
                        f"{wrapped.kek_id}, not by this key service's KEK {keys.kek.kek_id}"
                    )
                return keys.kek.unwrap(wrapped.wrapped)
        where = ", ".join(str(k.root) for k in keys.stores)
        raise NotFoundError(
            f"the data key of {kind} {name} version {version} (entry {entry}) is in none "
            f"of the key stores: {where}"
        )

    def erase(
        self,
        kind: str,
        name: str,
        version: int,
        reason: str,
        *,
        signers: Sequence[Signer] = (),
        keys: KeyService | None = None,
        stores: Sequence[StoreSpec] = (),
        key_stores: Sequence[DataKeyStore] = (),
    ) -> ErasureResult:
        """Record the erasure of a version (``artifact.erase``, signed by every one of
        ``signers``: a new ledger's policy wants a data steward and an admin among
        them), then destroy what is off the ledger (``shred``)."""
        who = list(signers) or [self._signer(None)]
        body = {"artifact": {"kind": kind, "name": name, "version": version}, "reason": reason}
        envelope = self._led.transaction(ARTIFACT_ERASE, body, who[0].name).sign(*who)
        ack = self._led.submit(envelope)
        if not ack.outcome.accepted:
            from ._refusals import refused

            raise refused(self._led, envelope, ack, f"{ARTIFACT_ERASE} was rejected")
        result = self.shred(kind, name, version, keys=keys, stores=stores, key_stores=key_stores)
        return dataclasses.replace(result, index=ack.index)

    def shred(
        self,
        kind: str,
        name: str,
        version: int,
        *,
        keys: KeyService | None = None,
        stores: Sequence[StoreSpec] = (),
        key_stores: Sequence[DataKeyStore] = (),
    ) -> ErasureResult:
        """Destroy what is off the ledger of a version whose erasure the ledger records:
        its data key in every key store (``key_stores`` and those of ``keys``: no KEK
        is needed to destroy a wrapped key), its objects in every store given (the
        ciphertexts; for a version stored in plaintext, the files no other version
        holds too), and a dataset version's record-proof key. Idempotent: run it
        wherever a copy of the key or objects may live (each organisation's stores)."""
        erased = self.erasure(kind, name, version)
        if erased is None:
            raise UsageError(f"the ledger records no erasure of {kind} {name} version {version}")
        stored = self.stored(kind, name, version)
        destroyed: list[str] = []
        doomed: set[str] = set()
        if stored is not None:
            doomed |= {str(o["ciphertext"]) for o in stored["objects"]}
            every = [*key_stores, *(keys.stores if keys is not None else ())]
            for ks in every:
                if ks.destroy(str(stored["key"])):
                    destroyed.append(f"{ks.root}/{stored['key']}")
        else:
            manifest = self.manifest_of(self._version(kind, name, version))
            doomed |= {object_ref(manifest.algorithm, f.digest) for f in manifest.files}
            doomed.add(manifest_ref(manifest))
        doomed -= set(self.referenced())  # another version holds the same bytes
        deleted = []
        for spec in stores:
            s = as_store(spec)
            for ref in sorted(doomed):
                if s.has(ref):
                    s.delete(ref)
                    deleted.append(f"{s.url}: {ref}")
        record_key = False
        if kind == "dataset":
            origin = self._led.origin.replace("/", "_")
            path = self._led.home / "records" / origin / f"{name}@{version}.key"
            if path.exists():
                path.unlink()
                record_key = True
        # The version's committed fields (a dataset version's ingest) read as erased
        # everywhere from the erasure on; their disclosures go from this side's vault.
        entry = self._led.entry(int(self._version(kind, name, version)["index"]))
        fields = self._led.disclosures.shred(committed_fields(entry.transaction).values())
        return ErasureResult(
            int(erased["index"]), tuple(destroyed), tuple(deleted), record_key, fields
        )

    def erase_fields(
        self,
        index: int,
        reason: str,
        *,
        signers: Sequence[Signer] = (),
        fields: Sequence[str] = (),
    ) -> FieldErasure:
        """Erase the committed personal fields of entry ``index`` (all of them, or those
        named): record ``record.erase`` signed by every one of ``signers`` (a new
        ledger's policy wants a data steward and an admin among them), then delete
        the disclosures from this side's vault (``disclosures.shred``); other sides
        shred theirs with ``shred_fields``."""
        from ._refusals import refused

        tx = self._led.entry(index).transaction
        found = committed_fields(tx)
        if fields:
            unknown = sorted(set(fields) - set(found))
            if unknown:
                raise UsageError(
                    f"entry {index} ({tx.type}) has no committed field {', '.join(unknown)}; "
                    f"its committed fields: {', '.join(found) or 'none'}"
                )
            found = {f: found[f] for f in fields}
        if not found:
            raise UsageError(
                f"entry {index} ({tx.type}) has no committed personal field to erase "
                f"(personal fields of {tx.type}: "
                f"{', '.join(PERSONAL_FIELDS.get(tx.type, ())) or 'none'})"
            )
        who = list(signers) or [self._signer(None)]
        body = {"entry": index, "fields": sorted(found.values()), "reason": reason}
        envelope = self._led.transaction(RECORD_ERASE, body, who[0].name).sign(*who)
        ack = self._led.submit(envelope)
        if not ack.outcome.accepted:
            raise refused(self._led, envelope, ack, f"{RECORD_ERASE} was rejected")
        deleted = self._led.disclosures.shred(found.values())
        return FieldErasure(ack.index, tuple(sorted(found)), deleted)

    def shred_fields(self, index: int) -> int:
        """Delete from this side's vault the disclosures of entry ``index``'s fields
        whose erasure the ledger records; how many were deleted."""
        return self._led.disclosures.shred(self._led.disclosures.committed(index).values())

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

    # -- replication (contract-set version 8) ----------------------------------------

    def replicas(self, kind: str, name: str, version: int) -> dict[str, dict[str, Any]]:
        """The organisations recorded as holding a verified copy of a version, each
        with {location, by, index, time}."""
        found = self._state(replicas_key(kind, name, version))
        return dict(found) if isinstance(found, dict) else {}

    def replication(self) -> list[ReplicationStatus]:
        """Every registered version not erased, with its recorded copies against the
        replication factor (deploys of models are held to it; datasets are listed
        against it too)."""
        required = replication_copies(self._led.store)
        out = []
        for kind, record in self.versions():
            name, version = str(record["name"]), int(record["version"])
            if self.erasure(kind, name, version) is None:
                orgs = self.replicas(kind, name, version)
                out.append(ReplicationStatus(kind, name, version, orgs, required))
        return sorted(out, key=lambda r: (r.kind, r.name, r.version))

    def check_copy(
        self,
        kind: str,
        name: str,
        version: int,
        store: StoreSpec,
        *,
        skip: frozenset[str] = frozenset(),
        progress: Moved | None = None,
    ) -> None:
        """Re-hash every object of a version in ``store`` (but those in ``skip``,
        verified already); IntegrityError naming each one missing or damaged."""
        from ..storage.artifacts import verify_objects

        s = as_store(store)
        wanted = [
            StoredObject(r, n) for r, n in sorted(self.objects_of(kind, name, version).items())
        ]
        missing = [o.ref for o in wanted if o.ref not in skip and not s.has(o.ref)]
        rest = [o for o in wanted if o.ref not in skip and o.ref not in missing]
        damaged = [o.ref for o in verify_objects(s, rest, progress)]
        if missing or damaged:
            raise IntegrityError(
                f"{s.url} holds no verified copy of {kind} {name} version {version}: "
                f"{len(missing)} objects missing, {len(damaged)} damaged",
                (*(f"missing {r}" for r in missing), *(f"damaged {r}" for r in damaged)),
            )

    def record_replica(
        self,
        kind: str,
        name: str,
        version: int,
        store: StoreSpec,
        *,
        signer: Signer | None = None,
        verify: bool = True,
        again: bool = True,
        progress: Moved | None = None,
    ) -> Ack | None:
        """Record that the signer's organisation holds a copy of a version in ``store``
        (``artifact.replica``), once every object there is verified by digest
        (``verify=False`` only where the caller has just written and hashed them).
        IntegrityError, nothing recorded, if any is missing or damaged. With
        ``again=False`` nothing is done (None) where the organisation's copy is
        recorded at that store already."""
        self._not_erased(kind, name, version)
        s = as_store(store)
        who = self._signer(signer)
        if not again:
            mine = self.replicas(kind, name, version).get(member_org(self._led.store, who.name))
            if mine is not None and mine["location"] == s.url:
                return None
        if verify:
            self.check_copy(kind, name, version, s, progress=progress)
        body = {"artifact": {"kind": kind, "name": name, "version": version}, "location": s.url}
        return self._submit(ARTIFACT_REPLICA, body, who)

    def record_replicas(
        self,
        store: StoreSpec,
        *,
        signer: Signer | None = None,
        verified: Sequence[str] = (),
        progress: Moved | None = None,
    ) -> RecordedCopies:
        """Record a copy (``record_replica``) of every version not erased that ``store``
        holds in full and the signer's organisation has not recorded there yet; the
        objects in ``verified`` (just copied, each checked by digest) are not re-hashed.
        A version whose copy is damaged is not recorded, and is reported."""
        s = as_store(store)
        who = self._signer(signer)
        org = member_org(self._led.store, who.name)
        skip = frozenset(verified)
        done: list[tuple[str, str, int]] = []
        problems: list[str] = []
        for kind, record in self.versions():
            name, version = str(record["name"]), int(record["version"])
            if self.erasure(kind, name, version) is not None:
                continue
            mine = self.replicas(kind, name, version).get(org)
            if mine is not None and mine["location"] == s.url:
                continue
            if not all(ref in skip or s.has(ref) for ref in self._objects(kind, record)):
                continue  # not held in full: nothing to record
            try:
                self.check_copy(kind, name, version, s, skip=skip, progress=progress)
            except IntegrityError as exc:
                problems.extend(f"{kind} {name} version {version}: {d}" for d in exc.differences)
                continue
            body = {"artifact": {"kind": kind, "name": name, "version": version}}
            self._submit(ARTIFACT_REPLICA, {**body, "location": s.url}, who)
            done.append((kind, name, version))
        return RecordedCopies(tuple(done), tuple(problems))


def _decrypting(kind: str, name: str, version: int, stored: dict[str, Any], data_key: bytes) -> Any:
    """How a pull fetches an encrypted version's objects: decrypted from the first store
    whose copy authenticates and hashes to the plaintext digest."""
    from ..storage.artifacts import fetch_first
    from ..storage.crypt import associated_data, decrypt_object

    by_digest = {str(o["digest"]): o for o in stored["objects"]}

    def fetch(
        stores: Sequence[ArtifactStore],
        ref: str,
        size: int,
        shown: str,
        path: Path,
        problems: list[str],
        progress: Moved | None,
    ) -> str:
        o = by_digest.get(ref)
        if o is None:
            raise IntegrityError(f"{shown} ({ref}) is not among the version's encrypted objects")
        ad = associated_data(kind, name, version, ref)
        cref, csize = str(o["ciphertext"]), int(o["size"])

        def fetch_from(s: ArtifactStore) -> None:
            decrypt_object(s, cref, csize, ref, size, data_key, ad, path, progress)

        return fetch_first(
            stores,
            fetch_from,
            shown=shown,
            ref=cref,
            problems=problems,
            holds="a ciphertext that decrypts to the registered bytes",
        )

    return fetch
