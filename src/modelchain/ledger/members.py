"""Members from Python: ``led.members`` (members, roles, keys, the admin quorum).

Governance transactions need several admins' signatures on one envelope: pass
every signer you hold, or build a draft with ``draft`` and collect signatures
offline (``Envelope.with_signature``) before ``submit``. A draft made with
``valid_for`` stays valid that long (within the ledger's maximum, which
``set_max_validity`` changes), for co-signing that takes days. How long an
approval counts (contract-set version 5 on) is ``approval_ttl``, which
``set_approval_ttl`` changes. How many organisations must hold a verified copy of a
model version before it is deployed (contract-set version 8 on) is ``replication``,
which ``set_replication`` changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..contracts.governance import (
    approval_ttl_ms,
    max_validity_ms,
    quorum,
    replication_copies,
)
from ..contracts.state import LEDGER_KEY, MEMBERS_KEY, keyid_key, member_key
from ..contracts.types import (
    APPROVAL_TTL_SET,
    CHECKPOINT_POLICY_SET,
    CONTRACTS_ACTIVATE,
    MEMBER_ADD,
    MEMBER_REVOKE,
    MEMBER_ROTATE,
    MEMBER_UPDATE,
    PERMISSIONS_SET,
    QUORUM_SET,
    REPLICATION_SET,
    VALIDITY_SET,
)
from ..contracts.versions import (
    APPROVAL_VERSION,
    REPLICATION_VERSION,
    WINDOW_VERSION,
    active_version,
    schedule,
)
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey
from ..core.policy import CheckpointPolicy
from ..core.times import human_duration
from ..core.tx import PAYLOAD_TYPE
from ..errors import NotFoundError, UsageError
from ..node.node import Ack
from ._refusals import refused
from .port import LedgerPort

__all__ = ["Members"]


class Members:
    """Members of the ledger and the quorum that governs them: ``led.members``."""

    def __init__(self, ledger: LedgerPort) -> None:
        self._led = ledger

    def draft(
        self, type_: str, body: dict[str, Any], actor: str, *, valid_for: int | None = None
    ) -> Envelope:
        """An unsigned envelope, for signatures collected offline. With
        ``valid_for`` (milliseconds) it carries a validity window from now:
        signed days later, it is accepted until it expires."""
        tx = self._led.transaction(type_, body, actor)
        self._led.contracts.check(tx)
        if valid_for is not None:
            self._check_window(valid_for)
            tx = dataclasses.replace(tx, not_before=tx.time, expires=tx.time + valid_for)
        return Envelope(PAYLOAD_TYPE, tx.payload(), ())

    def _check_window(self, valid_for: int) -> None:
        """What admission would refuse, before anyone signs."""
        if valid_for < 0:
            raise UsageError("a validity window cannot be negative")
        version = self.contract_version
        if version < WINDOW_VERSION:
            raise UsageError(
                f"{self._led.origin} runs contract-set version {version}; validity windows "
                f"need version {WINDOW_VERSION} (`modelchain contracts activate "
                f"{WINDOW_VERSION} --at N`, signed by the admin quorum)"
            )
        limit = self.max_validity
        if valid_for > limit:
            raise UsageError(
                f"a validity window of {human_duration(valid_for)} is longer than "
                f"{self._led.origin} allows ({human_duration(limit)}); its admins raise "
                "the maximum with `modelchain governance validity`"
            )

    def submit(self, envelope: Envelope) -> Ack:
        """Submit a (co-)signed envelope; raise RejectedError if a contract refuses it."""
        if not envelope.signatures:
            raise UsageError("the envelope has no signatures yet: sign it first")
        ack = self._led.submit(envelope)
        if not ack.outcome.accepted:
            raise refused(self._led, envelope, ack, "rejected")
        return ack

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

    # -- the role map and the contract-set version (quorum-signed) -------------

    def set_permissions(
        self, type_: str, roles: Sequence[str], *, signers: Sequence[Signer]
    ) -> Ack:
        """Let members holding any of ``roles`` submit ``type_`` from the next entry
        on ("*" is every member; no roles denies the type to everyone)."""
        return self._signed(PERMISSIONS_SET, {"type": type_, "roles": list(roles)}, signers)

    @property
    def permissions(self) -> dict[str, list[str]]:
        """The role map now: transaction type -> roles that may submit it."""
        ledger = self._led.store.get_state(LEDGER_KEY)
        return dict(ledger["permissions"]) if isinstance(ledger, dict) else {}

    def activate_contracts(self, version: int, *, at: int, signers: Sequence[Signer]) -> Ack:
        """Run entries from index ``at`` (after this one) on under contract-set
        ``version``; naming the active version withdraws a pending activation."""
        if version not in self._led.contracts.versions:
            known = ", ".join(str(v) for v in sorted(self._led.contracts.versions))
            raise UsageError(
                f"this modelchain does not know contract-set version {version} (it knows "
                f"{known}): activating it would stop this node at index {at}"
            )
        return self._signed(CONTRACTS_ACTIVATE, {"version": version, "at": at}, signers)

    def set_checkpoint_policy(
        self, policy: CheckpointPolicy | str, *, signers: Sequence[Signer]
    ) -> Ack:
        """Replace the checkpoint policy (a quorum of admins signs): a cluster's
        nodes, their keys and the threshold, its witnesses. Clients pinned to
        the old policy must be given the new one."""
        text = policy if isinstance(policy, str) else policy.to_text()
        CheckpointPolicy.parse(text)  # a malformed policy fails here, unsigned
        return self._signed(CHECKPOINT_POLICY_SET, {"policy": text}, signers)

    def set_max_validity(self, max_ms: int, *, signers: Sequence[Signer]) -> Ack:
        """Let transactions carry validity windows up to ``max_ms`` long (a
        quorum of admins signs), from the next entry on."""
        return self._signed(VALIDITY_SET, {"max_ms": max_ms}, signers)

    @property
    def max_validity(self) -> int:
        """The longest validity window a transaction may carry now, milliseconds
        (five minutes until governance sets one)."""
        return max_validity_ms(self._led.store)

    def set_approval_ttl(self, ttl_ms: int, *, signers: Sequence[Signer]) -> Ack:
        """Let an approval count for ``ttl_ms`` after it is recorded (a quorum of
        admins signs), from the next entry on. UsageError, nothing signed, on a
        ledger below contract-set version 5, where approvals do not expire."""
        self.require_approval_ttl()
        return self._signed(APPROVAL_TTL_SET, {"ttl_ms": ttl_ms}, signers)

    def require_approval_ttl(self) -> None:
        """UsageError unless the next entry runs a version where approvals expire."""
        version = self.contract_version
        if version < APPROVAL_VERSION:
            raise UsageError(
                f"{self._led.origin} runs contract-set version {version}; approvals expire "
                f"from version {APPROVAL_VERSION} (`modelchain contracts activate "
                f"{APPROVAL_VERSION} --at N`, signed by the admin quorum)"
            )

    @property
    def approval_ttl(self) -> int | None:
        """How long an approval counts, milliseconds (30 days until governance
        sets another period); None where the version active next has approvals
        that never expire (below 5)."""
        if self.contract_version < APPROVAL_VERSION:
            return None
        return approval_ttl_ms(self._led.store)

    def set_replication(self, copies: int, *, signers: Sequence[Signer]) -> Ack:
        """Require ``copies`` organisations to hold a verified copy of a model version
        before it is deployed (0: no requirement; a quorum of admins signs), from the
        next entry on. UsageError, nothing signed, below contract-set version 8."""
        self.require_replication()
        return self._signed(REPLICATION_SET, {"copies": copies}, signers)

    def require_replication(self) -> None:
        """UsageError unless the next entry runs a version that records replicas."""
        version = self.contract_version
        if version < REPLICATION_VERSION:
            raise UsageError(
                f"{self._led.origin} runs contract-set version {version}; replication is "
                f"recorded from version {REPLICATION_VERSION} (`modelchain contracts activate "
                f"{REPLICATION_VERSION} --at N`, signed by the admin quorum)"
            )

    @property
    def replication(self) -> int | None:
        """How many organisations must hold a verified copy of a model version before
        it is deployed (0 until governance sets it); None below contract-set version 8."""
        if self.contract_version < REPLICATION_VERSION:
            return None
        return replication_copies(self._led.store)

    @property
    def contract_version(self) -> int:
        """The contract-set version the next entry runs under."""
        return active_version(self._led.store, self._led.size)

    def contract_versions(self) -> list[dict[str, Any]]:
        """Recorded versions, oldest first: ``[{version, from, set_at, by}]``
        (empty for a ledger made before versions, which runs version 1)."""
        return schedule(self._led.store)

    @property
    def quorum(self) -> int:
        return quorum(self._led.store)

    def get(self, name: str) -> dict[str, Any]:
        found = self._led.store.get_state(member_key(name))
        if not isinstance(found, dict):
            raise NotFoundError(f"{name} is not a member of {self._led.origin}")
        return found

    def name_of_key(self, keyid: str) -> str | None:
        """The member a DSSE key id belongs (or belonged) to."""
        found = self._led.store.get_state(keyid_key(keyid))
        return found if isinstance(found, str) else None

    def list(self) -> list[dict[str, Any]]:
        names = self._led.store.get_state(MEMBERS_KEY)
        return [self.get(n) for n in names] if isinstance(names, list) else []
