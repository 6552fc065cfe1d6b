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
  rows and ``Allreduce`` the residual (the buffer-based call, on a one-element
  array): what a careful person writes by hand.

Each MPI sample is the slowest rank's time for all steps (after a barrier);
loopscale and the hand program alternate, in the order ABBA, so that a change
in the machine's load falls on both.  The table reports the medians of the
repeats and the median of the per-repeat ratios.  Rank 0 checks that the
gathered loopscale grid and residual equal the serial ones to the bit.
Memory: arrays are allocated before timing and reused; nothing is allocated in
the timed loop but the kernels' few temporaries.  With ``--hand-memory shared``
the hand program steps the very rows the DistArrays hold (their buffers, one
ghost row each side), so that where the memory happens to lie (this VM's L3
cache is shared with its neighbours: two allocations of the same size can run
a memory-bound kernel 10 % apart) favours neither program; ``own`` (default)
gives the hand program arrays of its own.
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
from typing import Any

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
    shared = os.environ.get("LS_BENCH_HAND_MEMORY") == "shared"

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
    if shared:  # the DistArrays' own buffers: own rows and one ghost row each side
        g0 = a._ghost
        ext_a = a._buf[g0 - 1:g0 + (r1 - r0) + 1]
        ext_b = b._buf[g0 - 1:g0 + (r1 - r0) + 1]
    else:
        full = _grid(rows, cols)
        ext_a = np.zeros((r1 - r0 + 2, cols))
        ext_a[1:-1] = full[r0:r1]
        ext_b = ext_a.copy()
        del full
    first = 2 if r0 == 0 else 1
    last = (r1 - r0) if r1 == rows else (r1 - r0 + 1)
    up, down = (me - 1 if me > 0 else mpi.PROC_NULL), (me + 1 if me < size - 1 else mpi.PROC_NULL)
    plain = _hand_step is _hand_plain
    e_in, e_out = np.zeros(1), np.zeros(1)
    checks = os.environ.get("LS_BENCH_HAND_CHECKS") == "1"
    fp_in, fp_out = np.array([12345, -12346], dtype=np.int64), np.zeros(2, dtype=np.int64)
    st_in, st_out = np.zeros(1, dtype=np.int64), np.zeros(size, dtype=np.int64)

    def hand(x: np.ndarray, y: np.ndarray) -> float:
        if checks:  # what loopscale adds: the ranks agree on the call...
            comm.Allreduce(fp_in, fp_out, op=mpi.MAX)
        comm.Sendrecv(x[1], dest=up, recvbuf=x[-1], source=down)
        comm.Sendrecv(x[-2], dest=down, recvbuf=x[0], source=up)
        e = _hand_step(x, y, first, last)
        if checks:  # ... and every rank learns whether any rank failed
            comm.Allgather(st_in, st_out)
        if plain:
            return 0.0
        e_in[0] = e
        comm.Allreduce(e_in, e_out)  # buffer-based, as loopscale's exchange
        return float(e_out[0])

    hand(ext_a, ext_b)
    times: dict[str, list[float]] = {"loopscale": [], "hand": []}
    bytes_per_step = 0
    for rep in range(repeats):
        for name in (("loopscale", "hand") if rep % 2 == 0 else ("hand", "loopscale")):
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
            json.dump({"times": times, "same": same, "bytes": bytes_per_step,
                       "load": os.getloadavg()[0]}, f)


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
    ap.add_argument("--hand-memory", choices=("own", "shared"), default="own",
                    help="the hand program's arrays: its own, or the DistArrays' buffers")
    ap.add_argument("--hand-checks", action="store_true",
                    help="the hand program also does what loopscale's promises cost: an "
                         "Allreduce of a fingerprint before each step and an Allgather of a "
                         "status word after it (to tell that cost from loopscale's own)")
    ap.add_argument("--weak", type=int, nargs="+", metavar="P",
                    help="weak scaling: --rows rows per rank, at each of these rank counts")
    ap.add_argument("--kernels", action="store_true",
                    help="in this one process, time the loop kernel loopscale compiles "
                         "against the hand kernel and numba.njit of the same function")
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
    os.environ["LS_BENCH_HAND_MEMORY"] = args.hand_memory
    os.environ["LS_BENCH_HAND_CHECKS"] = "1" if args.hand_checks else "0"
    from loopscale.distribute._launch import find_launcher

    if args.kernels:
        kernels(args)
        return
    if args.weak:
        weak(args, find_launcher())
        return
    load0 = os.getloadavg()[0]
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
    paired = statistics.median(a / b for a, b in zip(res["times"]["loopscale"],
                                                     res["times"]["hand"], strict=True))
    kind = "without" if args.no_residual else "with"
    heap = " ".join(f"{k}={os.environ[k]}" for k in ("MALLOC_MMAP_MAX_",
                                                    "MALLOC_TRIM_THRESHOLD_",
                                                    "MALLOC_ARENA_MAX") if k in os.environ)
    print(f"2-D heat stencil {kind} residual, {args.rows}x{args.cols}, {args.steps} steps; "
          f"mpiexec -n "
          f"{args.nprocs}; median of {args.repeats}; hand memory {args.hand_memory}"
          f"{', hand with checks' if args.hand_checks else ''}; "
          f"usable cores {loopscale.config.usable_cores()}; load average "
          f"{load0:.2f} before, {res['load']:.2f} after; heap: {heap or 'glibc defaults'}")
    print()
    print("| serial s | loopscale s | speed-up | hand mpi4py s | hand speed-up | "
          "overhead vs hand | paired | bytes per step (rank 0) | bit for bit serial |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(f"| {s:.3f} | {ls:.3f} | {s / ls:.2f}x | {hd:.3f} | {s / hd:.2f}x | "
          f"{(ls / hd - 1) * 100:+.1f}% | {(paired - 1) * 100:+.1f}% | {res['bytes']:,} | "
          f"{'yes' if res['same'] else 'NO'} |")
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


def kernels(args: argparse.Namespace) -> None:
    """The compute alone, no MPI: loopscale's chunk kernel (the one every level runs
    the loop's blocks with) against the hand kernel and ``numba.njit`` of the same
    function, alternating on the same two arrays, median of the repeats."""
    a, b = _grid(args.rows, args.cols), _grid(args.rows, args.cols)

    class Capture:  # an executor that keeps the plan it runs: its kernel and arguments
        name = "capture"
        plan: Any = None

        def run(self, plan: Any) -> None:
            Capture.plan = plan
            plan.kernel(0, plan.nblocks, *plan.args)

    heat_step._call_plan(Capture(), (a, b), {})
    plan = Capture.plan
    jitted = numba.njit(heat_step.py_func)
    jitted(a, b)
    n = args.rows
    cases = {
        "loopscale chunk kernel": lambda: plan.kernel(0, plan.nblocks, *plan.args),
        "hand kernel": lambda: _hand_step(a, b, 1, n - 1),
        "numba.njit of the function": lambda: jitted(a, b),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(max(args.repeats, 3)):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    kind = "without" if args.no_residual else "with"
    print(f"2-D heat stencil {kind} residual, {args.rows}x{args.cols}, one process, "
          f"median of {max(args.repeats, 3)}; load average {os.getloadavg()[0]:.2f}")
    print()
    print("| kernel | ms per step | vs hand |")
    print("| --- | ---: | ---: |")
    hand = statistics.median(times["hand kernel"])
    for k, v in times.items():
        t = statistics.median(v)
        print(f"| {k} | {t * 1e3:.2f} | {(t / hand - 1) * 100:+.1f}% |")


if __name__ == "__main__":
    main()
