"""The registry from Python: ``led.datasets``, ``led.runs`` and ``led.models``.

These hash artifacts where they lie, build the registry transactions, sign and
submit them, and read registered versions back. Bytes never enter the ledger:
only manifests (inline when small, else content-addressed beside the ledger).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contracts.attestations import DATASET_ATTEST, MODEL_EVALUATE
from ..contracts.registry import (
    DATASET_INGEST,
    DATASET_REGISTER,
    INLINE_MANIFEST_MAX,
    MODEL_REGISTER,
    RUN_RECORD,
    SLSA_PROVENANCE,
    STATEMENT_V1,
    dataset_key,
    dependency_uri,
    deployment_key,
    digest_key,
    model_key,
    parse_dependency_uri,
    run_key,
    version_key,
)
from ..core import canonical
from ..core.identity import Signer
from ..core.manifest import SHA256, Manifest, ManifestDiff, diff_manifests
from ..core.times import rfc3339
from ..errors import (
    ArtifactError,
    IntegrityError,
    KeyStoreError,
    NotFoundError,
    RejectedError,
    UsageError,
)
from ..keys import modelchain_home
from ..node.node import Ack

if TYPE_CHECKING:
    from ..core.records import RecordProof
    from .ledger import Ledger

__all__ = ["DatasetVersion", "Datasets", "Deployments", "ModelVersion", "Models", "Runs"]

Progress = Callable[[int, int], None]
BUILD_TYPE = "https://modelchain.dev/training/v1"
_KEY_PACKAGES = (
    "torch",
    "numpy",
    "scikit-learn",
    "transformers",
    "safetensors",
    "pandas",
    "pyarrow",
    "tensorflow",
    "jax",
    "onnx",
    "xgboost",
    "lightgbm",
    "modelchain",
)


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


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    digest: str
    index: int
    created: bool
    record: dict[str, Any]


class _Registry:
    def __init__(self, ledger: Ledger) -> None:
        self._led = ledger

    def _signer(self, signer: Signer | None) -> Signer:
        signer = signer or self._led.identity
        if signer is None:
            raise UsageError("no signer: pass signer=... or open the ledger with identity=...")
        return signer

    def _submit(self, type_: str, body: dict[str, Any], signer: Signer | None) -> Ack:
        s = self._signer(signer)
        ack = self._led.submit(self._led.transaction(type_, body, s.name).sign(s))
        if not ack.outcome.accepted:
            raise RejectedError(
                f"{type_} was rejected ({ack.outcome.code}): {ack.outcome.reason}; "
                f"the rejection is entry {ack.index}",
                ack.index,
                ack.outcome.code,
            )
        return ack

    def _state(self, key: str) -> Any:
        return self._led.store.get_state(key)

    def _hash(
        self,
        path: str | os.PathLike[str],
        algorithm: str,
        progress: Progress | None,
        allow_symlinks: bool,
        use_cache: bool,
    ) -> Manifest:
        from ..artifacts.cache import default_cache
        from ..artifacts.hashing import hash_path

        cache = default_cache(modelchain_home()) if use_cache else None
        return hash_path(
            path,
            algorithm=algorithm,
            allow_symlinks=allow_symlinks,
            cache=cache,
            progress=progress,
        )

    def _artifact(self, manifest: Manifest) -> dict[str, Any]:
        art: dict[str, Any] = {
            "digest": manifest.digest,
            "size": manifest.size,
            "files": len(manifest.files),
            "format": manifest.format,
        }
        data = canonical.dumps(manifest.to_json())
        if len(data) <= INLINE_MANIFEST_MAX:
            art["manifest"] = manifest.to_json()
        else:
            art["manifest_ref"] = self._led.blobs.put(data)
        return art

    def manifest_of(self, record: dict[str, Any]) -> Manifest:
        """The full manifest of a registered version (inline, or from the blob store)."""
        art = record["artifact"]
        if "manifest" in art:
            manifest = Manifest.from_json(art["manifest"])
        else:
            manifest = Manifest.from_json(canonical.loads(self._led.blobs.get(art["manifest_ref"])))
        if manifest.digest != art["digest"]:
            raise IntegrityError(
                f"the stored manifest of {record['name']} is not the registered one"
            )
        return manifest

    def _version(self, kind: str, name: str, version: int | None) -> dict[str, Any]:
        entity = self._state(f"{kind}/{name}")
        if not isinstance(entity, dict):
            raise NotFoundError(f"no {kind} named {name!r}")
        v = entity["latest"] if version is None else version
        found = self._state(version_key(kind, name, v))
        if not isinstance(found, dict):
            raise NotFoundError(f"{kind} {name} has no version {v} (latest is {entity['latest']})")
        return found

    def _list(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for key, value in self._led.store.state_prefix(f"{kind}/"):
            rest = key[len(kind) + 1 :]
            if "@" not in rest and "#" not in rest:
                out.append(canonical.loads(value))
        return out


class Datasets(_Registry):
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
    ) -> DatasetVersion:
        """Register a dataset and its first version from the files at ``path``.

        For a CSV or Parquet file a salted record-level Merkle root is recorded
        too (``records=False`` skips it); its key stays in $MODELCHAIN_HOME."""
        manifest = self._hash(path, algorithm, progress, allow_symlinks, True)
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
    ) -> DatasetVersion:
        """Record a data-collection event: it makes the dataset's next version."""
        entity = self._state(dataset_key(name))
        if not isinstance(entity, dict):
            raise NotFoundError(f"no dataset named {name!r}; register it first")
        manifest = self._hash(path, algorithm, progress, False, True)
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
        path = modelchain_home() / "records" / origin / f"{name}@{version}.key"
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
            "access.log",
            {"artifact": {"kind": "dataset", "name": name, "version": version}, "purpose": purpose},
            signer,
        )
        return str(self.info(name)["source"]) or str(record.record["artifact"]["digest"])

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        return self._result(name, self._version("dataset", name, version)["version"], None)

    def info(self, name: str) -> dict[str, Any]:
        found = self._state(dataset_key(name))
        if not isinstance(found, dict):
            raise NotFoundError(f"no dataset named {name!r}")
        return found

    def list(self) -> list[dict[str, Any]]:
        return self._list("dataset")

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


def _git(directory: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=check,
    ).stdout.strip()


def _git_commit(directory: Path) -> dict[str, Any] | None:
    """The working tree's commit as a SLSA resolved dependency, if it is a git tree."""
    try:
        head = _git(directory, "rev-parse", "HEAD")
        dirty = _git(directory, "status", "--porcelain", "--untracked-files=no")
        remote = _git(directory, "config", "--get", "remote.origin.url", check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    uri = f"git+{remote}" if remote else f"git+file://{directory.resolve()}"
    return {
        "uri": f"{uri}@{head}",
        "digest": {"gitCommit": head},
        "annotations": {"dirty": bool(dirty)},
    }


def environment() -> dict[str, Any]:
    """The Python and key package versions of this process."""
    import importlib.metadata  # ~9 ms, and only a run record needs it

    packages = {}
    for name in _KEY_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": packages,
    }


class Runs(_Registry):
    """Training runs as in-toto Statements with SLSA Provenance v1: ``led.runs``."""

    def record(
        self,
        run_id: str,
        *,
        outputs: Sequence[str | os.PathLike[str]],
        datasets: Iterable[tuple[str, int]] = (),
        base_models: Iterable[tuple[str, int]] = (),
        parameters: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        started: int | None = None,
        finished: int | None = None,
        code_dir: str | os.PathLike[str] | None = ".",
        signer: Signer | None = None,
    ) -> str:
        """Record a training run whose outputs (model files or folders) are hashed now."""
        subjects = []
        for out in outputs:
            manifest = self._hash(out, SHA256, None, False, True)
            subjects.append({"name": manifest.name, "digest": {"sha256": manifest.root.hex()}})
        if not subjects:
            raise UsageError("a run needs at least one output (the model it produced)")
        deps = []
        for kind, pairs in (("dataset", datasets), ("model", base_models)):
            for name, version in pairs:
                found = self._version(kind, name, version)
                alg, root = found["artifact"]["digest"].split(":", 1)
                deps.append({"uri": dependency_uri(kind, name, version), "digest": {alg: root}})
        if code_dir is not None:
            code = _git_commit(Path(code_dir))
            if code is not None:
                deps.append(code)
        s = self._signer(signer)
        now = self._led.clock()
        statement = {
            "_type": STATEMENT_V1,
            "subject": subjects,
            "predicateType": SLSA_PROVENANCE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": {"parameters": parameters or {}},
                    "internalParameters": {"environment": environment()},
                    "resolvedDependencies": deps,
                },
                "runDetails": {
                    "builder": {"id": f"modelchain:member/{s.name}"},
                    "metadata": {
                        "invocationId": run_id,
                        "startedOn": rfc3339(started if started is not None else now),
                        "finishedOn": rfc3339(finished if finished is not None else now),
                    },
                    "byproducts": [{"name": "metrics", "content": metrics or {}}]
                    if metrics
                    else [],
                },
            },
        }
        self._submit(RUN_RECORD, {"id": run_id, "statement": statement}, s)
        return run_id

    def get(self, run_id: str) -> dict[str, Any]:
        found = self._state(run_key(run_id))
        if not isinstance(found, dict):
            raise NotFoundError(f"no run {run_id!r}")
        return found


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


class Models(_Registry):
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
    ) -> ModelVersion:
        """Register the model at ``path``. The same bytes again return the
        existing version (``created`` is False) and write nothing. ``manifest``
        skips hashing when the caller has just computed it (e.g. an OMS import)."""
        if manifest is None:
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
        found = self._state(model_key(name))
        if not isinstance(found, dict):
            raise NotFoundError(f"no model named {name!r}")
        return found

    def produced_by(self, run_id: str) -> list[dict[str, Any]]:
        """Every model version registered as the output of training run ``run_id``."""
        out = []
        for key, value in self._led.store.state_prefix("model/"):
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
        found = self._state(deployment_key(name, env))
        if not isinstance(found, dict) or not isinstance(found.get("version"), int):
            raise NotFoundError(f"{name} is not deployed to {env!r}")
        return int(found["version"])

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
        naming every differing file and tensor."""
        if env is not None:
            if version is not None:
                raise UsageError("give a version or an environment, not both")
            version = self.deployed(name, env)
        registered = self.get(name, version)
        expected = self.manifest(name, registered.version)
        actual = self._hash(
            path, expected.algorithm, progress, expected.allow_symlinks, trust_cache
        )
        changes = diff_manifests(expected, actual)
        if not changes.same or actual.digest != expected.digest:
            raise IntegrityError(
                f"{path} is not {name} version {registered.version} ({registered.digest})",
                _named_differences(changes.lines(), Path(path)) or ("the manifests differ",),
            )
        return registered

    def lineage(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Datasets, runs and parent models behind a version, recursively."""
        return self._lineage("model", name, self._version("model", name, version)["version"], set())

    def _lineage(self, kind: str, name: str, version: int, seen: set[str]) -> dict[str, Any]:
        record = self._version(kind, name, version)
        node: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "version": version,
            "digest": record["artifact"]["digest"],
            "index": record["index"],
        }
        key = f"{kind}/{name}@{version}"
        if key in seen:
            return node
        seen.add(key)
        if kind == "dataset":
            node["ingest"] = record.get("ingest")
            return node
        parent = record.get("parent")
        node["parent"] = (
            None
            if parent is None
            else self._lineage("model", parent["name"], parent["version"], seen)
        )
        run_id = record.get("run")
        if run_id is None:
            node["run"] = None
            return node
        run = self._state(run_key(run_id))
        deps = run["statement"]["predicate"]["buildDefinition"].get("resolvedDependencies", [])
        inputs = []
        for dep in deps:
            parsed = (
                parse_dependency_uri(dep.get("uri", ""))
                if isinstance(dep.get("uri"), str)
                else None
            )
            if parsed is None:
                inputs.append(
                    {"kind": "external", "uri": dep.get("uri"), "digest": dep.get("digest")}
                )
            else:
                inputs.append(self._lineage(parsed[0], parsed[1], parsed[2], seen))
        node["run"] = {"id": run_id, "index": run["index"], "by": run["by"], "inputs": inputs}
        return node


class Deployments(_Registry):
    """Approvals, deployments, rollbacks, revocations and monitoring: ``led.deployments``."""

    def approve(
        self,
        model: str,
        version: int,
        env: str,
        *,
        role: str,
        comment: str = "",
        signer: Signer | None = None,
    ) -> Ack:
        body = {"model": model, "version": version, "env": env, "role": role, "comment": comment}
        return self._submit("model.approve", body, signer)

    def reject(
        self,
        model: str,
        version: int,
        env: str,
        *,
        role: str,
        comment: str = "",
        signer: Signer | None = None,
    ) -> Ack:
        body = {"model": model, "version": version, "env": env, "role": role, "comment": comment}
        return self._submit("model.reject", body, signer)

    def deploy(
        self,
        model: str,
        version: int,
        env: str,
        *,
        rollback_rule: str | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Pin ``env`` to ``version``; ``rollback_rule`` (CEL over ``metrics`` and
        ``deployment``) makes a breaching monitor report roll it back."""
        body = {"model": model, "version": version, "env": env, "rollback_rule": rollback_rule}
        return self._submit("model.deploy", body, signer)

    def rollback(
        self, model: str, env: str, *, reason: str = "", signer: Signer | None = None
    ) -> Ack:
        return self._submit(
            "model.rollback", {"model": model, "env": env, "reason": reason}, signer
        )

    def revoke(self, model: str, version: int, *, reason: str, signer: Signer | None = None) -> Ack:
        body = {"model": model, "version": version, "reason": reason}
        return self._submit("model.revoke", body, signer)

    def report(
        self, model: str, env: str, metrics: dict[str, Any], *, signer: Signer | None = None
    ) -> Ack:
        return self._submit(
            "monitor.report", {"model": model, "env": env, "metrics": metrics}, signer
        )

    def log_access(
        self, kind: str, name: str, version: int, purpose: str, *, signer: Signer | None = None
    ) -> Ack:
        body = {"artifact": {"kind": kind, "name": name, "version": version}, "purpose": purpose}
        return self._submit("access.log", body, signer)

    def current(self, model: str, env: str) -> dict[str, Any] | None:
        found = self._state(deployment_key(model, env))
        return found if isinstance(found, dict) else None

    def environments(self, model: str) -> list[str]:
        """The environments ``model`` has ever been deployed to."""
        return list(self._state(f"deploy-envs/{model}") or [])

    def history(
        self, model: str, env: str | None = None, at: int | None = None
    ) -> list[dict[str, Any]]:
        """Every change of ``model``'s deployments (one environment, or all), oldest
        first, each with who, when and under which approvals; ``at`` (ms) keeps
        the changes up to that moment."""
        envs = [env] if env is not None else self.environments(model)
        events = []
        for e in envs:
            for event in self._state(f"deploy-history/{model}/{e}") or []:
                if at is None or event["time"] <= at:
                    approvals = []
                    if event["to"] is not None:
                        record = self._version("model", model, event["to"])
                        approvals = [a for a in record.get("approvals", []) if a["env"] == e]
                    events.append({"env": e, **event, "approvals": approvals})
        return sorted(events, key=lambda ev: ev["index"])

    def serving(self, model: str, env: str, at: int) -> int | None:
        """The version ``env`` served at time ``at`` (ms), if any."""
        served = None
        for event in self.history(model, env, at):
            served = event["to"]
        return served
