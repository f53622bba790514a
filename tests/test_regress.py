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
from bench.datasets.synthetic import synthetic
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import Registry
from bench.results import ResultsError, ResultStore, load_results
from bench.results.regress import GateSettings, RegressionOutcome, is_quality_metric, regress
from metrics.registry import METRICS, Margin

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
    """Edit runs.csv alone (columns the per-user table does not hold, or to break consistency)."""
    runs = pd.read_csv(folder / "runs.csv", keep_default_na=False, na_values=[""])
    runs = edit(runs)
    runs.to_csv(folder / "runs.csv", index=False)


def edit_per_user(folder: Path, label: str, edit) -> None:
    """Edit one label's per-user rows, then recompute runs.csv from them (as a real run would)."""
    per_user = pd.read_parquet(folder / "per_user.parquet")
    runs = pd.read_csv(folder / "runs.csv", keep_default_na=False, na_values=[""])
    runs["run_id"] = runs["run_id"].astype(str)
    per_user["run_id"] = per_user["run_id"].astype(str)
    ids = runs["label"] == label
    mine = per_user["run_id"].isin(set(runs.loc[ids, "run_id"]))
    per_user.loc[mine] = edit(per_user.loc[mine].copy())
    columns = [c for c in per_user.columns if c in runs and METRICS.is_metric(c)]
    means = per_user[mine].groupby("run_id")[columns].mean()
    for column in columns:
        runs.loc[ids, column] = runs.loc[ids, "run_id"].map(means[column])
    runs.to_csv(folder / "runs.csv", index=False)
    per_user.to_parquet(folder / "per_user.parquet", index=False)


def shift(column: str, by: float):
    def edit(rows):
        rows[column] = rows[column] + by
        return rows

    return edit


def rows(outcome: RegressionOutcome, verdict: str) -> pd.DataFrame:
    frame = outcome.to_frame()
    return frame[frame["verdict"] == verdict]


def row_of(outcome: RegressionOutcome, label: str, check: str) -> pd.Series:
    return outcome.to_frame().set_index(["label", "check"]).loc[(label, check)]


def test_identical_copy_passes_and_every_pair_is_compared(baseline, tmp_path):
    outcome = regress(copy(baseline, tmp_path), baseline)
    assert outcome.passed, outcome.table()
    frame = outcome.to_frame()
    metrics = [c for c in load_results(baseline)["runs"].columns if is_quality_metric(c)]
    assert {"auc", "mrr", "precision@5", "ndcg@20", "hit@10", "map@10"} <= set(metrics)
    quality = frame[frame["check"].isin(metrics)]
    # Every label x metric of the baseline, each with zero difference.
    assert len(quality) == 3 * len(metrics)
    assert set(quality["label"]) == {"popularity", "random", "ease"}
    assert (quality["delta"] == 0).all() and (quality["verdict"] == "ok").all()
    # Per-user metrics are paired over users; coverage (one value per run) is run level.
    assert set(quality.loc[quality["kind"] == "spread", "check"]) == {
        c for c in metrics if c.startswith("coverage@")
    }
    paired = quality[quality["kind"] == "paired"]
    assert (paired["note"] == "identical per user").all() and (paired["n_users"] > 0).all()
    assert outcome.paired_checks == len(paired)
    assert set(frame.loc[frame["check"] == "fit_seconds", "label"]) == {
        "popularity",
        "random",
        "ease",
    }
    table = outcome.table()
    assert "PASSED" in table
    for column in ("baseline", "new", "diff", "interval", "bound", "margin", "mdd", "verdict"):
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
    assert auc["bound"] < -auc["margin"]
    lines = outcome.table().splitlines()
    assert lines[-1].startswith("FAILED") and lines[-1].endswith("in 1 model(s)")
    assert lines[-2].startswith("FAIL ease (synthetic") and ": auc, " in lines[-2]
    # The other models reproduce exactly and pass.
    others = outcome.to_frame()
    others = others[others["label"].isin(["popularity", "random"])]
    assert (others["verdict"] == "ok").all()


def test_a_constant_per_user_drop_fails_only_beyond_the_margin(baseline, tmp_path):
    """Hand-computed: every user loses x (up to rounding), so se ~ 0 and the bound is -x."""
    small = copy(baseline, tmp_path, "small")
    edit_per_user(small, "ease", shift("auc", -0.012))  # margin: 0.015 absolute
    outcome = regress(small, baseline)
    assert outcome.passed, outcome.table()
    row = row_of(outcome, "ease", "auc")
    assert row["margin"] == pytest.approx(0.015)
    assert row["delta"] == pytest.approx(-0.012) and row["se"] < 1e-12
    assert row["bound"] == pytest.approx(-0.012) and row["p_value"] == pytest.approx(1.0)

    big = copy(baseline, tmp_path, "big")
    edit_per_user(big, "ease", shift("auc", -0.018))
    outcome = regress(big, baseline)
    assert [(c.label, c.check) for c in outcome.failures] == [("ease", "auc")]
    assert row_of(outcome, "ease", "auc")["bound"] == pytest.approx(-0.018)
    # A larger margin (a suite's [gate.margins], or the settings argument) lets it pass.
    assert regress(big, baseline, settings=GateSettings.parse({"margins": {"auc": 0.02}})).passed


def test_paired_statistics_match_scipy_and_a_brute_force_holm(baseline, tmp_path):
    """Reference: scipy's one-sample t-test of d against -margin, and Holm by its definition."""
    import scipy.stats

    worse = copy(baseline, tmp_path, "worse")
    rng = np.random.default_rng(3)

    def noisy(rows):
        rows["auc"] = rows["auc"] - 0.03 + rng.normal(0, 0.05, len(rows))
        rows["mrr"] = rows["mrr"] * 0.97
        return rows

    edit_per_user(worse, "random", noisy)
    outcome = regress(worse, baseline)
    frame = outcome.to_frame()
    paired = frame[frame["kind"] == "paired"].reset_index(drop=True)
    m = len(paired)
    assert m == outcome.paired_checks
    base = load_results(baseline)["per_user"]
    new = load_results(worse)["per_user"]
    row = paired[(paired["label"] == "random") & (paired["check"] == "auc")].iloc[0]
    d = (
        new[new["label"] == "random"].groupby("user")["auc"].mean()
        - base[base["label"] == "random"].groupby("user")["auc"].mean()
    ).to_numpy()
    test = scipy.stats.ttest_1samp(d, -0.015, alternative="less")
    assert row["p_value"] == pytest.approx(test.pvalue, rel=1e-9)
    assert row["delta"] == pytest.approx(d.mean()) and row["n_users"] == d.size
    assert row["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size))
    # Holm step-down by its definition: reject while p_(k) < alpha / (m - k + 1).
    order = np.argsort(paired["p_value"].to_numpy(), kind="stable")
    rejected = np.zeros(m, dtype=bool)
    for k, index in enumerate(order):
        if paired["p_value"].iloc[index] >= 0.05 / (m - k):
            break
        rejected[index] = True
    assert (rejected == (paired["verdict"] == "FAIL").to_numpy()).all()
    assert rejected.any()
    # The printed bound says the same as the verdict, row by row.
    assert ((paired["bound"] < -paired["margin"]) == rejected).all()


def test_coverage_uses_the_seed_spread_with_the_declared_margin_as_floor(baseline, tmp_path):
    """Hand-computed: seeds 0.5/0.6/0.7 against 0.45/0.55/0.65 (coverage has no per-user rows)."""

    def coverage(values):
        def edit(runs):
            runs.loc[runs["label"] == "random", "coverage@10"] = values
            return runs

        return edit

    base = copy(baseline, tmp_path, "base")
    edit_runs(base, coverage([0.5, 0.6, 0.7]))
    lower = copy(base, tmp_path, "lower")
    edit_runs(lower, coverage([0.45, 0.55, 0.65]))
    row = row_of(regress(lower, base), "random", "coverage@10")
    se = 0.1 * math.sqrt(1 / 3 + 1 / 3)  # pooled sd 0.1 on both sides
    assert row["kind"] == "spread" and row["se"] == pytest.approx(se)
    assert row["delta"] == pytest.approx(-0.05) and row["margin"] == pytest.approx(0.06)
    assert row["tolerance"] == pytest.approx(3 * se) and row["verdict"] == "ok"
    # Without a spread (one seed each side, or a deterministic label) the margin is the floor.
    much_lower = copy(base, tmp_path, "much_lower")
    edit_runs(much_lower, coverage([0.3, 0.35, 0.4]))
    assert [(c.label, c.check) for c in regress(much_lower, base).failures] == [
        ("random", "coverage@10")
    ]
    outcome = regress(copy(baseline, tmp_path), baseline)
    row = row_of(outcome, "ease", "coverage@10")
    assert row["se"] == 0 and row["tolerance"] == pytest.approx(row["margin"])
    ease = copy(baseline, tmp_path, "ease")

    def shrink(runs):
        runs.loc[runs["label"] == "ease", "coverage@10"] *= 0.8
        return runs

    edit_runs(ease, shrink)
    assert [(c.label, c.check) for c in regress(ease, baseline).failures] == [
        ("ease", "coverage@10")
    ]


def test_one_seed_on_each_side_is_still_paired_over_users(tmp_path):
    base = run_folder(tmp_path / "base", ["random"], [0])
    other = run_folder(tmp_path / "other", ["random"], [1])
    outcome = regress(other, base)
    assert outcome.passed, outcome.table()
    row = row_of(outcome, "random", "auc")
    assert row["kind"] == "paired" and row["n_users"] > 10 and row["delta"] != 0


def test_a_changed_deterministic_label_warns_on_the_same_machine_kind(baseline, tmp_path):
    base = with_environment(copy(baseline, tmp_path, "base"), ZEN3)
    moved = with_environment(copy(baseline, tmp_path, "moved"), dict(ZEN3))
    edit_per_user(moved, "ease", shift("auc", 1e-7))
    outcome = regress(moved, base)
    assert outcome.passed
    warned = rows(outcome, "WARN")
    assert warned[["label", "check"]].values.tolist() == [["ease", "deterministic"]]
    assert "ease" in warned["note"].iloc[0] and "auc" in warned["note"].iloc[0]
    # On another machine kind the last bits may move: no warning, the statistics decide.
    elsewhere = with_environment(copy(moved, tmp_path, "elsewhere"), ZEN4)
    assert not regress(elsewhere, base).warnings


def test_runs_csv_must_agree_with_its_per_user_rows(baseline, tmp_path):
    edited = copy(baseline, tmp_path, "edited")
    edit_runs(edited, lambda runs: runs.assign(auc=runs["auc"] - 0.1))
    outcome = regress(edited, baseline)
    failed = rows(outcome, "FAIL")
    assert set(failed["check"]) == {"consistency"}
    assert set(failed["label"]) == {"popularity", "random", "ease"}
    assert "results runs.csv means differ from their per-user rows" in failed["note"].iloc[0]
    # Within 1e-9 (what a CSV round trip can do) is the same.
    close = copy(baseline, tmp_path, "close")
    edit_runs(close, lambda runs: runs.assign(auc=runs["auc"] + 1e-12))
    assert not [c for c in regress(close, baseline).failures if c.check == "consistency"]


def test_missing_model_or_metric_fails(baseline, tmp_path):
    missing = copy(baseline, tmp_path, "missing")
    edit_runs(missing, lambda runs: runs[runs["label"] != "popularity"])
    outcome = regress(missing, baseline)
    assert not outcome.passed
    failed = rows(outcome, "FAIL")
    assert set(failed["label"]) == {"popularity"}
    assert "missing" in failed["note"].iloc[0]
    assert outcome.table().splitlines()[-2].startswith("FAIL popularity (")

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
    manifest.update(gate={"alpha": 0.01, "margins": {"auc": 0.5}}, fit_time_factor=7.0)
    (loose / "manifest.json").write_text(json.dumps(manifest))
    worse = copy(baseline, tmp_path, "worse")
    edit_per_user(worse, "random", shift("auc", -0.1))
    assert not regress(worse, baseline).passed
    outcome = regress(worse, loose)  # the baseline's manifest sets the gate
    assert outcome.passed and outcome.fit_time_factor == 7.0
    assert outcome.settings.alpha == 0.01 and outcome.settings.margins["auc"] == Margin(0.5)
    assert outcome.settings_source == "baseline"
    # Unset margins keep the registry's declaration.
    assert outcome.settings.margins["ndcg"] == METRICS.get("ndcg").margin


def test_a_run_records_the_suite_gate_settings(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'models = ["popularity"]\ndataset = "synthetic"\n'
        '[gate]\nalpha = 0.01\n[gate.margins]\nauc = 0.02\ntop-k = "3%"\n'
    )
    from bench.config import load_experiment

    gate = load_experiment(suite).gate
    assert gate["alpha"] == 0.01 and gate["spread_se"] == 3.0
    assert gate["margins"]["auc"] == 0.02
    assert gate["margins"]["ndcg"] == "3%" and gate["margins"]["coverage"] == "10%"
    assert GateSettings.parse(gate).to_json() == gate  # the manifest form round-trips


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[gate]\nalpha = 0.7\n", r"gate.alpha must be a number in \(0, 0.5\]"),
        ("[gate]\nspeed = 1\n", "unknown key"),
        ('[gate.margins]\nauc = "x"\n', "a margin is a number >= 0"),
        ("[gate.margins]\nauc = -1\n", "finite number >= 0"),
        ("[gate.margins]\nndgc = 0.1\n", "unknown metric or family 'ndgc'"),
        ('[gate.margins]\nndcg = "150%"\n', "below 100%"),
        ("tolerance_floor = 0.005\n", "no longer exist"),
    ],
)
def test_bad_gate_settings_name_the_key_and_file(tmp_path, table, message):
    from bench.config import ConfigError, load_experiment

    suite = tmp_path / "suite.toml"
    suite.write_text('models = ["popularity"]\ndataset = "synthetic"\n' + table)
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(suite)
    assert str(suite) in str(info.value)


def test_bad_input_raises_clear_errors(baseline, tmp_path):
    with pytest.raises(ResultsError, match=r"no runs\.csv"):
        regress(tmp_path, baseline)
    empty = copy(baseline, tmp_path, "empty")
    edit_runs(empty, lambda runs: runs.assign(status="failed"))
    with pytest.raises(ValueError, match="no successful run"):
        regress(baseline, empty)
    with pytest.raises(ValueError, match="fit_time_factor must be a finite number >= 0, got -1"):
        regress(baseline, baseline, fit_time_factor=-1)
    bad = copy(baseline, tmp_path, "bad")
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "gate": {"alpha": 2}}))
    with pytest.raises(ResultsError, match=r"manifest\.json: gate\.alpha"):
        regress(baseline, bad)


def test_cli_exit_codes_and_table(baseline, tmp_path, capsys):
    same = copy(baseline, tmp_path, "same")
    assert main(["regress", str(same), "--baseline", str(baseline)]) == 0
    assert "PASSED" in capsys.readouterr().out
    worse = copy(baseline, tmp_path, "worse")
    edit_per_user(worse, "popularity", shift("mrr", -0.05))
    assert main(["regress", str(worse), "--baseline", str(baseline)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("FAIL popularity (synthetic") and lines[-2].endswith(": mrr")
    assert lines[-1].startswith("FAILED: 1 of ")
    assert lines[-1].endswith(" check(s) failed in 1 model(s)")
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
    edit_per_user(other, "ease", shift("auc", -0.1))
    outcome = regress(other, base)
    assert outcome.machines_differ and not outcome.passed  # said, never a verdict
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
