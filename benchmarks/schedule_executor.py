"""loopscale's Executor against ThreadPoolExecutor, joblib and Dask on tiny tasks.

Run from the repository root::

    python benchmarks/schedule_executor.py                 # full run, about a minute
    python benchmarks/schedule_executor.py --quick         # 1,000 tasks, seconds
    python benchmarks/schedule_executor.py --output docs/executor-table.md

What it measures, all interleaved in one run (every repeat times every
implementation, in a rotating order, and the table shows medians):

* **Round trip**: ``submit(f)`` then ``result()`` of a trivial task, in µs,
  for ``loopscale.schedule.Executor`` and ``ThreadPoolExecutor`` (2 workers).
* **Tiny tasks**: 10,000 calls of a ``numba.njit(nogil=True)`` function
  calibrated to about 10 µs each, on 1 and 2 workers, for loopscale's
  Executor (``submit`` every task then collect, and ``map``),
  ``ThreadPoolExecutor`` (the same two ways), joblib's ``threading`` backend
  (its automatic batching) and Dask's threaded scheduler (one task per call),
  when installed.  The ratio is the plain loop's time over the
  implementation's: above 1 is faster than the loop.

Conditions: the garbage collector is off inside each sample; workers and
compiled code are warmed up before timing.  A shared machine drifts by tens of
percent between runs; read the ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numba

from loopscale.schedule._executor import Executor


@numba.njit(nogil=True, cache=False)
def work(n):
    s = 0.0
    for i in range(n):
        s += math.sqrt(i + s * 1e-9)
    return s


def calibrate(seconds: float = 10e-6) -> int:
    """The ``n`` for which ``work(n)`` takes about *seconds* (median of 5 estimates)."""
    work(10)
    n = 1000
    for _ in range(3):  # refine: per-call time is close to linear in n
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(500):
                work(n)
            samples.append((time.perf_counter() - t0) / 500)
        n = max(1, round(n * seconds / statistics.median(samples)))
    return n


def busy_cpu_seconds() -> float | None:
    """CPU seconds spent by the whole machine so far (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any]) -> float:
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


# -- implementations: each returns a callable that runs the whole workload -----------

def serial(ntasks: int, n: int) -> Callable[[], Any]:
    def run() -> None:
        for _ in range(ntasks):
            work(n)
    return run


def submit_all(ex: Any, ntasks: int, n: int) -> Callable[[], Any]:
    def run() -> None:
        futures = [ex.submit(work, n) for _ in range(ntasks)]
        for f in futures:
            f.result()
    return run


def mapped(ex: Any, ntasks: int, n: int, chunksize: int = 1) -> Callable[[], Any]:
    def run() -> None:
        for _ in ex.map(work, [n] * ntasks, chunksize=chunksize):
            pass
    return run


def joblib_threading(workers: int, ntasks: int, n: int) -> Any:
    try:
        import joblib
    except ImportError:
        return None
    par = joblib.Parallel(n_jobs=workers, backend="threading")
    par.__enter__()  # keep the pool for every repeat, as a long-lived user would

    def run() -> None:
        par(joblib.delayed(work)(n) for _ in range(ntasks))
    run.shutdown = lambda: par.__exit__(None, None, None)  # type: ignore[attr-defined]
    return run


def dask_threaded(workers: int, ntasks: int, n: int) -> Callable[[], Any] | None:
    try:
        import dask.threaded
    except ImportError:
        return None
    graph = {("w", i): (work, n) for i in range(ntasks)}
    keys = list(graph)

    def run() -> None:
        dask.threaded.get(graph, keys, num_workers=workers)
    return run


class _Closer:
    """Gives anything with a closing method a ``shutdown()``."""

    def __init__(self, close: Callable[[], Any]) -> None:
        self.shutdown = close


def process_cases(workers: int, ntasks: int, n: int) -> tuple[dict[str, Callable[[], Any]],
                                                               list[Any]]:
    """Process-based peers on the same tasks, each with ``chunksize=16`` batches."""
    import multiprocessing as mp

    from loopscale.schedule import ProcessExecutor

    ctx = mp.get_context("forkserver")
    items = [n] * ntasks
    pool = ctx.Pool(workers)
    ppe = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    lpe = ProcessExecutor(max_workers=workers)
    cases: dict[str, Callable[[], Any]] = {
        "loopscale ProcessExecutor, map chunksize=16":
            lambda: list(lpe.map(work, items, chunksize=16)),
        "multiprocessing.Pool.map chunksize=16":
            lambda: pool.map(work, items, chunksize=16),
        "ProcessPoolExecutor.map chunksize=16":
            lambda: list(ppe.map(work, items, chunksize=16)),
    }
    closers: list[Any] = [lpe, ppe, _Closer(pool.terminate)]
    try:
        import joblib

        loky = joblib.Parallel(n_jobs=workers, backend="loky", batch_size=16)
        cases["joblib loky backend, batch_size=16"] = (
            lambda: loky(joblib.delayed(work)(n) for _ in range(ntasks)))
    except ImportError:
        pass
    return cases, closers


def round_trip(ex: Any, count: int) -> Callable[[], Any]:
    def run() -> None:
        for _ in range(count):
            ex.submit(abs, 1).result()
    return run


# -- the run --------------------------------------------------------------------------

def measure(ntasks: int, repeats: int, dask_repeats: int,
            with_processes: bool = True) -> dict[str, Any]:
    wall0, machine0, own0 = time.perf_counter(), busy_cpu_seconds(), sum(os.times()[:2])
    # round trips first, before process pools exist (their idle workers and the
    # forkserver disturb microsecond timings on a small machine)
    pools: list[Any] = []
    count = 2000
    ls2, tpe2 = Executor(max_workers=2), cf.ThreadPoolExecutor(max_workers=2)
    pools += [ls2, tpe2]
    trips: dict[str, list[float]] = {"loopscale": [], "ThreadPoolExecutor": []}
    for _ in range(3):  # the first thousands of wake-ups after idling are slow on a VM
        for ex in (ls2, tpe2):
            round_trip(ex, count)()
    for _ in range(repeats):
        trips["loopscale"].append(timed(round_trip(ls2, count)) / count)
        trips["ThreadPoolExecutor"].append(timed(round_trip(tpe2, count)) / count)
    n = calibrate()
    per_call = statistics.median(timed(lambda: [work(n) for _ in range(1000)])
                                 for _ in range(5)) / 1000
    cases: dict[tuple[str, int], Callable[[], Any]] = {}
    procs: list[Any] = []  # process pools, shut down as soon as their rows are timed
    for w in (1, 2):
        ls, tpe = Executor(max_workers=w), cf.ThreadPoolExecutor(max_workers=w)
        pools += [ls, tpe]
        cases[("loopscale Executor, submit + result", w)] = submit_all(ls, ntasks, n)
        cases[("loopscale Executor, map", w)] = mapped(ls, ntasks, n)
        cases[("loopscale Executor, map chunksize=16", w)] = mapped(ls, ntasks, n, 16)
        cases[("ThreadPoolExecutor, submit + result", w)] = submit_all(tpe, ntasks, n)
        cases[("ThreadPoolExecutor, map", w)] = mapped(tpe, ntasks, n)
        jl = joblib_threading(w, ntasks, n)
        if jl is not None:
            cases[("joblib threading backend", w)] = jl
            pools.append(jl)
        dk = dask_threaded(w, ntasks, n)
        if dk is not None:
            cases[("Dask threaded scheduler", w)] = dk
        if with_processes:
            more, closers = process_cases(w, ntasks, n)
            cases.update({(name, w): fn for name, fn in more.items()})
            procs += closers
    base = serial(ntasks, n)
    for fn in [base, *cases.values()]:  # warm up threads, pools and caches
        fn()
    times: dict[Any, list[float]] = {key: [] for key in cases}
    times["serial"] = []
    keys = list(cases)
    for rep in range(repeats):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]
        times["serial"].append(timed(base))
        for key in order:
            if key[0].startswith("Dask") and rep >= dask_repeats:
                continue
            times[key].append(timed(cases[key]))

    for p in procs:
        p.shutdown()
    for p in pools:
        p.shutdown()
    machine1 = busy_cpu_seconds()
    others = None
    if machine0 is not None and machine1 is not None:
        own = sum(os.times()[:2]) - own0
        others = max(0.0, (machine1 - machine0 - own) / (time.perf_counter() - wall0))
    return {"n": n, "per_call": per_call, "ntasks": ntasks, "repeats": repeats,
            "others": others,
            "times": {k: statistics.median(v) for k, v in times.items()},
            "trips": {k: statistics.median(v) for k, v in trips.items()}}


def render(result: dict[str, Any]) -> str:
    t, trips = result["times"], result["trips"]
    base = t["serial"]
    lines = [
        "## loopscale Executor against other schedulers (threads and processes)",
        "",
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numba {numba.__version__}; medians of {result['repeats']} interleaved repeats."
        + ("" if result["others"] is None else
           f" Other processes kept {result['others']:.2f} cores busy on average during the "
           "run (on a 2-core machine, anything above ~0.1 distorts the 2-worker rows)."),
        "",
        "### submit + result round trip (2 workers)",
        "",
        "| executor | µs per round trip | vs ThreadPoolExecutor |",
        "| --- | ---: | ---: |",
    ]
    for name, sec in trips.items():
        lines.append(f"| {name} | {sec * 1e6:.2f} | {sec / trips['ThreadPoolExecutor']:.2f}x |")
    lines += [
        "",
        f"### {result['ntasks']:,} tasks of {result['per_call'] * 1e6:.1f} µs of nogil "
        "compiled work",
        "",
        f"Plain loop: {base * 1e3:.1f} ms. Speed-up is the loop's time over the "
        "implementation's (above 1.00x beats the loop).",
        "",
        "| implementation | 1 worker (ms) | speed-up | 2 workers (ms) | speed-up |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    names = list(dict.fromkeys(k[0] for k in t if k != "serial"))
    for name in names:
        row = [name]
        for w in (1, 2):
            sec = t[(name, w)]
            row += [f"{sec * 1e3:.1f}", f"{base / sec:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 2 repeats")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", help="also write the Markdown table to this file")
    parser.add_argument("--no-processes", action="store_true",
                        help="leave out the process pools (faster)")
    args = parser.parse_args(argv)
    ntasks, repeats = (1000, 2) if args.quick else (10_000, args.repeats)
    result = measure(ntasks, repeats, dask_repeats=min(repeats, 3),
                     with_processes=not args.no_processes)
    table = render(result)
    sys.stdout.write(table)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
