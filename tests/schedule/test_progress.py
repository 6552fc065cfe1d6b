"""The progress bar: pure rendering, and drawing only when asked or on a terminal."""

from __future__ import annotations

import io
import time

import numba
import numpy as np
import pytest

from loopscale.schedule import _progress, parallel_for


def test_render_shows_fraction_counts_and_time_left():
    line = _progress.render("loopscale f()", 25, 100, 2.0)
    assert "[#####...............]" in line
    assert " 25%" in line and "25/100 chunks" in line and "~6.0 s left" in line


def test_render_of_a_finished_run_has_no_estimate():
    line = _progress.render("x", 10, 10, 3.0)
    assert "100%" in line and "left" not in line


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@numba.njit(nogil=True)
def slow(start, stop, out):
    for i in range(start, stop):
        x = 0.0
        for k in range(3_000_000):
            x += k * 1e-9
        out[i] = x


@pytest.mark.timeout(60)
def test_progress_true_draws_a_bar_and_finishes_the_line(monkeypatch):
    stream = FakeTTY()
    monkeypatch.setattr("sys.stderr", stream)
    out = np.zeros(40)
    slow(0, 1, out)
    parallel_for(slow, 40, out, max_workers=2, policy="dynamic", chunksize=1, progress=True)
    text = stream.getvalue()
    assert "loopscale slow()" in text and "100%" in text and text.endswith("\n")


def test_default_is_silent_when_stderr_is_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    out = np.zeros(4)
    parallel_for(slow, 4, out, max_workers=2)
    assert stream.getvalue() == ""


def test_auto_bar_appears_only_after_the_threshold(monkeypatch):
    stream = FakeTTY()
    monkeypatch.setattr(_progress, "AUTO_AFTER_SECONDS", 0.3)
    done = [0]
    tracker = _progress.track("t", lambda: done[0], 10, None, stream=stream)
    time.sleep(0.1)
    assert stream.getvalue() == ""
    time.sleep(0.6)
    done[0] = 10
    _progress.untrack(tracker)
    assert "10/10" in stream.getvalue()
