"""Flags: ``found = False`` before the loop, ``found = True`` under a test in it.

A name the loop assigns one constant, and reads nowhere, ends as that constant
when any iteration assigned it and as its start value otherwise, whatever the
order: a reduction (``"set"``) whose block partial is whether the block set
it.  Two different constants, or a read in the loop, keep the order: the loop
is sequential and the reason names the line.
"""

from __future__ import annotations

import numpy as np
import pytest

import loopscale
from loopscale import accelerate

from .kernels import line_of

pytestmark = pytest.mark.timeout(300)


@accelerate
def any_negative(x):
    found = False
    for i in range(x.shape[0]):
        if x[i] < 0:
            found = True
    return found


@accelerate
def all_positive(x):
    ok = True
    for i in range(x.shape[0]):
        if x[i] <= 0:
            ok = False
    return ok


@accelerate
def clean_and_sum(x, out):
    # replace NaN by 0, sum, and report whether any was replaced (status 3)
    status = 0
    s = 0.0
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:
            status = 3
            v = 0.0
        out[i] = v
        s += v
    return status, s


@accelerate
def any_pair_close(p, tol):
    # an inner loop sets the outer loop's flag
    near = False
    for i in range(p.shape[0]):
        for j in range(i + 1, p.shape[0]):
            if abs(p[i] - p[j]) < tol:
                near = True
    return near


@accelerate
def cap_at_infinity(x):
    cap = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0.5:
            cap = 1e400  # infinity, as Python reads it (the generated code must too)
    return cap


@accelerate
def two_constants(x):
    level = 0
    for i in range(x.shape[0]):
        if x[i] > 5:
            level = 1
        if x[i] > 7:
            level = 2
    return level


@accelerate
def flag_read_in_loop(x, out):
    seen = False
    for i in range(x.shape[0]):
        if x[i] < 0:
            seen = True
        out[i] = seen
    return seen


def _levels():
    yield "serial", {}
    for w in (1, 2, 3):
        yield "threads", {"max_workers": w}
    yield "threads", {"max_workers": 2, "policy": "dynamic"}


def _check(fn, make_args):
    want = fn.py_func(*make_args())
    for level, options in _levels():
        args = make_args()
        with loopscale.level(level, **options):
            got = fn(*args)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,), strict=True):
            if isinstance(w, (bool, np.bool_)):  # a flag: exactly, and a bool
                assert g is w or (type(g) is type(w) and g == w), (fn.__name__, level, g, w)
            else:  # (a float sum: Python's to rounding)
                assert g == pytest.approx(w, rel=1e-12), (fn.__name__, level, g, w)
        ref = make_args()
        fn.py_func(*ref)
        for a, r in zip(args, ref, strict=True):
            if isinstance(r, np.ndarray):
                np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("n", [0, 1, 17, 4099])
@pytest.mark.parametrize("where", ["none", "first", "last", "middle", "many"])
def test_flags_end_as_the_loop_leaves_them(n, where):
    rng = np.random.default_rng(n)
    spots = {"none": [], "first": [0], "last": [n - 1], "middle": [n // 2],
             "many": list(rng.integers(0, max(n, 1), 9))}[where]

    def data(fill):
        x = np.abs(rng.standard_normal(n)) + 0.5 if n else np.zeros(0)
        for k in spots:
            if 0 <= k < n:
                x[k] = fill
        return x

    neg = data(-1.0)
    nan = data(np.nan)
    _check(any_negative, lambda: (neg.copy(),))
    _check(all_positive, lambda: (neg.copy(),))
    _check(clean_and_sum, lambda: (nan.copy(), np.zeros(n)))
    for fn in (any_negative, all_positive, clean_and_sum):
        assert fn.analysis.parallel is True, fn.analysis.reason


def test_an_inner_loop_may_set_the_outer_loops_flag():
    p = np.random.default_rng(3).random(300) * 1000
    _check(any_pair_close, lambda: (p, 1e-3))
    _check(any_pair_close, lambda: (p, 0.5))
    assert any_pair_close.analysis.parallel is True


def test_a_flag_set_to_infinity():
    x = np.random.default_rng(5).random(3000)
    _check(cap_at_infinity, lambda: (x,))
    _check(cap_at_infinity, lambda: (x * 0.5,))
    assert cap_at_infinity.analysis.parallel is True


def test_explain_names_the_flag_and_its_constant():
    a = clean_and_sum.analysis
    assert a.reductions == {"s": "+", "status": "set"}
    assert a.reduction_sets == {"status": "3"}
    assert "status (set to 3 by any iteration)" in clean_and_sum.explain()


@pytest.mark.parametrize("fn, text, words", [
    (two_constants, "return level", "`level` is assigned in the loop"),
    (flag_read_in_loop, "out[i] = seen", "`seen` is read before"),
], ids=["two constants", "read in the loop"])
def test_a_flag_whose_order_matters_stays_sequential(fn, text, words):
    a = fn.analysis
    assert a.parallel is False
    assert a.reason.startswith(f"line {line_of(fn, text)}: ") and words in a.reason, a.reason
    x = np.random.default_rng(4).integers(-3, 10, 500).astype(np.float64)
    if fn is flag_read_in_loop:
        _check(fn, lambda: (x.copy(), np.zeros(500)))
    else:
        _check(fn, lambda: (x.copy(),))
