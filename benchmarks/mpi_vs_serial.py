"""The ``mpi`` level under ``mpiexec -n P`` against the ``serial`` level and hand-written mpi4py.

Run from the repository root::

    python benchmarks/mpi_vs_serial.py               # P = 2, a minute or so
    python benchmarks/mpi_vs_serial.py --quick       # small sizes (a smoke test)
    python benchmarks/mpi_vs_serial.py --nprocs 4 --output docs/mpi-table.md

Four compute-bound kernels: n-body forces (2-D output), ten leapfrog time steps
of an n-body (a sequential loop around independent loops: each pass of its
force loop is dealt across the ranks; the hand-written twin deals the force
rows and gathers them each step), kernel density estimation (1-D output) and
Mandelbrot (uneven work per row, integer output).

* **serial**: this process, ``loopscale.level("serial")``, alone on the machine.
* **mpi**: ``mpiexec -n P python mpi_vs_serial.py --rank-side``; every rank
  calls the same decorated function at ``loopscale.level("mpi")``.
* **hand-written mpi4py**: the same ranks run a Numba kernel over the rows
  dealt round-robin (row ``i`` to rank ``i % P``, the balanced partition the
  issue measured at 2.03x on Mandelbrot), then one ``Allgatherv`` and an
  unpack into the full output on every rank: what a careful person writes by
  hand.  The overhead column is ``mpi / hand - 1``.

Each MPI sample is the slowest rank's time (the ranks start together after a
barrier); the table reports the median of the repeats.  Every rank checks
that its ``mpi`` result equals the serial one to the bit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numba
import numpy as np

import loopscale
from loopscale import accelerate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as _kernels  # noqa: E402

# the same n-body source the serial benchmark times (benchmarks/kernels.py)
nbody = accelerate(_kernels.nbody)


@accelerate
def kde(points, samples, h, out):
    n = samples.shape[0]
    norm = 1.0 / (n * h * math.sqrt(2.0 * math.pi))
    for i in range(points.shape[0]):
        s = 0.0
        for j in range(n):
            u = (points[i] - samples[j]) / h
            s += math.exp(-0.5 * u * u)
        out[i] = s * norm


@accelerate
def mandelbrot(xs, ys, maxiter, counts):
    for i in range(ys.shape[0]):
        ci = ys[i]
        for j in range(xs.shape[0]):
            cr = xs[j]
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                k += 1
            counts[i, j] = k


@accelerate
def nbody_steps(pos0, vel0, mass, steps, dt, out):
    """Leapfrog time steps: the step loop is sequential; its force and update
    loops are independent (each pass of them is a replicated call at the mpi
    level: see the user guide's "Parallel loops inside a sequential loop")."""
    n = pos0.shape[0]
    out[:] = pos0
    vel = vel0.copy()
    acc = np.zeros_like(pos0)
    for _s in range(steps):
        for i in range(n):
            ax = 0.0
            ay = 0.0
            for j in range(n):
                dx = out[j, 0] - out[i, 0]
                dy = out[j, 1] - out[i, 1]
                r2 = dx * dx + dy * dy + 1e-3
                inv = mass[j] / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
            acc[i, 0] = ax
            acc[i, 1] = ay
        for i in range(n):
            vel[i, 0] += dt * acc[i, 0]
            vel[i, 1] += dt * acc[i, 1]
            out[i, 0] += dt * vel[i, 0]
            out[i, 1] += dt * vel[i, 1]


# -- the hand-written versions: a Numba kernel over a list of rows -----------------------

@numba.njit(nogil=True)
def _nbody_rows(rows, pos, mass, eps, out):
    n = mass.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        xi = pos[i, 0]
        yi = pos[i, 1]
        ax = 0.0
        ay = 0.0
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            r2 = dx * dx + dy * dy + eps
            inv = mass[j] / (r2 * math.sqrt(r2))
            ax += dx * inv
            ay += dy * inv
        out[r, 0] = ax
        out[r, 1] = ay


@numba.njit(nogil=True)
def _leapfrog(pos, vel, acc, dt):
    for i in range(pos.shape[0]):
        vel[i, 0] += dt * acc[i, 0]
        vel[i, 1] += dt * acc[i, 1]
        pos[i, 0] += dt * vel[i, 0]
        pos[i, 1] += dt * vel[i, 1]


def _nbody_steps_hand(comm: Any, args: tuple[Any, ...]) -> None:
    """Each step: this rank's rows of the forces (round-robin), one Allgatherv of
    them, then the whole (cheap) update on every rank."""
    pos0, vel0, mass, steps, dt, out = args
    out[...] = pos0
    vel = vel0.copy()
    acc = np.zeros_like(pos0)
    for _ in range(steps):
        hand_written(comm, _nbody_rows, (out, mass, 1e-3, acc), acc)  # (forces, as above)
        _leapfrog(out, vel, acc, dt)


@numba.njit(nogil=True)
def _kde_rows(rows, points, samples, h, out):
    n = samples.shape[0]
    norm = 1.0 / (n * h * math.sqrt(2.0 * math.pi))
    for r in range(rows.shape[0]):
        i = rows[r]
        s = 0.0
        for j in range(n):
            u = (points[i] - samples[j]) / h
            s += math.exp(-0.5 * u * u)
        out[r] = s * norm


@numba.njit(nogil=True)
def _mandelbrot_rows(rows, xs, ys, maxiter, out):
    for r in range(rows.shape[0]):
        ci = ys[rows[r]]
        for j in range(xs.shape[0]):
            cr = xs[j]
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                k += 1
            out[r, j] = k


def make(name: str, quick: bool) -> tuple[Any, tuple[Any, ...], Any, np.ndarray]:
    """``(kernel, args, rows kernel, output)`` for *name* (output is an argument)."""
    rng = np.random.default_rng(7)
    if name == "nbody":
        n = 600 if quick else 4000
        out = np.zeros((n, 2))
        return nbody, (rng.uniform(-1, 1, (n, 2)), rng.uniform(0.5, 1.5, n), 1e-3, out), \
            _nbody_rows, out
    if name == "nbody_steps":
        n = 300 if quick else 1500
        out = np.zeros((n, 2))
        return nbody_steps, (rng.uniform(-1, 1, (n, 2)), np.zeros((n, 2)),
                             rng.uniform(0.5, 1.5, n), 10, 1e-4, out), None, out
    if name == "kde":
        n = 600 if quick else 4000
        out = np.zeros(n)
        return kde, (np.linspace(-4, 4, n), rng.standard_normal(n), 0.2, out), _kde_rows, out
    if name == "mandelbrot":
        w = 200 if quick else 1000
        out = np.zeros(((3 * w) // 4, w), dtype=np.int64)
        return mandelbrot, (np.linspace(-2.0, 0.6, w), np.linspace(-1.2, 1.2, (3 * w) // 4),
                            200, out), _mandelbrot_rows, out
    raise ValueError(name)


NAMES = ("nbody", "nbody_steps", "kde", "mandelbrot")


def hand_written(comm: Any, rows_kernel: Any, args: tuple[Any, ...], out: np.ndarray) -> None:
    """Round-robin rows, one Allgatherv of bytes, unpack: the hand-written mpi4py program."""
    from mpi4py import MPI

    size, me = comm.Get_size(), comm.Get_rank()
    n = out.shape[0]
    rowbytes = out.itemsize * (out.size // max(1, n))
    mine = np.arange(me, n, size)
    local = np.empty((mine.size,) + out.shape[1:], out.dtype)
    rows_kernel(mine, *args[:-1], local)
    counts = np.array([len(range(r, n, size)) * rowbytes for r in range(size)])
    displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
    recv = np.empty(int(counts.sum()), np.uint8)
    comm.Allgatherv([local.view(np.uint8).ravel(), MPI.BYTE],
                    [recv, (counts, displs), MPI.BYTE])
    for r in range(size):
        seg = recv[displs[r]:displs[r] + counts[r]].view(out.dtype)
        out[r::size] = seg.reshape((-1,) + out.shape[1:])


def _hand_program(comm: Any, rows_kernel: Any, args: tuple[Any, ...],
                  out: np.ndarray) -> Any:
    """The hand-written mpi4py program for a kernel, as a function of nothing."""
    if rows_kernel is None:
        return lambda: _nbody_steps_hand(comm, args)
    return lambda: hand_written(comm, rows_kernel, args, out)


def rank_side(quick: bool, repeat: int, path: str) -> None:
    from loopscale import distribute

    comm = distribute.comm()
    me = comm.Get_rank()
    report: dict[str, Any] = {}
    for name in NAMES:
        fn, args, rows_kernel, out = make(name, quick)
        with loopscale.level("serial"):
            fn(*args)
        want = out.copy()
        times: dict[str, list[float]] = {"mpi": [], "hand": []}
        with loopscale.level("mpi"):
            fn(*args)  # compile, warm
        hand = _hand_program(comm, rows_kernel, args, out)
        hand()
        # (the hand kernel is numba.njit: its exp is the C library's, loopscale's
        # glibc's vector exp, 1-3 units in the last place apart; see user_guide.md)
        assert np.allclose(out, want, rtol=1e-13, atol=0), f"hand-written {name} differs"
        for _ in range(repeat):
            for kind in ("mpi", "hand"):
                out[...] = 0
                comm.Barrier()
                t0 = time.perf_counter()
                if kind == "mpi":
                    with loopscale.level("mpi"):
                        fn(*args)
                else:
                    hand()
                dt = comm.allreduce(time.perf_counter() - t0, op=_max())
                times[kind].append(dt)
                if kind == "mpi" and out.tobytes() != want.tobytes():
                    raise SystemExit(f"rank {me}: the mpi result of {name} differs from serial")
        report[name] = {k: statistics.median(v) for k, v in times.items()}
    if me == 0:
        with open(path, "w") as fh:
            json.dump(report, fh)


def _max() -> Any:
    from mpi4py import MPI

    return MPI.MAX


def serial_side(quick: bool, repeat: int) -> dict[str, float]:
    result = {}
    for name in NAMES:
        fn, args, _, _ = make(name, quick)
        with loopscale.level("serial"):
            fn(*args)
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn(*args)
                samples.append(time.perf_counter() - t0)
        result[name] = statistics.median(samples)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", help="also write the table (Markdown) here")
    parser.add_argument("--rank-side", metavar="JSON", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.rank_side:
        rank_side(opts.quick, opts.repeat, opts.rank_side)
        return 0
    from loopscale.distribute._launch import find_launcher

    serial = serial_side(opts.quick, opts.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mpi.json")
        cmd = [*find_launcher(), "-n", str(opts.nprocs), sys.executable, __file__,
               "--rank-side", path, "--repeat", str(opts.repeat)] + (
                   ["--quick"] if opts.quick else [])
        subprocess.run(cmd, check=True, timeout=1200)
        with open(path) as fh:
            mpi = json.load(fh)
    lines = [f"mpiexec -n {opts.nprocs} on {os.cpu_count()} cores "
             f"(usable: {loopscale.config.usable_cores()}); median of {opts.repeat}",
             "",
             "| kernel | serial s | mpi s | mpi speed-up | hand mpi4py s | hand speed-up "
             "| mpi overhead vs hand |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in NAMES:
        s, m, h = serial[name], mpi[name]["mpi"], mpi[name]["hand"]
        lines.append(f"| {name} | {s:.4f} | {m:.4f} | {s / m:.2f}x | {h:.4f} | {s / h:.2f}x "
                     f"| {100 * (m / h - 1):+.1f}% |")
    table = "\n".join(lines)
    print(table)
    if opts.output:
        with open(opts.output, "w") as fh:
            fh.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
