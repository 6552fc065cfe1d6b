"""asv benchmarks of ``loopscale.accel``: compiled kernels, call overhead, start-up.

The kernels are the ones ``benchmarks/serial_vs_numba.py`` times, written once
in ``benchmarks/kernels.py`` at the repository root (loaded from there by
path).  Each class is named after the operation, is parametrised over the
level and the problem size, compiles in ``setup`` (so ``time_`` methods time
compiled code only), and times the hand-written ``numba.njit(nogil=True)``
version of the same kernel beside it (``time_njit``), so that the ratio can be
tracked as well as the absolute time.

Outputs are allocated in ``setup``, outside the timed region.  ``Startup``
measures compile time and warm start in child processes with private cache
directories (``track_`` methods, in seconds).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import loopscale
from loopscale import accelerate

REPO = Path(__file__).resolve().parents[2]
LEVELS = ["serial"]


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


kernels = _load("loopscale_bench_kernels", REPO / "benchmarks" / "kernels.py")


class _Kernel:
    """Shared set-up: compile at the level, preallocate the inputs and outputs."""

    kernel = ""
    param_names = ["level", "size"]
    timeout = 300

    def setup(self, level: str, size: int) -> None:
        self._level = loopscale.level(level)
        self._level.__enter__()  # the level stays in force for the timed calls
        self.func = accelerate(kernels.KERNELS[self.kernel])
        self.njit = kernels.NJIT[self.kernel]
        self.args = kernels.make_inputs(self.kernel, size)
        self.func(*self.args)  # compile (or load from the cache) before timing
        self.njit(*self.args)

    def teardown(self, level: str, size: int) -> None:
        self._level.__exit__(None, None, None)

    def time_accelerate(self, level: str, size: int) -> None:
        self.func(*self.args)

    def time_njit(self, level: str, size: int) -> None:
        self.njit(*self.args)


class NBody(_Kernel):
    """Softened forces between n bodies in the plane (O(n²))."""

    kernel = "nbody"
    params = (LEVELS, [500, 2000])


class BlackScholes(_Kernel):
    """European option prices; the helper ``cnd`` calls ``math.erf``."""

    kernel = "black_scholes"
    params = (LEVELS, [100_000, 1_000_000])


class Mandelbrot(_Kernel):
    """Escape-time counts on a size × 3/4 size grid, maxiter 100."""

    kernel = "mandelbrot"
    params = (LEVELS, [200, 400])


class SumOfSquares(_Kernel):
    """A float reduction over n elements."""

    kernel = "sum_of_squares"
    params = (LEVELS, [1_000_000, 10_000_000])


class Stencil2D(_Kernel):
    """One Jacobi sweep of the 5-point stencil on a size × size grid."""

    kernel = "stencil2d"
    params = (LEVELS, [250, 1000])


class CallOverhead(_Kernel):
    """``def first(x): return x[0]``: the cost of one call."""

    kernel = "first"
    params = (LEVELS, [10])


class Startup:
    """Compile time and warm start, each in a new process (seconds).

    ``track_cold_compile``: the first call with an empty cache directory.
    ``track_njit_compile``: the same for ``numba.njit`` (no cache), for scale.
    ``track_warm_start``: the first call in a new process after the cache was
    filled (the cache load; the target is at most 10 % of ``track_cold_compile``).
    ``track_warm_imports_to_result``: the same process from the imports (NumPy,
    Numba, loopscale) to the first result.
    """

    params = (LEVELS, ["nbody", "black_scholes", "mandelbrot", "sum_of_squares", "stencil2d"])
    param_names = ["level", "kernel"]
    timeout = 300
    # One child process per measurement is slow; a single sample is enough.
    repeat = 1
    number = 1

    def setup(self, level: str, kernel: str) -> None:
        self.runner = _load("loopscale_bench_serial_vs_numba",
                            REPO / "benchmarks" / "serial_vs_numba.py")
        self.cache = tempfile.mkdtemp(prefix="loopscale-asv-cache-")

    def teardown(self, level: str, kernel: str) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def _child(self, level: str, kernel: str, impl: str) -> dict[str, float]:
        return self.runner.run_child(kernel, impl, self.cache, level)  # type: ignore[no-any-return]

    def track_cold_compile(self, level: str, kernel: str) -> float:
        return self._child(level, kernel, "accel")["first_call"]

    track_cold_compile.unit = "seconds"  # type: ignore[attr-defined]

    def track_njit_compile(self, level: str, kernel: str) -> float:
        return self._child(level, kernel, "njit")["first_call"]

    track_njit_compile.unit = "seconds"  # type: ignore[attr-defined]

    def track_warm_start(self, level: str, kernel: str) -> float:
        self._child(level, kernel, "accel")  # fills the cache
        return self._child(level, kernel, "accel")["first_call"]

    track_warm_start.unit = "seconds"  # type: ignore[attr-defined]

    def track_warm_imports_to_result(self, level: str, kernel: str) -> float:
        self._child(level, kernel, "accel")  # fills the cache
        return self._child(level, kernel, "accel")["total"]

    track_warm_imports_to_result.unit = "seconds"  # type: ignore[attr-defined]
