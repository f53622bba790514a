"""Canonical labels: a bare name is its default preset, in new tables and in old baselines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.execution.isolation import worker_environment
from bench.execution.spec import RunSpec
from bench.registry import Registry, canonical_label, default_registry

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baseline" / "quick"


def test_bare_names_mean_the_default_preset():
    reg = default_registry(plugins=False)
    for entry in reg.entries():
        if "fast" in entry.presets:
            assert entry.default_preset == "fast", entry.name
            assert reg.params(entry.name) == reg.params(entry.name, "fast")
    assert reg.canonical("torch-bilinear") == ("torch-bilinear", "fast")
    assert reg.canonical("torch-bilinear", "notebook") == ("torch-bilinear", "notebook")
    assert reg.canonical("popularity") == ("popularity", None)
    assert canonical_label("lightfm-warp", reg) == "lightfm-warp:fast"
    assert canonical_label("fm:ids-only", reg) == "fm:ids-only"
    assert canonical_label("ease", reg) == "ease"
    assert canonical_label("someone-elses-model", reg) == "someone-elses-model"


def test_a_default_preset_must_exist_and_presets_suggest_names():
    reg = Registry()
    with pytest.raises(ValueError, match="default_preset 'fats'"):
        reg.register("x", "models.knn:ItemKNN", presets={"fast": {}}, default_preset="fats")
    reg.register("knn", "models.knn:ItemKNN", presets={"fast": {"neighbours": 3}})
    with pytest.raises(ValueError, match=r"no preset 'fsat' \(did you mean 'fast'\?\)"):
        reg.params("knn", "fsat")


@pytest.mark.skipif(not (BASELINE / "runs.csv").exists(), reason="no committed baseline")
def test_the_gate_reads_bare_labels_of_old_baselines_as_canonical(tmp_path, monkeypatch):
    """New results labelled name:preset are gated against a baseline that says name."""
    from bench.results.regress import regress

    reg = default_registry(plugins=False)
    new = tmp_path / "new"
    shutil.copytree(BASELINE, new, ignore=shutil.ignore_patterns("shards"))
    # An old baseline: the same results, labelled as rsbench did before canonical labels
    # (a default-preset run under its bare name).
    old = tmp_path / "old"
    shutil.copytree(BASELINE, old, ignore=shutil.ignore_patterns("shards"))

    def bare(label: str) -> str:
        name, _, preset = label.partition(":")
        default = reg.get(name).default_preset if name in reg else None
        return name if preset and preset == default else label

    runs = pd.read_csv(old / "runs.csv")
    assert "lightfm-warp:fast" in set(runs["label"])
    runs["label"] = [bare(label) for label in runs["label"]]
    assert "lightfm-warp" in set(runs["label"])
    runs.to_csv(old / "runs.csv", index=False)
    per_user = pd.read_parquet(old / "per_user.parquet")
    per_user["label"] = [bare(label) for label in per_user["label"]]
    per_user.to_parquet(old / "per_user.parquet")
    assert all(
        canonical_label(bare(x), reg) == x for x in set(pd.read_csv(new / "runs.csv")["label"])
    )
    outcome = regress(new, old)
    table = outcome.table()
    assert outcome.passed, table
    assert "lightfm-warp:fast" in table and "missing" not in table.lower()
    # Without the reading, the same results would fail the gate ("missing").
    import bench.registry

    monkeypatch.setattr(bench.registry, "canonical_label", lambda label, registry=None: label)
    assert not regress(new, old).passed


def test_workers_never_probe_cuda_for_cpu_runs(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    reg = default_registry(plugins=False)
    cpu = worker_environment(RunSpec(model="keras-bilinear"), reg, quiet=True)
    assert cpu == {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    gpu = RunSpec(model="torch-bilinear", params={"device": "cuda"})
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment(gpu, reg, quiet=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's choice wins
    assert "TF_CPP_MIN_LOG_LEVEL" not in worker_environment(gpu, reg, quiet=True)
