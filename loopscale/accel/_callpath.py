"""The call path: what runs between ``f(...)`` and the compiled code.

A decorated function gets a ``__call__`` generated with its own signature
(:func:`make_call`): at the default level it checks the level, the mode and
that each argument's type has been screened (:func:`screen_args`), and calls
the fused serial code directly, passing the address of this thread's error-state
slots (where the compiled loop notes the block it is in, so that an exception
can name its iterations).  Everything else goes to ``Accelerated._call_slow``.
Arguments that compiled code cannot take as they are (pandas objects, lists
of numbers) are converted here.
"""

from __future__ import annotations

import array
import inspect
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import config
from ..errors import ArgumentError

__all__ = ["make_call", "screen_args", "SCREENED", "AUTO_SECONDS", "PROBE_SECONDS",
           "PROBE_SHAPES", "state_address"]

_TLS = threading.local()
_ARG_MARK = "loopscale-argument:"


def _new_state() -> int:
    """This thread's error-state slots: [block start, block stop, lo, step]."""
    st = _TLS.st = np.full(4, -1, dtype=np.int64)
    _TLS.addr = st.ctypes.data
    return _TLS.addr  # type: ignore[no-any-return]


def _state() -> int:
    try:
        return _TLS.addr  # type: ignore[no-any-return]
    except AttributeError:
        return _new_state()


def _partials(nblocks: int, identity: Any, dtype: Any) -> np.ndarray:
    """One reduction partial per block, for a scalar or an array accumulator."""
    if isinstance(identity, np.ndarray):
        return np.empty((nblocks,) + identity.shape, dtype)
    return np.empty(nblocks, dtype)


def _lookup_accelerated(module: str, qualname: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _NeedsConversion(Exception):
    """Internal: an argument (a pandas object, a list) must become an array first."""


def _is_pandas(value: Any) -> bool:
    mod = type(value).__module__
    return (mod == "pandas" or mod.startswith("pandas.")) and hasattr(value, "to_numpy")


def _to_array(value: Any) -> Any:
    if _is_pandas(value):
        return value.to_numpy()
    if isinstance(value, _BUFFERS):
        return np.asarray(value)  # (a view: writes reach the buffer)
    return value


#: Python containers taken as the arrays they make (lists) or view (buffers).
_BUFFERS = (list, memoryview, bytearray, array.array)

#: Argument types the generated ``__call__`` hands to compiled code without a
#: look: every type but the subclasses of ``numpy.ndarray`` that compiled code
#: would read as plain arrays, dropping what they mean (a mask, matrix
#: indexing, units).  Numba's dispatcher takes any such subclass as a plain
#: array once a signature is compiled, so the check cannot be left to it.
#: Types are added on their first pass through :func:`screen_args`.
SCREENED: set[type] = {np.ndarray, np.memmap, np.recarray, float, int, bool, complex,
                       tuple, str, type(None), np.float64, np.float32, np.int64, np.int32}


def screen_args(names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any],
                func: Any) -> None:
    """Refuse an ``ndarray`` subclass whose meaning compiled code would drop.

    ``numpy.memmap`` and ``numpy.recarray`` are arrays to compiled code as they
    are to NumPy; a ``numpy.ma.MaskedArray`` (its mask), a ``numpy.matrix``
    (``m[i]`` is a 1 x n matrix) or another subclass (units, metadata) would be
    read as its bare data, and the answer would differ from Python's.
    """
    for name, value in (*zip(names, args, strict=False), *kwargs.items()):
        tp = type(value)
        if tp in SCREENED:
            continue
        if not isinstance(value, np.ndarray) or issubclass(tp, (np.memmap, np.recarray)):
            if len(SCREENED) < 4096:
                SCREENED.add(tp)
            continue
        code = func.__code__
        where = f"{func.__qualname__}() ({code.co_filename}:{code.co_firstlineno})"
        if isinstance(value, np.ma.MaskedArray):
            what = ("a numpy.ma.MaskedArray: compiled code would read its masked entries "
                    "as numbers and ignore the mask, so the answer would differ from "
                    f"Python's. Pass {name}.filled(<value>) to give the masked entries a "
                    f"value (np.nan for floats), or {name}.data and {name}.mask as two "
                    "arrays and test the mask in the loop")
        elif isinstance(value, np.matrix):
            what = (f"a numpy.matrix: in Python `{name}[i]` is a 1 x n matrix and "
                    "products are matrix products, while compiled code reads it as a "
                    "plain 2-D array, so the answers could differ. Pass "
                    f"np.asarray({name})")
        else:
            what = (f"of type {tp.__module__}.{tp.__qualname__}, a subclass of numpy.ndarray: "
                    "compiled code sees only its data and returns plain arrays, dropping "
                    "what the subclass adds (units, metadata, its own indexing), so the "
                    f"answer could differ from Python's. Pass np.asarray({name}) and wrap "
                    "the result yourself")
        raise ArgumentError(f"argument {name!r} of {where} is {what}.")


_LEVEL_VAR = config._LEVEL



#: At level ``auto``, a parallel loop whose serial run takes less than this runs
#: serially: below it, waking threads costs more than it saves.
AUTO_SECONDS = 200e-6

#: ... and a parallel run shorter than this, whose time x workers says nothing
#: (mostly waking the workers), is followed by one timed serial run of the same
#: shape, for up to :data:`PROBE_SHAPES` shapes per function.
PROBE_SECONDS = 2e-3
PROBE_SHAPES = 8


def make_call(func: types.FunctionType, owner: Any) -> Callable[..., Any]:
    """A ``__call__`` with *func*'s exact signature that calls the fused code directly.

    It is installed as a ``staticmethod`` of *owner*'s own class and finds
    *owner* in its closure: a wrong call (a missing, extra or unknown argument)
    is then reported by Python exactly as for *func* itself
    (``saxpy() takes 4 positional arguments but 5 were given``), under *func*'s
    name, and the call costs no more than a method's.
    """
    sig = inspect.signature(func)
    ns: dict[str, Any] = {"_LV": _LEVEL_VAR.get, "_TLS": _TLS, "_new_state": _new_state,
                          "_pc": time.perf_counter, "_AUTO": AUTO_SECONDS, "_SC": SCREENED}
    params, pos, kw, plain = [], [], [], []
    varargs = None
    seen_kwonly = False
    last_posonly = None
    for i, (name, p) in enumerate(sig.parameters.items()):
        default = ""
        if p.default is not inspect.Parameter.empty:
            ns[f"__ls_d{i}"] = p.default
            default = f"=__ls_d{i}"
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            plain.append(name)
        if p.kind is p.POSITIONAL_ONLY:
            params.append(name + default)
            last_posonly = len(params)
            pos.append(name)
        elif p.kind is p.POSITIONAL_OR_KEYWORD:
            params.append(name + default)
            pos.append(name)
        elif p.kind is p.VAR_POSITIONAL:
            varargs = name
            params.append("*" + name)
            pos.append("*" + name)
            seen_kwonly = True
        elif p.kind is p.KEYWORD_ONLY:
            if not seen_kwonly:
                params.append("*")
                seen_kwonly = True
            params.append(name + default)
            kw.append(f"{name}={name}")
        else:
            params.append("**" + name)
            kw.append("**" + name)
    if last_posonly is not None:
        params.insert(last_posonly, "/")
    call = ", ".join(pos + kw)
    tup = "(" + "".join(f"{a}, " for a in pos) + ")"
    dct = "dict(" + ", ".join(kw) + ")"
    # (a type seen for the first time goes the slow way, through screen_args)
    screen = "".join(f" and type({n}) in _SC" for n in plain) + (
        f" and all(type(__ls_v) in _SC for __ls_v in {varargs})" if varargs else "")
    src = f"""
def __ls_make(__ls_self):
  def __call__({", ".join(params)}):
      __ls_m = __ls_self._fast
      if __ls_m and _LV() is None{screen}:
          try:
              __ls_st = _TLS.addr
          except AttributeError:
              __ls_st = _new_state()
          if __ls_m == 1:
              try:
                  return __ls_self._serial(__ls_st{", " if call else ""}{call})
              except Exception as __ls_exc:
                  return __ls_self._after_error(__ls_exc, {tup}, {dct})
          __ls_t = _pc()
          try:
              __ls_r = __ls_self._serial(__ls_st{", " if call else ""}{call})
          except Exception as __ls_exc:
              return __ls_self._after_error(__ls_exc, {tup}, {dct})
          if _pc() - __ls_t > _AUTO:
              __ls_self._fast = 0
          return __ls_r
      return __ls_self._call_slow({tup}, {dct})
  return __call__
"""
    exec(compile(src, f"<loopscale call wrapper of {func.__qualname__}>", "exec"), ns)
    call = ns["__ls_make"](owner)
    # Python names the function in a wrong call's TypeError by its __qualname__
    # (3.11+) or its code object's name: both become the user's own
    code = call.__code__.replace(co_name=func.__name__)
    if hasattr(code, "co_qualname"):
        code = code.replace(co_qualname=func.__qualname__)
    call.__code__ = code
    call.__name__ = func.__name__
    call.__qualname__ = func.__qualname__
    call.__module__ = func.__module__
    return call  # type: ignore[no-any-return]


state_address = _state
