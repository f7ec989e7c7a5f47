"""The auditors' dashboard at ``/ui/``: server-rendered pages over the ledger.

Jinja2 templates with autoescape and no JavaScript. A bearer token pasted at
``/ui/login`` becomes an HttpOnly cookie; forms that change state carry a CSRF
token bound to that cookie. Approvals are drafted here, signed offline with the
CLI and uploaded back, or signed by a key the server holds where the ledger's
``custodial:model.approve`` policy allows it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import inspect
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from ..contracts import types as tx_types
from ..core import canonical
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey
from ..core.merkle import leaf_hash
from ..core.policy import verify_checkpoint
from ..core.times import human_time, parse_time
from ..core.tx import MAX_ENVELOPE_BYTES, PAYLOAD_TYPE, LogEntry, Transaction
from ..errors import (
    AuthError,
    Error,
    ForbiddenError,
    MalformedError,
    NotFoundError,
    OversizeError,
    UsageError,
)
from ..keys import KeyStore, env_or_prompt_passphrase, modelchain_home
from ..ledger.ledger import Ledger
from .access import Principal
from .app import MAX_INT, ServerContext, status_of
from .lineage import lineage_svg
from .queries import TrailFilter, find_digest, trail

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["CUSTODIAL_ENV", "FORM_KEY_FILE", "dashboard_router"]

log = logging.getLogger("modelchain.server")

TOKEN_COOKIE = "modelchain_token"
SESSION_COOKIE = "modelchain_session"
CUSTODIAL_ENV = "MODELCHAIN_CUSTODIAL"  # "name1,name2": members whose keys this server holds
CUSTODIAL_ACTION = "custodial:model.approve"
DECISIONS = (tx_types.MODEL_APPROVE, tx_types.MODEL_REJECT)
TRAIL_PAGE = 50
DENIED_SHOWN = 50  # denied attempts a version page lists
DENIED_SCANNED = 1000  # rejected entries, newest first, it looks through for them
_FIELD_MAX = 16 * 1024  # bytes of one plain form field
_CHUNK = 1 << 20  # upload bytes handed to a worker thread at a time

# Pages carry no script at all, so the policy forbids every script: escaping
# is the first defence against hostile text, this is the second.
_HEADERS = {
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
_REPORT_HEADERS = {
    **_HEADERS,
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


def _int(text: str | None, what: str, minimum: int = 0) -> int:
    digits = (text or "").strip()
    # Checked before int(): beyond 4300 digits int() itself refuses (ValueError),
    # and beyond MAX_INT the store would overflow.
    if not (digits.isascii() and digits.lstrip("-").isdigit()) or len(digits) > 20:
        shown = digits if len(digits) <= 40 else digits[:40] + "…"
        raise UsageError(f"{what} must be a whole number up to {MAX_INT}, not {shown!r}")
    value = int(digits)
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum}")
    if value > MAX_INT:
        raise UsageError(f"{what} must be at most {MAX_INT}")
    return value


def _time(text: str, what: str, *, end: bool = False) -> int:
    """A time from a form: a date, an RFC 3339 time or milliseconds."""
    if len(text) > 40:
        raise UsageError(f"{what} is a date, a time or milliseconds, not {text[:40]!r}…")
    ms = parse_time(text, end=end)
    if not 0 <= ms <= MAX_INT:
        raise UsageError(f"{what} is out of range")
    return ms


def _local_next(value: str | None) -> str:
    # Only ever redirect inside the dashboard: an open redirect after login
    # would hand a phishing page the user's trust.
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


# -- streamed multipart forms -------------------------------------------------------


@dataclass
class _Upload:
    filename: str
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    head: bytearray = field(default_factory=bytearray)


class _MultipartForm:
    """A multipart form read as it streams in. Files are hashed on the way and
    only their first ``keep`` bytes kept: uploaded model weights are never
    spooled to the server's disk nor held whole in memory."""

    def __init__(self, boundary: bytes, keep: int) -> None:
        from python_multipart.multipart import MultipartParser

        self.fields: dict[str, str] = {}
        self.files: dict[str, _Upload] = {}
        self._keep = keep
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name = ""
        self._field: bytearray | None = None
        self._file: _Upload | None = None
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _part_begin(self) -> None:
        self._headers = {}
        self._field, self._file = None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._hname.decode("latin-1").lower()] = bytes(self._hvalue)
        self._hname, self._hvalue = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None:
            self._file = _Upload(filename.decode("utf-8", "replace"))
            self.files[self._name] = self._file
        else:
            if len(self.fields) >= 32:
                raise MalformedError("too many form fields")
            self._field = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._file.size += len(chunk)
            self._file.sha256.update(chunk)
            room = self._keep + 1 - len(self._file.head)
            if room > 0:
                self._file.head += chunk[:room]
        elif self._field is not None:
            self._field += chunk
            if len(self._field) > _FIELD_MAX:
                raise MalformedError(f"form field {self._name!r} is over {_FIELD_MAX} bytes")

    def _part_end(self) -> None:
        if self._field is not None:
            self.fields[self._name] = self._field.decode("utf-8", "replace")

    def write(self, data: bytes) -> None:
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise MalformedError(f"the form is not valid multipart: {exc}") from exc

    def finish(self) -> None:
        self._parser.finalize()


async def _read_multipart(request: Request, keep: int) -> _MultipartForm:
    from python_multipart.multipart import parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise MalformedError("this form is sent as multipart/form-data")
    form = _MultipartForm(boundary, keep)
    pending = bytearray()
    # The body's size is capped by the server's Limits middleware; hashing runs
    # in a worker thread (hashlib releases the GIL) so the event loop stays free.
    async for chunk in request.stream():
        pending += chunk
        if len(pending) >= _CHUNK:
            await run_in_threadpool(form.write, bytes(pending))
            pending = bytearray()
    if pending:
        await run_in_threadpool(form.write, bytes(pending))
    form.finish()
    return form


# The key that signs the dashboard's session cookies and form (CSRF) tokens.
FORM_KEY_FILE = "dashboard.key"
_FORM_KEY_BYTES = 32


def _form_key(ledger_dir: Path) -> bytes:
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


# -- the dashboard ---------------------------------------------------------------


class Dashboard:
    """Pages and forms over one server's ledger."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.led: Ledger = ctx.ledger
        self._secret = _form_key(self.led.path)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("modelchain.server", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(when=_when, short=_short, pretty=_pretty, seg=_seg)
        self.held = frozenset(
            n.strip() for n in os.environ.get(CUSTODIAL_ENV, "").split(",") if n.strip()
        )
        # Loaded now, so that a missing key or passphrase stops the server at start
        # rather than surfacing (or prompting) at an approver's first click.
        self._signers: dict[str, Signer] = {}
        if self.held:
            keys = KeyStore(modelchain_home())
            passphrase = env_or_prompt_passphrase(prompt="Passphrase for the held keys: ")
            self._signers = {name: keys.signer(name, passphrase) for name in sorted(self.held)}

    # -- plumbing -------------------------------------------------------------

    def _https(self, request: Request) -> bool:
        return request.url.scheme == "https"

    def _session(self, request: Request) -> tuple[str, str | None]:
        """What the CSRF token is bound to: the token cookie, else a random
        session cookie (returned as new when this request had none)."""
        basis = request.cookies.get(TOKEN_COOKIE) or self._issued(request)
        if basis:
            return basis, None
        nonce = secrets.token_urlsafe(24)
        fresh = f"{nonce}.{self._mac('session', nonce)}"
        return fresh, fresh

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _issued(self, request: Request) -> str | None:
        """The session cookie, if this server issued it (a planted one is ignored:
        CSRF tokens bound to a value the attacker chose would be worth nothing)."""
        value = request.cookies.get(SESSION_COOKIE) or ""
        nonce, _, mac = value.partition(".")
        if nonce and mac and hmac.compare_digest(mac, self._mac("session", nonce)):
            return value
        return None

    def _csrf_of(self, basis: str) -> str:
        return self._mac("csrf", basis)

    def check_csrf(self, request: Request, given: str | None) -> None:
        basis = request.cookies.get(TOKEN_COOKIE) or self._issued(request)
        if not basis or not given or not hmac.compare_digest(self._csrf_of(basis), given):
            raise ForbiddenError(
                "this form is stale or came from another site (CSRF check failed): "
                "reload the page and send it again"
            )

    def render(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        basis, fresh = self._session(request)
        who = values.pop("who", None)
        html = self.templates.get_template(template).render(
            who=who,
            csrf=self._csrf_of(basis),
            reads_open=self._reads_open(),
            origin=self.led.origin,
            **values,
        )
        response = HTMLResponse(html, status, headers=_HEADERS)
        if fresh is not None:
            response.set_cookie(
                SESSION_COOKIE,
                fresh,
                httponly=True,
                samesite="strict",
                secure=self._https(request),
                path="/ui",
            )
        return response

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
            response = RedirectResponse(
                "/ui/login?" + urlencode({"next": _local_next(target)}), 303
            )
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
            request, "error.html", status, title=title, message=message, code=exc.code
        )

    async def guard(
        self,
        request: Request,
        handler: Callable[[Request], Response] | Callable[[Request], Awaitable[Response]],
    ) -> Response:
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
        cp, note = self.ctx.checkpoint()
        _, parsed = verify_checkpoint(note, self.led.policy, require_quorum=False)
        return {
            "size": cp.size,
            "root": cp.root.hex(),
            "note": note.decode(),
            "signers": [s.name for s in parsed.signatures],
            "log_key": self.led.log_key.to_string(),
            "key_id": self.led.log_key.key_id_hex,
        }

    def denied_about(self, name: str) -> tuple[list[dict[str, Any]], bool]:
        """The latest denied attempts on model ``name`` (at most ``DENIED_SHOWN``),
        from the newest ``DENIED_SCANNED`` rejected entries of the log, read page
        by page from the audit-trail index and not kept; and whether older
        rejected entries were left unexamined."""
        found: list[dict[str, Any]] = []
        before: int | None = None
        examined = 0
        while len(found) < DENIED_SHOWN and examined < DENIED_SCANNED:
            page = self.ctx.denied(before, limit=TRAIL_PAGE)
            examined += len(page.entries)
            found += [e for e in page.entries if _about_model(e, name)]
            before = page.next_before
            if before is None:
                return found[:DENIED_SHOWN], False
        return found[:DENIED_SHOWN], True

    def receipt_text(self, index: int | None) -> str | None:
        if index is None:
            return None
        try:
            return self.ctx.receipt(index).to_text()
        except NotFoundError:
            return None

    # -- login ------------------------------------------------------------------

    def login_page(self, request: Request) -> Response:
        return self.render(
            request,
            "login.html",
            next=_local_next(request.query_params.get("next")),
            error=None,
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        self.check_csrf(request, str(form.get("csrf", "")))
        token = str(form.get("token", "")).strip()
        target = _local_next(str(form.get("next", "")))
        try:
            info = self.ctx.access.lookup(token)
            member = self.led.members.get(info.member)
            if member.get("status") != "active":
                raise ForbiddenError(f"{info.member} was revoked")
        except (AuthError, ForbiddenError, NotFoundError) as exc:
            return self.render(
                request, "login.html", 401, next=target, error=f"Not signed in: {exc.message}"
            )
        response = RedirectResponse(target, 303)
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=self._https(request),
            path="/",
        )
        return response

    def logout_page(self, request: Request) -> Response:
        return self.render(request, "logout.html", who=self._who_quiet(request))

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        self.check_csrf(request, str(form.get("csrf", "")))
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    def _who_quiet(self, request: Request) -> Principal | None:
        try:
            return self.ctx.principal(request)
        except Error:
            return None

    # -- overview, models, datasets, runs -----------------------------------------

    def overview(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        return self.render(
            request,
            "overview.html",
            who=who,
            size=self.led.size,
            checkpoint=self.checkpoint_view(),
            recent=self._rows(trail(self.led, TrailFilter(limit=20)).entries),
            counts={
                "models": len(self.led.models.list()),
                "datasets": len(self.led.datasets.list()),
                "members": len(self.led.members.list()),
                "policies": len(self.led.policies.list()),
            },
        )

    def _rows(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            e["signer_names"] = self.signer_names(e["signers"])
            e["about"] = _about(e)
        return entries

    def models_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        models = sorted(self.led.models.list(), key=lambda m: m["name"])
        return self.render(request, "models.html", who=who, models=models)

    def model_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["name"]
        entity = self.led.models.info(name)
        versions = [
            self.led.models.get(name, v).record for v in range(int(entity["latest"]), 0, -1)
        ]
        current = {
            e: self.led.deployments.current(name, e)
            for e in self.led.deployments.environments(name)
        }
        return self.render(
            request,
            "model.html",
            who=who,
            model=entity,
            versions=versions,
            current=current,
        )

    def version_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["name"]
        version = _int(request.path_params["version"], "version", 1)
        record = self.led.models.get(name, version).record
        entity = self.led.models.info(name)
        try:
            files = list(self.led.models.manifest_of(record).files)
            files_error = None
        except Error as exc:
            files, files_error = [], exc.message
        history = self.led.deployments.history(name)
        timeline: dict[str, list[dict[str, Any]]] = {}
        for event in history:
            timeline.setdefault(event["env"], []).append(event)
        deployed = []
        for env, events in timeline.items():
            if any(e["to"] == version for e in events):
                now = self.led.deployments.current(name, env)
                deployed.append({"env": env, "current": bool(now and now["version"] == version)})
        lineage = self.led.models.lineage(name, version)
        svg = lineage_svg(lineage, deployed)
        quality = []
        for ds in lineage.datasets():
            rec = self.led.datasets.get(ds[0], ds[1]).record
            for a in rec.get("attestations", []):
                quality.append({"dataset": f"{ds[0]}@{ds[1]}", **a})
        denied, denied_more = self.denied_about(name)
        custodial = self._custodial_state(who)
        approver_roles = []
        if who is not None:
            try:
                roles = self.led.members.get(who.member)["roles"]
            except NotFoundError:
                roles = []
            approver_roles = [r.split(":", 1)[1] for r in roles if r.startswith("approver:")]
        return self.render(
            request,
            "version.html",
            who=who,
            model=entity,
            record=record,
            files=files,
            files_error=files_error,
            lineage_svg=_markup(svg),
            evaluations=record.get("evaluations", []),
            quality=quality,
            approvals=record.get("approvals", []),
            rejections=record.get("rejections", []),
            timeline=timeline,
            denied=self._rows(denied),
            denied_more=denied_more,
            custodial=custodial,
            approver_roles=approver_roles,
        )

    def datasets_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        datasets = sorted(self.led.datasets.list(), key=lambda d: d["name"])
        return self.render(request, "datasets.html", who=who, datasets=datasets)

    def dataset_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["name"]
        info = self.led.datasets.info(name)
        versions = [
            self.led.datasets.get(name, v).record for v in range(int(info["latest"]), 0, -1)
        ]
        return self.render(request, "dataset.html", who=who, dataset=info, versions=versions)

    def run_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        run = self.led.runs.get(request.path_params["run_id"])
        pred = run["statement"]["predicate"]
        build = pred.get("buildDefinition", {})
        details = pred.get("runDetails", {})
        produced = self.led.models.produced_by(run["id"])
        return self.render(
            request,
            "run.html",
            who=who,
            run=run,
            dependencies=build.get("resolvedDependencies", []),
            parameters=build.get("externalParameters", {}),
            metadata=details.get("metadata", {}),
            byproducts=details.get("byproducts", []),
            produced=produced,
        )

    # -- audit trail and entries ----------------------------------------------------

    def audit_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        q = request.query_params
        values = {k: (q.get(k) or "").strip() for k in ("actor", "org", "type", "outcome")}
        values["since"] = (q.get("since") or "").strip()
        values["until"] = (q.get("until") or "").strip()
        if values["outcome"] not in ("", "accepted", "rejected"):
            raise UsageError("outcome is accepted or rejected")
        before = _int(q.get("before"), "before") if q.get("before") else None
        f = TrailFilter(
            actor=values["actor"] or None,
            org=values["org"] or None,
            type=values["type"] or None,
            outcome=values["outcome"] or None,
            since=_time(values["since"], "since") if values["since"] else None,
            until=_time(values["until"], "until", end=True) if values["until"] else None,
            before=before,
            limit=TRAIL_PAGE,
        )
        page = self.ctx.scan(f)
        rows = self._rows(page.entries)
        older = None
        if page.next_before is not None:
            kept = {k: v for k, v in values.items() if v}
            older = "/ui/audit?" + urlencode({**kept, "before": page.next_before})
        orgs = sorted({m.get("org", "") for m in self.led.members.list()} - {""})
        members = sorted(m["name"] for m in self.led.members.list())
        return self.render(
            request,
            "audit.html",
            who=who,
            rows=rows,
            filters=values,
            before=before,
            older=older,
            orgs=orgs,
            members=members,
        )

    def entry_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        index = _int(request.path_params["index"], "entry index")
        data = self.led.entry_bytes(index)
        entry = LogEntry.decode(data)
        signers = [
            {"keyid": s.keyid, "member": self.member_name(s.keyid)}
            for s in entry.envelope.signatures
        ]
        return self.render(
            request,
            "entry.html",
            who=who,
            index=index,
            tx=entry.transaction.to_json(),
            outcome=entry.outcome.to_json(),
            signers=signers,
            leaf_hash=leaf_hash(data).hex(),
            proof=self.receipt_text(index),
            checkpoint=self.checkpoint_view(),
        )

    # -- governance ---------------------------------------------------------------

    def members_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        members = []
        for m in self.led.members.list():
            keys = []
            for k in m.get("keys", []):
                try:
                    keys.append(VerifierKey.from_string(k).key_id_hex)
                except Error:
                    keys.append("?")
            members.append({**m, "key_ids": keys})
        return self.render(
            request, "members.html", who=who, members=members, quorum=self.led.members.quorum
        )

    def policies_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        policies = sorted(self.led.policies.list(), key=lambda p: p["action"])
        return self.render(request, "policies.html", who=who, policies=policies)

    # -- verify ---------------------------------------------------------------------

    def verify_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        return self.render(request, "verify.html", who=who, result=None)

    async def verify(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        form = await _read_multipart(request, keep=0)
        upload = form.files.get("file")
        given = form.fields.get("digest", "").strip()
        if upload is not None and upload.filename:
            digest = "sha256:" + upload.sha256.hexdigest()
            source = {"filename": upload.filename, "size": upload.size}
        elif given:
            digest = given
            source = None
        else:
            raise UsageError("choose a file to upload or paste a digest")
        if len(digest) > 200:
            raise UsageError("a digest is at most 200 characters")

        def lookup() -> list[dict[str, Any]]:
            found = find_digest(self.led, digest)
            for f in found:
                f["proof"] = self.receipt_text(f.get("index"))
            return found

        matches = await run_in_threadpool(lookup)
        return self.render(
            request,
            "verify.html",
            who=who,
            result={"digest": digest, "source": source, "matches": matches},
        )

    # -- approvals ----------------------------------------------------------------

    def _custodial_state(self, who: Principal | None) -> dict[str, Any] | None:
        """What the version page says about custodial approval; None: nothing
        to say (the viewer could never use it)."""
        if who is None or who.scope != "approve" or who.member not in self.held:
            return None
        policy = self.led.policies.get(CUSTODIAL_ACTION)
        return {"member": who.member, "action": CUSTODIAL_ACTION, "policy": policy}

    def _approval_body(self, request: Request, values: Mapping[str, Any]) -> dict[str, Any]:
        name = request.path_params["name"]
        version = _int(request.path_params["version"], "version", 1)
        self.led.models.get(name, version)  # NotFoundError for a version that is not there
        env = str(values.get("env", "")).strip()
        role = str(values.get("role", "")).strip()
        if not env or not role:
            raise UsageError("say which environment and which approval role")
        return {
            "model": name,
            "version": version,
            "env": env,
            "role": role,
            "comment": str(values.get("comment", "")),
        }

    def draft(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        q = request.query_params
        body = self._approval_body(request, q)
        verb = q.get("decision", tx_types.MODEL_APPROVE)
        if verb not in DECISIONS:
            raise UsageError(f"decision is one of {', '.join(DECISIONS)}")
        actor = (q.get("actor") or (who.member if who else "")).strip()
        if not actor:
            raise UsageError("say which member approves (log in, or give the actor)")
        self.led.members.get(actor)
        env = self.led.members.draft(verb, body, actor)
        filename = f"{verb.split('.')[1]}-{body['model']}-{body['version']}-{body['env']}.json"
        # The same bytes `modelchain tx draft` writes, so `tx sign` takes it as is.
        return Response(
            canonical.dumps(env.to_json()) + b"\n",
            media_type="application/json",
            headers={
                **_HEADERS,
                "Content-Disposition": f'attachment; filename="{quote(filename)}"',
            },
        )

    async def upload_signed(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        form = await _read_multipart(request, keep=MAX_ENVELOPE_BYTES)
        self.check_csrf(request, form.fields.get("csrf"))
        upload = form.files.get("envelope")
        if upload is None or not upload.filename or upload.size == 0:
            raise UsageError("choose the signed draft to upload")
        if upload.size > MAX_ENVELOPE_BYTES:
            raise OversizeError(f"a signed transaction is at most {MAX_ENVELOPE_BYTES} bytes")
        env = Envelope.from_json(canonical.loads(bytes(upload.head)), allow_unsigned=True)
        if env.payload_type != PAYLOAD_TYPE:
            raise MalformedError("the file is not a modelchain transaction")
        if not env.signatures:
            raise UsageError(
                "the draft has no signatures yet: sign it with `modelchain tx sign FILE`"
            )
        tx = Transaction.from_json(canonical.loads_canonical(env.payload))
        name = request.path_params["name"]
        version = _int(request.path_params["version"], "version", 1)
        # This form submits decisions on this version only; anything else goes
        # through the API, where it is plain that it is a raw submission.
        if (
            tx.type not in DECISIONS
            or tx.body.get("model") != name
            or tx.body.get("version") != version
        ):
            raise UsageError(
                f"the file is a {tx.type} about {tx.body.get('model')!r}, not a decision "
                f"on {name} version {version}"
            )
        return await self._submit(request, who, env, tx, custodial=False)

    async def custodial_approve(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        form = await request.form()
        self.check_csrf(request, str(form.get("csrf", "")))
        if who is None:
            raise AuthError("custodial approval needs you to log in with an approve token")
        who.require("approve")
        if who.member not in self.held:
            raise ForbiddenError(f"this server holds no key for {who.member}")
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}

        def decide() -> tuple[Envelope, Transaction]:
            body = self._approval_body(request, values)
            # Auditors must be able to tell a server-made signature from a
            # member's own: the comment says so, and names the token used.
            mark = f"[custodial signature by the dashboard, token {who.token_id}]"
            body["comment"] = (body["comment"][: 2000 - len(mark) - 1] + " " + mark).strip()
            draft = self.led.members.draft(tx_types.MODEL_APPROVE, body, who.member)
            decision = self.led.policies.test_custodial(draft)
            if not decision.allowed:
                raise ForbiddenError(f"custodial approval refused: {decision.reason}")
            signed = draft.with_signature(self._signers[who.member])
            tx = Transaction.from_json(canonical.loads_canonical(signed.payload))
            return signed, tx

        env, tx = await run_in_threadpool(decide)
        return await self._submit(request, who, env, tx, custodial=True)

    async def _submit(
        self,
        request: Request,
        who: Principal | None,
        env: Envelope,
        tx: Transaction,
        custodial: bool,
    ) -> Response:
        started = time.perf_counter()
        ack = await asyncio.wrap_future(self.led.node.submit_async(env.to_bytes()))
        self.ctx.metrics.appended([ack], time.perf_counter() - started)
        signers = await run_in_threadpool(self.signer_names, [s.keyid for s in env.signatures])
        return self.render(
            request,
            "submitted.html",
            200 if ack.outcome.accepted else 409,
            who=who,
            index=ack.index,
            outcome=ack.outcome.to_json(),
            tx=tx.to_json(),
            signers=signers,
            custodial=custodial,
        )

    # -- compliance exports -----------------------------------------------------------

    def annex_iv(self, request: Request) -> Response:
        self.ctx.reader(request)
        name = request.path_params["name"]
        fmt = request.path_params["fmt"]
        if fmt not in ("html", "pdf", "json"):
            raise NotFoundError(f"no Annex IV export as {fmt!r} (html, pdf or json)")
        q = request.query_params.get("version")
        version = _int(q, "version", 1) if q else None
        self.led.models.get(name, version)
        from .. import reports

        doc = reports.annex_iv(self.led, name, version=version)
        stem = f"annex-iv-{name}" + (f"-v{version}" if version else "")
        if fmt == "json":
            return Response(
                reports.render_json(doc),
                media_type="application/json",
                headers={**_HEADERS, "Content-Disposition": f'inline; filename="{stem}.json"'},
            )
        if fmt == "pdf":
            return Response(
                reports.render_pdf(doc),
                media_type="application/pdf",
                headers={
                    **_HEADERS,
                    "Content-Disposition": f'attachment; filename="{stem}.pdf"',
                },
            )
        return HTMLResponse(reports.render_html(doc), headers=_REPORT_HEADERS)

    def report_entry(self, request: Request) -> Response:
        # The Annex IV HTML cites entries by relative links (entries/N), so
        # that whoever serves it decides where entries live: here, /ui/entries/N.
        index = _int(request.path_params["index"], "entry index")
        return RedirectResponse(f"/ui/entries/{index}", 303)

    # -- static files ------------------------------------------------------------------

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise NotFoundError(f"no static file {name!r}")
        data = _static_bytes(name)
        return Response(
            data,
            media_type=_STATIC[name],
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    def not_found(self, request: Request) -> Response:
        raise NotFoundError(f"there is no dashboard page at {request.url.path}")


_STATIC = {"style.css": "text/css; charset=utf-8"}


@functools.cache
def _static_bytes(name: str) -> bytes:
    """A packaged static file, read once (``name`` is one of ``_STATIC``)."""
    return (resources.files("modelchain.server") / "static" / name).read_bytes()


def _markup(svg: str) -> Markup:
    # lineage.py escapes every text it draws; this marks its output as safe.
    return Markup(svg)


def _about_model(entry: Mapping[str, Any], name: str) -> bool:
    body = entry.get("body")
    if not isinstance(body, Mapping):
        return False
    target = body.get("model")
    if isinstance(target, Mapping):
        target = target.get("name")
    if entry.get("type") == tx_types.MODEL_REGISTER:
        target = body.get("name")
    return target == name


def _about(entry: Mapping[str, Any]) -> str:
    """A few words on what an entry is about, for lists."""
    body = entry.get("body")
    if not isinstance(body, Mapping):
        return ""
    t = str(entry.get("type", ""))
    model = body.get("model")
    if isinstance(model, Mapping):
        return f"{model.get('name')}@{model.get('version')}"
    if isinstance(model, str):
        parts = [model]
        if "version" in body:
            parts[0] += f"@{body['version']}"
        if body.get("env"):
            parts.append(f"→ {body['env']}")
        return " ".join(parts)
    if t in (tx_types.MODEL_REGISTER, tx_types.DATASET_REGISTER):
        return str(body.get("name", ""))
    if t == tx_types.DATASET_INGEST:
        return str(body.get("dataset", ""))
    dataset = body.get("dataset")
    if isinstance(dataset, Mapping):
        return f"{dataset.get('name')}@{dataset.get('version')}"
    if t == tx_types.RUN_RECORD:
        return str(body.get("id", ""))
    if t == tx_types.POLICY_SET:
        return str(body.get("action", ""))
    if t.startswith("member."):
        member = body.get("member")
        return str(member.get("name") if isinstance(member, Mapping) else body.get("name", ""))
    if t == tx_types.EVENT:
        return str(body.get("event", ""))
    return ""


def dashboard_router(ctx: ServerContext) -> APIRouter:
    """The ``/ui/`` routes; ``create_app`` includes them."""
    ui = Dashboard(ctx)
    r = APIRouter(include_in_schema=False)

    def page(
        path: str,
        handler: Callable[[Request], Response] | Callable[[Request], Awaitable[Response]],
        method: str = "GET",
    ) -> None:
        async def endpoint(request: Request) -> Response:
            return await ui.guard(request, handler)

        endpoint.__name__ = f"ui_{getattr(handler, '__name__', 'page')}"
        r.add_api_route(path, endpoint, methods=[method], response_class=HTMLResponse)

    @r.get("/ui", include_in_schema=False)
    def _slash() -> RedirectResponse:
        return RedirectResponse("/ui/", 308)

    page("/ui/", ui.overview)
    page("/ui/login", ui.login_page)
    page("/ui/login", ui.login, "POST")
    page("/ui/logout", ui.logout_page)
    page("/ui/logout", ui.logout, "POST")
    page("/ui/static/{name}", ui.static)
    page("/ui/models", ui.models_page)
    page("/ui/models/{name}", ui.model_page)
    page("/ui/models/{name}/annex-iv.{fmt}", ui.annex_iv)
    page("/ui/models/{name}/entries/{index}", ui.report_entry)
    page("/ui/models/{name}/versions/{version}", ui.version_page)
    page("/ui/models/{name}/versions/{version}/draft", ui.draft)
    page("/ui/models/{name}/versions/{version}/approve", ui.upload_signed, "POST")
    page("/ui/models/{name}/versions/{version}/approve/custodial", ui.custodial_approve, "POST")
    page("/ui/datasets", ui.datasets_page)
    page("/ui/datasets/{name}", ui.dataset_page)
    page("/ui/runs/{run_id}", ui.run_page)
    page("/ui/audit", ui.audit_page)
    page("/ui/entries/{index}", ui.entry_page)
    page("/ui/members", ui.members_page)
    page("/ui/policies", ui.policies_page)
    page("/ui/verify", ui.verify_page)
    page("/ui/verify", ui.verify, "POST")
    page("/ui/{rest:path}", ui.not_found)
    return r
