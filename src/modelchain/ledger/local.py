"""The local backend: a ledger directory's SQLite store and the node that
orders, executes and publishes in this process (``modelchain.open(path)``)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..contracts import ContractSet, default_contracts
from ..contracts.genesis import checkpoint_policy
from ..contracts.state import LEDGER_KEY
from ..core.identity import VerifierKey, verifier_of
from ..core.policy import CheckpointPolicy
from ..core.tx import LogEntry
from ..errors import Error, NotFoundError, StorageError, UsageError
from ..keys.logkey import LOG_KEY_NAME, LogKeySecrets, open_log_key
from ..node.cosigning import CosignatureBoard
from ..node.node import Ack, Cosigning, Node, NodeConfig, system_clock_ms
from ..node.sequencer import LocalSequencer, Sequencer
from ..storage.blobs import FileBlobStore
from ..storage.protocols import BlobStore
from ..storage.sqlite import SqliteStore

__all__ = ["DB_NAME", "LOG_KEY_NAME", "ClusterLink", "LocalBackend"]

DB_NAME = "ledger.db"


@dataclass(frozen=True)
class ClusterLink:
    """What makes a ledger directory a cluster node: its name in the
    checkpoint policy, the shared order and the cosignature board."""

    node: str
    sequencer: Sequencer
    board: CosignatureBoard
    close: Callable[[], None] = lambda: None  # after the node closed: its connections


class LocalBackend:
    """A store and (unless read-only) a node over it, in ``path``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        config: NodeConfig | None = None,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], int] = system_clock_ms,
        contracts: ContractSet | None = None,
        cluster: ClusterLink | None = None,
        log_key_secrets: LogKeySecrets | None = None,
    ) -> None:
        self.path = Path(path)
        db = self.path / DB_NAME
        if not db.exists():
            raise NotFoundError(
                f"no ledger at {self.path}; create one with `modelchain init --origin NAME`"
            )
        self.readonly = readonly
        self.contracts = contracts or default_contracts()
        self._clock = clock
        self._store = SqliteStore(
            db, readonly=readonly, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        origin = self._store.meta("origin")
        if origin is None:
            self._store.close()
            raise StorageError(f"{db} is not a modelchain ledger (no origin)")
        self.origin = origin
        self._node: Node | None = None
        self._close_signer: Callable[[], None] = lambda: None
        self._cluster = cluster
        self._log_key: VerifierKey | None = None
        self._policy: CheckpointPolicy | None = None
        self._policy_text: object = None  # the state's policy text _policy was made from
        if not readonly:
            try:
                # Only a writer opens the log key: reads and audits never need it.
                signer = open_log_key(self.path, origin, log_key_secrets or LogKeySecrets())
                self._close_signer = getattr(signer, "close", self._close_signer)
                cosigning = None
                if cluster is not None:
                    cosigning = Cosigning(cluster.node, self._cluster_policy, cluster.board)
                self._node = Node(
                    self._store,
                    signer,
                    self.contracts,
                    LocalSequencer() if cluster is None else cluster.sequencer,
                    config,
                    clock,
                    cosigning=cosigning,
                )
            except BaseException:
                try:
                    self._close_signer()
                finally:
                    self._store.close()
                raise
            self._log_key = verifier_of(signer)

    @property
    def store(self) -> SqliteStore:
        return self._store

    @property
    def held(self) -> SqliteStore:
        return self._store

    @property
    def log_key(self) -> VerifierKey:
        """The node's own key, or (read-only) the one genesis names."""
        if self._log_key is None:
            self._log_key = self._genesis_log_key()
        return self._log_key

    @property
    def policy(self) -> CheckpointPolicy:
        """The ledger's checkpoint policy: the one genesis named or a quorum of
        admins set since (``checkpoint.policy.set``), or the log key alone."""
        if self._store.size == 0:
            return CheckpointPolicy.of_log(self.log_key)
        record = self._store.get_state(LEDGER_KEY)
        text = record.get("checkpoint_policy") if isinstance(record, dict) else None
        if self._policy is not None and self._policy_text == text:
            return self._policy
        try:
            if isinstance(record, dict) and isinstance(text, str):
                policy = checkpoint_policy(record)
            else:
                body = LogEntry.decode(self._store.entry(0)).transaction.body
                policy = checkpoint_policy(body)
            if not policy.logs:
                policy = policy.with_log(self.log_key)
        except (Error, KeyError, TypeError) as exc:
            raise StorageError(
                "cannot read the checkpoint policy from the ledger; run `modelchain log verify`"
            ) from exc
        self._policy, self._policy_text = policy, text
        return policy

    def _cluster_policy(self) -> CheckpointPolicy | None:
        return self.policy if self._store.size else None

    @property
    def audit_key(self) -> VerifierKey | None:
        # A read-only audit trusts no stored copy of the log key: it uses the one
        # genesis carries, checked as part of the replay.
        return self._log_key if self._node is not None else None

    def _genesis_log_key(self) -> VerifierKey:
        # Taken from entry 0 itself, not from derived state, so that a reader of
        # a damaged ledger can still open it and let the audit say what is wrong.
        try:
            body = LogEntry.decode(self._store.entry(0)).transaction.body
            return VerifierKey.from_string(body["log_key"])
        except (Error, KeyError, TypeError) as exc:
            raise StorageError(
                "cannot read the log key from the genesis entry; run `modelchain log verify`"
            ) from exc

    @property
    def node(self) -> Node:
        if self._node is None:
            raise UsageError("this ledger is open read-only")
        return self._node

    @functools.cached_property
    def blobs(self) -> BlobStore:
        return FileBlobStore(self.path / "blobs")

    @property
    def max_batch(self) -> int:
        return max(1, self.node.config.max_backlog // 2)

    def clock(self) -> int:
        return self._clock()

    def submit(self, data: bytes) -> Ack:
        return self.node.submit(data)

    def disclose(self, index: int, disclosures: Sequence[str]) -> None:
        """Nothing to hand over: an embedded ledger's disclosures went to its vault
        when their transaction was built (``Ledger.transaction``)."""

    def submit_many(self, datas: Sequence[bytes]) -> list[Ack]:
        futures = self.node.submit_many(datas)
        acks, first_error = [], None
        for f in futures:
            try:
                acks.append(f.result())
            except Error as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return acks

    def precheck(self, data: bytes) -> None:
        self.node.precheck(data)

    def checkpoint(self) -> bytes:
        note = self._node.publish_checkpoint() if self._node is not None else None
        if note is None:
            latest = self._store.checkpoint()
            if latest is None:
                raise NotFoundError("the ledger has no checkpoint yet")
            note = latest[1]
        return note

    def cover(self, index: int) -> None:
        pass  # a local store holds every entry it acknowledged

    def close(self) -> None:
        try:
            if self._node is not None:
                node, self._node = self._node, None
                node.close()
        finally:
            try:
                if self._cluster is not None:
                    self._cluster.close()
            finally:
                try:
                    close_signer, self._close_signer = self._close_signer, lambda: None
                    close_signer()  # a PKCS#11 log key's session
                finally:
                    self._store.close()
