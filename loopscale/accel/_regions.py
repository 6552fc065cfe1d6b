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
loops that do not gain from the pool in compiled code: it starts at
:data:`FIRST_GATE` iterations and is raised above any size at which the pool
was measured not to gain (:class:`Runner`), so such a loop leaves compiled
code a few times, then runs inline.

"Inline" is a compiled call of the region's own serial code
(:func:`serial_call`), and so is each region in the function's fused serial
code (:func:`serial_tree`, the ``serial`` level): the region adds a float sum
it hands back over its fixed blocks, in their order, whoever runs the pass --
that code, the pool, the ranks -- so every level gives the same bits.
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

from .. import config
from ._astutil import _plain, _stmt_targets, _walk_stmts

__all__ = ["Region", "find_regions", "driver_tree", "serial_tree", "serial_call",
           "python_driver", "body_of", "loop_of", "Runner", "GATES", "FIRST_GATE", "SERIAL"]

#: The name of the gate array in the driver (its second argument).
GATES = "__ls_gates"
#: The least number of iterations for which a region leaves compiled code at
#: first: the iterations' cost is not known (a thousand of them may take a
#: millisecond each), so every loop of two or more is tried once, and the
#: runner raises the gate above any size whose call did not take long.
FIRST_GATE = 2
#: A region call on the pool that takes more than this share of its time on
#: one core did not gain: see :class:`Runner`.
GAIN = 0.85
#: Timed runs on one core per size (see :class:`Runner`).
PROBES = 2
#: A loop kept inline is tried on the pool again after this many passes, then
#: twice as many after each retry that lost, up to :data:`RETRY_MOST`: a busy
#: machine may have made the pool look slow (two slow passes of a warm-up kept
#: a time loop's force loop inline for the 90 passes of a benchmark when the
#: first retry came after 64).
RETRY_FIRST = 8
RETRY_MOST = 4096
#: A loop kept inline (two passes on the pool lost) whose pass took less than
#: this on one core, as the probes time it (the region's call from Python
#: included: 10-25 µs of it), is not tried again at that size (the countdown is
#: set to :data:`NEVER`): a pool wakes its threads, splits the work and
#: combines it in about as long as the work itself, so no quieter moment
#: makes such a pass gain against the loop inline, and a retry's call that
#: beats the probe's call beats a call, not the inline loop.  Not at a
#: collective level, where every rank must retry at the same pass and each
#: has its own timings.
HOPELESS_SECONDS = 50e-6
NEVER = 1 << 62
#: At a collective level, one judged pass in this many (see :data:`AGREED`).
RETRY = 64
#: At a collective level (``mpi``), the passes of a size after the probes whose
#: verdict the ranks agree on (one ``Allreduce`` each): the first this many,
#: then one every :data:`RETRY`; the verdict stands in between.
AGREED = 4
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
    #: what it assigns that is read after it: its reductions (and the payloads
    #: of a min/max), returned by the region's function and assigned back
    outs: tuple[str, ...] = ()
    #: deeper in the top-level loop's body (in an ``if``, in a loop that runs in
    #: order): ``(field, index)`` steps from that body to the block holding it
    branch: tuple[tuple[str, int], ...] = ()


def _loads(node: ast.AST) -> set[str]:
    """Names *node* reads (``v += 1`` reads ``v``)."""
    out = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
           and isinstance(n.ctx, ast.Load)}
    out |= {n.target.id for n in ast.walk(node)
            if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)}
    return out


def _stores(stmts: Sequence[ast.stmt]) -> set[str]:
    out = {n for st in _walk_stmts(list(stmts)) for n in _stmt_targets(st)}
    out |= {n.target.id for st in stmts for n in ast.walk(st)
            if isinstance(n, ast.NamedExpr)}
    out |= {n.id for st in stmts for n in ast.walk(st)
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    return out


def _read_first(loop: ast.For) -> set[str]:
    """Names an iteration of *loop* may read before it assigns them (in the order
    of its statements): what it carries from before the loop, or from the
    previous iteration (an accumulator)."""
    stored: set[str] = {loop.target.id} if isinstance(loop.target, ast.Name) else set()
    first: set[str] = set()
    for st in _walk_stmts(loop.body):
        own = [v for fld, value in ast.iter_fields(st)
               if fld not in ("body", "orelse", "finalbody", "handlers")
               for v in (value if isinstance(value, list) else [value])
               if isinstance(v, ast.AST)]
        for part in own:
            first |= _loads(part) - stored
        if isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            first |= {st.target.id} - stored  # (`s += e` reads `s`)
        stored |= set(_stmt_targets(st))
    return first


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


def body_of(tree: ast.FunctionDef, reg: Region) -> list[ast.stmt]:
    """The list of statements that holds *reg*'s loop in *tree* (the function's
    body for a top-level loop, else its top-level loop's)."""
    if reg.outer < 0:
        return tree.body
    holder: list[ast.stmt] = tree.body[reg.outer].body  # type: ignore[attr-defined]
    for field, index in reg.branch:
        holder = getattr(holder[index], field)
    return holder


def loop_of(tree: ast.FunctionDef, reg: Region) -> ast.stmt:
    """*reg*'s loop in *tree*."""
    return body_of(tree, reg)[reg.inner]


def _candidates(fdef: ast.FunctionDef, main: int | None = None
                ) -> list[tuple[int, int, ast.For, tuple[tuple[str, int], ...],
                                tuple[int, ...]]]:
    """Loops that may be regions: the top-level range loops other than *main*
    (the function's own loop, which runs in order), and the range loops inside a
    top-level loop -- in its body, in the branches of an ``if`` there
    (``if t % 10 == 0:`` diagnostics), or inside a loop there that runs in
    order (sub-steps) -- as ``(outer, inner, loop, branch, around)``: *outer*
    -1 for a top-level loop (see :class:`Region`), *around* the ids of the
    candidate loops that hold it (a loop inside a region runs in it)."""
    def fit(st: ast.stmt) -> bool:
        return _is_range_loop(st) and not any(isinstance(n, _FORBIDDEN) for n in ast.walk(st))

    out: list[tuple[int, int, ast.For, tuple[tuple[str, int], ...], tuple[int, ...]]] = []

    def walk(stmts: list[ast.stmt], k: int, path: tuple[tuple[str, int], ...],
             around: tuple[int, ...]) -> None:
        for j, st in enumerate(stmts):
            if fit(st):
                out.append((k, j, st, path, around))  # type: ignore[arg-type]
                walk(st.body, k, (*path, ("body", j)), (*around, id(st)))  # type: ignore
            elif isinstance(st, ast.If):
                for field in ("body", "orelse"):
                    walk(getattr(st, field), k, (*path, (field, j)), around)
            elif isinstance(st, (ast.For, ast.While)) and not st.orelse:
                walk(st.body, k, (*path, ("body", j)), around)

    for k, top in enumerate(fdef.body):
        here: tuple[int, ...] = ()
        if k != main and fit(top):
            out.append((-1, k, top, (), ()))  # type: ignore[arg-type]
            here = (id(top),)
        if isinstance(top, (ast.For, ast.While)):
            walk(top.body, k, (), here)
    return out


@dataclass
class _ElseOf:
    """The ``else`` block of *loop* (it runs after the loop's last pass)."""

    loop: ast.stmt


def _live_after(fdef: ast.FunctionDef, loop: ast.For, names: set[str]) -> set[str]:
    """Those of *names* (assigned in *loop*) that a read outside *loop* may see
    the value of.  A read is not reached when, going back from it through the
    statements of the blocks around it (innermost first), a plain assignment of
    the name comes before *loop* does, or a ``for`` loop binds it as its target
    (``for i in ...`` again, a temporary each loop assigns first); a ``for``
    block that holds *loop* after the read carries *loop*'s value to it from
    its previous pass."""
    live: set[str] = set()
    # (statements and expressions only: the parser shares one Load(), one Add()...)
    holds = {id(n) for n in ast.walk(loop) if isinstance(n, (ast.stmt, ast.expr))}

    def has_loop(st: ast.AST) -> bool:
        return any(id(n) in holds for n in ast.walk(st) if isinstance(n, (ast.stmt, ast.expr)))

    def assigns(st: ast.stmt, name: str) -> bool:
        return isinstance(st, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in st.targets)

    def reached(name: str, levels: list[tuple[Any, list[ast.stmt], int]]) -> bool:
        for owner, body, at in reversed(levels):
            for st in reversed(body[:at]):
                if has_loop(st):
                    return True
                if assigns(st, name):
                    return False
            if isinstance(owner, _ElseOf):
                if has_loop(owner.loop):
                    return True  # the `else` of a loop runs after its body
                continue
            if isinstance(owner, ast.For) and name in {
                    n.id for n in ast.walk(owner.target) if isinstance(n, ast.Name)}:
                return False  # bound by this loop's own header, before the statements
            if isinstance(owner, (ast.For, ast.While)) and has_loop(owner):
                return True  # its previous pass ran the loop after this read
        return True  # (the function's start: a value from before, or none)

    def visit(stmts: list[ast.stmt], levels: list[tuple[Any, list[ast.stmt], int]]) -> None:
        for idx, st in enumerate(stmts):
            here = [*levels[:-1], (levels[-1][0], levels[-1][1], idx)]
            if st is loop:
                continue
            for fld, value in ast.iter_fields(st):
                if fld in ("body", "orelse", "finalbody", "handlers"):
                    continue
                for v in value if isinstance(value, list) else [value]:
                    if not isinstance(v, ast.AST):
                        continue
                    if isinstance(st, ast.While) and fld == "test" and has_loop(st):
                        live.update(_loads(v) & names)  # tested again after each pass
                        continue
                    for name in _loads(v) & names:
                        if name not in live and reached(name, here):
                            live.add(name)
            for fld in ("body", "orelse", "finalbody"):
                sub = getattr(st, fld, None)
                if isinstance(sub, list):
                    # the block's statements come after those before `st` in
                    # the enclosing body; a loop's body also after its own end,
                    # and a loop's `else` after its body
                    owner = (st if fld == "body" else _ElseOf(st) if fld == "orelse"
                             and isinstance(st, (ast.For, ast.While)) else None)
                    visit(sub, [*here, (owner, sub, 0)])
            for h in getattr(st, "handlers", []):
                visit(h.body, [*here, (None, h.body, 0)])

    # the loop's own bounds, evaluated again at the next pass of a loop around it
    if any(isinstance(n, (ast.For, ast.While)) and n is not loop and has_loop(n)
           for n in ast.walk(fdef)):
        live |= _loads(loop.iter) & names
    # a function or lambda defined in the body may run after the loop
    for node in ast.walk(fdef):
        if node is not fdef and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda)):
            live |= _loads(node) & names
    visit(fdef.body, [(None, fdef.body, 0)])
    return live


def find_regions(func: types.FunctionType, fdef: ast.FunctionDef,
                 make: Callable[[types.FunctionType], Any], main: int | None = None
                 ) -> tuple[list[Region], list[str]]:
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
    taken: set[int] = set()  # (ids of) loops that are regions themselves
    for outer, inner, loop, branch, around in _candidates(fdef, main):
        if taken.intersection(around):
            continue  # (it runs inside a region, on the pool)
        stored = _stores([loop])
        loaded = _loads(loop) & locals_
        if loaded & set(code.co_freevars) or stored & set(code.co_freevars):
            continue
        live = _live_after(fdef, loop, stored)
        what = "inner loop" if outer >= 0 else "loop"
        if loop.target.id in live:  # type: ignore[attr-defined]
            notes.append(f"{what} at line {loop.lineno}: in order with the function's loop: "
                         f"it assigns {', '.join(sorted(live))}, read outside it")
            continue
        outs = tuple(sorted(live))
        # (a value read after the loop comes in with its value before it; its
        # bounds are read before anything in it is assigned; an accumulator the
        # loop reads before assigning, `if d < best: best = d; at = i`, comes in
        # with its value before the loop, even when only its payload is read after)
        free = tuple(sorted((loaded - stored) | live | (_loads(loop.iter) & locals_)
                            | (_read_first(loop) & stored & locals_)))
        name = f"__ls_region_{len(regions)}"
        fn = _outline(func, loop, free, outs)
        acc = make(fn)
        try:
            analysis = acc.analysis
        except Exception as exc:  # noqa: BLE001 - the loop stays inline
            notes.append(f"{what} at line {loop.lineno}: not analysed ({exc})")
            continue
        if not analysis.parallel or analysis.loop_index != 0:
            if outer >= 0:  # (a top-level loop's reason is the function's own text)
                why = analysis.reason or "its iterations are not independent"
                notes.append(f"inner loop at line {loop.lineno}: in order: {why}")
            continue
        combined = set(analysis.reductions) | {
            p for pays in analysis.reduction_payloads.values() for p in pays}
        if set(outs) - combined:
            notes.append(f"{what} at line {loop.lineno}: in order with the function's loop: "
                         f"it assigns {', '.join(sorted(set(outs) - combined))}, read "
                         "outside it")
            continue
        regions.append(Region(outer, inner, loop.lineno, free, acc, name, outs, branch))
        taken.add(id(loop))
    return regions, notes


def _outline(func: types.FunctionType, loop: ast.For, params: tuple[str, ...],
             outs: tuple[str, ...] = ()) -> types.FunctionType:
    """A function of *params* whose body is *loop* (then ``return`` *outs*: one
    value, or a tuple), at the loop's own lines of the user's file (so that its
    messages point there)."""
    body: list[ast.stmt] = [copy.deepcopy(loop)]
    if outs:
        value = (ast.Name(outs[0], ast.Load()) if len(outs) == 1 else
                 ast.Tuple([ast.Name(o, ast.Load()) for o in outs], ast.Load()))
        body.append(ast.Return(value))
        for node in ast.walk(body[-1]):
            ast.copy_location(node, loop)
            node.lineno = node.end_lineno = loop.end_lineno  # type: ignore[attr-defined]
    fdef = _function_def(func.__name__, params, body, loop)
    fdef.end_lineno = loop.end_lineno
    fn = _defined(fdef, func)
    fn.__loopscale_source__ = (fdef, 0)  # type: ignore[attr-defined]
    return fn


def _function_def(name: str, params: Sequence[str], body: list[ast.stmt],
                  where: ast.AST) -> ast.FunctionDef:
    """``def name(params): body``, at *where*'s place in the user's file."""
    from ._codegen import _simple_args

    fdef = ast.FunctionDef(name=name, args=_simple_args(list(params)), body=body,
                           decorator_list=[], returns=None, type_comment=None)
    if hasattr(ast, "TypeAlias"):  # (3.12: type parameters)
        fdef.type_params = []
    ast.copy_location(fdef, where)
    return fdef


def _defined(fdef: ast.FunctionDef, func: types.FunctionType) -> types.FunctionType:
    """The function *fdef* defines, compiled in *func*'s file, with its globals,
    named as *func* is."""
    ast.fix_missing_locations(fdef)
    module = compile(ast.Module(body=[fdef], type_ignores=[]), func.__code__.co_filename,
                     "exec")
    code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    fn = types.FunctionType(code, func.__globals__, fdef.name)
    fn.__qualname__ = func.__qualname__
    fn.__module__ = func.__module__
    return fn


def _handing_back(reg: Region, value: ast.expr) -> ast.stmt:
    """``value`` as a statement that assigns what *reg* hands back (its outs), or
    as an expression statement when it hands back nothing."""
    if not reg.outs:
        return ast.Expr(value)
    target = (ast.Name(reg.outs[0], ast.Store()) if len(reg.outs) == 1 else
              ast.Tuple([ast.Name(o, ast.Store()) for o in reg.outs], ast.Store()))
    return ast.Assign(targets=[target], value=value)


#: The compiled serial code of region *k* in generated code (``__ls_rs_<k>``),
#: called with the error-state slots first.
SERIAL = "__ls_rs_"


def serial_call(k: int, reg: Region, loop: ast.stmt) -> ast.stmt:
    """``outs = __ls_rs_k(__ls_sta, params)``: region *k* run by its own compiled
    serial code, at *loop*'s place.  Its blocks and the order it combines their
    reductions are those of the region's parallel runs, so a float sum it hands
    back is the same whichever ran: the function's serial code, a pass kept
    inline, the pool, the ranks."""
    value = ast.Call(ast.Name(f"{SERIAL}{k}", ast.Load()),
                     [ast.Name("__ls_sta", ast.Load()),
                      *(ast.Name(p, ast.Load()) for p in reg.params)], [])
    call = _handing_back(reg, value)
    for node in ast.walk(call):
        ast.copy_location(node, loop)
    return call


def serial_tree(fdef: ast.FunctionDef, regions: Sequence[Region]) -> ast.FunctionDef:
    """*fdef* with each region's loop replaced by :func:`serial_call`: the fused
    serial code of a function with regions."""
    out = copy.deepcopy(fdef)
    for k, reg in enumerate(regions):
        holder = body_of(out, reg)
        holder[reg.inner] = serial_call(k, reg, holder[reg.inner])
    return out


def driver_tree(fdef: ast.FunctionDef, regions: Sequence[Region],
                serial_calls: bool = False) -> ast.FunctionDef:
    """*fdef* with each region's loop behind its gate (see the module's text);
    with *serial_calls*, a pass kept below the gate runs the region's compiled
    serial code (:func:`serial_call`) instead of the loop inline."""
    out = copy.deepcopy(fdef)
    for k, reg in enumerate(regions):
        holder = body_of(out, reg)
        original = holder[reg.inner]
        loop = serial_call(k, reg, original) if serial_calls else original
        trips = ast.Call(ast.Name("len", ast.Load()), [copy.deepcopy(original.iter)], [])
        value = ast.Call(ast.Name(f"{CALL}{k}", ast.Load()),
                         [trips, *(ast.Name(p, ast.Load()) for p in reg.params)], [])
        call = _handing_back(reg, value)
        def slot(i: int, ctx: ast.expr_context) -> ast.Subscript:
            return ast.Subscript(ast.Name(GATES, ast.Load()), ast.Constant(i), ctx)

        # below the gate, the loop runs inline, but when its countdown (in the
        # slot after the gates) runs out the runner is tried again
        retry = [ast.AugAssign(slot(len(regions) + k, ast.Store()), ast.Sub(), ast.Constant(1)),
                 ast.If(test=ast.Compare(slot(len(regions) + k, ast.Load()), [ast.LtE()],
                                         [ast.Constant(0)]),
                        body=[copy.deepcopy(call)], orelse=[loop])]
        gated = ast.If(
            test=ast.Compare(copy.deepcopy(trips), [ast.GtE()], [slot(k, ast.Load())]),
            body=[call], orelse=retry)
        for node in ast.walk(gated):
            if node is not loop and not any(node is n for n in ast.walk(loop)):
                ast.copy_location(node, loop)
        holder[reg.inner] = gated
    return out


def python_driver(func: types.FunctionType, fdef: ast.FunctionDef,
                  regions: Sequence[Region]) -> types.FunctionType:
    """*func* as Python, with each region's loop replaced by a call of the
    region's own decorated function (``outs = region(params)``): what runs on
    every rank when the function is called with distributed arrays, whose rows
    compiled code cannot reach.  Each region's call is then a distributed call
    of its own (halos exchanged, its rows written where they live, its
    reductions combined over every rank); the code between runs as Python, on
    every rank alike (see ``_distributed.check_regions`` for what it may do
    with a distributed array)."""
    out = copy.deepcopy(fdef)
    out.decorator_list = []
    for reg in regions:
        holder = body_of(out, reg)
        loop = holder[reg.inner]
        value = ast.Call(ast.Name(reg.name, ast.Load()),
                         [ast.Name(p, ast.Load()) for p in reg.params], [])
        call = _handing_back(reg, value)
        for node in ast.walk(call):
            ast.copy_location(node, loop)
        holder[reg.inner] = call
    from ._iteration import SEQLEN

    made = [reg.name for reg in regions] + [SEQLEN] + list(func.__code__.co_freevars)
    maker = _function_def("__ls_make", made,
                          [out, ast.Return(ast.Name(out.name, ast.Load()))], fdef)
    make = _defined(maker, func)
    cells = [c.cell_contents for c in func.__closure__ or ()]
    fn: types.FunctionType = make(*[reg.accel for reg in regions], len, *cells)
    fn.__qualname__ = func.__qualname__
    fn.__module__ = func.__module__
    return fn


#: The name of the Numba type of a region's *outs* in its call's namespace.
OUT_TYPE = "__ls_out_type"


def call_source(k: int, reg: Region) -> str:
    """The compiled function the driver calls for region *k*: one object-mode
    block that calls its runner (one block per function: Numba 0.68 emits
    invalid LLVM IR for two object-mode blocks in one loop), and returns what
    the region returns, of the type :data:`OUT_TYPE` (found by typing the
    fused serial code for the call's arguments)."""
    params = ", ".join(("__ls_n", *reg.params))
    if not reg.outs:
        return (f"def {CALL}{k}({params}):\n"
                f"    with {OBJMODE}():\n"
                f"        {reg.name}({params})\n")
    return (f"def {CALL}{k}({params}):\n"
            f"    with {OBJMODE}(__ls_out={OUT_TYPE}):\n"
            f"        __ls_out = {reg.name}({params})\n"
            f"    return __ls_out\n")


class Runner:
    """What the driver calls for region *k*: the region's function at the level in
    force, with the loops that do not gain from the pool kept inline.

    The first :data:`PROBES` calls at each size (a power-of-two bucket of the
    trip count) run the region on one core, timed: its cost per iteration (the
    least of them: the first may include compiling it).  Later calls run it
    at the level in force; the first of them is not judged (it starts what the
    level starts); when two in a row take more than :data:`GAIN` of
    what one core would (waking the pool, sharing a small array's cache lines
    between cores and the call itself cost more than the split saves), the
    gate is raised above that size: loops up to twice as long stay inline in
    the driver's compiled code, and are tried on the pool again after
    :data:`RETRY_FIRST` passes, twice as long after each retry that lost (up
    to :data:`RETRY_MOST`); the gate comes down again when one gains.
    """

    def __init__(self, accel: Any, k: int, gates: np.ndarray,
                 collective_gates: np.ndarray | None = None) -> None:
        self.accel = accel
        self.k = k
        self.gates = gates
        #: What a call at a collective level runs through, with gates and timings
        #: of its own (the driver then reads *collective_gates*): a rank that
        #: called the function alone first (``level("threads")`` on rank 0, a
        #: task of ``distribute.map``) has probed and judged its loops there, and
        #: would take another path through the driver than the other ranks.
        self.collective = (None if collective_gates is None
                           else Runner(accel, k, collective_gates))
        self.calls = 0  # calls that ran on the pool (or at the level in force)
        self.serial_cost: dict[int, float] = {}  # size bucket -> seconds per iteration
        self.probes: dict[int, int] = {}  # size bucket -> runs on one core, timed
        self.failed_retries = 0
        self.misses: dict[int, int] = {}  # size bucket -> calls in a row that did not gain
        self.judged: dict[int, int] = {}  # size bucket -> calls at a collective level
        self.warmed: set[int] = set()  # size buckets whose first call at the level ran

    def converting(self, converters: Sequence[Any]) -> Callable[..., Any]:
        """This runner, giving each argument the NumPy scalar type of
        *converters* (None: as it comes): object mode boxes a float32 as a
        Python float, which the region would compute with as a float64."""
        if not any(c is not None for c in converters):
            return self

        def call(trips: int, *args: Any) -> Any:
            return self(trips, *[a if c is None else c(a)
                                 for c, a in zip(converters, args, strict=True)])

        return call

    def _agreement(self) -> Callable[[bool], bool] | None:
        """At a collective level (``mpi``), where every rank runs the driver and
        must take the same path through it: the executor's ``agree_any`` (a
        region that lost on any rank is kept inline on every rank; timings
        differ between ranks).  A collective executor without one: never
        kept inline.  None at the other levels.  The executor is the one the
        region's passes run on (``Accelerated._region_executor_now``, which
        keeps it per level setting and per whether collectives are allowed)."""
        find = getattr(self.accel, "_region_executor_now", None)
        executor = find() if find is not None else None
        if executor is None or not getattr(executor, "collective", False):
            return None
        return getattr(executor, "agree_any", None) or (lambda _missed: False)

    def __call__(self, trips: int, *args: Any) -> Any:
        agree = self._agreement()
        if agree is not None and self.collective is not None:
            return self.collective._run(int(trips), args, agree)
        return self._run(int(trips), args, agree)

    def _run(self, trips: int, args: tuple[Any, ...],
             agree: Callable[[bool], bool] | None) -> Any:
        bucket = trips.bit_length()
        cost = self.serial_cost.get(bucket)
        probe = self.probes.get(bucket, 0) < PROBES
        t0 = time.perf_counter()
        try:
            if probe:
                with config.level("serial"):
                    out = self.accel(*args)
            else:  # (a region's Accelerated function: its call as a region)
                call = getattr(self.accel, "_call_region", None)
                out = self.accel(*args) if call is None else call(args)
        except BaseException as exc:
            try:  # (its message is located already: the driver raises it as it is)
                exc._loopscale_region = True  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - an exception type without attributes
                pass
            raise
        spent = time.perf_counter() - t0
        if probe:  # (the least of the probes: the first may include compiling)
            self.probes[bucket] = self.probes.get(bucket, 0) + 1
            per = spent / max(trips, 1)
            self.serial_cost[bucket] = per if cost is None else min(cost, per)
            return out
        assert cost is not None
        self.calls += 1
        if bucket not in self.warmed:
            # (the first call at the level starts the pool, meets the other ranks
            # for the first time...: 12.6 ms against 3.8 ms for the passes after
            # it, for n-body's forces on two ranks; judged, it and one slow pass
            # kept the loop inline for 64 passes)
            self.warmed.add(bucket)
            return out
        retried = trips < int(self.gates[self.k])
        countdown = len(self.gates) // 2 + self.k
        missed = spent > GAIN * cost * trips
        if agree is not None:
            seen = self.judged.get(bucket, 0)
            self.judged[bucket] = seen + 1
            if seen >= AGREED and seen % RETRY and not retried:
                return out  # (not judged: see the class's text)
            missed = agree(missed)
        # (no pool can split so little work with a gain: a 5-iteration dot
        # product inside a Gram matrix's j loop, retried every 4096 of its
        # 180,000 passes, cost 60 % of the serial time, and once a retry's call
        # beat the probe's, both mostly the call itself, every pass went to
        # the pool: 2-5x slower than serial)
        hopeless = agree is None and cost * trips < HOPELESS_SECONDS
        if missed:
            self.misses[bucket] = self.misses.get(bucket, 0) + 1
            if self.misses[bucket] >= 2 or retried:
                self.gates[self.k] = max(int(self.gates[self.k]), 2 * trips + 1)
                # (a retry that lost waits twice as long for the next, up to 64x)
                self.failed_retries += retried
                self.gates[countdown] = NEVER if hopeless else min(
                    RETRY_FIRST << min(self.failed_retries, 20), RETRY_MOST)
        else:
            self.misses[bucket] = 0
            if retried and hopeless:  # (beat only the probe's own call: not a gain)
                self.gates[countdown] = NEVER
            elif retried:  # (the machine was busy, or is quieter now)
                self.gates[self.k] = min(int(self.gates[self.k]), trips)
                self.failed_retries = 0
        return out
