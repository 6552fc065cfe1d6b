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
nowhere else in the loop.  A min/max reduction may carry payloads, names
assigned only with it (``if d < best: best = d; idx = i``, the position of the
minimum): each block keeps the payloads of its own best value, and the combine
takes them from the block whose value it takes, so ties resolve as the loop
resolves them (the first with ``<``, the last with ``<=``).  A flag
assigned one constant in the loop and read nowhere in it (``found = True``
under a test) is a reduction too: any block that set it sets it.  So is an
array made before the loop by ``np.zeros`` (``ones``, ``empty``, ``full`` and
their ``_like`` forms) that the loop only adds into at any index (``h[b] +=
w``, a histogram): each block adds into an array of its own, and the blocks'
arrays are added in block order.  Anything else
carries a value from one iteration to the next.

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
import types
from collections.abc import Callable, Iterable
from typing import Any

from ._astutil import (
    _aliases,
    _const_int,
    _index_positions,
    _shifted_views,
    _stmt_targets,
    _target_names,
    _walk_stmts,
    parse_function,
)
from ._loopcheck import _HelperSummary, _LoopChecker, _Unsafe
from ._model import ArrayRole, LoopAnalysis, Resolver

__all__ = ["ArrayRole", "LoopAnalysis", "Resolver", "analyse_function", "parse_function"]


_BLAS_FUNCS = frozenset({"dot", "vdot", "inner", "outer", "matmul", "kron", "tensordot",
                         "einsum"})


def _calls_blas(loop: ast.For, resolver: Resolver) -> bool:
    """Whether the loop calls into BLAS/LAPACK (``@``, ``np.dot``, ``np.linalg``)."""
    for node in ast.walk(loop):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return True
        if isinstance(node, ast.Call):
            f = resolver.value(node.func)
            mod = getattr(f, "__module__", "") or ""
            name = getattr(f, "__name__", "")
            if mod.startswith("numpy.linalg") or (mod.startswith("numpy") and
                                                   name in _BLAS_FUNCS):
                return True
            if isinstance(node.func, ast.Attribute) and node.func.attr == "dot":
                return True  # a.dot(b)
    return False


def _candidate_loops(fdef: ast.FunctionDef, resolver: Resolver) -> list[tuple[int, ast.For]]:
    out = []
    for idx, st in enumerate(fdef.body):
        if (isinstance(st, ast.For) and isinstance(st.target, ast.Name)
                and isinstance(st.iter, ast.Call) and resolver.is_range(st.iter.func)
                and not st.iter.keywords and 1 <= len(st.iter.args) <= 3
                and not any(isinstance(a, ast.Starred) for a in st.iter.args)):
            out.append((idx, st))
    return out


def _reads_before_rebinding(stmts: list[ast.stmt], line0: int) -> dict[str, int]:
    """Names that *stmts* (the code after a loop) may read before assigning them,
    with the line of the first such read.

    ``for i in range(n): total += out[i]`` after the loop reads ``i`` only after
    its own header assigned it, and ``t = ...; use(t)`` reads the new ``t``: the
    value the loop left in them is never seen.  A loop's header is not a
    definite assignment after that loop (it may run zero times), nor is an
    ``if`` branch unless both branches assign.
    """
    first: dict[str, int] = {}

    def loads(node: ast.AST | None, killed: set[str]) -> None:
        if node is None:
            return
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in killed:
                first.setdefault(n.id, n.lineno + line0)

    def run(body: list[ast.stmt], killed: set[str]) -> set[str]:
        killed = set(killed)
        for st in body:
            if isinstance(st, ast.Assign):
                loads(st.value, killed)
                for t in st.targets:
                    if not isinstance(t, ast.Name):
                        loads(t, killed)  # `a[k] = ...` reads `a` and `k`
                killed |= {n for t in st.targets for n in _target_names(t)}
            elif isinstance(st, ast.AnnAssign):
                loads(st.value, killed)
                if st.value is not None:
                    killed |= set(_target_names(st.target))
            elif isinstance(st, (ast.For, ast.AsyncFor)):
                loads(st.iter, killed)
                run(st.body, killed | set(_target_names(st.target)))
                run(st.orelse, killed)
            elif isinstance(st, ast.While):
                loads(st.test, killed)
                run(st.body, killed)
                run(st.orelse, killed)
            elif isinstance(st, ast.If):
                loads(st.test, killed)
                killed |= run(st.body, killed) & run(st.orelse, killed)
            else:
                loads(st, killed)  # AugAssign reads its target; anything else: every load
        return killed

    run(stmts, set())
    return first


def _short_range(loop: ast.For) -> int | None:
    """The trip count of ``range(...)`` with literal bounds of at most 64
    iterations (a set-up loop, ``for k in range(3)``); None otherwise."""
    args = [_const_int(a) for a in getattr(loop.iter, "args", [])]
    if not args or None in args or len(args) > 3:
        return None
    count = len(range(*args))  # type: ignore[arg-type]
    return count if count <= 64 else None


def _loop_depth(node: ast.AST) -> int:
    best = 0
    for child in ast.iter_child_nodes(node):
        d = _loop_depth(child)
        if isinstance(child, (ast.For, ast.While, ast.comprehension)):
            d += 1
        best = max(best, d)
    return best


def _heavier_in_order(fdef: ast.FunctionDef, chosen: LoopAnalysis, depth: dict[int, int],
                      results: list[LoopAnalysis]
                      ) -> tuple[int, ast.stmt, LoopAnalysis | None] | None:
    """A top-level loop that runs in order (a ``while``, or a ``for`` found not
    parallel), holds more nested loops than *chosen* (the parallel loop picked),
    and has a ``for`` loop directly in its body, which may run in parallel at
    each pass: ``(index, statement, its analysis or None)``.  The function's
    work is likely there (an initialising loop, then the time steps; the time
    steps, then a total).  None when there is none.  (A float sum in *chosen*
    is then added in order at every level, the serial one included: a region
    that hands one back stays inline, so the answer does not depend on the
    level.)"""
    if chosen.loop_index is None:
        return None
    mine = depth[chosen.loop_index]
    by_index = {r.loop_index: r for r in results}
    for k, st in enumerate(fdef.body):
        if k == chosen.loop_index or not isinstance(st, (ast.For, ast.While)):
            continue
        found = by_index.get(k)
        if (found is not None and found.parallel) or _loop_depth(st) <= mine:
            continue
        if isinstance(st, ast.For) and found is None:
            continue  # not a range loop: the function's loop must be one, or a while
        if any(isinstance(b, ast.For) for b in st.body):
            return k, st, found
    return None


def _check(checker: _LoopChecker, defined_before: set[str], read_after: dict[str, int],
           params: set[str], forced: bool) -> tuple[list[str], dict[str, ArrayRole]]:
    """Run every check of *checker* in order: the loop's privates and array roles,
    or :class:`_Unsafe`."""
    checker.check_control()
    checker.find_reductions(defined_before)
    privates = checker.check_scalars(defined_before, read_after)
    checker.collect_accesses()
    checker.check_accumulators(params)
    return privates, checker.check_arrays(forced)


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
    shifted = _shifted_views([st for st in fdef.body if not isinstance(st, ast.For)
                              or st not in [c[1] for c in candidates]], aliases)
    helper_cache: dict[int, _HelperSummary] = {}
    results: list[LoopAnalysis] = []
    for idx, loop in candidates:
        forced = resolver.is_range(loop.iter.func) == "prange"  # type: ignore[attr-defined]
        checker = _LoopChecker(fdef, loop, idx, resolver, aliases, subscripted, line0,
                               helper_cache, shifted)
        defined_before = set(params)
        for st in fdef.body[:idx]:
            for s in _walk_stmts([st]):
                defined_before.update(_stmt_targets(s))
        read_after = _reads_before_rebinding(fdef.body[idx + 1:], line0)
        header = loop.lineno + line0
        try:
            privates, roles = _check(checker, defined_before, read_after, set(params), forced)
            if checker.scatter_params:
                # `out[3 * i + 1] += w` into an argument: each iteration's own element
                # when the loop is parallel without per-block sums, which it then
                # needs neither (nor their fallback to the loop's order)
                plain = _LoopChecker(fdef, loop, idx, resolver, aliases, subscripted, line0,
                                     helper_cache, shifted)
                plain.param_scatters = False
                try:
                    privates, roles = _check(plain, defined_before, read_after, set(params),
                                             forced)
                    checker = plain
                except _Unsafe:
                    pass
            limits: dict[str, tuple[int, str]] = {}
            beyond: dict[str, int] = {}
            if checker.assumed_scalar:
                # `c = a[i]; c += x` was read as a number: check the loop again with
                # `c` a row of `a`, as it is when `a` has more dimensions
                again = _LoopChecker(fdef, loop, idx, resolver, aliases, subscripted, line0,
                                     helper_cache, shifted,
                                     {r: k + 1 for r, k in checker.assumed_scalar.items()})
                again.param_scatters = checker.param_scatters
                try:
                    first = roles
                    privates, roles = _check(again, defined_before, read_after, set(params),
                                             forced)  # (roles: a superset of the first's)
                    # written only through `t` as a row: not when `t` is a number
                    beyond = {r: most for r, most in checker.assumed_scalar.items()
                              if r in roles and roles[r].written
                              and not (r in first and first[r].written)}
                    checker = again
                except _Unsafe as exc2:
                    why = f"line {exc2.line}: {exc2.message}"
                    for root, most in checker.assumed_scalar.items():
                        if root not in defined_before:  # not known at call time
                            raise _Unsafe(exc2.line, exc2.message) from None
                        limits[root] = (most, why)
            results.append(LoopAnalysis(
                name, filename, header, checker.var, True, None,
                reductions=dict(checker.reductions), privates=tuple(privates), arrays=roles,
                forced=forced, loop_index=idx, range_args=tuple(loop.iter.args),  # type: ignore
                calls_blas=_calls_blas(loop, resolver),
                reduction_forms=dict(checker.reduction_forms), ndim_limits=limits,
                written_beyond=beyond,
                reduction_payloads=dict(checker.payloads),
                reduction_sets=dict(checker.flag_sets),
                reduction_scatters=tuple(sorted(checker.scatter_sums)),
                scatter_params=dict(checker.scatter_params)))
        except _Unsafe as exc:
            reason = f"line {exc.line}: {exc.message}"
            if forced and on_loop is not None:
                on_loop(header, reason)
            results.append(LoopAnalysis(name, filename, header, checker.var, False, reason,
                                        forced=forced, loop_index=idx,
                                        range_args=tuple(loop.iter.args)))  # type: ignore
    parallel = [r for r in results if r.parallel]
    if parallel:
        # the loop with the most work: not a short literal range (`range(3)`), then
        # the most nested loops, then the first
        depth = {c[0]: _loop_depth(c[1]) for c in candidates}
        short = {c[0]: _short_range(c[1]) for c in candidates}

        def work(r: LoopAnalysis) -> tuple[bool, int, int]:
            k = r.loop_index
            return (not short[k], depth[k], -k)  # type: ignore[index]

        chosen = max(parallel, key=work)
        heavier = _heavier_in_order(fdef, chosen, depth, results)
        if heavier is not None:
            # the function's work is in a loop that runs in order: analysed as that
            # loop's, its parallel loops (the one picked, that loop's inner loops)
            # run at each pass as loops of their own (see _regions)
            k, st, found = heavier
            beside = "parallel: runs as a loop of its own, beside the sequential loop"
            others = tuple((r.lineno, r.reason or beside) for r in results if r is not found)
            if found is not None:
                return LoopAnalysis(**{**found.__dict__, "other_loops": others})
            return LoopAnalysis(
                name, filename, st.lineno + line0, None, False,
                f"line {st.lineno + line0}: the `while` loop runs its passes in order; it holds "
                f"the function's work (more nested loops than the parallel loop at line "
                f"{chosen.lineno})", other_loops=others)
    else:
        chosen = results[0]

    def not_chosen(r: LoopAnalysis) -> str:
        k, c = r.loop_index, chosen.loop_index
        if short[k] is not None and short[c] is None:  # type: ignore[index]
            what = f"this one runs only {short[k]} iterations"  # type: ignore[index]
        elif depth[k] < depth[c]:  # type: ignore[index]
            what = "that loop has more nested loops"
        else:
            what = "that loop comes first"
        return (f"parallel, but one loop per function runs in parallel, and the loop at line "
                f"{chosen.lineno} was chosen ({what}); to run this one in parallel too, put "
                "it in a function of its own")

    others = tuple((r.lineno, r.reason or not_chosen(r)) for r in results if r is not chosen)
    return LoopAnalysis(**{**chosen.__dict__, "other_loops": others})  # type: ignore[arg-type]
