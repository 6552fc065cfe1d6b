"""Sums into an array at any index: ``h = np.zeros(m)``, then ``h[b] += w``.

A histogram, a bincount, a gradient summed over rows: the loop adds into an
array made before it, at indices that do not follow the loop variable.  Each
block adds into an array of its own (zeros like ``h``), and the blocks'
arrays are added into ``h`` in block order, as ``s += x[i]`` is: integers are
exact, floats equal the ``serial`` level to the bit and Python to rounding.
Blocks are long enough that all blocks' arrays together stay small beside the
iterations (``_runtime.SCATTER_SHARE``), whatever the worker count.
"""

from __future__ import annotations

import numpy as np
import pytest

import loopscale
from loopscale import accelerate
from loopscale.accel import _runtime

from .kernels import line_of

pytestmark = pytest.mark.timeout(300)


@accelerate
def histogram(x, nbins):
    h = np.zeros(nbins, np.int64)
    for i in range(x.shape[0]):
        b = int(x[i] * nbins)
        if b >= nbins:
            b = nbins - 1
        h[b] += 1
    return h


@accelerate
def weighted_histogram(x, w, nbins):
    h = np.zeros(nbins)
    for i in range(x.shape[0]):
        h[min(int(x[i] * nbins), nbins - 1)] += w[i]
    return h


@accelerate
def least_squares_gradient(X, y, w):
    n, m = X.shape
    g = np.zeros(m)
    for i in range(n):
        r = -y[i]
        for j in range(m):
            r += X[i, j] * w[j]
        for j in range(m):
            g[j] += r * X[i, j]
    return g


@accelerate
def joint_counts(a, b, k):
    # a 2-D histogram, with a subtraction (the same reduction, `+`)
    H = np.zeros((k, k), np.int32)
    for i in range(a.shape[0]):
        H[a[i], b[i]] += 2
        H[b[i], a[i]] -= 1
    return H


@accelerate
def centroid_sums(X, labels, k):
    # the update step of k-means: per-cluster sums and counts
    sums = np.zeros((k, X.shape[1]))
    counts = np.zeros(k, np.int64)
    for i in range(X.shape[0]):
        c = labels[i]
        counts[c] += 1
        for j in range(X.shape[1]):
            sums[c, j] += X[i, j]
    return sums, counts


# -- sequential -------------------------------------------------------------------


@accelerate
def running_counts(x, nbins, out):
    h = np.zeros(nbins, np.int64)
    for i in range(x.shape[0]):
        b = int(x[i] * nbins) % nbins
        h[b] += 1
        out[i] = h[b]  # the count so far: depends on the order
    return h


@accelerate
def into_an_argument(x, h):
    # `h` is the caller's: it may be anything indexable (a typed Dict...), and
    # may share memory with `x` (see test_sums_into_an_argument...)
    for i in range(x.shape[0]):
        h[int(x[i] * 4) % 4] += 1
    return h


@accelerate
def through_another_name(x, nbins):
    h = np.zeros(nbins)
    g = h
    for i in range(x.shape[0]):
        h[int(x[i] * nbins) % nbins] += x[i]
        g[0] += 1.0
    return h


@accelerate
def integer_bins_float_weights(x, w):
    # an integer array truncates each addition of a float: per-block sums would
    # truncate differently (1 + -0.5 -> 0 in order; 1 + trunc(-0.5) -> 1 by block)
    h = np.zeros(4, np.int64)
    for i in range(x.shape[0]):
        h[int(x[i] * 4) % 4] += w[i]
    return h


@accelerate
def like_its_input(x):
    h = np.zeros_like(x[:4])  # the dtype of `x`: not known here
    for i in range(x.shape[0]):
        h[int(x[i] * 4) % 4] += x[i]
    return h


@accelerate
def float32_bins(x):
    h = np.zeros(4, dtype="float32")
    for i in range(x.shape[0]):
        h[int(x[i] * 4) % 4] += x[i]
    return h


@accelerate
def remade_on_one_branch(x, h, fresh):
    if fresh:
        h = np.zeros(x.shape[0])  # else: the caller's array, which may be `x`
    n = x.shape[0]
    for i in range(n):
        h[(i + 1) % n] += x[i]
    return h


@accelerate
def parameter_with_a_local_namesake(x, h):
    def fresh(m):  # (its `h` is its own)
        h = np.zeros(m)
        return h

    n = x.shape[0]
    for i in range(n):
        h[(i + 1) % n] += x[i]
    return h


def same(a):
    return a


@accelerate
def aliased_through_a_helper(b, w, m, out):
    h = np.zeros(m)
    g = same(h)  # another name for h
    for i in range(b.shape[0]):
        h[b[i]] += w[i]
        out[i] = g[0]  # the running sum
    return out


@accelerate
def bool_toggles(b, m):
    h = np.zeros(m, np.bool_)
    for i in range(b.shape[0]):
        h[b[i]] -= 1  # True - 1 is False: a toggle, not a sum
    return h


def _levels():
    yield "serial", {}
    for w in (1, 2, 3):
        yield "threads", {"max_workers": w}
    yield "threads", {"max_workers": 2, "policy": "dynamic"}


def _check(fn, args, exact: bool, rtol: float = 1e-11):
    want = fn.py_func(*args)
    first = None
    for level, options in _levels():
        with loopscale.level(level, **options):
            got = fn(*args)
        for g, e in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,), strict=True):
            if exact:
                np.testing.assert_array_equal(g, e)
            else:
                np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)
        if first is None:
            first = got
        else:  # the levels: to the bit
            for g, f in zip(got if isinstance(got, tuple) else (got,),
                            first if isinstance(first, tuple) else (first,), strict=True):
                np.testing.assert_array_equal(g, f)


@pytest.mark.parametrize("n", [0, 1, 100, 20_011, 300_007])
def test_histograms_equal_the_loop(n):
    rng = np.random.default_rng(n)
    x = rng.random(n)
    w = rng.random(n)
    _check(histogram, (x, 37), exact=True)
    _check(weighted_histogram, (x, w, 50), exact=False)
    a = rng.integers(0, 9, n)
    b = rng.integers(0, 9, n)
    _check(joint_counts, (a, b, 9), exact=True)
    for fn in (histogram, weighted_histogram, joint_counts):
        assert fn.analysis.parallel is True, fn.analysis.reason


def test_a_float32_array_is_a_float_array():
    x = np.random.default_rng(4).random(20_000).astype(np.float32)
    _check(float32_bins, (x,), exact=False, rtol=1e-4)  # (float32 sums: by block here)
    assert float32_bins.analysis.parallel is True, float32_bins.analysis.reason


def test_gradient_and_centroid_sums_equal_the_loop():
    rng = np.random.default_rng(1)
    X = rng.random((5003, 6))
    _check(least_squares_gradient, (X, rng.random(5003), rng.random(6)), exact=False)
    _check(centroid_sums, (X, rng.integers(0, 5, 5003), 5), exact=False)
    assert least_squares_gradient.analysis.reductions == {"g": "+"}
    assert centroid_sums.analysis.reduction_scatters == ("counts", "sums")
    assert "g (+, at any index: an array per block)" in least_squares_gradient.explain()


@pytest.mark.parametrize("n, nbins", [(1000, 10), (100_000, 37), (100_000, 50_000),
                                      (2_000_000, 100_000), (50_000, 1_000_000)])
def test_blocks_keep_the_per_block_arrays_small(n, nbins):
    x = np.random.default_rng(2).random(n)
    with loopscale.level("threads", max_workers=2):
        got = histogram(x, nbins)
    np.testing.assert_array_equal(got, histogram.py_func(x, nbins))
    plan = histogram._last_plan
    assert plan is not None and plan.n == n
    held = plan.nblocks * nbins
    assert held <= n // _runtime.SCATTER_SHARE + _runtime.SCATTER_SLACK + nbins, (
        plan.nblocks, plan.block)
    if n >= 256 * nbins:
        assert plan.nblocks >= 8  # still enough blocks to share among workers


@pytest.mark.parametrize("fn, text, words", [
    (running_counts, "h[b] += 1", "`h[b]` writes `h` at an index"),
    (through_another_name, "h[int(x[i] * nbins) % nbins] += x[i]", "writes `h` at an index"),
    (integer_bins_float_weights, "h[int(x[i] * 4) % 4] += w[i]",
     "`h` is not surely a float array (`np.zeros(4, np.int64)`"),
    (like_its_input, "h[int(x[i] * 4) % 4] += x[i]", "`h` is not surely a float array"),
    (remade_on_one_branch, "h[(i + 1) % n] += x[i]", "writes `h` at an index"),
    (parameter_with_a_local_namesake, "h[(i + 1) % n] += x[i]", "writes `h` at an index"),
    (aliased_through_a_helper, "h[b[i]] += w[i]", "writes `h` at an index"),
    (bool_toggles, "h[b[i]] -= 1", "`h` is not surely a float array"),
], ids=["read in the loop", "another name", "integer bins, float weights",
        "dtype unknown", "a parameter remade on a branch", "a parameter, a local namesake",
        "another name through a helper", "bool toggles"])
def test_sums_whose_order_may_matter_stay_sequential(fn, text, words):
    a = fn.analysis
    assert a.parallel is False
    assert words in a.reason, a.reason
    assert a.reason.startswith(f"line {line_of(fn, text)}: "), a.reason
    x = np.random.default_rng(3).random(3000)
    if fn is running_counts:
        args = lambda: (x, 7, np.zeros(3000, np.int64))  # noqa: E731
    elif fn is integer_bins_float_weights:
        args = lambda: (x, x - 0.5)  # noqa: E731
    elif fn is like_its_input:
        args = lambda: (x,)  # noqa: E731
    elif fn is remade_on_one_branch:
        def args():
            v = x.copy()
            return (v, v, False)  # h is x itself
    elif fn is parameter_with_a_local_namesake:
        def args():
            v = x.copy()
            return (v, v)
    elif fn is aliased_through_a_helper:
        args = lambda: (np.zeros(3000, np.int64), x, 3, np.zeros(3000))  # noqa: E731
    elif fn is bool_toggles:
        args = lambda: (np.zeros(30, np.int64), 2)  # noqa: E731
    else:
        args = lambda: (x, 7)  # noqa: E731
    want = fn.py_func(*args())
    for level, options in _levels():
        with loopscale.level(level, **options):
            got = fn(*args())
        np.testing.assert_array_equal(got, want)


@accelerate
def whole_accumulator_aliased_through_a_helper(X, out):
    acc = np.zeros(X.shape[1])
    g = same(acc)  # another name for the accumulator
    for i in range(X.shape[0]):
        acc += X[i]
        out[i] = g[0]  # the running sum
    return acc


@accelerate
def whole_accumulator_measured_and_copied(X):
    acc = np.zeros(X.shape[1])
    other = np.zeros_like(acc)  # a new array: no other name for `acc`
    scale = acc * 2 + len(acc)
    for i in range(X.shape[0]):
        acc += X[i]
    return acc, other, scale


def test_an_in_place_accumulator_with_another_name_made_by_a_helper_runs_in_order():
    fn = whole_accumulator_aliased_through_a_helper
    a = fn.analysis
    assert a.parallel is False
    assert a.reason.startswith(f"line {line_of(fn, 'g = same(acc)')}: the accumulator `acc`")
    X = np.ones((500, 2))
    want = np.zeros(500)
    fn.py_func(X, want)
    for level, options in _levels():
        out = np.zeros(500)
        with loopscale.level(level, **options):
            fn(X, out)
        np.testing.assert_array_equal(out, want)  # 1, 2, 3, ...
    assert whole_accumulator_measured_and_copied.analysis.parallel is True


@accelerate
def weights_into_an_argument(b, w, h):
    for i in range(b.shape[0]):
        h[b[i]] += w[i]


@accelerate
def counts_and_weights_into_an_argument(b, w, h):
    for i in range(b.shape[0]):
        h[b[i]] += 1
        if w[i] < 0.9:
            h[b[i]] += w[i]  # into an integer array: truncated after the count


@accelerate
def toggles_into_an_argument(b, h):
    for i in range(b.shape[0]):
        h[b[i]] -= 1


def _same_call(fn, make, exact=True):
    """Run *fn* as Python and at each level on fresh arguments from *make*; every
    argument must end as Python leaves it.  The plans of the threads runs."""
    want = make()
    fn.py_func(*want)
    plans = []
    for level, options in _levels():
        got = make()
        with loopscale.level(level, **options):
            fn(*got)
        for g, w in zip(got, want, strict=True):
            if isinstance(w, np.ndarray):
                if exact:
                    np.testing.assert_array_equal(g, w, err_msg=f"{level} {options}")
                else:
                    np.testing.assert_allclose(g, w, rtol=1e-11, err_msg=f"{level} {options}")
            else:
                assert dict(g) == dict(w), (level, options)
        if level == "threads":
            plans.append(fn._last_plan)
    return plans


def test_sums_into_an_argument_run_in_parallel_where_the_call_allows():
    import warnings

    from numba import typed, types

    assert into_an_argument.analysis.parallel
    assert into_an_argument.analysis.scatter_params == {"h": "count"}
    rng = np.random.default_rng(8)
    x = rng.random(60_001)
    b = rng.integers(0, 40, 60_001)
    wf = rng.random(60_001) - 0.4
    wi = rng.integers(-3, 4, 60_001)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # counts into any integer or bool array, floats into a float array:
        # blocks of their own, added in order
        for dtype in (np.int64, np.int8, np.uint16, bool, np.float64):
            plans = _same_call(into_an_argument, lambda dt=dtype: (x, np.ones(4, dt)))
            assert any(p is not None and p.nblocks > 1 for p in plans), dtype
        _same_call(weights_into_an_argument, lambda: (b, wf, np.full(40, 0.5)), exact=False)
        # what per-block sums would not repeat: the fused serial code adds into
        # the argument itself, in order, at every level
        for h0, w in ((np.full(40, -3, np.int64), wf),   # floats truncated into integers
                      (np.full(40, 7, np.uint8), wi),    # integers: exact either way
                      (np.ones(40, bool), wi)):          # a bool is not a counter
            into = weights_into_an_argument
            _same_call(into, lambda h0=h0, w=w: (b, w, h0.copy()))
        # every addition into the argument in order, the counts too (a count kept
        # in a block's array would be added after the truncated weights)
        for h0 in (np.zeros(40, np.int64), np.full(40, 250, np.uint8), np.zeros(40, bool)):
            _same_call(counts_and_weights_into_an_argument,
                       lambda h0=h0: (b, wf * 3.0, h0.copy()))
        _same_call(toggles_into_an_argument, lambda: (b, np.ones(40, bool)))
        _same_call(toggles_into_an_argument, lambda: (b, np.zeros(40, np.int16)))
        # the weights are the counts themselves: the loop reads what it adds
        _same_call(weights_into_an_argument,
                   lambda: (lambda c: (b, c, c))(np.linspace(0.0, 1.0, 60_001)), exact=False)
        why = weights_into_an_argument._why_serial or ""
        assert "`h`, which the loop adds into at any index, shares memory with `w`" in why, why

        # a typed Dict passed in: added into in order
        def counts():
            d = typed.Dict.empty(types.int64, types.int64)
            for k in range(4):
                d[k] = k
            return (x, d)

        _same_call(into_an_argument, counts)
        assert "not an array" in (into_an_argument._why_serial or "")
    fresh = accelerate(weights_into_an_argument.py_func)  # (it warns once)
    with loopscale.level("threads"), pytest.warns(loopscale.errors.SerializationWarning,
                                                  match="rounds toward zero"):
        fresh(b, wf, np.zeros(40, np.int32))


@accelerate
def deposit_and_push(pos, q, ncell, steps):
    for _ in range(steps):
        rho = np.zeros(ncell)  # made in each pass: an argument of the inner loop
        for p in range(pos.shape[0]):
            rho[int(pos[p]) % ncell] += q[p]
        for p in range(pos.shape[0]):
            pos[p] = (pos[p] + 0.1 * rho[int(pos[p]) % ncell]) % ncell
    return pos


def test_a_sum_at_any_index_inside_a_time_loop_runs_in_parallel():
    # (particle-in-cell, k-means, a gradient over rows: the heavy inner loop of
    # each pass; it ran in order as "a scatter")
    rng = np.random.default_rng(9)
    pos, q = rng.random(40_000) * 32, rng.random(40_000)
    want = deposit_and_push.py_func(pos.copy(), q, 32, 3)
    for level, options in _levels():
        with loopscale.level(level, **options):
            got = deposit_and_push(pos.copy(), q, 32, 3)
        np.testing.assert_allclose(got, want, rtol=1e-10)
    line = line_of(deposit_and_push.py_func, "rho[int(pos[p]) % ncell] += q[p]") - 1
    text = deposit_and_push.explain()
    assert f"inner loop over `p` at line {line}: PARALLEL" in text, text


# `h[k] = h[k] + w` is `h[k] += w` (read, then w, combined, stored back): written
# out, the sum ran in order ("writes `h` at an index that does not follow the
# loop variable")
@accelerate
def spelled_out_into_an_argument(b, w, h):
    for i in range(b.shape[0]):
        h[b[i]] = h[b[i]] + w[i]


@accelerate
def spelled_out_histogram(x, nbins):
    h = np.zeros(nbins)
    c = np.zeros(nbins, np.int64)
    for i in range(x.shape[0]):
        k = int(x[i] * nbins)
        h[k] = x[i] * x[i] + h[k]  # (the other way round)
        c[k] = c[k] + 1
    return h, c


@accelerate
def spelled_out_reading_others(b, h):
    for i in range(b.shape[0]):
        h[b[i]] = h[b[i]] + h[b[i] - 1]  # reads other elements of h


@accelerate
def spelled_out_difference(b, w, h):
    for i in range(b.shape[0]):
        h[b[i]] = w[i] - h[b[i]]  # not h[k] -= w


def test_a_sum_written_out_as_an_assignment_runs_as_the_augmented_one():
    import warnings

    rng = np.random.default_rng(11)
    b = rng.integers(0, 40, 60_001)
    wf = rng.random(60_001) - 0.4
    x = rng.random(60_001)
    assert spelled_out_into_an_argument.analysis.parallel
    assert spelled_out_histogram.analysis.parallel
    assert set(spelled_out_histogram.analysis.reduction_scatters) == {"h", "c"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plans = _same_call(spelled_out_into_an_argument,
                           lambda: (b, wf, np.full(40, 0.5)), exact=False)
        assert any(p is not None and p.nblocks > 1 for p in plans)
        # floats truncated into integers: added into the argument in order
        _same_call(spelled_out_into_an_argument, lambda: (b, wf, np.full(40, -3, np.int64)))
        _same_call(spelled_out_reading_others, lambda: (b + 1, np.ones(41)))
        _same_call(spelled_out_difference, lambda: (b, wf, np.ones(40)))
    want = spelled_out_histogram.py_func(x, 16)
    for level in ("serial", "threads"):
        with loopscale.level(level):
            h, c = spelled_out_histogram(x, 16)
        np.testing.assert_allclose(h, want[0], rtol=1e-12)
        np.testing.assert_array_equal(c, want[1])
    for fn in (spelled_out_reading_others, spelled_out_difference):
        assert not fn.analysis.parallel, fn.explain()
