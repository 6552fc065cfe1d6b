"""Capturing arguments: copies of the small ones, a description of all.

The first time the sampler sees a function defined in user code, it reads
its parameters from the frame (:func:`capture_args`): small values are copied
(arrays up to :data:`COPY_LIMIT` bytes, numbers, strings, small containers,
small pandas objects), the others are described by type (:func:`describe`).
The verdict step compiles the function for these arguments.
"""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Any

from ._frames import _qualname
from ._session import Capture

__all__ = ["COPY_LIMIT", "capture_args", "copy_small", "describe"]

#: Arrays and pandas objects up to this many bytes are copied when captured.
COPY_LIMIT = 16 * 1024 * 1024


def describe(value: Any) -> str:
    """A short description of *value*'s type (``float64[:, :]``, ``dict``...)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return f"{value.dtype}[{', '.join(':' * value.ndim)}]"
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


_SCALARS = (type(None), bool, int, float, complex)


def copy_small(value: Any, budget: int = COPY_LIMIT) -> tuple[bool, Any]:
    """``(True, copy)`` when *value* is small and plain enough to copy, else ``(False, None)``."""
    if isinstance(value, _SCALARS):
        return True, value
    if isinstance(value, (str, bytes)):
        return (True, value) if len(value) <= budget else (False, None)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject or value.nbytes > budget:
                return False, None
            return True, value.copy()
        if isinstance(value, np.generic):
            return True, value
    if isinstance(value, (tuple, list)) and len(value) <= 10_000:
        items = []
        for item in value:
            ok, copied = copy_small(item, budget)
            if not ok:
                return False, None
            items.append(copied)
        return True, type(value)(items) if isinstance(value, list) else tuple(items)
    if isinstance(value, dict) and len(value) <= 10_000:
        out = {}
        for key, item in value.items():
            ok_k, k = copy_small(key, budget)
            ok_v, v = copy_small(item, budget)
            if not (ok_k and ok_v):
                return False, None
            out[k] = v
        return True, out
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        try:
            size = int(value.memory_usage(deep=True).sum()) if isinstance(
                value, pd.DataFrame) else int(value.memory_usage(deep=True))
        except Exception:  # noqa: BLE001 - an odd extension dtype: describe only
            return False, None
        return (True, value.copy()) if size <= budget else (False, None)
    return False, None


def capture_args(frame: Any) -> Capture:
    """The parameters of *frame*'s function: copies of the small ones, types of all."""
    code = frame.f_code
    nparams = code.co_argcount + code.co_kwonlyargcount
    flags = code.co_flags
    nparams += bool(flags & 0x04) + bool(flags & 0x08)  # *args, **kwargs
    params = tuple(code.co_varnames[:nparams])
    args: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    try:
        local = frame.f_locals
    except Exception:  # noqa: BLE001 - a frame that cannot show its locals
        local = {}
    for name in params:
        if name not in local:
            continue
        value = local[name]
        kinds[name] = describe(value)
        ok, copied = copy_small(value)
        if ok:
            args[name] = copied
    return Capture(code.co_filename, _qualname(code), code.co_firstlineno, params,
                   MappingProxyType(args), MappingProxyType(kinds))

