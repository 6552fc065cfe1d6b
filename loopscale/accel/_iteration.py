"""Loops over arrays written the Python way, as the range loops the analysis reads.

``for v in x``, ``for i, v in enumerate(x)`` and ``for a, b in zip(x, y)`` (and
their nestings, ``for i, (a, b) in enumerate(zip(x, y))``) at the top level of
a function are rewritten, before the analysis, as::

    for i in range(__ls_seqlen(x)):        # min(...) of the lengths for zip
        v = x[i]
        ...

For an array (or a tuple) this is what iterating it does: the iterator reads
``x[0]``, ``x[1]``, ... one by one, each when its iteration starts (rows of a
2-D array are views, as ``x[i]`` is), and leaves the last item bound after the
loop.  So the rewritten function is the user's for every argument it compiles
for, and the analysis can then prove the iterations independent as for any
range loop.  ``__ls_seqlen`` (:func:`._runtime.ls_seqlen`) refuses at typing
anything that does not iterate that way: a typed ``Dict`` (its keys), a list
(``append`` in the loop would extend the iteration), a set, a string, a
generator.  The decorator then builds the function again from the code as
written, whose loop runs in order.

Not rewritten (the loop keeps its verdict, "not a range loop"): an iterated
expression other than a plain name (``x[1:]``, ``x.T``, ``range(...)``), a
name the loop body assigns, ``enumerate(x, start)`` with a start other than
0, ``zip(..., strict=...)``, a loop with an ``else`` clause, and a target that
does not match the shape of what is iterated (``for pair in zip(x, y)``).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Container

from ._astutil import _const_int, _plain, _same

__all__ = ["SEQLEN", "INDEX", "rewrite_loops", "reverse_ranges", "accumulate_in_place"]

#: The name of the length guard in generated code (:func:`._runtime.ls_seqlen`).
SEQLEN = "__ls_seqlen"
#: The loop variable of a rewritten loop that names none (``for v in x``).
INDEX = "__ls_i"


def _leaves(target: ast.expr, it: ast.expr, index: str
            ) -> list[tuple[ast.expr, ast.expr]] | None:
    """``(target, value)`` assignments that bind *target* as iterating *it* does at
    position *index*, or None when the loop is not one this module rewrites."""
    if isinstance(it, ast.Name):
        return [(target, ast.Subscript(value=ast.Name(it.id, ast.Load()),
                                       slice=ast.Name(index, ast.Load()), ctx=ast.Load()))]
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
            and isinstance(target, (ast.Tuple, ast.List))
            and not any(isinstance(a, ast.Starred) for a in it.args)
            and not any(isinstance(e, ast.Starred) for e in target.elts)):
        return None
    if it.func.id == "enumerate":
        if len(it.args) == 2 and not it.keywords:
            start: ast.expr | None = it.args[1]
        elif len(it.args) == 1 and len(it.keywords) == 1 and it.keywords[0].arg == "start":
            start = it.keywords[0].value
        elif len(it.args) == 1 and not it.keywords:
            start = None
        else:
            return None
        if start is not None and not (isinstance(start, ast.Constant)
                                      and type(start.value) is int and start.value == 0):
            return None
        if len(target.elts) != 2:
            return None
        inner = _leaves(target.elts[1], it.args[0], index)
        if inner is None:
            return None
        return [(target.elts[0], ast.Name(index, ast.Load())), *inner]
    if it.func.id == "zip":
        if it.keywords or not it.args or len(target.elts) != len(it.args):
            return None
        out: list[tuple[ast.expr, ast.expr]] = []
        for t, a in zip(target.elts, it.args, strict=True):
            part = _leaves(t, a, index)
            if part is None:
                return None
            out.extend(part)
        return out
    return None


def _sequences(it: ast.expr) -> list[str]:
    """The names iterated, in order (``zip(x, enumerate(y))``: x, y)."""
    if isinstance(it, ast.Name):
        return [it.id]
    assert isinstance(it, ast.Call)
    args = it.args[:1] if getattr(it.func, "id", None) == "enumerate" else it.args
    return [n for a in args for n in _sequences(a)]


def _assigned(stmts: list[ast.stmt]) -> set[str]:
    return {n.id for st in stmts for n in ast.walk(st)
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}


def _rewrite(loop: ast.For) -> ast.For | None:
    if loop.orelse:
        return None
    target, it = loop.target, loop.iter
    if (isinstance(it, ast.Call) and getattr(it.func, "id", None) == "enumerate"
            and isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2
            and isinstance(target.elts[0], ast.Name)):
        index = target.elts[0].id  # the user's own index is the loop variable
    else:
        index = INDEX
    leaves = _leaves(target, it, index)
    if leaves is None:
        return None
    seqs = _sequences(it)
    bound = _assigned(loop.body) | {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    if set(seqs) & bound:
        # a sequence rebound in the loop (`for x in x`, or in the body): its
        # iterator would keep the old one
        return None
    if index != INDEX:
        leaves = leaves[1:]  # (not `i = i`)
    lengths: list[ast.expr] = [ast.Call(ast.Name(SEQLEN, ast.Load()), [ast.Name(s, ast.Load())],
                                        []) for s in dict.fromkeys(seqs)]
    n = lengths[0] if len(lengths) == 1 else ast.Call(ast.Name("min", ast.Load()), lengths, [])
    # (the targets keep their Store context: they were the loop's)
    body: list[ast.stmt] = [ast.Assign(targets=[copy.deepcopy(t)], value=v) for t, v in leaves]
    new = ast.For(target=ast.Name(index, ast.Store()),
                  iter=ast.Call(ast.Name("range", ast.Load()), [n], []),
                  body=body + loop.body, orelse=[], type_comment=None)
    for st in body:
        for node in ast.walk(st):
            ast.copy_location(node, loop)
    for node in ast.walk(new.iter):
        ast.copy_location(node, loop.iter)
    ast.copy_location(new.target, loop.target)
    return ast.copy_location(new, loop)


def _reversed_range(it: ast.expr) -> ast.Call | None:
    """``range(...)`` going the other way for ``reversed(range(...))`` or
    ``range(...)[::-1]`` (Numba compiles neither), or None: ``range(n)`` gives
    ``range(n - 1, -1, -1)``, ``range(a, b)`` ``range(b - 1, a - 1, -1)``, and
    ``range(a, b, s)`` with a literal step ``s`` starts from its last value,
    ``a + (b - a - 1) // s * s`` (``a - (a - b - 1) // k * k`` for ``s = -k``).
    Each bound is evaluated once, as in Python, and the values are the same."""
    if (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "reversed"
            and len(it.args) == 1 and not it.keywords):
        inner = it.args[0]
    elif (isinstance(it, ast.Subscript) and isinstance(it.slice, ast.Slice)
          and it.slice.lower is None and it.slice.upper is None
          and it.slice.step is not None and _const_int(it.slice.step) == -1):
        inner = it.value
    else:
        return None
    if not (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
            and inner.func.id == "range" and not inner.keywords and 1 <= len(inner.args) <= 3
            and not any(isinstance(a, ast.Starred) for a in inner.args)):
        return None
    args = inner.args
    step = 1
    if len(args) == 3:
        lit = _const_int(args[2])
        if not lit:
            return None
        step = lit

    def num(v: int) -> ast.expr:
        return ast.Constant(v) if v >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-v))

    def minus(e: ast.expr, v: int) -> ast.expr:
        return ast.BinOp(copy.deepcopy(e), ast.Sub() if v > 0 else ast.Add(), num(abs(v)))

    if len(args) == 1:
        new = [minus(args[0], 1), num(-1), num(-1)]
    elif step == 1:
        new = [minus(args[1], 1), minus(args[0], 1), num(-1)]
    elif step == -1:
        new = [minus(args[1], -1), minus(args[0], -1), num(1)]
    else:
        a, b, k = args[0], args[1], abs(step)
        hi, lo = (b, a) if step > 0 else (a, b)
        # the last value: a + (b - a - 1) // s * s, or a - (a - b - 1) // k * k
        span = ast.BinOp(minus(ast.BinOp(copy.deepcopy(hi), ast.Sub(), copy.deepcopy(lo)), 1),
                         ast.FloorDiv(), num(k))
        last = ast.BinOp(copy.deepcopy(a), ast.Add() if step > 0 else ast.Sub(),
                         ast.BinOp(span, ast.Mult(), num(k)))
        new = [last, minus(a, 1 if step > 0 else -1), num(-step)]
    call = ast.Call(ast.Name("range", ast.Load()), new, [])
    for node in ast.walk(call):
        ast.copy_location(node, it)
    return call


class _Reverser(ast.NodeTransformer):
    def __init__(self) -> None:
        self.changed = False

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        new = _reversed_range(node.iter)
        if new is not None:
            node.iter = new
            self.changed = True
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node  # (a nested function's loops are its own)


def reverse_ranges(fdef: ast.FunctionDef, shadowed: Container[str] = ()) -> ast.FunctionDef:
    """*fdef* with its loops over ``reversed(range(...))`` and ``range(...)[::-1]``
    (at any depth) over the descending ``range`` of the same values (a copy; the
    original when there is none, or when ``range`` or ``reversed`` is
    rebound)."""
    params = {a.arg for a in fdef.args.posonlyargs + fdef.args.args + fdef.args.kwonlyargs}
    taken = _assigned(fdef.body) | params | set(shadowed)
    if taken & {"range", "reversed"}:
        return fdef
    if not any(isinstance(n, ast.For) and _reversed_range(n.iter) is not None
               for n in ast.walk(fdef)):
        return fdef
    out = copy.deepcopy(fdef)
    rev = _Reverser()
    out.body = [rev.visit(st) for st in out.body]
    return out


def rewrite_loops(fdef: ast.FunctionDef, shadowed: Container[str] = ()
                  ) -> tuple[ast.FunctionDef, list[int]]:
    """*fdef* with its top-level loops over sequences as range loops (a copy; the
    original when there is none), and the lines of the loops rewritten.

    *shadowed*: names the function's globals or closure rebind; when one of
    ``range``, ``min``, ``enumerate`` or ``zip`` is among them, or the
    function assigns one, nothing is rewritten.
    """
    params = {a.arg for a in fdef.args.posonlyargs + fdef.args.args + fdef.args.kwonlyargs}
    taken = _assigned(fdef.body) | params | set(shadowed)
    if taken & {"range", "min", "enumerate", "zip"}:
        return fdef, []
    body: list[ast.stmt] = []
    lines: list[int] = []
    for st in fdef.body:
        new = _rewrite(st) if isinstance(st, ast.For) else None
        body.append(st if new is None else new)
        if new is not None:
            lines.append(st.lineno)
    if not lines:
        return fdef, []
    out = copy.copy(fdef)
    out.body = body
    return out, lines


#: ``t = t OP v`` is ``t OP= v`` for these; ``t = v OP t`` too for the commutative
#: ones (an IEEE sum or product is the same either way round, and so is an
#: integer's or a complex number's).
_IN_PLACE = (ast.Add, ast.Sub, ast.Mult, ast.BitOr, ast.BitAnd, ast.BitXor)
_COMMUTATIVE = (ast.Add, ast.Mult, ast.BitOr, ast.BitAnd, ast.BitXor)
def _element(node: ast.expr) -> bool:
    """``name[index]`` with a plain index (no call but ``len``, no slice): reading
    it twice reads one element."""
    return (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and _plain(node.slice)
            and not any(isinstance(n, ast.Slice) for n in ast.walk(node.slice)))


def _same_element(a: ast.expr, b: ast.Subscript) -> bool:
    return isinstance(a, ast.Subscript) and _same(a.value, b.value) and _same(a.slice, b.slice)


class _InPlace(ast.NodeTransformer):
    def visit_Assign(self, node: ast.Assign) -> ast.stmt:
        value = node.value
        if (len(node.targets) != 1 or not _element(node.targets[0])
                or not isinstance(value, ast.BinOp) or not isinstance(value.op, _IN_PLACE)):
            return node
        target = node.targets[0]
        assert isinstance(target, ast.Subscript)
        if _same_element(value.left, target):
            other = value.right
        elif isinstance(value.op, _COMMUTATIVE) and _same_element(value.right, target):
            other = value.left
            base = target.value.id  # type: ignore[attr-defined]
            if any(isinstance(n, ast.Name) and n.id == base for n in ast.walk(other)):
                return node  # (evaluated first, it could change the element)
        else:
            return node
        return ast.copy_location(ast.AugAssign(target=target, op=value.op, value=other), node)


def accumulate_in_place(fdef: ast.FunctionDef) -> ast.FunctionDef:
    """*fdef* with ``h[b] = h[b] + w`` (and ``h[b] = w + h[b]``, ``-``, ``*``, ``|``,
    ``&``, ``^``) written ``h[b] += w``, which it is: the element is read, then
    *w* evaluated, the two combined and stored back, in the same order.  The
    analysis knows the augmented form as an accumulation (a histogram: per-block
    sums), and refused the plain assignment as a write at an index that does
    not follow the loop variable.  An index with a call (but ``len``) or a slice
    is left as it is (evaluated twice, it might not name one element)."""
    if not any(isinstance(n, ast.Assign) and isinstance(n.value, ast.BinOp)
               for n in ast.walk(fdef)):
        return fdef
    out = _InPlace().visit(copy.deepcopy(fdef))
    ast.fix_missing_locations(out)
    return out  # type: ignore[no-any-return]
