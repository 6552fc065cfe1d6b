"""Distributed mode: a 2-D heat-equation stencil on DistArrays, against serial and mpi4py by hand.

Run from the repository root::

    python benchmarks/mpi_distributed.py                 # P = 2, under a minute
    python benchmarks/mpi_distributed.py --quick         # small grid (a smoke test)
    python benchmarks/mpi_distributed.py --nprocs 4 --rows 4000
    python benchmarks/mpi_distributed.py --weak 1 2 4    # rows per rank fixed

The kernel is one Jacobi step of the heat equation with a residual (a
reduction), iterated over many steps; the grid's rows are partitioned.

* **serial**: this process alone, plain NumPy arrays, ``loopscale.level("serial")``.
* **loopscale**: ``mpiexec -n P``; the grid is ``distribute.scatter``-ed once
  and the same decorated function is called with DistArrays every step (halo
  rows exchanged in place, residual partials combined in block order).
* **hand-written mpi4py**: the same ranks hold their rows plus one ghost row
  each side, exchange them with ``Sendrecv``, run a Numba kernel over their
  rows and ``Allreduce`` the residual: what a careful person writes by hand.

Each MPI sample is the slowest rank's time for all steps (after a barrier);
the table reports the median of the repeats.  Rank 0 checks that the gathered
loopscale grid and residual equal the serial ones to the bit.  Memory: arrays
are allocated before timing and reused; nothing is allocated in the timed
loop but the kernels' few temporaries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

import loopscale
from loopscale import accelerate


@accelerate
def heat_step(u, out):
    n, m = u.shape
    err = 0.0
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            v = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])
            err += (v - u[i, j]) * (v - u[i, j])
            out[i, j] = v
    return err


@accelerate
def heat_step_plain(u, out):
    n, m = u.shape
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])


@numba.njit(nogil=True, cache=False)
def _hand_plain(ext, out, first, last):
    m = ext.shape[1]
    for i in range(first, last):
        for j in range(1, m - 1):
            out[i, j] = 0.25 * (ext[i - 1, j] + ext[i + 1, j] + ext[i, j - 1] + ext[i, j + 1])
    return 0.0


@numba.njit(nogil=True, cache=False)
def _hand_step(ext, out, first, last):
    """Rows 1..len-2 of *ext* (a block with one ghost row each side) into *out*."""
    m = ext.shape[1]
    err = 0.0
    for i in range(first, last):
        for j in range(1, m - 1):
            v = 0.25 * (ext[i - 1, j] + ext[i + 1, j] + ext[i, j - 1] + ext[i, j + 1])
            err += (v - ext[i, j]) * (v - ext[i, j])
            out[i, j] = v
    return err


def _grid(rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    g = rng.random((rows, cols))
    g[0, :] = 1.0
    return g


def _use_plain() -> None:
    global heat_step, _hand_step
    heat_step, _hand_step = heat_step_plain, _hand_plain


def rank_side(rows: int, cols: int, steps: int, repeats: int, out_path: str) -> None:
    from loopscale import distribute

    if os.environ.get("LS_BENCH_PLAIN"):  # --no-residual: the stencil without a reduction
        _use_plain()

    comm = distribute.comm()
    mpi = distribute._mpi.mpi_module()
    me, size = comm.Get_rank(), comm.Get_size()
    g = _grid(rows, cols) if me == 0 else None
    # loopscale: scatter once, then step with DistArrays
    a = distribute.scatter(g)
    b = a.copy()
    heat_step(a, b)  # compile and warm
    # by hand: own rows plus a ghost row each side
    r0, r1 = a.local_rows
    full = _grid(rows, cols)
    ext_a = np.zeros((r1 - r0 + 2, cols))
    ext_a[1:-1] = full[r0:r1]
    ext_b = ext_a.copy()
    first = 2 if r0 == 0 else 1
    last = (r1 - r0) if r1 == rows else (r1 - r0 + 1)
    up, down = (me - 1 if me > 0 else mpi.PROC_NULL), (me + 1 if me < size - 1 else mpi.PROC_NULL)

    def hand(x: np.ndarray, y: np.ndarray) -> float:
        comm.Sendrecv(x[1], dest=up, recvbuf=x[-1], source=down)
        comm.Sendrecv(x[-2], dest=down, recvbuf=x[0], source=up)
        e = _hand_step(x, y, first, last)
        return comm.allreduce(e) if _hand_step is not _hand_plain else 0.0

    hand(ext_a, ext_b)
    times: dict[str, list[float]] = {"loopscale": [], "hand": []}
    bytes_per_step = 0
    for _ in range(repeats):
        for name in ("loopscale", "hand"):
            comm.Barrier()
            t0 = time.perf_counter()
            if name == "loopscale":
                x, y = a, b
                for _ in range(steps):
                    heat_step(x, y)
                    x, y = y, x
                bytes_per_step = distribute.last_call_stats()["bytes_moved"]
            else:
                x, y = ext_a, ext_b
                for _ in range(steps):
                    hand(x, y)
                    x, y = y, x
            dt = comm.allreduce(time.perf_counter() - t0, op=mpi.MAX)
            times[name].append(dt)
    # correctness: a fresh run of `steps` steps against the serial level on rank 0
    a2 = distribute.scatter(g)
    b2 = a2.copy()
    errs = []
    for _ in range(steps):
        errs.append(heat_step(a2, b2))
        a2, b2 = b2, a2
    got = distribute.gather(a2)
    if me == 0:
        ref_a, ref_b = _grid(rows, cols), _grid(rows, cols)
        ref_errs = []
        with loopscale.level("serial"):
            for _ in range(steps):
                ref_errs.append(heat_step(ref_a, ref_b))
                ref_a, ref_b = ref_b, ref_a
        same = bool(np.array_equal(got, ref_a) and errs == ref_errs)
        with open(out_path, "w") as f:
            json.dump({"times": times, "same": same, "bytes": bytes_per_step}, f)


def serial_side(rows: int, cols: int, steps: int, repeats: int) -> list[float]:
    a, b = _grid(rows, cols), _grid(rows, cols)
    out = []
    with loopscale.level("serial"):
        heat_step(a, b)
        for _ in range(repeats):
            t0 = time.perf_counter()
            x, y = a, b
            for _ in range(steps):
                heat_step(x, y)
                x, y = y, x
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--cols", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-residual", action="store_true",
                    help="the stencil without its residual (no reduction, no allreduce)")
    ap.add_argument("--weak", type=int, nargs="+", metavar="P",
                    help="weak scaling: --rows rows per rank, at each of these rank counts")
    ap.add_argument("--rank-side", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_side:
        r, c, s, rep = map(int, args.rank_side[:4])
        rank_side(r, c, s, rep, args.rank_side[4])
        return
    if args.quick:
        args.rows, args.cols, args.steps, args.repeats = 200, 200, 5, 2
    if args.no_residual:
        os.environ["LS_BENCH_PLAIN"] = "1"
        _use_plain()
    from loopscale.distribute._launch import find_launcher

    if args.weak:
        weak(args, find_launcher())
        return
    serial = serial_side(args.rows, args.cols, args.steps, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        cmd = [*find_launcher(), "-n", str(args.nprocs), sys.executable, os.path.abspath(__file__),
               "--rank-side", str(args.rows), str(args.cols), str(args.steps),
               str(args.repeats), path]
        subprocess.run(cmd, check=True)
        with open(path) as f:
            res = json.load(f)
    s = statistics.median(serial)
    ls = statistics.median(res["times"]["loopscale"])
    hd = statistics.median(res["times"]["hand"])
    kind = "without" if args.no_residual else "with"
    print(f"2-D heat stencil {kind} residual, {args.rows}x{args.cols}, {args.steps} steps; "
          f"mpiexec -n "
          f"{args.nprocs}; median of {args.repeats}; "
          f"usable cores {loopscale.config.usable_cores()}")
    print()
    print("| serial s | loopscale s | speed-up | hand mpi4py s | hand speed-up | "
          "overhead vs hand | bytes per step (rank 0) | bit for bit serial |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(f"| {s:.3f} | {ls:.3f} | {s / ls:.2f}x | {hd:.3f} | {s / hd:.2f}x | "
          f"{(ls / hd - 1) * 100:+.1f}% | {res['bytes']:,} | {'yes' if res['same'] else 'NO'} |")
    if not res["same"]:
        sys.exit(1)


def weak(args: argparse.Namespace, launcher: list[str]) -> None:
    """Rows per rank fixed: time per step and bytes moved at each rank count."""
    rows_per_rank = args.rows // 2 if args.rows >= 2 else 1
    print(f"weak scaling: {rows_per_rank} x {args.cols} rows per rank, {args.steps} steps, "
          f"median of {args.repeats}; usable cores {loopscale.config.usable_cores()}")
    print()
    print("| ranks | grid | ms per step | efficiency t(1)/t(P) | hand mpi4py ms per step | "
          "hand efficiency | bytes per step (rank 0) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    base = hbase = None
    for p in args.weak:
        rows = rows_per_rank * p
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "out.json")
            subprocess.run([*launcher, "-n", str(p), sys.executable, os.path.abspath(__file__),
                            "--rank-side", str(rows), str(args.cols), str(args.steps),
                            str(args.repeats), path], check=True)
            with open(path) as f:
                res = json.load(f)
        t = statistics.median(res["times"]["loopscale"]) / args.steps * 1e3
        h = statistics.median(res["times"]["hand"]) / args.steps * 1e3
        base = t if base is None else base
        hbase = h if hbase is None else hbase
        print(f"| {p} | {rows} x {args.cols} | {t:.2f} | {base / t:.2f} | {h:.2f} | "
              f"{hbase / h:.2f} | {res['bytes']:,} |")
        if not res["same"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
