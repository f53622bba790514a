"""LightFM adapter: parameters, LightFM equivalence, side features, metric cross-checks."""

from __future__ import annotations

import float_bounds
import numpy as np
import pytest

pytest.importorskip("lightfm")

from lightfm import LightFM
from lightfm.evaluation import auc_score, precision_at_k

from metrics import Evaluator, summarize
from models.base import NotFittedError, derive_seed
from models.baselines import Popularity
from models.lightfm_model import LightFMModel


def _fit(model, data, features=None, seed=0, **kwargs):
    return model.fit(data.train, rng=np.random.default_rng(seed), features=features, **kwargs)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"loss": "logistic"}, "loss"),
        ({"loss": "WARP"}, "loss"),
        ({"no_components": 0}, "no_components"),
        ({"no_components": 2.5}, "no_components"),
        ({"learning_schedule": "sgd"}, "learning_schedule"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"rho": 1.0}, "rho"),
        ({"epsilon": -1e-6}, "epsilon"),
        ({"item_alpha": -0.1}, "item_alpha"),
        ({"user_alpha": float("nan")}, "user_alpha"),
        ({"max_sampled": 0}, "max_sampled"),
        ({"num_threads": 0}, "num_threads"),
        ({"epochs": 0}, "epochs"),
        ({"use_features": "yes"}, "use_features"),
    ],
)
def test_impossible_params_raise(params, match, tiny):
    model = LightFMModel(**params)
    with pytest.raises(ValueError, match=match):
        _fit(model, tiny)


def test_constructor_only_stores():
    model = LightFMModel(loss="bpr", no_components=8, epochs=3)
    assert model.get_params()["loss"] == "bpr"
    assert model.get_params()["no_components"] == 8
    assert not hasattr(model, "_lightfm")
    with pytest.raises(NotFittedError):
        model.score(np.arange(3))


def test_samples_its_own_negatives(tiny):
    model = LightFMModel(epochs=1)
    assert model.make_sampler(tiny.train) is None
    assert not model.uses_sampler
    assert "own negatives" in model.notes


def test_epoch_by_epoch_equals_lightfm_fit(tiny):
    """Three ``fit_partial`` epochs are exactly LightFM's own ``fit(epochs=3)``."""
    model = _fit(LightFMModel(no_components=8, epochs=3), tiny, seed=5)
    reference = LightFM(
        no_components=8,
        loss="warp",
        learning_rate=0.05,
        max_sampled=10,
        random_state=np.random.RandomState(derive_seed(np.random.default_rng(5))),
    )
    reference.fit(tiny.train.to_bool_csr().astype(np.float32).tocoo(), epochs=3)
    np.testing.assert_array_equal(model._lightfm.item_embeddings, reference.item_embeddings)
    np.testing.assert_array_equal(model._lightfm.user_biases, reference.user_biases)


def _score_bounds(model, num_users, num_items):
    """Exact scores and their rounding bounds for every (user, item), float64.

    Our scorer (sparse representations, one BLAS matmul) and LightFM's (its own
    float32 loops) are each within gamma(n) of the exact score ``p_u . q_i + b_u +
    b_i`` times its |.|-computation (tests/float_bounds.py), n the roundings on the
    longest chain (a row's features, the components, the two biases): the bound
    returned is twice that, how far the two can be apart.
    """
    import scipy.sparse as sp

    lightfm = model._lightfm

    def side(matrix, rows, embeddings, biases):
        features = sp.identity(rows, format="csr") if matrix is None else sp.csr_matrix(matrix)
        features = features.astype(np.float64)
        embeddings, biases = (np.asarray(x, np.float64) for x in (embeddings, biases))
        magnitude = abs(features)
        width = int(np.diff(features.indptr).max())
        return (
            features @ embeddings, features @ biases,
            magnitude @ np.abs(embeddings), magnitude @ np.abs(biases), width,
        )  # fmt: skip

    users, user_bias, users_abs, user_bias_abs, user_width = side(
        model._user_matrix, num_users, lightfm.user_embeddings, lightfm.user_biases
    )
    items, item_bias, items_abs, item_bias_abs, item_width = side(
        model._item_matrix, num_items, lightfm.item_embeddings, lightfm.item_biases
    )
    exact = users @ items.T + user_bias[:, None] + item_bias[None, :]
    magnitude = users_abs @ items_abs.T + user_bias_abs[:, None] + item_bias_abs[None, :]
    depth = max(user_width, item_width) + users.shape[1] + 3
    return exact, 2 * float_bounds.gamma(depth) * magnitude


@pytest.mark.parametrize("use_features", [False, True])
def test_score_matches_lightfm_predict(use_features, tiny, tiny_features):
    model = _fit(
        LightFMModel(no_components=8, epochs=2, use_features=use_features),
        tiny,
        features=tiny_features,
    )
    users = np.array([0, 7, 59, 7])
    scores = model.score(users)
    assert scores.shape == (4, tiny.num_items) and scores.dtype == np.float32
    pair_users = np.repeat(users, tiny.num_items).astype(np.int32)
    pair_items = np.tile(np.arange(tiny.num_items, dtype=np.int32), users.size)
    expected = model._lightfm.predict(
        pair_users,
        pair_items,
        user_features=model._user_matrix,
        item_features=model._item_matrix,
    ).reshape(users.size, tiny.num_items)
    _, bound = _score_bounds(model, tiny.num_users, tiny.num_items)
    assert (np.abs(scores - expected) <= bound[users]).all()


def test_feature_matrices_keep_identity_columns(tiny, tiny_features):
    user_side, item_side = tiny_features
    model = _fit(
        LightFMModel(no_components=4, epochs=1, use_features=True), tiny, features=tiny_features
    )
    assert model._user_matrix.shape == (tiny.num_users, tiny.num_users + user_side.num_features)
    assert model._item_matrix.shape == (tiny.num_items, tiny.num_items + item_side.num_features)
    np.testing.assert_array_equal(
        model._item_matrix[:, : tiny.num_items].toarray(), np.eye(tiny.num_items)
    )
    np.testing.assert_array_equal(
        model._item_matrix[:, tiny.num_items :].toarray(), item_side.matrix.toarray()
    )
    n_user_params = tiny.num_users + user_side.num_features
    assert model._lightfm.user_embeddings.shape == (n_user_params, 4)

    normalized = _fit(
        LightFMModel(no_components=4, epochs=1, use_features=True, normalize_features=True),
        tiny,
        features=tiny_features,
    )
    np.testing.assert_allclose(
        np.asarray(normalized._item_matrix.sum(axis=1)).ravel(), 1.0, rtol=1e-6
    )


def test_features_ignored_unless_asked(tiny, tiny_features):
    plain = _fit(LightFMModel(no_components=4, epochs=2), tiny, features=tiny_features)
    none = _fit(LightFMModel(no_components=4, epochs=2), tiny, features=None)
    assert plain._user_matrix is None and plain._item_matrix is None
    np.testing.assert_array_equal(plain.score(np.arange(5)), none.score(np.arange(5)))
    # use_features with features=None runs ids-only too.
    ids_only = _fit(LightFMModel(no_components=4, epochs=2, use_features=True), tiny)
    np.testing.assert_array_equal(ids_only.score(np.arange(5)), none.score(np.arange(5)))


def test_wrong_feature_rows_raise(tiny, tiny_features):
    from bench.datasets.dataset import SideFeatures

    user_side, item_side = tiny_features
    short = SideFeatures(item_side.matrix[:10], item_side.names)
    with pytest.raises(ValueError, match="item features have 10 rows"):
        _fit(LightFMModel(epochs=1, use_features=True), tiny, features=(user_side, short))


def test_on_epoch_and_learning(tiny):
    evaluator = Evaluator(tiny.test.to_bool_csr(), tiny.exclusion("train-positives"))
    model = LightFMModel(no_components=16, epochs=15)
    aucs = {}
    _fit(
        model,
        tiny,
        on_epoch=lambda e: aucs.__setitem__(e, summarize(evaluator.evaluate(model))["auc"]),
    )
    assert list(aucs) == list(range(1, 16))
    # The synthetic data has low-rank taste: WARP must clearly beat popularity (0.614) and improve.
    popularity = Popularity().fit(tiny.train, rng=np.random.default_rng(0))
    assert aucs[15] > summarize(evaluator.evaluate(popularity))["auc"] + 0.08
    assert aucs[15] > aucs[1]


def _lightfm_reference(model, data):
    test = data.test.to_bool_csr().astype(np.float32)
    train = data.train.to_bool_csr().astype(np.float32)
    kwargs = {"user_features": model._user_matrix, "item_features": model._item_matrix}
    auc = auc_score(model._lightfm, test, train_interactions=train, **kwargs)
    precision = precision_at_k(model._lightfm, test, train_interactions=train, k=10, **kwargs)
    return auc, precision


def _ranking_tolerances(model, data, k=10):
    """How far rsbench's per-user AUC and precision@k may be from LightFM's, per test user.

    Both rank the same scores computed by different kernels (_score_bounds): a
    (positive, candidate) pair whose exact scores are closer than the two scorers'
    bounds may be ordered, or tied, differently, and only such a pair: each moves
    a user's AUC by at most 1 / (P N), and the tie policies (rsbench's expected rank,
    LightFM counting ties as above) differ on such pairs only. A positive whose rank
    could cross k that way moves precision@k by at most 1 / k. LightFM computes in
    float32: a few more roundings (4 here) of a value <= 1.
    """
    exact, bound = _score_bounds(model, data.num_users, data.num_items)
    test, train = data.test.to_bool_csr(), data.train.to_bool_csr()
    auc, precision = [], []
    for user in np.flatnonzero(data.test.user_counts() > 0):
        candidates = np.setdiff1d(np.arange(data.num_items), train[user].indices)
        positives = np.intersect1d(test[user].indices, candidates)
        negatives = np.setdiff1d(candidates, positives)
        scores, bounds = exact[user], bound[user]
        gap = scores[candidates][None, :] - scores[positives][:, None]
        band = bounds[candidates][None, :] + bounds[positives][:, None]
        is_negative = np.isin(candidates, negatives)[None, :]
        ambiguous = (np.abs(gap) <= band) & is_negative
        auc.append(ambiguous.sum() / max(positives.size * negatives.size, 1))
        surely_above = (gap > band).sum(axis=1)
        maybe_above = (gap >= -band).sum(axis=1) - 1  # not the positive itself
        precision.append(((surely_above < k) != (maybe_above < k)).sum() / k)
    float32 = 4 * 2.0**-24
    return np.array(auc) + float32, np.array(precision) + float32


def _check_against_lightfm(model, data):
    """rsbench's AUC and precision@10 against ``lightfm.evaluation`` on one fitted model.

    LightFM evaluates only users with a test interaction and drops the train
    interactions from the candidates: that is exactly our ``train-positives``
    exclusion and evaluated-user set. Tie handling differs: LightFM counts
    every candidate scored >= a test item as ranked above it (and exact ties
    break its AUC formula, see the test below), while rsbench uses the expected
    rank. The two agree up to the pairs that rounding may order differently
    (_ranking_tolerances), per user and on the averages.
    """
    evaluator = Evaluator(
        data.test.to_bool_csr(), data.exclusion("train-positives"), ks=(10,), ties="expected"
    )
    per_user = evaluator.evaluate(model)
    lightfm_auc, lightfm_precision = _lightfm_reference(model, data)
    auc_tol, precision_tol = _ranking_tolerances(model, data)
    test_users = np.flatnonzero(data.test.user_counts() > 0)
    np.testing.assert_array_equal(per_user["user"].to_numpy(), test_users)
    assert (np.abs(per_user["auc"].to_numpy() - lightfm_auc) <= auc_tol).all()
    assert (np.abs(per_user["precision@10"].to_numpy() - lightfm_precision) <= precision_tol).all()
    summary = summarize(per_user)
    assert abs(summary["auc"] - float(np.mean(lightfm_auc))) <= auc_tol.mean()
    assert abs(summary["precision@10"] - float(np.mean(lightfm_precision))) <= precision_tol.mean()


@pytest.mark.parametrize("use_features", [False, True])
def test_metrics_agree_with_lightfm_evaluation_tiny(use_features, tiny, tiny_features):
    model = _fit(
        LightFMModel(no_components=16, epochs=5, use_features=use_features),
        tiny,
        features=tiny_features,
    )
    _check_against_lightfm(model, tiny)


def test_lightfm_evaluation_is_pessimistic_on_exact_ties(tiny):
    """Why the cross-check needs untied scores: a constant model is AUC 0.5 for us, not LightFM."""
    model = _fit(LightFMModel(no_components=4, epochs=1), tiny)
    for name in ("user_embeddings", "item_embeddings", "user_biases", "item_biases"):
        getattr(model._lightfm, name)[...] = 0.0
    model._representations = None
    evaluator = Evaluator(tiny.test.to_bool_csr(), tiny.exclusion("train-positives"))
    assert summarize(evaluator.evaluate(model))["auc"] == pytest.approx(0.5)
    lightfm_auc, _ = _lightfm_reference(model, tiny)
    assert float(np.mean(lightfm_auc)) < 0.5


@pytest.mark.realdata
@pytest.mark.parametrize("use_features", [False, True])
def test_metrics_agree_with_lightfm_evaluation_ml100k(use_features, ml100k):
    features = (ml100k.user_features, ml100k.item_features)
    model = _fit(LightFMModel(epochs=5, use_features=use_features), ml100k, features=features)
    _check_against_lightfm(model, ml100k)


@pytest.mark.realdata
def test_lightfm_warp_reaches_published_auc_on_ua(ml100k):
    """WARP, 64 components, 10 epochs: AUC >= 0.92 on ``ua`` (0.933 measured with seed 0)."""
    from bench.registry import default_registry

    model = default_registry().make("lightfm-warp", "fast")
    _fit(model, ml100k)
    evaluator = Evaluator(ml100k.test.to_bool_csr(), ml100k.exclusion("train-positives"))
    summary = summarize(evaluator.evaluate(model))
    assert summary["auc"] >= 0.92
    assert summary["precision@10"] > 0.10


def test_two_threads_train(tiny):
    """Hogwild with 2 threads is not bit-reproducible, but it trains and scores finitely."""
    model = _fit(LightFMModel(no_components=8, epochs=2, num_threads=2), tiny)
    assert np.isfinite(model.score(np.arange(tiny.num_users))).all()


def test_interactions_are_binarised(tiny):
    """Ratings in ``train.weights`` must not become LightFM sample weights."""
    weighted = tiny.train.with_weights(np.full(len(tiny.train), 5.0))
    a = LightFMModel(no_components=4, epochs=2).fit(weighted, rng=np.random.default_rng(1))
    b = LightFMModel(no_components=4, epochs=2).fit(tiny.train, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a.score(np.arange(4)), b.score(np.arange(4)))
