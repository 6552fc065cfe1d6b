"""``distribute.map`` under a real mpiexec: input order, load balance, errors on every rank."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.mpi

FARM = r'''
import json, os, sys, threading, time
from loopscale import distribute
from loopscale.errors import ArgumentError, WorkerError

me = distribute.rank()
report = {}


def slow_square(x):
    time.sleep(0.004 if x % 5 == 0 else 0.0005)   # irregular work
    return x * x, distribute.rank()


out = distribute.map(slow_square, range(300) if me == 0 else None, chunksize=2)
report["root_only"] = None if out is None else [v for v, _ in out] == [x * x for x in range(300)]
report["ranks_used"] = None if out is None else sorted({r for _, r in out})

report["everywhere"] = distribute.map(lambda x: -x, range(7), results="all")

try:
    distribute.map(lambda x: 0, [1, 2, threading.Lock(), 4])
    report["unpicklable"] = "NOT DETECTED"
except ArgumentError as exc:
    report["unpicklable"] = str(exc)


def fails_at_13(x):
    if x == 13:
        raise KeyError("thirteen")
    return x


try:
    distribute.map(fails_at_13, range(60), results="all")
    report["task_error"] = "NOT RAISED"
except KeyError as exc:
    report["task_error"] = "KeyError " + "".join(getattr(exc, "__notes__", []))[:40]
except WorkerError as exc:
    report["task_error"] = "WorkerError " + str(exc)

# a task that calls an accelerated function (one simulation per parameter): at
# level auto the call stays on this rank (a collective call would wait for the
# other ranks, busy with other tasks: it hung)
import numpy as np
from loopscale import accelerate


@accelerate
def simulate(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


got = distribute.map(lambda k: simulate(np.arange(float(k))), range(9), results="all")
report["accelerated_tasks"] = got == [simulate.py_func(np.arange(float(k))) for k in range(9)]

# a message of the user's, sent before the farm and received after it: the farm
# must not take it for one of its own (it receives any tag from any rank)
if distribute.size() > 1:
    comm = distribute.comm()
    if me == 0:
        pending = comm.isend({"config": 42}, dest=1, tag=99)
    report["own_messages"] = distribute.map(lambda x: x + 1, range(20), results="all") == \
        list(range(1, 21))
    if me == 1:
        report["own_messages"] &= comm.recv(source=0, tag=99) == {"config": 42}
    if me == 0:
        pending.wait()
    comm.Barrier()
else:
    report["own_messages"] = True

# a result that cannot travel to every rank (results="all"): an error everywhere
try:
    distribute.map(lambda x: threading.Lock() if x == 2 else x, range(6), results="all")
    report["unpicklable_result"] = "NOT RAISED"
except (ArgumentError, WorkerError) as exc:
    report["unpicklable_result"] = str(exc)

report["after"] = distribute.map(str, range(3), results="all")
with open(os.path.join(sys.argv[1], f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
'''


@pytest.mark.parametrize("nprocs", [1, 3])
def test_map_farms_tasks_and_reports_bad_input_on_every_rank(mpi, tmp_path, nprocs) -> None:
    run = mpi(FARM, nprocs, [str(tmp_path)], how="python" if nprocs == 1 else "mpiexec")
    assert run.returncode == 0, run.describe()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nprocs)]
    root = reports[0]
    assert root["root_only"] is True
    assert root["ranks_used"] == list(range(nprocs))  # every rank took work
    for r, report in enumerate(reports):
        if r:
            assert report["root_only"] is None  # results="root": None elsewhere
        assert report["everywhere"] == [-x for x in range(7)]
        assert report["after"] == ["0", "1", "2"]
        assert report["accelerated_tasks"] is True
        assert report["own_messages"] is True
        if nprocs > 1:
            assert "be pickled" in report["unpicklable_result"], report
        if nprocs == 1:  # one process: nothing travels, nothing is pickled
            assert report["unpicklable"] == "NOT DETECTED"
        else:
            assert report["unpicklable"].startswith(
                "distribute.map(): item 2 of the iterable (<unlocked _thread.lock"), report
            assert "cannot be pickled" in report["unpicklable"]
    if nprocs > 1:
        assert root["task_error"].startswith("KeyError")
        for report in reports[1:]:
            assert report["task_error"].startswith("WorkerError distribute.map(): a task "
                                                   "failed: KeyError: 'thirteen'"), report
    else:
        assert root["task_error"].startswith("KeyError")
