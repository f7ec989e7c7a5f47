"""The witness's HTTP face (c2sp.org/tlog-witness): ``POST /add-checkpoint``
and the monitoring ``GET /<hex sha256(origin)>/checkpoint``. The statuses are
the spec's, so they are mapped here rather than by ``server.errors``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..core.checkpoint import Checkpoint
from ..core.identity import Cosigner, cosigner_of
from ..core.note import Note
from ..core.policy import CheckpointPolicy
from ..core.witness import AddCheckpoint, witness_checkpoint
from ..errors import (
    Error,
    InputError,
    NotFoundError,
    ProofError,
    SignatureError,
    SizeConflictError,
    StorageError,
)
from ..storage.witness import WitnessState

__all__ = ["MAX_BODY", "SIZE_CONTENT_TYPE", "create_witness_app"]

log = logging.getLogger("modelchain.witness")

# 63 proof lines of 45 bytes and a checkpoint with its signatures fit many times over.
MAX_BODY = 64 << 10
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_TEXT = "text/plain; charset=utf-8"

# The spec's answers; the most specific class first.
_STATUS: list[tuple[type[Error], int]] = [
    (SizeConflictError, 409),
    (NotFoundError, 404),
    (SignatureError, 403),
    (ProofError, 422),
    (InputError, 400),
    (StorageError, 503),
]


def _status_of(exc: Error) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def _refusal(exc: Error) -> Response:
    if isinstance(exc, SizeConflictError):
        # Set as a header: a media_type of text/* would get "; charset=utf-8" added.
        return Response(f"{exc.size}\n", 409, headers={"content-type": SIZE_CONTENT_TYPE})
    return PlainTextResponse(f"{exc.diagnostics()}\n", _status_of(exc), media_type=_TEXT)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_witness_app(
    policy: CheckpointPolicy,
    state: WitnessState,
    signer: Cosigner,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """A witness for the logs ``policy`` names, cosigning as ``signer`` (Ed25519
    or ML-DSA-44) with timestamps from ``clock`` and keeping what it cosigned
    in ``state``."""
    key = cosigner_of(signer).key_id

    def add(body: bytes) -> Note:
        request = AddCheckpoint.parse(body)
        now = int(clock())

        def advance(latest: Checkpoint | None) -> Note:
            return witness_checkpoint(request, policy, latest, signer, now)

        return state.update(request.checkpoint.origin, advance)

    async def add_checkpoint(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return PlainTextResponse(f"request body over {MAX_BODY} bytes\n", 413)
        try:
            note = await run_in_threadpool(add, body)
        except Error as exc:
            if not isinstance(exc, SizeConflictError | InputError):
                log.warning(f"add-checkpoint refused: {exc.diagnostics()}")
            return _refusal(exc)
        mine = [s for s in note.signatures if (s.name, s.key_id) == (signer.name, key)]
        cp = Checkpoint.from_text(note.text)
        log.info(f"cosigned {cp.origin} at size {cp.size}")
        return Response("".join(s.line() for s in mine), 200, media_type=_TEXT)

    async def checkpoint(request: Request) -> Response:
        try:
            data = await run_in_threadpool(state.note_bytes_by_hash, request.path_params["hash"])
        except Error as exc:
            return _refusal(exc)
        if data is None:
            return PlainTextResponse("no checkpoint cosigned for this log\n", 404)
        return Response(data, 200, media_type=_TEXT)

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/{hash}/checkpoint", checkpoint, methods=["GET"]),
        ]
    )
