"""Figures of the report: learning curves, quality against fit time, cost against size.

The only module of rsbench that imports matplotlib (lazily, inside each
function, on a bare ``Figure``: no pyplot, no global state). Figures draw
what :mod:`bench.results.tables` computed; they compute no statistic.

Readability rules: every series has its own colour, marker *and* line style;
models without a curve over epochs (popularity, EASE, random...) are drawn as
labelled horizontal reference lines; y-axes span the band where the curves
differ (a reference far below it is named in the panel instead of
flattening the band); x-axes of fit time are logarithmic.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "curves_figure",
    "pareto_figure",
    "png",
    "scale_figure",
    "styles",
]

_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = "osD^vP*Xh<>p"
_TITLES = {"auc": "AUC"}


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png(fig) -> bytes:
    """The figure as PNG bytes (100 dpi, no timestamp metadata: reproducible)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A distinct (colour, marker, line style) per label: no two labels share all three.

    Colours cycle through tab10; the marker and the line style change with
    each cycle, so labels ``i`` and ``i + 10`` differ in both.
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    out = {}
    for i, label in enumerate(labels):
        cycle = i // cmap.N
        out[label] = {
            "color": cmap(i % cmap.N),
            "marker": _MARKERS[(i + cycle) % len(_MARKERS)],
            "linestyle": _LINESTYLES[(i + cycle) % len(_LINESTYLES)],
        }
    return out


def _title(metric: str) -> str:
    return _TITLES.get(metric, metric)


def _family(label: str) -> str:
    model = label.split(":", 1)[0]
    return model.split("-", 1)[0]


def _band(values: np.ndarray) -> tuple[float, float]:
    """A y-range showing where curves differ: from the 5th percentile to the maximum."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(np.quantile(values, 0.05)), float(values.max())
    pad = max(0.08 * (high - low), 1e-3)
    return low - pad, high + pad


def curves_figure(
    curves: pd.DataFrame,
    metric: str,
    label_styles: Mapping[str, dict] | None = None,
    title: str = "",
):
    """Learning curves of one metric: a row of panels per model family, by epoch and by fit time.

    Parameters
    ----------
    curves : pandas.DataFrame
        ``curves.csv`` rows (``label, epoch, fit_seconds, <metric>``); seeds
        are averaged per label and epoch.
    metric : str
        The metric column to draw.
    label_styles : mapping, optional
        Label -> ``color``/``marker``/``linestyle`` (default :func:`styles`).
    title : str
        Appended to the figure title.

    Returns
    -------
    matplotlib.figure.Figure or None
        ``None`` when no label has a curve over two or more epochs.
    """
    if curves.empty or metric not in curves:
        return None
    frame = curves.copy()
    for column in ("epoch", "fit_seconds", metric):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    labels = list(dict.fromkeys(frame["label"].astype(str)))
    label_styles = label_styles or styles(labels)
    mean = frame.groupby(["label", "epoch"], sort=False)[["fit_seconds", metric]].mean()
    series = {label: mean.loc[label].sort_index() for label in labels}
    curved = [label for label in labels if len(series[label]) >= 2]
    if not curved:
        return None
    references = {
        label: float(series[label][metric].iloc[-1]) for label in labels if label not in curved
    }
    families: dict[str, list[str]] = {}
    for label in curved:
        families.setdefault(_family(label), []).append(label)
    hidden: dict[str, float] = {}
    bands = {}
    for family, members in families.items():
        # Each family's own band: a slow starter elsewhere does not flatten this row.
        low, high = _band(np.concatenate([series[label][metric].to_numpy() for label in members]))
        near = [v for v in references.values() if low - 0.25 * (high - low) <= v <= high]
        low, high = min([low, *near]), max([high, *near])
        bands[family] = (low, high)
        hidden.update({k: v for k, v in references.items() if not low <= v <= high})

    fig = _new_figure(11, 2.7 * len(families) + 0.8)
    axes = fig.subplots(len(families), 2, squeeze=False, sharey="row")
    for row, (family, members) in enumerate(families.items()):
        for col, x_name in enumerate(("epoch", "fit_seconds")):
            ax = axes[row, col]
            for label in members:
                data = series[label]
                x = (
                    data.index.to_numpy()
                    if x_name == "epoch"
                    else data["fit_seconds"].clip(lower=1e-4)
                )
                style = label_styles.get(label, {})
                ax.plot(
                    x,
                    data[metric],
                    label=label,
                    markersize=4,
                    linewidth=1.4,
                    markevery=max(1, len(data) // 12),
                    **style,
                )
            low, high = bands[family]
            for ref, value in references.items():
                if not low <= value <= high:
                    continue
                ax.axhline(value, color="0.45", linewidth=1, linestyle=(0, (4, 3)), zorder=1)
                ax.annotate(
                    ref,
                    (1.0, value),
                    xycoords=("axes fraction", "data"),
                    xytext=(-3, 2),
                    textcoords="offset points",
                    ha="right",
                    va="bottom",
                    fontsize="x-small",
                    color="0.3",
                )
            ax.set_ylim(low, high)
            ax.grid(alpha=0.3)
            if x_name == "fit_seconds":
                ax.set_xscale("log")
                ax.set_xlabel("cumulative fit time (s, log scale; evaluation excluded)")
            else:
                ax.set_xlabel("epoch")
                ax.set_ylabel(f"test {_title(metric)}")
            ax.set_title(
                f"{family} models, by {'epoch' if col == 0 else 'fit time'}", fontsize="medium"
            )
            if col == 0:
                ax.legend(fontsize="x-small", loc="lower right", frameon=True, framealpha=0.85)
    note = ""
    if hidden:
        note = "; outside some panels: " + ", ".join(f"{k} {v:.3f}" for k, v in hidden.items())
    fig.suptitle(
        f"Learning curves of test {_title(metric)} (mean over seeds): {title}\n"
        f"dashed grey lines: models without epochs{note}",
        fontsize="medium",
    )
    return fig


def _place_labels(ys: np.ndarray, min_gap: float) -> np.ndarray:
    """Vertical positions near ``ys`` that are at least ``min_gap`` apart (order kept)."""
    order = np.argsort(ys)
    placed = ys[order].astype(float).copy()
    for i in range(1, placed.size):
        placed[i] = max(placed[i], placed[i - 1] + min_gap)
    # Centre the shifted stack on the original positions.
    placed -= (placed - ys[order]).mean() / 2 if placed.size else 0.0
    for i in range(1, placed.size):
        placed[i] = max(placed[i], placed[i - 1] + min_gap)
    out = np.empty_like(placed)
    out[order] = placed
    return out


def pareto_figure(
    points: pd.DataFrame,
    metrics: Sequence[str],
    label_styles: Mapping[str, dict] | None = None,
    title: str = "",
):
    """Quality against mean fit seconds (log x) with the Pareto front labelled, the rest keyed.

    Parameters
    ----------
    points : pandas.DataFrame
        :func:`bench.results.tables.pareto_points` (indexed by label).
    metrics : sequence of str
        One panel per metric.
    label_styles, title
        As in :func:`curves_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = [str(label) for label in points.index]
    label_styles = label_styles or styles(labels)
    fig = _new_figure(11, 5.8)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    cost = points["fit_seconds"].clip(lower=1e-4).to_numpy()
    for ax, metric in zip(axes, metrics):
        quality = points[metric].to_numpy()
        front = points[f"front_{metric}"].to_numpy(dtype=bool)
        for label, x, y, on_front in zip(labels, cost, quality, front):
            style = {k: v for k, v in label_styles.get(label, {}).items() if k != "linestyle"}
            ax.scatter(
                [x],
                [y],
                s=60 if on_front else 36,
                label=label,
                zorder=3,
                edgecolors="black" if on_front else "none",
                **style,
            )
        order = np.argsort(cost[front])
        ax.plot(
            cost[front][order],
            quality[front][order],
            linestyle="--",
            color="black",
            drawstyle="steps-post",
            linewidth=1,
            zorder=2,
        )
        ax.set_xscale("log")
        # A model far below all others (random) does not flatten them: drop the lowest
        # values while their gap to the next is over half of what remains.
        ordered = np.sort(quality[np.isfinite(quality)])
        while ordered.size > 2 and ordered[1] - ordered[0] > 0.5 * (ordered[-1] - ordered[0]):
            ordered = ordered[1:]
        low, high = float(ordered[0]), float(ordered[-1])
        pad = max(0.06 * (high - low), 1e-3)
        low, high = low - pad, high + pad
        ax.set_ylim(low, high + 0.12 * (high - low))
        below = [f"{name} {y:.3f}" for name, y in zip(labels, quality) if y < low]
        if below:
            ax.text(
                0.01,
                0.01,
                "below the axis: " + ", ".join(below),
                transform=ax.transAxes,
                fontsize="x-small",
                color="0.3",
                va="bottom",
            )
        # Front labels in a column right of their points, spread so that none overlap.
        fy = quality[front]
        gap = 0.045 * (ax.get_ylim()[1] - ax.get_ylim()[0])
        placed = _place_labels(fy, gap)
        for label, x, y, ty in zip(np.asarray(labels)[front], cost[front], fy, placed):
            note = ax.annotate(
                label,
                (x, y),
                xytext=(x * 1.6, ty),
                textcoords="data",
                fontsize="x-small",
                va="center",
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6},
            )
            note.set_in_layout(False)  # labels never squeeze the axes
        ax.set(
            xlabel="mean fit time (s, log scale)",
            ylabel=f"test {_title(metric)} (mean over users)",
            title=f"{_title(metric)} versus fit time",
        )
        ax.grid(alpha=0.3, which="both")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncol=min(6, len(handles)),
        fontsize="x-small",
        frameon=False,
    )
    fig.suptitle(
        f"Quality versus fit time: {title}\nlabelled, black-edged: the Pareto front (dashed: no "
        "model is both faster and better); every model is in the key",
        fontsize="medium",
    )
    return fig


def scale_figure(
    table: pd.DataFrame,
    columns: Sequence[tuple[str, str]],
    label_styles: Mapping[str, dict] | None = None,
    title: str = "",
    exponents: pd.DataFrame | None = None,
):
    """Cost columns against train positives (log-log), one panel per column.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per label and dataset size: ``label, train_positives`` and ``columns``.
    columns : sequence of (column, axis name)
    label_styles, title
        As in :func:`curves_figure`.
    exponents : pandas.DataFrame, optional
        Indexed by label, one column per cost column: each panel's key then
        gives every model's exponent (the slope of its line).
    """
    from matplotlib.ticker import LogFormatter

    label_styles = label_styles or styles(list(dict.fromkeys(table["label"].astype(str))))
    fig = _new_figure(11, 8.4)
    axes = fig.subplots(2, 2).ravel()
    for label, rows in table.groupby("label", sort=False):
        rows = rows.sort_values("train_positives")
        for ax, (column, _) in zip(axes, columns):
            values = rows[column].where(rows[column] > 0)
            if not values.notna().any():
                continue  # e.g. no sampler: nothing to draw in this panel
            shown = str(label)
            if exponents is not None and label in exponents.index:
                slope = exponents.loc[label, column]
                if np.isfinite(slope):
                    shown = f"{label} ({slope:.2f})"
            ax.plot(
                rows["train_positives"],
                values,
                label=shown,
                markersize=5,
                linewidth=1.4,
                **label_styles.get(label, {}),
            )
    for ax, (_, name) in zip(axes, columns):
        ax.set(
            xscale="log",
            yscale="log",
            title=f"{name.split(' (')[0]} by dataset size",
            xlabel="train positives (log scale)",
            ylabel=f"{name[:-1]}, log scale)",
        )
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(LogFormatter())
            axis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        ax.grid(alpha=0.3, which="both")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            # One key per panel: the exponent in brackets is that panel's slope.
            ax.legend(fontsize="x-small", frameon=False, loc="upper left")
    fig.suptitle(
        f"Cost against dataset size (mean over seeds; exponent in brackets): {title}"
    )
    return fig


def best_so_far_figure(curves: pd.DataFrame, objective: str, title: str = ""):
    """Two panels: best validation ``objective`` so far by trial (left) and by seconds (right).

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`bench.results.tuning.best_so_far` rows (``model, index, seconds, best``).
    objective : str
        The metric's name, for the axis label.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure or None
        ``None`` when there is nothing to draw.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    curves = curves.dropna(subset=["best"])
    if curves.empty:
        return None
    models = list(dict.fromkeys(curves["model"]))
    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    by_trial, by_seconds = fig.subplots(1, 2, sharey=True)
    for i, model in enumerate(models):
        part = curves[curves["model"] == model]
        style = {"color": cmap(i % cmap.N), "linewidth": 1.6, "where": "post", "label": model}
        by_trial.step(part["index"], part["best"], **style)
        # Seconds start at 0 for the first trial's start.
        seconds = part["seconds"].clip(lower=1e-3)
        by_seconds.step(seconds, part["best"], **style)
        last = part.iloc[-1]
        by_trial.plot([last["index"]], [last["best"]], "o", color=style["color"], markersize=4)
        by_seconds.plot(
            [max(last["seconds"], 1e-3)], [last["best"]], "o", color=style["color"], markersize=4
        )
    by_trial.set_xscale("log")
    by_seconds.set_xscale("log")
    by_trial.set_xlabel("trials (counted; log scale)")
    by_seconds.set_xlabel("seconds of fit + validation evaluation (cumulative; log scale)")
    by_trial.set_ylabel(f"best validation {objective} so far")
    for axes in (by_trial, by_seconds):
        axes.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize="medium")
    handles, labels = by_trial.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=min(4, len(handles)),
        fontsize="small",
        frameon=False,
    )
    return fig
