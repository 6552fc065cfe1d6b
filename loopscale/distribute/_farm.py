"""``distribute.map``: a dynamically load-balanced task farm over MPI ranks.

For irregular Python work that is not a compiled loop (a simulation per
parameter set, a file per task).  Every rank calls ``map`` — it is collective,
like an MPI call — and no process is spawned (``MPI_Comm_spawn`` is forbidden
on many clusters).  The root reads the iterable, cuts it into chunks of
*chunksize* items and deals them on demand: each other rank holds up to two
chunks (one to run, one waiting), asks for more by returning a result, and
the root runs chunks itself between answering.  Fast ranks thus take more
chunks than slow ones; results are put back in input order.

Tasks and results are arbitrary Python objects and travel pickled (the
lowercase mpi4py calls); *fn* itself does not travel — every rank calls
``map`` with its own (the same) function.

The call begins, as every collective call of loopscale does, with the
ranks' agreement (``_level.agree_call``: one ``Allreduce`` of a fingerprint):
every rank must pass the same *root*, *results* and *chunksize* (only the
root's *iterable* is read, and only the root's *fn* is not compared: it does
not travel), and an argument refused on one rank (``chunksize=0``, a root out
of range) is raised on every rank, so that no rank is left waiting and none
silently gets ``None`` where it asked for the results.  Then the root
pickles every chunk and says, in one small ``bcast`` (the farm's start),
whether they can travel: an item that cannot be pickled is reported on every
rank as an :class:`~loopscale.errors.ArgumentError`.  A rank waits in the
agreement and the start under the watchdog (``LOOPSCALE_MPI_WAIT``, see
:mod:`._mpi`): one that skips the call is reported, not waited for in
silence.  After the start no wait is watched: a rank waits for tasks as long
as they take.

Inside a task no collective call may be made (the other ranks run other
tasks): a distributed call, ``scatter``, ``gather``, a loader, an explicit
``level("mpi")`` or another ``map`` raises
:class:`~loopscale.errors.DistributionError` in the task, which then fails as
any task does.  An exception raised by *fn* stops the dealing: the
root re-raises it (with the remote traceback attached as a note; rebuilt from
its class, ``args`` and attributes when its ``__init__`` takes other
arguments) and the other ranks raise :class:`~loopscale.errors.WorkerError`.
An item or result that cannot be unpickled where it arrives fails the call
the same way, as a ``WorkerError`` that names it on every rank.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .. import config
from ..errors import ArgumentError, WorkerError
from . import _mpi
from ._darray import _root_text
from ._level import agree_call

__all__ = ["map", "RESULTS"]

T = TypeVar("T")

#: Where ``map`` returns the results: on the root only, or on every rank.
RESULTS = ("root", "all")

#: What to do when the ranks' calls differ.
_SAME = ("distribute.map() is collective: every rank must pass the same root, results and "
         "chunksize (only the root's iterable is read: the others may pass None); compute "
         "them identically on every rank.")

_TASK, _RESULT, _STOP = 11, 12, 13
_DEPTH = 2  # chunks each worker holds at once


def _validate(fn: Any, chunksize: Any, results: Any, root: Any, nranks: int) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {fn!r}.")
    if config.as_integer(chunksize) is None:
        raise TypeError(f"chunksize must be a positive integer; got {chunksize!r}.")
    if chunksize < 1:
        raise ValueError(f"chunksize must be greater than 0; got {chunksize!r}.")
    if results not in RESULTS:
        raise ValueError(f"results must be one of {', '.join(repr(r) for r in RESULTS)}; "
                         f"got {results!r}.")
    if isinstance(root, bool) or not isinstance(root, int):
        raise TypeError(f"root must be an integer rank; got {root!r}.")
    if not 0 <= root < nranks:
        raise ValueError(f"root must be a rank between 0 and {nranks - 1}; got {root!r}.")


def _run_chunk(fn: Callable[..., T], items: list[Any]) -> tuple[bool, Any]:
    """``(True, results)`` or ``(False, (exception or None, text))``."""
    try:
        # the other ranks are busy with other items: an accelerated call in a task
        # at level auto must not become a collective call (it would wait for them)
        with _mpi.in_task():
            return True, [fn(x) for x in items]
    except Exception as exc:
        return False, (exc, "".join(traceback.format_exception(exc)))


def _rebuild_exception(cls: type[BaseException], args: tuple[Any, ...],
                       state: dict[str, Any]) -> BaseException:
    """An exception of class *cls* with *args* and attributes *state*, made
    without calling its ``__init__`` (see :class:`_Exception`)."""
    exc = BaseException.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class _Exception:
    """An exception that pickles as its class, ``args`` and attributes.

    Python pickles an exception as ``cls(*args)``: one whose ``__init__`` takes
    other arguments than it passes on (``ConvergenceError(param, iters)``, which
    calls ``super().__init__(message)``) cannot be rebuilt on the root, which
    then had only its text (a ``WorkerError``) where a user catches the type."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_exception, (type(self.exc), self.exc.args, dict(self.exc.__dict__)))


def _dumps_result(outcome: tuple[bool, Any]) -> bytes:
    """A chunk's outcome, pickled to send it to the root."""
    if not outcome[0]:
        return _dumps_failure(outcome)
    try:
        return pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        text = (f"a result of fn could not be pickled to send it to the root: {exc}. "
                "Return plain data (numbers, strings, NumPy arrays, tuples, dicts).")
        return pickle.dumps((False, (None, text)))


def _dumps_failure(outcome: tuple[bool, Any]) -> bytes:
    """A failed chunk's outcome, its exception in a form the root can rebuild
    (as itself, or by class and attributes), or only its text."""
    exc, text = outcome[1]
    for form in (exc, _Exception(exc)):
        try:
            blob = pickle.dumps((False, (form, text)), pickle.HIGHEST_PROTOCOL)
            pickle.loads(blob)  # (an exception that pickles but cannot be rebuilt)
            return blob
        except Exception:  # noqa: BLE001 - the next form, or the text alone
            continue
    return pickle.dumps((False, (None, text)))


def _loads_chunk(blob: bytes, me: int) -> tuple[bool, Any]:
    """``(True, items)`` or a failed outcome naming why the items of a chunk could
    not be rebuilt on rank *me*."""
    try:
        return True, pickle.loads(blob)
    except Exception as exc:
        return False, (None, _unpickling("an item of the iterable", me, exc))


def _unpickling(what: str, me: int, exc: BaseException) -> str:
    return (f"{what} could not be rebuilt (unpickled) on rank {me}: {type(exc).__name__}: "
            f"{exc}. The class of every item and result must be importable, and its "
            "pickled state valid, on every rank; pass plain data (numbers, strings, "
            "tuples, NumPy arrays) and build other objects inside fn.\n"
            + "".join(traceback.format_exception(exc)))


_NO_ITEMS = ("distribute.map(): the iterable is None on the root (rank {root}), which is "
             "the rank whose items are read (the other ranks may pass None): pass the items "
             "there, e.g. `items if distribute.rank() == {root} else None`")


def map(fn: Callable[[Any], T], iterable: Iterable[Any] | None, chunksize: int = 1, *,
        comm: Any = None, root: int = 0, results: str = "root") -> list[T] | None:
    """``[fn(x) for x in iterable]``, dealt dynamically over the MPI ranks (collective).

    Parameters
    ----------
    fn : callable
        Called once per item, on whichever rank is free.  Every rank passes
        its own (the same) function; it is not pickled.
    iterable : iterable or None
        The items; only the root's is read (other ranks may pass ``None``, or
        anything: their iterables are ignored, whatever their length; ``None``
        on the root is an :class:`~loopscale.errors.ArgumentError` on every
        rank).  Each item is pickled to travel.
    chunksize : int
        Items per task sent to a rank (larger chunks cost fewer messages);
        the same on every rank.
    comm : mpi4py.MPI.Comm, optional
        Default ``COMM_WORLD`` (without a launcher: this process alone, MPI
        not started).
    root : int
        The rank that reads the iterable, deals the work and gets the results;
        the same on every rank.
    results : {"root", "all"}
        Return the list on the root only (other ranks get ``None``) or on
        every rank; the same on every rank.

    Returns
    -------
    list or None
        The results in input order (``None`` on non-root ranks when
        ``results="root"``).

    Raises
    ------
    loopscale.errors.ArgumentError
        On every rank, when an item cannot be pickled (before any rank waits).
    loopscale.errors.ArgumentValueError
        On every rank, when the ranks passed different *root*, *results* or
        *chunksize*.
    TypeError, ValueError
        On every rank, when an argument is invalid on any rank (the first
        such rank's error, naming the ranks).
    Exception
        The first exception raised by *fn*, on the root (other ranks raise
        :class:`~loopscale.errors.WorkerError`).

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.map(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    if comm is None:
        comm = _mpi.comm() if (_mpi.launched() or _mpi.is_initialized()) else None
    nranks = 1 if comm is None else comm.Get_size()
    if comm is None or nranks == 1:
        _validate(fn, chunksize, results, root, nranks)
        if iterable is None:
            raise ArgumentError(_NO_ITEMS.format(root=root))
        return [fn(x) for x in iterable]
    _mpi.refuse_in_task(comm, "distribute.map()")  # a farm inside a farm's task
    # the call's first collective, the agreement every call of loopscale begins
    # with: the same root, results and chunksize on every rank, and every rank's
    # arguments valid (one refused on one rank is raised on every rank)
    error = None
    try:
        _validate(fn, chunksize, results, root, nranks)
        chunksize = config.as_integer(chunksize)  # (np.int64(2) and 2 agree)
    except (TypeError, ValueError) as exc:
        error = exc
    agree_call(comm, "distribute.map", [("call", "distribute.map()"),
                                        ("root", _root_text(root)),
                                        ("results", repr(results)),
                                        ("chunksize", repr(chunksize))], error, _SAME)
    # the farm's messages (any tag, any source) on loopscale's own communicator:
    # never a message the user's code sent on theirs and receives later
    comm = _mpi.private_comm(comm, "distribute.map")
    me = comm.Get_rank()
    chunks: list[bytes] = []
    problem = None
    reading: Exception | None = None  # what reading the iterable raised, on the root
    if me == root and iterable is None:  # (the other ranks' None, on the root: a mistake)
        problem, items = _NO_ITEMS.format(root=root), []
    elif me == root:
        try:
            items = list(iterable)
        except Exception as exc:
            problem = (f"distribute.map(): reading the iterable on the root (rank {root}) "
                       f"raised {type(exc).__name__}: {exc}")
            reading, items = exc, []
        for start in range(0, len(items), chunksize):
            part = items[start:start + chunksize]
            try:
                chunks.append(pickle.dumps(part, pickle.HIGHEST_PROTOCOL))
            except Exception as exc:
                bad = next((i for i, x in enumerate(part) if not _picklable(x)), 0)
                problem = (f"distribute.map(): item {start + bad} of the iterable "
                           f"({part[bad]!r}) cannot be pickled to send it to another rank: "
                           f"{type(exc).__name__}: {exc}. Pass plain data (numbers, strings, "
                           "tuples, NumPy arrays) and build other objects inside fn.")
                break
    # the start: the root says whether its items can travel (watched: after it a
    # rank waits for tasks as long as they take, and no wait is watched)
    with _mpi.waiting("the start of the task farm", "distribute.map"):
        problem = comm.bcast(problem, root=root)
    if problem is not None:
        if reading is not None:  # the root raises the iterable's own exception
            reading.add_note(f"{problem.split(': reading')[0]}: raised while reading the "
                             "iterable on the root; no task ran, and the other ranks raise "
                             "ArgumentError")
            raise reading
        raise ArgumentError(problem + "; no task ran.")
    if me == root:
        ok, payload = _deal(fn, comm, root, chunks)
        if ok:
            if results == "all":
                bad = next((i for i, x in enumerate(payload) if not _picklable(x)), None)
                if bad is not None:  # tell the other ranks before raising here
                    msg = (f"distribute.map(): the result for item {bad} "
                           f"({type(payload[bad]).__name__}) cannot be pickled to send it to "
                           "every rank (results='all'); return plain data (numbers, "
                           "strings, tuples, NumPy arrays), or use results='root'")
                    comm.bcast((False, msg), root=root)
                    raise ArgumentError(msg + ".")
            comm.bcast((True, payload if results == "all" else None), root=root)
            return payload  # type: ignore[no-any-return]
        error, text, where = payload
        comm.bcast((False, f"{text.strip().splitlines()[-1]} (on rank {where})"), root=root)
        if error is None:
            raise WorkerError(f"distribute.map(): a task failed on MPI rank {where}:\n{text}")
        if where != root:
            error.add_note(f"raised by fn on MPI rank {where}; its traceback there:\n{text}")
        raise error
    _work(fn, comm, root)
    ok, payload = comm.bcast(None, root=root)
    if not ok:
        raise _mpi.mark_secondary(WorkerError(
            f"distribute.map(): a task failed: {payload}; the root (rank {root}) re-raises it."))
    return payload if results == "all" else None  # type: ignore[no-any-return]


def _picklable(x: Any) -> bool:
    try:
        pickle.dumps(x)
        return True
    except Exception:
        return False


def _deal(fn: Callable[..., Any], comm: Any, root: int, chunks: list[bytes]
          ) -> tuple[bool, Any]:
    """The root: hand out chunks on demand, run some itself, collect in order."""
    mpi = _mpi.mpi_module()
    workers = [r for r in range(comm.Get_size()) if r != root]
    out: list[Any] = [None] * len(chunks)
    todo = list(range(len(chunks)))[::-1]  # pop() gives the next chunk
    busy = {w: 0 for w in workers}
    sends: list[Any] = []
    error: Any = None

    def give(worker: int) -> None:
        c = todo.pop()
        sends.append(comm.isend((c, chunks[c]), dest=worker, tag=_TASK))
        busy[worker] += 1

    def receive(block: bool) -> bool:
        nonlocal error
        status = mpi.Status()
        if not block and not comm.Iprobe(source=mpi.ANY_SOURCE, tag=_RESULT, status=status):
            return False
        c, blob = comm.recv(source=mpi.ANY_SOURCE if block else status.Get_source(),
                            tag=_RESULT, status=status)
        src = status.Get_source()
        busy[src] -= 1
        try:
            ok, payload = pickle.loads(blob)
        except Exception as exc:  # (the other ranks must still be told to stop)
            ok, payload = False, (None, _unpickling(f"the result of chunk {c} (from rank "
                                                    f"{src})", root, exc))
        if ok:
            out[c] = payload
        elif error is None:
            error = (payload[0], payload[1], src)
            todo.clear()
        if todo:
            give(src)
        return True

    for _ in range(_DEPTH):
        for w in workers:
            if todo:
                give(w)
    while todo:
        c = todo.pop()
        ok, payload = _loads_chunk(chunks[c], root)
        if ok:
            ok, payload = _run_chunk(fn, payload)
        if ok:
            out[c] = payload
        elif error is None:
            error = (payload[0], payload[1], root)
            todo.clear()
        while receive(block=False):
            pass
    while any(busy.values()):
        receive(block=True)
    for w in workers:
        sends.append(comm.isend(None, dest=w, tag=_STOP))
    mpi.Request.Waitall(sends)
    if error is not None:
        return False, error
    return True, [y for part in out for y in part]


def _work(fn: Callable[..., Any], comm: Any, root: int) -> None:
    """A worker: run chunks until the root says stop."""
    mpi = _mpi.mpi_module()
    sends: list[Any] = []
    status = mpi.Status()
    while True:
        msg = comm.recv(source=root, tag=mpi.ANY_TAG, status=status)
        if status.Get_tag() == _STOP:
            break
        c, blob = msg
        outcome = _loads_chunk(blob, comm.Get_rank())
        if outcome[0]:
            outcome = _run_chunk(fn, outcome[1])
        sends.append(comm.isend((c, _dumps_result(outcome)), dest=root, tag=_RESULT))
    mpi.Request.Waitall(sends)
