"""Members, roles, keys and the admin quorum: the rules of who may sign, enforced
by the contracts, with every refusal logged and the state left unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORIGIN, make_signer

import modelchain as mc
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.errors import RejectedError, UnknownKeyError
from modelchain.ledger.ledger import Founder


@pytest.fixture
def gov(tmp_path: Path) -> Iterator[mc.Ledger]:
    """Two founding admins from two organisations (quorum 2), a trainer, an auditor."""
    alice, dave = make_signer("alice"), make_signer("dave")
    members = [
        Founder(verifier_of(dave), "bank", ("admin",)),
        Founder(verifier_of(make_signer("bob")), "acme", ("trainer",)),
        Founder(verifier_of(make_signer("carol")), "audit-co", ("auditor",)),
    ]
    led = mc.init(tmp_path / "gov", ORIGIN, alice, org="acme", members=members)
    try:
        yield led
    finally:
        led.close()


def _state(led: mc.Ledger) -> list[tuple[str, bytes]]:
    return list(led.backend.store.state_items())


def _rejected(led: mc.Ledger, code: str, call: object) -> None:
    before = _state(led)
    with pytest.raises(RejectedError) as info:
        call()  # type: ignore[operator]
    assert info.value.reason_code == code, info.value.message
    entry = led.entry(info.value.index)
    assert (entry.outcome.accepted, entry.outcome.code) == (False, code), "logged as evidence"
    assert _state(led) == before, "a rejection changes no state"


def test_genesis_sets_a_quorum_of_two_admins(gov: mc.Ledger) -> None:
    assert gov.members.quorum == 2
    assert [m["name"] for m in gov.members.list()] == ["alice", "dave", "bob", "carol"]


def test_one_admin_alone_cannot_add_a_member(gov: mc.Ledger) -> None:
    erin = verifier_of(make_signer("erin"))
    _rejected(
        gov,
        "quorum_not_met",
        lambda: gov.members.add(
            erin, roles=["evaluator"], org="lab", signers=[make_signer("alice")]
        ),
    )
    gov.members.add(
        erin, roles=["evaluator"], org="lab", signers=[make_signer("alice"), make_signer("dave")]
    )
    assert gov.members.get("erin")["roles"] == ["evaluator"]
    assert gov.record_event("evaluated", {"ok": True}, make_signer("erin")).outcome.accepted


def test_a_trainer_cannot_stand_in_for_an_admin(gov: mc.Ledger) -> None:
    erin = verifier_of(make_signer("erin"))
    _rejected(
        gov,
        "quorum_not_met",
        lambda: gov.members.add(
            erin, roles=["admin"], signers=[make_signer("alice"), make_signer("bob")]
        ),
    )


def test_self_approval_with_two_keys_counts_once(gov: mc.Ledger, tmp_path: Path) -> None:
    alice = make_signer("alice")
    second = Ed25519Signer("alice", b"\x07" * 32)
    gov.members.rotate("alice", add=[verifier_of(second)], signers=[alice])
    assert len(gov.members.get("alice")["keys"]) == 2
    erin = verifier_of(make_signer("erin"))
    _rejected(
        gov,
        "quorum_not_met",
        lambda: gov.members.add(erin, roles=["trainer"], signers=[alice, second]),
    )


def test_a_revoked_member_is_refused_and_the_attempt_logged(gov: mc.Ledger) -> None:
    admins = [make_signer("alice"), make_signer("dave")]
    gov.members.revoke("bob", reason="left the company", signers=admins)
    bob = make_signer("bob")
    size = gov.size
    ack = gov.record_event("train.start", {}, bob)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "member_revoked")
    # the reason is committed (contract-set 8): the outcome says so, the member's
    # record reads it back where this side holds its disclosure
    assert ack.outcome.reason == "bob was revoked: (a committed field)"
    assert gov.members.get("bob")["reason"] == "left the company"
    assert gov.size == size + 1
    _rejected(
        gov, "member_revoked", lambda: gov.members.revoke("bob", reason="again", signers=admins)
    )


def test_retired_keys_sign_nothing(gov: mc.Ledger) -> None:
    old, new = make_signer("bob"), Ed25519Signer("bob", b"\x09" * 32)
    gov.members.rotate("bob", add=[verifier_of(new)], remove=[verifier_of(old)], signers=[old])
    assert gov.record_event("e", {}, new).outcome.accepted
    ack = gov.record_event("e", {}, old)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "key_retired")
    with pytest.raises(UnknownKeyError):  # a key never registered is refused before the log
        gov.record_event("e", {}, Ed25519Signer("bob", b"\x0a" * 32))


def test_the_quorum_guards_itself(gov: mc.Ledger) -> None:
    alice, dave = make_signer("alice"), make_signer("dave")
    _rejected(gov, "quorum_not_met", lambda: gov.members.set_quorum(1, signers=[alice]))
    _rejected(gov, "quorum_unreachable", lambda: gov.members.set_quorum(3, signers=[alice, dave]))
    _rejected(
        gov,
        "quorum_unreachable",
        lambda: gov.members.revoke("dave", reason="x", signers=[alice, dave]),
    )
    gov.members.set_quorum(1, signers=[alice, dave])
    assert gov.members.quorum == 1
    gov.members.update("bob", roles=["trainer", "evaluator"], signers=[alice])
    assert gov.members.get("bob")["roles"] == ["trainer", "evaluator"]


def test_replayed_governance_is_refused_and_audit_replays_it_all(gov: mc.Ledger) -> None:
    admins = [make_signer("alice"), make_signer("dave")]
    env = gov.members.draft("member.revoke", {"name": "carol", "reason": "audit over"}, "alice")
    for s in admins:
        env = env.with_signature(s)
    gov.members.submit(env)
    size = gov.size
    gov.members.submit(env)  # a retry: answered from the log, applied once
    assert gov.size == size
    report = gov.audit()
    assert report.rejected == 0 and report.accepted == gov.size


def test_policies_are_set_by_quorum_and_deny_with_their_rule(
    gov: mc.Ledger, tmp_path: Path
) -> None:
    alice, dave, bob = make_signer("alice"), make_signer("dave"), make_signer("bob")
    rule = 'model.metrics.accuracy >= 0.9 && "trainer" in actor.roles'
    _rejected(
        gov, "quorum_not_met", lambda: gov.policies.set("model.register", rule, signers=[alice])
    )
    gov.policies.set(
        "model.register", rule, description="accurate, by trainers", signers=[alice, dave]
    )
    assert gov.policies.get("model.register")["version"] == 1  # type: ignore[index]

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    gov.identity = bob
    _rejected(
        gov, "policy_denied", lambda: gov.models.register("m", weights, metrics={"accuracy": 0.5})
    )
    assert gov.models.register("m", weights, metrics={"accuracy": 0.95}).version == 1

    # a rule that cannot be evaluated denies, with the error as the reason
    gov.policies.set("event.record", "tx.body.data.level > 3", signers=[alice, dave])
    ack = gov.record_event("alert", {"no_level": True}, bob)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "policy_error")
    assert gov.record_event("alert", {"level": 5}, bob).outcome.accepted

    # test a draft without submitting it
    draft = gov.members.draft("event.record", {"event": "e", "data": {"level": 1}}, "bob")
    decision = gov.policies.test(draft.with_signature(bob))
    assert not decision.allowed and decision.rule == "tx.body.data.level > 3"
    size = gov.size
    gov.policies.test(draft)
    assert gov.size == size, "testing writes nothing"

    gov.policies.set("event.record", None, signers=[alice, dave])
    assert gov.policies.get("event.record") is None
    assert gov.record_event("alert", {}, bob).outcome.accepted
    assert gov.audit().size == gov.size


def test_a_policy_per_environment_wins_over_the_type_policy(gov: mc.Ledger) -> None:
    from modelchain.contracts.base import Call, Overlay, Rejected
    from modelchain.contracts.policy import enforce
    from modelchain.contracts.state import policy_key

    rule = gov.contracts.rule("event.record")
    assert rule is not None
    state = Overlay(gov.store)
    record = {"version": 1, "action": "", "description": "", "set_at": 0, "by": []}
    state.put(policy_key("model.deploy"), {**record, "rule": "true"})
    state.put(policy_key("model.deploy:production"), {**record, "rule": 'env == "staging"'})

    def call(env: str) -> Call:
        tx = gov.transaction("model.deploy", {"env": env}, "alice")
        return Call(gov.size, tx, ("alice",))

    enforce(state, call("staging"), rule)  # only the type's policy applies
    with pytest.raises(Rejected, match=r"model\.deploy:production v1"):
        enforce(state, call("production"), rule)


def test_a_rule_that_does_not_compile_never_reaches_the_log(gov: mc.Ledger) -> None:
    from modelchain.errors import MalformedError

    size = gov.size
    with pytest.raises(MalformedError, match="does not compile"):
        gov.policies.set("model.register", "1 +", signers=[make_signer("alice")])
    assert gov.size == size


def test_models_need_quality_attested_data_when_the_policy_says_so(
    gov: mc.Ledger, tmp_path: Path
) -> None:
    alice, dave, bob = make_signer("alice"), make_signer("dave"), make_signer("bob")
    val, ev = make_signer("val"), make_signer("ev")
    gov.members.add(verifier_of(val), roles=["validator"], org="qa", signers=[alice, dave])
    gov.members.add(verifier_of(ev), roles=["evaluator"], org="lab", signers=[alice, dave])
    gov.members.add(
        verifier_of(make_signer("steward")), roles=["data-steward"], signers=[alice, dave]
    )
    gov.policies.set(
        "model.register",
        '"trainer" in actor.roles && datasets.all(d, d.quality_passed)',
        description="trainers, on quality-attested data",
        signers=[alice, dave],
    )
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    gov.datasets.register("d", data, signer=make_signer("steward"))
    gov.runs.record("r", outputs=[model], datasets=[("d", 1)], code_dir=None, signer=bob)
    gov.identity = bob
    _rejected(gov, "policy_denied", lambda: gov.models.register("m", model, run="r"))
    _rejected(
        gov, "not_permitted", lambda: gov.datasets.attest("d", 1, {"passed": True}, signer=bob)
    )
    gov.datasets.attest("d", 1, {"passed": True, "checks": [{"name": "nulls"}]}, signer=val)
    _rejected(
        gov, "already_attested", lambda: gov.datasets.attest("d", 1, {"passed": True}, signer=val)
    )
    v = gov.models.register("m", model, run="r")
    gov.models.evaluate("m", v.version, dataset=("d", 1), metrics={"accuracy": 0.91}, signer=ev)
    record = gov.models.get("m").record
    assert record["evaluations"][0]["metrics"] == {"accuracy": 0.91}
    assert gov.datasets.get("d", 1).record["attestations"][0]["by"] == "val"
    assert gov.audit().size == gov.size
