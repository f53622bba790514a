"""Prefetch hints for the compiled training steps (numba).

A step whose table rows outgrow the CPU caches waits on main memory for each
row it gathers in random order. :func:`prefetch_row` asks the CPU to start
loading a row that the loop needs a few iterations later, so that the load
overlaps the arithmetic in between. It is LLVM's ``prefetch`` intrinsic: a
hint that neither reads nor faults, so it changes no value (the tests of each
kernel run it with and without prefetching and compare bytes).
"""

from __future__ import annotations

import llvmlite.binding
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["PREFETCH_AHEAD", "prefetch", "prefetch_row"]

#: Triplets between a prefetch of a triplet's table rows and their use (0: no
#: prefetching). 4 to 32 measured within noise of each other at ML-20M shape.
PREFETCH_AHEAD = 8
# One cache line of float32 (64 bytes), the prefetch stride along a row.
_LINE = 16
# LLVM names the intrinsic by its pointer type: opaque pointers from LLVM 15.
_OPAQUE_POINTERS = llvmlite.binding.llvm_version_info >= (15,)
_PREFETCH_NAME = "llvm.prefetch.p0" if _OPAQUE_POINTERS else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, array, row, col):
    """Hint the CPU to load the cache line of ``array[row, col]`` (2-d; no bounds check).

    ``llvm.prefetch`` with write intent and high locality: it neither reads
    nor faults, so it changes no result.
    """
    sig = types.void(array, row, col)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer2(
            context,
            builder,
            view.data,
            cgutils.unpack_tuple(builder, view.shape),
            cgutils.unpack_tuple(builder, view.strides),
            array_type.layout,
            [args[1], args[2]],
        )
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, function_type, _PREFETCH_NAME)
        # (address, 1 = write, 3 = keep in all cache levels, 1 = data cache)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True, inline="always")
def prefetch_row(array, row):
    """Prefetch every cache line of the 2-d ``array``'s row ``row``."""
    width = array.shape[1]
    for col in range(0, width, _LINE):
        prefetch(array, row, col)
    prefetch(array, row, width - 1)  # the last line, when the row is not line-aligned
