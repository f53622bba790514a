"""Property tests of the ranking metrics against brute force and scikit-learn on random data."""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import metrics.ranking as ranking
from metrics import evaluate, evaluated_rows, metric_columns

sklearn_metrics = pytest.importorskip("sklearn.metrics")

KS = (1, 2, 3, 5, 8)
PATHS = ("compare", "sort")


@contextmanager
def kernel(path: str):
    """Force the comparison kernel or the sort kernel for every row."""
    value = 10**9 if path == "compare" else 0
    with mock.patch.object(ranking, "_SORT_MIN_GROUPS", value):
        yield


# ---------------------------------------------------------------------------
# Brute force: metrics of one explicit ranking, then averages over tie orders
# ---------------------------------------------------------------------------
def metrics_of_ranking(rel: list[int], ks=KS) -> dict[str, float]:
    """Every metric of one user from the relevance (0/1) of the candidates in rank order."""
    n_pos = sum(rel)
    n_neg = len(rel) - n_pos
    out: dict[str, float] = {}
    if n_neg == 0:
        out["auc"] = math.nan
    else:
        wins, negatives_seen = 0, 0
        for r in reversed(rel):  # from the bottom: count negatives below each positive
            if r:
                wins += negatives_seen
            else:
                negatives_seen += 1
        out["auc"] = wins / (n_pos * n_neg)
    for k in ks:
        top = rel[:k]
        hits = sum(top)
        out[f"precision@{k}"] = hits / k
        out[f"recall@{k}"] = hits / n_pos
        ap, seen = 0.0, 0
        for i, r in enumerate(top, start=1):
            if r:
                seen += 1
                ap += seen / i
        out[f"map@{k}"] = ap / min(k, n_pos)
        dcg = sum(r / math.log2(i + 1) for i, r in enumerate(top, start=1))
        idcg = sum(1 / math.log2(i + 1) for i in range(1, min(k, n_pos) + 1))
        out[f"ndcg@{k}"] = dcg / idcg
        out[f"hit@{k}"] = float(hits > 0)
    out["mrr"] = 1.0 / (rel.index(1) + 1)
    return out


def candidates_of(test_row, exclude_row):
    cand = [i for i in range(len(test_row)) if not exclude_row[i]]
    rel = {i: int(test_row[i]) for i in cand}
    return cand, rel


def brute_expected(scores_row, test_row, exclude_row, ks=KS) -> dict[str, float]:
    """Average of the metrics over every order of the tied candidates (all equally likely)."""
    cand, rel = candidates_of(test_row, exclude_row)
    levels = sorted({scores_row[i] for i in cand}, reverse=True)
    groups = [[i for i in cand if scores_row[i] == s] for s in levels]
    total: dict[str, float] = {}
    count = 0
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        ranking_ = [i for group in orders for i in group]
        values = metrics_of_ranking([rel[i] for i in ranking_], ks)
        for name, v in values.items():
            total[name] = total.get(name, 0.0) + v
        count += 1
    return {name: v / count for name, v in total.items()}


def brute_pessimistic(scores_row, test_row, exclude_row, ks=KS) -> dict[str, float]:
    """Metrics of the ranking that puts, among tied candidates, negatives before positives."""
    cand, rel = candidates_of(test_row, exclude_row)
    ranking_ = sorted(cand, key=lambda i: (-scores_row[i], rel[i]))
    return metrics_of_ranking([rel[i] for i in ranking_], ks)


def brute_table(scores, test, exclude, policy, ks=KS):
    """Rows of brute-force values for every evaluated user (dense 0/1 inputs)."""
    fn = brute_expected if policy == "expected" else brute_pessimistic
    rows = []
    for u in range(scores.shape[0]):
        if any(test[u, i] and not exclude[u, i] for i in range(scores.shape[1])):
            rows.append(fn(list(scores[u]), list(test[u]), list(exclude[u]), ks))
    return rows


def assert_matches(frame, expected_rows, columns):
    assert len(frame) == len(expected_rows)
    for name in columns:
        want = np.array([row[name] for row in expected_rows])
        np.testing.assert_allclose(
            frame[name].to_numpy(), want, rtol=1e-9, atol=1e-12, err_msg=name
        )


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------
@st.composite
def small_cases(draw, max_items=7, max_users=3, tied=True):
    n_users = draw(st.integers(1, max_users))
    n_items = draw(st.integers(1, max_items))
    shape = (n_users, n_items)
    if tied:
        scores = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 0.5, 1.0, 2.0])))
    else:
        scores = draw(
            hnp.arrays(np.float64, shape, elements=st.floats(-5, 5, width=32), unique=True)
        )
    test = draw(hnp.arrays(bool, shape))
    exclude = draw(hnp.arrays(bool, shape))
    return scores, test, exclude


def to_csr(dense):
    return sp.csr_matrix(dense.astype(bool))


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# Brute force, every metric, both kernels, both tie policies
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(case=small_cases())
def test_expected_policy_equals_average_over_tie_orders(path, case):
    scores, test, exclude = case
    with kernel(path):
        frame = evaluate(scores, to_csr(test), to_csr(exclude), ks=KS, ties="expected")
    expected = brute_table(scores, test, exclude, "expected")
    assert_matches(frame, expected, metric_columns(KS))


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(case=small_cases())
def test_pessimistic_policy_equals_negatives_first(path, case):
    scores, test, exclude = case
    with kernel(path):
        frame = evaluate(scores, to_csr(test), to_csr(exclude), ks=KS, ties="pessimistic")
    expected = brute_table(scores, test, exclude, "pessimistic")
    assert_matches(frame, expected, metric_columns(KS))


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(case=small_cases(max_items=40, max_users=5, tied=False))
def test_without_ties_both_policies_equal_the_single_ranking(path, case):
    scores, test, exclude = case
    with kernel(path):
        exp = evaluate(scores, to_csr(test), to_csr(exclude), ks=KS, ties="expected")
        pes = evaluate(scores, to_csr(test), to_csr(exclude), ks=KS, ties="pessimistic")
    expected = brute_table(scores, test, exclude, "pessimistic")
    assert_matches(exp, expected, metric_columns(KS))
    assert_matches(pes, expected, metric_columns(KS))


@SETTINGS
@given(case=small_cases(max_items=12, max_users=4))
def test_evaluated_rows_and_user_column(case):
    scores, test, exclude = case
    want = [u for u in range(test.shape[0]) if (test[u] & ~exclude[u]).any()]
    assert evaluated_rows(to_csr(test), to_csr(exclude)).tolist() == want
    frame = evaluate(scores, to_csr(test), to_csr(exclude), user_ids=np.arange(len(test)) + 100)
    assert frame["user"].tolist() == [u + 100 for u in want]


# ---------------------------------------------------------------------------
# scikit-learn references
# ---------------------------------------------------------------------------
def per_user_candidates(scores, test, exclude):
    for u in range(scores.shape[0]):
        cand = ~exclude[u]
        y = test[u][cand]
        if y.any():
            yield y, scores[u][cand]


@SETTINGS
@given(case=small_cases(max_items=30, max_users=4))
def test_auc_matches_sklearn_with_ties(case):
    scores, test, exclude = case
    ours = ranking.roc_auc(scores, to_csr(test), to_csr(exclude))
    ref = [
        sklearn_metrics.roc_auc_score(y, s) if 0 < y.sum() < y.size else math.nan
        for y, s in per_user_candidates(scores, test, exclude)
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@SETTINGS
@given(case=small_cases(max_items=30, max_users=4), k=st.integers(1, 35))
def test_ndcg_matches_sklearn_tie_averaged(case, k):
    # sklearn averages the gains of tied items, which is the expected DCG under random order.
    scores, test, exclude = case
    ours = ranking.ndcg_at_k(scores, to_csr(test), to_csr(exclude), k=k)
    ref = []
    for y, s in per_user_candidates(scores, test, exclude):
        if y.size == 1:  # sklearn refuses a single document; the value is then 1
            ref.append(1.0)
        else:
            ref.append(sklearn_metrics.ndcg_score(y[None, :].astype(float), s[None, :], k=k))
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


@SETTINGS
@given(case=small_cases(max_items=30, max_users=4, tied=False))
def test_average_precision_matches_sklearn_when_k_covers_all(case):
    scores, test, exclude = case
    k = scores.shape[1]
    ours = ranking.average_precision_at_k(scores, to_csr(test), to_csr(exclude), k=k)
    ref = [
        sklearn_metrics.average_precision_score(y, s)
        for y, s in per_user_candidates(scores, test, exclude)
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


# ---------------------------------------------------------------------------
# Large catalogues: several lane chunks, padding, both kernels, the ragged MRR chunks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("num_items", [8, 2041, 4099])
def test_large_catalogues_without_ties_match_sorting(rng, num_items):
    n_users = 6
    scores = rng.standard_normal((n_users, num_items))
    test = rng.random((n_users, num_items)) < 0.01
    test[:, 0] = True
    exclude = (rng.random((n_users, num_items)) < 0.05) & ~test
    ks = (1, 10, 100)
    frame = evaluate(scores, to_csr(test), to_csr(exclude), ks=ks)
    for row, u in enumerate(range(n_users)):
        cand = np.flatnonzero(~exclude[u])
        order = cand[np.argsort(-scores[u, cand], kind="stable")]
        want = metrics_of_ranking(test[u, order].astype(int).tolist(), ks)
        for name, value in want.items():
            assert frame[name].iloc[row] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("num_items", [300, 2041])
def test_kernels_agree_on_heavy_ties(rng, num_items):
    n_users = 7
    scores = rng.integers(0, 20, size=(n_users, num_items)).astype(np.float32)
    test = rng.random((n_users, num_items)) < 0.2
    exclude = (rng.random((n_users, num_items)) < 0.1) & ~test
    with kernel("compare"):
        a = evaluate(scores, to_csr(test), to_csr(exclude), ks=(1, 5, 50))
    with kernel("sort"):
        b = evaluate(scores, to_csr(test), to_csr(exclude), ks=(1, 5, 50))
    mixed = evaluate(scores, to_csr(test), to_csr(exclude), ks=(1, 5, 50))
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.to_numpy(), mixed.to_numpy(), rtol=1e-12)
    auc = [
        sklearn_metrics.roc_auc_score(y, s) for y, s in per_user_candidates(scores, test, exclude)
    ]
    np.testing.assert_allclose(a["auc"], auc, rtol=1e-12)


def test_reciprocal_rank_chunks_do_not_change_values(rng):
    scores = np.zeros((5, 400))
    scores[:, :50] = 1.0
    test = rng.random((5, 400)) < 0.03
    test[:, 60] = True
    whole = ranking.reciprocal_rank(scores, to_csr(test))
    with mock.patch.object(ranking, "_RAGGED_CHUNK", 64):
        chunked = ranking.reciprocal_rank(scores, to_csr(test))
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    # Cross-check the hypergeometric sum against a direct simulation-free formula.
    for row in range(5):
        top = test[row, :50].sum()
        if top:
            probs = [math.comb(50 - f, top - 1) / math.comb(50, top) for f in range(1, 52 - top)]
            want = sum(p / f for f, p in enumerate(probs, start=1))
        else:
            rest = test[row, 50:].sum()
            probs = [
                math.comb(350 - f, rest - 1) / math.comb(350, rest) for f in range(1, 352 - rest)
            ]
            want = sum(p / (50 + f) for f, p in enumerate(probs, start=1))
        assert whole[row] == pytest.approx(want, rel=1e-9)
