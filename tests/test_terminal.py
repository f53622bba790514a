"""A benchmark's terminal output: short by default, detailed with -v, noise in the log file.

The quick suite is reduced to stay cheap (three models, two seeds, two epochs,
synthetic data) but keeps what made its log long: isolated workers that start
TensorFlow and PyTorch, and INFO logging from every evaluation.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from bench import suites

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["popularity", "keras-bilinear:fast", "torch-bilinear:fast"]
REQUIRES = {"keras-bilinear:fast": "tensorflow", "torch-bilinear:fast": "torch"}


def line_budget(num_runs: int, num_labels: int) -> int:
    """Default output of ``rsbench run``: one line per run, the summary table, 6 more.

    (The summary is a header plus one line per label; the rest is a blank
    line, the results line and room for an error or two.) For the full quick
    suite, 26 runs of 13 labels: 46 lines.
    """
    return num_runs + (num_labels + 1) + 6


def _reduced_quick(tmp_path: Path, seeds=(0, 1)) -> tuple[Path, int, int]:
    options = tomllib.loads(suites.path("quick").read_text())
    models = [m for m in MODELS if m not in REQUIRES or importlib.util.find_spec(REQUIRES[m])]
    for key in ("split", "min_rating", "dataset", "out"):
        options.pop(key, None)
    options.update(dataset="synthetic", models=models, epochs=2, seeds=list(seeds))
    assert options["isolate"] is True  # the quick suite isolates: workers' noise is the point

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    config = tmp_path / f"quick-reduced-{len(seeds)}.toml"
    config.write_text("".join(f"{k} = {value(v)}\n" for k, v in options.items()))
    from bench.registry import default_registry

    registry = default_registry(plugins=False)
    # A deterministic model runs once whatever the seeds.
    runs = sum(1 if registry.make(m.split(":")[0]).deterministic else len(seeds) for m in models)
    return config, runs, len(models)


def _rsbench(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
def test_default_output_stays_under_the_line_budget_and_v_restores_detail(tmp_path):
    config, num_runs, num_labels = _reduced_quick(tmp_path)
    quiet = _rsbench("run", "--config", str(config), "--out", str(tmp_path / "a"), cwd=tmp_path)
    lines = quiet.splitlines()
    assert len(lines) <= line_budget(num_runs, num_labels), quiet
    assert sum(1 for line in lines if line.startswith("[")) == num_runs  # one line per run
    assert f"[{num_runs}/{num_runs}]" in quiet and "ETA" in quiet
    for noise in ("INFO", "WARNING", "cuInit", "oneDNN", "absl", "cuda"):
        assert noise not in quiet, noise
    log = (tmp_path / "a" / "rsbench.log").read_text()
    # Isolated workers' records and native output are kept, not lost.
    assert "INFO metrics.evaluator [worker]: evaluated" in log
    # deterministic: one run, seed 0
    assert "INFO bench.execution.session: popularity seed 0" in log

    # The same models with one seed (each isolated worker's detail is the point, not
    # the number of runs): -v prints every worker's records, which is more lines.
    config, loud_runs, _ = _reduced_quick(tmp_path, seeds=(0,))
    loud = _rsbench(
        "-v", "run", "--config", str(config), "--out", str(tmp_path / "b"), cwd=tmp_path
    )
    assert loud.count("INFO metrics.evaluator: evaluated") >= loud_runs
    assert len(loud.splitlines()) > len(lines)
