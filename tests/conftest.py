"""Shared test setup: a cold, private cache and a helper to run Python in a child.

``LOOPSCALE_CACHE_DIR`` is set here, at import, before any test imports
loopscale, so that neither this process nor the child processes the tests
start read or write the user's cache.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Mapping, Sequence

import pytest

# A shell that starts a command in the background without job control (as CI
# harnesses may) leaves SIGINT ignored, and every child inherits that: the
# Ctrl-C tests would then test nothing. Restore Python's own handler here; the
# children started by the tests get the default disposition back at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if not os.environ.get("LOOPSCALE_CACHE_DIR"):
    _CACHE_DIR = tempfile.mkdtemp(prefix="loopscale-test-cache-")
    os.environ["LOOPSCALE_CACHE_DIR"] = _CACHE_DIR
    atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)

RunPython = Callable[..., "subprocess.CompletedProcess[str]"]


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _run_python(
    code: str,
    *,
    args: Sequence[str] = (),
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run *code* (dedented) with this interpreter in a child process.

    The child inherits this process's environment, updated with *env*.  It is
    killed after *timeout* seconds and the test fails, showing what it printed.
    With *check*, a non-zero exit status fails the test too.
    """
    child_env = dict(os.environ)
    child_env.update(env or {})
    command = [sys.executable, "-c", textwrap.dedent(code), *args]
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"child Python timed out after {timeout:g} s\n"
            f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}"
        )
    if check and proc.returncode != 0:
        pytest.fail(
            f"child Python exited with status {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session")
def run_python() -> RunPython:
    """Run a Python snippet in a child process with a timeout.

    ``run_python(code, *, args=(), timeout=60.0, env=None, check=True)``
    returns the :class:`subprocess.CompletedProcess` (text mode).
    """
    return _run_python
