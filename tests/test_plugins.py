"""Models from outside rsbench: entry-point plugins, module:Class names, notebook classes.

``tests/plugin`` is a separate package (``rsbench-example-plugin``). The nox
tests session installs it, so its entry point is found the way a user's would
be; without the install the tests put it on ``sys.path`` and hand the
registry the same entry point.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import bench
import bench.registry
from bench.cli import main
from bench.registry import PluginError, Registry, default_registry, load_plugins
from bench.results import load_results
from bench.testing import check_recommender

PLUGIN_DIR = Path(__file__).parent / "plugin"
ENTRY = "cooccurrence"
AD_HOC = "rsbench_example_plugin.adhoc:JitteredPopularity"

try:
    importlib.metadata.distribution("rsbench-example-plugin")
    INSTALLED = True
except importlib.metadata.PackageNotFoundError:
    INSTALLED = False


def _fake_entry_points(*points):
    def entry_points(*, group):
        return [p for p in points if p.group == group]

    return entry_points


def _point(name: str, value: str):
    return importlib.metadata.EntryPoint(name, value, bench.registry.ENTRY_POINT_GROUP)


@pytest.fixture
def plugin(monkeypatch):
    """The example plugin importable and declared (really installed, or faked)."""
    if not INSTALLED:
        monkeypatch.syspath_prepend(str(PLUGIN_DIR))
        monkeypatch.setattr(
            importlib.metadata,
            "entry_points",
            _fake_entry_points(_point(ENTRY, "rsbench_example_plugin:Cooccurrence")),
        )


@pytest.mark.skipif(not INSTALLED, reason="rsbench-example-plugin is not installed")
def test_the_installed_plugin_is_found_through_its_entry_point():
    entry = default_registry().get(ENTRY)
    assert entry.source == "plugin rsbench-example-plugin 0.1.0"
    assert entry.entry_point == "rsbench_example_plugin:Cooccurrence"


def test_plugin_models_register_with_presets_and_pass_the_contract(plugin, tiny):
    reg = default_registry()
    entry = reg.get(ENTRY)
    assert entry.source.startswith("plugin")
    assert entry.default_preset == "fast" and set(entry.presets) == {"fast", "raw"}
    assert reg.canonical(ENTRY) == (ENTRY, "fast")
    assert reg.make(ENTRY, "raw").damping == 0.0
    check_recommender(entry.load(), data=tiny)
    # module:Class: imported on first use, under its full name.
    path, preset = reg.canonical(*AD_HOC.split(":"))
    assert (path, preset) == (AD_HOC, None)
    model = reg.make(AD_HOC, jitter=0.25)
    assert reg.get(AD_HOC).source == "ad hoc" and model.jitter == 0.25
    check_recommender(type(model), data=tiny)


def test_both_run_through_the_cli_isolated(plugin, tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["run", "--dataset", "synthetic", "--models", f"{ENTRY},{AD_HOC}", "--seeds", "0,1"]
    assert main([*argv, "--isolate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = load_results(out)["runs"]
    assert set(runs["status"]) == {"ok"}
    assert set(runs["label"]) == {f"{ENTRY}:fast", AD_HOC}
    # The entry-point model is deterministic (one run); the ad-hoc one runs per seed.
    assert len(runs) == 3 and f"[3/3] {AD_HOC} seed 1" in printed
    assert (runs["auc"] > 0.6).all()
    # The entry-point model's bare name and its explicit default preset are one run.
    argv_explicit = ["run", "--dataset", "synthetic", "--models", f"{ENTRY}:fast", "--seeds", "0"]
    assert main([*argv_explicit, "--out", str(out)]) == 0
    assert "1 skipped" in capsys.readouterr().out


def test_both_run_through_the_python_api(plugin, tmp_path):
    results = bench.run(
        [ENTRY, {"name": AD_HOC, "params": {"jitter": 0.1}}],
        dataset="synthetic",
        seeds=[0],
        out=tmp_path / "api",
        report=True,
    )
    assert results.runs["label"].tolist() == [f"{ENTRY}:fast", AD_HOC]
    assert set(results.per_user["label"]) == {f"{ENTRY}:fast", AD_HOC}
    assert json.loads(results.runs["params"].iloc[1]) == {"jitter": 0.1}
    assert (tmp_path / "api" / "report.md").exists()
    # The same folder the CLI writes: the CLI sees every run as complete.
    assert (
        main(["run", "--dataset", "synthetic", "--models", ENTRY, "--out", str(results.out)]) == 0
    )


def test_list_says_where_each_model_comes_from(plugin, capsys):
    assert main(["list", "--json"]) == 0
    listing = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert listing["popularity"]["source"] == "rsbench"
    assert listing[ENTRY]["source"].startswith("plugin")
    assert listing["torch-bilinear"]["default_preset"] == "fast"
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "preset fast (default)" in text
    assert "from rsbench: models.knn:ItemKNN" in text
    assert "quick" in text.split("Suites")[1]


def test_a_broken_plugin_is_reported_and_does_not_break_the_others(plugin, monkeypatch, capsys):
    points = [
        _point("missing", "no_such_module_xyz:Model"),
        _point("not-a-model", "json:JSONDecoder"),
        _point("popularity", "rsbench_example_plugin:Cooccurrence"),  # name taken
        _point(ENTRY, "rsbench_example_plugin:Cooccurrence"),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(*points))
    reg = default_registry()
    errors = {e.name: e for e in reg.plugin_errors}
    assert set(errors) == {"missing", "not-a-model", "popularity"}
    assert "No module named 'no_such_module_xyz'" in errors["missing"].error
    assert "not a subclass of models.base.Recommender" in errors["not-a-model"].error
    assert "already registered" in errors["popularity"].error
    assert ENTRY in reg and reg.get("popularity").source == "rsbench"
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "Plugins that failed to load:" in text and "no_such_module_xyz" in text


def test_a_registration_function_plugin_keeps_imports_lazy(monkeypatch):
    """An entry point may name a function that registers models by "module:Class" string."""

    def register(reg: Registry) -> None:
        reg.register("lazy-knn", "models.knn:ItemKNN", neighbours=5)

    class Point:  # an entry point whose load() gives the function
        name, value, dist = "lazy", "my_pkg.plugin:register", None

        def load(self):
            return register

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda *, group: [Point()])
    reg = Registry()
    assert load_plugins(reg) == [] and reg.plugin_errors == []
    assert reg.get("lazy-knn").source == "plugin unknown distribution"
    assert reg.make("lazy-knn").neighbours == 5
    assert PluginError("a", "b", "c").error == "c"


def test_unknown_ad_hoc_names_say_what_was_tried():
    reg = default_registry(plugins=False)
    with pytest.raises(
        ValueError, match=r"did you mean 'popularity'\?.*No module named 'popularty'"
    ):
        reg.get("popularty:Fast")
    with pytest.raises(ValueError, match=r"not a subclass of models\.base\.Recommender"):
        reg.get("json:JSONDecoder")


def test_a_class_defined_in_main_runs_in_process_even_when_isolating(tmp_path, caplog):
    from models.baselines import Popularity

    class CellModel(Popularity):
        """Popularity, as if typed into a notebook cell."""

        pids: ClassVar[list[int]] = []

        def fit(self, train, **kwargs):
            CellModel.pids.append(os.getpid())
            return super().fit(train, **kwargs)

    CellModel.__module__ = "__main__"
    caplog.set_level("INFO")
    results = bench.run([CellModel, "popularity"], dataset="synthetic", isolate=True)
    assert results.runs["status"].tolist() == ["ok", "ok"]
    assert results.runs["label"].tolist() == ["CellModel", "popularity"]
    assert CellModel.pids == [os.getpid()]  # fitted here, not in a spawned child
    assert "a spawned process cannot import" in caplog.text
    assert results.out is None and not results.per_user.empty
    np.testing.assert_allclose(
        results.runs["auc"].iloc[0], results.runs["auc"].iloc[1], rtol=0, atol=0
    )


def test_an_ad_hoc_module_in_the_working_folder_is_found_without_python_m(tmp_path, monkeypatch):
    """The rsbench console script does not put the working folder on sys.path."""
    import sys

    (tmp_path / "my_cwd_models.py").write_text(
        "from models.knn import ItemKNN\n\nclass Mine(ItemKNN):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    entry = default_registry(plugins=False).get("my_cwd_models:Mine")
    assert entry.source == "ad hoc" and entry.load().__name__ == "Mine"


def test_an_ad_hoc_class_with_presets_is_labelled_with_its_default(plugin):
    reg = default_registry(plugins=False)
    path = "rsbench_example_plugin:Cooccurrence"
    assert reg.canonical(*path.split(":")) == (path, "fast")
    assert reg.params(path) == {"damping": 0.5}
    assert reg.canonical("no_such_pkg_xyz", "Model") == ("no_such_pkg_xyz:Model", None)
