"""The SQLite ledger store: entries, tree tiles, contract state, checkpoints,
and an index of the entries for the audit trail.

One write transaction per batch holds the entries, their index rows, their
nonces, the tiles they change and the state they write, so a crash at any
instant leaves either all of a batch or none of it. WAL mode lets readers
proceed while a batch commits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..core import canonical
from ..core.canonical import JSONValue
from ..core.merkle import HASH_SIZE, NodeReader, leaf_hash, tree_root
from ..core.tiles import TILE_WIDTH, TileWriter, tile_node_reader
from ..errors import Error, NotFoundError, RollbackError, StorageError
from .failures import storage_error
from .heads import Heads
from .protocols import Head, IndexRow

__all__ = ["IndexRow", "SqliteStore"]

_log = logging.getLogger("modelchain.storage")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tiles (
    level INTEGER NOT NULL, n INTEGER NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (level, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS trail (
    idx INTEGER PRIMARY KEY, type TEXT NOT NULL, actor TEXT NOT NULL,
    time INTEGER NOT NULL, accepted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trail_actor ON trail (actor, idx);
CREATE INDEX IF NOT EXISTS trail_type ON trail (type, idx);
CREATE INDEX IF NOT EXISTS trail_rejected ON trail (idx) WHERE accepted = 0;
"""
_INDEX_CHUNK = 5000
_INT64_MAX = 2**63 - 1


_FULL_TILE_CACHE = 4096  # full tiles never change; 4096 x 8 KiB = 32 MiB at most
_STATE_CACHE = 100_000


class SqliteStore:
    """A ledger's durable store (a ``LedgerStore``). One writer process at a time (a lock file
    enforces it); any number of read-only openers."""

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._synchronous = synchronous.upper()
        if self._synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise StorageError(f"unknown synchronous setting {synchronous!r}")
        self._busy_timeout_ms = busy_timeout_ms
        # What was published and acknowledged, kept beside the store and outside it.
        self.heads = Heads(self.path.parent, self.path.stem, durable=self._synchronous != "NORMAL")
        self._local = threading.local()
        self._wlock = threading.RLock()
        self._lockfile: int | None = None
        self._db: sqlite3.Connection | None = None
        self._full_tiles: dict[tuple[int, int], bytes] = {}
        self._state: dict[str, JSONValue | None] = {}
        self._generation = 0
        if readonly:
            if not self.path.exists():
                raise NotFoundError(f"no ledger store at {self.path}")
        else:
            self._take_lock()
            try:
                self._create_private()
                self._db = self._connect()
                with self._db:
                    self._db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                self.close()
                raise storage_error(f"opening the ledger store {self.path}", exc) from exc
            except BaseException:
                self.close()
                raise
        # A reader needs no right edge, and must open a damaged store so that
        # `log verify` can say what is wrong with it.
        self._size, self._writer = (
            (0, TileWriter()) if readonly else self._load_edge(self._reader())
        )
        if not readonly:
            try:
                self._guard_heads()
                self._index_missing()
            except BaseException:
                self.close()
                raise

    def _create_private(self) -> None:
        """Create the database file owner-only before SQLite does: SQLite gives
        its WAL and shared-memory files the database file's mode."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise storage_error(f"creating the ledger store {self.path}", exc) from exc
        os.close(fd)

    def _guard_heads(self) -> None:
        """Refuse a store that holds less than this ledger published or
        acknowledged; keep both heads from now on (older ledgers had none)."""
        self.heads.check(self._size, self._root_at)
        if self.heads.published() is None:
            latest = self.checkpoint()
            if latest is not None:
                self.heads.publish(latest[1])
        if self.heads.acked() is None:
            self.heads.acknowledge(self._size, self._writer.root())

    def _root_at(self, size: int) -> bytes:
        if not self.readonly and size == self._size:
            return self._writer.root()
        return tree_root(self.node_reader(), size)

    def published_head(self) -> tuple[Head, bytes] | None:
        return self.heads.published()

    def acked_head(self) -> Head | None:
        return self.heads.acked()

    def check_heads(self) -> None:
        """Raise RollbackError if the store holds less than, or other than,
        what this ledger published and acknowledged (for `log verify`)."""
        self.heads.check(self.size, self._root_at)

    # -- connections ---------------------------------------------------------

    def _take_lock(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            where = self.path.parent
            raise storage_error(f"opening the ledger at {where} for writing", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StorageError(
                f"the ledger at {self.path.parent} is open for writing by another process"
            ) from exc
        self._lockfile = fd

    def _connect(self, readonly: bool = False) -> sqlite3.Connection:
        try:
            if readonly:
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                try:
                    db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                except sqlite3.OperationalError:
                    if os.access(self.path.parent, os.W_OK):
                        raise
                    # On read-only media SQLite cannot make the WAL index a
                    # reader needs; nothing can change the files there, so
                    # reading them as immutable is exact.
                    db.close()
                    db = sqlite3.connect(
                        f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False
                    )
            else:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            return db
        except sqlite3.Error as exc:
            raise storage_error(f"opening the ledger store {self.path}", exc) from exc

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect(readonly=True) if self.readonly else self._connect()
            self._local.db = db
        return db

    def close(self) -> None:
        with self._wlock:
            if self._db is not None:
                self._db.close()
                self._db = None
            db = getattr(self._local, "db", None)
            if db is not None:
                db.close()
                self._local.db = None
            self.heads.close()
            if self._lockfile is not None:
                os.close(self._lockfile)
                self._lockfile = None

    # -- tree ----------------------------------------------------------------

    def _load_edge(self, db: sqlite3.Connection) -> tuple[int, TileWriter]:
        try:
            row = db.execute("SELECT max(idx) FROM entries").fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"the ledger store {self.path} is unreadable: {exc}") from exc
        size = 0 if row[0] is None else row[0] + 1
        edge: dict[int, bytes] = {}
        level = 0
        while size >> (8 * level):
            width = (size >> (8 * level)) % TILE_WIDTH
            if width:
                n = (size >> (8 * level)) // TILE_WIDTH
                got = db.execute(
                    "SELECT hashes FROM tiles WHERE level=? AND n=?", (level, n)
                ).fetchone()
                if got is None or len(got[0]) != width * HASH_SIZE:
                    raise StorageError(
                        f"tile {level}/{n} does not match {size} entries; "
                        "run `modelchain log verify`"
                    )
                edge[level] = bytes(got[0])
            level += 1
        return size, TileWriter(size, edge)

    @property
    def size(self) -> int:
        """Number of durable entries."""
        if self.readonly:
            row = self._reader().execute("SELECT max(idx) FROM entries").fetchone()
            return 0 if row[0] is None else int(row[0]) + 1
        return self._size

    def root(self) -> bytes:
        """Root of the durable tree, from the in-memory right edge (no reads)."""
        if self.readonly:
            return tree_root(self.node_reader(), self.size)
        with self._wlock:
            return self._writer.root()

    def head(self) -> tuple[int, bytes]:
        """Size and root of the durable tree, read together: a checkpoint signed
        from a size and a root read apart could pair a root with the wrong size."""
        if self.readonly:
            size = self.size
            return size, tree_root(self.node_reader(), size)
        with self._wlock:
            return self._size, self._writer.root()

    def root_after(self, leaf_hashes: Sequence[bytes]) -> bytes:
        """The root the tree would have with ``leaf_hashes`` appended; writes nothing."""
        with self._wlock:
            writer = TileWriter(self._size, self._writer.edge())
        writer.append(leaf_hashes)
        return writer.root()

    def read_tile(self, level: int, n: int) -> bytes:
        """Stored tile bytes; partial tiles are the current (widest) ones."""
        key = (level, n)
        tile = self._full_tiles.get(key)
        if tile is not None:
            return tile
        row = (
            self._reader().execute("SELECT hashes FROM tiles WHERE level=? AND n=?", key).fetchone()
        )
        if row is None:
            raise NotFoundError(f"no tile {level}/{n}")
        tile = bytes(row[0])
        if len(tile) == TILE_WIDTH * HASH_SIZE:
            if len(self._full_tiles) >= _FULL_TILE_CACHE:
                self._full_tiles.clear()
            self._full_tiles[key] = tile
        return tile

    def node_reader(self) -> NodeReader:
        return tile_node_reader(self.read_tile)

    # -- writes --------------------------------------------------------------

    def append(
        self,
        entries: Sequence[bytes],
        nonces: Sequence[str],
        writes: Mapping[str, JSONValue | None],
        index: Sequence[IndexRow],
        meta: Mapping[str, str] | None = None,
    ) -> list[bytes]:
        """Durably append ``entries`` (indexes size, size+1, ...) with their
        audit-trail ``index`` rows, nonces, state writes and ``meta`` values in
        one transaction; return their leaf hashes."""
        if self._db is None:
            raise StorageError("the ledger store is closed or read-only")
        if len(index) != len(entries):
            raise StorageError(f"{len(entries)} entries came with {len(index)} index rows")
        leaves = [leaf_hash(e) for e in entries]
        with self._wlock:
            first = self._size
            writer = TileWriter(self._size, self._writer.edge())
            tiles = writer.append(leaves)
            rows_state = [(k, None if v is None else canonical.dumps(v)) for k, v in writes.items()]
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO entries (idx, data) VALUES (?, ?)",
                    ((first + i, e) for i, e in enumerate(entries)),
                )
                db.executemany(
                    "INSERT INTO nonces (nonce, idx) VALUES (?, ?)",
                    ((n, first + i) for i, n in enumerate(nonces)),
                )
                db.executemany(
                    "INSERT INTO trail (idx, type, actor, time, accepted) VALUES (?, ?, ?, ?, ?)",
                    ((first + i, *row) for i, row in enumerate(index)),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO tiles (level, n, hashes) VALUES (?, ?, ?)",
                    ((lv, n, h) for (lv, n), h in tiles.items()),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                    ((k, v) for k, v in rows_state if v is not None),
                )
                db.executemany(
                    "DELETE FROM state WHERE key=?", ((k,) for k, v in rows_state if v is None)
                )
                if meta:
                    db.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items()
                    )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise storage_error("appending (nothing was written)", exc) from exc
            self._writer = writer
            self._size = writer.size
            self._generation += 1
            if len(self._state) > _STATE_CACHE:
                self._state.clear()
            self._state.update(writes)
            # Before anyone is told: a store found shorter than this later is refused.
            self.heads.acknowledge(self._size, writer.root())
        return leaves

    def _rollback(self, db: sqlite3.Connection) -> None:
        """Undo an unfinished transaction; if even that fails, nobody can say
        what the store holds, so the writer must stop."""
        if not db.in_transaction:
            return
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StorageError(f"rolling back a failed append failed: {exc}") from exc

    def check_writable(self) -> None:
        """Raise StorageError unless the database holds exactly the entries
        this writer believes it does: after a failed append, whether it is
        safe to go on."""
        try:
            row = self._reader().execute("SELECT max(idx) FROM entries").fetchone()
        except sqlite3.Error as exc:
            raise storage_error("reading the store back", exc) from exc
        size = 0 if row[0] is None else int(row[0]) + 1
        if size != self._size:
            raise StorageError(
                f"the store holds {size} entries where this writer wrote {self._size}"
            )

    def _index_missing(self) -> None:
        """Index the entries a store made before the audit-trail index existed
        (or by a version that did not fill it), in chunks, each one committed."""
        from ..core.tx import LogEntry  # the store reads entries only here

        assert self._db is not None
        row = self._db.execute("SELECT max(idx) FROM trail").fetchone()
        start = 0 if row[0] is None else int(row[0]) + 1
        if start >= self._size:
            return
        _log.info(f"indexing entries {start} to {self._size - 1} for the audit trail")
        for lo in range(start, self._size, _INDEX_CHUNK):
            rows = []
            for idx, data in self.entries(lo, min(self._size, lo + _INDEX_CHUNK)):
                try:
                    entry = LogEntry.decode(data)
                except Error as exc:
                    raise StorageError(
                        f"entry {idx} cannot be read ({exc}); run `modelchain log verify`"
                    ) from exc
                rows.append((idx, *IndexRow.of(entry.transaction, entry.outcome.accepted)))
            with self._wlock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(
                        "INSERT INTO trail (idx, type, actor, time, accepted) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback(self._db)
                    raise storage_error("indexing the log", exc) from exc

    def put_checkpoint(self, size: int, root: bytes, note: bytes) -> None:
        """Publish the checkpoint ``note`` of the tree (``size``, ``root``): first
        beside the store, durably, then in it. Refuses a checkpoint that does
        not extend the last one published."""
        if self._db is None:
            raise StorageError("the ledger store is closed or read-only")
        with self._wlock:
            published = self.heads.published()
            if published is not None:
                head = published[0]
                if size < head.size or (size == head.size and root != head.root):
                    raise RollbackError(
                        f"refusing to publish a checkpoint of {size} entries after one "
                        f"of {head.size}{' with another root' if size == head.size else ''}"
                    )
            if size > self._size or root != self._root_at(size):
                raise StorageError(f"a checkpoint of {size} entries is not this store's")
            self.heads.publish(note)
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoints (size, note) VALUES (?, ?)", (size, note)
                )
            except sqlite3.Error as exc:
                raise storage_error("storing the checkpoint", exc) from exc

    def set_meta(self, key: str, value: str) -> None:
        if self._db is None:
            raise StorageError("the ledger store is closed or read-only")
        with self._wlock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                )
            except sqlite3.Error as exc:
                raise storage_error("writing the store's metadata", exc) from exc

    # -- reads ---------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._reader().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def entry(self, index: int) -> bytes:
        row = self._reader().execute("SELECT data FROM entries WHERE idx=?", (index,)).fetchone()
        if row is None:
            raise NotFoundError(f"no entry {index}; the log has {self.size} entries")
        return bytes(row[0])

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        q = "SELECT idx, data FROM entries WHERE idx >= ?"
        args: tuple[int, ...] = (start,)
        if end is not None:
            q += " AND idx < ?"
            args = (start, end)
        for idx, data in self._reader().execute(q + " ORDER BY idx", args):
            yield int(idx), bytes(data)

    def indexed(self) -> int:
        """How many entries, from the first, the audit-trail index covers (a
        read-only opener of a store no writer has indexed yet sees fewer)."""
        if not self.readonly:
            return self._size
        try:
            row = self._reader().execute("SELECT max(idx) FROM trail").fetchone()
        except sqlite3.OperationalError:  # made before the index existed
            return 0
        return 0 if row[0] is None else int(row[0]) + 1

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
        """Indexes in ``[start, end)`` of entries matching every given filter,
        newest first, at most ``limit`` of them, from the audit-trail index.
        ``type_prefix`` matches types starting with it; times are inclusive;
        ``exclude`` drops types, each named whole or by a prefix ending in a dot."""
        where = ["idx >= ?", "idx < ?"]
        args: list[object] = [start, end]
        if actors is not None:
            if not actors:
                return []
            where.append(f"actor IN ({','.join('?' * len(actors))})")
            args.extend(actors)
        if type_ is not None:
            where.append("type = ?")
            args.append(type_)
        if type_prefix:
            where.append("type >= ? AND type < ?")
            args += [type_prefix, type_prefix[:-1] + chr(ord(type_prefix[-1]) + 1)]
        if accepted is not None:
            # A literal, so that the partial index of rejected entries applies.
            where.append("accepted = 1" if accepted else "accepted = 0")
        # Clamped to SQLite's 64-bit integers; entry times are far inside them.
        if since is not None:
            where.append("time >= ?")
            args.append(min(max(since, -_INT64_MAX), _INT64_MAX))
        if until is not None:
            where.append("time <= ?")
            args.append(min(max(until, -_INT64_MAX), _INT64_MAX))
        for t in exclude:
            if t.endswith("."):
                where.append("NOT (type >= ? AND type < ?)")
                args += [t, t[:-1] + chr(ord(t[-1]) + 1)]
            else:
                where.append("type <> ?")
                args.append(t)
        q = f"SELECT idx FROM trail WHERE {' AND '.join(where)} ORDER BY idx DESC LIMIT ?"
        return [int(i) for (i,) in self._reader().execute(q, (*args, limit))]

    def nonce_index(self, nonce: str) -> int | None:
        row = self._reader().execute("SELECT idx FROM nonces WHERE nonce=?", (nonce,)).fetchone()
        return None if row is None else int(row[0])

    def used_nonces(self, nonces: Sequence[str]) -> dict[str, int]:
        """Which of ``nonces`` are already in the log, and at which index."""
        found: dict[str, int] = {}
        db = self._reader()
        for lo in range(0, len(nonces), 500):
            part = nonces[lo : lo + 500]
            marks = ",".join("?" * len(part))
            for nonce, idx in db.execute(
                f"SELECT nonce, idx FROM nonces WHERE nonce IN ({marks})", part
            ):
                found[str(nonce)] = int(idx)
        return found

    def nonces(self) -> Iterator[tuple[str, int]]:
        for nonce, idx in self._reader().execute("SELECT nonce, idx FROM nonces ORDER BY idx"):
            yield str(nonce), int(idx)

    def index_rows(self) -> Iterator[tuple[int, IndexRow]]:
        """The audit-trail index, in log order (empty for a store made before it,
        opened read-only)."""
        try:
            rows = self._reader().execute(
                "SELECT idx, type, actor, time, accepted FROM trail ORDER BY idx"
            )
        except sqlite3.OperationalError:  # no such table
            return
        for idx, type_, actor, time, accepted in rows:
            yield int(idx), IndexRow(str(type_), str(actor), int(time), bool(accepted))

    def get_state(self, key: str) -> JSONValue | None:
        if key in self._state:
            return self._state[key]
        gen = self._generation
        row = self._reader().execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        value = None if row is None else canonical.loads(bytes(row[0]))
        if not self.readonly:
            with self._wlock:  # a commit between our read and here would make it stale
                if gen == self._generation:
                    self._state[key] = value
        return value

    def state_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """State keys starting with ``prefix``, in key order."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        for key, value in self._reader().execute(
            "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key", (prefix, upper)
        ):
            yield str(key), bytes(value)

    def state_items(self) -> Iterator[tuple[str, bytes]]:
        for key, value in self._reader().execute("SELECT key, value FROM state ORDER BY key"):
            yield str(key), bytes(value)

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        for level, n, hashes in self._reader().execute(
            "SELECT level, n, hashes FROM tiles ORDER BY level, n"
        ):
            yield int(level), int(n), bytes(hashes)

    def checkpoint(self, size: int | None = None) -> tuple[int, bytes] | None:
        """The checkpoint at ``size``, or the latest one."""
        db = self._reader()
        if size is None:
            row = db.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        else:
            row = db.execute("SELECT size, note FROM checkpoints WHERE size=?", (size,))
        got = row.fetchone()
        return None if got is None else (int(got[0]), bytes(got[1]))

    def checkpoints(self) -> Iterator[tuple[int, bytes]]:
        for size, note in self._reader().execute(
            "SELECT size, note FROM checkpoints ORDER BY size"
        ):
            yield int(size), bytes(note)

    def latest_checkpoints(self, limit: int) -> list[tuple[int, bytes]]:
        rows = self._reader().execute(
            "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT ?", (max(0, limit),)
        )
        return [(int(size), bytes(note)) for size, note in rows]
