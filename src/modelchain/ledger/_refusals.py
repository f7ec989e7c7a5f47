"""Why a policy (or a federated task's acceptance rule) refused: the clause of
its rule that failed, named in the error a submitter reads. Read-only and best
effort; what the log records as the reason is the contract's, and nothing here
changes it."""

from __future__ import annotations

from typing import Any

from ..contracts.base import Call, Overlay, StateReader, TypeRule
from ..contracts.clauses import conjuncts, failing_clause
from ..contracts.fl import UPDATE_REFUSED, failing_acceptance_clause
from ..contracts.policy import action_of, policy_context
from ..contracts.state import policy_key
from ..core import canonical
from ..core.dsse import Envelope
from ..core.tx import Transaction
from ..errors import Error, RejectedError
from ..node.node import Ack
from .port import LedgerPort, rejection

POLICY_CODES = frozenset({"policy_denied", "policy_error"})


def policy_for(state: StateReader, call: Call) -> dict[str, Any] | None:
    """The policy that ``enforce`` applies to ``call``: its environment's, else its
    type's; None where none is set."""
    action = action_of(call)
    for key in dict.fromkeys((action, call.tx.type)):
        found = state.get_state(policy_key(key))
        if isinstance(found, dict) and found.get("rule") is not None:
            return found
    return None


def clause_of(state: StateReader, call: Call, rule: TypeRule) -> str | None:
    """The clause of the policy in force that fails for ``call``; None where no
    policy applies, it holds, or its rule is a single clause (already quoted)."""
    policy = policy_for(state, call)
    if policy is None or len(conjuncts(policy["rule"])) < 2:
        return None
    return failing_clause(policy["rule"], policy_context(Overlay(state), call, rule))


def refused(port: LedgerPort, envelope: Envelope, ack: Ack, what: str) -> RejectedError:
    """``rejection(ack, what)``, naming the failing clause where a policy denied it.

    The rejection wrote no state, so the state now is the state it met (unless
    another writer came in between: then the clause is from a later state)."""
    clause = None
    try:
        if ack.outcome.code in POLICY_CODES:
            clause = _clause(port, envelope, ack.index)
        elif ack.outcome.code == UPDATE_REFUSED:
            tx = Transaction.from_json(canonical.loads_canonical(envelope.payload))
            clause = failing_acceptance_clause(port.store, tx.body, tx.actor)
    except Error:
        clause = None  # the message is still right without it
    return rejection(ack, what, clause=clause)


def _clause(port: LedgerPort, envelope: Envelope, index: int) -> str | None:
    tx = Transaction.from_json(canonical.loads_canonical(envelope.payload))
    rule = port.contracts.rule(tx.type)
    if rule is None:
        return None
    state = port.store
    names = []
    for sig in envelope.signatures:
        found = port.contracts.signer(state, sig.keyid, tx)
        if found is not None:
            names.append(found[0])
    version = port.contracts.version_at(state, index)
    return clause_of(state, Call(index, tx, tuple(dict.fromkeys(names)), version=version), rule)
