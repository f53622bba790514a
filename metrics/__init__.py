"""Ranking metrics over the full catalogue, a streaming evaluator and statistics.

numpy/scipy, and numba for the compiled ranking kernels (:mod:`metrics._compiled`).
"""

from metrics import beyond as _beyond  # noqa: F401  (registers coverage and popularity)
from metrics.evaluator import Evaluator, summarize
from metrics.ranking import (
    TIE_POLICIES,
    average_precision_at_k,
    evaluate,
    evaluated_rows,
    hit_rate_at_k,
    metric_columns,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    roc_auc,
    warm_up,
)
from metrics.registry import METRICS, Metric, MetricInputs, MetricRegistry, default_metrics
from metrics.stats import CI, PairedComparison, holm, mean_ci, paired_comparison

__all__ = [
    "CI",
    "METRICS",
    "TIE_POLICIES",
    "Evaluator",
    "Metric",
    "MetricInputs",
    "MetricRegistry",
    "PairedComparison",
    "average_precision_at_k",
    "default_metrics",
    "evaluate",
    "evaluated_rows",
    "hit_rate_at_k",
    "holm",
    "mean_ci",
    "metric_columns",
    "ndcg_at_k",
    "paired_comparison",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "roc_auc",
    "summarize",
    "warm_up",
]
