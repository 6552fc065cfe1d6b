"""Code generation: the fused serial function and the outlined plan.

From the analysed ``def`` (with absolute line numbers, so that every error
Numba reports points at the user's own file and line) this module builds a
module tree holding:

``serial``
    The whole function, with the parallel loop cut into fixed blocks.  Each
    reduction is accumulated per block from its identity and combined into the
    running value in block order.  This is what the ``serial`` level runs: one
    call into compiled code.

``pre`` / ``chunk`` / ``post``
    The same computation outlined for executors: ``pre`` runs the code before
    the loop and returns the loop bounds, the per-block partial arrays and the
    state the loop needs; ``chunk(c0, c1, ...)`` runs blocks ``[c0, c1)``
    writing outputs and partials (any partition of the blocks, on any thread
    or rank, in any order); ``post`` combines the partials in block order and
    runs the code after the loop.  Because blocks, identities and the combine
    order are the same as in ``serial``, the result is bit-for-bit the same.

Generated names start with ``__ls_`` and cannot clash with user names (the
analysis refuses functions that use that prefix).
"""

from __future__ import annotations

import ast
import copy
import textwrap
import types
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from ._astutil import _const_int, _names_loaded, _stmt_targets, _walk_stmts, defined_before
from ._model import NP_EXTREMA, LoopAnalysis

__all__ = ["GeneratedCode", "generate"]

_COMBINE = {
    "+": "{s} += {p}",
    "*": "{s} *= {p}",
    "min": "{s} = min({s}, {p})",
    "max": "{s} = max({s}, {p})",
    "|": "{s} |= {p}",
    "&": "{s} &= {p}",
    "^": "{s} ^= {p}",
}

#: The bitwise reductions (``found |= x[i] < 0``, ``bits ^= k[i]``): exact in any
#: order, like integer sums.
BITWISE = ("|", "&", "^")


#: The forms of a reduction by NumPy's extrema (see ``LoopAnalysis.reduction_forms``).
NP_FORMS = ("np", "np_last", "npf", "npf_last")


def np_function(op: str, form: str) -> str:
    """The name of the NumPy function (``maximum``, ``fmin``...) of a reduction by
    operator *op* in *form* (one of :data:`NP_FORMS`); the generated code calls
    ``np.<name>`` as ``__ls_np_<name>``."""
    stem = form.removesuffix("_last")
    return next(k for k, v in NP_EXTREMA.items() if v == (op, stem))


def _combine_src(s: str, op: str, form: str | None, p: str, flag: str | None) -> str:
    """The statement folding partial *p* into the running value *s*, in the form of
    the loop's own reduction statement (see ``LoopAnalysis.reduction_forms``), so
    that the combined result is the one the loop, run in order, gives: ``s = s + p``
    leaves an array ``s`` had before the loop unchanged, as ``s = s + e`` does;
    ``if p <= s: s = p`` keeps the later of two equal values (``-0.0``/``0.0``);
    ``s = min(e, s)`` lets a NaN ``e`` replace ``s``, and then a block that met
    one (*flag*) does not depend on the running value: its partial replaces it."""
    if op in ("+", "*") or op in BITWISE:
        return f"{s} = {s} {op} {p}" if form == "assign" else _COMBINE[op].format(s=s, p=p)
    if op == "set":  # *form*: the constant's source
        return f"if {p}:\n    {s} = {form}"
    if form in NP_FORMS:  # `s = np.maximum(s, e)`: the same function, the same way round
        fn = f"__ls_np_{np_function(op, form)}"
        return (f"{s} = {fn}({p}, {s})" if form.endswith("_last") else f"{s} = {fn}({s}, {p})")
    cmp = "<" if op == "min" else ">"
    if form == "loose":
        return f"if {p} {cmp}= {s}:\n    {s} = {p}"
    if form == "last" and flag is not None:
        return f"if {flag}:\n    {s} = {p}\nelse:\n    {s} = {op}({p}, {s})"
    return _COMBINE[op].format(s=s, p=p)


def _payload_combine_src(s: str, op: str, form: str | None, p: str, hit: str,
                         pays: list[tuple[str, str]]) -> str:
    """The combine of a min/max reduction with payloads (``if d < best: best = d;
    idx = i``): the running value and its payloads are taken from a block whose
    value replaces it, by the loop's own comparison (``<`` keeps the first of
    equal values, ``<=`` the last), and only from a block where the update ran
    (*hit*): one that did not holds its identity, not a position."""
    cmp = ("<" if op == "min" else ">") + ("=" if form == "loose" else "")
    body = "".join(f"\n    {a} = {b}" for a, b in [(s, p), *pays])
    return f"if {hit} and {p} {cmp} {s}:{body}"


class _SetHit(ast.NodeTransformer):
    """In a block's copy of the body, mark where a reduction with payloads is
    updated: ``if d < best: best = d; idx = i; __ls_hit_best = True``."""

    def __init__(self, hits: dict[str, str]) -> None:
        self.hits = hits  # renamed accumulator -> its flag

    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        for b in list(node.body):
            t = b.targets[0] if isinstance(b, ast.Assign) and len(b.targets) == 1 else None
            if isinstance(t, ast.Name) and t.id in self.hits:
                node.body += _stmts(f"{self.hits[t.id]} = True", b.lineno)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node


class _SetFlag(ast.NodeTransformer):
    """``found = True`` (any one constant) becomes ``__ls_r_found = True``: the
    block set the flag (the combine assigns the constant)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names  # renamed flags

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        t = node.targets[0] if len(node.targets) == 1 else None
        if isinstance(t, ast.Name) and t.id in self.names:
            node.value = ast.copy_location(ast.Constant(value=True), node.value)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node


def _identity_src(op: str, s0: str, like: str, form: str | None = None) -> str:
    """A block's starting partial: 0 or 1 (typed like *s0*) for ``+``/``*``; for
    ``min``/``max``, +inf/-inf when the accumulator (typed like *like*) is a
    float, which the first element always replaces (even a NaN, as in the loop),
    else *s0*.  ``np.fmax``/``np.fmin`` (*form* ``"npf..."``) pass over a NaN, so
    theirs starts from NaN, which the first element replaces (a NaN too); for
    NumPy's extrema an array accumulator starts from an array of these."""
    if form in NP_FORMS:
        kind = 0 if form.startswith("npf") else (1 if op == "min" else -1)  # type: ignore[union-attr]
        return f"__ls_np_top({like}, {s0}, {kind})"
    if op == "+":
        return f"__ls_zero({s0})"
    if op == "*":
        return f"__ls_one({s0})"
    if op == "set":  # a flag: whether the block set it
        return "False"
    if op in ("|", "^"):
        return f"__ls_no_bits({s0})"
    if op == "&":
        return f"__ls_all_bits({s0})"
    return f"__ls_{op}_top({like}, {s0})"


class _FlagNaN(ast.NodeTransformer):
    """At each ``r = min(e, r)`` (``max``) of a reduction, note whether ``e`` is NaN
    (then ``r`` becomes NaN): from there the block's result no longer depends on
    the value it started from."""

    def __init__(self, flags: dict[str, str]) -> None:
        self.flags = flags  # renamed accumulator -> its flag

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.AST]:
        t = node.targets[0] if len(node.targets) == 1 else None
        v = node.value
        if (isinstance(t, ast.Name) and t.id in self.flags and isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name) and v.func.id in ("min", "max")
                and len(v.args) == 2 and isinstance(v.args[1], ast.Name)
                and v.args[1].id == t.id):
            # the element, evaluated once as before, tested apart from the running
            # value (which it does not delay)
            e = f"__ls_e_{t.id}"
            first = ast.copy_location(ast.Assign(targets=[ast.Name(id=e, ctx=ast.Store())],
                                                 value=v.args[0]), node)
            v.args[0] = ast.Name(id=e, ctx=ast.Load())
            flag = _stmts(f"{self.flags[t.id]} = {self.flags[t.id]} | ({e} != {e})",
                          node.lineno)
            return [_fix([first], node.lineno)[0], *flag, node]
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node

#: Block arithmetic, written out in the generated code (no helper functions to
#: compile); the constants come from :mod:`._runtime` so that all levels agree.
from ._runtime import (  # noqa: E402
    MAX_BLOCKS,
    MIN_BLOCK,
    NESTED_MIN_BLOCK,
    PLAIN_BLOCK,
    SCATTER_SHARE,
    SCATTER_SLACK,
)


def _trip_src(nargs: int) -> str:
    if nargs < 3:
        return """
            __ls_n = __ls_hi - __ls_lo
            if __ls_n < 0:
                __ls_n = 0
        """
    return """
        if __ls_step == 0:
            raise ValueError("range() arg 3 must not be zero")
        if __ls_step > 0:
            __ls_n = (__ls_hi - __ls_lo + __ls_step - 1) // __ls_step
        else:
            __ls_n = (__ls_lo - __ls_hi - __ls_step - 1) // (-__ls_step)
        if __ls_n < 0:
            __ls_n = 0
    """


def _block_src(has_red: bool, nested: bool = False, scatters: tuple[str, ...] = (),
               params: Container[str] = ()) -> str:
    floor = (NESTED_MIN_BLOCK if nested else MIN_BLOCK) if has_red else PLAIN_BLOCK
    src = textwrap.dedent(f"""
        __ls_bs = (__ls_n + {MAX_BLOCKS - 1}) // {MAX_BLOCKS}
        if __ls_bs < {floor}:
            __ls_bs = {floor}
    """)
    if scatters:
        # `h[b] += w`: every block zeroes, fills and hands over an array like `h`;
        # blocks long enough that all of them together hold at most about a
        # quarter of the iterations' count of elements (plus 64 Ki), so that
        # this stays small beside the loop's own work (a function of the sizes
        # alone: every level cuts the same blocks)
        # (an argument may be a typed Dict: see _DirectScatter)
        size = " + ".join(f"__ls_scatter_size({h})" if h in params else f"{h}.size"
                          for h in scatters)
        src += textwrap.dedent(f"""
            __ls_sz = {size}
            __ls_cap = __ls_n // {SCATTER_SHARE} + {SCATTER_SLACK}
            __ls_bz = (__ls_n * __ls_sz + __ls_cap - 1) // __ls_cap
            if __ls_bs < __ls_bz:
                __ls_bs = __ls_bz
        """)
    return src


@dataclass
class GeneratedCode:
    """The generated module and the names of what it defines."""

    module: ast.Module
    serial: str
    pre: str | None
    chunk: str | None
    post: str | None
    state: tuple[str, ...]
    plan_reason: str | None  # why there is no plan (the loop still runs, serially)
    #: the names of the per-block partials: one per reduction, then a flag per
    #: `s = min(e, s)` reduction (`__ls_nan_s`: the block met a NaN)
    reductions: tuple[str, ...] = ()
    #: the names of :attr:`state` that the loop itself uses (the rest only the epilogue)
    loop_state: tuple[str, ...] = ()
    #: the code before the loop may write to memory (running it twice is not harmless)
    pre_writes: bool = True
    #: the epilogue does nothing and returns None (no reduction, no code after the
    #: loop): a caller may skip calling it
    post_empty: bool = False


#: the names under which the generated module finds the function's default values
DEFAULT = "__ls_default_"
KWDEFAULT = "__ls_kwdefault_"


def defaults(func: types.FunctionType) -> dict[str, Any]:
    """The namespace entries for *func*'s default values (see :data:`DEFAULT`)."""
    out = {f"{DEFAULT}{k}": v for k, v in enumerate(func.__defaults__ or ())}
    out.update({f"{KWDEFAULT}{k}": v for k, v in (func.__kwdefaults__ or {}).items()})
    return out


def name_defaults(a: ast.arguments) -> None:
    """Make the default values of *a* the function's own (evaluated once, where it
    was defined), not its source evaluated again in the generated module: names
    that :func:`defaults` binds."""
    a.defaults = [ast.Name(id=f"{DEFAULT}{k}", ctx=ast.Load()) for k in range(len(a.defaults))]
    a.kw_defaults = [None if d is None else ast.Name(id=f"{KWDEFAULT}{p.arg}", ctx=ast.Load())
                     for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]


def _stmts(src: str, line: int) -> list[ast.stmt]:
    body = ast.parse(textwrap.dedent(src)).body
    for st in body:
        for node in ast.walk(st):
            if "lineno" in node._attributes:
                node.lineno = node.end_lineno = line  # type: ignore[attr-defined]
                node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
    return body


def _fix(nodes: list[ast.stmt], line: int) -> list[ast.stmt]:
    for st in nodes:
        for node in ast.walk(st):
            if "lineno" in node._attributes and not hasattr(node, "lineno"):
                node.lineno = node.end_lineno = line  # type: ignore[attr-defined]
                node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
    return nodes


class _Rename(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.mapping:
            return ast.copy_location(ast.Name(id=self.mapping[node.id], ctx=node.ctx), node)
        return node


class _DirectScatter(ast.NodeTransformer):
    """In the fused serial code, ``__ls_r_h[k] += w`` of a scatter sum into an
    argument ``h`` (after renaming) adds into ``h`` itself, in the loop's order,
    where per-block sums would not repeat the loop (its flag, the same for every
    statement into ``h``: see ``_decorator._scatter_in_order``): when ``h`` is
    not an array, shares memory with another argument, or is an integer or bool
    array given values that may not be integers or positive counts."""

    def __init__(self, names: dict[str, tuple[str, str]]) -> None:
        self.names = names  # renamed -> (argument, its flag)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        t = node.target
        if not (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                and t.value.id in self.names):
            return node
        arg, flag = self.names[t.value.id]
        line = node.lineno
        branch = _stmts(f"if {flag}:\n    pass\nelse:\n    pass", line)[0]
        own = copy.deepcopy(node)
        own.target = ast.Subscript(value=ast.Name(id=arg, ctx=ast.Load()),
                                   slice=copy.deepcopy(t.slice), ctx=ast.Store())
        branch.body = _fix([own], line)  # type: ignore[attr-defined]
        branch.orelse = _fix([node], line)  # type: ignore[attr-defined]
        return branch

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node


class _PrangeToRange(ast.NodeTransformer):
    def __init__(self, is_prange) -> None:  # type: ignore[no-untyped-def]
        self.is_prange = is_prange

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if self.is_prange(node.func):
            node.func = ast.copy_location(ast.Name(id="range", ctx=ast.Load()), node.func)
        return node


class _ReturnToRaise(ast.NodeTransformer):
    def visit_Return(self, node: ast.Return) -> ast.AST:
        return ast.copy_location(ast.Raise(exc=ast.Name(id="__ls_EarlyReturn", ctx=ast.Load()),
                                           cause=None), node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node  # nested functions keep their returns


def _range_assign(args: tuple[ast.expr, ...], line: int, checked: bool = False
                  ) -> list[ast.stmt]:
    if len(args) == 1:
        lo, hi, step = ast.Constant(0), args[0], ast.Constant(1)
    elif len(args) == 2:
        lo, hi, step = args[0], args[1], ast.Constant(1)
    else:
        lo, hi, step = args

    def check(bound: ast.expr) -> ast.expr:
        # a bound that is not an integer (`range(n / 2)`) fails to compile with a
        # message naming it, not deep in the generated block arithmetic
        if not checked or isinstance(bound, ast.Constant) and type(bound.value) is int:
            return copy.deepcopy(bound)
        return ast.Call(func=ast.Name(id="__ls_int", ctx=ast.Load()),
                        args=[copy.deepcopy(bound), ast.Constant(value=ast.unparse(bound))],
                        keywords=[])

    st = ast.Assign(
        targets=[ast.Tuple(elts=[ast.Name(id=n, ctx=ast.Store())
                                 for n in ("__ls_lo", "__ls_hi", "__ls_step")], ctx=ast.Store())],
        value=ast.Tuple(elts=[check(lo), check(hi), check(step)], ctx=ast.Load()))
    return _fix([st], line)


def _func(name: str, params: ast.arguments, body: list[ast.stmt], line: int) -> ast.FunctionDef:
    fn = ast.FunctionDef(name=name, args=params, body=body or [ast.Pass()], decorator_list=[],
                         returns=None, type_comment=None)
    if "type_params" in ast.FunctionDef._fields:
        fn.type_params = []  # type: ignore[attr-defined]
    fn.lineno = fn.end_lineno = line
    fn.col_offset = fn.end_col_offset = 0
    return _fix([fn], line)[0]  # type: ignore[return-value]


def _simple_args(names: list[str]) -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[ast.arg(arg=n) for n in names], vararg=None,
                         kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])


def _bound_checks(loop: ast.For, var: str, params: list[str], pre: list[ast.stmt],
                  filename: str, fname: str) -> list[ast.stmt]:
    """Compiled checks that arrays indexed by the loop variable are long enough.

    Only accesses executed unconditionally on every iteration are checked: in
    statements directly in the loop body, before any statement that can skip
    the rest of the iteration (a ``continue``, ``break``, ``return`` or
    ``raise``, directly or under an ``if``/``try``...), outside conditional
    expressions, and of parameters that the prologue does not rebind.  So a
    guarded access (``if i + 1 < n: ...``, ``if i == n - 1: continue``) or an
    access to a parameter the loop binds again (``row = M[i]``) never raises a
    false alarm; an unchecked access that does overrun raises
    ``IndexError`` with ``boundscheck=True``.
    """
    # (a parameter bound again in the prologue or anywhere in the loop's body,
    # `row = M[i]`, is another array by the time it is read)
    rebound = {n for st in (*_walk_stmts(pre), *_walk_stmts(loop.body))
               for n in _stmt_targets(st)}
    out = _length_checks(loop, var, loop.body, params, rebound, filename, fname,
                         "__ls_lo", "__ls_step", "__ls_n", loop.lineno)
    # an inner range loop that runs whole on every iteration, over bounds that
    # are the same for every iteration (`for j in range(A.shape[1])`): the
    # arrays it indexes by its variable are checked too (a vector shorter than
    # A's rows was read past its end)
    assigned = rebound | {var}
    for k, st in enumerate(loop.body):
        if _may_skip_rest(st):
            break
        if not (isinstance(st, ast.For) and isinstance(st.target, ast.Name) and not st.orelse
                and isinstance(st.iter, ast.Call) and isinstance(st.iter.func, ast.Name)
                and st.iter.func.id == "range" and not st.iter.keywords
                and 1 <= len(st.iter.args) <= 3):
            continue
        rargs = st.iter.args
        if not all(_invariant_bound(a, assigned) for a in rargs):
            continue
        lo, hi, step = ((ast.unparse(rargs[0]), ast.unparse(rargs[1]),
                         ast.unparse(rargs[2])) if len(rargs) == 3 else
                        (ast.unparse(rargs[0]), ast.unparse(rargs[1]), "1")
                        if len(rargs) == 2 else ("0", ast.unparse(rargs[0]), "1"))
        j = f"__ls_j{k}"
        checks = _length_checks(st, st.target.id, st.body, params, rebound, filename, fname,
                                f"{j}lo", f"{j}st", f"{j}n", st.lineno)
        if not checks:
            continue
        head = _stmts(f"""
            if __ls_n > 0:
                {j}lo = {lo}
                {j}st = {step}
                {j}n = len(range({j}lo, {hi}, {j}st))
        """, st.lineno)
        head[0].body += checks  # type: ignore[attr-defined]
        out += head
    return out


def _invariant_bound(expr: ast.expr, assigned: set[str]) -> bool:
    """*expr* (a ``range`` bound of an inner loop) has the same value on every
    iteration of the loop around it, and evaluating it before that loop does
    nothing else: names none of which the loop assigns, numbers, arithmetic,
    ``x.shape[k]``, ``len(x)``."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Name):
            if n.id in assigned:
                return False
        elif isinstance(n, ast.Call):
            if not (isinstance(n.func, ast.Name) and n.func.id == "len"
                    and len(n.args) == 1 and not n.keywords):
                return False
        elif not isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Attribute,
                                ast.Subscript, ast.Load, ast.operator, ast.unaryop)):
            return False
    return True


def _length_checks(loop: ast.For, var: str, body: list[ast.stmt], params: list[str],
                   rebound: set[str], filename: str, fname: str, lo: str, step: str,
                   n: str, line0: int) -> list[ast.stmt]:
    """The checks of :func:`_bound_checks` for the loop over *var* whose first
    value, step and trip count are the variables *lo*, *step*, *n*."""
    from ._astutil import _index_positions

    #: (array, axis, the constant indices before that axis, or None) -> the read
    #: or write reaching furthest past the loop variable there
    seen: dict[tuple[str, int, tuple[int, ...] | None], tuple[int, str, int, str]] = {}
    for st in body:
        if _may_skip_rest(st):
            break  # what follows may not run on every iteration
        if not isinstance(st, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)):
            continue
        skip = {id(n) for node in ast.walk(st) if isinstance(node, (ast.IfExp, ast.BoolOp))
                for n in ast.walk(node)}
        for node in ast.walk(st):
            if not isinstance(node, ast.Subscript) or id(node) in skip:
                continue
            base_name, pos = _index_positions(node)
            if base_name is None or base_name.id not in params or base_name.id in rebound:
                continue
            if base_name.id == var:
                continue
            for axis, e in enumerate(pos):
                off = None
                if isinstance(e, ast.Name) and e.id == var:
                    off = 0
                elif (isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Sub))
                      and isinstance(e.left, ast.Name) and e.left.id == var
                      and isinstance(e.right, ast.Constant) and isinstance(e.right.value, int)):
                    off = e.right.value if isinstance(e.op, ast.Add) else -e.right.value
                if off is None:
                    continue
                lead = [_const_int(x) for x in pos[:axis]]
                key = (base_name.id, axis, None if None in lead else tuple(lead))  # type: ignore[arg-type]
                if key not in seen or off > seen[key][0]:
                    seen[key] = (off, ast.unparse(node), node.lineno, _verb(st, node))
    # the loop's own bound: range(len(a)) / range(a.shape[0]) (start >= 0, unit
    # step) cannot overrun a[i] on axis 0, so that check would be dead code
    own = None
    args = loop.iter.args  # type: ignore[attr-defined]
    if len(args) in (1, 2) and (len(args) == 1 or (
            isinstance(args[0], ast.Constant) and isinstance(args[0].value, int)
            and args[0].value >= 0)):
        stop = args[-1]
        if (isinstance(stop, ast.Call) and isinstance(stop.func, ast.Name)
                and stop.func.id == "len" and len(stop.args) == 1
                and isinstance(stop.args[0], ast.Name)):
            own = (stop.args[0].id, 0)
        elif (isinstance(stop, ast.Subscript) and isinstance(stop.value, ast.Attribute)
              and stop.value.attr == "shape" and isinstance(stop.value.value, ast.Name)
              and isinstance(stop.slice, ast.Constant) and isinstance(stop.slice.value, int)):
            own = (stop.value.value.id, stop.slice.value)
    out: list[ast.stmt] = []
    for (name, axis, lead), (off, text, line, verb) in seen.items():
        if (name, axis) == own and off <= 0:
            continue
        # `a[k][i]`: the length of `a[k]`, an array's row or a tuple's array (a
        # tuple of arrays passed in has no shape); `a[j, i]`: the array's axis
        part = None if axis == 0 or lead is None else name + "".join(f"[{k}]" for k in lead)
        length = (f"__ls_len0({name})" if axis == 0 else f"__ls_len0({part})" if part
                  else f"__ls_dim({name}, {axis})")
        short = (f"is too short: `{part}` has too few elements" if part
                 else f"is too short along axis {axis}")
        msg = (f"{_ARG_MARK} argument {name!r} of {fname}() {short} for "
               f"the loop at {filename}:{loop.lineno}, which {verb} `{text}` (line {line}) for "
               f"every {var} in {ast.unparse(loop.iter)}; pass arrays of matching lengths")
        out += _stmts(f"""
            if {n} > 0:
                __ls_vmax = {lo} + ({n} - 1) * {step}
                if __ls_vmax < {lo}:
                    __ls_vmax = {lo}
                if __ls_vmax + ({off}) >= {length}:
                    raise ValueError({msg!r})
        """, line0)
    return out


_ARG_MARK = "loopscale-argument:"


def _may_skip_rest(st: ast.stmt) -> bool:
    """Whether *st* can leave the current iteration early (so that the
    statements after it do not run on every iteration)."""
    if isinstance(st, (ast.Continue, ast.Break, ast.Return, ast.Raise, ast.Assert)):
        return True
    if not isinstance(st, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.Match)
                      if hasattr(ast, "Match") else (ast.If, ast.For, ast.While, ast.With,
                                                     ast.Try)):
        return False
    todo = list(ast.iter_child_nodes(st))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                             ast.ClassDef)):
            continue
        if isinstance(node, (ast.Continue, ast.Break, ast.Return, ast.Raise, ast.Assert)):
            return True  # (a break of an inner loop counts too: cautious, never wrong)
        todo.extend(ast.iter_child_nodes(node))
    return False


def _verb(st: ast.stmt, node: ast.Subscript) -> str:
    """How statement *st* uses the array element *node*, for a message."""
    if isinstance(st, ast.AugAssign) and st.target is node:
        return "updates"
    if isinstance(node.ctx, ast.Store):
        return "writes"
    return "reads"


def _const_nonneg(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
        return node.value
    return None


def _sequential_with_ranges(body: list[ast.stmt], analysis: LoopAnalysis) -> list[ast.stmt]:
    """The function body with its analysed (sequential) loop recording, in the
    error-state slots, the iteration it is at, so that an exception names it.

    The loop keeps its order and semantics: every iteration stores its index
    before running (two integer stores; sequential loops are not vectorized).
    """
    idx = analysis.loop_index
    if idx is None or not analysis.range_args:
        return body
    loop = body[idx]
    if not isinstance(loop, ast.For) or not isinstance(loop.target, ast.Name):
        return body
    loop = copy.deepcopy(loop)
    line = loop.lineno
    nargs = len(analysis.range_args)
    pre = _range_assign(analysis.range_args, line, checked=True)
    pre += _stmts("""
        __ls_put(__ls_sta, 2, __ls_lo)
        __ls_put(__ls_sta, 3, __ls_step)
    """, line)
    var = loop.target.id
    if nargs < 3:
        step_expr = "1"
    else:
        step_expr = "__ls_step"
    loop.iter = _fix([ast.Expr(ast.parse(f"range(__ls_lo, __ls_hi, {step_expr})",
                                         mode="eval").body)], line)[0].value  # type: ignore
    track = _stmts(f"""
        __ls_kk = ({var} - __ls_lo) // __ls_step
        __ls_put(__ls_sta, 0, __ls_kk)
        __ls_put(__ls_sta, 1, __ls_kk + 1)
    """, line)
    loop.body = track + loop.body
    after = _stmts("__ls_put(__ls_sta, 1, -1)", line)
    return body[:idx] + pre + [loop] + after + body[idx + 1:]


def generate(fdef: ast.FunctionDef, analysis: LoopAnalysis, is_prange, base: str,  # type: ignore
             filename: str = "", fname: str = "", deferred: bool = False) -> GeneratedCode:
    """Build the generated module for *fdef* (absolute line numbers) and *analysis*.

    With *deferred*, the serial function and the chunk kernel are compiled
    with the deferred zero-division model (see :mod:`._lowering`): each block
    (each chunk, for a loop without reductions) ends by raising the float
    division by zero its iterations met.
    """
    fdef = copy.deepcopy(fdef)
    fdef.decorator_list = []
    fdef = _PrangeToRange(is_prange).visit(fdef)
    name_defaults(fdef.args)
    head = fdef.lineno
    serial_name = f"{base}__ls_serial"

    # the serial function always takes the error-state array first
    serial_args = copy.deepcopy(fdef.args)
    serial_args.posonlyargs = []
    serial_args.args = [ast.arg(arg="__ls_sta")] + fdef.args.posonlyargs + fdef.args.args
    # a function with positional-only parameters keeps them positional-or-keyword here

    if not analysis.parallel or analysis.loop_index is None:
        body = _stmts("__ls_put(__ls_sta, 1, -1)",
                      head) + _sequential_with_ranges(fdef.body, analysis)
        serial = _func(serial_name, serial_args, body, head)
        module = ast.Module(body=[serial], type_ignores=[])
        return GeneratedCode(module, serial_name, None, None, None, (), analysis.reason or
                             "the loop is not parallel")

    idx = analysis.loop_index
    loop: ast.For = fdef.body[idx]  # type: ignore[assignment]
    line = loop.lineno
    pre, post = fdef.body[:idx], fdef.body[idx + 1:]
    var = analysis.loop_var
    reds = dict(analysis.reductions)
    forms = dict(getattr(analysis, "reduction_forms", None) or {})
    #: `if d < best: best = d; idx = i`: the payloads of each such reduction
    pays = {s: tuple(ps) for s, ps in (getattr(analysis, "reduction_payloads", None)
                                       or {}).items() if ps and s in reds}
    pay_names = [p for ps in pays.values() for p in ps]
    rename = {s: f"__ls_r_{s}" for s in [*reds, *pay_names]}
    has_red = bool(reds)
    #: `s = min(e, s)` reductions: a per-block flag, set when the block met a NaN
    flags = {s: f"__ls_nan_{s}" for s, op in reds.items()
             if op in ("min", "max") and forms.get(s) == "last"}
    #: reductions with payloads: a per-block flag, set when the block updated it
    hits = {s: f"__ls_hit_{s}" for s in pays}
    #: those updated by a strict comparison (`if d < best:`): the block updated one
    #: exactly when its value ends below (above) where the block started, so the
    #: flag is worked out after the block, not set in the loop (setting it there
    #: cost 40 % of a nearest-point search's chunk kernel)
    strict = {s for s in hits if forms.get(s) == "strict"}
    # the per-block partials: one per reduction, one per flag, then the payloads
    # and their flags
    partials = [*reds, *flags.values(), *pay_names, *hits.values()]

    def body_copy(serial: bool = False) -> list[ast.stmt]:
        b = [_Rename(rename).visit(copy.deepcopy(st)) for st in loop.body]
        if serial and scatter_params:
            direct = _DirectScatter({rename[h]: (h, f"__ls_direct_{h}")
                                     for h in scatter_params})
            b = [direct.visit(st) for st in b]
        if flags:
            tr = _FlagNaN({rename[s]: f for s, f in flags.items()})
            b = [n for st in b for n in (lambda r: r if isinstance(r, list) else [r])(
                tr.visit(st))]
        if set(hits) - strict:
            mark = _SetHit({rename[s]: f for s, f in hits.items() if s not in strict})
            b = [mark.visit(st) for st in b]
        if sets:  # a flag's block partial: whether the block set it
            mark_set = _SetFlag({rename[s] for s in sets})
            b = [mark_set.visit(st) for st in b]
        return b

    scatters = tuple(getattr(analysis, "reduction_scatters", None) or ())
    #: those into arguments: the fused serial code adds into the argument itself
    #: where per-block sums would not repeat the loop (see _DirectScatter)
    scatter_params = dict(getattr(analysis, "scatter_params", None) or {})
    sets = dict(getattr(analysis, "reduction_sets", None) or {})
    for s, value in sets.items():
        forms[s] = value  # (the combine of a flag sets its constant)

    def combine(s: str, op: str, p: str, flag: str | None,
                part: object = None) -> list[ast.stmt]:
        if s in pays:
            # *part*: how a partial is named (a local in serial, an array in post)
            name = part if callable(part) else (lambda x: rename.get(x, x))
            return _stmts(_payload_combine_src(s, op, forms.get(s), p, name(hits[s]),
                                               [(x, name(x)) for x in pays[s]]), line)
        return _stmts(_combine_src(s, op, forms.get(s), p, flag), line)

    def block_start(like: object) -> list[ast.stmt]:
        """A block's payloads and hit flags before its first iteration (*like*:
        the source of a value typed as each payload's partial)."""
        out: list[ast.stmt] = []
        for x in pay_names:
            out += _stmts(f"{rename[x]} = {like(x)}", line)  # type: ignore[operator]
        for h in hits.values():
            out += _stmts(f"{h} = False", line)
        for x in strict:
            out += _stmts(f"__ls_i0_{x} = {rename[x]}", line)
        return out

    def hits_after() -> list[ast.stmt]:
        """The flags of the strict payload reductions, after a block's loop."""
        return [st for x in sorted(strict) for st in _stmts(
            f"{hits[x]} = {rename[x]} {'<' if reds[x] == 'min' else '>'} __ls_i0_{x}", line)]

    nargs = len(analysis.range_args)
    # an iteration that runs a loop of its own: short reduction blocks (see _runtime)
    nested = any(isinstance(n, (ast.For, ast.While)) for st in loop.body for n in ast.walk(st))

    def block_loop(start: str, stop: str, serial: bool = False) -> ast.For:
        # iterations [start, stop) of the iteration space; with a unit step the
        # loop variable is the induction variable itself, as in the original
        # loop, so LLVM sees the same loop Numba's njit would compile
        start_const = (0 if nargs == 1 else _const_nonneg(analysis.range_args[0]))
        if nargs == 1:
            inner = _stmts(f"for {var} in range({start}, {stop}):\n    pass", line)[0]
            inner.body = []  # type: ignore[attr-defined]
        elif nargs == 2:
            # a constant start is written as the literal: the chunk kernel gets
            # `__ls_lo` as an argument, and LLVM, not knowing it, would keep the
            # negative-index wraparound of `a[i - 1]` (measured ~30% slower)
            lo = "__ls_lo" if start_const is None else str(start_const)
            inner = _stmts(f"for {var} in range({lo} + {start}, {lo} + {stop}):\n"
                           "    pass", line)[0]
            inner.body = []  # type: ignore[attr-defined]
        else:
            step_node = analysis.range_args[2]
            step_const = (step_node.value if isinstance(step_node, ast.Constant)
                          and type(step_node.value) is int else None)
            lo = "__ls_lo" if start_const is None else str(start_const)
            step = "__ls_step" if step_const is None else f"({step_const})"
            inner = _stmts(f"""
                for __ls_k in range({start}, {stop}):
                    {var} = {lo} + __ls_k * {step}
            """, line)[0]
        if nargs <= 2 and start_const is not None:
            inner.body += _stmts(f"{var} = __ls_nonneg({var})", line)  # type: ignore
        inner.body.extend(body_copy(serial))  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    def zdiv_check() -> list[ast.stmt]:
        if not deferred:
            return []
        return _stmts("""
            if __ls_zdiv():
                raise ZeroDivisionError("division by zero")
        """, line)

    # ---- serial ------------------------------------------------------------
    s_body: list[ast.stmt] = _stmts("__ls_put(__ls_sta, 1, -1)", head) + list(pre)
    s_body += _range_assign(analysis.range_args, line, checked=True)
    s_body += _stmts(_trip_src(nargs), line)
    s_body += _stmts("""
        __ls_put(__ls_sta, 2, __ls_lo)
        __ls_put(__ls_sta, 3, __ls_step)
    """, line)
    params = [a.arg for a in fdef.args.posonlyargs + fdef.args.args + fdef.args.kwonlyargs]
    checks = _bound_checks(loop, var, params, pre, filename, fname)  # type: ignore[arg-type]
    s_body += copy.deepcopy(checks)
    s_body += _stmts(_block_src(has_red, nested, scatters, scatter_params), line)
    for s in reds:
        s_body += _stmts(f"__ls_s0_{s} = {s}", line)
    all_params = [*params, *([fdef.args.vararg.arg] if fdef.args.vararg else [])]
    for h, kind in scatter_params.items():
        # `h` meets another argument: adding into it at once, as the loop does,
        # is the only order in which what the loop reads through the other sees
        # the sums the loop has made; and an integer array given values that may
        # not be integers (a bool one given other than positive counts) takes
        # each addition truncated, in the loop's order: every statement into `h`
        # then adds into it, whatever its own value
        others = [f"__ls_meets({h}, {p})" for p in all_params if p != h]
        typed = ([] if kind == "count" else
                 [f"__ls_scatter_in_order({h}, {1 if kind == 'any' else 0})"])
        s_body += _stmts(f"__ls_direct_{h} = " + " or ".join([f"__ls_not_array({h})",
                                                             *typed, *others]), line)
    outer = _stmts("""
        for __ls_b0 in range(0, __ls_n, __ls_bs):
            __ls_b1 = __ls_b0 + __ls_bs
            if __ls_b1 > __ls_n:
                __ls_b1 = __ls_n
            __ls_put(__ls_sta, 0, __ls_b0)
            __ls_put(__ls_sta, 1, __ls_b1)
    """, line)[0]
    for s, op in reds.items():
        outer.body += _stmts(f"{rename[s]} = " + (  # type: ignore[attr-defined]
            f"__ls_scatter_zero(__ls_s0_{s})" if s in scatter_params else _identity_src(
                op, f"__ls_s0_{s}", f"__ls_s0_{s}", forms.get(s))), line)
    for f in flags.values():
        outer.body += _stmts(f"{f} = False", line)  # type: ignore[attr-defined]
    outer.body += block_start(lambda x: x)  # type: ignore[attr-defined]
    outer.body.append(block_loop("__ls_b0", "__ls_b1", serial=True))  # type: ignore[attr-defined]
    outer.body += hits_after()  # type: ignore[attr-defined]
    outer.body += zdiv_check()  # type: ignore[attr-defined]
    for s, op in reds.items():
        step_in = combine(s, op, rename[s], flags.get(s))
        if s in scatter_params:  # (added at once instead: nothing to add)
            step_in = _stmts(f"if not __ls_direct_{s}:\n"
                             f"    __ls_scatter_add({s}, {rename[s]})", line)
        outer.body += step_in  # type: ignore[attr-defined]
    s_body.append(outer)
    s_body += _stmts("__ls_put(__ls_sta, 1, -1)", line)
    s_body += list(post)
    serial = _func(serial_name, serial_args, s_body, head)

    # ---- plan: pre / chunk / post -----------------------------------------------
    bound = defined_before(fdef, pre)
    used = set()
    for st in loop.body:
        used |= _names_loaded(st)
    in_loop = set(used)
    used |= {n for st in post for n in _names_loaded(st)}
    used |= set(reds)
    # functions defined before the loop are copied into the chunk kernel and
    # the epilogue (a function object cannot cross between compiled functions);
    # what they read from the prologue travels with the state
    local_defs = [st for st in pre if isinstance(st, ast.FunctionDef)]
    local_names = {d.name for d in local_defs}
    for d in local_defs:
        used |= _names_loaded(d)
        in_loop |= _names_loaded(d)
    assigned_in_loop = {n for st in _walk_stmts(loop.body) for n in _stmt_targets(st)} | {var}
    state = tuple(sorted((bound & used) - (assigned_in_loop - set(reds) - set(pay_names))
                         - local_names))
    plan_reason = None
    has_return = any(isinstance(n, ast.Return) for st in pre for n in ast.walk(st))
    # a call may write through its arguments: counted as a write unless it is a
    # plain allocation or a len()/range()/shape-like builtin
    pure_calls = {"len", "range", "min", "max", "abs", "int", "float", "bool", "zeros",
                  "ones", "empty", "zeros_like", "ones_like", "empty_like", "full",
                  "full_like", "arange", "sqrt", "exp", "log"}
    pre_writes = any(
        isinstance(n, (ast.Subscript, ast.Attribute)) and isinstance(n.ctx, ast.Store)
        or isinstance(n, ast.AugAssign)
        or isinstance(n, ast.Call) and not (
            isinstance(n.func, ast.Name) and n.func.id in pure_calls
            or isinstance(n.func, ast.Attribute) and n.func.attr in pure_calls)
        for st in pre for n in ast.walk(st))
    if has_return and any(
            isinstance(n, (ast.Subscript, ast.Attribute)) and isinstance(n.ctx, ast.Store)
            or isinstance(n, ast.AugAssign)
            for st in pre for n in ast.walk(st)):
        plan_reason = ("the code before the loop can return early after writing to memory; "
                       "the loop runs on one core")
    defs: list[ast.stmt] = [serial]
    names = [None, None, None]
    if plan_reason is None:
        pre_name, chunk_name, post_name = (f"{base}__ls_pre", f"{base}__ls_chunk",
                                           f"{base}__ls_post")
        pre_body = [_ReturnToRaise().visit(copy.deepcopy(st)) for st in pre]
        pre_body += _range_assign(analysis.range_args, line, checked=True)
        pre_body += _stmts(_trip_src(nargs), line)
        pre_body += copy.deepcopy(checks)
        if has_red:
            pre_body += _stmts(_block_src(True, nested, scatters), line)
        else:
            pre_body += _stmts("__ls_bs = 1", line)
        pre_body += _stmts("__ls_nb = (__ls_n + __ls_bs - 1) // __ls_bs", line)
        for s, op in reds.items():
            pre_body += _stmts(f"{rename[s]} = " + _identity_src(op, s, s, forms.get(s)),
                               line)
        for f in flags.values():
            pre_body += _stmts(f"{f} = False", line)
        pre_body += block_start(lambda x: x)
        if has_red:
            dead = _stmts("""
                if __ls_n < 0:
                    for __ls_k in range(0, 1):
                        pass
            """, line)[0]
            dead_loop = dead.body[0]  # type: ignore[attr-defined]
            dead_loop.body = _stmts(f"{var} = __ls_lo + __ls_k * __ls_step", line) + body_copy()
            pre_body.append(dead)
        # the identities, typed like the partials (the dead copy of the body above
        # unified their types); the caller allocates one partial per block from them
        parts = "".join(f"{rename.get(s, s)}, " for s in partials)
        state_t = "".join(f"{s}, " for s in state)
        # one flat tuple of scalars and arrays: flat arguments keep Numba's
        # dispatch on its fast path (a nested tuple costs tens of microseconds)
        pre_body += _stmts(f"return (__ls_lo, __ls_step, __ls_n, __ls_bs, __ls_nb, {parts}"
                           f"{state_t})", line)
        pre_fn = _func(pre_name, copy.deepcopy(fdef.args), pre_body, head)

        part_params = [f"__ls_p_{s}" for s in partials]
        c_body: list[ast.stmt] = [copy.deepcopy(d) for d in local_defs]
        if has_red:
            for s in reds:
                c_body += _stmts(f"__ls_s0_{s} = {s}", line)
            blk = _stmts("""
                for __ls_b in range(__ls_c0, __ls_c1):
                    __ls_b0 = __ls_b * __ls_bs
                    __ls_b1 = __ls_b0 + __ls_bs
                    if __ls_b1 > __ls_n:
                        __ls_b1 = __ls_n
            """, line)[0]
            for s, op in reds.items():
                # (a min/max partial takes the partials' type: the accumulator's)
                blk.body += _stmts(f"{rename[s]} = " + _identity_src(  # type: ignore
                    op, f"__ls_s0_{s}", f"__ls_p_{s}[__ls_b]", forms.get(s)), line)
            for f in flags.values():
                blk.body += _stmts(f"{f} = False", line)  # type: ignore[attr-defined]
            blk.body += block_start(lambda x: f"__ls_p_{x}[__ls_b]")  # type: ignore
            blk.body.append(block_loop("__ls_b0", "__ls_b1"))  # type: ignore[attr-defined]
            blk.body += hits_after()  # type: ignore[attr-defined]
            blk.body += zdiv_check()  # type: ignore[attr-defined]
            for s in [*reds, *flags.values(), *pay_names, *hits.values()]:
                blk.body += _stmts(f"__ls_p_{s}[__ls_b] = {rename.get(s, s)}",  # type: ignore
                                   line)
            c_body.append(blk)
        else:
            c_body.append(block_loop("__ls_c0", "__ls_c1"))
            c_body += zdiv_check()
        chunk_fn = _func(chunk_name, _simple_args(
            ["__ls_c0", "__ls_c1", "__ls_lo", "__ls_step", "__ls_n", "__ls_bs", *part_params,
             *state]), c_body, line)

        p_body: list[ast.stmt] = [copy.deepcopy(d) for d in local_defs]
        if has_red:
            comb = _stmts("""
                for __ls_b in range(__ls_nb):
                    pass
            """, line)[0]
            comb.body = []  # type: ignore[attr-defined]
            for s, op in reds.items():
                comb.body += combine(s, op, f"__ls_p_{s}[__ls_b]",  # type: ignore[attr-defined]
                                     f"__ls_p_{flags[s]}[__ls_b]" if s in flags else None,
                                     lambda x: f"__ls_p_{x}[__ls_b]")
            p_body.append(comb)
        p_body += list(post)
        post_fn = _func(post_name, _simple_args(["__ls_nb", *part_params, *state]),
                        p_body, line)
        defs += [pre_fn, chunk_fn, post_fn]
        names = [pre_name, chunk_name, post_name]  # type: ignore[list-item]
    module = ast.Module(body=defs, type_ignores=[])
    return GeneratedCode(module, serial_name, names[0], names[1], names[2], state, plan_reason,
                         tuple(partials), tuple(s for s in state if s in in_loop), pre_writes,
                         post_empty=not reds and not post)


#: The formatting function compiled code calls for ``str(x)`` and f-strings
#: (:func:`._runtime.ls_fmt`).
FMT = "__ls_fmt"


class _PythonStrings(ast.NodeTransformer):
    def __init__(self, rewrite_str: bool) -> None:
        self.rewrite_str = rewrite_str

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        self.generic_visit(node)
        spec = node.format_spec if node.format_spec is not None else ast.Constant("")
        call = ast.Call(ast.Name(FMT, ast.Load()),
                        [node.value, spec, ast.Constant(node.conversion)], [])
        new = ast.FormattedValue(value=call, conversion=-1, format_spec=None)
        for n in ast.walk(new):
            ast.copy_location(n, node)
        return new

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if (self.rewrite_str and isinstance(node.func, ast.Name) and node.func.id == "str"
                and len(node.args) == 1 and not node.keywords
                and not isinstance(node.args[0], ast.Starred)):
            new = ast.Call(ast.Name(FMT, ast.Load()),
                           [node.args[0], ast.Constant(""), ast.Constant(-1)], [])
            for n in ast.walk(new):
                ast.copy_location(n, node)
            return new
        return node


#: The name of ``_runtime.ls_pow`` in generated code.
POW = "__ls_pow"


class _PythonPowers(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.op, ast.Pow):
            return node
        right = node.right
        if isinstance(right, ast.Constant) and (
                isinstance(right.value, float)
                or (type(right.value) is int and right.value >= 0)):
            return node  # (a literal exponent: Numba's own fast forms, x * x for x ** 2)
        new = ast.Call(ast.Name(POW, ast.Load()), [node.left, node.right], [])
        for n in ast.walk(new):
            if not hasattr(n, "lineno") or n is new or isinstance(n, ast.Name) and n.id == POW:
                ast.copy_location(n, node)
        return new


def python_powers(module: ast.Module) -> ast.Module:
    """*module* with ``x ** y`` (an exponent that is not a literal ``>= 0``)
    through :data:`POW`: an integer to a negative integer power is 0 in compiled
    code (a float in Python) and raises there instead.  In place; returns
    *module*."""
    if not any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow)
               for n in ast.walk(module)):
        return module
    return _PythonPowers().visit(module)  # type: ignore[no-any-return]


def python_strings(module: ast.Module, str_rebound: bool) -> ast.Module:
    """*module* with ``str(x)`` and the fields of f-strings formatted as Python
    formats them (through :data:`FMT`): Numba's ``str(1.5)`` is
    ``'<object type:float64>'``.  ``str(...)`` is left alone where the user's
    code rebinds ``str`` (*str_rebound*).  In place; returns *module*."""
    if not any(isinstance(n, ast.FormattedValue) or (
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "str")
            for n in ast.walk(module)):
        return module
    return _PythonStrings(not str_rebound).visit(module)  # type: ignore[no-any-return]
