"""The compiled fm step (ids only, lazy Adam): its cost per triplet against table size.

Run with ``python -m pytest benchmarks/test_bench_fm.py --benchmark-only -s``.
One epoch of :func:`models._fm_compiled.ids_only_epoch` (64 factors, batch 256,
the ``fm:ids-only-lazy`` preset's rule and rate) over the same number of
triplets, with ML-1M-sized and ML-20M-sized tables, each with the step's
prefetching (``PREFETCH_AHEAD``) and without it (``ahead=0``), interleaved in
one process so that all four see the same machine state.

At a fixed number of triplets a step whose cost grew with the data only would
take the same time per triplet at both sizes; the ratio is the growth that
``FactorizationMachine.fit_scaling`` states for the sparse update rules, and
the ``ahead=0`` columns show what the prefetching buys.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _table_sizes import SHAPES, draw_pairs

from models import _fm_compiled as compiled

TRIPLETS = 1_000_000
FACTORS, BATCH = 64, 256


def _triplets(num_users: int, num_items: int, seed: int = 0):
    """Users uniform, positives Zipf(0.8) popular, negatives uniform (the ``uniform`` sampler)."""
    gen = np.random.default_rng(seed)
    users, pos = draw_pairs(gen, num_users, num_items, TRIPLETS)
    neg = gen.integers(0, num_items, TRIPLETS)
    return users.astype(np.int64), pos.astype(np.int64), neg.astype(np.int64)


def _us_per_triplet(num_users: int, triplets, table: np.ndarray, ahead: int) -> float:
    rows, width = table.shape
    table = table.copy()
    moments = np.zeros((rows, 2, width), np.float32)
    scratch = compiled.make_scratch(rows, BATCH, width)
    objective = (num_users, False, 1.0, 0.01)  # BPR, the preset's l2_reg
    start = time.perf_counter()
    compiled.ids_only_epoch(
        table, triplets, BATCH, objective, compiled.LAZY_ADAM, 0.005, moments, 0, scratch, ahead
    )
    return (time.perf_counter() - start) / TRIPLETS * 1e6


def test_fm_lazy_adam_cost_per_triplet_against_table_size(benchmark):
    """us per triplet at ML-1M-sized and ML-20M-sized tables, with and without prefetching."""
    compiled.warm_up()
    gen = np.random.default_rng(1)
    cases = {}
    for name, (num_users, num_items) in SHAPES.items():
        table = gen.normal(0, 0.01, (num_users + num_items, FACTORS + 1)).astype(np.float32)
        triplets = _triplets(num_users, num_items)
        for ahead in (compiled.PREFETCH_AHEAD, 0):
            cases[f"{name}_ahead{ahead}"] = (num_users, triplets, table, ahead)
    times: dict[str, list[float]] = {case: [] for case in cases}

    def run():
        for case, args in cases.items():  # interleaved: the same machine state
            times[case].append(_us_per_triplet(*args))

    benchmark.pedantic(run, rounds=3, iterations=1)
    median = {case: float(np.median(values)) for case, values in times.items()}
    ahead = compiled.PREFETCH_AHEAD
    info = {
        "triplets": TRIPLETS,
        **{f"us_per_triplet_{case}": value for case, value in median.items()},
        "growth_ml20m_over_ml1m": median[f"ml-20m_ahead{ahead}"] / median[f"ml-1m_ahead{ahead}"],
        "growth_without_prefetch": median["ml-20m_ahead0"] / median["ml-1m_ahead0"],
        "prefetch_speedup_ml20m": median["ml-20m_ahead0"] / median[f"ml-20m_ahead{ahead}"],
    }
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v:.4g}" for k, v in info.items()))
    # The two claims the adapter makes: the cost per triplet grows with the tables
    # (fit_scaling), and prefetching cuts it where the tables outgrow the caches.
    assert info["growth_ml20m_over_ml1m"] > 1.2, info
    assert info["prefetch_speedup_ml20m"] > 1.1, info


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "--benchmark-only", "-s"])
