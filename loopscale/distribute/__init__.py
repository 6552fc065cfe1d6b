"""MPI scale-out layer: the ``mpi`` level (planned, not implemented yet).

This package will split a loop's iteration space across MPI ranks (replicated
inputs, or arrays partitioned along the loop's axis with halo exchange for
reads at constant offsets), register its executor under the
``loopscale.levels`` entry point as ``mpi``, and own the one import of
``mpi4py.MPI`` in loopscale, made at first use and never at
``import loopscale``.  Nothing is implemented yet: the package is a
placeholder so that the package layout of the design exists.
"""

from __future__ import annotations

__all__: list[str] = []
