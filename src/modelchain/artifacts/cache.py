"""The local digest cache: a file's identity and timestamps -> its digest, so hashing an
unchanged file again costs one stat. It is disposable: any SQLite error is a miss, and a
corrupt cache file is replaced, since everything in it can be recomputed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
from pathlib import Path

from ..core.manifest import TensorDigest
from ..errors import MalformedError

__all__ = ["DigestCache", "default_cache"]

_log = logging.getLogger("modelchain.artifacts")

_VERSION = 1
# One row per (file, algorithm): a changed file replaces its row, so the cache grows with
# the number of files hashed, not with the number of versions of each.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, algorithm TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL, tensors TEXT NOT NULL,
    PRIMARY KEY (dev, ino, algorithm)
) WITHOUT ROWID;
"""
_HEX = re.compile(r"[0-9a-f]{64}\Z")
_BATCH = 512


def _signed64(n: int) -> int:
    """SQLite integers are signed 64-bit; device and inode numbers may use all 64 bits."""
    return ((n + 2**63) % 2**64) - 2**63


def _make_private_dirs(directory: Path) -> None:
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)


class DigestCache:
    """Digests keyed by (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns, algorithm).

    ctime is part of the key because a writer can set mtime back but not ctime. The file at
    ``path`` belongs to the cache: if it is not a readable SQLite database it is replaced.
    Safe to call from several threads (one connection behind a lock) and several processes
    (WAL). Hashing code decides what may be cached; this class only stores it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[int, int, str, int, int, int, str, str]] = []
        try:
            _make_private_dirs(self.path.parent)
            self._conn = self._open()
        except sqlite3.OperationalError as exc:  # locked, read-only, disk full: not corruption
            self._disable(exc)
        except sqlite3.DatabaseError:
            _log.warning("digest cache was not a usable database; starting a new one")
            try:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._conn = self._open()
            except (OSError, sqlite3.Error) as exc:
                self._disable(exc)
        except OSError as exc:
            self._disable(exc)

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version != _VERSION:
                conn.execute("DROP TABLE IF EXISTS digests")
                conn.execute(f"PRAGMA user_version={_VERSION}")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _disable(self, exc: BaseException) -> None:
        # The error class only: a message could carry a path the user did not choose to show.
        _log.warning("digest cache disabled (%s); files will be hashed in full", type(exc).__name__)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    def get(
        self, st: os.stat_result, algorithm: str
    ) -> tuple[str, tuple[TensorDigest, ...]] | None:
        """The cached digest and tensor digests of the file ``st`` describes, or None."""
        with self._lock:
            self._write_pending()
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT size, mtime_ns, ctime_ns, digest, tensors FROM digests"
                    " WHERE dev = ? AND ino = ? AND algorithm = ?",
                    (_signed64(st.st_dev), _signed64(st.st_ino), algorithm),
                ).fetchone()
            except sqlite3.Error as exc:
                _log.debug("digest cache read failed (%s)", type(exc).__name__)
                return None
        if row is None or tuple(row[:3]) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        digest, tensors_json = row[3], row[4]
        if not isinstance(digest, str) or not _HEX.match(digest):
            return None
        try:
            tensors = tuple(TensorDigest.from_json(t) for t in json.loads(tensors_json))
        except (ValueError, TypeError, MalformedError):
            return None
        if any(not isinstance(t.digest, str) or not _HEX.match(t.digest) for t in tensors):
            return None
        return digest, tensors

    def put(
        self,
        st: os.stat_result,
        algorithm: str,
        digest_hex: str,
        tensors: tuple[TensorDigest, ...] = (),
    ) -> None:
        """Remember ``digest_hex`` for the file ``st`` describes (replacing older rows).

        Rows are written in batches, one transaction each, at the latest on :meth:`flush`
        or the next :meth:`get`: a commit per file would cost more than hashing small files.
        """
        blob = json.dumps([t.to_json() for t in tensors], separators=(",", ":"))
        row = (
            _signed64(st.st_dev),
            _signed64(st.st_ino),
            algorithm,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            digest_hex,
            blob,
        )
        with self._lock:
            self._pending.append(row)
            if len(self._pending) >= _BATCH:
                self._write_pending()

    def flush(self) -> None:
        """Write the rows :meth:`put` has buffered."""
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        rows, self._pending = self._pending, []
        if self._conn is None or not rows:
            return
        try:
            with self._conn:  # one transaction
                self._conn.execute("BEGIN")
                self._conn.executemany(
                    "INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?,?,?,?)", rows
                )
        except sqlite3.Error as exc:
            _log.debug("digest cache write failed (%s)", type(exc).__name__)

    def close(self) -> None:
        with self._lock:
            self._write_pending()
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                _log.debug("digest cache close failed (%s)", type(exc).__name__)

    def __enter__(self) -> DigestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_cache(home: Path) -> DigestCache:
    """The cache every modelchain command shares: ``<home>/cache/digests.sqlite``."""
    return DigestCache(Path(home) / "cache" / "digests.sqlite")
