"""loopscale: numeric Python loops from one core to many cores to many nodes.

Decorate a function with :func:`accelerate`; call it as before.  Choose where it
runs with :func:`level` or ``LOOPSCALE_LEVEL``, or launch under ``mpiexec``.

``accelerate`` and ``prange`` are imported on first use, so that tools that only
need the configuration or the profiler (``loopscale profile``) start without
loading Numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import level

__version__ = "0.1.0"

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
