"""The one record every parser returns before the split, and the split that makes it a Dataset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.datasets.dataset import Dataset, SideFeatures
from bench.datasets.splits import SPLITS, split_mask, validation_mask
from bench.interactions import Interactions

__all__ = ["Record", "split_record"]


@dataclass(frozen=True, eq=False)
class Record:
    """A ratings log with dense 0-based indices, side information and provenance, not yet split.

    Attributes
    ----------
    user_index, item_index : numpy.ndarray of int, shape (n,)
        0-based indices, in file order.
    rating : numpy.ndarray of float32, shape (n,), or None
        The rating (``None``: every row is a positive with weight 1).
    timestamp : numpy.ndarray of int64, shape (n,), or None
    raw_user_ids, raw_item_ids : numpy.ndarray
        The file's own id of each index (any dtype, strings included); their
        lengths are the catalogue sizes.
    user_table, item_table : pandas.DataFrame or None
        One row per index, in index order.
    user_features, item_features : SideFeatures or None
    sha256 : str
        The content hash recorded in the dataset (and in every result).
    files : mapping of str to bytes
        The content the record was parsed from, by cache file name: what the
        pinned checksums describe and what the cache stores (empty for data
        that is never cached).
    source : str
        Where it came from (``path:...``, ``cache:...``, ``grouplens:<url>``...).
    facts : mapping
        Extra facts for ``summary()`` (k-core counts, file hashes...).
    """

    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    raw_user_ids: np.ndarray
    raw_item_ids: np.ndarray
    user_table: pd.DataFrame | None = None
    item_table: pd.DataFrame | None = None
    user_features: SideFeatures | None = None
    item_features: SideFeatures | None = None
    sha256: str = ""
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    source: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        """Number of user indices."""
        return int(self.raw_user_ids.shape[0])

    @property
    def num_items(self) -> int:
        """Number of item indices."""
        return int(self.raw_item_ids.shape[0])


def split_record(
    record: Record,
    split: str,
    min_rating: float | None,
    *,
    name: str,
    stage: str = "test",
    options: Mapping[str, Any] | None = None,
) -> Dataset:
    """Split a record into a :class:`~bench.datasets.dataset.Dataset`.

    The split is made on *all* ratings in file order; then ratings at or above
    ``min_rating`` are the positives of each side. With ``stage="validation"``
    the train rows are split again by :func:`~bench.datasets.splits.validation_mask`
    (train' / validation) and the test rows are dropped before anything else sees
    them. Each side is ordered by (user, item), as GroupLens's sorted ``ua.base``.

    Parameters
    ----------
    record : Record
    split : str
        One of :data:`~bench.datasets.splits.SPLITS`.
    min_rating : float or None
    name : str
        Recorded in the dataset.
    stage : {"test", "validation"}
    options : mapping
        Split options (``seed``, ``k``, ``test_fraction``, ``cutoff``,
        ``cutoff_quantile``, ``cold_fraction``, ``validation_seed``).

    Returns
    -------
    Dataset
        ``train``/``test`` are positives weighted by the rating (float32);
        ``train_all``/``test_all`` every rating of each side.
    """
    if stage not in ("test", "validation"):
        raise ValueError(f"stage must be 'test' or 'validation', got {stage!r}")
    options = dict(options or {})
    timestamps = record.timestamp
    user_idx = np.asarray(record.user_index, dtype=np.int64)
    item_idx = np.asarray(record.item_index, dtype=np.int64)
    stars = record.rating
    weights = np.ones(user_idx.shape[0], np.float32) if stars is None else np.asarray(stars)
    weights = weights.astype(np.float32)
    num_users, num_items = record.num_users, record.num_items
    split_args = {
        "seed": options.get("seed", 0),
        "k": options.get("k", 10),
        "test_fraction": options.get("test_fraction", 0.2),
        "cutoff": options.get("cutoff"),
        "cutoff_quantile": options.get("cutoff_quantile", 0.8),
        "cold_fraction": options.get("cold_fraction", 0.1),
    }
    mask, rule = split_mask(split, user_idx, timestamps, item_ids=item_idx, **split_args)
    positive = np.ones_like(mask) if min_rating is None else weights >= min_rating
    summary_facts: dict[str, Any] = {"split_rule": rule, **dict(record.facts)}
    if SPLITS[split].cold_start:
        summary_facts["cold_start"] = True
    if SPLITS[split].facts is not None:
        summary_facts.update(SPLITS[split].facts(timestamps, split_args))
    keep = np.ones_like(mask)
    if stage == "validation":
        train_rows = np.flatnonzero(~mask)
        stamps = None if timestamps is None else np.asarray(timestamps)[train_rows]
        val, val_rule = validation_mask(
            split,
            user_idx[train_rows],
            item_idx[train_rows],
            stamps,
            positive[train_rows],
            options.get("validation_seed", 0),
            split_args,
            full_timestamps=timestamps,
        )
        keep = np.zeros_like(mask)
        keep[train_rows] = True
        mask = np.zeros_like(mask)
        mask[train_rows[val]] = True
        summary_facts["validation_rule"] = val_rule
        summary_facts["test_rule"] = rule

    def side(selected: np.ndarray) -> Interactions:
        rows = np.flatnonzero(selected)
        rows = rows[np.lexsort((item_idx[rows], user_idx[rows]))]
        return Interactions(user_idx[rows], item_idx[rows], num_users, num_items, weights[rows])

    train_all, test_all = side(keep & ~mask), side(keep & mask)
    if min_rating is None:
        train, test = train_all, test_all
    else:
        train = train_all.select(train_all.weights >= min_rating)
        test = test_all.select(test_all.weights >= min_rating)
    return Dataset(
        name=name,
        split=split,
        min_rating=min_rating,
        train=train,
        test=test,
        train_all=train_all,
        test_all=test_all,
        user_features=record.user_features,
        item_features=record.item_features,
        user_table=record.user_table,
        item_table=record.item_table,
        raw_user_ids=record.raw_user_ids,
        raw_item_ids=record.raw_item_ids,
        source=record.source,
        sha256=record.sha256,
        stage=stage,
        facts=summary_facts,
    )
