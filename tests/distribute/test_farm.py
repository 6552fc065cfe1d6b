"""``distribute.map`` under a real mpiexec: input order, load balance, errors on every rank."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.mpi

FARM = r'''
import json, os, sys, threading, time
import numpy as np
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

# (a NumPy integer chunksize on one rank agrees with the same int on the others)
report["everywhere"] = distribute.map(lambda x: -x, range(7), results="all",
                                      chunksize=np.int64(2) if me == 0 else 2)

try:  # the condition turned round: the items on the other ranks, None on the root
    distribute.map(lambda x: x, None if me == 0 else [1, 2, 3], results="all")
    report["root_none"] = "NOT DETECTED"
except ArgumentError as exc:
    report["root_none"] = str(exc)

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

# reading the iterable fails on the root: the root gets the iterable's own
# exception, the other ranks an ArgumentError that names it; nobody waits


def lines():
    yield "a"
    raise OSError(5, "the disk went away")


try:
    distribute.map(len, lines() if me == 0 else None)
    report["iterable_error"] = "NOT RAISED"
except OSError as exc:
    report["iterable_error"] = f"OSError {exc.errno} " + " ".join(getattr(exc, "__notes__", []))
except ArgumentError as exc:
    report["iterable_error"] = "ArgumentError " + str(exc)

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
        assert ("the iterable is None on the root (rank 0)" in report["root_none"]
                if r == 0 or nprocs == 1 else
                report["root_none"].startswith("distribute.map(): the iterable is None on the "
                                               "root (rank 0)")), report
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
    # (one process reads the iterable as a list comprehension would: no note)
    assert root["iterable_error"].startswith(
        "OSError 5" + (" distribute.map()" if nprocs > 1 else "")), root
    for report in reports[1:]:
        assert report["iterable_error"].startswith(
            "ArgumentError distribute.map(): reading the iterable on the root (rank 0) raised "
            "OSError: [Errno 5] the disk went away"), report
    if nprocs > 1:
        assert root["task_error"].startswith("KeyError")
        for report in reports[1:]:
            assert report["task_error"].startswith("WorkerError distribute.map(): a task "
                                                   "failed: KeyError: 'thirteen'"), report
    else:
        assert root["task_error"].startswith("KeyError")


#: Collective calls inside a task (which runs on one rank alone): each is refused
#: at once in the task with a DistributionError that says why and what to do;
#: an accelerated call at level auto still runs there, on that rank alone.
IN_TASKS = r'''
import json, os, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute
from loopscale.errors import DistributionError, WorkerError


@accelerate
def scaled_sum(x, w):
    t = 0.0
    for i in range(x.shape[0]):
        t += x[i] * w[0]
    return t


me = distribute.rank()
path = os.path.join(sys.argv[1], "a.npy")
if me == 0:
    np.save(path, np.arange(6.0))
u = distribute.scatter(np.arange(100.0) if me == 0 else None)
out = distribute.zeros_like(u)
with loopscale.level("auto"):
    first = scaled_sum(np.arange(100.0), np.ones(1))   # auto chose 'mpi' here
report = {"first": first}


def probe(kind):
    try:
        if kind == "call":
            scaled_sum(u, np.array([2.0]))
        elif kind == "scatter":
            distribute.scatter(np.arange(4.0))
        elif kind == "gather":
            distribute.gather(u)
        elif kind == "allgather":
            distribute.allgather(u)
        elif kind == "from_local":
            distribute.from_local(np.zeros(3))
        elif kind == "zeros":
            distribute.zeros(4)
        elif kind == "load_npy":
            distribute.load_npy(path)
        elif kind == "redistribute":
            u.redistribute()
        elif kind == "mpi-level":
            with loopscale.level("mpi"):
                scaled_sum(np.arange(10.0), np.ones(1))
        elif kind == "map":
            distribute.map(abs, [1, -1])
        elif kind == "auto":   # runs on this rank alone: fine
            with loopscale.level("auto"):
                return scaled_sum(np.arange(100.0), np.ones(1)) == 4950.0
    except DistributionError as exc:
        text = str(exc)
        return "ok" if ("inside a task of distribute.map()" in text
                        and "allgather" in text) else text
    return "NOT REFUSED"


kinds = ["call", "scatter", "gather", "allgather", "from_local", "zeros", "load_npy",
         "redistribute", "mpi-level", "map", "auto"]
got = distribute.map(probe, kinds * 2, results="all")
report["refused"] = [[k, g] for k, g in zip(kinds * 2, got)]
# the reproducer: unhandled in the task, the error goes through map's error path
try:
    distribute.map(lambda k: scaled_sum(u, np.array([float(k)])), range(4))
    report["unhandled"] = "NOT RAISED"
except DistributionError as exc:
    report["unhandled"] = "DistributionError"
except WorkerError as exc:
    report["unhandled"] = "WorkerError " + str(exc)
# the ranks still work together
scaled_sum(u, np.ones(1))
report["after"] = float(scaled_sum(u, np.ones(1)))
with open(os.path.join(sys.argv[1], f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
'''


def test_collective_calls_inside_a_task_are_refused_at_once(mpi, tmp_path) -> None:
    run = mpi(IN_TASKS, 3, [str(tmp_path)], timeout=120,
              env={"LOOPSCALE_MPI_WAIT": "5", "LOOPSCALE_MPI_TIMEOUT": "20"})
    assert run.returncode == 0, run.describe()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    for r, report in enumerate(reports):
        assert report["first"] == 4950.0
        assert len(report["refused"]) == 22, report
        for kind, outcome in report["refused"]:
            assert outcome == (True if kind == "auto" else "ok"), (kind, outcome)
        assert report["after"] == 4950.0
        if r == 0:
            assert report["unhandled"] == "DistributionError", report
        else:
            assert report["unhandled"].startswith("WorkerError distribute.map(): a task "
                                                  "failed: loopscale.errors.DistributionError"
                                                  ), report


#: Items, results and exceptions that pickle on one rank and cannot be rebuilt
#: on another: each fails the call on every rank (it hung), and an exception
#: whose __init__ takes other arguments than it passes on reaches the root as
#: itself (it came as a WorkerError).
PICKLING = r'''
import json, os, sys
from loopscale import distribute
from loopscale.errors import WorkerError

me = distribute.rank()
report = {}


def rebuild(v):
    if distribute.rank() != 0:
        raise RuntimeError(f"no store on rank {distribute.rank()}")
    return Snapshot(v)


def rebuild_on_workers(v):
    if distribute.rank() == 0:
        raise OSError("snapshot store not mounted on the root")
    return Snapshot(v)


class Snapshot:
    def __init__(self, v, where=rebuild):
        self.v, self.where = v, where

    def __reduce__(self):
        return (self.where, (self.v,))


class ConvergenceError(Exception):
    def __init__(self, param, iters):
        super().__init__(f"no convergence for {param!r} after {iters} iterations")
        self.param, self.iters = param, iters


def solve(p):
    if distribute.rank() != 0:  # (only on the other ranks: its pickle must travel)
        raise ConvergenceError(p, 1000)
    return p


cases = {
    "item": lambda: distribute.map(lambda s: s.v, [Snapshot(i) for i in range(12)]),
    "result": lambda: distribute.map(lambda x: Snapshot(x, rebuild_on_workers), range(12)),
    "custom": lambda: distribute.map(solve, range(12)),
}
for name, call in cases.items():
    try:
        call()
        report[name] = "NOT RAISED"
    except ConvergenceError as exc:
        report[name] = f"ConvergenceError {exc.param} {exc.iters} {exc}"
    except WorkerError as exc:
        report[name] = "WorkerError " + str(exc)
report["after"] = distribute.map(str, range(3), results="all")
with open(os.path.join(sys.argv[1], f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
'''


def test_what_cannot_be_unpickled_on_a_rank_fails_the_map_on_every_rank(mpi, tmp_path) -> None:
    run = mpi(PICKLING, 3, [str(tmp_path)], timeout=120)
    assert run.returncode == 0, run.describe()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    root = reports[0]
    assert root["item"].startswith("WorkerError distribute.map(): a task failed on MPI rank"), root
    assert "an item of the iterable could not be rebuilt (unpickled) on rank" in root["item"]
    assert "RuntimeError: no store on rank" in root["item"]
    assert "the result of chunk" in root["result"], root
    assert "could not be rebuilt (unpickled) on rank 0" in root["result"], root
    assert "OSError: snapshot store not mounted on the root" in root["result"], root
    assert root["custom"].startswith("ConvergenceError "), root
    param, iters, text = root["custom"].split(" ", 3)[1:]
    assert iters == "1000" and text == f"no convergence for {param} after 1000 iterations"
    for report in reports:
        assert report["after"] == ["0", "1", "2"], report
    for report in reports[1:]:
        for name in ("item", "result", "custom"):
            assert report[name].startswith("WorkerError distribute.map(): a task failed"), report
        assert "ConvergenceError: no convergence for" in report["custom"], report
