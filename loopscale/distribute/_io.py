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
from ._level import agree_call
from ._partition import dtype_text

#: What to do when the ranks' loader calls differ.
_SAME_FILE = ("{function}() is collective: every rank must pass the same path{columns} and see "
              "the same data there (a shared file system, a file not being rewritten); a "
              "file per rank holds a block per rank: read it with NumPy and make one "
              "distributed array with distribute.from_local(block).")

__all__ = ["load_npy", "read_parquet"]


def _agree(comm: Any, function: str, fields: list[tuple[str, str]], error: str | None,
           advice: str) -> None:
    """Begin (or go on with) a loader's collective work: the ranks agree on *fields*
    and on whether each read what it had to (*error*: what went wrong on this
    rank), through the agreement every call of loopscale begins with (one
    ``Allreduce``; the fields are exchanged only when the ranks differ).  Raises
    :class:`ArgumentValueError` on every rank if any rank has an *error* (naming
    each rank's) or the fields differ (naming each rank's, and *advice*)."""
    alone = comm is None or comm.Get_size() == 1
    exc = None if error is None else ArgumentValueError(
        f"{function}(): {error}" + (" (on rank 0, the only one)" if alone else ""))
    try:
        agree_call(comm, function, [("call", f"{function}()"), *fields], exc, advice)
    except ArgumentValueError as raised:
        if raised is exc and comm is not None and comm.Get_size() > 1:
            # every rank failed in the same way
            raise ArgumentValueError(f"{exc} (on every rank: all {comm.Get_size()} ranks "
                                     "failed the same way)") from None
        raise


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
        name = os.fspath(path)
    except TypeError as exc:
        name, error = repr(path), f"path must be a str or path-like; {exc}"
    try:
        if error is None:
            mm = np.load(name, mmap_mode="r", allow_pickle=False)
            if not isinstance(mm, np.ndarray):
                error = f"{name!r} is not a single array (an .npz archive?)"
            elif mm.ndim == 0:
                error = f"{name!r} holds a scalar, which has no rows to distribute"
            elif mm.dtype.hasobject:
                error = f"{name!r} {_OBJECTS}"
    except (OSError, ValueError) as exc:
        if "object" in str(exc).lower() and os.path.isfile(name):
            # (NumPy refuses to memory-map an array of Python objects)
            error = f"{name!r} {_OBJECTS} ({exc})"
        else:
            error = f"cannot read {name!r}: {exc}"
    shape = dtype = None
    if error is None:
        # the dtype object itself: a record dtype keeps its fields (its ``str``,
        # ``|V12``, would not, and the rows could not be copied into it)
        shape, dtype = mm.shape, mm.dtype  # type: ignore[union-attr]
    # one agreement: the call, the path, and the array every rank sees (or its error)
    _agree(comm, "distribute.load_npy",
           [("path", name)] + ([("array", f"{dtype_text(dtype)}{list(shape)}")]
                               if error is None else []),  # type: ignore[arg-type]
           error, _SAME_FILE.format(function="distribute.load_npy", columns=""))
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
    comm = _resolve(comm)
    _mpi.refuse_in_task(comm, "distribute.read_parquet()")
    function = "distribute.read_parquet"
    advice = _SAME_FILE.format(function=function, columns=" and the same columns")
    error = None
    pq: Any = None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        error = ("distribute.read_parquet() needs pyarrow: pip install pyarrow (or pip "
                 "install 'loopscale[parquet]')")
        if comm is None or comm.Get_size() == 1:
            raise ArgumentError(error + ".") from None
    groups: list[tuple[str, int, int]] = []  # (file, row group, rows)
    names: list[str] = []
    wanted: list[str] = []
    try:
        path = os.fspath(path)
        wanted = list(columns) if columns is not None else []
        if error is None:
            files = _parquet_files(path)
            if not files:
                raise OSError(f"no Parquet files in {path!r}")
            for f in files:
                meta = pq.ParquetFile(f).metadata
                if not names:
                    names = list(meta.schema.to_arrow_schema().names)
                groups += [(f, g, meta.row_group(g).num_rows)
                           for g in range(meta.num_row_groups)]
            wanted = list(columns) if columns is not None else names
            missing = [c for c in wanted if c not in names]
            if missing:
                raise ValueError(f"no column(s) {missing} (columns: {names})")
    except (OSError, ValueError) as exc:
        error = f"cannot read {path!r}: {exc}"
    except TypeError as exc:  # a path or columns of the wrong type
        error = f"path must be a str or path-like and columns a list of names; {exc}"
    nrows = sum(g[2] for g in groups)
    # the first agreement: the call, the path, the columns and the rows every rank sees
    _agree(comm, function, [("path", repr(path)), ("columns", repr(columns)),
                            ("rows", str(nrows)) if error is None else ("rows", "?")],
           error, advice)
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
    # the second: every rank read its rows, as the same dtypes (one rank's rows with
    # nulls in an integer column's storage would read as floats)
    _agree(comm, function, [("phase", "reading the rows")] + [
        (f"column {c!r}", a.dtype.str) for c, a in arrays.items()], error,
        "A column that reads as different dtypes on different ranks (its values' storage "
        "differs between row groups): cast it in the file or choose other columns.")
    out = {}
    for c in wanted:
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
