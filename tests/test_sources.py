"""Hostile archives and files: caps, streaming, corrupt deflate, odd file kinds, encodings, TLS."""

from __future__ import annotations

import io
import os
import ssl
import urllib.error
import zipfile
from pathlib import Path

import pytest

from bench.datasets import sources
from bench.datasets.catalog import ML100K_CAPS
from bench.datasets.catalog import read_ml100k as read_local
from bench.datasets.dataset import DataError

read_grouplens = read_local

FIXTURE = Path(__file__).parent / "fixtures" / "ml-tiny"
NAMES = ("u.data", "u.item", "u.user")


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _fixture_members() -> dict[str, bytes]:
    return {f"ml-100k/{n}": (FIXTURE / n).read_bytes() for n in NAMES}


def test_a_zip_bomb_member_is_refused_before_inflating(tmp_path):
    members = _fixture_members()
    members["ml-100k/u.data"] = b"\0" * (ML100K_CAPS["ratings"] + 1)  # compresses to ~8 KB
    path = tmp_path / "bomb.zip"
    path.write_bytes(_zip(members))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb.zip\[ml-100k/u.data\]: declares 8.0 MiB"):
        read_grouplens(path)


def test_a_member_that_lies_about_its_size_stops_at_the_cap(tmp_path):
    # A header that declares a small size but a stream that inflates past the cap.
    data = b"1\t1\t5\t1\n" * 400_000  # 3.2 MB
    raw = _zip({"u.data": data})
    archive = zipfile.ZipFile(io.BytesIO(raw))
    info = archive.getinfo("u.data")
    info.file_size = 100  # the lie (zipfile then stops reading at the declared size or CRC)
    with pytest.raises(DataError, match=r"x\[u.data\]: (inflates past|corrupt)"):
        sources.read_member(archive, info, 1_000_000, "x")


def test_members_are_hashed_while_inflating():
    data = b"abc" * 1000
    archive = zipfile.ZipFile(io.BytesIO(_zip({"a.txt": data})))
    blob, digests = sources.read_member(archive, archive.getinfo("a.txt"), 10_000, "z")
    import hashlib

    assert blob == data
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_a_total_past_the_cap_is_refused():
    raw = _zip({"a": b"x" * 600, "b": b"y" * 600})
    with pytest.raises(DataError, match="declare 1,200 bytes uncompressed, more than the 1,000"):
        sources.read_members(raw, "t.zip", {"a": "a", "b": "b"}, {"a": 1000, "b": 1000}, 1000)


def test_a_corrupt_deflate_stream_is_one_data_error_naming_the_member(tmp_path):
    members = _fixture_members()
    raw = bytearray(_zip(members))
    # Flip bytes in the middle of u.data's compressed stream (after its local header).
    start = raw.find(b"ml-100k/u.data") + len("ml-100k/u.data") + 40
    for i in range(start, start + 64):
        raw[i] ^= 0x5A
    path = tmp_path / "corrupt.zip"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"corrupt.zip\[ml-100k/u.data\]: corrupt") as info:
        read_grouplens(path)
    assert "\n" not in str(info.value)


def _folder_with(tmp_path: Path, make_u_data) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in ("u.item", "u.user"):
        (folder / name).write_bytes((FIXTURE / name).read_bytes())
    make_u_data(folder / "u.data")
    return folder


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: os.mkfifo(p), r"a FIFO \(named pipe\)"),
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: p.symlink_to("/dev/zero"), r"a device \(a symlink to /dev/zero\)"),
    ],
    ids=["fifo", "folder", "dev-zero"],
)
def test_a_u_data_that_is_not_a_regular_file_is_named_precisely(tmp_path, make, kind):
    folder = _folder_with(tmp_path, make)
    with pytest.raises(DataError, match=rf"^{folder / 'u.data'}: is {kind}, not a regular file"):
        read_local(folder)
    with pytest.raises(DataError, match=rf"^{folder / 'u.data'}: is {kind}"):
        read_local(tmp_path)  # the parent folder: still the right path


def test_a_broken_symlink_is_named(tmp_path):
    folder = _folder_with(tmp_path, lambda p: p.symlink_to(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"u.data: a symlink to .*gone, which does not exist"):
        read_local(folder)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_u_item_gets_an_encoding_hint(tmp_path, encoding):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes((FIXTURE / name).read_bytes())
    text = (FIXTURE / "u.item").read_bytes().decode("latin-1")
    (folder / "u.item").write_bytes(text.encode(encoding))
    with pytest.raises(DataError, match=r"u.item: looks UTF-16 encoded .* UTF-8 or ISO-8859-1"):
        read_local(folder)


def test_an_expired_certificate_is_named_as_such():
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "certificate has expired"
    text = sources.describe_fetch_error(
        "https://files.grouplens.org/x.zip", urllib.error.URLError(error)
    )
    assert "TLS certificate has expired" in text and "--path" in text
    other = sources.describe_fetch_error("https://h/x", urllib.error.URLError(OSError("down")))
    assert other == "https://h/x: cannot connect (down)"


def test_download_refuses_a_body_past_its_cap(monkeypatch):
    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(
        sources.urllib.request, "urlopen", lambda url, timeout: Response(b"x" * 5000)
    )
    with pytest.raises(sources.SourceError, match="larger than 4,096 bytes"):
        sources.download("https://h/big", 4096, 1.0)
    data, digests = sources.download("https://h/big", 10_000, 1.0)
    assert len(data) == 5000 and len(digests.sha256) == 64


def test_pip_runs_isolated_from_rsbench_temp_folder(tmp_path, monkeypatch):
    """A pip/ package in the current directory must not be imported by the fallback."""
    evil = tmp_path / "pip"
    evil.mkdir()
    (evil / "__init__.py").write_text("raise SystemExit('evil pip imported')\n")
    (evil / "__main__.py").write_text("raise SystemExit('evil pip imported')\n")
    monkeypatch.chdir(tmp_path)
    seen = {}
    real_run = sources.subprocess.run

    def fake_run(command, **kwargs):
        seen.update(command=command, cwd=kwargs["cwd"])
        # Really start the interpreter the same way, asking only where 'pip' comes from.
        probe = [command[0], "-I", "-c", "import pip, os; print(os.path.dirname(pip.__file__))"]
        out = real_run(probe, capture_output=True, text=True, cwd=kwargs["cwd"], check=True)
        seen["pip_dir"] = out.stdout.strip()
        return sources.subprocess.CompletedProcess(command, 1, "", "stop here")

    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    with pytest.raises(sources.SourceError):
        sources.pip_download("x==1", "x.whl", tmp_path, 5.0)
    assert seen["command"][1] == "-I" and seen["cwd"] != tmp_path
    assert not seen["pip_dir"].startswith(str(tmp_path))
