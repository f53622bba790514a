"""ItemKNN: item-item cosine neighbours with shrinkage, the classic neighbourhood baseline.

Reproducibility studies (Ferrari Dacrema et al., RecSys 2019) found a tuned
ItemKNN hard to beat. This file is also the README's worked example of an
adapter: keyword-only hyperparameters stored unchanged, ``fit`` on
:class:`~bench.interactions.Interactions`, ``score`` giving a float32 block.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from bench.interactions import Interactions
from models.base import EpochCallback, Recommender, check_finite, check_positive

__all__ = ["ItemKNN"]

# Target items whose similarity column is built densely at once (bounds memory
# to num_items x _COLUMN_BLOCK floats).
_COLUMN_BLOCK = 512


class ItemKNN(Recommender):
    """Item-based nearest neighbours on binary implicit feedback.

    With ``X`` the binary user x item train matrix, the similarity of items
    ``i`` and ``j`` is the shrunk cosine::

        sim(i, j) = |U(i) & U(j)| / (sqrt(|U(i)|) sqrt(|U(j)|) + shrinkage)

    (``U(i)``: the users with a train positive on ``i``), with ``sim(i, i) = 0``.
    For each target item ``j`` only its ``neighbours`` most similar items with
    a positive similarity are kept (ties broken by the lower item index),
    giving a sparse ``W``; a user's scores are ``X[u] @ W``: the summed
    similarity of each item to the items the user liked.

    Parameters
    ----------
    neighbours : int
        ``k``, the neighbours kept per target item (>= 1).
    shrinkage : float
        Added to the cosine's denominator (>= 0); damps similarities that rest
        on few co-occurrences.

    Notes
    -----
    Fitting is deterministic (no random numbers). Cost: the sparse product
    ``X^T X`` plus a stable sort of each dense block of ``_COLUMN_BLOCK``
    similarity columns; memory ``O(num_items * _COLUMN_BLOCK)`` beside ``W``.
    """

    deterministic: ClassVar[bool] = True
    uses_sampler: ClassVar[bool] = False
    notes: ClassVar[str] = "item-item cosine with shrinkage, top-k neighbours per item"

    def __init__(self, *, neighbours: int = 100, shrinkage: float = 10.0) -> None:
        self.neighbours = neighbours
        self.shrinkage = shrinkage

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming an impossible hyperparameter."""
        super().validate_params()
        check_positive("neighbours", self.neighbours, integer=True)
        check_positive("shrinkage", self.shrinkage, allow_zero=True)

    def fit(
        self,
        train: Interactions,
        *,
        sampler=None,
        epochs: int | None = None,
        rng: np.random.Generator,
        on_epoch: EpochCallback | None = None,
        features=None,
    ) -> ItemKNN:
        """Build the neighbour matrix ``W`` from ``train`` and return ``self``.

        Parameters
        ----------
        train : Interactions
            Train positives (weights are ignored: feedback is binary).
        sampler, features : ignored
            The model draws no negatives and uses no side features.
        epochs : int, optional
            Must be 1 or None (one pass, no iterations).
        rng : numpy.random.Generator
            Checked but unused: the fit is deterministic.
        on_epoch : callable, optional
            Called once with 1 after the fit.

        Returns
        -------
        ItemKNN
            ``self``.
        """
        self._begin_fit(train, rng, epochs)
        self._fitted = False
        self._num_users, self._num_items = train.shape
        self._user_items = train.to_bool_csr().astype(np.float32)
        self._weights = item_neighbours(
            self._user_items, int(self.neighbours), float(self.shrinkage)
        )
        self._fitted = True
        if on_epoch is not None:
            on_epoch(1)
        return self

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Summed neighbour similarities ``X[u] @ W`` of every item, float32 ``(n, num_items)``."""
        user_ids = self._check_user_ids(user_ids)
        scores = (self._user_items[user_ids] @ self._weights).toarray()
        return self._finish_scores(scores)


def item_neighbours(user_items: sp.csr_matrix, neighbours: int, shrinkage: float) -> sp.csc_matrix:
    """The sparse top-``neighbours`` shrunk-cosine matrix ``W`` (items x items, float32).

    Column ``j`` holds the similarities of target item ``j``'s neighbours (see
    :class:`ItemKNN` for the formula and the tie rule); the diagonal is zero.

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (num_users, num_items)
        Binary interactions.
    neighbours : int
        Neighbours kept per column.
    shrinkage : float
        Added to the cosine's denominator.

    Returns
    -------
    scipy.sparse.csc_matrix of float32, shape (num_items, num_items)
    """
    binary = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    binary.data[:] = 1.0
    num_items = binary.shape[1]
    cooccur = (binary.T @ binary).tocsc()
    norms = np.sqrt(np.asarray(binary.sum(axis=0), dtype=np.float64).ravel())
    keep = min(neighbours, max(num_items - 1, 1))
    rows, cols, vals = [], [], []
    for start in range(0, num_items, _COLUMN_BLOCK):
        stop = min(start + _COLUMN_BLOCK, num_items)
        block = cooccur[:, start:stop].toarray()
        block /= norms[:, None] * norms[None, start:stop] + shrinkage + 1e-300
        block[np.arange(start, stop), np.arange(stop - start)] = 0.0
        # Stable sort of -sim: equal similarities keep the lower item index first.
        order = np.argsort(-block, axis=0, kind="stable")[:keep]
        top = np.take_along_axis(block, order, axis=0)
        positive = top > 0
        rows.append(order[positive])
        cols.append(np.broadcast_to(np.arange(start, stop), order.shape)[positive])
        vals.append(top[positive])
    weights = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(num_items, num_items),
        dtype=np.float32,
    )
    check_finite(weights.data, "ItemKNN similarities")
    return weights
