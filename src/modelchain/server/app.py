"""The ledger node over HTTP: FastAPI routes around an embedded ``Ledger``.

Writes are DSSE envelopes (the signature authenticates them); reads are open
or need a member's bearer token. The log is also served at the C2SP
tlog-tiles paths so that standard tile clients and mirrors can follow it.
Errors map to HTTP statuses here and only here, always as
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..core import canonical, jsontext
from ..core.b64 import b64
from ..core.checkpoint import Checkpoint
from ..core.policy import verify_checkpoint
from ..core.receipt import InclusionReceipt
from ..core.tiles import (
    TILE_WIDTH,
    encode_entry_bundle,
    parse_tile_path,
)
from ..core.tx import MAX_ENVELOPE_BYTES
from ..errors import (
    AccessError,
    AuthError,
    ClockSkewError,
    ContractVersionError,
    Error,
    ForbiddenError,
    InputError,
    MalformedError,
    NotFoundError,
    OversizeError,
    PushbackError,
    RefusedError,
    ReplayError,
    RequestTimeoutError,
    StorageBusyError,
    StorageFullError,
    UnavailableError,
    UnknownKeyError,
    UsageError,
    VerificationError,
)
from ..ledger.ledger import Ledger
from ..node.node import Ack
from .access import AccessList, Principal
from .metrics import Metrics
from .queries import TrailFilter, TrailPage, find_digest, rejected, trail

__all__ = ["MAX_INT", "Limits", "ServerConfig", "ServerContext", "create_app", "status_of"]

log = logging.getLogger("modelchain.server")

# The largest number any route takes (SQLite's INTEGER): indexes, sizes,
# versions and times beyond it are a 400, never an overflow deep in the store.
MAX_INT = 2**63 - 1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ServerConfig:
    max_body: int = 8 << 20  # bytes of any request body (a batch of envelopes, a blob)
    max_batch: int = 1000  # envelopes per batch submission
    max_in_flight: int = 512  # requests being served at once; beyond: 503
    max_in_flight_per_client: int = 64  # the same, from one client address
    body_timeout: float = 30.0  # seconds a request body may take to arrive; beyond: 408
    max_scan: int = 20_000  # entries one audit-trail query may scan before it pages
    max_scans: int = 2  # audit-trail scans at once; beyond: 503
    reads: str | None = None  # "open" or "token"; None: the ledger's access.json decides


# One place where errors become HTTP statuses; the most specific class wins.
_STATUS: list[tuple[type[Error], int]] = [
    (OversizeError, 413),
    (RequestTimeoutError, 408),
    (InputError, 400),
    (UsageError, 400),
    (NotFoundError, 404),
    (UnknownKeyError, 403),
    (ReplayError, 409),
    (ClockSkewError, 422),
    (RefusedError, 409),
    (VerificationError, 422),
    (AuthError, 401),
    (ForbiddenError, 403),
    (AccessError, 403),
    (PushbackError, 503),
    (UnavailableError, 503),
    (ContractVersionError, 503),  # this node needs an upgrade; others may serve
    (StorageBusyError, 503),
    (StorageFullError, 507),
]


def status_of(exc: Error) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _item_error(exc: Error) -> dict[str, Any]:
    """One batch item's error, worded as error_response would word it."""
    status = status_of(exc)
    if status >= 500 and status not in (503, 507):
        log.error("a batch item failed", exc_info=exc)
        return error_body(exc.code, "the ledger store failed; see the log")
    return error_body(exc.code, exc.message)


def error_response(exc: Error) -> JSONResponse:
    status = status_of(exc)
    if status >= 500 and status not in (503, 507):
        # The store's own words may name files on the server: logged, not sent.
        log.error("request failed", exc_info=exc)
        return JSONResponse(error_body(exc.code, "the ledger store failed; see the log"), status)
    headers = {}
    if isinstance(exc, PushbackError | StorageBusyError | StorageFullError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(exc.code, exc.message), status, headers=headers)


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

    def receipt(self, index: int) -> InclusionReceipt:
        """A tlog-proof of entry ``index`` against a published checkpoint."""
        if not 0 <= index < self.ledger.size:
            raise NotFoundError(f"no entry {index}: the log has {self.ledger.size} entries")
        cp, note = self.checkpoint(covering=index + 1)
        proof = tuple(self.ledger.inclusion_proof(index, cp.size))
        return InclusionReceipt(index=index, proof=proof, checkpoint=note)

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


# -- ASGI middleware: limits, metrics, structured access log -------------------


class Limits:
    """Body size, body time and concurrency limits, answered as JSON errors; and
    one structured log line per request (never bodies, never tokens)."""

    def __init__(self, app: ASGIApp, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx
        self.in_flight = 0
        self.per_client: dict[str, int] = {}

    def _refusal(self, scope: Scope) -> Error | None:
        config = self.ctx.config
        declared = _content_length(scope)
        if declared is not None and declared > config.max_body:
            return OversizeError(f"request body over {config.max_body} bytes")
        if scope["path"] == "/healthz":
            return None  # liveness must answer even when the node is saturated
        client = (scope.get("client") or ("", 0))[0]
        if self.in_flight >= config.max_in_flight:
            return PushbackError(f"{self.in_flight} requests in progress; retry shortly", 1.0)
        if self.per_client.get(client, 0) >= config.max_in_flight_per_client:
            return PushbackError("too many requests in progress from this client", 1.0)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.ctx.config
        started = time.perf_counter()
        status_seen = [500]
        client = (scope.get("client") or ("", 0))[0]

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                status_seen[0] = status_of(refusal)
                await _send_error(send, refusal)
                return
            self.in_flight += 1
            self.per_client[client] = self.per_client.get(client, 0) + 1
            received = 0
            deadline = asyncio.get_running_loop().time() + config.body_timeout

            async def receive_limited() -> Message:
                nonlocal received
                try:
                    async with asyncio.timeout_at(deadline):  # no task per receive
                        message = await receive()
                except TimeoutError:
                    raise _BodyTimeout from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > config.max_body:
                        raise _BodyTooLarge
                return message

            try:
                await self.app(scope, receive_limited, send_wrapped)
            except _BodyTooLarge:
                status_seen[0] = 413
                await _send_error(send, OversizeError(f"request body over {config.max_body} bytes"))
            except _BodyTimeout:
                status_seen[0] = 408
                await _send_error(
                    send,
                    RequestTimeoutError(
                        f"the request body did not arrive within {config.body_timeout:g} s"
                    ),
                )
            finally:
                self.in_flight -= 1
                left = self.per_client[client] - 1
                if left:
                    self.per_client[client] = left
                else:
                    del self.per_client[client]
        finally:
            elapsed = time.perf_counter() - started
            route = _route_name(scope)
            self.ctx.metrics.request(scope["method"], route, status_seen[0], elapsed)
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status_seen[0],
                        "ms": round(elapsed * 1000, 2),
                        "client": client,
                    }
                },
            )


class _BodyTimeout(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, exc: Error) -> None:
    response = error_response(exc)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def _route_name(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


# -- the application -------------------------------------------------------------

_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A DSSE envelope whose payload is a canonical modelchain transaction.",
    "required": ["payloadType", "payload", "signatures"],
    "properties": {
        "payloadType": {"type": "string", "example": "application/vnd.modelchain.tx+json"},
        "payload": {"type": "string", "format": "byte"},
        "signatures": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["keyid", "sig"],
                "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}},
            },
        },
    },
}

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

_ERRORS = {
    str(code): {
        "description": text,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }
    for code, text in [
        (400, "Malformed input"),
        (401, "A bearer token is needed"),
        (403, "Not allowed"),
        (404, "Not found"),
        (413, "Body too large"),
        (503, "Overloaded; see Retry-After"),
    ]
}


class JSONText(Response):
    """A JSON answer written by ``core.jsontext``: any depth of ledger value fits."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsontext.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def _ack_json(ack: Ack) -> dict[str, Any]:
    return {"index": ack.index, "leaf_hash": ack.leaf_hash.hex(), "outcome": ack.outcome.to_json()}


def create_app(ledger: Ledger, config: ServerConfig | None = None) -> FastAPI:
    """The node's HTTP application over an open, writable ``ledger``."""
    ctx = ServerContext(ledger, config or ServerConfig())
    app = FastAPI(
        title="modelchain node",
        version=__version__,
        description=(
            "A verifiable provenance ledger for ML models and datasets. Writes are DSSE "
            "envelopes; reads need a bearer token unless the ledger's reads are open. The "
            "log is also served at the C2SP tlog-tiles paths (/checkpoint, /tile/...)."
        ),
        responses=_ERRORS,  # type: ignore[arg-type]
        # FastAPI's /docs and /redoc load unpinned scripts from a CDN onto this
        # origin, where a dashboard cookie can read the ledger: off. The OpenAPI
        # document stays at /openapi.json for any viewer.
        docs_url=None,
        redoc_url=None,
        # Starlette's trailing-slash redirect builds an absolute URL from the Host
        # header, so a forged Host would send the client elsewhere: paths are exact.
        redirect_slashes=False,
    )
    app.state.ctx = ctx

    @app.exception_handler(Error)
    async def _on_error(request: Request, exc: Error) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            error_body("bad_request", f"{where}: {first.get('msg', 'invalid request')}"), 400
        )

    @app.exception_handler(Exception)
    async def _on_bug(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a refusal: logged with its traceback, answered without details.
        log.error("unhandled error", exc_info=exc, extra={"fields": {"path": request.url.path}})
        return JSONResponse(error_body("internal", "internal server error; see the log"), 500)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    app.include_router(_log_router(ctx))
    app.include_router(_query_router(ctx))
    app.include_router(_ops_router(ctx))
    from .dashboard import dashboard_router  # here: the dashboard imports this module

    app.include_router(dashboard_router(ctx))

    @app.get("/", include_in_schema=False)
    def _home() -> RedirectResponse:
        return RedirectResponse("/ui/", 303)

    app.add_middleware(Limits, ctx=ctx)
    return app


def _log_router(ctx: ServerContext) -> APIRouter:
    r = APIRouter(tags=["log"])
    led = ctx.ledger

    @r.post(
        "/v1/entries",
        summary="Submit one signed transaction; answers once it is durable",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ENVELOPE_SCHEMA}},
            }
        },
    )
    async def submit(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > MAX_ENVELOPE_BYTES:
            raise OversizeError(f"an envelope is at most {MAX_ENVELOPE_BYTES} bytes")
        started = time.perf_counter()
        fut = led.node.submit_async(body)
        ack = await asyncio.wrap_future(fut)
        ctx.metrics.appended([ack], time.perf_counter() - started)
        return _ack_json(ack)

    @r.post(
        "/v1/entries:batch",
        summary="Submit several signed transactions; each gets its ack or its error",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "array", "items": _ENVELOPE_SCHEMA}}
                },
            }
        },
    )
    async def submit_batch(request: Request) -> list[dict[str, Any]]:
        items = canonical.loads(await request.body())
        if not isinstance(items, list):
            raise MalformedError("the body must be a JSON array of DSSE envelopes")
        if len(items) > ctx.config.max_batch:
            raise OversizeError(f"at most {ctx.config.max_batch} envelopes per batch")
        datas = [canonical.dumps(item) for item in items]
        started = time.perf_counter()
        futures = led.node.submit_many(datas)
        out: list[dict[str, Any]] = []
        acks: list[Ack] = []
        for fut in futures:
            try:
                ack = await asyncio.wrap_future(fut)
            except Error as exc:
                out.append(_item_error(exc))
            except Exception as exc:  # answered for this item alone, never a 500
                log.error("a batch item failed unexpectedly", exc_info=exc)
                out.append(error_body("internal", "this item failed; see the server's log"))
            else:
                acks.append(ack)
                out.append(_ack_json(ack))
        ctx.metrics.appended(acks, time.perf_counter() - started)
        return out

    @r.get(
        "/checkpoint",
        response_class=PlainTextResponse,
        summary="The latest signed checkpoint (C2SP tlog-checkpoint)",
    )
    def checkpoint(
        request: Request,
        covering: int = Query(
            0,
            ge=0,
            le=MAX_INT,
            description="Sign a new checkpoint if the latest covers fewer entries",
        ),
    ) -> Response:
        ctx.reader(request)
        _, note = ctx.checkpoint(covering)
        return Response(note, media_type="text/plain; charset=utf-8", headers=_NO_STORE)

    @r.get(
        "/tile/{path:path}",
        summary="Hash tiles and entry bundles at the C2SP tlog-tiles paths",
        response_class=Response,
    )
    def tile(request: Request, path: str) -> Response:
        ctx.reader(request)
        level, n, width = parse_tile_path("tile/" + path)
        size = _published_size(ctx)
        if level is None:
            end = n * TILE_WIDTH + width
            if end > size:
                raise NotFoundError(f"entry bundle {path} is beyond the log size {size}")
            bundle = [d for _, d in led.store.entries(n * TILE_WIDTH, end)]
            data = encode_entry_bundle(bundle)
        else:
            count = size >> (8 * level)
            if n * TILE_WIDTH + width > count:
                raise NotFoundError(f"tile {path} is beyond the log size {size}")
            data = led.tile(level, n, width)
        cache = _IMMUTABLE if width == TILE_WIDTH else _NO_STORE
        return Response(data, media_type="application/octet-stream", headers=cache)

    @r.get(
        "/v1/entries:range",
        response_class=Response,
        summary="Entries start to end-1 (at most 256), encoded as a tlog-tiles entry bundle",
    )
    def entry_range(
        request: Request, start: int = Query(ge=0, le=MAX_INT), end: int = Query(ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        if not 0 < end - start <= TILE_WIDTH:
            raise MalformedError(f"ask for 1 to {TILE_WIDTH} entries (start < end)")
        if end > led.size:
            raise NotFoundError(f"the log has {led.size} entries")
        bundle = [d for _, d in led.store.entries(start, end)]
        return Response(encode_entry_bundle(bundle), media_type="application/octet-stream")

    @r.get("/v1/entries/{index}", summary="One entry with its inclusion proof")
    def entry(request: Request, index: int = Path(ge=0, le=MAX_INT)) -> dict[str, Any]:
        ctx.reader(request)
        receipt = ctx.receipt(index)
        data = led.entry_bytes(index)
        return {
            "index": index,
            "entry": b64(data),
            "decoded": json.loads(data),
            "checkpoint": receipt.checkpoint.decode(),
            "inclusion": [b64(h) for h in receipt.proof],
            "tlog_proof": receipt.to_text(),
        }

    @r.get("/v1/proof/inclusion", summary="RFC 9162 inclusion proof")
    def inclusion(
        request: Request,
        index: int = Query(ge=0, le=MAX_INT),
        size: int | None = Query(None, ge=1, le=MAX_INT),
    ) -> dict[str, Any]:
        ctx.reader(request)
        return {
            "index": index,
            "size": size or led.size,
            "proof": [b64(h) for h in led.inclusion_proof(index, size)],
        }

    @r.get("/v1/proof/consistency", summary="RFC 9162 consistency proof")
    def consistency(
        request: Request,
        old: int = Query(ge=1, le=MAX_INT),
        new: int | None = Query(None, ge=1, le=MAX_INT),
    ) -> dict[str, Any]:
        ctx.reader(request)
        return {
            "old": old,
            "new": new or led.size,
            "proof": [b64(h) for h in led.consistency_proof(old, new)],
        }

    @r.get(
        "/v1/receipts/{index}",
        response_class=PlainTextResponse,
        summary="A C2SP tlog-proof of one entry, for offline checks",
    )
    def receipt(request: Request, index: int = Path(ge=0, le=MAX_INT)) -> Response:
        ctx.reader(request)
        return Response(ctx.receipt(index).to_text(), media_type="text/plain; charset=utf-8")

    @r.get("/v1/blobs/{ref}", summary="A content-addressed blob (a large manifest)")
    def blob(request: Request, ref: str) -> Response:
        ctx.reader(request)
        if not _BLOB_REF.fullmatch(ref):
            raise MalformedError("a blob reference is sha256:<64 hex>")
        return Response(led.blobs.get(ref), media_type="application/octet-stream")

    @r.post(
        "/v1/blobs",
        summary="Store a content-addressed blob (needs a member's token of scope write)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def put_blob(request: Request) -> dict[str, Any]:
        who = ctx.principal(request)
        if who is None:
            raise AuthError("storing a blob needs a member's bearer token (scope write)")
        who.require_any(("write", "approve"))
        data = await request.body()
        return {"ref": await run_in_threadpool(led.blobs.put, data)}

    return r


_BLOB_REF = re.compile(r"sha256:[0-9a-f]{64}")
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
_NO_STORE = {"Cache-Control": "no-store"}


def _published_size(ctx: ServerContext) -> int:
    """Tiles are served up to the latest checkpoint, as a static mirror would."""
    return ctx.checkpoint()[0].size


def _query_router(ctx: ServerContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["registry and governance"], default_response_class=JSONText)
    led = ctx.ledger

    def checkpoint_fields() -> dict[str, Any]:
        cp, note = ctx.checkpoint()
        return {"size": cp.size, "root": cp.root.hex(), "note": note.decode()}

    def answer(value: Any, **more: Any) -> Response:
        # Ledger values can nest as deep as entries logged before the nesting
        # limit: written by JSONText, which any depth fits, not by FastAPI's
        # serializer, which gives up near 254 levels.
        return JSONText({"result": value, "checkpoint": checkpoint_fields(), **more})

    @r.get("/ledger", summary="Origin, size, log key and the latest checkpoint")
    def info(request: Request) -> Response:
        ctx.reader(request)
        return JSONText(
            {
                "origin": led.origin,
                "size": led.size,
                "log_key": led.log_key.to_string(),
                "checkpoint": checkpoint_fields(),
            }
        )

    @r.get("/models", summary="Registered models")
    def models(request: Request) -> Response:
        ctx.reader(request)
        return answer(led.models.list())

    @r.get("/models/{name}", summary="A model version (the latest unless ?version=)")
    def model(
        request: Request, name: str, version: int | None = Query(None, ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        return answer(led.models.get(name, version).record)

    @r.get("/models/{name}/lineage", summary="Datasets, runs and parents behind a version")
    def lineage(
        request: Request, name: str, version: int | None = Query(None, ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        return answer(led.models.lineage(name, version).to_json())

    @r.get(
        "/models/{name}/deployments/{env}",
        summary="Deployment history of an environment (up to ?at= ms), and what it serves",
    )
    def history(
        request: Request, name: str, env: str, at: int | None = Query(None, ge=0, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        return answer(
            {
                "current": led.deployments.current(name, env),
                "serving": None if at is None else led.deployments.serving(name, env, at),
                "history": led.deployments.history(name, env, at),
            }
        )

    @r.get("/models/{name}/diff", summary="Files and tensors that differ between two versions")
    def diff(
        request: Request,
        name: str,
        old: int = Query(ge=1, le=MAX_INT),
        new: int = Query(ge=1, le=MAX_INT),
    ) -> Response:
        ctx.reader(request)
        return answer(led.models.diff(name, old, new).to_json())

    @r.get("/datasets", summary="Registered datasets")
    def datasets(request: Request) -> Response:
        ctx.reader(request)
        return answer(led.datasets.list())

    @r.get("/datasets/{name}", summary="A dataset and its versions")
    def dataset(
        request: Request, name: str, version: int | None = Query(None, ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        if version is None:
            return answer(led.datasets.info(name))
        return answer(led.datasets.get(name, version).record)

    @r.get("/runs/{run_id}", summary="A training run")
    def run(request: Request, run_id: str) -> Response:
        ctx.reader(request)
        return answer(led.runs.get(run_id))

    @r.get("/members", summary="Members, their organisations, roles and keys")
    def members(request: Request) -> Response:
        ctx.reader(request)
        return answer({"quorum": led.members.quorum, "members": led.members.list()})

    @r.get("/policies", summary="The CEL policies in force")
    def policies(request: Request) -> Response:
        ctx.reader(request)
        return answer(led.policies.list())

    @r.get(
        "/denied",
        summary="Rejected entries, newest first (the audit trail with outcome=rejected)",
    )
    def denied(
        request: Request,
        before: int | None = Query(None, ge=0, le=MAX_INT),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        ctx.reader(request)
        page = ctx.denied(before, limit)
        return answer(page.entries, next_before=page.next_before)

    @r.get(
        "/audit",
        summary="The audit trail, newest first, with filters; at most max_scan entries are "
        "examined per call: continue from next_before while it is not null",
    )
    def audit_trail(
        request: Request,
        actor: str | None = None,
        org: str | None = None,
        type: str | None = None,
        outcome: str | None = Query(None, pattern="^(accepted|rejected)$"),
        since: int | None = Query(None, ge=0, le=MAX_INT),
        until: int | None = Query(None, ge=0, le=MAX_INT),
        before: int | None = Query(None, ge=0, le=MAX_INT),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        ctx.reader(request)
        f = TrailFilter(actor, org, type, outcome, since, until, before, limit)
        page = ctx.scan(f)
        return answer(page.entries, next_before=page.next_before)

    @r.get("/verify", summary="Which registered version has this digest")
    def verify(request: Request, digest: str = Query(min_length=1, max_length=200)) -> Response:
        ctx.reader(request)
        return answer(find_digest(led, digest))

    return r


def _ops_router(ctx: ServerContext) -> APIRouter:
    r = APIRouter(tags=["operations"])

    @r.get(
        "/healthz",
        summary="Liveness: the node takes writes and its store answers (503 when not)",
        responses={503: {"description": "The writer stopped after a fault; see the log"}},
    )
    def healthz() -> Response:
        _ = ctx.ledger.size  # touches the store
        fault = ctx.ledger.node.fault
        if fault is not None:
            body = error_body("node_stopped", "this node stopped taking writes; see its log")
            return JSONResponse({"status": "failing", **body}, 503)
        return JSONResponse({"status": "ok"})

    @r.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics (a read token unless reads are open)",
    )
    def metrics(request: Request) -> Response:
        ctx.reader(request)
        body, content_type = ctx.metrics.render()
        return Response(body, media_type=content_type)

    return r
