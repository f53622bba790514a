"""Hide the optional frameworks from imports, to test rsbench with its core dependencies only.

Test-only; never installed. ``nox -s tests-core`` puts this folder first on
``PYTHONPATH`` and sets ``RSBENCH_BLOCK_IMPORTS`` to a comma-separated list of
top-level module names (the modules of the ``keras``, ``torch``, ``lightfm``,
``implicit`` and ``ray`` extras: ``tensorflow,keras,torch,lightfm,implicit,ray``).
Python's ``site`` imports ``sitecustomize`` at start-up from the first folder
on ``sys.path`` that has one, so this file runs in the test process *and* in
every Python process it starts (the multiprocessing ``spawn`` children that
isolate runs, ``rsbench`` commands run as subprocesses), which inherit the
environment.

It replaces the path-based finder in ``sys.meta_path`` by a subclass that does
not find those modules (nor their submodules). Then ``import torch`` raises
``ModuleNotFoundError: No module named 'torch'`` and
``importlib.util.find_spec("torch")`` returns ``None``, exactly as when the
package is not installed; :class:`bench.registry.ModelEntry` reads the latter
as "unavailable". The installed packages stay where they are, so no second
environment is needed.

Not ``sys.modules[name] = None`` (the documented way to block an import): other
libraries look the frameworks up in ``sys.modules`` to know whether one is in
use, and take a ``None`` there for the module (SciPy's ``array_api_compat``
then fails with "'NoneType' object has no attribute 'Tensor'").

Limits: ``importlib.metadata`` still lists the distributions (the environment
record of a run still names their versions), and code that calls
``importlib.machinery.PathFinder`` itself rather than through ``sys.meta_path``
still finds them. With ``RSBENCH_BLOCK_IMPORTS`` unset or empty this file does
nothing. A ``sitecustomize`` it hides (later on ``sys.path``) is not run; the
environments rsbench's nox sessions build have none.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder

BLOCKED = frozenset(
    name.strip() for name in os.environ.get("RSBENCH_BLOCK_IMPORTS", "").split(",") if name.strip()
)


class CoreOnlyPathFinder(PathFinder):
    """``PathFinder`` that finds nothing under the top-level names in ``BLOCKED``."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in BLOCKED:
            return None
        return super().find_spec(fullname, path, target)


if BLOCKED:
    sys.meta_path[:] = [
        CoreOnlyPathFinder if finder is PathFinder else finder for finder in sys.meta_path
    ]
    if CoreOnlyPathFinder not in sys.meta_path:  # pragma: no cover - a Python without one
        raise RuntimeError("RSBENCH_BLOCK_IMPORTS: no PathFinder in sys.meta_path to replace")
