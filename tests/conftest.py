"""Shared fixtures: seeded generators, tiny synthetic data, the real ML-100K split."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

from bench.datasets.dataset import SideFeatures
from bench.datasets.synthetic import synthetic

#: Modules whose tests must run alone (``serial``) but whose files do not say so yet.
SERIAL_MODULES = {
    "test_tune_budget.py": "seconds budgets measured on the wall clock",
    "test_tune_workers.py": "a real SIGKILL mid-trial, and worker processes racing on a study",
}


def pytest_ignore_collect(collection_path, config):
    """Under ``-m serial`` alone, do not import modules without a serial test.

    Importing every module only to deselect it costs TensorFlow's import (seconds)
    in the serial part of ``nox -s tests``. A module holds a serial test only if
    it names the marker or is listed in ``SERIAL_MODULES``.
    """
    if config.getoption("markexpr", "") != "serial" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_") or collection_path.name in SERIAL_MODULES:
        return None
    return True if "serial" not in collection_path.read_text(encoding="utf-8") else None


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config, items):
    """Mark the tests of ``SERIAL_MODULES`` serial; on xdist workers, start with the slow ones.

    A worker that picks up a minute-long test at the end of the run leaves the other
    idle that long: the ``slow`` tests go first, so they end while short ones remain.
    """
    for item in items:
        if item.path.name in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny():
    """A tiny synthetic dataset (60 users, 80 items) every model can fit in a second."""
    return synthetic(num_users=60, num_items=80, num_positives=1_200, test_per_user=2, seed=7)


@pytest.fixture(scope="session")
def tiny_features(tiny):
    """Random one-hot user (4 groups) and item (5 groups + 3 flags) side features for `tiny`."""
    gen = np.random.default_rng(3)
    user_group = gen.integers(0, 4, tiny.num_users)
    users = sp.csr_matrix(
        (np.ones(tiny.num_users), (np.arange(tiny.num_users), user_group)),
        shape=(tiny.num_users, 4),
    )
    item_group = gen.integers(0, 5, tiny.num_items)
    items = sp.hstack(
        [
            sp.csr_matrix(
                (np.ones(tiny.num_items), (np.arange(tiny.num_items), item_group)),
                shape=(tiny.num_items, 5),
            ),
            sp.csr_matrix(gen.random((tiny.num_items, 3)) < 0.3),
        ]
    ).tocsr()
    return (
        SideFeatures(users, tuple(f"group={g}" for g in range(4))),
        SideFeatures(items, tuple([f"kind={g}" for g in range(5)] + ["a", "b", "c"])),
    )


@pytest.fixture(scope="session")
def ml100k():
    """The real MovieLens 100K `ua` split with ratings >= 4 as positives.

    The data is fetched by the test session's set-up (``rsbench data ml-100k``);
    run with ``-m "not realdata"`` on a machine that cannot fetch it.
    """
    from bench.datasets import load_dataset

    return load_dataset("ml-100k", split="ua", min_rating=4.0)


@pytest.fixture(scope="session")
def ml100k_fit(ml100k):
    """``ml100k_fit(name, preset, seed=0)``: that model fitted on ``ml100k`` once per session.

    For tests that only read a trained model (scores, metrics): the realdata
    notebook-preset fits take tens of seconds each. Tests that use it carry
    ``pytest.mark.xdist_group("ml100k-fits")`` so that one worker fits each model.
    """
    from bench.registry import default_registry

    registry = default_registry()
    fitted = {}

    def fit(name: str, preset: str | None = None, seed: int = 0):
        key = (name, preset, seed)
        if key not in fitted:
            model = registry.make(name, preset)
            fitted[key] = model.fit(ml100k.train, rng=np.random.default_rng(seed))
        return fitted[key]

    return fit
