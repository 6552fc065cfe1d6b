"""Capturing arguments: copies of the small ones, a description of all.

The first time the sampler sees a function defined in user code, it reads
its parameters from the frame (:func:`capture_args`): small values are copied
(up to :data:`COPY_LIMIT` bytes of arrays, strings and pandas objects in all,
numbers, containers of up to :data:`ITEMS_LIMIT` items), the others are
described by type (:func:`describe`): a long list of numbers as
``list[float] of 2,000,000 items``, for which the compile check builds a
stand-in.
The verdict step compiles the function for these arguments.
"""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Any

from ._frames import _qualname
from ._session import Capture

__all__ = ["COPY_LIMIT", "ITEMS_LIMIT", "capture_args", "copy_small", "describe"]

#: Arrays and pandas objects up to this many bytes are copied when captured.
COPY_LIMIT = 16 * 1024 * 1024


#: Lists, tuples and dicts up to this many items are copied when captured.
ITEMS_LIMIT = 10_000
#: How many leading items of a longer list say what its items are.
_SAMPLE_ITEMS = 1_000


def describe(value: Any) -> str:
    """A short description of *value*'s type (``float64[:, :]``, ``list[float]``, ``dict``...).

    A list or tuple whose first items are all numbers of one type is
    described with it (``list[float]``): the compile check can then build a
    stand-in for a list too long to copy.
    """
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return f"{value.dtype}[{', '.join(':' * value.ndim)}]"
    cls = type(value)
    if cls in (list, tuple) and value:
        first = type(value[0])
        if first in (bool, int, float, complex) and all(
                type(item) is first for item in value[:_SAMPLE_ITEMS]):
            return f"{cls.__name__}[{first.__name__}]"
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


_SCALARS = (type(None), bool, int, float, complex)


def copy_small(value: Any, budget: int = COPY_LIMIT) -> tuple[bool, Any]:
    """``(True, copy)`` when *value* is small and plain enough to copy, else ``(False, None)``.

    *budget* bounds the bytes of arrays, strings and pandas objects copied in
    all (a list of big arrays counts each one); containers may hold up to
    :data:`ITEMS_LIMIT` items.
    """
    left = [budget]
    try:
        return True, _copy(value, left)
    except _TooBig:
        return False, None


class _TooBig(Exception):
    pass


def _take(left: list[int], nbytes: int) -> None:
    left[0] -= nbytes
    if left[0] < 0:
        raise _TooBig


def _copy(value: Any, left: list[int]) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (str, bytes)):
        _take(left, len(value))
        return value
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise _TooBig
            _take(left, value.nbytes)
            return value.copy()
        if isinstance(value, np.generic):
            return value
    if isinstance(value, (tuple, list)):
        if len(value) > ITEMS_LIMIT:
            raise _TooBig
        items = [_copy(item, left) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        if len(value) > ITEMS_LIMIT:
            raise _TooBig
        return {_copy(k, left): _copy(v, left) for k, v in value.items()}
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        try:
            size = int(value.memory_usage(deep=True).sum()) if isinstance(
                value, pd.DataFrame) else int(value.memory_usage(deep=True))
        except Exception:  # noqa: BLE001 - an odd extension dtype: describe only
            raise _TooBig from None
        _take(left, size)
        return value.copy()
    raise _TooBig


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
        elif isinstance(value, (list, tuple)):
            kinds[name] += f" of {len(value):,} items"
    return Capture(code.co_filename, _qualname(code), code.co_firstlineno, params,
                   MappingProxyType(args), MappingProxyType(kinds))

