"""``process``: ``jobs`` runs at a time on this machine, each in a fresh child process."""

from __future__ import annotations

import logging
import multiprocessing
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any

from bench.execution.executors.base import (
    RETRIES,
    Executor,
    ExecutorOption,
    Overlaps,
    ResultCallback,
    annotate,
    default_threads,
    integer_option,
)
from bench.execution.isolation import WORKER_DIED
from bench.execution.runner import RunResult
from bench.execution.spec import RunSpec

__all__ = ["JOBS", "ProcessExecutor"]

log = logging.getLogger(__name__)

#: Runs (or, for ``rsbench tune``, study workers) at a time.
JOBS = ExecutorOption(
    "jobs",
    "runs at a time with --executor process; study workers of rsbench tune with process "
    "or ray (default: 1)",
    integer_option(1),
    default=1,
)


class ProcessExecutor(Executor):
    """``jobs`` isolated runs at a time on this machine.

    Each run goes to a fresh ``spawn`` child (:class:`~bench.execution.isolation.Isolation`,
    with the executor's limits) from one of ``jobs`` driver threads; results
    are handed to the callback from the calling thread only. A run whose child
    died before reporting is tried again up to ``retries`` times.
    """

    name = "process"
    description = "--jobs N runs at a time on this machine, each in its own child process"
    options = (JOBS, RETRIES)
    always_isolates = True

    def run(self, specs: Sequence[RunSpec], on_result: ResultCallback) -> None:
        ledger = Overlaps()
        node = socket.gethostname()
        stopping = threading.Event()
        isolation = self.isolation()

        def work(spec: RunSpec) -> RunResult | None:
            attempt = 0
            while not stopping.is_set():
                attempt += 1
                start = time.time()
                ledger.begin(spec.run_id, node, start)
                result = isolation.run(self.runner, spec)
                concurrent, _ = ledger.finish(spec.run_id, node, start, time.time())
                died = not result.ok and str(result.row.get("error", "")).startswith(WORKER_DIED)
                if not died or attempt > self.retries:
                    return annotate(
                        result,
                        executor=self.name,
                        node=node,
                        threads=spec.threads or default_threads(),
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
