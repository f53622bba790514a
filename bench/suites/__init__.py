"""The benchmark suites rsbench ships (TOML experiment files), found by name after any install.

``rsbench run --config quick`` and :func:`bench.run(config="quick") <bench.api.run>`
read ``bench/suites/quick.toml`` from the installed package, so the suites work
after a plain ``pip install rsbench`` as well as from a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["names", "path", "resolve"]


def names() -> list[str]:
    """Names of the shipped suites (file stems), sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def path(name: str) -> Path:
    """The file of shipped suite ``name``; ``ValueError`` (with a suggestion) if unknown."""
    if name not in names():
        from bench.registry import did_you_mean

        raise ValueError(
            f"unknown suite {name!r}{did_you_mean(name, names())}; shipped suites: "
            f"{', '.join(names())} (or give the path of a TOML file)"
        )
    return Path(str(resources.files(__name__) / f"{name}.toml"))


def resolve(config: str | Path) -> Path:
    """A TOML file for ``config``: an existing path, or the name of a shipped suite.

    ``experiments/<name>.toml`` (where the suites lived before they were
    packaged) is still accepted when no such file exists.
    """
    given = Path(config)
    if given.exists():
        return given
    stem = given.name[: -len(".toml")] if given.name.endswith(".toml") else given.name
    if given.parent in (Path("."), Path("experiments")) and stem in names():
        return path(stem)
    if given.suffix == ".toml" or len(given.parts) > 1:
        return given  # a missing file: load_experiment reports it
    return path(stem)
