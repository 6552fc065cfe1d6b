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
