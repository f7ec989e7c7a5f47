"""CSRF tokens: every form that changes state carries an HMAC of the visitor's
session (``session.Sessions``) under the dashboard's form key."""

from __future__ import annotations

import hmac

from fastapi import Request

from ...errors import ForbiddenError
from .session import Sessions

__all__ = ["Csrf"]


class Csrf:
    """Form tokens bound to a session."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def token(self, basis: str) -> str:
        """The token the forms of a page rendered for session ``basis`` carry."""
        return self.sessions.mac("csrf", basis)

    def check(self, request: Request, given: str | None) -> None:
        basis = self.sessions.basis(request)
        if not basis or not given or not hmac.compare_digest(self.token(basis), given):
            raise ForbiddenError(
                "this form is stale or came from another site (CSRF check failed): "
                "reload the page and send it again"
            )
