"""Datasets by name: MovieLens 100K with GroupLens's and seeded splits, and synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.dataset import Dataset
from bench.features import item_side_features, user_side_features
from bench.interactions import Interactions
from bench.movielens import MovieLensTables, load_movielens
from bench.splits import (
    allbut_mask,
    fold_mask,
    random_leave_k_out_mask,
    temporal_leave_last_k_out_mask,
)
from bench.synthetic import synthetic

__all__ = [
    "DATASETS",
    "DATASET_SPLITS",
    "DEFAULT_SPLITS",
    "SPLITS",
    "check_options",
    "dataset_from_tables",
    "load_dataset",
    "split_mask",
]

logger = logging.getLogger(__name__)

#: Dataset names and one line each (for ``rsbench list``).
DATASETS: dict[str, str] = {
    "ml-100k": "MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings 1-5, "
    "with movie genres/years and user age/gender/occupation",
    "synthetic": "seeded synthetic implicit feedback (200 users, 300 items, 6,000 positives, "
    "power-law popularity, low-rank taste), random leave-2-out split",
}

#: MovieLens split names and one line each (for ``rsbench list``).
SPLITS: dict[str, str] = {
    "ua": "GroupLens ua: each user's first 10 ratings in u.data order are test "
    "(90,570 train / 9,430 test ratings)",
    "ub": "GroupLens ub: each user's 11th to 20th ratings in u.data order are test",
    **{
        f"u{f}": f"GroupLens u{f}: u.data lines {20_000 * (f - 1) + 1:,}-{20_000 * f:,} are "
        "test (80,000 / 20,000 ratings)"
        for f in range(1, 6)
    },
    "random": "per user, k ratings drawn at random (seeded) are test; a user keeps >= 1 in train",
    "temporal": "per user, the k most recent ratings are test; a user keeps >= 1 in train",
}

#: Which splits each dataset offers, and the one used when ``split`` is None.
DATASET_SPLITS: dict[str, tuple[str, ...]] = {
    "ml-100k": tuple(SPLITS),
    "synthetic": ("random",),
}
DEFAULT_SPLITS: dict[str, str] = {"ml-100k": "ua", "synthetic": "random"}
_DEFAULT_MIN_RATING = 4.0


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


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


#: Options :func:`load_dataset` takes for ``synthetic`` (:func:`bench.synthetic.synthetic`'s).
_SYNTHETIC_OPTIONS = {
    "num_users",
    "num_items",
    "num_positives",
    "test_per_user",
    "rank",
    "popularity_exponent",
    "taste_strength",
}
#: Options :func:`load_dataset` takes for MovieLens.
_MOVIELENS_OPTIONS = {"path", "cache_dir", "seed", "k"}


def check_options(
    name: str, split: str | None, min_rating: float | None, options: dict[str, Any]
) -> None:
    """Check, without loading anything, that dataset ``name`` accepts these arguments.

    The single hook the experiment validation (:mod:`bench.config`) and
    :meth:`bench.runner.Runner.check` call before any run starts, so that an
    option the dataset rejects is bad input (exit code 2), not a failed run.

    Parameters
    ----------
    name : str
        Dataset name (see :data:`DATASETS`).
    split : str or None
        Split name; ``None`` is the dataset's default.
    min_rating : float or None
        Positive threshold (``None`` keeps every rating; a dataset without
        ratings accepts only ``None``).
    options : dict
        The extra keyword arguments that :func:`load_dataset` would get.

    Raises
    ------
    ValueError
        Unknown dataset, split or option, or a value the dataset rejects; the
        message names it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split is not None and split not in DATASET_SPLITS[name]:
        raise ValueError(
            f"unknown split {split!r} for {name!r}; known splits: {', '.join(DATASET_SPLITS[name])}"
        )
    if min_rating is not None:
        _check_min_rating(min_rating)
    for key in ("seed", "k"):
        if key in options:
            _check_int(key, options[key], 0 if key == "seed" else 1)
    if name == "synthetic":
        if min_rating is not None:
            raise ValueError(
                "dataset 'synthetic' has no ratings (every interaction is a "
                f"positive): min_rating must be None, got {min_rating!r}"
            )
        unknown = sorted(set(options) - _SYNTHETIC_OPTIONS - {"seed"})
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for 'synthetic'; allowed: "
                f"{sorted(_SYNTHETIC_OPTIONS | {'seed'})}"
            )
        sizes = {"num_users": 200, "num_items": 300, "num_positives": 6_000}
        for key in ("num_users", "num_items", "num_positives", "test_per_user", "rank"):
            if key in options:
                value = _check_int(f"synthetic option {key}", options[key], 1)
                sizes[key] = value
        if sizes["num_items"] < 3:
            raise ValueError(f"synthetic option num_items must be >= 3, got {sizes['num_items']}")
        if sizes["num_positives"] < 2 * sizes["num_users"]:
            raise ValueError(
                f"synthetic option num_positives={sizes['num_positives']} is below 2 per "
                f"user ({2 * sizes['num_users']} for num_users={sizes['num_users']})"
            )
        for key in ("popularity_exponent", "taste_strength"):
            value = options.get(key, 0.0)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not np.isfinite(value)
                or (key == "popularity_exponent" and value < 0)
            ):
                raise ValueError(f"synthetic option {key} must be a finite number, got {value!r}")
        return
    unknown = sorted(set(options) - _MOVIELENS_OPTIONS)
    if unknown:
        raise ValueError(
            f"option(s) {unknown} do not apply to {name!r}; allowed: {sorted(_MOVIELENS_OPTIONS)}"
        )


def split_mask(
    split: str, user_ids: np.ndarray, timestamps: np.ndarray, *, seed: int = 0, k: int = 10
) -> np.ndarray:
    """Boolean test mask over ratings in file order for a MovieLens split name.

    Parameters
    ----------
    split : str
        One of :data:`SPLITS`.
    user_ids : numpy.ndarray of int, shape (n,)
        User of each rating, in ``u.data`` order.
    timestamps : numpy.ndarray of int, shape (n,)
        Used by ``temporal`` only.
    seed : int
        Seed of the ``random`` split.
    k : int
        Test ratings per user for ``random`` and ``temporal``.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        ``True`` for test rows.
    """
    if split == "ua":
        return allbut_mask(user_ids, 1, 10)
    if split == "ub":
        return allbut_mask(user_ids, 11, 20)
    if split in {"u1", "u2", "u3", "u4", "u5"}:
        return fold_mask(np.asarray(user_ids).shape[0], int(split[1]))
    if split == "random":
        return random_leave_k_out_mask(user_ids, k, np.random.default_rng(seed))
    if split == "temporal":
        return temporal_leave_last_k_out_mask(user_ids, timestamps, k)
    raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")


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
) -> Dataset:
    """Split normalised MovieLens tables into a :class:`~bench.dataset.Dataset`.

    The split is made on *all* ratings in file order; then ratings at or above
    ``min_rating`` are the positives on each side. Index ``u`` is the position
    of the raw id in the sorted user table (likewise items), so the catalogue is
    every item of the item table, rated or not. Each side is ordered by
    (user, item), as GroupLens's sorted ``ua.base``.

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
    stars = ratings["rating"].to_numpy(np.float32)
    mask = split_mask(split, user_idx, ratings["timestamp"].to_numpy(np.int64), seed=seed, k=k)
    num_users, num_items = raw_user_ids.shape[0], raw_item_ids.shape[0]

    def side(selected: np.ndarray) -> Interactions:
        rows = np.flatnonzero(selected)
        rows = rows[np.lexsort((item_idx[rows], user_idx[rows]))]
        return Interactions(user_idx[rows], item_idx[rows], num_users, num_items, stars[rows])

    train_all, test_all = side(~mask), side(mask)
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
        user_features=user_side_features(users),
        item_features=item_side_features(items),
        user_table=users,
        item_table=items,
        raw_user_ids=raw_user_ids,
        raw_item_ids=raw_item_ids,
        source=source,
        sha256=tables.sha256()["ratings.tsv"] if sha256 is None else sha256,
    )


def load_dataset(
    name: str,
    split: str | None = None,
    min_rating: float | Literal["default"] | None = "default",
    *,
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    k: int = 10,
    **synthetic_options: Any,
) -> Dataset:
    """Load a dataset by name and split it.

    Parameters
    ----------
    name : {"ml-100k", "synthetic"}
        See :data:`DATASETS`.
    split : str, optional
        One of :data:`SPLITS` for ``ml-100k`` (default ``"ua"``); ``"random"``
        (its own leave-2-out split, the default) for ``synthetic``.
    min_rating : float or None
        Ratings at or above it are positives (``ml-100k`` default 4.0; ``None``
        keeps every rating). ``synthetic`` has no ratings: leave it at
        ``"default"`` or pass ``None``.
    path : path, optional
        Local MovieLens copy (GroupLens folder or zip, RecBole wheel or folder);
        ``ml-100k`` only.
    cache_dir : path, optional
        Cache folder (default ``$RSBENCH_CACHE_DIR`` or ``~/.cache/rsbench``).
    seed : int
        Seed of the ``random`` split and of the synthetic generator.
    k : int
        Test ratings per user of the ``random`` and ``temporal`` splits (the
        synthetic split always holds out 2).
    **synthetic_options
        ``synthetic`` only: sizes and shape passed to
        :func:`bench.synthetic.synthetic` (``num_users``, ``num_items``,
        ``num_positives``, ``test_per_user``, ``rank``, ``popularity_exponent``,
        ``taste_strength``), e.g. for the scale suite.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name or split (the known ones are listed), or arguments that do
        not apply to the dataset.
    DataError
        The MovieLens data cannot be loaded or verified.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    seed = _check_int("seed", seed, 0)
    k = _check_int("k", k, 1)
    if name == "synthetic":
        if split not in (None, "random"):
            raise ValueError(
                f"dataset 'synthetic' has only its own 'random' (leave-2-out) "
                f"split, got split={split!r}"
            )
        if not (isinstance(min_rating, str) and min_rating == "default") and min_rating is not None:
            raise ValueError(
                "dataset 'synthetic' has no ratings (every interaction is a "
                f"positive): min_rating must be None, got {min_rating!r}"
            )
        if path is not None:
            raise ValueError(f"path applies to 'ml-100k' only, got path={path!r} for 'synthetic'")
        allowed = {
            "num_users",
            "num_items",
            "num_positives",
            "test_per_user",
            "rank",
            "popularity_exponent",
            "taste_strength",
        }
        unknown = sorted(set(synthetic_options) - allowed)
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for 'synthetic'; allowed: {sorted(allowed)}"
            )
        return synthetic(seed=seed, **synthetic_options)
    if synthetic_options:
        raise ValueError(
            f"option(s) {sorted(synthetic_options)} apply to 'synthetic' only, not to {name!r}"
        )

    split = DEFAULT_SPLITS[name] if split is None else split
    if split not in DATASET_SPLITS[name]:
        raise ValueError(
            f"unknown split {split!r} for {name!r}; known splits: {', '.join(DATASET_SPLITS[name])}"
        )
    if isinstance(min_rating, str):
        if min_rating != "default":
            raise ValueError(f"min_rating must be a number, None or 'default', got {min_rating!r}")
        min_rating = _DEFAULT_MIN_RATING
    min_rating = _check_min_rating(min_rating)
    tables, source = load_movielens(path=path, cache_dir=cache_dir)
    logger.info("loaded %s from %s", name, source)
    return dataset_from_tables(tables, split, min_rating, seed=seed, k=k, name=name, source=source)
