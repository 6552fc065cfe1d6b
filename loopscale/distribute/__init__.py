"""The MPI rung: the same decorated function across ranks and nodes.

Under ``mpiexec -n P python script.py`` (or ``loopscale run -n P``), the
``mpi`` level (:class:`MPIExecutor`, registered under the ``loopscale.levels``
entry point) deals a loop's blocks to the ranks — each rank runs its share
with the ``threads`` level on its share of the node's cores — and gives every
rank the full outputs, bit for bit what the ``serial`` level gives
(replicated mode).  :func:`map` is a load-balanced task farm for irregular
Python work; :func:`comm`, :func:`rank`, :func:`size` give the communicator.

``mpi4py.MPI`` is imported only in :mod:`._mpi`, at first use: importing this
package does not start MPI.  Under a launcher with more than one rank,
importing it arms abort-on-failure (see :mod:`._mpi`).
"""

from __future__ import annotations

from . import _mpi
from ._darray import (
    DistArray,
    allgather,
    empty,
    empty_like,
    from_local,
    full,
    full_like,
    gather,
    scatter,
    zeros,
    zeros_like,
)
from ._farm import map
from ._io import load_npy, read_parquet
from ._launch import run_script
from ._level import MPIExecutor, last_call_stats
from ._mpi import comm, install_abort_handler, rank, size

__all__ = ["DistArray", "MPIExecutor", "allgather", "comm", "empty", "empty_like", "from_local",
           "full", "full_like", "gather", "install_abort_handler", "last_call_stats",
           "load_npy", "map",
           "rank", "read_parquet", "run_script", "scatter", "size", "zeros", "zeros_like"]

_mpi.install_abort_handler()
