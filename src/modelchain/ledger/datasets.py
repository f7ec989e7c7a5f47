"""Datasets from Python: ``led.datasets`` registers versions, records ingest
events and quality attestations, and proves records against registered roots."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..contracts.state import digest_key
from ..contracts.types import ACCESS_LOG, DATASET_ATTEST, DATASET_INGEST, DATASET_REGISTER
from ..core.identity import Signer
from ..core.manifest import SHA256, Manifest
from ..errors import ArtifactError, KeyStoreError, NotFoundError
from ..node.node import Ack
from ._facade import Facade, Progress
from .artifacts import Artifacts, KeyService, StoreSpec
from .lineage import DatasetUse, read_uses

if TYPE_CHECKING:
    from ..core.records import RecordProof
    from ..storage.artifacts import PullResult

__all__ = ["DatasetVersion", "Datasets"]


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    digest: str
    index: int  # the ledger entry that registered it
    created: bool  # False when the same bytes were already this version
    record: dict[str, Any]

    @property
    def records(self) -> dict[str, Any] | None:
        value = self.record.get("records")
        return value if isinstance(value, dict) else None


class Datasets(Facade):
    """Datasets and their versions: ``led.datasets``."""

    def register(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        license: str = "",
        description: str = "",
        records: bool = True,
        algorithm: str = SHA256,
        signer: Signer | None = None,
        progress: Progress | None = None,
        allow_symlinks: bool = False,
        store: StoreSpec | None = None,
    ) -> DatasetVersion:
        """Register a dataset and its first version from the files at ``path``.

        For a CSV or Parquet file a salted record-level Merkle root is recorded
        too (``records=False`` skips it); its key stays in the ledger's ``home``.
        With ``store`` the files go to that artifact store from the same reads
        that hash them (as ``models.register``)."""
        manifest = self._hash_maybe_storing(path, algorithm, progress, allow_symlinks, store)
        body = {
            "name": name,
            "source": source,
            "license": license,
            "description": description,
            "artifact": self._artifact(manifest),
            "records": self._records(name, 1, path) if records else None,
        }
        ack = self._submit(DATASET_REGISTER, body, signer)
        return self._result(name, 1, ack)

    def ingest(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        source: str,
        batch: str,
        collected_by: str,
        collected_at: int | None = None,
        records: bool = True,
        algorithm: str = SHA256,
        signer: Signer | None = None,
        progress: Progress | None = None,
        store: StoreSpec | None = None,
    ) -> DatasetVersion:
        """Record a data-collection event: it makes the dataset's next version
        (with ``store``, its files are uploaded as for ``register``)."""
        entity = self._entity("dataset", name)
        if entity is None:
            raise NotFoundError(f"no dataset named {name!r}; register it first")
        manifest = self._hash_maybe_storing(path, algorithm, progress, False, store)
        existing = self._state(digest_key("dataset", name, manifest.digest))
        if existing is not None:
            return self._result(name, int(existing), None)
        body = {
            "dataset": name,
            "source": source,
            "batch": batch,
            "collected_by": collected_by,
            "collected_at": self._led.clock() if collected_at is None else collected_at,
            "artifact": self._artifact(manifest),
            "records": self._records(name, int(entity["latest"]) + 1, path) if records else None,
        }
        ack = self._submit(DATASET_INGEST, body, signer)
        return self._result(name, int(entity["latest"]) + 1, ack)

    def _hash_maybe_storing(
        self,
        path: str | os.PathLike[str],
        algorithm: str,
        progress: Progress | None,
        allow_symlinks: bool,
        store: StoreSpec | None,
    ) -> Manifest:
        if store is None:
            return self._hash(path, algorithm, progress, allow_symlinks, True)
        return Artifacts(self._led).hash_and_store(
            path, store, algorithm=algorithm, progress=progress, allow_symlinks=allow_symlinks
        )

    def pull(
        self,
        name: str,
        dest: str | os.PathLike[str],
        version: int | None = None,
        *,
        stores: Sequence[StoreSpec],
        purpose: str = "pull",
        signer: Signer | None = None,
        progress: Callable[[int], None] | None = None,
        keys: KeyService | None = None,
    ) -> PullResult:
        """Fetch a dataset version into ``dest`` from the first of ``stores`` holding
        good copies, verified against the ledger and recorded as an access before
        anything is placed there (``led.artifacts.pull``; an encrypted version needs
        ``keys``)."""
        _, result = Artifacts(self._led).pull(
            "dataset",
            name,
            dest,
            stores=stores,
            version=version,
            purpose=purpose,
            signer=signer,
            progress=progress,
            keys=keys,
        )
        return result

    def _records(
        self, name: str, version: int, path: str | os.PathLike[str]
    ) -> dict[str, Any] | None:
        from ..artifacts.tables import record_root, table_kind
        from ..core.records import RECORD_SCHEME

        try:
            table_kind(path)
        except ArtifactError:
            return None
        root, count = record_root(path, self._record_key(name, version))
        return {"scheme": RECORD_SCHEME, "root": root.hex(), "count": count}

    def _record_key(self, name: str, version: int, create: bool = True) -> bytes:
        """The dataset owner's secret for salting one version's record leaves,
        kept off-ledger. One per version: with a shared key an unchanged row
        would have the same leaf in two versions and proofs would link them."""
        origin = self._led.origin.replace("/", "_")
        path = self._led.home / "records" / origin / f"{name}@{version}.key"
        if path.exists():
            return path.read_bytes()
        if not create:
            raise KeyStoreError(
                f"no record key for {name} version {version} at {path}: proofs are made "
                "where the dataset was registered, with its owner's key"
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key

    def _result(self, name: str, version: int, ack: Ack | None) -> DatasetVersion:
        record = self._version("dataset", name, version)
        return DatasetVersion(
            name, version, record["artifact"]["digest"], record["index"], ack is not None, record
        )

    def attest(
        self, name: str, version: int, result: dict[str, Any], *, signer: Signer | None = None
    ) -> Ack:
        """Record a validator's data-quality result (e.g. from
        ``modelchain.checks.run_quality_checks``) for a dataset version."""
        body = {"dataset": {"name": name, "version": version}, "result": result}
        return self._submit(DATASET_ATTEST, body, signer)

    def locate(self, name: str, version: int, *, purpose: str, signer: Signer | None = None) -> str:
        """The dataset's source location, handed out only after recording who asked
        for it and why (an ``access.log`` entry)."""
        record = self.get(name, version)
        self._submit(
            ACCESS_LOG,
            {"artifact": {"kind": "dataset", "name": name, "version": version}, "purpose": purpose},
            signer,
        )
        return str(self.info(name)["source"]) or str(record.record["artifact"]["digest"])

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        return self._result(name, self._version("dataset", name, version)["version"], None)

    def info(self, name: str) -> dict[str, Any]:
        found = self._entity("dataset", name)
        if found is None:
            raise NotFoundError(f"no dataset named {name!r}")
        return found

    def list(self) -> list[dict[str, Any]]:
        return self._list("dataset")

    def used_by(self, name: str) -> dict[int, DatasetUse]:
        """What used each version of ``name`` directly: the runs that trained on
        it, the model versions they produced and the evaluations made on it."""
        self.info(name)  # NotFoundError for a dataset that is not there
        return read_uses(self._led, name)

    def prove(self, name: str, version: int, row: int, path: str | os.PathLike[str]) -> RecordProof:
        """Prove that row ``row`` of the file at ``path`` is in the registered version."""
        from ..artifacts.tables import prove_record
        from ..core.records import verify_record_proof

        record = self._version("dataset", name, version)
        rec = record.get("records")
        if not isinstance(rec, dict):
            raise NotFoundError(f"dataset {name} version {version} has no record-level root")
        proof = prove_record(path, self._record_key(name, version, create=False), row)
        verify_record_proof(proof, bytes.fromhex(rec["root"]), rec["count"])
        return proof

    def verify_record(self, proof: RecordProof, name: str, version: int) -> None:
        """Check a record proof against the root this ledger registered."""
        from ..core.records import verify_record_proof

        rec = self._version("dataset", name, version).get("records")
        if not isinstance(rec, dict):
            raise NotFoundError(f"dataset {name} version {version} has no record-level root")
        verify_record_proof(proof, bytes.fromhex(rec["root"]), rec["count"])
