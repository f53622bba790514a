"""The execution wing: declared model facts, the two keys, executors of one's own,
results that carry their data's facts, and ``bench.tune`` beside ``bench.run``."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

import bench
from bench.cli import main
from bench.config import ConfigError, build_experiment
from bench.datasets import load_dataset
from bench.execution import Execution, Runner, RunSpec, once_if_deterministic, run_session
from bench.execution.executors import EXECUTORS, register_executor
from bench.registry import MODEL_FACTS, Registry, default_registry

SYNTHETIC = {"dataset": "synthetic", "split": "random", "min_rating": None}


def test_declared_facts_are_the_classes_own():
    registry = default_registry(plugins=False)
    checked = 0
    for entry in registry.entries():
        assert set(entry.facts) == set(MODEL_FACTS), entry.name  # every built-in declares all
        if entry.available:
            cls = entry.load()
            assert entry.facts == {f: bool(getattr(cls, f)) for f in MODEL_FACTS}, entry.name
            checked += 1
    assert checked >= 4  # the numpy-only models at least


def test_reading_declared_facts_imports_nothing():
    registry = Registry()
    # A module that does not exist: any import of it would raise.
    registry.register("ghost", "no_such_module_for_rsbench:Model", facts={"deterministic": True})
    specs = [RunSpec(model="ghost", seed=s, **SYNTHETIC) for s in (0, 1, 2)]
    assert once_if_deterministic(specs, registry) == specs[:1]
    assert "no_such_module_for_rsbench" not in sys.modules
    with pytest.raises(ValueError, match="facts must map"):
        registry.register("bad", "x:Y", facts={"deterministic": "yes"})


def test_the_two_keys():
    a = RunSpec(model="ease", seed=0, **SYNTHETIC)
    b = RunSpec(model="ease", seed=1, **SYNTHETIC)
    c = RunSpec(model="ease", seed=0, params={"l2": 10.0}, **SYNTHETIC)
    assert a.run_id != b.run_id and a.setting_key == b.setting_key  # seeds share a setting
    assert a.setting_key != c.setting_key and a.setting_key != a.run_id
    # run_id is the committed baselines' hash: the canonical JSON of the spec.
    assert RunSpec(model="popularity").run_id == RunSpec(model="popularity", seed=0).run_id


def test_an_executor_of_ones_own_with_its_own_option(tmp_path, capsys):
    from custom_executor import PausingExecutor

    register_executor(PausingExecutor)  # the one registration
    try:
        out = tmp_path / "out"
        code = main(["-q", "run", "--models", "popularity,random", "--dataset", "synthetic",
                     "--executor", "pausing", "--pause-s", "0.01", "--out", str(out)])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        runs = pd.read_csv(out / "runs.csv")
        assert set(runs["executor"]) == {"pausing"} and (runs["status"] == "ok").all()
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["execution"]["executor"] == "pausing"
        assert manifest["execution"]["pause_s"] == 0.01
        # Its option is a TOML key, checked by its own rule, and refused for other executors.
        with pytest.raises(ConfigError, match=r"x.toml: pause_s must be in \[0, 1\]"):
            options = {"models": ["popularity"], "executor": "pausing", "pause_s": 5}
            build_experiment(options, source="x.toml")
        with pytest.raises(ConfigError, match=r"pause_s = 0\.5 needs executor 'pausing'"):
            build_experiment({"models": ["popularity"], "pause_s": 0.5}, source="x.toml")
    finally:
        EXECUTORS.pop("pausing")


def _counting_loader(name, split, min_rating, **options):
    """Module-level (picklable): counts the loads of *this* process."""
    _LOADS.append(name)
    return load_dataset(name, split, min_rating, **options)


_LOADS: list[str] = []


def test_results_carry_their_data_facts_and_the_driver_loads_nothing(tmp_path):
    _LOADS.clear()
    specs = [RunSpec(model=m, seed=0, **SYNTHETIC) for m in ("popularity", "random")]
    outcome = run_session(
        specs,
        tmp_path,
        runner=Runner(loader=_counting_loader, curves=False),
        execution=Execution(options={"executor": "process", "jobs": 2}),
        manifest={"command": "test"},
        progress=False,
    )
    assert (outcome.done, outcome.failed) == (2, 0)
    assert _LOADS == []  # the runs loaded their data in their own processes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (facts,) = manifest["datasets"].values()
    expected = load_dataset("synthetic", "random", None)
    assert facts["sha256"] == expected.sha256 and facts["source"] == expected.source


def test_bench_tune_beside_bench_run(tmp_path):
    from bench.execution.tuning import build_tune_config

    config = build_tune_config(
        {"name": "t", "dataset": "synthetic", "seeds": [0], "models": ["popularity", "ease"],
         "isolate": False, "tune": {"budget_trials": 2, "pruner": "none"}},
        source="test",
    )  # fmt: skip
    results = bench.tune(config, out=tmp_path, progress=False)
    assert isinstance(results, bench.api.TuneResults)
    assert sorted(results.summary["model"]) == ["ease", "popularity"]
    assert (results.summary["trials"] <= 2).all()
    assert results.failed == 0 and results.done == len(results.runs)
    assert {"popularity", "ease"} <= set(results.runs["label"])  # the default runs
    assert results.manifest["command"] == "bench.tune" and "tuning" in results.manifest
