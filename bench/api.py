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

import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.datasets import DEFAULT_DATASET
from bench.execution.session import LOG_NAME, RunCallback, progress_bar
from bench.registry import Registry, default_registry

__all__ = ["LOG_NAME", "Results", "TuneResults", "run", "run_experiment", "tune"]

log = logging.getLogger(__name__)


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
        from bench.results.report import write_report

        write_report(results.out)
    return results


@dataclass
class TuneResults(Results):
    """What :func:`tune` produced: the final runs' tables, and the studies behind them.

    Attributes
    ----------
    studies : list of (Target, optuna.Study)
        One study per tuned model (see :mod:`bench.execution.tuning`).
    summary : pandas.DataFrame
        ``tuning_summary.csv``: per model, trials, budget given and used, best
        and default validation values, best parameters.
    """

    studies: list = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)


def tune(
    config: Any = "tuned",
    *,
    out: str | Path | None = None,
    phase: str = "all",
    registry: Registry | None = None,
    loader: Callable[..., Any] | None = None,
    progress: bool = True,
    command: str = "bench.tune",
    on_result: RunCallback | None = None,
) -> TuneResults:
    """Tune every model of a tuning suite on one equal budget, then test the best parameters.

    Parameters
    ----------
    config : TuneConfig, str or Path
        A :class:`~bench.execution.tuning.TuneConfig`, or a tuning suite (a
        packaged name such as ``"tuned"``, or the path of a TOML file).
    out : str or Path, optional
        Results folder (default: the suite's ``out``, else ``results/<name>``):
        the study database, ``trials.csv``, ``tuning_summary.csv`` and the final
        runs' tables.
    phase : {"all", "tune", "final"}
        Tune only (extra workers on a shared storage), final runs only, or both.
    registry, loader
        As in :func:`run`.
    progress : bool
        Show the final runs' bar.
    command : str
        Recorded in the manifest.
    on_result : callable, optional
        As in :func:`run_experiment`, for the final runs.

    Returns
    -------
    TuneResults
    """
    from bench import suites
    from bench.environment import environment
    from bench.execution.tuning import SUMMARY, TuneConfig, load_tune_config, redact
    from bench.execution.tuning import tune as tune_studies
    from bench.results import load_results

    if not isinstance(config, TuneConfig):
        config = load_tune_config(suites.resolve(config))
    out = Path(out or config.experiment.out or f"results/{config.experiment.name}")
    manifest = {
        "command": command,
        "experiment": config.experiment.name,
        "experiment_source": config.experiment.source,
        "experiment_options": _jsonable_options(
            {
                **config.raw,
                "tune": {
                    **config.raw.get("tune", {}),
                    **({"storage": redact(config.storage)} if config.storage else {}),
                },
            }
        ),
        "fit_time_factor": config.experiment.fit_time_factor,
        "gate": config.experiment.gate,
        "environment": environment(),
    }
    studies, (done, failed) = tune_studies(
        config,
        out,
        phase=phase,
        registry=registry,
        loader=loader,
        manifest=manifest,
        on_result=on_result,
        progress=progress,
    )
    # phase "tune" makes no runs: empty tables then.
    empty = {"runs": pd.DataFrame(), "per_user": pd.DataFrame(), "curves": pd.DataFrame()}
    tables = load_results(out) if phase != "tune" else {**empty, "manifest": {}}
    summary_path = out / SUMMARY
    return TuneResults(
        runs=tables["runs"],
        per_user=tables["per_user"],
        curves=tables["curves"],
        manifest=tables["manifest"],
        out=out,
        done=done,
        failed=failed,
        studies=studies,
        summary=pd.read_csv(summary_path, keep_default_na=False)
        if summary_path.exists()
        else pd.DataFrame(),
    )


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
    done), and returns the folder's tables (the loop is
    :func:`bench.execution.session.run_session`).

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
        A :class:`~bench.execution.runner.Runner` configured by the caller (its
        registry is then used); by default one is built from the experiment's
        ``curves``.
    manifest_extra : mapping, optional
        More fields for the manifest.

    Returns
    -------
    Results
    """
    from bench.environment import environment
    from bench.execution import Execution, Runner, once_if_deterministic, run_session
    from bench.results import load_results

    if runner is None:
        runner = Runner(
            registry,  # None: the runner's default registry (with plugins)
            loader=loader,
            curves=experiment.curves,
            epoch_progress=(lambda total, desc: progress_bar(total, desc, position=1, leave=False))
            if progress
            else None,
        )
    registry = runner.registry
    # A deterministic model gives the same result for every seed: it runs once.
    specs = once_if_deterministic(canonical_specs(experiment.specs, registry), registry)
    outcome = run_session(
        specs,
        out,
        runner=runner,
        execution=Execution.of(experiment),
        manifest={
            "command": command,
            "experiment": experiment.name,
            "experiment_source": experiment.source,
            "experiment_options": _jsonable_options(experiment.raw),
            "fit_time_factor": experiment.fit_time_factor,
            "gate": experiment.gate,
            "environment": environment(),
            **dict(manifest_extra or {}),
        },
        on_result=on_result,
        progress=progress,
        log_file=log_file,
        quiet_workers=quiet_workers,
    )
    tables = load_results(out)
    return Results(
        runs=tables["runs"],
        per_user=tables["per_user"],
        curves=tables["curves"],
        manifest=tables["manifest"],
        out=Path(out),
        done=outcome.done,
        skipped=outcome.skipped,
        failed=outcome.failed,
    )


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
