"""A plain, non-editable ``pip install`` ships the suites and finds them by name."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, **kwargs) -> str:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, **kwargs
    ).stdout


@pytest.mark.slow
def test_non_editable_install_ships_and_lists_the_suites(tmp_path):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building rsbench offline needs setuptools in this environment")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # The frameworks come from this environment, through a .pth file (a venv
    # made from a venv with --system-site-packages reaches the base interpreter,
    # not this environment): its site-packages and those its own .pth files add
    # (nox's shared dependencies); rsbench itself is installed for real. pip and
    # setuptools come from there too (Python 3.11's venv would seed a setuptools
    # too old to build a wheel offline).
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    own = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    parent = sorted(own | {p for p in sys.path if Path(p).name == "site-packages"})
    (Path(purelib.strip()) / "_rsbench_parent_env.pth").write_text("\n".join(parent) + "\n")
    _run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        ROOT,
        cwd=tmp_path,
    )
    away = tmp_path / "elsewhere"  # no checkout in sight: only the installed package
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    code = (
        "import json, bench, bench.suites as s; from bench.config import load_experiment; "
        "print(json.dumps({'file': bench.__file__, 'suites': s.names(), "
        "'quick': len(load_experiment(s.resolve('quick')).specs)}))"
    )
    found = json.loads(_run(python, "-c", code, cwd=away, env=env))
    assert Path(found["file"]).is_relative_to(venv)
    assert {"notebook", "quick", "scale"} <= set(found["suites"])
    assert found["quick"] > 10
    listing = _run(venv / "bin" / "rsbench", "list", cwd=away, env=env)
    suites = listing.split("Suites")[1]
    assert "quick" in suites and str(venv) in suites
