"""Loop profiler behind ``loopscale profile``: find the slow loops, say which compile.

Collect → immutable session data → pure transforms → one renderer per format:

- :mod:`._sampler` takes weighted stack samples (timer signals, or a thread);
- :mod:`._session` holds them, frozen;
- :mod:`._loops` charges them to loops through an AST index of each file;
- :mod:`._verdict` compiles each hot loop's function with ``loopscale.accel``
  in a child process (:mod:`._trial`), optionally timing it;
- :mod:`._report` builds the report; :mod:`._render_text`,
  :mod:`._render_json`, :mod:`._render_html` and :mod:`._diff` format it.

``loopscale.accel`` is imported only in the child processes of the verdict step.
"""

from __future__ import annotations

from ._api import Profile, profile
from ._main import main
from ._report import LoopReport, Report, build_report
from ._sampler import DEFAULT_INTERVAL, Sampler
from ._session import Capture, Sample, Session

__all__ = [
    "DEFAULT_INTERVAL",
    "Capture",
    "LoopReport",
    "Profile",
    "Report",
    "Sample",
    "Sampler",
    "Session",
    "build_report",
    "main",
    "profile",
]
