"""Your own interaction logs (CSV, TSV, Parquet) read as strictly as MovieLens, and their loader.

A log is one row per interaction. You map its columns (``user``, ``item`` and
optionally ``rating`` and ``timestamp``); ids may be of any type, strings
included. Duplicate (user, item) rows follow a declared policy, and k-core
filtering (``min_user_interactions``, ``min_item_interactions``) is iterated
to a fixed point, with the counts before and after recorded. A malformed row
is a :class:`~bench.datasets.dataset.DataError` naming the file, the line and the column.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.datasets.dataset import DataError, Dataset
from bench.datasets.record import Record, split_record
from bench.datasets.registry import LoadRequest
from bench.datasets.sources import file_digests, read_regular_file

__all__ = [
    "DUPLICATE_POLICIES",
    "LOG_OPTIONS",
    "LOG_SUFFIXES",
    "is_log_path",
    "k_core",
    "load_log",
    "read_log",
]

logger = logging.getLogger(__name__)

#: Suffixes that make a dataset name a path to your own log.
LOG_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet")

#: Options of a log dataset (TOML ``[dataset]`` keys besides ``path``).
LOG_OPTIONS: dict[str, str] = {
    "path": "the log file (.csv, .tsv or .parquet)",
    "user": "user id column (default 'user'; a 0-based position when header = false)",
    "item": "item id column (default 'item')",
    "rating": "rating column (default none: every row is a positive)",
    "timestamp": "timestamp column, Unix seconds or ISO dates (default none)",
    "separator": "field separator (default ',' for .csv, tab for .tsv)",
    "header": "whether the first line names the columns (default true)",
    "duplicates": "repeated (user, item) rows: 'error' (default), 'first', 'last' or 'max'",
    "min_user_interactions": "k-core: drop users with fewer rows (iterated), default 1",
    "min_item_interactions": "k-core: drop items with fewer rows (iterated), default 1",
}

#: What to do with repeated (user, item) rows.
DUPLICATE_POLICIES: dict[str, str] = {
    "error": "refuse the file, naming both lines",
    "first": "keep the earliest line",
    "last": "keep the latest line",
    "max": "keep the line with the highest rating (the earliest among equals)",
}

#: Largest log accepted (bytes).
MAX_LOG_BYTES = 16 * 2**30
_EMPTY = "empty field (or the line has too few fields)"
_TOKENIZE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _line_error(file: str, line: int, column: str, problem: str) -> DataError:
    return DataError(f"{file}, line {line}, column {column!r}: {problem}")


def _read_table(
    path: Path, columns: dict[str, Any], separator: str | None, header: bool
) -> tuple[pd.DataFrame, int]:
    """The mapped columns as strings (CSV/TSV) or native (Parquet), and the first data line."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        if not header:
            raise ValueError(f"{path}: header = false does not apply to Parquet")
        try:
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            missing = [c for c in columns.values() if c not in schema.names]
            if missing:
                raise DataError(f"{path}: no column(s) {missing}; it has {schema.names}")
            frame = pd.read_parquet(path, columns=list(dict.fromkeys(columns.values())))
        except DataError:
            raise
        except Exception as exc:  # pyarrow raises its own types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        return frame, 1
    sep = separator if separator is not None else ("\t" if suffix == ".tsv" else ",")
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            engine="c",
            skip_blank_lines=False,
            encoding="utf-8",
        )
    except pd.errors.ParserError as exc:
        found = _TOKENIZE.search(str(exc))
        if found:
            want, line, saw = found.groups()
            raise DataError(f"{path}, line {line}: expected {want} fields, found {saw}") from None
        raise DataError(f"{path}: cannot be parsed ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    if not header:
        frame.columns = list(range(frame.shape[1]))
    missing = [c for c in columns.values() if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: no column(s) {missing}; it has {list(frame.columns)}"
            + ("" if header else " (header = false: columns are 0-based positions)")
        )
    return frame[list(dict.fromkeys(columns.values()))], 2 if header else 1


def _column_names(path: Path, separator: str | None, header: bool) -> list:
    """The header's column names (empty without a header)."""
    if not header:
        return []
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises its own types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    sep = separator if separator is not None else ("\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        return list(pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8").columns)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read its header line ({exc})") from None


def _ids(values: pd.Series, file: str, first: int, column: str) -> np.ndarray:
    text = values.astype(str)
    empty = (text.str.strip() == "").to_numpy() | values.isna().to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise _line_error(file, first + i, column, _EMPTY)
    return values.to_numpy() if values.dtype != object else text.to_numpy(dtype=str)


def _no_empty(values: pd.Series, file: str, first: int, column: str) -> None:
    if not pd.api.types.is_numeric_dtype(values):
        empty = (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise _line_error(file, first + int(np.flatnonzero(empty)[0]), column, _EMPTY)


def _numbers(values: pd.Series, file: str, first: int, column: str) -> np.ndarray:
    _no_empty(values, file, first, column)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _line_error(file, first + i, column, f"{values.iloc[i]!r} is not a finite number")
    return numbers


def _timestamps(values: pd.Series, file: str, first: int, column: str) -> np.ndarray:
    _no_empty(values, file, first, column)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().any() and numbers.isna().any():
        i = int(np.flatnonzero(numbers.isna().to_numpy())[0])
        raise _line_error(
            file, first + i, column, f"{values.iloc[i]!r} is not Unix seconds like the other rows"
        )
    if numbers.notna().all():
        stamps = numbers.to_numpy(np.float64)
        if (stamps != np.floor(stamps)).any():
            i = int(np.flatnonzero(stamps != np.floor(stamps))[0])
            raise _line_error(file, first + i, column, f"{values.iloc[i]!r} is not whole seconds")
        return stamps.astype(np.int64)
    times = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    bad = times.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _line_error(
            file, first + i, column, f"{values.iloc[i]!r} is neither Unix seconds nor an ISO date"
        )
    return ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def k_core(
    user_idx: np.ndarray, item_idx: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, int]:
    """Rows kept by iterated k-core filtering, and the number of passes.

    Users with fewer than ``min_user`` rows and items with fewer than
    ``min_item`` rows are dropped, again and again, until every remaining user
    and item meets its minimum (the fixed point; possibly empty).

    Returns
    -------
    keep : numpy.ndarray of bool, shape (n,)
    passes : int
        Passes made, the last of which removed nothing.
    """
    keep = np.ones(user_idx.shape[0], dtype=bool)
    passes = 0
    while True:
        passes += 1
        users = np.bincount(user_idx[keep], minlength=int(user_idx.max(initial=-1)) + 1)
        items = np.bincount(item_idx[keep], minlength=int(item_idx.max(initial=-1)) + 1)
        ok = keep & (users[user_idx] >= min_user) & (items[item_idx] >= min_item)
        if (ok == keep).all():
            return keep, passes
        keep = ok


def _dedupe(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray | None,
    policy: str,
    file: str,
    first: int,
) -> np.ndarray:
    """Rows kept under the duplicate policy (file order preserved)."""
    n = user_idx.shape[0]
    order = np.lexsort((np.arange(n), item_idx, user_idx))
    same = (np.diff(user_idx[order]) == 0) & (np.diff(item_idx[order]) == 0)
    if not same.any():
        return np.ones(n, dtype=bool)
    if policy == "error":
        later = order[1:][same]
        j = int(np.argmin(later))
        earlier = int(order[:-1][same][j])
        raise DataError(
            f"{file}, line {first + int(later[j])}: the same (user, item) as line "
            f"{first + earlier}; declare duplicates = 'first', 'last' or 'max'"
        )
    group_start = np.r_[True, ~same]
    group = np.cumsum(group_start) - 1
    if policy == "first":
        chosen = order[group_start]
    elif policy == "last":
        chosen = order[np.r_[~same, True]]
    else:  # max rating, earliest among equals
        key = -(rating if rating is not None else np.zeros(n))[order]
        within = np.lexsort((order, key, group))
        chosen = order[within][np.r_[True, np.diff(group[within]) != 0]]
    keep = np.zeros(n, dtype=bool)
    keep[chosen] = True
    return keep


def read_log(
    path: str | Path,
    *,
    user: str | int = "user",
    item: str | int = "item",
    rating: str | int | None = "auto",
    timestamp: str | int | None = "auto",
    separator: str | None = None,
    header: bool = True,
    duplicates: str = "error",
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
) -> Record:
    """Read an interaction log into a :class:`~bench.datasets.record.Record`.

    Parameters
    ----------
    path : path
        ``.csv``, ``.tsv`` or ``.parquet``.
    user, item, rating, timestamp : str or int
        Column names (0-based positions when ``header`` is false). ``"auto"``
        (the default for ``rating`` and ``timestamp``) uses a column of that
        name when the file has one; ``None`` ignores it. Without a rating
        column every row is a positive (weight 1).
    separator : str, optional
        Default ``,`` for ``.csv`` and a tab for ``.tsv``.
    header : bool
    duplicates : {"error", "first", "last", "max"}
        See :data:`DUPLICATE_POLICIES`.
    min_user_interactions, min_item_interactions : int
        k-core thresholds (1: no filtering).

    Returns
    -------
    Record
        Indices numbered by sorted raw id; ``facts`` holds the file's SHA-256,
        the duplicate policy and rows dropped, and the k-core counts before and
        after (users, items, rows) with the passes it took.

    Raises
    ------
    DataError
        The file is missing, not a regular file, or malformed (file, line and
        column named).
    ValueError
        Invalid options.
    """
    path = Path(path).expanduser()
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(
            f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}"
        )
    for name, value in (
        ("min_user_interactions", min_user_interactions),
        ("min_item_interactions", min_item_interactions),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(header, bool):
        raise ValueError(f"header must be true or false, got {header!r}")
    if path.suffix.lower() not in (".csv", ".tsv", ".parquet"):
        raise ValueError(f"{path}: a log must be .csv, .tsv or .parquet")
    # Regular file check (a FIFO or folder is named as such) and the content hash.
    if not path.is_file():
        read_regular_file(path, MAX_LOG_BYTES)  # raises, naming what the path is instead
    digests = file_digests(path, MAX_LOG_BYTES)
    if rating == "auto" or timestamp == "auto":
        names = _column_names(path, separator, header)
        rating = ("rating" if "rating" in names else None) if rating == "auto" else rating
        timestamp = (
            ("timestamp" if "timestamp" in names else None) if timestamp == "auto" else timestamp
        )
    columns = {"user": user, "item": item}
    if rating is not None:
        columns["rating"] = rating
    if timestamp is not None:
        columns["timestamp"] = timestamp
    frame, first = _read_table(path, columns, separator, header)
    file = str(path)
    if frame.empty:
        raise DataError(f"{file}: no interactions")
    users = _ids(frame[columns["user"]], file, first, str(columns["user"]))
    items = _ids(frame[columns["item"]], file, first, str(columns["item"]))
    stars = (
        None
        if rating is None
        else _numbers(frame[columns["rating"]], file, first, str(columns["rating"]))
    )
    stamps = (
        None
        if timestamp is None
        else _timestamps(frame[columns["timestamp"]], file, first, str(columns["timestamp"]))
    )
    raw_users, user_idx = np.unique(users, return_inverse=True)
    raw_items, item_idx = np.unique(items, return_inverse=True)
    before = {"users": len(raw_users), "items": len(raw_items), "rows": int(user_idx.shape[0])}
    keep = _dedupe(user_idx, item_idx, stars, duplicates, file, first)
    duplicate_rows = int((~keep).sum())
    rows = np.flatnonzero(keep)
    core, passes = k_core(
        user_idx[rows], item_idx[rows], min_user_interactions, min_item_interactions
    )
    rows = rows[core]
    if rows.size == 0:
        raise DataError(
            f"{file}: no interaction survives k-core filtering with min_user_interactions="
            f"{min_user_interactions} and min_item_interactions={min_item_interactions}"
        )
    raw_users, user_idx = np.unique(users[rows], return_inverse=True)
    raw_items, item_idx = np.unique(items[rows], return_inverse=True)
    facts = {
        "file_sha256": digests.sha256,
        "rating_column": None if rating is None else str(rating),
        "duplicates": duplicates,
        "duplicate_rows_dropped": duplicate_rows,
        "k_core": {
            "min_user_interactions": min_user_interactions,
            "min_item_interactions": min_item_interactions,
            "passes": passes,
            "before": before,
            "after": {
                "users": len(raw_users),
                "items": len(raw_items),
                "rows": int(rows.shape[0]),
            },
        },
    }
    logger.info("read %s: %s", file, facts["k_core"])
    return Record(
        user_index=user_idx.astype(np.int32),
        item_index=item_idx.astype(np.int32),
        rating=np.ones(rows.shape[0], np.float32)
        if stars is None
        else stars[rows].astype(np.float32),
        timestamp=None if stamps is None else stamps[rows],
        raw_user_ids=raw_users,
        raw_item_ids=raw_items,
        sha256=digests.sha256,
        source=f"path:{path.resolve()}",
        facts=facts,
    )


def is_log_path(name: str) -> bool:
    """Whether dataset name ``name`` is a path to your own log (by its suffix)."""
    return name.lower().endswith(LOG_SUFFIXES)


def load_log(request: LoadRequest) -> Dataset:
    """Read the log the request's dataset name is a path to, and split it.

    Raises
    ------
    ValueError
        ``min_rating`` without a rating column.
    DataError
        The file is missing or malformed.
    """
    options = dict(request.options)
    log_options = {k: options.pop(k) for k in list(options) if k in LOG_OPTIONS}
    # The name is the file (bench.config turns a [dataset] path into the name).
    log_options.pop("path", None)
    options.pop("cache_dir", None)
    record = read_log(request.name, **log_options)
    if request.min_rating is not None and record.facts.get("rating_column") is None:
        raise ValueError(
            f"{request.name}: min_rating={request.min_rating:g} needs a rating column "
            "(give rating=...), or pass min_rating=None to count every row as a positive"
        )
    return split_record(
        record,
        request.split,
        request.min_rating,
        name=request.name,
        stage=request.stage,
        options=options,
    )
