"""Weak scaling of the ``mpi`` level: the work per rank fixed, P = 1, 2, 4.

Run from the repository root::

    python benchmarks/mpi_weak_scaling.py                 # P = 1 2 4
    python benchmarks/mpi_weak_scaling.py --nprocs 1 2 4 8 16

Each P launches ``mpiexec -n P`` on a KDE kernel whose evaluation points grow
with P (``m = 600 * P`` points over 4,000 samples: the same work per rank),
each rank on one thread (``level("mpi", max_workers=1)``),
times five calls after a warm-up (slowest rank, median), and reads what the
exchange moved from ``loopscale.distribute.last_call_stats()``.  Efficiency is
``t(1) / t(P)``: 1.0 is perfect weak scaling.  With more ranks than cores
(P = 4 on a 2-core machine) the ranks share cores, so efficiency there
measures oversubscription, not the network; the table says how many cores
there were.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, math, statistics, sys, time
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def kde(points, data, bw):
    out = np.empty(points.shape[0])
    for i in range(points.shape[0]):
        s = 0.0
        for j in range(data.shape[0]):
            z = (points[i] - data[j]) / bw
            s += math.exp(-0.5 * z * z)
        out[i] = s / data.shape[0]
    return out


P = distribute.size()
rng = np.random.default_rng(1)
points, data = rng.random(600 * P), rng.random(4000)
with loopscale.level("mpi", max_workers=1):  # one core per rank
    kde(points, data, 0.1)
    times = []
    for _ in range(5):
        distribute.comm().Barrier()
        t0 = time.perf_counter()
        kde(points, data, 0.1)
        dt = np.array([time.perf_counter() - t0])
        slowest = np.empty(1)
        distribute.comm().Allreduce(dt, slowest, op=__import__("mpi4py").MPI.MAX)
        times.append(float(slowest[0]))
stats = distribute.last_call_stats()
if distribute.rank() == 0:
    with open(sys.argv[1], "w") as fh:
        json.dump({"P": P, "seconds": statistics.median(times),
                   "bytes_moved": stats.get("bytes_moved", 0)}, fh)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    from loopscale.config import usable_cores
    from loopscale.distribute._launch import find_launcher

    launcher = find_launcher()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "weak_child.py")  # accelerate needs a source file
        with open(script, "w") as fh:
            fh.write(CHILD)
        for p in args.nprocs:
            out = os.path.join(tmp, f"p{p}.json")
            subprocess.run([*launcher, "-n", str(p), sys.executable, script, out],
                           check=True, timeout=600, stdin=subprocess.DEVNULL)
            with open(out) as fh:
                rows.append(json.load(fh))
    t1 = rows[0]["seconds"] if rows and rows[0]["P"] == 1 else None
    print(f"weak scaling of the mpi level (KDE, 600 points per rank x 4,000 samples), "
          f"{datetime.date.today()}, {usable_cores()} usable cores\n")
    print("| ranks | time per call (ms) | efficiency t(1)/t(P) | bytes moved per call "
          "(rank 0, sent + received) |\n| ---: | ---: | ---: | ---: |")
    for r in rows:
        eff = f"{t1 / r['seconds']:.2f}" if t1 else "-"
        print(f"| {r['P']} | {r['seconds'] * 1e3:.1f} | {eff} | {r['bytes_moved']:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
