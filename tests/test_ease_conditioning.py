"""EASE refuses an l2 that makes its Gram matrix numerically singular (issue 12 item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import models.baselines
from bench.interactions import Interactions
from models.baselines import EASE


def _train() -> Interactions:
    # Hand-made: 3 users, 4 items, item 3 never rated (a zero row/column of X^T X).
    #   X = [[1,1,0,0],[1,0,1,0],[1,1,1,0]]  ->  X^T X = [[3,2,2,0],[2,2,1,0],[2,1,2,0],[0,0,0,0]]
    return Interactions([0, 0, 1, 1, 2, 2, 2], [0, 1, 0, 2, 0, 1, 2], num_users=3, num_items=4)


def test_min_l2_is_the_gershgorin_bound_by_hand():
    # Largest row sum of X^T X is 3 + 2 + 2 = 7.
    assert EASE.min_l2(_train()) == pytest.approx(7 / (EASE.MAX_CONDITION - 1))
    empty = Interactions([], [], num_users=2, num_items=3)
    assert EASE.min_l2(empty) == 0.0


def test_min_l2_bounds_the_true_condition_number():
    rng = np.random.default_rng(3)
    x = rng.random((60, 25)) < 0.2
    x[:, 0] = False  # an item nobody rated
    users, items = np.nonzero(x)
    train = Interactions(users, items, num_users=60, num_items=25)
    gram = x.T.astype(float) @ x.astype(float)
    l2 = EASE.min_l2(train)
    assert np.linalg.cond(gram + l2 * np.eye(25)) <= EASE.MAX_CONDITION * (1 + 1e-9)
    # ... and a fit right at the bound works and gives finite weights.
    EASE(l2=l2).fit(train, rng=np.random.default_rng(0))


def test_a_tiny_l2_is_refused_before_lapack_is_called(monkeypatch):
    inverse = scipy.linalg.inv

    def no_lapack(*args, **kwargs):
        raise AssertionError("LAPACK was called")

    monkeypatch.setattr(models.baselines.scipy.linalg, "inv", no_lapack)
    bound = EASE.min_l2(_train())
    for l2 in (1e-300, bound / 2):
        with pytest.raises(ValueError, match=r"numerically singular .* use l2 >= 7e-10"):
            EASE(l2=l2).fit(_train(), rng=np.random.default_rng(0))
    monkeypatch.setattr(models.baselines.scipy.linalg, "inv", inverse)
    model = EASE(l2=bound).fit(_train(), rng=np.random.default_rng(0))
    assert np.isfinite(model.score(np.arange(3))).all()
