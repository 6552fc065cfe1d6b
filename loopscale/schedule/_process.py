"""``ProcessExecutor``: the Executor interface on worker processes, arrays in shared memory.

For pure-Python functions that hold the GIL, threads do not help: this is the
``concurrent.futures`` interface on a pool of worker processes, for users of
``multiprocessing.Pool``, ``ProcessPoolExecutor`` and joblib.

Arrays travel through shared memory
-----------------------------------
Tasks and results are pickled by :mod:`._sharedmem`: NumPy arrays of at
least ``max_nbytes`` bytes are written once into ``/dev/shm`` and mapped by
the receiver — read-only (``mmap_mode="r"``) or copy-on-write (``"c"``) for
arguments, writable for results — as joblib memory-maps them.  Arrays made
by :meth:`ProcessExecutor.share` are passed by reference and tasks can write
into them.  The segments of a task's arguments are removed when its reply
arrives, result segments as soon as the parent has mapped them, and every
file with the executor's prefix at shutdown (which also runs at interpreter
exit and when the executor is collected), so nothing is left in ``/dev/shm``,
even after a worker crash.

Processes
---------
Workers are started with the ``forkserver`` context (``spawn`` where there is
none): ``fork`` after threads exist (the scheduler's pool starts threads) is
unsafe.  Each worker has its own pipe and runs one task at a time.  One
manager thread per executor sends queued tasks to idle workers, receives
replies and watches the process sentinels.  A function (a module-level
function, a builtin, a Numba dispatcher) is pickled once and sent to a
worker once; later tasks name it by a number, so a chunk of tiny tasks does
not pay for pickling a Numba dispatcher (about 40 µs) every time.  While a
worker runs a task of a function whose tasks take less than
:data:`PREFETCH_SECONDS`, the next task is already sent to it, so it does not
wait a round trip through the manager between tasks; longer tasks go only
to idle workers, so that one slow task never holds back another.  A worker
that dies (a crash, ``os._exit``, the OOM killer) breaks the executor, and the
futures of every running and queued task fail with
:class:`~loopscale.errors.BrokenProcessPool` at once (a
``concurrent.futures.process.BrokenProcessPool`` and a
:class:`~loopscale.errors.WorkerError`), as ``ProcessPoolExecutor`` does.
Workers ignore ``SIGINT``: Ctrl-C interrupts the caller's wait, not the pool.
Exceptions raised by a task are re-raised in the caller with the worker's
formatted traceback as ``__cause__``.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures as cf
from typing import Any, TypeVar

import numpy as np

from .. import config
from ..errors import BrokenProcessPool
from . import _sharedmem as shm
from ._budget import limit_process
from ._chunking import validate_chunksize, validate_max_workers
from ._future import Future

__all__ = ["ProcessExecutor"]

T = TypeVar("T")

_CONTEXTS = ("forkserver", "spawn", "fork")

#: A worker running a task of a function whose last task took less than this
#: is sent the next task at once (see the module docstring).
PREFETCH_SECONDS = 0.01

#: Functions a worker keeps by number (the oldest is forgotten first; the
#: parent mirrors the same rule to know what each worker holds).
FUNCTIONS_KEPT = 64


class _Unloadable:
    """A function that could not be unpickled in the worker: its tasks raise this."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _cacheable(fn: Any) -> bool:
    """Whether *fn* is the same function every time it is pickled (no state of its
    own that may change between tasks): a plain function, a builtin, a Numba
    dispatcher."""
    if isinstance(fn, types.BuiltinFunctionType):  # also bound methods of builtins
        owner = getattr(fn, "__self__", None)    # (dict.get, arr.sum): their object's
        return owner is None or isinstance(owner, types.ModuleType)  # state may change
    return isinstance(fn, types.FunctionType) or (
        type(fn).__module__.startswith("numba.") and hasattr(fn, "py_func"))


# -- the worker process ------------------------------------------------------

class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (its ``__cause__``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _rebuild_exception(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = _RemoteTraceback(tb)
    return exc


class _ExceptionWithTraceback:
    """Pickles as the exception, with the formatted worker traceback attached."""

    def __init__(self, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        exc.__traceback__ = None
        self.exc = exc
        self.tb = f'\n"""\n{text}"""'

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_exception, (self.exc, self.tb)


def _script_path() -> str | None:
    """The path of the script ``__main__`` runs, when it is one (not ``-m``, ``-c``)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or getattr(main, "__spec__", None) is not None:
        return None
    return os.path.normpath(os.path.abspath(path))


def _worker_main(conn: mpc.Connection, space: shm.Space,
                 initializer: Callable[..., object] | None, initargs: tuple[Any, ...],
                 workers: int = 1, main_path: str | None = None) -> None:
    """A worker process: run tasks from *conn* until it closes or sends b""."""
    # started by an MPI rank, it is no rank itself (before the script is loaded
    # again below, whose top level may call accelerated functions)
    config.forget_launcher()
    loaded = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_path is not None and (not isinstance(loaded, str)
                                  or os.path.normpath(loaded) != main_path):
        # started once the script had ended, multiprocessing did not load it
        # (see _Core.main_path): load it as it would have, as __mp_main__
        try:
            from multiprocessing import spawn

            spawn._fixup_main_from_path(main_path)  # type: ignore[attr-defined]
        except BaseException:  # noqa: BLE001 - its tasks fail to unpickle, as before
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_process(workers)  # this process's share of the cores for BLAS and Numba
    space.prefix = f"{space.prefix}w{os.getpid()}-"
    space.mode = "r+"  # a result segment becomes the parent's own array
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            conn.send_bytes(pickle.dumps(("init-error", traceback.format_exc(), 0.0)))
            raise SystemExit(1) from None
    functions: dict[int, Any] = {}
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        if not data:
            return
        shm.track_task_maps(True)
        reply = _run_task(data, space, functions)
        shm.track_task_maps(False)
        conn.send_bytes(reply)


def _function(key: int | None, blob: bytes | None, fn: Any, functions: dict[int, Any]) -> Any:
    """The task's function: given (*key* None), or kept under *key* (sent as *blob*
    the first time)."""
    if key is None:
        return fn
    if blob is not None:
        try:
            functions[key] = pickle.loads(blob)
        except BaseException as exc:  # noqa: BLE001 - its tasks raise it
            functions[key] = _Unloadable(exc)
        if len(functions) > FUNCTIONS_KEPT:
            del functions[next(iter(functions))]
    fn = functions[key]
    if isinstance(fn, _Unloadable):
        raise fn.error
    return fn


#: Added to a task's "read-only" ValueError when one of its arguments came as a
#: read-only shared-memory array.
_READ_ONLY_NOTE = (
    "(loopscale) an array argument of at least max_nbytes ({limit} bytes) arrives in the "
    "worker as read-only shared memory, as joblib's memory-mapped arguments do: copy it in "
    "the task (x = x.copy()), pass mmap_mode='c' to the ProcessExecutor (writes stay in "
    "the worker's copy), or make it with executor.share(...) to write the caller's array "
    "in place.")


def _run_task(data: bytes, space: shm.Space, functions: dict[int, Any]) -> bytes:
    partial: list[Any] = []
    t0 = time.perf_counter()
    try:
        kind, key, blob, fn, payload = pickle.loads(data)
        del data
        fn = _function(key, blob, fn, functions)
        if kind == "call":
            args, kwargs = payload
            value: Any = fn(*args, **kwargs)
        else:
            for args in payload:
                partial.append(fn(*args))
            value = (partial, None)
        fn = payload = args = kwargs = None
        status = "ok"
    except BaseException as exc:  # noqa: BLE001 - sent to the parent
        fn = payload = args = kwargs = None
        if isinstance(exc, ValueError) and "read-only" in str(exc):
            if any(m[3] == "r" for m in (shm.task_maps() or {}).values()):
                exc.add_note(_READ_ONLY_NOTE.format(limit=space.max_nbytes))
        status, value = "error", (_ExceptionWithTraceback(exc), partial)
        exc = None  # type: ignore[assignment]
    seconds = time.perf_counter() - t0
    try:
        return shm.dumps((status, value, seconds), space, unlink_on_receipt=True)[0]
    except BaseException as exc:  # noqa: BLE001 - an unpicklable result or exception
        value = None
        error = pickle.PicklingError(f"the task's {'result' if status == 'ok' else 'exception'}"
                                     f" could not be pickled: {exc!r}")
        error.__cause__ = _RemoteTraceback(traceback.format_exc())
        return pickle.dumps(("error", (error, []), seconds), pickle.HIGHEST_PROTOCOL)


# -- the parent: jobs, workers and the manager thread -------------------------

class _Job:
    """A task on its way: its future, what to send, and what to release after."""

    __slots__ = ("future", "kind", "fn", "payload", "created", "kept", "name", "key")

    def __init__(self, future: Future, kind: str, fn: Any, payload: Any) -> None:
        self.future = future
        self.kind = kind  # "call", or "chunk": its result is (results, exception or None)
        self.fn: Any = fn
        self.payload: Any = payload
        self.created: list[str] = []
        self.kept: list[np.ndarray] = []
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.key: int | None = None  # the function's number, when it is sent by number

    def release(self) -> None:
        for path in self.created:
            shm.unlink_quietly(path)
        self.created = []
        self.kept = []


class _Worker:
    __slots__ = ("process", "conn", "jobs", "known", "since", "sent", "answered")

    def __init__(self, process: Any, conn: mpc.Connection) -> None:
        self.process = process
        self.conn = conn
        self.jobs: deque[_Job] = deque()  # sent, in order: the first one is running
        self.known: dict[int, None] = {}  # the functions it keeps (FUNCTIONS_KEPT rule)
        self.since = 0.0                  # when the first of its jobs started (about)
        self.sent = 0                     # jobs sent to it so far (max_tasks_per_child)
        self.answered = False             # it has sent a task's reply


class _Core:
    """State shared by a :class:`ProcessExecutor` and its manager thread."""

    def __init__(self, max_workers: int, ctx: Any, initializer: Callable[..., object] | None,
                 initargs: tuple[Any, ...], space: shm.Space,
                 max_tasks: int | None = None) -> None:
        self.max_workers = max_workers
        self.max_tasks = max_tasks  # jobs a worker runs before it is replaced (None: no limit)
        self.retired: list[_Worker] = []  # stopped after max_tasks jobs, not yet joined
        self.ctx = ctx
        self.initializer = initializer
        self.initargs = initargs
        self.space = space
        self.lock = threading.Lock()
        self.pending: deque[_Job] = deque()
        self.workers: list[_Worker] = []
        self.closing = False
        self.broken: str | None = None
        self.thread: threading.Thread | None = None
        self.wake_r, self.wake_w = -1, -1
        # functions sent by number: id -> (number, function, pickle); last task's seconds
        self.functions: dict[int, tuple[int, Any, bytes]] = {}
        self.seconds: dict[int, float] = {}
        self.numbers = itertools.count().__next__
        # the script's path, for workers started after it has run to its end:
        # Python then deletes ``__main__.__file__``, by which multiprocessing
        # finds the script for a spawned worker, and the worker could not
        # import the functions of tasks the script queued (see _worker_main)
        self.main_path = _script_path() if ctx.get_start_method() != "fork" else None

    def push(self, job: _Job) -> None:
        with self.lock:
            if self.broken is not None:
                raise BrokenProcessPool(self.broken)
            if self.closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self.pending.append(job)
            if self.thread is None:
                self.wake_r, self.wake_w = os.pipe()
                os.set_blocking(self.wake_w, False)
                self.thread = threading.Thread(target=_manage, args=(self,), daemon=True,
                                               name="loopscale-ProcessExecutor-manager")
                self.thread.start()
            self.wake_locked()

    def wake_locked(self) -> None:
        if self.wake_w >= 0:
            try:
                os.write(self.wake_w, b"\0")
            except BlockingIOError:
                pass  # a wake-up is pending already

    def close(self, wait: bool, cancel_futures: bool = False) -> None:
        with self.lock:
            self.closing = True
            drained = list(self.pending) if cancel_futures else []
            if cancel_futures:
                self.pending.clear()
            thread = self.thread
            self.wake_locked()
        for job in drained:
            job.future.cancel()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()
        if thread is None or not thread.is_alive():
            self.space.sweep()

    # -- used by the manager thread only ------------------------------------
    def start_worker(self) -> _Worker:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        process = self.ctx.Process(
            target=_worker_main, args=(child_conn, self.space, self.initializer, self.initargs,
                                       self.max_workers, self.main_path),
            name=f"loopscale-ProcessExecutor-worker-{len(self.workers)}")
        process.start()
        child_conn.close()
        worker = _Worker(process, parent_conn)
        self.workers.append(worker)
        return worker

    def _short(self, key: int | None) -> bool:
        return key is not None and self.seconds.get(key, PREFETCH_SECONDS) < PREFETCH_SECONDS

    def _open(self, worker: _Worker) -> bool:
        """Whether *worker* may be sent another job (max_tasks_per_child)."""
        return self.max_tasks is None or worker.sent < self.max_tasks

    def _next_worker_locked(self) -> tuple[_Worker | None, bool]:
        """An idle worker (None: start one), and whether there is one to send to."""
        worker = next((w for w in self.workers if not w.jobs and self._open(w)), None)
        if worker is not None or len(self.workers) < self.max_workers:
            return worker, True
        # every worker busy: queue the next task behind a short one, if it is short too
        # (its function's last task was, and it has not run long itself so far)
        if not self._short(self._key(self.pending[0])):
            return None, False
        now = time.perf_counter()
        worker = next((w for w in self.workers if len(w.jobs) == 1 and self._open(w)
                       and self._short(w.jobs[0].key) and now - w.since < PREFETCH_SECONDS),
                      None)
        return worker, worker is not None

    def _key(self, job: _Job) -> int | None:
        """The number *job*'s function is sent by (None: pickled with each task)."""
        if job.key is None and _cacheable(job.fn):
            known = self.functions.get(id(job.fn))
            if known is None or known[1] is not job.fn:
                try:
                    blob = pickle.dumps(job.fn, pickle.HIGHEST_PROTOCOL)
                except Exception:  # noqa: BLE001 - pickled with the task: its error
                    return None
                known = (self.numbers(), job.fn, blob)
                self.functions[id(job.fn)] = known
                if len(self.functions) > 4 * FUNCTIONS_KEPT:  # forget the oldest
                    oldest = self.functions.pop(next(iter(self.functions)))
                    self.seconds.pop(oldest[0], None)
            job.key = known[0]
        return job.key

    def _message(self, worker: _Worker, job: _Job) -> tuple[Any, ...]:
        key = self._key(job)
        if key is None:
            return (job.kind, None, None, job.fn, job.payload)
        blob = None
        if key not in worker.known:
            blob = self.functions[id(job.fn)][2]
            worker.known[key] = None
            if len(worker.known) > FUNCTIONS_KEPT:  # as the worker forgets
                del worker.known[next(iter(worker.known))]
        return (job.kind, key, blob, None, job.payload)

    def dispatch(self) -> None:
        """Send queued jobs to idle workers (starting workers as needed), and a
        short job to a worker running a short one."""
        while True:
            with self.lock:
                if not self.pending or self.broken is not None:
                    return
                worker, ok = self._next_worker_locked()
                if not ok:
                    return
                job = self.pending.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue
            if worker is None:
                worker = self.start_worker()
            known = dict(worker.known)
            try:
                data, pickler = shm.dumps(self._message(worker, job), self.space,
                                          unlink_on_receipt=False)
            except BaseException as exc:  # noqa: BLE001 - an unpicklable task
                worker.known = known  # nothing was sent
                job.fn = job.payload = None
                job.future.set_exception(exc)
                continue
            job.fn = job.payload = None
            job.created, job.kept = pickler.created, pickler.kept
            if not worker.jobs:
                worker.since = time.perf_counter()
            worker.jobs.append(job)
            worker.sent += 1
            try:
                worker.conn.send_bytes(data)
            except OSError:
                pass  # the worker died: its sentinel reports it

    def receive(self, worker: _Worker) -> None:
        if not worker.jobs:
            return
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return  # the worker died mid-reply: its sentinel reports it
        job = worker.jobs.popleft()
        worker.answered = True
        worker.since = time.perf_counter()  # the next one, if any, runs from now
        try:
            status, value, seconds = pickle.loads(data)
        except BaseException as exc:  # noqa: BLE001
            error = pickle.UnpicklingError(f"the reply of task {job.name} could not be "
                                           f"unpickled: {exc!r}")
            error.__cause__ = exc
            status, value, seconds = "error", (error, []), None
        finally:
            job.release()
        if job.key is not None and seconds is not None:
            self.seconds[job.key] = seconds
        if not worker.jobs and not self._open(worker):
            self.retire(worker)  # (before the result is set: a waiter may check workers)
        if status == "ok":
            job.future.set_result(value)
        elif status != "error":  # "init-error": the worker is exiting
            worker.jobs.appendleft(job)
            self.break_(f"a worker's initializer failed; the executor is not usable "
                        f"anymore:\n{value}")
        elif job.kind == "chunk":
            job.future.set_result((value[1], value[0]))
        else:
            job.future.set_exception(value[0])

    def retire(self, worker: _Worker) -> None:
        """Stop *worker*, which ran its max_tasks_per_child jobs; a new one starts
        when the next job needs it.  It exits on its own: no longer watched, it
        is joined later (:meth:`reap`)."""
        with self.lock:
            self.workers.remove(worker)
        try:
            worker.conn.send_bytes(b"")
        except OSError:
            pass
        self.retired.append(worker)

    def reap(self, wait: bool = False) -> None:
        """Join the retired workers that have exited (all of them, with *wait*)."""
        alive = []
        for w in self.retired:
            w.process.join(5.0 if wait else 0)
            if w.process.is_alive():
                if wait:
                    w.process.terminate()
                    w.process.join(1.0)
                else:
                    alive.append(w)
                    continue
            w.conn.close()
        self.retired = alive

    def break_(self, message: str) -> None:
        """A worker died: fail every running and queued task; refuse new ones."""
        with self.lock:
            if self.broken is None:
                self.broken = message
            jobs = [j for w in self.workers for j in w.jobs] + list(self.pending)
            self.pending.clear()
            for w in self.workers:
                w.jobs.clear()
        for job in jobs:
            job.release()
            if job.future.done():
                continue
            if job.future.running() or job.future.set_running_or_notify_cancel():
                job.future.set_exception(BrokenProcessPool(message))

    def stop_workers(self) -> None:
        for w in self.workers:
            try:
                w.conn.send_bytes(b"")
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(1.0)
            w.conn.close()
        self.workers = []
        self.reap(wait=True)


def _manage(core: _Core) -> None:
    """The manager thread: dispatch, receive, watch the workers; clean up at the end."""
    try:
        while True:
            core.dispatch()
            with core.lock:
                busy = [w for w in core.workers if w.jobs]
                if core.broken is not None or (core.closing and not core.pending and not busy):
                    break
            sentinels = {w.process.sentinel: w for w in core.workers}
            ready = mpc.wait([core.wake_r, *(w.conn for w in busy), *sentinels])
            if core.wake_r in ready:
                os.read(core.wake_r, 4096)
            for w in busy:
                if w.conn in ready:
                    core.receive(w)
            for sentinel, w in sentinels.items():
                if sentinel in ready and w in core.workers:  # (not retired meanwhile)
                    core.break_(_death_message(w))
                    break
            if core.retired:
                core.reap()
    except BaseException as exc:  # noqa: BLE001 - never leave futures waiting
        core.break_(f"the ProcessExecutor's manager thread failed: {exc!r}")
        raise
    finally:
        core.stop_workers()
        core.space.sweep()
        with core.lock:
            os.close(core.wake_r)
            os.close(core.wake_w)
            core.wake_r = core.wake_w = -1


#: A ProcessExecutor made while a worker process loads the script (its top
#: level, unguarded, makes one): the worker's error, which ends it.
_UNGUARDED = (
    "a ProcessExecutor was created ({script}) while a worker process was loading the "
    "script to find its functions: worker processes run the script's top level again, and this one "
    "creates an executor there. Put the code that creates and uses the ProcessExecutor "
    "under `if __name__ == \"__main__\":` (as multiprocessing and joblib require), "
    "keeping the functions it runs at the top level.")


def _death_message(worker: _Worker) -> str:
    code = worker.process.exitcode
    if worker.conn.poll():  # an initializer's last words
        try:
            kind, text, *_ = pickle.loads(worker.conn.recv_bytes())
            if kind == "init-error":
                return f"a worker's initializer failed; the executor is not usable anymore:\n{text}"
        except Exception:
            pass
    how = f"was killed by signal {-code}" if code is not None and code < 0 else \
        f"exited with status {code}"
    task = f" while running {worker.jobs[0].name}" if worker.jobs else ""
    hint = ("if the task crashes the interpreter, run it in a plain Python loop to see why"
            if worker.answered else
            "it died before it finished a task: a script that creates the ProcessExecutor "
            "outside `if __name__ == \"__main__\":` ends each worker as it loads the "
            "script (see the worker's error above); otherwise run the task in a plain "
            "Python loop to see why")
    return (f"A worker process (pid {worker.process.pid}) {how}{task}; the ProcessExecutor is "
            f"not usable anymore. Create a new one; {hint}.")


_CORES: weakref.WeakSet[_Core] = weakref.WeakSet()


class ProcessExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` on worker processes; NumPy arrays go through
    shared memory.

    For GIL-bound pure-Python functions, where threads cannot help.  The same
    interface as :class:`~concurrent.futures.ProcessPoolExecutor` and
    :class:`Executor`.  Array arguments and results of at least *max_nbytes*
    bytes are not pickled: their bytes go once into a shared-memory segment
    and the task maps it (see the module docstring), as joblib memory-maps.
    Functions must be picklable by reference (defined at module level).  Each
    worker process limits its BLAS/OpenMP pools and Numba's threads to its
    share of the cores (``usable cores // max_workers``) when it starts.

    Parameters
    ----------
    max_workers : int, optional
        Worker processes (default: ``LOOPSCALE_MAX_WORKERS``, else the cores
        this process may use).  They start on demand and serve many tasks.
    mp_context : str or multiprocessing context, optional
        How workers start: ``"forkserver"`` (the default where available),
        ``"spawn"`` or ``"fork"`` (unsafe once threads exist), or a context.
    initializer : callable, optional
        Called as ``initializer(*initargs)`` when a worker starts.  If it
        raises, the executor breaks (:class:`~loopscale.errors.BrokenProcessPool`).
    initargs : tuple, optional
        Arguments for *initializer*.
    max_nbytes : int, optional
        Arrays of at least this many bytes go through shared memory
        (default 1 MiB); smaller ones are pickled.
    mmap_mode : {"r", "c"}, optional
        How a task sees a copied array argument: ``"r"`` read-only (the
        default), ``"c"`` copy-on-write (writes stay private to the task).
        Arrays made by :meth:`share` are always writable and shared.
    max_tasks_per_child : int, optional
        Tasks a worker process runs before it exits and a fresh one takes its
        place (default: no limit), as in ``ProcessPoolExecutor`` and
        ``multiprocessing.Pool(maxtasksperchild=...)``: memory that a leaky
        library holds is given back.  A chunk of :meth:`map` counts as one
        task.  A worker is never sent more than this many, so tasks are not
        queued behind one that is about to exit.

    Raises
    ------
    TypeError
        *max_workers*, *max_nbytes* or *max_tasks_per_child* is not an
        integer, or *initializer* is not callable.
    ValueError
        *max_workers* or *max_tasks_per_child* is not greater than 0,
        *max_nbytes* is negative, or *mp_context* or *mmap_mode* is not one of
        the listed values.

    See Also
    --------
    Executor : the same interface on threads, for code that releases the GIL.

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale.schedule import ProcessExecutor
    >>> with ProcessExecutor(max_workers=2) as ex:          # doctest: +SKIP
    ...     sums = [float(s) for s in ex.map(np.sum, [np.ones(1 << 20), np.arange(4.0)])]
    >>> sums                                                 # doctest: +SKIP
    [1048576.0, 6.0]
    """

    _counter = itertools.count().__next__

    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (), *, max_nbytes: int = shm.DEFAULT_MAX_NBYTES,
                 mmap_mode: str = "r", max_tasks_per_child: int | None = None) -> None:
        if getattr(mp.process.current_process(), "_inheriting", False):
            caller = sys._getframe(1)  # (the script's line that makes it)
            raise RuntimeError(_UNGUARDED.format(
                script=f"{caller.f_code.co_filename}:{caller.f_lineno}"))
        if max_workers is None:
            max_workers = config.max_workers_default()
        else:
            max_workers = validate_max_workers(max_workers)
        max_tasks_per_child = validate_max_workers(max_tasks_per_child,
                                                   name="max_tasks_per_child")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be a callable; got {initializer!r}.")
        if isinstance(max_nbytes, bool) or not isinstance(max_nbytes, int):
            raise TypeError(f"max_nbytes must be an integer number of bytes; got {max_nbytes!r}.")
        if max_nbytes < 0:
            raise ValueError(f"max_nbytes must be at least 0; got {max_nbytes!r}.")
        if mmap_mode not in shm.MMAP_MODES:
            raise ValueError(f"mmap_mode must be one of {', '.join(map(repr, shm.MMAP_MODES))}; "
                             f"got {mmap_mode!r}.")
        self._max_workers = max_workers
        space = shm.Space(f"loopscale-{os.getpid()}-{self._counter()}-", max_nbytes, mmap_mode)
        self._core = _Core(max_workers, _context(mp_context), initializer, tuple(initargs),
                           space, max_tasks_per_child)
        _CORES.add(self._core)
        weakref.finalize(self, self._core.close, False).atexit = False

    @property
    def max_workers(self) -> int:
        """The number of worker processes."""
        return self._max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker process; return its future.

        Raises
        ------
        RuntimeError
            The executor was shut down.
        loopscale.errors.BrokenProcessPool
            A worker process died earlier.
        """
        fut = Future()
        self._core.push(_Job(fut, "call", fn, (args, kwargs)))
        return fut

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[T]:
        """Like ``map(fn, *iterables)``, with the calls run in the worker processes.

        Parameters
        ----------
        fn : callable
            A module-level function, called as ``fn(*items)``.
        *iterables : iterable
            As for the builtin :func:`map`.
        timeout : float, optional
            Seconds, from this call, after which reaching a result that is not
            ready raises :class:`TimeoutError`.
        chunksize : int, optional
            Items sent to a worker at a time (default 1); larger chunks cut
            the cost per item when calls are short.

        Returns
        -------
        iterator
            The results, in the order of the inputs.
        """
        size = validate_chunksize(chunksize) or 1
        end_time = None if timeout is None else time.monotonic() + timeout
        items = list(zip(*iterables, strict=False))
        futures = []
        for i in range(0, len(items), size):
            fut = Future()
            self._core.push(_Job(fut, "chunk", fn, items[i:i + size]))
            futures.append(fut)
        return _chunk_results(futures, end_time)

    def share(self, array: Any) -> np.ndarray:
        """A copy of *array* in shared memory, passed to tasks without copying.

        Tasks receive a writable view of the same memory, so they can fill
        shared outputs in place.  The memory is released when the returned
        array (and every view of it) is collected; the segment's file is
        removed then or at shutdown, whichever comes first.

        Parameters
        ----------
        array : array_like
            The values to copy (no Python objects inside).

        Returns
        -------
        numpy.ndarray
            A C-contiguous array backed by shared memory.

        Examples
        --------
        >>> import numpy as np
        >>> from loopscale.schedule import ProcessExecutor
        >>> with ProcessExecutor(max_workers=2) as ex:      # doctest: +SKIP
        ...     out = ex.share(np.zeros(1 << 20))
        ...     ex.submit(np.copyto, out, 1.0).result()
        ...     float(out.sum())
        1048576.0
        """
        if self._core.closing:
            raise RuntimeError("cannot share arrays after shutdown")
        return shm.share_array(self._core.space, array)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with *wait*, return when the workers have exited.

        Queued tasks still run unless *cancel_futures*; shared-memory segments
        are removed once the workers are done.
        """
        self._core.close(wait, cancel_futures)


def _chunk_results(futures: list[Future], end_time: float | None) -> Iterator[Any]:
    try:
        futures.reverse()
        while futures:
            fut = futures[-1]
            timeout = None if end_time is None else max(0.0, end_time - time.monotonic())
            results, error = fut.result(timeout)
            futures.pop()
            del fut
            yield from results
            if error is not None:
                try:
                    raise error
                finally:
                    error = None
    finally:
        for fut in futures:
            fut.cancel()


def _context(mp_context: Any) -> Any:
    if mp_context is None:
        methods = mp.get_all_start_methods()
        return mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if isinstance(mp_context, str):
        if mp_context not in _CONTEXTS:
            raise ValueError(f"mp_context must be one of {', '.join(map(repr, _CONTEXTS))} or a "
                             f"multiprocessing context; got {mp_context!r}.")
        return mp.get_context(mp_context)
    if not hasattr(mp_context, "Process"):
        raise ValueError(f"mp_context must be one of {', '.join(map(repr, _CONTEXTS))} or a "
                         f"multiprocessing context; got {mp_context!r}.")
    return mp_context


def _close_all_at_exit() -> None:
    for core in list(_CORES):
        core.close(wait=True)


atexit.register(_close_all_at_exit)
