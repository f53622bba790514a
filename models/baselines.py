"""Honest baselines: random, popularity and EASE (numpy only)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg

from bench.datasets.dataset import NotApplicableError
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

    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False

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
    cold-start evaluation reports, so it counts as scoring cold users and items,
    and the report's reference baseline (``reference``): every other model is
    compared with it.
    """

    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    reference: ClassVar[bool] = True
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
    O(num_items^2) and time O(num_items^3), by design, whatever the number of
    positives: fine for ML-100K/1M; ``fit`` raises
    :class:`bench.datasets.dataset.NotApplicableError` (a ``ValueError``) for catalogues
    above ``max_items``, which the runner records as "not-applicable".

    ``l2`` must also keep ``X^T X + lambda I`` numerically invertible: ``fit``
    refuses an ``l2`` below :meth:`min_l2` of the training data with a
    ``ValueError`` before LAPACK sees the matrix (a tiny ``l2`` such as
    ``1e-300`` on items nobody rated made LAPACK's inversion crash the
    process). The bound: ``X^T X`` is symmetric positive semi-definite with
    non-negative entries, so its eigenvalues lie in ``[0, b]`` with ``b`` its
    largest row sum (Gershgorin), and ``cond(X^T X + lambda I) <=
    (b + lambda) / lambda``. Requiring that to be at most
    :attr:`MAX_CONDITION` (``1e10``: float64 inversion then keeps a relative
    error of about ``1e10 * 2.2e-16 = 2e-6``, within the float32 the weights
    are stored in) gives ``lambda >= b / (MAX_CONDITION - 1)``. A tuner
    should draw ``l2`` from ``[EASE.min_l2(train), ...]``.

    Parameters
    ----------
    l2 : float
        The ridge regularisation lambda (Steck uses a few hundred on ML-20M);
        at least :meth:`min_l2` of the training data.
    max_items : int
        Largest catalogue accepted (a 20,000-item Gram matrix needs 3.2 GB).
    """

    #: Largest admissible condition number of ``X^T X + l2 I`` (see the class docstring).
    MAX_CONDITION: float = 1e10
    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    fit_scaling: ClassVar[str] = (
        "by design: inverting the num_items x num_items Gram matrix costs O(num_items^3) "
        "time and O(num_items^2) memory, whatever the number of positives"
    )

    def __init__(self, *, l2: float = 500.0, max_items: int = 20_000, epochs: int = 1) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.epochs = epochs

    def validate_params(self) -> None:
        """``l2`` > 0 and ``max_items`` a positive integer."""
        super().validate_params()
        check_positive("l2", self.l2)
        check_positive("max_items", self.max_items, integer=True)

    @classmethod
    def min_l2(cls, train: Interactions) -> float:
        """Smallest ``l2`` that keeps the Gram matrix of ``train`` numerically invertible.

        Parameters
        ----------
        train : Interactions
            The training positives (binarised, as :meth:`fit` uses them).

        Returns
        -------
        float
            ``b / (MAX_CONDITION - 1)`` with ``b`` the largest row sum of
            ``X^T X`` (an upper bound on its largest eigenvalue); ``0.0`` when
            ``train`` is empty (then any ``l2 > 0`` is fine). With
            ``l2 >= min_l2(train)``, ``cond(X^T X + l2 I) <= MAX_CONDITION``.
        """
        x = train.to_bool_csr().astype(np.float64)
        # Row sums of X^T X without forming it: X^T (X 1).
        row_sums = x.T @ (x @ np.ones(x.shape[1]))
        largest = float(row_sums.max()) if row_sums.size else 0.0
        return largest / (cls.MAX_CONDITION - 1.0)

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Solve the closed form once (``epochs`` only repeats the callback)."""
        epochs = self._start_fit(train, rng, epochs)
        if train.num_items > self.max_items:
            raise NotApplicableError(
                f"EASE needs a num_items x num_items matrix; num_items={train.num_items} "
                f"exceeds max_items={self.max_items}"
            )
        smallest = self.min_l2(train)
        if not self.l2 >= smallest:
            raise ValueError(
                f"EASE l2={self.l2!r} makes the Gram matrix X^T X + l2 I numerically "
                f"singular on this data (condition number bound above "
                f"{self.MAX_CONDITION:.0e}); use l2 >= {smallest:.3g} (EASE.min_l2(train))"
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
