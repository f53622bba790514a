"""Tuning tables: pure functions from ``trials.csv`` / ``runs.csv`` rows to DataFrames.



"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["COUNTED", "best_so_far", "default_vs_tuned", "summary_table"]

#: Trial states that count against a budget (see :mod:`bench.tune`).
COUNTED = ("complete", "pruned", "failed")


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
        best_params, workers, note``. ``used`` is in budget units; ``gain`` is the
        best minus the default trial's validation value; ``note`` says when the
        space could not use the budget and when the result is not reproducible.
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
        ],
    )


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
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Default against tuned on test, per model and metric, with paired tests.

    Per-user values are averaged over seeds first; the tuned label is
    ``label + suffix``. The Wilcoxon p-values are Holm-corrected over the
    models of each metric.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, metric, default, tuned, diff, low, high, wilcoxon_p,
        wilcoxon_holm, users, seeds, best_params``.
    """
    from metrics.stats import holm, paired_comparison

    columns = [
        "model",
        "metric",
        "default",
        "tuned",
        "diff",
        "low",
        "high",
        "wilcoxon_p",
        "wilcoxon_holm",
        "users",
        "seeds",
        "best_params",
    ]
    if runs.empty or per_user.empty:
        return pd.DataFrame(columns=columns)
    ok = runs[runs["status"] == "ok"]
    labels = list(dict.fromkeys(ok["label"].astype(str)))
    rows = []
    for tuned_label in [x for x in labels if x.endswith(suffix)]:
        label = tuned_label[: -len(suffix)]
        if label not in labels:
            continue
        sides = {}
        for side, name in (("default", label), ("tuned", tuned_label)):
            ids = set(ok.loc[ok["label"].astype(str) == name, "run_id"].astype(str))
            part = per_user[per_user["run_id"].astype(str).isin(ids)]
            sides[side] = part.groupby("user")[[m for m in metrics if m in part]].mean()
        tuned_runs = ok[ok["label"].astype(str) == tuned_label]
        params = tuned_runs["params"].iloc[0] if "params" in tuned_runs else ""
        for metric in metrics:
            if metric not in sides["default"] or metric not in sides["tuned"]:
                continue
            joined = pd.concat(
                {"a": sides["tuned"][metric], "b": sides["default"][metric]}, axis=1, join="inner"
            ).dropna()
            if len(joined) < 2:
                continue
            result = paired_comparison(
                joined["a"].to_numpy(),
                joined["b"].to_numpy(),
                level=level,
                n_boot=n_boot,
                rng=np.random.default_rng(seed),
            )
            rows.append(
                {
                    "model": label,
                    "metric": metric,
                    "default": float(joined["b"].mean()),
                    "tuned": float(joined["a"].mean()),
                    "diff": float(result.mean_diff),
                    "low": float(result.low),
                    "high": float(result.high),
                    "wilcoxon_p": float(result.wilcoxon_pvalue),
                    "users": int(result.n),
                    "seeds": int(tuned_runs["seed"].nunique()),
                    "best_params": params,
                }
            )
    frame = pd.DataFrame(rows, columns=[c for c in columns if c != "wilcoxon_holm"])
    frame["wilcoxon_holm"] = np.nan
    for idx in frame.groupby("metric").groups.values():
        p = frame.loc[idx, "wilcoxon_p"].to_numpy(np.float64)
        finite = np.isfinite(p)
        adjusted = np.full(p.shape, np.nan)
        if finite.any():
            adjusted[finite] = np.asarray(holm(p[finite]), dtype=np.float64)
        frame.loc[idx, "wilcoxon_holm"] = adjusted
    return frame[columns]


def tuned_params(best_params: str) -> dict:
    """The JSON ``best_params`` cell as a dict (empty for an empty cell)."""
    return json.loads(best_params) if isinstance(best_params, str) and best_params else {}
