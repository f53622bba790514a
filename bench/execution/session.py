"""The session loop: check specs, skip what is done, run the rest on an executor, record.

One loop for ``rsbench run`` (:func:`bench.api.run_experiment`) and for the final
runs of ``rsbench tune`` (:func:`bench.execution.tuning.run_final`):

1. every spec is checked first (unknown names, impossible parameters: ``ValueError``
   before anything runs) and resolved to its effective parameters;
2. runs already complete in the results folder *with those parameters* are
   skipped (a changed preset or default is measured again);
3. the manifest is written, then the executor runs the rest, and each result is
   stored as it arrives (a crash loses nothing done);
4. the manifest records how the session ended and the facts of every dataset
   read, as the runs reported them (the driver never loads data for it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.execution.executors import make_executor, options_for
from bench.execution.runner import Runner, RunResult
from bench.execution.spec import RunSpec
from bench.interrupts import signal_name

__all__ = ["LOG_NAME", "Execution", "SessionOutcome", "run_session"]

log = logging.getLogger(__name__)

#: The log file every results folder gets (INFO and up, warnings, worker noise).
LOG_NAME = "rsbench.log"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Called after every finished run with (result, runs done, runs to do, seconds so far).
RunCallback = Callable[[RunResult, int, int, float], None]


@dataclass(frozen=True)
class Execution:
    """Where and how a session's runs execute (none of it is part of a run's identity).

    ``options`` is the ``execution`` dict of a manifest (``executor`` and every
    executor option, see :func:`bench.execution.executors.check_executor_options`).
    """

    options: Mapping[str, Any]
    isolate: bool = False
    timeout_s: float | None = None
    max_memory_mb: float | None = None

    @classmethod
    def of(cls, experiment: Any) -> Execution:
        """The execution settings of a :class:`bench.config.Experiment`."""
        return cls(
            options=dict(experiment.execution),
            isolate=experiment.isolate,
            timeout_s=experiment.timeout_s,
            max_memory_mb=experiment.max_memory_mb,
        )

    def manifest(self) -> dict[str, Any]:
        """The manifest's record of these settings."""
        return {
            "isolate": self.isolate,
            "timeout_s": self.timeout_s,
            "max_memory_mb": self.max_memory_mb,
            "execution": dict(self.options),
        }


@dataclass(frozen=True)
class SessionOutcome:
    """Runs executed now, skipped as already complete, and failed."""

    done: int
    skipped: int
    failed: int


def run_session(
    specs: Sequence[RunSpec],
    out: str | Path,
    *,
    runner: Runner,
    execution: Execution,
    manifest: Mapping[str, Any],
    annotations: Mapping[str, Mapping[str, Any]] | None = None,
    on_result: RunCallback | None = None,
    progress: bool = True,
    log_file: bool = True,
    quiet_workers: bool = True,
) -> SessionOutcome:
    """Run ``specs`` into the results folder ``out``; see the module docstring.

    Parameters
    ----------
    specs : sequence of RunSpec
        Canonical specs (deterministic repeats already dropped).
    runner : Runner
        Runs each spec (its registry resolves the models).
    execution : Execution
        The executor and its options, isolation and limits.
    manifest : mapping
        The manifest's fields besides the ones the session writes (``started_at``,
        ``status``, the specs, the execution settings, ``datasets``...).
    annotations : mapping, optional
        ``{run_id: {column: value}}`` set on that run's row (``label`` also on
        its per-user and curve rows) and, but for ``label``, on its entry in the
        manifest's specs (the tuner marks its runs ``tuned`` with their ``study``).
    on_result : callable, optional
        ``on_result(result, done, total, elapsed_seconds)`` after every run.
    progress : bool
        Show the runs bar.
    log_file : bool
        Append every log record of the session to ``out/rsbench.log``.
    quiet_workers : bool
        Isolated workers write their log records and their stdout/stderr
        (framework start-up noise included) to that log file, not to the
        terminal (the CLI's ``-v`` turns this off).
    """
    from bench.results import ResultStore, now_iso
    from metrics.registry import METRICS

    annotations = annotations or {}
    out = Path(out)
    effective = {spec.run_id: runner.check(spec) for spec in specs}
    store = ResultStore(out)
    handler = _attach_log_file(out / LOG_NAME) if log_file else None
    try:
        # A completed run is skipped only if it was made with the parameters the
        # spec resolves to now (a changed preset or default must be measured again).
        stored = store.completed_params()
        done_ids = {rid for rid, params in stored.items() if effective.get(rid) in (None, params)}
        changed = sum(1 for s in specs if s.run_id in stored and s.run_id not in done_ids)
        if changed:
            log.warning(
                "%s: %d completed run(s) used other parameters than the registry now "
                "gives (a preset or default changed); redoing them",
                out,
                changed,
            )
        todo = [s for s in specs if s.run_id not in done_ids]
        skipped = len(specs) - len(todo)
        if skipped:
            log.info("%s: %d of %d runs already complete, skipping them", out, skipped, len(specs))
        store.write_manifest(
            {
                **dict(manifest),
                "started_at": now_iso(),
                "finished_at": None,
                "status": "running",
                **execution.manifest(),
                "num_specs": len(specs),
                "specs": [
                    {
                        **s.to_dict(),
                        "run_id": s.run_id,
                        **{k: v for k, v in annotations.get(s.run_id, {}).items() if k != "label"},
                    }
                    for s in specs
                ],
            }
        )
        failed = 0
        datasets = dict(store.manifest.get("datasets", {}))
        bar = progress_bar(len(todo), "runs", enabled=None if progress else False)
        t0 = time.perf_counter()
        status = "error"
        by_id = {spec.run_id: spec for spec in todo}
        finished = 0

        def record(result: RunResult) -> None:
            # Called by the executor once per run, in this thread: one store.add each.
            nonlocal failed, finished
            spec = by_id[result.row["run_id"]]
            result = _annotated(result, annotations.get(spec.run_id, {}))
            label = result.row["label"]
            bar.set_postfix_str(f"{label} seed {spec.seed}")
            store.add(result)
            finished += 1
            if result.ok:
                datasets[spec.dataset_key()] = dict(result.dataset)
                first = METRICS.select(result.row, headline=True)[0]
                log.info(
                    "%s seed %d  %s %.4f  fit %.2fs",
                    label,
                    spec.seed,
                    first,
                    result.row[first],
                    result.row["fit_seconds"],
                )
            elif result.row.get("status") == "not-applicable":  # e.g. cold users, no features
                log.info("%s seed %d: %s", label, spec.seed, result.row["error"])
            else:
                failed += 1
                log.error("%s seed %d FAILED: %s", label, spec.seed, result.row["error"])
            bar.update(1)
            if on_result is not None:
                on_result(result, finished, len(todo), time.perf_counter() - t0)

        try:
            with make_executor(
                execution.options["executor"],
                runner,
                isolate=execution.isolate,
                timeout_s=execution.timeout_s,
                max_memory_mb=execution.max_memory_mb,
                log_path=str(out / LOG_NAME) if handler is not None and quiet_workers else None,
                **options_for(execution.options["executor"], dict(execution.options)),
            ) as executor:
                executor.run(todo, record)
            status = "complete"
        except KeyboardInterrupt as exc:
            status = f"interrupted by {signal_name(exc)}"
            log.warning(
                "%s: the run(s) in progress were abandoned (%s): not recorded, they run again "
                "on the next invocation",
                out,
                status,
            )
            raise
        finally:
            bar.close()
            store.update_manifest(
                finished_at=now_iso(),
                status=status,
                datasets=datasets,
                wall_seconds=time.perf_counter() - t0,
            )
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return SessionOutcome(done=len(todo) - failed, skipped=skipped, failed=failed)


def _annotated(result: RunResult, columns: Mapping[str, Any]) -> RunResult:
    """``result`` with ``columns`` set on its row (and ``label`` on its frames too)."""
    if not columns:
        return result
    frames = []
    for frame in (result.per_user, result.curve):
        if "label" in columns and not frame.empty and "label" in frame:
            frame = frame.assign(label=columns["label"])
        frames.append(frame)
    return RunResult({**result.row, **columns}, frames[0], frames[1], result.dataset)


def _attach_log_file(path: Path) -> logging.Handler:
    """Send every record (INFO and up) of this process to ``path`` while a session runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler


def progress_bar(total: int, desc: str, *, position: int = 0, leave: bool = True, enabled=None):
    """A ``tqdm.auto`` bar (a widget in Jupyter); off on a non-interactive terminal."""
    import os
    import sys

    from tqdm.auto import tqdm

    if enabled is None:
        in_notebook = "ipykernel" in sys.modules
        enabled = in_notebook or (sys.stderr.isatty() and not os.environ.get("CI"))
    return tqdm(
        total=total,
        desc=desc,
        position=position,
        leave=leave,
        disable=not enabled,
        dynamic_ncols=True,
    )
