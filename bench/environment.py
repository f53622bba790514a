"""What a result was measured on: CPU, versions, commit (for manifests and reports)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["cpu_details", "cpu_kind", "environment"]

_PACKAGES = (
    "rsbench",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "pyarrow",
    "torch",
    "tensorflow",
    "keras",
    "rectools-lightfm",
    "implicit",
    "matplotlib",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The vector instruction sets that decide which kernels numerical libraries pick
#: (OpenBLAS, oneDNN/XLA, numba's host target): two machines that differ here can
#: give results that differ in the last bits.
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
)


def cpu_kind(cpuinfo: str | None = None) -> dict[str, object]:
    """The CPU's vendor, family and model numbers and its vector instruction sets.

    Parsed from ``/proc/cpuinfo`` (or the ``cpuinfo`` text given); ``{}``
    where it cannot be read (not Linux). The model name alone does not tell
    two machines apart ("AMD EPYC" on both an AVX2-only and an AVX-512 CPU).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "flags" not in fields:
        return {}
    flags = set(fields["flags"].split())
    family = " ".join(
        part
        for part in (
            fields.get("vendor_id"),
            fields.get("cpu family") and f"family {fields['cpu family']}",
            fields.get("model") and f"model {fields['model']}",
        )
        if part
    )
    return {"cpu_family": family, "cpu_isa": [f for f in _ISA_FLAGS if f in flags]}


def cpu_details(env: Mapping[str, Any]) -> str:
    """The CPU kind of an :func:`environment` record in words ('' where not recorded).

    For example ``"AuthenticAMD family 25 model 1; sse4_2 avx avx2 fma"``: what the
    report's Environment line and the regression gate's machines line show.
    """
    details = [str(env["cpu_family"])] if env.get("cpu_family") else []
    isa = env.get("cpu_isa")
    if isinstance(isa, list):
        details.append(" ".join(map(str, isa)) or "no vector extensions")
    return "; ".join(details)


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment() -> dict:
    """A JSON-serialisable description of the machine and software."""
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        **cpu_kind(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "packages": packages,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }
