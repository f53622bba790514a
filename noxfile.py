"""nox sessions: tests, lint, benchmarks, reports and the regression gate.

``pyproject.toml`` is the single source of dependencies; ``constraints.txt``
pins every version (torch to a CPU build) so that results are comparable
across machines. ``nox`` alone runs the default sessions (tests, lint).
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))


def install(session: nox.Session, extras: str = "all,dev") -> None:
    """Install rsbench (editable) with ``extras`` under the pinned constraints."""
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


def fetch_data(session: nox.Session) -> None:
    """Fetch and verify MovieLens 100K and 1M into the cache (the realdata tests need them)."""
    session.run("rsbench", "data", "ml-100k", "--split", "ua", "--min-rating", "4")
    session.run("rsbench", "data", "ml-1m", "--split", "temporal", "--k", "10", "--min-rating", "4")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the full test suite (unit, realdata and slow tests)."""
    install(session)
    fetch_data(session)
    session.run("pytest", *(session.posargs or ["-q", "--durations=15"]))


@nox.session
def lint(session: nox.Session) -> None:
    """Check lint and formatting with ruff."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


def _bench(session: nox.Session, suite: str, out: str) -> None:
    install(session)
    fetch_data(session)
    args = session.posargs or ["--out", out]
    # A failed run is recorded in the tables; still build the report, then fail.
    try:
        session.run("rsbench", "run", "--config", f"experiments/{suite}.toml", *args)
    finally:
        out_dir = args[args.index("--out") + 1] if "--out" in args else out
        session.run("rsbench", "report", out_dir)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the notebook suite (every model, 3 seeds) on ML-100K and write its report."""
    _bench(session, "notebook", "results/notebook")


@nox.session(name="bench-quick")
def bench_quick(session: nox.Session) -> None:
    """Run the CI-sized quick suite (every adapter, few epochs) and write its report."""
    _bench(session, "quick", "results/quick")


@nox.session(name="bench-scale")
def bench_scale(session: nox.Session) -> None:
    """Run the scale suite (synthetic data up to ML-20M size) and write its report."""
    _bench(session, "scale", "results/scale")


@nox.session(name="bench-ml1m")
def bench_ml1m(session: nox.Session) -> None:
    """Run the ML-1M suite (temporal leave-last-10, every adapter, 2 seeds) and its report."""
    _bench(session, "ml-1m", "results/ml-1m")


@nox.session(name="bench-ml1m-ci")
def bench_ml1m_ci(session: nox.Session) -> None:
    """Run the CI-sized subset of the ML-1M suite (at most 3 minutes) and its report."""
    _bench(session, "ml-1m-ci", "results/ml-1m-ci")


@nox.session(name="regression-ml1m")
def regression_ml1m(session: nox.Session) -> None:
    """Gate results/ml-1m-ci against results/baseline/ml-1m-ci (posargs: any other pair)."""
    install(session, "dev")
    args = session.posargs or ["results/ml-1m-ci", "--baseline", "results/baseline/ml-1m-ci"]
    session.run("rsbench", "regress", *args)


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild report.md/report.html from an existing results folder (default results/notebook)."""
    install(session, "dev")
    session.run("rsbench", "report", *(session.posargs or ["results/notebook"]))


@nox.session
def regression(session: nox.Session) -> None:
    """Gate results/quick against the committed baseline results/baseline/quick."""
    install(session, "dev")
    args = session.posargs or ["results/quick", "--baseline", "results/baseline/quick"]
    session.run("rsbench", "regress", *args)


@nox.session
def microbench(session: nox.Session) -> None:
    """Run the pytest-benchmark microbenchmarks, save them and compare to the previous save."""
    install(session)
    fetch_data(session)
    args = ["pytest", "benchmarks", "--benchmark-only", "--benchmark-autosave"]
    storage = ROOT / ".benchmarks"
    if storage.exists() and any(storage.rglob("*.json")):
        args.append("--benchmark-compare")
    session.run(*args, *session.posargs)
