"""``ray``: each run one Ray task on a Ray cluster, or on a local Ray instance.

Each run is one Ray task declaring its resources (``num_cpus`` = the run's
thread count, ``num_gpus=1`` for a model asked to train on ``cuda``) with
``max_calls=1`` (a worker process serves one run and exits, so peak memory is
that run's alone). The driver loads each dataset once and puts it in the
object store; every run still builds and times its own sampler. Ray retries a
task whose worker or node died (``max_retries``); past that the run is
recorded as failed with the reason and the other runs go on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from bench.execution.executors.base import (
    RETRIES,
    Executor,
    ExecutorError,
    ExecutorOption,
    Overlaps,
    ResultCallback,
    annotate,
)
from bench.execution.executors.process import JOBS
from bench.execution.isolation import WORKER_DIED, Isolation
from bench.execution.runner import Runner, RunResult
from bench.execution.spec import RunSpec
from bench.threads import thread_limits

__all__ = ["DEFAULT_OBJECT_STORE_MB", "RAY_ADDRESS", "RayExecutor", "task_options"]

log = logging.getLogger(__name__)

# Object store of the Ray instance rsbench starts itself (a cluster's is set by `ray start`).
DEFAULT_OBJECT_STORE_MB = 1024
RAY_INSTALL_HINT = "--executor ray needs Ray, which is not installed: pip install 'rsbench[ray]'"
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_ADDRESS = re.compile(r"^(auto|[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ExecutorError(f"{where} must be 'auto' or HOST:PORT, got {value!r}")
    return value


#: The Ray cluster to use; none: a local Ray instance for the duration of the command.
RAY_ADDRESS = ExecutorOption(
    "ray_address",
    "auto or HOST:PORT of a running Ray cluster (default: start a local Ray instance)",
    _address,
)


def _ray_task(
    runner: Runner, spec: RunSpec, data: Any, ledger: Any, isolation: Isolation | None
) -> tuple[Any, ...]:
    """Body of one run's Ray task (on a worker that serves this run only).

    Returns ``(result, node, start, end)``; the driver asks the ledger for the
    overlaps. Nothing here blocks on Ray (no ``ray.get``): a task blocked in
    ``ray.get`` gives its CPUs back and Ray would start another run beside it.
    """
    import ray

    context = ray.get_runtime_context()
    node = context.get_node_id()[:12]
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
            if isolation is None:
                result = runner.run(spec, data)
            else:  # per-run limits: enforced on a watched child of this worker
                result = isolation.run(runner, spec, data)
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
    return f"{WORKER_DIED}: Ray {type(exc).__name__} after {attempts} attempt(s): {text}"


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
    description = (
        "each run one Ray task on a Ray cluster (--ray-address), or on a local Ray instance"
    )
    # jobs: the study workers of rsbench tune (runs themselves are scheduled by the
    # cluster's CPUs, so rsbench run takes no jobs on Ray).
    options = (RAY_ADDRESS, replace(JOBS, commands=("tune",)), RETRIES)

    def __init__(
        self,
        runner: Runner,
        *,
        object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
        num_cpus: int | None = None,
        threads: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(runner, **options)
        self.address = self.ray_address
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
        worker_runner = self.runner.settings()
        # The task's worker process is the isolation; per-run time and memory
        # limits are enforced on a watched child of the worker, so one is made then.
        limited = self.timeout_s is not None or self.max_memory_mb is not None
        isolation = self.isolation() if limited else None
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
                    failed = RunResult.failed(spec, time.time(), f"{type(exc).__name__}: {exc}")
                    on_result(self._annotate_failed(failed, spec, 1))
                    continue
                options = task_options(self.runner, spec, self.retries)
                ref = task.options(**options).remote(
                    worker_runner, spec, data_refs[key], ledger, isolation
                )
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
            return self._annotate_failed(RunResult.failed(spec, submitted, error), spec, attempts)
        try:
            concurrent, attempts = ray.get(
                ledger.finish.remote(spec.run_id, node, start, end), timeout=60
            )
        except ray.exceptions.RayError as exc:  # the ledger is gone: overlap unknown
            log.warning("run %s: overlap ledger unreachable (%s)", spec.run_id, exc)
            concurrent, attempts = -1, 0
        return annotate(
            result,
            executor=self.name,
            node=node,
            threads=spec.threads or 1,
            concurrent=concurrent,
            attempts=attempts,
        )

    def _annotate_failed(self, result: RunResult, spec: RunSpec, attempts: int) -> RunResult:
        return annotate(
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
