"""Confidence intervals, paired tests and multiple-comparison correction for per-user metrics."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CI",
    "PairedComparison",
    "holm",
    "holm_interval_alphas",
    "mean_ci",
    "paired_comparison",
]

# Bootstrap resamples are drawn in chunks of at most this many indices (bounds memory).
_BOOT_CHUNK = 1 << 22


class CI(NamedTuple):
    """A mean and its confidence interval."""

    mean: float
    low: float
    high: float


class PairedComparison(NamedTuple):
    """Paired comparison of two systems on the same users (``a - b``)."""

    mean_diff: float
    low: float
    high: float
    t_pvalue: float
    wilcoxon_pvalue: float
    n: int


def _as_values(values: Any, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values))
        raise ValueError(
            f"{name} holds {bad.size} non-finite value(s) (first at index {bad[0]}); drop them "
            "first (e.g. the AUC of users without negatives)"
        )
    return values


def _check_level(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def _check_n_boot(n_boot: Any) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    return int(n_boot)


def _as_generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {rng!r}")


def _bootstrap_means(values: np.ndarray, n_boot: int, gen: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement, vectorised in bounded chunks."""
    n = values.size
    per_chunk = max(1, _BOOT_CHUNK // n)
    means = np.empty(n_boot, dtype=np.float64)
    for lo in range(0, n_boot, per_chunk):
        hi = min(lo + per_chunk, n_boot)
        idx = gen.integers(0, n, size=(hi - lo, n))
        means[lo:hi] = values[idx].mean(axis=1)
    return means


def _percentile_interval(
    values: np.ndarray, level: float, n_boot: int, gen: np.random.Generator
) -> tuple[float, float, float]:
    mean = float(values.mean())
    if values.size == 1 or np.all(values == values[0]):
        return mean, mean, mean
    means = _bootstrap_means(values, n_boot, gen)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    # A percentile interval can miss the sample mean on tiny skewed samples; widen to it.
    return mean, float(min(low, mean)), float(max(high, mean))


def mean_ci(
    values: Any,
    level: float = 0.95,
    *,
    n_boot: int = 2000,
    rng: np.random.Generator | int,
) -> CI:
    """Mean of per-user values with a percentile-bootstrap confidence interval.

    Resamples the users with replacement ``n_boot`` times (all resamples drawn
    as one integer matrix, in chunks to bound memory) and takes the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled
    means. The interval is widened, if needed, to contain the sample mean.
    Constant values (or a single value) give a zero-width interval.

    Parameters
    ----------
    values : array of float, shape (n,)
        One value per user; must be finite and non-empty.
    level : float
        Confidence level in (0, 1).
    n_boot : int
        Number of bootstrap resamples (>= 1).
    rng : numpy.random.Generator or int
        Source of the resampling (an int is a seed); same seed, same interval.

    Returns
    -------
    CI
        ``(mean, low, high)`` as floats.
    """
    values = _as_values(values, "values")
    level = _check_level(level)
    n_boot = _check_n_boot(n_boot)
    gen = _as_generator(rng)
    return CI(*_percentile_interval(values, level, n_boot, gen))


def paired_comparison(
    a: Any,
    b: Any,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | int,
) -> PairedComparison:
    """Compare two systems evaluated on the same users, value by value.

    Parameters
    ----------
    a, b : array of float, shape (n,)
        Per-user values of the two systems, aligned user by user (n >= 2).
    level : float
        Confidence level of the interval on the mean difference.
    n_boot : int
        Bootstrap resamples for the interval.
    rng : numpy.random.Generator or int
        Source of the resampling.

    Returns
    -------
    PairedComparison
        ``mean_diff`` (mean of ``a - b``); ``low``, ``high`` (percentile
        bootstrap interval of the mean difference, see :func:`mean_ci`);
        ``t_pvalue`` (two-sided paired t-test, :func:`scipy.stats.ttest_rel`);
        ``wilcoxon_pvalue`` (two-sided Wilcoxon signed-rank test on the
        non-zero differences, :func:`scipy.stats.wilcoxon`); ``n``.
        When every difference is zero both p-values are defined as 1.0. When
        the differences are all equal but not zero, the t statistic is
        infinite and ``t_pvalue`` is defined as 0.0.

    Raises
    ------
    ValueError
        If the lengths differ, there are fewer than 2 pairs, or a value is
        not finite.
    """
    a = _as_values(a, "a")
    b = _as_values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError(f"paired_comparison needs at least 2 pairs, got {a.size}")
    level = _check_level(level)
    n_boot = _check_n_boot(n_boot)
    gen = _as_generator(rng)
    diff = a - b
    mean_diff, low, high = _percentile_interval(diff, level, n_boot, gen)
    import scipy.stats  # here: importing metrics (in every run's process) stays light

    if np.all(diff == 0.0):
        t_p, w_p = 1.0, 1.0
    elif np.all(diff == diff[0]):
        t_p = 0.0
        w_p = float(scipy.stats.wilcoxon(diff).pvalue)
    else:
        t_p = float(scipy.stats.ttest_rel(a, b).pvalue)
        with warnings.catch_warnings():
            # scipy warns that the exact distribution is unavailable with ties/zeros.
            warnings.simplefilter("ignore", UserWarning)
            w_p = float(scipy.stats.wilcoxon(diff).pvalue)
    return PairedComparison(
        mean_diff=mean_diff,
        low=low,
        high=high,
        t_pvalue=t_p,
        wilcoxon_pvalue=w_p,
        n=int(a.size),
    )


def holm(pvalues: Any) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order of the input.

    With the ``m`` p-values sorted increasingly, ``p_(1) <= ... <= p_(m)``::

        adjusted_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))

    (the running maximum makes them monotone). Rejecting the hypotheses whose
    adjusted p-value is at most ``alpha`` controls the family-wise error rate
    at ``alpha``.

    Parameters
    ----------
    pvalues : array of float, shape (m,)
        Raw p-values in [0, 1].

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0):
        bad = p[~(np.isfinite(p) & (p >= 0.0) & (p <= 1.0))][0]
        raise ValueError(f"p-values must be in [0, 1], got {bad!r}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = adjusted_sorted
    return adjusted


def holm_interval_alphas(pvalues: Any, alpha: float = 0.05) -> np.ndarray:
    """The per-comparison level at which Holm's step-down procedure tests each hypothesis.

    With the ``m`` p-values sorted increasingly and ``R`` the number that Holm
    rejects at ``alpha`` (those whose :func:`holm` adjusted p-value is below
    ``alpha``), the hypothesis rejected ``k``-th (k = 1..R) gets
    ``alpha / (m - k + 1)`` and every hypothesis kept gets ``alpha / (m - R)``.
    Tied p-values share the level of the first of them.

    A two-sided test's ``1 - level`` confidence interval excludes the null
    value exactly when its p-value is below ``level``, so intervals built at
    these levels exclude it exactly for the hypotheses Holm rejects: a rejected
    ``k``-th has ``p <= adjusted < alpha``, hence ``p < alpha / (m - k + 1)``;
    the first kept one has ``(m - R) * p >= alpha`` and every later one a larger
    p. Every level is at most ``alpha``, so each interval contains the plain
    ``1 - alpha`` interval. These are *not* simultaneous intervals: the chance
    that one of the family misses its true value can exceed ``alpha``.

    Parameters
    ----------
    pvalues : array of float, shape (m,)
        Raw p-values in [0, 1] (as for :func:`holm`).
    alpha : float
        Family-wise significance level, in (0, 1).

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
        The level of each hypothesis, in the order of the input.

    Examples
    --------
    Holm rejects 0.001 (first of 4) and 0.01 (second) and keeps the other two:

    >>> holm_interval_alphas([0.001, 0.04, 0.01, 0.5]).round(5).tolist()
    [0.0125, 0.025, 0.01667, 0.025]
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    adjusted = holm(pvalues)
    m = adjusted.size
    p = np.asarray(pvalues, dtype=np.float64)
    # The order holm() steps down in; its adjusted p-values are monotone along it, so the
    # rejected hypotheses are the first R (tied p-values share one adjusted value).
    order = np.argsort(p, kind="stable")
    rejected = int((adjusted < alpha).sum())
    sorted_alphas = np.full(m, alpha / max(m - rejected, 1))
    # Tied p-values take the rank of the first of them (the smaller level), so that
    # equal p-values get equal intervals whatever their order in the input.
    ranks = np.searchsorted(p[order], p[order][:rejected], side="left")
    sorted_alphas[:rejected] = alpha / (m - ranks)
    out = np.empty(m, dtype=np.float64)
    out[order] = sorted_alphas
    return out
