"""``Executor``: ``concurrent.futures`` on persistent threads, at a fraction of the cost.

Why ``ThreadPoolExecutor`` is slow for short tasks
--------------------------------------------------
Each ``submit`` builds a :class:`~concurrent.futures.Future` with its own
``Condition`` (a Python object around an ``RLock``), wraps it in a work item,
puts it on a queue and touches an idle-thread semaphore (another
``Condition``); each ``result()`` on a future that is not finished sleeps on
that ``Condition``, so one short task costs two thread wake-ups (the worker's,
then the caller's).  With tasks of ~10 µs that bookkeeping, all of it under the
GIL, outweighs the work, and two workers run slower than a plain loop.

What this executor does instead
-------------------------------
* **Light futures.**  The futures (:mod:`._future`) *are*
  ``concurrent.futures.Future`` instances (``wait``, ``as_completed``,
  callbacks and ``asyncio.wrap_future`` work on them), but they make their
  ``Condition`` only when a thread actually blocks on one.
* **A deque and one lock per worker.**  Work waits in a ``deque`` guarded by a
  mutex; each idle worker sleeps on its own lock (a binary semaphore) and is
  woken only when there is work for it.
* **Work stealing.**  ``result()`` on a future that no worker has started runs
  it in the waiting thread, which would otherwise sleep: ``submit`` +
  ``result`` of a short task costs no thread switch.  The limits keep
  ``ThreadPoolExecutor``'s guarantees: at most ``max_workers`` tasks run at
  once (the caller steals only into a free slot), tasks start in submission
  order (only the head of the queue is stolen), nothing is stolen under a
  ``timeout`` (the task could outlast it) or when an ``initializer`` is set (the
  caller's thread was not initialised).  The main thread steals only tasks
  whose function was seen to take less than :data:`STEAL_SECONDS`: a compiled
  task run there would hold off Ctrl-C until it returned, while a wait is cut
  short by it at once.  A *worker* that waits on another
  task's future runs that task itself, from anywhere in the queue, in its own
  slot, so nested waits do not deadlock the pool.
* **Batched ``map``.**  ``map`` queues one batch, not one future per item:
  workers claim ``chunksize`` items at a time with an atomic counter, results
  are kept per item and dropped as the iterator yields them.  A consumer that has caught up with
  the workers sleeps until about a millisecond of further work is done
  (measured as it goes) instead of waking for every microsecond item; a
  consumer of slow items still gets each as soon as it is ready.

Scheduling state
----------------
A :class:`_Core` holds what the worker threads share (they hold the core, not
the :class:`Executor`, so an executor that is dropped without ``shutdown`` is
collected and its threads exit).  Under ``core.mutex``: ``tasks`` (queued
futures and batches), ``idle`` (wake locks of sleeping workers), ``running``
(tasks running in workers or stealing callers, never above ``max_workers``),
``closing`` and ``broken``.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures as cf
from typing import Any, TypeVar

from .. import config
from ..errors import BrokenThreadPool
from ._budget import BLAS_BUDGET, init_worker, serialize_parallel_calls
from ._chunking import validate_chunksize, validate_max_workers
from ._future import LOGGER, Future
from ._pool import _LOCAL as _REGION

__all__ = ["Executor"]

T = TypeVar("T")

#: ``_LOCAL.core`` is the core whose worker the current thread is.
_LOCAL = threading.local()


#: The main thread steals a task (runs it itself in ``result()``) only when the
#: task's function is known to take less than this: a compiled task run there
#: would hold off Ctrl-C until it returned, while waiting is interruptible.
STEAL_SECONDS = 0.1
#: Seconds a task of each function took lately (the longest of the last few
#: halving as it ages), kept to :data:`_TASK_KEYS` functions.
_TASK_SECONDS: dict[Any, float] = {}
_TASK_KEYS = 4096
_MAIN_IDENT = threading.main_thread().ident


def _task_key(fn: Any) -> Any:
    """What tasks of the same function share: its code, else the callable itself."""
    code = getattr(fn, "__code__", None)
    if code is None:
        inner = getattr(fn, "py_func", None) or getattr(fn, "func", None)
        code = getattr(inner, "__code__", None)
    if code is not None:
        return code
    try:
        hash(fn)
    except TypeError:
        return type(fn)
    return fn


def _run_future(fut: Future) -> None:
    """Run a queued future's task and finish the future."""
    if not fut.set_running_or_notify_cancel():
        return
    fut._core = None
    fn, args, kwargs = fut._call  # type: ignore[misc]
    fut._call = None
    t0 = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - kept on the future, as CPython does
        _took(fn, t0)
        fn = args = kwargs = None  # type: ignore[assignment]  # the traceback keeps this frame
        fut.set_exception(exc)
    else:
        _took(fn, t0)
        fn = args = kwargs = None  # type: ignore[assignment]
        fut.set_result(result)
    fut = None  # type: ignore[assignment]


def _without_collectives(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """*fn* run as the task of ``distribute.map`` that submitted it: ``auto`` never
    picks a collective level (see :func:`config.collectives_allowed`)."""
    with config.without_collectives():
        return fn(*args, **kwargs)


def _took(fn: Any, t0: float) -> None:
    seconds = time.perf_counter() - t0
    key = _task_key(fn)
    before = _TASK_SECONDS.get(key)
    if before is None and len(_TASK_SECONDS) >= _TASK_KEYS:
        _TASK_SECONDS.clear()
    _TASK_SECONDS[key] = seconds if before is None else max(seconds, before / 2)


def _short_task(fut: Future) -> bool:
    """Whether *fut*'s task is known to be short enough for the main thread to run."""
    call = fut._call
    if call is None:
        return True
    seconds = _TASK_SECONDS.get(_task_key(call[0]))
    return seconds is not None and seconds < STEAL_SECONDS


#: Markers in ``_Batch.results``: not run yet; raised (see ``errors``); never run.
_PENDING, _FAILED, _SKIPPED = object(), object(), object()
#: ``map``'s consumer, when it has caught up with the workers, sleeps until
#: about this much more work is done, rather than waking for every item.
_WAKE_LATENCY = 1e-3


class _Batch:
    """The items of one ``map`` call, claimed ``chunksize`` at a time.

    Chunk *k* holds items ``[k * chunksize, (k + 1) * chunksize)``.  Chunks are
    claimed in increasing order through an atomic counter (one C call, no
    lock); a worker that takes the batch keeps its slot and claims chunk after
    chunk until none is left.  Each item's result replaces ``_PENDING`` in
    ``results``; an item that raises leaves ``_FAILED`` (its exception in
    ``errors``) and the rest of its chunk ``_SKIPPED``, as
    ``ProcessPoolExecutor`` does not run them either.  The worker that
    finishes item ``waiting`` wakes the consumer.
    """

    __slots__ = ("fn", "chunks", "chunksize", "n", "nchunks", "counter", "exhausted",
                 "results", "errors", "stop", "cv", "waiting", "claims")

    def __init__(self, fn: Callable[..., Any], items: list[tuple[Any, ...]],
                 chunksize: int) -> None:
        self.fn = fn
        self.chunksize = chunksize
        self.n = len(items)
        self.chunks: list[list[tuple[Any, ...]] | None] = [
            items[i:i + chunksize] for i in range(0, self.n, chunksize)]
        self.nchunks = len(self.chunks)
        self.counter = itertools.count().__next__
        self.exhausted = False
        self.results: list[Any] = [_PENDING] * self.n
        self.errors: dict[int, BaseException] = {}
        self.stop = False
        self.cv = threading.Condition(threading.Lock())
        self.waiting = -1
        self.claims = threading.Lock()  # a claim and close() are atomic to each other

    def claim(self) -> int | None:
        """The next chunk to run, or None when there is none."""
        with self.claims:
            if self.stop:
                self.exhausted = True
                return None
            k = self.counter()
            if k >= self.nchunks:
                self.exhausted = True
                return None
            return k

    def work(self, k: int | None) -> None:
        """Run chunk *k*, then every chunk still unclaimed."""
        while k is not None:
            self.run(k)
            k = self.claim()

    def run(self, k: int) -> None:
        """Run the items of chunk *k* (a claimed chunk always runs to its end)."""
        chunk = self.chunks[k] or ()
        self.chunks[k] = None
        fn, results = self.fn, self.results
        i = start = k * self.chunksize
        try:
            for args in chunk:
                results[i] = fn(*args)
                if i == self.waiting:
                    self.wake()
                i += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
            self.errors[i] = exc
            self.mark(range(i, start + len(chunk)))
        del chunk

    def wake(self) -> None:
        with self.cv:
            self.cv.notify()

    def mark(self, items: range) -> None:
        """Items that will not run: the first failed (``errors``), the rest skipped."""
        results = self.results
        results[items[0]] = _FAILED  # first: a consumer reading without the lock
        for j in items[1:]:          # must meet the failure before any skipped item
            results[j] = _SKIPPED
        if items[0] <= self.waiting < items[-1] + 1:
            self.wake()

    def close(self) -> range:
        """Stop claims; return the chunks that were not claimed (and never will be)."""
        with self.claims:
            self.stop = True
            self.exhausted = True
            unclaimed = range(min(self.counter(), self.nchunks), self.nchunks)
        for k in unclaimed:
            self.chunks[k] = None
        return unclaimed

    def fail(self, unclaimed: range, make_error: Callable[[], BaseException]) -> None:
        """Fail the items of the *unclaimed* chunks with ``make_error()``."""
        size = self.chunksize
        for k in unclaimed:
            items = range(k * size, min(self.n, (k + 1) * size))
            self.errors[items[0]] = make_error()
            self.mark(items)


def _iterate(core: _Core, batch: _Batch, end_time: float | None) -> Iterator[Any]:
    """Yield a batch's results in order, then forget them.

    The consumer does not run items itself (it would race the workers it just
    woke, and cost both a wake-up per item), unless it is a worker of the same
    executor, where waiting could deadlock.
    """
    try:
        results, errors = batch.results, batch.errors
        lag = 1  # items to let finish before the consumer wakes (adapted to their speed)
        for i in range(batch.n):
            value = results[i]
            if value is _PENDING and end_time is None and getattr(_LOCAL, "core", None) is core:
                core.run_here(batch)  # a worker consuming a map: no deadlock
                value = results[i]
            while value is _PENDING:
                lag = _wait_item(batch, i, lag, end_time)
                value = results[i]
            if value is _FAILED:
                exc = errors.pop(i)
                try:
                    raise exc
                finally:
                    exc = None  # type: ignore[assignment]
            results[i] = None
            yield value
    finally:
        core.discard(batch)


def _wait_item(batch: _Batch, i: int, lag: int, end_time: float | None) -> int:
    """Sleep until item *i* (and, if it is pending, item ``i + lag - 1``) is done.

    Returns the lag for the next wait: the items done in about
    :data:`_WAKE_LATENCY`, measured on this one, so that a consumer of
    microsecond tasks wakes once per many items, and one of slow tasks for
    each.  With a timeout the consumer waits for item *i* only.
    """
    results = batch.results
    target = i if end_time is not None else min(i + lag, batch.n) - 1
    if results[target] is not _PENDING:
        target = i
    t0 = time.monotonic()
    with batch.cv:
        batch.waiting = target
        try:
            while results[target] is _PENDING:
                if end_time is None:
                    if target != i:
                        # wait for the batch of items only a little while: item i
                        # itself, once ready, must not wait for the slow ones after it
                        batch.cv.wait(_WAKE_LATENCY)
                        if results[i] is not _PENDING:
                            break
                        target = batch.waiting = i
                        continue
                    batch.cv.wait()
                    continue
                remaining = end_time - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                batch.cv.wait(remaining)
        finally:
            batch.waiting = -1
    per_item = (time.monotonic() - t0) / (target - i + 1)
    return max(1, min(4096, int(_WAKE_LATENCY / per_item) if per_item > 0 else 4096))


class _Core:
    """What an executor's worker threads share (see the module docstring)."""

    def __init__(self, max_workers: int, name: str, initializer: Callable[..., object] | None,
                 initargs: tuple[Any, ...]) -> None:
        self.max_workers = max_workers
        self.name = name
        self.initializer = initializer
        self.initargs = initargs
        self.steal = initializer is None
        self.mutex = threading.Lock()
        self.tasks: deque[Future | _Batch] = deque()
        self.idle: list[Any] = []
        self.running = 0
        self.threads: list[threading.Thread] = []
        self.closing = False
        self.broken: str | None = None
        #: threads running a stolen task now (ident -> count), and a condition
        #: on the mutex that ``close(wait=True)`` waits on until they are done
        self.stealers: dict[int, int] = {}
        self.quiet = threading.Condition(self.mutex)
        #: whether this executor is counted in the process's BLAS budget (it is
        #: from its first task to its shutdown, with more than one worker)
        self.budget_held = False
        self.budget_share: int | None = None

    # -- the thread budget ----------------------------------------------------
    def budget_locked(self) -> None:
        """Count this executor in the BLAS budget as it gets work (mutex held).

        It stays counted until :meth:`close`: OpenBLAS ignores a worker thread
        raising its size again after the submitting thread lowered it, so the
        sizes are restored by the thread that shuts the executor down (the one
        that made it, as a rule), not by the worker that finishes last.
        """
        if not self.budget_held and self.max_workers > 1:
            self.budget_held = True
            self.budget_share = BLAS_BUDGET.enter(self.max_workers)

    def release_budget(self) -> None:
        with self.mutex:
            held, self.budget_held = self.budget_held, False
        if held:
            BLAS_BUDGET.exit(self.budget_share)

    # -- queueing ----------------------------------------------------------
    def push(self, item: Future | _Batch, want: int = 1) -> None:
        """Queue *item*; wake (or start) up to *want* workers for it."""
        wake: list[Any] = []
        start: list[threading.Thread] = []
        with self.mutex:
            if self.broken is not None:
                raise BrokenThreadPool(self.broken)
            if self.closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _EXITING:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            self.tasks.append(item)
            self.budget_locked()
            free = self.max_workers - self.running
            while want > 0 and self.idle and free > 0:
                wake.append(self.idle.pop())
                want -= 1
                free -= 1
            if not self.idle:
                while want > 0 and len(self.threads) < self.max_workers:
                    wake_lock = threading.Lock()
                    wake_lock.acquire()
                    t = threading.Thread(target=_work, args=(self, wake_lock), daemon=True,
                                         name=f"{self.name}_{len(self.threads)}")
                    self.threads.append(t)
                    start.append(t)
                    want -= 1
        for w in wake:
            w.release()
        if start and self.max_workers > 1:
            serialize_parallel_calls()  # before a second thread can launch
        for t in start:
            t.start()

    def take_locked(self) -> tuple[Any, int]:
        """The next job for a worker (caller holds the mutex): ``(item, chunk)``."""
        tasks = self.tasks
        while tasks and self.running < self.max_workers:
            item = tasks[0]
            if type(item) is _Batch:
                k = item.claim()
                if k is None:
                    tasks.popleft()
                    continue
                self.running += 1
                return item, k
            tasks.popleft()
            self.running += 1
            return item, -1
        return None, -1

    def wake_locked(self) -> Any:
        """An idle worker's wake lock to release, if one should wake (mutex held)."""
        if self.idle and (self.closing or self.broken is not None
                          or (self.tasks and self.running < self.max_workers)):
            return self.idle.pop()
        return None

    def run_here(self, item: Future | _Batch) -> None:
        """Run *item* (a future, or the unclaimed chunks of a batch) in this thread.

        See the module docstring for when this is allowed.
        """
        inside = getattr(_LOCAL, "core", None) is self
        if not (self.steal or inside):
            return
        with self.mutex:
            tasks = self.tasks
            if not tasks or self.broken is not None:
                return
            if tasks[0] is not item:
                if not inside or item not in tasks:
                    return
            elif not inside and self.running >= self.max_workers:
                return
            if type(item) is _Batch:
                k = item.claim()  # chunk k if unclaimed: the ones before it are done
                if k is None:
                    return
            else:
                if not inside and threading.get_ident() == _MAIN_IDENT \
                        and not _short_task(item):
                    return  # wait instead, where Ctrl-C can reach the caller
                tasks.remove(item)  # the head, save for a worker's nested wait
            me = threading.get_ident()
            if not inside:
                self.running += 1
                self.stealers[me] = self.stealers.get(me, 0) + 1
        depth = getattr(_REGION, "depth", 0)
        _REGION.depth = depth + 1  # the caller runs a task: it is a worker meanwhile
        # ... of this executor too: a task it runs that waits on another task's
        # future runs that one in this slot, as a worker would (it held a slot
        # that no worker could take while it waited)
        was = getattr(_LOCAL, "core", None)
        _LOCAL.core = self
        try:
            if isinstance(item, _Batch):
                item.work(k)
            elif inside:
                _run_future(item)
            else:
                # in a context of its own, as in a worker thread: what the task
                # sets in context variables (decimal's context, NumPy's errstate,
                # ContextVar.set) does not change the waiting caller's
                contextvars.Context().run(_run_future, item)
        finally:
            _LOCAL.core = was
            _REGION.depth = depth
            if not inside:
                with self.mutex:
                    self.running -= 1
                    left = self.stealers[me] - 1
                    if left:
                        self.stealers[me] = left
                    else:
                        del self.stealers[me]
                        if self.closing:
                            self.quiet.notify_all()
                    wake = self.wake_locked()
                if wake is not None:
                    wake.release()

    def discard(self, batch: _Batch) -> None:
        """Forget a batch whose consumer stopped: unclaimed chunks never run."""
        with self.mutex:
            batch.close()
            try:
                self.tasks.remove(batch)
            except ValueError:
                pass

    # -- ending ----------------------------------------------------------------
    def close(self, wait: bool = True, cancel_futures: bool = False) -> None:
        with self.mutex:
            self.closing = True
            drained = self.drain_locked() if cancel_futures else []
            wakes, self.idle = self.idle, []
            threads = list(self.threads)
        for w in wakes:
            w.release()
        for item, unclaimed in drained:
            if type(item) is _Batch:
                item.fail(unclaimed, cf.CancelledError)
            else:
                item.cancel()
        if wait:
            me = threading.current_thread()
            for t in threads:
                if t is not me and t.ident is not None:
                    t.join()
            # and for the tasks other threads are running in their result()
            with self.mutex:
                while any(ident != me.ident for ident in self.stealers):
                    self.quiet.wait()
        self.release_budget()

    def break_(self, message: str) -> None:
        """An initializer failed: fail the queued work; the executor is unusable."""
        with self.mutex:
            if self.broken is None:
                self.broken = message
            drained = self.drain_locked()
            wakes, self.idle = self.idle, []
        for w in wakes:
            w.release()
        for item, unclaimed in drained:
            if type(item) is _Batch:
                item.fail(unclaimed, lambda: BrokenThreadPool(message))
            elif item.set_running_or_notify_cancel():
                item._call = None
                item.set_exception(BrokenThreadPool(message))

    def drain_locked(self) -> list[tuple[Any, range]]:
        """Empty the queue (mutex held): each item with its batch's unclaimed chunks."""
        drained = [(item, item.close() if type(item) is _Batch else range(0))
                   for item in self.tasks]
        self.tasks.clear()
        return drained

    def reset_after_fork(self) -> None:
        # The threads did not survive fork; the parent's queued work is not ours.
        self.mutex = threading.Lock()
        self.tasks = deque()
        self.idle = []
        self.running = 0
        self.threads = []
        self.budget_held = False  # (the budget resets itself in a forked child)
        self.stealers = {}
        self.quiet = threading.Condition(self.mutex)


def _work(core: _Core, wake: Any) -> None:
    """A worker thread: run queued jobs; sleep on *wake* when there are none."""
    _LOCAL.core = core
    # a task is a share of the cores already: a parallel loop it starts (an
    # accelerated call, parallel_for) runs on this thread, as inside a region
    _REGION.depth = getattr(_REGION, "depth", 0) + 1
    init_worker(core.max_workers)  # this thread's share of the cores for Numba's threads
    if core.initializer is not None:
        try:
            core.initializer(*core.initargs)
        except BaseException:
            LOGGER.critical("Exception in initializer:", exc_info=True)
            core.break_("A thread initializer failed, the executor is not usable anymore")
            return
    mutex = core.mutex
    busy = False
    while True:
        with mutex:
            if busy:
                core.running -= 1
                busy = False
            item, k = core.take_locked()
            if item is None:
                if (core.closing and not core.tasks) or core.broken is not None:
                    other = core.wake_locked()  # pass the word on, then leave
                    if other is not None:
                        other.release()
                    return
                idle = core.idle
                idle.append(wake)
        if item is None:
            wake.acquire()
            continue
        busy = True
        if k >= 0:
            item.work(k)
        else:
            _run_future(item)
        item = None


_EXITING = False
_CORES: weakref.WeakSet[_Core] = weakref.WeakSet()


class Executor(cf.ThreadPoolExecutor):
    """A :class:`concurrent.futures.Executor` on persistent threads, with low overhead per task.

    A drop-in replacement for :class:`~concurrent.futures.ThreadPoolExecutor`:
    the same constructor arguments and methods, its futures are
    :class:`concurrent.futures.Future` instances, and it is a
    ``ThreadPoolExecutor`` to ``isinstance`` (so that, say,
    ``asyncio``'s ``loop.set_default_executor`` takes it; it shares none of
    that class's machinery).  It costs less per task: a
    ``submit`` + ``result`` round trip is a fraction of ``ThreadPoolExecutor``'s,
    and ``map`` hands out work in chunks of ``chunksize`` items.  Suited to
    tasks that release the GIL (compiled ``nogil`` code, NumPy, I/O); for
    pure-Python functions that hold the GIL use :class:`ProcessExecutor`.
    With more than one worker, BLAS pools are limited to each worker's share
    of the cores from the first task until :meth:`shutdown`, so that tasks
    calling NumPy's BLAS do not oversubscribe the machine.

    Differences, all within ``concurrent.futures``' contract: ``result()``
    (without a timeout) on a future that no worker has started runs its task in
    the waiting thread, when that keeps at most ``max_workers`` tasks running
    and starts the tasks in submission order; with an *initializer* it never
    does.  Such a task runs in a fresh :mod:`contextvars` context, as in a
    worker thread (what it sets in ``decimal``'s context, NumPy's error state
    or a ``ContextVar`` stays with it), but ``threading.current_thread()`` is
    the caller's.  ``shutdown(wait=True)`` waits for these tasks too.  A task
    that waits on another task's future runs it itself rather than
    deadlocking the pool.

    Parameters
    ----------
    max_workers : int, optional
        Most tasks running at once (default: ``LOOPSCALE_MAX_WORKERS``, else
        the cores this process may use).  Threads start on demand.
    thread_name_prefix : str, optional
        Prefix of the worker threads' names.
    initializer : callable, optional
        Called as ``initializer(*initargs)`` at the start of each worker
        thread.  If it raises, pending and later tasks fail with
        :class:`~loopscale.errors.BrokenThreadPool`.
    initargs : tuple, optional
        Arguments for *initializer*.

    Raises
    ------
    TypeError
        *max_workers* is not an integer, or *initializer* is not callable.
    ValueError
        *max_workers* is not greater than 0.

    See Also
    --------
    ProcessExecutor : the same interface on worker processes.
    parallel_for : run one loop's chunks on the shared worker pool.

    Examples
    --------
    >>> from loopscale.schedule import Executor
    >>> with Executor(max_workers=2) as ex:
    ...     squares = list(ex.map(pow, range(5), [2] * 5))
    ...     total = ex.submit(sum, squares).result()
    >>> squares, total
    ([0, 1, 4, 9, 16], 30)
    """

    _counter = itertools.count().__next__

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "",
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = ()) -> None:
        if max_workers is None:
            max_workers = config.max_workers_default()
        else:
            max_workers = validate_max_workers(max_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be a callable; got {initializer!r}.")
        name = thread_name_prefix or f"loopscale-Executor-{self._counter()}"
        self._max_workers = max_workers
        self._core = _Core(max_workers, name, initializer, tuple(initargs))
        _CORES.add(self._core)
        # Dropped without shutdown: let the threads finish the queue and exit.
        weakref.finalize(self, self._core.close, False).atexit = False

    @property
    def max_workers(self) -> int:
        """The most tasks that run at once."""
        return self._max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return its :class:`Future`.

        Raises
        ------
        RuntimeError
            The executor was shut down.
        loopscale.errors.BrokenThreadPool
            A worker's initializer failed.

        Examples
        --------
        >>> from loopscale.schedule import Executor
        >>> with Executor(max_workers=2) as ex:
        ...     fut = ex.submit(divmod, 17, 5)
        ...     fut.result()
        (3, 2)
        """
        if not config.collectives_allowed():  # inside a task of distribute.map
            fn = functools.partial(_without_collectives, fn)
        fut = Future()
        fut._call = (fn, args, kwargs)
        fut._core = self._core
        self._core.push(fut)
        return fut

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[T]:
        """Like ``map(fn, *iterables)``, with the calls run on the workers.

        The iterables are read at once and the calls start before the first
        result is asked for.  Results come back in order; an exception raised
        by a call is raised when its result is reached.

        Parameters
        ----------
        fn : callable
            Called as ``fn(*items)`` with one item from each iterable.
        *iterables : iterable
            As for the builtin :func:`map` (the shortest one ends it).
        timeout : float, optional
            Seconds, from this call, after which reaching a result that is not
            ready raises :class:`TimeoutError` (and cancels what has not started).
        chunksize : int, optional
            Items a worker takes at a time (default 1).  Larger chunks cut the
            overhead per item when calls are short.

        Returns
        -------
        iterator
            The results, in the order of the inputs.

        Examples
        --------
        >>> from loopscale.schedule import Executor
        >>> with Executor(max_workers=2) as ex:
        ...     list(ex.map(abs, [-3, 1, -4, 1, -5], chunksize=2))
        [3, 1, 4, 1, 5]
        """
        size = validate_chunksize(chunksize) or 1
        end_time = None if timeout is None else time.monotonic() + timeout
        items = list(zip(*iterables, strict=False))
        if not items:
            return iter(())
        if not config.collectives_allowed():  # inside a task of distribute.map
            fn = functools.partial(_without_collectives, fn)
        batch = _Batch(fn, items, size)
        self._core.push(batch, want=batch.nchunks)
        return _iterate(self._core, batch, end_time)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with *wait*, return when the queued work is done.

        Parameters
        ----------
        wait : bool, optional
            Wait for the queued and running tasks, and for the threads to exit.
        cancel_futures : bool, optional
            Cancel the tasks that have not started.
        """
        self._core.close(wait, cancel_futures)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        """Shut down, waiting for the work; after Ctrl-C, for the running tasks only.

        As ``ThreadPoolExecutor``, leaving the ``with`` block waits for the
        tasks, so that they are done when the block is.  When the block is
        left by a ``KeyboardInterrupt`` the tasks that have not started are
        cancelled first: only the running ones (which cannot be stopped) are
        waited for.
        """
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.shutdown(wait=True, cancel_futures=interrupted)


def _close_all_at_exit() -> None:
    global _EXITING
    _EXITING = True
    for core in list(_CORES):
        core.close(wait=True)


def _reset_all_after_fork() -> None:
    for core in list(_CORES):
        core.reset_after_fork()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
