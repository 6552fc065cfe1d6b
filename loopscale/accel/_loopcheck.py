"""The proof that one loop's iterations are independent.

:class:`LoopChecker` applies the rules of DESIGN.md ("Parallel only when
safe") to one ``for`` loop and raises :class:`Unsafe` with the line and the
reason at the first violation: control flow (``return``, ``break``, random
numbers), scalars (private or reduction, never carried), arrays (every access
of a written array uses the loop variable at the same position), helpers
(their writes, summarised by :func:`summarise_helper`).
"""

from __future__ import annotations

import ast
import inspect
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._astutil import (
    _ALLOCATORS,
    _MUTATING_METHODS,
    ShiftedView,
    _aliases,
    _bindings,
    _const_int,
    _field_owner,
    _flat_chain,
    _index_positions,
    _names_loaded,
    _same,
    _stmt_targets,
    _substitute,
    _target_names,
    _terminates,
    _view_sources,
    _walk_stmts,
    _whole_uses,
    parse_function,
    summary_params,
)
from ._model import NP_EXTREMA, ArrayRole, Resolver

_REDUCTION_OPS = {ast.Add: "+", ast.Sub: "+", ast.Mult: "*", ast.BitOr: "|",
                  ast.BitAnd: "&", ast.BitXor: "^"}

#: Methods of ``numpy.random.Generator`` (and of the legacy ``RandomState``)
#: that draw numbers: called on a local or an argument in the loop, they share
#: the generator's state between iterations.
_RNG_METHODS = frozenset({
    "random", "integers", "normal", "uniform", "standard_normal", "exponential",
    "standard_exponential", "gamma", "standard_gamma", "beta", "binomial", "poisson", "choice",
    "shuffle", "permutation", "permuted", "lognormal", "laplace", "logistic", "geometric",
    "chisquare", "triangular", "vonmises", "wald", "weibull", "zipf", "pareto", "rayleigh",
    "multinomial", "hypergeometric", "negative_binomial", "standard_cauchy", "standard_t",
    "dirichlet", "multivariate_normal", "rand", "randn", "randint", "random_sample",
    "bytes", "gumbel", "logseries", "noncentral_chisquare", "noncentral_f",
})


#: NumPy functions that write into their first argument.
_WRITES_FIRST_ARG = frozenset({"copyto", "put", "place", "putmask", "fill_diagonal",
                               "put_along_axis"})


#: Calls that return a new value (never a view of their arguments).
_FRESH_CALLS = frozenset({"float", "int", "complex", "bool", "abs", "len", "round", "sum",
                          "min", "max", "float64", "float32", "int64", "int32", "complex128",
                          "astype", "copy", "tolist"})


#: NumPy functions that make the array a scatter sum (``h[b] += w``) may add into.
_SCATTER_ALLOCATORS = frozenset({"zeros", "ones", "empty", "full", "zeros_like", "ones_like",
                                 "empty_like", "full_like"})


#: Methods of ``list``, ``dict`` and ``set`` (and of Numba's typed containers)
#: that change the container: called on one shared by all iterations, they
#: grow or reorder it in the order of the iterations (and, run from several
#: threads at once, corrupt it: Numba's containers are not thread-safe).
#: NumPy arrays have none of these methods.
_CONTAINER_METHODS = frozenset({
    "append", "extend", "insert", "pop", "remove", "clear", "reverse", "add", "discard",
    "update", "setdefault", "popitem", "difference_update", "intersection_update",
    "symmetric_difference_update",
})


def _root_name(node: ast.expr) -> str | None:
    """``a`` of ``a``, ``a[k]``, ``a.b[k]``... (None when it is not a name)."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _makes_mapping(value: ast.expr | None) -> bool:
    """Whether *value* builds a dict or a set (``{}``, ``{k: v}``, ``{x}``,
    ``dict()``, ``set()``, ``Dict.empty(...)``, a comprehension): storing into
    it at a new key inserts, and may resize it."""
    if isinstance(value, (ast.Dict, ast.DictComp, ast.Set, ast.SetComp)):
        return True
    if isinstance(value, ast.Call):
        f = value.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(
            f, ast.Attribute) else None
        if name in ("dict", "set", "Dict", "defaultdict", "OrderedDict", "Counter"):
            return True
        if (isinstance(f, ast.Attribute) and f.attr in ("empty", "copy")
                and isinstance(f.value, (ast.Name, ast.Attribute))
                and (f.value.id if isinstance(f.value, ast.Name) else f.value.attr) == "Dict"):
            return True
    return False


def _new_container(value: ast.expr) -> bool:
    """Whether *value* builds a new list, dict or set (a display, a comprehension,
    ``[0.0] * n``, ``list(...)``, ``List.empty_list(...)``...)."""
    if isinstance(value, (ast.List, ast.Tuple, ast.ListComp)) or _makes_mapping(value):
        return True
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Mult)):
        return any(isinstance(side, (ast.List, ast.ListComp))
                   for side in (value.left, value.right))
    if isinstance(value, ast.Call):
        f = value.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(
            f, ast.Attribute) else None
        return name in ("list", "List", "empty_list", "sorted")
    return False


def _fresh_call(call: ast.Call) -> bool:
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return name in _ALLOCATORS or name in _FRESH_CALLS


def _bind_call(params: list[str], call: ast.Call) -> list[ast.expr | None] | None:
    """The argument of *call* for each of *params* (None where the default is
    used), keywords included; None when ``*args``/``**kwargs`` hide them."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
            kw.arg is None for kw in call.keywords):
        return None
    bound: list[ast.expr | None] = [*call.args[:len(params)]]
    bound += [None] * (len(params) - len(bound))
    for kw in call.keywords:
        if kw.arg in params:
            bound[params.index(kw.arg)] = kw.value
    return bound


def _positional_outs(target: Any, call: ast.Call) -> list[ast.expr]:
    """The arguments of *call* (a NumPy function or ufunc *target*) passed
    positionally in its ``out`` place: ``np.add(acc, x, acc)``."""
    nin = getattr(target, "nin", None)
    if isinstance(target, np.ufunc) and isinstance(nin, int):
        return list(call.args[nin:])
    if not (getattr(target, "__module__", "") or "").startswith("numpy"):
        return []
    try:
        names = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return []
    if "out" not in names:
        return []
    k = names.index("out")
    return list(call.args[k:k + 1])


def _draws_random(node: ast.Call, resolver: Resolver, local_names: set[str]) -> bool:
    """Whether the call *node* draws from a random generator."""
    mod = getattr(resolver.value(node.func), "__module__", None) or ""
    base = node.func.value if isinstance(node.func, ast.Attribute) else None
    base_obj = resolver.value(base) if base is not None else None
    base_name = getattr(base_obj, "__name__", "") if base_obj is not None else ""
    if mod.startswith(("numpy.random", "random")) or base_name in ("numpy.random", "random"):
        return True
    # rng.random(), gen.normal(...): a generator passed in or made before the loop
    if isinstance(node.func, ast.Attribute) and node.func.attr in _RNG_METHODS:
        if type(base_obj).__module__.startswith(("numpy.random", "random")):
            return True  # a generator held in a global
        root = base
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        return isinstance(root, ast.Name) and root.id in local_names
    return False


def _loop_floor(loop: ast.For) -> int | None:
    """The least value the loop variable of ``range(...)`` takes, when literal
    (``range(n)``: 0; ``range(2, n)``: 2; ``range(n - 1, -1, -1)``: 0)."""
    args = getattr(loop.iter, "args", [])
    if len(args) == 1:
        return 0
    if len(args) in (2, 3):
        step = 1 if len(args) == 2 else _const_int(args[2])
        if step is not None and step > 0:
            return _const_int(args[0])
        stop = _const_int(args[1])
        if step is not None and step < 0 and stop is not None:
            return stop + 1
    return None


def _var_bound(test: ast.expr, var: str, base: int | None, truth: bool) -> int | None:
    """A least value of *var* implied by *test* being *truth* (None: none known).

    Understands comparisons of ``var`` (or ``var +/- c``) with an integer
    literal, ``var in (...)`` with literals, ``var`` alone (``var != 0``),
    ``not``, ``and``/``or`` and chained comparisons; ``var != c`` bounds *var*
    only when ``c`` is the least value *base* it is known to have there.
    """
    if isinstance(test, ast.Name) and test.id == var:  # `if i:` is `if i != 0:`
        test = ast.Compare(left=test, ops=[ast.NotEq()], comparators=[ast.Constant(0)])
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _var_bound(test.operand, var, base, not truth)
    if isinstance(test, ast.BoolOp):
        parts = [_var_bound(v, var, base, truth) for v in test.values]
        if isinstance(test.op, ast.And) == truth:  # all of them hold
            known = [p for p in parts if p is not None]
            return max(known) if known else None
        # one of them holds: the least of their bounds, if every one has one
        return None if any(p is None for p in parts) else min(parts)  # type: ignore[type-var]
    if not isinstance(test, ast.Compare):
        return None
    if len(test.ops) > 1:  # 0 < i < n: each link holds
        left, bounds = test.left, []
        for op, right in zip(test.ops, test.comparators, strict=True):
            bounds.append(_var_bound(ast.Compare(left=left, ops=[op], comparators=[right]),
                                     var, base, True))
            left = right
        if not truth:
            return None
        known = [b for b in bounds if b is not None]
        return max(known) if known else None
    op, left, right = test.ops[0], test.left, test.comparators[0]
    if isinstance(op, (ast.In, ast.NotIn)):
        shift = _shifted_var(left, var)
        if shift is None or not isinstance(right, (ast.Tuple, ast.List, ast.Set)):
            return None
        values = [_const_int(e) for e in right.elts]
        literals = {v - shift for v in values if v is not None}
        if isinstance(op, ast.In) == truth:  # one of them
            return min(literals) if literals and None not in values else None
        if base is None:  # none of them: step over those at the bottom
            return None
        least = base
        while least in literals:
            least += 1
        return least if least > base else None
    flip = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE,
            ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}
    if type(op) not in flip:
        return None
    shift, c = _shifted_var(left, var), _const_int(right)
    if shift is None or c is None:
        shift, c = _shifted_var(right, var), _const_int(left)
        if shift is None or c is None:
            return None
        op = flip[type(op)]()
    c -= shift  # var + shift OP c  ->  var OP c - shift
    if not truth:
        negate = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt,
                  ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
        op = negate[type(op)]()
    if isinstance(op, ast.Gt):
        return c + 1
    if isinstance(op, (ast.GtE, ast.Eq)):
        return c
    if isinstance(op, ast.NotEq) and base is not None and c == base:
        return c + 1
    return None


def _shifted_var(expr: ast.expr, var: str) -> int | None:
    """``k`` when *expr* is ``var``, ``var + k`` or ``var - k`` (k an int literal)."""
    if isinstance(expr, ast.Name) and expr.id == var:
        return 0
    if (isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub))
            and isinstance(expr.left, ast.Name) and expr.left.id == var):
        k = _const_int(expr.right)
        if k is not None:
            return k if isinstance(expr.op, ast.Add) else -k
    if (isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add)
            and isinstance(expr.right, ast.Name) and expr.right.id == var):
        return _const_int(expr.left)  # k + var
    return None


def _is_len(call: ast.Call) -> bool:
    return (isinstance(call.func, ast.Name) and call.func.id == "len" and len(call.args) == 1
            and not call.keywords and isinstance(call.args[0], ast.Name))


def _linear_terms(expr: ast.expr, var: str) -> tuple[
        int, int, list[ast.expr], list[ast.expr]] | None:
    """*expr* as ``coef * var + const + sum(K * var) + sum(others)``: the literal
    coefficient of *var*, the literal constant, the factors ``K`` of the terms
    ``K * var`` (K not a literal) and the other terms, each added (a term
    subtracted, other than *var* and literals, gives None); None when *var*
    appears otherwise."""
    coef = const = 0
    scaled: list[ast.expr] = []
    others: list[ast.expr] = []

    def uses_var(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id == var for n in ast.walk(node))

    def add(node: ast.expr, sign: int) -> bool:
        nonlocal coef, const
        k = _const_int(node)
        if k is not None:
            const += sign * k
            return True
        if isinstance(node, ast.Name) and node.id == var:
            coef += sign
            return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            return add(node.left, sign) and add(
                node.right, sign if isinstance(node.op, ast.Add) else -sign)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            for a, b in ((node.left, node.right), (node.right, node.left)):
                if isinstance(a, ast.Name) and a.id == var and not uses_var(b):
                    c = _const_int(b)
                    if c is not None:
                        coef += sign * c
                        return True
                    if sign < 0:
                        return False
                    scaled.append(b)
                    return True
        if uses_var(node) or sign < 0:
            return False
        others.append(node)
        return True

    if not add(expr, 1):
        return None
    return coef, const, scaled, others


def _rebinds(stmts: list[ast.stmt], var: str) -> bool:
    """Whether *stmts* assign *var* (a statement, a nested loop's target, ``:=``)."""
    return any(var in _stmt_targets(st) for st in _walk_stmts(stmts)) or any(
        isinstance(n, ast.NamedExpr) and n.target.id == var
        for st in stmts for n in ast.walk(st))


def _guard_floors(loop: ast.For, var: str) -> dict[int, int]:
    """The least value of the loop variable wherever a condition sets one.

    Maps ``id`` of each subscript and call in the loop body to the least value
    the loop variable can have when it runs, as the conditions around it tell
    (``if i > 0: u[i - 1]``, ``u[i - 1] if i >= 1 else 0.0``, ``if i == 0:
    continue``, the ``else`` of ``if i == 0 or i == n - 1``); only nodes under
    such a condition are listed.  Empty when the body assigns the variable.
    """
    if _rebinds(loop.body, var):
        return {}
    base = _loop_floor(loop)
    out: dict[int, int] = {}

    def tighter(lo: int | None, more: int | None) -> int | None:
        return more if lo is None else lo if more is None else max(lo, more)

    def bound(test: ast.expr, lo: int | None, truth: bool) -> int | None:
        # what is known here (the loop's start, the conditions around) is the
        # base against which `i != c` and `i not in (...)` count
        return _var_bound(test, var, tighter(lo, base), truth)

    def expr(node: ast.AST | None, lo: int | None) -> None:
        if node is None:
            return
        if isinstance(node, ast.IfExp):
            expr(node.test, lo)
            expr(node.body, tighter(lo, bound(node.test, lo, True)))
            expr(node.orelse, tighter(lo, bound(node.test, lo, False)))
            return
        if isinstance(node, ast.BoolOp):  # later operands run only after earlier ones
            and_ = isinstance(node.op, ast.And)
            cur = lo
            for v in node.values:
                expr(v, cur)
                cur = tighter(cur, bound(v, cur, and_))
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                             ast.GeneratorExp)):
            lo = None  # runs later, or rebinds names: no claim
        if lo is not None and isinstance(node, (ast.Subscript, ast.Call)):
            out[id(node)] = lo
        for child in ast.iter_child_nodes(node):
            expr(child, lo)

    def block(stmts: list[ast.stmt], lo: int | None) -> None:
        for st in stmts:
            if isinstance(st, (ast.If, ast.While)):
                expr(st.test, lo)
                yes = tighter(lo, bound(st.test, lo, True))
                no = tighter(lo, bound(st.test, lo, False))
                block(st.body, yes)
                block(st.orelse, no)
                if isinstance(st, ast.If):
                    # what follows runs only where a branch that always leaves did not
                    if _terminates(st.body) and not _terminates(st.orelse):
                        lo = no
                    elif _terminates(st.orelse) and not _terminates(st.body):
                        lo = yes
            elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            else:
                for fld, value in ast.iter_fields(st):
                    if fld in ("body", "orelse", "finalbody", "handlers"):
                        continue
                    for node in value if isinstance(value, list) else [value]:
                        if isinstance(node, ast.AST):
                            expr(node, lo)
                for fld in ("body", "orelse", "finalbody"):
                    sub = getattr(st, fld, None)
                    if isinstance(sub, list):
                        block(sub, lo)
                for h in getattr(st, "handlers", []):
                    block(h.body, lo)

    block(loop.body, None)
    return out


def _replacing_update(name: str, test: ast.expr, e: ast.expr) -> tuple[str, str, str] | None:
    """``(name, op, form)`` when ``if test: name = e`` replaces *name* by *e* when
    *e* is better (``e < name``, ``name > e``...; see ``_reduction_form``)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1) or name in _names_loaded(e):
        return None
    left, right, cmp = test.left, test.comparators[0], test.ops[0]
    is_s = (lambda n: isinstance(n, ast.Name) and n.id == name)  # noqa: E731
    form = "loose" if isinstance(cmp, (ast.GtE, ast.LtE)) else "strict"
    if _same(left, e) and is_s(right):
        if isinstance(cmp, (ast.Gt, ast.GtE)):
            return name, "max", form
        if isinstance(cmp, (ast.Lt, ast.LtE)):
            return name, "min", form
    if is_s(left) and _same(right, e):
        if isinstance(cmp, (ast.Lt, ast.LtE)):
            return name, "max", form
        if isinstance(cmp, (ast.Gt, ast.GtE)):
            return name, "min", form
    return None


@dataclass
class _Access:
    root: str
    positions: list[ast.expr] | None  # None: the whole array (anywhere)
    write: bool
    line: int
    text: str
    helper: str | None = None  # the helper through which the access happens
    #: the local view the access goes through when that view puts the root's
    #: elements at other indices (``tail`` for ``tail = a[1:]``): its
    #: assignment's text, or a description of a view the analysis does not
    #: follow (``out.T``, a helper's result); None for the root's own indices
    view: str | None = None
    #: the least value of the loop variable where the access runs, when a
    #: condition around it sets one (``if i > 0: u[i - 1]``)
    floor: int | None = None
    #: the access goes through a tuple/list of arrays (``arrs[0][i]``)
    container: bool = False
    #: the subscript of the access as written in the loop, when its positions are
    #: that subscript's own (not reached through a name bound in the loop)
    node: ast.AST | None = None


class _Unsafe(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class _HelperSummary:
    writes: dict[int, list[list[ast.expr]] | None]  # param index -> index tuples (None: anywhere)
    unsafe: str | None = None  # a reason the helper cannot be used in a parallel loop
    reads: dict[int, list[list[ast.expr]] | None] = field(default_factory=dict)  # as `writes`
    returns_view: frozenset[int] = frozenset()  # params whose memory the result may view


class _Opaque:
    """A local view whose element positions the analysis does not follow."""

    def __init__(self, roots: set[str], text: str) -> None:
        self.roots = roots
        self.text = text


class _LoopChecker:
    """Checks one candidate loop.  Raises :class:`_Unsafe` with the reason."""

    def __init__(self, fdef: ast.FunctionDef, loop: ast.For, index: int, resolver: Resolver,
                 aliases: dict[str, set[str]], array_names: set[str], line0: int,
                 helper_cache: dict[int, _HelperSummary],
                 shifted: dict[str, ShiftedView] | None = None,
                 ndim_hint: dict[str, int] | None = None) -> None:
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
        self.reduction_forms: dict[str, str] = {}  # see _reduction_form
        self.red_nodes: set[int] = set()
        #: `if d < best: best = d; idx = i`: the key of a min/max reduction -> the
        #: names that follow it (assigned only with it, at its position)
        self.payloads: dict[str, tuple[str, ...]] = {}
        #: `if x[i] < 0: found = True`: a flag set to one constant -> that constant's source
        self.flag_sets: dict[str, str] = {}
        #: `h[b] += w` into an array made before the loop: summed per block
        self.scatter_sums: set[str] = set()
        self.scatter_params: dict[str, str] = {}  # see LoopAnalysis.scatter_params
        #: whether a sum at any index into an argument may be one (see _analysis)
        self.param_scatters = True
        #: why an array added into at any index is not such a sum (for the reason)
        self.scatter_hints: dict[str, str] = {}
        #: names bound inside the loop body -> what each of their bindings may view:
        #: ``(root, leading positions)``, an :class:`_Opaque` view, or None (a fresh
        #: value); every binding counts (``c = a`` and, on a branch, ``c = b``)
        self.private_alias: dict[str, list[tuple[str, list[ast.expr]] | _Opaque | None]] = {}
        self.helper_cache = helper_cache
        self.shifted = shifted or {}  # pre-loop views at other indices (and containers)
        self.floors: dict[int, int] = {}  # id(node) -> least loop variable there (guards)
        self.view_floors: dict[int, int] = {}  # id(view in private_alias) -> its guard's
        #: dimensions to assume at least for some arrays (see :attr:`assumed_scalar`)
        self.ndim_hint = ndim_hint or {}
        #: arrays the verdict assumes have at most this many dimensions: `c = a[i]`
        #: then `c += x` was taken for a number (no index of `a` shows more), which
        #: for a 2-D `a` is a row updated in place
        self.assumed_scalar: dict[str, int] = {}
        a = fdef.args
        self.local_names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
        self.local_names |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        for st in _walk_stmts(fdef.body):
            self.local_names.update(_stmt_targets(st))
        #: names the function binds to a dict or a set (``d = {}``, ``Dict.empty(...)``)
        self.mappings: set[str] = set()
        for st in _walk_stmts(fdef.body):
            if isinstance(st, (ast.Assign, ast.AnnAssign)) and _makes_mapping(st.value):
                targets = st.targets if isinstance(st, ast.Assign) else [st.target]
                self.mappings.update(t.id for t in targets if isinstance(t, ast.Name))
        #: functions defined inside the kernel (closures): name -> line
        self.nested: dict[str, int] = {}
        for node in ast.walk(fdef):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is not fdef:
                self.nested[node.name] = node.lineno
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
                for t in node.targets:
                    for n in _target_names(t):
                        self.nested[n] = node.lineno

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
            walrus = [n for n in ast.walk(st) if isinstance(n, ast.NamedExpr)
                      and n.target.id == self.var]
            if self.var in _stmt_targets(st) or walrus:
                raise _Unsafe(self.line(walrus[0] if walrus else st),
                              f"the loop variable `{self.var}` is reassigned "
                              "inside the loop, so indices written with it no longer identify "
                              "the iteration")
        for node in (n for st in self.loop.body for n in ast.walk(st)):
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)) \
                    and any(self.var in _target_names(g.target) for g in node.generators):
                raise _Unsafe(self.line(node), f"the comprehension `{self.src(node)}` names its "
                              f"own variable `{self.var}`, like the loop's: inside it "
                              f"`{self.var}` is not the iteration (rename the comprehension's "
                              "variable)")
        for node in ast.walk(self.loop):
            if isinstance(node, ast.Call):
                if _draws_random(node, self.resolver, self.local_names):
                    raise _Unsafe(self.line(node),
                                  f"`{self.src(node.func)}` draws from a random generator shared "
                                  "by all iterations, so the numbers each iteration gets would "
                                  "depend on the schedule")
                if isinstance(node.func, ast.Name) and node.func.id in self.nested:
                    where = self.nested[node.func.id] + self.line0
                    raise _Unsafe(self.line(node),
                                  f"`{node.func.id}` is a function defined inside "
                                  f"`{self.fdef.name}` (line {where}): the analysis does not "
                                  "follow such closures, which may read or write the arrays "
                                  "they capture; make it a module-level function that takes "
                                  "the arrays as arguments")

    def _check_exprs(self, exprs: list[ast.expr]) -> None:
        for e in exprs:
            for node in ast.walk(e):
                if isinstance(node, (ast.Yield, ast.YieldFrom)):
                    raise _Unsafe(self.line(node), "`yield` inside the loop")

    # -- scalars -----------------------------------------------------------
    def _reduction_form(self, st: ast.stmt) -> tuple[str, str, str] | None:
        """``(name, op, form)`` when *st* is a reduction statement.

        *form* tells how the statement updates the accumulator, which the combine
        of the per-block partials must repeat: ``"aug"`` (``s += e``, in place for
        an array) or ``"assign"`` (``s = s + e``, a new value) for ``+``/``*``;
        for ``min``/``max``, ``"strict"`` (``e`` replaces ``s`` when strictly
        better: ``s = min(s, e)``, ``if e < s: s = e``), ``"loose"`` (when better
        or equal: ``if e <= s: s = e``) or ``"last"`` (``s = min(e, s)``: ``e``
        replaces ``s`` unless ``s`` is strictly better, so a NaN ``e`` does).
        NumPy's ``s = np.maximum(s, e)`` (``minimum``, ``fmax``, ``fmin``, scalars
        or not) has the form ``"np"``, ``"np_last"`` (``np.maximum(e, s)``), ``"npf"``
        or ``"npf_last"``: the combine calls the same function, the same way round.
        """
        if isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            op = _REDUCTION_OPS.get(type(st.op))
            if op and st.target.id not in _names_loaded(st.value):
                return st.target.id, op, "aug"
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
                    return name, op, "assign"
                if right_is and not isinstance(v.op, ast.Sub) and name not in _names_loaded(
                        v.left):
                    return name, op, "assign"
            if (isinstance(v, ast.Call) and isinstance(v.func, ast.Name)
                    and v.func.id in ("min", "max") and len(v.args) >= 2 and not v.keywords
                    and not any(isinstance(a, ast.Starred) for a in v.args)
                    and self.resolver.value(v.func) in (min, max)):
                a, b = v.args[0], v.args[1:]
                rest = set().union(*(_names_loaded(x) for x in b))
                if isinstance(a, ast.Name) and a.id == name and name not in rest:
                    # (`s = min(s, e1, e2)`: `s = min(s, e1)` then `s = min(s, e2)`)
                    return name, v.func.id, "strict"
                if (len(v.args) == 2 and isinstance(b[0], ast.Name) and b[0].id == name
                        and name not in _names_loaded(a)):
                    return name, v.func.id, "last"
            if (isinstance(v, ast.Call) and len(v.args) == 2 and not v.keywords
                    and not any(isinstance(a, ast.Starred) for a in v.args)):
                fn = self.resolver.value(v.func)
                found = next((k for k in NP_EXTREMA if fn is getattr(np, k)), None)
                if found is not None:
                    op, stem = NP_EXTREMA[found]
                    a, b = v.args
                    if (isinstance(a, ast.Name) and a.id == name
                            and name not in _names_loaded(b)):
                        return name, op, stem
                    if (isinstance(b, ast.Name) and b.id == name
                            and name not in _names_loaded(a)):
                        return name, op, stem + "_last"
            if (isinstance(v, ast.IfExp) and isinstance(v.orelse, ast.Name)
                    and v.orelse.id == name):
                # `s = e if e > s else s`: `if e > s: s = e`
                return _replacing_update(name, v.test, v.body)
            return None
        if (isinstance(st, ast.If) and not st.orelse and len(st.body) == 1
                and isinstance(st.body[0], ast.Assign) and len(st.body[0].targets) == 1
                and isinstance(st.body[0].targets[0], ast.Name)):
            return _replacing_update(st.body[0].targets[0].id, st.test, st.body[0].value)
        return None

    def _guarded_update(self, st: ast.stmt) -> tuple[
            str, str, str, ast.Assign, list[ast.Assign], tuple[int, str] | None] | None:
        """``(key, op, form, its assignment, payload assignments)`` when *st* is
        ``if e < key: key = e; p = ...`` (any of ``<``, ``<=``, ``>``, ``>=``, either
        side; the test may also be ``c and e < key`` with ``c`` not reading them):
        the position of a minimum or maximum, carried by the payloads.  The last
        item, when not None, is ``(line, why)`` the payloads cannot follow it."""
        if not (isinstance(st, ast.If) and not st.orelse and st.body
                and all(isinstance(b, ast.Assign) and len(b.targets) == 1
                        and isinstance(b.targets[0], ast.Name) for b in st.body)):
            return None
        body: list[ast.Assign] = st.body  # type: ignore[assignment]
        targets = [b.targets[0].id for b in body]  # type: ignore[attr-defined]
        if len(set(targets)) != len(targets):
            return None
        tests = st.test.values if (isinstance(st.test, ast.BoolOp)
                                   and isinstance(st.test.op, ast.And)) else [st.test]
        for t in tests:
            if not (isinstance(t, ast.Compare) and len(t.ops) == 1
                    and isinstance(t.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE))):
                continue
            left, right, cmp = t.left, t.comparators[0], t.ops[0]
            for key_node, e, flip in ((right, left, False), (left, right, True)):
                if not (isinstance(key_node, ast.Name) and key_node.id in targets):
                    continue
                key = key_node.id
                assign = body[targets.index(key)]
                if not _same(assign.value, e):
                    continue
                small = isinstance(cmp, (ast.Lt, ast.LtE)) != flip
                op = "min" if small else "max"
                form = "loose" if isinstance(cmp, (ast.GtE, ast.LtE)) else "strict"
                pays = [b for b in body if b is not assign]
                if any(isinstance(n, (ast.NamedExpr, ast.Yield, ast.Await))
                       for n in ast.walk(st.test)):
                    return None
                # what runs only when the update runs (the payloads, a filter after the
                # comparison) runs at other iterations in a block than in the loop
                # (each block finds its own improvements): it must not raise or write
                for x in [*tests[tests.index(t) + 1:], *(b.value for b in pays)]:
                    bad = _may_raise_or_write(x)
                    if bad is not None:
                        why = (self.line(x),
                               f"`{self.src(bad)}` runs only when `{key}` improves, and the "
                               "blocks of a parallel loop each find their own improvements, "
                               "other iterations than the loop in order: a call, division "
                               "or power there may raise or write where the loop would not "
                               f"(keep the position, e.g. `idx = {self.var}`, and compute it "
                               "after the loop)")
                        return key, op, form, assign, pays, why
                # nothing the update computes may read what it updates
                for x in [e, *(o for o in tests if o is not t), *pays]:
                    seen = set(targets) & _names_loaded(x)
                    if seen:
                        if x is e or not pays:
                            return None
                        what = sorted(seen)[0]
                        why = (self.line(x),
                               f"`{self.src(x)}` reads `{what}`, which the update of the "
                               f"{op} `{key}` (line {self.line(st)}) changes: its value "
                               "comes from the iteration before, so the loop runs in order")
                        return key, op, form, assign, pays, why
                return key, op, form, assign, pays, None
        return None

    def find_reductions(self, defined_before: set[str]) -> None:
        candidates: dict[str, set[str]] = {}
        forms: dict[str, dict[str, ast.stmt]] = {}
        nodes: dict[str, list[ast.stmt]] = {}
        pays_of: dict[str, list[tuple[ast.stmt, frozenset[str]]]] = {}
        pay_nodes: dict[str, list[ast.Assign]] = {}
        pay_why: dict[str, tuple[int, str]] = {}
        bad: set[str] = set()
        for st in _walk_stmts(self.loop.body):
            form = self._reduction_form(st)
            guarded = self._guarded_update(st) if form is None else None
            if guarded is not None:
                name, op, how, assign, pays, why = guarded
                form = (name, op, how)
                pays_of.setdefault(name, []).append((st, frozenset(
                    b.targets[0].id for b in pays)))  # type: ignore[attr-defined]
                pay_nodes.setdefault(name, []).extend(pays)
                if why is not None:
                    pay_why.setdefault(name, why)
            elif form is not None:
                pays_of.setdefault(form[0], []).append((st, frozenset()))
            if form:
                name, op, how = form
                candidates.setdefault(name, set()).add(op)
                forms.setdefault(name, {}).setdefault(how, st)
                nodes.setdefault(name, []).append(st)
                if isinstance(st, ast.If):  # `if e > m: m = e`: its assignment belongs to it
                    nodes[name].extend(st.body)
        # the payloads of a key: the same names at each of its updates, assigned
        # nowhere else, read nowhere in the loop, known before it
        loads = [n for n in ast.walk(self.loop)
                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        for name, updates in pays_of.items():
            names = frozenset().union(*(ps for _, ps in updates))
            if not names or name in pay_why:
                continue
            (st1, ps1), *rest = updates
            where = f"the {next(iter(candidates[name]))} of `{name}` (line {self.line(st1)})"
            lone = sorted(names)[0]
            for st2, ps2 in rest:
                if ps2 != ps1:
                    pay_why[name] = (self.line(st2), (
                        f"this update of `{name}` sets {_listing(ps2)} where line "
                        f"{self.line(st1)} sets {_listing(ps1)}: which names hold the "
                        "position of the best value depends on the order of the updates"))
                    break
            else:
                own = {id(b) for b in pay_nodes[name]}
                other = next((st for st in _walk_stmts(self.loop.body)
                              if id(st) not in own and names & set(_stmt_targets(st))), None)
                read = next((n for n in loads if n.id in names), None)
                if other is not None:
                    p = sorted(names & set(_stmt_targets(other)))[0]
                    pay_why[name] = (self.line(other), (
                        f"`{p}` follows {where} and is also assigned here: its final value "
                        "depends on which assignment ran last, so the loop runs in order"))
                elif read is not None:
                    pay_why[name] = (self.line(read), (
                        f"`{read.id}` follows {where} and is read here, in the loop: each "
                        "iteration sees the position found so far, which depends on the "
                        "order of the iterations"))
                elif not names <= defined_before:
                    p = sorted(names - defined_before)[0]
                    pay_why[name] = (self.line(st1), (
                        f"`{p}` follows {where} but has no value before the loop; give it "
                        f"one (e.g. `{p} = -1`), the result when no iteration updates it"))
                elif self.var in names or names & set(candidates):
                    pay_why[name] = (self.line(st1), (
                        f"`{lone}` follows {where} and is also the loop variable or a "
                        "reduction of its own"))
        for name, why in pay_why.items():
            if name in defined_before:
                raise _Unsafe(*why)
            bad.add(name)  # a private of the iteration: the usual checks apply
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
            op = ops.pop()
            how = forms[name]
            if op in ("min", "max") and len(how) > 1:
                (f1, st1), (f2, st2) = sorted(how.items())[:2]
                raise _Unsafe(self.line(st2), f"`{name}` is updated with {op}() in two ways "
                              f"that keep different values on ties and NaN (`{self.src(st1)}`, "
                              f"line {self.line(st1)}, and `{self.src(st2)}`): the result "
                              "depends on the order of the updates, so they run in order")
            self.reductions[name] = op
            self.reduction_forms[name] = (next(iter(how)) if len(how) == 1 else "mixed")
            self.red_nodes.update(id(st) for st in nodes[name] if not (
                isinstance(st, ast.Assign) and any(isinstance(o, ast.If) and st in o.body
                                                   for o in nodes[name])))
            pays = frozenset().union(*(ps for _, ps in pays_of[name]))
            if pays:
                self.payloads[name] = tuple(sorted(pays))
        self._find_scatter_sums(defined_before, loads)
        self._find_flags(defined_before, loads)

    def _find_scatter_sums(self, defined_before: set[str], loads: list[ast.Name]) -> None:
        """``h = np.zeros(m)`` before the loop, ``h[b] += w`` in it at any index, and
        ``h`` used nowhere else in the loop: a histogram, or a gradient summed over
        the rows.  Each block sums into an array of its own, and the blocks' arrays
        are added to ``h`` in block order, as ``s += x[i]`` is."""
        a = self.fdef.args
        params = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                  if x is not None}
        pre = list(_walk_stmts(self.fdef.body[:self.index], own=True))
        made: dict[str, list[ast.stmt]] = {}
        for st in pre:
            for name in _stmt_targets(st):
                made.setdefault(name, []).append(st)
            if isinstance(st, ast.Try):  # `except E as h`
                for h in st.handlers:
                    if h.name:
                        made.setdefault(h.name, []).append(st)
        # before the loop, the array may be filled and measured, nothing else: any
        # other use could leave another name for it (`g = h`, `g = helper(h)`)
        plain = _plain_uses(pre)
        targets: dict[str, list[ast.AugAssign]] = {}
        for st in _walk_stmts(self.loop.body):
            if (isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Subscript)
                    and isinstance(st.target.value, ast.Name)):
                targets.setdefault(st.target.value.id, []).append(st)
        taken = {self.var, *self.reductions, *(p for ps in self.payloads.values() for p in ps)}
        for name, stmts in targets.items():
            if name in taken or name not in defined_before or name in plain:
                continue
            # an argument the function does not rebind (`counts[b] += 1` into the
            # caller's array), or an array the function made
            param = name in params and name not in made
            if param and not self.param_scatters:
                continue
            if not param and (name not in made or name in params):
                continue
            ops = {_REDUCTION_OPS.get(type(st.op)) for st in stmts}
            if len(ops) != 1 or not ops <= ({"+"} if param else {"+", "*"}):
                continue  # (a scatter sum or product: each block's own array)
            consts = [_const_int(st.value) for st in stmts]
            if param:
                # its dtype shows at call time: what the loop adds decides where
                # per-block sums repeat the loop exactly (see scatter_params)
                kind = ("count" if all(isinstance(st.op, ast.Add) and c is not None and c > 0
                                       for st, c in zip(stmts, consts, strict=True))
                        else "int" if None not in consts else "any")
            # made by a NumPy allocation, each time: an array of the function's own
            elif not all(isinstance(b, ast.Assign) and len(b.targets) == 1
                       and isinstance(b.targets[0], ast.Name) and isinstance(b.value, ast.Call)
                       and getattr(self.resolver.value(b.value.func), "__name__", None)
                       in _SCATTER_ALLOCATORS
                       and getattr(self.resolver.value(b.value.func), "__module__", "")
                       .startswith("numpy") for b in made[name]):
                continue
            # an integer array truncates each addition of a float (`h[b] += 0.5`), which
            # per-block sums would not repeat: floats only into a float array
            kinds = set() if param else {
                self._array_kind(b.value) for b in made[name]}  # type: ignore[arg-type]
            # an integer constant adds exactly into an integer array, and `+= k` (k > 0)
            # into a bool one too (True stays True); `-=`/`*=` toggle or clear bools
            by_consts = None not in consts and (
                kinds <= {"i"} or all(isinstance(st.op, ast.Add) and c is not None and c > 0
                                      for st, c in zip(stmts, consts, strict=True)))
            if not param and not kinds <= {"f"} and not by_consts:
                self.scatter_hints[name] = (
                    f"; `{name}` is not surely a float array (`{self.src(made[name][0].value)}`"
                    f", line {self.line(made[name][0])}), and an integer array truncates each "
                    "addition of a float, which per-block sums would not repeat: give it a "
                    "float dtype, e.g. `np.zeros(m)`, to run the loop in parallel")
                continue
            # every use of the name in the loop is the base of one of these targets
            own = {id(st.target.value) for st in stmts}
            uses = [n for n in ast.walk(self.loop) if isinstance(n, ast.Name) and n.id == name]
            if any(id(n) not in own for n in uses):
                continue
            if any(name in _names_loaded(st.value) or name in _names_loaded(st.target.slice)
                   for st in stmts):
                continue
            if any(name in its and other != name for other, its in self.aliases.items()):
                continue  # another name may view it
            self.reductions[name] = ops.pop()  # type: ignore[assignment]
            self.reduction_forms[name] = "aug"
            self.scatter_sums.add(name)
            if param:
                self.scatter_params[name] = kind

    def _array_kind(self, call: ast.Call) -> str | None:
        """``"f"`` when the NumPy allocation *call* surely makes a float or complex
        array (``np.zeros(m)``, the default dtype; ``np.full(m, 0.0)``; a float or
        complex ``dtype``: ``np.float32``, ``float``, ``"f8"``...), ``"i"`` a
        (non-bool) integer one, ``"b"`` a bool one, None when the code does not
        show it (``np.zeros_like(x)``, ``dtype=dt``)."""
        fn = getattr(self.resolver.value(call.func), "__name__", "")
        dtype = next((k.value for k in call.keywords if k.arg == "dtype"), None)
        if dtype is None:
            pos = {"zeros": 1, "ones": 1, "empty": 1, "full": 2}.get(fn)
            if pos is not None and len(call.args) > pos:
                dtype = call.args[pos]
        if dtype is None:
            if fn in ("zeros", "ones", "empty"):
                return "f"  # float64
            if fn == "full" and len(call.args) > 1:
                fill = call.args[1]
                if isinstance(fill, ast.Constant) and type(fill.value) in (float, complex):
                    return "f"
                if isinstance(fill, ast.Constant) and type(fill.value) is int:
                    return "i"
            return None  # `_like`: the other array's dtype
        value = self.resolver.value(dtype) if not isinstance(dtype, ast.Constant) else dtype.value
        if value is None:  # (np.dtype(None) is float64)
            return None
        try:
            kind = np.dtype(value).kind  # type: ignore[arg-type]
        except TypeError:
            return None
        return "f" if kind in "fc" else "i" if kind in "iu" else "b" if kind == "b" else None

    def _find_flags(self, defined_before: set[str], loads: list[ast.Name]) -> None:
        """``found = False`` before the loop, ``found = True`` in it (under a test),
        and ``found`` read nowhere in the loop: its final value is the constant when
        any iteration set it, the start value otherwise, whatever the order."""
        sets: dict[str, list[ast.Assign]] = {}
        other: set[str] = {self.var, *self.reductions,
                           *(p for ps in self.payloads.values() for p in ps)}
        for st in _walk_stmts(self.loop.body):
            names = _stmt_targets(st)
            if (isinstance(st, ast.Assign) and len(st.targets) == 1
                    and isinstance(st.targets[0], ast.Name)
                    and isinstance(st.value, ast.Constant)
                    and isinstance(st.value.value, (bool, int, float))):
                sets.setdefault(names[0], []).append(st)
            else:
                other.update(names)
        for n in ast.walk(self.loop):
            if isinstance(n, ast.NamedExpr):
                other.add(n.target.id)
        read = {n.id for n in loads}
        for name, stmts in sets.items():
            values = {(type(st.value.value), st.value.value)  # type: ignore[attr-defined]
                      for st in stmts}
            if (name in other or name in read or name not in defined_before
                    or len(values) != 1):
                continue
            # (the constant as Python writes it: `1e400` is `1e309`, not `inf`)
            self.flag_sets[name] = ast.unparse(stmts[0].value)  # type: ignore[attr-defined]
            self.reductions[name] = "set"
            self.reduction_forms[name] = "set"
            self.red_nodes.update(id(st) for st in stmts)

    def check_accumulators(self, params: set[str]) -> None:
        """An accumulator updated in place (``acc += e``) may be split into per-block
        partials only when no other name in the loop reaches its memory: with
        ``acc = A[0]`` (a view), ``acc = out`` or ``v = acc[:]``, each iteration of
        the loop sees the running total through that other name, which block
        partials do not reproduce."""
        pre = self.fdef.body[:self.index]
        for name, form in self.reduction_forms.items():
            if form not in ("aug", "mixed"):
                continue
            inits = [b for b in _bindings(pre) if b.name == name]
            fresh = name not in params and bool(inits)
            roots: set[str] = {name} if name in params else set()
            for b in inits:
                srcs = self._sources(b.value)
                if isinstance(b.value, ast.Call) and not _fresh_call(
                        b.value) and self.resolver.helper(b.value.func) is None:
                    srcs |= {n.id for a in [*b.value.args, *(k.value for k in b.value.keywords)]
                             for n in ast.walk(a) if isinstance(n, ast.Name)}
                srcs.discard(name)
                if srcs:
                    fresh = False
                roots |= {r for s in srcs for r in self.roots(s)}
            roots.discard(name)
            # the names whose memory may be the accumulator's
            shared = set(roots)
            for other, its in self.aliases.items():
                if other != name and its & (roots | {name}):
                    shared |= its | {other}
            shared.discard(name)
            init = next((b for b in inits if b.kind == "assign"), None)
            made = (f" (`{name} = {self.src(init.value)}`, line {self.line(init.stmt)})"
                    if init is not None else " (an argument)" if name in params else "")
            if inits and all(b.kind == "assign" and isinstance(b.value, ast.Call)
                             and getattr(self.resolver.value(b.value.func), "__name__", None)
                             in _SCATTER_ALLOCATORS for b in inits):
                # an array for sure: before the loop it may be filled and measured, but
                # anything else (`g = h`, `g = helper(h)`) may leave another name for it
                other_use = _plain_uses(list(_walk_stmts(pre, own=True))).get(name)
                if other_use is not None:
                    st = self.red_stmt(name)
                    raise _Unsafe(self.line(other_use), (
                        f"the accumulator `{name}`{made} is used here before the loop "
                        "in a way that may give it another name; then `"
                        f"{self.src(st)}` (line {self.line(st)}) updates it in place, "
                        "which that name would see in order, and per-block partial "
                        f"results cannot reproduce (use `{name}` only by its own name)"))
            for acc in self.accesses:
                if acc.root in shared or acc.root == name:
                    st = self.red_stmt(name)
                    other = acc.root
                    if other == name:  # through another name: `v[0]` of `v = acc[:]`
                        try:
                            loaded = {n.id for n in ast.walk(ast.parse(acc.text))
                                      if isinstance(n, ast.Name)}
                        except SyntaxError:
                            loaded = set()
                        other = next((n for n in sorted(shared & loaded)), acc.text)
                    maybe = (f" when `{self.src(init.value)}` is an array rather than a number"
                             if init is not None and isinstance(init.value, ast.Subscript)
                             else "")
                    fix = (f"no other name may refer to `{name}`" if fresh else
                           f"start it from a fresh value, e.g. `{name} = 0.0`, `np.zeros(...)` "
                           f"or `.copy()`, or write `{name} = {name} + ...`")
                    raise _Unsafe(acc.line, f"the accumulator `{name}`{made} may share memory "
                                  f"with `{other}`{maybe}; then `{self.src(st)}` (line "
                                  f"{self.line(st)}) updates it in place, and the loop reads or "
                                  f"writes it here (`{acc.text}`): each iteration sees the "
                                  "running value, which per-block partial results cannot "
                                  f"reproduce ({fix})")
            if form == "mixed" and not fresh:
                st = self.red_stmt(name)
                raise _Unsafe(self.line(st), f"the accumulator `{name}`{made} is updated both "
                              f"in place (`{name} += ...`) and by assignment (`{name} = {name} "
                              "+ ...`), and it may be an array the caller sees: whether that "
                              "array is changed depends on the order of the updates")

    def red_stmt(self, name: str) -> ast.stmt:
        return next(st for st in _walk_stmts(self.loop.body)
                    if id(st) in self.red_nodes and name in _stmt_targets(st)
                    or isinstance(st, ast.If) and id(st) in self.red_nodes
                    and name in _stmt_targets(st.body[0]))

    def check_scalars(self, defined_before: set[str], read_after: dict[str, int]) -> list[str]:
        assigned: set[str] = set()
        for st in _walk_stmts(self.loop.body):
            assigned.update(_stmt_targets(st))
        for node in ast.walk(self.loop):
            if isinstance(node, ast.NamedExpr):
                assigned.add(node.target.id)
        assigned.add(self.var)
        self.assigned_in_body = assigned
        kept = set(self.reductions) | {p for ps in self.payloads.values() for p in ps}
        privates = sorted(assigned - kept)
        # flow: each non-reduction name must be written before it is read in an iteration
        _DefinedFlow(self, kept).run(self.loop.body, {self.var})
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
        self.floors = _guard_floors(self.loop, self.var)
        body_module = ast.Module(body=self.loop.body, type_ignores=[])
        # private views defined in the body: name -> [(root, leading positions), an
        # opaque view or None (fresh)], one per binding
        def branches(value: ast.expr) -> list[ast.expr]:  # `u[i - 2] if i >= 2 else 0.5`
            if isinstance(value, ast.IfExp):
                return branches(value.body) + branches(value.orelse)
            return [value]

        for b in _bindings(self.loop.body):
            if b.kind == "assign":  # one view per branch of a conditional expression
                views = []
                for v in branches(b.value):
                    view = self._view_of(v)
                    floor = self.floors.get(id(v))
                    if isinstance(view, tuple) and floor is not None:
                        # made under a guard (`u[i - 2] if i >= 2 else ...`): what is
                        # done through the name happens where the guard held
                        self.view_floors[id(view)] = floor
                    views.append(view)
            else:  # an element of a container or an array (`for arr in arrs`), unpacking
                roots = self._sources(b.value)
                head = self.src(b.stmt).splitlines()[0].rstrip(":") if isinstance(
                    b.stmt, (ast.For, ast.With)) else self.src(b.value)
                views = [_Opaque(roots, f"`{head}`") if roots else None]
            self.private_alias.setdefault(b.name, []).extend(views)
        for name in self.assigned_in_body - set(self.private_alias):
            self.private_alias[name] = [None]  # `x += 1` on a scalar, a `with` target...
        inner = {id(n.value) for n in ast.walk(body_module) if isinstance(n, ast.Subscript)}
        for node in ast.walk(body_module):
            if isinstance(node, ast.Subscript):
                if id(node) in inner:
                    continue  # part of a chain `a[x][y]`: its outermost level decides
                if isinstance(node.value, ast.Name) and node.value.id in self.scatter_sums:
                    continue  # `h[b] += w`: summed per block (see _find_scatter_sums)
                store = isinstance(node.ctx, (ast.Store, ast.Del))
                if store:
                    self._check_mapping_store(node)
                base, pos = _index_positions(node)
                owner = _field_owner(node) if base is None and _flat_chain(node) else None
                if owner is not None and not isinstance(
                        self.resolver.value(owner), types.ModuleType):
                    # `st.u[i]`, a field of a namedtuple (record, jitclass): counted as
                    # an access of `st` at [i], every field as one array
                    self._add_access(owner.id, pos, store, node)
                    continue
                if base is None or not _flat_chain(node):
                    # `out.T[i]`, `a[::-1][i]`, `f(a)[i]`: through a view
                    inner_value = node.value
                    while isinstance(inner_value, ast.Subscript) and _flat_chain(inner_value):
                        inner_value = inner_value.value
                    self._add_opaque(self._sources(inner_value), store, node,
                                     self.src(inner_value))
                    continue
                self._add_access(base.id, pos, store, node)
            elif isinstance(node, ast.Call):
                self._call_access(node)
            elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript)
                  and not (isinstance(node.target.value, ast.Name)
                           and node.target.value.id in self.scatter_sums)):
                base, pos = _index_positions(node.target)
                if base is None and _flat_chain(node.target):
                    base = _field_owner(node.target)  # `st.h[k] += 1`
                if base is not None and _flat_chain(node.target):
                    self._add_access(base.id, pos, False, node.target)  # the read half
            elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
                  and node.target.id in self.private_alias and id(node) not in self.red_nodes
                  and self._views_an_array(node.target.id)):
                # `c += x` where the loop made `c` a view of an array: updates it in place
                self._add_access_whole(node.target.id, True, node)
                self._add_access_whole(node.target.id, False, node)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                raise _Unsafe(self.line(node),
                              f"assignment to the attribute `{self.src(node)}` inside the loop")
        # whole-array uses: a Name of an array used outside subscripts/metadata; `c = a`
        # in the loop only names `a` (what is done through `c` counts as done to `a`)
        bound_values: set[int] = set()

        def binding_names(value: ast.expr) -> None:
            if isinstance(value, ast.Name):
                bound_values.add(id(value))
            elif isinstance(value, ast.IfExp):
                binding_names(value.body)
                binding_names(value.orelse)
            elif isinstance(value, (ast.Tuple, ast.List)):
                for e in value.elts:
                    binding_names(e)
            elif isinstance(value, (ast.Starred, ast.NamedExpr)):
                binding_names(value.value)

        for b in _bindings(self.loop.body):
            binding_names(b.value)
        for node in _whole_uses(body_module, self.array_names | set(self.aliases)):
            if id(node) in bound_values:
                continue
            if node.id in self.private_alias:
                self._add_access_whole(node.id, False, node)
                continue
            for root in sorted(self.roots(node.id)):
                self.accesses.append(_Access(root, None, False, self.line(node), node.id))

    def _least_ndim(self, name: str) -> int:
        """The least number of dimensions the function's code shows *name* has:
        the most indices it is subscripted with (``a[i, j]``: 2), ``a.shape[k]``."""
        best = self.ndim_hint.get(name, 0)
        for node in ast.walk(self.fdef):
            if isinstance(node, ast.Subscript):
                base, pos = _index_positions(node)
                if base is not None and base.id == name and _flat_chain(node) and not any(
                        isinstance(e, ast.Constant) and e.value is Ellipsis for e in pos):
                    if (isinstance(node.value, ast.Attribute) and node.value.attr == "shape"):
                        continue
                    best = max(best, len(pos))
                if (isinstance(node.value, ast.Attribute) and node.value.attr == "shape"
                        and isinstance(node.value.value, ast.Name)
                        and node.value.value.id == name):
                    k = _const_int(node.slice)
                    if k is not None and k >= 0:
                        best = max(best, k + 1)
        return best

    def _views_an_array(self, name: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether a binding in the loop makes *name* a view of an array for sure
        (``c = a`` of an indexed array, ``c = a[1:]``, ``c = a.T``), so that
        ``c += x`` updates that array in place.  ``t = a[i]`` may be a number."""
        for view in self.private_alias.get(name, []):
            if isinstance(view, _Opaque):
                return True
            if view is None:
                continue
            root, lead = view
            if any(isinstance(e, ast.Slice) or (isinstance(e, ast.Constant)
                                                and e.value is Ellipsis) for e in lead):
                return True
            if lead and len(lead) < self._least_ndim(root):
                return True  # `r = a[i]` of an `a` indexed elsewhere as `a[i, j]`: a row
            if lead:  # taken for a number: right only while `a` has len(lead) dimensions
                self.assumed_scalar[root] = min(len(lead),
                                                self.assumed_scalar.get(root, len(lead)))
            if not lead and root not in seen and (
                    root in self.array_names or self._views_an_array(root, seen | {name})):
                return True
        return False

    def _view_of(self, value: ast.expr) -> tuple[str, list[ast.expr]] | _Opaque | None:
        """What a name assigned *value* in the body views: ``(root, leading
        positions)``, an :class:`_Opaque` view, or None for a fresh array."""
        if isinstance(value, ast.Subscript):
            base, pos = _index_positions(value)
            if base is not None and _flat_chain(value):
                return base.id, pos
        if isinstance(value, ast.Name):
            return value.id, []
        roots = self._sources(value)
        return _Opaque(roots, self.src(value)) if roots else None

    def _sources(self, value: ast.expr) -> set[str]:
        """Names whose memory *value* may view: slices, ``.T``, ``reshape``..., a
        field (``st.u``), and the array arguments of a helper whose result may be a
        view of them (never a module: ``np`` of ``np.pi``)."""
        out = {n for n in _view_sources(value) if not isinstance(
            self.resolver.value(ast.Name(id=n, ctx=ast.Load())), types.ModuleType)}
        for node in ast.walk(value):
            if isinstance(node, ast.Call):
                helper = self.resolver.helper(node.func)
                if helper is None:
                    continue
                summary = _summarise_helper(helper, self.resolver, self.helper_cache)
                for pidx in summary.returns_view:
                    if pidx < len(node.args):
                        out |= _view_sources(node.args[pidx])
        return out

    def _add_opaque(self, names: set[str], write: bool, node: ast.AST, text: str,
                    seen: frozenset[str] = frozenset()) -> None:
        """An access of the arrays *names* through a view the analysis does not follow."""
        for name in sorted(names):
            if isinstance(self.resolver.value(ast.Name(id=name, ctx=ast.Load())),
                          types.ModuleType):
                continue  # `np` of `np.ravel(a)[j]`
            if name in self.private_alias:
                if name in seen:
                    continue
                for view in self.private_alias[name]:
                    if view is None:
                        continue  # a fresh array private to the iteration
                    if isinstance(view, _Opaque):
                        self._add_opaque(view.roots - {name}, write, node, text, seen | {name})
                    elif view[0] != name:
                        self._add_opaque({view[0]}, write, node, text, seen | {name})
                    else:
                        self._opaque_roots(name, write, node, text)
                continue
            self._opaque_roots(name, write, node, text)

    def _opaque_roots(self, name: str, write: bool, node: ast.AST, text: str) -> None:
        for root in sorted(self.roots(name)):
            self.accesses.append(_Access(root, None, write, self.line(node), self.src(node),
                                         view=text))

    def _add_access(self, name: str, pos: list[ast.expr], write: bool, node: ast.AST,
                    seen: frozenset[str] = frozenset(), floor: int | None = None) -> None:
        if name in self.private_alias:
            if name in seen:
                return
            for view in self.private_alias[name]:
                if view is None:
                    continue  # a fresh array private to the iteration
                if isinstance(view, _Opaque):
                    self._add_opaque(view.roots - {name}, write, node, view.text, seen | {name})
                    continue
                root_name, lead = view
                made = self.view_floors.get(id(view))
                at = floor if made is None else made if floor is None else max(floor, made)
                if root_name in self.private_alias and root_name != name:
                    self._add_access(root_name, lead + pos, write, node, seen | {name}, at)
                else:
                    self._root_access(root_name, lead + pos, write, node, at, own=False)
            return
        self._root_access(name, pos, write, node, floor)

    def _root_access(self, name: str, pos: list[ast.expr] | None, write: bool,
                     node: ast.AST, floor: int | None = None, own: bool = True) -> None:
        """An access of *name* (not bound in the loop) at *pos*, for each array it
        may refer to."""
        shifted = self.shifted.get(name)
        if shifted is not None and shifted.elements and pos:
            k = _const_int(pos[0])
            n = len(shifted.elements)
            if k is not None and -n <= k < n and shifted.elements[k] != name:
                # `arrs[0][i]` of `arrs = (a, b)`: `a[i]`
                return self._root_access(shifted.elements[k], pos[1:], write, node, floor,
                                         own=False)
        view = None
        container = False
        if shifted is not None:
            container = shifted.container
            what = "the tuple/list " if container else ""
            view = f"{what}`{shifted.text}` (line {shifted.line + self.line0})"
            if not shifted.exact:
                pos = None  # its indices may reach one element twice: anywhere
        here = self.floors.get(id(node))
        floor = here if floor is None else floor if here is None else max(floor, here)
        for root in sorted(self.roots(name)):
            self.accesses.append(_Access(root, pos, write, self.line(node), self.src(node),
                                         view=view, floor=floor, container=container,
                                         node=node if own and shifted is None else None))

    def _shared_container(self, name: str) -> bool:
        """Whether *name* may refer to a container made outside the iteration
        (not one each iteration builds afresh: ``tmp = []``, ``seen = set()``)."""
        if name not in self.assigned_in_body:
            return True
        made = [b for b in _bindings(self.loop.body) if b.name == name and b.kind != "fill"]
        return not made or not all(b.kind == "assign" and _new_container(b.value)
                                   for b in made)

    def _check_mapping_store(self, node: ast.Subscript) -> None:
        """``d[k] = v`` into a dict or set made before the loop inserts a key:
        the dict grows in the order of the iterations, and inserting from
        several threads at once corrupts it."""
        name = _root_name(node)
        if name is None or not self._shared_container(name):
            return
        hit = self.mappings & ({name} | self.roots(name))
        if hit:
            raise _Unsafe(self.line(node),
                          f"`{self.src(node)}` stores into the dict `{sorted(hit)[0]}`, "
                          "shared by all iterations: storing at a new key inserts it, so "
                          "the dict changes in the order of the iterations (and Numba's "
                          "dicts are not safe to change from several threads at once); "
                          "fill an array indexed by the loop variable instead")

    def _call_access(self, call: ast.Call) -> None:
        func = call.func
        if (isinstance(func, ast.Attribute) and func.attr in _CONTAINER_METHODS
                and not isinstance(self.resolver.value(func.value), types.ModuleType)):
            name = _root_name(func.value)
            if name is None or self._shared_container(name):
                what = f"`{name}`" if name is not None else "a container"
                raise _Unsafe(self.line(call),
                              f"`{self.src(func)}(...)` changes {what}, a list, dict or set "
                              "shared by all iterations: its contents would follow the order "
                              "of the iterations (and Numba's containers are not safe to "
                              "change from several threads at once); fill an array indexed "
                              "by the loop variable instead, or build the container after "
                              "the loop")
        # method call on an array: a.fill(0), a[i].sort()
        if (isinstance(func, ast.Attribute) and func.attr in _MUTATING_METHODS
                and not isinstance(self.resolver.value(func.value), types.ModuleType)):
            # (`np.sort(a)` is a function of a module, returning a new array)
            obj = func.value
            if isinstance(obj, ast.Subscript):
                base, pos = _index_positions(obj)
                if base is not None:
                    self._add_access(base.id, pos, True, call)
            elif isinstance(obj, ast.Name):
                self._add_access_whole(obj.id, True, call)
        for kw in call.keywords:
            # a NumPy function's `out=`; a helper's own parameter named `out` is
            # followed below, at the indices the helper writes
            if kw.arg == "out" and self.resolver.helper(func) is None:
                self._write_target(kw.value, call)
        target = self.resolver.value(func)
        if (call.args and getattr(target, "__name__", None) in _WRITES_FIRST_ARG
                and (getattr(target, "__module__", "") or "").startswith("numpy")):
            self._write_target(call.args[0], call)  # np.copyto(dst, src), np.put(a, ...)
        for arg in _positional_outs(target, call):  # np.add(acc, x, acc)
            self._write_target(arg, call)
        helper = self.resolver.helper(func)
        if helper is None:
            return
        summary = _summarise_helper(helper, self.resolver, self.helper_cache)
        if summary.unsafe:
            raise _Unsafe(self.line(call),
                          f"the helper `{self.src(func)}` called here {summary.unsafe}")
        params = summary_params(helper)
        bound = _bind_call(params, call)
        if bound is None:
            if summary.writes:
                raise _Unsafe(self.line(call),
                              f"the helper `{self.src(func)}` writes some of its arguments, "
                              "passed here through `*`/`**`: which arrays cannot be followed")
            for a in [*call.args, *(kw.value for kw in call.keywords)]:
                self._add_opaque(self._sources(a), False, call, self.src(a))
            return
        mapping = {p: a for p, a in zip(params, bound, strict=True) if a is not None}
        # a field passed (`helper(st.u, i)`) counts as its owner, `st`, at the same indices
        shown = list(bound)
        bound = [ast.Name(id=owner.id, ctx=ast.Load()) if isinstance(a, ast.Attribute) and (
            owner := _field_owner(a)) is not None
            and not isinstance(self.resolver.value(owner), types.ModuleType) else a
            for a in bound]
        for pidx, idx_list in summary.reads.items():
            arg = bound[pidx] if pidx < len(bound) else None
            if arg is None:
                continue
            n_before = len(self.accesses)
            whole_item = (idx_list is None and isinstance(arg, ast.Subscript)
                          and _flat_chain(arg) and pidx not in summary.writes)
            if whole_item:
                # `f(out[i])` with f reading its parameter whole (a number, or the
                # row it is given): a read of `out[i]`, as written in the loop
                base, pos = _index_positions(arg)
                if base is not None:
                    self._add_access(base.id, pos, False, call)
                else:
                    self._add_opaque(self._sources(arg), False, call, self.src(arg))
            elif (idx_list is None and isinstance(arg, ast.Name)
                  and arg.id in self.private_alias and pidx not in summary.writes):
                # `yi = y[i]` then `f(yi)`, f reading it whole: a read of y[i]
                self._add_access(arg.id, [], False, call)
            elif idx_list is None or not isinstance(arg, (ast.Name, ast.Subscript)):
                self._add_opaque(self._sources(arg), False, call, self.src(arg))
            else:
                for idx in idx_list:
                    sub_idx = [_substitute(e, mapping) for e in idx]
                    if isinstance(arg, ast.Name):
                        self._add_access(arg.id, sub_idx, False, call)
                    else:
                        base, pos = _index_positions(arg)
                        if base is not None and _flat_chain(arg):
                            self._add_access(base.id, pos + sub_idx, False, call)
                        else:
                            self._add_opaque(self._sources(arg), False, call, self.src(arg))
            for acc in self.accesses[n_before:]:
                acc.helper = self.src(func)
        for pidx, idx_list in summary.writes.items():
            arg = bound[pidx] if pidx < len(bound) else None
            if arg is None:
                continue
            if idx_list is None or not isinstance(arg, (ast.Name, ast.Subscript)):
                self._write_target(arg, call, whole=True, helper=self.src(func))
                continue
            for idx in idx_list:
                # substitute helper parameters by the call's arguments
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
                    arg_text = self.src(shown[pidx])  # type: ignore[arg-type]
                    acc.text = (f"{arg_text}[{', '.join(self.src(e) for e in sub_idx)}]"
                                if sub_idx else arg_text)

    def _add_access_whole(self, name: str, write: bool, node: ast.AST) -> None:
        if name in self.private_alias:
            for view in self.private_alias[name]:
                if view is None:
                    continue
                if isinstance(view, _Opaque):
                    self._add_opaque(view.roots - {name}, write, node, view.text,
                                     frozenset({name}))
                    continue
                root_name, lead = view
                made = self.view_floors.get(id(view))
                if root_name == name:
                    self._root_access(name, None, write, node, made)
                else:
                    self._add_access(root_name, lead + [ast.Constant(value=Ellipsis)], write,
                                     node, frozenset({name}), made)
            return
        for root in sorted(self.roots(name)):
            self.accesses.append(_Access(root, None, write, self.line(node), self.src(node)))

    def _write_target(self, arg: ast.expr, call: ast.Call, whole: bool = False,
                      helper: str | None = None) -> None:
        if isinstance(arg, ast.Subscript):
            base, pos = _index_positions(arg)
            if base is not None and _flat_chain(arg):
                self._add_access(base.id, pos + [ast.Constant(value=Ellipsis)], True, call)
            else:
                self._add_opaque(self._sources(arg), True, call, self.src(arg))
        elif not isinstance(arg, ast.Name):
            self._add_opaque(self._sources(arg), True, call, self.src(arg))
        else:
            if helper and arg.id not in self.private_alias and arg.id not in (
                    self.assigned_in_body):
                raise _Unsafe(self.line(call),
                              f"the helper `{helper}` writes its argument `{arg.id}`, an array "
                              "(or a list, dict or set) shared by all iterations")
            self._add_access_whole(arg.id, True, call)

    def _aligned(self, expr: ast.expr) -> int | None:
        """Offset when *expr* is ``v``, ``v + c``, ``v - c`` or ``c + v`` (c an int literal)."""
        return _shifted_var(expr, self.var)

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
            views = {a.view for a in accs}
            if views != {None}:
                # through a view at other indices: positions are the view's, so
                # the array cannot be located by rows (an MPI rank then runs it whole)
                roles[root] = ArrayRole(read=read, written=written, access="through a view",
                                        axis=None, offsets=())
            else:
                offs = tuple(sorted(offsets)) if axis is not None else ()
                roles[root] = ArrayRole(read=read, written=written, access=access, axis=axis,
                                        offsets=offs, floors=self._floors(accs, axis, offs))
            if not written or forced:
                continue
            writes = [a for a in accs if a.write]
            self._check_container(root, accs, writes, views)
            # every access through one and the same view: its own indices are exact
            viewed = None if len(views) == 1 and all(a.positions is not None for a in accs) \
                else next((a for a in accs if a.view is not None and a.view != writes[0].view),
                          None)
            if viewed is None and len(views) > 1:
                viewed = next(a for a in accs if a.view is not None)
            if viewed is not None and viewed is writes[0]:
                other = next((a for a in accs if a.view != viewed.view), None)
                if other is not None:
                    how = "written" if other.write else "read"
                    raise _Unsafe(viewed.line, f"`{root}` is written here (`{viewed.text}`) "
                                  f"through {viewed.view}, a view that holds its elements at "
                                  "other indices (or at indices the analysis does not follow), "
                                  f"and {how} at `{other.text}` (line {other.line}): one "
                                  "iteration may touch what another writes")
            if viewed is not None:
                w = writes[0]
                how = "written" if viewed.write else "read"
                raise _Unsafe(viewed.line, f"`{root}` is written in the loop (`{w.text}`, line "
                              f"{w.line}) and {how} here (`{viewed.text}`) through {viewed.view}, "
                              "a view that holds its elements at other indices (or at indices "
                              "the analysis does not follow): one iteration may touch what "
                              "another writes")
            if axis is not None and len(offsets) == 1:
                continue
            mirror = self._mirrored(accs) if axis is None else None
            if mirror is not None:  # `D[i, j] = D[j, i] = d` for j > i: each its own elements
                roles[root] = ArrayRole(read=read, written=written, access="mirrored",
                                        axis=mirror[0], offsets=(0,), mirror_axis=mirror[1])
                continue
            owned = self._owned(accs) if axis is None else None
            if owned is not None:  # `out[n - 1 - i] = x[i]`: each its own elements
                roles[root] = ArrayRole(read=read, written=written, access="owned",
                                        index=owned)
                continue
            # explain the first conflict
            for w in writes:
                if w.positions is None and w.view is not None:
                    raise _Unsafe(w.line, f"`{w.text}` writes `{root}` through {w.view}, a "
                                  "view whose indices the analysis does not follow: which "
                                  "elements each iteration writes is not known")
                if w.positions is None:
                    raise _Unsafe(w.line, f"`{root}` is written as a whole (`{w.text}`) in "
                                  "every iteration")
                if all(self._aligned(p) is None for p in w.positions):
                    who = (f"the helper `{w.helper}` writes `{w.text}`, " if w.helper
                           else f"`{w.text}` writes `{root}` ")
                    raise _Unsafe(w.line, f"{who}at an index that does not follow the loop "
                                  f"variable `{self.var}`: different iterations may write the same "
                                  "element (a scatter or a shared slot)"
                                  + self.scatter_hints.get(root, ""))
            for a in accs:
                if a.positions is None:
                    raise _Unsafe(a.line, f"`{root}` is written in the loop (line "
                                  f"{writes[0].line}) and used whole here (`{a.text}`), so "
                                  "iterations read each other's results")
            w, other = next(((a, b) for a in writes for b in accs
                             if b is not a and not self._compatible(a, b)),
                            (writes[0], next((b for b in accs if b is not writes[0]), writes[0])))
            kind = "read" if not other.write else "written"
            raise _Unsafe(other.line, f"`{root}` is written at `{w.text}` (line {w.line}) and "
                          f"{kind} at `{other.text}` (line {other.line}): the loop variable "
                          f"`{self.var}` is not at the same position with the same offset in "
                          "both, so one iteration touches elements another iteration writes (a "
                          "loop-carried dependence)")
        return roles

    def _written_as_is(self, accs: list[_Access]) -> bool:
        """Every access is a subscript written in the loop itself (not through a
        helper, a view or a container, and not of the whole array), and the loop
        does not bind its own variable again: their indices are what they read."""
        return not any(a.positions is None or a.node is None or a.helper is not None
                       or a.view is not None or a.container for a in accs) \
            and not _rebinds(self.loop.body, self.var)

    def _mirrored(self, accs: list[_Access]) -> tuple[int, int] | None:
        """Axes ``(a, b)`` when the array is used only at ``[.., i, .., x, ..]`` (the loop
        variable on axis *a*) and at ``[.., y, .., i, ..]`` (on axis *b*), where every
        ``y`` is surely above ``i`` and every ``x`` at or above it — or every ``y`` below
        and every ``x`` at or below: the elements of a triangle and its mirror image,
        ``D[i, j] = D[j, i] = d`` for ``j`` in ``range(i + 1, n)``.  Iteration ``i`` then
        touches only its own elements (element ``(p, q)`` with ``p < q`` is iteration
        ``p``'s, at ``(q, p)`` too); None otherwise."""
        if not self._written_as_is(accs):
            return None
        ndim = min(len(a.positions) for a in accs)  # type: ignore[arg-type]
        if any(isinstance(e, (ast.Slice, ast.Starred)) or (isinstance(e, ast.Constant)
                                                            and e.value is Ellipsis)
               for a in accs for e in a.positions):  # type: ignore[union-attr]
            return None
        for ax in range(ndim):
            for bx in range(ndim):
                if ax == bx:
                    continue
                ok = True
                needs: set[str] = set()  # what the mirror accesses need: ">" or "<"
                owns: list[str | None] = []  # the side of the owner's axis-b index
                for a in accs:
                    pa, pb = a.positions[ax], a.positions[bx]  # type: ignore[index]
                    if self._aligned(pa) == 0 and isinstance(pa, ast.Name):
                        owns.append(self._side(pb, a.node))  # type: ignore[arg-type]
                    elif self._aligned(pb) == 0 and isinstance(pb, ast.Name):
                        side = self._side(pa, a.node)  # type: ignore[arg-type]
                        if side not in (">", "<"):
                            ok = False
                            break
                        needs.add(side)
                    else:
                        ok = False
                        break
                if not ok or len(needs) != 1:
                    continue
                allowed = {">": (">", ">=", "="), "<": ("<", "<=", "=")}[needs.pop()]
                if all(s in allowed for s in owns):
                    return ax, bx
        return None

    def _owned(self, accs: list[_Access]) -> tuple[str, ...] | None:
        """The indices, as written, when every access to the array has one and the
        same expression in one position, and that expression takes another value
        for each iteration and is never negative (so it never wraps around to
        the end): ``2 * i + 1``, ``n - 1 - i`` for ``i`` in ``range(n)``,
        ``i * m + j`` for ``j`` in ``range(m)``.  Each iteration then touches
        only its own elements.  None otherwise."""
        if not self._written_as_is(accs):
            return None
        ndim = min(len(a.positions) for a in accs)  # type: ignore[arg-type]
        defs = self._index_names()
        for ax in range(ndim):
            exprs = [a.positions[ax] for a in accs]  # type: ignore[index]
            # `j = n - 1 - i` at the top of the body, then `out[j]`: its value
            subst = [_substitute(e, defs) if isinstance(e, (ast.Name, ast.BinOp)) and any(
                isinstance(n, ast.Name) and n.id in defs for n in ast.walk(e)) else e
                for e in exprs]
            written = {ast.unparse(e): ast.unparse(e) + (
                f" = {ast.unparse(x)}" if ast.dump(x) != ast.dump(e) else "")
                for e, x in zip(exprs, subst, strict=True)}
            exprs = subst
            if len({ast.dump(e) for e in exprs}) != 1:
                if self._strided(exprs):
                    return tuple(written.values())
                continue
            if self._distinct_per_iteration(exprs[0], [a.node for a in accs]):  # type: ignore
                return tuple(written.values())
        return None

    def _index_names(self) -> dict[str, ast.expr]:
        """Names the loop body binds once, first thing for them (``j = n - 1 - i``
        as a statement of the body itself, no use of ``j`` before it, no other
        binding), to an expression of the loop variable and names the loop does
        not bind: name -> that expression."""
        body = self.loop.body
        out: dict[str, ast.expr] = {}
        for k, st in enumerate(body):
            if not (isinstance(st, ast.Assign) and len(st.targets) == 1
                    and isinstance(st.targets[0], ast.Name)):
                continue
            name = st.targets[0].id
            if name == self.var or sum(name in _stmt_targets(t) for t in _walk_stmts(body)) != 1 \
                    or any(isinstance(n, ast.NamedExpr) and n.target.id == name
                           for t in body for n in ast.walk(t)):
                continue
            if any(isinstance(n, ast.Name) and n.id == name for t in body[:k]
                   for n in ast.walk(t)):
                continue  # read before it is bound: the previous iteration's value
            names = {n.id for n in ast.walk(st.value) if isinstance(n, ast.Name)}
            if any(n != self.var and _rebinds(body, n) for n in names) or any(
                    isinstance(n, ast.NamedExpr)
                    or isinstance(n, ast.Call) and not _is_len(n)
                    or isinstance(n, ast.Subscript) and not (
                        isinstance(n.value, ast.Attribute) and n.value.attr == "shape")
                    for n in ast.walk(st.value)):
                continue  # (a length is the same in every iteration; a call need not be)
            out[name] = st.value
        return out

    def _strided(self, exprs: list[ast.expr]) -> bool:
        """Whether *exprs* are ``c * i + d`` (``out[2 * i]`` and ``out[2 * i + 1]``)
        with one literal ``c > 0`` and literals ``d`` that differ by no multiple
        of ``c`` (iteration ``i`` alone reaches each), never negative."""
        if _rebinds(self.loop.body, self.var):
            return False
        floor = _loop_floor(self.loop)
        forms = set()
        for e in exprs:
            terms = _linear_terms(e, self.var)
            if terms is None or terms[2] or terms[3] or floor is None:
                return False
            coef, const = terms[0], terms[1]
            if coef <= 0 or coef * floor + const < 0:
                return False
            forms.add((coef, const))
        if len({c for c, _ in forms}) != 1:
            return False
        # (consecutive iterations' values of `c * i` are `c * step` apart: with
        # `range(0, n, 2)`, `out[i]` and `out[i + 1]` are each iteration's own)
        args = getattr(self.loop.iter, "args", [])
        step = 1 if len(args) < 3 else _const_int(args[2])
        c = next(iter(forms))[0] * (abs(step) if step else 1)
        return len({d % c for _, d in forms}) == len(forms)

    def _distinct_per_iteration(self, expr: ast.expr, nodes: list[ast.AST]) -> bool:
        """Whether *expr* (an index at each of *nodes*) is, for the loop variable
        ``i``, ``c * i + d`` (``c > 0``, ``d`` literal, never negative from the
        loop's first value), ``S + d - i`` (``S`` the loop's stop, step > 0,
        ``d >= -1``) or ``i * K + j`` (``j`` an inner ``for j in range(K)``
        around every node), with every other name not bound in the loop."""
        terms = _linear_terms(expr, self.var)
        if terms is None:
            return False
        coef, const, scaled, others = terms
        used = {n.id for t in [*scaled, *others] for n in ast.walk(t)
                if isinstance(n, ast.Name)}
        inner = others[0].id if (len(others) == 1 and isinstance(others[0], ast.Name)
                                 and scaled) else None
        if any(_rebinds(self.loop.body, n) for n in used - {inner}):
            return False
        floor = _loop_floor(self.loop)
        args = getattr(self.loop.iter, "args", [])
        step = 1 if len(args) < 3 else _const_int(args[2])
        if not scaled and not others:  # c * i + d
            return coef > 0 and floor is not None and coef * floor + const >= 0
        if not scaled and coef == -1 and len(others) == 1 and args and step is not None \
                and step > 0:  # S + d - i, i < S
            stop = args[0] if len(args) == 1 else args[1]
            return ast.dump(others[0]) == ast.dump(stop) and const >= -1
        if not scaled and coef == -1 and len(others) == 1 and len(args) == 3 \
                and step is not None and step < 0:  # S + d - i, i <= S - k (a start)
            first = _linear_terms(args[0], self.var)
            if first is None or first[0] or first[2] or len(first[3]) != 1:
                return False
            return (ast.dump(first[3][0]) == ast.dump(others[0])
                    and const - first[1] >= 0)
        if coef == 0 and const == 0 and len(scaled) == 1 and inner is not None \
                and floor is not None and floor >= 0:  # i * K + j, j in range(K)
            k = ast.dump(scaled[0])
            for node in nodes:
                loop = _enclosing_for(self.loop, node, inner)
                if loop is None or _rebinds(loop.body, inner):
                    return False
                it = loop.iter
                if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
                        and it.func.id in ("range", "prange") and not it.keywords
                        and (len(it.args) == 1 or (len(it.args) == 2
                                                   and _const_int(it.args[0]) == 0))
                        and ast.dump(it.args[-1]) == k):
                    return False
            return True
        return False

    def _side(self, expr: ast.expr, node: ast.AST) -> str | None:
        """How *expr*, an index at *node*, surely compares with the loop variable
        (``">"``, ``">="``, ``"="``, ``"<="``, ``"<"``), and is never negative
        where the loop variable is not: ``i + 1``, or the variable of an inner
        ``for j in range(i + 1, n)`` (``range(i)``: below) around *node*, not
        assigned in that loop; None when not known."""
        k = self._aligned(expr)
        if k is not None:
            return ">" if k > 0 else "=" if k == 0 else None  # `i - 1` may be -1
        if not isinstance(expr, ast.Name) or expr.id == self.var:
            return None
        loop = _enclosing_for(self.loop, node, expr.id)
        if loop is None or not isinstance(loop.iter, ast.Call) or loop.iter.keywords:
            return None
        f = loop.iter.func
        if not (isinstance(f, ast.Name) and f.id in ("range", "prange")
                or isinstance(f, ast.Attribute) and f.attr == "prange"):
            return None
        if _rebinds(loop.body, expr.id):
            return None
        args = loop.iter.args
        if not 1 <= len(args) <= 3 or any(isinstance(x, ast.Starred) for x in args):
            return None
        step = 1 if len(args) < 3 else _const_int(args[2])
        if step is None or step == 0:
            return None
        start, stop = (ast.Constant(0), args[0]) if len(args) == 1 else (args[0], args[1])
        if step < 0:  # j in (stop, start]: above i when stop is i + c, c >= 0
            k = self._aligned(stop)
            if k is not None and k >= 0:
                return ">"
            lo, k = _const_int(stop), self._aligned(start)
            if lo is not None and lo >= -1 and k is not None and k <= 0:
                return "<" if k < 0 else "<="
            return None
        k = self._aligned(start)  # j in [start, stop)
        if k is not None and k >= 0:
            return ">" if k > 0 else ">="
        lo, k = _const_int(start), self._aligned(stop)
        if lo is not None and lo >= 0 and k is not None and k <= 1:
            return "<" if k <= 0 else "<="
        return None

    def _check_container(self, root: str, accs: list[_Access], writes: list[_Access],
                         views: set[str | None]) -> None:
        """Raise when the written array *root* is reached through a tuple/list of arrays
        (``arrs[0][i]``) and also otherwise, or at indices that do not identify it."""
        cont = next((a for a in accs if a.container), None)
        if cont is None or (len(views) == 1 and all(a.positions is not None for a in accs)):
            return  # reached through that one container only: its indices are exact
        cw = next((a for a in writes if a.container), None)
        if cw is not None:
            other = next((a for a in accs if a is not cw and (a.view != cw.view or a.positions
                                                              is None)), None)
            also = (f"the loop also {'writes' if other.write else 'reads'} `{root}` at "
                    f"`{other.text}` (line {other.line})" if other is not None else
                    f"the container may hold `{root}` more than once (or is filled in ways the "
                    "analysis does not follow)")
            raise _Unsafe(cw.line, f"`{cw.text}` writes through {cw.view}, a tuple/list of "
                          "arrays: the analysis cannot identify which array it writes, so it "
                          "counts as a write to each array the container may hold; `{root}` is "
                          f"one of them, and {also}: one iteration may touch what another "
                          "writes".replace("{root}", root))
        w = writes[0]
        raise _Unsafe(cont.line, f"`{root}` is written in the loop (`{w.text}`, line {w.line}) "
                      f"and may be {'written' if cont.write else 'read'} here (`{cont.text}`) "
                      f"through {cont.view}, a tuple/list of arrays: the analysis cannot "
                      "identify which array that access reaches, so it counts as an access of "
                      "each array the container may hold: one iteration may touch what another "
                      "writes")

    def _floors(self, accs: list[_Access], axis: int | None, offsets: tuple[int, ...]
                ) -> tuple[int | None, ...]:
        """Per offset, the least loop variable at which any access at that offset runs
        (None where one of them runs without a condition that bounds it)."""
        if axis is None:
            return ()
        least: dict[int, int | None] = {}
        for a in accs:
            off = self._aligned(a.positions[axis])  # type: ignore[index]
            if off is None:
                continue
            if off not in least:
                least[off] = a.floor
            elif least[off] is not None:
                least[off] = None if a.floor is None else min(least[off], a.floor)  # type: ignore
        return tuple(least.get(o) for o in offsets)

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


#: what may be asked of an array without making another name for it
_MEASURES = frozenset({"shape", "size", "ndim", "dtype", "itemsize", "nbytes", "fill"})


def _enclosing_for(loop: ast.For, node: ast.AST, var: str) -> ast.For | None:
    """The innermost ``for var in ...`` loop in *loop*'s body whose body holds
    *node* (None when *node* is not in such a loop)."""
    found: ast.For | None = None

    def visit(stmts: list[ast.stmt], inner: ast.For | None) -> bool:
        nonlocal found
        for st in stmts:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            here = inner
            if isinstance(st, ast.For) and isinstance(st.target, ast.Name) \
                    and st.target.id == var:
                here = st
            for fld, value in ast.iter_fields(st):
                if fld in ("body", "orelse", "finalbody", "handlers"):
                    continue
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, ast.AST) and any(n is node for n in ast.walk(v)):
                        # in the loop's own header (`for j in range(a[j])`) or a statement's
                        found = inner
                        return True
            if visit(st.body if isinstance(getattr(st, "body", None), list) else [], here):
                return True
            for fld in ("orelse", "finalbody"):
                sub = getattr(st, fld, None)
                if isinstance(sub, list) and visit(sub, inner):
                    return True
            for h in getattr(st, "handlers", []):
                if visit(h.body, inner):
                    return True
        return False

    visit(loop.body, None)
    return found


def _fresh_of_args(call: ast.Call) -> bool:
    """``len(h)``, ``np.zeros_like(h)``, ``np.copy(h)``: a call whose result is never
    its argument's memory."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in ("len", "zeros_like", "ones_like", "empty_like", "full_like", "copy")


def _plain_uses(stmts: list[ast.stmt]) -> dict[str, ast.Name]:
    """name -> its first use in *stmts* other than by storing into an
    element (``h[k] = v``, ``h[k] += v``), measuring (``h.shape``, ``len(h)``) or
    filling (``h.fill(0)``); nested functions count as using every name they read."""
    ok: set[int] = set()
    every: list[ast.Name] = []
    for st in stmts:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            every += [n for n in ast.walk(st) if isinstance(n, ast.Name)]
            continue
        nodes = [st] if not hasattr(st, "body") else [
            getattr(st, f) for f in ("test", "iter", "target", "items", "subject")
            if getattr(st, f, None) is not None]
        for top in nodes:
            for node in (ast.walk(top) if isinstance(top, ast.AST) else
                         (n for t in top for n in ast.walk(t))):
                if isinstance(node, ast.Name):
                    every.append(node)
                elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
                      and isinstance(node.value, ast.Name)):
                    ok.add(id(node.value))
                elif (isinstance(node, ast.Attribute) and node.attr in _MEASURES
                      and isinstance(node.value, ast.Name)):
                    ok.add(id(node.value))
                elif isinstance(node, ast.Call) and _fresh_of_args(node):
                    ok.update(id(a) for a in node.args if isinstance(a, ast.Name))
                elif isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare)):
                    # arithmetic makes a new array (`h * 2`, `-h`, `h > 0`)
                    ok.update(id(o) for o in (
                        [node.left, node.right] if isinstance(node, ast.BinOp)
                        else [node.operand] if isinstance(node, ast.UnaryOp)
                        else [node.left, *node.comparators]) if isinstance(o, ast.Name))
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr == "copy" and isinstance(node.func.value, ast.Name)):
                    ok.add(id(node.func.value))
                elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript) \
                        and isinstance(node.target.value, ast.Name):
                    ok.add(id(node.target.value))
    first: dict[str, ast.Name] = {}
    for n in every:
        if id(n) not in ok and isinstance(n.ctx, ast.Load):
            first.setdefault(n.id, n)
    return first


#: calls that neither raise nor write, whatever their (numeric) arguments
_QUIET_CALLS = frozenset({"abs", "min", "max", "float", "complex", "bool"})


def _may_raise_or_write(expr: ast.expr) -> ast.expr | None:
    """The first part of *expr* that may raise or write (a call other than
    ``abs``/``min``/``max``/``float``..., a division or modulo by anything but a
    non-zero constant, a power, a walrus), or None."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Call):
            if not (isinstance(n.func, ast.Name) and n.func.id in _QUIET_CALLS):
                return n
        elif isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            if not (isinstance(n.right, ast.Constant) and isinstance(n.right.value, (int, float))
                    and n.right.value != 0):
                return n
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            return n
        elif isinstance(n, (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)):
            return n
    return None


def _listing(names: frozenset[str]) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names)) or "nothing else"


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
            if isinstance(st, ast.If):  # `if d < best: best = d; idx = j`: what it reads
                self.reads(st.test, defined)
                for b in st.body:
                    self.reads(b.value if isinstance(b, ast.Assign) else b, defined)
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
    reads: dict[int, list[list[ast.expr]] | None] = {}
    local_alias = _aliases(fdef.body, set(params))
    local_names = set(params)
    for st in _walk_stmts(fdef.body):
        local_names.update(_stmt_targets(st))

    def note(name: str, pos: list[ast.expr] | None, into: dict[int, Any] = writes) -> None:
        for root in local_alias.get(name, {name}):
            if root in params:
                i = params.index(root)
                if pos is None or (i in into and into[i] is None):
                    into[i] = None
                elif name != root:
                    into[i] = None  # through a local view: position unknown
                else:
                    into.setdefault(i, []).append(pos)

    unsafe = None
    inner = {id(n.value) for n in ast.walk(fdef) if isinstance(n, ast.Subscript)}
    for node in ast.walk(fdef):
        if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                and id(node) not in inner):
            base, pos = _index_positions(node)
            if base is not None:
                note(base.id, pos if _flat_chain(node) else None, reads)
            else:
                for name in _view_sources(node.value):
                    note(name, None, reads)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            base, pos = _index_positions(node)
            if base is None:
                for name in _view_sources(node.value):
                    note(name, None)
            elif not _flat_chain(node):
                note(base.id, None)
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
                note(base.id, pos, reads)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            unsafe = "declares `global`/`nonlocal` names"
        elif isinstance(node, ast.Call):
            f = node.func
            if _draws_random(node, resolver, local_names):
                unsafe = (f"draws random numbers (`{ast.unparse(f)}`, from a generator shared "
                          "by all iterations, so the numbers each iteration gets would depend "
                          "on the schedule)")
            if isinstance(f, ast.Attribute) and f.attr in _MUTATING_METHODS and isinstance(
                    f.value, ast.Name):
                note(f.value.id, None)
            if (isinstance(f, ast.Attribute) and f.attr in _CONTAINER_METHODS
                    and not isinstance(resolver.value(f.value), types.ModuleType)):
                # `lst.append(v)`: a change of the container (a parameter: the
                # caller's argument, written whole; anything else not made here:
                # shared by every call)
                cname = _root_name(f.value)
                if cname is not None:
                    note(cname, None)
                made_here = cname is not None and cname not in params and any(
                    cname in _stmt_targets(st) for st in _walk_stmts(fdef.body))
                if cname is None or (cname not in params and cname not in local_alias
                                     and not made_here):
                    unsafe = (f"changes the container `{ast.unparse(f.value)}` "
                              f"(`{ast.unparse(f)}(...)`), shared by all iterations")
            outs = [kw.value for kw in node.keywords if kw.arg == "out"]
            for out in outs + _positional_outs(resolver.value(f), node):
                for name in _view_sources(out):
                    note(name, None)
            if depth < 8:
                callee = resolver.helper(f)
                if callee is not None:
                    sub = _summarise_helper(callee, resolver, cache, depth + 1)
                    if sub.unsafe:
                        unsafe = f"calls `{ast.unparse(f)}`, which {sub.unsafe}"
                    bound = _bind_call(summary_params(callee), node) or []
                    if not bound and (sub.writes or sub.reads) and (node.args or node.keywords):
                        # `*args`/`**kwargs`: any argument may be read and written
                        for a in [*node.args, *(kw.value for kw in node.keywords)]:
                            for name in _view_sources(a):
                                note(name, None)
                                note(name, None, reads)
                    for pidx in sub.writes:
                        if pidx < len(bound) and bound[pidx] is not None:
                            for name in _view_sources(bound[pidx]):
                                note(name, None)
                    for pidx in sub.reads:
                        if pidx < len(bound) and bound[pidx] is not None:
                            for name in _view_sources(bound[pidx]):
                                note(name, None, reads)
    # arrays used whole (passed on, `a.sum()`...): read anywhere
    for node in _whole_uses(fdef, set(params) | set(local_alias)):
        note(node.id, None, reads)
    returned: set[int] = set()
    for node in ast.walk(fdef):
        if isinstance(node, ast.Return) and node.value is not None:
            for name in _view_sources(node.value) | {
                    n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)
                    and isinstance(node.value, (ast.Tuple, ast.List))}:
                for root in local_alias.get(name, {name}):
                    if root in params:
                        returned.add(params.index(root))
    summary = _HelperSummary(writes=writes, unsafe=unsafe, reads=reads,
                             returns_view=frozenset(returned))
    cache[key] = summary
    return summary
