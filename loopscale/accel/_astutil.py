"""Small syntax-tree utilities shared by the analysis and code generation.

Pure functions over :mod:`ast` nodes: names read and assigned, flattened
subscripts, statements walked in order, local views of arrays (aliases).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Iterable

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
_META_FUNCS = frozenset({"len", "range", "prange", "shape", "isinstance"})


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


def _identity_view(value: ast.expr) -> bool:
    """Whether *value* holds its source's elements at the same indices: ``a``,
    ``a[:]``, ``a[...]``, ``a[:, :]``, ``np.asarray(a)``."""
    if isinstance(value, ast.Name):
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


def _shifted_views(stmts: list[ast.stmt], alias: dict[str, set[str]]) -> dict[str, tuple[int, str]]:
    """Local views that put their source's elements at other indices.

    ``tail = a[1:]``, ``r = a[::-1]``, ``t = a.T``, ``row = a[0]``: an access
    ``tail[i]`` touches ``a[i + 1]``, so it cannot be compared with ``a[i]``.
    Maps each such name to the line and text of the assignment that makes it.
    """
    out: dict[str, tuple[int, str]] = {}
    for st in _walk_stmts(stmts):
        if not isinstance(st, ast.Assign):
            continue
        pairs: list[tuple[ast.expr, ast.expr]] = []
        for t in st.targets:
            if isinstance(t, (ast.Tuple, ast.List)) and isinstance(st.value, (ast.Tuple,
                                                                              ast.List)):
                pairs.extend(zip(t.elts, st.value.elts, strict=False))
            else:
                pairs.append((t, st.value))
        for t, v in pairs:
            if not isinstance(t, ast.Name) or not _view_sources(v):
                continue
            srcs = _view_sources(v)
            if not _identity_view(v) or any(s in out for s in srcs):
                out.setdefault(t.id, (st.lineno, f"{t.id} = {ast.unparse(v)}"))
    return out


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
                                                       "swapaxes", "squeeze", "diagonal"):
            # a method (`a.ravel()`), or a function of a module (`np.ravel(a)`): the
            # caller drops the names that are not arrays
            return _view_sources(f.value) | {n for a in value.args for n in _view_sources(a)}
        if isinstance(f, ast.Attribute) and f.attr in _ALLOCATORS | {"copy", "astype"}:
            return set()
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(
            f, ast.Name) else None
        if name in _VIEW_FUNCTIONS:
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
