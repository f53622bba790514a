"""Executors: run a list of run specs here, in N child processes, or as tasks on a Ray cluster.

``local``
    One run after the other in this process (or each in its own child process
    when runs are isolated).
``process``
    ``jobs`` runs at a time on this machine, each in a fresh child process; a
    child that dies mid-run is retried ``retries`` times.
``ray``
    Each run one Ray task (:mod:`bench.execution.executors.ray`).

The interface, the options each executor declares and the timing columns are
in :mod:`bench.execution.executors.base`. An executor of your own is a
subclass of :class:`Executor` in a file of its own, registered once with
:func:`register_executor`: its declared options then become TOML keys and
command-line flags, checked like the built-in ones.
"""

from __future__ import annotations

from typing import Any

from bench.execution.executors.base import (
    TIMING_COLUMNS,
    Executor,
    ExecutorError,
    ExecutorOption,
    Overlaps,
)
from bench.execution.executors.local import LocalExecutor
from bench.execution.executors.process import ProcessExecutor
from bench.execution.executors.ray import RayExecutor  # imports Ray only when it runs
from bench.execution.runner import Runner

__all__ = [
    "EXECUTORS",
    "TIMING_COLUMNS",
    "Executor",
    "ExecutorError",
    "ExecutorOption",
    "LocalExecutor",
    "Overlaps",
    "ProcessExecutor",
    "RayExecutor",
    "check_executor_options",
    "executor_options",
    "make_executor",
    "options_for",
    "register_executor",
]

#: Executor classes by name (Ray's is imported only when asked for).
EXECUTORS: dict[str, type[Executor]] = {}


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Make ``cls`` available by its ``name`` (``--executor NAME``); returns it (a decorator).

    Its :attr:`~Executor.options` become TOML keys and flags; an option key
    already declared by another executor must be the same option.
    """
    if not (isinstance(cls, type) and issubclass(cls, Executor)) or cls.name == Executor.name:
        raise TypeError(f"{cls!r} is not an Executor subclass with a name of its own")
    for option in cls.options:
        other = executor_options().get(option.key)
        if other is not None and (other.parse, other.default) != (option.parse, option.default):
            raise ValueError(
                f"executor {cls.name!r}: option {option.key!r} is parsed otherwise than "
                "the one another executor declares (one key, one meaning)"
            )
    EXECUTORS[cls.name] = cls
    return cls


def executor_options() -> dict[str, ExecutorOption]:
    """Every registered executor's options by key (``retries``, ``jobs``, ``ray_address``...)."""
    found: dict[str, ExecutorOption] = {}
    for cls in EXECUTORS.values():
        for option in cls.options:
            found.setdefault(option.key, option)
    return found


register_executor(LocalExecutor)
register_executor(ProcessExecutor)
register_executor(RayExecutor)


def check_executor_options(
    executor: object = "local", *, where: str = "", command: str = "run", **values: Any
) -> dict[str, Any]:
    """Validate executor options once, before anything runs.

    Parameters
    ----------
    executor : str
        A name of :data:`EXECUTORS`.
    where : str
        Prefix of error messages (a file name, ``"command line"``).
    command : {"run", "tune"}
        The rsbench command the options are for (an option may serve only one).
    **values
        Option values by key (``jobs``, ``ray_address``, ``retries``...);
        ``None`` means not given.

    Returns
    -------
    dict
        ``{"executor": name, key: value...}`` for every registered option, the
        defaults filled in (what manifests record).

    Raises
    ------
    ExecutorError
        Naming the offending option and value.
    """
    prefix = f"{where}: " if where else ""
    if executor not in EXECUTORS:
        raise ExecutorError(
            f"{prefix}executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    known = executor_options()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ExecutorError(f"{prefix}unknown executor option {unknown[0]!r}")
    mine = {option.key: option for option in EXECUTORS[executor].options}
    out: dict[str, Any] = {"executor": executor}
    for key, option in known.items():
        value = values.get(key)
        if value is not None:
            value = option.parse(value, f"{prefix}{key}")
        if key in mine and command in mine[key].commands:
            out[key] = option.default if value is None else value
            continue
        if value is not None and value != option.default:
            users = [
                name
                for name, cls in EXECUTORS.items()
                if any(o.key == key and command in o.commands for o in cls.options)
            ]
            needs = " or ".join(repr(name) for name in users) or "none"
            raise ExecutorError(
                f"{prefix}{key} = {value!r} needs executor {needs} (rsbench {command}; "
                f"executor {executor!r}: {EXECUTORS[executor].description})"
            )
        out[key] = option.default
    return out


def options_for(name: str, values: dict[str, Any], command: str = "run") -> dict[str, Any]:
    """The entries of ``values`` (a manifest's ``execution`` dict) that executor ``name``
    takes for ``command``."""
    keys = {o.key for o in EXECUTORS[name].options if command in o.commands}
    return {key: value for key, value in values.items() if key in keys}


def make_executor(
    name: str,
    runner: Runner,
    *,
    isolate: bool = False,
    timeout_s: float | None = None,
    max_memory_mb: float | None = None,
    log_path: str | None = None,
    command: str = "run",
    **options: Any,
) -> Executor:
    """The executor ``name`` over ``runner``; ``options`` as :func:`check_executor_options`.

    Options of other executors (as the ``execution`` dict of a manifest holds
    them) are accepted at their defaults and ignored.

    Raises
    ------
    ExecutorError
        Bad options, or ``ray`` requested without Ray installed (with the
        command that installs it).
    """
    checked = check_executor_options(name, command=command, **options)
    cls = EXECUTORS[name]
    own = {option.key: checked[option.key] for option in cls.options}
    return cls(
        runner,
        isolate=isolate,
        timeout_s=timeout_s,
        max_memory_mb=max_memory_mb,
        log_path=log_path,
        **own,
    )
