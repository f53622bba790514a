"""implicit iALS and BPR adapters: parameters, epoch loop, ALS normal equations, learning."""

from __future__ import annotations

from itertools import pairwise

import float_bounds
import numpy as np
import pytest

pytest.importorskip("implicit")

from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_info

from metrics import Evaluator, summarize
from models.base import NotFittedError, derive_seed
from models.baselines import Popularity
from models.implicit_model import ImplicitALS, ImplicitBPR


def _fit(model, data, seed=0, **kwargs):
    return model.fit(data.train, rng=np.random.default_rng(seed), **kwargs)


def _auc(model, data):
    evaluator = Evaluator(data.test.to_bool_csr(), data.exclusion("train-positives"))
    return summarize(evaluator.evaluate(model))["auc"]


@pytest.mark.parametrize(
    ("cls", "params", "match"),
    [
        (ImplicitALS, {"factors": 0}, "factors"),
        (ImplicitALS, {"factors": 8.0}, "factors"),
        (ImplicitALS, {"regularization": -1.0}, "regularization"),
        (ImplicitALS, {"alpha": 0.0}, "alpha"),
        (ImplicitALS, {"num_threads": 0}, "num_threads"),
        (ImplicitALS, {"use_cg": 1}, "use_cg"),
        (ImplicitALS, {"epochs": 0}, "epochs"),
        (ImplicitBPR, {"learning_rate": 0.0}, "learning_rate"),
        (ImplicitBPR, {"regularization": float("inf")}, "regularization"),
        (ImplicitBPR, {"verify_negative_samples": "no"}, "verify_negative_samples"),
        (ImplicitBPR, {"factors": -3}, "factors"),
    ],
)
def test_impossible_params_raise(cls, params, match, tiny):
    with pytest.raises(ValueError, match=match):
        _fit(cls(**params), tiny)


@pytest.mark.parametrize("cls", [ImplicitALS, ImplicitBPR])
def test_no_common_sampler_and_not_fitted(cls, tiny):
    model = cls()
    assert model.make_sampler(tiny.train) is None
    assert not model.uses_sampler and model.iterative
    assert "common sampler is not used" in model.notes
    with pytest.raises(NotFittedError):
        model.score(np.arange(2))


def test_als_epochs_continue_one_optimisation(tiny):
    """Three 1-iteration fits equal implicit's own ``iterations=3`` from the same seed."""
    model = _fit(ImplicitALS(factors=8, regularization=0.5, alpha=4.0, epochs=3), tiny, seed=3)
    reference = AlternatingLeastSquares(
        factors=8,
        regularization=0.5,
        alpha=4.0,
        iterations=3,
        num_threads=1,
        random_state=np.random.default_rng(derive_seed(np.random.default_rng(3))),
    )
    reference.fit(tiny.train.to_bool_csr().astype(np.float32), show_progress=False)
    # The same implicit code from the same seed: the same factors, bit for bit ...
    np.testing.assert_array_equal(model._user_factors, reference.user_factors)
    # ... multiplied by BLAS in another layout (the items transposed once, other
    # shapes): each product within gamma(8) of the exact one times sum|x_f y_f|.
    expected = reference.user_factors[:10] @ reference.item_factors.T
    magnitude = np.abs(reference.user_factors[:10]) @ np.abs(reference.item_factors.T)
    tolerance = 2 * float_bounds.gamma(reference.user_factors.shape[1]) * magnitude
    assert (np.abs(model.score(np.arange(10)) - expected) <= tolerance).all()


def _als_objective(model, data):
    """Hu et al.'s objective by brute force over every (user, item) pair."""
    x = model._user_factors.astype(np.float64)
    y = model._item_factors_t.T.astype(np.float64)
    p = data.train.to_bool_csr().toarray().astype(np.float64)
    c = np.where(p > 0, model.alpha, 1.0)
    return float(
        (c * (p - x @ y.T) ** 2).sum() + model.regularization * ((x**2).sum() + (y**2).sum())
    )


def test_als_exact_solver_decreases_objective_every_epoch(tiny):
    model = ImplicitALS(factors=6, regularization=2.0, alpha=5.0, epochs=6, use_cg=False)
    objectives = []
    _fit(model, tiny, on_epoch=lambda epoch: objectives.append(_als_objective(model, tiny)))
    assert len(objectives) == 6
    assert all(later <= earlier * (1 + 1e-5) for earlier, later in pairwise(objectives))
    assert objectives[-1] < objectives[0]


def test_als_item_factors_solve_normal_equations(tiny):
    """After a sweep, each item vector is the exact weighted ridge solution given the users."""
    model = _fit(
        ImplicitALS(factors=5, regularization=1.5, alpha=6.0, epochs=2, use_cg=False), tiny
    )
    x = model._user_factors.astype(np.float64)
    y = model._item_factors_t.T.astype(np.float64)
    p = tiny.train.to_bool_csr().toarray().astype(np.float64)
    for item in (0, 11, 42, 79):
        c = np.where(p[:, item] > 0, model.alpha, 1.0)
        lhs = x.T @ (c[:, None] * x) + model.regularization * np.eye(5)
        rhs = x.T @ (c * p[:, item])
        np.testing.assert_allclose(y[item], np.linalg.solve(lhs, rhs), rtol=2e-3, atol=1e-5)


def test_als_thread_count_does_not_change_results(tiny):
    # Threads only split the users between them: each user's solve is the same
    # arithmetic, in the same order, on any thread (bit for bit on this machine);
    # the tolerance is loose, not a bound.
    one = _fit(ImplicitALS(factors=8, regularization=1.0, alpha=4.0, epochs=3), tiny)
    two = _fit(ImplicitALS(factors=8, regularization=1.0, alpha=4.0, epochs=3, num_threads=2), tiny)
    np.testing.assert_allclose(
        one.score(np.arange(20)), two.score(np.arange(20)), rtol=1e-4, atol=1e-6
    )


def test_fit_leaves_blas_threads_alone(tiny):
    before = [(api["internal_api"], api["num_threads"]) for api in threadpool_info()]
    _fit(ImplicitALS(factors=4, epochs=1), tiny)
    after = [(api["internal_api"], api["num_threads"]) for api in threadpool_info()]
    assert after == before


@pytest.mark.parametrize(
    "model",
    [
        ImplicitALS(factors=8, regularization=1.0, alpha=4.0, epochs=15),
        ImplicitBPR(factors=32, learning_rate=0.05, epochs=100),
    ],
    ids=["als", "bpr"],
)
def test_learns_better_than_popularity(model, tiny):
    popularity = Popularity().fit(tiny.train, rng=np.random.default_rng(0))
    _fit(model, tiny)
    assert _auc(model, tiny) > _auc(popularity, tiny) + 0.08


def test_bpr_score_includes_item_bias(tiny):
    """implicit keeps the item bias as an extra factor column with the user side fixed at 1."""
    model = _fit(ImplicitBPR(factors=4, epochs=3), tiny)
    user_factors = model._estimator.user_factors
    assert user_factors.shape == (tiny.num_users, 5)
    trained = tiny.train.user_counts() > 0
    np.testing.assert_array_equal(user_factors[trained, -1], 1.0)
    expected = user_factors[:7] @ model._estimator.item_factors.T
    np.testing.assert_allclose(model.score(np.arange(7)), expected, rtol=1e-6)


def test_bpr_epochs_draw_fresh_samples(tiny):
    """Each epoch continues from the last one with new random draws (not a replay)."""
    a = _fit(ImplicitBPR(factors=4, epochs=1), tiny, seed=1)
    b = _fit(ImplicitBPR(factors=4, epochs=2), tiny, seed=1)
    assert not np.allclose(a.score(np.arange(5)), b.score(np.arange(5)))
    c = _fit(ImplicitBPR(factors=4, epochs=2), tiny, seed=1)
    np.testing.assert_array_equal(b.score(np.arange(5)), c.score(np.arange(5)))


@pytest.mark.realdata
def test_ials_is_strong_on_ua(ml100k):
    """The tuned iALS preset: AUC 0.940 on ``ua`` with seed 0; it must beat 0.93."""
    from bench.registry import default_registry

    model = default_registry().make("implicit-als", "fast")
    _fit(model, ml100k)
    assert _auc(model, ml100k) >= 0.93
