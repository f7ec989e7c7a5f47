"""Governance contracts: members, their roles and keys, and the admin quorum.

Changing who may sign is itself signed: ``member.*`` and ``governance.quorum``
need signatures from at least ``quorum`` distinct active admins on one envelope.
A member with several keys counts once, however many of its keys signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.identity import VerifierKey
from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int, names
from .members import check_member

__all__ = [
    "GOVERNANCE_KEY",
    "MEMBER_ADD",
    "MEMBER_REVOKE",
    "MEMBER_ROTATE",
    "MEMBER_UPDATE",
    "QUORUM_SET",
    "admins_signed",
    "governance_rules",
    "quorum",
    "require_quorum",
]

MEMBER_ADD = "member.add"
MEMBER_UPDATE = "member.update"
MEMBER_REVOKE = "member.revoke"
MEMBER_ROTATE = "member.rotate"
QUORUM_SET = "governance.quorum"
GOVERNANCE_KEY = "governance"


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
        m = state.get_state(f"member/{name}")
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
    m = state.get_state(f"member/{name}")
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
    if state.get_state(f"member/{m['name']}") is not None:
        raise Rejected("member_exists", f"{m['name']} is already a member")
    for k in m["keys"]:
        kid = VerifierKey.from_string(k).key_id_hex
        if state.get_state(f"keyid/{kid}") is not None:
            raise Rejected("key_id_collision", f"key id {kid} is already in use")
        state.put(f"keyid/{kid}", m["name"])
    state.put(f"member/{m['name']}", {**m, "status": "active", "since": call.index})
    state.put("members", [*_member_names(state), m["name"]])


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
    state.put(f"member/{body['name']}", updated)
    _keep_an_admin(state, body["name"], updated)


def _keep_an_admin(state: StateReader, changed: str, after: dict[str, Any]) -> None:
    """A change must leave at least ``quorum`` active admins, or nobody could govern."""
    # The overlay holds the change; count admins the change leaves.
    admins = 0
    for name in _member_names(state):
        m = after if name == changed else state.get_state(f"member/{name}")
        if isinstance(m, dict) and m.get("status") == "active" and "admin" in m["roles"]:
            admins += 1
    if admins < quorum(state):
        raise Rejected(
            "quorum_unreachable",
            f"that would leave {admins} admins for a quorum of {quorum(state)}",
        )


def _member_names(state: StateReader) -> list[str]:
    names = state.get_state("members")
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
    state.put(f"member/{body['name']}", revoked)
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
        if state.get_state(f"keyid/{kid}") is not None:
            raise Rejected("key_id_collision", f"key id {kid} is already in use")
        state.put(f"keyid/{kid}", body["name"])
        keys.append(k)
    retired = [*m.get("retired_keys", []), *body["remove"]]
    state.put(f"member/{body['name']}", {**m, "keys": keys, "retired_keys": retired})


def check_quorum_set(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"quorum"}, "governance.quorum body is {quorum}")
    _require(is_int(body["quorum"]) and 1 <= body["quorum"] <= 64, "quorum is an integer 1..64")


def exec_quorum_set(state: Overlay, call: Call) -> None:
    require_quorum(state, call)
    admins = sum(
        1
        for n in _member_names(state)
        if isinstance(m := state.get_state(f"member/{n}"), dict)
        and m.get("status") == "active"
        and "admin" in m["roles"]
    )
    if call.tx.body["quorum"] > admins:
        raise Rejected("quorum_unreachable", f"only {admins} active admins")
    state.put(GOVERNANCE_KEY, {"quorum": call.tx.body["quorum"]})


def governance_rules() -> dict[str, TypeRule]:
    return {
        MEMBER_ADD: TypeRule(check_member_add, exec_member_add, admit=names("member.name")),
        MEMBER_UPDATE: TypeRule(check_member_update, exec_member_update, admit=names("name")),
        MEMBER_REVOKE: TypeRule(check_member_revoke, exec_member_revoke, admit=names("name")),
        MEMBER_ROTATE: TypeRule(check_member_rotate, exec_member_rotate, admit=names("name")),
        QUORUM_SET: TypeRule(check_quorum_set, exec_quorum_set),
    }
