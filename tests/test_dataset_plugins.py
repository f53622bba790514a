"""Datasets from outside rsbench: an entry point, a GroupLens release in one entry.

``tests/plugin_dataset`` is a separate package. Here it is "installed" by putting it
and a ``.dist-info`` folder declaring its entry point on ``PYTHONPATH``, so that
``importlib.metadata`` finds it exactly as it finds a pip-installed one, with no
change to any rsbench file and nothing installed into the test environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bench.datasets.catalog as catalog
from bench.datasets import DatasetEntry, DatasetRegistry, default_registry
from bench.datasets.formats.grouplens import Release

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = Path(__file__).parent / "plugin_dataset"


@pytest.fixture
def plugin_path(tmp_path) -> str:
    """A PYTHONPATH on which the example dataset package is installed (metadata included)."""
    info = tmp_path / "rsbench_example_dataset-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rsbench-example-dataset\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[rsbench.datasets]\ntiny-clicks = rsbench_example_dataset:entry\n"
    )
    return os.pathsep.join([str(tmp_path), str(PLUGIN_DIR), str(ROOT)])


def _run(code: str, pythonpath: str) -> str:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_entry_point_dataset_is_listed_with_its_origin_and_loads(plugin_path):
    listing = json.loads(_run("from bench.cli import main; main(['list', '--json'])", plugin_path))
    entries = {e["name"]: e for e in listing["dataset_entries"]}
    assert entries["tiny-clicks"]["origin"] == "plugin rsbench-example-dataset 0.1.0"
    assert entries["ml-100k"]["origin"] == "rsbench"
    assert listing["dataset_plugin_errors"] == []
    out = _run(
        "from bench.datasets import load_dataset\n"
        "d = load_dataset('tiny-clicks', k=2)\n"
        "print(d.split, len(d.train), len(d.test), d.source)",
        plugin_path,
    )
    assert out.split()[:3] == ["temporal", "18", "12"]
    assert "rsbench-example-dataset" in out


def test_a_broken_plugin_is_reported_and_the_others_still_load(monkeypatch):
    import importlib.metadata

    point = importlib.metadata.EntryPoint("broken", "no_such_module:entry", "rsbench.datasets")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda *, group: [point])
    registry = default_registry()
    assert "ml-100k" in registry.names()
    assert [e.name for e in registry.plugin_errors] == ["broken"]
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        registry.get("nope")


def test_a_grouplens_release_is_one_entry_in_releases(tmp_path, monkeypatch):
    """A new release in the ML-20M layout: one Release in RELEASES, nothing else."""
    release = Release("ml-test", None, "ratings.csv", "movies.csv", ",", 2**20, "a test release")
    monkeypatch.setitem(catalog.RELEASES, "ml-test", release)
    registry = default_registry(plugins=False)
    entry = registry.get("ml-test")
    assert isinstance(entry, DatasetEntry) and entry.default_split == "temporal"
    archive = tmp_path / "ml-test.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(
            "ml-test/ratings.csv",
            "userId,movieId,rating,timestamp\n1,1,4.5,10\n1,2,3,20\n2,1,5,15\n2,2,4,25\n",
        )
        handle.writestr(
            "ml-test/movies.csv",
            "movieId,title,genres\n1,A (1999),Comedy\n2,B (2001),Drama|Comedy\n",
        )
    data = entry.load("ml-test", None, "default", "test", {"path": str(archive), "k": 1})
    assert data.source.startswith("path:") and len(data.test_all) == 2


def test_a_release_download_is_cached_and_read_back(tmp_path, monkeypatch):
    """ml-10m..25m go through the one chain: the second load reads the cache."""
    import io

    from bench.datasets import sources

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr(
            "ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n1,2,3,2\n"
        )
        handle.writestr(
            "ml-latest-small/movies.csv", "movieId,title,genres\n1,A (1999),Comedy\n2,B,Drama\n"
        )
    calls = []

    def fake(url, cap, timeout):
        calls.append(url)
        return buffer.getvalue(), sources.Digests("0" * 32, "0" * 64)

    monkeypatch.setattr(sources, "download", fake)
    chain = catalog.release_chain(catalog.RELEASES["ml-latest-small"])
    first = chain.load(cache_dir=tmp_path)
    second = chain.load(cache_dir=tmp_path)
    assert len(calls) == 1
    assert first.source.startswith("grouplens:") and second.source.startswith("cache:")
    assert first.sha256 == second.sha256
    assert (tmp_path / "ml-latest-small" / "SHA256SUMS").is_file()
    (tmp_path / "ml-latest-small" / "ratings.csv").write_text("tampered\n")
    third = chain.load(cache_dir=tmp_path)  # corrupt cache: deleted and fetched again
    assert third.source.startswith("grouplens:") and len(calls) == 2


def test_a_registry_refuses_what_is_not_an_entry():
    with pytest.raises(TypeError, match="expected a DatasetEntry"):
        DatasetRegistry().register("ml-100k")
