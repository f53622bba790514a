"""The statistics of bench.results.tables by hand: identity, intervals, breakdowns, presets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.results import tables
from bench.results.tables import (
    activity_breakdown,
    dataset_groups,
    paired_summary,
    preset_differences,
    quality_summary,
    run_identity,
)
from metrics.stats import mean_ci


def _runs(labels_seeds, **extra):
    rows = []
    for label, seed in labels_seeds:
        rows.append(
            {
                "run_id": f"{label}{seed}",
                "label": label,
                "model": label.split(":")[0],
                "seed": seed,
                "status": "ok",
                "spec": json.dumps({"dataset": "d", "split": "s", "min_rating": 4.0}),
                "dataset_sha256": "abc",
                **extra,
            }
        )
    return pd.DataFrame(rows)


def test_run_identity_has_named_fields_and_one_text():
    row = {
        "spec": json.dumps(
            {
                "dataset": "ml-100k",
                "split": "ua",
                "min_rating": 4.0,
                "ties": "pessimistic",
                "dataset_options": {"b": 1, "a": 2},
                "stage": "validation",
            }
        ),
        "exclude": "train-all",
        "dataset_sha256": "ff",
    }
    key = run_identity(row)
    assert (key.dataset, key.split, key.min_rating, key.ties, key.exclude, key.stage) == (
        "ml-100k",
        "ua",
        "4",
        "pessimistic",
        "train-all",
        "validation",
    )
    assert key.options == {"a": 2, "b": 1} and key.sha256 == "ff"
    assert key.text() == (
        'ml-100k split=ua min_rating=4 options={"a":2,"b":1} stage=validation '
        "ties=pessimistic exclude=train-all"
    )
    # Old rows without a spec fall back to their columns; defaults for the policies.
    old = run_identity({"dataset": "x", "split": "y", "min_rating": float("nan")})
    assert old.text() == "x split=y min_rating=none ties=expected exclude=train-positives"
    assert old.stage == "test"


def test_groups_split_on_the_hash():
    runs = pd.concat([_runs([("a", 0)]), _runs([("b", 0)]).assign(dataset_sha256="other")])
    groups = dataset_groups(runs)
    assert [g.key.sha256 for g in groups] == ["abc", "other"]
    # The gate matches runs on the key's text, which names every field but the hash.
    assert groups[0].key.text() == groups[1].key.text()


def _per_user(values: dict[str, np.ndarray], activity=None) -> pd.DataFrame:
    frames = []
    for run_id, vals in values.items():
        frame = pd.DataFrame({"run_id": run_id, "user": np.arange(vals.size), "auc": vals})
        if activity is not None:
            frame["activity"] = activity
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_bootstrap_matches_the_reference_and_normal_matches_the_bootstrap(rng):
    values = rng.beta(8, 2, size=600)
    runs = _runs([("a", 0)])
    q = quality_summary(runs, _per_user({"a0": values}), metrics=["auc"], n_boot=4000, seed=1)
    ref = mean_ci(values, n_boot=4000, rng=1)
    row = q.iloc[0]
    assert row["method"] == "bootstrap" and row["mean"] == pytest.approx(values.mean())
    width = ref.high - ref.low
    assert row["low"] == pytest.approx(ref.low, abs=0.05 * width)
    assert row["high"] == pytest.approx(ref.high, abs=0.05 * width)
    # Above the threshold the normal approximation is used; it agrees with the bootstrap.
    big = rng.beta(8, 2, size=25_000)
    per_user = _per_user({"a0": big})
    normal = quality_summary(runs, per_user, metrics=["auc"], normal_above=20_000).iloc[0]
    boot = quality_summary(runs, per_user, metrics=["auc"], normal_above=10**9, n_boot=2000).iloc[0]
    assert normal["method"] == "normal" and boot["method"] == "bootstrap"
    width = boot["high"] - boot["low"]
    assert abs(normal["low"] - boot["low"]) < 0.05 * width
    assert abs(normal["high"] - boot["high"]) < 0.05 * width


def test_seeds_are_averaged_per_user_first():
    runs = _runs([("a", 0), ("a", 1)])
    per_user = _per_user({"a0": np.array([0.2, 0.4]), "a1": np.array([0.6, 0.8])})
    q = quality_summary(runs, per_user, metrics=["auc"], n_boot=50)
    assert q.iloc[0]["mean"] == pytest.approx(0.5) and q.iloc[0]["users"] == 2
    assert q.iloc[0]["seeds"] == 2


def test_paired_summary_by_hand():
    a = pd.DataFrame({"auc": [0.9, 0.8, 0.7, 0.6]}, index=[0, 1, 2, 3])
    b = pd.DataFrame({"auc": [0.8, 0.7, 0.7, 0.5]}, index=[0, 1, 2, 3])
    same = pd.DataFrame({"auc": [0.9, 0.8, 0.7, 0.6]}, index=[0, 1, 2, 3])
    out = paired_summary({"a": a, "b": b, "same": same}, {"auc": "b"}).set_index("label")
    diff = np.array([0.1, 0.1, 0.0, 0.1])
    se = diff.std(ddof=1) / 2
    from scipy import stats

    t = diff.mean() / se
    p = 2 * stats.t.sf(t, 3)
    assert out.loc["a", "mean_diff"] == pytest.approx(0.075)
    assert out.loc["a", "t_pvalue"] == pytest.approx(p)
    half = stats.t.ppf(0.975, 3) * se
    assert out.loc["a", "raw_low"] == pytest.approx(0.075 - half)
    # Holm over the two labels compared with b: both have the same p here.
    assert out.loc["a", "t_holm"] == pytest.approx(min(1.0, 2 * p))
    assert not out.loc["a", "significant"] and min(1.0, 2 * p) >= 0.05
    # Nothing rejected (R = 0 of m = 2): the interval is at 1 - 0.05 / 2 and holds 0.
    assert out.loc["a", "level"] == pytest.approx(0.975)
    half = stats.t.ppf(1 - 0.025 / 2, 3) * se
    assert out.loc["a", "low"] == pytest.approx(0.075 - half)
    assert out.loc["a", "high"] == pytest.approx(0.075 + half)
    assert out.loc["a", "low"] < 0 < out.loc["a", "high"]


def test_activity_breakdown_by_hand():
    runs = _runs([("a", 0)])
    activity = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    per_user = _per_user({"a0": np.linspace(0.1, 0.8, 8)}, activity=activity)
    group = dataset_groups(runs)[0]
    out = activity_breakdown(group, per_user, ["auc"])
    assert out["users"].tolist() == [2, 2, 2, 2]
    assert list(zip(out["low"], out["high"])) == [(1, 2), (3, 4), (5, 6), (7, 8)]
    np.testing.assert_allclose(out["auc"], [0.15, 0.35, 0.55, 0.75])
    # Folders without the activity column get no breakdown.
    assert activity_breakdown(group, per_user.drop(columns="activity"), ["auc"]).empty


def test_preset_differences_names_the_differing_parameters():
    runs = _runs([("m:fast", 0), ("m:slow", 0), ("n", 0)])
    runs["params"] = [
        json.dumps({"dropout": 0.0, "negatives": "hard", "dim": 8}),
        json.dumps({"dropout": 0.1, "negatives": "uniform", "dim": 8}),
        json.dumps({"x": 1}),
    ]
    out = preset_differences(runs)
    assert out["parameter"].tolist() == ["dropout", "negatives"]
    assert out.iloc[1]["values"] == {"m:fast": '"hard"', "m:slow": '"uniform"'}


def test_model_facts_read_the_columns_and_say_unknown_for_old_folders():
    runs = _runs([("p", 0)], uses_sampler=False, deterministic=True, notes="counts")
    facts = tables.model_facts(runs).iloc[0]
    assert (facts["uses_sampler"], facts["deterministic"], facts["notes"]) == (
        "no",
        "yes",
        "counts",
    )
    old = tables.model_facts(_runs([("p", 0)])).iloc[0]
    assert old["uses_sampler"] == "unknown" and old["deterministic"] == "unknown"


def test_the_reference_is_the_recorded_class_fact():
    runs = _runs([("popularity", 0), ("ease", 0), ("ease:big", 0)])
    runs["reference"] = [False, True, True]  # as the runner records it
    assert tables.reference_runs(runs)["label"].tolist() == ["ease", "ease:big"]
    assert tables.reference_label(runs) == "ease"  # the bare name first
    runs["reference"] = ["False", "False", "True"]  # as runs.csv may read back
    assert tables.reference_label(runs) == "ease:big"
    runs["reference"] = False
    assert tables.reference_runs(runs).empty and tables.reference_label(runs) is None


def test_folders_without_the_reference_column_fall_back_to_popularity():
    runs = _runs([("ease", 0), ("popularity:x", 0), ("popularity", 0), ("popularity", 1)])
    assert "reference" not in runs
    assert tables.reference_runs(runs)["run_id"].tolist() == [
        "popularity:x0",
        "popularity0",
        "popularity1",
    ]
    assert tables.reference_label(runs) == "popularity"
    assert tables.reference_label(_runs([("ease", 0)])) is None
    # Rows without a value (older rows beside newer ones) fall back row by row.
    runs["reference"] = [True, None, np.nan, np.nan]
    assert tables.reference_runs(runs)["run_id"].tolist() == [
        "ease0",
        "popularity:x0",
        "popularity0",
        "popularity1",
    ]
    assert tables.reference_label(runs) == "ease"
