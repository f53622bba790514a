"""The one list of metric names: a metric is one function plus one :meth:`MetricRegistry.register`.

Everything that names metrics (the evaluator's columns, the runner's learning
curves, the report's tables, the CLI summary and the regression gate) asks the
registry of this module; nothing else keeps a list or a pattern of names.

A metric has a *scope*:

``"user"``
    ``compute(inputs, k)`` returns one float64 value per evaluated user of a
    block (a column of the per-user table, averaged over users afterwards).
``"catalogue"``
    ``compute(inputs, k)`` returns a partial result for one block of users
    and ``combine(partials, num_items)`` turns the partials of every block
    into one value for the run (e.g. catalogue coverage): a column of
    ``runs.csv``, but not of the per-user table.

Metrics with ``at_k`` get one column per cut-off (``name@k``); the others one
column ``name``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["METRICS", "Margin", "Metric", "MetricInputs", "MetricRegistry", "default_metrics"]

SCOPES = ("user", "catalogue")
FAMILIES = ("pairwise", "top-k", "catalogue", "descriptive")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Margin:
    """How much worse than its baseline a run may be before the regression gate fails it.

    The gate fails a check only when it is confident that the run is worse by
    *more* than this margin (see :mod:`bench.results.regress`); the margin is
    the size of a change that is not worth failing a build for.

    Parameters
    ----------
    value : float
        ``>= 0``: an amount in the metric's units (``relative=False``), or a
        fraction of the baseline's mean (``relative=True``, written ``"5%"``).
    relative : bool
        Whether ``value`` scales with the baseline's value.
    """

    value: float
    relative: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, (int, float))
            or not (math.isfinite(self.value) and self.value >= 0)
        ):
            raise ValueError(f"a margin must be a finite number >= 0, got {self.value!r}")
        if self.relative and self.value >= 1:
            raise ValueError(f"a relative margin must be below 100%, got {self.text()}")

    def amount(self, baseline: float) -> float:
        """The margin in the metric's units for a baseline mean of ``baseline``."""
        return float(self.value * abs(baseline)) if self.relative else float(self.value)

    def text(self) -> str:
        """``"0.005"`` (absolute) or ``"5%"`` (relative), for tables."""
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"

    def to_json(self) -> float | str:
        """The form TOML files and manifests use: a number (absolute) or ``"5%"``."""
        return self.text() if self.relative else self.value

    @classmethod
    def parse(cls, value: Any, where: str = "margin") -> Margin:
        """A margin from a number (absolute) or a string ``"N%"`` (relative to the baseline).

        Raises ``ValueError`` naming ``where`` for anything else.
        """
        if isinstance(value, Margin):
            return value
        try:
            if isinstance(value, str) and value.strip().endswith("%"):
                return cls(float(value.strip()[:-1]) / 100.0, relative=True)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return cls(float(value))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        raise ValueError(
            f'{where}: a margin is a number >= 0 (absolute) or a string like "5%" '
            f"(relative to the baseline), got {value!r}"
        )


@dataclass
class MetricInputs:
    """What a metric function may read for one block of users (computed lazily, cached).

    Attributes
    ----------
    ranked : object
        The tie-group ranking of :mod:`metrics.ranking` (``_Ranked``); its
        ``rows`` are the evaluated rows of the block.
    scores : numpy.ndarray, shape (n_rows, num_items)
        The block's scores.
    test, exclude : scipy.sparse.csr_matrix of bool, shape (n_rows, num_items)
        Test positives and excluded items (``exclude`` may be ``None``).
    ties : str
        The tie policy.
    item_popularity : numpy.ndarray of float64, shape (num_items,), optional
        Share of users with the item among their train positives (``None``
        when the caller did not give it; metrics that need it are skipped).
    ks : tuple of int
        Every cut-off of this evaluation (a pass may serve them all at once).
    """

    ranked: Any
    scores: np.ndarray
    test: Any
    exclude: Any
    ties: str
    item_popularity: np.ndarray | None = None
    ks: tuple[int, ...] = ()
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per block and ``key`` (metrics sharing a pass share its result)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Parameters
    ----------
    name : str
        Base name (``"auc"``, ``"precision"``); column ``name@k`` when ``at_k``.
    compute : callable
        ``compute(inputs: MetricInputs, k: int | None)`` (see the module docstring).
    at_k : bool
        One column per cut-off ``k``.
    scope : {"user", "catalogue"}
        Per-user values or one value per run.
    combine : callable, optional
        ``combine(partials, num_items) -> float`` of a catalogue metric.
    higher_is_better : bool
        Direction used by the report (best of a column) and the gate.
    headline : bool
        Shown in the report's quality table and the CLI summary (at k = 10).
    curve : bool
        Recorded in learning curves.
    needs : tuple of str
        Optional inputs the metric requires (``"item_popularity"``).
    description : str
        One line for the report's protocol section.
    kind : {"accuracy", "beyond"}
        Accuracy metrics fill the quality tables; "beyond accuracy" ones
        (coverage, popularity) get their own table.
    gated : bool
        Whether the regression gate checks the metric (a descriptive metric
        such as the popularity of recommendations has no better direction).
    family : str
        What kind of quantity the metric is, which decides how its gate
        margin is expressed: ``"pairwise"`` (a per-user share of correctly
        ordered pairs, e.g. AUC: bounded and dense, an absolute margin),
        ``"top-k"`` (a per-user quantity of the head of the ranking, e.g.
        precision@k, NDCG@k, MRR: its level varies tenfold with k and the
        dataset, so a relative margin), ``"catalogue"`` (one value per run,
        e.g. coverage@k: no per-user rows, a relative margin that is also the
        floor of its seed-spread tolerance) or ``"descriptive"`` (not gated).
    margin : Margin, optional
        The gate's margin for this metric (required when ``gated``); suites
        may override it (``[gate.margins]`` in TOML).
    """

    name: str
    compute: Callable[[MetricInputs, int | None], Any]
    at_k: bool = False
    scope: str = "user"
    combine: Callable[[Sequence[Any], int], float] | None = None
    higher_is_better: bool = True
    headline: bool = False
    curve: bool = False
    needs: tuple[str, ...] = ()
    description: str = ""
    kind: str = "accuracy"
    gated: bool = True
    family: str = "top-k"
    margin: Margin | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"metric name must match {_NAME.pattern}, got {self.name!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.scope == "catalogue" and self.combine is None:
            raise ValueError(f"catalogue metric {self.name!r} needs a combine function")
        if self.kind not in ("accuracy", "beyond"):
            raise ValueError(f"kind must be 'accuracy' or 'beyond', got {self.kind!r}")
        if not callable(self.compute):
            raise TypeError(f"compute of metric {self.name!r} must be callable")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.gated and self.margin is None:
            raise ValueError(
                f"gated metric {self.name!r} needs a margin (Margin(0.005) or "
                "Margin(0.05, relative=True)): the regression gate fails a run only when "
                "it is worse than its baseline by more than this"
            )
        if self.margin is not None and not isinstance(self.margin, Margin):
            raise TypeError(f"margin of metric {self.name!r} must be a Margin")

    def columns(self, ks: Iterable[int]) -> list[str]:
        """Column names for cut-offs ``ks``."""
        return [f"{self.name}@{k}" for k in ks] if self.at_k else [self.name]

    def column_k(self, column: str) -> int | bool | None:
        """``k`` of one of this metric's columns (``None``: no k); False for other columns."""
        if not self.at_k:
            return None if column == self.name else False
        prefix = f"{self.name}@"
        if column.startswith(prefix) and column[len(prefix) :].isdigit():
            k = int(column[len(prefix) :])
            return k if k >= 1 else False
        return False


class MetricRegistry:
    """Registered metrics in registration order (which is also the column order)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def register(self, metric: Metric) -> Metric:
        """Add ``metric``; a name registered twice raises ``ValueError``."""
        if not isinstance(metric, Metric):
            raise TypeError(f"register expects a Metric, got {type(metric).__name__}")
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def unregister(self, name: str) -> None:
        """Remove a metric (tests that register their own)."""
        if name not in self._metrics:
            raise KeyError(f"no metric {name!r}; known: {', '.join(self._metrics)}")
        del self._metrics[name]

    def __iter__(self):
        return iter(list(self._metrics.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    def get(self, name: str) -> Metric:
        """The metric registered as ``name`` (``KeyError`` lists the known ones)."""
        try:
            return self._metrics[name]
        except KeyError:
            raise KeyError(f"no metric {name!r}; known: {', '.join(self._metrics)}") from None

    def _available(self, metric: Metric, available: Iterable[str] | None) -> bool:
        return available is None or set(metric.needs) <= set(available)

    def columns(
        self, ks: Sequence[int], *, scope: str = "user", available: Iterable[str] | None = ()
    ) -> list[str]:
        """Column names of the metrics of ``scope`` whose needs are in ``available``.

        Registration order; a run of consecutive ``at_k`` metrics forms one
        block repeated per cut-off (``precision@5 .. hit@5, precision@10 ..``).
        ``available=None`` ignores the needs.
        """
        out: list[str] = []
        block: list[Metric] = []

        def flush() -> None:
            for k in ks:
                out.extend(f"{m.name}@{k}" for m in block)
            block.clear()

        for metric in self._metrics.values():
            if metric.scope != scope or not self._available(metric, available):
                continue
            if metric.at_k:
                block.append(metric)
            else:
                flush()
                out.append(metric.name)
        flush()
        return out

    def metric_of(self, column: str) -> tuple[Metric, int | None] | None:
        """``(metric, k)`` of a column name, or ``None`` when it is no metric's column."""
        for metric in self._metrics.values():
            k = metric.column_k(str(column))
            if k is not False:
                return metric, k
        return None

    def is_metric(self, column: str) -> bool:
        """Whether ``column`` is a registered metric's column (any k)."""
        return self.metric_of(column) is not None

    def margins(
        self, overrides: Mapping[str, Any] | None = None, *, where: str = "margins"
    ) -> dict[str, Margin]:
        """The regression gate's margin of every gated metric, by metric name.

        Parameters
        ----------
        overrides : mapping, optional
            Metric name or family (``"top-k"``...) -> margin (a number, or
            ``"N%"``; see :meth:`Margin.parse`). A metric's own name beats its
            family.
        where : str
            Named in errors (e.g. the TOML file and table).

        Raises
        ------
        ValueError
            An override names no gated metric or family, or is not a margin.
        """
        overrides = dict(overrides or {})
        gated = [m for m in self._metrics.values() if m.gated]
        known = {m.name for m in gated} | {m.family for m in gated}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"{where}: unknown metric or family {', '.join(map(repr, unknown))}; "
                f"gated: {', '.join(sorted(known))}"
            )
        parsed = {key: Margin.parse(value, f"{where}.{key}") for key, value in overrides.items()}
        out = {}
        for metric in gated:
            margin = parsed.get(metric.name, parsed.get(metric.family, metric.margin))
            assert margin is not None  # a gated metric declares one (checked at construction)
            out[metric.name] = margin
        return out

    def higher_is_better(self, column: str) -> bool:
        """Direction of a metric column (``KeyError`` for a non-metric column)."""
        found = self.metric_of(column)
        if found is None:
            raise KeyError(f"{column!r} is not a metric column")
        return found[0].higher_is_better

    def select(
        self,
        columns: Iterable[str],
        *,
        headline: bool = False,
        curve: bool = False,
        k: int | None = None,
        scope: str | None = None,
    ) -> list[str]:
        """The metric columns among ``columns`` (in their order) with the given flags.

        Parameters
        ----------
        columns : iterable of str
            E.g. the columns of ``runs.csv``.
        headline, curve : bool
            Keep only headline / curve metrics.
        k : int, optional
            Keep only this cut-off for ``at_k`` metrics.
        scope : str, optional
            Keep only this scope.
        """
        out = []
        for column in columns:
            found = self.metric_of(column)
            if found is None:
                continue
            metric, col_k = found
            if (headline and not metric.headline) or (curve and not metric.curve):
                continue
            if scope is not None and metric.scope != scope:
                continue
            if k is not None and metric.at_k and col_k != k:
                continue
            out.append(column)
        return out


#: The registry the whole harness reads.
METRICS = MetricRegistry()


def default_metrics() -> MetricRegistry:
    """The registry of every metric rsbench computes (:data:`METRICS`)."""
    return METRICS
