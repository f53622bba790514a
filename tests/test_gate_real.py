"""The regression gate on the quick suite's real results: noise passes, injected regressions fail.

By default the "new" folder is the committed quick baseline itself
(``results/baseline/quick``, seeds 0 and 1). CI points ``RSBENCH_GATE_RESULTS``
at the quick suite it has just run with *other* seeds (2 and 3), so that on
every CI run the same tests show that a change of seed (a larger effect than a
change of CPU kind) passes the gate while the injected regressions, made on
top of those other seeds, still fail and name the model.

Injections edit ``per_user.parquet`` and recompute ``runs.csv`` from it, as a
real regression would reach both tables.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.results import load_results
from bench.results.regress import FAIL, regress
from metrics.registry import METRICS

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "results" / "baseline" / "quick"
RESULTS = ROOT / os.environ.get("RSBENCH_GATE_RESULTS", BASELINE)  # relative: to the root

pytestmark = pytest.mark.realdata


def _per_user_metrics(per_user: pd.DataFrame) -> list[str]:
    return [c for c in per_user.columns if METRICS.is_metric(c)]


def inject(tmp_path: Path, label: str, edit) -> Path:
    """A copy of RESULTS whose ``label`` runs have per-user values ``edit(rows, folder)``.

    ``edit`` receives that label's per-user rows (a DataFrame) and returns them
    changed; ``runs.csv`` is then recomputed from the per-user table (each
    run's mean over its users), so the two tables agree as a real run's do.
    """
    folder = tmp_path / "injected"
    shutil.copytree(RESULTS, folder, ignore=shutil.ignore_patterns("figures", "report.*"))
    tables = load_results(folder)
    runs, per_user = tables["runs"].copy(), tables["per_user"].copy()
    runs["run_id"] = runs["run_id"].astype(str)
    per_user["run_id"] = per_user["run_id"].astype(str)
    ids = runs["label"] == label
    assert ids.any(), f"{label} is not in {RESULTS}"
    mine = per_user["run_id"].isin(set(runs.loc[ids, "run_id"]))
    per_user.loc[mine] = edit(per_user.loc[mine].copy(), per_user)
    columns = [c for c in _per_user_metrics(per_user) if c in runs]
    means = per_user[mine].groupby("run_id")[columns].mean()
    for column in columns:
        runs.loc[ids, column] = runs.loc[ids, "run_id"].map(means[column])
    shutil.rmtree(folder / "shards", ignore_errors=True)
    runs.to_csv(folder / "runs.csv", index=False)
    per_user.to_parquet(folder / "per_user.parquet", index=False)
    return folder


def _failing_labels(outcome) -> set[str]:
    return {c.label for c in outcome.failures}


def test_the_results_pass_against_the_committed_baseline():
    """Same code (other seeds in CI): no check fails; identical folders pass trivially."""
    outcome = regress(RESULTS, BASELINE)
    assert outcome.passed, outcome.table()
    frame = outcome.to_frame()
    paired = frame[frame["kind"] == "paired"]
    assert len(paired) >= 14 * 17  # every model, every per-user metric column
    if RESULTS == BASELINE:
        assert (paired["note"] == "identical per user").all()
        assert (paired["delta"] == 0).all()


@pytest.mark.parametrize("label", ["implicit-als:fast", "keras-deep:fast"])
def test_minus_005_on_every_metric_of_one_model_fails_naming_it(tmp_path, label):
    def minus(rows, _):
        for column in _per_user_metrics(rows):
            if METRICS.metric_of(column)[0].gated:
                rows[column] = rows[column] - 0.05
        return rows

    outcome = regress(inject(tmp_path, label, minus), BASELINE)
    assert _failing_labels(outcome) == {label}, outcome.table()
    failed = {c.check for c in outcome.failures}
    assert "auc" in failed
    if RESULTS == BASELINE:  # every user exactly 0.05 worse: every metric fails
        gated = {c for c in _per_user_metrics(load_results(BASELINE)["per_user"])}
        assert failed == {c for c in gated if METRICS.metric_of(c)[0].gated}
    assert f"FAIL {label} (" in outcome.table()


@pytest.mark.parametrize("label", ["implicit-als:fast", "ease", "torch-bilinear:fast"])
def test_random_scores_for_a_tenth_of_the_users_fail_naming_the_model(tmp_path, label):
    """One model's scores for 10% of users replaced by random scores.

    The random model of the same folder ranked every user with uniformly random
    scores under the same protocol, so its per-user values *are* the values of
    random scores: they replace the model's for a seeded 10% of users (seed by
    seed, in order).
    """
    rng = np.random.default_rng(20261207)

    def randomise(rows, per_user):
        random_rows = per_user[per_user["label"] == "random"]
        chosen = rng.choice(np.sort(rows["user"].unique()), size=rows["user"].nunique() // 10,
                            replace=False)  # fmt: skip
        columns = _per_user_metrics(rows)

        def by_seed(frame):
            return frame.groupby("run_id")["seed"].first().sort_values().index.tolist()

        random_runs = by_seed(random_rows)
        for i, run in enumerate(by_seed(rows)):
            source = random_rows[random_rows["run_id"] == random_runs[i % len(random_runs)]]
            source = source.set_index("user")[columns]
            target = rows.index[(rows["run_id"] == run) & rows["user"].isin(chosen)]
            rows.loc[target, columns] = source.loc[rows.loc[target, "user"]].to_numpy()
        return rows

    outcome = regress(inject(tmp_path, label, randomise), BASELINE)
    assert _failing_labels(outcome) == {label}, outcome.table()
    assert "auc" in {c.check for c in outcome.failures}
    assert f"FAIL {label} (" in outcome.table()


def test_bound_below_minus_margin_if_and_only_if_fail(tmp_path):
    """The printed Holm-adjusted bound and the verdict say the same thing, row by row."""

    def minus(rows, _):
        rows["auc"] = rows["auc"] - 0.02  # near the margin: some checks fail, some do not
        rows["ndcg@10"] = rows["ndcg@10"] * 0.9
        return rows

    outcome = regress(inject(tmp_path, "implicit-als:fast", minus), BASELINE)
    frame = outcome.to_frame()
    paired = frame[frame["kind"] == "paired"]
    assert ((paired["bound"] < -paired["margin"]) == (paired["verdict"] == FAIL)).all()
    assert ((paired["p_holm"] < outcome.settings.alpha) == (paired["verdict"] == FAIL)).all()
    assert (paired["low"] <= paired["delta"]).all() and (paired["delta"] <= paired["high"]).all()
    assert (paired["high"] >= paired["bound"]).all()  # two-sided reaches further
    assert (paired["mdd"] >= paired["margin"]).all()


def test_runs_csv_disagreeing_with_its_per_user_rows_fails(tmp_path):
    folder = inject(tmp_path, "ease", lambda rows, _: rows)
    runs = pd.read_csv(folder / "runs.csv", dtype={"run_id": str})
    runs.loc[runs["label"] == "ease", "auc"] += 1e-6
    runs.to_csv(folder / "runs.csv", index=False)
    outcome = regress(folder, BASELINE)
    [row] = [c for c in outcome.failures]
    assert (row.label, row.check) == ("ease", "consistency")
    assert "auc" in row.note
