"""The compiled spin of :mod:`._spin` (imported on first use: it imports Numba)."""

from __future__ import annotations

from typing import Any

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["spin"]


@intrinsic
def _load_acquire(typingctx: Any, arr: Any) -> Any:
    """``arr[0]`` read with an atomic acquire load: never hoisted out of a loop."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(ary.data, "acquire", 8)
    return types.int64(arr), codegen


@intrinsic
def _cpu_yield(typingctx: Any) -> Any:
    """libc ``sched_yield()``: let a runnable thread have this CPU."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
        return context.get_dummy_value()
    return types.void(), codegen


@numba.njit(nogil=True, cache=True)
def spin(flag: Any, tries: int) -> bool:
    """True once ``flag[0] != 0``; False after *tries* reads."""
    for _ in range(tries):
        if _load_acquire(flag) != 0:
            return True
        _cpu_yield()
    return _load_acquire(flag) != 0
