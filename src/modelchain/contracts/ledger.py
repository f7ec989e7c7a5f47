"""The ledger's own contracts: ``ledger.genesis`` and ``event.record``.

Genesis fixes the origin, the log key, the founding members with their roles
and keys, and the role each transaction type requires. ``event.record`` lets a
member log an application-defined event that has no dedicated type yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..core.identity import VerifierKey
from ..core.names import check_name
from ..core.policy import CheckpointPolicy
from ..core.tx import Transaction
from ..errors import MalformedError
from .attestations import attestation_rules
from .base import Call, ContractSet, Overlay, Rejected, StateReader, TypeRule, is_int
from .deployments import deployment_rules
from .governance import GOVERNANCE_KEY, governance_rules
from .inference import inference_rules
from .members import check_member, holds_role
from .policy import check_action_names, compile_rule, enforce, policy_key, policy_rules
from .registry import registry_rules

__all__ = [
    "BUILTIN_ROLES",
    "DEFAULT_PERMISSIONS",
    "EVENT",
    "GENESIS",
    "LEDGER_KEY",
    "checkpoint_policy",
    "default_contracts",
    "genesis_body",
    "member_key",
]

GENESIS = "ledger.genesis"
EVENT = "event.record"
LEDGER_KEY = "ledger"

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
# Auditors read; everyone else may record events. Data stewards own datasets,
# trainers record runs and register models.
DEFAULT_PERMISSIONS: dict[str, list[str]] = {
    EVENT: [r for r in BUILTIN_ROLES if r != "auditor"],
    "dataset.register": ["admin", "data-steward"],
    "dataset.ingest": ["admin", "data-steward"],
    "run.record": ["admin", "trainer"],
    "model.register": ["admin", "trainer"],
    "dataset.attest": ["validator"],
    "model.evaluate": ["evaluator"],
    "model.deploy": ["deployer"],
    "model.rollback": ["deployer"],
    "model.revoke": ["admin"],
    "monitor.report": ["monitor"],
    "inference.batch": ["admin", "deployer", "monitor"],
}

_EVENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")


def member_key(name: str) -> str:
    return f"member/{name}"


def _keyid_key(keyid: str) -> str:
    return f"keyid/{keyid}"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def check_genesis(body: Mapping[str, Any]) -> None:
    want = {"origin", "log_key", "members", "permissions"}
    _require(
        want <= set(body) <= want | {"quorum", "policies", "checkpoint_policy"},
        f"genesis body is {sorted(want)}, quorum, policies and checkpoint_policy",
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
        checkpoint_policy(body)
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
    for t, roles in perms.items():
        _require(
            isinstance(roles, list) and all(isinstance(r, str) for r in roles),
            f"permissions[{t!r}] must be a list of roles",
        )


def checkpoint_policy(record: Mapping[str, Any]) -> CheckpointPolicy:
    """The checkpoint policy of a genesis body (or of the ledger record it makes):
    its ``checkpoint_policy`` (tlog-policy text naming no log or the genesis log
    key) for that log key, or, absent, the log key alone."""
    log_key = VerifierKey.from_string(record["log_key"])
    text = record.get("checkpoint_policy")
    if text is None:
        return CheckpointPolicy.of_log(log_key)
    return CheckpointPolicy.parse(text).with_log(log_key)


def _admit_genesis(body: Mapping[str, Any]) -> None:
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
            state.put(_keyid_key(kid), m["name"])
        state.put(member_key(m["name"]), {**m, "status": "active", "since": call.index})
    state.put("members", [m["name"] for m in body["members"]])
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


def check_event(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"event", "data"}, "event.record body is {event, data}")
    _require(
        isinstance(body["event"], str) and bool(_EVENT.match(body["event"])),
        "event type must be 1-128 characters of letters, digits and ._:/-",
    )


def exec_event(state: Overlay, call: Call) -> None:
    # The event itself is the record; it changes no state.
    return None


def resolve_signer(
    state: StateReader, keyid: str, tx: Transaction | None = None
) -> tuple[str, VerifierKey] | None:
    """Member name and key for a DSSE key id; for genesis, the founding keys."""
    name = state.get_state(_keyid_key(keyid))
    if isinstance(name, str):
        # Revoked members and retired keys still resolve: a signature by one is
        # checked, logged and then rejected by ``authorize``, as evidence.
        member = state.get_state(member_key(name))
        if isinstance(member, dict):
            for k in (*member["keys"], *member.get("retired_keys", ())):
                vk = VerifierKey.from_string(k)
                if vk.key_id_hex == keyid:
                    return name, vk
        return None
    if tx is not None and tx.type == GENESIS and state.get_state(LEDGER_KEY) is None:
        try:
            check_genesis(tx.body)  # the founders' keys are only as good as the body
        except MalformedError:
            return None
        for m in tx.body["members"]:
            for k in m["keys"]:
                vk = VerifierKey.from_string(k)
                if vk.key_id_hex == keyid:
                    return m["name"], vk
    return None


def authorize(state: StateReader, call: Call) -> None:
    """Rules every type shares: the ledger exists, the actor signed, holds a role."""
    ledger = state.get_state(LEDGER_KEY)
    if call.tx.type == GENESIS:
        return
    if not isinstance(ledger, dict):
        raise Rejected("not_initialized", "the ledger has no genesis yet")
    if call.tx.actor not in call.signers:
        raise Rejected("actor_not_signer", f"{call.tx.actor} did not sign this transaction")
    for name, keyid in zip(call.signers, call.keyids, strict=True):
        signer = state.get_state(member_key(name))
        if not isinstance(signer, dict):
            raise Rejected("not_member", f"{name} is not a member")
        if signer.get("status") != "active":
            raise Rejected("member_revoked", f"{name} was revoked: {signer.get('reason', '')}")
        if not any(VerifierKey.from_string(k).key_id_hex == keyid for k in signer["keys"]):
            raise Rejected("key_retired", f"key {keyid} of {name} was retired")
    member = state.get_state(member_key(call.tx.actor))
    assert isinstance(member, dict)
    allowed = ledger["permissions"].get(call.tx.type)
    if allowed is not None and not holds_role(member["roles"], allowed):
        raise Rejected(
            "not_permitted",
            f"{call.tx.type} needs one of the roles {', '.join(allowed)}; "
            f"{call.tx.actor} has {', '.join(member['roles']) or 'none'}",
        )


def default_contracts() -> ContractSet:
    return ContractSet(
        {
            GENESIS: TypeRule(check_genesis, exec_genesis, admit=_admit_genesis),
            EVENT: TypeRule(check_event, exec_event),
            **registry_rules(),
            **governance_rules(),
            **policy_rules(),
            **attestation_rules(),
            **deployment_rules(),
            **inference_rules(),
        },
        resolve_signer,
        authorize,
        enforce,
    )


def genesis_body(
    origin: str,
    log_key: VerifierKey,
    members: list[dict[str, Any]],
    permissions: Mapping[str, list[str]] | None = None,
    quorum: int | None = None,
    policies: Mapping[str, Mapping[str, str]] | None = None,
    checkpoint_policy: CheckpointPolicy | str | None = None,
) -> dict[str, Any]:
    """A genesis body; ``members`` are {name, org, roles, keys} objects. The
    admin quorum defaults to two where there are two founding admins, else one.
    ``checkpoint_policy`` (which signatures a checkpoint needs) is stored as
    tlog-policy text naming ``log_key``; absent, the log key alone counts."""
    admins = sum(1 for m in members if "admin" in m.get("roles", ()))
    body: dict[str, Any] = {
        "origin": origin,
        "log_key": log_key.to_string(),
        "members": members,
        "permissions": dict(DEFAULT_PERMISSIONS if permissions is None else permissions),
        "quorum": min(2, max(admins, 1)) if quorum is None else quorum,
    }
    if policies:
        body["policies"] = {a: dict(p) for a, p in policies.items()}
    if checkpoint_policy is not None:
        if isinstance(checkpoint_policy, str):
            checkpoint_policy = CheckpointPolicy.parse(checkpoint_policy)
        body["checkpoint_policy"] = checkpoint_policy.with_log(log_key).to_text()
    check_genesis(body)
    return body
