"""The metric registry: one function plus one registration reaches runs.csv, report and gate;
beyond-accuracy metrics by hand and by brute force; COO duplicates."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.datasets.synthetic import synthetic
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import Registry
from bench.results import ResultStore, load_results
from bench.results.regress import regress
from bench.results.report import build_report
from metrics import METRICS, Evaluator, Metric, MetricRegistry, evaluate, metric_columns
from metrics.beyond import topk_entries, topk_inclusion
from metrics.registry import Margin

OPTIONS = {"num_users": 60, "num_items": 40, "num_positives": 900, "seed": 2}


def loader(name, split, min_rating, **options):
    return synthetic(**options)


def _folder(path: Path, models=("popularity", "random"), seeds=(0, 1)) -> Path:
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.register("random", "models.baselines:RandomModel")
    runner = Runner(reg, loader=loader, curves=False)
    store = ResultStore(path)
    store.write_manifest({"command": "test", "experiment": "registry"})
    for model in models:
        for seed in seeds:
            spec = RunSpec(
                model=model,
                seed=seed,
                dataset="synthetic",
                split="random",
                min_rating=None,
                dataset_options=OPTIONS,
            )
            result = runner.run(spec)
            assert result.ok, result.row["error"]
            store.add(result)
    return path


# -- the one-registration promise -------------------------------------------------------
def first_hit_share(inputs, k):
    """A new per-user metric: share of a user's positives that rank in the top half."""
    ranked = inputs.ranked
    half = ranked.num_cand / 2.0
    inside = np.clip(half[ranked.owner] - ranked.above, 0.0, ranked.size) / ranked.size
    hits = np.bincount(ranked.owner, weights=ranked.pos * inside, minlength=ranked.rows.size)
    return hits / ranked.num_pos


@pytest.fixture
def new_metric():
    METRICS.register(
        Metric(
            "tophalf",
            first_hit_share,
            headline=True,
            margin=Margin(0.005),
            description="test only",
        )
    )
    yield "tophalf"
    METRICS.unregister("tophalf")


def test_a_new_metric_reaches_runs_report_and_gate(new_metric, tmp_path):
    base = _folder(tmp_path / "base")
    runs = load_results(base)["runs"]
    per_user = load_results(base)["per_user"]
    assert new_metric in runs and new_metric in per_user
    # Hand check on one run: the tie-free random model's value is a share in [0, 1].
    assert ((per_user[new_metric] >= 0) & (per_user[new_metric] <= 1)).all()
    report = build_report(base, n_boot=200)
    assert f" {new_metric} |" in report.markdown.split("#### Quality")[1].splitlines()[4]
    assert set(report.quality["metric"]) >= {new_metric}
    assert (report.paired["metric"] == new_metric).any()
    outcome = regress(base, base)
    checks = outcome.to_frame()
    assert (checks["check"] == new_metric).sum() == 2 and outcome.passed
    # Made worse on the new metric only: the gate fails on it.
    worse = tmp_path / "worse"
    shutil.copytree(base, worse)
    # As a real run would: the per-user values change, and runs.csv's means with them.
    edited = pd.read_csv(worse / "runs.csv", dtype={"run_id": str})
    per_user = pd.read_parquet(worse / "per_user.parquet")
    ids = edited["label"] == "random"
    mine = per_user["run_id"].astype(str).isin(set(edited.loc[ids, "run_id"]))
    per_user.loc[mine, new_metric] -= 0.1
    means = per_user[mine].groupby(per_user["run_id"].astype(str))[new_metric].mean()
    edited.loc[ids, new_metric] = edited.loc[ids, "run_id"].map(means)
    edited.to_csv(worse / "runs.csv", index=False)
    per_user.to_parquet(worse / "per_user.parquet", index=False)
    failed = regress(worse, base)
    assert [(c.label, c.check) for c in failed.failures] == [("random", new_metric)]


def test_registry_rejects_duplicates_and_bad_metrics():
    reg = MetricRegistry()
    reg.register(Metric("x", lambda i, k: np.zeros(0), margin=Margin(0.01)))
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Metric("x", lambda i, k: np.zeros(0), margin=Margin(0.01)))
    with pytest.raises(ValueError, match="must match"):
        Metric("Bad Name", lambda i, k: None)
    with pytest.raises(ValueError, match="combine"):
        Metric("c", lambda i, k: None, scope="catalogue", margin=Margin(0.01))
    with pytest.raises(ValueError, match="needs a margin"):
        Metric("m", lambda i, k: None)
    with pytest.raises(ValueError, match="family"):
        Metric("f", lambda i, k: None, family="other", gated=False)
    with pytest.raises(KeyError, match="known: x"):
        reg.get("y")


def test_column_order_and_lookup():
    assert metric_columns((5, 10)) == [
        "auc",
        *[f"{m}@5" for m in ("precision", "recall", "map", "ndcg", "hit")],
        *[f"{m}@10" for m in ("precision", "recall", "map", "ndcg", "hit")],
        "mrr",
    ]
    assert METRICS.columns((10,), scope="catalogue") == ["coverage@10"]
    assert METRICS.columns((10,), available=("item_popularity",))[-1] == "popularity@10"
    assert METRICS.metric_of("ndcg@20")[0].name == "ndcg" and METRICS.metric_of("ndcg@x") is None
    assert not METRICS.is_metric("fit_seconds") and METRICS.is_metric("coverage@7")
    assert METRICS.higher_is_better("auc") and not METRICS.higher_is_better("popularity@10")


# -- beyond accuracy by hand and brute force -----------------------------------------------
def test_inclusion_weights_by_hand():
    scores = np.array([[3.0, 2.0, 2.0, 1.0]])
    test = sp.csr_matrix(np.array([[0, 1, 0, 0]], dtype=bool))
    np.testing.assert_allclose(topk_inclusion(scores, test, None, 2), [[1, 0.5, 0.5, 0]])
    # Pessimistic: the tied negative (item 2) takes the slot before the tied positive.
    np.testing.assert_allclose(topk_inclusion(scores, test, None, 2, "pessimistic"), [[1, 0, 1, 0]])
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=bool))
    np.testing.assert_allclose(topk_inclusion(scores, test, exclude, 2), [[0, 1, 1, 0]])
    # Fewer candidates than k: all of them, nothing else.
    np.testing.assert_allclose(topk_inclusion(scores, test, exclude, 9), [[0, 1, 1, 1]])


@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
@pytest.mark.parametrize("ties", ["expected", "pessimistic"])
def test_sparse_inclusion_equals_the_dense_reference(ties, kernel, monkeypatch):
    """The sparse top-k (compiled selection, or the numpy chunk-maximum bound) against the
    old dense pass."""
    from metrics import ranking
    from metrics._reference import reference_topk_inclusion

    monkeypatch.setattr(ranking, "_KERNEL", kernel)

    gen = np.random.default_rng(7)
    for trial in range(200):
        n, m = int(gen.integers(1, 6)), int(gen.integers(1, 60))
        if trial % 3 == 0:  # heavy ties (integer scores), as popularity gives
            scores = gen.integers(0, 4, (n, m)).astype(np.float32)
        elif trial % 3 == 1:
            scores = gen.standard_normal((n, m)).astype(np.float32)
        else:  # sorted rows: the chunk-maximum bound at its loosest
            scores = np.sort(gen.standard_normal((n, m)), axis=1)
        test = sp.csr_matrix(gen.random((n, m)) < 0.3)
        exclude = sp.csr_matrix((gen.random((n, m)) < gen.random()) & ~test.toarray())
        ks = (1, 3, 7, 80)
        for ex in (None, exclude):
            entries = topk_entries(scores, test, ex, ks, ties)
            for k in ks:
                dense = np.zeros((n, m))
                rows, cols, weights = entries[k]
                dense[rows, cols] = weights
                expected = reference_topk_inclusion(scores, test, ex, k, ties)
                np.testing.assert_allclose(dense, expected, rtol=0, atol=1e-15)
                np.testing.assert_allclose(topk_inclusion(scores, test, ex, k, ties), expected)


@pytest.mark.parametrize("cap_factor", [0, 4])
def test_compiled_selection_equals_the_numpy_bound_entry_for_entry(cap_factor, monkeypatch):
    """Same entries, order and weights; cap 0 sends rows with ties past 16 to the bound."""
    from metrics import beyond, ranking

    gen = np.random.default_rng(11)
    monkeypatch.setattr(beyond, "_COMPILED_CAP_FACTOR", cap_factor)
    for trial in range(120):
        n, m = int(gen.integers(1, 30)), int(gen.integers(1, 400))
        if trial % 4 == 0:
            scores = gen.integers(0, int(gen.integers(1, 6)), (n, m)).astype(np.float32)
        elif trial % 4 == 1:
            scores = gen.standard_normal((n, m)).astype(np.float32)
            scores[gen.random((n, m)) < 0.3] = -0.0  # -0.0 ties +0.0
        elif trial % 4 == 2:
            scores = gen.standard_normal((n, m))
        else:
            scores = gen.integers(0, 3, (n, m))  # integers, ranked as float64
        test = sp.csr_matrix(gen.random((n, m)) < 0.1)
        exclude = sp.csr_matrix(gen.random((n, m)) < gen.random())
        ks = tuple(sorted({int(k) for k in gen.integers(1, 60, 3)}))
        for ex in (None, exclude):
            for ties in ("expected", "pessimistic"):
                compiled = topk_entries(scores, test, ex, ks, ties)
                monkeypatch.setattr(ranking, "_KERNEL", "numpy")
                bound = topk_entries(scores, test, ex, ks, ties)
                monkeypatch.setattr(ranking, "_KERNEL", None)
                for k in ks:
                    for ours, theirs in zip(compiled[k], bound[k]):
                        np.testing.assert_array_equal(ours, theirs)


def test_inclusion_refuses_scores_that_are_not_finite():
    test = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=bool))
    for bad in (np.nan, -np.inf, np.inf):
        scores = np.array([[1.0, 2.0, 3.0], [1.0, bad, 3.0]])
        with pytest.raises(ValueError, match="finite"):
            topk_inclusion(scores, test, None, 1)


def _brute(scores, test, k, item_popularity):
    """Enumerate every order of tied items: exact expected coverage and popularity."""
    n, m = scores.shape
    per_user_orders = []
    for row in scores:
        groups = [np.flatnonzero(row == v) for v in sorted(set(row), reverse=True)]
        orders = [
            np.concatenate(p) for p in itertools.product(*map(itertools.permutations, groups))
        ]
        per_user_orders.append(orders)
    covered, popularity = [], np.zeros(n)
    for combo in itertools.product(*per_user_orders):
        tops = [np.asarray(order[:k]) for order in combo]
        covered.append(len(set(np.concatenate(tops))) / m)
    for u, orders in enumerate(per_user_orders):
        popularity[u] = np.mean([item_popularity[np.asarray(o[:k])].mean() for o in orders])
    return float(np.mean(covered)), popularity


class _Table:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        return self.scores[user_ids]


def test_coverage_and_popularity_match_brute_force(rng):
    for trial in range(6):
        scores = rng.integers(0, 3, size=(3, 5)).astype(float)
        dense = rng.random((3, 5)) < 0.4
        dense[np.arange(3), rng.integers(0, 5, 3)] = True
        test = sp.csr_matrix(dense)
        popularity = rng.random(5)
        k = 1 + trial % 3
        evaluator = Evaluator(test, None, ks=(k,), item_popularity=popularity)
        frame = evaluator.evaluate(_Table(scores))
        want_cov, want_pop = _brute(scores, test, k, popularity)
        assert frame.attrs["catalogue"][f"coverage@{k}"] == pytest.approx(want_cov)
        np.testing.assert_allclose(frame[f"popularity@{k}"], want_pop)


def test_coverage_by_hand_with_ties():
    # Two users tie items 0 and 1 for one slot: each item is listed with 1 - 0.5^2 = 0.75.
    scores = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    test = sp.csr_matrix(np.ones((2, 3), dtype=bool))
    frame = evaluate(scores, test, ks=(1,))
    assert frame.attrs["catalogue"]["coverage@1"] == pytest.approx(1.5 / 3)


def test_coo_duplicates_count_once():
    """Issue 12.10: a numeric COO with a repeated entry is one positive, as documented."""
    coo = sp.coo_matrix(([1, 1], ([0, 0], [0, 0])), shape=(1, 3))
    frame = evaluate(np.array([[0.9, 0.5, 0.1]]), coo)
    single = evaluate(np.array([[0.9, 0.5, 0.1]]), sp.csr_matrix(np.array([[1, 0, 0]])))
    pd.testing.assert_frame_equal(frame, single)
    assert frame["auc"].iloc[0] == 1.0
    with pytest.raises(ValueError, match="stores the value 2"):
        evaluate(np.array([[0.9, 0.5, 0.1]]), sp.coo_matrix(([2], ([0], [0])), shape=(1, 3)))
