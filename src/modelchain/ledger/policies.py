"""Policies from Python: ``led.policies`` sets CEL rules (with a quorum), lists
them and tests a drafted transaction against them without submitting it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..contracts.base import Call, Overlay, Rejected, TypeRule
from ..contracts.policy import action_of, check_policy, enforce, policy_context
from ..contracts.state import POLICY_PREFIX, member_key, policy_key
from ..contracts.types import POLICY_SET
from ..core import canonical
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey
from ..core.tx import Transaction
from ..errors import NotFoundError, RejectedError
from ..node.node import Ack
from ._refusals import POLICY_CODES, clause_of, policy_for, refused
from .members import Members
from .port import LedgerPort

__all__ = ["Policies", "PolicyDecision"]


@dataclass(frozen=True)
class PolicyDecision:
    action: str
    allowed: bool
    rule: str | None  # None: no policy applies
    version: int | None
    reason: str
    clause: str | None = None  # the first conjunct of ``rule`` that failed, if it has several


class Policies:
    """CEL policies on the ledger: ``led.policies``. Setting one needs a quorum."""

    def __init__(self, ledger: LedgerPort, members: Members) -> None:
        self._led = ledger
        self._members = members

    def set(
        self, action: str, rule: str | None, *, description: str = "", signers: Sequence[Signer]
    ) -> Ack:
        """Attach ``rule`` to ``action`` (``None`` removes it)."""
        body = {"action": action, "rule": rule, "description": description}
        return self._members._signed(POLICY_SET, body, signers)

    def get(self, action: str) -> dict[str, Any] | None:
        found = self._led.store.get_state(policy_key(action))
        return found if isinstance(found, dict) and found.get("rule") is not None else None

    def list(self) -> list[dict[str, Any]]:
        out = []
        for _key, value in self._led.store.state_prefix(POLICY_PREFIX):
            record = canonical.loads(value)
            if record.get("rule") is not None:
                out.append(record)
        return out

    def _drafted(self, envelope: Envelope) -> tuple[Call, TypeRule, Overlay]:
        """A drafted (signed or not) transaction as its contract would see it now."""
        tx = Transaction.from_json(canonical.loads_canonical(envelope.payload))
        self._led.contracts.check(tx)
        signers = tuple(dict.fromkeys([tx.actor, *self._signer_names(envelope, tx)]))
        rule = self._led.contracts.rule(tx.type)
        assert rule is not None  # contracts.check found it
        version = self._led.contracts.version_at(self._led.store, self._led.size)
        return Call(self._led.size, tx, signers, version=version), rule, Overlay(self._led.store)

    def test(self, envelope: Envelope) -> PolicyDecision:
        """Evaluate the policy a drafted (signed or not) transaction would meet,
        against the current state, without submitting it."""
        call, rule, state = self._drafted(envelope)
        action = action_of(call)
        tx_type = call.tx.type
        policy = self.get(action) or (self.get(tx_type) if action != tx_type else None)
        if policy is None:
            return PolicyDecision(action, True, None, None, "no policy applies")
        try:
            enforce(state, call, rule)
        except Rejected as rej:
            return PolicyDecision(
                policy["action"],
                False,
                policy["rule"],
                policy["version"],
                rej.reason,
                clause_of(self._led.store, call, rule),
            )
        return PolicyDecision(policy["action"], True, policy["rule"], policy["version"], "allowed")

    def gate(self, type_: str, body: dict[str, Any], actor: str) -> PolicyDecision:
        """Would ``actor`` submitting ``type_`` with ``body`` now be accepted?

        The transaction runs through the contracts (permissions, the policy in
        force, the type's own rules) against the current state as if ``actor``
        had signed it with their current key, and every write is dropped: no key
        is needed and nothing is submitted. NotFoundError if ``actor`` is not a
        member; MalformedError for a body the contract would not admit."""
        member = self._led.store.get_state(member_key(actor))
        if not isinstance(member, dict):
            raise NotFoundError(f"no member named {actor!r}")
        tx = self._led.transaction(type_, body, actor)
        self._led.contracts.check(tx)
        keyid = VerifierKey.from_string(member["keys"][-1]).key_id_hex
        index = self._led.size
        outcome, _writes = self._led.contracts.execute(self._led.store, index, tx, (keyid,))
        version = self._led.contracts.version_at(self._led.store, index)
        call = Call(index, tx, (actor,), (keyid,), version)
        policy = policy_for(self._led.store, call)
        action = policy["action"] if policy else action_of(call)
        rule_text = policy["rule"] if policy else None
        policy_version = policy["version"] if policy else None
        if outcome.accepted:
            return PolicyDecision(action, True, rule_text, policy_version, "allowed")
        clause = None
        type_rule = self._led.contracts.rule(type_)
        if outcome.code in POLICY_CODES and type_rule is not None:
            clause = clause_of(self._led.store, call, type_rule)
        reason = f"{outcome.code}: {outcome.reason}"
        return PolicyDecision(action, False, rule_text, policy_version, reason, clause)

    def refusal(self, envelope: Envelope, ack: Ack, what: str) -> RejectedError:
        """The error for ``envelope``'s rejected ``ack`` (submitted by the caller),
        naming the clause of the policy that failed where a policy refused it."""
        return refused(self._led, envelope, ack, what)

    def test_custodial(self, envelope: Envelope) -> PolicyDecision:
        """May a server that holds the actor's key sign ``envelope`` for them?

        Only where a quorum has set a policy for ``custodial:<type>`` and its
        rule holds for this transaction, in the same context the type's own
        policy sees. Without such a policy the answer is no: a held key must
        never sign by default."""
        call, rule, state = self._drafted(envelope)
        action = f"custodial:{call.tx.type}"
        policy = self.get(action)
        if policy is None:
            return PolicyDecision(
                action,
                False,
                None,
                None,
                f"no policy is set for {action}: signing with a key the server holds is off "
                "until a quorum of admins sets one (modelchain policy set)",
            )
        try:
            check_policy(action, policy, policy_context(state, call, rule))
        except Rejected as rej:
            return PolicyDecision(action, False, policy["rule"], policy["version"], rej.reason)
        return PolicyDecision(action, True, policy["rule"], policy["version"], "allowed")

    def _signer_names(self, envelope: Envelope, tx: Transaction) -> tuple[str, ...]:
        names: tuple[str, ...] = ()
        for sig in envelope.signatures:
            found = self._led.contracts.signer(self._led.store, sig.keyid, tx)
            if found is not None:
                names = (*names, found[0])
        return names
