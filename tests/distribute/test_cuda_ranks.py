"""Under MPI with target cuda, each rank uses the GPU ``local_rank % device_count``.

The simulator has one device, so two ranks share it: both must use device 0,
warn once that they share it, and compute the right answer.  (On the GPU
machine the same code picks distinct devices when there are enough.)
"""

from __future__ import annotations

import pytest

from loopscale.accel._cuda import rank_device

SCRIPT = r'''
import warnings
import numpy as np
from loopscale import accelerate, distribute
from loopscale.accel import _cuda
from loopscale.errors import LoopscaleWarning


@accelerate(target="cuda")
def axpy(a, x, y, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]


x = np.arange(100.0)
y = np.ones(100)
out = np.zeros(100)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    axpy(2.0, x, y, out)
    axpy(3.0, x, y, out)
shared = [w for w in caught if issubclass(w.category, LoopscaleWarning)
          and "share 1 GPU" in str(w.message)]
assert np.array_equal(out, 3.0 * x + y)
print(f"rank {distribute.rank()} device {_cuda.select_rank_device()} warnings {len(shared)}",
      flush=True)
'''


@pytest.mark.mpi
def test_each_rank_picks_local_rank_modulo_devices_under_the_simulator(mpi):
    run = mpi(SCRIPT, n=2, timeout=180, env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert run.returncode == 0, run.describe()
    for r in (0, 1):
        assert f"rank {r} device 0 warnings 1" in run.stdout, run.describe()


@pytest.mark.parametrize("local, size, count, device, warns", [
    (0, 4, 4, 0, False), (3, 4, 4, 3, False), (5, 8, 4, 1, True), (1, 2, 1, 0, True),
    (2, None, 4, 2, False), (4, None, 4, 0, True),
])
def test_rank_device_is_local_rank_modulo_count(local, size, count, device, warns):
    got, warning = rank_device(local, size, count)
    assert got == device
    assert (warning is not None) == warns
    if warning:
        assert f"local rank {local}, GPU {device}" in warning
