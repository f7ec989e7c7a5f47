"""Operations: liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from ..context import ServerContext
from ..errors import error_body

__all__ = ["ops_router"]


def ops_router(ctx: ServerContext) -> APIRouter:
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
        "/cluster/status",
        summary="This cluster node: size, root, applied order, latest final checkpoint, faults",
        responses={404: {"description": "This node is not part of a cluster"}},
    )
    def cluster_status(request: Request) -> Response:
        ctx.reader(request)
        status = ctx.ledger.node.cluster_status()
        if status is None:
            body = error_body("not_found", "this node is not part of a cluster")
            return JSONResponse(body, 404)
        return JSONResponse(status)

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
