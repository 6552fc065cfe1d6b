"""The position of a minimum or maximum: ``if d < best: best = d; idx = i``.

Such a loop is a min (max) reduction whose *payloads* (``idx``, and any other
names assigned only with it) follow the best value.  Each block keeps the
payloads of its own best value, and the combine takes them from the block
whose value it takes, by the loop's own comparison, so every level returns the
position the loop, run in order, returns: the first of equal values with
``<``, the last with ``<=``, never a NaN's, and the start value when nothing
beats it.  The checks run at ``serial`` and at ``threads`` with several worker
counts (blocks cut at different places), on data full of ties, NaN, signed
zeros and infinities, from several start values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import loopscale
from loopscale import accelerate
from loopscale.errors import SerializationWarning

from .kernels import line_of

pytestmark = pytest.mark.timeout(300)


# -- kernels (module level: accelerate reads their source) ----------------------


@accelerate
def argmin_first(x, s0):
    best = s0
    idx = -1
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = i
    return best, idx


@accelerate
def argmin_last(x, s0):
    best = s0
    idx = -1
    for i in range(x.shape[0]):
        if x[i] <= best:
            idx = i  # (the payload before the value: order in the body is free)
            best = x[i]
    return best, idx


@accelerate
def argmax_first(x, s0):
    best = s0
    idx = -7
    for i in range(x.shape[0]):
        v = x[i]
        if best < v:  # (the accumulator on the left)
            best = v
            idx = i
    return best, idx


@accelerate
def argmax_last_masked(x, s0):
    best = s0
    idx = -1
    for i in range(x.shape[0]):
        if i % 3 != 1 and x[i] >= best:  # a filter before the comparison
            best = x[i]
            idx = i
    return best, idx


ARG_KERNELS = [argmin_first, argmin_last, argmax_first, argmax_last_masked]


@accelerate
def nearest_point(X, q):
    # the nearest row of X to q: its index, its squared distance, its first coordinate
    best = np.inf
    bi = -1
    bx = 0.0
    for i in range(X.shape[0]):
        s = 0.0
        for k in range(X.shape[1]):
            t = X[i, k] - q[k]
            s += t * t
        if s < best:
            best = s
            bi = i
            bx = X[i, 0]
    return bi, best, bx


@accelerate
def closest_pair_to_origin(P):
    # over all pairs (i, j): the inner loop updates the outer loop's reduction
    n = P.shape[0]
    best = np.inf
    bi = -1
    bj = -1
    for i in range(n):
        for j in range(n):
            d = abs(P[i] + P[j])
            if d < best:
                best = d
                bi = i
                bj = j
    return best, bi, bj


@accelerate
def argmin_and_argmax(x):
    lo = x[0]
    hi = x[0]
    ilo = 0
    ihi = 0
    for i in range(1, x.shape[0]):
        if x[i] < lo:
            lo = x[i]
            ilo = i
        if x[i] > hi:
            hi = x[i]
            ihi = i
    return ilo, ihi, lo, hi


@accelerate
def best_of_two_updates(x, y):
    # two updates of one minimum per iteration, each with the position
    best = np.inf
    at = -1
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            at = 2 * i
        if y[i] < best:
            best = y[i]
            at = 2 * i + 1
    return best, at


# -- sequential: what follows the minimum depends on the order -----------------


@accelerate
def previous_best(x):
    best = np.inf
    prev = np.inf
    for i in range(x.shape[0]):
        if x[i] < best:
            prev = best  # the value it replaced: the one before in order
            best = x[i]
    return best, prev


@accelerate
def payload_read_in_loop(x, out):
    best = np.inf
    idx = 0
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = i
        out[i] = idx  # the running position, iteration by iteration
    return best


@accelerate
def payload_set_elsewhere(x):
    best = np.inf
    idx = -1
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = i
        if x[i] > 100.0:
            idx = -2
    return best, idx


@accelerate
def payload_reads_later_value(x):
    best = np.inf
    idx = -1
    k = 0
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = k  # `k` of the iteration before
        k = i
    return best, idx


@accelerate
def updates_with_different_payloads(x, y):
    best = np.inf
    at = -1
    src = 0
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            at = i
        if y[i] < best:
            best = y[i]
            src = i
    return best, at, src


@accelerate
def payload_without_a_start(x):
    best = np.inf
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = i  # noqa: F841 - (the point of the case)
    return best


@accelerate
def position_from_none(x):
    best = np.inf
    idx = None  # (Numba: an optional integer; no per-block array can hold it)
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            idx = i
    return best, idx


@accelerate
def position_as_tuple(x):
    best = np.inf
    at = (-1, -1)
    for i in range(x.shape[0]):
        if x[i] < best:
            best = x[i]
            at = (i, i + 1)
    return best, at


@accelerate
def zero_the_nearest_row(X):
    # `row` is a view of X: zeroing it after the loop zeroes X's row
    best = np.inf
    row = X[0]
    for i in range(X.shape[0]):
        d = X[i, 0] * X[i, 0] + X[i, 1] * X[i, 1]
        if d < best:
            best = d
            row = X[i]
    row[:] = 0.0
    return best


def mark(seen, i):
    seen[i] = True
    return True


@accelerate
def filter_with_a_write(x, seen):
    best = np.inf
    idx = -1
    for i in range(x.shape[0]):
        if x[i] < best and mark(seen, i):  # runs only where the comparison holds
            best = x[i]
            idx = i
    return best, idx


@accelerate
def payload_divides(s, c):
    best = np.inf
    ratio = 0.0
    for i in range(s.shape[0]):
        if s[i] < best:
            best = s[i]
            ratio = s[i] / c[i]  # runs at the loop's improvements only
    return best, ratio


# -- data -----------------------------------------------------------------------


def _data(n: int, kind: str, dtype, rng) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-5, 5, n).astype(dtype)  # many ties
    pool = {"ties": [0.0, -0.0, 1.0, -1.0, 2.0],
            "specials": [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan],
            "nan-heavy": [np.nan, np.nan, np.nan, 1.0, -1.0]}[kind]
    return rng.choice(np.array(pool), n).astype(dtype)


def _same(got, want) -> bool:
    """Equal as Python sees it, NaN for NaN, and the sign of a zero."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        g, w = np.float64(g), np.float64(w)
        if np.isnan(g) or np.isnan(w):
            if not (np.isnan(g) and np.isnan(w)):
                return False
        elif not (g == w and np.signbit(g) == np.signbit(w)):
            return False
    return True


def _levels():
    yield "serial", {}
    for w in (1, 2, 3, 7):
        yield "threads", {"max_workers": w}
    yield "threads", {"max_workers": 3, "policy": "dynamic"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["ties", "specials", "nan-heavy"])
@pytest.mark.parametrize("kernel", ARG_KERNELS, ids=lambda k: k.__name__)
def test_position_of_the_best_value_is_the_loops_own(kernel, kind, dtype):
    rng = np.random.default_rng(abs(hash((kernel.__name__, kind))) % 2**32)
    starts = ([np.inf, -np.inf, 0.0, -0.0, 1.0, np.nan] if dtype != np.int64
              else [10**6, -10**6, 0])
    for n in (0, 1, 5, 17, 1000, 4099):
        x = _data(n, kind, dtype, rng)
        for s0 in starts:
            want = kernel.py_func(x, s0)
            for level, options in _levels():
                with loopscale.level(level, **options):
                    got = kernel(x, s0)
                assert _same(got, want), (kernel.__name__, kind, n, s0, level, options,
                                          got, want)
    assert kernel.analysis.parallel is True, kernel.analysis.reason
    assert kernel.analysis.reduction_payloads == {"best": ("idx",)}


def _every_level_gives(fn, args, want) -> None:
    for level, options in _levels():
        with loopscale.level(level, **options):
            got = fn(*args)
        assert _same(got, want), (fn.__name__, level, options, got, want)


def test_nearest_point_carries_two_payloads():
    rng = np.random.default_rng(5)
    X = rng.integers(-3, 4, (3001, 3)).astype(np.float64)  # many rows at one distance
    q = np.array([0.5, 0.0, -0.5])
    _every_level_gives(nearest_point, (X, q), nearest_point.py_func(X, q))
    assert nearest_point.analysis.parallel is True
    assert nearest_point.analysis.reduction_payloads == {"best": ("bi", "bx")}
    assert "best (min, with bi, bx)" in nearest_point.explain()


def test_an_inner_loop_may_update_the_outer_loops_position():
    P = np.random.default_rng(6).integers(-20, 20, 300).astype(np.float64)
    _every_level_gives(closest_pair_to_origin, (P,), closest_pair_to_origin.py_func(P))
    assert closest_pair_to_origin.analysis.parallel is True


def test_argmin_and_argmax_in_one_loop():
    x = np.random.default_rng(7).integers(-9, 9, 5003)
    _every_level_gives(argmin_and_argmax, (x,), argmin_and_argmax.py_func(x))
    assert argmin_and_argmax.analysis.reduction_payloads == {"lo": ("ilo",), "hi": ("ihi",)}


def test_two_updates_of_one_minimum_each_with_its_position():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 6, 4000).astype(np.float64)
    y = rng.integers(0, 6, 4000).astype(np.float64)
    _every_level_gives(best_of_two_updates, (x, y), best_of_two_updates.py_func(x, y))
    assert best_of_two_updates.analysis.parallel is True


@pytest.mark.parametrize("kernel, line_text, words", [
    (previous_best, "prev = best", "`prev = best` reads `best`"),
    (payload_read_in_loop, "out[i] = idx", "`idx` follows the min of `best` (line"),
    (payload_set_elsewhere, "idx = -2", "`idx` follows the min of `best` (line"),
    (payload_reads_later_value, "idx = k", "`k` is read before"),
    (updates_with_different_payloads, "if y[i] < best", "this update of `best` sets `src`"),
    (payload_without_a_start, "if x[i] < best", "`idx` follows the min of `best` (line"),
    (filter_with_a_write, "and mark(seen, i)", "`mark(seen, i)` runs only when `best` improves"),
    (payload_divides, "ratio = s[i] / c[i]", "`s[i] / c[i]` runs only when `best` improves"),
], ids=lambda v: getattr(v, "__name__", None))
def test_what_depends_on_the_order_stays_sequential(kernel, line_text, words):
    a = kernel.analysis
    assert a.parallel is False
    assert words in a.reason, a.reason
    x = np.random.default_rng(9).integers(0, 9, 2000).astype(np.float64)
    # zeros where the loop, run in order, never divides (not at its improvements)
    improves = x < np.concatenate([[np.inf], np.minimum.accumulate(x)[:-1]])
    c = np.where(improves | (np.arange(2000) % 5 != 3), 1.0, 0.0)
    args = ((x, np.zeros(2000)) if kernel is payload_read_in_loop
            else (x, x[::-1].copy()) if kernel is updates_with_different_payloads
            else (x, np.zeros(2000, np.bool_)) if kernel is filter_with_a_write
            else (x, c) if kernel is payload_divides else (x,))
    want = kernel.py_func(*[np.copy(v) for v in args])
    for level, options in _levels():
        with loopscale.level(level, **options):
            got = kernel(*[np.copy(v) for v in args])
        assert _same(np.atleast_1d(got), np.atleast_1d(want))
    assert a.reason.startswith(f"line {line_of(kernel, line_text)}: "), a.reason


# (the cuda target keeps these loops on the CPU: check_position_reduction_stays_on_cpu
# in test_cuda_sim.py, shared with the GPU twin)


@pytest.mark.parametrize("kernel", [position_from_none, position_as_tuple],
                         ids=lambda k: k.__name__)
def test_payloads_that_are_not_numbers_run_in_order_at_parallel_levels(kernel):
    x = np.random.default_rng(11).integers(0, 50, 3001).astype(np.float64)
    want = kernel.py_func(x)
    with loopscale.level("serial"):
        assert kernel(x) == want
    with pytest.warns(SerializationWarning, match="not a number"):
        with loopscale.level("threads", max_workers=2):
            assert kernel(x) == want
    assert kernel.analysis.parallel is True  # (numbers would be held per block)


def test_a_row_view_payload_stays_a_view():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((3001, 2))
    want_X = X.copy()
    want = zero_the_nearest_row.py_func(want_X)
    for level, options in _levels():
        Y = X.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SerializationWarning)
            with loopscale.level(level, **options):
                got = zero_the_nearest_row(Y)
        assert got == want
        np.testing.assert_array_equal(Y, want_X)  # the nearest row of Y itself is zero
