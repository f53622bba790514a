"""Why LightFM's fit time grows faster than the data: its cost per positive vs table size.

Run with ``python -m pytest benchmarks/test_bench_lightfm.py --benchmark-only -s``.
The scale suite gives ``lightfm-warp`` a fit-time exponent above 1.1
(``results/baseline/scale``); ``LightFMModel.fit_scaling`` says why, and this
benchmark is the evidence: one epoch of WARP (64 components, Adagrad, 1 thread)
on the same number of positives with small and with ML-20M-sized tables. At a
fixed number of positives a linear-cost fit would take the same time per
positive whatever the number of users and items.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from _table_sizes import SHAPES, draw_pairs

POSITIVES = 1_000_000


def _interactions(num_users: int, num_items: int, seed: int = 0) -> sp.coo_matrix:
    """About POSITIVES distinct (user, item) pairs, Zipf(0.8) item popularity."""
    users, items = draw_pairs(np.random.default_rng(seed), num_users, num_items, POSITIVES)
    matrix = sp.csr_matrix(
        (np.ones(POSITIVES, np.float32), (users, items)), shape=(num_users, num_items)
    )
    matrix.data[:] = 1.0
    return matrix.tocoo()


def _us_per_positive(interactions: sp.coo_matrix, max_sampled: int) -> float:
    from lightfm import LightFM

    model = LightFM(
        no_components=64,
        loss="warp",
        learning_schedule="adagrad",
        learning_rate=0.05,
        max_sampled=max_sampled,
        random_state=0,
    )
    start = time.perf_counter()
    model.fit_partial(interactions, epochs=1, num_threads=1)
    return (time.perf_counter() - start) / interactions.nnz * 1e6


@pytest.mark.parametrize("max_sampled", [10, 1])
def test_lightfm_cost_per_positive_grows_with_table_size(benchmark, max_sampled):
    """us per positive at ML-1M-sized and ML-20M-sized tables, same positives, side by side.

    ``max_sampled=1`` takes one negative per positive, so the growth is not WARP's
    rejection sampling. The ratio is stored in ``extra_info``.
    """
    pytest.importorskip("lightfm")
    data = {name: _interactions(*shape) for name, shape in SHAPES.items()}
    times: dict[str, list[float]] = {name: [] for name in SHAPES}

    def run():
        for name, interactions in data.items():  # interleaved: the same machine state
            times[name].append(_us_per_positive(interactions, max_sampled))

    benchmark.pedantic(run, rounds=3, iterations=1)
    small, large = (float(np.median(times[name])) for name in SHAPES)
    info = {
        "max_sampled": max_sampled,
        "positives": {name: int(d.nnz) for name, d in data.items()},
        "us_per_positive_ml1m_tables": small,
        "us_per_positive_ml20m_tables": large,
        "ratio": large / small,
    }
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
