"""Atomic file writes: a result or cache file is either complete or absent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "process_alive",
    "remove_stale_temporaries",
]

# ``.<name>.<pid>-<random>.tmp``: the writer's process id tells whether it is still alive.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+\.tmp$")


log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file lives in the same folder (so the rename is atomic on
    POSIX) and names its writer's process id (see :func:`remove_stale_temporaries`);
    it is fsynced before the rename, the folder after it, and it is removed if
    the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the usual umask-based mode.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    _fsync_dir(path.parent)


def _write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sha256: str | None = None) -> Path:
    """Write ``data`` to ``path`` atomically.

    With ``sha256``, the written file is read back and must have that SHA-256
    (hex) before it replaces ``path``; otherwise ``OSError`` is raised and
    ``path`` is left as it was.
    """

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        if sha256 is not None:
            written = hashlib.sha256(tmp.read_bytes()).hexdigest()
            if written != sha256:
                raise OSError(f"{tmp}: sha256 {written} after writing, expected {sha256}")

    return _write_with(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as CSV (no index) atomically."""
    return _write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


def atomic_write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as Parquet (no index) atomically."""
    return _write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` that a killed writer left in ``folder``.

    A temporary names its writer's process id; it is removed when that
    process no longer exists (or when the name carries no id, as written by
    older versions), so a concurrent writer's file in progress is kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if not match or not path.is_file():
            continue
        pid = match.group("pid")
        if pid is not None and process_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
            log.debug("removed stale temporary %s", path)
    return removed
