"""Baselines on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from bench.interactions import Interactions
from models.baselines import EASE, Popularity, RandomModel


def _fit(model, train, seed=0):
    return model.fit(train, rng=np.random.default_rng(seed))


def test_popularity_ranks_items_by_train_count():
    train = Interactions([0, 1, 2, 0, 1, 0], [2, 2, 2, 1, 1, 3], num_users=3, num_items=5)
    scores = _fit(Popularity(), train).score(np.array([0, 2]))
    np.testing.assert_array_equal(scores, [[0, 2, 3, 1, 0]] * 2)


def test_ease_matches_the_closed_form_by_brute_force():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 12)) < 0.3).astype(float)
    users, items = np.nonzero(x)
    train = Interactions(users, items, num_users=30, num_items=12)
    lam = 3.0
    # Solve min ||X - XB||^2 + lam ||B||^2 s.t. diag(B) = 0 column by column.
    expected = np.zeros((12, 12))
    for j in range(12):
        others = [i for i in range(12) if i != j]
        a = x[:, others]
        coef = np.linalg.solve(a.T @ a + lam * np.eye(11), a.T @ x[:, j])
        expected[others, j] = coef
    model = _fit(EASE(l2=lam), train)
    np.testing.assert_allclose(model._weights, expected, atol=1e-5)
    np.testing.assert_allclose(model.score(np.arange(30)), x @ expected, atol=1e-4)


def test_ease_recovers_co_occurrence_structure():
    # Items 0 and 1 always co-occur; a user with item 0 must score item 1 highest.
    users = np.repeat(np.arange(20), 2)
    items = np.tile([0, 1], 20)
    users = np.r_[users, 20, 21, 22]
    items = np.r_[items, 2, 3, 0]
    train = Interactions(users, items, num_users=23, num_items=4)
    scores = _fit(EASE(l2=1.0), train).score(np.array([22]))[0]
    assert scores.argmax() == 1


def test_ease_rejects_huge_catalogues_and_bad_l2():
    train = Interactions([0], [0], num_users=1, num_items=50)
    with pytest.raises(ValueError, match="exceeds max_items=10"):
        _fit(EASE(max_items=10), train)
    with pytest.raises(ValueError, match="l2 must be > 0"):
        _fit(EASE(l2=0.0), train)


def test_random_scores_are_uniform_and_block_independent():
    train = Interactions([0, 1], [0, 1], num_users=50, num_items=400)
    model = _fit(RandomModel(), train, seed=3)
    scores = model.score(np.arange(50))
    assert 0.45 < scores.mean() < 0.55
    np.testing.assert_array_equal(model.score(np.array([7])), scores[[7]])
    other = _fit(RandomModel(), train, seed=4).score(np.arange(50))
    assert not np.array_equal(other, scores)
