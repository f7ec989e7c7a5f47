"""Who may read from a ledger server: bearer tokens bound to members.

A ledger directory's ``access.json`` (mode 0600) says whether reads are open
and lists the tokens, each stored only as its SHA-256 with the member it acts
for and its scope: ``read`` for auditors; ``write`` may also store blobs (large
manifests a remote registration carries); ``approve`` may also sign with a key
the server holds, where the ledger's policy allows it. The secret is shown
once, when the token is issued.

Writers (``token issue``, ``revoke``, ``reads``) hold an exclusive lock on
``access.json.lock`` for their read-modify-write and replace the file with a
fully written and synced one, so concurrent commands lose no update and a
reader never sees half a file. A damaged file is a ``StorageError``: the
server answers 500 without naming it, and refuses to start with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthError, ForbiddenError, NotFoundError, StorageError, UsageError
from ..storage.files import replace_file

__all__ = ["ACCESS_FILE", "SCOPES", "AccessList", "Principal", "TokenInfo"]

ACCESS_FILE = "access.json"
LOCK_SUFFIX = ".lock"
SCOPES = ("read", "write", "approve")
TOKEN_PREFIX = "mct_"
READS = ("token", "open")


@dataclass(frozen=True)
class TokenInfo:
    id: str
    member: str
    scope: str
    label: str
    created: int
    hash: str

    def to_json(self, with_hash: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "member": self.member,
            "scope": self.scope,
            "label": self.label,
            "created": self.created,
        }
        if with_hash:
            out["hash"] = self.hash
        return out


@dataclass(frozen=True)
class Principal:
    """The member a request acts for, and what its token allows."""

    member: str
    scope: str
    token_id: str

    def require(self, scope: str) -> None:
        self.require_any((scope,))

    def require_any(self, scopes: tuple[str, ...]) -> None:
        if self.scope not in scopes:
            raise ForbiddenError(
                f"token {self.token_id} has scope {self.scope}; this needs {' or '.join(scopes)}"
            )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccessList:
    """The tokens of one ledger, re-read when the file changes (tokens are
    issued and revoked by the CLI while the server runs)."""

    def __init__(self, ledger_dir: Path) -> None:
        self.path = Path(ledger_dir) / ACCESS_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._reads = "token"
        self._tokens: dict[str, TokenInfo] = {}

    def _load(self, force: bool = False) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._reads, self._tokens = None, "token", {}
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp and not force:
            return
        try:
            doc = json.loads(self.path.read_text())
            reads = doc.get("reads", "token")
            tokens = {t["hash"]: TokenInfo(**t) for t in doc.get("tokens", [])}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StorageError(
                f"{self.path} is damaged ({exc}): restore it from a backup, or move it "
                "away and issue the tokens again"
            ) from exc
        if reads not in READS:
            raise StorageError(f"{self.path} is damaged: reads must be one of {', '.join(READS)}")
        self._stamp, self._reads, self._tokens = stamp, reads, tokens

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold this process's lock and the file lock beside access.json, with the
        tokens freshly read: one writer at a time, across processes."""
        lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        with self._lock:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError as exc:
                raise NotFoundError(f"no ledger at {self.path.parent}") from exc
            except OSError as exc:
                raise StorageError(f"cannot lock {lock_path}: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._load(force=True)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _save(self, reads: str, tokens: list[TokenInfo]) -> None:
        doc = {"reads": reads, "tokens": [t.to_json() for t in tokens]}
        text = json.dumps(doc, indent=2) + "\n"
        try:
            replace_file(self.path, text.encode())  # mode 0600, synced, renamed over
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._load(force=True)

    def check(self) -> None:
        """Raise StorageError if the access file cannot be read (a server checks
        this before it starts)."""
        with self._lock:
            self._load(force=True)

    @property
    def reads(self) -> str:
        with self._lock:
            self._load()
            return self._reads

    def tokens(self) -> list[TokenInfo]:
        with self._lock:
            self._load()
            return sorted(self._tokens.values(), key=lambda t: t.created)

    def set_reads(self, reads: str) -> None:
        if reads not in READS:
            raise UsageError(f"reads must be one of {', '.join(READS)}")
        with self._writing():
            self._save(reads, list(self._tokens.values()))

    def issue(self, member: str, scope: str = "read", label: str = "") -> tuple[TokenInfo, str]:
        """A new token for ``member``: its record and the secret (shown once)."""
        if scope not in SCOPES:
            raise UsageError(f"scope must be one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(
            id=secrets.token_hex(4),
            member=member,
            scope=scope,
            label=label,
            created=int(time.time()),
            hash=_digest(token),
        )
        with self._writing():
            self._save(self._reads, [*self._tokens.values(), info])
        return info, token

    def revoke(self, token_id: str) -> TokenInfo:
        with self._writing():
            found = [t for t in self._tokens.values() if t.id == token_id]
            if not found:
                raise NotFoundError(f"no token with id {token_id}")
            self._save(self._reads, [t for t in self._tokens.values() if t.id != token_id])
        return found[0]

    def lookup(self, token: str) -> TokenInfo:
        """The token's record; AuthError if it is unknown or revoked."""
        with self._lock:
            self._load()
            info = self._tokens.get(_digest(token))
        if info is None:
            raise AuthError("unknown or revoked token")
        return info
