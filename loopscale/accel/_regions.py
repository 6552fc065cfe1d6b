"""Parallel loops inside a sequential loop: time steps, sweeps, iterations.

A function whose top-level loop carries a dependence from one pass to the
next runs that loop in order::

    for t in range(steps):                  # each step reads the last one's u
        for i in range(1, n - 1):           # ... but these are independent
            new[i] = u[i] + k * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        u, new = new, u

A ``for`` loop directly in the body of such a top-level loop (or of a
top-level ``while``) is a *region* when it is independent across its own
iterations and nothing it assigns is read outside it.  The region is outlined
as a function of its own -- the loop alone, its free variables as parameters
-- and analysed and compiled as any decorated function (:func:`find_regions`).
The whole function is then built once more as a *driver*, in which each
region's loop becomes (:func:`driver_tree`)::

    if len(range(...)) >= __ls_gates[k]:
        __ls_call_k(len(range(...)), <free variables>)   # an object-mode block:
    else:                                                # the GIL, for the call only
        <the loop, inline>

The call runs the region at the level in force (``threads``, or ``auto``'s
choice) on the pool while the caller's compiled code waits.  The gate keeps
loops too short to gain from leaving compiled code at all: it starts at
:data:`FIRST_GATE` iterations and is raised to twice any size whose call took
less than :data:`REGION_SECONDS` (:class:`Runner`), so a short loop leaves
compiled code once, or a few times as it grows.
"""

from __future__ import annotations

import ast
import copy
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._astutil import _stmt_targets, _walk_stmts

__all__ = ["Region", "find_regions", "driver_tree", "Runner", "GATES", "FIRST_GATE"]

#: The name of the gate array in the driver (its second argument).
GATES = "__ls_gates"
#: The least number of iterations for which a region leaves compiled code at
#: first: the iterations' cost is not known (a thousand of them may take a
#: millisecond each), so every loop of two or more is tried once, and the
#: runner raises the gate above any size whose call did not take long.
FIRST_GATE = 2
#: A region call shorter than this did not gain from the pool (nor would a
#: shorter loop): loops of up to twice its size then stay inline.
REGION_SECONDS = 100e-6
OBJMODE = "__ls_objmode"
#: The compiled function the driver calls for a region (see :func:`call_source`).
CALL = "__ls_call_"


@dataclass
class Region:
    """One outlined inner loop."""

    outer: int  # index of the top-level statement in the function body
    inner: int  # index of the loop in that statement's body
    line: int  # the loop's line
    params: tuple[str, ...]  # its free variables, in order
    accel: Any  # the Accelerated function of the loop alone
    name: str  # the name the driver calls it by


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}


def _stores(stmts: Sequence[ast.stmt]) -> set[str]:
    out = {n for st in _walk_stmts(list(stmts)) for n in _stmt_targets(st)}
    out |= {n.target.id for st in stmts for n in ast.walk(st)
            if isinstance(n, ast.NamedExpr)}
    out |= {n.id for st in stmts for n in ast.walk(st)
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    return out


_PLAIN = (ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Attribute, ast.Subscript,
          ast.Load, ast.operator, ast.unaryop, ast.Slice, ast.Tuple)


def _plain(expr: ast.expr) -> bool:
    """Evaluating *expr* twice gives the same value and does nothing else
    (names, numbers, arithmetic, ``x.shape[0]``, ``len(x)``): the driver's gate
    evaluates the bounds of a region's ``range`` once more."""
    return all(isinstance(n, _PLAIN) or (
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len"
        and len(n.args) == 1 and not n.keywords) for n in ast.walk(expr))


def _is_range_loop(st: ast.stmt) -> bool:
    if not (isinstance(st, ast.For) and isinstance(st.target, ast.Name) and not st.orelse):
        return False
    it = st.iter
    return (isinstance(it, ast.Call) and not it.keywords and 1 <= len(it.args) <= 3
            and not any(isinstance(a, ast.Starred) for a in it.args)
            and all(_plain(a) for a in it.args)
            and (isinstance(it.func, ast.Name) and it.func.id in ("range", "prange")
                 or isinstance(it.func, ast.Attribute) and it.func.attr == "prange"))


_FORBIDDEN = (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.Global, ast.Nonlocal,
              ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.Try)


def _candidates(fdef: ast.FunctionDef) -> list[tuple[int, int, ast.For]]:
    out = []
    for k, top in enumerate(fdef.body):
        if not isinstance(top, (ast.For, ast.While)):
            continue
        for j, st in enumerate(top.body):
            if _is_range_loop(st) and not any(isinstance(n, _FORBIDDEN)
                                               for n in ast.walk(st)):
                out.append((k, j, st))  # type: ignore[arg-type]
    return out


def _live_after(fdef: ast.FunctionDef, loop: ast.For, names: set[str]) -> set[str]:
    """Those of *names* (assigned in *loop*) that a read outside *loop* may see
    the value of: every read counts but one inside another ``for`` loop that
    binds the name first -- as its target, or by a plain assignment among the
    statements of its body before the one that reads it (``for i in ...``
    again, a temporary ``tmp = ...`` that each of two loops assigns first)."""
    live: set[str] = set()

    def first_bound(body: list[ast.stmt], upto: int, name: str) -> bool:
        for st in body[:upto]:
            if name in _loads(st):
                return False
            if isinstance(st, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == name for t in st.targets):
                return True
        return False

    def visit(stmts: list[ast.stmt], fors: list[tuple[ast.For, list[ast.stmt], int]]) -> None:
        for st in stmts:
            if st is loop:
                continue
            # the statement's own expressions (not its nested blocks)
            for fld, value in ast.iter_fields(st):
                if fld in ("body", "orelse", "finalbody", "handlers"):
                    continue
                for v in value if isinstance(value, list) else [value]:
                    if not isinstance(v, ast.AST):
                        continue
                    for name in _loads(v) & names:
                        covered = isinstance(st, ast.For) and fld != "iter" and name in {
                            n.id for n in ast.walk(st.target) if isinstance(n, ast.Name)}
                        for f, body, at in reversed(fors):
                            if covered:
                                break
                            covered = (name in {n.id for n in ast.walk(f.target)
                                                if isinstance(n, ast.Name)}
                                       or first_bound(body, at, name))
                        if not covered:
                            live.add(name)
            for fld in ("body", "orelse", "finalbody"):
                sub = getattr(st, fld, None)
                if isinstance(sub, list):
                    inner = fors
                    if isinstance(st, ast.For) and fld == "body":
                        inner = [*fors, (st, sub, 0)]
                    visit_block(sub, inner)
            for h in getattr(st, "handlers", []):
                visit_block(h.body, fors)

    def visit_block(stmts: list[ast.stmt], fors: list[tuple[ast.For, list[ast.stmt], int]]
                    ) -> None:
        # each statement sees, for the innermost loop whose body this is, its own index
        for idx, st in enumerate(stmts):
            here = fors
            if fors and fors[-1][1] is stmts:
                f, body, _ = fors[-1]
                here = [*fors[:-1], (f, body, idx)]
            visit([st], here)

    visit_block(fdef.body, [])
    return live


def find_regions(func: types.FunctionType, fdef: ast.FunctionDef,
                 make: Callable[[types.FunctionType], Any]) -> tuple[list[Region], list[str]]:
    """The regions of *func* (whose tree, after loop rewriting, is *fdef*), each
    compiled through *make* (``Accelerated`` with the function's options), and
    why other candidate loops are not regions (lines of text for explain)."""
    code = func.__code__
    a = fdef.args
    params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    locals_ = params | _stores(fdef.body)
    regions: list[Region] = []
    notes: list[str] = []
    for outer, inner, loop in _candidates(fdef):
        stored = _stores([loop])
        loaded = _loads(loop) & locals_
        if loaded & set(code.co_freevars) or stored & set(code.co_freevars):
            continue
        live = _live_after(fdef, loop, stored)
        if live:
            notes.append(f"inner loop at line {loop.lineno}: in order with its outer loop: "
                         f"it assigns {', '.join(sorted(live))}, read outside it")
            continue
        free = tuple(sorted(loaded - stored))
        name = f"__ls_region_{len(regions)}"
        fn = _outline(func, loop, free)
        acc = make(fn)
        try:
            analysis = acc.analysis
        except Exception as exc:  # noqa: BLE001 - the loop stays inline
            notes.append(f"inner loop at line {loop.lineno}: not analysed ({exc})")
            continue
        if not analysis.parallel or analysis.loop_index != 0:
            why = analysis.reason or "its iterations are not independent"
            notes.append(f"inner loop at line {loop.lineno}: in order: {why}")
            continue
        if analysis.reductions:
            notes.append(f"inner loop at line {loop.lineno}: in order with its outer loop: "
                         f"its reduction{'s' if len(analysis.reductions) > 1 else ''} "
                         f"({', '.join(analysis.reductions)}) would be combined per call")
            continue
        regions.append(Region(outer, inner, loop.lineno, free, acc, name))
    return regions, notes


def _outline(func: types.FunctionType, loop: ast.For, params: tuple[str, ...]
             ) -> types.FunctionType:
    """A function of *params* whose body is *loop*, at the loop's own lines of
    the user's file (so that its messages point there)."""
    args = ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in params], vararg=None,
                         kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    fdef = ast.FunctionDef(name=func.__name__, args=args, body=[copy.deepcopy(loop)],
                           decorator_list=[], returns=None, type_comment=None)
    if hasattr(ast, "TypeAlias"):  # (3.12: type parameters)
        fdef.type_params = []
    ast.copy_location(fdef, loop)
    fdef.end_lineno = loop.end_lineno
    ast.fix_missing_locations(fdef)
    module = compile(ast.Module(body=[fdef], type_ignores=[]), func.__code__.co_filename,
                     "exec")
    fcode = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    fn = types.FunctionType(fcode, func.__globals__, func.__name__)
    fn.__qualname__ = func.__qualname__
    fn.__module__ = func.__module__
    fn.__loopscale_source__ = (fdef, 0)  # type: ignore[attr-defined]
    return fn


def driver_tree(fdef: ast.FunctionDef, regions: Sequence[Region]) -> ast.FunctionDef:
    """*fdef* with each region's loop behind its gate (see the module's text)."""
    out = copy.deepcopy(fdef)
    for k, reg in enumerate(regions):
        top = out.body[reg.outer]
        loop = top.body[reg.inner]  # type: ignore[attr-defined]
        trips = ast.Call(ast.Name("len", ast.Load()), [copy.deepcopy(loop.iter)], [])
        call = ast.Expr(ast.Call(ast.Name(f"{CALL}{k}", ast.Load()),
                                 [trips, *(ast.Name(p, ast.Load()) for p in reg.params)], []))
        gated = ast.If(
            test=ast.Compare(copy.deepcopy(trips), [ast.GtE()],
                             [ast.Subscript(ast.Name(GATES, ast.Load()), ast.Constant(k),
                                            ast.Load())]),
            body=[call], orelse=[loop])
        for node in ast.walk(gated):
            if node is not loop and not any(node is n for n in ast.walk(loop)):
                ast.copy_location(node, loop)
        top.body[reg.inner] = gated  # type: ignore[attr-defined]
    return out


def call_source(k: int, reg: Region) -> str:
    """The compiled function the driver calls for region *k*: one object-mode
    block that calls its runner (one block per function: Numba 0.68 emits
    invalid LLVM IR for two object-mode blocks in one loop)."""
    params = ", ".join(("__ls_n", *reg.params))
    return (f"def {CALL}{k}({params}):\n"
            f"    with {OBJMODE}():\n"
            f"        {reg.name}({params})\n")


class Runner:
    """What the driver calls for region *k*: the region's function at the level in
    force, timed to keep loops that did not gain inline from then on."""

    def __init__(self, accel: Any, k: int, gates: np.ndarray) -> None:
        self.accel = accel
        self.k = k
        self.gates = gates
        self.calls = 0

    def __call__(self, trips: int, *args: Any) -> None:
        t0 = time.perf_counter()
        try:
            self.accel(*args)
        except BaseException as exc:
            try:  # (its message is located already: the driver raises it as it is)
                exc._loopscale_region = True  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - an exception type without attributes
                pass
            raise
        self.calls += 1
        if time.perf_counter() - t0 < REGION_SECONDS:
            self.gates[self.k] = max(int(self.gates[self.k]), 2 * int(trips) + 1)
