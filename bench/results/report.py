"""The results report: ``report.md`` and a self-contained ``report.html`` for a results folder.

``write_report(folder)`` reads what the runner wrote (never changing it) and
adds ``report.md``, ``report.html`` and ``figures/*.png``, each written
atomically. This module only assembles sections: statistics come from
:mod:`bench.results.tables`, figures from :mod:`bench.results.figures`,
formatting from :mod:`bench.results.render`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.environment import cpu_details
from bench.io import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from bench.results import figures as figs
from bench.results import tables
from bench.results.render import (
    FIGURES,
    Doc,
    Figure,
    Strong,
    interval_text,
    p_text,
    render_html,
    render_markdown,
    text_table,
)
from bench.results.store import load_results
from bench.results.tables import (
    DatasetGroup,
    cost_summary,
    dataset_groups,
    paired_summary,
    pareto_front,
    quality_summary,
    user_means,
)
from bench.results.tuning_report import tuning_section
from metrics.registry import METRICS

__all__ = [
    "Report",
    "build_report",
    "cost_summary",
    "curves_figure",
    "dataset_groups",
    "paired_summary",
    "pareto_front",
    "quality_summary",
    "scale_figure",
    "summary_text",
    "user_means",
    "write_report",
]

log = logging.getLogger(__name__)

SCALE_COLUMNS = (
    ("fit_seconds", "fit time (s)"),
    ("sampler_setup_seconds", "sampler set-up time (s)"),
    ("eval_seconds", "evaluation time (s)"),
    ("peak_rss_mb", "peak resident memory (MiB)"),
)
_FIGURE_NAME = re.compile(r"^(curves|pareto|scale|tuning)-[A-Za-z0-9_.-]+\.png$")

# Re-exported drawing functions (the figures module is their home).
curves_figure = figs.curves_figure
scale_figure = figs.scale_figure


# -- formatting: one format per column ------------------------------------------------
_fmt_p = p_text


def _fmt_metric(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.4f}"


def _fmt_signed(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{0.0 if abs(x) < 5e-5 else x:+.4f}"


def _fmt_seconds(x: float) -> str:
    """Seconds with two decimals for every row ("<0.01" below), thousands separated."""
    if x is None or not np.isfinite(x):
        return "-"
    return "<0.01" if x < 0.005 else f"{x:,.2f}"


def _fmt_int(x: Any) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{round(float(x)):,}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


# -- sections ----------------------------------------------------------------------------
def _environment_section(doc: Doc, manifest: Mapping[str, Any], groups: list[DatasetGroup]):
    doc.heading(2, "Environment")
    env = manifest.get("environment") or {}
    if not env:
        doc.para("manifest.json is missing or has no environment: the machine is unknown.")
    else:
        commit = env.get("git_commit") or "unknown"
        if env.get("git_dirty"):
            commit += " (with uncommitted changes)"
        cpus, usable = env.get("cpu_count"), env.get("usable_cpus")
        cpu_text = f"{env.get('cpu', 'unknown')}, {cpus} logical CPUs"
        if usable is not None and usable != cpus:
            cpu_text += f" ({usable} usable)"
        if cpu_details(env):
            cpu_text += f"; {cpu_details(env)}"
        packages = env.get("packages") or {}
        versions = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()) if v)
        doc.bullets(
            [
                f"CPU: {cpu_text}",
                f"Python {env.get('python', '?')} on {env.get('platform', '?')}",
                f"Packages: {versions or 'unknown'}",
                f"Commit: {commit}",
            ]
        )
    items = [f"{g.title()}: sha256 {g.key.sha256 or 'unknown'}" for g in groups]
    sources = {
        str(info.get("sha256")): info.get("source")
        for info in (manifest.get("datasets") or {}).values()
        if isinstance(info, dict)
    }
    items = [
        f"{text} (source: {sources[g.key.sha256]})" if g.key.sha256 in sources else text
        for text, g in zip(items, groups)
    ]
    if items:
        doc.para("Datasets:")
        doc.bullets(items)
    run_info = [
        f"{name}: {manifest[key]}"
        for key, name in (
            ("experiment", "experiment"),
            ("experiment_source", "defined in"),
            ("command", "command"),
            ("started_at", "started"),
            ("finished_at", "finished"),
        )
        if manifest.get(key)
    ]
    invocations = manifest.get("invocations") or []
    if len(invocations) > 1:
        run_info.append(f"invocations that wrote this folder: {len(invocations)}")
    if run_info:
        doc.bullets(run_info)


def _protocol_section(doc: Doc, groups: list[DatasetGroup], level: float, n_boot: int, seed: int):
    doc.heading(2, "Evaluation protocol")
    ties = sorted({g.key.ties for g in groups})
    exclude = sorted({g.key.exclude for g in groups})
    doc.bullets(
        [
            f"Tie policy: {', '.join(ties) or 'unknown'} (expected = expected value under a "
            "uniformly random order of tied items; pessimistic = ties ranked against the model).",
            f"Exclusion policy: {', '.join(exclude) or 'unknown'} (items removed from each "
            "user's candidates; every other item of the catalogue is ranked).",
            "Metrics are computed per user over the full catalogue and then averaged; users "
            "with at least one test positive are evaluated.",
            "MAP@k normaliser: min(k, number of test positives of the user). NDCG@k: binary "
            "gain, log2 discount, ideal DCG over min(k, positives).",
            "Unit of resampling: the user. Each model's per-user values are averaged over its "
            "seeds first, so every user counts once and seed-to-seed noise is averaged in.",
            f"Quality intervals: {level:.0%} percentile bootstrap over users ({n_boot} "
            f"resamples, seed {seed}); from {tables.NORMAL_ABOVE:,} users on, the normal "
            "approximation mean ± z·sd/√n. ± is the larger distance from the mean to a bound.",
            "Paired comparisons: per-user differences (model minus reference) on the users "
            "both evaluated; their mean and the paired t-test of that mean, Holm-corrected "
            "over the models compared with the same reference on the same metric (the "
            "headline test everywhere, the tuning section included). Significant (*) = Holm "
            f"p < {tables.ALPHA}. Interval: the paired t interval at the level Holm tested "
            f"the comparison at: 1 - {tables.ALPHA}/(m - k + 1) for the comparison Holm "
            f"rejects k-th of the m in its family, 1 - {tables.ALPHA}/(m - R) for the ones "
            "it keeps when it rejects R. So * holds exactly when the interval excludes 0. "
            f"Each interval contains the plain {1 - tables.ALPHA:.0%} interval; they are not "
            "simultaneous intervals. The Wilcoxon signed-rank p (a median shift, Holm "
            "corrected) is a secondary column.",
            "Deterministic models (no randomness in fit) run once: their seed count is 1.",
        ]
    )
    doc.para("Metrics:")
    doc.bullets([f"{m.name}{'@k' if m.at_k else ''}: {m.description}" for m in METRICS])


def _models_section(doc: Doc, runs: pd.DataFrame) -> None:
    facts = tables.model_facts(runs)
    if facts.empty:
        return
    doc.heading(2, "Models")
    doc.para(
        "Every model that ran, with the facts its adapter class declares: whether it trains "
        "on the common negative sampler (the others sample their own negatives or use none, "
        "so their training signal differs) and whether its fit is deterministic."
    )
    doc.table(
        ["model", "common sampler", "deterministic", "notes"],
        [
            [r["label"], r["uses_sampler"], r["deterministic"], r["notes"] or "-"]
            for r in facts.to_dict("records")
        ],
    )
    diffs = tables.preset_differences(runs)
    if not diffs.empty:
        doc.para("Parameters that differ between the presets of one model:")
        for _model, part in diffs.groupby("model", sort=False):
            labels = list(part["values"].iloc[0])
            doc.table(
                ["parameter", *labels],
                [
                    [r["parameter"], *(r["values"][x] for x in labels)]
                    for r in part.to_dict("records")
                ],
            )


def _quality_section(doc: Doc, quality: pd.DataFrame, metrics: Sequence[str], level: float):
    best = tables.best_labels(quality)
    rows = []
    for label in dict.fromkeys(quality["label"]):
        part = quality[quality["label"] == label].set_index("metric")
        first = part.iloc[0]
        cells = [label, str(int(first["seeds"])), _fmt_int(first["users"])]
        for metric in metrics:
            if metric not in part.index:
                cells.append("-")
                continue
            r = part.loc[metric]
            half = max(r["mean"] - r["low"], r["high"] - r["mean"])
            text = f"{r['mean']:.4f} ± {half:.4f}"
            top = quality.loc[quality["metric"] == metric, "mean"]
            target = top.max() if METRICS.higher_is_better(metric) else top.min()
            cells.append(Strong(text) if abs(r["mean"] - target) <= 1e-12 else text)
        rows.append(cells)
    method = ", ".join(sorted(set(quality["method"])))
    doc.para(
        f"Mean over users ± {level:.0%} confidence interval ({method}); bold = best mean of "
        "the column (shared when equal)."
    )
    doc.table(
        ["model", "seeds", "users", *metrics], rows, [False, True, True, *[True] * len(metrics)]
    )
    return best


def _beyond_section(doc: Doc, runs: pd.DataFrame) -> None:
    beyond = tables.beyond_summary(runs)
    if beyond.empty:
        return
    doc.heading(4, "Beyond accuracy")
    doc.para(
        "Catalogue coverage (share of items in at least one evaluated user's top k) and the "
        "mean train popularity of the recommended items; means over seeds."
    )
    doc.table(
        ["model", *beyond.columns],
        [[str(label), *(_fmt_metric(v) for v in row)] for label, row in beyond.iterrows()],
        [False, *[True] * len(beyond.columns)],
    )


def _activity_section(doc: Doc, group: DatasetGroup, per_user: pd.DataFrame, metrics):
    breakdown = tables.activity_breakdown(group, per_user, metrics)
    if breakdown.empty:
        return
    doc.heading(4, "By user activity")
    bins = breakdown.drop_duplicates("bin").sort_values("bin")
    names = [f"{r['low']}-{r['high']} ({r['users']:,} users)" for r in bins.to_dict("records")]
    doc.para(
        "Mean per user within quartiles of the users' number of train positives (the same "
        "users for every model)."
    )
    for metric in metrics[:2]:
        rows = []
        for label, part in breakdown.groupby("label", sort=False):
            values = part.set_index("bin")[metric]
            rows.append([str(label), *(_fmt_metric(values.get(b, np.nan)) for b in bins["bin"])])
        doc.para(f"{metric} by train positives:")
        doc.table(["model", *names], rows, [False, *[True] * len(names)])


def _fmt_level(level: float) -> str:
    return "-" if level is None or not np.isfinite(level) else f"{level:.2%}"


def _paired_section(doc: Doc, paired: pd.DataFrame) -> None:
    doc.heading(4, "Paired comparisons")
    doc.para(
        "Difference: mean per-user difference, model minus reference; p: paired t-test of "
        f"that mean, raw and Holm-corrected; * = Holm p < {tables.ALPHA}. Interval: paired t "
        "interval at the level Holm tested the comparison at (its own column), so * holds "
        "exactly when the interval excludes 0. Wilcoxon: signed-rank test, Holm corrected "
        "(secondary)."
    )
    header = [
        "metric",
        "model",
        "reference",
        "difference",
        "interval",
        "interval level",
        "p",
        "p (Holm)",
        "sig.",
        "Wilcoxon p (Holm)",
        "users",
    ]
    numeric = [False, False, False, True, True, True, True, True, False, True, True]
    for against in ("reference", "best"):
        part = paired[paired["against"] == against]
        if part.empty:
            if against == "reference":
                doc.para(
                    "No popularity baseline in this group: add popularity to the run, it "
                    "is a strong baseline under per-user metrics."
                )
            continue
        if against == "reference":  # its label (tables.reference_label), e.g. popularity
            title = f"Against the {part['reference'].iloc[0]} baseline"
        else:
            title = "Against the best model of each metric"
        doc.para(f"{title}:")
        doc.table(
            header,
            [
                [
                    r["metric"],
                    r["label"],
                    r["reference"],
                    _fmt_signed(r["mean_diff"]),
                    interval_text(r["low"], r["high"]),
                    _fmt_level(r["level"]),
                    _fmt_p(r["t_pvalue"]),
                    _fmt_p(r["t_holm"]),
                    "*" if r["significant"] else "",
                    _fmt_p(r["wilcoxon_holm"]),
                    _fmt_int(r["n"]),
                ]
                for r in part.to_dict("records")
            ],
            numeric,
        )


def _cost_section(doc: Doc, cost: pd.DataFrame) -> None:
    doc.heading(4, "Cost")
    doc.para(
        "Means over seeds, the seed-to-seed standard deviation and the median of the fit "
        "time (compare medians on a shared machine). Fit time includes the negative "
        "sampler's set-up, also shown on its own. Only timing-grade runs (each alone on "
        "its node) enter these costs and the Pareto plot; the last column counts them. "
        "Peak memory is the resident set of the "
        "whole process during fit and evaluation; growth is the increase over the run."
    )
    rows = [
        [
            str(label),
            str(int(r["seeds"])),
            _fmt_int(r["epochs"]),
            _fmt_seconds(r["fit_seconds"]),
            _fmt_seconds(r["fit_seconds_std"]),
            _fmt_seconds(r["fit_seconds_median"]),
            _fmt_seconds(r["sampler_setup_seconds"]),
            _fmt_seconds(r["seconds_per_epoch"]),
            _fmt_seconds(r["eval_seconds"]),
            _fmt_int(r["peak_rss_mb"]),
            _fmt_int(r["rss_growth_mb"]),
            str(r["timing_grade"]),
        ]
        for label, r in cost.iterrows()
    ]
    doc.table(
        [
            "model",
            "seeds",
            "epochs",
            "fit s",
            "fit s std",
            "median fit s",
            "sampler set-up s",
            "s / epoch",
            "eval s",
            "peak RSS MiB",
            "RSS growth MiB",
            "timing-grade runs",
        ],
        rows,
        [False, *[True] * 11],
    )


def _figure_sections(doc, group, curves, styles, figures, number):
    slug = f"{number:02d}-{_slug(group.key.dataset)}-{_slug(group.key.sha256[:8])}"
    ids = set(group.runs["run_id"].astype(str))
    group_curves = curves[curves["run_id"].astype(str).isin(ids)] if not curves.empty else curves
    doc.heading(4, "Learning curves")
    curve_metrics = [m for m in tables.headline_metrics(group_curves.columns)][:2]
    drawn = False
    for metric in curve_metrics:
        fig = figs.curves_figure(group_curves, metric, styles, group.title())
        if fig is None:
            continue
        drawn = True
        item = Figure(
            f"curves-{_slug(metric)}-{slug}.png",
            figs.png(fig),
            f"Test {metric} against epoch (left) and cumulative fit seconds, log scale "
            f"(right), one row per model family, mean over seeds; dashed grey lines are the "
            f"models without epochs ({group.title()}).",
        )
        figures.append(item)
        doc.figure(item)
    if not drawn:
        doc.para("No learning curves recorded (run without --no-curves to get them).")
    pareto_metrics = [m for m in tables.headline_metrics(group.runs.columns)][:2]
    if not pareto_metrics or "fit_seconds" not in group.runs:
        return
    points = tables.pareto_points(group, pareto_metrics)
    doc.heading(4, "Quality versus fit time")
    if points.empty:
        # Runs that shared a machine (parallel jobs) have no comparable fit times.
        doc.para(
            "No timing-grade run (every run shared its machine with another), so no fit "
            "times to compare: no Pareto front."
        )
        return
    front = points.index[points[f"front_{pareto_metrics[0]}"]]
    doc.para(
        f"Pareto front on {pareto_metrics[0]} against fit seconds (no other model is both "
        f"faster and better): {', '.join(front)}."
    )
    item = Figure(
        f"pareto-{slug}.png",
        figs.png(figs.pareto_figure(points, pareto_metrics, styles, group.title())),
        f"Mean test quality against mean fit seconds (log axis); front models labelled, "
        f"every model in the key ({group.title()}).",
    )
    figures.append(item)
    doc.figure(item)


def _scale_sections(doc: Doc, groups: list[DatasetGroup], styles, figures: list[Figure]):
    families: dict[tuple, list[DatasetGroup]] = {}
    for group in groups:
        families.setdefault(group.key.family, []).append(group)
    scale = {k: v for k, v in families.items() if len({g.size("train_positives") for g in v}) >= 2}
    if not scale:
        return
    doc.heading(2, "Scaling with dataset size")
    for family, members in scale.items():
        rows = []
        for group in members:
            for label, r in cost_summary(group.runs).iterrows():
                rows.append(
                    {
                        "label": label,
                        "num_users": group.size("num_users"),
                        "num_items": group.size("num_items"),
                        "train_positives": group.size("train_positives"),
                        **{c: r[c] for c, _ in SCALE_COLUMNS},
                    }
                )
        table = pd.DataFrame(rows)
        facts = tables.model_facts(pd.concat([g.runs for g in members], ignore_index=True))
        reasons = dict(zip(facts["label"], facts["fit_scaling"]))
        # A model without the common sampler has no set-up to plot (only a timer's noise).
        samplerless = set(facts.loc[facts["uses_sampler"] == "no", "label"])
        table.loc[table["label"].astype(str).isin(samplerless), "sampler_setup_seconds"] = np.nan
        title = f"{family[0]} / {family[1]}"
        doc.heading(3, f"Scale suite: {title}")
        sizes = sorted(table["train_positives"].unique())
        exponents = _scaling_exponents(table)
        out_rows = []
        flagged = []
        for label, part in table.groupby("label", sort=False):
            part = part.set_index("train_positives")
            cells = [str(label)]
            for size in sizes:
                if size in part.index and part.loc[size, "fit_seconds"] > 0:
                    r = part.loc[size]
                    cells.append(f"{_fmt_seconds(r['fit_seconds'])} s / {r['peak_rss_mb']:.0f} MiB")
                else:
                    cells.append("-")
            for column, _ in SCALE_COLUMNS:
                value = exponents.loc[label, column]
                cells.append("-" if not np.isfinite(value) else f"{value:.2f}")
            fit_exponent = exponents.loc[label, "fit_seconds"]
            if np.isfinite(fit_exponent) and fit_exponent > tables.SCALING_LIMIT:
                reason = reasons.get(str(label)) or ""
                flagged.append(
                    f"{label} ({fit_exponent:.2f}): "
                    + (reason if reason else "no reason in its algorithm recorded: a defect")
                )
            out_rows.append(cells)
        size_names = []
        for size in sizes:
            first = table[table["train_positives"] == size].iloc[0]
            size_names.append(
                f"{int(size):,} positives ({int(first['num_users']):,} users, "
                f"{int(first['num_items']):,} items)"
            )
        doc.para(
            "Cell: mean fit seconds (sampler set-up included) / peak resident memory "
            "(timing-grade runs). Exponents: slope of log cost against log train "
            "positives (1 = linear) for fit time, sampler set-up, evaluation time and "
            "peak memory; '-' where a model ran at fewer than two sizes or has no such cost."
        )
        doc.table(
            [
                "model",
                *size_names,
                "fit-time exponent",
                "set-up exponent",
                "evaluation exponent",
                "memory exponent",
            ],
            out_rows,
            [False, *[True] * (len(sizes) + 4)],
        )
        if flagged:
            doc.para(
                f"Fit time growing faster than train positives^{tables.SCALING_LIMIT}: "
                + "; ".join(flagged)
                + "."
            )
        else:
            doc.para(
                f"Every model's fit time grows at most as train positives^{tables.SCALING_LIMIT}."
            )
        item = Figure(
            f"scale-{_slug(title)}.png",
            figs.png(figs.scale_figure(table, SCALE_COLUMNS, styles, title, exponents=exponents)),
            f"Fit time, sampler set-up, evaluation time and peak memory against "
            f"train positives, log-log axes, each model's exponent in the key ({title}).",
        )
        figures.append(item)
        doc.figure(item)


def _scaling_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per label (rows) and scale column: :func:`tables.scaling_exponent` over the sizes."""
    out = {}
    for label, part in table.groupby("label", sort=False):
        out[label] = {
            column: tables.scaling_exponent(
                part["train_positives"].to_numpy(dtype=float),
                pd.to_numeric(part[column], errors="coerce").to_numpy(dtype=float),
            )
            for column, _ in SCALE_COLUMNS
        }
    return pd.DataFrame.from_dict(out, orient="index")


def _failed_section(doc: Doc, runs: pd.DataFrame) -> None:
    status = runs["status"].astype(str) if "status" in runs else pd.Series([], dtype=str)
    inapplicable = runs[status == "not-applicable"]
    if not inapplicable.empty:
        doc.heading(2, "Not applicable")
        doc.para(
            f"{len(inapplicable)} run(s) were not scored: the model cannot run on that data "
            "(e.g. cold users or items and no side features, or a catalogue too large for "
            "its algorithm; the reason is given), so it is reported here, not as random "
            "or as a failure."
        )
        _run_table(doc, inapplicable, "reason")
    doc.heading(2, "Failed runs")
    failed = runs[~status.isin(["ok", "not-applicable"])] if "status" in runs else runs.iloc[0:0]
    if failed.empty:
        doc.para("None: every run finished.")
        return
    doc.para(f"{len(failed)} run(s) failed; they are left out of every table above.")
    _run_table(doc, failed, "error")


def _run_table(doc: Doc, runs: pd.DataFrame, last: str) -> None:
    rows = []
    for r in runs.to_dict("records"):
        key = tables.run_identity(r)
        rows.append(
            [
                str(r["label"]),
                str(r.get("seed", "")),
                f"{key.dataset} / {key.split}",
                str(r["run_id"]),
                str(r.get("error") or ""),
            ]
        )
    doc.table(
        ["model", "seed", "dataset", "run id", last], rows, [False, True, False, False, False]
    )


# -- the report ----------------------------------------------------------------------------------
@dataclass
class Report:
    """A rendered report, not yet written.

    Attributes
    ----------
    markdown, html : str
    figures : dict of str to bytes
        PNG file name -> content.
    quality : pandas.DataFrame
        :func:`quality_summary` rows of every group, with a ``group`` column.
    paired : pandas.DataFrame
        :func:`tables.paired_tables` rows of every group, with ``group`` and
        ``section`` (the group's number in the report) columns.
    """

    markdown: str
    html: str
    figures: dict[str, bytes]
    quality: pd.DataFrame
    paired: pd.DataFrame


def build_report(
    results_dir: str | Path, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> Report:
    """Read a results folder and render its report (nothing is written).

    Parameters
    ----------
    results_dir : str or Path
        A folder written by ``rsbench run``.
    level : float
        Confidence level of every quality interval. The paired comparisons'
        intervals follow their Holm-corrected t-test at :data:`tables.ALPHA`
        (:func:`tables.paired_family`), so that * and interval agree.
    n_boot : int
        Bootstrap resamples per quality interval.
    seed : int
        Seed of every bootstrap, so the same folder always gives the same report.

    Raises
    ------
    bench.results.ResultsError
        The folder is not a results folder or a table cannot be read.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    folder = Path(results_dir)
    loaded = load_results(folder)
    runs, per_user, curves = loaded["runs"], loaded["per_user"], loaded["curves"]
    manifest = loaded["manifest"]
    runs = runs.assign(run_id=runs["run_id"].astype(str), label=runs["label"].astype(str))
    groups = dataset_groups(runs)
    styles = figs.styles(list(dict.fromkeys(runs["label"])))

    doc = Doc()
    name = manifest.get("experiment") or folder.name
    title = f"rsbench report: {name}"
    doc.heading(1, title)
    n_ok = int((runs["status"] == "ok").sum())
    n_na = int((runs["status"] == "not-applicable").sum())
    not_applicable = f"{n_na} not applicable, " if n_na else ""
    doc.para(
        f"Results folder {folder.name}: {len(runs)} run(s), {n_ok} successful, "
        f"{not_applicable}{len(runs) - n_ok - n_na} failed, over {len(groups)} dataset group(s)."
    )
    _environment_section(doc, manifest, groups)
    _protocol_section(doc, groups, level, n_boot, seed)
    _models_section(doc, runs[runs["status"] == "ok"])

    figures: list[Figure] = []
    quality_frames, paired_frames = [], []
    doc.heading(2, "Results by dataset")
    if not groups:
        doc.para("No successful runs: nothing to summarise.")
    for number, group in enumerate(groups, start=1):
        doc.heading(3, f"{number}. {group.title()}")
        doc.para(_describe(group))
        metrics = tables.headline_metrics(group.runs.columns)
        quality = quality_summary(
            group.runs, per_user, metrics=metrics, level=level, n_boot=n_boot, seed=seed
        )
        quality_frames.append(quality.assign(group=group.title()))
        doc.heading(4, "Quality")
        if quality.empty:
            doc.para("No per-user rows for these runs (per_user.parquet missing?).")
        else:
            _quality_section(doc, quality, metrics, level)
            _beyond_section(doc, group.runs)
            _activity_section(doc, group, per_user, metrics)
            paired = tables.paired_tables(group, per_user, quality, metrics)
            if not paired.empty:
                _paired_section(doc, paired)
                paired_frames.append(paired.assign(group=group.title(), section=number))
        _cost_section(doc, cost_summary(group.runs))
        _figure_sections(doc, group, curves, styles, figures, number)

    _scale_sections(doc, groups, styles, figures)

    def add_figure(file_name: str, fig: Any, caption: str) -> None:
        figures.append(Figure(file_name, figs.png(fig), caption))
        doc.figure(figures[-1])

    tuning_section(doc, folder, runs, per_user, manifest, add_figure)
    _failed_section(doc, runs)
    paired_all = pd.concat(paired_frames, ignore_index=True) if paired_frames else pd.DataFrame()
    quality_all = pd.concat(quality_frames, ignore_index=True) if quality_frames else pd.DataFrame()
    return Report(
        markdown=render_markdown(doc),
        html=render_html(doc, title),
        figures={f.name: f.png for f in figures},
        quality=quality_all,
        paired=paired_all,
    )


def _describe(group: DatasetGroup) -> str:
    parts = []
    for column, name in (
        ("num_users", "users"),
        ("num_items", "items"),
        ("train_positives", "train positives"),
        ("test_positives", "test positives"),
        ("eval_users", "evaluated users"),
    ):
        value = group.size(column)
        if value is not None:
            parts.append(f"{value:,} {name}")
    key = group.key
    return (
        f"{', '.join(parts)}. Ties: {key.ties}; excluded from candidates: {key.exclude}; "
        f"dataset sha256 {key.sha256 or 'unknown'}."
    )


def write_report(
    results_dir: str | Path, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into a results folder.

    Figures of an earlier report that this one no longer makes are removed
    (only files named like report figures); the result tables are never touched.

    Returns
    -------
    list of Path
        ``report.md``, ``report.html``, then every figure written.
    """
    folder = Path(results_dir)
    report = build_report(folder, level=level, n_boot=n_boot, seed=seed)
    figure_dir = folder / FIGURES
    remove_stale_temporaries(figure_dir)  # left by a report that was killed
    written = [atomic_write_bytes(figure_dir / name, data) for name, data in report.figures.items()]
    if figure_dir.is_dir():
        for stale in figure_dir.iterdir():
            if _FIGURE_NAME.match(stale.name) and stale.name not in report.figures:
                stale.unlink()
    md = atomic_write_text(folder / "report.md", report.markdown)
    page = atomic_write_text(folder / "report.html", report.html)
    log.info("report of %s: %d figure(s)", folder, len(written))
    return [md, page, *written]


def summary_text(runs: pd.DataFrame, per_user: pd.DataFrame, *, n_boot: int = 2000) -> str:
    """The terminal summary of ``rsbench run``: the report's quality tables as plain text."""
    groups = dataset_groups(runs)
    if not groups or per_user.empty:
        return "no successful runs"
    blocks = []
    for group in groups:
        metrics = tables.headline_metrics(group.runs.columns)[:4]
        quality = quality_summary(group.runs, per_user, metrics=metrics, n_boot=n_boot)
        cost = cost_summary(group.runs)
        rows = []
        for label in group.labels:
            part = quality[quality["label"] == label].set_index("metric")
            cells = [label, str(int(cost.loc[label, "seeds"]))]
            for metric in metrics:
                if metric in part.index:
                    r = part.loc[metric]
                    cells.append(f"{r['mean']:.4f} [{r['low']:.4f}, {r['high']:.4f}]")
                else:
                    cells.append("-")
            cells.append(_fmt_seconds(cost.loc[label, "fit_seconds"]))
            rows.append(cells)
        header = ["model", "seeds", *metrics, "fit s"]
        table = text_table(header, rows, [False, True, *[True] * len(metrics), True])
        blocks.append(f"{group.title()} (mean [95% CI] over users)\n{table}")
    return "\n\n".join(blocks)
