"""The ``mpi`` level's executor: a loop plan's blocks across MPI ranks (replicated mode).

Every rank runs the decorated function with the same inputs (plain NumPy
arrays present on every rank), so every rank builds the same plan.  The
executor then

1. checks that the ranks agree — one ``Allreduce`` of a 64-bit fingerprint of
   the kind of call, the iteration space, dtypes, shapes and scalar arguments,
   and of a sample of the elements of the arrays the loop only reads (O(1); it
   catches per-rank blocks passed where every rank needs the whole array); on
   a mismatch every rank learns every rank's description and where its call
   was made, and raises the same :class:`~loopscale.errors.ArgumentValueError`,
   nobody is left waiting.  A call with distributed arrays agrees through the
   very same collectives (:func:`agree`), so a rank that skipped one and went
   on to a replicated call meets the other ranks there and is told;
2. deals the blocks to the ranks in chunks (:func:`._partition.deal`), and
   runs this rank's chunks with the ``threads`` level on its share of the
   node's cores (usable cores / ranks on this node);
3. makes every rank hold the full outputs with one ``Allgatherv`` of bytes:
   each rank packs, for every written array, the elements its iterations
   wrote along the loop's axis (:func:`._partition.pieces`) and, for every
   reduction, its blocks' partials; each rank unpacks the others' segments.
   Sizes and places follow from the plan, so only data travels, through the
   buffer interface (no pickle).  Each segment starts with an 8-byte status,
   so a rank whose chunk raised still takes part and every rank learns of
   the failure in the same collective.

``accel`` then combines the partials in block order and runs the epilogue on
every rank: every rank returns what the ``serial`` level returns, to the bit.

Inside a task of ``distribute.map`` (this rank alone) the executor runs the
plan on this rank's threads when the level is ``auto``, and refuses an
explicit ``level("mpi")`` (:func:`._mpi.refuse_in_task`).

Without a launcher (one process, ``comm`` not given) MPI is not started and
the plan runs on the ``threads`` level; a loop whose written arrays cannot be
located along the loop's axis runs whole on every rank (correct, not faster).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import config
from ..errors import ArgumentValueError, LevelError, WorkerError, relocated
from ..schedule import ThreadsExecutor
from . import _mpi
from ._partition import (
    _DISTRIBUTED_CALL,
    CHECK,
    CHECKS,
    ERROR,
    deal,
    describe_inputs,
    error_field,
    fingerprint,
    mismatch_message,
    pieces,
    read_window,
    row_bytes,
    same_call,
    sample_bytes,
    shared_error,
)

__all__ = ["MPIExecutor"]

_HEADER = 8  # bytes of status in front of each rank's segment
#: Whether replicated mode's default check compares a sample of the elements of
#: the arrays the loop only reads (see ``_partition.describe_inputs``).
SAMPLED = True


def _run_chunks(v0: int, v1: int, chunks: np.ndarray, kernel: Any, *args: Any) -> None:
    """Run this rank's chunks ``v0 .. v1-1`` (global block ranges in *chunks*)."""
    for v in range(v0, v1):
        kernel(int(chunks[v, 0]), int(chunks[v, 1]), *args)


class _LocalPlan:
    """This rank's share of a plan, as the ``threads`` executor reads a plan."""

    __slots__ = ("plan", "chunks", "nblocks", "function", "kernel", "args")

    def __init__(self, plan: Any, chunks: Sequence[tuple[int, int]] | np.ndarray) -> None:
        self.plan = plan
        # (k, 2) int64: global block ranges (an array of them is taken as it is)
        self.chunks = np.asarray(chunks, dtype=np.int64).reshape(-1, 2)
        self.nblocks = len(chunks)
        self.function = plan.function
        self.kernel = _run_chunks
        self.args = (self.chunks, plan.kernel, *plan.args)

    def iteration_values(self, v0: int, v1: int) -> tuple[int, int]:
        return self.plan.iteration_values(int(self.chunks[v0, 0]), int(self.chunks[v1 - 1, 1]))


#: A rank's share of a call shorter than this (seconds), on one thread, runs its
#: chunks straight from here at the next call of that shape (:func:`_run_here`).
_SHORT = 0.05


def _run_here(plan: Any, chunks: np.ndarray) -> None:
    """This rank's *chunks* of *plan* one after another on this thread, an
    exception located as the ``threads`` level locates it: what the ``threads``
    level does with one worker, less its machinery (about 16 µs a call, a tenth
    of what a pass of a time loop cost above the hand-written program), for a
    share short enough that Ctrl-C needs no pieces (:data:`_SHORT`)."""
    kernel, args = plan.kernel, plan.args
    for c0, c1 in chunks.tolist():
        try:
            kernel(c0, c1, *args)
        except Exception as exc:
            first, last = plan.iteration_values(c0, c1)
            new = relocated(exc, f"iterations {first}..{last} of the loop in {plan.function}()")
            if new is exc:
                raise
            raise new from exc


class _Prepared:
    """What a replicated call of one shape works out once, and every later call of
    that shape reuses (a time loop makes the same call thousands of times):
    which blocks each rank runs, which rows of each exchanged array each rank
    sends (one slice or one index array per array), the ``Allgatherv`` counts,
    and the send and receive buffers with their views for every rank's rows."""

    __slots__ = ("comm", "local", "sels", "counts", "displs", "send", "recv", "send_rows",
                 "recv_rows", "moved", "held", "head", "words", "heads", "short")

    def __init__(self, comm: Any, plan: Any, views: Sequence[np.ndarray],
                 offsets: Sequence[tuple[int, ...] | None], chunksize: int | None,
                 workers: int) -> None:
        nranks, me = comm.Get_size(), comm.Get_rank()
        dealt = deal(plan.nblocks, nranks, chunksize)
        mine = dealt[me]
        if workers == 1:  # one thread: adjacent chunks are one kernel call
            mine = _merged_chunks(mine)
        self.comm = comm
        self.local = np.asarray(mine, dtype=np.int64).reshape(-1, 2)
        #: whether this rank's share took less than _SHORT seconds at the last call
        self.short = False
        #: sels[r][s]: the rows of exchanged array s that rank r's blocks write
        #: (None: none), with their number
        self.sels: list[list[tuple[Any, int]]] = []
        counts = []
        for r in range(nranks):
            row = []
            total = _HEADER
            for view, offs in zip(views, offsets, strict=True):
                length = view.shape[0]
                if offs is None:  # a reduction's partials: one per block
                    found: list[Any] = [slice(c0, c1, 1) for c0, c1 in dealt[r]]
                else:
                    found = pieces(dealt[r], block=plan.block, n=plan.n, lo=plan.lo,
                                   step=plan.step, offsets=offs, length=length)
                sel = _one_selection(found, length)
                row.append(sel)
                total += sel[1] * row_bytes(view)
            self.sels.append(row)
            counts.append(-(-total // _HEADER) * _HEADER)  # (every status word aligned)
        self.counts = np.array(counts, dtype=np.int64)
        self.displs = np.zeros_like(self.counts)
        np.cumsum(self.counts[:-1], out=self.displs[1:])
        self.send = np.empty(int(self.counts[me]), dtype=np.uint8)
        self.recv = np.empty(int(self.counts.sum()), dtype=np.uint8)
        self.send_rows = _rows_in(self.send, 0, views, self.sels[me])
        self.recv_rows = [None if r == me else
                          _rows_in(self.recv, int(self.displs[r]), views, self.sels[r])
                          for r in range(nranks)]
        self.moved = (int(self.counts[me]) * (nranks - 1)
                      + int(self.counts.sum() - self.counts[me]))
        self.held = self.send.nbytes + self.recv.nbytes + sum(
            sel.nbytes for row in self.sels for sel, _ in row if isinstance(sel, np.ndarray))
        #: this rank's status word; every rank's, as words of the receive buffer
        self.head = self.send[:_HEADER].view(np.int64)
        self.words = self.recv.view(np.int64)
        self.heads = self.displs // _HEADER


def _merged_chunks(chunks: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """*chunks* with each run of adjacent ones made one (the zigzag deal gives
    the first and last ranks pairs of them)."""
    out: list[tuple[int, int]] = []
    for c0, c1 in chunks:
        if out and out[-1][1] == c0:
            out[-1] = (out[-1][0], c1)
        else:
            out.append((c0, c1))
    return out


def _one_selection(found: Sequence[Any], length: int) -> tuple[Any, int]:
    """The pieces *found* (slices and index arrays along an axis of *length*) as
    one selection that picks the same rows in the same order: a slice when they
    continue one another, else one index array; and how many rows it picks."""
    if not found:
        return None, 0
    ranges = [range(*p.indices(length)) if isinstance(p, slice) else None for p in found]
    if all(r is not None for r in ranges):
        runs = [r for r in ranges if r is not None and len(r)]
        if not runs:
            return None, 0
        start, step, count = runs[0].start, runs[0].step, 0
        for r in runs:
            if step <= 0 or r.start != start + count * step or (len(r) > 1 and r.step != step):
                break
            count += len(r)
        else:
            return slice(start, start + count * step, step), count
    idx = np.concatenate([np.arange(r.start, r.stop, r.step, dtype=np.int64)
                          if r is not None else np.asarray(p, dtype=np.int64)
                          for r, p in zip(ranges, found, strict=True)])
    return (idx if idx.size else None), int(idx.size)


def _rows_in(buf: np.ndarray, start: int, views: Sequence[np.ndarray],
             sels: Sequence[tuple[Any, int]]) -> list[np.ndarray | None]:
    """The rows of each exchanged array as they lie in *buf* from byte *start* on
    (after the status word), one after the other: views of *buf*, shaped as
    *views* are (see :func:`_as_rows`: a row is then one element)."""
    pos = start + _HEADER
    out: list[np.ndarray | None] = []
    for view, (_, k) in zip(views, sels, strict=True):
        nb = k * row_bytes(view)
        out.append(buf[pos:pos + nb].view(view.dtype).reshape((k,) + view.shape[1:])
                   if k else None)
        pos += nb
    return out


def _as_rows(view: np.ndarray) -> np.ndarray:
    """*view* (the exchanged axis first) as a 1-D array of its rows, each one
    element of a raw-bytes dtype, when its rows are contiguous: picking rows by
    an index array is then a copy of bytes per row (8 µs became 1 µs for 750
    rows of two float64); otherwise *view* itself."""
    if view.ndim < 2 or not view.flags.c_contiguous or view.dtype.hasobject:
        return view
    rowbytes = row_bytes(view)
    if rowbytes <= 0 or view.shape[0] == 0:
        return view
    return view.reshape(view.shape[0], -1).view(np.dtype((np.void, rowbytes))).reshape(
        view.shape[0])


#: Prepared calls by their shape (see :class:`_Prepared`), the newest last.
_PREPARED: dict[tuple[Any, ...], _Prepared] = {}
#: How many shapes of call are kept.
_PREPARED_KEPT = 16
#: The most memory a kept prepared call may hold (its buffers and index arrays):
#: a bigger exchange costs more to move than to allocate, and would hold its
#: memory (16 of them at most: 64 MiB).
_PREPARED_BYTES = 4 << 20


_LAST: dict[str, Any] = {}


def _record(function: str, ranks: int, moved: int, mode: str) -> None:
    """What the last ``mpi``-level call moved (:func:`last_call_stats`)."""
    _LAST["function"] = function
    _LAST["ranks"] = ranks
    _LAST["bytes_moved"] = moved
    _LAST["mode"] = mode


def last_call_stats() -> dict[str, Any]:
    """What the last ``mpi``-level call on this rank moved.

    Returns
    -------
    dict
        ``{"function": str, "ranks": int, "bytes_moved": int, "mode": str}``
        (this rank's bytes sent plus received in the exchange; *mode*:
        ``"replicated"`` — blocks dealt, outputs exchanged —, ``"replicated,
        whole loop on every rank"`` — the written arrays could not be located
        along the loop's axis, so every rank ran every block and nothing
        moved —, or ``"distributed"``), or an empty dict before the first
        call.  A loop that accel does not parallelise (a running sum over its
        own output) never reaches the ``mpi`` level and is not reported.
    """
    return dict(_LAST)


def _validate_options(comm: Any, max_workers: Any, chunksize: Any, check: Any,
                      unknown: dict[str, Any]) -> None:
    """Raise :class:`LevelError` naming the first invalid option of the ``mpi`` level."""
    if unknown:
        raise LevelError(f"unknown option(s) for the 'mpi' level: {sorted(unknown)!r}; "
                         "valid: comm, max_workers, chunksize, check.")
    if max_workers is not None and (isinstance(max_workers, bool)
                                    or not isinstance(max_workers, int)
                                    or max_workers < 1):
        raise LevelError(f"max_workers must be greater than 0; got {max_workers!r}.")
    if chunksize is not None and (isinstance(chunksize, bool)
                                  or not isinstance(chunksize, int) or chunksize < 1):
        raise LevelError(f"chunksize must be a positive number of blocks; "
                         f"got {chunksize!r}.")
    if check not in CHECKS:
        raise LevelError(f"check must be one of {', '.join(map(repr, CHECKS))}; "
                         f"got {check!r}.")
    if comm is not None and not (hasattr(comm, "Allgatherv")
                                 and hasattr(comm, "Get_size")):
        raise LevelError(f"comm must be an mpi4py communicator; got {comm!r}.")


class MPIExecutor:
    """The ``mpi`` level: a loop's blocks dealt across MPI ranks, outputs on every rank.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The ranks to use (default: ``COMM_WORLD`` when launched with more than
        one rank; without a launcher, this process alone, MPI not started).
    max_workers : int, optional
        Threads per rank (default: the usable cores divided by the ranks on
        this node, at least one).
    chunksize : int, optional
        Blocks per dealt chunk (default: about ``nblocks / (16 * ranks)``).
    check : {"shapes", "values", "none"}
        What is verified to agree across ranks before computing: iteration
        space, dtypes, shapes, scalar arguments and up to 16 evenly spaced
        elements of each array the loop only reads (``"shapes"``, default),
        the whole contents of the arrays the loop only reads (``"values"``,
        hashes them), or nothing (``"none"``).  Arrays the loop writes are
        compared by dtype and shape only (an output buffer's old contents
        may differ by rank).

    Examples
    --------
    >>> import loopscale
    >>> with loopscale.level("mpi"):  # doctest: +SKIP
    ...     acc = nbody(pos, mass)    # under mpiexec -n 4: every rank gets acc
    """

    name = "mpi"
    #: Every rank must take the same path through a call (accel's ``auto``
    #: must not decide per rank, from a timing, to skip this executor).
    collective = True

    def __init__(self, comm: Any = None, max_workers: int | None = None,
                 chunksize: int | None = None, check: str = "shapes",
                 **unknown: Any) -> None:
        #: An invalid option, when this rank is one of several: raised by
        #: :meth:`run` on every rank, after the call's agreement (raised here, on
        #: one rank, it left the others waiting in the agreement for ever).
        self.invalid: LevelError | None = None
        try:
            _validate_options(comm, max_workers, chunksize, check, unknown)
        except LevelError as exc:
            if not _mpi.launched():
                raise
            self.invalid = exc
            comm = comm if comm is None or hasattr(comm, "Allreduce") else None
            max_workers = chunksize = None
            check = "shapes"
        self.comm = comm
        self.chunksize = chunksize
        self.check = check
        self._max_workers = max_workers
        #: (communicator, threads per rank) last worked out: the communicator object
        #: is held, so an identity test stands for it (the node count is kept on the
        #: communicator itself, see ``_mpi.node_size``)
        self._workers: tuple[Any, int] | None = None
        self.bytes_moved = 0  # by this rank's last run: sent + received

    # -- where ------------------------------------------------------------------
    def _communicator(self) -> Any:
        if self.comm is not None:
            return self.comm
        if not _mpi.is_initialized() and not _mpi.launched():  # (the cheaper test first)
            return None  # one process: no MPI at all
        return _mpi.comm()

    @property
    def max_workers(self) -> int:
        """Threads this rank runs its blocks on."""
        return self._workers_for(self._communicator())

    def _workers_for(self, comm: Any, function: str = "the 'mpi' level") -> int:
        """Threads per rank on *comm* (collective the first time for a communicator:
        the ranks count the ranks on their node; *function* names the call)."""
        if self._max_workers is not None:
            if comm is not None:
                # every rank counts, whatever its max_workers: a rank given
                # max_workers that skipped the count left the others waiting in it
                _mpi.node_size(comm, function)
            return self._max_workers
        known = self._workers
        if known is not None and known[0] is comm:
            return known[1]
        per_node = 1 if comm is None else _mpi.node_size(comm, function)
        found = max(1, config.usable_cores() // max(1, per_node))
        self._workers = (comm, found)
        return found

    # -- run --------------------------------------------------------------------
    def run(self, plan: Any) -> None:
        """Run *plan* across the ranks; return when every rank holds the outputs."""
        comm = self._communicator()
        if comm is None or comm.Get_size() == 1:
            if self.invalid is not None:
                raise self.invalid
            if plan.nblocks:
                ThreadsExecutor(max_workers=self._workers_for(comm, plan.function)).run(plan)
            return
        if not config.collectives_allowed():
            if self.invalid is not None:
                raise self.invalid
            self._alone(comm, plan)
            return
        nranks, me = comm.Get_size(), comm.Get_rank()
        # the call's first collective: before any rank can diverge (an invalid
        # option on one rank is raised on every rank there)
        known = (quick_fingerprint(plan) if self.invalid is None and self.check == "shapes"
                 and SAMPLED else None)
        check_agreement(comm, plan, self.check, known=known, invalid=self.invalid)
        workers = self._workers_for(comm, plan.function)  # collective the first time
        found = self._written(plan)
        if found is None:  # written arrays not located along the loop axis
            if plan.nblocks:
                ThreadsExecutor(max_workers=workers).run(plan)
            self.bytes_moved = 0
            _record(plan.function, nranks, 0, "replicated, whole loop on every rank")
            return
        views, shape = found
        key = (id(comm), plan.function, plan.n, plan.block, plan.nblocks, plan.lo, plan.step,
               self.chunksize, workers, shape)
        prep = _PREPARED.pop(key, None)
        if prep is None or prep.comm is not comm:
            prep = _Prepared(comm, plan, views, [o for _, _, o in shape], self.chunksize,
                             workers)
            if len(_PREPARED) >= _PREPARED_KEPT:
                del _PREPARED[next(iter(_PREPARED))]
        if prep.held <= _PREPARED_BYTES:  # (a big one is not held on to)
            _PREPARED[key] = prep  # (the newest last)
        failure: BaseException | None = None
        if len(prep.local):
            t0 = time.perf_counter()
            try:
                if workers == 1 and prep.short:
                    _run_here(plan, prep.local)
                else:
                    ThreadsExecutor(max_workers=workers).run(_LocalPlan(plan, prep.local))
            except Exception as exc:  # every rank must still reach the exchange
                failure = exc
            prep.short = time.perf_counter() - t0 < _SHORT
        self._exchange(comm, plan, views, prep, me, failure)

    def agree_inputs(self, function: str, names: Sequence[str], values: Sequence[Any]) -> None:
        """The ranks agree on the arguments of a call that runs its sequential loop on
        every rank, calling its inner loops at this level (accel's driver): the
        scalars by value (a step count that differs would make the ranks' later
        calls differ), the arrays by dtype and shape.  One ``Allreduce``; on a
        mismatch the same error on every rank, naming the arguments."""
        comm = self._communicator()
        if comm is None or comm.Get_size() == 1 or not config.collectives_allowed():
            return
        from ._partition import _describe_value

        fields = [("call", "its inner loops at the 'mpi' level (replicated mode)"),
                  ("function", function)]
        fields += [(n, _describe_value(v, False, False)) for n, v in zip(names, values,
                                                                        strict=False)]
        agree_call(comm, function, fields, self.invalid, _INPUTS_ADVICE)

    def agree_any(self, flag: bool) -> bool:
        """Whether *flag* is true on any rank (one ``Allreduce``): a decision taken
        from a timing, which differs between ranks, made the same on every rank
        (accel's inner loops of a sequential loop, kept inline when they do not
        gain: every rank must then skip the same replicated calls)."""
        comm = self._communicator()
        if comm is None or comm.Get_size() == 1 or not config.collectives_allowed():
            return flag
        mine = np.array([1 if flag else 0], dtype=np.int64)
        found = np.empty(1, dtype=np.int64)
        _mpi.wait_begin("the ranks' agreement on an inner loop's gate", "accelerate")
        try:
            comm.Allreduce(mine, found, op=_mpi.mpi_module().MAX)
        finally:
            _mpi.wait_end()
        return bool(found[0])

    def _alone(self, comm: Any, plan: Any) -> None:
        """Inside a task of ``distribute.map`` (this rank alone): ``auto``, or the
        ``mpi`` level in force around the farm (``LOOPSCALE_LEVEL=mpi``, a
        ``level("mpi")`` block around the call), runs the plan on this rank's
        threads; a ``level("mpi")`` asked for inside the task is refused."""
        setting = config.current_level()
        if (setting.name == "auto" or setting.source != "level()"
                or setting is _mpi.task_level()):
            known = self._workers
            workers = (self._max_workers or (known[1] if known is not None else None)
                       or max(1, config.usable_cores() // max(1, comm.Get_size())))
            if plan.nblocks:
                ThreadsExecutor(max_workers=workers).run(plan)
            return
        _mpi.refuse_in_task(comm, f"{plan.function}() at level 'mpi'")

    def _written(self, plan: Any) -> tuple[list[np.ndarray], tuple[Any, ...]] | None:
        """The arrays to exchange (written arrays with the loop's axis first, then
        the reductions' partials) and their shapes, dtypes and written offsets
        (the key of a prepared call); None when one cannot be located by rows."""
        views: list[np.ndarray] = []
        shape: list[tuple[Any, ...]] = []
        names, args = plan.arg_names, plan.args
        for name, role in plan.arrays.items():
            if not role.written:
                continue
            if role.axis is None or role.access == "mirrored" or name not in names:
                return None
            arr = args[names.index(name)]
            if not isinstance(arr, np.ndarray) or arr.ndim <= role.axis:
                return None
            view = _as_rows(arr if role.axis == 0 else np.moveaxis(arr, role.axis, 0))
            views.append(view)
            shape.append((view.shape, view.dtype, tuple(role.offsets or (0,))))
        for name, arr in zip(names, args, strict=False):
            if name.startswith("partial:"):
                view = _as_rows(arr)
                views.append(view)
                shape.append((view.shape, view.dtype, None))
        return views, tuple(shape)

    def _exchange(self, comm: Any, plan: Any, views: list[np.ndarray], prep: _Prepared,
                  me: int, failure: BaseException | None) -> None:
        send, recv = prep.send, prep.recv
        prep.head[0] = 0 if failure is None else 1
        if failure is None:
            for view, (sel, _), rows in zip(views, prep.sels[me], prep.send_rows,
                                            strict=True):
                if rows is None:
                    continue
                if isinstance(sel, slice):
                    rows[...] = view[sel]
                else:  # ("clip": the indices are in range; "raise" copies them first)
                    np.take(view, sel, axis=0, out=rows, mode="clip")
        mpi = _mpi.mpi_module()
        _mpi.wait_begin("the exchange of results", plan.function)
        try:
            comm.Allgatherv([send, mpi.BYTE], [recv, (prep.counts, prep.displs), mpi.BYTE])
        finally:
            _mpi.wait_end()
        self.bytes_moved = prep.moved
        _record(plan.function, len(prep.counts), prep.moved, "replicated")
        if prep.words[prep.heads].any():
            failed = [r for r, d in enumerate(prep.displs.tolist())
                      if recv[d:d + _HEADER].any()]
            if failure is not None:
                raise failure
            raise _mpi.mark_secondary(WorkerError(
                f"{plan.function}(): the loop raised on MPI rank(s) "
                f"{', '.join(map(str, failed))} (its traceback is printed there); "
                "this rank stops too."))
        for r, row in enumerate(prep.recv_rows):
            if row is None:
                continue
            for view, (sel, _), rows in zip(views, prep.sels[r], row, strict=True):
                if rows is not None:
                    view[sel] = rows


#: What kind of call a rank is in, as the agreement exchanges it: part of the
#: fingerprint, so that a rank in one kind of call that meets a rank in another
#: (one rank skipped a distributed call and went on to the next) sees a mismatch.
REPLICATED = "NumPy arrays at the 'mpi' level (replicated mode)"
DISTRIBUTED = _DISTRIBUTED_CALL


def agreement_fields(plan: Any, check: str, extra: Sequence[tuple[str, str]] = (),
                     no_values: Sequence[str] = (), distributed: bool = False,
                     sampled: bool = True) -> list[tuple[str, str]]:
    """What the ranks compare for a call of *plan* (see :func:`check_agreement`):
    the kind of call, the ``check`` option, the inputs (:func:`describe_inputs`)
    and *extra*; for ``check="none"`` the kind of call and the option alone.
    *sampled*: with the sample of the read-only arrays' elements, where the
    check takes one (False: :func:`quick_fingerprint` hashes it itself)."""
    call = [("call", DISTRIBUTED if distributed else REPLICATED), (CHECK, check)]
    if check == "none":
        return [*call, ("function", plan.function)]
    sample = sampled and SAMPLED and not distributed and check == "shapes"
    return call + describe_inputs(plan, check, no_values, sample) + list(extra)


#: The fingerprints of replicated calls' descriptions without the sample, by a
#: cheap key of the same facts (see :func:`quick_fingerprint`).
_STATIC: dict[tuple[Any, ...], int] = {}
_STATIC_KEPT = 256
_PLAIN_SCALARS = (bool, int, float, complex, np.bool_, np.integer, np.floating,
                  np.complexfloating)
#: Those a key holds by value (equal values have equal descriptions).
_EXACT_SCALARS = (bool, int, np.bool_, np.integer)


def quick_fingerprint(plan: Any) -> int | None:
    """The fingerprint of a replicated call with the default check (``"shapes"``
    with a sample), made without describing the call: the description without
    the sample (:func:`agreement_fields`) is hashed once per cheap key of what
    it says (dtypes, shapes, scalar types and values), and the sampled
    elements of the arrays the loop only reads are hashed into it.  A time
    loop makes the same call every pass; describing it cost about 20 µs a
    pass.  None when an argument is neither an array nor a plain number (the
    caller describes the call).  Every rank computes it the same way from the
    same facts, so equal inputs give equal fingerprints; on a mismatch the
    ranks describe their calls in full (with the sample) for the message."""
    key: list[Any] = [plan.function, plan.n, plan.lo, plan.step, plan.nblocks, plan.block]
    picked: list[bytes] = []
    arrays = plan.arrays
    for name, value in zip(plan.arg_names, plan.args, strict=False):
        if isinstance(value, np.ndarray):
            key.append((value.dtype, value.shape))
            role = arrays.get(name)
            if (role is not None and role.read and not role.written and value.size
                    and not value.dtype.hasobject):
                part = read_window(value, role, plan.lo, plan.step, plan.n)
                if part.size:
                    picked.append(sample_bytes(part))
        elif isinstance(value, _EXACT_SCALARS):
            key.append((type(value), value))
        elif isinstance(value, _PLAIN_SCALARS):  # (by its text: -0.0 == 0.0, nan != nan)
            key.append((type(value), repr(value)))
        else:
            return None
    if len(key) - 6 != len(plan.args):
        return None  # (unnamed arguments: the caller describes them)
    static = _STATIC.get(tuple(key))
    if static is None:
        if len(_STATIC) >= _STATIC_KEPT:
            _STATIC.clear()
        static = _STATIC[tuple(key)] = fingerprint(
            agreement_fields(plan, "shapes", sampled=False))
    if not picked:
        return static
    digest = hashlib.blake2b(static.to_bytes(8, "little", signed=True), digest_size=8)
    for chunk in picked:
        digest.update(chunk)
    return int.from_bytes(digest.digest(), "little", signed=True)


#: The fingerprints of ``check="none"`` calls, by (distributed, function).
_NONE: dict[tuple[bool, str], int] = {}


def check_agreement(comm: Any, plan: Any, check: str,
                    extra: Sequence[tuple[str, str]] = (),
                    no_values: Sequence[str] = (), known: int | None = None,
                    distributed: bool = False, invalid: BaseException | None = None
                    ) -> None:
    """Raise the same :class:`ArgumentValueError` on every rank unless the ranks'
    inputs to *plan* agree (one ``Allreduce`` of a 64-bit fingerprint; the ranks'
    descriptions are exchanged only when they differ).

    *known*, when given, is the fingerprint of these fields, already computed
    (a caller that caches it by a cheaper key); the fields are then described
    only on a mismatch.  *distributed*: a call with distributed arrays (its
    fingerprint has no sample of values, see :func:`describe_inputs`, and its
    error says so); otherwise replicated mode, whose ``"shapes"`` check compares
    a sample of the elements of the arrays the loop only reads as well.
    ``check="none"`` compares only the kind of call and the option (the same
    one ``Allreduce``, nothing described or hashed).  *invalid*: this rank's
    invalid level option, raised on every rank (as the first such rank's
    error type) after the ``Allreduce``.

    Every call, replicated or distributed, agrees through the same collectives
    (:func:`agree`): a rank in one call that meets a rank in another sees the
    fingerprints differ and raises, instead of waiting in a collective that
    the other rank never makes.
    """
    fields = None
    if invalid is not None:
        fields = [*agreement_fields(plan, check, extra, no_values, distributed),
                  error_field(invalid)]
        known = fingerprint(fields)
    elif known is None and check == "none":  # nothing described: remembered by name
        key = (distributed, plan.function)
        known = _NONE.get(key)
        if known is None:
            known = _NONE[key] = fingerprint(
                agreement_fields(plan, check, extra, no_values, distributed))
    elif known is None:
        fields = agreement_fields(plan, check, extra, no_values, distributed)
        known = fingerprint(fields)
    mine = np.array([known, -known - 1], dtype=np.int64)
    agree(comm, plan.function, known, mine, np.empty(2, dtype=np.int64),
          _mpi.mpi_module().MAX,
          lambda: fields if fields is not None
          else agreement_fields(plan, check, extra, no_values, distributed))
    if invalid is not None:  # every rank has the same invalid option
        raise invalid


def agree(comm: Any, function: str, known: int, mine: np.ndarray, both: np.ndarray,
          op: Any, fields: Any, advice: str = "") -> None:
    """The one agreement of a call: one ``Allreduce`` (MAX) of ``[h, -h-1]`` for the
    fingerprint *h* = *known* (in the two ``int64`` buffers *mine* and *both*); on
    a mismatch, one ``allgather`` of the ranks' *fields()* and where the user's
    code made the call, and the same error on every rank (see :func:`mismatch`;
    *advice*: what to do, for a library call).

    Every kind of call agrees through exactly these collectives, in this order,
    so that ranks in different calls (or different kinds of call) meet in the
    same collectives and learn of it from what they exchange, never by waiting.
    """
    mine[0], mine[1] = known, -known - 1  # -h-1: no overflow at INT64_MIN
    _mpi.wait_begin("the ranks' agreement on the inputs", function)
    try:
        comm.Allreduce(mine, both, op=op)
    finally:
        _mpi.wait_end()
    if int(both[0]) == -int(both[1]) - 1:  # max == min: every rank agrees (no overflow)
        return
    mismatch(comm, function, fields(), advice)


def mismatch(comm: Any, function: str, fields: Sequence[tuple[str, str]],
             advice: str = "") -> None:
    """The ranks' agreement failed: every rank learns every rank's *fields* and
    where the call was made, and raises the same error: when the ranks are in the
    same call and some refused their arguments (an ``"error"`` field, see
    :func:`agree_call`), the first such rank's error, of its type, naming every
    rank's; otherwise an :class:`ArgumentValueError` naming what differs."""
    site = _mpi.user_site()
    _mpi.wait_begin("the ranks' exchange of their inputs (they differ)", function)
    try:
        per_rank = comm.allgather((list(fields), site))  # small strings; the error path only
    finally:
        _mpi.wait_end()
    tables = [f for f, _ in per_rank]
    if same_call(tables) and any(ERROR in dict(f) for f in tables):
        kind, text = shared_error(function, tables)
        raise _error_class(kind)(text)
    raise ArgumentValueError(mismatch_message(function, tables,
                                              sites=[s for _, s in per_rank], advice=advice))


def _error_class(name: str) -> type[Exception]:
    """The exception class a rank's error had, by name (see :func:`error_field`):
    one of loopscale's errors, ``TypeError`` or ``ValueError``; otherwise
    :class:`ArgumentValueError`."""
    from .. import errors

    found = getattr(errors, name, None)
    if isinstance(found, type) and issubclass(found, errors.LoopscaleError):
        return found
    return {"TypeError": TypeError, "ValueError": ValueError}.get(name, ArgumentValueError)


def agree_call(comm: Any, function: str, fields: Sequence[tuple[str, str]],
               error: BaseException | None = None, advice: str = "") -> None:
    """Begin a collective library call (``distribute.gather``, a loader, a
    constructor, ``distribute.map``): the ranks agree on *fields* — the call
    (``("call", "distribute.gather()")`` first) and the arguments that must be the
    same on every rank — and on whether each rank's own arguments are valid
    (*error*: what this rank's checks raised, or None), through the agreement
    every call of loopscale begins with (:func:`agree`: one ``Allreduce`` of a
    fingerprint; the fields are exchanged only when the ranks differ).

    Raises on every rank, the same error: the first refusing rank's *error*
    (its type, its text, and which ranks refused what), or an
    :class:`ArgumentValueError` naming the fields that differ, each rank's
    value, and *advice*; or, when every rank made the same call, the ranks
    agreeing, and this rank's *error* is not None, that error.  With
    ``comm`` None (one process) only raises *error*.
    """
    if comm is None or comm.Get_size() == 1:
        if error is not None:
            raise error
        return
    if error is not None:
        fields = [*fields, error_field(error)]
        known = fingerprint(fields)
    else:
        key = tuple(fields)
        known = _KNOWN.get(key)  # type: ignore[assignment]
        if known is None:
            known = fingerprint(fields)
            if len(_KNOWN) >= 1024:
                _KNOWN.clear()
            _KNOWN[key] = known
    agree(comm, function, known, np.empty(2, dtype=np.int64), np.empty(2, dtype=np.int64),
          _mpi.mpi_module().MAX, lambda: fields, advice)
    if error is not None:  # every rank refused, with the same text
        raise error


#: What to do when the ranks' arguments to a function run with its inner loops
#: at the mpi level differ.
_INPUTS_ADVICE = (
    "In replicated mode every rank runs the function with the same arguments (its "
    "sequential loop runs on every rank, and each pass of its inner loops is a call "
    "of every rank): pass the same values on every rank (compute them identically, or "
    "comm.bcast them).  No rank computed anything; every rank raises this error.")

#: Fingerprints of library calls' fields (a call repeated with the same
#: arguments is hashed once).
_KNOWN: dict[tuple[tuple[str, str], ...], int] = {}
