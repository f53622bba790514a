"""Honest baselines: random, popularity and EASE (numpy only)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg

from bench.interactions import Interactions
from models.base import Recommender, check_finite, check_positive

__all__ = ["EASE", "Popularity", "RandomModel"]


class _FitState(Recommender):
    """Shared bookkeeping for models fitted in one shot."""

    def _start_fit(self, train: Interactions, rng: np.random.Generator, epochs: int | None) -> int:
        epochs = self._begin_fit(train, rng, epochs)
        self._num_users, self._num_items = train.shape
        return epochs


class RandomModel(_FitState):
    """Scores drawn i.i.d. uniform in [0, 1) once at fit time (fixed per user).

    A per-user random permutation is what "random" should mean for ranking; the
    scores are drawn from the fit ``rng`` for every (user, item) pair in blocks
    at score time from a per-user seed, so memory stays bounded and the same
    seed gives the same scores. Expected AUC 0.5.
    """

    def __init__(self, *, epochs: int = 1) -> None:
        self.epochs = epochs

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Draw the per-user seeds; ``epochs`` only repeats the (no-op) callback."""
        epochs = self._start_fit(train, rng, epochs)
        self._base_seed = int(rng.integers(0, 2**63 - 1))
        self._fitted = True
        for epoch in range(1, epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch)
        return self

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Uniform scores, the same for a user whatever block it is scored in."""
        user_ids = self._check_user_ids(user_ids)
        out = np.empty((user_ids.shape[0], self._num_items), dtype=np.float32)
        for row, user in enumerate(user_ids):
            gen = np.random.default_rng([self._base_seed, int(user)])
            out[row] = gen.random(self._num_items, dtype=np.float32)
        return out


class Popularity(_FitState):
    """Every user gets the same ranking: items by number of train positives.

    Ties (items with equal counts, e.g. never-seen items) are left as ties, so
    the metrics' tie policy decides how they rank. It is the reference every
    cold-start evaluation reports, so it counts as scoring cold users and items.
    """

    can_score_cold_users: ClassVar[bool] = True
    can_score_cold_items: ClassVar[bool] = True

    def __init__(self, *, epochs: int = 1) -> None:
        self.epochs = epochs

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Count positives per item."""
        epochs = self._start_fit(train, rng, epochs)
        self._counts = train.item_counts().astype(np.float32)
        self._fitted = True
        for epoch in range(1, epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch)
        return self

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """The item counts, broadcast to every user of the block."""
        user_ids = self._check_user_ids(user_ids)
        return np.ascontiguousarray(
            np.broadcast_to(self._counts, (user_ids.shape[0], self._num_items))
        )


class EASE(_FitState):
    """EASE^R (Steck, WWW 2019): a closed-form item-item model with zero diagonal.

    ``B = I - P / diag(P)`` with ``P = (X^T X + lambda I)^{-1}`` and ``X`` the
    binary user-item train matrix; ``score(u) = X_u B``. Memory is
    O(num_items^2): fine for ML-100K/1M, refuse catalogues above ``max_items``.

    Parameters
    ----------
    l2 : float
        The ridge regularisation lambda (Steck uses a few hundred on ML-20M).
    max_items : int
        Largest catalogue accepted (a 20,000-item Gram matrix needs 3.2 GB).
    """

    def __init__(self, *, l2: float = 500.0, max_items: int = 20_000, epochs: int = 1) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.epochs = epochs

    def validate_params(self) -> None:
        """``l2`` > 0 and ``max_items`` a positive integer."""
        super().validate_params()
        check_positive("l2", self.l2)
        check_positive("max_items", self.max_items, integer=True)

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Solve the closed form once (``epochs`` only repeats the callback)."""
        epochs = self._start_fit(train, rng, epochs)
        if train.num_items > self.max_items:
            raise ValueError(
                f"EASE needs a num_items x num_items matrix; num_items={train.num_items} "
                f"exceeds max_items={self.max_items}"
            )
        x = train.to_bool_csr().astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        precision = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        weights = precision / (-np.diag(precision))
        weights[np.diag_indices_from(weights)] = 0.0
        self._weights = check_finite(weights.astype(np.float32), "EASE weights")
        self._x = x.astype(np.float32).tocsr()
        self._fitted = True
        for epoch in range(1, epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch)
        return self

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """``X[user_ids] @ B`` as one sparse-dense product."""
        user_ids = self._check_user_ids(user_ids)
        return self._finish_scores(self._x[user_ids] @ self._weights)
