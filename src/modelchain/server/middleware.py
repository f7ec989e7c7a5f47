"""ASGI middleware: body size, body time and concurrency limits, answered as
JSON errors; request metrics; one structured log line per request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import Error, OversizeError, PushbackError, RequestTimeoutError
from .context import ServerContext
from .errors import error_response, status_of

__all__ = ["Limits"]

log = logging.getLogger("modelchain.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
