"""What a run is: :class:`RunSpec`, its two keys, and the expansion of a suite into specs.

``run_id``
    Hash of the spec, seed included: one run (a row of ``runs.csv``).
``setting_key``
    Hash of the spec without its seed: what the seeds of one setting share.

Both are defined here once and read everywhere else. Fingerprints of what a
run read and ran are in neither key.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.datasets import DEFAULT_DATASET, dataset_defaults
from bench.threads import check_threads

if TYPE_CHECKING:
    from bench.registry import Registry

__all__ = [
    "EXCLUSIONS",
    "MAX_EPOCHS",
    "MAX_SEED",
    "STAGES",
    "TIES",
    "RunSpec",
    "expand_specs",
    "once_if_deterministic",
]

TIES = ("expected", "pessimistic")
EXCLUSIONS = ("train-positives", "train-all", "none")
#: Largest seed: an unsigned 32-bit integer (every framework seed and the Parquet
#: int64 ``seed`` column hold it).
MAX_SEED = 2**32 - 1
#: Largest ``epochs`` (and ``k``): frameworks count epochs in signed 32-bit integers.
MAX_EPOCHS = 2**31 - 1
#: What a run is evaluated on: the test rows, or validation rows carved from train (tuning).
STAGES = ("test", "validation")


def _key(content: Mapping[str, Any]) -> str:
    """A 16-hex-digit SHA-256 prefix of the canonical JSON of ``content``."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _jsonable(value: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} must be JSON-serialisable: {exc}") from None


_DEFAULT_SPLIT, _DEFAULT_MIN_RATING = dataset_defaults(DEFAULT_DATASET)


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run; its :attr:`run_id` is a hash of this content.

    Parameters
    ----------
    model : str
        Registry name, e.g. ``"keras-bilinear"``.
    preset : str or None
        Registry preset applied before ``params``.
    params : mapping
        Hyperparameter overrides (JSON-serialisable).
    seed : int
        Root of every random stream of the run (model, sampler, frameworks),
        in ``[0, MAX_SEED]`` (unsigned 32-bit).
    epochs : int or None
        Overrides the model's own ``epochs`` (``None`` keeps it); in
        ``[1, MAX_EPOCHS]``.
    dataset, split, min_rating, dataset_options
        What :func:`bench.datasets.load_dataset` is called with.
    ties : {"expected", "pessimistic"}
        Tie policy of every metric.
    exclude : {"train-positives", "train-all", "none"}
        Items removed from each user's candidates.
    ks : tuple of int
        Cut-offs for the @k metrics.
    stage : {"test", "validation"}
        ``"validation"`` trains on train minus a validation hold-out and
        evaluates on that hold-out (tuning trials; the test rows are never
        loaded). Omitted from :meth:`to_dict` when ``"test"``, so run ids of
        ordinary runs do not change.
    threads : int or None
        Threads of every numeric pool (BLAS, OpenMP, PyTorch, TensorFlow) during
        the run; part of the identity because BLAS thread counts can change EASE
        and ALS results. ``None`` (the libraries' defaults) is left out of
        :meth:`to_dict`, so run ids made before this field existed still match.
    """

    model: str
    preset: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int | None = None
    # The default dataset's own split and positive threshold (ML-100K: ua, ratings >= 4).
    dataset: str = DEFAULT_DATASET
    split: str = _DEFAULT_SPLIT
    min_rating: float | None = _DEFAULT_MIN_RATING
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    ties: str = "expected"
    exclude: str = "train-positives"
    ks: tuple[int, ...] = (5, 10, 20)
    stage: str = "test"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be <= {MAX_SEED} (unsigned 32-bit), got {self.seed}")
        if self.epochs is not None and (
            isinstance(self.epochs, bool)
            or not isinstance(self.epochs, (int, np.integer))
            or not 1 <= self.epochs <= MAX_EPOCHS
        ):
            raise ValueError(
                f"epochs must be an integer >= 1 and <= {MAX_EPOCHS}, got {self.epochs!r}"
            )
        if self.ties not in TIES:
            raise ValueError(f"ties must be one of {', '.join(TIES)}, got {self.ties!r}")
        if self.exclude not in EXCLUSIONS:
            raise ValueError(
                f"exclude must be one of {', '.join(EXCLUSIONS)}, got {self.exclude!r}"
            )
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        ks = tuple(self.ks)
        if not ks or any(
            isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_EPOCHS
            for k in ks
        ):
            raise ValueError(f"ks must be integers >= 1, got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(sorted({int(k) for k in ks})))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "params", _jsonable(dict(self.params), "params"))
        object.__setattr__(
            self, "dataset_options", _jsonable(dict(self.dataset_options), "dataset_options")
        )
        if self.min_rating is not None:
            if isinstance(self.min_rating, bool) or not math.isfinite(self.min_rating):
                raise ValueError(
                    f"min_rating must be a finite number or None, got {self.min_rating!r}"
                )
            object.__setattr__(self, "min_rating", float(self.min_rating))
        object.__setattr__(self, "threads", check_threads(self.threads, "threads"))

    @property
    def label(self) -> str:
        """``model`` or ``model:preset``, the name used in tables."""
        return self.model if self.preset is None else f"{self.model}:{self.preset}"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types."""
        out = asdict(self)
        out["ks"] = list(self.ks)
        if self.stage == "test":
            del out["stage"]
        if self.threads is None:
            del out["threads"]
        return out

    @property
    def run_id(self) -> str:
        """A 16-hex-digit SHA-256 prefix of the canonical JSON of the spec (seed included).

        The identity of one run: a results folder holds each run id once, and a
        run whose id is already complete there is not run again.
        """
        return _key(self.to_dict())

    @property
    def setting_key(self) -> str:
        """The :attr:`run_id` of the spec without its seed: what the seeds of one setting share.

        The regression gate and the tuning report pair a setting's runs across
        folders by it; a deterministic model runs once per setting key.
        """
        return _key({**self.to_dict(), "seed": None})

    def dataset_key(self) -> str:
        """Identity of the dataset this spec runs on (runs sharing it share the load)."""
        key = [self.dataset, self.split, self.min_rating, dict(self.dataset_options)]
        if self.stage != "test":
            key.append(self.stage)
        return json.dumps(key, sort_keys=True)


def once_if_deterministic(specs: Sequence[RunSpec], registry: Registry) -> list[RunSpec]:
    """Drop the repeats of deterministic models that differ only in their seed.

    A model whose class says ``deterministic = True`` gives the same result
    for every seed, so it runs once (with the first seed asked for). Models
    whose framework is missing are kept as they are (they fail to run later
    with a clear message).
    """
    kept, seen = [], set()
    for spec in specs:
        entry = registry.get(spec.model) if spec.model in registry else None
        # A declared fact: reading it imports no framework (see ModelEntry.fact).
        if entry is not None and entry.available and entry.fact("deterministic"):
            if spec.setting_key in seen:
                continue
            seen.add(spec.setting_key)
        kept.append(spec)
    return kept


def expand_specs(
    models: Sequence[tuple[str, str | None, Mapping[str, Any]]],
    seeds: Sequence[int],
    **common: Any,
) -> list[RunSpec]:
    """The cross product of models x seeds, as specs sharing ``common`` fields.

    Pass the result through :func:`once_if_deterministic` to run deterministic
    models once.
    """
    return [
        RunSpec(model=name, preset=preset, params=dict(params), seed=seed, **common)
        for name, preset, params in models
        for seed in seeds
    ]
