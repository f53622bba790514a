"""rsbench's OpenBLAS spin timeout: idle BLAS workers sleep instead of taking a core.

OpenBLAS's worker threads busy-wait about 0.1 s after every call by default;
``import bench`` (before numpy) sets ``OPENBLAS_THREAD_TIMEOUT`` so they sleep
at once (see ``bench/__init__.py``). Each case runs a fresh interpreter,
because OpenBLAS reads the variable only when it loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# CPU time of this process while it sleeps 0.3 s right after three BLAS products on two
# threads: what the idle worker burns spinning.
SPIN_SCRIPT = """
import sys, time
if sys.argv[1] == "bench-first":
    import bench
import numpy as np
from threadpoolctl import threadpool_limits
a = np.random.default_rng(0).random((600, 600))
with threadpool_limits(2, user_api="blas"):
    for _ in range(3):
        a @ a
    cpu = time.process_time()
    time.sleep(0.3)
    print(time.process_time() - cpu)
"""


def _python(code: str, *args: str, env_extra: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_import_sets_the_timeout_unless_the_user_did():
    code = (
        "import bench, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'], bench.BLAS_TIMEOUT_APPLIES)"
    )
    assert _python(code) == "4 True"
    assert _python(code, env_extra={"OPENBLAS_THREAD_TIMEOUT": "9"}) == "9 True"
    # numpy loaded first: its OpenBLAS has read the environment already (said, not hidden).
    assert _python("import numpy; " + code) == "4 False"


@pytest.mark.serial  # measures this process's CPU time: no other test beside it
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two BLAS threads")
def test_idle_blas_workers_do_not_spin_after_a_product():
    # The default spins for about 0.1 s of CPU here; with rsbench imported first, ~0.
    assert float(_python(SPIN_SCRIPT, "bench-first")) < 0.03
