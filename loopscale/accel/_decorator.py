"""``@accelerate``: the decorator and the callable it returns.

Decoration only checks that the function can be compiled at all (a ``def``
with source, not a generator nor a method).  The analysis runs on first use
(so helpers defined further down the module are found) and the compilation on
the first call with each new set of argument types, as in Numba.

The call path is kept short: at the ``serial`` level a call is one Numba
dispatch of the fused function plus a thread-local lookup.  Argument checks
that need Python (types, read-only outputs) run only when Numba meets a new
type signature; shape checks are compiled into the function.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import threading
import time
import types
import warnings
import weakref
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

import numpy as np
from numba.core import errors as nb_errors

from .. import config
from ..errors import (
    ArgumentError,
    ArgumentValueError,
    CompileError,
    DistributionError,
    FallbackWarning,
    LoopscaleError,
    SerializationWarning,
    UnsupportedFunctionError,
    relocated,
)
from . import (
    _analysis,
    _astutil,
    _codegen,
    _compile,
    _distributed,
    _iteration,
    _lowering,
    _regions,
    _runtime,
)
from ._callpath import (
    _ARG_MARK,
    _BUFFERS,
    _LEVEL_VAR,
    _TLS,
    AUTO_SECONDS,
    PROBE_SECONDS,
    PROBE_SHAPES,
    _is_pandas,
    _lookup_accelerated,
    _NeedsConversion,
    _partials,
    _state,
    _to_array,
    make_call,
    screen_args,
)
from ._distributed import PROTOCOL as _PROTOCOL
from ._executor import LoopPlan, SerialExecutor, get_executor
from ._intake import prange, prange_objects, refuse
from ._runtime import NOT_A_SEQUENCE as _NOT_A_SEQUENCE
from ._runtime import EarlyReturn as _EarlyReturnType

__all__ = ["accelerate", "Accelerated", "prange", "TARGETS"]

P = ParamSpec("P")
R = TypeVar("R")

#: Targets ``accelerate`` accepts.
TARGETS = ("cpu", "cuda")

_SERIAL_EXECUTOR = SerialExecutor()
_PKG_DIR = __file__.rsplit("/", 2)[0] if "/" in __file__ else ""


_MISS = object()
_EXPRESS_KEPT = 4


class _UntypedArgument(ArgumentError):
    """An argument of a type compiled code cannot take (an arbitrary object): with
    ``fallback=True`` that call runs the Python function.  Shown as the public
    :class:`~loopscale.errors.ArgumentError` it is."""


_UntypedArgument.__name__ = _UntypedArgument.__qualname__ = "ArgumentError"
_UntypedArgument.__module__ = ArgumentError.__module__


class _Unrewritten(Exception):
    """A loop over a sequence, read as a range loop (:mod:`._iteration`), met a
    type that does not iterate as an array: build the function as written."""


class _Express:
    """What a call with distributed arrays needs to run the next one like it (see
    ``Accelerated._call_express``): the level, the places of the distributed
    arguments, and the call object (weakly: its type decides how long it lives)."""

    __slots__ = ("setting", "nargs", "positions", "names", "places", "others", "call",
                 "releases")

    def __init__(self, setting: Any, args: tuple[Any, ...], params: list[str],
                 call: Any) -> None:
        self.setting = setting
        self.nargs = len(args)
        self.positions = tuple(i for i, a in enumerate(args)
                               if hasattr(type(a), _distributed.PROTOCOL))
        self.names = frozenset(params[i] for i in self.positions)
        self.places = tuple((i, params[i]) for i in self.positions)  # (position, name)
        self.others = tuple(i for i in range(len(args)) if i not in self.positions)
        self.call = weakref.ref(call)
        self.releases = hasattr(call, "release")


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside loopscale (for warnings)."""
    import sys

    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_PKG_DIR) or name.startswith("<loopscale call wrapper")):
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return 1


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether *a* and *b* are the same elements (the same start, shape and strides)."""
    return a is b or (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
                      and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _apart(a: np.ndarray) -> bool:
    """Whether every index of *a* reaches its own element (no stride 0, no
    ``as_strided`` window over itself): checked on the axes sorted by stride,
    each stride at least the extent of the axes below it."""
    flags = a.flags
    if flags.c_contiguous or flags.f_contiguous:
        return True
    reach = a.itemsize
    for st, sh in sorted((abs(st), sh) for st, sh in zip(a.strides, a.shape, strict=True)
                         if sh > 1):
        if st < reach:
            return False
        reach = st * sh
    return True


def _holds_arrays(value: tuple[Any, ...]) -> bool:
    """Whether the tuple (or namedtuple) *value* holds a NumPy array."""
    return any(isinstance(v, np.ndarray) or (isinstance(v, tuple) and _holds_arrays(v))
               for v in value)


def _state_arrays(names: Sequence[str], state: tuple[Any, ...], loop_state: Container[str]
                  ) -> list[tuple[str, str, np.ndarray]]:
    """``(name, root, array)`` for each array of the loop's state, those held in a
    tuple or namedtuple too (``st.u``, named after their field, with the tuple's
    name as root)."""
    out = []
    for nm, v in zip(names, state, strict=True):
        if nm not in loop_state:
            continue
        if isinstance(v, np.ndarray):
            out.append((nm, nm, v))
        elif isinstance(v, tuple):
            fields = getattr(v, "_fields", None)
            stack = [(f"{nm}.{fields[k]}" if fields and k < len(fields) else f"{nm}[{k}]", e)
                     for k, e in enumerate(v)]
            while stack:
                label, e = stack.pop(0)
                if isinstance(e, np.ndarray):
                    out.append((label, nm, e))
                elif isinstance(e, tuple):
                    stack.extend((f"{label}[{k}]", x) for k, x in enumerate(e))
    return out


def _outer_subscripts(tree: ast.AST) -> list[ast.Subscript]:
    """The subscripts of *tree* that are not the base of another (``a[i][j]`` once)."""
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Subscript) and id(n) not in inner]


def _param_uses(tree: ast.FunctionDef, params: list[str]
                ) -> dict[str, tuple[list[tuple[int, str, int]], list[tuple[int, str]]]]:
    """For each parameter used as an array: its subscripts (line, text, number of
    indices) and its array attributes (``x.shape``, ``x.size``...) (line, text),
    in source order; parameters the function rebinds are left out."""
    rebound = {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign,
                                                             ast.AnnAssign, ast.For))
               for t in ast.walk(n.targets[0] if isinstance(n, ast.Assign) else n.target)
               if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
    wanted = set(params) - rebound
    out: dict[str, tuple[list[tuple[int, str, int]], list[tuple[int, str]]]] = {}
    for node in _outer_subscripts(tree):
        base, pos = _astutil.index_positions(node)
        if base is not None and base.id in wanted:
            out.setdefault(base.id, ([], []))[0].append(
                (node.lineno, ast.unparse(node), len(pos)))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in wanted
                and node.attr in ("shape", "size", "ndim", "dtype", "strides", "T")):
            out.setdefault(node.value.id, ([], []))[1].append((node.lineno, ast.unparse(node)))
    for idx, attrs in out.values():
        idx.sort()
        attrs.sort()
    return out


def _global_array_writes(tree: ast.FunctionDef, func: types.FunctionType,
                         params: list[str]) -> list[tuple[str, int, str]]:
    """Writes (``G[i] = ...``, ``G[i] += ...``) to a module-level or closure array."""
    local = set(params) | {t.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                           and isinstance(n.ctx, ast.Store) for t in [n]}
    closure = _astutil.closure_values(func)
    found = []
    for node in _outer_subscripts(tree):
        if not isinstance(node.ctx, ast.Store):
            continue
        base, _ = _astutil.index_positions(node)
        if base is None or base.id in local:
            continue
        value = closure.get(base.id, func.__globals__.get(base.id))
        if isinstance(value, np.ndarray):
            found.append((base.id, node.lineno, ast.unparse(node)))
    return sorted(found, key=lambda t: t[1])


def _unsupported_dtype(value: Any) -> str | None:
    """The dtype of an array or NumPy scalar that compiled code cannot take
    (``object``, ``float16``, ``longdouble``...), or None."""
    if isinstance(value, np.ndarray):
        dtype = value.dtype
    elif isinstance(value, np.generic):
        dtype = value.dtype
    else:
        return None
    if dtype.kind == "O":
        return "object"
    return _dtype_unsupported(dtype)


@functools.lru_cache(maxsize=64)
def _dtype_unsupported(dtype: np.dtype) -> str | None:
    if dtype.kind not in "fcbiu":
        return None  # records, datetimes, strings: Numba's own errors name them
    try:
        from numba.core.registry import cpu_target
        from numba.np.numpy_support import from_dtype

        cpu_target.target_context.data_model_manager.lookup(from_dtype(dtype))
    except Exception:
        return str(dtype)
    return None


#: Builtins that take an argument as a whole or by position, never by label.
_POSITIONAL_BUILTINS = frozenset({
    "len", "range", "enumerate", "zip", "min", "max", "sum", "abs", "float", "int", "bool",
    "print", "isinstance", "reversed", "sorted", "list", "tuple", "iter", "any", "all"})


def _positional_index(index: Any) -> bool:
    """Whether ``x[i]`` on an object with this pandas *index* reads position ``i``."""
    n = len(index)
    if type(index).__name__ == "RangeIndex":
        return bool(index.start == 0 and (index.step == 1 or n <= 1))
    kind = getattr(index.dtype, "kind", "O")
    if kind in "iu":
        return bool(np.array_equal(np.asarray(index), np.arange(n)))
    import pandas as pd

    # pandas < 3 reads positions through a non-numeric index (with a FutureWarning)
    return kind not in "fc" and int(pd.__version__.split(".")[0]) < 3


class _Compiled:
    """The dispatchers generated for one decorated function."""

    def __init__(self, serial: Any, pre: Any, chunk: Any, post: Any,
                 gen: _codegen.GeneratedCode) -> None:
        self.serial = serial
        self.pre = pre
        self.chunk = chunk
        self.post = post
        self.gen = gen
        #: the names of a plan's kernel arguments (LoopPlan.arg_names)
        self.arg_names = ("lo", "step", "n", "block",
                          *(f"partial:{r}" for r in gen.reductions), *gen.state)
        #: id(prologue overload) -> (overload, casters, partial dtypes); keyed by
        #: identity since hashing a signature's Numba types costs microseconds a call
        self.casters: dict[int, tuple[Any, tuple[Any, ...], tuple[Any, ...]]] = {}
        self.checked: set[int] = set()  # prologue overloads whose chunk kernel compiled
        self.only_pre: Any = None  # the prologue's overload, while it has one only
        self.plan: LoopPlan | None = None  # the first plan: the fields every plan shares
        #: why the outlined plan cannot run (it could not be compiled): the fused
        #: serial code runs every call instead
        self.no_plan: str | None = None
        #: prologue signature -> why the payloads of a min/max reduction cannot be
        #: held per block for it (not numbers: None, a tuple, an array view), or None
        self.payload_why: dict[tuple[Any, ...], str | None] = {}
        #: the driver (see :mod:`._regions`): the function with its parallel inner
        #: loops called on the pool; looked for once (``regions_found``)
        self.regions_found = False
        self.regions: list[_regions.Region] = []
        self.region_notes: list[str] = []
        self.driver: Any = None
        self.driver_why: str | None = None
        self.gates: np.ndarray | None = None
        self.collective_gates: np.ndarray | None = None
        self.runners: list[_regions.Runner] = []
        #: (driver module, its function's name, namespace, Numba options)
        self.driver_parts: Any = None
        #: argument types -> driver, when regions hand values back
        self.typed_drivers: dict[tuple[Any, ...], Any] | None = None
        #: the function as Python around its regions (calls with distributed arrays)
        self.python_driver: Any = None
        #: the fused serial code calls each region's own compiled serial code (and a
        #: pass of the driver kept inline does too): see _regions.serial_call
        self.region_calls = False

        def run_blocks(c0: int, c1: int, *args: Any) -> None:
            """The chunk kernel, noting on an exception the blocks that raised it (read
            by Accelerated._chunk_error; kept on the exception itself, so that the
            failure of a chunk nobody reports holds on to nothing)."""
            try:
                chunk(c0, c1, *args)
            except BaseException as exc:
                try:
                    exc._loopscale_blocks = (c0, c1)  # type: ignore[attr-defined]
                except Exception:  # an exception type without attributes: not located
                    pass
                raise

        self.run_blocks = run_blocks if chunk is not None else None


def _region_serial_code(regions: Sequence[_regions.Region]) -> dict[str, Any]:
    """Each region's compiled serial code, by the name the fused serial code and
    the driver call it by (``_regions.serial_call``)."""
    return {f"{_regions.SERIAL}{k}": reg.accel._build().serial
            for k, reg in enumerate(regions)}


class Accelerated(Generic[P, R]):
    """A function compiled by :func:`accelerate`.

    Call it like the original.  ``.py_func`` is the original function,
    ``.analysis`` the loop analysis and ``.explain()`` a readable report.
    """

    py_func: Callable[P, R]

    def __init__(self, func: Callable[P, R], *, target: str = "cpu", fastmath: bool = False,
                 boundscheck: bool = False, cache: bool = True, fallback: bool = False) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS!r}; got {target!r}.")
        for name, value in (("fastmath", fastmath), ("boundscheck", boundscheck),
                            ("cache", cache), ("fallback", fallback)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False; got {value!r}.")
        refuse(func)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]
        self.py_func = func
        self.__signature__ = inspect.signature(func)
        self.target = target
        self.fastmath = fastmath
        self.boundscheck = boundscheck
        self.cache = cache
        self.fallback = fallback
        self._disabled = config.disabled()
        self._lock = threading.RLock()
        self._analysis: _analysis.LoopAnalysis | None = None
        self._tree: ast.FunctionDef | None = None
        self._compiled: _Compiled | None = None
        self._serial: Any = None  # the fused dispatcher, once built
        self._deferral: str | None = None  # why divisions raise at once (None: deferred)
        self._no_deferral = False  # a deferring build failed to compile
        self._no_region_calls = False  # a build calling its regions' code failed to compile
        #: lines of the loops over sequences read as range loops (see _iteration);
        #: _no_rewrite after one was compiled for something else than an array
        self._rewritten: list[int] = []
        self._user_tree: ast.FunctionDef | None = None  # (see _analyse)
        self._no_rewrite = False
        self._python_mode = self._disabled
        self._convert = False
        self._fast = 0  # fast-path mode of the generated __call__ (see _fast_mode)
        self._params = list(self.__signature__.parameters)
        self._param_tuple = tuple(self._params)
        self._dist_checked: set[frozenset[str]] = set()
        #: distributed argument names -> the checked Python driver (see
        #: _distributed_driver)
        self._dist_drivers: dict[frozenset[str], Any] = {}
        self._express: list[_Express] = []  # the last calls with distributed arrays
        #: (level setting, its executor) of the last call as a region (_call_region)
        self._region_executor: tuple[Any, bool, Any] | None = None
        #: the last plan run: (n, block, nblocks, lo, step), not its arguments (which
        #: would keep the last call's arrays alive)
        self._last_shape: tuple[int, int, int, int, int] | None = None
        self._why_serial: str | None = None  # why the last parallel call ran serially
        self._warned_serial: set[str] = set()
        self._last_run_seconds: float | None = None
        #: the plan shapes whose serial run was timed at level auto (see __call__)
        self._probed: dict[tuple[int, int, int, int, int] | None, int] = {}
        #: Numba's warnings while compiling (performance hints, type-safety casts).
        self.compile_warnings: list[str] = []

    # -- analysis ---------------------------------------------------------
    @property
    def analysis(self) -> _analysis.LoopAnalysis:
        """The loop analysis (computed on first access)."""
        if self._analysis is None:
            with self._lock:
                if self._analysis is None:
                    self._analyse()
        return self._analysis  # type: ignore[return-value]

    def _analyse(self) -> None:
        try:
            fdef, line0 = _analysis.parse_function(self.py_func)  # type: ignore[arg-type]
        except (OSError, TypeError, SyntaxError) as exc:
            if not self._disabled:
                raise
            code = self.py_func.__code__
            self._analysis = _analysis.LoopAnalysis(
                self.py_func.__qualname__, code.co_filename, None, None, False,
                f"not analysed: {exc}")
            return
        ast.increment_lineno(fdef, line0)
        for node in ast.walk(fdef):
            if isinstance(node, (ast.Name, ast.arg)) and (
                    getattr(node, "id", None) or getattr(node, "arg", "")).startswith("__ls_"):
                raise UnsupportedFunctionError(
                    f"{self.py_func.__qualname__}() uses names starting with '__ls_', which "
                    "loopscale reserves for generated code; rename them.")

        code = self.py_func.__code__
        shadowed = {n for n in ("range", "min", "enumerate", "zip", "reversed")
                    if n in self.py_func.__globals__ or n in code.co_freevars}
        fdef = _iteration.accumulate_in_place(_iteration.reverse_ranges(fdef, shadowed))
        self._user_tree = fdef  # (the loops over sequences as written)
        if not self._no_rewrite:
            fdef, self._rewritten = _iteration.rewrite_loops(fdef, shadowed)

        def warn_forced(line: int, reason: str) -> None:
            warnings.warn(f"{self.py_func.__qualname__}(): the prange loop at line {line} runs "
                          f"sequentially: {reason}", SerializationWarning, stacklevel=4)

        self._tree = fdef
        self._analysis = _analysis.analyse_function(
            self.py_func, fdef, 0, prange_objects=prange_objects(), on_loop=warn_forced)  # type: ignore[arg-type]

    # -- building ---------------------------------------------------------
    def _build(self) -> _Compiled:
        if self._compiled is not None:
            return self._compiled
        with self._lock:
            if self._compiled is not None:
                return self._compiled
            analysis = self.analysis
            fdef = self._tree
            assert fdef is not None
            resolver = _analysis.Resolver(self.py_func, prange_objects())  # type: ignore[arg-type]
            base = "".join(c if c.isalnum() else "_" for c in self.py_func.__qualname__)
            self._deferral = self._deferral_blocker(fdef, analysis, resolver)
            deferred = self._deferral is None
            direct = deferred and _lowering.indexes_are_direct(fdef, analysis.loop_index,
                                                               resolver)
            regions, notes, region_code = self._serial_regions(fdef, analysis)
            gen = _codegen.generate(_regions.serial_tree(fdef, regions) if regions else fdef,
                                    analysis,
                                    lambda node: resolver.is_range(node) == "prange", base,
                                    self.py_func.__code__.co_filename,
                                    self.py_func.__qualname__, deferred=deferred)
            _codegen.python_strings(gen.module, "str" in self.py_func.__globals__
                                    or "str" in self._params or any(
                "str" in _astutil._stmt_targets(st) for st in _astutil._walk_stmts(fdef.body)))
            _codegen.python_powers(gen.module)
            options = _compile.numba_options(self.fastmath, self.boundscheck)
            options["pipeline_class"] = _lowering.Pipeline
            # a deferring loop's helpers are inlined into it (Numba IR), so that
            # their divisions set the loop's flag and their code vectorizes with it
            helpers = _compile.HelperCompiler(
                dict(options, inline="always") if deferred else options, Accelerated)
            loaded = {n.id for n in ast.walk(fdef) if isinstance(n, ast.Name)}
            ns, prints = _compile.build_namespace(self.py_func, loaded, helpers)  # type: ignore
            ns.update(region_code)
            code = compile(gen.module, self.py_func.__code__.co_filename, "exec")
            exec(code, ns)
            key = _compile.cache_key(ast.dump(gen.module, include_attributes=True), prints,
                                     repr(sorted(options.items())), _lowering.signature(),
                                     f"deferred={deferred}/direct={direct}")
            disp = {}
            for attr in ("serial", "pre", "chunk", "post"):
                name = getattr(gen, attr)
                if name is None:
                    disp[attr] = None
                    continue
                fn = ns[name]
                fn.__qualname__ = f"{self.py_func.__qualname__}.{attr}"
                fn.__module__ = self.py_func.__module__
                fn.__loopscale_direct__ = direct  # type: ignore[attr-defined]
                opts = (dict(options, error_model=_lowering.ERROR_MODEL)
                        if deferred and attr in ("serial", "chunk") else options)
                d = _compile.make_dispatcher(fn, f"{key}-{attr}", opts, self.cache)
                d._compile_for_args = self._hook(d, attr, deferred)
                disp[attr] = d
            self._compiled = _Compiled(disp["serial"], disp["pre"], disp["chunk"],
                                       disp["post"], gen)
            if regions:
                self._compiled.regions, self._compiled.region_notes = regions, notes
                self._compiled.region_calls = True
            self._serial = disp["serial"]
            return self._compiled

    def _serial_regions(self, fdef: ast.FunctionDef, analysis: _analysis.LoopAnalysis
                        ) -> tuple[list[_regions.Region], list[str], dict[str, Any]]:
        """The regions of a function whose own loop runs in order, for its fused
        serial code to call (see ``_regions.serial_call``): ``(regions, notes,
        {name: each region's serial dispatcher})``; none when its loop is
        parallel, for another target, or after such a build failed."""
        if (analysis.parallel or self.target != "cpu" or self._python_mode
                or self._no_region_calls):
            return [], [], {}
        try:
            regions, notes = self._find_regions(fdef, analysis)
            code = _region_serial_code(regions)
        except LoopscaleError:
            raise
        except Exception:  # noqa: BLE001 - the loops then run inline, as written
            return [], [], {}
        return regions, notes, code

    def _find_regions(self, fdef: ast.FunctionDef, analysis: _analysis.LoopAnalysis
                      ) -> tuple[list[_regions.Region], list[str]]:
        """``_regions.find_regions`` for this function, each region decorated with
        this function's options."""
        opts = {"fastmath": self.fastmath, "boundscheck": self.boundscheck, "cache": self.cache}
        return _regions.find_regions(
            self.py_func, fdef, lambda fn: Accelerated(fn, **opts),  # type: ignore[arg-type]
            analysis.loop_index)

    def _without_region_calls(self) -> _Compiled:
        """The fused serial code calling its regions' compiled code did not compile:
        built again with the loops inline, as written (their float sums are then
        added in order, and the driver keeps such loops inline: one answer)."""
        with self._lock:
            self._no_region_calls = True
            self._compiled = None
            self._serial = None
        return self._build()

    def _driver(self) -> Any:
        """The driver of this function's parallel inner loops (see :mod:`._regions`),
        or None: its top-level loop runs in parallel itself, or no loop inside
        it is independent, or the driver could not be built."""
        comp = self._build()
        if comp.regions_found:
            return comp.driver
        with self._lock:
            if comp.regions_found:
                return comp.driver
            try:
                self._make_driver(comp)
            except LoopscaleError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loops then run inline
                comp.driver = None
                comp.driver_why = f"{type(exc).__name__}: {exc}"
            finally:
                comp.regions_found = True
        return comp.driver

    def _make_driver(self, comp: _Compiled) -> None:
        analysis = self.analysis
        fdef = self._tree
        if (analysis.parallel or self.target != "cpu" or self._python_mode or fdef is None
                or comp.serial is None):
            return
        if comp.region_calls:
            regions = comp.regions
        else:
            regions, notes = self._find_regions(fdef, analysis)
            comp.regions, comp.region_notes = regions, notes
        if not regions:
            return
        dtree = _regions.driver_tree(fdef, regions, serial_calls=comp.region_calls)
        resolver = _analysis.Resolver(self.py_func, prange_objects())  # type: ignore[arg-type]
        base = "".join(c if c.isalnum() else "_" for c in self.py_func.__qualname__)
        gen = _codegen.generate(dtree, analysis,
                                lambda node: resolver.is_range(node) == "prange",
                                base + "__driver", self.py_func.__code__.co_filename,
                                self.py_func.__qualname__, deferred=False)
        _codegen.python_strings(gen.module, "str" in self.py_func.__globals__
                                or "str" in self._params)
        _codegen.python_powers(gen.module)
        for node in gen.module.body:
            if isinstance(node, ast.FunctionDef) and node.name == gen.serial:
                node.args.args.insert(1, ast.copy_location(ast.arg(_regions.GATES),
                                                           node.args.args[0]))
        options = _compile.numba_options(self.fastmath, self.boundscheck)
        options["pipeline_class"] = _lowering.Pipeline
        helpers = _compile.HelperCompiler(options, Accelerated)
        loaded = {n.id for n in ast.walk(dtree) if isinstance(n, ast.Name)}
        ns, _ = _compile.build_namespace(self.py_func, loaded, helpers)  # type: ignore
        if comp.region_calls:
            ns.update(_region_serial_code(regions))
        # the gates, then the countdowns to a retry of a loop kept inline
        comp.gates = np.concatenate([np.full(len(regions), _regions.FIRST_GATE),
                                     np.full(len(regions), _regions.RETRY_FIRST)]
                                    ).astype(np.int64)
        # (and their own at a collective level: see Runner.collective)
        comp.collective_gates = comp.gates.copy()
        comp.runners = [_regions.Runner(reg.accel, k, comp.gates, comp.collective_gates)
                        for k, reg in enumerate(regions)]
        comp.driver_parts = (gen.module, gen.serial, ns, options)
        # what the driver hands each region, and what it hands back, has the
        # types the function gives those values for each type of its arguments
        # (a float32 would reach the region as a Python float): a driver per
        # signature (_typed_driver)
        comp.typed_drivers = {}
        comp.driver = comp.typed_drivers

    def _driver_build(self, comp: _Compiled, out_types: dict[int, Any],
                      converters: dict[int, list[Any]]) -> Any:
        """A driver dispatcher; *out_types*: region -> the Numba type of what it
        returns (see ``_regions.call_source``); *converters*: region -> per
        parameter, the NumPy scalar type to give back to a number that
        object mode boxed as a Python float or int (or None)."""
        import numba

        module, name, base_ns, options = comp.driver_parts
        ns = dict(base_ns)
        for k, reg in enumerate(comp.regions):
            # (no module: Numba then looks up the object-mode block's globals in
            # the function's own namespace, where the runner is)
            hns = {_regions.OBJMODE: numba.objmode,
                   reg.name: comp.runners[k].converting(converters.get(k, [])),
                   _regions.OUT_TYPE: out_types.get(k)}
            exec(_regions.call_source(k, reg), hns)
            call = hns[f"{_regions.CALL}{k}"]
            call.__module__ = None
            ns[f"{_regions.CALL}{k}"] = numba.njit(nogil=True)(call)
        exec(compile(module, self.py_func.__code__.co_filename, "exec"), ns)
        fn = ns[name]
        fn.__qualname__ = f"{self.py_func.__qualname__}.driver"
        fn.__module__ = self.py_func.__module__
        # (not cached on disk: the object-mode calls name this process's runners)
        disp = numba.njit(nogil=True, **options)(fn)
        disp._compile_for_args = self._hook(disp, "driver")
        return disp

    def _typed_driver(self, comp: _Compiled, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        """The driver for these arguments' types, when regions hand values back:
        their types come from typing the fused serial code for the same types."""
        from numba.core import types as nbt
        from numba.np.numpy_support import as_dtype

        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        serial = self._serial
        key = tuple(serial.typeof_pyval(v) for v in bound.arguments.values())
        disp = comp.typed_drivers.get(key)
        if disp is not None:
            return disp
        try:
            typemap = self._serial_typemap(comp, (serial.typeof_pyval(_state()), *key))
            out_types = {}
            converters: dict[int, list[Any]] = {}
            for k, reg in enumerate(comp.regions):
                convs: list[Any] = []
                for p in reg.params:
                    t = typemap.get(p)
                    narrow = (isinstance(t, nbt.Float) and t.bitwidth < 64
                              or isinstance(t, nbt.Integer) and (t.bitwidth < 64 or not t.signed)
                              and not isinstance(t, nbt.Boolean)
                              or isinstance(t, nbt.Complex) and t.bitwidth < 128)
                    convs.append(as_dtype(t).type if narrow else None)
                converters[k] = convs
                if reg.outs:
                    ts = [typemap[o] for o in reg.outs]
                    out_types[k] = ts[0] if len(ts) == 1 else nbt.Tuple(ts)
                    self._exact_or_inline(comp, k, reg, ts)
        except Exception as exc:  # noqa: BLE001 - the fused serial code runs instead
            raise CompileError(f"typing the values the inner loops hand back failed: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                               function=self.py_func.__qualname__) from exc
        disp = comp.typed_drivers[key] = self._driver_build(comp, out_types, converters)
        return disp

    def _serial_typemap(self, comp: _Compiled, sig: tuple[Any, ...]) -> dict[str, Any]:
        """The types the fused serial code gives its variables for *sig*: from
        its compilation in this process, or (loaded from the disk cache, which
        keeps no types) a compilation of its own, not cached."""
        import numba
        from numba.core import types as nbt

        cres = self._serial.overloads.get(sig)
        ann = getattr(cres, "type_annotation", None)
        if ann is None or isinstance(ann, str):
            fresh = numba.njit(nogil=True, **comp.driver_parts[3])(self._serial.py_func)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fresh.compile(sig)
            ann = fresh.overloads[sig].type_annotation
        # (`s = 0` then `s += x[i]`: the versions `s` int64, `s.1` float64; the
        # value handed back is their unified type, as Python's is a float)
        versions: dict[str, list[Any]] = {}
        for var, t in ann.typemap.items():
            base = var.split(".")[0] if var.split(".")[-1].isdigit() else var
            versions.setdefault(base, []).append(nbt.unliteral(t))
        out: dict[str, Any] = {}
        for base, ts in versions.items():
            t = ts[0] if len(set(ts)) == 1 else self._serial.typingctx.unify_types(*ts)
            if t is not None:
                out[base] = t
        return out

    @staticmethod
    def _exact_or_inline(comp: _Compiled, k: int, reg: _regions.Region,
                         out_types: list[Any]) -> None:
        """Keep region *k* inline when it hands back a sum or product of floats:
        combined over its blocks, it would be added in another order than the
        fused serial code adds it (which the serial level, and every short pass,
        runs), and the answer would depend on which ran.  Integer sums, min/max
        with their payloads and flags are the same in any order."""
        from numba.core import types as nbt

        if comp.region_calls:
            return  # (a pass kept inline runs the region's own blocks: the same sum)
        ops = reg.accel.analysis.reductions
        for name, t in zip(reg.outs, out_types, strict=True):
            if ops.get(name, "min") in ("min", "max", "set"):
                continue
            if isinstance(t, (nbt.Integer, nbt.Boolean)):
                continue
            for gates in (comp.gates, comp.collective_gates):
                gates[k] = 1 << 62  # type: ignore[index]
                gates[len(comp.regions) + k] = 1 << 62  # (and never tried again)  # type: ignore[index]
            note = (f"inner loop at line {reg.line}: runs inline: its {ops[name]!s}-reduction "
                    f"`{name}` is a {t}, whose blocks would be added in another order "
                    "than the serial code adds them")
            if note not in comp.region_notes:
                comp.region_notes.append(note)
            return

    def _run_driver(self, comp: _Compiled, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """The driver, timed; a driver that cannot be compiled is dropped (the
        fused serial code runs then and after)."""
        if any(_is_pandas(v) or isinstance(v, _BUFFERS) for v in (*args, *kwargs.values())):
            # (as the fused serial code takes them: see _call_at_level)
            self._convert = True
            args, kwargs = self._convert_args(args, kwargs)
        st = _state()
        t0 = time.perf_counter()
        try:
            driver = (self._typed_driver(comp, args, kwargs)
                      if comp.typed_drivers is not None else comp.driver)
            gates = (comp.collective_gates
                     if comp.runners[0]._agreement() is not None else comp.gates)
            out = driver(st, gates, *args, **kwargs)
        except CompileError as exc:
            comp.driver = comp.typed_drivers = None
            comp.driver_why = str(exc).splitlines()[0]
            return self._run_serial(args, kwargs)
        except LoopscaleError:
            raise
        except Exception as exc:
            if getattr(exc, "_loopscale_region", False):
                raise  # located by the region's own function
            new = self._translate(exc, st)
            if new is exc:
                raise
            raise new from exc
        self._last_run_seconds = time.perf_counter() - t0
        return out  # type: ignore[no-any-return]

    def _deferral_blocker(self, fdef: ast.FunctionDef, analysis: Any, resolver: Any) -> str | None:
        """Why a float division by zero in this function's loop must raise at once
        (None: it is raised at the end of its block; see :mod:`._lowering`)."""
        if not analysis.parallel or analysis.loop_index is None:
            return "the loop runs sequentially"
        if self._no_deferral:
            return self._deferral
        if self.cache:
            known = _compile.read_refusal(self._refusal_key())
            if known is not None:
                self._no_deferral = True
                return known
        return _lowering.deferral_blocker(
            fdef, analysis.loop_index, resolver, self.py_func.__code__.co_filename,  # type: ignore
            self.boundscheck,
            lambda helper: _analysis.Resolver(helper, prange_objects()), self.fastmath)

    def _refusal_key(self) -> str:
        """Keys the on-disk verdict that this function cannot defer its divisions:
        its code and everything it refers to, transitively, and the options."""
        return _compile.cache_key("deferral", _compile.fingerprint(self.py_func),
                                  repr((self.fastmath, self.boundscheck)),
                                  _lowering.signature())

    def _without_deferral(self, exc: Exception) -> _Compiled:
        """After a function built to defer its divisions failed to compile
        (Numba's IR inliner refuses some helpers): the same function built
        again to raise them at once, as Numba does."""
        with self._lock:
            if not self._no_deferral:
                self._no_deferral = True
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                unsafe = exc
                while unsafe is not None and not isinstance(unsafe, _lowering.UnsafeDeferral):
                    unsafe = unsafe.__cause__ or unsafe.__context__
                self._deferral = (str(unsafe) if unsafe is not None else
                                  f"compiling the loop with its helpers inlined failed: {first}")
                if self.cache:
                    _compile.write_refusal(self._refusal_key(), self._deferral)
                self._compiled = None
                self._serial = None
        return self._build()

    def _hook(self, disp: Any, stage: str, deferred: bool = False) -> Callable[..., Any]:
        original = disp._compile_for_args

        def compile_for_args(*args: Any, **kws: Any) -> Any:
            if stage in ("serial", "pre"):
                self._check_args(args[1:] if stage == "serial" else args)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = original(*args, **kws)
                self._keep_warnings(caught)
                return result
            except ImportError as exc:
                # Numba needs an optional package for some NumPy functions
                # (SciPy's BLAS/LAPACK for np.dot, @, np.linalg)
                raise CompileError(
                    f"cannot compile {self.py_func.__qualname__}(): it uses a NumPy function "
                    f"that Numba implements with an optional package: {exc}. Install it "
                    "(pip install scipy for np.dot, @ and np.linalg) or move that call out of "
                    "the decorated function.", function=self.py_func.__qualname__,
                    filename=self.py_func.__code__.co_filename) from exc
            except LoopscaleError:
                raise
            except Exception as exc:
                if self._rewritten and _NOT_A_SEQUENCE in str(exc):
                    # a rewritten `for v in x` over what is not an array: the code as written
                    raise _Unrewritten from exc
                # a bad argument is named (None, an array of the wrong dimension...);
                # anything else that fails while compiling -- Numba's own errors and
                # the odd TypeError from its lowering -- is a CompileError, so
                # that fallback=True and the threads level's fall-back catch it
                if stage in ("serial", "pre") and _compile.is_numba_compile_error(exc):
                    better = self._diagnose(exc, args[1:] if stage == "serial" else args)
                    if better is not None:
                        raise better from exc
                comp_now = self._compiled
                regions_failed = (stage == "serial" and comp_now is not None
                                  and comp_now.region_calls and comp_now.serial is disp)
                if not regions_failed and not (deferred and isinstance(
                        exc, (nb_errors.NumbaError, NotImplementedError))):
                    shown = ""
                    if stage in ("serial", "pre"):
                        shown = _compile.describe_args(self._params,
                                                       args[1:] if stage == "serial" else args)
                    raise _compile.compile_error(exc, self.py_func, shown) from exc  # type: ignore
                # (NotImplementedError: Numba's IR inliner refusing a helper)
                failed = exc
            # built again without deferral (or with its regions' loops inline),
            # outside the handler: its own error, if any, must not carry this one
            # as its context (two Numba tracebacks)
            comp = (self._without_region_calls() if regions_failed
                    else self._without_deferral(failed))
            return getattr(comp, stage)._compile_for_args(*args, **kws)

        return compile_for_args

    def _diagnose(self, exc: Exception, values: tuple[Any, ...]) -> LoopscaleError | None:
        """After Numba failed to type the function for *values*: the argument (or
        the module global) that caused it, named in an error, or None."""
        tree = self._tree
        if tree is None:
            return None
        fn = self.py_func
        where = (f"{fn.__qualname__}() ({fn.__code__.co_filename}:"
                 f"{fn.__code__.co_firstlineno})")
        text = str(exc)
        _, err_line = _compile._user_location(text, fn)  # type: ignore[arg-type]
        uses = _param_uses(tree, self._params)
        converted = getattr(self, "_converted_from", {})
        for name, value in zip(self._params, values, strict=False):
            if (value is None and err_line is not None
                    and re.search(r"of type none\b|\(none\b|, none\b|NoneType", text)):
                used = next((ast.unparse(n) for n in ast.walk(tree)
                             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                             and n.value.id == name
                             and getattr(n, "lineno", None) == err_line), None)
                if used is not None:
                    return ArgumentError(
                        f"argument {name!r} of {where} is None, but the function uses "
                        f"`{used}` (line {err_line}): pass the array (or value) it expects.")
            if name not in uses:
                continue
            idx, attrs = uses[name]
            first = idx[0] if idx else (attrs[0] if attrs else None)
            lines = {ln for ln, *_ in idx} | {ln for ln, _ in attrs}
            # (the generated length checks sit on the loop's line)
            at_use = err_line in lines or err_line in (fn.__code__.co_firstlineno,
                                                       self.analysis.lineno)
            if value is None and first is not None and re.search(r"\bnone\b|NoneType", text):
                return ArgumentError(
                    f"argument {name!r} of {where} is None, but the function uses it as an "
                    f"array (`{first[1]}`, line {first[0]}): pass a NumPy array.")
            if isinstance(value, np.ndarray) and idx:
                ndims = {k for _, _, k in idx}
                # more indices than dimensions is always wrong; fewer is a row or a
                # slice, wrong only where Numba met that sub-array instead of a
                # number (an operation with no implementation for it, on the line)
                if value.ndim not in ndims and (max(ndims) > value.ndim or (
                        any(line == err_line for line, _, _ in idx)
                        and re.search(r"No implementation of function|Cannot unify", text)
                        and re.search(rf"array\(\w+, {value.ndim - min(ndims)}d", text)
                        # a keyword Numba's version of the function lacks is no
                        # sign of a wrong dimension (np.cumsum(a[i], out=...))
                        and not re.search(r"unexpected keyword argument", text))):
                    line, src, k = next(((ln, t, k) for ln, t, k in idx if ln == err_line),
                                        idx[0])
                    what = (f"a pandas {converted[name]} (a {value.ndim}-D array once "
                            "converted)" if name in converted else f"a {value.ndim}-D array")
                    want = " or ".join(f"{d}-D" for d in sorted(ndims))
                    hint = (f"pass a {want} array" + (
                        " (for one column of a DataFrame: df['col'].to_numpy())"
                        if name in converted and "DataFrame" in converted[name] else
                        f" ({name}.ravel() flattens it)" if min(ndims) == 1 else ""))
                    return ArgumentError(
                        f"argument {name!r} of {where} is {what}, but the function indexes it "
                        f"with {k} index{'es' if k != 1 else ''} (`{src}`, line {line}), as a "
                        f"{want} array, and Numba cannot compile line {err_line} for it: "
                        f"{hint}.")
            if isinstance(value, (int, float, complex, np.generic)) and (idx or attrs) and at_use:
                line, src = (idx[0][0], idx[0][1]) if idx else attrs[0]
                return ArgumentError(
                    f"argument {name!r} of {where} is a {type(value).__name__} "
                    f"({value!r}), but the function uses it as an array (`{src}`, line "
                    f"{line}): pass a NumPy array.")
        if re.search(r"readonly array|Cannot modify readonly", text):
            written = _global_array_writes(tree, self.py_func, self._params)  # type: ignore
            if written:
                gname, line, src = written[0]
                return CompileError(
                    f"cannot compile {fn.__qualname__}() — {fn.__code__.co_filename}:{line}: it "
                    f"writes to the module-level array `{gname}` (`{src}`). Compiled code "
                    "takes module globals as compile-time constants, which are read-only. "
                    f"Pass the array as an argument instead (def {fn.__name__}(..., "
                    f"{gname}): ...) and call it with {gname}.",
                    function=fn.__qualname__, filename=fn.__code__.co_filename, lineno=line)
        return None

    def _keep_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        """Numba's compile-time warnings go to explain(); others are re-issued."""
        from numba.core.errors import NumbaWarning

        for w in caught:
            if issubclass(w.category, NumbaWarning):
                text = str(w.message).strip().splitlines()[0]
                if text.startswith("Code running in object mode won't allow parallel"):
                    continue  # (the driver's calls of its regions: see _regions)
                if text not in self.compile_warnings:
                    self.compile_warnings.append(text)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    # -- arguments --------------------------------------------------------
    def _written_params(self, values: Mapping[str, Any] | None = None) -> dict[str, int]:
        """The parameters the function may write -> a line that writes them; with
        the call's *values*, not those written only as rows of more dimensions than
        the value has (``t = x[i]; t += c`` on a 1-D ``x`` changes a number)."""
        a = self.analysis
        out = {}
        for name, role in a.arrays.items():
            if role.written and name in self._params and (
                    values is None or name not in values or a.writes(
                        name, _to_array(values[name]))):
                out[name] = a.lineno or 0
        tree = self._tree
        if tree is not None:  # writes outside the analysed loop count too
            for node in ast.walk(tree):
                if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                    base, _ = _astutil.index_positions(node)
                    if base is not None and base.id in self._params:
                        out.setdefault(base.id, node.lineno)
        return out

    def _check_args(self, args: tuple[Any, ...]) -> None:
        """Validate arguments for a new type signature; name the bad one."""
        import numba

        if any(_distributed.is_distributed(v) for v in args):
            raise _NeedsConversion  # the slow path takes distributed calls
        written = self._written_params(dict(zip(self._params, args, strict=False)))
        where = f"{self.py_func.__qualname__}()"
        convert = False
        for name, value in zip(self._params, args, strict=False):
            self._refuse_written_container(name, value, written)
            if _is_pandas(value) and name in written:
                arr = value.to_numpy()
                if not arr.flags.writeable or not np.shares_memory(arr, value.to_numpy()):
                    raise ArgumentValueError(
                        f"argument {name!r} of {where} is a pandas {type(value).__name__} that "
                        f"the function writes to (line {written[name]}), but pandas gives only a "
                        "read-only or copied array for it: pass a NumPy array and build the "
                        "Series from it afterwards.")
        for name, value in zip(self._params, args, strict=False):
            if _is_pandas(value) or isinstance(value, _BUFFERS):
                convert = True
                continue
            if isinstance(value, np.ndarray) and name in written and not value.flags.writeable:
                raise ArgumentValueError(
                    f"argument {name!r} of {where} is a read-only array, but the function writes "
                    f"to it (line {written[name]}): pass a writable array (np.array({name}) "
                    "copies it; pandas' to_numpy() views are read-only under copy-on-write).")
            if isinstance(value, (dict, set)):
                raise _UntypedArgument(
                    f"argument {name!r} of {where} is a {type(value).__name__}, which compiled "
                    "code cannot take: pass NumPy arrays (one per field), numbers or tuples.")
            bad = _unsupported_dtype(value)
            if bad is not None:
                converted = getattr(self, "_converted_from", {}).get(name)
                what = (f"a pandas {converted} (an array of dtype {bad} once converted)"
                        if converted else
                        f"an array of dtype {bad}" if isinstance(value, np.ndarray) else
                        f"a NumPy {bad} scalar")
                if bad == "object":
                    fix = (f"pass a numeric array: {name}.cat.codes.to_numpy() for a "
                           f"categorical, {name}.to_numpy(dtype=np.float64) for numbers "
                           "held as objects" if converted else
                           f"pass a numeric array, e.g. {name}.astype(np.float64)")
                    why = "which holds Python objects, which compiled code cannot take"
                elif not value.dtype.isnative:
                    fix = (f"convert it to this machine's byte order, "
                           f"{name}.astype({name}.dtype.newbyteorder('=')) (the same "
                           "values; a big-endian file read as it is stored gives such arrays)")
                    why = "which compiled code cannot take"
                else:
                    fix = (f"convert it, e.g. {name}.astype(np.float32) (or np.float64), and "
                           "convert the result back if needed")
                    why = "which Numba does not support"
                raise _UntypedArgument(
                    f"argument {name!r} of {where} ({self.py_func.__code__.co_filename}:"
                    f"{self.py_func.__code__.co_firstlineno}) is {what}, {why}: {fix}.")
            try:
                numba.typeof(value, numba.core.typing.typeof.Purpose.argument)
            except Exception:
                if type(value) is int:  # (a Python int: beyond 64 bits)
                    raise ArgumentValueError(
                        f"argument {name!r} of {where} is the integer {value}, which does not "
                        "fit in 64 bits (compiled integers are int64 or uint64): pass a float "
                        f"(float({name})) or a smaller number.") from None
                raise _UntypedArgument(
                    f"argument {name!r} of {where} is a {type(value).__module__}."
                    f"{type(value).__qualname__} object, which compiled code cannot take: pass "
                    "NumPy arrays, numbers, tuples or strings (for an object, pass the arrays "
                    "it holds).") from None
        if convert:
            raise _NeedsConversion

    def _refuse_written_container(self, name: str, value: Any, written: dict[str, int]) -> None:
        """A list (or a tuple of numbers) the function writes: converting it to an
        array would lose the writes.  A tuple or namedtuple of arrays is written
        through its arrays, and is fine."""
        if isinstance(value, (list, tuple)) and name in written and not (
                isinstance(value, tuple) and _holds_arrays(value)):
            raise ArgumentError(
                f"argument {name!r} of {self.py_func.__qualname__}() is a "
                f"{type(value).__name__}, but the function writes to it (line "
                f"{written[name]}): pass a NumPy array, e.g. np.asarray({name}), and read "
                "the result from that array.")

    def _convert_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]
                      ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """pandas objects and lists of numbers become arrays; written lists are refused."""
        named = list(zip(self._params, args, strict=False)) + list(kwargs.items())
        written = self._written_params(dict(named))
        for name, value in named:
            self._refuse_written_container(name, value, written)
        for name, value in named:
            if _is_pandas(value):
                self._check_labels(name, value)
                self._check_missing(name, value)
            if isinstance(value, list):
                try:
                    np.asarray(value)
                except (ValueError, TypeError) as exc:
                    raise ArgumentError(
                        f"argument {name!r} of {self.py_func.__qualname__}() is a list that "
                        "does not make an array (rows of different lengths, or values that "
                        f"are not numbers: {exc}); pass a NumPy array of numbers, with "
                        "rows of one length.") from None
        # what each converted argument was, for messages about it
        self._converted_from = {
            name: (f"{type(value).__name__}" + (
                f" of dtype {value.dtype}" if _is_pandas(value) and hasattr(value, "dtype")
                and str(value.dtype) == "category" else ""))
            for name, value in named if _is_pandas(value)}
        return (tuple(_to_array(a) for a in args),
                {k: _to_array(v) for k, v in kwargs.items()})

    def _indexed_params(self, iterated: bool = False) -> dict[str, int]:
        """Parameters the function subscripts (``x[i]``) or hands to a helper
        function of its own, with the first such line; with *iterated*, those
        it iterates (``for v in x``) too."""
        cached = getattr(self, "_indexed_cache", None)
        if cached is not None and iterated in cached:
            return cached[iterated]  # type: ignore[no-any-return]
        found: dict[str, int] = {}
        # as written, or as the loops over sequences are read: `for v in x` as
        # `v = x[i]` (for a Series its values in order; a DataFrame's labels)
        tree = self._tree if iterated else (self._user_tree or self._tree)
        params = set(self._params)
        if tree is not None:
            for node in ast.walk(tree):
                if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                        and node.value.id in params:
                    found.setdefault(node.value.id, node.lineno)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                        and node.func.id not in _POSITIONAL_BUILTINS:
                    for arg in [*node.args, *(k.value for k in node.keywords)]:
                        if isinstance(arg, ast.Name) and arg.id in params:
                            found.setdefault(arg.id, node.lineno)
        if cached is None:
            cached = self._indexed_cache = {}
        cached[iterated] = found
        return found

    def _check_missing(self, name: str, value: Any) -> None:
        """Refuse a pandas nullable column (``Int64``, ``Float64``, ``boolean``...)
        that holds missing values: compiled code has no ``pd.NA``, and pandas would
        turn the column into floats with NaN (or objects), where Python's loop
        computes with ``<NA>``."""
        columns = ([value[c] for c in value.columns] if hasattr(value, "columns")
                   else [value])
        for col in columns:
            dtype = getattr(col, "dtype", None)
            if dtype is None or isinstance(dtype, np.dtype) or not hasattr(col, "isna"):
                continue
            try:
                import pandas as pd

                if getattr(dtype, "na_value", None) is not pd.NA:
                    continue
            except ImportError:  # pragma: no cover - a pandas object without pandas
                return
            missing = int(col.isna().sum())
            if not missing:
                continue
            code = self.py_func.__code__
            label = f" (column {col.name!r})" if col is not value else ""
            numeric = dtype.kind in "iuf"
            raise ArgumentValueError(
                f"argument {name!r} of {self.py_func.__qualname__}() ({code.co_filename}:"
                f"{code.co_firstlineno}) is a pandas {type(value).__name__}{label} of "
                f"nullable dtype {dtype} holding {missing} missing value"
                f"{'s' if missing != 1 else ''} (<NA>), which compiled code has no value "
                "for: pass " + (
                    f"{name}.to_numpy(dtype=np.float64, na_value=np.nan) to compute with NaN, "
                    f"or {name}.fillna(<value>).to_numpy() to give them a value."
                    if numeric else
                    f"{name}.fillna(<value>).to_numpy() to give them a value."))

    def _check_labels(self, name: str, value: Any) -> None:
        """Refuse a pandas argument whose ``x[i]`` in Python is not position *i*.

        A Series' ``x[i]`` looks up the *label* ``i`` (pandas 3 always; pandas 2
        for a numeric index), a DataFrame's ``x[i]`` the *column* ``i``; the
        compiled function gets the array and reads position (row) ``i``.  The
        answers would differ silently (or Python would raise ``KeyError``).
        """
        kind = type(value).__name__
        line = self._indexed_params(iterated=kind == "DataFrame").get(name)
        if line is None:
            return
        code = self.py_func.__code__
        where = f"{self.py_func.__qualname__}() ({code.co_filename}:{code.co_firstlineno})"
        if kind == "DataFrame":
            how = (f"iterates it (`for ... in {name}`, line {line}): in Python that gives its "
                   "column labels" if line in self._rewritten
                   and self._indexed_params().get(name) != line else
                   f"indexes it (`{name}[...]`, line {line}): in Python that selects a column "
                   "by its label")
            raise ArgumentError(
                f"argument {name!r} of {where} is a pandas DataFrame, and the function {how}"
                ", while the "
                f"compiled function would read rows of {name}.to_numpy(): pass a NumPy array "
                f"instead, {name}.to_numpy() for rows, or {name}['<column>'].to_numpy() for "
                "one column.")
        index = getattr(value, "index", None)
        if index is None or _positional_index(index):
            return
        raise ArgumentValueError(
            f"argument {name!r} of {where} is a pandas {kind} whose index is not 0..n-1 "
            f"({type(index).__name__} starting {list(index[:3])!r}): in Python `{name}[i]` "
            f"(line {line}) looks up the label i, while the compiled function would read "
            "position i, so "
            f"the answers would differ: pass {name}.to_numpy() for positions, or "
            f"{name}.reset_index(drop=True) if positions are what the loop means.")

    def compile_for(self, *args: Any, **kwargs: Any) -> None:
        """Compile the function for the types of *args* without running it.

        As Numba's ``dispatcher.compile(signature)``, but from example
        arguments (lists and pandas objects are taken as the arrays a call
        would make of them).  Raises what the first call would raise for
        them: :class:`~loopscale.errors.CompileError`,
        :class:`~loopscale.errors.ArgumentError`...

        Examples
        --------
        >>> import numpy as np
        >>> from loopscale import accelerate
        >>> @accelerate
        ... def total(x):
        ...     s = 0.0
        ...     for i in range(x.shape[0]):
        ...         s += x[i]
        ...     return s
        >>> total.compile_for(np.zeros(3))   # compiled; nothing ran
        """
        import numba
        from numba.core.typing.typeof import Purpose

        self._build()
        if self._python_mode or self._serial is None:
            return
        screen_args(self._params, args, kwargs, self.py_func)
        args, kwargs = self._convert_args(args, kwargs)
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        values = tuple(bound.arguments.values())
        self._check_args(values)
        sig = (numba.typeof(_state(), Purpose.argument),
               *(numba.typeof(v, Purpose.argument) for v in values))
        try:
            self._serial.compile(sig)
        except _Unrewritten:
            self._unrewrite()
            self.compile_for(*args, **kwargs)
        except LoopscaleError:
            raise
        except Exception as exc:
            if _compile.is_numba_compile_error(exc):
                raise _compile.compile_error(exc, self.py_func) from exc  # type: ignore
            raise

    # -- calling ----------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # Replaced, per decorated function, by a generated method with the
        # function's exact signature (see _make_call): a splatted call costs
        # about 150 ns more than a direct one, too much for the fast path.
        return self._call_slow(args, kwargs)

    def _after_error(self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """Handle an exception from the fast path."""
        if isinstance(exc, (_NeedsConversion, CompileError, _Unrewritten, _UntypedArgument)):
            return self._call_slow(args, kwargs)
        if not isinstance(exc, LoopscaleError) and any(
                isinstance(v, _BUFFERS) for v in (*args, *kwargs.values())):
            # Numba could not even type it (an empty list, a memoryview): as arrays
            args, kwargs = self._convert_args(args, kwargs)
            return self._call_slow(args, kwargs)
        new = self._translate(exc, 0)
        if new is exc:
            raise exc
        raise new from exc

    def _call_slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        try:
            return self._call_slow_once(args, kwargs)
        except _Unrewritten:
            self._unrewrite()
            return self._call_slow_once(args, kwargs)

    def _unrewrite(self) -> None:
        """Analyse and build the function again from its loops as written: a loop
        over a sequence read as a range loop (see :mod:`._iteration`) was compiled
        for what does not iterate as an array does."""
        with self._lock:
            self._no_rewrite = True
            self._rewritten = []
            self._analysis = None
            self._tree = None
            self._compiled = None
            self._serial = None
            self._fast = 0
            self._indexed_cache = None
            self._dist_checked.clear()
            self._dist_drivers.clear()
            self._express = []
            self._region_executor = None
            self._probed.clear()

    def _call_slow_once(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        screen_args(self._params, args, kwargs, self.py_func)
        if self._express and not kwargs:
            out = self._call_express(args)
            if out is not _MISS:
                return out  # type: ignore[no-any-return]
        dist = _distributed.distributed_arguments(self._params, args, kwargs)
        if dist:
            return self._call_distributed(dist, args, kwargs)
        if self._python_mode:
            return self.py_func(*args, **kwargs)
        setting = config.current_level()
        if self.target == "cuda" or setting.name == "cuda":
            from . import _cuda

            try:
                result = _cuda.call_cuda(self, args, kwargs,
                                         setting.options if setting.name == "cuda" else {})
            except CompileError as exc:
                if not self.fallback:
                    raise exc.with_traceback(None) from exc.__cause__
                return self._fall_back(exc, args, kwargs)
            if not isinstance(result, _cuda.RunOnCpu):
                return result  # type: ignore[no-any-return]
            if setting.name == "cuda":  # the loop stays on the CPU: the default level runs it
                with config.level("auto"):
                    return self._call_cpu(args, kwargs)
        return self._call_cpu(args, kwargs)

    def _call_region(self, args: tuple[Any, ...]) -> R:
        """A call of this function as a region of a driver (``_regions.Runner``):
        its arguments are what compiled code handed over (arrays and numbers,
        never lists, pandas objects or distributed arrays), so what a user's
        call screens and converts is skipped, and the executor of the level in
        force is the one :meth:`_region_executor_now` keeps.  Anything else (the
        ``serial`` level of a probe, CUDA, plain Python, converted arguments)
        takes the ordinary path."""
        executor = self._region_executor_now()
        if executor is None or self._convert:
            return self._call_slow(args, {})
        try:
            return self._call_plan(executor, args, {})
        except _Unrewritten:  # (as _call_slow and _call_cpu handle them)
            self._unrewrite()
            return self._call_slow(args, {})
        except CompileError as exc:
            if not self.fallback:
                raise exc.with_traceback(None) from exc.__cause__
            return self._fall_back(exc, args, {})

    def _region_executor_now(self) -> Any:
        """The executor a pass of this function as a region runs on at the level in
        force, or None (the ordinary call path decides): looked up once per level
        setting (equal settings count as one: each ``with level("mpi")`` block
        makes a new one) and per whether collectives are allowed (not in a task
        of ``distribute.map``, where ``auto`` resolves otherwise).  The runner
        agrees its verdicts through the same executor (``agree_any``)."""
        setting = config.current_level()
        allowed = config.collectives_allowed()
        known = self._region_executor
        if known is not None and known[1] is allowed and (known[0] is setting
                                                         or known[0] == setting):
            return known[2]
        executor = None
        if (self.target == "cpu" and not self._python_mode and self._compiled is not None
                and setting.name not in ("serial", "cuda") and allowed):
            name = self._resolve_level(setting)
            if name != "serial":
                executor = get_executor(name, setting.options)
        self._region_executor = (setting, allowed, executor)
        return executor

    def _call_cpu(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        self._build()
        try:
            return self._call_at_level(args, kwargs)
        except CompileError as exc:
            if not self.fallback:
                raise exc.with_traceback(None) from exc.__cause__
            return self._fall_back(exc, args, kwargs)
        except _UntypedArgument as exc:
            if not self.fallback:
                raise exc.with_traceback(None) from None
            # (this call's argument: a later call with others still compiles)
            warnings.warn(f"{exc}\n  Running the Python function for this call instead "
                          "(fallback=True).", FallbackWarning, stacklevel=_user_stacklevel())
            return self.py_func(*args, **kwargs)

    def _call_at_level(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        if self._convert:
            args, kwargs = self._convert_args(args, kwargs)
        setting = config.current_level()
        name = self._resolve_level(setting)
        # the fast path is chosen for calls outside distribute.map tasks: inside
        # one, auto cannot pick mpi, and a mode chosen there would make this rank
        # alone skip the collectives of later calls (the others wait for ever)
        in_task = not config.collectives_allowed()
        self._fast = 0 if in_task else self._fast_mode()
        if name != "serial":
            executor = get_executor(name, setting.options)
            if setting.name != "auto":
                return self._call_plan(executor, args, kwargs)
            self._last_run_seconds = None
            result = self._call_plan(executor, args, kwargs)
            # auto: a loop that would have been short on one core goes back to
            # the fused serial code (timed, so that a bigger call comes back here)
            spent = self._last_run_seconds
            # never for a collective executor (MPI): every rank must take the same
            # path, and timings differ between ranks
            if (spent is not None and not getattr(executor, "collective", False)
                    and self.target != "cuda"  # (a GPU function's next call may run there)
                    and not in_task):
                workers = getattr(executor, "max_workers", 1)
                short = spent * workers < AUTO_SECONDS
                # time x workers overstates a short parallel run, which is mostly
                # the workers' wake-up (0.4 ms for 16 workers on a VM, whatever the
                # loop): the next call of the same shape is timed serially (up to
                # three times a shape, for a few shapes: one slow serial run may be
                # noise), and the function stays serial while that is short (the
                # timed fast path comes back here when it is not)
                shape = self._last_shape
                tries = self._probed.get(shape, 0)
                probe = (not short and workers > 1 and spent < PROBE_SECONDS
                         and tries < 3 and (tries or len(self._probed) < PROBE_SHAPES))
                if short or probe:
                    if probe:
                        self._probed[shape] = tries + 1
                    self._fast = 2 if _LEVEL_VAR.get() is None else self._fast
            return result
        if setting.options and setting.name == "serial":
            get_executor("serial", setting.options)  # validates (rejects) options
        while True:
            try:
                return self._run_serial(args, kwargs)
            except _NeedsConversion:  # (raised on by _translate)
                self._convert = True
                self._fast = 0
                args, kwargs = self._convert_args(args, kwargs)

    def _call_distributed(self, dist: dict[str, Any], args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> R:
        """A call with distributed arrays: each rank runs the iterations of its rows
        (see :mod:`._distributed`)."""
        fn = self.py_func
        cuda_level = config.current_level().name == "cuda"
        if self._python_mode or self.target == "cuda" or cuda_level:
            where = f"{fn.__qualname__}()"
            why = ("LOOPSCALE_DISABLE=1 runs it as plain Python" if self._disabled else
                   "it runs as plain Python after a compile error (fallback=True)"
                   if self._python_mode else "target='cuda' runs on one GPU"
                   if self.target == "cuda" else "the 'cuda' level runs on one GPU")
            raise DistributionError(
                f"{where} was called with the distributed array(s) "
                f"{', '.join(map(repr, dist))}, but {why}, and only the compiled CPU code "
                "can run on distributed arrays. Gather them first (distribute.allgather) "
                "or run compiled.")
        comp = self._build()
        key = frozenset(dist)
        if not self.analysis.parallel and comp.pre is None:
            driver = self._distributed_driver(comp, key)
            if driver is not None:  # its inner loops run as distributed calls, each pass
                return driver(*args, **kwargs)  # type: ignore[no-any-return]
        if key not in self._dist_checked:  # the syntax does not change: once per set of names
            _distributed.check_call(fn.__qualname__, fn.__code__.co_filename, self._tree,
                                    self.analysis, comp.pre is not None, dist,
                                    comp.gen.plan_reason)
            self._dist_checked.add(key)
        _distributed.check_aliases(fn.__qualname__, fn.__code__.co_filename, self.analysis,
                                   dist)
        first = next(iter(dist.values()))
        setting = config.current_level()
        call = getattr(type(first), _distributed.PROTOCOL)(
            function=fn.__qualname__, analysis=self.analysis, arrays=dist,
            params=self._param_tuple, level=setting.name, options=dict(setting.options),
            read_after_loop=self._after_loop_reads)
        if not kwargs and len(args) <= len(self._params) and hasattr(call, "reuse"):
            # the last few (a stencil alternates two pairs of arrays)
            self._express = [_Express(setting, args, self._params, call),
                             *self._express[:_EXPRESS_KEPT - 1]]
        return self._run_distributed(call, args, kwargs, key)

    def _distributed_driver(self, comp: _Compiled, names: frozenset[str]) -> Any:
        """The function as Python around its parallel inner loops, each a call of its
        own (``_regions.python_driver``), for a call with the distributed arrays
        *names*; None when it has no such loops (the call is then refused, with
        the reason its loop runs in order).  Checked once per set of names: the
        code between the loops must not need every rank's rows, and each loop
        must be able to run where the rows live."""
        found = self._dist_drivers.get(names)
        if found is not None:
            return found
        try:
            has = self._driver() is not None or bool(comp.regions)
        except CompileError:
            has = False
        if not has or self._tree is None:
            return None
        fn = self.py_func
        tree = self._tree
        loops = [_regions.loop_of(tree, r) for r in comp.regions]
        held = _distributed.check_regions(fn.__qualname__, fn.__code__.co_filename, tree,
                                          loops, names)
        for reg in comp.regions:
            mine = {p: None for p in reg.params if p in held}
            if mine:
                rcomp = reg.accel._build()
                _distributed.check_call(fn.__qualname__, fn.__code__.co_filename,
                                        reg.accel._tree, reg.accel.analysis,
                                        rcomp.pre is not None, mine, rcomp.gen.plan_reason)
        if comp.python_driver is None:
            comp.python_driver = _regions.python_driver(fn, tree, comp.regions)
        self._dist_drivers[names] = comp.python_driver
        return comp.python_driver

    def _call_express(self, args: tuple[Any, ...]) -> Any:
        """A call with the same distributed arrays, in the same places, at the same
        level as one of the last few: that call's object is asked to run again
        (``reuse`` answers whether they are the very arrays it was made for)
        instead of the arrays' type for a new one; the run itself is the same.
        ``_MISS`` when none applies."""
        # (written out, without generators or helpers: a stencil step that streams
        # its arrays through the caches leaves this path's code and data cold for
        # the next call, where every object it touches costs a cache miss)
        setting = _LEVEL_VAR.get()
        if setting is None:
            setting = config._default_level()
        nargs = len(args)
        for express in self._express:
            if nargs != express.nargs or express.setting is not setting:
                continue
            call = express.call()
            if call is None:
                continue
            for i in express.others:
                if hasattr(type(args[i]), _PROTOCOL):
                    break
            else:
                if len(express.positions) == 1:
                    taken = call.reuse(args[express.positions[0]])
                else:
                    taken = call.reuse(*[args[i] for i in express.positions])
                if not taken:
                    continue
                views = call.views
                items = list(args)
                for i, name in express.places:
                    items[i] = views[name]
                try:
                    return call.finish(self._call_plan(call, tuple(items), {},  # type: ignore
                                                       distributed=True))
                finally:
                    if express.releases:
                        call.release()
        return _MISS

    def _run_distributed(self, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                         names: frozenset[str]) -> R:
        """Steps 3 and 4 of the protocol (see :mod:`._distributed`): the distributed
        arguments *names* replaced by the call's views, the plan run by the call,
        the result finished, the call released."""
        views = call.views
        params = self._params
        args = tuple(views[n] if n in names else a
                     for n, a in zip(params, args, strict=False)) + args[len(params):]
        if kwargs:
            kwargs = {k: views[k] if k in names else v for k, v in kwargs.items()}
        try:
            return call.finish(self._call_plan(call, args, kwargs,  # type: ignore[no-any-return]
                                               distributed=True))
        finally:
            release = getattr(call, "release", None)
            if release is not None:
                release()

    @property
    def _last_plan(self) -> LoopPlan | None:
        """The last plan run, without its arguments (``args`` is empty)."""
        shape, comp = self._last_shape, self._compiled
        if shape is None or comp is None or comp.plan is None:
            return None
        return comp.plan._again(*shape[:3], (), *shape[3:])

    @_last_plan.setter
    def _last_plan(self, value: None) -> None:
        if value is not None:
            raise ValueError("only None can be set: the last plan is what ran")
        self._last_shape = None

    @functools.cached_property
    def _after_loop_reads(self) -> frozenset[str]:
        """Names the code after the loop reads other than to return them (static)."""
        return _distributed.read_after_loop(self._tree, self.analysis.loop_index)

    def _resolve_level(self, setting: config.LevelSetting) -> str:
        """The level this call runs at: ``auto`` resolved for this function."""
        if setting.name != "auto":
            return setting.name
        comp = self._compiled
        if not self.analysis.parallel or comp is None or comp.pre is None:
            if comp is not None and comp.pre is None and self._driver() is not None:
                return _auto_parallel_level() or "serial"  # its inner loops may gain
            return "serial"
        # (at the default level, short loops never get here: the generated
        # __call__ runs them serially until one takes long; inside an explicit
        # level("auto") block every call comes here and is measured by the plan)
        return _auto_parallel_level() or "serial"

    def _fast_mode(self) -> int:
        """How the generated ``__call__`` may skip this slow path at the default
        level: 0 never, 1 always (fused serial), 2 timed (``auto``: fused serial
        until a call is long enough to gain from another level)."""
        if self._convert or self._python_mode or self._serial is None or self.target == "cuda":
            return 0
        default = config._default_level()
        if default.name == "serial" and not default.options:
            return 1
        if default.name != "auto":
            return 0
        comp = self._compiled
        if (comp is not None and comp.pre is None and not self.analysis.parallel
                and _auto_parallel_level() is not None and self._driver() is not None):
            # parallel inner loops: the driver, until a call is short (as below)
            return self._fast if self._fast == 2 else 0
        if (not self.analysis.parallel or comp is None or comp.pre is None
                or comp.no_plan is not None or _auto_parallel_level() is None):
            return 1
        return self._fast if self._fast == 2 else 0

    def _fall_back(self, exc: CompileError, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> R:
        self._python_mode = True
        self._fast = 0
        self._serial = None
        warnings.warn(f"{exc}\n  Running the Python function instead (fallback=True).",
                      FallbackWarning, stacklevel=4)
        return self.py_func(*args, **kwargs)

    def _translate(self, exc: Exception, st: int) -> Exception:
        """The exception to raise for *exc* raised inside compiled code."""
        if isinstance(exc, LoopscaleError):
            return exc
        if isinstance(exc, _NeedsConversion):
            raise exc  # handled by _call_slow
        text = str(exc)
        if text.startswith(_ARG_MARK):
            return ArgumentValueError(text[len(_ARG_MARK):].strip())
        a = self._analysis
        if _TLS.st[1] < 0 or a is None or a.lineno is None:
            return exc
        b0, b1, lo, step = (int(v) for v in _TLS.st)
        return self._located(exc, b0, b1, lo, step)

    def _call_plan(self, executor: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   distributed: bool = False) -> R:
        """Run through the outlined plan with *executor* (the threads/mpi path)."""
        comp = self._build()
        if comp.pre is None:
            # (at the mpi level every rank runs the driver, and each region's
            # call is a replicated call of its own: see _regions.Runner)
            if (not distributed and getattr(executor, "name", None) in ("threads", "mpi")
                    and self._driver() is not None):
                agree = getattr(executor, "agree_inputs", None)
                if agree is not None and getattr(executor, "collective", False):
                    # every rank runs the sequential loop: a scalar that differs by
                    # rank (a step count) would make their later calls differ
                    bound = self.__signature__.bind(*args, **kwargs)
                    bound.apply_defaults()
                    agree(self.py_func.__qualname__, tuple(bound.arguments),
                          tuple(bound.arguments.values()))
                return self._run_driver(comp, args, kwargs)
            return self._run_serial(args, kwargs)
        if comp.no_plan is not None and not distributed:
            return self._run_serial(args, kwargs)
        # what these arguments' types or memory keep in order, before the prologue
        # runs: the payloads' types; a sum into an argument that the fused serial
        # code adds in the loop's order (see _codegen._DirectScatter)
        kind, why = "payload", None
        if self.analysis.reduction_payloads:
            why = self._payload_types(comp, args, kwargs)
        if why is None and self.analysis.scatter_params:
            kind, why = "scatter", self._scatter_in_order(args, kwargs)
        if why is not None:
            if distributed:
                raise self._not_distributed(why)
            if getattr(executor, "name", None) != "serial":
                self._note_serial(kind, why)
            return self._run_serial(args, kwargs)
        failed: CompileError | None = None
        try:
            res = comp.pre(*args, **kwargs)
        except _NeedsConversion:
            self._convert = True
            args, kwargs = self._convert_args(args, kwargs)
            return self._call_plan(executor, args, kwargs, distributed)
        except _EarlyReturnType:
            return self._serial(_state(), *args, **kwargs)  # type: ignore[no-any-return]
        except CompileError as exc:
            # the prologue alone cannot be compiled (its values cannot be returned,
            # say) although the function may: the fused serial code runs it
            if distributed:
                raise
            failed = exc
        except ValueError as exc:
            if str(exc).startswith(_ARG_MARK):
                raise ArgumentValueError(str(exc)[len(_ARG_MARK):].strip()) from None
            raise
        if failed is not None:  # (outside the handler: the serial code's own error,
            # if it has one, must not carry this one as its context)
            return self._plan_failed(comp, failed, args, kwargs, rerun=False)
        lo, step, n, bs, nb = res[:5]
        nred = len(comp.gen.reductions)
        idents, state = res[5:5 + nred], res[5 + nred:]
        key, casters, dtypes = self._plan_types(comp, args, kwargs)
        if any(casters):
            state = tuple(c(v) if c is not None else v
                          for c, v in zip(casters, state, strict=True))
        parts = tuple(_partials(nb, ident, dt) for ident, dt in zip(idents, dtypes,
                                                                     strict=True)) if nred else ()
        kargs = (lo, step, n, bs, *parts, *state)
        if key not in comp.checked:
            # compile the chunk kernel here, in the caller, so that a compile error
            # is reported as such (not as a failure of some chunk on some worker)
            try:
                comp.chunk(0, 0, *kargs)
            except CompileError as exc:
                if distributed or comp.gen.pre_writes:
                    raise
                failed = exc
            if failed is not None:
                return self._plan_failed(comp, failed, args, kwargs, rerun=True)
            comp.checked.add(key)
        limits = self.analysis.ndim_limits
        if limits and (why := self.analysis.beyond_ndim(
                dict(zip(comp.gen.state, state, strict=True)))) is not None:
            # the verdict read `c = a[i]; c += x` as a number; `a` has more
            # dimensions, so `c` is a row updated in place: the loop is sequential
            if distributed:
                raise self._not_distributed(why)
            if getattr(executor, "name", None) != "serial":
                self._note_serial("ndim", why)
                executor = _SERIAL_EXECUTOR
        elif not distributed and getattr(executor, "name", None) != "serial":
            # iterations run in parallel could read what other iterations write:
            # then all blocks in order on this thread, as the serial level
            why = self._overlap(comp, state)
            if why is not None:
                self._note_serial("overlap", f"{why} (pass arrays that do not overlap, "
                                  "e.g. a copy, to run it in parallel)")
                executor = _SERIAL_EXECUTOR
            elif (why := self._not_arrays(comp, state)) is not None:
                self._note_serial("not arrays", why)
                executor = _SERIAL_EXECUTOR
            elif (why := self._wraps(lo, step, n)) is not None:
                self._note_serial("wraps", why)
                executor = _SERIAL_EXECUTOR
            else:
                self._why_serial = None
        proto = comp.plan
        if proto is None:
            proto = comp.plan = LoopPlan(  # (holding no call's arguments)
                function=self.py_func.__qualname__, n=0, block=1, nblocks=0,
                kernel=comp.run_blocks, args=(), calls_blas=self.analysis.calls_blas,
                arg_names=comp.arg_names, has_reductions=bool(self.analysis.reductions),
                arrays=self.analysis.arrays)
        plan = proto._again(n, bs, nb, kargs, lo, step)
        self._last_shape = (n, bs, nb, lo, step)
        t0 = time.perf_counter()
        try:
            executor.run(plan)
        except Exception as exc:
            new = self._chunk_error(comp, exc, plan)
            if new is None:
                raise
            if new[0] is new[1]:  # could not be copied: itself, with a note
                raise new[0]  # noqa: B904 - it is the cause's own exception
            raise new[0] from new[1]
        self._last_run_seconds = time.perf_counter() - t0
        if comp.gen.post_empty:  # (a Numba call saved: a stencil step returns nothing)
            return None  # type: ignore[return-value]
        return comp.post(nb, *parts, *state)  # type: ignore[no-any-return]

    def _run_serial(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """The fused serial code, with an exception in it located as at the serial level."""
        st = _state()
        try:
            return self._serial(st, *args, **kwargs)  # type: ignore[no-any-return]
        except LoopscaleError:
            raise
        except Exception as exc:
            new = self._translate(exc, st)
            if new is exc:
                raise
            raise new from exc

    def _payload_types(self, comp: _Compiled, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> str | None:
        """Why the payloads of a min/max reduction (``if d < best: best = d; idx =
        i``) cannot be held in per-block arrays for these arguments: one is not a
        number (``idx = None``, a tuple, a string) or is an array (``row = X[i]``,
        a view the loop's result would share, and whose shape may change); None
        when all are numbers.  Found from the prologue's types, before it runs."""
        from numba import types as nbt

        pre = comp.pre
        try:
            bound = self.__signature__.bind(*args, **kwargs)
            bound.apply_defaults()
            sig = tuple(pre.typeof_pyval(v) for v in bound.arguments.values())
        except Exception:  # noqa: BLE001 - (converted arguments: the plan decides)
            return None
        if sig in comp.payload_why:
            return comp.payload_why[sig]
        try:
            pre.compile(sig)
            rtype = list(pre.overloads[sig].signature.return_type)
        except Exception:  # noqa: BLE001 - the prologue's own error comes with its call
            return None
        slots = {name: k for k, name in enumerate(comp.gen.reductions)}
        why = None
        for key, pays in self.analysis.reduction_payloads.items():
            for p in pays:
                t = rtype[5 + slots[p]] if p in slots else None
                if t is not None and not isinstance(t, (nbt.Number, nbt.Boolean)):
                    what = ("an array (a view the result would share)"
                            if isinstance(t, nbt.Array) else f"a {t}")
                    why = (f"`{p}`, which follows the {self.analysis.reductions[key]} of "
                           f"`{key}`, holds {what}, not a number: blocks cannot keep "
                           f"their own copy of it (keep the position, e.g. `{p} = i`, and "
                           "index after the loop)")
                    break
            if why:
                break
        comp.payload_why[sig] = why
        return why

    def _plan_failed(self, comp: _Compiled, exc: CompileError, args: tuple[Any, ...],
                     kwargs: dict[str, Any], rerun: bool) -> R:
        """The outlined plan cannot be compiled for these arguments: run the fused
        serial code (which raises the function's own compile error, if it has one)."""
        result = self._run_serial(args, kwargs)
        # the function compiles and ran: only the plan cannot be built
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        first = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()
                      and not ln.startswith(("Failed in", "During:"))), type(cause).__name__)
        comp.no_plan = (f"Numba cannot compile the loop cut into blocks for parallel "
                        f"levels ({first[:200]}), so it runs on one core at every level")
        self._note_serial("plan", comp.no_plan)
        return result

    def _note_serial(self, kind: str, why: str) -> None:
        """Record (for explain()) and warn, once per function and kind, that a call at
        a parallel level ran serially."""
        self._why_serial = why
        if kind not in self._warned_serial:
            self._warned_serial.add(kind)
            warnings.warn(f"{self.py_func.__qualname__}(): this call ran on one core, as at "
                          f"the serial level: {why}.", SerializationWarning,
                          stacklevel=_user_stacklevel())

    def _not_arrays(self, comp: _Compiled, state: tuple[Any, ...]) -> str | None:
        """Why the loop may not be split: what it writes at the loop variable is not
        an array (a typed ``Dict`` or ``List``: threads would insert into it at
        once); None when every such value is an array."""
        roles = self.analysis.arrays
        for nm, v in zip(comp.gen.state, state, strict=True):
            role = roles.get(nm)
            if role is not None and role.written and not isinstance(v, np.ndarray) and not (
                    isinstance(v, tuple) and _holds_arrays(v)):
                return (f"`{nm}` is a {type(v).__name__}, not an array, and the loop writes "
                        "its items: they cannot be shared out among workers (pass an array)")
        return None

    def _not_distributed(self, why: str) -> DistributionError:
        """The error of a call with distributed arrays whose loop must run in order
        for these arguments (*why*)."""
        return DistributionError(
            f"{self.py_func.__qualname__}() ({self.analysis.filename}:"
            f"{self.analysis.lineno}) cannot run on distributed arrays: {why}. "
            "Gather the arrays (distribute.allgather) and call it on NumPy arrays, "
            "where the loop runs in order.")

    def _scatter_in_order(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """Why sums per block into an argument (``counts[b] += w``) would not give
        the loop's answer for this call (None when they would): the array shares
        memory with another argument (the loop may read what it adds), it is an
        integer array that may be given values that are not integers (each
        addition rounds toward zero), or a bool one given more than positive
        counts.  The fused serial code asks the same (``__ls_meets``,
        ``__ls_scatter_in_order``) and then adds into the argument in order."""
        try:
            bound = self.__signature__.bind(*args, **kwargs)
        except TypeError:
            return None  # (the call's own error comes with it)
        values = {k: _to_array(v) for k, v in bound.arguments.items()}
        for h, kind in self.analysis.scatter_params.items():
            arr = values.get(h)
            if not isinstance(arr, np.ndarray):
                if h in values:
                    return (f"`{h}`, which the loop adds into at any index, is a "
                            f"{type(arr).__name__}, not an array: blocks cannot each sum "
                            "into one of their own, so it adds in order (pass a NumPy array "
                            "to run it in parallel)")
                continue
            for other, v in values.items():
                if other != h and _runtime.ls_meets(arr, v):
                    return (f"`{h}`, which the loop adds into at any index, shares memory "
                            f"with `{other}`: the loop may read what it adds, so it adds in "
                            "order (pass arrays that do not overlap, e.g. a copy, to run it "
                            "in parallel)")
            if kind == "count" or not _runtime.ls_scatter_in_order(arr, kind == "any"):
                continue
            if arr.dtype.kind == "b":
                return (f"`{h}` is a bool array, and the loop adds into it at any index "
                        "values other than positive integer constants, whose sums per block "
                        "would not give the loop's answer")
            return (f"`{h}` is an array of dtype {arr.dtype}, and the loop adds into it at "
                    "any index values that may not be integers: each addition rounds "
                    "toward zero, which sums per block would not repeat (pass a float "
                    "array, e.g. np.zeros(m), to run it in parallel)")
        return None

    def _overlap(self, comp: _Compiled, state: tuple[Any, ...]) -> str | None:
        """Why the arrays the loop uses may not be split among workers: one it writes
        shares memory with another one it uses (None when they are apart)."""
        names = comp.gen.loop_state
        arrays = _state_arrays(comp.gen.state, state, names)
        roles = self.analysis.arrays
        for nm, root, a in arrays:
            ra = roles.get(root)
            if ra is not None and not ra.written:
                continue
            if ra is not None and not _apart(a):
                return (f"`{nm}` holds some of its elements more than once (its strides "
                        f"{a.strides} for its shape {a.shape} make different indices reach "
                        "one element), and the loop writes it")
            for other, root_b, b in arrays:
                if other == nm or not _runtime.overlaps(a, b):
                    continue
                rb = roles.get(root_b)
                # the same elements under two names, each touched only at [i]: safe
                if (ra is not None and rb is not None and ra.access == rb.access == "aligned"
                        and ra.axis == rb.axis and _same_view(a, b)):
                    continue
                same = "the same array" if _same_view(a, b) else "overlapping arrays"
                return (f"`{nm}` and `{other}` are {same} (they share memory) and the loop "
                        f"writes `{nm}`" + ("" if same == "overlapping arrays" else
                                            " at other elements than it reads"))
        return None

    def _wraps(self, lo: int, step: int, n: int) -> str | None:
        """Why the iterations may not be split: the loop variable takes negative
        values where it indexes an array the loop writes, and a negative index
        wraps around to the end (as in Python), so two iterations may touch the
        same element (None when every such index is >= 0)."""
        if n <= 0:
            return None
        first, last = lo, lo + (n - 1) * step
        low = min(first, last)
        for name, role in self.analysis.arrays.items():
            if not role.written or role.access == "anywhere" or role.axis is None:
                continue
            offs = role.offsets or (0,)
            floors = role.floors or (None,) * len(offs)
            # an access under a condition that bounds the loop variable counts from it
            reach = [max(low, f) + o if f is not None else low + o
                     for o, f in zip(offs, floors, strict=True)
                     if f is None or f <= max(first, last)]
            if reach and min(reach) < 0:
                off = min(o for o, f in zip(offs, floors, strict=True)
                          if (max(low, f) if f is not None else low) + o < 0)
                var = self.analysis.loop_var or "i"
                at = f"{var} - {-off}" if off < 0 else f"{var} + {off}" if off else var
                return (f"`{name}` is indexed at `{name}[{at}]`, and `{var}` runs from "
                        f"{first} to {last}: a negative "
                        "index wraps around to the end of the array, so two iterations may "
                        "touch the same element (start the loop at an index >= 0 to run it "
                        "in parallel)")
        return None

    def _chunk_error(self, comp: _Compiled, exc: BaseException, plan: LoopPlan
                     ) -> tuple[BaseException, BaseException] | None:
        """The exception to raise for *exc* from a plan run, located as at the
        serial level (the same wording at every level), with its original."""
        seen: set[int] = set()
        e: BaseException | None = exc
        found: BaseException | None = None
        while e is not None and id(e) not in seen:  # the first marked (a located copy
            seen.add(id(e))                          # is not: errors.relocated)
            if getattr(e, "_loopscale_blocks", None) is not None:
                found = e
                break
            e = e.__cause__ or e.__context__
        if found is None:
            return None
        c0, c1 = found._loopscale_blocks  # type: ignore[attr-defined]
        if isinstance(found, LoopscaleError) or not isinstance(found, Exception):
            return None
        k0, k1 = c0 * plan.block, min(c1 * plan.block, plan.n)
        return self._located(found, k0, k1, plan.lo, plan.step), found

    def _located(self, exc: Exception, k0: int, k1: int, lo: int, step: int) -> Exception:
        """*exc* with the iterations ``[k0, k1)`` it was raised in, in one wording."""
        a = self.analysis
        first, last = lo + k0 * step, lo + (k1 - 1) * step
        where = f"{a.filename}:{a.lineno}"
        var = a.loop_var if a.loop_var != _iteration.INDEX else "the items at positions"
        return relocated(exc, f"iterations {k0}..{k1 - 1} of the loop at {where}, "  # type: ignore[return-value]
                              f"{var} from {first} to {last}")

    def _plan_types(self, comp: _Compiled, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> tuple[Any, tuple[Any, ...], tuple[Any, ...]]:
        """From the prologue's Numba signature: casts that give boxed state scalars
        back their exact type, and the dtypes of the reduction partials."""
        pre = comp.pre
        if len(pre.overloads) == 1:
            cres = comp.only_pre  # (iterating the dispatcher's OrderedDict hashes its
            if cres is None:      # keys, Numba types: 1.5 us)
                (cres,) = pre.overloads.values()
                comp.only_pre = cres
        else:
            bound = self.__signature__.bind(*args, **kwargs)
            bound.apply_defaults()
            sig = tuple(pre.typeof_pyval(v) for v in bound.arguments.values())
            cres = pre.overloads[sig]
        key = id(cres)
        found = comp.casters.get(key)
        if found is None:
            from numba import types as nbt
            from numba.np.numpy_support import as_dtype

            rtype = list(cres.signature.return_type)
            nred = len(comp.gen.reductions)
            default = (nbt.float64, nbt.int64, nbt.complex128, nbt.boolean)
            casters = tuple(
                as_dtype(t).type if isinstance(t, (nbt.Float, nbt.Integer, nbt.Complex))
                and t not in default else None for t in rtype[5 + nred:])
            dtypes = tuple(as_dtype(t.dtype if isinstance(t, nbt.Array) else t)
                           for t in rtype[5:5 + nred])
            found = comp.casters[key] = (cres, casters, dtypes)  # holds cres: the id stays its
        return (key, found[1], found[2])

    # -- reporting ---------------------------------------------------------
    def explain(self) -> str:
        """A readable report: the loop found, whether it runs in parallel and why,
        the reductions and the role of each array.

        Returns
        -------
        str
        """
        a = self.analysis
        fn = self.py_func
        lines = [f"{fn.__qualname__}() at {fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"]
        if a.lineno is None:
            lines.append(f"  no parallel loop: {a.reason}")
        else:
            state = "PARALLEL" if a.parallel else "SEQUENTIAL"
            forced = " (prange)" if a.forced else ""
            what = (f"`{a.loop_var}`" if a.loop_var != _iteration.INDEX else
                    "the positions of what it iterates")
            if a.loop_var is None:  # (the function's loop is a while loop)
                lines.append(f"  `while` loop at line {a.lineno}: {state}")
            else:
                lines.append(f"  loop over {what} at line {a.lineno}{forced}: {state}")
            if a.lineno in self._rewritten:
                lines.append("  (its items are read as x[i] for each position i: what it "
                             "iterates is an array)")
            if a.reason:
                lines.append(f"  reason: {a.reason}")
            if a.reductions:
                lines.append("  reductions: " + ", ".join(
                    a.reduction_text(k) for k in a.reductions))
            privates = [p for p in a.privates if p != _iteration.INDEX]
            if privates:
                lines.append("  private to each iteration: " + ", ".join(privates))
            for name, role in a.arrays.items():
                most = a.written_beyond.get(name)
                lines.append(f"  array {name}: {role.describe()}" + (
                    "" if most is None else f" (written only when it has more than {most} "
                    f"dimension{'s' if most != 1 else ''}: an element read into a name and "
                    "updated in place is then a row of it)"))
            for name, (most, why) in a.ndim_limits.items():
                lines.append(f"  assumes `{name}` has at most {most} dimension"
                             f"{'s' if most != 1 else ''} (as its indexing shows); with more, "
                             f"the loop runs sequentially: {why}")
        for line, why in a.other_loops:
            lines.append(f"  other loop at line {line}: {why}")
        if not a.parallel and not self._python_mode and self.target == "cpu":
            try:  # (generates the code, compiles nothing: so before the first call too)
                self._build()
                self._driver()
            except Exception:  # noqa: BLE001 - (the report only)
                pass
            comp = self._compiled
            if comp is not None:
                for reg in comp.regions:
                    lines.append(
                        f"  {'inner loop' if reg.outer >= 0 else 'loop'} over "
                        f"`{reg.accel.analysis.loop_var}` at line {reg.line}: PARALLEL, "
                        + ("inside the sequential loop" if reg.outer >= 0 else
                           "a loop of its own beside the sequential one")
                        + ": at the threads and mpi "
                        "levels (and auto's), each pass runs it on the pool (or deals its "
                        "blocks across the ranks), until a pass shows it too short to "
                        "gain (free variables: "
                        f"{', '.join(reg.params) or 'none'})")
                    ra = reg.accel.analysis
                    if reg.outs:
                        lines.append("    hands back to the function: " + ", ".join(
                            ra.reduction_text(o) if o in ra.reductions else o
                            for o in reg.outs) + " (combined over its blocks in order, "
                            "as at the top level)")
                    for name, role in ra.arrays.items():
                        lines.append(f"    array {name}: {role.describe()}")
                for note in comp.region_notes:
                    lines.append(f"  {note}")
                if comp.driver_why:
                    lines.append(f"  inner loops run inline: the driver did not compile "
                                 f"({comp.driver_why})")
        if self._python_mode:
            lines.append("  runs as plain Python (" + (
                "LOOPSCALE_DISABLE=1" if self._disabled else "fallback after a compile error")
                + ")")
        elif self._compiled is not None:
            gen = self._compiled.gen
            if a.parallel:
                lines.append("  plan: prologue -> chunk kernel over blocks -> epilogue" if
                             gen.pre else f"  plan: none ({gen.plan_reason})")
            if a.parallel:
                why = self._deferral
                lines.append("  float division by zero: " + (
                    "raised at the end of its block (the loop can vectorize)" if why is None
                    else f"raised at once ({why})"))
            vm = _lowering.vector_functions()
            lines.append("  math functions: " + (
                "glibc's vector versions (libmvec, AVX2)" if vm else
                "the C library's scalar versions" + (
                    " (LOOPSCALE_VECTOR_MATH=0)" if not config.vector_math() else
                    " (no libmvec or no AVX2 here)")))
            sigs = ["(" + ", ".join(str(t) for t in sig[1:]) + ")"
                    for sig in self._compiled.serial.signatures]
            if sigs:
                lines.append("  compiled for: " + "; ".join(sigs))
        for w in self.compile_warnings:
            lines.append(f"  numba warned: {w}")
        if "last_cuda_timings" in self.__dict__:
            from ._cuda import format_timings

            cuda_line = format_timings(self.__dict__.get("last_cuda_timings"))
            if cuda_line:
                lines.append(cuda_line)
        plan = self._last_plan
        if plan is not None:
            lines.append(f"  last plan run: {plan.n} iterations in {plan.nblocks} blocks of "
                         f"{plan.block}")
        comp = self._compiled
        if self._why_serial is not None:
            lines.append(f"  last call ran on one core: {self._why_serial}")
        elif comp is not None and comp.no_plan is not None:
            lines.append(f"  parallel levels run it on one core: {comp.no_plan}")
        lines.append(f"  level: {config.current_level().name}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<accelerated function {self.py_func.__qualname__}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by reference, like a function: a worker process imports the
        # module and finds the same decorated object (and its disk cache)
        qualname = self.py_func.__qualname__
        if "<locals>" in qualname:
            raise TypeError(f"cannot pickle {self!r}: it is defined inside a function; define "
                            "it at module level to send it to other processes.")
        return (_lookup_accelerated, (self.py_func.__module__, qualname))

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return types.MethodType(self, obj)

def _auto_parallel_level() -> str | None:
    """The level ``auto`` uses for a parallel loop, or None for serial: ``mpi``
    under a launcher with several ranks, except inside a task of
    ``distribute.map`` (where the other ranks are elsewhere: looked up every
    call, not cached); else ``threads`` on several cores."""
    levels = _auto_levels()
    if levels[0] is not None and config.collectives_allowed():
        return levels[0]
    return levels[1]


@functools.lru_cache(maxsize=1)
def _auto_levels() -> tuple[str | None, str | None]:
    levels = config.installed_levels()
    mpi = "mpi" if "mpi" in levels and config.launcher_world_size() > 1 else None
    threads = "threads" if "threads" in levels and config.usable_cores() > 1 else None
    return mpi, threads


@overload
def accelerate(func: Callable[P, R], /) -> Accelerated[P, R]: ...


@overload
def accelerate(*, target: str = "cpu", fastmath: bool = False, boundscheck: bool = False,
               cache: bool = True, fallback: bool = False
               ) -> Callable[[Callable[P, R]], Accelerated[P, R]]: ...




def accelerate(func: Callable[P, R] | None = None, /, *, target: str = "cpu",
               fastmath: bool = False, boundscheck: bool = False, cache: bool = True,
               fallback: bool = False) -> Any:
    """Compile a numeric Python function, and run its main loop at every level.

    Usable as ``@accelerate`` or ``@accelerate(...)``.  The function's
    top-level ``for ... in range(...)`` loop is analysed: when its iterations
    are independent it is cut into blocks that the level in force runs
    (``serial``: in order on one core; ``threads``, ``mpi``: in parallel), with
    reductions combined in a fixed order so that every level returns the same
    result.  Plain Python helpers the function calls are compiled too.

    Parameters
    ----------
    func : callable
        A function defined with ``def`` whose source is available.
    target : {"cpu", "cuda"}
        Where the compiled code runs.
    fastmath : bool
        Let LLVM reassociate floating-point arithmetic (faster, results may
        differ in the last bits and between levels).
    boundscheck : bool
        Check every index; an out-of-range index raises ``IndexError`` naming
        the iteration range.
    cache : bool
        Cache compiled code on disk under ``LOOPSCALE_CACHE_DIR``.
    fallback : bool
        When the function cannot be compiled, warn once
        (:class:`~loopscale.errors.FallbackWarning`) and run it as Python
        instead of raising :class:`~loopscale.errors.CompileError`.

    Returns
    -------
    Accelerated
        Callable like *func*; ``.py_func`` is *func*, ``.analysis`` the loop
        analysis, ``.explain()`` a report.

    Raises
    ------
    loopscale.errors.UnsupportedFunctionError
        At decoration, for builtins, lambdas, functions without source,
        generators and methods.

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale import accelerate
    >>> @accelerate
    ... def total(x):
    ...     s = 0.0
    ...     for i in range(x.shape[0]):
    ...         s += x[i] * x[i]
    ...     return s
    >>> total(np.arange(4.0))  # doctest: +SKIP
    14.0
    """
    def wrap(f: Callable[P, R]) -> Accelerated[P, R]:
        refuse(f)
        cls = type(Accelerated.__name__, (Accelerated,), {
            "__module__": Accelerated.__module__, "__qualname__": Accelerated.__qualname__})
        inst = cls(f, target=target, fastmath=fastmath, boundscheck=boundscheck,  # type: ignore
                   cache=cache, fallback=fallback)
        # a staticmethod holding the instance in its closure: Python reports a
        # wrong call under f's own name and argument count (see make_call)
        cls.__call__ = staticmethod(make_call(f, inst))  # type: ignore[arg-type,assignment]
        return inst

    if func is None:
        return wrap
    if not callable(func):
        raise TypeError(f"accelerate() takes a function or keyword options; got {func!r}. "
                        "Write @accelerate or @accelerate(fastmath=True).")
    return wrap(func)
