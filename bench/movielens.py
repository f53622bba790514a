"""MovieLens 100K: both distributions parsed to one normalised form, hashed, cached and fetched.

Two distributions carry the same data:

* GroupLens's ``ml-100k`` folder or zip: ``u.data`` (``user\\titem\\trating\\ttimestamp``),
  ``u.item`` (``|``-separated, ISO-8859-1, ``Title (YYYY)``, release dates, URL and
  19 genre flags) and ``u.user`` (``id|age|gender|occupation|zip``);
* RecBole's atomic files shipped in the ``recbole==1.2.1`` wheel
  (``recbole/dataset_example/ml-100k/ml-100k.inter|.item|.user``: tab separated,
  typed header line, UTF-8, the title without its year, the year in its own column,
  genres as a space-separated list).

Both parse to the same :class:`MovieLensTables`. Its *canonical content* (three
tab-separated UTF-8 files, see :meth:`MovieLensTables.canonical`) is what the
pinned SHA-256 constants describe and what the cache holds, so every source
verifies against the same constants. ``ratings.tsv`` is byte-for-byte the
``u.data`` layout, so ``Dataset.sha256`` is also the SHA-256 of GroupLens's ``u.data``.

:func:`load_movielens` takes the first source that works: an explicit local
path, the cache folder, the official GroupLens zip, then ``pip download`` of the
RecBole wheel (nothing is installed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import sources
from bench.dataset import DataError
from bench.sources import (
    SourceError,
    file_digests,
    read_members,
    read_regular_file,
    rsbench_temp_dir,
)

__all__ = [
    "CANONICAL_FILES",
    "GENRES",
    "GROUPLENS_URL",
    "GROUPLENS_ZIP_MD5",
    "ML100K_SHA256",
    "RECBOLE_REQUIREMENT",
    "RECBOLE_WHEEL_SHA256",
    "MovieLensTables",
    "cache_folders",
    "default_cache_dir",
    "load_movielens",
    "normalise_titles",
    "parse_grouplens",
    "parse_recbole",
    "read_cache",
    "read_grouplens",
    "read_local",
    "read_recbole",
    "store_in_cache",
    "tables_from_canonical",
    "write_cache",
]

logger = logging.getLogger(__name__)

#: The 19 genre flags of ``u.item``, in GroupLens's column order.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: MD5 that GroupLens publishes for ``ml-100k.zip`` (``ml-100k.zip.md5``; the same
#: value is pinned by several public loaders). A mismatch is only logged: the
#: content hashes below decide.
GROUPLENS_ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
#: ``sha256sum recbole-1.2.1-py3-none-any.whl`` of the wheel on PyPI (checked on
#: a copy fetched with ``pip download --no-deps recbole==1.2.1``).
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
_RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"

#: Names of the canonical files (also the cache file names).
CANONICAL_FILES: tuple[str, ...] = ("ratings.tsv", "items.tsv", "users.tsv")

#: SHA-256 of the canonical content of MovieLens 100K. Computed with
#: ``read_recbole("recbole-1.2.1-py3-none-any.whl").sha256()`` on the pinned wheel;
#: ``ratings.tsv`` equals the body of ``ml-100k.inter`` (its header line removed),
#: i.e. the ``u.data`` layout.
ML100K_SHA256: dict[str, str] = {
    "ratings.tsv": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "items.tsv": "d536c725134cd11f91b225ba0de386290ca485e38a8b0c0a9ef91df2239e5d4e",
    "users.tsv": "6a661c568d4d410a43e36c57748a7ff1858602483cfa2bafb3196b1fc1ff8944",
}

RATING_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rating", "timestamp")
USER_COLUMNS: tuple[str, ...] = ("age", "gender", "occupation", "zip_code")

_MAX_DOWNLOAD_BYTES = 64 * 2**20
_MAX_CACHE_BYTES = 256 * 2**20
_PIP_TIMEOUT_S = 300.0
_STALE_TEMP_S = 3600.0
# RecBole 1.2.1 writes this (sic) for item 267's missing title and year; GroupLens
# has the title "unknown" and no year.
_RECBOLE_MISSING = "unkonwn"
# The year is the last "(YYYY)" that only parenthesised notes such as "(V)" follow.
_TITLE_RE = r"^(?P<title>.*)\((?P<year>[0-9]{4})\)(?P<tail>(?:\s*\([^()]*\))*)\s*$"


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True, eq=False)
class MovieLensTables:
    """The normalised MovieLens tables, identical whatever the source.

    Attributes
    ----------
    ratings : pandas.DataFrame, shape (n_ratings, 4)
        Columns ``user_id``, ``item_id`` (raw ids), ``rating`` (1..5),
        ``timestamp`` (Unix seconds), all int64, in ``u.data`` order, RangeIndex.
    items : pandas.DataFrame, shape (n_items, 21)
        Index ``item_id`` (int64, ascending); ``title`` (str, without the
        trailing ``" (YYYY)"``), ``release_year`` (nullable ``Int64``, the year in
        the title) and one bool column per genre of :data:`GENRES`.
    users : pandas.DataFrame, shape (n_users, 4)
        Index ``user_id`` (int64, ascending); ``age`` (int64), ``gender``
        (``"M"``/``"F"``), ``occupation`` (str), ``zip_code`` (str).

    The frames are treated as read-only: the canonical content is computed
    once and kept.
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    _canonical: dict = field(default_factory=dict, repr=False, compare=False)

    def canonical(self) -> dict[str, bytes]:
        """The canonical content: three UTF-8 files, ``\\n`` line ends, no header.

        * ``ratings.tsv``: ``user_id\\titem_id\\trating\\ttimestamp`` per rating, in
          ``u.data`` order (the exact layout of GroupLens's ``u.data``);
        * ``items.tsv``: ``item_id\\ttitle\\trelease_year\\t<19 genre flags 0/1>``
          by ascending id, an empty field for a missing year;
        * ``users.tsv``: ``user_id\\tage\\tgender\\toccupation\\tzip_code`` by
          ascending id.

        Returns
        -------
        dict of str to bytes
            Keyed by :data:`CANONICAL_FILES`; computed once and kept.
        """
        if not self._canonical:
            self._canonical.update(_serialise(self))
        return dict(self._canonical)

    def sha256(self) -> dict[str, str]:
        """SHA-256 (hex) of each canonical file, keyed by :data:`CANONICAL_FILES`."""
        return {name: _sha256(data) for name, data in self.canonical().items()}

    def summary(self) -> dict:
        """Row counts as plain Python ints."""
        return {
            "ratings": len(self.ratings),
            "items": len(self.items),
            "users": len(self.users),
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _join_columns(columns: list[pd.Series]) -> bytes:
    """Tab-join string columns row-wise, one ``\\n``-terminated line per row."""
    first, rest = columns[0], columns[1:]
    lines = first.str.cat(rest, sep="\t") if rest else first
    return ("\n".join(lines.tolist()) + "\n").encode("utf-8")


def _serialise(tables: MovieLensTables) -> dict[str, bytes]:
    ratings = tables.ratings
    items = tables.items
    users = tables.users
    as_text = [ratings[c].astype("int64").astype(str) for c in RATING_COLUMNS]
    item_ids = pd.Series(items.index.to_numpy(np.int64)).astype(str)
    years = pd.Series(items["release_year"].to_numpy(dtype=object, na_value=None))
    years = years.map(lambda y: "" if y is None else str(int(y))).astype(str)
    flags = [
        pd.Series(np.where(items[g].to_numpy(dtype=bool), "1", "0")).astype(str) for g in GENRES
    ]
    titles = pd.Series(items["title"].to_numpy(dtype=object)).astype(str)
    user_ids = pd.Series(users.index.to_numpy(np.int64)).astype(str)
    user_cols = [pd.Series(users[c].to_numpy(dtype=object)).astype(str) for c in USER_COLUMNS]
    user_cols[0] = pd.Series(users["age"].to_numpy(np.int64)).astype(str)
    return {
        "ratings.tsv": _join_columns(as_text),
        "items.tsv": _join_columns([item_ids, titles, years, *flags]),
        "users.tsv": _join_columns([user_ids, *user_cols]),
    }


# ----------------------------------------------------------------------------- parsing helpers


def _error(file: str, line: int, problem: str) -> DataError:
    return DataError(f"{file}, line {line}: {problem}")


def _first(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def _looks_utf16(data: bytes) -> bool:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = data[:4096]
    # Text in UTF-16 has a NUL in (nearly) every other byte; real ML files have none.
    return len(head) >= 8 and head.count(0) * 3 >= len(head)


def _decode(data: bytes, file: str = "") -> str:
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


def _split_text(data: bytes, file: str, *, header: bool) -> tuple[pd.Series, int, str | None]:
    """Lines of a text file as a str Series, the line number of its first row, the header."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{file}: expected bytes, got {type(data).__name__}")
    text = _decode(bytes(data), file)
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
        raise _error(file, first_line + _first(blank), "empty line")
    return series, first_line, head


def _fields(
    lines: pd.Series, file: str, first_line: int, sep: str, num_fields: int, what: str
) -> list[pd.Series]:
    """Split every line into exactly ``num_fields`` fields (else a DataError naming the line)."""
    counts = (lines.str.count(re.escape(sep)) + 1).to_numpy()
    bad = counts != num_fields
    if bad.any():
        i = _first(bad)
        raise _error(
            file,
            first_line + i,
            f"expected {num_fields} {what}-separated fields, found {counts[i]}",
        )
    parts = lines.str.split(sep, n=num_fields - 1, expand=True, regex=False)
    return [parts[j].str.strip() for j in range(num_fields)]


def _ids(column: pd.Series, file: str, first_line: int, name: str) -> np.ndarray:
    """Non-negative integer ids written as plain digits."""
    ok = column.str.fullmatch(r"[0-9]{1,15}").fillna(False).to_numpy(dtype=bool)
    if not ok.all():
        i = _first(~ok)
        raise _error(
            file, first_line + i, f"{name} {column.iloc[i]!r} is not a non-negative integer"
        )
    return pd.to_numeric(column).to_numpy(np.int64)


def _whole_numbers(
    column: pd.Series, file: str, first_line: int, name: str, low: int, high: int | None = None
) -> np.ndarray:
    """Whole numbers (``"3"`` or ``"3.0"``) within ``low..high``."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = np.isnan(values)
    if bad.any():
        i = _first(bad)
        raise _error(file, first_line + i, f"{name} {column.iloc[i]!r} is not a number")
    top = np.inf if high is None else high
    bad = (values < low) | (values > top)
    if bad.any():
        i = _first(bad)
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise _error(file, first_line + i, f"{name} {column.iloc[i]} outside {bounds}")
    bad = values != np.floor(values)
    if bad.any():
        i = _first(bad)
        raise _error(file, first_line + i, f"{name} {column.iloc[i]} is not a whole number")
    return values.astype(np.int64)


def _unique_ids(ids: np.ndarray, file: str, first_line: int, name: str) -> None:
    order = np.argsort(ids, kind="stable")
    same = ids[order][1:] == ids[order][:-1]
    if same.any():
        later = order[1:][same]
        j = int(np.argmin(later))
        row = int(later[j])
        earlier = int(order[:-1][same][j])
        raise _error(
            file,
            first_line + row,
            f"{name} {ids[row]} appears twice (also on line {first_line + earlier})",
        )


def _text_column(
    column: pd.Series, file: str, first_line: int, name: str, *, allow_empty: bool = False
) -> pd.Series:
    column = column.astype(str)
    bad = column.str.contains("\t", regex=False).to_numpy(dtype=bool)
    if bad.any():
        raise _error(file, first_line + _first(bad), f"{name} contains a tab character")
    if not allow_empty:
        empty = (column == "").to_numpy(dtype=bool)
        if empty.any():
            raise _error(file, first_line + _first(empty), f"empty {name}")
    return column


def normalise_titles(full_titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Split GroupLens titles such as ``"Toy Story (1995)"`` into title and year.

    The year is the last ``(YYYY)`` that only parenthesised notes follow, so
    ``"Land Before Time III: ... (1995) (V)"`` gives ``"Land Before Time III: ...
    (V)"`` and 1995; a title without a year (``"unknown"``) is kept whole with a
    missing year. Titles are NFC-normalised and stripped.

    Parameters
    ----------
    full_titles : pandas.Series of str, shape (n,)

    Returns
    -------
    titles : pandas.Series of str, shape (n,)
    years : pandas.Series of Int64, shape (n,)
        ``<NA>`` where the title has no year.
    """
    full = pd.Series(full_titles, dtype="str").str.normalize("NFC").str.strip()
    parts = full.str.extract(_TITLE_RE)
    has_year = parts["year"].notna().to_numpy(dtype=bool)
    titles = full.copy()
    if has_year.any():
        head = parts.loc[has_year, "title"].str.strip()
        tail = parts.loc[has_year, "tail"].fillna("").str.strip()
        titles[has_year] = (head + " " + tail).str.strip()
    years = pd.to_numeric(parts["year"]).astype("Int64")
    years.index = full.index
    return titles.astype(str), years


def _items_frame(
    ids: np.ndarray, titles: pd.Series, years: pd.Series, flags: np.ndarray
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"title": titles.to_numpy(dtype=object), "release_year": years.to_numpy()},
        index=pd.Index(ids, name="item_id", dtype=np.int64),
    )
    frame["title"] = frame["title"].astype(str)
    frame["release_year"] = frame["release_year"].astype("Int64")
    for j, genre in enumerate(GENRES):
        frame[genre] = flags[:, j]
    return frame.sort_index()


def _users_frame(
    ids: np.ndarray, ages: np.ndarray, genders: pd.Series, occupations: pd.Series, zips: pd.Series
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "age": ages.astype(np.int64),
            "gender": genders.to_numpy(dtype=object),
            "occupation": occupations.to_numpy(dtype=object),
            "zip_code": zips.to_numpy(dtype=object),
        },
        index=pd.Index(ids, name="user_id", dtype=np.int64),
    )
    for column in ("gender", "occupation", "zip_code"):
        frame[column] = frame[column].astype(str)
    return frame.sort_index()


def _ratings_frame(columns: list[pd.Series], file: str, first_line: int) -> pd.DataFrame:
    users = _ids(columns[0], file, first_line, "user_id")
    items = _ids(columns[1], file, first_line, "item_id")
    ratings = _whole_numbers(columns[2], file, first_line, "rating", 1, 5)
    stamps = _whole_numbers(columns[3], file, first_line, "timestamp", 0)
    order = np.lexsort((np.arange(users.shape[0]), items, users))
    dup = (users[order][1:] == users[order][:-1]) & (items[order][1:] == items[order][:-1])
    if dup.any():
        later = order[1:][dup]
        j = int(np.argmin(later))
        row, earlier = int(later[j]), int(order[:-1][dup][j])
        raise _error(
            file,
            first_line + row,
            f"user_id {users[row]} rated item_id {items[row]} twice "
            f"(also on line {first_line + earlier})",
        )
    return pd.DataFrame(
        {"user_id": users, "item_id": items, "rating": ratings, "timestamp": stamps}
    )


def _user_columns(
    ids: pd.Series,
    ages: pd.Series,
    genders: pd.Series,
    occupations: pd.Series,
    zips: pd.Series,
    file: str,
    first_line: int,
) -> pd.DataFrame:
    ids = _ids(ids, file, first_line, "user_id")
    _unique_ids(ids, file, first_line, "user_id")
    ages = _whole_numbers(ages, file, first_line, "age", 1, 120)
    genders = genders.astype(str)
    bad = ~genders.isin(["M", "F"]).to_numpy(dtype=bool)
    if bad.any():
        i = _first(bad)
        raise _error(file, first_line + i, f"gender {genders.iloc[i]!r} is not 'M' or 'F'")
    occupations = _text_column(occupations, file, first_line, "occupation")
    zips = _text_column(zips, file, first_line, "zip_code")
    return _users_frame(ids, ages, genders, occupations, zips)


def _cross_check(
    ratings: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    names: Mapping[str, str],
    first_line: int,
) -> None:
    """Every rating must name a known user and a known item."""
    for column, table, key in (("user_id", users, "users"), ("item_id", items, "items")):
        known = np.isin(ratings[column].to_numpy(), table.index.to_numpy())
        if not known.all():
            i = _first(~known)
            raise _error(
                names["ratings"],
                first_line + i,
                f"{column} {ratings[column].iloc[i]} is not in {names[key]}",
            )


# ----------------------------------------------------------------------------- the two formats


def parse_grouplens(
    files: Mapping[str, bytes], names: Mapping[str, str] | None = None
) -> MovieLensTables:
    """Parse GroupLens's ``u.data``, ``u.item`` and ``u.user`` (raw bytes).

    Parameters
    ----------
    files : mapping with keys ``"ratings"``, ``"items"``, ``"users"``
        The bytes of ``u.data``, ``u.item`` (UTF-8 or ISO-8859-1) and ``u.user``.
    names : mapping with the same keys, optional
        How to name each file in error messages (default ``u.data`` etc.).

    Returns
    -------
    MovieLensTables

    Raises
    ------
    DataError
        A malformed file; the message names the file, the line and the problem.
    """
    names = {"ratings": "u.data", "items": "u.item", "users": "u.user", **(names or {})}
    lines, first, _ = _split_text(files["ratings"], names["ratings"], header=False)
    ratings = _ratings_frame(
        _fields(lines, names["ratings"], first, "\t", 4, "tab"), names["ratings"], first
    )
    rating_first = first

    file = names["items"]
    lines, first, _ = _split_text(files["items"], file, header=False)
    cols = _fields(lines, file, first, "|", 5 + len(GENRES), "'|'")
    ids = _ids(cols[0], file, first, "item_id")
    _unique_ids(ids, file, first, "item_id")
    full = _text_column(cols[1], file, first, "title")
    flags = np.empty((len(lines), len(GENRES)), dtype=bool)
    for j, genre in enumerate(GENRES):
        col = cols[5 + j]
        ok = col.isin(["0", "1"]).to_numpy(dtype=bool)
        if not ok.all():
            i = _first(~ok)
            raise _error(
                file, first + i, f"genre flag {genre!r} is {col.iloc[i]!r}, expected '0' or '1'"
            )
        flags[:, j] = (col == "1").to_numpy(dtype=bool)
    titles, years = normalise_titles(full)
    items = _items_frame(ids, titles, years, flags)

    file = names["users"]
    lines, first, _ = _split_text(files["users"], file, header=False)
    cols = _fields(lines, file, first, "|", 5, "'|'")
    users = _user_columns(*cols, file, first)
    _cross_check(ratings, items, users, names, rating_first)
    return MovieLensTables(ratings, items, users)


def _recbole_columns(
    data: bytes, file: str, required: tuple[str, ...]
) -> tuple[dict[str, pd.Series], int, int]:
    """Fields of a RecBole atomic file by header name (``name:type``), and the row count."""
    lines, first, head = _split_text(data, file, header=True)
    header = [h.strip() for h in head.split("\t")]
    names = [h.split(":", 1)[0] for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise _error(
            file,
            1,
            f"header lacks column(s) {', '.join(map(repr, missing))} "
            f"(found {', '.join(map(repr, names))})",
        )
    cols = _fields(lines, file, first, "\t", len(names), "tab")
    return {n: cols[names.index(n)] for n in required}, first, len(lines)


def parse_recbole(
    files: Mapping[str, bytes], names: Mapping[str, str] | None = None
) -> MovieLensTables:
    """Parse RecBole's ``ml-100k.inter``, ``.item`` and ``.user`` atomic files (raw bytes).

    RecBole keeps the title without its year (``movie_title``), the year in
    ``release_year`` and the genres as a space-separated ``class``; the title is
    rebuilt as GroupLens writes it and normalised by :func:`normalise_titles`,
    so both formats give identical tables. RecBole's placeholder ``"unkonwn"``
    (item 267) stands for GroupLens's title ``"unknown"`` without a year.

    Parameters
    ----------
    files : mapping with keys ``"ratings"``, ``"items"``, ``"users"``
        The bytes of the ``.inter``, ``.item`` and ``.user`` files.
    names : mapping with the same keys, optional
        How to name each file in error messages.

    Returns
    -------
    MovieLensTables

    Raises
    ------
    DataError
        A malformed file; the message names the file, the line and the problem.
    """
    names = {
        "ratings": "ml-100k.inter",
        "items": "ml-100k.item",
        "users": "ml-100k.user",
        **(names or {}),
    }
    cols, rating_first, _ = _recbole_columns(files["ratings"], names["ratings"], RATING_COLUMNS)
    ratings = _ratings_frame([cols[c] for c in RATING_COLUMNS], names["ratings"], rating_first)

    file = names["items"]
    cols, first, n = _recbole_columns(
        files["items"], file, ("item_id", "movie_title", "release_year", "class")
    )
    ids = _ids(cols["item_id"], file, first, "item_id")
    _unique_ids(ids, file, first, "item_id")
    title = _text_column(cols["movie_title"], file, first, "movie_title")
    year = cols["release_year"].astype(str)
    title = title.where(title != _RECBOLE_MISSING, "unknown")
    year = year.where(year != _RECBOLE_MISSING, "")
    full = title.where(year == "", title + " (" + year + ")")
    titles, years = normalise_titles(full)

    tokens = cols["class"].astype(str).str.split()
    exploded = tokens.explode()
    exploded = exploded[exploded.notna() & (exploded != "")]
    unknown = ~exploded.isin(GENRES).to_numpy(dtype=bool)
    if unknown.any():
        i = _first(unknown)
        row = int(exploded.index[i])
        raise _error(
            file,
            first + row,
            f"unknown genre {exploded.iloc[i]!r} in class (expected one of {', '.join(GENRES)})",
        )
    flags = np.zeros((n, len(GENRES)), dtype=bool)
    genre_index = {g: j for j, g in enumerate(GENRES)}
    flags[exploded.index.to_numpy(np.int64), exploded.map(genre_index).to_numpy(np.int64)] = True
    items = _items_frame(ids, titles, years, flags)

    file = names["users"]
    cols, first, _ = _recbole_columns(files["users"], file, ("user_id", *USER_COLUMNS))
    users = _user_columns(cols["user_id"], *(cols[c] for c in USER_COLUMNS), file, first)
    _cross_check(ratings, items, users, names, rating_first)
    return MovieLensTables(ratings, items, users)


def tables_from_canonical(
    files: Mapping[str, bytes], names: Mapping[str, str] | None = None
) -> MovieLensTables:
    """Rebuild :class:`MovieLensTables` from its canonical files (see ``canonical``).

    Parameters
    ----------
    files : mapping of :data:`CANONICAL_FILES` to bytes
    names : mapping of the same keys to display names, optional

    Raises
    ------
    DataError
        A file is not in the canonical layout (line and problem named).
    """
    names = {n: n for n in CANONICAL_FILES} | dict(names or {})
    data = files["ratings.tsv"]
    try:
        ratings = pd.read_csv(
            io.BytesIO(data),
            sep="\t",
            header=None,
            names=list(RATING_COLUMNS),
            dtype=np.int64,
            engine="c",
            na_filter=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        # The fast reader failed: let the strict parser name the line.
        lines, first, _ = _split_text(data, names["ratings.tsv"], header=False)
        _ratings_frame(
            _fields(lines, names["ratings.tsv"], first, "\t", 4, "tab"), names["ratings.tsv"], first
        )
        raise DataError(f"{names['ratings.tsv']}: unreadable ({exc})") from exc
    if ratings.empty:
        raise DataError(f"{names['ratings.tsv']}: empty file")

    file = names["items.tsv"]
    lines, first, _ = _split_text(files["items.tsv"], file, header=False)
    cols = _fields(lines, file, first, "\t", 3 + len(GENRES), "tab")
    ids = _ids(cols[0], file, first, "item_id")
    titles = _text_column(cols[1], file, first, "title")
    year_text = cols[2]
    has_year = (year_text != "").to_numpy(dtype=bool)
    years = pd.Series(pd.array([pd.NA] * len(lines), dtype="Int64"))
    if has_year.any():
        # Check the whole column (a missing year reads as "0") so that a bad year is
        # reported on its own line; the filtered rows would lose their offsets.
        checked = _ids(year_text.where(has_year, "0"), file, first, "release_year")
        years[has_year] = checked[has_year]
    flags = np.column_stack([(c == "1").to_numpy(dtype=bool) for c in cols[3:]])
    items = _items_frame(ids, titles.str.normalize("NFC"), years, flags)

    file = names["users.tsv"]
    lines, first, _ = _split_text(files["users.tsv"], file, header=False)
    users = _user_columns(*_fields(lines, file, first, "\t", 5, "tab"), file, first)
    return MovieLensTables(ratings, items, users, dict(files))


# ----------------------------------------------------------------------------- local files


#: Largest inflated size of each file of an ML-100K distribution (the real ones are
#: 2.0 MB, 0.24 MB and 0.02 MB; RecBole's atomic files are a little larger).
ML100K_CAPS: dict[str, int] = {"ratings": 8 * 2**20, "items": 2**20, "users": 2**20}
_ML100K_TOTAL_CAP = 10 * 2**20


def _read_zip(
    source: str | Path | bytes,
    display: str,
    basenames: Mapping[str, str],
    caps: Mapping[str, int] | None = None,
) -> tuple[dict[str, bytes], dict[str, str]]:
    caps = ML100K_CAPS if caps is None else caps
    return read_members(source, display, basenames, caps, sum(caps[k] for k in basenames))


def _read_folder(
    folder: Path, basenames: Mapping[str, str], caps: Mapping[str, int] | None = None
) -> tuple[dict[str, bytes], dict[str, str]]:
    caps = ML100K_CAPS if caps is None else caps
    data, names = {}, {}
    for key, base in basenames.items():
        path = folder / base
        if not path.exists() and not path.is_symlink():
            raise DataError(f"{folder}: no {base} in this folder")
        data[key] = read_regular_file(path, caps[key])
        names[key] = str(path)
    return data, names


_GROUPLENS_FILES = {"ratings": "u.data", "items": "u.item", "users": "u.user"}
_RECBOLE_FILES = {"ratings": "ml-100k.inter", "items": "ml-100k.item", "users": "ml-100k.user"}


def read_grouplens(path: str | Path) -> MovieLensTables:
    """Read a GroupLens ``ml-100k`` folder (or its parent) or ``ml-100k.zip``.

    Raises
    ------
    DataError
        Missing files or malformed content (file, line and problem named).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        here = (path / "u.data").exists() or (path / "u.data").is_symlink()
        folder = path if here or not (path / "ml-100k").is_dir() else path / "ml-100k"
        files, names = _read_folder(folder, _GROUPLENS_FILES)
    elif path.is_file():
        files, names = _read_zip(path, str(path), _GROUPLENS_FILES)
    else:
        raise DataError(f"{path}: no such file or folder")
    return parse_grouplens(files, names)


def read_recbole(path: str | Path) -> MovieLensTables:
    """Read RecBole's ML-100K atomic files from the wheel (a zip) or from a folder.

    Raises
    ------
    DataError
        Missing files or malformed content (file, line and problem named).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files, names = _read_folder(path, _RECBOLE_FILES)
    elif path.is_file():
        files, names = _read_zip(path, str(path), _RECBOLE_FILES)
    else:
        raise DataError(f"{path}: no such file or folder")
    return parse_recbole(files, names)


def read_local(path: str | Path) -> MovieLensTables:
    """Read whichever distribution ``path`` holds (GroupLens folder/zip or RecBole wheel/folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        recbole = (path / "ml-100k.inter").is_file() and not (path / "u.data").exists()
        return read_recbole(path) if recbole else read_grouplens(path)
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                recbole = any(m.endswith("ml-100k.inter") for m in archive.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a valid zip archive ({exc})") from None
        return read_recbole(path) if recbole else read_grouplens(path)
    if path.is_file():
        raise DataError(f"{path}: not a folder or a zip archive")
    raise DataError(f"{path}: no such file or folder")


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$RSBENCH_CACHE_DIR`` if set, else ``~/.cache/rsbench``."""
    env = os.environ.get("RSBENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rsbench"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temps(folder: Path) -> None:
    """Delete temporary files a killed writer left behind (older than an hour)."""
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > _STALE_TEMP_S:
                tmp.unlink()
                logger.info("removed stale temporary file %s", tmp)


def _atomic_write(path: Path, data: bytes, sha256: str) -> None:
    """Write to a temporary name beside ``path``, fsync, verify, then rename over ``path``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is ordinary data
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        written = _sha256(tmp.read_bytes())
        if written != sha256:
            raise DataError(f"{tmp}: sha256 {written} after writing, expected {sha256}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_cache(
    folder: str | Path, files: Mapping[str, bytes], expected: Mapping[str, str]
) -> None:
    """Store the canonical files in ``folder``, each atomically and verified.

    Parameters
    ----------
    folder : path
        E.g. ``<cache_dir>/ml-100k``; created if missing.
    files : mapping of :data:`CANONICAL_FILES` to bytes
    expected : mapping of the same names to SHA-256 hex digests

    Raises
    ------
    DataError
        A file does not match its expected hash (nothing is written for it).
    OSError
        The folder cannot be written (temporary files are removed).
    """
    folder = Path(folder)
    for name in expected:
        digest = _sha256(files[name])
        if digest != expected[name]:
            raise DataError(f"{name}: sha256 {digest} does not match the pinned {expected[name]}")
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder)
    for name in expected:
        _atomic_write(folder / name, files[name], expected[name])


_REPORTED: set[str] = set()


def _discard(path: Path, problem: str) -> None:
    """Delete a bad cache file; if it cannot be deleted, say so (once per process)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        if str(path) not in _REPORTED:
            _REPORTED.add(str(path))
            logger.warning(
                "cached file %s is %s and cannot be deleted (%s); leaving it and using "
                "another source",
                path,
                problem,
                exc.strerror or exc,
            )
        return
    logger.warning("cached file %s is %s; deleted it, fetching the data again", path, problem)


def cache_folders(cache_dir: str | Path | None, name: str) -> tuple[Path, Path]:
    """The cache folder of dataset ``name`` and the private fallback used when it is read-only."""
    folder = Path(default_cache_dir() if cache_dir is None else cache_dir).expanduser() / name
    # The fallback belongs to this cache folder only, so two caches never share it.
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return folder, rsbench_temp_dir() / "cache" / key / name


def read_cache(
    folder: str | Path,
    expected: Mapping[str, str],
    parse: Callable[[Mapping[str, bytes], Mapping[str, str]], MovieLensTables] | None = None,
) -> MovieLensTables | None:
    """Read and verify the cached canonical files; ``None`` when absent or corrupt.

    A file whose SHA-256 differs from ``expected`` (flipped bytes, truncation) or
    that cannot be parsed is deleted with a warning naming it, so the caller
    fetches it again; a corrupt file that cannot be deleted (a read-only cache)
    is reported once per process and left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    _remove_stale_temps(folder)
    files = {}
    for name in expected:
        path = folder / name
        try:
            data = read_regular_file(path, _MAX_CACHE_BYTES)
        except DataError as exc:
            if not path.exists() and not path.is_symlink():
                logger.debug("cache miss: %s", path)
                return None
            _discard(path, f"unusable ({exc})")
            return None
        digest = _sha256(data)
        if digest != expected[name]:
            _discard(path, f"corrupt (sha256 {digest}, expected {expected[name]})")
            return None
        files[name] = data
    try:
        return (parse or tables_from_canonical)(files, {n: str(folder / n) for n in expected})
    except DataError as exc:
        # Only reachable when the expected hashes describe unparsable content.
        for name in expected:
            _discard(folder / name, f"unparsable ({exc})")
        return None


def store_in_cache(
    folders: tuple[Path, Path], files: Mapping[str, bytes], expected: Mapping[str, str]
) -> Path | None:
    """Write verified canonical files to the first of ``folders`` that accepts them."""
    for folder in folders:
        try:
            write_cache(folder, files, expected)
        except OSError as exc:
            logger.info("cannot write the cache in %s (%s)", folder, exc.strerror or exc)
            continue
        return folder
    logger.warning("could not write the data cache in any of %s", ", ".join(map(str, folders)))
    return None


# ----------------------------------------------------------------------------- remote sources


def _fetch_grouplens(timeout: float) -> tuple[MovieLensTables, str]:
    data, digests = sources.download(GROUPLENS_URL, _MAX_DOWNLOAD_BYTES, timeout)
    if digests.md5 != GROUPLENS_ZIP_MD5:
        logger.warning(
            "%s has md5 %s, not the published %s; checking its content hashes",
            GROUPLENS_URL,
            digests.md5,
            GROUPLENS_ZIP_MD5,
        )
    files, names = _read_zip(data, GROUPLENS_URL, _GROUPLENS_FILES)
    return parse_grouplens(files, names), f"grouplens:{GROUPLENS_URL}"


def _fetch_pypi(timeout: float) -> tuple[MovieLensTables, str]:
    with tempfile.TemporaryDirectory(prefix="rsbench-recbole-", dir=rsbench_temp_dir()) as tmp:
        wheel = sources.pip_download(
            RECBOLE_REQUIREMENT, RECBOLE_WHEEL, Path(tmp), max(timeout, _PIP_TIMEOUT_S)
        )
        digest = file_digests(wheel, _MAX_DOWNLOAD_BYTES).sha256
        if digest != RECBOLE_WHEEL_SHA256:
            raise SourceError(
                f"{wheel.name} has sha256 {digest}, expected the pinned {RECBOLE_WHEEL_SHA256}"
            )
        files, names = _read_zip(wheel, wheel.name, _RECBOLE_FILES)
    return parse_recbole(files, names), f"pypi:{RECBOLE_REQUIREMENT}"


def _mismatches(actual: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    return [
        f"{name} sha256 {actual[name]} (expected {expected[name]})"
        for name in CANONICAL_FILES
        if actual[name] != expected[name]
    ]


def load_movielens(
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    expected: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[MovieLensTables, str]:
    """MovieLens 100K tables from the first source that works, verified.

    Sources, in order: ``path`` (when given, the only one tried: a GroupLens
    folder or zip, or a RecBole wheel or folder); the cache folder
    ``<cache_dir>/ml-100k``; the official GroupLens zip; ``pip download
    recbole==1.2.1``. A source that fails is logged and the next one tried; data
    fetched from the network is verified, then written to the cache.

    Parameters
    ----------
    path : path, optional
        Local copy of the data; its content must match ``expected``.
    cache_dir : path, optional
        Default :func:`default_cache_dir` (``$RSBENCH_CACHE_DIR`` or
        ``~/.cache/rsbench``).
    expected : mapping of :data:`CANONICAL_FILES` to SHA-256, optional
        Default :data:`ML100K_SHA256`.
    timeout : float
        Seconds allowed for the GroupLens download (``pip`` gets at least 300).

    Returns
    -------
    tables : MovieLensTables
    source : str
        ``"path:..."``, ``"cache:..."``, ``"grouplens:<url>"`` or ``"pypi:recbole==1.2.1"``.

    Raises
    ------
    DataError
        ``path`` is missing, malformed or does not match ``expected``; or no
        source works (every reason is listed).
    """
    expected = dict(ML100K_SHA256 if expected is None else expected)
    if path is not None:
        tables = read_local(path)
        bad = _mismatches(tables.sha256(), expected)
        if bad:
            raise DataError(f"{path}: content differs from MovieLens 100K: {'; '.join(bad)}")
        return tables, f"path:{Path(path).expanduser().resolve()}"

    folders = cache_folders(cache_dir, "ml-100k")
    for folder in folders:
        tables = read_cache(folder, expected)
        if tables is not None:
            return tables, f"cache:{folder.resolve()}"

    reasons = []
    sources: tuple[tuple[str, Callable[[float], tuple[MovieLensTables, str]]], ...] = (
        ("grouplens", _fetch_grouplens),
        ("pypi", _fetch_pypi),
    )
    for label, fetch in sources:
        try:
            tables, source = fetch(timeout)
        except Exception as exc:  # any failure of a source means: try the next one
            reason = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
            logger.info("MovieLens 100K source %s unavailable (%s)", label, reason)
            reasons.append(f"{label}: {reason}")
            continue
        bad = _mismatches(tables.sha256(), expected)
        if bad:
            logger.warning("MovieLens 100K from %s does not verify: %s", source, "; ".join(bad))
            reasons.append(f"{label}: content mismatch ({'; '.join(bad)})")
            continue
        where = store_in_cache(folders, tables.canonical(), expected)
        if where is not None:
            logger.info("MovieLens 100K from %s cached in %s", source, where)
        return tables, source
    raise DataError(
        "MovieLens 100K is not available from any source ("
        + "; ".join(reasons)
        + "); pass path= to a GroupLens ml-100k folder or ml-100k.zip"
    )
