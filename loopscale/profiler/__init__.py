"""Loop profiler behind ``loopscale profile`` (planned, not implemented yet).

This package will sample a running script, attribute time to the Python loops
that take it, and ask :mod:`loopscale.accel` whether each hot loop compiles,
so that a user knows which function to decorate with ``@accelerate``.
Nothing is implemented yet: the package is a placeholder so that the layout
of the design exists.
"""

from __future__ import annotations

__all__: list[str] = []
