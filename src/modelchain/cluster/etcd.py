"""etcd members on this machine: the development cluster's, the tests' and the
benchmark's. Each runs Debian's ``etcd`` (3.4) as a child process with an
explicit backend quota and auto-compaction, listening on loopback, over
plain HTTP or, given a member certificate, over TLS with client certificates
required on both its client and its peer URLs.

Production clusters run etcd as their operators do; ``modelchain`` only needs
its client endpoints (see the README, "Running a cluster").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnavailableError, UsageError
from ..node.etcd import EtcdTLS

__all__ = [
    "DEFAULT_QUOTA",
    "EtcdMember",
    "MemberTLS",
    "alive",
    "free_ports",
    "initial_cluster",
    "spawn_detached",
    "start_members",
    "stop_process",
    "wait_healthy",
]

DEFAULT_QUOTA = 2 << 30  # etcd's backend quota, bytes (its own default, stated)
# etcd keeps history for this long whatever the nodes applied: a node down
# longer bootstraps from a peer (modelchain compacts sooner, below what every
# node applied).
AUTO_COMPACTION_RETENTION = "1h"


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on loopback now."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass(frozen=True)
class MemberTLS:
    """A member's TLS files (PEM): the CA whose certificates it accepts from
    clients and peers, and its own certificate and key, used both to serve
    and, towards its peers, as a client (so the certificate names the
    member's address and allows server and client authentication)."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class EtcdMember:
    """One etcd member: its name, data directory, address and ports, and its
    TLS files (None: plain HTTP)."""

    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    host: str = "127.0.0.1"
    quota: int = DEFAULT_QUOTA
    pid: int | None = None
    tls: MemberTLS | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"

    def command(self, initial_cluster: str, token: str, state: str = "new") -> list[str]:
        binary = shutil.which("etcd")
        if binary is None:
            raise UsageError("etcd is not installed (Debian: apt-get install etcd-server)")
        client = self.client_url
        argv = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", token,
            "--quota-backend-bytes", str(self.quota),
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", AUTO_COMPACTION_RETENTION,
            "--logger", "zap",
            "--log-level", "error",
        ]  # fmt: skip
        if self.tls is not None:
            ca, cert, key = (str(p) for p in (self.tls.ca, self.tls.cert, self.tls.key))
            argv += [
                "--cert-file", cert, "--key-file", key,
                "--client-cert-auth", "--trusted-ca-file", ca,
                "--peer-cert-file", cert, "--peer-key-file", key,
                "--peer-client-cert-auth", "--peer-trusted-ca-file", ca,
            ]  # fmt: skip
        return argv

    def start(self, initial_cluster: str, token: str, log: Path | None = None) -> None:
        """Start (or restart, on its data) this member, detached: it outlives
        this process (``stop`` or ``cluster down`` ends it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pid = spawn_detached(
            self.command(initial_cluster, token), log or self.data_dir.with_suffix(".log")
        )

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.pid is not None:
            stop_process(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.pid is not None:
            stop_process(self.pid)

    @property
    def running(self) -> bool:
        return self.pid is not None and alive(self.pid)


def spawn_detached(argv: list[str], log: Path) -> int:
    """Start ``argv`` in a session of its own, its output appended to ``log``;
    return its pid (no handle that would want it waited for)."""
    return os.posix_spawn(
        argv[0],
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a child that exited is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(pid: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Send ``sig`` to ``pid`` and wait until it is gone (SIGKILL after ``timeout``)."""
    if not alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.02)


def initial_cluster(members: Sequence[EtcdMember]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def start_members(
    directory: Path,
    count: int = 3,
    *,
    token: str = "modelchain",
    quota: int = DEFAULT_QUOTA,
    tls: Sequence[MemberTLS] | None = None,
    client_tls: EtcdTLS | None = None,
) -> list[EtcdMember]:
    """Start ``count`` members of a new etcd cluster with data under
    ``directory``; return them once the cluster answers. With ``tls`` (one
    per member) they speak TLS only and require client certificates;
    ``client_tls`` is then the certificate the health check writes with."""
    if tls is not None and (len(tls) != count or client_tls is None):
        raise UsageError("TLS members need one MemberTLS each and a client certificate")
    ports = free_ports(2 * count)
    members = [
        EtcdMember(
            f"etcd{i + 1}",
            directory / f"etcd{i + 1}",
            ports[2 * i],
            ports[2 * i + 1],
            quota=quota,
            tls=None if tls is None else tls[i],
        )
        for i in range(count)
    ]
    cluster = initial_cluster(members)
    for m in members:
        m.start(cluster, token)
    wait_healthy([m.endpoint for m in members], tls=client_tls)
    return members


def wait_healthy(
    endpoints: Sequence[str], timeout: float = 60.0, *, tls: EtcdTLS | None = None
) -> None:
    """Wait until a write through ``endpoints`` succeeds (a leader is elected);
    over TLS with ``tls``'s client certificate when given."""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        raise UsageError("etcdctl is not installed (Debian: apt-get install etcd-client)")
    env = {**os.environ, "ETCDCTL_API": "3"}
    argv = [etcdctl, "--command-timeout=2s"]
    if tls is None:
        argv += ["--endpoints", ",".join(endpoints)]
    else:
        argv += ["--endpoints", ",".join(f"https://{e}" for e in endpoints)]
        argv += [f"--cacert={tls.ca}", f"--cert={tls.cert}", f"--key={tls.key}"]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = subprocess.run(
            [*argv, "put", "/modelchain-health", "ok"], capture_output=True, env=env, check=False
        )
        if done.returncode == 0:
            return
        last = done.stderr.decode(errors="replace").strip()
        time.sleep(0.2)
    raise UnavailableError(f"etcd at {','.join(endpoints)} did not become healthy: {last}")
