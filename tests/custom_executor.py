"""An executor of a user's own, in a file of its own: one option, one registration.

``tests/test_execution_wing.py`` registers it and runs a suite through it from
the command line; nothing in rsbench names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.execution.executors import Executor, ExecutorError, ExecutorOption
from bench.execution.executors.base import RETRIES, ResultCallback, annotate


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ExecutorError(f"{where} must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds <= 1:
        raise ExecutorError(f"{where} must be in [0, 1] seconds, got {value!r}")
    return seconds


class PausingExecutor(Executor):
    """One run after the other in this process, with a pause before each."""

    name = "pausing"
    description = "one run after the other here, --pause-s seconds apart"
    options = (
        ExecutorOption("pause_s", "seconds to wait before each run", _seconds, default=0.0),
        RETRIES,
    )

    def run(self, specs: Sequence[Any], on_result: ResultCallback) -> None:
        for spec in specs:
            time.sleep(self.pause_s)
            result = self.runner.run(spec)
            row = {"executor": self.name, "node": "here", "threads": 1, "concurrent": 0}
            on_result(annotate(result, **row, attempts=1))

    def map_workers(self, fn: Callable[..., Any], n: int, *args: Any) -> list[Any]:
        return [fn(i, *args) for i in range(n)]
