"""Training runs from Python: ``led.runs`` records in-toto Statements with SLSA
Provenance v1 predicates (outputs hashed now, inputs by registered version)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..contracts.registry import SLSA_PROVENANCE, STATEMENT_V1, dependency_uri
from ..contracts.state import run_key
from ..contracts.types import RUN_RECORD
from ..core.identity import Signer
from ..core.manifest import SHA256, Manifest
from ..core.times import rfc3339
from ..errors import NotFoundError, UsageError
from ._facade import Facade

__all__ = ["BUILD_TYPE", "Runs", "environment"]

BUILD_TYPE = "https://modelchain.dev/training/v1"
_KEY_PACKAGES = (
    "torch",
    "numpy",
    "scikit-learn",
    "transformers",
    "lightning",
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


class Runs(Facade):
    """Training runs as in-toto Statements with SLSA Provenance v1: ``led.runs``."""

    def record(
        self,
        run_id: str,
        *,
        outputs: Sequence[str | os.PathLike[str] | Manifest],
        datasets: Iterable[tuple[str, int]] = (),
        base_models: Iterable[tuple[str, int]] = (),
        parameters: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        started: int | None = None,
        finished: int | None = None,
        code_dir: str | os.PathLike[str] | None = ".",
        dependencies: Iterable[dict[str, Any]] = (),
        training_environment: dict[str, Any] | None = None,
        signer: Signer | None = None,
    ) -> str:
        """Record a training run whose outputs (model files or folders) are hashed
        now, or given as the manifests a caller has just computed.

        ``dependencies`` are further SLSA resolved dependencies (ResourceDescriptors)
        recorded as given, such as a commit or data known only to another system;
        ``training_environment`` replaces this process's environment (for a run
        that ran elsewhere, as another system recorded it)."""
        subjects = []
        for out in outputs:
            if isinstance(out, Manifest):
                if out.algorithm != SHA256:
                    raise UsageError(f"a run's outputs are named by sha256, not {out.algorithm}")
                manifest = out
            else:
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
        deps.extend(dict(d) for d in dependencies)
        env = training_environment
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
                    "internalParameters": {"environment": environment() if env is None else env},
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
