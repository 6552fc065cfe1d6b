"""The CUDA path against the device's copy bandwidth, the threads level, a
hand-written ``numba.cuda`` kernel and CuPy.  Needs an NVIDIA GPU.

Run from the repository root on the GPU machine::

    python benchmarks/cuda_vs_threads.py                  # full sizes (a few minutes)
    python benchmarks/cuda_vs_threads.py --quick          # small sizes (a smoke test)
    python benchmarks/cuda_vs_threads.py --output cuda.md --workers 16

Three measurements, each the median of ``--repeat`` runs after a warm-up
(compilation excluded), with the data already on the device unless said:

* **streaming**: ``out[i] = a[i] + s * b[i]`` on 2**28 float32 (``--stream-log2``),
  loopscale's kernel time and whole-call time, against a device-to-device copy
  of the same array in the same run.  Bandwidth counts 3 arrays for the triad
  and 2 (read + write) for the copy.  Target: triad >= 80% of copy bandwidth.
* **n-body**: forces for n = 65,536 float32 bodies: the ``threads`` level on
  the host's cores (host arrays), loopscale's CUDA path (device arrays), and a
  hand-written ``numba.cuda`` kernel with the same arithmetic (one thread per
  body, 256 threads per block).  Targets: >= 50x the threads level, within 10%
  of the hand-written kernel.
* **elementwise**: ``out[i] = sqrt(x[i]*x[i] + y[i]*y[i]) * c`` on 2**26 float32,
  against the CuPy expression ``cp.sqrt(x * x + y * y) * c`` (skipped without
  CuPy).  Target: no slower than CuPy.

The script calls ``loopscale.accel._cuda.call_cuda`` directly (what
``@accelerate(target="cuda")`` calls) so that it can time the parts apart.
Without a usable GPU the script prints why and exits with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import cuda  # importing it starts no driver; main() checks first

import loopscale
from loopscale import accelerate
from loopscale.accel import _cuda

# ---------------------------------------------------------------------------
# kernels (plain Python; the loopscale versions are decorated in main)


def triad(a, b, s, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + s * b[i]


def hypot_scale(x, y, c, out):
    for i in range(x.shape[0]):
        out[i] = math.sqrt(x[i] * x[i] + y[i] * y[i]) * c


def nbody_forces(pos, mass, eps2, acc):
    n = pos.shape[0]
    for i in range(n):
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        ax = np.float32(0.0)
        ay = np.float32(0.0)
        az = np.float32(0.0)
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            dz = pos[j, 2] - zi
            r2 = dx * dx + dy * dy + dz * dz + eps2
            inv = np.float32(1.0) / math.sqrt(r2)
            w = mass[j] * inv * inv * inv
            ax += w * dx
            ay += w * dy
            az += w * dz
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az


def nbody_hand(pos, mass, eps2, acc):
    """The hand-written numba.cuda kernel: one thread per body (jitted in bench_nbody)."""
    i = cuda.grid(1)
    n = pos.shape[0]
    if i < n:
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        ax = np.float32(0.0)
        ay = np.float32(0.0)
        az = np.float32(0.0)
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            dz = pos[j, 2] - zi
            r2 = dx * dx + dy * dy + dz * dz + eps2
            inv = np.float32(1.0) / math.sqrt(r2)
            w = mass[j] * inv * inv * inv
            ax += w * dx
            ay += w * dy
            az += w * dz
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az


# ---------------------------------------------------------------------------
# timing


def _median_time(fn: Callable[[], Any], sync: Callable[[], None], repeat: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _kernel_time(acc: Any, args: tuple[Any, ...], repeat: int) -> tuple[float, float]:
    """(median kernel seconds, median whole-call seconds) of loopscale's CUDA path."""
    kernel, total = [], []
    _cuda.call_cuda(acc, args, {})  # compile
    for _ in range(repeat):
        t0 = time.perf_counter()
        _cuda.call_cuda(acc, args, {})
        total.append(time.perf_counter() - t0)
        kernel.append(acc.last_cuda_timings["kernel_s"])
    return statistics.median(kernel), statistics.median(total)


# ---------------------------------------------------------------------------
# the three measurements


def bench_stream(log2n: int, repeat: int) -> list[str]:
    n = 1 << log2n
    a = cuda.to_device(np.full(n, 1.0, np.float32))
    b = cuda.to_device(np.full(n, 2.0, np.float32))
    out = cuda.device_array(n, np.float32)
    dst = cuda.device_array(n, np.float32)
    copy_s = _median_time(lambda: dst.copy_to_device(a), cuda.synchronize, repeat)
    acc = accelerate(triad)
    kern_s, call_s = _kernel_time(acc, (a, b, np.float32(3.0), out), repeat)
    assert float(out[n - 1]) == 7.0
    copy_bw = 2 * n * 4 / copy_s / 1e9
    triad_bw = 3 * n * 4 / kern_s / 1e9
    call_bw = 3 * n * 4 / call_s / 1e9
    return [
        f"| streaming triad, n = 2^{log2n} float32 | device-to-device copy: {copy_bw:.0f} GB/s "
        f"| loopscale kernel: {triad_bw:.0f} GB/s ({triad_bw / copy_bw:.0%} of copy; whole call "
        f"{call_bw:.0f} GB/s) | target >= 80% |",
    ]


def bench_nbody(n: int, workers: int, repeat: int) -> list[str]:
    rng = np.random.default_rng(0)
    pos = rng.standard_normal((n, 3)).astype(np.float32)
    mass = rng.uniform(0.5, 1.5, n).astype(np.float32)
    eps2 = np.float32(1e-3)
    host_acc = np.zeros_like(pos)
    acc = accelerate(nbody_forces)
    with loopscale.level("threads", max_workers=workers):
        threads_s = _median_time(lambda: acc(pos, mass, eps2, host_acc), lambda: None,
                                 max(1, repeat // 3))
    dpos, dmass = cuda.to_device(pos), cuda.to_device(mass)
    dacc = cuda.device_array_like(pos)
    kern_s, call_s = _kernel_time(acc, (dpos, dmass, eps2, dacc), repeat)
    got = dacc.copy_to_host()
    hand = cuda.jit(nbody_hand)
    dacc2 = cuda.device_array_like(pos)
    tpb = 256
    hand_s = _median_time(lambda: hand[(n + tpb - 1) // tpb, tpb](dpos, dmass, eps2, dacc2),
                          cuda.synchronize, repeat)
    np.testing.assert_allclose(got, dacc2.copy_to_host(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got, host_acc, rtol=1e-2, atol=1e-2)
    return [
        f"| n-body forces, n = {n:,} float32 | threads level ({workers} workers): "
        f"{threads_s * 1e3:.1f} ms | loopscale cuda: kernel {kern_s * 1e3:.2f} ms, call "
        f"{call_s * 1e3:.2f} ms ({threads_s / call_s:.0f}x threads) | hand-written numba.cuda: "
        f"{hand_s * 1e3:.2f} ms (loopscale/hand = {call_s / hand_s:.2f}) | targets >= 50x, "
        "<= 1.10 |",
    ]


def bench_elementwise(log2n: int, repeat: int) -> list[str]:
    try:
        import cupy as cp
    except ImportError:
        return ["| elementwise vs CuPy | skipped: CuPy is not installed "
                "(pip install cupy-cuda12x) | | |"]
    n = 1 << log2n
    x = cp.random.random(n, dtype=cp.float32)
    y = cp.random.random(n, dtype=cp.float32)
    c = np.float32(0.5)
    out = cp.empty_like(x)

    def sync() -> None:
        cp.cuda.Device().synchronize()

    cupy_s = _median_time(lambda: cp.sqrt(x * x + y * y) * c, sync, repeat)
    acc = accelerate(hypot_scale)
    kern_s, call_s = _kernel_time(acc, (x, y, c, out), repeat)
    cp.testing.assert_allclose(out, cp.sqrt(x * x + y * y) * c, rtol=1e-6)
    return [
        f"| elementwise hypot, n = 2^{log2n} float32 | CuPy expression: {cupy_s * 1e3:.3f} ms "
        f"| loopscale: kernel {kern_s * 1e3:.3f} ms, call {call_s * 1e3:.3f} ms "
        f"(call/CuPy = {call_s / cupy_s:.2f}) | target <= 1.0 |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--stream-log2", type=int, default=28)
    parser.add_argument("--nbody", type=int, default=65536)
    parser.add_argument("--output", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)

    ok, reason = _cuda.cuda_status()
    if not ok or _cuda._simulator():
        why = reason if not ok else "NUMBA_ENABLE_CUDASIM=1 (the simulator cannot be timed)"
        print(f"cuda_vs_threads: no usable GPU, nothing measured: {why}", file=sys.stderr)
        return 2
    if args.quick:
        args.stream_log2, args.nbody, args.repeat = 20, 4096, 3
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    lines = [
        f"# CUDA path benchmarks ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Device: {name} (compute capability {'.'.join(map(str, dev.compute_capability))}, "
        f"{dev.MULTIPROCESSOR_COUNT} SMs); host: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; loopscale {loopscale.__version__}",
        "",
        "| measurement | reference | loopscale | target |",
        "| --- | --- | --- | --- |",
    ]
    lines += bench_stream(args.stream_log2, args.repeat)
    lines += bench_nbody(args.nbody, args.workers, args.repeat)
    lines += bench_elementwise(args.stream_log2 - 2, args.repeat)
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
