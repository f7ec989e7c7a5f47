"""Sections 1 to 4 of the document: the general description and versions,
the development process, the training data, validation and testing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import NotFoundError
from ...ledger.lineage import ExternalInput
from .._evidence import rfc3339
from .access import erasure, key_events
from .gaps import DATA_GAPS, DEVELOPMENT_GAPS, GENERAL_GAPS, VALIDATION_GAPS, provider_items
from .model import Section, Statement
from .source import DatasetUse, LineageWalk, Seen, Source
from .wording import dep_name, fmt, run_environment, with_org

__all__ = ["data", "development", "general", "validation"]


# 1 -------------------------------------------------------------------------------


def general(src: Source, walk: LineageWalk) -> Section:
    first = src.versions[0]
    st = [
        Statement(
            "model",
            f"Model {src.model} is registered on ledger {src.led.origin}: "
            f"{len(src.versions)} version(s) up to this checkpoint, the first registered "
            f"by {with_org(first['by'], src.org(first['by']))} at {rfc3339(first['time'])}. "
            f"This document describes version {src.subject['version']}.",
            (first["index"],),
            {
                "name": src.model,
                "versions": [v["version"] for v in src.versions],
                "subject": src.subject["version"],
                "owner": first["by"],
            },
        )
    ]
    for record in src.versions:
        st.append(_version_statement(src, record))
        if record.get("card"):
            st.append(
                Statement(
                    "model_card",
                    f"Model card recorded with version {record['version']} by "
                    f"{record['by']} (as declared by the registrant): {fmt(record['card'])}.",
                    (record["index"],),
                    {"version": record["version"], "card": record["card"]},
                )
            )
    for run in walk.runs:
        if run.id != src.subject.get("run"):
            continue
        env = run_environment(src.led.runs.get(run.id))
        if env:
            packages = env.get("packages") or {}
            st.append(
                Statement(
                    "software",
                    f"Software recorded with training run {run.id}: Python "
                    f"{fmt(env.get('python'))} ({fmt(env.get('implementation'))}) on "
                    f"{fmt(env.get('platform'))}; packages: {fmt(packages)}.",
                    (run.index,),
                    {"run": run.id, "environment": env},
                )
            )
    return Section(
        1,
        "general",
        "General description of the AI system and its versions",
        ("1(a)", "1(c)"),
        tuple(st),
        (),
        provider_items(GENERAL_GAPS),
    )


def _version_statement(src: Source, record: Mapping[str, Any]) -> Statement:
    art = record["artifact"]
    parts = [
        f"Version {record['version']}"
        + (" (the subject of this document)" if record is src.subject else "")
        + f": {art.get('format') or 'unknown'} artifact, {art.get('files')} file(s), "
        f"{art.get('size')} bytes, digest {art['digest']}; registered by "
        f"{with_org(record['by'], src.org(record['by']))} at {rfc3339(record['time'])}"
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
    version = int(record["version"])
    stored = src.led.artifacts.stored("model", src.model, version)
    if stored is not None and src.ev.covers(stored.get("index")):
        parts.append(f"stored encrypted ({stored['scheme']}) by {stored['by']}")
        entries.append(stored["index"])
    else:
        stored = None
    erased = src.led.artifacts.erasure("model", src.model, version)
    if erased is not None and src.ev.covers(erased.get("index")):
        parts.append(
            f"ERASED at {rfc3339(erased['time'])} by "
            f"{', '.join(erased.get('signers') or [erased['by']])}: {erased['reason']}"
        )
        entries.append(erased["index"])
    else:
        erased = None
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
            "stored": None
            if stored is None
            else {"index": stored["index"], "scheme": stored["scheme"], "by": stored["by"]},
            "erased": None
            if erased is None
            else {
                "index": erased["index"],
                "time": rfc3339(erased["time"]),
                "by": list(erased.get("signers") or [erased["by"]]),
                "reason": erased["reason"],
            },
            "subject": record is src.subject,
        },
    )


# 2 -------------------------------------------------------------------------------


def development(src: Source, walk: LineageWalk) -> Section:
    st: list[Statement] = []
    notes: list[str] = []
    if not src.subject.get("run"):
        notes.append(f"Version {src.subject['version']} names no training run.")
    for run in walk.runs:
        record = src.led.runs.get(run.id)
        pred = record["statement"].get("predicate", {})
        build = pred.get("buildDefinition", {})
        details = pred.get("runDetails", {})
        meta = details.get("metadata", {})
        params = build.get("externalParameters", {}).get("parameters", {})
        metrics: dict[str, Any] = {}
        for b in details.get("byproducts", []):
            if isinstance(b, Mapping) and b.get("name") == "metrics":
                metrics = dict(b.get("content") or {})
        produced = f"{run.model} version {run.model_version}"
        st.append(
            Statement(
                "run",
                f"Training run {run.id} produced {produced}; recorded by "
                f"{with_org(record['by'], src.org(record['by']))} at {rfc3339(record['time'])} "
                f"as an in-toto Statement with SLSA Provenance v1 (started "
                f"{fmt(meta.get('startedOn'))}, finished {fmt(meta.get('finishedOn'))}); "
                f"parameters: {fmt(params)}; metrics reported by the run: {fmt(metrics)}; "
                f"inputs: {fmt([dep_name(i) for i in run.inputs])}.",
                (record["index"],),
                {
                    "run": run.id,
                    "model": run.model,
                    "model_version": run.model_version,
                    "by": record["by"],
                    "started": meta.get("startedOn"),
                    "finished": meta.get("finishedOn"),
                    "parameters": params,
                    "metrics": metrics,
                    "subjects": record.get("subjects", []),
                    "inputs": [dep_name(i) for i in run.inputs],
                },
            )
        )
        for dep in run.inputs:
            if not isinstance(dep, ExternalInput):
                continue
            digest = dep.digest or {}
            st.append(
                Statement(
                    "code",
                    f"Run {run.id} names the external input {fmt(dep.uri)} (digest {fmt(digest)}).",
                    (record["index"],),
                    {"run": run.id, "uri": dep.uri, "digest": digest},
                )
            )
    for base in walk.models:
        owner = src.led.models.get(base.name, base.version).record["by"]
        st.append(
            Statement(
                "base_model",
                f"Builds on model {base.name} version {base.version} (digest "
                f"{base.digest}), registered by {with_org(owner, src.org(owner))}; "
                f"{base.use}.",
                (base.index,),
                {
                    "name": base.name,
                    "version": base.version,
                    "digest": base.digest,
                    "by": owner,
                    "org": src.org(owner),
                    "use": base.use,
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
        provider_items(DEVELOPMENT_GAPS),
    )


# 3 -------------------------------------------------------------------------------


def data(src: Source, walk: LineageWalk, seen: Seen) -> Section:
    st: list[Statement] = []
    used: dict[str, dict[int, list[DatasetUse]]] = {}
    for d in walk.datasets:
        used.setdefault(d.name, {}).setdefault(d.version, []).append(d)
    for name in sorted(used):
        info = src.led.datasets.info(name)
        if not src.ev.covers(info.get("created")):
            continue
        st.append(
            Statement(
                "dataset",
                f"Dataset {name}: source {fmt(info.get('source')) or 'not given'}, "
                f"licence {fmt(info.get('license')) or 'not given'}, registered by "
                f"{with_org(info['owner'], src.org(info['owner']))}"
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
            record = src.led.datasets.get(name, v).record
            if not src.ev.covers(record["index"]):
                continue
            st.extend(_dataset_version(src, name, src.bounded(record), used[name].get(v)))
            erased = erasure(src, "dataset", name, v, "data_erasure")
            if erased is not None:
                st.append(erased)
    for item in seen.data_access:
        art = item["body"]["artifact"]
        st.append(
            Statement(
                "data_access",
                f"{with_org(item['actor'], src.org(item['actor']))} obtained the location of "
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
    st.extend(key_events(src, seen.data_keys))
    notes = [] if used else ["No registered dataset is recorded as a training input."]
    return Section(
        3,
        "data",
        "Training data: provenance, preparation and quality",
        ("2(d)",),
        tuple(st),
        tuple(notes),
        provider_items(DATA_GAPS),
    )


def _dataset_version(
    src: Source, name: str, record: Mapping[str, Any], uses: list[DatasetUse] | None
) -> Iterator[Statement]:
    art = record["artifact"]
    ingest = record.get("ingest")
    how = (
        f"ingested as batch {fmt(ingest.get('batch'))} from {fmt(ingest.get('source'))}, "
        f"collected by {fmt(ingest.get('collected_by'))} at "
        f"{rfc3339(int(ingest.get('collected_at', 0)))}"
        if isinstance(ingest, Mapping)
        else "registered"
    )
    rec = record.get("records")
    rows = (
        f"; a salted record-level Merkle root over {rec.get('count')} records ({rec.get('scheme')})"
        if isinstance(rec, Mapping)
        else ""
    )
    runs = sorted({u.run for u in uses or [] if u.run})
    run_indexes = sorted({u.run_index for u in uses or []})
    use = f"used by training run(s) {', '.join(runs)}" if runs else "not a training input here"
    yield Statement(
        "dataset_version",
        f"Dataset {name} version {record['version']}: {art.get('format') or 'unknown'}, "
        f"{art.get('files')} file(s), {art.get('size')} bytes, digest {art['digest']}; "
        f"{how}; recorded by {with_org(record['by'], src.org(record['by']))} at "
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
            f"Validator {with_org(a['by'], a.get('org', ''))} attested dataset {name} version "
            f"{record['version']} at {rfc3339(a['time'])}: "
            f"{'passed' if a['passed'] else 'FAILED'}; checks: {fmt(a.get('checks'))}; "
            f"tool: {fmt(a.get('tool'))}; signed with key(s) {fmt(src.keyids(a['index']))}.",
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
                "keyids": src.keyids(a["index"]),
            },
        )


# 4 -------------------------------------------------------------------------------


def validation(src: Source, walk: LineageWalk) -> Section:
    st: list[Statement] = []
    notes: list[str] = []
    subject = src.subject
    v = subject["version"]
    for e in subject["evaluations"]:
        ds = e["dataset"]
        entries = [e["index"]]
        try:
            test_set = src.led.datasets.get(ds["name"], ds["version"]).record
        except NotFoundError:
            test_set = None
        if test_set is not None and src.ev.covers(test_set["index"]):
            entries.append(test_set["index"])
        st.append(
            Statement(
                "evaluation",
                f"Evaluator {with_org(e['by'], e.get('org', ''))} signed these metrics for "
                f"version {v} on dataset {ds['name']} version {ds['version']}"
                + (f" (digest {test_set['artifact']['digest']})" if test_set else "")
                + f" at {rfc3339(e['time'])}: {fmt(e['metrics'])}; "
                f"tool: {fmt(e.get('tool'))}; "
                f"signed with key(s) {fmt(src.keyids(e['index']))}.",
                tuple(entries),
                {
                    "version": v,
                    "by": e["by"],
                    "org": e.get("org"),
                    "dataset": ds,
                    "metrics": e["metrics"],
                    "tool": e.get("tool"),
                    "time": rfc3339(e["time"]),
                    "keyids": src.keyids(e["index"]),
                },
            )
        )
        if test_set is not None and ds["name"] not in {d.name for d in walk.datasets}:
            for a in src.bounded(test_set)["attestations"]:
                st.append(
                    Statement(
                        "test_data_attestation",
                        f"Test dataset {ds['name']} version {ds['version']} was attested "
                        f"by validator {with_org(a['by'], a.get('org', ''))} at "
                        f"{rfc3339(a['time'])}: {'passed' if a['passed'] else 'FAILED'}.",
                        (a["index"],),
                        {"dataset": ds, "by": a["by"], "passed": a["passed"]},
                    )
                )
    if not subject["evaluations"]:
        notes.append(
            f"No evaluation of version {v} is on the ledger up to entry {src.ev.size - 1}."
        )
    if subject.get("metrics"):
        st.append(
            Statement(
                "declared_metrics",
                f"Metrics declared by the registrant of version {v} (not an independent "
                f"evaluation): {fmt(subject['metrics'])}.",
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
        provider_items(VALIDATION_GAPS),
    )
