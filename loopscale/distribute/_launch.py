"""``loopscale run -n P script.py [args]``: start a script (or ``-m module``) on P MPI ranks.

The script runs under ``python -m loopscale.distribute`` (see
:mod:`loopscale.distribute.__main__`), which arms abort-on-failure before the
script's first line, so an exception or a non-zero ``sys.exit`` on one rank
stops every rank with that rank's status.  The launcher is the ``mpiexec``
installed next to this Python (the ``mpi`` extra puts MPICH's there), else
the one on ``PATH``, or the command given (``"srun"``, ``"mpirun --bind-to
core"``).  The launcher's exit status is returned; Ctrl-C gives 130.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["run_script", "find_launcher", "launch_command"]

_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports Ctrl-C


def find_launcher() -> list[str]:
    """The command that starts MPI jobs: ``mpiexec`` beside ``sys.executable`` or on PATH.

    Raises
    ------
    FileNotFoundError
        When no ``mpiexec``/``mpirun`` is found; the message says how to get one.
    """
    here = os.path.dirname(sys.executable)
    for name in ("mpiexec", "mpirun"):
        candidate = os.path.join(here, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return [candidate]
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return [found]
    raise FileNotFoundError(
        "no MPI launcher (mpiexec or mpirun) was found next to "
        f"{sys.executable!r} or on PATH. Install one with `pip install loopscale[mpi]` "
        "(MPICH from PyPI) or your system's MPI, or name it with --launcher.")


def _check_module(module: str) -> None:
    """Refuse *module* (``-m``) here, before any rank starts, when Python would not
    find it from the current directory (as ``python -m`` looks)."""
    import importlib.util

    if not isinstance(module, str) or not module or module.startswith("-"):
        raise ValueError(f"-m needs a module name (python -m's); got {module!r}.")
    added = "" not in sys.path and os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # (a parent package that is missing)
        spec, why = None, f" ({exc})"
    else:
        why = ""
    finally:
        if added:
            sys.path.remove("")
    if spec is None:
        raise FileNotFoundError(
            f"no module named {module!r}{why} on this Python's path from {os.getcwd()!r}: "
            "run from the directory that holds its package, or install the package.")


def launch_command(nprocs: int, script: str | None, args: Sequence[str] = (),
                   launcher: str | Sequence[str] | None = None, *,
                   module: str | None = None) -> list[str]:
    """The command line :func:`run_script` runs (validated, not started)."""
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"the number of processes must be greater than 0; got {nprocs!r}.")
    if module is not None:
        if script is not None:
            raise ValueError(f"give a script or a module (-m), not both; got the script "
                             f"{script!r} and the module {module!r}.")
        _check_module(module)
        target = ["-m", module]
    elif script is None:
        raise ValueError("give a script to run, or a module with -m.")
    elif not os.path.isfile(script):
        raise FileNotFoundError(f"no such script: {script!r}.")
    else:
        target = [script]
    if launcher is None:
        head = find_launcher()
    elif isinstance(launcher, str):
        head = shlex.split(launcher)
    else:
        head = list(launcher)
    if not head:
        raise ValueError(f"launcher must name a command; got {launcher!r}.")
    return [*head, "-n", str(nprocs), sys.executable, "-m", "loopscale.distribute",
            *target, *args]


def run_script(nprocs: int, script: str | None, args: Sequence[str] = (),
               launcher: str | Sequence[str] | None = None, *,
               module: str | None = None) -> int:
    """Run *script* with *args* on *nprocs* MPI ranks; return the job's exit status.

    Parameters
    ----------
    nprocs : int
        Number of ranks (``-n``).
    script : str or None
        Path of the Python script (None with *module*).
    args : sequence of str
        Its command-line arguments.
    launcher : str or sequence of str, optional
        The launcher command (default: :func:`find_launcher`).
    module : str, optional
        Run this module as ``python -m module`` does instead of a script (found
        from the current directory, checked before any rank starts).

    Returns
    -------
    int
        The launcher's exit status (the failing rank's, with abort on failure);
        130 after Ctrl-C; 128 + N when the launcher was killed by signal N.

    Examples
    --------
    >>> from loopscale.distribute import run_script
    >>> run_script(2, "simulate.py", ["--steps", "10"])  # doctest: +SKIP
    0
    """
    command = launch_command(nprocs, script, args, launcher, module=module)
    proc = subprocess.Popen(command)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # a terminal's Ctrl-C reaches the launcher too, but a SIGINT sent to this
        # process alone must stop the job as well: pass it on, then give the
        # launcher time to stop the ranks
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return _INTERRUPTED
    if code < 0:
        return _INTERRUPTED if -code == signal.SIGINT else 128 - code
    return code
