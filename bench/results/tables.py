"""Every statistic of the results wing: run identity, dataset groups, per-user means, quality,
paired, cost, activity and beyond-accuracy summaries, preset differences and the Pareto front.

The report only formats these tables, the regression gate compares them and
the CLI summary prints them; none of them recomputes anything here.

Statistical conventions (stated once, in the report's protocol section)
-----------------------------------------------------------------------
* **Unit of resampling: the user.** A label's per-user values are first
  averaged over its seeds (so every user counts once), then summarised.
* **Quality intervals**: percentile bootstrap over users (``n_boot``
  resamples drawn as one count matrix and applied with one matrix product),
  or, above :data:`NORMAL_ABOVE` users, the normal approximation
  ``mean +- z * sd / sqrt(n)`` (the bootstrap's limit; at that size the two
  agree to a small fraction of the interval width, checked in the tests).
* **Paired comparisons** (one definition, :func:`paired_family`, for the
  main tables and the tuning section): the mean per-user difference and the
  two-sided paired t-test of that mean, Holm-corrected over a family (the
  models compared with the same reference on the same metric; in the tuning
  section, the models' tuned-minus-preset differences on one metric). A
  comparison is *significant* exactly when the corrected p-value is below
  :data:`ALPHA`. Its paired ``t`` interval is built at the level Holm tested
  it at (rejected ``k``-th of ``m``: ``1 - ALPHA / (m - k + 1)``; kept:
  ``1 - ALPHA / (m - R)``, ``R`` rejected), so it excludes zero exactly when
  the comparison is significant. Each such interval contains the plain
  ``1 - ALPHA`` interval; they are not simultaneous intervals. The Wilcoxon
  signed-rank test (a median shift) is a labelled secondary column with its
  own Holm correction.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from metrics.registry import METRICS, MetricRegistry

__all__ = [
    "ALPHA",
    "NORMAL_ABOVE",
    "SCALING_LIMIT",
    "DatasetGroup",
    "ProtocolKey",
    "activity_breakdown",
    "best_labels",
    "beyond_summary",
    "cost_summary",
    "dataset_groups",
    "headline_metrics",
    "means_by_label",
    "model_facts",
    "paired_family",
    "paired_summary",
    "paired_tables",
    "pareto_front",
    "pareto_points",
    "preset_differences",
    "quality_summary",
    "reference_label",
    "reference_runs",
    "run_identity",
    "scaling_exponent",
    "timing_grade_runs",
    "user_means",
]

ALPHA = 0.05
#: Above this many users a quality interval uses the normal approximation.
NORMAL_ABOVE = 20_000
_BOOT_CELLS = 1 << 23  # resample-count cells per chunk (bounds memory)


# -- run identity -------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class ProtocolKey:
    """What makes runs comparable: the dataset, its variant and the evaluation protocol.

    Attributes
    ----------
    dataset, split : str
    min_rating : str
        ``"4"``, ``"none"``...
    dataset_options : str
        Canonical JSON of the dataset options.
    ties, exclude : str
        Tie and exclusion policies.
    stage : str
        ``"test"`` or ``"validation"``.
    sha256 : str
        Content hash of the dataset ("" when not part of the key).
    """

    dataset: str
    split: str
    min_rating: str
    dataset_options: str
    ties: str
    exclude: str
    stage: str = "test"
    sha256: str = ""

    @property
    def options(self) -> dict[str, Any]:
        """The dataset options as a dict."""
        return json.loads(self.dataset_options or "{}")

    @property
    def family(self) -> tuple[str, ...]:
        """The key without options and hash: the groups of one family differ only in size."""
        return (self.dataset, self.split, self.min_rating, self.ties, self.exclude, self.stage)

    def title(self) -> str:
        """``dataset / split / ratings >= m (options)`` for headings."""
        text = f"{self.dataset} / {self.split}"
        if self.min_rating not in ("none", "nan", ""):
            text += f" / ratings >= {self.min_rating}"
        if self.stage != "test":
            text += f" / {self.stage}"
        if self.options:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(self.options.items())) + ")"
        return text

    def text(self) -> str:
        """One canonical line naming every field but the hash (the gate's dataset column)."""
        text = f"{self.dataset} split={self.split} min_rating={self.min_rating}"
        if self.options:
            text += " options=" + json.dumps(self.options, sort_keys=True, separators=(",", ":"))
        if self.stage != "test":
            text += f" stage={self.stage}"
        return text + f" ties={self.ties} exclude={self.exclude}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def run_identity(row: Mapping[str, Any]) -> ProtocolKey:
    """The :class:`ProtocolKey` of one ``runs.csv`` row (its ``spec`` first, columns second)."""
    spec: dict[str, Any] = {}
    raw = row.get("spec")
    if isinstance(raw, str) and raw:
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError:
            spec = {}
        if not isinstance(spec, dict):
            spec = {}

    def pick(key: str, default: Any) -> Any:
        value = spec.get(key, row.get(key, default))
        return default if _missing(value) else value

    min_rating = pick("min_rating", None)
    sha = row.get("dataset_sha256")
    return ProtocolKey(
        dataset=str(pick("dataset", "?")),
        split=str(pick("split", "?")),
        min_rating="none" if min_rating is None else f"{float(min_rating):g}",
        dataset_options=json.dumps(spec.get("dataset_options") or {}, sort_keys=True),
        ties=str(pick("ties", "expected")),
        exclude=str(pick("exclude", "train-positives")),
        stage=str(pick("stage", "test")),
        sha256="" if _missing(sha) else str(sha),
    )


@dataclass(frozen=True)
class DatasetGroup:
    """Successful runs that share one :class:`ProtocolKey` (dataset hash included).

    Attributes
    ----------
    key : ProtocolKey
    runs : pandas.DataFrame
        Their ``runs.csv`` rows.
    """

    key: ProtocolKey
    runs: pd.DataFrame

    def size(self, column: str) -> int | None:
        """A size column (``num_users``, ``train_positives``...) of the group's runs."""
        if column not in self.runs:
            return None
        values = pd.to_numeric(self.runs[column], errors="coerce").dropna()
        return int(values.iloc[0]) if len(values) else None

    def title(self) -> str:
        """See :meth:`ProtocolKey.title`."""
        return self.key.title()

    @property
    def labels(self) -> list[str]:
        """Labels in order of first appearance."""
        return list(dict.fromkeys(self.runs["label"].astype(str)))


def dataset_groups(runs: pd.DataFrame) -> list[DatasetGroup]:
    """Split the successful runs into :class:`DatasetGroup` objects, in order of appearance."""
    if runs.empty or "status" not in runs:
        return []
    ok = runs[runs["status"] == "ok"].copy()
    if ok.empty:
        return []
    ok["run_id"] = ok["run_id"].astype(str)
    ok["label"] = ok["label"].astype(str)
    keys = [run_identity(row) for row in ok.to_dict("records")]
    order: dict[ProtocolKey, list[int]] = {}
    for position, key in enumerate(keys):
        order.setdefault(key, []).append(position)
    return [DatasetGroup(key, ok.iloc[rows].reset_index(drop=True)) for key, rows in order.items()]


def headline_metrics(
    columns: Sequence[str], *, registry: MetricRegistry = METRICS, k: int = 10
) -> list[str]:
    """The headline accuracy metrics among ``columns`` (at cut-off ``k`` when present)."""
    chosen = [
        c
        for c in registry.select(columns, headline=True, k=k, scope="user")
        if registry.metric_of(c)[0].kind == "accuracy"
    ]
    if chosen or k is None:
        return chosen
    return [
        c
        for c in registry.select(columns, headline=True, scope="user")
        if registry.metric_of(c)[0].kind == "accuracy"
    ]


def reference_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the reference baseline: their model class declares ``reference = True``.

    The runner records that class fact in the ``reference`` column of every run row.
    A row without it (a folder written before the column existed, such as the
    committed baselines) falls back to the model named ``popularity``, the only
    reference rsbench shipped then. This is the one place that name is tested.
    """
    flags = runs["reference"] if "reference" in runs else pd.Series(pd.NA, index=runs.index)
    models = runs["model"] if "model" in runs else pd.Series("", index=runs.index)
    mask = [
        model == "popularity" if _missing(flag) or flag is pd.NA else _true(flag)
        for flag, model in zip(flags.tolist(), models.astype(str).tolist())
    ]
    return runs[np.asarray(mask, dtype=bool)]


def _true(value: Any) -> bool:
    # From CSV: booleans or "True"/"False" (as in the other fact columns).
    return str(value).strip().lower() in ("true", "1", "1.0")


def reference_label(runs: pd.DataFrame) -> str | None:
    """The label of the reference baseline among ``runs`` (a bare model name first), if any."""
    reference = reference_runs(runs)
    labels = reference["label"].astype(str).drop_duplicates().tolist()
    if not labels:
        return None
    models = set(reference["model"].astype(str)) if "model" in reference else set()
    bare = [label for label in labels if label in models]
    return bare[0] if bare else labels[0]


# -- per-user means -----------------------------------------------------------------
def user_means(
    per_user: pd.DataFrame, run_ids: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Per-user values of some runs (one label's seeds), averaged over the runs per user.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``user`` (sorted): float64 ``metrics`` (those present) and
        ``activity`` when the per-user table records it.
    """
    if per_user.empty:
        return pd.DataFrame()
    rows = per_user[per_user["run_id"].astype(str).isin({str(r) for r in run_ids})]
    present = [m for m in metrics if m in rows]
    if "activity" in rows:
        present.append("activity")
    return rows.groupby("user")[present].mean().astype(np.float64).sort_index()


def means_by_label(
    runs: pd.DataFrame, per_user: pd.DataFrame, metrics: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """:func:`user_means` of every label of ``runs`` at once, in order of first appearance."""
    if per_user.empty or runs.empty:
        return {}
    ids = runs[["run_id", "label"]].astype(str)
    labels = list(dict.fromkeys(ids["label"]))
    rows = per_user[per_user["run_id"].astype(str).isin(set(ids["run_id"]))]
    rows = rows.assign(label=rows["run_id"].astype(str).map(dict(zip(ids["run_id"], ids["label"]))))
    present = [m for m in metrics if m in rows]
    if "activity" in rows:
        present.append("activity")
    means = rows.groupby(["label", "user"], sort=False)[present].mean().astype(np.float64)
    return {
        label: means.xs(label, level="label").sort_index()
        for label in labels
        if label in means.index.get_level_values("label")
    }


# -- quality --------------------------------------------------------------------------
def _bootstrap_intervals(
    values: np.ndarray, level: float, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap bounds of the column means of ``values`` (NaN = missing)."""
    n, m = values.shape
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    per_chunk = max(1, _BOOT_CELLS // max(n, 1))
    means = np.empty((n_boot, m))
    for lo in range(0, n_boot, per_chunk):
        hi = min(lo + per_chunk, n_boot)
        idx = rng.integers(0, n, size=(hi - lo, n))
        offsets = (np.arange(hi - lo) * n)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=(hi - lo) * n)
        counts = counts.reshape(hi - lo, n).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[lo:hi] = (counts @ filled) / (counts @ finite)
    alpha = 1.0 - level
    low, high = np.nanquantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _normal_intervals(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(values, axis=0)
    n = np.isfinite(values).sum(axis=0)
    sd = np.nanstd(values, axis=0, ddof=1)
    half = scipy.stats.norm.ppf(0.5 + level / 2) * sd / np.sqrt(n)
    return mean - half, mean + half


def quality_summary(
    runs: pd.DataFrame,
    per_user: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    normal_above: int = NORMAL_ABOVE,
) -> pd.DataFrame:
    """Mean and confidence interval per label and metric, over users (seeds averaged first).

    Parameters
    ----------
    runs : pandas.DataFrame
        Successful runs of one dataset group.
    per_user : pandas.DataFrame
        The per-user table of the folder.
    metrics : sequence of str, optional
        Metric columns (default: the headline metrics of ``runs``).
    level : float
        Confidence level.
    n_boot : int
        Bootstrap resamples (below ``normal_above`` users).
    seed : int
        Seed of every bootstrap (each label restarts from it).
    normal_above : int
        From this many users on, the normal approximation is used.

    Returns
    -------
    pandas.DataFrame
        ``label, metric, mean, low, high, seeds, users, method``.
    """
    columns = ["label", "metric", "mean", "low", "high", "seeds", "users", "method"]
    metrics = list(metrics) if metrics is not None else headline_metrics(runs.columns)
    rows = []
    for label, means in means_by_label(runs, per_user, metrics).items():
        present = [m for m in metrics if m in means]
        if not present:
            continue
        values = means[present].to_numpy(dtype=np.float64)
        n_finite = np.isfinite(values).sum(axis=0)
        if values.shape[0] >= normal_above:
            low, high = _normal_intervals(values, level)
            method = "normal"
        else:
            low, high = _bootstrap_intervals(values, level, n_boot, np.random.default_rng(seed))
            method = "bootstrap"
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            mean = np.nanmean(values, axis=0)
        seeds = int(runs.loc[runs["label"].astype(str) == label, "seed"].nunique())
        for j, metric in enumerate(present):
            if n_finite[j] == 0:
                continue
            rows.append(
                {
                    "label": label,
                    "metric": metric,
                    "mean": float(mean[j]),
                    # The percentile interval may miss the mean on tiny skewed samples.
                    "low": float(min(low[j], mean[j])),
                    "high": float(max(high[j], mean[j])),
                    "seeds": seeds,
                    "users": int(n_finite[j]),
                    "method": method,
                }
            )
    return pd.DataFrame(rows, columns=columns)


# -- paired comparisons -----------------------------------------------------------------
def _holm_finite(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjust the finite p-values; NaN stays NaN."""
    from metrics.stats import holm

    pvalues = np.asarray(pvalues, dtype=np.float64)
    out = np.full(pvalues.shape, np.nan)
    finite = np.isfinite(pvalues)
    if finite.any():
        out[finite] = np.asarray(holm(pvalues[finite]), dtype=np.float64)
    return out


def _paired_t(diff: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Mean difference, its t interval and the paired t-test p-value of that mean."""
    n = diff.size
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    if sd == 0.0:
        return mean, mean, mean, (1.0 if mean == 0.0 else 0.0)
    se = sd / math.sqrt(n)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * scipy.stats.t.sf(abs(mean) / se, n - 1))
    return mean, mean - half, mean + half, p


def _wilcoxon(diff: np.ndarray) -> float:
    if np.all(diff == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(scipy.stats.wilcoxon(diff).pvalue)


PAIRED_COLUMNS = [
    "label",
    "reference",
    "metric",
    "mean_diff",
    "low",
    "high",
    "level",
    "raw_low",
    "raw_high",
    "t_pvalue",
    "t_holm",
    "significant",
    "wilcoxon_pvalue",
    "wilcoxon_holm",
    "n",
]


def paired_family(diffs: Sequence[np.ndarray], *, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Paired t comparisons of one Holm family: the headline test of every comparison.

    Each comparison is a vector of per-user differences (model minus
    reference, or tuned minus default). For each: the mean difference, the
    two-sided paired t-test of that mean, Holm-corrected over the family, and
    the paired t interval at the level Holm tested it at
    (:func:`metrics.stats.holm_interval_alphas`: the comparison Holm rejects
    ``k``-th of ``m`` gets ``1 - alpha / (m - k + 1)``, the ones it keeps
    ``1 - alpha / (m - R)`` with ``R`` rejected). So a comparison is
    significant (``t_holm < alpha``) exactly when its interval excludes 0.
    Every interval contains the plain ``1 - alpha`` one (``raw_low, raw_high``);
    they are not simultaneous intervals. The Wilcoxon signed-rank test (a
    median shift) is a secondary p-value with its own Holm correction.

    Parameters
    ----------
    diffs : sequence of numpy.ndarray of float64, shape (n_i,)
        Finite per-user differences, ``n_i >= 2``.
    alpha : float
        Family-wise significance level.

    Returns
    -------
    list of dict
        In the order of ``diffs``: ``mean_diff, low, high, level`` (the
        interval and its confidence level), ``raw_low, raw_high`` (the plain
        ``1 - alpha`` interval), ``t_pvalue, t_holm, significant,
        wilcoxon_pvalue, wilcoxon_holm, n``.

    Examples
    --------
    A hand-computed family of one: no correction, the 95% interval.

    >>> row = paired_family([np.array([0.1, 0.1, 0.0, 0.1])])[0]
    >>> round(row["t_pvalue"], 4), row["level"], round(row["low"], 4)
    (0.0577, 0.95, -0.0046)
    """
    from metrics.stats import holm_interval_alphas

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    rows = []
    for diff in diffs:
        diff = np.asarray(diff, dtype=np.float64)
        mean, raw_low, raw_high, p = _paired_t(diff, 1.0 - alpha)
        rows.append(
            {
                "mean_diff": mean,
                "raw_low": raw_low,
                "raw_high": raw_high,
                "t_pvalue": p,
                "wilcoxon_pvalue": _wilcoxon(diff),
                "n": int(diff.size),
            }
        )
    if not rows:
        return rows
    t_holm = _holm_finite([r["t_pvalue"] for r in rows])
    w_holm = _holm_finite([r["wilcoxon_pvalue"] for r in rows])
    finite = np.isfinite(t_holm)
    levels = np.full(len(rows), np.nan)
    if finite.any():
        p = np.array([r["t_pvalue"] for r in rows])[finite]
        levels[finite] = 1.0 - holm_interval_alphas(p, alpha)
    for row, diff, t, w, level in zip(rows, diffs, t_holm, w_holm, levels):
        row["t_holm"], row["wilcoxon_holm"] = float(t), float(w)
        row["significant"] = bool(np.isfinite(t) and t < alpha)
        row["level"] = float(level)
        if np.isfinite(level):
            _, row["low"], row["high"], _ = _paired_t(np.asarray(diff, dtype=np.float64), level)
        else:
            row["low"] = row["high"] = math.nan
    return rows


def paired_summary(
    means_by_label: Mapping[str, pd.DataFrame],
    references: Mapping[str, str],
    *,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Paired comparison of every label with a reference label, per metric.

    The labels compared with the same reference on the same metric are one
    Holm family (:func:`paired_family`).

    Parameters
    ----------
    means_by_label : mapping of str to pandas.DataFrame
        :func:`user_means` of each label.
    references : mapping of str to str
        Metric -> reference label (e.g. the best model of that metric).
    alpha : float
        Significance level of the Holm-corrected t-test; the intervals are
        built at the levels Holm tests at, so they agree with it.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PAIRED_COLUMNS`: ``label, reference, metric``, then
        :func:`paired_family`'s columns; ``mean_diff`` is label minus
        reference over the users both evaluated.
    """
    rows = []
    for metric, reference in references.items():
        ref = means_by_label.get(reference)
        if ref is None or metric not in ref:
            continue
        names, diffs = [], []
        for label, means in means_by_label.items():
            if label == reference or metric not in means:
                continue
            joined = pd.concat({"a": means[metric], "b": ref[metric]}, axis=1, join="inner")
            joined = joined.dropna()
            if len(joined) < 2:
                continue
            names.append(label)
            diffs.append(joined["a"].to_numpy() - joined["b"].to_numpy())
        for label, row in zip(names, paired_family(diffs, alpha=alpha)):
            rows.append({"label": label, "reference": reference, "metric": metric, **row})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def best_labels(quality: pd.DataFrame, registry: MetricRegistry = METRICS) -> dict[str, str]:
    """Metric -> label with the best mean (highest, or lowest for lower-is-better metrics)."""
    best = {}
    for metric, rows in quality.groupby("metric", sort=False):
        higher = registry.higher_is_better(metric) if registry.is_metric(metric) else True
        pick = rows["mean"].idxmax() if higher else rows["mean"].idxmin()
        best[str(metric)] = str(rows.loc[pick, "label"])
    return best


def paired_tables(
    group: DatasetGroup,
    per_user: pd.DataFrame,
    quality: pd.DataFrame,
    metrics: Sequence[str],
    *,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Every label against the best label of each metric and against the reference baseline.

    Returns :func:`paired_summary` rows with an ``against`` column
    (``"best"`` or ``"reference"``: :func:`reference_label`, e.g. popularity).
    """
    means = means_by_label(group.runs, per_user, metrics)
    if len(means) < 2:
        return pd.DataFrame(columns=[*PAIRED_COLUMNS, "against"])
    frames = [paired_summary(means, best_labels(quality), alpha=alpha).assign(against="best")]
    reference = reference_label(group.runs)
    if reference is not None:
        refs = {m: reference for m in metrics}
        frames.append(paired_summary(means, refs, alpha=alpha).assign(against="reference"))
    return pd.concat(frames, ignore_index=True)


# -- breakdowns ---------------------------------------------------------------------------
def activity_breakdown(
    group: DatasetGroup, per_user: pd.DataFrame, metrics: Sequence[str], *, bins: int = 4
) -> pd.DataFrame:
    """Mean of each metric per label within quartiles of user activity (train positives).

    The bin edges are the quantiles of the activity of the group's evaluated
    users (the same users for every label). Empty when the per-user table
    does not record ``activity`` (folders written before it existed).

    Returns
    -------
    pandas.DataFrame
        ``label, bin, low, high, users`` and one column per metric.
    """
    means = means_by_label(group.runs, per_user, metrics)
    if not means or any("activity" not in m for m in means.values()):
        return pd.DataFrame()
    activity = pd.concat([m["activity"] for m in means.values()]).groupby(level=0).first()
    edges = np.unique(np.quantile(activity.to_numpy(), np.linspace(0, 1, bins + 1)))
    codes = pd.Series(
        np.clip(np.searchsorted(edges, activity.to_numpy(), side="right") - 1, 0, len(edges) - 2),
        index=activity.index,
    )
    rows = []
    for label, frame in means.items():
        present = [m for m in metrics if m in frame]
        per_bin = frame[present].groupby(codes.reindex(frame.index).to_numpy()).agg(["mean"])
        user_codes = codes.reindex(frame.index)
        sizes = user_codes.value_counts()
        for code in sorted(sizes.index):
            members = activity.reindex(frame.index)[user_codes == code]
            lo, hi = int(members.min()), int(members.max())
            row = {"label": label, "bin": int(code), "low": lo, "high": hi}
            row["users"] = int(sizes[code])
            for metric in present:
                row[metric] = float(per_bin.loc[code, (metric, "mean")])
            rows.append(row)
    return pd.DataFrame(rows)


def beyond_summary(runs: pd.DataFrame, registry: MetricRegistry = METRICS, k: int = 10):
    """Beyond-accuracy metrics (coverage, popularity) per label: means over seeds of runs.csv.

    Returns
    -------
    pandas.DataFrame
        Indexed by label, one column per beyond metric present (at ``k``).
    """
    columns = [
        c for c in registry.select(runs.columns, k=k) if registry.metric_of(c)[0].kind == "beyond"
    ]
    if not columns:
        return pd.DataFrame()
    frame = runs.assign(**{c: pd.to_numeric(runs[c], errors="coerce") for c in columns})
    return frame.groupby("label", sort=False)[columns].mean()


# -- cost -------------------------------------------------------------------------------------
def timing_grade_runs(runs: pd.DataFrame, *, include_all: bool = False) -> pd.DataFrame:
    """The rows of ``runs`` whose timings were measured with the run alone on its node.

    Rows without a ``timing_grade`` column (results written before executors
    existed, all made one run at a time) count as timing-grade.

    Parameters
    ----------
    runs : pandas.DataFrame
        ``runs.csv`` rows.
    include_all : bool
        Return every row (the user asked for all timings).

    Returns
    -------
    pandas.DataFrame
        A filtered copy, index reset.
    """
    if include_all or "timing_grade" not in runs:
        return runs.reset_index(drop=True)
    mask = [_is_timing_grade(value) for value in runs["timing_grade"]]
    return runs[mask].reset_index(drop=True)


def _is_timing_grade(value: Any) -> bool:
    # From CSV: booleans or "True"/"False"; missing for rows older than the column.
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return True
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "")
    return bool(value)


def cost_summary(runs: pd.DataFrame, *, include_all_timings: bool = False) -> pd.DataFrame:
    """Mean (and seed-to-seed std, median) of the cost columns per label.

    Returns
    -------
    pandas.DataFrame
        Indexed by label: ``seeds, epochs, fit_seconds, fit_seconds_std,
        fit_seconds_median, sampler_setup_seconds, seconds_per_epoch, eval_seconds,
        peak_rss_mb, rss_growth_mb, timing_grade`` (std is NaN with one seed; the
        sampler set-up is part of ``fit_seconds`` and NaN for folders written before
        it was recorded). Time and memory come from timing-grade runs only (each
        alone on its node, :func:`timing_grade_runs`) unless ``include_all_timings``;
        ``timing_grade`` says how many of a label's runs those are ("k/n"), and a
        label without any has NaN costs.
    """
    columns = [
        "epochs",
        "fit_seconds",
        "sampler_setup_seconds",
        "seconds_per_epoch",
        "eval_seconds",
        "peak_rss_mb",
        "rss_growth_mb",
    ]
    frame = runs.copy()
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    labels = list(dict.fromkeys(frame["label"]))
    everything = frame.groupby("label", sort=False)
    timed = timing_grade_runs(frame, include_all=include_all_timings).groupby("label", sort=False)
    out = timed[columns].mean().reindex(labels)
    out.insert(0, "seeds", everything["seed"].nunique())
    out.insert(3, "fit_seconds_std", timed["fit_seconds"].std(ddof=1).reindex(labels))
    out.insert(4, "fit_seconds_median", timed["fit_seconds"].median().reindex(labels))
    counts = timed.size().reindex(labels).fillna(0).astype(int)
    out["timing_grade"] = [f"{counts[label]}/{everything.size()[label]}" for label in labels]
    return out


#: A model whose cost grows faster than this power of the train positives needs a
#: reason in its algorithm (the model's ``fit_scaling``); otherwise it is a defect.
SCALING_LIMIT = 1.1


def scaling_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``log(values)`` against ``log(sizes)`` (1 = linear growth).

    Points with a missing or non-positive value are left out; NaN with fewer
    than two distinct sizes left.

    Examples
    --------
    >>> round(scaling_exponent([1e3, 1e4, 1e5], [2.0, 20.0, 200.0]), 6)
    1.0
    """
    x = np.asarray(sizes, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"sizes and values must be 1-d of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if np.unique(x).size < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> np.ndarray:
    """Which points no other point beats on both cost (lower) and quality (higher).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        ``True`` for Pareto-optimal points; exact duplicates are both kept.
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


def pareto_points(group: DatasetGroup, metrics: Sequence[str]) -> pd.DataFrame:
    """Mean fit seconds and ``metrics`` per label, with a ``front_<metric>`` flag per metric."""
    columns = ["fit_seconds", *metrics]
    runs = group.runs.assign(**{c: pd.to_numeric(group.runs[c], errors="coerce") for c in columns})
    points = runs.groupby("label", sort=False)[columns].mean()
    # Cost from timing-grade runs only (runs that shared a node are not comparable).
    timed = timing_grade_runs(runs).groupby("label", sort=False)["fit_seconds"].mean()
    points["fit_seconds"] = timed.reindex(points.index)
    points = points.dropna(subset=["fit_seconds"])
    for metric in metrics:
        points[f"front_{metric}"] = pareto_front(
            points["fit_seconds"].to_numpy(), points[metric].to_numpy()
        )
    return points


# -- model facts ---------------------------------------------------------------------------
def _flag(values: pd.Series) -> str:
    values = values.dropna().astype(str).str.lower()
    if values.empty:
        return "unknown"
    return "yes" if values.iloc[0] in ("true", "1", "1.0") else "no"


def model_facts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per label: ``model, uses_sampler, deterministic, notes, fit_scaling``.

    From the run rows. Folders written before the facts were recorded say
    ``unknown`` (``fit_scaling``: empty).
    """
    rows = []
    for label, part in runs.groupby(runs["label"].astype(str), sort=False):
        notes = part["notes"].dropna().astype(str) if "notes" in part else pd.Series([], dtype=str)
        scaling = (
            part["fit_scaling"].dropna().astype(str)
            if "fit_scaling" in part
            else pd.Series([], dtype=str)
        )
        rows.append(
            {
                "label": label,
                "model": str(part["model"].iloc[0]) if "model" in part else label,
                "uses_sampler": _flag(part["uses_sampler"])
                if "uses_sampler" in part
                else "unknown",
                "deterministic": _flag(part["deterministic"])
                if "deterministic" in part
                else "unknown",
                "notes": notes.iloc[0] if len(notes) else "",
                "fit_scaling": scaling.iloc[0] if len(scaling) else "",
            }
        )
    return pd.DataFrame(
        rows, columns=["label", "model", "uses_sampler", "deterministic", "notes", "fit_scaling"]
    )


def preset_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """For models run with several presets: the parameters whose values differ between them.

    Returns
    -------
    pandas.DataFrame
        ``model, parameter`` and one column per label of that model (values as JSON text).
    """
    if "params" not in runs or "model" not in runs:
        return pd.DataFrame()
    rows = []
    firsts = runs.drop_duplicates("label")
    for model, part in firsts.groupby(firsts["model"].astype(str), sort=False):
        if len(part) < 2:
            continue
        params = {}
        for label, text in zip(part["label"].astype(str), part["params"]):
            try:
                params[label] = json.loads(text) if isinstance(text, str) else {}
            except json.JSONDecodeError:
                params[label] = {}
        keys = sorted(set().union(*params.values()))
        for key in keys:
            values = [json.dumps(params[label].get(key)) for label in params]
            if len(set(values)) > 1:
                rows.append(
                    {
                        "model": model,
                        "parameter": key,
                        "values": dict(zip(params, values)),
                    }
                )
    return pd.DataFrame(rows, columns=["model", "parameter", "values"])
