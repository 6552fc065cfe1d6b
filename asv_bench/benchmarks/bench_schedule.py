"""asv benchmarks of ``loopscale.schedule``: the threads level, the pool, the Executor.

Each class is named after the operation.  ``setup`` compiles and warms
everything first, so ``time_`` methods time the scheduled work only; inputs
and outputs are allocated in ``setup``.  Worker counts above the usable cores
raise ``NotImplementedError`` in ``setup`` (asv skips them).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

import loopscale
from loopscale import accelerate
from loopscale.config import usable_cores
from loopscale.schedule import Executor, parallel_for
from loopscale.schedule._pool import get_pool

REPO = Path(__file__).resolve().parents[2]
WORKERS = [1, 2, 4, 8, 16]


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


peers = _load("loopscale_bench_threads", REPO / "benchmarks" / "threads_vs_serial.py")


def _check_workers(workers: int) -> None:
    if workers > usable_cores():
        raise NotImplementedError(f"{workers} workers > {usable_cores()} usable cores")


class _ThreadsKernel:
    """A kernel at ``level("threads", max_workers=W)`` and Numba's prange twin."""

    name_ = ""
    param_names = ["workers"]
    params = [WORKERS]
    timeout = 300

    def setup(self, workers: int) -> None:
        _check_workers(workers)
        label, py, twin, args = next(c for c in peers.cases(1.0) if c[1].__name__
                                     == self.name_)
        self.func, self.twin, self.args = accelerate(py), twin, args
        self._level = loopscale.level("threads", max_workers=workers)
        self._level.__enter__()
        numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
        self.func(*self.args)
        self.twin(*self.args)

    def teardown(self, workers: int) -> None:
        self._level.__exit__(None, None, None)

    def time_threads(self, workers: int) -> None:
        self.func(*self.args)

    def time_prange(self, workers: int) -> None:
        self.twin(*self.args)


class NBodyThreads(_ThreadsKernel):
    name_ = "nbody"


class NBodyStepsThreads(_ThreadsKernel):
    """Ten time steps in one function: its force loop runs on the pool at each
    step (a region inside the sequential step loop)."""

    name_ = "nbody_steps"


class KDEThreads(_ThreadsKernel):
    name_ = "kde"


class MandelbrotThreads(_ThreadsKernel):
    name_ = "mandelbrot"


class PairEnergyThreads(_ThreadsKernel):
    name_ = "pair_energy"


class CountsIntoArgumentThreads(_ThreadsKernel):
    """A histogram into the caller's array (``h[b] += 1``): an array per block."""

    name_ = "counts_into"


@numba.njit(nogil=True)
def _nothing(start, stop, out):  # pragma: no cover - compiled
    pass


@numba.njit(nogil=True)
def _ten_us(start, stop, out):  # pragma: no cover - compiled
    for i in range(start, stop):
        x = 0.0
        for k in range(4000):
            x += k * 1e-9
        out[i] = x


class ParallelRegion:
    """An empty region, and the cost per chunk, on the shared pool."""

    param_names = ["workers"]
    params = [[1, 2]]

    def setup(self, workers: int) -> None:
        _check_workers(workers)
        self.out = np.zeros(10_000)
        self.pool = get_pool(workers)
        self.chunks = [(i, i + 1) for i in range(10_000)]
        _nothing(0, 1, self.out)
        self.pool.run(_nothing, [(0, 1), (1, 2)], (self.out,), workers)

    def time_empty_region(self, workers: int) -> None:
        self.pool.run(_nothing, [(0, 1), (1, 2)], (self.out,), workers)

    def time_ten_thousand_empty_chunks(self, workers: int) -> None:
        self.pool.run(_nothing, self.chunks, (self.out,), workers)

    def time_parallel_for_ten_thousand_items(self, workers: int) -> None:
        parallel_for(_ten_us, 10_000, self.out, max_workers=workers, policy="dynamic",
                     chunksize=16)


class ExecutorRoundTrip:
    """``submit`` + ``result`` of a trivial task: loopscale Executor and ThreadPoolExecutor."""

    def setup(self) -> None:
        self.ls = Executor(max_workers=2)
        self.tpe = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.ls.submit(int).result()
        self.tpe.submit(int).result()

    def teardown(self) -> None:
        self.ls.shutdown()
        self.tpe.shutdown()

    def time_loopscale(self) -> None:
        for _ in range(1000):
            self.ls.submit(int).result()

    def time_threadpoolexecutor(self) -> None:
        for _ in range(1000):
            self.tpe.submit(int).result()
