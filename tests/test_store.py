"""The results store: concurrent writers, shards, stale temporaries, formats and bad folders."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.execution.runner import RunResult
from bench.results import RESULTS_FORMAT, ResultsError, ResultStore, load_results

BASELINES = Path(__file__).resolve().parents[1] / "results" / "baseline"
WRITERS = 4
RUNS_PER_WRITER = 12


def _result(run_id: str, seed: int, users: int = 5) -> RunResult:
    rng = np.random.default_rng(abs(hash(run_id)) % 2**32)
    row = {
        "run_id": run_id,
        "label": f"model-{run_id[:2]}",
        "model": "m",
        "seed": seed,
        "status": "ok",
        "error": "",
        "auc": float(rng.random()),
        "spec": json.dumps({"model": "m", "seed": seed}),
    }
    per_user = pd.DataFrame(
        {
            "run_id": run_id,
            "label": row["label"],
            "seed": seed,
            "user": np.arange(users),
            "auc": rng.random(users),
        }
    )
    curve = pd.DataFrame({"run_id": run_id, "label": row["label"], "seed": seed, "epoch": [1, 2]})
    return RunResult(row, per_user, curve)


def _writer(folder: str, writer: int, barrier) -> None:
    store = ResultStore(folder)
    store.write_manifest({"command": f"writer {writer}", "started_at": str(writer)})
    barrier.wait()  # every writer is past its set-up: maximum interleaving from here on
    for i in range(RUNS_PER_WRITER):
        store.add(_result(f"w{writer}r{i:02d}", seed=i))
    store.update_manifest(finished_at=f"done {writer}", datasets={f"d{writer}": {"sha256": "x"}})


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    folder = tmp_path / "res"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(folder), w, barrier)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    loaded = load_results(folder)
    expected = sorted(f"w{w}r{i:02d}" for w in range(WRITERS) for i in range(RUNS_PER_WRITER))
    assert sorted(loaded["runs"]["run_id"]) == expected  # each exactly once
    counts = loaded["per_user"].groupby("run_id").size()
    assert sorted(counts.index) == expected and set(counts) == {5}
    assert set(loaded["curves"].groupby("run_id").size()) == {2}
    manifest = loaded["manifest"]
    assert manifest["results_format"] == RESULTS_FORMAT
    commands = sorted(entry["command"] for entry in manifest["invocations"])
    assert commands == sorted(f"writer {w}" for w in range(WRITERS))
    assert sorted(e["finished_at"] for e in manifest["invocations"]) == sorted(
        f"done {w}" for w in range(WRITERS)
    )
    assert set(manifest["datasets"]) == {f"d{w}" for w in range(WRITERS)}
    # Everything merged: no shard or temporary is left.
    assert not [p for p in (folder / "shards").iterdir() if p.name != "lock"]
    assert not list(folder.glob(".*.tmp"))


def test_readding_a_run_replaces_it(tmp_path):
    store = ResultStore(tmp_path)
    store.add(_result("aa01", 0, users=3))
    store.add(_result("aa01", 0, users=4))
    loaded = load_results(tmp_path)
    assert loaded["runs"]["run_id"].tolist() == ["aa01"]
    assert len(loaded["per_user"]) == 4


def test_an_unmerged_shard_is_read_and_merged_later(tmp_path):
    store = ResultStore(tmp_path)
    store.add(_result("aa01", 0))
    # A writer killed after committing its shard but before merging it.
    store.commit_shard(_result("bb02", 1))
    assert sorted(load_results(tmp_path)["runs"]["run_id"]) == ["aa01", "bb02"]
    assert pd.read_csv(tmp_path / "runs.csv")["run_id"].tolist() == ["aa01"]
    reopened = ResultStore(tmp_path)
    assert sorted(reopened.completed_ids()) == ["aa01", "bb02"]
    assert sorted(pd.read_csv(tmp_path / "runs.csv", dtype=str)["run_id"]) == ["aa01", "bb02"]


def test_temporaries_left_by_a_kill_are_removed_on_the_next_run(tmp_path):
    ResultStore(tmp_path).add(_result("aa01", 0))
    dead = multiprocessing.get_context("spawn").Process(target=os.getpid)
    dead.start()
    dead.join()
    stale = [
        tmp_path / ".runs.csv.abcd1234.tmp",  # format 1 (no process id)
        tmp_path / f".per_user.parquet.{dead.pid}-x1y2z3.tmp",
    ]
    for path in stale:
        path.write_text("partial")
    live = tmp_path / f".report.md.{os.getpid()}-q9w8e7.tmp"  # a live writer's file stays
    live.write_text("in progress")
    shard_tmp = tmp_path / "shards" / f".tmp-{dead.pid}-0123456789ab"
    shard_tmp.mkdir()
    (shard_tmp / "run.json").write_text("{")
    ResultStore(tmp_path)
    assert not any(p.exists() for p in stale) and not shard_tmp.exists()
    assert live.exists()


@pytest.mark.parametrize("name", ["notebook", "quick"])
def test_format_1_folders_still_load_and_resume(name, tmp_path):
    # A format-1 folder as rsbench wrote it before shards: the committed baseline with
    # its manifest stripped of what format 2 added (the tables are read the same way).
    folder = tmp_path / name
    shutil.copytree(BASELINES / name, folder, ignore=shutil.ignore_patterns("shards"))
    manifest_path = folder / "manifest.json"
    old = json.loads(manifest_path.read_text())
    for key in ("results_format", "invocations"):
        old.pop(key, None)
    manifest_path.write_text(json.dumps(old))
    before = load_results(folder)
    assert "results_format" not in before["manifest"]
    store = ResultStore(folder)
    assert len(store.completed_ids()) == int((before["runs"]["status"] == "ok").sum())
    store.write_manifest({"command": "again"})
    manifest = load_results(folder)["manifest"]
    assert manifest["results_format"] == RESULTS_FORMAT
    assert [e["command"] for e in manifest["invocations"]][-1] == "again"
    assert before["manifest"]["command"] in [e["command"] for e in manifest["invocations"]]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "res"
    ResultStore(folder).add(_result("aa01", 0))
    return folder


def test_newer_format_is_refused_with_upgrade_hint(tmp_path):
    folder = _folder(tmp_path)
    (folder / "manifest.json").write_text(json.dumps({"results_format": RESULTS_FORMAT + 1}))
    with pytest.raises(ResultsError, match="upgrade rsbench"):
        load_results(folder)


def _no_run_id(folder: Path) -> None:
    runs = pd.read_csv(folder / "runs.csv").drop(columns=["run_id"])
    runs.to_csv(folder / "runs.csv", index=False)


def _manifest_list(folder: Path) -> None:
    (folder / "manifest.json").write_text("[1, 2]")


def _auc_strings(folder: Path) -> None:
    per_user = pd.read_parquet(folder / "per_user.parquet")
    per_user["auc"] = per_user["auc"].map(lambda v: f"{v:.3f}")
    per_user.to_parquet(folder / "per_user.parquet", index=False)


def _truncated(folder: Path) -> None:
    raw = (folder / "runs.csv").read_bytes()
    (folder / "runs.csv").write_bytes(raw[: len(raw) - 7])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_no_run_id, "lacks column(s) run_id"),
        (_manifest_list, "must hold a JSON object, got a list"),
        (_auc_strings, "metric column 'auc' holds"),
        (_truncated, "truncated"),
    ],
)
def test_report_on_a_damaged_folder_is_one_line_exit_2(tmp_path, capsys, damage, message):
    folder = _folder(tmp_path)
    damage(folder)
    with pytest.raises(ResultsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_results(folder)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and message in err
    assert main(["regress", str(folder), "--baseline", str(folder)]) == 2


def test_three_rsbench_runs_into_one_folder_keep_every_run(tmp_path):
    """Issue 12.1 as reported: concurrent ``rsbench run`` commands into one ``--out``."""
    import subprocess
    import sys

    out = tmp_path / "c"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    commands = [
        ["--models", "random", "--seeds", "0,1,2,3"],
        ["--models", "popularity,ease", "--seeds", "0,1"],
        ["--models", "random", "--seeds", "4,5,6"],
    ]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.cli",
                "-q",
                "run",
                "--dataset",
                "synthetic",
                "--no-curves",
                "--no-isolate",  # the store's concurrency is the point, not the workers
                "--out",
                str(out),
                *args,
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    loaded = load_results(out)
    runs = loaded["runs"]
    # random x 7 seeds, popularity and ease once each (deterministic): every run exactly once.
    assert sorted(zip(runs["label"], runs["seed"])) == sorted(
        [("random", s) for s in range(7)] + [("popularity", 0), ("ease", 0)]
    )
    assert runs["run_id"].is_unique and set(runs["status"]) == {"ok"}
    assert set(loaded["per_user"]["run_id"]) == set(runs["run_id"])
    invocations = loaded["manifest"]["invocations"]
    assert len(invocations) == 3 and all(i["finished_at"] for i in invocations)
