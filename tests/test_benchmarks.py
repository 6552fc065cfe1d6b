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


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize("script, words", [
    ("mpi_vs_serial.py", ("nbody", "kde", "mandelbrot", "mpi overhead vs hand")),
    ("mpi_distributed.py", ("overhead vs hand", "bit for bit serial", "| yes |")),
])
def test_mpi_benchmarks_quick_run_and_check_their_results(tmp_path: Path, script: str,
                                                          words: tuple[str, ...]) -> None:
    # each script checks inside that loopscale's result equals the serial level's
    # (and the hand-written program's): a broken check fails the run
    env = dict(os.environ)
    env["LOOPSCALE_CACHE_DIR"] = str(tmp_path / "cache")
    path = SCRIPT.parent / script
    try:
        proc = subprocess.run([sys.executable, str(path), "--quick"], capture_output=True,
                              text=True, timeout=TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} did not finish within {TIMEOUT_S} s\n{exc.stderr}")
    shown = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, shown
    for word in words:
        assert word in proc.stdout, f"{word!r} missing\n{shown}"
