"""``parallel_for`` and the ``threads`` level's executor.

Both cut a range into chunks (:mod:`._chunking`) and run them on the shared
worker pool (:mod:`._pool`).  The executor is what ``accel`` finds through the
``loopscale.levels`` entry point ``threads``: it receives a
:class:`loopscale.accel.LoopPlan` (only its attributes are used, so this module
does not import ``accel``) and runs its chunk kernel over the plan's blocks.
"""

from __future__ import annotations

import operator
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import config
from ..errors import SerializationWarning
from ._chunking import (
    plan_chunks,
    validate_chunksize,
    validate_max_workers,
    validate_policy,
    validate_progress,
)
from ._pool import get_pool, useful_workers

__all__ = ["parallel_for", "ThreadsExecutor"]

#: Measured seconds per block, per kernel and shapes of its array arguments
#: (the cost of an iteration often grows with an array the loop does not
#: index by its variable: a KDE's data).  Kept to :data:`_COST_KEYS` entries.
_COST: dict[Any, float] = {}
_COST_KEYS = 4096


def _cost_key(kernel: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (kernel,) + tuple(a.shape for a in args if isinstance(a, np.ndarray))


def _remember_cost(key: tuple[Any, ...], seconds_per_block: float) -> None:
    if len(_COST) >= _COST_KEYS and key not in _COST:
        _COST.clear()
    _COST[key] = seconds_per_block
_WARNED: set[int] = set()


def _resolve_workers(max_workers: int | None) -> int:
    if max_workers is None:
        return config.max_workers_default()
    return validate_max_workers(max_workers) or 1


def _check_nogil(fn: Callable[..., Any]) -> None:
    opts = getattr(fn, "targetoptions", None)
    if isinstance(opts, dict) and not opts.get("nogil", False) and id(fn) not in _WARNED:
        _WARNED.add(id(fn))
        name = getattr(fn, "__qualname__", repr(fn))
        warnings.warn(
            f"{name} was compiled without nogil=True: its chunks hold the GIL and will run one "
            "at a time. Compile it with numba.njit(nogil=True) (loopscale.accelerate always "
            "does).", SerializationWarning, stacklevel=3)


def _entry(fn: Callable[..., Any], sample: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled entry point of a Numba dispatcher for these argument types.

    Calling it skips the dispatcher's type resolution (about a microsecond per
    call for tuple arguments), which matters when chunks are short.
    """
    overloads = getattr(fn, "overloads", None)
    if overloads is None:
        return fn
    try:
        sig = tuple(fn.typeof_pyval(a) for a in sample)  # type: ignore[attr-defined]
        cres = overloads.get(sig)
        if cres is None:
            return fn
        return cres.entry_point  # type: ignore[no-any-return]
    except Exception:
        return fn


def parallel_for(fn: Callable[..., Any], n: int, *args: Any, max_workers: int | None = None,
                 policy: str = "auto", chunksize: int | None = None,
                 progress: bool | None = None) -> None:
    """Run ``fn(start, stop, *args)`` over ``range(n)`` cut into chunks, on the local cores.

    Parameters
    ----------
    fn : callable
        Called as ``fn(start, stop, *args)`` for disjoint ranges covering
        ``[0, n)``.  It should release the GIL (a ``numba.njit(nogil=True)``
        function); a Numba function compiled without ``nogil`` gets a
        :class:`~loopscale.errors.SerializationWarning`.
    n : int
        Size of the iteration space.
    *args
        Passed to every call; NumPy arrays are shared, not copied.
    max_workers : int, optional
        Threads to use, the caller included (default: ``LOOPSCALE_MAX_WORKERS``
        or the usable cores).
    policy : {"auto", "static", "dynamic", "guided"}
        How the range is cut (see :mod:`loopscale.schedule`).
    chunksize : int, optional
        Iterations per chunk (static, dynamic) or the smallest chunk (guided,
        auto).  Without one, a worker may run a long chunk as several
        consecutive calls over sub-ranges of about 50 ms each, so that Ctrl-C
        and a failure in another chunk stop the loop promptly; with one, every
        call gets exactly the planned range.
    progress : bool or None
        ``True`` draws a progress bar on standard error; ``None`` (default)
        draws one only on a terminal once the run passes two seconds;
        ``False`` never.

    Raises
    ------
    Exception
        The first exception raised by a chunk, of its own type, naming the
        range; the others stop.

    Examples
    --------
    >>> import numpy as np, numba
    >>> from loopscale.schedule import parallel_for
    >>> @numba.njit(nogil=True)
    ... def double(start, stop, x):
    ...     for i in range(start, stop):
    ...         x[i] *= 2
    >>> x = np.ones(10)
    >>> parallel_for(double, x.size, x)
    >>> x.sum()
    20.0
    """
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"n must be a non-negative integer (int or NumPy integer); got "
                        f"{type(n).__name__} {n!r}.")
    n = operator.index(n)  # a NumPy integer (x.shape[0], np.int64) is an integer too
    if n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}.")
    workers = _resolve_workers(max_workers)
    validate_policy(policy)
    chunksize = validate_chunksize(chunksize)
    validate_progress(progress)
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(start, stop, *args); got {fn!r}.")
    _check_nogil(fn)
    if n == 0:
        return
    key = _cost_key(getattr(fn, "py_func", fn), args)
    cost = _COST.get(key)
    if policy == "auto" and chunksize is None:
        workers = useful_workers(workers, cost and cost * n)
    chunks = plan_chunks(n, workers, policy, chunksize, cost)
    t0 = time.perf_counter()
    label = f"loopscale {getattr(fn, '__name__', 'parallel_for')}()"
    get_pool(workers).run(fn, chunks, args, workers,
                          describe=lambda c0, c1: f"iterations [{c0}, {c1})",
                          progress=progress, label=label, split=chunksize is None,
                          seconds_per_item=_COST.get(key))
    _remember_cost(key, (time.perf_counter() - t0) * min(workers, len(chunks)) / n)


class ThreadsExecutor:
    """The ``threads`` level: the blocks of a loop plan on a pool of worker threads.

    Parameters
    ----------
    max_workers : int, optional
        Threads to use, the caller included (default: ``LOOPSCALE_MAX_WORKERS``
        or the usable cores).
    policy : {"auto", "static", "dynamic", "guided"}
        How blocks are cut into chunks.
    chunksize : int, optional
        Blocks per chunk, or the smallest chunk for guided/auto.
    progress : bool or None
        As for :func:`parallel_for`.
    """

    name = "threads"

    def __init__(self, max_workers: int | None = None, policy: str = "auto",
                 chunksize: int | None = None, progress: bool | None = None,
                 **unknown: Any) -> None:
        if unknown:
            raise TypeError(f"unknown option(s) for the 'threads' level: {sorted(unknown)!r}; "
                            "valid: max_workers, policy, chunksize, progress.")
        validate_progress(progress)
        self.progress = progress
        self.max_workers = _resolve_workers(max_workers)
        self.policy = validate_policy(policy)
        self.chunksize = validate_chunksize(chunksize)

    def run(self, plan: Any) -> None:
        """Run every block of *plan* once, in parallel."""
        nb = plan.nblocks
        if nb == 0:
            return
        workers = self.max_workers
        key = _cost_key(plan.kernel, plan.args)
        cost = _COST.get(key)
        if self.policy == "auto" and self.chunksize is None:
            workers = useful_workers(workers, cost and cost * nb)
        chunks = plan_chunks(nb, workers, self.policy, self.chunksize, cost)
        kernel = plan.kernel

        def describe(c0: int, c1: int) -> str:
            first, last = plan.iteration_values(c0, c1)
            return f"iterations {first}..{last} of the loop in {plan.function}()"

        t0 = time.perf_counter()
        get_pool(workers).run(kernel, chunks, plan.args, workers, describe=describe,
                              progress=self.progress, label=f"loopscale {plan.function}()",
                              blas=getattr(plan, "calls_blas", False), split=True,
                              seconds_per_item=_COST.get(key))
        _remember_cost(key, (time.perf_counter() - t0) * min(workers, len(chunks)) / nb)
