"""What ``Ledger`` sits on, as httpx's client sits on a transport: a backend
that orders and stores (``LocalBackend``: a store and a node in this process)
or one that forwards and verifies (``RemoteBackend``: HTTP and a verified
mirror). Everything the SDK offers above that is written once, in ``Ledger``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..contracts import ContractSet
from ..core.identity import VerifierKey
from ..core.policy import CheckpointPolicy
from ..node.node import Ack, Node
from ..storage.protocols import BlobStore
from ..storage.sqlite import SqliteStore

__all__ = ["Backend"]


class Backend(Protocol):
    """One ledger's I/O: ordering and storing writes, and the store reads go to."""

    @property
    def path(self) -> Path:
        """The directory of the store (for a remote ledger, of its mirror)."""
        ...

    @property
    def origin(self) -> str: ...

    @property
    def readonly(self) -> bool: ...

    @property
    def contracts(self) -> ContractSet: ...

    @property
    def store(self) -> SqliteStore:
        """The store, brought up to date first (a remote mirror syncs when stale)."""
        ...

    @property
    def held(self) -> SqliteStore:
        """The store as it is held now, without any network."""
        ...

    @property
    def log_key(self) -> VerifierKey:
        """The key the log's checkpoints are verified with."""
        ...

    @property
    def policy(self) -> CheckpointPolicy:
        """Which signatures make a checkpoint of this ledger count."""
        ...

    @property
    def audit_key(self) -> VerifierKey | None:
        """The log key an audit checks genesis against (None: trust genesis's own)."""
        ...

    @property
    def node(self) -> Node:
        """The local node (UsageError where there is none)."""
        ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def max_batch(self) -> int: ...

    def clock(self) -> int: ...

    def submit(self, data: bytes) -> Ack: ...

    def submit_many(self, datas: Sequence[bytes]) -> list[Ack]:
        """Acks in order; raises the first refusal once all were tried."""
        ...

    def precheck(self, data: bytes) -> None: ...

    def disclose(self, index: int, disclosures: Sequence[str]) -> None:
        """Hand over the disclosures of the committed fields of our logged entry
        ``index`` to whoever keeps the ledger's vault."""
        ...

    def checkpoint(self) -> bytes:
        """The latest checkpoint note (NotFoundError if there is none yet)."""
        ...

    def cover(self, index: int) -> None:
        """Make entry ``index`` readable here if the log has it (a mirror syncs)."""
        ...

    def close(self) -> None: ...
