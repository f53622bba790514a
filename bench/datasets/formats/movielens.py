"""The normalised MovieLens tables that every MovieLens reader (GroupLens, RecBole) produces.

:class:`MovieLensTables` is the one form of MovieLens 100K and 1M whatever the
distribution it was read from. Its *canonical content* (three tab-separated
UTF-8 files, see :meth:`MovieLensTables.canonical`) is what the pinned SHA-256
constants describe and what the cache holds, so every source verifies against
the same constants; ``ratings.tsv`` is byte-for-byte the ``u.data`` layout.
:func:`record_from_tables` turns the tables into the wing's pre-split
:class:`~bench.datasets.record.Record`, with the MovieLens side features.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.datasets.dataset import DataError, SideFeatures
from bench.datasets.features import item_side_features, user_side_features
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
    "AGE_BUCKETS",
    "CANONICAL_FILES",
    "GENRES",
    "MovieLensTables",
    "movielens_user_features",
    "normalise_titles",
    "record_from_tables",
    "tables_from_canonical",
]

#: The 19 genre flags of ``u.item``, in GroupLens's column order.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


#: Names of the canonical files (also the cache file names).
CANONICAL_FILES: tuple[str, ...] = ("ratings.tsv", "items.tsv", "users.tsv")

RATING_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rating", "timestamp")
USER_COLUMNS: tuple[str, ...] = ("age", "gender", "occupation", "zip_code")

#: MovieLens 1M's age groups: (label, lowest age in the bucket).
AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("under-18", 0),
    ("18-24", 18),
    ("25-34", 25),
    ("35-44", 35),
    ("45-49", 45),
    ("50-55", 50),
    ("56+", 56),
)

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


def items_frame(
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


def ratings_frame(columns: list[pd.Series], file: str, first_line: int) -> pd.DataFrame:
    users = int_ids(columns[0], file, first_line, "user_id")
    items = int_ids(columns[1], file, first_line, "item_id")
    ratings = whole_numbers(columns[2], file, first_line, "rating", 1, 5)
    stamps = whole_numbers(columns[3], file, first_line, "timestamp", 0)
    order = np.lexsort((np.arange(users.shape[0]), items, users))
    dup = (users[order][1:] == users[order][:-1]) & (items[order][1:] == items[order][:-1])
    if dup.any():
        later = order[1:][dup]
        j = int(np.argmin(later))
        row, earlier = int(later[j]), int(order[:-1][dup][j])
        raise line_error(
            file,
            first_line + row,
            f"user_id {users[row]} rated item_id {items[row]} twice "
            f"(also on line {first_line + earlier})",
        )
    return pd.DataFrame(
        {"user_id": users, "item_id": items, "rating": ratings, "timestamp": stamps}
    )


def user_columns(
    ids: pd.Series,
    ages: pd.Series,
    genders: pd.Series,
    occupations: pd.Series,
    zips: pd.Series,
    file: str,
    first_line: int,
) -> pd.DataFrame:
    ids = int_ids(ids, file, first_line, "user_id")
    unique_ids(ids, file, first_line, "user_id")
    ages = whole_numbers(ages, file, first_line, "age", 1, 120)
    genders = genders.astype(str)
    bad = ~genders.isin(["M", "F"]).to_numpy(dtype=bool)
    if bad.any():
        i = first_true(bad)
        raise line_error(file, first_line + i, f"gender {genders.iloc[i]!r} is not 'M' or 'F'")
    occupations = text_column(occupations, file, first_line, "occupation")
    zips = text_column(zips, file, first_line, "zip_code")
    return _users_frame(ids, ages, genders, occupations, zips)


def cross_check(
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
            i = first_true(~known)
            raise line_error(
                names["ratings"],
                first_line + i,
                f"{column} {ratings[column].iloc[i]} is not in {names[key]}",
            )


def genre_flags(tokens: pd.Series, sep: str, file: str, first_line: int) -> np.ndarray:
    exploded = tokens.astype(str).str.split(sep, regex=False).explode()
    exploded = exploded[exploded.notna() & (exploded != "")]
    index = {g: j for j, g in enumerate(GENRES)}
    codes = exploded.map(index)
    unknown = codes.isna().to_numpy()
    if unknown.any():
        i = first_true(unknown)
        raise line_error(
            file,
            first_line + int(exploded.index[i]),
            f"unknown genre {exploded.iloc[i]!r} (expected one of {', '.join(GENRES)})",
        )
    flags = np.zeros((len(tokens), len(GENRES)), dtype=bool)
    flags[exploded.index.to_numpy(np.int64), codes.to_numpy(np.int64)] = True
    return flags


def ratings_by_title(
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
        row = first_true((titles == missing).to_numpy())
        raise line_error(file, first_line + row, f"movie {missing!r} is not in the movie table")
    item_ids = np.searchsorted(rated, titles.to_numpy(dtype=str)).astype(np.int64) + 1
    order = np.lexsort((np.arange(user_ids.shape[0]), item_ids, user_ids))
    dup = (user_ids[order][1:] == user_ids[order][:-1]) & (
        item_ids[order][1:] == item_ids[order][:-1]
    )
    if dup.any():
        later = order[1:][dup]
        j = int(np.argmin(later))
        row, earlier = int(later[j]), int(order[:-1][dup][j])
        raise line_error(
            file,
            first_line + row,
            f"user {user_ids[row]} rated {titles.iloc[row]!r} twice "
            f"(also on line {first_line + earlier})",
        )
    ratings = pd.DataFrame(
        {"user_id": user_ids, "item_id": item_ids, "rating": stars, "timestamp": stamps}
    )
    rows = catalogue.loc[rated]
    items = items_frame(
        np.arange(1, rated.shape[0] + 1),
        rows["title"].reset_index(drop=True),
        rows["release_year"].reset_index(drop=True),
        rows[list(GENRES)].to_numpy(dtype=bool),
    )
    return ratings, items


def title_catalogue(
    full_titles: pd.Series, flags: np.ndarray, file: str, first_line: int
) -> pd.DataFrame:
    full = full_titles.str.normalize("NFC").str.strip()
    dup = full.duplicated().to_numpy()
    if dup.any():
        i = first_true(dup)
        raise line_error(file, first_line + i, f"title {full.iloc[i]!r} appears twice")
    titles, years = normalise_titles(full)
    frame = pd.DataFrame(
        {"title": titles.to_numpy(dtype=object), "release_year": years.to_numpy()},
        index=pd.Index(full.to_numpy(dtype=object), name="full_title"),
    )
    frame["release_year"] = frame["release_year"].astype("Int64")
    for j, genre in enumerate(GENRES):
        frame[genre] = flags[:, j]
    return frame


def check_users(
    ratings: pd.DataFrame, users: pd.DataFrame, file: str, first_line: int, user_file: str
) -> None:
    known = np.isin(ratings["user_id"].to_numpy(), users.index.to_numpy())
    if not known.all():
        i = first_true(~known)
        raise line_error(
            file, first_line + i, f"user {ratings['user_id'][i]} is not in {user_file}"
        )


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
        lines, first, _ = split_text(data, names["ratings.tsv"], header=False)
        ratings_frame(
            split_fields(lines, names["ratings.tsv"], first, "\t", 4, "tab"),
            names["ratings.tsv"],
            first,
        )
        raise DataError(f"{names['ratings.tsv']}: unreadable ({exc})") from exc
    if ratings.empty:
        raise DataError(f"{names['ratings.tsv']}: empty file")

    file = names["items.tsv"]
    lines, first, _ = split_text(files["items.tsv"], file, header=False)
    cols = split_fields(lines, file, first, "\t", 3 + len(GENRES), "tab")
    ids = int_ids(cols[0], file, first, "item_id")
    titles = text_column(cols[1], file, first, "title")
    year_text = cols[2]
    has_year = (year_text != "").to_numpy(dtype=bool)
    years = pd.Series(pd.array([pd.NA] * len(lines), dtype="Int64"))
    if has_year.any():
        # Check the whole column (a missing year reads as "0") so that a bad year is
        # reported on its own line; the filtered rows would lose their offsets.
        checked = int_ids(year_text.where(has_year, "0"), file, first, "release_year")
        years[has_year] = checked[has_year]
    flags = np.column_stack([(c == "1").to_numpy(dtype=bool) for c in cols[3:]])
    items = items_frame(ids, titles.str.normalize("NFC"), years, flags)

    file = names["users.tsv"]
    lines, first, _ = split_text(files["users.tsv"], file, header=False)
    users = user_columns(*split_fields(lines, file, first, "\t", 5, "tab"), file, first)
    return MovieLensTables(ratings, items, users, dict(files))


# ----------------------------------------------------------------------------- the record


def movielens_user_features(
    users: pd.DataFrame, *, ids: Sequence[int] | None = None
) -> SideFeatures:
    """One-hot age bucket (all seven of :data:`AGE_BUCKETS`), gender and occupation per user.

    See :func:`~bench.datasets.features.user_side_features` (``ids`` as there).
    """
    return user_side_features(
        users, buckets={"age": AGE_BUCKETS}, categorical=("gender", "occupation"), ids=ids
    )


def record_from_tables(tables: MovieLensTables, source: str = "") -> Record:
    """The pre-split record of normalised MovieLens tables.

    Index ``u`` is the position of the raw id in the sorted user table
    (likewise items), so the catalogue is every item of the item table; the
    record's ``sha256`` is that of the canonical ratings (``u.data``'s), its
    ``files`` the canonical content.

    Raises
    ------
    ValueError
        An empty or unsorted table, or a rating of an unknown user or item.
    """
    users, items, ratings = tables.users, tables.items, tables.ratings
    raw_user_ids = users.index.to_numpy(np.int64)
    raw_item_ids = items.index.to_numpy(np.int64)
    for what, raw in (("user", raw_user_ids), ("item", raw_item_ids)):
        if raw.size == 0:
            raise ValueError(f"the {what} table is empty")
        if (np.diff(raw) <= 0).any():
            raise ValueError(f"the {what} table index must be strictly increasing ids")

    user_idx = np.searchsorted(raw_user_ids, ratings["user_id"].to_numpy(np.int64))
    item_idx = np.searchsorted(raw_item_ids, ratings["item_id"].to_numpy(np.int64))
    for what, idx, raw, column in (
        ("user", user_idx, raw_user_ids, "user_id"),
        ("item", item_idx, raw_item_ids, "item_id"),
    ):
        found = (idx < raw.shape[0]) & (
            raw[np.minimum(idx, raw.shape[0] - 1)] == ratings[column].to_numpy()
        )
        if not found.all():
            row = int(np.flatnonzero(~found)[0])
            raise ValueError(
                f"rating row {row} has {column} {ratings[column].iloc[row]} "
                f"missing from the {what} table"
            )
    return Record(
        user_index=user_idx,
        item_index=item_idx,
        rating=ratings["rating"].to_numpy(np.float32),
        timestamp=ratings["timestamp"].to_numpy(np.int64),
        raw_user_ids=raw_user_ids,
        raw_item_ids=raw_item_ids,
        user_table=users,
        item_table=items,
        user_features=movielens_user_features(users),
        item_features=item_side_features(items, genres=GENRES),
        sha256=tables.sha256()["ratings.tsv"],
        files=tables.canonical(),
        source=source,
    )
