"""Loops that write each iteration's own elements at an index other than the
loop variable (``out[2 * i]``, ``out[n - 1 - i]``, ``out[i * m + j]``) run in
parallel, with the serial answer; indices that may collide or wrap around
(a negative index reaches the end of the array) keep the loop sequential.

Real compilation and real threads; each kernel is checked against the plain
Python function at several sizes and worker counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from loopscale import accelerate, level

pytestmark = pytest.mark.timeout(300)


def _spread(x, out):
    for i in range(x.shape[0]):
        out[2 * i] = x[i]
        out[2 * i + 1] = -x[i]
    return out


def _interleave_add(x, out):
    for i in range(x.shape[0]):
        out[3 * i + 1] += x[i] * x[i]
    return out


def _pairs(x, out):
    for i in range(x.shape[0]):
        out[2 * i + 1] = x[i]
        out[2 * i] = out[2 * i + 1] * 3.0  # its own other element
    return out


def _reverse(x, out):
    n = x.shape[0]
    for i in range(n):
        out[n - 1 - i] = 2.0 * x[i]
    return out


def _reverse_len(x, out):
    for i in range(1, len(x)):
        out[len(x) - i - 1] = x[i] + x[i - 1]
    return out


def _via_local(x, out):
    for i in range(len(x)):
        j = len(x) - 1 - i
        k = 2 * i
        out[j] = x[i] + out[j]
        out[len(x) + k] = x[i]  # (another array's own elements: see below)
    return out


def _via_local_pairs(x, out):
    for i in range(x.shape[0]):
        k = 2 * i
        out[k + 1] = x[i]
        out[k] = out[k + 1] - 1.0
    return out


def _flatten(M, out):
    rows, cols = M.shape
    for i in range(rows):
        for j in range(cols):
            out[i * cols + j] = M[i, j] * (i + 1)
    return out


def _flipped_rows(M, out):
    n = M.shape[0]
    for i in range(n):
        out[n - 1 - i, :] = M[i, :] * 0.5
    return out


OWNED = [
    (_spread, lambda n: (np.arange(n, dtype=np.float64), np.zeros(2 * n))),
    (_interleave_add, lambda n: (np.arange(n, dtype=np.int64), np.ones(3 * n + 1, np.int64))),
    (_pairs, lambda n: (np.arange(n, dtype=np.float64), np.zeros(2 * n))),
    (_reverse, lambda n: (np.linspace(0.0, 1.0, n), np.zeros(n))),
    (_reverse_len, lambda n: (np.linspace(0.0, 1.0, n), np.zeros(n))),
    (_via_local_pairs, lambda n: (np.linspace(0.0, 1.0, n), np.ones(2 * n))),
    (_flatten, lambda n: (np.arange(n * 3.0).reshape(n, 3), np.zeros(3 * n))),
    (_flipped_rows, lambda n: (np.arange(n * 4.0).reshape(n, 4), np.zeros((n, 4)))),
]


@pytest.mark.parametrize("kernel,make", OWNED, ids=[k.__name__ for k, _ in OWNED])
def test_each_iterations_own_elements_run_in_parallel_with_the_serial_answer(kernel, make):
    f = accelerate(kernel)
    for n in (0, 1, 7, 5003):
        expected = kernel(*make(n))
        for lvl, opts in [("serial", {}), ("threads", {"max_workers": 2}),
                          ("threads", {"max_workers": 3, "policy": "dynamic"})]:
            with level(lvl, **opts):
                got = f(*make(n))
            np.testing.assert_array_equal(got, expected, err_msg=f"{lvl} {opts} n={n}")
    a = f.analysis
    assert a.parallel, f.explain()
    out = a.arrays["out"]
    assert out.access == "owned" and out.written, out
    assert "each iteration its own elements" in f.explain()


def _below_zero(x, out):
    for i in range(x.shape[0]):
        out[2 * i - 1] = x[i]  # i = 0 writes out[-1], the last element
    return out


def _two_short(x, out):
    n = x.shape[0]
    for i in range(n):
        out[n - 2 - i] = x[i]  # i = n - 1 writes out[-1]
    return out


def _overlapping_rows(M, out):
    rows, cols = M.shape
    for i in range(rows):
        for j in range(cols + 1):
            out[i * cols + j] = M[i, j % cols]
    return out


def _shifted_flat(M, out):
    rows, cols = M.shape
    for i in range(rows):
        for j in range(cols):
            out[i * cols + j + 1] = M[i, j]
    return out


def _read_neighbour(x, out):
    for i in range(x.shape[0]):
        out[2 * i] = out[2 * i + 2] + x[i]  # the next iteration's element
    return out


def _halved(x, out):
    for i in range(x.shape[0]):
        j = i // 2
        out[j] = x[i]  # two iterations write each element
    return out


def _stop_moves(x, out):
    n = x.shape[0]
    for i in range(x.shape[0]):
        out[n - 1 - i] = x[i]
        n = n - 1
    return out


NOT_OWNED = [
    (_below_zero, lambda: (np.arange(5.0), np.zeros(10))),
    (_two_short, lambda: (np.arange(5.0), np.zeros(5))),
    (_overlapping_rows, lambda: (np.arange(12.0).reshape(4, 3), np.zeros(16))),
    (_shifted_flat, lambda: (np.arange(12.0).reshape(4, 3), np.zeros(13))),
    (_read_neighbour, lambda: (np.arange(5.0), np.ones(12))),
    (_stop_moves, lambda: (np.arange(5.0), np.zeros(20))),
    (_halved, lambda: (np.arange(5.0), np.zeros(3))),
    # apart in fact ([0, n) and [n, 3n)), but the analysis does not compare ranges
    (_via_local, lambda: (np.arange(5.0), np.ones(15))),
]


@pytest.mark.parametrize("kernel,make", NOT_OWNED, ids=[k.__name__ for k, _ in NOT_OWNED])
def test_indices_that_may_collide_or_wrap_keep_the_loop_sequential(kernel, make):
    f = accelerate(kernel)
    with level("threads", max_workers=2):
        got = f(*make())
    np.testing.assert_array_equal(got, kernel(*make()))
    assert not f.analysis.parallel, f.explain()
    assert "different iterations may write the same element" in f.explain() or \
        "loop-carried" in f.explain() or "written at" in f.explain(), f.explain()


def test_an_owned_array_is_not_a_slab_of_rows_for_distributed_arrays():
    """`out[n - 1 - i]` is iteration i's own element but lives on another rank's
    rows: a DistArray for it is refused (as for a mirrored fill), while the
    replicated call at the mpi level keeps the serial answer."""
    from loopscale import distribute
    from loopscale.errors import DistributionError

    f = accelerate(_reverse)
    x = np.arange(8.0)
    with pytest.raises(DistributionError, match=r"argument 'out' .* `out\[n - 1 - i\]`"):
        f(distribute.scatter(x), distribute.scatter(np.zeros(8)))
    with level("mpi"):
        np.testing.assert_array_equal(f(x, np.zeros(8)), _reverse(x, np.zeros(8)))


def stepped_pairs(x, out):
    for i in range(0, x.shape[0] - 1, 2):
        out[i] = x[i] + x[i + 1]
        out[i + 1] = x[i] - x[i + 1]


def stepped_overlap(x, out):
    for i in range(0, x.shape[0] - 2, 2):
        out[i] = x[i]
        out[i + 2] = x[i + 1]     # the next iteration's out[i]


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_stepped_loop_writing_its_own_window_is_parallel(lvl):
    # `range(0, n, 2)` writing out[i] and out[i + 1]: each iteration's own pair,
    # since consecutive values of i are 2 apart (it was sequential)
    acc = accelerate(stepped_pairs)
    assert acc.analysis.parallel, acc.analysis.reason
    x = np.random.default_rng(4).random(30001)
    out, want = np.zeros_like(x), np.zeros_like(x)
    stepped_pairs(x, want)
    with level(lvl):
        acc(x, out)
    np.testing.assert_array_equal(out, want)


def test_a_stepped_loop_whose_window_reaches_the_next_iteration_stays_sequential():
    acc = accelerate(stepped_overlap)
    assert not acc.analysis.parallel
    x = np.random.default_rng(5).random(3001)
    out, want = np.zeros_like(x), np.zeros_like(x)
    stepped_overlap(x, want)
    with level("threads"):
        acc(x, out)
    np.testing.assert_array_equal(out, want)
