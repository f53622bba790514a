"""bench.run: DataFrames back, the CLI's results folder on request, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import bench
from bench.cli import main
from bench.registry import UnknownModelError
from bench.results import load_results
from models.knn import ItemKNN


def test_run_returns_the_three_tables_and_keeps_nothing_without_out():
    results = bench.run(["popularity", "itemknn", "random"], dataset="synthetic", seeds=[0, 1])
    # popularity and itemknn are deterministic: one run each, whatever the seeds.
    assert results.out is None and results.done == 4 and results.failed == 0
    assert results.runs["label"].tolist() == ["popularity", "itemknn", "random", "random"]
    assert set(results.per_user["run_id"]) == set(results.runs["run_id"])
    assert {"run_id", "epoch", "auc"} <= set(results.curves.columns)
    summary = results.summary().set_index("label")
    assert summary.loc["itemknn", "seeds"] == 1 and summary.loc["random", "seeds"] == 2
    assert summary.loc["itemknn", "auc"] > summary.loc["popularity", "auc"]


def test_bare_names_are_recorded_under_their_default_preset(tmp_path):
    results = bench.run(
        [{"name": "torch-bilinear", "params": {"epochs": 1}}] if _has("torch") else ["popularity"],
        dataset="synthetic",
        out=tmp_path / "r",
        curves=False,
    )
    expected = "torch-bilinear:fast" if _has("torch") else "popularity"
    assert results.runs["label"].tolist() == [expected]
    if ":" in expected:
        assert results.runs["preset"].tolist() == [expected.split(":")[1]]
    else:  # no preset: an empty cell, which the store reads as missing
        assert results.runs["preset"].isna().all()


def test_out_writes_the_cli_folder_and_a_report(tmp_path):
    out = tmp_path / "res"
    results = bench.run(
        [ItemKNN, {"name": ItemKNN, "params": {"neighbours": 5}}],
        dataset="synthetic",
        out=out,
        report=True,
        progress=False,
    )
    assert results.runs["label"].tolist() == ["ItemKNN", "ItemKNN"]
    assert results.runs["params"].iloc[1] == '{"neighbours": 5, "shrinkage": 10.0}'
    for name in ("runs.csv", "per_user.parquet", "curves.csv", "manifest.json", "rsbench.log"):
        assert (out / name).exists(), name
    assert (out / "report.md").exists()
    assert "INFO" in (out / "rsbench.log").read_text()
    loaded = load_results(out)
    np.testing.assert_allclose(loaded["runs"]["auc"], results.runs["auc"])
    assert main(["report", str(out)]) == 0


def test_a_config_file_or_a_shipped_suite_name(tmp_path):
    config = tmp_path / "s.toml"
    config.write_text('name = "s"\ndataset = "synthetic"\nmodels = ["popularity"]\nseeds = [3]\n')
    results = bench.run(config=config, out=tmp_path / "s")
    assert results.runs["seed"].tolist() == [3]
    with pytest.raises(ValueError, match=r"unknown suite 'quik' \(did you mean 'quick'\?\)"):
        bench.run(config="quik")


def test_bad_models_fail_before_anything_runs(tmp_path):
    with pytest.raises(UnknownModelError, match="did you mean 'popularity'"):
        bench.run(["itemknn", "popularty"], dataset="synthetic", out=tmp_path / "x")
    assert not (tmp_path / "x" / "runs.csv").exists()
    with pytest.raises(ValueError, match="neighbours"):
        bench.run([{"name": "itemknn", "params": {"neighbours": 0}}], dataset="synthetic")
    with pytest.raises(ValueError, match="give models"):
        bench.run()


def test_every_cli_option_has_help_that_states_its_default():
    import argparse

    from bench.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    checked = 0
    for p in parsers:
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{p.prog} {action.dest} has no help"
            if action.option_strings:
                checked += 1
                assert "default" in action.help or "required" in action.help, (
                    f"{p.prog} {action.option_strings[0]} does not state its default"
                )
    assert checked > 20


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
