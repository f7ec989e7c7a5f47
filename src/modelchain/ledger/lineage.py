"""Lineage as a typed value: the datasets, runs and parent models behind a model
version, read once from the ledger's state (``led.models.lineage``) and then
drawn by the CLI, the dashboard's SVG and Annex IV without reading it again;
and the other way, what used a dataset's versions (``led.datasets.used_by``).

A node met a second time on the walk is ``repeated``: it keeps its identity but
not its inputs, so that a shared ancestor is listed once and a cycle cannot loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..contracts.registry import parse_dependency_uri
from ..contracts.state import entity_key, run_key, version_key
from ..core import canonical
from ._facade import Facade
from .port import LedgerPort

__all__ = [
    "DatasetNode",
    "DatasetUse",
    "EvaluationUse",
    "ExternalInput",
    "Lineage",
    "LineageInput",
    "ModelNode",
    "RunNode",
    "RunUse",
    "read_lineage",
    "read_uses",
]


@dataclass(frozen=True)
class DatasetNode:
    """A registered dataset version used by a run."""

    name: str
    version: int
    digest: str
    index: int  # the entry that registered the version
    ingest: Any = None  # the ingest event that made it, if one did
    repeated: bool = False

    kind = "dataset"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "dataset",
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "index": self.index,
        }
        if not self.repeated:
            out["ingest"] = self.ingest
        return out


@dataclass(frozen=True)
class ExternalInput:
    """A run's input that is not on the ledger (a git commit, a URL)."""

    uri: Any
    digest: Any

    kind = "external"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "external", "uri": self.uri, "digest": self.digest}


@dataclass(frozen=True)
class RunNode:
    """The training run that produced a model version, and its inputs."""

    id: str
    index: int
    by: str
    inputs: tuple[LineageInput, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "by": self.by,
            "inputs": [i.to_json() for i in self.inputs],
        }


@dataclass(frozen=True)
class ModelNode:
    """A model version, its parent version and the run that produced it."""

    name: str
    version: int
    digest: str
    index: int
    parent: ModelNode | None = None
    run: RunNode | None = None
    repeated: bool = False

    kind = "model"

    def to_json(self) -> dict[str, Any]:
        """The nested dict of ``/v1/models/{name}/lineage`` and ``model lineage --json``."""
        out: dict[str, Any] = {
            "kind": "model",
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "index": self.index,
        }
        if not self.repeated:
            out["parent"] = None if self.parent is None else self.parent.to_json()
            out["run"] = None if self.run is None else self.run.to_json()
        return out

    def datasets(self) -> list[tuple[str, int]]:
        """Every dataset version behind this one, once each, in walk order."""
        found: list[tuple[str, int]] = []
        for node in self.walk():
            if isinstance(node, DatasetNode) and (node.name, node.version) not in found:
                found.append((node.name, node.version))
        return found

    def walk(self) -> Iterator[ModelNode | DatasetNode | ExternalInput]:
        """This node and everything behind it: each run's inputs, then the parent."""
        yield self
        if self.run is not None:
            for item in self.run.inputs:
                if isinstance(item, ModelNode):
                    yield from item.walk()
                else:
                    yield item
        if self.parent is not None:
            yield from self.parent.walk()

    def lines(self) -> list[str]:
        """The lineage as an indented tree (``modelchain model lineage``)."""
        out: list[str] = []
        _tree(self, out, "", True, True)
        return out


LineageInput = ModelNode | DatasetNode | ExternalInput
Lineage = ModelNode  # the root of a lineage is the model version asked about


def _label(node: LineageInput) -> str:
    if isinstance(node, ExternalInput):
        return f"external {node.uri}"
    return f"{node.kind} {node.name}@{node.version}  {node.digest[:23]}..."


def _tree(node: LineageInput, out: list[str], prefix: str, last: bool, top: bool) -> None:
    label = _label(node)
    out.append(label if top else f"{prefix}{'└── ' if last else '├── '}{label}")
    if not isinstance(node, ModelNode):
        return
    children: list[ModelNode | RunNode] = []
    if node.parent is not None:
        children.append(node.parent)
    if node.run is not None:
        children.append(node.run)
    inner = prefix if top else prefix + ("    " if last else "│   ")
    for i, child in enumerate(children):
        is_last = i == len(children) - 1
        if isinstance(child, RunNode):
            out.append(
                f"{inner}{'└── ' if is_last else '├── '}run {child.id} by "
                f"{child.by} (entry {child.index})"
            )
            deeper = inner + ("    " if is_last else "│   ")
            for j, inp in enumerate(child.inputs):
                _tree(inp, out, deeper, j == len(child.inputs) - 1, False)
        else:
            _tree(child, out, inner, is_last, False)


class _Reader(Facade):
    def __init__(self, port: LedgerPort) -> None:
        super().__init__(port)
        self._seen: set[str] = set()

    def node(self, kind: str, name: str, version: int) -> ModelNode | DatasetNode:
        record = self._version(kind, name, version)
        key = version_key(kind, name, version)
        repeated = key in self._seen
        self._seen.add(key)
        digest, index = record["artifact"]["digest"], record["index"]
        if kind == "dataset":
            return DatasetNode(name, version, digest, index, record.get("ingest"), repeated)
        if repeated:
            return ModelNode(name, version, digest, index, repeated=True)
        parent = record.get("parent")
        parent_node = None
        if parent is not None:
            found = self.node("model", parent["name"], parent["version"])
            assert isinstance(found, ModelNode)
            parent_node = found
        run_id = record.get("run")
        if run_id is None:
            return ModelNode(name, version, digest, index, parent_node, None)
        run = self._state(run_key(run_id))
        deps = run["statement"]["predicate"]["buildDefinition"].get("resolvedDependencies", [])
        inputs: list[LineageInput] = []
        for dep in deps:
            uri = dep.get("uri")
            parsed = parse_dependency_uri(uri) if isinstance(uri, str) else None
            if parsed is None:
                inputs.append(ExternalInput(uri, dep.get("digest")))
            else:
                inputs.append(self.node(parsed[0], parsed[1], parsed[2]))
        run_node = RunNode(run_id, run["index"], run["by"], tuple(inputs))
        return ModelNode(name, version, digest, index, parent_node, run_node)


def read_lineage(port: LedgerPort, name: str, version: int | None = None) -> Lineage:
    """The lineage of model ``name`` (``version``, default the latest)."""
    walker = _Reader(port)
    found = walker.node("model", name, walker._version("model", name, version)["version"])
    assert isinstance(found, ModelNode)
    return found


# -- the other way: what used a dataset ------------------------------------------------


@dataclass(frozen=True)
class RunUse:
    """A training run that read a dataset version, and the model versions
    registered as its output."""

    id: str
    index: int
    by: str
    models: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class EvaluationUse:
    """A model version evaluated on a dataset version."""

    model: str
    version: int
    by: str
    index: int


@dataclass(frozen=True)
class DatasetUse:
    """What used one dataset version directly: the runs that trained on it (with
    the models they produced) and the evaluations made on it."""

    name: str
    version: int
    runs: tuple[RunUse, ...] = ()
    evaluations: tuple[EvaluationUse, ...] = ()


def read_uses(port: LedgerPort, name: str) -> dict[int, DatasetUse]:
    """What used each version of dataset ``name``, by version (versions nothing
    used are absent). One pass over the runs and one over the model versions:
    the state keeps no reverse index, and a page that asks reads them here."""
    store = port.store
    runs: dict[int, list[tuple[str, int, str]]] = {}
    for _, value in store.state_prefix(run_key("")):
        run = canonical.loads(value)
        if not isinstance(run, dict):
            continue
        try:
            build = run["statement"]["predicate"]["buildDefinition"]
            deps = build.get("resolvedDependencies", [])
        except (KeyError, TypeError, AttributeError):
            continue
        for dep in deps if isinstance(deps, list) else []:
            uri = dep.get("uri") if isinstance(dep, dict) else None
            parsed = parse_dependency_uri(uri) if isinstance(uri, str) else None
            if parsed is not None and parsed[0] == "dataset" and parsed[1] == name:
                runs.setdefault(parsed[2], []).append((run["id"], run["index"], run["by"]))
    produced: dict[str, list[tuple[str, int]]] = {}
    evaluated: dict[int, list[EvaluationUse]] = {}
    for key, value in store.state_prefix(entity_key("model", "")):
        if "@" not in key:
            continue
        record = canonical.loads(value)
        if not isinstance(record, dict):
            continue
        model = (str(record["name"]), int(record["version"]))
        if isinstance(record.get("run"), str):
            produced.setdefault(record["run"], []).append(model)
        for e in record.get("evaluations", []):
            ds = e.get("dataset") if isinstance(e, dict) else None
            if isinstance(ds, dict) and ds.get("name") == name:
                use = EvaluationUse(model[0], model[1], str(e.get("by", "")), int(e["index"]))
                evaluated.setdefault(int(ds["version"]), []).append(use)
    out = {}
    for v in sorted(set(runs) | set(evaluated)):
        run_uses = tuple(
            RunUse(rid, index, by, tuple(sorted(produced.get(rid, []))))
            for rid, index, by in sorted(runs.get(v, []), key=lambda r: r[1])
        )
        evals = tuple(sorted(evaluated.get(v, []), key=lambda e: e.index))
        out[v] = DatasetUse(name, v, run_uses, evals)
    return out
