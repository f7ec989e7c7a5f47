"""Governance contracts: members, their roles and keys, the admin quorum, the
role map and the contract-set version.

Changing who may sign is itself signed: ``member.*``, ``governance.quorum``,
``permissions.set``, ``contracts.activate``, ``checkpoint.policy.set``,
``governance.validity``, ``governance.approval-ttl`` and ``governance.replication``
need signatures from at least ``quorum`` distinct active admins on one envelope. A
member with several keys counts once, however many of its keys signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.identity import VerifierKey
from ..core.policy import CheckpointPolicy
from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int, names
from .members import check_member
from .state import (
    APPROVAL_TTL_KEY,
    CONTRACT_SET_KEY,
    GOVERNANCE_KEY,
    LEDGER_KEY,
    MEMBERS_KEY,
    REPLICATION_KEY,
    VALIDITY_KEY,
    keyid_key,
    member_key,
)
from .types import (
    APPROVAL_TTL_SET,
    CHECKPOINT_POLICY_SET,
    CONTRACTS_ACTIVATE,
    GOVERNANCE_TYPES,
    MEMBER_ADD,
    MEMBER_REVOKE,
    MEMBER_ROTATE,
    MEMBER_UPDATE,
    PERMISSIONS_SET,
    QUORUM_SET,
    REPLICATION_SET,
    VALIDITY_SET,
)
from .versions import (
    APPROVAL_VERSION,
    REPLICATION_VERSION,
    WINDOW_VERSION,
    active_version,
    schedule,
)

__all__ = [
    "DEFAULT_APPROVAL_TTL_MS",
    "DEFAULT_MAX_VALIDITY_MS",
    "MAX_APPROVAL_TTL_MS",
    "MAX_REPLICATION",
    "MAX_VALIDITY_LIMIT_MS",
    "admins_signed",
    "approval_ttl_ms",
    "check_role_map_entry",
    "governance_rules",
    "max_validity_ms",
    "quorum",
    "replication_copies",
    "require_quorum",
]


# The longest validity window a transaction may carry until governance.validity
# sets one: the clock skew every transaction without a window gets.
DEFAULT_MAX_VALIDITY_MS = 5 * 60 * 1000
MAX_VALIDITY_LIMIT_MS = 366 * 24 * 60 * 60 * 1000  # the most governance may allow
# How long an approval counts (contract-set version 5 on) until
# governance.approval-ttl sets another period, and the longest it may set.
DEFAULT_APPROVAL_TTL_MS = 30 * 24 * 60 * 60 * 1000
MAX_APPROVAL_TTL_MS = 3660 * 24 * 60 * 60 * 1000
MAX_REPLICATION = 64  # organisations governance.replication may ask to hold a copy


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def quorum(state: StateReader) -> int:
    gov = state.get_state(GOVERNANCE_KEY)
    return int(gov["quorum"]) if isinstance(gov, dict) else 1


def admins_signed(state: StateReader, call: Call) -> list[str]:
    """Distinct active admins among the signers."""
    found = []
    for name in dict.fromkeys(call.signers):
        m = state.get_state(member_key(name))
        if isinstance(m, dict) and m.get("status") == "active" and "admin" in m["roles"]:
            found.append(name)
    return found


def require_quorum(state: StateReader, call: Call) -> None:
    need = quorum(state)
    have = admins_signed(state, call)
    if len(have) < need:
        raise Rejected(
            "quorum_not_met",
            f"{call.tx.type} needs {need} distinct admins' signatures; "
            f"got {len(have)} ({', '.join(have) or 'none'})",
        )


def _member(state: StateReader, name: str) -> dict[str, Any]:
    m = state.get_state(member_key(name))
    if not isinstance(m, dict):
        raise Rejected("no_member", f"{name} is not a member")
    return m


def _check_roles(roles: object) -> None:
    _require(
        isinstance(roles, list) and all(isinstance(r, str) and r for r in roles),
        "roles must be a list of role names",
    )


def check_member_add(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"member"}, "member.add body is {member}")
    check_member(body["member"])


def exec_member_add(state: Overlay, call: Call) -> None:
    require_quorum(state, call)
    m = call.tx.body["member"]
    if state.get_state(member_key(m["name"])) is not None:
        raise Rejected("member_exists", f"{m['name']} is already a member")
    for k in m["keys"]:
        kid = VerifierKey.from_string(k).key_id_hex
        if state.get_state(keyid_key(kid)) is not None:
            raise Rejected("key_id_collision", f"key id {kid} is already in use")
        state.put(keyid_key(kid), m["name"])
    state.put(member_key(m["name"]), {**m, "status": "active", "since": call.index})
    state.put(MEMBERS_KEY, [*_member_names(state), m["name"]])


def check_member_update(body: Mapping[str, Any]) -> None:
    _require(
        set(body) <= {"name", "roles", "org"} and "name" in body and len(body) > 1,
        "member.update body is {name, roles?, org?}",
    )
    _require(isinstance(body["name"], str), "name is a member name")
    if "roles" in body:
        _check_roles(body["roles"])
    if "org" in body:
        _require(isinstance(body["org"], str) and len(body["org"]) <= 200, "org")


def exec_member_update(state: Overlay, call: Call) -> None:
    require_quorum(state, call)
    body = call.tx.body
    m = _member(state, body["name"])
    if m["status"] != "active":
        raise Rejected("member_revoked", f"{body['name']} is revoked")
    changes: dict[str, Any] = {k: body[k] for k in ("roles", "org") if k in body}
    updated = {**m, **changes}
    state.put(member_key(body["name"]), updated)
    _keep_an_admin(state, body["name"], updated)


def _keep_an_admin(state: StateReader, changed: str, after: dict[str, Any]) -> None:
    """A change must leave at least ``quorum`` active admins, or nobody could govern."""
    # The overlay holds the change; count admins the change leaves.
    admins = 0
    for name in _member_names(state):
        m = after if name == changed else state.get_state(member_key(name))
        if isinstance(m, dict) and m.get("status") == "active" and "admin" in m["roles"]:
            admins += 1
    if admins < quorum(state):
        raise Rejected(
            "quorum_unreachable",
            f"that would leave {admins} admins for a quorum of {quorum(state)}",
        )


def _member_names(state: StateReader) -> list[str]:
    names = state.get_state(MEMBERS_KEY)
    return list(names) if isinstance(names, list) else []


def check_member_revoke(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"name", "reason"}, "member.revoke body is {name, reason}")
    _require(isinstance(body["name"], str) and isinstance(body["reason"], str), "strings")


def exec_member_revoke(state: Overlay, call: Call) -> None:
    require_quorum(state, call)
    body = call.tx.body
    m = _member(state, body["name"])
    if m["status"] != "active":
        raise Rejected("member_revoked", f"{body['name']} is already revoked")
    revoked = {**m, "status": "revoked", "revoked_at": call.index, "reason": body["reason"]}
    state.put(member_key(body["name"]), revoked)
    _keep_an_admin(state, body["name"], revoked)


def check_member_rotate(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"name", "add", "remove"}, "member.rotate body is {name, add, remove}")
    _require(isinstance(body["name"], str), "name is a member name")
    for k in ("add", "remove"):
        _require(
            isinstance(body[k], list) and all(isinstance(x, str) for x in body[k]),
            f"{k} is a list of verifier keys",
        )
    for k in body["add"]:
        vk = VerifierKey.from_string(k)
        _require(
            vk.name == body["name"] and vk.type_byte == 0x01,
            "new keys are Ed25519 keys named after the member",
        )
    _require(bool(body["add"]) or bool(body["remove"]), "rotate adds or removes a key")


def exec_member_rotate(state: Overlay, call: Call) -> None:
    body = call.tx.body
    m = _member(state, body["name"])
    if m["status"] != "active":
        raise Rejected("member_revoked", f"{body['name']} is revoked")
    if call.tx.actor != body["name"]:
        require_quorum(state, call)  # others may rotate a member's keys only by quorum
    keys = [k for k in m["keys"] if k not in body["remove"]]
    if len(keys) + len(body["add"]) == 0:
        raise Rejected("no_keys_left", f"{body['name']} would have no key")
    if set(body["remove"]) - set(m["keys"]):
        raise Rejected("unknown_key", "a key to remove is not one of the member's")
    for k in body["add"]:
        kid = VerifierKey.from_string(k).key_id_hex
        if state.get_state(keyid_key(kid)) is not None:
            raise Rejected("key_id_collision", f"key id {kid} is already in use")
        state.put(keyid_key(kid), body["name"])
        keys.append(k)
    retired = [*m.get("retired_keys", []), *body["remove"]]
    state.put(member_key(body["name"]), {**m, "keys": keys, "retired_keys": retired})


def check_quorum_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"quorum"}, "governance.quorum body is {quorum}")
    _require(is_int(body["quorum"]) and 1 <= body["quorum"] <= 64, "quorum is an integer 1..64")


def exec_quorum_set(state: Overlay, call: Call) -> None:
    require_quorum(state, call)
    admins = sum(
        1
        for n in _member_names(state)
        if isinstance(m := state.get_state(member_key(n)), dict)
        and m.get("status") == "active"
        and "admin" in m["roles"]
    )
    if call.tx.body["quorum"] > admins:
        raise Rejected("quorum_unreachable", f"only {admins} active admins")
    state.put(GOVERNANCE_KEY, {"quorum": call.tx.body["quorum"]})


def check_role_map_entry(type_: object, roles: object) -> None:
    """One entry of the role map: a transaction type and the roles that may submit it."""
    _require(
        isinstance(type_, str) and 0 < len(type_) <= 128 and " " not in type_,
        "a role map key is a transaction type",
    )
    _require(
        isinstance(roles, list) and all(isinstance(r, str) for r in roles),
        f"permissions[{type_!r}] must be a list of roles",
    )


def check_permissions_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"type", "roles"}, "permissions.set body is {type, roles}")
    check_role_map_entry(body["type"], body["roles"])


def exec_permissions_set(state: Overlay, call: Call) -> None:
    """Name the roles that may submit a type from the next entry on ([] denies it)."""
    require_quorum(state, call)
    type_, roles = call.tx.body["type"], call.tx.body["roles"]
    # governance.validity came with version 4, governance.approval-ttl with 5,
    # governance.replication with 8: before them, a map entry for that name was an
    # entry like any other, as it was when logged.
    since = {
        VALIDITY_SET: WINDOW_VERSION,
        APPROVAL_TTL_SET: APPROVAL_VERSION,
        REPLICATION_SET: REPLICATION_VERSION,
    }.get(type_, 1)
    if type_ in GOVERNANCE_TYPES and call.version >= since:
        raise Rejected(
            "governance_type",
            f"{type_} is authorized by a quorum of admins, not by the role map",
        )
    ledger = state.get_state(LEDGER_KEY)
    assert isinstance(ledger, dict)  # authorize found it
    permissions = {**ledger["permissions"], type_: list(roles)}
    state.put(LEDGER_KEY, {**ledger, "permissions": permissions})


def check_contracts_activate(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"version", "at"}, "contracts.activate body is {version, at}")
    _require(
        is_int(body["version"]) and 1 <= body["version"] <= 2**31,
        "version is the contract-set version, an integer >= 1",
    )
    _require(is_int(body["at"]) and 0 <= body["at"] < 2**63, "at is a log index")


def exec_contracts_activate(state: Overlay, call: Call) -> None:
    """Run the entries from index ``at`` on under contract-set ``version``.

    Whether this node knows that version does not matter here (every node must
    decide alike); a node that does not know it refuses entries from ``at`` on.
    An activation that has not taken effect yet is replaced by a later one: one
    naming the active version withdraws it."""
    require_quorum(state, call)
    version, at = call.tx.body["version"], call.tx.body["at"]
    active = active_version(state, call.index)
    if at <= call.index:
        raise Rejected(
            "activation_not_future",
            f"a contract-set version is activated at a later index than this entry's "
            f"({call.index}), not at {at}",
        )
    if version < active:
        raise Rejected(
            "version_downgrade",
            f"contract-set version {active} is active; {version} would go back",
        )
    steps = [s for s in schedule(state) if s["from"] <= call.index]  # pending ones go
    if version != active:
        by = list(dict.fromkeys(call.signers))
        steps.append({"version": version, "from": at, "set_at": call.index, "by": by})
    state.put(CONTRACT_SET_KEY, {"versions": steps})


def check_checkpoint_policy_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"policy"}, "checkpoint.policy.set body is {policy}")
    _require(isinstance(body["policy"], str), "policy is tlog-policy text")


def exec_checkpoint_policy_set(state: Overlay, call: Call) -> None:
    """Replace the checkpoint policy from the next checkpoint on: which logs
    sign (a cluster's nodes), which cosignatures a checkpoint needs."""
    require_quorum(state, call)
    ledger = state.get_state(LEDGER_KEY)
    assert isinstance(ledger, dict)  # authorize found it
    try:
        policy = CheckpointPolicy.parse(call.tx.body["policy"])
        policy.check_cluster()
    except MalformedError as exc:
        raise Rejected("bad_policy", exc.message) from exc
    if not any(log.key.name == ledger["origin"] for log in policy.logs):
        raise Rejected(
            "bad_policy", f"the policy names no log key of {ledger['origin']!r} (a 'log' line)"
        )
    state.put(LEDGER_KEY, {**ledger, "checkpoint_policy": policy.to_text()})


def max_validity_ms(state: StateReader) -> int:
    """The longest validity window admission accepts: from the earlier of a
    transaction's ``time`` and ``not_before`` to its ``expires``."""
    found = state.get_state(VALIDITY_KEY)
    return int(found["max_ms"]) if isinstance(found, dict) else DEFAULT_MAX_VALIDITY_MS


def check_validity_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"max_ms"}, "governance.validity body is {max_ms}")
    _require(
        is_int(body["max_ms"]) and 1 <= body["max_ms"] <= MAX_VALIDITY_LIMIT_MS,
        f"max_ms is the longest validity window in milliseconds, 1..{MAX_VALIDITY_LIMIT_MS}",
    )


def exec_validity_set(state: Overlay, call: Call) -> None:
    """Set the longest validity window a transaction may carry from the next
    entry on (co-signing across organisations that takes days)."""
    require_quorum(state, call)
    by = list(dict.fromkeys(call.signers))
    state.put(VALIDITY_KEY, {"max_ms": call.tx.body["max_ms"], "set_at": call.index, "by": by})


def approval_ttl_ms(state: StateReader) -> int:
    """How long an approval counts, in milliseconds of the deploying entry's
    time after the approval's (contract-set version 5 on)."""
    found = state.get_state(APPROVAL_TTL_KEY)
    return int(found["ttl_ms"]) if isinstance(found, dict) else DEFAULT_APPROVAL_TTL_MS


def check_approval_ttl_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"ttl_ms"}, "governance.approval-ttl body is {ttl_ms}")
    _require(
        is_int(body["ttl_ms"]) and 1 <= body["ttl_ms"] <= MAX_APPROVAL_TTL_MS,
        f"ttl_ms is how long an approval counts, in milliseconds, 1..{MAX_APPROVAL_TTL_MS}",
    )


def exec_approval_ttl_set(state: Overlay, call: Call) -> None:
    """Set how long an approval counts from the next entry on; it applies to
    approvals already recorded too (their age is read when a version deploys)."""
    require_quorum(state, call)
    by = list(dict.fromkeys(call.signers))
    state.put(APPROVAL_TTL_KEY, {"ttl_ms": call.tx.body["ttl_ms"], "set_at": call.index, "by": by})


def replication_copies(state: StateReader) -> int:
    """How many organisations must hold a verified copy of a model version before
    it is deployed (contract-set version 8 on); 0 until governance sets it."""
    found = state.get_state(REPLICATION_KEY)
    return int(found["copies"]) if isinstance(found, dict) else 0


def check_replication_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"copies"}, "governance.replication body is {copies}")
    _require(
        is_int(body["copies"]) and 0 <= body["copies"] <= MAX_REPLICATION,
        f"copies is how many organisations must hold a verified copy, 0..{MAX_REPLICATION} "
        "(0: no requirement)",
    )


def exec_replication_set(state: Overlay, call: Call) -> None:
    """Set the replication factor from the next entry on; it applies to versions
    registered already (their copies are counted when one is deployed)."""
    require_quorum(state, call)
    by = list(dict.fromkeys(call.signers))
    state.put(REPLICATION_KEY, {"copies": call.tx.body["copies"], "set_at": call.index, "by": by})


def governance_rules() -> dict[str, TypeRule]:
    return {
        MEMBER_ADD: TypeRule(check_member_add, exec_member_add, admit=names("member.name")),
        MEMBER_UPDATE: TypeRule(check_member_update, exec_member_update, admit=names("name")),
        MEMBER_REVOKE: TypeRule(check_member_revoke, exec_member_revoke, admit=names("name")),
        MEMBER_ROTATE: TypeRule(check_member_rotate, exec_member_rotate, admit=names("name")),
        QUORUM_SET: TypeRule(check_quorum_set, exec_quorum_set),
        PERMISSIONS_SET: TypeRule(check_permissions_set, exec_permissions_set),
        CONTRACTS_ACTIVATE: TypeRule(check_contracts_activate, exec_contracts_activate),
        CHECKPOINT_POLICY_SET: TypeRule(
            check_checkpoint_policy_set, exec_checkpoint_policy_set, since=3
        ),
        VALIDITY_SET: TypeRule(check_validity_set, exec_validity_set, since=WINDOW_VERSION),
        APPROVAL_TTL_SET: TypeRule(
            check_approval_ttl_set, exec_approval_ttl_set, since=APPROVAL_VERSION
        ),
        REPLICATION_SET: TypeRule(
            check_replication_set, exec_replication_set, since=REPLICATION_VERSION
        ),
    }
