"""``--html FILE``: one self-contained page (no scripts, fonts or links to fetch).

The page shows the loop table, then the source of every file that holds a
listed loop, each line shaded by its share of the time (the time whose
innermost user frame was on that line), with the hot loops' lines marked
and their verdicts beside the header line.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ._loops import read_source
from ._render_text import verdict_text

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["render"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}
th{border-bottom:1px solid #999}.num{text-align:right}
pre{margin:0;font-size:13px;line-height:1.35}
.src{border:1px solid #ccc;margin-bottom:2em}
.ln{display:inline-block;width:4em;color:#888;text-align:right;padding-right:1em}
.sh{display:inline-block;width:4.5em;color:#555;text-align:right;padding-right:1em}
.loop{border-left:3px solid #c33}.note{color:#a22;font-style:italic}
.partial{color:#b00;font-weight:bold}
"""


def _heat(share: float) -> str:
    alpha = min(1.0, share * 3) if share > 0 else 0.0
    return f"background:rgba(255,80,0,{alpha:.3f})"


def _note(text: str) -> str:
    """A reason or suggestion: prose, then (after a blank line) code in a <pre>."""
    prose, _, code = text.partition("\n\n")
    out = html.escape(prose)
    if code:
        out += f"<pre>{html.escape(code)}</pre>"
    return out


def render(report: Report) -> str:
    """The report as a standalone HTML document."""
    esc = html.escape
    total = report.total_seconds or 1.0
    s = report.session
    parts = ["<!DOCTYPE html>\n<html><head><meta charset='utf-8'>",
             "<title>loopscale profile</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>loopscale profile</h1>",
             f"<p>{report.total_seconds:.3f} s sampled in {report.samples} samples "
             f"({s.achieved_rate:.0f}/s of {s.requested_rate:.0f}/s requested; "
             f"{esc(s.mode)} mode, {esc(s.timer)} clock)</p>"]
    if report.partial:
        parts.append("<p class='partial'>Partial: the profiled code did not finish "
                     "normally.</p>")
    for msg in report.messages:
        parts.append(f"<p class='note'>{esc(msg)}</p>")
    parts.append("<table><tr><th>share</th><th>self s</th><th>python</th><th>loop</th>"
                 "<th>function</th><th>verdict</th><th>reason / suggestion</th></tr>")
    for loop in report.loops:
        notes = " ".join(_note(t) for t in (loop.reason, loop.suggestion) if t)
        parts.append(
            f"<tr><td class='num'>{loop.fraction * 100:.1f}%</td>"
            f"<td class='num'>{loop.self_seconds:.3f}</td>"
            f"<td class='num'>{loop.python_fraction * 100:.0f}%</td>"
            f"<td><a href='#{esc(loop.file)}:{loop.line}'>{esc(loop.file)}:{loop.line}"
            f"-{loop.end_line}</a></td><td>{esc(loop.function)}</td>"
            f"<td>{esc(verdict_text(loop))}</td><td>{notes}</td></tr>")
    parts.append("</table>")
    files: list[str] = []
    for loop in report.loops:
        if loop.file not in files:
            files.append(loop.file)
    for path in files:
        try:
            source = read_source(path).decode("utf-8", errors="replace").splitlines()
        except OSError:
            parts.append(f"<h2>{esc(path)}</h2><p class='note'>source not available</p>")
            continue
        marked = {}
        for loop in report.loops:
            if loop.file == path:
                for line in range(loop.line, loop.end_line + 1):
                    marked.setdefault(line, loop)
        parts.append(f"<h2>{esc(path)}</h2><div class='src'>")
        for num, text in enumerate(source, 1):
            share = report.line_seconds.get((path, num), 0.0) / total
            cls = " class='loop'" if num in marked else ""
            label = f"{share * 100:.1f}%" if share >= 0.0005 else ""
            note = ""
            head = marked.get(num)
            if head is not None and head.line == num:
                note = (f"  <span class='note'># {head.fraction * 100:.1f}% "
                        f"{esc(verdict_text(head))}</span>")
            parts.append(f"<pre id='{esc(path)}:{num}'{cls} style='{_heat(share)}'>"
                         f"<span class='ln'>{num}</span><span class='sh'>{label}</span>"
                         f"{esc(text)}{note}</pre>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
