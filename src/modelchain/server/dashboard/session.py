"""Dashboard sessions: the cookies it sets, and the form key beside the ledger
that signs its session cookies (and, in ``csrf``, its form tokens)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request, Response

from ...errors import MalformedError

__all__ = ["FORM_KEY_FILE", "SESSION_COOKIE", "TOKEN_COOKIE", "Sessions", "form_key"]

TOKEN_COOKIE = "modelchain_token"
SESSION_COOKIE = "modelchain_session"
# The key that signs the dashboard's session cookies and form (CSRF) tokens.
FORM_KEY_FILE = "dashboard.key"
_FORM_KEY_BYTES = 32


def form_key(ledger_dir: Path) -> bytes:
    """The dashboard's form key, kept beside the ledger (mode 0600) so that a
    restarted server still accepts forms opened before; made on first use.
    Deleting the file voids every open form and session cookie."""
    path = ledger_dir / FORM_KEY_FILE
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_FORM_KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process made first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) != _FORM_KEY_BYTES:
        raise MalformedError(f"{path} is not a dashboard key: delete it and start again")
    return key


class Sessions:
    """What a dashboard visitor's forms are bound to: the token cookie once they
    log in, else a random session cookie this server issued and signed."""

    def __init__(self, key: bytes) -> None:
        self._secret = key

    def mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def basis(self, request: Request) -> str | None:
        """The request's session, if it has one this server can trust."""
        return request.cookies.get(TOKEN_COOKIE) or self.issued(request)

    def session(self, request: Request) -> tuple[str, str | None]:
        """What the CSRF token is bound to: the token cookie, else a random
        session cookie (returned as new when this request had none)."""
        basis = self.basis(request)
        if basis:
            return basis, None
        nonce = secrets.token_urlsafe(24)
        fresh = f"{nonce}.{self.mac('session', nonce)}"
        return fresh, fresh

    def issued(self, request: Request) -> str | None:
        """The session cookie, if this server issued it (a planted one is ignored:
        CSRF tokens bound to a value the attacker chose would be worth nothing)."""
        value = request.cookies.get(SESSION_COOKIE) or ""
        nonce, _, mac = value.partition(".")
        if nonce and mac and hmac.compare_digest(mac, self.mac("session", nonce)):
            return value
        return None

    def set_session_cookie(self, response: Response, value: str, *, https: bool) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            httponly=True,
            samesite="strict",
            secure=https,
            path="/ui",
        )
