"""The pre-issue-18 negative sampler, frozen for side-by-side benchmarks (never imported by bench).

Sharing one sampler means that two models differ only in what they are, not
in the data they are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.interactions import Interactions

__all__ = ["STRATEGIES", "NegativeSampler", "PairScorer", "Triplets"]

STRATEGIES: dict[str, str] = {
    "uniform": "any catalogue item, uniformly (the notebook; may hit a positive)",
    "uniform-unseen": "uniform over items that are not the user's train positives (exact)",
    "popularity": "item drawn with probability proportional to count ** alpha",
    "hard": "WARP-style: first of up to N uniform candidates that violates the margin",
}

#: ``score_pairs(user_ids, item_ids) -> similarities`` (float array, same length).
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Above this many cells the seen-pair bitmap would cost more than sorted-key lookups.
_BITMAP_MAX_CELLS = 64_000_000


@dataclass(frozen=True)
class Triplets:
    """One epoch of training triplets (int32 arrays of equal length, shuffled)."""

    user_ids: np.ndarray
    pos_item_ids: np.ndarray
    neg_item_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def batches(self, batch_size: int):
        """Yield ``(user_ids, pos_item_ids, neg_item_ids)`` slices of ``batch_size`` rows."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield (
                self.user_ids[start:end],
                self.pos_item_ids[start:end],
                self.neg_item_ids[start:end],
            )


class NegativeSampler:
    """Draws (user, positive, negative) triplets over one training set.

    One epoch contains every training positive exactly once, in a fresh random
    order, each with a freshly drawn negative item.

    Parameters
    ----------
    train : Interactions
        The positive training interactions.
    strategy : {"uniform", "uniform-unseen", "popularity", "hard"}
        See :data:`STRATEGIES`.
    alpha : float
        Popularity exponent for ``popularity`` (0 = uniform, 1 = proportional to
        count). Items with no positive get a count of 1 so they can be drawn.
    candidates : int
        Candidates per triplet for ``hard``.
    margin : float
        Margin used by ``hard`` to decide that a candidate violates.

    Notes
    -----
    ``uniform-unseen`` is exact: a negative is never one of that user's train
    positives. Rejected draws are redrawn, vectorised, until none remain; a
    user who is positive on every item raises ``ValueError``.
    """

    def __init__(
        self,
        train: Interactions,
        *,
        strategy: str = "uniform",
        alpha: float = 0.75,
        candidates: int = 10,
        margin: float = 1.0,
    ) -> None:
        if not isinstance(train, Interactions):
            raise TypeError(f"train must be Interactions, got {type(train).__name__}")
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown sampling strategy {strategy!r}; known: {', '.join(STRATEGIES)}"
            )
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if isinstance(candidates, bool) or int(candidates) != candidates or candidates < 1:
            raise ValueError(f"candidates must be an integer >= 1, got {candidates!r}")
        if len(train) == 0:
            raise ValueError("cannot sample triplets from an empty training set")
        self.train = train
        self.strategy = strategy
        self.alpha = float(alpha)
        self.candidates = int(candidates)
        self.margin = float(margin)
        self.num_items = train.num_items
        self._users = train.user_ids
        self._items = train.item_ids
        self._seen = None
        self._cdf = None
        if strategy in ("uniform-unseen", "hard"):
            self._prepare_seen()
        if strategy == "popularity":
            counts = np.maximum(train.item_counts(), 1).astype(np.float64)
            weights = counts**self.alpha
            self._cdf = np.cumsum(weights / weights.sum())

    # -- set-up -----------------------------------------------------------
    def _prepare_seen(self) -> None:
        num_users, num_items = self.train.shape
        full = np.flatnonzero(self.train.user_counts() >= num_items)
        if full.size:
            raise ValueError(
                f"user {int(full[0])} is positive on all {num_items} items: no negative exists"
            )
        if num_users * num_items <= _BITMAP_MAX_CELLS:
            seen = np.zeros(num_users * num_items, dtype=bool)
            seen[self._users.astype(np.int64) * num_items + self._items] = True
            self._seen = ("bitmap", seen)
        else:
            keys = np.unique(self._users.astype(np.int64) * num_items + self._items)
            self._seen = ("keys", keys)

    def is_seen(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: is ``(user_ids[i], item_ids[i])`` a training positive?"""
        if self._seen is None:
            self._prepare_seen()
        keys = np.asarray(user_ids, dtype=np.int64) * self.num_items + item_ids
        kind, table = self._seen
        if kind == "bitmap":
            return table[keys]
        pos = np.searchsorted(table, keys)
        pos = np.minimum(pos, table.shape[0] - 1)
        return table[pos] == keys

    # -- sampling ---------------------------------------------------------
    def _uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.num_items, size=n, dtype=np.int32)

    def _unseen(self, user_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        neg = self._uniform(user_ids.shape[0], rng)
        todo = np.flatnonzero(self.is_seen(user_ids, neg))
        while todo.size:
            redraw = self._uniform(todo.size, rng)
            neg[todo] = redraw
            todo = todo[self.is_seen(user_ids[todo], redraw)]
        return neg

    def _popularity(self, n: int, rng: np.random.Generator) -> np.ndarray:
        idx = np.searchsorted(self._cdf, rng.random(n) * self._cdf[-1], side="right")
        return np.minimum(idx, self.num_items - 1).astype(np.int32)

    def _hard(
        self,
        user_ids: np.ndarray,
        pos_item_ids: np.ndarray,
        rng: np.random.Generator,
        score_pairs: PairScorer,
    ) -> np.ndarray:
        n, c = user_ids.shape[0], self.candidates
        cand = self._uniform(n * c, rng).reshape(n, c)
        rep_users = np.repeat(user_ids, c)
        seen = self.is_seen(rep_users, cand.ravel()).reshape(n, c)
        cand_scores = np.asarray(score_pairs(rep_users, cand.ravel()), dtype=np.float64)
        if cand_scores.shape != (n * c,):
            raise ValueError(f"score_pairs returned shape {cand_scores.shape}, expected ({n * c},)")
        cand_scores = cand_scores.reshape(n, c)
        pos_scores = np.asarray(score_pairs(user_ids, pos_item_ids), dtype=np.float64)
        violates = (cand_scores > pos_scores[:, None] - self.margin) & ~seen
        # First violator if any; otherwise the highest-scoring unseen candidate.
        fallback = np.where(seen, -np.inf, cand_scores).argmax(axis=1)
        first = np.where(violates.any(axis=1), violates.argmax(axis=1), fallback)
        neg = cand[np.arange(n), first]
        # Rows where every candidate was a positive: replace by an exact unseen draw.
        all_seen = seen.all(axis=1)
        if all_seen.any():
            neg[all_seen] = self._unseen(user_ids[all_seen], rng)
        return neg

    def sample(
        self, rng: np.random.Generator, *, score_pairs: PairScorer | None = None
    ) -> Triplets:
        """Draw one epoch of triplets.

        Parameters
        ----------
        rng : numpy.random.Generator
            The only source of randomness (order and negatives).
        score_pairs : callable, optional
            Required by ``hard``: maps ``(user_ids, item_ids)`` to the current
            model's similarities. Ignored by the other strategies.

        Returns
        -------
        Triplets
            ``len(train)`` triplets in a random order.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        order = rng.permutation(len(self.train))
        users = self._users[order]
        pos = self._items[order]
        if self.strategy == "uniform":
            neg = self._uniform(users.shape[0], rng)
        elif self.strategy == "uniform-unseen":
            neg = self._unseen(users, rng)
        elif self.strategy == "popularity":
            neg = self._popularity(users.shape[0], rng)
        else:
            if score_pairs is None:
                raise ValueError("the 'hard' strategy needs a score_pairs callback")
            neg = self._hard(users, pos, rng, score_pairs)
        return Triplets(users, pos, neg.astype(np.int32, copy=False))

    def __repr__(self) -> str:
        return (
            f"NegativeSampler(strategy={self.strategy!r}, n={len(self.train)}, "
            f"num_items={self.num_items})"
        )
