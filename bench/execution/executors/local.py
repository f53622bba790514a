"""``local``: one run after the other, in this process or each in its own child process."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from bench.execution.executors.base import (
    Executor,
    ResultCallback,
    annotate,
    default_threads,
)
from bench.execution.spec import RunSpec

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """One run after the other: in this process, or (``isolate``) each in a fresh child."""

    name = "local"
    description = "one run after the other in this process (default)"

    def run(self, specs: Sequence[RunSpec], on_result: ResultCallback) -> None:
        node = socket.gethostname()
        isolation = self.isolation() if self.isolate else None
        for spec in specs:
            if isolation is not None:
                result = isolation.run(self.runner, spec)
            else:
                result = self.runner.run(spec)
            threads = spec.threads or default_threads()
            on_result(
                annotate(
                    result, executor=self.name, node=node, threads=threads, concurrent=0, attempts=1
                )
            )

    def map_workers(self, fn: Callable[..., Any], n: int, *args: Any) -> list[Any]:
        return [fn(i, *args) for i in range(n)]
