"""ML-10M / 20M / 25M / latest-small parsers on small fixtures written in each release's format."""

from __future__ import annotations

import io
import ssl
import urllib.error
import zipfile

import numpy as np
import pytest

from bench.datasets import REGISTRY, load_dataset, sources
from bench.datasets.catalog import RELEASES, release_chain
from bench.datasets.dataset import DataError
from bench.datasets.formats.grouplens import parse_large

DAT_RATINGS = (
    "1::122::5::838985046\n1::185::4.5::838983525\n2::122::3::868245777\n"
    "2::292::0.5::868245920\n3::185::4::1123950000\n"
)
DAT_MOVIES = (
    "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
    "292::Outbreak (1995)::Action|Drama|Sci-Fi|Thriller\n999::Unrated (2000)::Drama\n"
)
CSV_RATINGS = (
    "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.0,1112484676\n"
    "7,2,4.5,1094785740\n7,32,1.0,1094786000\n"
)
CSV_MOVIES = (
    "movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n"
    '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama\n'
    "32,Twelve Monkeys (a.k.a. 12 Monkeys) (1995),Mystery|Sci-Fi|Thriller\n"
    "40,Nothing (2003),(no genres listed)\n"
)


def test_ml10m_dat_format():
    log = parse_large(
        {"ratings": DAT_RATINGS.encode(), "movies": DAT_MOVIES.encode()}, RELEASES["ml-10m"]
    )
    assert log.user_index.dtype == np.int32 and log.item_index.dtype == np.int32
    assert log.rating.dtype == np.float32 and log.timestamp.dtype == np.int64
    assert log.raw_user_ids.tolist() == [1, 2, 3]
    assert log.raw_item_ids.tolist() == [122, 185, 292]  # the rated movies only
    assert log.item_index.tolist() == [0, 1, 0, 2, 1]
    assert log.rating.tolist() == [5.0, 4.5, 3.0, 0.5, 4.0]
    assert log.item_table["title"].tolist() == ["Boomerang", "Net, The", "Outbreak"]
    assert log.item_table.loc[292, "Sci-Fi"] and not log.item_table.loc[122, "Action"]


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-latest-small"])
def test_csv_releases(name):
    log = parse_large(
        {"ratings": CSV_RATINGS.encode(), "movies": CSV_MOVIES.encode()}, RELEASES[name]
    )
    assert log.raw_user_ids.tolist() == [1, 7]
    assert log.raw_item_ids.tolist() == [2, 29, 32]
    assert log.rating.tolist() == [3.5, 4.0, 4.5, 1.0]
    titles = log.item_table["title"].tolist()
    assert titles[1] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert log.item_table["release_year"].tolist() == [1995, 1995, 1995]
    assert "(no genres listed)" not in log.item_table.columns


@pytest.mark.parametrize(
    ("ratings", "match"),
    [
        (
            "userId,movieId,rating,timestamp\n1,2,3.5,1\n1,x,4,2\n",
            r"ratings.csv, line 3: movieId 'x'",
        ),
        ("userId,movieId,rating,timestamp\n1,2,3.5,1\n1,29,good,2\n", r"line 3: rating 'good'"),
        ("userId,movieId,rating,timestamp\n1,2,3.5,1\n1,77,4,2\n", r"line 3: movieId 77 is not in"),
        ("userId,movieId,rating,timestamp\n1,2,3.5,1\n1,2,4,2\n", r"line 3: the same user rated"),
    ],
)
def test_malformed_release_lines_are_named(ratings, match):
    with pytest.raises(DataError, match=match):
        parse_large(
            {"ratings": ratings.encode(), "movies": CSV_MOVIES.encode()}, RELEASES["ml-20m"]
        )


def test_a_local_zip_goes_through_the_registry(tmp_path):
    path = tmp_path / "ml-10m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-10M100K/ratings.dat", DAT_RATINGS)
        archive.writestr("ml-10M100K/movies.dat", DAT_MOVIES)
    data = load_dataset("ml-10m", "temporal", 4.0, path=str(path), k=1)
    summary = data.summary()
    assert (summary["num_users"], summary["num_items"]) == (3, 3)
    assert summary["train_ratings"] + summary["test_ratings"] == 5
    assert data.item_features is not None and "genre=Comedy" in data.item_features.names
    # min_rating may be a half star on these releases, and not above 5.
    load_dataset("ml-10m", "temporal", 3.5, path=str(path), k=1)
    with pytest.raises(ValueError, match="outside the ratings of 'ml-10m'"):
        load_dataset("ml-10m", "temporal", 5.5, path=str(path))


def test_unreachable_grouplens_says_what_was_tried(monkeypatch, tmp_path):
    def expired(url, timeout):
        error = ssl.SSLCertVerificationError(1, "certificate verify failed")
        error.verify_message = "certificate has expired"
        raise urllib.error.URLError(error)

    monkeypatch.setattr(sources.urllib.request, "urlopen", expired)
    with pytest.raises(DataError) as info:
        release_chain(RELEASES["ml-20m"]).load(cache_dir=tmp_path)
    message = str(info.value)
    assert "; grouplens: https://files.grouplens.org/datasets/movielens/ml-20m.zip" in message
    assert "TLS certificate has expired" in message and "pass --path" in message
    assert "\n" not in message


def test_pinned_md5s_are_the_published_ones():
    # From GroupLens's <zip>.md5 files as pinned by DataRec and other public loaders.
    assert REGISTRY.get("ml-1m").checksums["grouplens:ml-1m.zip md5"] == (
        "c4d9eecfca2ab87c1945afe126590906"
    )
    assert RELEASES["ml-10m"].md5 == "ce571fd55effeba0271552578f2648bd"
    assert RELEASES["ml-20m"].md5 == "cd245b17a1ae2cc31bb14903e1204af3"
    assert RELEASES["ml-25m"].md5 == "6b51fb2759a8657d3bfcbfc42b592ada"
    assert RELEASES["ml-latest-small"].md5 is None  # re-issued: no fixed value to pin


def test_a_download_with_the_wrong_md5_is_refused(monkeypatch, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-20m/ratings.csv", CSV_RATINGS)
        archive.writestr("ml-20m/movies.csv", CSV_MOVIES)

    def fake(url, cap, timeout):
        data = buffer.getvalue()
        return data, sources.Digests("0" * 32, "0" * 64)

    monkeypatch.setattr(sources, "download", fake)
    with pytest.raises(DataError, match=r"md5 0{32}, not the published cd245b17"):
        release_chain(RELEASES["ml-20m"]).load(cache_dir=tmp_path)
    assert not (tmp_path / "ml-20m").exists()
