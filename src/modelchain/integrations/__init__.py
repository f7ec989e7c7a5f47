"""Bridges to the tools ML teams already run: the MLflow model registry
(``integrations.mlflow``) and training loops (``integrations.transformers``,
``integrations.lightning``). Each needs its extra (``pip install
modelchain[mlflow]``, ``[transformers]``, ``[lightning]``) and imports it only
when used, so ``import modelchain`` stays fast without them.

They sit beside ``guard`` in the API layer: they use a ``Ledger`` (embedded or
remote) and never reach below it.
"""

from __future__ import annotations

__all__: list[str] = []
