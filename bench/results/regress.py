"""The regression gate: compare a results folder with a baseline folder, metric by metric.

Rules (``rsbench regress RESULTS --baseline BASELINE``):

* **What is compared.** Every successful label (``model`` or
  ``model:preset``) of the baseline, on every dataset it ran on, and every
  column of the baseline's ``runs.csv`` that the metric registry
  (:data:`metrics.registry.METRICS`) knows as a gated metric, in the
  direction the registry declares. A dataset is identified by
  :class:`bench.results.tables.ProtocolKey` (the run spec's ``dataset,
  split, min_rating, dataset_options, stage`` plus the ``ties`` and
  ``exclude`` policies), the same identity the report groups by; runs of the
  same label on another dataset or protocol do not count.
* **Means.** The baseline and new values are the means over seeds of the
  per-run metric means in ``runs.csv`` (successful runs only).
* **Standard error.** With two or more baseline seeds, ``se = std(run means,
  ddof=1) / sqrt(n_seeds)`` (the seed-to-seed spread). With one seed there is
  no spread, so the per-user standard error of the mean is used instead
  (``std(per-user values, ddof=1) / sqrt(n_users)`` from
  ``per_user.parquet``); without per-user rows ``se = 0`` (the floor rules).
  A deterministic model (``deterministic`` column) has no seed-to-seed
  spread: ``se = 0`` and the floor is its tolerance.
* **Tolerance.** ``max(tolerance_se * se, tolerance_floor)``, both read from
  the baseline's ``manifest.json`` (defaults 3 and 0.005) and overridable by
  arguments. A metric **fails** when ``new < baseline - tolerance``; a
  higher new value always passes.
* **Fit time** only warns: when the new mean fit seconds exceed
  ``fit_time_factor`` times the baseline's (factor from the argument, else
  the baseline manifest's ``fit_time_factor``, else the new manifest's,
  else 3) *and* grew by at least ``fit_time_slack`` seconds (default 0.25 s,
  so millisecond fits do not warn on scheduling noise).
* **Failures, never silent passes**: a baseline label missing from the new
  folder (on that dataset), a metric column missing or non-finite in the new
  runs, any failed new run of a baseline label, and a dataset whose content
  hash differs between the two folders. A changed hash is accepted (as a
  warning) only for generated datasets (``synthetic``), whose identity is their generator
  spec (the same options were compared). Labels only in the new folder are
  listed as ``new`` and not gated. A baseline without any successful run is
  an error (``ValueError``): there would be nothing to gate.
* **Machines.** The table names the CPU each folder was made on (model,
  family, vector instruction sets, from the manifests' ``environment``) and
  adds a note when they differ: kernels picked by instruction set can move a
  trained model's results in the last bits, so such a failure may be the
  machine rather than the code. The note does not change any verdict.
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

from bench.environment import cpu_details
from bench.results.store import ResultsError, load_results
from bench.results.tables import run_identity
from metrics.registry import METRICS, MetricRegistry

__all__ = [
    "Comparison",
    "RegressionOutcome",
    "is_quality_metric",
    "regress",
]

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_SE = 3.0
DEFAULT_TOLERANCE_FLOOR = 0.005
DEFAULT_FIT_TIME_FACTOR = 3.0
DEFAULT_FIT_TIME_SLACK = 0.25

OK, FAIL, WARN, NEW = "ok", "FAIL", "WARN", "new"


def is_quality_metric(column: str, registry: MetricRegistry = METRICS) -> bool:
    """Whether a ``runs.csv`` column is a gated metric of the registry (any cut-off)."""
    found = registry.metric_of(str(column))
    return found is not None and found[0].gated


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
        on each side; fails when missing or failed) or ``"dataset"`` (the
        content hash).
    baseline, new : float
        The compared values (NaN where not applicable).
    delta : float
        ``new - baseline``.
    tolerance : float
        The allowed drop (quality) or the allowed factor (fit time).
    verdict : str
        ``"ok"``, ``"FAIL"``, ``"WARN"`` or ``"new"``.
    note : str
        Why, in words.
    baseline_seeds, new_seeds : int
        Number of successful runs averaged on each side.
    se : float
        The baseline standard error behind ``tolerance``.
    """

    dataset: str
    label: str
    check: str
    baseline: float = math.nan
    new: float = math.nan
    delta: float = math.nan
    tolerance: float = math.nan
    verdict: str = OK
    note: str = ""
    baseline_seeds: int = 0
    new_seeds: int = 0
    se: float = math.nan


@dataclass
class RegressionOutcome:
    """Every comparison the gate made, with the settings it used.

    Attributes
    ----------
    comparisons : list of Comparison
    tolerance_se, tolerance_floor, fit_time_factor, fit_time_slack : float
        The settings applied.
    results_dir, baseline_dir : Path
    baseline_machine, results_machine : str
        The CPU each folder was made on, from its manifest's ``environment``
        (model name, family and vector instruction sets; ``"unknown"`` where
        the manifest does not say).
    machines_differ : bool
        True when both manifests name their CPU and the two differ (where
        only one records the family and instruction sets, a folder made
        before they were recorded, only the model names are compared).
    """

    comparisons: list[Comparison] = field(default_factory=list)
    tolerance_se: float = DEFAULT_TOLERANCE_SE
    tolerance_floor: float = DEFAULT_TOLERANCE_FLOOR
    fit_time_factor: float = DEFAULT_FIT_TIME_FACTOR
    fit_time_slack: float = DEFAULT_FIT_TIME_SLACK
    results_dir: Path = Path()
    baseline_dir: Path = Path()
    baseline_machine: str = "unknown"
    results_machine: str = "unknown"
    machines_differ: bool = False

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

    def to_frame(self) -> pd.DataFrame:
        """The comparisons as a DataFrame (one row each, columns as :class:`Comparison`)."""
        columns = list(Comparison.__dataclass_fields__)
        return pd.DataFrame([asdict(c) for c in self.comparisons], columns=columns)

    def table(self) -> str:
        """A plain-text table of every comparison, grouped by dataset, and a verdict line."""
        lines = [
            f"baseline: {self.baseline_dir}",
            f"results:  {self.results_dir}",
            f"tolerance = max({self.tolerance_se:g} x baseline SE, {self.tolerance_floor:g}); "
            f"fit time warns above x{self.fit_time_factor:g} "
            f"(and +{self.fit_time_slack:g} s)",
            f"machines: baseline {self.baseline_machine}; results {self.results_machine}",
        ]
        if self.machines_differ:
            lines.append(_MACHINES_DIFFER)
        header = (
            f"{'model':<26} {'check':<14} {'baseline':>10} {'new':>10} {'delta':>10} "
            f"{'tolerance':>10}  {'verdict':<7} note"
        )
        by_dataset: dict[str, list[Comparison]] = {}
        for c in self.comparisons:
            by_dataset.setdefault(c.dataset, []).append(c)
        for dataset, rows in by_dataset.items():
            lines += ["", f"== {dataset}", header, "-" * len(header)]
            for c in rows:
                base_text, new_text = _num(c.baseline), _num(c.new)
                tol = _num(c.tolerance)
                if c.check == "fit_seconds":
                    tol = f"x{c.tolerance:g}" if np.isfinite(c.tolerance) else "-"
                    base_text, new_text = _secs(c.baseline), _secs(c.new)
                elif c.check == "runs":
                    # Runs rows count successful seeds.
                    base_text = f"{c.baseline_seeds} seeds" if c.baseline_seeds else "-"
                    new_text = f"{c.new_seeds} seeds" if c.new_seeds else "-"
                lines.append(
                    (
                        f"{c.label:<26} {c.check:<14} {base_text:>10} {new_text:>10} "
                        f"{_num(c.delta, signed=True):>10} {tol:>10}  {c.verdict:<7} {c.note}"
                    ).rstrip()
                )
        failures, warnings = self.failures, self.warnings
        lines.append("")
        if failures:
            by_label: dict[str, list[str]] = {}
            for c in failures:
                by_label.setdefault(c.label or "(dataset)", []).append(c.check)
            names = "; ".join(
                f"{label} [{', '.join(dict.fromkeys(checks))}]"
                for label, checks in by_label.items()
            )
            lines.append(
                f"FAILED: {len(failures)} of {len(self.comparisons)} check(s) failed: {names}"
            )
        else:
            lines.append(f"PASSED: {len(self.comparisons)} check(s), {len(warnings)} warning(s)")
        return "\n".join(lines)


_MACHINES_DIFFER = (
    "note: the two folders were made on different CPU kinds. Libraries that pick their "
    "kernels by instruction set (OpenBLAS, oneDNN/XLA under Keras, numba) can change a "
    "trained model's results in the last bits, so a failure may be the machine, not the "
    "code: regenerate the baseline on this machine kind to tell them apart."
)


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


def _setting(
    name: str, given: float | None, manifests: list[Mapping[str, Any]], default: float
) -> float:
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


def _per_user_se(per_user: pd.DataFrame, run_id: str, metric: str) -> float:
    if per_user.empty or metric not in per_user:
        return 0.0
    values = per_user.loc[per_user["run_id"] == run_id, metric].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return 0.0
    return float(values.std(ddof=1) / math.sqrt(values.size))


def regress(
    results_dir: str | Path,
    baseline_dir: str | Path,
    *,
    fit_time_factor: float | None = None,
    tolerance_se: float | None = None,
    tolerance_floor: float | None = None,
    fit_time_slack: float = DEFAULT_FIT_TIME_SLACK,
) -> RegressionOutcome:
    """Compare ``results_dir`` with ``baseline_dir`` (rules in the module docstring).

    Parameters
    ----------
    results_dir, baseline_dir : str or Path
        Results folders written by ``rsbench run``.
    fit_time_factor : float, optional
        Warn when fit time grows by more than this factor (default: the
        baseline manifest's ``fit_time_factor``, else the new one's, else 3).
    tolerance_se, tolerance_floor : float, optional
        Override the baseline manifest's settings (defaults 3 and 0.005).
    fit_time_slack : float
        Minimum absolute fit-time growth (seconds) before a warning.

    Returns
    -------
    RegressionOutcome
        ``passed`` is False when any comparison failed.

    Raises
    ------
    bench.results.ResultsError
        A folder is not a results folder or cannot be read.
    ValueError
        The baseline has no successful run, or a setting is negative/non-finite.
    """
    results_dir, baseline_dir = Path(results_dir), Path(baseline_dir)
    base = load_results(baseline_dir)
    new = load_results(results_dir)
    manifests = [base["manifest"], new["manifest"]]
    outcome = RegressionOutcome(
        tolerance_se=_setting("tolerance_se", tolerance_se, manifests[:1], DEFAULT_TOLERANCE_SE),
        tolerance_floor=_setting(
            "tolerance_floor", tolerance_floor, manifests[:1], DEFAULT_TOLERANCE_FLOOR
        ),
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
    base_runs = _prepare(base["runs"], baseline_dir)
    new_runs = _prepare(new["runs"], results_dir)
    base_ok = base_runs[base_runs["status"] == "ok"]
    if base_ok.empty:
        raise ValueError(f"{baseline_dir}: the baseline has no successful run to compare with")
    new_ok = new_runs[new_runs["status"] == "ok"]
    base_per_user = base["per_user"]
    if not base_per_user.empty:
        base_per_user = base_per_user.assign(run_id=base_per_user["run_id"].astype(str))
    metrics = [c for c in base_runs.columns if is_quality_metric(c)]
    if not metrics:
        raise ValueError(f"{baseline_dir}: runs.csv has no quality metric column")

    add = outcome.comparisons.append
    for dataset, base_rows in base_ok.groupby("_dataset", sort=False):
        new_rows = new_ok[new_ok["_dataset"] == dataset]
        add(_dataset_check(dataset, base_rows, new_rows))
        for label, base_label in base_rows.groupby("label", sort=False):
            new_label = new_rows[new_rows["label"] == label]
            failed = new_runs[
                (new_runs["_dataset"] == dataset)
                & (new_runs["label"] == label)
                & (new_runs["status"] != "ok")
            ]
            n_base, n_new = len(base_label), len(new_label)
            if len(failed):
                errors = "; ".join(
                    sorted({str(e) for e in failed.get("error", pd.Series()).fillna("")})
                )[:200]
                add(
                    Comparison(
                        dataset,
                        label,
                        "runs",
                        verdict=FAIL,
                        baseline_seeds=n_base,
                        new_seeds=n_new,
                        note=f"{len(failed)} failed run(s) (seeds "
                        f"{', '.join(map(str, sorted(failed['seed'])))}): {errors}",
                    )
                )
            if new_label.empty:
                elsewhere = sorted(set(new_runs.loc[new_runs["label"] == label, "_dataset"]))
                note = "missing from the new results"
                if elsewhere:
                    note += f" on this dataset (it ran on: {' | '.join(elsewhere)})"
                if not len(failed):
                    add(
                        Comparison(
                            dataset, label, "runs", verdict=FAIL, baseline_seeds=n_base, note=note
                        )
                    )
                continue
            if not len(failed):
                base_seeds = sorted(base_label["seed"]) if "seed" in base_label else []
                new_seeds = sorted(new_label["seed"]) if "seed" in new_label else []
                note = (
                    ""
                    if base_seeds == new_seeds
                    else (f"seeds differ: baseline {base_seeds}, new {new_seeds}")
                )
                add(
                    Comparison(
                        dataset, label, "runs", baseline_seeds=n_base, new_seeds=n_new, note=note
                    )
                )
            for metric in metrics:
                add(
                    _quality_check(
                        outcome, dataset, label, metric, base_label, new_label, base_per_user
                    )
                )
            add(_time_check(outcome, dataset, label, base_label, new_label))
    # Labels that only the new folder has: listed, not gated.
    base_pairs = set(zip(base_ok["_dataset"], base_ok["label"]))
    for (dataset, label), rows in new_ok.groupby(["_dataset", "label"], sort=False):
        if (dataset, label) not in base_pairs:
            add(
                Comparison(
                    dataset,
                    label,
                    "runs",
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
        if outcome.machines_differ:
            log.warning(
                "regression gate: the baseline was made on %s, these results on %s",
                outcome.baseline_machine,
                outcome.results_machine,
            )
    return outcome


def _dataset_check(dataset: str, base_rows: pd.DataFrame, new_rows: pd.DataFrame) -> Comparison:
    base_hash, new_hash = _hashes(base_rows), _hashes(new_rows)
    if new_rows.empty:
        return Comparison(
            dataset, "", "dataset", verdict=FAIL, note="no successful new run on this dataset"
        )
    if base_hash == new_hash:
        return Comparison(dataset, "", "dataset", note=f"same sha256 {_short(base_hash)}")
    from bench.data import is_generated

    names = set(base_rows["dataset"].astype(str)) if "dataset" in base_rows else set()
    synthetic = bool(names) and all(is_generated(name) for name in names)
    text = f"sha256 {_short(base_hash)} -> {_short(new_hash)}"
    if synthetic:
        return Comparison(
            dataset,
            "",
            "dataset",
            verdict=WARN,
            note=f"{text}; synthetic with the same spec, compared anyway",
        )
    return Comparison(
        dataset, "", "dataset", verdict=FAIL, note=f"{text}: a different dataset is not comparable"
    )


def _short(hashes: set[str]) -> str:
    return ",".join(sorted(h[:12] for h in hashes)) or "none"


def _quality_check(
    outcome: RegressionOutcome,
    dataset: str,
    label: str,
    metric: str,
    base_label: pd.DataFrame,
    new_label: pd.DataFrame,
    base_per_user: pd.DataFrame,
) -> Comparison:
    base_values = pd.to_numeric(base_label.get(metric), errors="coerce").to_numpy(float)
    base_values = base_values[np.isfinite(base_values)]
    n_base, n_new = len(base_label), len(new_label)
    if base_values.size == 0:
        return Comparison(
            dataset,
            label,
            metric,
            verdict=OK,
            baseline_seeds=n_base,
            new_seeds=n_new,
            note="no baseline value (not gated)",
        )
    baseline = float(base_values.mean())
    note = ""
    deterministic = (
        "deterministic" in base_label
        and base_label["deterministic"].astype(str).str.lower().isin(["true", "1", "1.0"]).all()
    )
    if base_values.size >= 2:
        se = float(base_values.std(ddof=1) / math.sqrt(base_values.size))
    elif deterministic:
        se, note = 0.0, "deterministic: tolerance floor"
    else:
        se = _per_user_se(base_per_user, str(base_label["run_id"].iloc[0]), metric)
        note = "one baseline seed: per-user SE"
    tolerance = max(outcome.tolerance_se * se, outcome.tolerance_floor)
    if metric not in new_label:
        return Comparison(
            dataset,
            label,
            metric,
            baseline,
            verdict=FAIL,
            tolerance=tolerance,
            baseline_seeds=n_base,
            new_seeds=n_new,
            se=se,
            note="metric missing from the new results",
        )
    new_values = pd.to_numeric(new_label[metric], errors="coerce").to_numpy(float)
    if new_values.size == 0 or not np.isfinite(new_values).all():
        return Comparison(
            dataset,
            label,
            metric,
            baseline,
            verdict=FAIL,
            tolerance=tolerance,
            baseline_seeds=n_base,
            new_seeds=n_new,
            se=se,
            note="metric missing or non-finite in the new results",
        )
    value = float(new_values.mean())
    delta = value - baseline
    higher = METRICS.higher_is_better(metric) if METRICS.is_metric(metric) else True
    worse = -delta if higher else delta
    verdict = FAIL if worse > tolerance else OK
    if verdict == FAIL:
        moved = "dropped" if higher else "rose"
        note = "; ".join(filter(None, [f"{moved} by {worse:.4f} > {tolerance:.4f}", note]))
    return Comparison(
        dataset, label, metric, baseline, value, delta, tolerance, verdict, note, n_base, n_new, se
    )


def _time_check(
    outcome: RegressionOutcome,
    dataset: str,
    label: str,
    base_label: pd.DataFrame,
    new_label: pd.DataFrame,
) -> Comparison:
    factor = outcome.fit_time_factor
    if "fit_seconds" not in base_label or "fit_seconds" not in new_label:
        return Comparison(
            dataset,
            label,
            "fit_seconds",
            tolerance=factor,
            verdict=WARN,
            note="fit_seconds missing",
            baseline_seeds=len(base_label),
            new_seeds=len(new_label),
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
        dataset,
        label,
        "fit_seconds",
        baseline,
        value,
        delta,
        factor,
        verdict,
        note,
        len(base_label),
        len(new_label),
    )
