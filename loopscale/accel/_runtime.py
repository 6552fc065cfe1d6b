"""Compiled building blocks that generated code uses.

The block constants live here, in one place, because the ``serial``,
``threads`` and ``mpi`` levels must agree on them to the bit; the generated
code writes the block arithmetic out with them.  The compiled helpers are
Numba *intrinsics*: they are lowered inline into the generated functions, so a
cold process compiles no helper function (each would cost 20-60 ms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import literal_unroll, types
from numba.extending import intrinsic, overload, register_jitable

__all__ = ["MAX_BLOCKS", "MIN_BLOCK", "NESTED_MIN_BLOCK", "PLAIN_BLOCK", "SCATTER_SHARE",
           "SCATTER_SLACK", "SHARE_WORK", "overlaps", "block_size",
           "trip_count", "ls_dim", "ls_meets", "ls_not_array", "ls_scatter_zero", "ls_scatter_add",
           "ls_scatter_size", "ls_scatter_in_order", "ls_put", "ls_nonneg",
           "ls_zero_i", "ls_one_i", "ls_no_bits",
           "ls_all_bits", "ls_min_top",
           "ls_max_top", "ls_nan_top", "ls_np_top", "ls_range_int", "EarlyReturn"]

#: A reduction loop is cut into at most this many blocks...
MAX_BLOCKS = 1024
#: ... of at least this many iterations (the last block may be shorter)...
MIN_BLOCK = 16
#: ... or of this many when each iteration runs a loop of its own (a row of a
#: stencil, a body's force sum): such an iteration outweighs a block's cost,
#: and short blocks keep the rows an MPI rank runs past its own to a minimum.
NESTED_MIN_BLOCK = 1
#: A loop that adds into an array at any index (``h[b] += w``) gives each block
#: an array like ``h``: blocks are made long enough that all of them together
#: hold at most ``n // SCATTER_SHARE + SCATTER_SLACK`` elements.
SCATTER_SHARE = 4
SCATTER_SLACK = 65536
#: Loops without reductions are cut into blocks of at least this many
#: iterations in the fused serial code (only error messages see them).
PLAIN_BLOCK = 1024


#: How much work ``np.shares_memory`` may do to prove two arrays apart (the
#: interleaved ``b[0::2]``, ``b[1::2]`` and ``z.real``, ``z.imag`` take a few
#: steps); past it the arrays count as overlapping.
SHARE_WORK = 10_000


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether arrays *a* and *b* may share an element: their memory bounds meet
    and NumPy cannot prove, within :data:`SHARE_WORK`, that no element is in both."""
    if not np.may_share_memory(a, b):
        return False
    too_hard = getattr(getattr(np, "exceptions", np), "TooHardError", Exception)
    try:
        return bool(np.shares_memory(a, b, max_work=SHARE_WORK))
    except too_hard:
        return True


def trip_count(lo: int, stop: int, step: int) -> int:
    """``len(range(lo, stop, step))``."""
    return len(range(lo, stop, step))


def block_size(n: int, reductions: bool = True, nested: bool = False) -> int:
    """The fixed block length for a loop of *n* iterations.

    It depends on *n* (and on the loop's code: whether it reduces, whether its
    body holds a loop) alone, never on the worker or rank count, so that
    per-block reduction partials, combined in block order, are the same at
    every level.
    """
    floor = (NESTED_MIN_BLOCK if nested else MIN_BLOCK) if reductions else PLAIN_BLOCK
    return max(floor, -(-n // MAX_BLOCKS))


class EarlyReturn(Exception):
    """Raised by a generated prologue that reached a ``return`` before the loop:
    the caller then runs the fused serial function instead."""


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


# ---------------------------------------------------------------------------
# intrinsics: lowered inline into the caller, so a cold process compiles no
# helper function for them (each helper dispatcher costs ~20-60 ms to compile)


@intrinsic
def ls_put(typingctx, addr, index, value):  # pragma: no cover - compiled
    """Store int64 *value* at slot *index* of the int64 array at address *addr*."""
    if not all(isinstance(t, types.Integer) for t in (addr, index, value)):
        return None
    sig = types.void(addr, index, value)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        a, i, v = args
        i64 = ir.IntType(64)
        ptr = builder.inttoptr(a, i64.as_pointer())
        idx = context.cast(builder, i, signature.args[1], types.int64)
        val = context.cast(builder, v, signature.args[2], types.int64)
        builder.store(val, builder.gep(ptr, [idx]))
        return context.get_dummy_value()

    return sig, codegen


def _identity_intrinsic(value: int):  # type: ignore[no-untyped-def]
    def typer(typingctx, x):  # pragma: no cover - compiled
        if isinstance(x, types.Array):
            filler = np.zeros_like if value == 0 else np.ones_like

            def codegen(context, builder, signature, args):
                return context.compile_internal(builder, lambda a: filler(a), signature, args)

            return x.copy(readonly=False)(x), codegen
        t = types.unliteral(x)
        if isinstance(t, types.Boolean):
            t = types.int64
        if not isinstance(t, types.Number):
            return None

        def codegen(context, builder, signature, args):  # noqa: F811
            rt = signature.return_type
            const = complex(value) if isinstance(rt, types.Complex) else (
                float(value) if isinstance(rt, types.Float) else value)
            return context.get_constant(rt, const)

        return t(x), codegen

    return typer


ls_zero_i = intrinsic(_identity_intrinsic(0))
ls_one_i = intrinsic(_identity_intrinsic(1))


def ls_no_bits(x: Any) -> Any:
    """The identity of ``|`` and ``^`` for a value like *x* (of its type: a bool
    stays a bool): ``False``, ``0``, or an array of them."""
    return type(x)(0)


def ls_all_bits(x: Any) -> Any:
    """The identity of ``&`` for a value like *x*: ``True``, ``-1`` (every bit
    set; the largest value of an unsigned type), or an array of them."""
    return True if isinstance(x, bool) else ~type(x)(0)


@overload(ls_no_bits)
def _ls_no_bits(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if isinstance(x, types.Array) and isinstance(x.dtype, (types.Boolean, types.Integer)):
        return lambda x: np.zeros_like(x)
    if isinstance(x, types.Boolean):
        return lambda x: False
    if isinstance(x, types.Integer):
        return lambda x: x ^ x
    return None


@overload(ls_all_bits)
def _ls_all_bits(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if isinstance(x, types.Array) and isinstance(x.dtype, types.Boolean):
        return lambda x: np.ones_like(x)
    if isinstance(x, types.Array) and isinstance(x.dtype, types.Integer):
        return lambda x: ~np.zeros_like(x)
    if isinstance(x, types.Boolean):
        return lambda x: True
    if isinstance(x, types.Integer):
        return lambda x: ~(x ^ x)
    return None


def _top_intrinsic(sign: float):  # type: ignore[no-untyped-def]
    """The start of a block's ``min`` (*sign* +1) or ``max`` (-1) partial, typed like
    *like* (the accumulator): +inf / -inf for a float, which every element (NaN
    included) replaces or leaves as the loop's own statement would (NaN, *sign*
    NaN, for ``np.fmax``/``np.fmin``, which any element replaces); *x* (the
    accumulator's value before the loop) otherwise."""
    def typer(typingctx, like, x):  # pragma: no cover - compiled
        t = types.unliteral(like)
        if not isinstance(t, (types.Number, types.Boolean)):
            return None

        def codegen(context, builder, signature, args):
            rt = signature.return_type
            if isinstance(rt, types.Float):
                return context.get_constant(rt, sign * float("inf"))
            return context.cast(builder, args[1], signature.args[1], rt)

        return t(like, x), codegen

    return typer


ls_min_top = intrinsic(_top_intrinsic(1.0))
ls_max_top = intrinsic(_top_intrinsic(-1.0))
ls_nan_top = intrinsic(_top_intrinsic(float("nan")))


def ls_np_top(like: Any, x: Any, kind: int) -> Any:
    """The start of a block's partial of a reduction by NumPy's extrema
    (``s = np.maximum(s, x[i])``), like the accumulator *like*, scalar or array:
    for floats, -inf (*kind* -1: ``maximum``), +inf (1: ``minimum``) or NaN (0:
    ``fmax``/``fmin``), which the first element replaces as the loop's statement
    would; otherwise (a copy of) *x*, the accumulator's value before the loop."""
    value = float("nan") if kind == 0 else kind * float("inf")
    if isinstance(like, np.ndarray):
        return np.full(x.shape, value, like.dtype) if like.dtype.kind == "f" else x.copy()
    return type(like)(value) if isinstance(like, float) else x


@overload(ls_np_top, prefer_literal=True)
def _ls_np_top(like, x, kind):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    k = getattr(kind, "literal_value", None)
    if k not in (-1, 0, 1):
        return None
    if isinstance(like, types.Array):
        if isinstance(like.dtype, types.Float):
            value = float("nan") if k == 0 else k * float("inf")

            def full(like, x, kind):
                out = np.empty(x.shape, like.dtype)
                out[...] = value
                return out

            return full
        return lambda like, x, kind: x.copy()
    top = {-1: ls_max_top, 1: ls_min_top, 0: ls_nan_top}[k]
    return lambda like, x, kind: top(like, x)


@intrinsic(prefer_literal=True)
def ls_range_int(typingctx, value, text):  # pragma: no cover - compiled
    """*value*, a bound of the analysed ``range()``, when it is an integer; a typing
    error naming the bound (*text*, its source) otherwise: ``range(n / 2)``."""
    if isinstance(value, (types.Integer, types.Boolean)):
        rt = types.unliteral(value)

        def codegen(context, builder, signature, args):
            return context.cast(builder, args[0], signature.args[0], rt)

        return rt(value, text), codegen
    from numba.core.errors import TypingError

    what = getattr(text, "literal_value", "?")
    raise TypingError(f"loopscale-range-bound: the range() bound `{what}` is {value}, not "
                      "an integer")


def ls_len0(x: object) -> int:
    """The length along axis 0 that the generated length checks compare with: an
    array's, or no limit for what is not an array (a typed ``Dict`` written at
    the loop variable grows; a list raises its own IndexError)."""
    return len(x) if hasattr(x, "shape") else 1 << 62  # (run as Python by the CUDA host)


def ls_meets(a: Any, b: Any) -> bool:
    """Whether array *a* may share memory with *b* (an array, or a tuple holding
    arrays; anything else never): their address ranges meet.  The fused serial
    code asks it of an argument that a scatter sum adds into."""
    if not isinstance(a, np.ndarray):
        return False
    if isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    if isinstance(b, tuple):
        return any(ls_meets(a, e) for e in b)
    return False


@register_jitable
def _extent(a):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    lo = a.ctypes.data
    hi = lo
    for k in range(a.ndim):
        if a.shape[k] == 0:
            return lo, lo
        st = a.strides[k] * (a.shape[k] - 1)
        if st > 0:
            hi += st
        else:
            lo += st
    return lo, hi + a.itemsize


@overload(ls_meets)
def _ls_meets(a, b):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if not isinstance(a, types.Array):
        return lambda a, b: False
    if isinstance(b, types.Array):
        def impl(a, b):
            a0, a1 = _extent(a)
            b0, b1 = _extent(b)
            return a0 < b1 and b0 < a1

        return impl
    if isinstance(b, types.BaseTuple) and any(
            isinstance(t, (types.Array, types.BaseTuple)) for t in b.types):
        def impl_tuple(a, b):
            hit = False
            for e in literal_unroll(b):
                if ls_meets(a, e):
                    hit = True
            return hit

        return impl_tuple
    return lambda a, b: False


def ls_not_array(h: Any) -> bool:
    """Whether *h*, which a scatter sum adds into, is not an array (a typed
    ``Dict`` the caller passed): the fused serial code then adds into it itself."""
    return not isinstance(h, np.ndarray)


@overload(ls_not_array)
def _ls_not_array(h):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    return (lambda h: False) if isinstance(h, types.Array) else (lambda h: True)


def ls_scatter_zero(h: Any) -> Any:
    """A block's own array for a scatter sum into the argument *h*: zeros like it
    (*h* itself when it is not an array, which is then added into directly)."""
    return np.zeros_like(h) if isinstance(h, np.ndarray) else h


@overload(ls_scatter_zero)
def _ls_scatter_zero(h):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if isinstance(h, types.Array):
        return lambda h: np.zeros_like(h)
    return lambda h: h


def ls_scatter_add(h: Any, p: Any) -> None:
    """Add a block's array *p* into the argument *h* (nothing when *h* is not an
    array: the loop added into it directly)."""
    if isinstance(h, np.ndarray):
        h += p


@overload(ls_scatter_add)
def _ls_scatter_add(h, p):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if isinstance(h, types.Array):
        def add(h, p):
            h += p

        return add
    return lambda h, p: None


def ls_scatter_size(h: Any) -> int:
    """The elements of the argument *h* a block's own array holds (0 when *h* is
    not an array)."""
    return int(h.size) if isinstance(h, np.ndarray) else 0


@overload(ls_scatter_size)
def _ls_scatter_size(h):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    return (lambda h: h.size) if isinstance(h, types.Array) else (lambda h: 0)


def ls_scatter_in_order(h: Any, any_values: int) -> bool:
    """Whether sums per block into the array *h* would not repeat the loop's own
    additions, by its dtype: an integer or bool array when the loop may add
    values that are not integers (*any_values* 1: each addition truncates), a
    bool array when it adds integer constants other than positive counts (0:
    ``h[b] -= 1`` toggles).  See ``LoopAnalysis.scatter_params``."""
    kind = getattr(getattr(h, "dtype", None), "kind", "")
    return kind == "b" or (bool(any_values) and kind in "iu")


@overload(ls_scatter_in_order, prefer_literal=True)
def _ls_scatter_in_order(h, any_values):  # type: ignore[no-untyped-def]  # pragma: no cover
    dt = h.dtype if isinstance(h, types.Array) else None
    every = getattr(any_values, "literal_value", 1)
    ordered = isinstance(dt, types.Boolean) or (bool(every) and isinstance(dt, types.Integer))
    return (lambda h, any_values: True) if ordered else (lambda h, any_values: False)


def ls_dim(x: object, axis: int) -> int:
    """The length along *axis* that the generated length checks compare with: an
    array's, or no limit for what is not an array (a tuple of arrays)."""
    return x.shape[axis] if hasattr(x, "shape") else 1 << 62  # type: ignore[attr-defined]


@overload(ls_dim)
def _ls_dim(x, axis):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if isinstance(x, types.Array):
        return lambda x, axis: x.shape[axis]
    return lambda x, axis: 1 << 62


@overload(ls_len0)
def _ls_len0(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if isinstance(x, types.Array):
        return lambda x: len(x)
    return lambda x: 1 << 62


#: The marker of the typing error :func:`ls_seqlen` raises: the decorator then
#: builds the function again without rewriting its loops (see :mod:`._iteration`).
NOT_A_SEQUENCE = "loopscale-not-a-sequence"


def ls_seqlen(x: object) -> int:
    """``len(x)`` for what a rewritten ``for v in x`` loop iterates: an array of at
    least one dimension or a tuple, whose iteration gives ``x[0], x[1], ...``;
    anything else is refused (see :mod:`._iteration`)."""
    # (run as Python by the CUDA host, where an array may be a device array)
    if len(getattr(x, "shape", ())) >= 1 or isinstance(x, tuple):
        return len(x)
    raise TypeError(f"{NOT_A_SEQUENCE}: a loop `for v in x` on the GPU iterates an array "
                    f"or a tuple, not a {type(x).__name__}")


@overload(ls_seqlen)
def _ls_seqlen(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    if (isinstance(x, types.Array) and x.ndim >= 1) or isinstance(x, types.UniTuple):
        return lambda x: len(x)
    from numba.core.errors import TypingError

    raise TypingError(f"{NOT_A_SEQUENCE}: {x}")


#: Why an integer raised to a negative integer power is refused in compiled code.
NEGATIVE_POWER = ("an integer raised to a negative integer power: Python gives a float "
                  "(2 ** -3 is 0.125), compiled code would give an integer (0); write the "
                  "base or the exponent as a float (2.0 ** -k)")


def ls_pow(x: Any, y: Any) -> Any:
    """``x ** y`` (see :func:`._codegen.python_powers`): compiled, an integer to a
    negative integer power raises :data:`NEGATIVE_POWER` instead of giving 0."""
    return x ** y


@overload(ls_pow)
def _ls_pow(x, y):  # type: ignore[no-untyped-def]  # pragma: no cover
    if (isinstance(x, types.Integer) and isinstance(y, types.Integer)
            and y.signed):
        def checked(x, y):  # type: ignore[no-untyped-def]
            if y < 0:
                raise ValueError(NEGATIVE_POWER)
            return x ** y

        return checked

    def impl(x, y):  # type: ignore[no-untyped-def]
        return x ** y

    return impl


def ls_fmt(value: object, spec: str, conversion: int) -> str:
    """``str(value)`` / the ``{value!c:spec}`` of an f-string, as Python gives it.

    Numba's own ``str()`` and ``format()`` of a float (or a tuple, a bool...)
    give ``'<object type:float64>'``; compiled code calls this instead (see
    :func:`._codegen.python_strings`), which formats an integer or a string
    itself and anything else through Python (an object-mode block: it takes
    the GIL, for the time of the formatting only).  *conversion* is the
    f-string's ``!s``/``!r``/``!a`` (``ord`` of the letter) or -1.
    """
    if conversion == ord("r"):
        value = repr(value)
    elif conversion == ord("a"):
        value = ascii(value)
    elif conversion == ord("s"):
        value = str(value)
    return format(value, spec)


@overload(ls_fmt)
def _ls_fmt(value, spec, conversion):  # type: ignore[no-untyped-def]  # pragma: no cover
    import numba

    native = (isinstance(value, types.UnicodeType)
              or (isinstance(value, types.Integer) and not isinstance(value, types.Boolean)))

    def impl(value, spec, conversion):  # type: ignore[no-untyped-def]
        if native and len(spec) == 0 and (conversion == -1 or conversion == 115):
            return str(value)
        with numba.objmode(out="unicode_type"):
            out = ls_fmt(value, spec, conversion)
        return out

    return impl
