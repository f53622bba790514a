"""What a result was measured on: the CPU kind read from /proc/cpuinfo text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.environment import cpu_kind, environment

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 avx2 avx avx512_bf16 avx512f sha_ni

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
flags\t\t: fpu sse
"""


def test_cpu_kind_reads_the_first_processor_and_its_vector_extensions():
    kind = cpu_kind(CPUINFO)
    assert kind == {
        "cpu_family": "AuthenticAMD family 25 model 17",
        # Only the instruction sets that decide kernels, in a fixed order.
        "cpu_isa": ["avx", "avx2", "fma", "avx512f", "avx512_bf16"],
    }


def test_cpu_kind_without_flags_says_nothing():
    assert cpu_kind("") == {}
    assert cpu_kind("processor\t: 0\nmodel name\t: Some CPU\n") == {}


def test_environment_records_the_cpu_kind_of_this_machine():
    env = environment()
    assert env["cpu"]
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo: the kind is simply left out")
    first = cpuinfo.split("\n\n")[0]
    flags = next(line for line in first.splitlines() if line.startswith("flags")).split()
    assert env["cpu_family"].startswith(next(
        line.split(":")[1].strip() for line in first.splitlines() if line.startswith("vendor_id")
    ))  # fmt: skip
    # Every extension recorded is one this CPU reports, and AVX2 machines say so.
    assert env["cpu_isa"] and set(env["cpu_isa"]) <= set(flags)
    assert ("avx2" in env["cpu_isa"]) == ("avx2" in flags)
