"""The worker pool and parallel_for: faults, interrupts and odd sizes."""

from __future__ import annotations

import os
import signal
import threading
import time

import numba
import numpy as np
import pytest

import loopscale
from loopscale import accelerate
from loopscale.errors import SerializationWarning
from loopscale.schedule import Executor, parallel_for
from loopscale.schedule._pool import WorkerPool


@numba.njit(nogil=True)
def fill_squares(start, stop, out):
    for i in range(start, stop):
        out[i] = i * i


@numba.njit(nogil=True)
def fail_at(start, stop, out, bad):
    for i in range(start, stop):
        if i == bad:
            raise ValueError("bad element")
        out[i] = 1.0


@numba.njit(nogil=True)
def spin(start, stop, out, seconds_per_item):
    for i in range(start, stop):
        x = 0.0
        k = 0
        while k < seconds_per_item:
            x += 1.0
            k += 1
        out[i] = x


def _thread_names():
    return {t.name for t in threading.enumerate()}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 1001])
@pytest.mark.parametrize("workers", [1, 2, 3, 5])
@pytest.mark.parametrize("policy", ["static", "dynamic", "guided", "auto"])
def test_every_index_is_written_once_for_any_size_and_worker_count(n, workers, policy):
    out = np.full(n, -1, dtype=np.int64)
    parallel_for(fill_squares, n, out, max_workers=workers, policy=policy)
    np.testing.assert_array_equal(out, np.arange(n) ** 2)


@pytest.mark.timeout(60)
def test_non_contiguous_and_fortran_outputs_are_written_in_place():
    base = np.zeros(40, dtype=np.int64)
    view = base[::2]
    parallel_for(fill_squares, view.size, view, max_workers=2, chunksize=3, policy="dynamic")
    np.testing.assert_array_equal(base[::2], np.arange(20) ** 2)
    assert not base[1::2].any()
    fortran = np.asfortranarray(np.zeros((5, 4), dtype=np.int64))
    flat = fortran.T.reshape(-1)  # a view: fortran.T is C-contiguous
    parallel_for(fill_squares, flat.size, flat, max_workers=2)
    np.testing.assert_array_equal(fortran.T.ravel(), np.arange(20) ** 2)


@pytest.mark.timeout(60)
def test_one_failing_chunk_out_of_thousands_raises_once_with_its_range():
    out = np.zeros(20_000)
    before = threading.active_count()
    with pytest.raises(ValueError) as info:
        parallel_for(fail_at, out.size, out, 12_345, max_workers=2, policy="dynamic",
                     chunksize=5)
    msg = str(info.value)
    assert "bad element" in msg and "iterations [" in msg
    lo, hi = (int(v) for v in msg.split("iterations [")[1].split(")")[0].split(", "))
    assert lo <= 12_345 < hi
    assert isinstance(info.value.__cause__, ValueError)  # the worker's own exception
    # the pool is usable afterwards and started no new threads
    parallel_for(fill_squares, 10, np.zeros(10, dtype=np.int64), max_workers=2)
    assert threading.active_count() <= before + 1


class _StatusError(Exception):
    def __init__(self, status):
        super().__init__(f"status {status}")
        self.status = status


class _PairError(Exception):
    def __init__(self, code, detail):  # cannot be rebuilt from its one-string args
        super().__init__(f"{code}: {detail}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("error", [_StatusError, _PairError, OSError])
def test_a_chunk_exception_keeps_its_type_and_attributes(error):
    """Not ``type(exc)(message)``: that turned ``status`` into the message and
    made exceptions with two arguments a WorkerError (a broken executor)."""
    made = {_StatusError: lambda: _StatusError(503), _PairError: lambda: _PairError(7, "x"),
            OSError: lambda: OSError(28, "No space left on device", "out.bin")}[error]

    def chunk(c0, c1):
        if c0 <= 500 < c1:
            raise made()

    with pytest.raises(error) as info:
        parallel_for(chunk, 1000, max_workers=2, chunksize=10)
    got = info.value
    located = "iterations [" in str(got) or any("iterations [" in note for note in
                                                  getattr(got, "__notes__", []))
    assert located, (str(got), getattr(got, "__notes__", None))
    if error is _StatusError:
        assert got.status == 503 and str(got).startswith("status 503 (raised in")
    elif error is OSError:
        assert (got.errno, got.filename) == (28, "out.bin")
    else:
        assert got.args == ("7: x",)


@pytest.mark.timeout(60)
def test_remaining_chunks_stop_after_a_failure():
    out = np.zeros(50_000)
    with pytest.raises(ValueError):
        parallel_for(fail_at, out.size, out, 10, max_workers=2, policy="dynamic", chunksize=5)
    # far fewer than all chunks ran: most of the array is untouched
    assert out.sum() < out.size / 2


@pytest.mark.timeout(30)
def test_ctrl_c_while_waiting_is_raised_within_a_second_and_the_pool_survives():
    out = np.zeros(400)
    spin(0, 1, out, 10)  # compile first
    # each item spins ~10 ms: the loop would take ~2 s on two workers
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        parallel_for(spin, out.size, out, 10_000_000, max_workers=2, policy="dynamic",
                     chunksize=1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.5, elapsed
    assert (out == 0).sum() > 100  # no new chunks started after the interrupt
    ints = np.zeros(8, dtype=np.int64)
    parallel_for(fill_squares, 8, ints, max_workers=2)
    np.testing.assert_array_equal(ints, np.arange(8) ** 2)


@accelerate
def spin_sum(out, per_item):
    total = 0.0
    for i in range(out.shape[0]):
        x = 0.0
        k = 0
        while k < per_item:
            x += 1.0
            k += 1
        out[i] = x
        total += x * 0.5
    return total


def _interrupt_after(seconds):
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["parallel_for static", "parallel_for auto", "threads static",
                                 "threads auto", "threads 1 worker"])
def test_ctrl_c_inside_long_chunks_is_raised_within_a_second(how):
    # two chunks of ~3 s each (static): the caller runs one of them itself, in
    # compiled code that checks no signal; it must still see Ctrl-C promptly
    out = np.zeros(600)
    spin(0, 1, out, 10)
    with loopscale.level("threads", max_workers=2):
        spin_sum(out[:4], 10)  # compile first
    timer = _interrupt_after(0.3)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        if how.startswith("parallel_for"):
            parallel_for(spin, out.size, out, 10_000_000, max_workers=2, policy=how.split()[1])
        else:
            workers = 1 if how.endswith("1 worker") else 2
            policy = "static" if workers == 1 else how.split()[1]
            with loopscale.level("threads", max_workers=workers, policy=policy):
                spin_sum(out, 30_000_000)
    elapsed = time.perf_counter() - t0
    timer.cancel()
    assert elapsed < 1.5, elapsed
    assert (out == 0).sum() > 300  # nothing ran on after the interrupt
    # the pool is usable afterwards, and a long chunk split in pieces gives the
    # serial level's answer to the bit
    small = np.zeros(64)
    with loopscale.level("serial"):
        expected = spin_sum(small, 1000)
    with loopscale.level("threads", max_workers=2, policy="static"):
        assert spin_sum(np.zeros(64), 1000) == expected


@pytest.mark.timeout(60)
def test_a_failure_stops_the_other_workers_long_chunk_promptly():
    # worker A fails at once; worker B's static chunk would run ~3 s: it stops
    # at its next piece instead of running to the end
    out = np.zeros(600)
    fail_at(0, 1, out, 5)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="bad element"):
        parallel_for(fail_then_spin, out.size, out, 10_000_000, max_workers=2,
                     policy="static")
    assert time.perf_counter() - t0 < 1.5
    assert (out[300:] == 0).sum() > 200


@numba.njit(nogil=True)
def fail_then_spin(start, stop, out, per_item):
    if start == 0:
        raise ValueError("bad element")
    spin(start, stop, out, per_item)


@numba.njit(nogil=True)
def fail_early_and_late(start, stop, out, per_item):
    for i in range(start, stop):
        if i == 250:
            raise ValueError("early")
        if i == 301:
            raise ValueError("late")
        spin(i, i + 1, out, per_item)


@pytest.mark.timeout(60)
def test_of_two_failures_the_one_python_meets_first_is_raised_with_split_chunks():
    # worker B fails at once at 301; worker A, in pieces, reaches 250 only later:
    # A must run on up to B's failure (not stop at its next piece), so that the
    # error raised is the one a plain loop would raise
    out = np.zeros(600)
    fail_early_and_late(0, 1, out, 10)
    for _ in range(3):
        with pytest.raises(ValueError, match="early") as info:
            parallel_for(fail_early_and_late, out.size, out, 200_000, max_workers=2,
                         policy="static")
        assert "iterations [" in str(info.value)


@pytest.mark.timeout(60)
def test_an_explicit_chunksize_gives_every_call_its_planned_range():
    seen = []
    lock = threading.Lock()

    def record(start, stop):
        time.sleep(0.08)  # longer than a piece: it would be split without a chunksize
        with lock:
            seen.append((start, stop))

    parallel_for(record, 12, max_workers=2, policy="static", chunksize=6)
    assert sorted(seen) == [(0, 6), (6, 12)]
    seen.clear()
    parallel_for(record, 12, max_workers=2, policy="static")
    # without one, the calls still cover the range exactly once, in pieces
    covered = sorted(i for a, b in seen for i in range(a, b))
    assert covered == list(range(12)) and len(seen) > 2


@pytest.mark.timeout(30)
def test_a_region_started_inside_a_worker_runs_serially_without_deadlock():
    inner_out = np.zeros((4, 50), dtype=np.int64)

    def outer(start, stop):
        for r in range(start, stop):
            parallel_for(fill_squares, 50, inner_out[r], max_workers=2)

    parallel_for(outer, 4, max_workers=2, policy="static")
    np.testing.assert_array_equal(inner_out, np.tile(np.arange(50) ** 2, (4, 1)))


def test_kernel_without_nogil_warns_and_still_computes():
    @numba.njit
    def holds_gil(start, stop, out):
        for i in range(start, stop):
            out[i] = 2 * i

    out = np.zeros(10, dtype=np.int64)
    with pytest.warns(SerializationWarning, match="nogil"):
        parallel_for(holds_gil, 10, out, max_workers=2)
    np.testing.assert_array_equal(out, 2 * np.arange(10))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"max_workers": 0}, ValueError, "greater than 0"),
    ({"max_workers": -3}, ValueError, "greater than 0"),
    ({"max_workers": 2.0}, TypeError, "positive integer"),
    ({"policy": "fast"}, ValueError, "'static', 'dynamic', 'guided', 'auto'"),
    ({"chunksize": 0}, ValueError, "chunksize"),
    ({"progress": "no"}, TypeError, "progress must be True, False or None"),
    ({"progress": 1}, TypeError, "progress must be True, False or None"),
    ({"progress": print}, TypeError, "progress must be True, False or None"),
    ({"max_workers": np.bool_(True)}, TypeError, "positive integer"),
])
def test_bad_arguments_are_clear_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        parallel_for(fill_squares, 10, np.zeros(10, dtype=np.int64), **kwargs)


@pytest.mark.parametrize("n,exc", [(-1, ValueError), (10.0, TypeError), ("10", TypeError),
                                   (True, TypeError)])
def test_a_bad_n_is_a_clear_error(n, exc):
    with pytest.raises(exc, match="n must be a non-negative integer"):
        parallel_for(fill_squares, n, np.zeros(10, dtype=np.int64))


def test_numpy_integers_are_integers_for_every_count():
    # as ThreadPoolExecutor takes them (os.cpu_count() // 2 in NumPy code is often one)
    out = np.zeros(10, dtype=np.int64)
    parallel_for(fill_squares, np.int64(10), out, max_workers=np.int64(2),
                 chunksize=np.int32(3))
    np.testing.assert_array_equal(out, np.arange(10) ** 2)
    with Executor(max_workers=np.int64(2)) as ex:
        assert ex._max_workers == 2 and type(ex._max_workers) is int
        assert list(ex.map(abs, range(-4, 0), chunksize=np.int16(2))) == [4, 3, 2, 1]
    with loopscale.level("threads", max_workers=np.int64(2)):
        assert loopscale.config.current_level().options["max_workers"] == 2


def test_a_numpy_integer_n_is_an_integer():
    out = np.zeros(10, dtype=np.int64)
    parallel_for(fill_squares, np.int64(out.shape[0]), out, max_workers=2)
    np.testing.assert_array_equal(out, np.arange(10) ** 2)


def test_shutdown_pool_refuses_new_work_clearly():
    pool = WorkerPool(2)
    pool.run(fill_squares, [(0, 5), (5, 10)], (np.zeros(10, dtype=np.int64),))
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.run(fill_squares, [(0, 5), (5, 10)], (np.zeros(10, dtype=np.int64),))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_numba_parallel_function_called_from_every_worker_does_not_abort(layer):
    # Numba's workqueue layer aborts the process on concurrent launches; the
    # scheduler must pick a thread-safe layer or, when the user chose workqueue,
    # serialize: whether the parallel function is the chunk or the task itself,
    # or is called by a Python chunk or task. Run in a child so an abort shows
    # as a failed exit status rather than killing the test run.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numba, numpy as np
        from loopscale.schedule import Executor, TaskGraph, parallel_for

        @numba.njit(parallel=True)
        def psum(x):
            s = 0.0
            for i in numba.prange(x.shape[0]):
                s += x[i]
            return s

        @numba.njit(parallel=True)
        def pchunk(start, stop, x, out):
            for i in numba.prange(start, stop):
                out[i] = x[i] * 2.0

        x = np.ones(100_000)
        out = np.zeros(64)

        def chunk(start, stop):
            for i in range(start, stop):
                out[i] = psum(x)

        def task(k):
            return psum(x) + k

        parallel_for(chunk, 64, max_workers=2, policy="dynamic", chunksize=1)
        assert (out == 100_000).all(), out
        doubled = np.zeros_like(x)
        parallel_for(pchunk, x.size, x, doubled, max_workers=2, chunksize=1000)
        assert (doubled == 2.0).all()
        with Executor(max_workers=2) as ex:
            assert list(ex.map(psum, [x] * 40)) == [100_000.0] * 40
            assert [f.result() for f in [ex.submit(task, k) for k in range(40)]] == \
                [100_000.0 + k for k in range(40)]
        g = TaskGraph()
        for k in range(40):
            g.add(("direct", k), psum, x)
            g.add(("python", k), task, k)
        results = g.run(max_workers=2)
        assert all(results[("direct", k)] == 100_000.0 for k in range(40))
        assert all(results[("python", k)] == 100_000.0 + k for k in range(40))
        print("ok", numba.threading_layer())
    """)
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=220, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")
    if layer != "default":
        assert proc.stdout.split()[1] == layer


def test_parallel_numba_dispatcher_is_serialized_only_on_an_unsafe_layer():
    from loopscale.schedule import _budget

    @numba.njit(parallel=True)
    def ppar(start, stop, out):
        for i in numba.prange(start, stop):
            out[i] = i

    guarded = _budget.guard(ppar)
    if _budget.numba_layer_is_threadsafe():
        assert guarded is ppar
    else:
        assert guarded is not ppar
    assert _budget.guard(fill_squares) is fill_squares


@pytest.mark.timeout(60)
def test_a_sweep_over_worker_counts_keeps_the_threads_of_the_largest_only():
    def workers():
        return [t for t in threading.enumerate() if t.name.startswith("loopscale-worker")]

    before = len(workers())  # an earlier test may have grown the pool already
    out = np.zeros(1000, dtype=np.int64)
    for w in (2, 3, 4, 6, 5, 2):
        parallel_for(fill_squares, out.size, out, max_workers=w, policy="static")
        np.testing.assert_array_equal(out, np.arange(1000) ** 2)
        out[:] = 0
    # one pool: 5 helper threads (for 6 workers), not 1 + 2 + 3 + 5 + 4
    assert len(workers()) <= max(before, 5), [t.name for t in workers()]


@pytest.mark.timeout(60)
def test_a_system_exit_in_any_worker_reaches_the_caller_as_it_is():
    def leave(start, stop):
        time.sleep(0.01)
        raise SystemExit(3)

    for workers in (1, 2):
        with pytest.raises(SystemExit) as info:
            parallel_for(leave, 4, max_workers=workers, policy="static")
        assert info.value.code == 3
        assert info.value.__cause__ is not info.value
    parallel_for(fill_squares, 4, np.zeros(4, dtype=np.int64), max_workers=2)
