"""How dashboard pages are made: Jinja2 templates with autoescape, the security
headers every page carries, error pages, and the few ledger facts (signers'
names, the checkpoint, receipts) that many pages show."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ...core.times import human_time
from ...errors import AuthError, Error, NotFoundError
from ...ledger.ledger import Ledger
from ..access import Principal
from ..context import ServerContext
from ..errors import status_of
from .cluster import alarm
from .csrf import Csrf
from .forms import local_next
from .session import TOKEN_COOKIE, Sessions, form_key

__all__ = ["HEADERS", "REPORT_HEADERS", "Handler", "Pages"]

log = logging.getLogger("modelchain.server")

Handler = Callable[[Request], Response] | Callable[[Request], Awaitable[Response]]

# Pages carry no script at all, so the policy forbids every script: escaping
# is the first defence against hostile text, this is the second.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# The Annex IV report is a standalone document with its own inline styles.
REPORT_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    ),
}


def _when(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-"
    return human_time(ms) + " UTC"


def _short(digest: object, n: int = 16) -> str:
    text = str(digest or "")
    algo, sep, hexpart = text.rpartition(":")
    return f"{algo}{sep}{hexpart[:n]}…" if len(hexpart) > n else text


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _seg(value: object) -> str:
    return quote(str(value), safe="")


class Pages:
    """Rendering and the shared plumbing of the dashboard's pages: templates,
    sessions and CSRF tokens, error pages, and the ledger facts many pages show."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.led: Ledger = ctx.ledger
        self.sessions = Sessions(form_key(self.led.path))
        self.csrf = Csrf(self.sessions)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("modelchain.server", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._cluster_node: bool | None = None
        self.templates.filters.update(when=_when, short=_short, pretty=_pretty, seg=_seg)

    def https(self, request: Request) -> bool:
        return request.url.scheme == "https"

    def render(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        basis, fresh = self.sessions.session(request)
        who = values.pop("who", None)
        html = self.templates.get_template(template).render(
            who=who,
            csrf=self.csrf.token(basis),
            reads_open=self._reads_open(),
            origin=self.led.origin,
            cluster_node=self.cluster_node(),
            alarm=self._alarm(),
            **values,
        )
        response = HTMLResponse(html, status, headers=HEADERS)
        if fresh is not None:
            self.sessions.set_session_cookie(response, fresh, https=self.https(request))
        return response

    def cluster_node(self) -> bool:
        """Whether this server's node is part of a cluster (asked once: it
        cannot change while the node runs)."""
        if self._cluster_node is None:
            try:
                self._cluster_node = self.led.node.cluster_status() is not None
            except Error:  # the store failed: the page says so; ask again next time
                return False
        return self._cluster_node

    def _alarm(self) -> dict[str, Any] | None:
        try:
            return alarm(self.led.node)
        except Error:  # a read-only ledger has no node to stop
            return None

    def _reads_open(self) -> bool:
        try:
            return self.ctx.reads == "open"
        except Error:  # a damaged access file: the page says what went wrong
            return False

    def error_page(self, request: Request, exc: Error) -> Response:
        if isinstance(exc, AuthError):
            # After logging in, come back to the page; a form's target is no page.
            target = request.url.path if request.method == "GET" else "/ui/"
            if request.url.query and request.method == "GET":
                target += "?" + request.url.query
            response = RedirectResponse("/ui/login?" + urlencode({"next": local_next(target)}), 303)
            if request.cookies.get(TOKEN_COOKIE):
                response.delete_cookie(TOKEN_COOKIE, path="/")
            return response
        status = status_of(exc)
        message = exc.message
        if status >= 500 and status != 503:
            # The store's own words may name files on the server: logged, not shown.
            log.error("dashboard request failed", exc_info=exc)
            message = "the ledger store failed; see the server's log"
        title = {
            400: "Bad request",
            403: "Not allowed",
            404: "Not found",
            409: "Refused",
            413: "Too large",
            422: "Refused",
        }.get(status, "Error")
        return self.render(
            request,
            "error.html",
            status,
            who=self.signed_in(request),
            title=title,
            message=message,
            code=exc.code,
        )

    def signed_in(self, request: Request) -> Principal | None:
        """Who is signed in, for an error page's header; nobody where the
        token cannot be read (that error is the page's own business)."""
        try:
            return self.ctx.principal(request)
        except Error:
            return None

    async def guard(self, request: Request, handler: Handler) -> Response:
        """Run a page handler (sync ones in a worker thread); errors become pages."""
        try:
            if inspect.iscoroutinefunction(handler):
                result: Response = await handler(request)
            else:
                result = await run_in_threadpool(handler, request)  # type: ignore[arg-type]
            return result
        except Error as exc:
            return self.error_page(request, exc)

    def member_name(self, keyid: str) -> str:
        return self.led.members.name_of_key(keyid) or f"unknown key {keyid}"

    def signer_names(self, keyids: list[str]) -> list[str]:
        return list(dict.fromkeys(self.member_name(k) for k in keyids))

    def checkpoint_view(self) -> dict[str, Any]:
        """The served checkpoint; for a cluster also its nodes, which of them
        cosigned it and the policy (each node's copy carries its own log key)."""
        cp, note = self.ctx.checkpoint()
        policy = self.led.policy
        result = policy.evaluate(note).require(quorum=False)
        nodes = [w.name for w in policy.nodes]
        return {
            "size": cp.size,
            "root": cp.root.hex(),
            "note": note.decode(),
            "signers": [s.name for s in result.note.signatures],
            "log_key": result.log.to_string(),
            "key_id": result.log.key_id_hex,
            "cluster": None
            if not nodes
            else {
                "nodes": nodes,
                "cosigned": [n for n in nodes if n in result.cosigned],
                "final": result.satisfied,
                "unmet": list(result.unmet),
                "policy": policy.to_text(),
            },
        }

    def receipt_text(self, index: int | None) -> str | None:
        if index is None:
            return None
        try:
            return self.ctx.tlog_proof(index).to_text()
        except NotFoundError:
            return None
