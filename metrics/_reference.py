"""Today's (pre-issue-18) ranking pass, frozen as the reference for tests and benchmarks.

Not part of the public API and never used by the library: :func:`reference_evaluate`
is :func:`metrics.ranking.evaluate` with the ranking pass as it was before the
counting kernel (two comparison passes per positive tie group, or a full sort
of the row). The metric formulas are shared with :mod:`metrics.ranking`, so any
difference between the two comes from the ranking pass alone.
:func:`reference_topk_inclusion` is the dense top-k inclusion of the beyond-accuracy
metrics as it was before their sparse pass (a float64 copy, a partition and dense
masks per cut-off); :func:`reference_topk_entries` gives it the sparse pass's form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from metrics.ranking import (
    _as_scores,
    _check_finite_scores,
    _check_ks,
    _check_ties,
    _check_user_ids,
    _csr_parts,
    _frame,
    _metric_values,
    _positive_entries,
    _Ranked,
)

__all__ = [
    "reference_evaluate",
    "reference_rank",
    "reference_topk_entries",
    "reference_topk_inclusion",
]


def _lane_layout(num_items: int) -> tuple[int, int]:
    """Padded width for :func:`_count_true`: ``chunks * words`` uint64 words per row.

    Each word packs 8 booleans (bytes); summing at most 255 words per chunk
    keeps every byte lane below 256, so the lanes never carry into each other.
    """
    total_words = -(-num_items // 8)
    chunks = -(-total_words // 255)
    words = -(-total_words // chunks)
    return chunks, words


def _count_true(mask: np.ndarray, chunks: int, words: int) -> np.ndarray:
    """Row sums of a C-contiguous boolean ``(n, chunks * words * 8)`` array.

    Adds the rows as uint64 words (8 byte lanes at a time, no carry, see
    :func:`_lane_layout`) and then adds the lanes: several times faster than
    ``mask.sum(axis=1)``.
    """
    n = mask.shape[0]
    lanes = np.add.reduce(mask.view(np.uint64).reshape(n, chunks, words), axis=2)
    return lanes.view(np.uint8).reshape(n, chunks * 8).sum(axis=1, dtype=np.int64)


def _count_below(
    flat: np.ndarray, base: np.ndarray, query: np.ndarray, width: int, *, strict: bool
) -> np.ndarray:
    """Vectorised binary search: per query, how many of its sorted row are < (or <=) it."""
    lo = np.zeros(query.shape[0], dtype=np.int64)
    hi = np.full(query.shape[0], width, dtype=np.int64)
    for _ in range(int(width).bit_length()):
        active = lo < hi
        mid = (lo + hi) >> 1
        values = flat[base + np.minimum(mid, width - 1)]
        go_right = (values < query) if strict else (values <= query)
        go_right &= active
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
    return lo


# Rows with at least this many positive tie groups are sorted (O(n log n)) instead of
# compared once per group (O(n) each, but several times cheaper per element than a
# sort). None: measured break-even, about max(16, num_items / 280) on 2 cores (AVX-512).
_SORT_MIN_GROUPS: int | None = None
# Target size of a tile of score rows in the comparison kernel (stays in cache).
_TILE_BYTES = 2 << 20


def _gather_rows(
    scores: np.ndarray,
    rows: np.ndarray,
    out: np.ndarray,
    e_indptr: np.ndarray,
    e_cols: np.ndarray,
    user_ids: np.ndarray | None,
) -> None:
    """Copy ``scores[rows]`` into ``out[:, :num_items]`` and sink excluded items to -inf."""
    num_items = scores.shape[1]
    body = out[:, :num_items]
    body[...] = scores[rows]
    if np.issubdtype(scores.dtype, np.floating) and not np.isfinite(body).all():
        _check_finite_scores(scores, user_ids)
    lengths = e_indptr[rows + 1] - e_indptr[rows]
    total = int(lengths.sum())
    if total:
        offsets = np.cumsum(lengths) - lengths
        index = np.arange(total) - np.repeat(offsets - e_indptr[rows], lengths)
        out[np.repeat(np.arange(rows.size), lengths), e_cols[index]] = -np.inf


def _above_and_tied(
    scores: np.ndarray,
    rows: np.ndarray,
    row_groups: np.ndarray,
    group_row: np.ndarray,
    group_slot: np.ndarray,
    group_score: np.ndarray,
    e_indptr: np.ndarray,
    e_cols: np.ndarray,
    work_dtype: np.dtype,
    user_ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per positive tie group: candidates with a strictly greater, and with an equal, score.

    ``rows`` are the score rows to rank, ordered by ``row_groups`` (their
    number of positive tie groups, non-decreasing); groups are given by
    position in ``rows`` (``group_row``, non-decreasing), slot within the row
    and score. Rows are copied tile by tile into a cache-sized buffer where
    excluded items (and the padding) are -inf, so they are never above and
    never tied. Light rows compare the tile once per group score (two
    vectorised passes per group, counted with :func:`_count_true`); rows with
    at least ``_SORT_MIN_GROUPS`` groups (default ``max(16, num_items // 280)``)
    are sorted once and binary-searched.
    """
    num_items = scores.shape[1]
    n_work = rows.size
    above = np.zeros(group_row.shape[0], dtype=np.int64)
    tied = np.zeros(group_row.shape[0], dtype=np.int64)
    threshold = max(16, num_items // 280) if _SORT_MIN_GROUPS is None else _SORT_MIN_GROUPS
    heavy_from = int(np.searchsorted(row_groups, threshold, side="left"))
    # Groups are ordered by (row, slot), so a slice of rows is a slice of groups.
    row_start = np.searchsorted(group_row, np.arange(n_work + 1), side="left")

    tile_rows = 1
    if heavy_from:
        chunks, words = _lane_layout(num_items)
        width = chunks * words * 8
        tile_rows = min(heavy_from, max(1, _TILE_BYTES // (width * np.dtype(work_dtype).itemsize)))
        tile_buffer = np.full((tile_rows, width), -np.inf, dtype=work_dtype)
        mask_buffer = np.empty((tile_rows, width), dtype=bool)
    for lo in range(0, heavy_from, tile_rows):
        hi = min(lo + tile_rows, heavy_from)
        tile = tile_buffer[: hi - lo]
        mask = mask_buffer[: hi - lo]
        _gather_rows(scores, rows[lo:hi], tile, e_indptr, e_cols, user_ids)
        g_lo, g_hi = row_start[lo], row_start[hi]
        n_slots = int(row_groups[hi - 1])
        thresholds = np.full((hi - lo, n_slots), np.inf, dtype=work_dtype)
        local = group_row[g_lo:g_hi] - lo
        slot = group_slot[g_lo:g_hi]
        thresholds[local, slot] = group_score[g_lo:g_hi]
        n_above = np.empty((hi - lo, n_slots), dtype=np.int64)
        n_tied = np.empty((hi - lo, n_slots), dtype=np.int64)
        for j in range(n_slots):
            column = thresholds[:, j : j + 1]
            np.greater(tile, column, out=mask)
            n_above[:, j] = _count_true(mask, chunks, words)
            np.equal(tile, column, out=mask)
            n_tied[:, j] = _count_true(mask, chunks, words)
        above[g_lo:g_hi] = n_above[local, slot]
        tied[g_lo:g_hi] = n_tied[local, slot]

    if heavy_from < n_work:
        heavy = np.empty((n_work - heavy_from, num_items), dtype=work_dtype)
        _gather_rows(scores, rows[heavy_from:], heavy, e_indptr, e_cols, user_ids)
        heavy.sort(axis=1)
        g_lo = row_start[heavy_from]
        base = (group_row[g_lo:] - heavy_from) * num_items
        query = group_score[g_lo:]
        flat = heavy.reshape(-1)
        below = _count_below(flat, base, query, num_items, strict=True)
        below_or_equal = _count_below(flat, base, query, num_items, strict=False)
        above[g_lo:] = num_items - below_or_equal
        tied[g_lo:] = below_or_equal - below
    return above, tied


def reference_rank(
    scores: Any,
    test: Any,
    exclude: Any,
    ties: str,
    user_ids: Any = None,
) -> _Ranked:
    """Validate the inputs and find, for every positive tie group, its place in the ranking.

    Cost per evaluated row: either two vectorised comparison passes over the
    row per positive tie group (few groups), or one sort (many groups); see
    :func:`_above_and_tied`. Nothing depends on ``k``.
    """
    ties = _check_ties(ties)
    scores = _as_scores(scores)
    n_rows, num_items = scores.shape
    user_ids = _check_user_ids(user_ids, n_rows)
    t_indptr, t_cols = _csr_parts(test, "test", scores.shape)
    if exclude is None:
        e_indptr = np.zeros(n_rows + 1, dtype=np.int64)
        e_cols = np.zeros(0, dtype=np.int64)
    else:
        e_indptr, e_cols = _csr_parts(exclude, "exclude", scores.shape)

    p_rows, p_cols = _positive_entries(t_indptr, t_cols, e_indptr, e_cols, num_items)
    num_pos_all = np.bincount(p_rows, minlength=n_rows)
    rows = np.flatnonzero(num_pos_all)
    n_eval = rows.size
    if n_eval < n_rows:
        # Evaluated rows are checked as they are copied; check the others here.
        _check_finite_scores(scores, user_ids)
    row_map = np.full(n_rows, -1, dtype=np.int64)
    row_map[rows] = np.arange(n_eval)

    # Positive tie groups: positives ordered by row, then by decreasing score.
    work_dtype = np.result_type(scores.dtype, np.float32)
    q = scores[p_rows, p_cols].astype(work_dtype, copy=False)
    order = np.lexsort((-q, p_rows))
    q, p_rows = q[order], p_rows[order]
    n_positives = q.shape[0]
    starts = np.ones(n_positives, dtype=bool)
    starts[1:] = (p_rows[1:] != p_rows[:-1]) | (q[1:] != q[:-1])
    group_first = np.flatnonzero(starts)
    pos = np.diff(np.append(group_first, n_positives)).astype(np.float64)
    g_rows = p_rows[group_first]
    row_first_positive = np.searchsorted(p_rows, g_rows, side="left")
    pos_above = (group_first - row_first_positive).astype(np.float64)
    owner = row_map[g_rows]
    first = np.flatnonzero(np.diff(owner, prepend=-1))
    row_groups = np.bincount(owner, minlength=n_eval)
    slot = np.arange(owner.size) - first[owner]

    # Rows ordered by number of groups, so that the kernel tiles rows of similar cost.
    by_cost = np.argsort(row_groups, kind="stable")
    position = np.empty(n_eval, dtype=np.int64)
    position[by_cost] = np.arange(n_eval)
    group_position = position[owner]
    group_order = np.lexsort((slot, group_position))
    above_sorted, tied_sorted = _above_and_tied(
        scores,
        rows[by_cost],
        row_groups[by_cost],
        group_position[group_order],
        slot[group_order],
        q[group_first][group_order],
        e_indptr,
        e_cols,
        work_dtype,
        user_ids,
    )
    above = np.empty(owner.size, dtype=np.float64)
    size = np.empty(owner.size, dtype=np.float64)
    above[group_order] = above_sorted
    size[group_order] = tied_sorted
    if ties == "pessimistic":
        above = above + (size - pos)
        size = pos.copy()

    num_cand = (num_items - np.diff(e_indptr)[rows]).astype(np.float64)
    return _Ranked(
        rows=rows,
        num_pos=num_pos_all[rows].astype(np.float64),
        num_cand=num_cand,
        first=first,
        owner=owner,
        above=above,
        size=size,
        pos=pos,
        pos_above=pos_above,
    )


def reference_evaluate(
    scores: Any,
    test: Any,
    exclude: Any = None,
    *,
    ks: Sequence[int] = (5, 10, 20),
    ties: str = "expected",
    user_ids: Any = None,
) -> pd.DataFrame:
    """:func:`metrics.ranking.evaluate` computed with the reference ranking pass.

    Parameters and result are those of :func:`metrics.ranking.evaluate`.
    """
    ks = _check_ks(ks)
    ties = _check_ties(ties)
    ranked = reference_rank(scores, test, exclude, ties, user_ids)
    labels = ranked.rows if user_ids is None else np.asarray(user_ids)[ranked.rows]
    return _frame(labels, _metric_values(ranked, ks), ks, ties)


def reference_topk_inclusion(
    scores: np.ndarray, test: Any, exclude: Any, k: int, ties: str = "expected"
) -> np.ndarray:
    """:func:`metrics.beyond.topk_inclusion` as it was before the sparse pass (dense, per k).

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


def reference_topk_entries(scores, test, exclude, ks, ties="expected"):
    """:func:`metrics.beyond.topk_entries` computed through :func:`reference_topk_inclusion`."""
    out = {}
    for k in ks:
        weights = reference_topk_inclusion(scores, test, exclude, int(k), ties)
        rows, cols = np.nonzero(weights)
        out[int(k)] = (rows, cols, weights[rows, cols])
    return out
