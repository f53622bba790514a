"""The `Dataset` bundle (train/test interactions plus side information) and its errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.interactions import Interactions

__all__ = ["DataError", "Dataset", "NotApplicableError", "SideFeatures"]


class DataError(ValueError):
    """A data file or cache entry is malformed; the message names file, line and problem."""


class NotApplicableError(ValueError):
    """A model cannot be evaluated on this split (e.g. it cannot score cold-start users)."""


@dataclass(frozen=True, eq=False)
class SideFeatures:
    """A sparse side-feature matrix with named columns.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix, float32, shape (n_rows, n_features)
        One row per user (or item) index, in the same order as the interactions.
    names : tuple of str, length n_features
        Column names, e.g. ``"genre=Comedy"``, ``"decade=1990"``.
    """

    matrix: sp.csr_matrix
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not sp.issparse(self.matrix):
            raise TypeError(f"matrix must be a scipy sparse matrix, got {type(self.matrix)}")
        if self.matrix.shape[1] != len(self.names):
            raise ValueError(
                f"matrix has {self.matrix.shape[1]} columns but {len(self.names)} names"
            )
        object.__setattr__(self, "matrix", sp.csr_matrix(self.matrix, dtype=np.float32))
        object.__setattr__(self, "names", tuple(self.names))

    @property
    def num_features(self) -> int:
        """Number of feature columns."""
        return int(self.matrix.shape[1])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of one dataset, ready for the runner.

    Attributes
    ----------
    name, split : str
        E.g. ``"ml-100k"`` and ``"ua"``.
    min_rating : float or None
        Ratings at or above it are positives; ``None`` keeps every rating.
    train, test : Interactions
        Positive interactions (weights hold the rating when there is one).
    train_all : Interactions
        Every train interaction whatever its rating (for the "exclude everything
        seen in train" candidate policy).
    user_features, item_features : SideFeatures or None
        One-hot side information (see :mod:`bench.datasets.features`).
    user_table, item_table : pandas.DataFrame or None
        The normalized raw attributes, one row per index, in index order.
    raw_user_ids, raw_item_ids : numpy.ndarray
        ``raw_user_ids[u]`` is the dataset's own id of user index ``u``.
    source : str
        Where the data came from (path, cache, URL, package).
    sha256 : str
        SHA-256 of the canonical ratings content (same for every source).
    test_all : Interactions or None
        Every test interaction whatever its rating.
    stage : {"test", "validation"}
        ``"validation"``: ``train`` is train' and ``test`` the validation rows
        carved from train (the real test rows are not in it).
    facts : mapping
        What ``summary()`` adds: the split rule, the validation rule, cut-off
        time, k-core counts, file hashes...
    """

    name: str
    split: str
    min_rating: float | None
    train: Interactions
    test: Interactions
    train_all: Interactions
    user_features: SideFeatures | None = None
    item_features: SideFeatures | None = None
    user_table: pd.DataFrame | None = None
    item_table: pd.DataFrame | None = None
    raw_user_ids: np.ndarray | None = None
    raw_item_ids: np.ndarray | None = None
    source: str = ""
    sha256: str = ""
    test_all: Interactions | None = None
    stage: str = "test"
    facts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("test", "train_all"):
            other = getattr(self, name)
            if other.shape != self.train.shape:
                raise ValueError(f"{name} has shape {other.shape} but train has {self.train.shape}")

    @property
    def num_users(self) -> int:
        """Number of user indices."""
        return self.train.num_users

    @property
    def num_items(self) -> int:
        """Number of items in the full catalogue."""
        return self.train.num_items

    def cold_users(self) -> np.ndarray:
        """Indices (int32) of users with a test positive but no train interaction at all."""
        test_users = self.test.user_counts() > 0
        return np.flatnonzero(test_users & (self.train_all.user_counts() == 0)).astype(np.int32)

    def cold_items(self) -> np.ndarray:
        """Indices (int32) of items with a test positive but no train interaction at all."""
        test_items = self.test.item_counts() > 0
        return np.flatnonzero(test_items & (self.train_all.item_counts() == 0)).astype(np.int32)

    def evaluation_test(
        self, cold_users_ok: bool, cold_items_ok: bool
    ) -> tuple[Interactions, dict[str, int]]:
        """The test positives a model is scored on, given what it can score.

        On splits that declare cold-start handling (``facts["cold_start"]``:
        the global time cut-off and the cold-start splits), the test positives
        of cold users (items) are set aside for a model that cannot score them,
        and counted; elsewhere every test positive is kept.

        Parameters
        ----------
        cold_users_ok, cold_items_ok : bool
            From the model's ``scores_cold()``.

        Returns
        -------
        test : Interactions
        counts : dict
            ``cold_users``, ``cold_items`` (in this split), and the
            ``cold_users_skipped`` / ``cold_item_positives_skipped`` for this model.

        Raises
        ------
        NotApplicableError
            Nothing is left to score (e.g. a cold-users split for a model
            that cannot score cold users).
        """
        cold_users, cold_items = self.cold_users(), self.cold_items()
        counts = {
            "cold_users": int(cold_users.shape[0]),
            "cold_items": int(cold_items.shape[0]),
            "cold_users_skipped": 0,
            "cold_item_positives_skipped": 0,
        }
        test = self.test
        if not self.facts.get("cold_start"):
            return test, counts
        if not cold_users_ok and cold_users.size:
            keep = ~np.isin(test.user_ids, cold_users)
            counts["cold_users_skipped"] = int(cold_users.shape[0])
            test = test.select(keep)
        if not cold_items_ok and cold_items.size:
            keep = ~np.isin(test.item_ids, cold_items)
            counts["cold_item_positives_skipped"] = int((~keep).sum())
            test = test.select(keep)
        if len(test) == 0:
            missing = [
                what
                for what, ok, n in (
                    ("users", cold_users_ok, cold_users.size),
                    ("items", cold_items_ok, cold_items.size),
                )
                if not ok and n
            ]
            raise NotApplicableError(
                f"not applicable: every test positive of split {self.split!r} is on cold "
                f"{' and '.join(missing)}, which this model cannot score"
            )
        return test, counts

    def eval_users(self) -> np.ndarray:
        """Indices (int32) of users with at least one test positive."""
        return np.flatnonzero(self.test.user_counts() > 0).astype(np.int32)

    def exclusion(self, policy: str = "train-positives") -> sp.csr_matrix:
        """Boolean CSR (num_users, num_items) of items removed from each user's candidates.

        Parameters
        ----------
        policy : {"train-positives", "train-all", "none"}
            ``train-positives`` is the notebook's rule (items rated below the
            threshold in train stay candidates); ``train-all`` removes every item
            seen in train; ``none`` keeps the full catalogue.
        """
        if policy == "train-positives":
            return self.train.to_bool_csr()
        if policy == "train-all":
            return self.train_all.to_bool_csr()
        if policy == "none":
            return sp.csr_matrix(self.train.shape, dtype=bool)
        raise ValueError(
            f"unknown exclusion policy {policy!r}; expected 'train-positives', 'train-all' "
            "or 'none'"
        )

    def summary(self) -> dict:
        """Counts as plain Python numbers (what ``rsbench data`` prints)."""
        test_all = self.test_all if self.test_all is not None else self.test
        return {
            "dataset": self.name,
            "split": self.split,
            "min_rating": self.min_rating,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "train_ratings": len(self.train_all),
            "test_ratings": len(test_all),
            "train_positives": len(self.train),
            "test_positives": len(self.test),
            "eval_users": int(self.eval_users().shape[0]),
            "source": self.source,
            "sha256": self.sha256,
            "stage": self.stage,
            "cold_users": int(self.cold_users().shape[0]),
            "cold_items": int(self.cold_items().shape[0]),
            **dict(self.facts),
        }
