"""Parallel loops inside a sequential loop (time steps, sweeps): each
independent inner loop is outlined and run on the pool at each pass of the
outer loop, with the serial answer bit for bit; inner loops that carry a
dependence, reduce, or leave values read after them stay inline.

Real compilation, real threads, the object-mode calls of the real driver.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from loopscale import accelerate, level

pytestmark = pytest.mark.timeout(600)


def _heat(u, new, steps, k):
    n = u.shape[0]
    for _t in range(steps):
        for i in range(1, n - 1):
            new[i] = u[i] + k * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        new[0] = u[0]
        new[n - 1] = u[n - 1]
        u, new = new, u
    return u


def _nbody_steps(pos, vel, acc, steps, dt):
    n = pos.shape[0]
    for _s in range(steps):
        for i in range(n):
            ax = 0.0
            ay = 0.0
            for j in range(n):
                if j != i:
                    dx = pos[j, 0] - pos[i, 0]
                    dy = pos[j, 1] - pos[i, 1]
                    r2 = dx * dx + dy * dy + 0.01
                    inv = 1.0 / (r2 * np.sqrt(r2))
                    ax += dx * inv
                    ay += dy * inv
            acc[i, 0] = ax
            acc[i, 1] = ay
        for i in range(n):
            vel[i, 0] += dt * acc[i, 0]
            vel[i, 1] += dt * acc[i, 1]
            pos[i, 0] += dt * vel[i, 0]
            pos[i, 1] += dt * vel[i, 1]
    return pos


def _jacobi_until(a, b, tol, most):
    n = a.shape[0]
    err = tol + 1.0
    it = 0
    while err > tol and it < most:
        for i in range(1, n - 1):
            b[i] = 0.5 * (a[i - 1] + a[i + 1])
        err = 0.0
        for i in range(1, n - 1):  # a reduction, handed back to the while test
            err = max(err, abs(b[i] - a[i]))
        a, b = b, a
        it += 1
    return a, it


def _levels():
    return [("serial", {}), ("threads", {"max_workers": 2}),
            ("threads", {"max_workers": 3, "policy": "dynamic"}), (None, {})]


def _ctx(lvl, opts):
    return level(lvl, **opts) if lvl else contextlib.nullcontext()


@pytest.mark.parametrize("n", [5, 3000, 40_000])
def test_a_time_step_loop_runs_its_stencil_on_the_pool_with_the_serial_answer(n):
    f = accelerate(_heat)
    u0 = np.sin(np.linspace(0.0, 3.0, n))
    expected = _heat(u0.copy(), np.zeros(n), 7, 0.2)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            got = f(u0.copy(), np.zeros(n), 7, 0.2)
        np.testing.assert_array_equal(got, expected, err_msg=f"{lvl} {opts}")
    text = f.explain()
    assert "loop over `_t` at line" in text and "SEQUENTIAL" in text, text
    assert "inner loop over `i` at line" in text and "PARALLEL, inside the sequential loop" \
        in text, text
    comp = f._compiled
    assert comp.regions and comp.driver is not None, text
    if n >= 3000:  # long enough to leave compiled code: the region ran on the pool
        assert sum(r.accel.analysis.parallel for r in comp.regions) == 1
        assert comp.runners[0].calls > 0


def test_two_inner_loops_of_a_time_step_both_run_on_the_pool():
    f = accelerate(_nbody_steps)
    rng = np.random.default_rng(3)
    pos0 = rng.random((1500, 2))
    vel0 = rng.random((1500, 2)) - 0.5
    with level("serial"):
        expected = f(pos0.copy(), vel0.copy(), np.zeros((1500, 2)), 2, 0.01)
    for lvl, opts in _levels()[1:]:
        with _ctx(lvl, opts):
            got = f(pos0.copy(), vel0.copy(), np.zeros((1500, 2)), 2, 0.01)
        np.testing.assert_array_equal(got, expected, err_msg=f"{lvl} {opts}")
    small = (pos0[:30].copy(), vel0[:30].copy(), np.zeros((30, 2)), 3, 0.01)
    np.testing.assert_allclose(
        f(*[a.copy() if isinstance(a, np.ndarray) else a for a in small]),
        _nbody_steps(*small), rtol=1e-12)
    assert len(f._compiled.regions) == 2, f.explain()
    assert all(r.calls > 0 for r in f._compiled.runners), f.explain()


def test_an_inner_reduction_is_handed_back_to_the_sequential_loop():
    f = accelerate(_jacobi_until)
    a0 = np.zeros(5000)
    a0[0], a0[-1] = 1.0, -1.0
    expected = _jacobi_until(a0.copy(), a0.copy(), 1e-4, 40)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            got, it = f(a0.copy(), a0.copy(), 1e-4, 40)
        np.testing.assert_array_equal(got, expected[0])
        assert it == expected[1]
    text = f.explain()
    import inspect

    lines, start = inspect.getsourcelines(_jacobi_until)
    first = start + next(k for k, ln in enumerate(lines) if "b[i] = 0.5" in ln) - 1
    comp = f._compiled
    assert [r.line for r in comp.regions] == [first, first + 3], text
    assert comp.regions[1].outs == ("err",), text
    assert "hands back to the function: err (max" in text, text
    assert all(r.calls > 0 for r in comp.runners), text


def _live_index(x, out, steps):
    last = 0
    for _s in range(steps):
        for i in range(x.shape[0]):
            out[i] = out[i] + x[i]
        last = i  # the inner loop's variable, read after it
    return last


def _carried_inner(x, out, steps):
    for _s in range(steps):
        for i in range(1, x.shape[0]):
            out[i] = out[i - 1] + x[i]
    return out


def _raises_inside(x, out, steps):
    for s in range(steps):
        for i in range(x.shape[0]):
            if x[i] < 0 and s == 1:
                raise ValueError(f"negative at {i}")
            out[i] = x[i] * 2.0
    return out


def test_inner_loops_that_cannot_be_outlined_stay_inline_with_the_serial_answer():
    x = np.arange(4000.0)
    live, carried = accelerate(_live_index), accelerate(_carried_inner)
    with level("threads", max_workers=2):
        assert live(x, np.zeros(4000), 3) == _live_index(x, np.zeros(4000), 3)
        np.testing.assert_array_equal(carried(x, np.zeros(4000), 2),
                                      _carried_inner(x, np.zeros(4000), 2))
    assert not live._compiled.regions and "it assigns i, read outside it" in live.explain()
    assert not carried._compiled.regions
    assert "inner loop at line" in carried.explain() and "in order" in carried.explain()


def test_an_exception_in_a_region_reaches_the_caller_once_with_its_iterations():
    f = accelerate(_raises_inside)
    x = np.ones(50_000)
    x[43_210] = -1.0
    for lvl, opts in _levels():
        with _ctx(lvl, opts), pytest.raises(ValueError) as info:
            f(x, np.zeros(50_000), 3)
        msg = str(info.value)
        assert msg.startswith("negative at 43210"), msg
        assert "raised in iterations" in msg, msg
    with level("threads", max_workers=2):  # the pool is still usable
        np.testing.assert_array_equal(f(np.ones(5000), np.zeros(5000), 2), np.full(5000, 2.0))


def _blend(a, b):
    return 0.5 * a + np.sin(b)


def _relax(x, out, steps):
    for _t in range(steps):
        for i in range(x.shape[0]):
            out[i] = _blend(out[i], x[i])
    return out


def _relax_rows(M, out):
    for i in range(M.shape[0]):
        out[i] = _blend(out[i], M[i, 0])  # a helper reading its own element whole
    return out


def test_an_element_passed_to_a_helper_that_reads_it_is_a_read_at_that_index():
    """`out[i] = f(out[i], x[i])` was sequential (the helper's argument counted as
    a view of `out` at unknown indices), at the top level and inside a time loop."""
    relax, rows = accelerate(_relax), accelerate(_relax_rows)
    x = np.linspace(0.0, 2.0, 6000)
    M = np.arange(12000.0).reshape(6000, 2)
    with level("serial"):
        serial = relax(x, np.zeros(6000), 3), rows(M, np.ones(6000))
    with level("threads", max_workers=2):
        np.testing.assert_array_equal(relax(x, np.zeros(6000), 3), serial[0])
        np.testing.assert_array_equal(rows(M, np.ones(6000)), serial[1])
    # (the compiled sin is glibc's vector one: within an ulp or two of NumPy's)
    np.testing.assert_allclose(serial[0], _relax(x, np.zeros(6000), 3), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(serial[1], _relax_rows(M, np.ones(6000)), rtol=1e-12, atol=1e-15)
    assert rows.analysis.parallel, rows.explain()
    assert relax._compiled.regions, relax.explain()


def _sweeps(x, w, passes):
    total = 0
    hits = 0
    best = 1e300
    at = -1
    for p in range(passes):
        s = 0  # an int start, float sums: a float, as in Python
        for i in range(x.shape[0]):
            s += x[i] * w[i]
            if x[i] > 0.5:
                hits += 1
            d = abs(x[i] - 0.25 * p)
            if d < best:
                best = d
                at = i
        total = total + s
        for i in range(w.shape[0]):
            w[i] = w[i] * 0.5 + 0.1
    return total, hits, best, at


def _counts(x, passes):
    hits = 0
    best = 1e300
    at = -1
    thr = 0.5
    for p in range(passes):  # sequential: thr carries from pass to pass
        for i in range(x.shape[0]):
            if x[i] > thr:
                hits += 1
            d = abs(x[i] - 0.25 * p)
            if d < best:
                best = d
                at = i
        thr = thr * 0.9
    return hits, best, at


def test_reductions_and_argmin_payloads_are_handed_back_with_their_types():
    rng = np.random.default_rng(5)
    x = rng.random(20_000)
    f = accelerate(_counts)
    expected = _counts(x, 4)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            got = f(x, 4)
        assert got == expected, (lvl, opts, got, expected)
        assert isinstance(got[0], int) and isinstance(got[2], int), got  # ints stay ints
    comp = f._compiled
    assert comp.regions and comp.regions[0].outs == ("at", "best", "hits"), f.explain()
    assert all(r.calls > 0 for r in comp.runners), f.explain()


def test_a_float_sum_handed_back_is_the_same_sum_at_every_level():
    """The fused serial code (the serial level, and a pass kept inline) runs the
    region's own compiled serial code, with the blocks its parallel runs use: a
    float sum handed back is added in one order whichever ran, so the loop runs
    on the pool too (it used to stay inline, the only way to one answer)."""
    f = accelerate(_sweeps)
    rng = np.random.default_rng(5)
    x = rng.random(20_000)
    with level("serial"):
        serial = f(x, np.ones(20_000), 4)
    for lvl, opts in _levels()[1:]:
        with _ctx(lvl, opts):
            assert f(x, np.ones(20_000), 4) == serial, (lvl, opts)
    expected = _sweeps(x, np.ones(20_000), 4)
    assert serial[1:] == expected[1:]
    assert serial[0] == pytest.approx(expected[0], rel=1e-12)
    text = f.explain()
    assert "runs inline" not in text, text
    comp = f._compiled
    assert comp.region_calls and comp.runners[0].calls > 0, text


def _last_value_read_after(u, steps):
    v = 0.0
    for _t in range(steps):
        for i in range(u.shape[0]):
            v = u[i]
            u[i] = v * 0.5
        v += 1.0  # reads the loop's last v
        u[0] = v
    return u


def _read_at_the_next_pass(u, steps):
    w = 0.0
    for _t in range(steps):
        u[0] = u[0] + w  # the previous pass's last w
        for i in range(u.shape[0]):
            w = u[i] * 0.25
            u[i] = w
    return u


def _temporaries_of_two_loops(u, out, steps):
    tmp = 0.0
    for _t in range(steps):
        for i in range(u.shape[0]):
            tmp = u[i] * 2.0
            out[i] = tmp
        for i in range(u.shape[0]):
            tmp = out[i] + 1.0  # assigned first: the other loop's value never reaches it
            u[i] = tmp * 0.5
    return u


def test_a_value_the_loop_leaves_for_later_code_keeps_the_loop_inline():
    cases = [(_last_value_read_after, lambda: (np.linspace(0, 1, 5000), 3)),
             (_read_at_the_next_pass, lambda: (np.linspace(0, 1, 5000), 3)),
             (_temporaries_of_two_loops, lambda: (np.linspace(0, 1, 5000), np.zeros(5000), 3))]
    for kernel, make in cases:
        f = accelerate(kernel)
        with level("threads", max_workers=2):
            got = f(*make())
        np.testing.assert_array_equal(got, kernel(*make()), err_msg=kernel.__name__)
    assert not accelerate(_last_value_read_after)._driver()
    f = accelerate(_temporaries_of_two_loops)
    with level("threads", max_workers=2):
        f(*cases[2][1]())
    assert len(f._compiled.regions) == 2, f.explain()


def _step32(v, a, dt, steps):
    for _s in range(steps):
        for i in range(v.shape[0]):
            v[i] += dt * a[i]
    return v


def _scale32(x, steps):
    c = np.float32(0.1)
    for _s in range(steps):
        for i in range(x.shape[0]):
            x[i] = x[i] * c + np.float32(1.0)
    return x


def test_float32_values_reach_a_region_as_float32():
    """Object mode boxes a float32 as a Python float: the region computed in
    float64 and rounded, and its answer differed from the serial level's."""
    rng = np.random.default_rng(9)
    v0 = rng.random(100_000).astype(np.float32)
    a0 = rng.random(100_000).astype(np.float32)
    f, g = accelerate(_step32), accelerate(_scale32)
    with level("serial"):
        s1 = f(v0.copy(), a0, np.float32(0.1), 3)
        s2 = g(v0.copy(), 3)
    np.testing.assert_array_equal(s1, _step32(v0.copy(), a0, np.float32(0.1), 3))
    for lvl, opts in _levels()[1:]:
        with _ctx(lvl, opts):
            np.testing.assert_array_equal(f(v0.copy(), a0, np.float32(0.1), 3), s1)
            np.testing.assert_array_equal(g(v0.copy(), 3), s2)
    assert f._compiled.runners[0].calls > 0, f.explain()


def _smooth(u, steps):
    a = u.copy()
    b = u.copy()
    for _t in range(steps):
        for i in range(1, a.shape[0] - 1):
            b[i] = 0.5 * (a[i - 1] + a[i + 1])
        a, b = b, a
    return a


def test_a_driver_takes_pandas_lists_and_buffers_as_the_serial_code_does():
    import array

    pd = pytest.importorskip("pandas")
    f = accelerate(_smooth)
    values = [1.0, 2.0, 4.0, 8.0, 16.0, 3.0]
    expected = _smooth(np.array(values), 3)
    for lvl, opts in _levels():
        for given in (pd.Series(values), list(values), array.array("d", values),
                      pd.Series(values, dtype="Float64")):
            with _ctx(lvl, opts):
                got = f(given, 3)
            np.testing.assert_array_equal(np.asarray(got), expected,
                                          err_msg=f"{lvl} {type(given).__name__}")
        with _ctx(lvl, opts), pytest.raises(Exception) as info:
            f(pd.Series([1.0, None, 3.0], dtype="Float64"), 2)
        assert "missing value" in str(info.value), str(info.value)


def _decay(y, lam):
    return -lam * y


def _step_named(y, lam, dt):
    for i in range(y.shape[0]):
        yi = y[i]
        y[i] = yi + dt * _decay(yi, lam[i])
    return y


def _reverse_owned(x, out):
    n = x.shape[0]
    for i in reversed(range(n)):
        out[n - 1 - i] = x[i]
    return out


def test_a_local_copy_passed_to_a_helper_and_a_reversed_owned_write_are_parallel():
    step, rev = accelerate(_step_named), accelerate(_reverse_owned)
    y = np.linspace(0.0, 1.0, 7000)
    lam = np.linspace(1.0, 2.0, 7000)
    x = np.arange(7000.0)
    with level("threads", max_workers=2):
        np.testing.assert_array_equal(step(y.copy(), lam, 0.1), _step_named(y.copy(), lam, 0.1))
        np.testing.assert_array_equal(rev(x, np.zeros(7000)), _reverse_owned(x, np.zeros(7000)))
    assert step.analysis.parallel, step.explain()
    assert rev.analysis.parallel, rev.explain()


def _read_in_else(x, y, steps):
    tmp = 0.0
    for t in range(steps):
        for i in range(x.shape[0]):
            tmp = x[i] * 2.0 + t
            y[i] = tmp
    else:
        y[0] = tmp  # the loop's last tmp: the else runs after the last pass
    return y


def _reuses_the_outer_name(x, y, steps):
    for i in range(steps):
        for i in range(x.shape[0]):  # noqa: B020, PLW2901 - as users write it
            y[i] = x[i] + 1.0
        y[0] = i  # the inner loop's last i
    return y


def _raises_after(x, y, steps):
    for t in range(steps):
        for i in range(x.shape[0]):
            y[i] = y[i] + x[i] * t
        if y[0] < 0.0:
            raise ValueError("negative")
    return y


def _bound_from_itself(x, y, z, steps):
    lim = x.shape[0]
    for t in range(steps):
        for i in range(z.shape[0]):
            z[i] = z[i] + x[i] * t
        for i in range(lim):  # its bound is assigned in it, for the next pass
            y[i] = x[i] * 2.0 + t
            lim = x.shape[0] - 1 - t
    return y, z


def test_values_reaching_else_blocks_headers_and_the_next_bounds_keep_serial_answers():
    x = np.random.default_rng(1).random(3000)
    cases = [(_read_in_else, lambda: (x, np.zeros(3000), 3)),
             (_reuses_the_outer_name, lambda: (x, np.zeros(3000), 3)),
             (_raises_after, lambda: (x, np.zeros(3000), 4)),
             (_bound_from_itself, lambda: (x, np.zeros(3000), np.zeros(3000), 4))]
    for kernel, make in cases:
        f = accelerate(kernel)
        expected = kernel(*make())
        for lvl, opts in _levels():
            with _ctx(lvl, opts):
                got = f(*make())
            for a, b in zip(got if isinstance(got, tuple) else (got,),
                            expected if isinstance(expected, tuple) else (expected,),
                            strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{kernel.__name__} {lvl} {opts}")
    # a raise in the function does not keep its region off the pool
    f = accelerate(_raises_after)
    with level("threads", max_workers=2):
        f(x, np.zeros(3000), 4)
    assert f._compiled.runners[0].calls > 0 and not f._compiled.driver_why, f.explain()
    g = accelerate(_bound_from_itself)
    with level("threads", max_workers=2):
        g(x, np.zeros(3000), np.zeros(3000), 4)
    assert [r.line for r in g._compiled.regions] == [g.analysis.lineno + 1], g.explain()
    assert g._compiled.runners[0].calls > 0 and not g._compiled.driver_why, g.explain()


def test_the_runner_keeps_a_loop_that_does_not_gain_inline_and_tries_it_again():
    """The gate policy, with a region that takes a set time on one core and on
    the pool (time.sleep: the policy only reads the clock)."""
    import time as _time

    from loopscale import config
    from loopscale.accel import _regions

    times = {"serial": 0.004, "pool": 0.008}  # the pool loses at first

    def region(*args):
        _time.sleep(times["serial" if config.current_level().name == "serial" else "pool"])
        return None

    gates = np.array([_regions.FIRST_GATE, _regions.RETRY_FIRST], dtype=np.int64)
    run = _regions.Runner(region, 0, gates)
    with level("threads", max_workers=2):
        for _ in range(_regions.PROBES):
            run(1000)  # timed on one core
        assert run.calls == 0 and gates[0] == _regions.FIRST_GATE
        run(1000)  # the first on the pool starts it: not judged
        assert run.calls == 1 and gates[0] == _regions.FIRST_GATE
        run(1000)
        run(1000)  # two that did not gain: inline from now on, up to twice the size
        assert gates[0] == 2001 and gates[1] == _regions.RETRY_FIRST
        run(1000)  # a retry (below the gate) that lost: the next waits twice as long
        assert gates[1] == 2 * _regions.RETRY_FIRST and run.failed_retries == 1
        for k in range(2, 12):  # ... up to a bound
            run(1000)
            assert gates[1] == min(_regions.RETRY_FIRST << k, _regions.RETRY_MOST)
        times["pool"] = 0.001  # the machine got quieter
        run(1000)
        assert gates[0] == 1000 and run.failed_retries == 0  # open again


def _greedy_pick(x, steps):
    picks = np.zeros(steps, np.int64)
    for t in range(steps):
        best = 1e300
        at = -1
        for i in range(x.shape[0]):  # a min whose payload alone is read after
            d = abs(x[i] - t * 0.1)
            if d < best:
                best = d
                at = i
        picks[t] = at
        x[at] = 10.0
    return picks


def test_a_min_whose_payload_alone_is_read_after_is_handed_back():
    # `best` is not read after the inner loop, only `at`: the outlined loop did
    # not take `best` in, and read it unassigned ("read before it is assigned")
    f = accelerate(_greedy_pick)
    x = np.random.default_rng(0).random(20000)
    expected = _greedy_pick(x.copy(), 6)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            np.testing.assert_array_equal(f(x.copy(), 6), expected, err_msg=f"{lvl} {opts}")
    text = f.explain()
    assert "inner loop over `i` at line" in text and "PARALLEL, inside the sequential loop" \
        in text, text
    assert "best" in f._compiled.regions[0].params


def _init_then_iterate(u, tol, most):
    v = np.empty_like(u)
    n, m = u.shape
    for i in range(n):                 # a parallel loop of its own, first
        for j in range(m):
            v[i, j] = u[i, j]
    res = tol + 1.0
    it = 0
    while res > tol and it < most:     # the work: more nested loops, in order
        res = 0.0
        for i in range(1, n - 1):
            for j in range(1, m - 1):
                v[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])
                res = max(res, abs(v[i, j] - u[i, j]))
        u, v = v, u
        it += 1
    return u, it, res


def test_a_parallel_first_loop_does_not_keep_the_time_loop_after_it_serial():
    # the parallel copy loop was "the function's loop" (the plan), and the while
    # loop after it, where the work is, ran on one core at every level
    f = accelerate(_init_then_iterate)
    g = np.zeros((300, 200))
    g[0, :] = 1.0
    g[:, 0] = 0.5
    expected = _init_then_iterate(g.copy(), 1e-4, 40)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            got = f(g.copy(), 1e-4, 40)
        np.testing.assert_array_equal(got[0], expected[0], err_msg=f"{lvl} {opts}")
        assert got[1:] == expected[1:]
    text = f.explain()
    assert "`while` loop at line" in text and "SEQUENTIAL" in text, text
    assert "a loop of its own beside the sequential one" in text, text
    assert "inner loop over `i`" in text, text
    assert len(f._compiled.regions) == 2, text


def _sum_then_iterate(u, most):
    s = 0.0
    for i in range(u.shape[0]):        # a float sum: the plan keeps its blocks' order
        s += u[i]
    for _k in range(most):
        for i in range(1, u.shape[0] - 1):
            for _j in range(2):
                u[i] = 0.5 * u[i]
    return s


def test_a_loop_with_a_float_sum_beside_a_heavier_time_loop_gives_one_answer():
    # the time loop holds the work: the function is analysed as its; the float
    # sum's loop is a region handing the sum back, added over the same blocks
    # at every level (the serial one runs the region's own serial code)
    f = accelerate(_sum_then_iterate)
    assert not f.analysis.parallel, f.explain()
    u = np.random.default_rng(6).random(20001)
    want = _sum_then_iterate(u.copy(), 3)
    with level("serial"):
        serial = f(u.copy(), 3)
    assert serial == pytest.approx(want, rel=1e-12)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            assert f(u.copy(), 3) == serial, (lvl, opts)


def _dead_sum(u, steps):
    n = u.shape[0]
    for _t in range(steps):
        s = 0.0
        for i in range(n):  # `s` is never read after: the loop is still a region
            u[i] += 1.0
            s += u[i]
    return u


def test_a_sum_nobody_reads_after_does_not_keep_its_loop_in_order():
    f = accelerate(_dead_sum)
    u = np.random.default_rng(8).random(30001)
    want = _dead_sum(u.copy(), 3)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            np.testing.assert_array_equal(f(u.copy(), 3), want, err_msg=f"{lvl} {opts}")
    text = f.explain()
    assert "inner loop over `i` at line" in text and "read before it is assigned" not in text


def _heat_with_diagnostics(u, new, steps, energies):
    n = u.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            new[i] = u[i] + 0.2 * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        u, new = new, u
        if t % 10 == 0:                 # periodic diagnostics: a region in a branch
            e = 0.0
            for i in range(n):
                e += u[i] * u[i]
            energies[t // 10] = e
        else:
            for i in range(1, n - 1):   # and one in the other branch
                new[i] = u[i]
    return u


def test_loops_in_the_branches_of_an_if_in_a_time_loop_are_regions():
    # they ran inline (and a call with distributed arrays was refused)
    f = accelerate(_heat_with_diagnostics)
    x = np.sin(np.linspace(0.0, 3.0, 40001)) ** 2
    with level("serial"):
        en0 = np.zeros(5)
        want = f(x.copy(), x.copy(), 41, en0)
    py_en = np.zeros(5)
    np.testing.assert_array_equal(want, _heat_with_diagnostics(x.copy(), x.copy(), 41, py_en))
    np.testing.assert_allclose(en0, py_en, rtol=1e-12)
    for lvl, opts in _levels():
        en = np.zeros(5)
        with _ctx(lvl, opts):
            got = f(x.copy(), x.copy(), 41, en)
        np.testing.assert_array_equal(got, want, err_msg=f"{lvl} {opts}")
        np.testing.assert_array_equal(en, en0, err_msg=f"{lvl} {opts}")
    regions = f._compiled.regions
    assert [r.branch for r in regions] == [(), (("body", 2),), (("orelse", 2),)], f.explain()


def _sub_steps(u, outer, inner):
    n = u.shape[0]
    for a in range(outer):
        for b in range(inner):          # sub-steps: in order too
            for i in range(n):          # independent: a region two loops down
                u[i] = u[i] * 0.5 + a + b
    return u


def test_a_loop_inside_sub_steps_of_a_time_loop_is_a_region():
    f = accelerate(_sub_steps)
    x = np.random.default_rng(12).random(30001)
    want = _sub_steps(x.copy(), 3, 4)
    for lvl, opts in _levels():
        with _ctx(lvl, opts):
            np.testing.assert_array_equal(f(x.copy(), 3, 4), want, err_msg=f"{lvl} {opts}")
    regions = f._compiled.regions
    assert len(regions) == 1 and regions[0].branch == (("body", 0),), f.explain()
    assert "inner loop over `i` at line" in f.explain()


def test_the_runners_agreement_is_looked_up_again_inside_a_task(monkeypatch):
    """At ``auto`` under a launcher, a region's verdict is agreed across the ranks
    (``agree_any``), except inside a task of ``distribute.map`` (this rank alone:
    ``auto`` resolves to ``threads``).  The lookup is kept per level setting; a
    lookup made inside a task must not be served outside it (the ranks would
    then judge the region each from its own timing and could part ways), nor
    the other way round.  The launcher is stood in for by the resolution of
    ``auto`` itself, which is what a launcher changes."""
    from loopscale import config
    from loopscale.accel import _decorator, _regions

    monkeypatch.setattr(_decorator, "_auto_parallel_level",
                        lambda: "mpi" if config.collectives_allowed() else "threads")
    region = accelerate(_doubled)  # a region's own function, built as a driver builds it
    with level("serial"):
        region(np.ones(8), np.zeros(8))
    gates = np.array([_regions.FIRST_GATE, _regions.RETRY_FIRST], dtype=np.int64)
    run = _regions.Runner(region, 0, gates)
    with level("auto"):
        with config.without_collectives():
            assert run._agreement() is None  # in a task: threads, nothing to agree
        outside = run._agreement()
        assert outside is not None and outside.__name__ == "agree_any"
        with config.without_collectives():
            assert run._agreement() is None
    with level("auto"):  # an equal setting, a new object: the lookup is kept
        assert run._agreement() is not None


def _doubled(x, out):
    for i in range(x.shape[0]):
        out[i] = 2.0 * x[i]


@accelerate
def _gram(X):
    n = X.shape[0]
    G = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):          # diagonal included: `i` stays in order
            s = 0.0
            for k in range(X.shape[1]):  # a region of 5 iterations, 20,000 passes
                s += X[i, k] * X[j, k]
            G[i, j] = s
            G[j, i] = s
    return G


@pytest.mark.timeout(300)
def test_a_region_too_short_for_any_pool_stays_inline_for_good():
    # Two passes on the pool lost, then retries every 8..4096 passes; and a
    # retry whose call beat the probe's call (both mostly the call from
    # Python) sent every later pass to the pool: 2-5x slower than serial.
    # A pass this short is never tried on the pool again.
    X = np.random.default_rng(0).random((200, 5))
    with level("serial"):
        want = _gram(X)
    comp = _gram._build()
    with level("threads", max_workers=2):
        for _ in range(3):
            np.testing.assert_array_equal(_gram(X), want)
        runner = comp.runners[0]
        before = (runner.calls, dict(runner.probes))
        for _ in range(3):
            np.testing.assert_array_equal(_gram(X), want)
    assert (runner.calls, runner.probes) == before, (runner.calls, before)
    assert comp.gates[len(comp.gates) // 2] > 10**15 and comp.gates[0] > 5
