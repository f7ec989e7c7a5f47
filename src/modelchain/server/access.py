"""Who may read from a ledger server: bearer tokens bound to members.

A ledger directory's ``access.json`` (mode 0600) says whether reads are open
and lists the tokens, each stored only as its SHA-256 with the member it acts
for and its scope: ``read`` for auditors; ``write`` may also store blobs (large
manifests a remote registration carries); ``approve`` may also sign with a key
the server holds, where the ledger's policy allows it. The secret is shown
once, when the token is issued.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthError, ForbiddenError, MalformedError, NotFoundError, UsageError

__all__ = ["ACCESS_FILE", "SCOPES", "AccessList", "Principal", "TokenInfo"]

ACCESS_FILE = "access.json"
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

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._reads, self._tokens = None, "token", {}
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            doc = json.loads(self.path.read_text())
            reads = doc.get("reads", "token")
            tokens = {t["hash"]: TokenInfo(**t) for t in doc.get("tokens", [])}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise MalformedError(f"{self.path} is not a valid access file: {exc}") from exc
        if reads not in READS:
            raise MalformedError(f"{self.path}: reads must be one of {', '.join(READS)}")
        self._stamp, self._reads, self._tokens = stamp, reads, tokens

    def _save(self, reads: str, tokens: list[TokenInfo]) -> None:
        doc = {"reads": reads, "tokens": [t.to_json() for t in tokens]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)

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
        with self._lock:
            self._load()
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
        with self._lock:
            self._load()
            self._save(self._reads, [*self._tokens.values(), info])
        return info, token

    def revoke(self, token_id: str) -> TokenInfo:
        with self._lock:
            self._load()
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
