"""The dataset registry: entries that carry everything about a dataset, and plugins.

A :class:`DatasetEntry` holds a dataset's sources in words, checksums, default
split and threshold, the splits it offers, what it carries, its own options,
their checks and its loader: nothing outside its entry knows a dataset's name.
Third-party packages add datasets through the entry-point group
``rsbench.datasets`` (as models do through ``rsbench.models``); ``rsbench
list`` shows where each entry comes from.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets.dataset import Dataset
from bench.datasets.splits import SPLITS

__all__ = [
    "ENTRY_POINT_GROUP",
    "SPLIT_OPTIONS",
    "DatasetEntry",
    "DatasetRegistry",
    "LoadRequest",
    "PluginError",
    "check_int",
]

logger = logging.getLogger(__name__)

#: The entry-point group third-party datasets are declared in.
ENTRY_POINT_GROUP = "rsbench.datasets"

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


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an int, if it is an integer >= ``low`` (else ``ValueError``)."""
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


@dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked for, already checked against its entry.

    Attributes
    ----------
    name : str
        The name asked for (the entry's own, or a path the entry claims).
    split : str
    min_rating : float or None
    stage : {"test", "validation"}
    options : dict
        The entry's options as given (split options, ``path``, ``cache_dir``,
        its own), checked.
    """

    name: str
    split: str
    min_rating: float | None
    stage: str
    options: dict[str, Any]


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
        ``loader(request: LoadRequest) -> Dataset``; the request already checked.
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
    validate : callable, optional
        ``validate(options)``: the entry's own checks of its options (after the
        shared ones), raising ``ValueError``.
    claims : callable, optional
        ``claims(name) -> bool``: names besides its own that it answers (a path
        to your own log); asked only for names no entry has.
    claims_hint : str
        Those names in words, for the unknown-name error (``"a path to your own log: .csv"``).
    origin : str
        Where the entry comes from: ``"rsbench"`` or ``"plugin <distribution> <version>"``.
    """

    name: str
    description: str
    sources: tuple[str, ...]
    checksums: Mapping[str, str]
    loader: Callable[[LoadRequest], Dataset]
    default_split: str
    default_min_rating: float | None
    splits: tuple[str, ...]
    carries: frozenset[str]
    options: Mapping[str, str] = field(default_factory=dict)
    rating_range: tuple[float, float] | None = (1.0, 5.0)
    split_options: bool = True
    generated: bool = False
    validate: Callable[[Mapping[str, Any]], None] | None = None
    claims: Callable[[str], bool] | None = None
    claims_hint: str = ""
    origin: str = "rsbench"

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
                    options[key] = check_int(key, options[key], low)
            for key in ("test_fraction", "cutoff_quantile", "cold_fraction"):
                if key in options:
                    options[key] = _check_fraction(key, options[key])
            if "cutoff" in options:
                options["cutoff"] = check_int("cutoff", options["cutoff"], 0)
            if "cutoff" in options and "cutoff_quantile" in options:
                raise ValueError("give either cutoff or cutoff_quantile, not both")
            for key in ("path", "cache_dir"):
                if key in options and not isinstance(options[key], (str, Path)):
                    raise ValueError(f"{key} must be a path, got {options[key]!r}")
        if self.validate is not None:
            self.validate(options)
        return split, min_rating, options

    def load(
        self, name: str, split: str | None, min_rating: Any, stage: str, options: Mapping[str, Any]
    ) -> Dataset:
        """Check the request and run the loader.

        Raises
        ------
        ValueError
            Bad stage, split, ``min_rating`` or option (see :meth:`check`).
        """
        if stage not in ("test", "validation"):
            raise ValueError(f"stage must be 'test' or 'validation', got {stage!r}")
        split, min_rating, options = self.check(split, min_rating, options)
        return self.loader(LoadRequest(name, split, min_rating, stage, options))


@dataclass(frozen=True)
class PluginError:
    """A ``rsbench.datasets`` entry point that could not be registered, and why."""

    name: str
    distribution: str
    error: str


class DatasetRegistry:
    """Datasets by name, like the model registry: register once, look up, list.

    Parameters
    ----------
    plugins : bool
        Register the ``rsbench.datasets`` entry points the first time a name is
        not found or the entries are listed.
    """

    def __init__(self, *, plugins: bool = False) -> None:
        self._entries: dict[str, DatasetEntry] = {}
        self._plugins_pending = plugins
        self.plugin_errors: list[PluginError] = []

    def register(self, entry: DatasetEntry) -> DatasetEntry:
        """Add ``entry``; a second entry under the same name is an error.

        Raises
        ------
        ValueError
            The name is taken, a split is unknown, the default split is not
            offered, or a split needs what the dataset does not carry.
        TypeError
            ``entry`` is not a :class:`DatasetEntry`.
        """
        if not isinstance(entry, DatasetEntry):
            raise TypeError(f"expected a DatasetEntry, got {type(entry).__name__}")
        if entry.name in self._entries:
            raise ValueError(f"dataset {entry.name!r} is already registered")
        bad = [s for s in entry.splits if s not in SPLITS]
        if bad or entry.default_split not in entry.splits:
            raise ValueError(f"dataset {entry.name!r}: bad splits {bad or entry.default_split!r}")
        for split in entry.splits:
            missing = SPLITS[split].needs - entry.carries
            if missing:
                raise ValueError(
                    f"dataset {entry.name!r} cannot offer split {split!r}: it lacks "
                    f"{', '.join(sorted(missing))}"
                )
        self._entries[entry.name] = entry
        return entry

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> list[PluginError]:
        """Register the datasets declared in the entry-point group ``group``.

        An entry point names a :class:`DatasetEntry` or a function returning one
        or several. A plugin that fails (import error, wrong type, a name
        already taken) is logged and recorded in ``plugin_errors``; the others
        are unaffected.
        """
        self._plugins_pending = False
        failures = []
        try:
            points = sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name)
        except Exception as exc:  # broken metadata must not stop rsbench
            logger.warning("could not read the %r entry points: %s", group, exc)
            return failures
        for point in points:
            dist = getattr(point, "dist", None)
            dist_name = (
                f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
            )
            try:
                obj = point.load()
                found = obj() if callable(obj) and not isinstance(obj, DatasetEntry) else obj
                entries = [found] if isinstance(found, DatasetEntry) else list(found)
                for entry in entries:
                    if not isinstance(entry, DatasetEntry):
                        raise TypeError(
                            f"{point.value!r} gave {type(entry).__name__}, not a DatasetEntry"
                        )
                    self.register(replace(entry, origin=f"plugin {dist_name}"))
            except Exception as exc:  # one broken plugin must not break the others
                error = PluginError(point.name, dist_name, f"{type(exc).__name__}: {exc}")
                logger.warning(
                    "dataset plugin %r (%s) could not be loaded: %s",
                    point.name,
                    dist_name,
                    error.error,
                )
                failures.append(error)
        self.plugin_errors.extend(failures)
        return failures

    def _with_plugins(self) -> None:
        if self._plugins_pending:
            self.load_plugins()

    def names(self) -> list[str]:
        """Registered names in registration order."""
        self._with_plugins()
        return list(self._entries)

    def entries(self) -> list[DatasetEntry]:
        """Registered entries in registration order."""
        self._with_plugins()
        return list(self._entries.values())

    def get(self, name: str) -> DatasetEntry:
        """The entry of ``name``, or of the first entry that claims it (a path to your own log).

        Raises
        ------
        ValueError
            Unknown name; the message lists the known ones.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"dataset must be a non-empty string, got {name!r}")
        if name not in self._entries:
            self._with_plugins()
        if name in self._entries:
            return self._entries[name]
        for entry in self._entries.values():
            if entry.claims is not None and entry.claims(name):
                return entry
        known = [e.name for e in self._entries.values() if e.claims is None]
        claimed = [e.claims_hint or e.name for e in self._entries.values() if e.claims]
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(known)}"
            + (f" (or {'; '.join(claimed)})" if claimed else "")
        )
