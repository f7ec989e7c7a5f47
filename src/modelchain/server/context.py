"""What every route shares: the ledger, the configuration, the access list, the
metrics, the published checkpoint and the bounded audit-trail scans."""

from __future__ import annotations

import threading

from fastapi import Request

from ..core.checkpoint import Checkpoint
from ..core.policy import verify_checkpoint
from ..core.tlogproof import TlogProof
from ..errors import AuthError, ForbiddenError, NotFoundError, PushbackError
from ..ledger.ledger import Ledger
from ..ledger.trail import TrailFilter, TrailPage, rejected, trail
from .access import AccessList, Principal
from .config import ServerConfig
from .metrics import Metrics

__all__ = ["ServerContext"]


class ServerContext:
    """What every route shares: the ledger, the access list, the metrics."""

    def __init__(self, ledger: Ledger, config: ServerConfig) -> None:
        self.ledger = ledger
        self.config = config
        self.access = AccessList(ledger.path)
        self.access.check()  # a damaged access.json stops the server before it serves
        self.metrics = Metrics(ledger)
        self._scans = threading.BoundedSemaphore(config.max_scans)
        self._verified: tuple[bytes, Checkpoint] | None = None

    def checkpoint(self, covering: int = 0) -> tuple[Checkpoint, bytes]:
        """The checkpoint the node last published, and its note. Reads are served
        at that size, as a static mirror would; a new one is signed only when a
        caller needs entries it does not cover yet (``covering``: that many
        entries), so readers cannot make the node sign one per request."""
        latest = self.ledger.published()
        if latest is None or latest[0] < min(covering, self.ledger.size):
            note = self.ledger.checkpoint()  # publishes the durable size
        else:
            note = latest[1]
        known = self._verified
        if known is not None and known[0] == note:
            return known[1], note
        # The log's own copy: served to witnesses before it has its cosignatures.
        cp, _ = verify_checkpoint(note, self.ledger.policy, require_quorum=False)
        self._verified = (note, cp)
        return cp, note

    def tlog_proof(self, index: int) -> TlogProof:
        """A tlog-proof of entry ``index`` against a published checkpoint."""
        if not 0 <= index < self.ledger.size:
            raise NotFoundError(f"no entry {index}: the log has {self.ledger.size} entries")
        cp, note = self.checkpoint(covering=index + 1)
        proof = tuple(self.ledger.inclusion_proof(index, cp.size))
        return TlogProof(index=index, proof=proof, checkpoint=note)

    def scan(self, f: TrailFilter) -> TrailPage:
        """One page of the audit trail, scanning at most ``max_scan`` entries, with
        a bounded number of scans at once (each holds a core for a while)."""
        if not self._scans.acquire(blocking=False):
            raise PushbackError("audit-trail queries are busy; retry shortly", 1.0)
        try:
            return trail(self.ledger, f, max_scan=self.config.max_scan)
        finally:
            self._scans.release()

    def denied(self, before: int | None = None, limit: int = 100) -> TrailPage:
        """One page of rejected entries, newest first (``modelchain.ledger.trail.rejected``,
        as the SDK's ``Ledger.denied``), within the same bounds as ``scan``."""
        if not self._scans.acquire(blocking=False):
            raise PushbackError("audit-trail queries are busy; retry shortly", 1.0)
        try:
            return rejected(self.ledger, before, limit, max_scan=self.config.max_scan)
        finally:
            self._scans.release()

    @property
    def reads(self) -> str:
        return self.config.reads or self.access.reads

    def token_of(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError("the Authorization header must be 'Bearer <token>'")
            return value.strip()
        if not request.url.path.startswith("/ui/"):
            return None  # the cookie is the dashboard's; API clients send the header
        return request.cookies.get("modelchain_token") or None

    def principal(self, request: Request) -> Principal | None:
        """The member behind the request's token (None when there is none)."""
        token = self.token_of(request)
        if token is None:
            return None
        info = self.access.lookup(token)
        try:
            member = self.ledger.members.get(info.member)
        except NotFoundError as exc:
            raise ForbiddenError(f"token {info.id} is for {info.member}, not a member") from exc
        if member.get("status") != "active":
            raise ForbiddenError(f"token {info.id} is for {info.member}, who was revoked")
        return Principal(info.member, info.scope, info.id)

    def reader(self, request: Request) -> Principal | None:
        """Check that the request may read; raise AuthError if not."""
        who = self.principal(request)
        if who is None and self.reads != "open":
            raise AuthError("reading this ledger needs a bearer token (modelchain token issue)")
        return who
