"""The execution wing: what a run is, how one runs, where runs execute, the session loop.

``spec``
    :class:`RunSpec` and its two keys (``run_id``, ``setting_key``), defined once.
``runner``
    :class:`Runner`: one spec in this process (fit, time, evaluate, tidy results).
``isolation``
    One run in a fresh child process, watched, limited and killable.
``executors``
    Where runs execute (``local``, ``process``, ``ray``), behind one interface;
    each executor declares its own options.
``session``
    The one loop of ``rsbench run`` and of the tuner's final runs.
``tuning``, ``tune_space``
    Equal-budget tuning with Optuna (``bench.tune(...)`` in the Python API).

Data flows one way: specs -> executor -> runner -> results -> store.
"""

from bench.execution.runner import Runner, RunResult, StopRun
from bench.execution.session import Execution, SessionOutcome, run_session
from bench.execution.spec import RunSpec, expand_specs, once_if_deterministic

__all__ = [
    "Execution",
    "RunResult",
    "RunSpec",
    "Runner",
    "SessionOutcome",
    "StopRun",
    "expand_specs",
    "once_if_deterministic",
    "run_session",
]
