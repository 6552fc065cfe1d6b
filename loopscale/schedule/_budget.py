"""One thread budget: scheduler threads x Numba threads <= usable cores.

Each pool thread, when it starts, limits the Numba parallel regions it may
launch (``numba.set_num_threads`` is per thread) to its share of the usable
cores, so a ``parallel=True`` Numba function called from inside a chunk or a
task does not oversubscribe the machine.

BLAS and OpenMP thread pools (OpenBLAS, MKL, libgomp...) are process-wide:
:func:`blas_limit` lowers them, through ``threadpoolctl``, to each worker's
share of the cores while several workers may call them at once (a
threads-level region whose loop calls ``np.dot``, ``@`` or ``np.linalg``, as
the compiler reports in the plan), and restores them afterwards.

Numba's ``workqueue`` threading layer aborts the process when two threads
launch parallel regions at once.  Before Numba starts a layer, this module
asks for a thread-safe one (``omp`` or ``tbb``) when one is importable; when
only ``workqueue`` exists (or it was already started), :func:`guard` makes
calls of ``parallel=True`` dispatchers that go through the scheduler take a
process-wide lock, so they run one at a time instead of aborting.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
from collections.abc import Callable
from typing import Any

from .. import config

__all__ = ["prepare_numba", "init_worker", "guard", "numba_layer_is_threadsafe", "blas_limit"]

_PARALLEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _threadsafe_available() -> bool:
    for layer in ("tbb", "omp"):
        try:
            importlib.import_module(f"numba.np.ufunc.{layer}pool")
            return True
        except Exception:
            continue
    return False


@functools.lru_cache(maxsize=1)
def prepare_numba() -> None:
    """Ask Numba for a thread-safe layer, unless the user chose one or it started."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    try:
        import numba
        from numba.np.ufunc import parallel
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    if getattr(parallel, "_is_initialized", False):
        return
    if _threadsafe_available() and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "threadsafe"


def numba_layer_is_threadsafe() -> bool:
    """Whether Numba's layer (started or to be started) tolerates concurrent launches."""
    try:
        import numba
        from numba.np.ufunc import parallel
    except ImportError:  # pragma: no cover
        return True
    if getattr(parallel, "_is_initialized", False):
        return numba.threading_layer() != "workqueue"
    return numba.config.THREADING_LAYER in ("threadsafe", "tbb", "omp") or (
        numba.config.THREADING_LAYER == "default" and _threadsafe_available())


def init_worker(workers: int) -> None:
    """Run in each new pool thread: its share of the cores for Numba's own threads."""
    prepare_numba()
    share = max(1, config.usable_cores() // max(1, workers))
    try:
        import numba

        numba.set_num_threads(min(share, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # a broken or absent threading layer: nothing to limit
        pass


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """*fn*, serialized if it is a ``parallel=True`` Numba function and the layer
    would abort on concurrent launches."""
    opts = getattr(fn, "targetoptions", None)
    if not (isinstance(opts, dict) and opts.get("parallel")):
        return fn
    if numba_layer_is_threadsafe():
        return fn

    @functools.wraps(fn)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _PARALLEL_LOCK:
            return fn(*args, **kwargs)

    return serialized


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency
        return None
    try:
        return ThreadpoolController()
    except Exception:  # a library that cannot be inspected: no limits
        return None


def blas_limit(workers: int) -> contextlib.AbstractContextManager[Any]:
    """A context that limits BLAS/OpenMP pools to ``usable_cores // workers`` threads.

    A no-op for one worker, or when every pool already fits its share.
    """
    if workers <= 1:
        return contextlib.nullcontext()
    ctrl = _controller()
    if ctrl is None:
        return contextlib.nullcontext()
    share = max(1, config.usable_cores() // workers)
    if all(lib.num_threads <= share for lib in ctrl.lib_controllers):
        return contextlib.nullcontext()
    return ctrl.limit(limits=share)
