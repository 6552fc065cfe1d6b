"""One thread budget: scheduler threads x Numba threads <= usable cores.

Each pool thread, when it starts, limits the Numba parallel regions it may
launch (``numba.set_num_threads`` is per thread) to its share of the usable
cores, so a ``parallel=True`` Numba function called from inside a chunk or a
task does not oversubscribe the machine.

BLAS and OpenMP thread pools (OpenBLAS, MKL, libgomp...) are process-wide:
:data:`BLAS_BUDGET` lowers them, through ``threadpoolctl``'s controllers, to
each worker's share of the cores while several workers may call them at once
-- a threads-level region whose loop calls ``np.dot``, ``@`` or
``np.linalg`` (as the compiler reports in the plan), an :class:`Executor`
or a task graph with more than one worker while it has work -- and restores
them when the last of these is done.  A :class:`ProcessExecutor` worker
process limits its own pools once, at start (:func:`limit_process`).

Numba's ``workqueue`` threading layer aborts the process when two threads
launch parallel regions at once.  Before Numba starts a layer, this module
asks for a thread-safe one (``omp`` or ``tbb``) when one is importable; when
only ``workqueue`` exists (or was chosen or already started), every call of a
``parallel=True`` dispatcher made from Python while a pool with more than one
worker exists -- a chunk or task that is one, or a Python task that calls one
-- takes a process-wide lock (:func:`serialize_parallel_calls`), so they run
one at a time instead of aborting.  A parallel function called from inside
*another compiled function* is out of reach: that needs the ``tbb`` or ``omp``
layer.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .. import config

__all__ = ["prepare_numba", "init_worker", "guard", "numba_layer_is_threadsafe", "blas_limit",
           "serialize_parallel_calls",
           "BLAS_BUDGET", "limit_process"]

_PARALLEL_LOCK = threading.RLock()  # re-entered by a guarded fn through the hook


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


_HOOKED = False


def serialize_parallel_calls() -> None:
    """Make every Python call of a ``parallel=True`` Numba function take
    :data:`_PARALLEL_LOCK`, when the threading layer aborts on concurrent launches.

    Installed once, on Numba's ``CPUDispatcher`` class (a Python subclass of the
    C dispatcher type), only under such a layer: other layers pay nothing.
    """
    global _HOOKED
    if _HOOKED or "numba" not in sys.modules or numba_layer_is_threadsafe():
        return
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    with _PARALLEL_LOCK:
        if _HOOKED:
            return
        plain_call = CPUDispatcher.__call__

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.targetoptions.get("parallel"):
                with _PARALLEL_LOCK:
                    return plain_call(self, *args, **kwargs)
            return plain_call(self, *args, **kwargs)

        CPUDispatcher.__call__ = __call__
        _HOOKED = True


def init_worker(workers: int) -> None:
    """Run in each new pool thread: its share of the cores for Numba's own threads
    and for OpenMP pools (whose thread count is a per-thread setting)."""
    prepare_numba()
    if workers > 1:
        serialize_parallel_calls()
    share = max(1, config.usable_cores() // max(1, workers))
    try:
        import numba

        numba.set_num_threads(min(share, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # a broken or absent threading layer: nothing to limit
        pass
    if workers > 1:
        ctrl = _controller()
        for lib in ctrl.lib_controllers if ctrl is not None else ():
            if _per_thread(lib) and lib.num_threads > share:
                _set_threads(lib, share)


def _per_thread(lib: Any) -> bool:
    """Whether *lib*'s thread count is per calling thread (OpenMP's is)."""
    return lib.user_api == "openmp" or getattr(lib, "threading_layer", "") == "openmp"


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


_CONTROLLER: tuple[int, Any] | None = None


def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (None without one).

    Made again (about 0.5 ms) when modules were imported since the last time,
    since an import may load another library (SciPy brings its own OpenBLAS).
    """
    global _CONTROLLER
    stamp = len(sys.modules)
    if _CONTROLLER is not None and _CONTROLLER[0] == stamp:
        return _CONTROLLER[1]
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency
        return None
    try:
        ctrl = ThreadpoolController()
    except Exception:  # a library that cannot be inspected: no limits
        ctrl = None
    _CONTROLLER = (len(sys.modules), ctrl)
    return ctrl


class _BlasBudget:
    """The process-wide BLAS/OpenMP limit, shared by everything that runs work
    on several threads at once (parallel regions, executors, task graphs).

    BLAS pools are per process (those built on OpenMP excepted: their size is a
    per-thread setting, which :func:`init_worker` lowers in each worker thread),
    so the limit is too: the first user lowers every pool to its share of the
    cores, later users only lower it further, and the
    last one to leave restores the sizes found by the first.  Each change is a
    direct call into the library (``openblas_set_num_threads`` and the like),
    a few microseconds, made only when the set of users goes from empty to
    non-empty or back, or needs a smaller share.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shares: list[int] = []
        self._saved: list[tuple[Any, int]] | None = None
        self._applied: int | None = None

    def _libs(self) -> list[Any]:
        """The process-wide pools (OpenMP ones are set per worker thread instead,
        by :func:`init_worker`)."""
        ctrl = _controller()
        libs = ctrl.lib_controllers if ctrl is not None else []
        return [lib for lib in libs if not _per_thread(lib)]

    def enter(self, workers: int) -> int | None:
        """Count a user of *workers* threads in; the share it needs, or None for none."""
        if workers <= 1:
            return None
        share = max(1, config.usable_cores() // workers)
        prepare_numba()  # (may load Numba's OpenMP layer: a pool to count too)
        with self._lock:
            if not self._shares:
                libs = self._libs()
                self._saved = [(lib, lib.num_threads) for lib in libs]
                self._applied = None
            self._shares.append(share)
            if self._applied is None or share < self._applied:
                self._apply(share)
        return share

    def exit(self, share: int | None) -> None:
        """Count out a user that :meth:`enter` returned *share* to."""
        if share is None:
            return
        with self._lock:
            self._shares.remove(share)
            if self._shares:
                return  # (a smaller share stays until the last user leaves)
            saved, self._saved, self._applied = self._saved or [], None, None
            for lib, n in saved:
                if lib.num_threads != n:
                    _set_threads(lib, n)

    def _apply(self, share: int) -> None:
        for lib, n in self._saved or []:
            if n > share:
                _set_threads(lib, share)
        self._applied = share

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's users are not here; restore the pools."""
        self._lock = threading.Lock()
        saved, self._saved, self._applied, self._shares = self._saved or [], None, None, []
        for lib, n in saved:
            _set_threads(lib, n)

    @property
    def active(self) -> bool:
        """Whether a limit is in force (some user is counted in)."""
        return bool(self._shares)


def _set_threads(lib: Any, n: int) -> None:
    try:
        lib.set_num_threads(n)
    except Exception:  # a library that refuses: leave it as it is
        pass


BLAS_BUDGET = _BlasBudget()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=BLAS_BUDGET.reset_after_fork)


@contextlib.contextmanager
def blas_limit(workers: int) -> Iterator[None]:
    """A context that limits BLAS/OpenMP pools to ``usable_cores // workers`` threads.

    A no-op for one worker, or when every pool already fits its share; nested
    and concurrent uses share one process-wide limit (see :class:`_BlasBudget`).
    """
    share = BLAS_BUDGET.enter(workers)
    try:
        yield
    finally:
        BLAS_BUDGET.exit(share)


def limit_process(workers: int) -> None:
    """In a worker *process* of a pool of *workers*: its share of the cores for
    BLAS/OpenMP pools and Numba's threads, for the life of the process.

    Pools loaded later read the environment variables; those already loaded
    are limited through ``threadpoolctl``.
    """
    share = max(1, config.usable_cores() // max(1, workers))
    names = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"]
    if "numba" not in sys.modules:
        # Numba reads it at import.  Once imported (the user's main module, loaded
        # again in a spawned worker, imports it) its configuration is fixed: a
        # changed variable makes the next compilation re-read it and fail ("Cannot
        # set NUMBA_NUM_THREADS ... once the threads have been launched"), so
        # set_num_threads limits it instead (init_worker, below).
        names.append("NUMBA_NUM_THREADS")
    for var in names:
        try:
            keep = 0 < int(os.environ[var]) <= share
        except (KeyError, ValueError):
            keep = False
        if not keep:
            os.environ[var] = str(share)
    ctrl = _controller()
    if ctrl is not None:
        for lib in ctrl.lib_controllers:
            if lib.num_threads > share:
                _set_threads(lib, share)
    if "numba" in sys.modules:
        init_worker(workers)
