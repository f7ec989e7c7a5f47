"""The HTTP node service (``modelchain serve``): API, tiles, dashboard.

Needs the ``server`` extra (FastAPI, uvicorn). ``create_app`` and
``ServerConfig`` are imported on first use, so that the CLI can read the
token constants of ``modelchain.server.access`` without FastAPI installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
