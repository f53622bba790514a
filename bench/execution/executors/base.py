"""What every executor shares: the interface, its declared options, the overlap ledger.

An executor takes :class:`~bench.execution.spec.RunSpec` objects and hands every
:class:`~bench.execution.runner.RunResult` exactly once to a callback, in the
calling (driver) thread, one at a time; the callback is where results reach the
:class:`~bench.results.ResultStore`. The runner does not know which executor
calls it, and an executor uses the runner through its public methods only
(:meth:`~bench.execution.runner.Runner.run`, ``settings``, ``dataset``).

Honest timing: every result row gets :data:`TIMING_COLUMNS`: ``executor``,
``node``, ``threads``, ``concurrent_runs`` (how many other runs overlapped it
in time on its node), ``attempts`` and ``timing_grade`` (true only when it ran
alone on its node).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.execution.isolation import Isolation, check_limits
from bench.execution.runner import Runner, RunResult
from bench.execution.spec import RunSpec

__all__ = [
    "TIMING_COLUMNS",
    "Executor",
    "ExecutorError",
    "ExecutorOption",
    "Overlaps",
    "ResultCallback",
    "annotate",
]

log = logging.getLogger(__name__)

#: Columns every executor adds to a runs.csv row.
TIMING_COLUMNS = ("executor", "node", "threads", "concurrent_runs", "attempts", "timing_grade")

ResultCallback = Callable[[RunResult], None]


class ExecutorError(ValueError):
    """An executor option is invalid or its engine is missing; the message says which."""


@dataclass(frozen=True)
class ExecutorOption:
    """One option an executor declares: its TOML key, its flag, its check and its default.

    ``parse(value, where)`` returns the checked value or raises
    :class:`ExecutorError` naming ``where``; ``commands`` are the rsbench
    commands that use it (``rsbench run`` and/or ``rsbench tune``).
    """

    key: str
    help: str
    parse: Callable[[Any, str], Any]
    default: Any = None
    commands: tuple[str, ...] = ("run", "tune")

    @property
    def flag(self) -> str:
        """The command-line flag (``--ray-address`` for ``ray_address``)."""
        return "--" + self.key.replace("_", "-")


#: Largest integer option (a signed 32-bit integer, like epochs).
_MAX_INT = 2**31 - 1


def integer_option(low: int) -> Callable[[Any, str], int]:
    """A ``parse`` for an integer option ``>= low``."""

    def parse(value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value)  # as the command line gives it
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_INT:
            raise ExecutorError(f"{where} must be an integer in [{low}, {_MAX_INT}], got {value!r}")
        return int(value)

    return parse


#: Every executor's option: extra attempts for a run whose worker or node died.
RETRIES = ExecutorOption(
    "retries",
    "extra attempts for a run whose worker or node died (default 1)",
    integer_option(0),
    default=1,
)


class Executor:
    """Runs specs and delivers each result exactly once to a callback.

    Use as a context manager (``with make_executor(...) as ex: ex.run(specs, cb)``)
    so that engines it started (a local Ray instance) are stopped.

    Parameters
    ----------
    runner : Runner
        Runs each spec; the executor sends its :meth:`~Runner.settings` to
        other processes.
    isolate : bool
        Each run in a fresh child process (:class:`~bench.execution.isolation.Isolation`).
    timeout_s, max_memory_mb : float, optional
        Per-run limits; they stop a run by killing its process, so they need
        isolated runs.
    log_path : str, optional
        Where isolated workers write their log records and native output.
    **options
        The options the executor class declares (:attr:`options`), checked.

    Subclasses set :attr:`name`, :attr:`description` and :attr:`options`, and
    implement :meth:`run` and :meth:`map_workers`; registering the class
    (:func:`bench.execution.executors.register_executor`) gives it its TOML
    keys and command-line flags.
    """

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    #: Options of this executor (``retries`` is every executor's).
    options: ClassVar[tuple[ExecutorOption, ...]] = (RETRIES,)
    #: Whether every run already gets its own process (limits then need no ``isolate``).
    always_isolates: ClassVar[bool] = False

    def __init__(
        self,
        runner: Runner,
        *,
        isolate: bool = False,
        timeout_s: float | None = None,
        max_memory_mb: float | None = None,
        log_path: str | None = None,
        **options: Any,
    ) -> None:
        check_limits(timeout_s, max_memory_mb)
        limited = timeout_s is not None or max_memory_mb is not None
        if limited and not (isolate or self.always_isolates):
            name = "timeout_s" if timeout_s is not None else "max_memory_mb"
            raise ValueError(f"{name} stops a run by killing its process: needs isolate=True")
        declared = {option.key: option for option in self.options}
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise ExecutorError(
                f"executor {self.name!r} has no option {unknown[0]!r} "
                f"(it takes {', '.join(sorted(declared))})"
            )
        self.runner = runner
        self.isolate = isolate
        self.timeout_s = timeout_s
        self.max_memory_mb = max_memory_mb
        self.log_path = log_path
        for key, option in declared.items():
            value = options.get(key)
            setattr(self, key, option.default if value is None else option.parse(value, key))

    def isolation(self) -> Isolation:
        """The child-process supervision of this executor's runs (its limits, its log)."""
        return Isolation(
            timeout_s=self.timeout_s, max_memory_mb=self.max_memory_mb, log_path=self.log_path
        )

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
        ``fn`` must be a module-level (picklable) function. The first exception
        raised by a worker is raised after all have ended.
        """
        raise NotImplementedError


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


def annotate(
    result: RunResult,
    *,
    executor: str,
    node: str,
    threads: int,
    concurrent: int,
    attempts: int,
) -> RunResult:
    """Add the :data:`TIMING_COLUMNS` to ``result``'s row (in place) and return it."""
    result.row.update(
        executor=executor,
        node=node,
        threads=int(threads),
        concurrent_runs=int(concurrent),
        attempts=int(attempts),
        timing_grade=bool(concurrent == 0 and result.ok),
    )
    return result


def default_threads() -> int:
    """Threads a BLAS pool uses when nothing limits it: one per core."""
    return os.cpu_count() or 1
