"""Loops over ``reversed(range(...))`` and ``range(...)[::-1]`` (which Numba
does not compile) run as the descending ``range`` of the same values, at any
depth, with Python's answer at every level; the top-level one is analysed as
any range loop and may run in parallel.  Real compilation and threads.
"""

from __future__ import annotations

import numpy as np
import pytest

from loopscale import accelerate, level

pytestmark = pytest.mark.timeout(300)


def _backward_scale(x, out):
    for i in reversed(range(x.shape[0])):
        out[i] = 2.0 * x[i]
    return out


def _backward_sweep(x, out):
    # a carried recurrence: runs in order, from the end
    acc = 0.0
    for i in range(x.shape[0])[::-1]:
        acc = 0.5 * acc + x[i]
        out[i] = acc
    return out


def _strided_back(x, out, lo, hi):
    for i in reversed(range(lo, hi, 3)):
        out[i] = x[i] + 1.0
    for i in reversed(range(hi - 1, lo - 1, -2)):
        out[i] -= 0.25
    return out


def _inner_reversed(M, out):
    for i in range(M.shape[0]):
        s = 0.0
        for j in reversed(range(i + 1)):
            s = s * 0.5 + M[i, j]
        out[i] = s
    return out


@pytest.mark.parametrize("lvl", ["serial", "threads", None])
def test_reversed_ranges_give_pythons_answer(lvl):
    import contextlib

    def ctx():
        return level(lvl, max_workers=2) if lvl == "threads" else (
            level(lvl) if lvl else contextlib.nullcontext())

    for n in (0, 1, 9, 4001):
        x = np.linspace(-1.0, 1.0, n)
        m = min(n, 60)
        M = np.sin(np.arange(float(m * m))).reshape(m, m)
        cases = [(_backward_scale, (x, np.zeros(n))), (_backward_sweep, (x, np.zeros(n))),
                 (_inner_reversed, (M, np.zeros(m)))]
        cases += [(_strided_back, (x, np.zeros(n), lo, hi))
                  for lo, hi in [(0, n), (1, max(n - 1, 1)), (n // 2, n), (n, n)]]
        for kernel, args in cases:
            f = accelerate(kernel)
            fresh = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            with ctx():
                got = f(*fresh)
            expected = kernel(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
            np.testing.assert_array_equal(got, expected, err_msg=f"{kernel.__name__} n={n}")


def test_an_independent_reversed_loop_runs_in_parallel_and_a_recurrence_does_not():
    scale, sweep = accelerate(_backward_scale), accelerate(_backward_sweep)
    assert scale.analysis.parallel, scale.explain()
    assert not sweep.analysis.parallel, sweep.explain()


def test_a_rebound_reversed_is_left_to_python():
    def reversed(r):  # noqa: A001 - the user's own `reversed`
        return r

    def kernel(x):
        s = 0.0
        for i in reversed(range(x.shape[0])):
            s = s * 0.5 + x[i]
        return s

    f = accelerate(kernel)
    x = np.arange(10.0)
    assert f(x) == kernel(x)  # the closure's `reversed` (ascending) is not the built-in
