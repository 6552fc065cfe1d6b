"""Level ``auto`` under mpiexec: every rank takes the same path, every call.

At ``auto``, a parallel loop whose run is short goes back to serial code on a
single process; under MPI that decision would be taken per rank from its own
timings, so one rank could skip a collective the others wait in.  Here a short
loop is called many times under ``mpiexec -n 2`` at the default level, and the
job must finish (the launch has a hard timeout) with every rank holding the
serial result.
"""

from __future__ import annotations

import re

import pytest

SCRIPT = r'''
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


@accelerate
def big(x, out):
    for i in range(x.shape[0]):
        v = x[i]
        for k in range(200):
            v = v * 0.999 + 0.001
        out[i] = v


x = np.linspace(0.0, 1.0, 257)
with loopscale.level("serial"):
    expected = total(x)
    ref = np.empty(20_000)
    big(np.linspace(0.0, 1.0, 20_000), ref)
ok = True
for rep in range(300):            # short calls: far under the auto threshold
    ok &= total(x) == expected
out = np.empty(20_000)
for rep in range(5):              # and longer ones in between
    big(np.linspace(0.0, 1.0, 20_000), out)
    ok &= bool(np.array_equal(out, ref))
    ok &= total(x) == expected
print(f"rank {distribute.rank()}/{distribute.size()}: {'OK' if ok else 'WRONG'}", flush=True)
'''


@pytest.mark.timeout(180)
def test_auto_level_under_mpiexec_never_diverges_between_ranks(mpi) -> None:
    run = mpi(SCRIPT, 2)
    assert run.returncode == 0, run.describe()
    for r in range(2):
        assert f"rank {r}/2: OK" in run.stdout, run.describe()


STATS = r'''
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def twice(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = 2.0 * x[i]
    return out


assert distribute.last_call_stats() == {}
with loopscale.level("mpi"):
    twice(np.arange(1000.0))
s = distribute.last_call_stats()
print(f"rank {distribute.rank()}: {s['ranks']} {s['bytes_moved']}", flush=True)
'''


@pytest.mark.timeout(180)
def test_last_call_stats_report_the_bytes_each_rank_moved(mpi) -> None:
    run = mpi(STATS, 2)
    assert run.returncode == 0, run.describe()
    # the two ranks' lines may arrive interleaved on one line of the launcher's output
    moved = [int(b) for _, _, b in re.findall(r"rank (\d+): (\d+) (\d+)", run.stdout)]
    assert len(moved) == 2, run.describe()
    # every rank sends its half of the 1,000 float64 rows and receives the other
    # half: 8,000 bytes of rows in all, plus a few bytes of status per segment
    for b in moved:
        assert 8_000 <= b < 8_200, run.describe()


WORKER = r'''
import os
import numpy as np
import loopscale
from loopscale import accelerate, distribute
from loopscale.schedule import ProcessExecutor


@accelerate
def squares(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * x[i] + 1.0


def task(n):
    x = np.arange(n, dtype=np.float64)
    out = np.empty(n)
    with loopscale.level("auto"):
        squares(x, out)
    from mpi4py import MPI  # a job of its own, not a rank of the launcher's
    return float(out.sum()), MPI.COMM_WORLD.Get_size(), "PMI_FD" in os.environ


if __name__ == "__main__":
    with ProcessExecutor(max_workers=1) as ex:
        total, size, pmi = ex.submit(task, 2_000_000).result(timeout=120)
    x = np.arange(2_000_000, dtype=np.float64)
    ok = total == float((x * x + 1.0).sum()) and size == 1 and not pmi
    print(f"rank {distribute.rank()}: {'OK' if ok else (total, size, pmi)}", flush=True)
'''


@pytest.mark.timeout(240)
def test_a_process_executor_worker_of_a_rank_is_not_a_rank(mpi) -> None:
    # the worker inherits the launcher's environment: taken for a rank, it picked
    # the mpi level and its MPI_Init wrote to MPICH's PMI_FD (another file in the
    # worker) and aborted, breaking the executor
    run = mpi(WORKER, 2)
    assert run.returncode == 0, run.describe()
    for r in range(2):
        assert f"rank {r}: OK" in run.stdout, run.describe()
