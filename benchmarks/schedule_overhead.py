"""Scheduler overheads: an empty parallel region, and the cost per chunk.

Run from the repository root::

    python benchmarks/schedule_overhead.py
    python benchmarks/schedule_overhead.py --workers 1 2 4 8 16   # on a many-core host

Both are measured with a compiled chunk function that does nothing, so the
times are the pool's own: waking a worker, claiming chunks from the shared
counter, and waiting for the region to finish.  Medians of 5 repeats.  The
empty region has one chunk per worker, so that every worker takes part.  A
third row runs one chunk of about 200 µs of compiled work per worker: its
time above 200 µs is what starting and finishing a region costs when every
worker has real work (waking the threads, and waiting for the last one).
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import numba
import numpy as np

from loopscale.schedule._pool import get_pool


@numba.njit(nogil=True)
def nothing(start, stop, out):
    pass


@numba.njit(nogil=True)
def busy(start, stop, out, reps):
    for i in range(start, stop):
        x = out[i]
        for _ in range(reps):
            x = x * 0.999999 + 1e-9
        out[i] = x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args(argv)
    top = max(a.workers)
    out = np.zeros(max(10, top))
    nothing(0, 1, out)
    pool = get_pool(top)
    rows = []
    for w in a.workers:
        chunks = [(i, i + 1) for i in range(max(w, 2))]
        t = statistics.median(timeit.repeat(
            lambda w=w, chunks=chunks: pool.run(nothing, chunks, (out,), w), number=2000,
            repeat=5)) / 2000
        rows.append((f"empty region, {w} worker(s)", f"{t * 1e6:.1f} µs"))
    # calibrate ~200 µs of work for one chunk of one item
    reps = 1000
    busy(0, 1, out, reps)
    while True:
        t0 = time.perf_counter()
        busy(0, 1, out, reps)
        if time.perf_counter() - t0 > 200e-6:
            break
        reps *= 2
    one = min(timeit.repeat(lambda: busy(0, 1, out, reps), number=20, repeat=5)) / 20
    for w in a.workers:
        chunks = [(i, i + 1) for i in range(w)]
        t = statistics.median(timeit.repeat(
            lambda w=w, chunks=chunks: pool.run(busy, chunks, (out, reps), w), number=200,
            repeat=5)) / 200
        rows.append((f"{w} chunk(s) of {one * 1e6:.0f} µs, {w} worker(s)",
                     f"{t * 1e6:.1f} µs (+{(t - one) * 1e6:.1f})"))
    chunks = [(i, i + 1) for i in range(10_000)]
    for w in a.workers:
        t = statistics.median(timeit.repeat(
            lambda w=w: pool.run(nothing, chunks, (out,), w), number=5, repeat=5)) / 5
        rows.append((f"per chunk, {w} worker(s)", f"{t / len(chunks) * 1e6:.2f} µs"))
    print("| measurement | time |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
