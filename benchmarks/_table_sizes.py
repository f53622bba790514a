"""Shared inputs of the benchmarks that time one update loop against table size.

``test_bench_lightfm.py`` and ``test_bench_fm.py`` keep the work fixed (a
million positives or triplets) and change only the number of users and items,
from ML-1M's to ML-20M's: a cost that grew with the data alone would take the
same time per positive at both sizes.
"""

from __future__ import annotations

import numpy as np

SHAPES = {"ml-1m": (6040, 3706), "ml-20m": (138_493, 26_744)}


def draw_pairs(
    gen: np.random.Generator, num_users: int, num_items: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (user, item) draws: users uniform, items Zipf(0.8) popular in a shuffled order."""
    popularity = (np.arange(num_items) + 1.0) ** -0.8
    cdf = np.cumsum(popularity[gen.permutation(num_items)])
    cdf /= cdf[-1]
    users = gen.integers(0, num_users, n)
    items = np.minimum(np.searchsorted(cdf, gen.random(n)), num_items - 1)
    return users, items
