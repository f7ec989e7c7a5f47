"""Off-ledger evidence that validators and evaluators sign and submit as attestations:
data-quality checks and model evaluations, each a deterministic JSON object."""

from __future__ import annotations

from .evaluation import (
    METRICS,
    evaluate_entry,
    evaluate_sklearn,
    evaluate_torch,
    load_entry_point,
    metrics_agree,
    model_file_in,
)
from .quality import SCHEMA_TYPES, Check, run_quality_checks

__all__ = [
    "METRICS",
    "SCHEMA_TYPES",
    "Check",
    "evaluate_entry",
    "evaluate_sklearn",
    "evaluate_torch",
    "load_entry_point",
    "metrics_agree",
    "model_file_in",
    "run_quality_checks",
]
