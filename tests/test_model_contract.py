"""The shared contract every registered model must satisfy, on tiny synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.registry import default_registry
from models.base import NotFittedError, Recommender

REGISTRY = default_registry()

# Keep the suite fast: few epochs, small batches where a model has them.
FAST = {"epochs": 2}


def _cases():
    for entry in REGISTRY.entries():
        yield pytest.param(entry.name, None, id=entry.name)
        for preset in sorted(entry.presets):
            yield pytest.param(entry.name, preset, id=f"{entry.name}:{preset}")


def _make(name: str, preset: str | None) -> Recommender:
    entry = REGISTRY.get(name)
    for module in entry.requires:
        pytest.importorskip(module)
    model = REGISTRY.make(name, preset)
    if "epochs" in model.get_params():
        model.set_params(**FAST)
    return model


def _fit(model: Recommender, data, features, seed: int = 0, on_epoch=None) -> Recommender:
    return model.fit(
        data.train,
        sampler=model.make_sampler(data.train),
        rng=np.random.default_rng(seed),
        on_epoch=on_epoch,
        features=features if model.uses_features else None,
    )


@pytest.mark.parametrize(("name", "preset"), list(_cases()))
def test_contract(name, preset, tiny, tiny_features):
    model = _make(name, preset)
    users = np.arange(tiny.num_users)

    # Constructor only stores: parameters round-trip and serialise.
    params = model.get_params()
    assert type(model)(**params).get_params() == params
    json.dumps(params)

    with pytest.raises(NotFittedError):
        model.score(users[:3])

    epochs_seen = []
    fitted = _fit(model, tiny, tiny_features, on_epoch=epochs_seen.append)
    assert fitted is model
    expected_epochs = params.get("epochs", 1)
    assert epochs_seen == list(range(1, expected_epochs + 1))
    assert model.get_params() == params  # fit does not change hyperparameters

    scores = model.score(users)
    assert scores.shape == (tiny.num_users, tiny.num_items)
    assert scores.dtype == np.float32
    assert scores.flags.c_contiguous
    assert np.isfinite(scores).all()

    # A user's scores do not depend on the block it is scored in.
    np.testing.assert_allclose(model.score(users[[5, 2]]), scores[[5, 2]], rtol=1e-5, atol=1e-6)

    # Same seed, same scores (a fresh clone fitted again).
    again = _fit(model.clone(), tiny, tiny_features).score(users)
    np.testing.assert_allclose(again, scores, rtol=1e-4, atol=1e-5)
    # Another seed, other scores, for every model whose fit draws random numbers.
    if not type(model).deterministic:
        other = _fit(model.clone(), tiny, tiny_features, seed=1).score(users)
        assert not np.allclose(other, scores), "the seed does not reach the model"
    else:  # declared deterministic: another seed changes nothing
        np.testing.assert_array_equal(
            _fit(model.clone(), tiny, tiny_features, seed=1).score(users), scores
        )
    for fact in ("deterministic", "uses_sampler"):
        assert isinstance(getattr(type(model), fact), bool), fact

    with pytest.raises(ValueError):
        model.score(np.array([tiny.num_users]))


@pytest.mark.parametrize("name", REGISTRY.names())
def test_impossible_epochs_raise(name, tiny, tiny_features):
    model = _make(name, None)
    if "epochs" not in model.get_params():
        pytest.skip("model has no epochs parameter")
    model.set_params(epochs=-1)
    with pytest.raises(ValueError, match="epochs"):
        _fit(model, tiny, tiny_features)
