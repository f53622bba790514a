"""rsbench harness: data, sampler, registry, runner, results, report, CLI and Python API.

From Python::

    import bench

    results = bench.run(["popularity", "itemknn"], seeds=[0, 1])
    results.runs, results.per_user, results.curves   # pandas DataFrames
    tuned = bench.tune("tuned")                       # equal-budget tuning, then test

``bench.run`` is :func:`bench.api.run`, ``bench.tune`` :func:`bench.api.tune`;
``bench.check_recommender`` is :func:`bench.testing.check_recommender`. They are
imported on first use, so ``import bench`` stays cheap.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__version__ = "0.1.0"

#: OpenBLAS's idle worker threads busy-wait for ``2**28`` cycles (about 0.1 s) after
#: every call before they sleep (its default ``OPENBLAS_THREAD_TIMEOUT``, 28). An
#: evaluation alternates a BLAS product (a block of scores) with ranking threads on
#: every core, and the spinning workers took a core from those for most of each block:
#: with ``2**4`` cycles (the least OpenBLAS accepts) an ML-20M-shape evaluation took
#: 18% less wall time and 30% less CPU (``benchmarks/test_bench_metrics.py``). OpenBLAS
#: (numpy's and scipy's) reads the variable once, when it loads, so it applies where
#: ``bench`` is imported before numpy (the ``rsbench`` command, its run workers, the
#: benchmarks) and in every process that rsbench starts. A value already set wins.
OPENBLAS_THREAD_TIMEOUT = "4"
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
#: Whether this process's OpenBLAS reads it: numpy was not loaded before ``bench``.
BLAS_TIMEOUT_APPLIES = "numpy" not in sys.modules

__all__ = ["Results", "check_recommender", "run", "tune"]

_LAZY = {
    "run": ("bench.api", "run"),
    "tune": ("bench.api", "tune"),
    "Results": ("bench.api", "Results"),
    "check_recommender": ("bench.testing", "check_recommender"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
