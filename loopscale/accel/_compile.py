"""Turning generated code into Numba dispatchers: names, helpers, cache, errors.

* **Names.**  The generated functions run in a namespace holding exactly the
  globals and closure values the user's function refers to.  Plain Python
  helpers it calls are compiled transitively with ``numba.njit(nogil=True)``
  (each in a copy of its own globals with its helpers replaced), so the user
  decorates only the entry point.

* **Cache.**  Compiled code is cached under ``LOOPSCALE_CACHE_DIR`` through
  Numba's own cache machinery with a locator of ours whose freshness stamp is
  a fingerprint of the generated code, of every helper's code (transitively)
  and of every global constant used: editing a helper invalidates the entry,
  which Numba's file-timestamp stamp would not notice.

* **Errors.**  Numba's errors are rewritten as :class:`CompileError` naming the
  function, the file and line of the construct, what is unsupported and what to
  do instead; Numba's exception is kept as ``__cause__``.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import os
import re
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from numba.core import errors as nb_errors
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator

from .. import config
from ..errors import CompileError
from . import _codegen, _lowering, _runtime
from ._astutil import closure_values
from ._model import NP_EXTREMA

__all__ = ["build_namespace", "fingerprint", "make_dispatcher", "compile_error"]

def _code_salt() -> str:
    """A digest of the modules that decide what compiled code is (generation,
    lowering, run-time intrinsics, this one): an entry written by another
    version of them is never loaded, though its cache key is otherwise the same
    (a lowering rule fixed since would not apply to it)."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("_codegen.py", "_lowering.py", "_runtime.py", "_compile.py", "_analysis.py",
                 "_loopcheck.py"):
        try:
            with open(os.path.join(here, name), "rb") as fh:
                h.update(fh.read())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:16]


_VERSION_SALT = (f"loopscale-0.1/{_code_salt()}/numba-{numba.__version__}/"
                 f"py{sys.version_info[:2]}")


# ---------------------------------------------------------------------------
# fingerprints


def fingerprint(value: Any, _memo: dict[int, str] | None = None) -> str:
    """A stable text fingerprint of a global value, for the cache key."""
    memo = {} if _memo is None else _memo
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = "<recursive>"
    if isinstance(value, types.ModuleType):
        out = f"module:{value.__name__}"
    elif isinstance(value, (bool, int, float, complex, str, bytes, type(None))):
        out = f"{type(value).__name__}:{value!r}"
    elif isinstance(value, (tuple, list, frozenset)):
        out = f"{type(value).__name__}(" + ",".join(fingerprint(v, memo) for v in value) + ")"
    elif isinstance(value, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(value).view(np.uint8).ravel()).hexdigest()
        out = f"array:{value.dtype}:{value.shape}:{digest}"
    elif isinstance(value, np.generic):
        out = f"npscalar:{value.dtype}:{value!r}"
    elif isinstance(value, types.FunctionType):
        out = "func:" + _code_fingerprint(value.__code__, value.__globals__, memo)
        if value.__defaults__ or value.__kwdefaults__:  # (compiled in: `scale=2.0`)
            out += "|defaults:" + fingerprint(value.__defaults__, memo) + fingerprint(
                tuple(sorted((value.__kwdefaults__ or {}).items())), memo)
        if value.__closure__:
            cells = []
            for cell in value.__closure__:
                try:
                    cells.append(fingerprint(cell.cell_contents, memo))
                except ValueError:
                    cells.append("<empty>")
            out += "|" + ",".join(cells)
    elif hasattr(value, "py_func") and isinstance(value.py_func, types.FunctionType):
        out = f"{type(value).__name__}:" + fingerprint(value.py_func, memo)
    elif isinstance(value, type):
        out = f"type:{value.__module__}.{value.__qualname__}"
    else:
        text = repr(value)
        if " at 0x" in text or len(text) > 200:
            text = f"{type(value).__module__}.{type(value).__qualname__}"
        out = f"obj:{text}"
    memo[key] = out
    return out


def _code_fingerprint(code: types.CodeType, globs: dict[str, Any], memo: dict[int, str]) -> str:
    h = hashlib.sha1()
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            h.update(_code_fingerprint(const, globs, memo).encode())
        else:
            h.update(repr(const).encode())
    for name in code.co_names:
        if name in globs:
            h.update(f"{name}={fingerprint(globs[name], memo)}".encode())
            for attr, text in module_attributes(globs[name], _all_names(code), memo):
                h.update(f"{name}.{attr}={text}".encode())
    return h.hexdigest()


def module_attributes(value: Any, names: set[str], memo: dict[int, str],
                      depth: int = 2) -> list[tuple[str, str]]:
    """The fingerprints of the attributes of *value*, a user's module, that code
    naming *names* may read (``params.DT``, ``mathutil.clip01``,
    ``config.grid.N``): compiled code takes them as constants, so an edit to
    the module must change the cache key.  Empty for anything else."""
    if not isinstance(value, types.ModuleType) or not user_module(value):
        return []
    found = []
    for attr in sorted(names):
        if attr.startswith("__") or attr not in vars(value):
            continue
        item = vars(value)[attr]
        found.append((attr, fingerprint(item, memo)))
        if depth > 1:
            found += [(f"{attr}.{sub}", text)
                      for sub, text in module_attributes(item, names, memo, depth - 1)]
    return found


# ---------------------------------------------------------------------------
# names and helpers


def _numba_knows(value: Any) -> bool:
    from numba.core.registry import cpu_target

    try:
        cpu_target.typing_context.resolve_value_type(value)
    except Exception:
        return False
    return True


class HelperCompiler:
    """Compiles plain Python helpers reachable from a kernel, once each."""

    def __init__(self, options: dict[str, Any], accelerated_type: type) -> None:
        self.options = options
        self.accelerated_type = accelerated_type
        self.memo: dict[int, Any] = {}

    def convert(self, value: Any) -> Any:
        """What a global *value* becomes inside compiled code."""
        if isinstance(value, types.ModuleType) and user_module(value):
            return self.module(value)
        if isinstance(value, self.accelerated_type):
            value = value.py_func
        if isinstance(value, numba.core.dispatcher.Dispatcher):
            return value
        if isinstance(value, types.FunctionType):
            if _numba_knows(value):
                return value
            return self.helper(value)
        return value

    def module(self, mod: types.ModuleType) -> types.ModuleType:
        """A stand-in for the user's module *mod* (``import mathutil``, then
        ``mathutil.clip01(x[i])``): its attributes, each as :meth:`convert` makes
        it, on first use (Numba looks a module's attributes up when it types
        ``mathutil.clip01``, and cannot call a plain Python function)."""
        key = id(mod)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = _HelperModule(mod, self)
        return found  # type: ignore[no-any-return]

    def jit(self, func: types.FunctionType) -> Any:
        """Compile one helper (a subclass compiles for another target)."""
        return numba.njit(nogil=True, **self.options)(func)

    def helper(self, func: types.FunctionType) -> Any:
        key = id(func)
        if key in self.memo:
            return self.memo[key]
        new_globals = dict(func.__globals__)
        clone = types.FunctionType(func.__code__, new_globals, func.__name__,
                                   func.__defaults__, func.__closure__)
        clone.__kwdefaults__ = func.__kwdefaults__
        clone.__qualname__ = func.__qualname__
        clone.__module__ = func.__module__
        clone.__doc__ = func.__doc__
        disp = self.jit(clone)
        self.memo[key] = disp
        for name in _all_names(func.__code__):
            if name in new_globals:
                new_globals[name] = self.convert(new_globals[name])
        return disp


#: Modules whose attributes Numba types itself (its typing keys on them): never
#: stood in for.
_LIBRARIES = frozenset({"numpy", "numba", "math", "cmath", "random", "operator", "builtins",
                        "scipy", "llvmlite", "loopscale", "cffi", "ctypes"})


def user_module(mod: types.ModuleType) -> bool:
    """Whether *mod* is the user's own (its plain functions are helpers to compile)."""
    return mod.__name__.split(".")[0] not in _LIBRARIES


class _HelperModule(types.ModuleType):
    """See :meth:`HelperCompiler.module`."""

    def __init__(self, mod: types.ModuleType, compiler: HelperCompiler) -> None:
        super().__init__(mod.__name__, mod.__doc__)
        self.__dict__["_ls_mod"] = mod
        self.__dict__["_ls_compiler"] = compiler

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_ls_"):
            raise AttributeError(name)
        value = self.__dict__["_ls_compiler"].convert(getattr(self.__dict__["_ls_mod"], name))
        self.__dict__[name] = value
        return value


def _all_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _all_names(const)
    return names


def build_namespace(func: types.FunctionType, loaded: set[str],
                    helpers: HelperCompiler) -> tuple[dict[str, Any], str]:
    """Namespace for the generated module, and the fingerprint of what it holds."""
    ns: dict[str, Any] = {"__builtins__": builtins, "__name__": func.__module__}
    closure: dict[str, Any] = closure_values(func)
    memo: dict[int, str] = {}
    prints = []
    for name in sorted(loaded):
        if name in closure:
            value = closure[name]
        elif name in func.__globals__:
            value = func.__globals__[name]
        else:
            continue  # a builtin or a local
        ns[name] = helpers.convert(value)
        prints.append(f"{name}={fingerprint(value, memo)}")
        # (what the code reads of a module of the user's as attributes:
        # `mathutil.clip01`, `params.DT`)
        prints += [f"{name}.{attr}={text}" for attr, text in
                   module_attributes(value, _all_names(func.__code__), memo)]
    ns.update({
        "__ls_zero": _runtime.ls_zero_i,
        "__ls_one": _runtime.ls_one_i,
        "__ls_no_bits": _runtime.ls_no_bits,
        "__ls_all_bits": _runtime.ls_all_bits,
        "__ls_put": _runtime.ls_put,
        "__ls_nonneg": _runtime.ls_nonneg,
        "__ls_min_top": _runtime.ls_min_top,
        "__ls_max_top": _runtime.ls_max_top,
        "__ls_np_top": _runtime.ls_np_top,
        "__ls_int": _runtime.ls_range_int,
        "__ls_len0": _runtime.ls_len0,
        "__ls_dim": _runtime.ls_dim,
        "__ls_meets": _runtime.ls_meets,
        "__ls_not_array": _runtime.ls_not_array,
        "__ls_scatter_zero": _runtime.ls_scatter_zero,
        "__ls_scatter_add": _runtime.ls_scatter_add,
        "__ls_scatter_size": _runtime.ls_scatter_size,
        "__ls_scatter_in_order": _runtime.ls_scatter_in_order,
        "__ls_seqlen": _runtime.ls_seqlen,
        "__ls_fmt": _runtime.ls_fmt,
        "__ls_pow": _runtime.ls_pow,
        "__ls_EarlyReturn": _runtime.EarlyReturn,
        "__ls_zdiv": _lowering.ls_zdiv_pending,
    })
    ns.update({f"__ls_np_{k}": getattr(np, k) for k in NP_EXTREMA})  # (see _codegen)
    ns.update(_codegen.defaults(func))
    return ns, "\n".join(prints)


# ---------------------------------------------------------------------------
# the on-disk cache


class _Locator(_CacheLocator):
    """Puts a generated function's cache under ``LOOPSCALE_CACHE_DIR``, keyed by
    the fingerprint of everything it was generated from."""

    def __init__(self, py_func: types.FunctionType, py_file: str) -> None:
        self._py_file = py_file
        self._key: str = py_func.__loopscale_key__  # type: ignore[attr-defined]
        sub = self.get_suitable_cache_subpath(py_file)
        self._cache_path = os.path.join(config.cache_dir(), "numba", sub)

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return self._key

    def get_disambiguator(self) -> str:
        return self._key[:16]

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> _Locator | None:
        if not hasattr(py_func, "__loopscale_key__"):
            return None
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            return None
        return self


class _CacheImpl(CompileResultCacheImpl):
    _locator_classes = [_Locator]


@functools.cache
def _register_runtime_symbols() -> None:
    """Make the runtime's C functions (``NRT_*``) resolvable by loaded object code.

    This is the part of ``rtsys.initialize`` that loading needs; the rest of it
    compiles the runtime's LLVM functions (about 20 ms), which are only linked
    into code compiled from now on, and which a compile does first anyway.
    """
    import llvmlite.binding as ll
    from numba.core.runtime import _nrt_python

    for py_name, address in _nrt_python.c_helpers.items():
        ll.add_symbol(py_name if py_name.startswith("_") else "NRT_" + py_name, address)


class _FunctionCache(FunctionCache):
    """Numba's function cache, loading without the target's full refresh.

    Numba's ``load_overload`` first refreshes the target context: it imports
    and installs every lowering and typing registry (and, through
    ``numba.np.linalg``, SciPy when it is installed), 150 ms to 400 ms in a new
    process, although rebuilding a cached entry needs none of it: the entry is
    object code, with the runtime's LLVM functions linked in, that calls only the
    runtime's C functions (``NRT_*``) and the C helpers, and registering those
    is all that is done here.  Any compilation still refreshes the context
    first (``numba.core.compiler.compile_extra`` does), so a cache miss, a
    second signature or a nested compile behaves as before.
    """

    _impl_class = _CacheImpl

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        _register_runtime_symbols()
        _lowering.vector_functions()  # loads libmvec, which the cached code may call
        with self._guard_against_spurious_io_errors():
            try:
                return self._load_overload(sig, target_context)
            except ImportError:
                # the entry's environment names a module this process cannot
                # import (a file loaded with importlib under a name that is
                # not in sys.modules): compile instead, as for a miss
                return None


def make_dispatcher(pyfunc: types.FunctionType, key: str, options: dict[str, Any],
                    cache: bool) -> Any:
    """A nogil Numba dispatcher for a generated function, cached on disk if asked."""
    disp = numba.njit(nogil=True, **options)(pyfunc)
    if cache:
        pyfunc.__loopscale_key__ = key  # type: ignore[attr-defined]
        try:
            disp._cache = _FunctionCache(pyfunc)
        except RuntimeError:
            pass  # no writable cache directory: compile in memory
    return disp


def refusal_file(key: str) -> str:
    """Where the verdict that a function cannot defer its divisions is kept
    (so that a second process does not compile the refused build again)."""
    return os.path.join(config.cache_dir(), "deferral", key[:40] + ".refused")


def read_refusal(key: str) -> str | None:
    try:
        with open(refusal_file(key), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def write_refusal(key: str, reason: str) -> None:
    path = refusal_file(key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(reason)
        os.replace(tmp, path)
    except OSError:
        pass  # no writable cache: the next process finds out again


def cache_key(*parts: str) -> str:
    h = hashlib.sha256(_VERSION_SALT.encode())
    for p in parts:
        h.update(b"\0")
        h.update(p.encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# errors

_LOC_RE = re.compile(r'File "([^"]+)", line (\d+)|'
                     r'\b(?:at|Raised from) (/[^\s()]+|[\w.-]+\.py) \((\d+)\)')
_ADVICE: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"loopscale-range-bound: (the range\(\) bound `.*?` is [^\n]*?), not an "
                r"integer"),
     "{0}, not an integer (Python raises TypeError: the object cannot be interpreted "
     "as an integer)",
     "make the bound an integer: use `//` (floor division) instead of `/`, or wrap it in "
     "int(...)"),
    (re.compile(r"lowering \"\S+ = build_map\(|lowering \"\S+ = build_list\("),
     "a dict or list literal mixing value types",
     "give a container one key type and one value type (or use NumPy arrays, one per "
     "field)"),
    (re.compile(r"unhashable type: 'list'"),
     "a list literal mixing value types, which compiled code cannot return or hand on",
     "give the list one element type, or use a tuple"),
    (re.compile(r"NameError: name '([^']+)' is not defined"),
     "the name `{0}` is not defined (not an argument, a local, nor a name of the function's "
     "module when it compiled)",
     "define it at module level (or import it) before the first call, or pass it in as an "
     "argument"),
    (re.compile(r"failed to unpack ([^\n]+)"),
     "unpacking a {0} into several names, which only a tuple or a row of an array can be",
     "check the value unpacked (`a, b = x[i]` needs `x` 2-D, or a tuple), or index it "
     "instead (`a = v[0]`)"),
    (re.compile(r"Untyped global name '([^']+)'"),
     "the name `{0}` refers to an object Numba cannot compile",
     "call only NumPy/math functions and plain Python helpers on numbers and arrays, or pass "
     "the value in as an argument"),
    (re.compile(r"Unknown attribute '([^']+)' of type ([^\n]+)"),
     "the attribute `{0}` is not available on {1}",
     "use NumPy arrays and numbers inside the loop; move object or pandas work outside the "
     "decorated function"),
    (re.compile(r"[Cc]annot (?:determine Numba type of|type) [^\n]*?(dict|list|set|str)"),
     "a Python {0} holding mixed or object values",
     "use a NumPy array (or a numba.typed.Dict/List of one value type) instead"),
    (re.compile(r"non-precise type (\w+)"),
     "a value whose type Numba cannot infer ({0}), such as a dict or list of mixed types",
     "use NumPy arrays or containers holding one type"),
    (re.compile(r"(?:Use of unsupported opcode|unsupported opcode) \(?(?:IMPORT_NAME|"
                r"IMPORT_FROM)"),
     "an `import` statement inside the function",
     "import the module at the top of the file (module level); the compiled function uses "
     "it from there"),
    (re.compile(r"(?:Use of unsupported opcode|unsupported opcode) \(?([A-Z_]+)"),
     "a Python construct Numba does not support (opcode {0}: try/except of specific "
     "exceptions, with-statements, generators...)",
     "move that construct out of the decorated function"),
    (re.compile(r"Unsupported constraint encountered: raise ([^\n]+)|"
                r"Exception matching is limited to"),
     "catching specific exception types inside compiled code",
     "check the condition explicitly (e.g. with an if) instead of try/except, or move it out"),
    (re.compile(r"Cannot modify readonly array|setitem\(readonly array"),
     "writing to a read-only array (pandas' to_numpy() gives one under copy-on-write)",
     "pass a writable NumPy array (np.array(x) makes a writable copy)"),
    (re.compile(r">>> [gs]etitem\((?:readonly )?array\([^)]*\), (float\d+|UniTuple\(float\d+"
                r"[^)]*\))[,)]"),
     "indexing an array with a float ({0}): an index array of floats (np.floor gives "
     "floats), or an index computed with `/`",
     "make the index an integer: idx.astype(np.int64) for an index array, `//` instead of "
     "`/`, or int(...)"),
    (re.compile(r">>> setitem\(array\(((?:float|int|uint)\d+|bool)[^)]*\), [^\n]*, "
                r"(complex\d+)\)"),
     "storing a {1} value in an array of {0}",
     "make the output complex (np.empty(n, dtype=np.complex128)), or store the part you "
     "mean (z.real, abs(z))"),
    (re.compile(r">>> (add|sub|mul|truediv|floordiv|pow|mod|iadd|isub|imul|itruediv)"
                r"\([^\n]*unicode_type"),
     "arithmetic (`{0}`) with a string: a number given as str ('2.0', read from the command "
     "line or a file)",
     "convert it before the call: float(a) or int(a)"),
    (re.compile(r"No implementation of function Function\(<(?:built-in function|function|class|"
                r"intrinsic|ufunc)? ?'?([\w.]+)'?[^\n]*\) found for "
                r"signature:[\s\S]*?unexpected keyword argument '(\w+)'"),
     "calling `{0}` with the keyword `{1}`, which Numba's version of `{0}` does not take",
     "leave the keyword out if its default does what you need, or compute it outside the "
     "decorated function"),
    (re.compile(r"No implementation of function Function\(<(?:built-in function|function|class|"
                r"intrinsic|ufunc)? ?'?([\w.]+)'?[^\n]*\) found for "
                r"signature:\s*\n\s*>>> ([^\n]+)"),
     "calling `{0}` with arguments ({1}), which Numba does not support",
     "call it with NumPy arrays and numbers of the supported types, or compute it outside "
     "the decorated function"),
    (re.compile(r"readonly array"),
     "writing to a read-only array",
     "pass a writable NumPy array (np.array(x) makes a writable copy)"),
    (re.compile(r"Cannot unify ([^\n]+)"),
     "a variable that takes incompatible types ({0})",
     "give each variable one type (for example initialise floats with 0.0, not 0)"),
]


def _user_location(text: str, func: types.FunctionType) -> tuple[str, int | None]:
    fallback = (func.__code__.co_filename, func.__code__.co_firstlineno)
    found = [(a or c, int(b or d)) for a, b, c, d in _LOC_RE.findall(text)]
    own = func.__code__.co_filename
    found = [(own if os.path.basename(f) == os.path.basename(own) else f, n) for f, n in found]
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    numba_dir = os.path.dirname(numba.__file__)
    user = [(f, n) for f, n in found
            if not os.path.abspath(f).startswith((pkg, numba_dir)) and not f.startswith("<")]
    if user:
        return user[0]  # Numba reports the innermost frame first (a helper's construct)
    return fallback


def _name_line(func: types.FunctionType, name: str) -> int | None:
    """The first line of *func* that reads the name *name* (None: not found)."""
    import ast
    import inspect
    import textwrap

    try:
        lines, start = inspect.getsourcelines(func)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    found = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name
             and isinstance(n.ctx, ast.Load)]
    return min(found) + start - 1 if found else None


def compile_error(exc: BaseException, func: types.FunctionType,
                  called_with: str = "") -> CompileError:
    """A :class:`CompileError` for Numba's *exc* raised compiling *func*;
    *called_with* describes the arguments of the call (see :func:`describe_args`)."""
    text = str(exc)
    filename, lineno = _user_location(text, func)
    what, fix = "a construct Numba cannot compile in nopython mode", (
        "rewrite it with NumPy arrays, numbers and supported NumPy/math calls, or use "
        "@accelerate(fallback=True) to run the Python function instead")
    outer_call = text.find("No implementation of function")
    for pattern, w, f in _ADVICE:
        m = pattern.search(text)
        if m and w.startswith("the attribute") and 0 <= outer_call < m.start():
            continue  # (inside Numba's version of a function the code calls: name the call)
        if m:
            what, fix = w.format(*[g for g in m.groups() if g is not None]), f
            if "name `" in w and lineno == func.__code__.co_firstlineno:
                # Numba placed it at the function: the line that uses the name
                lineno = _name_line(func, m.group(1)) or lineno
            break
    snippet = ""
    if lineno:
        import linecache

        src = linecache.getline(filename, lineno).strip()
        if src:
            snippet = f"\n    {lineno} | {src}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()
                  and not ln.startswith(("Failed in", "During:"))), "")
    msg = (f"cannot compile {func.__qualname__!s}() — {filename}:{lineno}: {what}.{snippet}\n"
           + (f"  Called with: {called_with}\n" if called_with else "")
           + f"  Numba said: {first[:300]}\n"
           f"  What to do: {fix}.")
    return CompileError(msg, function=func.__qualname__, filename=filename, lineno=lineno)


def describe_args(names: Sequence[str], values: Sequence[Any]) -> str:
    """``x: 3-D float64 array, n: None``: each argument and what it is, as the
    compiled code sees it (so that a wrong one shows)."""
    parts = []
    for name, v in zip(names, values, strict=False):
        if isinstance(v, np.ndarray):
            what = f"{v.ndim}-D {v.dtype} array"
        elif v is None or isinstance(v, (bool, int, float, complex, np.generic)):
            what = f"{type(v).__name__} {v!r}"[:60] if v is not None else "None"
        else:
            try:
                what = str(numba.typeof(v))
            except Exception:  # noqa: BLE001 - what Numba cannot type
                what = type(v).__name__
        parts.append(f"{name}: {what}")
    return ", ".join(parts)


def is_numba_compile_error(exc: BaseException) -> bool:
    return isinstance(exc, nb_errors.NumbaError)


def numba_options(fastmath: bool, boundscheck: bool) -> dict[str, Any]:
    return {"fastmath": fastmath, "boundscheck": boundscheck}


Converter = Callable[[Any], Any]
