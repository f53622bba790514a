"""Hand-computed cases and input checks for the ranking metrics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metrics import (
    average_precision_at_k,
    evaluate,
    evaluated_rows,
    hit_rate_at_k,
    metric_columns,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    roc_auc,
)

ALL_TOPK = (precision_at_k, recall_at_k, average_precision_at_k, ndcg_at_k, hit_rate_at_k)
ALL = (roc_auc, reciprocal_rank, *ALL_TOPK)


def csr(n_items: int, *rows_of_items: list[int]) -> sp.csr_matrix:
    """A boolean CSR with one row per argument listing its true columns."""
    dense = np.zeros((len(rows_of_items), n_items), dtype=bool)
    for row, items in enumerate(rows_of_items):
        dense[row, items] = True
    return sp.csr_matrix(dense)


def one(fn, scores, test, exclude=None, **kw) -> float:
    values = fn(np.atleast_2d(np.asarray(scores, dtype=float)), test, exclude, **kw)
    assert values.shape == (1,) and values.dtype == np.float64
    return float(values[0])


L2_3 = math.log2(3)


class TestNoTies:
    """Scores 5 > 4 > 3 > 2 > 1; positives at ranks 2 and 4."""

    scores = (5, 4, 3, 2, 1)
    test = csr(5, [1, 3])

    def test_auc(self):
        # item1 beats 2 of 3 negatives, item3 beats 1 of 3.
        assert one(roc_auc, self.scores, self.test) == pytest.approx(3 / 6)

    def test_precision_recall_hit(self):
        assert one(precision_at_k, self.scores, self.test, k=1) == 0.0
        assert one(precision_at_k, self.scores, self.test, k=2) == 0.5
        assert one(precision_at_k, self.scores, self.test, k=4) == 0.5
        assert one(recall_at_k, self.scores, self.test, k=2) == 0.5
        assert one(recall_at_k, self.scores, self.test, k=4) == 1.0
        assert one(hit_rate_at_k, self.scores, self.test, k=1) == 0.0
        assert one(hit_rate_at_k, self.scores, self.test, k=2) == 1.0

    def test_average_precision(self):
        assert one(average_precision_at_k, self.scores, self.test, k=5) == pytest.approx(
            (1 / 2 + 2 / 4) / 2
        )
        # Only the first hit is inside the top 2; normaliser min(2, 2) = 2.
        assert one(average_precision_at_k, self.scores, self.test, k=2) == pytest.approx(0.25)
        # normaliser min(1, 2) = 1 and no hit at rank 1.
        assert one(average_precision_at_k, self.scores, self.test, k=1) == 0.0

    def test_ndcg(self):
        dcg = 1 / L2_3 + 1 / math.log2(5)
        idcg = 1 + 1 / L2_3
        assert one(ndcg_at_k, self.scores, self.test, k=5) == pytest.approx(dcg / idcg)
        assert one(ndcg_at_k, self.scores, self.test, k=2) == pytest.approx((1 / L2_3) / idcg)

    def test_reciprocal_rank(self):
        assert one(reciprocal_rank, self.scores, self.test) == 0.5


class TestExclusion:
    scores = (5, 4, 3, 2, 1)

    def test_excluded_item_leaves_the_candidates(self):
        test, exclude = csr(5, [1, 3]), csr(5, [0])
        # Candidates 1..4 ranked 1..4; positives at ranks 1 and 3.
        assert one(roc_auc, self.scores, test, exclude) == pytest.approx(3 / 4)
        assert one(precision_at_k, self.scores, test, exclude, k=1) == 1.0
        assert one(reciprocal_rank, self.scores, test, exclude) == 1.0
        assert one(average_precision_at_k, self.scores, test, exclude, k=4) == pytest.approx(
            (1 + 2 / 3) / 2
        )

    def test_excluded_test_positive_is_dropped(self):
        test, exclude = csr(5, [0, 3]), csr(5, [0])
        # One positive left (item3, rank 3 of 4 candidates).
        assert one(recall_at_k, self.scores, test, exclude, k=3) == 1.0
        assert one(precision_at_k, self.scores, test, exclude, k=3) == pytest.approx(1 / 3)
        assert one(roc_auc, self.scores, test, exclude) == pytest.approx(1 / 3)

    def test_user_whose_positives_are_all_excluded_is_not_evaluated(self):
        scores = np.array([self.scores, self.scores], dtype=float)
        test, exclude = csr(5, [0], [2]), csr(5, [0], [])
        assert evaluated_rows(test, exclude).tolist() == [1]
        frame = evaluate(scores, test, exclude, ks=(2,))
        assert frame["user"].tolist() == [1]
        for fn in ALL:
            assert fn(scores, test, exclude).shape == (1,)

    def test_exclude_none_keeps_the_whole_catalogue(self):
        test = csr(5, [1])
        assert one(roc_auc, self.scores, test, None) == pytest.approx(3 / 4)


class TestUsersWithoutPositives:
    def test_not_evaluated_and_row_order_kept(self):
        scores = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
        test = csr(3, [0], [], [2])
        assert evaluated_rows(test).tolist() == [0, 2]
        auc = roc_auc(scores, test)
        np.testing.assert_array_equal(auc, [0.0, 0.5])
        frame = evaluate(scores, test, user_ids=np.array([10, 20, 30]))
        assert frame["user"].tolist() == [10, 30]

    def test_nobody_evaluated_gives_empty_results(self):
        scores = np.ones((2, 4))
        test = csr(4, [], [])
        for fn in ALL:
            assert fn(scores, test).shape == (0,)
        frame = evaluate(scores, test, ks=(5,))
        assert list(frame.columns) == ["user", *metric_columns((5,))]
        assert len(frame) == 0


class TestTies:
    """Scores [1, 1, 1, 0]: the positive shares a tie group of 3 at ranks 1..3."""

    scores = (1, 1, 1, 0)
    test = csr(4, [0])

    def test_auc(self):
        assert one(roc_auc, self.scores, self.test) == pytest.approx((1 + 0.5 * 2) / 3)
        assert one(roc_auc, self.scores, self.test, ties="pessimistic") == pytest.approx(1 / 3)

    def test_precision_and_hit(self):
        for k, p_hit in [(1, 1 / 3), (2, 2 / 3), (3, 1.0), (4, 1.0)]:
            assert one(hit_rate_at_k, self.scores, self.test, k=k) == pytest.approx(p_hit)
            assert one(precision_at_k, self.scores, self.test, k=k) == pytest.approx(p_hit / k)
        assert one(precision_at_k, self.scores, self.test, k=2, ties="pessimistic") == 0.0
        assert one(precision_at_k, self.scores, self.test, k=3, ties="pessimistic") == (
            pytest.approx(1 / 3)
        )
        assert one(hit_rate_at_k, self.scores, self.test, k=2, ties="pessimistic") == 0.0

    def test_reciprocal_rank_and_ap(self):
        expected = (1 + 1 / 2 + 1 / 3) / 3
        assert one(reciprocal_rank, self.scores, self.test) == pytest.approx(expected)
        assert one(average_precision_at_k, self.scores, self.test, k=3) == pytest.approx(expected)
        assert one(reciprocal_rank, self.scores, self.test, ties="pessimistic") == (
            pytest.approx(1 / 3)
        )

    def test_ndcg(self):
        assert one(ndcg_at_k, self.scores, self.test, k=2) == pytest.approx((1 + 1 / L2_3) / 3)


class TestConstantScorer:
    """Four tied candidates, two of them positive."""

    scores = (7, 7, 7, 7)
    test = csr(4, [0, 1])

    def test_auc_is_exactly_one_half(self):
        assert one(roc_auc, self.scores, self.test) == 0.5
        assert one(roc_auc, self.scores, self.test, ties="pessimistic") == 0.0

    def test_precision_is_the_base_rate(self):
        for k in (1, 2, 3, 4):
            assert one(precision_at_k, self.scores, self.test, k=k) == 0.5
        # k beyond the candidate list: still divided by k.
        assert one(precision_at_k, self.scores, self.test, k=8) == 0.25

    def test_hit_reciprocal_rank_and_ap(self):
        assert one(hit_rate_at_k, self.scores, self.test, k=1) == pytest.approx(0.5)
        # 1 - C(2, 2) / C(4, 2)
        assert one(hit_rate_at_k, self.scores, self.test, k=2) == pytest.approx(5 / 6)
        # first positive at offset 1, 2, 3 with probability 3/6, 2/6, 1/6
        assert one(reciprocal_rank, self.scores, self.test) == pytest.approx(13 / 18)
        # the 6 placements of the two positives: AP 1, 5/6, 3/4, 7/12, 1/2, 5/12
        assert one(average_precision_at_k, self.scores, self.test, k=4) == pytest.approx(49 / 72)
        assert one(
            average_precision_at_k, self.scores, self.test, k=4, ties="pessimistic"
        ) == pytest.approx(5 / 12)

    def test_exact_base_rate_on_random_catalogues(self, rng):
        n_users, n_items = 30, 500
        test = sp.csr_matrix(rng.random((n_users, n_items)) < 0.02)
        exclude = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1) & ~test.toarray())
        scores = np.full((n_users, n_items), 3.25, dtype=np.float32)
        rows = evaluated_rows(test, exclude)
        n_pos = np.asarray(test.toarray()[rows].sum(axis=1), dtype=float)
        n_cand = n_items - np.asarray(exclude.toarray()[rows].sum(axis=1), dtype=float)
        frame = evaluate(scores, test, exclude, ks=(1, 10, 50))
        np.testing.assert_array_equal(frame["auc"], 0.5)
        for k in (1, 10, 50):
            np.testing.assert_array_equal(frame[f"precision@{k}"], n_pos / n_cand)
            np.testing.assert_allclose(frame[f"recall@{k}"], k / n_cand, rtol=1e-12)


class TestEdgeCases:
    def test_single_positive(self):
        scores, test = [0.3, 0.9, 0.1], csr(3, [0])  # positive at rank 2 of 3
        assert one(roc_auc, scores, test) == 0.5
        assert one(reciprocal_rank, scores, test) == 0.5
        assert one(average_precision_at_k, scores, test, k=3) == 0.5
        assert one(ndcg_at_k, scores, test, k=3) == pytest.approx(1 / L2_3)
        assert one(recall_at_k, scores, test, k=1) == 0.0

    def test_all_candidates_positive(self):
        scores, test = [3, 2, 1], csr(3, [0, 1, 2])
        assert math.isnan(one(roc_auc, scores, test))  # undefined without a negative
        assert one(precision_at_k, scores, test, k=2) == 1.0
        assert one(recall_at_k, scores, test, k=2) == pytest.approx(2 / 3)
        assert one(average_precision_at_k, scores, test, k=3) == 1.0
        assert one(ndcg_at_k, scores, test, k=3) == pytest.approx(1.0)
        assert one(reciprocal_rank, scores, test) == 1.0

    def test_k_larger_than_candidates(self):
        scores, test, exclude = [3, 2, 1, 9], csr(4, [1]), csr(4, [3])
        assert one(precision_at_k, scores, test, exclude, k=10) == pytest.approx(0.1)
        assert one(recall_at_k, scores, test, exclude, k=10) == 1.0
        assert one(average_precision_at_k, scores, test, exclude, k=10) == 0.5
        assert one(ndcg_at_k, scores, test, exclude, k=10) == pytest.approx(1 / L2_3)
        assert one(hit_rate_at_k, scores, test, exclude, k=10) == 1.0

    def test_huge_k_needs_no_huge_tables(self):
        scores, test = [3, 2, 1], csr(3, [1])
        k = 10**12  # rank tables stop at the last positive, not at k
        assert one(precision_at_k, scores, test, k=k) == pytest.approx(1e-12)
        assert one(average_precision_at_k, scores, test, k=k) == 0.5
        assert one(ndcg_at_k, scores, test, k=k) == pytest.approx(1 / L2_3)

    def test_negative_zero_ties_with_zero(self):
        scores, test = np.array([[-0.0, 0.0, -1.0]]), csr(3, [0])
        assert roc_auc(scores, test)[0] == pytest.approx(0.75)

    def test_integer_and_float64_scores_are_not_rounded(self):
        base = 1.0
        scores = np.array([[base, base + 1e-12, 0.0]])  # distinct in float64, equal in float32
        assert roc_auc(scores, csr(3, [0]))[0] == 0.5
        ints = np.array([[2**40, 2**40 + 1, 0]], dtype=np.int64)
        assert roc_auc(ints, csr(3, [0]))[0] == 0.5

    def test_test_and_exclude_formats(self):
        scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
        ref = roc_auc(scores, csr(5, [1, 3]), csr(5, [0]))
        test_coo = sp.coo_matrix(([1.0, 1.0], ([0, 0], [1, 3])), shape=(1, 5))
        exclude_arr = sp.csr_array(np.array([[1, 0, 0, 0, 0]], dtype=np.int8))
        np.testing.assert_array_equal(roc_auc(scores, test_coo, exclude_arr), ref)
        # explicit zeros and duplicate entries are ignored
        messy = sp.csr_matrix(
            (np.array([1, 1, 0, 1]), np.array([1, 1, 2, 3]), np.array([0, 4])), shape=(1, 5)
        )
        np.testing.assert_array_equal(roc_auc(scores, messy, csr(5, [0])), ref)

    def test_inputs_are_not_modified(self, rng):
        scores = rng.standard_normal((4, 9))
        test = sp.csr_matrix(rng.random((4, 9)) < 0.3)
        exclude = sp.csr_matrix(rng.random((4, 9)) < 0.3)
        copies = scores.copy(), test.copy(), exclude.copy()
        evaluate(scores, test, exclude)
        np.testing.assert_array_equal(scores, copies[0])
        assert (test != copies[1]).nnz == 0 and (exclude != copies[2]).nnz == 0


class TestEvaluateTable:
    def test_columns_and_values_match_the_functions(self, rng):
        scores = rng.integers(0, 5, size=(12, 40)).astype(np.float32)
        test = sp.csr_matrix(rng.random((12, 40)) < 0.15)
        exclude = sp.csr_matrix(rng.random((12, 40)) < 0.2)
        ks = (3, 10)
        for ties in ("expected", "pessimistic"):
            frame = evaluate(scores, test, exclude, ks=ks, ties=ties)
            assert list(frame.columns) == ["user", *metric_columns(ks)]
            assert {k: frame.attrs[k] for k in ("ties", "ks")} == {"ties": ties, "ks": [3, 10]}
            np.testing.assert_array_equal(frame["user"], evaluated_rows(test, exclude))
            np.testing.assert_array_equal(frame["auc"], roc_auc(scores, test, exclude, ties=ties))
            np.testing.assert_array_equal(
                frame["mrr"], reciprocal_rank(scores, test, exclude, ties=ties)
            )
            names = ("precision", "recall", "map", "ndcg", "hit")
            for k in ks:
                for name, fn in zip(names, ALL_TOPK):
                    np.testing.assert_array_equal(
                        frame[f"{name}@{k}"], fn(scores, test, exclude, k=k, ties=ties)
                    )

    def test_metric_columns_order(self):
        assert metric_columns((5, 10)) == [
            "auc",
            "precision@5",
            "recall@5",
            "map@5",
            "ndcg@5",
            "hit@5",
            "precision@10",
            "recall@10",
            "map@10",
            "ndcg@10",
            "hit@10",
            "mrr",
        ]
        assert metric_columns(()) == ["auc", "mrr"]

    def test_returns_a_dataframe_with_float_metrics(self):
        frame = evaluate(np.array([[1.0, 0.0]]), csr(2, [0]), ks=(1,))
        assert isinstance(frame, pd.DataFrame)
        assert all(frame[c].dtype == np.float64 for c in metric_columns((1,)))


class TestBadInputs:
    scores = np.array([[0.5, 0.2, 0.1], [0.3, 0.2, 0.9]])
    test = csr(3, [0], [2])

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_scores_name_the_users(self, bad):
        scores = self.scores.copy()
        scores[1, 1] = bad
        with pytest.raises(ValueError, match=r"rows \[1\]"):
            roc_auc(scores, self.test)
        with pytest.raises(ValueError, match=r"users \[42\]"):
            evaluate(scores, self.test, user_ids=np.array([7, 42]))

    def test_non_finite_score_of_an_unevaluated_row(self):
        scores = self.scores.copy()
        scores[0, 2] = np.nan
        with pytest.raises(ValueError, match=r"rows \[0\]"):
            roc_auc(scores, csr(3, [], [2]))

    def test_shape_mismatch_names_both_shapes(self):
        with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
            roc_auc(self.scores, csr(4, [0], [1]))
        with pytest.raises(ValueError, match=r"exclude has shape \(1, 3\).*\(2, 3\)"):
            roc_auc(self.scores, self.test, csr(3, [0]))
        with pytest.raises(ValueError, match="2-D"):
            roc_auc(self.scores[0], self.test)
        with pytest.raises(ValueError, match=r"user_ids must have shape \(2,\)"):
            evaluate(self.scores, self.test, user_ids=[1, 2, 3])

    @pytest.mark.parametrize("k", [0, -1, 1.5, True, "3", None])
    def test_bad_k(self, k):
        for fn in ALL_TOPK:
            with pytest.raises(ValueError, match="k must be an integer >= 1"):
                fn(self.scores, self.test, k=k)
        with pytest.raises(ValueError, match="integer >= 1"):
            evaluate(self.scores, self.test, ks=(5, k))

    def test_repeated_or_non_sequence_ks(self):
        with pytest.raises(ValueError, match="repeat"):
            evaluate(self.scores, self.test, ks=(5, 5))
        with pytest.raises(ValueError, match="sequence"):
            evaluate(self.scores, self.test, ks=5)

    @pytest.mark.parametrize("ties", ["optimistic", "", None, "Expected"])
    def test_unknown_tie_policy(self, ties):
        for fn in ALL:
            with pytest.raises(ValueError, match="ties must be one of"):
                fn(self.scores, self.test, ties=ties)
        with pytest.raises(ValueError, match="ties must be one of"):
            evaluate(self.scores, self.test, ties=ties)

    def test_non_sparse_or_non_binary_truth(self):
        with pytest.raises(TypeError, match=r"test must be a scipy\.sparse matrix"):
            roc_auc(self.scores, self.test.toarray())
        with pytest.raises(TypeError, match=r"exclude must be a scipy\.sparse matrix"):
            roc_auc(self.scores, self.test, [[0, 0, 0], [0, 0, 0]])
        ratings = sp.csr_matrix(np.array([[5.0, 0, 0], [0, 0, 3.0]]))
        with pytest.raises(ValueError, match=r"test must be boolean or 0/1.*5\.0"):
            roc_auc(self.scores, ratings)

    def test_non_numeric_scores(self):
        with pytest.raises(TypeError, match="real numbers"):
            roc_auc(self.scores.astype(complex), self.test)
        with pytest.raises(TypeError, match="dense array"):
            roc_auc(sp.csr_matrix(self.scores), self.test)


def test_metrics_package_imports_only_numpy_scipy_pandas():
    code = (
        "import sys, metrics; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'bench', 'models', 'sklearn', 'lightfm', 'torch', 'tensorflow', 'keras', 'implicit'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
