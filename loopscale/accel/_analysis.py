"""Loop analysis: which loop of a function may run in parallel, and why not.

The analysis is a pure function of the function's syntax tree and the names it
can resolve (helpers, ``prange``); it never runs the code.  It picks one
top-level ``for v in range(...)`` loop of the function body (the most deeply
nested one, the first on ties) and proves its iterations independent by the
rules of DESIGN.md:

*Arrays.*  Every array written in the loop must be indexed, in some position
``d``, by the loop variable (``a[i]``, ``a[i, j]``, ``a[j, i]``, ``a[i + 1]``),
and every access of that array in the loop (reads, writes, through local views
such as ``row = a[i]``, or through helpers) must use the same expression in
position ``d``.  Then iteration ``i`` only touches its own slice of the array.
A written array that is also passed whole to a function, read at another
index, or written at an index that is not the loop variable (a scatter) makes
the loop sequential.

*Scalars.*  Every name assigned in the body is either private (assigned before
it is read in each iteration, and not read after the loop) or a reduction
(``s += e``, ``s -= e``, ``s *= e``, ``s = s + e``, ``s = min(s, e)``,
``s = max(s, e)``, ``if e > s: s = e``), and a reduction variable is read
nowhere else in the loop.  Anything else carries a value from one iteration
to the next.

*Control flow.*  ``return``, ``yield`` or a ``break`` out of the loop make it
sequential (``break`` in an inner loop is fine).

*Helpers.*  A plain Python function called in the loop is analysed in turn:
the parameters it writes count as writes of the argument passed (an aligned
write when the argument is ``a[i]``, a write anywhere when it is ``a``).

``loopscale.prange`` is the user's assertion that the array accesses are
independent; scalars and control flow are still checked, because a wrong
answer there cannot be fixed by assertion.

The result is a :class:`LoopAnalysis`, inspectable as ``f.analysis``.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ArrayRole", "LoopAnalysis", "analyse_function", "Resolver"]

#: NumPy (and builtin) callables that return fresh arrays, never views.
_ALLOCATORS = frozenset({
    "zeros", "empty", "ones", "full", "zeros_like", "empty_like", "ones_like", "full_like",
    "arange", "linspace", "copy", "array", "eye", "identity", "sqrt", "exp", "log", "abs",
    "sin", "cos", "tan", "dot", "outer", "cross", "sum", "prod", "mean", "cumsum", "sort",
    "argsort", "concatenate", "stack", "hstack", "vstack", "where", "maximum", "minimum",
})
#: Array methods that modify the array they are called on.
_MUTATING_METHODS = frozenset({"fill", "sort", "put", "itemset", "resize", "partition", "setfield",
                               "byteswap", "setflags"})
#: Array attributes that read only metadata.
_META_ATTRS = frozenset({"shape", "size", "ndim", "dtype", "itemsize", "nbytes", "strides"})
_META_FUNCS = frozenset({"len", "range", "prange", "shape", "isinstance"})

_REDUCTION_OPS = {ast.Add: "+", ast.Sub: "+", ast.Mult: "*"}


@dataclass(frozen=True)
class ArrayRole:
    """How one array (a parameter or a local) is used by the analysed loop.

    Attributes
    ----------
    read, written : bool
        Whether the loop reads / writes its elements.
    access : str
        ``"aligned"``: every access uses the loop variable in position ``axis``
        (no offset); ``"offset"``: the loop variable plus constant offsets
        (``u[i - 1]``); ``"anywhere"``: some access is at an index that does
        not follow the loop variable, or the whole array is used.
    axis : int or None
        The position indexed by the loop variable, when there is one.
    offsets : tuple of int
        The constant offsets seen in position ``axis`` (``(0,)`` for aligned).
    """

    read: bool
    written: bool
    access: str
    axis: int | None = None
    offsets: tuple[int, ...] = ()

    def describe(self) -> str:
        what = "+".join(w for w, on in (("read", self.read), ("written", self.written)) if on)
        if self.access == "anywhere":
            return f"{what or 'used'}, accessed anywhere"
        offs = ", ".join(f"{o:+d}" if o else "0" for o in self.offsets)
        return f"{what or 'used'}, {self.access} with the loop variable on axis {self.axis}" + (
            f" (offsets {offs})" if self.access == "offset" else "")


@dataclass(frozen=True)
class LoopAnalysis:
    """What the analysis found about a decorated function's loop.

    Attributes
    ----------
    function : str
        Qualified name of the function.
    filename : str
        Source file of the function.
    lineno : int or None
        Line of the analysed loop's header, or None when there is no
        candidate loop.
    loop_var : str or None
        The loop variable.
    parallel : bool
        True when the iterations were proven independent (or asserted with
        ``prange``) and the loop runs as a chunked parallel plan.
    reason : str or None
        Why the loop runs sequentially, naming the line; None when parallel.
    reductions : Mapping[str, str]
        Reduction variables and their operator (``"+"``, ``"*"``, ``"min"``,
        ``"max"``).
    privates : tuple of str
        Names private to each iteration.
    arrays : Mapping[str, ArrayRole]
        The role of each array the loop indexes.
    forced : bool
        The loop was written with ``prange``.
    """

    function: str
    filename: str
    lineno: int | None
    loop_var: str | None
    parallel: bool
    reason: str | None
    reductions: Mapping[str, str] = field(default_factory=dict)
    privates: tuple[str, ...] = ()
    arrays: Mapping[str, ArrayRole] = field(default_factory=dict)
    forced: bool = False
    loop_index: int | None = None  # position of the loop in the function body
    range_args: tuple[ast.expr, ...] = field(default=(), repr=False, compare=False)
    other_loops: tuple[tuple[int, str], ...] = ()  # (line, reason) of loops not chosen

    def summary(self) -> str:
        """A one-line verdict."""
        where = f"{self.filename}:{self.lineno}" if self.lineno else self.filename
        if self.parallel:
            red = ", ".join(f"{k} ({v})" for k, v in self.reductions.items())
            return (f"loop over {self.loop_var!r} at {where} is parallel"
                    + (f"; reductions: {red}" if red else ""))
        return f"runs sequentially: {self.reason}"


class Resolver:
    """Looks up the global names of a function (for helpers and ``prange``)."""

    def __init__(self, func: types.FunctionType, prange_objects: Iterable[Any] = ()) -> None:
        self.func = func
        self.globals = func.__globals__
        self.closure: dict[str, Any] = {}
        if func.__closure__:
            for name, cell in zip(func.__code__.co_freevars, func.__closure__, strict=False):
                try:
                    self.closure[name] = cell.cell_contents
                except ValueError:
                    pass
        self.prange_ids = {id(p) for p in prange_objects}

    def value(self, node: ast.expr) -> Any:
        """The object a ``Name`` or dotted ``Attribute`` refers to, or None."""
        if isinstance(node, ast.Name):
            if node.id in self.closure:
                return self.closure[node.id]
            if node.id in self.globals:
                return self.globals[node.id]
            return getattr(builtins, node.id, None)
        if isinstance(node, ast.Attribute):
            base = self.value(node.value)
            if isinstance(base, types.ModuleType):
                return getattr(base, node.attr, None)
        return None

    def is_range(self, node: ast.expr) -> str | None:
        """``"range"`` or ``"prange"`` when *node* names one of them."""
        v = self.value(node)
        if v is range:
            return "range"
        if v is not None and id(v) in self.prange_ids:
            return "prange"
        return None

    def helper(self, node: ast.expr) -> types.FunctionType | None:
        """The plain Python function a call's ``func`` refers to, if any."""
        v = self.value(node)
        v = getattr(v, "py_func", v)  # an accelerated function or a Numba dispatcher
        if isinstance(v, types.FunctionType):
            return v
        return None


# ---------------------------------------------------------------------------
# small AST utilities


def _names_loaded(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        out: list[str] = []
        for elt in target.elts:
            out.extend(_target_names(elt))
        return out
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _index_positions(sub: ast.Subscript) -> tuple[ast.Name | None, list[ast.expr]]:
    """Base name and flattened index expressions of ``a[i][j, k]``."""
    chain: list[ast.expr] = []
    node: ast.expr = sub
    while isinstance(node, ast.Subscript):
        sl = node.slice
        elts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        chain[:0] = elts
        node = node.value
    return (node if isinstance(node, ast.Name) else None), chain


def _same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a) == ast.dump(b)


def _const_int(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(
            node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _const_int(node.operand)
        return -v if v is not None else None
    return None


# ---------------------------------------------------------------------------
# per-loop analysis


@dataclass
class _Access:
    root: str
    positions: list[ast.expr] | None  # None: the whole array (anywhere)
    write: bool
    line: int
    text: str
    helper: str | None = None  # the helper through which the access happens


class _Unsafe(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class _HelperSummary:
    writes: dict[int, list[list[ast.expr]] | None]  # param index -> index tuples (None: anywhere)
    unsafe: str | None = None  # a reason the helper cannot be used in a parallel loop


class _LoopChecker:
    """Checks one candidate loop.  Raises :class:`_Unsafe` with the reason."""

    def __init__(self, fdef: ast.FunctionDef, loop: ast.For, index: int, resolver: Resolver,
                 aliases: dict[str, set[str]], array_names: set[str], line0: int,
                 helper_cache: dict[int, _HelperSummary]) -> None:
        self.fdef = fdef
        self.loop = loop
        self.index = index
        self.resolver = resolver
        self.aliases = aliases  # local name -> roots it may view
        self.array_names = array_names
        self.line0 = line0
        self.var = loop.target.id  # type: ignore[union-attr]
        self.assigned_in_body: set[str] = set()
        self.accesses: list[_Access] = []
        self.reductions: dict[str, str] = {}
        self.red_nodes: set[int] = set()
        self.private_alias: dict[str, tuple[str, list[ast.expr]] | None] = {}
        self.helper_cache = helper_cache

    def line(self, node: ast.AST) -> int:
        return getattr(node, "lineno", 1) + self.line0

    def src(self, node: ast.AST) -> str:
        try:
            return ast.unparse(node)
        except Exception:  # pragma: no cover - unparse handles every expression
            return "<expr>"

    # -- control flow ------------------------------------------------------
    def check_control(self) -> None:
        if self.loop.orelse:
            raise _Unsafe(self.line(self.loop), "the loop has an `else:` clause")

        def visit(stmts: list[ast.stmt], depth: int) -> None:
            for st in stmts:
                if isinstance(st, ast.Return):
                    raise _Unsafe(self.line(st), "`return` inside the loop leaves it early")
                if isinstance(st, ast.Break) and depth == 0:
                    raise _Unsafe(self.line(st), "`break` leaves the loop early")
                if isinstance(st, (ast.Global, ast.Nonlocal)):
                    raise _Unsafe(self.line(st), "`global`/`nonlocal` inside the loop")
                for node in ast.walk(st) if not isinstance(st, (ast.For, ast.While, ast.If,
                                                                 ast.With, ast.Try)) else ():
                    if isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
                        raise _Unsafe(self.line(node), "`yield` inside the loop")
                if isinstance(st, (ast.For, ast.While)):
                    self._check_exprs([st.iter if isinstance(st, ast.For) else st.test])
                    visit(st.body, depth + 1)
                    visit(st.orelse, depth)
                elif isinstance(st, ast.If):
                    self._check_exprs([st.test])
                    visit(st.body, depth)
                    visit(st.orelse, depth)
                elif isinstance(st, ast.With):
                    visit(st.body, depth)
                elif isinstance(st, ast.Try):
                    visit(st.body, depth)
                    for h in st.handlers:
                        visit(h.body, depth)
                    visit(st.orelse, depth)
                    visit(st.finalbody, depth)

        visit(self.loop.body, 0)
        for st in _walk_stmts(self.loop.body):
            if self.var in _stmt_targets(st):
                raise _Unsafe(self.line(st), f"the loop variable `{self.var}` is reassigned "
                              "inside the loop, so indices written with it no longer identify "
                              "the iteration")
        for node in ast.walk(self.loop):
            if isinstance(node, ast.Call):
                mod = getattr(self.resolver.value(node.func), "__module__", None) or ""
                base = node.func.value if isinstance(node.func, ast.Attribute) else None
                base_obj = self.resolver.value(base) if base is not None else None
                base_name = getattr(base_obj, "__name__", "") if base_obj is not None else ""
                if (mod.startswith(("numpy.random", "random")) or base_name in (
                        "numpy.random", "random")):
                    raise _Unsafe(self.line(node),
                                  f"`{self.src(node.func)}` draws from a random generator shared "
                                  "by all iterations, so the numbers each iteration gets would "
                                  "depend on the schedule")

    def _check_exprs(self, exprs: list[ast.expr]) -> None:
        for e in exprs:
            for node in ast.walk(e):
                if isinstance(node, (ast.Yield, ast.YieldFrom)):
                    raise _Unsafe(self.line(node), "`yield` inside the loop")

    # -- scalars -----------------------------------------------------------
    def _reduction_form(self, st: ast.stmt) -> tuple[str, str] | None:
        """``(name, op)`` when *st* is a reduction statement."""
        if isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            op = _REDUCTION_OPS.get(type(st.op))
            if op and st.target.id not in _names_loaded(st.value):
                return st.target.id, op
            return None
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(
                st.targets[0], ast.Name):
            name = st.targets[0].id
            v = st.value
            if isinstance(v, ast.BinOp) and type(v.op) in _REDUCTION_OPS:
                op = _REDUCTION_OPS[type(v.op)]
                left_is = isinstance(v.left, ast.Name) and v.left.id == name
                right_is = isinstance(v.right, ast.Name) and v.right.id == name
                if left_is and name not in _names_loaded(v.right):
                    return name, op
                if right_is and not isinstance(v.op, ast.Sub) and name not in _names_loaded(
                        v.left):
                    return name, op
            if (isinstance(v, ast.Call) and isinstance(v.func, ast.Name)
                    and v.func.id in ("min", "max") and len(v.args) == 2 and not v.keywords
                    and self.resolver.value(v.func) in (min, max)):
                a, b = v.args
                if isinstance(a, ast.Name) and a.id == name and name not in _names_loaded(b):
                    return name, v.func.id
                if isinstance(b, ast.Name) and b.id == name and name not in _names_loaded(a):
                    return name, v.func.id
            return None
        if (isinstance(st, ast.If) and not st.orelse and len(st.body) == 1
                and isinstance(st.body[0], ast.Assign) and len(st.body[0].targets) == 1
                and isinstance(st.body[0].targets[0], ast.Name)
                and isinstance(st.test, ast.Compare) and len(st.test.ops) == 1):
            name = st.body[0].targets[0].id
            e = st.body[0].value
            left, right, cmp = st.test.left, st.test.comparators[0], st.test.ops[0]
            if name in _names_loaded(e):
                return None
            is_s = (lambda n: isinstance(n, ast.Name) and n.id == name)  # noqa: E731
            if _same(left, e) and is_s(right):
                if isinstance(cmp, (ast.Gt, ast.GtE)):
                    return name, "max"
                if isinstance(cmp, (ast.Lt, ast.LtE)):
                    return name, "min"
            if is_s(left) and _same(right, e):
                if isinstance(cmp, (ast.Lt, ast.LtE)):
                    return name, "max"
                if isinstance(cmp, (ast.Gt, ast.GtE)):
                    return name, "min"
        return None

    def find_reductions(self, defined_before: set[str]) -> None:
        candidates: dict[str, set[str]] = {}
        nodes: dict[str, list[ast.stmt]] = {}
        bad: set[str] = set()
        for st in _walk_stmts(self.loop.body):
            form = self._reduction_form(st)
            if form:
                name, op = form
                candidates.setdefault(name, set()).add(op)
                nodes.setdefault(name, []).append(st)
                if isinstance(st, ast.If):  # `if e > m: m = e`: its assignment belongs to it
                    nodes[name].append(st.body[0])
        # every assignment of a reduction variable must be one of its reduction statements
        for st in _walk_stmts(self.loop.body):
            for name in _stmt_targets(st):
                if name in candidates and st not in nodes[name]:
                    bad.add(name)
        for name, ops in candidates.items():
            if name in bad or len(ops) != 1 or name == self.var:
                continue
            if name not in defined_before:
                continue  # assigned only inside: it is a private (or an error)
            # the variable may appear nowhere else in the loop
            reduction_ids = {id(n) for st in nodes[name] for n in ast.walk(st)}
            other_reads = [n for n in ast.walk(self.loop)
                           if isinstance(n, ast.Name) and n.id == name
                           and isinstance(n.ctx, ast.Load) and id(n) not in reduction_ids]
            if other_reads:
                continue
            # and inside its own statements only as the accumulator
            self.reductions[name] = ops.pop()
            self.red_nodes.update(id(st) for st in nodes[name] if not (
                isinstance(st, ast.Assign) and any(isinstance(o, ast.If) and o.body[0] is st
                                                   for o in nodes[name])))

    def check_scalars(self, defined_before: set[str], read_after: dict[str, int]) -> list[str]:
        assigned: set[str] = set()
        for st in _walk_stmts(self.loop.body):
            assigned.update(_stmt_targets(st))
        for node in ast.walk(self.loop):
            if isinstance(node, ast.NamedExpr):
                assigned.add(node.target.id)
        assigned.add(self.var)
        self.assigned_in_body = assigned
        privates = sorted(assigned - set(self.reductions))
        # flow: each non-reduction name must be written before it is read in an iteration
        _DefinedFlow(self, set(self.reductions)).run(self.loop.body, {self.var})
        for name in privates:
            if name in read_after:
                what = "the loop variable" if name == self.var else f"`{name}`"
                raise _Unsafe(read_after[name],
                              f"{what} is assigned in the loop at line {self.line(self.loop)} "
                              f"and read after it at line {read_after[name]}: its final value "
                              "depends on the order of the iterations")
        return privates

    # -- arrays ------------------------------------------------------------
    def roots(self, name: str) -> set[str]:
        return self.aliases.get(name, {name})

    def collect_accesses(self) -> None:
        body_module = ast.Module(body=self.loop.body, type_ignores=[])
        # private views defined in the body: name -> (root, leading positions) or None (fresh)
        for st in _walk_stmts(self.loop.body):
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(
                    st.targets[0], ast.Name):
                self.private_alias[st.targets[0].id] = self._view_of(st.value)
        for node in ast.walk(body_module):
            if isinstance(node, ast.Subscript):
                base, pos = _index_positions(node)
                if base is None:
                    continue
                parent_store = isinstance(node.ctx, (ast.Store, ast.Del))
                self._add_access(base.id, pos, parent_store, node)
            elif isinstance(node, ast.Call):
                self._call_access(node)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
                base, pos = _index_positions(node.target)
                if base is not None:
                    self._add_access(base.id, pos, False, node.target)  # the read half
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                raise _Unsafe(self.line(node),
                              f"assignment to the attribute `{self.src(node)}` inside the loop")
        # whole-array uses: a Name of an array used outside subscripts/metadata
        for node in _whole_uses(body_module, self.array_names | set(self.aliases)):
            if node.id in self.private_alias or node.id in self.assigned_in_body:
                continue
            for root in self.roots(node.id):
                self.accesses.append(_Access(root, None, False, self.line(node), node.id))

    def _view_of(self, value: ast.expr) -> tuple[str, list[ast.expr]] | None:
        if isinstance(value, ast.Subscript):
            base, pos = _index_positions(value)
            if base is not None:
                return base.id, pos
        if isinstance(value, ast.Name):
            return value.id, []
        return None

    def _add_access(self, name: str, pos: list[ast.expr], write: bool, node: ast.AST) -> None:
        if name in self.private_alias:
            view = self.private_alias[name]
            if view is None:
                return  # a fresh array private to the iteration
            root_name, lead = view
            if root_name in self.private_alias and root_name != name:
                return self._add_access(root_name, lead + pos, write, node)
            name, pos = root_name, lead + pos
        elif name in self.assigned_in_body:
            return  # assigned in the loop by something else (a call result): private
        for root in self.roots(name):
            self.accesses.append(_Access(root, pos, write, self.line(node), self.src(node)))

    def _call_access(self, call: ast.Call) -> None:
        func = call.func
        # method call on an array: a.fill(0), a[i].sort()
        if isinstance(func, ast.Attribute) and func.attr in _MUTATING_METHODS:
            obj = func.value
            if isinstance(obj, ast.Subscript):
                base, pos = _index_positions(obj)
                if base is not None:
                    self._add_access(base.id, pos, True, call)
            elif isinstance(obj, ast.Name):
                self._add_access_whole(obj.id, True, call)
        for kw in call.keywords:
            if kw.arg == "out":
                self._write_target(kw.value, call)
        helper = self.resolver.helper(func)
        if helper is None:
            return
        summary = _summarise_helper(helper, self.resolver, self.helper_cache)
        if summary.unsafe:
            raise _Unsafe(self.line(call),
                          f"the helper `{self.src(func)}` called here {summary.unsafe}")
        for pidx, idx_list in summary.writes.items():
            if pidx >= len(call.args):
                continue
            arg = call.args[pidx]
            if idx_list is None or not isinstance(arg, (ast.Name, ast.Subscript)):
                self._write_target(arg, call, whole=True, helper=self.src(func))
                continue
            for idx in idx_list:
                # substitute helper parameters by the call's arguments
                params = summary_params(helper)
                mapping = {p: a for p, a in zip(params, call.args, strict=False)}
                sub_idx = [_substitute(e, mapping) for e in idx]
                n_before = len(self.accesses)
                if isinstance(arg, ast.Name):
                    self._add_access(arg.id, sub_idx, True, call)
                else:
                    base, pos = _index_positions(arg)
                    if base is not None:
                        self._add_access(base.id, pos + sub_idx, True, call)
                for acc in self.accesses[n_before:]:
                    acc.helper = self.src(func)
                    acc.text = (f"{self.src(arg)}[{', '.join(self.src(e) for e in sub_idx)}]"
                                if sub_idx else self.src(arg))

    def _add_access_whole(self, name: str, write: bool, node: ast.AST) -> None:
        if name in self.private_alias:
            view = self.private_alias[name]
            if view is None:
                return
            root_name, lead = view
            self._add_access(root_name, lead + [ast.Constant(value=Ellipsis)], write, node)
            return
        if name in self.assigned_in_body:
            return
        for root in self.roots(name):
            self.accesses.append(_Access(root, None, write, self.line(node), self.src(node)))

    def _write_target(self, arg: ast.expr, call: ast.Call, whole: bool = False,
                      helper: str | None = None) -> None:
        if isinstance(arg, ast.Subscript):
            base, pos = _index_positions(arg)
            if base is not None:
                self._add_access(base.id, pos + [ast.Constant(value=Ellipsis)], True, call)
        elif isinstance(arg, ast.Name):
            if helper and arg.id not in self.private_alias and arg.id not in (
                    self.assigned_in_body):
                raise _Unsafe(self.line(call),
                              f"the helper `{helper}` writes its argument `{arg.id}`, an array "
                              "shared by all iterations")
            self._add_access_whole(arg.id, True, call)

    def _aligned(self, expr: ast.expr) -> int | None:
        """Offset when *expr* is ``v``, ``v + c`` or ``v - c`` (c an int literal)."""
        if isinstance(expr, ast.Name) and expr.id == self.var:
            return 0
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)):
            left, right = expr.left, expr.right
            if isinstance(left, ast.Name) and left.id == self.var:
                c = _const_int(right)
                if c is not None:
                    return c if isinstance(expr.op, ast.Add) else -c
            if isinstance(expr.op, ast.Add) and isinstance(right, ast.Name) and (
                    right.id == self.var):
                c = _const_int(left)
                if c is not None:
                    return c
        return None

    def check_arrays(self, forced: bool) -> dict[str, ArrayRole]:
        by_root: dict[str, list[_Access]] = {}
        for acc in self.accesses:
            by_root.setdefault(acc.root, []).append(acc)
        roles: dict[str, ArrayRole] = {}
        for root, accs in by_root.items():
            written = any(a.write for a in accs)
            read = any(not a.write for a in accs)
            axis, offsets = self._common_axis(accs)
            if axis is None:
                access = "anywhere"
            elif offsets == {0}:
                access = "aligned"
            else:
                access = "offset"
            roles[root] = ArrayRole(read=read, written=written, access=access, axis=axis,
                                    offsets=tuple(sorted(offsets)) if axis is not None else ())
            if not written or forced:
                continue
            writes = [a for a in accs if a.write]
            if axis is not None and len(offsets) == 1:
                continue
            # explain the first conflict
            for w in writes:
                if w.positions is None:
                    raise _Unsafe(w.line, f"`{root}` is written as a whole (`{w.text}`) in "
                                  "every iteration")
                if all(self._aligned(p) is None for p in w.positions):
                    who = (f"the helper `{w.helper}` writes `{w.text}`, " if w.helper
                           else f"`{w.text}` writes `{root}` ")
                    raise _Unsafe(w.line, f"{who}at an index that does not follow the loop "
                                  f"variable `{self.var}`: different iterations may write the same "
                                  "element (a scatter or a shared slot)")
            for a in accs:
                if a.positions is None:
                    raise _Unsafe(a.line, f"`{root}` is written in the loop (line "
                                  f"{writes[0].line}) and used whole here (`{a.text}`), so "
                                  "iterations read each other's results")
            w = writes[0]
            other = next((a for a in accs if a is not w and not self._compatible(w, a)), accs[0])
            kind = "read" if not other.write else "written"
            raise _Unsafe(other.line, f"`{root}` is written at `{w.text}` (line {w.line}) and "
                          f"{kind} at `{other.text}`, an element another iteration writes: a "
                          "loop-carried dependence")
        return roles

    def _compatible(self, a: _Access, b: _Access) -> bool:
        if a.positions is None or b.positions is None:
            return False
        for d in range(min(len(a.positions), len(b.positions))):
            oa, ob = self._aligned(a.positions[d]), self._aligned(b.positions[d])
            if oa is not None and oa == ob:
                return True
        return False

    def _common_axis(self, accs: list[_Access]) -> tuple[int | None, set[int]]:
        if any(a.positions is None for a in accs):
            return None, set()
        ndims = min(len(a.positions) for a in accs)  # type: ignore[arg-type]
        for d in range(ndims):
            offs = [self._aligned(a.positions[d]) for a in accs]  # type: ignore[index]
            if all(o is not None for o in offs):
                written_offs = {self._aligned(a.positions[d]) for a in accs  # type: ignore[index]
                                if a.write}
                # a written array must use one offset only; read-only arrays may use many
                if written_offs and len(set(offs)) > 1:
                    continue
                return d, set(offs)  # type: ignore[arg-type]
        return None, set()


class _DefinedFlow:
    """Definite assignment inside one iteration: a name the loop assigns must be
    assigned before it is read, on every path."""

    def __init__(self, checker: _LoopChecker, skip: set[str]) -> None:
        self.c = checker
        self.skip = skip

    def run(self, stmts: list[ast.stmt], defined: set[str]) -> set[str]:
        for st in stmts:
            defined = self.stmt(st, defined)
        return defined

    def reads(self, node: ast.AST | None, defined: set[str]) -> None:
        if node is None:
            return
        local: set[str] = set()
        for n in ast.walk(node):
            if isinstance(n, ast.comprehension):
                local.update(_target_names(n.target))
            if isinstance(n, ast.NamedExpr):
                local.add(n.target.id)
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                name = n.id
                if (name in self.c.assigned_in_body and name not in defined
                        and name not in self.skip and name not in local):
                    raise _Unsafe(self.c.line(n),
                                  f"`{name}` is read before it is assigned in the same iteration, "
                                  "so each iteration depends on the one before (a loop-carried "
                                  "dependence through a scalar)")

    def stmt(self, st: ast.stmt, defined: set[str]) -> set[str]:
        if id(st) in self.c.red_nodes:
            return defined
        if isinstance(st, ast.Assign):
            self.reads(st.value, defined)
            for t in st.targets:
                if not isinstance(t, ast.Name):
                    self.reads(t, defined)
            return defined | {n for t in st.targets for n in _target_names(t)}
        if isinstance(st, ast.AnnAssign):
            self.reads(st.value, defined)
            return defined | set(_target_names(st.target))
        if isinstance(st, ast.AugAssign):
            self.reads(st.value, defined)
            self.reads(st.target if not isinstance(st.target, ast.Name) else ast.Name(
                id=st.target.id, ctx=ast.Load(), lineno=st.lineno, col_offset=0), defined)
            return defined
        if isinstance(st, ast.For):
            self.reads(st.iter, defined)
            self.run(st.body, defined | set(_target_names(st.target)))
            self.run(st.orelse, defined)
            return defined
        if isinstance(st, ast.While):
            self.reads(st.test, defined)
            self.run(st.body, defined)
            self.run(st.orelse, defined)
            return defined
        if isinstance(st, ast.If):
            self.reads(st.test, defined)
            a = self.run(st.body, defined)
            b = self.run(st.orelse, defined)
            ta, tb = _terminates(st.body), _terminates(st.orelse)
            if ta and not tb:
                return b
            if tb and not ta:
                return a
            return a & b
        if isinstance(st, ast.With):
            for item in st.items:
                self.reads(item.context_expr, defined)
                if item.optional_vars is not None:
                    defined = defined | set(_target_names(item.optional_vars))
            return self.run(st.body, defined)
        if isinstance(st, ast.Try):
            d = self.run(st.body, defined)
            for h in st.handlers:
                self.run(h.body, defined)
            self.run(st.finalbody, defined)
            return defined & d
        self.reads(st, defined)
        return defined


def _terminates(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Continue, ast.Raise, ast.Return, ast.Break))


def _walk_stmts(stmts: list[ast.stmt]) -> Iterable[ast.stmt]:
    for st in stmts:
        yield st
        for fld in ("body", "orelse", "finalbody"):
            sub = getattr(st, fld, None)
            if isinstance(sub, list):
                yield from _walk_stmts(sub)
        if isinstance(st, ast.Try):
            for h in st.handlers:
                yield from _walk_stmts(h.body)


def _stmt_targets(st: ast.stmt) -> list[str]:
    if isinstance(st, ast.Assign):
        return [n for t in st.targets for n in _target_names(t)]
    if isinstance(st, (ast.AugAssign, ast.AnnAssign)):
        return _target_names(st.target)
    if isinstance(st, ast.For):
        return _target_names(st.target)
    if isinstance(st, ast.With):
        return [n for it in st.items if it.optional_vars is not None
                for n in _target_names(it.optional_vars)]
    return []


def _whole_uses(tree: ast.AST, names: set[str]) -> Iterable[ast.Name]:
    """Loads of *names* that are not subscript bases nor metadata reads."""
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                and node.id in names):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.Subscript) and parent.value is node:
            continue
        if isinstance(parent, ast.Attribute) and parent.attr in _META_ATTRS:
            continue
        if (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                and parent.func.id in _META_FUNCS and node in parent.args):
            continue
        if isinstance(parent, ast.Call) and parent.func is node:
            continue
        if isinstance(parent, ast.Call) and any(kw.value is node and kw.arg == "out"
                                                for kw in parent.keywords):
            continue  # handled as a write
        if isinstance(parent, ast.Attribute) and parent.attr in _MUTATING_METHODS:
            continue  # handled as a write
        yield node


def _substitute(expr: ast.expr, mapping: dict[str, ast.expr]) -> ast.expr:
    class Sub(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in mapping and isinstance(node.ctx, ast.Load):
                return mapping[node.id]
            return node

    return Sub().visit(ast.parse(ast.unparse(expr), mode="eval").body)


def summary_params(func: types.FunctionType) -> list[str]:
    code = func.__code__
    return list(code.co_varnames[: code.co_argcount])


def _summarise_helper(func: types.FunctionType, parent: Resolver,
                      cache: dict[int, _HelperSummary], depth: int = 0) -> _HelperSummary:
    """Which parameters a helper writes (and at which indices)."""
    key = id(func)
    if key in cache:
        return cache[key]
    cache[key] = _HelperSummary(writes={})  # recursion guard
    try:
        fdef, _ = parse_function(func)
    except (OSError, TypeError, SyntaxError):
        summary = _HelperSummary(writes={}, unsafe=None)
        cache[key] = summary
        return summary
    params = summary_params(func)
    resolver = Resolver(func)
    resolver.prange_ids = parent.prange_ids
    writes: dict[int, list[list[ast.expr]] | None] = {}
    local_alias = _aliases(fdef.body, set(params))

    def note(name: str, pos: list[ast.expr] | None) -> None:
        for root in local_alias.get(name, {name}):
            if root in params:
                i = params.index(root)
                if pos is None or (i in writes and writes[i] is None):
                    writes[i] = None
                elif name != root:
                    writes[i] = None  # through a local view: position unknown
                else:
                    writes.setdefault(i, []).append(pos)  # type: ignore[union-attr]

    unsafe = None
    for node in ast.walk(fdef):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            base, pos = _index_positions(node)
            if base is not None:
                if base.id not in params and base.id not in local_alias and not any(
                        base.id in _target_names(t) for st in _walk_stmts(fdef.body)
                        if isinstance(st, ast.Assign) for t in st.targets):
                    unsafe = f"writes the global array `{base.id}`"
                note(base.id, pos)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
            base, pos = _index_positions(node.target)
            if base is not None:
                note(base.id, pos)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            unsafe = "declares `global`/`nonlocal` names"
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in _MUTATING_METHODS and isinstance(
                    f.value, ast.Name):
                note(f.value.id, None)
            for kw in node.keywords:
                if kw.arg == "out" and isinstance(kw.value, ast.Name):
                    note(kw.value.id, None)
            if depth < 8:
                callee = resolver.helper(f)
                if callee is not None:
                    sub = _summarise_helper(callee, resolver, cache, depth + 1)
                    if sub.unsafe:
                        unsafe = f"calls `{ast.unparse(f)}`, which {sub.unsafe}"
                    for pidx in sub.writes:
                        if pidx < len(node.args) and isinstance(node.args[pidx], ast.Name):
                            note(node.args[pidx].id, None)
    summary = _HelperSummary(writes=writes, unsafe=unsafe)
    cache[key] = summary
    return summary


def _aliases(stmts: list[ast.stmt], arrays: set[str]) -> dict[str, set[str]]:
    """Local names that may view the memory of other names (``b = a[1:]``, ``b = a.T``)."""
    alias: dict[str, set[str]] = {}
    for st in _walk_stmts(stmts):
        if not isinstance(st, ast.Assign):
            continue
        srcs = _view_sources(st.value)
        for t in st.targets:
            names = _target_names(t)
            if isinstance(t, (ast.Tuple, ast.List)) and isinstance(st.value, (ast.Tuple,
                                                                              ast.List)):
                for tn, v in zip(t.elts, st.value.elts, strict=False):
                    s2 = _view_sources(v)
                    if isinstance(tn, ast.Name) and s2:
                        alias.setdefault(tn.id, {tn.id}).update(
                            r for s in s2 for r in alias.get(s, {s}))
                continue
            for name in names:
                if srcs:
                    roots = {r for s in srcs for r in alias.get(s, {s})}
                    alias.setdefault(name, {name}).update(roots)
    return alias


def _view_sources(value: ast.expr) -> set[str]:
    """Names whose memory *value* may share."""
    if isinstance(value, ast.Name):
        return {value.id}
    if isinstance(value, ast.Subscript):
        base, _ = _index_positions(value)
        return {base.id} if base is not None else set()
    if isinstance(value, ast.Attribute):
        if value.attr in ("T", "real", "imag", "flat"):
            return _view_sources(value.value)
        return set()
    if isinstance(value, ast.Call):
        f = value.func
        if isinstance(f, ast.Attribute) and f.attr in ("reshape", "view", "ravel", "transpose",
                                                       "swapaxes", "squeeze"):
            return _view_sources(f.value)
        if isinstance(f, ast.Attribute) and f.attr in _ALLOCATORS | {"copy", "astype"}:
            return set()
        if isinstance(f, ast.Attribute) and f.attr in ("asarray", "ascontiguousarray",
                                                       "asfortranarray", "atleast_1d",
                                                       "atleast_2d", "ravel", "reshape",
                                                       "transpose", "squeeze"):
            return {n for a in value.args for n in _view_sources(a)}
        return set()
    if isinstance(value, ast.IfExp):
        return _view_sources(value.body) | _view_sources(value.orelse)
    return set()


def parse_function(func: types.FunctionType) -> tuple[ast.FunctionDef, int]:
    """The ``def`` node of *func* and the line offset of its source.

    Raises OSError/TypeError when there is no source, SyntaxError when the
    source found is not a lone ``def`` (a lambda).
    """
    lines, first = inspect.getsourcelines(func)
    import textwrap

    src = textwrap.dedent("".join(lines))
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func.__name__:
            # line numbers in the tree are relative to the snippet; decorators
            # may precede the def line
            return node, first - 1  # type: ignore[return-value]
    raise SyntaxError(f"no `def {func.__name__}` in the source of {func.__qualname__}")


def _candidate_loops(fdef: ast.FunctionDef, resolver: Resolver) -> list[tuple[int, ast.For]]:
    out = []
    for idx, st in enumerate(fdef.body):
        if (isinstance(st, ast.For) and isinstance(st.target, ast.Name)
                and isinstance(st.iter, ast.Call) and resolver.is_range(st.iter.func)
                and not st.iter.keywords and 1 <= len(st.iter.args) <= 3
                and not any(isinstance(a, ast.Starred) for a in st.iter.args)):
            out.append((idx, st))
    return out


def _loop_depth(node: ast.AST) -> int:
    best = 0
    for child in ast.iter_child_nodes(node):
        d = _loop_depth(child)
        if isinstance(child, (ast.For, ast.While, ast.comprehension)):
            d += 1
        best = max(best, d)
    return best


def analyse_function(func: types.FunctionType, fdef: ast.FunctionDef, line0: int,
                     prange_objects: Iterable[Any] = (),
                     on_loop: Callable[[int, str], None] | None = None) -> LoopAnalysis:
    """Analyse *func* (whose parsed ``def`` is *fdef*, lines offset by *line0*)."""
    resolver = Resolver(func, prange_objects)
    name = func.__qualname__
    filename = func.__code__.co_filename
    candidates = _candidate_loops(fdef, resolver)
    params = [a.arg for a in fdef.args.posonlyargs + fdef.args.args + fdef.args.kwonlyargs]
    if not candidates:
        any_loop = next((n for n in ast.walk(fdef) if isinstance(n, (ast.For, ast.While))), None)
        if any_loop is None:
            reason = "the function has no loop to parallelize"
        else:
            reason = (f"line {any_loop.lineno + line0}: the loop is not a top-level "
                      "`for ... in range(...)` loop of the function body")
        return LoopAnalysis(name, filename, None, None, False, reason)

    subscripted = {b.id for n in ast.walk(fdef) if isinstance(n, ast.Subscript)
                   for b in [_index_positions(n)[0]] if b is not None}
    aliases = _aliases(fdef.body, set(params))
    helper_cache: dict[int, _HelperSummary] = {}
    results: list[LoopAnalysis] = []
    for idx, loop in candidates:
        forced = resolver.is_range(loop.iter.func) == "prange"  # type: ignore[attr-defined]
        checker = _LoopChecker(fdef, loop, idx, resolver, aliases, subscripted, line0,
                               helper_cache)
        defined_before = set(params)
        for st in fdef.body[:idx]:
            for s in _walk_stmts([st]):
                defined_before.update(_stmt_targets(s))
        read_after: dict[str, int] = {}
        for st in fdef.body[idx + 1:]:
            for n in ast.walk(st):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                    read_after.setdefault(n.id, n.lineno + line0)
        header = loop.lineno + line0
        try:
            checker.check_control()
            checker.find_reductions(defined_before)
            privates = checker.check_scalars(defined_before, read_after)
            checker.collect_accesses()
            roles = checker.check_arrays(forced)
            results.append(LoopAnalysis(
                name, filename, header, checker.var, True, None,
                reductions=dict(checker.reductions), privates=tuple(privates), arrays=roles,
                forced=forced, loop_index=idx, range_args=tuple(loop.iter.args)))  # type: ignore
        except _Unsafe as exc:
            reason = f"line {exc.line}: {exc.message}"
            if forced and on_loop is not None:
                on_loop(header, reason)
            results.append(LoopAnalysis(name, filename, header, checker.var, False, reason,
                                        forced=forced, loop_index=idx,
                                        range_args=tuple(loop.iter.args)))  # type: ignore
    parallel = [r for r in results if r.parallel]
    if parallel:
        depth = {c[0]: _loop_depth(c[1]) for c in candidates}
        chosen = max(parallel, key=lambda r: (depth[r.loop_index], -r.loop_index))  # type: ignore
    else:
        chosen = results[0]
    others = tuple((r.lineno, r.reason or "parallel, not chosen (another loop has more work)")
                   for r in results if r is not chosen)
    return LoopAnalysis(**{**chosen.__dict__, "other_loops": others})  # type: ignore[arg-type]
