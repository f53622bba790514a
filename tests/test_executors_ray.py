"""The Ray executor on a real 2-node Ray cluster on loopback, inside a network namespace.

Ray 2.60 binds to the machine's external interface even when told 127.0.0.1,
so the cluster (head and second node, each started by ``ray start`` as a
separate process) and the rsbench driver all run inside a fresh network
namespace that has only loopback. Needs root and ``ip netns`` (CI runs as
root); skipped with the reason otherwise. The fixture stops every process of
the namespace by its pid (``ip netns pids``) rather than ``ray stop``, which
would kill every Ray process of the machine, and checks that none is left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_executors import METRICS, assert_same_metrics, by_run, run_specs, suite_specs

from bench.execution.executors import make_executor
from bench.execution.runner import Runner

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rsbench[ray]'")

ROOT = Path(__file__).resolve().parents[1]
PORT = 6399
BOUND = 120  # seconds any one cluster command may take


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace (CI runs as root)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip netns`"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` unavailable: {probe.stderr.strip()}"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,  # a Ray cluster on a fixed port, started under time bounds
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]


class Cluster:
    """A head and a second Ray node (1 CPU each) in network namespace ``name``."""

    def __init__(self, name: str, temp_dir: Path) -> None:
        self.name = name
        self.temp_dir = temp_dir
        self.address = f"127.0.0.1:{PORT}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Token auth with a token of this cluster only, whatever ~/.ray holds.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }

    def exec(self, *cmd: str, timeout: float = BOUND, check: bool = True):
        """Run ``cmd`` inside the namespace (output captured)."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        return proc

    def pids(self) -> set[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return {int(p) for p in out.stdout.split()}

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=30)
        self.exec("ip", "link", "set", "lo", "up")
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats",
                  f"--object-store-memory={100 * 2**20}"]  # fmt: skip
        ray_bin = str(Path(sys.executable).parent / "ray")
        self.exec(ray_bin, "start", "--head", f"--port={PORT}", "--include-dashboard=false",
                  f"--temp-dir={self.temp_dir}", *common)  # fmt: skip
        self.exec(ray_bin, "start", f"--address={self.address}", *common)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = self.exec(ray_bin, "status", f"--address={self.address}", check=False)
            if status.stdout.count("node_") >= 2:
                return
            time.sleep(1)
        raise RuntimeError(f"the second Ray node never joined:\n{status.stdout}{status.stderr}")

    def stop(self) -> None:
        """Stop every process of the namespace (TERM, then KILL), then delete it."""
        # Some of Ray's processes take over 10 s to act on TERM; the test's cluster
        # holds nothing worth a graceful exit, so they get 2 s.
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not self.pids():
                break
        subprocess.run(["ip", "netns", "delete", self.name], timeout=30)


def _leftovers(marker: str) -> list[str]:
    """Processes whose command line mentions ``marker`` (the cluster's temp dir)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline[:120]}")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    temp_dir = Path(f"/tmp/rsb-ray-{os.getpid()}")  # Ray's socket paths must stay short
    name = f"rsbench-test-{os.getpid()}"
    cluster = Cluster(name, temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        left = _leftovers(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes left behind: {left}"
        assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout  # fmt: skip


def write_suite(path: Path, **keys) -> Path:
    lines = [
        'name = "cluster-test"',
        'dataset = "synthetic"',
        "seeds = [0, 1]",
        "threads = 1",
        "curves = false",
        'models = ["popularity", "ease", "random", '
        '{ name = "lightfm-bpr", preset = "fast", epochs = 2, seeds = [0] }]',
    ]
    for key, value in keys.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path


class Killer(threading.Thread):
    """SIGKILLs the Ray worker running ``run_id`` as soon as it is inside the run.

    "Inside the run" is the run's node-local mark (``<ray temp dir>/rsbench-runs/
    <node>/<pid>`` holding the run id), written once the task has started the run.
    """

    def __init__(self, cluster: Cluster, run_id: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.run_id = cluster, run_id
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and not self.killed:
            for mark in self.cluster.temp_dir.glob("rsbench-runs/*/*"):
                try:
                    if json.loads(mark.read_text())[0] != self.run_id:
                        continue
                    pid = int(mark.name)
                except (OSError, ValueError):
                    continue
                if pid in self.cluster.pids():
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                    return
            time.sleep(0.02)


def victim() -> str:
    """The run the killer takes down: the longest of the suite (LightFM, 2 epochs)."""
    return next(s.run_id for s in suite_specs() if s.model == "lightfm-bpr")


def run_driver(cluster: Cluster, config: Path, out: Path, *extra: str, kill: bool = False):
    killer = Killer(cluster, victim()) if kill else None
    if killer:
        killer.start()
    try:
        proc = cluster.exec(sys.executable, "-m", "bench.cli", "run", "--config", str(config),
                            "--out", str(out), *extra, timeout=300, check=False)  # fmt: skip
    finally:
        if killer:
            killer.done.set()
            killer.join()
    return proc, killer


@pytest.fixture(scope="module")
def local_reference():
    """The suite on the local executor, once: what every Ray run must equal."""
    with make_executor("local", Runner(curves=False)) as executor:
        return by_run(run_specs(executor, suite_specs()))


def results_of(out: Path) -> dict[str, object]:
    """The results folder as {run_id: row-with-per-user} for assert_same_metrics."""
    from types import SimpleNamespace

    runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
    per_user = pd.read_parquet(out / "per_user.parquet")
    found = {}
    for row in runs.to_dict("records"):
        users = per_user[per_user["run_id"] == row["run_id"]].reset_index(drop=True)
        found[row["run_id"]] = SimpleNamespace(row=row, per_user=users, ok=row["status"] == "ok")
    return found


def test_suite_over_two_nodes_survives_a_killed_worker(cluster, tmp_path, local_reference):
    """Retried once on another worker: complete table, each run once, metrics as local."""
    config = write_suite(tmp_path / "suite.toml", executor="ray", ray_address=cluster.address)
    proc, killer = run_driver(cluster, config, tmp_path / "out", kill=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert killer.killed, "no Ray worker was seen running a task"
    runs = pd.read_csv(tmp_path / "out" / "runs.csv", dtype={"run_id": str})
    expected = {s.run_id for s in suite_specs()}
    assert len(runs) == len(expected) and set(runs["run_id"]) == expected  # no loss, no duplicate
    assert (runs["status"] == "ok").all()
    assert (runs["executor"] == "ray").all() and (runs["threads"] == 1).all()
    assert runs["node"].nunique() == 2, "the suite did not spread over both nodes"
    # The victim's worker was SIGKILLed inside its run, yet its row is ok: Ray ran
    # it again (without retries the same kill gives a failed row, next test). Its
    # first attempt may be too short-lived to have reached the ledger.
    attempts = dict(zip(runs["run_id"], runs["attempts"]))
    assert attempts.pop(victim()) in (1, 2)
    assert set(attempts.values()) == {1}
    # One CPU per node and one CPU per run: no run shared its node (the killed
    # attempt is closed by the next run on its node, so it does not count).
    assert (runs["concurrent_runs"] == 0).all() and runs["timing_grade"].all()
    found = results_of(tmp_path / "out")
    assert_same_metrics(local_reference, found)
    for metric in METRICS:
        assert runs[metric].notna().all()


def test_no_retries_records_the_dead_run_and_local_resumes_it(cluster, tmp_path, local_reference):
    config = write_suite(tmp_path / "suite.toml", executor="ray", ray_address=cluster.address,
                         retries=0)  # fmt: skip
    out = tmp_path / "out"
    proc, killer = run_driver(cluster, config, out, kill=True)
    assert killer.killed
    assert proc.returncode == 1, proc.stderr[-3000:]  # a failed run, the others went on
    runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str}, keep_default_na=False)
    assert len(runs) == len(suite_specs()) and runs["run_id"].is_unique
    failed = runs[runs["status"] != "ok"]
    assert list(failed["run_id"]) == [victim()]
    assert failed["error"].iloc[0].startswith("WorkerDied: Ray WorkerCrashedError after 1 attempt")
    # Resume across executors: the same suite on `local` runs only the failed run.
    proc = cluster.exec(sys.executable, "-m", "bench.cli", "run", "--config", str(config),
                        "--out", str(out), "--executor", "local", check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"1 run(s) done, {len(suite_specs()) - 1} skipped" in proc.stdout
    runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
    assert len(runs) == len(suite_specs()) and (runs["status"] == "ok").all()
    assert sorted(runs["executor"]) == ["local"] + ["ray"] * (len(runs) - 1)
    assert_same_metrics(local_reference, results_of(out))


def test_local_ray_instance_is_started_and_stopped(cluster, tmp_path, local_reference):
    """Without --ray-address rsbench starts its own Ray instance and leaves nothing behind."""
    config = write_suite(tmp_path / "suite.toml", executor="ray")
    before = cluster.pids()
    token_file = Path.home() / ".ray" / "auth_token"
    had_token = token_file.exists()
    saved = {k: cluster.env.pop(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    try:  # as a user would run it: no Ray auth settings in the environment
        proc, _ = run_driver(cluster, config, tmp_path / "out")
    finally:
        cluster.env.update(saved)
    assert token_file.exists() == had_token, "rsbench made Ray write ~/.ray/auth_token"
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The calm terminal keeps INFO records in the results folder's log file.
    assert "started a local Ray instance" in (tmp_path / "out" / "rsbench.log").read_text()
    runs = pd.read_csv(tmp_path / "out" / "runs.csv", dtype={"run_id": str})
    assert len(runs) == len(suite_specs()) and runs["node"].nunique() == 1
    assert_same_metrics(local_reference, results_of(tmp_path / "out"))
    deadline = time.monotonic() + 30
    while cluster.pids() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not cluster.pids() - before, "the local Ray instance left processes behind"


def test_map_workers_as_ray_tasks(cluster):
    """The tuner's entry point: n study workers, each a Ray task on a fresh worker process."""
    script = (
        "import json, test_executors as t\n"
        "from bench.execution.executors import make_executor\n"
        "from bench.execution.runner import Runner\n"
        f"with make_executor('ray', Runner(), ray_address='{cluster.address}') as ex:\n"
        "    print(json.dumps(ex.map_workers(t._worker_pid, 3)))\n"
    )
    proc = cluster.exec(sys.executable, "-c", script, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(pids) == 3 and len(set(pids)) == 3


def test_tune_runs_jobs_study_workers_on_ray(cluster, tmp_path):
    """``rsbench tune --executor ray --jobs 2``: two study workers share one budget.

    (Before, a Ray tuning always ran one worker whatever --jobs said, and
    ``--jobs 2`` was refused for Ray.)
    """
    config = tmp_path / "tune.toml"
    config.write_text(
        'name = "ray-tune"\ndataset = "synthetic"\nseeds = [0]\ncurves = false\n'
        'models = ["ease"]\n[tune]\nbudget_trials = 4\npruner = "none"\n'
    )
    out = tmp_path / "out"
    proc = cluster.exec(sys.executable, "-m", "bench.cli", "-v", "tune", "--config", str(config),
                        "--out", str(out), "--executor", "ray", "--ray-address", cluster.address,
                        "--jobs", "2", "--phase", "tune", check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tuning done by 2 worker(s) on ray" in proc.stderr
    trials = pd.read_csv(out / "trials.csv", keep_default_na=False)
    assert (trials["state"] == "complete").sum() == 4  # the budget, shared by the workers
