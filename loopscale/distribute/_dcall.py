"""An accelerated call with distributed arrays: each rank runs the iterations of its rows.

``accel`` hands a :class:`DistributedCall` the loop plan it built from global
views of the distributed arguments (see :mod:`loopscale.accel._distributed`).
The call then, on every rank, in the same order:

1. checks that the ranks agree (one ``Allreduce`` of a fingerprint of the
   iteration space, shapes, dtypes, scalars and row bounds);
2. decides which iterations each rank runs (:func:`._partition.owned_iterations`:
   those whose output row it holds; with reductions, whole blocks, see
   :func:`._partition.computed_segments`) and which rows of each array they
   touch (:func:`._partition.row_hull`, from the constant offsets the analysis
   found, ``u[i - 1]``, ``u[i + 1]``);
3. receives the rows it needs from their owners (``Irecv``/``Isend`` of whole
   rows on a private communicator) into the array's ghost rows, in place, or,
   when they do not fit there, into a temporary window;
4. runs its iterations with the ``threads`` level on its share of the node's
   cores, straight on the arrays' memory (on the calling thread alone when the
   last call of the same shape took less than :data:`INLINE_SECONDS` on one
   thread: a small stencil stepped in one process);
5. exchanges an 8-byte status and the reduction partials of its blocks with
   every rank (one ``Allgather``, or ``Allgatherv`` with partials), so a
   failure anywhere stops every rank, and every rank combines all partials
   in block order (``accel``'s epilogue): the result is bit for bit the
   ``serial`` level's;
6. sends rows it computed for other ranks (a reduction's last block running
   past its rows) to their owners.

Outputs stay distributed: a distributed argument the loop writes is written
in place; an array the function allocates (``np.empty_like(u)``) is filled on
each rank for its own iterations and returned as a new :class:`DistArray`.

A stencil is called many times with the same shapes, so what steps 2, 3, 5
and 6 work out from the plan's shape (a :class:`_Schedule`: iterations, row
ranges, messages, the exchange's layout and buffers) is remembered, keyed by
all it depends on, and so is the fingerprint of step 1, keyed by a cheap
description of the inputs; step 1's ``Allreduce`` itself runs every call.

And it is called with the same arrays (``u, v = v, u``): the call object made
for a function, a level and the very same distributed arrays is kept (holding
them only weakly: it is dropped when one of them is) and reused by the next
such call, with what it worked out for each shape of call (:class:`_Prepared`:
the schedule, the fingerprint, the halo and write-back messages as persistent
requests on byte views of the arrays' buffers).  What remains per call is the
agreement ``Allreduce``, starting and waiting for the messages, the kernel and
the status exchange (``Allgather`` of status words, or ``Allgatherv`` with
reduction partials).  After a big step every object a call touches is a cache
miss, so the path a repeated call takes is kept short (see accel's
``_call_express``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import collectives_allowed
from ..errors import DistributionError, LevelError, WorkerError
from ..schedule import ThreadsExecutor
from . import _mpi
from ._darray import DistArray, as_bytes, global_view
from ._level import (
    MPIExecutor,
    _LocalPlan,
    _record,
    agree,
    agreement_fields,
    check_agreement,
)
from ._partition import computed_segments, fingerprint, owned_iterations, row_bytes, row_hull

__all__ = ["DistributedCall"]

_HEADER = 8
_FETCH_TAG, _WRITE_TAG = 0, 16384

#: What a call works out from the plan's shape alone (which rank runs which
#: iterations, which rows go where, the layout of the combining exchange) is
#: kept per thread (a schedule holds the exchange's buffers, and two threads may
#: run calls on two communicators at once), keyed by everything it depends on,
#: so that a stencil stepped many times works it out once; the ranks' agreement
#: is still checked every call.
_LOCAL = threading.local()
#: The agreement fingerprint of a call, keyed by a cheap description of its inputs.
_PRINTS: dict[tuple[Any, ...], int] = {}
#: The ``mpi`` level's executor (workers, check) by communicator and options.
_LEVELS: dict[tuple[Any, ...], MPIExecutor] = {}
_CACHE_LIMIT = 256
#: A rank's iterations that took less than this on one thread run on the calling
#: thread alone (as accel's ``AUTO_SECONDS`` for the ``auto`` level).
INLINE_SECONDS = 200e-6
#: A run on the workers shorter than this (wall time) is measured once on the
#: calling thread: its time x workers says nothing (as accel's ``PROBE_SECONDS``).
PROBE_SECONDS = 2e-3
#: Call objects, by function, level, options and the identity of the arrays.
_CALLS: dict[tuple[Any, ...], DistributedCall] = {}


def call_for(**call: Any) -> DistributedCall:
    """The call object for one call (``DistArray.__loopscale_distributed__``).

    The one made earlier for the same function, level, options and the very same
    distributed arrays is reused when it is idle (what it worked out is kept);
    otherwise a new one is made and kept for the next such call, referring to
    the arrays weakly, so that it goes when one of them goes.
    """
    arrays = call["arrays"]
    try:
        options = call.get("options")
        # (the parameters and the names read after the loop follow from the analysis)
        key = (call["function"], id(call["analysis"]), call.get("level", "auto"),
               tuple(sorted(options.items())) if options else (),
               *[(name, id(x)) for name, x in arrays.items()])
        hash(key)
    except TypeError:  # an option that cannot be part of a key: nothing kept
        return DistributedCall(**call)
    found = _CALLS.get(key)
    if found is not None and found._claim(arrays):
        return found
    made = DistributedCall(**call)
    made._claim(arrays)
    if all(isinstance(x, DistArray) for x in arrays.values()):
        made._refs = tuple(weakref.ref(x, lambda _, key=key: _CALLS.pop(key, None))
                           for x in arrays.values())
        _remember(_CALLS, key, made)
    return made


def _local() -> Any:
    """This thread's schedules."""
    here = _LOCAL.__dict__
    if not here:
        here["schedules"] = {}
    return _LOCAL


class _Slot:
    """One distributed argument the loop touches."""

    __slots__ = ("index", "name", "array", "offsets", "written", "floors", "temp", "view",
                 "base", "first")

    def __init__(self, index: int, name: str, array: DistArray, offsets: tuple[int, ...],
                 written: bool, floors: tuple[int | None, ...] = ()) -> None:
        self.index = index              # position in the plan's arguments
        self.name = name
        self.array = array
        self.offsets = offsets
        self.written = written
        self.floors = floors            # per offset: least loop variable there (guards)
        self.temp: np.ndarray | None = None   # a temporary window, when ghosts are too few
        self.view: np.ndarray | None = None   # what the kernel gets
        self.base: np.ndarray | None = None   # the buffer whose row 0 is global row `first`
        self.first = 0


class _Schedule:
    """Where one call's rows and partials go: a pure function of the plan's shape.

    Row ranges are global row numbers; a message is ``(peer, tag, slot, c0, c1)``.
    """

    __slots__ = ("computed", "segs", "windows", "fetch_recvs", "fetch_sends",
                 "wb_local", "wb_sends", "wb_recvs", "ranges", "counts", "displs",
                 "send", "recv", "rowbytes", "has_parts", "my_status", "statuses",
                 "send_spec", "recv_spec")

    computed: list[tuple[int, int]]          # iterations [k0, k1) each rank computes
    segs: list[tuple[int, int, int, int]]    # this rank's kernel ranges (c0, c1, k0, k1)
    windows: list[tuple[int, int]]           # rows [a, b) this rank touches, per slot
    fetch_recvs: list[tuple[int, int, int, int, int]]
    fetch_sends: list[tuple[int, int, int, int, int]]
    wb_local: list[tuple[int, int, int]]     # (slot, c0, c1): own rows computed in a temp
    wb_sends: list[tuple[int, int, int, int, int]]
    wb_recvs: list[tuple[int, int, int, int, int]]
    has_parts: bool
    rowbytes: list[int]                      # bytes of one block's partial, per reduction
    ranges: list[tuple[int, int]]            # blocks [b0, b1) whose partials each rank sends
    counts: np.ndarray                       # the Allgatherv's bytes per rank...
    displs: np.ndarray                       # ... and where each rank's segment starts
    send: np.ndarray                         # this rank's status and partials, reused
    recv: np.ndarray                         # every rank's, reused
    my_status: np.ndarray                    # send's first 8 bytes as one int64
    statuses: np.ndarray | None              # recv as every rank's status (no partials)
    send_spec: list[Any] | None              # the Allgatherv's buffer arguments
    recv_spec: list[Any] | None


class _Prepared:
    """What one call object works out once for one shape of call.

    ``fixed``: every slot's rows fit in its array's buffer (own rows and ghost
    rows), so the kernel runs on the arrays' own views and every message is a
    byte view of a buffer, made here once.
    """

    __slots__ = ("specs", "fresh", "known", "sched", "fixed", "fetch", "write_back", "seconds",
                 "probed")

    specs: list[tuple[int, str, tuple[int, ...], bool, tuple[int | None, ...]]]  # _Slot args
    fresh: list[tuple[int, int, bool]]   # arrays the loop fills: index, offset, read after
    known: int | None                    # the agreement fingerprint (check "shapes")
    sched: _Schedule
    fixed: bool
    fetch: _Messages | None                # the halo messages, when fixed
    write_back: _Messages | None           # rows computed for other ranks, when fixed
    seconds: float                       # the last run's iterations on one thread (est.)
    probed: bool                         # run once on one thread to measure it


class _Messages:
    """The fixed messages of a prepared call, as persistent requests (``Send_init``
    / ``Recv_init``, made once): each call starts them all and waits."""

    __slots__ = ("requests", "nbytes")

    def __init__(self, call: DistributedCall, sends: Sequence[tuple[int, int, np.ndarray]],
                 recvs: Sequence[tuple[int, int, np.ndarray]]) -> None:
        self.requests: list[Any] = []
        if sends or recvs:
            pcomm, byte = call._private(), _mpi.mpi_module().BYTE
            self.requests = [pcomm.Recv_init([r, byte], source=peer, tag=tag)
                             for peer, tag, r in recvs]
            self.requests += [pcomm.Send_init([m, byte], dest=peer, tag=tag)
                              for peer, tag, m in sends]
        self.nbytes = sum(r.nbytes for _, _, r in recvs) + sum(m.nbytes for _, _, m in sends)

    def run(self, function: str) -> int:
        """Start every message and wait for all; the bytes moved by this rank."""
        requests = self.requests
        if not requests:
            return 0
        mpi = _mpi.mpi_module()
        mpi.Prequest.Startall(requests)
        _wait_for_rows(mpi, requests, function)
        return self.nbytes


def _describe_cheaply(value: Any) -> Any:
    """A hashable stand-in for what :func:`._partition.describe_inputs` says of
    *value* (the same inputs give the same key; a key never stands for two
    different descriptions)."""
    if isinstance(value, np.ndarray):
        return (value.dtype, value.shape)  # (equal dtypes: equal descriptions)
    if isinstance(value, (bool, int, float, complex, np.generic, str, type(None))):
        return (type(value), repr(value))  # repr: 0.0 and -0.0 differ, nan matches nan
    if isinstance(value, tuple):
        return (tuple, tuple(_describe_cheaply(v) for v in value))
    return type(value)


def _touched_arrays(plan: Any) -> Any:
    """(index, name, array, role) of each array argument of *plan*'s kernel that
    the loop indexes (not the partials; not the arrays used only for their shape)."""
    roles = plan.arrays
    for idx, (name, value) in enumerate(zip(plan.arg_names, plan.args, strict=False)):
        if idx < 4 or not isinstance(value, np.ndarray) or name.startswith("partial:"):
            continue
        role = roles.get(name)
        if role is not None:
            yield idx, name, value, role


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class DistributedCall:
    """Runs one accelerated call whose arguments include distributed arrays.

    Made (or reused, see :func:`call_for`) by
    ``DistArray.__loopscale_distributed__``; ``accel`` uses it as the executor
    of the plan (:meth:`run`), passes the result through :meth:`finish` and
    then calls :meth:`release`.  Not for direct use.
    """

    name = "distributed"
    collective = True

    def __init__(self, *, function: str, analysis: Any, arrays: Mapping[str, Any],
                 params: Sequence[str] = (), level: str = "auto",
                 options: Mapping[str, Any] | None = None,
                 read_after_loop: frozenset[str] = frozenset()) -> None:
        self.function = function
        self.read_after_loop = read_after_loop
        self.analysis = analysis
        self.params = params
        first_name = first = None
        filename = getattr(analysis, "filename", "")
        line = getattr(analysis, "lineno", None)
        where = (f"{function}() ({filename}:{line})" if filename and line else
                 f"{function}()")  # (the loop's line, where its rows are indexed)
        views = {}
        for name, x in arrays.items():
            if first is None:
                first_name, first = name, x
            if not isinstance(x, DistArray):
                raise DistributionError(
                    f"{where} got the distributed arguments {first_name!r} (a DistArray) "
                    f"and {name!r} (a {type(x).__name__}): use one kind of distributed array "
                    "per call.")
            if x._comm is not first._comm:
                raise DistributionError(
                    f"arguments {first_name!r} and {name!r} of {where} are distributed "
                    "over different communicators: make them over the same one.")
            if x._shape[0] != first._shape[0]:
                raise DistributionError(
                    f"arguments {first_name!r} and {name!r} of {where} are DistArrays "
                    f"of {first._shape[0]} and {x._shape[0]} rows: the rows of a distributed "
                    "call's arrays are its iterations, so every distributed argument needs "
                    f"the same number of rows. Make {name!r} with {first._shape[0]} rows "
                    f"(distribute.empty_like({first_name}) for an output), or pass a part "
                    "that every rank needs whole as a NumPy array (distribute.allgather).")
            if x._bkey != first._bkey:  # the row count is the last bound
                raise DistributionError(
                    f"arguments {first_name!r} and {name!r} of {where} are distributed "
                    f"differently ({first_name!r}: {first.shape[0]} rows at {first.bounds}; "
                    f"{name!r}: {x.shape[0]} rows at {x.bounds}), so the rows of one "
                    f"iteration live on different ranks. Use "
                    f"{name}.redistribute({first_name}.bounds), or make both the same way "
                    f"(distribute.empty_like({first_name})).")
            views[name] = x._view if x._view is not None else x._global_view()
        assert first is not None
        #: the distributed arguments, only during a call: by name, or (a call taken by
        #: reuse) in the order of ``views``
        self._given: Mapping[str, Any] | tuple[Any, ...] | None = arrays
        self.comm = first._comm
        self.bounds = first._bounds
        self._bkey = first._bkey
        self._me = first._rank
        self._nranks = len(self._bkey) - 1
        self.nrows = first._shape[0]
        self.views = views
        self._by_id = {id(v): name for name, v in views.items()}
        self._refs: tuple[Any, ...] = ()
        self._busy = threading.Lock()
        self._workers: int | None = None
        self._preps: dict[tuple[Any, ...], _Prepared] = {}
        self._mine = np.zeros(2, dtype=np.int64)  # the agreement's buffers
        self._max = None if self.comm is None else _mpi.mpi_module().MAX
        self._both = np.zeros(2, dtype=np.int64)
        self._begin()
        #: An invalid level option, when the arrays are over several ranks: raised
        #: by :meth:`run` on every rank, after the call's agreement (raised here,
        #: on one rank, it left the others waiting in the agreement for ever).
        self._invalid: Exception | None = None
        try:
            self._check_options(function, level, options)
        except (LevelError, DistributionError) as exc:
            if self.comm is None or self._nranks == 1:
                raise
            self._invalid, options = exc, None
        if level == "serial":
            workers: int | None = 1
            check = "shapes"
        elif level in ("mpi", "threads"):
            workers = options.get("max_workers") if options else None
            check = options.get("check", "shapes") if options else "shapes"
        else:
            workers, check = None, "shapes"
        key = (None if self.comm is None else id(self.comm), workers, check)
        executor = _LEVELS.get(key)
        if executor is None or executor.comm is not self.comm:
            executor = MPIExecutor(comm=self.comm, max_workers=workers, check=check)
            _remember(_LEVELS, key, executor)
        self._level = executor
        self._pcomm: Any = None

    def _check_options(self, function: str, level: str,
                       options: Mapping[str, Any] | None) -> None:
        """Refuse the level options a replicated call would refuse (an unknown
        name, ``chunksize=0``, a ``comm`` that is not a communicator) and a
        ``comm`` other than the one the arrays are distributed over."""
        if not options:
            return
        if level == "threads":
            ThreadsExecutor(**options)
            return
        if level != "mpi":
            return
        invalid = MPIExecutor(**options).invalid  # (deferred under a launcher)
        if invalid is not None:
            raise invalid  # LevelError naming the bad option
        comm = options.get("comm")
        if comm is None or self.comm is None or comm is self.comm:
            return
        from mpi4py import MPI

        if MPI.Comm.Compare(comm, self.comm) not in (MPI.IDENT, MPI.CONGRUENT):
            raise DistributionError(
                f"{function}() runs at level 'mpi' with comm={comm!r}, but its DistArray "
                "arguments are distributed over another communicator (a distributed call "
                "runs on the arrays' own): leave comm out, or make the arrays over that "
                "communicator (distribute.scatter(..., comm=comm)).")

    def _begin(self) -> None:
        """Forget what the previous call computed."""
        self._fresh: dict[int, tuple[np.ndarray, int]] = {}
        self._complete: list[tuple[np.ndarray, int]] = []  # fresh arrays read after the loop
        self._computed: list[tuple[int, int]] = []
        self._lo = self._step = 0
        self.bytes_moved = 0

    def _claim(self, arrays: Mapping[str, Any]) -> bool:
        """Take this call object for a call, when it is idle.  (While it is kept,
        the arrays and the analysis it was made for are alive: a kept call holds
        the analysis, and it is dropped when one of the arrays goes; so the
        identities in its key are theirs.)"""
        if not self._busy.acquire(blocking=False):
            return False
        self._given = arrays
        self._begin()
        return True

    @property
    def arrays(self) -> Mapping[str, Any] | None:
        """The distributed arguments by name (during a call)."""
        given = self._given
        if given is None or not isinstance(given, tuple):
            return given
        named = self._given = dict(zip(self.views, given, strict=True))
        return named

    def reuse(self, *arrays: Any) -> bool:
        """Take this call object for another call with *arrays* (the distributed
        arguments, in order; ``accel``'s next call like the last): only when they
        are the very arrays it was made for and it is idle."""
        refs = self._refs
        if not refs or len(arrays) != len(refs):
            return False
        for ref, x in zip(refs, arrays):  # noqa: B905 (the lengths were compared)
            if ref() is not x:
                return False
        if not self._busy.acquire(blocking=False):
            return False
        self._given = arrays  # (what the last call computed went at its release)
        return True

    def release(self) -> None:
        """The call is over (returned or raised): let go of its arrays."""
        self._given = None
        if self._fresh:
            self._fresh = {}
        if self._complete:
            self._complete = []
        if self._busy.locked():
            self._busy.release()

    def _private(self) -> Any:
        """The private communicator of the arrays' (made when they were)."""
        pcomm = self._pcomm
        if pcomm is None:
            pcomm = self._pcomm = _mpi.private_comm(self.comm, self.function)
        return pcomm

    # -- the executor ---------------------------------------------------------------------
    def run(self, plan: Any) -> None:
        """Run this rank's iterations of *plan*; see the module's description."""
        comm = self.comm
        nranks = self._nranks
        if nranks > 1 and not collectives_allowed():  # in a task of distribute.map
            _mpi.refuse_in_task(comm, f"{self.function}() with distributed arrays "
                                f"({', '.join(map(repr, self.views))})")
        by_id = self._by_id
        args = plan.args
        if self._invalid is not None:  # an invalid option: on every rank, at the agreement
            check_agreement(comm, plan, "shapes", extra=self._rows_field(),
                            no_values=tuple(self.views), distributed=True,
                            invalid=self._invalid)
        # (a loop, not a comprehension: see accel's _call_express on cold caches)
        described = [plan.n, plan.lo, plan.step, plan.block, plan.nblocks, plan.arg_names]
        for k in range(4, len(args)):
            v = args[k]
            name = by_id.get(id(v))
            if name is None:
                name = ("int", v) if type(v) is int else _describe_cheaply(v)
            described.append(name)
        pk = tuple(described)
        prep = self._preps.get(pk)
        if prep is None:
            prep = self._prepared(plan)
            _remember(self._preps, pk, prep)
        for idx, offset, whole in prep.fresh:
            value = args[idx]
            if whole:
                self._complete.append((value, offset))  # the code after the loop reads it
            else:
                self._fresh[id(value)] = (value, offset)
        if comm is not None and nranks > 1:
            self._agree(comm, plan, prep.known)
        if self._workers is None:  # collective the first time (node size): after the
            # agreement, before any rank can take another path
            self._workers = self._level._workers_for(comm, self.function)
        n = plan.n
        self._lo, self._step = plan.lo, plan.step
        if n <= 0:
            self._computed = [(0, 0)] * nranks
            return
        sched = prep.sched
        if sched is None:  # (after the agreement: a bad row range raises on every rank)
            sched = self._schedule_for(plan, prep)
        self._computed = sched.computed
        if prep.fixed:  # the arrays' own views and buffers
            slots: list[_Slot] = []
            moved = prep.fetch.run(self.function)  # type: ignore[union-attr]
        else:
            slots = self._slots(plan, prep.specs)
            moved = self._fetch(sched, slots)
            if any(args[s.index] is not s.view for s in slots):
                items = list(args)
                for s in slots:
                    items[s.index] = s.view
                args = tuple(items)
        failure: BaseException | None = None
        try:
            self._compute(plan, args, sched.segs, prep)
        except Exception as exc:  # every rank must still reach the exchange
            failure = exc
        parts = [a for name, a in zip(plan.arg_names, plan.args, strict=False)
                 if name.startswith("partial:")] if sched.has_parts else []
        if nranks > 1:
            moved += self._combine(plan, sched, parts, self._me, failure)
        elif failure is not None:
            raise failure
        if prep.fixed:
            moved += prep.write_back.run(self.function)  # type: ignore[union-attr]
        else:
            moved += self._write_back(sched, slots)
        for full, offset in self._complete:
            moved += self._allgather_rows(full, offset, self._me)
        self.bytes_moved = moved
        _record(plan.function, nranks, moved, "distributed")

    def _prepared(self, plan: Any) -> _Prepared:
        """What a call of this shape needs before the ranks agree (once per call
        object and shape); the schedule comes after (:meth:`_schedule_for`)."""
        prep = _Prepared()
        prep.specs = [(s.index, s.name, s.offsets, s.written, s.floors)
                      for s in self._slots(plan)]
        prep.fresh = self._fresh_specs(plan)
        prep.known = None
        if self.comm is not None and self._nranks > 1:
            if self._level.check == "shapes":
                prep.known = self._fingerprint(plan)
            elif self._level.check == "none":  # the kind of call and the option only
                prep.known = fingerprint(self._fields(plan, "none"))
        prep.sched = None
        prep.fixed = False
        prep.fetch = prep.write_back = None
        prep.seconds = float("inf")  # unknown: the first call uses the workers
        prep.probed = False
        return prep

    def _schedule_for(self, plan: Any, prep: _Prepared) -> _Schedule:
        """The schedule of *prep*'s calls (shared by all calls of the same shape on
        this thread), and their messages when the arrays' buffers hold every row."""
        me, nranks = self._me, self._nranks
        slots = self._slots(plan, prep.specs)
        parts = [a for name, a in zip(plan.arg_names, plan.args, strict=False)
                 if name.startswith("partial:")] if plan.has_reductions else []
        key = (plan.n, plan.lo, plan.step, plan.block, plan.nblocks, plan.has_reductions,
               self._bkey, me, tuple((s.index, s.offsets, s.written, s.floors,
                                      s.array._ghost) for s in slots),
               tuple((p.dtype.str, p.shape) for p in parts))
        schedules = _local().schedules
        sched = schedules.get(key)
        if sched is None:
            sched = self._schedule(plan, slots, parts, me, nranks)
            _remember(schedules, key, sched)
        self._prepare(sched, slots)
        if all(s.temp is None for s in slots):
            recvs, sends = self._messages(sched.fetch_recvs, sched.fetch_sends, slots)
            prep.fetch = _Messages(self, sends, recvs)
            sends, recvs = self._messages(sched.wb_sends, sched.wb_recvs, slots)
            prep.write_back = _Messages(self, sends, recvs)
            prep.fixed = True
        prep.sched = sched
        return sched

    def _agree(self, comm: Any, plan: Any, known: int | None) -> None:
        """The ranks' inputs agree: one ``Allreduce`` of the fingerprint (*known*,
        worked out once per shape of call, for the ``"shapes"`` check), through
        the same collectives as every call's agreement (``_level.agree``): a rank
        that meets another in another call (a replicated one) is told, on both."""
        check = self._level.check
        if known is None:  # "values" hashes the contents: every call
            self._check_agreement(comm, plan, check)
            return
        agree(comm, self.function, known, self._mine, self._both, self._max,
              lambda: self._fields(plan, check))

    def _fields(self, plan: Any, check: str) -> list[tuple[str, str]]:
        """What the ranks compare (``_level.agreement_fields``) for this call."""
        return agreement_fields(plan, check, self._rows_field(), tuple(self.views),
                                distributed=True)

    def _fingerprint(self, plan: Any) -> int:
        """The agreement fingerprint of *plan*'s inputs, remembered by a cheap
        description of them."""
        key = (plan.function, plan.n, plan.lo, plan.step, plan.block, plan.nblocks,
               plan.arg_names, self._bkey,
               tuple([_describe_cheaply(v) for v in plan.args[4:]]))
        known = _PRINTS.get(key)
        if known is None:
            known = fingerprint(self._fields(plan, "shapes"))
            _remember(_PRINTS, key, known)
        return known

    def _rows_field(self) -> list[tuple[str, str]]:
        return [("rows", ",".join(map(str, self._bkey)))]

    def _check_agreement(self, comm: Any, plan: Any, check: str) -> None:
        check_agreement(comm, plan, check, extra=self._rows_field(),
                        no_values=tuple(self.views), distributed=True)

    def _slots(self, plan: Any, specs: Sequence[tuple[int, str, tuple[int, ...], bool,
                                                      tuple[int | None, ...]]]
               | None = None) -> list[_Slot]:
        """The distributed arguments the loop touches (from *specs*, when known)."""
        arrays = self.arrays
        assert arrays is not None
        if specs is not None:
            by_id = self._by_id
            return [_Slot(idx, name, arrays[by_id[id(plan.args[idx])]], *spec)
                    for idx, name, *spec in specs]
        slots = []
        by_id = self._by_id
        for idx, name, value, role in _touched_arrays(plan):
            dist = by_id.get(id(value))
            if dist is not None:
                slots.append(_Slot(idx, name, arrays[dist], tuple(role.offsets or (0,)),
                                   bool(role.written), tuple(role.floors)))
        return slots

    def _fresh_specs(self, plan: Any) -> list[tuple[int, int, bool]]:
        """The NumPy arrays the loop writes (allocated by the function: they come
        back distributed), as (index, row offset, read whole after the loop)."""
        found = []
        by_id = self._by_id
        for idx, name, value, role in _touched_arrays(plan):
            if not role.written or id(value) in by_id:
                continue
            if name in self.params:
                raise DistributionError(
                    f"argument {name!r} of {plan.function}() is a NumPy array that the "
                    f"loop writes, while {', '.join(map(repr, self.views))} "
                    "distributed: each rank would write only its rows of it. Pass a "
                    f"distributed array for {name!r} (distribute.empty_like(...)), or "
                    "allocate it inside the function and return it (it comes back "
                    "distributed).")
            if role.axis != 0:
                raise DistributionError(
                    f"{plan.function}() writes the array {name!r} with the loop "
                    f"variable on axis {role.axis}; with distributed arguments, arrays "
                    "the loop fills are partitioned along axis 0: index them "
                    f"{name}[i, ...].")
            found.append((idx, int((role.offsets or (0,))[0]), name in self.read_after_loop))
        return found

    def _write_offset(self, slots: list[_Slot]) -> int:
        offs = {o for s in slots if s.written for o in s.offsets}
        if len(offs) > 1:
            names = [s.name for s in slots if s.written]
            raise DistributionError(
                f"{self.function}() writes the distributed array(s) {names} at different "
                f"offsets from the loop variable ({sorted(offs)}): with distributed arrays "
                "every write of an iteration must land in the same row.")
        return offs.pop() if offs else 0

    def _check_rows(self, slots: list[_Slot], n: int, lo: int, step: int) -> None:
        """Refuse a loop whose reads reach a row before 0 (NumPy would wrap it around
        to the end; a rank holds only its own rows) or whose writes leave the rows.

        A read under a condition that bounds the loop variable (``if i > 0:
        u[i - 1]``) counts from that bound.  A read past the last row is left to
        the function, as in the serial run: the ghost rows past the end are real
        memory, and a read that runs on every iteration was already refused
        with the argument's name by the compiled prologue."""
        first, last = lo, lo + (n - 1) * step
        gmin, gmax = min(first, last), max(first, last)
        var = getattr(self.analysis, "loop_var", None) or "i"
        for s in slots:
            floors = s.floors or (None,) * len(s.offsets)
            for off, floor in zip(s.offsets, floors, strict=True):
                start = gmin if floor is None or s.written else max(gmin, floor)
                if start > gmax:
                    continue  # its condition never holds in this loop
                low, high = start + off, gmax + off
                if low < 0 and s.written:
                    raise DistributionError(
                        f"the loop of {self.function}() writes row {low} of the distributed "
                        f"array {s.name!r} (`{s.name}[{var} - {-off}]` with {var} = {start}), "
                        f"which has rows 0..{self.nrows - 1}: start the loop at {var} = "
                        f"{-off} (a write counts from the loop's start, even under a "
                        "condition).")
                if low < 0:
                    need = -off
                    at = f"{s.name}[{var} - {need}]"
                    raise DistributionError(
                        f"the loop of {self.function}() reads row {low} of the distributed "
                        f"array {s.name!r} (`{at}` with {var} = {start}): NumPy would wrap it "
                        "around to the last rows, which another rank holds, and distributed "
                        f"arrays do not. Start the loop at {var} = {need}, or guard the read "
                        f"(`if {var} >= {need}:`, `... if {var} >= {need} else ...`); a periodic "
                        "boundary that relies on the wraparound needs the array whole on "
                        f"every rank (pass distribute.allgather({s.name}) instead).")
                if s.written and high >= self.nrows:
                    raise DistributionError(
                        f"the loop of {self.function}() writes row {high} of the distributed "
                        f"array {s.name!r}, which has rows 0..{self.nrows - 1}: the loop "
                        f"variable runs from {first} to {last} and {s.name!r} is indexed at "
                        f"offset {off}. Stop the loop so that every row it writes exists.")

    # -- the schedule: worked out once per shape of call ---------------------------------
    def _schedule(self, plan: Any, slots: list[_Slot], parts: list[np.ndarray], me: int,
                  nranks: int) -> _Schedule:
        n, lo, step = plan.n, plan.lo, plan.step
        dw = self._write_offset(slots)
        self._check_rows(slots, n, lo, step)
        bounds = [int(b) for b in self._bkey]
        segs = []
        for q in range(nranks):
            k0, k1 = owned_iterations(lo, step, n, bounds[q] - dw, bounds[q + 1] - dw)
            segs.append(computed_segments(k0, k1, n=n, block=plan.block,
                                          nblocks=plan.nblocks,
                                          reductions=plan.has_reductions))
        sc = _Schedule()
        sc.computed = computed = [(s[0][2], s[-1][3]) if s else (0, 0) for s in segs]
        sc.segs = segs[me]

        def hull(q: int, offsets: tuple[int, ...]) -> tuple[int, int]:
            k0, k1 = computed[q]
            return (0, 0) if k0 >= k1 else row_hull(lo, step, k0, k1, offsets)

        # halos: the rows each rank's iterations touch, from their owners
        sc.windows = [hull(me, s.offsets) for s in slots]
        sc.fetch_recvs, sc.fetch_sends = [], []
        for t, s in enumerate(slots):
            for q in range(nranks):
                a, b = hull(q, s.offsets)
                if a >= b:
                    continue
                for o in range(nranks):
                    if o == q:
                        continue
                    c0, c1 = max(a, bounds[o]), min(b, bounds[o + 1])
                    if c0 >= c1:
                        continue
                    if q == me:
                        sc.fetch_recvs.append((o, _FETCH_TAG + t, t, c0, c1))
                    elif o == me:
                        sc.fetch_sends.append((q, _FETCH_TAG + t, t, c0, c1))
        # write-back: rows a rank computed that another rank holds
        sc.wb_local, sc.wb_sends, sc.wb_recvs = [], [], []
        for t, s in enumerate(slots):
            if not s.written:
                continue
            for q in range(nranks):
                w0, w1 = hull(q, s.offsets)
                if w0 >= w1:
                    continue
                for o in range(nranks):
                    c0, c1 = max(w0, bounds[o]), min(w1, bounds[o + 1])
                    if c0 >= c1:
                        continue
                    if q == me and o == me:
                        sc.wb_local.append((t, c0, c1))
                    elif q == me:
                        sc.wb_sends.append((o, _WRITE_TAG + t, t, c0, c1))
                    elif o == me:
                        sc.wb_recvs.append((q, _WRITE_TAG + t, t, c0, c1))
        # the combining exchange: every rank's status and its blocks' partials
        sc.has_parts = bool(parts)
        sc.rowbytes = [row_bytes(p) for p in parts]
        sc.ranges = [(s[0][0], s[-1][1]) if (s and parts) else (0, 0) for s in segs]
        counts = np.array([_HEADER + (b1 - b0) * sum(sc.rowbytes) for b0, b1 in sc.ranges],
                          dtype=np.int64)
        displs = np.zeros_like(counts)
        np.cumsum(counts[:-1], out=displs[1:])
        sc.counts, sc.displs = counts, displs
        sc.send = np.zeros(int(counts[me]), dtype=np.uint8)
        sc.recv = np.zeros(int(counts.sum()), dtype=np.uint8)
        sc.my_status = sc.send[:_HEADER].view(np.int64)
        sc.statuses = None if parts else sc.recv.view(np.int64)  # status words only
        sc.send_spec = sc.recv_spec = None  # (made at the first exchange)
        return sc

    # -- moving rows ------------------------------------------------------------------------
    def _prepare(self, sched: _Schedule, slots: list[_Slot]) -> None:
        """Each slot's view for the kernel: the array's own memory when its window fits
        in its rows and ghost rows, else a temporary window holding its own rows."""
        me = self._me
        q0, q1 = self._bkey[me], self._bkey[me + 1]
        for s, (a, b) in zip(slots, sched.windows, strict=True):
            x = s.array
            ghost = x._ghost
            if a >= b or (a >= q0 - ghost and b <= q1 + ghost):
                s.view = x._view if x._view is not None else x._global_view()
                s.base, s.first = x._buf, q0 - ghost
            else:
                s.temp = np.empty((b - a, *x._shape[1:]), dtype=x._dtype)
                s.view = global_view(s.temp, a, x._shape)
                s.base, s.first = s.temp, a
                c0, c1 = max(a, q0), min(b, q1)
                if c0 < c1:
                    s.temp[c0 - a:c1 - a] = x.local[c0 - q0:c1 - q0]

    def _messages(self, in_slots: list[tuple[int, int, int, int, int]],
                  in_arrays: list[tuple[int, int, int, int, int]], slots: list[_Slot]
                  ) -> tuple[list[tuple[int, int, np.ndarray]],
                             list[tuple[int, int, np.ndarray]]]:
        """Messages (peer, tag, t, c0, c1) as (peer, tag, bytes): rows *in_slots* in
        each slot's buffer (the kernel's side), rows *in_arrays* in the arrays' own
        rows.  Halos: received into the slots, sent from the arrays; write-back:
        sent from the slots, received into the arrays."""
        mine = self._bkey[self._me]
        kernel_side = [(peer, tag, as_bytes(slots[t].base[c0 - slots[t].first:
                                                          c1 - slots[t].first]))
                       for peer, tag, t, c0, c1 in in_slots]
        array_side = []
        for peer, tag, t, c0, c1 in in_arrays:
            x = slots[t].array
            g = x._ghost - mine
            array_side.append((peer, tag, as_bytes(x._buf[c0 + g:c1 + g])))
        return kernel_side, array_side

    def _fetch(self, sched: _Schedule, slots: list[_Slot]) -> int:
        self._prepare(sched, slots)
        if not (sched.fetch_recvs or sched.fetch_sends):
            return 0
        recvs, sends = self._messages(sched.fetch_recvs, sched.fetch_sends, slots)
        return _transfer(self, sends, recvs)

    def _write_back(self, sched: _Schedule, slots: list[_Slot]) -> int:
        mine = self._bkey[self._me]
        for t, c0, c1 in sched.wb_local:
            s = slots[t]
            if s.temp is not None:  # own rows computed in a temporary window
                a = s.first
                s.array.local[c0 - mine:c1 - mine] = s.temp[c0 - a:c1 - a]
        if not (sched.wb_sends or sched.wb_recvs):
            return 0
        sends, recvs = self._messages(sched.wb_sends, sched.wb_recvs, slots)
        return _transfer(self, sends, recvs)

    # -- computing --------------------------------------------------------------------------
    def _compute(self, plan: Any, args_t: tuple[Any, ...],
                 segs: list[tuple[int, int, int, int]], prep: _Prepared) -> None:
        """This rank's kernel ranges *segs*, on its workers -- or on this thread
        alone when the last call of this shape took less than
        :data:`INLINE_SECONDS` on one thread (waking the workers would cost more
        than they save: a small stencil in one process, or on a rank with cores)."""
        if not segs:
            return
        workers = self._workers
        kernel = plan.kernel
        inline = workers == 1 or prep.seconds < INLINE_SECONDS
        t0 = time.perf_counter()
        used = 1
        for c0, c1, _, _ in segs:
            if c1 - c0 <= 1 or inline:
                kernel(c0, c1, *args_t)
                continue
            # chunks of whole blocks, about 16 per worker: with reductions too, since a
            # chunk computes each of its blocks' partials in order (one chunk per block
            # was 1000 one-row chunks a call for a stencil, 3x slower than one thread)
            step = max(1, -(-(c1 - c0) // (16 * workers)))
            chunks = [(a, min(a + step, c1)) for a in range(c0, c1, step)]
            sub = plan if args_t is plan.args else _with_args(plan, args_t)
            ThreadsExecutor(max_workers=workers).run(_LocalPlan(sub, chunks))
            used = max(used, min(workers, len(chunks)))
        if workers > 1:
            took = time.perf_counter() - t0
            if inline:
                prep.seconds, prep.probed = took, True  # measured on one thread: exact
            elif took < PROBE_SECONDS and not prep.probed:
                # time x workers overstates a short run, which is mostly the
                # workers' wake-up (0.4 ms for 16 workers on a VM): measure it
                # once on this thread, or it would never be found short enough
                prep.seconds = 0.0
            else:
                prep.seconds = took * used

    def _combine(self, plan: Any, sched: _Schedule, parts: list[np.ndarray], me: int,
                 failure: BaseException | None) -> int:
        """One exchange (``Allgather`` of status words, or ``Allgatherv`` with the
        partials): every rank's status and its blocks' reduction partials."""
        send, recv, displs = sched.send, sched.recv, sched.displs
        sched.my_status[0] = 0 if failure is None else 1
        if failure is None and parts:
            pos = _HEADER
            b0, b1 = sched.ranges[me]
            for p, rb in zip(parts, sched.rowbytes, strict=True):
                nb = (b1 - b0) * rb
                if nb:
                    send[pos:pos + nb].view(p.dtype).reshape((b1 - b0,) + p.shape[1:])[...] = \
                        p[b0:b1]
                pos += nb
        _mpi.wait_begin("the exchange of results", plan.function)
        try:
            if sched.statuses is not None:  # status words only: an Allgather is cheaper
                self.comm.Allgather(sched.my_status, sched.statuses)
            else:
                if sched.send_spec is None:  # (made once: mpi4py reads them each call)
                    byte = _mpi.mpi_module().BYTE
                    sched.send_spec = [send, byte]
                    sched.recv_spec = [recv, (sched.counts, displs), byte]
                self.comm.Allgatherv(sched.send_spec, sched.recv_spec)
        finally:
            _mpi.wait_end()
        status = sched.statuses
        if status is None:  # status words between the partials (maybe unaligned): copied
            status = recv[displs[:, None] + np.arange(_HEADER)].view(np.int64).ravel()
        if any(status.tolist()):  # (ndarray.any() costs six times as much)
            if failure is not None:
                raise failure
            failed = [r for r, st in enumerate(status.tolist()) if st]
            raise _mpi.mark_secondary(WorkerError(
                f"{plan.function}(): the loop raised on MPI rank(s) "
                f"{', '.join(map(str, failed))} (its traceback is printed there); this rank "
                "stops too."))
        if parts:
            for r, d in enumerate(displs.tolist()):
                if r == me:
                    continue
                pos = d + _HEADER
                c0, c1 = sched.ranges[r]
                for p, rb in zip(parts, sched.rowbytes, strict=True):
                    nb = (c1 - c0) * rb
                    if nb:
                        p[c0:c1] = recv[pos:pos + nb].view(p.dtype).reshape(
                            (c1 - c0,) + p.shape[1:])
                    pos += nb
        return int(recv.nbytes)

    # -- the result ---------------------------------------------------------------------------
    def finish(self, result: Any) -> Any:
        """*result* with global views turned back into distributed arrays, and arrays
        the loop filled (allocated by the function) returned distributed."""
        if isinstance(result, tuple):
            return tuple(self.finish(v) for v in result)
        if not isinstance(result, np.ndarray):
            return result
        name = self._by_id.get(id(result))
        if name is not None:
            return self.arrays[name]
        fresh = self._fresh.get(id(result))
        if fresh is not None:
            return self._distribute_fresh(*fresh)
        return result

    def _allgather_rows(self, full: np.ndarray, offset: int, me: int) -> int:
        """Give every rank the rows of *full* (an array the function allocated and the
        loop filled) that the other ranks computed, in place: the code after the
        loop reads it."""
        if self.comm is None or len(self.bounds) <= 2:
            return 0
        mpi = _mpi.mpi_module()
        bounds = self._fresh_bounds(full.shape[0], offset)
        rowbytes = row_bytes(full)
        counts = (np.diff(bounds) * rowbytes).astype(np.int64)
        displs = (bounds[:-1] * rowbytes).astype(np.int64)
        target = full if full.flags.c_contiguous else np.ascontiguousarray(full)
        _mpi.wait_begin("the exchange of the rows of an array it filled", self.function)
        try:
            self.comm.Allgatherv(mpi.IN_PLACE, [as_bytes(target), (counts, displs), mpi.BYTE])
        finally:
            _mpi.wait_end()
        if target is not full:
            full[...] = target
        return int(counts.sum())

    def _fresh_bounds(self, length: int, offset: int) -> np.ndarray:
        """Rank ``q`` holds rows ``bounds[q]:bounds[q+1]`` of an array the loop filled
        at ``i + offset``: the rows of the iterations it ran (all rows covered)."""
        nranks = len(self.bounds) - 1
        bounds = np.zeros(nranks + 1, dtype=np.int64)
        bounds[nranks] = length
        for q in range(nranks - 1, 0, -1):
            k0, k1 = self._computed[q]
            if k0 < k1:
                h0, _ = row_hull(self._lo, self._step, k0, k1, (offset,))
                bounds[q] = min(max(h0, 0), bounds[q + 1])
            else:
                bounds[q] = bounds[q + 1]
        return bounds

    def _distribute_fresh(self, full: np.ndarray, offset: int) -> DistArray:
        bounds = self._fresh_bounds(full.shape[0], offset)
        me = 0 if self.comm is None else self.comm.Get_rank()
        out = DistArray._allocate(full.shape, full.dtype, bounds, self.comm,
                                  function=self.function)
        out.local[...] = full[bounds[me]:bounds[me + 1]]
        return out


def _with_args(plan: Any, args: tuple[Any, ...]) -> Any:
    import dataclasses

    return dataclasses.replace(plan, args=args)


def _transfer(call: DistributedCall, sends: Sequence[tuple[int, int, np.ndarray]],
              recvs: Sequence[tuple[int, int, np.ndarray]]) -> int:
    """Send and receive blocks of bytes (peer, tag, ``uint8`` array) on the private
    communicator of *call*'s; returns the bytes moved by this rank."""
    if not (sends or recvs):
        return 0
    mpi = _mpi.mpi_module()
    pcomm = call._private()
    byte = mpi.BYTE
    reqs = [pcomm.Irecv([r, byte], source=peer, tag=tag) for peer, tag, r in recvs]
    reqs += [pcomm.Isend([s, byte], dest=peer, tag=tag) for peer, tag, s in sends]
    _wait_for_rows(mpi, reqs, call.function)
    return sum(r.nbytes for _, _, r in recvs) + sum(s.nbytes for _, _, s in sends)


def _wait_for_rows(mpi: Any, requests: list[Any], function: str) -> None:
    """Wait for every row message of a call of *function*, watched (see
    :func:`._mpi.wait_begin`)."""
    _mpi.wait_begin("the exchange of rows", function)
    try:
        mpi.Request.Waitall(requests)
    finally:
        _mpi.wait_end()
