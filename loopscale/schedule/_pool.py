"""The worker pool: persistent threads that run chunks of parallel regions.

A *parallel region* is one call ``fn(c0, c1, *args)`` per chunk of a list of
chunks.  The calling thread takes part as worker 0; up to ``max_workers - 1``
pool threads join it.  Workers claim chunks with an atomic counter
(``itertools.count``: one C call under the GIL), so ``static`` plans cost one
claim per worker and ``dynamic``/``guided`` plans balance uneven work.  The
chunk functions are expected to be nogil compiled code: while one runs, the
GIL is free for the other workers to claim and start theirs.

Failure rules, as DESIGN.md promises:

* the first exception in any chunk stops the region: no new chunk starts, the
  chunks already running finish, and the caller gets an exception once, of
  the same type, naming the chunk's range, with the worker's exception (and
  its traceback) as ``__cause__`` -- of the chunks that failed, the first in
  iteration order (the one Python would have met first), whichever finished
  first;
* ``KeyboardInterrupt`` in the caller stops the region the same way and is
  re-raised once the running chunks have finished (chunks are short);
* a region started from inside a worker runs serially on that worker (no
  nesting, no deadlock);
* the pool stays usable after any of these.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._budget import blas_limit, guard, init_worker, prepare_numba
from ._progress import track, untrack

__all__ = ["WorkerPool", "get_pool", "in_worker"]

_LOCAL = threading.local()

#: Pool thread ident -> ident of the thread whose region it is working on.  A
#: sampling profiler reads it (without importing this module) to charge a pool
#: thread's time to the code that started the region.
WORKING_FOR: dict[int, int] = {}


def in_worker() -> bool:
    """Whether the current thread is running a chunk of a parallel region."""
    return getattr(_LOCAL, "depth", 0) > 0


class _Region:
    """The shared state of one parallel region.

    The region is done when every chunk has finished (or, after a failure or
    an interrupt, when no chunk is running any more).  A pool thread that wakes
    up after that finds nothing to claim and leaves: the caller never waits for
    a thread that has not started, so a region whose chunks are all short costs
    only the caller's own work.
    """

    __slots__ = ("fn", "chunks", "args", "claim", "n", "lock", "finished", "running", "done",
                 "stop", "error", "error_chunk", "owner")

    def __init__(self, fn: Callable[..., Any], chunks: Sequence[tuple[int, int]],
                 args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.chunks = chunks
        self.args = args
        self.claim = itertools.count().__next__
        self.n = len(chunks)
        self.lock = threading.Lock()
        self.finished = 0
        self.running = 0
        self.done = threading.Event()
        self.stop = False
        self.error: BaseException | None = None
        self.error_chunk: tuple[int, int] | None = None
        self.owner = threading.get_ident()  # the thread that started the region

    def work(self) -> None:
        fn, chunks, args, claim, n, lock = (self.fn, self.chunks, self.args, self.claim,
                                            self.n, self.lock)
        _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
        me = threading.get_ident()
        if me != self.owner:
            WORKING_FOR[me] = self.owner
        try:
            while not self.stop:
                with lock:
                    k = claim()
                    if k >= n or self.stop:
                        return
                    self.running += 1
                c0, c1 = chunks[k]
                try:
                    fn(c0, c1, *args)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    with lock:
                        # of the chunks that fail before the region stops, the
                        # first in iteration order is reported (the one Python
                        # would have met first), not the first to finish
                        if self.error is None or c0 < self.error_chunk[0]:  # type: ignore[index]
                            self.error = exc
                            self.error_chunk = (c0, c1)
                        self.stop = True
                        self.running -= 1
                        if self.running == 0:
                            self.done.set()
                    return
                with lock:
                    self.running -= 1
                    self.finished += 1
                    if self.finished == n or (self.stop and self.running == 0):
                        self.done.set()
        finally:
            _LOCAL.depth -= 1
            if me != self.owner:
                WORKING_FOR.pop(me, None)

    def halt(self) -> None:
        """Start no new chunk; done once the running ones finish."""
        with self.lock:
            self.stop = True
            if self.running == 0:
                self.done.set()


def _worker_main(q: queue.SimpleQueue[Any], workers: int) -> None:
    init_worker(workers)
    while True:
        region = q.get()
        if region is None:
            return
        region.work()
        del region


class WorkerPool:
    """Persistent worker threads, started on first use.

    Parameters
    ----------
    max_workers : int
        The most workers a region uses, the caller included.
    """

    def __init__(self, max_workers: int) -> None:
        if max_workers <= 0:
            raise ValueError(f"max_workers must be greater than 0; got {max_workers!r}.")
        self.max_workers = max_workers
        self._queues: list[queue.SimpleQueue[Any]] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._rr = itertools.count()
        self._closed = False

    def _ensure(self, helpers: int) -> None:
        if len(self._threads) >= helpers:
            return
        prepare_numba()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new work after the pool was shut down")
            while len(self._threads) < helpers:
                q: queue.SimpleQueue[Any] = queue.SimpleQueue()
                t = threading.Thread(target=_worker_main, args=(q, self.max_workers),
                                     daemon=True,
                                     name=f"loopscale-worker-{len(self._threads) + 1}")
                t.start()
                self._queues.append(q)
                self._threads.append(t)

    @property
    def threads(self) -> int:
        """Pool threads started so far (the caller is not counted)."""
        return len(self._threads)

    def run(self, fn: Callable[..., Any], chunks: Sequence[tuple[int, int]],
            args: tuple[Any, ...] = (), workers: int | None = None,
            describe: Callable[[int, int], str] | None = None,
            progress: bool | None = False, label: str = "loopscale",
            blas: bool = False) -> None:
        """Run ``fn(c0, c1, *args)`` for every chunk, on up to *workers* threads.

        Raises the first chunk's exception (see the module docstring).
        *progress* is as in :mod:`._progress` (False by default here).  *blas*:
        the chunks call BLAS, so BLAS/OpenMP pools are limited to each
        worker's share of the cores while the region runs.
        """
        n = len(chunks)
        if n == 0:
            return
        workers = min(workers or self.max_workers, self.max_workers, n)
        if workers <= 1 or in_worker():
            done = [0]
            tracker = track(label, lambda: done[0], n, progress) if n > 1 else None
            try:
                for c0, c1 in chunks:
                    try:
                        fn(c0, c1, *args)
                    except Exception as exc:
                        raise _located(exc, c0, c1, describe) from exc
                    done[0] += 1
            finally:
                untrack(tracker)
            return
        helpers = workers - 1
        self._ensure(helpers)
        fn = guard(fn)
        region = _Region(fn, chunks, args)
        tracker = track(label, lambda: region.finished, n, progress)
        budget = blas_limit(workers) if blas else None
        if budget is not None:
            budget.__enter__()
        start = next(self._rr)
        queues = self._queues
        for h in range(helpers):
            queues[(start + h) % len(queues)].put(region)
        try:
            region.work()
            region.done.wait()
        except BaseException:
            # KeyboardInterrupt (or another signal's exception) in the caller:
            # stop claiming, let the running chunks finish, then re-raise.
            region.halt()
            _wait_quietly(region.done)
            raise
        finally:
            untrack(tracker)
            if budget is not None:
                budget.__exit__(None, None, None)
        if region.error is not None:
            c0, c1 = region.error_chunk  # type: ignore[misc]
            exc = region.error
            region.error = None
            raise _located(exc, c0, c1, describe) from exc

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool threads (after the regions already queued)."""
        with self._lock:
            self._closed = True
            for q in self._queues:
                q.put(None)
            threads, self._threads, self._queues = self._threads, [], []
        if wait:
            for t in threads:
                t.join()


def _wait_quietly(event: threading.Event) -> None:
    while True:
        try:
            event.wait()
            return
        except BaseException:  # a second Ctrl-C while the chunks finish: keep waiting
            continue


def _located(exc: BaseException, c0: int, c1: int,
             describe: Callable[[int, int], str] | None) -> BaseException:
    """An exception of *exc*'s type whose message names the chunk."""
    if not isinstance(exc, Exception):
        return exc
    where = describe(c0, c1) if describe else f"chunk [{c0}, {c1})"
    msg = f"{exc} (raised in {where})"
    try:
        new = type(exc)(msg)
    except Exception:
        from ..errors import WorkerError

        new = WorkerError(f"{type(exc).__name__}: {msg}")
    return new


_POOLS: dict[int, WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(max_workers: int) -> WorkerPool:
    """The process-wide pool for *max_workers* workers (created on first use)."""
    pool = _POOLS.get(max_workers)
    if pool is None:
        with _POOLS_LOCK:
            pool = _POOLS.get(max_workers)
            if pool is None:
                pool = _POOLS[max_workers] = WorkerPool(max_workers)
    return pool


def _reset_after_fork() -> None:  # threads do not survive fork: start afresh
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
