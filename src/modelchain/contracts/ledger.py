"""The ledger's own contracts and the rules every type shares.

``event.record`` lets a member log an application-defined event that has no
dedicated type yet. ``authorize`` holds every type to the signers and the role
map; ``default_contracts`` is the contract set every node runs. Genesis is in
``contracts.genesis``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from ..core.identity import VerifierKey
from ..core.tx import Transaction
from ..errors import MalformedError
from .access import access_rules
from .attestations import attestation_rules
from .base import Call, ContractSet, Overlay, Rejected, StateReader, TypeRule
from .deployments import deployment_rules
from .fl import fl_rules
from .genesis import admit_genesis, check_genesis, exec_genesis
from .governance import governance_rules
from .inference import inference_rules
from .members import holds_role
from .personal import personal_rules, require_committed, shown, with_commitments
from .policy import enforce, policy_rules
from .registry import registry_rules
from .state import LEDGER_KEY, keyid_key, member_key
from .types import EVENT, GENESIS, GOVERNANCE_TYPES, PERMISSIONS_SET, VERSION_1_TYPES

__all__ = ["authorize", "default_contracts", "resolve_signer"]

_EVENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


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
    name = state.get_state(keyid_key(keyid))
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


def _open_without_roles(type_: str, version: int) -> bool:
    """May every member submit a type the role map does not list? Governance
    types, which their contract authorizes (an admin quorum); under version 1
    also the types version 1 knew, as they always could."""
    return type_ in GOVERNANCE_TYPES or (version < 2 and type_ in VERSION_1_TYPES)


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
            raise Rejected(
                "member_revoked", f"{name} was revoked: {shown(signer.get('reason', ''))}"
            )
        if not any(VerifierKey.from_string(k).key_id_hex == keyid for k in signer["keys"]):
            raise Rejected("key_retired", f"key {keyid} of {name} was retired")
    member = state.get_state(member_key(call.tx.actor))
    assert isinstance(member, dict)
    allowed = ledger["permissions"].get(call.tx.type)
    if allowed is None:
        if _open_without_roles(call.tx.type, call.version):
            return
        raise Rejected(
            "not_permitted",
            f"the role map lists no roles for {call.tx.type}: no member may submit it "
            f"until a quorum of admins names them ({PERMISSIONS_SET})",
        )
    if not holds_role(member["roles"], allowed, call.version):
        raise Rejected(
            "not_permitted",
            f"{call.tx.type} needs one of the roles {', '.join(allowed)}; "
            f"{call.tx.actor} has {', '.join(member['roles']) or 'none'}",
        )


def default_contracts() -> ContractSet:
    rules: dict[str, TypeRule] = {
        GENESIS: TypeRule(check_genesis, exec_genesis, admit=admit_genesis),
        EVENT: TypeRule(check_event, exec_event),
        **registry_rules(),
        **governance_rules(),
        **policy_rules(),
        **attestation_rules(),
        **deployment_rules(),
        **inference_rules(),
        **fl_rules(),
        **access_rules(),
        **personal_rules(),
    }
    # A personal field may hold a commitment wherever it held text (version 8 on).
    rules = {
        t: dataclasses.replace(r, check=with_commitments(t, r.check)) for t, r in rules.items()
    }
    return ContractSet(rules, resolve_signer, authorize, enforce, versioned_check=require_committed)
