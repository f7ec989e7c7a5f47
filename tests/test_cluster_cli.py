"""The cluster as its operators drive it, through the CLI: three organisations
making their nodes, agreeing a policy, ordering the genesis and running their
nodes from TOML files; and the development cluster's up, status and down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_cli as run

from modelchain.cluster.etcd import EtcdMember, free_ports, spawn_detached, start_members
from modelchain.cluster.etcd import stop_process as stop
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.policy import CheckpointPolicy

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None or shutil.which("etcdctl") is None,
    reason="needs etcd and etcdctl (Debian: etcd-server, etcd-client; .ci/run installs them)",
)

ORIGIN = "models.cli-test/log"
WAIT_S = 60.0


def _wait_for(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _status(url: str) -> dict[str, object] | None:
    try:
        got = httpx.get(url + "/cluster/status", timeout=2.0)
    except httpx.HTTPError:
        return None
    return got.json() if got.status_code == 200 else None


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[list[EtcdMember]]:
    members = start_members(tmp_path / "etcd", 3)
    yield members
    for m in members:
        m.stop()


def test_three_organisations_start_a_shared_ledger_from_the_cli(
    env: dict[str, str], tmp_path: Path, etcd: list[EtcdMember]
) -> None:
    orgs = ["org-a", "org-b", "org-c"]
    ports = dict(zip(orgs, free_ports(3), strict=True))
    lines: list[str] = []
    for org in orgs:
        url = f"http://127.0.0.1:{ports[org]}"
        made = run(env, "node", "init", str(tmp_path / org / "ledger"), "--origin", ORIGIN,
                   "--name", org, "--url", url)  # fmt: skip
        log_line, witness_line = made.stdout.splitlines()
        assert log_line.startswith(f"log {ORIGIN}+") and log_line.endswith(url)
        assert witness_line.startswith(f"witness {org} {org}+")
        lines += [log_line, witness_line]
        key = tmp_path / org / "ledger" / "log.key"
        assert key.stat().st_mode & 0o077 == 0, "the node key is the node's alone"
    policy_file = tmp_path / "ledger.policy"
    policy_file.write_text("\n".join(lines) + "\ngroup nodes 2 org-a org-b org-c\nquorum nodes\n")
    policy = CheckpointPolicy.parse(policy_file.read_text())
    # A node refuses to run from a broken file, saying why.
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "org-a"\nledger = "org-a/ledger"\n')
    refused = run(env, "node", "run", str(bad), ok=False)
    assert refused.returncode == 2 and "[etcd] endpoints" in refused.stderr
    endpoints = ",".join(m.endpoint for m in etcd)
    pids = []
    try:
        for org in orgs:
            toml = tmp_path / org / "node.toml"
            toml.write_text(
                f'name = "{org}"\nledger = "ledger"\n\n[etcd]\nendpoints = '
                f"{json.dumps([m.endpoint for m in etcd])}\n\n[http]\nport = {ports[org]}\n"
                'reads = "open"\n\n[checkpoints]\ninterval_ms = 50\npolicy = "../ledger.policy"\n'
            )
            pids.append(spawn_detached(
                [sys.executable, "-m", "modelchain", "node", "run", str(toml)],
                tmp_path / org / "node.log",
            ))  # fmt: skip
        run(env, "identity", "new", "alice")
        run(env, "cluster", "genesis", "--policy", str(policy_file), "--etcd", endpoints,
            "--as", "alice", "--org", "acme")  # fmt: skip
        urls = [f"http://127.0.0.1:{ports[o]}" for o in orgs]
        for url in urls:
            _wait_for(f"{url} to hold a final checkpoint", lambda u=url: bool(
                (s := _status(u)) and int(str(s["final_size"])) >= 1))  # fmt: skip
        # Written through one organisation's node, pinned to the policy, applied by all.
        wrote = run(env, "--server", urls[1], "--log-key", str(policy_file), "event", "record",
                    "note", "--body", '{"n": 1}', "--as", "alice", "--json")  # fmt: skip
        assert json.loads(wrote.stdout)["index"] == 1
        for url in urls:
            _wait_for(f"{url} to apply it, final", lambda u=url: bool(
                (s := _status(u)) and int(str(s["final_size"])) >= 2))  # fmt: skip
            cp, _ = policy.verify(httpx.get(url + "/checkpoint").content)
            assert cp.size == 2
        roots = {str((_status(u) or {})["root"]) for u in urls}
        assert len(roots) == 1
        # `cluster genesis` installs the default policy set, as `modelchain init` does
        installed = httpx.get(urls[0] + "/v1/policies", timeout=10).json()["result"]
        assert {p["action"]: p["rule"] for p in installed} == {
            a: p["rule"] for a, p in DEFAULT_POLICIES.items()
        }
    finally:
        for pid in pids:
            stop(pid)


def test_the_development_cluster_up_status_and_down(env: dict[str, str], tmp_path: Path) -> None:
    where = tmp_path / "dev"
    up = run(env, "cluster", "up", "--dir", str(where), "--json")
    info = json.loads(up.stdout)
    try:
        assert info["threshold"] == 2 and len(info["nodes"]) == 3
        assert (where / "cluster.json").exists()
        status = run(env, "cluster", "status", "--dir", str(where))
        rows = status.stdout.splitlines()[1:]
        assert [r.split()[0] for r in rows] == ["node1", "node2", "node3"]
        assert all(r.split()[1] == "1" and r.split()[2] == "1" for r in rows)  # size, final
        again = run(env, "cluster", "up", "--dir", str(where), ok=False)
        assert again.returncode == 2 and "already holds a cluster" in again.stderr
        os.kill(info["nodes"][1]["pid"], signal.SIGKILL)
        down_one = run(env, "cluster", "status", "--dir", str(where), ok=False)
        assert down_one.returncode == 9 and "unreachable" in down_one.stdout
    finally:
        down = run(env, "cluster", "down", "--dir", str(where))
    assert "stopped 3 nodes and 3 etcd members" in down.stdout
    for item in (*info["nodes"], *info["etcd"]["members"]):
        with pytest.raises(ProcessLookupError):
            os.kill(item["pid"], 0)
