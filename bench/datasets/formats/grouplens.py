"""GroupLens's own MovieLens files: ML-100K ``u.*``, ML-1M ``.dat`` and the larger releases.

* ``ml-100k``: ``u.data`` (``user\\titem\\trating\\ttimestamp``), ``u.item``
  (``|``-separated, ISO-8859-1, ``Title (YYYY)``, release dates, URL and 19
  genre flags) and ``u.user`` (``id|age|gender|occupation|zip``);
* ``ml-1m``: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``),
  ``movies.dat`` (``MovieID::Title::Genres``, ISO-8859-1, genres ``|``-separated)
  and ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``); the item id
  is the 1-based rank of the full title among the rated movies (see
  :func:`~bench.datasets.formats.movielens.ratings_by_title`), so that the
  RecBole distribution, which has titles only, numbers them the same;
* the larger releases described by a :class:`Release` (``ml-10m``: ``::``
  ``.dat``; ``ml-20m``, ``ml-25m``, ``ml-latest-small``: CSV with a header),
  parsed straight into a :class:`~bench.datasets.record.Record` with typed
  columns (int32 ids, float32 ratings, int64 timestamps) by pandas' C parser.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.datasets.dataset import DataError
from bench.datasets.features import item_side_features
from bench.datasets.formats.movielens import (
    GENRES,
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
from bench.datasets.record import Record

__all__ = [
    "GROUPLENS_BASE_URL",
    "ML1M_FILES",
    "ML100K_FILES",
    "Release",
    "parse_grouplens",
    "parse_large",
    "parse_ml1m_grouplens",
]

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
#: Member basenames of each distribution (``ratings``, ``items``, ``users``).
ML100K_FILES = {"ratings": "u.data", "items": "u.item", "users": "u.user"}
ML1M_FILES = {"ratings": "ratings.dat", "items": "movies.dat", "users": "users.dat"}


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
    lines, first, _ = split_text(files["ratings"], names["ratings"], header=False)
    ratings = ratings_frame(
        split_fields(lines, names["ratings"], first, "\t", 4, "tab"), names["ratings"], first
    )
    rating_first = first

    file = names["items"]
    lines, first, _ = split_text(files["items"], file, header=False)
    cols = split_fields(lines, file, first, "|", 5 + len(GENRES), "'|'")
    ids = int_ids(cols[0], file, first, "item_id")
    unique_ids(ids, file, first, "item_id")
    full = text_column(cols[1], file, first, "title")
    flags = np.empty((len(lines), len(GENRES)), dtype=bool)
    for j, genre in enumerate(GENRES):
        col = cols[5 + j]
        ok = col.isin(["0", "1"]).to_numpy(dtype=bool)
        if not ok.all():
            i = first_true(~ok)
            raise line_error(
                file, first + i, f"genre flag {genre!r} is {col.iloc[i]!r}, expected '0' or '1'"
            )
        flags[:, j] = (col == "1").to_numpy(dtype=bool)
    titles, years = normalise_titles(full)
    items = items_frame(ids, titles, years, flags)

    file = names["users"]
    lines, first, _ = split_text(files["users"], file, header=False)
    cols = split_fields(lines, file, first, "|", 5, "'|'")
    users = user_columns(*cols, file, first)
    cross_check(ratings, items, users, names, rating_first)
    return MovieLensTables(ratings, items, users)


def _dat_lines(data: bytes, file: str, num_fields: int) -> tuple[list[pd.Series], int]:
    """Strictly split a ``::``-separated file (latin-1 or UTF-8) into string columns."""
    lines, first, _ = split_text(data, file, header=False)
    return split_fields(lines, file, first, "::", num_fields, "'::'"), first


def _fast_dat_ints(data: bytes, num_fields: int) -> np.ndarray | None:
    """Integer ``::`` rows via the C parser, or ``None`` when anything is unusual."""
    if b"\t" in data:
        return None
    try:
        frame = pd.read_csv(
            io.BytesIO(data.replace(b"::", b"\t")),
            sep="\t",
            header=None,
            dtype=np.int64,
            engine="c",
            na_filter=False,
        )
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None
    if frame.shape[1] != num_fields or frame.empty:
        return None
    return frame.to_numpy(np.int64)


def parse_ml1m_grouplens(
    files: Mapping[str, bytes], names: Mapping[str, str] | None = None
) -> MovieLensTables:
    """Parse GroupLens's ML-1M ``ratings.dat``, ``movies.dat`` and ``users.dat`` (raw bytes).

    Raises
    ------
    DataError
        A malformed file; the message names the file, the line and the problem.
    """
    names = {**ML1M_FILES, **(names or {})}
    file = names["items"]
    cols, first = _dat_lines(files["items"], file, 3)
    ids = int_ids(cols[0], file, first, "MovieID")
    id_to_title = pd.Series(cols[1].to_numpy(dtype=object), index=ids)
    if not id_to_title.index.is_unique:
        i = first_true(id_to_title.index.duplicated())
        raise line_error(file, first + i, f"MovieID {ids[i]} appears twice")
    catalogue = title_catalogue(cols[1], genre_flags(cols[2], "|", file, first), file, first)

    file = names["ratings"]
    fast = _fast_dat_ints(files["ratings"], 4)
    if fast is not None and ((fast[:, 2] < 1) | (fast[:, 2] > 5) | (fast < 0).any(axis=1)).any():
        fast = None  # let the strict parser name the line
    if fast is None:
        cols, first = _dat_lines(files["ratings"], file, 4)
        user_ids = int_ids(cols[0], file, first, "UserID")
        movie_ids = int_ids(cols[1], file, first, "MovieID")
        stars = whole_numbers(cols[2], file, first, "Rating", 1, 5)
        stamps = whole_numbers(cols[3], file, first, "Timestamp", 0)
    else:
        first = 1
        user_ids, movie_ids, stars, stamps = (fast[:, j] for j in range(4))
    known = np.isin(movie_ids, ids)
    if not known.all():
        i = first_true(~known)
        raise line_error(file, first + i, f"MovieID {movie_ids[i]} is not in {names['items']}")
    titles = pd.Series(id_to_title.loc[movie_ids].to_numpy(dtype=object)).astype(str)
    ratings, items = ratings_by_title(user_ids, titles, stars, stamps, catalogue, file, first)

    file = names["users"]
    cols, ufirst = _dat_lines(files["users"], file, 5)
    uid, gender, age, occupation, zips = cols
    occupation = pd.Series(int_ids(occupation, file, ufirst, "Occupation")).astype(str)
    users = user_columns(uid, age, gender, occupation, zips, file, ufirst)
    check_users(ratings, users, names["ratings"], first, names["users"])
    return MovieLensTables(ratings, items, users)


# ----------------------------------------------------------------------------- larger releases


@dataclass(frozen=True)
class Release:
    """One GroupLens release beyond ML-1M: where it lives and how it is laid out.

    Attributes
    ----------
    name : str
        E.g. ``"ml-20m"``.
    md5 : str or None
        The zip's MD5 as GroupLens publishes it (``<zip>.md5``); ``None`` where
        none could be looked up (``ml-latest-small`` is re-issued under the same
        name, so no fixed value exists).
    ratings, movies : str
        Member basenames.
    separator : str
        ``"::"`` (``.dat``, no header) or ``","`` (CSV with header).
    cap : int
        Largest inflated size accepted for the ratings member.
    description : str
        One line for ``rsbench list`` (its size).
    """

    name: str
    md5: str | None
    ratings: str
    movies: str
    separator: str
    cap: int
    description: str = ""

    @property
    def url(self) -> str:
        """The GroupLens download address."""
        return f"{GROUPLENS_BASE_URL}{self.name}.zip"


def _read_ratings_table(data: bytes, file: str, release: Release) -> pd.DataFrame:
    """Typed ratings columns via the C parser; a malformed line is named by the strict check."""
    dtype = {"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64}
    text = data.replace(b"::", b"\t") if release.separator == "::" else data
    sep = "\t" if release.separator == "::" else ","
    header = None if release.separator == "::" else 0
    try:
        frame = pd.read_csv(
            io.BytesIO(text),
            sep=sep,
            header=header,
            names=list(dtype),
            dtype=dtype,
            engine="c",
            na_filter=False,
        )
    except (ValueError, pd.errors.ParserError, OverflowError) as exc:
        _name_bad_line(data, file, release)
        raise DataError(f"{file}: unreadable ({exc})") from None
    if frame.empty:
        raise DataError(f"{file}: no ratings")
    first = 1 if header is None else 2
    bad = ~np.isfinite(frame["rating"].to_numpy()) | (frame["rating"].to_numpy() < 0)
    bad |= (frame["user"].to_numpy() < 0) | (frame["item"].to_numpy() < 0)
    if bad.any():
        i = first_true(bad)
        raise line_error(file, first + i, f"invalid row {frame.iloc[i].tolist()}")
    return frame


def _name_bad_line(data: bytes, file: str, release: Release) -> None:
    lines, first, _ = split_text(data, file, header=release.separator != "::")
    sep = release.separator
    cols = split_fields(lines, file, first, sep, 4, repr(sep))
    int_ids(cols[0], file, first, "userId")
    int_ids(cols[1], file, first, "movieId")
    values = pd.to_numeric(cols[2], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    if np.isnan(values).any():
        i = first_true(np.isnan(values))
        raise line_error(file, first + i, f"rating {cols[2].iloc[i]!r} is not a number")
    whole_numbers(cols[3], file, first, "timestamp", 0)


def _read_movies(data: bytes, file: str, release: Release) -> pd.DataFrame:
    if release.separator == "::":
        cols, first = _dat_lines(data, file, 3)
        ids, titles, genres = int_ids(cols[0], file, first, "movieId"), cols[1], cols[2]
    else:
        try:
            frame = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8", engine="c"
            )
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{file}: unreadable ({exc})") from None
        if list(frame.columns) != ["movieId", "title", "genres"]:
            raise line_error(
                file, 1, f"expected header movieId,title,genres, got {list(frame.columns)}"
            )
        ids = int_ids(frame["movieId"], file, 2, "movieId")
        titles, genres = frame["title"], frame["genres"]
    title, year = normalise_titles(titles)
    table = pd.DataFrame(
        {"title": title.to_numpy(dtype=object), "release_year": year.to_numpy()},
        index=pd.Index(ids, name="item_id"),
    )
    table["release_year"] = table["release_year"].astype("Int64")
    table["genres"] = genres.to_numpy(dtype=object)
    return table


def parse_large(
    files: Mapping[str, bytes], release: Release, names: Mapping[str, str] | None = None
) -> Record:
    """Parse a larger GroupLens release (``ratings``, ``movies`` bytes) into a :class:`Record`.

    Ratings are read by pandas' C parser into int32 ids, float32 ratings and
    int64 timestamps (ML-20M: about 20M x 20 bytes, well under a GiB); the
    catalogue is the rated movies, numbered in ascending movie id; item side
    features are genres (``|``-separated) and the release decade.

    Raises
    ------
    DataError
        A malformed line (file, line and problem named) or a rating of an unknown movie.
    """
    names = {"ratings": release.ratings, "movies": release.movies, **(names or {})}
    frame = _read_ratings_table(files["ratings"], names["ratings"], release)
    movies = _read_movies(files["movies"], names["movies"], release)
    users = frame["user"].to_numpy()
    items = frame["item"].to_numpy()
    raw_users, user_index = np.unique(users, return_inverse=True)
    raw_items, item_index = np.unique(items, return_inverse=True)
    known = np.isin(raw_items, movies.index.to_numpy())
    if not known.all():
        missing = raw_items[~known][0]
        row = first_true(items == missing)
        first = 1 if release.separator == "::" else 2
        raise line_error(
            names["ratings"], first + row, f"movieId {missing} is not in {names['movies']}"
        )
    order = np.lexsort((item_index, user_index))
    dup = (np.diff(user_index[order]) == 0) & (np.diff(item_index[order]) == 0)
    if dup.any():
        row = int(order[1:][dup].min())
        first = 1 if release.separator == "::" else 2
        raise line_error(names["ratings"], first + row, "the same user rated the same movie twice")
    item_table = movies.loc[raw_items]
    genre_names = sorted(
        {g for g in "|".join(item_table["genres"].astype(str)).split("|") if g}
        - {"(no genres listed)"}
    )
    for genre in genre_names:
        item_table[genre] = (
            item_table["genres"].astype(str).str.split("|").map(lambda gs, g=genre: g in gs)
        )
    item_table = item_table.drop(columns=["genres"])
    return Record(
        user_index=user_index.astype(np.int32),
        item_index=item_index.astype(np.int32),
        rating=frame["rating"].to_numpy(np.float32),
        timestamp=frame["timestamp"].to_numpy(np.int64),
        raw_user_ids=raw_users,
        raw_item_ids=raw_items,
        item_table=item_table,
        item_features=item_side_features(item_table, genres=tuple(genre_names)),
        sha256=hashlib.sha256(files["ratings"]).hexdigest(),
        files={release.ratings: files["ratings"], release.movies: files["movies"]},
    )
