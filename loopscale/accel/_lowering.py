"""How loopscale's generated functions are lowered, so that LLVM can vectorize their loops.

Two obstacles keep Numba's ``njit`` from vectorizing an ordinary numeric loop
such as Black-Scholes, and this module removes both for the code loopscale
generates (never for other Numba code in the process):

**A float division by zero raises at once.**  Under Python's rules ``x / 0.0``
raises ``ZeroDivisionError``; Numba tests every divisor and leaves the loop
when it is zero, and a loop with such an exit is not vectorized.  With the
*deferred* error model (:class:`DeferredZeroDivision`) a zero divisor is
recorded in a flag (an OR of the divisor tests, which LLVM vectorizes as a
reduction) and the loop goes on with IEEE's result; the generated code reads
the flag after each block of iterations and raises ``ZeroDivisionError`` there,
naming the block, as the threads level names the chunk.  The model is used
only for loops where going on past the division cannot do harm or be seen
(see :func:`deferral_blocker`); every other loop raises at once, as before.

**Transcendental functions are scalar calls.**  ``math.exp`` lowers to
``llvm.exp.f64``, which a vectorized loop splits back into one C-library call
a lane.  Numba vectorizes them only with Intel's SVML, which the PyPI
llvmlite lacks.  glibc ships a vector math library, ``libmvec``; functions
compiled through :class:`Pipeline` call a small scalar wrapper
(``__ls_vm_exp``) that carries LLVM's ``vector-function-abi-variant``
attribute, so the loop vectorizer calls ``_ZGVdN4v_exp`` four lanes at a time.
The scalar wrapper itself calls the same vector function (on a broadcast
value), so an element's result does not depend on whether it fell in the
vectorized part of a loop or in its remainder: blocks, chunks, ranks and
levels still agree to the bit.  libmvec's functions differ from the C
library's scalar ones by a few units in the last place (measured in
``tests/accel/test_lowering.py``); ``LOOPSCALE_VECTOR_MATH=0`` turns them off.
"""

from __future__ import annotations

import ast
import ctypes.util
import functools
import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import callconv
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import FunctionPass, register_pass
from numba.core.typed_passes import NopythonTypeInference
from numba.extending import intrinsic

from .. import config
from ._astutil import parse_function

__all__ = ["ERROR_MODEL", "DeferredZeroDivision", "Pipeline", "UnsafeDeferral", "ls_zdiv_pending",
           "indexes_are_direct", "status",
           "vector_functions", "signature", "load_vector_library", "deferral_blocker"]

# ---------------------------------------------------------------------------
# deferred float division by zero

#: The name under which :class:`DeferredZeroDivision` is registered with Numba.
ERROR_MODEL = "loopscale-deferred"

_I8 = ir.IntType(8)
#: the messages of Numba's zero-divisor tests whose result is a float (IEEE's
#: inf or nan), which the deferred model lets through; integer ``//`` and ``%``
#: still raise at once (their result could index an array)
_DEFERRED_MESSAGES = frozenset({"division by zero"})


def _flag_slot(builder: ir.IRBuilder) -> ir.AllocaInstr:
    """The function's zero-divisor flag (an ``i8`` on its stack, 0 on entry)."""
    fn = builder.function
    slot = getattr(fn, "_ls_zdiv_slot", None)
    if slot is None:
        with builder.goto_entry_block():
            slot = builder.alloca(_I8, name="ls.zdiv")
            builder.store(ir.Constant(_I8, 0), slot)
        fn._ls_zdiv_slot = slot  # type: ignore[attr-defined]
    return slot


def _guarding_branch(builder: ir.IRBuilder) -> tuple[ir.Block, Any] | None:
    """The conditional branch that leads to the block *builder* is in (Numba
    calls the error model inside ``if divisor == 0``), with its block."""
    here = builder.block
    for blk in reversed(builder.function.blocks):
        term = blk.terminator
        if (term is not None and term.opname == "br" and len(term.operands) == 3
                and term.operands[1] is here):
            return blk, term
    return None


class DeferredZeroDivision(callconv.ErrorModel):
    """Numba error model: a float division by zero sets a flag instead of raising.

    The flag is set by ``flag |= (divisor == 0)`` emitted *before* the test's
    branch (not inside it), so that no store sits in a conditional block and
    LLVM treats the flag as an OR reduction; the branch is left empty and
    disappears.  Any other error (an integer division by zero) raises at once,
    as in Python's model -- as a float division by zero if one is pending, so
    that the first error of the block is the one reported.
    """

    raise_on_fp_zero_division = True

    def fp_zero_division(self, builder: ir.IRBuilder, exc_args: Any = None,
                         loc: Any = None) -> bool:
        slot = _flag_slot(builder)
        if exc_args is not None and tuple(exc_args)[:1] and exc_args[0] in _DEFERRED_MESSAGES:
            found = _guarding_branch(builder)
            if found is None:
                builder.store(ir.Constant(_I8, 1), slot)
            else:
                blk, term = found
                here = builder.block
                builder.position_before(term)
                builder.store(builder.or_(builder.load(slot), builder.zext(term.operands[0], _I8)),
                              slot)
                builder.position_at_end(here)
            return False
        pending = builder.icmp_unsigned("!=", builder.load(slot), ir.Constant(_I8, 0))
        with builder.if_then(pending, likely=False):
            self.call_conv.return_user_exc(builder, ZeroDivisionError, ("division by zero",), loc)
        self.call_conv.return_user_exc(builder, ZeroDivisionError, exc_args, loc)
        return True


callconv.error_models.setdefault(ERROR_MODEL, DeferredZeroDivision)


@intrinsic
def ls_zdiv_pending(typingctx):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Whether a float division by zero happened since the last call (and clear it)."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        slot = _flag_slot(builder)
        value = builder.load(slot)
        builder.store(ir.Constant(_I8, 0), slot)
        return builder.icmp_unsigned("!=", value, ir.Constant(_I8, 0))

    return types.boolean(), codegen


#: callables a loop may call and still defer its divisions: they compute a
#: value from their arguments, raise nothing once compiled, and return floats
#: (no float-to-integer conversion: an index computed from an inf or a nan
#: could reach memory outside an array before the block's end)
_MATH_NAMES = ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "cbrt", "sin",
               "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh",
               "acosh", "atanh", "erf", "erfc", "hypot", "pow", "fabs", "copysign", "isnan",
               "isinf", "isfinite", "radians", "degrees", "gamma", "lgamma", "fmod")
_NUMPY_NAMES = ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "cbrt", "sin",
                "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
                "arcsinh", "arccosh", "arctanh", "hypot", "power", "abs", "absolute", "fabs",
                "copysign", "isnan", "isinf", "isfinite", "minimum", "maximum", "fmin", "fmax",
                "square", "sign", "radians", "degrees", "deg2rad", "rad2deg", "float64",
                "float32", "complex128", "complex64")


@functools.cache
def _pure_callables() -> frozenset[int]:
    objs: list[Any] = [abs, min, max, float, complex, len, range, bool]
    objs += [getattr(math, n) for n in _MATH_NAMES if hasattr(math, n)]
    objs += [getattr(np, n) for n in _NUMPY_NAMES if hasattr(np, n)]
    return frozenset(id(o) for o in objs)


def _blocker_in(stmts: list[ast.stmt], resolver: Any, seen: set[int], where: str,
                resolver_for: Any) -> str | None:
    for st in stmts:
        for node in ast.walk(st):
            line = getattr(node, "lineno", None)
            at = f"{where}:{line}" if line else where
            if isinstance(node, ast.While):
                return f"a while loop (line {at}) would run on after the division"
            if isinstance(node, (ast.Raise, ast.Assert, ast.Try)):
                return f"the loop raises or catches exceptions itself (line {at})"
            if isinstance(node, (ast.Lambda, ast.FunctionDef, ast.Yield, ast.YieldFrom)):
                return f"a function defined in the loop (line {at})"
            if not isinstance(node, ast.Call):
                continue
            target = resolver.value(node.func)
            if target is not None and id(target) in _pure_callables():
                continue
            helper = resolver.helper(node.func)
            if helper is None:
                return (f"the call `{ast.unparse(node.func)}` (line {at}) is not one of the "
                        "math functions known not to raise or convert to an integer")
            if id(helper) in seen:
                return f"the helper {helper.__qualname__}() is recursive"
            try:
                hdef, _ = parse_function(helper)
            except (OSError, TypeError, SyntaxError):
                return f"the source of the helper {helper.__qualname__}() is not available"
            a = hdef.args
            if a.vararg or a.kwarg or a.kwonlyargs:
                # (Numba's IR inliner takes positional parameters and defaults only)
                return f"the helper {helper.__qualname__}() takes *args, **kwargs or keywords"
            reason = _blocker_in(hdef.body, resolver_for(helper), seen | {id(helper)},
                                 helper.__code__.co_filename, resolver_for)
            if reason is not None:
                return reason
    return None


def _is_direct(expr: ast.AST | None, direct: set[str]) -> bool:
    """Whether *expr* is integer arithmetic of *direct* names and constants
    (shapes and ``len()`` included): nothing read from an array, nothing
    converted from a float."""
    if expr is None or isinstance(expr, ast.Constant):
        return True
    if isinstance(expr, ast.Name):
        return expr.id in direct
    if isinstance(expr, ast.BinOp):
        return _is_direct(expr.left, direct) and _is_direct(expr.right, direct)
    if isinstance(expr, ast.UnaryOp):
        return _is_direct(expr.operand, direct)
    if isinstance(expr, ast.IfExp):
        return all(_is_direct(e, direct) for e in (expr.body, expr.orelse))
    if isinstance(expr, ast.Tuple):
        return all(_is_direct(e, direct) for e in expr.elts)
    if isinstance(expr, ast.Slice):
        return all(_is_direct(e, direct) for e in (expr.lower, expr.upper, expr.step))
    if (isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Attribute)
            and expr.value.attr == "shape"):
        return _is_direct(expr.slice, direct)
    if isinstance(expr, ast.Attribute) and expr.attr in ("size", "ndim"):
        return True
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and not expr.keywords:
        if expr.func.id == "len":
            return True
        if expr.func.id in ("min", "max", "abs"):
            return all(_is_direct(a, direct) for a in expr.args)
    return False


def indexes_are_direct(fdef: ast.FunctionDef, loop_index: int, resolver: Any) -> bool:
    """Whether every index and every ``range()`` bound in the loop is integer
    arithmetic of the loop variables, the parameters and constants.

    Then an integer made from a float in the loop (a float stored into an
    integer array, say) can only be stored, never reach an address or a loop
    bound, and deferring a division by zero is harmless although the lowered
    code converts floats to integers.  Helpers that index or loop make it
    ``False`` (their parameters could carry such an integer).
    """
    a = fdef.args
    direct = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    for st in fdef.body[:loop_index]:
        if (isinstance(st, ast.Assign) and len(st.targets) == 1
                and isinstance(st.targets[0], ast.Name) and _is_direct(st.value, direct)):
            direct.add(st.targets[0].id)
        else:
            for node in ast.walk(st):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    direct.discard(node.id)
    loop = fdef.body[loop_index]
    body = [loop]
    # names assigned in the loop: direct when every assignment is (a fixpoint)
    assigns: dict[str, list[ast.AST | None]] = {}
    for node in ast.walk(loop):
        if isinstance(node, ast.For):
            it = node.iter
            ok = (isinstance(it, ast.Call) and resolver.is_range(it.func) is not None)
            for t in ast.walk(node.target):
                if isinstance(t, ast.Name):
                    assigns.setdefault(t.id, []).append(
                        ast.Tuple(elts=list(it.args), ctx=ast.Load()) if ok else None)
        elif isinstance(node, ast.Assign):
            for tgt in node.targets:
                if isinstance(tgt, ast.Name):
                    assigns.setdefault(tgt.id, []).append(node.value)
                elif isinstance(tgt, ast.Tuple):
                    for t in tgt.elts:
                        if isinstance(t, ast.Name):
                            assigns.setdefault(t.id, []).append(None)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
            value = (ast.BinOp(left=node.target, op=node.op, right=node.value)
                     if isinstance(node, ast.AugAssign) else node.value)
            assigns.setdefault(node.target.id, []).append(value)
        elif isinstance(node, ast.NamedExpr):
            assigns.setdefault(node.target.id, []).append(node.value)
    direct -= set(assigns)
    changed = True
    while changed:
        changed = False
        for name, values in assigns.items():
            if name not in direct and all(_is_direct(v, direct | {name}) for v in values):
                direct.add(name)
                changed = True
    for node in (n for st in body for n in ast.walk(st)):
        if isinstance(node, ast.Subscript) and not _is_direct(node.slice, direct):
            if not (isinstance(node.value, ast.Attribute) and node.value.attr == "shape"):
                return False
        if isinstance(node, ast.Call):
            if resolver.is_range(node.func) is not None:
                if not all(_is_direct(x, direct) for x in node.args):
                    return False
                continue
            helper = resolver.helper(node.func)
            if helper is not None:
                try:
                    hdef, _ = parse_function(helper)
                except (OSError, TypeError, SyntaxError):
                    return False
                if any(isinstance(n, ast.Subscript) or (isinstance(n, ast.Call) and isinstance(
                        n.func, ast.Name) and n.func.id == "range") for n in ast.walk(hdef)):
                    return False
    return True


def _divides(node: ast.AST) -> bool:
    return any(isinstance(n, (ast.BinOp, ast.AugAssign)) and isinstance(n.op, (ast.Div,
                                                                           ast.FloorDiv))
               for n in ast.walk(node))


def _unrolled(loop: ast.AST) -> bool:
    """A ``for`` over ``range(c)`` with a small literal ``c``: LLVM unrolls it
    fully, so it does not stop the loop around it from being vectorized."""
    if not isinstance(loop, ast.For) or not isinstance(loop.iter, ast.Call):
        return False
    args = loop.iter.args
    return (isinstance(loop.iter.func, ast.Name) and loop.iter.func.id == "range"
            and len(args) == 1 and isinstance(args[0], ast.Constant)
            and isinstance(args[0].value, int) and args[0].value <= 16)


def _float_accumulator(loop: ast.For | ast.While, resolver: Any) -> str | None:
    """The name of a float scalar that *loop* carries from one iteration to the
    next (``s += x / y``, ``s = s + math.exp(z)``), or None.

    LLVM does not reorder a float sum without ``fastmath``, so such a loop is not
    vectorized.  A value counts as float when it divides (``/``), holds a float
    literal or a math function's result, or is a name assigned one in the loop.
    """
    math_ids = _pure_callables() - {id(o) for o in (len, range, bool, abs, min, max)}

    def floaty(expr: ast.AST, floats: set[str]) -> bool:
        for n in ast.walk(expr):
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
                return True
            if isinstance(n, ast.Constant) and isinstance(n.value, float):
                return True
            if isinstance(n, ast.Name) and n.id in floats:
                return True
            if isinstance(n, ast.Call):
                target = resolver.value(n.func)
                if target is not None and id(target) in math_ids:
                    return True
        return False

    body = [n for st in loop.body for n in ast.walk(st)]
    floats: set[str] = set()
    for _ in range(3):  # names assigned float values, a few levels deep
        for n in body:
            if (isinstance(n, ast.Assign) and len(n.targets) == 1
                    and isinstance(n.targets[0], ast.Name) and floaty(n.value, floats)):
                floats.add(n.targets[0].id)
    for n in body:
        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name) and (
                floaty(n.value, floats)):
            return n.target.id
        if (isinstance(n, ast.Assign) and len(n.targets) == 1
                and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.BinOp)
                and any(isinstance(v, ast.Name) and v.id == n.targets[0].id
                        for v in (n.value.left, n.value.right))
                and floaty(n.value, floats)):
            return n.targets[0].id
    return None


def _nothing_to_vectorize(loop: ast.For, resolver: Any) -> str | None:
    """Why deferring the divisions of *loop* cannot help (None: it may).

    Deferral exists so that LLVM can vectorize a loop that divides.  A division
    (or a helper call, which may divide) sits in its innermost enclosing loop;
    LLVM vectorizes only innermost loops, and not one that carries a float
    accumulator.  When no division is in a loop LLVM could vectorize, the
    flag's test and OR cost a few instructions a division for nothing (15 % of
    a pairwise-energy loop, against a branch Numba predicts for free).
    """
    found: list[tuple[ast.AST, str]] = []

    def visit(node: ast.AST, inner: ast.For | ast.While) -> bool:
        """Whether a division here sits in a loop LLVM may vectorize."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.For, ast.While)) and not _unrolled(child):
                if visit(child, child):
                    return True
                continue
            site = ((isinstance(child, (ast.BinOp, ast.AugAssign))
                     and isinstance(child.op, (ast.Div, ast.FloorDiv, ast.Mod)))
                    or (isinstance(child, ast.Call) and resolver.helper(child.func) is not None))
            if site:
                nested = any(isinstance(n, (ast.For, ast.While)) and not _unrolled(n)
                             for st in inner.body for n in ast.walk(st))
                acc = None if nested else _float_accumulator(inner, resolver)
                if not nested and acc is None:
                    return True
                found.append((inner, "a nested loop" if nested else f"the float `{acc}`"))
            if visit(child, inner):
                return True
        return False

    if visit(loop, loop) or not found:
        return None
    inner, why = found[0]
    return (f"no division is in a loop LLVM can vectorize (the loop at line "
            f"{inner.lineno} holds {why}; without fastmath a float sum is not reordered), "
            "so a division by zero is raised at once, as by Numba, at no cost")


def deferral_blocker(fdef: ast.FunctionDef, loop_index: int, resolver: Any,
                     filename: str, boundscheck: bool, resolver_for: Any,
                     fastmath: Any = False) -> str | None:
    """Why the parallel loop at ``fdef.body[loop_index]`` must raise a float
    division by zero at once (None: it may be deferred to the block's end).

    Deferring is invisible to the caller when nothing between the division and
    the block's end can observe IEEE's inf or nan other than as a float: no
    ``while`` loop (a nan condition could keep it running), no exception of the
    loop's own, no call other than a known math function or a plain Python
    helper obeying the same rules, and no division in the code before or after
    the loop (which is compiled with the same model but checks no flag).  And
    it is not used where it cannot help: without *fastmath*, when no division
    is in a loop LLVM could vectorize (:func:`_nothing_to_vectorize`).
    """
    if boundscheck:
        return "boundscheck=True (an IndexError must not be raised past a division by zero)"
    loop = fdef.body[loop_index]
    header = loop.iter  # type: ignore[attr-defined]
    if _divides(header):
        return f"the loop's range divides (line {loop.lineno})"
    for st in fdef.body[:loop_index] + fdef.body[loop_index + 1:]:
        if _divides(st):
            return f"the code outside the loop divides (line {st.lineno})"
        for node in ast.walk(st):
            if isinstance(node, (ast.FunctionDef, ast.Lambda)):
                return f"a function defined outside the loop (line {node.lineno})"
            if isinstance(node, ast.Call) and resolver.helper(node.func) is not None:
                return (f"the code outside the loop calls the helper "
                        f"{ast.unparse(node.func)}() (line {node.lineno})")
    reason = _blocker_in(loop.body, resolver, set(), filename, resolver_for)  # type: ignore
    if reason is None and not fastmath:
        reason = _nothing_to_vectorize(loop, resolver)  # type: ignore[arg-type]
    return reason


# ---------------------------------------------------------------------------
# vector math through glibc's libmvec

#: LLVM callee (as Numba emits it) -> (libmvec name, arity, lanes, element type)
_F64, _F32 = ir.DoubleType(), ir.FloatType()
_UNARY = ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "asin",
          "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc",
          "cbrt")
_BINARY = ("pow", "atan2", "hypot")
_INTRINSICS = ("exp", "exp2", "log", "log2", "log10", "sin", "cos", "pow")


def _candidates() -> dict[str, tuple[str, int, int, ir.Type]]:
    out: dict[str, tuple[str, int, int, ir.Type]] = {}
    for names, arity in ((_UNARY, 1), (_BINARY, 2)):
        for name in names:
            for ty, suffix, lanes, isa in ((_F64, "", 4, "d"), (_F32, "f", 8, "d")):
                vname = f"_ZGV{isa}N{lanes}{'v' * arity}_{name}{suffix}"
                out[f"{name}{suffix}"] = (vname, arity, lanes, ty)
                if name in _INTRINSICS:
                    out[f"llvm.{name}.{'f64' if ty is _F64 else 'f32'}"] = (vname, arity, lanes, ty)
    return out


@functools.cache
def load_vector_library() -> str | None:
    """Load libmvec into the process (so that compiled and cached code can call
    it); its path, or None when it is absent or the CPU cannot run it."""
    import llvmlite.binding as ll
    import numba

    if numba.config.CPU_NAME:  # code compiled for another CPU (a portable cache)
        return None
    features = ll.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")):
        return None
    # the soname first: find_library runs `ldconfig -p` (milliseconds)
    for path in ("libmvec.so.1", ""):
        path = path or ctypes.util.find_library("mvec")
        if path is None:
            continue
        try:
            ll.load_library_permanently(path)
        except RuntimeError:
            continue
        return path
    return None


@functools.cache
def _available() -> dict[str, tuple[str, int, int, ir.Type]]:
    if load_vector_library() is None:
        return {}
    import llvmlite.binding as ll

    return {k: v for k, v in _candidates().items() if ll.address_of_symbol(v[0])}


def status() -> tuple[bool, str]:
    """Whether compiled code uses libmvec here, and in words why (not)."""
    import llvmlite.binding as ll
    import numba

    if not config.vector_math():
        return False, "off (LOOPSCALE_VECTOR_MATH=0)"
    if numba.config.CPU_NAME:
        return False, f"off (NUMBA_CPU_NAME={numba.config.CPU_NAME}: code for another CPU)"
    features = ll.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")):
        return False, "off (this CPU has no AVX2 and FMA)"
    if load_vector_library() is None:
        return False, "off (glibc's libmvec was not found)"
    names = sorted({v[0].split("_", 2)[-1] for v in _available().values() if v[3] is _F64})
    return True, (f"glibc libmvec, AVX2 ({len(names)} functions, float64 and float32: "
                  f"{', '.join(names)})")


def vector_functions() -> dict[str, tuple[str, int, int, ir.Type]]:
    """The calls replaced by libmvec's functions (empty when vector math is off)."""
    if not config.vector_math():
        return {}
    return _available()


def signature() -> str:
    """What the vector math in compiled code depends on (for cache keys)."""
    funcs = vector_functions()
    if not funcs:
        return "vector-math:off"
    return "vector-math:" + ",".join(sorted({v[0] for v in funcs.values()}))


class _VectorVariantAttrs(ir.FunctionAttributes):
    """Function attributes with LLVM string attributes (llvmlite knows none)."""

    def __init__(self, extra: list[str]) -> None:
        super().__init__()
        self.extra = extra

    def _to_list(self, ret_type: ir.Type) -> list[str]:
        return super()._to_list(ret_type) + self.extra


def _wrapper(module: ir.Module, vname: str, arity: int, lanes: int, ty: ir.Type) -> ir.Function:
    """``__ls_vm_<vname>``: the scalar function the loop vectorizer maps onto *vname*."""
    wname = "__ls_vm_" + vname.split("_", 2)[-1]
    if wname in module.globals:
        return module.globals[wname]
    vty = ir.VectorType(ty, lanes)
    vfn = module.globals.get(vname)
    if vfn is None:
        vfn = ir.Function(module, ir.FunctionType(vty, [vty] * arity), vname)
    fn = ir.Function(module, ir.FunctionType(ty, [ty] * arity), wname)
    fn.linkage = "linkonce_odr"
    mangled = f"_ZGVdN{lanes}{'v' * arity}_{wname}({vname})"
    fn.attributes = _VectorVariantAttrs(
        [f'"vector-function-abi-variant"="{mangled}"', "willreturn", "memory(none)"])
    # noinline: the vectorizer must see the scalar call to widen it
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block())
    vecs = []
    for arg in fn.args:
        v = ir.Constant(vty, ir.Undefined)
        v = b.insert_element(v, arg, ir.Constant(ir.IntType(32), 0))
        vecs.append(b.shuffle_vector(v, ir.Constant(vty, ir.Undefined),
                                     ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                 [0] * lanes)))
    res = b.call(vfn, vecs)
    b.ret(b.extract_element(res, ir.Constant(ir.IntType(32), 0)))
    return fn


def substitute_vector_math(module: ir.Module) -> int:
    """Point the module's math calls at the vector-variant wrappers; how many."""
    funcs = vector_functions()
    if not funcs:
        return 0
    replace: dict[int, ir.Function] = {}
    for g in list(module.globals.values()):
        if isinstance(g, ir.Function) and g.is_declaration and g.name in funcs:
            vname, arity, lanes, ty = funcs[g.name]
            ftype = g.function_type
            if ftype.return_type != ty or list(ftype.args) != [ty] * arity:
                continue
            replace[id(g)] = _wrapper(module, vname, arity, lanes, ty)
    if not replace:
        return 0
    count = 0
    for fn in module.functions:
        if fn.name.startswith("__ls_vm"):
            continue
        for blk in fn.blocks:
            for instr in blk.instructions:
                if isinstance(instr, ir.CallInstr) and id(instr.callee) in replace:
                    w = replace[id(instr.callee)]
                    instr.callee = w
                    instr.operands[0] = w
                    count += 1
    return count


try:
    from numba.core.codegen import JITCodeLibrary as _JITCodeLibrary
except ImportError:  # pragma: no cover - Numba moved it
    _JITCodeLibrary = None  # type: ignore[assignment,misc]


class UnsafeDeferral(NotImplementedError):
    """A function compiled with the deferred model converts a float to an
    integer: it is compiled again raising divisions by zero at once."""


def _float_to_int(module: ir.Module) -> bool:
    for fn in module.functions:
        for blk in fn.blocks:
            for instr in blk.instructions:
                if getattr(instr, "opname", None) in ("fptosi", "fptoui"):
                    return True
    return False


class _LoopscaleLibrary(_JITCodeLibrary):  # type: ignore[misc,valid-type]
    """Numba's JIT code library for loopscale's generated functions: math calls
    pointed at libmvec's functions and, for a function compiled with the
    deferred model, a last check that no float becomes an integer in it.

    The syntactic rules of :func:`deferral_blocker` refuse ``int()``,
    ``round()``, ``math.floor()``...; a conversion the syntax does not show
    (a float stored into an integer array, then read back as an index) is an
    ``fptosi`` in the lowered code, and an inf or nan from a division by zero
    would become an index before the block's end.
    """

    deferred = False
    #: the loop's indexes and range bounds are integer arithmetic of its
    #: variables and parameters (see :func:`indexes_are_direct`)
    direct = False

    def add_ir_module(self, ir_module: ir.Module) -> None:
        if self.deferred and not self.direct and _float_to_int(ir_module):
            raise UnsafeDeferral("a float is converted to an integer in the function (an "
                                 "index computed from a division by zero's inf or nan could "
                                 "reach memory outside an array before the block's end)")
        substitute_vector_math(ir_module)
        super().add_ir_module(ir_module)


@register_pass(mutates_CFG=False, analysis_only=False)
class UseLoopscaleLibrary(FunctionPass):
    """Gives the compilation a :class:`_LoopscaleLibrary` before lowering."""

    _name = "loopscale_library"

    def __init__(self) -> None:
        FunctionPass.__init__(self)

    def run_pass(self, state: Any) -> bool:
        deferred = state.flags.error_model == ERROR_MODEL
        if state.library is None and (deferred or vector_functions()):
            codegen = state.targetctx.codegen()
            state.library = _LoopscaleLibrary(codegen, state.func_id.func_qualname)
            state.library.deferred = deferred
            state.library.direct = bool(getattr(state.func_id.func, "__loopscale_direct__", False))
            state.library.enable_object_caching()
        return False


class Pipeline(CompilerBase):
    """Numba's nopython pipeline, lowering into a :class:`_LoopscaleLibrary`."""

    def define_pipelines(self) -> list[Any]:
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.add_pass_after(UseLoopscaleLibrary, NopythonTypeInference)
        pm.finalize()
        return [pm]
