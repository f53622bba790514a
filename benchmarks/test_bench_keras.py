"""Fit and scoring time of the Keras adapters (``fast`` presets) on ML-100K.

Goals (issue "Keras adapters"): scoring all 943 users x 1,682 items well under
a second (``keras-deep`` runs its MLP on all 1.6 million pairs); the ``fast``
presets fit in a tenth of the ``notebook`` presets' time (about 11 s and 27 s
on 2 quiet cores; the side-by-side AUC comparison lives in the issue notes).
Run: ``python -m pytest benchmarks/test_bench_keras.py --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from bench.registry import default_registry

NAMES = ["keras-bilinear", "keras-deep"]


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.mark.parametrize("name", NAMES)
def test_fast_preset_fit(benchmark, registry, ml100k, name):
    """Whole fit of the ``fast`` preset, tracing included (it is part of every fit)."""
    seeds = iter(range(100))

    def fit():
        model = registry.make(name, "fast")
        return model.fit(ml100k.train, rng=np.random.default_rng(next(seeds)))

    model = benchmark.pedantic(fit, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["epochs"] = model.epochs
    benchmark.extra_info["seconds_per_epoch"] = benchmark.stats.stats.median / model.epochs


@pytest.mark.parametrize("name", NAMES)
def test_score_every_user(benchmark, registry, ml100k, name):
    """``score`` over the whole user x item matrix in one call."""
    model = registry.make(name, "fast", epochs=1)
    model.fit(ml100k.train, rng=np.random.default_rng(0))
    users = np.arange(ml100k.num_users)
    model.score(users)  # the first call compiles the deep model's scorer
    scores = benchmark(model.score, users)
    assert scores.shape == (ml100k.num_users, ml100k.num_items)
    median = benchmark.stats.stats.median
    assert median < 0.5, f"scoring every user took {median:.3f} s"
