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

__all__ = ["SEQLEN", "INDEX", "rewrite_loops"]

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
