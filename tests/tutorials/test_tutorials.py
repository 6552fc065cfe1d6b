"""Every tutorial script runs to the end at ``--size small``.

Each ``tutorials/*.py`` is run as a user would run it, in a child process with
a private, empty cache directory and a hard timeout.  It must exit with status
0 and print its closing ``Done:`` line, plus the lines listed for it in
``EXPECTED`` (the claims the tutorial makes about its own results).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS_DIR = Path(__file__).resolve().parents[2] / "tutorials"
TUTORIALS = sorted(TUTORIALS_DIR.glob("*.py"))
TIMEOUT_S = 120

#: Lines a tutorial must print besides ``Done:``, by file name.
EXPECTED = {
    "01_accelerate.py": ["results agree with Python", "PARALLEL"],
    "02_threads.py": ["threads results are the serial ones, bit for bit",
                      "PARALLEL, inside the sequential loop", "task graph: total energy"],
    "03_mpirun.py": ["2 rank(s)", "replicated", "distributed results agree with serial",
                     "rank 1: rows"],
}

#: Tutorials run the way their docstring tells users to: ranks under ``loopscale run``.
RANKS = {"03_mpirun.py": 2}


def _command(script: Path) -> list[str]:
    ranks = RANKS.get(script.name)
    if ranks is None:
        return [sys.executable, str(script), "--size", "small"]
    from loopscale.distribute._launch import find_launcher

    try:
        find_launcher()
    except FileNotFoundError:
        pytest.skip("no mpiexec installed (pip install loopscale[mpi])")
    return [sys.executable, "-m", "loopscale", "run", "-n", str(ranks), str(script),
            "--size", "small"]


def test_tutorials_are_found() -> None:
    assert TUTORIALS, f"no tutorials found in {TUTORIALS_DIR}"


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_at_small_size(script: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["LOOPSCALE_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        proc = subprocess.run(
            _command(script),
            capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=tmp_path,
            stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} did not finish within {TIMEOUT_S} s\n"
                    f"--- stdout ---\n{exc.stdout}\n--- stderr ---\n{exc.stderr}")
    shown = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, f"{script.name} exited with {proc.returncode}\n{shown}"
    for line in ["Done:", *EXPECTED.get(script.name, [])]:
        assert line in proc.stdout, f"{script.name} did not print {line!r}\n{shown}"
