"""The streaming Evaluator: block-size invariance, bounded blocks, errors, summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metrics import Evaluator, evaluate, evaluated_rows, metric_columns, roc_auc, summarize


class TableScorer:
    """Scores looked up in a fixed (num_users, num_items) table; records every call."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.calls: list[np.ndarray] = []

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        self.calls.append(np.array(user_ids))
        return self.table[user_ids].astype(np.float32)


@pytest.fixture
def problem(rng):
    num_users, num_items = 53, 70
    # Integer scores make plenty of ties; a few users get no test positive.
    table = rng.integers(0, 6, size=(num_users, num_items)).astype(np.float32)
    test = rng.random((num_users, num_items)) < 0.06
    test[::9] = False
    exclude = (rng.random((num_users, num_items)) < 0.15) & ~test
    exclude[3, :] = test[3, :]  # user 3: every positive excluded, so not evaluated
    return table, sp.csr_matrix(test), sp.csr_matrix(exclude)


@pytest.mark.parametrize("ties", ["expected", "pessimistic"])
def test_block_size_does_not_change_results(problem, ties):
    table, test, exclude = problem
    frames = []
    for block_size in (1, 7, table.shape[0]):
        evaluator = Evaluator(test, exclude, ks=(1, 5, 20), ties=ties, block_size=block_size)
        frames.append(evaluator.evaluate(TableScorer(table)))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    pd.testing.assert_frame_equal(frames[0], frames[2], check_exact=True)
    # ... and equal to the one-shot function on the whole matrix
    whole = evaluate(table, test, exclude, ks=(1, 5, 20), ties=ties)
    pd.testing.assert_frame_equal(frames[0], whole, check_exact=True, check_dtype=False)


def test_evaluated_users_and_user_column(problem):
    table, test, exclude = problem
    evaluator = Evaluator(test, exclude, ks=(5,))
    want = evaluated_rows(test, exclude)
    np.testing.assert_array_equal(evaluator.evaluated_users, want)
    assert 3 not in want and 0 not in want
    frame = evaluator.evaluate(TableScorer(table))
    np.testing.assert_array_equal(frame["user"], want)
    assert list(frame.columns) == evaluator.columns == ["user", *metric_columns((5,))]
    assert {k: frame.attrs[k] for k in ("ties", "ks")} == {"ties": "expected", "ks": [5]}
    with pytest.raises(ValueError):
        evaluator.evaluated_users[0] = 1  # read-only


def test_model_is_called_in_blocks_of_evaluated_users(problem):
    table, test, exclude = problem
    scorer = TableScorer(table)
    Evaluator(test, exclude, block_size=8).evaluate(scorer)
    assert all(1 <= len(c) <= 8 for c in scorer.calls)
    called = np.concatenate(scorer.calls)
    np.testing.assert_array_equal(called, evaluated_rows(test, exclude))
    assert all(c.dtype == np.int64 for c in scorer.calls)


def test_user_subset_keeps_order_and_skips_unevaluated(problem):
    table, test, exclude = problem
    evaluator = Evaluator(test, exclude, block_size=4)
    full = evaluator.evaluate(TableScorer(table)).set_index("user")
    subset = evaluator.evaluate(TableScorer(table), user_ids=np.array([40, 3, 1, 0, 2]))
    assert subset["user"].tolist() == [40, 1, 2]
    pd.testing.assert_frame_equal(subset.set_index("user"), full.loc[[40, 1, 2]])
    with pytest.raises(ValueError, match="repeat"):
        evaluator.evaluate(TableScorer(table), user_ids=[1, 1])
    with pytest.raises(ValueError, match=r"in 0\.\.52"):
        evaluator.evaluate(TableScorer(table), user_ids=[53])


def test_without_exclusion(problem):
    table, test, _ = problem
    frame = Evaluator(test, None, block_size=5).evaluate(TableScorer(table))
    pd.testing.assert_frame_equal(frame, evaluate(table, test), check_dtype=False)


def test_progress_callback(problem):
    table, test, exclude = problem
    seen = []
    evaluator = Evaluator(test, exclude, block_size=10)
    evaluator.evaluate(TableScorer(table), progress=lambda done, total: seen.append((done, total)))
    n = evaluator.evaluated_users.size
    assert seen == [(min(d, n), n) for d in range(10, n + 10, 10)]


def test_wrong_score_shape_names_both_shapes(problem):
    table, test, exclude = problem

    class Short(TableScorer):
        def score(self, user_ids):
            return super().score(user_ids)[:, :-1]

    with pytest.raises(ValueError, match=r"shape \(8, 69\).*expected \(8, 70\)"):
        Evaluator(test, exclude, block_size=8).evaluate(Short(table))


def test_non_finite_scores_name_global_users(problem):
    table, test, exclude = problem
    bad = table.copy()
    users = Evaluator(test, exclude).evaluated_users
    bad[users[-1], 5] = np.nan
    with pytest.raises(ValueError, match=rf"users \[{users[-1]}\]"):
        Evaluator(test, exclude, block_size=16).evaluate(TableScorer(bad))


def test_constructor_checks():
    test = sp.csr_matrix(np.eye(3, dtype=bool))
    with pytest.raises(ValueError, match="block_size"):
        Evaluator(test, block_size=0)
    with pytest.raises(ValueError, match="ties"):
        Evaluator(test, ties="optimistic")
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        Evaluator(test, ks=(0,))
    with pytest.raises(ValueError, match=r"exclude has shape \(3, 4\)"):
        Evaluator(test, sp.csr_matrix((3, 4), dtype=bool))
    with pytest.raises(TypeError, match=r"scipy\.sparse"):
        Evaluator(np.eye(3))
    evaluator = Evaluator(test, ks=[5, 10], ties="pessimistic", block_size=2)
    assert (evaluator.ks, evaluator.ties, evaluator.block_size) == ([5, 10], "pessimistic", 2)


def test_summarize(problem):
    table, test, exclude = problem
    frame = Evaluator(test, exclude, ks=(5,)).evaluate(TableScorer(table))
    summary = summarize(frame)
    assert list(summary.index) == [*metric_columns((5,)), "coverage@5"]
    np.testing.assert_allclose(
        summary.to_numpy()[:-1], frame.drop(columns="user").mean().to_numpy()
    )
    assert summary.attrs["ties"] == "expected"
    # NaN (AUC without negatives) is skipped.
    toy = pd.DataFrame({"user": [0, 1], "auc": [np.nan, 0.75], "mrr": [1.0, 0.5]})
    assert summarize(toy).to_dict() == {"auc": 0.75, "mrr": 0.75}
    with pytest.raises(TypeError):
        summarize(frame.to_numpy())


def test_popularity_on_tiny_matches_notebook_auc(tiny):
    """End to end with a real model: the notebook's per-user sklearn loop gives the same AUC."""
    pytest.importorskip("sklearn")
    from sklearn.metrics import roc_auc_score

    from models.baselines import Popularity

    model = Popularity().fit(tiny.train, rng=np.random.default_rng(0))
    test, exclude = tiny.test.to_bool_csr(), tiny.exclusion("train-positives")
    frame = Evaluator(test, exclude, block_size=16).evaluate(model)
    np.testing.assert_array_equal(frame["user"], tiny.eval_users())
    want = []
    for user in tiny.eval_users():
        candidates = np.setdiff1d(np.arange(tiny.num_items), exclude[user].indices)
        expected = np.isin(candidates, test[user].indices)
        predicted = model.score(np.array([user]))[0, candidates]
        want.append(roc_auc_score(expected, predicted))
    np.testing.assert_allclose(frame["auc"], want, rtol=1e-12)
    assert 0.5 < summarize(frame)["auc"] < 1.0


@pytest.mark.realdata
def test_popularity_on_ml100k_matches_notebook_auc(request):
    """ML-100K ua split: 934 evaluated users; AUC equals the notebook's sklearn loop."""
    pytest.importorskip("bench.datasets")
    from sklearn.metrics import roc_auc_score

    from models.baselines import Popularity

    data = request.getfixturevalue("ml100k")
    model = Popularity().fit(data.train, rng=np.random.default_rng(0))
    test, exclude = data.test.to_bool_csr(), data.exclusion("train-positives")
    evaluator = Evaluator(test, exclude)
    assert evaluator.evaluated_users.size == 934
    frame = evaluator.evaluate(model)
    scores = model.score(evaluator.evaluated_users)
    want = []
    for row, user in enumerate(evaluator.evaluated_users):
        candidates = np.setdiff1d(np.arange(data.num_items), exclude[user].indices)
        want.append(roc_auc_score(np.isin(candidates, test[user].indices), scores[row, candidates]))
    np.testing.assert_allclose(frame["auc"], want, rtol=1e-12)
    np.testing.assert_allclose(
        frame["auc"],
        roc_auc(scores, test[evaluator.evaluated_users], exclude[evaluator.evaluated_users]),
        rtol=0,
    )
