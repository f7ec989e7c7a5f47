"""The HTTP node service (``modelchain serve``): API, tiles, dashboard.

Needs the ``server`` extra (FastAPI, uvicorn). ``create_app`` and
``ServerConfig`` are imported on first use, so that the CLI can read the
token constants of ``modelchain.server.access`` without FastAPI installed.

Layout: ``app`` (the factory), ``config``, ``context`` (what routes share),
``errors`` (errors as HTTP statuses), ``middleware``, ``routes/`` (the API by
area), ``dashboard/`` (``/ui/``), ``access`` (bearer tokens), ``metrics``,
``queries``, ``lineage`` (the SVG), ``connections`` (uvicorn's protocols).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerConfig":
        from .config import ServerConfig

        return ServerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
