"""ItemKNN against a brute-force loop, on hand-made and synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.interactions import Interactions
from models.knn import ItemKNN


def _brute_force_scores(dense: np.ndarray, neighbours: int, shrinkage: float) -> np.ndarray:
    """Per-pair loops: shrunk cosine, top-k per target item (ties: lower index), sum."""
    num_users, num_items = dense.shape
    sim = np.zeros((num_items, num_items))
    for i in range(num_items):
        for j in range(num_items):
            if i == j:
                continue
            both = sum(1 for u in range(num_users) if dense[u, i] and dense[u, j])
            denom = math.sqrt(dense[:, i].sum()) * math.sqrt(dense[:, j].sum()) + shrinkage
            sim[i, j] = both / denom if denom > 0 else 0.0
    weights = np.zeros_like(sim)
    for j in range(num_items):
        ranked = sorted(range(num_items), key=lambda i: (-sim[i, j], i))
        for i in ranked[:neighbours]:
            if sim[i, j] > 0:
                weights[i, j] = sim[i, j]
    return dense @ weights


def _interactions(dense: np.ndarray) -> Interactions:
    users, items = np.nonzero(dense)
    return Interactions(users, items, num_users=dense.shape[0], num_items=dense.shape[1])


def test_hand_computed_two_users():
    # Items 0 and 1 share user 0; item 2 only user 1. cos(0,1) = 1 / (1 * sqrt(2) + 1).
    dense = np.array([[1, 1, 0], [0, 1, 1]], dtype=float)
    model = ItemKNN(neighbours=5, shrinkage=1.0).fit(
        _interactions(dense), rng=np.random.default_rng(0)
    )
    scores = model.score(np.array([0, 1]))
    s01 = 1 / (math.sqrt(2) + 1)
    s02 = 0.0
    s12 = 1 / (math.sqrt(2) + 1)
    np.testing.assert_allclose(scores, [[s01, s01, s02 + s12], [s01 + s02, s12, s12]], rtol=1e-6)


@pytest.mark.parametrize(("neighbours", "shrinkage"), [(1, 0.0), (3, 2.5), (100, 10.0)])
def test_matches_brute_force(neighbours, shrinkage):
    gen = np.random.default_rng(4)
    dense = (gen.random((25, 18)) < 0.3).astype(float)
    dense[:, 5] = 0  # an item nobody liked
    model = ItemKNN(neighbours=neighbours, shrinkage=shrinkage)
    model.fit(_interactions(dense), rng=np.random.default_rng(0))
    expected = _brute_force_scores(dense, neighbours, shrinkage)
    np.testing.assert_allclose(model.score(np.arange(25)), expected, rtol=1e-5, atol=1e-6)


def test_bad_hyperparameters_raise():
    data = _interactions(np.eye(3))
    for params in ({"neighbours": 0}, {"neighbours": 2.5}, {"shrinkage": -1.0}):
        with pytest.raises(ValueError, match=next(iter(params))):
            ItemKNN(**params).fit(data, rng=np.random.default_rng(0))


def test_is_a_strong_baseline_on_synthetic_data(tiny):
    from metrics import Evaluator, summarize

    model = ItemKNN().fit(tiny.train, rng=np.random.default_rng(0))
    evaluator = Evaluator(tiny.test.to_bool_csr(), tiny.exclusion("train-positives"), ks=(10,))
    assert summarize(evaluator.evaluate(model))["auc"] > 0.6
