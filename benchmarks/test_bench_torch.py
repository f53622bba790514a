"""Fit time of the PyTorch triplet models on ML-100K `ua`, side by side with LightFM WARP.

Goal (issue "PyTorch adapters"): ``torch-bilinear`` with its ``fast`` preset
reaches AUC >= 0.92 in no more fit time than LightFM WARP (64 components,
2 threads) takes for 10 epochs, both timed in the same run on the same
machine. The two fits alternate round by round, so a busy machine slows both
alike; the ratio is the ratio of the medians.

Run: ``python -m pytest benchmarks/test_bench_torch.py --benchmark-only``
(``-k preset`` for the fit times of every preset, which take about a minute).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lightfm = pytest.importorskip("lightfm")

from bench.registry import default_registry  # noqa: E402
from metrics import Evaluator, summarize  # noqa: E402
from models import torch_triplet  # noqa: E402

REGISTRY = default_registry()
ROUNDS = 7


def _summary(model, data) -> dict[str, float]:
    evaluator = Evaluator(data.test.to_bool_csr(), data.exclusion("train-positives"), ks=(10,))
    summary = summarize(evaluator.evaluate(model))
    return {"auc": float(summary["auc"]), "precision@10": float(summary["precision@10"])}


class _LightFMScores:
    """Full-catalogue scores of a fitted ``lightfm.LightFM`` (user biases do not change ranks)."""

    def __init__(self, model) -> None:
        self.model = model

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        m = self.model
        return m.user_embeddings[user_ids] @ m.item_embeddings.T + m.item_biases[None, :]


def test_torch_bilinear_fast_vs_lightfm_warp(benchmark, ml100k):
    """Median fit time of torch-bilinear (fast) over that of 10 LightFM WARP epochs."""
    interactions = ml100k.train.to_csr().tocoo()
    lightfm_seconds: list[float] = []
    fitted: dict[str, object] = {}
    seeds = iter(range(1000))

    def setup():
        # Untimed by pytest-benchmark: one LightFM fit, timed by hand, then a fresh model.
        seed = next(seeds)
        warp = lightfm.LightFM(no_components=64, loss="warp", random_state=seed)
        start = time.perf_counter()
        for _ in range(10):
            warp.fit_partial(interactions, epochs=1, num_threads=2)
        lightfm_seconds.append(time.perf_counter() - start)
        fitted["lightfm"] = warp
        return (REGISTRY.make("torch-bilinear", "fast"),), {"rng": np.random.default_rng(seed)}

    def fit(model, *, rng):
        # Timed with the sampler's set-up (fit builds it), as LightFM's fit includes its own.
        fitted["torch"] = model.fit(ml100k.train, rng=rng)

    benchmark.pedantic(fit, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)

    torch_median = benchmark.stats.stats.median
    lightfm_median = float(np.median(lightfm_seconds))
    ratio = torch_median / lightfm_median
    quality = _summary(fitted["torch"], ml100k)
    lightfm_quality = _summary(_LightFMScores(fitted["lightfm"]), ml100k)
    benchmark.extra_info.update(
        {
            "torch_fit_median_s": torch_median,
            "lightfm_10_epochs_median_s": lightfm_median,
            "ratio_to_lightfm": ratio,
            "auc": quality["auc"],
            "precision@10": quality["precision@10"],
            "lightfm_auc": lightfm_quality["auc"],
            "lightfm_precision@10": lightfm_quality["precision@10"],
            "torch_params": fitted["torch"].get_params(),
        }
    )
    assert quality["auc"] >= 0.92, quality
    assert ratio <= 1.0, (
        f"torch-bilinear fast fit {torch_median:.3f}s vs LightFM {lightfm_median:.3f}s"
    )


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("torch-bilinear", "fast"),
        ("torch-bilinear", "notebook"),
        ("torch-deep", "fast"),
        ("torch-deep", "notebook"),
    ],
    ids=lambda value: value,
)
def test_preset_fit(benchmark, ml100k, name, preset):
    """Fit seconds (one round: the notebook presets take tens of seconds), AUC, precision@10."""
    fitted = {}

    def setup():
        model = REGISTRY.make(name, preset)
        return (model,), {}

    def fit(model):
        fitted["model"] = model.fit(ml100k.train, rng=np.random.default_rng(0))

    benchmark.pedantic(fit, setup=setup, rounds=1, iterations=1)
    quality = _summary(fitted["model"], ml100k)
    benchmark.extra_info.update({"fit_s": benchmark.stats.stats.median, **quality})
    assert quality["auc"] >= 0.9, quality


@pytest.mark.slow
def test_torch_bilinear_fast_epoch_at_the_largest_scale_size(benchmark):
    """One ``torch-bilinear:fast`` epoch at the scale suite's largest size, against two older steps.

    Synthetic data at ML-20M shape (138,493 users x 26,744 items, 10 M
    positives, the last row of ``bench/suites/scale.toml``), one seed. An
    epoch is timed as the model's ``fit`` with ``epochs=1`` on a prepared
    sampler: drawing 9.7 M ``uniform-unseen`` triplets plus 9,495 SGD
    batches. Side by side, in alternating rounds, the same epoch with the
    PyTorch batch step (``models.torch_triplet._COMPILED = False``, the step
    before the compiled loop) and with that step applying the L2 decay
    eagerly to both whole tables on every batch (``lazy_decay = False``, the
    pre-issue-18 update); the ratios are ratios of medians.
    Goal (issue 18): at most 7 s per epoch on 2 cores.
    """
    from bench.synthetic import synthetic

    data = synthetic(num_users=138_493, num_items=26_744, num_positives=10_000_000, seed=0)
    train = data.train
    start = time.perf_counter()
    sampler = REGISTRY.make("torch-bilinear", "fast").make_sampler(train)
    setup_seconds = time.perf_counter() - start
    reference_seconds: dict[str, list[float]] = {"torch_step": [], "eager_decay": []}
    seeds = iter(range(1000))

    def fit_reference(kind: str, seed: int) -> None:
        model = REGISTRY.make("torch-bilinear", "fast")
        if kind == "eager_decay":
            model.lazy_decay = False  # the torch step, decaying the whole tables
        start = time.perf_counter()
        model.fit(train, rng=np.random.default_rng(seed), epochs=1, sampler=sampler)
        reference_seconds[kind].append(time.perf_counter() - start)

    def setup():
        seed = next(seeds)
        previous = torch_triplet._COMPILED
        torch_triplet._COMPILED = False
        try:
            for kind in reference_seconds:
                fit_reference(kind, seed)
        finally:
            torch_triplet._COMPILED = previous
        return (REGISTRY.make("torch-bilinear", "fast"), seed), {}

    def epoch(model, seed):
        model.fit(train, rng=np.random.default_rng(seed), epochs=1, sampler=sampler)

    REGISTRY.make("torch-bilinear", "fast").warm_up()  # the compiled loop, loaded untimed
    benchmark.pedantic(epoch, setup=setup, rounds=3, iterations=1)
    median = benchmark.stats.stats.median
    torch_median = float(np.median(reference_seconds["torch_step"]))
    eager_median = float(np.median(reference_seconds["eager_decay"]))
    info = {
        "train_positives": len(train),
        "sampler_setup_s": setup_seconds,
        "epoch_median_s": median,
        "torch_step_epoch_median_s": torch_median,
        "eager_decay_epoch_median_s": eager_median,
        "speedup_over_torch_step": torch_median / median,
        "speedup_over_eager_decay": eager_median / median,
        "us_per_triplet": median / len(train) * 1e6,
    }
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v:.4g}" for k, v in info.items()))
    assert median <= 7.0, f"one epoch took {median:.1f} s (goal 7 s)"
