"""Dataset loading by name and the MovieLens splits (hand-made fixture and the real data)."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from records import dataset_from_tables

from bench.datasets import (
    REGISTRY,
    SPLITS,
    load_dataset,
    split_mask,
)
from bench.datasets.catalog import ML100K_SHA256, read_ml100k
from bench.datasets.dataset import DataError, Dataset
from bench.datasets.formats.movielens import MovieLensTables
from bench.datasets.synthetic import synthetic

FIXTURE = Path(__file__).parent / "fixtures" / "ml-tiny"


@pytest.fixture(scope="module")
def tables() -> MovieLensTables:
    return read_ml100k(FIXTURE)


def file_order_ratings() -> list[tuple[int, int, int, int]]:
    """u.data of the fixture, read the plain way: (user, item, rating, timestamp) per line."""
    rows = []
    for line in (FIXTURE / "u.data").read_text().splitlines():
        user, item, rating, stamp = map(int, line.split("\t"))
        rows.append((user, item, rating, stamp))
    return rows


def raw_pairs(data: Dataset, side: str) -> list[tuple[int, int]]:
    inter = getattr(data, side)
    return list(
        zip(data.raw_user_ids[inter.user_ids].tolist(), data.raw_item_ids[inter.item_ids].tolist())
    )


def user_items(data: Dataset, side: str, raw_user: int) -> set[int]:
    return {i for u, i in raw_pairs(data, side) if u == raw_user}


# ----------------------------------------------------------------------------- names and errors


def test_listings_cover_every_name():
    datasets = {e.name: e for e in REGISTRY.entries() if e.origin == "rsbench"}
    assert set(datasets) == {
        "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "synthetic",
        "<your log>",
    }  # fmt: skip
    assert set(SPLITS) == {
        "ua", "ub", "u1", "u2", "u3", "u4", "u5", "random", "temporal",
        "random-fraction", "time-cutoff", "cold-users", "cold-items",
    }  # fmt: skip
    assert datasets["synthetic"].splits == ("random",)
    assert all(set(e.splits) <= set(SPLITS) for e in datasets.values())
    assert all(e.description for e in datasets.values())
    assert all(rule.description and rule.name == name for name, rule in SPLITS.items())


def test_unknown_names_list_the_known_ones():
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'ml-2m'; known datasets: ml-100k, ml-1m, .*synthetic "
        r"\(or a path to your own log",
    ):
        load_dataset("ml-2m")
    with pytest.raises(
        ValueError,
        match=r"unknown split 'uc' for 'ml-100k'; known splits: ua, "
        r"ub, u1, u2, u3, u4, u5, random, temporal, random-fraction, time-cutoff",
    ):
        load_dataset("ml-100k", split="uc")
    with pytest.raises(ValueError, match="unknown split 'uc'"):
        split_mask("uc", np.zeros(3, dtype=int), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="unknown split 'ua' for 'ml-1m'"):
        load_dataset("ml-1m", "ua")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"k": True}, "k must be an integer >= 1, got True"),
        ({"min_rating": "high"}, "min_rating must be a number, None or 'default', got 'high'"),
        ({"min_rating": float("nan")}, "min_rating must be a finite number or None, got nan"),
    ],
)
def test_bad_arguments_raise_before_loading(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        load_dataset("ml-100k", "ua", cache_dir=tmp_path, **kwargs)


def test_synthetic_delegates_with_its_defaults():
    data = load_dataset("synthetic", seed=3)
    reference = synthetic(seed=3)
    assert data.sha256 == reference.sha256
    assert data.summary() == reference.summary()
    assert load_dataset("synthetic", "random", None, seed=3).sha256 == reference.sha256
    assert load_dataset("synthetic", seed=4).sha256 != reference.sha256


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "ua"}, "unknown split 'ua' for 'synthetic'; known splits: random"),
        ({"min_rating": 4.0}, "has no ratings .* min_rating must be None, got 4.0"),
        ({"path": "/data/ml-100k"}, r"unknown option\(s\) \['path'\] for 'synthetic'"),
        ({"num_users": -5}, "num_users must be an integer >= 1, got -5"),
    ],
)
def test_synthetic_rejects_movielens_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("synthetic", **kwargs)


def test_a_path_that_is_not_movielens_100k_is_refused(tmp_path):
    with pytest.raises(DataError, match="content differs from MovieLens 100K"):
        load_dataset("ml-100k", path=FIXTURE, cache_dir=tmp_path)


# ----------------------------------------------------------------------------- fixture splits


def test_ua_is_the_allbut_rule_in_file_order(tables):
    data = dataset_from_tables(tables, "ua", None)
    # Hand-read from tests/fixtures/ml-tiny/u.data: user 1's first ten lines are
    # lines 11, 14, 15, 16, 17, 19, 24, 26, 38, 41; lines 43, 46, 49 stay in train.
    assert user_items(data, "test_all", 1) == {9, 21, 17, 6, 2, 18, 23, 22, 19, 16}
    assert user_items(data, "train_all", 1) == {4, 24, 3}
    assert user_items(data, "test_all", 3) == {6, 22, 2, 1}  # only 4 ratings: all are test
    assert user_items(data, "train_all", 3) == set()
    assert user_items(data, "train_all", 5) == {13}
    # Brute force over the file.
    seen = defaultdict(int)
    expected_test, expected_train = set(), set()
    for user, item, _, _ in file_order_ratings():
        seen[user] += 1
        (expected_test if seen[user] <= 10 else expected_train).add((user, item))
    assert set(raw_pairs(data, "test_all")) == expected_test
    assert set(raw_pairs(data, "train_all")) == expected_train
    assert (len(data.train_all), len(data.test_all)) == (16, 34)


def test_ub_takes_the_11th_to_20th_ratings(tables):
    data = dataset_from_tables(tables, "ub", None)
    counts = {u: len(user_items(data, "test_all", u)) for u in (1, 2, 3, 5, 7)}
    assert counts == {1: 3, 2: 10, 3: 0, 5: 1, 7: 0}
    assert user_items(data, "test_all", 1) == {4, 24, 3}
    assert user_items(data, "test_all", 2) == {16, 6, 7, 15, 10, 2, 1, 20, 3, 17}
    assert user_items(data, "train_all", 2) >= {4, 8}  # its 21st and 22nd ratings


@pytest.mark.parametrize("fold", [1, 2, 3, 4, 5])
def test_u_folds_are_consecutive_blocks_of_lines(tables, fold):
    data = dataset_from_tables(tables, f"u{fold}", None)
    rows = file_order_ratings()
    block = {(u, i) for u, i, _, _ in rows[10 * (fold - 1) : 10 * fold]}
    assert set(raw_pairs(data, "test_all")) == block
    assert len(data.train_all) == 40


def test_sides_are_sorted_and_weighted_and_thresholded(tables):
    ratings = {(u, i): r for u, i, r, _ in file_order_ratings()}
    for min_rating in (None, 4.0, 5):
        data = dataset_from_tables(tables, "ua", min_rating)
        for side in ("train", "test", "train_all", "test_all"):
            inter = getattr(data, side)
            key = inter.user_ids.astype(np.int64) * data.num_items + inter.item_ids
            assert np.all(np.diff(key) > 0), f"{side} not sorted by (user, item)"
            stars = [ratings[p] for p in raw_pairs(data, side)]
            assert inter.weights.dtype == np.float32
            assert inter.weights.tolist() == stars
        threshold = 0 if min_rating is None else min_rating
        for side, everything in (("train", "train_all"), ("test", "test_all")):
            expected = {p for p in raw_pairs(data, everything) if ratings[p] >= threshold}
            assert set(raw_pairs(data, side)) == expected
        assert data.min_rating == (None if min_rating is None else float(min_rating))


def test_full_catalogue_and_raw_id_mapping(tables):
    data = dataset_from_tables(tables, "ua", 4.0, source="test", name="tiny")
    assert data.raw_user_ids.tolist() == [1, 2, 3, 5, 7]
    assert data.raw_item_ids.tolist() == [*range(1, 25), 30]
    assert (data.num_users, data.num_items) == (5, 25)  # user 7 and item 30 have no rating
    assert data.user_table.index.tolist() == data.raw_user_ids.tolist()
    assert data.item_table.index.tolist() == data.raw_item_ids.tolist()
    assert data.item_features.matrix.shape[0] == 25 and data.user_features.matrix.shape[0] == 5
    assert data.sha256 == tables.sha256()["ratings.tsv"]
    assert (data.name, data.split, data.source) == ("tiny", "ua", "test")
    assert data.eval_users().tolist() == sorted({int(u) for u in data.test.user_ids.tolist()})


def test_random_split_is_seeded(tables):
    first = dataset_from_tables(tables, "random", None, seed=11, k=3)
    again = dataset_from_tables(tables, "random", None, seed=11, k=3)
    other = dataset_from_tables(tables, "random", None, seed=12, k=3)
    assert raw_pairs(first, "test_all") == raw_pairs(again, "test_all")
    assert raw_pairs(first, "test_all") != raw_pairs(other, "test_all")
    counts = {u: len(user_items(first, "test_all", u)) for u in (1, 2, 3, 5)}
    assert counts == {1: 3, 2: 3, 3: 3, 5: 3}
    tiny = dataset_from_tables(tables, "random", None, seed=11, k=10)
    assert len(user_items(tiny, "test_all", 3)) == 3  # 4 ratings: one stays in train


def test_temporal_split_keeps_the_latest_ratings_for_test(tables):
    data = dataset_from_tables(tables, "temporal", None, k=2)
    stamps = {(u, i): t for u, i, _, t in file_order_ratings()}
    for user in (1, 2, 3, 5):
        train = [stamps[(user, i)] for i in user_items(data, "train_all", user)]
        test = [stamps[(user, i)] for i in user_items(data, "test_all", user)]
        assert len(test) == 2
        assert max(train) <= min(test)
    # User 2's two latest ratings by time: lines 45 (t=891934913) and 25 (t=887226260).
    assert user_items(data, "test_all", 2) == {3, 16}


def test_temporal_ties_go_to_the_later_line():
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1],
            "item_id": [1, 2, 3, 4],
            "rating": [5, 4, 3, 2],
            "timestamp": [100, 300, 300, 200],
        }
    )
    tables = _small_tables(ratings)
    data = dataset_from_tables(tables, "temporal", None, k=1)
    assert user_items(data, "test_all", 1) == {3}  # item 2 and 3 tie at t=300; line 3 is later
    data = dataset_from_tables(tables, "temporal", None, k=2)
    assert user_items(data, "test_all", 1) == {2, 3}


def _small_tables(ratings: pd.DataFrame) -> MovieLensTables:
    from bench.datasets.formats.movielens import GENRES

    items = pd.DataFrame(
        {"title": [f"t{i}" for i in range(1, 5)], "release_year": pd.array([1990] * 4, "Int64")},
        index=pd.Index([1, 2, 3, 4], name="item_id"),
    )
    for genre in GENRES:
        items[genre] = False
    users = pd.DataFrame(
        {"age": [30], "gender": ["F"], "occupation": ["other"], "zip_code": ["00000"]},
        index=pd.Index([1], name="user_id"),
    )
    return MovieLensTables(ratings, items, users)


def test_ratings_of_unknown_ids_are_refused():
    ratings = pd.DataFrame(
        {"user_id": [1, 2], "item_id": [1, 2], "rating": [5, 4], "timestamp": [1, 2]}
    )
    with pytest.raises(ValueError, match="rating row 1 has user_id 2 missing from the user table"):
        dataset_from_tables(_small_tables(ratings), "ua", None)


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_ua_counts_match_grouplens(ml100k):
    summary = ml100k.summary()
    assert {
        k: summary[k]
        for k in (
            "num_users",
            "num_items",
            "train_ratings",
            "test_ratings",
            "train_positives",
            "test_positives",
            "eval_users",
        )
    } == {
        "num_users": 943,
        "num_items": 1_682,
        "train_ratings": 90_570,
        "test_ratings": 9_430,
        "train_positives": 49_906,
        "test_positives": 5_469,
        "eval_users": 934,
    }
    assert ml100k.sha256 == ML100K_SHA256["ratings.tsv"]
    assert np.all(ml100k.test_all.user_counts() == 10)
    assert ml100k.source.startswith(("cache:", "pypi:", "grouplens:", "path:"))
    # The first user's ua.test items, as in GroupLens's ua.test.
    first = ml100k.test_all.user_ids == 0
    assert ml100k.raw_item_ids[ml100k.test_all.item_ids[first]].tolist() == [
        20,
        33,
        61,
        117,
        155,
        160,
        171,
        189,
        202,
        265,
    ]


def _pairs(inter) -> set[tuple[int, int]]:
    return set(zip(inter.user_ids.tolist(), inter.item_ids.tolist()))


@pytest.fixture(scope="module")
def real_splits() -> dict[str, Dataset]:
    return {split: load_dataset("ml-100k", split, 4.0) for split in SPLITS}


@pytest.mark.realdata
def test_no_pair_is_on_both_sides_of_any_split(real_splits):
    for split, data in real_splits.items():
        assert not _pairs(data.train_all) & _pairs(data.test_all), split
        assert len(data.train_all) + len(data.test_all) == 100_000, split
        assert data.test_all is not None and len(data.test) <= len(data.test_all)


@pytest.mark.realdata
def test_ub_and_folds_counts(real_splits):
    ub = real_splits["ub"]
    assert (len(ub.train_all), len(ub.test_all)) == (90_570, 9_430)
    # GroupLens: "The sets ua.test and ub.test are disjoint."
    assert not _pairs(ub.test_all) & _pairs(real_splits["ua"].test_all)
    union = set()
    for fold in range(1, 6):
        data = real_splits[f"u{fold}"]
        assert (len(data.train_all), len(data.test_all)) == (80_000, 20_000)
        assert not union & _pairs(data.test_all)
        union |= _pairs(data.test_all)
    assert len(union) == 100_000


@pytest.mark.realdata
def test_real_random_split_is_seeded(real_splits):
    first = real_splits["random"]
    again = load_dataset("ml-100k", "random", 4.0, seed=0)
    other = load_dataset("ml-100k", "random", 4.0, seed=1)
    assert _pairs(first.test_all) == _pairs(again.test_all)
    assert _pairs(first.test_all) != _pairs(other.test_all)
    assert np.all(first.test_all.user_counts() == 10)  # every user has >= 20 ratings
    k3 = load_dataset("ml-100k", "random", 4.0, seed=0, k=3)
    assert len(k3.test_all) == 3 * 943


@pytest.mark.realdata
def test_real_temporal_split_never_trains_on_the_future(real_splits):
    data = real_splits["temporal"]
    from bench.datasets.catalog import ML100K
    from bench.datasets.formats.movielens import tables_from_canonical

    tables = tables_from_canonical(ML100K.load().files)
    stamps = tables.ratings.set_index(["user_id", "item_id"])["timestamp"]
    users, items = data.raw_user_ids, data.raw_item_ids

    def latest_and_earliest(inter, how):
        keys = pd.MultiIndex.from_arrays([users[inter.user_ids], items[inter.item_ids]])
        frame = pd.DataFrame({"user": inter.user_ids, "t": stamps.loc[keys].to_numpy()})
        return frame.groupby("user")["t"].agg(how)

    train_latest = latest_and_earliest(data.train_all, "max")
    test_earliest = latest_and_earliest(data.test_all, "min")
    assert (train_latest <= test_earliest.reindex(train_latest.index)).all()
    assert np.all(data.test_all.user_counts() == 10)


@pytest.mark.realdata
@pytest.mark.serial  # a wall-clock bound
def test_loading_from_a_warm_cache_is_fast(ml100k):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        load_dataset("ml-100k", "ua", 4.0)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 1.0, times


# ----------------------------------------------------------------------------- registry


def test_registry_refuses_duplicates_and_impossible_splits():
    from bench.datasets import REGISTRY, DatasetEntry, DatasetRegistry

    reg = DatasetRegistry()
    entry = REGISTRY.get("ml-1m")
    reg.register(entry)
    with pytest.raises(ValueError, match="'ml-1m' is already registered"):
        reg.register(entry)
    no_time = DatasetEntry(
        name="no-time",
        description="ratings without timestamps",
        sources=("x",),
        checksums={},
        loader=entry.loader,
        default_split="random",
        default_min_rating=4.0,
        splits=("random", "temporal"),
        carries=frozenset({"ratings"}),
    )
    with pytest.raises(ValueError, match="cannot offer split 'temporal': it lacks timestamps"):
        reg.register(no_time)
    assert REGISTRY.get("data/my-log.CSV").name == "<your log>"


def test_an_unknown_dataset_in_a_config_is_an_error_not_ml100k(tmp_path):
    from bench.config import ConfigError, build_experiment

    with pytest.raises((ConfigError, ValueError), match="unknown dataset 'ml-2m'"):
        build_experiment({"models": ["popularity"], "dataset": "ml-2m"})
    experiment = build_experiment({"models": ["popularity"], "dataset": "ml-1m"})
    spec = experiment.specs[0]
    assert (spec.split, spec.min_rating) == ("temporal", 4.0)  # ml-1m's own defaults
    with pytest.raises(ValueError, match="num_users must be an integer >= 1, got -5"):
        build_experiment(
            {"models": ["popularity"], "dataset": "synthetic", "dataset_options": {"num_users": -5}}
        )


def test_list_json_carries_the_registry(capsys):
    import json

    from bench import cli

    assert cli.main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    entries = {e["name"]: e for e in listing["dataset_entries"]}
    assert entries["ml-1m"]["default_split"] == "temporal"
    assert entries["ml-1m"]["checksums"]["grouplens:ml-1m.zip md5"] == (
        "c4d9eecfca2ab87c1945afe126590906"
    )
    assert "user_features" in entries["ml-1m"]["carries"]
    assert "validation_seed" in entries["ml-100k"]["options"]
