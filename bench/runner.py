"""Run specs and the runner: fit, time, evaluate every epoch, and record tidy results."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psutil
from threadpoolctl import threadpool_limits

from bench.dataset import Dataset, NotApplicableError
from bench.registry import Registry, default_registry

__all__ = ["EXCLUSIONS", "TIES", "PeakMemory", "RunResult", "RunSpec", "Runner", "expand_specs"]

log = logging.getLogger(__name__)

TIES = ("expected", "pessimistic")
EXCLUSIONS = ("train-positives", "train-all", "none")
CURVE_METRICS = ("auc", "precision@10", "recall@10", "map@10", "ndcg@10", "mrr")


def _jsonable(value: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} must be JSON-serialisable: {exc}") from None


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
        Root of every random stream of the run (model, sampler, frameworks).
    epochs : int or None
        Overrides the model's own ``epochs`` (``None`` keeps it).
    dataset, split, min_rating, dataset_options
        What :func:`bench.data.load_dataset` is called with.
    ties : {"expected", "pessimistic"}
        Tie policy of every metric.
    exclude : {"train-positives", "train-all", "none"}
        Items removed from each user's candidates.
    ks : tuple of int
        Cut-offs for the @k metrics.
    """

    model: str
    preset: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int | None = None
    dataset: str = "ml-100k"
    split: str = "ua"
    min_rating: float | None = 4.0
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    ties: str = "expected"
    exclude: str = "train-positives"
    ks: tuple[int, ...] = (5, 10, 20)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.epochs is not None and (
            isinstance(self.epochs, bool)
            or not isinstance(self.epochs, (int, np.integer))
            or self.epochs < 1
        ):
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if self.ties not in TIES:
            raise ValueError(f"ties must be one of {', '.join(TIES)}, got {self.ties!r}")
        if self.exclude not in EXCLUSIONS:
            raise ValueError(
                f"exclude must be one of {', '.join(EXCLUSIONS)}, got {self.exclude!r}"
            )
        ks = tuple(self.ks)
        if not ks or any(
            isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks
        ):
            raise ValueError(f"ks must be integers >= 1, got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(sorted({int(k) for k in ks})))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "params", _jsonable(dict(self.params), "params"))
        object.__setattr__(
            self, "dataset_options", _jsonable(dict(self.dataset_options), "dataset_options")
        )
        if self.min_rating is not None:
            object.__setattr__(self, "min_rating", float(self.min_rating))

    @property
    def label(self) -> str:
        """``model`` or ``model:preset``, the name used in tables."""
        return self.model if self.preset is None else f"{self.model}:{self.preset}"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types."""
        out = asdict(self)
        out["ks"] = list(self.ks)
        return out

    @property
    def run_id(self) -> str:
        """A 16-hex-digit SHA-256 prefix of the canonical JSON of the spec."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def dataset_key(self) -> str:
        """Identity of the dataset this spec runs on (runs sharing it share the load)."""
        return json.dumps(
            [self.dataset, self.split, self.min_rating, dict(self.dataset_options)], sort_keys=True
        )


class PeakMemory:
    """Peak resident memory of this process while the context is open (sampled every 10 ms).

    ``peak_mb`` is the highest RSS seen, ``start_mb`` the RSS on entry; a
    sampling thread is used because ``ru_maxrss`` only ever grows over the
    whole process life and so cannot isolate one run.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start_mb = self.peak_mb = 0.0

    def _rss_mb(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


@dataclass
class RunResult:
    """The outcome of one run: a ``runs.csv`` row, per-user metrics and a learning curve."""

    row: dict[str, Any]
    per_user: pd.DataFrame
    curve: pd.DataFrame

    @property
    def ok(self) -> bool:
        """True when the run finished without error."""
        return self.row.get("status") == "ok"


ProgressFactory = Callable[[int, str], Any]


class Runner:
    """Executes :class:`RunSpec` objects.

    Parameters
    ----------
    registry : Registry, optional
        Where model names are looked up (default: :func:`default_registry`).
    loader : callable, optional
        ``loader(dataset, split, min_rating, **options) -> Dataset``
        (default: :func:`bench.data.load_dataset`).
    block_size : int
        Users per scoring block during evaluation.
    curves : bool
        Evaluate after every epoch (learning curves), outside the fit time and
        with one BLAS thread, so that no BLAS worker left spinning after an
        evaluation slows the next epoch. The final evaluation is always done.
    epoch_progress : callable, optional
        ``epoch_progress(total, description)`` returning a tqdm-like object
        with ``update()`` and ``close()``.
    isolate : bool
        Run each spec in a fresh child process (``spawn``): peak memory is
        then that run's alone (framework, data and model, nothing left over
        from earlier runs), and a crash of native code (segfault, OOM kill)
        is recorded as a failed run instead of ending the benchmark. Costs
        the child's start-up and imports (seconds), which are not timed.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        loader: Callable[..., Dataset] | None = None,
        block_size: int = 1024,
        curves: bool = True,
        epoch_progress: ProgressFactory | None = None,
        isolate: bool = False,
    ) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.loader = loader
        self.block_size = block_size
        self.curves = curves
        self.epoch_progress = epoch_progress
        self.isolate = isolate
        self._datasets: dict[str, Dataset] = {}

    def dataset(self, spec: RunSpec) -> Dataset:
        """Load (once per process) the dataset of ``spec``."""
        key = spec.dataset_key()
        if key not in self._datasets:
            loader = self.loader
            if loader is None:
                from bench.data import load_dataset as loader
            self._datasets[key] = loader(
                spec.dataset, spec.split, spec.min_rating, **dict(spec.dataset_options)
            )
        return self._datasets[key]

    def check(self, spec: RunSpec) -> str | None:
        """Validate ``spec`` before anything runs; return its effective parameters.

        Raises ``ValueError`` for an unknown model, preset, dataset or split and
        for impossible parameters. The return value is the JSON of the model's
        parameters after defaults, preset, overrides and ``epochs`` (what the
        ``params`` column of ``runs.csv`` records), or ``None`` when the model's
        framework is not installed.
        """
        if self.loader is None:
            from bench.data import check_options

            check_options(spec.dataset, spec.split, spec.min_rating, dict(spec.dataset_options))
        self.registry.params(spec.model, spec.preset, **dict(spec.params))
        if not self.registry.get(spec.model).available:
            return None
        model = self.registry.make(spec.model, spec.preset, **dict(spec.params))
        if spec.epochs is not None:
            if "epochs" not in model.get_params():
                raise ValueError(f"model {spec.label!r} has no epochs to override")
            model.set_params(epochs=spec.epochs)
        model.validate_params()
        return json.dumps(model.get_params(), sort_keys=True, default=str)

    def run(self, spec: RunSpec) -> RunResult:
        """Execute one spec; any exception is caught and recorded as a failed run."""
        if self.isolate:
            return self._run_isolated(spec)
        return self._run_here(spec)

    def _run_isolated(self, spec: RunSpec) -> RunResult:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        args = (
            sender,
            self.registry,
            self.loader,
            self.block_size,
            self.curves,
            spec,
            logging.getLogger().level,
        )
        process = ctx.Process(target=_child_main, args=args, daemon=True)
        started = time.time()
        process.start()
        sender.close()
        try:
            result = receiver.recv()
        except EOFError:
            process.join()
            result = _failed_result(
                spec,
                started,
                f"WorkerDied: the run's process ended with exit code "
                f"{process.exitcode} before reporting (crash or out of memory)",
            )
        except BaseException:
            process.terminate()
            process.join()
            raise
        finally:
            receiver.close()
        # The result is in; a child stuck in interpreter shutdown must not hang the suite.
        process.join(timeout=60)
        if process.is_alive():
            log.warning("run %s: worker did not exit after reporting; terminating it", spec.run_id)
            process.terminate()
            process.join()
        return result

    def _run_here(self, spec: RunSpec) -> RunResult:
        base = _base_row(spec, time.time())
        try:
            row, per_user, curve = self._execute(spec)
        except NotApplicableError as exc:  # e.g. a cold-start split the model cannot score
            log.info("run %s (%s seed %d): %s", spec.run_id, spec.label, spec.seed, exc)
            row = {"status": "not-applicable", "error": str(exc)}
            per_user, curve = pd.DataFrame(), pd.DataFrame()
        except Exception as exc:  # a failed model must not stop the others
            log.error("run %s (%s seed %d) failed: %s", spec.run_id, spec.label, spec.seed, exc)
            log.debug("%s", traceback.format_exc())
            row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            per_user, curve = pd.DataFrame(), pd.DataFrame()
        else:
            row["status"] = "ok"
            row["error"] = ""
        row = {**base, **row, "finished_at": _iso(time.time())}
        for frame in (per_user, curve):
            if not frame.empty:
                frame.insert(0, "run_id", spec.run_id)
                frame.insert(1, "label", spec.label)
                frame.insert(2, "seed", spec.seed)
        return RunResult(row, per_user, curve)

    def _execute(self, spec: RunSpec) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
        from metrics import Evaluator, summarize

        data = self.dataset(spec)
        fit_seq, _ = np.random.SeedSequence(spec.seed).spawn(2)
        fit_rng = np.random.default_rng(fit_seq)

        model = self.registry.make(spec.model, spec.preset, **dict(spec.params))
        if spec.epochs is not None:
            model.set_params(epochs=spec.epochs)
        params = model.get_params()
        epochs = int(params.get("epochs", 1))
        features = None
        if model.uses_features and (data.user_features or data.item_features):
            features = (data.user_features, data.item_features)
        test, cold_counts = data.evaluation_test(*model.scores_cold())
        evaluator = Evaluator(
            test.to_bool_csr(),
            data.exclusion(spec.exclude),
            ks=spec.ks,
            ties=spec.ties,
            block_size=self.block_size,
        )

        curve_rows: list[dict] = []
        epoch_seconds: list[float] = []
        state = {"fit": 0.0, "resume": 0.0}
        bar = None
        if self.epoch_progress is not None and epochs > 1:
            bar = self.epoch_progress(epochs, f"{spec.label} seed {spec.seed}")

        def on_epoch(epoch: int) -> None:
            now = time.perf_counter()
            elapsed = now - state["resume"]
            state["fit"] += elapsed
            epoch_seconds.append(elapsed)
            if bar is not None:
                bar.update(1)
            if self.curves and model.iterative and epoch < epochs:
                # One BLAS thread: OpenBLAS's idle workers spin for a while after
                # a multi-threaded call and would steal the next epoch's cores
                # (+25 ms on a 33 ms keras-bilinear:fast epoch, measured).
                with threadpool_limits(limits=1, user_api="blas"):
                    means = summarize(evaluator.evaluate(model))
                curve_rows.append(_curve_row(epoch, state["fit"], elapsed, means))
            state["resume"] = time.perf_counter()

        with PeakMemory() as memory:
            sampler = model.make_sampler(data.train)
            state["resume"] = time.perf_counter()
            try:
                model.fit(
                    data.train,
                    sampler=sampler,
                    epochs=epochs,
                    rng=fit_rng,
                    on_epoch=on_epoch,
                    features=features,
                )
            finally:
                if bar is not None:
                    bar.close()
            tail = time.perf_counter() - state["resume"]
            state["fit"] += tail
            if epoch_seconds:
                epoch_seconds[-1] += tail
            t_eval = time.perf_counter()
            per_user = evaluator.evaluate(model)
            eval_seconds = time.perf_counter() - t_eval
        if per_user.empty:
            raise ValueError("evaluation produced no users (no test positives left?)")
        means = summarize(per_user)
        metric_values = {name: float(value) for name, value in means.items()}
        if not all(math.isfinite(v) for v in metric_values.values()):
            raise FloatingPointError(f"non-finite metric means: {metric_values}")
        curve_rows.append(
            _curve_row(
                epochs, state["fit"], epoch_seconds[-1] if epoch_seconds else state["fit"], means
            )
        )
        row = {
            "epochs": epochs,
            "fit_seconds": state["fit"],
            "seconds_per_epoch": state["fit"] / epochs,
            "eval_seconds": eval_seconds,
            "peak_rss_mb": memory.peak_mb,
            "rss_growth_mb": memory.peak_mb - memory.start_mb,
            "num_users": data.num_users,
            "num_items": data.num_items,
            "train_positives": len(data.train),
            "test_positives": len(data.test),
            "eval_users": int(per_user.shape[0]),
            "dataset_sha256": data.sha256,
            **cold_counts,
            **metric_values,
            "params": json.dumps(params, sort_keys=True, default=str),
            "notes": model.notes,
        }
        return row, per_user.reset_index(drop=True), pd.DataFrame(curve_rows)


def _child_main(conn, registry, loader, block_size, curves, spec, level) -> None:
    """Entry point of an isolated run's process: run ``spec`` and send back the result."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    runner = Runner(registry, loader=loader, block_size=block_size, curves=curves)
    try:
        conn.send(runner.run(spec))
    except KeyboardInterrupt:  # the parent sees EOF and handles the interrupt
        pass
    finally:
        conn.close()


def _base_row(spec: RunSpec, started: float) -> dict[str, Any]:
    """The identity columns every ``runs.csv`` row starts with."""
    return {
        "run_id": spec.run_id,
        "label": spec.label,
        "model": spec.model,
        "preset": spec.preset or "",
        "seed": spec.seed,
        "dataset": spec.dataset,
        "split": spec.split,
        "min_rating": spec.min_rating,
        "ties": spec.ties,
        "exclude": spec.exclude,
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
        "started_at": _iso(started),
    }


def _failed_result(spec: RunSpec, started: float, error: str) -> RunResult:
    row = {
        **_base_row(spec, started),
        "status": "failed",
        "error": error,
        "finished_at": _iso(time.time()),
    }
    return RunResult(row, pd.DataFrame(), pd.DataFrame())


def _curve_row(epoch: int, fit_cum: float, epoch_s: float, means: pd.Series) -> dict:
    row = {"epoch": epoch, "fit_seconds": fit_cum, "epoch_seconds": epoch_s}
    for name in CURVE_METRICS:
        if name in means:
            row[name] = float(means[name])
    return row


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def expand_specs(
    models: Sequence[tuple[str, str | None, Mapping[str, Any]]],
    seeds: Sequence[int],
    **common: Any,
) -> list[RunSpec]:
    """The cross product of models x seeds, as specs sharing ``common`` fields."""
    return [
        RunSpec(model=name, preset=preset, params=dict(params), seed=seed, **common)
        for name, preset, params in models
        for seed in seeds
    ]
