"""Process supervision: one run in a fresh child process, watched, limited and killable.

Used by the executors (a ``local`` executor that isolates, ``process``, and
``ray`` when a run has limits); the runner knows nothing of it.
"""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time

import psutil

from bench.datasets.dataset import Dataset
from bench.execution.runner import Runner, RunResult
from bench.execution.spec import RunSpec
from bench.registry import Registry

__all__ = ["Isolation", "check_limits", "worker_environment"]

log = logging.getLogger(__name__)

#: Serialises the environment swap around starting an isolated run's process.
_SPAWN_LOCK = threading.Lock()
#: The error text of a run whose process ended without reporting (executors retry it).
WORKER_DIED = "WorkerDied"


def check_limits(timeout_s: object = None, max_memory_mb: object = None) -> None:
    """``ValueError`` unless each limit is ``None`` or a finite number > 0."""
    for name, value in (("timeout_s", timeout_s), ("max_memory_mb", max_memory_mb)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")


class Isolation:
    """Runs each spec in a fresh child process (``spawn``), under optional limits.

    Peak memory is then that run's alone (framework, data and model, nothing
    left over from earlier runs), and a crash of native code (segfault, OOM
    kill) is recorded as a failed run instead of ending the benchmark. Costs
    the child's start-up and imports (about a second), which are not timed.
    The child dies with this process: on Linux through ``PR_SET_PDEATHSIG``
    (sent when the *thread* that called :meth:`run` ends, so call it from a
    thread that outlives the run), elsewhere, and as a fallback, through a
    watchdog thread that checks the parent's pid twice a second; an exception
    in the parent while it waits (``KeyboardInterrupt``, a SIGTERM turned into
    one) kills the child and its descendants before it propagates.

    Parameters
    ----------
    timeout_s : float, optional
        Wall-time limit of each run, counted from the start of its process
        (start-up, data loading, fit and evaluation). A run past it is killed
        and recorded as failed with ``timed out after N s``.
    max_memory_mb : float, optional
        Resident-memory limit (MiB) of each run's process and its
        descendants, polled every ``poll_interval`` seconds with psutil. A
        run past it is killed and recorded as failed with ``exceeded M MiB``.
        Resident memory, not address space: numpy, torch and TensorFlow
        reserve far more virtual memory than they use, so ``RLIMIT_AS`` would
        fail healthy runs. An allocation faster than the polling can overshoot
        the limit by what it allocates in one interval.
    poll_interval : float
        Seconds between two checks of a run's limits and liveness.
    log_path : str, optional
        File the child appends its log records and its stdout/stderr
        (framework start-up noise) to; ``None`` leaves them on the terminal.
    """

    def __init__(
        self,
        *,
        timeout_s: float | None = None,
        max_memory_mb: float | None = None,
        poll_interval: float = 0.05,
        log_path: str | None = None,
    ) -> None:
        check_limits(timeout_s, max_memory_mb)
        self.timeout_s = timeout_s
        self.max_memory_mb = max_memory_mb
        self.poll_interval = poll_interval
        self.log_path = log_path

    def run(self, runner: Runner, spec: RunSpec, data: Dataset | None = None) -> RunResult:
        """Run ``spec`` with ``runner``'s settings in a fresh child process; never raises for it.

        A model whose class cannot be imported by name in a fresh process
        (defined in ``__main__``: a script or a notebook cell) runs in this
        process instead (without the limits); this is logged.
        """
        try:
            entry = runner.registry.get(spec.model)
        except (ValueError, ImportError):
            return runner.run(spec, data)  # records the failure
        if not entry.importable:
            log.info(
                "%s is defined in %s, which a spawned process cannot import: running it "
                "in this process",
                spec.label,
                entry.entry_point.partition(":")[0],
            )
            return runner.run(spec, data)
        return self._run_isolated(runner, spec, data)

    def _run_isolated(self, runner: Runner, spec: RunSpec, data: Dataset | None) -> RunResult:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        settings = runner.settings()
        settings.registry = runner.registry.only(spec.model)
        args = (
            sender,
            settings,
            spec,
            data,
            logging.getLogger().getEffectiveLevel(),
            os.getpid(),
            self.log_path,
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
                worker_environment(spec, runner.registry, quiet=self.log_path is not None)
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
                return RunResult.failed(
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
                    return RunResult.failed(
                        spec,
                        started,
                        f"MemoryError: exceeded {self.max_memory_mb:g} MiB "
                        f"({rss_mb:.0f} MiB resident; killed)",
                    )


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
    return RunResult.failed(spec, started, _death_message(process.exitcode))


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
        f"{WORKER_DIED}: the run's process was ended by {how} before reporting "
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


def _child_main(conn, runner, spec, data, level, parent_pid, log_path=None) -> None:
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
    try:
        conn.send(runner.run(spec, data))
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
