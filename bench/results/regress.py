"""The regression gate: is a results folder worse than its baseline, beyond noise and beyond a margin?

Rules (``rsbench regress RESULTS --baseline BASELINE``):

* **What is compared.** Every successful label (``model`` or ``model:preset``)
  of the baseline, on every dataset it ran on, and every gated metric column
  of the baseline's ``runs.csv`` (:data:`metrics.registry.METRICS`). A dataset
  is identified by :class:`bench.results.tables.ProtocolKey`, the identity the
  report groups by; runs of the same label on another dataset or protocol do
  not count.
* **Per-user metrics** (AUC, precision@k, NDCG@k, ...; both folders keep
  ``per_user.parquet``) are compared **per user**: each side's seeds are
  averaged per user first (as the report does), then the difference
  ``d = new - baseline`` over the users both evaluated, signed so that worse is
  negative. A check **FAILs** when the run is worse than the baseline by more
  than the metric's margin ``delta`` *with statistical confidence*: the
  Holm-adjusted one-sided ``(1 - alpha)`` upper bound of ``mean(d)`` (paired
  t, the report's headline test) lies below ``-delta``. Equivalently, the
  one-sided paired t-test of ``H0: mean(d) >= -delta`` is rejected by Holm's
  step-down procedure at ``alpha`` over every per-user check of the run. The
  bounds are the ones compatible with Holm's procedure: the check rejected at
  step ``j`` of ``m`` uses level ``alpha / (m - j + 1)``, every check not
  rejected uses ``alpha / (m - R)`` (``R`` rejections), so that *bound below
  -delta* and *FAIL* say the same thing. The table prints, per check, the mean
  difference, its two-sided interval and one-sided bound at that level, the
  margin, and the smallest drop the check would detect with 80% power at that
  level (``delta + (t[1-level] + t[0.8]) * se``). A check whose per-user
  differences are all zero passes ("identical").
* **Margins** are declared per metric in the metric registry
  (:class:`metrics.registry.Margin`: absolute for AUC, relative to the
  baseline for the top-k family and coverage), overridable per suite in TOML
  (``[gate.margins]``), and recorded in the manifest's ``gate`` entry; the
  gate reads the *baseline's* (registry defaults when its manifest predates
  them, said in the header).
* **Run-level metrics** without per-user rows (``coverage@k``) are compared
  on the seeds' means: FAIL when ``new`` is worse by more than ``max(spread_se
  * se, delta)``, where ``se`` is the seed-to-seed standard error of the
  difference of the two means (pooled over both folders' seeds; 0 with one
  seed on each side) and ``delta`` the metric's declared margin (its floor).
* **Deterministic labels** (``deterministic`` column: EASE, ItemKNN,
  popularity) are exact: on the same machine kind, any change of one of
  their numbers is a WARN naming the label (the statistical check still
  decides the verdict).
* **Consistency**: a ``runs.csv`` mean that differs from the mean of its own
  per-user rows by more than 1e-9 FAILs (in either folder): the two tables
  must tell the same story.
* **Fit time** only warns: when the new mean fit seconds exceed
  ``fit_time_factor`` times the baseline's and grew by at least
  ``fit_time_slack`` seconds.
* **Failures, never silent passes**: a baseline label missing from the new
  folder (on that dataset), a metric column missing or non-finite in the new
  runs, any failed new run of a baseline label, and a dataset whose content
  hash differs between the two folders (a warning only for generated
  datasets with the same spec). Labels only in the new folder are listed as
  ``new`` and not gated. A baseline without any successful run is an error.
* **Machines.** The header names the CPU each folder was made on; the gate's
  verdicts are statistical, so a different machine kind (whose kernels move a
  trained model in the last bits, far less than a change of seed) needs no
  special treatment.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from bench.environment import cpu_details
from bench.results.store import ResultsError, load_results
from bench.results.tables import run_identity
from metrics.registry import METRICS, Margin, MetricRegistry

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_SPREAD_SE",
    "Comparison",
    "GateSettings",
    "RegressionOutcome",
    "is_quality_metric",
    "regress",
]

log = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.05
DEFAULT_SPREAD_SE = 3.0
DEFAULT_FIT_TIME_FACTOR = 3.0
DEFAULT_FIT_TIME_SLACK = 0.25
#: Power at which the table quotes the smallest detectable drop.
POWER = 0.8
#: Largest allowed gap between a runs.csv mean and the mean of its per-user rows.
CONSISTENCY_TOLERANCE = 1e-9

OK, FAIL, WARN, NEW = "ok", "FAIL", "WARN", "new"


def is_quality_metric(column: str, registry: MetricRegistry = METRICS) -> bool:
    """Whether a ``runs.csv`` column is a gated metric of the registry (any cut-off)."""
    found = registry.metric_of(str(column))
    return found is not None and found[0].gated


# -- settings -----------------------------------------------------------------------
@dataclass(frozen=True)
class GateSettings:
    """The gate's statistical settings, as a suite declares them and a manifest records them.

    Attributes
    ----------
    alpha : float
        Family-wise error rate of the per-user checks (Holm), in (0, 0.5].
    spread_se : float
        Multiplier of the seed-to-seed standard error for run-level metrics.
    margins : dict of str to Margin
        Metric name -> margin (every gated metric of the registry).
    """

    alpha: float = DEFAULT_ALPHA
    spread_se: float = DEFAULT_SPREAD_SE
    margins: dict[str, Margin] = field(default_factory=METRICS.margins)

    @classmethod
    def parse(
        cls,
        options: Mapping[str, Any] | None,
        *,
        where: str = "gate",
        registry: MetricRegistry = METRICS,
    ) -> GateSettings:
        """Settings from a ``[gate]`` table (``alpha``, ``spread_se``, ``margins``).

        Raises ``ValueError`` naming ``where`` and the key for anything invalid.
        """
        options = dict(options or {})
        unknown = sorted(set(options) - {"alpha", "spread_se", "margins"})
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: alpha, margins, spread_se"
            )
        alpha = options.get("alpha", DEFAULT_ALPHA)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 0.5:
            raise ValueError(f"{where}.alpha must be a number in (0, 0.5], got {alpha!r}")
        spread = options.get("spread_se", DEFAULT_SPREAD_SE)
        if (
            isinstance(spread, bool)
            or not isinstance(spread, (int, float))
            or not (math.isfinite(spread) and spread >= 0)
        ):
            raise ValueError(f"{where}.spread_se must be a finite number >= 0, got {spread!r}")
        margins = options.get("margins", {})
        if not isinstance(margins, Mapping):
            raise ValueError(f"{where}.margins must be a table of metric = margin, got {margins!r}")
        return cls(
            alpha=float(alpha),
            spread_se=float(spread),
            margins=registry.margins(margins, where=f"{where}.margins"),
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``gate`` entry (margins as numbers, or ``"5%"`` when relative)."""
        return {
            "alpha": self.alpha,
            "spread_se": self.spread_se,
            "margins": {name: margin.to_json() for name, margin in self.margins.items()},
        }

    def margin(self, metric: str, registry: MetricRegistry = METRICS) -> Margin:
        """The margin of a metric column (``name@k`` reads ``name``'s)."""
        found = registry.metric_of(metric)
        name = found[0].name if found else metric
        if name in self.margins:
            return self.margins[name]
        if found is not None and found[0].margin is not None:
            return found[0].margin
        raise KeyError(f"no margin for metric {metric!r}")


def _settings_of(manifest: Mapping[str, Any], where: Path) -> tuple[GateSettings, str]:
    recorded = manifest.get("gate")
    if recorded is None:
        return GateSettings(), "registry defaults (the baseline's manifest records none)"
    try:
        return GateSettings.parse(recorded, where=f"{where}/manifest.json: gate"), "baseline"
    except ValueError as exc:
        raise ResultsError(str(exc)) from None


# -- what the gate reports -------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """One line of the gate's table.

    Attributes
    ----------
    dataset : str
        The dataset/protocol identity (see the module docstring).
    label : str
        ``model`` or ``model:preset`` (empty for dataset-level checks).
    check : str
        A metric name, ``"fit_seconds"``, ``"runs"`` (the label's runs: seeds
        on each side), ``"dataset"`` (the content hash), ``"consistency"``
        (runs.csv against per-user rows) or ``"deterministic"``.
    kind : str
        How it was decided: ``"paired"`` (per-user paired t, Holm),
        ``"spread"`` (run-level, seed spread and margin), or the check's name.
    baseline, new : float
        The compared means (NaN where not applicable).
    delta : float
        The difference of the means, signed so that worse is negative
        (``new - baseline`` for a higher-is-better metric).
    low, high : float
        Paired checks: the two-sided interval of the mean per-user difference
        at the check's Holm level (signed like ``delta``).
    bound : float
        Paired checks: the one-sided upper bound at that level; FAIL exactly
        when it lies below ``-margin``.
    margin : float
        The declared margin in the metric's units.
    tolerance : float
        Run-level checks: the allowed drop ``max(spread_se * se, margin)``;
        fit time: the allowed factor.
    mdd : float
        Paired checks: the smallest true drop detected with 80% power.
    level : float
        Paired checks: the one-sided level of ``bound`` (Holm, see the module docstring).
    p_value, p_holm : float
        Paired checks: the one-sided p-value of ``mean(d) >= -margin`` and its Holm adjustment.
    n_users : int
        Paired checks: users compared.
    se : float
        Standard error of ``delta``.
    verdict : str
        ``"ok"``, ``"FAIL"``, ``"WARN"`` or ``"new"``.
    note : str
        Why, in words.
    baseline_seeds, new_seeds : int
        Successful runs averaged on each side.
    """

    dataset: str
    label: str
    check: str
    kind: str = ""
    baseline: float = math.nan
    new: float = math.nan
    delta: float = math.nan
    low: float = math.nan
    high: float = math.nan
    bound: float = math.nan
    margin: float = math.nan
    tolerance: float = math.nan
    mdd: float = math.nan
    level: float = math.nan
    p_value: float = math.nan
    p_holm: float = math.nan
    n_users: int = 0
    se: float = math.nan
    verdict: str = OK
    note: str = ""
    baseline_seeds: int = 0
    new_seeds: int = 0


@dataclass
class RegressionOutcome:
    """Every comparison the gate made, with the settings it used.

    Attributes
    ----------
    comparisons : list of Comparison
    settings : GateSettings
        Alpha, margins and the seed-spread multiplier applied.
    settings_source : str
        Where they came from (the baseline's manifest, or registry defaults).
    fit_time_factor, fit_time_slack : float
    results_dir, baseline_dir : Path
    baseline_machine, results_machine : str
        The CPU each folder was made on (``"unknown"`` where the manifest does not say).
    machines_differ : bool
        True when both manifests name their CPU and the two differ.
    paired_checks : int
        ``m``, the number of per-user checks Holm adjusts over.
    """

    comparisons: list[Comparison] = field(default_factory=list)
    settings: GateSettings = field(default_factory=GateSettings)
    settings_source: str = "registry defaults"
    fit_time_factor: float = DEFAULT_FIT_TIME_FACTOR
    fit_time_slack: float = DEFAULT_FIT_TIME_SLACK
    results_dir: Path = Path()
    baseline_dir: Path = Path()
    baseline_machine: str = "unknown"
    results_machine: str = "unknown"
    machines_differ: bool = False
    paired_checks: int = 0

    @property
    def failures(self) -> list[Comparison]:
        """The comparisons with verdict ``FAIL``."""
        return [c for c in self.comparisons if c.verdict == FAIL]

    @property
    def warnings(self) -> list[Comparison]:
        """The comparisons with verdict ``WARN``."""
        return [c for c in self.comparisons if c.verdict == WARN]

    @property
    def passed(self) -> bool:
        """True when no comparison failed (warnings do not fail the gate)."""
        return not self.failures

    def failing_models(self) -> dict[str, list[str]]:
        """``"label (dataset)"`` -> its failed checks, in table order."""
        out: dict[str, list[str]] = {}
        for c in self.failures:
            key = f"{c.label or '(dataset)'} ({c.dataset})"
            out.setdefault(key, [])
            if c.check not in out[key]:
                out[key].append(c.check)
        return out

    def to_frame(self) -> pd.DataFrame:
        """The comparisons as a DataFrame (one row each, columns as :class:`Comparison`)."""
        columns = list(Comparison.__dataclass_fields__)
        return pd.DataFrame([asdict(c) for c in self.comparisons], columns=columns)

    def table(self) -> str:
        """A plain-text table of every comparison, grouped by dataset, and the verdict lines."""
        s = self.settings
        margins = ", ".join(f"{name} {m.text()}" for name, m in s.margins.items())
        lines = [
            f"baseline: {self.baseline_dir}",
            f"results:  {self.results_dir}",
            f"machines: baseline {self.baseline_machine}; results {self.results_machine}"
            + (" (different CPU kinds)" if self.machines_differ else ""),
            f"per-user metrics: paired t over users (seeds averaged per user), FAIL when the "
            f"Holm-adjusted one-sided {1 - s.alpha:g} upper bound of mean(new - baseline) "
            f"(worse = negative) lies below -margin; Holm over {self.paired_checks} checks, "
            "'level' is each check's one-sided level, 'interval' the two-sided one at it, "
            f"'mdd' the smallest drop detected with {POWER:.0%} power",
            f"run-level metrics (no per-user rows): FAIL when worse by more than "
            f"max({s.spread_se:g} x seed-spread SE, margin)",
            f"margins ({self.settings_source}): {margins}",
            f"fit time warns above x{self.fit_time_factor:g} (and +{self.fit_time_slack:g} s)",
        ]
        header = (
            f"{'model':<26} {'check':<13} {'baseline':>8} {'new':>8} {'diff':>8} "
            f"{'interval':>19} {'bound':>8} {'margin':>7} {'mdd':>7} {'level':>8}  "
            f"{'verdict':<7} note"
        )
        by_dataset: dict[str, list[Comparison]] = {}
        for c in self.comparisons:
            by_dataset.setdefault(c.dataset, []).append(c)
        for dataset, rows in by_dataset.items():
            lines += ["", f"== {dataset}", header, "-" * len(header)]
            lines += [_row(c) for c in rows]
        failures, warnings = self.failures, self.warnings
        lines.append("")
        if failures:
            for name, checks in self.failing_models().items():
                lines.append(f"FAIL {name}: {', '.join(checks)}")
            lines.append(
                f"FAILED: {len(failures)} of {len(self.comparisons)} check(s) failed in "
                f"{len(self.failing_models())} model(s)"
            )
        else:
            lines.append(f"PASSED: {len(self.comparisons)} check(s), {len(warnings)} warning(s)")
        return "\n".join(lines)


def _row(c: Comparison) -> str:
    base_text, new_text = _num(c.baseline), _num(c.new)
    interval = f"[{_num(c.low, signed=True)}, {_num(c.high, signed=True)}]"
    if not np.isfinite(c.low):
        interval = "-"
    margin = _num(c.margin)
    level = f"{c.level:.2g}" if np.isfinite(c.level) else "-"
    if c.check == "fit_seconds":
        base_text, new_text = _secs(c.baseline), _secs(c.new)
        margin = f"x{c.tolerance:g}" if np.isfinite(c.tolerance) else "-"
    elif c.check == "runs":
        base_text = f"{c.baseline_seeds} seeds" if c.baseline_seeds else "-"
        new_text = f"{c.new_seeds} seeds" if c.new_seeds else "-"
    elif c.kind == "spread":
        interval = f"tol {_num(c.tolerance)}"
    return (
        f"{c.label:<26} {c.check:<13} {base_text:>8} {new_text:>8} "
        f"{_num(c.delta, signed=True):>8} {interval:>19} {_num(c.bound, signed=True):>8} "
        f"{margin:>7} {_num(c.mdd):>7} {level:>8}  {c.verdict:<7} {c.note}"
    ).rstrip()


def _cpu(manifest: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(model name, family and instruction sets)`` from a manifest; None if unknown."""
    env = manifest.get("environment")
    if not isinstance(env, Mapping) or not env.get("cpu"):
        return None
    return str(env["cpu"]), cpu_details(env)


def _machine(cpu: tuple[str, str] | None) -> str:
    """The CPU a results folder was made on, in words."""
    if cpu is None:
        return "unknown"
    name, details = cpu
    return f"{name} ({details})" if details else name


def _machines_differ(base: tuple[str, str] | None, new: tuple[str, str] | None) -> bool:
    if base is None or new is None:
        return False
    if not base[1] or not new[1]:
        return base[0] != new[0]  # one side predates the details: names only
    return base != new


def _secs(x: float) -> str:
    return f"{x:.3g} s" if x is not None and np.isfinite(x) else "-"


def _num(x: float, *, signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    if abs(x) < 5e-5:
        x = 0.0  # no "-0.0000"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _prepare(runs: pd.DataFrame, where: Path) -> pd.DataFrame:
    missing = {"run_id", "label", "status"} - set(runs.columns)
    if missing:
        raise ResultsError(f"{where}: runs.csv lacks column(s) {sorted(missing)}")
    runs = runs.copy()
    runs["run_id"] = runs["run_id"].astype(str)
    # Results written before labels were canonical call a default-preset run by
    # its bare name: read "torch-bilinear" as "torch-bilinear:fast".
    from bench.registry import canonical_label, default_registry

    registry = default_registry(plugins=False)
    runs["label"] = [canonical_label(label, registry) for label in runs["label"].astype(str)]
    runs["_dataset"] = [run_identity(row).text() for row in runs.to_dict("records")]
    return runs


def _per_user(tables: Mapping[str, Any]) -> pd.DataFrame:
    per_user = tables["per_user"]
    if per_user is None or per_user.empty:
        return pd.DataFrame()
    return per_user.assign(run_id=per_user["run_id"].astype(str))


def _setting(name: str, given: float | None, manifests: list[Mapping[str, Any]], default: float):
    if given is not None:
        value, source = given, "argument"
    else:
        value, source = default, "default"
        for manifest in manifests:
            if manifest.get(name) is not None:
                value, source = manifest[name], "manifest"
                break
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r} ({source})")
    return float(value)


def _hashes(rows: pd.DataFrame) -> set[str]:
    if "dataset_sha256" not in rows:
        return set()
    return {str(v) for v in rows["dataset_sha256"].dropna() if str(v)}


def _is_deterministic(rows: pd.DataFrame) -> bool:
    return (
        "deterministic" in rows
        and len(rows) > 0
        and rows["deterministic"].astype(str).str.lower().isin(["true", "1", "1.0"]).all()
    )


# -- the gate ---------------------------------------------------------------------------
@dataclass
class _Paired:
    """A per-user check waiting for Holm: where its row goes and its statistics."""

    index: int
    diff: np.ndarray
    margin: float
    p_value: float = 1.0


def regress(
    results_dir: str | Path,
    baseline_dir: str | Path,
    *,
    fit_time_factor: float | None = None,
    fit_time_slack: float = DEFAULT_FIT_TIME_SLACK,
    settings: GateSettings | None = None,
) -> RegressionOutcome:
    """Compare ``results_dir`` with ``baseline_dir`` (rules in the module docstring).

    Parameters
    ----------
    results_dir, baseline_dir : str or Path
        Results folders written by ``rsbench run``.
    fit_time_factor : float, optional
        Warn when fit time grows by more than this factor (default: the
        baseline manifest's ``fit_time_factor``, else the new one's, else 3).
    fit_time_slack : float
        Minimum absolute fit-time growth (seconds) before a warning.
    settings : GateSettings, optional
        Alpha, margins and seed-spread multiplier (default: the baseline
        manifest's ``gate`` entry, else the registry's declarations).

    Returns
    -------
    RegressionOutcome
        ``passed`` is False when any comparison failed.

    Raises
    ------
    bench.results.ResultsError
        A folder is not a results folder or cannot be read.
    ValueError
        The baseline has no successful run, or a setting is invalid.
    """
    results_dir, baseline_dir = Path(results_dir), Path(baseline_dir)
    base = load_results(baseline_dir)
    new = load_results(results_dir)
    manifests = [base["manifest"], new["manifest"]]
    if settings is None:
        settings, source = _settings_of(base["manifest"], baseline_dir)
    else:
        source = "argument"
    outcome = RegressionOutcome(
        settings=settings,
        settings_source=source,
        fit_time_factor=_setting(
            "fit_time_factor", fit_time_factor, manifests, DEFAULT_FIT_TIME_FACTOR
        ),
        fit_time_slack=_setting("fit_time_slack", fit_time_slack, [], DEFAULT_FIT_TIME_SLACK),
        results_dir=results_dir,
        baseline_dir=baseline_dir,
    )
    base_cpu, new_cpu = _cpu(base["manifest"]), _cpu(new["manifest"])
    outcome.baseline_machine, outcome.results_machine = _machine(base_cpu), _machine(new_cpu)
    outcome.machines_differ = _machines_differ(base_cpu, new_cpu)
    same_machine = base_cpu is not None and new_cpu is not None and not outcome.machines_differ
    base_runs = _prepare(base["runs"], baseline_dir)
    new_runs = _prepare(new["runs"], results_dir)
    base_ok = base_runs[base_runs["status"] == "ok"]
    if base_ok.empty:
        raise ValueError(f"{baseline_dir}: the baseline has no successful run to compare with")
    new_ok = new_runs[new_runs["status"] == "ok"]
    base_pu, new_pu = _per_user(base), _per_user(new)
    metrics = [c for c in base_runs.columns if is_quality_metric(c)]
    if not metrics:
        raise ValueError(f"{baseline_dir}: runs.csv has no quality metric column")

    comparisons = outcome.comparisons
    add = comparisons.append
    paired: list[_Paired] = []
    for which, runs, per_user in (("baseline", base_ok, base_pu), ("results", new_ok, new_pu)):
        comparisons.extend(_consistency(which, runs, per_user))
    for dataset, base_rows in base_ok.groupby("_dataset", sort=False):
        new_rows = new_ok[new_ok["_dataset"] == dataset]
        add(_dataset_check(dataset, base_rows, new_rows))
        for label, base_label in base_rows.groupby("label", sort=False):
            new_label = new_rows[new_rows["label"] == label]
            runs_row = _runs_check(dataset, label, base_label, new_label, new_runs)
            add(runs_row)
            if new_label.empty:
                continue
            base_means = _user_means(base_pu, base_label)
            new_means = _user_means(new_pu, new_label)
            for metric in metrics:
                row, pending = _quality_check(
                    settings, dataset, label, metric, base_label, new_label, base_means, new_means
                )
                if pending is not None:
                    pending.index = len(comparisons)
                    paired.append(pending)
                add(row)
            if same_machine and _is_deterministic(base_label):
                warn = _deterministic_check(dataset, label, base_label, new_label)
                if warn is not None:
                    add(warn)
            add(_time_check(outcome, dataset, label, base_label, new_label))
    outcome.paired_checks = len(paired)
    _holm(comparisons, paired, settings.alpha)
    # Labels that only the new folder has: listed, not gated.
    base_pairs = set(zip(base_ok["_dataset"], base_ok["label"]))
    for (dataset, label), rows in new_ok.groupby(["_dataset", "label"], sort=False):
        if (dataset, label) not in base_pairs:
            add(
                Comparison(
                    dataset,
                    label,
                    "runs",
                    kind="runs",
                    verdict=NEW,
                    new_seeds=len(rows),
                    note="not in the baseline (not gated)",
                )
            )
    if outcome.failures:
        log.warning(
            "regression gate: %d failure(s): %s",
            len(outcome.failures),
            ", ".join(sorted({c.label or "dataset" for c in outcome.failures})),
        )
    return outcome


def _runs_check(
    dataset: str,
    label: str,
    base_label: pd.DataFrame,
    new_label: pd.DataFrame,
    new_runs: pd.DataFrame,
) -> Comparison:
    failed = new_runs[
        (new_runs["_dataset"] == dataset)
        & (new_runs["label"] == label)
        & (new_runs["status"] != "ok")
    ]
    n_base, n_new = len(base_label), len(new_label)
    if len(failed):
        errors = "; ".join(sorted({str(e) for e in failed.get("error", pd.Series()).fillna("")}))
        return Comparison(
            dataset,
            label,
            "runs",
            kind="runs",
            verdict=FAIL,
            baseline_seeds=n_base,
            new_seeds=n_new,
            note=f"{len(failed)} failed run(s) (seeds "
            f"{', '.join(map(str, sorted(failed['seed'])))}): {errors[:200]}",
        )
    if new_label.empty:
        elsewhere = sorted(set(new_runs.loc[new_runs["label"] == label, "_dataset"]))
        note = "missing from the new results"
        if elsewhere:
            note += f" on this dataset (it ran on: {' | '.join(elsewhere)})"
        return Comparison(
            dataset, label, "runs", kind="runs", verdict=FAIL, baseline_seeds=n_base, note=note
        )
    base_seeds = sorted(base_label["seed"]) if "seed" in base_label else []
    new_seeds = sorted(new_label["seed"]) if "seed" in new_label else []
    note = "" if base_seeds == new_seeds else f"seeds: baseline {base_seeds}, new {new_seeds}"
    return Comparison(
        dataset, label, "runs", kind="runs", baseline_seeds=n_base, new_seeds=n_new, note=note
    )


def _user_means(per_user: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame | None:
    """Per-user values of a label's runs, seeds averaged per user; None without per-user rows."""
    if per_user.empty:
        return None
    ids = set(rows["run_id"].astype(str))
    mine = per_user[per_user["run_id"].isin(ids)]
    if mine.empty or set(mine["run_id"]) != ids:
        return None  # some run without per-user rows: compare run-level values instead
    numeric = [c for c in mine.columns if c not in ("run_id", "label", "seed", "user")]
    return mine.groupby("user")[numeric].mean().sort_index()


def _consistency(which: str, runs: pd.DataFrame, per_user: pd.DataFrame) -> list[Comparison]:
    """FAIL rows for runs whose runs.csv means disagree with their per-user rows."""
    if per_user.empty or runs.empty:
        return []
    columns = [
        c
        for c in runs.columns
        if c in per_user.columns
        and METRICS.is_metric(c)
        and pd.api.types.is_numeric_dtype(per_user[c])
    ]
    if not columns:
        return []
    means = per_user.groupby("run_id")[columns].mean()
    out = []
    for (dataset, label), rows in runs.groupby(["_dataset", "label"], sort=False):
        bad = []
        for row in rows.to_dict("records"):
            run_id = str(row["run_id"])
            if run_id not in means.index:
                continue
            for column in columns:
                stated = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iloc[0]
                measured = means.at[run_id, column]
                if not (np.isfinite(stated) and np.isfinite(measured)):
                    if np.isfinite(stated) != np.isfinite(measured):
                        bad.append(f"{column} {stated} vs {measured} (run {run_id[:8]})")
                    continue
                if abs(stated - measured) > CONSISTENCY_TOLERANCE:
                    bad.append(f"{column} {stated:.6f} vs {measured:.6f} (run {run_id[:8]})")
        if bad:
            out.append(
                Comparison(
                    dataset,
                    label,
                    "consistency",
                    kind="consistency",
                    verdict=FAIL,
                    note=f"{which} runs.csv means differ from their per-user rows by more than "
                    f"{CONSISTENCY_TOLERANCE:g}: {'; '.join(bad[:3])}"
                    + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""),
                )
            )
    return out


def _dataset_check(dataset: str, base_rows: pd.DataFrame, new_rows: pd.DataFrame) -> Comparison:
    base_hash, new_hash = _hashes(base_rows), _hashes(new_rows)
    if new_rows.empty:
        return Comparison(
            dataset,
            "",
            "dataset",
            kind="dataset",
            verdict=FAIL,
            note="no successful new run on this dataset",
        )
    if base_hash == new_hash:
        return Comparison(
            dataset, "", "dataset", kind="dataset", note=f"same sha256 {_short(base_hash)}"
        )
    from bench.datasets import is_generated

    names = set(base_rows["dataset"].astype(str)) if "dataset" in base_rows else set()
    synthetic = bool(names) and all(is_generated(name) for name in names)
    text = f"sha256 {_short(base_hash)} -> {_short(new_hash)}"
    if synthetic:
        return Comparison(
            dataset,
            "",
            "dataset",
            kind="dataset",
            verdict=WARN,
            note=f"{text}; synthetic with the same spec, compared anyway",
        )
    return Comparison(
        dataset,
        "",
        "dataset",
        kind="dataset",
        verdict=FAIL,
        note=f"{text}: a different dataset is not comparable",
    )


def _short(hashes: set[str]) -> str:
    return ",".join(sorted(h[:12] for h in hashes)) or "none"


def _run_values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in rows:
        return np.array([], dtype=np.float64)
    return pd.to_numeric(rows[metric], errors="coerce").to_numpy(np.float64)


def _quality_check(
    settings: GateSettings,
    dataset: str,
    label: str,
    metric: str,
    base_label: pd.DataFrame,
    new_label: pd.DataFrame,
    base_means: pd.DataFrame | None,
    new_means: pd.DataFrame | None,
) -> tuple[Comparison, _Paired | None]:
    n_base, n_new = len(base_label), len(new_label)
    common = {"dataset": dataset, "label": label, "check": metric}
    seeds = {"baseline_seeds": n_base, "new_seeds": n_new}
    base_values = _run_values(base_label, metric)
    base_values = base_values[np.isfinite(base_values)]
    if base_values.size == 0:
        return Comparison(**common, **seeds, note="no baseline value (not gated)"), None
    baseline = float(base_values.mean())
    margin = settings.margin(metric).amount(baseline)
    new_values = _run_values(new_label, metric)
    if new_values.size == 0 or not np.isfinite(new_values).all():
        what = "missing from" if metric not in new_label else "non-finite in"
        note = f"metric {what} the new results"
        return Comparison(
            **common, baseline=baseline, margin=margin, verdict=FAIL, note=note, **seeds
        ), None
    value = float(new_values.mean())
    higher = METRICS.higher_is_better(metric) if METRICS.is_metric(metric) else True
    sign = 1.0 if higher else -1.0
    delta = sign * (value - baseline)
    found = METRICS.metric_of(metric)
    per_user_metric = found is not None and found[0].scope == "user"
    if (
        per_user_metric
        and base_means is not None
        and new_means is not None
        and metric in base_means
        and metric in new_means
    ):
        joined = pd.concat(
            {"new": new_means[metric], "base": base_means[metric]}, axis=1, join="inner"
        ).dropna()
        diff = sign * (joined["new"].to_numpy() - joined["base"].to_numpy())
        if diff.size >= 2:
            row = Comparison(
                **common,
                kind="paired",
                baseline=baseline,
                new=value,
                delta=delta,
                margin=margin,
                n_users=int(diff.size),
                **seeds,
            )
            return row, _Paired(index=-1, diff=diff, margin=margin)
    # Run level: the seeds' means, the seed spread of both folders, the margin as floor.
    se = _spread_se(base_values, new_values, deterministic=_is_deterministic(base_label))
    tolerance = max(settings.spread_se * se, margin)
    verdict = FAIL if delta < -tolerance else OK
    note = "run level (no per-user rows): seed spread and margin"
    if verdict == FAIL:
        note = f"worse by {-delta:.4f} > {tolerance:.4f}; " + note
    return Comparison(
        **common,
        kind="spread",
        baseline=baseline,
        new=value,
        delta=delta,
        margin=margin,
        tolerance=tolerance,
        se=se,
        verdict=verdict,
        note=note,
        **seeds,
    ), None


def _spread_se(base: np.ndarray, new: np.ndarray, *, deterministic: bool) -> float:
    """Standard error of ``mean(new) - mean(base)`` from the seeds' spread (pooled variance)."""
    if deterministic:
        return 0.0
    dof = (base.size - 1) + (new.size - 1)
    if dof < 1:
        return 0.0
    squares = ((base - base.mean()) ** 2).sum() + ((new - new.mean()) ** 2).sum()
    return float(math.sqrt(squares / dof) * math.sqrt(1 / base.size + 1 / new.size))


def _holm(comparisons: list[Comparison], paired: list[_Paired], alpha: float) -> None:
    """Decide every per-user check at once: one-sided paired t, Holm over all of them."""
    m = len(paired)
    if not m:
        return
    stats = []
    for check in paired:
        diff = check.diff
        n = diff.size
        mean = float(diff.mean())
        sd = float(diff.std(ddof=1))
        se = sd / math.sqrt(n)
        if not np.any(diff):
            p = 1.0  # identical per user: nothing changed
        elif se == 0.0:
            p = 0.0 if mean < -check.margin else 1.0
        else:
            p = float(scipy.stats.t.cdf((mean + check.margin) / se, n - 1))
        check.p_value = p
        stats.append((mean, se, n))
    pvalues = np.array([c.p_value for c in paired])
    order = np.argsort(pvalues, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * pvalues[order]))
    p_holm = np.empty(m)
    p_holm[order] = adjusted
    rejected = p_holm < alpha
    n_rejected = int(rejected.sum())
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    for j, (check, (mean, se, n)) in enumerate(zip(paired, stats)):
        # Holm-compatible levels: rejected at step k -> alpha/(m-k); the rest alpha/(m-R).
        level = alpha / (m - rank[j]) if rejected[j] else alpha / (m - n_rejected)
        one = float(scipy.stats.t.ppf(1 - level, n - 1))
        two = float(scipy.stats.t.ppf(1 - level / 2, n - 1))
        power = float(scipy.stats.t.ppf(POWER, n - 1))
        identical = not np.any(check.diff)
        row = comparisons[check.index]
        note = "identical per user" if identical else ""
        if rejected[j]:
            note = f"worse by {-mean:.4f} (bound {mean + one * se:+.4f} < -{check.margin:.4f})"
        comparisons[check.index] = Comparison(
            **{
                **asdict(row),
                "delta": mean,
                "low": mean - two * se,
                "high": mean + two * se,
                "bound": mean + one * se,
                "mdd": check.margin + (one + power) * se,
                "level": level,
                "p_value": check.p_value,
                "p_holm": float(p_holm[j]),
                "se": se,
                "verdict": FAIL if rejected[j] else OK,
                "note": note,
            }
        )


def _deterministic_check(
    dataset: str, label: str, base_label: pd.DataFrame, new_label: pd.DataFrame
) -> Comparison | None:
    """A WARN row when a deterministic label's numbers changed on the same machine kind."""
    changed = []
    for column in base_label.columns:
        if not METRICS.is_metric(column) or column not in new_label:
            continue
        before = _run_values(base_label, column)
        after = _run_values(new_label, column)
        if before.size and after.size and before.mean() != after.mean():
            changed.append(f"{column} {before.mean():.6g} -> {after.mean():.6g}")
    if not changed:
        return None
    return Comparison(
        dataset,
        label,
        "deterministic",
        kind="deterministic",
        verdict=WARN,
        note=f"deterministic {label} changed on the same machine kind: "
        + "; ".join(changed[:3])
        + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""),
    )


def _time_check(
    outcome: RegressionOutcome,
    dataset: str,
    label: str,
    base_label: pd.DataFrame,
    new_label: pd.DataFrame,
) -> Comparison:
    factor = outcome.fit_time_factor
    common = {"dataset": dataset, "label": label, "check": "fit_seconds", "kind": "time"}
    seeds = {"baseline_seeds": len(base_label), "new_seeds": len(new_label)}
    if "fit_seconds" not in base_label or "fit_seconds" not in new_label:
        return Comparison(
            **common, tolerance=factor, verdict=WARN, note="fit_seconds missing", **seeds
        )
    baseline = float(pd.to_numeric(base_label["fit_seconds"], errors="coerce").mean())
    value = float(pd.to_numeric(new_label["fit_seconds"], errors="coerce").mean())
    delta = value - baseline
    verdict, note = OK, ""
    if not (np.isfinite(baseline) and np.isfinite(value)):
        verdict, note = WARN, "fit_seconds not finite"
    elif value > factor * baseline and delta >= outcome.fit_time_slack:
        ratio = value / baseline if baseline > 0 else math.inf
        verdict, note = WARN, f"fit time x{ratio:.2f} > x{factor:g}"
    return Comparison(
        **common,
        baseline=baseline,
        new=value,
        delta=delta,
        tolerance=factor,
        verdict=verdict,
        note=note,
        **seeds,
    )
