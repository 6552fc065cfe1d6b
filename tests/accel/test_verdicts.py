"""The loop analysis: parallel only when safe, and the reason names the line.

Expected line numbers are computed from the source text (``inspect``), never
hard-coded, so editing this file or ``kernels.py`` does not break the tests.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import loopscale
from loopscale import accelerate, prange

from . import kernels as K
from .kernels import (
    KERNELS,
    KERNELS_BY_NAME,
    Kernel,
    accelerated,
    assert_results_match,
    line_of,
)

pytestmark = pytest.mark.timeout(300)


def loop_header_line(func) -> int:
    """Line of the first (outermost) ``for`` statement of *func*."""
    lines, start = inspect.getsourcelines(func)
    for k, line in enumerate(lines):
        if line.strip().startswith("for "):
            return start + k
    raise AssertionError(f"no for loop in {func.__name__}")


def names_line(text: str | None, lineno: int) -> bool:
    return text is not None and re.search(rf"\bline {lineno}\b", text) is not None


def run_both(func, fn, args_factory):
    """Run Python and compiled versions on identical fresh inputs and compare."""
    py_args = args_factory()
    jit_args = args_factory()
    expected = func(*py_args)
    got = fn(*jit_args)
    assert_results_match(got, expected, exact=True)
    for g, e in zip(jit_args, py_args, strict=True):
        if isinstance(e, np.ndarray):
            assert_results_match(g, e, exact=True)


def _args(kernel: Kernel, n: int = 101, seed: int = 0):
    return lambda: kernel.make_args(n, np.random.default_rng(seed))


# ---------------------------------------------------------------------------
# the whole corpus
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_corpus_verdict_matches_expectation(kernel):
    fn = accelerated(kernel)
    fn(*kernel.make_args(5, np.random.default_rng(0)))
    analysis = fn.analysis
    assert analysis.parallel is kernel.parallel, (
        f"{kernel.name}: parallel={analysis.parallel}, reason={analysis.reason!r}"
    )
    if kernel.parallel:
        assert analysis.reason is None
    else:
        assert isinstance(analysis.reason, str) and analysis.reason


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_analysis_reports_the_loop_header_line(kernel):
    fn = accelerated(kernel)
    assert fn.analysis.lineno == loop_header_line(kernel.func)


@pytest.mark.parametrize(
    "kernel", [k for k in KERNELS if k.reductions is not None], ids=lambda k: k.name
)
def test_analysis_lists_the_reductions(kernel):
    fn = accelerated(kernel)
    assert dict(fn.analysis.reductions) == dict(kernel.reductions)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_explain_is_text_that_mentions_the_loop_line(kernel):
    fn = accelerated(kernel)
    text = fn.explain()
    assert isinstance(text, str) and text.strip()
    assert str(loop_header_line(kernel.func)) in text


# ---------------------------------------------------------------------------
# unsafe loops: sequential, the reason names the line, Python's answer kept
# ---------------------------------------------------------------------------

UNSAFE = {
    # kernel name -> the text of the offending line(s) (any one may be named)
    "prefix_sum": [(K.prefix_sum, "out[i] = out[i - 1] + x[i]")],
    "scalar_recurrence": [(K.scalar_recurrence, "acc = acc * 0.5 + x[i]")],
    "scatter_store": [(K.scatter_store, "out[idx[i]] = x[i]")],
    "find_first": [(K.find_first, "return i")],
    "first_negative_break": [(K.first_negative_break, "    break")],
    "helper_shared_write": [
        (K.helper_shared_write, "_stash(buf, x[i] * 2.0)"),
        (K.helper_shared_write, "out[i] = buf[0] + 1.0"),
        (K._stash, "buf[0] = v"),
    ],
    "heat_timestep": [(K.heat_timestep, "u[1:-1] = u[1:-1]")],
    "reverse_in_place": [(K.reverse_in_place, "out[i] = out[n - 1 - i]")],
    "last_value": [(K.last_value, "t = x[i] * 2.0"), (K.last_value, "return t")],
}


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_loop_runs_sequentially_and_names_the_line(name):
    kernel = KERNELS_BY_NAME[name]
    fn = accelerated(kernel)
    run_both(kernel.func, fn, _args(kernel, 257, seed=1))
    analysis = fn.analysis
    assert analysis.parallel is False
    lines = [line_of(f, text) for f, text in UNSAFE[name]]
    assert any(names_line(analysis.reason, n) for n in lines), (
        f"reason {analysis.reason!r} names none of lines {lines}"
    )
    explained = fn.explain()
    assert any(names_line(explained, n) for n in lines), explained


def test_every_sequential_corpus_kernel_has_an_expected_reason_line():
    assert {k.name for k in KERNELS if not k.parallel} == set(UNSAFE)


def test_prefix_sum_keeps_sequential_semantics_on_large_input():
    kernel = KERNELS_BY_NAME["prefix_sum"]
    run_both(kernel.func, accelerated(kernel), _args(kernel, 200_003, seed=2))


def test_early_return_gives_the_first_match_like_python():
    fn = accelerated(KERNELS_BY_NAME["find_first"])
    x = np.zeros(100_000)
    x[[70_000, 30_000, 99_999]] = 3.0
    assert fn(x, 3.0) == 30_000
    assert fn(np.zeros(10), 3.0) == -1


def test_break_gives_the_first_negative_like_python():
    fn = accelerated(KERNELS_BY_NAME["first_negative_break"])
    x = np.ones(100_000)
    x[[80_000, 12_345, 99_000]] = -1.0
    assert fn(x) == 12_345


# ---------------------------------------------------------------------------
# local kernels: more safe and unsafe shapes
# ---------------------------------------------------------------------------


def permute_range(x, perm, out):
    for i in range(x.shape[0]):
        out[perm[i]] = x[i] * 3.0


def permute_with_prange(x, perm, out):
    for i in prange(x.shape[0]):
        out[perm[i]] = x[i] * 3.0


def interleave_with_prange(x, out):
    for i in prange(x.shape[0]):
        out[2 * i + 1] = x[i]


def fill_rows(x, out):
    for i in range(out.shape[0]):
        out[i, :] = x[i]


def fill_columns(x, out):
    for i in range(out.shape[1]):
        for j in range(out.shape[0]):
            out[j, i] = x[j] * i


def double_in_place(x):
    for i in range(x.shape[0]):
        x[i] = x[i] * 2.0


def private_temporary(x, out):
    for i in range(x.shape[0]):
        t = x[i] * 2.0
        out[i] = t + 1.0


def offsets_read(u, out):
    for i in range(2, u.shape[0] - 2):
        out[i] = u[i - 2] - u[i + 2] + u[i]


def read_before_write(x, out):
    t = 0.0
    for i in range(x.shape[0]):
        out[i] = t
        t = x[i]


def running_total(x, out):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
        out[i] = s
    return s


def _vec(n=101, seed=0):
    return lambda: (np.random.default_rng(seed).standard_normal(n), np.zeros(n))


def _perm(n=1001, seed=0):
    def make():
        rng = np.random.default_rng(seed)
        return (rng.standard_normal(n), rng.permutation(n).astype(np.int64), np.zeros(n))

    return make


def test_scatter_through_an_index_array_runs_sequentially():
    fn = accelerate(permute_range)
    run_both(permute_range, fn, _perm())
    assert fn.analysis.parallel is False
    assert names_line(fn.analysis.reason, line_of(permute_range, "out[perm[i]] = x[i] * 3.0"))


def test_prange_asserts_independence_of_a_scatter():
    fn = accelerate(permute_with_prange)
    run_both(permute_with_prange, fn, _perm(100_003))
    assert fn.analysis.parallel is True
    assert fn.analysis.lineno == line_of(permute_with_prange, "for i in prange(")


def test_prange_makes_a_loop_parallel_with_a_non_trivial_store_index():
    fn = accelerate(interleave_with_prange)
    n = 10_001
    run_both(interleave_with_prange, fn,
             lambda: (np.random.default_rng(0).standard_normal(n), np.zeros(2 * n + 1)))
    assert fn.analysis.parallel is True


@pytest.mark.parametrize(
    "func, factory",
    [
        (fill_rows, lambda: (np.arange(50.0), np.zeros((50, 4)))),
        (fill_columns, lambda: (np.arange(7.0), np.zeros((7, 40)))),
        (double_in_place, lambda: (np.random.default_rng(0).standard_normal(1001),)),
        (private_temporary, _vec()),
        (offsets_read, _vec()),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_independent_loop_is_found_parallel(func, factory):
    fn = accelerate(func)
    run_both(func, fn, factory)
    assert fn.analysis.parallel is True, fn.analysis.reason
    assert fn.analysis.reason is None


def test_scalar_read_before_it_is_written_runs_sequentially():
    fn = accelerate(read_before_write)
    run_both(read_before_write, fn, _vec(10_001))
    assert fn.analysis.parallel is False
    assert names_line(fn.analysis.reason, line_of(read_before_write, "out[i] = t")) or names_line(
        fn.analysis.reason, line_of(read_before_write, "t = x[i]")
    ), fn.analysis.reason


def test_accumulator_read_inside_the_loop_is_not_a_reduction():
    fn = accelerate(running_total)
    run_both(running_total, fn, _vec(10_001))
    assert fn.analysis.parallel is False
    assert fn.analysis.reductions == {} or "s" not in fn.analysis.reductions
    assert names_line(fn.analysis.reason, line_of(running_total, "out[i] = s")) or names_line(
        fn.analysis.reason, line_of(running_total, "s += x[i]")
    ), fn.analysis.reason


def every_level(fn, make_args, workers=(1, 2, 3)):
    """Python, serial and threads (each worker count) on fresh inputs: the result
    and the arguments, exactly, and the levels bit for bit."""
    py_args = make_args()
    expected = fn.py_func(*py_args)
    for lvl, options in (("serial", {}), *(("threads", {"max_workers": w}) for w in workers)):
        args = make_args()
        with loopscale.level(lvl, **options):
            got = fn(*args)
        assert_results_match(got, expected, exact=True, what=f"{lvl} {options}")
        for g, e in zip(args, py_args, strict=True):
            if isinstance(e, np.ndarray):
                assert_results_match(g, e, exact=True, what=f"{lvl} {options}: an argument")


# an array accumulator updated in place that another name reaches: not a reduction


def accumulate_into_a_row_view(A):
    acc = A[0]  # a view: row 0 of A
    for i in range(1, A.shape[0]):
        acc += A[i] * A[0, 0]  # reads A[0, 0], which `acc += ...` updates
    return acc


def accumulator_seen_through_a_view(A):
    acc = np.zeros(A.shape[1])
    v = acc[:]
    for i in range(A.shape[0]):
        acc += A[i] * (1 + v[0])  # the running total, through the view
    return acc


def accumulator_aliasing_an_argument(A, out):
    acc = out
    for i in range(A.shape[0]):
        acc += A[i] * out[0]


def _int_rows():
    return (np.arange(1, 41, dtype=np.int64).reshape(20, 2) % 5,)


@pytest.mark.parametrize("func, make_args", [
    (accumulate_into_a_row_view, _int_rows),
    (accumulator_seen_through_a_view, lambda: (np.arange(1, 41, dtype=np.int64).reshape(20, 2),)),
    (accumulator_aliasing_an_argument,
     lambda: (np.arange(1, 41, dtype=np.int64).reshape(20, 2) % 3, np.ones(2, np.int64))),
], ids=lambda f: getattr(f, "__name__", ""))
def test_an_accumulator_another_name_reaches_is_not_split_into_partials(func, make_args):
    fn = accelerate(func)
    assert fn.analysis.parallel is False, fn.analysis.reductions
    assert "acc" not in fn.analysis.reductions
    reason = fn.analysis.reason
    assert names_line(reason, line_of(func, "acc += A[i]")), reason
    assert "accumulator `acc`" in reason and "in place" in reason, reason
    every_level(fn, make_args)


def fresh_accumulator(A):
    acc = np.zeros(A.shape[1], dtype=A.dtype)
    for i in range(A.shape[0]):
        acc += A[i]
    return acc


def accumulator_rebound_from_a_row(A):
    acc = A[0]
    for i in range(1, A.shape[0]):
        acc = acc + A[i]  # a new array each time: A itself is never changed
    return acc


# (`acc` starts as a view of `A`: at the threads level the call checks that the two
# share memory and runs the blocks in order, with a SerializationWarning)
@pytest.mark.filterwarnings("ignore::loopscale.errors.SerializationWarning")
@pytest.mark.parametrize("func", [fresh_accumulator, accumulator_rebound_from_a_row],
                         ids=lambda f: f.__name__)
def test_a_fresh_or_rebound_array_accumulator_stays_a_reduction(func):
    fn = accelerate(func)
    assert fn.analysis.parallel is True, fn.analysis.reason
    assert fn.analysis.reductions == {"acc": "+"}
    every_level(fn, lambda: (np.arange(4000, dtype=np.int64).reshape(2000, 2) % 7,))


# a function of a module is not a write to the module


def row_medians(M):
    out = np.empty(M.shape[0])
    for i in range(M.shape[0]):
        r = np.sort(M[i])  # a new array; nothing shared is written
        out[i] = r[r.shape[0] // 2]
    return out


def row_partitions(M, out):
    for i in range(M.shape[0]):
        r = np.partition(M[i], 4)
        out[i] = r[4]


def sort_rows_in_place(M):
    for i in range(M.shape[0]):
        M[i].sort()


def sort_everything_each_time(x, out):
    for i in range(x.shape[0]):
        x.sort()
        out[i] = x[i]


@pytest.mark.parametrize("func, make_args", [
    (row_medians, lambda: (np.random.default_rng(0).random((1000, 9)),)),
    (row_partitions, lambda: (np.random.default_rng(1).random((1000, 9)), np.zeros(1000))),
    (sort_rows_in_place, lambda: (np.random.default_rng(2).random((1000, 9)),)),
], ids=lambda f: getattr(f, "__name__", ""))
def test_numpy_sort_functions_are_not_writes_of_numpy(func, make_args):
    fn = accelerate(func)
    assert fn.analysis.parallel is True, fn.analysis.reason
    assert "np" not in fn.analysis.arrays
    every_level(fn, make_args)


def test_an_in_place_sort_of_a_whole_array_in_the_loop_is_a_write():
    fn = accelerate(sort_everything_each_time)
    assert fn.analysis.parallel is False
    assert names_line(fn.analysis.reason, line_of(sort_everything_each_time, "x.sort()"))
    every_level(fn, lambda: (np.random.default_rng(3).random(500), np.zeros(500)), workers=(2,))


def test_reason_uses_absolute_file_line_numbers():
    # The function does not start at line 1 of its file; a relative number
    # (counted from the def) would be wrong.
    fn = accelerated(KERNELS_BY_NAME["prefix_sum"])
    _, start = inspect.getsourcelines(K.prefix_sum)
    assert start > 10
    relative = line_of(K.prefix_sum, "out[i] = out[i - 1] + x[i]") - start + 1
    assert not names_line(fn.analysis.reason, relative)


def no_loop(x):
    return x * 2.0


def test_no_loop_gives_no_line():
    fn = accelerate(no_loop)
    np.testing.assert_array_equal(fn(np.arange(3.0)), np.arange(3.0) * 2.0)
    assert fn.analysis.lineno is None
    assert isinstance(fn.explain(), str) and fn.explain().strip()


def _setup_then_work(x, out):
    acc = 0.0
    for k in range(3):  # a set-up loop: three iterations
        acc += x[k]
    for i in range(x.shape[0]):  # the work
        out[i] = x[i] + acc


def _reduce_then_map(x, out):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    m = s / x.shape[0]
    for i in range(x.shape[0]):
        out[i] = x[i] - m


def _flat_then_nested(x, out):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    for i in range(x.shape[0]):
        t = 0.0
        for j in range(8):
            t += x[(i + j) % x.shape[0]]
        out[i] = t - s


@pytest.mark.parametrize("fn, work_text, other_text, words", [
    (_setup_then_work, "for i in range", "for k in range(3)", "this one runs only 3 iterations"),
    (_reduce_then_map, "out[i] = x[i] - m", "s += x[i]", None),
    (_flat_then_nested, "for j in range(8)", "s += x[i]", "that loop has more nested loops"),
], ids=["short set-up loop", "two loops alike", "nested"])
def test_of_several_parallel_loops_the_one_with_the_most_work_is_chosen(fn, work_text,
                                                                         other_text, words):
    a = accelerate(fn).analysis
    lines, start = inspect.getsourcelines(fn)
    at = {t: start + next(k for k, line in enumerate(lines) if t in line)
          for t in (work_text, other_text)}
    if fn is _reduce_then_map:  # the first of loops alike
        assert a.lineno == at[other_text] - 1
        (line, why), = a.other_loops
        assert "that loop comes first" in why and "a function of its own" in why, why
        return
    header = at[work_text] if fn is _setup_then_work else at[work_text] - 2
    assert a.parallel and a.lineno == header, (a.lineno, header)
    (line, why), = a.other_loops
    assert line == (at[other_text] if fn is _setup_then_work else at[other_text] - 1)
    assert words in why and f"the loop at line {header} was chosen" in why, why
    x = np.random.default_rng(0).random(1000)
    want, got = np.zeros(1000), np.zeros(1000)
    fn(x, want)
    with loopscale.level("threads", max_workers=2):
        accelerate(fn)(x, got)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _min_of_three(x, y):
    m = np.inf
    for i in range(x.shape[0]):
        m = min(m, x[i], y[i])
    return m


def _max_of_four(x, y):
    m = -1e300
    for i in range(x.shape[0]):
        m = max(m, x[i] * 2.0, y[i], x[i] - y[i])
    return m


@pytest.mark.parametrize("fn", [_min_of_three, _max_of_four], ids=lambda f: f.__name__)
def test_min_and_max_of_several_values_are_reductions(fn):
    acc = accelerate(fn)
    assert acc.analysis.parallel, acc.analysis.reason
    rng = np.random.default_rng(9)
    x, y = rng.random(50001), rng.random(50001)
    x[777] = np.nan
    want = fn(x, y)
    for lvl in ("serial", "threads"):
        with loopscale.level(lvl):
            got = acc(x, y)
        assert got == want or (np.isnan(got) and np.isnan(want)), (lvl, got, want)


def _any_negative_or(x):
    found = False
    for i in range(x.shape[0]):
        found |= x[i] < 0.0
    return found


def _all_above_and(x):
    ok = True
    for i in range(x.shape[0]):
        ok &= x[i] > -3.0
    return ok


def _xor_all(k):
    b = 0
    for i in range(k.shape[0]):
        b ^= k[i]
    return b


def _or_mask(k):
    m = 0
    for i in range(k.shape[0]):
        m = m | (1 << (k[i] % 60))
    return m


def _and_unsigned(k):
    m = np.uint32(0xFFFFFFFF)
    for i in range(k.shape[0]):
        m &= k[i]
    return m


@pytest.mark.parametrize("fn", [_any_negative_or, _all_above_and, _xor_all, _or_mask,
                                _and_unsigned], ids=lambda f: f.__name__)
def test_bitwise_accumulations_are_reductions(fn):
    # `found |= ...`, `ok &= ...`, `b ^= k[i]`: exact in any order (they were
    # sequential: "read before it is assigned")
    acc = accelerate(fn)
    assert acc.analysis.parallel, acc.analysis.reason
    rng = np.random.default_rng(11)
    arg = (rng.standard_normal(40001) if fn in (_any_negative_or, _all_above_and) else
           rng.integers(0, 1 << 32, 40001).astype(np.uint32) | np.uint32(5)
           if fn is _and_unsigned else rng.integers(0, 1 << 40, 40001))
    want = fn(arg)
    for lvl in ("serial", "threads"):
        with loopscale.level(lvl):
            got = acc(arg)
        assert got == want, (lvl, got, want)


def _np_maximum(x, m):
    for i in range(x.shape[0]):
        m = np.maximum(m, x[i])
    return m


def _np_minimum_after(x, m):
    for i in range(x.shape[0]):
        m = np.minimum(x[i], m)
    return m


def _np_fmax(x, m):
    for i in range(x.shape[0]):
        m = np.fmax(m, x[i])
    return m


def _np_fmin_after(x, m):
    for i in range(x.shape[0]):
        m = np.fmin(x[i], m)
    return m


def _conditional_max(x, m):
    for i in range(x.shape[0]):
        m = x[i] if x[i] > m else m
    return m


def _conditional_min_loose(x, m):
    for i in range(x.shape[0]):
        m = x[i] if m >= x[i] else m
    return m


def _bits(v) -> int:
    return int(np.float64(v).view(np.int64))


@pytest.mark.parametrize("fn", [_np_maximum, _np_minimum_after, _np_fmax, _np_fmin_after,
                                _conditional_max, _conditional_min_loose],
                         ids=lambda f: f.__name__)
def test_numpy_extrema_and_conditional_updates_are_reductions(fn):
    # `m = np.maximum(m, x[i])`, `m = np.fmin(x[i], m)`, `m = x[i] if x[i] > m else m`:
    # they were sequential ("read before it is assigned").  Each block's partial
    # must give what the loop gives, NaN, infinities and signed zeros included:
    # bit for bit what Numba's compiled loop gives, equal to what Python gives
    # (NumPy's own scalar functions may pick the other zero of a tie)
    import numba

    acc = accelerate(fn)
    assert acc.analysis.parallel, acc.analysis.reason
    assert acc.analysis.reductions == {"m": "min" if "min" in fn.__name__ else "max"}
    compiled = numba.njit(fn)
    rng = np.random.default_rng(12)
    specials = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf])
    cases = [rng.standard_normal(20001), rng.choice(specials, 20001),
             np.full(3001, np.nan), rng.choice(specials[:2], 5001), np.zeros(0)]
    cases[0][[5, 17000]] = np.nan
    for x in cases:
        for m0 in (0.0, -0.0, np.nan, -np.inf, np.inf, 0.5):
            want, bits = fn(x, m0), _bits(compiled(x, m0))
            for lvl in ("serial", "threads"):
                with loopscale.level(lvl, **({"max_workers": 2} if lvl == "threads" else {})):
                    got = acc(x, m0)
                assert got == want or (np.isnan(got) and np.isnan(want)), (lvl, m0, got, want)
                assert _bits(got) == bits or np.isnan(got), (lvl, m0, got)


def _column_max(table):
    top = np.full(table.shape[1], -np.inf)
    for i in range(table.shape[0]):
        top = np.maximum(top, table[i])
    return top


def _column_min_int(table):
    low = table[0].copy()
    for i in range(table.shape[0]):
        low = np.fmin(low, table[i])
    return low


@pytest.mark.parametrize("fn", [_column_max, _column_min_int], ids=lambda f: f.__name__)
def test_an_array_accumulator_of_numpy_extrema_is_a_reduction(fn):
    acc = accelerate(fn)
    assert acc.analysis.parallel, acc.analysis.reason
    rng = np.random.default_rng(13)
    table = (rng.standard_normal((3001, 7)) if fn is _column_max
             else rng.integers(-10**6, 10**6, (3001, 7)))
    if fn is _column_max:
        table[100, 3] = np.nan  # (np.maximum lets it through)
    want = fn(table)
    for lvl in ("serial", "threads"):
        with loopscale.level(lvl):
            got = acc(table)
        np.testing.assert_array_equal(got, want)


def test_a_numpy_extremum_reduction_stays_on_the_cpu_and_says_why():
    from loopscale.accel import _cuda

    why = _cuda._cpu_only(accelerate(_np_fmax).analysis)
    assert why is not None and "np.fmax()" in why and "NaN" in why, why
    assert _cuda._cpu_only(accelerate(_conditional_max).analysis) is None
