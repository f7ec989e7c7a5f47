"""Registry contracts: datasets and their versions, training runs, model versions.

Only digests, metadata and (small) manifests enter the ledger; bytes stay where
they are. Versions are immutable and numbered from 1. A model version names the
run that produced it, and the run's SLSA provenance must list the model's digest
as a subject and every modelchain dataset or model it used at its registered
digest, so lineage is checked when it is written, not when it is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..core.manifest import Manifest, check_algorithm
from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int, names
from .state import dataset_key, digest_key, entity_key, model_key, run_key, version_key
from .types import DATASET_INGEST, DATASET_REGISTER, MODEL_REGISTER, RUN_RECORD

__all__ = [
    "INLINE_MANIFEST_MAX",
    "SLSA_PROVENANCE",
    "STATEMENT_V1",
    "dataset_inputs",
    "dependency_uri",
    "parse_dependency_uri",
    "registry_rules",
    "version_view",
]

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
INLINE_MANIFEST_MAX = 32 * 1024  # canonical bytes; larger manifests go beside the ledger

# What names were held to before core.names: still the schema of logged entries;
# admission holds new ones to core.names (TypeRule.admit).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_DIGEST = re.compile(r"(sha256|blake3|sha256-sharded-[1-9][0-9]*):[0-9a-f]{64}\Z")
_REF = re.compile(r"sha256:[0-9a-f]{64}\Z")
_DEP = re.compile(r"modelchain:(dataset|model)/([A-Za-z0-9][A-Za-z0-9._-]{0,127})@([1-9][0-9]*)\Z")


def dependency_uri(kind: str, name: str, version: int) -> str:
    """How a SLSA resolved dependency names a registered dataset or model version."""
    return f"modelchain:{kind}/{name}@{version}"


def parse_dependency_uri(uri: str) -> tuple[str, str, int] | None:
    m = _DEP.match(uri)
    return None if m is None else (m.group(1), m.group(2), int(m.group(3)))


# -- static checks ---------------------------------------------------------------


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def _text(body: Mapping[str, Any], key: str, limit: int = 2000, empty: bool = True) -> None:
    v = body.get(key)
    _require(
        isinstance(v, str) and len(v) <= limit and (empty or bool(v)),
        f"{key} must be a string of at most {limit} characters",
    )


def _name(v: object, what: str) -> None:
    _require(isinstance(v, str) and bool(_NAME.match(v)), f"{what} must be 1-128 of [A-Za-z0-9._-]")


def _keys(
    body: Mapping[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    missing = required - set(body)
    extra = set(body) - required - optional
    _require(not missing and not extra, f"missing {sorted(missing)}, unexpected {sorted(extra)}")


def check_artifact(art: object) -> None:
    """{digest, size, files, format, manifest | manifest_ref}: what identifies bytes."""
    _require(isinstance(art, dict), "artifact must be an object")
    assert isinstance(art, dict)
    _keys(art, {"digest", "size", "files", "format"}, frozenset({"manifest", "manifest_ref"}))
    _require(
        isinstance(art["digest"], str) and bool(_DIGEST.match(art["digest"])),
        "artifact digest must be <algorithm>:<64 hex>",
    )
    check_algorithm(art["digest"].split(":", 1)[0])
    for k in ("size", "files"):
        _require(is_int(art[k]) and art[k] >= 0, f"artifact {k} is an integer >= 0")
    _require(isinstance(art["format"], str) and len(art["format"]) <= 64, "format")
    has_inline, has_ref = "manifest" in art, "manifest_ref" in art
    _require(has_inline != has_ref, "give exactly one of manifest or manifest_ref")
    if has_inline:
        manifest = Manifest.from_json(art["manifest"])
        _require(manifest.digest == art["digest"], "the manifest's digest is not the artifact's")
        _require(len(manifest.files) == art["files"], "file count differs from the manifest")
        _require(manifest.size == art["size"], "size differs from the manifest")
    else:
        _require(
            isinstance(art["manifest_ref"], str) and bool(_REF.match(art["manifest_ref"])),
            "manifest_ref must be sha256:<64 hex> of the stored manifest",
        )


def _check_records(rec: object) -> None:
    if rec is None:
        return
    _require(isinstance(rec, dict), "records must be an object or null")
    assert isinstance(rec, dict)
    _keys(rec, {"scheme", "root", "count"})
    _require(isinstance(rec["scheme"], str) and len(rec["scheme"]) <= 64, "records scheme")
    _require(
        isinstance(rec["root"], str) and bool(re.fullmatch(r"[0-9a-f]{64}", rec["root"])),
        "records root must be 64 hex",
    )
    _require(is_int(rec["count"]) and rec["count"] >= 0, "records count is an integer >= 0")


def _json_object(v: object, what: str) -> None:
    _require(isinstance(v, dict), f"{what} must be an object")


def check_dataset_register(body: Mapping[str, Any]) -> None:
    _keys(body, {"name", "source", "license", "description", "artifact", "records"})
    _name(body["name"], "dataset name")
    for k in ("source", "license", "description"):
        _text(body, k)
    check_artifact(body["artifact"])
    _check_records(body["records"])


def check_dataset_ingest(body: Mapping[str, Any]) -> None:
    _keys(
        body,
        {"dataset", "source", "batch", "collected_by", "collected_at", "artifact", "records"},
    )
    _name(body["dataset"], "dataset")
    for k in ("source", "batch", "collected_by"):
        _text(body, k, 500)
    _require(
        is_int(body["collected_at"]) and body["collected_at"] >= 0,
        "collected_at is milliseconds since the epoch",
    )
    check_artifact(body["artifact"])
    _check_records(body["records"])


def _digest_set(d: object, what: str) -> None:
    _require(isinstance(d, dict) and bool(d), f"{what} needs a digest map")
    assert isinstance(d, dict)
    for alg, value in d.items():
        _require(
            isinstance(alg, str) and isinstance(value, str) and bool(value),
            f"{what}: digests map an algorithm to a value",
        )


def check_run_record(body: Mapping[str, Any]) -> None:
    _keys(body, {"id", "statement"})
    _name(body["id"], "run id")
    st = body["statement"]
    _require(isinstance(st, dict), "statement must be an in-toto Statement")
    _require(st.get("_type") == STATEMENT_V1, f"statement _type must be {STATEMENT_V1}")
    _require(st.get("predicateType") == SLSA_PROVENANCE, f"predicateType must be {SLSA_PROVENANCE}")
    subjects = st.get("subject")
    _require(isinstance(subjects, list) and bool(subjects), "statement needs subjects")
    for s in subjects:
        _require(isinstance(s, dict) and isinstance(s.get("name"), str), "subject needs a name")
        _digest_set(s.get("digest"), "subject")
    pred = st.get("predicate")
    _require(isinstance(pred, dict), "predicate must be an object")
    build = pred.get("buildDefinition")
    _require(isinstance(build, dict), "predicate.buildDefinition is required")
    _require(isinstance(build.get("buildType"), str), "buildDefinition.buildType is required")
    _json_object(build.get("externalParameters"), "buildDefinition.externalParameters")
    deps = build.get("resolvedDependencies", [])
    _require(isinstance(deps, list), "resolvedDependencies must be a list")
    for d in deps:
        _require(isinstance(d, dict), "a resolved dependency is an object")
        if isinstance(d.get("uri"), str) and d["uri"].startswith("modelchain:"):
            _require(parse_dependency_uri(d["uri"]) is not None, f"bad uri {d['uri']!r}")
            _digest_set(d.get("digest"), d["uri"])
    details = pred.get("runDetails")
    _require(isinstance(details, dict), "predicate.runDetails is required")
    builder = details.get("builder")
    _require(
        isinstance(builder, dict) and isinstance(builder.get("id"), str),
        "runDetails.builder.id is required",
    )


def check_model_register(body: Mapping[str, Any]) -> None:
    _keys(body, {"name", "artifact", "run", "parent", "metrics", "card"})
    _name(body["name"], "model name")
    check_artifact(body["artifact"])
    if body["run"] is not None:
        _name(body["run"], "run id")
    parent = body["parent"]
    if parent is not None:
        _require(
            isinstance(parent, dict) and set(parent) == {"name", "version"},
            "parent is {name, version} or null",
        )
        _name(parent["name"], "parent name")
        _require(is_int(parent["version"]) and parent["version"] >= 1, "parent version")
    _json_object(body["metrics"], "metrics")
    _json_object(body["card"], "card")


# -- execution ---------------------------------------------------------------------


def _record(call: Call) -> dict[str, Any]:
    return {"by": call.tx.actor, "index": call.index, "time": call.tx.time}


def _new_version(
    state: Overlay,
    kind: str,
    name: str,
    artifact: dict[str, Any],
    fields: dict[str, Any],
    call: Call,
) -> int:
    entity = state.get_state(entity_key(kind, name))
    assert isinstance(entity, dict)
    existing = state.get_state(digest_key(kind, name, artifact["digest"]))
    if existing is not None:
        raise Rejected(
            "version_exists", f"{kind} {name} version {existing} already has these bytes"
        )
    version = int(entity["latest"]) + 1
    state.put(entity_key(kind, name), {**entity, "latest": version})
    state.put(
        version_key(kind, name, version),
        {"name": name, "version": version, "artifact": artifact, **fields, **_record(call)},
    )
    state.put(digest_key(kind, name, artifact["digest"]), version)
    return version


def exec_dataset_register(state: Overlay, call: Call) -> None:
    body = call.tx.body
    if state.get_state(dataset_key(body["name"])) is not None:
        raise Rejected("dataset_exists", f"dataset {body['name']} is already registered")
    state.put(
        dataset_key(body["name"]),
        {
            "name": body["name"],
            "source": body["source"],
            "license": body["license"],
            "description": body["description"],
            "owner": call.tx.actor,
            "latest": 0,
            "created": call.index,
        },
    )
    _new_version(
        state,
        "dataset",
        body["name"],
        body["artifact"],
        {"records": body["records"], "ingest": None},
        call,
    )


def exec_dataset_ingest(state: Overlay, call: Call) -> None:
    body = call.tx.body
    if state.get_state(dataset_key(body["dataset"])) is None:
        raise Rejected("no_dataset", f"dataset {body['dataset']} is not registered")
    ingest = {k: body[k] for k in ("source", "batch", "collected_by", "collected_at")}
    _new_version(
        state,
        "dataset",
        body["dataset"],
        body["artifact"],
        {"records": body["records"], "ingest": ingest},
        call,
    )


def _registered(state: Overlay, kind: str, name: str, version: int) -> dict[str, Any]:
    found = state.get_state(version_key(kind, name, version))
    if not isinstance(found, dict):
        raise Rejected(f"no_{kind}", f"{kind} {name} version {version} is not registered")
    return found


def exec_run_record(state: Overlay, call: Call) -> None:
    body = call.tx.body
    if state.get_state(run_key(body["id"])) is not None:
        raise Rejected("run_exists", f"run {body['id']} is already recorded")
    st = body["statement"]
    inputs = []
    for dep in st["predicate"]["buildDefinition"].get("resolvedDependencies", []):
        parsed = (
            parse_dependency_uri(dep.get("uri", "")) if isinstance(dep.get("uri"), str) else None
        )
        if parsed is None:
            continue  # code, containers, ... : recorded, not resolvable here
        kind, name, version = parsed
        found = _registered(state, kind, name, version)
        alg, root = found["artifact"]["digest"].split(":", 1)
        if dep["digest"].get(alg) != root:
            raise Rejected(
                "digest_mismatch",
                f"{dep['uri']} is registered as {alg}:{root[:16]}..., the run names other bytes",
            )
        inputs.append({"kind": kind, "name": name, "version": version})
    subjects = [
        f"{alg}:{value}" for s in st["subject"] for alg, value in sorted(s["digest"].items())
    ]
    state.put(
        run_key(body["id"]),
        {
            "id": body["id"],
            "statement": st,
            "inputs": inputs,
            "subjects": subjects,
            **_record(call),
        },
    )


def exec_model_register(state: Overlay, call: Call) -> None:
    body = call.tx.body
    name, artifact = body["name"], body["artifact"]
    if body["run"] is not None:
        run = state.get_state(run_key(body["run"]))
        if not isinstance(run, dict):
            raise Rejected("no_run", f"run {body['run']} is not recorded")
        if artifact["digest"] not in run["subjects"]:
            raise Rejected(
                "not_a_run_output",
                f"run {body['run']} does not list {artifact['digest'][:24]}... as a subject",
            )
    if body["parent"] is not None:
        _registered(state, "model", body["parent"]["name"], body["parent"]["version"])
    if state.get_state(model_key(name)) is None:
        state.put(
            model_key(name),
            {"name": name, "owner": call.tx.actor, "latest": 0, "created": call.index},
        )
    fields = {k: body[k] for k in ("run", "parent", "metrics", "card")}
    _new_version(state, "model", name, artifact, fields, call)


# -- what policies see (documented in contracts/policy.py) --------------------------


def version_view(record: Mapping[str, Any]) -> dict[str, Any]:
    attestations = list(record.get("attestations", []))
    return {
        "name": record["name"],
        "version": record["version"],
        "digest": record["artifact"]["digest"],
        "format": record["artifact"]["format"],
        "records": record.get("records"),
        "by": record["by"],
        "attestations": attestations,
        # attested by at least one validator, and no validator found it failing
        "quality_passed": bool(attestations) and all(a["passed"] for a in attestations),
        "evaluations": list(record.get("evaluations", [])),
        # for proof-of-performance rules: how many evaluators, and how far apart
        # their figures are (a metric some evaluator did not report is left out)
        "evaluators": sorted({e["by"] for e in record.get("evaluations", [])}),
        "metric_spread": _spread(record.get("evaluations", [])),
    }


def _spread(evaluations: list[dict[str, Any]]) -> dict[str, float]:
    if not evaluations:
        return {}
    names = set.intersection(*(set(e["metrics"]) for e in evaluations))
    out = {}
    for name in sorted(names):
        values = [e["metrics"][name] for e in evaluations]
        if all(isinstance(v, int | float) for v in values):
            out[name] = float(max(values) - min(values))
    return out


def dataset_inputs(state: StateReader, deps: list[Any]) -> list[dict[str, Any]]:
    views = []
    for dep in deps:
        parsed = parse_dependency_uri(dep.get("uri", "")) if isinstance(dep, dict) else None
        if parsed is not None and parsed[0] == "dataset":
            found = state.get_state(version_key("dataset", parsed[1], parsed[2]))
            if isinstance(found, dict):
                views.append(version_view(found))
    return views


def _run_record_context(state: StateReader, call: Call) -> dict[str, Any]:
    build = call.tx.body["statement"]["predicate"]["buildDefinition"]
    return {"datasets": dataset_inputs(state, build.get("resolvedDependencies", []))}


def _model_register_context(state: StateReader, call: Call) -> dict[str, Any]:
    body = call.tx.body
    entity = state.get_state(model_key(body["name"]))
    run = state.get_state(run_key(body["run"])) if body["run"] is not None else None
    datasets: list[dict[str, Any]] = []
    run_view = None
    if isinstance(run, dict):
        deps = run["statement"]["predicate"]["buildDefinition"].get("resolvedDependencies", [])
        datasets = dataset_inputs(state, deps)
        run_view = {k: run[k] for k in ("id", "inputs", "subjects", "by")}
    return {
        "model": {
            "name": body["name"],
            "version": (entity["latest"] if isinstance(entity, dict) else 0) + 1,
            "digest": body["artifact"]["digest"],
            "format": body["artifact"]["format"],
            "run": body["run"],
            "parent": body["parent"],
            "metrics": body["metrics"],
            "card": body["card"],
        },
        "run": run_view,
        "datasets": datasets,
    }


def _dataset_context(state: StateReader, call: Call) -> dict[str, Any]:
    body = call.tx.body
    name = str(body["name"] if "name" in body else body["dataset"])
    entity = state.get_state(dataset_key(name))
    return {
        "dataset": {
            "name": name,
            "version": (entity["latest"] if isinstance(entity, dict) else 0) + 1,
            "digest": body["artifact"]["digest"],
            "records": body["records"],
        }
    }


def registry_rules() -> dict[str, TypeRule]:
    return {
        DATASET_REGISTER: TypeRule(
            check_dataset_register, exec_dataset_register, _dataset_context, names("name")
        ),
        DATASET_INGEST: TypeRule(
            check_dataset_ingest, exec_dataset_ingest, _dataset_context, names("dataset")
        ),
        RUN_RECORD: TypeRule(check_run_record, exec_run_record, _run_record_context, names("id")),
        MODEL_REGISTER: TypeRule(
            check_model_register,
            exec_model_register,
            _model_register_context,
            names("name", "run", "parent.name"),
        ),
    }
