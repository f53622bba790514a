"""Isolated runs with real processes: native crashes, time and memory limits, signals.

Issue 12, items 2, 3 and 11. Every test here starts real child processes
(seconds each), so each one covers several cases at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import bench.execution.runner
from bench.cli import main
from bench.execution.executors import make_executor
from bench.execution.isolation import Isolation
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import Registry
from bench.results import load_results
from models.baselines import Popularity

ROOT = Path(__file__).resolve().parent.parent
# Time limits, memory limits and signals, checked against the wall clock: alone.
pytestmark = pytest.mark.serial


class Segfaulting(Popularity):
    """Dereferences a null pointer in fit: a real SIGSEGV in native code."""

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        import ctypes

        ctypes.string_at(0)


class Sleeping(Popularity):
    """Hangs in fit (as a deadlocked run would)."""

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        time.sleep(600)


class Hogging(Popularity):
    """Grows without bound in fit: 20 MiB every 10 ms (capped at 3 GiB, to fail loudly)."""

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        held = []
        while len(held) < 150:
            held.append(np.ones(20 * 2**20 // 8))  # ones() touches every page
            time.sleep(0.01)
        raise RuntimeError("the memory limit did not stop this run")


def isolation_registry() -> Registry:
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.register("random", "models.baselines:RandomModel")
    reg.register("ease", "models.baselines:EASE")
    reg.register("segfault", "test_cli_isolation:Segfaulting")
    reg.register("sleep", "test_cli_isolation:Sleeping")
    reg.register("hog", "test_cli_isolation:Hogging")
    return reg


def test_cli_isolates_by_default_so_a_segfault_is_a_failed_run(monkeypatch, tmp_path, capsys):
    # Issue 12 item 2: popularity, then a native crash, then EASE with l2 = 1e-300
    # (which crashed LAPACK in-process), then random. Without isolation the
    # process died with exit 139 and random never ran.
    monkeypatch.setattr(bench.execution.runner, "default_registry", isolation_registry)
    out = tmp_path / "res"
    cfg = tmp_path / "crash.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            name = "crash"
            dataset = "synthetic"
            out = "{out}"
            models = ["popularity", "segfault", {{ name = "ease", params = {{ l2 = 1e-300 }} }},
                      "random"]
            """
        )
    )
    # Generous limits on the command line: healthy runs finish under them.
    code = main(["run", "--config", str(cfg), "--timeout-s", "300", "--max-memory-mb", "4000"])
    assert code == 1
    loaded = load_results(out)
    runs = loaded["runs"].set_index("model")
    assert runs.loc["popularity", "status"] == "ok"
    assert runs.loc["random", "status"] == "ok"  # the suite went on after the crash
    assert runs.loc["segfault", "status"] == "failed"
    assert "signal 11 (SIGSEGV)" in runs.loc["segfault", "error"]
    assert runs.loc["ease", "status"] == "failed"
    assert "numerically singular" in runs.loc["ease", "error"]
    assert "use l2 >=" in runs.loc["ease", "error"]
    manifest = loaded["manifest"]
    assert manifest["finished_at"] and manifest["status"] == "complete"
    assert manifest["isolate"] is True
    assert (manifest["timeout_s"], manifest["max_memory_mb"]) == (300.0, 4000.0)
    assert "2 run(s) done, 0 skipped, 2 failed" in capsys.readouterr().out


def test_time_and_memory_limits_stop_a_run_and_the_others_go_on(caplog):
    # Issue 12 item 11: a hanging run and a run that grows without bound.
    common = {"dataset": "synthetic", "split": "random", "min_rating": None}
    started = time.monotonic()
    hung = Isolation(timeout_s=6).run(
        Runner(isolation_registry()), RunSpec(model="sleep", **common)
    )
    took = time.monotonic() - started
    assert not hung.ok
    assert hung.row["error"] == "TimeoutError: timed out after 6 s (killed)"
    assert 6 <= took < 30
    # A generous time limit next to the memory limit (a loaded machine starts children slowly).
    isolation, runner = Isolation(timeout_s=300, max_memory_mb=600), Runner(isolation_registry())
    grown = isolation.run(runner, RunSpec(model="hog", **common))
    assert not grown.ok
    assert grown.row["error"].startswith("MemoryError: exceeded 600 MiB (")
    resident = float(grown.row["error"].split("(")[1].split(" MiB")[0])
    assert 600 < resident < 2900  # stopped after crossing the limit, before the hog's own cap
    fine = isolation.run(runner, RunSpec(model="popularity", **common))
    assert fine.ok, fine.row["error"]
    # The killed processes were reaped, not left for a second kill.
    assert "did not exit after reporting" not in caplog.text


def test_limits_need_isolated_runs():
    with pytest.raises(ValueError, match="timeout_s stops a run by killing its process"):
        make_executor("local", Runner(isolation_registry()), timeout_s=5)
    with pytest.raises(ValueError, match="max_memory_mb must be a finite number > 0"):
        Isolation(max_memory_mb=float("nan"))
    with pytest.raises(ValueError, match="max_memory_mb must be a finite number > 0"):
        make_executor("process", Runner(isolation_registry()), max_memory_mb=0)


# -- signals (issue 12 item 3) -----------------------------------------------------------
def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in processes if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in processes if not _gone(p)]


def _start_long_run(out: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A real ``python -m bench.cli run`` whose isolated child trains for hours."""
    pytest.importorskip("lightfm")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--dataset", "synthetic"]
    cmd += ["--models", "lightfm-bpr", "--epochs", "100000000", "--no-curves", "--out", str(out)]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a Ctrl-C at the terminal stays with pytest
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        workers = [
            p
            for p in parent.children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        # Training has begun once the worker has burnt CPU beyond its imports.
        if workers and sum(workers[0].cpu_times()[:2]) > 2.5:
            return proc, parent.children(recursive=True)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the run's worker never started training: {proc.communicate()}")


def _cleanup(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    for p in children:
        if not _gone(p):
            p.kill()
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def test_sigterm_abandons_the_run_kills_the_child_and_records_it(tmp_path):
    out = tmp_path / "res"
    proc, children = _start_long_run(out)
    try:
        assert children
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143
        assert "interrupted by SIGTERM" in err and "abandoned" in err
        assert "Traceback" not in err
        assert _wait_gone(children, timeout=10) == []
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["finished_at"]
        assert manifest["status"] == "interrupted by SIGTERM"
        assert not (out / "runs.csv").exists()  # the abandoned run left no row
    finally:
        _cleanup(proc, children)


def test_sigkill_of_the_parent_takes_the_child_down(tmp_path):
    proc, children = _start_long_run(tmp_path / "res")
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # PR_SET_PDEATHSIG: the kernel kills the worker when its parent dies.
        assert _wait_gone(children, timeout=10) == []
    finally:
        _cleanup(proc, children)


def test_the_watchdog_ends_an_orphan_where_prctl_is_not_used(tmp_path):
    # The portable fallback alone: a grandchild that only runs the watchdog
    # thread (no prctl) must exit once its parent is SIGKILLed.
    grandchild = (
        "import os, threading, time\n"
        "parent = os.getppid()\n"
        "from bench.execution.isolation import _watch_parent\n"
        "threading.Thread(target=_watch_parent, args=(parent, 0.1), daemon=True).start()\n"
        "print('watching', flush=True)\n"
        "time.sleep(120)\n"
    )
    middle = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", middle],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    orphan = psutil.Process(int(proc.stdout.readline()))
    try:
        assert proc.stdout.readline().strip() == "watching"
        assert not _gone(orphan)
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_gone([orphan], timeout=10) == []
    finally:
        _cleanup(proc, [orphan])
