"""The one module of loopscale that imports ``mpi4py.MPI``, and the job's failure policy.

Importing ``mpi4py.MPI`` initialises MPI, which costs tens of milliseconds and
must not happen in an ordinary ``python script.py``.  So it is imported here,
at first use (:func:`comm`, an executor that needs to communicate), never at
``import loopscale`` or ``import loopscale.distribute``.  :func:`rank` and
:func:`size` answer without MPI when no launcher started the process.

Abort on failure
----------------
An MPI job whose rank dies while the others wait in a collective hangs until
someone kills it.  Under a launcher with more than one rank,
:func:`install_abort_handler` (called at ``import loopscale.distribute`` and at
the first use of MPI) makes the job behave like ``python -m mpi4py``:

* an unhandled exception on any rank prints its traceback once, every line
  prefixed with ``[rank r]``, and calls ``MPI.COMM_WORLD.Abort(1)``, so every
  rank stops at once and the launcher exits with a non-zero status;
* ``sys.exit(n)`` or ``exit(n)`` with ``n != 0`` on one rank aborts the job
  with status ``n`` (through mpi4py's abort-at-exit status; ``python -m
  loopscale.distribute`` covers ``raise SystemExit(n)`` as well);
* Ctrl-C (``KeyboardInterrupt``) aborts with status 130;
* a rank that fails in one of those ways before it used MPI starts MPI to
  abort (:func:`_initialize_to_abort`): the others may be waiting in MPI_Init;
* a rank that ends (its script returns, or ``raise SystemExit(n)`` under a
  plain ``mpiexec``, which no hook sees) while another waits for it in a
  distributed call: the waiting rank ends the job with status 1 and a message
  that names both ranks and the call (see "a rank that ended" below).

An error that a rank raises only because *another* rank failed
(:func:`mark_secondary`) waits a few seconds before aborting, so that the
rank where the failure happened prints its traceback first and is the one
that stops the job.

After the script called ``MPI.Finalize()`` no MPI routine may run: an
unhandled exception then prints its traceback with the launcher's rank and
exits this process with a non-zero status (the launcher reports it).

What loopscale keeps per communicator
-------------------------------------
The private duplicate of a communicator (:func:`private_comm`) and the
number of its ranks on this node (:func:`node_size`) are kept *on the
communicator*, as an MPI attribute (``Comm.Set_attr`` with a key of
loopscale's), never in a table keyed by its handle: MPI reuses a freed
communicator's handle for the next one made, which would then be given the
freed one's duplicate (another group of ranks, or the same ranks in another
order).  The attribute goes with its communicator: ``Free()`` deletes it, and
the deletion frees the private duplicate; ``Dup()`` does not copy it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .. import config
from ..errors import DistributionError

__all__ = ["mpi_module", "comm", "rank", "size", "node_size", "private_comm", "is_initialized",
           "is_finalized", "launched", "install_abort_handler", "mark_secondary",
           "refuse_in_task", "in_task", "task_level", "waiting", "user_site",
           "SECONDARY_GRACE_SECONDS"]

#: How long a rank whose error only reports another rank's failure waits for
#: that rank to abort the job before aborting it itself.
SECONDARY_GRACE_SECONDS = 5.0

#: How long an aborting rank lets the launcher forward its last output.
ABORT_DRAIN_SECONDS = 0.25

#: How long a rank that aborts the job before it used MPI waits for the other
#: ranks to start MPI, so that MPI_Abort ends the job with its status (see
#: :func:`_initialize_to_abort`).
ABORT_INIT_SECONDS = 10.0

_LOCK = threading.RLock()
_MPI: Any = None
_INSTALLED = False
_PREVIOUS_EXCEPTHOOK = sys.excepthook
_EXIT_PENDING = False  # a SystemExit set the job's abort status (see set_exit_status)
_EXIT_BEFORE_MPI = 0  # the status of a SystemExit before MPI was initialised


def mpi_module() -> Any:
    """The ``mpi4py.MPI`` module, imported (MPI initialised) on first call."""
    global _MPI
    if _MPI is None:
        with _LOCK:
            if _MPI is None:
                mod = sys.modules.get("mpi4py.MPI")
                ours = mod is None or not mod.Is_initialized()
                from mpi4py import MPI as mpi  # the one import of mpi4py.MPI

                _MPI = mpi
                install_abort_handler()
                if ours:  # (every rank starts MPI here, so every rank starts this)
                    _start_notices(mpi)
    return _MPI


def is_initialized() -> bool:
    """Whether MPI has been initialised in this process (by loopscale or the user)."""
    if _MPI is not None:
        return True
    mod = sys.modules.get("mpi4py.MPI")
    return mod is not None and bool(mod.Is_initialized())


def launched() -> bool:
    """Whether an MPI launcher started this process in a job of more than one rank."""
    return config.launcher_world_size() > 1


def comm() -> Any:
    """The communicator loopscale uses: ``MPI.COMM_WORLD`` (initialises MPI).

    Returns
    -------
    mpi4py.MPI.Comm

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.comm().Get_size()  # doctest: +SKIP
    4
    """
    return mpi_module().COMM_WORLD


def rank() -> int:
    """This process's rank in ``COMM_WORLD``; 0 without a launcher (MPI not started).

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.rank()
    0
    """
    if _MPI is None and not launched() and not is_initialized():
        return 0
    return int(comm().Get_rank())


def size() -> int:
    """Ranks in ``COMM_WORLD``; 1 without a launcher (MPI not started).

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.size()
    1
    """
    if _MPI is None and not launched() and not is_initialized():
        return 1
    return int(comm().Get_size())


class _CommState:
    """What loopscale keeps on one communicator (its MPI attribute)."""

    __slots__ = ("private", "node_size")

    def __init__(self) -> None:
        self.private: Any = None
        self.node_size: int | None = None


#: The attribute key of :class:`_CommState` (made at first use).
_KEYVAL: int | None = None
#: The last communicator object asked about and its state: a repeated question
#: (a DistArray made each step) costs an identity test, not ``Get_attr``.
#: Cleared when that state's communicator is freed.
_RECENT: tuple[Any, _CommState] | None = None


def _delete_state(communicator: Any, keyval: int, state: _CommState) -> None:
    """The attribute's delete callback: *communicator* is being freed."""
    global _RECENT
    recent = _RECENT
    if recent is not None and recent[1] is state:
        _RECENT = None
    private, state.private = state.private, None
    if private is None or _MPI is None:
        return
    try:
        # COMM_WORLD and COMM_SELF are "freed" only inside MPI_Finalize: leave
        # their duplicate alone there
        if communicator == _MPI.COMM_WORLD or communicator == _MPI.COMM_SELF:
            return
        private.Free()  # every rank frees the communicator, so every rank frees this
    except Exception:  # pragma: no cover - a callback must not raise into MPI
        pass


def _state(communicator: Any) -> _CommState:
    """loopscale's state kept on *communicator* (made empty the first time)."""
    global _KEYVAL, _RECENT
    recent = _RECENT
    if recent is not None and recent[0] is communicator:
        return recent[1]
    with _LOCK:
        if _KEYVAL is None:
            _KEYVAL = mpi_module().Comm.Create_keyval(delete_fn=_delete_state)
        found = communicator.Get_attr(_KEYVAL)
        if found is None:
            found = _CommState()
            communicator.Set_attr(_KEYVAL, found)
            _note_communicator(communicator)
        _RECENT = (communicator, found)
        return found  # type: ignore[no-any-return]


def node_size(communicator: Any, function: str = "the 'mpi' level") -> int:
    """How many ranks of *communicator* share this rank's node (collective the first
    time for a communicator; kept on it).  *function* names the call for the
    watchdog (:func:`wait_begin`)."""
    state = _state(communicator)
    found = state.node_size
    if found is None:
        with waiting("the ranks' count of the ranks on each node", function):
            local = communicator.Split_type(mpi_module().COMM_TYPE_SHARED)
            _open_notices(communicator)
        try:
            found = int(local.Get_size())
        finally:
            local.Free()
        state.node_size = found
    return found


def private_comm(communicator: Any, function: str = "distribute") -> Any:
    """A duplicate of *communicator* for loopscale's own messages (collective the
    first time for a communicator; kept on it, freed with it).

    Halo exchanges and the other point-to-point traffic of distributed arrays
    use it, so that their tags never match a message of the user's on the
    same communicator (the practice of PETSc and other MPI libraries).
    *function* names the call for the watchdog (:func:`wait_begin`).
    """
    state = _state(communicator)
    found = state.private
    if found is None:
        with waiting("the making of loopscale's private communicator", function):
            found = communicator.Dup()
            _open_notices(communicator)
        state.private = found
    return found


#: The level in force when this rank began running a task of ``distribute.map``
#: (see :func:`task_level`); None outside a task.
_TASK_LEVEL: contextvars.ContextVar[Any] = contextvars.ContextVar("loopscale_task_level",
                                                                 default=None)


@contextlib.contextmanager
def in_task() -> Iterator[None]:
    """Run a task of ``distribute.map`` on this rank alone (see :mod:`._farm`).

    Inside the block ``auto`` never picks a collective level, and the level in
    force is remembered (:func:`task_level`): a ``level("mpi")`` block around
    the farm, or ``LOOPSCALE_LEVEL=mpi``, was not asked for inside the task, so
    the task's accelerated calls run on this rank alone rather than being
    refused (see ``MPIExecutor._alone``).
    """
    token = _TASK_LEVEL.set(config.current_level())
    try:
        with config.without_collectives():
            yield
    finally:
        _TASK_LEVEL.reset(token)


def task_level() -> Any:
    """The level setting in force when this task of ``distribute.map`` began
    (None outside a task)."""
    return _TASK_LEVEL.get()


def refuse_in_task(communicator: Any, what: str) -> None:
    """Raise :class:`~loopscale.errors.DistributionError` when *what*, collective over
    *communicator*, is asked for inside a task of ``distribute.map`` (where this
    rank runs alone: the other ranks run other tasks, and would never join it)."""
    if config.collectives_allowed() or communicator is None:
        return
    nranks = int(communicator.Get_size())
    if nranks <= 1:
        return
    raise DistributionError(
        f"{what} is collective over the {nranks} ranks of its communicator, but it was "
        "called inside a task of distribute.map(), which runs on one rank alone while the "
        "other ranks run other tasks: they would never join it (a hang, or data mixed "
        "between tasks). Bring distributed data back before the farm "
        "(distribute.allgather(u) gives every rank a NumPy array) and pass NumPy arrays "
        "to the tasks; scatter, gather, allgather, the loaders, distributed calls and "
        "level('mpi') belong outside map. Inside a task an accelerated function called "
        "with NumPy arrays runs on its rank alone (level auto, threads or serial).")


# -- failure policy --------------------------------------------------------------------

def mark_secondary(exc: BaseException) -> BaseException:
    """Mark *exc* as raised only because another rank failed (see the module docstring)."""
    exc._loopscale_secondary = True  # type: ignore[attr-defined]
    return exc


def is_finalized() -> bool:
    """Whether MPI was finalized in this process (by the script's ``MPI.Finalize()``
    or at exit): no MPI routine may be called any more."""
    mod = _MPI if _MPI is not None else sys.modules.get("mpi4py.MPI")
    if mod is None:
        return False
    try:
        return bool(mod.Is_finalized())
    except Exception:  # pragma: no cover - an mpi4py being torn down
        return True


def _world_rank() -> int:
    if _MPI is not None and not is_finalized():
        try:
            return int(_MPI.COMM_WORLD.Get_rank())
        except Exception:  # pragma: no cover
            pass
    found = config.launcher_rank()
    return 0 if found is None else found


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pragma: no cover - a closed stream
            pass


def _abort(code: int) -> None:
    """Stop every rank of the job now with exit status *code*."""
    _flush()
    # the launcher forwards this rank's output through pipes; killing the job
    # the instant it is written can lose it
    time.sleep(ABORT_DRAIN_SECONDS)
    if is_finalized():
        os._exit(code)  # MPI_Abort is no longer allowed; the launcher sees the status
    if not is_initialized():
        mpi = _initialize_to_abort(ABORT_INIT_SECONDS) if launched() else None
        if mpi is None:
            if launched():
                sys.stderr.write(
                    f"[rank {_world_rank()}] no other rank started MPI within "
                    f"{ABORT_INIT_SECONDS:g} s: this rank exits with status {code}, and the "
                    f"launcher ends the job\n")
                _flush()
            os._exit(code)
    try:
        mpi_module().COMM_WORLD.Abort(code)
    finally:  # pragma: no cover - Abort does not return
        os._exit(code)


def _initialize_to_abort(timeout: float) -> Any:
    """Initialise MPI in this rank, which is about to abort the job before it ever
    used MPI; the ``mpi4py.MPI`` module once it is initialised, or None after
    *timeout* seconds.

    A rank that exits before MPI_Init leaves the others waiting in theirs for
    ever: MPICH's Hydra ends a job on a non-zero exit only of a rank that
    connected to it, which MPI_Init does first.  MPI_Init then waits for every
    rank, so it is called in a helper thread through ``ctypes``, which lets go of
    the GIL (mpi4py's import does not): when the others are in MPI_Init too, it
    returns and MPI_Abort ends the job with this rank's status; when they are not,
    this rank exits after *timeout* seconds, connected, and the launcher ends the
    job then (MPICH), or already did on the exit status (Open MPI, srun).
    """
    try:
        import ctypes

        import mpi4py

        if "mpi4py.MPI" not in sys.modules:
            mpi4py.rc.initialize = False  # the import must not block, holding the GIL
        from mpi4py import MPI as mpi

        if mpi.Is_initialized():
            return mpi
        init = ctypes.CDLL(mpi.__file__).MPI_Init_thread  # (found in libmpi)
        init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                         ctypes.POINTER(ctypes.c_int)]
        init.restype = ctypes.c_int
    except Exception:  # noqa: BLE001 - pragma: no cover - no MPI library to call
        return None
    done = threading.Event()

    def initialize() -> None:
        provided = ctypes.c_int(0)
        if init(None, None, mpi.THREAD_MULTIPLE, ctypes.byref(provided)) == 0:
            done.set()

    threading.Thread(target=initialize, name="loopscale-abort-init", daemon=True).start()
    return mpi if done.wait(timeout) else None


def _exit_status(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):  # bool too: sys.exit(False) is 0, as in Python
        return int(code)
    return 1


def _excepthook(etype: type[BaseException], value: BaseException,
                tb: TracebackType | None) -> None:
    if not launched():
        _PREVIOUS_EXCEPTHOOK(etype, value, tb)
        return
    who = _world_rank()
    if issubclass(etype, KeyboardInterrupt):
        sys.stderr.write(f"[rank {who}] KeyboardInterrupt\n")
        _abort(130)
        return
    if getattr(value, "_loopscale_secondary", False):
        # the failing rank prints its own traceback and aborts the job; give it time
        time.sleep(SECONDARY_GRACE_SECONDS)
        sys.stderr.write(f"[rank {who}] {etype.__name__}: {value}\n")
        _abort(1)
        return
    lines = "".join(traceback.format_exception(etype, value, tb)).rstrip("\n").split("\n")
    sys.stderr.write("".join(f"[rank {who}] {line}\n" for line in lines))
    if is_finalized():
        sys.stderr.write(f"[rank {who}] exiting with status 1 (an unhandled exception on "
                         f"rank {who}, after MPI was finalized)\n")
    else:
        sys.stderr.write(f"[rank {who}] aborting the MPI job (an unhandled exception on "
                         f"rank {who})\n")
    _abort(1)


def set_exit_status(code: Any) -> None:
    """Make a non-zero exit of this rank abort the whole job with that status.

    Called by the ``sys.exit`` wrapper and by ``python -m loopscale.distribute``,
    in the main thread only (a ``SystemExit`` in another thread ends that thread
    alone).  After ``MPI.Finalize()`` the process's own exit status carries it.
    The rank's next watched collective clears it: the script caught the exit and
    went on.
    """
    global _EXIT_PENDING, _EXIT_BEFORE_MPI
    status = _exit_status(code)
    # (a SystemExit in another thread ends only that thread, as in Python)
    if (not status or not launched() or is_finalized()
            or threading.current_thread() is not threading.main_thread()):
        return
    if not is_initialized():
        # the process's own status does not end a job under MPICH's Hydra whose
        # other ranks wait in MPI_Init: at exit, _abort connects and aborts
        _EXIT_BEFORE_MPI = status
        return
    from mpi4py import run as mpirun  # noqa: F401 - mpi4py's abort-at-exit status

    mpi_module()
    mpirun.set_abort_status(status)
    _EXIT_PENDING = True


def _exit_before_mpi() -> None:
    """At exit (``atexit``): a ``sys.exit(n)`` before this rank used MPI ends the job
    with status ``n`` (see :func:`set_exit_status`)."""
    if _EXIT_BEFORE_MPI and not is_initialized():
        _abort(_EXIT_BEFORE_MPI)


def _exit_caught() -> None:
    """The rank went on to another collective after a ``SystemExit``: the script
    caught it, and the status it set is not the job's any more."""
    global _EXIT_PENDING, _EXIT_BEFORE_MPI
    _EXIT_BEFORE_MPI = 0
    if _EXIT_PENDING and threading.current_thread() is threading.main_thread():
        _EXIT_PENDING = False
        mpi_module()._set_abort_status(0)


class _ExitOfThisRank(SystemExit):
    """The ``SystemExit`` of the ``sys.exit`` wrapper (shown as ``SystemExit``).
    Freed while the script still runs (``except SystemExit: pass`` around an
    argparse error, with no collective after it), it was caught: the status it
    set for the job is cleared.  Freed with no Python frame running, it ended
    the script (the interpreter drops it before ``atexit``): the status stays."""

    def __del__(self) -> None:
        try:
            if (_EXIT_PENDING or _EXIT_BEFORE_MPI) and sys._getframe().f_back is not None:
                _exit_caught()
        except Exception:  # noqa: BLE001 - (nothing may escape a __del__)
            pass


_ExitOfThisRank.__name__ = _ExitOfThisRank.__qualname__ = "SystemExit"
_ExitOfThisRank.__module__ = "builtins"


def _exit(code: Any = None) -> None:
    set_exit_status(code)
    raise _ExitOfThisRank(code)


_exit.__doc__ = sys.exit.__doc__
_exit._loopscale_wrapper = True  # type: ignore[attr-defined]


class _Quitter:
    """``exit(5)`` / ``quit(5)`` of the interactive builtins, with the status set
    for the job as :func:`_exit` does (``site``'s own only raise SystemExit)."""

    _loopscale_wrapper = True

    def __init__(self, original: Any) -> None:
        self.original = original

    def __repr__(self) -> str:
        return repr(self.original)

    def __call__(self, code: Any = None) -> None:
        try:
            sys.stdin.close()  # as site's Quitter does
        except Exception:  # noqa: BLE001 - pragma: no cover
            pass
        set_exit_status(code)
        raise _ExitOfThisRank(code)


# -- a rank left waiting -------------------------------------------------------------
#
# A rank that skips a distributed call (an ``if rank == 0:`` around it, an
# exception caught on that rank alone) leaves the others in the call's first
# collective for ever: no MPI error comes, and no other rank can tell.  The
# collectives of a call are marked (:func:`wait_begin` / :func:`wait_end`, two
# dictionary operations), and a watchdog thread started at the first one says
# on stderr which call a rank has waited in, and where the user's code made
# it, after ``LOOPSCALE_MPI_WAIT`` seconds; with ``LOOPSCALE_MPI_TIMEOUT`` it
# ends the job.

#: Per waiting thread: (since, what, function name).
_WAITS: dict[int, tuple[float, str, str]] = {}
_WATCHDOG: threading.Thread | None = None
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_begin(what: str, function: str) -> None:
    """This thread is about to wait for the other ranks in *what* of *function*."""
    _WAITS[threading.get_ident()] = (time.monotonic(), what, function)
    if _EXIT_PENDING:
        _exit_caught()
    if _WATCHDOG is None:
        _start_watchdog()


def wait_end() -> None:
    """This thread's wait (:func:`wait_begin`) is over."""
    _WAITS.pop(threading.get_ident(), None)


@contextlib.contextmanager
def waiting(what: str, function: str) -> Iterator[None]:
    """:func:`wait_begin` and :func:`wait_end` around a block (for the paths that
    are not per call: a generator's cost does not matter there)."""
    wait_begin(what, function)
    try:
        yield
    finally:
        wait_end()


def _start_watchdog() -> None:
    global _WATCHDOG
    with _LOCK:
        if _WATCHDOG is not None:
            return
        warn, limit = config.mpi_wait_warning(), config.mpi_timeout()
        _WATCHDOG = threading.Thread(target=_watch, args=(warn, limit), daemon=True,
                                     name="loopscale-mpi-watchdog")
        if warn is None and limit is None:
            return  # nothing to watch for: never started
        _WATCHDOG.start()


def user_site() -> str:
    """``file:line`` of the innermost frame of the calling thread outside loopscale,
    Numba and mpi4py (where the user's code made the call), or ``""``."""
    return _user_site(threading.get_ident())


def _user_site(ident: int) -> str:
    """``file:line`` of the innermost frame of thread *ident* outside loopscale,
    Numba and mpi4py (the user's call), or ``""``."""
    frame = sys._current_frames().get(ident)
    while frame is not None:
        raw = frame.f_code.co_filename
        name = os.path.abspath(raw)
        if not (raw.startswith("<") or name.startswith(_PACKAGE_DIR)
                or f"{os.sep}numba{os.sep}" in name or f"{os.sep}mpi4py{os.sep}" in name):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def _watch(warn: float | None, limit: float | None) -> None:
    tick = min(1.0, *(x / 4 for x in (warn, limit) if x))
    told: set[tuple[int, float]] = set()
    while True:
        time.sleep(tick)
        now = time.monotonic()
        if _NOTICES is not None:
            _take_notices()
        for ident, (since, what, function) in list(_WAITS.items()):
            waited = now - since
            gone = _ended_rank(since, now, tick) if _ENDED else None
            if gone is not None:
                site = _user_site(ident)
                who = _world_rank()
                sys.stderr.write(
                    f"[rank {who}] loopscale: rank {gone} has ended (its script returned "
                    f"or raised SystemExit) while rank {who} waits for it in {what} of "
                    f"{function}()" + (f", called at {site}" if site else "")
                    + ". Every rank of the communicator must make the same distributed "
                    "calls in the same order; a rank that ends early (a `sys.exit`, "
                    "`raise SystemExit`, or a return on one rank alone) leaves the others "
                    "waiting. Ending the job.\n")
                _abort(1)
            late = limit is not None and waited >= limit
            if not late and (warn is None or waited < warn or (ident, since) in told):
                continue
            told.add((ident, since))
            site = _user_site(ident)
            who = _world_rank()
            text = (f"[rank {who}] loopscale: rank {who} has waited {waited:.0f} s for the "
                    f"other ranks in {what} of {function}()"
                    + (f", called at {site}" if site else "")
                    + ". Every rank of the communicator must make the same distributed "
                    "calls in the same order; a rank that skips this one (an `if rank == "
                    "0:` around it, an exception caught on one rank, a loop that runs "
                    "another number of times) leaves the others waiting for ever. To "
                    "call a decorated function on one rank alone, call it inside `with "
                    "loopscale.level(\"threads\"):`, which makes no collective calls.")
            if late:
                sys.stderr.write(text + f" Ending the job (LOOPSCALE_MPI_TIMEOUT={limit:g}).\n")
                _abort(1)
            sys.stderr.write(text + " Still waiting; LOOPSCALE_MPI_TIMEOUT=<seconds> ends "
                             "the job instead.\n")
            _flush()


# -- a rank that ended while others wait for it ---------------------------------------
#
# A rank whose script ends (it returns, or raises ``SystemExit``, which no hook
# sees: CPython clears the exception before ``atexit`` runs) while the others
# wait for it in a distributed call's collective leaves them waiting for ever:
# it sits in ``MPI_Finalize``, which waits for them.  So at exit every rank
# enters a non-blocking barrier on a duplicate of ``COMM_WORLD`` kept for this
# (begun, non-blocking, as loopscale starts MPI, so that a rank that ends
# before any collective of loopscale's has it too; made with loopscale's first
# collective on the world when the script started MPI itself).  When every rank is
# ending the barrier completes at once.  A rank still alone there after
# ``EXIT_NOTICE_SECONDS`` sends each other rank a notice; a rank whose
# watchdog takes one while it waits in a distributed call that the ended rank
# belongs to ends the job with a message that names both.  After the barrier,
# every notice sent is received, so that none is left pending at MPI_Finalize.

#: How long a rank at its exit waits for the others there before telling them.
EXIT_NOTICE_SECONDS = 1.0

_NOTICE_TAG = 17
_NOTICE_LOCK = threading.Lock()
_NOTICES: Any = None  # the duplicate of COMM_WORLD the notices go through
_NOTICES_MADE: Any = None  # the request of its MPI_Comm_idup, until it completed
#: How long a rank at its exit waits for the duplicate begun at MPI's start
#: (every rank begins it as it starts MPI through loopscale).
NOTICES_MADE_SECONDS = 10.0
_NOTICES_TAKEN = 0  # notices this rank's watchdog received
_ENDED: dict[int, float] = {}  # world rank -> when its notice came
_EXITING = False  # this rank is at its exit: the watchdog leaves MPI alone
_SUBCOMMS = False  # loopscale used a communicator other than the world's group


def _world_group(communicator: Any) -> bool:
    """Whether *communicator* has ``COMM_WORLD``'s ranks in its order."""
    mpi = mpi_module()
    return mpi.Comm.Compare(communicator, mpi.COMM_WORLD) in (mpi.IDENT, mpi.CONGRUENT)


def _note_communicator(communicator: Any) -> None:
    """loopscale keeps state on *communicator*: when its ranks are not the world's,
    a waiting rank no longer knows which ranks a wait needs (no notice acts)."""
    global _SUBCOMMS
    if not _SUBCOMMS and not _world_group(communicator):
        _SUBCOMMS = True


def _start_notices(mpi: Any) -> None:
    """As loopscale starts MPI: begin the exit-notice duplicate of the world
    (``Idup``: the first collective on ``COMM_WORLD`` on every rank, which
    completes as the others start MPI; see above)."""
    global _NOTICES, _NOTICES_MADE
    if not launched() or mpi.Query_thread() < mpi.THREAD_MULTIPLE:
        return
    import atexit

    with _NOTICE_LOCK:
        _NOTICES, _NOTICES_MADE = mpi.COMM_WORLD.Idup()
    # after mpi4py's own (which finalizes MPI): atexit runs it first
    atexit.register(_at_exit)


def _notices_made(wait: float = 0.0) -> bool:
    """Whether the duplicate begun at MPI's start is complete (waiting up to
    *wait* seconds for it); the caller holds ``_NOTICE_LOCK``."""
    global _NOTICES_MADE
    if _NOTICES_MADE is None:
        return True
    until = time.monotonic() + wait
    while not _NOTICES_MADE.Test():
        if time.monotonic() >= until:
            return False
        time.sleep(0.002)
    _NOTICES_MADE = None
    return True


def _open_notices(communicator: Any) -> None:
    """In a collective on *communicator*: make the exit-notice duplicate of the
    world the first time (every rank reaches this at the same call), when it was
    not begun as MPI started (the script started MPI itself)."""
    global _NOTICES
    if _NOTICES is not None or not launched() or not _world_group(communicator):
        return
    mpi = mpi_module()
    if mpi.Query_thread() < mpi.THREAD_MULTIPLE:
        return  # the watchdog thread may not call MPI beside the main thread
    import atexit

    _NOTICES = communicator.Dup()
    # after mpi4py's own (which finalizes MPI): atexit runs it first
    atexit.register(_at_exit)


def _take_notices() -> None:
    """The watchdog: receive the notices of ranks that ended (see above)."""
    global _NOTICES_TAKEN
    with _NOTICE_LOCK:
        notices = _NOTICES
        if notices is None or _EXITING or is_finalized() or not _notices_made():
            return
        mpi = _MPI
        status = mpi.Status()
        while notices.Iprobe(source=mpi.ANY_SOURCE, tag=_NOTICE_TAG, status=status):
            source = status.Get_source()
            notices.Recv([bytearray(1), mpi.BYTE], source=source, tag=_NOTICE_TAG)
            _NOTICES_TAKEN += 1
            _ENDED.setdefault(source, time.monotonic())


def _finalizes_at_exit() -> bool:
    try:
        import mpi4py

        return mpi4py.rc.finalize is not False
    except Exception:  # noqa: BLE001 - pragma: no cover
        return False


def _at_exit() -> None:
    """This rank's script ended (see above): wait for the others at a barrier,
    telling them after ``EXIT_NOTICE_SECONDS``, then receive what was sent."""
    global _EXITING
    notices = _NOTICES
    if (notices is None or _EXIT_PENDING or is_finalized() or not _finalizes_at_exit()
            or threading.current_thread() is not threading.main_thread()):
        return  # a non-zero sys.exit: mpi4py aborts the job with its status
    mpi = _MPI
    with _NOTICE_LOCK:
        _EXITING = True
        if not _notices_made(NOTICES_MADE_SECONDS):
            return  # (a rank that never started MPI through loopscale)
    try:
        me, ranks = notices.Get_rank(), notices.Get_size()
        barrier = notices.Ibarrier()
        start = time.monotonic()
        sends: list[Any] = []
        one = bytearray(1)
        while not barrier.Test():
            if not sends and time.monotonic() - start >= EXIT_NOTICE_SECONDS:
                sends = [notices.Isend([one, mpi.BYTE], dest=r, tag=_NOTICE_TAG)
                         for r in range(ranks) if r != me]
            time.sleep(0.002)
        told = 1 if sends else 0
        total = notices.allreduce(told, op=mpi.SUM)
        for _ in range(total - told - _NOTICES_TAKEN):
            notices.Recv([bytearray(1), mpi.BYTE], source=mpi.ANY_SOURCE, tag=_NOTICE_TAG)
        mpi.Request.Waitall(sends)
    except Exception:  # noqa: BLE001 - pragma: no cover - MPI_Finalize follows anyway
        pass


def _ended_rank(since: float, now: float, tick: float) -> int | None:
    """A rank that ended at least *tick* ago, which a wait begun at *since* that
    has lasted *tick* needs (every watched wait is on the world's ranks unless
    loopscale used another communicator), or None."""
    if _SUBCOMMS or now - since < tick:
        return None
    gone = [r for r, when in _ENDED.items() if now - when >= tick]
    return min(gone) if gone else None


def install_abort_handler() -> None:
    """Arm abort-on-failure for this rank (see the module docstring).

    Does nothing outside an MPI job of more than one rank, and nothing the
    second time.  Does not initialise MPI (an aborting rank does, to abort).
    """
    global _INSTALLED, _PREVIOUS_EXCEPTHOOK
    with _LOCK:
        if _INSTALLED or not launched():
            return
        _INSTALLED = True
        import atexit

        # registered early, it runs late: after the script's own exit handlers
        atexit.register(_exit_before_mpi)
        if sys.excepthook is not _excepthook:
            _PREVIOUS_EXCEPTHOOK = sys.excepthook
            sys.excepthook = _excepthook
        if not getattr(sys.exit, "_loopscale_wrapper", False):
            sys.exit = _exit  # type: ignore[assignment]
        import builtins

        for name in ("exit", "quit"):
            current = getattr(builtins, name, None)
            if current is not None and not getattr(current, "_loopscale_wrapper", False):
                setattr(builtins, name, _Quitter(current))
