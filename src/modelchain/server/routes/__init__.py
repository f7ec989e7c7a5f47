"""The API's routes by area: the log (``log``), registry and governance state
(``registry``), operations (``ops``), integrations (``integrations``: MLflow's
webhooks, mounted only when configured). The dashboard's are in ``server.dashboard``."""

from .integrations import mlflow_router
from .log import log_router
from .ops import ops_router
from .registry import registry_router

__all__ = ["log_router", "mlflow_router", "ops_router", "registry_router"]
