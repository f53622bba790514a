"""What a result was measured on: the CPU kind read from /proc/cpuinfo text."""

from __future__ import annotations

from bench.environment import cpu_kind, environment

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512bw avx512vl avx512_bf16 sha_ni

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
        "cpu_isa": [
            "sse4_2",
            "avx",
            "avx2",
            "fma",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512_bf16",
        ],
    }


def test_cpu_kind_without_flags_says_nothing():
    assert cpu_kind("") == {}
    assert cpu_kind("processor\t: 0\nmodel name\t: Some CPU\n") == {}


def test_environment_records_the_cpu_kind_of_this_machine():
    env = environment()
    assert env["cpu"]
    # On Linux the kind is there; elsewhere it is simply left out.
    if "cpu_family" in env:
        assert isinstance(env["cpu_isa"], list)
        assert set(env["cpu_isa"]) <= {
            "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
            "avx512_vnni", "avx512_bf16", "amx_tile",
        }  # fmt: skip
