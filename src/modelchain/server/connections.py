"""HTTP connections with bounds uvicorn lacks: a deadline and a size for each
request head, and a cap on open connections.

uvicorn times out idle keep-alive connections, and the ``Limits`` middleware
bounds bodies, but nothing bounds how long a client may take to send a request
line and headers: a client trickling them holds a socket, a file descriptor,
for as long as it likes. These protocols close a connection whose request head
is not complete ``header_timeout`` seconds after it began (or after the
connection opened); answer a head over ``max_head`` bytes with 431 (h11: 400);
and answer a connection beyond ``max_connections`` with 503, closing both.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

__all__ = ["MAX_HEAD", "connection_protocol"]

MAX_HEAD = 64 * 1024  # bytes of a request line and headers

log = logging.getLogger("modelchain.server")


def _response(status: int, reason: str, code: str, message: str, retry_after: int = 0) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if retry_after:
        head += f"retry-after: {retry_after}\r\n"
    return head.encode() + b"\r\n" + body


class _HeadClock:
    """The deadline of the request head being received."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.Transport) -> None:
        """A head begins (or may: the connection is open): start its clock,
        unless one is running."""
        if self.timer is None:
            self.timer = self.loop.call_later(self.timeout, self._expired, transport)

    def opened(self, transport: asyncio.Transport, open_now: int, limit: int) -> None:
        """A connection opened: refuse it beyond ``limit``, else its first head's
        clock starts."""
        if not _too_many(transport, open_now, limit):
            self.start(transport)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, transport: asyncio.Transport) -> None:
        self.timer = None
        if not transport.is_closing():
            # Closed without an answer: the client may be between requests of a
            # keep-alive connection, where a stray response would be misread.
            log.info("closing a connection whose request head did not arrive in time")
            transport.close()


class _HeadTooLarge(Exception):
    pass


def _too_many(transport: asyncio.Transport, open_now: int, limit: int) -> bool:
    if open_now <= limit:
        return False
    transport.write(
        _response(
            503,
            "Service Unavailable",
            "overloaded",
            f"over {limit} connections are open; retry shortly",
            retry_after=1,
        )
    )
    transport.close()
    return True


def connection_protocol(
    header_timeout: float, max_head: int, max_connections: int
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools where installed, else h11, as
    uvicorn's "auto" picks), with these bounds; for ``uvicorn.Config(http=...)``."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        base: type[asyncio.Protocol] = _h11_protocol()
    else:
        base = _httptools_protocol()
    attrs = {
        "header_timeout": header_timeout,
        "max_head": max_head,
        "max_connections": max_connections,
    }
    return cast(type[asyncio.Protocol], type("LedgerHTTPProtocol", (base,), attrs))


def _httptools_protocol() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Bounded(HttpToolsProtocol):
        header_timeout = 10.0
        max_head = MAX_HEAD
        max_connections = 1000

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head = _HeadClock(self.loop, self.header_timeout)
            self._head_size = 0
            self._head_too_large = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head.opened(transport, len(self.connections), self.max_connections)

        def connection_lost(self, exc: Exception | None) -> None:
            self._head.stop()
            super().connection_lost(exc)

        def _count(self, n: int) -> None:
            self._head_size += n
            if self._head_size > self.max_head:
                self._head_too_large = True
                raise _HeadTooLarge  # the parser stops; uvicorn answers via send_400_response

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_size = 0
            self._head.start(self.transport)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head.stop()
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._head_too_large:
                super().send_400_response(msg)
                return
            self._head.stop()
            self.transport.write(
                _response(
                    431,
                    "Request Header Fields Too Large",
                    "oversize",
                    f"the request line and headers are over {self.max_head} bytes",
                )
            )
            self.transport.close()

    return Bounded


def _h11_protocol() -> type[asyncio.Protocol]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Bounded(H11Protocol):
        """h11 bounds the head's size itself (uvicorn's h11_max_incomplete_event_size)."""

        header_timeout = 10.0
        max_connections = 1000

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head = _HeadClock(self.loop, self.header_timeout)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head.opened(transport, len(self.connections), self.max_connections)

        def connection_lost(self, exc: Exception | None) -> None:
            self._head.stop()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            # h11 moves the client's state on from IDLE only once a whole head is in.
            if self.conn.their_state is h11.IDLE:
                self._head.start(self.transport)
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._head.stop()

    return Bounded
