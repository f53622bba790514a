"""Generic one-hot side features from a table: flag columns, a release decade, buckets, categories.

Nothing here knows a dataset: which columns are flags, which numeric column is
bucketed how, and which are categories is given by the caller (the format
module that knows its tables, e.g. :mod:`bench.datasets.formats.movielens`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.datasets.dataset import SideFeatures

__all__ = ["item_side_features", "user_side_features"]


def _row_positions(
    table: pd.DataFrame, ids: Sequence[int] | np.ndarray | None, what: str
) -> tuple[int, np.ndarray, np.ndarray]:
    """Output row count, and for each table row present in the output: (table row, out row)."""
    if ids is None:
        n = len(table)
        return n, np.arange(n), np.arange(n)
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()][0]
        raise ValueError(f"{what} table index has duplicate id {dup!r}")
    table_row = table.index.get_indexer(ids)
    out_row = np.flatnonzero(table_row >= 0)
    return ids.shape[0], table_row[out_row], out_row


def _one_hot(out_rows: np.ndarray, codes: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    keep = codes >= 0
    data = np.ones(int(keep.sum()), dtype=np.float32)
    return sp.csr_matrix(
        (data, (out_rows[keep], codes[keep])), shape=(n_rows, n_cols), dtype=np.float32
    )


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(table.columns)}")


def item_side_features(
    item_table: pd.DataFrame,
    *,
    ids: Sequence[int] | None = None,
    genres: Sequence[str] | None = None,
) -> SideFeatures:
    """Genre flags plus a one-hot release decade per item.

    Parameters
    ----------
    item_table : pandas.DataFrame
        Index: item id; bool (or 0/1) genre columns and a nullable integer
        ``release_year``.
    genres : sequence of str, optional
        The genre columns, in output order (the dataset's own list, given by
        its registry entry); default: every bool column of the table.
    ids : sequence of int, optional
        Item ids, one per output row (default: the table's rows in order). Ids
        absent from the table give all-zero rows; none is ever dropped.

    Returns
    -------
    SideFeatures
        float32 CSR of shape ``(n_items, n_genres + n_decades)``: ``genre=<name>``
        columns in ``genres`` order, then ``decade=<1920, 1930, ...>`` ascending
        for the decades present and ``decade=unknown`` when a year is missing.

    Raises
    ------
    ValueError
        A required column is missing or a genre flag is not 0/1.
    """
    _require(item_table, ["release_year"], "item_table")
    if genres is None:
        genres = [c for c in item_table.columns if pd.api.types.is_bool_dtype(item_table[c])]
    genres = tuple(genres)
    _require(item_table, [*genres, "release_year"], "item_table")
    n_rows, table_rows, out_rows = _row_positions(item_table, ids, "item")
    flags = item_table[list(genres)].to_numpy()[table_rows]
    if not genres:
        flags = np.zeros((table_rows.shape[0], 0), dtype=bool)
    if flags.size and not np.isin(flags, (0, 1)).all():
        bad = flags[~np.isin(flags, (0, 1))][0]
        raise ValueError(f"genre flags must be 0/1 or bool, found {bad!r}")
    genre_rows, genre_cols = np.nonzero(flags.astype(bool))
    genre_block = sp.csr_matrix(
        (np.ones(genre_rows.shape[0], dtype=np.float32), (out_rows[genre_rows], genre_cols)),
        shape=(n_rows, len(genres)),
        dtype=np.float32,
    )

    years = pd.array(item_table["release_year"], dtype="Int64")[table_rows]
    missing = np.asarray(years.isna(), dtype=bool)
    decades = np.where(missing, -1, np.asarray(years.fillna(0), dtype=np.int64) // 10 * 10)
    present = np.unique(decades[~missing])
    labels = [f"decade={d}" for d in present]
    codes = np.searchsorted(present, decades)
    if missing.any():
        labels.append("decade=unknown")
        codes = np.where(missing, len(present), codes)
    decade_block = _one_hot(out_rows, codes, n_rows, len(labels))
    names = tuple(f"genre={g}" for g in genres) + tuple(labels)
    matrix = sp.hstack([genre_block, decade_block], format="csr", dtype=np.float32)
    return SideFeatures(matrix, names)


def user_side_features(
    user_table: pd.DataFrame,
    *,
    buckets: Mapping[str, Sequence[tuple[str, int]]],
    categorical: Sequence[str],
    ids: Sequence[int] | None = None,
) -> SideFeatures:
    """One-hot numeric buckets, then one-hot categories, per row of a table.

    Parameters
    ----------
    user_table : pandas.DataFrame
        Index: id; the numeric columns named in ``buckets`` (may be missing) and
        the ``categorical`` columns (str, may be missing).
    buckets : mapping of column to ((label, lowest value), ...)
        Each numeric column's buckets in ascending order; a value belongs to the
        last bucket whose lowest value it reaches. Every bucket is a column,
        present or not (``<column>=<label>``).
    categorical : sequence of str
        Columns one-hot encoded as ``<column>=<value>`` for the values present, sorted.
    ids : sequence of int, optional
        Ids, one per output row (default: the table's rows in order). Ids absent
        from the table, and missing values, give zeros in their block.

    Returns
    -------
    SideFeatures
        float32 CSR: the bucket blocks in ``buckets`` order, then the categories.

    Raises
    ------
    ValueError
        A required column is missing or a bucketed value is negative.
    """
    _require(user_table, [*buckets, *categorical], "user_table")
    n_rows, table_rows, out_rows = _row_positions(user_table, ids, "user")
    blocks, names = [], []
    for column, table in buckets.items():
        values = pd.to_numeric(user_table[column], errors="raise").to_numpy(
            np.float64, na_value=np.nan
        )[table_rows]
        known = ~np.isnan(values)
        if (values[known] < 0).any():
            raise ValueError(f"{column}s must be >= 0, found {values[known][values[known] < 0][0]}")
        lows = np.array([low for _, low in table], dtype=np.float64)
        codes = np.where(
            known, np.searchsorted(lows, np.where(known, values, 0), side="right") - 1, -1
        )
        blocks.append(_one_hot(out_rows, codes, n_rows, len(table)))
        names.extend(f"{column}={label}" for label, _ in table)
    for column in categorical:
        values = user_table[column].to_numpy(dtype=object)[table_rows]
        present = ~pd.isna(values)
        vocabulary = np.array(sorted({str(v) for v in values[present]}), dtype=object)
        codes = np.full(values.shape[0], -1, dtype=np.int64)
        if vocabulary.size:
            codes[present] = np.searchsorted(vocabulary, values[present].astype(str))
        blocks.append(_one_hot(out_rows, codes, n_rows, vocabulary.size))
        names.extend(f"{column}={v}" for v in vocabulary)
    return SideFeatures(sp.hstack(blocks, format="csr", dtype=np.float32), tuple(names))
