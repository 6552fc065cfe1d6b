"""loopscale: numeric Python loops from one core to many cores to many nodes.

Decorate a function with :func:`accelerate`; call it as before.  Choose where it
runs with :func:`level` or ``LOOPSCALE_LEVEL``, or launch under ``mpiexec``.
"""

from __future__ import annotations

from .accel import accelerate, prange
from .config import level

__version__ = "0.1.0"

__all__ = ["__version__", "accelerate", "level", "prange"]
