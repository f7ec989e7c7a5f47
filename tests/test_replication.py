"""Replication (contract-set version 8, ADR 19): governance sets how many organisations
must hold a verified copy of a model version before it is deployed; each records its
copy (``artifact.replica``) once every object is checked by digest; a deploy short of
the factor is refused, naming who holds copies; policies see the count. Under version
7 nothing of this exists, and a ledger that activates 8 denies ``artifact.replica``
until its role map lists it. Every ledger here replays to the same outcomes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

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
from modelchain.contracts.genesis import DEFAULT_PERMISSIONS, default_permissions
from modelchain.contracts.types import (
    ARTIFACT_REPLICA,
    GOVERNANCE_TYPES,
    PERMISSIONS_SET,
    REPLICATION_SET,
)
from modelchain.contracts.versions import REPLICATION_VERSION
from modelchain.errors import IntegrityError, MalformedError, RejectedError, UsageError
from modelchain.ledger.artifacts import RecordedCopies
from modelchain.storage.artifacts import open_store

ADMINS = ("alice", "dave")
PRODUCTION = {
    "model.deploy:production": {
        "rule": 'replication.copies >= 2 && "bank" in replication.orgs',
        "description": "production runs only what the bank holds a copy of too",
    }
}


def s(name: str) -> mc.Signer:
    return make_signer(name)


def _admins() -> list[mc.Signer]:
    return [s(n) for n in ADMINS]


def _make(tmp: Path, version: int | None) -> mc.Ledger:
    """The conftest people (acme, bank, qa-co; alice and dave admins) on a genesis
    naming contract-set ``version`` (None: the current one); model m v1 stored in
    acme's store by bob."""
    led = init_on_version(
        tmp / "l", version, org="acme", members=founders(PEOPLE), policies=PRODUCTION,
        home=tmp / "home",
    )  # fmt: skip
    weights = tmp / "weights"
    weights.mkdir()
    (weights / "model.bin").write_bytes(b"weights" * 1000)
    (weights / "config.json").write_text('{"layers": 2}')
    led.models.register("m", weights, signer=s("bob"), store=tmp / "acme-store")
    return led


@pytest.fixture
def v8(tmp_path: Path) -> Iterator[mc.Ledger]:
    led = _make(tmp_path, None)
    try:
        yield led
    finally:
        led.close()


@pytest.fixture
def v7(tmp_path: Path) -> Iterator[mc.Ledger]:
    led = _make(tmp_path, 7)
    try:
        yield led
    finally:
        led.close()


def _deploy(led: mc.Ledger, env: str = "staging") -> mc.Ack:
    return led.deployments.deploy("m", 1, env, signer=s("ops"))


def test_a_deploy_waits_for_the_replication_factor(
    v8: mc.Ledger, tmp_path: Path, env: dict[str, str]
) -> None:
    acme, bank = tmp_path / "acme-store", open_store(tmp_path / "bank-store")
    assert v8.members.replication == 0  # unset: no requirement
    v8.artifacts.record_replica("model", "m", 1, acme, signer=s("bob"))
    assert set(v8.artifacts.replicas("model", "m", 1)) == {"acme"}
    v8.members.set_replication(2, signers=_admins())
    assert v8.members.replication == 2
    refused = expect_rejected(v8, "under_replicated", lambda: _deploy(v8))
    assert "held by 1 organisation(s) (acme)" in refused.message
    assert "needs 2" in refused.message
    (status,) = v8.artifacts.replication()
    assert (status.copies, status.required, status.under_replicated) == (1, 2, True)
    # the bank mirrors acme's store: each copied object verified, then its copy recorded
    synced = v8.artifacts.sync(bank, acme)
    recorded = v8.artifacts.record_replicas(bank, signer=s("mon"), verified=synced.copied)
    assert recorded == RecordedCopies((("model", "m", 1),), ())
    assert v8.artifacts.record_replicas(bank, signer=s("mon")).recorded == ()  # already
    replicas = v8.artifacts.replicas("model", "m", 1)
    assert set(replicas) == {"acme", "bank"} and replicas["bank"]["location"] == bank.url
    assert replicas["bank"]["by"] == "mon"
    _deploy(v8)
    # the policy sees the count and who holds copies
    _deploy(v8, "production")
    verify_log(v8, env)


def test_the_policy_sees_the_copies(v8: mc.Ledger, tmp_path: Path) -> None:
    v8.artifacts.record_replica("model", "m", 1, tmp_path / "acme-store", signer=s("bob"))
    refused = expect_rejected(v8, "policy_denied", lambda: _deploy(v8, "production"))
    assert "replication.copies" in refused.message
    _deploy(v8)  # no factor set: staging needs nothing


def test_a_copy_is_recorded_only_once_verified(v8: mc.Ledger, tmp_path: Path) -> None:
    acme = open_store(tmp_path / "acme-store")
    bank = open_store(tmp_path / "bank-store")
    v8.artifacts.sync(bank, acme)
    refs = sorted(v8.artifacts.objects_of("model", "m", 1))
    victim = next(r for r in refs if bank.size(r) == 7000)  # model.bin
    algorithm, digest = victim.split(":")
    (Path(bank.root) / algorithm / digest[:2] / digest).write_bytes(b"X" * 7000)
    size = v8.size
    with pytest.raises(IntegrityError, match="no verified copy") as info:
        v8.artifacts.record_replica("model", "m", 1, bank, signer=s("mon"))
    assert any(d.startswith("damaged ") for d in info.value.differences)
    found = v8.artifacts.record_replicas(bank, signer=s("mon"))  # held in full, damaged
    assert found.recorded == () and found.damaged == (f"model m version 1: damaged {victim}",)
    assert v8.size == size
    bank.delete(victim)
    with pytest.raises(IntegrityError, match="1 objects missing"):
        v8.artifacts.record_replica("model", "m", 1, bank, signer=s("mon"))
    assert v8.artifacts.record_replicas(bank, signer=s("mon")) == RecordedCopies((), ())
    assert v8.artifacts.replicas("model", "m", 1) == {}


def test_the_contract_refuses_unregistered_and_erased_versions(
    v8: mc.Ledger, tmp_path: Path
) -> None:
    body = {"artifact": {"kind": "model", "name": "m", "version": 9}, "location": "/x"}
    env = v8.members.draft(ARTIFACT_REPLICA, body, "bob").with_signature(s("bob"))
    ack = v8.submit(env)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "no_model")
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    v8.datasets.register("d", data, signer=s("steward"), store=tmp_path / "acme-store")
    v8.artifacts.record_replica("dataset", "d", 1, tmp_path / "acme-store", signer=s("steward"))
    v8.artifacts.erase("dataset", "d", 1, "withdrawn", signers=[s("steward"), s("dave")])
    body = {"artifact": {"kind": "dataset", "name": "d", "version": 1}, "location": "/x"}
    env = v8.members.draft(ARTIFACT_REPLICA, body, "bob").with_signature(s("bob"))
    ack = v8.submit(env)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "erased")
    assert [(r.kind, r.name) for r in v8.artifacts.replication()] == [("model", "m")]


def test_one_admin_cannot_set_the_factor(v8: mc.Ledger) -> None:
    refused = expect_rejected(
        v8, "quorum_not_met", lambda: v8.members.set_replication(2, signers=[s("alice")])
    )
    assert "2 distinct admins" in refused.message
    size = v8.size
    for bad in (-1, 65, True):
        with pytest.raises(MalformedError):
            v8.members.set_replication(bad, signers=_admins())
    assert v8.size == size
    v8.members.set_replication(2, signers=_admins())
    v8.members.set_replication(0, signers=_admins())  # 0: no requirement again
    _deploy(v8)


def test_the_factor_is_not_a_role_map_entry(v8: mc.Ledger) -> None:
    env = v8.members.draft(PERMISSIONS_SET, {"type": REPLICATION_SET, "roles": []}, "alice")
    for n in ADMINS:
        env = env.with_signature(s(n))
    ack = v8.submit(env)
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "governance_type")


def test_a_new_ledger_lists_the_replica_type() -> None:
    assert DEFAULT_PERMISSIONS[ARTIFACT_REPLICA] == ["*"]
    assert ARTIFACT_REPLICA in default_permissions(REPLICATION_VERSION)
    assert ARTIFACT_REPLICA not in default_permissions(REPLICATION_VERSION - 1)
    assert REPLICATION_SET in GOVERNANCE_TYPES


# -- version 7: unchanged --------------------------------------------------------------


def test_v7_knows_no_replication(v7: mc.Ledger, tmp_path: Path, env: dict[str, str]) -> None:
    assert ARTIFACT_REPLICA not in v7.members.permissions
    assert v7.members.replication is None
    size = v7.size
    with pytest.raises(UsageError, match="from version 8"):
        v7.members.set_replication(2, signers=_admins())
    assert v7.size == size
    body = {"artifact": {"kind": "model", "name": "m", "version": 1}, "location": "/x"}
    ack = v7.submit(v7.members.draft(ARTIFACT_REPLICA, body, "bob").with_signature(s("bob")))
    assert (ack.outcome.accepted, ack.outcome.code) == (False, "unknown_type")
    draft = v7.members.draft(REPLICATION_SET, {"copies": 2}, "alice")
    for n in ADMINS:
        draft = draft.with_signature(s(n))
    assert v7.submit(draft).outcome.code == "unknown_type"
    # a role-map entry for the factor's name is an ordinary one under 7, as it was
    draft = v7.members.draft(PERMISSIONS_SET, {"type": REPLICATION_SET, "roles": []}, "alice")
    for n in ADMINS:
        draft = draft.with_signature(s(n))
    assert v7.submit(draft).outcome.accepted
    # the deploy context has no replication: the production rule naming it fails
    refused = expect_rejected(v7, "policy_error", lambda: _deploy(v7, "production"))
    assert "replication" in refused.message
    _deploy(v7)
    verify_log(v7, env)


def test_activating_8_denies_replicas_until_the_role_map_lists_them(
    v7: mc.Ledger, tmp_path: Path, env: dict[str, str]
) -> None:
    acme = tmp_path / "acme-store"
    v7.members.activate_contracts(8, at=v7.size + 1, signers=_admins())
    assert v7.members.contract_version == 8
    with pytest.raises(RejectedError, match="lists no roles"):
        v7.artifacts.record_replica("model", "m", 1, acme, signer=s("bob"))
    v7.members.set_replication(1, signers=_admins())  # governance: the quorum, no map
    expect_rejected(v7, "under_replicated", lambda: _deploy(v7))
    v7.members.set_permissions(ARTIFACT_REPLICA, ["trainer"], signers=_admins())
    v7.artifacts.record_replica("model", "m", 1, acme, signer=s("bob"))
    _deploy(v7)
    verify_log(v7, env)


def test_cli_governance_replication(env: dict[str, str]) -> None:
    run_cli(env, "init", "--origin", ORIGIN, "--admin", "alice")
    shown = json.loads(run_cli(env, "governance", "replication", "--json").stdout)
    assert shown == {"copies": 0, "contract_version": REPLICATION_VERSION}
    assert "no replication factor" in run_cli(env, "governance", "replication").stdout
    set_ = json.loads(run_cli(env, "governance", "replication", "2", "--json").stdout)
    assert set_["result"] == "accepted"
    assert run_cli(env, "governance", "replication").stdout == (
        "a model version is deployed once 2 organisations hold a verified copy\n"
    )
    refused = run_cli(env, "governance", "replication", "65", ok=False)
    assert refused.returncode != 0 and refused.stderr.strip()


def test_cli_two_organisations_replicate_before_a_deploy(
    env: dict[str, str], tmp_path: Path
) -> None:
    for name in ("bob", "ops", "mon"):
        run_cli(env, "identity", "new", name)
    members = ("bob:trainer@acme", "ops:deployer@acme", "mon:monitor@bank")
    run_cli(
        env,
        "init",
        "--origin",
        "ledger.example.org/repl",
        "--admin",
        "alice",
        "--org",
        "acme",
        "--no-default-policies",
        *[a for m in members for a in ("--member", m)],
    )
    acme, bank = str(tmp_path / "acme-store"), str(tmp_path / "bank-store")
    model = tmp_path / "fraud"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 5000)
    (model / "config.json").write_text("{}")
    run_cli(env, "model", "register", "fraud", str(model), f"--store={acme}", "--as", "bob")
    status = run_cli(env, "store", "status", "--json")
    found = json.loads(status.stdout)
    assert found["required"] == 0 and found["under_replicated"] == 0
    assert [(v["name"], v["copies"]) for v in found["versions"]] == [("fraud", 1)]
    assert found["versions"][0]["orgs"]["acme"]["by"] == "bob"

    run_cli(env, "governance", "replication", "2")
    refused = run_cli(env, "deploy", "fraud@1", "--env", "staging", "--as", "ops", ok=False)
    assert refused.returncode == 8
    assert "under_replicated" in refused.stderr or "held by 1 organisation" in refused.stderr
    assert "(acme)" in refused.stderr and "needs 2" in refused.stderr
    gated = run_cli(env, "gate", "deploy", "fraud@1", "--env", "staging", "--as", "ops", ok=False)
    assert gated.returncode == 8 and "under_replicated" in gated.stdout + gated.stderr
    short = run_cli(env, "store", "status", ok=False)
    assert short.returncode == 1
    assert "fraud@1\t1/2\tacme (" in short.stdout and "UNDER-REPLICATED" in short.stdout

    # the bank mirrors acme's store: every object verified, its copy recorded
    synced = run_cli(env, "store", "sync", "--store", bank, "--from", acme, "--as", "mon", "--json")
    out = json.loads(synced.stdout)
    assert len(out["copied"]) == 3
    assert out["recorded"] == [{"kind": "model", "name": "fraud", "version": 1}]
    again = run_cli(env, "store", "sync", "--store", bank, "--from", acme, "--as", "mon", "--json")
    assert json.loads(again.stdout)["recorded"] == []  # nothing new to record
    shown = run_cli(env, "store", "status").stdout
    assert "fraud@1\t2/2\tacme (" in shown and ", bank (" in shown
    assert "UNDER-REPLICATED" not in shown and "1 versions, 0 under-replicated" in shown
    run_cli(env, "deploy", "fraud@1", "--env", "staging", "--as", "ops")
    run_cli(env, "log", "verify")


def test_the_dashboard_shows_each_versions_copies(v8: mc.Ledger, tmp_path: Path) -> None:
    import asyncio

    import httpx

    from modelchain.server import ServerConfig, create_app

    ack = v8.artifacts.record_replica("model", "m", 1, tmp_path / "acme-store", signer=s("bob"))
    assert ack is not None
    v8.members.set_replication(2, signers=_admins())
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    v8.datasets.register("d", data, signer=s("steward"))
    app = create_app(v8, ServerConfig(reads="open"))

    async def get(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(p) for p in paths]

    version, dataset = asyncio.run(get("/ui/models/m/versions/1", "/ui/datasets/d"))
    assert version.status_code == dataset.status_code == 200
    copies = re.search(r'<dd class="copies bad">(.*?)</dd>', version.text, re.S)
    assert copies, version.text[:3000]
    assert copies.group(1).startswith(
        "1 of 2 required: acme ("
    ) and f"#{ack.index}" in copies.group(1)
    assert '<dd class="copies bad">0 of 2 required</dd>' in dataset.text
