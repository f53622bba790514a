"""Throughput of the common negative sampler on ML-100K positives.

Goal (issue "Harness core"): >= 5 million triplets per second for
``uniform-unseen``, i.e. an epoch of 49,906 triplets in <= 10 ms.
Run: ``python -m pytest benchmarks/test_bench_sampler.py --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.sampler import NegativeSampler


@pytest.mark.parametrize("strategy", ["uniform", "uniform-unseen", "popularity"])
def test_sampler_epoch(benchmark, ml100k, strategy):
    sampler = NegativeSampler(ml100k.train, strategy=strategy)
    rng = np.random.default_rng(0)
    triplets = benchmark(sampler.sample, rng)
    assert len(triplets) == len(ml100k.train) == 49_906
    median = benchmark.stats.stats.median
    rate = len(triplets) / median
    benchmark.extra_info["triplets_per_second"] = rate
    benchmark.extra_info["epoch_ms"] = median * 1e3
    if strategy == "uniform-unseen":
        assert rate >= 5e6, f"{rate:,.0f} triplets/s is below the 5M/s goal"


def test_sampler_hard_epoch(benchmark, ml100k):
    """WARP-style hard negatives (10 candidates) with a dot-product scorer."""
    rng = np.random.default_rng(0)
    users = rng.standard_normal((ml100k.num_users, 64)).astype(np.float32)
    items = rng.standard_normal((ml100k.num_items, 64)).astype(np.float32)

    def score_pairs(user_ids, item_ids):
        return np.einsum("ij,ij->i", users[user_ids], items[item_ids])

    sampler = NegativeSampler(ml100k.train, strategy="hard", candidates=10)
    triplets = benchmark(sampler.sample, rng, score_pairs=score_pairs)
    benchmark.extra_info["triplets_per_second"] = len(triplets) / benchmark.stats.stats.median
