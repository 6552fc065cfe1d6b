"""Scripts as a scientist writes them, under a real mpiexec: each checks its results
against the ``serial`` level on the same data, on every rank."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.mpi


# A parameter sweep with distribute.map whose tasks call an accelerated function,
# run inside a `level("mpi")` block (or with LOOPSCALE_LEVEL=mpi): the level in
# force around the farm is not one asked for inside a task, so the tasks run on
# their rank alone.  A level("mpi") entered inside a task is still refused.
FARM_UNDER_MPI_LEVEL = r'''
import numpy as np
import loopscale
from loopscale import accelerate, distribute
from loopscale.errors import DistributionError, WorkerError


@accelerate
def energy(x, k):
    s = 0.0
    for i in range(x.shape[0]):
        s += np.sin(x[i] * k) ** 2
    return s


x = np.linspace(0.0, 1.0, 500)
with loopscale.level("serial"):
    expected = [energy(x, k) for k in range(9)]
with loopscale.level("mpi", max_workers=1):
    swept = distribute.map(lambda k: energy(x, k), range(9), results="all")
    whole = energy(x, 4.0)            # the replicated call still runs at level mpi
assert swept == expected, (swept, expected)
assert whole == expected[4]
swept = distribute.map(lambda k: energy(x, k), range(9), results="all")  # the env's level
assert swept == expected


def asks_inside(k):
    with loopscale.level("mpi"):
        return energy(x, k)


try:
    distribute.map(asks_inside, range(9))
except (DistributionError, WorkerError) as exc:
    assert "inside a task of distribute.map()" in str(exc), exc
else:
    raise AssertionError("level('mpi') inside a task was not refused")
print("farm under mpi level ok", flush=True)
'''


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("env_level", [None, "mpi"])
def test_a_farm_inside_an_mpi_level_runs_its_tasks_alone(mpi_warm, ranks, env_level):
    env = {"LOOPSCALE_MPI_TIMEOUT": "30"}
    if env_level is not None:
        env["LOOPSCALE_LEVEL"] = env_level
    run = mpi_warm(FARM_UNDER_MPI_LEVEL, n=ranks, env=env, timeout=120)
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("farm under mpi level ok") == ranks, run.describe()


# A function used inside distribute.map tasks, then called by every rank at the
# default level.  Inside a task `auto` cannot pick mpi; the fast path it chose
# there (serial, or timed threads) outlived the farm, so the ranks that had run
# a task skipped the next call's collectives while the others waited in them.
# With 2 (P - 1) items and P ranks the root runs none of the tasks.
FARM_THEN_CALL = r'''
import numpy as np
from loopscale import accelerate, distribute


@accelerate
def energy(x, k):
    s = 0.0
    for i in range(x.shape[0]):
        s += k * x[i] * x[i]
    return s


x = np.linspace(0.0, 1.0, 100)
first = energy(x, 1.0)
res = distribute.map(lambda k: energy(x, k), range(2 * (distribute.size() - 1)),
                     results="all")
for step in range(5):
    e = energy(x, 2.0 + step)
    assert e == (2.0 + step) * first, (e, first)
assert res[1] == first
print("farm then call ok", flush=True)
'''


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_function_used_in_farm_tasks_still_joins_the_collective_calls(mpi_warm, ranks):
    run = mpi_warm(FARM_THEN_CALL, n=ranks, env={"LOOPSCALE_MPI_TIMEOUT": "20"}, timeout=120)
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("farm then call ok") == ranks, run.describe()


# Sums at any index into arrays the caller passes in (a histogram, a charge
# deposit, a particle-in-cell time loop), and into one from a distributed
# array's rows: every rank ends with what the loop gives in order.
SCATTER_INTO_ARGUMENTS = r'''
import sys
import warnings

import numpy as np
import loopscale
from loopscale import accelerate, distribute


def count(x, counts):
    m = counts.shape[0]
    for i in range(x.shape[0]):
        counts[int(x[i] * m)] += 1


def deposit(idx, q, rho):
    for i in range(idx.shape[0]):
        rho[idx[i]] += q[i]


def pic(pos, q, ncell, steps):
    for _ in range(steps):
        rho = np.zeros(ncell)
        for p in range(pos.shape[0]):
            rho[int(pos[p]) % ncell] += q[p]
        for p in range(pos.shape[0]):
            pos[p] = (pos[p] + 0.1 * rho[int(pos[p]) % ncell]) % ncell
    return pos


warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
n = 30_011
x, idx, q = rng.random(n), rng.integers(0, 50, n), rng.random(n) - 0.3
report = []
want = np.zeros(64, np.int64)
count(x, want)
got = np.zeros(64, np.int64)
with loopscale.level("mpi"):
    accelerate(count)(x, got)
report.append(np.array_equal(got, want))
for h0 in (np.zeros(50), np.full(50, -3, np.int64)):  # (the integer one: in order)
    w, g = h0.copy(), h0.copy()
    deposit(idx, q, w)
    with loopscale.level("mpi"):
        accelerate(deposit)(idx, q, g)
    report.append(np.allclose(g, w, rtol=1e-12) and g.dtype == w.dtype)
pos = rng.random(3000) * 32
want_pos = pic(pos.copy(), q[:3000], 32, 3)
with loopscale.level("mpi"):
    got_pos = accelerate(pic)(pos.copy(), q[:3000], 32, 3)
report.append(np.allclose(got_pos, want_pos, rtol=1e-12))
xd = distribute.scatter(x if distribute.rank() == 0 else None)
got = np.zeros(64, np.int64)
accelerate(count)(xd, got)
report.append(np.array_equal(got, want))
sys.stdout.write(f"rank {distribute.rank()} scatter {report}\n")
sys.stdout.flush()
'''


@pytest.mark.parametrize("ranks", [2, 3])
def test_sums_at_any_index_into_arguments_give_the_loops_answer_on_every_rank(mpi_warm, ranks):
    run = mpi_warm(SCATTER_INTO_ARGUMENTS, n=ranks, env={"LOOPSCALE_MPI_TIMEOUT": "30"},
                   timeout=180)
    assert run.returncode == 0, run.describe()
    for r in range(ranks):
        assert f"rank {r} scatter [True, True, True, True, True]" in run.stdout, run.describe()
