"""The report's tuning section, for results folders written by ``rsbench tune``.

Lays out :mod:`bench.results.tuning` and :func:`bench.results.figures.best_so_far_figure` on the
report's document object (anything with ``heading``, ``para``, ``table`` and
``figure`` methods), so the report module only calls :func:`tuning_section`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results import figures as figs
from bench.results.render import interval_text, p_text
from bench.results.tables import ALPHA
from bench.results.tuning import best_so_far, default_vs_tuned, read_summary

__all__ = ["TABLE_METRICS", "tuning_section"]

#: Metrics of the default-versus-tuned table (the closing note's: AUC, P@10, NDCG@10).
TABLE_METRICS = ("auc", "precision@10", "ndcg@10")
TRIALS = "trials.csv"
SUMMARY = "tuning_summary.csv"


def _short_params(text: str) -> str:
    try:
        params = json.loads(text) if text else {}
    except (TypeError, json.JSONDecodeError):
        return str(text)
    parts = []
    for key, value in params.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key}={value}")
    return ", ".join(parts) or "(nothing to tune)"


def tuning_section(
    doc: Any,
    folder: str | Path,
    runs: pd.DataFrame,
    per_user: pd.DataFrame,
    manifest: Mapping[str, Any],
    add_figure: Callable[[str, Any, str], None],
) -> bool:
    """Append the tuning section when ``folder`` has ``trials.csv``; return whether it did.

    Parameters
    ----------
    doc
        The report document (``heading``, ``para``, ``table`` methods).
    folder : path
        The results folder.
    runs, per_user : pandas.DataFrame
        Its tables (as loaded by :func:`bench.results.load_results`).
    manifest : mapping
        Its manifest (``tuning`` holds the budget and objective).
    add_figure : callable
        ``add_figure(file_name, matplotlib_figure, caption)``.

    The default-versus-tuned comparisons are the report's paired comparisons
    (:func:`bench.results.tuning.default_vs_tuned`): paired t-test, Holm over
    the models of each metric, at :data:`bench.results.tables.ALPHA`.
    """
    folder = Path(folder)
    if not (folder / TRIALS).is_file():
        return False
    trials = pd.read_csv(folder / TRIALS, keep_default_na=False, na_values=[""])
    summary = read_summary(folder / SUMMARY) if (folder / SUMMARY).is_file() else pd.DataFrame()
    tuning = dict(manifest.get("tuning", {}))
    objective = tuning.get("objective", "ndcg@10")
    kind, budget = tuning.get("budget_kind", "?"), tuning.get("budget", math.nan)
    unit = (
        "trials"
        if kind == "trials"
        else "seconds of trial wall time (fit, validation evaluation and each trial's "
        "overhead; a trial that reaches the budget stops at its next epoch boundary with "
        "that epoch's validation value, a closed-form fit finishes and its overshoot shows)"
    )
    doc.heading(2, "Tuning")
    doc.para(
        f"Every model had the same budget: {budget:g} {unit}, summed over its trials "
        f"(completed, pruned and failed trials all count). Objective: validation {objective}, "
        f"on rows carved from train ({tuning.get('validation_rule', 'see the data layer')}); "
        f"the test rows were not loaded while tuning. Sampler: Optuna TPE seeded with "
        f"{tuning.get('seed', '?')} ({tuning.get('startup_trials', '?')} random start-up "
        f"trials), pruner: {tuning.get('pruner', '?')}. The first trial of every study is "
        "the model's preset. Then the best parameters were refitted on the whole train "
        "split and evaluated on test with the run's seeds; rows `label (tuned)`."
    )
    if not summary.empty:
        rows = []
        for r in summary.to_dict("records"):
            used = f"{r['used']:.0f}" if kind == "trials" else f"{r['used']:.1f}"
            used += f" of {r['budget']:g}"  # given versus used
            if kind == "seconds" and r["used"] > r["budget"]:
                used += f" (+{r['used'] - r['budget']:.1f})"
            rows.append(
                [
                    str(r["model"]),
                    used,
                    str(r["trials"]),
                    f"{r['complete']}/{r['pruned']}/{r['failed']}/{r['interrupted']}",
                    f"{r['default_value']:.4f}" if np.isfinite(r["default_value"]) else "-",
                    f"{r['best_value']:.4f}" if np.isfinite(r["best_value"]) else "-",
                    f"{r['gain']:+.4f}" if np.isfinite(r["gain"]) else "-",
                    _short_params(r["best_params"]),
                    r["note"],
                ]
            )
        doc.heading(3, "Budgets and best parameters")
        doc.table(
            [
                "model",
                f"budget used of given ({kind})",
                "trials",
                "complete/pruned/failed/interrupted",
                f"preset {objective}",
                f"best {objective}",
                "gain",
                "best parameters",
                "note",
            ],
            rows,
            numeric=[False, True, True, True, True, True, True, False, False],
        )
    curves = best_so_far(trials)
    fig = figs.best_so_far_figure(curves, objective, "best validation value so far")
    if fig is not None:
        add_figure(
            "tuning-best-so-far.png",
            fig,
            f"Best validation {objective} so far against the number of counted trials "
            "(left) and against cumulative seconds of fit plus validation evaluation "
            "(right), one line per model; the dot marks where its budget ended.",
        )
    metrics = [m for m in TABLE_METRICS if m in runs]
    comparison = default_vs_tuned(runs, per_user, metrics)
    doc.heading(3, "Default versus tuned on test")
    if comparison.empty:
        doc.para("No pair of default and tuned test runs in this folder.")
        return True
    doc.para(
        "Means over users (seeds averaged per user first). Cell: preset → tuned (difference "
        "tuned minus preset; paired t-test p, Holm-corrected over the models of each metric), "
        "then its paired t interval at the level Holm tested it at, as in the paired "
        f"comparisons above; * = Holm p < {ALPHA}, exactly when the interval excludes 0."
    )
    doc.table(
        ["model", *metrics],
        _comparison_cells(comparison, metrics, _headline_cell),
        numeric=[False, *[True] * len(metrics)],
    )
    doc.para(
        "Secondary: Wilcoxon signed-rank p of the same differences (a median shift), "
        "Holm-corrected over the models of each metric."
    )
    doc.table(
        ["model", *metrics],
        _comparison_cells(comparison, metrics, lambda r: p_text(r["wilcoxon_holm"])),
        numeric=[False, *[True] * len(metrics)],
    )
    return True


def _headline_cell(r: Mapping[str, Any]) -> str:
    mark = "*" if r["significant"] else ""
    return (
        f"{r['default']:.4f} → {r['tuned']:.4f} ({r['diff']:+.4f}; p {p_text(r['t_holm'])}) "
        f"{interval_text(r['low'], r['high'])}{mark}"
    )


def _comparison_cells(
    comparison: pd.DataFrame, metrics: list[str], cell: Callable[[Mapping[str, Any]], str]
) -> list[list[str]]:
    """One row per model, one ``cell(row)`` per metric ("-" where it was not compared)."""
    rows = []
    for model, part in comparison.groupby("model", sort=False):
        by_metric = part.set_index("metric")
        rows.append(
            [str(model)]
            + [cell(by_metric.loc[m]) if m in by_metric.index else "-" for m in metrics]
        )
    return rows
