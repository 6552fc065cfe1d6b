"""``Future``: a ``concurrent.futures.Future`` that makes its Condition on demand.

The standard future builds a ``threading.Condition`` (a Python object around
an ``RLock``) in its constructor, and takes it for every state change.  Most
futures of short tasks are never waited on while they run: their result is
ready, or the waiting thread runs the task itself, by the time anyone asks.
So this future makes its Condition only when a thread blocks on it
(``result`` or ``exception`` on an unfinished future, ``wait``,
``as_completed`` — which read the ``_condition`` attribute); until then its
state is guarded by one module-wide lock, held for a few bytecodes.

The rule that keeps that correct: a state change takes the module lock and,
if the future has a Condition by then, swaps it for the Condition (see
``_acquire``); the Condition is created under the module lock.  So a thread
that creates the Condition and then checks the state under it sees every
change made before, and every later change happens under the Condition and
notifies it — the waiters that ``wait``/``as_completed`` install included.

It subclasses :class:`concurrent.futures.Future`, so ``isinstance`` checks,
``wait``, ``as_completed``, callbacks and ``asyncio.wrap_future`` work.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent import futures as cf
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any

__all__ = ["Future"]

LOGGER = logging.getLogger("concurrent.futures")
_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})

#: Guards the state of every :class:`Future` that has no Condition yet.
_STATE_LOCK = threading.Lock()


class Future(cf.Future):  # type: ignore[type-arg]
    """A :class:`concurrent.futures.Future` that makes its Condition on demand.

    Returned by :meth:`Executor.submit`; use it exactly as a standard future.
    Calling :meth:`result` (without a timeout) on a future that no worker has
    started yet runs its task in the calling thread.
    """

    def __init__(self) -> None:
        # Future.__init__ is not called: it builds the Condition this class avoids.
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[cf.Future[Any]], object]] = []
        self._core: Any = None  # an executor core with run_here(), while queued
        self._call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        # Read by concurrent.futures.wait/as_completed (and the base class).
        cond = self._cond
        if cond is None:
            with _STATE_LOCK:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def _acquire(self) -> Any:
        """Acquire the lock that guards the state now; return it."""
        _STATE_LOCK.acquire()
        cond = self._cond
        if cond is None:
            return _STATE_LOCK
        _STATE_LOCK.release()
        cond.acquire()
        return cond

    def __repr__(self) -> str:
        state = self._state
        text = f"<{type(self).__name__} at {id(self):#x} state={state.lower()}"
        if state == FINISHED:
            if self._exception is not None:
                return f"{text} raised {type(self._exception).__name__}>"
            return f"{text} returned {type(self._result).__name__}>"
        return text + ">"

    def cancel(self) -> bool:
        """Cancel the task if it has not started; return whether it is cancelled."""
        lock = self._acquire()
        try:
            if self._state in (RUNNING, FINISHED):
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self._state = CANCELLED
            self._call = None  # drop the arguments now, not when a worker pops it
            if lock is not _STATE_LOCK:
                lock.notify_all()
        finally:
            lock.release()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def cancelled(self) -> bool:
        """Whether the future was cancelled."""
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        """Whether the task is running now."""
        return self._state == RUNNING

    def done(self) -> bool:
        """Whether the task finished or was cancelled."""
        return self._state in _DONE

    def _get_result(self) -> Any:
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # break the cycle through the traceback
        return self._result

    def _wait(self, timeout: float | None) -> None:
        """Block until done; steal the task first when that is allowed."""
        if timeout is None and self._state == PENDING:
            core = self._core
            if core is not None:
                core.run_here(self)
        if self._state in _DONE:
            return
        with self._condition:
            if self._state not in _DONE:
                self._condition.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value, waiting up to *timeout* seconds.

        Raises the task's exception (with the worker's traceback),
        :class:`~concurrent.futures.CancelledError` or :class:`TimeoutError`.
        """
        try:
            if self._state != FINISHED:
                self._wait(timeout)
            state = self._state
            if state == FINISHED:
                return self._get_result()
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                raise cf.CancelledError()
            raise TimeoutError()
        finally:
            self = None  # type: ignore[assignment]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (None if it returned), waiting up to *timeout* seconds."""
        if self._state != FINISHED:
            self._wait(timeout)
        state = self._state
        if state == FINISHED:
            return self._exception
        if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
            raise cf.CancelledError()
        raise TimeoutError()

    def add_done_callback(self, fn: Callable[[cf.Future[Any]], object]) -> None:
        """Call ``fn(future)`` when the future finishes (now, if it has)."""
        lock = self._acquire()
        try:
            if self._state not in _DONE:
                self._done_callbacks.append(fn)
                return
        finally:
            lock.release()
        try:
            fn(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the future running (True), or acknowledge its cancellation (False)."""
        lock = self._acquire()
        try:
            state = self._state
            if state == PENDING:
                self._state = RUNNING
                return True
            if state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                return False
            LOGGER.critical("Future %s in unexpected state: %s", id(self), state)
            raise RuntimeError("Future in unexpected state")
        finally:
            lock.release()

    def set_result(self, result: Any) -> None:
        """Finish the future with *result* (for executors and tests)."""
        lock = self._acquire()
        try:
            if self._state in _DONE:
                raise cf.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = FINISHED
            if lock is not _STATE_LOCK:
                for waiter in self._waiters:
                    waiter.add_result(self)
                lock.notify_all()
        finally:
            lock.release()
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]

    def set_exception(self, exception: BaseException | None) -> None:
        """Finish the future with *exception* (for executors and tests)."""
        lock = self._acquire()
        try:
            if self._state in _DONE:
                raise cf.InvalidStateError(f"{self._state}: {self!r}")
            self._exception = exception
            self._state = FINISHED
            if lock is not _STATE_LOCK:
                for waiter in self._waiters:
                    waiter.add_exception(self)
                lock.notify_all()
        finally:
            lock.release()
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]


def _reset_after_fork() -> None:  # another thread may have held it at fork
    global _STATE_LOCK
    _STATE_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
