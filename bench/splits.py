"""Train/test splits of a ratings log, as boolean test masks over its rows.

Every function here takes plain arrays in the log's own row order and returns a
boolean mask (``True`` = test row), so a split is reproducible from the raw
ratings file alone and can never put the same row on both sides.
"""

from __future__ import annotations

import numpy as np

__all__ = ["allbut_mask", "fold_mask", "random_leave_k_out_mask", "temporal_leave_last_k_out_mask"]


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
