"""A cluster node: its TOML file, its directory and opening its ledger.

One TOML file per node::

    name = "org-a"                 # the node's name in the checkpoint policy
    ledger = "ledger"              # its ledger directory (ledger.db, log.key)

    [etcd]
    endpoints = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
    prefix = "/modelchain/acme.example/log/"   # default: from the origin
    ca = "etcd-ca.pem"             # TLS to etcd, with a client certificate
    cert = "org-a-etcd.pem"        # (all three, or none)
    key = "org-a-etcd-key.pem"
    server_name = "etcd.acme.example"  # the name every member's certificate
                                   # carries (default: the first endpoint's host)
    compact_every_s = 60           # delete applied batches, compact etcd
    keep_history_s = 3600          # a node silent longer stops holding them back

    [http]
    host = "127.0.0.1"
    port = 8001
    reads = "token"                # or "open"

    [checkpoints]
    interval_ms = 200              # propose a checkpoint this long after a write
    policy = "policy.txt"          # the ledger's checkpoint policy: a new node
                                   # verifies what peers serve with it

    [peers]                        # other nodes' URLs (bootstrap, divergence)
    org-b = "https://node.org-b.example"

Relative paths are relative to the file. The node's key is in its ledger
directory (``log.key``, perhaps encrypted, or ``log.pkcs11.json`` naming a
key in a PKCS#11 token): it signs checkpoints as the log (under the origin) and
cosigns them under the node's name; it never leaves the node.
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contracts import ContractSet, default_contracts
from ..contracts.genesis import checkpoint_policy
from ..core.identity import VerifierKey, check_key_name
from ..core.policy import CheckpointPolicy
from ..core.tx import LogEntry
from ..errors import UsageError
from ..keys.logkey import LogKeySecrets, Pkcs11Key, create_log_key, log_key_files
from ..ledger.ledger import Ledger
from ..ledger.local import DB_NAME, ClusterLink, LocalBackend
from ..node.etcd import EtcdClient, EtcdCosignatures, EtcdSequencer, EtcdTLS
from ..node.node import NodeConfig, order_position
from ..node.witnesses import WitnessPusher
from ..storage.sqlite import SqliteStore
from .bootstrap import bootstrap_from_peers, first_difference

__all__ = ["NodeSettings", "default_prefix", "init_node", "open_node"]

_log = logging.getLogger("modelchain.cluster")


def default_prefix(origin: str) -> str:
    """The etcd prefix of a ledger's keys when its nodes' files name none."""
    return f"/modelchain/{origin}/"


@dataclass(frozen=True)
class NodeSettings:
    """A node's TOML file, read and checked."""

    name: str
    ledger: Path
    endpoints: tuple[str, ...]
    prefix: str | None = None
    tls: EtcdTLS | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    reads: str = "token"
    checkpoint_interval_ms: int = 200
    peers: Mapping[str, str] = field(default_factory=dict)
    policy: Path | None = None  # the ledger's checkpoint policy, for a new node to verify peers
    compact_every_s: float = 60.0  # how often the node compacts etcd
    keep_history_s: float = 3600.0  # how long a silent node holds etcd's batches back

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeSettings:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError as exc:
            raise UsageError(f"no node file at {file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{file} is not valid TOML: {exc}") from exc
        try:
            return cls.parse(data, file.parent)
        except UsageError as exc:
            raise UsageError(f"{file}: {exc.message}") from exc

    @classmethod
    def parse(cls, data: Mapping[str, Any], base: Path) -> NodeSettings:
        known = {"name", "ledger", "etcd", "http", "checkpoints", "peers"}
        if extra := set(data) - known:
            raise UsageError(f"unknown settings {sorted(extra)} (known: {sorted(known)})")
        name = _str(data, "name")
        try:
            check_key_name(name)
        except Exception as exc:
            raise UsageError(f"name {name!r} cannot name a node (a key name)") from exc
        etcd = _table(data, "etcd")
        endpoints = etcd.get("endpoints")
        if (
            not isinstance(endpoints, list)
            or not endpoints
            or not all(isinstance(e, str) for e in endpoints)
        ):
            raise UsageError("[etcd] endpoints must be a list of HOST:PORT strings")
        tls_files = [etcd.get(k) for k in ("ca", "cert", "key")]
        tls = None
        if any(tls_files):
            if not all(isinstance(f, str) for f in tls_files):
                raise UsageError("[etcd] TLS needs all of ca, cert and key, or none")
            ca, cert, key = (base / str(f) for f in tls_files)
            server_name = etcd.get("server_name")
            if server_name is not None and not isinstance(server_name, str):
                raise UsageError("[etcd] server_name must be a host name")
            tls = EtcdTLS(ca, cert, key, server_name)
        http = _table(data, "http")
        reads = http.get("reads", "token")
        if reads not in ("open", "token"):
            raise UsageError("[http] reads must be 'open' or 'token'")
        port = http.get("port", 8080)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise UsageError("[http] port must be a number from 0 to 65535")
        checkpoints = _table(data, "checkpoints")
        interval = checkpoints.get("interval_ms", 200)
        if not isinstance(interval, int) or interval < 1:
            raise UsageError("[checkpoints] interval_ms must be a positive number")
        policy = checkpoints.get("policy")
        if policy is not None and not isinstance(policy, str):
            raise UsageError("[checkpoints] policy must be a file name")
        peers = _table(data, "peers")
        if not all(isinstance(v, str) for v in peers.values()):
            raise UsageError("[peers] maps node names to URLs")
        every = etcd.get("compact_every_s", 60)
        keep = etcd.get("keep_history_s", 3600)
        if not all(isinstance(v, int | float) and v > 0 for v in (every, keep)):
            raise UsageError("[etcd] compact_every_s and keep_history_s must be positive seconds")
        prefix = etcd.get("prefix")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.startswith("/")):
            raise UsageError("[etcd] prefix must be a string starting with '/'")
        return cls(
            name=name,
            ledger=base / _str(data, "ledger"),
            endpoints=tuple(endpoints),
            prefix=prefix,
            tls=tls,
            host=str(http.get("host", "127.0.0.1")),
            port=port,
            reads=str(reads),
            checkpoint_interval_ms=interval,
            peers=dict(peers),
            policy=None if policy is None else base / policy,
            compact_every_s=float(every),
            keep_history_s=float(keep),
        )

    def to_toml(self) -> str:
        """The settings as a node file (paths as given)."""
        lines = [f"name = {_q(self.name)}", f"ledger = {_q(str(self.ledger))}", "", "[etcd]"]
        lines.append("endpoints = [" + ", ".join(_q(e) for e in self.endpoints) + "]")
        if self.prefix is not None:
            lines.append(f"prefix = {_q(self.prefix)}")
        if self.tls is not None:
            lines += [f"ca = {_q(str(self.tls.ca))}", f"cert = {_q(str(self.tls.cert))}"]
            lines.append(f"key = {_q(str(self.tls.key))}")
            if self.tls.server_name is not None:
                lines.append(f"server_name = {_q(self.tls.server_name)}")
        lines += ["", "[http]", f"host = {_q(self.host)}", f"port = {self.port}"]
        lines += [f"reads = {_q(self.reads)}", "", "[checkpoints]"]
        lines.append(f"interval_ms = {self.checkpoint_interval_ms}")
        if self.policy is not None:
            lines.append(f"policy = {_q(str(self.policy))}")
        if self.peers:
            lines += ["", "[peers]", *(f"{_q(n)} = {_q(u)}" for n, u in self.peers.items())]
        return "\n".join(lines) + "\n"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"setting {key!r} is missing or not a string")
    return value


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"[{key}] must be a table")
    return value


def init_node(
    directory: str | os.PathLike[str],
    origin: str,
    *,
    passphrase: bytes | None = None,
    pkcs11: Pkcs11Key | None = None,
    pin: str | None = None,
) -> VerifierKey:
    """Make ``directory`` a node of the ledger ``origin``: a new key (never
    leaving it: ``log.key``, encrypted with ``passphrase`` when one is given,
    or with ``pkcs11`` a key generated in that token) and an empty store that
    the genesis, ordered through etcd, will start. Returns the node's verifier key."""
    path = Path(directory)
    if (path / DB_NAME).exists() or any(f.exists() for f in log_key_files(path)):
        raise UsageError(f"{path} already holds a ledger or a node key")
    check_key_name(origin)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = create_log_key(path, origin, passphrase=passphrase, pkcs11=pkcs11, pin=pin)
    store = SqliteStore(path / DB_NAME)
    try:
        store.set_meta("origin", origin)
    finally:
        store.close()
    return key


def _catch_up(
    settings: NodeSettings, origin: str, sequencer: EtcdSequencer, contracts: ContractSet
) -> None:
    """Bootstrap the node from a peer if etcd no longer holds the order from
    where it stopped (or, new, from the start)."""
    store = SqliteStore(settings.ledger / DB_NAME)
    try:
        position, _ = order_position(store)
        if sequencer.available(position):
            return
        policy = _policy(settings, store)
        bootstrap_from_peers(store, contracts, policy, _peers(settings, policy))
    finally:
        store.close()


def _peers(settings: NodeSettings, policy: CheckpointPolicy) -> list[str]:
    """The other nodes' URLs: the node file's [peers], then the policy's."""
    peers = [*settings.peers.values()]
    peers += [n.url for n in policy.nodes if n.url and n.name != settings.name]
    return list(dict.fromkeys(peers))


def _policy(settings: NodeSettings, store: SqliteStore) -> CheckpointPolicy:
    """The checkpoint policy to verify peers with: the ledger's, else (a node
    without the genesis yet) the one its node file names."""
    if store.size:
        return checkpoint_policy(LogEntry.decode(store.entry(0)).transaction.body)
    if settings.policy is None:
        raise UsageError(
            "this new node must bootstrap from a peer (etcd no longer holds the order from "
            "the start): name the ledger's checkpoint policy in its node file "
            "([checkpoints] policy = FILE) to verify what peers serve"
        )
    try:
        return CheckpointPolicy.parse(settings.policy.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the checkpoint policy {settings.policy}: {exc}") from exc


def _janitor(
    led: Ledger, sequencer: EtcdSequencer, settings: NodeSettings, stop: threading.Event
) -> None:
    """Every ``compact_every_s``: delete the batches every node applied and
    compact etcd's history there. A node silent for ``keep_history_s`` no
    longer holds batches back; back, it bootstraps from a peer."""
    while not stop.wait(settings.compact_every_s):
        try:
            if led.size == 0:
                continue
            nodes = [n.name for n in led.policy.nodes]
            low = sequencer.compact(nodes, grace_s=settings.keep_history_s)
            if low is not None:
                _log.info(f"etcd: batches through revision {low} deleted and compacted")
        except Exception as exc:  # the next round tries again
            _log.warning(f"compacting etcd failed ({exc!r})")


def open_node(
    settings: NodeSettings,
    config: NodeConfig | None = None,
    *,
    contracts: ContractSet | None = None,
    log_key_secrets: LogKeySecrets | None = None,
) -> Ledger:
    """Open the node's ledger, ordered through etcd and cosigned with the
    other nodes; its final checkpoints go to the witnesses the ledger's policy
    names (``WitnessPusher``). Closing the ledger closes its etcd client.
    ``contracts`` replaces the default contract set (tests use it to make a
    node diverge). ``log_key_secrets`` unlock the node's key (an encrypted
    ``log.key``, or a PKCS#11 token's PIN)."""
    if not (settings.ledger / DB_NAME).exists():
        raise UsageError(f"no node at {settings.ledger}; create one with `modelchain node init`")
    client = EtcdClient(settings.endpoints, tls=settings.tls)
    try:
        store = SqliteStore(settings.ledger / DB_NAME, readonly=True)
        try:
            origin = store.meta("origin")
        finally:
            store.close()
        if origin is None:
            raise UsageError(f"{settings.ledger} is not a modelchain ledger (no origin)")
        prefix = settings.prefix or default_prefix(origin)
        sequencer = EtcdSequencer(client, prefix, settings.name)
        _catch_up(settings, origin, sequencer, contracts or default_contracts())
        board = EtcdCosignatures(client, prefix)
        janitor = threading.Event()

        pushers: list[WitnessPusher] = []

        def close() -> None:
            janitor.set()
            for pusher in pushers:
                pusher.close()
            sequencer.close()
            board.close()
            client.close()

        link = ClusterLink(settings.name, sequencer, board, close)
        config = config or NodeConfig(checkpoint_interval_ms=settings.checkpoint_interval_ms)
        backend = LocalBackend(
            settings.ledger,
            config=config,
            cluster=link,
            contracts=contracts,
            log_key_secrets=log_key_secrets,
        )
        store = backend.store
        pusher = WitnessPusher(lambda: backend.policy if store.size else None, store, shared=True)
        pushers.append(pusher)
        backend.node.on_final(pusher.offer)
        backend.node.status_parts.append(pusher.status)
        if (latest := store.checkpoint()) is not None:
            pusher.offer(*latest)  # a restarted node's latest final checkpoint

        def locate(agreed: int, size: int) -> int | None:
            peers = _peers(settings, backend.policy)
            return first_difference(store, peers, agreed, size)

        backend.node.locate_divergence(locate)
        led = Ledger(backend=backend)
        threading.Thread(
            target=_janitor,
            args=(led, sequencer, settings, janitor),
            name="modelchain-etcd-janitor",
            daemon=True,
        ).start()
        return led
    except BaseException:
        client.close()
        raise
