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
    """Fetch and verify MovieLens 100K into the cache (the realdata tests need it)."""
    session.run("rsbench", "data", "ml-100k", "--split", "ua", "--min-rating", "4")


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


@nox.session(name="bench-tuned")
def bench_tuned(session: nox.Session) -> None:
    """Tune every model on one equal budget, then test the best parameters (tuned.toml)."""
    install(session)
    fetch_data(session)
    args = session.posargs or ["--out", "results/tuned"]
    try:
        session.run("rsbench", "tune", "--config", "experiments/tuned.toml", *args)
    finally:
        out_dir = args[args.index("--out") + 1] if "--out" in args else "results/tuned"
        session.run("rsbench", "report", out_dir)


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
