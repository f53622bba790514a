"""Your own logs: column mapping, string ids, duplicates, k-core to a fixed point, strict errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from bench import cli
from bench.config import load_experiment
from bench.datasets import check_options, load_dataset
from bench.datasets.dataset import DataError
from bench.datasets.formats.logs import k_core, read_log


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_string_ids_threshold_and_hash(tmp_path):
    log = write(
        tmp_path / "my.csv",
        "who,what,stars,when\nann,tea,5,10\nbob,tea,2,11\nann,cake,4,12\nbob,jam,4,13\n"
        "cy,jam,5,14\ncy,tea,3,15\n",
    )
    data = load_dataset(
        str(log), "random-fraction", 4.0, user="who", item="what", rating="stars", timestamp="when",
        test_fraction=0.5,
    )  # fmt: skip
    assert data.raw_user_ids.tolist() == ["ann", "bob", "cy"]
    assert data.raw_item_ids.tolist() == ["cake", "jam", "tea"]
    assert (data.num_users, data.num_items) == (3, 3)
    assert len(data.train_all) + len(data.test_all) == 6
    assert set(data.train.weights.tolist() + data.test.weights.tolist()) <= {4.0, 5.0}
    summary = data.summary()
    assert summary["file_sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert summary["sha256"] == summary["file_sha256"]
    assert summary["k_core"]["before"] == {"users": 3, "items": 3, "rows": 6}


def test_every_row_is_a_positive_without_a_rating_column(tmp_path):
    log = write(tmp_path / "clicks.tsv", "u\ti\trating\n1\ta\t1\n1\tb\t1\n2\ta\t1\n2\tc\t1\n")
    data = load_dataset(str(log), "random", None, user="u", item="i", rating=None, k=1)
    assert len(data.train) + len(data.test) == 4
    assert set(data.train.weights.tolist()) == {1.0}
    with pytest.raises(ValueError, match="needs a rating column"):
        load_dataset(str(log), "random", 4.0, user="u", item="i", rating=None, k=1)


def test_k_core_reaches_the_fixed_point_by_hand():
    # Users a..e, items 1..4. With min 2 per user and 2 per item:
    # pass 1 drops user e (1 row) and item 4 (1 row: d-4); then d has 1 row (d-1) -> pass 2
    # drops d; then item 1 has rows a-1, b-1 (2) and survives; pass 3 removes nothing.
    rows = [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 2), ("c", 3), ("a", 3),
            ("d", 1), ("d", 4), ("e", 3)]  # fmt: skip
    users = np.array([ord(u) - ord("a") for u, _ in rows])
    items = np.array([i - 1 for _, i in rows])
    keep, passes = k_core(users, items, 2, 2)
    kept = [rows[i] for i in np.flatnonzero(keep)]
    assert kept == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 2), ("c", 3), ("a", 3)]
    assert passes == 3
    # The result is a fixed point: filtering again keeps everything.
    again, more = k_core(users[keep], items[keep], 2, 2)
    assert again.all() and more == 1


def test_k_core_counts_land_in_the_summary(tmp_path):
    text = "user,item\n" + "".join(
        f"{u},{i}\n"
        for u, i in [
            ("a", 1),
            ("a", 2),
            ("b", 1),
            ("b", 2),
            ("c", 2),
            ("c", 3),
            ("a", 3),
            ("d", 1),
            ("d", 4),
            ("e", 3),
        ]
    )
    log = write(tmp_path / "core.csv", text)
    data = load_dataset(
        str(log), "random", None, min_user_interactions=2, min_item_interactions=2, k=1
    )
    core = data.summary()["k_core"]
    assert core["before"] == {"users": 5, "items": 4, "rows": 10}
    assert core["after"] == {"users": 3, "items": 3, "rows": 7}
    assert core["passes"] == 3


def test_duplicate_policies(tmp_path):
    log = write(tmp_path / "d.csv", "user,item,rating\nx,a,2\nx,b,5\nx,a,4\ny,a,1\n")
    with pytest.raises(DataError, match=r"d.csv, line 4: the same \(user, item\) as line 2"):
        read_log(log, rating="rating")
    first = read_log(log, rating="rating", duplicates="first")
    last = read_log(log, rating="rating", duplicates="last")
    best = read_log(log, rating="rating", duplicates="max")
    assert first.rating.tolist() == [2.0, 5.0, 1.0]
    assert last.rating.tolist() == [5.0, 4.0, 1.0]
    assert best.rating.tolist() == [5.0, 4.0, 1.0]
    assert first.facts["duplicate_rows_dropped"] == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("user,item,rating\nx,a,2\nx,b\n", r"m.csv, line 3, column 'rating': empty field"),
        ("user,item,rating\nx,a,2\nx,b,lots\n", r"m.csv, line 3, column 'rating': 'lots' is not"),
        ("user,item,rating\nx,a,2\n,b,3\n", r"m.csv, line 3, column 'user': empty field"),
        ("user,item,rating\nx,a,2\ny,b,3,9\n", r"m.csv, line 3: expected 3 fields, found 4"),
        ("name,thing\nx,a\n", r"m.csv: no column\(s\) \['user', 'item'\]"),
    ],
)
def test_malformed_rows_name_file_line_and_column(tmp_path, text, match):
    log = write(tmp_path / "m.csv", text)
    with pytest.raises(DataError, match=match):
        read_log(log, rating="rating" if "rating" in text else None)


def test_timestamps_as_iso_dates_and_bad_ones(tmp_path):
    log = write(tmp_path / "t.csv", "user,item,ts\nx,a,2024-01-01T00:00:00Z\nx,b,2024-01-02\n")
    assert read_log(log, timestamp="ts").timestamp.tolist() == [1704067200, 1704153600]
    bad = write(tmp_path / "b.csv", "user,item,ts\nx,a,100\nx,b,soon\n")
    with pytest.raises(DataError, match=r"b.csv, line 3, column 'ts': 'soon' is not Unix seconds"):
        read_log(bad, timestamp="ts")


def test_parquet_logs(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": ["a", "a", "b", "b"], "item": [1, 2, 1, 3]}).to_parquet(path)
    log = read_log(path)
    assert log.raw_item_ids.tolist() == [1, 2, 3] and log.num_users == 2


def test_a_csv_with_string_ids_runs_end_to_end(tmp_path, capsys):
    gen = np.random.default_rng(0)
    users = [f"user-{u:03d}" for u in range(40)]
    rows = {(u, f"item-{gen.integers(0, 30):02d}") for u in users for _ in range(12)}
    frame = pd.DataFrame(sorted(rows), columns=["user", "item"])
    frame["rating"] = gen.integers(1, 6, len(frame))
    log = tmp_path / "my.csv"
    frame.to_csv(log, index=False)
    out = tmp_path / "out"
    code = cli.main(
        [
            "-q",
            "run",
            "--dataset",
            str(log),
            "--split",
            "random-fraction",
            "--min-rating",
            "3",
            "--models",
            "popularity,ease",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    runs = pd.read_csv(out / "runs.csv")
    assert runs["status"].tolist() == ["ok", "ok"]
    assert (runs["num_users"] == 40).all()
    manifest = json.loads((out / "manifest.json").read_text())
    facts = next(iter(manifest["datasets"].values()))
    assert facts["file_sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert facts["k_core"]["after"]["rows"] == len(frame)


def test_a_toml_dataset_table(tmp_path):
    log = write(tmp_path / "l.tsv", "a\tb\tc\nu1\ti1\t5\nu1\ti2\t4\nu2\ti1\t3\nu2\ti2\t5\n")
    config = tmp_path / "e.toml"
    config.write_text(
        f'name = "mine"\nmodels = ["popularity"]\nsplit = "random"\nmin_rating = 4\n'
        f'[dataset]\npath = "{log}"\nuser = "a"\nitem = "b"\nrating = "c"\nk = 1\n'
    )
    experiment = load_experiment(config)
    spec = experiment.specs[0]
    assert spec.dataset == str(log)
    assert dict(spec.dataset_options) == {"user": "a", "item": "b", "rating": "c", "k": 1}
    bad = tmp_path / "bad.toml"
    bad.write_text(f'models = ["popularity"]\n[dataset]\npath = "{log}"\ncolour = "red"\n')
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]"):
        load_experiment(bad)


def test_check_options_catches_dataset_specific_mistakes():
    with pytest.raises(ValueError, match="'synthetic' has no ratings"):
        check_options("synthetic", None, 4.0, {})
    with pytest.raises(ValueError, match="num_users must be an integer >= 1, got -5"):
        check_options("synthetic", None, None, {"num_users": -5})
    with pytest.raises(ValueError, match="min_rating 6 is outside the ratings of 'ml-1m'"):
        check_options("ml-1m", "temporal", 6.0, {})
    with pytest.raises(ValueError, match="unknown split 'ua' for 'ml-1m'"):
        check_options("ml-1m", "ua", 4.0, {})
    with pytest.raises(ValueError, match="test_fraction must be a number strictly between"):
        check_options("ml-100k", "random-fraction", 4.0, {"test_fraction": 1.5})
    check_options("ml-100k", "ua", 4.0, {})  # fine: nothing raised, nothing loaded


def test_cli_rejects_synthetic_min_rating_up_front(capsys):
    code = cli.main(
        ["run", "--dataset", "synthetic", "--min-rating", "4", "--models", "popularity"]
    )
    assert code == 2
    assert "has no ratings" in capsys.readouterr().err
