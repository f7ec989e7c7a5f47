"""A ledger shared by three nodes ordered through a real etcd cluster (three
members of Debian's etcd-server on loopback): every node applies what any node
was given, their roots agree at every size, checkpoints count only with k of n
node cosignatures, a retried submission is applied once, a restarted node
resumes where it stopped, a node that executes differently is caught, and no
acknowledged transaction is lost or applied twice when a node and then the
etcd leader are killed under load."""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_sim import serving
from conftest import make_signer

from modelchain.cluster.dev import (
    cluster_down,
    cluster_status,
    cluster_up,
    order_genesis,
    start_node,
)
from modelchain.cluster.etcd import EtcdMember, initial_cluster, start_members
from modelchain.cluster.node import NodeSettings, init_node, open_node
from modelchain.contracts import default_contracts
from modelchain.contracts.types import EVENT
from modelchain.core.checkpoint import Checkpoint
from modelchain.core.merkle import tree_root
from modelchain.core.note import Note, parse_note
from modelchain.core.policy import CheckpointPolicy
from modelchain.core.tiles import decode_entry_bundle
from modelchain.core.tlogproof import TlogProof, verify_tlog_proof
from modelchain.core.tx import LogEntry, Outcome, Transaction
from modelchain.errors import SignatureError
from modelchain.keys.files import KeyStore
from modelchain.ledger.ledger import Ledger, new_nonce
from modelchain.node.etcd import EtcdSequencer, EtcdTLS
from modelchain.node.node import NodeConfig, order_position
from modelchain.storage.sqlite import SqliteStore

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None or shutil.which("etcdctl") is None,
    reason="needs etcd and etcdctl (Debian: etcd-server, etcd-client; .ci/run installs them)",
)

ORIGIN = "cluster.test/log"
WAIT_S = 60.0


def _wait_for(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EtcdMember]]:
    members = start_members(tmp_path_factory.mktemp("etcd"), 3)
    yield members
    for m in members:
        m.stop()


class Cluster:
    """Three nodes of one ledger in this process, each with its own directory,
    key and etcd client, ordered through the shared etcd."""

    def __init__(
        self,
        base: Path,
        endpoints: list[str],
        prefix: str,
        k: int = 2,
        tls: Mapping[str, EtcdTLS] | None = None,
    ) -> None:
        self.base, self.endpoints, self.prefix = base, endpoints, prefix
        self.names = ["n1", "n2", "n3"]
        self.tls = tls  # each node's etcd client certificate; None: plain HTTP
        keys = {n: init_node(base / n, ORIGIN) for n in self.names}
        self.policy = CheckpointPolicy.of_cluster(
            ORIGIN, {n: (keys[n].public_key, None) for n in self.names}, k
        )
        self.admin = make_signer("alice")
        self.ledgers: dict[str, Ledger | None] = {n: None for n in self.names}
        for n in self.names:
            self.open(n)
        genesis_tls = None if tls is None else tls[self.names[0]]
        order_genesis(endpoints, prefix, ORIGIN, self.policy, self.admin, "acme", tls=genesis_tls)
        self.settle(1)

    def settings(self, name: str, peers: dict[str, str] | None = None) -> NodeSettings:
        tls = None if self.tls is None else self.tls.get(name)
        return NodeSettings(
            name,
            self.base / name,
            tuple(self.endpoints),
            prefix=self.prefix,
            tls=tls,
            peers=peers or {},
        )

    def open(self, name: str, peers: dict[str, str] | None = None, **kwargs: Any) -> Ledger:
        config = NodeConfig(checkpoint_every=50, checkpoint_interval_ms=20)
        led = open_node(self.settings(name, peers), config, **kwargs)
        self.ledgers[name] = led
        return led

    def led(self, name: str) -> Ledger:
        led = self.ledgers[name]
        assert led is not None
        return led

    @property
    def running(self) -> list[Ledger]:
        return [led for led in self.ledgers.values() if led is not None]

    def event(self, data: object, nonce: str | None = None) -> bytes:
        tx = Transaction(
            ORIGIN, EVENT, "alice", nonce or new_nonce(), time.time_ns() // 10**6,
            {"event": "test", "data": data},
        )  # fmt: skip
        return tx.sign(self.admin).to_bytes()

    def settle(self, size: int | None = None) -> int:
        """Wait until every running node holds ``size`` entries (default: the
        longest's) under a final checkpoint; return that size."""
        want = size if size is not None else max(led.size for led in self.running)
        _wait_for(
            f"every node to hold {want} entries, final",
            lambda: all(
                led.size >= want and led.backend.node.final_size >= want for led in self.running
            ),
        )
        return want

    def close(self) -> None:
        for n in self.names:
            led = self.ledgers[n]
            if led is not None:
                led.close()
                self.ledgers[n] = None


@pytest.fixture
def cluster(etcd: list[EtcdMember], tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, [m.endpoint for m in etcd], f"/test/{tmp_path.name}/")
    yield c
    c.close()


def _roots(led: Ledger) -> dict[int, bytes]:
    """The root at each size this node stored a checkpoint for."""
    return {size: Checkpoint.from_text(parse_note(note).text).root
            for size, note in led.backend.store.checkpoints()}  # fmt: skip


def test_any_node_takes_writes_and_all_agree_at_every_size(cluster: Cluster) -> None:
    futures = []
    for i in range(300):
        node = cluster.led(cluster.names[i % 3]).backend.node
        futures.append(node.submit_async(cluster.event(i)))
    acks = [f.result(WAIT_S) for f in futures]
    assert sorted(a.index for a in acks) == list(range(1, 301))
    size = cluster.settle(301)
    heads = {led.backend.store.head() for led in cluster.running}
    assert len(heads) == 1, heads
    # The same root wherever two nodes checkpointed the same size, and every
    # node's tree agrees with node 1's at each of those sizes.
    reader = cluster.led("n1").backend.store.node_reader()
    for led in cluster.running:
        for s, root in _roots(led).items():
            assert tree_root(reader, s) == root
    states = [dict(led.backend.store.state_items()) for led in cluster.running]
    assert states[0] == states[1] == states[2]
    for led in cluster.running:
        note = led.backend.checkpoint()
        cp, verified = cluster.policy.verify(note)
        assert cp.size == size
        cosigners = {s.name for s in verified.signatures} - {ORIGIN}
        assert len(cosigners) >= 2
    # A receipt from any node verifies offline with the policy alone.
    index = acks[150].index
    proof = TlogProof.from_text(cluster.led("n3").tlog_proof(index).to_text())
    assert verify_tlog_proof(proof, acks[150].leaf_hash, cluster.policy).size == size


def test_a_checkpoint_with_fewer_than_k_node_cosignatures_is_refused(cluster: Cluster) -> None:
    cluster.led("n2").backend.node.submit(cluster.event("one"))
    cluster.settle(2)
    note = parse_note(cluster.led("n1").backend.checkpoint())
    cosigs = [s for s in note.signatures if s.name != ORIGIN]
    log_sig = [s for s in note.signatures if s.name == ORIGIN]
    assert len(cosigs) >= 2
    one = Note(note.text, (*log_sig, cosigs[0]))
    with pytest.raises(SignatureError, match="group 'nodes' needs 2"):
        cluster.policy.verify(one.to_bytes())
    # A cosignature is over the checkpoint it names: moved onto another size it fails.
    cp = Checkpoint.from_text(note.text)
    other = Checkpoint(ORIGIN, cp.size - 1, tree_root(
        cluster.led("n1").backend.store.node_reader(), cp.size - 1))  # fmt: skip
    moved = Note(other.text(), tuple(cosigs))
    with pytest.raises(SignatureError):
        cluster.policy.verify(moved.to_bytes())


def test_the_same_envelope_sent_to_two_nodes_is_applied_once(cluster: Cluster) -> None:
    data = cluster.event("twice")
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(
            lambda n: cluster.led(n).backend.node.submit(data, timeout=WAIT_S), ["n1", "n3"]
        )
    assert a == b
    size = cluster.settle()
    assert size == 2
    for led in cluster.running:
        entries = [LogEntry.decode(e) for _, e in led.backend.store.entries()]
        assert sum(e.envelope.to_bytes() == data for e in entries) == 1


def test_a_restarted_node_resumes_from_where_it_stopped(cluster: Cluster) -> None:
    for i in range(20):
        cluster.led("n1").backend.node.submit(cluster.event(i))
    cluster.settle(21)
    cluster.led("n2").close()
    cluster.ledgers["n2"] = None
    for i in range(20, 40):
        cluster.led("n3").backend.node.submit(cluster.event(i))
    cluster.settle(41)  # two of three nodes still make checkpoints final
    led = cluster.open("n2")
    assert led.size == 21  # what it had: nothing applied twice or skipped
    cluster.settle(41)
    assert led.backend.store.head() == cluster.led("n1").backend.store.head()


def test_a_node_that_executes_differently_stops_and_the_others_stay_final(
    cluster: Cluster,
) -> None:
    cluster.led("n3").close()
    contracts = default_contracts()
    honest = contracts.execute

    def altered(state: Any, index: int, tx: Transaction, keyids: tuple[str, ...]) -> Any:
        if tx.body.get("data") == "diverge":  # the test-only fault
            return Outcome.rejected("altered", "this node executes wrongly"), {}
        return honest(state, index, tx, keyids)

    contracts.execute = altered  # type: ignore[method-assign]
    with serving(cluster.led("n1")) as n1_url:
        bad = cluster.open("n3", peers={"n1": n1_url}, contracts=contracts)
        cluster.led("n1").backend.node.submit(cluster.event("before"))
        cluster.settle(2)
        diverging = cluster.led("n1").backend.node.submit(cluster.event("diverge"))
        node = bad.backend.node
        _wait_for("the altered node to notice", lambda: node.divergence is not None)
        assert node.divergence is not None
        assert node.divergence.size >= 3
        assert node.fault is not None and "diverged" in node.fault
        assert node.final_size == 2  # it never made the bad root final
        # Compared with n1's entries from the last size it agreed on.
        _wait_for(
            "the first differing entry",
            lambda: node.divergence is not None and node.divergence.first_entry is not None,
        )
        assert node.divergence.first_entry == diverging.index
        assert f"entry {diverging.index} is the first that differs" in node.divergence.message()
        _wait_for("the alarm to name it", lambda: "is the first that differs" in (node.fault or ""))
        status = node.cluster_status()
        assert status is not None and status["divergence"]["first_entry"] == diverging.index
    # The honest two go on making checkpoints final.
    cluster.ledgers["n3"] = None
    for i in range(5):
        cluster.led("n2").backend.node.submit(cluster.event(i))
    cluster.settle(8)
    bad.close()


def test_a_quorum_adds_a_node_and_raises_the_threshold(cluster: Cluster) -> None:
    cluster.led("n1").backend.node.submit(cluster.event("before"))
    cluster.settle(2)
    key = init_node(cluster.base / "n4", ORIGIN)
    nodes = {w.name: (w.key.public_key, None) for w in cluster.policy.nodes}
    nodes["n4"] = (key.public_key, None)
    policy = CheckpointPolicy.of_cluster(ORIGIN, nodes, 3)
    ack = cluster.led("n2").members.set_checkpoint_policy(policy, signers=[cluster.admin])
    assert ack.outcome.accepted
    cluster.names.append("n4")
    cluster.open("n4")  # joins after genesis: etcd still holds the whole order
    cluster.led("n3").backend.node.submit(cluster.event("after"))
    size = cluster.settle(4)
    assert len({led.backend.store.head() for led in cluster.running}) == 1
    for led in cluster.running:
        assert led.policy == policy
        cp, note = policy.verify(led.backend.checkpoint())
        assert cp.size == size
        assert len({s.name for s in note.signatures} - {ORIGIN}) >= 3
    # The old two-of-three no longer makes a checkpoint final.
    stripped = parse_note(cluster.led("n4").backend.checkpoint())
    two = [s for s in stripped.signatures if s.name != ORIGIN][:2]
    mine = [s for s in stripped.signatures if s.name == ORIGIN]
    with pytest.raises(SignatureError, match="needs 3"):
        policy.verify(Note(stripped.text, (*mine, *two)).to_bytes())


class _Tampering(http.server.ThreadingHTTPServer):
    """A peer in front of a real one that alters one byte of every entry bundle."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.served = 0
        super().__init__(("127.0.0.1", 0), _TamperHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TamperHandler(http.server.BaseHTTPRequestHandler):
    server: _Tampering

    def do_GET(self) -> None:
        got = httpx.get(self.server.upstream + self.path, timeout=10.0)
        body = got.content
        if self.path.startswith("/v1/entries:range") and got.status_code == 200:
            body = body[:-1] + bytes([body[-1] ^ 1])
            self.server.served += 1
        self.send_response(got.status_code)
        self.send_header("content-type", got.headers.get("content-type", "text/plain"))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _compact_now(endpoints: list[str]) -> int:
    """Compact etcd's history at its current revision (as auto-compaction does)."""
    env = {**os.environ, "ETCDCTL_API": "3"}
    out = subprocess.run(
        ["etcdctl", "--endpoints", ",".join(endpoints), "endpoint", "status", "-w", "json"],
        capture_output=True, check=True, env=env,
    ).stdout  # fmt: skip
    revision = max(int(item["Status"]["header"]["revision"]) for item in json.loads(out))
    subprocess.run(
        ["etcdctl", "--endpoints", ",".join(endpoints), "compact", str(revision)],
        capture_output=True, check=True, env=env,
    )  # fmt: skip
    return revision


def _stop_n3_and_write_on(cluster: Cluster) -> None:
    for i in range(30):
        cluster.led(cluster.names[i % 2]).backend.node.submit(cluster.event(i))
    cluster.settle(31)
    cluster.led("n3").close()
    cluster.ledgers["n3"] = None
    for i in range(30, 70):
        cluster.led("n1").backend.node.submit(cluster.event(i))
    cluster.settle(71)


def _converge_after_writes(cluster: Cluster) -> None:
    for i in range(5):
        cluster.led("n2").backend.node.submit(cluster.event(f"after {i}"))
    assert cluster.settle(76) == 76
    assert len({x.backend.store.head() for x in cluster.running}) == 1


def test_a_node_down_past_a_compaction_catches_up_from_the_live_batches(
    cluster: Cluster,
) -> None:
    _stop_n3_and_write_on(cluster)
    _compact_now(cluster.endpoints)  # history gone; each batch key keeps its one version
    led = cluster.open("n3")  # no peers named: none is needed
    assert led.size == 31
    _converge_after_writes(cluster)


def test_a_node_whose_batches_were_deleted_bootstraps_from_a_verified_peer(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    _stop_n3_and_write_on(cluster)
    # The batches n1 and n2 applied are deleted and etcd compacted there, as
    # the janitor does once n3 has been silent past its grace.
    sequencer = cluster.led("n1").backend.node._sequencer
    assert isinstance(sequencer, EtcdSequencer)
    store = SqliteStore(cluster.base / "n3" / "ledger.db", readonly=True)
    stopped_at = order_position(store)[0] >> 16  # the revision n3 needs next
    store.close()
    _wait_for(
        "n1 and n2 to record that they applied past where n3 stopped",
        lambda: all(
            sequencer.applied_revisions().get(n, (0, 0))[0] >= stopped_at for n in ("n1", "n2")
        ),
    )
    low = sequencer.compact(["n1", "n2"])
    assert low is not None and not sequencer.available(low << 16)
    with serving(cluster.led("n1")) as n1_url:
        tamper = _Tampering(n1_url)
        thread = threading.Thread(target=tamper.serve_forever, daemon=True)
        thread.start()
        try:
            with caplog.at_level(logging.WARNING, logger="modelchain.cluster"):
                led = cluster.open("n3", peers={"evil": tamper.url, "n1": n1_url})
        finally:
            tamper.shutdown()
            thread.join()
            tamper.server_close()
    assert tamper.served >= 1
    assert any(
        tamper.url in r.getMessage() and "do not give the root" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    assert led.size > 31  # bootstrapped from n1, verified
    _converge_after_writes(cluster)


# -- processes: kills under load ------------------------------------------------


def _etcd_leader(endpoints: list[str]) -> str:
    """The endpoint of the etcd member that leads now."""
    out = subprocess.run(
        ["etcdctl", "--endpoints", ",".join(endpoints), "endpoint", "status", "-w", "json"],
        capture_output=True, check=True, env={**os.environ, "ETCDCTL_API": "3"},
    ).stdout  # fmt: skip
    for item in json.loads(out):
        status = item["Status"]
        if status["leader"] == status["header"]["member_id"]:
            return str(item["Endpoint"])
    raise AssertionError("no etcd leader")


class Load:
    """Bounded load from a thread: batches of events to the nodes in turn,
    each batch retried (the same envelopes) until every item is answered."""

    def __init__(self, urls: list[str], admin: Any, origin: str) -> None:
        self.urls, self.admin, self.origin = urls, admin, origin
        self.acked: dict[str, int] = {}  # nonce -> index
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _batch(self, n: int) -> list[tuple[str, Any]]:
        out = []
        for _ in range(n):
            nonce = new_nonce()
            tx = Transaction(self.origin, EVENT, "admin", nonce, time.time_ns() // 10**6,
                             {"event": "load", "data": nonce})  # fmt: skip
            out.append((nonce, json.loads(tx.sign(self.admin).to_bytes())))
        return out

    def _run(self) -> None:
        turn = 0
        with httpx.Client(timeout=10.0) as http:
            while not self.stop.is_set() and len(self.acked) < 3000:
                pending = self._batch(20)
                tries = 0
                while pending and tries < 200:
                    url = self.urls[turn % len(self.urls)]
                    turn += 1
                    tries += 1
                    try:
                        answer = http.post(url + "/v1/entries:batch", json=[e for _, e in pending])
                    except httpx.HTTPError:
                        continue
                    if answer.status_code != 200:
                        continue
                    left = []
                    for (nonce, env), item in zip(pending, answer.json(), strict=True):
                        if "index" in item:
                            self.acked[nonce] = item["index"]
                        else:
                            left.append((nonce, env))
                    pending = left
                if pending:
                    self.errors.append(f"{len(pending)} transactions never acknowledged")

    def join(self) -> None:
        self.stop.set()
        self._thread.join(120)


def _log_of(url: str, size: int) -> list[LogEntry]:
    entries: list[LogEntry] = []
    with httpx.Client(timeout=10.0) as http:
        while len(entries) < size:
            start = len(entries)
            got = http.get(
                url + "/v1/entries:range",
                params={"start": start, "end": min(size, start + 256)},
            )
            got.raise_for_status()
            entries += [LogEntry.decode(e) for e in decode_entry_bundle(got.content)]
    return entries


def test_no_acknowledged_transaction_is_lost_when_a_node_and_the_etcd_leader_die(
    tmp_path: Path,
) -> None:
    info = cluster_up(tmp_path / "c", nodes=3, threshold=2, checkpoint_interval_ms=100)
    try:
        admin = KeyStore(Path(info.data["admin"]["home"])).signer("admin")
        nodes = info.nodes
        urls = [n["url"] for n in nodes]
        load = Load([urls[0], urls[2]], admin, info.data["origin"])
        _wait_for("some load", lambda: len(load.acked) >= 200)
        os.kill(nodes[1]["pid"], signal.SIGKILL)
        seen = len(load.acked)
        _wait_for("writes after the node kill", lambda: len(load.acked) >= seen + 200)
        endpoints = info.endpoints
        leader = _etcd_leader(endpoints)
        member = next(m for m in info.data["etcd"]["members"]
                      if f"127.0.0.1:{m['client_port']}" == leader)  # fmt: skip
        os.kill(member["pid"], signal.SIGKILL)
        seen = len(load.acked)
        _wait_for("writes after the leader kill", lambda: len(load.acked) >= seen + 200)
        # Restart both on their data.
        members = [EtcdMember(m["name"], Path(m["data_dir"]), m["client_port"], m["peer_port"])
                   for m in info.data["etcd"]["members"]]  # fmt: skip
        restarted = next(m for m in members if m.name == member["name"])
        restarted.start(initial_cluster(members), "ignored-on-restart")
        member["pid"] = restarted.pid
        node_dir = Path(nodes[1]["dir"])
        nodes[1]["pid"] = start_node(node_dir / "node.toml", node_dir / "node.log")
        info.data["nodes"] = nodes
        info.save()
        seen = len(load.acked)
        _wait_for("writes after the restarts", lambda: len(load.acked) >= seen + 100)
        load.join()
        assert not load.errors
        _wait_for(
            "the three nodes to converge",
            lambda: (
                len({(r.get("size"), r.get("root")) for r in cluster_status(tmp_path / "c")}) == 1
            ),
            timeout=120,
        )
        rows = cluster_status(tmp_path / "c")
        size = rows[0]["size"]
        assert all(r["reachable"] and not r["fault"] for r in rows)
        log = _log_of(urls[1], size)  # the killed node's copy, caught up
        where: dict[str, list[int]] = {}
        for i, e in enumerate(log):
            where.setdefault(e.transaction.nonce, []).append(i)
        for nonce, index in load.acked.items():
            assert where.get(nonce) == [index], (
                f"acked {nonce} at {index}, log has {where.get(nonce)}"
            )
    finally:
        cluster_down(tmp_path / "c")
