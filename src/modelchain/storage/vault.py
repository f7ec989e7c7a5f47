"""The disclosure vault: the values of committed personal fields, encrypted, off the
ledger (ADR 18).

Each transaction's disclosures (``core.disclosure``) are encrypted with one fresh
AES-256-GCM data key (``cryptography``), the disclosure's digest as associated
data; the data key is wrapped by the organisation's key-encryption key into a key
store (``keys.wrap``, as artifact data keys are), never into the vault. Erasing a
field deletes its ciphertext (SQLite's ``secure_delete`` overwrites the freed
pages) and, with the transaction's last field, destroys the data key in every key
store: a saved copy of the vault file then opens nothing.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.disclosure import Disclosure, open_disclosure
from ..errors import IntegrityError, NotFoundError
from ..keys.wrap import DataKeyStore, KeyWrap, WrappedKey

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


class DisclosureVault:
    """Encrypted disclosures in one SQLite file, their data keys wrapped by ``kek``
    into the first of ``key_stores`` (an erasure destroys them in every one)."""

    def __init__(
        self, path: str | os.PathLike[str], kek: KeyWrap, key_stores: Sequence[DataKeyStore]
    ) -> None:
        self.path = Path(path)
        self._kek = kek
        self._stores = tuple(key_stores)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            # A rollback journal, not a WAL: the file alone is the vault (a copy of it
            # is a whole backup), and deleted rows are overwritten in place.
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, disclosures: Iterable[Disclosure]) -> None:
        """Keep ``disclosures`` (one transaction's), encrypted under a new data key."""
        items = list(disclosures)
        if not items:
            return
        data_key = AESGCM.generate_key(bit_length=256)
        entry = secrets.token_hex(16)
        self._stores[0].put(WrappedKey(entry, self._kek.kek_id, self._kek.wrap(data_key)))
        aead = AESGCM(data_key)
        rows = []
        for d in items:
            nonce = secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, d.text.encode("ascii"), d.digest.encode("ascii"))
            rows.append((d.digest, entry, nonce, sealed))
        with self._lock:
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
        if row is None:
            return None
        entry, nonce, sealed = row
        for ks in self._stores:
            if ks.has(entry):
                data_key = self._kek.unwrap(ks.get(entry).wrapped)
                break
        else:
            return None
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
            orphaned = [
                k
                for k in keys
                if self._db.execute("SELECT 1 FROM disclosures WHERE key = ?", (k,)).fetchone()
                is None
            ]
        for entry in orphaned:
            for ks in self._stores:
                ks.destroy(entry)
        return int(deleted)

    def require(self, digest: str) -> Disclosure:
        found = self.get(digest)
        if found is None:
            raise NotFoundError(f"no disclosure of {digest} in {self.path}")
        return found
