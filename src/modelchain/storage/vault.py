"""The disclosure vault: the values of committed personal fields, encrypted, off the
ledger (ADR 18).

Each transaction's disclosures (``core.disclosure``) are encrypted with one fresh
AES-256-GCM data key (``cryptography``), the disclosure's digest as associated
data; the data key, wrapped by the organisation's key-encryption key
(``keys.wrap``), is kept in a second SQLite file beside the vault, never in it.
Erasing a field deletes its ciphertext and, with the transaction's last field, its
wrapped data key: SQLite's ``secure_delete`` overwrites the freed pages and each
file's write-ahead log is truncated, so a saved copy of the vault then opens
nothing. Both files are write-ahead logged with full sync: a put costs two fsyncs.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.disclosure import Disclosure, open_disclosure
from ..errors import IntegrityError
from ..keys.wrap import KeyWrap

__all__ = ["DisclosureVault"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS disclosures (
    digest TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS disclosures_key ON disclosures (key);
"""
_KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    kek TEXT NOT NULL,
    wrapped BLOB NOT NULL
) WITHOUT ROWID;
"""


def _open(path: Path, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA secure_delete = ON")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(schema)
    os.chmod(path, 0o600)
    return db


class DisclosureVault:
    """Encrypted disclosures in the SQLite file ``path``; their data keys, wrapped by
    ``kek``, in ``keys_path`` (by default ``path`` with ``.keys`` added)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        kek: KeyWrap,
        keys_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.keys_path = Path(keys_path) if keys_path is not None else Path(f"{path}.keys")
        self._kek = kek
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = _open(self.path, _SCHEMA)
        self._keys = _open(self.keys_path, _KEYS_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._keys.close()

    def put(self, disclosures: Iterable[Disclosure]) -> None:
        """Keep ``disclosures`` (one transaction's), encrypted under a new data key."""
        items = list(disclosures)
        if not items:
            return
        data_key = AESGCM.generate_key(bit_length=256)
        entry = secrets.token_hex(16)
        wrapped = self._kek.wrap(data_key)
        aead = AESGCM(data_key)
        rows = []
        for d in items:
            nonce = secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, d.text.encode("ascii"), d.digest.encode("ascii"))
            rows.append((d.digest, entry, nonce, sealed))
        with self._lock:
            # The key first: a disclosure is never kept without the key that opens it.
            self._keys.execute(
                "INSERT INTO keys VALUES (?, ?, ?)", (entry, self._kek.kek_id, wrapped)
            )
            self._db.executemany("INSERT OR IGNORE INTO disclosures VALUES (?, ?, ?, ?)", rows)

    def has(self, digest: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM disclosures WHERE digest = ?", (digest,)
            ).fetchone()
        return row is not None

    def get(self, digest: str) -> Disclosure | None:
        """The disclosure committed to by ``digest``, checked against it; None where
        the vault holds none, or its data key is in no key store (destroyed)."""
        with self._lock:
            row = self._db.execute(
                "SELECT key, nonce, ciphertext FROM disclosures WHERE digest = ?", (digest,)
            ).fetchone()
            key = (
                self._keys.execute(
                    "SELECT kek, wrapped FROM keys WHERE key = ?", (row[0],)
                ).fetchone()
                if row is not None
                else None
            )
        if row is None or key is None:
            return None
        _, nonce, sealed = row
        kek_id, wrapped = key
        if kek_id != self._kek.kek_id:
            raise IntegrityError(
                f"disclosure {digest}'s data key is wrapped by KEK {kek_id}, not by "
                f"{self._kek.kek_id}: open the vault with the KEK that filled it"
            )
        data_key = self._kek.unwrap(wrapped)
        try:
            text = AESGCM(data_key).decrypt(nonce, sealed, digest.encode("ascii"))
        except InvalidTag as exc:
            raise IntegrityError(
                f"the vault's ciphertext of disclosure {digest} does not authenticate"
            ) from exc
        return open_disclosure(text.decode("ascii"), digest)

    def erase(self, digests: Iterable[str]) -> int:
        """Delete the disclosures of ``digests``, and destroy each data key none of the
        vault's disclosures needs any more; the number of disclosures deleted."""
        wanted = sorted(set(digests))
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        with self._lock:
            keys = {
                k
                for (k,) in self._db.execute(
                    f"SELECT key FROM disclosures WHERE digest IN ({marks})", wanted
                )
            }
            deleted = self._db.execute(
                f"DELETE FROM disclosures WHERE digest IN ({marks})", wanted
            ).rowcount
            for k in keys:
                if self._db.execute("SELECT 1 FROM disclosures WHERE key = ?", (k,)).fetchone():
                    continue  # another field of the same transaction still needs it
                self._keys.execute("DELETE FROM keys WHERE key = ?", (k,))
            # Nothing of a deleted row may linger in a write-ahead log.
            self._keys.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)
