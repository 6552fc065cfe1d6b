"""The CUDA path under Numba's CUDA simulator, and CUDA availability without a GPU.

Simulator checks run in ONE child process with ``NUMBA_ENABLE_CUDASIM=1`` set
before Numba is imported (simulated kernels are slow: sizes stay <= 131, the
simulator launches at most 2 blocks of 32 threads by default, so the
grid-stride loop wraps).  The child runs :func:`run_checks` and prints one
JSON record per check; each test below asserts one record, so a failure names
its check.  :mod:`test_cuda_gpu` runs the same checks on a real GPU.

The differential corpus is the CPU compiler's (``tests/accel/kernels.py``):
every parallel kernel at n = 0, 7 (fewer iterations than threads) and 131
(odd, more than the grid), compared with the plain-Python result on an
identical copy of the inputs (which the CPU differential tests compare with
the compiled CPU result).  Tolerances, as documented in
``loopscale/accel/_cuda.py``:

* integers and booleans: exact;
* floats: ``rtol=1e-10`` (float64, complex128) or ``1e-4`` (float32), with
  ``atol = rtol * max|expected|`` (a GPU may contract ``a * b + c`` into an
  FMA and its libdevice math functions may differ from the host's libm by an
  ulp or two, which cancellation in a stencil can make large relative to a
  near-zero element).

The last tests go through the decorator: ``@accelerate(target="cuda")`` and
the ``cuda`` level, with and without the simulator.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = (0, 7, 131)
_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.complex64): 1e-4}

# ---------------------------------------------------------------------------
# the checks (run in a child process; also imported by test_cuda_gpu)


def close_enough(got: Any, expected: Any, what: str) -> None:
    """Assert *got* matches *expected* within the CUDA path's tolerance."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), f"{what}: {got!r}"
        for k, (g, e) in enumerate(zip(got, expected, strict=True)):
            close_enough(g, e, f"{what}[{k}]")
        return
    if expected is None:
        assert got is None, f"{what}: expected None, got {got!r}"
        return
    assert got is not None, f"{what}: got None, expected {expected!r}"
    if hasattr(got, "copy_to_host"):
        got = got.copy_to_host()
    g, e = np.asarray(got), np.asarray(expected)
    assert g.shape == e.shape, f"{what}: shape {g.shape} != {e.shape}"
    if isinstance(expected, np.ndarray):
        assert g.dtype == e.dtype, f"{what}: dtype {g.dtype} != {e.dtype}"
    if not np.issubdtype(e.dtype, np.inexact):
        np.testing.assert_array_equal(g, e, err_msg=what)
        return
    rtol = _RTOL.get(e.dtype, 1e-10)
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    if not math.isfinite(scale):
        scale = 0.0
    np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * scale, err_msg=what)


def _corpus() -> dict[str, Callable[[], None]]:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    from .kernels import KERNELS, copy_args

    checks: dict[str, Callable[[], None]] = {}
    for kernel in KERNELS:
        def check(kernel=kernel) -> None:  # noqa: ANN001
            acc = accelerate(kernel.func)
            for n in SIZES:
                args = kernel.make_args(n, np.random.default_rng(n + 1))
                mine, ref = copy_args(args), copy_args(args)
                got = _cuda.call_cuda(acc, mine, {})
                if not kernel.parallel or kernel.kind == "scatter":
                    assert isinstance(got, _cuda.RunOnCpu), f"n={n}: ran on the device"
                    assert ("line" in got.reason if kernel.kind != "scatter"
                            else "at any index" in got.reason), got.reason
                    assert acc.last_cuda_timings == {"on_cpu": got.reason}
                    return
                assert not isinstance(got, _cuda.RunOnCpu), f"n={n}: {got.reason}"
                expected = kernel.func(*ref)
                close_enough(got, expected, f"{kernel.name} n={n} result")
                for k, (a, b) in enumerate(zip(mine, ref, strict=True)):
                    if isinstance(b, np.ndarray):
                        close_enough(a, b, f"{kernel.name} n={n} argument {k}")
        checks[f"corpus_{kernel.name}"] = check
    return checks


def _kernels() -> Any:
    from . import kernels

    return kernels


def check_reductions_repeat_bitwise() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    k = _kernels()
    for func in (k.dot, k.total32, k.variance, k.product):
        acc = accelerate(func)
        spec = k.KERNELS_BY_NAME[func.__name__]
        args = spec.make_args(131, np.random.default_rng(5))
        first = _cuda.call_cuda(acc, k.copy_args(args), {})
        for _ in range(2):
            again = _cuda.call_cuda(acc, k.copy_args(args), {})
            assert repr(again) == repr(first), f"{func.__name__}: {again!r} != {first!r}"


def check_launch_options() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda
    from loopscale.errors import LevelError

    k = _kernels()
    acc = accelerate(k.sum_and_sumsq)
    x = k.KERNELS_BY_NAME["sum_and_sumsq"].make_args(131, np.random.default_rng(2))[0]
    expected = k.sum_and_sumsq(x.copy())
    for opts in ({"threads_per_block": 64}, {"blocks_per_grid": 1},
                 {"threads_per_block": 32, "blocks_per_grid": 5}):
        got = _cuda.call_cuda(acc, (x,), {}, opts)
        close_enough(got, expected, f"options {opts}")
        t = acc.last_cuda_timings
        if "threads_per_block" in opts:
            assert t["threads_per_block"] == opts["threads_per_block"], t
        if "blocks_per_grid" in opts:
            assert t["blocks"] == opts["blocks_per_grid"], t
    for bad, word in (({"threads_per_block": 48}, "power of two"),
                      ({"blocks_per_grid": 0}, "positive"),
                      ({"max_workers": 4}, "threads_per_block")):
        try:
            _cuda.call_cuda(acc, (x,), {}, bad)
        except LevelError as exc:
            assert word in str(exc), str(exc)
        else:
            raise AssertionError(f"{bad} accepted")


def check_only_written_arrays_come_back() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    k = _kernels()
    acc = accelerate(k.axpy)
    rng = np.random.default_rng(3)
    x, y, out = rng.random(101), rng.random(101), np.zeros(101)
    x0, y0 = x.copy(), y.copy()
    assert _cuda.call_cuda(acc, (2.0, x, y, out), {}) is None
    close_enough(out, 2.0 * x0 + y0, "out")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    t = acc.last_cuda_timings
    assert t["bytes_to_device"] == 3 * 101 * 8, t
    assert t["bytes_to_host"] == 101 * 8, t
    for key in ("to_device_s", "kernel_s", "to_host_s"):
        assert t[key] >= 0.0, t
    line = _cuda.format_timings(t)
    assert "to device" in line and "kernel" in line and "to host" in line, line
    # a written array that is not contiguous gets its values back too
    big = np.zeros(202)
    _cuda.call_cuda(acc, (2.0, x, y, big[::2]), {})
    close_enough(big[::2], 2.0 * x0 + y0, "strided out")
    assert not big[1::2].any()


def check_device_arrays_stay_on_device() -> None:
    from numba import cuda

    from loopscale import accelerate
    from loopscale.accel import _cuda

    k = _kernels()
    acc = accelerate(k.axpy)
    rng = np.random.default_rng(4)
    x, y = rng.random(77), rng.random(77)
    dx, dy, dout = cuda.to_device(x), cuda.to_device(y), cuda.to_device(np.zeros(77))
    assert _cuda.call_cuda(acc, (3.0, dx, dy, dout), {}) is None
    t = acc.last_cuda_timings
    assert t["bytes_to_device"] == 0 and t["bytes_to_host"] == 0, t
    close_enough(dout.copy_to_host(), 3.0 * x + y, "device out")
    # a reduction over device arrays
    acc2 = accelerate(k.dot)
    close_enough(_cuda.call_cuda(acc2, (dx, dy), {}), k.dot(x, y), "device dot")


def check_unmovable_argument_is_a_type_error() -> None:
    from decimal import Decimal

    from loopscale import accelerate
    from loopscale.accel import _cuda

    k = _kernels()
    acc = accelerate(k.axpy)
    x = np.ones(9)
    for bad, what in ((Decimal(2), "decimal.Decimal"), ({"a": 1}, "dict")):
        try:
            _cuda.call_cuda(acc, (bad, x, x.copy(), np.zeros(9)), {})
        except TypeError as exc:
            assert "argument 'a' of axpy()" in str(exc) and what in str(exc), str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    try:
        _cuda.call_cuda(acc, (1.0, x, x, np.zeros(9, dtype=object)), {})
    except TypeError as exc:
        assert "'out'" in str(exc) and "object" in str(exc), str(exc)
    else:
        raise AssertionError("object array accepted")


def check_short_argument_is_named() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda
    from loopscale.errors import ArgumentValueError

    k = _kernels()
    acc = accelerate(k.axpy)
    try:
        _cuda.call_cuda(acc, (1.0, np.ones(9), np.ones(5), np.zeros(9)), {})
    except ArgumentValueError as exc:
        assert "'y'" in str(exc) and "too short" in str(exc), str(exc)
    else:
        raise AssertionError("a short y was accepted (the device would read out of bounds)")


def check_out_of_memory_names_both_sizes() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    k = _kernels()
    acc = accelerate(k.axpy)
    x = np.ones(100)
    free = _cuda._memory_info()[0]
    if math.isfinite(free):  # a real device: ask for more than it has
        ask = int(free) * 2 + 1
        try:
            _cuda.check_device_memory(ask)
        except MemoryError as exc:
            assert f"{ask:,}" in str(exc) and "free" in str(exc), str(exc)
        else:
            raise AssertionError("no error for more than the free memory")
    real = _cuda._memory_info
    _cuda._memory_info = lambda: (1000.0, 4000.0)
    try:
        _cuda.call_cuda(acc, (1.0, x, x.copy(), np.zeros(100)), {})
    except MemoryError as exc:
        assert "2,400 bytes" in str(exc) and "1,000 bytes of 4,000" in str(exc), str(exc)
    else:
        raise AssertionError("no error for more than the free memory")
    finally:
        _cuda._memory_info = real
    out = np.zeros(100)
    _cuda.call_cuda(acc, (1.0, x, x.copy(), out), {})  # the next small call works
    close_enough(out, 2.0 * x, "after the memory error")


def check_arrays_sharing_memory() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    k = _kernels()
    acc = accelerate(k.axpy)
    x, y = np.arange(10.0), np.ones(10)
    got = _cuda.call_cuda(acc, (2.0, x, y, x[::-1]), {})  # out is x reversed: a hidden alias
    assert isinstance(got, _cuda.RunOnCpu) and "share memory" in got.reason, got
    np.testing.assert_array_equal(x, np.arange(10.0))  # nothing was run
    _cuda.call_cuda(acc, (2.0, x, y, x), {})  # out is x itself: one device copy, in place
    close_enough(x, 2.0 * np.arange(10.0) + 1.0, "in place")


def check_helper_and_prange() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    acc = accelerate(_hypot_map)
    a, b = np.arange(31.0), np.arange(31.0)[::-1].copy()
    close_enough(_cuda.call_cuda(acc, (a, b), {}), _hypot_map(a, b), "helper map")


def _hypot(a, b):
    return math.sqrt(_sq(a) + _sq(b))


def _sq(v):
    return v * v


def _hypot_map(a, b):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = _hypot(a[i], b[i])
    return out


def _running_rows(out):
    for i in range(1, out.shape[0]):
        row = out[i]  # a number for a 1-D `out`, a row (a chain of rows) for a 2-D one
        row += out[i - 1]


def check_row_view_of_more_dimensions_stays_on_cpu() -> None:
    from loopscale import accelerate
    from loopscale.accel import _cuda

    acc = accelerate(_running_rows)
    a = np.ones(70)
    assert _cuda.call_cuda(acc, (a,), {}) is None  # 1-D: a private number, on the device
    np.testing.assert_array_equal(a, np.ones(70))
    m = np.ones((70, 3))
    got = _cuda.call_cuda(acc, (m,), {})
    assert isinstance(got, _cuda.RunOnCpu) and "`out` has 2 dimensions" in got.reason, got
    np.testing.assert_array_equal(m, np.ones((70, 3)))  # nothing was run
    gpu = accelerate(target="cuda")(_running_rows)  # through the decorator: on the CPU, in order
    gpu(m)
    np.testing.assert_array_equal(m, np.cumsum(np.ones((70, 3)), axis=0))
    a = np.ones(70)
    gpu(a)  # and the next 1-D call goes to the device again
    assert "on_cpu" not in gpu.last_cuda_timings, gpu.last_cuda_timings


def _argmin(x):
    best = np.inf
    idx = -1
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = i
    return best, idx


def _any_negative(x):
    found = False
    for i in range(x.shape[0]):
        if x[i] < 0:
            found = True
    return found


def _histogram(x):
    h = np.zeros(5, np.int64)
    for i in range(x.shape[0]):
        h[int(x[i]) % 5] += 1
    return h


def check_positions_flags_and_scatter_sums_stay_on_cpu() -> None:
    # `if x[i] < best: best = x[i]; idx = i`, `found = True`, `h[b] += 1`: the
    # device reduction combines numbers, not positions, flags or arrays; the
    # call runs on the CPU, correctly, and says why
    from loopscale import accelerate
    from loopscale.accel import _cuda

    x = np.array([3.0, 1.0, 2.0, 1.0, np.nan] * 20)
    for fn, words, want in [
            (_argmin, "`idx` follows the min of `best`", (1.0, 1)),
            (_any_negative, "`found` is set to True", False),
            (_histogram, "`h` is added into at any index", np.full(5, 20))]:
        if fn is _histogram:
            x = np.arange(100.0)
        got = _cuda.call_cuda(accelerate(fn), (x,), {})
        assert isinstance(got, _cuda.RunOnCpu) and words in got.reason, got
        gpu = accelerate(target="cuda")(fn)
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(gpu(x), want)
        else:
            assert gpu(x) == want
        assert words in gpu.last_cuda_timings["on_cpu"], gpu.last_cuda_timings


def _half_rows(M, out):
    for i in range(M.shape[0]):
        out[i, :] = M[i, :] * 0.5


def _negated_rows(M, out):
    for i in range(M.shape[0]):
        out[i, :] = -M[i, :]


def check_row_arithmetic_stays_on_cpu_with_the_reason() -> None:
    # `M[i, :] * 0.5` makes a new array, which a kernel cannot allocate: the
    # simulator raised a bare TypeError ('FakeWithinKernelCUDAArray' * float)
    from loopscale import accelerate

    M = np.arange(12.0).reshape(3, 4)
    for fn, want in [(_half_rows, M * 0.5), (_negated_rows, -M)]:
        gpu = accelerate(target="cuda")(fn)
        out = np.zeros_like(M)
        gpu(M, out)
        np.testing.assert_array_equal(out, want)
        reason = gpu.last_cuda_timings["on_cpu"]
        assert "computes with a slice of an array" in reason and "inner loop" in reason, reason


def _scaled_by(k: float) -> Callable[..., None]:
    def scaled(x, out, scale=k, *, shift=k + 1):  # noqa: ANN001, ANN202
        for i in range(x.shape[0]):
            out[i] = x[i] * scale + shift
    return scaled


def check_default_values_are_the_functions_own() -> None:
    # defaults made from the enclosing scope (`scale=k`) are the values Python
    # evaluated at `def`, not the source evaluated again (a NameError there)
    from loopscale import accelerate

    gpu = accelerate(target="cuda")(_scaled_by(2.0))
    x = np.arange(64.0)
    out = np.zeros(64)
    gpu(x, out)
    np.testing.assert_array_equal(out, x * 2.0 + 3.0)
    gpu(x, out, 0.5, shift=1.0)
    np.testing.assert_array_equal(out, x * 0.5 + 1.0)


CHECKS: dict[str, Callable[[], None]] = {
    name[len("check_"):]: obj for name, obj in list(globals().items())
    if name.startswith("check_") and callable(obj)
}


def run_checks(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the checks (all, or *names*); ``{name: {"ok", "error", "seconds"}}``."""
    checks = {**_corpus(), **CHECKS}
    out = {}
    for name, check in checks.items():
        if names and name not in names:
            continue
        t0 = time.perf_counter()
        try:
            check()
            out[name] = {"ok": True, "error": None}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out[name] = {"ok": False, "error": "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:]}
        out[name]["seconds"] = round(time.perf_counter() - t0, 3)
    return out


CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from tests.accel.test_cuda_sim import run_checks
print("LOOPSCALE-CHECKS " + json.dumps(run_checks()))
"""


def parse_child(stdout: str) -> dict[str, dict[str, Any]]:
    for line in stdout.splitlines():
        if line.startswith("LOOPSCALE-CHECKS "):
            return json.loads(line[len("LOOPSCALE-CHECKS "):])  # type: ignore[no-any-return]
    raise AssertionError(f"the child printed no results:\n{stdout[-3000:]}")


def check_names() -> list[str]:
    from .kernels import KERNELS

    return [f"corpus_{k.name}" for k in KERNELS] + list(CHECKS)


# ---------------------------------------------------------------------------
# the tests


@pytest.fixture(scope="module")
def sim_results(run_python) -> dict[str, dict[str, Any]]:  # noqa: ANN001
    proc = run_python(CHILD.format(root=ROOT), timeout=240,
                      env={"NUMBA_ENABLE_CUDASIM": "1", "PYTHONWARNINGS": "ignore"})
    return parse_child(proc.stdout)


def _names_for_params() -> list[str]:
    return check_names()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", _names_for_params())
def test_cuda_path_under_simulator(sim_results, name: str) -> None:
    assert name in sim_results, f"check {name} did not run"
    rec = sim_results[name]
    assert rec["ok"], f"{name} failed in the simulator child:\n{rec['error']}"


def test_close_enough_detects_a_wrong_answer() -> None:
    close_enough(np.float64(1.0) + 1e-12, 1.0, "near")
    close_enough((3, np.ones(2, np.float32)), (3, np.ones(2, np.float32)), "tuple")
    for got, expected in ((1.0 + 1e-6, 1.0), (np.int64(3), 4), (np.ones(2, np.float32),
                                                                np.ones(2)),
                          (np.ones(3), np.ones(2)), (None, 1.0)):
        with pytest.raises(AssertionError):
            close_enough(got, expected, "wrong")


_NO_SIM_CHILD = """
import json, sys, warnings
sys.path.insert(0, {root!r})
import numpy as np
import loopscale.accel._cuda as C
assert "numba.cuda" not in sys.modules, "importing _cuda imported numba.cuda"
ok, reason = C.cuda_status()
out = {{"ok": ok, "reason": reason, "imported_cuda_in_process": "numba.cuda" in sys.modules}}
if not ok:
    from loopscale import accelerate
    from loopscale.errors import CudaUnavailableError, FallbackWarning
    from tests.accel.kernels import total
    acc = accelerate(total)
    try:
        C.call_cuda(acc, (np.ones(3),), {{}})
        out["raised"] = None
    except CudaUnavailableError as exc:
        out["raised"] = str(exc)
    acc2 = accelerate(fallback=True)(total)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = C.call_cuda(acc2, (np.ones(3),), {{}})
        second = C.call_cuda(acc2, (np.ones(3),), {{}})
    out["fallback"] = [first is C.RUN_ON_CPU, second is C.RUN_ON_CPU]
    out["warnings"] = [w.category.__name__ for w in caught]
print("LOOPSCALE-STATUS " + json.dumps(out))
"""


#: The no-GPU checks hide any GPU (CUDA_VISIBLE_DEVICES=""), so that they check
#: the same path on the GPU machine as on CI (cuInit then reports no device).
NO_GPU = {"NUMBA_ENABLE_CUDASIM": "0", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def no_sim_status(run_python) -> dict[str, Any]:  # noqa: ANN001
    env = NO_GPU
    proc = run_python(_NO_SIM_CHILD.format(root=ROOT), timeout=120, env=env)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("LOOPSCALE-STATUS "))
    return json.loads(line[len("LOOPSCALE-STATUS "):])  # type: ignore[no-any-return]


def test_cuda_status_probes_in_a_child_and_never_imports_cuda_here(no_sim_status) -> None:
    # (with a GPU too: the probe is a child process; it asserted that a process
    # whose probe succeeded had imported numba.cuda, and failed on the GPU machine)
    assert no_sim_status["imported_cuda_in_process"] is False
    assert no_sim_status["ok"] is False, no_sim_status
    assert no_sim_status["reason"]


def test_without_a_gpu_the_call_raises_cuda_unavailable_with_reason(no_sim_status) -> None:
    if no_sim_status["ok"]:
        pytest.skip(f"a GPU is present: {no_sim_status['reason']}")
    msg = no_sim_status["raised"]
    assert msg is not None, "no CudaUnavailableError"
    assert no_sim_status["reason"] in msg
    assert "pip install" in msg and "target='cpu'" in msg and "fallback=True" in msg


def test_without_a_gpu_fallback_warns_once_and_runs_on_cpu(no_sim_status) -> None:
    if no_sim_status["ok"]:
        pytest.skip(f"a GPU is present: {no_sim_status['reason']}")
    assert no_sim_status["fallback"] == [True, True]
    assert no_sim_status["warnings"] == ["FallbackWarning"]


def test_unavailable_reasons_say_what_is_missing() -> None:
    from loopscale.accel import _cuda

    r = _cuda._explain_reason("import: ModuleNotFoundError: No module named 'numba.cuda'")
    assert "numba-cuda" in r and "pip install" in r
    r = _cuda._explain_reason("Error at driver init: CUDA driver library cannot be found.")
    assert r.startswith("no CUDA driver")
    r = _cuda._explain_reason("the CUDA driver reports no devices")
    assert r.startswith("no CUDA device")


def test_a_probe_that_crashes_is_reported_not_raised(monkeypatch) -> None:  # noqa: ANN001
    from loopscale.accel import _cuda

    monkeypatch.setattr(_cuda, "_PROBE", "import os; os.abort()")
    ok, reason = _cuda._probe_child(timeout=60)
    assert not ok and "crashed" in reason
    monkeypatch.setattr(_cuda, "_PROBE", "import time; time.sleep(30)")
    ok, reason = _cuda._probe_child(timeout=1)
    assert not ok and "did not finish" in reason


_PTX_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import numpy as np
try:
    from numba.cuda.cudadrv import nvvm
    nvvm.NVVM()
except Exception as exc:
    print("LOOPSCALE-PTX " + json.dumps({{"skip": "NVVM is not installed (pip install "
          "'numba-cuda[cu12]'): %s" % " ".join(str(exc).split())[:200]}}))
    sys.exit(0)
from loopscale import accelerate
from loopscale.accel import _cuda
from tests.accel.kernels import KERNELS, copy_args
out = {{}}
for k in KERNELS:
    try:
        args = copy_args(k.make_args(7, np.random.default_rng(1)))
        r = _cuda.compile_ptx(accelerate(k.func), args)
        out[k.name] = {{"cpu": r.reason}} if isinstance(r, _cuda.RunOnCpu) else {{
            "entry": ".entry" in r, "shared": ".shared" in r, "bar": "bar.sync" in r}}
    except Exception as exc:
        out[k.name] = {{"error": "%s: %s" % (type(exc).__name__, " ".join(str(exc).split())[:300])}}
print("LOOPSCALE-PTX " + json.dumps(out))
"""

#: Kernels whose helpers are CUDA device functions: compiling a device function
#: asks the driver for the current device, so without a driver their PTX cannot
#: be made (the simulator checks run them).
_HELPER_KERNELS = {"black_scholes", "gelu_map"}


@pytest.mark.timeout(300)
def test_every_parallel_corpus_kernel_compiles_to_ptx_without_a_gpu(run_python) -> None:  # noqa: ANN001
    from .kernels import KERNELS

    proc = run_python(_PTX_CHILD.format(root=ROOT), timeout=240,
                      env={"NUMBA_ENABLE_CUDASIM": "0", "PYTHONWARNINGS": "ignore"})
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("LOOPSCALE-PTX "))
    out = json.loads(line[len("LOOPSCALE-PTX "):])
    if "skip" in out:
        pytest.skip(out["skip"])
    compiled = 0
    for k in KERNELS:
        rec = out[k.name]
        if "error" in rec and "driver" in rec["error"]:
            # some Numba CUDA builds ask the driver for the device while
            # compiling helpers or builtins; the simulator checks run those
            continue
        compiled += "entry" in rec
        assert "error" not in rec, f"{k.name}: {rec['error']}"
        if not k.parallel or k.kind == "scatter":
            assert "cpu" in rec, f"{k.name} would run on the device"
            continue
        assert rec["entry"], k.name
        if k.kind == "reduction":  # the per-block tree in shared memory
            assert rec["shared"] and rec["bar"], f"{k.name}: {rec}"
    assert compiled >= 10, f"only {compiled} kernels compiled to PTX: {out}"


# ---------------------------------------------------------------------------
# @accelerate(target="cuda") and the cuda level, through the decorator

_WIRED_CHILD = """
import sys, json
sys.path.insert(0, {root!r})
import numpy as np
import loopscale
from loopscale import accelerate
from tests.accel.kernels import dot, axpy
x = np.arange(40.0)
out = {{}}
if {level!r}:
    with loopscale.level("cuda", threads_per_block=64):
        g = accelerate(axpy)
        o = np.zeros(40)
        g(2.0, x, x, o)
        out["result"] = o.tolist()
        out["explain"] = g.explain()
else:
    f = accelerate(target="cuda")(dot)
    out["result"] = f(x, x)
    out["explain"] = f.explain()
print("LOOPSCALE-WIRED " + json.dumps(out))
"""


def _wired(run_python, level: bool) -> dict[str, Any]:  # noqa: ANN001
    proc = run_python(_WIRED_CHILD.format(root=ROOT, level=level), timeout=120,
                      env={"NUMBA_ENABLE_CUDASIM": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("LOOPSCALE-WIRED "))
    return json.loads(line[len("LOOPSCALE-WIRED "):])  # type: ignore[no-any-return]


def test_target_cuda_runs_the_kernel_under_simulator(run_python) -> None:  # noqa: ANN001
    out = _wired(run_python, level=False)
    assert out["result"] == float(np.dot(np.arange(40.0), np.arange(40.0)))
    assert "kernel" in out["explain"] and "to device" in out["explain"], out["explain"]


def test_level_cuda_runs_the_kernel_under_simulator(run_python) -> None:  # noqa: ANN001
    out = _wired(run_python, level=True)
    assert out["result"] == (3.0 * np.arange(40.0)).tolist()
    assert "32 threads" not in out["explain"] and "x 64 threads" in out["explain"], \
        out["explain"]


def test_target_cuda_without_gpu_raises_with_reason(run_python) -> None:  # noqa: ANN001
    proc = run_python(f"""
import sys
sys.path.insert(0, {ROOT!r})
import numpy as np
from loopscale import accelerate
from loopscale.errors import CudaUnavailableError
from tests.accel.kernels import total
try:
    accelerate(target="cuda")(total)(np.ones(3))
except CudaUnavailableError as exc:
    print("MSG", exc)
""", timeout=120, env=NO_GPU, check=False)
    assert "MSG" in proc.stdout
    assert "not implemented" not in proc.stdout
    assert "pip install" in proc.stdout


def _raised_in(filename: str) -> AttributeError:
    """An AttributeError on the numpy module raised from code in *filename*."""
    code = compile("import numpy as np\nnp.row_stack_removed_in_this_test", filename, "exec")
    try:
        exec(code, {})
    except AttributeError as exc:
        return exc
    raise AssertionError("no AttributeError")


def test_numba_cuda_failing_against_numpy_is_named_with_the_fix() -> None:
    from loopscale.accel._cuda import broken_install, unavailable_message

    exc = _raised_in("/site-packages/numba_cuda/numba/cuda/np/arrayobj.py")
    reason = broken_install(exc)
    assert reason is not None
    assert f"NumPy {np.__version__}" in reason and "pip install 'numpy<" in reason
    assert "row_stack_removed_in_this_test" in reason
    assert "pip install" in unavailable_message(reason, "f")
    # the same error from the user's own code, or another error, is not numba-cuda's
    assert broken_install(_raised_in("/home/user/script.py")) is None
    assert broken_install(ValueError("module 'numpy' has no attribute 'x'")) is None
