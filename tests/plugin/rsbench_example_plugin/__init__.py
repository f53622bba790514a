"""Example third-party rsbench models: one registered by entry point, one used ad hoc.

``Cooccurrence`` is declared in this package's ``pyproject.toml`` under the
``rsbench.models`` entry-point group; ``JitteredPopularity`` (in
:mod:`rsbench_example_plugin.adhoc`) is not declared anywhere and is used as
``--models rsbench_example_plugin.adhoc:JitteredPopularity``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from models.base import Recommender, check_positive

__all__ = ["Cooccurrence"]


class Cooccurrence(Recommender):
    """Items scored by how often they co-occur with the user's items, damped by popularity.

    ``score(u, j) = sum_{i in I(u), i != j} c(i, j) / count(j) ** damping`` with
    ``c(i, j)`` the number of users who liked both. Deterministic.

    Parameters
    ----------
    damping : float
        Popularity exponent of the denominator (0: raw co-occurrence counts).
    """

    deterministic: ClassVar[bool] = True
    #: Presets rsbench registers with the entry point; a bare name means "fast".
    presets: ClassVar[dict] = {"fast": {"damping": 0.5}, "raw": {"damping": 0.0}}
    default_preset: ClassVar[str] = "fast"

    def __init__(self, *, damping: float = 0.5) -> None:
        self.damping = damping

    def validate_params(self) -> None:
        """``damping`` must be a number >= 0."""
        super().validate_params()
        check_positive("damping", self.damping, allow_zero=True)

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Count co-occurrences in ``train``; returns ``self``."""
        self._begin_fit(train, rng, epochs)
        self._num_users, self._num_items = train.shape
        self._liked = train.to_bool_csr().astype(np.float32)
        counts = np.asarray(self._liked.sum(axis=0)).ravel()
        cooc = (self._liked.T @ self._liked).toarray()
        np.fill_diagonal(cooc, 0.0)
        self._weights = (cooc / np.maximum(counts, 1.0) ** float(self.damping)).astype(np.float32)
        self._fitted = True
        if on_epoch is not None:
            on_epoch(1)
        return self

    def score(self, user_ids):
        """Float32 scores ``(len(user_ids), num_items)``."""
        user_ids = self._check_user_ids(user_ids)
        return self._finish_scores(self._liked[user_ids] @ self._weights)
