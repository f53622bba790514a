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
from bench.results.tuning import best_so_far, default_vs_tuned

__all__ = ["TABLE_METRICS", "tuning_section"]

#: Metrics of the default-versus-tuned table (the closing note's: AUC, P@10, NDCG@10).
TABLE_METRICS = ("auc", "precision@10", "ndcg@10")
TRIALS = "trials.csv"
SUMMARY = "tuning_summary.csv"


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


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
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
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
    level, n_boot, seed
        Interval level, bootstrap resamples and seed of the paired tests.
    """
    folder = Path(folder)
    if not (folder / TRIALS).is_file():
        return False
    trials = pd.read_csv(folder / TRIALS, keep_default_na=False, na_values=[""])
    summary = (
        pd.read_csv(folder / SUMMARY, keep_default_na=False, na_values=[""])
        if (folder / SUMMARY).is_file()
        else pd.DataFrame()
    )
    tuning = dict(manifest.get("tuning", {}))
    objective = tuning.get("objective", "ndcg@10")
    kind, budget = tuning.get("budget_kind", "?"), tuning.get("budget", math.nan)
    unit = "trials" if kind == "trials" else "seconds of fit + validation evaluation"
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
                    str(r["note"] or ""),
                ]
            )
        doc.heading(3, "Budgets and best parameters")
        doc.table(
            [
                "model",
                f"budget used ({kind})",
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
    comparison = default_vs_tuned(runs, per_user, metrics, level=level, n_boot=n_boot, seed=seed)
    doc.heading(3, "Default versus tuned on test")
    if comparison.empty:
        doc.para("No pair of default and tuned test runs in this folder.")
        return True
    doc.para(
        "Means over users (seeds averaged per user first). Cell: preset → tuned "
        "(difference; Wilcoxon signed-rank p, Holm-corrected over the models of each metric); "
        "* = significant at 0.05 after correction."
    )
    rows = []
    for model, part in comparison.groupby("model", sort=False):
        cells = [str(model)]
        by_metric = part.set_index("metric")
        for metric in metrics:
            if metric not in by_metric.index:
                cells.append("-")
                continue
            r = by_metric.loc[metric]
            mark = "*" if np.isfinite(r["wilcoxon_holm"]) and r["wilcoxon_holm"] < 0.05 else ""
            cells.append(
                f"{r['default']:.4f} → {r['tuned']:.4f} ({r['diff']:+.4f}; p "
                f"{_p(r['wilcoxon_holm'])}){mark}"
            )
        rows.append(cells)
    doc.table(["model", *metrics], rows, numeric=[False, *[True] * len(metrics)])
    return True
