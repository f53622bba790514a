"""rsbench harness: data, sampler, registry, runner, results, report, CLI and Python API.

From Python::

    import bench

    results = bench.run(["popularity", "itemknn"], seeds=[0, 1])
    results.runs, results.per_user, results.curves   # pandas DataFrames

``bench.run`` is :func:`bench.api.run`; ``bench.check_recommender`` is
:func:`bench.testing.check_recommender`. Both are imported on first use, so
``import bench`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Results", "check_recommender", "run"]

_LAZY = {
    "run": ("bench.api", "run"),
    "Results": ("bench.api", "Results"),
    "check_recommender": ("bench.testing", "check_recommender"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
