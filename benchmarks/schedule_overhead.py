"""Scheduler overheads: an empty parallel region, and the cost per chunk.

Run from the repository root::

    python benchmarks/schedule_overhead.py

Both are measured with a compiled chunk function that does nothing, so the
times are the pool's own: waking a worker, claiming chunks from the shared
counter, and waiting for the region to finish.  Medians of 5 repeats.
"""

from __future__ import annotations

import statistics
import timeit

import numba
import numpy as np

from loopscale.schedule._pool import get_pool


@numba.njit(nogil=True)
def nothing(start, stop, out):
    pass


def main() -> int:
    out = np.zeros(10)
    nothing(0, 1, out)
    pool = get_pool(2)
    rows = []
    for w in (1, 2):
        t = statistics.median(timeit.repeat(
            lambda w=w: pool.run(nothing, [(0, 1), (1, 2)], (out,), w), number=2000,
            repeat=5)) / 2000
        rows.append((f"empty region, {w} worker(s)", f"{t * 1e6:.1f} µs"))
    chunks = [(i, i + 1) for i in range(10_000)]
    for w in (1, 2):
        t = statistics.median(timeit.repeat(
            lambda w=w: pool.run(nothing, chunks, (out,), w), number=5, repeat=5)) / 5
        rows.append((f"per chunk, {w} worker(s)", f"{t / len(chunks) * 1e6:.2f} µs"))
    print("| measurement | time |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
