"""Run scripts under a real ``mpiexec`` with a hard timeout.

Each launch costs one to three seconds (interpreter, NumPy, Numba, MPI start),
so every test batches many checks into one script.  Scripts are written to the
test's ``tmp_path``; ``LOOPSCALE_CACHE_DIR`` is a fresh directory per test.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopscale.distribute._launch import find_launcher

TIMEOUT = 120.0


@dataclass
class Launched:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    command: list[str]

    def describe(self) -> str:
        return (f"command: {' '.join(self.command)}\nstatus {self.returncode} after "
                f"{self.seconds:.1f} s\n--- stdout ---\n{self.stdout}\n--- stderr ---\n"
                f"{self.stderr}")


def _launcher() -> list[str]:
    try:
        return find_launcher()
    except FileNotFoundError:
        pytest.skip("no mpiexec installed (pip install loopscale[mpi])")


class MPIRunner:
    """``mpi(script, n, args=(), how="mpiexec")`` runs *script* text on *n* ranks.

    *how*: ``"mpiexec"`` (``mpiexec -n N python script.py``), ``"loopscale"``
    (``run_script``, i.e. ``python -m loopscale.distribute`` under mpiexec) or
    ``"python"`` (one process, no launcher).
    """

    def __init__(self, tmp_path: Path, cache: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.cache = cache if cache is not None else tmp_path / "cache"

    def write(self, script: str) -> Path:
        """Write *script* to a file named after its text (the same text, the same
        path: the on-disk cache is keyed by the script's path)."""
        text = textwrap.dedent(script)
        path = self.tmp_path / f"script_{hashlib.sha1(text.encode()).hexdigest()[:12]}.py"
        if not path.exists():
            path.write_text(text)
        return path

    def __call__(self, script: str | Path, n: int = 2, args: Sequence[str] = (),
                 how: str = "mpiexec", timeout: float = TIMEOUT,
                 env: dict[str, str] | None = None) -> Launched:
        path = script if isinstance(script, Path) else self.write(script)
        child_env = dict(os.environ)
        child_env["LOOPSCALE_CACHE_DIR"] = str(self.cache)
        for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
            child_env.pop(var, None)
        child_env.update(env or {})
        if how == "python":
            command = [sys.executable, str(path), *args]
        elif how == "mpiexec":
            command = [*_launcher(), "-n", str(n), sys.executable, str(path), *args]
        elif how == "loopscale":
            command = [sys.executable, "-c",
                       "import sys; from loopscale.distribute import run_script; "
                       "sys.exit(run_script(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))",
                       str(n), str(path), *args]
        else:
            raise ValueError(how)
        t0 = time.perf_counter()
        # a session of its own, so that a hung job's ranks can all be killed
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=child_env, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(command)} hung: killed after {timeout:g} s\n"
                        f"--- stdout ---\n{out}\n--- stderr ---\n{err}")
        except BaseException:
            # pytest-timeout's own limit (or Ctrl-C) came first: the job must not
            # outlive the test (a hung job's ranks spun on for the rest of the run)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return Launched(proc.returncode, out, err,
                        time.perf_counter() - t0, command)


@pytest.fixture
def mpi(tmp_path: Path) -> MPIRunner:
    """A runner with a cold cache of its own."""
    return MPIRunner(tmp_path)


@pytest.fixture(scope="module")
def mpi_warm(tmp_path_factory: pytest.TempPathFactory) -> MPIRunner:
    """A runner whose scripts and cache are shared by one module's tests (compile once)."""
    return MPIRunner(tmp_path_factory.mktemp("shared"))
