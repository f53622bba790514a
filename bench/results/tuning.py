"""Tuning tables: pure functions from ``trials.csv`` / ``runs.csv`` rows to DataFrames."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results.tables import ALPHA, paired_family, user_means

__all__ = [
    "COUNTED",
    "SUMMARY_TEXT",
    "best_so_far",
    "default_vs_tuned",
    "read_summary",
    "summary_table",
]

#: Trial states that count against a budget (see :mod:`bench.execution.tuning`).
COUNTED = ("complete", "pruned", "failed")
#: Text columns of :func:`summary_table`: an empty one is "" (no note), never a missing number.
SUMMARY_TEXT = ("model", "study", "budget_kind", "best_params", "note")


def _ordered(trials: pd.DataFrame) -> pd.DataFrame:
    return trials.sort_values(["model", "trial"], kind="stable")


def summary_table(
    trials: pd.DataFrame,
    budget_kind: str,
    budget: float,
    sizes: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per model: budget given and used, trials by state, best value and parameters.

    Parameters
    ----------
    trials : pandas.DataFrame
        ``trials.csv`` rows (``model, trial, state, value, seconds, params, default, worker``).
    budget_kind : {"trials", "seconds"}
    budget : float
        Per model, in ``budget_kind`` units.
    sizes : mapping of str to float, optional
        Number of distinct configurations of each model's space (``inf`` if continuous).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, study, budget_kind, budget, used, trials, complete, pruned,
        failed, interrupted, seconds, best_value, best_trial, default_value, gain,
        best_params, workers, note, overshoot, stopped, over_budget``. ``used`` is in
        budget units; ``gain`` is the best minus the default trial's validation value;
        ``overshoot`` is ``used`` beyond ``budget`` (0 within it); ``stopped`` counts
        the trials stopped at a seconds budget; ``over_budget`` is True when one trial
        alone needed more than the whole seconds budget; ``note`` says when the space
        could not use the budget, how a seconds budget ended, and when the result is
        not reproducible.
    """
    if budget_kind not in ("trials", "seconds"):
        raise ValueError(f"budget_kind must be 'trials' or 'seconds', got {budget_kind!r}")
    sizes = dict(sizes or {})
    rows = []
    for model, group in _ordered(trials).groupby("model", sort=False):
        states = group["state"].astype(str)
        counted = group[states.isin(COUNTED)]
        complete = group[states == "complete"]
        seconds = float(pd.to_numeric(counted["seconds"], errors="coerce").fillna(0).sum())
        used = float(len(counted)) if budget_kind == "trials" else seconds
        if complete.empty:
            best_value, best_trial, best_params = np.nan, -1, ""
        else:
            values = pd.to_numeric(complete["value"])
            best = complete.loc[values.idxmax()]
            best_value, best_trial, best_params = (
                float(best["value"]),
                int(best["trial"]),
                best["params"],
            )
        default = complete[complete["default"].astype(str).str.lower() == "true"]
        default_value = float(default["value"].iloc[0]) if not default.empty else np.nan
        workers = int(counted["worker"].replace("", np.nan).dropna().nunique())
        notes = []
        size = sizes.get(model, math.inf)
        if size < budget if budget_kind == "trials" else math.isfinite(size):
            if used < budget:
                notes.append(
                    f"its space has {int(size)} configuration(s): the budget cannot be used"
                )
        overshoot = max(used - budget, 0.0)
        stopped, over_budget = _seconds_budget_notes(counted, budget_kind, budget, notes)
        if budget_kind == "seconds":
            notes.append("seconds budget: trial count and best parameters are not reproducible")
        if workers > 1:
            notes.append(f"{workers} workers: best parameters are not reproducible")
        rows.append(
            {
                "model": model,
                "study": group["study"].iloc[0] if "study" in group else "",
                "budget_kind": budget_kind,
                "budget": budget,
                "used": used,
                "trials": len(counted),
                "complete": int((states == "complete").sum()),
                "pruned": int((states == "pruned").sum()),
                "failed": int((states == "failed").sum()),
                "interrupted": int((states == "interrupted").sum()),
                "seconds": seconds,
                "best_value": best_value,
                "best_trial": best_trial,
                "default_value": default_value,
                "gain": best_value - default_value,
                "best_params": best_params,
                "workers": workers,
                "note": "; ".join(notes),
                "overshoot": overshoot,
                "stopped": stopped,
                "over_budget": over_budget,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "model",
            "study",
            "budget_kind",
            "budget",
            "used",
            "trials",
            "complete",
            "pruned",
            "failed",
            "interrupted",
            "seconds",
            "best_value",
            "best_trial",
            "default_value",
            "gain",
            "best_params",
            "workers",
            "note",
            "overshoot",
            "stopped",
            "over_budget",
        ],
    )


def _seconds_budget_notes(
    counted: pd.DataFrame, budget_kind: str, budget: float, notes: list[str]
) -> tuple[int, bool]:
    """Notes on how a seconds budget ended; returns ``(stopped, over_budget)``.

    ``stopped``: trials stopped at the budget (at an epoch boundary); ``over_budget``:
    one trial alone took more than the whole budget (or, stopped, could not finish in
    it). Older ``trials.csv`` files without the columns give ``(0, False)`` beyond the
    seconds themselves.
    """
    if budget_kind != "seconds" or counted.empty:
        return 0, False
    seconds = pd.to_numeric(counted["seconds"], errors="coerce").fillna(0.0)
    flag = counted.get("stopped_by_budget", pd.Series(False, index=counted.index))
    is_stopped = flag.astype(str).str.lower().eq("true")
    left = pd.to_numeric(
        counted.get("budget_left", pd.Series(np.nan, index=counted.index)), errors="coerce"
    )
    over_budget = False
    for index, row in counted[is_stopped].iterrows():
        epochs, planned = row.get("epochs_run"), row.get("epochs_planned")
        if not epochs > 0:
            notes.append(
                f"trial {int(row['trial'])}: the budget ran out in its set-up, before its fit"
            )
            continue
        per_epoch = float(row.get("fit_seconds", np.nan)) / float(epochs)
        whole = left[index] >= budget  # it started with the whole budget
        over_budget |= bool(whole)
        notes.append(
            f"trial {int(row['trial'])} stopped at the budget after epoch {int(epochs)} of "
            f"{int(planned) if pd.notna(planned) else '?'} ({per_epoch:.2g} s per epoch)"
            + ("; one full fit needs more than the whole budget" if whole else "")
        )
    alone = counted[(seconds > budget) & ~is_stopped]
    if not alone.empty:
        over_budget = True
        first = alone.index[0]
        notes.append(
            f"one trial alone took more than the whole budget (trial "
            f"{int(alone.loc[first, 'trial'])}: {float(seconds[first]):.1f} s)"
        )
    total = float(seconds.sum())
    last = counted.iloc[-1] if len(counted) else None
    if total > budget and last is not None and not is_stopped[last.name]:
        notes.append(
            f"the trial that crossed the budget had no epoch boundary to stop at "
            f"(closed form, or its last epoch): {total - budget:.1f} s over"
        )
    return int(is_stopped.sum()), over_budget


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read a ``tuning_summary.csv`` (:func:`summary_table` written as CSV) back.

    An empty cell is a missing number (NaN) in the numeric columns and an
    empty string in the :data:`SUMMARY_TEXT` columns, as :func:`summary_table`
    made it (a CSV cannot tell the two apart, so the column decides); no other
    text (``NA``, ``nan``, ``null``...) is read as missing.
    """
    frame = pd.read_csv(
        path, keep_default_na=False, na_values=[""], dtype={c: str for c in SUMMARY_TEXT}
    )
    for column in SUMMARY_TEXT:
        if column in frame:
            frame[column] = frame[column].fillna("")
    return frame


def best_so_far(trials: pd.DataFrame) -> pd.DataFrame:
    """Best validation value after each counted trial, by trial index and by cumulative seconds.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, index`` (1-based among counted trials, in trial-number
        order), ``seconds`` (cumulative), ``value`` (this trial's, NaN unless
        complete) and ``best`` (running maximum, NaN before the first complete).
    """
    rows = []
    for model, group in _ordered(trials).groupby("model", sort=False):
        counted = group[group["state"].astype(str).isin(COUNTED)]
        values = pd.to_numeric(counted["value"], errors="coerce").to_numpy(np.float64)
        seconds = pd.to_numeric(counted["seconds"], errors="coerce").fillna(0).to_numpy()
        best = np.fmax.accumulate(values) if values.size else values
        for i, (v, s, b) in enumerate(zip(values, np.cumsum(seconds), best), start=1):
            rows.append({"model": model, "index": i, "seconds": float(s), "value": v, "best": b})
    return pd.DataFrame(rows, columns=["model", "index", "seconds", "value", "best"])


def default_vs_tuned(
    runs: pd.DataFrame,
    per_user: pd.DataFrame,
    metrics: Sequence[str],
    *,
    suffix: str = " (tuned)",
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Default against tuned on test, per model and metric, with paired tests.

    Per-user values are averaged over seeds first (:func:`bench.results.tables.user_means`);
    the tuned label is ``label + suffix``. The comparison of each model
    (tuned minus preset, on the users both evaluated) is the report's paired
    comparison, :func:`bench.results.tables.paired_family`: paired t-test,
    Holm-corrected over the models of each metric, with the interval at the
    level Holm tested it at (significant exactly when it excludes 0) and the
    Wilcoxon signed-rank test as a secondary p-value.

    Parameters
    ----------
    runs, per_user : pandas.DataFrame
        ``runs.csv`` and ``per_user.parquet`` rows.
    metrics : sequence of str
        Metric columns to compare.
    suffix : str
        What a tuned label adds to its preset's label.
    alpha : float
        Family-wise significance level of the Holm-corrected t-test.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, metric, default, tuned, diff, low, high, level, t_pvalue,
        t_holm, significant, wilcoxon_pvalue, wilcoxon_holm, users, seeds, best_params``.
    """
    columns = [
        "model",
        "metric",
        "default",
        "tuned",
        "diff",
        "low",
        "high",
        "level",
        "t_pvalue",
        "t_holm",
        "significant",
        "wilcoxon_pvalue",
        "wilcoxon_holm",
        "users",
        "seeds",
        "best_params",
    ]
    if runs.empty or per_user.empty:
        return pd.DataFrame(columns=columns)
    ok = runs[runs["status"] == "ok"]
    labels = list(dict.fromkeys(ok["label"].astype(str)))
    pairs = []  # (model, metric, default values, tuned values, tuned runs)
    for tuned_label in [x for x in labels if x.endswith(suffix)]:
        label = tuned_label[: -len(suffix)]
        if label not in labels:
            continue
        sides = {}
        for side, name in (("default", label), ("tuned", tuned_label)):
            ids = ok.loc[ok["label"].astype(str) == name, "run_id"].astype(str).tolist()
            sides[side] = user_means(per_user, ids, metrics)
        tuned_runs = ok[ok["label"].astype(str) == tuned_label]
        for metric in metrics:
            if metric not in sides["default"] or metric not in sides["tuned"]:
                continue
            joined = pd.concat(
                {"a": sides["tuned"][metric], "b": sides["default"][metric]}, axis=1, join="inner"
            ).dropna()
            if len(joined) >= 2:
                pairs.append((label, metric, joined, tuned_runs))
    rows = []
    for metric in dict.fromkeys(m for _, m, _, _ in pairs):
        family = [p for p in pairs if p[1] == metric]
        diffs = [j["a"].to_numpy() - j["b"].to_numpy() for _, _, j, _ in family]
        for (label, _, joined, tuned_runs), test in zip(family, paired_family(diffs, alpha=alpha)):
            rows.append(
                {
                    "model": label,
                    "metric": metric,
                    "default": float(joined["b"].mean()),
                    "tuned": float(joined["a"].mean()),
                    "diff": test["mean_diff"],
                    **{c: test[c] for c in columns[5:13]},
                    "users": test["n"],
                    "seeds": int(tuned_runs["seed"].nunique()),
                    "best_params": tuned_runs["params"].iloc[0] if "params" in tuned_runs else "",
                }
            )
    order = {(label, metric): i for i, (label, metric, _, _) in enumerate(pairs)}
    rows.sort(key=lambda r: order[(r["model"], r["metric"])])
    return pd.DataFrame(rows, columns=columns)
