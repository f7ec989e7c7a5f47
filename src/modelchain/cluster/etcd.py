"""etcd members on this machine: the development cluster's, the tests' and the
benchmark's. Each runs Debian's ``etcd`` (3.4) as a child process with an
explicit backend quota and auto-compaction, listening on loopback.

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
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnavailableError, UsageError

__all__ = [
    "DEFAULT_QUOTA",
    "EtcdMember",
    "free_ports",
    "initial_cluster",
    "start_members",
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


@dataclass
class EtcdMember:
    """One etcd member: its name, data directory and loopback ports."""

    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    host: str = "127.0.0.1"
    quota: int = DEFAULT_QUOTA
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def command(self, initial_cluster: str, token: str, state: str = "new") -> list[str]:
        binary = shutil.which("etcd")
        if binary is None:
            raise UsageError("etcd is not installed (Debian: apt-get install etcd-server)")
        client = f"http://{self.host}:{self.client_port}"
        return [
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

    def start(self, initial_cluster: str, token: str, log: Path | None = None) -> None:
        """Start (or restart, on its data) this member."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = open(log or self.data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - the child's
        try:
            self.process = subprocess.Popen(
                self.command(initial_cluster, token),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def initial_cluster(members: Sequence[EtcdMember]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def start_members(
    directory: Path, count: int = 3, *, token: str = "modelchain", quota: int = DEFAULT_QUOTA
) -> list[EtcdMember]:
    """Start ``count`` members of a new etcd cluster with data under
    ``directory``; return them once the cluster answers."""
    ports = free_ports(2 * count)
    members = [
        EtcdMember(f"etcd{i + 1}", directory / f"etcd{i + 1}", ports[2 * i], ports[2 * i + 1])
        for i in range(count)
    ]
    for m in members:
        m.quota = quota
    cluster = initial_cluster(members)
    for m in members:
        m.start(cluster, token)
    wait_healthy([m.endpoint for m in members])
    return members


def wait_healthy(endpoints: Sequence[str], timeout: float = 60.0) -> None:
    """Wait until a write through ``endpoints`` succeeds (a leader is elected)."""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        raise UsageError("etcdctl is not installed (Debian: apt-get install etcd-client)")
    env = {**os.environ, "ETCDCTL_API": "3"}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = subprocess.run(
            [etcdctl, "--endpoints", ",".join(endpoints), "--command-timeout=2s",
             "put", "/modelchain-health", "ok"],
            capture_output=True, env=env, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        last = done.stderr.decode(errors="replace").strip()
        time.sleep(0.2)
    raise UnavailableError(f"etcd at {','.join(endpoints)} did not become healthy: {last}")
