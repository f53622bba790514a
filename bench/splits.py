"""Train/test splits of a ratings log, as boolean test masks over its rows.

Every function here takes plain arrays in the log's own row order and returns a
boolean mask (``True`` = test row), so a split is reproducible from the raw
ratings file alone and can never put the same row on both sides.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "allbut_mask",
    "cold_mask",
    "fold_mask",
    "global_cutoff_mask",
    "holdout_fraction_mask",
    "quantile_cutoff",
    "random_fraction_mask",
    "random_leave_k_out_mask",
    "temporal_leave_last_k_out_mask",
]


def _rank_within_user(
    user_ids: np.ndarray, order_key: np.ndarray, tiebreak: np.ndarray | None = None
) -> np.ndarray:
    """0-based rank of each row among its user's rows, sorted by ``order_key`` then ``tiebreak``.

    ``tiebreak`` defaults to the row number, so the sort is stable.
    """
    user_ids = np.asarray(user_ids)
    n = user_ids.shape[0]
    tiebreak = np.arange(n) if tiebreak is None else tiebreak
    order = np.lexsort((tiebreak, order_key, user_ids))
    sorted_users = user_ids[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return rank


def allbut_mask(user_ids: np.ndarray, first: int, last: int) -> np.ndarray:
    """GroupLens ``allbut.pl``: each user's ratings number ``first``..``last`` go to test.

    Numbers are 1-based positions among the user's rows *in file order*; ``ua``
    is ``allbut_mask(users, 1, 10)`` and ``ub`` is ``allbut_mask(users, 11, 20)``.
    Users with fewer rows simply contribute fewer (or no) test rows.
    """
    if not 1 <= first <= last:
        raise ValueError(f"need 1 <= first <= last, got first={first}, last={last}")
    n = np.asarray(user_ids).shape[0]
    rank = _rank_within_user(user_ids, np.arange(n))
    return (rank >= first - 1) & (rank <= last - 1)


def fold_mask(n_rows: int, fold: int, n_folds: int = 5) -> np.ndarray:
    """GroupLens ``u1``..``u5``: fold ``f`` (1-based) tests the f-th block of consecutive rows.

    For ML-100K the blocks are lines 1-20,000, 20,001-40,000, ... of ``u.data``.
    """
    if not 1 <= fold <= n_folds:
        raise ValueError(f"fold must be in 1..{n_folds}, got {fold}")
    if n_rows % n_folds:
        raise ValueError(f"{n_rows} rows cannot be cut into {n_folds} equal folds")
    size = n_rows // n_folds
    mask = np.zeros(n_rows, dtype=bool)
    mask[(fold - 1) * size : fold * size] = True
    return mask


def random_leave_k_out_mask(
    user_ids: np.ndarray, k: int, rng: np.random.Generator | int
) -> np.ndarray:
    """Per user, ``k`` rows chosen uniformly at random go to test.

    A user always keeps at least one training row: a user with ``n <= k`` rows
    sends ``n - 1`` to test. Deterministic for a given seed or generator state.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(rng)
    user_ids = np.asarray(user_ids)
    rank = _rank_within_user(user_ids, rng.random(user_ids.shape[0]))
    counts = np.bincount(user_ids)[user_ids]
    return rank < np.minimum(k, counts - 1)


def temporal_leave_last_k_out_mask(
    user_ids: np.ndarray, timestamps: np.ndarray, k: int
) -> np.ndarray:
    """Per user, the ``k`` most recent rows go to test (ties broken by file order).

    A user always keeps at least one training row. Training rows are never more
    recent than that user's test rows, so no user's future leaks into train.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    user_ids = np.asarray(user_ids)
    n = user_ids.shape[0]
    # Rank by descending time; among equal timestamps the later line counts as more recent.
    rank = _rank_within_user(user_ids, -np.asarray(timestamps), -np.arange(n))
    counts = np.bincount(user_ids)[user_ids]
    return rank < np.minimum(k, counts - 1)


def _check_fraction(fraction: float, name: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1), got {fraction!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"{name} must be in (0, 1), got {fraction!r}")
    return float(fraction)


def random_fraction_mask(
    user_ids: np.ndarray, fraction: float, rng: np.random.Generator | int
) -> np.ndarray:
    """Per user, ``round(fraction * n)`` of the user's ``n`` rows drawn at random go to test.

    Halves round up (``floor(fraction * n + 0.5)``) and a user always keeps at
    least one training row, so 0.2 of a user's 7 rows sends 1 to test and of
    13 rows sends 3 (an 80/20 hold-out). Deterministic for a given seed.
    """
    fraction = _check_fraction(fraction)
    rng = np.random.default_rng(rng)
    user_ids = np.asarray(user_ids)
    rank = _rank_within_user(user_ids, rng.random(user_ids.shape[0]))
    counts = np.bincount(user_ids)[user_ids]
    wanted = np.floor(fraction * counts + 0.5).astype(np.int64)
    return rank < np.minimum(wanted, counts - 1)


def quantile_cutoff(timestamps: np.ndarray, quantile: float) -> int:
    """The time ``t`` such that a ``quantile`` share of the rows happened before it.

    ``t`` is the timestamp of row ``ceil(quantile * n)`` in time order (the
    inverted empirical CDF), so ``global_cutoff_mask(ts, t)`` puts about that
    share of the rows in train (ties at ``t`` all go to test).
    """
    quantile = _check_fraction(quantile, "cutoff_quantile")
    stamps = np.sort(np.asarray(timestamps, dtype=np.int64))
    if stamps.size == 0:
        raise ValueError("no timestamps")
    position = min(int(np.ceil(quantile * stamps.shape[0])), stamps.shape[0] - 1)
    return int(stamps[position])


def global_cutoff_mask(timestamps: np.ndarray, cutoff: int) -> np.ndarray:
    """Everything at or after ``cutoff`` is test; everything before it is train.

    Unlike the per-user splits, a user (or item) may end up on one side only:
    test users or items without a train row are *cold* and are reported by the
    data layer, never silently scored.
    """
    return np.asarray(timestamps, dtype=np.int64) >= int(cutoff)


def cold_mask(ids: np.ndarray, fraction: float, rng: np.random.Generator | int) -> np.ndarray:
    """Hold out ``round(fraction * m)`` of the ``m`` distinct ids entirely (every row is test).

    Used with user ids for a cold-start-users split and with item ids for a
    cold-start-items split; at least one id stays in train.
    """
    fraction = _check_fraction(fraction, "cold_fraction")
    rng = np.random.default_rng(rng)
    ids = np.asarray(ids)
    present = np.unique(ids)
    count = min(int(np.floor(fraction * present.shape[0] + 0.5)), present.shape[0] - 1)
    held = rng.choice(present, size=max(count, 0), replace=False)
    return np.isin(ids, held)


def holdout_fraction_mask(
    user_ids: np.ndarray,
    timestamps: np.ndarray,
    positive: np.ndarray,
    fraction: float,
    rng: np.random.Generator | int,
) -> np.ndarray:
    """Per user, ``round(fraction * n)`` random rows, never the user's last positive.

    The validation carve of GroupLens's fixed splits: the user's last positive
    row (latest timestamp, ties by the later line) is never drawn, so every
    user with a positive keeps one in train. Deterministic for a given seed.
    """
    fraction = _check_fraction(fraction)
    rng = np.random.default_rng(rng)
    user_ids = np.asarray(user_ids)
    n = user_ids.shape[0]
    positive = np.asarray(positive, dtype=bool)
    protected = np.zeros(n, dtype=bool)
    if positive.any():
        rows = np.flatnonzero(positive)
        last = _rank_within_user(user_ids[rows], -np.asarray(timestamps)[rows], -rows) == 0
        protected[rows[last]] = True
    # Protected rows sort last among the user's rows, so they are drawn only if nothing else is.
    key = rng.random(n) + protected
    rank = _rank_within_user(user_ids, key)
    counts = np.bincount(user_ids)[user_ids]
    wanted = np.floor(fraction * counts + 0.5).astype(np.int64)
    return (rank < np.minimum(wanted, counts - 1)) & ~protected
