"""Beyond-accuracy metrics: catalogue coverage@k and the popularity of what is recommended.

Both read which items are in a user's top ``k`` among the candidates. Under
the tie policy ``"expected"`` an item tied at the cut-off (with ``r`` of the
group's ``g`` ranks inside the top ``k``) is in the list with probability
``r / g``; under ``"pessimistic"`` the group's negatives take the slots first.
Every value is therefore an exact expectation, like the accuracy metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metrics import ranking as _ranking  # noqa: F401  (its metrics come first in column order)
from metrics.registry import METRICS, Metric, MetricInputs

__all__ = ["catalogue_coverage", "mean_popularity", "topk_inclusion"]


def topk_inclusion(
    scores: np.ndarray, test: Any, exclude: Any, k: int, ties: str = "expected"
) -> np.ndarray:
    """Probability that each item is in each row's top ``k`` candidates.

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
    test, exclude : scipy.sparse.csr_matrix of bool, shape (n_rows, num_items)
        Test positives (used by the pessimistic policy) and excluded items
        (``exclude`` may be ``None``).
    k : int
        Cut-off (a row with fewer candidates recommends all of them).
    ties : {"expected", "pessimistic"}

    Returns
    -------
    numpy.ndarray of float64, shape (n_rows, num_items)
        Row sums are ``min(k, candidates)``; excluded items get 0.
    """
    s = np.array(scores, dtype=np.float64)
    n_rows, num_items = s.shape
    candidate = np.ones(s.shape, dtype=bool)
    if exclude is not None and exclude.nnz:
        rows, cols = exclude.nonzero()
        candidate[rows, cols] = False
    s[~candidate] = -np.inf
    kk = min(k, num_items)
    kth = -np.partition(-s, kk - 1, axis=1)[:, kk - 1] if num_items else np.zeros(n_rows)
    above = s > kth[:, None]
    tied = (s == kth[:, None]) & candidate
    slots = np.minimum(k, candidate.sum(axis=1)) - above.sum(axis=1)
    weights = above.astype(np.float64)
    if ties == "pessimistic":
        positive = test.toarray().astype(bool)
        groups = [(tied & ~positive), (tied & positive)]
    else:
        groups = [tied]
    for group in groups:
        size = group.sum(axis=1)
        take = np.minimum(slots, size)
        share = np.zeros(n_rows)
        np.divide(take, size, out=share, where=size > 0)
        weights += group * share[:, None]
        slots = slots - take
    return weights


def _inclusion(inputs: MetricInputs, k: int) -> np.ndarray:
    def compute() -> np.ndarray:
        rows = inputs.ranked.rows
        exclude = None if inputs.exclude is None else inputs.exclude[rows]
        return topk_inclusion(inputs.scores[rows], inputs.test[rows], exclude, k, inputs.ties)

    return inputs.memo(("inclusion", k), compute)


def mean_popularity(inputs: MetricInputs, k: int | None) -> np.ndarray:
    """Per user: mean train popularity (share of users) of the items in the top ``k``.

    Higher means more mainstream recommendations; the popularity model scores
    the maximum possible for its ``k``.
    """
    weights = _inclusion(inputs, int(k))
    listed = weights.sum(axis=1)
    out = np.full(listed.shape, np.nan)
    np.divide(weights @ inputs.item_popularity, listed, out=out, where=listed > 0)
    return out


def catalogue_coverage(inputs: MetricInputs, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Block partial of coverage@k: per item, ``(certainly listed, sum of log P(not listed))``."""
    weights = np.minimum(_inclusion(inputs, int(k)), 1.0)
    certain = (weights >= 1.0).any(axis=0)
    log_miss = np.log1p(-np.where(weights >= 1.0, 0.0, weights)).sum(axis=0)
    return certain, log_miss


def _combine_coverage(partials: Sequence[tuple[np.ndarray, np.ndarray]], num_items: int) -> float:
    """Expected share of the catalogue in at least one evaluated user's top ``k``."""
    if not partials or num_items == 0:
        return float("nan")
    certain = np.logical_or.reduce([p[0] for p in partials])
    log_miss = np.sum([p[1] for p in partials], axis=0)
    listed = np.where(certain, 1.0, -np.expm1(log_miss))
    return float(listed.sum() / num_items)


METRICS.register(
    Metric(
        "coverage",
        catalogue_coverage,
        at_k=True,
        scope="catalogue",
        combine=_combine_coverage,
        kind="beyond",
        description="share of the catalogue in at least one evaluated user's top k (one value "
        "per run)",
    )
)
METRICS.register(
    Metric(
        "popularity",
        mean_popularity,
        at_k=True,
        needs=("item_popularity",),
        higher_is_better=False,
        kind="beyond",
        gated=False,
        description="mean train popularity (share of users) of the items in the top k; lower "
        "= less mainstream (descriptive, not gated)",
    )
)
