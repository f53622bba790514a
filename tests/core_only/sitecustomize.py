"""Block the optional frameworks' imports, for testing rsbench with its core dependencies only.

Test-only; never installed. ``nox -s tests-core`` puts this folder first on
``PYTHONPATH`` and sets ``RSBENCH_BLOCK_IMPORTS`` to a comma-separated list of
top-level module names (the modules of the ``keras``, ``torch``, ``lightfm``,
``implicit`` and ``ray`` extras: ``tensorflow,keras,torch,lightfm,implicit,ray``).
Python's ``site`` imports ``sitecustomize`` at start-up from the first folder
on ``sys.path`` that has one, so this file runs in the test process *and* in
every Python process it starts (the multiprocessing ``spawn`` children that
isolate runs, ``rsbench`` commands run as subprocesses), which inherit the
environment.

For each name it sets ``sys.modules[name] = None``. Then ``import name`` (and
``import name.sub``) raises ``ImportError`` (``ModuleNotFoundError``: "import
of name halted; None in sys.modules") and ``importlib.util.find_spec(name)``
returns ``None``, which is how :class:`bench.registry.ModelEntry` decides
that a model is unavailable: the installed packages behave as if they were
not installed, without a second environment.

With ``RSBENCH_BLOCK_IMPORTS`` unset or empty it does nothing. A
``sitecustomize`` that this one hides (one later on ``sys.path``) is not run;
the environments rsbench's nox sessions build have none.
"""

from __future__ import annotations

import os
import sys

for _name in os.environ.get("RSBENCH_BLOCK_IMPORTS", "").split(","):
    _name = _name.strip()
    if _name:
        sys.modules[_name] = None  # type: ignore[assignment]
