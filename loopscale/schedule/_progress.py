"""Progress for long parallel regions and task graphs.

One daemon thread, started the first time it is needed, looks at the regions
being tracked every 0.2 s and draws a single line on standard error::

    loopscale mandel(): [##########..........]  50%  512/1024 chunks  2.1 s, ~2.1 s left

``progress=True`` shows it from the start; ``progress=None`` (the default)
shows it only when standard error is a terminal and the run has lasted more
than :data:`AUTO_AFTER_SECONDS`; ``progress=False`` never.  Tracking a region
costs two set operations, so short regions pay nothing noticeable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["AUTO_AFTER_SECONDS", "Tracker", "render", "track", "untrack"]

#: With ``progress=None``, a run longer than this shows a bar (on a terminal).
AUTO_AFTER_SECONDS = 2.0
_TICK = 0.2


def render(label: str, done: int, total: int, elapsed: float, unit: str = "chunks",
           width: int = 20) -> str:
    """The text of one progress line (pure, for tests)."""
    frac = done / total if total else 1.0
    fill = int(round(frac * width))
    bar = "#" * fill + "." * (width - fill)
    eta = ""
    if 0 < done < total and elapsed > 0:
        eta = f", ~{elapsed * (total - done) / done:.1f} s left"
    return (f"{label}: [{bar}] {frac * 100:3.0f}%  {done}/{total} {unit}  "
            f"{elapsed:.1f} s{eta}")


class Tracker:
    """One tracked run: its label, how to count progress, when it started."""

    __slots__ = ("label", "count", "total", "start", "force", "shown", "unit", "stream")

    def __init__(self, label: str, count: Callable[[], int], total: int, force: bool,
                 unit: str, stream: TextIO) -> None:
        self.label = label
        self.count = count
        self.total = total
        self.start = time.perf_counter()
        self.force = force
        self.shown = False
        self.unit = unit
        self.stream = stream

    def due(self, now: float) -> bool:
        return self.force or (now - self.start >= AUTO_AFTER_SECONDS)

    def draw(self, final: bool = False) -> None:
        text = render(self.label, min(self.count(), self.total), self.total,
                      time.perf_counter() - self.start, self.unit)
        try:
            self.stream.write("\r" + text + ("\n" if final else ""))
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: stop drawing
            self.force = False
        self.shown = True


_ACTIVE: set[Tracker] = set()
_LOCK = threading.Lock()
_THREAD: threading.Thread | None = None


def _loop() -> None:
    while True:
        time.sleep(_TICK)
        now = time.perf_counter()
        with _LOCK:
            trackers = list(_ACTIVE)
        for t in trackers:
            with _LOCK:
                live = t in _ACTIVE
            if live and t.due(now):
                t.draw()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def track(label: str, count: Callable[[], int], total: int, progress: bool | None,
          unit: str = "chunks", stream: TextIO | None = None) -> Tracker | None:
    """Start tracking a run; None when no bar could ever be shown for it."""
    global _THREAD
    if progress is False:
        return None
    stream = stream or sys.stderr
    if progress is None and not _is_tty(stream):
        return None
    tracker = Tracker(label, count, total, progress is True, unit, stream)
    with _LOCK:
        _ACTIVE.add(tracker)
        if _THREAD is None:
            _THREAD = threading.Thread(target=_loop, name="loopscale-progress", daemon=True)
            _THREAD.start()
    return tracker


def untrack(tracker: Tracker | None) -> None:
    """Stop tracking; finish the line if a bar was shown."""
    if tracker is None:
        return
    with _LOCK:
        _ACTIVE.discard(tracker)
    if tracker.shown or tracker.force:
        tracker.draw(final=True)
