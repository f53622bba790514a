"""Search spaces of ``rsbench tune``: declared as plain dicts, checked, sampled by Optuna.

A space maps a hyperparameter name to one of::

    {"type": "float", "low": 1.0, "high": 1e4, "log": true}
    {"type": "int", "low": 16, "high": 256, "log": true}      # "step" (default 1) if not log
    {"type": "categorical", "choices": [64, 128, 256]}

Any entry may add ``"when": {"negatives": "hard"}`` (or a list of values): the
parameter is suggested only when the other parameter (sampled earlier or fixed
by the preset) has that value; otherwise it keeps its preset value. The dicts
are JSON/TOML-friendly, so a TOML suite can override a space entry by
entry. Nothing here imports Optuna at module level.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_GRID", "Param", "SearchSpace"]

TYPES = ("float", "int", "categorical")
KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
#: Finite spaces up to this many points are enumerated instead of sampled.
MAX_GRID = 10_000


def _number(value: Any, where: str, *, integer: bool = False) -> float | int:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(
            f"{where} must be {'an integer' if integer else 'a finite number'}, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Param:
    """One dimension of a :class:`SearchSpace` (see the module docstring)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @classmethod
    def parse(cls, name: str, spec: Any, where: str) -> Param:
        """Check one declared entry; errors name the parameter and ``where``."""
        at = f"{where}: search space entry {name!r}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{at} must be a table, got {spec!r}")
        unknown = sorted(set(spec) - KEYS)
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {unknown}; allowed: {sorted(KEYS)}")
        kind = spec.get("type")
        if kind not in TYPES:
            raise ValueError(f"{at}: type must be one of {', '.join(TYPES)}, got {kind!r}")
        when = spec.get("when", {})
        if not isinstance(when, Mapping) or not all(isinstance(k, str) for k in when):
            raise ValueError(f"{at}: 'when' must be a table of parameter = value(s), got {when!r}")
        when_t = tuple(
            (k, tuple(v) if isinstance(v, (list, tuple)) else (v,)) for k, v in sorted(when.items())
        )
        if name in dict(when_t):
            raise ValueError(f"{at}: 'when' cannot refer to the parameter itself")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"{at}: log must be true or false, got {log!r}")
        if kind == "categorical":
            extra = sorted(set(spec) & {"low", "high", "log", "step"})
            if extra:
                raise ValueError(f"{at}: a categorical entry takes 'choices', not {extra}")
            choices = spec.get("choices")
            if not isinstance(choices, (list, tuple)) or not choices:
                raise ValueError(f"{at}: choices must be a non-empty list, got {choices!r}")
            for choice in choices:
                if choice is not None and not isinstance(choice, (bool, int, float, str)):
                    raise ValueError(f"{at}: choice {choice!r} is not a number, string or bool")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError(f"{at}: choices repeat a value: {list(choices)}")
            return cls(name, kind, choices=tuple(choices), when=when_t)
        if "choices" in spec:
            raise ValueError(f"{at}: only a categorical entry takes 'choices'")
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{at}: a {kind} entry needs 'low' and 'high'")
        integer = kind == "int"
        low = _number(spec["low"], f"{at}: low", integer=integer)
        high = _number(spec["high"], f"{at}: high", integer=integer)
        if not low < high:
            raise ValueError(f"{at}: low must be below high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            raise ValueError(f"{at}: a log scale needs low > 0, got low={low!r}")
        step = spec.get("step")
        if step is not None:
            if not integer:
                raise ValueError(f"{at}: step applies to int entries only")
            step = _number(step, f"{at}: step", integer=True)
            if step < 1 or log:
                raise ValueError(f"{at}: step must be >= 1 and cannot be combined with log")
        return cls(name, kind, low, high, log, step, when=when_t)

    def to_dict(self) -> dict[str, Any]:
        """The declared form (round-trips through :meth:`parse`)."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) if len(v) > 1 else v[0] for k, v in self.when}
        return out

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the ``when`` condition holds for the parameter values so far."""
        return all(values.get(k) in allowed for k, allowed in self.when)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this dimension."""
        if self.type == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices) or any(
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and isinstance(c, (int, float))
                and not isinstance(c, bool)
                and value == c
                for c in self.choices
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and int(value) != value:
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or (value - self.low) % self.step == 0

    def size(self) -> float:
        """Number of points (``inf`` for a float range)."""
        if self.type == "categorical":
            return len(self.choices)
        if self.type == "int":
            return (self.high - self.low) // (self.step or 1) + 1
        return math.inf

    def points(self) -> list[Any]:
        """Every point of a finite dimension, in order."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        raise ValueError(f"parameter {self.name!r} is a float range: it has no finite points")

    def suggest(self, trial: Any) -> Any:
        """Draw this dimension from an Optuna ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(
                self.name, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


class SearchSpace:
    """An ordered set of :class:`Param`; conditions only look at earlier or fixed parameters.

    Parameters
    ----------
    declared : mapping of str to dict
        The declared space (registry entry, then TOML overrides).
    where : str
        Named in every error (e.g. ``"model 'ease'"``).
    """

    def __init__(self, declared: Mapping[str, Any], where: str = "search space") -> None:
        if not isinstance(declared, Mapping):
            raise ValueError(f"{where}: a search space must be a table, got {declared!r}")
        params = [Param.parse(name, spec, where) for name, spec in declared.items()]
        # Unconditional first, then conditional ones whose conditions are resolvable.
        ordered: list[Param] = []
        pending = sorted(params, key=lambda p: (bool(p.when), p.name))
        names = {p.name for p in params}
        while pending:
            placed = {p.name for p in ordered}
            ready = [p for p in pending if all(k not in names or k in placed for k, _ in p.when)]
            if not ready:
                raise ValueError(
                    f"{where}: circular 'when' conditions among {[p.name for p in pending]}"
                )
            ordered.extend(ready)
            pending = [p for p in pending if p not in ready]
        self.params: tuple[Param, ...] = tuple(ordered)
        self.where = where

    def __len__(self) -> int:
        return len(self.params)

    def names(self) -> list[str]:
        """Parameter names in suggestion order."""
        return [p.name for p in self.params]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The space as declared dicts, in suggestion order."""
        return {p.name: p.to_dict() for p in self.params}

    def check_values(self, values: Mapping[str, Any], what: str) -> None:
        """Raise ``ValueError`` unless ``values`` (e.g. the preset) lie inside the space."""
        for p in self.params:
            if not p.active(values):
                continue
            if p.name not in values:
                raise ValueError(
                    f"{self.where}: {what} has no value for tuned parameter {p.name!r}"
                )
            if not p.contains(values[p.name]):
                raise ValueError(
                    f"{self.where}: {what} sets {p.name}={values[p.name]!r}, outside its search "
                    f"space {p.to_dict()}; widen the space so that it can be the first trial"
                )

    def active_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The tuned parameters of a full parameter dict (those whose condition holds)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active({**values, **out}) and p.name in values:
                out[p.name] = values[p.name]
        return out

    def suggest(self, trial: Any, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """Draw every active parameter from ``trial``; ``fixed`` are the other parameters."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active({**fixed, **out}):
                out[p.name] = p.suggest(trial)
        return out

    def size(self, fixed: Mapping[str, Any]) -> float:
        """Number of distinct configurations (``inf`` when any active dimension is a float range).

        Conditional dimensions are counted only where their condition holds.
        """
        if any(p.type == "float" for p in self.params):
            return math.inf
        count = 0
        for _ in itertools.islice(self.grid(fixed), MAX_GRID + 1):
            count += 1
        return count if count <= MAX_GRID else math.inf

    def grid(self, fixed: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every configuration of a finite space, in a fixed order (conditions respected)."""

        def walk(i: int, chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(self.params):
                yield dict(chosen)
                return
            p = self.params[i]
            if not p.active({**fixed, **chosen}):
                yield from walk(i + 1, chosen)
                return
            for value in p.points():
                chosen[p.name] = value
                yield from walk(i + 1, chosen)
                del chosen[p.name]

        return walk(0, {})
