"""Factorization machine: brute-force FM formula, feature switches, training, determinism."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import scipy.sparse as sp
import torch

from bench.dataset import SideFeatures
from bench.interactions import Interactions
from bench.sampler import NegativeSampler
from metrics import Evaluator, summarize
from models.base import NotFittedError
from models.baselines import Popularity
from models.fm import FactorizationMachine


def _fit(model, data, features=None, seed=0, **kwargs):
    return model.fit(data.train, rng=np.random.default_rng(seed), features=features, **kwargs)


def _auc(model, data):
    evaluator = Evaluator(data.test.to_bool_csr(), data.exclusion("train-positives"))
    return summarize(evaluator.evaluate(model))["auc"]


@pytest.fixture(scope="module")
def weighted_features(tiny_features):
    """``tiny_features`` with non-binary values, so ``x_j^2 != x_j`` matters."""
    gen = np.random.default_rng(11)
    out = []
    for side in tiny_features:
        matrix = side.matrix.copy()
        matrix.data = gen.uniform(0.5, 2.0, matrix.nnz).astype(np.float32)
        out.append(SideFeatures(matrix, side.names))
    return tuple(out)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"loss": "hinge"}, "loss"),
        ({"margin": -1.0}, "margin"),
        ({"l2_reg": -1e-3}, "l2_reg"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"negatives": "nearest"}, "negatives"),
        ({"negatives_alpha": -0.5}, "negatives_alpha"),
        ({"hard_candidates": 0}, "hard_candidates"),
        ({"use_item_features": 1}, "use_item_features"),
        ({"init_std": 0.0}, "init_std"),
        ({"num_threads": 0}, "num_threads"),
        ({"epochs": -2}, "epochs"),
    ],
)
def test_impossible_params_raise(params, match, tiny):
    with pytest.raises(ValueError, match=match):
        _fit(FactorizationMachine(**params), tiny)


def test_constructor_only_stores_and_not_fitted():
    model = FactorizationMachine(latent_dim=3, loss="margin")
    assert model.get_params()["latent_dim"] == 3
    assert not hasattr(model, "_model")
    with pytest.raises(NotFittedError):
        model.score(np.arange(2))


def _brute_force_fm(model, data, features, users):
    """``w0 + w.x + sum_{j<l} <v_j, v_l> x_j x_l`` from dense feature vectors, no tricks."""
    user_side, item_side = features
    num_users, num_items = data.num_users, data.num_items
    user_block = np.hstack([np.eye(num_users), user_side.matrix.toarray()])
    item_block = np.hstack([np.eye(num_items), item_side.matrix.toarray()])
    table = model._model.table.detach().numpy().astype(np.float64)
    w0 = float(model._model.w0.detach())
    v, w = table[:, :-1], table[:, -1]
    upper = np.triu(v @ v.T, k=1)
    out = np.empty((len(users), num_items))
    for row, user in enumerate(users):
        for item in range(num_items):
            x = np.concatenate([user_block[user], item_block[item]])
            out[row, item] = w0 + w @ x + x @ upper @ x
    return out


@pytest.mark.parametrize("loss", ["bpr", "margin"])
def test_score_equals_brute_force_fm(loss, tiny, weighted_features):
    model = _fit(
        FactorizationMachine(latent_dim=4, loss=loss, epochs=2, batch_size=64),
        tiny,
        features=weighted_features,
    )
    users = np.array([3, 0, 41])
    expected = _brute_force_fm(model, tiny, weighted_features, users)
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-4, atol=1e-5)
    # The hard sampler's pair callback computes the same function.
    pairs = model._score_pairs(np.repeat(users, 5), np.tile(np.arange(5), 3))
    np.testing.assert_allclose(pairs, expected[:, :5].ravel(), rtol=1e-4, atol=1e-5)


def test_without_features_it_is_biased_mf(tiny, tiny_features):
    model = _fit(
        FactorizationMachine(
            latent_dim=4, epochs=2, use_user_features=False, use_item_features=False
        ),
        tiny,
        features=tiny_features,
    )
    table = model._model.table.detach().numpy()
    assert table.shape == (tiny.num_users + tiny.num_items, 5)
    user_rows, item_rows = table[: tiny.num_users], table[tiny.num_users :]
    expected = (
        float(model._model.w0.detach())
        + user_rows[:, -1:]
        + item_rows[:, -1]
        + user_rows[:, :-1] @ item_rows[:, :-1].T
    )
    np.testing.assert_allclose(
        model.score(np.arange(tiny.num_users)), expected, rtol=1e-5, atol=1e-6
    )
    # Switching both features off is the same model as fitting without features.
    ids_only = _fit(FactorizationMachine(latent_dim=4, epochs=2), tiny, features=None)
    np.testing.assert_array_equal(ids_only.score(np.arange(6)), model.score(np.arange(6)))


@pytest.mark.parametrize(("use_user", "use_item"), [(True, True), (True, False), (False, True)])
def test_feature_switches_set_feature_space(use_user, use_item, tiny, tiny_features):
    user_side, item_side = tiny_features
    model = _fit(
        FactorizationMachine(
            latent_dim=2, epochs=1, use_user_features=use_user, use_item_features=use_item
        ),
        tiny,
        features=tiny_features,
    )
    expected = (
        tiny.num_users
        + tiny.num_items
        + use_user * user_side.num_features
        + use_item * item_side.num_features
    )
    assert model._model.table.shape == (expected, 3)
    # One side missing from ``features`` means ids only on that side.
    half = _fit(FactorizationMachine(latent_dim=2, epochs=1), tiny, features=(None, item_side))
    assert half._model.table.shape[0] == tiny.num_users + tiny.num_items + item_side.num_features


def test_bad_features_raise(tiny, tiny_features):
    user_side, item_side = tiny_features
    short = SideFeatures(user_side.matrix[:5], user_side.names)
    with pytest.raises(ValueError, match="user features have 5 rows"):
        _fit(FactorizationMachine(epochs=1), tiny, features=(short, item_side))
    with pytest.raises(ValueError, match="features must be None or a"):
        _fit(FactorizationMachine(epochs=1), tiny, features=[user_side, item_side])
    bad = item_side.matrix.copy()
    bad.data[0] = np.nan
    with pytest.raises(FloatingPointError, match="item side features"):
        _fit(
            FactorizationMachine(epochs=1),
            tiny,
            features=(user_side, SideFeatures(sp.csr_matrix(bad), item_side.names)),
        )


@pytest.mark.parametrize("loss", ["bpr", "margin"])
def test_training_lowers_loss_and_beats_popularity(loss, tiny, tiny_features):
    # tiny_features are random (pure noise), so learning is checked on ids only here...
    model = FactorizationMachine(latent_dim=16, loss=loss, epochs=20, batch_size=64)
    epochs_seen = []
    _fit(model, tiny, on_epoch=epochs_seen.append)
    assert epochs_seen == list(range(1, 21))
    assert model.loss_history_[-1] < 0.8 * model.loss_history_[0]
    popularity = Popularity().fit(tiny.train, rng=np.random.default_rng(0))
    assert _auc(model, tiny) > _auc(popularity, tiny) + 0.08
    # ... and with the noise features the training loss still falls.
    noisy = _fit(
        FactorizationMachine(latent_dim=16, loss=loss, epochs=20, batch_size=64),
        tiny,
        features=tiny_features,
    )
    assert noisy.loss_history_[-1] < 0.8 * noisy.loss_history_[0]


def _cold_start_data():
    """40 users in 4 groups like 6 random warm items of their group's kind; 4 cold items.

    Item ``i`` has kind ``i % 4``; the last 4 items (one per kind) have no
    train positive at all, so only the item side features say who likes them.
    """
    gen = np.random.default_rng(0)
    num_users = num_items = 40
    groups, kinds = np.arange(num_users) % 4, np.arange(num_items) % 4
    users, items = [], []
    for user in range(num_users):
        warm = np.flatnonzero(kinds[: num_items - 4] == groups[user])
        users += [user] * 6
        items += list(gen.choice(warm, size=6, replace=False))
    train = Interactions(np.array(users), np.array(items), num_users, num_items)

    def one_hot(codes, prefix):
        n = codes.shape[0]
        matrix = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, 4))
        return SideFeatures(matrix, tuple(f"{prefix}={g}" for g in range(4)))

    return train, (one_hot(groups, "group"), one_hot(kinds, "kind")), groups


@pytest.mark.parametrize(
    ("params", "expect_features_work"),
    [({}, True), ({"use_user_features": False}, True), ({"use_item_features": False}, False)],
)
def test_item_features_rank_cold_items(params, expect_features_work):
    """Known answer: only item features can rank an item that has no train positive."""
    train, features, groups = _cold_start_data()
    model = FactorizationMachine(latent_dim=8, epochs=30, batch_size=32, **params)
    model.fit(train, rng=np.random.default_rng(1), features=features)
    cold_scores = model.score(np.arange(train.num_users))[:, -4:]
    own = cold_scores[np.arange(train.num_users), groups]
    share = float(((own[:, None] > cold_scores).sum(1) == 3).mean())
    if expect_features_work:
        assert share >= 0.9
    else:
        assert share <= 0.5


@pytest.mark.parametrize("strategy", ["uniform-unseen", "popularity", "hard"])
def test_sampler_strategies_train(strategy, tiny, tiny_features):
    model = FactorizationMachine(latent_dim=8, epochs=2, negatives=strategy, batch_size=64)
    sampler = model.make_sampler(tiny.train)
    assert isinstance(sampler, NegativeSampler) and sampler.strategy == strategy
    _fit(model, tiny, features=tiny_features, sampler=sampler)
    assert np.isfinite(model.score(np.arange(tiny.num_users))).all()


def test_deterministic_and_global_torch_state_untouched(tiny, tiny_features):
    torch_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    a = _fit(FactorizationMachine(latent_dim=8, epochs=2), tiny, features=tiny_features, seed=4)
    b = _fit(FactorizationMachine(latent_dim=8, epochs=2), tiny, features=tiny_features, seed=4)
    c = _fit(FactorizationMachine(latent_dim=8, epochs=2), tiny, features=tiny_features, seed=5)
    users = np.arange(tiny.num_users)
    np.testing.assert_array_equal(a.score(users), b.score(users))
    assert not np.allclose(a.score(users), c.score(users))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert torch.get_num_threads() == threads


class _RecordingSampler:
    """Wraps a sampler and records torch's thread count when an epoch is drawn."""

    def __init__(self, inner):
        self.inner = inner
        self.threads = []

    def sample(self, rng, score_pairs=None):
        self.threads.append(torch.get_num_threads())
        return self.inner.sample(rng, score_pairs=score_pairs)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_num_threads_is_used_during_training(num_threads, tiny):
    model = FactorizationMachine(latent_dim=4, epochs=2, num_threads=num_threads)
    sampler = _RecordingSampler(model.make_sampler(tiny.train))
    before = torch.get_num_threads()
    _fit(model, tiny, sampler=sampler)
    assert sampler.threads == [num_threads, num_threads]
    assert torch.get_num_threads() == before


def test_score_mid_fit_tracks_training(tiny):
    model = FactorizationMachine(latent_dim=4, epochs=3)
    snapshots = []
    _fit(model, tiny, on_epoch=lambda epoch: snapshots.append(model.score(np.arange(3))))
    assert len(snapshots) == 3
    assert not np.allclose(snapshots[0], snapshots[2])
    np.testing.assert_array_equal(snapshots[2], model.score(np.arange(3)))


@pytest.mark.realdata
def test_fm_with_side_features_on_ua(ml100k):
    """FM with genres/decade and age/gender/occupation: AUC >= 0.90 on ``ua`` (0.923 measured)."""
    from bench.registry import default_registry

    model = default_registry().make("fm", "fast")
    assert model.use_user_features and model.use_item_features
    _fit(model, ml100k, features=(ml100k.user_features, ml100k.item_features))
    assert model._num_user_features == ml100k.user_features.num_features
    assert model._num_item_features == ml100k.item_features.num_features
    assert _auc(model, ml100k) >= 0.90
