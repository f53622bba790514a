"""Experiment definitions: TOML files and command-line options turned into run specs.

An experiment file holds the same options as ``rsbench run``::

    name = "notebook"
    dataset = "ml-100k"
    split = "ua"
    min_rating = 4.0
    seeds = [0, 1, 2]
    models = ["popularity", "keras-bilinear:notebook",
              { name = "fm", preset = "ids-only", params = { latent_dim = 32 } }]

Optional keys: ``description``, ``epochs`` (overrides every model), ``ties``,
``exclude``, ``ks``, ``out``, ``dataset_options`` (a table passed to the
loader), ``datasets`` (a list of tables with ``dataset``, ``split``,
``min_rating``, ``options``, to run every model on several datasets, e.g.
growing synthetic sizes), and the regression-gate settings
``fit_time_factor``, ``tolerance_se`` and ``tolerance_floor``, and ``curves``
(false skips the per-epoch evaluation, e.g. for the scale suite), and
``isolate`` (true runs each spec in its own process, so peak memory is per run
and a native crash is recorded as a failure). Unknown keys are errors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import DEFAULT_DATASET
from bench.runner import RunSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ConfigError", "Experiment", "load_experiment", "parse_int_list", "parse_models"]

TOP_KEYS = {
    "name",
    "description",
    "dataset",
    "split",
    "min_rating",
    "dataset_options",
    "datasets",
    "models",
    "seeds",
    "epochs",
    "ties",
    "exclude",
    "ks",
    "out",
    "fit_time_factor",
    "tolerance_floor",
    "tolerance_se",
    "curves",
    "isolate",
}
MODEL_KEYS = {"name", "preset", "params", "epochs", "seeds"}
DATASET_KEYS = {"dataset", "split", "min_rating", "options"}


def dataset_defaults(name: str) -> tuple[str, float | None]:
    """``(split, min_rating)`` defaults of dataset ``name``, from the dataset registry."""
    from bench.data import dataset_defaults as registry_defaults

    return registry_defaults(name)


class ConfigError(ValueError):
    """An experiment file or option is invalid; the message says which key and where."""


@dataclass
class Experiment:
    """A named list of run specs plus where their results go."""

    name: str
    specs: list[RunSpec]
    out: str | None = None
    description: str = ""
    fit_time_factor: float = 3.0
    tolerance_floor: float = 0.005
    tolerance_se: float = 3.0
    curves: bool = True
    isolate: bool = False
    source: str = "<command line>"
    raw: dict[str, Any] = field(default_factory=dict)


def parse_int_list(text: str | Sequence[int], what: str) -> list[int]:
    """``"0,1,2"`` (or a list) -> ``[0, 1, 2]``; anything else raises :class:`ConfigError`."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        raise ConfigError(f"{what}: expected a list of integers, got {text!r}")
    out = []
    for part in parts:
        try:
            if isinstance(part, bool) or (not isinstance(part, str) and int(part) != part):
                raise ValueError
            out.append(int(part))
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: {part!r} is not an integer") from None
    if not out:
        raise ConfigError(f"{what}: empty list")
    return out


def parse_models(items: str | Sequence[Any], where: str = "--models") -> list[dict[str, Any]]:
    """Parse ``"a,b:preset"`` or a TOML list of strings/tables into model dicts."""
    if isinstance(items, str):
        items = [p.strip() for p in items.split(",") if p.strip()]
    if not items:
        raise ConfigError(f"{where}: no models given")
    out = []
    for item in items:
        if isinstance(item, str):
            name, _, preset = item.partition(":")
            if not name:
                raise ConfigError(f"{where}: empty model name in {item!r}")
            out.append({"name": name, "preset": preset or None, "params": {}})
        elif isinstance(item, dict):
            unknown = set(item) - MODEL_KEYS
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key(s) {sorted(unknown)} in model entry {item!r}; "
                    f"allowed: {sorted(MODEL_KEYS)}"
                )
            if "name" not in item:
                raise ConfigError(f"{where}: model entry {item!r} has no 'name'")
            params = item.get("params", {})
            if not isinstance(params, dict):
                raise ConfigError(f"{where}: params of {item['name']!r} must be a table")
            out.append({**item, "preset": item.get("preset"), "params": params})
        else:
            raise ConfigError(f"{where}: expected a string or a table, got {item!r}")
    return out


def build_experiment(options: dict[str, Any], *, source: str = "<command line>") -> Experiment:
    """Turn a dict of options (from TOML or the CLI) into an :class:`Experiment`."""
    unknown = set(options) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(TOP_KEYS))}"
        )
    if "models" not in options:
        raise ConfigError(f"{source}: 'models' is required")
    models = parse_models(options["models"], f"{source}: models")
    seeds = parse_int_list(options.get("seeds", [0]), f"{source}: seeds")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"{source}: seeds must be >= 0, got {seeds}")
    ks = parse_int_list(options.get("ks", [5, 10, 20]), f"{source}: ks")
    if any(k < 1 for k in ks):
        raise ConfigError(f"{source}: ks must be >= 1, got {ks}")
    if "datasets" in options:
        if "dataset" in options or "dataset_options" in options:
            raise ConfigError(f"{source}: give either 'datasets' or 'dataset', not both")
        if not isinstance(options["datasets"], list):
            raise ConfigError(f"{source}: 'datasets' must be a list of tables")
        datasets = []
        for entry in options["datasets"]:
            if not isinstance(entry, dict):
                raise ConfigError(f"{source}: each of 'datasets' must be a table, got {entry!r}")
            bad = set(entry) - DATASET_KEYS
            if bad:
                raise ConfigError(
                    f"{source}: unknown key(s) {sorted(bad)} in datasets entry; "
                    f"allowed: {sorted(DATASET_KEYS)}"
                )
            datasets.append(entry)
        if not datasets:
            raise ConfigError(f"{source}: 'datasets' is empty")
    else:
        dataset = options.get("dataset", DEFAULT_DATASET)
        dataset_options = options.get("dataset_options", {})
        if isinstance(dataset, dict) and isinstance(dataset_options, dict):
            # A [dataset] table: your own log (path plus column mapping and options).
            if "path" not in dataset:
                raise ConfigError(f"{source}: the [dataset] table needs a 'path'")
            dataset_options = {
                **{k: v for k, v in dataset.items() if k != "path"},
                **dataset_options,
            }
            dataset = str(dataset["path"])
        datasets = [
            {
                "dataset": dataset,
                "options": dataset_options,
                **{k: options[k] for k in ("split", "min_rating") if k in options},
            }
        ]
    for ds in datasets:
        if not isinstance(ds.get("options", {}), dict):
            raise ConfigError(f"{source}: dataset options must be a table, got {ds['options']!r}")
    epochs = options.get("epochs")
    specs = []
    try:
        for ds in datasets:
            for model in models:
                name = ds.get("dataset", DEFAULT_DATASET)
                split, min_rating = dataset_defaults(name)
                _check_dataset(name, ds.get("split", split), ds.get("min_rating", min_rating), ds)
                for seed in parse_int_list(model.get("seeds", seeds), f"{source}: seeds"):
                    specs.append(
                        RunSpec(
                            model=model["name"],
                            preset=model["preset"],
                            params=model["params"],
                            seed=seed,
                            epochs=model.get("epochs", epochs),
                            dataset=name,
                            split=ds.get("split", split),
                            min_rating=ds.get("min_rating", min_rating),
                            dataset_options=ds.get("options", {}),
                            ties=options.get("ties", "expected"),
                            exclude=options.get("exclude", "train-positives"),
                            ks=tuple(ks),
                        )
                    )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None

    def number(key: str, default: float) -> float:
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{source}: {key} must be a number >= 0, got {value!r}")
        return float(value)

    return Experiment(
        name=str(options.get("name", "run")),
        specs=specs,
        out=options.get("out"),
        description=str(options.get("description", "")),
        fit_time_factor=number("fit_time_factor", 3.0),
        tolerance_floor=number("tolerance_floor", 0.005),
        tolerance_se=number("tolerance_se", 3.0),
        curves=_boolean(options.get("curves", True), f"{source}: curves"),
        isolate=_boolean(options.get("isolate", False), f"{source}: isolate"),
        source=source,
        raw=dict(options),
    )


def _check_dataset(name: str, split: Any, min_rating: Any, entry: dict) -> None:
    """Dataset-specific checks (splits, min_rating, options) from the dataset registry."""
    from bench.data import check_options

    check_options(name, split, min_rating, entry.get("options", {}))


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def load_experiment(path: str | Path) -> Experiment:
    """Read a TOML experiment file; syntax errors and unknown keys raise :class:`ConfigError`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return build_experiment(raw, source=str(path))
