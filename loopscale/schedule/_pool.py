"""The worker pool: persistent threads that run chunks of parallel regions.

A *parallel region* is one call ``fn(c0, c1, *args)`` per chunk of a list of
chunks.  The calling thread takes part as worker 0; up to ``max_workers - 1``
pool threads join it.  Workers claim chunks with an atomic counter
(``itertools.count``: one C call under the GIL), so ``static`` plans cost one
claim per worker and ``dynamic``/``guided`` plans balance uneven work.  The
chunk functions are expected to be nogil compiled code: while one runs, the
GIL is free for the other workers to claim and start theirs.

Failure rules, as DESIGN.md promises:

* the first exception in any chunk stops the region: no new chunk starts, a
  worker in a chunk after the failure stops at its next piece, one in a
  chunk before it runs on up to the failure (so that an earlier failure is
  still met), and the caller gets an exception once, of
  the same type, naming the chunk's range, with the worker's exception (and
  its traceback) as ``__cause__`` -- of the chunks that failed, the first in
  iteration order (the one Python would have met first), whichever finished
  first;
* ``KeyboardInterrupt`` in the caller stops the region the same way and is
  re-raised once the running pieces have finished: where the chunks may be
  split (the ``threads`` level's blocks; ``parallel_for`` without a
  ``chunksize``) every worker runs a long chunk as pieces of about
  :data:`PIECE_SECONDS` and looks for the stop between them, so Ctrl-C is
  acted on within a fraction of a second however long the chunks;
* a region started from inside a worker runs serially on that worker (no
  nesting, no deadlock);
* the pool stays usable after any of these.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import relocated
from ._budget import blas_limit, guard, init_worker, prepare_numba, serialize_parallel_calls
from ._progress import track, untrack

__all__ = ["WorkerPool", "get_pool", "in_worker", "useful_workers"]

_LOCAL = threading.local()

#: Pool thread ident -> ident of the thread whose region it is working on.  A
#: sampling profiler reads it (without importing this module) to charge a pool
#: thread's time to the code that started the region.
WORKING_FOR: dict[int, int] = {}


def in_worker() -> bool:
    """Whether the current thread is running a chunk of a parallel region."""
    return getattr(_LOCAL, "depth", 0) > 0


#: A worker runs a long chunk in pieces of about this many seconds, looking
#: between pieces whether the region was stopped: a Ctrl-C, or a failure in
#: another chunk, is acted on within about this long, however long the chunks.
PIECE_SECONDS = 0.05


class _Region:
    """The shared state of one parallel region.

    ``running`` counts the *pool threads* inside a chunk (never the caller,
    whose own bookkeeping a Ctrl-C may cut short anywhere).  Once the chunks
    are exhausted or the region is stopped nothing raises it again, and the
    last pool thread to leave with ``running == 0`` sets ``done``: the caller,
    after its own share, waits only while a pool thread is still inside a
    chunk, never for a thread that has not started, so a region whose chunks
    are all short costs only the caller's own work.

    With ``split``, a chunk longer than ``piece`` items runs as consecutive
    pieces ``fn(p0, p1, *args)`` of about :data:`PIECE_SECONDS` (``piece`` is
    adapted to the measured time per item); a stopped region starts no further
    piece.  Pieces cover the chunk exactly, in order, so a kernel whose
    result does not depend on the plan (block reductions) gives the same
    answer.
    """

    __slots__ = ("fn", "chunks", "args", "claim", "n", "lock", "finished", "running", "done",
                 "stop", "exhausted", "error", "error_chunk", "owner", "split", "piece",
                 "queued", "helpers", "arrived", "woken", "queues", "first", "sample")

    def __init__(self, fn: Callable[..., Any], chunks: Sequence[tuple[int, int]],
                 args: tuple[Any, ...], split: bool = False,
                 seconds_per_item: float | None = None) -> None:
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
        self.exhausted = False
        self.error: BaseException | None = None
        self.error_chunk: tuple[int, int] | None = None
        self.owner = threading.get_ident()  # the thread that started the region
        self.split = split
        self.piece = _first_piece(seconds_per_item)
        self.queued = 0.0  # when the first helpers were asked (perf_counter)
        self.helpers = 0  # pool threads that may join
        self.arrived = 0
        self.woken = 0  # pool threads asked so far
        self.queues: Sequence[queue.SimpleQueue[Any]] = ()
        self.first = 0  # the queue of the first helper
        self.sample = False  # whether arrivals measure the wake time

    def wake(self, count: int) -> None:
        """Ask up to *count* more pool threads to join, while chunks are left.

        Helpers are woken on demand: the caller wakes :data:`FANOUT`, and each
        helper that arrives wakes as many more, so a region whose chunks are
        all taken before the helpers arrive wakes no more of them (each wake-up
        costs the woken thread a turn with the GIL, after the region too).
        """
        with self.lock:
            if self.stop or self.exhausted or self.woken >= self.helpers:
                return
            first = self.woken
            self.woken = last = min(self.helpers, first + count)
        queues = self.queues
        for h in range(first, last):
            queues[(self.first + h) % len(queues)].put(self)

    def work(self) -> None:
        """Claim and run chunks until none is left or the region stops.

        In the caller's thread an exception that is not an ``Exception``
        (KeyboardInterrupt, SystemExit) propagates: :meth:`WorkerPool.run`
        stops the region and re-raises it.
        """
        chunks, claim, n, lock = self.chunks, self.claim, self.n, self.lock
        _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
        me = threading.get_ident()
        helper = me != self.owner
        if helper:
            WORKING_FOR[me] = self.owner
            _note_arrival(self)
            self.wake(FANOUT)
        try:
            while True:
                with lock:
                    if self.stop:
                        return
                    k = claim()
                    if k >= n:
                        self.exhausted = True
                        return
                    if helper:
                        self.running += 1
                c0, c1 = chunks[k]
                if self.split and c1 - c0 > self.piece:
                    if not self._pieces(c0, c1, helper):
                        return
                elif not self._call(c0, c1, helper):
                    return
                with lock:
                    self.finished += 1
                    if helper:
                        self.running -= 1
        finally:
            _LOCAL.depth -= 1
            if helper:
                WORKING_FOR.pop(me, None)
                with lock:
                    if self.running == 0:
                        self.done.set()

    def _pieces(self, c0: int, c1: int, helper: bool) -> bool:
        """Run chunk ``[c0, c1)`` as pieces of about :data:`PIECE_SECONDS`;
        False when a piece failed (recorded as the region's error)."""
        clock = time.perf_counter
        pos = c0
        while pos < c1:
            if self.stop:
                # interrupted: stop now; failed: run on only up to the failure,
                # so that an earlier one (the error Python would meet first) is
                # still found, as when chunks ran whole
                failed_at = self.error_chunk if self.error is not None else None
                if failed_at is None or pos >= failed_at[0]:
                    break
            size = self.piece
            stop = min(c1, pos + size)
            t0 = clock()
            if not self._call(pos, stop, helper):
                return False
            took = clock() - t0
            if stop - pos == size:  # a whole piece: adapt the size to its time
                grow = 4.0 if took <= PIECE_SECONDS / 4 else PIECE_SECONDS / took
                self.piece = max(1, int(size * grow))
            pos = stop
        return True

    def _call(self, c0: int, c1: int, helper: bool) -> bool:
        """``fn(c0, c1, *args)``; False when it failed (recorded as the region's
        error).  In the caller's thread a KeyboardInterrupt or SystemExit
        propagates instead."""
        try:
            self.fn(c0, c1, *self.args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            if not helper and not isinstance(exc, Exception):
                raise
            self._failed(exc, (c0, c1), helper)
            return False
        return True

    def _failed(self, exc: BaseException, where: tuple[int, int], helper: bool) -> None:
        with self.lock:
            # of the chunks that fail before the region stops, the first in
            # iteration order is reported (the one Python would have met
            # first), not the first to finish
            if self.error is None or where[0] < self.error_chunk[0]:  # type: ignore[index]
                self.error = exc
                self.error_chunk = where
            self.stop = True
            if helper:
                self.running -= 1

    def halt(self) -> None:
        """Start no new chunk or piece."""
        with self.lock:
            self.stop = True


#: Seconds it takes to bring one more pool thread into a region, measured
#: (None until a region with helpers has run).  A woken thread must take the
#: GIL to leave its queue and reach the compiled chunk, so helpers arrive one
#: after another: on a 16-core VM the last of 15 arrived about 375 µs after
#: the region started (25 µs each); on 2 cores about 80 µs.
_WAKE: list[float | None] = [None]


#: Helpers each arriving helper (and the caller) wakes: see :meth:`_Region.wake`.
FANOUT = 2


def _note_arrival(region: _Region) -> None:
    """Record how long this helper took to arrive, per helper arrived so far."""
    if not region.sample:
        return
    with region.lock:
        region.arrived += 1
        rank = region.arrived
    sample = (time.perf_counter() - region.queued) / rank
    old = _WAKE[0]
    _WAKE[0] = sample if old is None else 0.9 * old + 0.1 * sample


def useful_workers(workers: int, seconds: float | None) -> int:
    """How many of *workers* to use for a region of about *seconds* of work.

    Helpers arrive one after another (:data:`_WAKE` apart), so the ``k``-th
    starts ``k`` wake times late: the region ends soonest with about
    ``sqrt(2 * seconds / wake)`` helpers.  Never fewer than two workers (the
    ``auto`` level decides alone whether a loop runs serially), never more
    than asked; all of them while nothing is measured yet.
    """
    wake = _WAKE[0]
    if workers <= 2 or not seconds or not wake or wake <= 0:
        return workers
    helpers = int(math.sqrt(2.0 * seconds / wake))
    return max(2, min(workers, helpers + 1))


def _first_piece(seconds_per_item: float | None) -> int:
    """Items in a first piece: :data:`PIECE_SECONDS` worth at the measured cost,
    or one (growing fourfold a piece) when the cost is not known yet."""
    if seconds_per_item is None or seconds_per_item <= 0:
        return 1
    return max(1, int(PIECE_SECONDS / seconds_per_item))


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

    def _ensure(self, helpers: int) -> bool:
        """Start pool threads up to *helpers*; whether any was started."""
        if len(self._threads) >= helpers:
            return False
        prepare_numba()
        serialize_parallel_calls()  # before a second thread can launch
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
        return True

    @property
    def threads(self) -> int:
        """Pool threads started so far (the caller is not counted)."""
        return len(self._threads)

    def run(self, fn: Callable[..., Any], chunks: Sequence[tuple[int, int]],
            args: tuple[Any, ...] = (), workers: int | None = None,
            describe: Callable[[int, int], str] | None = None,
            progress: bool | None = False, label: str = "loopscale",
            blas: bool = False, split: bool = False,
            seconds_per_item: float | None = None) -> None:
        """Run ``fn(c0, c1, *args)`` for every chunk, on up to *workers* threads.

        Raises the first chunk's exception (see the module docstring).
        *progress* is as in :mod:`._progress` (False by default here).  *blas*:
        the chunks call BLAS, so BLAS/OpenMP pools are limited to each
        worker's share of the cores while the region runs.  *split*: a chunk
        may run as several consecutive calls over sub-ranges of about
        :data:`PIECE_SECONDS` each (*seconds_per_item*, when known, sizes the
        first), so that Ctrl-C and a failure elsewhere stop the region
        promptly however long the chunks.
        """
        n = len(chunks)
        if n == 0:
            return
        workers = min(workers or self.max_workers, self.max_workers, n)
        fn = guard(fn)
        if workers <= 1 or in_worker():
            _run_serially(fn, chunks, args, describe, progress, label, split,
                          seconds_per_item)
            return
        region = _Region(fn, chunks, args, split, seconds_per_item)
        tracker = track(label, lambda: region.finished, n, progress)
        helpers = workers - 1
        fresh = self._ensure(helpers)
        budget = blas_limit(workers) if blas else None
        if budget is not None:
            budget.__enter__()
        region.first = next(self._rr)
        region.queues = self._queues
        region.helpers = helpers
        region.sample = not fresh  # new threads' start is no wake time
        region.queued = time.perf_counter()
        region.wake(FANOUT)
        try:
            region.work()
            _wait_helpers(region)
        except BaseException:
            # KeyboardInterrupt (or another signal's exception) in the caller:
            # start no new chunk or piece, let the running pieces finish, re-raise.
            region.halt()
            _wait_helpers(region, quietly=True)
            raise
        finally:
            untrack(tracker)
            if budget is not None:
                budget.__exit__(None, None, None)
        _raise_error(region, describe)

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


def _run_serially(fn: Callable[..., Any], chunks: Sequence[tuple[int, int]],
                  args: tuple[Any, ...], describe: Callable[[int, int], str] | None,
                  progress: bool | None, label: str, split: bool,
                  seconds_per_item: float | None) -> None:
    """The chunks one after another in this thread (pieces as in a region)."""
    n = len(chunks)
    done = [0]
    tracker = track(label, lambda: done[0], n, progress) if n > 1 else None
    piece = _first_piece(seconds_per_item) if split else 0
    region: _Region | None = None
    try:
        for c0, c1 in chunks:
            if split and c1 - c0 > piece:
                if region is None:
                    region = _Region(fn, chunks, args, split, seconds_per_item)
                if not region._pieces(c0, c1, helper=False):
                    _raise_error(region, describe)
                piece = region.piece
            else:
                try:
                    fn(c0, c1, *args)
                except Exception as exc:
                    new = _located(exc, c0, c1, describe)
                    if new is exc:
                        raise
                    raise new from exc
            done[0] += 1
    finally:
        untrack(tracker)


def _wait_helpers(region: _Region, quietly: bool = False) -> None:
    """Wait until no pool thread is inside one of *region*'s chunks (never for
    one that has not started: it will find nothing to claim).  *quietly*: a
    second Ctrl-C meanwhile does not cut the wait short."""
    while region.running:
        try:
            region.done.wait(0.05)
        except BaseException:
            if not quietly:
                raise
            continue


def _raise_error(region: _Region, describe: Callable[[int, int], str] | None) -> None:
    """Raise the region's chunk error, if any, located (see :func:`_located`)."""
    exc = region.error
    if exc is None:
        return
    c0, c1 = region.error_chunk  # type: ignore[misc]
    region.error = None
    if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: as they are
        raise exc
    try:
        new = _located(exc, c0, c1, describe)
        if new is exc:
            raise exc
        raise new from exc
    finally:
        exc = new = None  # type: ignore[assignment]


def _located(exc: BaseException, c0: int, c1: int,
             describe: Callable[[int, int], str] | None) -> BaseException:
    """*exc* (same type, arguments and attributes) saying which chunk raised it."""
    if not isinstance(exc, Exception):
        return exc
    return relocated(exc, describe(c0, c1) if describe else f"chunk [{c0}, {c1})")


_POOL: WorkerPool | None = None
_POOLS_LOCK = threading.Lock()


def get_pool(max_workers: int) -> WorkerPool:
    """The process-wide pool, grown to at least *max_workers* workers.

    One pool serves every worker count (a region asks for its own), so a sweep
    over ``max_workers`` keeps the threads of the largest only, not of each.
    """
    global _POOL
    pool = _POOL
    if pool is None or pool.max_workers < max_workers:
        with _POOLS_LOCK:
            pool = _POOL
            if pool is None:
                pool = _POOL = WorkerPool(max_workers)
            elif pool.max_workers < max_workers:
                pool.max_workers = max_workers
    return pool


def _reset_after_fork() -> None:  # threads do not survive fork: start afresh
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
