"""The report: a session's loops, their shares of time and their verdicts.

:func:`build_report` is the one transform from a
:class:`~loopscale.profiler._session.Session` to a :class:`Report`; the
renderers (``_render_text``, ``_render_json``, ``_render_html``, ``_diff``)
only format a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ._loops import Attribution, LoopInfo, SourceIndex, attribute, load_index
from ._session import Session
from ._verdict import CHECKS, Verdict, check_loops

__all__ = ["LoopReport", "Report", "build_report"]


@dataclass(frozen=True)
class LoopReport:
    """One hot loop: where it is, its time, and whether its function compiles."""

    file: str
    line: int
    end_line: int
    function: str
    kind: str
    self_seconds: float
    inclusive_seconds: float
    fraction: float
    python_fraction: float
    accelerable: bool | None = None
    reason: str | None = None
    speedup: float | None = None
    suggestion: str | None = None
    def_line: int = 0
    first_line: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The loop as the ``--json`` schema has it."""
        return {"file": self.file, "line": self.line, "end_line": self.end_line,
                "function": self.function, "self_seconds": self.self_seconds,
                "inclusive_seconds": self.inclusive_seconds, "fraction": self.fraction,
                "python_fraction": self.python_fraction, "accelerable": self.accelerable,
                "reason": self.reason, "speedup": self.speedup}


@dataclass(frozen=True)
class Report:
    """What :func:`loopscale.profiler.profile` and ``loopscale profile`` produce."""

    session: Session
    loops: tuple[LoopReport, ...]
    total_seconds: float
    line_seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    messages: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return self.session.partial

    @property
    def samples(self) -> int:
        return len(self.session.samples)

    def as_dict(self) -> dict[str, Any]:
        from ._render_json import as_dict

        return as_dict(self)

    def to_text(self, **kwargs: Any) -> str:
        from ._render_text import render

        return render(self, **kwargs)

    def to_html(self) -> str:
        from ._render_html import render

        return render(self)

    def to_diff(self) -> str:
        from ._diff import render

        return render(self)

    def loop_at(self, file: str, line: int) -> LoopReport | None:
        """The loop that starts at *file*:*line* (``file`` may be a suffix)."""
        for loop in self.loops:
            if loop.line == line and loop.file.endswith(file):
                return loop
        return None

    def __str__(self) -> str:
        return self.to_text()


def build_report(session: Session, *, check: str = "compile", top: int = 5,
                 min_fraction: float = 0.05, show_fraction: float = 0.01,
                 timeout: float = 60.0, sys_path: list[str] | None = None,
                 indexes: dict[str, SourceIndex | None] | None = None) -> Report:
    """Attribute *session* to loops and judge the hot ones.

    Loops with at least *show_fraction* of the time are listed; the *top*
    hottest with at least *min_fraction* get a verdict (*check* is
    ``"none"``, ``"compile"`` or ``"trial"``; each check runs in a child
    process stopped after *timeout* seconds).
    """
    if check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(map(repr, CHECKS))}; got {check!r}")
    indexes = dict(indexes or {})
    attribution: Attribution = attribute(session, indexes=indexes)
    total = attribution.total_seconds
    shown = [s for s in attribution.loops
             if total > 0 and s.inclusive_seconds / total >= show_fraction]
    hot = [s.loop for s in shown if s.inclusive_seconds / total >= min_fraction][:top]
    for loop in hot:
        if loop.file not in indexes:
            indexes[loop.file] = load_index(loop.file, session.start_time)[0]
    verdicts: dict[LoopInfo, Verdict] = {}
    if hot:
        verdicts = check_loops(hot, session, check=check, timeout=timeout,
                               indexes=indexes, sys_path=sys_path)
    loops = []
    for stat in shown:
        info = stat.loop
        loop = LoopReport(
            file=info.file, line=info.line, end_line=info.end_line, function=info.function,
            kind=info.kind, self_seconds=stat.self_seconds,
            inclusive_seconds=stat.inclusive_seconds, fraction=stat.inclusive_seconds / total,
            python_fraction=stat.python_fraction, def_line=info.def_line,
            first_line=info.first_line)
        verdict = verdicts.get(info)
        if verdict is not None:
            loop = replace(loop, accelerable=verdict.accelerable, reason=verdict.reason,
                           speedup=verdict.speedup, suggestion=verdict.suggestion)
        loops.append(loop)
    messages = tuple(session.messages) + attribution.messages
    return Report(session, tuple(loops), total, attribution.line_seconds, messages)
