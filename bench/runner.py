"""Run specs and the runner: fit, time, evaluate every epoch, and record tidy results."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
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

from bench.datasets import DEFAULT_DATASET, dataset_defaults
from bench.datasets.dataset import Dataset, NotApplicableError
from bench.registry import Registry, default_registry
from bench.threads import check_threads, thread_limits

__all__ = [
    "EXCLUSIONS",
    "MAX_EPOCHS",
    "MAX_SEED",
    "STAGES",
    "TIES",
    "PeakMemory",
    "RunResult",
    "RunSpec",
    "Runner",
    "StopRun",
    "expand_specs",
    "once_if_deterministic",
]

log = logging.getLogger(__name__)

#: Serialises the environment swap around starting an isolated run's process.
_SPAWN_LOCK = threading.Lock()

TIES = ("expected", "pessimistic")
EXCLUSIONS = ("train-positives", "train-all", "none")
#: Largest seed: an unsigned 32-bit integer (every framework seed and the Parquet
#: int64 ``seed`` column hold it).
MAX_SEED = 2**32 - 1
#: Largest ``epochs`` (and ``k``): frameworks count epochs in signed 32-bit integers.
MAX_EPOCHS = 2**31 - 1
#: What a run is evaluated on: the test rows, or validation rows carved from train (tuning).
STAGES = ("test", "validation")


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
        """A 16-hex-digit SHA-256 prefix of the canonical JSON of the spec."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def dataset_key(self) -> str:
        """Identity of the dataset this spec runs on (runs sharing it share the load)."""
        key = [self.dataset, self.split, self.min_rating, dict(self.dataset_options)]
        if self.stage != "test":
            key.append(self.stage)
        return json.dumps(key, sort_keys=True)


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
#: ``epoch_hook(epoch, fit_seconds, evaluate)``: called after each epoch but the last,
#: outside the fit time; ``evaluate()`` returns the metric means on the run's test side.
EpochHook = Callable[[int, float, Callable[[], pd.Series]], None]


class StopRun(Exception):
    """Raised by an epoch hook to end a run early on purpose (e.g. a pruned tuning trial).

    The run is recorded with status ``"stopped"`` and the message as its error.
    """


class Runner:
    """Executes :class:`RunSpec` objects.

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
    isolate : bool
        Run each spec in a fresh child process (``spawn``): peak memory is
        then that run's alone (framework, data and model, nothing left over
        from earlier runs), and a crash of native code (segfault, OOM kill)
        is recorded as a failed run instead of ending the benchmark. Costs
        the child's start-up and imports (seconds), which are not timed.
        The library default is ``False`` (in-process: quick, and a test or
        notebook can use unpicklable loaders and registries); the ``rsbench
        run`` command isolates by default. The child dies with this process:
        on Linux through ``PR_SET_PDEATHSIG`` (sent when the *thread* that
        called :meth:`run` ends, so call it from a thread that outlives the
        run), elsewhere, and as a fallback, through a watchdog thread that
        checks the parent's pid twice a second; an exception in the parent
        while it waits (``KeyboardInterrupt``, a SIGTERM turned into one)
        kills the child and its descendants before it propagates.
    timeout_s : float, optional
        Wall-time limit of each run, counted from the start of its process
        (start-up, data loading, fit and evaluation). A run past it is killed
        and recorded as failed with ``timed out after N s``. Needs ``isolate``.
    max_memory_mb : float, optional
        Resident-memory limit (MiB) of each run's process and its
        descendants, polled every ``poll_interval`` seconds with psutil. A
        run past it is killed and recorded as failed with ``exceeded M MiB``.
        Resident memory, not address space: numpy, torch and TensorFlow
        reserve far more virtual memory than they use, so ``RLIMIT_AS`` would
        fail healthy runs. An allocation faster than the polling can overshoot
        the limit by what it allocates in one interval. Needs ``isolate``.
    poll_interval : float
        Seconds between two checks of an isolated run's limits and liveness.
    epoch_hook : callable, optional
        See :data:`EpochHook` (tuning reports per-epoch validation values and
        prunes through it; it may raise :class:`StopRun`). In-process runs only.
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
        timeout_s: float | None = None,
        max_memory_mb: float | None = None,
        poll_interval: float = 0.05,
        epoch_hook: EpochHook | None = None,
    ) -> None:
        for name, value in (("timeout_s", timeout_s), ("max_memory_mb", max_memory_mb)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")
            if value is not None and not isolate:
                raise ValueError(f"{name} stops a run by killing its process: needs isolate=True")
        if epoch_hook is not None and isolate:
            raise ValueError("epoch_hook needs in-process runs (isolate=False)")
        self.epoch_hook = epoch_hook
        self.registry = registry if registry is not None else default_registry()
        self.loader = loader
        self.block_size = block_size
        self.curves = curves
        self.epoch_progress = epoch_progress
        self.isolate = isolate
        self.timeout_s = timeout_s
        self.max_memory_mb = max_memory_mb
        self.poll_interval = poll_interval
        self._datasets: dict[str, Dataset] = {}

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

    #: Log file isolated workers append their records and their stdout/stderr
    #: (framework start-up noise) to; None leaves them on the terminal.
    worker_log: str | None = None

    def run(self, spec: RunSpec) -> RunResult:
        """Execute one spec; any exception is caught and recorded as a failed run.

        With ``isolate``, a model whose class cannot be imported by name in a
        fresh process (defined in ``__main__``: a script or a notebook cell)
        runs in this process instead; this is logged.
        """
        if self.isolate:
            try:
                entry = self.registry.get(spec.model)
            except (ValueError, ImportError):
                return self._run_here(spec)  # records the failure
            if entry.importable:
                return self._run_isolated(spec)
            log.info(
                "%s is defined in %s, which a spawned process cannot import: running it "
                "in this process",
                spec.label,
                entry.entry_point.partition(":")[0],
            )
        return self._run_here(spec)

    def _run_isolated(self, spec: RunSpec) -> RunResult:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        args = (
            sender,
            self.registry.only(spec.model),
            self.loader,
            self.block_size,
            self.curves,
            spec,
            logging.getLogger().getEffectiveLevel(),
            os.getpid(),
            self.worker_log,
        )
        process = ctx.Process(target=_child_main, args=args, daemon=True)
        started = time.time()
        clock = time.monotonic()
        # The child inherits the environment at start: quiet framework start-up
        # and, for a CPU run, no CUDA probing at all (set before any import).
        # One start at a time: the process executor starts runs from several threads,
        # and os.environ is process-wide.
        with _SPAWN_LOCK:
            saved = dict(os.environ)
            os.environ.update(
                worker_environment(spec, self.registry, quiet=self.worker_log is not None)
            )
            try:
                process.start()
            finally:
                os.environ.clear()
                os.environ.update(saved)
        sender.close()
        try:
            result = self._wait_for(process, receiver, spec, started, clock)
        except BaseException:
            # KeyboardInterrupt, SIGTERM turned into an exception, a bug: the
            # child must not outlive the parent's interest in it.
            log.warning("run %s: abandoning it, killing its process", spec.run_id)
            _kill_tree(process)
            raise
        finally:
            receiver.close()
        # The result is in; a child stuck in interpreter shutdown must not hang the suite.
        process.join(timeout=60)
        if process.is_alive():
            log.warning("run %s: worker did not exit after reporting; terminating it", spec.run_id)
            _kill_tree(process)
        return result

    def _wait_for(self, process, receiver, spec: RunSpec, started: float, clock: float):
        """Wait for the child's result while enforcing the limits; kill it past one."""
        try:
            handle = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            handle = None
        while True:
            if receiver.poll(self.poll_interval):
                try:
                    return receiver.recv()
                except EOFError:  # the child died; its exit code says how
                    return _ended_early(process, spec, started)
            if not process.is_alive():
                if receiver.poll(0):  # it reported just before exiting
                    continue
                return _ended_early(process, spec, started)
            elapsed = time.monotonic() - clock
            if self.timeout_s is not None and elapsed > self.timeout_s:
                _kill_tree(process)
                log.error("run %s timed out after %g s; killed it", spec.run_id, self.timeout_s)
                return _failed_result(
                    spec, started, f"TimeoutError: timed out after {self.timeout_s:g} s (killed)"
                )
            if self.max_memory_mb is not None and handle is not None:
                rss_mb = _tree_rss_mb(handle)
                if rss_mb > self.max_memory_mb:
                    _kill_tree(process)
                    log.error(
                        "run %s exceeded %g MiB (%.0f MiB resident); killed it",
                        spec.run_id,
                        self.max_memory_mb,
                        rss_mb,
                    )
                    return _failed_result(
                        spec,
                        started,
                        f"MemoryError: exceeded {self.max_memory_mb:g} MiB "
                        f"({rss_mb:.0f} MiB resident; killed)",
                    )

    def _run_here(self, spec: RunSpec) -> RunResult:
        base = _base_row(spec, time.time())
        try:
            with thread_limits(spec.threads):
                row, per_user, curve = self._execute(spec)
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
        return RunResult(row, per_user, curve)

    def _execute(self, spec: RunSpec) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
        from metrics import Evaluator, summarize, warm_up

        # numba's one-time load of the metrics kernels, before any clock starts (and
        # numba's own set-up, which a compiled model step would otherwise pay in its fit).
        warm_up()
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
            "notes": model.notes,
            "fit_scaling": getattr(model, "fit_scaling", ""),
        }
        return row, per_user.reset_index(drop=True), pd.DataFrame(curve_rows)


def _tree_rss_mb(handle: psutil.Process) -> float:
    """Resident memory (MiB) of a process and all its descendants (0 for gone ones)."""
    total = 0
    try:
        members = [handle, *handle.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _kill_tree(process, timeout: float = 10.0) -> None:
    """SIGKILL an isolated run's process and every descendant of it, and wait for them.

    The run's own process is reaped by ``multiprocessing`` (``process.join``),
    never by psutil: a ``waitpid`` by psutil would leave ``multiprocessing``
    unable to read its exit code.
    """
    try:
        root = psutil.Process(process.pid)
        descendants = root.children(recursive=True)
    except psutil.Error:
        descendants = []
    for member in descendants:
        try:
            member.kill()
        except psutil.Error:
            pass
    process.kill()
    process.join(timeout)
    psutil.wait_procs(descendants, timeout=timeout)


def _ended_early(process, spec: RunSpec, started: float) -> RunResult:
    """The failed result of a child that ended without reporting (or the interrupt it got)."""
    process.join()
    if process.exitcode == _INTERRUPTED_EXIT:
        # Ctrl-C hit the child before (or instead of) this process: an interrupt, not a failure.
        raise KeyboardInterrupt(f"run {spec.run_id} was interrupted in its process")
    return _failed_result(spec, started, _death_message(process.exitcode))


def _death_message(exitcode: int | None) -> str:
    """The error of a run whose process ended without reporting."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            how = f"signal {-exitcode}"
    else:
        how = f"exit code {exitcode}"
    return (
        f"WorkerDied: the run's process was ended by {how} before reporting "
        "(native crash or out of memory)"
    )


#: ``prctl`` option asking the kernel to signal this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Make this (child) process end as soon as ``parent_pid`` is no longer its parent.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes, so even a
    SIGKILL of the parent takes the child down at once. Everywhere (and in
    case prctl is unavailable): a daemon thread that checks ``os.getppid()``
    every ``interval`` seconds and exits the process when it changed (the
    orphan was re-parented). The check after prctl closes the race of a
    parent that died before it was called.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:  # no libc symbol: the watchdog remains
            log.debug("prctl unavailable: %s", exc)
    if os.getppid() != parent_pid:
        os._exit(_ORPHAN_EXIT)
    threading.Thread(
        target=_watch_parent, args=(parent_pid, interval), name="parent-watchdog", daemon=True
    ).start()


#: Exit status of an isolated run's process that found itself orphaned.
_ORPHAN_EXIT = 75
#: Exit status of an isolated run's process interrupted by Ctrl-C (as a shell reports it).
_INTERRUPTED_EXIT = 130


def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            log.error("parent process %d is gone; ending this run's process", parent_pid)
            os._exit(_ORPHAN_EXIT)
        time.sleep(interval)


def worker_environment(spec: RunSpec, registry: Registry, *, quiet: bool) -> dict[str, str]:
    """Environment variables an isolated worker of ``spec`` starts with.

    ``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's C++ start-up logging (3 when
    ``quiet``: errors too, since they land in the log file anyway) unless the
    user set it; a run whose parameters do not ask for a ``cuda`` device gets
    ``CUDA_VISIBLE_DEVICES=""``, so a CPU run never initialises CUDA (no
    ``failed call to cuInit`` on machines without a GPU).
    """
    env = {}
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3" if quiet else "2"
    try:
        params = registry.params(spec.model, spec.preset, **dict(spec.params))
    except ValueError:
        params = dict(spec.params)
    if not str(params.get("device", "cpu")).startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _child_main(
    conn, registry, loader, block_size, curves, spec, level, parent_pid, log_path=None
) -> None:
    """Entry point of an isolated run's process: run ``spec`` and send back the result.

    The process ends with its parent (:func:`_die_with_parent`). With
    ``log_path``, the process's stdout and stderr (file descriptors 1 and 2,
    so native framework output too) and its log records are appended to that
    file instead of the terminal.
    """
    _die_with_parent(parent_pid)
    if log_path is not None:
        stream = open(log_path, "a", buffering=1, encoding="utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        logging.basicConfig(
            level=min(level, logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s [worker]: %(message)s",
            stream=stream,
        )
        logging.captureWarnings(True)
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    runner = Runner(registry, loader=loader, block_size=block_size, curves=curves)
    try:
        conn.send(runner.run(spec))
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group: tell the parent
        conn.close()
        sys.exit(_INTERRUPTED_EXIT)
    conn.close()
    # The result is delivered (``send`` returns once the pipe holds all of it): skip
    # the interpreter's teardown, which takes most of a second once TensorFlow or
    # PyTorch is loaded, and which the parent would wait for in ``join``.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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
    from metrics.registry import METRICS

    row = {"epoch": epoch, "fit_seconds": fit_cum, "epoch_seconds": epoch_s}
    for name in METRICS.select(means.index, curve=True):
        row[name] = float(means[name])
    return row


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


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
        if entry is not None and entry.available and getattr(entry.load(), "deterministic", False):
            key = json.dumps({**spec.to_dict(), "seed": None}, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
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
