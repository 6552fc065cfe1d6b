"""Tutorial 3 — from one process to MPI ranks, with data that stays distributed.

The same decorated function runs on a laptop and under ``mpirun``; what
changes is the launch command.  Two ways to use the ranks:

1. **Replicated mode**: every rank has the inputs (plain NumPy arrays); each
   runs its share of the loop, and every rank ends with the whole output, bit
   for bit the serial one.  Nothing in the script changes.
2. **Distributed mode**: ``distribute.scatter`` (or a loader such as
   ``distribute.load_npy``) gives each rank only its rows, as a ``DistArray``.
   Passed to the same decorated function, each rank computes its rows; the
   halo rows a stencil reads from its neighbours (``u[i - 1]``, ``u[i + 1]``)
   are exchanged automatically, outputs stay distributed, and reductions are
   combined across ranks in a fixed order: still bit for bit the serial
   result, for data no single machine could hold.

Run it::

    python tutorials/03_mpirun.py                       # one process
    loopscale run -n 4 tutorials/03_mpirun.py           # four ranks
    mpiexec -n 4 python tutorials/03_mpirun.py          # the same
    loopscale run -n 2 tutorials/03_mpirun.py --size small   # seconds (tests)

The kernel is one Jacobi step of the 2-D heat equation with its residual,
iterated until the residual is small.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import loopscale
from loopscale import accelerate, distribute

SIZES = {"small": (120, 100, 40), "medium": (1000, 1000, 200), "large": (4000, 4000, 500)}


@accelerate
def heat_step(u, out):
    """One Jacobi sweep over the interior of *u* into *out*; returns the residual."""
    n, m = u.shape
    err = 0.0
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            v = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])
            err += (v - u[i, j]) * (v - u[i, j])
            out[i, j] = v
    return err


def initial(rows: int, cols: int) -> np.ndarray:
    """A plate at 0 with its top edge held at 100."""
    g = np.zeros((rows, cols))
    g[0, :] = 100.0
    return g


def solve(u, v, steps: int) -> tuple[object, list[float]]:
    """*steps* sweeps, alternating the two arrays; the residual of each."""
    residuals = []
    for _ in range(steps):
        residuals.append(heat_step(u, v))
        u, v = v, u
    return u, residuals


def say(*args: object) -> None:
    if distribute.rank() == 0:
        print(*args, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    rows, cols, steps = SIZES[parser.parse_args(argv).size]
    rank, size = distribute.rank(), distribute.size()
    say(f"{size} rank(s); grid {rows} x {cols}, {steps} sweeps")
    if rank == 0:
        print(heat_step.explain())

    # 0. the reference: the serial level, one core, plain NumPy arrays
    with loopscale.level("serial"):
        t0 = time.perf_counter()
        ref, ref_res = solve(initial(rows, cols), initial(rows, cols), steps)
        t_serial = time.perf_counter() - t0

    # 1. replicated mode: the same call with NumPy arrays on every rank
    t0 = time.perf_counter()
    rep, rep_res = solve(initial(rows, cols), initial(rows, cols), steps)
    t_rep = time.perf_counter() - t0
    assert np.array_equal(rep, ref) and rep_res == ref_res
    say(f"replicated: every rank holds the whole grid; {t_rep:.3f} s "
        f"(serial {t_serial:.3f} s); results agree with serial bit for bit")

    # 2. distributed mode: each rank holds its rows only
    u = distribute.scatter(initial(rows, cols) if rank == 0 else None)
    v = u.copy()
    r0, r1 = u.local_rows
    print(f"  rank {rank}: rows {r0}..{r1 - 1}", flush=True)
    t0 = time.perf_counter()
    u, dist_res = solve(u, v, steps)
    t_dist = time.perf_counter() - t0
    moved = distribute.last_call_stats().get("bytes_moved", 0)
    final = distribute.gather(u)          # the whole grid on rank 0 only
    if rank == 0:
        assert np.array_equal(final, ref) and dist_res == ref_res
    say(f"distributed: {t_dist:.3f} s, {moved:,} bytes moved per sweep on rank 0; "
        f"residual {dist_res[0]:.4g} -> {dist_res[-1]:.4g}; distributed results agree with "
        "serial bit for bit")

    # 3. the data can start on disk: each rank reads only its rows of a .npy file
    folder = tempfile.mkdtemp() if rank == 0 else None
    if size > 1:
        folder = distribute.comm().bcast(folder, root=0)
    path = os.path.join(folder, "plate.npy")
    if rank == 0:
        np.save(path, initial(rows, cols))
    if size > 1:
        distribute.comm().Barrier()
    w = distribute.load_npy(path)
    w, disk_res = solve(w, w.copy(), steps)
    assert disk_res == ref_res
    say("from disk: each rank read its own rows of plate.npy; same residuals")
    say("\nDone: one function, replicated and distributed, equal to serial.")


if __name__ == "__main__":
    main()
