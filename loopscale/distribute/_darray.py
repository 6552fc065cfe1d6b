"""Distributed arrays: one array partitioned by rows (axis 0) across MPI ranks.

A :class:`DistArray` holds, on each rank, one contiguous block of rows of a
global array: rank ``r`` holds rows ``bounds[r]:bounds[r + 1]``.  Every rank
knows every rank's bounds, so any rank can say where a row lives without
asking.  The rows sit in a C-contiguous buffer with spare *ghost* rows on
both sides, so that the halo rows a stencil reads (``u[i - 1]``, ``u[i + 1]``)
and the few rows a reduction's last block runs past its rank's end are
received in place, next to the rank's own rows, with no copy of them.

Arrays move through the buffer-based mpi4py calls (``Scatterv``, ``Gatherv``,
``Allgatherv``, ``Isend``/``Irecv`` of whole rows, as bytes), never pickled.
The point-to-point traffic runs on a private duplicate of the communicator,
so it cannot match a message of the user's.

Without a launcher (one process), MPI is never started: a distributed array
is then this process's whole array, and every operation is local.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import config
from ..errors import ArgumentError, ArgumentValueError, DistributionError
from . import _mpi
from ._level import agree, agree_call
from ._partition import dtype_text, fingerprint, row_bytes

__all__ = ["DistArray", "scatter", "gather", "allgather", "from_local", "empty", "zeros",
           "full", "empty_like", "zeros_like", "full_like", "balanced_bounds", "HALO"]

#: Ghost rows kept on each side of a rank's block, at least (stencil halos).
HALO = 2


def balanced_bounds(nrows: int, nranks: int) -> np.ndarray:
    """Row bounds that give every rank ``nrows // nranks`` or one more rows.

    Examples
    --------
    >>> balanced_bounds(10, 4).tolist()
    [0, 2, 5, 7, 10]
    """
    return np.array([r * nrows // nranks for r in range(nranks + 1)], dtype=np.int64)


def _ghosts(nrows: int, halo: int, nranks: int) -> int:
    """Ghost rows per side: the halo, and room for a reduction block that runs past
    the rank's end (about nrows / 1024 rows, see accel's block size), unless that
    would be more than a quarter of the rank's rows (then such calls copy)."""
    block = max(16, -(-nrows // 1024)) + halo
    share = nrows // max(1, nranks)
    return max(halo, min(block, share // 4))


def _resolve(comm: Any) -> Any:
    """The communicator to use: the given one, COMM_WORLD under a launcher, None alone."""
    if comm is not None:
        if not (hasattr(comm, "Get_size") and hasattr(comm, "Allgatherv")):
            raise ArgumentError(f"comm must be an mpi4py communicator; got {comm!r}.")
        return comm
    if not _mpi.launched() and not _mpi.is_initialized():
        return None
    return _mpi.comm()


def as_bytes(a: np.ndarray) -> np.ndarray:
    """A C-contiguous array's memory as a 1-D ``uint8`` array (no copy)."""
    return a.reshape(-1).view(np.uint8)


class _Window:
    """Exposes *buf* as an array of the global shape through ``__array_interface__``."""

    def __init__(self, buf: np.ndarray, first_row: int, shape: tuple[int, ...]) -> None:
        rowbytes = buf.strides[0] if buf.ndim else 0
        if buf.ndim and buf.shape[0] == 0:
            rowbytes = row_bytes(buf)
        self.__array_interface__ = {
            "data": (int(buf.ctypes.data) - first_row * rowbytes, False),
            "shape": shape,
            "strides": (rowbytes, *buf.strides[1:]),
            "typestr": buf.dtype.str,
            "descr": buf.dtype.descr,
            "version": 3,
        }
        self.buf = buf  # keeps the memory alive as long as the view


def global_view(buf: np.ndarray, first_row: int, shape: tuple[int, ...]) -> np.ndarray:
    """An array of the global *shape* whose rows ``first_row .. first_row + len(buf)``
    are *buf*'s rows.  Only those rows may be touched: the view exists to let
    compiled code index with global row numbers."""
    return np.asarray(_Window(buf, first_row, shape))


class DistArray:
    """An array partitioned along axis 0 across the ranks of a communicator.

    Make one with :func:`scatter`, :func:`from_local`, :func:`zeros` and the
    other constructors, or a loader (:func:`load_npy`, :func:`read_parquet`);
    bring it back with :func:`gather` / :func:`allgather`.  Pass it to an
    accelerated function in place of a NumPy array: each rank runs the loop's
    iterations whose rows it holds, halo rows read at constant offsets
    (``u[i - 1]``, ``u[i + 1]``) are exchanged first, outputs stay
    distributed, and reductions are combined across ranks in the fixed block
    order, so the result is bit for bit the ``serial`` level's.

    Attributes
    ----------
    shape : tuple of int
        The global shape.
    dtype : numpy.dtype
    bounds : tuple of int
        Rank ``r`` holds global rows ``bounds[r]:bounds[r + 1]``.
    local : numpy.ndarray
        This rank's rows (a writable view, valid for the array's lifetime).

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale import distribute
    >>> u = distribute.scatter(np.arange(10.0))   # under mpiexec: rows split
    >>> u.shape, u.local_rows
    ((10,), (0, 10))
    >>> distribute.allgather(u)[:3]
    array([0., 1., 2.])
    """

    __slots__ = ("_comm", "_shape", "_dtype", "_bounds", "_bkey", "_rank", "_buf", "_ghost",
                 "_view", "_desc", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("DistArray is made by distribute.scatter, from_local, zeros, empty, "
                        "full, the *_like functions or a loader (load_npy, read_parquet).")

    # -- construction (internal) ----------------------------------------------------
    @classmethod
    def _allocate(cls, shape: Sequence[int], dtype: Any, bounds: np.ndarray, comm: Any,
                  ghost: int | None = None, halo: int = HALO,
                  function: str = "distribute.empty") -> DistArray:
        """A new array (*function*: the user's call that makes it, for the watchdog)."""
        self = object.__new__(cls)
        if comm is not None:
            # collective the first time for a communicator: every rank makes arrays
            _mpi.private_comm(comm, function)
        self._comm = comm
        self._shape = tuple(int(s) for s in shape)
        self._dtype = np.dtype(dtype)
        self._bounds = np.asarray(bounds, dtype=np.int64)
        self._bkey = tuple(int(b) for b in self._bounds)  # the bounds, hashable (never change)
        nranks = len(self._bounds) - 1
        self._rank = 0 if comm is None else int(comm.Get_rank())
        nloc = int(self._bounds[self._rank + 1] - self._bounds[self._rank])
        self._ghost = _ghosts(self._shape[0], halo, nranks) if ghost is None else ghost
        self._buf = np.empty((nloc + 2 * self._ghost, *self._shape[1:]), dtype=self._dtype)
        self._view: np.ndarray | None = None
        #: what the ranks' agreement compares of this array (the same on every rank)
        self._desc = (f"{dtype_text(self._dtype)}{list(self._shape)} rows "
                      f"{','.join(map(str, self._bkey))}")
        return self

    # -- what it is ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The global shape."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """The element type."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self._shape)

    @property
    def size(self) -> int:
        """Number of elements of the global array."""
        return int(np.prod(self._shape, dtype=np.int64))

    @property
    def comm(self) -> Any:
        """The communicator (None for a process started without a launcher)."""
        return self._comm

    @property
    def bounds(self) -> tuple[int, ...]:
        """Rank ``r`` holds global rows ``bounds[r]:bounds[r + 1]``."""
        return self._bkey

    @property
    def local_rows(self) -> tuple[int, int]:
        """The global rows ``(start, stop)`` this rank holds."""
        return int(self._bounds[self._rank]), int(self._bounds[self._rank + 1])

    @property
    def local(self) -> np.ndarray:
        """This rank's rows: a writable view of the array's memory."""
        r0, r1 = self.local_rows
        return self._buf[self._ghost:self._ghost + (r1 - r0)]

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        r0, r1 = self.local_rows
        return (f"DistArray(shape={self._shape}, dtype={self._dtype}, ranks="
                f"{len(self._bounds) - 1}, rows {r0}:{r1} on rank {self._rank})")

    # -- what it refuses -------------------------------------------------------------
    def _refuse(self, what: str) -> DistributionError:
        r0, r1 = self.local_rows
        return DistributionError(
            f"{what} of a DistArray would need rows held by other ranks (this rank holds "
            f"rows {r0}:{r1} of {self._shape[0]}). Use distribute.allgather(x) (every rank) "
            "or distribute.gather(x) (one rank) for a NumPy array, x.local for this rank's "
            "rows, or pass x to an accelerated function whose loop reads x[i].")

    def __getitem__(self, index: Any) -> Any:
        raise self._refuse(f"reading x[{index!r}]")

    def __setitem__(self, index: Any, value: Any) -> None:
        raise self._refuse(f"writing x[{index!r}]")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self._refuse("converting to a NumPy array")

    def _refuse_op(self, what: str) -> DistributionError:
        r0, r1 = self.local_rows
        return DistributionError(
            f"{what} is not defined for a DistArray, whose rows are spread over the ranks "
            f"(this rank holds rows {r0}:{r1} of {self._shape[0]}): NumPy's functions and "
            "operators do not run across ranks. Apply it to x.local (this rank's rows; combine "
            "totals with distribute.comm().allreduce), write it as the loop of an "
            "accelerated function over x[i] (its reductions are combined across ranks, "
            "bit for bit as the serial level's), or use distribute.allgather(x) for a "
            "NumPy array.")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = getattr(ufunc, "__name__", str(ufunc))
        raise self._refuse_op(f"np.{name}" + ("" if method == "__call__" else f".{method}"))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        # the like-shaped constructors make a distributed array of the same rows
        # (collective, as distribute.zeros_like: the code around an accelerated
        # function's inner loops runs them on every rank)
        name = getattr(func, "__name__", "")
        like = _LIKE.get(name) if func is getattr(np, name, None) else None
        if like is not None and args and args[0] is self and set(kwargs) <= {"dtype"}:
            return like(*args, **kwargs)
        raise self._refuse_op(f"np.{getattr(func, '__name__', func)}(...)")

    # (no silent answers: `u == 0` was False, the identity of two objects)
    def _operator(symbol: str) -> Any:  # type: ignore[misc]  # noqa: N805 - a class-body helper
        def op(self: DistArray, *other: Any) -> Any:
            if symbol in ("==", "!=") and isinstance(other[0], DistArray):
                return NotImplemented  # (identity, as containers compare their items)
            raise self._refuse_op(f"`{symbol}`")

        op.__name__ = f"operator {symbol}"
        return op

    __eq__ = _operator("==")  # type: ignore[assignment]
    __ne__ = _operator("!=")  # type: ignore[assignment]
    __lt__ = _operator("<")
    __le__ = _operator("<=")
    __gt__ = _operator(">")
    __ge__ = _operator(">=")
    __add__ = __radd__ = __iadd__ = _operator("+")
    __sub__ = __rsub__ = __isub__ = _operator("-")
    __mul__ = __rmul__ = __imul__ = _operator("*")
    __truediv__ = __rtruediv__ = __itruediv__ = _operator("/")
    __floordiv__ = __rfloordiv__ = _operator("//")
    __pow__ = __rpow__ = _operator("**")
    __mod__ = __rmod__ = _operator("%")
    __neg__ = _operator("- (negation)")
    __abs__ = _operator("abs()")
    __matmul__ = __rmatmul__ = _operator("@")
    __hash__ = object.__hash__
    del _operator

    def __bool__(self) -> bool:
        raise self._refuse_op("truth testing (`if x:`)")

    def __float__(self) -> float:
        raise self._refuse_op("float(x)")

    def __int__(self) -> int:
        raise self._refuse_op("int(x)")

    def __getattr__(self, name: str) -> Any:
        # (only for what is not found: an ndarray's `x.sum()`, `x.T`, `x.astype`)
        if not name.startswith("_") and hasattr(np.ndarray, name):
            r0, r1 = self.local_rows
            raise AttributeError(
                f"a DistArray has no `.{name}`: its rows are spread over the ranks (this "
                f"rank holds rows {r0}:{r1} of {self._shape[0]}). Use x.local.{name} for "
                "this rank's rows, an accelerated function's loop over x[i] for the "
                f"whole array, or distribute.allgather(x).{name} on a NumPy copy.")
        raise AttributeError(f"'DistArray' object has no attribute {name!r}")

    def __iter__(self) -> Any:
        raise self._refuse("iterating over the rows")

    def __reduce__(self) -> Any:
        raise DistributionError(
            "a DistArray cannot be pickled: it is one rank's share of an array spread over "
            "MPI ranks, and arrays travel between ranks as buffers, not pickles. Pass "
            "x.local (this rank's rows) or distribute.allgather(x) instead.")

    # -- the accel protocol ----------------------------------------------------------
    @classmethod
    def __loopscale_distributed__(cls, **call: Any) -> Any:
        """Start an accelerated call with distributed arguments (see ``accel``)."""
        from ._dcall import call_for

        return call_for(**call)

    def _global_view(self) -> np.ndarray:
        """This array's buffer as an array of the global shape (own rows and ghosts valid)."""
        if self._view is None:
            r0, _ = self.local_rows
            self._view = global_view(self._buf, r0 - self._ghost, self._shape)
        return self._view

    # -- operations ----------------------------------------------------------------
    def copy(self) -> DistArray:
        """A new distributed array with the same rows (local copy, no communication)."""
        out = DistArray._allocate(self._shape, self._dtype, self._bounds, self._comm,
                                  ghost=self._ghost, function="DistArray.copy")
        out.local[...] = self.local
        return out

    def astype(self, dtype: Any) -> DistArray:
        """A new distributed array with the same rows converted to *dtype* (local
        conversion, no communication), as ``ndarray.astype``: for example
        ``x.astype(x.dtype.newbyteorder("="))`` for the machine's byte order
        after loading a big-endian ``.npy`` file, which compiled code cannot take."""
        dtype = np.dtype(dtype)
        out = DistArray._allocate(self._shape, dtype, self._bounds, self._comm,
                                  ghost=self._ghost, function="DistArray.astype")
        out.local[...] = self.local
        return out

    def redistribute(self, bounds: Sequence[int] | None = None) -> DistArray:
        """The same global array with rows placed by *bounds* (default: balanced).

        Collective.  Rows move by point-to-point messages between the ranks whose
        blocks overlap; a rank's own rows are copied locally.

        Parameters
        ----------
        bounds : sequence of int, optional
            ``len(bounds) == ranks + 1``, ``bounds[0] == 0``, non-decreasing,
            ``bounds[-1] == len(x)``; or another DistArray's ``bounds``.
        """
        _mpi.refuse_in_task(self._comm, "DistArray.redistribute()")
        nranks = len(self._bounds) - 1
        problem = None
        try:
            new = (balanced_bounds(self._shape[0], nranks) if bounds is None
                   else np.asarray(bounds, dtype=np.int64))
            if (new.ndim != 1 or len(new) != nranks + 1 or new[0] != 0
                    or new[-1] != self._shape[0] or np.any(np.diff(new) < 0)):
                problem = (f"bounds must be {nranks + 1} non-decreasing row numbers from 0 to "
                           f"{self._shape[0]}; got {np.asarray(new).tolist()!r}")
        except (TypeError, ValueError, OverflowError) as exc:
            new, problem = np.zeros(0, np.int64), f"bounds must be a sequence of integers ({exc})"
        # every rank must move rows by the same bounds (or none may move any): a
        # rank that computed other bounds would wait for rows nobody sends
        where = f" (on rank {self._rank})" if nranks > 1 else ""
        error = None if problem is None else ArgumentValueError(
            f"DistArray.redistribute(): {problem}{where}; no rows were moved on any rank.")
        if nranks > 1:
            _agree_on(self._comm, "DistArray.redistribute",
                      [("call", "DistArray.redistribute()"), ("array", self._desc),
                       ("bounds", str(new.tolist()) if problem is None else "(invalid)")],
                      error, _REDISTRIBUTE)
        elif error is not None:
            raise error
        out = DistArray._allocate(self._shape, self._dtype, new, self._comm,
                                  function="DistArray.redistribute")
        moves = []
        for src in range(nranks):
            for dst in range(nranks):
                a = max(self._bounds[src], new[dst])
                b = min(self._bounds[src + 1], new[dst + 1])
                if a < b:
                    moves.append((src, dst, int(a), int(b)))
        me = self._rank
        sends, recvs = [], []
        for src, dst, a, b in moves:
            if src == me and dst == me:
                out.local[a - new[me]:b - new[me]] = self.local[a - self._bounds[me]:
                                                                b - self._bounds[me]]
            elif src == me:
                sends.append((dst, 0, self.local[a - self._bounds[me]:b - self._bounds[me]]))
            elif dst == me:
                recvs.append((src, 0, out.local[a - new[me]:b - new[me]]))
        transfer(self._comm, sends, recvs, "DistArray.redistribute")
        return out


#: What to do when the ranks' redistribute() calls differ.
_REDISTRIBUTE = (
    "DistArray.redistribute() is collective: the ranks passed different bounds (or "
    "arrays); pass the same bounds on every rank (another DistArray's .bounds, or bounds "
    "computed from values every rank holds); no rows were moved.")


# -- moving rows -----------------------------------------------------------------------

def transfer(comm: Any, sends: Sequence[tuple[int, int, np.ndarray]],
             recvs: Sequence[tuple[int, int, np.ndarray]],
             function: str = "DistArray.redistribute") -> int:
    """Send and receive contiguous blocks of rows; return the bytes moved by this rank.

    Each entry is ``(peer, tag, rows)``.  Both sides derive the same list from
    the same bounds, so sizes agree without being sent.  Runs on the private
    duplicate of *comm*; returns when every message of this rank is complete
    (watched, as a call of *function*: see ``_mpi.wait_begin``).
    """
    if not sends and not recvs:
        return 0
    mpi = _mpi.mpi_module()
    pcomm = _mpi.private_comm(comm, function)
    reqs = [pcomm.Irecv([as_bytes(r), mpi.BYTE], source=peer, tag=tag)
            for peer, tag, r in recvs]
    reqs += [pcomm.Isend([as_bytes(np.ascontiguousarray(s)), mpi.BYTE], dest=peer, tag=tag)
             for peer, tag, s in sends]
    with _mpi.waiting("the exchange of rows", function):
        mpi.Request.Waitall(reqs)
    return sum(int(r.nbytes) for _, _, r in recvs) + sum(int(s.nbytes) for _, _, s in sends)


def _row_counts(bounds: np.ndarray, rowbytes: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.diff(bounds) * rowbytes
    displs = bounds[:-1] * rowbytes
    return counts.astype(np.int64), displs.astype(np.int64)


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.hasobject:
        raise ArgumentError(f"{what} has dtype {dtype}, which holds Python objects: a "
                            "distributed array holds numbers (its rows travel as bytes).")


# -- constructors ----------------------------------------------------------------------

def scatter(array: Any, root: int = 0, comm: Any = None) -> DistArray:
    """Split *array* (significant on *root* only) by rows across the ranks.

    Collective.  The root's array travels once, by ``Scatterv`` of its bytes;
    each rank receives its rows straight into the distributed array's memory.

    Parameters
    ----------
    array : array_like
        The global array on rank *root*; ignored (may be None) elsewhere.
    root : int
        The rank that holds it.
    comm : mpi4py.MPI.Comm, optional
        Default ``COMM_WORLD`` under a launcher; one process without one.

    Returns
    -------
    DistArray
        Balanced rows: rank ``r`` gets rows ``r*n//P`` to ``(r+1)*n//P``.

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale import distribute
    >>> x = distribute.scatter(np.arange(6).reshape(3, 2))
    >>> x.shape
    (3, 2)
    """
    comm = _resolve(comm)
    if comm is None:
        _check_root(root, comm)
        arr = _as_array(array, _SCATTERED.format(root=0))
        out = DistArray._allocate(arr.shape, arr.dtype, balanced_bounds(arr.shape[0], 1), None)
        out.local[...] = arr
        return out
    _mpi.refuse_in_task(comm, "distribute.scatter()")
    nranks, me = comm.Get_size(), comm.Get_rank()
    meta: Any = None
    arr = None
    error = None
    try:  # this rank's refusal goes into the agreement: every rank raises it
        _check_root(root, comm)
        if me == root:
            arr = np.ascontiguousarray(_as_array(array, _SCATTERED.format(root=root)))
            # the dtype object itself (pickled): a record dtype keeps its fields,
            # which its ``str`` (``|V12``) does not
            meta = (arr.shape, arr.dtype)
    except (ArgumentError, ArgumentValueError) as exc:
        error = exc
    _agree_on(comm, "distribute.scatter", [("call", "distribute.scatter()"),
                                           ("root", _root_text(root))], error, _SCATTER)
    root = int(root)
    _mpi.wait_begin("the root's broadcast of the shape", "distribute.scatter")
    try:
        meta = comm.bcast(meta, root=root)  # two small values, not the array
    finally:
        _mpi.wait_end()
    shape, dtype = tuple(meta[0]), np.dtype(meta[1])
    out = DistArray._allocate(shape, dtype, balanced_bounds(shape[0], nranks), comm,
                              function="distribute.scatter")
    mpi = _mpi.mpi_module()
    rowbytes = row_bytes(out)
    counts, displs = _row_counts(out._bounds, rowbytes)
    send = [as_bytes(arr), (counts, displs), mpi.BYTE] if me == root else None
    with _mpi.waiting("the scattering of the rows", "distribute.scatter"):
        comm.Scatterv(send, [as_bytes(out.local), mpi.BYTE], root=root)
    return out


#: What scatter's errors call its array (the same words with and without MPI).
_SCATTERED = "the array given to scatter() on rank {root} (the root)"

#: What to do when the ranks' calls differ (the end of the error every rank raises).
_SCATTER = ("distribute.scatter() is collective: every rank must pass the same root (the "
            "rank that holds the array; the others' array argument is ignored and may be "
            "None) and the same comm; compute the root identically on every rank.")
_GATHER = ("distribute.{name}() is collective: every rank must pass its share of the same "
           "distributed array (the same shape, dtype and rows){root}; a rank that passed "
           "another array (or computed the root differently) is named above.")
_CONSTRUCT = ("{name}() is collective: every rank must make the same array (the same shape "
              "and dtype{like}); compute the arguments identically on every rank (or agree "
              "on them first, e.g. comm.bcast). Blocks whose sizes differ by rank make one "
              "distributed array with distribute.from_local(block).")
_FROM_LOCAL = ("The local blocks given to from_local() must agree in every axis but the "
               "first (their rows, which may differ) and in dtype across ranks: convert them "
               "the same way on every rank (block.astype(...), block.reshape(...)).")


def _root_text(root: Any) -> str:
    """*root* as the ranks compare it (an integer the same whatever its type)."""
    if isinstance(root, (int, np.integer)) and not isinstance(root, bool):
        return str(int(root))
    return repr(root)


def _check_root(root: Any, comm: Any) -> None:
    """Refuse a *root* that is not a rank of *comm* (None: this process alone), on
    every rank and before any collective: ``ArgumentValueError`` naming the range."""
    nranks = 1 if comm is None else int(comm.Get_size())
    if isinstance(root, (int, np.integer)) and not isinstance(root, bool) \
            and 0 <= root < nranks:
        return
    if comm is None:
        raise ArgumentValueError(f"root must be 0 in a process without an MPI launcher; "
                                 f"got {root!r}.")
    raise ArgumentValueError(f"root must be a rank from 0 to {nranks - 1}; got {root!r}.")


def _as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, DistArray):
        raise ArgumentError(f"{what} is already a DistArray.")
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise ArgumentError(f"{what} is a {type(value).__name__}, not an array: {exc}") from None
    if arr.ndim == 0:
        raise ArgumentValueError(f"{what} is a scalar ({value!r}): a distributed array needs "
                                 "at least one axis (its rows).")
    _check_dtype(arr.dtype, what)
    return arr


def _check_dist(x: Any, what: str) -> DistArray:
    if not isinstance(x, DistArray):
        raise ArgumentError(f"{what} must be a DistArray (from distribute.scatter, from_local "
                            f"or a loader); got a {type(x).__name__}.")
    return x


def gather(x: DistArray, root: int = 0) -> np.ndarray | None:
    """The whole array on rank *root* (a new NumPy array); None on the other ranks.

    Collective (``Gatherv`` of the rows' bytes).

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale import distribute
    >>> distribute.gather(distribute.scatter(np.arange(4)))
    array([0, 1, 2, 3])
    """
    return _collect(x, root, "distribute.gather")


def allgather(x: DistArray) -> np.ndarray:
    """The whole array on every rank (a new NumPy array); collective (``Allgatherv``).

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale import distribute
    >>> distribute.allgather(distribute.scatter(np.arange(4)))
    array([0, 1, 2, 3])
    """
    out = _collect(x, None, "distribute.allgather")
    assert out is not None
    return out


#: The agreements of gather / allgather calls with valid arguments, by (function,
#: root, the array's description): (fingerprint, fields, advice), worked out once.
_PRINTS: dict[tuple[str, type, Any, str], tuple[int, list[tuple[str, str]], str]] = {}


def _agree(comm: Any, function: str, known: int, fields: list[tuple[str, str]],
           advice: str) -> None:
    """The agreement of a call whose fingerprint *known* was worked out before."""
    agree(comm, function, known, np.empty(2, dtype=np.int64), np.empty(2, dtype=np.int64),
          _mpi.mpi_module().MAX, lambda: fields, advice)


def _agree_collect(x: Any, root: Any, function: str) -> None:
    """The agreement of a gather / allgather call (see :func:`_collect`), its
    arguments checked on this rank first."""
    name = function.split(".")[-1]
    error: Exception | None = None
    try:
        x = _check_dist(x, f"the argument of {name}()")
        comm = x._comm
    except ArgumentError as exc:  # not a DistArray: the default communicator
        error, comm = exc, _resolve(None)
    if comm is None:
        if error is not None:
            raise error
        if root is not None:
            _check_root(root, None)
        return
    _mpi.refuse_in_task(comm, f"{function}()")
    if error is None and root is not None:
        try:
            _check_root(root, comm)
        except ArgumentValueError as exc:
            error = exc
    desc = x._desc if isinstance(x, DistArray) else "(not a DistArray)"
    fields: list[tuple[str, str]] = [("call", f"{function}()"), ("array", desc)]
    if root is not None:
        fields.append(("root", _root_text(root)))
    advice = _GATHER.format(name=name, root="" if root is None else " and the same root")
    agree_call(comm, function, fields, error, advice)
    if error is None and len(_PRINTS) < 256:
        try:
            _PRINTS[(function, type(root), root, desc)] = (fingerprint(fields), fields, advice)
        except TypeError:  # an unhashable root
            pass


def _collect(x: Any, root: Any, function: str) -> np.ndarray | None:
    """Every rank's rows, on *root* (``Gatherv``) or, for None, everywhere
    (``Allgatherv``), after the ranks' agreement on the call, the root and the
    array (an argument refused on one rank is raised on every rank there)."""
    if type(x) is DistArray:
        comm = x._comm
        if comm is None:
            if root is not None:
                _check_root(root, None)
            return np.array(x.local)
        found = _PRINTS.get((function, type(root), root, x._desc))
        if found is not None and config.collectives_allowed():  # the common case
            _agree(comm, function, *found)
        else:
            _agree_collect(x, root, function)
    else:
        _agree_collect(x, root, function)
    if root is not None:
        root = int(root)
    mpi = _mpi.mpi_module()
    here = root is None or x._comm.Get_rank() == root
    out = np.empty(x.shape, dtype=x.dtype) if here else None
    counts, displs = _row_counts(x._bounds, row_bytes(x))
    send = [as_bytes(np.ascontiguousarray(x.local)), mpi.BYTE]
    recv = [as_bytes(out), (counts, displs), mpi.BYTE] if out is not None else None
    _mpi.wait_begin("the collection of the rows", function)
    try:
        if root is None:
            x._comm.Allgatherv(send, recv)
        else:
            x._comm.Gatherv(send, recv, root=root)
    finally:
        _mpi.wait_end()
    return out


def from_local(local: Any, comm: Any = None) -> DistArray:
    """A distributed array whose rows on each rank are *local* (stacked in rank order).

    Collective: the ranks exchange their row counts (and check that the
    trailing shapes and dtypes agree, raising the same error on every rank
    when they do not).

    Examples
    --------
    >>> import numpy as np
    >>> from loopscale import distribute
    >>> distribute.from_local(np.ones((3, 2))).shape   # P ranks: (3 P, 2)
    (3, 2)
    """
    comm = _resolve(comm)
    if comm is None:
        arr = _as_array(local, "the local block given to from_local()")
        out = DistArray._allocate(arr.shape, arr.dtype, balanced_bounds(arr.shape[0], 1),
                                  None, function="distribute.from_local")
        out.local[...] = arr
        return out
    _mpi.refuse_in_task(comm, "distribute.from_local()")
    # a block refused here goes into the agreement, so that every rank raises
    # (one rank raising alone left the others in the exchange, to pair with
    # its next from_local: wrong data, then a hang)
    error = None
    block = "(refused)"
    try:
        arr = _as_array(local, "the local block given to from_local()")
        # (the dtype's fields, not just its size, for a record dtype)
        block = (f"dtype {dtype_text(arr.dtype)}, shape "
                 f"({', '.join(['rows', *map(str, arr.shape[1:])])})")
    except (ArgumentError, ArgumentValueError) as exc:
        error = exc
    _agree_on(comm, "distribute.from_local", [("call", "distribute.from_local()"),
                                              ("block", block)], error, _FROM_LOCAL)
    mine = np.array([arr.shape[0]], dtype=np.int64)
    counts = np.empty(comm.Get_size(), dtype=np.int64)
    with _mpi.waiting("the exchange of the blocks' row counts", "distribute.from_local"):
        comm.Allgather(mine, counts)  # one int64 a rank
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out = DistArray._allocate((int(bounds[-1]), *arr.shape[1:]), arr.dtype, bounds, comm,
                              function="distribute.from_local")
    out.local[...] = arr
    return out


#: The fill of ``zeros`` and ``zeros_like``: all bytes zero, as ``np.zeros`` (a 0
#: assigned to a record dtype would write ``b"0"`` into its string fields).
_ZEROS = object()


def _fill(out: DistArray, fill: Any) -> None:
    if fill is _ZEROS:
        out.local[...] = np.zeros((), dtype=out.dtype)
    elif fill is not None:
        out.local[...] = fill


def _agree_on(comm: Any, function: str, fields: list[tuple[str, str]],
              error: BaseException | None = None, advice: str = "") -> None:
    """The ranks make the same call with the same *fields*: the agreement every
    call of loopscale's makes first (``_level.agree_call``: one ``Allreduce``,
    then, only if they differ, the same error on every rank, naming what each
    had, or the error a rank's own argument raised, *error*)."""
    agree_call(comm, function, fields, error, advice)


def _fill_field(fill: Any) -> list[tuple[str, str]]:
    """The fill value of ``full``/``full_like``, as the ranks compare it (a fill
    that differs by rank made an array whose rows differ in kind)."""
    if fill is None or fill is _ZEROS:
        return []
    return [("fill", f"{type(fill).__name__} {fill!r}")]


def _new(shape: Any, dtype: Any, comm: Any, fill: Any, function: str) -> DistArray:
    comm = _resolve(comm)
    _mpi.refuse_in_task(comm, f"{function}()")
    nranks = 1 if comm is None else comm.Get_size()
    error = None
    try:  # a refusal on one rank goes into the agreement: every rank raises it
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not shape or any(int(s) < 0 for s in shape):
            raise ArgumentValueError(f"shape must have at least one axis and no negative "
                                     f"length; got {shape!r}.")
        shape = tuple(int(v) for v in shape)
        dtype = np.dtype(dtype)
        _check_dtype(dtype, f"the array {function}() makes")
    except (TypeError, ValueError) as exc:
        if nranks == 1:
            raise
        error = exc
    if nranks > 1:
        # every rank must make the same array (a rank-dependent length gave
        # wrong rows, then "Message truncated", at the next exchange)
        _agree_on(comm, function, [("call", f"{function}()")] + (
            [("shape", str(shape)), ("dtype", dtype_text(dtype))] if error is None else [])
            + _fill_field(fill), error, _CONSTRUCT.format(name=function, like=""))
    out = DistArray._allocate(shape, dtype, balanced_bounds(int(shape[0]), nranks), comm,
                              function=function)
    _fill(out, fill)
    return out


def empty(shape: int | Sequence[int], dtype: Any = float, comm: Any = None) -> DistArray:
    """A new distributed array, rows balanced over the ranks, contents undefined.

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.empty((4, 3)).shape
    (4, 3)
    """
    return _new(shape, dtype, comm, None, "distribute.empty")


def zeros(shape: int | Sequence[int], dtype: Any = float, comm: Any = None) -> DistArray:
    """A new distributed array of zeros, rows balanced over the ranks.

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.allgather(distribute.zeros(3))
    array([0., 0., 0.])
    """
    return _new(shape, dtype, comm, _ZEROS, "distribute.zeros")


def full(shape: int | Sequence[int], fill_value: Any, dtype: Any = None,
         comm: Any = None) -> DistArray:
    """A new distributed array filled with *fill_value*, rows balanced over the ranks.

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.allgather(distribute.full(2, 7))
    array([7, 7])
    """
    return _new(shape, np.asarray(fill_value).dtype if dtype is None else dtype, comm,
                fill_value, "distribute.full")


def _like(x: Any, dtype: Any, fill: Any, function: str) -> DistArray:
    error = None
    try:
        x = _check_dist(x, f"the argument of {function}()")
        comm = x._comm
        dtype = x.dtype if dtype is None else np.dtype(dtype)
        _check_dtype(dtype, f"the array {function}() makes")
    except (TypeError, ValueError) as exc:
        comm = x._comm if isinstance(x, DistArray) else _resolve(None)
        if comm is None or comm.Get_size() == 1:
            raise
        error = exc
    if comm is not None and comm.Get_size() > 1:
        _mpi.refuse_in_task(comm, f"{function}()")
        _agree_on(comm, function, [("call", f"{function}()")] + (
            [("array", x._desc), ("dtype", dtype_text(dtype))] if error is None else [])
            + _fill_field(fill),
            error, _CONSTRUCT.format(name=function, like=" of the same distributed array"))
    out = DistArray._allocate(x.shape, dtype, x._bounds, x._comm, ghost=x._ghost,
                              function=function)
    _fill(out, fill)
    return out


def empty_like(x: DistArray, dtype: Any = None) -> DistArray:
    """A new distributed array with *x*'s shape and rows (and dtype unless given).

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.empty_like(distribute.zeros(5)).bounds
    (0, 5)
    """
    return _like(x, dtype, None, "distribute.empty_like")


def zeros_like(x: DistArray, dtype: Any = None) -> DistArray:
    """Zeros with *x*'s shape and rows (and dtype unless given).

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.zeros_like(distribute.zeros(5)).shape
    (5,)
    """
    return _like(x, dtype, _ZEROS, "distribute.zeros_like")


def full_like(x: DistArray, fill_value: Any, dtype: Any = None) -> DistArray:
    """*fill_value* with *x*'s shape and rows (and dtype unless given).

    Examples
    --------
    >>> from loopscale import distribute
    >>> distribute.allgather(distribute.full_like(distribute.zeros(2), 3.5))
    array([3.5, 3.5])
    """
    return _like(x, dtype, fill_value, "distribute.full_like")


def _ones_like(x: DistArray, dtype: Any = None) -> DistArray:
    """Ones with *x*'s shape and rows (what ``np.ones_like(x)`` gives)."""
    return _like(x, dtype, 1, "np.ones_like")


#: NumPy's like-shaped constructors, as a DistArray answers them.
_LIKE = {"empty_like": empty_like, "zeros_like": zeros_like, "ones_like": _ones_like,
         "full_like": full_like}
