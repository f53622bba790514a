"""Speed and memory of the metrics: ML-100K shape, LightFM side by side, ML-20M shape.

Run with ``python -m pytest benchmarks/test_bench_metrics.py --benchmark-only``
(add ``-m "not slow"`` to skip the ML-20M run, which takes a few minutes
including about a minute to generate its data).
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

from bench.synthetic import synthetic, synthetic_interactions
from metrics import Evaluator, evaluate, roc_auc, summarize

KS = (5, 10, 20)
DIM = 64
ROUNDS = 30  # the machine is shared: many rounds, judged by the median


def _factors(num_users: int, num_items: int, seed: int):
    gen = np.random.default_rng(seed)
    users = (gen.standard_normal((num_users, DIM)) / 8).astype(np.float32)
    items = (gen.standard_normal((num_items, DIM)) / 8).astype(np.float32)
    user_bias = gen.standard_normal(num_users).astype(np.float32)
    item_bias = gen.standard_normal(num_items).astype(np.float32)
    return users, items, user_bias, item_bias


@pytest.fixture(scope="module")
def ml100k_shape():
    """943 x 1,682, about 6 test positives and 53 excluded (train) items per user."""
    data = synthetic(num_users=943, num_items=1682, num_positives=943 * 59, test_per_user=6, seed=0)
    users, items, user_bias, item_bias = _factors(943, 1682, seed=1)
    scores = users @ items.T + user_bias[:, None] + item_bias[None, :]
    return {
        "test": data.test.to_bool_csr(),
        "exclude": data.exclusion("train-positives"),
        "factors": (users, items, user_bias, item_bias),
        "scores": np.ascontiguousarray(scores, dtype=np.float32),
        "popularity": np.broadcast_to(
            data.train.item_counts().astype(np.float32), scores.shape
        ).copy(),
    }


def test_evaluate_ml100k_shape(benchmark, ml100k_shape):
    """All metrics, ks (5, 10, 20), one call: target median <= 50 ms on 2 cores."""
    scores, test, exclude = ml100k_shape["scores"], ml100k_shape["test"], ml100k_shape["exclude"]
    benchmark.extra_info.update(
        shape=list(scores.shape),
        test_per_user=test.nnz / scores.shape[0],
        excluded_per_user=exclude.nnz / scores.shape[0],
    )
    frame = benchmark.pedantic(
        evaluate, args=(scores, test, exclude), kwargs={"ks": KS}, rounds=ROUNDS, warmup_rounds=3
    )
    assert len(frame) == 943
    median = benchmark.stats.stats.median
    benchmark.extra_info["median_ms"] = median * 1e3
    assert median <= 0.050, f"median {median * 1e3:.1f} ms is over the 50 ms target"


def test_evaluate_ml100k_shape_popularity_ties(benchmark, ml100k_shape):
    """Same shape, popularity scores: large tie groups (expected-value formulas for ties)."""
    scores, test, exclude = (
        ml100k_shape["popularity"],
        ml100k_shape["test"],
        ml100k_shape["exclude"],
    )
    frame = benchmark.pedantic(
        evaluate, args=(scores, test, exclude), kwargs={"ks": KS}, rounds=ROUNDS, warmup_rounds=3
    )
    benchmark.extra_info["median_ms"] = benchmark.stats.stats.median * 1e3
    assert 0.5 < frame["auc"].mean() < 1.0


def _median_seconds(fn, repeats: int = ROUNDS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_lightfm_auc_score_side_by_side(benchmark, ml100k_shape):
    """LightFM's ``auc_score`` (1 thread) on the same factors, biases and data.

    LightFM computes the scores itself, so ours is timed both from precomputed
    scores (``evaluate``, every metric) and including the scoring matmul
    (``roc_auc``). The ratios are stored in ``extra_info``.
    """
    lightfm = pytest.importorskip("lightfm")
    from lightfm.evaluation import auc_score

    users, items, user_bias, item_bias = ml100k_shape["factors"]
    test, exclude = ml100k_shape["test"], ml100k_shape["exclude"]
    num_users, num_items = test.shape
    model = lightfm.LightFM(no_components=DIM, random_state=0)
    model._initialize(DIM, num_items, num_users)  # allocate, then overwrite with our factors
    model.user_embeddings[:] = users
    model.item_embeddings[:] = items
    model.user_biases[:] = user_bias
    model.item_biases[:] = item_bias
    test32, exclude32 = test.astype(np.float32), exclude.astype(np.float32)

    lightfm_auc = benchmark.pedantic(
        auc_score,
        args=(model, test32),
        kwargs={"train_interactions": exclude32, "num_threads": 1},
        rounds=ROUNDS,
        warmup_rounds=1,
    )

    ours = roc_auc(ml100k_shape["scores"], test, exclude)
    # LightFM ranks in float32 with its own summation order: agree to float32 precision.
    np.testing.assert_allclose(lightfm_auc, ours, atol=1e-3)

    def ours_with_scoring():
        scores = users @ items.T + user_bias[:, None] + item_bias[None, :]
        return roc_auc(scores, test, exclude)

    evaluate_s = _median_seconds(lambda: evaluate(ml100k_shape["scores"], test, exclude, ks=KS))
    scoring_s = _median_seconds(ours_with_scoring)
    lightfm_s = benchmark.stats.stats.median
    benchmark.extra_info.update(
        lightfm_auc_ms=lightfm_s * 1e3,
        ours_evaluate_all_metrics_ms=evaluate_s * 1e3,
        ours_score_and_auc_ms=scoring_s * 1e3,
        ratio_lightfm_over_ours_evaluate=lightfm_s / evaluate_s,
        ratio_lightfm_over_ours_score_and_auc=lightfm_s / scoring_s,
        mean_auc=float(ours.mean()),
    )


class _PeakRSS:
    """Samples the resident set size in a thread; ``growth`` is the peak minus the start."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = self._process.memory_info().rss
        self.peak_rss = self.start_rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak_rss - self.start_rss


class _FactorScorer:
    """``score(user_ids) = users[user_ids] @ items.T`` in float32; times itself."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users = users
        self.items_t = np.ascontiguousarray(items.T)
        self.seconds = 0.0

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.users[user_ids] @ self.items_t
        self.seconds += time.perf_counter() - start
        return out


@pytest.mark.slow
def test_evaluator_ml20m_shape(benchmark):
    """138,000 users x 27,000 items, ~70 positives per user (20% test, the rest excluded).

    Full evaluation through the Evaluator in blocks of 1,024 users, scores from
    64-d float32 factors. Targets: <= 120 s and <= 2 GiB peak RSS growth.
    """
    pytest.importorskip("psutil")
    num_users, num_items = 138_000, 27_000
    data = synthetic_interactions(num_users, num_items, num_users * 70, rank=16, seed=0)
    gen = np.random.default_rng(1)
    is_test = gen.random(len(data)) < 0.2
    shape = (num_users, num_items)

    def bool_csr(rows, cols):
        ones = np.ones(rows.shape[0], dtype=bool)
        return sp.csr_matrix((ones, (rows, cols)), shape=shape)

    test = bool_csr(data.user_ids[is_test], data.item_ids[is_test])
    exclude = bool_csr(data.user_ids[~is_test], data.item_ids[~is_test])
    del data, is_test
    users, items, _, _ = _factors(num_users, num_items, seed=2)
    evaluator = Evaluator(test, exclude, ks=KS, block_size=1024)
    scorer = _FactorScorer(users, items)
    result = {}

    def run():
        with _PeakRSS() as rss:
            start = time.perf_counter()
            result["frame"] = evaluator.evaluate(scorer)
            result["seconds"] = time.perf_counter() - start
        result["rss"] = rss

    benchmark.pedantic(run, rounds=1, iterations=1)
    frame, seconds, rss = result["frame"], result["seconds"], result["rss"]
    benchmark.extra_info.update(
        evaluated_users=len(frame),
        test_positives=int(test.nnz),
        excluded=int(exclude.nnz),
        seconds=seconds,
        scoring_seconds=scorer.seconds,
        metric_seconds=seconds - scorer.seconds,
        peak_rss_growth_gib=rss.growth / 2**30,
        mean_auc=float(summarize(frame)["auc"]),
    )
    assert len(frame) == evaluator.evaluated_users.size > 130_000
    assert abs(summarize(frame)["auc"] - 0.5) < 0.01  # random factors
    assert rss.growth <= 2 * 2**30, f"peak RSS grew by {rss.growth / 2**30:.2f} GiB"
    assert seconds <= 120, f"took {seconds:.1f} s"
