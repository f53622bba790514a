"""nox sessions: tests, lint, benchmarks, reports and the regression gate.

``pyproject.toml`` is the single source of dependencies; ``constraints.txt``
pins every version (torch to a CPU build) so that results are comparable
across machines. ``nox`` alone runs the default sessions (tests, lint).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nox

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: nox depends on tomli there
    import tomli as tomllib

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).absolute().parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
#: One virtual environment shared by every session that runs rsbench (tests,
#: bench*, report, regression, microbench). It is small: rsbench (editable) and
#: the plugin, with a ``.pth`` file that reaches the third-party dependencies in
#: the shared environment below. Rebuilt when the dependency files change.
SHARED_ENV = ROOT / ".nox" / "rsbench"
#: The example third-party model package the plugin tests use (installed for real).
PLUGIN = ROOT / "tests" / "plugin"
#: Written last into a complete shared dependency environment (holds its stamp).
COMPLETE = ".complete"
#: A shared dependency environment unused this long is removed when another is built.
UNUSED_DAYS = 14


def _dependency_stamp() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", ROOT / "constraints.txt", PLUGIN / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _env_root() -> Path:
    """``$RSBENCH_ENV_DIR``, else ``~/.cache/rsbench/envs``: outside every clone."""
    env = os.environ.get("RSBENCH_ENV_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rsbench" / "envs"


def _third_party_requirements() -> list[str]:
    """rsbench's dependencies with the ``all`` and ``dev`` extras, rsbench itself left out.

    With pip and the build requirements of rsbench and the plugin, so that
    ``SHARED_ENV`` needs no pip or setuptools of its own (and builds without
    build isolation, offline).
    """
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    requirements = ["pip", *pyproject["build-system"]["requires"], *project["dependencies"]]
    plugin = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    requirements += plugin["build-system"]["requires"]
    todo, seen = ["all", "dev"], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in extras[extra]:
            itself = re.fullmatch(rf"{project['name']}\[([\w,\s-]+)\]", requirement.strip())
            if itself:
                todo += [name.strip() for name in itself.group(1).split(",")]
            else:
                requirements.append(requirement)
    return requirements


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (created if needed) while the block runs."""
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no lock; the atomic rename still keeps builds whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _dependencies(session: nox.Session) -> Path:
    """The third-party site-packages for this dependency stamp and interpreter (built once).

    ``<env root>/<stamp>-<interpreter>/site-packages`` (``pip install --target``)
    and its ``bin``. A changed ``pyproject.toml``, ``constraints.txt`` or plugin
    ``pyproject.toml`` is a new stamp, so a new folder; nothing is updated in
    place. The folder is built under a temporary name and renamed when complete
    (``COMPLETE`` written last), under a lock, so that a half-built environment
    is never used and two clones at once build it once.
    """
    root = _env_root()
    requirements = "\n".join(_third_party_requirements()) + "\n"
    # The stamp, and what this file makes of it (the requirements list).
    key = hashlib.sha256((_dependency_stamp() + requirements).encode()).hexdigest()
    final = root / f"{key[:20]}-{sys.implementation.cache_tag}"
    if (final / COMPLETE).exists():
        with contextlib.suppress(OSError):
            os.utime(final / COMPLETE)  # in use: not pruned
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{final.name}.lock"):
        if (final / COMPLETE).exists():  # another clone built it while this one waited
            return final
        if final.exists():  # cannot be half-built (renamed whole); made by hand: set aside
            final.rename(root / f".broken-{final.name}-{os.getpid()}")
        building = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=root))
        try:
            (building / "requirements.txt").write_text(requirements)
            session.log(f"Installing the third-party dependencies once into {final}")
            session.run(
                sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts",
                "--target", str(building / "site-packages"), *CONSTRAINTS,
                "-r", str(building / "requirements.txt"), external=True,
            )  # fmt: skip
            (building / COMPLETE).write_text(_dependency_stamp() + "\n")
            building.rename(final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        _prune(root, keep=final)
    return final


def _prune(root: Path, keep: Path) -> None:
    """Remove other dependency environments unused for ``UNUSED_DAYS``, and failed builds."""
    cutoff = time.time() - UNUSED_DAYS * 86400
    for folder in root.iterdir():
        if not folder.is_dir() or folder == keep:
            continue
        if folder.name.startswith(".broken-") or (
            # A build killed before it could clean up (one in progress is younger).
            folder.name.startswith(".building-") and folder.stat().st_mtime < time.time() - 86400
        ):
            shutil.rmtree(folder, ignore_errors=True)
        elif (folder / COMPLETE).exists() and (folder / COMPLETE).stat().st_mtime < cutoff:
            with _locked(root / f"{folder.name}.lock"):
                shutil.rmtree(folder, ignore_errors=True)
            (root / f"{folder.name}.lock").unlink(missing_ok=True)


def _link_scripts(dependencies: Path, env: Path, python: Path) -> None:
    """Give ``env/bin`` the dependencies' commands (``pytest``, ``ray``...) run by ``python``."""
    for script in sorted((dependencies / "site-packages" / "bin").glob("*")):
        target = env / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        lines = script.read_bytes().split(b"\n")
        if lines[0].startswith(b"#!") and b"python" in lines[0]:
            body = lines[1:]
        elif lines[0] == b"#!/bin/sh" and lines[1].startswith(b"'''exec'"):
            body = lines[3:]  # pip's form for a long interpreter path
        else:  # a native program (ruff): as it is
            target.symlink_to(script)
            continue
        target.write_bytes(b"\n".join([b"#!" + os.fsencode(python), *body]))
        target.chmod(0o755)


def _build_shared_env(session: nox.Session, dependencies: Path, wanted: str) -> None:
    """Build ``SHARED_ENV`` under a temporary name, then swap it in (the path stays valid)."""
    for pattern in ("building-*", "old-*"):  # left by a build that was killed
        for leftover in SHARED_ENV.parent.glob(f"{SHARED_ENV.name}.{pattern}"):
            shutil.rmtree(leftover, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix="rsbench.building-", dir=SHARED_ENV.parent))
    try:
        # pip and setuptools come from the dependencies (Python 3.11's venv would
        # seed a setuptools too old to build rsbench).
        session.run(sys.executable, "-m", "venv", "--without-pip", str(building), external=True)
        python = building / "bin" / "python"
        site = session.run(
            str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            external=True, silent=True,
        ).strip()  # fmt: skip
        # addsitedir, not a bare path line: the dependencies' own .pth files run too.
        (Path(site) / "_rsbench_dependencies.pth").write_text(
            f"import site; site.addsitedir({str(dependencies / 'site-packages')!r})\n"
        )
        pip = (str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation")
        session.run(*pip, "-e", ".", external=True)
        # Non-editable, as a user's plugin would be: exercises the entry point for real.
        session.run(*pip, str(PLUGIN), external=True)
        # Commands written above name the temporary folder: name the final one.
        for path in [*(building / "bin").iterdir(), building / "pyvenv.cfg"]:
            if path.is_file() and not path.is_symlink():
                text = path.read_bytes()
                if os.fsencode(str(building)) in text:
                    path.write_bytes(text.replace(os.fsencode(str(building)),
                                                  os.fsencode(str(SHARED_ENV))))  # fmt: skip
        _link_scripts(dependencies, building, SHARED_ENV / "bin" / "python")
        (building / ".rsbench-installed").write_text(wanted)
        old = None
        if SHARED_ENV.exists():
            old = SHARED_ENV.parent / f"rsbench.old-{os.getpid()}"
            SHARED_ENV.rename(old)
        building.rename(SHARED_ENV)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install(session: nox.Session) -> dict[str, str]:
    """Make (once) the shared environment: rsbench editable with every extra, plus the plugin.

    The third-party dependencies are installed once per dependency stamp outside
    the clone (``$RSBENCH_ENV_DIR``, default ``~/.cache/rsbench/envs``) and
    shared by every clone; ``SHARED_ENV`` adds this clone's rsbench (editable)
    and the plugin. Returns the environment variables that put it first on
    ``PATH``; sessions pass them to ``session.run(..., env=env)``.
    """
    dependencies = _dependencies(session)
    wanted = f"{_dependency_stamp()}\n{dependencies}\n"
    stamp = SHARED_ENV / ".rsbench-installed"
    if not stamp.exists() or stamp.read_text() != wanted:
        SHARED_ENV.parent.mkdir(parents=True, exist_ok=True)
        with _locked(SHARED_ENV.parent / "rsbench.lock"):
            if not stamp.exists() or stamp.read_text() != wanted:
                _build_shared_env(session, dependencies, wanted)
    bin_dir = str(SHARED_ENV / "bin")
    return {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "VIRTUAL_ENV": str(SHARED_ENV),
    }


def run(session: nox.Session, env: dict[str, str], program: str, *args: str) -> None:
    """``session.run`` inside the shared environment (its programs by full path)."""
    local = SHARED_ENV / "bin" / program
    session.run(str(local) if local.exists() else program, *args, env=env, external=True)


#: Written once this clone's sessions fetched and verified the data into a cache.
DATA_FETCHED = ROOT / ".nox" / "data-fetched"


def fetch_data(session: nox.Session, env: dict[str, str]) -> None:
    """Fetch and verify MovieLens 100K and 1M into the cache (the realdata tests need them).

    Once per cache folder (``$RSBENCH_CACHE_DIR``, or the default) and clone: a
    later session of the same clone skips it (each load verifies the cached
    files' checksums anyway, and fetches again what is missing).
    """
    cache = os.environ.get("RSBENCH_CACHE_DIR", "<default>")
    if DATA_FETCHED.exists() and DATA_FETCHED.read_text() == cache:
        session.log(f"MovieLens 100K and 1M already fetched into {cache} by this clone")
        return
    run(session, env, "rsbench", "data", "ml-100k", "--split", "ua", "--min-rating", "4")
    run(session, env, "rsbench", "data", "ml-1m", "--split", "temporal", "--k", "10",
        "--min-rating", "4")  # fmt: skip
    DATA_FETCHED.write_text(cache)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run every test (unit, realdata, slow) on two workers, then the `serial` ones alone."""
    env = install(session)
    fetch_data(session, env)
    if session.posargs:
        run(session, env, "pytest", *session.posargs)
        return
    # Two workers (tests of one xdist_group on the same one), then the tests marked
    # `serial` (wall-clock bounds, signals, Ray clusters) on their own.
    failed = False
    try:
        run(session, env, "pytest", "-q", "--durations=15", "-n", "2", "--dist", "loadgroup",
            "-m", "not serial")  # fmt: skip
    except nox.command.CommandFailed:
        failed = True  # still run the serial part, then fail
    run(session, env, "pytest", "-q", "--durations=10", "-m", "serial")
    if failed:
        session.error("the parallel part of the test suite failed (see above)")


#: The top-level modules of the optional frameworks' extras (``keras``, ``torch``,
#: ``lightfm``, ``implicit``, ``ray``) that ``tests-core`` hides from the tests.
OPTIONAL_FRAMEWORKS = ("tensorflow", "keras", "torch", "lightfm", "implicit", "ray")
#: Holds the ``sitecustomize.py`` that blocks them (see its docstring).
CORE_ONLY = ROOT / "tests" / "core_only"


@nox.session(name="tests-core", venv_backend="none")
def tests_core(session: nox.Session) -> None:
    """Run the fast tests as if only the core dependencies were installed.

    The same shared environment as ``tests``, with the optional frameworks'
    imports blocked (``tests/core_only/sitecustomize.py``, first on
    ``PYTHONPATH``, also in the processes the tests spawn): a test that needs
    one must skip, not fail. The `serial` tests (wall-clock bounds, signals) are left to
    ``tests``. posargs replace the pytest arguments.
    """
    env = install(session)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CORE_ONLY), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["RSBENCH_BLOCK_IMPORTS"] = ",".join(OPTIONAL_FRAMEWORKS)
    args = session.posargs or [
        "-q", "-m", "not slow and not realdata and not serial", "-n", "2", "--dist", "loadgroup",
        "-p", "no:cacheprovider",
    ]  # fmt: skip
    run(session, env, "pytest", *args)


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
