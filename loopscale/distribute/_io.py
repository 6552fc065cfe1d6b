"""Loaders that read only this rank's rows of a file: ``.npy`` and Parquet.

Each rank opens the file itself (a shared file system, as on any cluster) and
reads the rows ``bounds[r]:bounds[r + 1]`` of the balanced partition, the same
partition :func:`~loopscale.distribute.scatter` gives, so arrays loaded from
different files line up row for row.  Nothing travels between ranks but a few
numbers (shapes, and whether every rank succeeded): a file bigger than one
node's memory loads, each rank holding its share.

- ``.npy``: the file is memory-mapped and only the pages of this rank's rows
  are read.
- Parquet (a file or a directory of files, taken in sorted order): the row
  groups that overlap this rank's rows are read (through pyarrow), and cut to
  the rows.

A failure on any rank (a missing file, a column that is not numeric) is
reported on every rank, with the rank that saw it; no rank is left waiting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ArgumentError, ArgumentValueError
from . import _mpi
from ._darray import DistArray, _resolve, balanced_bounds

__all__ = ["load_npy", "read_parquet"]


def _allgather(comm: Any, value: Any, what: str) -> list[Any]:
    """Every rank's *value* (small, pickled), the wait watched as one in *what*."""
    if comm is None:
        return [value]
    with _mpi.waiting("the ranks' exchange of what they read", what.rstrip("()")):
        return comm.allgather(value)  # type: ignore[no-any-return]


def _agree(comm: Any, error: str | None, what: str) -> None:
    """Raise on every rank if any rank has an *error*."""
    errors = _allgather(comm, error, what)
    bad = [(r, e) for r, e in enumerate(errors) if e is not None]
    if bad:
        shown = "; ".join(f"rank {r}: {e}" for r, e in bad[:4])
        more = f" (and {len(bad) - 4} more ranks)" if len(bad) > 4 else ""
        raise ArgumentValueError(f"{what} failed on {len(bad)} of {len(errors)} rank(s): "
                                 f"{shown}{more}")


_OBJECTS = ("holds Python objects (dtype object), which cannot be distributed: a "
            "distributed array holds numbers or records of numbers (its rows travel as "
            "bytes); save it with a numeric or record dtype")


def load_npy(path: str | os.PathLike[str], comm: Any = None) -> DistArray:
    """This rank's rows of the array in an ``.npy`` file, memory-mapped.

    Parameters
    ----------
    path : str or path-like
        An ``.npy`` file every rank can open.
    comm : mpi4py.MPI.Comm, optional
        Default ``COMM_WORLD`` under a launcher; one process without one.

    Returns
    -------
    DistArray
        Rows balanced over the ranks; only those pages of the file are read.

    Raises
    ------
    ArgumentValueError
        On every rank, when any rank cannot read the file.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from loopscale import distribute
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(6.0))
    >>> distribute.allgather(distribute.load_npy(path))
    array([0., 1., 2., 3., 4., 5.])
    """
    comm = _resolve(comm)
    _mpi.refuse_in_task(comm, "distribute.load_npy()")
    error = None
    mm = None
    try:
        mm = np.load(os.fspath(path), mmap_mode="r", allow_pickle=False)
        if not isinstance(mm, np.ndarray):
            error = f"{os.fspath(path)!r} is not a single array (an .npz archive?)"
        elif mm.ndim == 0:
            error = f"{os.fspath(path)!r} holds a scalar, which has no rows to distribute"
        elif mm.dtype.hasobject:
            error = f"{os.fspath(path)!r} {_OBJECTS}"
    except (OSError, ValueError) as exc:
        if "object" in str(exc).lower() and os.path.isfile(os.fspath(path)):
            # (NumPy refuses to memory-map an array of Python objects)
            error = f"{os.fspath(path)!r} {_OBJECTS} ({exc})"
        else:
            error = f"cannot read {os.fspath(path)!r}: {exc}"
    shape = dtype = None
    if error is None:
        # the dtype object itself: a record dtype keeps its fields (its ``str``,
        # ``|V12``, would not, and the rows could not be copied into it)
        shape, dtype = mm.shape, mm.dtype  # type: ignore[union-attr]
    _agree(comm, error, "distribute.load_npy()")
    metas = _allgather(comm, (shape, dtype), "distribute.load_npy()")
    if len(set(metas)) > 1:
        raise ArgumentValueError(
            f"distribute.load_npy({os.fspath(path)!r}): the ranks see different arrays "
            f"({'; '.join(f'rank {r}: {s} {d}' for r, (s, d) in enumerate(metas))}); is the "
            "file on a shared file system, and not being rewritten?")
    nranks = 1 if comm is None else comm.Get_size()
    bounds = balanced_bounds(shape[0], nranks)  # type: ignore[index]
    out = DistArray._allocate(shape, np.dtype(dtype), bounds, comm,  # type: ignore[arg-type]
                              function="distribute.load_npy")
    r0, r1 = out.local_rows
    out.local[...] = mm[r0:r1]  # type: ignore[index]
    del mm
    return out


def _parquet_files(path: str) -> list[str]:
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(root, f) for f in sorted(files)
                      if not f.startswith((".", "_")) and not f.endswith(".crc")]
        return found
    return [path]


def read_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None,
                 comm: Any = None) -> dict[str, DistArray]:
    """This rank's rows of the numeric columns of a Parquet file or dataset.

    Parameters
    ----------
    path : str or path-like
        A Parquet file, or a directory of them (read in sorted path order, as
        one table).
    columns : sequence of str, optional
        The columns to read (default: all; each must be numeric, boolean or
        a date/time).
    comm : mpi4py.MPI.Comm, optional
        Default ``COMM_WORLD`` under a launcher; one process without one.

    Returns
    -------
    dict of str to DistArray
        One distributed array per column, all with the same balanced rows.
        Only the row groups that overlap this rank's rows are read.

    Raises
    ------
    ArgumentValueError
        On every rank, when any rank cannot read the data (missing file or
        column, text column, missing values in an integer column).

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from loopscale import distribute
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> pd.DataFrame({"x": [1.0, 2.0, 3.0], "k": [1, 2, 3]}).to_parquet(path)
    >>> cols = distribute.read_parquet(path)
    >>> distribute.allgather(cols["k"])
    array([1, 2, 3])
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ArgumentError("distribute.read_parquet() needs pyarrow: pip install pyarrow "
                            "(or pip install 'loopscale[parquet]').") from exc
    comm = _resolve(comm)
    _mpi.refuse_in_task(comm, "distribute.read_parquet()")
    path = os.fspath(path)
    error = None
    groups: list[tuple[str, int, int]] = []  # (file, row group, rows)
    names: list[str] = []
    try:
        files = _parquet_files(path)
        if not files:
            raise OSError(f"no Parquet files in {path!r}")
        for f in files:
            meta = pq.ParquetFile(f).metadata
            if not names:
                names = list(meta.schema.to_arrow_schema().names)
            groups += [(f, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        wanted = list(columns) if columns is not None else names
        missing = [c for c in wanted if c not in names]
        if missing:
            raise ValueError(f"no column(s) {missing} (columns: {names})")
    except (OSError, ValueError) as exc:
        error = f"cannot read {path!r}: {exc}"
    _agree(comm, error, "distribute.read_parquet()")
    nrows = sum(g[2] for g in groups)
    nranks = 1 if comm is None else comm.Get_size()
    bounds = balanced_bounds(nrows, nranks)
    me = 0 if comm is None else comm.Get_rank()
    r0, r1 = int(bounds[me]), int(bounds[me + 1])
    arrays: dict[str, np.ndarray] = {}
    error = None
    try:
        arrays = _read_rows(pq, groups, wanted, r0, r1)
    except (OSError, ValueError, TypeError) as exc:
        error = str(exc)
    _agree(comm, error, "distribute.read_parquet()")
    dtypes = {c: a.dtype.str for c, a in arrays.items()}
    seen = _allgather(comm, dtypes, "distribute.read_parquet()")
    out = {}
    for c in wanted:
        kinds = {s[c] for s in seen}
        if len(kinds) > 1:  # e.g. one rank's rows had nulls in a float column's int storage
            raise ArgumentValueError(
                f"distribute.read_parquet(): column {c!r} reads as different dtypes on "
                f"different ranks ({sorted(kinds)}); cast it in the file or choose columns.")
        a = arrays[c]
        d = DistArray._allocate((nrows, *a.shape[1:]), a.dtype, bounds, comm,
                                function="distribute.read_parquet")
        d.local[...] = a
        out[c] = d
    return out


def _read_rows(pq: Any, groups: list[tuple[str, int, int]], columns: list[str], r0: int,
               r1: int) -> dict[str, np.ndarray]:
    """The rows ``[r0, r1)`` of *columns*, reading only the row groups that hold them."""
    import pyarrow as pa

    pieces = []
    start = 0
    by_file: dict[str, list[int]] = {}
    first_row = None
    for f, g, rows in groups:
        stop = start + rows
        if start < r1 and stop > r0 and rows:
            by_file.setdefault(f, []).append(g)
            if first_row is None:
                first_row = start
        start = stop
    for f, gs in by_file.items():
        pieces.append(pq.ParquetFile(f, memory_map=True).read_row_groups(gs, columns=columns))
    out = {}
    if pieces:
        table = pa.concat_tables(pieces).slice(r0 - (first_row or 0), r1 - r0)
    schema = pq.ParquetFile(groups[0][0]).schema_arrow if groups and not pieces else None
    for c in columns:
        if pieces:
            col = table.column(c)
        else:  # no rows here: an empty column of the schema's type, converted as elsewhere
            col = pa.chunked_array([], type=schema.field(c).type if schema is not None
                                   else pa.float64())
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_temporal(t)):
            raise TypeError(f"column {c!r} has type {t}, not a number: pass columns=[...] "
                            "with the numeric columns only")
        if col.null_count and not pa.types.is_floating(t):
            raise ValueError(f"column {c!r} ({t}) has {col.null_count} missing value(s) in "
                             "this rank's rows; fill them in the file or read a float column")
        out[c] = np.ascontiguousarray(col.to_numpy())
    return out
