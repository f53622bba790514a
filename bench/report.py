"""The results report: ``report.md`` and a self-contained ``report.html`` for a results folder.

``write_report(folder)`` reads what the runner wrote (``runs.csv``,
``per_user.parquet``, ``curves.csv``, ``manifest.json``; see
:mod:`bench.results`), never changes it, and adds ``report.md``,
``report.html`` and a ``figures/`` subfolder of PNGs (linked from the
markdown, embedded as base64 in the HTML). Every file is written atomically.

What the report holds, per dataset group (same dataset, split, minimum
rating, dataset options, tie and exclusion policy, dataset hash):

* a quality table: mean and 95% confidence interval of each main metric per
  model, the best mean of each column in bold. Seeds are averaged per user
  first, so the interval is a bootstrap over users (:func:`metrics.stats.mean_ci`);
* paired comparisons of every model with the best model of each metric and
  with the popularity baseline (:func:`metrics.stats.paired_comparison` on the
  users both models evaluated), p-values Holm-corrected over the models
  compared with the same reference on the same metric;
* a cost table (fit, per-epoch and evaluation seconds, peak memory);
* learning curves (AUC and precision@10 against epoch and against cumulative
  fit seconds) and a quality-versus-fit-time scatter with its Pareto front;

and, across groups, time and memory against dataset size on log axes for
every "scale suite" (one dataset evaluated at several sizes), the
environment, the evaluation protocol, model notes and failed runs.

Bootstraps use fixed seeds, so the same folder always gives the same report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.io import atomic_write_bytes, atomic_write_text
from bench.results import load_results

__all__ = [
    "MAIN_METRICS",
    "DatasetGroup",
    "Report",
    "build_report",
    "cost_summary",
    "curves_figure",
    "dataset_groups",
    "paired_summary",
    "pareto_figure",
    "pareto_front",
    "quality_summary",
    "scale_figure",
    "user_means",
    "write_report",
]

log = logging.getLogger(__name__)

MAIN_METRICS = ("auc", "precision@10", "recall@10", "map@10", "ndcg@10", "mrr")
CURVE_METRICS = ("auc", "precision@10")
PARETO_METRICS = ("auc", "precision@10")
SCALE_COLUMNS = (
    ("fit_seconds", "fit time (s)"),
    ("seconds_per_epoch", "seconds per epoch (s)"),
    ("eval_seconds", "evaluation time (s)"),
    ("peak_rss_mb", "peak resident memory (MiB)"),
)
FIGURES = "figures"
_FIGURE_NAME = re.compile(r"^(curves|pareto|scale)-[A-Za-z0-9_.-]+\.png$")
# Adapter notes that say the model does not use the common negative sampler.
_OWN_NEGATIVES = re.compile(
    r"own negatives|samples everything itself|sampler is not used|no negative sampling",
    re.IGNORECASE,
)
_METRIC_TITLES = {"auc": "AUC", "precision@10": "precision@10"}


# -- a tiny document model rendered to both markdown and HTML ----------------
class Strong(str):
    """A table cell or text rendered in bold (the best value of a column)."""

    __slots__ = ()


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)


@dataclass
class _Figure:
    name: str
    png: bytes
    caption: str


@dataclass
class _Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        numeric: Sequence[bool] | None = None,
    ) -> None:
        numeric = list(numeric) if numeric is not None else [False] * len(header)
        self.blocks.append(("table", _Table(list(header), [list(r) for r in rows], numeric)))

    def figure(self, fig: _Figure) -> None:
        self.blocks.append(("figure", fig))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))


def _md_cell(text: str) -> str:
    out = str(text).replace("|", "\\|").replace("\n", " ")
    return f"**{out}**" if isinstance(text, Strong) and out else out


def _render_markdown(doc: _Doc) -> str:
    lines: list[str] = []
    for kind, value in doc.blocks:
        if kind == "h":
            level, text = value
            lines += ["#" * level + " " + text, ""]
        elif kind == "p":
            lines += [value, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in value] + [""]
        elif kind == "pre":
            lines += ["```", value, "```", ""]
        elif kind == "table":
            table: _Table = value
            lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
            lines.append("|" + "|".join("---:" if n else "---" for n in table.numeric) + "|")
            for row in table.rows:
                lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            lines.append("")
        elif kind == "figure":
            fig: _Figure = value
            alt = fig.name.rsplit(".", 1)[0]
            lines += [f"![{alt}]({FIGURES}/{fig.name})", "", f"*{fig.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0 2em}img{max-width:100%}figcaption{font-style:italic;color:#555}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}h2{border-bottom:1px solid #ddd}
"""


def _html_cell(text: str) -> str:
    out = html.escape(str(text))
    return f"<strong>{out}</strong>" if isinstance(text, Strong) and out else out


def _render_html(doc: _Doc, title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for kind, value in doc.blocks:
        if kind == "h":
            level, text = value
            parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(value)}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in value) + "</ul>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(value)}</pre>")
        elif kind == "table":
            table: _Table = value
            head = "".join(f"<th>{_html_cell(h)}</th>" for h in table.header)
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td class="num">{_html_cell(c)}</td>' if num else f"<td>{_html_cell(c)}</td>"
                    for c, num in zip(row, table.numeric)
                )
                + "</tr>"
                for row in table.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure":
            fig: _Figure = value
            data = base64.b64encode(fig.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(fig.caption)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- formatting ---------------------------------------------------------------
def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _fmt_seconds(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _fmt_num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and float(x).is_integer()):
        return f"{int(x):,}"
    return f"{x:.4g}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


# -- run identity and dataset groups ------------------------------------------
def _spec_of(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("spec")
    if isinstance(raw, str) and raw:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
    return {}


def _identity_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus the canonical dataset options, ties and exclusion taken from each spec."""
    runs = runs.copy()
    runs["run_id"] = runs["run_id"].astype(str)
    specs = [_spec_of(row) for row in runs.to_dict("records")]
    runs["_options"] = [json.dumps(s.get("dataset_options", {}), sort_keys=True) for s in specs]
    for column, default in (
        ("dataset", ""),
        ("split", ""),
        ("ties", "expected"),
        ("exclude", "train-positives"),
    ):
        values = [s.get(column) for s in specs]
        if column in runs:
            values = [v if v is not None else c for v, c in zip(values, runs[column])]
        runs[column] = [
            default if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values
        ]
    min_rating = [
        s.get("min_rating", row.get("min_rating")) for s, row in zip(specs, runs.to_dict("records"))
    ]
    runs["_min_rating"] = [
        "none" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):g}"
        for v in min_rating
    ]
    return runs


def _dataset_title(dataset: Any, split: Any, min_rating: Any, options: Mapping | None) -> str:
    text = f"{dataset} / {split}"
    if min_rating not in (None, "none", "nan"):
        text += f" / ratings >= {min_rating}"
    if options:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
    return text


def _dataset_key_title(key: str) -> str:
    """The manifest's dataset key (a JSON list) as a readable title."""
    try:
        dataset, split, min_rating, options = json.loads(key)
    except (ValueError, TypeError):
        return key
    if isinstance(min_rating, float):
        min_rating = f"{min_rating:g}"
    return _dataset_title(dataset, split, min_rating, options if isinstance(options, dict) else {})


@dataclass(frozen=True)
class DatasetGroup:
    """Successful runs that share one dataset and evaluation protocol.

    Attributes
    ----------
    key : tuple
        ``(dataset, split, min_rating, dataset_options_json, ties, exclude, sha256)``.
    runs : pandas.DataFrame
        Their ``runs.csv`` rows.
    """

    key: tuple
    runs: pd.DataFrame

    @property
    def family(self) -> tuple:
        """The key without options and hash: groups of one family differ only in size."""
        return self.key[:3] + self.key[4:6]

    def size(self, column: str) -> int | None:
        """A size column (``num_users``, ``train_positives``...) of the group's runs."""
        if column not in self.runs:
            return None
        values = pd.to_numeric(self.runs[column], errors="coerce").dropna()
        return int(values.iloc[0]) if len(values) else None

    def title(self) -> str:
        """``dataset / split``, the rating threshold and the dataset options when any."""
        dataset, split, min_rating, options, *_ = self.key
        return _dataset_title(dataset, split, min_rating, json.loads(options or "{}"))

    def describe(self) -> str:
        """One sentence with sizes, policies and the dataset hash."""
        parts = []
        for column, name in (
            ("num_users", "users"),
            ("num_items", "items"),
            ("train_positives", "train positives"),
            ("test_positives", "test positives"),
            ("eval_users", "evaluated users"),
        ):
            value = self.size(column)
            if value is not None:
                parts.append(f"{value:,} {name}")
        sha = self.key[6]
        return (
            f"{', '.join(parts)}. Ties: {self.key[4]}; excluded from candidates: "
            f"{self.key[5]}; dataset sha256 {sha}."
        )


def dataset_groups(runs: pd.DataFrame) -> list[DatasetGroup]:
    """Split the successful runs of ``runs.csv`` into :class:`DatasetGroup` objects.

    Parameters
    ----------
    runs : pandas.DataFrame
        The ``runs`` table of :func:`bench.results.load_results`.

    Returns
    -------
    list of DatasetGroup
        In order of first appearance; failed runs belong to no group.
    """
    if runs.empty or "status" not in runs:
        return []
    ok = _identity_columns(runs[runs["status"] == "ok"])
    if ok.empty:
        return []
    sha = ok["dataset_sha256"].astype(str) if "dataset_sha256" in ok else pd.Series("", ok.index)
    keys = list(
        zip(
            ok["dataset"].astype(str),
            ok["split"].astype(str),
            ok["_min_rating"],
            ok["_options"],
            ok["ties"].astype(str),
            ok["exclude"].astype(str),
            sha,
        )
    )
    order: dict[tuple, list[int]] = {}
    for position, key in enumerate(keys):
        order.setdefault(key, []).append(position)
    return [DatasetGroup(key, ok.iloc[rows].reset_index(drop=True)) for key, rows in order.items()]


# -- statistics -----------------------------------------------------------------
def user_means(
    per_user: pd.DataFrame, run_ids: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Per-user metric values of some runs, averaged over the runs (seeds) per user.

    Parameters
    ----------
    per_user : pandas.DataFrame
        ``per_user.parquet`` (``run_id``, ``user`` and metric columns).
    run_ids : sequence of str
        The runs of one label on one dataset (one per seed).
    metrics : sequence of str
        Metric columns to keep (those absent are skipped).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``user`` (sorted), float64 columns ``metrics``.
    """
    if per_user.empty:
        return pd.DataFrame()
    rows = per_user[per_user["run_id"].astype(str).isin({str(r) for r in run_ids})]
    present = [m for m in metrics if m in rows]
    return rows.groupby("user")[present].mean().astype(np.float64).sort_index()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def quality_summary(
    runs: pd.DataFrame,
    per_user: pd.DataFrame,
    *,
    metrics: Sequence[str] = MAIN_METRICS,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean and confidence interval per label and metric, over users (seeds averaged first).

    Parameters
    ----------
    runs : pandas.DataFrame
        Successful runs of one dataset group.
    per_user : pandas.DataFrame
        The per-user table of the folder.
    metrics : sequence of str
        Metric columns to summarise.
    level : float
        Confidence level of :func:`metrics.stats.mean_ci`.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of every bootstrap (each interval restarts from it).

    Returns
    -------
    pandas.DataFrame
        Columns ``label, metric, mean, low, high, seeds, users``, one row per
        label and metric, labels in order of first appearance.
    """
    from metrics.stats import mean_ci

    rows = []
    for label, group in runs.groupby("label", sort=False):
        means = user_means(per_user, group["run_id"].astype(str).tolist(), metrics)
        for metric in metrics:
            if metric not in means:
                continue
            values = means[metric].to_numpy()
            # Users without a defined value (e.g. AUC with no negative) carry no information.
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            ci = mean_ci(values, level, n_boot=n_boot, rng=_rng(seed))
            rows.append(
                {
                    "label": label,
                    "metric": metric,
                    "mean": float(ci.mean),
                    "low": float(ci.low),
                    "high": float(ci.high),
                    "seeds": int(group["seed"].nunique()),
                    "users": int(values.size),
                }
            )
    return pd.DataFrame(rows, columns=["label", "metric", "mean", "low", "high", "seeds", "users"])


def _holm_finite(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjust the finite p-values; NaN (e.g. identical scores) stays NaN."""
    from metrics.stats import holm

    pvalues = np.asarray(pvalues, dtype=np.float64)
    out = np.full(pvalues.shape, np.nan)
    finite = np.isfinite(pvalues)
    if finite.any():
        out[finite] = np.asarray(holm(pvalues[finite]), dtype=np.float64)
    return out


def paired_summary(
    means_by_label: Mapping[str, pd.DataFrame],
    references: Mapping[str, str],
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of every label with a reference label, per metric.

    Parameters
    ----------
    means_by_label : mapping of str to pandas.DataFrame
        :func:`user_means` of each label.
    references : mapping of str to str
        Metric name -> reference label (e.g. the best model of that metric).
    level, n_boot, seed
        Passed to :func:`metrics.stats.paired_comparison` (a fresh generator
        from ``seed`` for every comparison).

    Returns
    -------
    pandas.DataFrame
        Columns ``label, reference, metric, mean_diff`` (label minus reference,
        averaged over the users both evaluated), ``low, high, t_pvalue,
        wilcoxon_pvalue, n, t_holm, wilcoxon_holm``. The Holm family is the
        set of labels compared with the same reference on the same metric.
    """
    from metrics.stats import paired_comparison

    rows = []
    for metric, reference in references.items():
        ref = means_by_label.get(reference)
        if ref is None or metric not in ref:
            continue
        family = []
        for label, means in means_by_label.items():
            if label == reference or metric not in means:
                continue
            joined = pd.concat(
                {"a": means[metric], "b": ref[metric]}, axis=1, join="inner"
            ).dropna()
            if len(joined) < 2:
                continue
            result = paired_comparison(
                joined["a"].to_numpy(),
                joined["b"].to_numpy(),
                level=level,
                n_boot=n_boot,
                rng=_rng(seed),
            )
            family.append(
                {
                    "label": label,
                    "reference": reference,
                    "metric": metric,
                    "mean_diff": float(result.mean_diff),
                    "low": float(result.low),
                    "high": float(result.high),
                    "t_pvalue": float(result.t_pvalue),
                    "wilcoxon_pvalue": float(result.wilcoxon_pvalue),
                    "n": int(result.n),
                }
            )
        if family:
            t_holm = _holm_finite([r["t_pvalue"] for r in family])
            w_holm = _holm_finite([r["wilcoxon_pvalue"] for r in family])
            for row, t, w in zip(family, t_holm, w_holm):
                row["t_holm"], row["wilcoxon_holm"] = float(t), float(w)
            rows.extend(family)
    return pd.DataFrame(
        rows,
        columns=[
            "label",
            "reference",
            "metric",
            "mean_diff",
            "low",
            "high",
            "t_pvalue",
            "wilcoxon_pvalue",
            "n",
            "t_holm",
            "wilcoxon_holm",
        ],
    )


def cost_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean (and seed-to-seed std) of the cost columns per label.

    Returns
    -------
    pandas.DataFrame
        Indexed by label: ``seeds, epochs, fit_seconds, fit_seconds_std,
        fit_seconds_median, seconds_per_epoch, eval_seconds, peak_rss_mb,
        rss_growth_mb`` (means over seeds; std is NaN with one seed). The
        median fit time is the one to compare on a shared machine, where one
        seed's run can be slowed by a neighbour's burst.
    """
    columns = [
        "epochs",
        "fit_seconds",
        "seconds_per_epoch",
        "eval_seconds",
        "peak_rss_mb",
        "rss_growth_mb",
    ]
    frame = runs.copy()
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    grouped = frame.groupby("label", sort=False)
    out = grouped[columns].mean()
    out.insert(0, "seeds", grouped["seed"].nunique())
    out.insert(3, "fit_seconds_std", grouped["fit_seconds"].std(ddof=1))
    out.insert(4, "fit_seconds_median", grouped["fit_seconds"].median())
    return out


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> np.ndarray:
    """Which points no other point beats on both cost (lower) and quality (higher).

    Parameters
    ----------
    cost, quality : array_like, shape (n,)
        E.g. fit seconds and AUC of ``n`` models.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        ``True`` for Pareto-optimal points. A point is dominated when another
        has cost <= and quality >= with at least one strict; exact duplicates
        are both kept.
    """
    cost = np.asarray(cost, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    if cost.shape != quality.shape or cost.ndim != 1:
        raise ValueError(
            f"cost and quality must be 1-d of one length, got shapes "
            f"{cost.shape} and {quality.shape}"
        )
    no_worse = (cost[None, :] <= cost[:, None]) & (quality[None, :] >= quality[:, None])
    better = (cost[None, :] < cost[:, None]) | (quality[None, :] > quality[:, None])
    return ~(no_worse & better).any(axis=1)


# -- figures ----------------------------------------------------------------------
def _new_figure(width: float, height: float):
    # A bare Figure (no pyplot) is Agg-rendered by savefig and touches no global state.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    markers = "osD^vP*Xhp<>"
    return {
        label: {"color": cmap(i % cmap.N), "marker": markers[(i // cmap.N) % len(markers)]}
        for i, label in enumerate(labels)
    }


def _legend_below(fig, axes, ncol_max: int = 5) -> None:
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=min(ncol_max, len(handles)),
            fontsize="small",
            frameon=False,
        )


def curves_figure(curves: pd.DataFrame, styles: Mapping[str, dict] | None = None, title: str = ""):
    """Learning curves: AUC and precision@10 by epoch (top) and by cumulative fit time (bottom).

    Parameters
    ----------
    curves : pandas.DataFrame
        ``curves.csv`` rows (``label, epoch, fit_seconds`` and metric columns);
        seeds are averaged per label and epoch.
    styles : mapping of str to dict, optional
        Label -> matplotlib ``color``/``marker`` keywords (default: one
        colour per label in order of appearance).
    title : str
        Appended to the figure title.

    Returns
    -------
    matplotlib.figure.Figure or None
        ``None`` when there is nothing to plot.
    """
    metrics = [m for m in CURVE_METRICS if m in curves]
    if curves.empty or not metrics:
        return None
    if styles is None:
        styles = _styles(list(dict.fromkeys(curves["label"].astype(str))))
    frame = curves.copy()
    for column in ("epoch", "fit_seconds", *metrics):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    mean = frame.groupby(["label", "epoch"], sort=False)[["fit_seconds", *metrics]].mean()
    fig = _new_figure(11, 4.2 * 2)
    axes = fig.subplots(2, len(metrics), squeeze=False)
    for label in frame["label"].drop_duplicates():
        series = mean.loc[label].sort_index()
        style = styles.get(label, {})
        for col, metric in enumerate(metrics):
            kw = {"label": label, "markersize": 4, "linewidth": 1.4, **style}
            axes[0, col].plot(series.index, series[metric], **kw)
            axes[1, col].plot(series["fit_seconds"].clip(lower=1e-4), series[metric], **kw)
    for col, metric in enumerate(metrics):
        name = _METRIC_TITLES.get(metric, metric)
        axes[0, col].set(title=f"{name} by epoch", xlabel="epoch", ylabel=f"test {name}")
        axes[1, col].set(
            title=f"{name} by cumulative fit time",
            xscale="log",
            xlabel="cumulative fit time (s, log scale; evaluation excluded)",
            ylabel=f"test {name}",
        )
        for row in range(2):
            axes[row, col].grid(alpha=0.3)
    fig.suptitle(f"Learning curves (mean over seeds): {title}")
    _legend_below(fig, axes[0, 0])
    return fig


def pareto_figure(points: pd.DataFrame, styles: Mapping[str, dict] | None = None, title: str = ""):
    """Quality (AUC, precision@10) against fit seconds (log axis) with the Pareto front.

    Parameters
    ----------
    points : pandas.DataFrame
        Indexed by label: ``fit_seconds`` and the metric columns (means over seeds).
    styles, title
        As in :func:`curves_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    metrics = [m for m in PARETO_METRICS if m in points]
    if styles is None:
        styles = _styles([str(label) for label in points.index])
    fig = _new_figure(11, 5)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    cost = points["fit_seconds"].clip(lower=1e-4).to_numpy()
    for ax, metric in zip(axes, metrics):
        quality = points[metric].to_numpy()
        front = pareto_front(cost, quality)
        for label, x, y in zip(points.index, cost, quality):
            ax.scatter([x], [y], s=45, label=label, zorder=3, **styles.get(label, {}))
            ax.annotate(
                label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize="x-small"
            )
        order = np.argsort(cost[front])
        ax.plot(
            cost[front][order],
            quality[front][order],
            linestyle="--",
            color="black",
            drawstyle="steps-post",
            linewidth=1,
            label="Pareto front",
            zorder=2,
        )
        name = _METRIC_TITLES.get(metric, metric)
        ax.set(
            xscale="log",
            xlabel="fit time (s, log scale; mean over seeds)",
            ylabel=f"test {name} (mean over users)",
            title=f"{name} versus fit time",
        )
        ax.grid(alpha=0.3)
    fig.suptitle(f"Quality versus fit time: {title}")
    _legend_below(fig, axes[0])
    return fig


def scale_figure(table: pd.DataFrame, styles: Mapping[str, dict] | None = None, title: str = ""):
    """Fit, per-epoch and evaluation seconds and peak memory against train positives (log-log).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per label and dataset size: ``label, train_positives`` and the
        columns of ``SCALE_COLUMNS`` (means over seeds).
    styles, title
        As in :func:`curves_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if styles is None:
        styles = _styles(list(dict.fromkeys(table["label"].astype(str))))
    fig = _new_figure(11, 8.4)
    axes = fig.subplots(2, 2).ravel()
    for label, rows in table.groupby("label", sort=False):
        rows = rows.sort_values("train_positives")
        for ax, (column, _) in zip(axes, SCALE_COLUMNS):
            values = rows[column].where(rows[column] > 0)
            ax.plot(
                rows["train_positives"],
                values,
                label=label,
                markersize=5,
                linewidth=1.4,
                **styles.get(label, {}),
            )
    from matplotlib.ticker import LogFormatter

    for ax, (_, name) in zip(axes, SCALE_COLUMNS):
        ax.set(
            xscale="log",
            yscale="log",
            title=f"{name.split(' (')[0]} by dataset size",
            xlabel="train positives (log scale)",
            ylabel=f"{name[:-1]}, log scale)",
        )
        for axis in (ax.xaxis, ax.yaxis):
            # Plain numbers (2000, not 2x10^3); minor ticks labelled only on short ranges.
            axis.set_major_formatter(LogFormatter())
            axis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"Cost against dataset size (mean over seeds): {title}")
    _legend_below(fig, axes[0])
    return fig


# -- report sections ----------------------------------------------------------------
def _environment_section(
    doc: _Doc, manifest: Mapping[str, Any], groups: list[DatasetGroup]
) -> None:
    doc.heading(2, "Environment")
    env = manifest.get("environment") or {}
    if not env:
        doc.para("manifest.json is missing or has no environment: the machine is unknown.")
    else:
        commit = env.get("git_commit") or "unknown"
        if env.get("git_dirty"):
            commit += " (with uncommitted changes)"
        cpus = env.get("cpu_count")
        usable = env.get("usable_cpus")
        cpu_text = f"{env.get('cpu', 'unknown')}, {cpus} logical CPUs"
        if usable is not None and usable != cpus:
            cpu_text += f" ({usable} usable)"
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
    items = []
    for key, info in (manifest.get("datasets") or {}).items():
        items.append(
            f"{_dataset_key_title(key)}: sha256 {info.get('sha256')} (source: {info.get('source')})"
        )
    if not items:
        items = [f"{g.title()}: sha256 {g.key[6]}" for g in groups]
    if items:
        doc.para("Datasets:")
        doc.bullets(items)
    run_info = []
    for key, name in (
        ("experiment", "experiment"),
        ("experiment_source", "defined in"),
        ("command", "command"),
        ("started_at", "started"),
        ("finished_at", "finished"),
    ):
        if manifest.get(key):
            run_info.append(f"{name}: {manifest[key]}")
    if run_info:
        doc.bullets(run_info)


def _protocol_section(doc: _Doc, runs: pd.DataFrame, level: float, n_boot: int, seed: int) -> None:
    doc.heading(2, "Evaluation protocol")
    frame = _identity_columns(runs) if not runs.empty else runs
    ties = sorted(frame["ties"].astype(str).unique()) if "ties" in frame else []
    exclude = sorted(frame["exclude"].astype(str).unique()) if "exclude" in frame else []
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
            f"Intervals: {level:.0%} bootstrap over users ({n_boot} resamples, seed {seed}) of "
            "the per-user values averaged over seeds. ± is the larger distance from the mean "
            "to an interval bound.",
            "Paired comparisons: per-user differences on the users both models evaluated; "
            "p-values from the paired t-test and the Wilcoxon signed-rank test, Holm-corrected "
            "over the models compared with the same reference on the same metric.",
        ]
    )


def _notes_section(doc: _Doc, runs: pd.DataFrame) -> None:
    if "notes" not in runs:
        return
    notes = runs[["label", "notes"]].dropna().drop_duplicates("label")
    notes = notes[notes["notes"].astype(str).str.strip() != ""]
    if notes.empty:
        return
    doc.heading(2, "Model notes")
    own = [
        label
        for label, text in zip(notes["label"], notes["notes"])
        if _OWN_NEGATIVES.search(str(text))
    ]
    if own:
        doc.para(
            "These models sample their own negatives (or use none) instead of the "
            f"common sampler, so their training signal differs: {', '.join(own)}."
        )
    doc.table(
        ["model", "own negatives", "notes"],
        [
            [label, "yes" if label in own else "", str(text)]
            for label, text in zip(notes["label"], notes["notes"])
        ],
    )


def _failed_section(doc: _Doc, runs: pd.DataFrame) -> None:
    doc.heading(2, "Failed runs")
    if runs.empty or "status" not in runs:
        doc.para("No runs.")
        return
    failed = runs[runs["status"] != "ok"]
    if failed.empty:
        doc.para("None: every run finished.")
        return
    failed = _identity_columns(failed)
    doc.para(f"{len(failed)} run(s) failed; they are left out of every table above.")
    doc.table(
        ["model", "seed", "dataset", "run id", "error"],
        [
            [
                str(r["label"]),
                str(r["seed"]),
                f"{r['dataset']} / {r['split']}",
                str(r["run_id"]),
                str(r.get("error") or ""),
            ]
            for r in failed.to_dict("records")
        ],
        numeric=[False, True, False, False, False],
    )


def _quality_section(
    doc: _Doc, quality: pd.DataFrame, metrics: Sequence[str], level: float
) -> dict[str, str]:
    """The quality table; returns metric -> best label."""
    labels = list(dict.fromkeys(quality["label"]))
    best: dict[str, str] = {}
    best_means: dict[str, float] = {}
    for metric in metrics:
        rows = quality[quality["metric"] == metric]
        if rows.empty:
            continue
        top = rows["mean"].max()
        best_means[metric] = top
        best[metric] = str(rows.loc[rows["mean"].idxmax(), "label"])
    table = []
    for label in labels:
        rows = quality[quality["label"] == label].set_index("metric")
        first = rows.iloc[0]
        cells = [label, str(int(first["seeds"])), f"{int(first['users']):,}"]
        for metric in metrics:
            if metric not in rows.index:
                cells.append("-")
                continue
            r = rows.loc[metric]
            half = max(r["mean"] - r["low"], r["high"] - r["mean"])
            text = f"{r['mean']:.4f} ± {half:.4f}"
            is_best = metric in best_means and r["mean"] >= best_means[metric] - 1e-12
            cells.append(Strong(text) if is_best else text)
        table.append(cells)
    doc.para(
        f"Mean over users ± {level:.0%} confidence interval; bold = best mean of the "
        "column (shared when equal)."
    )
    doc.table(
        ["model", "seeds", "users", *metrics],
        table,
        numeric=[False, True, True, *[True] * len(metrics)],
    )
    return best


def _paired_cells(
    paired: pd.DataFrame,
    labels: Sequence[str],
    metrics: Sequence[str],
    references: Mapping[str, str],
) -> list[list[str]]:
    index = {(r["label"], r["metric"]): r for r in paired.to_dict("records")}
    rows = []
    for label in labels:
        cells = [label]
        for metric in metrics:
            if references.get(metric) == label:
                cells.append("reference")
                continue
            r = index.get((label, metric))
            if r is None:
                cells.append("-")
                continue
            mark = "*" if np.isfinite(r["wilcoxon_holm"]) and r["wilcoxon_holm"] < 0.05 else ""
            cells.append(f"{r['mean_diff']:+.4f} (p {_fmt_p(r['wilcoxon_holm'])}){mark}")
        rows.append(cells)
    return rows


def _paired_section(
    doc: _Doc,
    means: Mapping[str, pd.DataFrame],
    labels: Sequence[str],
    metrics: Sequence[str],
    best: Mapping[str, str],
    popularity: str | None,
    level: float,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    doc.heading(4, "Paired comparisons")
    doc.para(
        "Cell: mean per-user difference (model minus reference) and its Wilcoxon "
        "signed-rank p-value, Holm-corrected over the models compared with the same "
        "reference on that metric; * = significant at 0.05 after correction."
    )
    frames = []
    vs_best = paired_summary(means, dict(best), level=level, n_boot=n_boot, seed=seed)
    frames.append(vs_best.assign(against="best"))
    doc.para(
        "Against the best model of each column ("
        + ", ".join(f"{m}: {best[m]}" for m in metrics if m in best)
        + "):"
    )
    doc.table(
        ["model", *metrics],
        _paired_cells(vs_best, labels, metrics, best),
        numeric=[False, *[True] * len(metrics)],
    )
    if popularity is None:
        doc.para(
            "No popularity baseline in this group: add `popularity` to the run, it is "
            "a strong baseline under per-user metrics."
        )
    else:
        refs = {m: popularity for m in metrics}
        vs_pop = paired_summary(means, refs, level=level, n_boot=n_boot, seed=seed)
        frames.append(vs_pop.assign(against="popularity"))
        doc.para(f"Against the popularity baseline ({popularity}):")
        doc.table(
            ["model", *metrics],
            _paired_cells(vs_pop, [x for x in labels if x != popularity], metrics, refs),
            numeric=[False, *[True] * len(metrics)],
        )
    return pd.concat(frames, ignore_index=True)


def _cost_section(doc: _Doc, cost: pd.DataFrame) -> None:
    doc.heading(4, "Cost")
    doc.para(
        "Means over seeds (± seed-to-seed standard deviation of the fit time), and the "
        "median fit time, which one noisy run cannot move much on a shared machine. Peak "
        "memory is the resident set of the whole process during fit and evaluation "
        "(interpreter and frameworks included); growth is the increase over the run."
    )
    rows = []
    for label, r in cost.iterrows():
        fit = _fmt_seconds(r["fit_seconds"])
        if np.isfinite(r["fit_seconds_std"]):
            fit += f" ± {_fmt_seconds(r['fit_seconds_std'])}"
        rows.append(
            [
                str(label),
                str(int(r["seeds"])),
                _fmt_num(r["epochs"]),
                fit,
                _fmt_seconds(r["fit_seconds_median"]),
                _fmt_seconds(r["seconds_per_epoch"]),
                _fmt_seconds(r["eval_seconds"]),
                _fmt_num(round(r["peak_rss_mb"])) if np.isfinite(r["peak_rss_mb"]) else "-",
                _fmt_num(round(r["rss_growth_mb"])) if np.isfinite(r["rss_growth_mb"]) else "-",
            ]
        )
    doc.table(
        [
            "model",
            "seeds",
            "epochs",
            "fit s",
            "median fit s",
            "s / epoch",
            "eval s",
            "peak RSS MiB",
            "RSS growth MiB",
        ],
        rows,
        numeric=[False, *[True] * 8],
    )


def _scale_sections(
    doc: _Doc, groups: list[DatasetGroup], styles: Mapping[str, dict], figures: list[_Figure]
) -> None:
    families: dict[tuple, list[DatasetGroup]] = {}
    for group in groups:
        families.setdefault(group.family, []).append(group)
    scale = {k: v for k, v in families.items() if len({g.size("train_positives") for g in v}) >= 2}
    if not scale:
        return
    doc.heading(2, "Scaling with dataset size")
    for family, members in scale.items():
        rows = []
        for group in members:
            cost = cost_summary(group.runs)
            for label, r in cost.iterrows():
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
        title = f"{family[0]} / {family[1]}"
        doc.heading(3, f"Scale suite: {title}")
        sizes = sorted(table["train_positives"].unique())
        out_rows = []
        for label, part in table.groupby("label", sort=False):
            part = part.set_index("train_positives")
            cells = [str(label)]
            for size in sizes:
                if size in part.index:
                    r = part.loc[size]
                    cells.append(f"{_fmt_seconds(r['fit_seconds'])} s / {r['peak_rss_mb']:.0f} MiB")
                else:
                    cells.append("-")
            usable = part[part["fit_seconds"] > 0]
            if len(usable) >= 2:
                slope = np.polyfit(
                    np.log(usable.index.to_numpy(dtype=float)),
                    np.log(usable["fit_seconds"].to_numpy(dtype=float)),
                    1,
                )[0]
                cells.append(f"{slope:.2f}")
            else:
                cells.append("-")
            out_rows.append(cells)
        size_names = []
        for size in sizes:
            first = table[table["train_positives"] == size].iloc[0]
            size_names.append(
                f"{int(size):,} positives ({int(first['num_users']):,} users, "
                f"{int(first['num_items']):,} items)"
            )
        doc.para(
            "Cell: mean fit seconds / peak resident memory. Exponent: slope of log fit "
            "time against log train positives (1 = linear)."
        )
        doc.table(
            ["model", *size_names, "fit-time exponent"],
            out_rows,
            numeric=[False, *[True] * (len(sizes) + 1)],
        )
        fig = _Figure(
            f"scale-{_slug(title)}.png",
            _png(scale_figure(table, styles, title)),
            f"Fit time, time per epoch, evaluation time and peak memory against "
            f"train positives, log-log axes ({title}).",
        )
        figures.append(fig)
        doc.figure(fig)


# -- the report ---------------------------------------------------------------------
@dataclass
class Report:
    """A rendered report, not yet written.

    Attributes
    ----------
    markdown : str
        ``report.md`` (links figures under ``figures/``).
    html : str
        ``report.html`` (figures embedded).
    figures : dict of str to bytes
        PNG file name -> content.
    quality : pandas.DataFrame
        :func:`quality_summary` rows of every group, with a ``group`` column.
    paired : pandas.DataFrame
        :func:`paired_summary` rows of every group, with ``group`` and
        ``against`` (``"best"`` or ``"popularity"``) and ``section`` (the
        group's number in the report) columns.
    """

    markdown: str
    html: str
    figures: dict[str, bytes]
    quality: pd.DataFrame
    paired: pd.DataFrame


def _popularity_label(runs: pd.DataFrame) -> str | None:
    pop = runs[runs["model"].astype(str) == "popularity"]
    if pop.empty:
        return None
    labels = pop["label"].astype(str).drop_duplicates().tolist()
    return "popularity" if "popularity" in labels else labels[0]


def build_report(
    results_dir: str | Path, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> Report:
    """Read a results folder and render its report (nothing is written).

    Parameters
    ----------
    results_dir : str or Path
        A folder written by ``rsbench run``.
    level : float
        Confidence level of every interval.
    n_boot : int
        Bootstrap resamples per interval.
    seed : int
        Seed of every bootstrap, so the report is reproducible.

    Returns
    -------
    Report

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
    if not per_user.empty:
        per_user = per_user.assign(run_id=per_user["run_id"].astype(str))
    if not curves.empty:
        curves = curves.assign(run_id=curves["run_id"].astype(str))
    groups = dataset_groups(runs)
    all_labels = list(dict.fromkeys(runs["label"].astype(str))) if "label" in runs else []
    styles = _styles(all_labels)

    doc = _Doc()
    name = manifest.get("experiment") or folder.name
    title = f"rsbench report: {name}"
    doc.heading(1, title)
    n_ok = int((runs["status"] == "ok").sum()) if "status" in runs else 0
    doc.para(
        f"Results folder {folder.name}: {len(runs)} run(s), {n_ok} successful, "
        f"{len(runs) - n_ok} failed, over {len(groups)} dataset group(s)."
    )
    _environment_section(doc, manifest, groups)
    _protocol_section(doc, runs, level, n_boot, seed)

    figures: list[_Figure] = []
    quality_frames, paired_frames = [], []
    doc.heading(2, "Results by dataset")
    if not groups:
        doc.para("No successful runs: nothing to summarise.")
    for number, group in enumerate(groups, start=1):
        group_title = group.title()
        doc.heading(3, f"{number}. {group_title}")
        doc.para(group.describe())
        metrics = [m for m in MAIN_METRICS if m in group.runs]
        labels = list(dict.fromkeys(group.runs["label"].astype(str)))
        quality = quality_summary(
            group.runs, per_user, metrics=metrics, level=level, n_boot=n_boot, seed=seed
        )
        quality_frames.append(quality.assign(group=group_title))
        doc.heading(4, "Quality")
        if quality.empty:
            doc.para("No per-user rows for these runs (per_user.parquet missing?).")
            best: dict[str, str] = {}
        else:
            best = _quality_section(doc, quality, metrics, level)
            means = {
                label: user_means(per_user, part["run_id"].astype(str).tolist(), metrics)
                for label, part in group.runs.groupby("label", sort=False)
            }
            if len(labels) > 1:
                paired = _paired_section(
                    doc,
                    means,
                    labels,
                    metrics,
                    best,
                    _popularity_label(group.runs),
                    level,
                    n_boot,
                    seed,
                )
                paired_frames.append(paired.assign(group=group_title, section=number))
        cost = cost_summary(group.runs)
        _cost_section(doc, cost)

        slug = f"{number:02d}-{_slug(group.key[0])}-{_slug(group.key[6][:8])}"
        ids = set(group.runs["run_id"].astype(str))
        group_curves = curves[curves["run_id"].isin(ids)] if not curves.empty else curves
        curve_fig = curves_figure(group_curves, styles, group_title)
        doc.heading(4, "Learning curves")
        if curve_fig is None:
            doc.para("No learning curves recorded (run without --no-curves to get them).")
        else:
            fig = _Figure(
                f"curves-{slug}.png",
                _png(curve_fig),
                f"Test AUC and precision@10 against epoch and against cumulative fit "
                f"seconds, mean over seeds ({group_title}).",
            )
            figures.append(fig)
            doc.figure(fig)
        pareto_metrics = [m for m in PARETO_METRICS if m in group.runs]
        if pareto_metrics:
            points = group.runs.assign(
                **{
                    c: pd.to_numeric(group.runs[c], errors="coerce")
                    for c in ["fit_seconds", *pareto_metrics]
                }
            )
            points = points.groupby("label", sort=False)[["fit_seconds", *pareto_metrics]].mean()
            doc.heading(4, "Quality versus fit time")
            front = points.index[
                pareto_front(points["fit_seconds"].to_numpy(), points[pareto_metrics[0]].to_numpy())
            ]
            doc.para(
                f"Pareto front on {pareto_metrics[0]} against fit seconds (no other model "
                f"is both faster and better): {', '.join(front)}."
            )
            fig = _Figure(
                f"pareto-{slug}.png",
                _png(pareto_figure(points, styles, group_title)),
                f"Mean test quality against mean fit seconds (log axis); the dashed "
                f"line is the Pareto front ({group_title}).",
            )
            figures.append(fig)
            doc.figure(fig)

    _scale_sections(doc, groups, styles, figures)
    # -- tuning section (issue 14; the integrator moves this hook into bench/results/) --
    from bench.tuning_report import tuning_section

    tuning_section(
        doc,
        folder,
        runs,
        per_user,
        manifest,
        lambda name, fig, caption: (
            figures.append(_Figure(name, _png(fig), caption)),
            doc.figure(figures[-1]),
        ),
        level=level,
        n_boot=n_boot,
        seed=seed,
    )
    # -- end of the tuning hook --
    _notes_section(doc, runs)
    _failed_section(doc, runs)
    paired_all = pd.concat(paired_frames, ignore_index=True) if paired_frames else pd.DataFrame()
    if not paired_all.empty:
        doc.heading(2, "Appendix: paired comparisons in full")
        doc.para(
            f"Section: the numbered dataset group above. Differences are model minus "
            f"reference with their {level:.0%} bootstrap interval; raw and Holm-corrected "
            "p-values of both tests."
        )
        doc.table(
            [
                "section",
                "against",
                "model",
                "reference",
                "metric",
                "difference",
                "interval",
                "t p",
                "t p (Holm)",
                "Wilcoxon p",
                "Wilcoxon p (Holm)",
                "users",
            ],
            [
                [
                    str(r["section"]),
                    r["against"],
                    r["label"],
                    r["reference"],
                    r["metric"],
                    f"{r['mean_diff']:+.4f}",
                    f"[{r['low']:+.4f}, {r['high']:+.4f}]",
                    _fmt_p(r["t_pvalue"]),
                    _fmt_p(r["t_holm"]),
                    _fmt_p(r["wilcoxon_pvalue"]),
                    _fmt_p(r["wilcoxon_holm"]),
                    f"{r['n']:,}",
                ]
                for r in paired_all.to_dict("records")
            ],
            numeric=[False] * 5 + [True] * 7,
        )
    quality_all = pd.concat(quality_frames, ignore_index=True) if quality_frames else pd.DataFrame()
    return Report(
        markdown=_render_markdown(doc),
        html=_render_html(doc, title),
        figures={f.name: f.png for f in figures},
        quality=quality_all,
        paired=paired_all,
    )


def write_report(
    results_dir: str | Path, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into a results folder.

    Every file is written atomically; figures of an earlier report that this
    one no longer makes are removed (only files named like report figures).
    The result tables themselves are never touched.

    Parameters
    ----------
    results_dir : str or Path
        A folder written by ``rsbench run``.
    level, n_boot, seed
        See :func:`build_report`.

    Returns
    -------
    list of Path
        ``report.md``, ``report.html``, then every figure written.
    """
    folder = Path(results_dir)
    report = build_report(folder, level=level, n_boot=n_boot, seed=seed)
    figure_dir = folder / FIGURES
    written = []
    for name, png in report.figures.items():
        written.append(atomic_write_bytes(figure_dir / name, png))
    if figure_dir.is_dir():
        for stale in figure_dir.iterdir():
            if _FIGURE_NAME.match(stale.name) and stale.name not in report.figures:
                stale.unlink()
    md = atomic_write_text(folder / "report.md", report.markdown)
    page = atomic_write_text(folder / "report.html", report.html)
    log.info("report of %s: %d figure(s)", folder, len(written))
    return [md, page, *written]
