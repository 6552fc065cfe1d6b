"""Differential tests: every corpus kernel, compiled, gives the plain-Python answer.

The reference is the undecorated function (``.py_func``) run on an identical,
independently generated copy of the inputs (kernels write their outputs).
Tolerances are the compiler's documented promise (see ``kernels.py``):

* integers, and float results that are not reductions over the analysed loop,
  must match exactly (``fastmath=False``);
* float reductions: ``rtol=1e-10`` for float64/complex128, ``rtol=1e-4`` for
  float32.

Each kernel is decorated once per process (``kernels.accelerated``) so Numba
compiles once per type signature, not once per Hypothesis example.
"""

from __future__ import annotations

import inspect
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba.core import event

import loopscale
from loopscale import accelerate, level
from loopscale.config import installed_levels
from loopscale.errors import ArgumentError, ArgumentValueError

from .kernels import KERNELS, KERNELS_BY_NAME, Kernel, accelerated, assert_results_match

pytestmark = pytest.mark.timeout(600)

SIZES = st.one_of(st.sampled_from([0, 1, 2, 3, 5, 7, 9, 17]), st.integers(0, 300))
SEEDS = st.integers(0, 2**32 - 1)

LINEAR = [k for k in KERNELS if k.kind in ("map", "reduction", "sequential", "stencil",
                                           "scatter")]
LINEAR = [k for k in LINEAR if k.name != "laplacian_2d"]
REDUCTIONS = [k for k in KERNELS if k.kind == "reduction"]
TWO_D = [
    k
    for k in KERNELS
    if any(
        isinstance(a, np.ndarray) and a.ndim == 2
        for a in k.make_args(9, np.random.default_rng(0))
    )
]


def _ids(kernel: Kernel) -> str:
    return kernel.name


def _strided(a: np.ndarray) -> np.ndarray:
    """A non-contiguous view holding the same values as *a* (every other element)."""
    big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _layout(args: tuple, layout: str) -> tuple:
    if layout == "C":
        return args
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            if layout == "strided":
                a = _strided(a)
                assert a.size <= 1 or not a.flags.c_contiguous
            elif layout == "F":
                a = np.asfortranarray(a)
        out.append(a)
    return tuple(out)


def _check(kernel: Kernel, n: int, seed: int, layout: str = "C", fn=None) -> None:
    fn = fn if fn is not None else accelerated(kernel)
    py_args = _layout(kernel.make_args(n, np.random.default_rng(seed)), layout)
    jit_args = _layout(kernel.make_args(n, np.random.default_rng(seed)), layout)
    expected = kernel.func(*py_args)
    got = fn(*jit_args)
    assert_results_match(got, expected, exact=kernel.exact, what=f"{kernel.name} return value")
    for k, (g, e) in enumerate(zip(jit_args, py_args, strict=True)):
        if isinstance(e, np.ndarray):
            assert_results_match(g, e, exact=kernel.exact, what=f"{kernel.name} argument {k}")


def test_corpus_has_at_least_thirty_kernels_with_both_verdicts():
    assert len(KERNELS) >= 30
    assert any(k.parallel for k in KERNELS) and any(not k.parallel for k in KERNELS)


@pytest.mark.parametrize("kernel", KERNELS, ids=_ids)
@settings(max_examples=8, deadline=None)
@given(n=SIZES, seed=SEEDS)
@example(n=0, seed=0)
@example(n=1, seed=1)
@example(n=2, seed=2)
@example(n=7, seed=3)
def test_compiled_kernel_matches_python(kernel, n, seed):
    _check(kernel, n, seed)


@pytest.mark.parametrize("kernel", KERNELS, ids=_ids)
@settings(max_examples=3, deadline=None)
@given(n=SIZES, seed=SEEDS)
@example(n=0, seed=0)
@example(n=5, seed=5)
def test_compiled_kernel_matches_python_on_non_contiguous_views(kernel, n, seed):
    _check(kernel, n, seed, layout="strided")


@pytest.mark.parametrize("kernel", TWO_D, ids=_ids)
@settings(max_examples=3, deadline=None)
@given(n=SIZES, seed=SEEDS)
@example(n=0, seed=0)
@example(n=30, seed=5)
def test_compiled_kernel_matches_python_on_fortran_ordered_arrays(kernel, n, seed):
    _check(kernel, n, seed, layout="F")


def test_two_d_corpus_is_not_empty():
    assert {"laplacian_2d", "matmul", "nbody", "mandelbrot", "matvec"} <= {k.name for k in TWO_D}


@pytest.mark.parametrize("n", [4099, 100_003])
@pytest.mark.parametrize("kernel", LINEAR, ids=_ids)
def test_compiled_kernel_matches_python_over_many_blocks(kernel, n):
    # Sizes large enough to span several reduction blocks and several chunks.
    _check(kernel, n, seed=n)


@pytest.mark.parametrize("kernel", KERNELS, ids=_ids)
def test_serial_level_is_bit_identical_to_default_level(kernel):
    # The same plan, combined in the same fixed order, whatever runs it.
    n = 50_001 if kernel in LINEAR else 2_000
    fn = accelerated(kernel)
    args_default = kernel.make_args(n, np.random.default_rng(11))
    args_serial = kernel.make_args(n, np.random.default_rng(11))
    got_default = fn(*args_default)
    with level("serial"):
        got_serial = fn(*args_serial)
    assert_results_match(got_serial, got_default, exact=True, what="serial vs default")
    for g, e in zip(args_serial, args_default, strict=True):
        if isinstance(e, np.ndarray):
            assert_results_match(g, e, exact=True, what="serial vs default output")


@pytest.mark.skipif("threads" not in installed_levels(), reason="threads level not installed")
@pytest.mark.parametrize("max_workers", [1, 2, 3, 7])
@pytest.mark.parametrize("kernel", [k for k in KERNELS if k.kind != "nested"], ids=_ids)
def test_threads_level_is_bit_identical_to_serial_for_any_worker_count(kernel, max_workers):
    fn = accelerated(kernel)
    args_serial = kernel.make_args(100_003, np.random.default_rng(5))
    args_threads = kernel.make_args(100_003, np.random.default_rng(5))
    with level("serial"):
        got_serial = fn(*args_serial)
    with level("threads", max_workers=max_workers):
        got_threads = fn(*args_threads)
    assert_results_match(got_threads, got_serial, exact=True, what="threads vs serial")
    for g, e in zip(args_threads, args_serial, strict=True):
        if isinstance(e, np.ndarray):
            assert_results_match(g, e, exact=True, what="threads vs serial output")


class _CompileCounter(event.Listener):
    def __init__(self) -> None:
        self.count = 0

    def on_start(self, ev) -> None:
        pass

    def on_end(self, ev) -> None:
        self.count += 1


@pytest.mark.parametrize("kernel", KERNELS, ids=_ids)
def test_every_corpus_kernel_runs_numba_compiled_code(kernel):
    # Guards the differential tests against a "compiler" that just runs Python.
    fn = accelerate(cache=False)(kernel.func)
    counter = _CompileCounter()
    with event.install_listener("numba:compile", counter):
        _check(kernel, 17, seed=0, fn=fn)
    assert counter.count > 0


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k.kind == "reduction"], ids=_ids)
def test_serial_level_matches_python(kernel):
    with level("serial"):
        _check(kernel, 10_007, seed=3)


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

GENERIC = ["axpy", "stencil_1d", "total", "dot", "sum_of_squares", "every_third"]


def _cast(args: tuple, dtype: np.dtype) -> tuple:
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            if np.issubdtype(dtype, np.integer):
                a = np.round(a * 100).astype(dtype)
            elif np.issubdtype(dtype, np.complexfloating):
                a = a.astype(dtype) * np.asarray(1 + 0.5j, dtype=dtype)
            else:
                a = a.astype(dtype)
        elif isinstance(a, float):
            a = np.dtype(dtype).type(a)
        out.append(a)
    return tuple(out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", GENERIC)
@settings(max_examples=4, deadline=None)
@given(n=SIZES, seed=SEEDS)
@example(n=0, seed=0)
@example(n=1, seed=0)
def test_compiled_kernel_matches_python_for_each_dtype(name, dtype, n, seed):
    kernel = KERNELS_BY_NAME[name]
    fn = accelerated(kernel)
    py_args = _cast(kernel.make_args(n, np.random.default_rng(seed)), dtype)
    jit_args = _cast(kernel.make_args(n, np.random.default_rng(seed)), dtype)
    expected = kernel.func(*py_args)
    got = fn(*jit_args)
    exact = kernel.exact
    if name == "stencil_1d" and dtype is np.complex128:
        # complex / int: Numba follows CPython's complex division, NumPy's
        # complex128 scalars use their own algorithm; they differ by an ulp.
        exact = False
    assert_results_match(got, expected, exact=exact, what=f"{name} {dtype}")
    for g, e in zip(jit_args, py_args, strict=True):
        if isinstance(e, np.ndarray):
            assert_results_match(g, e, exact=exact, what=f"{name} {dtype} output")


# ---------------------------------------------------------------------------
# min/max reductions: NaN and signed zeros where the loop, run in order, keeps them
# ---------------------------------------------------------------------------
# Python's min(a, b) is `b if b < a else a`: `s = min(x[i], s)` takes a NaN x[i]
# and drops it at the next element; `s = min(s, x[i])` never takes one; `if x[i]
# <= s` keeps the later of -0.0 and 0.0. The per-block partials must give the same.


def min_element_first(x, s):
    for i in range(x.shape[0]):
        s = min(x[i], s)
    return s


def min_accumulator_first(x, s):
    for i in range(x.shape[0]):
        s = min(s, x[i])
    return s


def max_element_first(x, s):
    for i in range(x.shape[0]):
        s = max(x[i], s)
    return s


def max_accumulator_first(x, s):
    for i in range(x.shape[0]):
        s = max(s, x[i])
    return s


def min_if_less_or_equal(x, s):
    for i in range(x.shape[0]):
        if x[i] <= s:
            s = x[i]
    return s


def max_if_accumulator_less(x, s):
    for i in range(x.shape[0]):
        if s < x[i]:
            s = x[i]
    return s


def min_two_updates(x, s):
    for i in range(x.shape[0]):
        s = min(x[i], s)
        s = min(x[x.shape[0] - 1 - i] * 2, s)
    return s


MINMAX = [min_element_first, min_accumulator_first, max_element_first, max_accumulator_first,
          min_if_less_or_equal, max_if_accumulator_less, min_two_updates]
MINMAX_ACC = {f.__name__: accelerate(f) for f in MINMAX}


def _same_value(got, want) -> bool:
    """Equal as Python sees it, and NaN for NaN, -0.0 for -0.0."""
    g, w = np.float64(got), np.float64(want)
    if np.isnan(g) or np.isnan(w):
        return bool(np.isnan(g) and np.isnan(w))
    return bool(g == w and np.signbit(g) == np.signbit(w))


def _minmax_data(n: int, where: str, dtype, rng) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-50, 50, n).astype(dtype)
    x = rng.choice(np.array([0.0, -0.0, 1.0, -1.0, 3.0, -3.0, np.inf, -np.inf]), n)
    x = x.astype(dtype)
    bs = 16  # the least block length of a reduction (loopscale.accel._runtime.MIN_BLOCK)
    spots = {"last": [n - 1], "first": [0], "middle": [n // 2],
             "block edges": [bs - 1, bs, 5 * bs - 1], "many": list(rng.integers(0, n, 40)),
             "none": []}[where]
    x[[k for k in spots if k < n]] = np.nan
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("where", ["last", "first", "middle", "block edges", "many", "none"])
@pytest.mark.parametrize("name", [f.__name__ for f in MINMAX])
def test_min_max_reductions_keep_nan_and_signed_zero_as_the_loop_does(name, where, dtype):
    fn = MINMAX_ACC[name]
    rng = np.random.default_rng(abs(hash((name, where))) % 2**32)
    for n, x in [(3, np.array([3.0, 1.0, np.nan], dtype=dtype) if dtype != np.int64
                  else np.array([3, 1, 2])),
                 (1000, _minmax_data(1000, where, dtype, rng))]:
        starts = ([np.inf, -np.inf, 0.0, -0.0, np.nan] if dtype != np.int64
                  else [10**6, -10**6, 0])
        for s0 in starts:
            want = fn.py_func(x, s0)
            results = []
            with level("serial"):
                results.append(("serial", fn(x, s0)))
            for w in (1, 2, 3, 7):
                with level("threads", max_workers=w):
                    results.append((f"threads({w})", fn(x, s0)))
            for lvl, got in results:
                assert _same_value(got, want), (name, where, n, s0, lvl, got, want)
    assert fn.analysis.parallel is True, fn.analysis.reason
    assert set(fn.analysis.reductions.values()) <= {"min", "max"}


# ---------------------------------------------------------------------------
# pandas
# ---------------------------------------------------------------------------


def add_one_and_return_input(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] + 1.0
    return x


add_one_and_return_input_acc = accelerate(add_one_and_return_input)


def test_series_arguments_give_the_python_result():
    kernel = KERNELS_BY_NAME["axpy"]
    a, x, y, out = kernel.make_args(1001, np.random.default_rng(0))
    expected = np.zeros_like(out)
    kernel.func(a, pd.Series(x), pd.Series(y, index=pd.Index(np.arange(1001))), expected)
    # a default index, and an integer index that is 0..n-1: y[i] is position i
    accelerated(kernel)(a, pd.Series(x), pd.Series(y, index=pd.Index(np.arange(1001))), out)
    np.testing.assert_array_equal(out, expected)


def _series_total(x):
    t = 0.0
    for v in x:
        t += v
    return t


def _series_dot(x, y):
    t = 0.0
    for k, (a, b) in enumerate(zip(x, y)):  # noqa: B905 (as users write it)
        t += a * b * (k % 3)
    return t


def test_iterating_a_series_with_any_index_gives_its_values_in_order():
    # `for v in x` iterates a Series' values whatever its index: no `x[i]` is
    # written, so nothing looks up a label (the loop is read as a range loop
    # internally, which must not make it refused)
    rng = np.random.default_rng(4)
    x = pd.Series(rng.random(5001), index=rng.permutation(5001) * 3)
    y = pd.Series(rng.random(5001), index=[f"k{i}" for i in range(5001)])
    for lvl in ("serial", "threads"):
        with level(lvl):
            assert accelerate(_series_total)(x) == pytest.approx(_series_total(x), rel=1e-12)
            assert accelerate(_series_dot)(x, y) == pytest.approx(_series_dot(x, y), rel=1e-12)
    # a DataFrame iterates its column labels in Python: refused, as when indexed
    with pytest.raises(ArgumentError, match=r"iterates it \(`for \.\.\. in x`, line \d+\).*"
                       "column labels"):
        accelerate(_series_total)(pd.DataFrame({"a": x.to_numpy()}))


@pytest.mark.parametrize("index", ["sorted", "strided", "strings", "floats", "dataframe"])
def test_pandas_arguments_whose_x_i_is_not_position_i_are_refused(index):
    # Python's y[i] on these looks up a label (or a column): the compiled
    # function, which reads positions, would give another answer silently
    kernel = KERNELS_BY_NAME["axpy"]
    a, x, y, out = kernel.make_args(11, np.random.default_rng(0))
    labels = {"sorted": np.arange(11)[::-1], "strided": np.arange(11) * 7,
              "strings": [f"k{i}" for i in range(11)], "floats": np.arange(11) + 0.5,
              "dataframe": None}[index]
    arg = pd.DataFrame({"y": y}) if index == "dataframe" else pd.Series(y, index=labels)
    if index == "strings" and int(pd.__version__.split(".")[0]) < 3:
        pytest.skip("pandas 2 reads positions through a string index")
    error = ArgumentError if index == "dataframe" else ArgumentValueError
    with pytest.raises(error) as info:
        accelerated(kernel)(a, pd.Series(x), arg, out)
    msg = str(info.value)
    assert "argument 'y' of axpy()" in msg and "kernels.py:" in msg, msg
    assert "y.to_numpy()" in msg, msg
    if index == "sorted":  # the Series a sort_values() gives
        sorted_y = pd.Series(y).sort_values()
        with pytest.raises(ArgumentValueError, match="index is not 0..n-1"):
            accelerated(kernel)(a, pd.Series(x), sorted_y, out)
        # what the message says to do works, and gives positions
        accelerated(kernel)(a, pd.Series(x), sorted_y.reset_index(drop=True), out)
        expected = np.zeros_like(out)
        kernel.func(a, x, sorted_y.to_numpy(), expected)
        np.testing.assert_array_equal(out, expected)


def test_a_series_used_whole_takes_any_index():
    @accelerate
    def scaled_total(x, k):
        return x.sum() * k

    s = pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"])
    assert scaled_total(s, 2.0) == 12.0


def test_series_reduction_gives_the_python_result():
    kernel = KERNELS_BY_NAME["int_total"]
    (x,) = kernel.make_args(999, np.random.default_rng(1))
    assert accelerated(kernel)(pd.Series(x)) == kernel.func(x)


def test_series_argument_is_passed_as_a_zero_copy_view():
    x = pd.Series(np.linspace(0.0, 1.0, 257))
    out = np.zeros(257)
    back = add_one_and_return_input_acc(x, out)
    np.testing.assert_array_equal(out, x.to_numpy() + 1.0)
    assert isinstance(back, np.ndarray)
    assert np.shares_memory(back, x.to_numpy()), "the Series data was copied"


def test_series_argument_is_not_copied_in_memory():
    n = 2_000_000  # 16 MB
    x = pd.Series(np.ones(n))
    out = np.zeros(n)
    add_one_and_return_input_acc(pd.Series(np.ones(4)), np.zeros(4))  # compile first
    tracemalloc.start()
    try:
        add_one_and_return_input_acc(x, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.to_numpy().nbytes // 4, f"peak {peak} bytes suggests a copy"
    assert out[0] == 2.0 and out[-1] == 2.0


# ---------------------------------------------------------------------------
# the decorated object
# ---------------------------------------------------------------------------


def test_decorated_function_keeps_signature_name_and_original():
    kernel = KERNELS_BY_NAME["axpy"]
    fn = accelerated(kernel)
    assert fn.py_func is kernel.func
    assert fn.__wrapped__ is kernel.func
    assert fn.__name__ == "axpy"
    assert inspect.signature(fn) == inspect.signature(kernel.func)


def test_decorator_with_options_returns_a_working_function():
    kernel = KERNELS_BY_NAME["stencil_1d"]
    fn = accelerate(target="cpu", fastmath=False, boundscheck=True, cache=False)(kernel.func)
    assert fn.py_func is kernel.func
    _check(kernel, 101, seed=4, fn=fn)


def test_top_level_names_are_exported():
    assert loopscale.accelerate is accelerate
    assert callable(loopscale.prange) and callable(loopscale.level)
    assert list(loopscale.prange(3)) == [0, 1, 2]
    assert list(loopscale.prange(1, 8, 3)) == list(range(1, 8, 3))
