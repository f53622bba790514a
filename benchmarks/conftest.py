"""Fixtures for the pytest-benchmark microbenchmarks (run by ``nox -s microbench``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens 100K `ua`, ratings >= 4 (fetched by the microbench session's set-up)."""
    from bench.data import load_dataset

    return load_dataset("ml-100k", split="ua", min_rating=4.0)
