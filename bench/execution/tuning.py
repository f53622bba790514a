"""Equal-budget hyperparameter tuning (``rsbench tune``): Optuna studies on a validation split.

For every model of an experiment, one Optuna study searches the model's
declared space (:meth:`bench.registry.Registry.space`, overridable in TOML)
with the *same budget* for every model, counted in trials or in seconds of fit
plus validation evaluation summed over trials. Trials are ordinary
:class:`~bench.execution.spec.RunSpec` objects with ``stage="validation"`` run by the
normal :class:`~bench.execution.runner.Runner`: they train on train' and are scored by
the metrics module on the validation rows, so the test rows are never loaded
while tuning. Then each model's best parameters are refitted on the whole
train split and evaluated on test with the experiment's seeds (next to the
untuned defaults), through the runner and the result store.

Accounting (everything is read back from the study's storage, never counted
locally, so several worker processes or machines can share one study and the
budget stays per model):

* a trial *counts* when rsbench finished it: ``complete``, ``pruned``, or
  ``failed`` (the model raised; user attribute ``error``);
* a trial that was running when its worker died (a kill, a lost machine) is
  ``interrupted``: marked failed in the storage, listed in ``trials.csv``, not
  counted; only the trial in flight is lost;
* ``budget_trials``: no trial starts once counted plus running trials reach the
  budget (a trial that finds itself beyond it after a race is dropped before it
  runs, state ``skipped``), so the study ends with exactly that many;
* ``budget_seconds``: a trial's seconds are its worker's wall time (storage
  reads, the sampler's set-up and suggestion, the model's construction, the
  trial's data preparation, fit and validation evaluations; only the one-time
  per-process warm-ups, :func:`_warm_up`, are left out). No trial starts once
  the counted seconds reach the budget, and the trial that reaches it is
  stopped at the epoch boundary where it is spent: it is ``complete``, with the
  validation value of its last completed epoch and ``epochs`` = that epoch
  (``stopped_by_budget``), so the used seconds exceed the budget by less than
  one epoch. A fit with no epoch boundary left (closed-form models, or its last
  epoch) finishes: the summary shows the overshoot, and says when one trial
  alone took more than the whole budget. A trial whose set-up alone used what
  was left is ``pruned`` before its fit (``epochs_run`` 0). With several
  workers, each one stops its own trial at the budget as counted when that
  trial started.

Reproducibility: the TPE sampler is re-created before each trial with a seed
derived from the study seed and the number of trials counted so far, so one
worker with a trial budget gets the same trials and the same best parameters,
even across a kill and a resume. A seconds budget or several workers cannot be
reproducible; the summary says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import ConfigError, Experiment, build_experiment
from bench.datasets.dataset import Dataset
from bench.execution.runner import Runner, StopRun
from bench.execution.spec import RunSpec
from bench.execution.tune_space import SearchSpace
from bench.io import atomic_write_csv
from bench.registry import Registry, default_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "PRUNERS",
    "SUMMARY",
    "TRIALS",
    "TUNE_KEYS",
    "Target",
    "TuneConfig",
    "build_tune_config",
    "load_tune_config",
    "run_final",
    "run_studies",
    "study_worker",
    "trials_table",
    "tune",
]

log = logging.getLogger(__name__)

TRIALS = "trials.csv"
SUMMARY = "tuning_summary.csv"
STUDY_DB = "study.db"
PRUNERS = ("median", "successive-halving", "none")
PHASES = ("all", "tune", "final")
TUNE_KEYS = {
    "budget_trials",
    "budget_seconds",
    "objective",
    "seed",
    "pruner",
    "validation_seed",
    "storage",
    "startup_trials",
    "compare_default",
}
#: States of ``trials.csv``; the first three count against the budget.
COUNTED = ("complete", "pruned", "failed")
TUNED_SUFFIX = " (tuned)"
# Heartbeats let a worker on another machine see that a trial's worker died.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is an optional extra
        raise ImportError(
            "rsbench tune needs optuna and sqlalchemy (pip install 'rsbench[tune]')"
        ) from None
    return optuna


# -- configuration -------------------------------------------------------------------
@dataclass
class TuneConfig:
    """What ``rsbench tune`` does: an experiment (models x seeds) plus the tuning options.

    Attributes
    ----------
    experiment : Experiment
        Its specs are the default (untuned) test runs; their seeds are the
        seeds of the tuned test runs.
    budget_trials, budget_seconds
        Exactly one is set: trials per model, or seconds per model summed over its
        trials (each trial's wall time: fit, validation evaluation and its overhead).
    objective : str
        Validation metric to maximise (a column of :func:`metrics.metric_columns`).
    seed : int
        Seed of the sampler and of every trial's run.
    pruner : {"median", "successive-halving", "none"}
        Early stopping of iterative models from per-epoch validation values.
    validation_seed : int
        Seed of the validation carve (``load_dataset(..., validation_seed=)``).
    storage : str or None
        SQLAlchemy URL of the Optuna storage (default: SQLite in the results folder).
    startup_trials : int
        Trials sampled at random before TPE models the history (Optuna's ``n_startup_trials``).
    compare_default : bool
        Also run the untuned defaults on test (the default-versus-tuned table).
    spaces : dict
        TOML overrides of search-space entries, by :func:`_model_key`.
    """

    experiment: Experiment
    budget_trials: int | None = None
    budget_seconds: float | None = None
    objective: str = "ndcg@10"
    seed: int = 0
    pruner: str = "median"
    validation_seed: int = 0
    storage: str | None = None
    startup_trials: int = 10
    compare_default: bool = True
    spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def budget_kind(self) -> str:
        """``"trials"`` or ``"seconds"``."""
        return "trials" if self.budget_trials is not None else "seconds"

    @property
    def budget(self) -> float:
        """The budget per model in its unit."""
        return float(self.budget_trials if self.budget_trials is not None else self.budget_seconds)


def _model_key(name: str, preset: str | None, params: Mapping[str, Any]) -> str:
    return json.dumps([name, preset, dict(params)], sort_keys=True)


def build_tune_config(options: Mapping[str, Any], *, source: str = "<command line>") -> TuneConfig:
    """Turn options (a TOML file's content, or the CLI's) into a :class:`TuneConfig`.

    ``options`` holds the keys of an ``rsbench run`` experiment (see
    :mod:`bench.config`), a ``tune`` table with :data:`TUNE_KEYS`, and model
    tables may add ``space`` (entries replacing the registry's, by parameter).

    Raises
    ------
    ConfigError
        Unknown or invalid keys, no budget or two budgets, a bad objective.
    """
    options = dict(options)
    tune_opts = options.pop("tune", {})
    if not isinstance(tune_opts, Mapping):
        raise ConfigError(f"{source}: 'tune' must be a table, got {tune_opts!r}")
    unknown = sorted(set(tune_opts) - TUNE_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} in [tune]; allowed: {sorted(TUNE_KEYS)}"
        )
    spaces: dict[str, dict[str, Any]] = {}
    models = options.get("models")
    if isinstance(models, list):
        stripped = []
        for item in models:
            if isinstance(item, dict) and "space" in item:
                item = dict(item)
                space = item.pop("space")
                if not isinstance(space, dict):
                    raise ConfigError(f"{source}: space of {item.get('name')!r} must be a table")
                key = _model_key(item.get("name", ""), item.get("preset"), item.get("params", {}))
                spaces[key] = space
            stripped.append(item)
        options["models"] = stripped
    experiment = build_experiment(options, source=source, command="tune")

    def integer(key: str, default: int | None, low: int) -> int | None:
        value = tune_opts.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{source}: tune.{key} must be an integer >= {low}, got {value!r}")
        return value

    budget_trials = integer("budget_trials", None, 1)
    budget_seconds = tune_opts.get("budget_seconds")
    if budget_seconds is not None and (
        isinstance(budget_seconds, bool)
        or not isinstance(budget_seconds, (int, float))
        or not math.isfinite(budget_seconds)
        or budget_seconds <= 0
    ):
        raise ConfigError(
            f"{source}: tune.budget_seconds must be a number > 0, got {budget_seconds!r}"
        )
    if (budget_trials is None) == (budget_seconds is None):
        raise ConfigError(
            f"{source}: give exactly one of tune.budget_trials and tune.budget_seconds "
            "(the same budget for every model)"
        )
    from metrics import metric_columns

    ks = experiment.specs[0].ks if experiment.specs else (5, 10, 20)
    objective = tune_opts.get("objective", "ndcg@10")
    allowed = metric_columns(ks)
    if objective not in allowed:
        raise ConfigError(
            f"{source}: tune.objective {objective!r} is not a metric of this experiment; "
            f"choose one of {', '.join(allowed)}"
        )
    pruner = tune_opts.get("pruner", "median")
    if pruner not in PRUNERS:
        raise ConfigError(
            f"{source}: tune.pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}"
        )
    storage = tune_opts.get("storage")
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise ConfigError(
            f"{source}: tune.storage must be an SQLAlchemy URL such as "
            f"sqlite:///study.db, got {storage!r}"
        )
    compare_default = tune_opts.get("compare_default", True)
    if not isinstance(compare_default, bool):
        raise ConfigError(f"{source}: tune.compare_default must be true or false")
    first_seed = experiment.specs[0].seed if experiment.specs else 0
    return TuneConfig(
        experiment=experiment,
        budget_trials=budget_trials,
        budget_seconds=None if budget_seconds is None else float(budget_seconds),
        objective=objective,
        seed=integer("seed", first_seed, 0),
        pruner=pruner,
        validation_seed=integer("validation_seed", 0, 0),
        storage=storage,
        startup_trials=integer("startup_trials", 10, 0),
        compare_default=compare_default,
        spaces=spaces,
        raw={**options, "tune": dict(tune_opts)},
    )


def load_tune_config(path: str | Path) -> TuneConfig:
    """Read a TOML tuning file (see the shipped suite ``bench/suites/tuned.toml``)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return build_tune_config(raw, source=str(path))


# -- one model's study ---------------------------------------------------------------
@dataclass
class Target:
    """One model configuration to tune, with the test specs its result is used for.

    Attributes
    ----------
    label : str
        The model's table label (``name`` or ``name:preset``).
    base : RunSpec
        Trial template: validation stage, the tuning seed.
    fixed : dict
        The model's full parameters before tuning (defaults, preset, overrides).
    space : SearchSpace
        What the study searches (parameters fixed in the experiment removed).
    final_specs : list of RunSpec
        The default test runs (one per seed).
    study_name : str
        Name of the study in the storage (label plus a hash of its identity).
    identity : dict
        Everything that defines the study (model, data, objective, seed, space...).
    """

    label: str
    base: RunSpec
    fixed: dict[str, Any]
    space: SearchSpace
    final_specs: list[RunSpec]
    study_name: str
    identity: dict[str, Any]

    def default_values(self) -> dict[str, Any]:
        """The tuned parameters' values before tuning: the first trial."""
        return self.space.active_values(self.fixed)

    def trial_spec(self, values: Mapping[str, Any]) -> RunSpec:
        """The validation run of a trial with tuned values ``values``."""
        return _with_values(self.base, values)

    def tuned_specs(self, values: Mapping[str, Any]) -> list[RunSpec]:
        """The test runs (every seed) of the tuned values ``values``."""
        return [_with_values(s, values) for s in self.final_specs]


def _with_values(spec: RunSpec, values: Mapping[str, Any]) -> RunSpec:
    """``spec`` with parameter ``values``; ``epochs`` replaces the spec's own ``epochs``
    when the experiment set it (a trial stopped at the budget validated fewer)."""
    values = dict(values)
    if spec.epochs is not None and "epochs" in values:
        spec = replace(spec, epochs=int(values.pop("epochs")))
    return replace(spec, params={**dict(spec.params), **values})


def build_targets(config: TuneConfig, registry: Registry | None = None) -> list[Target]:
    """One :class:`Target` per distinct model configuration of the experiment.

    Raises
    ------
    ValueError
        An unavailable model, a bad space, or a preset outside its space.
    """
    registry = registry if registry is not None else default_registry()
    groups: dict[str, list[RunSpec]] = {}
    for spec in config.experiment.specs:
        groups.setdefault(spec.setting_key, []).append(spec)
    targets = []
    for specs in groups.values():
        first = specs[0]
        where = f"model {first.label!r}"
        entry = registry.get(first.model)
        if not entry.available:
            hint = f" (pip install 'rsbench[{entry.extra}]')" if entry.extra else ""
            raise ValueError(f"{where} needs {', '.join(entry.missing())}{hint}")
        model = registry.make(first.model, first.preset, **dict(first.params))
        if first.epochs is not None:
            model.set_params(epochs=first.epochs)
        model.validate_params()
        fixed = model.get_params()
        declared = registry.space(first.model, first.preset)
        declared.update(config.spaces.get(_model_key(first.model, first.preset, first.params), {}))
        # What the experiment fixes explicitly is not tuned.
        for name in list(first.params) + (["epochs"] if first.epochs is not None else []):
            declared.pop(name, None)
        space = SearchSpace(declared, where)
        unknown = sorted(set(space.names()) - set(fixed))
        if unknown:
            raise ValueError(f"{where}: search space names unknown parameter(s) {unknown}")
        space.check_values(fixed, f"its {'preset ' + first.preset if first.preset else 'default'}")
        options = {**dict(first.dataset_options), "validation_seed": config.validation_seed}
        base = replace(first, seed=config.seed, stage="validation", dataset_options=options)
        identity = {
            "model": first.model,
            "preset": first.preset,
            "params": dict(first.params),
            "epochs": first.epochs,
            "dataset": first.dataset,
            "split": first.split,
            "min_rating": first.min_rating,
            "dataset_options": options,
            "ties": first.ties,
            "exclude": first.exclude,
            "ks": list(first.ks),
            "objective": config.objective,
            "seed": config.seed,
            "pruner": config.pruner,
            "startup_trials": config.startup_trials,
            "space": space.to_dict(),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        targets.append(
            Target(
                label=first.label,
                base=base,
                fixed=fixed,
                space=space,
                final_specs=specs,
                study_name=f"{first.label}@{first.dataset}-{first.split}-{digest}",
                identity=identity,
            )
        )
    return targets


# -- storage and the state of trials ---------------------------------------------------
def default_storage_url(out: str | Path) -> str:
    """``sqlite:///<out>/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(out) / STUDY_DB).resolve()}"


def redact(url: str) -> str:
    """The storage URL without its password (for manifests and logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL fails later with its own error
        return url


def open_storage(url: str):
    """An Optuna ``RDBStorage`` on ``url`` with heartbeats (stale trials of dead workers)."""
    optuna = _optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for its lock instead of failing.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS, **kwargs
                )
            if url.startswith("sqlite"):
                _begin_immediate(storage.engine)
            return storage
        except SQLAlchemyError as exc:
            # Workers that start together race to create the schema of a new storage
            # (a unique-constraint error for the loser): the schema is there on retry.
            if attempt == 5:
                raise
            log.info("storage %s not ready (%s); retrying", redact(url), type(exc).__name__)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _begin_immediate(engine: Any) -> None:
    """Make every transaction on a SQLite ``engine`` take the write lock when it begins.

    pysqlite starts a transaction only at the first write, so Optuna's read-then-write
    steps interleave across processes: two workers popping an enqueued trial both read
    it WAITING, both set it RUNNING and both run it, and the second ``tell`` fails with
    "Cannot tell a COMPLETE trial" (optuna/optuna#4002, #4621: SQLite ignores
    ``SELECT ... FOR UPDATE``). ``BEGIN IMMEDIATE`` serialises those steps; other
    workers wait for the lock (the 60 s timeout). This is SQLAlchemy's recipe for
    serializable pysqlite transactions.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners (schema set-up): closed


def _worker_id() -> str:
    import psutil

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.3f}"


def _worker_alive(worker: str | None) -> bool:
    """False only for a worker on this host whose process is gone (others: heartbeats)."""
    import psutil

    if not worker:
        return True
    host, _, rest = worker.partition(":")
    pid_text, _, created = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        process = psutil.Process(int(pid_text))
        return f"{process.create_time():.3f}" == created and process.status() != "zombie"
    except (psutil.NoSuchProcess, ValueError):
        return False


def trial_state(trial: Any) -> str:
    """``complete``/``pruned``/``failed``/``interrupted``/``skipped``/``running``/``waiting``."""
    from optuna.trial import TrialState

    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    if trial.state == TrialState.FAIL:
        if "skipped" in attrs:
            return "skipped"
        return "failed" if "error" in attrs else "interrupted"
    if trial.state == TrialState.RUNNING:
        return "running"
    return "waiting"


def _seconds(trial: Any) -> float:
    value = trial.user_attrs.get("seconds")
    return float(value) if value is not None else 0.0


@dataclass
class Usage:
    """Where one study stands (read from storage)."""

    counted: int
    seconds: float
    running: int
    waiting: int
    has_default: bool
    params_seen: set[str]


def _params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)


def usage(study: Any, *, reap: bool = True) -> Usage:
    """Count a study's trials from its storage; running trials of dead local workers are
    marked failed first (``interrupted``: they do not count)."""
    optuna = _optuna()
    if reap:
        # Trials of workers elsewhere whose heartbeat stopped (Optuna's own check).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    if reap:
        for t in trials:
            if t.state == optuna.trial.TrialState.RUNNING and not _worker_alive(
                t.user_attrs.get("worker")
            ):
                log.warning(
                    "study %s: trial %d was running in a worker that is gone (%s); "
                    "marking it interrupted",
                    study.study_name,
                    t.number,
                    t.user_attrs.get("worker"),
                )
                with contextlib.suppress(Exception):  # another worker may have done it
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        trials = study.get_trials(deepcopy=False)
    states = [trial_state(t) for t in trials]
    live = [t for t, s in zip(trials, states) if s in (*COUNTED, "running", "waiting")]
    return Usage(
        counted=sum(s in COUNTED for s in states),
        seconds=sum(_seconds(t) for t, s in zip(trials, states) if s in COUNTED),
        running=states.count("running"),
        waiting=states.count("waiting"),
        has_default=any(t.user_attrs.get("default") for t in live),
        params_seen={
            _params_key(t.system_attrs.get("fixed_params", t.params))
            for t in live
            if trial_state(t) != "running" or t.params
        },
    )


def _make_pruner(name: str):
    optuna = _optuna()
    if name == "median":
        # Never before 3 finished trials, nor before epoch 2 (epoch 1 says little).
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)
    return optuna.pruners.NopPruner()


def _sampler_seed(seed: int, counted: int, running: int) -> int:
    return int(np.random.SeedSequence([seed, counted, running]).generate_state(1)[0])


def open_study(target: Target, storage: Any, config: TuneConfig):
    """Create or load ``target``'s study; a stored study must have the same identity."""
    optuna = _optuna()
    study = optuna.create_study(
        study_name=target.study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(seed=config.seed),  # replaced per trial
        pruner=_make_pruner(config.pruner),
    )
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", target.identity)
    elif stored != json.loads(json.dumps(target.identity)):
        raise ValueError(
            f"study {target.study_name!r} in the storage was made for another configuration"
        )
    return study


# -- trials ----------------------------------------------------------------------------
class _Skip(Exception):
    """A trial that found the budget spent when it started (dropped before running)."""


class _TrialFailed(Exception):
    """The model failed in this trial (counted against the budget)."""


def _report_epochs(epoch: int) -> bool:
    # Powers of two: every trial reports at the same steps (what pruners compare), and
    # a 400-epoch trial pays for 9 validation evaluations, not 400.
    return epoch & (epoch - 1) == 0


class _EpochReporter:
    """The runner's epoch hook during tuning: report validation values, prune, stop at the
    budget, time it all.

    With a seconds budget (:meth:`reset` ``budget=``), a trial is stopped at the first
    epoch boundary where the study's counted seconds (``spent`` before the trial, plus
    the trial's wall time since ``clock``, plus one validation evaluation) reach the
    budget: the model is evaluated as it stands, and that value is the trial's
    (:attr:`stopped_at`, :attr:`stopped_value`). With the evaluation and the storing of
    the trial estimated from the last ones (:attr:`reserve`), the trial that crosses the
    budget overshoots it by less than one epoch, up to the error of those estimates.
    """

    def __init__(self, objective: str, prune: bool) -> None:
        self.objective = objective
        self.prune = prune
        self.trial: Any = None
        # What stopping costs, from the last ones: a validation evaluation (this
        # model's), and storing the trial (set by the objective; the same storage).
        self.eval_estimate = 0.0
        self.reserve = 0.0
        self.reset(None)

    def reset(
        self,
        trial: Any,
        *,
        clock: float | None = None,
        spent: float = 0.0,
        budget: float | None = None,
    ) -> None:
        """Start a trial: ``clock`` is its ``perf_counter`` start, ``spent`` the seconds
        counted before it, ``budget`` the seconds budget (None: no stop at the budget)."""
        self.trial = trial
        self.eval_seconds = 0.0
        self.fit_seconds = 0.0
        self.pruned_at: int | None = None
        self.stopped_at: int | None = None
        self.stopped_value: float | None = None
        self.clock = time.perf_counter() if clock is None else clock
        self.spent = spent
        self.budget = budget

    def _evaluate(self, evaluate: Callable[[], pd.Series]) -> float:
        started = time.perf_counter()
        value = float(evaluate()[self.objective])
        self.eval_estimate = time.perf_counter() - started
        self.eval_seconds += self.eval_estimate
        return value

    def __call__(self, epoch: int, fit_seconds: float, evaluate: Callable[[], pd.Series]) -> None:
        self.fit_seconds = fit_seconds
        if self.trial is None:
            return
        value = None
        if self.prune and _report_epochs(epoch):
            value = self._evaluate(evaluate)
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                self.pruned_at = epoch
                raise StopRun(f"pruned at epoch {epoch} ({self.objective} {value:.4f})")
        if self.budget is None:
            return
        used = self.spent + (time.perf_counter() - self.clock) + self.reserve
        if used + (0.0 if value is not None else self.eval_estimate) >= self.budget:
            if value is None:
                value = self._evaluate(evaluate)
            self.stopped_at, self.stopped_value = epoch, value
            raise StopRun(
                f"budget of {self.budget:g} s spent at epoch {epoch} ({self.objective} {value:.4f})"
            )


@dataclass
class _Clock:
    """When the trial being run began (``perf_counter``), and when the last one ended.

    A trial's seconds are its worker's wall time from the start of its loop turn in
    :func:`run_study` (reading the storage, the sampler's set-up and suggestion, the
    model's construction, the trial's data preparation, fit and evaluations, storing its
    attributes) to the moment its ``seconds`` are stored; what follows (Optuna storing
    its state) is carried into the next trial.
    """

    start: float = 0.0
    end: float | None = None


def _planned_epochs(target: Target, spec: RunSpec) -> int | None:
    if spec.epochs is not None:
        return int(spec.epochs)
    epochs = {**target.fixed, **dict(spec.params)}.get("epochs")
    return int(epochs) if epochs is not None else None


def _objective(
    target: Target,
    config: TuneConfig,
    study: Any,
    runner: Runner,
    reporter: _EpochReporter,
    clock: _Clock,
):
    worker = _worker_id()

    def objective(trial: Any) -> float:
        try:
            return run_trial(trial)
        finally:
            clock.end = time.perf_counter()

    def run_trial(trial: Any) -> float:
        trial.set_user_attr("worker", worker)
        trials = study.get_trials(deepcopy=False)
        states = {t.number: trial_state(t) for t in trials}
        seconds_spent = 0.0
        if config.budget_kind == "trials":
            ahead = sum(
                1 for n, s in states.items() if n < trial.number and s in (*COUNTED, "running")
            )
            spent = ahead >= config.budget
        else:
            seconds_spent = sum(_seconds(t) for t in trials if states[t.number] in COUNTED)
            spent = seconds_spent >= config.budget
        if spent:
            trial.set_user_attr("skipped", "budget spent when the trial started")
            raise _Skip("budget spent")
        values = target.space.suggest(trial, target.fixed)
        spec = target.trial_spec(values)
        trial.set_user_attr("seed", spec.seed)
        trial.set_user_attr("run_id", spec.run_id)
        seconds_budget = config.budget if config.budget_kind == "seconds" else None
        if seconds_budget is not None:
            trial.set_user_attr("budget_left", seconds_budget - seconds_spent)
            if seconds_spent + time.perf_counter() - clock.start >= seconds_budget:
                # The trial's own set-up used what was left: no fit to start or stop.
                record(
                    trial, fit_seconds=0.0, eval_seconds=0.0, epochs_run=0, stopped_by_budget=True
                )
                raise _optuna().TrialPruned("budget spent before the fit began")
        reporter.reset(trial, clock=clock.start, spent=seconds_spent, budget=seconds_budget)
        try:
            result = runner.run(spec)
        finally:
            reporter.trial = None
        row = result.row
        stopped = row.get("status") == "stopped"
        if stopped and reporter.pruned_at is not None:
            record(
                trial,
                fit_seconds=reporter.fit_seconds,
                eval_seconds=reporter.eval_seconds,
                epochs_run=reporter.pruned_at,
            )
            raise _optuna().TrialPruned(row.get("error", ""))
        if stopped and reporter.stopped_at is not None:
            # Stopped at the budget: complete, with the value and epochs it validated
            # (best_values and trials.csv give epochs = stopped_at, so a winner is
            # refitted with the epochs that were validated).
            record(
                trial,
                fit_seconds=reporter.fit_seconds,
                eval_seconds=reporter.eval_seconds,
                epochs_run=reporter.stopped_at,
                epochs_planned=_planned_epochs(target, spec),
                stopped_by_budget=True,
            )
            return float(reporter.stopped_value)
        if not result.ok:
            # The row has no timings: the trial's wall time is what it cost.
            record(trial, error=str(row.get("error", "unknown error"))[:2000])
            raise _TrialFailed(row.get("error", ""))
        seconds = record(
            trial,
            fit_seconds=float(row["fit_seconds"]),
            eval_seconds=float(row["eval_seconds"]) + reporter.eval_seconds,
            epochs_run=int(row["epochs"]),
        )
        if seconds_budget is not None and seconds > seconds_budget:
            log.warning(
                "%s trial %d took %.1f s, more than the whole budget of %g s "
                "(its fit had no epoch boundary to stop at)",
                target.label,
                trial.number,
                seconds,
                seconds_budget,
            )
        return float(row[config.objective])

    def record(trial: Any, **attrs: Any) -> float:
        """Store a finished trial's attributes, then ``seconds``: its wall time so far."""
        started = time.perf_counter()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        seconds = time.perf_counter() - clock.start
        trial.set_user_attr("seconds", seconds)
        reporter.reserve = time.perf_counter() - started
        return seconds

    return objective


def validated_params(trial: Any) -> dict[str, Any]:
    """A trial's parameters as validated: a trial stopped at the budget ran ``epochs_run``."""
    params = dict(trial.params)
    if trial.user_attrs.get("stopped_by_budget") and trial_state(trial) == "complete":
        params["epochs"] = int(trial.user_attrs["epochs_run"])
    return params


def _next_grid_point(target: Target, seen: set[str], seed: int) -> dict[str, Any] | None:
    points = list(target.space.grid(target.fixed))
    order = np.random.default_rng(seed).permutation(len(points))
    for i in order:
        if _params_key(points[i]) not in seen:
            return points[i]
    return None


def _warm_up(target: Target, runner: Runner) -> None:
    """Once per process and model, before any trial's clock: the runner's own warm-ups.

    The metrics' and the model's compiled kernels, its framework's import and the
    (cached) validation dataset would otherwise be charged to whichever trial comes
    first in a process, the runner leaves them out of fit time for the same reason.
    A failure here is left to the first trial to record.
    """
    try:
        from metrics import warm_up

        warm_up()
        runner.dataset(target.base)
        runner.registry.make(target.base.model, target.base.preset, **target.fixed).warm_up()
    except Exception as exc:  # the trial that hits it records it
        log.debug("%s: warm-up failed (%s); its first trial will say why", target.label, exc)


def run_study(
    target: Target, config: TuneConfig, storage: Any, runner: Runner, reporter: _EpochReporter
) -> Any:
    """Run ``target``'s trials until its budget is spent (shared with other workers).

    Returns
    -------
    optuna.Study
    """
    optuna = _optuna()
    study = open_study(target, storage, config)
    size = target.space.size(target.fixed)
    _warm_up(target, runner)
    reporter.eval_estimate = 0.0  # another model's evaluation says nothing of this one's
    clock = _Clock()
    objective = _objective(target, config, study, runner, reporter, clock)
    while True:
        # Each trial's clock starts here, or where the previous trial's objective ended.
        clock.start = clock.end if clock.end is not None else time.perf_counter()
        clock.end = None
        now = usage(study)
        if config.budget_kind == "trials":
            if now.counted + now.running >= config.budget:
                break
        elif now.seconds >= config.budget:
            break
        if not now.has_default:
            study.enqueue_trial(target.default_values(), user_attrs={"default": True})
        elif math.isfinite(size) and (config.budget_kind == "seconds" or size <= config.budget):
            # A finite space smaller than the budget: enumerate it, each point once.
            point = _next_grid_point(target, now.params_seen, config.seed)
            if point is None:
                if now.running == 0:
                    log.info("%s: all %d points of its space are done", target.label, size)
                    break
                time.sleep(1.0)  # another worker holds the last points
                continue
            if now.waiting == 0:
                study.enqueue_trial(point)
        study.sampler = optuna.samplers.TPESampler(
            seed=_sampler_seed(config.seed, now.counted, now.running),
            n_startup_trials=config.startup_trials,
            constant_liar=True,
        )
        study.optimize(objective, n_trials=1, catch=(_Skip, _TrialFailed), gc_after_trial=False)
        last = study.get_trials(deepcopy=False)[-1]
        log.info(
            "%s trial %d: %s %s (%.2fs)",
            target.label,
            last.number,
            trial_state(last),
            f"{config.objective} {last.value:.4f}" if trial_state(last) == "complete" else "",
            _seconds(last),
        )
    return study


def wait_idle(study: Any, label: str, poll: float = 2.0) -> None:
    """Wait until no trial of ``study`` runs (other workers finishing theirs)."""
    announced = 0.0
    while (now := usage(study)).running:
        if time.monotonic() - announced > 30:
            log.info("%s: waiting for %d trial(s) of other workers", label, now.running)
            announced = time.monotonic()
        time.sleep(poll)


# -- tables ------------------------------------------------------------------------------
def trials_table(studies: Sequence[tuple[Target, Any]]) -> pd.DataFrame:
    """One row per trial of each study (``trials.csv``); skipped trials are left out.

    ``seconds`` is what the trial counted against a seconds budget (its wall time):
    ``fit_seconds + eval_seconds + overhead_seconds``. ``budget_left`` is the
    seconds budget left when it started; a trial ``stopped_by_budget`` ran
    ``epochs_run`` of its ``epochs_planned`` epochs, and ``params`` holds the
    epochs it validated.
    """
    rows = []
    for target, study in studies:
        for t in study.get_trials(deepcopy=False):
            state = trial_state(t)
            if state in ("skipped", "waiting"):
                continue
            attrs = t.user_attrs
            rows.append(
                {
                    "model": target.label,
                    "study": target.study_name,
                    "trial": t.number,
                    "state": state,
                    "value": t.value if state == "complete" else np.nan,
                    "seconds": attrs.get("seconds", np.nan),
                    "fit_seconds": attrs.get("fit_seconds", np.nan),
                    "eval_seconds": attrs.get("eval_seconds", np.nan),
                    "epochs_run": attrs.get("epochs_run", np.nan),
                    "params": json.dumps(validated_params(t), sort_keys=True, default=str),
                    "default": bool(attrs.get("default", False)),
                    "seed": attrs.get("seed", np.nan),
                    "worker": attrs.get("worker", ""),
                    "started": t.datetime_start.isoformat() if t.datetime_start else "",
                    "finished": t.datetime_complete.isoformat() if t.datetime_complete else "",
                    "error": attrs.get("error", ""),
                    "overhead_seconds": attrs.get("seconds", np.nan)
                    - attrs.get("fit_seconds", np.nan)
                    - attrs.get("eval_seconds", np.nan),
                    "budget_left": attrs.get("budget_left", np.nan),
                    "stopped_by_budget": bool(attrs.get("stopped_by_budget", False)),
                    "epochs_planned": attrs.get("epochs_planned", np.nan),
                }
            )
    columns = [
        "model",
        "study",
        "trial",
        "state",
        "value",
        "seconds",
        "fit_seconds",
        "eval_seconds",
        "epochs_run",
        "params",
        "default",
        "seed",
        "worker",
        "started",
        "finished",
        "error",
        "overhead_seconds",
        "budget_left",
        "stopped_by_budget",
        "epochs_planned",
    ]
    return pd.DataFrame(rows, columns=columns)


def _write_tables(out: Path, config: TuneConfig, studies: Sequence[tuple[Target, Any]]) -> None:
    from bench.results.tuning import summary_table

    trials = trials_table(studies)
    atomic_write_csv(out / TRIALS, trials)
    sizes = {t.label: t.space.size(t.fixed) for t, _ in studies}
    summary = summary_table(trials, config.budget_kind, config.budget, sizes)
    atomic_write_csv(out / SUMMARY, summary)


def best_values(study: Any) -> tuple[dict[str, Any], float, int] | None:
    """``(params, value, trial number)`` of the best complete trial, or None."""
    complete = [t for t in study.get_trials(deepcopy=False) if trial_state(t) == "complete"]
    if not complete:
        return None
    best = max(complete, key=lambda t: (t.value, -t.number))
    return validated_params(best), float(best.value), best.number


# -- the two phases --------------------------------------------------------------------
def run_studies(
    config: TuneConfig,
    out: str | Path,
    *,
    registry: Registry | None = None,
    loader: Callable[..., Dataset] | None = None,
    targets: Sequence[Target] | None = None,
) -> list[tuple[Target, Any]]:
    """Tune every model until its budget is spent; write ``trials.csv`` and the summary.

    Only validation-stage datasets are loaded (see :func:`bench.datasets.load_dataset`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    registry = registry if registry is not None else default_registry()
    targets = list(targets) if targets is not None else build_targets(config, registry)
    storage = open_storage(config.storage or default_storage_url(out))
    reporter = _EpochReporter(config.objective, prune=config.pruner != "none")
    runner = Runner(registry, loader=loader, curves=False, epoch_hook=reporter)
    studies = []
    for target in targets:
        log.info(
            "tuning %s: %s budget %g, space %s",
            target.label,
            config.budget_kind,
            config.budget,
            ", ".join(target.space.names()) or "(empty)",
        )
        studies.append((target, run_study(target, config, storage, runner, reporter)))
        _write_tables(out, config, studies)
    return studies


def run_final(
    config: TuneConfig,
    out: str | Path,
    studies: Sequence[tuple[Target, Any]],
    *,
    registry: Registry | None = None,
    loader: Callable[..., Dataset] | None = None,
    manifest: Mapping[str, Any] | None = None,
    on_result: Callable[..., None] | None = None,
    progress: bool = False,
    log_file: bool = True,
) -> tuple[int, int]:
    """Refit each model's best parameters on train and evaluate on test, every seed.

    The default runs (untuned) come too when ``config.compare_default``. The runs
    go through the session loop (:func:`bench.execution.session.run_session`) on
    the experiment's executor; tuned rows are labelled ``"<label> (tuned)"`` with
    ``tuned=True`` and their ``study``.

    Returns
    -------
    (done, failed) : tuple of int
    """
    from bench.execution.session import Execution, run_session
    from bench.results import ResultStore

    out = Path(out)
    registry = registry if registry is not None else default_registry()
    planned: list[tuple[RunSpec, str | None]] = []
    for target, study in studies:
        wait_idle(study, target.label)
        best = best_values(study)
        if config.compare_default:
            planned.extend((s, None) for s in target.final_specs)
        if best is None:
            log.error("%s: no complete trial, nothing to retrain", target.label)
            continue
        defaults = {s.run_id for s in target.final_specs} if config.compare_default else set()
        tuned = [s for s in target.tuned_specs(best[0]) if s.run_id not in defaults]
        if len(tuned) < len(target.final_specs):
            # Nothing was tuned (an empty space): the tuned run is the default run.
            log.info(
                "%s: the tuned parameters are the defaults; its default runs stand", target.label
            )
        planned.extend((s, target.study_name) for s in tuned)
    store = ResultStore(out)
    tuned_now = {s.run_id for s, study in planned if study}
    if not store.runs.empty and "tuned" in store.runs:
        stale = store.runs[
            store.runs["tuned"].astype(str).str.lower().eq("true")
            & ~store.runs["run_id"].astype(str).isin(tuned_now)
        ]
        if not stale.empty:
            raise ValueError(
                f"{out}: holds tuned runs of other best parameters "
                f"({', '.join(sorted(set(stale['label'].astype(str))))}); the studies changed "
                "(a larger budget?): write the new results to another folder (--out)"
            )
    # Tuned runs are labelled "<label> (tuned)" and carry their study; default runs not.
    annotations = {
        spec.run_id: (
            {"label": spec.label + TUNED_SUFFIX, "tuned": True, "study": study}
            if study
            else {"tuned": False, "study": ""}
        )
        for spec, study in planned
    }
    outcome = run_session(
        [spec for spec, _ in planned],
        out,
        runner=Runner(registry, loader=loader, curves=config.experiment.curves),
        execution=Execution.of(config.experiment),
        manifest=dict(manifest or {}),
        annotations=annotations,
        on_result=on_result,
        progress=progress,
        log_file=log_file,
    )
    return outcome.done, outcome.failed


def study_worker(index: int, config: TuneConfig, out: str) -> int:
    """One study worker (``index``) of an executor: tune every model until its budget is spent.

    The budget of each model is counted in the shared study storage, so it stays
    equal whatever the number of workers (:meth:`bench.execution.executors.Executor.map_workers`
    runs ``n`` of these, in processes or as Ray tasks). Returns the trials that
    this worker finished.
    """
    studies = run_studies(config, out)
    worker = _worker_id()
    return sum(
        1
        for _, study in studies
        for trial in study.get_trials(deepcopy=False)
        if trial.user_attrs.get("worker") == worker and trial_state(trial) != "running"
    )


def tune(
    config: TuneConfig,
    out: str | Path,
    *,
    phase: str = "all",
    registry: Registry | None = None,
    loader: Callable[..., Dataset] | None = None,
    manifest: Mapping[str, Any] | None = None,
    on_result: Callable[..., None] | None = None,
    progress: bool = False,
) -> tuple[list[tuple[Target, Any]], tuple[int, int]]:
    """Tune (``phase`` "tune"), retrain and test (``"final"``), or both (``"all"``).

    On an executor other than ``local`` the tuning is done by study workers
    (:func:`study_worker`) that the executor runs against the shared study
    storage, where each model's budget is counted; the final runs follow here,
    through the session loop on the same executor. ``"final"`` only reads the
    studies (it waits for trials other workers are running); extra workers on a
    shared study run ``"tune"``.

    Returns
    -------
    studies : list of (Target, optuna.Study)
    (done, failed) : the final runs (``(0, 0)`` for ``phase="tune"``)
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    registry = registry if registry is not None else default_registry()
    targets = build_targets(config, registry)
    execution = config.experiment.execution
    tune_now = phase in ("all", "tune")
    if tune_now and execution["executor"] == "local":
        # Here, in this process (run_studies writes the trial tables as it goes).
        studies = run_studies(config, out, registry=registry, loader=loader, targets=targets)
    else:
        if tune_now:
            from bench.execution.executors import make_executor, options_for

            workers = execution["jobs"]  # study workers: --jobs of them, on process or Ray
            options = options_for(execution["executor"], dict(execution), "tune")
            runner = Runner(curves=False)
            with make_executor(
                execution["executor"], runner, command="tune", **options
            ) as executor:
                executor.map_workers(study_worker, workers, config, str(out))
            log.info("tuning done by %d worker(s) on %s", workers, execution["executor"])
        storage = open_storage(config.storage or default_storage_url(out))
        studies = [(t, open_study(t, storage, config)) for t in targets]
        _write_tables(Path(out), config, studies)
    if phase == "tune":
        return studies, (0, 0)
    probe = Runner(registry, loader=loader, curves=False)
    rules = {
        t.label: probe.dataset(t.base).summary().get("validation_rule", "") for t, _ in studies
    }
    tuning = {
        "validation_rule": "; ".join(sorted(set(rules.values()))),
        "storage": redact(config.storage or default_storage_url(out)),
        "budget_kind": config.budget_kind,
        "budget": config.budget,
        "objective": config.objective,
        "seed": config.seed,
        "pruner": config.pruner,
        "validation_seed": config.validation_seed,
        "startup_trials": config.startup_trials,
        "studies": {t.label: t.study_name for t, _ in studies},
        "spaces": {t.label: t.space.to_dict() for t, _ in studies},
    }
    final = run_final(
        config,
        out,
        studies,
        registry=registry,
        loader=loader,
        manifest={**dict(manifest or {}), "tuning": tuning},
        on_result=on_result,
        progress=progress,
    )
    return studies, final
