"""Declarative policies: CEL rules attached to actions, stored on the ledger.

A policy is a CEL expression (evaluated by the ``common-expression-language``
package, a compiled Rust implementation: about 11 us per rule here, against
700 us for pure-Python cel-python) that must evaluate to ``true`` for the
action to proceed. Policies are versioned ledger state and change only through
``policy.set`` signed by a quorum of admins. A rule that fails to evaluate
denies, with the evaluation error as the reason.

The action of a transaction is its type (``model.register``), or for types that
name an environment, ``<type>:<env>`` (``model.deploy:production``); a policy
for the bare type applies where none is set for the environment.

What a rule sees (the whole context, in one place)::

    tx       {type, actor, time, nonce, body}     the transaction as signed
    actor    {name, org, roles, status}           the member who submitted it
    signers  [{name, org, roles}]                 every member who signed
    index    int                                  the entry's position in the log
    env      string                               the target environment, or ""
    ... plus what the transaction's own contract adds:
    model    {name, version, digest, format, run, parent, metrics, card}   model.register
    run      {id, inputs, subjects, by}           model.register (null without a run)
    datasets [{name, version, digest, format, records, by, attestations,
               quality_passed, evaluations}]       model.register, run.record: the inputs
    dataset  {name, version, digest, records}     dataset.register, dataset.ingest
    model    (version view + metrics, revoked_ancestor)    model.deploy, model.approve,
                                                           model.reject
    artifact {kind, name, version, by, encrypted}  artifact.* (version, by: null for grants)
    member   {name, org, roles, status}           artifact.grant, artifact.revoke: the grantee
    approvals, rejections [{by, org, role, env, comment, index, time}]  the same (this env;
        from contract-set version 5 only the approvals that count: no older than the
        approval period, recorded after the version's last rollback from env)
    replication {required, copies, orgs}   the same, from contract-set version 8: the
        replication factor (0: none set) and the organisations holding a verified copy

    attestations [{by, org, passed, checks, tool, index, time}]   (dataset.attest)
    evaluations  [{by, org, dataset {name, version}, metrics, tool, index, time}]
    quality_passed: at least one validator attested and every attestation passed
    evaluators   [names]            distinct evaluators of a model version
    metric_spread {metric: max-min} over the evaluations that all report it, e.g.
        size(model.evaluators) >= 2 && model.metric_spread.accuracy <= 0.02

A rule over a collection holds vacuously when the collection is empty
(``datasets.all(d, d.quality_passed)`` over no datasets is true): where the rule
means that something exists, say so (``size(datasets) > 0 && ...``).

A denial's reason (recorded in the log, and compared when the log is re-executed)
quotes the whole rule: a check the refusal should name on its own is best a
policy of its own, as ``model.approve:production`` is. The error a submitter
reads also names the conjunct that failed (``clauses``), which is not logged.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from ..core.names import check_name
from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule
from .governance import require_quorum
from .state import member_key, policy_history_key, policy_key
from .types import (
    ARTIFACT_ERASE,
    MODEL_APPROVE,
    MODEL_DEPLOY,
    MODEL_REGISTER,
    POLICY_SET,
    RECORD_ERASE,
)

__all__ = [
    "DEFAULT_POLICIES",
    "action_of",
    "base_context",
    "check_action_names",
    "check_policy",
    "compile_rule",
    "enforce",
    "evaluate",
    "policy_context",
    "policy_rules",
]

# What `modelchain init` installs: a careful organisation's starting point.
# It is genesis data: a new ledger's, never an existing one's (no contract-set
# version is needed to change it). A model version needs a recorded run
# (`run != null`: the context's run is null for a run the ledger does not know).
# A rule over a collection says that the collection is not empty wherever the
# promise is that something exists: `datasets.all(...)` alone holds for a model
# registered from no datasets at all.
DEFAULT_POLICIES: dict[str, dict[str, str]] = {
    MODEL_REGISTER: {
        "rule": (
            '"trainer" in actor.roles'
            " && run != null"
            " && size(datasets) > 0"
            " && datasets.all(d, d.quality_passed)"
        ),
        "description": "models are registered by trainers, with a recorded run, from at least "
        "one registered dataset, every one of them attested by validators and none found failing",
    },
    f"{MODEL_APPROVE}:production": {
        "rule": "actor.name != model.by",
        "description": "the member who registered a version may not approve it for production",
    },
    f"{MODEL_DEPLOY}:production": {
        "rule": (
            "size(approvals.filter(a, a.by != model.by)) >= 2"
            ' && approvals.exists(a, a.role == "risk" && a.by != model.by)'
            " && size(rejections) == 0"
            " && model.evaluations.exists(e, has(e.metrics.accuracy) && e.metrics.accuracy >= 0.9)"
            " && !model.revoked_ancestor"
        ),
        "description": "production needs approvals from two distinct members other than the "
        "model's registrant (one of them risk), no rejection, an evaluation with accuracy "
        ">= 0.9, and no revoked ancestor",
    },
    ARTIFACT_ERASE: {
        "rule": (
            'signers.exists(s, "data-steward" in s.roles) && signers.exists(s, "admin" in s.roles)'
        ),
        "description": "an erasure is signed by a data steward and an admin (co-sign a draft: "
        "`modelchain erase --draft`, `modelchain tx sign`)",
    },
    RECORD_ERASE: {
        "rule": (
            'signers.exists(s, "data-steward" in s.roles) && signers.exists(s, "admin" in s.roles)'
        ),
        "description": "erasing an entry's personal fields is signed by a data steward and an "
        "admin",
    },
}
_MAX_RULE = 4096


def compile_rule(rule: object) -> Any:
    """The compiled program of a rule; MalformedError if it is not a string or
    does not parse."""
    if not isinstance(rule, str) or not rule.strip() or len(rule) > _MAX_RULE:
        # checked before the cache: a list or an object cannot be a cache key
        raise MalformedError(f"a rule is a CEL expression (a string) of 1-{_MAX_RULE} characters")
    return _compile(rule)


@functools.lru_cache(maxsize=1024)
def _compile(rule: str) -> Any:
    import cel  # on first compile: importing cel loads its CLI (typer, rich), ~0.5 s

    try:
        return cel.compile(rule)
    except (ValueError, RuntimeError) as exc:
        raise MalformedError(f"the rule does not compile: {exc}") from exc


@functools.lru_cache(maxsize=1024)
def _identifiers(rule: str) -> frozenset[str]:
    return frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rule))


def evaluate(rule: str, context: Mapping[str, Any]) -> bool:
    """True if ``rule`` holds in ``context``; Rejected('policy_error') if it cannot
    be evaluated or does not give a boolean."""
    names = _identifiers(rule)
    # Converting values into CEL is most of an evaluation's cost, so hand over
    # only the variables the rule's text mentions.
    used = {k: v for k, v in context.items() if k in names}
    try:
        result = compile_rule(rule).execute(used)
    except MalformedError as exc:
        raise Rejected("policy_error", exc.message) from exc
    except Exception as exc:  # the CEL runtime raises plain Python errors
        raise Rejected("policy_error", f"the rule failed to evaluate: {exc}") from exc
    if not isinstance(result, bool):
        raise Rejected("policy_error", f"the rule gave {type(result).__name__}, not a boolean")
    return result


def _member_view(state: StateReader, name: str) -> dict[str, Any]:
    m = state.get_state(member_key(name))
    if not isinstance(m, dict):
        return {"name": name, "org": "", "roles": [], "status": "unknown"}
    return {"name": name, "org": m["org"], "roles": list(m["roles"]), "status": m["status"]}


def action_of(call: Call) -> str:
    env = call.tx.body.get("env")
    return f"{call.tx.type}:{env}" if isinstance(env, str) and env else call.tx.type


def enforce(state: Overlay, call: Call, rule: TypeRule) -> None:
    """Deny ``call`` unless the policy for its action (if any) holds."""
    action = action_of(call)
    policy = state.get_state(policy_key(action))
    if (policy is None or policy.get("rule") is None) and action != call.tx.type:
        action = call.tx.type
        policy = state.get_state(policy_key(action))
    if not isinstance(policy, dict) or policy["rule"] is None:
        return
    check_policy(action, policy, policy_context(state, call, rule))


def policy_context(state: StateReader, call: Call, rule: TypeRule) -> dict[str, Any]:
    """What a rule for ``call`` sees: the base context and what its contract adds."""
    context = base_context(state, call)
    if rule.context is not None:
        context.update(rule.context(state, call))
    return context


def check_policy(action: str, policy: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    """Raise Rejected unless ``policy`` (set for ``action``) holds in ``context``."""
    if not evaluate(policy["rule"], context):
        raise Rejected(
            "policy_denied",
            f"policy {action} v{policy['version']} denies it: {policy['rule']}",
        )


def base_context(state: StateReader, call: Call) -> dict[str, Any]:
    tx = call.tx
    env = tx.body.get("env")
    return {
        "tx": {
            "type": tx.type,
            "actor": tx.actor,
            "time": tx.time,
            "nonce": tx.nonce,
            "body": tx.body,
        },
        "actor": _member_view(state, tx.actor),
        "signers": [_member_view(state, n) for n in dict.fromkeys(call.signers)],
        "index": call.index,
        "env": env if isinstance(env, str) else "",
    }


def check_policy_set(body: Mapping[str, Any]) -> None:
    if set(body) != {"action", "rule", "description"}:
        raise MalformedError("policy.set body is {action, rule, description}")
    action = body["action"]
    if not isinstance(action, str) or not action or len(action) > 128 or " " in action:
        raise MalformedError("action is a transaction type, optionally :environment")
    if body["rule"] is not None:
        compile_rule(body["rule"])
    if not isinstance(body["description"], str) or len(body["description"]) > 2000:
        raise MalformedError("description is a string of at most 2000 characters")


def check_action_names(action: str) -> None:
    """Admission: the environment of a ``<type>:<env>`` action is a name, the one
    a transaction for that environment carries."""
    _, sep, env = action.partition(":")
    if sep:
        check_name(env, f"the environment of policy action {action!r}")


def _admit_policy_set(body: Mapping[str, Any]) -> None:
    check_action_names(body["action"])


def exec_policy_set(state: Overlay, call: Call) -> None:
    require_quorum(state, call)
    body = call.tx.body
    current = state.get_state(policy_key(body["action"]))
    version = (current["version"] if isinstance(current, dict) else 0) + 1
    history_key = policy_history_key(body["action"], version)
    record = {
        "action": body["action"],
        "rule": body["rule"],
        "description": body["description"],
        "version": version,
        "set_at": call.index,
        "by": list(dict.fromkeys(call.signers)),
    }
    state.put(history_key, record)
    state.put(policy_key(body["action"]), record)  # a null rule: no policy, version kept


def policy_rules() -> dict[str, TypeRule]:
    return {POLICY_SET: TypeRule(check_policy_set, exec_policy_set, admit=_admit_policy_set)}
