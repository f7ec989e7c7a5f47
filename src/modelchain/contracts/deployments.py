"""Approvals and deployments: which version serves which environment, and why.

``model.approve``/``model.reject`` record an approver's decision for a version
and environment; ``model.deploy`` pins an environment to a version (policies
for ``model.deploy:<env>`` decide); ``model.rollback`` returns it to the
previous version that was not revoked; ``model.revoke`` withdraws a version
everywhere and forbids redeploying it; a ``monitor.report`` that breaches a
deployment's rollback rule (CEL) rolls the environment back in the same
transaction. Every change is kept in the environment's history.

From contract-set version 5 an approval goes stale: older than the approval
period (``governance.approval-ttl``) by the deploying entry's time, or recorded
before the version's last rollback from that environment. A stale approval does
not count (policies do not see it), its approver may approve again, and a
version rolled back from an environment is redeployed there only with an
approval recorded since. Only the log's times are compared, never a clock.

From contract-set version 8, when governance has set a replication factor
(``governance.replication``), a version is deployed only once that many
organisations have recorded a verified copy of it (``artifact.replica``):
otherwise ``under_replicated``, before any policy. Rollbacks are never held back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.disclosure import is_commitment
from ..errors import MalformedError
from .access import replica_orgs
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int, names
from .governance import approval_ttl_ms, replication_copies
from .policy import compile_rule, evaluate
from .registry import dataset_inputs, version_view
from .state import (
    deploy_envs_key,
    deploy_history_key,
    deployment_key,
    member_key,
    monitor_key,
    run_key,
    version_key,
)
from .types import (
    ACCESS_LOG,
    MODEL_APPROVE,
    MODEL_DEPLOY,
    MODEL_REJECT,
    MODEL_REVOKE,
    MODEL_ROLLBACK,
    MONITOR_REPORT,
)
from .versions import APPROVAL_VERSION, REPLICATION_VERSION

__all__ = ["deployment_rules", "revoked_ancestor"]


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def _string(body: Mapping[str, Any], key: str, limit: int = 200, empty: bool = False) -> None:
    v = body.get(key)
    _require(isinstance(v, str) and len(v) <= limit and (empty or bool(v)), f"{key} is a string")


def _version_no(v: object) -> None:
    _require(is_int(v) and v >= 1, "version is an integer >= 1")


def check_decision(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"model", "version", "env", "role", "comment"},
        "body is {model, version, env, role, comment}",
    )
    for k in ("model", "env", "role"):
        _string(body, k)
    _string(body, "comment", 2000, empty=True)
    _version_no(body["version"])


def check_deploy(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"model", "version", "env", "rollback_rule"},
        "model.deploy body is {model, version, env, rollback_rule}",
    )
    _string(body, "model")
    _string(body, "env")
    _version_no(body["version"])
    if body["rollback_rule"] is not None:
        compile_rule(body["rollback_rule"])


def check_rollback(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"model", "env", "reason"}, "model.rollback body is {model, env, reason}")
    for k in ("model", "env"):
        _string(body, k)
    _string(body, "reason", 2000, empty=True)


def check_revoke(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"model", "version", "reason"}, "model.revoke body is {model, version, reason}"
    )
    _string(body, "model")
    _string(body, "reason", 2000, empty=True)
    _version_no(body["version"])


def check_report(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"model", "env", "metrics"}, "monitor.report body is {model, env, metrics}"
    )
    _string(body, "model")
    _string(body, "env")
    m = body["metrics"]
    _require(isinstance(m, dict) and bool(m), "metrics is a non-empty object")


def check_access(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"artifact", "purpose"}, "access.log body is {artifact, purpose}")
    art = body["artifact"]
    _require(
        isinstance(art, dict) and set(art) == {"kind", "name", "version"},
        "artifact is {kind, name, version}",
    )
    _string(art, "kind")
    _string(art, "name")
    _version_no(art["version"])
    _string(body, "purpose", 500)


def _record(state: StateReader, model: str, version: int) -> dict[str, Any]:
    found = state.get_state(version_key("model", model, version))
    if not isinstance(found, dict):
        raise Rejected("no_model", f"model {model} version {version} is not registered")
    return found


def _put_record(state: Overlay, record: dict[str, Any]) -> None:
    state.put(version_key("model", record["name"], record["version"]), record)


def _stamp(call: Call) -> dict[str, Any]:
    return {"by": call.tx.actor, "index": call.index, "time": call.tx.time}


def _decide(state: Overlay, call: Call, field: str) -> None:
    body = call.tx.body
    member = state.get_state(member_key(call.tx.actor))
    roles = member["roles"] if isinstance(member, dict) else []
    if f"approver:{body['role']}" not in roles:
        raise Rejected(
            "not_permitted", f"{call.tx.actor} does not hold the approval role {body['role']!r}"
        )
    record = _record(state, body["model"], body["version"])
    decisions = list(record.get(field, []))
    standing = decisions
    if field == "approvals" and call.version >= APPROVAL_VERSION:
        standing = _counting(state, call, record, body["env"])  # a stale one may be renewed
    if any(d["by"] == call.tx.actor and d["env"] == body["env"] for d in standing):
        raise Rejected(
            "already_decided", f"{call.tx.actor} already decided on this for {body['env']}"
        )
    org = member["org"] if isinstance(member, dict) else ""
    decisions.append(
        {
            "env": body["env"],
            "role": body["role"],
            "comment": body["comment"],
            "org": org,
            **_stamp(call),
        }
    )
    _put_record(state, {**record, field: decisions})


def exec_approve(state: Overlay, call: Call) -> None:
    _decide(state, call, "approvals")


def exec_reject(state: Overlay, call: Call) -> None:
    _decide(state, call, "rejections")


def _history(state: StateReader, model: str, env: str) -> list[dict[str, Any]]:
    found = state.get_state(deploy_history_key(model, env))
    return list(found) if isinstance(found, list) else []


def _last_rollback(state: StateReader, model: str, version: int, env: str) -> int | None:
    """The index of the last rollback of ``env`` away from ``version``, if any."""
    found = [
        int(e["index"])
        for e in _history(state, model, env)
        if e["action"] == "rollback" and e["from"] == version
    ]
    return found[-1] if found else None


def _counting(
    state: StateReader, call: Call, record: dict[str, Any], env: str
) -> list[dict[str, Any]]:
    """The approvals of a version for ``env`` that count for ``call``: under
    version 5, recorded after its last rollback from ``env`` and no older than
    the approval period by ``call``'s time; before it, every one."""
    approvals = [a for a in record.get("approvals", []) if a["env"] == env]
    if call.version < APPROVAL_VERSION:
        return approvals
    since = _last_rollback(state, record["name"], record["version"], env)
    oldest = call.tx.time - approval_ttl_ms(state)
    return [a for a in approvals if (since is None or a["index"] > since) and a["time"] >= oldest]


def _require_fresh_approval(state: StateReader, call: Call, record: dict[str, Any]) -> None:
    """Version 5: a version rolled back from an environment is redeployed there
    only with an approval recorded since the rollback (and not expired)."""
    env = call.tx.body["env"]
    since = _last_rollback(state, record["name"], record["version"], env)
    if since is None or _counting(state, call, record, env):
        return
    raise Rejected(
        "stale_approvals",
        f"{record['name']} version {record['version']} was rolled back from {env} at entry "
        f"{since}; redeploying it there needs a fresh approval recorded after that entry "
        "(approvals from before the rollback no longer count)",
    )


def _replication(state: StateReader, record: dict[str, Any]) -> dict[str, Any]:
    """What a version-8 policy sees: ``{required, copies, orgs}`` (required 0: no
    replication factor set)."""
    orgs = replica_orgs(state, "model", record["name"], record["version"])
    return {"required": replication_copies(state), "copies": len(orgs), "orgs": orgs}


def _require_replicated(state: StateReader, record: dict[str, Any]) -> None:
    """Version 8: a version is deployed only once as many organisations as the
    replication factor hold a verified copy of it."""
    found = _replication(state, record)
    if found["copies"] >= found["required"]:
        return
    held = ", ".join(found["orgs"]) or "no organisation"
    raise Rejected(
        "under_replicated",
        f"{record['name']} version {record['version']} is held by {found['copies']} "
        f"organisation(s) ({held}); the ledger's replication factor needs "
        f"{found['required']} before it is deployed (each records its verified copy: "
        "`modelchain store sync --from URL`)",
    )


def _set_deployment(
    state: Overlay,
    call: Call,
    model: str,
    env: str,
    version: int | None,
    action: str,
    reason: str,
    rollback_rule: str | None = None,
    approvals: list[dict[str, Any]] | None = None,
) -> None:
    current = state.get_state(deployment_key(model, env))
    before = current["version"] if isinstance(current, dict) else None
    if version is None:
        state.delete(deployment_key(model, env))
    else:
        record = _record(state, model, version)
        state.put(
            deployment_key(model, env),
            {
                "version": version,
                "since": call.index,
                "by": call.tx.actor,
                "rollback_rule": rollback_rule,
                "approvals": (
                    [a for a in record.get("approvals", []) if a["env"] == env]
                    if approvals is None
                    else approvals
                ),
            },
        )
    state.put(
        deploy_history_key(model, env),
        [
            *_history(state, model, env),
            {"action": action, "from": before, "to": version, "reason": reason, **_stamp(call)},
        ],
    )
    envs = state.get_state(deploy_envs_key(model))
    envs = list(envs) if isinstance(envs, list) else []
    if env not in envs:
        state.put(deploy_envs_key(model), [*envs, env])


def _previous(state: StateReader, model: str, env: str, current: int | None) -> int | None:
    """The most recent earlier deployed version that was neither revoked nor
    rolled back from (a version withdrawn once does not come back by itself)."""
    history = _history(state, model, env)
    withdrawn = {e["from"] for e in history if e["action"] == "rollback"}
    for event in reversed(history):
        v = event["to"]
        if v is None or v == current or v in withdrawn:
            continue
        if not _record(state, model, v).get("revoked"):
            return int(v)
    return None


def revoked_ancestor(state: StateReader, model: str, version: int) -> bool:
    seen = set()
    record = _record(state, model, version)
    while True:
        if record.get("revoked"):
            return True
        parent = record.get("parent")
        if parent is None or (parent["name"], parent["version"]) in seen:
            return False
        seen.add((parent["name"], parent["version"]))
        found = state.get_state(version_key("model", parent["name"], parent["version"]))
        if not isinstance(found, dict):
            return False
        record = found


def exec_deploy(state: Overlay, call: Call) -> None:
    body = call.tx.body
    record = _record(state, body["model"], body["version"])
    if record.get("revoked"):
        raise Rejected("revoked", f"{body['model']} version {body['version']} was revoked")
    approvals = None  # version 4 and before: every approval for the environment
    if call.version >= APPROVAL_VERSION:
        _require_fresh_approval(state, call, record)
        approvals = _counting(state, call, record, body["env"])
    if call.version >= REPLICATION_VERSION:
        _require_replicated(state, record)
    _set_deployment(
        state,
        call,
        body["model"],
        body["env"],
        body["version"],
        "deploy",
        "",
        body["rollback_rule"],
        approvals,
    )


def _rollback(state: Overlay, call: Call, model: str, env: str, reason: Any) -> None:
    current = state.get_state(deployment_key(model, env))
    if not isinstance(current, dict):
        raise Rejected("not_deployed", f"{model} is not deployed to {env}")
    target = _previous(state, model, env, current["version"])
    _set_deployment(state, call, model, env, target, "rollback", reason)


def exec_rollback(state: Overlay, call: Call) -> None:
    body = call.tx.body
    _rollback(state, call, body["model"], body["env"], body["reason"])


def exec_revoke(state: Overlay, call: Call) -> None:
    body = call.tx.body
    record = _record(state, body["model"], body["version"])
    if record.get("revoked"):
        raise Rejected("revoked", "already revoked")
    _put_record(state, {**record, "revoked": {"reason": body["reason"], **_stamp(call)}})
    envs = state.get_state(deploy_envs_key(body["model"]))
    for env in envs if isinstance(envs, list) else []:
        current = state.get_state(deployment_key(body["model"], env))
        if isinstance(current, dict) and current["version"] == body["version"]:
            # A committed reason (version 8 on) is carried as it is: its erasure
            # erases it here too.
            reason = body["reason"]
            why = reason if is_commitment(reason) else f"version revoked: {reason}"
            _rollback(state, call, body["model"], env, why)


def exec_report(state: Overlay, call: Call) -> None:
    body = call.tx.body
    current = state.get_state(deployment_key(body["model"], body["env"]))
    if not isinstance(current, dict):
        raise Rejected("not_deployed", f"{body['model']} is not deployed to {body['env']}")
    key = monitor_key(body["model"], body["env"])
    state.put(key, {"metrics": body["metrics"], "version": current["version"], **_stamp(call)})
    rule = current.get("rollback_rule")
    if rule and evaluate(rule, {"metrics": body["metrics"], "deployment": current}):
        _rollback(
            state,
            call,
            body["model"],
            body["env"],
            f"monitor report breached the rollback rule: {rule}",
        )
        now = state.get_state(deployment_key(body["model"], body["env"]))
        to = now["version"] if isinstance(now, dict) else "nothing"
        state.notes.append(
            f"rolled {body['env']} back from version {current['version']} to {to}: "
            f"the report breached the rollback rule {rule}"
        )


def exec_access(state: Overlay, call: Call) -> None:
    return None  # the entry is the record


def _deploy_context(state: StateReader, call: Call) -> dict[str, Any]:
    body = call.tx.body
    record = state.get_state(version_key("model", body["model"], body["version"]))
    if not isinstance(record, dict):
        return {"model": None, "approvals": [], "datasets": []}
    if call.version >= APPROVAL_VERSION and call.tx.type == MODEL_DEPLOY:
        _require_fresh_approval(state, call, record)  # named before any rule denies
    if call.version >= REPLICATION_VERSION and call.tx.type == MODEL_DEPLOY:
        _require_replicated(state, record)  # likewise
    view = version_view(record)
    view["revoked_ancestor"] = revoked_ancestor(state, body["model"], body["version"])
    view["metrics"] = record.get("metrics", {})
    datasets: list[dict[str, Any]] = []
    run = state.get_state(run_key(record["run"])) if record.get("run") else None
    if isinstance(run, dict):
        deps = run["statement"]["predicate"]["buildDefinition"].get("resolvedDependencies", [])
        datasets = dataset_inputs(state, deps)
    context = {
        "model": view,
        "approvals": _counting(state, call, record, body["env"]),
        "rejections": [a for a in record.get("rejections", []) if a["env"] == body["env"]],
        "datasets": datasets,
    }
    if call.version >= REPLICATION_VERSION:
        context["replication"] = _replication(state, record)
    return context


def _decision_context(state: StateReader, call: Call) -> dict[str, Any]:
    # What a deployment's rule sees, so that a rule for model.approve:<env> can refuse
    # what that environment's deployment rule would not count (a registrant's approval).
    # Contract-set version 1 gave their rules the common context only, and left an
    # unregistered version to the contract (after any rule).
    if call.version < 2:
        return {}
    body = call.tx.body
    _record(state, body["model"], body["version"])  # no_model, before any rule runs
    return _deploy_context(state, call)


def deployment_rules() -> dict[str, TypeRule]:
    return {
        MODEL_APPROVE: TypeRule(
            check_decision, exec_approve, _decision_context, names("model", "env")
        ),
        MODEL_REJECT: TypeRule(
            check_decision, exec_reject, _decision_context, names("model", "env")
        ),
        MODEL_DEPLOY: TypeRule(check_deploy, exec_deploy, _deploy_context, names("model", "env")),
        MODEL_ROLLBACK: TypeRule(check_rollback, exec_rollback, admit=names("model", "env")),
        MODEL_REVOKE: TypeRule(check_revoke, exec_revoke, admit=names("model")),
        MONITOR_REPORT: TypeRule(check_report, exec_report, admit=names("model", "env")),
        ACCESS_LOG: TypeRule(check_access, exec_access, admit=names("artifact.name")),
    }
