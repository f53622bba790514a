"""rsbench from Python: run a benchmark and get its results as pandas DataFrames.

The command line (``rsbench run``) is a thin layer over :func:`run_experiment`;
notebooks and scripts call :func:`run`::

    import bench

    results = bench.run(["popularity", "itemknn", MyModel], seeds=[0, 1])
    results.runs        # one row per (model, seed): metrics, fit time, memory
    results.per_user    # one row per (run, user)
    results.curves      # one row per (run, epoch)

Models may be registry names (``"torch-bilinear:notebook"``), ``"module:Class"``
strings, :class:`models.base.Recommender` subclasses, or tables
``{"name": ..., "preset": ..., "params": {...}}`` (``"name"`` may be a class).

Isolation and notebooks: with ``isolate=True`` each run gets a fresh
``spawn``-ed process, which imports the model class by name. A class defined
in a notebook cell or a script (module ``__main__``) cannot be imported by
that process, so such models **run in-process** (the other models of the
same call stay isolated); this is logged. rsbench does not ship classes by
value (no cloudpickle): a class that needs isolation belongs in a module.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.datasets import DEFAULT_DATASET
from bench.interrupts import signal_name
from bench.registry import Registry, default_registry

__all__ = ["Results", "run", "run_experiment"]

log = logging.getLogger(__name__)

#: Called after every finished run with (result, runs done, runs to do, seconds so far).
RunCallback = Callable[[Any, int, int, float], None]


@dataclass
class Results:
    """What a benchmark produced: the three tidy tables and where they were written.

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per run (``runs.csv``): identity, status, metric means, timings.
    per_user : pandas.DataFrame
        One row per (run, evaluated user) (``per_user.parquet``).
    curves : pandas.DataFrame
        One row per (run, epoch) (``curves.csv``).
    manifest : dict
        The results folder's manifest (command, environment, specs, datasets).
    out : pathlib.Path or None
        The results folder (None when nothing was kept on disk).
    done, skipped, failed : int
        Runs executed now, skipped as already complete, and failed.
    """

    runs: pd.DataFrame
    per_user: pd.DataFrame
    curves: pd.DataFrame
    manifest: dict
    out: Path | None
    done: int = 0
    skipped: int = 0
    failed: int = 0

    def summary(self) -> pd.DataFrame:
        """Mean of the main metrics and fit time per label (successful runs only)."""
        ok = self.runs[self.runs["status"] == "ok"] if "status" in self.runs else self.runs
        columns = [c for c in ("auc", "precision@10", "ndcg@10", "fit_seconds") if c in ok]
        if ok.empty:
            return pd.DataFrame(columns=["label", "seeds", *columns])
        table = ok.groupby("label", sort=False)[columns].mean()
        table.insert(0, "seeds", ok.groupby("label", sort=False).size())
        return table.reset_index()


def _model_items(models: Any, registry: Registry) -> list[dict[str, Any]]:
    """Normalise ``models`` into ``{"name", "preset", "params"}`` dicts, registering classes."""
    from bench.config import parse_models

    if isinstance(models, (str, type, Mapping)):
        models = [models]
    items: list[Any] = []
    for item in models:
        if isinstance(item, type):
            item = {"name": item}
        if isinstance(item, Mapping) and isinstance(item.get("name"), type):
            item = {**item, "name": _register_object(item["name"], registry)}
        items.append(item)
    return parse_models(items, "models")


def _register_object(cls: type, registry: Registry) -> str:
    """Register a class object once; its name is the class name when free."""
    for entry in registry.entries():
        if entry.factory is cls:
            return entry.name
    name = cls.__name__ if cls.__name__ not in registry else None
    return registry.register_class(cls, name).name


def canonical_specs(specs: Iterable[Any], registry: Registry) -> list[Any]:
    """Specs with canonical model names (a bare name gets its default preset)."""
    out = []
    for spec in specs:
        model, preset = registry.canonical(spec.model, spec.preset)
        out.append(
            spec
            if (model, preset) == (spec.model, spec.preset)
            else replace(spec, model=model, preset=preset)
        )
    return out


def run(
    models: Any = None,
    *,
    config: str | Path | None = None,
    dataset: str = DEFAULT_DATASET,
    split: str | None = None,
    min_rating: float | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    epochs: int | None = None,
    ties: str = "expected",
    exclude: str = "train-positives",
    ks: Sequence[int] = (5, 10, 20),
    out: str | Path | None = None,
    report: bool = False,
    curves: bool = True,
    isolate: bool = False,
    registry: Registry | None = None,
    loader: Callable[..., Any] | None = None,
    progress: bool = True,
) -> Results:
    """Run models x seeds on a dataset and return the results as DataFrames.

    Parameters
    ----------
    models : str, type, dict or a list of them
        What to run (see the module docstring); ignored with ``config``.
    config : str or Path, optional
        A TOML suite (a path, or a packaged suite name such
        as ``"quick"``) instead of the options below.
    dataset, split, min_rating, dataset_options
        The data (split and threshold default to the dataset's own).
    seeds : sequence of int
        One run per model and seed.
    epochs : int, optional
        Overrides every model's ``epochs``.
    ties, exclude, ks
        Evaluation protocol (see ``rsbench run --help``).
    out : str or Path, optional
        Results folder to write (``runs.csv``, ``per_user.parquet``,
        ``curves.csv``, ``manifest.json``, ``rsbench.log``) exactly as the CLI
        does; completed runs found there are skipped. ``None``: a temporary
        folder, deleted before returning.
    report : bool
        Also write ``report.md`` / ``report.html`` into ``out``.
    curves : bool
        Evaluate after every epoch (learning curves).
    isolate : bool
        Each run in its own process (models defined in ``__main__`` still run here).
    registry : Registry, optional
        Default :func:`bench.registry.default_registry` (with plugins).
    loader : callable, optional
        Dataset loader (default :func:`bench.datasets.load_dataset`).
    progress : bool
        Show progress bars (``tqdm.auto``: widgets in Jupyter, text elsewhere).

    Returns
    -------
    Results
    """
    from bench import suites
    from bench.config import build_experiment, load_experiment

    registry = default_registry() if registry is None else registry
    if config is not None:
        experiment = load_experiment(suites.resolve(config))
        if epochs is not None:
            experiment.specs = [replace(s, epochs=epochs) for s in experiment.specs]
    else:
        if models is None:
            raise ValueError("give models (e.g. ['popularity', 'itemknn']) or config")
        options: dict[str, Any] = {
            "models": _model_items(models, registry),
            "seeds": list(seeds),
            "dataset": dataset,
            "ties": ties,
            "exclude": exclude,
            "ks": list(ks),
            "curves": curves,
            "isolate": isolate,
        }
        if dataset_options:
            options["dataset_options"] = dict(dataset_options)
        if split is not None:
            options["split"] = split
        if min_rating is not None:
            options["min_rating"] = min_rating
        if epochs is not None:
            options["epochs"] = epochs
        experiment = build_experiment(options, source="bench.run")
    if report and out is None:
        raise ValueError("report=True needs out= (the folder the report is written into)")
    experiment.curves = experiment.curves and curves
    experiment.isolate = experiment.isolate or isolate
    if out is None:
        with tempfile.TemporaryDirectory(prefix="rsbench-") as tmp:
            results = run_experiment(
                experiment, out=tmp, registry=registry, loader=loader, progress=progress
            )
            results.out = None
            return results
    results = run_experiment(
        experiment, out=out, registry=registry, loader=loader, progress=progress
    )
    if report:
        from bench.report import write_report

        write_report(results.out)
    return results


def run_experiment(
    experiment: Any,
    *,
    out: str | Path,
    registry: Registry | None = None,
    loader: Callable[..., Any] | None = None,
    progress: bool = True,
    command: str = "bench.run",
    on_result: RunCallback | None = None,
    log_file: bool = True,
    quiet_workers: bool = True,
    runner: Any = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Results:
    """Execute an :class:`~bench.config.Experiment` into the results folder ``out``.

    Validates every spec first (unknown names and impossible parameters raise
    ``ValueError`` before anything runs), skips runs already complete with the
    same parameters, writes each finished run at once (a crash loses nothing
    done), and returns the folder's tables.

    Parameters
    ----------
    experiment : Experiment
        From :func:`bench.config.build_experiment` or ``load_experiment``.
    out : str or Path
        Results folder.
    registry, loader
        As in :func:`run`.
    progress : bool
        Show the runs bar and the per-epoch bar.
    command : str
        Recorded in the manifest.
    on_result : callable, optional
        ``on_result(result, done, total, elapsed_seconds)`` after every run
        (the CLI prints its one line per run from it).
    log_file : bool
        Append every log record of the benchmark to ``out/rsbench.log``.
    quiet_workers : bool
        Isolated workers write their log records and their stdout/stderr
        (framework start-up noise included) to that log file, not to the
        terminal (the CLI's ``-v`` turns this off).
    runner : Runner, optional
        A :class:`~bench.runner.Runner` configured by the caller (its registry
        is then used); by default one is built from the experiment's
        ``curves`` and ``isolate``.
    manifest_extra : mapping, optional
        More fields for the manifest.

    Returns
    -------
    Results
    """
    from bench import runner as runner_module
    from bench.environment import environment
    from bench.executors import make_executor
    from bench.results import ResultStore, load_results, now_iso
    from bench.runner import Runner, once_if_deterministic
    from metrics.registry import METRICS

    if runner is None:
        registry = runner_module.default_registry() if registry is None else registry
        runner = Runner(
            registry,
            loader=loader,
            curves=experiment.curves,
            isolate=experiment.isolate,
            timeout_s=getattr(experiment, "timeout_s", None),
            max_memory_mb=getattr(experiment, "max_memory_mb", None),
            epoch_progress=(lambda total, desc: _bar(total, desc, position=1, leave=False))
            if progress
            else None,
        )
    registry = runner.registry
    execution = getattr(experiment, "execution", None) or {
        "executor": "local",
        "jobs": 1,
        "ray_address": None,
        "retries": 1,
    }
    # A deterministic model gives the same result for every seed: it runs once.
    specs = once_if_deterministic(canonical_specs(experiment.specs, registry), registry)
    out = Path(out)
    effective = {spec.run_id: runner.check(spec) for spec in specs}
    store = ResultStore(out)
    handler = _attach_log_file(out / LOG_NAME) if log_file else None
    if handler is not None and quiet_workers:
        runner.worker_log = str(out / LOG_NAME)
    try:
        # A completed run is skipped only if it was made with the parameters the
        # spec resolves to now (a changed preset or default must be measured again).
        stored = store.completed_params()
        done_ids = {rid for rid, params in stored.items() if effective.get(rid) in (None, params)}
        changed = sum(1 for s in specs if s.run_id in stored and s.run_id not in done_ids)
        if changed:
            log.warning(
                "%s: %d completed run(s) used other parameters than the registry now "
                "gives (a preset or default changed); redoing them",
                out,
                changed,
            )
        todo = [s for s in specs if s.run_id not in done_ids]
        skipped = len(specs) - len(todo)
        if skipped:
            log.info("%s: %d of %d runs already complete, skipping them", out, skipped, len(specs))
        store.write_manifest(
            {
                "command": command,
                "experiment": experiment.name,
                "experiment_source": experiment.source,
                "experiment_options": _jsonable_options(experiment.raw),
                "fit_time_factor": experiment.fit_time_factor,
                "gate": experiment.gate,
                "started_at": now_iso(),
                "finished_at": None,
                "status": "running",
                "isolate": runner.isolate,
                "timeout_s": runner.timeout_s,
                "max_memory_mb": runner.max_memory_mb,
                "execution": execution,
                "environment": environment(),
                "num_specs": len(specs),
                "specs": [dict(s.to_dict(), run_id=s.run_id) for s in specs],
                **dict(manifest_extra or {}),
            }
        )
        failed = 0
        datasets = dict(store.manifest.get("datasets", {}))
        bar = _bar(len(todo), "runs", enabled=None if progress else False)
        t0 = time.perf_counter()
        status = "error"
        by_id = {spec.run_id: spec for spec in todo}
        finished = 0

        def record(result) -> None:
            # Called by the executor once per run, in this thread: one store.add each.
            nonlocal failed, finished
            spec = by_id[result.row["run_id"]]
            bar.set_postfix_str(f"{spec.label} seed {spec.seed}")
            store.add(result)
            finished += 1
            if result.ok:
                data = runner.dataset(spec)
                datasets[spec.dataset_key()] = {
                    "sha256": data.sha256,
                    "source": data.source,
                    # split and validation rules, cut-off, k-core counts, file hashes
                    **json.loads(json.dumps(dict(data.facts), default=str)),
                }
                first = METRICS.select(result.row, headline=True)[0]
                log.info(
                    "%s seed %d  %s %.4f  fit %.2fs",
                    spec.label,
                    spec.seed,
                    first,
                    result.row[first],
                    result.row["fit_seconds"],
                )
            elif result.row.get("status") == "not-applicable":  # e.g. cold users, no features
                log.info("%s seed %d: %s", spec.label, spec.seed, result.row["error"])
            else:
                failed += 1
                log.error("%s seed %d FAILED: %s", spec.label, spec.seed, result.row["error"])
            bar.update(1)
            if on_result is not None:
                on_result(result, finished, len(todo), time.perf_counter() - t0)

        try:
            with make_executor(
                execution["executor"],
                runner,
                jobs=execution["jobs"],
                ray_address=execution["ray_address"],
                retries=execution["retries"],
            ) as executor:
                executor.run(todo, record)
            status = "complete"
        except KeyboardInterrupt as exc:
            status = f"interrupted by {signal_name(exc)}"
            log.warning(
                "%s: the run(s) in progress were abandoned (%s): not recorded, they run again "
                "on the next invocation",
                out,
                status,
            )
            raise
        finally:
            bar.close()
            store.update_manifest(
                finished_at=now_iso(),
                status=status,
                datasets=datasets,
                wall_seconds=time.perf_counter() - t0,
            )
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    tables = load_results(out)
    return Results(
        runs=tables["runs"],
        per_user=tables["per_user"],
        curves=tables["curves"],
        manifest=tables["manifest"],
        out=out,
        done=len(todo) - failed,
        skipped=skipped,
        failed=failed,
    )


#: The log file every results folder gets (INFO and up, warnings, worker noise).
LOG_NAME = "rsbench.log"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _attach_log_file(path: Path) -> logging.Handler:
    """Send every record (INFO and up) of this process to ``path`` while a benchmark runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler


def _jsonable_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment's options with class objects replaced by their ``module:Class`` names."""

    def convert(value: Any) -> Any:
        if isinstance(value, type):
            return f"{value.__module__}:{value.__qualname__}"
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(dict(raw))


def _bar(total: int, desc: str, *, position: int = 0, leave: bool = True, enabled=None):
    """A ``tqdm.auto`` bar (a widget in Jupyter); off on a non-interactive terminal."""
    import os
    import sys

    from tqdm.auto import tqdm

    if enabled is None:
        in_notebook = "ipykernel" in sys.modules
        enabled = in_notebook or (sys.stderr.isatty() and not os.environ.get("CI"))
    return tqdm(
        total=total,
        desc=desc,
        position=position,
        leave=leave,
        disable=not enabled,
        dynamic_ncols=True,
    )
