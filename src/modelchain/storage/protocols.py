"""What the node, the executor, the replica, the audit and the ledger's reads
need of a store: ``LedgerStore`` (entries, tree, state, nonces, checkpoints,
the audit-trail index), ``BlobStore`` (content-addressed bytes) and
``ArtifactStore`` (model and dataset files by digest, streamed).

``SqliteStore`` and ``MemoryStore`` implement ``LedgerStore``; ``FileBlobStore``
implements ``BlobStore``; ``FsspecArtifactStore`` implements ``ArtifactStore``.
Code above storage types against these protocols.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, NamedTuple, Protocol

from ..core.canonical import JSONValue
from ..core.merkle import NodeReader

if TYPE_CHECKING:
    from ..core.tx import Transaction

__all__ = [
    "ArtifactStore",
    "BlobStore",
    "Head",
    "IndexRow",
    "LedgerStore",
    "ObjectWriter",
    "StoredObject",
    "type_excluded",
]


def type_excluded(type_: str, exclude: Sequence[str]) -> bool:
    """Whether ``exclude`` names transaction type ``type_``, whole or by a prefix
    ending in a dot (``inference.`` for every inference type): the audit trail's
    exclusion, which ``LedgerStore.find`` answers from its index."""
    return any(type_ == t or (t.endswith(".") and type_.startswith(t)) for t in exclude)


@dataclass(frozen=True)
class Head:
    """A tree head a ledger promised: its size and root."""

    size: int
    root: bytes


class IndexRow(NamedTuple):
    """What the audit-trail index keeps of an entry."""

    type: str
    actor: str
    time: int  # the transaction's time, ms
    accepted: bool

    @classmethod
    def of(cls, tx: Transaction, accepted: bool) -> IndexRow:
        return cls(tx.type, tx.actor, tx.time, accepted)


class LedgerStore(Protocol):
    """A ledger's entries, Merkle tree, contract state, nonces, checkpoints and
    audit-trail index. ``append`` is one durable group commit: after it
    returns, every entry, nonce, index row and state write of the batch is
    kept, and after it raises, none is."""

    @property
    def readonly(self) -> bool: ...

    @property
    def size(self) -> int:
        """Number of durable entries."""
        ...

    # -- tree ----------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """Size and root of the durable tree, read together."""
        ...

    def root(self) -> bytes: ...

    def root_after(self, leaf_hashes: Sequence[bytes]) -> bytes:
        """The root the tree would have with ``leaf_hashes`` appended; writes nothing."""
        ...

    def read_tile(self, level: int, n: int) -> bytes: ...

    def node_reader(self) -> NodeReader: ...

    def tiles(self) -> Iterator[tuple[int, int, bytes]]: ...

    # -- entries -------------------------------------------------------------

    def entry(self, index: int) -> bytes: ...

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]: ...

    def append(
        self,
        entries: Sequence[bytes],
        nonces: Sequence[str],
        writes: Mapping[str, JSONValue | None],
        index: Sequence[IndexRow],
        meta: Mapping[str, str] | None = None,
    ) -> list[bytes]:
        """Durably append ``entries`` (indexes size, size+1, ...) with their
        nonces, state writes, index rows and ``meta`` values (such as how far
        this node applied a shared order) as one group commit; return their
        leaf hashes."""
        ...

    def check_writable(self) -> None:
        """Raise StorageError unless the store holds exactly what its writer
        believes: after a failed append, whether it is safe to go on."""
        ...

    # -- state and nonces ----------------------------------------------------

    def get_state(self, key: str) -> JSONValue | None: ...

    def state_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...

    def state_items(self) -> Iterator[tuple[str, bytes]]: ...

    def nonce_index(self, nonce: str) -> int | None: ...

    def used_nonces(self, nonces: Sequence[str]) -> dict[str, int]: ...

    def nonces(self) -> Iterator[tuple[str, int]]: ...

    # -- checkpoints and promised heads --------------------------------------

    def checkpoint(self, size: int | None = None) -> tuple[int, bytes] | None: ...

    def checkpoints(self) -> Iterator[tuple[int, bytes]]: ...

    def latest_checkpoints(self, limit: int) -> list[tuple[int, bytes]]:
        """The latest ``limit`` checkpoints, newest first (a page shows a few
        without reading them all)."""
        ...

    def put_checkpoint(self, size: int, root: bytes, note: bytes) -> None:
        """Publish a checkpoint note of (``size``, ``root``); RollbackError for
        one that does not extend the last one published."""
        ...

    def published_head(self) -> tuple[Head, bytes] | None:
        """The last published checkpoint's head and note, as kept apart from
        the entries (``log verify`` compares them)."""
        ...

    def acked_head(self) -> Head | None:
        """The last acknowledged head, as kept apart from the entries."""
        ...

    # -- audit-trail index ---------------------------------------------------

    def indexed(self) -> int: ...

    def index_rows(self) -> Iterator[tuple[int, IndexRow]]: ...

    def find(
        self,
        start: int,
        end: int,
        limit: int,
        *,
        actors: Sequence[str] | None = None,
        type_prefix: str | None = None,
        type_: str | None = None,
        accepted: bool | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude: Sequence[str] = (),
    ) -> list[int]: ...

    # -- metadata and lifecycle ----------------------------------------------

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """Content-addressed blobs: ``put`` returns ``sha256:<hex>`` of the bytes,
    ``get`` returns bytes checked against that name."""

    def put(self, data: bytes) -> str: ...

    def get(self, ref: str) -> bytes: ...


@dataclass(frozen=True)
class StoredObject:
    """One object an artifact store holds: its ref (``<algorithm>:<hex>``), size, and
    when it was written (seconds since the epoch; None where the store cannot say)."""

    ref: str
    size: int
    modified: float | None = None


class ObjectWriter(Protocol):
    """An object on its way into an artifact store: ``write`` its bytes, then
    ``commit(ref)`` makes it visible under ``ref`` (whose digest the writer checked
    or computed from the same bytes), or ``abort`` leaves nothing under any ref (an
    upload opened with ``resume`` keeps its bytes aside, to be continued)."""

    def write(self, data: memoryview | bytes, /) -> None: ...

    def commit(self, ref: str, /) -> None: ...

    def abort(self) -> None: ...


class ArtifactStore(Protocol):
    """Files by digest, streamed in bounded memory: the store beside a ledger.

    Refs are ``<algorithm>:<hex digest>`` (``core.manifest.object_ref``). The store
    does not check what it returns; its readers hash what they read."""

    @property
    def url(self) -> str: ...

    def has(self, ref: str, /) -> bool: ...

    def size(self, ref: str) -> int | None: ...

    def upload(self, resume: str | None = None) -> ObjectWriter: ...

    def open_read(self, ref: str, offset: int = 0) -> IO[bytes]: ...

    def objects(self) -> Iterator[StoredObject]: ...

    def delete(self, ref: str) -> None: ...
