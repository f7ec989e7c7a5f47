"""The genesis rules: what ``ledger.genesis`` fixes, and the defaults it starts from.

Genesis fixes the origin, the log key, the founding members with their roles
and keys, the role map (which roles may submit which transaction type), the
admin quorum, the first policies and the contract-set version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.identity import VerifierKey
from ..core.names import check_name
from ..core.policy import CheckpointPolicy
from ..errors import MalformedError
from . import types as t
from .base import Call, Overlay, Rejected, is_int
from .members import ANY_MEMBER, check_member
from .policy import check_action_names, compile_rule
from .state import (
    CONTRACT_SET_KEY,
    GOVERNANCE_KEY,
    LEDGER_KEY,
    MEMBERS_KEY,
    keyid_key,
    member_key,
    policy_key,
)
from .versions import (
    ARTIFACT_VERSION,
    CURRENT_VERSION,
    FL_VERSION,
    PERSONAL_VERSION,
    REPLICATION_VERSION,
)

__all__ = [
    "BUILTIN_ROLES",
    "DEFAULT_PERMISSIONS",
    "admit_genesis",
    "check_genesis",
    "checkpoint_policy",
    "default_permissions",
    "exec_genesis",
    "genesis_body",
]

BUILTIN_ROLES = (
    "admin",
    "data-steward",
    "validator",
    "trainer",
    "evaluator",
    "approver",
    "deployer",
    "monitor",
    "auditor",
    "fl-coordinator",
    "fl-participant",
)
# Every type but the governance ones (an admin quorum authorizes those), so that
# a type missing from the map can be denied. Auditors read; everyone else may
# record events. Data stewards own datasets, trainers record runs and register
# models. Approvals need a named approval role, which their contract checks.
DEFAULT_PERMISSIONS: dict[str, list[str]] = {
    t.EVENT: [r for r in BUILTIN_ROLES if r != "auditor"],
    t.DATASET_REGISTER: ["admin", "data-steward"],
    t.DATASET_INGEST: ["admin", "data-steward"],
    t.RUN_RECORD: ["admin", "trainer"],
    t.MODEL_REGISTER: ["admin", "trainer"],
    t.DATASET_ATTEST: ["validator"],
    t.MODEL_EVALUATE: ["evaluator"],
    t.MODEL_APPROVE: [ANY_MEMBER],
    t.MODEL_REJECT: [ANY_MEMBER],
    t.MODEL_DEPLOY: ["deployer"],
    t.MODEL_ROLLBACK: ["deployer"],
    t.MODEL_REVOKE: ["admin"],
    t.MONITOR_REPORT: ["monitor"],
    t.ACCESS_LOG: [ANY_MEMBER],
    t.INFERENCE_BATCH: ["admin", "deployer", "monitor"],
    # federated learning (contract-set version 6 on): a member registers its own
    # Flower node; a coordinator runs tasks and may record what it received for a
    # participant; evaluators may record credit scored on a held-out dataset.
    t.FL_PARTICIPANT_REGISTER: ["fl-participant"],
    t.FL_TASK_CREATE: ["fl-coordinator"],
    t.FL_UPDATE_COMMIT: ["fl-participant", "fl-coordinator"],
    t.FL_ROUND_AGGREGATE: ["fl-coordinator"],
    t.FL_CREDIT_RECORD: ["fl-coordinator", "evaluator"],
    t.FL_TASK_FINALIZE: ["fl-coordinator"],
    # encrypted artifacts (contract-set version 7 on): whoever registers a version
    # may record how it is stored; data stewards and admins grant and revoke access
    # to data keys and erase versions (the default policy wants both roles among
    # the signers); any member may ask for a key: the contract refuses, and the
    # log keeps the refusal, unless the member holds a grant.
    t.ARTIFACT_STORE: ["admin", "data-steward", "trainer"],
    t.ARTIFACT_GRANT: ["admin", "data-steward"],
    t.ARTIFACT_REVOKE: ["admin", "data-steward"],
    t.ARTIFACT_KEY_FETCH: [ANY_MEMBER],
    t.ARTIFACT_ERASE: ["admin", "data-steward"],
    # personal fields (contract-set version 8 on): erasing an entry's committed
    # fields is for data stewards and admins (the default policy wants both).
    t.RECORD_ERASE: ["admin", "data-steward"],
    # replication (contract-set version 8 on): any member may record that its own
    # organisation holds a verified copy of a version (it counts for that one only).
    t.ARTIFACT_REPLICA: [ANY_MEMBER],
}


def default_permissions(version: int = CURRENT_VERSION) -> dict[str, list[str]]:
    """The role map a genesis starts from. Version 1 had no ``ANY_MEMBER``: the
    types it leaves open are absent from its map instead. The ``fl.*`` types are
    listed from version 6 on: a ledger started on an older version that
    activates 6 denies them until its quorum grants them (``permissions.set``);
    likewise the ``artifact.*`` types of version 7 from 7 on, and
    ``artifact.replica`` and ``record.erase`` from 8 on."""
    found = {k: list(v) for k, v in DEFAULT_PERMISSIONS.items()}
    if version < FL_VERSION:
        found = {k: v for k, v in found.items() if k not in t.FL_TYPES}
    if version < ARTIFACT_VERSION:
        found = {k: v for k, v in found.items() if k not in t.ARTIFACT_TYPES}
    if version < PERSONAL_VERSION:
        found.pop(t.RECORD_ERASE, None)
    if version < REPLICATION_VERSION:
        found = {k: v for k, v in found.items() if k not in t.REPLICATION_TYPES}
    if version >= 2:
        return found
    return {k: v for k, v in found.items() if v != [ANY_MEMBER]}


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def check_genesis(body: Mapping[str, Any]) -> None:
    want = {"origin", "log_key", "members", "permissions"}
    _require(
        want <= set(body) <= want | {"quorum", "policies", "contracts", "checkpoint_policy"},
        f"genesis body is {sorted(want)}, quorum, policies, contracts and checkpoint_policy",
    )
    policies = body.get("policies", {})
    _require(isinstance(policies, dict), "policies map an action to {rule, description}")
    for action, p in policies.items():
        _require(
            isinstance(action, str) and isinstance(p, dict) and set(p) == {"rule", "description"},
            f"policy {action!r} is {{rule, description}}",
        )
        compile_rule(p["rule"])
    _require(isinstance(body["origin"], str) and bool(body["origin"]), "genesis needs an origin")
    _require(isinstance(body["log_key"], str), "genesis log_key is a verifier-key string")
    log_key = VerifierKey.from_string(body["log_key"])
    _require(log_key.name == body["origin"], "the log key's name must equal the origin")
    if "checkpoint_policy" in body:
        _require(
            isinstance(body["checkpoint_policy"], str), "checkpoint_policy is tlog-policy text"
        )
        CheckpointPolicy.parse(body["checkpoint_policy"]).with_log(log_key).check_cluster()
    members = body["members"]
    _require(isinstance(members, list) and len(members) >= 1, "genesis needs founding members")
    for m in members:
        check_member(m)
    names = [m["name"] for m in members]
    _require(len(set(names)) == len(names), "member names must be unique")
    admins = sum(1 for m in members if "admin" in m["roles"])
    q = body.get("quorum", 1)
    _require(
        is_int(q) and 1 <= q <= max(admins, 1),
        f"quorum must be 1..{admins} (the founding admins)",
    )
    perms = body["permissions"]
    _require(isinstance(perms, dict), "permissions map a transaction type to roles")
    for type_, roles in perms.items():
        _require(
            isinstance(roles, list) and all(isinstance(r, str) for r in roles),
            f"permissions[{type_!r}] must be a list of roles",
        )
    if "contracts" in body:
        v = body["contracts"]
        _require(is_int(v) and v >= 1, "contracts is the contract-set version, an integer >= 1")


def checkpoint_policy(record: Mapping[str, Any]) -> CheckpointPolicy:
    """The checkpoint policy of a genesis body (or of the ledger record it makes):
    its ``checkpoint_policy`` (tlog-policy text naming no log or the genesis log
    key) for that log key, or, absent, the log key alone."""
    log_key = VerifierKey.from_string(record["log_key"])
    text = record.get("checkpoint_policy")
    if text is None:
        return CheckpointPolicy.of_log(log_key)
    policy = CheckpointPolicy.parse(text)
    # A policy set since genesis may no longer name the first node's key.
    return policy if policy.logs else policy.with_log(log_key)


def admit_genesis(body: Mapping[str, Any]) -> None:
    for m in body["members"]:
        check_name(m["name"], "member name")
    for action in body.get("policies", {}):
        check_action_names(action)


def exec_genesis(state: Overlay, call: Call) -> None:
    body = call.tx.body
    if call.index != 0 or state.get_state(LEDGER_KEY) is not None:
        raise Rejected("ledger_exists", "the ledger already has a genesis")
    if body["origin"] != call.tx.ledger:
        raise Rejected("origin_mismatch", "genesis origin differs from the transaction's ledger")
    founders = {m["name"]: m for m in body["members"]}
    actor = founders.get(call.tx.actor)
    if actor is None or "admin" not in actor["roles"]:
        raise Rejected("not_permitted", "genesis must be submitted by a founding admin")
    seen: set[str] = set()
    for m in body["members"]:
        for k in m["keys"]:
            kid = VerifierKey.from_string(k).key_id_hex
            if kid in seen:
                raise Rejected("key_id_collision", f"two member keys share key id {kid}")
            seen.add(kid)
            state.put(keyid_key(kid), m["name"])
        state.put(member_key(m["name"]), {**m, "status": "active", "since": call.index})
    state.put(MEMBERS_KEY, [m["name"] for m in body["members"]])
    for action, p in body.get("policies", {}).items():
        state.put(
            policy_key(action),
            {
                "action": action,
                "rule": p["rule"],
                "description": p["description"],
                "version": 1,
                "set_at": call.index,
                "by": [call.tx.actor],
            },
        )
    state.put(GOVERNANCE_KEY, {"quorum": body.get("quorum", 1)})
    if "contracts" in body:  # absent: a ledger made before versions, on version 1
        step = {"version": body["contracts"], "from": 0, "set_at": 0, "by": [call.tx.actor]}
        state.put(CONTRACT_SET_KEY, {"versions": [step]})
    state.put(
        LEDGER_KEY,
        {
            "origin": body["origin"],
            "log_key": body["log_key"],
            "permissions": body["permissions"],
            "genesis_time": call.tx.time,
            **{k: body[k] for k in ("checkpoint_policy",) if k in body},
        },
    )


def genesis_body(
    origin: str,
    log_key: VerifierKey,
    members: list[dict[str, Any]],
    permissions: Mapping[str, list[str]] | None = None,
    quorum: int | None = None,
    policies: Mapping[str, Mapping[str, str]] | None = None,
    contracts: int = CURRENT_VERSION,
    checkpoint_policy: CheckpointPolicy | str | None = None,
) -> dict[str, Any]:
    """A genesis body; ``members`` are {name, org, roles, keys} objects. The
    admin quorum defaults to two where there are two founding admins, else one;
    the contract-set version to the newest this modelchain knows.
    ``checkpoint_policy`` (which signatures a checkpoint needs) is stored as
    tlog-policy text naming ``log_key``; absent, the log key alone counts."""
    admins = sum(1 for m in members if "admin" in m.get("roles", ()))
    body: dict[str, Any] = {
        "origin": origin,
        "log_key": log_key.to_string(),
        "members": members,
        "permissions": dict(default_permissions(contracts) if permissions is None else permissions),
        "quorum": min(2, max(admins, 1)) if quorum is None else quorum,
        "contracts": contracts,
    }
    if policies:
        body["policies"] = {a: dict(p) for a, p in policies.items()}
    if checkpoint_policy is not None:
        if isinstance(checkpoint_policy, str):
            checkpoint_policy = CheckpointPolicy.parse(checkpoint_policy)
        body["checkpoint_policy"] = checkpoint_policy.with_log(log_key).to_text()
    check_genesis(body)
    return body
