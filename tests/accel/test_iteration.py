"""Loops written the Python way (``for v in x``, ``enumerate``, ``zip``) run in
parallel when what they iterate is an array, and as written otherwise.

Each parallel case checks the verdict and that every level returns the
plain-Python result; each case that must keep its order checks the verdict
and the result.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import typed, types

import loopscale
from loopscale import accelerate

from .kernels import line_of
from .test_views_and_helpers import same_at_every_level

pytestmark = pytest.mark.timeout(300)

N = 20_011  # prime: blocks of unequal length


# -- kernels (module level: accelerate reads their source) ----------------------


@accelerate
def doubled(x, out):
    for i, v in enumerate(x):
        out[i] = 2 * v + i


@accelerate
def dot(x, y):
    s = 0
    for a, b in zip(x, y):  # noqa: B905 - as users write it
        s += a * b
    return s


@accelerate
def total(x):
    s = 0
    for v in x:
        s += v
    return s


@accelerate
def weighted(x, w, out):
    for i, (a, b) in enumerate(zip(x, w)):  # noqa: B905 - as users write it
        out[i] = a * b - i


@accelerate
def three(x, y, z):
    s = 0
    for a, b, c in zip(x, y, z):  # noqa: B905 - as users write it
        s += a * b - c
    return s


@accelerate
def row_sums(m):
    out = np.zeros(m.shape[0], dtype=m.dtype)
    for i, row in enumerate(m):
        t = 0
        for v in row:
            t += v
        out[i] = t
    return out


@accelerate
def scale_rows(m, f):
    for row in m:  # a row is a view: writing it writes m
        for j in range(row.shape[0]):
            row[j] *= f


@accelerate
def argmin(x):
    best = x[0]
    at = 0
    for i, v in enumerate(x):
        if v < best:
            best = v
            at = i
    return best, at


@accelerate
def last_item(x):
    s = 0
    for i, v in enumerate(x):  # noqa: B007 - read after the loop
        s += v
    return s, i, v  # the last index and item: read after the loop, so in order


@accelerate
def start_at_zero(x, out):
    for i, v in enumerate(x, start=0):
        out[i] = v + 1


# -- kernels that keep their order ---------------------------------------------


@accelerate
def running(x, out):
    for i, v in enumerate(x):
        out[i] = out[i - 1] + v if i else v


@accelerate
def start_at_one(x, out):
    for k, v in enumerate(x, 1):
        out[k - 1] = v * k


@accelerate
def rebinds(x):
    s = 0
    for v in x:
        s += v
        x = x[1:]
    return s


@accelerate
def with_else(x):
    s = 0
    for v in x:
        s += v
    else:
        s += 1
    return s


@accelerate
def keyed(d):
    s = 0
    for i, k in enumerate(d):  # a typed Dict: its keys, not d[i]
        s += k * (i + 1)
    return s


@accelerate
def shadowing(x):
    s = 0
    for x in x:  # noqa: B020 - the item takes the sequence's name
        s += x
    return s


@accelerate
def list_total(lst):
    s = 0
    for v in lst:
        s += v
    return s


@accelerate
def pairs_whole(x, y):
    s = 0
    for pair in zip(x, y):  # noqa: B905 - not unpacked: left as written
        s += pair[0] * pair[1]
    return s


def _ints(n=N, seed=0):
    return np.random.default_rng(seed).integers(-1000, 1000, n)


@pytest.mark.parametrize("fn, make_args", [
    (doubled, lambda: (_ints(), np.zeros(N, np.int64))),
    (dot, lambda: (_ints(seed=1), _ints(seed=2))),
    (total, lambda: (_ints(),)),
    (weighted, lambda: (_ints(seed=1), _ints(seed=2), np.zeros(N, np.int64))),
    (three, lambda: (_ints(seed=1), _ints(N - 5, seed=2), _ints(N + 3, seed=3))),
    (row_sums, lambda: (_ints(3 * N).reshape(N, 3),)),
    (scale_rows, lambda: (_ints(3 * N).reshape(N, 3), 3)),
    (argmin, lambda: (np.abs(_ints()) % 50,)),
    (start_at_zero, lambda: (_ints(), np.zeros(N, np.int64))),
], ids=lambda v: getattr(v, "__name__", ""))
def test_a_loop_over_an_array_written_the_python_way_runs_in_parallel(fn, make_args) -> None:
    assert fn.analysis.parallel, fn.explain()
    same_at_every_level(fn, make_args, workers=(2, 3))


def test_float_items_give_the_serial_answer_at_every_worker_count() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.random(N), rng.random(N)
    with loopscale.level("serial"):
        want = dot(x, y)
    for w in (2, 3, 7):
        with loopscale.level("threads", max_workers=w, policy="dynamic"):
            assert dot(x, y) == want
    assert want == pytest.approx(dot.py_func(x, y), rel=1e-12)


def test_views_and_short_inputs() -> None:
    m = _ints(3 * N).reshape(N, 3)
    for arr in (np.asfortranarray(m), m[::2], m[:0], m[:1]):
        with loopscale.level("threads", max_workers=3):
            np.testing.assert_array_equal(row_sums(arr), row_sums.py_func(arr))
    x = _ints()
    with loopscale.level("threads", max_workers=3):
        assert dot(x[::-3], x[1::2]) == dot.py_func(x[::-3], x[1::2])
        assert dot(x[:0], x) == 0


def test_explain_says_the_items_are_read_by_position() -> None:
    text = dot.explain()
    assert f"loop over the positions of what it iterates at line {line_of(dot, 'zip(')}" \
        in text, text
    assert "what it iterates is an array" in text
    assert "__ls_" not in text, text
    assert "private to each iteration: a, b" in text, text
    assert "loop over `i`" in doubled.explain()


@pytest.mark.parametrize("fn, text", [
    (running, "out[i - 1]"),
    (last_item, "return s, i, v"),
    (shadowing, "for x in x"),
    (start_at_one, "enumerate(x, 1)"),
    (rebinds, "for v in x"),
    (with_else, "for v in x"),
    (pairs_whole, "zip(x, y)"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_a_loop_that_cannot_be_read_by_position_keeps_its_order(fn, text) -> None:
    assert not fn.analysis.parallel, fn.explain()
    assert str(line_of(fn, text)) in (fn.analysis.reason or ""), fn.explain()
    x = _ints(1000)
    args = {running: lambda: (x, np.zeros(1000, np.int64)),
            start_at_one: lambda: (x, np.zeros(1000, np.int64)),
            rebinds: lambda: (x.copy(),), with_else: lambda: (x,),
            pairs_whole: lambda: (x, x[::-1].copy()), last_item: lambda: (x,),
            shadowing: lambda: (x,)}[fn]
    same_at_every_level(fn, args)


def test_a_typed_dict_is_iterated_as_written() -> None:
    d = typed.Dict.empty(types.int64, types.int64)
    for k in (50, 3, 9, -4):
        d[k] = 0
    assert keyed.analysis.parallel  # as read before a call: by position
    with loopscale.level("threads", max_workers=2):
        assert keyed(d) == keyed.py_func(d) == 50 * 1 + 3 * 2 + 9 * 3 - 4 * 4
    assert not keyed.analysis.parallel, keyed.explain()  # built again as written
    x = _ints(100)
    assert keyed(x) == keyed.py_func(x)  # an array still gives the same answer


def test_a_typed_list_is_iterated_as_written() -> None:
    # (the guard admits arrays and tuples only: a list's length may change in the loop)
    lst = typed.List([1, 2, 30])
    assert list_total(lst) == list_total.py_func(lst) == 33
    assert not list_total.analysis.parallel, list_total.explain()
