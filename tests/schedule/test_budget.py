"""One thread budget for BLAS/OpenMP pools across regions, executors, graphs and processes.

BLAS pools are process-wide, so whatever runs work on several threads at once
lowers them to each worker's share of the usable cores while it has work, and
the last one to finish restores them.  Each test first sets the pools to all
usable cores, so that a limit is visible, and puts them back afterwards.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from loopscale import schedule
from loopscale.config import usable_cores
from loopscale.schedule._budget import BLAS_BUDGET, _per_thread, blas_limit, prepare_numba

pytestmark = pytest.mark.timeout(120)

CORES = usable_cores()


def _threads() -> list[int]:
    """Every pool's size, as the calling thread sees it."""
    return [lib.num_threads for lib in ThreadpoolController().lib_controllers]


def _shared_threads() -> list[int]:
    """The process-wide pools' sizes (OpenMP's size is a per-thread setting)."""
    return [lib.num_threads for lib in ThreadpoolController().lib_controllers
            if not _per_thread(lib)]


@pytest.fixture
def full_pools():
    """BLAS pools at the usable core count (at least 2), restored afterwards."""
    np.dot(np.ones((4, 4)), np.ones((4, 4)))  # make sure numpy's BLAS is loaded
    prepare_numba()  # and Numba's threading layer (an OpenMP pool), as workers do
    ctrl = ThreadpoolController()
    if not ctrl.lib_controllers:
        pytest.skip("no BLAS/OpenMP library is loaded in this process")
    with ctrl.limit(limits=max(2, CORES)):
        before = _threads()
        if not _shared_threads() or max(_shared_threads()) < 2:
            pytest.skip("no process-wide BLAS pool here can run more than one thread")
        yield before
        assert not BLAS_BUDGET.active
        assert _threads() == before


def test_the_budget_is_counted_and_the_last_user_restores(full_pools):
    share = max(1, CORES // 2)
    a = BLAS_BUDGET.enter(2)
    assert max(_shared_threads()) <= share
    b = BLAS_BUDGET.enter(2)
    BLAS_BUDGET.exit(a)
    assert max(_shared_threads()) <= share  # one user is still counted in
    with blas_limit(2 * max(2, CORES)):  # a smaller share, nested
        assert max(_shared_threads()) == 1
    assert max(_shared_threads()) <= share
    BLAS_BUDGET.exit(b)
    assert _threads() == full_pools
    assert BLAS_BUDGET.enter(1) is None  # one thread needs no limit
    assert _threads() == full_pools


def test_executor_tasks_see_their_share_until_shutdown_restores_the_pools(full_pools):
    share = max(1, CORES // 2)
    seen = []
    gate = threading.Barrier(2, timeout=30)

    def task():
        gate.wait()  # both workers busy at once
        seen.append(max(_threads()))
        return float(np.dot(np.ones(50), np.ones(50)))

    ex = schedule.Executor(max_workers=2)
    assert _threads() == full_pools  # no work yet: nothing limited
    futures = [ex.submit(task) for _ in range(2)]
    assert [f.result(timeout=30) for f in futures] == [50.0, 50.0]
    assert seen == [share, share]
    assert max(_shared_threads()) <= share  # the caller's BLAS calls share the cores too
    out = list(ex.map(lambda i: max(_threads()), range(20), chunksize=3))
    assert set(out) == {share}
    ex.shutdown()
    assert not BLAS_BUDGET.active
    assert _threads() == full_pools


def test_two_executors_and_a_region_share_one_limit(full_pools):
    share = max(1, CORES // 2)
    with schedule.Executor(max_workers=2) as a:
        a.submit(int).result(timeout=30)
        with schedule.Executor(max_workers=2) as b:
            b.submit(int).result(timeout=30)
            with blas_limit(2):
                assert max(_shared_threads()) <= share
        assert max(_shared_threads()) <= share  # a is still open
    assert _threads() == full_pools


def test_a_one_worker_executor_leaves_the_pools_alone(full_pools):
    with schedule.Executor(max_workers=1) as ex:
        assert ex.submit(lambda: _threads()).result(timeout=30) == full_pools


def test_graph_tasks_run_with_their_share(full_pools):
    share = max(1, CORES // 2)
    g = schedule.TaskGraph()
    a = g.add("a", lambda: max(_threads()))
    b = g.add("b", lambda: max(_threads()))
    g.add("c", lambda x, y: (x, y), a, b)
    assert g.run(max_workers=2)["c"] == (share, share)
    assert _threads() == full_pools


def _child_limits():
    import os

    return max(_threads()), os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get(
        "OMP_NUM_THREADS")


def test_process_workers_limit_their_own_pools(full_pools):
    share = max(1, CORES // 2)
    with schedule.ProcessExecutor(max_workers=2) as ex:
        threads, openblas, omp = ex.submit(_child_limits).result(timeout=60)
    assert threads <= share
    assert openblas == str(share) and omp == str(share)
    assert _threads() == full_pools  # the parent's pools are untouched
