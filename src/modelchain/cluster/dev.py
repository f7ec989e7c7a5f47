"""The local development cluster: etcd members and nodes on loopback, each a
process of its own, described by ``DIR/cluster.json`` (``modelchain cluster
up|status|down``).

``up`` starts three etcd members (Debian's etcd-server), makes a node
directory and key per node, writes each node's TOML file, starts the nodes,
then orders the genesis (naming every node and the threshold in its checkpoint
policy, and an admin member whose key is under ``DIR/home``) through etcd and
waits until every node holds a final checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..contracts.genesis import genesis_body
from ..contracts.types import GENESIS
from ..core.identity import Signer, VerifierKey
from ..core.policy import CheckpointPolicy
from ..core.tx import Transaction, decode_submission
from ..errors import UnavailableError, UsageError
from ..keys.files import KeyStore
from ..ledger.ledger import Founder, new_nonce
from ..node.etcd import EtcdClient, EtcdSequencer, EtcdTLS
from ..node.sequencer import Admitted
from .etcd import EtcdMember, free_ports, spawn_detached, start_members, stop_process
from .node import NodeSettings, default_prefix, init_node

__all__ = [
    "CLUSTER_FILE",
    "ClusterInfo",
    "cluster_down",
    "cluster_genesis_body",
    "cluster_status",
    "cluster_up",
    "order_genesis",
    "start_node",
]

CLUSTER_FILE = "cluster.json"
ADMIN = "admin"


@dataclass(frozen=True)
class ClusterInfo:
    """What ``cluster.json`` holds."""

    directory: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> ClusterInfo:
        path = directory / CLUSTER_FILE
        try:
            return cls(directory, json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise UsageError(f"no cluster at {directory} (no {CLUSTER_FILE})") from exc
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not JSON: {exc}") from exc

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return list(self.data["nodes"])

    @property
    def endpoints(self) -> list[str]:
        return list(self.data["etcd"]["endpoints"])

    @property
    def policy(self) -> CheckpointPolicy:
        return CheckpointPolicy.parse(self.data["policy"])

    def save(self) -> None:
        path = self.directory / CLUSTER_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, path)


def cluster_genesis_body(
    origin: str,
    policy: CheckpointPolicy,
    admin: Signer,
    org: str,
    *,
    policies: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The genesis body of a cluster's ledger: ``policy`` as its checkpoint
    policy (its first log key as the ledger's), ``admin`` (of ``org``) as the
    founding admin, and ``policies`` (none unless given; `modelchain cluster
    genesis` gives ``DEFAULT_POLICIES``, as `modelchain init` does)."""
    return genesis_body(
        origin,
        policy.logs[0].key,
        [Founder(VerifierKey(admin.name, admin.public_key), org, ("admin",)).to_json()],
        policies=policies,
        checkpoint_policy=policy,
    )


def order_genesis(
    endpoints: Sequence[str],
    prefix: str,
    origin: str,
    policy: CheckpointPolicy,
    admin: Signer,
    org: str,
    *,
    policies: Mapping[str, Mapping[str, str]] | None = None,
    tls: EtcdTLS | None = None,
) -> None:
    """Sign the genesis ``cluster_genesis_body`` makes and put it in the order
    (through etcd over TLS with ``tls``'s client certificate when given)."""
    body = cluster_genesis_body(origin, policy, admin, org, policies=policies)
    tx = Transaction(origin, GENESIS, admin.name, new_nonce(), time.time_ns() // 10**6, body)
    env, decoded = decode_submission(tx.sign(admin).to_bytes())
    client = EtcdClient(endpoints, tls=tls)
    try:
        EtcdSequencer(client, prefix, "genesis").submit([Admitted(env, decoded)]).result(60)
    finally:
        client.close()


def _wait(what: str, done: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            hint = f"; see {log}" if log is not None else ""
            raise UnavailableError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")
        time.sleep(0.1)


def _get(url: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    data = answer.json()
    return data if isinstance(data, dict) else None


def _answers(url: str) -> bool:
    return _get(url) is not None


def _final(status_url: str) -> bool:
    got = _get(status_url)
    return got is not None and int(got.get("final_size", 0)) >= 1


def start_node(toml: Path, log: Path) -> int:
    """Start ``modelchain node run TOML`` detached; return its pid."""
    return spawn_detached([sys.executable, "-m", "modelchain", "node", "run", str(toml)], log)


def cluster_up(
    directory: Path,
    *,
    nodes: int = 3,
    threshold: int | None = None,
    origin: str = "dev.cluster.local/log",
    checkpoint_interval_ms: int = 200,
    say: Callable[[str], None] = lambda _: None,
    timeout: float = 120.0,
) -> ClusterInfo:
    """Start a development cluster in ``directory`` (which must hold none)."""
    if nodes < 1:
        raise UsageError("a cluster needs at least one node")
    k = threshold if threshold is not None else nodes // 2 + 1
    if not 1 <= k <= nodes:
        raise UsageError(f"the threshold must be between 1 and {nodes}")
    if (directory / CLUSTER_FILE).exists():
        raise UsageError(f"{directory} already holds a cluster; `modelchain cluster down` first")
    if (directory / "nodes").exists() or (directory / "etcd").exists():
        raise UsageError(f"{directory} holds a stopped cluster's data; remove it or use another")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    say(f"starting 3 etcd members under {directory / 'etcd'}")
    members = start_members(directory / "etcd", 3, token=f"modelchain-{time.time_ns()}")
    endpoints = [m.endpoint for m in members]
    info = ClusterInfo(
        directory,
        {
            "origin": origin,
            "threshold": k,
            "etcd": {
                "endpoints": endpoints,
                "prefix": default_prefix(origin),
                "members": [_member_json(m) for m in members],
            },
            "nodes": [],
        },
    )
    try:
        home = directory / "home"
        keys = KeyStore(home)
        keys.create(ADMIN, None)
        admin = keys.signer(ADMIN)
        ports = free_ports(nodes)
        keyed: dict[str, tuple[bytes, str | None]] = {}
        for i in range(nodes):
            name = f"node{i + 1}"
            node_dir = directory / "nodes" / name
            key = init_node(node_dir / "ledger", origin)
            url = f"http://127.0.0.1:{ports[i]}"
            keyed[name] = (key.public_key, url)
            settings = NodeSettings(
                name=name,
                ledger=Path("ledger"),
                endpoints=tuple(endpoints),
                port=ports[i],
                reads="open",
                checkpoint_interval_ms=checkpoint_interval_ms,
            )
            (node_dir / "node.toml").write_text(settings.to_toml())
            info.data["nodes"].append(
                {"name": name, "url": url, "dir": str(node_dir), "log_key": str(key)}
            )
        policy = CheckpointPolicy.of_cluster(origin, keyed, k)
        info.data["policy"] = policy.to_text()
        for node in info.data["nodes"]:
            node_dir = Path(node["dir"])
            node["key"] = next(str(w.key) for w in policy.witnesses if w.name == node["name"])
            node["pid"] = start_node(node_dir / "node.toml", node_dir / "node.log")
            info.save()
            say(f"started {node['name']} (pid {node['pid']}) at {node['url']}")
        for node in info.nodes:
            log = Path(node["dir"]) / "node.log"
            health = functools.partial(_answers, str(node["url"]) + "/healthz")
            _wait(f"{node['name']} to answer", health, timeout, log)
        say("ordering the genesis through etcd")
        order_genesis(endpoints, default_prefix(origin), origin, policy, admin, "dev")
        for node in info.nodes:
            log = Path(node["dir"]) / "node.log"
            final = functools.partial(_final, str(node["url"]) + "/cluster/status")
            _wait(f"{node['name']} to hold a final checkpoint", final, timeout, log)
        info.data["admin"] = {"name": ADMIN, "home": str(home)}
        info.save()
        return info
    except BaseException:
        info.save()
        cluster_down(directory)
        raise


def _member_json(m: EtcdMember) -> dict[str, Any]:
    return {
        "name": m.name,
        "pid": m.pid,
        "data_dir": str(m.data_dir),
        "client_port": m.client_port,
        "peer_port": m.peer_port,
    }


def cluster_status(directory: Path) -> list[dict[str, Any]]:
    """Each node's status as it reports it (``reachable`` False when it does
    not answer), with its lag behind the longest node."""
    info = ClusterInfo.load(directory)
    rows: list[dict[str, Any]] = []
    for node in info.nodes:
        got = _get(node["url"] + "/cluster/status")
        row: dict[str, Any] = {
            "node": node["name"],
            "url": node["url"],
            "reachable": got is not None,
        }
        if got is not None:
            row.update(got)
        rows.append(row)
    longest = max((r.get("size", 0) for r in rows), default=0)
    for r in rows:
        if r["reachable"]:
            r["lag"] = longest - r["size"]
    return rows


def cluster_down(directory: Path) -> ClusterInfo:
    """Stop the cluster's nodes, then its etcd members; their data stays."""
    info = ClusterInfo.load(directory)
    for item in (*info.nodes, *info.data["etcd"]["members"]):
        if item.get("pid") is not None:
            stop_process(int(item["pid"]))
    path = directory / CLUSTER_FILE
    path.rename(path.with_suffix(".json.stopped"))
    return info
