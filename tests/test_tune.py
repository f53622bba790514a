"""rsbench tune: validation stage, budgets, resumption, determinism, no test access, final runs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from bench.config import ConfigError
from bench.datasets import load_dataset
from bench.datasets.dataset import Dataset
from bench.execution.runner import Runner, StopRun
from bench.execution.spec import RunSpec
from bench.execution.tuning import (
    _EpochReporter,
    build_targets,
    build_tune_config,
    default_storage_url,
    open_storage,
    open_study,
    run_studies,
    trial_state,
    tune,
    usage,
)
from bench.interactions import Interactions

TORCH = {"name": "torch-bilinear", "preset": "fast", "epochs": 2}
#: torch-bilinear is the iterative, stochastic model of these studies where torch is
#: installed; without it they run on the core models alone.
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def with_torch(models: list) -> list:
    """``models``, plus torch-bilinear (:data:`TORCH`) where torch is installed."""
    return [*models, TORCH] if HAVE_TORCH else list(models)


def make_config(models, *, seeds=(0, 1), dataset_options=None, isolate=True, **tune_opts):
    options = {
        "name": "t",
        "dataset": "synthetic",
        "seeds": list(seeds),
        "models": models,
        "isolate": isolate,
        "tune": {"pruner": "none", "startup_trials": 3, **tune_opts},
    }
    if dataset_options:
        options["dataset_options"] = dataset_options
    return build_tune_config(options, source="test")


def counted_trials(folder) -> pd.DataFrame:
    trials = pd.read_csv(folder / "trials.csv", keep_default_na=False, na_values=[""])
    return trials[trials["state"].isin(["complete", "pruned", "failed"])]


# -- the validation stage ---------------------------------------------------------------
def _hand_dataset() -> Dataset:
    # user 0: 10 rows (4 positives), user 1: 25 rows (all positive), user 2: 1 positive,
    # user 3: 5 rows, none positive.
    users = np.array([0] * 10 + [1] * 25 + [2] + [3] * 5, dtype=np.int32)
    items = np.concatenate([np.arange(10), np.arange(25), [7], np.arange(5)]).astype(np.int32)
    ratings = np.concatenate([[5, 4, 4, 5, 1, 2, 3, 2, 1, 3], [5] * 25, [5], [1, 2, 3, 2, 1]])
    train_all = Interactions(users, items, 4, 30, ratings.astype(np.float32))
    test_all = Interactions(
        np.array([0, 1], np.int32),
        np.array([20, 29], np.int32),
        4,
        30,
        np.array([5, 5], np.float32),
    )
    return Dataset(
        name="hand",
        split="fixed",
        min_rating=4.0,
        train=train_all.select(train_all.weights >= 4),
        test=test_all,
        train_all=train_all,
        test_all=test_all,
    )


def test_load_dataset_validation_stage_never_holds_test_rows():
    full = load_dataset("synthetic", None, None)
    valid = load_dataset("synthetic", None, None, stage="validation", validation_seed=4)
    key = lambda x: set((x.user_ids.astype(np.int64) * x.num_items + x.item_ids).tolist())  # noqa: E731
    assert key(valid.train) | key(valid.test) == key(full.train)
    assert not key(valid.test) & key(full.test) and not key(valid.train) & key(full.test)
    assert "validation_rule" not in full.summary()
    with pytest.raises(ValueError, match="validation_seed applies to stage='validation'"):
        load_dataset("synthetic", None, None, validation_seed=1)
    with pytest.raises(ValueError, match="stage must be"):
        load_dataset("synthetic", None, None, stage="train")


# -- RunSpec.stage and the runner's epoch hook -------------------------------------------------
def test_runspec_stage_keeps_test_run_ids_and_reaches_the_loader():
    plain = RunSpec(model="popularity", dataset="synthetic", split="random", min_rating=None)
    assert "stage" not in plain.to_dict()
    assert plain.run_id == RunSpec(**{**plain.to_dict(), "ks": plain.ks}).run_id
    valid = RunSpec(
        model="popularity", dataset="synthetic", split="random", min_rating=None, stage="validation"
    )
    assert valid.run_id != plain.run_id and valid.to_dict()["stage"] == "validation"
    assert valid.dataset_key() != plain.dataset_key()
    with pytest.raises(ValueError, match="stage must be one of"):
        RunSpec(model="popularity", stage="train")
    calls = []

    def loader(name, split, min_rating, **options):
        calls.append(options)
        return load_dataset(name, None, min_rating, **options)

    runner = Runner(loader=loader, curves=False)
    assert runner.run(plain).ok and runner.run(valid).ok
    assert calls == [{}, {"stage": "validation"}]


def test_epoch_hook_sees_each_epoch_but_the_last_and_can_stop_a_run():
    seen = []

    def hook(epoch, fit_seconds, evaluate):
        means = evaluate()
        seen.append((epoch, fit_seconds, float(means["auc"])))
        if epoch == 2:
            raise StopRun("enough")

    pytest.importorskip("torch")
    spec = RunSpec(
        model="torch-bilinear",
        preset="fast",
        epochs=5,
        dataset="synthetic",
        split="random",
        min_rating=None,
    )
    result = Runner(curves=False, epoch_hook=hook).run(spec)
    assert result.row["status"] == "stopped" and result.row["error"] == "enough"
    assert [e for e, _, _ in seen] == [1, 2] and seen[0][1] <= seen[1][1]
    assert all(0 <= auc <= 1 for _, _, auc in seen)
    full = []
    assert Runner(curves=False, epoch_hook=lambda e, f, ev: full.append(e)).run(spec).ok
    assert full == [1, 2, 3, 4]


def test_reporter_reports_at_powers_of_two_and_prunes():
    class FakeTrial:
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) == 3

    reporter = _EpochReporter("auc", prune=True)
    trial = FakeTrial()
    reporter.reset(trial)
    evaluate = lambda: pd.Series({"auc": 0.5})  # noqa: E731
    for epoch in (1, 2, 3):
        reporter(epoch, epoch * 0.1, evaluate)
    with pytest.raises(StopRun, match="pruned at epoch 4"):
        reporter(4, 0.4, evaluate)
    assert [s for s, _ in trial.reports] == [1, 2, 4]
    assert reporter.pruned_at == 4 and reporter.fit_seconds == 0.4 and reporter.eval_seconds > 0


# -- configuration -------------------------------------------------------------------------
def test_config_needs_exactly_one_budget_and_a_known_objective():
    with pytest.raises(ConfigError, match="exactly one of"):
        make_config(["ease"])
    with pytest.raises(ConfigError, match="exactly one of"):
        make_config(["ease"], budget_trials=3, budget_seconds=2.0)
    with pytest.raises(ConfigError, match="ndcg@10, hit@10"):
        make_config(["ease"], budget_trials=3, objective="ndcg@11")
    with pytest.raises(ConfigError, match="unknown key"):
        make_config(["ease"], budget_trials=3, budgets=1)
    with pytest.raises(ConfigError, match="budget_seconds must be a number > 0"):
        make_config(["ease"], budget_seconds=-1)
    assert make_config(["ease"], budget_trials=3, objective="recall@20").objective == "recall@20"


def test_space_overrides_fixed_params_and_out_of_space_presets():
    bad = make_config(
        [{"name": "ease", "space": {"l2": {"type": "float", "low": 1.0, "high": 10.0}}}],
        budget_trials=2,
    )
    with pytest.raises(ValueError, match=r"l2=500\.0, outside its search space"):
        build_targets(bad)
    pytest.importorskip("torch")
    config = make_config(
        [
            {"name": "ease", "space": {"l2": {"type": "float", "low": 10.0, "high": 1000.0}}},
            {"name": "torch-bilinear", "preset": "fast", "params": {"latent_dim": 8}, "epochs": 2},
        ],
        budget_trials=2,
    )
    ease, torch = build_targets(config)
    assert ease.space.to_dict() == {"l2": {"type": "float", "low": 10.0, "high": 1000.0}}
    assert "latent_dim" not in torch.space.names() and "epochs" not in torch.space.names()
    assert torch.default_values()["learning_rate"] == 50.0


# -- budgets, resumption, determinism ------------------------------------------------------------
def test_equal_trial_budget_default_first_and_tiny_space(tmp_path):
    config = make_config(with_torch(["popularity", "ease"]), budget_trials=4)
    studies = run_studies(config, tmp_path)
    counted = counted_trials(tmp_path)
    per_model = counted.groupby("model").size().to_dict()
    torch = {"torch-bilinear:fast": 4} if HAVE_TORCH else {}
    assert per_model == {"ease": 4, **torch, "popularity": 1}
    for target, study in studies:
        first = study.trials[0]
        assert first.user_attrs["default"] and first.params == target.default_values()
    summary = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False).set_index("model")
    assert summary.loc["ease", "used"] == 4 and summary.loc["ease", "trials"] == 4
    assert "1 configuration(s): the budget cannot be used" in summary.loc["popularity", "note"]
    assert summary.loc["ease", "best_value"] >= summary.loc["ease", "default_value"]
    assert summary.loc["ease", "note"] == ""  # trials budget, one worker: reproducible


def test_rerun_resumes_and_stops_exactly_at_the_budget(tmp_path):
    run_studies(make_config(["ease"], budget_trials=3), tmp_path)
    run_studies(make_config(["ease"], budget_trials=5), tmp_path)
    assert len(counted_trials(tmp_path)) == 5
    run_studies(make_config(["ease"], budget_trials=5), tmp_path)  # nothing left to do
    trials = counted_trials(tmp_path)
    assert len(trials) == 5 and trials["trial"].tolist() == [0, 1, 2, 3, 4]


def test_seconds_budget_no_trial_starts_once_spent(tmp_path):
    budget = 0.6
    run_studies(make_config(with_torch(["ease"]), budget_seconds=budget), tmp_path)
    counted = counted_trials(tmp_path)
    for model, group in counted.groupby("model"):
        seconds = group.sort_values("trial")["seconds"].to_numpy()
        assert seconds.sum() >= budget, model  # spent...
        assert seconds[:-1].sum() < budget, model  # ...and the crossing trial was the last
    summary = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False)
    assert summary["note"].str.contains("not reproducible").all()


def test_same_seed_same_trials_and_best_params(tmp_path):
    def params_of(folder, seed):
        run_studies(make_config(with_torch(["ease"]), budget_trials=6, seed=seed), folder)
        trials = counted_trials(folder)
        summary = pd.read_csv(folder / "tuning_summary.csv", keep_default_na=False)
        return trials["params"].tolist(), summary["best_params"].tolist()

    first = params_of(tmp_path / "a", 0)
    assert first == params_of(tmp_path / "b", 0)
    assert first[0] != params_of(tmp_path / "c", 1)[0]


def test_best_trial_value_is_reproduced_by_refitting_its_params(tmp_path):
    config = make_config(with_torch(["ease"]), budget_trials=5)
    studies = run_studies(config, tmp_path)
    trials = counted_trials(tmp_path)
    for target, _ in studies:
        rows = trials[(trials["model"] == target.label) & (trials["state"] == "complete")]
        best = rows.loc[rows["value"].idxmax()]
        spec = target.trial_spec(json.loads(best["params"]))
        assert spec.stage == "validation" and spec.seed == int(best["seed"])
        row = Runner(curves=False).run(spec).row
        assert row[config.objective] == pytest.approx(best["value"], rel=0, abs=1e-9)


def test_pruned_trials_count_their_seconds(tmp_path):
    pytest.importorskip("torch")  # pruning needs a model with epochs
    config = make_config(
        [{"name": "torch-bilinear", "preset": "fast", "epochs": 8}],
        budget_trials=10,
        pruner="successive-halving",
    )
    run_studies(config, tmp_path)
    trials = counted_trials(tmp_path)
    pruned = trials[trials["state"] == "pruned"]
    assert len(trials) == 10 and not pruned.empty  # successive halving keeps 1 in 4 per rung
    assert (pruned["seconds"] > 0).all() and (pruned["epochs_run"] < 8).all()
    assert set(pruned["epochs_run"].astype(int)) <= {1, 2, 4}
    summary = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False)
    assert summary["seconds"].iloc[0] == pytest.approx(trials["seconds"].sum())


# -- test data is never seen while tuning; the final phase ----------------------------------------
class GuardedLoader:
    """A dataset loader that refuses the test stage while ``tuning`` is set."""

    def __init__(self):
        self.tuning = False
        self.calls = []

    def __call__(self, name, split, min_rating, **options):
        stage = options.get("stage", "test")
        self.calls.append((stage, self.tuning))
        if stage != "validation" and self.tuning:
            raise PermissionError("the test split was requested while tuning")
        return load_dataset(name, None, min_rating, **options)


def test_no_test_access_while_tuning_then_final_runs(tmp_path, monkeypatch):
    import bench.execution.tuning as tune_module

    loader = GuardedLoader()
    real = tune_module.run_studies

    def guarded_run_studies(*args, **kwargs):
        loader.tuning = True
        try:
            return real(*args, **kwargs)
        finally:
            loader.tuning = False

    monkeypatch.setattr(tune_module, "run_studies", guarded_run_studies)
    # In-process final runs: the guarded loader sees every load (the driver itself
    # loads no test data; isolated runs would load it in their own processes).
    config = make_config(with_torch(["popularity", "ease"]), budget_trials=3, isolate=False)
    studies, (done, failed) = tune(config, tmp_path, loader=loader)
    # Every trial completed, so no trial was refused its data; test came only after.
    for _, study in studies:
        assert {trial_state(t) for t in study.trials} == {"complete"}
    assert {stage for stage, tuning in loader.calls if tuning} == {"validation"}
    assert ("test", False) in loader.calls
    # popularity: tuned = default (empty space), so 2 + 2x2 (+ 2x2 for torch-bilinear) runs.
    assert (done, failed) == (10 if HAVE_TORCH else 6, 0)
    runs = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    tuned = runs[runs["tuned"].astype(str) == "True"]
    torch = ["torch-bilinear:fast (tuned)"] if HAVE_TORCH else []
    assert sorted(set(tuned["label"])) == ["ease (tuned)", *torch]
    assert tuned["study"].str.contains("@synthetic-random-").all()
    assert (runs.loc[runs["tuned"].astype(str) == "False", "study"] == "").all()
    best = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False).set_index("model")
    for _, row in tuned.iterrows():
        params = json.loads(row["params"])
        model = row["label"].removesuffix(" (tuned)")
        for key, value in json.loads(best.loc[model, "best_params"]).items():
            assert params[key] == pytest.approx(value)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (
        manifest["tuning"]["budget"] == 3
        and "validation_seed 0" in manifest["tuning"]["validation_rule"]
    )
    # The report gets its tuning section and figure.
    from bench.results.report import build_report

    report = build_report(tmp_path, n_boot=200)
    assert "## Tuning" in report.markdown and "Default versus tuned on test" in report.markdown
    assert "tuning-best-so-far.png" in report.figures
    # A rerun resumes: nothing to tune, nothing to run.
    _, (done_again, _) = tune(config, tmp_path, loader=loader)
    assert done_again == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_running_trial_of_a_dead_local_worker_is_interrupted_not_counted(tmp_path):
    import optuna

    config = make_config(["ease"], budget_trials=3)
    (target,) = build_targets(config)
    storage = open_storage(default_storage_url(tmp_path))
    study = open_study(target, storage, config)
    ghost = study.ask()
    ghost.set_user_attr("worker", "localhost-is-not-this:999999:1.000")  # another host: alive
    import socket

    dead = study.ask()
    dead.set_user_attr("worker", f"{socket.gethostname()}:999999:1.000")  # no such process
    now = usage(study)
    assert now.running == 1 and now.counted == 0
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert trial_state(study.get_trials()[dead.number]) == "interrupted"
    assert states[ghost.number] == optuna.trial.TrialState.RUNNING
    # The live-looking trial of another host holds one budget slot until it ends.
    run_studies(config, tmp_path)
    assert len(counted_trials(tmp_path)) == 2
    study.tell(ghost.number, state=optuna.trial.TrialState.FAIL)  # its worker "died"
    run_studies(config, tmp_path)
    assert len(counted_trials(tmp_path)) == 3


def test_cli_tune_bad_input_is_exit_2(tmp_path, capsys):
    from bench.cli import main

    code = main(["tune", "--models", "ease", "--dataset", "synthetic", "--out", str(tmp_path)])
    assert code == 2 and "exactly one of" in capsys.readouterr().err
    code = main(
        [
            "tune",
            "--models",
            "ease",
            "--dataset",
            "synthetic",
            "--budget-trials",
            "2",
            "--objective",
            "auc@3",
        ]
    )
    assert code == 2 and "tune.objective" in capsys.readouterr().err


def test_failed_trials_count_and_a_finite_space_is_enumerated_once(tmp_path):
    from bench.registry import Registry

    reg = Registry()
    # max_items=1 makes EASE refuse the catalogue: a failing configuration.
    reg.register(
        "ease",
        "models.baselines:EASE",
        space={"max_items": {"type": "categorical", "choices": [20_000, 1]}},
    )
    config = make_config(["ease"], budget_trials=4)
    run_studies(config, tmp_path, registry=reg)
    trials = pd.read_csv(tmp_path / "trials.csv", keep_default_na=False, na_values=[""])
    assert trials["state"].tolist() == ["complete", "failed"]
    failed = trials.iloc[1]
    assert json.loads(failed["params"]) == {"max_items": 1}
    assert "exceeds max_items=1" in failed["error"] and failed["seconds"] > 0
    summary = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False).iloc[0]
    assert summary["trials"] == 2 and summary["failed"] == 1
    assert "2 configuration(s): the budget cannot be used" in summary["note"]


def test_cli_config_with_a_budget_flag_overrides_the_file(tmp_path):
    from bench.cli import main

    path = tmp_path / "t.toml"
    path.write_text(
        'name = "t"\ndataset = "synthetic"\nmodels = ["ease"]\n[tune]\nbudget_seconds = 100\n'
    )
    out = tmp_path / "out"
    code = main(
        [
            "-q",
            "tune",
            "--config",
            str(path),
            "--budget-trials",
            "2",
            "--phase",
            "tune",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert len(counted_trials(out)) == 2
    assert main(["-q", "tune", "--config", str(path), "--models", "ease"]) == 2
