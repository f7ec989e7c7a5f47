"""Stale approvals (contract-set version 5): an approval older than the approval
period by the deploying entry's time, or recorded before the version's last
rollback from that environment, does not count; a rolled-back version needs a
fresh approval to come back. Under version 4 every approval counts, as it did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ORIGIN,
    PEOPLE,
    expect_rejected,
    founders,
    init_on_version,
    make_signer,
    run_cli,
    verify_log,
)

import modelchain as mc
from modelchain.contracts.governance import DEFAULT_APPROVAL_TTL_MS
from modelchain.contracts.types import APPROVAL_TTL_SET, PERMISSIONS_SET
from modelchain.contracts.versions import CURRENT_VERSION
from modelchain.errors import MalformedError, UsageError

DAY = 24 * 60 * 60 * 1000
NOW = 1_800_000_000_000
RULE = "metrics.error_rate > 0.05"
PRODUCTION = {
    "model.deploy:production": {
        "rule": "size(approvals) >= 1",
        "description": "production needs an approval that counts",
    }
}


class Clock:
    """The node's clock, moved by the test: entries' times come from it."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _make(path: Path, clock: Clock, version: int) -> mc.Ledger:
    """The conftest people (alice and dave admins, quorum 2) on a genesis naming
    contract-set ``version``, production needing one approval; models m v1, v2."""
    led = init_on_version(
        path, version, org="acme", members=founders(PEOPLE), policies=PRODUCTION, clock=clock
    )
    for n in (1, 2):
        weights = path.parent / f"{path.name}-v{n}.bin"
        weights.write_bytes(f"weights-{n}".encode())
        led.models.register("m", weights, signer=make_signer("bob"))
    return led


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def v5(tmp_path: Path, clock: Clock) -> Iterator[mc.Ledger]:
    led = _make(tmp_path / "v5", clock, 5)
    try:
        yield led
    finally:
        led.close()


@pytest.fixture
def v4(tmp_path: Path, clock: Clock) -> Iterator[mc.Ledger]:
    led = _make(tmp_path / "v4", clock, 4)
    try:
        yield led
    finally:
        led.close()


def _approve(led: mc.Ledger, version: int) -> mc.Ack:
    return led.deployments.approve("m", version, "production", role="risk", signer=s("risk"))


def _deploy(led: mc.Ledger, version: int) -> mc.Ack:
    return led.deployments.deploy(
        "m", version, "production", rollback_rule=RULE, signer=make_signer("ops")
    )


def s(name: str) -> mc.Signer:
    return make_signer(name)


def _breach(led: mc.Ledger) -> int:
    """v1 then v2 approved and deployed; a report breaches v2's rule and rolls
    production back to v1. Returns the rollback's index."""
    _approve(led, 1)
    _approve(led, 2)
    _deploy(led, 1)
    _deploy(led, 2)
    ack = led.deployments.report("m", "production", {"error_rate": 0.2}, signer=s("mon"))
    assert led.deployments.current("m", "production")["version"] == 1  # type: ignore[index]
    return ack.index


# -- a rollback makes the approvals before it stale ------------------------------------


def test_v5_a_rolled_back_version_needs_a_fresh_approval(
    v5: mc.Ledger, env: dict[str, str]
) -> None:
    rollback = _breach(v5)
    refused = expect_rejected(v5, "stale_approvals", lambda: _deploy(v5, 2))
    assert f"rolled back from production at entry {rollback}" in refused.message
    assert "fresh approval" in refused.message
    fresh = _approve(v5, 2)  # the same approver again: the old approval no longer counts
    _deploy(v5, 2)
    current = v5.deployments.current("m", "production")
    assert current is not None and current["version"] == 2
    assert [a["index"] for a in current["approvals"]] == [fresh.index]
    verify_log(v5, env)


def test_v5_a_fresh_approval_counts_only_for_its_environment(v5: mc.Ledger) -> None:
    _breach(v5)
    v5.deployments.approve("m", 2, "staging", role="risk", signer=s("risk"))
    expect_rejected(v5, "stale_approvals", lambda: _deploy(v5, 2))


def test_v5_a_rollback_binds_without_any_policy(v5: mc.Ledger) -> None:
    """Staging has no policy: the contract itself asks for a fresh approval."""
    staging = v5.deployments
    staging.deploy("m", 1, "staging", signer=s("ops"))
    staging.deploy("m", 2, "staging", signer=s("ops"))
    staging.rollback("m", "staging", reason="latency", signer=s("ops"))
    expect_rejected(
        v5, "stale_approvals", lambda: staging.deploy("m", 2, "staging", signer=s("ops"))
    )
    staging.deploy("m", 1, "staging", signer=s("ops"))  # never rolled back from: no approval
    staging.approve("m", 2, "staging", role="risk", signer=s("risk"))
    staging.deploy("m", 2, "staging", signer=s("ops"))


def test_v4_redeploys_with_the_old_approvals(v4: mc.Ledger, env: dict[str, str]) -> None:
    _breach(v4)
    _deploy(v4, 2)  # as version 4 always did
    current = v4.deployments.current("m", "production")
    assert current is not None and current["version"] == 2
    expect_rejected(v4, "already_decided", lambda: _approve(v4, 2))
    verify_log(v4, env)


def test_a_v4_ledger_moving_to_v5_judges_its_old_approvals_from_then_on(
    v4: mc.Ledger, clock: Clock, env: dict[str, str]
) -> None:
    """Entries before the activation keep version 4's outcomes; from it on, the
    approvals recorded under version 4 are judged by version 5's rules."""
    _breach(v4)
    at = v4.size + 1
    v4.members.activate_contracts(5, at=at, signers=[s("alice"), s("dave")])
    assert v4.members.approval_ttl == DEFAULT_APPROVAL_TTL_MS  # the next entry runs 5
    expect_rejected(v4, "stale_approvals", lambda: _deploy(v4, 2))
    _approve(v4, 2)
    _deploy(v4, 2)
    verify_log(v4, env)


# -- approvals expire ---------------------------------------------------------------


def test_v5_an_approval_older_than_the_period_does_not_count(
    v5: mc.Ledger, clock: Clock, env: dict[str, str]
) -> None:
    assert v5.members.approval_ttl == DEFAULT_APPROVAL_TTL_MS == 30 * DAY
    _approve(v5, 1)
    clock.now += 31 * DAY
    expect_rejected(v5, "policy_denied", lambda: _deploy(v5, 1))
    # the gate sees what the contract sees
    gate = v5.policies.gate("model.deploy", _deploy_body(1), "ops")
    assert not gate.allowed and gate.reason.startswith("policy_denied")
    fresh = _approve(v5, 1)  # expired: its approver may approve again
    _deploy(v5, 1)
    current = v5.deployments.current("m", "production")
    assert current is not None and [a["index"] for a in current["approvals"]] == [fresh.index]
    verify_log(v5, env)


def test_v5_an_approval_exactly_the_period_old_counts(v5: mc.Ledger, clock: Clock) -> None:
    _approve(v5, 1)
    clock.now += 30 * DAY
    _deploy(v5, 1)


def test_v5_governance_sets_the_period(v5: mc.Ledger, clock: Clock) -> None:
    admins = [s("alice"), s("dave")]
    expect_rejected(
        v5, "quorum_not_met", lambda: v5.members.set_approval_ttl(90 * DAY, signers=admins[:1])
    )
    v5.members.set_approval_ttl(90 * DAY, signers=admins)
    assert v5.members.approval_ttl == 90 * DAY
    _approve(v5, 1)
    clock.now += 31 * DAY
    _deploy(v5, 1)  # within 90 days
    _approve(v5, 2)
    v5.members.set_approval_ttl(7 * DAY, signers=admins)
    clock.now += 8 * DAY
    expect_rejected(v5, "policy_denied", lambda: _deploy(v5, 2))


def test_v5_the_period_is_checked_before_anything_is_signed(v5: mc.Ledger) -> None:
    admins = [s("alice"), s("dave")]
    size = v5.size
    for bad in (0, 3661 * DAY):
        with pytest.raises(MalformedError):
            v5.members.set_approval_ttl(bad, signers=admins)
    with pytest.raises(MalformedError):
        v5.members.draft(APPROVAL_TTL_SET, {"ttl_ms": "30d"}, "alice")
    assert v5.size == size


def test_v5_the_period_is_not_a_role_map_entry(v5: mc.Ledger) -> None:
    env = v5.members.draft(PERMISSIONS_SET, {"type": APPROVAL_TTL_SET, "roles": []}, "alice")
    for n in ("alice", "dave"):
        env = env.with_signature(s(n))
    ack = v5.submit(env)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "governance_type")


def test_v4_approvals_never_expire(v4: mc.Ledger, clock: Clock, env: dict[str, str]) -> None:
    assert v4.members.approval_ttl is None
    size = v4.size
    with pytest.raises(UsageError, match="from version 5"):
        v4.members.set_approval_ttl(90 * DAY, signers=[s("alice"), s("dave")])
    assert v4.size == size
    _approve(v4, 1)
    clock.now += 400 * DAY
    _deploy(v4, 1)
    # under version 4 the type is unknown and a role-map entry for its name an ordinary one
    draft = v4.members.draft(PERMISSIONS_SET, {"type": APPROVAL_TTL_SET, "roles": []}, "alice")
    for n in ("alice", "dave"):
        draft = draft.with_signature(s(n))
    assert v4.submit(draft).outcome.accepted
    verify_log(v4, env)


def _deploy_body(version: int) -> dict[str, Any]:
    return {"model": "m", "version": version, "env": "production", "rollback_rule": RULE}


# -- the command line ---------------------------------------------------------------


def test_cli_shows_and_sets_the_period(env: dict[str, str], tmp_path: Path) -> None:
    run_cli(env, "init", "--origin", ORIGIN, "--admin", "alice")
    shown = json.loads(run_cli(env, "governance", "approval-ttl", "--json").stdout)
    assert shown == {"ttl_ms": 30 * DAY, "contract_version": CURRENT_VERSION}
    assert run_cli(env, "governance", "approval-ttl").stdout == "approvals count for 30d\n"
    set_ = json.loads(run_cli(env, "governance", "approval-ttl", "90d", "--json").stdout)
    assert set_["result"] == "accepted"
    assert run_cli(env, "governance", "approval-ttl").stdout == "approvals count for 90d\n"
    size = json.loads(run_cli(env, "log", "verify", "--json").stdout)
    for bad in ("0d", "a month", "9999d"):
        refused = run_cli(env, "governance", "approval-ttl", bad, ok=False)
        assert refused.returncode != 0 and refused.stderr.strip()
    assert json.loads(run_cli(env, "log", "verify", "--json").stdout) == size
