"""What a member is, checked the same way wherever members are written.

Genesis founds members and ``member.add`` adds them; both use ``check_member``.
``holds_role`` is the one place that says whether a member's roles grant a role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..core.identity import VerifierKey
from ..errors import MalformedError
from .versions import CURRENT_VERSION

__all__ = ["ANY_MEMBER", "check_member", "holds_role"]

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,128}\Z")
_ROLE = re.compile(r"[a-z][a-z0-9:-]{0,63}\Z")


# Roles that come with a name (approver:risk): holding a named one is holding the role.
_NAMED_ROLES = frozenset({"approver"})
# In a role map's list: every member (no role is spelled so).
ANY_MEMBER = "*"


def holds_role(roles: Iterable[str], wanted: Iterable[str], version: int = CURRENT_VERSION) -> bool:
    """True if ``roles`` (a member's) grant any of ``wanted`` (a permission's list):
    the role itself, for a role that comes with a name any ``role:<name>``, and
    any roles at all where the list holds ``ANY_MEMBER``. Under contract-set
    version 1 (see contracts.versions) only the role itself."""
    held = set(roles)
    if version < 2:
        return not held.isdisjoint(wanted)
    wanted = set(wanted)
    if ANY_MEMBER in wanted:
        return True
    held |= {r.partition(":")[0] for r in held if r.partition(":")[0] in _NAMED_ROLES}
    return not held.isdisjoint(wanted)


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def check_member(m: object) -> None:
    _require(isinstance(m, dict), "each member is an object")
    assert isinstance(m, dict)
    _require(set(m) == {"name", "org", "roles", "keys"}, "member is {name, org, roles, keys}")
    _require(isinstance(m["name"], str) and bool(_NAME.match(m["name"])), "bad member name")
    _require(isinstance(m["org"], str) and len(m["org"]) <= 200, "bad member org")
    roles = m["roles"]
    _require(
        isinstance(roles, list) and all(isinstance(r, str) and _ROLE.match(r) for r in roles),
        f"member {m['name']}: roles must be a list of role names",
    )
    keys = m["keys"]
    _require(isinstance(keys, list) and len(keys) >= 1, f"member {m['name']}: needs a key")
    for k in keys:
        _require(isinstance(k, str), "keys are verifier-key strings")
        vk = VerifierKey.from_string(k)
        _require(vk.name == m["name"], f"key {vk.name!r} is not named after member {m['name']!r}")
        _require(vk.type_byte == 0x01, "member keys are Ed25519 (type 0x01)")
