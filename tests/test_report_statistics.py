"""The report's statistics said exactly: star and interval agree, one headline test, no 'nan'.

Hand-computed families, the committed baseline reports' own data, and the
README's tuned table recomputed from the committed ``runs.csv``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench.io import atomic_write_csv
from bench.results import load_results
from bench.results.render import Doc, render_markdown
from bench.results.tables import (
    dataset_groups,
    headline_metrics,
    paired_summary,
    paired_tables,
    quality_summary,
)
from bench.results.tuning import default_vs_tuned, summary_table
from bench.results.tuning_report import TABLE_METRICS, tuning_section

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "results" / "baseline"
TUNED = BASELINES / "tuned"


def _excludes_zero(low: float, high: float) -> bool:
    return low > 0 or high < 0


# -- finding 1: * <=> the interval excludes 0, both ways -------------------------------------
def test_holm_level_intervals_by_hand():
    # n = 4 differences c + (1, 1, -1, -1): mean c, sd 2/sqrt(3), se 1/sqrt(3), t = c*sqrt(3).
    shape = np.array([1.0, 1.0, -1.0, -1.0])
    centres = {"A": 10.0, "B": 2.0, "C": 0.5}
    reference = pd.DataFrame({"auc": np.zeros(4)})
    means = {"ref": reference, **{k: pd.DataFrame({"auc": c + shape}) for k, c in centres.items()}}
    out = paired_summary(means, {"auc": "ref"}).set_index("label")
    se = 1 / np.sqrt(3)
    p = {k: 2 * scipy.stats.t.sf(c / se, 3) for k, c in centres.items()}
    assert p["A"] < 0.05 / 3 and 0.025 < p["B"] < 0.05 and p["C"] > 0.05
    # Holm: A is rejected first (3p < 0.05); B is kept (2p > 0.05), so is C. R = 1, m = 3.
    assert out["significant"].to_dict() == {"A": True, "B": False, "C": False}
    for label, row in out.iterrows():
        assert row["significant"] == _excludes_zero(row["low"], row["high"]), label
    levels = {"A": 1 - 0.05 / 3, "B": 1 - 0.05 / 2, "C": 1 - 0.05 / 2}
    for label, level in levels.items():
        half = scipy.stats.t.ppf(1 - (1 - level) / 2, 3) * se
        row = out.loc[label]
        assert row["level"] == pytest.approx(level)
        assert (row["low"], row["high"]) == pytest.approx(
            (centres[label] - half, centres[label] + half)
        )
        raw_half = scipy.stats.t.ppf(0.975, 3) * se
        assert (row["raw_low"], row["raw_high"]) == pytest.approx(
            (centres[label] - raw_half, centres[label] + raw_half)
        )
    # B is the case of the finding: raw p < 0.05, its plain 95% interval excludes 0, no star;
    # the interval at Holm's level for it (97.5%) does not exclude 0.
    assert _excludes_zero(out.loc["B", "raw_low"], out.loc["B", "raw_high"])


def test_a_family_rejected_in_full_uses_the_step_down_levels():
    from bench.results.tables import paired_family

    # Three clearly different means: all rejected, ranks 1, 2, 3 at 0.05/3, 0.05/2, 0.05.
    shape = np.array([1.0, 1.0, -1.0, -1.0])
    rows = paired_family([30 + shape, 20 + shape, 10 + shape])
    assert [r["significant"] for r in rows] == [True, True, True]
    assert [r["level"] for r in rows] == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 0.95])
    # A zero difference: p = 1, interval [0, 0], never significant.
    zero = paired_family([np.zeros(5), 10 + shape])
    assert zero[0]["t_pvalue"] == 1.0 and (zero[0]["low"], zero[0]["high"]) == (0.0, 0.0)
    assert not zero[0]["significant"] and zero[1]["significant"]


@pytest.mark.parametrize("name", ["notebook", "tuned"])
def test_committed_reports_star_iff_interval_excludes_zero(name):
    loaded = load_results(BASELINES / name)
    runs, per_user = loaded["runs"], loaded["per_user"]
    runs = runs.assign(run_id=runs["run_id"].astype(str), label=runs["label"].astype(str))
    checked = 0
    for group in dataset_groups(runs):
        metrics = headline_metrics(group.runs.columns)
        # The best label of each metric only needs the means: few resamples suffice.
        quality = quality_summary(group.runs, per_user, metrics=metrics, n_boot=20)
        paired = paired_tables(group, per_user, quality, metrics)
        records = paired.to_dict("records")
        for r in records:
            assert r["significant"] == _excludes_zero(r["low"], r["high"]), r
        for r in records:
            # Each interval contains the plain 95% one.
            assert r["low"] <= r["raw_low"] <= r["mean_diff"] <= r["raw_high"] <= r["high"], r
        checked += len(records)
    assert checked > 200


# -- finding 2: one headline test (paired t, Holm) in the tuning section too -----------------
def _tuning_frames(diffs: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs / per_user rows of preset and tuned labels whose per-user AUC differ by ``diffs``."""
    runs, per_user = [], []
    for model, diff in diffs.items():
        base = np.linspace(0.5, 0.9, diff.size)
        for label, values in ((model, base), (f"{model} (tuned)", base + diff)):
            run_id = f"{label}-0"
            runs.append(
                {"run_id": run_id, "label": label, "status": "ok", "seed": 0, "params": "{}"}
            )
            per_user += [
                {"run_id": run_id, "user": u, "auc": float(v)} for u, v in enumerate(values)
            ]
    return pd.DataFrame(runs).assign(auc=0.7), pd.DataFrame(per_user)


def _write_trials(folder: Path, models: list[str], budget: int = 2) -> None:
    rows = [
        {
            "model": m,
            "study": f"{m}@x",
            "trial": t,
            "state": "complete",
            "value": 0.1 + t / 100,
            "seconds": 1.0,
            "params": json.dumps({"l2": t}),
            "default": t == 0,
            "worker": "w",
        }
        for m in models
        for t in range(budget)
    ]
    trials = pd.DataFrame(rows)
    atomic_write_csv(folder / "trials.csv", trials)
    atomic_write_csv(folder / "tuning_summary.csv", summary_table(trials, "trials", budget))


def _tuning_markdown(folder: Path, runs: pd.DataFrame, per_user: pd.DataFrame) -> str:
    doc = Doc()
    manifest = {"tuning": {"budget_kind": "trials", "budget": 2, "objective": "ndcg@10"}}
    tuning_section(doc, folder, runs, per_user, manifest, lambda *args: None)
    return render_markdown(doc)


def _cells(markdown: str, heading: str) -> dict[str, list[str]]:
    """model -> cells of the first table after ``heading``."""
    part = markdown[markdown.index(heading) :]
    out: dict[str, list[str]] = {}
    for line in part.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            out[cells[0]] = cells[1:]
        elif out and not line.startswith("|"):
            break
    return out


def test_default_vs_tuned_stars_by_the_paired_t_not_wilcoxon(tmp_path):
    rng = np.random.default_rng(5)
    # "outlier": 39 users a little better, one much worse: Wilcoxon (ranks) rejects, the
    # paired t (the mean, here below 0) does not. "shift": a clear mean shift, both reject.
    outlier = np.r_[np.full(39, 0.01), -0.6]
    shift = 0.05 + rng.normal(0, 0.01, 40)
    runs, per_user = _tuning_frames({"outlier": outlier, "shift": shift})
    _write_trials(tmp_path, ["outlier", "shift"])
    cells = _cells(_tuning_markdown(tmp_path, runs, per_user), "Default versus tuned")
    assert not cells["outlier"][0].endswith("\\*") and cells["shift"][0].endswith("\\*")
    table = default_vs_tuned(runs, per_user, ["auc"]).set_index("model")
    # The interval is the paired t interval, not a bootstrap one: Holm rejects "shift"
    # (first of 2) and keeps "outlier", whose level is then 1 - 0.05 / (2 - 1).
    half = scipy.stats.t.ppf(0.975, 39) * outlier.std(ddof=1) / np.sqrt(40)
    expected = (outlier.mean() - half, outlier.mean() + half)
    assert (table.loc["outlier", "low"], table.loc["outlier", "high"]) == pytest.approx(expected)
    base = np.linspace(0.5, 0.9, 40)
    reference = scipy.stats.ttest_rel(base + outlier, base)
    assert table.loc["outlier", "t_pvalue"] == pytest.approx(reference.pvalue)
    assert table.loc["outlier", "wilcoxon_holm"] < 0.05 <= table.loc["outlier", "t_holm"]
    # The same numbers as the main tables' paired comparison of the same differences.
    from bench.results.tables import paired_family

    for model, row in zip(["outlier", "shift"], paired_family([outlier, shift])):
        got = table.loc[model]
        for column in ("low", "high", "level", "t_pvalue", "t_holm", "wilcoxon_holm"):
            assert got[column] == pytest.approx(row[column], rel=1e-9, abs=1e-12), column
        assert got["significant"] == row["significant"]


def _reference_tuned_stars(loaded) -> set[tuple[str, str]]:
    """Default-versus-tuned cells a paired t with Holm stars, computed independently.

    scipy's paired t-test on the per-user values (seeds averaged per user), then Holm's
    step-down by its definition over the models of each metric. (By Wilcoxon, on the
    tuned baseline made before the seconds budget held, itemknn AUC and implicit-als
    P@10 were starred instead of ease AUC, and fm:ids-only NDCG@10 too.)
    """
    runs = loaded["runs"]
    runs = runs[runs["status"] == "ok"].assign(run_id=lambda r: r["run_id"].astype(str))
    per_user = loaded["per_user"].assign(run_id=lambda p: p["run_id"].astype(str))
    ids = runs.groupby("label")["run_id"].apply(set)
    stars = set()
    for metric in TABLE_METRICS:
        pvalues = {}
        for label in ids.index:
            tuned = f"{label} (tuned)"
            if label.endswith(" (tuned)") or tuned not in ids.index:
                continue
            before = per_user[per_user["run_id"].isin(ids[label])].groupby("user")[metric].mean()
            after = per_user[per_user["run_id"].isin(ids[tuned])].groupby("user")[metric].mean()
            joined = pd.concat({"a": after, "b": before}, axis=1, join="inner").dropna()
            diff = joined["a"] - joined["b"]
            if (diff == diff.iloc[0]).all():
                pvalues[label] = 1.0 if diff.iloc[0] == 0 else 0.0
            else:
                pvalues[label] = scipy.stats.ttest_rel(joined["a"], joined["b"]).pvalue
        order = sorted(pvalues, key=pvalues.get)
        for k, label in enumerate(order):
            if pvalues[label] >= 0.05 / (len(order) - k):
                break
            stars.add((label, metric))
    return stars


def test_committed_tuning_section_stars_by_paired_t_and_agrees_with_its_intervals():
    loaded = load_results(TUNED)
    markdown = _tuning_markdown(TUNED, loaded["runs"], loaded["per_user"])
    cells = _cells(markdown, "Default versus tuned")
    assert len(cells) == 11
    stars = {
        (model, metric)
        for model, row in cells.items()
        for metric, cell in zip(TABLE_METRICS, row)
        if cell.endswith("\\*")
    }
    assert stars == _reference_tuned_stars(loaded)
    assert stars  # the committed baseline has significant cells: the check is not empty
    for model, row in cells.items():
        for metric, cell in zip(TABLE_METRICS, row):
            interval = re.search(r"\\\[(\S+), (\S+)\\\]", cell)
            assert interval, cell
            low, high = (float(x) for x in interval.groups())
            assert ((model, metric) in stars) == _excludes_zero(low, high), (model, metric, cell)


# -- finding 3: no 'nan' for an empty note; README's tuned table rounded once ---------------
def test_trial_budget_summary_renders_an_empty_note_as_empty(tmp_path):
    _write_trials(tmp_path, ["ease", "itemknn"])
    raw = pd.read_csv(tmp_path / "tuning_summary.csv", keep_default_na=False)
    assert (raw["note"] == "").all()  # a trial budget, one worker: nothing to note
    markdown = _tuning_markdown(tmp_path, pd.DataFrame(), pd.DataFrame())
    rows = _cells(markdown, "Budgets and best parameters")
    assert set(rows) == {"ease", "itemknn"}
    for model, cells in rows.items():
        assert cells[-1] == "", (model, cells)
        assert "nan" not in cells, (model, cells)


def _readme_tuned_rows() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Does tuning change the verdict?") :]
    return _cells(section, "| model | trials (c/p/f)")


def test_readme_tuned_table_is_runs_csv_rounded_once_with_paired_t_stars():
    runs = pd.read_csv(TUNED / "runs.csv")
    runs = runs[runs["status"] == "ok"]
    means = runs.groupby("label")[list(TABLE_METRICS)].mean()
    loaded = load_results(TUNED)
    rows = _readme_tuned_rows()
    assert len(rows) == 13
    for model, cells in rows.items():
        tuned = f"{model} (tuned)"
        for metric, cell in zip(TABLE_METRICS, cells[2:]):
            numbers = re.findall(r"\d\.\d+", cell)
            assert numbers[0] == f"{means.loc[model, metric]:.3f}", (model, metric, cell)
            if tuned in means.index:
                assert numbers[1] == f"{means.loc[tuned, metric]:.3f}", (model, metric, cell)
    compared = default_vs_tuned(loaded["runs"], loaded["per_user"], list(TABLE_METRICS))
    star = {(r.model, r.metric): r.significant for r in compared.itertuples()}
    for model, cells in rows.items():
        for metric, cell in zip(TABLE_METRICS, cells[2:]):
            if f"{model} (tuned)" in means.index:
                assert cell.endswith("*") == star[(model, metric)], (model, metric, cell)
