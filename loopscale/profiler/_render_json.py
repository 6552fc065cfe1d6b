"""``--json FILE``: the report as the JSON object issue #6 specifies.

``{"total_seconds": float, "samples": int, "loops": [{"file", "line",
"end_line", "function", "self_seconds", "inclusive_seconds", "fraction",
"python_fraction", "accelerable", "reason", "speedup"}]}`` where
``fraction`` is the loop's inclusive share of ``total_seconds``.  A few
extra top-level keys (``partial``, ``duration``, ``sample_rate``...) follow
the specified ones; the loop objects carry exactly the listed keys.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["as_dict", "render", "LOOP_KEYS"]

#: The keys of each loop object, in order.
LOOP_KEYS = ("file", "line", "end_line", "function", "self_seconds", "inclusive_seconds",
             "fraction", "python_fraction", "accelerable", "reason", "speedup")


def as_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data."""
    session = report.session
    return {
        "total_seconds": report.total_seconds,
        "samples": report.samples,
        "loops": [loop.as_dict() for loop in report.loops],
        "partial": session.partial,
        "exit_status": session.exit_status,
        "duration": session.duration,
        "interval": session.interval,
        "sample_rate": session.achieved_rate,
        "mode": session.mode,
        "timer": session.timer,
        "rank": session.rank,
        "argv": list(session.argv),
        "messages": list(report.messages),
    }


def render(report: Report) -> str:
    """The report as JSON text."""
    return json.dumps(as_dict(report), indent=2) + "\n"
