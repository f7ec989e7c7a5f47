"""The log: signed submissions (one or a batch), the checkpoint, tiles and entry
bundles at the C2SP tlog-tiles paths, entries with their proofs, receipts and
content-addressed blobs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ...core import canonical
from ...core.b64 import b64
from ...core.disclosure import MAX_DISCLOSURE
from ...core.tiles import TILE_WIDTH, encode_entry_bundle, parse_tile_path
from ...core.tx import MAX_ENVELOPE_BYTES
from ...errors import AuthError, Error, MalformedError, NotFoundError, OversizeError
from ...node.node import Ack
from ..config import MAX_INT
from ..context import ServerContext
from ..errors import error_body, item_error
from .common import IMMUTABLE, NO_STORE

__all__ = ["log_router"]

log = logging.getLogger("modelchain.server")

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


def _ack_json(ack: Ack) -> dict[str, Any]:
    return {"index": ack.index, "leaf_hash": ack.leaf_hash.hex(), "outcome": ack.outcome.to_json()}


def log_router(ctx: ServerContext) -> APIRouter:
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
                out.append(item_error(exc))
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
        return Response(note, media_type="text/plain; charset=utf-8", headers=NO_STORE)

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
        cache = IMMUTABLE if width == TILE_WIDTH else NO_STORE
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
        receipt = ctx.tlog_proof(index)
        data = led.entry_bytes(index)
        return {
            "index": index,
            "entry": b64(data),
            "decoded": json.loads(data),
            "checkpoint": receipt.checkpoint.decode(),
            "inclusion": [b64(h) for h in receipt.proof],
            "tlog_proof": receipt.to_text(),
        }

    @r.post(
        "/v1/entries/{index}/disclosures",
        summary="Hand over the disclosures of an entry's committed personal fields",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["disclosures"],
                            "properties": {
                                "disclosures": {
                                    "type": "array",
                                    "maxItems": _MAX_DISCLOSURES,
                                    "items": {"type": "string"},
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def disclosures(request: Request, index: int = Path(ge=0, le=MAX_INT)) -> dict[str, Any]:
        # No token needed: a disclosure is the preimage of a commitment the signed
        # entry holds, so only whoever built the transaction has it to give.
        data = await request.body()
        if len(data) > _MAX_DISCLOSURES * MAX_DISCLOSURE + 1024:
            raise OversizeError("too many or too long disclosures")
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise MalformedError(f"the body is not JSON: {exc}") from exc
        texts = obj.get("disclosures") if isinstance(obj, dict) else None
        if not isinstance(texts, list) or not 1 <= len(texts) <= _MAX_DISCLOSURES:
            raise MalformedError(f"the body is {{disclosures: [1-{_MAX_DISCLOSURES} strings]}}")
        if index >= led.size:
            raise NotFoundError(f"the log has {led.size} entries")
        kept = await run_in_threadpool(led.disclosures.accept, index, texts)
        return {"index": index, "kept": kept}

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
        return Response(ctx.tlog_proof(index).to_text(), media_type="text/plain; charset=utf-8")

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
_MAX_DISCLOSURES = 16  # disclosures in one hand-over: more than any type has fields


def _published_size(ctx: ServerContext) -> int:
    """Tiles are served up to the latest checkpoint, as a static mirror would."""
    return ctx.checkpoint()[0].size
