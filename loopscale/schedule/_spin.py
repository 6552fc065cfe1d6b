"""A short wait that does not sleep: compiled, without the GIL.

A thread that blocks on a lock or an event sleeps, and on a virtual machine
a sleeping thread's CPU is handed back to the host: waking it again takes
40-110 us (measured on the 2-core VM: the caller of a parallel region
woke 43-59 us after the last pool thread said it was done, a pool thread
started 107 us after it was handed a region).  OpenMP runtimes spin a while
before they sleep for the same reason.  :func:`spin_until_set` is that spin:
a loop, compiled by Numba with ``nogil=True`` (the other threads keep the GIL
to themselves meanwhile), that reads a flag with an atomic acquire load and
calls ``sched_yield`` between reads (a runnable thread waiting for this CPU
gets it), for a bounded number of reads.  Callers fall back to their
blocking wait when it returns False, so a spin that ends early or is not
available (no Numba CPU target) changes only how long the wait takes.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["SPIN_TRIES", "spin_until_set"]

#: Reads of the flag before giving up (~0.2 us each on an idle CPU: about 1 ms).
SPIN_TRIES = 5000

_COMPILED: list[Any] = []
_LOCK = threading.Lock()


def _build() -> Any:
    from ._spin_kernel import spin

    return spin


def spin_until_set(flag: Any, tries: int = SPIN_TRIES) -> bool:
    """Wait, without sleeping and without the GIL, until ``flag[0] != 0``.

    *flag* is a one-element ``int64`` NumPy array that another thread sets.
    True when it was seen set, False after *tries* reads (or when the spin
    cannot be compiled here): then wait the blocking way.
    """
    if not _COMPILED:
        with _LOCK:
            if not _COMPILED:
                try:
                    _COMPILED.append(_build())
                except Exception:  # noqa: BLE001 - no spin: the blocking wait serves
                    _COMPILED.append(None)
    spin = _COMPILED[0]
    if spin is None:
        return False
    return bool(spin(flag, tries))
