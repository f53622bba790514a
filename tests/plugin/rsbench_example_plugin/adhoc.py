"""A model used by ``module:Class`` name only (not declared as an entry point)."""

from __future__ import annotations

import numpy as np

from models.base import Recommender, check_positive


class JitteredPopularity(Recommender):
    """Popularity with seeded noise of size ``jitter`` breaking its ties.

    Parameters
    ----------
    jitter : float
        Scale of the uniform noise added to the train counts (> 0; below 1
        it only reorders items of equal popularity).
    """

    def __init__(self, *, jitter: float = 0.5) -> None:
        self.jitter = jitter

    def validate_params(self) -> None:
        """``jitter`` must be a number > 0."""
        super().validate_params()
        check_positive("jitter", self.jitter)

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Count train positives per item and draw the noise from ``rng``; returns ``self``."""
        self._begin_fit(train, rng, epochs)
        self._num_users, self._num_items = train.shape
        counts = np.bincount(train.item_ids, minlength=train.num_items).astype(np.float64)
        self._item_scores = counts + float(self.jitter) * rng.random(train.num_items)
        self._fitted = True
        if on_epoch is not None:
            on_epoch(1)
        return self

    def score(self, user_ids):
        """The same float32 item scores for every user."""
        user_ids = self._check_user_ids(user_ids)
        return self._finish_scores(np.tile(self._item_scores, (len(user_ids), 1)))
