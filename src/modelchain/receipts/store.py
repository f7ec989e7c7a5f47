"""The receipt store: SQLite (WAL, synchronous=FULL) beside the caller, holding each
batch's leaves, salts and submission status, and the index from request id to batch.

Its schema, migrations and every query are here; ``BatchWriter`` is the one writer of
batch rows, used by a log's own thread, by its recovery and by its worker process.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, StorageError, UsageError
from .journal import Batch, Parsed, build_batch, records_after

__all__ = [
    "BatchWriter",
    "PendingBatch",
    "connect",
    "count_pending",
    "default_store",
    "find_batch",
    "mark_batch",
    "open_store",
    "pending_batches",
    "read_only",
]

_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    env TEXT,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_time INTEGER NOT NULL,
    last_time INTEGER NOT NULL,
    session TEXT,
    last_seq INTEGER,
    status TEXT NOT NULL,
    entry_index INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status, seq);
CREATE INDEX IF NOT EXISTS batches_session ON batches (session, last_seq);
CREATE TABLE IF NOT EXISTS batch_leaves (
    seq INTEGER PRIMARY KEY,
    leaves BLOB NOT NULL,
    salts BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    request_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auto_ids (
    prefix TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (prefix, lo)
) WITHOUT ROWID;
"""

# Schema 1 kept each batch's leaves in its ``batches`` row, so marking a batch
# submitted rewrote a megabyte of leaves; schema 2 keeps them in their own table.
_MIGRATE_1_TO_2 = """
DROP INDEX IF EXISTS batches_status;
ALTER TABLE batches RENAME TO batches_v1;
{schema}
INSERT INTO batches (seq, batch_id, model, version, env, root, count, first_time, last_time,
                     status, entry_index, error)
    SELECT seq, batch_id, model, version, env, root, count, first_time, last_time,
           status, entry_index, error FROM batches_v1;
INSERT INTO batch_leaves (seq, leaves, salts) SELECT seq, leaves, salts FROM batches_v1;
DROP TABLE batches_v1;
"""

# (seq, batch_id, model, version, env, root, count, first_time, last_time)
PendingBatch = tuple[int, str, str, int, str | None, bytes, int, int, int]

_AUTO_ID = re.compile(r"([0-9a-f]{16})-([0-9]{1,18})\Z")


def default_store(home: Path, origin: str, model: str) -> Path:
    """Where a ledger's client keeps the receipt store of ``model``: under ``home``
    (the caller's ``$MODELCHAIN_HOME``), one folder per ledger origin."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", origin)
    return home / "receipts" / safe / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # Another process (a log, its worker, a recovering log) may hold the write lock.
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


def open_store(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the store at ``path`` for a log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = connect(path)
        try:
            _migrate(db, path)
        except BaseException:
            db.close()
            raise
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the receipt store {path}: {exc}") from exc
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    (found,) = db.execute("PRAGMA user_version").fetchone()
    if found == _SCHEMA_VERSION:
        return
    if found > _SCHEMA_VERSION:
        raise UsageError(f"{path} is a receipt store of a newer modelchain")
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated.
        (found,) = db.execute("PRAGMA user_version").fetchone()
        if found != _SCHEMA_VERSION:
            columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
            script = _MIGRATE_1_TO_2 if "leaves" in columns else "{schema}"
            for statement in script.format(schema=_SCHEMA).split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The store opened read-only for one lookup (a closed log's receipts)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the receipt store {path}: {exc}") from exc
    try:
        db.execute("PRAGMA busy_timeout=10000")
        yield db
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the receipt store {path}: {exc}") from exc
    finally:
        db.close()


def pending_batches(db: sqlite3.Connection) -> list[PendingBatch]:
    """The written batches not yet in the ledger, in the order they were written."""
    return db.execute(
        "SELECT seq, batch_id, model, version, env, root, count, first_time, last_time"
        " FROM batches WHERE status='pending' ORDER BY seq"
    ).fetchall()


def mark_batch(
    db: sqlite3.Connection, seq: int, status: str, index: int, error: str | None
) -> None:
    db.execute(
        "UPDATE batches SET status=?, entry_index=?, error=? WHERE seq=?",
        (status, index, error, seq),
    )


def count_pending(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT COUNT(*) FROM batches WHERE status='pending'")
    return int(row.fetchone()[0])


def find_batch(db: sqlite3.Connection, request_id: str, path: Path) -> dict[str, Any]:
    """The batch row (with its leaves and salts) holding ``request_id``; NotFoundError
    if none does (``path`` names the store in the message)."""
    auto = _AUTO_ID.match(request_id)
    row = db.execute("SELECT seq FROM records WHERE request_id=?", (request_id,)).fetchone()
    if row is None and auto:
        row = db.execute(
            "SELECT seq FROM auto_ids WHERE prefix=? AND lo<=? AND hi>=?",
            (auto[1], int(auto[2]), int(auto[2])),
        ).fetchone()
    if row is None:
        raise NotFoundError(f"no record {request_id!r} in {path} (flush first?)")
    cur = db.execute("SELECT * FROM batches JOIN batch_leaves USING (seq) WHERE seq=?", (row[0],))
    names = [d[0] for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


class BatchWriter:
    """Inserts batches into the receipt store: the one writer of batch rows, used by
    a log's own thread, by its recovery and by its worker process."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, path: Path) -> None:
        self._db = db
        self._lock = lock
        self._path = path

    def store(self, parsed: Parsed) -> None:
        """Write a segment's records that are not yet in the store as one batch.

        A batch row carries its session and last record number, and goes in only if
        the session's rows end before its first record, checked in the same write
        transaction: a record can reach the store once, never twice."""
        session = parsed.session
        if session is None or not parsed.recs:
            return
        while True:
            upto = self._upto(session.id)
            skip = records_after(parsed.recs, upto)
            recs = parsed.recs[skip:]
            if not recs:
                return
            ext = {i - skip: v for i, v in parsed.ext.items() if i >= skip}
            if self._write_batch(build_batch(session, recs, ext), upto):
                return

    def _upto(self, session: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(last_seq) FROM batches WHERE session=?", (session,)
            ).fetchone()
        return int(row[0] or 0)

    def _write_batch(self, batch: Batch, upto: int) -> bool:
        """Insert ``batch``; False (and nothing written) if the session's rows no
        longer end at ``upto``."""
        s = batch.session
        batch_id = secrets.token_hex(16)
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    (now,) = db.execute(
                        "SELECT MAX(last_seq) FROM batches WHERE session=?", (s.id,)
                    ).fetchone()
                    if int(now or 0) != upto:
                        db.execute("ROLLBACK")
                        return False
                    seq = db.execute(
                        "INSERT INTO batches (batch_id, model, version, env, root, count,"
                        " first_time, last_time, session, last_seq, status)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,'pending')",
                        (
                            batch_id,
                            s.model,
                            s.version,
                            s.env,
                            batch.root,
                            batch.count,
                            batch.first_time,
                            batch.last_time,
                            s.id,
                            batch.last_seq,
                        ),
                    ).lastrowid
                    db.execute(
                        "INSERT INTO batch_leaves (seq, leaves, salts) VALUES (?,?,?)",
                        (seq, batch.leaves, batch.salts),
                    )
                    if batch.auto is not None:
                        db.execute(
                            "INSERT INTO auto_ids (prefix, lo, hi, seq) VALUES (?,?,?,?)",
                            (s.id, batch.auto[0], batch.auto[1], seq),
                        )
                    if batch.named:
                        db.executemany(
                            "INSERT OR REPLACE INTO records (request_id, seq) VALUES (?,?)",
                            [(rid, seq) for rid, _ in batch.named],
                        )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"cannot write a batch to {self._path}: {exc}") from exc
        return True
