"""Calls with distributed arguments: the protocol between ``accel`` and a partitioned array.

``accel`` knows nothing of MPI.  An argument whose type has the attribute
``__loopscale_distributed__`` holds only a block of rows (axis 0) of a larger
array; ``distribute.DistArray`` is the one loopscale ships, and a third party
could write another the same way.  When a decorated function is called with
such an argument, ``accel``

1. checks that the call can run where the data lives: the loop is parallel
   (and outlined into a plan), every distributed argument is indexed in the
   loop with the loop variable on axis 0 (``u[i]``, ``u[i - 1, j]``), and the
   code before and after the loop uses it only for its shape, ``ndim``,
   ``size``, ``dtype``, ``len()`` or to allocate a like-shaped array
   (:func:`check_call`, which names the file and line when it is not so);
2. asks the type for a *call object*:
   ``type(arg).__loopscale_distributed__(function=..., analysis=...,
   arrays={name: arg}, params=(...), level=..., options={...},
   read_after_loop=frozenset(...))`` (the names the code after the loop reads
   other than to return them: arrays the loop fills that must then be whole);
3. replaces each distributed argument by ``call.views[name]``, a NumPy array
   of the *global* shape whose rows this process may touch are those the call
   object has made valid (its own rows and their halos), runs the prologue,
   hands the plan to ``call.run(plan)`` (the call object is the executor: it
   exchanges halos, runs this process's blocks and combines the reduction
   partials of every process), runs the epilogue, and returns
   ``call.finish(result)`` (which turns views back into distributed arrays);
4. calls ``call.release()``, when the call object has it, once the call is
   over, whether it returned or raised (a type may keep call objects between
   calls with the same arrays; this says the arrays are no longer in use).

A call object that has ``reuse(*arrays)`` may be run again: for a call with
the very same distributed arrays in the same places at the same level as one
of its last few calls, ``accel`` asks that call object ``reuse(...)`` (it
answers False unless the arrays are the ones it was made for and it is idle)
instead of asking the type for a new one, then goes through steps 3 and 4 as
before.  It holds such call objects weakly; a stencil stepped many times thus
skips the type's call-object set-up.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import DistributionError

__all__ = ["PROTOCOL", "distributed_arguments", "check_aliases", "check_call", "check_regions"]

#: The attribute that marks a distributed-array type.
PROTOCOL = "__loopscale_distributed__"

#: What the code before and after the loop may do with a distributed argument.
_META_ATTRS = frozenset({"shape", "ndim", "size", "dtype"})
_LIKE_FUNCS = frozenset({"len", "empty_like", "zeros_like", "ones_like", "full_like",
                         "__ls_seqlen"})  # (the length of a rewritten `for v in u`)


def is_distributed(value: Any) -> bool:
    """Whether *value* is a distributed array (its type follows the protocol)."""
    return hasattr(type(value), PROTOCOL)


def distributed_arguments(names: Iterable[str], args: tuple[Any, ...],
                          kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter name -> distributed argument, for the arguments that are distributed."""
    found = {n: v for n, v in zip(names, args, strict=False) if hasattr(type(v), PROTOCOL)}
    if kwargs:
        found.update({n: v for n, v in kwargs.items() if hasattr(type(v), PROTOCOL)})
    return found


def _where(filename: str, node: ast.AST | None, fallback: int | None) -> str:
    line = getattr(node, "lineno", None) or fallback
    return f"{filename}:{line}" if line else filename


def _first_bad_loop_use(loop: ast.For, name: str, var: str, helpers_ok: bool
                        ) -> ast.AST | None:
    """The first use of *name* in *loop* not indexed by *var* (plus a constant) on axis 0.

    With *helpers_ok* (the analysis found the helpers it is passed to index it
    by the loop variable), passing it to a function is not such a use.
    """

    def aligned(index: ast.expr) -> bool:
        first = index.elts[0] if isinstance(index, ast.Tuple) and index.elts else index
        if isinstance(first, ast.Name):
            return first.id == var
        if (isinstance(first, ast.BinOp) and isinstance(first.op, (ast.Add, ast.Sub))
                and isinstance(first.left, ast.Name) and first.left.id == var):
            return isinstance(first.right, ast.Constant) and isinstance(first.right.value, int)
        return False

    parents: dict[int, ast.AST] = {}
    for node in ast.walk(loop):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    for node in ast.walk(loop):
        if isinstance(node, ast.Name) and node.id == name:
            parent = parents.get(id(node))
            if isinstance(parent, ast.Subscript) and parent.value is node:
                if not aligned(parent.slice):
                    return parent
            elif isinstance(parent, ast.Attribute) and parent.attr in _META_ATTRS:
                continue
            elif isinstance(parent, ast.Call) and node in parent.args and helpers_ok:
                continue
            else:
                return node
    return None


def _bad_outside_use(stmts: list[ast.stmt], name: str) -> ast.AST | None:
    """The first use of *name* in *stmts* that is more than its metadata."""
    parents: dict[int, ast.AST] = {}
    for st in stmts:
        for node in ast.walk(st):
            for child in ast.iter_child_nodes(node):
                parents[id(child)] = node
    for st in stmts:
        for node in ast.walk(st):
            if not (isinstance(node, ast.Name) and node.id == name):
                continue
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attribute) and parent.attr in _META_ATTRS:
                continue
            if isinstance(parent, ast.Call) and node in parent.args[:1]:
                fn = parent.func
                fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if fname in _LIKE_FUNCS:
                    continue
            if isinstance(parent, ast.Return) or (
                    isinstance(parent, ast.Tuple) and isinstance(parents.get(id(parent)),
                                                                 ast.Return)):
                continue  # returned as it is: the caller gets the distributed array back
            return _enclosing(node, parents)
    return None


def _enclosing(node: ast.AST, parents: dict[int, ast.AST]) -> ast.AST:
    """The expression that uses *node* (``u.sum()`` rather than ``u``), for messages."""
    shown = node
    for _ in range(3):
        parent = parents.get(id(shown))
        if isinstance(parent, (ast.Attribute, ast.Subscript)) and parent.value is shown or (
                isinstance(parent, ast.Call) and (parent.func is shown or shown in parent.args)):
            shown = parent
            continue
        break
    return shown


def read_after_loop(fdef: ast.FunctionDef | None, loop_index: int | None) -> frozenset[str]:
    """Names the code after the loop reads in any way other than returning them as
    they are (``return out``, ``return out, s``): an array the loop fills that is
    read there must be complete on every rank."""
    if fdef is None or loop_index is None:
        return frozenset()
    found: set[str] = set()
    for st in fdef.body[loop_index + 1:]:
        skip: set[int] = set()
        if isinstance(st, ast.Return) and st.value is not None:
            parts = st.value.elts if isinstance(st.value, ast.Tuple) else [st.value]
            skip = {id(p) for p in parts if isinstance(p, ast.Name)}
        for node in ast.walk(st):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                    and id(node) not in skip:
                found.add(node.id)
    return frozenset(found)


def _pairs(target: ast.expr, value: ast.expr) -> list[tuple[str, ast.expr]]:
    """``(name, value)`` for each name *target* binds to a part of *value* it can
    see (``u, v = v, u``: u to v, v to u)."""
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if (isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List))
            and len(target.elts) == len(value.elts)):
        return [p for t, v in zip(target.elts, value.elts, strict=True) for p in _pairs(t, v)]
    return []


def _names_only(value: ast.expr, names: set[str]) -> bool:
    """*value* is one of *names*, or a tuple of such (a swap's right side)."""
    if isinstance(value, ast.Name):
        return value.id in names
    return isinstance(value, (ast.Tuple, ast.List)) and bool(value.elts) and all(
        _names_only(v, names) for v in value.elts)


def _distributed_value(value: ast.expr, names: set[str]) -> bool:
    if isinstance(value, ast.Name):
        return value.id in names
    if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Name):
        fn = value.func
        fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
        return fname in _LIKE_FUNCS - {"len", "__ls_seqlen"} and value.args[0].id in names
    return False


def _without(stmts: list[ast.stmt], drop: set[int]) -> list[ast.stmt]:
    """*stmts* (shallow copies, nested blocks too) without the statements whose
    ids are in *drop*."""
    kept: list[ast.stmt] = []
    for st in stmts:
        if id(st) in drop:
            continue
        st = copy.copy(st)
        for fld in ("body", "orelse", "finalbody"):
            sub = getattr(st, fld, None)
            if isinstance(sub, list):
                setattr(st, fld, _without(sub, drop))
        kept.append(st)
    return kept


def check_regions(function: str, filename: str, fdef: ast.FunctionDef,
                  loops: Iterable[ast.stmt], dist: Iterable[str]) -> set[str]:
    """Raise :class:`~loopscale.errors.DistributionError` unless the code of *fdef*
    outside the parallel inner loops *loops* (which become distributed calls of
    their own) uses the distributed arguments *dist*, and the names bound to
    them (``u, new = new, u``; ``tmp = np.empty_like(u)``), only as the code
    around a parallel loop may: their shape, ``ndim``, ``size``, ``dtype``,
    ``len()``, a like-shaped new array, passing them on to the next pass, and
    returning them.  Returns every name that may hold a distributed array."""
    found = set(dist)
    body = _without(fdef.body, {id(loop) for loop in loops})
    assigns = [st for top in body for st in ast.walk(top) if isinstance(st, ast.Assign)]
    grew = True
    while grew:  # (a name bound to one that holds a distributed array holds one too)
        grew = False
        for st in assigns:
            for target in st.targets:
                for name, value in _pairs(target, st.value):
                    if name not in found and _distributed_value(value, found):
                        found.add(name)
                        grew = True
    # (what binds names to distributed arrays and nothing else: `u, v = v, u`,
    # `new = np.empty_like(u)`)
    moved = {id(st) for st in assigns
             if (_names_only(st.value, found) or _distributed_value(st.value, found)) and all(
                 _pairs(t, st.value) and all(n in found and _distributed_value(v, found)
                                             for n, v in _pairs(t, st.value))
                 for t in st.targets)}

    checked = _without(body, moved)
    for name in sorted(found):
        bad = _bad_outside_use(checked, name)
        if bad is not None:
            raise DistributionError(
                f"{function}() was called with distributed arrays; its parallel inner loops "
                f"run as distributed calls at each pass, and the code between them runs on "
                f"every rank, but at {_where(filename, bad, None)} it uses {name!r} (a "
                f"distributed array) as `{ast.unparse(bad)}`, which would need every rank's "
                "rows. Between the parallel loops a distributed array may only give its "
                "shape, ndim, size or dtype, make a like-shaped array (np.empty_like), be "
                "passed on (u, new = new, u) or be returned; move that work into a parallel "
                "loop, or gather the array first (distribute.allgather(x)) and pass the "
                "NumPy array.")
    return found


def check_aliases(function: str, filename: str, analysis: Any, dist: Mapping[str, Any]
                  ) -> None:
    """Raise :class:`~loopscale.errors.DistributionError` when one distributed array
    is passed for two parameters, the loop writes it, and not only at the row of
    each iteration (``smooth(u, u)`` reading ``u[i - 1]``): in order, an
    iteration reads what the one before it wrote, which ranks running at once
    cannot reproduce."""
    if len(dist) < 2:
        return
    first: dict[int, str] = {}
    roles = analysis.arrays
    for name, value in dist.items():
        other = first.setdefault(id(value), name)
        if other == name:
            continue
        ra, rb = roles.get(other), roles.get(name)
        if not ((ra is not None and ra.written) or (rb is not None and rb.written)):
            continue
        if (ra is not None and rb is not None and ra.access == rb.access == "aligned"
                and ra.axis == rb.axis):
            continue  # each iteration touches its own row under both names
        written = other if ra is not None and ra.written else name
        raise DistributionError(
            f"{function}() was called with the same distributed array for {other!r} and "
            f"{name!r}, and its loop ({filename}:{analysis.lineno}) writes {written!r} "
            "while it reads the array at other rows: run in order, each iteration would "
            "read what an earlier one wrote, which ranks computing at once cannot "
            f"reproduce. Pass another array for {written!r} (distribute.empty_like(...)) "
            "and swap the two between steps.")


def check_call(function: str, filename: str, fdef: ast.FunctionDef | None, analysis: Any,
               has_plan: bool, dist: Mapping[str, Any], plan_reason: str | None) -> None:
    """Raise :class:`~loopscale.errors.DistributionError` when *dist* cannot be used so.

    Parameters
    ----------
    function, filename
        The decorated function's name and file (for messages).
    fdef
        Its syntax tree.
    analysis
        Its :class:`~loopscale.accel.LoopAnalysis`.
    has_plan
        Whether the loop was outlined into a prologue / chunk / epilogue plan.
    dist
        Parameter name -> distributed argument.
    plan_reason
        Why there is no plan, when there is none.
    """
    names = ", ".join(repr(n) for n in dist)
    gather = ("gather it first (distribute.allgather(x) gives every rank a NumPy array) "
              "and pass the NumPy array")
    if not analysis.parallel or analysis.loop_index is None or fdef is None:
        why = analysis.reason or "it has no loop"
        where = f" ({filename}:{analysis.lineno})" if analysis.lineno else f" ({filename})"
        raise DistributionError(
            f"{function}() was called with the distributed array(s) {names}, but its loop"
            f"{where} does not run in parallel: {why}. A distributed call runs each rank's "
            f"share of the iterations where its rows live, which needs a parallel loop; {gather}, "
            "or make the loop's iterations independent (f.explain() says what stops it).")
    if not has_plan:
        raise DistributionError(
            f"{function}() was called with the distributed array(s) {names}, but its loop "
            f"cannot be split across ranks: {plan_reason}; {gather}.")
    loop = fdef.body[analysis.loop_index]
    var = analysis.loop_var
    for name in dist:
        role = analysis.arrays.get(name)
        located = role is not None and role.access not in (
            "anywhere", "through a view", "mirrored", "owned")
        helpers_ok = located
        bad = (_first_bad_loop_use(loop, name, var, helpers_ok) if isinstance(loop, ast.For)
               else None)
        if bad is not None or (role is not None and not located):
            where = _where(filename, bad, analysis.lineno)
            text = ast.unparse(bad) if bad is not None else name
            raise DistributionError(
                f"argument {name!r} of {function}() is a distributed array, but the loop "
                f"uses it at {where} as `{text}`, which is not row {var} (plus a constant) "
                f"of axis 0: that row may live on another rank. Pass a replicated NumPy "
                f"array for {name!r} ({gather}), or index it as {name}[{var}], "
                f"{name}[{var} - 1], {name}[{var}, j]...")
        if role is not None and role.axis not in (0, None):
            raise DistributionError(
                f"argument {name!r} of {function}() is a distributed array, partitioned "
                f"along axis 0, but the loop at {filename}:{analysis.lineno} indexes it "
                f"with {var!r} on axis {role.axis}. Distribute the transposed array "
                f"(rows = the loop's axis), or {gather}.")
        outside = fdef.body[:analysis.loop_index] + fdef.body[analysis.loop_index + 1:]
        bad = _bad_outside_use(outside, name)
        if bad is not None:
            raise DistributionError(
                f"argument {name!r} of {function}() is a distributed array, but the code "
                f"outside the loop uses it at {_where(filename, bad, None)} as "
                f"`{ast.unparse(bad)}`, which would need every rank's rows. Outside the loop "
                f"a distributed array may only give its shape, ndim, size or dtype, or "
                f"a like-shaped new array (np.empty_like({name})); {gather}.")
