"""Shared fixtures: seeded generators, tiny synthetic data, the real ML-100K split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench.datasets.dataset import SideFeatures
from bench.datasets.synthetic import synthetic


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny():
    """A tiny synthetic dataset (60 users, 80 items) every model can fit in a second."""
    return synthetic(num_users=60, num_items=80, num_positives=1_200, test_per_user=2, seed=7)


@pytest.fixture(scope="session")
def tiny_features(tiny):
    """Random one-hot user (4 groups) and item (5 groups + 3 flags) side features for `tiny`."""
    gen = np.random.default_rng(3)
    user_group = gen.integers(0, 4, tiny.num_users)
    users = sp.csr_matrix(
        (np.ones(tiny.num_users), (np.arange(tiny.num_users), user_group)),
        shape=(tiny.num_users, 4),
    )
    item_group = gen.integers(0, 5, tiny.num_items)
    items = sp.hstack(
        [
            sp.csr_matrix(
                (np.ones(tiny.num_items), (np.arange(tiny.num_items), item_group)),
                shape=(tiny.num_items, 5),
            ),
            sp.csr_matrix(gen.random((tiny.num_items, 3)) < 0.3),
        ]
    ).tocsr()
    return (
        SideFeatures(users, tuple(f"group={g}" for g in range(4))),
        SideFeatures(items, tuple([f"kind={g}" for g in range(5)] + ["a", "b", "c"])),
    )


@pytest.fixture(scope="session")
def ml100k():
    """The real MovieLens 100K `ua` split with ratings >= 4 as positives.

    The data is fetched by the test session's set-up (``rsbench data ml-100k``);
    run with ``-m "not realdata"`` on a machine that cannot fetch it.
    """
    from bench.datasets import load_dataset

    return load_dataset("ml-100k", split="ua", min_rating=4.0)
