"""Federated learning on the ledger (contract-set version 6): three organisations
train one logistic regression; the ledger admits only registered participants,
refuses foreign, late, early, repeated and poisoned updates as logged evidence,
checks every aggregate against the round's accepted updates, credits each
participant, and the final version carries its federated lineage."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import ORIGIN, make_signer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import modelchain as mc
from modelchain.contracts.fl import check_node_id, check_public_key
from modelchain.contracts.genesis import DEFAULT_PERMISSIONS, genesis_body
from modelchain.contracts.types import (
    FL_PARTICIPANT_REGISTER,
    FL_TASK_CREATE,
    FL_TYPES,
    FL_UPDATE_COMMIT,
)
from modelchain.core.identity import verifier_of
from modelchain.errors import MalformedError, RejectedError, UsageError
from modelchain.fl.arrays import arrays_digest, fedavg, figures
from modelchain.fl.attribution import (
    example_shares,
    leave_one_out,
    shapley_mc,
    shares,
)
from modelchain.ledger import ledger as ledger_mod
from modelchain.ledger.ledger import Founder

ORGS = {"hosp-a": 400, "hosp-b": 40, "hosp-c": 200}  # participant: examples
ACCEPT = "update.norm < 5.0 && update.examples >= 10"
TASK = "sepsis"

Weights = list[npt.NDArray[np.float64]]


def p256_key(seed: int) -> str:
    """An OpenSSH EC P-256 public key, as `flwr supernode register` takes."""
    private = ec.derive_private_key(seed + 1, ec.SECP256R1())
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


PEOPLE = [
    ("dave", "bank", ("admin",)),
    ("steward", "acme", ("data-steward",)),
    ("ev", "qa-co", ("evaluator",)),
    ("hosp-a", "hospital-a", ("fl-participant",)),
    ("hosp-b", "hospital-b", ("fl-participant",)),
    ("hosp-c", "hospital-c", ("fl-participant",)),
    ("mallory", "elsewhere", ("fl-participant",)),
]


def _make(path: Path, version: int | None = None) -> mc.Ledger:
    founders = [Founder(verifier_of(make_signer(n)), o, r) for n, o, r in PEOPLE]
    kwargs: dict[str, Any] = dict(
        org="acme", members=founders, admin_roles=("fl-coordinator", "trainer")
    )
    if version is None:
        return mc.init(path, ORIGIN, make_signer("alice"), **kwargs)
    made = genesis_body

    def body(*args: Any, **kw: Any) -> dict[str, Any]:
        return made(*args, **kw, contracts=version)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_mod, "genesis_body", body)
        return mc.init(path, ORIGIN, make_signer("alice"), **kwargs)


# -- a small logistic regression, trained apart by each organisation ---------------

_DIM = 20  # enough features that forty examples fit worse than four hundred
_TRUE = np.random.default_rng(123).normal(size=_DIM)


def _data(n: int, seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, _DIM))
    y = (x @ _TRUE + rng.normal(scale=0.5, size=n) > 0).astype(np.float64)
    return x, y


def _loss(w: Weights, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    p = 1 / (1 + np.exp(-(x @ w[0] + w[1][0])))
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _train(w: Weights, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> Weights:
    coef, bias = w[0].copy(), w[1].copy()
    for _ in range(20):
        p = 1 / (1 + np.exp(-(x @ coef + bias[0])))
        coef -= 0.5 * x.T @ (p - y) / len(y)
        bias -= 0.5 * np.array([np.mean(p - y)])
    return [coef, bias]


GLOBAL0: Weights = [np.zeros(_DIM), np.zeros(1)]
LOCAL = {p: _data(n, i) for i, (p, n) in enumerate(ORGS.items())}
HELDOUT = _data(300, 99)


def _delta(new: Weights, old: Weights) -> Weights:
    return [a - b for a, b in zip(new, old, strict=True)]


def _save(w: Weights, path: Path) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.concatenate([a.ravel() for a in w]), allow_pickle=False)
    path.write_bytes(buf.getvalue())
    return path


# -- the ledger ----------------------------------------------------------------------


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    ledger = _make(tmp_path / "l")
    ledger.identity = _s("alice")  # the coordinator, where a call names no signer
    try:
        ledger.models.register("sepsis", _save(GLOBAL0, tmp_path / "g0.npy"), signer=_s("alice"))
        data = tmp_path / "heldout.csv"
        data.write_text("x1,x2,x3,y\n" + "\n".join("0,0,0,1" for _ in range(3)) + "\n")
        ledger.datasets.register("heldout", data, signer=_s("steward"))
        for i, name in enumerate(ORGS):
            ledger.fl.register_participant(1000 + (3 - i), p256_key(i), signer=_s(name))
        ledger.fl.register_participant(7, p256_key(9), signer=_s("mallory"))
        yield ledger
    finally:
        ledger.close()


def _s(name: str) -> Any:
    return make_signer(name)


def _create(led: mc.Ledger, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        model=("sepsis", 1),
        participants=list(ORGS),
        rounds=2,
        aggregation="FedAvg",
        min_participants=2,
        acceptance=ACCEPT,
        heldout=("heldout", 1),
        signer=_s("alice"),
    )
    args.update(kw)
    return led.fl.create_task(TASK, **args)


def _commit(
    led: mc.Ledger, who: str, round_: int, w: Weights, start: Weights, *, by: str | None = None
) -> mc.Ack:
    return led.fl.commit_update(
        TASK,
        round_,
        digest=arrays_digest(w),
        examples=ORGS.get(who, 50),
        figures=figures(_delta(w, start)).to_json(),
        metrics={"loss": _loss(w, *LOCAL.get(who, HELDOUT))},
        participant=who,
        signer=_s(by or who),
    )


def _refused(code: str, call: Any, *args: Any, **kw: Any) -> RejectedError:
    with pytest.raises(RejectedError) as info:
        call(*args, **kw)
    assert info.value.reason_code == code, info.value
    return info.value


def _denied(led: mc.Ledger, code: str) -> list[dict[str, Any]]:
    return [d for d in led.denied() if d["code"] == code]


def test_a_p256_key_in_openssh_format_is_what_a_node_registers() -> None:
    check_public_key(p256_key(0))
    check_public_key(p256_key(0) + " node-a@hospital")
    ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    for bad in (ed, "ecdsa-sha2-nistp256 !!!", "ecdsa-sha2-nistp256 AAAA", "", p256_key(0)[:-4]):
        with pytest.raises(MalformedError):
            check_public_key(bad)


def test_a_participant_registers_its_own_node(led: mc.Ledger) -> None:
    reg = led.fl.participant("hosp-a")
    assert reg["node_id"] == "1003" and reg["org"] == "hospital-a"
    assert reg["public_key"] == p256_key(0)
    _refused("node_id_taken", led.fl.register_participant, 1003, p256_key(5), signer=_s("hosp-b"))
    _refused("not_permitted", led.fl.register_participant, 5, p256_key(5), signer=_s("steward"))
    # Flower's node ids are 64-bit: beyond what a JSON number carries exactly
    led.fl.register_participant(2**64 - 1, p256_key(0), signer=_s("hosp-a"))
    assert led.fl.participant("hosp-a")["node_id"] == str(2**64 - 1)
    for bad in ("-1", "01", str(2**64), "1e3", 7):
        with pytest.raises(MalformedError):
            check_node_id(bad)


def test_a_task_names_registered_participants_only(led: mc.Ledger) -> None:
    _refused("not_permitted", _create, led, signer=_s("hosp-a"))
    _refused("no_model", _create, led, model=("sepsis", 9))
    _refused("not_participant", _create, led, participants=[*ORGS, "steward"])
    task = _create(led)
    assert [p["member"] for p in task["participants"]] == list(ORGS)
    assert task["participants"][0]["public_key"] == p256_key(0)
    assert (task["round"], task["status"], task["coordinator"]) == (1, "open", "alice")
    _refused("task_exists", _create, led)


def _local(start: Weights) -> dict[str, Weights]:
    return {p: _train(start, *LOCAL[p]) for p in ORGS}


def test_three_organisations_train_one_model(led: mc.Ledger, tmp_path: Path) -> None:
    _create(led)
    r1 = _local(GLOBAL0)
    _commit(led, "hosp-a", 1, r1["hosp-a"], GLOBAL0)

    # foreign, repeated, early: refused, and the refusals are logged
    _refused("not_participant", _commit, led, "mallory", 1, r1["hosp-b"], GLOBAL0)
    _refused("not_participant", _commit, led, "hosp-b", 1, r1["hosp-b"], GLOBAL0, by="hosp-a")
    _refused("duplicate_update", _commit, led, "hosp-a", 1, r1["hosp-a"], GLOBAL0)
    _refused("round_not_open", _commit, led, "hosp-b", 2, r1["hosp-b"], GLOBAL0)
    # too few updates for the round
    _refused("too_few_updates", led.fl.aggregate, TASK, 1, digest=arrays_digest(r1["hosp-a"]))

    # a poisoned update: a hundred times the step, refused by the norm rule
    poisoned = [g + 100 * d for g, d in zip(GLOBAL0, _delta(r1["hosp-c"], GLOBAL0), strict=True)]
    err = _refused("update_refused", _commit, led, "hosp-c", 1, poisoned, GLOBAL0)
    assert ACCEPT in str(err)
    assert "the clause that failed: update.norm < 5.0" in str(err)
    _commit(led, "hosp-b", 1, r1["hosp-b"], GLOBAL0)

    # an aggregate naming the refused update, or bytes nobody committed: refused
    def aggregate(updates: list[dict[str, str]]) -> mc.Ack:
        body = {
            "task": TASK,
            "round": 1,
            "aggregation": "FedAvg",
            "digest": arrays_digest(r1["hosp-a"]),
            "updates": updates,
        }
        env = led.transaction("fl.round.aggregate", body, "alice").sign(_s("alice"))
        return led.submit(env)

    included = led.fl.included(TASK, 1)
    assert [u["participant"] for u in included] == ["hosp-b", "hosp-a"]  # by node id
    named = [{"participant": u["participant"], "digest": u["digest"]} for u in included]
    bad = [*named, {"participant": "hosp-c", "digest": arrays_digest(poisoned)}]
    assert aggregate(bad).outcome.code == "update_not_accepted"
    unknown = [named[0], {"participant": "hosp-a", "digest": "sha256:" + "00" * 32}]
    assert aggregate(unknown).outcome.code == "update_not_accepted"
    assert aggregate(named[::-1]).outcome.code == "update_order"
    assert aggregate(named[:1]).outcome.code == "update_left_out"

    # the aggregate recomputes, bit for bit, from the committed updates
    order = [u["participant"] for u in included]
    g1 = fedavg([r1[p] for p in order], [ORGS[p] for p in order])
    assert [arrays_digest(r1[p]) for p in order] == [u["digest"] for u in included]
    led.fl.aggregate(TASK, 1, digest=arrays_digest(g1), signer=_s("alice"))
    again = fedavg([r1[p] for p in order], [ORGS[p] for p in order])
    assert arrays_digest(again) == led.fl.round(TASK, 1)["aggregate"]["digest"]
    assert led.fl.status(TASK)["round"] == 2
    _refused("round_closed", _commit, led, "hosp-c", 1, r1["hosp-c"], GLOBAL0)

    # round 2: hosp-c does not run the modelchain client; the coordinator records it
    r2 = _local(g1)
    _commit(led, "hosp-a", 2, r2["hosp-a"], g1)
    _commit(led, "hosp-b", 2, r2["hosp-b"], g1)
    _commit(led, "hosp-c", 2, r2["hosp-c"], g1, by="alice")
    c = led.fl.round(TASK, 2)["updates"]["hosp-c"]
    assert (c["by"], c["signed_by_participant"]) == ("alice", False)
    assert led.fl.round(TASK, 2)["updates"]["hosp-a"]["signed_by_participant"] is True
    order2 = [u["participant"] for u in led.fl.included(TASK, 2)]
    assert order2 == ["hosp-c", "hosp-b", "hosp-a"]
    g2 = fedavg([r2[p] for p in order2], [ORGS[p] for p in order2])
    led.fl.aggregate(TASK, 2, digest=arrays_digest(g2), signer=_s("alice"))
    status = led.fl.status(TASK)
    assert (status["status"], status["aggregated"]) == ("complete", 2)
    _refused("task_complete", _commit, led, "hosp-a", 2, r2["hosp-a"], g1)
    assert _loss(g2, *HELDOUT) < _loss(GLOBAL0, *HELDOUT)

    # every refusal above is on the log with its reason
    codes = {d["code"] for d in led.denied()}
    assert {"not_participant", "duplicate_update", "round_not_open", "update_refused"} <= codes
    assert {"too_few_updates", "update_not_accepted", "round_closed", "task_complete"} <= codes

    # credit: example counts (checked by the contract), leave-one-out and Shapley
    for r in (1, 2):
        led.fl.credit_by_examples(TASK, r, signer=_s("alice"))

    def score(subset: frozenset[str]) -> float:
        if not subset:
            return -_loss(g1, *HELDOUT)
        names = sorted(subset)
        return -_loss(fedavg([r2[p] for p in names], [ORGS[p] for p in names]), *HELDOUT)

    loo = shares(leave_one_out(order2, score))
    shap = shares(shapley_mc(order2, score, samples=60, seed=7))
    led.fl.record_credit(TASK, 2, "leave-one-out", loo, signer=_s("ev"))
    led.fl.record_credit(TASK, 2, "shapley-mc", shap, params={"samples": 60, "seed": 7})
    for method in ("examples", "leave-one-out", "shapley-mc"):
        att = led.fl.attribution(TASK, method)
        for _, per in att.rounds:
            assert math.isclose(math.fsum(per.values()), 1.0, abs_tol=1e-9)
        assert math.isclose(math.fsum(att.cumulative.values()), 1.0, abs_tol=1e-9)
        assert att.cumulative["hosp-a"] > att.cumulative["hosp-b"], method
    examples = led.fl.attribution(TASK).rounds[0][1]
    assert examples == example_shares({"hosp-a": 400, "hosp-b": 40})
    _refused("credit_exists", led.fl.credit_by_examples, TASK, 2, signer=_s("alice"))
    _refused(
        "shares_mismatch",
        led.fl.record_credit,
        TASK,
        1,
        "leave-one-out",
        {"hosp-a": 0.5, "hosp-c": 0.5},
        signer=_s("alice"),
    )
    wrong = {"hosp-a": 0.5, "hosp-b": 0.5}
    _refused("shares_mismatch", led.fl.record_credit, TASK, 1, "shapley-mc", wrong | {"x": 0.0})
    with pytest.raises(MalformedError):
        led.fl.record_credit(TASK, 1, "shapley-mc", {"hosp-a": 0.5, "hosp-b": 0.6})

    # the final aggregate becomes a version whose lineage names the task
    final = led.fl.register_model(
        TASK, "sepsis", _save(g2, tmp_path / "g2.npy"), signer=_s("alice")
    )
    assert final.version == 2
    assert led.fl.status(TASK)["final"]["version"] == 2
    lines = "\n".join(led.models.lineage("sepsis", 2).lines())
    assert "model sepsis@1" in lines and "dataset heldout@1" in lines
    for uri in (
        f"modelchain-fl:task/{TASK}",
        f"modelchain-fl:task/{TASK}/round/1",
        f"modelchain-fl:task/{TASK}/round/2",
        *(f"modelchain-fl:task/{TASK}/participant/{p}" for p in ORGS),
    ):
        assert f"external {uri}" in lines
    with pytest.raises(UsageError):
        led.fl.register_model(TASK, "sepsis-b", tmp_path / "g2.npy")
    body = {"task": TASK, "model": {"name": "sepsis", "version": 2}}
    env = led.transaction("fl.task.finalize", body, "alice").sign(_s("alice"))
    assert led.submit(env).outcome.code == "task_finalized"


def test_finalize_checks_the_lineage(led: mc.Ledger, tmp_path: Path) -> None:
    _create(led, rounds=1, min_participants=1, participants=["hosp-a"])
    w = _local(GLOBAL0)["hosp-a"]
    _commit(led, "hosp-a", 1, w, GLOBAL0)
    led.fl.aggregate(TASK, 1, digest=arrays_digest(w), signer=_s("alice"))
    other = led.models.register("other", _save(w, tmp_path / "w.npy"), signer=_s("alice"))
    body = {"task": TASK, "model": {"name": "other", "version": other.version}}
    env = led.transaction("fl.task.finalize", body, "alice").sign(_s("alice"))
    assert led.submit(env).outcome.code == "lineage_mismatch"


def test_version_5_ledgers_know_no_fl_types(tmp_path: Path) -> None:
    with _make(tmp_path / "v5", 5) as led:
        assert not set(led.members.permissions) & FL_TYPES
        err = _refused(
            "unknown_type", led.fl.register_participant, 1, p256_key(0), signer=_s("hosp-a")
        )
        assert FL_PARTICIPANT_REGISTER in str(err)
        at = led.size + 2
        led.members.activate_contracts(6, at=at, signers=[_s("alice"), _s("dave")])
        while led.size < at:
            _tick(led)
        # version 6 is active; the role map of this ledger does not list the types
        _refused("not_permitted", led.fl.register_participant, 1, p256_key(0), signer=_s("hosp-a"))
        admins = [_s("alice"), _s("dave")]
        with pytest.raises(RejectedError):
            led.members.set_permissions(
                FL_PARTICIPANT_REGISTER, ["fl-participant"], signers=admins[:1]
            )
        led.members.set_permissions(FL_PARTICIPANT_REGISTER, ["fl-participant"], signers=admins)
        led.fl.register_participant(1, p256_key(0), signer=_s("hosp-a"))
        assert led.fl.participant("hosp-a")["node_id"] == "1"
        _refused("not_permitted", _create, led, participants=["hosp-a"], min_participants=1)
        led.members.set_permissions(FL_TASK_CREATE, ["fl-coordinator"], signers=admins)
        # granted: the contract itself now decides (this ledger has no model yet)
        _refused("no_model", _create, led, participants=["hosp-a"], min_participants=1)
        assert FL_UPDATE_COMMIT not in led.members.permissions


def _tick(led: mc.Ledger) -> None:
    env = led.transaction("event.record", {"event": "tick", "data": {}}, "alice").sign(_s("alice"))
    assert led.submit(env).outcome.accepted


def test_a_new_ledger_lists_the_fl_types() -> None:
    assert set(DEFAULT_PERMISSIONS) >= FL_TYPES
