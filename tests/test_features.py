"""One-hot side features: hand-computed cases, missing values, and the real MovieLens shapes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.datasets.features import item_side_features
from bench.datasets.formats.movielens import AGE_BUCKETS, GENRES
from bench.datasets.formats.movielens import movielens_user_features as user_side_features


def item_table(rows: list[tuple[int, int | None, list[str]]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "title": [f"movie {i}" for i, _, _ in rows],
            "release_year": pd.array([y for _, y, _ in rows], dtype="Int64"),
        },
        index=pd.Index([i for i, _, _ in rows], name="item_id"),
    )
    for genre in GENRES:
        frame[genre] = [genre in g for _, _, g in rows]
    return frame


def user_table(rows: list[tuple[int, object, object, object]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": pd.array([r[1] for r in rows], dtype="Int64"),
            "gender": [r[2] for r in rows],
            "occupation": [r[3] for r in rows],
            "zip_code": ["00000"] * len(rows),
        },
        index=pd.Index([r[0] for r in rows], name="user_id"),
    )


def dense(features) -> dict[str, list[float]]:
    """Column name -> column values, to compare against hand-written expectations."""
    matrix = features.matrix.toarray()
    return {name: matrix[:, j].tolist() for j, name in enumerate(features.names)}


def test_item_features_by_hand():
    table = item_table(
        [
            (1, 1995, ["Comedy", "Romance"]),
            (2, 1987, ["Drama"]),
            (7, None, ["unknown"]),
            (9, 1990, []),
        ]
    )
    features = item_side_features(table)
    assert isinstance(features.matrix, sp.csr_matrix)
    assert features.matrix.dtype == np.float32
    assert features.names == (
        *(f"genre={g}" for g in GENRES),
        "decade=1980",
        "decade=1990",
        "decade=unknown",
    )
    columns = dense(features)
    assert columns["genre=Comedy"] == [1, 0, 0, 0]
    assert columns["genre=Romance"] == [1, 0, 0, 0]
    assert columns["genre=Drama"] == [0, 1, 0, 0]
    assert columns["genre=unknown"] == [0, 0, 1, 0]
    assert columns["decade=1980"] == [0, 1, 0, 0]
    assert columns["decade=1990"] == [1, 0, 0, 1]
    assert columns["decade=unknown"] == [0, 0, 1, 0]
    assert features.matrix.sum() == 2 + 1 + 1 + 0 + 4  # genres, then one decade per item


def test_item_features_keep_rows_without_features():
    table = item_table([(1, 1995, ["Comedy"]), (2, 1987, ["Drama"])])
    features = item_side_features(table, ids=[2, 99, 1])
    matrix = features.matrix.toarray()
    assert matrix.shape == (3, 19 + 2)
    assert matrix[1].sum() == 0  # id 99 is not in the table: an all-zero row
    assert dense(features)["genre=Drama"] == [1, 0, 0]
    assert dense(features)["decade=1990"] == [0, 0, 1]


def test_user_features_by_hand_at_every_bucket_boundary():
    ages = [7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73]
    table = user_table(
        [(i + 1, age, "MF"[i % 2], "writer" if i < 3 else "student") for i, age in enumerate(ages)]
    )
    features = user_side_features(table)
    assert features.names == (
        "age=under-18",
        "age=18-24",
        "age=25-34",
        "age=35-44",
        "age=45-49",
        "age=50-55",
        "age=56+",
        "gender=F",
        "gender=M",
        "occupation=student",
        "occupation=writer",
    )
    assert len(AGE_BUCKETS) == 7
    matrix = features.matrix.toarray()
    expected_bucket = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert matrix[:, :7].argmax(axis=1).tolist() == expected_bucket
    assert matrix[:, :7].sum(axis=1).tolist() == [1] * len(ages)
    assert dense(features)["gender=M"] == [1, 0] * 7
    assert dense(features)["occupation=writer"] == [1, 1, 1] + [0] * 11
    assert features.matrix.dtype == np.float32


def test_user_features_missing_values_give_zero_blocks():
    table = user_table([(1, None, "F", "artist"), (2, 30, None, None), (3, 61, "M", "artist")])
    features = user_side_features(table, ids=[3, 2, 1, 4])
    assert features.names == (
        *(f"age={label}" for label, _ in AGE_BUCKETS),
        "gender=F",
        "gender=M",
        "occupation=artist",
    )
    matrix = features.matrix.toarray()
    assert matrix.tolist() == [
        [0, 0, 0, 0, 0, 0, 1, 0, 1, 1],
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 1, 0, 1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # id 4 is not in the table
    ]


def test_bad_tables_raise():
    with pytest.raises(ValueError, match=r"item_table lacks column\(s\) \['release_year'\]"):
        item_side_features(item_table([(1, 1990, [])]).drop(columns="release_year"))
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        item_side_features(np.zeros((2, 20)))
    bad_flags = item_table([(1, 1990, [])]).astype({"Drama": "int64"})
    bad_flags.loc[1, "Drama"] = 2
    with pytest.raises(ValueError, match="genre flags must be 0/1 or bool, found 2"):
        item_side_features(bad_flags, genres=GENRES)
    with pytest.raises(ValueError, match=r"user_table lacks column\(s\) \['occupation'\]"):
        user_side_features(user_table([(1, 30, "F", "x")]).drop(columns="occupation"))
    with pytest.raises(ValueError, match="ages must be >= 0, found -3"):
        user_side_features(user_table([(1, -3, "F", "x")]))


@pytest.mark.realdata
def test_real_side_feature_shapes(ml100k):
    items, users = ml100k.item_features, ml100k.user_features
    decades = [n for n in items.names if n.startswith("decade=")]
    assert decades == [f"decade={d}" for d in range(1920, 2000, 10)] + ["decade=unknown"]
    assert items.matrix.shape == (1_682, 19 + len(decades))
    occupations = [n for n in users.names if n.startswith("occupation=")]
    assert len(occupations) == 21 and "occupation=none" in occupations
    assert users.matrix.shape == (943, 7 + 2 + 21)
    # Every user has exactly one age bucket, one gender and one occupation.
    assert np.all(np.asarray(users.matrix.sum(axis=1)).ravel() == 3)
    # Every item has exactly one decade (item 267 has none known: "decade=unknown").
    decade_block = items.matrix[:, 19:].toarray()
    assert np.all(decade_block.sum(axis=1) == 1)
    unknown_row = int(np.flatnonzero(ml100k.raw_item_ids == 267)[0])
    assert decade_block[unknown_row, -1] == 1
    # Genre flags are as many as in the item table.
    assert items.matrix[:, :19].sum() == ml100k.item_table[list(GENRES)].to_numpy().sum()
