"""What the document is built from: the ledger as of one checkpoint (versions,
deployments, members, one pass over the log) and the model's lineage walked
flat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...contracts import types as tx_types
from ...errors import NotFoundError
from ...ledger.lineage import DatasetNode, LineageInput, ModelNode
from .._evidence import Evidence

if TYPE_CHECKING:
    from ...ledger.ledger import Ledger

__all__ = [
    "BaseModelUse",
    "DatasetUse",
    "LineageWalk",
    "Seen",
    "Source",
    "TrainingRun",
]


@dataclass
class Seen:
    """What one pass over the log found about the model and its data."""

    denied: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    model_access: list[dict[str, Any]] = field(default_factory=list)
    data_access: list[dict[str, Any]] = field(default_factory=list)
    member_changes: dict[str, list[int]] = field(default_factory=dict)
    # grants, revocations and key requests, accepted or refused, and refused attempts
    # to store or erase: of the model, and of the datasets the document covers
    model_keys: list[dict[str, Any]] = field(default_factory=list)
    data_keys: list[dict[str, Any]] = field(default_factory=list)


_MEMBER_CHANGES = frozenset(
    {tx_types.MEMBER_UPDATE, tx_types.MEMBER_REVOKE, tx_types.MEMBER_ROTATE}
)
# Accepted stores and erasures are read from the state (with the version they concern);
# these are listed entry by entry, accepted or not.
_KEY_ACCESS = frozenset(
    {tx_types.ARTIFACT_GRANT, tx_types.ARTIFACT_REVOKE, tx_types.ARTIFACT_KEY_FETCH}
)


def _concerns(tx_type: str, body: Mapping[str, Any], model: str) -> bool:
    if tx_type == tx_types.MODEL_REGISTER:
        return body.get("name") == model
    if tx_type == tx_types.MODEL_EVALUATE:
        ref = body.get("model")
        return isinstance(ref, Mapping) and ref.get("name") == model
    if tx_type == tx_types.ACCESS_LOG:
        art = body.get("artifact")
        return isinstance(art, Mapping) and art.get("kind") == "model" and art.get("name") == model
    return body.get("model") == model


class Source:
    """The model's records as of one checkpoint: its versions, the subject
    version, its deployments, and the members involved."""

    def __init__(self, led: Ledger, model: str, version: int | None) -> None:
        self.led = led
        self.model = model
        self.ev = Evidence(led)
        self._orgs: dict[str, str] = {}
        self._members: dict[str, dict[str, Any]] = {}
        self.versions = self._versions(version)
        self.subject = self.versions[-1] if version is None else self._pick(version)
        self.history = [e for e in led.deployments.history(model) if self.ev.covers(e.get("index"))]

    # -- reading, bounded by the checkpoint ------------------------------------------

    def _versions(self, wanted: int | None) -> list[dict[str, Any]]:
        latest = self.led.models.get(self.model)  # NotFoundError names the model
        out = []
        for v in range(1, latest.version + 1):
            record = self.led.models.get(self.model, v).record
            if self.ev.covers(record["index"]):
                out.append(self.bounded(record))
        if not out or (wanted is not None and wanted > out[-1]["version"]):
            what = f"{self.model} version {wanted}" if wanted else f"model {self.model}"
            if wanted is not None and wanted > latest.version:
                raise NotFoundError(
                    f"model {self.model} has no version {wanted} (latest is {latest.version})"
                )
            raise NotFoundError(
                f"{what} is not yet covered by a checkpoint (size {self.ev.size}); "
                "try again once the next checkpoint is published"
            )
        return out

    def _pick(self, version: int) -> dict[str, Any]:
        for record in self.versions:
            if record["version"] == version:
                return record
        raise NotFoundError(f"model {self.model} has no version {version}")

    def bounded(self, record: dict[str, Any]) -> dict[str, Any]:
        """A version record as of the checkpoint: later decisions left out."""
        out = dict(record)
        for key in ("approvals", "rejections", "evaluations", "attestations"):
            out[key] = [a for a in record.get(key, []) if self.ev.covers(a.get("index"))]
        revoked = record.get("revoked")
        out["revoked"] = revoked if revoked and self.ev.covers(revoked.get("index")) else None
        return out

    def org(self, name: str) -> str:
        if name not in self._orgs:
            self._orgs[name] = str(self.member(name).get("org", ""))
        return self._orgs[name]

    def member(self, name: str) -> dict[str, Any]:
        if name not in self._members:
            try:
                self._members[name] = self.led.members.get(name)
            except NotFoundError:
                self._members[name] = {}
        return self._members[name]

    def keyids(self, index: int) -> list[str]:
        return [s.keyid for s in self.ev.entry(index).envelope.signatures]

    def scan(self, datasets: set[str]) -> Seen:
        seen = Seen()
        for _, entry in self.ev.scan():
            tx = entry.transaction
            body = tx.body
            item = {
                "index": entry.index,
                "type": tx.type,
                "actor": tx.actor,
                "time": tx.time,
                "body": self.led.disclosures.reveal(
                    body
                ),  # personal fields as this side reads them
                "outcome": entry.outcome.to_json(),
            }
            if tx.type in _MEMBER_CHANGES and entry.outcome.accepted:
                seen.member_changes.setdefault(str(body.get("name")), []).append(entry.index)
                continue
            if tx.type in tx_types.ARTIFACT_TYPES:
                art = body.get("artifact")
                if not isinstance(art, Mapping) or not (
                    tx.type in _KEY_ACCESS or not entry.outcome.accepted
                ):
                    continue
                if art.get("kind") == "model" and art.get("name") == self.model:
                    seen.model_keys.append(item)
                elif art.get("kind") == "dataset" and art.get("name") in datasets:
                    seen.data_keys.append(item)
                continue
            if tx.type == tx_types.ACCESS_LOG and entry.outcome.accepted:
                art = body.get("artifact")
                if isinstance(art, Mapping) and art.get("kind") == "dataset":
                    if art.get("name") in datasets:
                        seen.data_access.append(item)
                    continue
            if not _concerns(tx.type, body, self.model):
                continue
            if not entry.outcome.accepted:
                seen.denied.append(item)
            elif tx.type == tx_types.MONITOR_REPORT:
                seen.reports.append(item)
            elif tx.type == tx_types.INFERENCE_BATCH:
                seen.batches.append(item)
            elif tx.type == tx_types.ACCESS_LOG:
                seen.model_access.append(item)
        return seen

    def served(self, env: str, index: int) -> int | None:
        """The version ``env`` served just before entry ``index``."""
        served = None
        for event in self.history:
            if event["env"] == env and event["index"] < index:
                served = event["to"]
        return served


@dataclass(frozen=True)
class TrainingRun:
    """A training run behind the model, with the model version it produced."""

    id: str
    index: int
    model: str
    model_version: int
    inputs: tuple[LineageInput, ...]


@dataclass
class BaseModelUse:
    """A model version the model builds on, and every way it does."""

    name: str
    version: int
    digest: str
    index: int
    uses: list[str]

    @property
    def use(self) -> str:
        return "; ".join(self.uses)


@dataclass(frozen=True)
class DatasetUse:
    """A dataset version one training run took as input."""

    name: str
    version: int
    run: str
    run_index: int


class LineageWalk:
    """Flattens ``led.models.lineage``: the runs, the models built on and the
    datasets used, each with how it was used. Parents come before runs, so the
    document lists them in the order it always has."""

    def __init__(self, root: ModelNode) -> None:
        self.runs: list[TrainingRun] = []
        self.models: list[BaseModelUse] = []
        self.datasets: list[DatasetUse] = []
        self._walk(root, None)

    def _walk(self, node: ModelNode, use: str | None) -> None:
        if use is not None:
            known = next(
                (m for m in self.models if (m.name, m.version) == (node.name, node.version)),
                None,
            )
            if known is not None:
                known.uses.append(use)
            else:
                self.models.append(
                    BaseModelUse(node.name, node.version, node.digest, node.index, [use])
                )
        if node.parent is not None:
            self._walk(node.parent, f"the parent of {node.name} version {node.version}")
        run = node.run
        if run is None:
            return
        if not any(r.id == run.id for r in self.runs):
            self.runs.append(TrainingRun(run.id, run.index, node.name, node.version, run.inputs))
        for dep in run.inputs:
            if isinstance(dep, DatasetNode):
                self.datasets.append(DatasetUse(dep.name, dep.version, run.id, run.index))
            elif isinstance(dep, ModelNode):
                self._walk(dep, f"a base model of training run {run.id}")
