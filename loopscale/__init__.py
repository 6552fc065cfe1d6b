"""loopscale: numeric Python loops from one core to many cores to many nodes.

Decorate a function with :func:`accelerate`; call it as before.  Choose where it
runs with :func:`level` or ``LOOPSCALE_LEVEL``, or launch under ``mpiexec``.

``accelerate`` and ``prange`` are imported on first use, so that tools that only
need the configuration or the profiler (``loopscale profile``) start without
loading Numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import config as _config
from .config import level

__version__ = "0.1.0"

if _config.launcher_world_size() > 1:
    # launched on several MPI ranks: an unhandled exception on one rank must stop
    # them all (without initialising MPI here; see loopscale.distribute._mpi)
    from .distribute import _mpi as _mpi

    _mpi.install_abort_handler()

__all__ = ["__version__", "accelerate", "level", "prange"]

if TYPE_CHECKING:  # pragma: no cover
    from .accel import accelerate, prange


def __getattr__(name: str) -> Any:
    if name in ("accelerate", "prange"):
        from . import accel

        return getattr(accel, name)
    raise AttributeError(f"module 'loopscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
