"""What a call checks before it runs, and how it reports what it finds.

Each test compiles for real (no mocks): wrong call signatures name the user's
function; arguments that overlap in memory keep the same answer at every level;
guarded reads past the end are not refused ahead of time; unsupported dtypes,
``None``, arrays of the wrong dimension and pandas objects are named; an
exception in the loop is reported in one format at every level; a module-level
array written by the kernel is explained; a prologue the threads level cannot
outline falls back to the fused serial code.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import warnings

import numpy as np
import pytest

import loopscale
from loopscale import accelerate, level
from loopscale.errors import (
    ArgumentError,
    ArgumentValueError,
    CompileError,
    FallbackWarning,
    SerializationWarning,
)

pytestmark = pytest.mark.timeout(300)

THIS_FILE = os.path.basename(__file__)


def line_of(func, text: str) -> int:
    lines, start = inspect.getsourcelines(func)
    hits = [start + k for k, line in enumerate(lines) if text in line]
    assert len(hits) == 1, f"{text!r} occurs {len(hits)} times"
    return hits[0]


# ---------------------------------------------------------------------------
# wrong call signatures name the user's function
# ---------------------------------------------------------------------------


def saxpy(a, x, y, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]


saxpy_acc = accelerate(saxpy)


@pytest.mark.parametrize("call, expected", [
    (lambda x: saxpy_acc(2.0, x, x), "saxpy() missing 1 required positional argument: 'out'"),
    (lambda x: saxpy_acc(2.0, x, x, x, x),
     "saxpy() takes 4 positional arguments but 5 were given"),
    (lambda x: saxpy_acc(2.0, x, x, outt=x), "saxpy() got an unexpected keyword argument 'outt'"),
], ids=["missing", "extra", "unknown-keyword"])
def test_a_wrong_call_is_reported_under_the_functions_own_name(call, expected):
    with pytest.raises(TypeError) as info:
        call(np.ones(4))
    assert str(info.value) == expected
    assert "__call__" not in str(info.value)


def test_the_accelerated_function_still_calls_and_binds_like_the_original():
    x = np.arange(4.0)
    out = np.zeros(4)
    saxpy_acc(2.0, x, x, out=out)
    np.testing.assert_array_equal(out, 3 * x)
    assert str(inspect.signature(saxpy_acc)) == "(a, x, y, out)"


# ---------------------------------------------------------------------------
# the pre-run length check looks only at accesses made on every iteration
# ---------------------------------------------------------------------------


def diff_guarded_equal(x, out):
    n = x.shape[0]
    for i in range(n):
        if i == n - 1:
            out[i] = 0.0
            continue
        out[i] = x[i + 1] - x[i]


def diff_guarded_ge(x, out):
    n = x.shape[0]
    for i in range(n):
        if i + 2 >= n:
            continue
        out[i] = x[i + 2] - x[i]


def diff_guarded_raise(x, out):
    n = x.shape[0]
    for i in range(n):
        if i + 1 >= n:
            raise ValueError("past the end")
        out[i] = x[i + 1] - x[i]


@pytest.mark.parametrize("fn", [diff_guarded_equal, diff_guarded_ge], ids=lambda f: f.__name__)
@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_read_past_the_end_behind_a_guard_that_skips_it_runs_like_python(fn, lvl):
    acc = accelerate(fn)
    x = np.random.default_rng(0).random(5003)
    expected, out = np.zeros_like(x), np.zeros_like(x)
    fn(x, expected)
    with level(lvl):
        acc(x, out)
    np.testing.assert_array_equal(out, expected)


def test_a_guard_that_raises_is_not_replaced_by_the_length_check():
    acc = accelerate(diff_guarded_raise)
    x = np.arange(10.0)
    with pytest.raises(ValueError, match="past the end") as info:
        acc(x, np.zeros(10))
    assert not isinstance(info.value, ArgumentValueError)


def test_an_unguarded_read_past_the_end_is_still_refused_before_running():
    @accelerate
    def diff_unguarded(x, out):
        for i in range(out.shape[0]):
            out[i] = x[i + 1] - x[i]

    with pytest.raises(ArgumentValueError, match=r"argument 'x' .*reads `x\[i \+ 1\]`"):
        diff_unguarded(np.arange(10.0), np.zeros(10))


def matvec(A, v):
    out = np.zeros(A.shape[0])
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i] += A[i, j] * v[j]
    return out


def lower_rows(A, v, out):
    for i in range(A.shape[0]):
        s = 0.0
        for j in range(i + 1):                # bounds follow i: not checked ahead
            s += A[i, j] * v[j]
        out[i] = s


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_an_inner_loop_that_would_read_past_the_end_is_refused_before_running(lvl):
    # v shorter than A's rows: the compiled loop read past v's end and returned
    # garbage (Python raises IndexError); now the inner loop's bounds, the same
    # on every iteration, are checked before the loop as the outer loop's are
    acc = accelerate(matvec)
    A = np.ones((3, 4))
    with level(lvl), pytest.raises(ArgumentValueError,
                                   match=r"argument 'v' of matvec\(\) is too short along "
                                         r"axis 0 .* reads `v\[j\]` .* for every j in "
                                         r"range\(A.shape\[1\]\)"):
        acc(A, np.ones(8)[:2])
    v = np.arange(4.0)
    with level(lvl):
        np.testing.assert_array_equal(acc(A, v), matvec(A, v))


def test_an_inner_loop_whose_bounds_follow_the_outer_variable_is_not_refused():
    acc = accelerate(lower_rows)
    A = np.tril(np.ones((5, 5)))
    v = np.arange(5.0)  # exactly long enough for the last row only
    out, want = np.zeros(5), np.zeros(5)
    lower_rows(A, v, want)
    acc(A, v, out)
    np.testing.assert_array_equal(out, want)


def window_mean(a, i, w):
    return a[i:i + w].mean()


def zero_row(v):
    v[:] = 0.0


def rolling_mean(x, w):
    out = np.zeros(x.shape[0] - w + 1)
    for i in range(x.shape[0] - w + 1):
        out[i] = window_mean(x, i, w)
    return out


def clear_rows(A):
    for i in range(A.shape[0]):
        zero_row(A[i])
    return A


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_helpers_that_slice_their_arguments_compile(lvl):
    # the analysis of the helper's accesses raised a bare SyntaxError (a slice
    # was turned back into text and parsed as an expression)
    x = np.random.default_rng(3).random(20001)
    with level(lvl):
        np.testing.assert_array_equal(accelerate(rolling_mean)(x, 7), rolling_mean(x, 7))
        A = np.ones((300, 3))
        assert not accelerate(clear_rows)(A).any()


def test_the_length_check_says_an_output_is_written_not_read():
    with pytest.raises(ArgumentValueError) as info:
        saxpy_acc(2.0, np.ones(10), np.ones(10), np.zeros(5))
    msg = str(info.value)
    assert "argument 'out'" in msg
    assert "writes `out[i]`" in msg and "reads `out[i]`" not in msg


# ---------------------------------------------------------------------------
# arguments that share memory keep the same answer at every level
# ---------------------------------------------------------------------------


def shift_args(out, x):
    for i in range(out.shape[0]):
        s = x[i]
        for _ in range(20):  # long enough iterations that workers overlap in time
            s = math.sqrt(s * s + 1.0) - 1.0
        out[i] = s * 0.5 + 1.0


def scale_inplace(out, x):
    for i in range(out.shape[0]):
        out[i] = x[i] * 0.5 + 1.0


@pytest.mark.parametrize("views", [
    lambda b: (b[:-1], b[1:]),     # reads ahead of what it writes
    lambda b: (b[1:], b[:-1]),     # writes ahead of what it reads: a recurrence in Python
    lambda b: (b[::-1], b),        # reversed
], ids=["ahead", "behind", "reversed"])
def test_overlapping_arguments_give_pythons_answer_at_the_threads_level(views):
    acc = accelerate(shift_args)
    base = np.random.default_rng(1).random(100_003)
    expected = base.copy()
    shift_args(*views(expected))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            b = base.copy()
            with level("threads", max_workers=4):
                acc(*views(b))
            np.testing.assert_array_equal(b, expected)
    serial = [w for w in caught if issubclass(w.category, SerializationWarning)]
    assert len(serial) == 1, [str(w.message) for w in caught]  # once per function
    msg = str(serial[0].message)
    assert "`out`" in msg and "`x`" in msg and "share memory" in msg
    assert serial[0].filename == __file__  # points at the caller
    assert "share memory" in acc.explain()


def test_the_same_array_under_two_names_touched_only_at_i_still_runs_in_parallel():
    acc = accelerate(scale_inplace)
    b = np.random.default_rng(2).random(50_000)
    expected = b.copy()
    scale_inplace(expected, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SerializationWarning)
        with level("threads", max_workers=2):
            acc(b, b)
    np.testing.assert_array_equal(b, expected)
    assert "last call ran on one core" not in acc.explain()
    assert acc._last_plan is not None and acc._last_plan.nblocks == b.size


def test_arrays_that_do_not_overlap_run_in_parallel_without_a_warning():
    acc = accelerate(scale_inplace)
    b = np.random.default_rng(3).random(50_001)
    out = np.zeros_like(b)
    expected = b * 0.5 + 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", SerializationWarning)
        with level("threads", max_workers=2):
            acc(out, b)
            acc(b[:25_000], b[25_000:50_000])  # halves of one array: apart
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(b[:25_000], expected[25_000:50_000])


def test_interleaved_views_of_one_array_are_apart():
    # b[0::2] and b[1::2], z.real and z.imag: their memory bounds meet, no
    # element is in both (NumPy proves it), so they run in parallel
    acc = accelerate(shift_args)
    b = np.random.default_rng(4).random(60_002)
    z = np.exp(1j * np.random.default_rng(5).random(30_001))
    want_b, want_z = b.copy(), z.copy()
    shift_args(want_b[0::2], want_b[1::2])
    shift_args(want_z.real, want_z.imag)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SerializationWarning)
        with level("threads", max_workers=2):
            acc(b[0::2], b[1::2])
            assert acc._last_plan is not None and acc._last_plan.nblocks > 1
            acc(z.real, z.imag)
    np.testing.assert_array_equal(b, want_b)
    np.testing.assert_array_equal(z, want_z)
    # every other element against every third: they meet at every sixth
    c = np.random.default_rng(6).random(60_000)
    want_c = c.copy()
    shift_args(want_c[0::2][:10_000], want_c[0::3][:10_000])
    with pytest.warns(SerializationWarning, match="share memory"), level("threads"):
        acc(c[0::2][:10_000], c[0::3][:10_000])
    np.testing.assert_array_equal(c, want_c)


def test_a_written_local_view_of_an_argument_is_checked_too():
    @accelerate
    def via_local(b):
        out = b[:-1]
        x = b[1:]
        for i in loopscale.prange(out.shape[0]):  # asserted independent; the memory is not
            out[i] = x[i] * 0.5 + 1.0

    base = np.random.default_rng(4).random(20_001)
    expected = base.copy()
    via_local.py_func(expected)
    b = base.copy()
    with pytest.warns(SerializationWarning, match="share memory"):
        with level("threads", max_workers=2):
            via_local(b)
    np.testing.assert_array_equal(b, expected)


# ---------------------------------------------------------------------------
# a plan that cannot be compiled runs the fused serial code
# ---------------------------------------------------------------------------


def mixed_list(x, out):
    names = ["a", 1, 2.0]
    for i in range(x.shape[0]):
        out[i] = len(names) * x[i]


def test_a_mixed_list_in_the_prologue_runs_serially_at_the_threads_level_with_one_warning():
    acc = accelerate(mixed_list)
    x = np.arange(5000.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            out = np.zeros_like(x)
            with level("threads", max_workers=2):
                acc(x, out)
            np.testing.assert_array_equal(out, 3 * x)
    serial = [w for w in caught if issubclass(w.category, SerializationWarning)]
    assert len(serial) == 1, [str(w.message) for w in caught]
    assert "one core" in str(serial[0].message)
    assert "one core" in acc.explain()
    out = np.zeros_like(x)
    acc(x, out)  # the default level too
    np.testing.assert_array_equal(out, 3 * x)


def returns_mixed_list(x):
    names = ["a", 1, 2.0]
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return names


def test_any_failure_to_compile_is_a_compile_error_and_fallback_catches_it():
    with pytest.raises(CompileError, match="returns_mixed_list") as info:
        accelerate(returns_mixed_list)(np.ones(3))
    assert info.value.__cause__ is not None
    fb = accelerate(fallback=True)(returns_mixed_list)
    with pytest.warns(FallbackWarning):
        assert fb(np.ones(3)) == ["a", 1, 2.0]


# ---------------------------------------------------------------------------
# arguments compiled code cannot take are named
# ---------------------------------------------------------------------------


def f32_mix(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * 0.1 + 1.0 / 3.0


def two_d(X, out):
    for i in range(X.shape[0]):
        out[i] = X[i, 0] + X[i, 1]


def _where(fn) -> str:
    return f"{THIS_FILE}:{fn.__code__.co_firstlineno}"


@pytest.mark.parametrize("lvl", ["serial", "threads"])
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_an_array_of_a_dtype_numba_lacks_is_a_type_error_naming_argument_and_dtype(lvl, dtype):
    if np.dtype(dtype) == np.dtype(np.float64):
        pytest.skip("longdouble is float64 here")
    acc = accelerate(f32_mix)
    with pytest.raises(ArgumentError) as info:
        with level(lvl):
            acc(np.ones(5, dtype), np.zeros(5))
    msg = str(info.value)
    assert isinstance(info.value, TypeError)
    assert "argument 'x'" in msg and np.dtype(dtype).name in msg and "astype(np.float32)" in msg
    assert "f32_mix()" in msg


@pytest.mark.parametrize("lvl", ["serial", "threads"])
@pytest.mark.parametrize("case", ["none", "2d-for-1d", "scalar", "dataframe", "object",
                                  "categorical", "1d-for-2d"])
def test_an_argument_compiled_code_cannot_take_is_named_with_what_is_expected(case, lvl):
    pd = pytest.importorskip("pandas") if case in ("dataframe", "categorical") else None
    n = 10
    x = np.arange(float(n))
    fn, args, name, expect = {
        "none": (saxpy, (2.0, x, None, np.zeros(n)), "y", "None"),
        "2d-for-1d": (saxpy, (2.0, np.ones((n, 2)), x, np.zeros(n)), "x", "2-D"),
        "scalar": (saxpy, (2.0, x, 3.0, np.zeros(n)), "y", "float"),
        "dataframe": (f32_mix, (pd.DataFrame({"a": x, "b": x}) if pd else None, np.zeros(n)),
                      "x", "DataFrame"),
        "object": (f32_mix, (np.array([1.0, "a"] * 5, dtype=object), np.zeros(n)), "x",
                   "object"),
        "categorical": (f32_mix, (pd.Series(list("ab") * 5, dtype="category") if pd else None,
                                  np.zeros(n)), "x", "categor"),
        "1d-for-2d": (two_d, (x, np.zeros(n)), "X", "1-D"),
    }[case]
    acc = accelerate(fn)
    with pytest.raises(ArgumentError) as info:
        with level(lvl):
            acc(*args)
    msg = str(info.value)
    assert f"argument '{name}'" in msg, msg
    assert f"{fn.__name__}()" in msg and _where(fn) in msg, msg
    assert expect in msg, msg
    assert re.search(r"pass a|convert it", msg), msg


def test_a_pandas_series_and_a_matching_array_still_work():
    pd = pytest.importorskip("pandas")
    acc = accelerate(f32_mix)
    out = np.zeros(4)
    acc(pd.Series([1.0, 2.0, 3.0, 4.0]), out)
    np.testing.assert_allclose(out, np.array([1.0, 2.0, 3.0, 4.0]) * 0.1 + 1.0 / 3.0)


# ---------------------------------------------------------------------------
# an exception in the loop is reported in one format at every level
# ---------------------------------------------------------------------------


def raise_in_loop(x, out):
    for i in range(x.shape[0]):
        if x[i] < 0:
            raise ValueError("negative input")
        out[i] = math.sqrt(x[i])


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_an_exception_in_the_loop_names_its_iterations_the_same_way_at_every_level(lvl):
    acc = accelerate(raise_in_loop)
    n, bad = 5000, 2900
    x = np.ones(n)
    x[bad] = -1.0
    with pytest.raises(ValueError) as info:
        with level(lvl, **({"max_workers": 2} if lvl == "threads" else {})):
            acc(x, np.zeros(n))
    msg = str(info.value)
    loop_line = line_of(raise_in_loop, "for i in range")
    m = re.fullmatch(r"negative input \(raised in iterations (\d+)\.\.(\d+) of the loop at "
                     r"(.+):(\d+), i from (\d+) to (\d+)\)", msg)
    assert m, msg
    k0, k1, path, line, v0, v1 = m.groups()
    assert int(k0) <= bad <= int(k1) and (v0, v1) == (k0, k1)
    assert os.path.basename(path) == THIS_FILE and int(line) == loop_line
    assert isinstance(info.value.__cause__, ValueError)


def test_an_exception_in_a_strided_loop_names_the_loop_values_at_the_threads_level():
    @accelerate
    def strided(x, out):
        for i in range(1, x.shape[0], 3):
            if x[i] < 0:
                raise ValueError("negative")
            out[i] = x[i]

    x = np.ones(30_000)
    x[3001] = -1.0  # iteration 1000
    with pytest.raises(ValueError) as info:
        with level("threads", max_workers=2):
            strided(x, np.zeros_like(x))
    m = re.search(r"iterations (\d+)\.\.(\d+) of the loop at .+, i from (\d+) to (\d+)\)",
                  str(info.value))
    assert m, str(info.value)
    k0, k1, v0, v1 = map(int, m.groups())
    assert k0 <= 1000 <= k1 and v0 == 1 + 3 * k0 and v1 == 1 + 3 * k1


# ---------------------------------------------------------------------------
# writing a module-level array
# ---------------------------------------------------------------------------

TABLE = np.zeros(100)


def write_global(x):
    for i in range(x.shape[0]):
        TABLE[i] = x[i] * 2.0


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_writing_a_module_level_array_says_globals_are_constants_and_to_pass_it(lvl):
    acc = accelerate(write_global)
    with pytest.raises(CompileError) as info:
        with level(lvl):
            acc(np.ones(10))
    msg = str(info.value)
    assert "`TABLE`" in msg and "module-level" in msg and "read-only" in msg
    assert "argument" in msg
    assert f"{THIS_FILE}:{line_of(write_global, 'TABLE[i] =')}" in msg
    assert info.value.__cause__ is not None


def copy_rows(out, x):
    for i in range(1, out.shape[0]):
        np.copyto(out[i], out[i - 1] * 0.5 + x[i])


def test_a_row_of_a_2d_argument_in_an_unsupported_call_is_a_compile_error_not_blamed_on_it():
    with pytest.raises(CompileError, match="copyto"):
        accelerate(copy_rows)(np.ones((10, 3)), np.ones(10))


def row_cumsums(a, out):
    for i in range(a.shape[0]):
        np.cumsum(a[i], out=out[i])


def row_medians(a, out):
    for i in range(a.shape[0]):
        out[i] = np.quantile(a[i], 0.5, method="nearest")


@pytest.mark.parametrize("fn, keyword", [(row_cumsums, "out"), (row_medians, "method")])
def test_a_keyword_numba_lacks_is_named_not_blamed_on_a_row_index(fn, keyword):
    # a[i] of a 2-D array is a row, valid: the keyword is what Numba rejects
    a = np.ones((6, 4))
    out = np.zeros((6, 4)) if fn is row_cumsums else np.zeros(6)
    with pytest.raises(CompileError) as info:
        accelerate(fn)(a, out)
    msg = str(info.value)
    assert not isinstance(info.value, ArgumentError)
    assert f"the keyword `{keyword}`" in msg and _where(fn).split(":")[0] in msg, msg


def _scaled_by(k):
    def scaled(x, out, scale=k, *, shift=k + 1):
        for i in range(x.shape[0]):
            out[i] = x[i] * scale + shift
    return scaled


_FACTOR = 3.0


def _scaled_by_global(x, out, scale=_FACTOR * 2):
    for i in range(x.shape[0]):
        out[i] = x[i] * scale


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_default_values_are_the_ones_python_evaluated_at_def(lvl):
    # from the enclosing scope (the generated code cannot see `k`), and from a
    # global since rebound: the value at `def`, as Python has it
    global _FACTOR
    x = np.arange(5000.0)
    f = accelerate(_scaled_by(2.0))
    for args, kwargs, want in [((), {}, x * 2.0 + 3.0), ((0.5,), {"shift": 1.0}, x * 0.5 + 1.0)]:
        out = np.zeros_like(x)
        with level(lvl):
            f(x, out, *args, **kwargs)
        np.testing.assert_array_equal(out, want)
    saved, _FACTOR = _FACTOR, -1.0
    try:
        g = accelerate(_scaled_by_global)
        out = np.zeros_like(x)
        with level(lvl):
            g(x, out)
        ref = np.zeros_like(x)
        _scaled_by_global(x, ref)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(out, x * 6.0)
    finally:
        _FACTOR = saved


def _total(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s


def _double_into(x, out):
    for i in range(len(x)):
        out[i] = 2.0 * x[i]


def _group_sum(keys, vals, ngroups):
    out = np.zeros(ngroups)
    for i in range(keys.shape[0]):
        out[keys[i]] += vals[i]
    return out


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_memoryview_or_an_empty_list_is_taken_as_an_array(lvl):
    total, double_into = accelerate(_total), accelerate(_double_into)
    x = np.arange(5000.0)
    with level(lvl):
        assert total(memoryview(x)) == _total(x)
        assert total([]) == 0.0
        out = np.zeros_like(x)
        double_into(memoryview(x), memoryview(out))  # written through the view
    np.testing.assert_array_equal(out, 2.0 * x)


def test_a_ragged_list_is_named_with_what_to_pass():
    total = accelerate(_total)
    with pytest.raises(ArgumentError, match=r"argument 'x' of _total\(\) is a list that does "
                       r"not make an array .*rows of one length"):
        total([[1.0, 2.0], [3.0]])


def test_a_compile_error_shows_what_each_argument_was():
    group_sum = accelerate(_group_sum)
    with pytest.raises(CompileError) as info:
        group_sum(np.ones(5), np.ones(5), 3)  # float keys used as an index
    msg = str(info.value)
    assert "Called with: keys: 1-D float64 array, vals: 1-D float64 array, ngroups: int 3" \
        in msg, msg
    assert "out[keys[i]] += vals[i]" in msg, msg


@pytest.mark.parametrize("lvl", ["serial", "threads", None])
def test_a_python_buffer_is_taken_as_the_array_it_views(lvl):
    """array.array and bytearray: read, and written through, at every level (the
    threads level once raised SystemError for them)."""
    import array
    import contextlib

    total, double_into = accelerate(_total), accelerate(_double_into)
    ctx = level(lvl) if lvl else contextlib.nullcontext()
    with ctx:
        x = array.array("d", range(3000))
        assert total(x) == _total(np.asarray(x))
        b = bytearray(range(200))
        assert total(b) == float(sum(b))
        out = array.array("d", [0.0] * 3000)
        double_into(x, out)
    np.testing.assert_array_equal(np.asarray(out), 2.0 * np.arange(3000.0))


def _double_rows(M, out):
    for i in range(M.shape[0]):
        out[i] = 2.0 * M[i, 0]
    return out


@pytest.mark.parametrize("lvl", ["serial", "threads", None])
def test_a_masked_array_or_a_matrix_is_refused_after_a_plain_call(lvl):
    """Numba's dispatcher takes any ndarray subclass as a plain array once a
    signature is compiled: a masked array then ran with its mask ignored."""
    import contextlib

    total, double_rows = accelerate(_total), accelerate(_double_rows)
    x = np.arange(10.0)
    masked = np.ma.masked_array(x, mask=x > 4)
    ctx = level(lvl) if lvl else contextlib.nullcontext()
    with ctx:
        for _ in range(3):  # (the default level's fast path after a few calls)
            assert total(x) == 45.0
        with pytest.raises(ArgumentError) as info:
            total(masked)
        msg = str(info.value)
        assert "argument 'x' of _total()" in msg and THIS_FILE in msg, msg
        assert "MaskedArray" in msg and "x.filled(" in msg, msg
        out = np.zeros(3)
        double_rows(np.ones((3, 2)), out)
        with pytest.raises(ArgumentError, match=r"argument 'M' .* numpy\.matrix.*"
                           r"np\.asarray\(M\)"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                mat = np.matrix(np.ones((3, 2)))
            double_rows(mat, out)
        with pytest.raises(ArgumentError, match=r"argument 'out' .*MaskedArray"):
            double_rows(np.ones((3, 2)), np.ma.masked_array(out))
    assert masked.sum() == 10.0  # untouched


class _Tagged(np.ndarray):
    """An ndarray subclass carrying metadata, as units libraries do."""


def test_another_ndarray_subclass_is_refused_and_memmap_is_not(tmp_path):
    total = accelerate(_total)
    x = np.arange(100.0)
    assert total(x) == _total(x)
    with pytest.raises(ArgumentError, match=r"argument 'x' .*_Tagged, a subclass of "
                       r"numpy\.ndarray.*np\.asarray\(x\)"):
        total(x.view(_Tagged))
    mm = np.memmap(tmp_path / "x.dat", dtype=np.float64, mode="w+", shape=(100,))
    mm[:] = x
    assert total(mm) == _total(x)
    with pytest.raises(ArgumentError, match="MaskedArray"):
        total.compile_for(np.ma.masked_array(x))


def test_a_nullable_pandas_column_with_missing_values_is_refused():
    pd = pytest.importorskip("pandas")
    total = accelerate(_total)
    full = pd.Series([1, 2, 3], dtype="Int64")
    assert total(full) == 6.0
    for s, hint in [(pd.Series([1, None, 3], dtype="Int64"), "na_value=np.nan"),
                    (pd.Series([1.5, None], dtype="Float64"), "na_value=np.nan"),
                    (pd.Series([True, None], dtype="boolean"), "fillna")]:
        with pytest.raises(ArgumentValueError) as info:
            total(s)
        msg = str(info.value)
        assert "argument 'x' of _total()" in msg and THIS_FILE in msg, msg
        assert f"nullable dtype {s.dtype} holding 1 missing value" in msg and hint in msg, msg
    assert total(pd.Series([1.0, np.nan])) != total(pd.Series([1.0, np.nan]))  # NaN: numpy


def _diagonal(M, row, out):
    for i in range(M.shape[0]):
        row = M[i]
        out[i] = row[i]
    return out


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_parameter_bound_again_in_the_loop_is_not_checked_as_passed(lvl):
    """`row` is a parameter, but the loop reads the row it binds: the length
    check of the argument passed (one element) was a false refusal."""
    diagonal = accelerate(_diagonal)
    M = np.arange(36.0).reshape(6, 6)
    with level(lvl):
        got = diagonal(M, np.zeros(1), np.zeros(6))
    np.testing.assert_array_equal(got, _diagonal(M, np.zeros(1), np.zeros(6)))


def _shift_through_a_name(x, c, out):
    for i in range(x.shape[0]):
        t = x[i]
        t += c  # a number when x is 1-D; a row of x, updated in place, when it is 2-D
        out[i] = t


def _scale_in_place(x, c):
    for i in range(x.shape[0]):
        x[i] *= c


def test_a_read_only_array_is_refused_only_where_the_function_writes_it():
    # pandas 3's Series.to_numpy() and np.load(mmap_mode="r") give read-only arrays
    x = np.linspace(-1.0, 1.0, 3001)
    x.flags.writeable = False
    out, want = np.zeros(3001), np.zeros(3001)
    _shift_through_a_name(x, 2.0, want)
    f = accelerate(_shift_through_a_name)
    for lvl in ("serial", "threads"):
        out[:] = 0.0
        with level(lvl):
            f(x, 2.0, out)
        np.testing.assert_array_equal(out, want)
    assert "written only when it has more than 1 dimension" in f.explain()
    # as a row (2-D), `t += c` writes x: refused before compiling, naming the
    # argument and the fix
    x2 = np.ones((50, 3))
    x2.flags.writeable = False
    with pytest.raises(ArgumentValueError, match=r"argument 'x' of .*read-only array.*np\.array"):
        f(x2, 2.0, np.zeros(50))
    ro = np.ones(10)
    ro.flags.writeable = False
    g = accelerate(_scale_in_place)
    with pytest.raises(ArgumentValueError, match="argument 'x'.*read-only") as info:
        g(ro, 2.0)
    assert f"line {line_of(_scale_in_place, 'x[i] *= c')}" in str(info.value) or \
        f"line {line_of(_scale_in_place, 'for i in')}" in str(info.value)
    np.testing.assert_array_equal(ro, 1.0)  # (nothing written)


def _sum_of_pair(arrs, out):
    for i in range(out.shape[0]):
        out[i] = arrs[0][i] + arrs[1][i] * 2.0


def _fill_pair(x, outs):
    for i in range(x.shape[0]):
        outs[0][i] = x[i] + 1.0
        outs[1][i] = x[i] * 3.0


def test_a_tuple_of_arrays_passed_in_is_read_and_written_at_every_level():
    # (a tuple has no shape: the length checks take its arrays' lengths)
    rng = np.random.default_rng(7)
    a, b = rng.random(20_001), rng.random(20_001)
    want = np.zeros(20_001)
    _sum_of_pair((a, b), want)
    f, g = accelerate(_sum_of_pair), accelerate(_fill_pair)
    for lvl in ("serial", "threads"):
        out = np.zeros(20_001)
        o1, o2 = np.zeros(20_001), np.zeros(20_001)
        with level(lvl):
            f((a, b), out)
            g(a, (o1, o2))
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(o1, a + 1.0)
        np.testing.assert_array_equal(o2, a * 3.0)
    assert f.analysis.parallel and g.analysis.parallel
    with pytest.raises(ArgumentValueError, match=r"argument 'arrs' of _sum_of_pair\(\) is too "
                       r"short: `arrs\[1\]` has too few elements .*`arrs\[1\]\[i\]`"):
        f((a, b[:100]), np.zeros(20_001))
