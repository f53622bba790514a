"""Streaming evaluation of a model over all users in blocks, with bounded memory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metrics.ranking import (
    _bool_csr,
    _check_ks,
    _check_ties,
    _combine,
    _frame,
    _metric_values,
    _rank,
    evaluated_rows,
)
from metrics.registry import METRICS

__all__ = ["Evaluator", "Scorer", "summarize"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


class Scorer(Protocol):
    """Anything with ``score(user_ids) -> (len(user_ids), num_items)`` scores."""

    def score(self, user_ids: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        """Scores of every catalogue item for each of ``user_ids``."""
        ...


def _canonical_csr(matrix: Any, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """A private canonical boolean CSR copy (later changes to ``matrix`` do not leak in)."""
    return _bool_csr(matrix, name, shape).copy()


class Evaluator:
    """Evaluate a model on every evaluated user, one block of users at a time.

    Memory is bounded by ``block_size * num_items`` scores (plus a working
    copy), never ``num_users * num_items``. The metrics, their formulas and
    the tie policy are those of :func:`metrics.ranking.evaluate`; the result
    does not depend on ``block_size``.

    Parameters
    ----------
    test : scipy.sparse matrix of bool or 0/1, shape (num_users, num_items)
        Test positives of every user.
    exclude : scipy.sparse matrix of bool or 0/1, shape (num_users, num_items), optional
        Items removed from each user's candidates (e.g. the train positives);
        ``None`` keeps the whole catalogue.
    ks : sequence of int
        Cut-offs of the top-k metrics (integers >= 1, no repeats).
    ties : {"expected", "pessimistic"}
        Tie policy applied to every metric.
    block_size : int
        Users scored per call of ``model.score``.
    item_popularity : array of float, shape (num_items,), optional
        Share of users with each item among their train positives; enables
        the metrics that need it (``popularity@k``).

    Attributes
    ----------
    evaluated_users : numpy.ndarray of int64, shape (n_evaluated,)
        Users with at least one test positive that is not excluded, increasing.
    """

    def __init__(
        self,
        test: Any,
        exclude: Any = None,
        *,
        ks: Sequence[int] = (5, 10, 20),
        ties: str = "expected",
        block_size: int = 1024,
        item_popularity: Any = None,
    ) -> None:
        self.test = test
        self.exclude = exclude
        self.ks = ks
        self.ties = ties
        self.block_size = block_size
        self._ks = _check_ks(ks)
        _check_ties(ties)
        if (
            isinstance(block_size, bool)
            or not isinstance(block_size, (int, np.integer))
            or block_size < 1
        ):
            raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
        if not sp.issparse(test):
            raise TypeError(
                f"test must be a scipy.sparse matrix (CSR preferred), got {type(test).__name__}"
            )
        shape = (int(test.shape[0]), int(test.shape[1]))
        if exclude is not None and sp.issparse(exclude) and tuple(exclude.shape) != shape:
            raise ValueError(f"exclude has shape {exclude.shape} but test has shape {shape}")
        self._test = _canonical_csr(test, "test", shape)
        self._exclude = None if exclude is None else _canonical_csr(exclude, "exclude", shape)
        if item_popularity is not None:
            item_popularity = np.asarray(item_popularity, dtype=np.float64)
            if item_popularity.shape != (shape[1],) or not np.isfinite(item_popularity).all():
                raise ValueError(
                    f"item_popularity must be {shape[1]} finite values, got shape "
                    f"{item_popularity.shape}"
                )
        self._item_popularity = item_popularity
        evaluated = evaluated_rows(self._test, self._exclude)
        evaluated.flags.writeable = False
        self._evaluated = evaluated

    @property
    def num_users(self) -> int:
        """Number of rows of ``test``."""
        return self._test.shape[0]

    @property
    def num_items(self) -> int:
        """Size of the catalogue (columns of ``test``)."""
        return self._test.shape[1]

    @property
    def evaluated_users(self) -> np.ndarray:
        """Users (int64, increasing, read-only) with a test positive that is not excluded."""
        return self._evaluated

    @property
    def columns(self) -> list[str]:
        """Columns of the per-user table: ``user`` then :func:`metric_columns`."""
        return ["user", *METRICS.columns(self._ks, available=self._available)]

    @property
    def _available(self) -> tuple[str, ...]:
        return () if self._item_popularity is None else ("item_popularity",)

    def _select_users(self, user_ids: Any) -> np.ndarray:
        if user_ids is None:
            return self._evaluated
        user_ids = np.asarray(user_ids)
        if user_ids.ndim != 1 or (user_ids.size and not np.issubdtype(user_ids.dtype, np.integer)):
            raise ValueError(
                f"user_ids must be a 1-D integer array, got shape {user_ids.shape}, "
                f"dtype {user_ids.dtype}"
            )
        user_ids = user_ids.astype(np.int64, copy=False)
        if user_ids.size and (user_ids.min() < 0 or user_ids.max() >= self.num_users):
            raise ValueError(
                f"user_ids must be in 0..{self.num_users - 1}, got range "
                f"{user_ids.min()}..{user_ids.max()}"
            )
        if np.unique(user_ids).size != user_ids.size:
            raise ValueError("user_ids must not repeat a user")
        return user_ids[np.isin(user_ids, self._evaluated)]

    def evaluate(
        self,
        model: Scorer,
        user_ids: Any = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Score users block by block and compute every metric for each of them.

        Parameters
        ----------
        model : object with ``score(user_ids) -> array (len(user_ids), num_items)``
            Any scorer (a fitted :class:`models.base.Recommender`, for instance).
            It receives int64 arrays of at most ``block_size`` user ids.
        user_ids : array of int, shape (n,), optional
            Users to evaluate (no repeats, in this order); users that are not
            in :attr:`evaluated_users` are skipped. Default: all of them.
        progress : callable(n_done, n_total), optional
            Called after each block with the number of users done so far and
            the total (e.g. to drive a progress bar).

        Returns
        -------
        pandas.DataFrame
            One row per evaluated user: ``user`` (int64 global user id), then
            the float64 metric columns of :func:`metrics.ranking.metric_columns`.
            ``attrs`` records ``ties`` and ``ks``.

        Raises
        ------
        ValueError
            If the model returns scores of the wrong shape, or non-finite
            scores (the message names the users).
        """
        users = self._select_users(user_ids)
        n_total = int(users.size)
        parts: list[dict[str, np.ndarray]] = []
        partials: dict[str, list] = {}
        started = time.perf_counter()
        for lo in range(0, n_total, self.block_size):
            block = np.array(users[lo : lo + self.block_size])  # writable, owned by this call
            scores = np.asarray(model.score(block))
            expected = (block.size, self.num_items)
            if scores.shape != expected:
                raise ValueError(
                    f"{type(model).__name__}.score returned shape {scores.shape} for "
                    f"{block.size} users; expected {expected}"
                )
            test = self._test[block]
            exclude = None if self._exclude is None else self._exclude[block]
            ranked = _rank(scores, test, exclude, self.ties, user_ids=block)
            parts.append(
                _metric_values(
                    ranked,
                    self._ks,
                    scores=scores,
                    test=test,
                    exclude=exclude,
                    ties=self.ties,
                    item_popularity=self._item_popularity,
                    partials=partials,
                )
            )
            del scores, ranked
            done = lo + block.size
            logger.debug("evaluated %d/%d users", done, n_total)
            if progress is not None:
                progress(done, n_total)
        columns = {
            name: (np.concatenate([part[name] for part in parts]) if parts else np.zeros(0))
            for name in self.columns[1:]
        }
        logger.info(
            "evaluated %d users in %.2f s (ties=%s, block_size=%d)",
            n_total,
            time.perf_counter() - started,
            self.ties,
            self.block_size,
        )
        catalogue = _combine(partials, self.num_items)
        return _frame(users.copy(), columns, self._ks, self.ties, catalogue)

    def __repr__(self) -> str:
        return (
            f"Evaluator(num_users={self.num_users}, num_items={self.num_items}, "
            f"evaluated={self._evaluated.size}, ks={self._ks}, ties={self.ties!r}, "
            f"block_size={self.block_size})"
        )


def summarize(per_user: pd.DataFrame) -> pd.Series:
    """Mean of each metric column over users (the ``user`` column is left out).

    Parameters
    ----------
    per_user : pandas.DataFrame
        A per-user table from :meth:`Evaluator.evaluate` or
        :func:`metrics.ranking.evaluate`.

    Returns
    -------
    pandas.Series of float64
        Indexed by metric name, in column order. NaN values (AUC of a user
        whose candidates are all positive) are skipped; an empty table gives
        NaN. ``attrs`` are copied from the table (tie policy, ks). Catalogue
        metrics (``coverage@k``, one value per evaluation, in
        ``per_user.attrs["catalogue"]``) follow the per-user means.
    """
    if not isinstance(per_user, pd.DataFrame):
        raise TypeError(f"per_user must be a pandas DataFrame, got {type(per_user).__name__}")
    metrics = per_user.drop(columns=["user"], errors="ignore")
    summary = metrics.mean(axis=0, skipna=True).astype(np.float64)
    catalogue = per_user.attrs.get("catalogue") or {}
    if catalogue:
        summary = pd.concat([summary, pd.Series(catalogue, dtype=np.float64)])
    summary.attrs = dict(per_user.attrs)
    return summary
