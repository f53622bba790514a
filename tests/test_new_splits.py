"""The published-protocol splits: hand-computed cases and leakage checks, and the validation stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from records import dataset_from_tables

from bench.datasets import Record, load_dataset, split_record
from bench.datasets.catalog import read_ml100k
from bench.datasets.dataset import NotApplicableError
from bench.datasets.splits import (
    cold_mask,
    global_cutoff_mask,
    holdout_fraction_mask,
    quantile_cutoff,
    random_fraction_mask,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ml-tiny"


def pairs(inter) -> set[tuple[int, int]]:
    return set(zip(inter.user_ids.tolist(), inter.item_ids.tolist(), strict=True))


@pytest.fixture(scope="module")
def tables():
    return read_ml100k(FIXTURE)


def test_random_fraction_by_hand():
    # User 0 has 7 rows (0.2 * 7 = 1.4 -> 1), user 1 has 13 (2.6 -> 3), user 2 has 1 (keeps it),
    # user 3 has 5 (1.0 -> 1), user 4 has 3 (0.6 -> 1, still keeps 2).
    users = np.repeat([0, 1, 2, 3, 4], [7, 13, 1, 5, 3])
    mask = random_fraction_mask(users, 0.2, 0)
    assert np.bincount(users[mask], minlength=5).tolist() == [1, 3, 0, 1, 1]
    assert (random_fraction_mask(users, 0.2, 0) == mask).all()
    assert (random_fraction_mask(users, 0.2, 1) != mask).any()
    half = random_fraction_mask(users, 0.5, 0)  # 3.5 -> 4, 6.5 -> 7, 2.5 -> 3, 1.5 -> 2
    assert np.bincount(users[half], minlength=5).tolist() == [4, 7, 0, 3, 2]


def test_time_cutoff_by_hand():
    stamps = np.array([50, 10, 40, 20, 30, 30, 60, 70, 80, 90])
    # 0.5 quantile: the 5th-smallest of the sorted times [10,20,30,30,40,50,...] at index 5 = 50.
    assert quantile_cutoff(stamps, 0.5) == 50
    mask = global_cutoff_mask(stamps, 50)
    assert mask.tolist() == [True, False, False, False, False, False, True, True, True, True]
    assert quantile_cutoff(stamps, 0.3) == 30  # ties at 30: both go to test
    assert global_cutoff_mask(stamps, 30).sum() == 8


def test_cold_mask_holds_out_whole_ids():
    ids = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])
    mask = cold_mask(ids, 0.34, 3)  # round(0.34 * 6) = 2 ids
    held = set(ids[mask].tolist())
    assert len(held) == 2
    assert not held & set(ids[~mask].tolist())  # no held-out id keeps a train row
    assert (mask == np.isin(ids, list(held))).all()


def test_holdout_never_takes_the_last_positive():
    users = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    stamps = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 5, 5])
    positive = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
    for seed in range(30):
        mask = holdout_fraction_mask(users, stamps, positive, 0.5, seed)
        assert not mask[8]  # user 0's last positive (t=9; row 9 at t=10 is a negative)
        assert not mask[11]  # user 1's positives tie at t=5: the later line is the last
        assert mask[:10].sum() == 5 and mask[10:].sum() == 1


def test_time_cutoff_dataset_reports_cold_users_and_never_leaks(tables):
    data = dataset_from_tables(tables, "time-cutoff", 4.0, cutoff_quantile=0.6)
    cutoff = data.summary()["cutoff"]
    ratings = tables.ratings
    stamps = dict(zip(zip(ratings["user_id"], ratings["item_id"]), ratings["timestamp"]))
    raw_u, raw_i = data.raw_user_ids, data.raw_item_ids

    def times(inter):
        return [stamps[(raw_u[u], raw_i[i])] for u, i in pairs(inter)]

    assert max(times(data.train_all)) < cutoff <= min(times(data.test_all))
    summary = data.summary()
    assert summary["cold_start"] is True
    expected_cold = set(np.flatnonzero(data.test.user_counts() > 0)) - set(
        np.flatnonzero(data.train_all.user_counts() > 0)
    )
    assert summary["cold_users"] == len(expected_cold)
    # A model that cannot score cold users is scored on warm users only, and told how many.
    test, counts = data.evaluation_test(False, True)
    assert counts["cold_users_skipped"] == len(expected_cold)
    assert not set(test.user_ids.tolist()) & expected_cold
    full, counts = data.evaluation_test(True, True)
    assert len(full) == len(data.test) and counts["cold_users_skipped"] == 0


def test_cold_users_split_scored_from_features_or_not_applicable(tables):
    data = dataset_from_tables(tables, "cold-users", None, cold_fraction=0.3, seed=1)
    test_users = set(data.test_all.user_ids.tolist())
    assert test_users and not test_users & set(data.train_all.user_ids.tolist())
    assert data.summary()["cold_users"] == len(set(data.test.user_ids.tolist()))
    with pytest.raises(
        NotApplicableError, match="every test positive of split 'cold-users' is on cold users"
    ):
        data.evaluation_test(False, False)
    test, counts = data.evaluation_test(True, False)
    assert len(test) + counts["cold_item_positives_skipped"] == len(data.test)
    assert len(data.evaluation_test(True, True)[0]) == len(data.test)


def test_cold_items_split_has_no_train_rows_on_held_items(tables):
    data = dataset_from_tables(tables, "cold-items", None, cold_fraction=0.3, seed=2)
    assert not set(data.test_all.item_ids.tolist()) & set(data.train_all.item_ids.tolist())
    assert data.summary()["cold_items"] > 0


def test_per_user_splits_have_no_pair_on_both_sides(tables):
    for split, options in (
        ("random-fraction", {"test_fraction": 0.3}),
        ("time-cutoff", {}),
        ("cold-users", {}),
        ("cold-items", {}),
    ):
        data = dataset_from_tables(tables, split, 4.0, **options)
        assert not pairs(data.train_all) & pairs(data.test_all), split
        assert len(data.train_all) + len(data.test_all) == len(tables.ratings), split


# ----------------------------------------------------------------------------- validation


def test_validation_of_a_fixed_split_never_sees_test(tables):
    test_stage = dataset_from_tables(tables, "ua", 4.0)
    val = dataset_from_tables(tables, "ua", 4.0, stage="validation", validation_seed=3)
    # train' and validation partition the test stage's train rows exactly.
    assert pairs(val.train_all) | pairs(val.test_all) == pairs(test_stage.train_all)
    assert not pairs(val.train_all) & pairs(val.test_all)
    assert not (pairs(val.train_all) | pairs(val.test_all)) & pairs(test_stage.test_all)
    summary = val.summary()
    assert summary["stage"] == "validation"
    assert "never the user's last train positive" in summary["validation_rule"]
    # Each user keeps a train' positive whenever they had a train positive.
    had = test_stage.train.user_counts() > 0
    assert (val.train.user_counts()[had] > 0).all()
    # Seeded.
    again = dataset_from_tables(tables, "ua", 4.0, stage="validation", validation_seed=3)
    other = dataset_from_tables(tables, "ua", 4.0, stage="validation", validation_seed=4)
    assert pairs(again.test_all) == pairs(val.test_all) != pairs(other.test_all)


def test_validation_of_temporal_reapplies_the_rule(tables):
    test_stage = dataset_from_tables(tables, "temporal", 4.0, k=2)
    val = dataset_from_tables(tables, "temporal", 4.0, k=2, stage="validation")
    ratings = tables.ratings
    stamps = dict(zip(zip(ratings["user_id"], ratings["item_id"]), ratings["timestamp"]))
    raw_u, raw_i = val.raw_user_ids, val.raw_item_ids
    for user in set(val.test_all.user_ids.tolist()):
        rows_val = [(u, i) for u, i in pairs(val.test_all) if u == user]
        rows_train = [(u, i) for u, i in pairs(val.train_all) if u == user]
        assert len(rows_val) <= 2
        t_val = [stamps[(raw_u[u], raw_i[i])] for u, i in rows_val]
        t_train = [stamps[(raw_u[u], raw_i[i])] for u, i in rows_train]
        assert not t_train or max(t_train) <= min(t_val)
    assert pairs(val.train_all) | pairs(val.test_all) == pairs(test_stage.train_all)
    assert "re-applied to train" in val.summary()["validation_rule"]


def test_validation_through_load_dataset_and_the_cutoff(tmp_path):
    log = tmp_path / "l.csv"
    frame = pd.DataFrame(
        {
            "user": np.repeat(list("abcd"), 6),
            "item": np.tile(np.arange(6), 4),
            "timestamp": np.arange(24),
        }
    )
    frame.to_csv(log, index=False)
    data = load_dataset(str(log), "time-cutoff", None, stage="validation", cutoff=18)
    # Train rows are t = 0..17; the same share (18/24 = 0.75) re-applied to them cuts at the
    # time of sorted row ceil(0.75 * 18) = 14, i.e. t = 14: validation is t = 14..17.
    assert data.summary()["validation_rule"].startswith("global time cut-off at the 0.75")
    assert "(t=14)" in data.summary()["validation_rule"]
    test_stage = load_dataset(str(log), "time-cutoff", None, cutoff=18)
    assert len(data.train_all) + len(data.test_all) == len(test_stage.train_all) == 18
    assert len(data.test_all) == 4


def test_split_record_rejects_an_unknown_stage():
    record = Record(np.array([0, 0]), np.array([0, 1]), None, None, np.array([7]), np.array([1, 2]))
    with pytest.raises(ValueError, match="stage must be 'test' or 'validation'"):
        split_record(record, "random", None, name="x", stage="tuning")
