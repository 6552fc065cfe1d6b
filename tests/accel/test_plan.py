"""The outlined plan (prologue / chunk kernel / epilogue) that executors run.

An executor may run the blocks of a plan in any partition and any order; the
result must equal the fused serial function's to the bit.  These tests drive
the plan with executors that run blocks backwards, in shuffled chunks and in
random partitions, without threads, so that any dependence on order shows up
deterministically.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from loopscale import accelerate, level
from loopscale.accel import LoopPlan, SerialExecutor, get_executor
from loopscale.accel._runtime import MAX_BLOCKS, MIN_BLOCK, block_size, trip_count
from loopscale.errors import LevelError


class Backwards:
    name = "backwards"

    def run(self, plan: LoopPlan) -> None:
        for b in reversed(range(plan.nblocks)):
            plan.kernel(b, b + 1, *plan.args)


class RandomChunks:
    """Cuts the blocks into random chunks and runs them in random order."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def run(self, plan: LoopPlan) -> None:
        cuts = sorted({0, plan.nblocks, *(self.rng.randrange(plan.nblocks + 1)
                                          for _ in range(5))})
        chunks = list(zip(cuts[:-1], cuts[1:], strict=True))
        self.rng.shuffle(chunks)
        for c0, c1 in chunks:
            plan.kernel(c0, c1, *plan.args)


def cnd(d):
    return 0.5 * (1.0 + math.erf(d / math.sqrt(2.0)))


def sum_and_extremes(x):
    s = 0.0
    lo = x[0]
    hi = x[0]
    for i in range(x.shape[0]):
        s += x[i] * x[i]
        lo = min(lo, x[i])
        if x[i] > hi:
            hi = x[i]
    return s, lo, hi


def black_scholes(S, K, T, r, v):
    out = np.empty_like(S)
    for i in range(S.shape[0]):
        d1 = (math.log(S[i] / K[i]) + (r + 0.5 * v * v) * T[i]) / (v * math.sqrt(T[i]))
        d2 = d1 - v * math.sqrt(T[i])
        out[i] = S[i] * cnd(d1) - K[i] * math.exp(-r * T[i]) * cnd(d2)
    return out


def float32_dot(a, b):
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


def strided_product(x):
    p = 1.0
    for i in range(x.shape[0] - 1, -1, -2):
        p *= 1.0 + x[i] * 1e-3
    return p


def guarded_mean(x):
    n = x.shape[0]
    if n == 0:
        return 0.0
    s = 0.0
    for i in range(n):
        s += x[i]
    return s / n


def column_block_sum(x):
    acc = np.zeros(x.shape[1])
    for i in range(x.shape[0]):
        acc += x[i]
    return acc


KERNELS = [sum_and_extremes, black_scholes, float32_dot, strided_product, guarded_mean,
           column_block_sum]


def make_args(func, n, rng):
    if func is black_scholes:
        return (rng.random(n) + 1.0, rng.random(n) + 1.0, rng.random(n) + 0.1, 0.05, 0.2)
    if func is float32_dot:
        return (rng.random(n).astype(np.float32), rng.random(n).astype(np.float32))
    if func is column_block_sum:
        return (rng.random((n, 3)),)
    if func is sum_and_extremes:
        return (rng.standard_normal(max(n, 1)),)
    return (rng.random(n),)


def _bits(value):
    if isinstance(value, tuple):
        return tuple(_bits(v) for v in value)
    return np.asarray(value).tobytes()


@pytest.mark.parametrize("func", KERNELS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000, 70_001])
def test_plan_in_any_block_order_equals_fused_serial_bit_for_bit(func, n):
    f = accelerate(func)
    assert f.analysis.parallel, f.analysis.reason
    rng = np.random.default_rng(n)
    args = make_args(func, n, rng)
    with level("serial"):
        expected = f(*args)
    for executor in (SerialExecutor(), Backwards(), RandomChunks(n), RandomChunks(n + 1)):
        got = f._call_plan(executor, args, {})
        assert _bits(got) == _bits(expected), executor.name


def test_plan_keeps_float32_state_as_float32():
    # a float32 scalar crossing from the prologue to the chunk kernel is boxed
    # as a Python float by Numba; the plan must give it its type back, or the
    # chunk would accumulate in float64 and differ from the serial level
    f = accelerate(float32_dot)
    a = np.linspace(0, 1, 5000, dtype=np.float32)
    got = f._call_plan(Backwards(), (a, a), {})
    serial = f(a, a)
    assert _bits(np.float64(got)) == _bits(np.float64(serial))
    # and the value is a float32 sum (a float64 accumulation would differ)
    assert np.float64(got) == np.float64(np.float32(got))


def test_plan_with_early_return_in_prologue_gives_the_early_value():
    f = accelerate(guarded_mean)
    assert f._call_plan(Backwards(), (np.empty(0),), {}) == 0.0


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1023, 1024, 1025, 10**6, 10**9])
def test_block_size_depends_on_n_only_and_bounds_the_block_count(n):
    b = block_size(n)
    assert b >= MIN_BLOCK
    assert -(-n // b) <= MAX_BLOCKS
    assert block_size(n) == b


@pytest.mark.parametrize("lo,stop,step", [(0, 10, 1), (10, 0, -1), (0, 10, 3), (5, 5, 1),
                                          (-7, 20, 4), (20, -7, -4), (0, -3, 1)])
def test_trip_count_of_generated_code_matches_len_of_range(lo, stop, step):
    assert trip_count(lo, stop, step) == len(range(lo, stop, step))

    @accelerate
    def count(lo, stop, step):
        c = 0
        for i in range(lo, stop, step):  # noqa: B007 - the loop under test
            c += 1
        return c

    with level("serial"):
        assert count(lo, stop, step) == len(range(lo, stop, step))


def test_serial_executor_rejects_options_with_the_fix():
    with pytest.raises(LevelError, match="max_workers belong to the 'threads' level"):
        SerialExecutor(max_workers=2)


def test_unknown_level_executor_lists_installed_levels():
    with pytest.raises(LevelError, match="Installed levels: .*serial"):
        get_executor("no-such-level")


def test_plan_describes_iteration_values_of_blocks():
    plan = LoopPlan(function="f", n=10, block=4, nblocks=3, kernel=None, args=(), lo=100,
                    step=-2)
    assert plan.iteration_values(0, 1) == (100, 94)
    assert plan.iteration_values(2, 3) == (84, 82)


def test_plan_names_its_arguments_for_executors_that_move_data():
    seen = {}

    class Inspect:
        name = "inspect"

        def run(self, plan):
            seen["plan"] = plan
            plan.kernel(0, plan.nblocks, *plan.args)

    f = accelerate(black_scholes)
    rng = np.random.default_rng(0)
    args = make_args(black_scholes, 100, rng)
    f._call_plan(Inspect(), args, {})
    plan = seen["plan"]
    assert plan.arg_names[:4] == ("lo", "step", "n", "block")
    assert plan.arg("S") is args[0]
    assert plan.arrays["out"].written and plan.arrays["out"].axis == 0
    g = accelerate(sum_and_extremes)
    g._call_plan(Inspect(), (rng.standard_normal(1000),), {})
    parts = seen["plan"].partials
    assert set(parts) == {"s", "lo", "hi"}
    assert all(p.shape[0] == seen["plan"].nblocks for p in parts.values())


def test_an_explicit_auto_block_still_parallelizes_a_long_call_after_short_ones():
    # short calls at the default level put the function in "serial until long"
    # mode; inside `with level("auto")` a long call must still go parallel
    f = accelerate(black_scholes)
    rng = np.random.default_rng(0)
    small = make_args(black_scholes, 10, rng)
    for _ in range(5):
        f(*small)
    big = make_args(black_scholes, 200_000, rng)
    f._last_plan = None
    with level("auto"):
        f(*big)
    from loopscale.accel._decorator import _auto_parallel_level

    if _auto_parallel_level() is not None:
        assert f._last_plan is not None and f._last_plan.n == 200_000


def test_the_epilogue_is_skipped_only_when_it_does_nothing():
    """A stencil step (no reduction, nothing after the loop) returns None without
    calling its epilogue; a reduction, or code after the loop, still runs it."""

    @accelerate
    def step(u, out):
        for i in range(1, u.shape[0] - 1):
            out[i] = 0.5 * (u[i - 1] + u[i + 1])

    @accelerate
    def total(u):
        s = 0.0
        for i in range(u.shape[0]):
            s += u[i]
        return s

    @accelerate
    def scaled(u, out):
        for i in range(u.shape[0]):
            out[i] = 2.0 * u[i]
        out[0] = -1.0
        return out

    u = np.arange(40.0)
    out = np.zeros_like(u)
    ran = []

    class Recording:
        name = "recording"

        def run(self, plan: LoopPlan) -> None:
            ran.append(plan.function)
            SerialExecutor().run(plan)

    step(u, out)  # compile
    total(u)
    scaled(u, out)
    assert step._compiled.gen.post_empty
    assert not total._compiled.gen.post_empty
    assert not scaled._compiled.gen.post_empty
    assert step._call_plan(Recording(), (u, out), {}) is None
    ref = out.copy()
    ref[1:-1] = 0.5 * (u[:-2] + u[2:])
    assert np.array_equal(out, ref)
    assert total._call_plan(Recording(), (u,), {}) == sum(u.tolist())
    got = scaled._call_plan(Recording(), (u, out), {})
    assert got is out and out[0] == -1.0 and out[1] == 2.0
    assert len(ran) == 3
