"""nox sessions: tests, lint, benchmarks, reports and the regression gate.

``pyproject.toml`` is the single source of dependencies; ``constraints.txt``
pins every version (torch to a CPU build) so that results are comparable
across machines. ``nox`` alone runs the default sessions (tests, lint).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
#: One virtual environment shared by every session that runs rsbench (tests,
#: bench*, report, regression, microbench): the frameworks weigh about 3.6 GB,
#: so one per session would multiply that. Rebuilt when the dependency files change.
SHARED_ENV = ROOT / ".nox" / "rsbench"
#: The example third-party model package the plugin tests use (installed for real).
PLUGIN = ROOT / "tests" / "plugin"


def _dependency_stamp() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", ROOT / "constraints.txt", PLUGIN / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install(session: nox.Session) -> dict[str, str]:
    """Make (once) the shared environment: rsbench editable with every extra, plus the plugin.

    Returns the environment variables that put it first on ``PATH``; sessions
    pass them to ``session.run(..., env=env)``.
    """
    python = SHARED_ENV / "bin" / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(SHARED_ENV), external=True)
    stamp = SHARED_ENV / ".rsbench-installed"
    wanted = _dependency_stamp()
    if not stamp.exists() or stamp.read_text() != wanted:
        pip = (str(python), "-m", "pip", "install", "--quiet")
        session.run(*pip, *CONSTRAINTS, "-e", ".[all,dev]", external=True)
        # Non-editable, as a user's plugin would be: exercises the entry point for real.
        session.run(*pip, "--force-reinstall", "--no-deps", str(PLUGIN), external=True)
        stamp.write_text(wanted)
    bin_dir = str(SHARED_ENV / "bin")
    return {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "VIRTUAL_ENV": str(SHARED_ENV),
    }


def run(session: nox.Session, env: dict[str, str], program: str, *args: str) -> None:
    """``session.run`` inside the shared environment (its programs by full path)."""
    local = SHARED_ENV / "bin" / program
    session.run(str(local) if local.exists() else program, *args, env=env, external=True)


def fetch_data(session: nox.Session, env: dict[str, str]) -> None:
    """Fetch and verify MovieLens 100K and 1M into the cache (the realdata tests need them)."""
    run(session, env, "rsbench", "data", "ml-100k", "--split", "ua", "--min-rating", "4")
    run(session, env, "rsbench", "data", "ml-1m", "--split", "temporal", "--k", "10",
        "--min-rating", "4")  # fmt: skip


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the full test suite (unit, realdata and slow tests), the plugin package installed."""
    env = install(session)
    fetch_data(session, env)
    run(session, env, "pytest", *(session.posargs or ["-q", "--durations=15"]))


@nox.session
def lint(session: nox.Session) -> None:
    """Check lint and formatting with ruff."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


def _bench(session: nox.Session, suite: str, out: str, command: str = "run") -> None:
    """``rsbench <command> --config <suite>`` (``run`` or ``tune``), then its report."""
    env = install(session)
    fetch_data(session, env)
    args = session.posargs or ["--out", out]
    # A failed run is recorded in the tables; still build the report, then fail.
    try:
        run(session, env, "rsbench", command, "--config", suite, *args)
    finally:
        out_dir = args[args.index("--out") + 1] if "--out" in args else out
        run(session, env, "rsbench", "report", out_dir)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Run the notebook suite (every model, 3 seeds) on ML-100K and write its report."""
    _bench(session, "notebook", "results/notebook")


@nox.session(name="bench-quick", venv_backend="none")
def bench_quick(session: nox.Session) -> None:
    """Run the CI-sized quick suite (every adapter, few epochs) and write its report."""
    _bench(session, "quick", "results/quick")


@nox.session(name="bench-scale", venv_backend="none")
def bench_scale(session: nox.Session) -> None:
    """Run the scale suite (synthetic data up to ML-20M size) and write its report."""
    _bench(session, "scale", "results/scale")


@nox.session(name="bench-tuned", venv_backend="none")
def bench_tuned(session: nox.Session) -> None:
    """Tune every model on one equal budget, then test the best parameters (tuned.toml)."""
    _bench(session, "tuned", "results/tuned", command="tune")


@nox.session(name="bench-ml1m", venv_backend="none")
def bench_ml1m(session: nox.Session) -> None:
    """Run the ML-1M suite (temporal leave-last-10, every adapter, 2 seeds) and its report."""
    _bench(session, "ml-1m", "results/ml-1m")


@nox.session(name="bench-ml1m-ci", venv_backend="none")
def bench_ml1m_ci(session: nox.Session) -> None:
    """Run the CI-sized subset of the ML-1M suite (at most 3 minutes) and its report."""
    _bench(session, "ml-1m-ci", "results/ml-1m-ci")


@nox.session(name="regression-ml1m", venv_backend="none")
def regression_ml1m(session: nox.Session) -> None:
    """Gate results/ml-1m-ci against results/baseline/ml-1m-ci (posargs: any other pair)."""
    env = install(session)
    args = session.posargs or ["results/ml-1m-ci", "--baseline", "results/baseline/ml-1m-ci"]
    run(session, env, "rsbench", "regress", *args)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """Rebuild report.md/report.html from an existing results folder (default results/notebook)."""
    env = install(session)
    run(session, env, "rsbench", "report", *(session.posargs or ["results/notebook"]))


@nox.session(venv_backend="none")
def regression(session: nox.Session) -> None:
    """Gate results/quick against the committed baseline results/baseline/quick."""
    env = install(session)
    args = session.posargs or ["results/quick", "--baseline", "results/baseline/quick"]
    run(session, env, "rsbench", "regress", *args)


@nox.session(venv_backend="none")
def microbench(session: nox.Session) -> None:
    """Run the pytest-benchmark microbenchmarks, save them and compare to the previous save."""
    env = install(session)
    fetch_data(session, env)
    args = ["pytest", "benchmarks", "--benchmark-only", "--benchmark-autosave"]
    storage = ROOT / ".benchmarks"
    if storage.exists() and any(storage.rglob("*.json")):
        args.append("--benchmark-compare")
    run(session, env, *args, *session.posargs)
