"""Lowering for vectorization: glibc's vector math, and float division by zero
raised at the end of its block (see ``loopscale/accel/_lowering.py``).

The vector-math tests compare with the C library's scalar functions, reached
through a plain ``numba.njit`` of the same kernel (as Python's ``math`` module
does, but also where Python raises instead of returning inf or nan).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys

import numba
import numpy as np
import pytest

import loopscale
from loopscale import accelerate
from loopscale.accel import _lowering

VECTOR_MATH = bool(_lowering.vector_functions())
needs_vector_math = pytest.mark.skipif(
    not VECTOR_MATH, reason="this machine has no libmvec or no AVX2 (the scalar path is tested)")

UNARY = {
    "exp": (-700.0, 700.0), "exp2": (-1000.0, 1000.0), "expm1": (-40.0, 40.0),
    "log": (1e-300, 1e300), "log2": (1e-300, 1e300), "log10": (1e-300, 1e300),
    "log1p": (-0.999, 1e12), "sin": (-1e4, 1e4), "cos": (-1e4, 1e4), "tan": (-1e4, 1e4),
    "asin": (-1.0, 1.0), "acos": (-1.0, 1.0), "atan": (-1e6, 1e6), "sinh": (-700.0, 700.0),
    "cosh": (-700.0, 700.0), "tanh": (-30.0, 30.0), "asinh": (-1e6, 1e6),
    "acosh": (1.0, 1e6), "atanh": (-0.9999, 0.9999), "erf": (-6.0, 6.0), "erfc": (-6.0, 27.0),
}
BINARY = {"pow": ((0.01, 100.0), (-10.0, 10.0)), "atan2": ((-100.0, 100.0), (-100.0, 100.0)),
          "hypot": ((-1e3, 1e3), (-1e3, 1e3))}
SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324, 1e-310, 1e308, -1e308,
           1.0, -1.0, 0.5, 709.8, -745.2, 1e-20, 3.0e38, -3.0e38]


@pytest.fixture(scope="module")
def math_kernels(tmp_path_factory):
    """A module of one kernel per math function (accelerate needs source files)."""
    lines = ["import math", ""]
    for name in UNARY:
        lines += [f"def k_{name}(x, out):", "    for i in range(x.shape[0]):",
                  f"        out[i] = math.{name}(x[i])", ""]
    for name in BINARY:
        lines += [f"def k_{name}(x, y, out):", "    for i in range(x.shape[0]):",
                  f"        out[i] = math.{name}(x[i], y[i])", ""]
    lines += ["def k_power_op(x, y, out):", "    for i in range(x.shape[0]):",
              "        out[i] = x[i] ** y[i]", ""]
    path = tmp_path_factory.mktemp("mathk") / "ls_math_kernels.py"
    path.write_text("\n".join(lines))
    spec = importlib.util.spec_from_file_location("ls_math_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ls_math_kernels"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("ls_math_kernels", None)


def _ulps(got: np.ndarray, ref: np.ndarray) -> float:
    spacing = np.spacing(np.abs(ref)).astype(np.float64)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return float(np.max(diff / spacing)) if diff.size else 0.0


def _inputs(lo: float, hi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    if lo > 0 and hi / lo > 1e6:
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return rng.uniform(lo, hi, n)


def _check_special(got: np.ndarray, ref: np.ndarray, xs: np.ndarray, name: str) -> None:
    for g, r, x in zip(got, ref, xs, strict=True):
        if math.isnan(r):
            assert math.isnan(g), (name, x, g, r)
        elif math.isinf(r) or r == 0.0:
            assert g == r and math.copysign(1.0, g) == math.copysign(1.0, r), (name, x, g, r)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_math_within_four_ulps_of_the_c_library(math_kernels, name, dtype):
    lo, hi = UNARY[name]
    rng = np.random.default_rng(7)
    with np.errstate(all="ignore"):
        x = _inputs(lo, hi, 20_003, rng).astype(dtype)
        ref_fn = numba.njit(getattr(math_kernels, f"k_{name}"))
        kernel = accelerate(getattr(math_kernels, f"k_{name}"))
        ref = np.empty_like(x)
        ref_fn(x, ref)
        got = np.empty_like(x)
        with loopscale.level("serial"):
            kernel(x, got)
        finite = np.isfinite(ref) & (np.abs(ref) > np.finfo(dtype).tiny)
        assert np.array_equal(np.isfinite(got), np.isfinite(ref))
        if VECTOR_MATH:
            assert _ulps(got[finite], ref[finite]) <= 4.0
        else:
            assert np.array_equal(got, ref)
        xs = np.array(SPECIAL, dtype=np.float64).astype(dtype)
        ref_s, got_s = np.empty_like(xs), np.empty_like(xs)
        ref_fn(xs, ref_s)
        with loopscale.level("serial"):
            kernel(xs, got_s)
    _check_special(got_s, ref_s, xs, name)


@pytest.mark.parametrize("name", [*BINARY, "power_op"])
def test_binary_math_within_four_ulps_of_the_c_library(math_kernels, name):
    (xlo, xhi), (ylo, yhi) = BINARY.get(name, BINARY["pow"])
    rng = np.random.default_rng(11)
    x, y = rng.uniform(xlo, xhi, 20_001), rng.uniform(ylo, yhi, 20_001)
    ref = np.empty_like(x)
    numba.njit(getattr(math_kernels, f"k_{name}"))(x, y, ref)
    got = np.empty_like(x)
    with loopscale.level("serial"):
        accelerate(getattr(math_kernels, f"k_{name}"))(x, y, got)
    assert _ulps(got, ref) <= (4.0 if VECTOR_MATH else 0.0)


def exp_log(x, out):
    for i in range(x.shape[0]):
        out[i] = math.exp(-x[i]) * math.log(x[i] + 1.0) + np.sin(x[i])
    return out


def exp_sum(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.exp(-x[i] * x[i])
    return s


@needs_vector_math
def test_the_loop_calls_the_vector_functions():
    f = accelerate(cache=False)(exp_log)  # (Numba cannot show the IR of cached code)
    x = np.linspace(0.0, 3.0, 101)
    with loopscale.level("serial"):
        f(x, np.empty_like(x))
    serial = f._compiled.serial
    text = serial.inspect_llvm(serial.signatures[0])
    # the wrapper calls each once; the vectorized loop calls them again
    for vname in ("_ZGVdN4v_exp", "_ZGVdN4v_log", "_ZGVdN4v_sin"):
        assert len(re.findall(rf"call <4 x double> @{vname}\(", text)) >= 2, vname
    assert "math functions: glibc's vector versions" in f.explain()


def test_every_level_and_every_split_gives_the_same_bits():
    # An element's value does not depend on whether it fell in the vectorized
    # part of a block or in its remainder, nor on the level.
    f = accelerate(exp_log)
    g = accelerate(exp_sum)
    x = np.random.default_rng(3).uniform(0.0, 4.0, 3001)
    with loopscale.level("serial"):
        ref = f(x, np.empty_like(x))
        ref_sum = g(x)
        singles = np.array([f(x[i:i + 1], np.empty(1))[0] for i in range(0, 3001, 7)])
        odd = f(x[3:1002], np.empty(999))
    assert np.array_equal(singles, ref[::7])
    assert np.array_equal(odd, ref[3:1002])
    for workers in (2, 3):
        with loopscale.level("threads", max_workers=workers):
            assert np.array_equal(f(x, np.empty_like(x)), ref)
            assert g(x) == ref_sum
    expected = np.array([math.exp(-v) * math.log(v + 1.0) + math.sin(v) for v in x])
    np.testing.assert_allclose(ref, expected, rtol=1e-14, atol=1e-15)


def test_vector_math_can_be_turned_off(run_python):
    proc = run_python("""
        import json, math, sys
        import numpy as np
        sys.path.insert(0, sys.argv[1])
        from tests.accel.test_lowering import exp_log
        import loopscale
        f = loopscale.accelerate(exp_log)
        x = np.linspace(0.0, 3.0, 1001)
        with loopscale.level("serial"):
            out = f(x, np.empty_like(x))
        exact = [math.exp(-v) * math.log(v + 1.0) + math.sin(v) for v in x]
        print(json.dumps({"same": out.tolist() == exact, "explain": f.explain()}))
    """, args=[str(__import__("pathlib").Path(__file__).resolve().parents[2])],
        env={"LOOPSCALE_VECTOR_MATH": "0"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same"], "with LOOPSCALE_VECTOR_MATH=0 the C library's exp/log/sin are used"
    assert "LOOPSCALE_VECTOR_MATH=0" in result["explain"]


# ---------------------------------------------------------------------------
# float division by zero, raised at the end of its block


def recip(d):
    return 1.0 / (1.0 + 0.25 * abs(d))


def price(s, k, t, out):
    for i in range(s.shape[0]):
        d = math.log(s[i] / k[i]) / math.sqrt(t[i])
        out[i] = s[i] * recip(d) - k[i] * math.exp(-t[i])


def scale_by(x, w, out):
    for i in range(x.shape[0]):
        out[i] = x[i] / w[i]


def helper_divides(x, out):
    for i in range(x.shape[0]):
        out[i] = inverse(x[i]) + 1.0


def inverse(v):
    return 2.0 / v


def mixed(x, w, m, q, out):
    for i in range(x.shape[0]):
        r = x[i] / w[i]
        out[i] = r + m[i] // q[i]


def with_while(x, w, out):
    for i in range(x.shape[0]):
        r = x[i] / w[i]
        k = 0
        while k < 3 and r > 0.0:
            r = r * 0.5
            k += 1
        out[i] = r


def to_index(x, h, out, hist):
    for i in range(x.shape[0]):
        out[i] = hist[int(x[i] / h[i]) % 4]


def store_then_index(x, w, idx, table, out):
    for i in range(x.shape[0]):
        idx[i] = x[i] / math.sqrt(w[i])  # a float stored into an int32 array
        out[i] = table[idx[i]]


def to_uint8(x, mx, out):
    for i in range(x.shape[0]):
        out[i] = 255.0 * x[i] / mx[i]  # float to uint8: stored, never an index


def index_through_a_name(x, w, idx, table, out):
    for i in range(x.shape[0]):
        idx[i] = x[i] / w[i]
        k = idx[i]
        out[i] = table[k]


def count_from_a_division(x, w, cnt, out):
    for i in range(x.shape[0]):
        for k in range(cnt.shape[1]):  # an innermost loop that divides: may vectorize
            cnt[i, k] = x[i] / w[i]
        acc = 0.0
        for _j in range(cnt[i, 0]):
            acc += 1.0
        out[i] = acc


def grid_points(length, spacing, x0, out):
    for i in range(int(length / spacing)):
        out[i] = x0 + i * spacing


def mean_after(x, out, n):
    for i in range(x.shape[0]):
        out[i] = x[i] * 2.0
    return out.sum() / n


def _price_args(n: int, zero_at: int | None = None):
    rng = np.random.default_rng(2)
    s, k, t = rng.uniform(5, 30, n), rng.uniform(1, 100, n), rng.uniform(0.25, 10, n)
    if zero_at is not None:
        k[zero_at] = 0.0
    return s, k, t, np.zeros(n)


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_deferred_division_by_zero_still_raises_with_its_block(lvl):
    f = accelerate(price)
    s, k, t, out = _price_args(5000)
    with loopscale.level(lvl):
        f(s, k, t, out)
        expected = np.zeros(5000)
        price(s, k, t, expected)
        np.testing.assert_allclose(out, expected, rtol=1e-13)
        s, k, t, out = _price_args(5000, zero_at=3001)
        with pytest.raises(ZeroDivisionError, match=r"division by zero \(raised in iterations"
                                                   r" (\d+)\.\.(\d+)") as info:
            f(s, k, t, out)
    lo, hi = map(int, re.search(r"iterations (\d+)\.\.(\d+)", str(info.value)).groups())
    assert lo <= 3001 <= hi
    assert f._deferral is None
    assert "float division by zero: raised at the end of its block" in f.explain()
    if lvl == "serial":
        # the blocks before the one that divided by zero ran, as they do in Python
        np.testing.assert_allclose(out[:lo], expected[:lo], rtol=1e-13)


@pytest.mark.parametrize("bad", [0.0, -0.0])
@pytest.mark.parametrize("numerator", [1.0, 0.0, math.inf, math.nan])
def test_every_zero_divisor_raises_whatever_the_numerator(numerator, bad):
    # IEEE's inf / 0 and nan / 0 raise no floating-point flag: the test is of
    # the divisor, as Python's
    f = accelerate(scale_by)
    x = np.ones(2000)
    w = np.ones(2000)
    x[1500], w[1500] = numerator, bad
    with loopscale.level("serial"), pytest.raises(ZeroDivisionError):
        f(x, w, np.empty(2000))


def _right_then_raises(f, n: int, bad: int) -> None:
    """*f* (a helper_divides) gives the answer, then raises on a zero at *bad*."""
    x = np.arange(1.0, n + 1.0)
    with loopscale.level("serial"):
        out = np.empty_like(x)
        f(x, out)
        np.testing.assert_array_equal(out, 2.0 / x + 1.0)
        x[bad] = 0.0
        with pytest.raises(ZeroDivisionError, match="iterations"):
            f(x, np.empty_like(x))


def test_a_helpers_division_by_zero_reaches_the_loops_check():
    f = accelerate(helper_divides)
    _right_then_raises(f, 3000, 2999)
    assert f._deferral is None


def test_an_integer_division_by_zero_after_a_float_one_reports_the_first():
    f = accelerate(mixed)
    n = 100
    x, w = np.ones(n), np.ones(n)
    m, q = np.arange(n), np.ones(n, dtype=np.int64)
    with loopscale.level("serial"):
        q[50] = 0
        with pytest.raises(ZeroDivisionError, match="integer division by zero"):
            f(x, w, m, q, np.empty(n))
        w[50] = 0.0
        with pytest.raises(ZeroDivisionError) as info:
            f(x, w, m, q, np.empty(n))
    assert "integer" not in str(info.value)


def test_the_division_vectorizes_once_deferred():
    f = accelerate(cache=False)(scale_by)  # (Numba cannot show the IR of cached code)
    x = np.arange(1.0, 101.0)
    with loopscale.level("serial"):
        f(x, x + 1.0, np.empty_like(x))
    serial = f._compiled.serial
    text = serial.inspect_llvm(serial.signatures[0])
    assert re.search(r"fdiv (\w+ )*<\d+ x double>", text), "the division loop is not vectorized"


@pytest.mark.parametrize("func, reason", [
    (with_while, "while loop"),
    (to_index, "int"),
    (mean_after, "outside the loop divides"),
])
def test_loops_that_could_misbehave_past_a_zero_divisor_raise_at_once(func, reason):
    f = accelerate(func)
    n = 64
    if func is to_index:
        args = [np.ones(n), np.ones(n), np.empty(n), np.arange(4.0)]
    elif func is mean_after:
        args = [np.ones(n), np.empty(n), 2.0]
    else:
        args = [np.ones(n), np.ones(n), np.empty(n)]
    with loopscale.level("serial"):
        f(*args)
        if func is mean_after:
            args[2] = 0.0
        else:
            args[1][10] = 0.0
        with pytest.raises(ZeroDivisionError):
            f(*args)
    assert f._deferral is not None and reason in f._deferral
    assert "float division by zero: raised at once" in f.explain()


def test_boundscheck_keeps_divisions_raising_at_once():
    f = accelerate(boundscheck=True)(scale_by)
    x = np.ones(10)
    with loopscale.level("serial"):
        f(x, x, np.empty(10))
    assert f._deferral is not None and "boundscheck" in f._deferral


def test_the_error_model_is_ours_alone():
    # Registering the model does not change Numba's own default
    @numba.njit
    def divide(a, b):
        return a / b

    with pytest.raises(ZeroDivisionError):
        divide(1.0, 0.0)
    assert _lowering.ERROR_MODEL in numba.core.callconv.error_models


def test_a_deferring_build_that_fails_is_rebuilt_to_raise_at_once():
    # The path taken when Numba's IR inliner refuses a helper: the function is
    # generated and compiled again without deferral, and still gives the answer.
    f = accelerate(cache=False)(helper_divides)
    x = np.arange(1.0, 2001.0)
    with loopscale.level("serial"):
        f(x, np.empty_like(x))
    assert f._deferral is None
    f._without_deferral(numba.core.errors.UnsupportedError("inliner refused a helper"))
    _right_then_raises(f, 2000, 1000)
    assert "raised at once (compiling the loop with its helpers inlined failed" in f.explain()
    serial = f._compiled.serial
    assert "error_model" not in serial.targetoptions


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_float_stored_into_an_integer_array_keeps_divisions_raising_at_once(lvl):
    # The conversion is not in the syntax (no int()): the lowered code has an
    # fptosi, and an index computed from inf would read outside `table`.
    f = accelerate(store_then_index)
    n = 5000
    x, w = np.full(n, 3.0), np.ones(n)
    idx, table, out = np.zeros(n, np.int32), np.arange(8.0), np.zeros(n)
    with loopscale.level(lvl, **({"max_workers": 2} if lvl == "threads" else {})):
        f(x, w, idx, table, out)
        np.testing.assert_array_equal(out, np.full(n, 3.0))
        w[3500] = 0.0
        with pytest.raises(ZeroDivisionError, match="iterations"):
            f(x, w, idx, table, out)
    assert f._deferral is not None and "converted to an integer" in f._deferral


def test_a_division_in_the_loops_range_raises_at_once():
    f = accelerate(grid_points)
    with loopscale.level("serial"):
        o = np.zeros(8)
        f(10.0, 2.0, 1.0, o)
        np.testing.assert_array_equal(o[:5], [1.0, 3.0, 5.0, 7.0, 9.0])
        with pytest.raises(ZeroDivisionError):
            f(10.0, 0.0, 0.0, np.zeros(8))
    assert f._deferral is not None and "range divides" in f._deferral


def test_a_refused_deferral_is_remembered_by_the_next_process(run_python, tmp_path):
    # The refused build costs one compile in the first process only: the
    # verdict is kept in the cache, and a warm process compiles nothing.
    code = """
        import json, sys
        import numpy as np
        from numba.core import event

        class Counter(event.Listener):
            count = 0
            def on_start(self, ev):
                pass
            def on_end(self, ev):
                Counter.count += 1

        event.register("numba:compile", Counter())
        sys.path.insert(0, sys.argv[1])
        from tests.accel.test_lowering import store_then_index
        import loopscale
        f = loopscale.accelerate(store_then_index)
        out = np.zeros(100)
        with loopscale.level("serial"):
            f(np.full(100, 3.0), np.ones(100), np.zeros(100, np.int32), np.arange(8.0), out)
        print(json.dumps({"compiles": Counter.count, "deferral": f._deferral,
                          "out": float(out.sum())}))
    """
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    env = {"LOOPSCALE_CACHE_DIR": str(tmp_path / "cache")}
    cold = json.loads(run_python(code, args=[root], env=env).stdout.strip().splitlines()[-1])
    warm = json.loads(run_python(code, args=[root], env=env).stdout.strip().splitlines()[-1])
    assert cold["out"] == warm["out"] == 300.0
    assert "converted to an integer" in cold["deferral"] and warm["deferral"] == cold["deferral"]
    assert cold["compiles"] > 0 and warm["compiles"] == 0


def test_the_threads_level_names_the_first_failing_chunk_in_iteration_order():
    # Every iteration divides by zero: Python raises at i = 0.  Each chunk
    # raises at its end; a later, shorter chunk may finish first, but the
    # chunk reported is the first in iteration order.
    f = accelerate(scale_by)
    x, w = np.ones(100_003), np.zeros(100_003)
    starts = set()
    with loopscale.level("threads", max_workers=2):
        for _ in range(20):
            with pytest.raises(ZeroDivisionError) as info:
                f(x, w, np.empty_like(x))
            starts.add(int(re.search(r"iterations (\d+)\.\.", str(info.value)).group(1)))
    assert starts == {0}


def pair_sum(x):
    e = 0.0
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            d = abs(x[i] - x[j])
            e += 1.0 / (d * d)  # a float sum: LLVM keeps its order, no vectors
    return e


def forces(x, m, out):
    for i in range(x.shape[0]):
        a = 0.0
        for j in range(x.shape[0]):
            r = x[j] - x[i] + 0.5
            inv = m[j] / (r * r * r)
            a += inv  # through a name assigned a quotient
        out[i] = a


@pytest.mark.parametrize("func", [pair_sum, forces], ids=lambda f: f.__name__)
def test_divisions_only_in_loops_that_cannot_vectorize_are_not_deferred(func):
    # the deferred flag's test and OR cost ~15 % of a pairwise loop that LLVM
    # cannot vectorize anyway (a float sum): such a loop raises at once, as Numba
    # does; fastmath (which lets LLVM reorder the sum) keeps the deferral
    n = 700
    x = np.random.default_rng(3).random(n) * 10.0

    def args_for(xs):
        return (xs,) if func is pair_sum else (xs, np.ones(n), np.zeros(n))

    def run(fn, args):
        got = fn(*args)
        return got if func is pair_sum else args[2].copy()

    f = accelerate(cache=False)(func)
    with loopscale.level("serial"):
        ref = run(f, args_for(x))
    with loopscale.level("threads"):
        assert np.array_equal(run(f, args_for(x)), ref)  # bit for bit
    np.testing.assert_allclose(run(func, args_for(x)), ref, rtol=1e-12)  # plain Python
    assert f._deferral is not None and "no division is in a loop LLVM can vectorize" in f._deferral
    assert ("the float `e`" if func is pair_sum else "the float `a`") in f._deferral
    serial = f._compiled.serial
    assert "ls.zdiv" not in serial.inspect_llvm(serial.signatures[0])
    bad = x.copy()
    bad[401] = bad[400] if func is pair_sum else bad[400] - 0.5  # a zero divisor at i = 400
    for lvl in ("serial", "threads"):
        with loopscale.level(lvl), pytest.raises(ZeroDivisionError):
            f(*args_for(bad))
    fast = accelerate(cache=False, fastmath=True)(func)
    with loopscale.level("serial"):
        run(fast, args_for(x))
    assert fast._deferral is None


def test_a_float_only_stored_as_an_integer_still_defers_and_vectorizes():
    f = accelerate(cache=False)(to_uint8)
    n = 3001
    x, mx = np.linspace(0.0, 1.0, n), np.ones(n)
    out = np.zeros(n, np.uint8)
    with loopscale.level("serial"):
        f(x, mx, out)
        expected = np.zeros(n, np.uint8)
        to_uint8(x, mx, expected)
        np.testing.assert_array_equal(out, expected)
        mx[2000] = 0.0
        with pytest.raises(ZeroDivisionError, match="iterations"):
            f(x, mx, out)
    assert f._deferral is None
    serial = f._compiled.serial
    text = serial.inspect_llvm(serial.signatures[0])
    assert re.search(r"fdiv (\w+ )*<\d+ x double>", text), "the loop is not vectorized"


@pytest.mark.parametrize("func", [index_through_a_name, count_from_a_division],
                         ids=lambda f: f.__name__)
def test_an_integer_made_from_a_float_that_reaches_an_index_or_a_bound_raises_at_once(func):
    f = accelerate(func)
    n = 3000
    x, w = np.full(n, 3.0), np.ones(n)
    ints = np.zeros(n if func is index_through_a_name else (n, 2), np.int64)
    last = np.arange(8.0) if func is index_through_a_name else None
    args = (x, w, ints, last, np.zeros(n)) if last is not None else (x, w, ints, np.zeros(n))
    with loopscale.level("serial"):
        f(*args)
        w[2500] = 0.0
        with pytest.raises(ZeroDivisionError, match="iterations"):
            f(*args)
    assert f._deferral is not None and "converted to an integer" in f._deferral
