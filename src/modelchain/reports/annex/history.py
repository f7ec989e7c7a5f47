"""Sections 5 to 7 of the document: approvals and their signers, the change
history per environment, post-market monitoring records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...contracts import types as tx_types
from .._evidence import rfc3339
from .access import erasure, key_events
from .gaps import APPROVAL_GAPS, CHANGE_GAPS, MONITORING_GAPS, provider_items
from .model import Section, Statement
from .source import Seen, Source
from .wording import attempt, capped, capped_note, fmt, with_org

__all__ = ["approvals", "changes", "monitoring"]


# 5 -------------------------------------------------------------------------------


def approvals(src: Source, seen: Seen) -> Section:
    st: list[Statement] = []
    signers: set[str] = set()
    decisions = []
    for record in src.versions:
        for field_, decision in (("approvals", "approved"), ("rejections", "rejected")):
            for a in record[field_]:
                decisions.append((a["index"], record["version"], decision, a))
    for index, version, decision, a in sorted(decisions, key=lambda d: d[0]):
        signers.add(a["by"])
        comment = f': "{a["comment"]}"' if a.get("comment") else ""
        st.append(
            Statement(
                "approval",
                f"{with_org(a['by'], a.get('org', ''))} {decision} version {version} for "
                f"environment {a['env']} in the role {a['role']} at {rfc3339(a['time'])}"
                f"{comment}; signed with key(s) {fmt(src.keyids(index))}.",
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
                    "keyids": src.keyids(index),
                },
            )
        )
    for e in src.subject["evaluations"]:
        signers.add(e["by"])
    for name in sorted(signers):
        m = src.member(name)
        since = m.get("since")
        if not src.ev.covers(since):
            continue
        changes = seen.member_changes.get(name, [])
        st.append(
            Statement(
                "signer",
                f"{name} is a member of {fmt(m.get('org')) or 'no organisation'} with the "
                f"roles {fmt(m.get('roles'))} (status {fmt(m.get('status'))}), admitted in "
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
    for p in sorted(src.led.policies.list(), key=lambda p: str(p.get("action"))):
        action = str(p.get("action", ""))
        if not action.startswith("model.") or not src.ev.covers(p.get("set_at")):
            continue
        st.append(
            Statement(
                "policy",
                f"Policy {action} version {p.get('version')}, set by {fmt(p.get('by'))}, "
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
        provider_items(APPROVAL_GAPS),
    )


# 6 -------------------------------------------------------------------------------


def changes(src: Source) -> Section:
    timeline: list[tuple[int, Statement]] = []
    for record in src.versions:
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
        erased = erasure(src, "model", src.model, int(record["version"]), "erasure")
        if erased is not None:
            timeline.append((erased.entries[0], erased))
    for event in src.history:
        timeline.append((event["index"], _deployment_statement(src, event)))
    current: dict[str, Mapping[str, Any]] = {}
    for event in src.history:
        current[event["env"]] = event
    st = [s for _, s in sorted(timeline, key=lambda t: t[0])]
    for env in sorted(current):
        last = current[env]
        serving = f"version {last['to']}" if last["to"] is not None else "no version"
        st.append(
            Statement(
                "current_deployment",
                f"At this checkpoint, environment {env} serves {serving} of {src.model}, "
                f"since entry {last['index']} ({rfc3339(last['time'])}).",
                (last["index"],),
                {"env": env, "version": last["to"], "since": last["index"]},
            )
        )
    notes = [] if src.history else [f"{src.model} has never been deployed."]
    return Section(
        6,
        "changes",
        "Change history: versions, deployments, rollbacks, revocations and erasures",
        ("6",),
        tuple(st),
        tuple(notes),
        provider_items(CHANGE_GAPS),
    )


def _deployment_statement(src: Source, event: Mapping[str, Any]) -> Statement:
    entry = src.ev.entry(event["index"])
    env, by, when = event["env"], event["by"], rfc3339(event["time"])
    approvals = [
        a
        for a in event.get("approvals", [])
        if src.ev.covers(a.get("index")) and a["index"] < event["index"]
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


def monitoring(src: Source, seen: Seen) -> Section:
    st: list[Statement] = []
    for r in seen.reports:
        env = r["body"]["env"]
        served = src.served(env, r["index"])
        acted = r["outcome"].get("reason")
        st.append(
            Statement(
                "monitor_report",
                f"{with_org(r['actor'], src.org(r['actor']))} reported on {env}"
                + (f" (serving version {served})" if served is not None else "")
                + f" at {rfc3339(r['time'])}: {fmt(r['body']['metrics'])}"
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
                f"{rfc3339(last)}.{capped_note(indexes)}",
                capped(indexes),
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
                f"time(s) by {', '.join(who)}; purposes: {fmt(purposes)}."
                f"{capped_note(indexes)}",
                capped(indexes),
                {"version": version, "count": len(accesses), "by": who, "indexes": indexes},
            )
        )
    st.extend(key_events(src, seen.model_keys))
    for d in seen.denied:
        code = d["outcome"].get("code", "")
        st.append(
            Statement(
                "denied",
                f"{with_org(d['actor'], src.org(d['actor']))} attempted {d['type']} "
                f"({attempt(d['type'], d['body'])}) at {rfc3339(d['time'])}: denied, "
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
        provider_items(MONITORING_GAPS),
    )
