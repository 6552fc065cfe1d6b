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
   cores, straight on the arrays' memory;
5. exchanges an 8-byte status and the reduction partials of its blocks with
   every rank (one ``Allgatherv``), so a failure anywhere stops every rank, and
   every rank combines all partials in block order (``accel``'s epilogue):
   the result is bit for bit the ``serial`` level's;
6. sends rows it computed for other ranks (a reduction's last block running
   past its rows) to their owners.

Outputs stay distributed: a distributed argument the loop writes is written
in place; an array the function allocates (``np.empty_like(u)``) is filled on
each rank for its own iterations and returned as a new :class:`DistArray`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DistributionError, WorkerError
from ..schedule import ThreadsExecutor
from . import _mpi
from ._darray import DistArray, as_bytes, global_view, transfer
from ._level import _LAST, MPIExecutor, _LocalPlan, check_agreement
from ._partition import computed_segments, owned_iterations, row_hull

__all__ = ["DistributedCall"]

_HEADER = 8
_FETCH_TAG, _WRITE_TAG = 0, 16384


@dataclasses.dataclass
class _Slot:
    """One distributed argument the loop touches."""

    index: int                 # position in the plan's arguments
    name: str
    array: DistArray
    offsets: tuple[int, ...]
    written: bool
    window: tuple[int, int] = (0, 0)   # global rows [a, b) this rank touches
    temp: np.ndarray | None = None     # a temporary window, when ghosts are too few
    view: np.ndarray | None = None     # what the kernel gets


class DistributedCall:
    """Runs one accelerated call whose arguments include distributed arrays.

    Made by ``DistArray.__loopscale_distributed__``; ``accel`` uses it as the
    executor of the plan (:meth:`run`) and passes the result through
    :meth:`finish`.  Not for direct use.
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
        self.params = tuple(params)
        items = list(arrays.items())
        first_name, first = items[0]
        for name, x in items:
            if not isinstance(x, DistArray):
                raise DistributionError(
                    f"{function}() got the distributed arguments {first_name!r} (a DistArray) "
                    f"and {name!r} (a {type(x).__name__}): use one kind of distributed array "
                    "per call.")
            if x.comm is not first.comm:
                raise DistributionError(
                    f"arguments {first_name!r} and {name!r} of {function}() are distributed "
                    "over different communicators: make them over the same one.")
            if x is not first and (x.shape[0] != first.shape[0]
                                   or not np.array_equal(x._bounds, first._bounds)):
                raise DistributionError(
                    f"arguments {first_name!r} and {name!r} of {function}() are distributed "
                    f"differently ({first_name!r}: {first.shape[0]} rows at {first.bounds}; "
                    f"{name!r}: {x.shape[0]} rows at {x.bounds}), so the rows of one "
                    f"iteration live on different ranks. Use "
                    f"{name}.redistribute({first_name}.bounds), or make both the same way "
                    f"(distribute.empty_like({first_name})).")
        self.arrays = dict(arrays)
        self.comm = first.comm
        self.bounds = first._bounds
        self.nrows = first.shape[0]
        self.views = {name: x._global_view() for name, x in items}
        self._by_id = {id(v): name for name, v in self.views.items()}
        self._fresh: dict[int, tuple[np.ndarray, int]] = {}
        self._complete: list[tuple[np.ndarray, int]] = []  # fresh arrays read after the loop
        self._computed: list[tuple[int, int]] = []
        self._lo = self._step = 0
        opts = dict(options or {})
        if level == "serial":
            workers: int | None = 1
            check = "shapes"
        elif level in ("mpi", "threads"):
            workers = opts.get("max_workers")
            check = opts.get("check", "shapes")
        else:
            workers, check = None, "shapes"
        self._level = MPIExecutor(comm=self.comm, max_workers=workers, check=check)
        self.bytes_moved = 0

    # -- the executor ---------------------------------------------------------------------
    def run(self, plan: Any) -> None:
        """Run this rank's iterations of *plan*; see the module's description."""
        comm = self.comm
        nranks = 1 if comm is None else comm.Get_size()
        me = 0 if comm is None else comm.Get_rank()
        slots = self._slots(plan)
        # collective on first use (node size): before any rank can take another path
        self._workers = self._level.max_workers
        if comm is not None and nranks > 1:
            check_agreement(comm, plan, self._level.check,
                            extra=[("rows", ",".join(map(str, self.bounds.tolist())))],
                            no_values=tuple(self.views))
        n, lo, step = plan.n, plan.lo, plan.step
        self._lo, self._step = lo, step
        if n <= 0:
            self._computed = [(0, 0)] * nranks
            return
        dw = self._write_offset(slots)
        self._check_rows(slots, n, lo, step)
        segs = []
        for q in range(nranks):
            k0, k1 = owned_iterations(lo, step, n, int(self.bounds[q]) - dw,
                                      int(self.bounds[q + 1]) - dw)
            segs.append(computed_segments(k0, k1, n=n, block=plan.block,
                                          nblocks=plan.nblocks,
                                          reductions=plan.has_reductions))
        self._computed = [(s[0][2], s[-1][3]) if s else (0, 0) for s in segs]
        moved = self._fetch(slots, me, nranks)
        failure: BaseException | None = None
        try:
            self._compute(plan, slots, segs[me])
        except Exception as exc:  # every rank must still reach the exchange
            failure = exc
        if nranks > 1:
            moved += self._combine(plan, segs, me, failure)
        elif failure is not None:
            raise failure
        moved += self._write_back(slots, me, nranks)
        for full, offset in self._complete:
            moved += self._allgather_rows(full, offset, me)
        self.bytes_moved = moved
        _LAST.update(function=plan.function, ranks=nranks, bytes_moved=moved)

    def _slots(self, plan: Any) -> list[_Slot]:
        slots = []
        for idx, (name, value) in enumerate(zip(plan.arg_names, plan.args, strict=False)):
            if idx < 4 or name.startswith("partial:"):
                continue
            role = plan.arrays.get(name)
            if id(value) in self._by_id:
                if role is None:
                    continue  # only its shape is used
                slots.append(_Slot(idx, name, self.arrays[self._by_id[id(value)]],
                                   tuple(role.offsets or (0,)), bool(role.written)))
            elif isinstance(value, np.ndarray) and role is not None and role.written:
                if name in self.params:
                    raise DistributionError(
                        f"argument {name!r} of {plan.function}() is a NumPy array that the "
                        f"loop writes, while {', '.join(map(repr, self.arrays))} "
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
                entry = (value, int((role.offsets or (0,))[0]))
                if name in self.read_after_loop:
                    self._complete.append(entry)  # the code after the loop reads it whole
                else:
                    self._fresh[id(value)] = entry
        return slots

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
        first, last = lo, lo + (n - 1) * step
        gmin, gmax = min(first, last), max(first, last)
        for s in slots:
            low, high = gmin + min(s.offsets), gmax + max(s.offsets)
            if low < 0 or high >= self.nrows:
                bad = low if low < 0 else high
                raise DistributionError(
                    f"the loop of {self.function}() touches row {bad} of the distributed "
                    f"array {s.name!r}, which has rows 0..{self.nrows - 1}: the loop variable "
                    f"runs from {first} to {last} and {s.name!r} is indexed at offsets "
                    f"{list(s.offsets)}. Distributed arrays do not wrap negative rows around "
                    "as NumPy does; start or stop the loop so that every row exists.")

    # -- moving rows ------------------------------------------------------------------------
    def _windows(self, slot: _Slot, q: int) -> tuple[int, int]:
        k0, k1 = self._computed[q]
        if k0 >= k1:
            return (0, 0)
        return row_hull(self._lo, self._step, k0, k1, slot.offsets)

    def _fetch(self, slots: list[_Slot], me: int, nranks: int) -> int:
        sends, recvs = [], []
        for t, s in enumerate(slots):
            x = s.array
            ghost = x._ghost
            for q in range(nranks):
                a, b = self._windows(s, q)
                if a >= b:
                    continue
                q0, q1 = int(self.bounds[q]), int(self.bounds[q + 1])
                if q == me:
                    s.window = (a, b)
                    if a >= q0 - ghost and b <= q1 + ghost:
                        s.view = x._global_view()
                        base, first = x._buf, q0 - ghost
                    else:
                        s.temp = np.empty((b - a, *x.shape[1:]), dtype=x.dtype)
                        s.view = global_view(s.temp, a, x.shape)
                        base, first = s.temp, a
                        c0, c1 = max(a, q0), min(b, q1)
                        if c0 < c1:
                            s.temp[c0 - a:c1 - a] = x.local[c0 - q0:c1 - q0]
                for o in range(nranks):
                    if o == q:
                        continue
                    c0, c1 = max(a, int(self.bounds[o])), min(b, int(self.bounds[o + 1]))
                    if c0 >= c1:
                        continue
                    tag = _FETCH_TAG + t
                    if q == me:
                        recvs.append((o, tag, base[c0 - first:c1 - first]))
                    elif o == me:
                        mine = int(self.bounds[me])
                        sends.append((q, tag, x.local[c0 - mine:c1 - mine]))
        return transfer(self.comm, sends, recvs) if self.comm is not None else 0

    def _write_back(self, slots: list[_Slot], me: int, nranks: int) -> int:
        sends, recvs = [], []
        for t, s in enumerate(slots):
            if not s.written:
                continue
            x = s.array
            mine0 = int(self.bounds[me])
            for q in range(nranks):
                k0, k1 = self._computed[q]
                if k0 >= k1:
                    continue
                w0, w1 = row_hull(self._lo, self._step, k0, k1, s.offsets)
                for o in range(nranks):
                    c0, c1 = max(w0, int(self.bounds[o])), min(w1, int(self.bounds[o + 1]))
                    if c0 >= c1:
                        continue
                    if q == me and o == me:
                        if s.temp is not None:  # own rows computed in a temporary window
                            a = s.window[0]
                            x.local[c0 - mine0:c1 - mine0] = s.temp[c0 - a:c1 - a]
                    elif q == me:
                        src = s.temp if s.temp is not None else x._buf
                        first = s.window[0] if s.temp is not None else mine0 - x._ghost
                        sends.append((o, _WRITE_TAG + t, src[c0 - first:c1 - first]))
                    elif o == me:
                        recvs.append((q, _WRITE_TAG + t, x.local[c0 - mine0:c1 - mine0]))
        return transfer(self.comm, sends, recvs) if self.comm is not None else 0

    # -- computing --------------------------------------------------------------------------
    def _compute(self, plan: Any, slots: list[_Slot], segs: list[tuple[int, int, int, int]]
                 ) -> None:
        if not segs:
            return
        args = list(plan.args)
        for s in slots:
            if s.view is not None:
                args[s.index] = s.view
        args_t = tuple(args)
        sub = dataclasses.replace(plan, args=args_t)
        workers = self._workers
        for c0, c1, _, _ in segs:
            if c1 - c0 <= 1 or workers == 1:
                plan.kernel(c0, c1, *args_t)
                continue
            if plan.has_reductions:
                chunks = [(b, b + 1) for b in range(c0, c1)]
            else:
                step = max(1, -(-(c1 - c0) // (16 * workers)))
                chunks = [(a, min(a + step, c1)) for a in range(c0, c1, step)]
            ThreadsExecutor(max_workers=workers).run(_LocalPlan(sub, chunks))

    def _combine(self, plan: Any, segs: list[list[tuple[int, int, int, int]]], me: int,
                 failure: BaseException | None) -> int:
        """One ``Allgatherv``: every rank's status and its blocks' reduction partials."""
        mpi = _mpi.mpi_module()
        parts = list(plan.partials.values())
        rowbytes = [p.itemsize * int(np.prod(p.shape[1:], dtype=np.int64)) for p in parts]
        ranges = [(s[0][0], s[-1][1]) if (s and plan.has_reductions) else (0, 0)
                  for s in segs]
        counts = np.array([_HEADER + (b1 - b0) * sum(rowbytes) for b0, b1 in ranges],
                          dtype=np.int64)
        displs = np.zeros_like(counts)
        np.cumsum(counts[:-1], out=displs[1:])
        send = np.empty(int(counts[me]), dtype=np.uint8)
        send[:_HEADER].view(np.int64)[0] = 0 if failure is None else 1
        pos = _HEADER
        b0, b1 = ranges[me]
        if failure is None:
            for p, rb in zip(parts, rowbytes, strict=True):
                nb = (b1 - b0) * rb
                send[pos:pos + nb] = as_bytes(np.ascontiguousarray(p[b0:b1]))
                pos += nb
        recv = np.empty(int(counts.sum()), dtype=np.uint8)
        self.comm.Allgatherv([send, mpi.BYTE], [recv, (counts, displs), mpi.BYTE])
        status = [int(recv[d:d + _HEADER].view(np.int64)[0]) for d in displs]
        if any(status):
            if failure is not None:
                raise failure
            failed = [r for r, st in enumerate(status) if st]
            raise _mpi.mark_secondary(WorkerError(
                f"{plan.function}(): the loop raised on MPI rank(s) "
                f"{', '.join(map(str, failed))} (its traceback is printed there); this rank "
                "stops too."))
        for r, d in enumerate(displs):
            if r == me:
                continue
            pos = int(d) + _HEADER
            c0, c1 = ranges[r]
            for p, rb in zip(parts, rowbytes, strict=True):
                nb = (c1 - c0) * rb
                if nb:
                    p[c0:c1] = recv[pos:pos + nb].view(p.dtype).reshape((c1 - c0,) + p.shape[1:])
                pos += nb
        return int(counts.sum())

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
        rowbytes = full.itemsize * int(np.prod(full.shape[1:], dtype=np.int64))
        counts = (np.diff(bounds) * rowbytes).astype(np.int64)
        displs = (bounds[:-1] * rowbytes).astype(np.int64)
        target = full if full.flags.c_contiguous else np.ascontiguousarray(full)
        self.comm.Allgatherv(mpi.IN_PLACE, [as_bytes(target), (counts, displs), mpi.BYTE])
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
        out = DistArray._allocate(full.shape, full.dtype, bounds, self.comm)
        out.local[...] = full[bounds[me]:bounds[me + 1]]
        return out
