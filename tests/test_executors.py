"""Executors: local and process give identical results, exactly once each; timing grade; options."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.config import ConfigError, build_experiment
from bench.execution.executors import (
    ExecutorError,
    Overlaps,
    ProcessExecutor,
    check_executor_options,
    make_executor,
)
from bench.execution.executors.ray import task_options
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import default_registry
from bench.results.tables import timing_grade_runs
from bench.threads import thread_limits

METRICS = ("auc", "precision@10", "recall@10", "map@10", "ndcg@10", "mrr")


def suite_specs(threads: int | None = 1) -> list[RunSpec]:
    """Cheap models that are deterministic per seed, on the synthetic dataset."""
    common = {"dataset": "synthetic", "split": "random", "min_rating": None, "threads": threads}
    # popularity and ease are deterministic: a suite runs them once (seed 0), as the CLI does.
    specs = [RunSpec(model=m, seed=0, **common) for m in ("popularity", "ease")]
    specs += [RunSpec(model="random", seed=s, **common) for s in (0, 1)]
    # An iterative model with its own sampler and an epochs override, where LightFM is
    # installed (the core models above keep the executors tested without it).
    if default_registry().get("lightfm-bpr").available:
        specs.append(RunSpec(model="lightfm-bpr", preset="fast", seed=0, epochs=2, **common))
    return specs


def run_specs(executor, specs) -> list:
    """Every result of ``specs`` through the executor's own interface (completion order)."""
    results: list = []
    executor.run(list(specs), results.append)
    return results


def by_run(results) -> dict[str, object]:
    out: dict[str, object] = {}
    for result in results:
        run_id = result.row["run_id"]
        assert run_id not in out, f"run {run_id} delivered twice"
        out[run_id] = result
    return out


def assert_same_metrics(reference, other) -> None:
    """Every metric mean and every per-user value identical, bit for bit."""
    assert set(reference) == set(other)
    for run_id, ref in reference.items():
        got = other[run_id]
        assert ref.ok and got.ok, (ref.row.get("error"), got.row.get("error"))
        for metric in METRICS:
            assert ref.row[metric] == got.row[metric], (ref.row["label"], metric)
        pd.testing.assert_frame_equal(
            ref.per_user.reset_index(drop=True), got.per_user.reset_index(drop=True)
        )


@pytest.fixture(scope="module")
def local_results():
    with make_executor("local", Runner(curves=False)) as executor:
        return by_run(run_specs(executor, suite_specs()))


def test_process_matches_local_bit_for_bit(local_results):
    specs = suite_specs()
    with make_executor("process", Runner(curves=False), jobs=2) as executor:
        results = by_run(run_specs(executor, specs))
    assert set(results) == {s.run_id for s in specs}  # every spec exactly once
    assert_same_metrics(local_results, results)
    rows = pd.DataFrame([r.row for r in results.values()])
    assert set(rows["executor"]) == {"process"}
    assert (rows["threads"] == 1).all()
    # Two at a time: some runs overlapped another and are not timing-grade.
    assert rows["concurrent_runs"].max() >= 1
    assert (rows["timing_grade"] == (rows["concurrent_runs"] == 0)).all()


def test_local_rows_are_timing_grade(local_results):
    rows = pd.DataFrame([r.row for r in local_results.values()])
    assert (rows["executor"] == "local").all()
    assert (rows["concurrent_runs"] == 0).all() and rows["timing_grade"].all()
    assert (rows["attempts"] == 1).all()


def test_overlaps_when_the_finish_reaches_the_ledger_before_the_begin():
    """Ray orders no actor calls from two callers: a late begin must not count twice."""
    ledger = Overlaps()
    assert ledger.finish("a", "n1", 0.0, 1.0) == (0, 1)  # a run that reported had an attempt
    ledger.begin("a", "n1", 0.0)  # arrives late: ignored, the attempt is closed already
    ledger.begin("b", "n1", 2.0)
    assert ledger.finish("b", "n1", 2.0, 3.0) == (0, 1)  # a is not left open to overlap b


def test_overlaps_counts_other_runs_on_the_same_node():
    ledger = Overlaps()
    ledger.begin("a", "n1", 0.0)
    ledger.begin("b", "n1", 5.0)
    ledger.begin("c", "n2", 1.0)  # another node never counts
    assert ledger.finish("a", "n1", 0.0, 10.0) == (1, 1)  # b started before a ended
    assert ledger.finish("c", "n2", 1.0, 2.0) == (0, 1)
    ledger.begin("d", "n1", 20.0)  # after a and b... b is still open
    assert ledger.finish("b", "n1", 5.0, 12.0) == (1, 1)  # a overlapped; d starts later
    assert ledger.finish("d", "n1", 20.0, 21.0) == (0, 1)
    # A dead attempt is closed when the retry begins, and attempts are counted.
    ledger.begin("e", "n1", 30.0)
    ledger.begin("e", "n1", 31.0)
    assert ledger.finish("e", "n1", 31.0, 32.0) == (0, 2)
    assert ledger.abandon("f", 40.0) == 0
    # A killed attempt found dead by the next run on its node no longer overlaps it.
    ledger.begin("g", "n3", 50.0)
    ledger.close("g", "n3", 50.0, 55.0)
    ledger.begin("h", "n3", 55.0)
    assert ledger.finish("h", "n3", 55.0, 60.0) == (0, 1)
    assert ledger.abandon("g", 70.0) == 1


def test_timing_grade_runs_selects_isolated_rows(tmp_path):
    runs = pd.DataFrame(
        {"run_id": ["a", "b", "c"], "timing_grade": [True, False, True], "fit_seconds": [1, 2, 3]}
    )
    assert list(timing_grade_runs(runs)["run_id"]) == ["a", "c"]
    assert list(timing_grade_runs(runs, include_all=True)["run_id"]) == ["a", "b", "c"]
    # Read back from CSV, and older rows without a value count as sequential runs.
    runs = pd.concat([runs, pd.DataFrame({"run_id": ["d"], "fit_seconds": [4]})])
    runs.to_csv(tmp_path / "runs.csv", index=False)
    back = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False, na_values=[""])
    assert list(timing_grade_runs(back)["run_id"]) == ["a", "c", "d"]
    assert list(timing_grade_runs(back.drop(columns="timing_grade"))["run_id"]) == list("abcd")


def test_process_retries_a_worker_that_died(tmp_path, monkeypatch):
    """A child that dies before reporting is run again; past the retries it is recorded failed."""
    from bench.execution.isolation import Isolation
    from bench.execution.runner import RunResult

    died = {"n": 0}
    original = Isolation.run

    def dies_first(self, runner, spec, data=None):
        if spec.model == "ease" and died["n"] < 1:
            died["n"] += 1
            return RunResult.failed(spec, 0.0, "WorkerDied: exit code -9")
        return original(self, runner, spec, data)

    monkeypatch.setattr(Isolation, "run", dies_first)
    specs = [s for s in suite_specs() if s.model in ("ease", "popularity")]
    with make_executor("process", Runner(curves=False), jobs=2, retries=1) as executor:
        results = by_run(run_specs(executor, specs))
    assert all(r.ok for r in results.values())
    attempts = {r.row["label"] + str(r.row["seed"]): r.row["attempts"] for r in results.values()}
    assert sorted(attempts.values()) == [1, 2]  # popularity once, ease retried once

    died["n"] = -5  # dies twice more than retries allow
    with make_executor("process", Runner(curves=False), jobs=2, retries=1) as executor:
        results = by_run(run_specs(executor, [s for s in specs if s.model == "ease"][:1]))
    (result,) = results.values()
    assert not result.ok and result.row["error"].startswith("WorkerDied")
    assert result.row["attempts"] == 2 and not result.row["timing_grade"]


def test_a_model_error_is_not_retried(monkeypatch):
    spec = RunSpec(model="ease", params={"l2": -1.0}, dataset="synthetic", split="random",
                   min_rating=None)  # fmt: skip
    with make_executor("process", Runner(curves=False), jobs=2, retries=3) as executor:
        (result,) = run_specs(executor, [spec])
    assert not result.ok and result.row["attempts"] == 1


def test_threads_is_part_of_the_spec_only_when_given():
    plain = RunSpec(model="ease")
    assert "threads" not in plain.to_dict()
    # Ids computed on main (e6deb22) before the field existed: unchanged.
    assert plain.run_id == "54d9de5381f43dd6"
    other = RunSpec(model="popularity", seed=3, dataset="synthetic", split="random",
                    min_rating=None)  # fmt: skip
    assert other.run_id == "c8746869e8d66bb4"
    assert RunSpec(model="ease", threads=2).run_id != plain.run_id
    assert RunSpec(model="ease", threads=2).to_dict()["threads"] == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            RunSpec(model="ease", threads=bad)


def test_thread_limits_sets_and_restores_pools(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    with thread_limits(1):
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["TF_NUM_INTRAOP_THREADS"] == "1"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "TF_NUM_INTRAOP_THREADS" not in os.environ
    with thread_limits(None):
        assert os.environ["OMP_NUM_THREADS"] == "7"


def test_thread_limits_torch():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with thread_limits(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "cluster"}, "executor must be one of local, process, ray"),
        ({"executor": "process", "jobs": 0}, r"jobs must be (>= 1|an integer in \[1,)"),
        ({"executor": "process", "jobs": 1.5}, "jobs must be an integer"),
        ({"executor": "local", "jobs": 2}, "needs executor 'process'"),
        ({"executor": "ray", "jobs": 2}, "jobs = 2 needs executor 'process'"),
        ({"executor": "ray", "retries": -1}, r"retries must be (>= 0|an integer in \[0,)"),
        ({"executor": "local", "ray_address": "auto"}, "needs executor 'ray'"),
        ({"executor": "ray", "ray_address": "nohost"}, "'auto' or HOST:PORT"),
        ({"executor": "ray", "ray_address": 5}, "'auto' or HOST:PORT"),
    ],
)
def test_bad_executor_options(options, message):
    with pytest.raises(ExecutorError, match=message):
        check_executor_options(**options, where="x.toml")
    with pytest.raises(ConfigError, match=message):
        build_experiment({"models": ["popularity"], **options}, source="x.toml")


def test_jobs_on_ray_are_the_study_workers_of_tune():
    # rsbench tune: --jobs study workers on Ray; rsbench run: Ray schedules runs by its CPUs.
    checked = check_executor_options("ray", jobs=2, command="tune")
    assert checked["jobs"] == 2 and checked["executor"] == "ray"
    with pytest.raises(ExecutorError, match="jobs = 2 needs executor 'process' \\(rsbench run"):
        check_executor_options("ray", jobs=2, command="run")
    from bench.execution.tuning import build_tune_config

    config = build_tune_config(
        {"models": ["ease"], "executor": "ray", "jobs": 3, "tune": {"budget_trials": 2}}
    )
    assert config.experiment.execution["jobs"] == 3


def test_executor_options_from_toml_and_flags(tmp_path):
    exp = build_experiment(
        {"models": ["popularity", {"name": "ease", "threads": 2}], "executor": "process",
         "jobs": 3, "retries": 0, "threads": 1},
        source="x.toml",
    )  # fmt: skip
    assert exp.execution == {"executor": "process", "jobs": 3, "ray_address": None, "retries": 0}
    assert [s.threads for s in exp.specs] == [1, 2]
    exp = build_experiment({"models": ["popularity"], "executor": "ray", "ray_address": "auto"})
    assert exp.execution == {"executor": "ray", "jobs": 1, "ray_address": "auto", "retries": 1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--executor", "process", "--jobs", "0"], "--jobs must be an integer in [1,"),
        (["--jobs", "2"], "needs executor 'process'"),
        (["--ray-address", "auto"], "needs executor 'ray'"),
        (["--threads", "0"], "--threads must be an integer in [1, 4096]"),
        (["--jobs", "two", "--executor", "process"], "--jobs must be an integer"),
        (["--executor", "process", "--retries", "-1"], "--retries must be an integer in [0,"),
    ],
)
def test_cli_rejects_bad_executor_flags(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main(["run", "--models", "popularity", "--dataset", "synthetic", "--out", str(out),
                 *argv])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "runs.csv").exists()


def test_cli_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["run", "--models", "popularity", "--dataset", "synthetic", "--executor", "ray",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "pip install 'rsbench[ray]'" in capsys.readouterr().err


def test_cli_resume_across_executors(tmp_path, capsys):
    """process --jobs 2 first; the same command on local skips every completed run id."""
    out = tmp_path / "out"
    # random runs once per seed; ease is deterministic and runs once (seed 0).
    common = ["run", "--models", "random,ease", "--seeds", "0,1", "--dataset", "synthetic",
              "--threads", "1", "--no-curves", "--out", str(out)]  # fmt: skip
    assert main([*common, "--executor", "process", "--jobs", "2"]) == 0
    runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
    assert len(runs) == 3 and runs["run_id"].is_unique and (runs["executor"] == "process").all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["execution"] == {"executor": "process", "jobs": 2, "ray_address": None,
                                     "retries": 1}  # fmt: skip
    capsys.readouterr()
    # A bigger suite on another executor: only the new run executes.
    assert main([*common[:2], "random,ease,popularity", *common[3:], "--executor", "local"]) == 0
    assert "1 run(s) done, 3 skipped" in capsys.readouterr().out
    runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
    assert len(runs) == 4 and runs["run_id"].is_unique
    assert sorted(runs["executor"]) == ["local"] + ["process"] * 3
    per_user = pd.read_parquet(out / "per_user.parquet")
    assert set(per_user["run_id"]) == set(runs["run_id"])


def test_map_workers_local_and_process():
    assert make_executor("local", Runner()).map_workers(pow, 4, 2) == [0, 1, 4, 9]
    with make_executor("process", Runner(), jobs=2) as executor:
        assert isinstance(executor, ProcessExecutor)
        pids = executor.map_workers(_worker_pid, 3)
    assert len(set(pids)) == 3 and os.getpid() not in pids  # a fresh process per worker


def _worker_pid(i: int) -> int:
    return os.getpid()


def test_metrics_do_not_depend_on_the_executor_columns(local_results):
    # The executor's columns never enter the spec, so run ids match across executors.
    for result in local_results.values():
        spec = json.loads(result.row["spec"])
        assert not set(spec) & {"executor", "node", "concurrent_runs", "timing_grade"}
        assert np.isfinite(result.row["auc"])


def test_ray_task_options_declare_threads_and_gpu():
    runner = Runner()
    spec = RunSpec(model="ease", threads=3)
    assert task_options(runner, spec, 2) == {"num_cpus": 3, "max_retries": 2,
                                             "retry_exceptions": False}  # fmt: skip
    assert task_options(runner, RunSpec(model="ease"), 0)["num_cpus"] == 1
    cuda = RunSpec(model="torch-bilinear", params={"device": "cuda"})
    assert task_options(runner, cuda, 1)["num_gpus"] == 1
    cpu = RunSpec(model="torch-bilinear", preset="notebook")  # device = "cpu"
    assert "num_gpus" not in task_options(runner, cpu, 1)


def test_cost_and_pareto_use_only_timing_grade_runs():
    from bench.results import tables

    runs = pd.DataFrame(
        {
            "label": ["a", "a", "b"],
            "seed": [0, 1, 0],
            "fit_seconds": [1.0, 9.0, 2.0],
            "auc": [0.8, 0.8, 0.9],
            "timing_grade": [True, False, False],
        }
    )
    cost = tables.cost_summary(runs)
    assert cost.loc["a", "fit_seconds"] == 1.0 and cost.loc["a", "timing_grade"] == "1/2"
    assert np.isnan(cost.loc["b", "fit_seconds"]) and cost.loc["b", "timing_grade"] == "0/1"
    assert tables.cost_summary(runs, include_all_timings=True).loc["a", "fit_seconds"] == 5.0
