"""The common negative sampler: every triplet-trained model sees triplets from here.

Sharing one sampler means that two models differ only in what they are, not
in the data they are shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.interactions import Interactions

__all__ = ["STRATEGIES", "NegativeSampler", "PairScorer", "Triplets"]

_log = logging.getLogger(__name__)

STRATEGIES: dict[str, str] = {
    "uniform": "any catalogue item, uniformly (the notebook; may hit a positive)",
    "uniform-unseen": "uniform over items that are not the user's train positives (exact)",
    "popularity": "item drawn with probability proportional to count ** alpha",
    "hard": "WARP-style: first of up to N uniform candidates that violates the margin",
}

#: ``score_pairs(user_ids, item_ids) -> similarities`` (float array, same length).
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]

# The seen-pair index: one byte per user x item cell up to this many cells (64 MiB, the
# fastest lookup), one bit per cell up to _BITMAP_MAX_CELLS (1 GiB), and above that each
# user's sorted train items (4 bytes per distinct positive plus 8 per user).
_BYTEMAP_MAX_CELLS = 64 << 20
_BITMAP_MAX_CELLS = 8 << 30
# ``hard`` scores at most this many (user, item) pairs per ``score_pairs`` call, so the
# sampler's own temporaries stay near 40 bytes x this (20 MiB) whatever the epoch size;
# a scorer gathering two 64-d float32 rows per pair adds 512 bytes x this (256 MiB).
_HARD_CHUNK_PAIRS = 1 << 19
# ``uniform-unseen`` redraws rejected negatives at most this many rounds; the draws
# still pending are then made by rank among the user's unseen items (exact, no loop).
# Either way a draw is uniform over the user's unseen items, so the cap changes only
# which random numbers are used, and only for users positive on most of the catalogue:
# a draw is still pending after 32 rounds with probability fill ** 32 (1e-13 at a fill
# of 40%, the densest ML-100K and ML-1M users; 0.97 for a synthetic user positive on
# 3,703 of 3,706 items, which took 12,000 rounds of a Python loop before the cap).
_REJECTION_ROUNDS = 32
# Cells (users x items) of the unseen masks built at once by the rank draw (a few MiB).
_RANK_CHUNK_CELLS = 1 << 20


def _search_rows(
    indptr: np.ndarray, items: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray
) -> np.ndarray:
    """Is ``item_ids[i]`` in row ``user_ids[i]`` of a CSR with sorted rows? (vectorised)."""
    lo = indptr[user_ids]
    hi = indptr[user_ids + 1]
    width = hi - lo
    start = np.zeros_like(lo)
    end = width.copy()
    last = np.maximum(width - 1, 0)
    top = max(items.shape[0] - 1, 0)  # users without positives point past the end
    for _ in range(int(width.max(initial=0)).bit_length()):
        active = start < end
        mid = (start + end) >> 1
        go_right = (items[np.minimum(lo + np.minimum(mid, last), top)] < item_ids) & active
        start = np.where(go_right, mid + 1, start)
        end = np.where(active & ~go_right, mid, end)
    found = start < width
    found &= items[np.minimum(lo + np.minimum(start, last), top)] == item_ids
    return found


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
    positives, and it is uniform over the user's other items. Rejected draws
    are redrawn, vectorised, for up to ``_REJECTION_ROUNDS`` (32) rounds; the
    few still pending (users positive on most of the catalogue) are then drawn
    by rank among the user's unseen items, so an epoch's work stays bounded
    however full a user is. A user who is positive on every item raises
    ``ValueError``.

    Memory: ``uniform-unseen`` and ``hard`` build a seen-pair index once, in
    O(positives) time on sorted interactions, of at most
    ``max(1 GiB, 4 B x positives + 8 B x users) + 4 B x users`` (see
    :attr:`seen_index_bytes`: a byte per cell up to 64 MiB, a bit per cell up
    to 1 GiB, sorted item rows above; plus each user's count of unseen
    items). ``hard`` scores candidates in chunks of ``_HARD_CHUNK_PAIRS``
    (512 Ki) pairs, so its temporaries are about 20 MiB plus what the scorer
    needs for one chunk, whatever the epoch size. The rank draw builds unseen
    masks of ``_RANK_CHUNK_CELLS`` (1 Mi) cells at a time, about 16 MiB. The
    index and the chunking change no draw: the same seed gives the same
    triplets as before issue 18, except for draws still pending after 32
    rounds (a user's draw, with probability ``fill ** 33``: never seen on
    ML-100K or ML-1M, where the densest users' fill is 22% and 39%).
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
        keys = self._users.astype(np.int64) * num_items + self._items
        # Interactions are normally sorted by (user, item) without repeats: check in O(n)
        # and sort only when they are not (np.unique on sorted keys costs a full sort).
        if keys.size > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            keys = np.unique(keys)
        # Distinct items per user (repeated pairs do not make a user "full").
        per_user = np.bincount(keys // num_items, minlength=num_users)
        full = np.flatnonzero(per_user >= num_items)
        if full.size:
            raise ValueError(
                f"user {int(full[0])} is positive on all {num_items} items: no negative exists"
            )
        # Unseen items per user: the range of the rank draw (see :meth:`_unseen_by_rank`).
        self._unseen_per_user = (num_items - per_user).astype(np.int32)
        cells = num_users * num_items
        if cells <= min(_BYTEMAP_MAX_CELLS, _BITMAP_MAX_CELLS):
            seen = np.zeros(cells, dtype=bool)
            seen[keys] = True
            self._seen = ("bytemap", seen)
        elif cells <= _BITMAP_MAX_CELLS:
            bits = np.zeros(-(-cells // 8), dtype=np.uint8)
            byte = keys >> 3
            runs = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
            masks = np.left_shift(1, keys & 7).astype(np.uint8)
            bits[byte[runs]] = np.bitwise_or.reduceat(masks, runs)
            self._seen = ("bitmap", bits)
        else:
            rows = keys // num_items
            indptr = np.searchsorted(rows, np.arange(num_users + 1, dtype=np.int64))
            items = (keys - rows * num_items).astype(np.int32)
            self._seen = ("rows", (indptr, items))

    @property
    def seen_index_bytes(self) -> int:
        """Memory of the seen-pair index (0 when the strategy needs none).

        ``num_users * num_items`` bytes (one per cell) up to ``_BYTEMAP_MAX_CELLS``
        (64 Mi cells, 64 MiB); ``ceil(num_users * num_items / 8)`` bytes (a
        bitmap) up to ``_BITMAP_MAX_CELLS`` (8 Gi cells, 1 GiB); above that, 4
        bytes per distinct train positive plus 8 per user (each user's sorted
        items, binary-searched). Plus 4 bytes per user: the count of the
        user's unseen items. So the index never exceeds
        ``max(1 GiB, 4 * positives + 8 * users) + 4 * users`` bytes.
        """
        if self._seen is None:
            return 0
        kind, table = self._seen
        counts = int(self._unseen_per_user.nbytes)
        if kind in ("bytemap", "bitmap"):
            return int(table.nbytes) + counts
        return int(table[0].nbytes + table[1].nbytes) + counts

    def is_seen(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: is ``(user_ids[i], item_ids[i])`` a training positive?"""
        if self._seen is None:
            self._prepare_seen()
        kind, table = self._seen
        if kind == "bytemap":
            return table[np.asarray(user_ids, dtype=np.int64) * self.num_items + item_ids]
        if kind == "bitmap":
            keys = np.asarray(user_ids, dtype=np.int64) * self.num_items
            keys += item_ids
            byte = table[keys >> 3]
            return (np.right_shift(byte, (keys & 7).astype(np.uint8)) & 1).astype(bool)
        indptr, items = table
        return _search_rows(
            indptr, items, np.asarray(user_ids, dtype=np.int64), np.asarray(item_ids)
        )

    # -- sampling ---------------------------------------------------------
    def _uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.num_items, size=n, dtype=np.int32)

    def _unseen(self, user_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One negative per row, uniform over that user's unseen items (see the class notes)."""
        neg = self._uniform(user_ids.shape[0], rng)
        todo = np.flatnonzero(self.is_seen(user_ids, neg))
        for _ in range(_REJECTION_ROUNDS):
            if not todo.size:
                return neg
            redraw = self._uniform(todo.size, rng)
            neg[todo] = redraw
            todo = todo[self.is_seen(user_ids[todo], redraw)]
        if todo.size:
            neg[todo] = self._unseen_by_rank(user_ids[todo], rng)
        return neg

    def _unseen_by_rank(self, user_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform unseen items without rejection: the r-th unseen item, r uniform in range.

        Work is O(distinct users x items), in chunks of ``_RANK_CHUNK_CELLS``
        cells; meant for the few draws that rejection left pending.
        """
        num_items = self.num_items
        users, inverse = np.unique(user_ids, return_inverse=True)
        # One draw call for every pending row, whatever the chunking: r in [0, unseen).
        ranks = rng.integers(0, self._unseen_per_user[user_ids], dtype=np.int64)
        _log.debug(
            "uniform-unseen: %d draws of %d users pending after %d rejection rounds, drawn by rank",
            user_ids.shape[0], users.shape[0], _REJECTION_ROUNDS,
        )  # fmt: skip
        out = np.empty(user_ids.shape[0], dtype=np.int32)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(users.shape[0] + 1))
        per_chunk = max(1, _RANK_CHUNK_CELLS // num_items)
        all_items = np.arange(num_items)
        for lo in range(0, users.shape[0], per_chunk):
            hi = min(lo + per_chunk, users.shape[0])
            unseen = ~self.is_seen(np.repeat(users[lo:hi], num_items), np.tile(all_items, hi - lo))
            # Row j's unseen items counted up to each item, offset so the rows sort as one:
            # the r-th (0-based) unseen item of row j is the first cell reaching j (n + 1) + r + 1.
            counts = np.cumsum(unseen.reshape(hi - lo, num_items), axis=1, dtype=np.int64)
            counts += np.arange(hi - lo)[:, None] * (num_items + 1)
            rows = order[bounds[lo] : bounds[hi]]
            local = inverse[rows] - lo
            cell = np.searchsorted(counts.ravel(), local * (num_items + 1) + ranks[rows] + 1)
            out[rows] = cell - local * num_items
        return out

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
        neg = np.empty(n, dtype=np.int32)
        all_seen = np.zeros(n, dtype=bool)
        # Chunks of rows bound the temporaries; drawing the candidates chunk after chunk
        # consumes the generator exactly as one draw of n * c would (same stream).
        rows_per_chunk = max(1, _HARD_CHUNK_PAIRS // c)
        for lo in range(0, n, rows_per_chunk):
            hi = min(lo + rows_per_chunk, n)
            m = hi - lo
            cand = self._uniform(m * c, rng)
            rep_users = np.repeat(user_ids[lo:hi], c)
            seen = self.is_seen(rep_users, cand).reshape(m, c)
            cand_scores = np.asarray(score_pairs(rep_users, cand), dtype=np.float64)
            if cand_scores.shape != (m * c,):
                raise ValueError(
                    f"score_pairs returned shape {cand_scores.shape}, expected ({m * c},)"
                )
            del rep_users
            cand_scores = cand_scores.reshape(m, c)
            pos_scores = np.asarray(
                score_pairs(user_ids[lo:hi], pos_item_ids[lo:hi]), dtype=np.float64
            )
            cand = cand.reshape(m, c)
            violates = (cand_scores > pos_scores[:, None] - self.margin) & ~seen
            # First violator if any; otherwise the highest-scoring unseen candidate.
            fallback = np.where(seen, -np.inf, cand_scores).argmax(axis=1)
            first = np.where(violates.any(axis=1), violates.argmax(axis=1), fallback)
            neg[lo:hi] = cand[np.arange(m), first]
            all_seen[lo:hi] = seen.all(axis=1)
        # Rows where every candidate was a positive: replace by an exact unseen draw.
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
