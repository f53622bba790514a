"""The runner: one run spec in this process: fit, time, evaluate every epoch, tidy results."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psutil
from threadpoolctl import threadpool_limits

from bench.datasets.dataset import Dataset, NotApplicableError
from bench.execution.spec import RunSpec
from bench.registry import Registry, default_registry
from bench.threads import thread_limits

__all__ = ["EpochHook", "PeakMemory", "RunResult", "Runner", "StopRun", "base_row"]

log = logging.getLogger(__name__)


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
    """The outcome of one run: a ``runs.csv`` row, per-user metrics and a learning curve.

    ``dataset`` holds the facts of the data the run read (content hash, source,
    split rule, counts; empty when the run failed before loading it), so that
    whoever records the result never loads the dataset again.
    """

    row: dict[str, Any]
    per_user: pd.DataFrame
    curve: pd.DataFrame
    dataset: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, spec: RunSpec, started: float, error: str) -> RunResult:
        """The result of a run that ended with ``error`` before it produced anything."""
        row = {**base_row(spec, started), "status": "failed", "error": error}
        return cls({**row, "finished_at": _iso(time.time())}, pd.DataFrame(), pd.DataFrame())

    @property
    def ok(self) -> bool:
        """True when the run finished without error."""
        return self.row.get("status") == "ok"


ProgressFactory = Callable[[int, str], Any]
#: ``epoch_hook(epoch, fit_seconds, evaluate)``: called after each epoch but the last,
#: outside the fit time; ``evaluate()`` returns the metric means on the run's test side.
EpochHook = Callable[[int, float, Callable[[], pd.Series]], None]


class StopRun(Exception):
    """Raised by an epoch hook to end a run early on purpose (e.g. a pruned tuning trial).

    The run is recorded with status ``"stopped"`` and the message as its error.
    """


class Runner:
    """Runs one :class:`RunSpec` in this process: fit, time, evaluate, and record tidy results.

    Nothing else: where a run executes (a child process, a Ray worker), its
    limits, retries and parallelism belong to the executors
    (:mod:`bench.execution.executors`), which call :meth:`run`.

    Parameters
    ----------
    registry : Registry, optional
        Where model names are looked up (default: :func:`default_registry`).
    loader : callable, optional
        ``loader(dataset, split, min_rating, **options) -> Dataset``
        (default: :func:`bench.datasets.load_dataset`).
    block_size : int
        Users per scoring block during evaluation.
    curves : bool
        Evaluate after every epoch (learning curves), outside the fit time and
        with one BLAS thread, so that no BLAS worker left spinning after an
        evaluation slows the next epoch. The final evaluation is always done.
    epoch_progress : callable, optional
        ``epoch_progress(total, description)`` returning a tqdm-like object
        with ``update()`` and ``close()``.
    epoch_hook : callable, optional
        See :data:`EpochHook` (tuning reports per-epoch validation values and
        prunes through it; it may raise :class:`StopRun`).
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        loader: Callable[..., Dataset] | None = None,
        block_size: int = 1024,
        curves: bool = True,
        epoch_progress: ProgressFactory | None = None,
        epoch_hook: EpochHook | None = None,
    ) -> None:
        self.epoch_hook = epoch_hook
        self.registry = registry if registry is not None else default_registry()
        self.loader = loader
        self.block_size = block_size
        self.curves = curves
        self.epoch_progress = epoch_progress
        self._datasets: dict[str, Dataset] = {}

    def settings(self) -> Runner:
        """A copy with the same settings and no loaded data, without the driver-side hooks.

        What an executor sends to another process: the progress bar and the
        epoch hook stay with the driver.
        """
        return Runner(
            self.registry, loader=self.loader, block_size=self.block_size, curves=self.curves
        )

    def dataset(self, spec: RunSpec) -> Dataset:
        """Load (once per process) the dataset of ``spec``."""
        key = spec.dataset_key()
        if key not in self._datasets:
            loader = self.loader
            if loader is None:
                from bench.datasets import load_dataset as loader
            options = dict(spec.dataset_options)
            if spec.stage != "test":  # loaders without stages keep working
                options["stage"] = spec.stage
            self._datasets[key] = loader(spec.dataset, spec.split, spec.min_rating, **options)
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
            from bench.datasets import check_options

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

    def run(self, spec: RunSpec, data: Dataset | None = None) -> RunResult:
        """Execute one spec here; any exception is caught and recorded as a failed run.

        ``data`` is the spec's dataset when the caller has it already (a Ray
        worker gets it from the object store); otherwise it is loaded (once per
        :class:`Runner` and dataset).
        """
        base = base_row(spec, time.time())
        facts: dict[str, Any] = {}
        try:
            with thread_limits(spec.threads):
                row, per_user, curve, facts = self._execute(spec, data)
        except StopRun as exc:  # ended on purpose by the epoch hook, not a failure
            log.info("run %s (%s seed %d) stopped: %s", spec.run_id, spec.label, spec.seed, exc)
            row = {"status": "stopped", "error": str(exc)}
            per_user, curve = pd.DataFrame(), pd.DataFrame()
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
        return RunResult(row, per_user, curve, facts)

    def _execute(
        self, spec: RunSpec, data: Dataset | None
    ) -> tuple[dict, pd.DataFrame, pd.DataFrame, dict]:
        from metrics import Evaluator, summarize, warm_up

        # numba's one-time load of the metrics kernels, before any clock starts (and
        # numba's own set-up, which a compiled model step would otherwise pay in its fit).
        warm_up()
        if data is None:
            data = self.dataset(spec)
        fit_seq, _ = np.random.SeedSequence(spec.seed).spawn(2)
        fit_rng = np.random.default_rng(fit_seq)

        model = self.registry.make(spec.model, spec.preset, **dict(spec.params))
        if spec.epochs is not None:
            model.set_params(epochs=spec.epochs)
        params = model.get_params()
        epochs = int(params.get("epochs", 1))
        # The model's own one-time load (its compiled kernels), before the fit clock.
        t_warm = time.perf_counter()
        model.warm_up()
        log.debug("%s warm-up: %.3f s", spec.label, time.perf_counter() - t_warm)
        features = None
        if model.uses_features and (data.user_features or data.item_features):
            features = (data.user_features, data.item_features)
        train_csr = data.train.to_bool_csr()
        test, cold_counts = data.evaluation_test(*model.scores_cold())
        evaluator = Evaluator(
            test.to_bool_csr(),
            data.exclusion(spec.exclude),
            ks=spec.ks,
            ties=spec.ties,
            block_size=self.block_size,
            # Share of users with each item among their train positives (popularity@k).
            item_popularity=np.asarray(train_csr.sum(axis=0)).ravel() / max(data.num_users, 1),
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
            if self.epoch_hook is not None and epoch < epochs:
                self.epoch_hook(epoch, state["fit"], evaluate_now)
            state["resume"] = time.perf_counter()

        def evaluate_now() -> pd.Series:
            with threadpool_limits(limits=1, user_api="blas"):
                return summarize(evaluator.evaluate(model))

        with PeakMemory() as memory:
            # The sampler's set-up is training cost (seconds at ML-20M size): timed in fit.
            t_setup = time.perf_counter()
            sampler = model.make_sampler(data.train)
            sampler_setup_seconds = time.perf_counter() - t_setup
            state["fit"] += sampler_setup_seconds
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
        # User activity (train positives) lets the report break every metric down by it.
        per_user.insert(1, "activity", np.diff(train_csr.indptr)[per_user["user"].to_numpy()])
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
            "sampler_setup_seconds": sampler_setup_seconds,
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
            "uses_sampler": bool(model.uses_sampler),
            "deterministic": bool(model.deterministic),
            # The report's reference baseline: a fact of the class, not of its name.
            "reference": bool(type(model).reference),
            "notes": model.notes,
            "fit_scaling": getattr(model, "fit_scaling", ""),
        }
        facts = {
            "sha256": data.sha256,
            "source": data.source,
            # split and validation rules, cut-off, k-core counts, file hashes
            **json.loads(json.dumps(dict(data.facts), default=str)),
        }
        return row, per_user.reset_index(drop=True), pd.DataFrame(curve_rows), facts


def base_row(spec: RunSpec, started: float) -> dict[str, Any]:
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


def _curve_row(epoch: int, fit_cum: float, epoch_s: float, means: pd.Series) -> dict:
    from metrics.registry import METRICS

    row = {"epoch": epoch, "fit_seconds": fit_cum, "epoch_seconds": epoch_s}
    for name in METRICS.select(means.index, curve=True):
        row[name] = float(means[name])
    return row


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))
