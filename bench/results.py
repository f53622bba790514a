"""The result folder: runs.csv, per_user.parquet, curves.csv, manifest.json (atomic writes)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.io import atomic_write_csv, atomic_write_json, atomic_write_parquet
from bench.runner import RunResult

__all__ = ["ResultStore", "ResultsError", "load_results"]

log = logging.getLogger(__name__)

RUNS = "runs.csv"
PER_USER = "per_user.parquet"
CURVES = "curves.csv"
MANIFEST = "manifest.json"


class ResultsError(ValueError):
    """A results folder is missing files or holds unreadable ones."""


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # Ids are hex strings: never let pandas read "0123e4..." as a number.
        return pd.read_csv(
            path, keep_default_na=False, na_values=[""], dtype={"run_id": str, "label": str}
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable CSV ({exc})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise ResultsError(f"{path}: unreadable Parquet ({exc})") from None


def load_results(folder: str | Path) -> dict[str, Any]:
    """Read a results folder: ``{"runs", "per_user", "curves", "manifest"}``.

    Raises
    ------
    ResultsError
        The folder or ``runs.csv`` is missing, or a file cannot be parsed.
    """
    folder = Path(folder)
    if not (folder / RUNS).is_file():
        raise ResultsError(f"{folder}: no {RUNS} (is this a results folder?)")
    runs = _read_csv(folder / RUNS)
    per_user = _read_parquet(folder / PER_USER) if (folder / PER_USER).exists() else pd.DataFrame()
    curves = _read_csv(folder / CURVES) if (folder / CURVES).exists() else pd.DataFrame()
    manifest: dict[str, Any] = {}
    if (folder / MANIFEST).exists():
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{folder / MANIFEST}: invalid JSON ({exc})") from None
    return {"runs": runs, "per_user": per_user, "curves": curves, "manifest": manifest}


class ResultStore:
    """Accumulates run results in a folder, rewriting every table atomically after each run.

    A run counts as complete when ``runs.csv`` has it with status ``ok`` and
    ``per_user.parquet`` has its rows; anything else (a failed run, a run
    killed half way) is redone on the next invocation. Tables are written
    per-user first and ``runs.csv`` last, so a crash between two writes can
    only leave extra per-user rows, which are dropped and rewritten.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ResultsError(f"{self.folder} exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / RUNS).exists():
            loaded = load_results(self.folder)
            self.runs, self.per_user, self.curves = (
                loaded["runs"],
                loaded["per_user"],
                loaded["curves"],
            )
            self.manifest = loaded["manifest"]
        else:
            self.runs, self.per_user, self.curves = pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
            self.manifest = {}
        self._drop_orphans()

    def _drop_orphans(self) -> None:
        done = set(self.completed_ids())
        for name in ("per_user", "curves"):
            frame = getattr(self, name)
            if not frame.empty and "run_id" in frame:
                setattr(self, name, frame[frame["run_id"].isin(done)].reset_index(drop=True))

    def completed_ids(self) -> list[str]:
        """Run ids that finished successfully and have their per-user rows."""
        if self.runs.empty:
            return []
        ok = self.runs.loc[self.runs["status"] == "ok", "run_id"].astype(str)
        if self.per_user.empty:
            return []
        have = set(self.per_user["run_id"].astype(str))
        return [run_id for run_id in ok if run_id in have]

    def completed_params(self) -> dict[str, str]:
        """``{run_id: params JSON}`` of the completed runs (see :meth:`completed_ids`)."""
        done = set(self.completed_ids())
        if not done or "params" not in self.runs:
            return {run_id: "" for run_id in done}
        rows = self.runs[self.runs["run_id"].astype(str).isin(done)]
        return dict(zip(rows["run_id"].astype(str), rows["params"].fillna("").astype(str)))

    def add(self, result: RunResult) -> None:
        """Record ``result`` (replacing any earlier row of the same run) and flush to disk."""
        run_id = result.row["run_id"]
        for name in ("runs", "per_user", "curves"):
            frame = getattr(self, name)
            if not frame.empty and "run_id" in frame:
                setattr(self, name, frame[frame["run_id"].astype(str) != run_id])
        new_row = pd.DataFrame([result.row])
        self.runs = (
            new_row if self.runs.empty else pd.concat([self.runs, new_row], ignore_index=True)
        )
        if not result.per_user.empty:
            self.per_user = pd.concat([self.per_user, result.per_user], ignore_index=True)
        if not result.curve.empty:
            self.curves = pd.concat([self.curves, result.curve], ignore_index=True)
        self.flush()

    def flush(self) -> None:
        """Write per_user.parquet, curves.csv, then runs.csv (each atomically)."""
        if not self.per_user.empty:
            atomic_write_parquet(self.folder / PER_USER, self.per_user)
        if not self.curves.empty:
            atomic_write_csv(self.folder / CURVES, self.curves)
        if not self.runs.empty:
            atomic_write_csv(self.folder / RUNS, self.runs)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write manifest.json, keeping earlier invocations under ``history``."""
        history = list(self.manifest.get("history", []))
        if self.manifest.get("command"):
            history.append(
                {k: self.manifest.get(k) for k in ("command", "started_at", "finished_at")}
            )
        self.manifest = {**manifest, "history": history}
        atomic_write_json(self.folder / MANIFEST, self.manifest)

    def update_manifest(self, **fields: Any) -> None:
        """Update fields of the current manifest and rewrite it."""
        self.manifest.update(fields)
        atomic_write_json(self.folder / MANIFEST, self.manifest)


def now_iso() -> str:
    """Local time as ISO 8601 with offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
