"""Fixtures for the pytest-benchmark microbenchmarks (run by ``nox -s microbench``)."""

from __future__ import annotations

import pytest

# First, before anything loads numpy: rsbench's OpenBLAS spin timeout (see bench/__init__.py)
# must be in place when OpenBLAS loads, as it is for the ``rsbench`` command.
import bench  # noqa: F401


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens 100K `ua`, ratings >= 4 (fetched by the microbench session's set-up)."""
    from bench.datasets import load_dataset

    return load_dataset("ml-100k", split="ua", min_rating=4.0)
