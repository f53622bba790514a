"""The synthetic generator: shape, determinism, structure a model can learn."""

from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.synthetic import synthetic, synthetic_interactions


def test_shape_and_no_duplicate_pairs():
    x = synthetic_interactions(100, 300, 2_000, seed=1)
    assert x.shape == (100, 300) and len(x) == 2_000
    keys = x.user_ids.astype(np.int64) * 300 + x.item_ids
    assert np.unique(keys).size == len(x)
    assert x.user_counts().min() >= 2


def test_heavy_users_are_capped_below_the_catalogue_size():
    x = synthetic_interactions(100, 50, 2_000, seed=1)
    assert x.user_counts().max() <= 49
    assert len(x) <= 2_000


def test_sparse_path_for_large_catalogues():
    x = synthetic_interactions(500, 5_000, 20_000, seed=2)
    assert x.shape == (500, 5_000)
    assert 0.99 * 20_000 <= len(x) <= 20_000
    keys = x.user_ids.astype(np.int64) * 5_000 + x.item_ids
    assert np.unique(keys).size == len(x)


def test_deterministic_per_seed():
    a, b, c = synthetic(seed=3), synthetic(seed=3), synthetic(seed=4)
    np.testing.assert_array_equal(a.train.item_ids, b.train.item_ids)
    assert a.sha256 == b.sha256 != c.sha256


def test_split_never_overlaps_and_every_user_is_evaluated():
    d = synthetic(num_users=80, num_items=60, num_positives=1_600, test_per_user=2, seed=5)
    train = set(zip(d.train.user_ids.tolist(), d.train.item_ids.tolist()))
    test = set(zip(d.test.user_ids.tolist(), d.test.item_ids.tolist()))
    assert not train & test
    assert d.eval_users().size == 80
    per_user = d.train.user_counts() + d.test.user_counts()
    assert d.summary()["test_positives"] == np.minimum(2, per_user - 1).sum()


def test_popularity_is_skewed_and_taste_is_low_rank():
    x = synthetic_interactions(1_000, 400, 30_000, seed=6)
    counts = np.sort(x.item_counts())[::-1]
    assert counts[:40].sum() > 3 * counts[-40:].sum()  # power-law head
    # Low-rank structure: a rank-8 SVD explains far more than for shuffled data.
    dense = x.to_csr().toarray()
    shuffled = np.random.default_rng(0).permuted(dense, axis=1)
    top = np.linalg.svd(dense, compute_uv=False)[:8] ** 2
    top_shuffled = np.linalg.svd(shuffled, compute_uv=False)[:8] ** 2
    assert top.sum() > 1.2 * top_shuffled.sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_users": 0}, "num_users"),
        ({"num_items": 2}, "num_items must be >= 3"),
        ({"num_positives": 10}, "below 2 per user"),
        ({"popularity_exponent": -1.0}, "popularity_exponent"),
    ],
)
def test_bad_sizes_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_interactions(**{"num_users": 10, "num_items": 20, "num_positives": 100, **kwargs})
