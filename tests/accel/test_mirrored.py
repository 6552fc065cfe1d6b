"""Symmetric fills: ``D[i, j] = D[j, i] = d`` for ``j`` on one side of ``i``.

Iteration ``i`` writes row ``i`` right of the diagonal and column ``i`` below
it (or the mirror of that): element ``(p, q)`` with ``p < q`` belongs to
iteration ``p`` alone, at ``(q, p)`` too, so the iterations are independent
although no one axis is indexed by the loop variable in every access.  The
loop runs in parallel only when the analysis can see the sides: the inner
loop's ``range`` puts ``j`` strictly above ``i`` for every mirrored access and
at or above ``i`` for every direct one (or below / at or below).  A full
``range(n)``, the two triangles from different sides, an inner variable that is
reassigned, a ``j`` not from ``range``, or a write through a helper keep the
loop in order, and the reason names the line.
"""

from __future__ import annotations

import numpy as np
import pytest

import loopscale
from loopscale import accelerate

from .kernels import line_of

pytestmark = pytest.mark.timeout(300)


@accelerate
def distance_matrix(x):
    n = x.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d = 0.0
            for k in range(x.shape[1]):
                t = x[i, k] - x[j, k]
                d += t * t
            d = np.sqrt(d)
            D[i, j] = d
            D[j, i] = d
    return D


@accelerate
def lower_with_diagonal(x, D):
    n = x.shape[0]
    for i in range(n):
        D[i, i] = 1.0
        for j in range(i):
            D[i, j] = D[j, i] = np.exp(-abs(x[i] - x[j]))


@accelerate
def antisymmetric_descending(x, D):
    n = x.shape[0]
    for i in range(n):
        for j in range(n - 1, i, -1):
            f = x[i] * x[j] - x[j]
            D[i, j] = f
            D[j, i] = -f


@accelerate
def pair_forces(p, F):
    # 3-D: a vector per pair, the mirror with the opposite sign; reads of its own elements
    n = p.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            for c in range(p.shape[1]):
                F[i, j, c] = p[j, c] - p[i, c]
                F[j, i, c] = -F[i, j, c]


@accelerate
def counts_below(x, C):
    # integers: exact at every level
    n = x.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            if x[j] < x[i]:
                C[i, j] = 1
                C[j, i] = -1


@accelerate
def full_square(x, D):
    n = x.shape[0]
    for i in range(n):
        for j in range(n):
            D[i, j] = D[j, i] = x[i] - 2 * x[j]


@accelerate
def opposite_sides(x, D):
    n = x.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            D[i, j] = x[i] + x[j]
        for j in range(i):
            D[j, i] = x[j] - x[i]


@accelerate
def inner_reassigned(x, D):
    n = x.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            D[i, j] = x[i]
            j = n - 1 - j
            D[j, i] = x[i] * 2


@accelerate
def inner_from_a_start(x, D, s):
    n = x.shape[0]
    for i in range(n):
        for j in range(s, i):
            D[i, j] = D[j, i] = x[i] - x[j]


@accelerate
def mirror_reads_others(x, D):
    n = x.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            D[j, i] = x[i] + D[i - 1, j] if i > 0 else x[i]
            D[i, j] = D[j, i]


def _levels():
    yield "serial", {}
    for w in (1, 2, 3):
        yield "threads", {"max_workers": w}
    yield "threads", {"max_workers": 2, "policy": "dynamic"}


def _check(fn, make_args, exact=True):
    ref = make_args()
    want = fn.py_func(*ref)
    for level, options in _levels():
        args = make_args()
        with loopscale.level(level, **options):
            got = fn(*args)
        if want is not None:
            if exact:
                np.testing.assert_array_equal(got, want, err_msg=f"{level} {options}")
            else:  # np.sqrt/np.exp compiled vs NumPy's: to rounding
                np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
        for a, r in zip(args, ref, strict=True):
            if isinstance(r, np.ndarray):
                if exact:
                    np.testing.assert_array_equal(a, r, err_msg=f"{level} {options}")
                else:
                    np.testing.assert_allclose(a, r, rtol=1e-14, atol=0)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 37, 300])
def test_symmetric_fills_run_in_parallel_and_match_python(n):
    rng = np.random.default_rng(n)
    x2 = rng.random((n, 3))
    x = rng.random(n)
    _check(distance_matrix, lambda: (x2,), exact=False)
    _check(lower_with_diagonal, lambda: (x, np.full((n, n), -5.0)), exact=False)
    _check(antisymmetric_descending, lambda: (x, np.full((n, n), 7.0)))
    _check(pair_forces, lambda: (x2, np.zeros((n, n, 3))))
    xi = rng.integers(0, 50, n)
    _check(counts_below, lambda: (xi, np.zeros((n, n), dtype=np.int64)))


def test_explain_names_the_mirror():
    for fn, name in ((distance_matrix, "D"), (lower_with_diagonal, "D"),
                     (antisymmetric_descending, "D"), (pair_forces, "F"),
                     (counts_below, "C")):
        a = fn.analysis
        assert a.parallel is True, (fn.__name__, a.reason)
        role = a.arrays[name]
        assert role.access == "mirrored" and {role.axis, role.mirror_axis} == {0, 1}
        assert "a triangle and its mirror image" in fn.explain()


@pytest.mark.parametrize("fn, text", [
    (full_square, "D[i, j] = D[j, i]"),
    (opposite_sides, "D[j, i] = x[j] - x[i]"),
    (inner_reassigned, "D[j, i] = x[i] * 2"),
    (inner_from_a_start, "D[i, j] = D[j, i]"),
    (mirror_reads_others, "D[j, i] = x[i] + D[i - 1, j]"),
], ids=["full square", "opposite sides", "inner variable reassigned", "unknown start",
        "reads another row"])
def test_fills_that_are_not_a_triangle_and_its_mirror_stay_in_order(fn, text):
    a = fn.analysis
    assert a.parallel is False
    assert a.reason.startswith(f"line {line_of(fn, text)}: ") or (
        f"line {line_of(fn, text)})" in a.reason), a.reason
    rng = np.random.default_rng(11)
    x = rng.random(40)
    args = (lambda: (x, np.zeros((40, 40)), 0)) if fn is inner_from_a_start else (
        lambda: (x, np.zeros((40, 40))))
    _check(fn, args)


def test_a_distributed_matrix_filled_symmetrically_is_refused_clearly():
    from loopscale import distribute
    from loopscale.errors import DistributionError

    x = np.random.default_rng(2).random(20)
    D = distribute.scatter(np.zeros((20, 20)))
    with pytest.raises(DistributionError, match="argument 'D'.*distributed array"):
        with loopscale.level("mpi"):
            lower_with_diagonal(x, D)
