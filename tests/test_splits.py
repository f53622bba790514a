"""Split masks on hand-made logs (the real-data checks live in test_data/test_movielens)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.splits import (
    allbut_mask,
    fold_mask,
    random_leave_k_out_mask,
    temporal_leave_last_k_out_mask,
)


def test_allbut_takes_each_users_first_ratings_in_file_order():
    # user 1 appears at rows 0,2,3,5,7; user 2 at rows 1,4,6.
    users = np.array([1, 2, 1, 1, 2, 1, 2, 1])
    np.testing.assert_array_equal(
        allbut_mask(users, 1, 2), [True, True, True, False, True, False, False, False]
    )
    np.testing.assert_array_equal(
        allbut_mask(users, 3, 4), [False, False, False, True, False, True, True, False]
    )
    with pytest.raises(ValueError):
        allbut_mask(users, 0, 2)


def test_folds_are_consecutive_blocks_that_partition_the_log():
    masks = [fold_mask(10, f) for f in range(1, 6)]
    np.testing.assert_array_equal(np.sum(masks, axis=0), np.ones(10))
    np.testing.assert_array_equal(np.flatnonzero(masks[1]), [2, 3])
    with pytest.raises(ValueError, match=r"fold must be in 1\.\.5"):
        fold_mask(10, 6)
    with pytest.raises(ValueError, match="equal folds"):
        fold_mask(11, 1)


def test_random_leave_k_out_is_seeded_and_keeps_a_train_row():
    users = np.repeat(np.arange(50), np.arange(1, 51))
    a = random_leave_k_out_mask(users, 3, 0)
    b = random_leave_k_out_mask(users, 3, 0)
    c = random_leave_k_out_mask(users, 3, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    test_counts = np.bincount(users[a], minlength=50)
    np.testing.assert_array_equal(test_counts, np.minimum(3, np.arange(1, 51) - 1))


def test_temporal_leave_last_k_out_never_trains_on_the_future():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 20, 500)
    times = rng.integers(0, 50, 500)  # many ties
    mask = temporal_leave_last_k_out_mask(users, times, 2)
    for u in range(20):
        train_t = times[(users == u) & ~mask]
        test_t = times[(users == u) & mask]
        if test_t.size:
            assert train_t.max() <= test_t.min()
            assert test_t.size == min(2, (users == u).sum() - 1)
