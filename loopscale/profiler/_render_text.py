"""The terminal table: hottest loops first, with shares, verdicts and suggestions."""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import LoopReport, Report

__all__ = ["render", "verdict_text"]


def _where(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith(".." + os.sep) else path


def verdict_text(loop: LoopReport) -> str:
    """One short phrase: ``accelerable (12.3x)``, ``not accelerable``, ``not checked``."""
    if loop.accelerable is True:
        return f"accelerable ({loop.speedup:.1f}x)" if loop.speedup else "accelerable"
    if loop.accelerable is False:
        return "not accelerable"
    return "not checked" if loop.reason is None else "unknown"


def render(report: Report, *, width: int = 100) -> str:
    """The report as a table for a terminal."""
    session = report.session
    head = (f"loopscale profile: {report.total_seconds:.3f} s sampled in "
            f"{report.samples} samples ({session.achieved_rate:.0f}/s of "
            f"{session.requested_rate:.0f}/s requested, {session.mode} mode, "
            f"{session.timer} clock)")
    lines = [head]
    if session.partial:
        status = "" if session.exit_status is None else f", exit status {session.exit_status}"
        lines.append(f"PARTIAL: the profiled code did not finish normally{status}")
    for msg in report.messages:
        lines.extend(textwrap.wrap(f"warning: {msg}", width, subsequent_indent="  "))
    if not report.loops:
        lines.append("no loop took a measurable share of the time")
        return "\n".join(lines) + "\n"
    rows = [("share", "self", "python", "loop", "function", "verdict")]
    for loop in report.loops:
        kind = "" if loop.kind in ("for", "while") else f" ({loop.kind})"
        rows.append((f"{loop.fraction * 100:5.1f}%", f"{loop.self_seconds:8.3f}s",
                     f"{loop.python_fraction * 100:5.1f}%",
                     f"{_where(loop.file)}:{loop.line}-{loop.end_line}{kind}",
                     loop.function, verdict_text(loop)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    for row in rows:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        lines.append("  ".join(cells).rstrip())
    notes = [loop for loop in report.loops if loop.reason or loop.suggestion]
    if notes:
        lines.append("")
    for loop in notes:
        where = f"{_where(loop.file)}:{loop.line}"
        for text in (loop.reason, loop.suggestion):
            if text:
                # prose, then (after a blank line) code, printed as it is
                prose, _, code = text.partition("\n\n")
                lines.extend(textwrap.wrap(f"{where}: {prose}", width,
                                           subsequent_indent="    "))
                if code:
                    lines.extend(f"        {line}".rstrip() for line in code.splitlines())
    return "\n".join(lines) + "\n"
