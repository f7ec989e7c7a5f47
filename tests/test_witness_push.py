"""Cluster nodes push their final checkpoints to the witnesses the ledger's
policy names, against a real `modelchain witness serve` process: the stored
checkpoint carries the witness's cosignature, posts are rate-bounded, a
forked log is refused and the refusal reported, and a witness that is down
stops neither the node nor its finality. Clusters are three in-process nodes
over one MemorySequencer and one MemoryBoard; one test opens a real node
(`open_node`, over a one-member etcd)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_signer
from serving import STARTUP_S, free_port, stop_process

from modelchain.cluster.dev import order_genesis
from modelchain.cluster.etcd import start_members
from modelchain.cluster.node import NodeSettings, init_node, open_node
from modelchain.contracts import default_contracts
from modelchain.contracts.genesis import genesis_body
from modelchain.contracts.types import EVENT, GENESIS
from modelchain.core.checkpoint import Checkpoint
from modelchain.core.identity import COSIGNATURE_V1, Ed25519Signer, VerifierKey, verifier_of
from modelchain.core.note import Note, parse_note
from modelchain.core.policy import CheckpointPolicy, PolicyGroup, PolicyWitness
from modelchain.core.tx import Transaction
from modelchain.core.witness import origin_hash
from modelchain.keys import KeyStore
from modelchain.ledger.ledger import new_nonce
from modelchain.node import InlineVerifier, MemorySequencer
from modelchain.node.cosigning import MemoryBoard
from modelchain.node.node import Cosigning, Node, NodeConfig
from modelchain.node.witnesses import WitnessPusher, witnesses_to_push
from modelchain.storage.memory import MemoryStore

ORIGIN = "push.example/log"
W = "w1.example"
NAMES = ("n1", "n2", "n3")
SEEDS = {name: bytes([i + 1]) * 32 for i, name in enumerate(NAMES)}
WAIT_S = 30.0


def _wait_for(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _node_keys() -> dict[str, tuple[bytes, str | None]]:
    return {n: (Ed25519Signer(ORIGIN, SEEDS[n]).public_key, None) for n in NAMES}


def _policy(witness: VerifierKey, url: str) -> CheckpointPolicy:
    """The ledger's policy: 2 of the 3 nodes, and the witness named with its URL
    (not in the quorum: nodes push to it once a checkpoint is final)."""
    nodes = CheckpointPolicy.of_cluster(ORIGIN, _node_keys(), 2)
    w = PolicyWitness(W, witness, url)
    return CheckpointPolicy(nodes.logs, (*nodes.witnesses, w), nodes.groups, nodes.quorum)


def _strict(policy: CheckpointPolicy) -> CheckpointPolicy:
    """What a cautious reader asks: a quorum of the nodes AND the witness."""
    both = PolicyGroup("nodes-and-witness", 2, ("nodes", W), "all")
    return CheckpointPolicy(policy.logs, policy.witnesses, (*policy.groups, both), both.name)


class Witness:
    """`modelchain witness serve` for the cluster's log keys, on a free port."""

    def __init__(self, base: Path, env: dict[str, str], logs: CheckpointPolicy) -> None:
        home = KeyStore(Path(env["MODELCHAIN_HOME"]))
        self.key = home.create(W, b"pw").with_type(COSIGNATURE_V1)
        base.mkdir(parents=True, exist_ok=True)
        policy = base / "logs.policy"
        policy.write_text(logs.to_text())
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "modelchain", "witness", "serve"),
                *("--policy", str(policy), "--state", str(base / "state")),
                *("--identity", W, "--port", self.url.rsplit(":", 1)[1]),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert self.proc.poll() is None, f"witness exited with {self.proc.returncode}"
            try:
                httpx.get(self.url + "/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the witness did not come up"
                time.sleep(0.05)

    def held(self) -> Checkpoint | None:
        """The checkpoint the witness serves as the latest it cosigned."""
        r = httpx.get(f"{self.url}/{origin_hash(ORIGIN)}/checkpoint", timeout=10)
        if r.status_code == 404:
            return None
        return Checkpoint.from_text(parse_note(r.content).text)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def witness(tmp_path: Path, env: dict[str, str]) -> Iterator[Witness]:
    w = Witness(tmp_path / "witness", env, CheckpointPolicy.of_cluster(ORIGIN, _node_keys(), 2))
    yield w
    w.stop()


class Recorder(httpx.BaseTransport):
    """A real HTTP transport that notes when each request went and its answer."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.posts: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        at = time.monotonic()
        response = self.inner.handle_request(request)
        with self.lock:
            self.posts.append((at, response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


class Cluster:
    """Three nodes of one ledger in this process: one order, one board, a
    store and log key each, cosigning under ``policy``."""

    def __init__(self, policy: CheckpointPolicy) -> None:
        self.policy = policy
        self.admin = make_signer("alice")
        self.order = MemorySequencer()
        self.board = MemoryBoard()
        self.stores = [MemoryStore() for _ in NAMES]
        config = NodeConfig(checkpoint_every=5, checkpoint_interval_ms=20)
        self.nodes = [
            Node(
                store,
                Ed25519Signer(ORIGIN, SEEDS[name]),
                default_contracts(),
                self.order,
                config,
                verifier=InlineVerifier(),
                cosigning=Cosigning(
                    name,
                    lambda st=store: policy if st.size else None,
                    self.board,
                    final_wait_s=2.0,
                ),
            )
            for name, store in zip(NAMES, self.stores, strict=True)
        ]
        self.pushers: list[WitnessPusher] = []
        self.size = 0  # entries acknowledged so far

    def push(self, k: int, client: httpx.Client | None = None, **kw: float) -> WitnessPusher:
        """Node ``k`` pushes its final checkpoints to the policy's witnesses."""
        store = self.stores[k]
        pusher = WitnessPusher(lambda: self.policy if store.size else None, store, client, **kw)
        self.nodes[k].on_final(pusher.offer)
        self.nodes[k].status_parts.append(pusher.status)
        self.pushers.append(pusher)
        return pusher

    def genesis(self) -> None:
        keys = [str(verifier_of(self.admin))]
        members = [{"name": "alice", "org": "a", "roles": ["admin"], "keys": keys}]
        body = genesis_body(ORIGIN, self.policy.logs[0].key, members, checkpoint_policy=self.policy)
        self.nodes[0].submit(self._tx(GENESIS, body), WAIT_S)
        self.size = 1

    def _tx(self, type_: str, body: dict[str, object]) -> bytes:
        t = Transaction(ORIGIN, type_, "alice", new_nonce(), int(time.time() * 1000), body)
        return t.sign(self.admin).to_bytes()

    def events(self, n: int, tag: str = "e") -> int:
        """Record ``n`` events, through each node in turn; the log's size after."""
        for i in range(n):
            event = self._tx(EVENT, {"event": tag, "data": i})
            self.nodes[i % len(self.nodes)].submit(event, WAIT_S)
        self.size += n
        return self.size

    def final(self, size: int) -> None:
        _wait_for(f"all final at {size}", lambda: all(n.final_size >= size for n in self.nodes))

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for pusher in self.pushers:
            pusher.close()
        self.board.close()


@pytest.fixture
def clusters() -> Iterator[list[Cluster]]:
    made: list[Cluster] = []
    yield made
    for c in made:
        c.close()


def _stored(store: MemoryStore) -> bytes:
    latest = store.checkpoint()
    assert latest is not None
    return latest[1]


def test_final_checkpoints_reach_the_witness_and_carry_its_cosignature(
    witness: Witness, clusters: list[Cluster]
) -> None:
    policy = _policy(witness.key, witness.url)
    assert [w.name for w in witnesses_to_push(policy)] == [W]  # the nodes are not pushed to
    cluster = Cluster(policy)
    clusters.append(cluster)
    recorder = Recorder()
    client = httpx.Client(transport=recorder, timeout=10)
    pushers = [cluster.push(k, client, interval=0.2) for k in range(3)]
    cluster.genesis()
    size = cluster.events(12)
    cluster.final(size)
    strict = _strict(policy)

    def cosigned_everywhere() -> bool:
        for store in cluster.stores:
            result = strict.evaluate(_stored(store))
            if not result.satisfied or result.checkpoint.size != size:
                return False
        return True

    _wait_for("each node's latest checkpoint to carry the witness cosignature", cosigned_everywhere)
    for store in cluster.stores:
        note = _stored(store)
        cp, _ = strict.verify(note, now=int(time.time()) + 60)
        policy.verify(note)  # and still under the ledger's own policy
        assert cp.size == size
    held = witness.held()
    assert held is not None and held.size == size
    # The publisher stores a final checkpoint again when a late node
    # cosignature comes, without the witness's: the pusher puts it back.
    store = cluster.stores[0]
    note = parse_note(_stored(store))
    nodes_only = Note(note.text, tuple(s for s in note.signatures if s.name != W))
    store.put_checkpoint(size, store.head()[1], nodes_only.to_bytes())
    assert not strict.evaluate(_stored(store)).satisfied
    _wait_for("the witness cosignature to be back", cosigned_everywhere)
    for node, pusher in zip(cluster.nodes, pushers, strict=True):
        status = node.cluster_status()
        assert status is not None
        assert status["witness_refusals"] == {}
        mine = status["witnesses"]
        assert isinstance(mine, dict) and mine[W]["cosigned_size"] == size
        assert pusher.refusals_total == 0
    # All three nodes pushed, each from 'old 0': those that came second learnt
    # the size the witness held from a 409 and were cosigned all the same.
    assert any(status == 409 for _, status in recorder.posts), recorder.posts
    cluster.close()
    clusters.remove(cluster)
    client.close()


def test_posts_to_a_witness_are_rate_bounded(witness: Witness, clusters: list[Cluster]) -> None:
    cluster = Cluster(_policy(witness.key, witness.url))
    clusters.append(cluster)
    recorder = Recorder()
    client = httpx.Client(transport=recorder, timeout=10)
    interval = 0.5
    pusher = cluster.push(0, client, interval=interval)
    finals: list[int] = []
    cluster.nodes[0].on_final(lambda size, _: finals.append(size))
    cluster.genesis()
    # Writes for a while: a new final checkpoint every few tens of milliseconds.
    start = time.monotonic()
    while time.monotonic() - start < 2.6:
        cluster.events(3)
    cluster.final(cluster.size)
    window = time.monotonic() - start
    posts = list(recorder.posts)
    assert len(finals) > 4 * len(posts), (len(finals), posts)  # far more than were posted
    assert 3 <= len(posts) <= window / interval + 2, posts
    for (t1, status), (t2, _) in itertools.pairwise(posts):
        if status != 409:  # only the answer to a 409 goes at once
            assert t2 - t1 >= interval - 0.02, posts
    assert all(status == 200 for _, status in posts)
    assert pusher.refusals_total == 0
    cluster.close()
    clusters.remove(cluster)
    client.close()


def test_a_forked_log_is_refused_and_the_refusal_reported(
    witness: Witness, clusters: list[Cluster], caplog: pytest.LogCaptureFixture
) -> None:
    policy = _policy(witness.key, witness.url)
    honest = Cluster(policy)
    clusters.append(honest)
    honest.push(0, interval=0.1)
    honest.genesis()
    size = honest.events(5)
    honest.final(size)
    _wait_for("the witness to cosign the honest log", lambda: _held_size(witness) == size)
    honest_root = honest.stores[0].head()[1]
    # The same origin and node keys, other entries, more of them: a fork.
    fork = Cluster(policy)
    clusters.append(fork)
    pusher = fork.push(1, interval=0.1)
    fork.genesis()
    fork_size = fork.events(15, tag="fork")
    fork.final(fork_size)
    _wait_for("the witness to refuse the fork", lambda: pusher.refusals_total > 0)
    status = fork.nodes[1].cluster_status()
    assert status is not None
    refusals = status["witness_refusals"]
    assert isinstance(refusals, dict) and refusals[W].startswith("422"), refusals
    witnesses = status["witnesses"]
    assert isinstance(witnesses, dict)
    assert witnesses[W]["held_size"] == size and witnesses[W]["cosigned_size"] is None
    assert any(r.levelname == "ERROR" and "refused" in r.getMessage() for r in caplog.records)
    # The witness still holds the honest log; the fork's nodes are still final,
    # their checkpoints without the witness's cosignature.
    held = witness.held()
    assert held is not None and (held.size, held.root) == (size, honest_root)
    assert fork.nodes[1].fault is None and fork.nodes[1].final_size == fork_size
    assert not _strict(policy).evaluate(_stored(fork.stores[1])).satisfied


def _held_size(witness: Witness) -> int | None:
    held = witness.held()
    return None if held is None else held.size


def test_a_witness_that_is_down_stops_neither_the_node_nor_finality(
    tmp_path: Path, env: dict[str, str], clusters: list[Cluster]
) -> None:
    key = KeyStore(Path(env["MODELCHAIN_HOME"])).create(W, b"pw").with_type(COSIGNATURE_V1)
    policy = _policy(key, f"http://127.0.0.1:{free_port()}")  # nobody listens there
    cluster = Cluster(policy)
    clusters.append(cluster)
    pusher = cluster.push(0, interval=0.05, max_backoff=0.2)
    cluster.genesis()
    for _ in range(4):
        cluster.final(cluster.events(5))
    _wait_for("a few tries", lambda: pusher.status()["witnesses"][W]["posts"] >= 3)
    state = pusher.status()["witnesses"][W]
    assert state["last_error"] and "ConnectError" in state["last_error"]
    assert state["cosigned_size"] is None and pusher.refusals_total == 0
    assert cluster.nodes[0].fault is None
    # Closing does not wait for the witness.
    started = time.monotonic()
    cluster.close()
    clusters.remove(cluster)
    assert time.monotonic() - started < 10


@pytest.mark.skipif(
    shutil.which("etcd") is None, reason="needs etcd (Debian: etcd-server; .ci/run installs it)"
)
def test_open_node_pushes_to_the_witnesses_of_its_policy(
    tmp_path: Path, env: dict[str, str]
) -> None:
    key = init_node(tmp_path / "n1", ORIGIN)
    alone = CheckpointPolicy.of_cluster(ORIGIN, {"n1": (key.public_key, None)}, 1)
    witness = Witness(tmp_path / "witness", env, alone)
    members = start_members(tmp_path / "etcd", 1)
    try:
        w = PolicyWitness(W, witness.key, witness.url)
        policy = CheckpointPolicy(alone.logs, (*alone.witnesses, w), alone.groups, alone.quorum)
        endpoints = (members[0].endpoint,)
        led = open_node(
            NodeSettings("n1", tmp_path / "n1", endpoints, prefix="/push/"),
            NodeConfig(checkpoint_every=5, checkpoint_interval_ms=20),
        )
        try:
            order_genesis(list(endpoints), "/push/", ORIGIN, policy, make_signer("alice"), "a")
            _wait_for("genesis", lambda: led.size == 1)
            for i in range(3):
                led.record_event("e", i, make_signer("alice"))
            size = led.size
            strict = _strict(policy)

            def cosigned() -> bool:
                result = strict.evaluate(led.checkpoint())
                return result.satisfied and result.checkpoint.size == size

            _wait_for("the node's checkpoint to carry the witness cosignature", cosigned)
            status = led.backend.node.cluster_status()
            assert status is not None and status["witness_refusals"] == {}
        finally:
            led.close()
    finally:
        for m in members:
            m.stop()
        witness.stop()
