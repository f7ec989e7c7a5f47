"""Three nodes in one process over one shared ordered stream (python-tuf's
repository-simulator idea): each with its own MemoryStore and executor,
submissions sent to any of them, their roots and states equal at every size.
Also the store protocol's semantics, run against both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from conftest import make_signer

from modelchain import errors
from modelchain.contracts import default_contracts
from modelchain.contracts.genesis import genesis_body
from modelchain.contracts.types import (
    EVENT,
    FL_CREDIT_RECORD,
    FL_PARTICIPANT_REGISTER,
    FL_ROUND_AGGREGATE,
    FL_TASK_CREATE,
    FL_UPDATE_COMMIT,
    GENESIS,
    MODEL_REGISTER,
)
from modelchain.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.core.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from modelchain.core.tx import Transaction
from modelchain.ledger.ledger import new_nonce
from modelchain.node import InlineVerifier
from modelchain.node.node import Ack, Node, NodeConfig
from modelchain.node.sequencer import MemorySequencer
from modelchain.storage.memory import MemoryStore
from modelchain.storage.protocols import Head, IndexRow, LedgerStore, type_excluded
from modelchain.storage.sqlite import SqliteStore

ORIGIN = "sim.example/log"
WAIT_S = 10.0


def _tx(
    signer: Ed25519Signer, type_: str, body: dict[str, object], nonce: str | None = None
) -> bytes:
    t = Transaction(ORIGIN, type_, signer.name, nonce or new_nonce(), int(time.time() * 1000), body)
    return t.sign(signer).to_bytes()


def _event(signer: Ed25519Signer, n: object, nonce: str | None = None) -> bytes:
    return _tx(signer, EVENT, {"event": "sim", "data": n}, nonce)


def _wait_for(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


class Cluster:
    """Three nodes of one ledger attached to one in-memory order."""

    def __init__(self) -> None:
        self.log_signer = Ed25519Signer(ORIGIN, b"\x07" * 32)
        self.order = MemorySequencer()
        self.stores = [MemoryStore() for _ in range(3)]
        config = NodeConfig(checkpoint_every=5, checkpoint_interval_ms=20)
        self.nodes = [
            Node(
                store,
                self.log_signer,
                default_contracts(),
                self.order,
                config,
                verifier=InlineVerifier(),
            )
            for store in self.stores
        ]
        self.history: list[tuple[bytes, dict[str, bytes]]] = []  # root and state per size

    def settle(self) -> None:
        """Wait until every node applied the whole order, then check that
        they agree, and that they agree with what they agreed at each size."""
        _wait_for(
            "every node to apply the order",
            lambda: all(node.position == len(self.order) for node in self.nodes),
        )
        heads = [store.head() for store in self.stores]
        states = [dict(store.state_items()) for store in self.stores]
        assert all(h == heads[0] for h in heads), heads
        assert all(s == states[0] for s in states)
        size = heads[0][0]
        if size > len(self.history):
            assert size == len(self.history) + 1  # settled after each submission
            self.history.append((heads[0][1], states[0]))
        for store in self.stores:
            reader = store.node_reader()
            for k, (root, _) in enumerate(self.history, start=1):
                assert tree_root(reader, k) == root

    def close(self) -> None:
        for node in self.nodes:
            node.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def test_three_nodes_over_one_order_agree_at_every_size(cluster: Cluster) -> None:
    alice, bob, carol = make_signer("alice"), make_signer("bob"), make_signer("carol")
    members = [
        {"name": "alice", "org": "a", "roles": ["admin"], "keys": [verifier_of(alice).to_string()]},
        {"name": "bob", "org": "b", "roles": ["auditor"], "keys": [verifier_of(bob).to_string()]},
        {
            "name": "carol",
            "org": "c",
            "roles": ["trainer"],
            "keys": [verifier_of(carol).to_string()],
        },
    ]
    log_key = verifier_of(cluster.log_signer)
    a, b, c = cluster.nodes

    # The first entry of the order must be a genesis naming this log's key: one
    # naming another key passes admission, is ordered first, and is skipped by
    # every node, its submitter told why.
    other_key = verifier_of(Ed25519Signer(ORIGIN, b"\x08" * 32))
    early = a.submit_async(_tx(alice, GENESIS, genesis_body(ORIGIN, other_key, members)))
    with pytest.raises(errors.WrongLedgerError, match="must be a genesis"):
        early.result(WAIT_S)
    cluster.settle()
    assert all(store.size == 0 for store in cluster.stores)

    genesis = b.submit(_tx(alice, GENESIS, genesis_body(ORIGIN, log_key, members)), WAIT_S)
    assert genesis.index == 0 and genesis.outcome.accepted
    cluster.settle()

    # Events sent to each node in turn.
    for i in range(6):
        ack = cluster.nodes[i % 3].submit(_event(carol, i), WAIT_S)
        assert ack.outcome.accepted
        cluster.settle()

    # A transaction the contracts reject (auditors may not record events):
    # logged as rejected, identically everywhere.
    rejected = c.submit(_event(bob, "nope"), WAIT_S)
    assert not rejected.outcome.accepted
    cluster.settle()

    # One nonce, two transactions, two nodes at once: the order decides, the
    # first is applied and the other refused as a replay, on every node.
    nonce = new_nonce()
    first, second = _event(carol, "x", nonce), _event(carol, "y", nonce)
    futures = [a.submit_async(first), c.submit_async(second)]
    outcomes: list[Ack | BaseException] = []
    for fut in futures:
        try:
            outcomes.append(fut.result(WAIT_S))
        except errors.ReplayError as exc:
            outcomes.append(exc)
    acks = [o for o in outcomes if isinstance(o, Ack)]
    assert len(acks) == 1, outcomes
    refused = next(o for o in outcomes if not isinstance(o, Ack))
    assert f"at index {acks[0].index}" in str(refused)
    cluster.settle()

    # A byte-identical resubmission to another node: the existing entry, nothing written.
    data = _event(carol, "retried")
    original = a.submit(data, WAIT_S)
    cluster.settle()
    size = cluster.stores[0].size
    assert b.submit(data, WAIT_S) == original
    assert c.submit(data, WAIT_S) == original
    cluster.settle()
    assert all(store.size == size for store in cluster.stores)

    # Sent to two nodes at once before either is logged: applied once, both answered.
    twice = _event(carol, "twice")
    both = [b.submit_async(twice), c.submit_async(twice)]
    assert both[0].result(WAIT_S) == both[1].result(WAIT_S)
    cluster.settle()
    assert all(store.size == size + 1 for store in cluster.stores)

    # Many at once, spread over the nodes from several threads.
    results: list[Future[Ack]] = []
    lock = threading.Lock()

    def send(node: Node, n: int) -> None:
        got = node.submit_many([_event(carol, f"{n}/{k}") for k in range(20)])
        with lock:
            results.extend(got)

    threads = [
        threading.Thread(target=send, args=(node, n)) for n, node in enumerate(cluster.nodes)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    indexes = sorted(f.result(WAIT_S).index for f in results)
    assert indexes == list(range(size + 1, size + 61))
    _wait_for(
        "every node to apply the order",
        lambda: all(node.position == len(cluster.order) for node in cluster.nodes),
    )
    heads = {store.head() for store in cluster.stores}
    assert len(heads) == 1

    cluster.close()
    notes = {store.checkpoint() for store in cluster.stores}
    assert len(notes) == 1  # the same signed checkpoint everywhere
    latest = notes.pop()
    assert latest is not None
    cp, _ = open_checkpoint(latest[1], log_key)
    assert (cp.size, cp.root) == heads.pop()


# -- the store protocol, against both stores -----------------------------------------------


def _stores(tmp_path: Path) -> dict[str, Callable[[], LedgerStore]]:
    return {
        "memory": MemoryStore,
        "sqlite": lambda: SqliteStore(tmp_path / "ledger.db", synchronous="NORMAL"),
    }


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    made = _stores(tmp_path)[request.param]()
    yield made
    made.close()


def _row(n: int, accepted: bool = True) -> IndexRow:
    return IndexRow("event.record", "alice" if n % 2 else "bob", 1000 + n, accepted)


def test_the_trail_index_excludes_types_whole_or_by_prefix(store: LedgerStore) -> None:
    types = ["inference.batch", "model.deploy", "model.approve", "event.record", "inference.x"]
    rows = [IndexRow(types[i % 5], "alice", 1000 + i, True) for i in range(20)]
    store.append([f"e{i}".encode() for i in range(20)], [f"n{i}" for i in range(20)], {}, rows)

    def kinds(found: list[int]) -> set[str]:
        return {types[i % 5] for i in found}

    assert kinds(store.find(0, 20, 100, exclude=["inference.batch"])) == set(types) - {
        "inference.batch"
    }
    assert kinds(store.find(0, 20, 100, exclude=["model.", "inference."])) == {"event.record"}
    assert store.find(0, 20, 3, exclude=["inference.batch", "model."]) == [19, 18, 14]
    # a prefix is a prefix of whole dotted parts: "model" alone names no type
    assert len(store.find(0, 20, 100, exclude=["model"])) == 20
    assert store.find(0, 20, 100, type_prefix="model.", exclude=["model.deploy"]) == [
        i for i in range(19, -1, -1) if i % 5 == 2
    ]
    assert type_excluded("model.deploy", ["model."]) and not type_excluded("model", ["model."])


def test_store_appends_proves_and_refuses_a_rollback(store: LedgerStore) -> None:
    entries = [f"entry {i}".encode() for i in range(300)]
    leaves = store.append(
        entries[:10],
        [f"n{i}" for i in range(10)],
        {"k/1": {"v": 1}, "k/2": 2},
        [_row(i) for i in range(10)],
    )
    assert leaves == [leaf_hash(e) for e in entries[:10]]
    size1, root1 = store.head()
    assert size1 == 10 and store.root() == root1
    assert store.root_after([leaf_hash(e) for e in entries[10:]]) != root1
    predicted = store.root_after([leaf_hash(e) for e in entries[10:]])
    store.append(
        entries[10:],
        [f"n{i}" for i in range(10, 300)],
        {"k/1": None, "k/3": [3]},
        [_row(i, accepted=i != 42) for i in range(10, 300)],
    )
    size2, root2 = store.head()
    assert (size2, root2) == (300, predicted)

    read = store.node_reader()
    verify_inclusion(7, size2, leaf_hash(store.entry(7)), inclusion_proof(read, 7, size2), root2)
    verify_consistency(size1, size2, root1, root2, consistency_proof(read, size1, size2))
    assert [i for i, _ in store.entries(298)] == [298, 299]
    with pytest.raises(errors.NotFoundError):
        store.entry(300)

    assert store.get_state("k/1") is None and store.get_state("k/3") == [3]
    assert [k for k, _ in store.state_prefix("k/")] == ["k/2", "k/3"]
    assert store.nonce_index("n42") == 42 and store.nonce_index("none") is None
    assert store.used_nonces(["n1", "x", "n299"]) == {"n1": 1, "n299": 299}
    assert store.find(0, 300, 10, accepted=False) == [42]
    assert store.find(0, 300, 2, actors=["alice"]) == [299, 297]
    assert store.indexed() == 300

    signer = Ed25519Signer(ORIGIN, b"\x07" * 32)

    def note(size: int, root: bytes) -> bytes:
        return sign_checkpoint(Checkpoint(ORIGIN, size, root), signer).to_bytes()

    store.put_checkpoint(size2, root2, note(size2, root2))
    assert store.checkpoint() == (300, note(size2, root2))
    published = store.published_head()
    assert published is not None and published[0] == Head(size2, root2)
    with pytest.raises(errors.RollbackError, match="after one of 300"):
        store.put_checkpoint(size1, root1, note(size1, root1))
    with pytest.raises(errors.RollbackError, match="with another root"):
        store.put_checkpoint(size2, bytes(32), note(size2, bytes(32)))
    with pytest.raises(errors.StorageError):
        store.put_checkpoint(size2 + 1, root2, note(size2 + 1, root2))
    assert [size for size, _ in store.checkpoints()] == [300]
    store.check_writable()


def test_store_gives_its_latest_checkpoints_newest_first(store: LedgerStore) -> None:
    signer = Ed25519Signer(ORIGIN, b"\x07" * 32)
    notes = []
    for n in range(1, 6):
        store.append([f"e{n}".encode()], [f"n{n}"], {}, [_row(n)])
        size, root = store.head()
        notes.append(sign_checkpoint(Checkpoint(ORIGIN, size, root), signer).to_bytes())
        store.put_checkpoint(size, root, notes[-1])
    assert store.latest_checkpoints(3) == [(5, notes[4]), (4, notes[3]), (3, notes[2])]
    assert store.latest_checkpoints(10) == [(k + 1, notes[k]) for k in range(4, -1, -1)]
    assert store.latest_checkpoints(0) == []


def test_store_refuses_a_reused_nonce_and_writes_nothing(store: LedgerStore) -> None:
    store.append([b"a"], ["n"], {"k": 1}, [_row(0)])
    head = store.head()
    with pytest.raises(errors.StorageError):
        store.append([b"b"], ["n"], {"k": 2}, [_row(1)])
    assert store.head() == head and store.get_state("k") == 1


# -- the publisher -------------------------------------------------------------------------


class _SlowLogKey:
    """The log key behind a signer that waits for a gate (a hardware key, a
    witness): a real Signer, held on purpose."""

    def __init__(self) -> None:
        self._key = Ed25519Signer(ORIGIN, b"\x07" * 32)
        self.gate = threading.Event()
        self.waiting = threading.Event()

    @property
    def name(self) -> str:
        return self._key.name

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign(self, message: bytes) -> bytes:
        self.waiting.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        return self._key.sign(message)


def test_a_slow_checkpoint_signer_does_not_stall_writes() -> None:
    key = _SlowLogKey()
    store = MemoryStore()
    config = NodeConfig(checkpoint_every=1, checkpoint_interval_ms=1)
    node = Node(
        store, key, default_contracts(), MemorySequencer(), config, verifier=InlineVerifier()
    )
    try:
        alice = make_signer("alice")
        members = [
            {
                "name": "alice",
                "org": "a",
                "roles": ["admin"],
                "keys": [verifier_of(alice).to_string()],
            }
        ]
        body = genesis_body(ORIGIN, verifier_of(key), members)
        node.submit(_tx(alice, GENESIS, body), WAIT_S)
        assert key.waiting.wait(WAIT_S)  # the publisher is signing, and held
        for i in range(20):  # writes go on meanwhile
            assert node.submit(_event(alice, i), WAIT_S).outcome.accepted
        assert store.size == 21 and store.checkpoint() is None
        key.gate.set()
        _wait_for("the checkpoint", lambda: node.checkpoint_size == 21)
    finally:
        key.gate.set()
        node.close()
    latest = store.checkpoint()
    assert latest is not None and latest[0] == 21


def test_three_nodes_agree_on_a_federated_round(cluster: Cluster) -> None:
    """fl.* entries (contract-set version 6) sent to each node in turn, accepted
    and refused alike: the nodes agree on every outcome and every state write."""
    from test_fl_contracts import p256_key

    people = {"alice": ["admin", "fl-coordinator", "trainer"], "p1": ["fl-participant"]}
    people["p2"] = ["fl-participant"]
    signers = {n: make_signer(n) for n in people}
    members = [
        {"name": n, "org": f"org-{n}", "roles": r, "keys": [verifier_of(signers[n]).to_string()]}
        for n, r in people.items()
    ]
    log_key = verifier_of(cluster.log_signer)
    send = iter(cluster.nodes * 10)

    def submit(who: str, type_: str, body: dict[str, object]) -> Ack:
        ack = next(send).submit(_tx(signers[who], type_, body), WAIT_S)
        cluster.settle()
        return ack

    assert submit("alice", GENESIS, genesis_body(ORIGIN, log_key, members)).outcome.accepted
    digest = "sha256:" + "12" * 32
    art = {"digest": digest, "size": 3, "files": 1, "format": "bin", "manifest_ref": digest}
    model = {"name": "m", "artifact": art, "run": None, "parent": None, "metrics": {}, "card": {}}
    assert submit("alice", MODEL_REGISTER, model).outcome.accepted
    for i, p in enumerate(("p1", "p2")):
        body = {"node_id": str(2**63 + i), "public_key": p256_key(i)}
        assert submit(p, FL_PARTICIPANT_REGISTER, body).outcome.accepted
    task = {
        "task": "t",
        "model": {"name": "m", "version": 1},
        "participants": ["p1", "p2"],
        "rounds": 1,
        "aggregation": "FedAvg",
        "min_participants": 2,
        "acceptance": "update.norm < 5.0",
        "heldout": None,
        "description": "",
    }
    assert submit("alice", FL_TASK_CREATE, task).outcome.accepted

    def update(p: str, norm: float) -> dict[str, object]:
        figures = {"norm": norm, "distance": None, "cosine": None}
        return {"task": "t", "round": 1, "participant": p, "digest": "sha256:" + p[1] * 64,
                "examples": 10, "metrics": {}, "figures": figures}  # fmt: skip

    assert submit("p1", FL_UPDATE_COMMIT, update("p1", 500.0)).outcome.code == "update_refused"
    assert submit("p1", FL_UPDATE_COMMIT, update("p1", 1.0)).outcome.accepted
    assert submit("alice", FL_UPDATE_COMMIT, update("p2", 2.0)).outcome.accepted
    included = [{"participant": p, "digest": "sha256:" + p[1] * 64} for p in ("p1", "p2")]
    aggregate = {"task": "t", "round": 1, "aggregation": "FedAvg", "digest": digest,
                 "updates": included}  # fmt: skip
    assert submit("alice", FL_ROUND_AGGREGATE, aggregate).outcome.accepted
    credit = {"task": "t", "round": 1, "method": "examples", "heldout": None,
              "shares": {"p1": 0.5, "p2": 0.5}, "params": {}}  # fmt: skip
    assert submit("alice", FL_CREDIT_RECORD, credit).outcome.accepted
