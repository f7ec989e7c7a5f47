"""The ledger node over HTTP: the application factory.

Writes are DSSE envelopes (the signature authenticates them); reads are open
or need a member's bearer token. The log is also served at the C2SP
tlog-tiles paths so that standard tile clients and mirrors can follow it.
Routes live in ``routes/`` (the API) and ``dashboard/`` (``/ui/``); errors map
to HTTP statuses in ``errors`` and only there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from .. import __version__
from ..ledger.ledger import Ledger
from .config import ServerConfig
from .context import ServerContext
from .dashboard import dashboard_router
from .errors import ERROR_RESPONSES, add_error_handlers
from .middleware import Limits
from .routes import log_router, mlflow_router, ops_router, registry_router
from .routes.integrations import MlflowReceiver

__all__ = ["create_app"]


def create_app(ledger: Ledger, config: ServerConfig | None = None) -> FastAPI:
    """The node's HTTP application over an open, writable ``ledger``."""
    ctx = ServerContext(ledger, config or ServerConfig())
    hook = ctx.config.mlflow
    receiver = None if hook is None else MlflowReceiver(ctx, hook)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if receiver is not None:  # before the ledger closes: finish what is being recorded
            await asyncio.to_thread(receiver.stop, 30.0)

    app = FastAPI(
        title="modelchain node",
        version=__version__,
        description=(
            "A verifiable provenance ledger for ML models and datasets. Writes are DSSE "
            "envelopes; reads need a bearer token unless the ledger's reads are open. The "
            "log is also served at the C2SP tlog-tiles paths (/checkpoint, /tile/...)."
        ),
        responses=ERROR_RESPONSES,  # type: ignore[arg-type]
        # FastAPI's /docs and /redoc load unpinned scripts from a CDN onto this
        # origin, where a dashboard cookie can read the ledger: off. The OpenAPI
        # document stays at /openapi.json for any viewer.
        docs_url=None,
        redoc_url=None,
        # Starlette's trailing-slash redirect builds an absolute URL from the Host
        # header, so a forged Host would send the client elsewhere: paths are exact.
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    add_error_handlers(app)
    app.include_router(log_router(ctx))
    app.include_router(registry_router(ctx))
    app.include_router(ops_router(ctx))
    if hook is not None and receiver is not None:
        app.include_router(mlflow_router(hook, receiver))
    app.include_router(dashboard_router(ctx))

    @app.get("/", include_in_schema=False)
    def _home() -> RedirectResponse:
        return RedirectResponse("/ui/", 303)

    app.add_middleware(Limits, ctx=ctx)
    return app
