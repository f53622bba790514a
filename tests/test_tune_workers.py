"""rsbench tune across processes: a real SIGKILL mid-trial, and two workers on one study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

from bench.execution.tuning import load_tune_config, run_studies, trial_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# EASE on a 1,500-item synthetic catalogue: each trial inverts a 1,500 x 1,500 Gram
# matrix, long enough (a fraction of a second) to be caught running.
CONFIG = """
name = "kill"
dataset = "synthetic"
dataset_options = {{ num_users = 300, num_items = 1500, num_positives = 9000 }}
seeds = [0]
models = ["ease"]
[tune]
budget_trials = {budget}
pruner = "none"
startup_trials = 3
"""
TIMEOUT = 300


def _write_config(folder: Path, budget: int) -> Path:
    path = folder / "tune.toml"
    path.write_text(CONFIG.format(budget=budget))
    return path


def _start(config: Path, out: Path, storage: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.cli", "-q", "tune", "--config", str(config)]
    cmd += ["--out", str(out), "--phase", "tune"]
    if storage:
        cmd += ["--storage", storage]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _trials(url: str) -> list:
    try:
        study = optuna.load_study(study_name=None, storage=url)
    except (KeyError, ValueError, Exception):  # not created yet
        return []
    return study.get_trials(deepcopy=False)


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_sigkill_loses_only_the_trial_in_flight_and_resume_reaches_the_budget(tmp_path):
    budget = 7
    config = _write_config(tmp_path, budget)
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'study.db'}"
    proc = _start(config, out)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            trials = _trials(url) if (out / "study.db").exists() else []
            if any(t.number >= 2 and t.state.name == "RUNNING" for t in trials):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the tuning run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        _stop(proc)
    before = _trials(url)
    states = [trial_state(t) for t in before]
    assert states.count("running") <= 1 and sum(s == "complete" for s in states) < budget
    # Resume: the dead worker's trial is marked interrupted, the rest runs to the budget.
    resumed = _start(config, out)
    try:
        output, _ = resumed.communicate(timeout=TIMEOUT)
    finally:
        _stop(resumed)
    assert resumed.returncode == 0, output.decode()[-2000:]
    after = [trial_state(t) for t in _trials(url)]
    assert after.count("complete") == budget
    assert after.count("interrupted") == states.count("running") <= 1
    assert "running" not in after
    table = pd.read_csv(out / "trials.csv", keep_default_na=False)
    assert (table["state"] == "complete").sum() == budget
    # One worker and a trial budget: the same trials as a run that was never killed.
    fresh = tmp_path / "fresh"
    run_studies(load_tune_config(config), fresh)
    reference = pd.read_csv(fresh / "trials.csv", keep_default_na=False)
    assert (
        table.loc[table["state"] == "complete", "params"].tolist() == reference["params"].tolist()
    )


def test_two_workers_share_one_budget(tmp_path):
    budget = 8
    config = _write_config(tmp_path, budget)
    out = tmp_path / "out"
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [_start(config, out, url), _start(config, out, url)]
    try:
        outputs = [w.communicate(timeout=TIMEOUT)[0] for w in workers]
    finally:
        _stop(*workers)
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output.decode()[-2000:]
    trials = _trials(url)
    states = [trial_state(t) for t in trials]
    assert states.count("complete") == budget  # per model, not per worker
    assert "running" not in states and "interrupted" not in states
    done_by = {t.user_attrs["worker"] for t in trials if trial_state(t) == "complete"}
    assert len(done_by) == 2


# One worker: open the shared storage, say so, wait for a byte on stdin, pop 12 trials.
POP_SCRIPT = """
import sys
import optuna
from bench.execution.tuning import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(study_name="queue", storage=open_storage(sys.argv[1]))
print("ready", flush=True)
sys.stdin.read(1)
print(*[study.ask().number for _ in range(12)])
"""


def test_workers_never_pop_the_same_enqueued_trial(tmp_path):
    """Four processes pop enqueued trials of one SQLite study at once: each trial once.

    pysqlite's deferred transactions let two workers read the same WAITING trial
    and both run it (the CI failure "Cannot tell a COMPLETE trial"); without
    ``BEGIN IMMEDIATE`` this popped a trial twice in 10 of 10 tries.
    """
    from bench.execution.tuning import open_storage

    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for x in range(48):
        study.enqueue_trial({"x": x})
    command = [sys.executable, "-c", POP_SCRIPT, url]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen(command, env=env, **pipes) for _ in range(4)]
    try:
        for worker in workers:  # every worker loaded, then all released at once
            assert worker.stdout.readline().strip() == b"ready", worker.stderr.read().decode()
        for worker in workers:
            worker.stdin.write(b"x")
            worker.stdin.flush()
        outputs = [w.communicate(timeout=TIMEOUT) for w in workers]
    finally:
        _stop(*workers)
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err.decode()[-2000:]
    popped = [int(n) for out, _ in outputs for n in out.split()]
    assert sorted(popped) == list(range(48))  # each enqueued trial by exactly one worker


def test_cli_tune_on_the_process_executor_keeps_one_budget_per_model(tmp_path):
    """rsbench tune --executor process --jobs 2: two study workers, the budget counted once."""
    import pandas as pd

    from bench.cli import main

    out = tmp_path / "tuned"
    argv = ["tune", "--models", "ease,itemknn", "--dataset", "synthetic", "--seeds", "0",
            "--budget-trials", "5", "--executor", "process", "--jobs", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    trials = pd.read_csv(out / "trials.csv", keep_default_na=False)
    done = trials[trials["state"].isin(["complete", "pruned", "failed"])]
    assert done.groupby("model").size().to_dict() == {"ease": 5, "itemknn": 5}
    # The trials ran in the executor's worker processes, not in this one.
    assert all(f":{os.getpid()}:" not in worker for worker in done["worker"])
    runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
    assert {"ease (tuned)", "itemknn (tuned)"} <= set(runs["label"])
