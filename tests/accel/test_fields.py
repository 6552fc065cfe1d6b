"""Arrays held in a namedtuple (or a tuple) argument, and arrays that overlap themselves.

The analysis counts every field of a namedtuple ``st`` as one array ``st``:
``st.u[i] = st.f[i]`` is parallel, ``st.u[i] = st.u[i - 1]`` (or through
``u = st.u``, or a helper given ``st.u``) is a dependence, and a scatter
``st.h[k[i]] += 1`` keeps the order.  At call time the arrays inside such a
tuple are checked for overlap like arrays passed alone (``State(a[1:],
a[:-1])`` runs in order), and an output whose own elements repeat (stride 0, an
``as_strided`` window) runs in order too.  A tuple of output arrays is a valid
argument.
"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import loopscale
from loopscale import accelerate
from loopscale.errors import SerializationWarning

from .kernels import line_of

pytestmark = pytest.mark.timeout(300)

State = collections.namedtuple("State", "u f dt")


@accelerate
def relax(st):
    for i in range(1, st.u.shape[0]):
        st.u[i] = 0.5 * st.u[i - 1] + st.f[i]


@accelerate
def axpy(st, a):
    for i in range(st.u.shape[0]):
        st.u[i] = a * st.f[i] + st.dt


@accelerate
def axpy_taken_out(st, a):
    u = st.u
    f = st.f
    for i in range(u.shape[0]):
        u[i] = a * f[i] + st.dt


@accelerate
def relax_taken_out(st):
    u = st.u
    for i in range(1, u.shape[0]):
        u[i] = st.u[i - 1] + st.f[i]


def _put(v, i, x):
    v[i] = x


@accelerate
def relax_through_a_helper(st):
    for i in range(1, st.u.shape[0]):
        _put(st.u, i, st.u[i - 1] * 0.5 + st.f[i])


@accelerate
def scatter_into_a_field(st, k):
    for i in range(k.shape[0]):
        st.u[k[i]] += st.f[i]


@accelerate
def split_sign(x, outs):
    for i in range(x.shape[0]):
        if x[i] >= 0:
            outs[0][i] = x[i]
            outs[1][i] = 0.0
        else:
            outs[0][i] = 0.0
            outs[1][i] = -x[i]


@accelerate
def accumulate(x, out):
    for i in range(x.shape[0]):
        out[i] = out[i] + x[i]


def _flat(v):
    if isinstance(v, tuple):
        return [y for e in v for y in _flat(e)]
    return [v] if isinstance(v, np.ndarray) else []


def _run(fn, make, workers=2):
    ref = make()
    fn.py_func(*ref)
    got = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with loopscale.level("threads", max_workers=workers):
            fn(*got)
    for r, g in zip(_flat(ref), _flat(got), strict=True):
        np.testing.assert_array_equal(g, r)
    return [w for w in caught if issubclass(w.category, SerializationWarning)]


N = 20011


def _state(u=None, f=None):
    rng = np.random.default_rng(4)
    return State(rng.random(N) if u is None else u, rng.random(N) if f is None else f, 0.25)


@pytest.mark.parametrize("fn, text", [
    (relax, "st.u[i] = 0.5 * st.u[i - 1]"),
    (relax_taken_out, "u[i] = st.u[i - 1]"),
    (relax_through_a_helper, "_put(st.u, i"),
    (scatter_into_a_field, "st.u[k[i]] += st.f[i]"),
], ids=["field", "field taken out", "field through a helper", "scatter into a field"])
def test_dependences_through_namedtuple_fields_keep_the_order(fn, text):
    a = fn.analysis
    assert a.parallel is False
    assert a.reason.startswith(f"line {line_of(fn, text)}: ") and "`st`" in a.reason, a.reason
    k = np.random.default_rng(1).integers(0, 50, N)
    for workers in (2, 3):
        extra = (k,) if fn is scatter_into_a_field else ()
        _run(fn, lambda: (_state(), *extra), workers)  # noqa: B023


@pytest.mark.parametrize("fn", [axpy, axpy_taken_out])
def test_independent_field_writes_run_in_parallel(fn):
    assert fn.analysis.parallel is True, fn.analysis.reason
    assert fn.analysis.arrays["st"].written
    assert _run(fn, lambda: (_state(), 2.0)) == []
    # the same array in two fields, element for element: still safe, still parallel
    assert _run(fn, lambda: ((lambda a: State(a, a, 0.5))(np.random.default_rng(2).random(N)),
                             2.0)) == []


@pytest.mark.parametrize("fn", [axpy, axpy_taken_out])
def test_fields_that_overlap_at_other_indices_run_in_order(fn):
    def make():
        a = np.random.default_rng(3).random(N + 1)
        return State(a[1:], a[:-1], 0.5), 0.5

    warned = _run(fn, make)
    assert len(warned) == 1 and "share memory" in str(warned[0].message), warned


def test_a_tuple_of_output_arrays_is_an_argument_and_runs_in_parallel():
    assert split_sign.analysis.parallel is True, split_sign.analysis.reason
    x = np.random.default_rng(5).random(N) - 0.5
    assert _run(split_sign, lambda: (x, (np.zeros(N), np.zeros(N)))) == []
    warned = _run(split_sign, lambda: (x, (lambda a: (a[1:], a[:-1]))(np.zeros(N + 1))))
    assert len(warned) == 1 and "share memory" in str(warned[0].message), warned


@pytest.mark.parametrize("layout", ["stride 0", "window"])
def test_an_output_whose_elements_repeat_runs_in_order(layout):
    rng = np.random.default_rng(6)
    if layout == "stride 0":
        x = rng.random(N)

        def make():
            return x, as_strided(np.zeros(1), shape=(N,), strides=(0,))
    else:  # rows of three that overlap by two (sliding_window_view, made writable)
        x = rng.random((N, 3))

        def make():
            base = np.zeros(N + 2)
            return x, as_strided(base, shape=(N, 3), strides=(8, 8))

    _run(accumulate, make)  # (warns once per function and kind: see explain())
    assert "last call ran on one core: `out` holds some of its elements more than once" \
        in accumulate.explain(), accumulate.explain()


# -- fields of a structured array: `x["a"][i]` and `x[i]["a"]` select no axis ------------

@accelerate
def field_sum(x, out):
    for i in range(x.shape[0]):
        out[i] = x["a"][i] + x["b"][i]


@accelerate
def record_write(x):
    for i in range(x.shape[0]):
        x[i]["b"] = x[i]["a"] * 2.0


@accelerate
def record_carried(x):
    for i in range(1, x.shape[0]):
        x["b"][i] = x["b"][i - 1] * 0.5 + x["a"][i]


def _records():
    x = np.zeros(N, dtype=[("a", "f8"), ("b", "f8")])
    x["a"] = np.random.default_rng(8).random(N)
    x["b"] = 1.0
    return x


def test_structured_array_fields_index_like_the_array():
    assert field_sum.analysis.parallel is True, field_sum.analysis.reason
    assert record_write.analysis.parallel is True, record_write.analysis.reason
    for workers in (2, 3):
        assert _run(field_sum, lambda: (_records(), np.zeros(N)), workers) == []
        assert _run(record_write, lambda: (_records(),), workers) == []


def test_a_dependence_through_a_structured_field_keeps_the_order():
    a = record_carried.analysis
    assert a.parallel is False
    line = line_of(record_carried, 'x["b"][i - 1]')
    assert a.reason.startswith(f"line {line}: "), a.reason
    _run(record_carried, lambda: (_records(),), 3)
