"""A full model lifecycle across three organisations under the default policies:
data registered and attested, a run, a model, evaluations, approvals, deployment,
a monitor report that triggers rollback, revocation; and the attacks on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORIGIN, PEOPLE, founders, make_signer

import modelchain as mc
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.identity import verifier_of
from modelchain.errors import NotFoundError, RejectedError, UsageError


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    members = founders(PEOPLE)
    ledger = mc.init(
        tmp_path / "l",
        ORIGIN,
        make_signer("alice"),
        org="acme",
        members=members,
        policies=DEFAULT_POLICIES,
    )
    try:
        yield ledger
    finally:
        ledger.close()


def s(name: str) -> mc.Signer:
    return make_signer(name)


def _rejected(led: mc.Ledger, code: str, call: object) -> RejectedError:
    before = list(led.backend.store.state_items())
    with pytest.raises(RejectedError) as info:
        call()  # type: ignore[operator]
    assert info.value.reason_code == code, info.value.message
    assert list(led.backend.store.state_items()) == before, "a rejection changes no state"
    return info.value


def test_lifecycle_and_attacks(led: mc.Ledger, tmp_path: Path) -> None:
    data = tmp_path / "tx.csv"
    data.write_text("amount,fraud\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    v1_file, v2_file = tmp_path / "v1.bin", tmp_path / "v2.bin"
    v1_file.write_bytes(b"weights-1")
    v2_file.write_bytes(b"weights-2")

    led.datasets.register("tx", data, signer=s("steward"))
    led.runs.record(
        "run-1", outputs=[v1_file], datasets=[("tx", 1)], code_dir=None, signer=s("bob")
    )
    denied = _rejected(
        led,
        "policy_denied",
        lambda: led.models.register("fraud", v1_file, run="run-1", signer=s("bob")),
    )
    assert "model.register v1" in denied.message
    led.datasets.attest("tx", 1, {"passed": True}, signer=s("val"))
    _rejected(
        led,
        "policy_denied",  # an admin is not a trainer under the default policy
        lambda: led.models.register("fraud", v1_file, run="run-1", signer=s("alice")),
    )
    led.models.register("fraud", v1_file, run="run-1", signer=s("bob"))
    led.models.evaluate("fraud", 1, dataset=("tx", 1), metrics={"accuracy": 0.95}, signer=s("ev"))

    deps = led.deployments
    _rejected(led, "not_permitted", lambda: deps.deploy("fraud", 1, "production", signer=s("bob")))
    _rejected(led, "policy_denied", lambda: deps.deploy("fraud", 1, "production", signer=s("ops")))
    deps.deploy("fraud", 1, "staging", signer=s("ops"))  # no policy for staging
    deps.approve("fraud", 1, "production", role="risk", signer=s("risk"))
    _rejected(
        led,
        "already_decided",  # self-approval counted twice
        lambda: deps.approve("fraud", 1, "production", role="risk", signer=s("risk")),
    )
    _rejected(
        led,
        "not_permitted",
        lambda: deps.approve("fraud", 1, "production", role="risk", signer=s("lead")),
    )
    _rejected(led, "policy_denied", lambda: deps.deploy("fraud", 1, "production", signer=s("ops")))
    ack = deps.approve("fraud", 1, "production", role="ml-lead", signer=s("lead"))
    approval = led.entry_bytes(ack.index)
    deps.deploy(
        "fraud", 1, "production", rollback_rule="metrics.error_rate > 0.05", signer=s("ops")
    )
    assert deps.current("fraud", "production")["version"] == 1  # type: ignore[index]

    from modelchain.core.tx import LogEntry

    # A replayed approval is answered with the entry it already has; nothing is added.
    size = led.size
    assert led.submit(LogEntry.decode(approval).envelope).index == LogEntry.decode(approval).index
    assert led.size == size

    # version 2: approvals of version 1 are not reused for it
    led.runs.record(
        "run-2", outputs=[v2_file], datasets=[("tx", 1)], code_dir=None, signer=s("bob")
    )
    led.models.register("fraud", v2_file, run="run-2", parent=("fraud", 1), signer=s("bob"))
    led.models.evaluate("fraud", 2, dataset=("tx", 1), metrics={"accuracy": 0.97}, signer=s("ev"))
    _rejected(led, "policy_denied", lambda: deps.deploy("fraud", 2, "production", signer=s("ops")))
    deps.approve("fraud", 2, "production", role="risk", signer=s("risk"))
    deps.approve("fraud", 2, "production", role="ml-lead", signer=s("lead"))
    deps.deploy(
        "fraud", 2, "production", rollback_rule="metrics.error_rate > 0.05", signer=s("ops")
    )
    at_v2 = led.entry(led.size - 1).transaction.time

    # a breaching monitor report rolls production back to version 1 in the same transaction
    deps.report("fraud", "production", {"error_rate": 0.01}, signer=s("mon"))
    assert deps.current("fraud", "production")["version"] == 2  # type: ignore[index]
    deps.report("fraud", "production", {"error_rate": 0.2}, signer=s("mon"))
    assert deps.current("fraud", "production")["version"] == 1  # type: ignore[index]
    history = deps.history("fraud", "production")
    assert [(e["action"], e["from"], e["to"]) for e in history] == [
        ("deploy", None, 1),
        ("deploy", 1, 2),
        ("rollback", 2, 1),
    ]
    assert "rollback rule" in history[-1]["reason"]
    assert {a["by"] for a in history[0]["approvals"]} == {"risk", "lead"}
    assert deps.serving("fraud", "production", at_v2) == 2

    # revoking version 1 withdraws it everywhere; version 2 was rolled back from, so
    # production is left undeployed rather than silently restored
    _rejected(led, "not_permitted", lambda: deps.revoke("fraud", 1, reason="x", signer=s("ops")))
    deps.revoke("fraud", 1, reason="leaked training data", signer=s("alice"))
    assert deps.current("fraud", "production") is None
    assert deps.current("fraud", "staging") is None
    _rejected(led, "revoked", lambda: deps.deploy("fraud", 1, "staging", signer=s("ops")))
    # version 2 was rolled back from production: its approvals from before are stale
    stale = _rejected(
        led, "stale_approvals", lambda: deps.deploy("fraud", 2, "production", signer=s("ops"))
    )
    assert "rolled back from production" in stale.message
    # approved afresh, it still descends from the revoked version 1: production refuses it
    deps.approve("fraud", 2, "production", role="risk", signer=s("risk"))
    deps.approve("fraud", 2, "production", role="ml-lead", signer=s("lead"))
    _rejected(led, "policy_denied", lambda: deps.deploy("fraud", 2, "production", signer=s("ops")))

    # a revoked member's signature is logged and rejected
    led.members.revoke("ops", reason="left", signers=[s("alice"), s("dave")])
    ack = led.deployments._led.submit(
        led.transaction(
            "model.deploy",
            {"model": "fraud", "version": 2, "env": "staging", "rollback_rule": None},
            "ops",
        ).sign(s("ops"))
    )
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "member_revoked")

    denied_list = led.denied()
    codes = {d["code"] for d in denied_list}
    assert {
        "policy_denied",
        "not_permitted",
        "already_decided",
        "revoked",
        "member_revoked",
    } <= codes
    assert all(d["reason"] for d in denied_list)
    # exclude= leaves types out, whole or by a prefix ending in a dot
    no_deploys = led.denied(exclude=["model.deploy"])
    assert no_deploys == [d for d in denied_list if d["type"] != "model.deploy"]
    assert no_deploys != denied_list
    assert [d for d in led.denied(exclude=["model."]) if d["type"].startswith("model.")] == []
    with pytest.raises(UsageError, match="exclude at most 20 types"):
        led.denied(exclude=[f"t{i}" for i in range(21)])
    report = led.audit()
    assert report.rejected == len(denied_list)


def test_proof_of_performance_needs_agreeing_independent_evaluators(
    led: mc.Ledger, tmp_path: Path
) -> None:
    from modelchain.contracts.base import Call, Overlay, Rejected
    from modelchain.contracts.policy import enforce
    from modelchain.contracts.state import policy_key

    led.members.add(
        verifier_of(s("ev2")), roles=["evaluator"], org="lab2", signers=[s("alice"), s("dave")]
    )
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    led.datasets.register("d", data, signer=s("steward"))
    led.datasets.attest("d", 1, {"passed": True}, signer=s("val"))
    led.runs.record("r", outputs=[model], datasets=[("d", 1)], code_dir=None, signer=s("bob"))
    led.models.register("m", model, run="r", signer=s("bob"))
    rule = led.contracts.rule("model.deploy")
    assert rule is not None
    state = Overlay(led.store)
    state.put(
        policy_key("model.deploy:staging"),
        {
            "rule": "size(model.evaluators) >= 2 && model.metric_spread.accuracy <= 0.02",
            "version": 1,
            "action": "model.deploy:staging",
            "description": "",
            "set_at": 0,
            "by": [],
        },
    )

    def check() -> None:
        tx = led.transaction(
            "model.deploy",
            {"model": "m", "version": 1, "env": "staging", "rollback_rule": None},
            "ops",
        )
        enforce(state, Call(led.size, tx, ("ops",)), rule)

    led.models.evaluate("m", 1, dataset=("d", 1), metrics={"accuracy": 0.90}, signer=s("ev"))
    with pytest.raises(Rejected):
        check()  # one evaluator only
    led.models.evaluate("m", 1, dataset=("d", 1), metrics={"accuracy": 0.95}, signer=s("ev2"))
    with pytest.raises(Rejected):
        check()  # two, but 0.05 apart
    state = Overlay(led.store)
    state.put(
        policy_key("model.deploy:staging"),
        {
            "rule": "size(model.evaluators) >= 2 && model.metric_spread.accuracy <= 0.06",
            "version": 1,
            "action": "model.deploy:staging",
            "description": "",
            "set_at": 0,
            "by": [],
        },
    )
    check()


def _register_attested(
    led: mc.Ledger, tmp_path: Path, name: str, content: bytes, trainer: str = "bob"
) -> Path:
    """A model registered the way the default policy wants: from an attested dataset,
    by a recorded run."""
    data = tmp_path / "d.csv"
    if not data.exists():
        data.write_text("a\n1\n")
        led.datasets.register("d", data, signer=s("steward"))
        led.datasets.attest("d", 1, {"passed": True}, signer=s("val"))
    model = tmp_path / f"{name}.bin"
    model.write_bytes(content)
    run = f"run-{name}"
    led.runs.record(run, outputs=[model], datasets=[("d", 1)], code_dir=None, signer=s(trainer))
    led.models.register(name, model, run=run, signer=s(trainer))
    return model


def test_registering_needs_a_run_from_attested_datasets(led: mc.Ledger, tmp_path: Path) -> None:
    model = tmp_path / "clf2.bin"
    model.write_bytes(b"shadow")
    size = led.size
    # no run, so no datasets: `datasets.all(...)` alone would hold over nothing
    denied = _rejected(
        led, "policy_denied", lambda: led.models.register("shadow-clf", model, signer=s("bob"))
    )
    assert "run != null && size(datasets) > 0" in denied.message
    assert led.size == size + 1 and led.entry(size).outcome.code == "policy_denied"
    # a run the ledger has not recorded is no run: the rule sees none
    _rejected(
        led,
        "policy_denied",
        lambda: led.models.register("shadow-clf", model, run="unrecorded", signer=s("bob")),
    )
    # a run that used no registered dataset does not do either
    led.runs.record("r0", outputs=[model], datasets=[], code_dir=None, signer=s("bob"))
    _rejected(
        led,
        "policy_denied",
        lambda: led.models.register("shadow-clf", model, run="r0", signer=s("bob")),
    )
    _register_attested(led, tmp_path, "clf", b"clf")


def _approving_trainer(led: mc.Ledger, tmp_path: Path) -> None:
    """tara trains and registers m@1, and holds an approval role."""
    tara = verifier_of(s("tara"))
    admins = [s("alice"), s("dave")]
    led.members.add(tara, roles=["trainer", "approver:ml"], org="acme", signers=admins)
    _register_attested(led, tmp_path, "m", b"m", trainer="tara")
    led.models.evaluate("m", 1, dataset=("d", 1), metrics={"accuracy": 0.95}, signer=s("ev"))


def test_a_registrant_may_not_approve_its_own_version_for_production(
    led: mc.Ledger, tmp_path: Path
) -> None:
    _approving_trainer(led, tmp_path)
    deps = led.deployments
    size = led.size
    denied = _rejected(
        led,
        "policy_denied",
        lambda: deps.approve("m", 1, "production", role="ml", signer=s("tara")),
    )
    assert "policy model.approve:production v1 denies it: actor.name != model.by" in denied.message
    assert led.size == size + 1 and led.entry(size).outcome.code == "policy_denied"
    deps.approve("m", 1, "staging", role="ml", signer=s("tara"))  # no such rule for staging
    deps.approve("m", 1, "production", role="risk", signer=s("risk"))
    deps.approve("m", 1, "production", role="ml-lead", signer=s("lead"))
    deps.deploy("m", 1, "production", signer=s("ops"))


def test_a_self_approval_stored_under_an_older_policy_is_no_veto(
    led: mc.Ledger, tmp_path: Path
) -> None:
    _approving_trainer(led, tmp_path)
    deps = led.deployments
    # as on a ledger whose policies predate the model.approve:production rule
    led.policies.set("model.approve:production", None, signers=[s("alice"), s("dave")])
    deps.approve("m", 1, "production", role="ml", signer=s("tara"))
    deps.approve("m", 1, "production", role="risk", signer=s("risk"))
    # tara's approval does not count: one approval by someone else is not two
    denied = _rejected(
        led, "policy_denied", lambda: deps.deploy("m", 1, "production", signer=s("ops"))
    )
    assert "size(approvals.filter(a, a.by != model.by)) >= 2" in denied.message
    deps.approve("m", 1, "production", role="ml-lead", signer=s("lead"))
    deps.deploy("m", 1, "production", signer=s("ops"))
    current = deps.current("m", "production")
    assert current is not None and current["version"] == 1
    assert {a["by"] for a in current["approvals"]} == {"tara", "risk", "lead"}


def test_an_automatic_rollback_says_why_in_its_outcome(led: mc.Ledger, tmp_path: Path) -> None:
    _register_attested(led, tmp_path, "m", b"m")
    led.deployments.deploy("m", 1, "staging", rollback_rule="metrics.drift > 0.3", signer=s("ops"))
    calm = led.deployments.report("m", "staging", {"drift": 0.1}, signer=s("mon"))
    assert calm.outcome.reason == ""
    ack = led.deployments.report("m", "staging", {"drift": 0.5}, signer=s("mon"))
    assert ack.outcome.accepted
    assert "rolled staging back from version 1 to nothing" in ack.outcome.reason
    assert led.entry(ack.index).outcome == ack.outcome
    assert led.audit().size == led.size


def test_a_missing_model_or_version_is_refused_before_signing(
    led: mc.Ledger, tmp_path: Path
) -> None:
    _register_attested(led, tmp_path, "clf", b"weights")
    size = led.size
    d = led.deployments
    calls = {
        "no model named 'clfx'": lambda: d.approve(
            "clfx", 1, "production", role="risk", signer=s("risk")
        ),
        "clf has no version 9": lambda: d.reject(
            "clf", 9, "production", role="risk", signer=s("risk")
        ),
        "model clf has no version 9": lambda: d.deploy("clf", 9, "staging", signer=s("ops")),
        "no model named 'clfx' ": lambda: d.rollback("clfx", "staging", signer=s("ops")),
        "clf is not deployed to 'staging'": lambda: d.rollback("clf", "staging", signer=s("ops")),
        "model clf has no version 2": lambda: d.revoke("clf", 2, reason="typo", signer=s("dave")),
    }
    for message, call in calls.items():
        with pytest.raises(NotFoundError, match=message.strip()):
            call()
    assert led.size == size, "nothing was signed or logged"
    # A real version a policy refuses is still submitted: the refusal is evidence.
    _rejected(led, "policy_denied", lambda: d.deploy("clf", 1, "production", signer=s("ops")))
    assert led.size == size + 1
