"""The shared contract every registered model satisfies, via bench.testing.check_recommender.

Each class declares what the contract may expect of it (``deterministic``:
another seed need not change its scores); nothing is listed here by name.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.registry import default_registry
from bench.testing import check_recommender
from models.base import NotFittedError, Recommender

REGISTRY = default_registry(plugins=False)


def _cases():
    for entry in REGISTRY.entries():
        yield pytest.param(entry.name, None, id=entry.name)
        for preset in sorted(entry.presets):
            yield pytest.param(entry.name, preset, id=f"{entry.name}:{preset}")


@pytest.mark.parametrize(("name", "preset"), list(_cases()))
def test_contract(name, preset, tiny, tiny_features):
    entry = REGISTRY.get(name)
    for module in entry.requires:
        pytest.importorskip(module)
    model = REGISTRY.make(name, preset)
    check_recommender(model, data=tiny, features=tiny_features, epochs=2)


class _Good(Recommender):
    """A well-behaved model: a seeded random score table."""

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        self._begin_fit(train, rng, epochs)
        self._num_users, self._num_items = train.shape
        self._table = rng.random(train.shape) * self.scale
        self._fitted = True
        if on_epoch is not None:
            on_epoch(1)
        return self

    def score(self, user_ids):
        user_ids = self._check_user_ids(user_ids)
        return self._finish_scores(self._table[user_ids])


class _IgnoresSeed(_Good):
    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        return super().fit(train, rng=np.random.default_rng(0), on_epoch=on_epoch)


class _ReturnsFloat64(_Good):
    def score(self, user_ids):
        user_ids = self._check_user_ids(user_ids)
        return self._table[user_ids]


class _ScoresBeforeFit(_Good):
    def score(self, user_ids):
        return np.zeros((len(user_ids), 3), dtype=np.float32)


class _NormalisesOverTheBlock(_Good):
    """Scores centred on the block's mean: a user's scores depend on who else is scored."""

    def score(self, user_ids):
        user_ids = self._check_user_ids(user_ids)
        block = self._table[user_ids]
        return self._finish_scores(block - block.mean(axis=0))


class _ChangesParams(_Good):
    def fit(self, train, **kwargs):
        self.scale = 2.0
        return super().fit(train, **kwargs)


def test_a_good_model_passes_and_comes_back_fitted(tiny):
    model = check_recommender(_Good, params={"scale": 3.0}, data=tiny)
    assert model.score(np.arange(2)).shape == (2, tiny.num_items)


@pytest.mark.parametrize(
    ("cls", "rule"),
    [
        (_IgnoresSeed, "another seed gave the same scores"),
        (_ReturnsFloat64, "C-contiguous float32"),
        (_ScoresBeforeFit, "NotFittedError"),
        (_ChangesParams, "changed the hyperparameters"),
        (_NormalisesOverTheBlock, "depend on the other users of the block"),
    ],
)
def test_broken_models_fail_with_the_rule_they_break(cls, rule, tiny):
    with pytest.raises(AssertionError, match=rule):
        check_recommender(cls, data=tiny)


def test_declaring_deterministic_waives_the_other_seed_check(tiny):
    class Declared(_IgnoresSeed):
        deterministic = True

    check_recommender(Declared, data=tiny)
    with pytest.raises(TypeError, match="Recommender"):
        check_recommender(dict)
    with pytest.raises(NotFittedError):
        _Good().score(np.arange(2))
