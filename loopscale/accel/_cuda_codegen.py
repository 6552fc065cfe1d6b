"""Code generation for the CUDA target: a host function and a grid-stride kernel.

From the same analysed ``def`` and :class:`~._analysis.LoopAnalysis` that the
CPU code generator uses, this module builds three functions (pure AST work;
nothing here imports ``numba.cuda``):

``host``
    The user's function, run as Python, with the parallel loop replaced by a
    call ``reds = __ls_launch(lo, step, n, (s1, ...), (state...))``.  The
    prologue (code before the loop) and the epilogue (code after it) are the
    user's own statements, so they run with Python semantics on whatever the
    arguments are: NumPy arrays, or CuPy arrays whose ``np.zeros_like(x)``
    NumPy dispatches to CuPy (``__array_function__``), so allocations in the
    prologue happen on the device when the inputs live there.  This is why the
    CUDA path does not reuse the compiled CPU ``pre``/``post`` stages: they
    cannot take device arrays.  The argument bound checks of the CPU code are
    kept (a GPU would read out of bounds silently).

``kernel``
    ``kernel(lo, step, n, partials..., identities..., state...)``: a grid-stride
    loop ``for k in range(cuda.grid(1), n, cuda.gridsize(1))`` whose body is
    the loop body with ``v = lo + k * step``.  Private scalars are locals of
    the thread.  Each reduction is accumulated per thread from its identity,
    then reduced over the block by a shared-memory tree (a fixed order), and
    thread 0 writes the block's partial.  The host combines the per-block
    partials in block order, so repeated runs with the same launch
    configuration give identical results.

``types``
    A CPU function that Numba only *types* (never runs): the identities of the
    reductions unified with a dead copy of the loop body, returned as a tuple.
    Its return type gives the dtype of each reduction's partials (and of the
    shared-memory arrays), as the dead loop in the CPU ``pre`` stage does.

Generated names start with ``__ls_``, which the analysis forbids in user code.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from ._astutil import defined_before, names_loaded, stmt_targets, walk_stmts
from ._codegen import (
    _bound_checks,
    _func,
    _PrangeToRange,
    _range_assign,
    _Rename,
    _simple_args,
    _stmts,
    name_defaults,
)
from ._model import LoopAnalysis

__all__ = ["CudaCode", "generate_cuda", "TREE_COMBINE"]

#: How two partials of a reduction combine, in the shared-memory tree and on
#: the host (the same operators as the CPU combine).
TREE_COMBINE = {
    "+": "{a} + {b}",
    "*": "{a} * {b}",
    "min": "min({a}, {b})",
    "max": "max({a}, {b})",
}
_IDENTITY_CPU = {"+": "__ls_zero({s})", "*": "__ls_one({s})", "min": "{s}", "max": "{s}"}


@dataclass
class CudaCode:
    """The generated module for the CUDA target and what it defines.

    Attributes
    ----------
    host_module : ast.Module
        Defines :attr:`host` (run as Python).
    kernel_module : ast.Module
        Defines :attr:`kernel` (compiled with ``numba.cuda.jit``); it reads the
        globals ``__ls_cuda``, ``__ls_TPB`` and ``__ls_dt_<s>`` for each
        reduction ``s``.
    types_module : ast.Module or None
        Defines :attr:`types` (typed with ``numba.njit``), when there are
        reductions.
    state : tuple of str
        The names the kernel takes after the partials and identities.
    reductions : tuple of (str, str)
        ``(name, operator)`` of each reduction, in kernel-argument order.
    loaded : set of str
        Every name the generated code loads (for the namespaces).
    """

    host_module: ast.Module
    kernel_module: ast.Module
    types_module: ast.Module | None
    host: str
    kernel: str
    types: str | None
    state: tuple[str, ...]
    reductions: tuple[tuple[str, str], ...]
    loaded: frozenset[str]


def generate_cuda(fdef: ast.FunctionDef, analysis: LoopAnalysis, is_prange,  # type: ignore
                  base: str, filename: str = "", fname: str = "") -> CudaCode:
    """Build the CUDA-target code for *fdef* (absolute line numbers).

    *analysis* must be parallel (``analysis.parallel`` and a ``loop_index``);
    the caller keeps non-parallel loops on the CPU.
    """
    if not analysis.parallel or analysis.loop_index is None:
        raise ValueError("generate_cuda needs a parallel loop")
    fdef = copy.deepcopy(fdef)
    fdef.decorator_list = []
    fdef = _PrangeToRange(is_prange).visit(fdef)
    name_defaults(fdef.args)
    head = fdef.lineno
    idx = analysis.loop_index
    loop: ast.For = fdef.body[idx]  # type: ignore[assignment]
    line = loop.lineno
    pre, post = fdef.body[:idx], fdef.body[idx + 1:]
    var = analysis.loop_var
    reds = tuple(analysis.reductions.items())
    rename = {s: f"__ls_r_{s}" for s, _ in reds}

    def body_copy() -> list[ast.stmt]:
        return [_Rename(rename).visit(copy.deepcopy(st)) for st in loop.body]

    params = [a.arg for a in fdef.args.posonlyargs + fdef.args.args + fdef.args.kwonlyargs]
    bound = defined_before(fdef, pre)
    used = set()
    for st in loop.body:
        used |= names_loaded(st)
    assigned_in_loop = {n for st in walk_stmts(loop.body) for n in stmt_targets(st)} | {var}
    state = tuple(sorted((bound & used) - assigned_in_loop - set(rename)))

    # ---- host: prologue, launch, epilogue (Python) --------------------------
    h_body: list[ast.stmt] = list(pre)
    h_body += _range_assign(analysis.range_args, line)
    h_body += _stmts("__ls_n = len(range(__ls_lo, __ls_hi, __ls_step))", line)
    h_body += _bound_checks(loop, var, params, pre, filename, fname)  # type: ignore[arg-type]
    red_tuple = "(" + "".join(f"{s}, " for s, _ in reds) + ")"
    state_tuple = "(" + "".join(f"{s}, " for s in state) + ")"
    call = f"__ls_launch(__ls_lo, __ls_step, __ls_n, {red_tuple}, {state_tuple})"
    if reds:
        h_body += _stmts(f"{red_tuple} = {call}", line)
    else:
        h_body += _stmts(call, line)
    h_body += list(post)
    host_name = f"{base}__ls_cuda_host"
    host = _func(host_name, copy.deepcopy(fdef.args), h_body, head)

    # ---- kernel (numba.cuda) ----------------------------------------------
    part_params = [f"__ls_p_{s}" for s, _ in reds]
    ident_params = [f"__ls_i_{s}" for s, _ in reds]
    k_body: list[ast.stmt] = []
    for s, _ in reds:
        k_body += _stmts(f"{rename[s]} = __ls_i_{s}", line)
    grid = _stmts(f"""
        for __ls_k in range(__ls_cuda.grid(1), __ls_n, __ls_cuda.gridsize(1)):
            {var} = __ls_lo + __ls_k * __ls_step
    """, line)[0]
    grid.body.extend(body_copy())  # type: ignore[attr-defined]
    k_body.append(grid)
    if reds:
        k_body += _stmts("__ls_x = __ls_cuda.threadIdx.x", line)
        for j, (s, _) in enumerate(reds):
            # one line per allocation: the simulator tells shared arrays apart by line
            k_body += _stmts(f"__ls_sh_{s} = __ls_cuda.shared.array(__ls_TPB, __ls_dt_{s})",
                             line + j)
            k_body += _stmts(f"__ls_sh_{s}[__ls_x] = {rename[s]}", line)
        k_body += _stmts("__ls_cuda.syncthreads()", line)
        tree = _stmts("""
            __ls_w = __ls_TPB // 2
            while __ls_w > 0:
                if __ls_x < __ls_w:
                    pass
                __ls_cuda.syncthreads()
                __ls_w //= 2
        """, line)
        cond = tree[1].body[0]  # type: ignore[attr-defined]
        cond.body = []
        for s, op in reds:
            a, b = f"__ls_sh_{s}[__ls_x]", f"__ls_sh_{s}[__ls_x + __ls_w]"
            cond.body += _stmts(f"{a} = " + TREE_COMBINE[op].format(a=a, b=b), line)
        k_body += tree
        store = _stmts("""
            if __ls_x == 0:
                pass
        """, line)[0]
        store.body = []  # type: ignore[attr-defined]
        for s, _ in reds:
            store.body += _stmts(  # type: ignore[attr-defined]
                f"__ls_p_{s}[__ls_cuda.blockIdx.x] = __ls_sh_{s}[0]", line)
        k_body.append(store)
    kernel_name = f"{base}__ls_cuda_kernel"
    kernel = _func(kernel_name, _simple_args(
        ["__ls_lo", "__ls_step", "__ls_n", *part_params, *ident_params, *state]), k_body, line)

    # ---- types (CPU, typed only) -------------------------------------------
    types_fn = None
    types_name = None
    if reds:
        t_body: list[ast.stmt] = []
        for s, op in reds:
            t_body += _stmts(f"{rename[s]} = " + _IDENTITY_CPU[op].format(s=s), line)
        dead = _stmts("""
            if __ls_n < 0:
                for __ls_k in range(0, 1):
                    pass
        """, line)[0]
        dead_loop = dead.body[0]  # type: ignore[attr-defined]
        dead_loop.body = _stmts(f"{var} = __ls_lo + __ls_k * __ls_step", line) + body_copy()
        t_body.append(dead)
        t_body += _stmts("return " + "(" + "".join(f"{rename[s]}, " for s, _ in reds) + ")",
                         line)
        types_name = f"{base}__ls_cuda_types"
        types_fn = _func(types_name, _simple_args(
            ["__ls_lo", "__ls_step", "__ls_n", *(s for s, _ in reds), *state]), t_body, line)

    loaded: set[str] = set()
    for fn in (host, kernel, types_fn):
        if fn is not None:
            loaded |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
    return CudaCode(
        host_module=ast.Module(body=[host], type_ignores=[]),
        kernel_module=ast.Module(body=[kernel], type_ignores=[]),
        types_module=(ast.Module(body=[types_fn], type_ignores=[]) if types_fn else None),
        host=host_name, kernel=kernel_name, types=types_name, state=state,
        reductions=reds, loaded=frozenset(loaded))
