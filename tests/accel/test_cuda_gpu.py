"""The CUDA-path checks of :mod:`test_cuda_sim`, on a real GPU.

Marked ``gpu``; skipped with the reason when ``numba.cuda.is_available()`` is
false in a child process without the simulator (this machine's driver or
device is missing).  The checks and tolerances are those of
``test_cuda_sim.run_checks``; here the launch configuration is the real
default (256 threads per block, 8 blocks per multiprocessor, capped by the
iterations), so the grid is larger than the corpus sizes and the tree
reduction spans 256 threads.
"""

from __future__ import annotations

import json

import pytest

from .test_cuda_sim import CHILD, ROOT, _names_for_params, parse_child

pytestmark = pytest.mark.gpu

_PROBE = """
import json
try:
    from numba import cuda
    ok = bool(cuda.is_available())
    reason = "" if ok else "numba.cuda.is_available() is False"
    if not ok:
        try:
            cuda.list_devices()[0]
        except Exception as exc:
            reason = " ".join(str(exc).split())
except Exception as exc:
    ok, reason = False, "%s: %s" % (type(exc).__name__, exc)
print("LOOPSCALE-GPU " + json.dumps([ok, reason]))
"""


@pytest.fixture(scope="module")
def gpu_results(run_python):  # noqa: ANN001, ANN201
    env = {"NUMBA_ENABLE_CUDASIM": "0"}
    proc = run_python(_PROBE, timeout=120, env=env, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LOOPSCALE-GPU ")),
                None)
    if line is None:
        pytest.skip(f"no real GPU: the probe failed ({proc.returncode}): {proc.stderr[-300:]}")
    ok, reason = json.loads(line[len("LOOPSCALE-GPU "):])
    if not ok:
        pytest.skip(f"no real GPU: {reason}")
    proc = run_python(CHILD.format(root=ROOT), timeout=600,
                      env={**env, "PYTHONWARNINGS": "ignore"})
    return parse_child(proc.stdout)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", _names_for_params())
def test_cuda_path_on_a_real_gpu(gpu_results, name: str) -> None:  # noqa: ANN001
    assert name in gpu_results, f"check {name} did not run"
    rec = gpu_results[name]
    assert rec["ok"], f"{name} failed on the GPU:\n{rec['error']}"

