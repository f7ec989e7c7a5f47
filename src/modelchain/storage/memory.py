"""A ``LedgerStore`` held in memory: the same semantics as ``SqliteStore``
(group commits all or nothing, checkpoints that must extend the last one),
nothing on disk. For tests, simulations and scratch replays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from ..core import canonical
from ..core.canonical import JSONValue
from ..core.merkle import NodeReader, leaf_hash, tree_root
from ..core.tiles import TileWriter, tile_node_reader
from ..errors import NotFoundError, RollbackError, StorageError
from .protocols import Head, IndexRow, type_excluded

__all__ = ["MemoryStore"]


class MemoryStore:
    """A ledger store in this process's memory."""

    readonly = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: list[bytes] = []
        self._writer = TileWriter()
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._nonces: dict[str, int] = {}
        self._state: dict[str, JSONValue] = {}
        self._rows: list[IndexRow] = []
        self._checkpoints: dict[int, bytes] = {}
        self._published: tuple[Head, bytes] | None = None
        self._meta: dict[str, str] = {}
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._entries)

    # -- tree ----------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        with self._lock:
            return self._writer.size, self._writer.root()

    def root(self) -> bytes:
        return self.head()[1]

    def root_after(self, leaf_hashes: Sequence[bytes]) -> bytes:
        with self._lock:
            writer = TileWriter(self._writer.size, self._writer.edge())
        writer.append(leaf_hashes)
        return writer.root()

    def read_tile(self, level: int, n: int) -> bytes:
        tile = self._tiles.get((level, n))
        if tile is None:
            raise NotFoundError(f"no tile {level}/{n}")
        return tile

    def node_reader(self) -> NodeReader:
        return tile_node_reader(self.read_tile)

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        with self._lock:
            items = sorted(self._tiles.items())
        for (level, n), hashes in items:
            yield level, n, hashes

    # -- entries -------------------------------------------------------------

    def entry(self, index: int) -> bytes:
        if not 0 <= index < len(self._entries):
            raise NotFoundError(f"no entry {index}; the log has {self.size} entries")
        return self._entries[index]

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        stop = self.size if end is None else min(end, self.size)
        for i in range(max(0, start), stop):
            yield i, self._entries[i]

    def append(
        self,
        entries: Sequence[bytes],
        nonces: Sequence[str],
        writes: Mapping[str, JSONValue | None],
        index: Sequence[IndexRow],
        meta: Mapping[str, str] | None = None,
    ) -> list[bytes]:
        if self._closed:
            raise StorageError("the ledger store is closed")
        if len(index) != len(entries):
            raise StorageError(f"{len(entries)} entries came with {len(index)} index rows")
        leaves = [leaf_hash(e) for e in entries]
        with self._lock:
            first = self.size
            taken = [n for n in nonces if n in self._nonces]
            if taken or len(set(nonces)) != len(nonces):
                # SQLite's primary key refuses these; so does this store.
                raise StorageError(f"appending (nothing was written): nonce reused {taken}")
            writer = TileWriter(first, self._writer.edge())
            tiles = writer.append(leaves)
            # Everything is computed; from here on nothing can fail half-way.
            self._entries.extend(entries)
            self._tiles.update(tiles)
            self._nonces.update((n, first + i) for i, n in enumerate(nonces))
            self._rows.extend(index)
            for key, value in writes.items():
                if value is None:
                    self._state.pop(key, None)
                else:
                    self._state[key] = value
            self._meta.update(meta or {})
            self._writer = writer
        return leaves

    def check_writable(self) -> None:
        if self._closed:
            raise StorageError("the ledger store is closed")

    # -- state and nonces ----------------------------------------------------

    def get_state(self, key: str) -> JSONValue | None:
        return self._state.get(key)

    def _encoded(self, keep: Callable[[str], bool]) -> list[tuple[str, bytes]]:
        with self._lock:
            keys = sorted(k for k in self._state if keep(k))
            return [(k, canonical.dumps(self._state[k])) for k in keys]

    def state_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        yield from self._encoded(lambda key: key.startswith(prefix))

    def state_items(self) -> Iterator[tuple[str, bytes]]:
        yield from self._encoded(lambda key: True)

    def nonce_index(self, nonce: str) -> int | None:
        return self._nonces.get(nonce)

    def used_nonces(self, nonces: Sequence[str]) -> dict[str, int]:
        found = self._nonces
        return {n: found[n] for n in nonces if n in found}

    def nonces(self) -> Iterator[tuple[str, int]]:
        with self._lock:
            items = sorted(self._nonces.items(), key=lambda item: item[1])
        yield from items

    # -- checkpoints and promised heads --------------------------------------

    def checkpoint(self, size: int | None = None) -> tuple[int, bytes] | None:
        with self._lock:
            if size is None:
                if not self._checkpoints:
                    return None
                size = max(self._checkpoints)
            note = self._checkpoints.get(size)
        return None if note is None else (size, note)

    def checkpoints(self) -> Iterator[tuple[int, bytes]]:
        with self._lock:
            items = sorted(self._checkpoints.items())
        yield from items

    def latest_checkpoints(self, limit: int) -> list[tuple[int, bytes]]:
        with self._lock:
            sizes = sorted(self._checkpoints, reverse=True)[: max(0, limit)]
            return [(size, self._checkpoints[size]) for size in sizes]

    def put_checkpoint(self, size: int, root: bytes, note: bytes) -> None:
        if self._closed:
            raise StorageError("the ledger store is closed")
        with self._lock:
            if self._published is not None:
                head = self._published[0]
                if size < head.size or (size == head.size and root != head.root):
                    raise RollbackError(
                        f"refusing to publish a checkpoint of {size} entries after one "
                        f"of {head.size}{' with another root' if size == head.size else ''}"
                    )
            if size > self.size or root != tree_root(self.node_reader(), size):
                raise StorageError(f"a checkpoint of {size} entries is not this store's")
            self._published = (Head(size, root), note)
            self._checkpoints[size] = note

    def published_head(self) -> tuple[Head, bytes] | None:
        return self._published

    def acked_head(self) -> Head | None:
        size, root = self.head()
        return Head(size, root)

    # -- audit-trail index ---------------------------------------------------

    def indexed(self) -> int:
        return len(self._rows)

    def index_rows(self) -> Iterator[tuple[int, IndexRow]]:
        with self._lock:
            rows = list(self._rows)
        yield from enumerate(rows)

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
    ) -> list[int]:
        found: list[int] = []
        with self._lock:
            rows = self._rows
            for idx in range(min(end, len(rows)) - 1, max(0, start) - 1, -1):
                if len(found) >= limit:
                    break
                row = rows[idx]
                if actors is not None and row.actor not in actors:
                    continue
                if type_ is not None and row.type != type_:
                    continue
                if type_prefix and not row.type.startswith(type_prefix):
                    continue
                if accepted is not None and row.accepted != accepted:
                    continue
                if since is not None and row.time < since:
                    continue
                if until is not None and row.time > until:
                    continue
                if type_excluded(row.type, exclude):
                    continue
                found.append(idx)
        return found

    # -- metadata and lifecycle ----------------------------------------------

    def meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    def close(self) -> None:
        self._closed = True
