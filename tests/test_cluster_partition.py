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
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cluster import WAIT_S, Cluster, _wait_for

from modelchain.cluster.etcd import EtcdMember, initial_cluster, spawn_detached, wait_healthy

IP = shutil.which("ip")
ETCDCTL = shutil.which("etcdctl")
TAG = f"{os.getpid() % 100000}"  # names of this run's namespaces and links
CMD_S = 20  # bound on each ip/etcdctl command


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
    ``remove`` undoes it, however far ``add_member`` got."""

    def __init__(self) -> None:
        self.subnet = _free_subnet()
        self.bridge = f"mcb{TAG}"
        self.namespaces: list[str] = []
        self.links: dict[str, str] = {}  # namespace -> its veth's root-side end

    def make_bridge(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_member(self, i: int) -> tuple[str, str]:
        """Namespace ``i``, with ``eth0`` at ``<subnet>.(10+i)``; return
        (namespace, address)."""
        ns, outer = f"modelchain-{TAG}-etcd{i}", f"mcv{TAG}e{i}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", f"mci{TAG}e{i}")
        self.links[ns] = outer
        _ip("link", "set", f"mci{TAG}e{i}", "netns", ns)
        _ip("link", "set", f"mci{TAG}e{i}", "name", "eth0", netns=ns)
        address = f"{self.subnet}.{10 + i}"
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

    def start(self, base: Path) -> None:
        for i in (1, 2, 3):
            ns, address = self.net.add_member(i)
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

    def stop(self) -> None:
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
    cluster = Cluster(tmp_path / "nodes", etcd.endpoints, "/partition/")
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
