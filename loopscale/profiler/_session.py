"""Session data: what a profiling run collected, frozen.

The sampler produces a :class:`Session`; every later step (loop attribution,
verdicts, rendering) is a pure function of it.  A session is plain data --
tuples, strings and floats -- so tests build one by hand with exact numbers
and no timer, and a session can be pickled or written out as it is.

A frame is ``(filename, lineno, function, column)``: ``column`` is the start
column of the instruction the frame was running, which tells a comprehension
apart from the rest of its line.  It is -1 when unknown (Python 3.10 has no
columns; hand-made sessions may give 3-tuples): a function's frame is then
charged to the loops around its line, not to a comprehension on it, whose
own code object (``f.<locals>.<listcomp>``) is charged to it.  A stack lists
frames outermost first, so ``stack[-1]`` is the frame that was running.  A
sample carries the seconds it stands for (the time since the previous
sample), the thread it was taken on and whether that time was spent in
native code (a C call made from the top frame) rather than in Python bytecode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Frame", "Sample", "Capture", "Session"]

#: ``(filename, lineno, function, column)``; ``function`` is the code's qualified
#: name, ``column`` the instruction's start column or -1 (3-tuples are accepted too).
Frame = tuple[Any, ...]


@dataclass(frozen=True)
class Sample:
    """One sample: a stack and the seconds it stands for."""

    stack: tuple[Frame, ...]
    weight: float
    thread: int = 0
    native: bool = False


@dataclass(frozen=True)
class Capture:
    """Arguments of one function as seen while sampling.

    ``args`` maps each parameter name to its value when the value was small
    enough to copy (arrays, numbers, strings, small containers, pandas
    objects), and ``kinds`` maps every parameter to a description of its type
    (``"float64[:, :]"``, ``"dict"``, ``"pandas.DataFrame"``), copied or not.
    """

    filename: str
    qualname: str
    firstlineno: int
    params: tuple[str, ...]
    args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    kinds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def complete(self) -> bool:
        """Whether every parameter's value was copied (a trial can run)."""
        return all(p in self.args for p in self.params)


@dataclass(frozen=True)
class Session:
    """Everything a profiling run collected.

    ``duration`` is the wall-clock time between start and stop;
    ``interval`` the requested sampling interval; ``mode`` how samples were
    taken (``"signal"`` or ``"thread"``); ``partial`` is true when the
    profiled code did not finish normally (it raised or was interrupted).
    """

    samples: tuple[Sample, ...]
    duration: float
    interval: float
    mode: str = "signal"
    timer: str = "wall"
    ticks: int = 0
    start_time: float = 0.0
    partial: bool = False
    exit_status: int | None = None
    argv: tuple[str, ...] = ()
    captures: tuple[Capture, ...] = ()
    messages: tuple[str, ...] = ()
    rank: int | None = None

    @property
    def total_seconds(self) -> float:
        """Seconds the samples stand for (summed over threads)."""
        return sum(s.weight for s in self.samples)

    @property
    def achieved_rate(self) -> float:
        """Samples per second actually taken (ticks of the timer that ran)."""
        return self.ticks / self.duration if self.duration > 0 else 0.0

    @property
    def requested_rate(self) -> float:
        return 1.0 / self.interval if self.interval > 0 else 0.0

    def capture_for(self, filename: str, qualname: str) -> Capture | None:
        """The capture of function *qualname* defined in *filename*, if any."""
        for cap in self.captures:
            if cap.filename == filename and cap.qualname == qualname:
                return cap
        return None
