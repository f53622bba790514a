"""Runner, result folder and CLI: tables, timing, failures, resume, atomic writes, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import bench.datasets
import bench.execution.runner
from bench.cli import main
from bench.datasets.synthetic import synthetic
from bench.execution.isolation import Isolation
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import Registry
from bench.results import ResultStore, load_results
from models.baselines import Popularity

DATA = synthetic(num_users=80, num_items=60, num_positives=1_600, seed=11)


def fake_loader(name, split, min_rating, **options):
    return DATA


class Counting(Popularity):
    """Popularity plus a noisy per-epoch drift; records how often it was fitted."""

    iterative = True
    deterministic = False  # its drift comes from the fit rng
    fits: ClassVar[list[int]] = []

    def __init__(self, *, epochs: int = 3, boom: str = "") -> None:
        self.epochs = epochs
        self.boom = boom

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        epochs = self._start_fit(train, rng, epochs)
        Counting.fits.append(epochs)
        self._counts = train.item_counts().astype(np.float32)
        self._fitted = True
        for epoch in range(1, epochs + 1):
            if self.boom == "fit":
                raise RuntimeError("exploded in fit")
            if self.boom == "interrupt" and epoch == 2:
                raise KeyboardInterrupt
            self._counts = self._counts + rng.random(self._counts.shape, dtype=np.float32)
            if on_epoch is not None:
                on_epoch(epoch)
        if self.boom == "nan":
            self._counts[:] = np.nan
        return self

    def score(self, user_ids):
        user_ids = self._check_user_ids(user_ids)
        return np.ascontiguousarray(np.broadcast_to(self._counts, (len(user_ids), self._num_items)))


def test_registry() -> Registry:
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.register("random", "models.baselines:RandomModel")
    reg.register("counting", "test_runner:Counting", presets={"long": {"epochs": 5}})
    reg.register("broken", "test_runner:Counting", boom="fit")
    reg.register("nan", "test_runner:Counting", boom="nan")
    reg.register("interrupt", "test_runner:Counting", boom="interrupt")
    return reg


test_registry.__test__ = False  # a factory, not a test


@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setattr(bench.execution.runner, "default_registry", test_registry)
    monkeypatch.setattr(bench.datasets, "load_dataset", fake_loader)
    Counting.fits.clear()


def test_run_spec_identity_and_validation():
    a = RunSpec(model="ease", params={"l2": 10.0}, seed=1)
    assert a.run_id == RunSpec(model="ease", params={"l2": 10.0}, seed=1).run_id
    assert a.run_id != RunSpec(model="ease", params={"l2": 11.0}, seed=1).run_id
    assert a.run_id != RunSpec(model="ease", params={"l2": 10.0}, seed=2).run_id
    assert json.loads(json.dumps(a.to_dict()))["params"] == {"l2": 10.0}
    assert RunSpec(model="x", preset="p").label == "x:p"
    with pytest.raises(AttributeError):
        a.seed = 3
    for bad, message in [
        ({"epochs": -1}, "epochs must be an integer >= 1"),
        ({"seed": -2}, "seed must be >= 0"),
        ({"ks": (0, 5)}, "ks must be integers >= 1"),
        ({"ties": "optimistic"}, "ties must be one of"),
        ({"exclude": "all"}, "exclude must be one of"),
        ({"params": {"f": object()}}, "JSON-serialisable"),
        ({"min_rating": float("nan")}, "min_rating must be a finite number"),
        ({"seed": 2**32}, "seed must be <= 4294967295"),
    ]:
        with pytest.raises(ValueError, match=message):
            RunSpec(model="ease", **bad)


class WarmingUp(Counting):
    """Counting whose warm-up takes 100 s on the runner's clock (see the test)."""

    events: ClassVar[list[str]] = []
    clock_offset: ClassVar[list[float]] = [0.0]

    def warm_up(self):
        WarmingUp.events.append("warm-up")
        WarmingUp.clock_offset[0] += 100.0

    def fit(self, train, **kwargs):
        WarmingUp.events.append("fit")
        return super().fit(train, **kwargs)


def test_runner_warms_the_model_up_before_its_fit_clock(monkeypatch):
    """``warm_up`` runs once, before ``fit``, and its time is in neither fit nor evaluation."""
    import time

    real = time.perf_counter
    WarmingUp.events.clear()
    WarmingUp.clock_offset[0] = 0.0
    monkeypatch.setattr(
        bench.execution.runner.time, "perf_counter", lambda: real() + WarmingUp.clock_offset[0]
    )
    reg = test_registry()
    reg.register("warming", "test_runner:WarmingUp")
    result = Runner(reg, loader=fake_loader).run(
        RunSpec(model="warming", seed=0, dataset="synthetic")
    )
    assert result.ok, result.row["error"]
    assert WarmingUp.events == ["warm-up", "fit"]
    assert WarmingUp.clock_offset[0] == 100.0  # the warm-up ran, and moved the clock
    assert result.row["fit_seconds"] < 50 and result.row["eval_seconds"] < 50


def test_runner_measures_and_records_a_learning_curve():
    runner = Runner(test_registry(), loader=fake_loader)
    result = runner.run(RunSpec(model="counting", seed=0, dataset="synthetic"))
    assert result.ok, result.row["error"]
    row = result.row
    for column in (
        "fit_seconds",
        "seconds_per_epoch",
        "eval_seconds",
        "peak_rss_mb",
        "auc",
        "precision@5",
        "precision@10",
        "precision@20",
        "recall@10",
        "map@10",
        "ndcg@10",
        "mrr",
        "eval_users",
    ):
        assert np.isfinite(row[column]), column
    assert row["epochs"] == 3 and row["eval_users"] == DATA.eval_users().size
    assert row["peak_rss_mb"] > 10
    assert row["seconds_per_epoch"] == pytest.approx(row["fit_seconds"] / 3)
    curve = result.curve
    assert curve["epoch"].tolist() == [1, 2, 3]
    assert curve["fit_seconds"].is_monotonic_increasing
    assert curve["fit_seconds"].iloc[-1] == pytest.approx(row["fit_seconds"])
    assert curve["auc"].iloc[-1] == pytest.approx(row["auc"])
    assert set(result.per_user["user"]) == set(DATA.eval_users().tolist())


@pytest.mark.serial  # a wall-clock bound on the fit (0.2 s)
def test_fit_time_excludes_the_per_epoch_evaluation(monkeypatch):
    import time as time_module

    import metrics

    slow_eval = metrics.Evaluator.evaluate

    def slow(self, model, *args, **kwargs):
        time_module.sleep(0.2)
        return slow_eval(self, model, *args, **kwargs)

    monkeypatch.setattr(metrics.Evaluator, "evaluate", slow)
    runner = Runner(test_registry(), loader=fake_loader)
    row = runner.run(RunSpec(model="counting", preset="long", dataset="synthetic")).row
    assert row["status"] == "ok"
    assert row["fit_seconds"] < 0.2  # four 0.2 s evaluations happened inside fit()
    assert row["eval_seconds"] >= 0.2


def test_curve_evaluations_use_one_blas_thread_and_the_final_one_all(monkeypatch):
    from threadpoolctl import threadpool_info

    import metrics

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    before = blas_threads()
    seen = []
    evaluate = metrics.Evaluator.evaluate

    def recording(self, model, *args, **kwargs):
        seen.append(blas_threads())
        return evaluate(self, model, *args, **kwargs)

    monkeypatch.setattr(metrics.Evaluator, "evaluate", recording)
    runner = Runner(test_registry(), loader=fake_loader)
    runner.run(RunSpec(model="counting", preset="long", dataset="synthetic"))
    # Four curve points (epochs 1-4) under a limit of one, then the final evaluation.
    assert seen == [[1] * len(before)] * 4 + [before]
    assert blas_threads() == before


def test_same_seed_same_numbers_and_seeds_differ():
    runner = Runner(test_registry(), loader=fake_loader)
    a = runner.run(RunSpec(model="random", seed=5, dataset="synthetic")).row
    b = runner.run(RunSpec(model="random", seed=5, dataset="synthetic")).row
    c = runner.run(RunSpec(model="random", seed=6, dataset="synthetic")).row
    assert a["auc"] == b["auc"] != c["auc"]
    assert 0.4 < a["auc"] < 0.6


def test_failures_are_recorded_not_raised():
    runner = Runner(test_registry(), loader=fake_loader)
    broken = runner.run(RunSpec(model="broken", dataset="synthetic"))
    assert not broken.ok
    assert "RuntimeError: exploded in fit" in broken.row["error"]
    assert broken.per_user.empty
    nan = runner.run(RunSpec(model="nan", dataset="synthetic"))
    assert not nan.ok
    assert "non-finite" in nan.row["error"] or "NaN" in nan.row["error"]


def test_cli_run_writes_all_tables_and_resumes(patched, tmp_path, capsys):
    out = tmp_path / "res"
    args = [
        "run",
        "--dataset",
        "synthetic",
        "--models",
        "popularity,counting:long",
        "--seeds",
        "0,1",
        "--out",
        str(out),
        "--no-isolate",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "popularity" in captured.out and "counting:long" in captured.out
    loaded = load_results(out)
    runs = loaded["runs"]
    # popularity is deterministic: it runs once, counting:long once per seed.
    assert len(runs) == 3 and set(runs["status"]) == {"ok"}
    seeds = runs.groupby("label")["seed"].apply(sorted).to_dict()
    assert seeds == {"popularity": [0], "counting:long": [0, 1]}
    facts = runs.groupby("label")["deterministic"].first().to_dict()
    assert facts == {"popularity": True, "counting:long": False}
    required = [
        "run_id",
        "dataset",
        "split",
        "model",
        "preset",
        "seed",
        "epochs",
        "fit_seconds",
        "eval_seconds",
        "peak_rss_mb",
        "eval_users",
        "ties",
        "auc",
        "precision@5",
        "precision@10",
        "precision@20",
        "recall@10",
        "map@10",
        "ndcg@10",
        "mrr",
    ]
    assert not set(required) - set(runs.columns)
    assert set(loaded["per_user"]["run_id"]) == set(runs["run_id"])
    assert set(loaded["curves"]["run_id"]) == set(runs["run_id"])
    manifest = loaded["manifest"]
    for key in ("command", "environment", "started_at", "finished_at", "datasets", "specs"):
        assert manifest[key], key
    assert manifest["environment"]["packages"]["numpy"]
    assert not list(out.glob(".*tmp"))
    fits = len(Counting.fits)
    # Same command again: everything is complete, nothing is refitted.
    assert main(args) == 0
    assert len(Counting.fits) == fits
    assert len(load_results(out)["runs"]) == 3
    assert len(load_results(out)["manifest"]["history"]) == 1


def test_interrupted_run_leaves_no_partial_row_and_is_redone(patched, tmp_path):
    out = tmp_path / "res"
    args = ["run", "--dataset", "synthetic", "--models", "popularity,interrupt", "--out", str(out)]
    args.append("--no-isolate")  # the test model raises KeyboardInterrupt in this process
    assert main(args) == 130
    runs = load_results(out)["runs"]
    assert runs["model"].tolist() == ["popularity"]
    assert not list(out.glob(".*tmp"))
    # The killed run is redone (and interrupts again here); popularity is not.
    fits = len(Counting.fits)
    assert main(args) == 130
    assert len(Counting.fits) == fits + 1
    assert load_results(out)["runs"]["model"].tolist() == ["popularity"]


def test_failed_model_sets_exit_code_and_others_go_on(patched, tmp_path):
    out = tmp_path / "res"
    args = ["run", "--dataset", "synthetic", "--models", "broken,popularity", "--out", str(out)]
    code = main([*args, "--no-isolate"])
    assert code == 1
    runs = load_results(out)["runs"].set_index("model")
    assert runs.loc["broken", "status"] == "failed"
    assert "exploded" in runs.loc["broken", "error"]
    assert runs.loc["popularity", "status"] == "ok"


def test_crash_while_writing_keeps_the_previous_table(patched, tmp_path, monkeypatch):
    out = tmp_path / "res"
    args = ["run", "--dataset", "synthetic", "--models", "popularity", "--out", str(out)]
    assert main([*args, "--no-isolate"]) == 0
    before = (out / "runs.csv").read_bytes()

    def explode(self, path, *args, **kwargs):
        Path(path).write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", explode)
    with pytest.raises(OSError):
        store = ResultStore(out)
        store.add(
            Runner(test_registry(), loader=fake_loader).run(
                RunSpec(model="random", dataset="synthetic")
            )
        )
    assert (out / "runs.csv").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert len(load_results(out)["runs"]) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "--models", "popularty"],
            "unknown model 'popularty' (did you mean 'popularity'?); known models:",
        ),
        (["run", "--models", "counting:fast"], "has no preset 'fast'"),
        (["run", "--models", "popularity", "--epochs", "-1"], "--epochs must be an integer in [1,"),
        (["run", "--models", "popularity", "--ks", "0,5"], "--ks: 0 is out of range [1,"),
        (["run", "--models", "popularity", "--seeds", "a"], "'a' is not an integer"),
        (["run", "--models", "popularity", "--ties", "optimistic"], "ties must be one of"),
        (["run"], "give --models"),
        (["run", "--config", "missing.toml"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(patched, argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert message in err


def test_config_file_with_a_typo_is_rejected(patched, tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('name = "x"\nmodels = ["popularity"]\nseeds = [0]\nepoch = 3\n')
    assert main(["run", "--config", str(cfg)]) == 2
    assert "unknown key(s) epoch" in capsys.readouterr().err
    cfg.write_text('models = [{ name = "popularity", prest = "x" }]\n')
    assert main(["run", "--config", str(cfg)]) == 2
    assert "prest" in capsys.readouterr().err
    cfg.write_text('models = ["popularity"\n')
    assert main(["run", "--config", str(cfg)]) == 2
    assert "invalid TOML" in capsys.readouterr().err


def test_config_file_runs(patched, tmp_path):
    cfg = tmp_path / "exp.toml"
    out = tmp_path / "out"
    cfg.write_text(
        f'name = "tiny"\ndataset = "synthetic"\nseeds = [0, 1]\nout = "{out}"\nisolate = false\n'
        'models = ["popularity", { name = "counting", epochs = 2, seeds = [3] }]\n'
    )
    assert main(["run", "--config", str(cfg)]) == 0
    runs = load_results(out)["runs"]
    assert sorted(zip(runs["model"], runs["seed"], runs["epochs"])) == [
        ("counting", 3, 2),
        ("popularity", 0, 1),
    ]


def test_list_shows_models_and_availability(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "popularity" in out and "keras-bilinear" in out and "uniform-unseen" in out
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = {m["name"]: m for m in listing["models"]}
    assert names["ease"]["available"] is True
    assert "ml-100k" in listing["datasets"]


class Crashing(Popularity):
    """Kills its own process in fit, as a segfault in native code would."""

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        import os

        os._exit(3)


def isolated_loader(name, split, min_rating, **options):
    """Module-level (picklable) loader for isolated runs."""
    return DATA


def test_isolated_runs_match_in_process_and_survive_crashes():
    reg = test_registry()
    reg.register("crash", "test_runner:Crashing")
    here = Runner(reg, loader=isolated_loader)
    isolation = Isolation()
    spec = RunSpec(model="counting", seed=4, dataset="synthetic")
    a, b = here.run(spec), isolation.run(here, spec)
    assert b.ok, b.row["error"]
    assert a.row["auc"] == b.row["auc"]
    pd.testing.assert_frame_equal(a.per_user, b.per_user)
    assert b.dataset == a.dataset and b.dataset["sha256"] == DATA.sha256  # the run's data facts
    crashed = isolation.run(here, RunSpec(model="crash", dataset="synthetic"))
    assert not crashed.ok
    assert "exit code 3" in crashed.row["error"]
    # Ctrl-C that reached the child is an interrupt in the parent, not a failed run.
    with pytest.raises(KeyboardInterrupt):
        isolation.run(here, RunSpec(model="interrupt", dataset="synthetic"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('models = ["popularity"]\nseeds = 0\n', "expected a list of integers"),
        ('models = ["popularity"]\nks = 10\n', "expected a list of integers"),
        ('models = ["popularity"]\ndataset_options = 3\n', "must be a table"),
        ('models = ["popularity"]\ndatasets = 3\n', "must be a list of tables"),
        (
            'models = ["popularity"]\ndatasets = [{ dataset = "synthetic", options = 3 }]\n',
            "must be a table",
        ),
    ],
)
def test_config_values_of_the_wrong_type_are_errors(patched, tmp_path, capsys, content, message):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(content)
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "ml100k"], "unknown dataset 'ml100k'"),
        (["--dataset", "synthetic", "--split", "ua"], "unknown split 'ua' for 'synthetic'"),
    ],
)
def test_unknown_dataset_or_split_is_bad_input_not_a_failed_run(
    patched, tmp_path, capsys, argv, message
):
    out = tmp_path / "o"
    assert main(["run", "--models", "popularity", "--seeds", "0,1", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "runs.csv").exists()


def test_output_folder_under_a_file_is_a_clear_error(patched, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code = main(
        ["run", "--dataset", "synthetic", "--models", "popularity", "--out", str(blocker / "res")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("rsbench: error:") and "Traceback" not in err


def test_resume_redoes_runs_whose_preset_changed(patched, tmp_path, monkeypatch):
    out = tmp_path / "res"
    args = ["run", "--dataset", "synthetic", "--models", "counting:long", "--out", str(out)]
    args.append("--no-isolate")  # Counting.fits counts fits made in this process
    assert main(args) == 0
    assert Counting.fits == [5]

    def retuned() -> Registry:
        reg = Registry()
        reg.register("counting", "test_runner:Counting", presets={"long": {"epochs": 4}})
        return reg

    monkeypatch.setattr(bench.execution.runner, "default_registry", retuned)
    assert main(args) == 0
    assert Counting.fits == [5, 4]  # the changed preset was measured again
    runs = load_results(out)["runs"]
    assert runs["epochs"].tolist() == [4]
    assert main(args) == 0
    assert Counting.fits == [5, 4]  # and is complete now
