"""schedule.Executor: ThreadPoolExecutor's contract, at a lower cost per task."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures as cf
import concurrent.futures.thread
import contextvars
import decimal
import gc
import os
import signal
import statistics
import sys
import threading
import time
import traceback
import tracemalloc
import weakref

import numba
import numpy as np
import pytest

from loopscale.errors import WorkerError
from loopscale.schedule._executor import Executor
from loopscale.schedule._pool import in_worker


def failing_task(x):
    raise ValueError(f"bad value {x}")


def _executor_threads():
    return [t for t in threading.enumerate() if t.name.startswith("loopscale-Executor")]


@pytest.mark.timeout(30)
def test_submit_returns_a_standard_future_with_the_result():
    with Executor(max_workers=2) as ex:
        fut = ex.submit(divmod, 17, 5)
        assert isinstance(fut, cf.Future)
        assert fut.result() == (3, 2)
        assert fut.done() and not fut.running() and not fut.cancelled()
        assert ex.submit(pow, 2, exp=10).result() == 1024
        assert "finished returned tuple" in repr(fut)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chunksize", [1, 3, 1000])
def test_map_returns_results_in_input_order(chunksize):
    delays = [0.004 * ((7 * i) % 5) for i in range(40)]

    def slow_identity(i, d):
        time.sleep(d)
        return i

    with Executor(max_workers=2) as ex:
        got = list(ex.map(slow_identity, range(40), delays, chunksize=chunksize))
        assert got == list(range(40))
        assert list(ex.map(abs, [])) == []
        assert list(ex.map(pow, [2, 3, 4], [2, 2])) == [4, 9]  # shortest iterable ends it


@pytest.mark.timeout(30)
def test_it_is_a_thread_pool_executor_to_isinstance_and_to_asyncio():
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(Executor(max_workers=2))  # TypeError unless a TPE
        got = await loop.run_in_executor(None, sum, [1, 2, 3])
        await loop.shutdown_default_executor()
        return got

    assert isinstance(Executor(max_workers=1), cf.ThreadPoolExecutor)
    assert asyncio.run(main()) == 6


_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="caller")


def _set_context_state():
    decimal.getcontext().prec = 5
    _TAG.set("task")
    np.seterr(all="raise")
    return decimal.getcontext().prec


@pytest.mark.timeout(30)
def test_a_task_run_in_the_waiting_thread_does_not_change_its_context():
    # result() may run a queued task in the caller's thread (it would sleep
    # otherwise): what the task sets in context variables stays with the task
    before = np.geterr()
    with Executor(max_workers=1) as ex:
        for _ in range(3):  # the function is known to be short: then stolen
            assert ex.submit(_set_context_state).result() == 5
    assert decimal.getcontext().prec == 28
    assert _TAG.get() == "caller"
    assert np.geterr() == before


@pytest.mark.timeout(30)
def test_tasks_submitted_inside_a_farm_task_never_pick_a_collective_level():
    # inside a task of distribute.map (this rank alone) auto must not pick the
    # mpi level, also in the tasks an Executor runs for it, on a worker or in
    # the waiting thread (in a fresh context)
    from loopscale import config

    with Executor(max_workers=2) as ex:
        assert ex.submit(config.collectives_allowed).result() is True
        with config.without_collectives():
            for _ in range(3):  # a worker's, then stolen ones (known to be short)
                assert ex.submit(config.collectives_allowed).result() is False
            assert list(ex.map(lambda _: config.collectives_allowed(), range(4))) == [False] * 4
        assert ex.submit(config.collectives_allowed).result() is True


@pytest.mark.timeout(30)
def test_shutdown_waits_for_a_task_another_thread_runs_in_its_result():
    done = []

    def slow():
        time.sleep(0.5)
        done.append(True)

    # the other thread runs the task itself only if it reaches it before an idle
    # worker does: a race, which a fresh executor tries again (once lost in CI)
    for _ in range(10):
        done.clear()
        ex = Executor(max_workers=2)
        for _ in range(3):
            ex.submit(time.sleep, 0).result()  # known to be short
        side = threading.Thread(target=lambda ex=ex: ex.submit(slow).result())
        side.start()
        deadline = time.monotonic() + 5
        while not ex._core.stealers and not done and time.monotonic() < deadline:
            time.sleep(0.001)
        if ex._core.stealers:
            break
        ex.shutdown(wait=True)  # a worker ran it
        side.join()
    else:
        pytest.fail("in 10 tries the other thread never ran the task itself")
    ex.shutdown(wait=True)
    assert done == [True]  # ThreadPoolExecutor's shutdown waits for it too
    side.join()


@pytest.mark.timeout(30)
def test_map_rejects_a_bad_chunksize():
    with Executor(max_workers=1) as ex:
        with pytest.raises(ValueError, match="chunksize must be greater than 0"):
            ex.map(abs, [1], chunksize=0)
        with pytest.raises(TypeError, match="chunksize"):
            ex.map(abs, [1], chunksize=1.5)


@pytest.mark.timeout(30)
def test_map_timeout_raises_promptly_and_cancels_what_has_not_started():
    started = []

    def sleepy(i):
        started.append(i)
        time.sleep(0.3)
        return i

    with Executor(max_workers=1) as ex:
        t0 = time.monotonic()
        results = ex.map(sleepy, range(20), timeout=0.05)
        with pytest.raises(TimeoutError):
            next(results)
        assert time.monotonic() - t0 < 0.25
    assert len(started) <= 2  # the running one (and at most one more claimed before the stop)


@pytest.mark.timeout(30)
def test_exception_is_reraised_with_the_worker_traceback():
    with Executor(max_workers=2) as ex:
        gate = threading.Event()
        blocker = ex.submit(gate.wait, 5)
        fut = ex.submit(failing_task, 7)
        time.sleep(0.05)  # the second worker runs it, not the caller
        gate.set()
        blocker.result()
        exc = fut.exception(timeout=5)
        assert isinstance(exc, ValueError)
        with pytest.raises(ValueError, match="bad value 7") as info:
            fut.result()
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "failing_task" in frames


@pytest.mark.timeout(30)
def test_map_raises_at_the_failing_item_after_yielding_the_ones_before():
    def fail_at_five(i):
        if i == 5:
            raise KeyError(i)
        return i

    with Executor(max_workers=2) as ex:
        it = ex.map(fail_at_five, range(10), chunksize=2)
        assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(KeyError):
            next(it)


@pytest.mark.timeout(30)
def test_cancel_stops_a_queued_task_and_not_a_running_one():
    ran = []
    gate = threading.Event()
    with Executor(max_workers=1) as ex:
        running = ex.submit(gate.wait, 5)
        queued = ex.submit(ran.append, 1)
        time.sleep(0.05)
        assert running.running()
        assert not running.cancel()
        assert queued.cancel() and queued.cancelled() and queued.done()
        with pytest.raises(cf.CancelledError):
            queued.result()
        gate.set()
    assert ran == []


@pytest.mark.timeout(30)
def test_shutdown_waits_for_queued_work_and_then_refuses_new_work():
    done = []
    ex = Executor(max_workers=2)
    for i in range(20):
        ex.submit(lambda i=i: (time.sleep(0.005), done.append(i)))
    ex.shutdown(wait=True)
    assert sorted(done) == list(range(20))
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(abs, [1])
    assert _executor_threads() == []


@pytest.mark.timeout(30)
def test_shutdown_cancel_futures_cancels_the_pending_ones():
    gate = threading.Event()
    ex = Executor(max_workers=1)
    first = ex.submit(gate.wait, 5)
    rest = [ex.submit(abs, -i) for i in range(5)]
    mapped = ex.map(abs, range(5))
    time.sleep(0.05)
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=5) is True
    assert all(f.cancelled() for f in rest)
    with pytest.raises(cf.CancelledError):
        list(mapped)


@pytest.mark.timeout(30)
def test_as_completed_and_wait_work_with_its_futures():
    with Executor(max_workers=2) as ex:
        futs = [ex.submit(time.sleep, d) for d in (0.2, 0.01, 0.05)]
        first, pending = cf.wait(futs, return_when=cf.FIRST_COMPLETED, timeout=5)
        assert futs[1] in first and futs[0] in pending
        assert set(cf.as_completed(futs, timeout=5)) == set(futs)
        done, not_done = cf.wait(futs, timeout=5)
        assert done == set(futs) and not not_done
        bad = [ex.submit(time.sleep, 0.3), ex.submit(failing_task, 1)]
        done, _ = cf.wait(bad, return_when=cf.FIRST_EXCEPTION, timeout=5)
        assert bad[1] in done


@pytest.mark.timeout(30)
def test_done_callbacks_run_once_before_and_after_completion():
    seen = []
    gate = threading.Event()
    with Executor(max_workers=1) as ex:
        fut = ex.submit(gate.wait, 5)
        fut.add_done_callback(lambda f: seen.append(("early", f.result())))
        gate.set()
        fut.result()
        fut.add_done_callback(lambda f: seen.append(("late", f.result())))
        cancelled = ex.submit(gate.wait, 5)
        cancelled.cancel()  # may have started already; either way one call
        cancelled.add_done_callback(lambda f: seen.append(("other", f.done())))
    assert seen[:2] == [("early", True), ("late", True)]
    assert seen[2:] == [("other", True)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        Executor(max_workers=bad)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", [1.5, "2", True])
def test_max_workers_must_be_an_integer(bad):
    with pytest.raises(TypeError, match="max_workers"):
        Executor(max_workers=bad)


@pytest.mark.timeout(30)
def test_default_size_comes_from_config(monkeypatch):
    monkeypatch.setenv("LOOPSCALE_MAX_WORKERS", "3")
    with Executor() as ex:
        assert ex.max_workers == 3


@pytest.mark.timeout(30)
@pytest.mark.parametrize("workers", [1, 2])
def test_never_more_than_max_workers_tasks_run_at_once(workers):
    lock = threading.Lock()
    active, peak = [0], [0]

    def task(seconds=0.001):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(seconds)
        with lock:
            active[0] -= 1

    def long_task():
        task(0.05)

    with Executor(max_workers=workers) as ex:
        for f in [ex.submit(task) for _ in range(100)]:
            f.result()  # the caller may run queued tasks, but only in a free slot
        for _ in range(20):
            ex.submit(task).result()
        list(ex.map(lambda _: task(), range(100)))
        busy = [ex.submit(long_task) for _ in range(workers)]
        time.sleep(0.01)
        for f in [ex.submit(task) for _ in range(5)]:
            f.result()  # every slot is taken: the caller must wait, not run it
        [f.result() for f in busy]
        busy = [ex.submit(long_task) for _ in range(workers)]
        time.sleep(0.01)
        assert list(ex.map(lambda _: task(), range(5))) == [None] * 5
        [f.result() for f in busy]
    assert peak[0] == workers


@pytest.mark.timeout(30)
def test_one_worker_runs_tasks_in_submission_order():
    order = []
    with Executor(max_workers=1) as ex:
        futs = [ex.submit(order.append, i) for i in range(50)]
        for f in reversed(futs):  # waiting on the last one first must not reorder
            f.result()
    assert order == list(range(50))


@pytest.mark.timeout(30)
def test_a_task_waiting_on_another_task_does_not_deadlock():
    def outer(ex):
        return ex.submit(lambda: 42).result() + 1

    def outer_map(ex):
        return sum(ex.map(abs, range(-50, 0), chunksize=7))

    with Executor(max_workers=1) as ex:  # ThreadPoolExecutor(1) deadlocks here
        assert ex.submit(outer, ex).result(timeout=10) == 43
        assert ex.submit(outer_map, ex).result(timeout=10) == sum(range(1, 51))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_nested_waits_in_a_task_the_caller_runs_do_not_deadlock(workers):
    # Once a function is known to be short the waiting caller runs its tasks
    # itself, in a slot of the pool: a nested wait there must run the inner
    # task in that slot, as a worker does (it hung from the second call on),
    # from the main thread and from another thread, nested three deep.
    def fib(ex, n):
        if n < 2:
            return n
        a, b = ex.submit(fib, ex, n - 1), ex.submit(fib, ex, n - 2)
        return a.result() + b.result()

    def inner(x):
        return x + 1

    def outer(ex, x):
        return ex.submit(inner, x).result()

    def calls(ex):
        got = [ex.submit(outer, ex, k).result() for k in range(5)]
        got += [ex.submit(fib, ex, 9).result() for _ in range(3)]
        return got

    want = [1, 2, 3, 4, 5, 34, 34, 34]
    with Executor(max_workers=workers) as ex:
        assert calls(ex) == want
        box = []
        t = threading.Thread(target=lambda: box.append(calls(ex)), daemon=True)
        t.start()
        t.join(30)
        assert not t.is_alive(), "a nested wait in another thread hung"
        assert box == [want]


@pytest.mark.timeout(30)
def test_initializer_runs_in_every_worker_and_its_failure_breaks_the_executor():
    names = set()
    with Executor(max_workers=2, initializer=lambda: names.add(
            threading.current_thread().name)) as ex:
        gate = threading.Event()
        futs = [ex.submit(gate.wait, 5) for _ in range(2)]
        gate.set()
        [f.result() for f in futs]
    assert len(names) == 2

    def broken_init():
        raise OSError("no database")

    ex = Executor(max_workers=1, initializer=broken_init)
    fut = ex.submit(abs, -1)
    with pytest.raises(cf.thread.BrokenThreadPool, match="initializer failed"):
        fut.result(timeout=5)  # as ThreadPoolExecutor's code expects it
    with pytest.raises(WorkerError):
        ex.submit(abs, -1)
    assert isinstance(fut.exception(), cf.BrokenExecutor)
    ex.shutdown()


@pytest.mark.timeout(30)
def test_an_executor_dropped_without_shutdown_lets_its_threads_exit():
    ex = Executor(max_workers=2, thread_name_prefix="loopscale-Executor-dropped")
    assert [f.result() for f in [ex.submit(abs, -i) for i in range(10)]] == list(range(10))
    ref = weakref.ref(ex)
    del ex
    gc.collect()
    assert ref() is None
    deadline = time.monotonic() + 5
    while any(t.name.startswith("loopscale-Executor-dropped") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "worker threads outlived their executor"
        time.sleep(0.01)


@pytest.mark.timeout(60)
def test_ten_thousand_tiny_tasks_then_ten_large_ones_keep_memory_bounded():
    large = 1_000_000  # float64: 8 MB per result
    tracemalloc.start()
    try:
        with Executor(max_workers=2) as ex:
            ex.submit(abs, 0).result()  # threads started before the baseline
            gc.collect()
            start, _ = tracemalloc.get_traced_memory()
            futs = [ex.submit(bytes, 100) for _ in range(10_000)]
            assert sum(len(f.result()) for f in futs) == 1_000_000
            assert sum(map(len, ex.map(bytes, [100] * 10_000, chunksize=7))) == 1_000_000
            del futs
            gc.collect()
            after_tiny, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for k in range(10):
                out = ex.submit(np.full, large, float(k)).result()
                assert out[-1] == k
                del out
            gc.collect()
            after_large, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 10,000 results of 133 bytes, or the 80 kB list that holds map's, would show
    assert after_tiny - start < 64 * 1024, "results or futures of finished tasks were kept"
    assert after_large - start < 64 * 1024
    assert peak - after_tiny < 2.5 * 8 * large, "more than two large results were alive at once"


@pytest.mark.timeout(60)
def test_submit_and_result_cost_well_below_thread_pool_executors():
    def per_call(ex, n=2000):
        ex.submit(abs, 0).result()
        t0 = time.perf_counter()
        for _ in range(n):
            ex.submit(abs, 1).result()
        return (time.perf_counter() - t0) / n

    ours, theirs = [], []
    with Executor(max_workers=2) as ex, cf.ThreadPoolExecutor(max_workers=2) as tpe:
        for _ in range(5):  # interleaved, so that load on the machine hits both
            ours.append(per_call(ex))
            theirs.append(per_call(tpe))
    ratio = statistics.median(ours) / statistics.median(theirs)
    assert ratio < 0.75, f"submit+result costs {ratio:.2f}x ThreadPoolExecutor's"


@pytest.mark.timeout(30)
def test_shutdown_cancel_futures_during_a_chunked_map_does_not_hang_its_consumer():
    gate = threading.Event()

    def first_waits(i):
        if i == 0:
            gate.wait(5)
        return i

    ex = Executor(max_workers=1)
    results = ex.map(first_waits, range(40), chunksize=4)
    time.sleep(0.05)  # chunk 0 is running, the others wait
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert [next(results) for _ in range(4)] == [0, 1, 2, 3]  # the claimed chunk completes
    with pytest.raises(cf.CancelledError):
        next(results)
    ex.shutdown()


# -- regressions found in review ------------------------------------------------------


@pytest.mark.timeout(60)
def test_map_hands_out_a_ready_result_even_while_later_items_are_slow():
    # item K waits for the consumer to have received item K-1: a consumer that
    # batches its wake-ups must not hold item K-1 back until K finishes
    seen = threading.Event()
    state = {"k": 0}

    def fn(x):
        if x == state["k"] and not seen.wait(3):
            return "STALL"
        time.sleep(0.0001)
        return x

    with Executor(max_workers=1) as ex:
        for k in (300, 301, 302):
            state["k"] = k
            seen.clear()
            out = []
            for v in ex.map(fn, range(400)):
                if v == k - 1:
                    seen.set()
                out.append(v)
            assert "STALL" not in out


@pytest.mark.timeout(120)
def test_shutdown_with_cancel_during_map_never_loses_a_chunk():
    # a claim racing close() used to drop one chunk: the consumer then waited
    # forever (here: until the map's timeout)
    import random

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(40):
            ex = Executor(max_workers=2)
            it = ex.map(abs, range(20_000), timeout=10)
            threading.Timer(random.random() * 0.005,
                            lambda ex=ex: ex.shutdown(wait=False, cancel_futures=True)).start()
            try:
                for _ in it:
                    pass
            except concurrent.futures.CancelledError:
                pass
            ex.shutdown(wait=True)
    finally:
        sys.setswitchinterval(old)


def test_a_failed_item_is_marked_before_the_skipped_items_after_it():
    from loopscale.schedule._executor import _FAILED, _SKIPPED, _Batch

    class Recording(list):  # type: ignore[type-arg]
        order: list[tuple[int, object]] = []  # noqa: RUF012

        def __setitem__(self, i, v):
            Recording.order.append((i, v))
            super().__setitem__(i, v)

    batch = _Batch(abs, [(i,) for i in range(10)], 5)
    batch.results = Recording(batch.results)
    batch.mark(range(5, 10))
    assert Recording.order[0] == (5, _FAILED)
    assert all(v is _SKIPPED for _, v in Recording.order[1:])


def test_a_parallel_loop_started_inside_a_task_runs_on_the_tasks_thread():
    # the executor's threads are the core budget: no second layer of threads
    from loopscale.schedule import parallel_for

    def task(n):
        seen = set()

        def body(start, stop):
            seen.add(threading.get_ident())

        parallel_for(body, n, max_workers=2, chunksize=1)
        return seen == {threading.get_ident()}, in_worker()

    with Executor(max_workers=2) as ex:
        results = list(ex.map(task, [64] * 8))
    assert all(same and inside for same, inside in results), results


@numba.njit(nogil=True)
def spin_count(n):
    x = 0.0
    for _ in range(n):
        x += 1.0
    return x


@pytest.mark.timeout(60)
def test_ctrl_c_while_waiting_on_a_long_compiled_task_is_raised_at_once():
    # result() runs a task no worker has started in the waiting thread, which in
    # the main thread would hold Ctrl-C off until the compiled task returned:
    # there only tasks known to be short are run in place
    spin_count(10)
    t0 = time.perf_counter()
    spin_count(20_000_000)
    n = int(20_000_000 * 2.5 / max(time.perf_counter() - t0, 1e-3))  # ~2.5 s
    ex = Executor(max_workers=1)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    fut = ex.submit(spin_count, n)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        fut.result()
    assert time.perf_counter() - t0 < 1.5
    timer.cancel()
    ex.shutdown(wait=True)  # the running task cannot be stopped: it finishes
    assert fut.result() == float(n)
    # a short task is still run in place once it is known to be short
    with Executor(max_workers=1) as ex:
        def where():
            return threading.get_ident()

        ex.submit(where).result()
        assert ex.submit(where).result() == threading.get_ident()


@pytest.mark.timeout(60)
def test_leaving_the_with_block_by_ctrl_c_cancels_the_tasks_not_started():
    started = []

    def task(k):
        started.append(k)
        time.sleep(0.05)

    with pytest.raises(KeyboardInterrupt):
        with Executor(max_workers=1) as ex:
            futures = [ex.submit(task, k) for k in range(100)]
            time.sleep(0.12)
            raise KeyboardInterrupt
    assert len(started) < 10
    assert sum(f.cancelled() for f in futures) > 90
