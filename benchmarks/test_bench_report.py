"""Report generation at scale: 138,000 evaluated users x 3 models in at most 30 s on 2 cores.

Run with ``python -m pytest benchmarks/test_bench_report.py --benchmark-only``.
The folder is written once, outside the measured closure, through the real
:class:`bench.results.ResultStore` (runs.csv, per_user.parquet with every
metric column and user activity, curves.csv); the measurement is
``write_report`` on it, figures included. At this size every quality interval
uses the normal approximation (``bench.results.tables.NORMAL_ABOVE``) and the
paired intervals are t intervals, so nothing scales with resamples x users.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from bench.execution.runner import RunResult
from bench.results import ResultStore
from bench.results.report import build_report, write_report
from bench.results.tables import NORMAL_ABOVE
from metrics import metric_columns

NUM_USERS = 138_000
LABELS = ("popularity", "ease", "implicit-als")
BUDGET_SECONDS = 30.0


def _write_folder(folder) -> None:
    rng = np.random.default_rng(0)
    store = ResultStore(folder)
    store.write_manifest({"command": "benchmark", "experiment": "scale"})
    columns = metric_columns((5, 10, 20))
    activity = rng.geometric(0.02, NUM_USERS)
    spec = {"dataset": "ml-20m", "split": "u", "min_rating": 4.0, "dataset_options": {}}
    for i, label in enumerate(LABELS):
        skill = 0.85 + 0.03 * i
        values = {
            c: np.clip(rng.normal(skill if c == "auc" else skill / 5, 0.1, NUM_USERS), 0, 1)
            for c in columns
        }
        per_user = pd.DataFrame(
            {
                "run_id": f"r{i}",
                "label": label,
                "seed": 0,
                "user": np.arange(NUM_USERS),
                "activity": activity,
                **values,
            }
        )
        curve = pd.DataFrame(
            {
                "run_id": f"r{i}",
                "label": label,
                "seed": 0,
                "epoch": np.arange(1, 11),
                "fit_seconds": np.arange(1, 11) * 2.0,
                "auc": skill - 0.1 / np.arange(1, 11),
            }
        )
        row = {
            "run_id": f"r{i}",
            "label": label,
            "model": label,
            "preset": "",
            "seed": 0,
            "status": "ok",
            "error": "",
            "spec": json.dumps({**spec, "model": label}),
            "dataset_sha256": "ab" * 32,
            "fit_seconds": 10.0 * (i + 1),
            "epochs": 10,
            "seconds_per_epoch": i + 1.0,
            "eval_seconds": 5.0,
            "peak_rss_mb": 900.0,
            "rss_growth_mb": 100.0,
            "eval_users": NUM_USERS,
            "num_users": NUM_USERS,
            **{c: float(v.mean()) for c, v in values.items()},
        }
        store.add(RunResult(row, per_user, curve if i else curve.iloc[-1:]))


@pytest.mark.benchmark(group="report")
def test_report_at_138k_users_x_3_models(benchmark, tmp_path):
    folder = tmp_path / "scale"
    _write_folder(folder)
    assert NUM_USERS >= NORMAL_ABOVE
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    benchmark.pedantic(write_report, args=(folder,), rounds=3, iterations=1)
    assert benchmark.stats.stats.median <= BUDGET_SECONDS
    report = build_report(folder)
    assert set(report.quality["method"]) == {"normal"}
    assert (report.quality["users"] == NUM_USERS).all()
