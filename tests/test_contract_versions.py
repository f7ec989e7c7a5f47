"""Contract-set versions and the role map: a ledger runs the rules of the version
active at each index, a node refuses an index whose version it does not know,
and a quorum changes the versions and the role map from a later index on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import ORIGIN, make_signer, run_cli

import modelchain as mc
from modelchain.contracts import ContractSet, TypeRule, default_contracts
from modelchain.contracts.base import Call, Overlay
from modelchain.contracts.genesis import DEFAULT_PERMISSIONS, genesis_body
from modelchain.contracts.ledger import authorize, resolve_signer
from modelchain.contracts.policy import enforce
from modelchain.contracts.types import (
    ACCESS_LOG,
    CHECKPOINT_POLICY_SET,
    CONTRACTS_ACTIVATE,
    EVENT,
    GENESIS,
    GOVERNANCE_TYPES,
    MEMBER_ADD,
    PERMISSIONS_SET,
)
from modelchain.contracts.versions import CURRENT_VERSION
from modelchain.core.identity import COSIGNATURE_V1, verifier_of
from modelchain.errors import ContractVersionError, RejectedError, UsageError
from modelchain.ledger import ledger as ledger_mod
from modelchain.ledger.ledger import Founder

V1_LEDGER = Path(__file__).parent / "data" / "ledger-v1"
FL_ROUND = "fl.round"  # a type added after a ledger's genesis


def _check_round(body: Mapping[str, Any]) -> None:
    return None


def _exec_round(state: Overlay, call: Call) -> None:
    return None


def _contracts(versions: frozenset[int] | None = None) -> ContractSet:
    """The default contracts and one type the role maps do not know."""
    base = default_contracts()
    rules = {t: r for t in base.types if (r := base.rule(t)) is not None}
    rules[FL_ROUND] = TypeRule(_check_round, _exec_round)
    extra = {} if versions is None else {"versions": versions}
    return ContractSet(rules, resolve_signer, authorize, enforce, **extra)


_PEOPLE = [
    ("dave", "bank", ("admin",)),
    ("bob", "bank", ("approver:risk",)),
    ("carol", "audit-co", ("auditor",)),
    ("fiona", "lab", ("fl-coordinator",)),
]


def _make(path: Path, contracts: ContractSet, version: int | None = CURRENT_VERSION) -> mc.Ledger:
    """A ledger whose genesis names contract-set ``version``; None writes the
    genesis as releases before versions did (no ``contracts`` field)."""
    made = genesis_body

    def body(*args: Any, **kwargs: Any) -> dict[str, Any]:
        found = made(*args, **kwargs, contracts=version or 1)
        if version is None:
            del found["contracts"]
        return found

    founders = [Founder(verifier_of(make_signer(n)), o, r) for n, o, r in _PEOPLE]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_mod, "genesis_body", body)
        return mc.init(
            path, ORIGIN, make_signer("alice"), org="acme", members=founders, contracts=contracts
        )


@pytest.fixture
def v2(tmp_path: Path) -> Iterator[mc.Ledger]:
    led = _make(tmp_path / "v2", _contracts())
    try:
        yield led
    finally:
        led.close()


@pytest.fixture
def v1(tmp_path: Path) -> Iterator[mc.Ledger]:
    """A ledger in the format before versions: its genesis names none."""
    led = _make(tmp_path / "v1", _contracts(), None)
    try:
        yield led
    finally:
        led.close()


def _submit(led: mc.Ledger, type_: str, body: dict[str, Any], *names: str) -> mc.Ack:
    """Submit as ``names[0]``, co-signed by the others; the ack whatever the outcome."""
    env = led.members.draft(type_, body, names[0])
    for n in names:
        env = env.with_signature(make_signer(n))
    return led.submit(env)


def _event(led: mc.Ledger, who: str) -> mc.Ack:
    return _submit(led, EVENT, {"event": "note", "data": {}}, who)


def _admins() -> list[Any]:
    return [make_signer("alice"), make_signer("dave")]


# -- the version a ledger runs ------------------------------------------------------


def test_a_new_genesis_records_the_current_version(v2: mc.Ledger) -> None:
    assert v2.entry(0).transaction.body["contracts"] == CURRENT_VERSION
    assert v2.members.contract_version == CURRENT_VERSION
    [step] = v2.members.contract_versions()
    assert (step["version"], step["from"], step["set_at"]) == (CURRENT_VERSION, 0, 0)


def test_a_genesis_without_a_version_runs_version_1(v1: mc.Ledger) -> None:
    assert "contracts" not in v1.entry(0).transaction.body
    assert v1.members.contract_version == 1
    assert v1.members.contract_versions() == []
    v1.audit()


def test_a_ledger_written_before_versions_replays_as_written(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """tests/data/ledger-v1 was written by modelchain before issue 10 changed what a
    named approver holds and what an approval's policy sees (see its make.py)."""
    path = tmp_path / "ledger"
    shutil.copytree(V1_LEDGER, path, ignore=shutil.ignore_patterns("*.py"))
    (path / "log.key").chmod(0o600)
    led = mc.open(path)
    try:
        outcomes = [(led.entry(i).transaction.type, led.entry(i).outcome) for i in range(6)]
        report = led.audit()  # re-executes every entry and compares outcomes and state
    finally:
        led.close()
    assert report.size == 6
    assert [(t, o.code) for t, o in outcomes[1:5]] == [
        (EVENT, "not_permitted"),  # approver:risk did not hold approver
        ("policy.set", ""),
        ("model.approve", "policy_error"),  # the rule saw no `model`
        (ACCESS_LOG, ""),  # open: not in the role map, a version-1 type
    ]
    run_cli({**env, "MODELCHAIN_LEDGER": str(path)}, "log", "verify")


def test_version_1_rules_hold_on_a_version_1_ledger(v1: mc.Ledger, v2: mc.Ledger) -> None:
    # A named approval role holds the approver role under version 2 only.
    assert _event(v1, "bob").outcome.code == "not_permitted"
    assert _event(v2, "bob").outcome.accepted
    # A type the role map does not list: open under version 1 if version 1 had it,
    # denied under version 2 (whose default map lists every type but governance).
    body = {"artifact": {"kind": "dataset", "name": "d", "version": 1}, "purpose": "x"}
    assert _submit(v1, ACCESS_LOG, body, "carol").outcome.accepted
    assert _submit(v2, ACCESS_LOG, body, "carol").outcome.accepted  # listed: "*"
    v1.audit()
    v2.audit()


# -- a type missing from the role map -------------------------------------------------


@pytest.mark.parametrize("fixture", ["v1", "v2"])
def test_a_type_missing_from_the_role_map_is_denied(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    led: mc.Ledger = request.getfixturevalue(fixture)
    assert FL_ROUND not in led.members.permissions
    ack = _submit(led, FL_ROUND, {}, "alice")  # not even an admin
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "not_permitted")
    assert "role map lists no roles for fl.round" in (ack.outcome.reason or "")
    led.audit()


def test_the_default_role_map_lists_every_type_but_governance() -> None:
    listed = set(DEFAULT_PERMISSIONS)
    assert listed | GOVERNANCE_TYPES | {GENESIS} == default_contracts().types
    assert not listed & GOVERNANCE_TYPES


# -- changing the role map ------------------------------------------------------------


def test_one_admin_cannot_change_the_role_map(v2: mc.Ledger) -> None:
    with pytest.raises(RejectedError) as info:
        v2.members.set_permissions(FL_ROUND, ["fl-coordinator"], signers=[make_signer("alice")])
    assert info.value.reason_code == "quorum_not_met"
    assert FL_ROUND not in v2.members.permissions


@pytest.mark.parametrize("fixture", ["v1", "v2"])
def test_a_role_map_change_takes_effect_at_the_next_index(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    led: mc.Ledger = request.getfixturevalue(fixture)
    assert not _submit(led, FL_ROUND, {}, "fiona").outcome.accepted
    ack = led.members.set_permissions(FL_ROUND, ["fl-coordinator"], signers=_admins())
    assert led.members.permissions[FL_ROUND] == ["fl-coordinator"]
    after = _submit(led, FL_ROUND, {}, "fiona")
    assert after.index == ack.index + 1 and after.outcome.accepted
    assert _submit(led, FL_ROUND, {}, "carol").outcome.code == "not_permitted"
    # the auditor gains event.record; an empty list then takes it from everyone
    assert _event(led, "carol").outcome.code == "not_permitted"
    led.members.set_permissions(
        EVENT, [*led.members.permissions[EVENT], "auditor"], signers=_admins()
    )
    assert _event(led, "carol").outcome.accepted
    led.members.set_permissions(EVENT, [], signers=_admins())
    assert _event(led, "alice").outcome.code == "not_permitted"
    led.audit()


def test_governance_types_are_not_in_the_role_map(v2: mc.Ledger) -> None:
    with pytest.raises(RejectedError) as info:
        v2.members.set_permissions(MEMBER_ADD, ["admin"], signers=_admins())
    assert info.value.reason_code == "governance_type"


# -- activating a version -------------------------------------------------------------


def test_one_admin_cannot_activate_a_version(v1: mc.Ledger) -> None:
    with pytest.raises(RejectedError) as info:
        v1.members.activate_contracts(2, at=v1.size + 5, signers=[make_signer("alice")])
    assert info.value.reason_code == "quorum_not_met"
    assert v1.members.contract_versions() == []


def test_a_version_is_activated_at_a_later_index(v1: mc.Ledger) -> None:
    at = v1.size + 3  # the activation itself, then two entries under version 1
    ack = v1.members.activate_contracts(2, at=at, signers=_admins())
    assert ack.outcome.accepted and ack.index == at - 3
    assert _event(v1, "bob").outcome.code == "not_permitted"  # at - 2: version 1
    assert _event(v1, "bob").outcome.code == "not_permitted"  # at - 1: version 1
    assert v1.members.contract_version == 2
    ack = _event(v1, "bob")
    assert ack.index == at and ack.outcome.accepted  # version 2: approver:risk holds approver
    [step] = v1.members.contract_versions()
    assert (step["version"], step["from"], step["by"]) == (2, at, ["alice", "dave"])
    v1.audit()


@pytest.mark.parametrize(
    ("version", "offset", "code"),
    [(2, 0, "activation_not_future"), (2, -1, "activation_not_future"), (1, 5, None)],
)
def test_an_activation_is_for_the_future_and_never_goes_back(
    v2: mc.Ledger, version: int, offset: int, code: str | None
) -> None:
    ack = _submit(
        v2, CONTRACTS_ACTIVATE, {"version": version, "at": v2.size + offset}, "alice", "dave"
    )
    if code is None:  # version 1 on a version-2 ledger
        assert ack.outcome.code == "version_downgrade"
    else:
        assert ack.outcome.code == code
    assert v2.members.contract_version == CURRENT_VERSION


NEXT = CURRENT_VERSION + 1  # a version another release may know, this one does not


def test_the_sdk_refuses_to_activate_a_version_it_does_not_know(v2: mc.Ledger) -> None:
    with pytest.raises(UsageError, match=f"does not know contract-set version {NEXT}"):
        v2.members.activate_contracts(NEXT, at=v2.size + 5, signers=_admins())


def test_a_node_refuses_entries_under_a_version_it_does_not_know(v2: mc.Ledger) -> None:
    at = v2.size + 2
    # Another release's quorum activates a newer version; this node still decides alike.
    ack = _submit(v2, CONTRACTS_ACTIVATE, {"version": NEXT, "at": at}, "alice", "dave")
    assert ack.outcome.accepted
    assert _event(v2, "alice").outcome.accepted  # at - 1, the current version
    size = v2.size
    with pytest.raises(ContractVersionError) as info:
        _event(v2, "alice")
    assert (info.value.version, info.value.index, info.value.exit_code) == (NEXT, at, 10)
    assert f"contract-set version {NEXT}" in info.value.message
    assert v2.size == size, "nothing was logged"
    v2.audit()  # what was logged still verifies


def test_a_pending_activation_can_be_withdrawn(v2: mc.Ledger) -> None:
    at = v2.size + 3
    assert _submit(
        v2, CONTRACTS_ACTIVATE, {"version": NEXT, "at": at}, "alice", "dave"
    ).outcome.accepted
    withdraw = {"version": CURRENT_VERSION, "at": at}
    assert _submit(v2, CONTRACTS_ACTIVATE, withdraw, "alice", "dave").outcome.accepted
    for _ in range(3):
        assert _event(v2, "alice").outcome.accepted
    assert [s["version"] for s in v2.members.contract_versions()] == [CURRENT_VERSION]
    v2.audit()


def test_an_old_node_refuses_to_replay_past_an_activation(tmp_path: Path) -> None:
    """A node knowing only version 1 executes a version-1 ledger up to the index
    where version 2 starts, and refuses there rather than decide otherwise."""
    path = tmp_path / "v1"
    led = _make(path, _contracts(), None)
    at = led.size + 2
    led.members.activate_contracts(2, at=at, signers=_admins())
    _event(led, "bob")
    _event(led, "bob")  # index at: version 2
    led.close()
    old = mc.open(path, contracts=_contracts(frozenset({1})))
    try:
        with pytest.raises(ContractVersionError) as info:
            old.audit()
        assert info.value.index == at
        with pytest.raises(ContractVersionError):
            _event(old, "alice")
    finally:
        old.close()


def test_a_genesis_naming_an_unknown_version_is_refused_at_admission(v2: mc.Ledger) -> None:
    body = genesis_body(
        ORIGIN,
        v2.log_key,
        [m.to_json() for m in [Founder(verifier_of(make_signer("alice")), "acme", ("admin",))]],
        contracts=CURRENT_VERSION + 1,
    )
    tx = v2.transaction(GENESIS, body, "alice")
    with pytest.raises(ContractVersionError):
        default_contracts().check(tx)
    default_contracts().check(v2.transaction(GENESIS, {**body, "contracts": 1}, "alice"))


def test_new_types_are_governed_by_a_quorum() -> None:
    assert {PERMISSIONS_SET, CONTRACTS_ACTIVATE} <= GOVERNANCE_TYPES


# -- version 3: the checkpoint policy is governed ----------------------------------


def _policy_text(led: mc.Ledger, *extra: str) -> str:
    return led.policy.to_text().replace("quorum none\n", "".join(extra) + "quorum none\n")


def test_before_version_3_a_checkpoint_policy_change_is_unknown_as_it_was(
    tmp_path: Path,
) -> None:
    with _make(tmp_path / "l", _contracts(), 2) as led:
        before = led.policy
        ack = _submit(led, CHECKPOINT_POLICY_SET, {"policy": _policy_text(led)}, "alice", "dave")
        assert ack.outcome.code == "unknown_type"
        assert led.policy == before
        led.audit()


def test_a_quorum_of_admins_replaces_the_checkpoint_policy(v2: mc.Ledger) -> None:
    witness = verifier_of(make_signer("w1.example")).with_type(COSIGNATURE_V1)
    text = _policy_text(v2, f"witness w1 {witness}\n")
    alone = _submit(v2, CHECKPOINT_POLICY_SET, {"policy": text}, "alice")
    assert alone.outcome.code == "quorum_not_met"
    bad = _submit(v2, CHECKPOINT_POLICY_SET, {"policy": "quorum nobody\n"}, "alice", "dave")
    assert bad.outcome.code == "bad_policy"
    other = text.replace(v2.log_key.to_string(), verifier_of(make_signer("x")).to_string())
    stranger = _submit(v2, CHECKPOINT_POLICY_SET, {"policy": other}, "alice", "dave")
    assert stranger.outcome.code == "bad_policy"  # no log of this ledger signs under it
    ack = v2.members.set_checkpoint_policy(text, signers=_admins())
    assert ack.outcome.accepted
    assert [w.name for w in v2.policy.witnesses] == ["w1"]
    v2.audit()
