"""Models from Python: ``led.models`` registers immutable versions, records
evaluations, verifies files against a version and reads lineage."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contracts.state import digest_key, entity_key, model_key
from ..contracts.types import MODEL_EVALUATE, MODEL_REGISTER
from ..core import canonical
from ..core.identity import Signer
from ..core.manifest import SHA256, Manifest, ManifestDiff, diff_manifests
from ..errors import IntegrityError, NotFoundError, UsageError
from ..node.node import Ack
from ._facade import Facade, Progress
from .artifacts import Artifacts, KeyService, StoreSpec
from .lineage import Lineage, read_lineage

if TYPE_CHECKING:
    from ..storage.artifacts import PullResult

__all__ = ["ModelVersion", "Models"]


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    digest: str
    index: int
    created: bool
    record: dict[str, Any]


def _named_differences(lines: Iterable[str], path: Path) -> tuple[str, ...]:
    """Difference lines with a single-file artifact's file named: its manifest
    calls the file ".", which tells a reader nothing."""
    out = []
    for line in lines:
        verb, _, what = line.partition(" ")
        if what == "." or what.startswith(".:"):
            line = f"{verb} {path.name}{what[1:]}"
        out.append(line)
    return tuple(out)


class Models(Facade):
    """Models and their immutable versions: ``led.models``."""

    def register(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        run: str | None = None,
        parent: tuple[str, int] | None = None,
        metrics: dict[str, Any] | None = None,
        card: dict[str, Any] | None = None,
        algorithm: str = SHA256,
        signer: Signer | None = None,
        progress: Progress | None = None,
        allow_symlinks: bool = False,
        manifest: Manifest | None = None,
        store: StoreSpec | None = None,
    ) -> ModelVersion:
        """Register the model at ``path``. The same bytes again return the
        existing version (``created`` is False) and write nothing. ``manifest``
        skips hashing when the caller has just computed it (e.g. an OMS import).

        With ``store`` (an artifact store, a folder or an fsspec URL) the files
        are uploaded from the same reads that hash them, and the manifest beside
        them, before the version is registered; running it again after an
        interruption uploads only what is missing."""
        if store is not None:
            manifest = Artifacts(self._led).hash_and_store(
                path,
                store,
                algorithm=algorithm,
                progress=progress,
                allow_symlinks=allow_symlinks,
                manifest=manifest,
            )
        elif manifest is None:
            manifest = self._hash(path, algorithm, progress, allow_symlinks, True)
        existing = self._state(digest_key("model", name, manifest.digest))
        if existing is not None:
            return self._result(name, int(existing), created=False)
        body = {
            "name": name,
            "artifact": self._artifact(manifest),
            "run": run,
            "parent": None if parent is None else {"name": parent[0], "version": parent[1]},
            "metrics": metrics or {},
            "card": card or {},
        }
        self._submit(MODEL_REGISTER, body, signer)
        entity = self._state(model_key(name))
        return self._result(name, int(entity["latest"]), created=True)

    def _result(self, name: str, version: int, created: bool) -> ModelVersion:
        record = self._version("model", name, version)
        return ModelVersion(
            name, version, record["artifact"]["digest"], record["index"], created, record
        )

    def evaluate(
        self,
        name: str,
        version: int,
        *,
        dataset: tuple[str, int],
        metrics: dict[str, float | None],
        tool: dict[str, Any] | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Record an evaluator's metrics for a version on a registered dataset version."""
        body = {
            "model": {"name": name, "version": version},
            "dataset": {"name": dataset[0], "version": dataset[1]},
            "metrics": metrics,
            "tool": tool or {},
        }
        return self._submit(MODEL_EVALUATE, body, signer)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        return self._result(name, self._version("model", name, version)["version"], False)

    def info(self, name: str) -> dict[str, Any]:
        """The model itself: owner, latest version, the entry that created it."""
        found = self._entity("model", name)
        if found is None:
            raise NotFoundError(f"no model named {name!r}")
        return found

    def produced_by(self, run_id: str) -> list[dict[str, Any]]:
        """Every model version registered as the output of training run ``run_id``."""
        out = []
        for key, value in self._led.store.state_prefix(entity_key("model", "")):
            if "@" in key:
                record = canonical.loads(value)
                if isinstance(record, dict) and record.get("run") == run_id:
                    out.append(record)
        return out

    def list(self) -> list[dict[str, Any]]:
        return self._list("model")

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        return self.manifest_of(self._version("model", name, version))

    def diff(self, name: str, old: int, new: int) -> ManifestDiff:
        return diff_manifests(self.manifest(name, old), self.manifest(name, new))

    def deployed(self, name: str, env: str) -> int:
        """The version of ``name`` deployed to environment ``env``."""
        return self._deployed(name, env)

    def verify(
        self,
        path: str | os.PathLike[str],
        name: str,
        version: int | None = None,
        *,
        env: str | None = None,
        trust_cache: bool = False,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Re-hash ``path`` and compare with the registered version (the latest,
        a given one, or the one deployed to ``env``); raise IntegrityError
        naming every differing file and tensor (``artifacts.verify_path``, with
        its ignore rules: the defaults less what the manifest hashed, and what
        the manifest itself lists as ignored)."""
        from ..artifacts.hashing import verify_path

        if env is not None:
            if version is not None:
                raise UsageError("give a version or an environment, not both")
            version = self.deployed(name, env)
        registered = self.get(name, version)
        expected = self.manifest(name, registered.version)
        cache = self._cache() if trust_cache else None
        try:
            verify_path(path, expected, cache=cache, progress=progress)
        except IntegrityError as exc:
            raise IntegrityError(
                f"{path} is not {name} version {registered.version} ({registered.digest})",
                _named_differences(exc.differences, Path(path)) or ("the manifests differ",),
            ) from None
        return registered

    def pull(
        self,
        name: str,
        dest: str | os.PathLike[str],
        version: int | None = None,
        *,
        env: str | None = None,
        stores: Sequence[StoreSpec],
        purpose: str = "pull",
        signer: Signer | None = None,
        progress: Callable[[int], None] | None = None,
        keys: KeyService | None = None,
    ) -> PullResult:
        """Fetch version ``version`` (default the latest, or the one deployed to
        ``env``) from the first of ``stores`` holding good copies into ``dest``,
        verified against the ledger and recorded as an access before anything is
        placed there (``led.artifacts.pull``; an encrypted version needs ``keys``)."""
        _, result = Artifacts(self._led).pull(
            "model",
            name,
            dest,
            stores=stores,
            version=version,
            env=env,
            purpose=purpose,
            signer=signer,
            progress=progress,
            keys=keys,
        )
        return result

    def lineage(self, name: str, version: int | None = None) -> Lineage:
        """Datasets, runs and parent models behind a version, recursively."""
        return read_lineage(self._led, name, version)
