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
growing synthetic sizes), the regression-gate settings ``fit_time_factor`` and
a ``[gate]`` table (``alpha``, ``spread_se`` and ``margins``, a table of metric
or family = margin, e.g. ``ndcg = "3%"`` or ``auc = 0.01``: see
:mod:`bench.results.regress`), and ``curves``
(false skips the per-epoch evaluation, e.g. for the scale suite), and
``isolate`` (default true: each spec runs in its own process, so peak memory
is per run and a native crash is recorded as a failed run; false runs them in
this process), ``timeout_s`` and ``max_memory_mb`` (per-run wall-time and
resident-memory limits; a run past either is stopped and recorded as failed;
they need isolated runs). ``threads`` (top level or per model) fixes every
numeric thread pool of a run and is part of its spec. ``executor`` (``local``,
``process`` or ``ray``), ``jobs``, ``ray_address`` and ``retries`` choose where
runs execute (see :mod:`bench.execution.executors`); they never change a run's identity.
Unknown keys are errors.

Every option, from a TOML file or the command line, is validated here, once,
by :func:`build_experiment`, before anything runs; a bad value raises
:class:`ConfigError` naming the key (or flag) and the file. Generic rules
(types, ranges) live in this module; what a dataset accepts (its splits,
whether it has ratings, its options) is asked of :func:`bench.datasets.check_options`.

Ranges: seeds are integers in ``[0, 2**32 - 1]`` (an unsigned 32-bit integer:
what ``numpy.random.SeedSequence`` and every framework seed accept, and it
fits the int64 ``seed`` column of the Parquet tables); a seed list must not
repeat a seed (a repeated seed is the same run, so it is an error rather than
a silently shorter list). ``epochs`` and each ``k`` are integers in
``[1, 2**31 - 1]`` (frameworks count epochs in 32-bit integers).
``min_rating`` is a finite number inside the dataset's rating range (from the dataset registry).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.datasets import DEFAULT_DATASET
from bench.execution.executors import executor_options
from bench.execution.spec import EXCLUSIONS, MAX_EPOCHS, MAX_SEED, TIES, RunSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "Experiment",
    "build_experiment",
    "load_experiment",
    "parse_int",
    "parse_int_list",
    "parse_models",
    "parse_number",
]

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
    "gate",
    "curves",
    "isolate",
    "timeout_s",
    "max_memory_mb",
    "threads",
    "executor",
    # and every executor option (jobs, ray_address, retries...): see below
}
MODEL_KEYS = {"name", "preset", "params", "epochs", "seeds", "threads"}
DATASET_KEYS = {"dataset", "split", "min_rating", "options"}

#: Largest ``k`` (like ``epochs``, a signed 32-bit integer); seeds and epochs: see RunSpec.
MAX_K = MAX_EPOCHS
#: Top of the rating scale (1-5 stars) that ``min_rating`` thresholds.
#: Command-line flags that override an experiment file, by the key they override.
#: The ``source`` of options given as ``rsbench run`` flags (errors then name the flag).
CLI_SOURCE = "command line"
OVERRIDE_FLAGS = {
    "seeds": "--seeds",
    "epochs": "--epochs",
    "out": "--out",
    "curves": "--no-curves",
    "isolate": "--isolate/--no-isolate",
    "timeout_s": "--timeout-s",
    "max_memory_mb": "--max-memory-mb",
    "threads": "--threads",
    "executor": "--executor",
}


def _top_keys() -> set[str]:
    """:data:`TOP_KEYS` and every registered executor's options (they declare their own)."""
    return TOP_KEYS | set(executor_options())


def _override_flags() -> dict[str, str]:
    """:data:`OVERRIDE_FLAGS` and the flag of every registered executor option."""
    return {**OVERRIDE_FLAGS, **{k: o.flag for k, o in executor_options().items()}}


#: Largest thread count of a run (and Ray CPUs it reserves).
MAX_THREADS = 4096


def dataset_defaults(name: str) -> tuple[str, float | None]:
    """``(split, min_rating)`` defaults of dataset ``name``, from the dataset registry."""
    from bench.datasets import dataset_defaults as registry_defaults

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
    #: The regression gate's settings as the manifest records them
    #: (:meth:`bench.results.regress.GateSettings.to_json`).
    gate: dict[str, Any] = field(default_factory=lambda: _gate_settings({}, "gate"))
    curves: bool = True
    isolate: bool = True
    timeout_s: float | None = None
    max_memory_mb: float | None = None
    #: ``{"executor", "jobs", "ray_address", "retries"}`` (see :mod:`bench.execution.executors`).
    execution: dict[str, Any] = field(
        default_factory=lambda: {"executor": "local", "jobs": 1, "ray_address": None, "retries": 1}
    )
    source: str = "<command line>"
    raw: dict[str, Any] = field(default_factory=dict)


def parse_int(value: Any, what: str, *, low: int, high: int) -> int:
    """An integer in ``[low, high]`` from an int, an integral float or a string.

    Strings come from the command line, numbers from TOML; both go through here
    so that both are held to the same rule. Anything else raises
    :class:`ConfigError` naming ``what``.
    """
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    elif isinstance(value, float) and math.isfinite(value) and value == int(value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if not low <= number <= high:
        raise ConfigError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return number


def parse_number(
    value: Any,
    what: str,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
) -> float:
    """A finite float (from a number or a string) with optional bounds.

    ``strict_low`` makes ``low`` exclusive. NaN and infinities are always
    rejected, whatever the bounds.
    """
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    number = float(number)
    bounds = (
        f"{'(' if strict_low else '['}{low:g}" if low is not None else "(-inf",
        f"{high:g}]" if high is not None else "inf)",
    )
    if (
        not math.isfinite(number)
        or (low is not None and (number < low or (strict_low and number == low)))
        or (high is not None and number > high)
    ):
        raise ConfigError(f"{what} must be a finite number in {', '.join(bounds)}, got {value!r}")
    return number


def parse_int_list(
    text: str | Sequence[int],
    what: str,
    *,
    low: int = 0,
    high: int = MAX_SEED,
    unique: bool = False,
) -> list[int]:
    """``"0,1,2"`` (or a list) -> ``[0, 1, 2]``; anything else raises :class:`ConfigError`.

    Every value must be an integer in ``[low, high]``; an empty list is an
    error (``--seeds ""`` is not seed 0), and with ``unique`` so is a value
    given twice.
    """
    if isinstance(text, str):
        parts: list[Any] = [p.strip() for p in text.split(",")]
        if parts == [""]:
            parts = []
        if any(not p for p in parts):
            raise ConfigError(f"{what}: empty entry in {text!r}")
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        raise ConfigError(f"{what}: expected a list of integers, got {text!r}")
    out: list[int] = []
    for part in parts:
        number: Any = part
        if isinstance(part, str):
            try:
                number = int(part)
            except ValueError:
                raise ConfigError(f"{what}: {part!r} is not an integer") from None
        elif isinstance(part, float) and math.isfinite(part) and part == int(part):
            number = int(part)
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"{what}: {part!r} is not an integer")
        if not low <= number <= high:
            raise ConfigError(f"{what}: {number} is out of range [{low}, {high}]")
        if unique and number in out:
            raise ConfigError(
                f"{what}: {number} is given more than once (a repeated value is the same "
                "run; list each once)"
            )
        out.append(number)
    if not out:
        raise ConfigError(f"{what}: empty list")
    return out


def parse_seeds(value: Any, what: str) -> list[int]:
    """Seeds: distinct integers in ``[0, MAX_SEED]`` (see the module docstring)."""
    return parse_int_list(value, what, low=0, high=MAX_SEED, unique=True)


def parse_models(items: str | Sequence[Any], where: str = "--models") -> list[dict[str, Any]]:
    """Parse ``"a,b:preset"`` or a TOML list of strings/tables into model dicts.

    Per-model ``epochs`` and ``seeds`` are validated as the top-level ones are.
    """
    if isinstance(items, str):
        items = [p.strip() for p in items.split(",") if p.strip()]
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of models, got {items!r}")
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
            if not isinstance(item["name"], str) or not item["name"]:
                raise ConfigError(f"{where}: model name must be a string, got {item['name']!r}")
            preset = item.get("preset")
            if preset is not None and (not isinstance(preset, str) or not preset):
                raise ConfigError(
                    f"{where}: preset of {item['name']!r} must be a string, got {preset!r}"
                )
            params = item.get("params", {})
            if not isinstance(params, dict):
                raise ConfigError(f"{where}: params of {item['name']!r} must be a table")
            entry = {**item, "preset": preset, "params": params}
            if "epochs" in item:
                entry["epochs"] = parse_int(
                    item["epochs"], f"{where}: epochs of {item['name']!r}", low=1, high=MAX_EPOCHS
                )
            if "seeds" in item:
                entry["seeds"] = parse_seeds(item["seeds"], f"{where}: seeds of {item['name']!r}")
            out.append(entry)
        else:
            raise ConfigError(f"{where}: expected a string or a table, got {item!r}")
    return out


def _string(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        kind = "a string" if empty else "a non-empty string"
        raise ConfigError(f"{where} must be {kind}, got {value!r}")
    return value


def build_experiment(
    options: dict[str, Any],
    *,
    source: str = CLI_SOURCE,
    overrides: dict[str, Any] | None = None,
    command: str = "run",
) -> Experiment:
    """Turn a dict of options (from TOML or the CLI) into an :class:`Experiment`.

    This is the one place where options are validated; nothing has run yet
    when it raises.

    Parameters
    ----------
    options : dict
        The experiment's keys (see the module docstring). Numbers may be given
        as strings, as the command line gives them.
    source : str
        Where ``options`` came from (a file name), quoted in every error;
        :data:`CLI_SOURCE` for ``rsbench run`` flags (errors then name the flag).
    overrides : dict, optional
        Values given on the command line next to an experiment file, by key of
        :data:`OVERRIDE_FLAGS` (``None`` values are ignored); they beat the
        file's values, and ``epochs`` beats per-model epochs too. Errors name
        the flag.

    Raises
    ------
    ConfigError
        An unknown key, a value of the wrong type or out of range, an option
        the dataset does not accept, or limits without isolated runs.
    """
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: expected a table of options, got {options!r}")
    top_keys, override_flags = _top_keys(), _override_flags()
    unknown = set(options) - top_keys
    replaced = sorted(unknown & {"tolerance_se", "tolerance_floor"})
    if replaced:
        raise ConfigError(
            f"{source}: {', '.join(replaced)} no longer exist: the regression gate is "
            "statistical now; set [gate] alpha, spread_se and margins instead (README, "
            "'Regression gate')"
        )
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(top_keys))}"
        )
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    bad = set(given) - set(override_flags)
    if bad:
        raise ValueError(f"overrides has unknown key(s) {sorted(bad)}")

    def where(key: str) -> str:
        if source == CLI_SOURCE:
            return "--" + key.replace("_", "-")
        return f"{source}: {key}"

    def get(key: str, default: Any, parse: Any) -> Any:
        # The file's value is checked even when a flag overrides it: a bad file
        # stays a bad file. Then the flag's value, named by the flag.
        value = default if key not in options else parse(options[key], where(key))
        if key in given:
            value = parse(given[key], override_flags[key])
        return value

    def optional_string(value: Any, at: str) -> str | None:
        return None if value is None else _string(value, at)

    def positive(value: Any, at: str) -> float:
        return parse_number(value, at, low=0, strict_low=True)

    if "models" not in options:
        raise ConfigError(f"{source}: 'models' is required")
    name = _string(options.get("name", "run"), where("name"))
    description = _string(options.get("description", ""), where("description"), empty=True)
    out = get("out", None, optional_string)
    models = parse_models(options["models"], where("models"))
    seeds = get("seeds", [0], parse_seeds)
    ks = parse_int_list(options.get("ks", [5, 10, 20]), where("ks"), low=1, high=MAX_K)
    epochs = None
    if "epochs" in options:
        epochs = parse_int(options["epochs"], where("epochs"), low=1, high=MAX_EPOCHS)
    forced_epochs = None
    if "epochs" in given:
        forced_epochs = parse_int(given["epochs"], OVERRIDE_FLAGS["epochs"], low=1, high=MAX_EPOCHS)
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
    resolved = []
    for ds in datasets:
        dataset = _string(ds.get("dataset", DEFAULT_DATASET), where("dataset"))
        try:
            split, min_rating = dataset_defaults(dataset)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
        split = _string(ds.get("split", split), where("split"))
        if "min_rating" in ds:
            min_rating = parse_number(
                ds["min_rating"], where("min_rating")
            )  # finite here; the dataset's own rating range is checked by check_options
        dataset_options = ds.get("options", {})
        if not isinstance(dataset_options, dict):
            raise ConfigError(f"{source}: dataset options must be a table, got {dataset_options!r}")
        from bench.datasets import check_options

        try:
            check_options(dataset, split, min_rating, dataset_options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
        resolved.append((dataset, split, min_rating, dataset_options))

    def thread_count(value: Any, at: str) -> int:
        return parse_int(value, at, low=1, high=MAX_THREADS)

    threads = get("threads", None, thread_count)
    forced_threads = None
    if "threads" in given:
        forced_threads = threads
    ties = options.get("ties", "expected")
    exclude = options.get("exclude", "train-positives")
    for key, value, allowed in (("ties", ties, TIES), ("exclude", exclude, EXCLUSIONS)):
        if value not in allowed:
            raise ConfigError(f"{where(key)} must be one of {', '.join(allowed)}, got {value!r}")
    specs = []
    try:
        for dataset, split, min_rating, dataset_options in resolved:
            for model in models:
                model_epochs = model.get("epochs", epochs)
                model_threads = threads
                if forced_threads is None and "threads" in model:
                    model_threads = thread_count(model["threads"], f"{where('models')}: threads")
                # --seeds beats the file's seeds, per-model ones included (as --epochs does).
                model_seeds = seeds if "seeds" in given else model.get("seeds", seeds)
                for seed in model_seeds:
                    specs.append(
                        RunSpec(
                            model=model["name"],
                            preset=model["preset"],
                            params=model["params"],
                            seed=seed,
                            epochs=forced_epochs if forced_epochs is not None else model_epochs,
                            dataset=dataset,
                            split=split,
                            min_rating=min_rating,
                            dataset_options=dataset_options,
                            ties=ties,
                            exclude=exclude,
                            ks=tuple(ks),
                            threads=model_threads,
                        )
                    )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None

    def number(key: str, default: float) -> float:
        return parse_number(options.get(key, default), f"{source}: {key}", low=0.0)

    timeout_s = get("timeout_s", None, positive)
    max_memory_mb = get("max_memory_mb", None, positive)
    isolate = get("isolate", True, _boolean)
    if not isolate and (timeout_s is not None or max_memory_mb is not None):
        raise ConfigError(
            f"{source}: timeout_s and max_memory_mb stop a run by killing its process, so "
            "they need isolated runs (drop isolate = false / --no-isolate)"
        )
    execution = _execution(options, given, get, source, command)
    return Experiment(
        name=name,
        specs=specs,
        out=out,
        description=description,
        fit_time_factor=number("fit_time_factor", 3.0),
        gate=_gate_settings(options.get("gate", {}), where("gate")),
        curves=get("curves", True, _boolean),
        isolate=isolate,
        timeout_s=timeout_s,
        max_memory_mb=max_memory_mb,
        execution=execution,
        source=source,
        raw=dict(options),
    )


def _gate_settings(value: Any, where: str) -> dict[str, Any]:
    """The ``[gate]`` table checked and completed with the registry's margins (manifest form)."""
    from bench.results.regress import GateSettings

    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table (alpha, spread_se, margins), got {value!r}")
    try:
        return GateSettings.parse(value, where=where).to_json()
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def _execution(options: dict, given: dict, get: Any, source: str, command: str) -> dict[str, Any]:
    """Executor options (file values, beaten by flags), checked by the executors' declarations."""
    from bench.execution.executors import EXECUTORS, ExecutorError, check_executor_options

    def choice(value: Any, at: str) -> str:
        if value not in EXECUTORS:
            raise ConfigError(f"{at} must be one of {', '.join(EXECUTORS)}, got {value!r}")
        return value

    def checked(option):
        def parse(value: Any, at: str) -> Any:
            try:
                return option.parse(value, at)
            except ExecutorError as exc:
                raise ConfigError(str(exc)) from None

        return parse

    executor = get("executor", "local", choice)
    values = {key: get(key, None, checked(option)) for key, option in executor_options().items()}
    if "executor" in given and given["executor"] != options.get("executor", "local"):
        # The file's options belong to the file's executor, not the flag's: only the
        # ones every executor takes (retries) carry over.
        common = set.intersection(*({o.key for o in cls.options} for cls in EXECUTORS.values()))
        values = {k: (v if k in given or k in common else None) for k, v in values.items()}
    try:
        return check_executor_options(executor, where=source, command=command, **values)
    except ExecutorError as exc:
        raise ConfigError(str(exc)) from None


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read a TOML experiment file; any invalid content raises :class:`ConfigError`.

    ``overrides`` are command-line values that beat the file's (see
    :func:`build_experiment`).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    return build_experiment(raw, source=str(path), overrides=overrides)
