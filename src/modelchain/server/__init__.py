"""The HTTP node service (``modelchain serve``): API, tiles, dashboard.

Needs the ``server`` extra (FastAPI, uvicorn)."""

from .app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
