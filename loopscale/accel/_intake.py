"""What ``@accelerate`` accepts, and ``prange``.

:func:`refuse` raises :class:`~loopscale.errors.UnsupportedFunctionError` at
decoration for what cannot be compiled at all (builtins, lambdas, functions
without source, generators, methods), saying what is accepted instead.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

from .. import config
from ..errors import UnsupportedFunctionError
from . import _astutil

__all__ = ["prange", "refuse", "prange_objects"]


def prange(*args: int) -> range:
    """``range`` that asserts the loop's iterations are independent.

    Inside an accelerated function, ``for i in prange(n):`` makes the loop
    parallel even where the analysis cannot prove the array accesses
    independent (as ``numba.prange`` does).  Scalars and control flow are
    still checked.  Outside compiled code it is ``range``.

    Examples
    --------
    >>> from loopscale import prange
    >>> list(prange(3))
    [0, 1, 2]
    """
    return range(*args)


def refuse(func: Any) -> None:
    """Raise UnsupportedFunctionError unless *func* is a plain ``def`` with source."""
    accepted = ("accelerate accepts a plain function defined with `def` at module level or "
                "inside another function, whose source file is available")
    if inspect.ismethod(func):
        raise UnsupportedFunctionError(
            f"cannot accelerate the bound method {func!r}: {accepted}. Accelerate a module-level "
            "function and call it from the method, passing the arrays it needs.")
    if not isinstance(func, types.FunctionType):
        kind = ("a builtin" if isinstance(func, (types.BuiltinFunctionType,
                                                 types.BuiltinMethodType)) else
                f"a {type(func).__name__} object")
        raise UnsupportedFunctionError(f"cannot accelerate {func!r}, {kind}: {accepted}.")
    if func.__name__ == "<lambda>":
        raise UnsupportedFunctionError(
            f"cannot accelerate a lambda ({func.__code__.co_filename}:"
            f"{func.__code__.co_firstlineno}): {accepted}. Write `def f(...): return ...`.")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise UnsupportedFunctionError(
            f"cannot accelerate the generator {func.__qualname__}() "
            f"({func.__code__.co_filename}:{func.__code__.co_firstlineno}): {accepted}, that "
            "returns its result. Fill and return an array instead of yielding values.")
    if inspect.iscoroutinefunction(func):
        raise UnsupportedFunctionError(
            f"cannot accelerate the coroutine function {func.__qualname__}(): {accepted}.")
    parts = func.__qualname__.split(".")
    if len(parts) > 1 and parts[-2] != "<locals>":
        raise UnsupportedFunctionError(
            f"cannot accelerate {func.__qualname__}(), a method defined in a class body "
            f"({func.__code__.co_filename}:{func.__code__.co_firstlineno}): {accepted}. Move "
            "the loop into a module-level function taking arrays, and call it from the method.")
    if config.disabled():
        return  # LOOPSCALE_DISABLE=1: the function runs as Python, source or not
    try:
        _astutil.parse_function(func)
    except (OSError, TypeError) as exc:
        raise UnsupportedFunctionError(
            f"cannot accelerate {func.__qualname__}(): its source code is not available "
            f"({func.__code__.co_filename}), as for functions typed at an interactive prompt "
            f"or made by exec(): {accepted}. Put it in a .py file (or a notebook cell).") from exc
    except SyntaxError as exc:
        raise UnsupportedFunctionError(
            f"cannot accelerate {func.__qualname__}(): {exc}. {accepted}.") from exc


def prange_objects() -> tuple[Any, ...]:
    objs: list[Any] = [prange]
    try:
        import numba

        objs.append(numba.prange)
    except ImportError:  # pragma: no cover
        pass
    return tuple(objs)
