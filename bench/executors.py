"""Executors: run a list of run specs here, in N child processes, or as tasks on a Ray cluster.

An executor takes :class:`~bench.runner.RunSpec` objects and hands every
:class:`~bench.runner.RunResult` exactly once to a callback, in the calling
(driver) thread, one at a time; the callback is where results reach the
:class:`~bench.results.ResultStore`. The runner does not know which executor
calls it. Three executors:

``local``
    Today's loop: one run after the other in this process (or each in its own
    child process when the runner isolates).
``process``
    ``jobs`` runs at a time on this machine, each in a fresh child process
    (the runner's own isolated-run mechanism, called from ``jobs`` driver
    threads); a child that dies mid-run is retried ``retries`` times.
``ray``
    Each run is one Ray task declaring its resources (``num_cpus`` = the run's
    thread count, ``num_gpus=1`` for a model asked to train on ``cuda``) with
    ``max_calls=1`` (a worker process serves one run and exits, so peak memory
    is that run's alone). The driver loads each dataset once and puts it in
    the object store; every run still builds and times its own sampler. Ray
    retries a task whose worker or node died (``max_retries``); past that the
    run is recorded as failed with the reason and the other runs go on.

Honest timing: every result row gets ``executor``, ``node``, ``threads``,
``concurrent_runs`` (how many other runs overlapped it in time on its node),
``attempts`` and ``timing_grade`` (true only when it ran alone on its node).
:func:`timing_grade_runs` selects the rows whose timings may be compared.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import psutil

from bench.results.tables import timing_grade_runs
from bench.runner import Runner, RunResult, RunSpec, _failed_result
from bench.threads import thread_limits

__all__ = [
    "DEFAULT_OBJECT_STORE_MB",
    "EXECUTORS",
    "TIMING_COLUMNS",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "Overlaps",
    "ProcessExecutor",
    "RayExecutor",
    "check_executor_options",
    "make_executor",
    "task_options",
    "timing_grade_runs",
]

log = logging.getLogger(__name__)

EXECUTORS = {
    "local": "one run after the other in this process (default)",
    "process": "--jobs N runs at a time on this machine, each in its own child process",
    "ray": "each run one Ray task on a Ray cluster (--ray-address), or on a local Ray instance",
}
# Columns every executor adds to a runs.csv row.
TIMING_COLUMNS = ("executor", "node", "threads", "concurrent_runs", "attempts", "timing_grade")
# Object store of the Ray instance rsbench starts itself (a cluster's is set by `ray start`).
DEFAULT_OBJECT_STORE_MB = 1024
RAY_INSTALL_HINT = "--executor ray needs Ray, which is not installed: pip install 'rsbench[ray]'"
# The runner's error text for an isolated child that ended without reporting.
_WORKER_DIED = "WorkerDied"
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_ADDRESS = re.compile(r"^(auto|[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")

ResultCallback = Callable[[RunResult], None]


class ExecutorError(ValueError):
    """An executor option is invalid or its engine is missing; the message says which."""


def check_executor_options(
    executor: object = "local",
    jobs: object = None,
    ray_address: object = None,
    retries: object = None,
    *,
    where: str = "",
) -> dict[str, Any]:
    """Validate executor options once, before anything runs.

    Parameters
    ----------
    executor : {"local", "process", "ray"}
    jobs : int or None
        Runs at a time for ``process`` (default 1; > 1 needs ``process``).
    ray_address : str or None
        ``"auto"`` or ``"HOST:PORT"`` of a running cluster (``ray`` only);
        ``None`` starts a local Ray instance for the duration of the command.
    retries : int or None
        Extra attempts for a run whose worker or node died (default 1).
    where : str
        Prefix of error messages (a file name, ``"command line"``).

    Returns
    -------
    dict
        ``{"executor", "jobs", "ray_address", "retries"}`` with defaults filled in.

    Raises
    ------
    ExecutorError
        Naming the offending option and value.
    """
    prefix = f"{where}: " if where else ""
    if executor not in EXECUTORS:
        raise ExecutorError(
            f"{prefix}executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    for name, value, low in (("jobs", jobs, 1), ("retries", retries, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ExecutorError(f"{prefix}{name} must be an integer, got {value!r}")
        if value is not None and value < low:
            raise ExecutorError(f"{prefix}{name} must be >= {low}, got {value}")
    if jobs is not None and jobs > 1 and executor != "process":
        hint = (
            "Ray schedules runs by the cluster's CPUs"
            if executor == "ray"
            else "use --executor process"
        )
        raise ExecutorError(f"{prefix}jobs = {jobs} needs executor 'process' ({hint})")
    if ray_address is not None:
        if executor != "ray":
            raise ExecutorError(f"{prefix}ray_address is only used by executor 'ray'")
        if not isinstance(ray_address, str) or not _ADDRESS.match(ray_address):
            raise ExecutorError(
                f"{prefix}ray_address must be 'auto' or HOST:PORT, got {ray_address!r}"
            )
    return {
        "executor": executor,
        "jobs": 1 if jobs is None else int(jobs),
        "ray_address": ray_address,
        "retries": 1 if retries is None else int(retries),
    }


class Overlaps:
    """A ledger of run attempts per node: how many other runs overlapped a run in time.

    Thread-safe; on Ray it is the state of one actor shared by every task.
    An attempt that never finished (its worker died) is closed when the next
    attempt of the same run begins, or by :meth:`abandon`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[list[Any]] = []  # [key, node, start, end or None]

    def begin(self, key: str, node: str, start: float) -> None:
        """Record that an attempt of run ``key`` started on ``node`` at ``start``."""
        with self._lock:
            if any(span[0] == key and span[2] == start for span in self._spans):
                return  # its finish arrived first (actor calls from two callers are unordered)
            for span in self._spans:
                if span[0] == key and span[3] is None:
                    span[3] = start
            self._spans.append([key, node, start, None])

    def finish(self, key: str, node: str, start: float, end: float) -> tuple[int, int]:
        """Close the attempt; return ``(other runs overlapping it on node, attempts of key)``."""
        with self._lock:
            if not any(span[0] == key and span[2] == start for span in self._spans):
                # The attempt's begin has not reached the ledger yet: record it closed.
                self._spans.append([key, node, start, end])
            for span in self._spans:
                if span[0] == key and span[2] == start and span[3] is None:
                    span[3] = end
            overlapping = {
                other
                for other, other_node, s, e in self._spans
                if other != key and other_node == node and s < end and (e is None or e > start)
            }
            attempts = sum(1 for span in self._spans if span[0] == key)
        return len(overlapping), attempts

    def close(self, key: str, node: str, start: float, end: float) -> None:
        """Close the attempt of ``key`` begun on ``node`` at ``start`` (found dead by ``end``)."""
        with self._lock:
            for span in self._spans:
                if span[:3] == [key, node, start] and span[3] is None:
                    span[3] = end

    def abandon(self, key: str, end: float) -> int:
        """Close every open attempt of ``key`` (given up on); return its number of attempts."""
        with self._lock:
            for span in self._spans:
                if span[0] == key and span[3] is None:
                    span[3] = end
            return sum(1 for span in self._spans if span[0] == key)


def _annotate(
    result: RunResult,
    *,
    executor: str,
    node: str,
    threads: int,
    concurrent: int,
    attempts: int,
) -> RunResult:
    result.row.update(
        executor=executor,
        node=node,
        threads=int(threads),
        concurrent_runs=int(concurrent),
        attempts=int(attempts),
        timing_grade=bool(concurrent == 0 and result.ok),
    )
    return result


def _default_threads() -> int:
    """Threads a BLAS pool uses when nothing limits it: one per core."""
    return os.cpu_count() or 1


class Executor:
    """Runs specs and delivers each result exactly once to a callback.

    Use as a context manager (``with make_executor(...) as ex: ex.run(specs, cb)``)
    so that engines it started (a local Ray instance) are stopped.
    """

    name = "base"

    def __init__(self, runner: Runner, *, retries: int = 1) -> None:
        self.runner = runner
        self.retries = retries

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what the executor started (nothing for local and process)."""

    def run(self, specs: Sequence[RunSpec], on_result: ResultCallback) -> None:
        """Execute ``specs``; call ``on_result(result)`` once per spec, in this thread."""
        raise NotImplementedError

    def map_workers(self, fn: Callable[..., Any], n: int, *args: Any) -> list[Any]:
        """Call ``fn(i, *args)`` for ``i`` in ``range(n)`` as ``n`` workers; their return values.

        The entry point for study workers of a tuner sharing one Optuna storage:
        ``fn`` must be a module-level (picklable) function. ``local`` calls them
        one after the other here; ``process`` in up to ``jobs`` fresh processes;
        ``ray`` as one Ray task each (``max_calls=1``, retried if a worker dies).
        The first exception raised by a worker is raised after all have ended.
        """
        raise NotImplementedError


class LocalExecutor(Executor):
    """One run after the other through :meth:`Runner.run` (today's loop)."""

    name = "local"

    def run(self, specs: Sequence[RunSpec], on_result: ResultCallback) -> None:
        node = socket.gethostname()
        for spec in specs:
            result = self.runner.run(spec)
            threads = spec.threads or _default_threads()
            on_result(
                _annotate(
                    result, executor=self.name, node=node, threads=threads, concurrent=0, attempts=1
                )
            )

    def map_workers(self, fn: Callable[..., Any], n: int, *args: Any) -> list[Any]:
        return [fn(i, *args) for i in range(n)]


class ProcessExecutor(Executor):
    """``jobs`` isolated runs at a time on this machine.

    Each run goes through :meth:`Runner.run` with isolation on (a fresh
    ``spawn`` child per run, whatever crash containment and limits the runner
    gives it), called from ``jobs`` driver threads; results are handed to the
    callback from the calling thread only. A run whose child died before
    reporting is tried again up to ``retries`` times.
    """

    name = "process"

    def __init__(self, runner: Runner, *, jobs: int = 2, retries: int = 1) -> None:
        super().__init__(runner, retries=retries)
        self.jobs = jobs
        self._runner = copy.copy(runner)
        self._runner.isolate = True

    def run(self, specs: Sequence[RunSpec], on_result: ResultCallback) -> None:
        ledger = Overlaps()
        node = socket.gethostname()
        stopping = threading.Event()

        def work(spec: RunSpec) -> RunResult | None:
            attempt = 0
            while not stopping.is_set():
                attempt += 1
                start = time.time()
                ledger.begin(spec.run_id, node, start)
                result = self._runner.run(spec)
                concurrent, _ = ledger.finish(spec.run_id, node, start, time.time())
                died = not result.ok and str(result.row.get("error", "")).startswith(_WORKER_DIED)
                if not died or attempt > self.retries:
                    threads = spec.threads or _default_threads()
                    return _annotate(
                        result,
                        executor=self.name,
                        node=node,
                        threads=threads,
                        concurrent=concurrent,
                        attempts=attempt,
                    )
                log.warning(
                    "run %s (%s seed %d): worker died (%s); retrying (%d of %d)",
                    spec.run_id,
                    spec.label,
                    spec.seed,
                    result.row.get("error"),
                    attempt,
                    self.retries,
                )
            return None

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="rsbench-run")
        futures = {pool.submit(work, spec) for spec in specs}
        try:
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    if result is not None:
                        on_result(result)
        except BaseException:
            # Interrupted: start nothing more and take down the runs in flight
            # (their threads then see the child gone and return).
            stopping.set()
            for future in futures:
                future.cancel()
            for child in multiprocessing.active_children():
                child.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def map_workers(self, fn: Callable[..., Any], n: int, *args: Any) -> list[Any]:
        ctx = multiprocessing.get_context("spawn")
        # One worker per study worker, fresh for each (max_tasks_per_child is 3.11+).
        extra = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
        with ProcessPoolExecutor(
            max_workers=max(1, min(n, self.jobs)), mp_context=ctx, **extra
        ) as pool:
            futures = [pool.submit(fn, i, *args) for i in range(n)]
            wait(futures)
        return [future.result() for future in futures]


class _Preloaded:
    """A loader that returns the dataset it was given (the driver already loaded it)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.data


def _ray_task(runner: Runner, spec: RunSpec, data: Any, ledger: Any) -> tuple[Any, ...]:
    """Body of one run's Ray task (on a worker that serves this run only).

    Returns ``(result, node, start, end)``; the driver asks the ledger for the
    overlaps. Nothing here blocks on Ray (no ``ray.get``): a task blocked in
    ``ray.get`` gives its CPUs back and Ray would start another run beside it.
    """
    import ray

    context = ray.get_runtime_context()
    node = context.get_node_id()[:12]
    runner.loader = _Preloaded(data)
    start = time.time()
    ledger.begin.remote(spec.run_id, node, start)  # fire and forget
    # Node-local marks of the runs in progress: a killed worker leaves its mark,
    # and the next run on the node closes that attempt in the ledger (it ended
    # before this run began), so a dead run never makes later ones look shared.
    marks = Path(context.get_temp_dir()) / "rsbench-runs" / node
    mark = marks / str(os.getpid())
    try:
        marks.mkdir(parents=True, exist_ok=True)
        for other in marks.iterdir():
            if other != mark and not _alive(int(other.name)):
                dead_key, dead_start = json.loads(other.read_text())
                ledger.close.remote(dead_key, node, dead_start, start)
                other.unlink(missing_ok=True)
        mark.write_text(json.dumps([spec.run_id, start]))
    except (OSError, ValueError) as exc:  # marks are an aid to timing, never a failure
        log.warning("run %s: cannot use run marks in %s (%s)", spec.run_id, marks, exc)
    try:
        # A spec without threads still gets only the CPU it reserved.
        with thread_limits(None if spec.threads else 1):
            result = runner.run(spec)
    finally:
        mark.unlink(missing_ok=True)
    return result, node, start, time.time()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie is dead, not yet reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(RAY_INSTALL_HINT) from None
    return ray


def _ray_failure(exc: BaseException, attempts: int) -> str:
    """The ``error`` column of a run Ray gave up on."""
    import ray.exceptions as rex

    text = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, rex.RayTaskError):  # Python raised in the task (e.g. no rsbench there)
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return f"{type(cause).__name__}: {cause}"[:500]
        return f"RayTaskError: {text}"
    return f"{_WORKER_DIED}: Ray {type(exc).__name__} after {attempts} attempt(s): {text}"


def _wants_cuda(runner: Runner, spec: RunSpec) -> bool:
    """Whether the spec's model trains on a CUDA device (its ``device`` parameter)."""
    try:
        params = runner.registry.params(spec.model, spec.preset, **dict(spec.params))
    except Exception:  # checked before the executor runs; never fail here
        return False
    return str(params.get("device", "cpu")).startswith("cuda")


def _reload_ray_auth() -> None:
    """Make an imported Ray re-read its auth settings from the environment.

    Ray caches them when it is imported; this is what Ray's own tests do after
    changing them (``ray._private.authentication_test_utils``), a private API,
    hence the guard.
    """
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError) as exc:  # another Ray version
        log.debug("cannot reload Ray's auth settings: %s", exc)


def task_options(runner: Runner, spec: RunSpec, retries: int) -> dict[str, Any]:
    """The Ray task options of one run: its CPUs (= threads), a GPU for CUDA, retries.

    ``max_calls=1`` is set on the remote function itself (Ray does not allow
    it in ``.options``); Python exceptions are never retried (the runner
    records them as failed runs), only dead workers and nodes.
    """
    options: dict[str, Any] = {
        "num_cpus": spec.threads or 1,
        "max_retries": retries,
        "retry_exceptions": False,
    }
    if _wants_cuda(runner, spec):
        options["num_gpus"] = 1
    return options


class RayExecutor(Executor):
    """Each run one Ray task; see the module docstring.

    Parameters
    ----------
    runner : Runner
        Its registry, block size and curve setting travel with each task.
    address : str or None
        ``"auto"`` / ``"HOST:PORT"`` of a running cluster; ``None`` starts a
        local Ray instance (``num_cpus`` CPUs, an object store of
        ``object_store_mb`` MiB, no dashboard) and stops it on :meth:`close`.
    retries : int
        Task ``max_retries``: attempts after a worker or node died.
    threads : int
        CPUs each :meth:`map_workers` task reserves.
    """

    name = "ray"

    def __init__(
        self,
        runner: Runner,
        *,
        address: str | None = None,
        retries: int = 1,
        object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
        num_cpus: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(runner, retries=retries)
        self.address = address
        self.object_store_mb = object_store_mb
        self.num_cpus = num_cpus
        self.threads = threads
        self._ray = _import_ray()
        self._connected = False

    def _connect(self):
        ray = self._ray
        if self._connected:
            return ray
        if ray.is_initialized():
            raise ExecutorError("a Ray session is already open in this process")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # ray.init replaces the SIGTERM handler; rsbench's (SIGTERM like Ctrl-C) comes back.
        on_term = signal.getsignal(signal.SIGTERM)
        if self.address is None:
            self._use_session_token()
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                object_store_memory=self.object_store_mb * 2**20,
                include_dashboard=False,
                configure_logging=False,
            )
            log.info(
                "started a local Ray instance (%s CPUs, object store %d MiB)",
                self.num_cpus or "all",
                self.object_store_mb,
            )
        else:
            try:
                ray.init(address=self.address, configure_logging=False)
            except ConnectionError as exc:
                raise ExecutorError(
                    f"--ray-address {self.address}: cannot connect to a Ray cluster ({exc})"
                ) from None
        if threading.current_thread() is threading.main_thread() and on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        self._connected = True
        return ray

    def _use_session_token(self) -> None:
        """Token auth for the local instance with a token that lives in this process only.

        Ray 2.60 turns token auth on for a new local instance and, without a
        token, writes one to ``~/.ray/auth_token``, which later ``ray start``
        commands of the user then pick up. A token in the environment (inherited
        by the instance's processes) keeps auth on and writes nothing.
        """
        self._saved_env = {name: os.environ.get(name) for name in _AUTH_ENV}
        if any(os.environ.get(name) for name in _AUTH_ENV):
            return  # the user chose how Ray authenticates
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        _reload_ray_auth()

    def close(self) -> None:
        """Disconnect; a local Ray instance started by :meth:`run` is stopped."""
        if self._connected:
            self._ray.shutdown()
            self._connected = False
        saved, self._saved_env = getattr(self, "_saved_env", {}), {}
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if saved:
            _reload_ray_auth()

    def run(self, specs: Sequence[RunSpec], on_result: ResultCallback) -> None:
        ray = self._connect()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(max_calls=1)(_ray_task)
        # The ledger lives on the driver's node: a worker node dying takes no timing with it.
        ledger = (
            ray.remote(num_cpus=0)(Overlaps)
            .options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=True
                )
            )
            .remote()
        )
        worker_runner = copy.copy(self.runner)
        # The task's worker process is the isolation; per-run time and memory
        # limits are enforced by the runner's own watched child, so keep it then.
        limited = any(getattr(self.runner, n, None) for n in ("timeout_s", "max_memory_mb"))
        worker_runner.isolate = bool(limited)
        worker_runner.epoch_progress = None
        worker_runner._datasets = {}
        data_refs: dict[str, Any] = {}
        pending: dict[Any, tuple[RunSpec, float]] = {}
        try:
            for spec in specs:
                key = spec.dataset_key()
                if key not in data_refs:
                    try:
                        data_refs[key] = ray.put(self.runner.dataset(spec))
                    except Exception as exc:  # recorded per run, like the runner does
                        data_refs[key] = exc
                if isinstance(data_refs[key], Exception):
                    exc = data_refs[key]
                    failed = _failed_result(spec, time.time(), f"{type(exc).__name__}: {exc}")
                    on_result(self._annotate_failed(failed, spec, 1))
                    continue
                options = task_options(self.runner, spec, self.retries)
                ref = task.options(**options).remote(worker_runner, spec, data_refs[key], ledger)
                pending[ref] = (spec, time.time())
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    spec, submitted = pending.pop(ref)
                    on_result(self._collect(ref, spec, submitted, ledger))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            ray.kill(ledger)

    def _collect(self, ref: Any, spec: RunSpec, submitted: float, ledger: Any) -> RunResult:
        ray = self._ray
        try:
            result, node, start, end = ray.get(ref)
        except ray.exceptions.RayError as exc:
            try:  # close its attempts in the ledger (they may still overlap others)
                ray.get(ledger.abandon.remote(spec.run_id, time.time()), timeout=60)
            except ray.exceptions.RayError:
                pass
            # Ray gives up on a dead worker after max_retries more attempts; a
            # Python error in the task is never retried (retry_exceptions=False).
            attempts = 1 if isinstance(exc, ray.exceptions.RayTaskError) else self.retries + 1
            error = _ray_failure(exc, attempts)
            log.error("run %s (%s seed %d) failed: %s", spec.run_id, spec.label, spec.seed, error)
            return self._annotate_failed(_failed_result(spec, submitted, error), spec, attempts)
        try:
            concurrent, attempts = ray.get(
                ledger.finish.remote(spec.run_id, node, start, end), timeout=60
            )
        except ray.exceptions.RayError as exc:  # the ledger is gone: overlap unknown
            log.warning("run %s: overlap ledger unreachable (%s)", spec.run_id, exc)
            concurrent, attempts = -1, 0
        return _annotate(
            result,
            executor=self.name,
            node=node,
            threads=spec.threads or 1,
            concurrent=concurrent,
            attempts=attempts,
        )

    def _annotate_failed(self, result: RunResult, spec: RunSpec, attempts: int) -> RunResult:
        return _annotate(
            result,
            executor=self.name,
            node="",
            threads=spec.threads or 1,
            concurrent=-1,
            attempts=attempts,
        )

    def map_workers(self, fn: Callable[..., Any], n: int, *args: Any) -> list[Any]:
        ray = self._connect()
        remote = ray.remote(max_calls=1)(fn).options(
            num_cpus=self.threads, max_retries=self.retries, retry_exceptions=False
        )
        refs = [remote.remote(i, *args) for i in range(n)]
        ray.wait(refs, num_returns=len(refs))
        return ray.get(refs)


def make_executor(
    name: str,
    runner: Runner,
    *,
    jobs: int = 1,
    ray_address: str | None = None,
    retries: int = 1,
    **ray_options: Any,
) -> Executor:
    """The executor ``name`` over ``runner`` (options as :func:`check_executor_options`).

    Raises
    ------
    ExecutorError
        Bad options, or ``ray`` requested without Ray installed (with the
        command that installs it).
    """
    options = check_executor_options(name, jobs, ray_address, retries)
    if name == "local":
        return LocalExecutor(runner, retries=options["retries"])
    if name == "process":
        return ProcessExecutor(runner, jobs=options["jobs"], retries=options["retries"])
    return RayExecutor(runner, address=ray_address, retries=options["retries"], **ray_options)


def run_all(executor: Executor, specs: Iterable[RunSpec]) -> list[RunResult]:
    """Every result of ``specs`` (in completion order); a convenience for tests and scripts."""
    results: list[RunResult] = []
    executor.run(list(specs), results.append)
    return results
