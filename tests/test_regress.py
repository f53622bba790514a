"""The regression gate on real result folders made by the runner on tiny synthetic data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.registry import Registry
from bench.regress import RegressionOutcome, is_quality_metric, regress
from bench.results import ResultsError, ResultStore, load_results
from bench.runner import Runner, RunSpec
from bench.synthetic import synthetic

OPTIONS = {"num_users": 90, "num_items": 70, "num_positives": 1_800, "seed": 5}


def loader(name, split, min_rating, **options):
    """Every dataset name is synthetic data built from the spec's options."""
    return synthetic(**options)


def make_registry(weak_ease: bool = False) -> Registry:
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.register("random", "models.baselines:RandomModel")
    # The "made worse" folder: a real, weaker model under the same label.
    reg.register("ease", "models.baselines:RandomModel" if weak_ease else "models.baselines:EASE")
    return reg


def run_folder(
    folder: Path, models, seeds, *, registry=None, dataset="synthetic", options=OPTIONS, **manifest
) -> Path:
    """Run models x seeds with the real runner and write a results folder like ``rsbench run``."""
    runner = Runner(registry or make_registry(), loader=loader)
    store = ResultStore(folder)
    store.write_manifest(
        {
            "command": "test",
            "experiment": "gate",
            "fit_time_factor": 3.0,
            "tolerance_floor": 0.005,
            "tolerance_se": 3.0,
            **manifest,
        }
    )
    datasets = {}
    for model in models:
        for seed in seeds:
            spec = RunSpec(
                model=model,
                seed=seed,
                dataset=dataset,
                split="random",
                min_rating=None,
                dataset_options=options,
            )
            result = runner.run(spec)
            assert result.ok, result.row["error"]
            store.add(result)
            datasets[spec.dataset_key()] = {
                "sha256": runner.dataset(spec).sha256,
                "source": "synthetic",
            }
    store.update_manifest(datasets=datasets)
    return folder


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gate") / "baseline"
    return run_folder(folder, ["popularity", "random", "ease"], [0, 1, 2])


def copy(folder: Path, tmp_path: Path, name: str = "new") -> Path:
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


def edit_runs(folder: Path, edit) -> None:
    runs = pd.read_csv(folder / "runs.csv", keep_default_na=False, na_values=[""])
    runs = edit(runs)
    runs.to_csv(folder / "runs.csv", index=False)


def rows(outcome: RegressionOutcome, verdict: str) -> pd.DataFrame:
    frame = outcome.to_frame()
    return frame[frame["verdict"] == verdict]


def test_identical_copy_passes_and_every_pair_is_compared(baseline, tmp_path):
    outcome = regress(copy(baseline, tmp_path), baseline)
    assert outcome.passed, outcome.table()
    frame = outcome.to_frame()
    metrics = [c for c in load_results(baseline)["runs"].columns if is_quality_metric(c)]
    assert {"auc", "mrr", "precision@5", "ndcg@20", "hit@10", "map@10"} <= set(metrics)
    quality = frame[frame["check"].isin(metrics)]
    # Every label x metric of the baseline, each with zero delta.
    assert len(quality) == 3 * len(metrics)
    assert set(quality["label"]) == {"popularity", "random", "ease"}
    assert (quality["delta"] == 0).all() and (quality["verdict"] == "ok").all()
    assert set(frame.loc[frame["check"] == "fit_seconds", "label"]) == {
        "popularity",
        "random",
        "ease",
    }
    table = outcome.table()
    assert "PASSED" in table
    for column in ("baseline", "new", "delta", "tolerance", "verdict"):
        assert column in table


def test_a_weaker_model_under_the_same_label_fails_naming_it(baseline, tmp_path):
    worse = run_folder(
        tmp_path / "worse",
        ["popularity", "random", "ease"],
        [0, 1, 2],
        registry=make_registry(weak_ease=True),
    )
    outcome = regress(worse, baseline)
    assert not outcome.passed
    failed = rows(outcome, "FAIL")
    assert set(failed["label"]) == {"ease"}
    assert "auc" in set(failed["check"]) and "precision@10" in set(failed["check"])
    auc = failed.set_index("check").loc["auc"]
    assert auc["delta"] < -0.1  # random scores instead of EASE
    table = outcome.table()
    last = table.splitlines()[-1]
    assert last.startswith("FAILED") and "ease [auc, " in last
    assert "popularity" not in last and "random" not in last
    # The other models reproduce exactly and pass.
    others = outcome.to_frame()
    others = others[others["label"].isin(["popularity", "random"])]
    assert (others["verdict"] == "ok").all()


def test_tolerance_is_the_floor_for_deterministic_models(baseline, tmp_path):
    """EASE gives the same numbers for every seed: SE 0, tolerance = floor 0.005."""
    base_auc = load_results(baseline)["runs"].query("label == 'ease'")["auc"].mean()

    def lower(by):
        def edit(runs):
            runs.loc[runs["label"] == "ease", "auc"] -= by
            return runs

        return edit

    small = copy(baseline, tmp_path, "small")
    edit_runs(small, lower(0.004))
    outcome = regress(small, baseline)
    assert outcome.passed, outcome.table()
    row = outcome.to_frame().set_index(["label", "check"]).loc[("ease", "auc")]
    assert row["se"] == 0 and row["tolerance"] == pytest.approx(0.005)
    assert row["baseline"] == pytest.approx(base_auc)
    assert row["delta"] == pytest.approx(-0.004)

    big = copy(baseline, tmp_path, "big")
    edit_runs(big, lower(0.006))
    outcome = regress(big, baseline)
    assert not outcome.passed
    assert set(map(tuple, rows(outcome, "FAIL")[["label", "check"]].to_numpy())) == {
        ("ease", "auc")
    }
    # A looser floor from the baseline manifest (or the argument) lets it pass.
    assert regress(big, baseline, tolerance_floor=0.01).passed


def test_tolerance_uses_the_seed_to_seed_spread(baseline, tmp_path):
    runs = load_results(baseline)["runs"]
    values = runs.loc[runs["label"] == "random", "auc"].to_numpy()
    assert np.ptp(values) > 0  # different seeds, different random scores
    se = values.std(ddof=1) / math.sqrt(3)
    outcome = regress(copy(baseline, tmp_path), baseline, tolerance_floor=0.0)
    row = outcome.to_frame().set_index(["label", "check"]).loc[("random", "auc")]
    assert row["se"] == pytest.approx(se)
    assert row["tolerance"] == pytest.approx(3 * se)
    assert row["baseline_seeds"] == row["new_seeds"] == 3
    outcome = regress(copy(baseline, tmp_path, "x5"), baseline, tolerance_floor=0.0, tolerance_se=5)
    assert outcome.to_frame().set_index(["label", "check"]).loc[
        ("random", "auc"), "tolerance"
    ] == pytest.approx(5 * se)


def test_one_seed_uses_the_per_user_standard_error(tmp_path):
    base = run_folder(tmp_path / "base", ["random"], [0])
    loaded = load_results(base)
    per_user = loaded["per_user"]["auc"].to_numpy()
    expected = per_user.std(ddof=1) / math.sqrt(per_user.size)
    outcome = regress(copy(base, tmp_path), base)
    row = outcome.to_frame().set_index(["label", "check"]).loc[("random", "auc")]
    assert row["se"] == pytest.approx(expected)
    assert row["tolerance"] == pytest.approx(max(3 * expected, 0.005))
    assert "per-user SE" in row["note"]


def test_one_seed_of_a_deterministic_model_gets_the_floor(tmp_path):
    """A deterministic model has no seed-to-seed spread: the per-user SE is not its noise."""
    base = run_folder(tmp_path / "base", ["popularity"], [0])
    assert load_results(base)["runs"]["deterministic"].tolist() == [True]
    outcome = regress(copy(base, tmp_path), base)
    row = outcome.to_frame().set_index(["label", "check"]).loc[("popularity", "auc")]
    assert row["se"] == 0.0 and row["tolerance"] == pytest.approx(0.005)
    assert "deterministic" in row["note"]


def test_missing_model_or_metric_fails(baseline, tmp_path):
    missing = copy(baseline, tmp_path, "missing")
    edit_runs(missing, lambda runs: runs[runs["label"] != "popularity"])
    outcome = regress(missing, baseline)
    assert not outcome.passed
    failed = rows(outcome, "FAIL")
    assert set(failed["label"]) == {"popularity"}
    assert "missing" in failed["note"].iloc[0]
    assert "popularity" in outcome.table().splitlines()[-1]

    no_metric = copy(baseline, tmp_path, "no_metric")
    edit_runs(no_metric, lambda runs: runs.drop(columns=["ndcg@20"]))
    outcome = regress(no_metric, baseline)
    failed = rows(outcome, "FAIL")
    assert set(failed["check"]) == {"ndcg@20"}
    assert set(failed["label"]) == {"popularity", "random", "ease"}


def test_a_failed_new_run_fails_the_gate(baseline, tmp_path):
    broken = copy(baseline, tmp_path, "broken")

    def fail_one(runs):
        hit = (runs["label"] == "random") & (runs["seed"] == 1)
        runs["error"] = runs["error"].astype(object)
        runs.loc[hit, "status"] = "failed"
        runs.loc[hit, "error"] = "RuntimeError: boom"
        return runs

    edit_runs(broken, fail_one)
    outcome = regress(broken, baseline)
    assert not outcome.passed
    failed = rows(outcome, "FAIL")
    assert failed["label"].tolist() == ["random"] and failed["check"].tolist() == ["runs"]
    assert "boom" in failed["note"].iloc[0]


def test_fit_time_growth_warns_but_passes(baseline, tmp_path):
    slow = copy(baseline, tmp_path, "slow")

    def slower(runs):
        runs.loc[runs["label"] == "ease", "fit_seconds"] = runs["fit_seconds"] * 10 + 1.0
        return runs

    edit_runs(slow, slower)
    outcome = regress(slow, baseline)
    assert outcome.passed
    warned = rows(outcome, "WARN")
    assert warned[["label", "check"]].values.tolist() == [["ease", "fit_seconds"]]
    assert "fit time x" in warned["note"].iloc[0]
    # A factor above the growth (CLI override) silences it.
    assert not regress(slow, baseline, fit_time_factor=1e6).warnings


def test_dataset_hash_change_fails_unless_synthetic_with_the_same_spec(tmp_path):
    def rehash(runs):
        runs["dataset_sha256"] = "0" * 64
        return runs

    # "toy" is not a synthetic dataset name: a different hash is a different dataset.
    base = run_folder(tmp_path / "toy", ["popularity"], [0, 1], dataset="toy")
    changed = copy(base, tmp_path, "toy_changed")
    edit_runs(changed, rehash)
    outcome = regress(changed, base)
    assert not outcome.passed
    failed = rows(outcome, "FAIL")
    assert failed["check"].tolist() == ["dataset"]
    assert "not comparable" in failed["note"].iloc[0]

    base = run_folder(tmp_path / "syn", ["popularity"], [0, 1])
    changed = copy(base, tmp_path, "syn_changed")
    edit_runs(changed, rehash)
    outcome = regress(changed, base)
    assert outcome.passed
    assert rows(outcome, "WARN")["check"].tolist() == ["dataset"]


def test_same_label_on_another_dataset_does_not_count(tmp_path):
    base = run_folder(tmp_path / "a", ["popularity"], [0])
    other = run_folder(tmp_path / "b", ["popularity"], [0], options={**OPTIONS, "num_users": 60})
    outcome = regress(other, base)
    assert not outcome.passed
    failed = rows(outcome, "FAIL")
    assert "popularity" in set(failed["label"])
    note = failed.loc[failed["label"] == "popularity", "note"].iloc[0]
    assert "missing" in note and "num_users" in note
    assert "new" in set(outcome.to_frame()["verdict"])  # the other dataset is listed, not gated


def test_settings_come_from_the_baseline_manifest(baseline, tmp_path):
    loose = copy(baseline, tmp_path, "loose")
    manifest = json.loads((loose / "manifest.json").read_text())
    manifest.update(tolerance_floor=0.5, fit_time_factor=7.0)
    (loose / "manifest.json").write_text(json.dumps(manifest))
    worse = copy(baseline, tmp_path, "worse")
    edit_runs(worse, lambda runs: runs.assign(auc=runs["auc"] - 0.1))
    assert not regress(worse, baseline).passed
    outcome = regress(worse, loose)  # the baseline's manifest sets the gate
    assert outcome.passed and outcome.tolerance_floor == 0.5 and outcome.fit_time_factor == 7.0


def test_bad_input_raises_clear_errors(baseline, tmp_path):
    with pytest.raises(ResultsError, match=r"no runs\.csv"):
        regress(tmp_path, baseline)
    empty = copy(baseline, tmp_path, "empty")
    edit_runs(empty, lambda runs: runs.assign(status="failed"))
    with pytest.raises(ValueError, match="no successful run"):
        regress(baseline, empty)
    with pytest.raises(ValueError, match="fit_time_factor must be a finite number >= 0, got -1"):
        regress(baseline, baseline, fit_time_factor=-1)


def test_cli_exit_codes_and_table(baseline, tmp_path, capsys):
    same = copy(baseline, tmp_path, "same")
    assert main(["regress", str(same), "--baseline", str(baseline)]) == 0
    assert "PASSED" in capsys.readouterr().out
    worse = copy(baseline, tmp_path, "worse")
    edit_runs(
        worse,
        lambda runs: runs.assign(
            mrr=np.where(runs["label"] == "popularity", runs["mrr"] - 0.05, runs["mrr"])
        ),
    )
    assert main(["regress", str(worse), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("failed: popularity [mrr]")
    assert main(["regress", str(tmp_path / "nope"), "--baseline", str(baseline)]) == 2


ZEN3 = {"cpu": "AMD EPYC", "cpu_family": "AuthenticAMD family 25 model 1", "cpu_isa": ["avx2"]}
ZEN4 = {"cpu": "AMD EPYC", "cpu_family": "AuthenticAMD family 25 model 17", "cpu_isa": ["avx512f"]}


def with_environment(folder: Path, environment) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["environment"] = environment
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_the_table_names_both_machines_and_notes_when_they_differ(baseline, tmp_path):
    base = with_environment(copy(baseline, tmp_path, "base"), ZEN4)
    same = with_environment(copy(baseline, tmp_path, "same"), dict(ZEN4))
    outcome = regress(same, base)
    assert outcome.baseline_machine == "AMD EPYC (AuthenticAMD family 25 model 17; avx512f)"
    assert outcome.results_machine == outcome.baseline_machine
    assert not outcome.machines_differ
    assert "machines: baseline AMD EPYC (AuthenticAMD family 25 model 17; avx512f)" in (
        outcome.table()
    )
    assert "different CPU kinds" not in outcome.table()

    other = with_environment(copy(baseline, tmp_path, "other"), ZEN3)
    edit_runs(other, lambda runs: runs.assign(auc=runs["auc"] - 0.1))
    outcome = regress(other, base)
    assert outcome.machines_differ and not outcome.passed  # a note, never a verdict
    table = outcome.table()
    assert "results AMD EPYC (AuthenticAMD family 25 model 1; avx2)" in table
    assert "different CPU kinds" in table

    # A folder made before the family and instruction sets were recorded: the names agree.
    older = with_environment(copy(baseline, tmp_path, "older"), {"cpu": "AMD EPYC"})
    outcome = regress(older, base)
    assert outcome.results_machine == "AMD EPYC" and not outcome.machines_differ
    # Names with parentheses ("Intel(R) Xeon(R)") are names, not details.
    intel = {"cpu": "Intel(R) Xeon(R) CPU", "cpu_family": "GenuineIntel family 6 model 85",
             "cpu_isa": ["avx512f"]}  # fmt: skip
    intel_base = with_environment(copy(baseline, tmp_path, "intel_base"), {"cpu": intel["cpu"]})
    intel_new = with_environment(copy(baseline, tmp_path, "intel_new"), intel)
    outcome = regress(intel_new, intel_base)
    assert outcome.baseline_machine == "Intel(R) Xeon(R) CPU" and not outcome.machines_differ
    assert regress(intel_new, base).machines_differ
    # A manifest without an environment (older folders, hand-made ones): no claim either way.
    unknown = with_environment(copy(baseline, tmp_path, "unknown"), None)
    outcome = regress(unknown, base)
    assert outcome.results_machine == "unknown" and not outcome.machines_differ
