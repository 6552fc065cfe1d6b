"""Compiled building blocks that generated code calls.

Every function here is a Numba ``@njit(nogil=True)`` function or an
``@overload`` so that the generated prologue, chunk kernel and epilogue stay
in nopython mode.  Block arithmetic lives here, in one place, because the
``serial``, ``threads`` and ``mpi`` levels must agree on it to the bit.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

__all__ = ["MAX_BLOCKS", "MIN_BLOCK", "block_size", "trip_count", "ls_trip", "ls_block",
           "ls_zero", "ls_one", "ls_parts"]

#: A reduction loop is cut into at most this many blocks...
MAX_BLOCKS = 1024
#: ... of at least this many iterations (the last block may be shorter).
MIN_BLOCK = 16
#: Loops without reductions are cut into blocks of at least this many
#: iterations in the fused serial code (only error messages see them).
PLAIN_BLOCK = 1024


def trip_count(lo: int, stop: int, step: int) -> int:
    """``len(range(lo, stop, step))``."""
    return len(range(lo, stop, step))


def block_size(n: int, reductions: bool = True) -> int:
    """The fixed block length for a loop of *n* iterations.

    It depends on *n* alone, never on the worker or rank count, so that
    per-block reduction partials, combined in block order, are the same at
    every level.
    """
    floor = MIN_BLOCK if reductions else PLAIN_BLOCK
    return max(floor, -(-n // MAX_BLOCKS))


@numba.njit(nogil=True, cache=False)
def ls_trip(lo, stop, step):  # pragma: no cover - compiled
    if step == 0:
        raise ValueError("range() arg 3 must not be zero")
    if step > 0:
        if stop <= lo:
            return 0
        return (stop - lo + step - 1) // step
    if stop >= lo:
        return 0
    return (lo - stop - step - 1) // (-step)


@numba.njit(nogil=True, cache=False)
def ls_block(n, has_reductions):  # pragma: no cover - compiled
    floor = MIN_BLOCK if has_reductions else PLAIN_BLOCK
    b = -(-n // MAX_BLOCKS)
    return b if b > floor else floor


def ls_zero(x):  # pragma: no cover - replaced by the overload in compiled code
    return x * 0


def ls_one(x):  # pragma: no cover
    return x * 0 + 1


def ls_parts(nblocks, x):  # pragma: no cover
    return np.full(nblocks, x)


def _scalar_type(x):
    x = types.unliteral(x)
    if isinstance(x, types.Boolean):
        return np.int64
    if isinstance(x, types.Number):
        return as_dtype(x).type
    return None


@overload(ls_zero, jit_options={"nogil": True})
def _ol_zero(x):
    if isinstance(x, types.Array):
        return lambda x: np.zeros_like(x)
    t = _scalar_type(x)
    if t is not None:
        return lambda x: t(0)
    return None


@overload(ls_one, jit_options={"nogil": True})
def _ol_one(x):
    if isinstance(x, types.Array):
        return lambda x: np.ones_like(x)
    t = _scalar_type(x)
    if t is not None:
        return lambda x: t(1)
    return None


@overload(ls_parts, jit_options={"nogil": True})
def _ol_parts(nblocks, x):
    if isinstance(x, types.Array):
        dt = x.dtype

        def impl(nblocks, x):
            return np.empty((nblocks,) + x.shape, dt)

        return impl
    t = types.unliteral(x)
    if isinstance(t, (types.Number, types.Boolean)):
        dt = as_dtype(t)
        return lambda nblocks, x: np.empty(nblocks, dt)
    return None


class EarlyReturn(Exception):
    """Raised by a generated prologue that reached a ``return`` before the loop:
    the caller then runs the fused serial function instead."""


@intrinsic
def ls_state_ptr(typingctx, addr):  # pragma: no cover - compiled
    """The int64 pointer at integer address *addr* (the caller's error-state slots)."""
    if not isinstance(addr, types.Integer):
        return None
    sig = types.CPointer(types.int64)(addr)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))

    return sig, codegen


ls_carray = numba.carray


@intrinsic
def ls_nonneg(typingctx, x):  # pragma: no cover - compiled
    """*x*, with the promise to LLVM that it is >= 0.

    Generated code applies it to the loop variable of a block when the range
    starts at a non-negative constant, so that LLVM drops the negative-index
    wraparound of ``a[i]`` and vectorizes the loop as it does for
    ``for i in range(n)``; without it a blocked loop runs up to 3.5x slower.
    """
    if not isinstance(x, types.Integer):
        return None
    sig = x(x)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        v = args[0]
        builder.assume(builder.icmp_signed(">=", v, ir.Constant(v.type, 0)))
        return v

    return sig, codegen
