"""The adapter contract as a function a third-party model's own tests can call.

rsbench runs every registered model through :func:`check_recommender`
(``tests/test_model_contract.py``); an outside package does the same::

    from bench.testing import check_recommender
    from my_pkg import MyModel

    def test_my_model_follows_the_rsbench_contract():
        check_recommender(MyModel, params={"factors": 8})

The checks (``AssertionError`` naming the broken rule when one fails):

* the constructor only stores: ``get_params`` round-trips through the class
  and through JSON;
* ``score`` before ``fit`` raises :class:`models.base.NotFittedError`;
* ``fit`` returns ``self``, calls ``on_epoch`` with 1..epochs, and leaves the
  hyperparameters unchanged;
* ``score`` gives a C-contiguous, finite float32 ``(n, num_items)`` block, a
  user's scores do not depend on the block it is scored in, and out-of-range
  user ids raise ``ValueError``;
* the same seed gives the same scores; another seed gives other scores unless
  the class declares ``deterministic = True``, and then exactly the same ones;
* the facts the driver reads (``bench.registry.MODEL_FACTS``: ``deterministic``,
  ``uses_sampler``, ``reference``...) are bools;
* impossible ``epochs`` raise ``ValueError`` (for models that have epochs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["check_recommender", "contract_data"]


def contract_data():
    """The tiny synthetic dataset of the contract (60 users, 80 items, seeded)."""
    from bench.datasets.synthetic import synthetic

    return synthetic(num_users=60, num_items=80, num_positives=1_200, test_per_user=2, seed=7)


def _fail(cls: type, rule: str) -> AssertionError:
    return AssertionError(f"{cls.__name__} breaks the rsbench adapter contract: {rule}")


def check_recommender(
    model: Any,
    *,
    params: Mapping[str, Any] | None = None,
    data: Any = None,
    features: Any = None,
    epochs: int | None = 2,
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> Any:
    """Check that ``model`` follows rsbench's adapter contract (see the module docstring).

    Parameters
    ----------
    model : type or Recommender
        The adapter class, or an unfitted instance (its parameters are used).
    params : mapping, optional
        Hyperparameters for the class (with a class); merged over an instance's.
    data : Dataset, optional
        Default :func:`contract_data`.
    features : (SideFeatures, SideFeatures), optional
        Passed to ``fit`` when the class declares ``uses_features``.
    epochs : int or None
        Overrides the ``epochs`` hyperparameter (when the model has one) to
        keep the check fast; None keeps the model's own.
    seed : int
        Seed of the first fit (the second-seed check uses ``seed + 1``).
    rtol, atol : float
        Tolerance of "same seed, same scores" and of the block check.

    Returns
    -------
    Recommender
        The model, fitted on ``data``.

    Raises
    ------
    AssertionError
        Naming the first rule the model breaks.
    """
    from models.base import NotFittedError, Recommender

    if isinstance(model, type):
        cls = model
        if not issubclass(cls, Recommender):
            raise TypeError(f"{cls!r} is not a subclass of models.base.Recommender")
        instance = cls(**dict(params or {}))
    elif isinstance(model, Recommender):
        cls = type(model)
        instance = cls(**{**model.get_params(), **dict(params or {})})
    else:
        raise TypeError(f"expected a Recommender class or instance, got {model!r}")
    if epochs is not None and "epochs" in instance.get_params():
        instance.set_params(epochs=epochs)
    data = contract_data() if data is None else data
    users = np.arange(data.num_users)

    def fit(m: Any, fit_seed: int, on_epoch: Any = None) -> Any:
        sampler = m.make_sampler(data.train)
        return m.fit(
            data.train,
            sampler=sampler,
            rng=np.random.default_rng(fit_seed),
            on_epoch=on_epoch,
            features=features if getattr(m, "uses_features", False) else None,
        )

    # The constructor only stores.
    hyper = instance.get_params()
    if cls(**hyper).get_params() != hyper:
        raise _fail(cls, "type(model)(**model.get_params()) does not give the same parameters")
    try:
        json.dumps(hyper)
    except TypeError as exc:
        raise _fail(cls, f"get_params() is not JSON-serialisable ({exc})") from None

    try:
        instance.score(users[:3])
    except NotFittedError:
        pass
    else:
        raise _fail(cls, "score() before fit() must raise models.base.NotFittedError")

    seen: list[int] = []
    fitted = fit(instance, seed, seen.append)
    if fitted is not instance:
        raise _fail(cls, "fit() must return self")
    expected = list(range(1, int(hyper.get("epochs", 1)) + 1))
    if seen != expected:
        raise _fail(cls, f"on_epoch must be called with {expected}, got {seen}")
    if instance.get_params() != hyper:
        raise _fail(cls, "fit() changed the hyperparameters")

    scores = instance.score(users)
    shape = (data.num_users, data.num_items)
    if not isinstance(scores, np.ndarray) or scores.shape != shape:
        raise _fail(cls, f"score() must return an array of shape {shape}")
    if scores.dtype != np.float32 or not scores.flags.c_contiguous:
        raise _fail(cls, f"score() must be C-contiguous float32, got {scores.dtype}")
    if not np.isfinite(scores).all():
        raise _fail(cls, "score() returned NaN or inf")
    block = instance.score(users[[5, 2]])
    # A 2-row and a full product may run different BLAS/XLA kernels (the small-matrix
    # ones differ by CPU instruction set): float32 dot products of d terms then differ
    # by up to about d * 2**-24 * sum|terms|, around 1e-5 of a row's scale for d <= 256.
    # A real dependence on the block (normalising over it, batch statistics) moves
    # scores by a sizeable share of that scale, so 1e-4 of each row's largest |score|
    # separates the two on every CPU kind.
    scale = np.abs(scores[[5, 2]]).max(axis=1, keepdims=True).astype(np.float64)
    if not (np.abs(block.astype(np.float64) - scores[[5, 2]]) <= 1e-4 * scale + 1e-6).all():
        raise _fail(cls, "a user's scores depend on the other users of the block")
    try:
        instance.score(np.array([data.num_users]))
    except ValueError:
        pass
    else:
        raise _fail(cls, "score() of an out-of-range user id must raise ValueError")

    again = fit(instance.clone(), seed).score(users)
    if not np.allclose(again, scores, rtol=rtol, atol=atol):
        raise _fail(cls, "the same seed gave other scores (randomness not from rng?)")
    if not getattr(cls, "deterministic", False):
        other = fit(instance.clone(), seed + 1).score(users)
        if np.allclose(other, scores):
            raise _fail(
                cls,
                "another seed gave the same scores: the seed does not reach the model "
                "(declare `deterministic = True` if its fit uses no randomness)",
            )
    else:  # the runner fits a deterministic model once, whatever the seeds: it must not vary
        other = fit(instance.clone(), seed + 1).score(users)
        if not np.array_equal(other, scores):
            raise _fail(cls, "declares deterministic = True but another seed gave other scores")
    from bench.registry import MODEL_FACTS

    for fact in MODEL_FACTS:  # deterministic, uses_sampler, reference...: what the driver reads
        if not isinstance(getattr(cls, fact, False), bool):
            raise _fail(cls, f"class attribute {fact} must be a bool")

    if "epochs" in hyper:
        broken = instance.clone().set_params(epochs=-1)
        try:
            fit(broken, seed)
        except ValueError:
            pass
        else:
            raise _fail(cls, "epochs=-1 must raise ValueError")
    return instance
