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

from metrics import ranking as _ranking
from metrics.registry import METRICS, Margin, Metric, MetricInputs

__all__ = ["catalogue_coverage", "mean_popularity", "topk_entries", "topk_inclusion"]


def _top_candidates(
    scores: np.ndarray, exclude: Any, k_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate whose score may reach a row's top ``k_max``, by row then decreasing score.

    With the compiled kernel (see ``metrics.ranking._KERNEL``) one pass per row
    keeps exactly the candidates at or above the row's ``k_max``-th largest
    candidate score (:func:`metrics._compiled.top_candidate_rows`); rows with
    heavy ties at that threshold, and the numpy kernel, use the bound below.
    Either way every entry that can be in a top ``k <= k_max`` is kept, in the
    same order, so :func:`topk_entries` gives the same result.

    Returns
    -------
    rows, cols, values : numpy.ndarray
        Kept entries (values in the working dtype; excluded ones are -inf).
    start : numpy.ndarray of int64, shape (n_rows + 1,)
        Entry offsets of each row.
    candidates : numpy.ndarray of int64, shape (n_rows,)
        Candidates per row (items not excluded).
    """
    if _ranking._kernel() == "compiled" and k_max >= 1:
        return _top_candidates_compiled(scores, exclude, k_max)
    return _top_candidates_numpy(scores, exclude, k_max)


# Entries a row may keep in the compiled selection before it falls back to the bound
# (per row: this many times k_max, plus a margin for small ties).
_COMPILED_CAP_FACTOR = 4


def _top_candidates_compiled(
    scores: np.ndarray, exclude: Any, k_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from metrics._compiled import top_candidate_rows

    operand = _ranking._compiled_operand(scores, np.result_type(scores.dtype, np.float32))
    n_rows, num_items = operand.shape
    if exclude is not None and exclude.nnz:
        e = exclude.tocsr()
        if not e.has_canonical_format:
            e = e.copy()
            e.sum_duplicates()
        e_indptr = e.indptr.astype(np.int64, copy=False)
        e_cols = e.indices.astype(np.int64, copy=False)
    else:
        e_indptr = np.zeros(n_rows + 1, dtype=np.int64)
        e_cols = np.zeros(0, dtype=np.int64)
    candidates = num_items - np.diff(e_indptr)
    cap = _COMPILED_CAP_FACTOR * k_max + 16
    out_cols = np.empty(n_rows * cap, dtype=np.int64)
    out_values = np.empty(n_rows * cap, dtype=operand.dtype)
    kept = np.zeros(n_rows, dtype=np.int64)
    tile_rows = _ranking._COMPILED_TILE_ROWS

    def run(lo: int) -> None:
        hi = min(lo + tile_rows, n_rows)
        top_candidate_rows(
            operand[lo:hi],
            e_indptr[lo : hi + 1],
            e_cols,
            k_max,
            cap,
            out_cols[lo * cap : hi * cap],
            out_values[lo * cap : hi * cap],
            kept[lo:hi],
        )

    _ranking._run_tiles(run, list(range(0, n_rows, tile_rows)))
    heavy = np.flatnonzero(kept > cap)
    counts = kept.copy()
    if heavy.size:
        _, h_cols, h_values, h_start, _ = _top_candidates_numpy(
            operand[heavy], None if exclude is None else exclude[heavy], k_max
        )
        counts[heavy] = np.diff(h_start)
    start = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    total = int(start[-1])
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    cols = np.empty(total, dtype=np.int64)
    values = np.empty(total, dtype=operand.dtype)
    light = kept <= cap
    light_counts = np.where(light, counts, 0)
    at = np.repeat(np.arange(n_rows, dtype=np.int64) * cap - start[:-1], light_counts)
    into = np.flatnonzero(light[rows])
    cols[into] = out_cols[at + into]
    values[into] = out_values[at + into]
    if heavy.size:
        into = np.flatnonzero(~light[rows])
        cols[into] = h_cols
        values[into] = h_values
    return rows, cols, values, start, candidates


def _top_candidates_numpy(
    scores: np.ndarray, exclude: Any, k_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bound of :func:`_top_candidates` in numpy.

    Excluded items are -inf in a working copy. The bound: split the columns
    into ``k_max`` chunks; the smallest chunk maximum is at most the row's
    ``k_max``-th largest value (the chunk maxima are ``k_max`` distinct
    entries), so every entry at or above any cut-off ``k <= k_max`` -- the
    whole tie group at the cut-off included -- is kept, and a row typically
    keeps a few times ``k_max`` entries instead of the whole catalogue.
    Returns what :func:`_top_candidates` does.
    """
    work = np.array(scores, dtype=np.result_type(scores.dtype, np.float32))
    n_rows, num_items = work.shape
    excluded = np.zeros(n_rows, dtype=np.int64)
    if exclude is not None and exclude.nnz:
        e = exclude.tocsr()
        excluded = np.diff(e.indptr).astype(np.int64)
        e_rows = np.repeat(np.arange(n_rows, dtype=np.int64), excluded)
        work.reshape(-1)[e_rows * num_items + e.indices] = -np.inf
    candidates = num_items - excluded
    chunks = max(1, min(k_max, num_items))
    if num_items == 0 or n_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, work.reshape(-1)[:0], np.zeros(n_rows + 1, np.int64), candidates
    width = num_items // chunks
    maxima = work[:, : chunks * width].reshape(n_rows, chunks, width).max(axis=2)
    if chunks * width < num_items:
        np.maximum(maxima[:, -1], work[:, chunks * width :].max(axis=1), out=maxima[:, -1])
    bound = maxima.min(axis=1)
    if np.isnan(bound).any():
        row = int(np.flatnonzero(np.isnan(bound))[0])
        raise ValueError(f"scores must be finite: row {row} has NaN")
    rows, cols = np.nonzero(work >= bound[:, None])
    values = work[rows, cols]
    order = _ranking._by_row_then_decreasing(rows, values)
    rows, cols, values = rows[order], cols[order], values[order]
    start = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=start[1:])
    return rows, cols, values, start, candidates


def topk_entries(
    scores: np.ndarray,
    test: Any,
    exclude: Any,
    ks: Sequence[int],
    ties: str = "expected",
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per cut-off: the items of each row's top ``k`` candidates and their probability.

    One selection pass serves every ``k`` (see :func:`_top_candidates`); the
    probabilities are those of :func:`topk_inclusion`. Scores must be finite
    (:func:`metrics.evaluate` and the Evaluator check them before any metric;
    -inf marks excluded items here).

    Returns
    -------
    dict
        ``{k: (rows, cols, weights)}``: the (row, item) pairs with a positive
        probability of being in the row's top ``k`` (``weights`` in (0, 1]).
    """
    ks = tuple(int(k) for k in ks)
    rows, cols, values, start, candidates = _top_candidates(scores, exclude, max(ks))
    out = {}
    positive = np.zeros(rows.size, dtype=bool)
    if ties == "pessimistic" and rows.size:
        t = test.tocsr()
        t_keys = np.repeat(np.arange(t.shape[0], dtype=np.int64), np.diff(t.indptr))
        t_keys = np.sort(t_keys * t.shape[1] + t.indices)
        positive = np.isin(rows * scores.shape[1] + cols, t_keys, assume_unique=False)
    n_rows = start.size - 1
    for k in ks:
        listed = np.minimum(k, candidates)  # a row with fewer candidates lists them all
        has = listed > 0
        cut = np.full(n_rows, np.nan, dtype=values.dtype)  # NaN: nothing compares equal
        cut[has] = values[start[:-1][has] + listed[has] - 1]
        row_cut = cut[rows]
        above = values > row_cut
        tied = values == row_cut
        slots = (listed - np.bincount(rows, weights=above, minlength=n_rows)).astype(np.float64)
        weights = above.astype(np.float64)
        groups = [tied & ~positive, tied & positive] if ties == "pessimistic" else [tied]
        for group in groups:
            size = np.bincount(rows, weights=group, minlength=n_rows)
            take = np.minimum(slots, size)
            share = np.zeros(n_rows)
            np.divide(take, size, out=share, where=size > 0)
            weights[group] = share[rows[group]]
            slots = slots - take
        keep = weights > 0
        out[k] = (rows[keep], cols[keep], weights[keep])
    return out


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
        Row sums are ``min(k, candidates)``; excluded items get 0. The metrics
        use the sparse :func:`topk_entries`; this dense form is for readers.
    """
    scores = np.asarray(scores)
    if scores.size and not np.isfinite(scores).all():
        raise ValueError("scores must be finite (NaN or inf found)")
    rows, cols, weights = topk_entries(scores, test, exclude, (int(k),), ties)[int(k)]
    out = np.zeros(scores.shape, dtype=np.float64)
    out[rows, cols] = weights
    return out


def _inclusion(inputs: MetricInputs, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, weights)`` of the evaluated rows at cut-off ``k`` (one pass for all ks)."""
    ks = tuple(sorted(set(inputs.ks) | {int(k)}))

    def compute() -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rows = inputs.ranked.rows
        scores, test, exclude = inputs.scores, inputs.test, inputs.exclude
        if rows.size != scores.shape[0]:  # else every row is evaluated: no copies
            scores, test = scores[rows], test[rows]
            exclude = None if exclude is None else exclude[rows]
        return topk_entries(scores, test, exclude, ks, inputs.ties)

    entries = inputs.memo(("inclusion", ks), compute)
    return entries[int(k)]


def mean_popularity(inputs: MetricInputs, k: int | None) -> np.ndarray:
    """Per user: mean train popularity (share of users) of the items in the top ``k``.

    Higher means more mainstream recommendations; the popularity model scores
    the maximum possible for its ``k``.
    """
    rows, cols, weights = _inclusion(inputs, int(k))
    n_rows = inputs.ranked.rows.size
    listed = np.bincount(rows, weights=weights, minlength=n_rows)
    total = np.bincount(rows, weights=weights * inputs.item_popularity[cols], minlength=n_rows)
    out = np.full(listed.shape, np.nan)
    np.divide(total, listed, out=out, where=listed > 0)
    return out


def catalogue_coverage(inputs: MetricInputs, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Block partial of coverage@k: per item, ``(certainly listed, sum of log P(not listed))``."""
    _, cols, weights = _inclusion(inputs, int(k))
    num_items = inputs.scores.shape[1]
    sure = weights >= 1.0
    certain = np.zeros(num_items, dtype=bool)
    certain[cols[sure]] = True
    log_miss = np.bincount(cols[~sure], weights=np.log1p(-weights[~sure]), minlength=num_items)
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
        family="catalogue",
        # One value per run, no per-user rows: the floor of its seed-spread tolerance.
        margin=Margin(0.10, relative=True),
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
        family="descriptive",
        description="mean train popularity (share of users) of the items in the top k; lower "
        "= less mainstream (descriptive, not gated)",
    )
)
