"""Per-user ranking metrics over the full catalogue, with one exact tie policy for all of them.

Conventions shared by every function of this module
----------------------------------------------------
Inputs
    ``scores`` is a real array of shape ``(n_rows, num_items)`` (one row per
    user of the block; higher means more relevant). ``test`` and ``exclude``
    are boolean (or 0/1) :mod:`scipy.sparse` matrices of the same shape: the
    test positives, and the items removed from the candidate set (by default a
    user's train positives). ``exclude=None`` removes nothing. Other sparse
    formats are converted to CSR; dense arrays, or stored values other than
    0/1, raise. Explicit zeros and duplicate entries are ignored.
Candidates and evaluated users
    The candidates of a row are all catalogue items not excluded (``n_cand``
    of them). Its positives are the test items that are candidates
    (``n_pos``); excluded test items are dropped. A row is *evaluated* when
    ``n_pos >= 1`` (see :func:`evaluated_rows`). Every metric returns a
    float64 array with one value per evaluated row, in row order.
Scores
    Every score must be finite (excluded items included): NaN or inf raises
    ``ValueError`` naming the rows (or user ids). Integer and boolean scores
    are ranked as float64 (exact below 2**53); -0.0 and +0.0 tie.
Ties (``ties=``)
    ``"expected"`` (default): the exact expected value of the metric when the
    items of each tie group (candidates with equal scores) are put in a
    uniformly random order. It is computed in closed form, never sampled.
    For AUC it equals the average-rank (trapezoidal) AUC of scikit-learn; a
    constant scorer gets AUC exactly 0.5 and precision@k exactly
    ``n_pos / n_cand`` (for ``k <= n_cand``).
    ``"pessimistic"``: in each tie group the negatives are ranked above the
    positives (positives among themselves are interchangeable). The model is
    never rewarded for a tie.

Notation used in the formulas
    Rank 1 is the top. For a positive tie group (candidates with one score
    that holds ``p >= 1`` positives) let ``a`` be the number of candidates
    with a strictly greater score, ``g`` the size of the group (so it
    occupies ranks ``a+1 .. a+g``) and ``h`` the number of positives ranked
    strictly above it. Under ``"expected"`` each rank of the group holds a
    positive with probability ``p/g``. ``"pessimistic"`` is the same
    computation after replacing ``(a, g)`` by ``(a + g - p, p)``: the group's
    negatives move above it and the group is all positive, so nothing is
    random any more. With ``r = clip(k - a, 0, g)`` ranks of the group in the
    top ``k``, the expected number of hits in the top ``k`` is
    ``sum over groups of r * p / g``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import gammaln

from metrics.registry import METRICS, Margin, Metric, MetricInputs

__all__ = [
    "TIE_POLICIES",
    "average_precision_at_k",
    "evaluate",
    "evaluated_rows",
    "hit_rate_at_k",
    "metric_columns",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "roc_auc",
    "warm_up",
]

TIE_POLICIES = ("expected", "pessimistic")

# Largest ragged array (elements) built at once for the reciprocal-rank expectation.
_RAGGED_CHUNK = 1 << 22


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------
def _check_ties(ties: Any) -> str:
    if not isinstance(ties, str) or ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    return ties


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    return int(k)


def _check_ks(ks: Any) -> tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence | np.ndarray):
        raise ValueError(f"ks must be a sequence of integers >= 1, got {ks!r}")
    out = tuple(_check_k(k, "every k in ks") for k in ks)
    if len(set(out)) != len(out):
        raise ValueError(f"ks must not repeat a value, got {tuple(ks)!r}")
    return out


def _bool_csr(matrix: Any, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """``matrix`` as a canonical boolean CSR (sorted, unique, no explicit zeros).

    Returns ``matrix`` itself (as CSR) when it already is one; otherwise a copy,
    so the caller's matrix is never modified.
    """
    if not sp.issparse(matrix):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (CSR preferred), got {type(matrix).__name__}"
        )
    if tuple(matrix.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {matrix.shape} but scores have shape {shape}")
    if matrix.format == "coo":
        # COO may repeat an entry and tocsr() would sum the repeats (1 + 1 = 2): check
        # the stored values first, then merge repeats as booleans (one positive).
        _check_01(np.asarray(matrix.data), name)
        matrix = sp.coo_matrix(
            (np.asarray(matrix.data) != 0, (matrix.row, matrix.col)), shape=matrix.shape
        )
    csr = matrix.tocsr()
    data = np.asarray(csr.data)
    _check_01(data, name)
    nonzero = data.astype(np.bool_, copy=False)
    if nonzero is data and nonzero.all() and csr.has_canonical_format:
        return csr if isinstance(csr, sp.csr_matrix) else sp.csr_matrix(csr)
    csr = sp.csr_matrix((nonzero, csr.indices, csr.indptr), shape=csr.shape, copy=True)
    csr.eliminate_zeros()
    csr.sum_duplicates()
    return csr


def _check_01(data: np.ndarray, name: str) -> None:
    if data.dtype == np.bool_:
        return
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise TypeError(f"{name} must hold booleans or 0/1 numbers, got dtype {data.dtype}")
    bad = (data != 0) & (data != 1)
    if bad.any():
        raise ValueError(
            f"{name} must be boolean or 0/1; it stores the value {data[bad][0].item()!r} "
            f"({int(bad.sum())} entries are neither 0 nor 1)"
        )


def _csr_parts(matrix: Any, name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (indptr, indices), as int64, of a boolean / 0-1 sparse matrix."""
    csr = _bool_csr(matrix, name, shape)
    return csr.indptr.astype(np.int64, copy=False), csr.indices.astype(np.int64, copy=False)


def _as_scores(scores: Any) -> np.ndarray:
    if sp.issparse(scores):
        raise TypeError("scores must be a dense array, got a scipy.sparse matrix")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_rows, num_items), got shape {scores.shape}")
    if not (
        np.issubdtype(scores.dtype, np.floating)
        or np.issubdtype(scores.dtype, np.integer)
        or scores.dtype == np.bool_
    ):
        raise TypeError(f"scores must be real numbers, got dtype {scores.dtype}")
    return scores


def _describe_rows(rows: np.ndarray, user_ids: np.ndarray | None) -> str:
    labels = rows if user_ids is None else user_ids[rows]
    what = "rows" if user_ids is None else "users"
    shown = ", ".join(str(v) for v in labels[:10].tolist())
    more = f", ... ({rows.size} in total)" if rows.size > 10 else ""
    return f"{what} [{shown}{more}]"


def _check_finite_scores(scores: np.ndarray, user_ids: np.ndarray | None) -> None:
    if np.issubdtype(scores.dtype, np.floating) and not np.isfinite(scores).all():
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
        raise ValueError(
            f"scores contain NaN or inf for {_describe_rows(bad, user_ids)}; every score must "
            "be finite"
        )


def _check_user_ids(user_ids: Any, n_rows: int) -> np.ndarray | None:
    if user_ids is None:
        return None
    user_ids = np.asarray(user_ids)
    if user_ids.shape != (n_rows,):
        raise ValueError(
            f"user_ids must have shape ({n_rows},) (one id per score row), got {user_ids.shape}"
        )
    return user_ids


# ---------------------------------------------------------------------------
# The shared ranking pass
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ranked:
    """Tie groups holding positives, the only thing every metric needs.

    Per evaluated row (length ``n_eval``): ``rows`` (row index), ``num_pos``,
    ``num_cand`` and ``first`` (index of the row's top group). Per positive tie
    group (length ``n_groups``, ordered by row then decreasing score):
    ``owner`` (index into the evaluated rows), ``above`` (``a``), ``size``
    (``g``), ``pos`` (``p``) and ``pos_above`` (``h``), already transformed
    for the tie policy. Counts are float64 so formulas never overflow.
    """

    rows: np.ndarray
    num_pos: np.ndarray
    num_cand: np.ndarray
    first: np.ndarray
    owner: np.ndarray
    above: np.ndarray
    size: np.ndarray
    pos: np.ndarray
    pos_above: np.ndarray


def _positive_entries(
    t_indptr: np.ndarray,
    t_cols: np.ndarray,
    e_indptr: np.ndarray,
    e_cols: np.ndarray,
    num_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the test entries that are not excluded, in CSR order."""
    n_rows = t_indptr.shape[0] - 1
    t_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(t_indptr))
    if e_cols.size and t_cols.size:
        # Both CSRs are canonical, so the (row, col) keys of `exclude` are sorted.
        e_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(e_indptr))
        e_keys = e_rows * num_items + e_cols
        t_keys = t_rows * num_items + t_cols
        at = np.minimum(np.searchsorted(e_keys, t_keys), e_keys.size - 1)
        keep = e_keys[at] != t_keys
        return t_rows[keep], t_cols[keep]
    return t_rows, t_cols


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
    flat: np.ndarray,
    base: np.ndarray,
    query: np.ndarray,
    width: np.ndarray | int,
    *,
    strict: bool,
    descending: bool = False,
) -> np.ndarray:
    """Vectorised binary search in sorted runs of ``flat``, one run per query.

    Query ``i`` searches ``flat[base[i] : base[i] + width[i]]`` (``width`` may be
    one int for all). Ascending runs: how many values are ``<`` (``strict``) or
    ``<=`` the query. Descending runs (``descending=True``): how many are ``>``
    (``strict``) or ``>=`` it.
    """
    width = np.broadcast_to(np.asarray(width, dtype=np.int64), query.shape)
    lo = np.zeros(query.shape[0], dtype=np.int64)
    hi = width.copy()
    steps = int(width.max()).bit_length() if width.size else 0
    for _ in range(steps):
        active = lo < hi
        mid = (lo + hi) >> 1
        values = flat[base + np.minimum(mid, np.maximum(width - 1, 0))]
        if descending:
            go_right = (values > query) if strict else (values >= query)
        else:
            go_right = (values < query) if strict else (values <= query)
        go_right &= active
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
    return lo


# Rows with at least this many positive tie groups go to the counting kernel (one
# bucketing pass over the row, whatever the number of groups) instead of the comparison
# kernel (two vectorised passes over the row per group). None: measured break-even on
# 2 cores (AVX-512), see _COUNT_MIN_GROUPS_DEFAULT.
_SORT_MIN_GROUPS: int | None = None
_COUNT_MIN_GROUPS_DEFAULT = 6
# Target size of a tile of score rows in the comparison kernel (stays in cache).
_TILE_BYTES = 2 << 20
# Scores per tile of the counting kernel (a few MiB of temporaries per thread).
_COUNT_TILE = 1 << 18
# Buckets per row of the counting kernel, per positive tie group of the row (bounded by
# the catalogue); more buckets leave fewer candidates to resolve one by one.
_BUCKETS_PER_GROUP = 64
# Threads of the ranking pass (None: every core this process may use). numpy releases
# the GIL inside its array loops, so tiles of rows are ranked in parallel.
_THREADS: int | None = None


# Which kernel ranks the rows: "compiled" (metrics._compiled, numba: one loop per row
# on every core), "numpy" (the comparison and counting kernels below), or None: compiled
# when numba imports, numpy otherwise. Both give identical counts (tests check it).
_KERNEL: str | None = None
KERNELS = ("compiled", "numpy")
# Rows per tile of the compiled kernels (tiles run on _THREADS threads).
_COMPILED_TILE_ROWS = 32
# Most buckets per row in the compiled counting kernel: its tables stay in the L2 cache.
_COMPILED_MAX_BUCKETS = 16384


def _kernel() -> str:
    """The kernel in use (see ``_KERNEL``); ``"compiled"`` needs numba."""
    if _KERNEL is not None:
        if _KERNEL not in KERNELS:
            raise ValueError(f"metrics kernel must be one of {KERNELS}, got {_KERNEL!r}")
        return _KERNEL
    try:
        import metrics._compiled  # noqa: F401  (numba compiles lazily, on first use)
    except ImportError:  # pragma: no cover - numba is a dependency
        return "numpy"
    return "compiled"


def _compiled_operand(scores: np.ndarray, work_dtype: np.dtype) -> np.ndarray:
    """``scores`` as a C-contiguous array of the working dtype (a copy only if needed)."""
    return np.ascontiguousarray(scores, dtype=work_dtype)


def _run_tiles(run: Any, tiles: list) -> None:
    """``run(tile)`` for every tile, on up to ``_num_threads()`` threads."""
    threads = min(_num_threads(), len(tiles))
    if threads <= 1:
        for tile in tiles:
            run(tile)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(run, tiles):
                pass


def _num_threads() -> int:
    if _THREADS is not None:
        return max(1, int(_THREADS))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


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
    if out.shape[1] == num_items and out.dtype == scores.dtype and out.flags.c_contiguous:
        np.take(scores, rows, axis=0, out=out, mode="clip")  # one pass, no temporary
    else:
        body[...] = scores[rows]
    if np.issubdtype(scores.dtype, np.floating) and not np.isfinite(body).all():
        _check_finite_scores(scores, user_ids)
    lengths = e_indptr[rows + 1] - e_indptr[rows]
    total = int(lengths.sum())
    if total:
        offsets = np.cumsum(lengths) - lengths
        index = np.arange(total) - np.repeat(offsets - e_indptr[rows], lengths)
        out[np.repeat(np.arange(rows.size), lengths), e_cols[index]] = -np.inf


def _compare_tile(
    scores: np.ndarray,
    rows: np.ndarray,
    n_slots: int,
    local: np.ndarray,
    slot: np.ndarray,
    group_score: np.ndarray,
    e_indptr: np.ndarray,
    e_cols: np.ndarray,
    work_dtype: np.dtype,
    user_ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Comparison kernel on one tile of rows: two vectorised passes per group slot."""
    num_items = scores.shape[1]
    chunks, words = _lane_layout(num_items)
    width = chunks * words * 8
    tile = np.full((rows.size, width), -np.inf, dtype=work_dtype)
    mask = np.empty((rows.size, width), dtype=bool)
    _gather_rows(scores, rows, tile, e_indptr, e_cols, user_ids)
    thresholds = np.full((rows.size, n_slots), np.inf, dtype=work_dtype)
    thresholds[local, slot] = group_score
    n_above = np.empty((rows.size, n_slots), dtype=np.int64)
    n_tied = np.empty((rows.size, n_slots), dtype=np.int64)
    for j in range(n_slots):
        column = thresholds[:, j : j + 1]
        np.greater(tile, column, out=mask)
        n_above[:, j] = _count_true(mask, chunks, words)
        np.equal(tile, column, out=mask)
        n_tied[:, j] = _count_true(mask, chunks, words)
    return n_above[local, slot], n_tied[local, slot]


def _sort_tile(
    scores: np.ndarray,
    rows: np.ndarray,
    local: np.ndarray,
    group_score: np.ndarray,
    e_indptr: np.ndarray,
    e_cols: np.ndarray,
    work_dtype: np.dtype,
    user_ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sort the rows and binary-search each group score (rows the bucket map cannot take)."""
    num_items = scores.shape[1]
    block = np.empty((rows.size, num_items), dtype=work_dtype)
    _gather_rows(scores, rows, block, e_indptr, e_cols, user_ids)
    block.sort(axis=1)
    flat = block.reshape(-1)
    base = local * num_items
    below = _count_below(flat, base, group_score, num_items, strict=True)
    below_or_equal = _count_below(flat, base, group_score, num_items, strict=False)
    return num_items - below_or_equal, below_or_equal - below


def _count_tile(
    scores: np.ndarray,
    rows: np.ndarray,
    first: np.ndarray,
    count: np.ndarray,
    local: np.ndarray,
    group_score: np.ndarray,
    e_indptr: np.ndarray,
    e_cols: np.ndarray,
    work_dtype: np.dtype,
    user_ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Counting kernel on one tile of rows: one bucketing pass, cost independent of groups.

    Each row's group scores (``group_score[first : first + count]``, decreasing)
    span ``[t_min, t_max]``; every score ``s`` of the row goes to bucket
    ``trunc(clip((s - t_min) * scale, -1, nb))`` with ``scale = (nb - 1) /
    (t_max - t_min)``, the group scores by the very same float operations. The
    map is non-decreasing, so a candidate in a higher bucket than a group's is
    strictly above it, one in a lower bucket strictly below, and only
    candidates sharing a bucket with a group score can tie with it or need a
    comparison: a histogram of buckets gives the rest exactly. Excluded items
    (-inf) fall in bucket -1, which holds no group. Rows whose map would be
    degenerate (a score range that overflows) are sorted instead.
    """
    n_rows = rows.size
    n_groups = group_score.shape[0]
    above = np.empty(n_groups, dtype=np.int64)
    tied = np.empty(n_groups, dtype=np.int64)
    t_max = group_score[first]
    t_min = group_score[first + count - 1]
    nb = int(min(max(_BUCKETS_PER_GROUP * int(count.max()), 64), 4 * scores.shape[1] + 64))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        span = (t_max - t_min).astype(work_dtype)
        scale = np.where(span > 0, work_dtype.type(nb - 1) / span, work_dtype.type(1.0))
        scale = scale.astype(work_dtype, copy=False)
    bad = ~(np.isfinite(span) & np.isfinite(scale) & (scale > 0))
    if bad.any():
        bad_rows = np.flatnonzero(bad)
        good_rows = np.flatnonzero(~bad)
        for part, sort in ((bad_rows, True), (good_rows, False)):
            if part.size == 0:
                continue
            in_part = np.isin(local, part)
            renumber = np.full(n_rows, -1, dtype=np.int64)
            renumber[part] = np.arange(part.size)
            if sort:
                a, t = _sort_tile(
                    scores,
                    rows[part],
                    renumber[local[in_part]],
                    group_score[in_part],
                    e_indptr,
                    e_cols,
                    work_dtype,
                    user_ids,
                )
            else:
                sub_first = np.searchsorted(np.flatnonzero(in_part), first[part])
                a, t = _count_tile(
                    scores,
                    rows[part],
                    sub_first,
                    count[part],
                    renumber[local[in_part]],
                    group_score[in_part],
                    e_indptr,
                    e_cols,
                    work_dtype,
                    user_ids,
                )
            above[in_part], tied[in_part] = a, t
        return above, tied

    num_items = scores.shape[1]
    tile = np.empty((n_rows, num_items), dtype=work_dtype)
    _gather_rows(scores, rows, tile, e_indptr, e_cols, user_ids)
    stride = nb + 2
    base = (np.arange(n_rows, dtype=np.int64) * stride + 1).astype(np.int32)

    def bucket_of(
        values: np.ndarray, lo: np.ndarray, factor: np.ndarray, work: np.ndarray
    ) -> np.ndarray:
        # The candidates and the group scores must go through exactly these operations.
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(values, lo, out=work)
            np.multiply(work, factor, out=work)
        np.clip(work, -1, nb, out=work)
        return work.astype(np.int32)

    buckets = bucket_of(tile, t_min[:, None], scale[:, None], np.empty_like(tile))
    buckets += base[:, None]
    flat_buckets = buckets.reshape(-1)
    hist = np.bincount(flat_buckets, minlength=n_rows * stride)
    cum = np.cumsum(hist)

    g_buckets = bucket_of(
        group_score, t_min[local], scale[local], np.empty_like(group_score)
    ).astype(np.int64)
    g_buckets += base[local]
    row_last = (np.arange(n_rows, dtype=np.int64) + 1) * stride - 1
    # Candidates in the buckets after a group's bucket, up to the row's end.
    above[:] = cum[row_last[local]] - cum[g_buckets]

    # The groups of one bucket are consecutive (decreasing scores, non-increasing buckets).
    run_start = np.flatnonzero(np.r_[True, g_buckets[1:] != g_buckets[:-1]])
    run_length = np.diff(np.r_[run_start, n_groups])
    bucket_first = np.zeros(n_rows * stride, dtype=np.int64)
    bucket_count = np.zeros(n_rows * stride, dtype=np.int64)
    bucket_first[g_buckets[run_start]] = run_start
    bucket_count[g_buckets[run_start]] = run_length
    # ``take`` is about twice as fast as fancy indexing for these gathers.
    shared = np.flatnonzero(bucket_count.astype(bool).take(flat_buckets, mode="clip"))
    cand = tile.reshape(-1).take(shared)
    cand_bucket = flat_buckets.take(shared).astype(np.int64)
    start = bucket_first[cand_bucket]
    width = bucket_count[cand_bucket]
    # Group scores are distinct within a row: one search for the groups above the
    # candidate, then one comparison says whether it ties the next one.
    if int(width.max()) == 1:
        greater = (group_score[start] > cand).astype(np.int64)
    else:
        greater = _count_below(group_score, start, cand, width, strict=True, descending=True)
    next_group = start + np.minimum(greater, width - 1)
    at_least = greater + ((greater < width) & (group_score[next_group] == cand))
    # The candidate is above the groups of its bucket from `at_least` on (range adds).
    marks = np.bincount(start + at_least, minlength=n_groups + 1)
    marks -= np.bincount(start + width, minlength=n_groups + 1)
    above += np.cumsum(marks)[:n_groups]
    is_tied = at_least > greater
    tied[:] = np.bincount((start + greater)[is_tied], minlength=n_groups)
    return above, tied


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

    ``rows`` are the score rows to rank (for the numpy kernel, ordered by
    ``row_groups``, their number of positive tie groups, non-decreasing);
    groups are given by position in ``rows`` (``group_row``, non-decreasing),
    slot within the row (0 for the highest score) and score.

    The compiled kernel (:func:`metrics._compiled.above_and_tied_rows`, the
    default) makes one bucketing pass per row whatever its number of groups,
    on tiles of ``_COMPILED_TILE_ROWS`` rows. The numpy kernel makes excluded
    items -inf in working copies, so they are never above and never tied, and
    sends rows with fewer than ``_SORT_MIN_GROUPS`` groups (default
    ``_COUNT_MIN_GROUPS_DEFAULT``) to the comparison kernel (two passes per
    group over a cache-sized tile), the others to the counting kernel
    (:func:`_count_tile`, one bucketing pass). Tiles are independent and run
    on ``_THREADS`` threads; the counts are exact integers, so the result
    does not depend on the kernel, the tiling or the threads.
    """
    num_items = scores.shape[1]
    n_work = rows.size
    work_dtype = np.dtype(work_dtype)
    above = np.zeros(group_row.shape[0], dtype=np.int64)
    tied = np.zeros(group_row.shape[0], dtype=np.int64)
    # Groups are ordered by (row, slot), so a slice of rows is a slice of groups.
    row_start = np.searchsorted(group_row, np.arange(n_work + 1), side="left")
    if _kernel() == "compiled":
        from metrics._compiled import above_and_tied_rows

        operand = _compiled_operand(scores, work_dtype)
        groups = np.ascontiguousarray(group_score, dtype=work_dtype)
        bad = np.zeros(n_work, dtype=bool)

        def run_compiled(lo: int) -> None:
            hi = min(lo + _COMPILED_TILE_ROWS, n_work)
            g_lo, g_hi = int(row_start[lo]), int(row_start[hi])
            above_and_tied_rows(
                operand,
                rows[lo:hi],
                row_start[lo : hi + 1] - g_lo,
                groups[g_lo:g_hi],
                e_indptr,
                e_cols,
                above[g_lo:g_hi],
                tied[g_lo:g_hi],
                bad[lo:hi],
                _BUCKETS_PER_GROUP,
                _COMPILED_MAX_BUCKETS,
            )

        _run_tiles(run_compiled, list(range(0, n_work, _COMPILED_TILE_ROWS)))
        if bad.any():
            _check_finite_scores(scores, user_ids)
        return above, tied

    threshold = _COUNT_MIN_GROUPS_DEFAULT if _SORT_MIN_GROUPS is None else _SORT_MIN_GROUPS
    heavy_from = int(np.searchsorted(row_groups, threshold, side="left"))

    tiles: list[tuple[str, int, int]] = []
    if heavy_from:
        chunks, words = _lane_layout(num_items)
        width = chunks * words * 8
        compare_rows = max(1, _TILE_BYTES // (width * work_dtype.itemsize))
        tiles += [
            ("compare", lo, min(lo + compare_rows, heavy_from))
            for lo in range(0, heavy_from, compare_rows)
        ]
    count_rows = max(1, _COUNT_TILE // max(num_items, 1))
    tiles += [
        ("count", lo, min(lo + count_rows, n_work)) for lo in range(heavy_from, n_work, count_rows)
    ]

    def run(tile: tuple[str, int, int]) -> None:
        kind, lo, hi = tile
        g_lo, g_hi = int(row_start[lo]), int(row_start[hi])
        local = group_row[g_lo:g_hi] - lo
        if kind == "compare":
            a, t = _compare_tile(
                scores,
                rows[lo:hi],
                int(row_groups[hi - 1]),
                local,
                group_slot[g_lo:g_hi],
                group_score[g_lo:g_hi],
                e_indptr,
                e_cols,
                work_dtype,
                user_ids,
            )
        else:
            a, t = _count_tile(
                scores,
                rows[lo:hi],
                row_start[lo:hi] - g_lo,
                row_groups[lo:hi],
                local,
                group_score[g_lo:g_hi],
                e_indptr,
                e_cols,
                work_dtype,
                user_ids,
            )
        above[g_lo:g_hi] = a
        tied[g_lo:g_hi] = t

    _run_tiles(run, tiles)
    return above, tied


def _by_row_then_decreasing(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Stable order of entries by row (ascending), then value (descending); -0.0 ties +0.0.

    float32 values become one int64 key (row in the high 32 bits, an order-preserving
    image of the value in the low 32), sorted by one stable argsort: about ten times
    faster than :func:`numpy.lexsort` on two keys. Other dtypes use lexsort.
    """
    if values.dtype != np.float32 or rows.size == 0 or int(rows[-1]) >= 1 << 31:
        return np.lexsort((-values, rows))
    bits = (values + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into +0.0
    ordered = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).astype(np.int64)  # increasing with value
    key = (rows.astype(np.int64) << 32) | (np.int64(0x7FFFFFFF) - ordered)
    return np.argsort(key, kind="stable")


def _rank(
    scores: Any,
    test: Any,
    exclude: Any,
    ties: str,
    user_ids: Any = None,
) -> _Ranked:
    """Validate the inputs and find, for every positive tie group, its place in the ranking.

    Cost per evaluated row: one compiled pass over the row whatever its number
    of positive tie groups (the numpy kernel: two vectorised comparison passes
    per group when it has few, otherwise one bucketing pass; see
    :func:`_above_and_tied`), plus sorting the row's positives. Nothing
    depends on ``k``.
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
    if scores.flags.c_contiguous:
        q = scores.reshape(-1).take(p_rows * num_items + p_cols)
    else:
        q = scores[p_rows, p_cols]
    q = q.astype(work_dtype, copy=False)
    order = _by_row_then_decreasing(p_rows, q)
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

    if _kernel() == "compiled":
        # Each row costs one pass whatever its groups: rank the rows in their own order.
        above_int, tied_int = _above_and_tied(
            scores,
            rows,
            row_groups,
            owner,
            slot,
            q[group_first],
            e_indptr,
            e_cols,
            work_dtype,
            user_ids,
        )
        above = above_int.astype(np.float64)
        size = tied_int.astype(np.float64)
    else:
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


# ---------------------------------------------------------------------------
# Metric formulas on the tie groups
# ---------------------------------------------------------------------------
def _per_user(ranked: _Ranked, values: np.ndarray) -> np.ndarray:
    return np.bincount(ranked.owner, weights=values, minlength=ranked.rows.size)


def _auc_values(ranked: _Ranked) -> np.ndarray:
    num_neg = ranked.num_cand - ranked.num_pos
    neg_above = ranked.above - ranked.pos_above
    neg_tied = ranked.size - ranked.pos
    credit = ranked.pos * (num_neg[ranked.owner] - neg_above - 0.5 * neg_tied)
    total = _per_user(ranked, credit)
    denom = ranked.num_pos * num_neg
    out = np.full(ranked.rows.size, np.nan)
    np.divide(total, denom, out=out, where=denom > 0)
    return out


def _topk_values(ranked: _Ranked, k: int) -> dict[str, np.ndarray]:
    """precision, recall, map, ndcg and hit at one cut-off, from the tie groups."""
    above, size, pos = ranked.above, ranked.size, ranked.pos
    inside = np.clip(k - above, 0.0, size)  # r: ranks of the group within the top k
    share = pos / size  # probability that one rank of the group holds a positive
    # Rank tables only need to reach the last positive group (k may exceed the catalogue).
    depth = min(k, int((above + size).max())) if above.size else 0
    start = np.minimum(above, depth).astype(np.int64)
    stop = start + inside.astype(np.int64)

    precision = _per_user(ranked, share * (inside / k))
    hits = _per_user(ranked, share * inside)
    recall = hits / ranked.num_pos

    ranks = np.arange(1, depth + 1, dtype=np.float64)
    discount = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(ranks + 1.0))))
    dcg = _per_user(ranked, share * (discount[stop] - discount[start]))
    ideal = discount[np.minimum(k, ranked.num_pos).astype(np.int64)]
    ndcg = dcg / ideal

    harmonic = np.concatenate(([0.0], np.cumsum(1.0 / ranks)))
    spread = np.zeros_like(size)
    np.divide(pos - 1.0, size - 1.0, out=spread, where=size > 1)
    ap_terms = share * (
        (ranked.pos_above + 1.0 - spread * (above + 1.0)) * (harmonic[stop] - harmonic[start])
        + spread * inside
    )
    average_precision = _per_user(ranked, ap_terms) / np.minimum(k, ranked.num_pos)

    f = ranked.first
    a0, g0, p0 = above[f], size[f], pos[f]
    r0 = np.clip(k - a0, 0.0, g0)
    possible = g0 - p0 >= r0
    safe = np.where(possible, g0 - p0 - r0, 0.0)
    log_miss = (
        gammaln(g0 - p0 + 1.0) - gammaln(safe + 1.0) + gammaln(g0 - r0 + 1.0) - gammaln(g0 + 1.0)
    )
    miss = np.where(possible, np.exp(np.where(possible, log_miss, 0.0)), 0.0)
    hit = 1.0 - miss
    return {
        "precision": precision,
        "recall": recall,
        "map": average_precision,
        "ndcg": ndcg,
        "hit": hit,
    }


def _rr_values(ranked: _Ranked) -> np.ndarray:
    f = ranked.first
    a0, g0, p0 = ranked.above[f], ranked.size[f], ranked.pos[f]
    out = 1.0 / (a0 + 1.0)
    tied = np.flatnonzero(g0 > p0)
    if tied.size == 0:
        return out
    lengths = (g0[tied] - p0[tied] + 1.0).astype(np.int64)
    # Chunks of users bound the ragged arrays (large tie groups, e.g. constant scorers).
    ends = np.cumsum(lengths)
    cut = np.searchsorted(ends, np.arange(_RAGGED_CHUNK, ends[-1], _RAGGED_CHUNK), side="right")
    bounds = np.unique(np.concatenate(([0], cut, [tied.size])))
    for lo, hi in itertools.pairwise(bounds):
        users = tied[lo:hi]
        length = lengths[lo:hi]
        seg = np.repeat(np.arange(users.size), length)
        offset = np.arange(seg.size) - np.repeat(np.cumsum(length) - length, length) + 1.0
        g, p, a = g0[users], p0[users], a0[users]
        log_total = gammaln(g + 1.0) - gammaln(p + 1.0) - gammaln(g - p + 1.0)
        gs, ps = g[seg], p[seg]
        log_prob = (
            gammaln(gs - offset + 1.0)
            - gammaln(ps)
            - gammaln(gs - offset - ps + 2.0)
            - log_total[seg]
        )
        out[users] = np.bincount(
            seg, weights=np.exp(log_prob) / (a[seg] + offset), minlength=users.size
        )
    return out


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def evaluated_rows(test: Any, exclude: Any = None) -> np.ndarray:
    """Row indices of the users that are evaluated: at least one test positive not excluded.

    Parameters
    ----------
    test : scipy.sparse matrix, bool or 0/1, shape (n_rows, num_items)
        Test positives.
    exclude : scipy.sparse matrix, bool or 0/1, shape (n_rows, num_items), optional
        Items removed from the candidate set; ``None`` removes nothing.

    Returns
    -------
    numpy.ndarray of int64, shape (n_evaluated,)
        Increasing row indices; every metric returns its values in this order.
    """
    if not sp.issparse(test):
        raise TypeError(
            f"test must be a scipy.sparse matrix (CSR preferred), got {type(test).__name__}"
        )
    shape = tuple(test.shape)
    t_indptr, t_cols = _csr_parts(test, "test", shape)
    if exclude is None:
        return np.flatnonzero(np.diff(t_indptr)).astype(np.int64)
    if sp.issparse(exclude) and tuple(exclude.shape) != shape:
        raise ValueError(f"exclude has shape {exclude.shape} but test has shape {shape}")
    e_indptr, e_cols = _csr_parts(exclude, "exclude", shape)
    p_rows, _ = _positive_entries(t_indptr, t_cols, e_indptr, e_cols, shape[1])
    return np.flatnonzero(np.bincount(p_rows, minlength=shape[0])).astype(np.int64)


def roc_auc(scores: Any, test: Any, exclude: Any = None, *, ties: str = "expected") -> np.ndarray:
    """Per-user ROC AUC over the candidate set (the notebook's headline metric).

    The probability that a random positive candidate is ranked above a random
    negative candidate::

        auc = sum over positives of (negatives ranked below + t * negatives tied)
              / (n_pos * n_neg),        n_neg = n_cand - n_pos

    with ``t = 1/2`` for ``ties="expected"`` (the expected value under random
    order of tied items, equal to scikit-learn's average-rank AUC; a constant
    scorer gets exactly 0.5) and ``t = 0`` for ``"pessimistic"``. Per group:
    ``p * (n_neg - (a - h) - t * (g - p))``.

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row (:func:`evaluated_rows`), in row order.
        NaN for a user whose candidates are all positive (AUC is undefined
        without a negative).
    """
    return _auc_values(_rank(scores, test, exclude, ties))


def precision_at_k(
    scores: Any, test: Any, exclude: Any = None, *, k: int = 10, ties: str = "expected"
) -> np.ndarray:
    """Per-user precision@k: hits in the top ``k`` candidates divided by ``k``.

    ``precision = E[hits in top k] / k`` with ``E[hits] = sum over groups of
    r * p / g`` (a group straddling the cut-off with ``r`` of its ``g`` ranks
    inside holds ``r * p / g`` positives there on average). When ``k``
    exceeds the number of candidates the top-k is the whole candidate list,
    and the division is **still by k** (so the value is at most
    ``n_pos / k``). A constant scorer gets exactly ``n_pos / n_cand`` for
    ``k <= n_cand`` under ``"expected"``.

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    k : int
        Cut-off, an integer >= 1.
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row, in row order.
    """
    k = _check_k(k)
    return _topk_values(_rank(scores, test, exclude, ties), k)["precision"]


def recall_at_k(
    scores: Any, test: Any, exclude: Any = None, *, k: int = 10, ties: str = "expected"
) -> np.ndarray:
    """Per-user recall@k: hits in the top ``k`` candidates divided by ``n_pos``.

    ``recall = E[hits in top k] / n_pos`` with ``E[hits] = sum over groups of
    r * p / g`` (see :func:`precision_at_k`). It reaches 1 only when every
    positive is in the top ``k`` (so never when ``n_pos > k``).

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    k : int
        Cut-off, an integer >= 1.
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row, in row order.
    """
    k = _check_k(k)
    return _topk_values(_rank(scores, test, exclude, ties), k)["recall"]


def average_precision_at_k(
    scores: Any, test: Any, exclude: Any = None, *, k: int = 10, ties: str = "expected"
) -> np.ndarray:
    """Per-user average precision at k (its mean over users is MAP@k).

    Without ties::

        ap@k = (1 / min(k, n_pos)) * sum over ranks i <= k of precision@i * rel_i

    where ``rel_i`` is 1 when rank ``i`` holds a positive. The normalizer is
    ``min(k, n_pos)``, so a perfect ranking scores 1 even when ``n_pos > k``.

    Expected value under random order of ties: rank ``i = a + j`` (the
    ``j``-th rank of a group) contributes ``E[rel_i * hits_up_to_i] / i``, and
    given that it holds a positive (probability ``p/g``) the other ``p - 1``
    positives of the group are spread uniformly over its other ``g - 1``
    ranks, so ``E[rel_i * hits_up_to_i] = p/g * (h + 1 + (j - 1) * c)`` with
    ``c = (p - 1) / (g - 1)`` (``c = 0`` when ``g = 1``). Summed over the
    ``r`` ranks of the group inside the top k, with harmonic numbers
    ``H_n = sum_{i<=n} 1/i``::

        p/g * ((h + 1 - c * (a + 1)) * (H_{a+r} - H_a) + c * r)

    When k exceeds the number of candidates the sum runs over all candidates
    (the normalizer stays ``min(k, n_pos)``); with no ties and such a k the
    value equals scikit-learn's ``average_precision_score``.

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    k : int
        Cut-off, an integer >= 1.
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row, in row order.
    """
    k = _check_k(k)
    return _topk_values(_rank(scores, test, exclude, ties), k)["map"]


def ndcg_at_k(
    scores: Any, test: Any, exclude: Any = None, *, k: int = 10, ties: str = "expected"
) -> np.ndarray:
    """Per-user NDCG@k with binary gains and a log2 discount.

    ::

        dcg@k  = sum over ranks i <= k of rel_i / log2(i + 1)
        idcg@k = sum over i <= min(k, n_pos) of 1 / log2(i + 1)
        ndcg@k = dcg@k / idcg@k

    Expected value under random order of ties: every rank of a group holds a
    positive with probability ``p/g``, so a group adds
    ``p/g * (D_{a+r} - D_a)`` with ``D_n = sum_{i<=n} 1/log2(i + 1)``. This is
    exactly scikit-learn's tie-averaged ``ndcg_score`` (``ignore_ties=False``).
    When k exceeds the number of candidates the sum runs over all candidates.

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    k : int
        Cut-off, an integer >= 1.
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row, in row order.
    """
    k = _check_k(k)
    return _topk_values(_rank(scores, test, exclude, ties), k)["ndcg"]


def hit_rate_at_k(
    scores: Any, test: Any, exclude: Any = None, *, k: int = 10, ties: str = "expected"
) -> np.ndarray:
    """Per-user hit rate@k: 1 if any positive is in the top ``k`` candidates, else 0.

    Under ``"expected"`` it is the probability of a hit. Only the top
    positive group matters: it is a sure hit when it lies entirely inside the
    top k (``a + g <= k``), a sure miss when ``a >= k``, and when it straddles
    the cut-off with ``r = k - a`` ranks inside, the ``p`` positives miss
    those ``r`` ranks with the hypergeometric probability
    ``C(g - p, r) / C(g, r)``, so ``hit = 1 - C(g - p, r) / C(g, r)``
    (computed with log-gamma functions).

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    k : int
        Cut-off, an integer >= 1.
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row, in row order, in [0, 1].
    """
    k = _check_k(k)
    return _topk_values(_rank(scores, test, exclude, ties), k)["hit"]


def reciprocal_rank(
    scores: Any, test: Any, exclude: Any = None, *, ties: str = "expected"
) -> np.ndarray:
    """Per-user reciprocal rank of the first positive, ``1 / rank`` (no cut-off; MRR is its mean).

    Under ``"expected"``, the first positive lies in the top positive group
    at offset ``f`` (rank ``a + f``) when the first ``f - 1`` ranks of the
    group are negatives and the ``f``-th is positive:
    ``P(f) = C(g - f, p - 1) / C(g, p)`` for ``f = 1 .. g - p + 1``, so
    ``rr = sum_f P(f) / (a + f)`` (no closed form; the sum is vectorised, in
    chunks, over all users). Under ``"pessimistic"`` it is
    ``1 / (a + g - p + 1)``.

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    ties : {"expected", "pessimistic"}
        Tie policy (see the module docstring).

    Returns
    -------
    numpy.ndarray of float64, shape (n_evaluated,)
        One value per evaluated row, in row order, in (0, 1].
    """
    return _rr_values(_rank(scores, test, exclude, ties))


def metric_columns(ks: Sequence[int] = (5, 10, 20)) -> list[str]:
    """Metric column names of :func:`evaluate`, in order (the ``user`` column comes first).

    The per-user metrics of :data:`metrics.registry.METRICS` that need no
    optional input, in registration order: ``auc``, then for each k in the
    given order ``precision@k``, ``recall@k``, ``map@k``, ``ndcg@k``,
    ``hit@k``, then ``mrr``, then any metric registered later.

    Parameters
    ----------
    ks : sequence of int
        Cut-offs, integers >= 1 without repeats.

    Returns
    -------
    list of str
    """
    return METRICS.columns(_check_ks(ks))


def _metric_values(
    ranked: _Ranked,
    ks: tuple[int, ...],
    *,
    scores: np.ndarray | None = None,
    test: Any = None,
    exclude: Any = None,
    ties: str = "expected",
    item_popularity: np.ndarray | None = None,
    partials: dict[str, list] | None = None,
) -> dict[str, np.ndarray]:
    """Every registered per-user metric column from one ranking pass.

    Catalogue metrics append their block partial to ``partials[column]``
    when ``partials`` is given.
    """
    inputs = MetricInputs(ranked, scores, test, exclude, ties, item_popularity, tuple(ks))
    available = () if item_popularity is None else ("item_popularity",)
    data: dict[str, np.ndarray] = {}
    for metric in METRICS:
        if not set(metric.needs) <= set(available):
            continue
        if metric.scope == "catalogue" and partials is None:
            continue
        for k in ks if metric.at_k else (None,):
            column = metric.name if k is None else f"{metric.name}@{k}"
            value = metric.compute(inputs, k)
            if metric.scope == "user":
                data[column] = np.asarray(value, dtype=np.float64)
            else:
                partials.setdefault(column, []).append(value)
    return {column: data[column] for column in METRICS.columns(ks, available=available)}


def _combine(partials: dict[str, list], num_items: int) -> dict[str, float]:
    """Values of the catalogue metrics from their block partials."""
    out = {}
    for column, parts in partials.items():
        metric, _ = METRICS.metric_of(column)
        out[column] = float(metric.combine(parts, num_items))
    return out


def _frame(
    labels: np.ndarray,
    columns: dict[str, np.ndarray],
    ks: tuple[int, ...],
    ties: str,
    catalogue: dict[str, float] | None = None,
) -> pd.DataFrame:
    frame = pd.DataFrame({"user": labels, **columns})
    frame.attrs["ties"] = ties
    frame.attrs["ks"] = list(ks)
    frame.attrs["catalogue"] = dict(catalogue or {})
    return frame


def evaluate(
    scores: Any,
    test: Any,
    exclude: Any = None,
    *,
    ks: Sequence[int] = (5, 10, 20),
    ties: str = "expected",
    user_ids: Any = None,
) -> pd.DataFrame:
    """Every metric of this module for every evaluated row, in one ranking pass.

    The scores are sorted once; AUC, the top-k metrics for each ``k`` and the
    reciprocal rank are then closed-form sums over the positive tie groups
    (see the module docstring and each metric's function for the formulas).

    Parameters
    ----------
    scores : array of float, shape (n_rows, num_items)
        Higher is better; must be finite.
    test, exclude : scipy.sparse matrix of bool or 0/1, shape (n_rows, num_items)
        Test positives and items removed from the candidates (``None``: none).
    ks : sequence of int
        Cut-offs, integers >= 1 without repeats (may be empty).
    ties : {"expected", "pessimistic"}
        Tie policy, applied to every metric; recorded in ``frame.attrs["ties"]``.
    user_ids : array of int, shape (n_rows,), optional
        Label of each row, written to the ``user`` column and used in error
        messages; by default the row index.

    Returns
    -------
    pandas.DataFrame
        One row per evaluated row (in row order): ``user`` (int), then the
        float64 columns of :func:`metric_columns`. ``attrs`` holds ``ties``
        and ``ks``.
    """
    ks = _check_ks(ks)
    ties = _check_ties(ties)
    ranked = _rank(scores, test, exclude, ties, user_ids)
    labels = ranked.rows if user_ids is None else np.asarray(user_ids)[ranked.rows]
    array = _as_scores(scores)
    shape = array.shape
    partials: dict[str, list] = {}
    values = _metric_values(
        ranked,
        ks,
        scores=array,
        test=_bool_csr(test, "test", shape),
        exclude=None if exclude is None else _bool_csr(exclude, "exclude", shape),
        ties=ties,
        partials=partials,
    )
    return _frame(labels, values, ks, ties, _combine(partials, int(shape[1])))


def warm_up() -> float:
    """Load (or compile, the first time in a checkout) the compiled kernels now; returns seconds.

    numba compiles a kernel on its first call in a process, per dtype, and
    caches the machine code on disk; loading it (and numba itself) takes about
    half a second. The runner calls this before it starts any clock, so that
    ``eval_seconds`` measures evaluation, not that one-time load, as fit times
    leave out importing a model's framework. A no-op with the numpy kernel.
    """
    start = time.perf_counter()
    if _kernel() == "compiled":
        test = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=bool))
        for dtype in (np.float32, np.float64):
            evaluate(np.arange(10, dtype=dtype).reshape(2, 5) % 3, test, ks=(1, 2))
    return time.perf_counter() - start


# ---------------------------------------------------------------------------
# Registration: the metrics of this module, in column order
# ---------------------------------------------------------------------------
def _topk_metric(name: str) -> Any:
    def compute(inputs: MetricInputs, k: int | None) -> np.ndarray:
        return inputs.memo(("topk", k), lambda: _topk_values(inputs.ranked, k))[name]

    compute.__name__ = f"{name}_at_k_values"
    return compute


#: The regression gate's margins (metrics.registry.Margin; README, "Regression gate").
#: AUC is dense and bounded, so an absolute margin: 0.015, because the mean AUC of two
#: seeds of the noisiest quick-suite model (keras-deep:fast) moved by 0.0114 between
#: seeds 0,1 and 2,3 (one seed alone by 0.02), far beyond its per-user interval. The
#: top-k metrics' levels vary tenfold with k and the dataset, so a share of the
#: baseline: 5%, the size of change a user of a ranking would notice; their per-user
#: intervals are wide enough to absorb seed noise (none came near failing).
_AUC_MARGIN = Margin(0.015)
_TOPK_MARGIN = Margin(0.05, relative=True)

METRICS.register(
    Metric(
        "auc",
        lambda inputs, k: _auc_values(inputs.ranked),
        headline=True,
        curve=True,
        family="pairwise",
        margin=_AUC_MARGIN,
        description="ROC AUC over the candidates (positives against every other candidate)",
    )
)
for _name, _text in (
    ("precision", "hits in the top k / k"),
    ("recall", "hits in the top k / positives"),
    ("map", "average precision at k, normaliser min(k, positives)"),
    ("ndcg", "binary gain, log2 discount, ideal DCG over min(k, positives)"),
    ("hit", "at least one positive in the top k"),
):
    METRICS.register(
        Metric(
            _name,
            _topk_metric(_name),
            at_k=True,
            headline=_name != "hit",
            curve=_name != "hit",
            family="top-k",
            margin=_TOPK_MARGIN,
            description=_text,
        )
    )
METRICS.register(
    Metric(
        "mrr",
        lambda inputs, k: _rr_values(inputs.ranked),
        headline=True,
        curve=True,
        family="top-k",
        margin=_TOPK_MARGIN,
        description="reciprocal rank of the first positive",
    )
)
