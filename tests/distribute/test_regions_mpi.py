"""Parallel loops inside a sequential loop, under a real mpiexec.

A time loop around independent inner loops used to run whole on every rank (no
gain from the ranks). Each inner loop (a region, see ``loopscale.accel._regions``)
is now a replicated call of its own at the ``mpi`` level: its blocks are dealt
across the ranks and its outputs exchanged, every pass. Every rank must then
take the same path through the driver, so a region kept inline because it is
too short to gain is kept inline on every rank (the ranks agree on the timing's
verdict).
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.mpi

SCRIPT = r'''
import math, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def nbody(pos, vel, steps, dt):
    n = pos.shape[0]
    acc = np.zeros_like(pos)
    for t in range(steps):
        for i in range(n):                        # O(n^2): dealt across the ranks
            ax = 0.0
            ay = 0.0
            for j in range(n):
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                r2 = dx * dx + dy * dy + 1e-3
                inv = 1.0 / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
            acc[i, 0] = ax
            acc[i, 1] = ay
        for i in range(n):
            vel[i, 0] += dt * acc[i, 0]
            vel[i, 1] += dt * acc[i, 1]
            pos[i, 0] += dt * vel[i, 0]
            pos[i, 1] += dt * vel[i, 1]
    return pos


@accelerate
def relax(u, tol):                                # a while loop; a max handed back
    n = u.shape[0]
    v = u.copy()
    sweeps = 0
    change = tol + 1.0
    while change > tol and sweeps < 500:
        change = 0.0
        for i in range(1, n - 1):
            v[i] = 0.5 * (u[i - 1] + u[i + 1])
            change = max(change, abs(v[i] - u[i]))
        for i in range(1, n - 1):
            u[i] = v[i]
        sweeps += 1
    return sweeps, change


@accelerate
def census(k, rounds):                            # an integer sum and a flag handed back
    total = 0
    seen = False
    for r in range(rounds):
        count = 0
        for i in range(k.shape[0]):
            if (k[i] + r) % 5 == 0:
                count += 1
            if k[i] == 77 + r:
                seen = True
        total += count * (r + 1)
    return total, seen


def run(level, fn, *args):
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with loopscale.level(level):
        out = fn(*args)
    return out, args


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (list,)):
        return all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


me = distribute.rank()
rng = np.random.default_rng(7)
cases = {
    "nbody": (nbody, rng.random((301, 2)), np.zeros((301, 2)), 4, 1e-3),
    "relax": (relax, np.where(np.arange(257) % 31 == 0, 1.0, 0.0), 1e-4),
    "census": (census, rng.integers(0, 200, 1009), 6),
    "small": (nbody, rng.random((7, 2)), np.zeros((7, 2)), 400, 1e-4),
}
for name, (fn, *args) in cases.items():
    ref = run("serial", fn, *args)
    for level in ("auto", "mpi"):
        got = run(level, fn, *args)
        ok = same(got[0], ref[0]) and same(got[1], ref[1])
        stats = distribute.last_call_stats()
        sys.stdout.write(f"rank {me} {name} {level} same={ok} "
                         f"moved={stats.get('bytes_moved', -1)} fn={stats.get('function')}\n")
        sys.stdout.flush()

# a rank whose timings say the opposite of the others' (here: rank 1 believes the
# small loops gain from the pool): every rank must still take the same path
if me == 1:
    for runner in nbody._compiled.runners:
        for state in (runner, runner.collective):  # (the timings at each kind of level)
            state.serial_cost = {b: c * 1e6 for b, c in state.serial_cost.items()}
fn, *args = cases["small"]
ref = run("serial", fn, *args)
got = run("auto", fn, *args)
sys.stdout.write(f"rank {me} skewed same={same(got[0], ref[0]) and same(got[1], ref[1])}\n")
sys.stdout.flush()
'''


@pytest.mark.parametrize("ranks", [2, 3])
def test_inner_loops_of_a_time_loop_are_dealt_across_ranks_bit_for_bit(mpi_warm, ranks) -> None:
    run = mpi_warm(SCRIPT, ranks, timeout=300)
    assert run.returncode == 0, run.describe()
    lines = re.findall(r"^rank (\d+) (\w+) (\w+) same=(\w+) moved=(-?\d+) fn=(\S+)$",
                       run.stdout, re.M)
    assert len(lines) == ranks * 4 * 2, run.describe()
    assert sorted(re.findall(r"^rank (\d+) skewed same=True$", run.stdout, re.M)) == [
        str(r) for r in range(ranks)], run.describe()
    for rank, name, level, same, moved, fn in lines:
        assert same == "True", (rank, name, level, run.describe())
        if name in ("nbody", "relax", "census"):
            # the inner loops ran as replicated calls: rows moved between ranks
            assert fn == name and int(moved) > 0, (rank, name, level, run.describe())


#: Time loops called with distributed arrays: the inner loops are distributed calls.
DIST = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def heat(u, new, steps, k):                       # 1-D, the arrays swapped each step
    n = u.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            new[i] = u[i] + k * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        u, new = new, u
    return u


@accelerate
def jacobi(u, v, tol, maxit):                     # 2-D, to convergence: a max handed back
    n, m = u.shape
    res = tol + 1.0
    it = 0
    while res > tol and it < maxit:
        res = 0.0
        for i in range(1, n - 1):
            for j in range(1, m - 1):
                v[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])
                res = max(res, abs(v[i, j] - u[i, j]))
        u, v = v, u
        it += 1
    return u, it, res


@accelerate
def copy_back(u, tmp, steps):                     # two inner loops a pass, a temporary
    n = u.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            tmp[i] = 0.5 * u[i] + 0.25 * (u[i - 1] + u[i + 1])
        for i in range(1, n - 1):
            u[i] = tmp[i]
    return u


@accelerate
def residual(u, new, steps):                      # a float sum handed back each pass
    n = u.shape[0]
    r = 0.0
    for t in range(steps):
        r = 0.0
        for i in range(1, n - 1):
            new[i] = 0.5 * (u[i - 1] + u[i + 1])
            r += (new[i] - u[i]) * (new[i] - u[i])
        u, new = new, u
    return u, r


@accelerate
def diagnosed(u, new, steps, energies):           # a region under `if t % 10 == 0:`
    n = u.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            new[i] = u[i] + 0.2 * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        u, new = new, u
        if t % 10 == 0:
            e = 0.0
            for i in range(n):
                e += u[i] * u[i]
            energies[t // 10] = e
    return u


@accelerate
def made_inside(u, steps):                        # a like-shaped array made by the function
    new = np.empty_like(u)
    n = u.shape[0]
    for t in range(steps):
        for i in range(n):
            new[i] = u[i]
        tmp = np.zeros_like(u)
        for i in range(1, n - 1):
            tmp[i] = 0.5 * (new[i - 1] + new[i + 1])
        u = tmp
    return u


@accelerate
def boundary(u, new, steps):                      # new[0] between the loops: refused
    n = u.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            new[i] = 0.5 * (u[i - 1] + u[i + 1])
        new[0] = u[0]                             # NEEDS-ROW-0
        u, new = new, u
    return u


me = distribute.rank()
n = int(sys.argv[1])
x = np.sin(np.linspace(0.0, 3.0, n)) ** 2
g = np.zeros((n, 17))
g[0, :] = 1.0
g[:, 0] = 0.5


def scat(a):
    return distribute.scatter(a if me == 0 else None)


def report(name, ok):
    sys.stdout.write(f"rank {me} {name} same={ok}\n")
    sys.stdout.flush()


with loopscale.level("serial"):
    want = heat(x.copy(), x.copy(), 40, 0.2)
got = heat(scat(x), scat(x), 40, 0.2)
report("heat", type(got).__name__ == "DistArray"
       and distribute.allgather(got).tobytes() == want.tobytes())
with loopscale.level("serial"):
    want = jacobi(g.copy(), g.copy(), 1e-3, 300)
got = jacobi(scat(g), scat(g), 1e-3, 300)
report("jacobi", distribute.allgather(got[0]).tobytes() == want[0].tobytes()
       and got[1:] == want[1:] and type(got[2]) is type(want[2]))
with loopscale.level("serial"):
    want = copy_back(x.copy(), np.zeros(n), 25)
got = copy_back(scat(x), distribute.zeros(n), 25)
report("copy_back", distribute.allgather(got).tobytes() == want.tobytes())
with loopscale.level("serial"):
    want = residual(x.copy(), x.copy(), 9)
got = residual(scat(x), scat(x), 9)
report("residual", distribute.allgather(got[0]).tobytes() == want[0].tobytes()
       and got[1] == want[1])
en_serial, en_dist = np.zeros(3), np.zeros(3)
with loopscale.level("serial"):
    want = diagnosed(x.copy(), x.copy(), 25, en_serial)
got = diagnosed(scat(x), scat(x), 25, en_dist)
report("diagnosed", distribute.allgather(got).tobytes() == want.tobytes()
       and en_dist.tobytes() == en_serial.tobytes())
with loopscale.level("serial"):
    want = made_inside(x.copy(), 6)
got = made_inside(scat(x), 6)
report("made_inside", distribute.allgather(got).tobytes() == want.tobytes())
try:
    boundary(scat(x), scat(x), 3)
    report("boundary", False)
except loopscale.errors.DistributionError as exc:
    sys.stdout.write(f"rank {me} refused: {exc}\n")
    sys.stdout.flush()
'''


@pytest.mark.parametrize("ranks, n", [(2, 64), (3, 41), (3, 2)])
def test_a_time_loop_called_with_distributed_arrays_runs_its_inner_loops_distributed(
        mpi_warm, ranks, n) -> None:
    # was refused: "its loop does not run in parallel" (the time loop)
    script = mpi_warm.write(DIST)
    line = next(k for k, text in enumerate(DIST.splitlines(), 1) if "NEEDS-ROW-0" in text)
    run = mpi_warm(script, ranks, [str(n)], timeout=300)
    assert run.returncode == 0, run.describe()
    found = re.findall(r"^rank (\d+) (\w+) same=(\w+)$", run.stdout, re.M)
    assert sorted(found) == sorted((str(r), name, "True") for r in range(ranks)
                                   for name in ("heat", "jacobi", "copy_back", "made_inside",
                                                "residual", "diagnosed")
                                   ), run.describe()
    refused = re.findall(r"^rank \d+ refused: (.*)$", run.stdout, re.M)
    assert len(refused) == ranks, run.describe()
    assert f"{script}:{line}" in refused[0] and "`new[0]`" in refused[0], refused[0]


#: Arguments that differ by rank: refused on every rank before any pass runs.
DIFFER = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def heat(u, new, steps):
    n = u.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            new[i] = 0.5 * (u[i - 1] + u[i + 1])
        u, new = new, u
    return u


me = distribute.rank()
x = np.sin(np.linspace(0.0, 3.0, 5000))
for what in ("steps", "fill"):
    try:
        if what == "steps":                       # a step count computed differently
            heat(x.copy(), x.copy(), 5 if me == 0 else 2)
        else:
            distribute.full(10, float(me))
        sys.stdout.write(f"rank {me} {what} accepted\n")
    except loopscale.errors.ArgumentValueError as exc:
        sys.stdout.write(f"rank {me} {what} refused: {str(exc).splitlines()[1].strip()}\n")
    sys.stdout.flush()
total = float(distribute.allgather(distribute.zeros(4)).sum())  # the ranks go on together
sys.stdout.write(f"rank {me} after {total}\n")
sys.stdout.flush()
'''


def test_arguments_that_differ_by_rank_are_refused_on_every_rank(mpi_warm) -> None:
    # a step count that differed ran 2 passes on one rank and 5 on the other: the
    # first rank returned a wrong answer, the other met its next call (or hung)
    run = mpi_warm(DIFFER, 2, timeout=120)
    assert run.returncode == 0, run.describe()
    steps = re.findall(r"^rank (\d) steps refused: (.*)$", run.stdout, re.M)
    assert sorted(r for r, _ in steps) == ["0", "1"], run.describe()
    assert all("steps: rank 0: int 5; rank 1: int 2" in t for _, t in steps), run.describe()
    fill = re.findall(r"^rank (\d) fill refused: (.*)$", run.stdout, re.M)
    assert sorted(r for r, _ in fill) == ["0", "1"], run.describe()
    assert all("fill" in t for _, t in fill), run.describe()
    assert run.stdout.count("after 0.0") == 2, run.describe()


#: ``script.py MODE``: a time loop called on rank 0 alone first (at the threads
#: level, or in tasks of distribute.map), then on every rank together.
ALONE_FIRST = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def relax(u, steps):
    n = u.shape[0]
    new = np.empty_like(u)
    for t in range(steps):
        for i in range(1, n - 1):
            new[i] = 0.25 * u[i - 1] + 0.5 * u[i] + 0.25 * u[i + 1]
        for i in range(1, n - 1):
            u[i] = new[i]
    return u


me = distribute.rank()
mode = sys.argv[1]
u0 = np.where(np.arange(20001) % 31 == 0, 1.0, 0.0)
ref = relax.py_func(u0.copy(), 20)
if mode == "threads" and me == 0:
    with loopscale.level("threads"):
        a = relax(u0.copy(), 20)
    sys.stdout.write(f"rank {me} alone same={np.array_equal(a, ref)}\n")
    sys.stdout.flush()
if mode == "map":
    got = distribute.map(lambda s: float(relax(u0.copy(), s).sum()), [20, 21, 22, 23])
    if me == 0:
        sys.stdout.write(f"rank {me} alone same={got[0] == float(ref.sum())}\n")
        sys.stdout.flush()
with loopscale.level("mpi"):
    b = relax(u0.copy(), 20)
sys.stdout.write(f"rank {me} together same={np.array_equal(b, ref)} "
                 f"moved={distribute.last_call_stats().get('bytes_moved', -1)}\n")
sys.stdout.flush()
'''


@pytest.mark.parametrize("mode", ["threads", "map"])
def test_a_time_loop_run_on_one_rank_first_then_on_all_takes_one_path(mpi_warm, mode) -> None:
    # rank 0 had probed and judged the inner loops alone; at the mpi level it took
    # another path through the driver than rank 1 (hung, or 'not in the same call')
    run = mpi_warm(ALONE_FIRST, 2, [mode], timeout=120)
    assert run.returncode == 0, run.describe()
    assert "rank 0 alone same=True" in run.stdout, run.describe()
    together = re.findall(r"^rank (\d) together same=True moved=(\d+)$", run.stdout, re.M)
    assert sorted(r for r, _ in together) == ["0", "1"], run.describe()
