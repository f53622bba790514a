"""Per-run thread counts: BLAS/OpenMP pools, PyTorch and TensorFlow limited for one run."""

from __future__ import annotations

import logging
import numbers
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

__all__ = ["THREAD_ENV_VARS", "check_threads", "thread_limits"]

log = logging.getLogger(__name__)

# Read by the libraries when they are first loaded (OpenBLAS, MKL, OpenMP runtimes,
# PyTorch's intra-op pool, TensorFlow's two pools), so they cover frameworks that a
# run imports after the limit is set; threadpoolctl covers pools already loaded.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def check_threads(value: object, where: str) -> int | None:
    """``value`` as a thread count (an integer >= 1) or ``None``; else ``ValueError``.

    Parameters
    ----------
    value : object
        The candidate (``None`` means "the libraries' own default").
    where : str
        Named in the error message (e.g. ``"--threads"``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{where} must be an integer >= 1, got {value!r}")
    return int(value)


@contextmanager
def thread_limits(threads: int | None) -> Iterator[None]:
    """Limit every numeric thread pool of this process to ``threads`` while open.

    ``None`` changes nothing. Environment variables are restored on exit;
    a PyTorch already imported gets ``torch.set_num_threads`` (restored on
    exit); a TensorFlow already initialised cannot change its pools, which is
    logged (isolated and Ray runs start fresh, so the variables apply there).

    Parameters
    ----------
    threads : int or None
        Threads each pool may use.
    """
    if threads is None:
        yield
        return
    threads = check_threads(threads, "threads")
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update({name: str(threads) for name in THREAD_ENV_VARS})
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    if "tensorflow" in sys.modules:
        log.debug("TensorFlow already loaded: its thread pools keep their size")
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch = sys.modules.get("torch")
        if torch is not None:
            # A torch imported inside the block read OMP_NUM_THREADS; put it back too.
            torch.set_num_threads(torch_before if torch_before is not None else os.cpu_count() or 1)
