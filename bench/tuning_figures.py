"""The tuning figure: best-so-far validation value against trials and against seconds.

The only module of the tuning code that imports matplotlib (lazily, without pyplot).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["best_so_far_figure"]


def best_so_far_figure(curves: pd.DataFrame, objective: str, title: str = ""):
    """Two panels: best validation ``objective`` so far by trial (left) and by seconds (right).

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`bench.tuning_tables.best_so_far` rows (``model, index, seconds, best``).
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
