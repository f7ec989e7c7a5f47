"""Flower on the ledger: a real deployment on loopback (a SuperLink with TLS and
SuperNode authentication, three organisations' SuperNodes, one SuperNode whose
key nobody registered) runs three rounds through ModelchainStrategy; and the
strategy in process, where the order of the replies, unknown nodes and
repeated updates are easy to arrange."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ORIGIN
from flower_deploy import Federation, copy_app, node_key, wait_for
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian
from mcfl_app.task import heldout, initial, partition, train

import modelchain as mc
from modelchain.core.identity import verifier_of
from modelchain.errors import RejectedError, UsageError
from modelchain.fl.arrays import arrays_digest, fedavg
from modelchain.integrations.flower import ModelchainStrategy
from modelchain.keys import KeyStore
from modelchain.ledger.ledger import Founder

ORGS = ["org-a", "org-b", "org-c"]  # partitions 0, 1, 2: 4/7, 2/7 and 1/7 of the rows
POISONED = "org-c"  # scales its step by 100
ACCEPT = "update.norm < 10.0 && update.examples >= 10"
TASK = "cancer"
PEOPLE = [
    ("coord", "acme", ("admin",)),
    ("steward", "acme", ("data-steward",)),
    ("org-a", "hospital-a", ("fl-participant",)),
    ("org-b", "hospital-b", ("fl-participant",)),
    ("org-c", "hospital-c", ("fl-participant",)),
    ("mallory", "elsewhere", ("fl-participant",)),
]


def _ledger(path: Path, home: Path) -> tuple[mc.Ledger, KeyStore]:
    keys = KeyStore(home)
    for name, _, _ in PEOPLE:
        keys.create(name, None)
    founders = [Founder(verifier_of(keys.signer(n)), o, r) for n, o, r in PEOPLE[1:]]
    led = mc.init(
        path,
        ORIGIN,
        keys.signer("coord"),
        org="acme",
        members=founders,
        admin_roles=("fl-coordinator", "trainer"),
        home=home,
    )
    led.identity = keys.signer("coord")
    start = path.parent / "start"
    start.mkdir()
    w0 = initial()
    np.savez(start / "model.npz", coef=w0[0], bias=w0[1])
    led.models.register(TASK, start)
    x, y = heldout()
    data = path.parent / "heldout.csv"
    np.savetxt(data, np.column_stack([x, y]), delimiter=",", fmt="%.17g")
    led.datasets.register("cancer-heldout", data, signer=keys.signer("steward"))
    return led, keys


def _create(led: mc.Ledger, participants: list[str], rounds: int = 3) -> None:
    led.fl.create_task(
        TASK,
        model=(TASK, 1),
        participants=participants,
        rounds=rounds,
        min_participants=2,
        acceptance=ACCEPT,
        heldout=("cancer-heldout", 1),
    )


def _local(w: list[Any], org: str) -> list[Any]:
    i = ORGS.index(org)
    new = train(w, *partition(i, 3), 20, 0.5)
    if org == POISONED:
        new = [s + 100 * (a - s) for a, s in zip(new, w, strict=True)]
    return new


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path / "flower")
    try:
        yield fed
    finally:
        fed.close()


def test_three_organisations_train_on_a_real_flower_deployment(
    tmp_path: Path, federation: Federation
) -> None:
    home = tmp_path / "home"
    led, keys = _ledger(tmp_path / "ledger", home)
    nodes: dict[str, int] = {}
    with led:
        federation.start_superlink()
        for i, org in enumerate(ORGS):
            private, public = node_key(federation.directory, org)
            nodes[org] = federation.register(public)
            led.fl.register_participant(nodes[org], public.read_text(), signer=keys.signer(org))
            federation.start_supernode(
                org,
                private,
                f"partition-id={i} num-partitions=3 poison={100 if org == POISONED else 0}",
            )
        _create(led, ORGS)
        assert {int(p["node_id"]) for p in led.fl.task(TASK)["participants"]} == set(nodes.values())
        # a node Flower admits but the task does not name: the strategy never samples it
        private, public = node_key(federation.directory, "stranger")
        stranger = federation.register(public)
        federation.start_supernode("stranger", private, "partition-id=0 num-partitions=3")

    # a SuperNode whose key was never registered: the SuperLink refuses it
    private, _ = node_key(federation.directory, "mallory")
    intruder = federation.start_supernode("mallory", private, "partition-id=1 num-partitions=3")
    wait_for("the intruder's exit", lambda: intruder.popen.poll() is not None, 60)
    assert intruder.popen.returncode != 0
    assert "Failed to activate SuperNode" in intruder.text()

    link = federation.superlink
    for org in [*ORGS, "stranger"]:
        node = stranger if org == "stranger" else nodes[org]
        wait_for(f"{org}'s SuperNode", lambda n=node: f"Activated node_id={n}" in link.text(), 60)
    run_config = (
        f"ledger='{tmp_path / 'ledger'}' home='{home}' out='{tmp_path / 'final'}' task='{TASK}'"
    )
    app = copy_app(tmp_path)
    done = federation.flwr("run", str(app), "loopback", "--stream", "--run-config", run_config)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"modelchain: node {stranger} is not a participant of {TASK}" in out
    wait_for("the final model", lambda: (tmp_path / "final" / "model.npz").exists(), 30)

    with mc.open(tmp_path / "ledger", home=home) as led:
        status = led.fl.status(TASK)
        assert (status["status"], status["aggregated"]) == ("complete", 3), out + link.tail()
        # every round: the honest two accepted, the poisoned one refused and logged
        refused = [d for d in led.denied() if d["code"] == "update_refused"]
        assert len(refused) == 3
        assert all(ACCEPT in d["reason"] for d in refused)
        w = initial()
        for r in range(1, 4):
            rnd = led.fl.round(TASK, r)
            assert sorted(rnd["updates"]) == ["org-a", "org-b"]
            # the recorded updates are what each organisation computed, and the
            # aggregate recomputes from them bit for bit, in node id order
            order = [u["participant"] for u in led.fl.included(TASK, r)]
            assert order == sorted(["org-a", "org-b"], key=lambda o: nodes[o])
            local = {o: _local(w, o) for o in order}
            for o in order:
                assert rnd["updates"][o]["digest"] == arrays_digest(local[o])
                assert rnd["updates"][o]["by"] == "coord"
            w = fedavg(
                [local[o] for o in order], [len(partition(ORGS.index(o), 3)[1]) for o in order]
            )
            assert rnd["aggregate"]["digest"] == arrays_digest(w)

        # credit: by examples and leave-one-out on the held-out rows
        for method in ("examples", "leave-one-out"):
            att = led.fl.attribution(TASK, method)
            assert len(att.rounds) == 3
            for _, shares in att.rounds:
                assert math.isclose(math.fsum(shares.values()), 1.0, abs_tol=1e-9)
            assert att.cumulative["org-a"] > att.cumulative["org-b"], (method, att)

        # the final model verifies and has the federated lineage
        final = status["final"]
        assert (final["name"], final["version"]) == (TASK, 2)
        led.models.verify(tmp_path / "final", TASK, 2)
        lines = "\n".join(led.models.lineage(TASK, 2).lines())
        assert f"model {TASK}@1" in lines and "dataset cancer-heldout@1" in lines
        assert f"external modelchain-fl:task/{TASK}/round/3" in lines

        # a non-participant's commit is refused
        with pytest.raises(RejectedError) as info:
            led.fl.commit_update(
                TASK, 3, digest=arrays_digest(w), examples=50, figures={"norm": 1.0},
                signer=keys.signer("mallory"),
            )  # fmt: skip
        assert info.value.reason_code in {"not_participant", "task_complete"}


# -- the strategy in process ----------------------------------------------------------


class _Grid(Grid):
    """A grid of nodes that answer at once, in the order given."""

    def __init__(self, nodes: Iterable[int]) -> None:
        self.nodes = list(nodes)

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def set_run(self, run: Any) -> None:
        pass

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        raise NotImplementedError


def _reply(out: Message, arrays: list[Any], examples: int) -> Message:
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": examples})}
    )
    return Message(content=content, reply_to=out)


@pytest.fixture
def small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[mc.Ledger, KeyStore, dict[str, int]]]:
    # what a ServerApp process has set before a strategy builds messages
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)
    led, keys = _ledger(tmp_path / "ledger", tmp_path / "home")
    nodes = {"org-a": 9_000_000_000_000_000_000, "org-b": 17, "org-c": 2**63}
    for i, org in enumerate(ORGS):
        _, public = node_key(tmp_path, org)
        led.fl.register_participant(nodes[org], public.read_text(), signer=keys.signer(org))
        del i
    _, public = node_key(tmp_path, "mallory")
    led.fl.register_participant(5, public.read_text(), signer=keys.signer("mallory"))
    try:
        yield led, keys, nodes
    finally:
        led.close()


def test_the_strategy_samples_participants_and_aggregates_in_node_order(
    small: tuple[mc.Ledger, KeyStore, dict[str, int]],
) -> None:
    led, keys, nodes = small
    _create(led, ORGS, rounds=2)
    with pytest.raises(UsageError, match="aggregates with FedAvg, not FedMedian"):
        ModelchainStrategy(led, TASK, FedMedian())
    strategy = ModelchainStrategy(led, TASK, FedAvg(fraction_evaluate=0.0, min_available_nodes=3))
    grid = _Grid([5, *nodes.values(), 77])  # mallory (not in the task) and a stranger
    w0 = initial()
    out = list(strategy.configure_train(1, ArrayRecord(w0), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in out) == sorted(nodes.values())
    by_node = {m.metadata.dst_node_id: m for m in out}
    sizes = {o: len(partition(i, 3)[1]) for i, o in enumerate(ORGS)}
    local = {o: _local(w0, o) for o in ORGS}
    replies = [_reply(by_node[nodes[o]], local[o], sizes[o]) for o in ORGS]
    stranger = Message(
        content=RecordDict(
            {"arrays": ArrayRecord(w0), "metrics": MetricRecord({"num-examples": 5})}
        ),
        dst_node_id=77,
        message_type="train",
    )
    replies.append(_reply(stranger, w0, 5))
    short = Message(content=RecordDict(), dst_node_id=nodes["org-a"], message_type="train")
    replies.append(_reply(short, w0[:1], 5))  # one array, not two: malformed
    arrays, metrics = strategy.aggregate_train(1, replies[::-1])
    assert arrays is not None and metrics is not None
    got = arrays.to_numpy_ndarrays()
    # the kept replies in node id order, whatever order they came in
    order = ["org-b", "org-a"]  # 17 < 9e18; org-c (2**63) was refused
    expected = fedavg([local[o] for o in order], [sizes[o] for o in order])
    assert arrays_digest(got) == arrays_digest(expected)
    assert led.fl.round(TASK, 1)["aggregate"]["digest"] == arrays_digest(expected)
    reasons = {(r.participant, r.reason) for r in strategy.refusals}
    assert reasons == {(None, "unknown_node"), ("org-a", "malformed"), ("org-c", "update_refused")}
    assert strategy.records[1].kept == order

    # round 2, replies in another order: the same bytes; a repeated update is refused
    w1 = got
    strategy.configure_train(2, ArrayRecord(w1), ConfigRecord(), grid)
    local2 = {o: _local(w1, o) for o in ["org-a", "org-b"]}
    first = [_reply(by_node[nodes[o]], local2[o], sizes[o]) for o in ["org-a", "org-b"]]
    arrays2, _ = strategy.aggregate_train(2, first)
    assert arrays2 is not None
    again = fedavg([local2[o] for o in order], [sizes[o] for o in order])
    assert arrays_digest(arrays2.to_numpy_ndarrays()) == arrays_digest(again)
    with pytest.raises(RejectedError) as info:
        led.fl.commit_update(
            TASK, 2, digest=arrays_digest(local2["org-a"]), examples=sizes["org-a"],
            figures={"norm": 1.0}, signer=keys.signer("org-a"),
        )  # fmt: skip
    assert info.value.reason_code == "task_complete"
    assert led.fl.attribution(TASK).cumulative["org-a"] > 0.5


def test_evaluation_goes_to_participants_only(
    small: tuple[mc.Ledger, KeyStore, dict[str, int]],
) -> None:
    led, _, nodes = small
    _create(led, ORGS)
    strategy = ModelchainStrategy(led, TASK, FedAvg(min_available_nodes=3, min_evaluate_nodes=3))
    sent = list(
        strategy.configure_evaluate(
            1, ArrayRecord(initial()), ConfigRecord(), _Grid([5, *nodes.values()])
        )
    )
    assert sorted(m.metadata.dst_node_id for m in sent) == sorted(nodes.values())

    def answer(node: int, loss: float) -> Message:
        out = Message(content=RecordDict(), dst_node_id=node, message_type="evaluate")
        metrics = MetricRecord({"loss": loss, "num-examples": 10})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=out)

    replies = [answer(n, 0.5) for n in nodes.values()] + [answer(5, 1000.0)]
    found = strategy.aggregate_evaluate(1, replies)
    assert found is not None and found["loss"] == pytest.approx(0.5)


def test_a_participant_signs_its_own_update_and_repeats_are_refused(
    small: tuple[mc.Ledger, KeyStore, dict[str, int]],
) -> None:
    led, keys, nodes = small
    _create(led, ORGS)
    strategy = ModelchainStrategy(led, TASK, FedAvg(fraction_evaluate=0.0, min_available_nodes=3))
    w0 = initial()
    sent = strategy.configure_train(1, ArrayRecord(w0), ConfigRecord(), _Grid(nodes.values()))
    out = {m.metadata.dst_node_id: m for m in sent}
    a, b = _local(w0, "org-a"), _local(w0, "org-b")

    def commit(who: str, arrays: list[Any]) -> mc.Ack:
        return led.fl.commit_update(
            TASK, 1, digest=arrays_digest(arrays), examples=268, figures={"norm": 1.0},
            signer=keys.signer(who),
        )  # fmt: skip

    commit("org-a", a)  # org-a's ClientApp signs its own commitment
    for who, code in (("mallory", "not_participant"), ("org-a", "duplicate_update")):
        with pytest.raises(RejectedError) as info:
            commit(who, a)
        assert info.value.reason_code == code
    replies = [_reply(out[nodes["org-a"]], a, 268), _reply(out[nodes["org-b"]], b, 134)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    updates = led.fl.round(TASK, 1)["updates"]
    assert updates["org-a"]["signed_by_participant"] is True
    assert updates["org-b"]["by"] == "coord"
    assert {d["code"] for d in led.denied()} >= {"not_participant", "duplicate_update"}


def test_an_update_sent_other_than_committed_stops_the_round(
    small: tuple[mc.Ledger, KeyStore, dict[str, int]],
) -> None:
    led, keys, nodes = small
    _create(led, ORGS)
    strategy = ModelchainStrategy(led, TASK, FedAvg(fraction_evaluate=0.0, min_available_nodes=3))
    w0 = initial()
    sent = strategy.configure_train(1, ArrayRecord(w0), ConfigRecord(), _Grid(nodes.values()))
    out = {m.metadata.dst_node_id: m for m in sent}
    a, b = _local(w0, "org-a"), _local(w0, "org-b")
    led.fl.commit_update(
        TASK, 1, digest=arrays_digest(a), examples=268, figures={"norm": 1.0},
        signer=keys.signer("org-a"),
    )  # fmt: skip
    replies = [_reply(out[nodes["org-a"]], b, 268), _reply(out[nodes["org-b"]], b, 134)]
    with pytest.raises(UsageError, match="cannot name them"):
        strategy.aggregate_train(1, replies)
    assert ("org-a", "duplicate_update") in {(r.participant, r.reason) for r in strategy.refusals}
