"""Shared-memory scheduler: the ``threads`` level (planned, not implemented yet).

This package will run a compiled chunk kernel over blocks of a loop's
iteration space on the local cores, with reductions combined in a fixed order
so that any worker count gives the same answer, and will register its executor
under the ``loopscale.levels`` entry point as ``threads``.  Nothing is
implemented yet: the package is a placeholder so that the package layout of the
design exists.
"""

from __future__ import annotations

__all__: list[str] = []
