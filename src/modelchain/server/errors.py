"""Errors as HTTP: the one mapping from ``modelchain.errors`` to statuses, the
``{"error": {"code", "message"}}`` body every refusal has, and the handlers
that turn anything a route raises into such an answer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AccessError,
    AuthError,
    ClockSkewError,
    ContractVersionError,
    Error,
    ForbiddenError,
    InputError,
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
    ValidityWindowError,
    VerificationError,
)

__all__ = [
    "ERROR_RESPONSES",
    "add_error_handlers",
    "error_body",
    "error_response",
    "item_error",
    "status_of",
]

log = logging.getLogger("modelchain.server")

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
    (ValidityWindowError, 422),
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


def item_error(exc: Error) -> dict[str, Any]:
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


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

# The error answers the OpenAPI document lists for every route.
ERROR_RESPONSES = {
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


def add_error_handlers(app: FastAPI) -> None:
    """Every exception a route raises becomes a JSON error answer."""

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
