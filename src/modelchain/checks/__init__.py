"""Off-ledger evidence that validators and evaluators sign and submit as attestations:
data-quality checks and model evaluations, each a deterministic JSON object."""

from __future__ import annotations

from .evaluation import METRICS, evaluate_sklearn, evaluate_torch, metrics_agree
from .quality import SCHEMA_TYPES, Check, run_quality_checks

__all__ = [
    "METRICS",
    "SCHEMA_TYPES",
    "Check",
    "evaluate_sklearn",
    "evaluate_torch",
    "metrics_agree",
    "run_quality_checks",
]
