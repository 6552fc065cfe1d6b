"""Every exception and warning that loopscale raises.

One hierarchy rooted at :class:`LoopscaleError`.  Each leaf also subclasses the
standard exception it refines, so ``except TypeError`` keeps working in code
that does not know about loopscale.  Standard library only: this module is a
leaf of the package's dependency graph.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.thread
import copy
from typing import Any

__all__ = [
    "LoopscaleError",
    "CompileError",
    "UnsupportedFunctionError",
    "ArgumentError",
    "ArgumentValueError",
    "LevelError",
    "LoopExecutionError",
    "WorkerError",
    "BrokenThreadPool",
    "BrokenProcessPool",  # noqa: F822 - made on first use (__getattr__)
    "CudaUnavailableError",
    "CudaMemoryError",
    "DistributionError",
    "LoopscaleWarning",
    "FallbackWarning",
    "SerializationWarning",
]


class LoopscaleError(Exception):
    """Base class of every error raised by loopscale."""


class CompileError(LoopscaleError, TypeError):
    """A decorated function (or a helper it calls) cannot be compiled.

    The message names the function, the file and line of the construct, what
    is not supported and what to do instead.  Numba's own error is attached as
    ``__cause__``.
    """

    def __init__(self, message: str, *, function: str = "", filename: str = "",
                 lineno: int | None = None) -> None:
        super().__init__(message)
        self.function = function
        self.filename = filename
        self.lineno = lineno


class UnsupportedFunctionError(LoopscaleError, TypeError):
    """``@accelerate`` was applied to something it cannot compile (a builtin,
    a function without source, a generator, a method)."""


class ArgumentError(LoopscaleError, TypeError):
    """An argument has a type the compiled function cannot take (a list where
    an array is written, an arbitrary Python object...)."""


class ArgumentValueError(LoopscaleError, ValueError):
    """An argument has an acceptable type but an unusable value (a read-only
    output array, inconsistent shapes)."""


class LevelError(LoopscaleError, ValueError):
    """An unknown level, a level whose executor is not installed, or invalid
    options for a level."""


class LoopExecutionError(LoopscaleError, RuntimeError):
    """An exception raised inside a compiled loop whose own type could not be
    re-raised; the original is the ``__cause__``."""


class WorkerError(LoopscaleError, concurrent.futures.BrokenExecutor):
    """A worker (thread or MPI rank) failed in a way that left its executor
    unusable."""


class BrokenThreadPool(WorkerError, concurrent.futures.thread.BrokenThreadPool):
    """A :class:`~loopscale.schedule.Executor` worker's initializer failed: the
    executor is unusable.  Also a ``concurrent.futures.thread.BrokenThreadPool``,
    so code written for ``ThreadPoolExecutor`` catches it unchanged."""


class CudaUnavailableError(LoopscaleError, RuntimeError):
    """``target="cuda"`` was asked for on a machine where CUDA cannot run."""


class CudaMemoryError(LoopscaleError, MemoryError):
    """A device allocation asked for more memory than the GPU has free; the
    message gives the bytes requested and free."""


class DistributionError(LoopscaleError, ValueError):
    """A distributed array used in a way that would need data from other ranks
    (an element at an arbitrary index, a whole-array operation), or distributed
    arrays whose partitions do not match; the message says what to gather,
    replicate or redistribute."""


class LoopscaleWarning(UserWarning):
    """Base class of every warning issued by loopscale."""


class FallbackWarning(LoopscaleWarning):
    """``fallback=True`` made loopscale run the plain Python function."""


class SerializationWarning(LoopscaleWarning):
    """A loop that looked parallel runs sequentially (the reason is given)."""


def __getattr__(name: str) -> Any:
    # BrokenProcessPool is made on first use: concurrent.futures.process imports
    # multiprocessing (about 10 ms), which ``import loopscale`` does not need.
    if name == "BrokenProcessPool":
        import concurrent.futures.process

        class BrokenProcessPool(WorkerError, concurrent.futures.process.BrokenProcessPool):
            """A :class:`~loopscale.schedule.ProcessExecutor` worker died or its
            initializer failed: the executor is unusable.  Also a
            ``concurrent.futures.process.BrokenProcessPool``, so code written for
            ``ProcessPoolExecutor`` catches it unchanged."""

        BrokenProcessPool.__module__ = __name__
        BrokenProcessPool.__qualname__ = "BrokenProcessPool"  # pickled by name
        globals()[name] = BrokenProcessPool
        return BrokenProcessPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def relocated(exc: BaseException, where: str) -> BaseException:
    """*exc* as the caller of a parallel region or task gets it: same type, same
    arguments and attributes, saying where it was raised (``raised in WHERE``).

    A copy is made by the pickle protocol (``copy.copy``), so attributes
    (``errno``, ``filename``, a custom ``status``...) and the arguments survive.
    When the message is the single string argument, it gets `` (raised in
    WHERE)`` appended; otherwise (several arguments, ``OSError``, ``KeyError``,
    a custom ``__str__``) the arguments stay as they are and the place is a
    note (PEP 678, shown under the traceback).  An exception that cannot be
    copied is returned itself, with the note.  The caller raises the result
    ``from exc``, so the worker's traceback is the cause.
    """
    note = f"raised in {where}"
    try:
        new = copy.copy(exc)
    except Exception:
        new = exc
    if type(new) is not type(exc):
        new = exc
    if new is not exc:
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):  # not shared with the original (the cause)
            new.__notes__ = list(notes)  # type: ignore[attr-defined]
        for name in [k for k in getattr(new, "__dict__", {}) if k.startswith("_loopscale")]:
            delattr(new, name)  # loopscale's own marks stay on the original
        args = exc.args
        try:
            text = str(exc)
        except Exception:
            text = None
        if (len(args) == 1 and isinstance(args[0], str) and text == args[0]) or \
                (not args and text == ""):
            message = f"{text} ({note})" if text else note
            new.args = (message,)
            try:
                if str(new) == message:
                    return new
            except Exception:
                pass
            new.args = args
    _add_note(new, note)
    return new


def _add_note(exc: BaseException, note: str) -> None:
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and note in notes:
        return
    try:
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: shown by tools that know PEP 678
            exc.__notes__ = [*(notes or []), note]  # type: ignore[attr-defined]
    except Exception:
        pass
