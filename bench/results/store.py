"""The results folder: runs.csv, per_user.parquet, curves.csv and manifest.json, safe for
concurrent writers.

Layout and format (``results_format`` 2)
----------------------------------------
Every finished run is first committed as its own *shard*: a folder
``shards/<time_ns>-<pid>-<run_id>.shard/`` holding ``run.json`` (the ``runs.csv``
row), ``per_user.parquet`` and ``curve.csv``, written under a temporary name and
renamed into place (a shard is complete or absent). The folder's tables are the
*merge* of the shards: under an exclusive file lock (``shards/lock``, POSIX
``flock``) the merger reads the tables, replaces the rows of every pending shard's
run (newest shard wins), rewrites the tables atomically (per-user first, runs.csv
last) and only then deletes the merged shards. A crash at any point leaves either
the shard or the merged rows, never neither; merging twice is idempotent (rows
are keyed by ``run_id``), so no run is ever lost or duplicated whatever the
interleaving of writers. Only the merge holds the lock, so a parallel or
distributed executor can commit shards from many workers and let any one process
merge. Readers (:func:`load_results`) see the tables plus any pending shard.

Folders written before the format version existed (``results_format`` absent:
the same tables, no shards) are read, resumed and gated as they are; a folder
from a newer rsbench is refused with a message that says to upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.io import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_parquet,
    process_alive,
    remove_stale_temporaries,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bench.execution.runner import RunResult

__all__ = ["RESULTS_FORMAT", "ResultStore", "ResultsError", "load_results", "now_iso"]

log = logging.getLogger(__name__)

RUNS = "runs.csv"
PER_USER = "per_user.parquet"
CURVES = "curves.csv"
MANIFEST = "manifest.json"
SHARDS = "shards"
LOCK = "lock"
#: Version of the folder layout this code writes (and the newest it reads).
RESULTS_FORMAT = 2
REQUIRED_RUN_COLUMNS = ("run_id", "label", "status")
# Columns of per_user.parquet that are identity, not metric values.
_PER_USER_KEYS = {"run_id", "label", "seed", "user", "activity"}
_SHARD_NAME = re.compile(r"^(\d+)-(\d+)-([0-9A-Za-z]+)\.shard$")
_SHARD_TMP = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")


class ResultsError(ValueError):
    """A results folder is missing files or holds unreadable ones."""


# -- reading ------------------------------------------------------------------
def _read_csv(path: Path, *, required: tuple[str, ...] = ()) -> pd.DataFrame:
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        # Every table rsbench writes ends with a newline: this one was cut short.
        raise ResultsError(f"{path}: truncated (the last line is incomplete)")
    try:
        # Ids are hex strings: never let pandas read "0123e4..." as a number.
        frame = pd.read_csv(
            path, keep_default_na=False, na_values=[""], dtype={"run_id": str, "label": str}
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable CSV ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: lacks column(s) {', '.join(missing)}")
    for column in required:
        empty = frame[column].isna()
        if empty.any():
            raise ResultsError(
                f"{path}: row {int(np.flatnonzero(empty)[0]) + 2} has no {column} "
                "(truncated or hand-edited?)"
            )
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise ResultsError(f"{path}: unreadable Parquet ({exc})") from None
    if not frame.empty and "run_id" not in frame:
        raise ResultsError(f"{path}: lacks column run_id")
    for column in frame.columns:
        if column in _PER_USER_KEYS:
            continue
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ResultsError(
                f"{path}: metric column {column!r} holds {frame[column].dtype} values, not numbers"
            )
    return frame


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ResultsError(
            f"{path}: must hold a JSON object, got a {type(manifest).__name__} "
            "(not an rsbench manifest)"
        )
    version = manifest.get("results_format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"{path}: results_format must be an integer >= 1, got {version!r}")
    if version > RESULTS_FORMAT:
        raise ResultsError(
            f"{path}: results_format {version} is newer than this rsbench reads "
            f"({RESULTS_FORMAT}); upgrade rsbench (pip install -U rsbench)"
        )
    return manifest


def _pending_shards(folder: Path) -> list[Path]:
    """Complete shards not yet merged, oldest first."""
    shard_dir = folder / SHARDS
    if not shard_dir.is_dir():
        return []
    found = []
    for path in shard_dir.iterdir():
        match = _SHARD_NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), int(match.group(2)), path.name, path))
    return [item[-1] for item in sorted(found)]


def _read_shard(path: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    try:
        row = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable shard ({exc})") from None
    if not isinstance(row, dict) or not all(k in row for k in REQUIRED_RUN_COLUMNS):
        raise ResultsError(f"{path}/run.json: not a runs.csv row")
    per_user = _read_parquet(path / PER_USER) if (path / PER_USER).exists() else pd.DataFrame()
    curve = _read_csv(path / "curve.csv") if (path / "curve.csv").exists() else pd.DataFrame()
    return row, per_user, curve


def _without(frame: pd.DataFrame, run_ids: set[str]) -> pd.DataFrame:
    if frame.empty or "run_id" not in frame:
        return frame
    return frame[~frame["run_id"].astype(str).isin(run_ids)]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _apply_shards(tables: dict[str, pd.DataFrame], shards: list[Path]) -> dict[str, pd.DataFrame]:
    """``tables`` with the runs of ``shards`` replaced by the shards' rows (newest wins)."""
    if not shards:
        return tables
    latest: dict[str, tuple[dict, pd.DataFrame, pd.DataFrame]] = {}
    for path in shards:  # oldest first: a later shard of one run replaces an earlier one
        row, per_user, curve = _read_shard(path)
        latest[str(row["run_id"])] = (row, per_user, curve)
    ids = set(latest)
    rows = pd.DataFrame([v[0] for v in latest.values()])
    rows["run_id"] = rows["run_id"].astype(str)
    return {
        "runs": _concat([_without(tables["runs"], ids), rows]),
        "per_user": _concat([_without(tables["per_user"], ids), *(v[1] for v in latest.values())]),
        "curves": _concat([_without(tables["curves"], ids), *(v[2] for v in latest.values())]),
    }


def _read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    runs = (
        _read_csv(folder / RUNS, required=REQUIRED_RUN_COLUMNS)
        if (folder / RUNS).exists()
        else pd.DataFrame()
    )
    per_user = _read_parquet(folder / PER_USER) if (folder / PER_USER).exists() else pd.DataFrame()
    curves = _read_csv(folder / CURVES) if (folder / CURVES).exists() else pd.DataFrame()
    return {"runs": runs, "per_user": per_user, "curves": curves}


def load_results(folder: str | Path) -> dict[str, Any]:
    """Read a results folder: ``{"runs", "per_user", "curves", "manifest"}``.

    Pending shards (runs committed but not merged yet, e.g. by a writer that
    was killed) are included, so a reader never misses a committed run.

    Raises
    ------
    ResultsError
        The folder or ``runs.csv`` is missing, a file cannot be parsed,
        ``runs.csv`` lacks ``run_id``/``label``/``status`` or is truncated,
        a per-user metric column is not numeric, the manifest is not a JSON
        object, or the folder's format is newer than this code.
    """
    folder = Path(folder)
    shards = _pending_shards(folder)
    if not (folder / RUNS).is_file() and not shards:
        raise ResultsError(f"{folder}: no {RUNS} (is this a results folder?)")
    manifest = _read_manifest(folder / MANIFEST) if (folder / MANIFEST).exists() else {}
    tables = _apply_shards(_read_tables(folder), shards)
    return {**tables, "manifest": manifest}


# -- writing --------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in run.json")


class ResultStore:
    """A results folder that any number of processes may write at once.

    ``add(result)`` commits the run as a shard and merges every pending shard
    into the tables under the folder's lock (see the module docstring). A run
    counts as complete when ``runs.csv`` has it with status ``ok`` and
    ``per_user.parquet`` has its rows; anything else (a failed run, a run
    killed half way) is redone on the next invocation. Opening a store removes
    the temporary files a killed writer left behind.

    Attributes
    ----------
    runs, per_user, curves : pandas.DataFrame
        The merged tables as of this process's last merge.
    manifest : dict
        The manifest as of this process's last manifest write.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ResultsError(f"{self.folder} exists and is not a folder")
        (self.folder / SHARDS).mkdir(parents=True, exist_ok=True)
        self.invocation = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.runs = self.per_user = self.curves = pd.DataFrame()
        self.manifest: dict[str, Any] = {}
        if (self.folder / MANIFEST).exists():
            self.manifest = _read_manifest(self.folder / MANIFEST)
        with self._locked():
            self._clean_temporaries()
            self._merge()

    # -- locking and cleaning ----------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / SHARDS / LOCK, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _clean_temporaries(self) -> None:
        """Remove what killed writers left (called with the lock held).

        Table temporaries are only ever written under the lock, so any found
        now is stale; a shard being written outside the lock belongs to a
        process id, and is removed only when that process is gone.
        """
        removed = remove_stale_temporaries(self.folder)
        for path in (self.folder / SHARDS).iterdir():
            match = _SHARD_TMP.match(path.name)
            if match and not process_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        if removed:
            log.info(
                "%s: removed %d temporary file(s) left by a killed run", self.folder, len(removed)
            )

    # -- runs ---------------------------------------------------------------------
    def _merge(self) -> None:
        """Merge pending shards into the tables (lock held) and refresh the in-memory view."""
        shards = _pending_shards(self.folder)
        tables = _apply_shards(_read_tables(self.folder), shards)
        if shards:
            # Per-user and curves first, runs.csv last: a crash in between leaves
            # extra per-user rows (ignored: their run is not ok in runs.csv) and
            # the shards, which the next merge applies again.
            if not tables["per_user"].empty:
                atomic_write_parquet(self.folder / PER_USER, tables["per_user"])
            if not tables["curves"].empty:
                atomic_write_csv(self.folder / CURVES, tables["curves"])
            atomic_write_csv(self.folder / RUNS, tables["runs"])
            for path in shards:
                shutil.rmtree(path, ignore_errors=True)
        self.runs, self.per_user, self.curves = tables["runs"], tables["per_user"], tables["curves"]

    def completed_ids(self) -> list[str]:
        """Run ids that finished successfully and have their per-user rows."""
        if self.runs.empty or self.per_user.empty:
            return []
        ok = self.runs.loc[self.runs["status"] == "ok", "run_id"].astype(str)
        have = set(self.per_user["run_id"].astype(str))
        return [run_id for run_id in ok if run_id in have]

    def completed_params(self) -> dict[str, str]:
        """``{run_id: params JSON}`` of the completed runs (see :meth:`completed_ids`)."""
        done = set(self.completed_ids())
        if not done or "params" not in self.runs:
            return {run_id: "" for run_id in done}
        rows = self.runs[self.runs["run_id"].astype(str).isin(done)]
        return dict(zip(rows["run_id"].astype(str), rows["params"].fillna("").astype(str)))

    def commit_shard(self, result: RunResult) -> Path:
        """Write ``result`` as one shard, atomically, without taking the lock.

        Parallel workers call this; any process's next :meth:`merge` (or
        :meth:`add`) folds the shard into the tables.
        """
        run_id = str(result.row["run_id"])
        if not re.fullmatch(r"[0-9A-Za-z]+", run_id):
            raise ValueError(f"run_id must be alphanumeric, got {run_id!r}")
        shard_dir = self.folder / SHARDS
        tmp = shard_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            text = json.dumps(result.row, default=_json_value)  # column order kept
            with open(tmp / "run.json", "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            if not result.per_user.empty:
                result.per_user.to_parquet(tmp / PER_USER, index=False)
            if not result.curve.empty:
                result.curve.to_csv(tmp / "curve.csv", index=False)
            final = shard_dir / f"{time.time_ns()}-{os.getpid()}-{run_id}.shard"
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def merge(self) -> None:
        """Fold every pending shard into the tables (under the folder's lock)."""
        with self._locked():
            self._merge()

    def add(self, result: RunResult) -> None:
        """Record ``result`` (replacing any earlier row of the same run) and merge to disk."""
        self.commit_shard(result)
        self.merge()

    def flush(self) -> None:
        """Merge pending shards (kept for callers of the single-writer store)."""
        self.merge()

    # -- manifest -------------------------------------------------------------------
    def _read_disk_manifest(self) -> dict[str, Any]:
        path = self.folder / MANIFEST
        return _read_manifest(path) if path.exists() else {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Start this invocation's manifest entry; every invocation is kept.

        The top-level fields describe the latest invocation (as before);
        ``invocations`` lists every invocation that wrote to the folder (its
        ``invocation`` id, command, start and finish), and ``history`` the
        earlier ones in the layout of format 1.
        """
        with self._locked():
            disk = self._read_disk_manifest()
            invocations = list(disk.get("invocations", []))
            history = list(disk.get("history", []))
            if disk.get("command") and not invocations:
                # A format-1 manifest: its history and current entry become invocations.
                invocations = [
                    {k: h.get(k) for k in ("command", "started_at", "finished_at")} for h in history
                ]
                invocations.append(
                    {k: disk.get(k) for k in ("command", "started_at", "finished_at")}
                )
            if disk.get("command"):
                history.append({k: disk.get(k) for k in ("command", "started_at", "finished_at")})
            entry = {
                "invocation": self.invocation,
                **{k: manifest.get(k) for k in ("command", "started_at", "finished_at")},
            }
            invocations.append(entry)
            datasets = {**disk.get("datasets", {}), **manifest.get("datasets", {})}
            self.manifest = {
                **manifest,
                "results_format": RESULTS_FORMAT,
                "invocation": self.invocation,
                "invocations": invocations,
                "history": history,
            }
            if datasets:
                self.manifest["datasets"] = datasets
            atomic_write_json(self.folder / MANIFEST, self.manifest)

    def update_manifest(self, **fields: Any) -> None:
        """Update this invocation's fields and rewrite the manifest (under the lock).

        ``datasets`` is merged with what other invocations recorded. When
        another invocation started after this one, the top level stays theirs
        and only this invocation's entry in ``invocations`` is updated.
        """
        with self._locked():
            disk = self._read_disk_manifest() or dict(self.manifest)
            if "datasets" in fields:
                fields = {**fields, "datasets": {**disk.get("datasets", {}), **fields["datasets"]}}
            invocations = list(disk.get("invocations", []))
            for entry in invocations:
                if entry.get("invocation") == self.invocation:
                    entry.update({k: v for k, v in fields.items() if k in ("finished_at",)})
            mine = disk.get("invocation", self.invocation) == self.invocation
            merged = dict(disk) if disk else dict(self.manifest)
            if mine:
                merged.update(fields)
            elif "datasets" in fields:
                merged["datasets"] = fields["datasets"]
            merged["invocations"] = invocations
            merged["results_format"] = RESULTS_FORMAT
            self.manifest = {**merged, **fields} if mine else {**self.manifest, **fields}
            atomic_write_json(self.folder / MANIFEST, merged)


def now_iso() -> str:
    """Local time as ISO 8601 with offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
