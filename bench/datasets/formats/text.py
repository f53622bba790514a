"""Strict line-by-line checks shared by every text parser: each problem names its file and line."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bench.datasets.dataset import DataError

__all__ = [
    "decode",
    "first_true",
    "int_ids",
    "line_error",
    "split_fields",
    "split_text",
    "text_column",
    "unique_ids",
    "whole_numbers",
]


def line_error(file: str, line: int, problem: str) -> DataError:
    """A :class:`DataError` naming ``file`` and ``line``."""
    return DataError(f"{file}, line {line}: {problem}")


def first_true(mask: pd.Series | np.ndarray) -> int:
    """Position of the first true entry of ``mask``."""
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def _looks_utf16(data: bytes) -> bool:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = data[:4096]
    # Text in UTF-16 has a NUL in (nearly) every other byte; real ML files have none.
    return len(head) >= 8 and head.count(0) * 3 >= len(head)


def decode(data: bytes, file: str = "") -> str:
    """UTF-8 (else ISO-8859-1) text without a byte-order mark; UTF-16 is refused."""
    if _looks_utf16(data):
        raise DataError(
            f"{file or 'file'}: looks UTF-16 encoded (byte-order mark or NUL bytes); "
            "MovieLens files are UTF-8 or ISO-8859-1: re-save it in one of those"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # GroupLens's u.item is ISO-8859-1; latin-1 decodes any byte string.
        text = data.decode("latin-1")
    return text.removeprefix("\ufeff")


def split_text(data: bytes, file: str, *, header: bool) -> tuple[pd.Series, int, str | None]:
    """Lines of a text file as a str Series, the line number of its first row, the header."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{file}: expected bytes, got {type(data).__name__}")
    text = decode(bytes(data), file)
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{file}: empty file")
    series = pd.Series(lines, dtype="str").str.removesuffix("\r")
    head = None
    first_line = 1
    if header:
        head = str(series.iloc[0])
        series = series.iloc[1:].reset_index(drop=True)
        first_line = 2
        if series.empty:
            raise DataError(f"{file}: no data rows after the header line")
    blank = (series.str.strip() == "").to_numpy()
    if blank.any():
        raise line_error(file, first_line + first_true(blank), "empty line")
    return series, first_line, head


def split_fields(
    lines: pd.Series, file: str, first_line: int, sep: str, num_fields: int, what: str
) -> list[pd.Series]:
    """Split every line into exactly ``num_fields`` fields (else a DataError naming the line)."""
    counts = (lines.str.count(re.escape(sep)) + 1).to_numpy()
    bad = counts != num_fields
    if bad.any():
        i = first_true(bad)
        raise line_error(
            file,
            first_line + i,
            f"expected {num_fields} {what}-separated fields, found {counts[i]}",
        )
    parts = lines.str.split(sep, n=num_fields - 1, expand=True, regex=False)
    return [parts[j].str.strip() for j in range(num_fields)]


def int_ids(column: pd.Series, file: str, first_line: int, name: str) -> np.ndarray:
    """Non-negative integer ids written as plain digits."""
    ok = column.str.fullmatch(r"[0-9]{1,15}").fillna(False).to_numpy(dtype=bool)
    if not ok.all():
        i = first_true(~ok)
        raise line_error(
            file, first_line + i, f"{name} {column.iloc[i]!r} is not a non-negative integer"
        )
    return pd.to_numeric(column).to_numpy(np.int64)


def whole_numbers(
    column: pd.Series, file: str, first_line: int, name: str, low: int, high: int | None = None
) -> np.ndarray:
    """Whole numbers (``"3"`` or ``"3.0"``) within ``low..high``."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = np.isnan(values)
    if bad.any():
        i = first_true(bad)
        raise line_error(file, first_line + i, f"{name} {column.iloc[i]!r} is not a number")
    top = np.inf if high is None else high
    bad = (values < low) | (values > top)
    if bad.any():
        i = first_true(bad)
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise line_error(file, first_line + i, f"{name} {column.iloc[i]} outside {bounds}")
    bad = values != np.floor(values)
    if bad.any():
        i = first_true(bad)
        raise line_error(file, first_line + i, f"{name} {column.iloc[i]} is not a whole number")
    return values.astype(np.int64)


def unique_ids(ids: np.ndarray, file: str, first_line: int, name: str) -> None:
    """Refuse an id that appears twice, naming both lines."""
    order = np.argsort(ids, kind="stable")
    same = ids[order][1:] == ids[order][:-1]
    if same.any():
        later = order[1:][same]
        j = int(np.argmin(later))
        row = int(later[j])
        earlier = int(order[:-1][same][j])
        raise line_error(
            file,
            first_line + row,
            f"{name} {ids[row]} appears twice (also on line {first_line + earlier})",
        )


def text_column(
    column: pd.Series, file: str, first_line: int, name: str, *, allow_empty: bool = False
) -> pd.Series:
    """A text column without tabs (and, unless ``allow_empty``, without empty values)."""
    column = column.astype(str)
    bad = column.str.contains("\t", regex=False).to_numpy(dtype=bool)
    if bad.any():
        raise line_error(file, first_line + first_true(bad), f"{name} contains a tab character")
    if not allow_empty:
        empty = (column == "").to_numpy(dtype=bool)
        if empty.any():
            raise line_error(file, first_line + first_true(empty), f"empty {name}")
    return column
