"""The README's examples run as written ("Add your own model", "Use rsbench from Python").

Code blocks whose first line is ``# file: NAME`` are written to a scratch
folder; each line of a ``bash`` block is run there (``rsbench`` and ``pytest``
through this interpreter, with this checkout on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _materialise(section: str, folder: Path) -> list[str]:
    """Write the section's files into ``folder``; return its shell commands."""
    commands = []
    for language, body in BLOCK.findall(section):
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            (folder / first.removeprefix("# file: ").strip()).write_text(rest)
        elif language == "bash":
            commands += [line for line in body.splitlines() if line and not line.startswith("#")]
    return commands


def _env(folder: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)]), "CI": "1"}
    return env


def _shell(command: str, folder: Path) -> str:
    python = sys.executable
    command = re.sub(r"^rsbench ", f"{python} -m bench.cli ", command)
    command = re.sub(r"^pytest ", f"{python} -m pytest -p no:cacheprovider ", command)
    done = subprocess.run(
        command, shell=True, cwd=folder, env=_env(folder), capture_output=True, text=True
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_add_your_own_model_runs_as_written(tmp_path):
    from bench.results import load_results

    commands = _materialise(_section("Add your own model"), tmp_path)
    assert (tmp_path / "my_models.py").exists() and len(commands) == 3
    outputs = [_shell(command, tmp_path) for command in commands]
    assert "1 passed" in outputs[0]
    runs = load_results(tmp_path / "results" / "mine")["runs"]
    assert set(runs["label"]) == {"my_models:CosineKNN", "itemknn", "popularity"}
    # Deterministic models run once whatever the seeds: one run each.
    assert set(runs["status"]) == {"ok"} and len(runs) == 3
    toml_runs = load_results(tmp_path / "results" / "mine-toml")["runs"]
    mine = toml_runs[toml_runs["label"] == "my_models:CosineKNN"]
    assert mine["params"].tolist() == ['{"exponent": 2.0}']


@pytest.mark.realdata
def test_use_rsbench_from_python_runs_as_written(tmp_path):
    _materialise(_section("Add your own model"), tmp_path)
    _materialise(_section("Use rsbench from Python"), tmp_path)
    printed = _shell(f"{sys.executable} from_python.py", tmp_path)
    assert "itemknn" in printed and "CosineKNN" in printed
    assert (tmp_path / "results" / "from-python" / "runs.csv").exists()
