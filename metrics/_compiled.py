"""Compiled kernels (numba) of the ranking pass and of the top-k selection.

Both read each score row once, in one loop, and release the GIL, so that
:func:`metrics.ranking._above_and_tied` and :func:`metrics.beyond._top_candidates`
run tiles of rows on every core with plain threads. They compute exactly what
the numpy kernels of those modules compute (integer counts, selected entries),
which the tests check. numba is imported by this module only; importing it
costs about half a second, so the metrics modules import this one lazily.

Why numba: at ML-20M shape the numpy counting pass cost about 9 ns of CPU
per score, in a pipeline of ten array operations (copy, subtract, multiply,
clip, cast, bincount, gathers), several of which hold the GIL. One compiled
loop does the same work in about 2 ns per score on one core, and scales to
both cores (``benchmarks/test_bench_metrics.py``: 48.7 s against 16.0 s for a
whole ML-20M-shape evaluation, scoring included). A C extension would need a
compiler at install time; numba ships wheels for every platform numpy does.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["above_and_tied_rows", "top_candidate_rows"]


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _bucket(s, t_min, scale, lo, hi):
    """Monotone bucket of a score: ``trunc(clip((s - t_min) * scale, lo, hi))``.

    ``lo = -1`` and ``hi = nb`` are given in the scores' dtype. Selects, not
    branches: where a candidate falls is unpredictable, and a mispredicted
    branch costs more than the rest of the loop. NaN maps to ``lo`` (the row
    is reported as bad, never indexed out of bounds).
    """
    x = (s - t_min) * scale
    x = x if x >= lo else lo
    x = x if x <= hi else hi
    return np.int64(x)


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="never")
def _sum(values):
    """Sum of an int64 slice (a separate function so that LLVM vectorises the loop)."""
    total = 0
    for c in range(values.size):
        total += values[c]
    return total


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _within(s, groups, g0, j, end):
    """Place a candidate among the groups ``j .. end-1`` that share its bucket.

    Returns ``(j, tie)``: the candidate is strictly above groups ``j .. end-1``
    and ties group ``tie`` (``-1``: none).
    """
    while j < end and groups[g0 + j] > s:
        j += 1
    if j < end and groups[g0 + j] == s:
        return j + 1, j
    return j, -1


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _search(s, groups, g0, m):
    """Place a candidate among all m groups by binary search: ``(j, tie)`` as in ``_within``."""
    lo = 0
    hi = m
    while lo < hi:
        mid = (lo + hi) >> 1
        if groups[g0 + mid] > s:
            lo = mid + 1
        else:
            hi = mid
    if lo < m and groups[g0 + lo] == s:
        return lo + 1, lo
    return lo, -1


@numba.njit(nogil=True, cache=True, error_model="numpy")
def above_and_tied_rows(
    scores,
    rows,
    row_start,
    groups,
    e_indptr,
    e_cols,
    above,
    tied,
    bad,
    buckets_per_group,
    max_buckets,
):
    """Per positive tie group: candidates strictly above it, and tied with it.

    Row ``i`` of the tile is score row ``rows[i]``; its groups are
    ``groups[row_start[i] : row_start[i + 1]]`` (decreasing, distinct, same
    dtype as ``scores``). Every item of the row is placed, then the excluded
    ones are placed again with weight -1, so they are never above nor tied.
    Writes ``above`` and ``tied`` at the group positions; ``bad[i] = True``
    for a row with a NaN or infinite score (its counts are left undefined).
    """
    num_items = scores.shape[1]
    max_groups = 0
    for i in range(rows.size):
        max_groups = max(max_groups, row_start[i + 1] - row_start[i])
    nb_max = min(max(buckets_per_group * max_groups, 64), max_buckets)
    first = np.empty(nb_max + 2, dtype=np.int64)
    count = np.empty(nb_max + 2, dtype=np.int64)
    shared = np.zeros(nb_max + 2, dtype=np.uint8)
    hist = np.empty(nb_max + 2, dtype=np.int64)
    group_bucket = np.empty(max_groups, dtype=np.int64)
    buckets = np.empty(num_items, dtype=np.int32)
    pending = np.empty(num_items + 1, dtype=np.int64)
    marks = np.empty(max_groups + 1, dtype=np.int64)
    consts = np.empty(3, dtype=groups.dtype)  # the map's constants in the scores' dtype
    for i in range(rows.size):
        r = rows[i]
        g0 = row_start[i]
        m = row_start[i + 1] - g0
        if m == 0:
            continue
        row = scores[r]
        nonfinite = 0
        if m == 1:
            t = groups[g0]
            n_above = 0
            n_tied = 0
            for c in range(num_items):
                s = row[c]
                nonfinite += (s - s) != 0
                n_above += s > t
                n_tied += s == t
            for p in range(e_indptr[r], e_indptr[r + 1]):
                s = row[e_cols[p]]
                n_above -= s > t
                n_tied -= s == t
            above[g0] = n_above
            tied[g0] = n_tied
            bad[i] = nonfinite > 0
            continue
        for j in range(m + 1):
            marks[j] = 0
        for j in range(m):
            tied[g0 + j] = 0
        t_min = groups[g0 + m - 1]
        span = groups[g0] - t_min
        nb = min(max(buckets_per_group * m, 64), max_buckets)
        consts[0] = nb - 1
        consts[1] = -1
        consts[2] = nb
        scale = consts[0] / span
        lo = consts[1]
        hi = consts[2]
        mapped = np.isfinite(span) and np.isfinite(scale) and scale > 0
        if mapped:
            # hist[b + 1]: candidates in bucket b. A bucket holding groups (shared[b + 1])
            # holds groups first[b + 1] .. first[b + 1] + count[b + 1] - 1; a candidate
            # in it (a few percent) is placed among them afterwards, and marks (a
            # difference array) says which it is above. Only the histogram is cleared per
            # row (a memset); the group tables are set, and unset, at the groups' buckets.
            hist[: nb + 2] = 0
            for j in range(m):
                gb = _bucket(groups[g0 + j], t_min, scale, lo, hi) + 1
                group_bucket[j] = gb
                if shared[gb] == 0:
                    shared[gb] = 1
                    first[gb] = j
                    count[gb] = 0
                count[gb] += 1
            # Three loops: the bucket map vectorises (SIMD); the histogram cannot, but it
            # has no branch (it lists the candidates of shared buckets unconditionally and
            # counts only those); the listed candidates are placed last.
            for c in range(num_items):
                s = row[c]
                nonfinite += (s - s) != 0
                buckets[c] = _bucket(s, t_min, scale, lo, hi) + 1
            n_pending = 0
            for c in range(num_items):
                b = buckets[c]
                hist[b] += 1
                pending[n_pending] = c
                n_pending += shared[b]
            for q in range(n_pending):
                c = pending[q]
                s = row[c]
                b = buckets[c]
                end = first[b] + count[b]
                j, tie = _within(s, groups, g0, first[b], end)
                marks[j] += 1
                marks[end] -= 1
                if tie >= 0:
                    tied[g0 + tie] += 1
            for p in range(e_indptr[r], e_indptr[r + 1]):
                s = row[e_cols[p]]
                b = _bucket(s, t_min, scale, lo, hi) + 1
                hist[b] -= 1
                if shared[b]:
                    end = first[b] + count[b]
                    j, tie = _within(s, groups, g0, first[b], end)
                    marks[j] -= 1
                    marks[end] += 1
                    if tie >= 0:
                        tied[g0 + tie] -= 1
            # Candidates in buckets above each group's: sums of the histogram between
            # consecutive group buckets (non-increasing with j), vectorised.
            above_bucket = _sum(hist[group_bucket[0] + 1 : nb + 2])
            acc = 0
            for j in range(m):
                gb = group_bucket[j]
                if j > 0 and gb != group_bucket[j - 1]:
                    above_bucket += _sum(hist[gb + 1 : group_bucket[j - 1] + 1])
                acc += marks[j]
                above[g0 + j] = above_bucket + acc
            for j in range(m):
                shared[group_bucket[j]] = 0
            bad[i] = nonfinite > 0
            continue
        # A score range that overflows the bucket map: binary search per candidate.
        for c in range(num_items):
            s = row[c]
            nonfinite += (s - s) != 0
            j, tie = _search(s, groups, g0, m)
            marks[j] += 1
            if tie >= 0:
                tied[g0 + tie] += 1
        for p in range(e_indptr[r], e_indptr[r + 1]):
            j, tie = _search(row[e_cols[p]], groups, g0, m)
            marks[j] -= 1
            if tie >= 0:
                tied[g0 + tie] -= 1
        acc = 0
        for j in range(m):
            acc += marks[j]
            above[g0 + j] = acc
        bad[i] = nonfinite > 0


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="never")
def _count_at_least(values, threshold):
    """How many of ``values`` are ``>= threshold`` (a loop LLVM turns into SIMD code).

    A separate function over a slice: indices known to be in range are what
    lets the loop vectorise (``row[c0 + c]`` inside the caller does not).
    """
    hits = 0
    for c in range(values.size):
        hits += values[c] >= threshold
    return hits


@numba.njit(nogil=True, cache=True, error_model="numpy")
def top_candidate_rows(scores, e_indptr, e_cols, k_max, cap, out_cols, out_values, kept):
    """Per row, every candidate whose score is at least its ``k_max``-th largest candidate score.

    One pass per row keeps the ``k_max`` largest candidate scores seen so far
    and buffers every candidate at or above the smallest of them (so the
    whole tie group at the final threshold is kept). The kept entries, by
    decreasing score then increasing column, go to ``out_*[i * cap :]``;
    ``kept[i]`` is their number. A row keeping more than ``cap`` entries
    (heavy ties) writes nothing: the caller selects it another way. A row
    with fewer than ``k_max`` candidates keeps all of them.
    """
    n_rows, num_items = scores.shape
    top = np.empty(max(k_max, 1), dtype=scores.dtype)
    buf_cols = np.empty(num_items, dtype=np.int64)
    buf_values = np.empty(num_items, dtype=scores.dtype)
    for i in range(n_rows):
        row = scores[i]
        e_at = e_indptr[i]
        e_end = e_indptr[i + 1]
        filled = 0
        t_min = top[0]  # a value of the scores' dtype; read only once the top is filled
        t_arg = 0
        n_buf = 0
        c0 = 0
        while c0 < num_items:
            c1 = min(c0 + 64, num_items)
            if filled == k_max:
                # Skip a block with nothing at or above the threshold (most blocks, once
                # the top is filled): one vectorised count instead of 64 branches.
                if _count_at_least(row[c0:c1], t_min) == 0:
                    c0 = c1
                    continue
            for c in range(c0, c1):
                s = row[c]
                if filled == k_max and not s >= t_min:
                    continue
                while e_at < e_end and e_cols[e_at] < c:
                    e_at += 1
                if e_at < e_end and e_cols[e_at] == c:
                    continue
                buf_cols[n_buf] = c
                buf_values[n_buf] = s
                n_buf += 1
                if filled < k_max:
                    top[filled] = s
                    filled += 1
                    if filled < k_max:
                        continue
                elif s > t_min:
                    top[t_arg] = s
                else:
                    continue
                t_min = top[0]
                t_arg = 0
                for j in range(1, k_max):
                    if top[j] < t_min:
                        t_min = top[j]
                        t_arg = j
            c0 = c1
        threshold = t_min if filled == k_max else -np.inf
        n_keep = 0
        for j in range(n_buf):
            if buf_values[j] >= threshold:
                buf_cols[n_keep] = buf_cols[j]
                buf_values[n_keep] = buf_values[j]
                n_keep += 1
        kept[i] = n_keep
        if n_keep > cap:
            continue
        order = np.argsort(-buf_values[:n_keep], kind="mergesort")
        base = i * cap
        for j in range(n_keep):
            out_cols[base + j] = buf_cols[order[j]]
            out_values[base + j] = buf_values[order[j]]
