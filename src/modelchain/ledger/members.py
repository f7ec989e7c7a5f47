"""Members from Python: ``led.members`` (members, roles, keys, the admin quorum).

Governance transactions need several admins' signatures on one envelope: pass
every signer you hold, or build a draft with ``draft`` and collect signatures
offline (``Envelope.with_signature``) before ``submit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..contracts.governance import (
    MEMBER_ADD,
    MEMBER_REVOKE,
    MEMBER_ROTATE,
    MEMBER_UPDATE,
    QUORUM_SET,
    quorum,
)
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey
from ..core.tx import PAYLOAD_TYPE
from ..errors import NotFoundError, UsageError
from ..node.node import Ack
from .port import LedgerPort, accepted

__all__ = ["Members"]


class Members:
    """Members of the ledger and the quorum that governs them: ``led.members``."""

    def __init__(self, ledger: LedgerPort) -> None:
        self._led = ledger

    def draft(self, type_: str, body: dict[str, Any], actor: str) -> Envelope:
        """An unsigned envelope, for signatures collected offline."""
        tx = self._led.transaction(type_, body, actor)
        self._led.contracts.check(tx)
        return Envelope(PAYLOAD_TYPE, tx.payload(), ())

    def submit(self, envelope: Envelope) -> Ack:
        """Submit a (co-)signed envelope; raise RejectedError if a contract refuses it."""
        if not envelope.signatures:
            raise UsageError("the envelope has no signatures yet: sign it first")
        return accepted(self._led.submit(envelope), "rejected")

    def _signed(self, type_: str, body: dict[str, Any], signers: Sequence[Signer]) -> Ack:
        if not signers:
            raise UsageError("governance needs at least one signer (the quorum decides how many)")
        env = self.draft(type_, body, signers[0].name)
        for s in signers:
            env = env.with_signature(s)
        return self.submit(env)

    def add(
        self,
        key: VerifierKey,
        *,
        roles: Sequence[str],
        org: str = "",
        signers: Sequence[Signer],
    ) -> Ack:
        member = {"name": key.name, "org": org, "roles": list(roles), "keys": [key.to_string()]}
        return self._signed(MEMBER_ADD, {"member": member}, signers)

    def update(
        self,
        name: str,
        *,
        roles: Sequence[str] | None = None,
        org: str | None = None,
        signers: Sequence[Signer],
    ) -> Ack:
        body: dict[str, Any] = {"name": name}
        if roles is not None:
            body["roles"] = list(roles)
        if org is not None:
            body["org"] = org
        return self._signed(MEMBER_UPDATE, body, signers)

    def revoke(self, name: str, *, reason: str, signers: Sequence[Signer]) -> Ack:
        return self._signed(MEMBER_REVOKE, {"name": name, "reason": reason}, signers)

    def rotate(
        self,
        name: str,
        *,
        add: Sequence[VerifierKey] = (),
        remove: Sequence[VerifierKey] = (),
        signers: Sequence[Signer],
    ) -> Ack:
        body = {
            "name": name,
            "add": [k.to_string() for k in add],
            "remove": [k.to_string() for k in remove],
        }
        return self._signed(MEMBER_ROTATE, body, signers)

    def set_quorum(self, value: int, *, signers: Sequence[Signer]) -> Ack:
        return self._signed(QUORUM_SET, {"quorum": value}, signers)

    @property
    def quorum(self) -> int:
        return quorum(self._led.store)

    def get(self, name: str) -> dict[str, Any]:
        found = self._led.store.get_state(f"member/{name}")
        if not isinstance(found, dict):
            raise NotFoundError(f"{name} is not a member of {self._led.origin}")
        return found

    def name_of_key(self, keyid: str) -> str | None:
        """The member a DSSE key id belongs (or belonged) to."""
        found = self._led.store.get_state(f"keyid/{keyid}")
        return found if isinstance(found, str) else None

    def list(self) -> list[dict[str, Any]]:
        names = self._led.store.get_state("members")
        return [self.get(n) for n in names] if isinstance(names, list) else []
