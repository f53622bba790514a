"""The runner times the sampler's set-up as training cost and records it in its own column."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.datasets.synthetic import synthetic
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import Registry
from models.baselines import Popularity

DATA = synthetic(num_users=40, num_items=30, num_positives=600, seed=3)
SETUP_SECONDS = 0.3


def loader(name, split, min_rating, **options):
    return DATA


class SlowSampler(Popularity):
    """Popularity whose sampler set-up takes SETUP_SECONDS; its fit is instantaneous."""

    def make_sampler(self, train):
        time.sleep(SETUP_SECONDS)
        return None

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        self._start_fit(train, rng, epochs)
        self._counts = train.item_counts().astype(np.float32)
        self._fitted = True
        return self

    def score(self, user_ids):
        user_ids = self._check_user_ids(user_ids)
        return np.ascontiguousarray(np.broadcast_to(self._counts, (len(user_ids), self._num_items)))


@pytest.mark.serial  # a wall-clock bound on the set-up
def test_fit_seconds_include_the_sampler_setup():
    registry = Registry()
    registry.register("slow-sampler", "test_runner_sampler_setup:SlowSampler")
    result = Runner(registry, loader=loader).run(RunSpec(model="slow-sampler", seed=0))
    assert result.ok, result.row["error"]
    row = result.row
    assert SETUP_SECONDS <= row["sampler_setup_seconds"] < SETUP_SECONDS + 1.0
    assert row["fit_seconds"] >= row["sampler_setup_seconds"]
    assert row["seconds_per_epoch"] * row["epochs"] >= SETUP_SECONDS
