"""rsbench tune with a seconds budget: the trial that reaches it stops at an epoch boundary,
closed-form overshoot and over-long fits are reported, every second of a trial counts."""

from __future__ import annotations

import json
import time
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from bench.execution.runner import Runner, StopRun
from bench.execution.tune_space import SearchSpace
from bench.execution.tuning import (
    _EpochReporter,
    best_values,
    build_targets,
    build_tune_config,
    default_storage_url,
    open_storage,
    open_study,
    run_studies,
)
from bench.registry import Registry
from models.base import Recommender

EPOCH_SECONDS = 0.25
# What no epoch boundary can stop: the runner's set-up of a run before its first epoch
# (the model, the evaluator), and the error of the tuner's estimates of what stopping
# costs (one evaluation, storing the trial) on a busy machine.
SLACK = 0.1
NOISE = {"noise": {"type": "float", "low": 0.5, "high": 2.0}}


class _Scored(Recommender):
    """Popularity plus a seeded noise whose amplitude grows with the epochs trained."""

    deterministic: ClassVar[bool] = False

    def _scores_from(self, train, rng, amplitude: float) -> None:
        self._counts = train.item_counts().astype(np.float32)
        self._noise = rng.standard_normal(train.num_items).astype(np.float32)
        self._amplitude = amplitude
        self._num_users, self._num_items = train.shape
        self._fitted = True

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        user_ids = self._check_user_ids(user_ids)
        row = self._counts + self._amplitude * self._noise
        return np.ascontiguousarray(np.broadcast_to(row, (user_ids.shape[0], self._num_items)))


class SlowEpochs(_Scored):
    """An iterative model whose every epoch sleeps ``epoch_seconds``."""

    iterative: ClassVar[bool] = True

    def __init__(
        self, *, epochs: int = 8, epoch_seconds: float = EPOCH_SECONDS, noise: float = 1.0
    ) -> None:
        self.epochs = epochs
        self.epoch_seconds = epoch_seconds
        self.noise = noise

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Sleep per epoch; the scores get noisier with every epoch."""
        epochs = self._begin_fit(train, rng, epochs)
        self._scores_from(train, rng, 0.0)
        for epoch in range(1, epochs + 1):
            time.sleep(self.epoch_seconds)
            self._amplitude = self.noise * epoch
            if on_epoch is not None:
                on_epoch(epoch)
        return self


class SlowClosedForm(_Scored):
    """A one-shot fit that sleeps ``fit_seconds`` (no epoch boundary to stop at)."""

    def __init__(self, *, fit_seconds: float = 0.6, noise: float = 1.0) -> None:
        self.fit_seconds = fit_seconds
        self.noise = noise

    def fit(self, train, *, sampler=None, epochs=None, rng, on_epoch=None, features=None):
        """Sleep once, then score."""
        self._begin_fit(train, rng, epochs)
        time.sleep(self.fit_seconds)
        self._scores_from(train, rng, self.noise)
        if on_epoch is not None:
            on_epoch(1)
        return self


def registry() -> Registry:
    reg = Registry()
    reg.register("slow-epochs", "test_tune_budget:SlowEpochs", space=NOISE)
    reg.register("slow-closed", "test_tune_budget:SlowClosedForm", space=NOISE)
    return reg


def make_config(models, **tune_opts):
    options = {
        "name": "t",
        "dataset": "synthetic",
        "seeds": [0],
        "models": models,
        "tune": {"pruner": "none", "startup_trials": 3, **tune_opts},
    }
    return build_tune_config(options, source="test")


def tables(folder):
    trials = pd.read_csv(folder / "trials.csv", keep_default_na=False, na_values=[""])
    summary = pd.read_csv(folder / "tuning_summary.csv", keep_default_na=False, na_values=[""])
    return trials[trials["state"].isin(["complete", "pruned", "failed"])], summary.iloc[0]


def test_the_trial_that_reaches_the_budget_stops_at_an_epoch_boundary(tmp_path):
    # The preset's full fit (8 x 0.25 s, plus the trial's storage and set-up), then
    # a second trial with about a second left: stopped after a few epochs.
    budget = 3.4
    reg = registry()
    config = make_config([{"name": "slow-epochs", "epochs": 8}], budget_seconds=budget)
    ((target, _),) = run_studies(config, tmp_path, registry=reg)
    trials, summary = tables(tmp_path)
    assert len(trials) == 2
    epoch = float((trials["fit_seconds"] / trials["epochs_run"]).max())
    assert epoch >= EPOCH_SECONDS
    # Given versus used: within one epoch's time (and the runner's own set-up of the
    # run before its first epoch, tens of milliseconds), as the summary says.
    used = float(trials["seconds"].sum())
    assert budget <= used <= budget + epoch + SLACK, (used, epoch)
    assert summary["used"] == pytest.approx(used) and summary["budget"] == budget
    assert summary["overshoot"] == pytest.approx(used - budget)
    assert summary["stopped"] == 1 and not summary["over_budget"]
    # The crossing trial: complete, with the epochs it validated.
    last = trials.iloc[-1]
    assert last["state"] == "complete" and last["stopped_by_budget"]
    assert 1 <= last["epochs_run"] < last["epochs_planned"] == 8
    assert json.loads(last["params"])["epochs"] == last["epochs_run"]
    assert not trials.iloc[:-1]["stopped_by_budget"].any()
    assert "stopped at the budget after epoch" in summary["note"]
    # Its value is the one of its last completed epoch: a refit of that many epochs gives it.
    spec = target.trial_spec(json.loads(last["params"]))
    assert spec.epochs == last["epochs_run"]
    row = Runner(reg, curves=False).run(spec).row
    assert row[config.objective] == pytest.approx(last["value"], abs=1e-9)


def test_a_stopped_winner_is_refitted_with_the_epochs_it_validated(tmp_path):
    import optuna

    reg = registry()
    for fixed in (True, False):  # epochs fixed by the experiment, or a model parameter
        model = {"name": "slow-epochs", **({"epochs": 8} if fixed else {})}
        config = make_config([model], budget_seconds=10.0)
        (target,) = build_targets(config, reg)
        study = open_study(target, open_storage(default_storage_url(tmp_path / str(fixed))), config)
        study.enqueue_trial({"noise": 1.0})
        full = study.ask()
        study.tell(full, 0.1)
        stopped = study.ask({"noise": optuna.distributions.FloatDistribution(0.5, 2.0)})
        stopped.set_user_attr("stopped_by_budget", True)
        stopped.set_user_attr("epochs_run", 3)
        study.tell(stopped, 0.2)
        params, value, number = best_values(study)
        assert (params["epochs"], value, number) == (3, 0.2, stopped.number)
        (spec,) = target.tuned_specs(params)
        epochs = spec.epochs if fixed else spec.params["epochs"]
        assert epochs == 3
        assert json.loads(Runner(reg).check(spec))["epochs"] == 3


def test_every_second_of_a_trial_counts(tmp_path, monkeypatch):
    # 0.3 s more in every trial's suggestion (sampler work): counted as overhead.
    real = SearchSpace.suggest

    def slow_suggest(self, trial, fixed):
        time.sleep(0.3)
        return real(self, trial, fixed)

    monkeypatch.setattr(SearchSpace, "suggest", slow_suggest)
    reg = registry()
    budget = 1.6
    config = make_config(
        [{"name": "slow-closed", "params": {"fit_seconds": 0.1}}], budget_seconds=budget
    )
    ((_, study),) = run_studies(config, tmp_path, registry=reg)
    trials, summary = tables(tmp_path)
    assert trials["seconds"].sum() == pytest.approx(summary["used"])
    # The study's own clock, from its first trial's start to its last trial's end, less
    # the storing of the last trial's state, is what the budget counted.
    stored = [t for t in study.get_trials() if t.datetime_complete is not None]
    span = (stored[-1].datetime_complete - stored[0].datetime_start).total_seconds()
    assert summary["used"] >= span - 0.25, (summary["used"], span)
    assert (trials["overhead_seconds"] >= 0.3).all()
    parts = trials["fit_seconds"] + trials["eval_seconds"] + trials["overhead_seconds"]
    assert np.allclose(trials["seconds"], parts)
    assert len(trials) <= 4  # 0.1 s fits, but 0.4 s trials


def test_a_closed_form_fit_finishes_and_its_overshoot_is_shown(tmp_path):
    reg = registry()
    # 1 s fits and about 0.15 s of overhead a trial: the second trial starts with about
    # 0.45 s left, so it always reaches its fit (a trial whose set-up alone spends the rest
    # is pruned before fitting, which is another rule) and crosses the budget mid-fit,
    # with 0.3 s of slack on each side for a loaded machine.
    budget = 1.6
    config = make_config(
        [{"name": "slow-closed", "params": {"fit_seconds": 1.0}}], budget_seconds=budget
    )
    run_studies(config, tmp_path, registry=reg)
    trials, summary = tables(tmp_path)
    assert (trials["state"] == "complete").all() and not trials["stopped_by_budget"].any()
    assert trials["seconds"].iloc[:-1].sum() < budget <= trials["seconds"].sum()
    assert summary["overshoot"] == pytest.approx(trials["seconds"].sum() - budget)
    assert summary["overshoot"] > 0 and summary["stopped"] == 0 and not summary["over_budget"]
    assert "no epoch boundary to stop at" in summary["note"]


def test_a_single_fit_longer_than_the_budget_is_reported(tmp_path):
    reg = registry()
    config = make_config(
        [{"name": "slow-closed", "params": {"fit_seconds": 1.2}}, {"name": "slow-epochs"}],
        budget_seconds=1.0,
    )
    run_studies(config, tmp_path, registry=reg)
    trials = pd.read_csv(tmp_path / "trials.csv", keep_default_na=False, na_values=[""])
    summary = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False)
    summary = summary.set_index("model")
    # One trial each: the closed form ran past the budget, the iterative one was stopped.
    assert trials.groupby("model").size().to_dict() == {"slow-closed": 1, "slow-epochs": 1}
    closed = summary.loc["slow-closed"]
    assert closed["over_budget"] and closed["overshoot"] > 0.2
    assert "one trial alone took more than the whole budget" in closed["note"]
    iterative = summary.loc["slow-epochs"]
    stopped = trials[trials["model"] == "slow-epochs"].iloc[0]
    assert stopped["state"] == "complete" and stopped["stopped_by_budget"]
    assert stopped["epochs_run"] < 8 and iterative["over_budget"]
    assert "one full fit needs more than the whole budget" in iterative["note"]
    assert iterative["overshoot"] <= stopped["fit_seconds"] / stopped["epochs_run"] + SLACK


def test_reporter_stops_at_the_budget_without_a_pruner():
    class FakeTrial:
        def report(self, value, step):
            raise AssertionError("no pruner: nothing is reported")

    reporter = _EpochReporter("auc", prune=False)
    evaluate = lambda: pd.Series({"auc": 0.7})  # noqa: E731
    reporter.reset(FakeTrial(), clock=time.perf_counter(), spent=0.0, budget=None)
    reporter(1, 0.1, evaluate)  # a trial budget: never stopped here
    reporter.reset(FakeTrial(), clock=time.perf_counter(), spent=5.0, budget=10.0)
    reporter(1, 0.1, evaluate)  # 5 s of 10 spent
    reporter.reset(FakeTrial(), clock=time.perf_counter() - 5.0, spent=5.0, budget=10.0)
    with pytest.raises(StopRun, match="budget of 10 s spent at epoch 2"):
        reporter(2, 4.9, evaluate)
    assert (reporter.stopped_at, reporter.stopped_value) == (2, 0.7)
    assert reporter.pruned_at is None and reporter.eval_seconds > 0
