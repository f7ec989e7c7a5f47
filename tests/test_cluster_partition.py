"""A network partition of the etcd cluster, in Linux network namespaces: each
of three etcd members runs in a namespace of its own, joined to the others
by a bridge on a private subnet; the three nodes run in this process (the
root namespace) and reach the members through the bridge. The test cuts the
etcd leader's link, checks that writes through the majority go on and the
nodes keep agreeing, heals the link, and checks that the member catches up
and the cluster converges.

Needs root, ``ip netns`` (iproute2, CAP_SYS_ADMIN: a container often lacks
it) and etcd; otherwise the module is skipped, saying why."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_signer
from test_cluster import ORIGIN, WAIT_S, Cluster, _wait_for

from modelchain.cluster.dev import order_genesis
from modelchain.cluster.etcd import (
    EtcdMember,
    initial_cluster,
    spawn_detached,
    stop_process,
    wait_healthy,
)
from modelchain.cluster.node import NodeSettings, init_node
from modelchain.contracts.types import EVENT
from modelchain.core.policy import CheckpointPolicy
from modelchain.core.tx import Transaction
from modelchain.ledger.ledger import new_nonce

IP = shutil.which("ip")
ETCDCTL = shutil.which("etcdctl")
TAG = f"{os.getpid() % 100000}"  # names of this run's namespaces and links
CMD_S = 20  # bound on each ip/etcdctl command
NODE_PORT = 8080  # each node process listens on its own namespace's address
PREFIX = "/partition/"


def _node_status(url: str) -> dict[str, Any] | None:
    try:
        got = httpx.get(url + "/cluster/status", timeout=2.0)
    except httpx.HTTPError:
        return None
    return got.json() if got.status_code == 200 else None  # type: ignore[no-any-return]


def _why_not() -> str | None:
    if shutil.which("etcd") is None or ETCDCTL is None:
        return "needs etcd and etcdctl (Debian: etcd-server, etcd-client)"
    if IP is None:
        return "needs iproute2's ip"
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    return None


_REASON = _why_not()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _skip_without_netns() -> None:
    """Skip unless this process may make a network namespace."""
    assert IP is not None
    probe = f"mc{TAG}-probe"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True, timeout=CMD_S)
    if made.returncode != 0:
        err = made.stderr.decode(errors="replace").strip()
        pytest.skip(f"`ip netns add` failed (no CAP_SYS_ADMIN in a container?): {err}")
    subprocess.run([IP, "netns", "del", probe], capture_output=True, timeout=CMD_S)


class _Terminated(Exception):
    """SIGTERM (a CI timeout, say) while namespaces exist: unwind and remove them."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(f"signal {signum}")


def _ip(*args: str, netns: str | None = None) -> None:
    assert IP is not None
    argv = [IP, *args] if netns is None else [IP, "-n", netns, *args]
    done = subprocess.run(argv, capture_output=True, timeout=CMD_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.decode(errors='replace').strip()}")


def _free_subnet() -> str:
    """A 10.77.x.0/24 no interface here uses yet (another run's, say)."""
    assert IP is not None
    used = subprocess.run([IP, "-4", "-o", "addr"], capture_output=True, timeout=CMD_S).stdout
    for x in range(256):
        if f" 10.77.{x}.".encode() not in used:
            return f"10.77.{x}"
    pytest.skip("no free 10.77.x.0/24 subnet")


class Net:
    """A bridge in the root namespace (the nodes' side) and, per member, a
    namespace joined to it by a veth pair. Everything made is recorded so
    ``remove`` undoes it, however far ``add`` got."""

    def __init__(self) -> None:
        self.subnet = _free_subnet()
        self.bridge = f"mcb{TAG}"
        self.namespaces: list[str] = []
        self.links: dict[str, str] = {}  # namespace -> its veth's root-side end

    def make_bridge(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, label: str, host: int) -> tuple[str, str]:
        """A namespace for ``label`` (e1, n2...), with ``eth0`` at
        ``<subnet>.<host>``; return (namespace, address)."""
        ns, outer, inner = f"modelchain-{TAG}-{label}", f"mcv{TAG}{label}", f"mci{TAG}{label}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self.links[ns] = outer
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", inner, "name", "eth0", netns=ns)
        address = f"{self.subnet}.{host}"
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        return ns, address

    def cut(self, ns: str) -> None:
        """Partition ``ns`` away: its link to the bridge goes down (inside,
        its own address still answers, so the member runs on, alone)."""
        _ip("link", "set", self.links[ns], "down")

    def heal(self, ns: str) -> None:
        _ip("link", "set", self.links[ns], "up")

    def remove(self) -> None:
        assert IP is not None
        for ns in self.namespaces:  # takes the veth pair with it
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=CMD_S)
        for outer in self.links.values():  # in case its namespace never got it
            subprocess.run([IP, "link", "del", outer], capture_output=True, timeout=CMD_S)
        subprocess.run([IP, "link", "del", self.bridge], capture_output=True, timeout=CMD_S)


class Partitioned:
    """Three etcd members, each in its own namespace of ``net``."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.members: list[EtcdMember] = []
        self.namespace: dict[str, str] = {}  # member name -> namespace
        self.node_pids: list[int] = []

    def start(self, base: Path) -> None:
        for i in (1, 2, 3):
            ns, address = self.net.add(f"e{i}", 10 + i)
            m = EtcdMember(f"etcd{i}", base / f"etcd{i}", 2379, 2380, host=address)
            self.members.append(m)
            self.namespace[m.name] = ns
        cluster = initial_cluster(self.members)
        for m in self.members:
            m.data_dir.mkdir(parents=True, mode=0o700)
            argv = [str(IP), "netns", "exec", self.namespace[m.name]]
            argv += m.command(cluster, f"partition-{TAG}")
            # `ip netns exec` execs etcd: the pid is etcd's.
            m.pid = spawn_detached(argv, m.data_dir.with_suffix(".log"))
        wait_healthy(self.endpoints, timeout=WAIT_S)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def status(self, member: EtcdMember, netns: str | None = None) -> dict[str, int] | None:
        """The member's header (revision, raft index, leader...), asked from
        ``netns`` (default: the root namespace); None when it does not answer."""
        assert ETCDCTL is not None and IP is not None
        argv = [ETCDCTL, "--endpoints", member.endpoint, "--dial-timeout=2s",
                "--command-timeout=2s", "endpoint", "status", "-w", "json"]  # fmt: skip
        if netns is not None:
            argv = [IP, "netns", "exec", netns, *argv]
        done = subprocess.run(
            argv, capture_output=True, timeout=CMD_S, env={**os.environ, "ETCDCTL_API": "3"}
        )
        if done.returncode != 0:
            return None
        status = json.loads(done.stdout)[0]["Status"]
        header = status["header"]
        return {
            "revision": int(header.get("revision", 0)),
            "member_id": int(header["member_id"]),
            "leader": int(status.get("leader", 0)),  # left out while there is none
            "raft_index": int(status.get("raftIndex", 0)),
        }

    def leader(self) -> EtcdMember:
        for m in self.members:
            got = self.status(m)
            if got is not None and got["leader"] == got["member_id"]:
                return m
        raise AssertionError("no etcd leader")

    def put_inside(self, member: EtcdMember) -> bool:
        """Whether a write through ``member``, from inside its namespace, succeeds."""
        assert ETCDCTL is not None and IP is not None
        argv = [IP, "netns", "exec", self.namespace[member.name], ETCDCTL,
                "--endpoints", member.endpoint, "--dial-timeout=2s", "--command-timeout=3s",
                "put", "/partition-probe", "x"]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, timeout=CMD_S, env={**os.environ, "ETCDCTL_API": "3"}
        )
        return done.returncode == 0

    def start_nodes(self, base: Path, admin: Any) -> list[tuple[str, str]]:
        """Three node processes (``modelchain node run``), each in a namespace
        of its own, and the genesis ordered; return each node's (name, URL)
        once every one holds a final checkpoint."""
        keys, homes = {}, {}
        for i in (1, 2, 3):
            name = f"n{i}"
            ns, address = self.net.add(name, 20 + i)
            homes[name] = (ns, address, base / name)
            keys[name] = init_node(base / name / "ledger", ORIGIN)
        urls = {n: f"http://{address}:{NODE_PORT}" for n, (_, address, _) in homes.items()}
        policy = CheckpointPolicy.of_cluster(
            ORIGIN, {n: (keys[n].public_key, urls[n]) for n in keys}, 2
        )
        for name, (ns, address, home) in homes.items():
            settings = NodeSettings(
                name, Path("ledger"), tuple(self.endpoints), prefix=PREFIX,
                host=address, port=NODE_PORT, reads="open", checkpoint_interval_ms=100,
            )  # fmt: skip
            (home / "node.toml").write_text(settings.to_toml())
            argv = [str(IP), "netns", "exec", ns, sys.executable, "-m", "modelchain"]
            argv += ["node", "run", str(home / "node.toml")]
            self.node_pids.append(spawn_detached(argv, home / "node.log"))
        for url in urls.values():
            _wait_for(f"{url} to answer", lambda url=url: _node_status(url) is not None)
        order_genesis(self.endpoints, PREFIX, ORIGIN, policy, admin, "acme")
        for url in urls.values():
            _wait_for(
                f"{url} to hold a final checkpoint",
                lambda url=url: (_node_status(url) or {}).get("final_size", 0) >= 1,
            )
        return list(urls.items())

    def stop(self) -> None:
        for pid in self.node_pids:
            stop_process(pid, signal.SIGKILL)
        for m in self.members:
            m.kill()


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[Partitioned]:
    _skip_without_netns()
    net = Net()
    etcd = Partitioned(net)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        net.make_bridge()
        etcd.start(tmp_path / "etcd")
        yield etcd
    finally:
        etcd.stop()
        net.remove()
        signal.signal(signal.SIGTERM, previous)


def test_the_majority_goes_on_while_the_leader_is_cut_off_and_it_catches_up(
    partitioned: Partitioned, tmp_path: Path
) -> None:
    etcd = partitioned
    cluster = Cluster(tmp_path / "nodes", etcd.endpoints, PREFIX)
    try:
        for i in range(30):
            cluster.led(cluster.names[i % 3]).backend.node.submit(cluster.event(i), timeout=WAIT_S)
        cluster.settle(31)

        cut = etcd.leader()
        ns = etcd.namespace[cut.name]
        etcd.net.cut(ns)
        rest = [m for m in etcd.members if m is not cut]

        # The majority elects a leader among itself; the cut member cannot write.
        def majority_leads() -> bool:
            got = [etcd.status(m) for m in rest]
            ids = {s["member_id"] for s in got if s is not None}
            return any(s is not None and s["leader"] in ids for s in got)

        _wait_for("a leader on the majority side", majority_leads)
        assert etcd.status(cut) is None  # unreachable from the nodes' side
        assert not etcd.put_inside(cut)

        # Writes through every node go on (their etcd clients reach the majority).
        futures = []
        for i in range(30, 90):
            node = cluster.led(cluster.names[i % 3]).backend.node
            futures.append(node.submit_async(cluster.event(i)))
        acks = [f.result(WAIT_S) for f in futures]
        assert sorted(a.index for a in acks) == list(range(31, 91))
        cluster.settle(91)
        assert len({led.backend.store.head() for led in cluster.running}) == 1
        during = etcd.status(rest[0])
        assert during is not None
        stale = etcd.status(cut, netns=ns)
        assert stale is not None and stale["revision"] < during["revision"]

        etcd.net.heal(ns)
        _wait_for(
            "the cut member to catch up",
            lambda: (s := etcd.status(cut)) is not None and s["revision"] >= during["revision"],
        )
        for i in range(90, 120):
            cluster.led(cluster.names[i % 3]).backend.node.submit(cluster.event(i), timeout=WAIT_S)
        size = cluster.settle(121)
        heads = {led.backend.store.head() for led in cluster.running}
        assert len(heads) == 1
        states = [dict(led.backend.store.state_items()) for led in cluster.running]
        assert states[0] == states[1] == states[2]
        # Every member holds the same revision once the writes stop.
        _wait_for(
            "the three members to hold the same revision",
            lambda: len({(s or {}).get("revision") for s in map(etcd.status, etcd.members)}) == 1,
        )
        assert size == 121
    finally:
        cluster.close()


def _post(url: str, admin: Any, count: int) -> list[int]:
    """``count`` events through the node at ``url``, each retried until the
    node acknowledges it; their indexes."""
    txs = []
    for _ in range(count):
        tx = Transaction(ORIGIN, EVENT, admin.name, new_nonce(), time.time_ns() // 10**6,
                         {"event": "partition", "data": None})  # fmt: skip
        txs.append(json.loads(tx.sign(admin).to_bytes()))
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            answer = httpx.post(url + "/v1/entries:batch", json=txs, timeout=WAIT_S)
            if answer.status_code == 200 and all("index" in i for i in answer.json()):
                return [int(i["index"]) for i in answer.json()]
            last = answer.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        assert time.monotonic() < deadline, f"{url} did not take the events: {last}"
        time.sleep(0.2)


def _converge(urls: list[str], size: int, when: str) -> None:
    """Wait until every node holds ``size`` entries, final, at one root."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = [_node_status(u) for u in urls]
        if (
            all(g is not None and g["size"] == size and g["final_size"] >= size for g in got)
            and len({(g or {}).get("root") for g in got}) == 1
        ):
            return
        shown = [{k: (g or {}).get(k) for k in ("size", "final_size", "fault")} for g in got]
        assert time.monotonic() < deadline, f"the nodes did not converge {when}: {shown}"
        time.sleep(0.1)


def test_node_processes_in_namespaces_ride_out_a_cut_etcd_leader(
    partitioned: Partitioned, tmp_path: Path
) -> None:
    etcd = partitioned
    admin = make_signer("alice")
    nodes = etcd.start_nodes(tmp_path / "nodes", admin)
    urls = [u for _, u in nodes]
    for u in urls:
        _post(u, admin, 10)
    _converge(urls, 31, "before the cut")

    cut = etcd.leader()
    ns = etcd.namespace[cut.name]
    etcd.net.cut(ns)
    for u in urls:
        _post(u, admin, 20)
    _converge(urls, 91, "while the leader is cut off")

    etcd.net.heal(ns)
    during = etcd.status(etcd.leader())
    assert during is not None
    _wait_for(
        "the cut member to catch up",
        lambda: (s := etcd.status(cut)) is not None and s["revision"] >= during["revision"],
    )
    for u in urls:
        _post(u, admin, 10)
    _converge(urls, 121, "after healing")
