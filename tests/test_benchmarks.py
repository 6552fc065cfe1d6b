"""``benchmarks/serial_vs_numba.py --quick`` runs end to end and writes its table.

Only the mechanics are checked (every kernel measured, results verified
against Python and Numba inside the script, the Markdown table written):
timings on a shared machine are too noisy for thresholds in a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serial_vs_numba.py"
TIMEOUT_S = 180


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 30)
def test_serial_vs_numba_quick_writes_a_table(tmp_path: Path) -> None:
    table = tmp_path / "table.md"
    env = dict(os.environ)
    env["LOOPSCALE_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick", "--output", str(table)],
            capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
            stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the benchmark did not finish within {TIMEOUT_S} s\n{exc.stderr}")
    shown = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, shown
    text = table.read_text(encoding="utf-8")
    for expected in ("n-body", "Black–Scholes", "Mandelbrot", "sum of squares", "stencil",
                     "Call overhead", "Start-up", "sum_of_squares", "level serial"):
        assert expected in text, f"{expected!r} missing from the table\n{text}"
