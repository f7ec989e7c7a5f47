"""The API's routes by area: the log (``log``), registry and governance state
(``registry``), operations (``ops``). The dashboard's are in ``server.dashboard``."""

from .log import log_router
from .ops import ops_router
from .registry import registry_router

__all__ = ["log_router", "ops_router", "registry_router"]
