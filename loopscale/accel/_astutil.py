"""Small syntax-tree utilities shared by the analysis and code generation.

Pure functions over :mod:`ast` nodes: names read and assigned, flattened
subscripts, statements walked in order, local views of arrays (aliases).
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
import types
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["parse_function", "names_loaded", "target_names", "index_positions", "walk_stmts",
           "stmt_targets"]

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
_META_FUNCS = frozenset({"len", "range", "prange", "shape", "isinstance", "__ls_seqlen"})


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
    """Base name and flattened index expressions of ``a[i][j, k]``.

    A field of a structured array (``x["a"][i]``, ``x[i]["a"]``) selects no
    axis: it is left out of the positions (``[i]``)."""
    chain: list[ast.expr] = []
    node: ast.expr = sub
    while isinstance(node, ast.Subscript):
        sl = node.slice
        elts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        chain[:0] = [e for e in elts
                     if not (isinstance(e, ast.Constant) and isinstance(e.value, str))]
        node = node.value
    return (node if isinstance(node, ast.Name) else None), chain


_PLAIN = (ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Attribute, ast.Subscript,
          ast.Load, ast.operator, ast.unaryop, ast.Slice, ast.Tuple)


def _plain(expr: ast.expr) -> bool:
    """Evaluating *expr* twice gives the same value and does nothing else
    (names, numbers, arithmetic, ``x.shape[0]``, ``len(x)``): the driver's gate
    evaluates the bounds of a region's ``range`` once more, and ``h[k] += w``
    evaluates ``k`` once where ``h[k] = h[k] + w`` did twice."""
    return all(isinstance(n, _PLAIN) or (
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len"
        and len(n.args) == 1 and not n.keywords) for n in ast.walk(expr))


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


def _terminates(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Continue, ast.Raise, ast.Return, ast.Break))


def _walk_stmts(stmts: list[ast.stmt], own: bool = False) -> Iterable[ast.stmt]:
    """The statements of *stmts* and of the blocks nested in them; with *own*, not
    those of the functions and classes defined there (their names are their own)."""
    for st in stmts:
        yield st
        if own and isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for fld in ("body", "orelse", "finalbody"):
            sub = getattr(st, fld, None)
            if isinstance(sub, list):
                yield from _walk_stmts(sub, own)
        if isinstance(st, ast.Try):
            for h in st.handlers:
                yield from _walk_stmts(h.body, own)


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

    # (a copy: a slice, `i:i + w`, is no expression of its own to parse again)
    return Sub().visit(copy.deepcopy(expr))


def summary_params(func: types.FunctionType) -> list[str]:
    code = func.__code__
    return list(code.co_varnames[: code.co_argcount])


#: Methods that put their arguments into the container they are called on
#: (``arrs.append(a)``): the container then holds those arrays.
_CONTAINER_FILLERS = frozenset({"append", "extend", "insert", "add", "update", "setdefault"})


@dataclass
class _Binding:
    """One way a local name gets a value: ``name = value`` (*kind* ``"assign"``),
    an element of *value* (``"elem"``: ``for name in value``, ``name, b = value``),
    or *value* put into the container *name* (``"fill"``: ``name.append(value)``,
    ``name[k] = value``)."""

    name: str
    value: ast.expr
    kind: str
    stmt: ast.AST


def _bindings(stmts: list[ast.stmt], containers: set[str] | None = None) -> list[_Binding]:
    """Every binding of a local name in *stmts* (nested statements included)
    that may make it refer to memory other names hold.  *containers*: names known
    to hold arrays (``arrs[k] = a`` puts ``a`` into them)."""
    out: list[_Binding] = []

    def pairs(t: ast.expr, v: ast.expr, st: ast.AST) -> None:
        if isinstance(t, ast.Name):
            out.append(_Binding(t.id, v, "assign", st))
        elif isinstance(t, (ast.Tuple, ast.List)):
            if (isinstance(v, (ast.Tuple, ast.List)) and len(v.elts) == len(t.elts)
                    and not any(isinstance(e, ast.Starred) for e in [*t.elts, *v.elts])):
                for te, ve in zip(t.elts, v.elts, strict=True):
                    pairs(te, ve, st)
            else:
                for name in _target_names(t):
                    out.append(_Binding(name, v, "elem", st))
        elif isinstance(t, ast.Starred):
            for name in _target_names(t):
                out.append(_Binding(name, v, "elem", st))
        elif (isinstance(t, ast.Subscript) and containers is not None
              and isinstance(t.value, ast.Name) and t.value.id in containers):
            out.append(_Binding(t.value.id, v, "fill", st))

    def elements(t: ast.expr, it: ast.expr, st: ast.AST) -> None:
        # `for k, v in enumerate(x)`: `k` is a count, `v` an element of `x`;
        # `for u, v in zip(x, y)`: elements of `x` and of `y`
        f = it.func.id if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) else None
        if (f == "enumerate" and isinstance(t, (ast.Tuple, ast.List)) and len(t.elts) == 2
                and it.args and not it.keywords):  # type: ignore[attr-defined]
            elements(t.elts[1], it.args[0], st)  # type: ignore[attr-defined]
            return
        if (f == "zip" and isinstance(t, (ast.Tuple, ast.List))
                and len(t.elts) == len(it.args)  # type: ignore[attr-defined]
                and not any(isinstance(a, ast.Starred) for a in it.args)):  # type: ignore
            for te, arg in zip(t.elts, it.args, strict=True):  # type: ignore[attr-defined]
                elements(te, arg, st)
            return
        for name in _target_names(t):
            out.append(_Binding(name, it, "elem", st))

    local = {n for st in _walk_stmts(stmts) for n in _stmt_targets(st)}
    for st in _walk_stmts(stmts):
        if isinstance(st, ast.Assign):
            for t in st.targets:
                pairs(t, st.value, st)
        elif isinstance(st, ast.AnnAssign) and st.value is not None:
            pairs(st.target, st.value, st)
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name) and isinstance(
                st.value, (ast.Tuple, ast.List, ast.ListComp)):
            out.append(_Binding(st.target.id, st.value, "fill", st))  # arrs += [a]
        elif isinstance(st, (ast.For, ast.AsyncFor)):
            elements(st.target, st.iter, st)
        elif isinstance(st, ast.With):
            for item in st.items:
                if item.optional_vars is not None:
                    for name in _target_names(item.optional_vars):
                        out.append(_Binding(name, item.context_expr, "elem", st))
        # walrus, comprehension variables and `c.append(a)` inside any expression
        for fld, value in ast.iter_fields(st):
            if fld in ("body", "orelse", "finalbody", "handlers"):
                continue
            for node in value if isinstance(value, list) else [value]:
                if not isinstance(node, ast.AST):
                    continue
                for n in ast.walk(node):
                    if isinstance(n, ast.NamedExpr):
                        out.append(_Binding(n.target.id, n.value, "assign", st))
                    elif isinstance(n, ast.comprehension):
                        elements(n.target, n.iter, st)
                    elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                          and n.func.attr in _CONTAINER_FILLERS
                          and isinstance(n.func.value, ast.Name)
                          and n.func.value.id in local):  # (not `np.append(...)`)
                        for a in [*n.args, *(kw.value for kw in n.keywords)]:
                            out.append(_Binding(n.func.value.id, a, "fill", st))
    return out


def _is_container_value(value: ast.expr, containers: set[str]) -> bool:
    """Whether *value* is a tuple/list/dict/set of values (a literal, ``list(...)``,
    a comprehension, a concatenation or copy of one, or a known container)."""
    if isinstance(value, (ast.Tuple, ast.List, ast.Set, ast.Dict, ast.ListComp, ast.SetComp,
                          ast.DictComp)):
        return True
    if isinstance(value, ast.Name):
        return value.id in containers
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Mult)):
        return (_is_container_value(value.left, containers)
                or _is_container_value(value.right, containers))
    if isinstance(value, ast.Call):
        f = value.func
        if isinstance(f, ast.Name) and f.id in ("tuple", "list", "dict", "set"):
            return True
        if isinstance(f, ast.Attribute) and f.attr == "copy":
            return _is_container_value(f.value, containers)
    if isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Slice):
        return _is_container_value(value.value, containers)  # arrs[1:]
    if isinstance(value, ast.IfExp):
        return (_is_container_value(value.body, containers)
                or _is_container_value(value.orelse, containers))
    return False


def _container_names(stmts: list[ast.stmt]) -> set[str]:
    """Local names that may hold a tuple/list/dict of values (possibly arrays)."""
    containers: set[str] = set()
    while True:
        found = set(containers)
        for b in _bindings(stmts, containers):
            if b.kind == "fill" or (b.kind == "assign"
                                    and _is_container_value(b.value, containers)):
                found.add(b.name)
        if found == containers:
            return containers
        containers = found


def _binding_sources(b: _Binding, containers: set[str]) -> set[str]:
    """Names whose memory the name of binding *b* may then refer to."""
    srcs = set(_view_sources(b.value))
    if _is_container_value(b.value, containers):
        srcs |= {n.id for n in ast.walk(b.value) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Load)}
    return srcs


def _aliases(stmts: list[ast.stmt], arrays: set[str]) -> dict[str, set[str]]:
    """Local names that may view the memory of other names (``b = a[1:]``,
    ``b = a.T``, ``u = st.u`` of a namedtuple ``st``), or hold such names
    (``arrs = (a, b)``, ``for arr in arrs``).  *arrays*: the parameters.

    Each name maps to every name it may refer to, through any assignment anywhere
    in *stmts* (``c = a`` and, on some branch, ``c = b``: both)."""
    containers = _container_names(stmts)
    bindings = [(b.name, _binding_sources(b, containers)) for b in _bindings(stmts, containers)]
    # a name may view only what the function holds (parameters and its own names):
    # `c = np.pi` does not make `c` a view of a module
    local = set(arrays) | {n for st in _walk_stmts(stmts) for n in _stmt_targets(st)}
    bindings = [(name, {s for s in srcs if s in local}) for name, srcs in bindings]
    alias: dict[str, set[str]] = {}
    changed = True
    while changed:  # to a fixed point: a later assignment may feed an earlier one
        changed = False
        for name, srcs in bindings:
            if not srcs:
                continue
            roots = {r for s in srcs for r in alias.get(s, {s})}
            cur = alias.setdefault(name, {name})
            if not roots <= cur:
                cur |= roots
                changed = True
    return alias


def _identity_view(value: ast.expr) -> bool:
    """Whether *value* holds its source's elements at the same indices: ``a``,
    ``a[:]``, ``a[...]``, ``a[:, :]``, ``np.asarray(a)``, and a field ``st.u``
    of a namedtuple ``st`` (whose fields the analysis counts as one array)."""
    if isinstance(value, ast.Name):
        return True
    if isinstance(value, ast.Attribute) and _field_owner(value) is not None:
        return True
    if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name):
        sl = value.slice
        elts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        return all((isinstance(e, ast.Slice) and e.lower is None and e.upper is None
                    and e.step is None) or (isinstance(e, ast.Constant) and e.value is Ellipsis)
                   for e in elts)
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
            and value.func.attr in ("asarray", "ascontiguousarray", "asfortranarray")
            and len(value.args) == 1 and isinstance(value.args[0], ast.Name)):
        return True
    if isinstance(value, ast.IfExp):
        return _identity_view(value.body) and _identity_view(value.orelse)
    return False


@dataclass(frozen=True)
class ShiftedView:
    """A local name through which an array's elements are reached at other indices
    than its own (a view such as ``tail = a[1:]``, or a container ``arrs = (a, b)``)."""

    line: int
    text: str
    #: the name holds arrays (a tuple, list...): its first index picks an array
    container: bool = False
    #: the view's indices identify the array's elements one to one (False: two
    #: indices of the view may reach one element, e.g. ``(a, a[1:])``)
    exact: bool = True
    #: for a tuple made once of plain names (``arrs = (a, b)``): those names,
    #: so that ``arrs[0]`` is known to be ``a``; empty otherwise
    elements: tuple[str, ...] = ()


def _shifted_views(stmts: list[ast.stmt], alias: dict[str, set[str]]) -> dict[str, ShiftedView]:
    """Local names that put their sources' elements at other indices.

    ``tail = a[1:]``, ``r = a[::-1]``, ``t = a.T``, ``row = a[0]``: an access
    ``tail[i]`` touches ``a[i + 1]``, so it cannot be compared with ``a[i]``.
    A tuple or list of arrays (``arrs = (a, b)``; ``arrs[0][i]`` is ``a[i]``)
    counts as such a view too, and so does anything taken from one.
    Maps each such name to the line and text of the assignment that makes it.
    """
    containers = _container_names(stmts)
    bindings = _bindings(stmts, containers)
    # a container whose indices do not each reach their own elements: one holding
    # an array twice (`(a, a[1:])`), or filled in ways not followed (`.append`)
    inexact: set[str] = set()
    for b in bindings:
        if b.name not in containers:
            continue
        if b.kind == "assign" and isinstance(b.value, (ast.Tuple, ast.List)) and not any(
                isinstance(e, ast.Starred) for e in b.value.elts):
            seen: set[str] = set()
            for e in b.value.elts:
                srcs = _binding_sources(_Binding(b.name, e, "assign", b.stmt), containers)
                roots = {r for s in srcs for r in alias.get(s, {s})}
                if roots & seen or any(r in containers for r in roots):
                    inexact.add(b.name)
                seen |= roots
        else:
            inexact.add(b.name)
    out: dict[str, tuple[_Binding, bool]] = {}
    changed = True
    while changed:
        changed = False
        for b in bindings:
            srcs = _binding_sources(b, containers)
            if not srcs or b.name in out:
                continue
            if (b.name in containers or b.kind != "assign" or not _identity_view(b.value)
                    or any(s in out for s in srcs)):
                out[b.name] = (b, b.name in containers)
                changed = True
    # what is taken from an inexact view is inexact
    changed = True
    while changed:
        changed = False
        for b in bindings:
            if b.name in out and b.name not in inexact and any(
                    s in inexact for s in _binding_sources(b, containers)):
                inexact.add(b.name)
                changed = True
    count: dict[str, int] = {}
    for b in bindings:
        count[b.name] = count.get(b.name, 0) + 1
    views: dict[str, ShiftedView] = {}
    for name, (b, is_container) in out.items():
        if b.kind == "assign":
            text = f"{b.name} = {ast.unparse(b.value)}"
        else:
            text = ast.unparse(b.stmt).splitlines()[0].rstrip(":")
        elements: tuple[str, ...] = ()
        if (is_container and name not in inexact and count[name] == 1
                and isinstance(b.value, ast.Tuple)  # (a list may be reordered)
                and all(isinstance(e, ast.Name) for e in b.value.elts)):
            elements = tuple(e.id for e in b.value.elts)  # type: ignore[attr-defined]
        views[name] = ShiftedView(getattr(b.stmt, "lineno", 0), text, container=is_container,
                                  exact=name not in inexact, elements=elements)
    return views


def _field_owner(expr: ast.expr) -> ast.Name | None:
    """``st`` of ``st.u``, ``st.u[i]``, ``st.a.b[i, j]``: the name whose field (of a
    namedtuple, record or jitclass) *expr* is or subscripts; None for anything
    else (``a[i]``, ``a.T[i]``, ``f(a)[i]``, ``a.shape``)."""
    node: ast.expr = expr
    while isinstance(node, ast.Subscript):
        node = node.value
    if not isinstance(node, ast.Attribute):
        return None
    while isinstance(node, ast.Attribute):
        if node.attr in ("T", "real", "imag", "flat") or node.attr in _META_ATTRS:
            return None
        node = node.value
    return node if isinstance(node, ast.Name) else None


def _flat_chain(sub: ast.Subscript) -> bool:
    """Whether ``a[x][y]`` may be read as ``a[x, y]``: no inner level slices."""
    node: ast.expr = sub.value
    while isinstance(node, ast.Subscript):
        sl = node.slice
        elts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        if any(isinstance(e, ast.Slice) or (isinstance(e, ast.Constant) and e.value is Ellipsis)
               for e in elts):
            return False
        node = node.value
    return True


#: NumPy functions whose result may share memory with their array arguments
#: (``np.flip(a)[i] = ...`` writes ``a``), called as ``np.f(...)`` or ``f(...)``.
_VIEW_FUNCTIONS = frozenset({
    "asarray", "asanyarray", "ascontiguousarray", "asfortranarray", "atleast_1d",
    "atleast_2d", "atleast_3d", "ravel", "reshape", "transpose", "squeeze", "flip",
    "flipud", "fliplr", "rot90", "diagonal", "diag", "moveaxis", "rollaxis", "swapaxes",
    "expand_dims", "broadcast_to", "real", "imag", "as_strided", "sliding_window_view",
    "split", "array_split", "hsplit", "vsplit", "dsplit", "broadcast_arrays"})


#: Builtins whose result holds (or iterates over) the objects passed to them.
_HOLDING_BUILTINS = frozenset({"tuple", "list", "enumerate", "zip", "reversed", "sorted",
                               "iter", "dict", "set"})


def _view_sources(value: ast.expr) -> set[str]:
    """Names whose memory *value* may share."""
    if isinstance(value, ast.Name):
        return {value.id}
    if isinstance(value, ast.Subscript):
        base, _ = _index_positions(value)
        return {base.id} if base is not None else set()
    if isinstance(value, ast.Attribute):
        if value.attr in _META_ATTRS or value.attr in ("flags", "ctypes"):
            return set()
        # `a.T`, `a.real`, and a field of a namedtuple, record or jitclass
        # (`st.u`): its memory is part of what the name holds (a module's
        # attribute, `np.pi`, names the module: callers drop names that are not
        # local or are modules)
        return _view_sources(value.value)
    if isinstance(value, ast.Call):
        f = value.func
        if isinstance(f, ast.Attribute) and f.attr in ("reshape", "view", "ravel", "transpose",
                                                       "swapaxes", "squeeze", "diagonal"):
            # a method (`a.ravel()`), or a function of a module (`np.ravel(a)`): the
            # caller drops the names that are not arrays
            return _view_sources(f.value) | {n for a in value.args for n in _view_sources(a)}
        if isinstance(f, ast.Attribute) and f.attr in _ALLOCATORS | {"copy", "astype"}:
            return set()
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(
            f, ast.Name) else None
        if name in _VIEW_FUNCTIONS or (isinstance(f, ast.Name) and name in _HOLDING_BUILTINS):
            return {n for a in value.args for n in _view_sources(a)}
        return set()
    if isinstance(value, ast.IfExp):
        return _view_sources(value.body) | _view_sources(value.orelse)
    # containers hold their elements: `(a, b)`, `[a, b]`, `list(arrs)`, `(a,) + rest`
    if isinstance(value, (ast.Tuple, ast.List, ast.Set)):
        return {n for e in value.elts for n in _view_sources(e)}
    if isinstance(value, ast.Dict):
        return {n for e in value.values for n in _view_sources(e)}
    if isinstance(value, (ast.Starred, ast.NamedExpr)):
        return _view_sources(value.value)
    if isinstance(value, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
        return _view_sources(value.elt) | {n for g in value.generators
                                           for n in _view_sources(g.iter)}
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Mult)) and any(
            isinstance(side, (ast.Tuple, ast.List)) for side in (value.left, value.right)):
        return _view_sources(value.left) | _view_sources(value.right)
    return set()


def parse_function(func: types.FunctionType) -> tuple[ast.FunctionDef, int]:
    """The ``def`` node of *func* and the line offset of its source.

    Raises OSError/TypeError when there is no source, SyntaxError when the
    source found is not a lone ``def`` (a lambda).
    """
    given = getattr(func, "__loopscale_source__", None)
    if given is not None:  # an outlined loop (see _regions): its tree, at the user's lines
        import copy

        return copy.deepcopy(given[0]), given[1]
    lines, first = inspect.getsourcelines(func)
    src = textwrap.dedent("".join(lines))
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func.__name__:
            # line numbers in the tree are relative to the snippet; decorators
            # may precede the def line
            return node, first - 1  # type: ignore[return-value]
    raise SyntaxError(f"no `def {func.__name__}` in the source of {func.__qualname__}")


def defined_before(fdef: ast.FunctionDef, pre: list[ast.stmt]) -> set[str]:
    """Names bound before the loop: the parameters and what *pre* assigns."""
    a = fdef.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    names |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    for st in _walk_stmts(pre):
        names.update(_stmt_targets(st))
    return names


def closure_values(func: types.FunctionType) -> dict[str, object]:
    """The values of *func*'s closure cells by name (empty cells left out)."""
    out: dict[str, object] = {}
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # a cell not filled yet
            pass
    return out


# public spellings for the other modules
names_loaded = _names_loaded
target_names = _target_names
index_positions = _index_positions
walk_stmts = _walk_stmts
stmt_targets = _stmt_targets
