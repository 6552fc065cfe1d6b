"""Faults under a real mpiexec: one rank fails, every rank stops promptly; bad input is named."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.mpi

#: Stops well before the hard timeout: a hang would show as this being exceeded.
PROMPT = 30.0

#: ``script.py MODE RANK``: the named rank fails in the named way after the ranks
#: have used MPI together once; the others go on to a barrier, which they would
#: wait in forever if the failing rank's job were not aborted.
FAULTS = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def twice(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = 2.0 * x[i]
    return out


mode, who = sys.argv[1], int(sys.argv[2])
me = distribute.rank()
if mode == "early" and me == who:
    raise RuntimeError(f"early failure on rank {who}")
with loopscale.level("mpi"):
    y = twice(np.arange(1000.0))
if me == who:
    if mode == "raise":
        raise RuntimeError(f"unhandled failure on rank {who}")
    if mode == "exit":
        sys.exit(7)
    if mode == "raise-exit":
        raise SystemExit(9)
distribute.comm().Barrier()
print(f"rank {me} passed the barrier", flush=True)
if mode == "exit-false":
    sys.exit(False)  # status 0, as in plain Python
'''


def _line_of(script: str, marker: str) -> int:
    """The line of *script* that holds *marker*."""
    return next(k for k, text in enumerate(script.splitlines(), 1) if marker in text)


def _ended_sites(stderr: str, ended: int, function: str) -> list[tuple[str, str, str]]:
    """``(waiting rank, file, line)`` of each 'rank *ended* has ended while ... waits
    for it in ... of *function*(), called at file:line' that a rank printed."""
    return re.findall(rf"^\[rank (\d+)\] loopscale: rank {ended} has ended .* waits for it "
                      rf"in .* of {function}\(\), called at (\S+):(\d+)\.", stderr, re.M)


def _tracebacks(stderr: str) -> list[str]:
    """The ranks that printed a traceback (once each: one 'aborting' line per rank)."""
    printed = set(re.findall(r"^\[rank (\d+)\] Traceback \(most recent call last\):",
                             stderr, re.M))
    aborting = re.findall(r"^\[rank (\d+)\] aborting the MPI job", stderr, re.M)
    assert sorted(printed) == sorted(aborting), stderr
    return aborting


@pytest.mark.parametrize("how", ["mpiexec", "loopscale"])
def test_an_exception_on_any_one_rank_stops_every_rank(mpi_warm, how: str) -> None:
    script = mpi_warm.write(FAULTS)
    for who in range(3):
        run = mpi_warm(script, 3, ["raise", str(who)], how=how)
        assert run.returncode != 0, run.describe()
        assert run.seconds < PROMPT, run.describe()
        assert _tracebacks(run.stderr) == [str(who)], run.describe()
        assert f"RuntimeError: unhandled failure on rank {who}" in run.stderr, run.describe()
        assert "passed the barrier" not in run.stdout, run.describe()


def test_an_exception_before_mpi_is_used_stops_every_rank(mpi_warm) -> None:
    run = mpi_warm(FAULTS, 2, ["early", "1"])
    assert run.returncode != 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert _tracebacks(run.stderr) == ["1"], run.describe()


@pytest.mark.parametrize("how", ["mpiexec", "loopscale"])
def test_sys_exit_on_one_rank_gives_its_status(mpi_warm, how: str) -> None:
    run = mpi_warm(FAULTS, 2, ["exit", "1"], how=how)
    assert run.returncode == 7, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert _tracebacks(run.stderr) == [], run.describe()


def test_raise_systemexit_on_one_rank_gives_its_status_under_loopscale_run(mpi_warm) -> None:
    for who in (0, 1):
        run = mpi_warm(FAULTS, 2, ["raise-exit", str(who)], how="loopscale")
        assert run.returncode == 9, run.describe()
        assert run.seconds < PROMPT, run.describe()


SYSTEMEXIT_CAUGHT = r'''
import sys
import numpy as np
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0
    for i in range(x.shape[0]):
        s += x[i]
    return s


me = distribute.rank()
distribute.comm().Barrier()
for how in sys.argv[1:]:
    try:
        if how == "raise":
            raise SystemExit(4)
        sys.exit(6)
    except SystemExit as exc:  # still the built-in's behaviour, name and code
        # (one string: two ranks' output pieces interleave in the launcher's stdout)
        print(f"rank {me} caught {type(exc).__name__}({exc.code}) "
              f"{isinstance(exc, SystemExit)}", flush=True)
    # the script goes on: the status the SystemExit set is not the job's
    print(f"rank {me} total {total(np.arange(1000))}", flush=True)
'''


def test_a_caught_systemexit_is_still_a_systemexit(mpi_warm) -> None:
    run = mpi_warm(SYSTEMEXIT_CAUGHT, 2, ["raise", "exit"])
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("caught SystemExit(4) True") == 2, run.describe()
    assert run.stdout.count("caught SystemExit(6) True") == 2, run.describe()
    assert run.stdout.count("total 499500") == 4, run.describe()


#: A library's SystemExit (argparse's on a bad option) caught on one rank, with
#: no distributed call after it: the script finishes, and so does the job.
SYSTEMEXIT_CAUGHT_LAST = r'''
import argparse
import numpy as np
from loopscale import distribute

x = distribute.allgather(distribute.scatter(np.arange(4.0) if distribute.rank() == 0 else None))
parser = argparse.ArgumentParser(prog="tool")
parser.add_argument("--k", type=int, default=1)
try:
    parser.parse_args(["--k", "x"] if distribute.rank() == 1 else [])
except SystemExit:
    pass
print(f"rank {distribute.rank()} finished {x.sum()}", flush=True)
'''


@pytest.mark.parametrize("how", ["mpiexec", "loopscale"])
def test_a_systemexit_caught_after_the_last_collective_leaves_status_zero(mpi_warm, how):
    run = mpi_warm(SYSTEMEXIT_CAUGHT_LAST, 2, [], how=how)
    assert run.returncode == 0, run.describe()  # (it was 2: the job aborted at exit)
    assert run.stdout.count("finished 6.0") == 2, run.describe()
    assert "invalid int value" in run.stderr, run.describe()


#: ``script.py MODE RANK``: the named rank fails before any rank has used MPI,
#: and the others never do (they finish): the failing rank must not wait in an
#: MPI_Init the others never join (it did, for ever, to call MPI_Abort).
NEVER_MPI = r'''
import os, sys, time
import numpy as np
import loopscale
from loopscale import accelerate


@accelerate
def running(x):  # in order: never a collective
    for i in range(1, x.shape[0]):
        x[i] += x[i - 1]


me = int(os.environ.get("PMI_RANK", "0"))
mode, who = sys.argv[1], int(sys.argv[2])
running(np.ones(10))
if me == who:
    if mode == "raise":
        raise RuntimeError(f"failure on rank {who} before MPI")
    if mode == "exit":
        sys.exit(7)
    if mode == "builtin-exit":
        exit(5)
time.sleep(2.0)
print(f"rank {me} done", flush=True)
'''


@pytest.mark.parametrize("mode, status", [("raise", None), ("exit", 7), ("builtin-exit", 5)])
@pytest.mark.parametrize("how", ["mpiexec", "loopscale"])
def test_a_failure_before_any_rank_uses_mpi_stops_promptly(mpi_warm, how, mode, status) -> None:
    for who in (0, 1):
        run = mpi_warm(NEVER_MPI, 2, [mode, str(who)], how=how, timeout=90)
        assert run.seconds < PROMPT, run.describe()
        if status is None:
            assert run.returncode != 0, run.describe()
            assert f"RuntimeError: failure on rank {who} before MPI" in run.stderr
            assert _tracebacks(run.stderr) == [str(who)], run.describe()
        else:
            assert run.returncode == status, run.describe()


#: ``script.py MODE RANK DELAY``: the named rank fails before it used MPI, while
#: the others start MPI (at their first distributed call) after DELAY seconds
#: and then wait for it at a barrier.
BEFORE_OTHERS = r'''
import os, sys, time
import numpy as np
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


me = int(os.environ.get("PMI_RANK", "0"))
mode, who, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if me == who:
    if mode == "raise":
        raise FileNotFoundError(f"input_{who}.npy")
    if mode == "exit":
        sys.exit(3)
time.sleep(delay)
print(me, total(np.arange(1000.0)), flush=True)
distribute.comm().Barrier()
print(f"rank {me} passed the barrier", flush=True)
'''


@pytest.mark.parametrize("mode, status", [("raise", 1), ("exit", 3)])
@pytest.mark.parametrize("how", ["mpiexec", "loopscale"])
def test_a_failure_before_mpi_while_the_others_start_it_stops_every_rank(
        mpi_warm, how: str, mode: str, status: int) -> None:
    # the failing rank never connected to the launcher, which (MPICH's Hydra) then
    # left the others in MPI_Init for ever: it starts MPI itself to abort the job
    for who in (0, 2):
        run = mpi_warm(BEFORE_OTHERS, 3, [mode, str(who), "0"], how=how, timeout=60)
        assert run.returncode == status, run.describe()
        assert run.seconds < PROMPT, run.describe()
        assert "passed the barrier" not in run.stdout, run.describe()
        if mode == "raise":
            assert _tracebacks(run.stderr) == [str(who)], run.describe()


def test_a_failure_before_mpi_ends_the_job_when_the_others_start_it_late(mpi_warm) -> None:
    # the others start MPI only after the failing rank stopped waiting for them
    # (ABORT_INIT_SECONDS): the launcher ends the job all the same
    run = mpi_warm(BEFORE_OTHERS, 3, ["exit", "1", "13"], timeout=60)
    assert run.returncode != 0, run.describe()
    assert run.seconds < 13 + PROMPT, run.describe()
    assert "no other rank started MPI within 10 s" in run.stderr, run.describe()
    assert "passed the barrier" not in run.stdout, run.describe()


def test_builtin_exit_on_one_rank_after_mpi_gives_its_status(mpi_warm) -> None:
    # `exit(5)` (the interactive builtin, common in scripts) as `sys.exit(5)`
    run = mpi_warm(FAULTS.replace("sys.exit(7)", "exit(7)"), 2, ["exit", "1"])
    assert run.returncode == 7, run.describe()
    assert run.seconds < PROMPT, run.describe()


#: A rank starts a plain Python child that imports loopscale and calls a kernel:
#: the child inherited the launcher's variables, but is no rank.
CHILD = r'''
import os, subprocess, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute

child = """
import numpy as np, loopscale, sys
from loopscale import accelerate, config

@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s

print("child", total(np.arange(100.0)), config.launcher_world_size(),
      "mpi4py.MPI" in sys.modules, flush=True)
"""
me = distribute.rank()
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"child_{me}.py")
with open(path, "w") as f:
    f.write(child)
out = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60)
print(f"rank {me}:", out.returncode, out.stdout.strip(), out.stderr.strip()[-300:], flush=True)
distribute.comm().Barrier()
'''


def test_a_python_child_of_a_rank_runs_as_one_process(mpi_warm) -> None:
    run = mpi_warm(CHILD, 2)
    assert run.returncode == 0, run.describe()
    for r in (0, 1):
        assert f"rank {r}: 0 child 4950.0 1 False" in run.stdout, run.describe()


def test_sys_exit_false_on_every_rank_is_status_zero(mpi_warm) -> None:
    run = mpi_warm(FAULTS, 2, ["exit-false", "0"])
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("passed the barrier") == 2, run.describe()


def test_a_clean_run_exits_zero_everywhere(mpi_warm) -> None:
    run = mpi_warm(FAULTS, 3, ["none", "0"], how="loopscale")
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("passed the barrier") == 3, run.describe()


def test_loopscale_run_dash_m_runs_a_module_of_a_package(mpi_warm, tmp_path) -> None:
    # `loopscale run -n P -m package.module args`, as `python -m`: found from the
    # current directory, its relative imports work, it runs as __main__, and a
    # failure or sys.exit on one rank ends the job as for a script
    package = tmp_path / "simpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 2.0\n")
    (package / "sim.py").write_text(FAULTS.replace(
        "me = distribute.rank()\n",
        "me = distribute.rank()\n"
        "from .helpers import SCALE\n"
        "print(f'rank {me} {__name__} {SCALE} {sys.argv[1:]}', flush=True)\n"))
    env = dict(os.environ, LOOPSCALE_CACHE_DIR=str(mpi_warm.cache))
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        env.pop(var, None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "loopscale", "run", *args],
                              capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=120, start_new_session=True)

    done = run("-n", "2", "-m", "simpkg.sim", "none", "0")
    assert done.returncode == 0, done.stderr
    for rank in (0, 1):
        assert f"rank {rank} __main__ 2.0 ['none', '0']" in done.stdout, done.stdout
    assert done.stdout.count("passed the barrier") == 2, done.stdout
    failed = run("-n", "2", "-m", "simpkg.sim", "raise", "1")
    assert failed.returncode != 0 and _tracebacks(failed.stderr) == ["1"], failed.stderr
    assert "simpkg/sim.py" in failed.stderr and "passed the barrier" not in failed.stdout
    assert run("-n", "2", "-m", "simpkg.sim", "exit", "0").returncode == 7
    missing = run("-n", "2", "-m", "simpkg.nothing")
    assert missing.returncode == 2, missing.stderr
    assert "no module named 'simpkg.nothing'" in missing.stderr, missing.stderr


#: A loop that raises on one rank only (its input is negative there): that rank
#: raises the loop's exception, the others a WorkerError naming it; nobody waits.
KERNEL_RAISES = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute
from loopscale.errors import WorkerError


@accelerate
def checked(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            raise ValueError("negative input")
        out[i] = 2.0 * x[i]
    return out


who, catch = int(sys.argv[1]), sys.argv[2] == "catch"
me = distribute.rank()
x = np.ones(1000)
if me == who:
    x[:] = -1.0
# (the inputs differ on purpose: the default check would report that first)
with loopscale.level("mpi", check="none"):
    if not catch:
        checked(x)
    # twice: a call of a shape seen before runs a short share straight from the
    # executor (no threads machinery); its exception must read the same
    for attempt in (1, 2):
        try:
            checked(x)
        except ValueError as exc:
            sys.stdout.write(f"rank {me} ValueError {exc} {getattr(exc, '__notes__', [])}\n")
        except WorkerError as exc:
            sys.stdout.write(f"rank {me} WorkerError {exc}\n")
        sys.stdout.flush()
distribute.comm().Barrier()
with loopscale.level("mpi"):
    y = checked(np.ones(10))  # the executor still works after a failure
print(f"rank {me} done {y.sum()}", flush=True)
'''


def test_an_exception_inside_the_loop_on_one_rank_reaches_every_rank(mpi_warm) -> None:
    run = mpi_warm(KERNEL_RAISES, 3, ["1", "catch"])
    assert run.returncode == 0, run.describe()
    raised = re.findall(r"^rank 1 ValueError negative input (.*)$", run.stdout, re.M)
    assert len(raised) == 2 and raised[0] == raised[1], run.describe()
    assert "(raised in iterations" in raised[0] and "script_" in raised[0], raised
    for r in (0, 2):
        assert len(re.findall(rf"^rank {r} WorkerError .*rank\(s\) 1", run.stdout,
                              re.M)) == 2, run.describe()
    assert run.stdout.count("done 20.0") == 3, run.describe()


def test_an_unhandled_exception_inside_the_loop_prints_one_traceback(mpi_warm) -> None:
    run = mpi_warm(KERNEL_RAISES, 3, ["2", "raise"])
    assert run.returncode != 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert _tracebacks(run.stderr) == ["2"], run.describe()
    assert "ValueError: negative input" in run.stderr, run.describe()


#: Inputs that differ across ranks: length, dtype, 2-D shape, a scalar argument.
MISMATCH = r'''
import json, os, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def scale(x, c, out):
    for i in range(x.shape[0]):
        out[i] = c * x[i]


me = distribute.rank()
report = {}
odd = me == distribute.size() - 1
cases = {
    "length": (np.ones(99 if odd else 100), 2.0, None),
    "dtype": (np.ones(100, dtype=np.float32 if odd else np.float64), 2.0, None),
    "shape": (np.ones((10, 3) if odd else (10, 4)), 2.0, "2d"),
    "scalar": (np.ones(100), 3.0 if odd else 2.0, None),
}
for case, (x, c, kind) in cases.items():
    out = np.zeros_like(x)
    try:
        with loopscale.level("mpi"):
            scale(x, c, out)
        report[case] = "NOT DETECTED"
    except ValueError as exc:
        report[case] = f"{type(exc).__name__}: {exc}"
distribute.comm().Barrier()
report["survived"] = True
with open(os.path.join(sys.argv[1], f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
'''


def test_inputs_that_differ_across_ranks_are_reported_on_every_rank(mpi_warm, tmp_path) -> None:
    run = mpi_warm(MISMATCH, 3, [str(tmp_path)])
    assert run.returncode == 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    for report in reports:
        assert report.pop("survived") is True
        assert set(report) == {"length", "dtype", "shape", "scalar"}
        for case, text in report.items():
            assert text.startswith("ArgumentValueError: the inputs of scale() differ across "
                                   "MPI ranks"), (case, text)
    assert "x: rank 0: <f8[100]; rank 1: <f8[100]; rank 2: <f8[99]" in reports[0]["length"]
    assert "x: rank 0: <f8[100]; rank 1: <f8[100]; rank 2: <f4[100]" in reports[1]["dtype"]
    assert "x: rank 0: <f8[10, 4]; rank 1: <f8[10, 4]; rank 2: <f8[10, 3]" in reports[2]["shape"]
    assert "c: rank 0: float 2.0; rank 1: float 2.0; rank 2: float 3.0" in reports[0]["scalar"]
    assert "x:" not in reports[0]["scalar"]  # only what differs is listed


def test_ctrl_c_gives_130(mpi_warm, tmp_path) -> None:  # noqa: ARG001
    script = mpi_warm.write(r'''
import sys, time
from loopscale import distribute
distribute.comm().Barrier()
print("ready", flush=True)
time.sleep(60)
''')
    env = dict(os.environ, LOOPSCALE_CACHE_DIR=str(mpi_warm.cache))
    code = ("import sys; from loopscale.distribute import run_script; "
            "sys.exit(run_script(2, sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + PROMPT
        # both ranks print "ready": their lines can arrive joined ("readyready")
        while time.monotonic() < deadline and "ready" not in proc.stdout.readline():
            pass
        time.sleep(0.5)
        # Ctrl-C reaches `loopscale run` (a terminal would also signal the rest of
        # the group; where the launcher puts the ranks varies between MPI
        # implementations and harnesses, so only the documented entry point is
        # signalled here, and it must pass the interrupt on)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PROMPT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err


#: ``script.py CASE``: rank 1 skips one collective call that rank 0 makes.
SKIPPED = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def smooth(u, out):
    for i in range(1, u.shape[0] - 1):
        out[i] = (u[i - 1] + u[i] + u[i + 1]) / 3.0


case = sys.argv[1]
me = distribute.rank()
x = np.arange(100.0)
u = distribute.scatter(x if me == 0 else None)
out = distribute.zeros_like(u)
smooth(u, out)                                  # every rank: fine
print(f"rank {me} first call done", flush=True)
if me == 0:
    if case == "distributed":
        smooth(u, out)                          # SKIPPED-BY-RANK-1
    elif case == "replicated":
        with loopscale.level("mpi"):
            smooth(x, np.zeros(100))            # SKIPPED-BY-RANK-1
    elif case == "gather":
        distribute.allgather(out)               # SKIPPED-BY-RANK-1
print(f"rank {me} reached the end", flush=True)
if me == 1 and case != "none":
    import time
    time.sleep(60)  # alive, but not in the call: only the watchdog can tell
'''


@pytest.mark.parametrize("case", ["distributed", "replicated", "gather"])
def test_a_call_one_rank_skips_is_reported_and_timeout_ends_the_job(mpi_warm, case) -> None:
    # Without the watchdog the job hangs for ever, silently.  Rank 0 says where it
    # waits (the function and the user's line) after LOOPSCALE_MPI_WAIT seconds,
    # and LOOPSCALE_MPI_TIMEOUT ends the job with status 1.
    script = mpi_warm.write(SKIPPED)
    line = next(k for k, text in enumerate(SKIPPED.splitlines(), 1)
                if "SKIPPED-BY-RANK-1" in text and ("smooth" in text) == (case != "gather")
                and (case != "replicated" or "zeros" in text))
    run = mpi_warm(script, 2, [case], timeout=120,
                   env={"LOOPSCALE_MPI_WAIT": "1", "LOOPSCALE_MPI_TIMEOUT": "4"})
    assert run.returncode == 1, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert run.stdout.count("first call done") == 2, run.describe()
    name = "distribute.allgather()" if case == "gather" else "smooth()"
    warned = [t for t in run.stderr.splitlines() if t.startswith("[rank 0] loopscale: rank 0 "
                                                                 "has waited")]
    assert len(warned) == 2, run.describe()  # "still waiting", then "ending the job"
    for text in warned:
        assert name in text and f"{script}:{line}" in text, text
        assert "same distributed calls in the same order" in text
        assert 'on one rank alone, call it inside `with loopscale.level("threads"):`' in text
    assert "Still waiting" in warned[0] and "LOOPSCALE_MPI_TIMEOUT=4" in warned[1]
    assert "[rank 1] loopscale" not in run.stderr  # rank 1 did not wait in a call


#: ``script.py HOW``: rank 1 ends (in the way named) while rank 0 goes on to a
#: distributed call; or rank 1 is late, and the call completes.
ENDED = r'''
import sys, time
import numpy as np
from loopscale import accelerate, distribute


@accelerate
def smooth(u, out):
    for i in range(1, u.shape[0] - 1):
        out[i] = (u[i - 1] + u[i] + u[i + 1]) / 3.0


how = sys.argv[1]
me = distribute.rank()
u = distribute.scatter(np.arange(100.0) if me == 0 else None)
out = distribute.zeros_like(u)
smooth(u, out)
sys.stdout.write(f"rank {me} first call done\n")
sys.stdout.flush()
if me == 1:
    if how == "raise":
        raise SystemExit(5)
    if how == "exit0":
        sys.exit(0)
    if how == "late":
        time.sleep(4)
if me == 0 or how == "late":
    smooth(u, out)                              # RANK-0-WAITS
    total = float(distribute.allgather(out).sum())
    sys.stdout.write(f"rank {me} total {total:.6f}\n")
    sys.stdout.flush()
'''


@pytest.mark.parametrize("how", ["raise", "exit0", "end"])
def test_a_rank_that_ends_while_another_waits_for_it_ends_the_job(mpi_warm, how) -> None:
    # Under a plain mpiexec, `raise SystemExit(5)` (which no hook sees), `sys.exit(0)`
    # or the script's end on rank 1 left rank 0 waiting in smooth() for ever: rank 1
    # sat in MPI_Finalize.  Now rank 1 tells the others from its exit, and rank 0,
    # waiting in a call rank 1 belongs to, ends the job naming both and the line.
    script = mpi_warm.write(ENDED)
    line = _line_of(ENDED, "RANK-0-WAITS")
    run = mpi_warm(script, 2, [how], timeout=120)
    assert run.returncode == 1, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert run.stdout.count("first call done") == 2, run.describe()
    said = _ended_sites(run.stderr, 1, "smooth")
    assert said == [("0", str(script), str(line))], run.describe()
    assert "total" not in run.stdout, run.describe()


#: ``script.py HOW``: rank 2 has nothing to do and ends (as mpi4py scripts do)
#: after asking its rank, before any collective of loopscale's; the others
#: then make a distributed call, which needs it.
ENDED_FIRST = r'''
import sys
import numpy as np
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


how = sys.argv[1]
files = ["a.npy", "b.npy"]
me = distribute.rank()
if me >= len(files):
    if how == "exit0":
        sys.exit(0)
    if how == "raise":
        raise SystemExit(4)
else:
    sys.stdout.write(f"rank {me} {total(np.arange(100.0))}\n")  # OTHERS-WAIT
    sys.stdout.flush()
'''


@pytest.mark.parametrize("how", ["exit0", "raise", "end"])
def test_a_rank_that_ends_before_any_collective_ends_the_job(mpi_warm, how) -> None:
    # the notices' duplicate of COMM_WORLD was made at loopscale's first
    # collective, which rank 2 never reached: ranks 0 and 1 waited for ever
    script = mpi_warm.write(ENDED_FIRST)
    line = _line_of(ENDED_FIRST, "OTHERS-WAIT")
    run = mpi_warm(script, 3, [how], timeout=120)
    assert run.returncode == 1, run.describe()
    assert run.seconds < PROMPT, run.describe()
    said = _ended_sites(run.stderr, 2, "total")
    assert said and {(f, n) for _, f, n in said} == {(str(script), str(line))}, run.describe()


def test_a_late_rank_is_not_taken_for_an_ended_one(mpi_warm) -> None:
    # rank 1 sleeps 4 s while rank 0 waits in smooth(): no notice, the call completes
    run = mpi_warm(ENDED, 2, ["late"], timeout=120)
    assert run.returncode == 0, run.describe()
    totals = re.findall(r"^rank (\d) total (\S+)$", run.stdout, re.M)
    assert sorted(r for r, _ in totals) == ["0", "1"], run.describe()
    assert totals[0][1] == totals[1][1] and float(totals[0][1]) > 0, run.describe()
    assert "has ended" not in run.stderr, run.describe()


def test_a_bad_wait_setting_is_named(mpi_warm) -> None:
    run = mpi_warm(SKIPPED, 2, ["none"], timeout=120, env={"LOOPSCALE_MPI_TIMEOUT": "soon"})
    assert run.returncode != 0, run.describe()
    assert "LOOPSCALE_MPI_TIMEOUT must be a number of seconds" in run.stderr, run.describe()


#: ``script.py CASE``: rank 1 skips a call whose first collective is not one of a
#: distributed call's (the count of ranks per node, the private communicator's
#: ``Dup``, a task farm's start, a loader's or ``from_local``'s exchange).
SKIPPED_FIRST = r'''
import os, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def norm2(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


case, tmp = sys.argv[1], sys.argv[2]
me = distribute.rank()
path = os.path.join(tmp, "a.npy")
if me == 0:
    np.save(path, np.arange(12.0).reshape(6, 2))
distribute.comm().Barrier()
if case in ("map-again", "load_npy", "from_local"):
    distribute.map(abs, [1, -2], results="all")    # the private communicator exists
    distribute.zeros(4)
print(f"rank {me} ready", flush=True)
if me == 0:
    if case == "first-call":
        with loopscale.level("mpi"):
            norm2(np.arange(1000.0))               # SKIPPED first-call
    elif case == "zeros":
        distribute.zeros(10)                       # SKIPPED zeros
    elif case == "scatter":
        distribute.scatter(np.arange(10.0))        # SKIPPED scatter
    elif case in ("map", "map-again"):
        distribute.map(abs, [1, -2, 3])            # SKIPPED map map-again
    elif case == "load_npy":
        distribute.load_npy(path)                  # SKIPPED load_npy
    elif case == "from_local":
        distribute.from_local(np.zeros((3, 2)))    # SKIPPED from_local
print(f"rank {me} reached the end", flush=True)
if me == 1:
    import time
    time.sleep(60)  # alive, but not in the call: only the watchdog can tell
'''


@pytest.mark.parametrize("case, name", [
    ("first-call", "norm2()"), ("zeros", "distribute.zeros()"),
    ("scatter", "distribute.scatter()"), ("map", "distribute.map()"),
    ("map-again", "distribute.map()"), ("load_npy", "distribute.load_npy()"),
    ("from_local", "distribute.from_local()")])
def test_a_first_collective_one_rank_skips_is_reported_not_silent(mpi_warm, tmp_path,
                                                                  case, name) -> None:
    # The first decorated call counts the ranks on each node (Split_type), the
    # first distributed array duplicates the communicator (Dup), a farm starts
    # with an exchange: each waited silently for ever when one rank skipped it.
    script = mpi_warm.write(SKIPPED_FIRST)
    line = next(k for k, text in enumerate(SKIPPED_FIRST.splitlines(), 1)
                if "# SKIPPED" in text and case in text.split("# SKIPPED")[1].split())
    run = mpi_warm(script, 2, [case, str(tmp_path)], timeout=120,
                   env={"LOOPSCALE_MPI_WAIT": "1", "LOOPSCALE_MPI_TIMEOUT": "4"})
    assert run.returncode == 1, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert run.stdout.count("ready") == 2, run.describe()
    warned = [t for t in run.stderr.splitlines() if t.startswith("[rank 0] loopscale: rank 0 "
                                                                 "has waited")]
    assert len(warned) == 2, run.describe()
    for text in warned:
        assert f"of {name}, called at {script}:{line}." in text, text
    assert "LOOPSCALE_MPI_TIMEOUT=4" in warned[1], run.describe()


#: A farm inside a farm's task: the task runs on one rank alone, so the inner
#: collective call is refused at once (it waited for ever).
NESTED_MAP = r'''
from loopscale import distribute
distribute.map(lambda v: distribute.map(abs, [v, -v]), range(4))
print(f"rank {distribute.rank()} finished", flush=True)
'''


def test_a_farm_inside_a_task_fails_at_once_with_the_reason(mpi_warm) -> None:
    run = mpi_warm(NESTED_MAP, 2, timeout=120,
                   env={"LOOPSCALE_MPI_WAIT": "1", "LOOPSCALE_MPI_TIMEOUT": "4"})
    assert run.returncode != 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert "DistributionError: distribute.map() is collective" in run.stderr, run.describe()
    assert "inside a task of distribute.map()" in run.stderr, run.describe()
    assert "has waited" not in run.stderr, run.describe()
    assert "finished" not in run.stdout, run.describe()


#: ``script.py MODE``: MPI finalized by the script, then an exception or an exit.
AFTER_FINALIZE = r'''
import sys
import numpy as np
from mpi4py import MPI
from loopscale import distribute

me = MPI.COMM_WORLD.Get_rank()
u = distribute.scatter(np.arange(4.0) if me == 0 else None)
MPI.Finalize()
if sys.argv[1] == "raise":
    raise RuntimeError("raised after MPI.Finalize")
if sys.argv[1] == "exit" and me == 1:
    sys.exit(3)
'''


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_an_exception_after_finalize_keeps_its_traceback(mpi_warm, mode) -> None:
    run = mpi_warm(AFTER_FINALIZE, 2, [mode], timeout=120)
    assert run.returncode != 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert "after finalizing" not in run.stderr, run.describe()  # no MPI call after it
    if mode == "raise":
        for r in range(2):
            assert f"[rank {r}] Traceback (most recent call last):" in run.stderr
            assert f"[rank {r}] RuntimeError: raised after MPI.Finalize" in run.stderr
            assert f"[rank {r}] exiting with status 1" in run.stderr, run.describe()


#: What the agreement check compares: the arrays a loop only reads (a sample of
#: their elements by default, all with check="values"), never an output buffer
#: whose old contents differ by rank; and a distributed call's mismatch is
#: explained as one.
CONTENTS = r'''
import json, os, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute
from loopscale.errors import ArgumentValueError


@accelerate
def twice_sum(x, out):
    s = 0.0
    for i in range(x.shape[0]):
        out[i] = x[i] * 2.0
        s += out[i]            # reads only what this iteration just wrote
    return s


@accelerate
def square(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * x[i]


@accelerate
def step(u, out, alpha):
    for i in range(1, u.shape[0] - 1):
        out[i] = u[i] + alpha * (u[i - 1] + u[i + 1])


@accelerate
def interior(v, out):
    for i in range(1, v.shape[0] - 1):
        out[i] = v[i] * 2.0


@accelerate
def behind(v, out):
    for i in range(v.shape[0] - 2):
        out[i] = v[i - 1] if i > 0 else 0.0


me = distribute.rank()
report = {}
x = np.arange(100.0)
ends = np.arange(100.0)
ends[0] = ends[-1] = float(me) * 1e6         # never read (an np.empty scratch's ends)
for check in ("values", "shapes"):
    with loopscale.level("mpi", check=check):
        try:
            out = np.zeros(100)
            interior(ends, out)
            ok = bool(np.array_equal(out[1:-1], 2 * ends[1:-1]))
            out = np.zeros(100)
            behind(ends[1:], out)                # reads ends[1:97]
            report[f"ends-{check}"] = ok and bool(np.array_equal(out[1:97], ends[1:97]))
        except ArgumentValueError as exc:
            report[f"ends-{check}"] = str(exc)
    if me == 1:
        ends[50] += 1.0                          # read: reported
    try:
        with loopscale.level("mpi", check=check):
            interior(ends, np.zeros(100))
        report[f"read-{check}"] = "NOT DETECTED"
    except ArgumentValueError as exc:
        report[f"read-{check}"] = str(exc)
    ends[50] = 50.0
for check in ("values", "shapes"):
    out = np.full(100, float(me))            # stale contents differ per rank
    with loopscale.level("mpi", check=check):
        try:
            s = twice_sum(x, out)
            report[f"out-{check}"] = bool(s == 9900.0 and np.array_equal(out, 2 * x))
        except ArgumentValueError as exc:
            report[f"out-{check}"] = str(exc)
mine = np.full(8, float(me + 1))             # each rank's own block (mpi4py style)
for check in ("shapes", "values"):
    try:
        with loopscale.level("mpi", check=check):
            square(mine, np.empty(8))
        report[f"blocks-{check}"] = "NOT DETECTED"
    except ArgumentValueError as exc:
        report[f"blocks-{check}"] = str(exc)
big = np.arange(10**6, dtype=np.float64)     # a sampled element differs on one rank
if me == 1:
    big[62500 * 7] = -1.0
try:
    with loopscale.level("mpi"):
        square(big[::2], np.empty(big[::2].shape))
    report["strided"] = "NOT DETECTED"
except ArgumentValueError as exc:
    report["strided"] = str(exc)
with loopscale.level("mpi", check="none"):
    square(mine, np.empty(8))                # check="none" compares nothing
u = distribute.scatter(np.arange(50.0) if me == 0 else None)
v = distribute.zeros_like(u)
try:
    step(u, v, 0.1 if me == 0 else 0.2)
    report["distributed"] = "NOT DETECTED"
except ArgumentValueError as exc:
    report["distributed"] = str(exc)
distribute.comm().Barrier()
with open(os.path.join(sys.argv[1], f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
'''


def test_the_agreement_check_compares_what_the_loop_reads(mpi_warm, tmp_path) -> None:
    run = mpi_warm(CONTENTS, 2, [str(tmp_path)], timeout=120)
    assert run.returncode == 0, run.describe()
    for r in range(2):
        report = json.loads((tmp_path / f"rank{r}.json").read_text())
        # an output buffer's stale contents are not an input
        assert report["out-values"] is True, report
        assert report["out-shapes"] is True, report
        # nor are elements the loop never reads; those it reads are
        assert report["ends-values"] is True and report["ends-shapes"] is True, report
        for key in ("read-values", "read-shapes"):
            assert report[key].startswith("the inputs of interior() differ"), (key, report)
        # per-rank blocks of equal shape: reported, not mixed
        for key in ("blocks-shapes", "blocks-values", "strided"):
            text = report[key]
            assert text.startswith("the inputs of square() differ"), (key, text)
            assert "x: rank 0: " in text and "out:" not in text, (key, text)
            assert "distribute.from_local" in text, (key, text)
        assert " ~" in report["blocks-shapes"] and " #" in report["blocks-values"]
        text = report["distributed"]
        assert "alpha: rank 0: float 0.1; rank 1: float 0.2" in text, text
        assert "distributed arrays" in text and "replicated mode" not in text, text


#: ``script.py CASE OUT``: rank 1 skips one call that rank 0 makes, and the next
#: call of both ranks is of the other kind (distributed / replicated) or with
#: the other check: every call's agreement is made of the same collectives, so
#: the ranks meet there and every rank raises the same error, where it hung.
OTHER_CALL = r'''
import json, os, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute
from loopscale.errors import ArgumentValueError


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


case, out = sys.argv[1], sys.argv[2]
check = "values" if case == "values" else "shapes"
me = distribute.rank()
x = np.arange(1000.0)
u = distribute.scatter(x if me == 0 else None)
report = {}
with loopscale.level("mpi", check=check):
    assert total(u) == total(x) == x.sum()      # every rank: fine
    try:
        if case == "replicated-skipped":
            if me == 0:
                total(x)                        # SKIPPED-BY-RANK-1 replicated-skipped
            total(u)                            # NEXT replicated-skipped
        else:
            if me == 0:
                total(u)                        # SKIPPED-BY-RANK-1 distributed-skipped values
            total(x)                            # NEXT distributed-skipped values
        report["error"] = "NOT DETECTED"
    except ArgumentValueError as exc:
        report["error"] = str(exc)
    # no rank was left waiting: the ranks go on together
    report["after"] = [bool(total(u) == x.sum()), bool(total(x) == x.sum())]
distribute.comm().Barrier()
with open(os.path.join(out, f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
print(f"rank {me} finished", flush=True)
'''


@pytest.mark.parametrize("case", ["distributed-skipped", "replicated-skipped", "values"])
def test_a_skipped_call_meeting_another_kind_of_call_is_an_error_on_every_rank(
        mpi_warm, tmp_path, case) -> None:
    # A distributed call's agreement used to exchange the descriptions with a
    # second Allreduce first, a replicated call's without: a rank in one met a
    # rank in the other and both waited for ever (the replicated exchange was
    # not even watched).  Now both meet in the same collectives and raise.
    script = mpi_warm.write(OTHER_CALL)
    lines = OTHER_CALL.splitlines()
    skipped = next(k for k, t in enumerate(lines, 1) if "# SKIPPED-BY-RANK-1" in t
                   and case in t.split("#")[1].split())
    following = next(k for k, t in enumerate(lines, 1) if "# NEXT" in t
                     and case in t.split("#")[1].split())
    run = mpi_warm(script, 2, [case, str(tmp_path)], timeout=120,
                   env={"LOOPSCALE_MPI_WAIT": "5", "LOOPSCALE_MPI_TIMEOUT": "15"})
    assert run.returncode == 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert "has waited" not in run.stderr, run.describe()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0]["error"] == reports[1]["error"], reports  # the same text everywhere
    text = reports[0]["error"]
    distributed = "total() with distributed arrays (DistArray arguments)"
    replicated = "total() with NumPy arrays at the 'mpi' level (replicated mode)"
    first, second = ((replicated, distributed) if case == "replicated-skipped"
                     else (distributed, replicated))
    assert text.startswith(f"the MPI ranks are not in the same call: rank 0: {first}; "
                           f"rank 1: {second}\n"), text
    assert f"called at: rank 0: {script}:{skipped}; rank 1: {script}:{following}" in text, text
    assert "same distributed calls" in text and "in the same order" in text, text
    for report in reports:
        assert report["after"] == [True, True], report
