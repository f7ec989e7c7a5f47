"""EU AI Act Annex IV technical documentation, as far as the ledger can fill it.

The document follows the points of Annex IV to Regulation (EU) 2024/1689. Each
statement cites the entries that prove it, with inclusion proofs against one
checkpoint; the points the ledger cannot know are listed as to be completed by
the provider, never filled in.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..contracts import types as tx_types
from ..core.checkpoint import Checkpoint
from ..core.identity import VerifierKey
from ..core.policy import CheckpointPolicy, as_policy
from ..core.tx import LogEntry
from ..errors import MalformedError, NotFoundError, ProofError, UsageError
from ._evidence import CheckpointRef, CitedEntry, Evidence, check_cited, open_ref, rfc3339

if TYPE_CHECKING:
    from ..ledger.ledger import Ledger

__all__ = [
    "ANNEX_IV_FORMAT",
    "TO_COMPLETE",
    "AnnexCheck",
    "AnnexIV",
    "ProviderItem",
    "Section",
    "Statement",
    "annex_iv",
    "read_annex_iv",
    "verify_annex_iv",
]

ANNEX_IV_FORMAT = "modelchain.dev/annex-iv/v1"
TO_COMPLETE = "to be completed by the provider"
REGULATION = "Regulation (EU) 2024/1689 (AI Act), Annex IV"
# A statement that sums up many entries (inference batches, accesses) cites the
# first and last of them; `modelchain report logs` exports every one with proofs.
CITE_EACH_END = 50


@dataclass(frozen=True)
class Statement:
    """One fact, in words and as data, and the entries that prove it."""

    kind: str
    text: str
    entries: tuple[int, ...]
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "entries": list(self.entries),
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Statement:
        return cls(obj["kind"], obj["text"], tuple(obj["entries"]), dict(obj["data"]))


@dataclass(frozen=True)
class ProviderItem:
    """Something Annex IV asks for that only the provider can say."""

    point: str  # e.g. "1(a)"
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point, "text": self.text, "status": TO_COMPLETE}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ProviderItem:
        return cls(obj["point"], obj["text"])


@dataclass(frozen=True)
class Section:
    """A part of the document the ledger fills, and the Annex IV points it serves."""

    number: int
    key: str
    title: str
    annex: tuple[str, ...]
    statements: tuple[Statement, ...]
    notes: tuple[str, ...]  # what the ledger does not hold; absence has no inclusion proof
    to_complete: tuple[ProviderItem, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "key": self.key,
            "title": self.title,
            "annex_iv": list(self.annex),
            "statements": [s.to_json() for s in self.statements],
            "notes": list(self.notes),
            "to_complete": [p.to_json() for p in self.to_complete],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Section:
        return cls(
            obj["number"],
            obj["key"],
            obj["title"],
            tuple(obj["annex_iv"]),
            tuple(Statement.from_json(s) for s in obj["statements"]),
            tuple(obj["notes"]),
            tuple(ProviderItem.from_json(p) for p in obj["to_complete"]),
        )


@dataclass(frozen=True)
class AnnexIV:
    """The technical documentation of one model version, against one checkpoint."""

    model: str
    version: int
    origin: str
    checkpoint: CheckpointRef
    sections: tuple[Section, ...]
    provider_sections: tuple[ProviderItem, ...]
    entries: tuple[CitedEntry, ...]

    def entry(self, index: int) -> CitedEntry:
        for e in self.entries:
            if e.index == index:
                return e
        raise NotFoundError(f"entry {index} is not cited by this document")

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise NotFoundError(f"no section {key!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ANNEX_IV_FORMAT,
            "regulation": REGULATION,
            "model": self.model,
            "version": self.version,
            "origin": self.origin,
            "checkpoint": self.checkpoint.to_json(),
            "sections": [s.to_json() for s in self.sections],
            "provider_sections": [p.to_json() for p in self.provider_sections],
            "entries": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AnnexIV:
        """Read a document back (e.g. one fetched from a server) to render it."""
        if not isinstance(obj, Mapping) or obj.get("format") != ANNEX_IV_FORMAT:
            raise MalformedError(f"not an Annex IV document of format {ANNEX_IV_FORMAT}")
        try:
            return cls(
                obj["model"],
                obj["version"],
                obj["origin"],
                CheckpointRef.from_json(obj["checkpoint"]),
                tuple(Section.from_json(s) for s in obj["sections"]),
                tuple(ProviderItem.from_json(p) for p in obj["provider_sections"]),
                tuple(CitedEntry.from_json(e) for e in obj["entries"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedError(f"malformed Annex IV document: {exc!r}") from exc


# -- what only the provider knows ----------------------------------------------------

_GENERAL_GAPS = (
    (
        "1(a)",
        "Intended purpose of the AI system, and the name of the provider (the ledger "
        "records members and their organisations, not who places the system on the market).",
    ),
    (
        "1(b)",
        "How the system interacts with hardware or software, including other AI "
        "systems, that are not part of it.",
    ),
    (
        "1(c)",
        "Requirements related to version updates (the software versions recorded with "
        "the training runs are listed above).",
    ),
    (
        "1(d)",
        "All forms in which the system is placed on the market or put into service "
        "(packages, downloads, APIs).",
    ),
    ("1(e)", "Hardware on which the system is intended to run."),
    (
        "1(f)",
        "Where the system is a component of products: photographs or illustrations of "
        "their external features, marking and internal layout.",
    ),
    ("1(g)", "Basic description of the user interface provided to the deployer."),
    ("1(h)", "Instructions for use for the deployer."),
)
_DEVELOPMENT_GAPS = (
    (
        "2(a)",
        "How pre-trained systems or third-party tools were used, integrated or modified, "
        "and development steps not recorded as training runs.",
    ),
)
_DATA_GAPS = (
    (
        "2(d)",
        "Datasheets: a general description of the data sets, their scope and main "
        "characteristics, how the data were obtained and selected, labelling procedures and "
        "data cleaning methodologies (the ledger proves which bytes were used, from where, "
        "and which checks a validator signed).",
    ),
)
_VALIDATION_GAPS = (
    (
        "2(g)",
        "The validation and testing procedures, the main characteristics of the test "
        "data, and the metrics for robustness and for potentially discriminatory impacts, "
        "where the evaluations above do not cover them.",
    ),
    (
        "3",
        "Degrees of accuracy for specific persons or groups of persons on which the "
        "system is intended to be used, and the overall expected level of accuracy.",
    ),
)
_APPROVAL_GAPS = (
    (
        "2(g)",
        "Test logs and reports beyond the signed results on the ledger, and who is "
        "responsible for them in the provider's organisation.",
    ),
)
_CHANGE_GAPS = (("6", "Why each change was made, and whether it is a substantial modification."),)
_MONITORING_GAPS = (
    (
        "3",
        "Capabilities and limitations in performance, foreseeable unintended outcomes and "
        "sources of risks to health, safety and fundamental rights, the human oversight "
        "measures (Article 14) and the specifications on input data.",
    ),
    (
        "9",
        "The post-market monitoring plan (Article 72(3)) and the system that evaluates "
        "performance in the post-market phase; the records above are its evidence.",
    ),
)
_PROVIDER_SECTIONS = (
    (
        "2(b)",
        "Design specifications: the general logic of the system and its algorithms, "
        "key design choices with their rationale and assumptions, what the system is designed "
        "to optimise for, and the trade-offs made.",
    ),
    (
        "2(c)",
        "System architecture: how software components build on or feed into each "
        "other; the computational resources used to develop, train, test and validate the "
        "system (and their energy use, where known).",
    ),
    (
        "2(e)",
        "Assessment of the human oversight measures needed (Article 14), including the "
        "technical measures that help deployers interpret outputs (Article 13(3)(d)).",
    ),
    (
        "2(f)",
        "Pre-determined changes to the system and its performance, and the technical "
        "solutions that keep it compliant through them.",
    ),
    ("2(h)", "Cybersecurity measures put in place."),
    ("4", "Why the performance metrics used are appropriate for this system."),
    ("5", "The risk management system (Article 9)."),
    (
        "7",
        "The harmonised standards applied, or the other solutions adopted to meet the "
        "requirements of Chapter III, Section 2.",
    ),
    ("8", "A copy of the EU declaration of conformity (Article 47)."),
)


def _items(pairs: Iterable[tuple[str, str]]) -> tuple[ProviderItem, ...]:
    return tuple(ProviderItem(p, t) for p, t in pairs)


# -- wording ---------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """A compact, stable rendering of a JSON value inside a sentence."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        if not value:
            return "none"
        return ", ".join(
            f"{k}={_fmt(v) if not isinstance(v, Mapping | list) else _json(v)}"
            for k, v in sorted(value.items())
        )
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) if value else "none"
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _who(name: str, org: str) -> str:
    return f"{name} ({org})" if org else name


def _capped(indexes: Sequence[int]) -> tuple[int, ...]:
    if len(indexes) <= 2 * CITE_EACH_END:
        return tuple(indexes)
    return (*indexes[:CITE_EACH_END], *indexes[-CITE_EACH_END:])


def _capped_note(indexes: Sequence[int]) -> str:
    if len(indexes) <= 2 * CITE_EACH_END:
        return ""
    return (
        f" The first and last {CITE_EACH_END} of these {len(indexes)} entries are cited here; "
        "`modelchain report logs` exports every one with its proof."
    )


# -- building ---------------------------------------------------------------------------


@dataclass
class _Seen:
    """What one pass over the log found about the model and its data."""

    denied: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    model_access: list[dict[str, Any]] = field(default_factory=list)
    data_access: list[dict[str, Any]] = field(default_factory=list)
    member_changes: dict[str, list[int]] = field(default_factory=dict)


_MEMBER_CHANGES = frozenset(
    {tx_types.MEMBER_UPDATE, tx_types.MEMBER_REVOKE, tx_types.MEMBER_ROTATE}
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


class _Builder:
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
                out.append(self._bounded(record))
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

    def _bounded(self, record: dict[str, Any]) -> dict[str, Any]:
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

    def scan(self, datasets: set[str]) -> _Seen:
        seen = _Seen()
        for _, entry in self.ev.scan():
            tx = entry.transaction
            body = tx.body
            item = {
                "index": entry.index,
                "type": tx.type,
                "actor": tx.actor,
                "time": tx.time,
                "body": body,
                "outcome": entry.outcome.to_json(),
            }
            if tx.type in _MEMBER_CHANGES and entry.outcome.accepted:
                seen.member_changes.setdefault(str(body.get("name")), []).append(entry.index)
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

    # -- the document -------------------------------------------------------------------

    def build(self) -> AnnexIV:
        lineage = self.led.models.lineage(self.model, self.subject["version"])
        walk = _LineageWalk(lineage.to_json())
        dataset_names = {d["name"] for d in walk.datasets}
        eval_sets = {e["dataset"]["name"] for e in self.subject["evaluations"]}
        seen = self.scan(dataset_names | eval_sets)
        sections = (
            self.general(walk),
            self.development(walk),
            self.data(walk, seen),
            self.validation(walk),
            self.approvals(seen),
            self.changes(),
            self.monitoring(seen),
        )
        for section in sections:
            for statement in section.statements:
                for index in statement.entries:
                    self.ev.cite(index)
        return AnnexIV(
            model=self.model,
            version=int(self.subject["version"]),
            origin=self.led.origin,
            checkpoint=self.ev.ref,
            sections=sections,
            provider_sections=_items(_PROVIDER_SECTIONS),
            entries=self.ev.cited(),
        )

    # 1 -------------------------------------------------------------------------------

    def general(self, walk: _LineageWalk) -> Section:
        first = self.versions[0]
        st = [
            Statement(
                "model",
                f"Model {self.model} is registered on ledger {self.led.origin}: "
                f"{len(self.versions)} version(s) up to this checkpoint, the first registered "
                f"by {_who(first['by'], self.org(first['by']))} at {rfc3339(first['time'])}. "
                f"This document describes version {self.subject['version']}.",
                (first["index"],),
                {
                    "name": self.model,
                    "versions": [v["version"] for v in self.versions],
                    "subject": self.subject["version"],
                    "owner": first["by"],
                },
            )
        ]
        for record in self.versions:
            st.append(self._version_statement(record))
            if record.get("card"):
                st.append(
                    Statement(
                        "model_card",
                        f"Model card recorded with version {record['version']} by "
                        f"{record['by']} (as declared by the registrant): {_fmt(record['card'])}.",
                        (record["index"],),
                        {"version": record["version"], "card": record["card"]},
                    )
                )
        for run in walk.runs:
            if run["id"] != self.subject.get("run"):
                continue
            env = _run_environment(self.led.runs.get(run["id"]))
            if env:
                packages = env.get("packages") or {}
                st.append(
                    Statement(
                        "software",
                        f"Software recorded with training run {run['id']}: Python "
                        f"{_fmt(env.get('python'))} ({_fmt(env.get('implementation'))}) on "
                        f"{_fmt(env.get('platform'))}; packages: {_fmt(packages)}.",
                        (run["index"],),
                        {"run": run["id"], "environment": env},
                    )
                )
        return Section(
            1,
            "general",
            "General description of the AI system and its versions",
            ("1(a)", "1(c)"),
            tuple(st),
            (),
            _items(_GENERAL_GAPS),
        )

    def _version_statement(self, record: Mapping[str, Any]) -> Statement:
        art = record["artifact"]
        parts = [
            f"Version {record['version']}"
            + (" (the subject of this document)" if record is self.subject else "")
            + f": {art.get('format') or 'unknown'} artifact, {art.get('files')} file(s), "
            f"{art.get('size')} bytes, digest {art['digest']}; registered by "
            f"{_who(record['by'], self.org(record['by']))} at {rfc3339(record['time'])}"
        ]
        if record.get("run"):
            parts.append(f"produced by training run {record['run']}")
        parent = record.get("parent")
        if parent:
            parts.append(f"derived from {parent['name']} version {parent['version']}")
        if record.get("revoked"):
            parts.append(f"revoked at {rfc3339(record['revoked']['time'])}")
        entries = [record["index"]]
        if record.get("revoked"):
            entries.append(record["revoked"]["index"])
        return Statement(
            "version",
            "; ".join(parts) + ".",
            tuple(entries),
            {
                "version": record["version"],
                "digest": art["digest"],
                "format": art.get("format"),
                "files": art.get("files"),
                "size": art.get("size"),
                "by": record["by"],
                "time": rfc3339(record["time"]),
                "run": record.get("run"),
                "parent": parent,
                "revoked": record.get("revoked"),
                "subject": record is self.subject,
            },
        )

    # 2 -------------------------------------------------------------------------------

    def development(self, walk: _LineageWalk) -> Section:
        st: list[Statement] = []
        notes: list[str] = []
        if not self.subject.get("run"):
            notes.append(f"Version {self.subject['version']} names no training run.")
        for run in walk.runs:
            record = self.led.runs.get(run["id"])
            pred = record["statement"].get("predicate", {})
            build = pred.get("buildDefinition", {})
            details = pred.get("runDetails", {})
            meta = details.get("metadata", {})
            params = build.get("externalParameters", {}).get("parameters", {})
            metrics: dict[str, Any] = {}
            for b in details.get("byproducts", []):
                if isinstance(b, Mapping) and b.get("name") == "metrics":
                    metrics = dict(b.get("content") or {})
            produced = f"{run['model']} version {run['model_version']}"
            st.append(
                Statement(
                    "run",
                    f"Training run {run['id']} produced {produced}; recorded by "
                    f"{_who(record['by'], self.org(record['by']))} at {rfc3339(record['time'])} "
                    f"as an in-toto Statement with SLSA Provenance v1 (started "
                    f"{_fmt(meta.get('startedOn'))}, finished {_fmt(meta.get('finishedOn'))}); "
                    f"parameters: {_fmt(params)}; metrics reported by the run: {_fmt(metrics)}; "
                    f"inputs: {_fmt([_dep_name(i) for i in run['inputs']])}.",
                    (record["index"],),
                    {
                        "run": run["id"],
                        "model": run["model"],
                        "model_version": run["model_version"],
                        "by": record["by"],
                        "started": meta.get("startedOn"),
                        "finished": meta.get("finishedOn"),
                        "parameters": params,
                        "metrics": metrics,
                        "subjects": record.get("subjects", []),
                        "inputs": [_dep_name(i) for i in run["inputs"]],
                    },
                )
            )
            for dep in run["inputs"]:
                if dep.get("kind") != "external":
                    continue
                digest = dep.get("digest") or {}
                st.append(
                    Statement(
                        "code",
                        f"Run {run['id']} names the external input {_fmt(dep.get('uri'))} "
                        f"(digest {_fmt(digest)}).",
                        (record["index"],),
                        {"run": run["id"], "uri": dep.get("uri"), "digest": digest},
                    )
                )
        for base in walk.models:
            owner = self.led.models.get(base["name"], base["version"]).record["by"]
            st.append(
                Statement(
                    "base_model",
                    f"Builds on model {base['name']} version {base['version']} (digest "
                    f"{base['digest']}), registered by {_who(owner, self.org(owner))}; "
                    f"{base['use']}.",
                    (base["index"],),
                    {
                        "name": base["name"],
                        "version": base["version"],
                        "digest": base["digest"],
                        "by": owner,
                        "org": self.org(owner),
                        "use": base["use"],
                    },
                )
            )
        return Section(
            2,
            "development",
            "Development process, training runs and pre-trained models",
            ("2(a)",),
            tuple(st),
            tuple(notes),
            _items(_DEVELOPMENT_GAPS),
        )

    # 3 -------------------------------------------------------------------------------

    def data(self, walk: _LineageWalk, seen: _Seen) -> Section:
        st: list[Statement] = []
        used: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for d in walk.datasets:
            used.setdefault(d["name"], {}).setdefault(d["version"], []).append(d)
        for name in sorted(used):
            info = self.led.datasets.info(name)
            if not self.ev.covers(info.get("created")):
                continue
            st.append(
                Statement(
                    "dataset",
                    f"Dataset {name}: source {_fmt(info.get('source')) or 'not given'}, "
                    f"licence {_fmt(info.get('license')) or 'not given'}, registered by "
                    f"{_who(info['owner'], self.org(info['owner']))}"
                    + (f"; described as: {info['description']}" if info.get("description") else "")
                    + ".",
                    (info["created"],),
                    {
                        "name": name,
                        "source": info.get("source"),
                        "license": info.get("license"),
                        "description": info.get("description"),
                        "owner": info.get("owner"),
                    },
                )
            )
            for v in range(1, max(used[name]) + 1):
                record = self.led.datasets.get(name, v).record
                if not self.ev.covers(record["index"]):
                    continue
                st.extend(self._dataset_version(name, self._bounded(record), used[name].get(v)))
        for item in seen.data_access:
            art = item["body"]["artifact"]
            st.append(
                Statement(
                    "data_access",
                    f"{_who(item['actor'], self.org(item['actor']))} obtained the location of "
                    f"dataset {art['name']} version {art['version']} at {rfc3339(item['time'])} "
                    f"for the purpose: {item['body'].get('purpose', '')}.",
                    (item["index"],),
                    {
                        "dataset": art["name"],
                        "version": art["version"],
                        "by": item["actor"],
                        "purpose": item["body"].get("purpose"),
                        "time": rfc3339(item["time"]),
                    },
                )
            )
        notes = [] if used else ["No registered dataset is recorded as a training input."]
        return Section(
            3,
            "data",
            "Training data: provenance, preparation and quality",
            ("2(d)",),
            tuple(st),
            tuple(notes),
            _items(_DATA_GAPS),
        )

    def _dataset_version(
        self, name: str, record: Mapping[str, Any], uses: list[dict[str, Any]] | None
    ) -> Iterator[Statement]:
        art = record["artifact"]
        ingest = record.get("ingest")
        how = (
            f"ingested as batch {_fmt(ingest.get('batch'))} from {_fmt(ingest.get('source'))}, "
            f"collected by {_fmt(ingest.get('collected_by'))} at "
            f"{rfc3339(int(ingest.get('collected_at', 0)))}"
            if isinstance(ingest, Mapping)
            else "registered"
        )
        rec = record.get("records")
        rows = (
            f"; a salted record-level Merkle root over {rec.get('count')} records "
            f"({rec.get('scheme')})"
            if isinstance(rec, Mapping)
            else ""
        )
        runs = sorted({u["run"] for u in uses or [] if u.get("run")})
        run_indexes = sorted({u["run_index"] for u in uses or [] if u.get("run_index") is not None})
        use = f"used by training run(s) {', '.join(runs)}" if runs else "not a training input here"
        yield Statement(
            "dataset_version",
            f"Dataset {name} version {record['version']}: {art.get('format') or 'unknown'}, "
            f"{art.get('files')} file(s), {art.get('size')} bytes, digest {art['digest']}; "
            f"{how}; recorded by {_who(record['by'], self.org(record['by']))} at "
            f"{rfc3339(record['time'])}{rows}; {use}.",
            (record["index"], *run_indexes),
            {
                "name": name,
                "version": record["version"],
                "digest": art["digest"],
                "size": art.get("size"),
                "files": art.get("files"),
                "format": art.get("format"),
                "by": record["by"],
                "ingest": ingest,
                "records": rec,
                "used_by_runs": runs,
            },
        )
        for a in record.get("attestations", []):
            yield Statement(
                "quality_attestation",
                f"Validator {_who(a['by'], a.get('org', ''))} attested dataset {name} version "
                f"{record['version']} at {rfc3339(a['time'])}: "
                f"{'passed' if a['passed'] else 'FAILED'}; checks: {_fmt(a.get('checks'))}; "
                f"tool: {_fmt(a.get('tool'))}; signed with key(s) {_fmt(self.keyids(a['index']))}.",
                (a["index"],),
                {
                    "dataset": name,
                    "version": record["version"],
                    "by": a["by"],
                    "org": a.get("org"),
                    "passed": a["passed"],
                    "checks": a.get("checks"),
                    "tool": a.get("tool"),
                    "time": rfc3339(a["time"]),
                    "keyids": self.keyids(a["index"]),
                },
            )

    # 4 -------------------------------------------------------------------------------

    def validation(self, walk: _LineageWalk) -> Section:
        st: list[Statement] = []
        notes: list[str] = []
        subject = self.subject
        v = subject["version"]
        for e in subject["evaluations"]:
            ds = e["dataset"]
            entries = [e["index"]]
            try:
                test_set = self.led.datasets.get(ds["name"], ds["version"]).record
            except NotFoundError:
                test_set = None
            if test_set is not None and self.ev.covers(test_set["index"]):
                entries.append(test_set["index"])
            st.append(
                Statement(
                    "evaluation",
                    f"Evaluator {_who(e['by'], e.get('org', ''))} signed these metrics for "
                    f"version {v} on dataset {ds['name']} version {ds['version']}"
                    + (f" (digest {test_set['artifact']['digest']})" if test_set else "")
                    + f" at {rfc3339(e['time'])}: {_fmt(e['metrics'])}; "
                    f"tool: {_fmt(e.get('tool'))}; "
                    f"signed with key(s) {_fmt(self.keyids(e['index']))}.",
                    tuple(entries),
                    {
                        "version": v,
                        "by": e["by"],
                        "org": e.get("org"),
                        "dataset": ds,
                        "metrics": e["metrics"],
                        "tool": e.get("tool"),
                        "time": rfc3339(e["time"]),
                        "keyids": self.keyids(e["index"]),
                    },
                )
            )
            if test_set is not None and ds["name"] not in {d["name"] for d in walk.datasets}:
                for a in self._bounded(test_set)["attestations"]:
                    st.append(
                        Statement(
                            "test_data_attestation",
                            f"Test dataset {ds['name']} version {ds['version']} was attested "
                            f"by validator {_who(a['by'], a.get('org', ''))} at "
                            f"{rfc3339(a['time'])}: {'passed' if a['passed'] else 'FAILED'}.",
                            (a["index"],),
                            {"dataset": ds, "by": a["by"], "passed": a["passed"]},
                        )
                    )
        if not subject["evaluations"]:
            notes.append(
                f"No evaluation of version {v} is on the ledger up to entry {self.ev.size - 1}."
            )
        if subject.get("metrics"):
            st.append(
                Statement(
                    "declared_metrics",
                    f"Metrics declared by the registrant of version {v} (not an independent "
                    f"evaluation): {_fmt(subject['metrics'])}.",
                    (subject["index"],),
                    {"version": v, "metrics": subject["metrics"], "by": subject["by"]},
                )
            )
        return Section(
            4,
            "validation",
            "Validation and testing: metrics and their signed attestations",
            ("2(g)", "3"),
            tuple(st),
            tuple(notes),
            _items(_VALIDATION_GAPS),
        )

    # 5 -------------------------------------------------------------------------------

    def approvals(self, seen: _Seen) -> Section:
        st: list[Statement] = []
        signers: set[str] = set()
        decisions = []
        for record in self.versions:
            for field_, decision in (("approvals", "approved"), ("rejections", "rejected")):
                for a in record[field_]:
                    decisions.append((a["index"], record["version"], decision, a))
        for index, version, decision, a in sorted(decisions, key=lambda d: d[0]):
            signers.add(a["by"])
            comment = f': "{a["comment"]}"' if a.get("comment") else ""
            st.append(
                Statement(
                    "approval",
                    f"{_who(a['by'], a.get('org', ''))} {decision} version {version} for "
                    f"environment {a['env']} in the role {a['role']} at {rfc3339(a['time'])}"
                    f"{comment}; signed with key(s) {_fmt(self.keyids(index))}.",
                    (index,),
                    {
                        "version": version,
                        "decision": decision,
                        "env": a["env"],
                        "role": a["role"],
                        "by": a["by"],
                        "org": a.get("org"),
                        "comment": a.get("comment", ""),
                        "time": rfc3339(a["time"]),
                        "keyids": self.keyids(index),
                    },
                )
            )
        for e in self.subject["evaluations"]:
            signers.add(e["by"])
        for name in sorted(signers):
            m = self.member(name)
            since = m.get("since")
            if not self.ev.covers(since):
                continue
            changes = seen.member_changes.get(name, [])
            st.append(
                Statement(
                    "signer",
                    f"{name} is a member of {_fmt(m.get('org')) or 'no organisation'} with the "
                    f"roles {_fmt(m.get('roles'))} (status {_fmt(m.get('status'))}), admitted in "
                    f"entry {since}" + (", changed later by quorum" if changes else "") + ".",
                    (since, *changes),
                    {
                        "name": name,
                        "org": m.get("org"),
                        "roles": m.get("roles"),
                        "status": m.get("status"),
                    },
                )
            )
        for p in sorted(self.led.policies.list(), key=lambda p: str(p.get("action"))):
            action = str(p.get("action", ""))
            if not action.startswith("model.") or not self.ev.covers(p.get("set_at")):
                continue
            st.append(
                Statement(
                    "policy",
                    f"Policy {action} version {p.get('version')}, set by {_fmt(p.get('by'))}, "
                    f"requires: {p.get('rule')}"
                    + (f" ({p['description']})" if p.get("description") else "")
                    + ".",
                    (p["set_at"],),
                    {
                        "action": action,
                        "version": p.get("version"),
                        "rule": p.get("rule"),
                        "description": p.get("description"),
                        "by": p.get("by"),
                    },
                )
            )
        notes = [] if decisions else ["No approval or rejection of any version is recorded."]
        return Section(
            5,
            "approvals",
            "Approvals and their signers",
            ("2(g)",),
            tuple(st),
            tuple(notes),
            _items(_APPROVAL_GAPS),
        )

    # 6 -------------------------------------------------------------------------------

    def changes(self) -> Section:
        timeline: list[tuple[int, Statement]] = []
        for record in self.versions:
            parent = record.get("parent")
            timeline.append(
                (
                    record["index"],
                    Statement(
                        "version_registered",
                        f"Version {record['version']} registered by {record['by']} at "
                        f"{rfc3339(record['time'])}"
                        + (
                            f", derived from {parent['name']} version {parent['version']}"
                            if parent
                            else ""
                        )
                        + ".",
                        (record["index"],),
                        {"version": record["version"], "parent": parent},
                    ),
                )
            )
            revoked = record.get("revoked")
            if revoked:
                timeline.append(
                    (
                        revoked["index"],
                        Statement(
                            "revocation",
                            f"Version {record['version']} revoked by {revoked['by']} at "
                            f"{rfc3339(revoked['time'])}: {revoked.get('reason', '')}.",
                            (revoked["index"],),
                            {
                                "version": record["version"],
                                "by": revoked["by"],
                                "reason": revoked.get("reason"),
                                "time": rfc3339(revoked["time"]),
                            },
                        ),
                    )
                )
        for event in self.history:
            timeline.append((event["index"], self._deployment_statement(event)))
        current: dict[str, Mapping[str, Any]] = {}
        for event in self.history:
            current[event["env"]] = event
        st = [s for _, s in sorted(timeline, key=lambda t: t[0])]
        for env in sorted(current):
            last = current[env]
            serving = f"version {last['to']}" if last["to"] is not None else "no version"
            st.append(
                Statement(
                    "current_deployment",
                    f"At this checkpoint, environment {env} serves {serving} of {self.model}, "
                    f"since entry {last['index']} ({rfc3339(last['time'])}).",
                    (last["index"],),
                    {"env": env, "version": last["to"], "since": last["index"]},
                )
            )
        notes = [] if self.history else [f"{self.model} has never been deployed."]
        return Section(
            6,
            "changes",
            "Change history: versions, deployments, rollbacks and revocations",
            ("6",),
            tuple(st),
            tuple(notes),
            _items(_CHANGE_GAPS),
        )

    def _deployment_statement(self, event: Mapping[str, Any]) -> Statement:
        entry = self.ev.entry(event["index"])
        env, by, when = event["env"], event["by"], rfc3339(event["time"])
        approvals = [
            a
            for a in event.get("approvals", [])
            if self.ev.covers(a.get("index")) and a["index"] < event["index"]
        ]
        entries = [event["index"], *(a["index"] for a in approvals)]
        rule = entry.transaction.body.get("rollback_rule") if event["action"] == "deploy" else None
        signed = [f"{a['by']} as {a['role']}" for a in approvals]
        was = f"version {event['from']}" if event["from"] is not None else "nothing"
        now = f"version {event['to']}" if event["to"] is not None else "nothing"
        if event["action"] == "deploy":
            text = (
                f"{env}: {by} deployed version {event['to']} (replacing {was}) at {when}"
                + (f", approved by {', '.join(signed)}" if signed else "")
                + (f"; rollback rule: {rule}" if rule else "")
                + "."
            )
        else:
            cause = {
                tx_types.MONITOR_REPORT: f"automatically, on a monitor report by {by}",
                tx_types.MODEL_REVOKE: f"because {by} revoked the version",
            }.get(entry.transaction.type, f"by {by}")
            text = (
                f"{env}: rolled back from {was} to {now} {cause} at {when}"
                + (f": {event['reason']}" if event.get("reason") else "")
                + "."
            )
        return Statement(
            "deployment",
            text,
            tuple(entries),
            {
                "env": env,
                "action": event["action"],
                "from": event["from"],
                "to": event["to"],
                "by": by,
                "reason": event.get("reason", ""),
                "rollback_rule": rule,
                "time": when,
                "approvals": [a["index"] for a in approvals],
                "cause": entry.transaction.type,
            },
        )

    # 7 -------------------------------------------------------------------------------

    def monitoring(self, seen: _Seen) -> Section:
        st: list[Statement] = []
        for r in seen.reports:
            env = r["body"]["env"]
            served = self._served(env, r["index"])
            acted = r["outcome"].get("reason")
            st.append(
                Statement(
                    "monitor_report",
                    f"{_who(r['actor'], self.org(r['actor']))} reported on {env}"
                    + (f" (serving version {served})" if served is not None else "")
                    + f" at {rfc3339(r['time'])}: {_fmt(r['body']['metrics'])}"
                    + (f"; the ledger acted on it: {acted}" if acted else "")
                    + ".",
                    (r["index"],),
                    {
                        "env": env,
                        "version": served,
                        "by": r["actor"],
                        "metrics": r["body"]["metrics"],
                        "action": acted or None,
                        "time": rfc3339(r["time"]),
                    },
                )
            )
        groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for b in seen.batches:
            groups.setdefault((b["body"]["version"], b["body"].get("env", "")), []).append(b)
        for (version, env), batches in sorted(groups.items()):
            indexes = [b["index"] for b in batches]
            records = sum(int(b["body"]["count"]) for b in batches)
            first = min(int(b["body"]["first_time"]) for b in batches)
            last = max(int(b["body"]["last_time"]) for b in batches)
            where = f" in {env}" if env else ""
            st.append(
                Statement(
                    "inference",
                    f"Version {version}{where}: {len(batches)} inference batch(es) committing "
                    f"{records} inference record(s) made between {rfc3339(first)} and "
                    f"{rfc3339(last)}.{_capped_note(indexes)}",
                    _capped(indexes),
                    {
                        "version": version,
                        "env": env or None,
                        "batches": len(batches),
                        "records": records,
                        "first_time": rfc3339(first),
                        "last_time": rfc3339(last),
                        "indexes": indexes,
                    },
                )
            )
        by_version: dict[int, list[dict[str, Any]]] = {}
        for a in seen.model_access:
            by_version.setdefault(int(a["body"]["artifact"]["version"]), []).append(a)
        for version, accesses in sorted(by_version.items()):
            indexes = [a["index"] for a in accesses]
            who = sorted({a["actor"] for a in accesses})
            purposes = sorted({str(a["body"].get("purpose", "")) for a in accesses})
            st.append(
                Statement(
                    "access",
                    f"Version {version} was verified and loaded or accessed {len(accesses)} "
                    f"time(s) by {', '.join(who)}; purposes: {_fmt(purposes)}."
                    f"{_capped_note(indexes)}",
                    _capped(indexes),
                    {"version": version, "count": len(accesses), "by": who, "indexes": indexes},
                )
            )
        for d in seen.denied:
            code = d["outcome"].get("code", "")
            st.append(
                Statement(
                    "denied",
                    f"{_who(d['actor'], self.org(d['actor']))} attempted {d['type']} "
                    f"({_attempt(d['type'], d['body'])}) at {rfc3339(d['time'])}: denied, "
                    f"{code}: {d['outcome'].get('reason', '')}.",
                    (d["index"],),
                    {
                        "type": d["type"],
                        "by": d["actor"],
                        "code": code,
                        "reason": d["outcome"].get("reason", ""),
                        "time": rfc3339(d["time"]),
                    },
                )
            )
        notes = []
        if not seen.reports:
            notes.append("No monitor report on this model is recorded.")
        if not seen.batches:
            notes.append("No inference batch of this model is recorded.")
        if not seen.denied:
            notes.append("No denied attempt concerning this model is recorded.")
        return Section(
            7,
            "monitoring",
            "Post-market monitoring records",
            ("9", "3"),
            tuple(st),
            tuple(notes),
            _items(_MONITORING_GAPS),
        )

    def _served(self, env: str, index: int) -> int | None:
        served = None
        for event in self.history:
            if event["env"] == env and event["index"] < index:
                served = event["to"]
        return served


def _attempt(tx_type: str, body: Mapping[str, Any]) -> str:
    version = body.get("version")
    if isinstance(body.get("model"), Mapping):
        version = body["model"].get("version")
    parts = []
    if isinstance(version, int):
        parts.append(f"version {version}")
    env = body.get("env")
    if isinstance(env, str):
        parts.append(f"environment {env}")
    return ", ".join(parts) if parts else tx_type


def _dep_name(dep: Mapping[str, Any]) -> str:
    if dep.get("kind") == "external":
        return str(dep.get("uri"))
    return f"{dep.get('kind')} {dep.get('name')}@{dep.get('version')}"


def _run_environment(run: Mapping[str, Any]) -> dict[str, Any]:
    try:
        env = run["statement"]["predicate"]["buildDefinition"]["internalParameters"]["environment"]
    except (KeyError, TypeError):
        return {}
    return dict(env) if isinstance(env, Mapping) else {}


class _LineageWalk:
    """Flattens ``led.models.lineage``: the runs, the models built on and the
    datasets used, each with how it was used."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.runs: list[dict[str, Any]] = []
        self.models: list[dict[str, Any]] = []
        self.datasets: list[dict[str, Any]] = []
        self._walk(root, None)

    def _walk(self, node: Mapping[str, Any], use: str | None) -> None:
        if node.get("kind") == "dataset":
            return
        known = next(
            (
                m
                for m in self.models
                if (m["name"], m["version"]) == (node["name"], node["version"])
            ),
            None,
        )
        if use is not None and known is not None:
            known["use"] += f"; {use}"
        elif use is not None:
            self.models.append(
                {
                    "name": node["name"],
                    "version": node["version"],
                    "digest": node["digest"],
                    "index": node["index"],
                    "use": use,
                }
            )
        label = f"{node['name']} version {node['version']}"
        parent = node.get("parent")
        if isinstance(parent, Mapping):
            self._walk(parent, f"the parent of {label}")
        run = node.get("run")
        if isinstance(run, Mapping):
            if not any(r["id"] == run["id"] for r in self.runs):
                self.runs.append(
                    {
                        "id": run["id"],
                        "index": run["index"],
                        "model": node["name"],
                        "model_version": node["version"],
                        "inputs": list(run.get("inputs", [])),
                    }
                )
            for dep in run.get("inputs", []):
                if dep.get("kind") == "dataset":
                    self.datasets.append(
                        {
                            "name": dep["name"],
                            "version": dep["version"],
                            "run": run["id"],
                            "run_index": run["index"],
                        }
                    )
                elif dep.get("kind") == "model":
                    self._walk(dep, f"a base model of training run {run['id']}")


def annex_iv(led: Ledger, model: str, version: int | None = None) -> AnnexIV:
    """The Annex IV technical documentation the ledger can fill for ``model``
    (``version``, default the latest one covered by the checkpoint).

    Raises NotFoundError for an unknown model or version."""
    return _Builder(led, model, version).build()


def render_json(doc: AnnexIV) -> bytes:
    """The document as JSON, the same bytes from the CLI, the dashboard and the PDF."""
    return (json.dumps(doc.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


# -- checking a document offline -------------------------------------------------------


@dataclass(frozen=True)
class AnnexCheck:
    """What a verified Annex IV document holds."""

    checkpoint: Checkpoint
    model: str
    version: int
    statements: int
    entries: int


def verify_annex_iv(
    obj: Mapping[str, Any], log_key: CheckpointPolicy | VerifierKey | str
) -> AnnexCheck:
    """Check an Annex IV JSON document offline, with only the log's verifier key.

    The checkpoint must be signed by ``log_key``; every cited entry's bytes must
    hash to its leaf hash, state its own index, type, actor, time and outcome,
    and be included in that checkpoint by its tlog-proof; every statement must
    cite at least one entry and only entries the document proves; and the
    document's subject must be what its registration entry registered (the
    model's name and the version's artifact digest). The prose is not re-derived:
    a reader checks a statement against the bodies of the entries it cites.
    Raises SignatureError, ProofError or MalformedError at the first fault."""
    policy = as_policy(log_key)
    doc = AnnexIV.from_json(obj)
    note, cp = open_ref(obj["checkpoint"], policy, "the document")
    if doc.origin != cp.origin:
        raise ProofError(f"the document names ledger {doc.origin}, its checkpoint {cp.origin}")
    proven: dict[int, LogEntry] = {}
    for cited in obj["entries"]:
        entry = check_cited(cited, f"cited entry {cited['index']}", note, cp)
        if entry.index in proven:
            raise ProofError(f"entry {entry.index} is cited twice")
        proven[entry.index] = entry
    statements = 0
    for section in doc.sections:
        for st in section.statements:
            unproven = [i for i in st.entries if i not in proven]
            if not st.entries or unproven:
                raise ProofError(
                    f"section {section.number}: a {st.kind} statement cites "
                    + (f"entries {unproven} the document does not prove" if unproven else "none")
                )
            statements += 1
    _check_subject(doc, proven)
    return AnnexCheck(cp, doc.model, doc.version, statements, len(proven))


def _check_subject(doc: AnnexIV, proven: Mapping[int, LogEntry]) -> None:
    """The version the document is about was registered, under its name, with
    the artifact digest the document states."""
    subject = [
        st
        for st in doc.section("general").statements
        if st.kind == "version" and st.data.get("subject") and st.data.get("version") == doc.version
    ]
    if len(subject) != 1:
        raise ProofError(f"the document does not state its subject, version {doc.version}")
    tx = proven[subject[0].entries[0]].transaction
    body = tx.body
    artifact = body.get("artifact")
    if (
        tx.type != tx_types.MODEL_REGISTER
        or body.get("name") != doc.model
        or not isinstance(artifact, dict)
        or artifact.get("digest") != subject[0].data.get("digest")
    ):
        raise ProofError(
            f"the entry the document cites for {doc.model} version {doc.version} "
            "does not register those bytes under that name"
        )


def read_annex_iv(data: bytes) -> dict[str, Any]:
    """The JSON document in ``data``: the JSON rendering itself, or the PDF
    rendering, which carries it as the attachment ``annex-iv.json`` (the HTML
    rendering does not carry it). Raises MalformedError."""
    if data.startswith(b"%PDF-"):
        data = _pdf_attachment(data, "annex-iv.json")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise MalformedError(f"not an Annex IV JSON or PDF document: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedError("an Annex IV document is a JSON object")
    return obj


def _pdf_attachment(data: bytes, name: str) -> bytes:
    try:
        import pypdf
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # the server extra brings it
        raise UsageError(
            "reading a PDF report needs pypdf: pip install 'modelchain[server]'"
        ) from exc
    try:
        found = pypdf.PdfReader(io.BytesIO(data)).attachments.get(name, [])
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise MalformedError(f"the PDF cannot be read: {exc}") from exc
    if len(found) != 1:
        raise MalformedError(f"the PDF does not carry exactly one {name}")
    return found[0]
