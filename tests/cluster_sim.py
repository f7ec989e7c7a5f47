"""An in-process cluster for tests, without etcd: three ledger directories,
each with its own log key and SQLite store, over one memory order and one
cosignature board; a checkpoint is final once 2 of the 3 nodes cosigned it.
Also served over HTTP by the real app, and checkpoint notes stripped of
cosignatures (what a client must refuse)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from serving import free_port

from modelchain.contracts import ContractSet
from modelchain.contracts.genesis import genesis_body
from modelchain.contracts.types import GENESIS
from modelchain.core.identity import Ed25519Signer, Signer, verifier_of
from modelchain.core.note import Note, parse_note
from modelchain.core.policy import CheckpointPolicy
from modelchain.keys.files import write_private_key
from modelchain.ledger.ledger import Founder, Ledger
from modelchain.ledger.local import DB_NAME, LOG_KEY_NAME, ClusterLink, LocalBackend
from modelchain.node.cosigning import MemoryBoard
from modelchain.node.node import NodeConfig
from modelchain.node.sequencer import MemorySequencer
from modelchain.storage.sqlite import SqliteStore

CLUSTER_ORIGIN = "cluster.example.org/test"
NODE_NAMES = ("n0", "n1", "n2")
THRESHOLD = 2
WAIT_S = 20.0


def node_seed(name: str) -> bytes:
    """A node's deterministic key seed, so failures reproduce."""
    return hashlib.sha256(f"cluster node {name}".encode()).digest()


def node_signer(name: str) -> Ed25519Signer:
    """A node's key: it signs as the log (under the origin) and cosigns as ``name``."""
    return Ed25519Signer(CLUSTER_ORIGIN, node_seed(name))


def cluster_policy(threshold: int = THRESHOLD) -> CheckpointPolicy:
    """The cluster's checkpoint policy: every node a log and a witness, ``threshold`` of them."""
    nodes = {name: (node_signer(name).public_key, None) for name in NODE_NAMES}
    return CheckpointPolicy.of_cluster(CLUSTER_ORIGIN, nodes, threshold)


def wait_for(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def strip_cosignatures(note: bytes | str, keep: int) -> bytes:
    """``note`` with the log signature and only its first ``keep`` cosignatures
    (by the policy's nodes, in the order they appear)."""
    parsed = parse_note(note)
    cosigners = set(NODE_NAMES)
    kept = []
    count = 0
    for sig in parsed.signatures:
        if sig.name in cosigners:
            if count >= keep:
                continue
            count += 1
        kept.append(sig)
    return Note(parsed.text, tuple(kept)).to_bytes()


class LedgerCluster:
    """Three cluster nodes of one ledger, each a ``Ledger`` over a
    ``LocalBackend`` with a ``ClusterLink``; genesis (naming n0's key as
    ``log_key`` and the cluster policy) is submitted to n0. ``node_contracts``
    gives a node other contracts than ``contracts`` (to make it diverge)."""

    def __init__(
        self,
        root: Path,
        admin: Signer,
        members: Sequence[Founder] = (),
        *,
        org: str = "acme",
        threshold: int = THRESHOLD,
        contracts: ContractSet | None = None,
        node_contracts: Mapping[str, ContractSet] | None = None,
    ) -> None:
        self.order = MemorySequencer()
        self.board = MemoryBoard()
        self.policy = cluster_policy(threshold)
        self.ledgers: list[Ledger] = []
        config = NodeConfig(checkpoint_every=1, checkpoint_interval_ms=20)
        try:
            for name in NODE_NAMES:
                path = root / name
                path.mkdir(mode=0o700, parents=True)
                write_private_key(path / LOG_KEY_NAME, node_seed(name), None)
                store = SqliteStore(path / DB_NAME)
                try:
                    store.set_meta("origin", CLUSTER_ORIGIN)
                finally:
                    store.close()
                link = ClusterLink(name, self.order, self.board)
                own = (node_contracts or {}).get(name, contracts)
                backend = LocalBackend(path, config=config, contracts=own, cluster=link)
                self.ledgers.append(Ledger(backend=backend, home=root / "home"))
            founders = [Founder(verifier_of(admin), org, ("admin",)), *members]
            body = genesis_body(
                CLUSTER_ORIGIN,
                verifier_of(node_signer(NODE_NAMES[0])),
                [f.to_json() for f in founders],
                checkpoint_policy=self.policy,
            )
            first = self.ledgers[0]
            first.submit(first.transaction(GENESIS, body, admin.name).sign(admin))
            self.settle()
        except BaseException:
            self.close()
            raise

    def __getitem__(self, i: int) -> Ledger:
        return self.ledgers[i]

    def settle(self) -> int:
        """Wait until every node applied the whole order and holds a final
        checkpoint of it; return that size."""
        size = len(self.order)
        wait_for(
            f"every node to hold a final checkpoint of {size}",
            lambda: all(
                led.node.position == size and led.node.final_size >= size for led in self.ledgers
            ),
        )
        return size

    def close(self) -> None:
        for led in self.ledgers:
            led.close()
        self.board.close()


@contextmanager
def serving(led: Ledger) -> Iterator[str]:
    """Serve ``led`` with the real app (reads open) on a loopback port, in this
    process; yield its base URL."""
    import uvicorn  # the server extra: only what serves needs it

    from modelchain.server import ServerConfig, create_app

    port = free_port()
    app = create_app(led, ServerConfig(reads="open"))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="cluster-server", daemon=True)
    thread.start()
    try:
        wait_for("the server to start", lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
