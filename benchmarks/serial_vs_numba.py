"""loopscale's serial level against hand-written Numba and against pure Python.

Run from the repository root::

    python benchmarks/serial_vs_numba.py                  # full run, a few minutes
    python benchmarks/serial_vs_numba.py --quick          # tiny sizes, seconds (a smoke test)
    python benchmarks/serial_vs_numba.py --output docs/benchmark-table.md

What it measures, for five kernels (``benchmarks/kernels.py``):

* **Throughput.**  The same plain-Python source run three ways: as Python,
  compiled with ``numba.njit(nogil=True)``, and compiled with
  ``loopscale.accelerate`` at the ``serial`` level.  Every repeat times all
  three, in a rotating order (so that neither drift nor order favours one),
  and the table reports the median over the repeats.  Pure Python is run at a
  smaller size and its time scaled up by the ratio of inner-loop iteration
  counts (``kernels.work``); the table says so.
* **Call overhead** of a trivial kernel (``return x[0]``), in nanoseconds per
  call, njit against accelerate, measured the same interleaved way.
* **Start-up**, in fresh child processes: the first call of each kernel with an
  empty cache directory (compile time; njit has no cache), and the first call
  in a new process once the cache is filled (the warm start: the cache load;
  the imports before it, the same for any Numba code, are shown apart).  The
  children may write Python's bytecode caches, as an installed package has
  them (``PYTHONDONTWRITEBYTECODE`` is dropped for them).

Conditions.  Outputs are preallocated outside the timed region; every
implementation is called before timing starts (compile, then warm the caches
and the output pages).  The allocator is told to keep freed memory
(``MALLOC_MMAP_MAX_=0``, a large ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_ARENA_MAX=1``); the script re-executes itself with those set when they
are not, because memory given back to the OS costs a page fault per 4 KiB the
next time it is touched, which would be charged to whichever kernel ran next.
The garbage collector is off inside each sample.  Timings on a shared machine
drift by tens of percent between runs: read the ratios, which are measured
side by side, not the absolute times.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: The environment the measurements need; the script re-executes itself with
#: these when they are missing: allocator settings that keep freed memory in
#: the process, and the ``serial`` level (``auto`` could pick ``threads``).
BENCH_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
    "MALLOC_ARENA_MAX": "1",
    "LOOPSCALE_LEVEL": "serial",
}

#: Targets from the design: accelerate within 5 % of njit, at least 100 times
#: faster than Python, at most 300 ns of extra call overhead, a cold compile at
#: most 1.5 times njit's, and a warm start (the first call of a new process
#: whose cache is filled) at most 10 % of the cold one (the first call with an
#: empty cache).
TARGET_RATIO = 1.05
TARGET_SPEEDUP = 100.0
TARGET_OVERHEAD_NS = 300.0
TARGET_COMPILE_RATIO = 1.5
TARGET_WARM_PERCENT = 10.0


@dataclass(frozen=True)
class Case:
    """One kernel, the size timed compiled, and the smaller size timed as Python."""

    name: str
    title: str
    size: int
    python_size: int
    describe: str  # what `size` means, for the table


FULL = (
    Case("nbody", "n-body forces", 2000, 200, "n = {} bodies (2-D)"),
    Case("black_scholes", "Black–Scholes (polynomial cnd helper)", 1_000_000, 20_000,
         "n = {:,} options"),
    Case("mandelbrot", "Mandelbrot, maxiter 100", 400, 100, "{} × 3/4 of that pixels"),
    Case("sum_of_squares", "sum of squares", 10_000_000, 100_000, "n = {:,}"),
    Case("stencil2d", "5-point stencil 2-D", 1000, 100, "{0} × {0} grid"),
)

QUICK = (
    Case("nbody", "n-body forces", 100, 30, "n = {} bodies (2-D)"),
    Case("black_scholes", "Black–Scholes (polynomial cnd helper)", 20_000, 2_000,
         "n = {:,} options"),
    Case("mandelbrot", "Mandelbrot, maxiter 100", 80, 20, "{} × 3/4 of that pixels"),
    Case("sum_of_squares", "sum of squares", 100_000, 10_000, "n = {:,}"),
    Case("stencil2d", "5-point stencil 2-D", 100, 20, "{0} × {0} grid"),
)

#: Sizes for the start-up children: small, so that the first call is all compile.
STARTUP_SIZE = {"nbody": 16, "black_scholes": 64, "mandelbrot": 16, "sum_of_squares": 64,
                "stencil2d": 16}


# -- environment ---------------------------------------------------------------------


def ensure_bench_env(argv: Sequence[str]) -> None:
    """Re-execute this script with :data:`BENCH_ENV` unless it is already set."""
    if all(os.environ.get(k) == v for k, v in BENCH_ENV.items()):
        return
    env = dict(os.environ)
    env.update(BENCH_ENV)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def load_kernels() -> Any:
    sys.path.insert(0, str(HERE))
    import kernels  # benchmarks/kernels.py

    return kernels


# -- timing --------------------------------------------------------------------------


def sample(func: Callable[..., Any], args: tuple[Any, ...], number: int) -> float:
    """Seconds per call of ``func(*args)``, averaged over *number* calls, GC off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            func(*args)
        return (time.perf_counter() - t0) / number
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(func: Callable[..., Any], args: tuple[Any, ...], seconds: float) -> int:
    """Calls per sample so that one sample takes about *seconds*."""
    t = sample(func, args, 1)
    return max(1, round(seconds / max(t, 1e-9)))


def interleaved(impls: dict[str, tuple[Callable[[], float], int]], repeats: int
                ) -> dict[str, list[float]]:
    """Seconds per call of each implementation, one value per repeat.

    *impls* maps a label to ``(timed, number)`` where ``timed(number)`` returns
    seconds per call.  Each repeat times every implementation once; the order
    rotates from one repeat to the next.
    """
    labels = list(impls)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(repeats):
        k = r % len(labels)
        order = labels[k:] + labels[:k]
        if r % 2:
            order.reverse()
        for label in order:
            timed, number = impls[label]
            times[label].append(timed(number))  # type: ignore[call-arg]
    return times


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of ``num[r] / den[r]`` over the repeats *r*.

    Each pair was timed back to back, so slow drift of the machine cancels in
    the ratio; the quartiles show how much noise is left.
    """
    ratios = sorted(a / b for a, b in zip(num, den, strict=True))
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q2, q1, q3


def same_result(a: Any, b: Any) -> bool:
    """Integers exactly; floats within 1e-12 of the largest value (reductions
    are blocked, and exp/log are glibc's vector versions, within 4 units in the
    last place: a price that nearly cancels, s * N(d1) - k * e * N(d2), keeps
    their absolute error, not their relative one)."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "iub":
        return bool(np.array_equal(a, b))
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return bool(np.allclose(a, b, rtol=1e-12, atol=1e-12 * scale))


def outputs(name: str, args: tuple[Any, ...], result: Any) -> Any:
    """What a kernel produced: its return value, or its output arguments."""
    if name == "sum_of_squares":
        return result
    if name == "black_scholes":
        return args[-2], args[-1]
    return args[-1]


@dataclass
class Row:
    case: Case
    python_s: float  # median, scaled to case.size
    njit_s: float  # median
    accel_s: float  # median
    ratio: float  # median of the paired accel/njit ratios
    ratio_q1: float
    ratio_q3: float

    @property
    def speedup(self) -> float:
        return self.python_s / self.accel_s


def measure_throughput(kernels: Any, case: Case, repeats: int, sample_s: float) -> Row:
    from loopscale import accelerate

    py = kernels.KERNELS[case.name]
    nj = kernels.NJIT[case.name]
    acc = accelerate(py)
    args = kernels.make_inputs(case.name, case.size)
    small = kernels.make_inputs(case.name, case.python_size)
    # Correctness first: accelerate against Python (small) and against njit (full size).
    want = outputs(case.name, small, py(*small))
    small2 = kernels.make_inputs(case.name, case.python_size)
    got = outputs(case.name, small2, acc(*small2))
    if not same_result(want, got):
        raise SystemExit(f"{case.name}: accelerate disagrees with Python")
    args2 = kernels.make_inputs(case.name, case.size)
    if not same_result(outputs(case.name, args, nj(*args)),
                       outputs(case.name, args2, acc(*args2))):
        raise SystemExit(f"{case.name}: accelerate disagrees with numba.njit")
    del args2, small2
    # Warm up: compiled (done above), then a few calls to settle caches and pages.
    for _ in range(3):
        nj(*args)
        acc(*args)
    py(*small)
    number = calibrate(nj, args, sample_s)
    impls = {
        "python": (lambda n: sample(py, small, n), 1),
        "njit": (lambda n: sample(nj, args, n), number),
        "accel": (lambda n: sample(acc, args, n), number),
    }
    times = interleaved(impls, repeats)  # type: ignore[arg-type]
    med = {label: statistics.median(v) for label, v in times.items()}
    scale = kernels.work(case.name, case.size) / kernels.work(case.name, case.python_size)
    ratio, q1, q3 = paired_ratio(times["accel"], times["njit"])
    return Row(case, med["python"] * scale, med["njit"], med["accel"], ratio, q1, q3)


def measure_overhead(kernels: Any, repeats: int, number: int) -> tuple[float, float, float]:
    """Nanoseconds per call of ``first(x)``: njit, accelerate, and the median of
    the paired differences."""
    import numpy as np

    from loopscale import accelerate

    acc = accelerate(kernels.KERNELS["first"])
    nj = kernels.NJIT["first"]
    x = np.arange(10.0)
    assert acc(x) == nj(x) == 0.0
    for _ in range(1000):
        acc(x)
        nj(x)

    def timer(f: Callable[..., Any]) -> Callable[[int], float]:
        t = timeit.Timer("f(x)", globals={"f": f, "x": x})
        return lambda n: t.timeit(n) / n

    times = interleaved({"njit": (timer(nj), number), "accel": (timer(acc), number)},
                        repeats)  # type: ignore[arg-type]
    diff = statistics.median(a - b for a, b in zip(times["accel"], times["njit"], strict=True))
    return (statistics.median(times["njit"]) * 1e9, statistics.median(times["accel"]) * 1e9,
            diff * 1e9)


# -- start-up in child processes -----------------------------------------------------

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
name, impl, size, bench_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, bench_dir)
import kernels
if impl == "accel":
    from loopscale import accelerate
    f = accelerate(kernels.KERNELS[name])
elif impl == "njit_cached":
    f = kernels.njit_cached(name)
else:
    f = kernels.NJIT[name]
args = kernels.make_inputs(name, size)
t1 = time.perf_counter()
f(*args)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_call": t2 - t1, "total": t2 - t0}))
"""


def run_child(name: str, impl: str, cache_dir: str, level: str = "serial"
              ) -> dict[str, float]:
    """Run kernel *name* once in a new process; return its timings in seconds.

    *impl* is ``"accel"``, ``"njit"`` or ``"njit_cached"``; *cache_dir* is both
    ``LOOPSCALE_CACHE_DIR`` and ``NUMBA_CACHE_DIR``.  The result has
    ``import`` (interpreter start to inputs ready: NumPy, Numba, loopscale),
    ``first_call`` and ``total`` (the two together).
    """
    env = dict(os.environ)
    env.update(BENCH_ENV)
    env["LOOPSCALE_LEVEL"] = level
    env["LOOPSCALE_CACHE_DIR"] = cache_dir
    env["NUMBA_CACHE_DIR"] = cache_dir
    # A user's installed package has its bytecode caches; without them every
    # loopscale module would be compiled from source in each child.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, name, impl, str(STARTUP_SIZE[name]), str(HERE)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"start-up child ({name}, {impl}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@dataclass
class Startup:
    """Median start-up times of one kernel, in seconds (see measure_startup)."""

    name: str
    njit_compile: float  # njit first call, fresh process (no cache)
    accel_cold: float  # accelerate first call, fresh process, empty cache directory
    accel_cold_total: float  # imports + first call, same process
    accel_warm_call: float  # first call, new process, cache filled
    accel_warm_total: float  # imports + first call, same process
    njit_warm_call: float  # njit(cache=True) first call, new process, cache filled

    @property
    def compile_ratio(self) -> float:
        return self.accel_cold / self.njit_compile

    @property
    def warm_percent(self) -> float:
        """Warm first call (the cache load) as a percentage of the cold first call."""
        return 100.0 * self.accel_warm_call / self.accel_cold

    @property
    def njit_warm_percent(self) -> float:
        """njit(cache=True)'s warm first call as a percentage of njit's compile."""
        return 100.0 * self.njit_warm_call / self.njit_compile


def measure_startup(name: str, repeats: int) -> Startup:
    """Start-up of kernel *name* in child processes, *repeats* times each.

    A repeat runs, each in a new process: njit (no cache); accelerate with an
    empty cache directory (cold); accelerate again with the cache it filled
    (warm); and, as the reference for a warm start, njit(cache=True) once to
    fill Numba's cache and once more to load from it.  The order of the njit
    and accelerate runs alternates between repeats.
    """
    runs: dict[str, list[dict[str, float]]] = {
        "njit": [], "cold": [], "warm": [], "njit_warm": []}
    for r in range(repeats):
        cache = tempfile.mkdtemp(prefix="loopscale-bench-cache-")
        try:
            steps = [("njit", "njit"), ("cold", "accel"), ("warm", "accel"),
                     ("", "njit_cached"), ("njit_warm", "njit_cached")]
            if r % 2:
                steps = steps[1:3] + steps[3:] + steps[:1]
            for kind, impl in steps:
                result = run_child(name, impl, cache)
                if kind:
                    runs[kind].append(result)
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(d[key] for d in runs[kind])

    return Startup(name, med("njit", "first_call"), med("cold", "first_call"),
                   med("cold", "total"), med("warm", "first_call"), med("warm", "total"),
                   med("njit_warm", "first_call"))


# -- report --------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**MISSED**"


def render(rows: list[Row], overhead: tuple[float, float, float] | None, startups: list[Startup],
           meta: dict[str, str]) -> str:
    out = []
    out.append(f"Run: {meta['when']} on {meta['machine']}; Python {meta['python']}, "
               f"Numba {meta['numba']}, NumPy {meta['numpy']}, loopscale {meta['loopscale']}; "
               f"level {meta['level']}; {meta['repeats']} repeats, median; "
               f"1-minute load average {meta['load']}.")
    out.append("")
    if rows:
        out.append("**Throughput** (time per call; Python measured at the smaller size shown and "
                   "scaled by the ratio of inner-loop iterations):")
        out.append("")
        out.append("| kernel | size | Python (scaled; measured at) | numba.njit | accelerate "
                   f"| accel / njit (≤ {TARGET_RATIO:.2f}; quartiles) | speed-up over Python "
                   f"(≥ {TARGET_SPEEDUP:.0f}×) |")
        out.append("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for row in rows:
            c = row.case
            out.append(
                f"| {c.title} | {c.describe.format(c.size)} | {fmt_time(row.python_s)} "
                f"({c.describe.format(c.python_size)}) | {fmt_time(row.njit_s)} | "
                f"{fmt_time(row.accel_s)} | {row.ratio:.3f} "
                f"({row.ratio_q1:.2f}–{row.ratio_q3:.2f}) "
                f"{verdict(row.ratio <= TARGET_RATIO)} | "
                f"{row.speedup:,.0f}× {verdict(row.speedup >= TARGET_SPEEDUP)} |")
        out.append("")
    if overhead is not None:
        nj, ac, diff = overhead
        out.append("**Call overhead** of `def first(x): return x[0]` (x: 10 float64; "
                   "the difference is the median of the paired differences):")
        out.append("")
        out.append(f"| numba.njit | accelerate | difference (≤ {TARGET_OVERHEAD_NS:.0f} ns) |")
        out.append("| ---: | ---: | ---: |")
        out.append(f"| {nj:.0f} ns | {ac:.0f} ns | {diff:+.0f} ns "
                   f"{verdict(diff <= TARGET_OVERHEAD_NS)} |")
        out.append("")
    if startups:
        out.append("**Start-up**, in fresh child processes with small inputs, so that the first "
                   "call is all compile (or cache load). *Cold*: the first call with an empty "
                   "cache directory (njit: no cache). *Warm*: the first call in a new process "
                   "after a cold one filled the cache; the target compares it with the cold "
                   "first call. The imports before the first call (NumPy, Numba, loopscale) "
                   "are the same for any Numba code and are shown apart.")
        out.append("")
        out.append(f"| kernel | njit first call | accelerate first call, cold | accel / njit "
                   f"(≤ {TARGET_COMPILE_RATIO}) | accelerate first call, warm | warm / cold "
                   f"(≤ {TARGET_WARM_PERCENT:.0f} %) | njit(cache=True) warm first call "
                   "(% of njit's compile) | accelerate warm: imports → result |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in startups:
            out.append(
                f"| {s.name} | {fmt_time(s.njit_compile)} | {fmt_time(s.accel_cold)} | "
                f"{s.compile_ratio:.2f} {verdict(s.compile_ratio <= TARGET_COMPILE_RATIO)} | "
                f"{fmt_time(s.accel_warm_call)} | "
                f"{s.warm_percent:.1f} % {verdict(s.warm_percent <= TARGET_WARM_PERCENT)} | "
                f"{fmt_time(s.njit_warm_call)} ({s.njit_warm_percent:.0f} %) | "
                f"{fmt_time(s.accel_warm_total)} |")
    out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats: a smoke test of a few seconds")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repeats per measurement (default 21; 3 with --quick)")
    parser.add_argument("--startup-repeat", type=int, default=None,
                        help="child processes per start-up measurement (default 3; 1 with "
                        "--quick)")
    parser.add_argument("--kernels", metavar="NAMES",
                        help="comma-separated kernels to run (default: all): "
                        + ", ".join(c.name for c in FULL))
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the start-up measurements (child processes)")
    parser.add_argument("--startup-only", action="store_true",
                        help="only the start-up measurements (no throughput, no call overhead)")
    parser.add_argument("--output", metavar="FILE", help="also write the Markdown table here")
    args = parser.parse_args(argv)
    ensure_bench_env(argv)

    kernels = load_kernels()
    import numba
    import numpy as np

    import loopscale

    cases = QUICK if args.quick else FULL
    if args.kernels:
        wanted = [k.strip() for k in args.kernels.split(",") if k.strip()]
        unknown = sorted(set(wanted) - {c.name for c in cases})
        if unknown:
            parser.error(f"unknown kernels {unknown}; choose from {[c.name for c in cases]}")
        cases = tuple(c for c in cases if c.name in wanted)
    repeats = args.repeat or (3 if args.quick else 21)
    startup_repeats = args.startup_repeat or (1 if args.quick else 3)
    sample_s = 0.002 if args.quick else 0.1
    startup_names = [] if args.no_startup else [c.name for c in cases]
    if args.quick and not args.kernels and not args.no_startup:
        startup_names = ["sum_of_squares"]

    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"warning: the 1-minute load average is {load_before:.2f}: other processes "
              "compete for the cores and will add noise", file=sys.stderr)
    # In-process compiles go to a private, throw-away cache.
    own_cache = tempfile.mkdtemp(prefix="loopscale-bench-cache-")
    os.environ["LOOPSCALE_CACHE_DIR"] = own_cache
    try:
        rows = []
        overhead: tuple[float, float, float] | None = None
        for case in [] if args.startup_only else cases:
            print(f"timing {case.name} ...", file=sys.stderr, flush=True)
            rows.append(measure_throughput(kernels, case, repeats, sample_s))
        if not args.startup_only:
            print("timing call overhead ...", file=sys.stderr, flush=True)
            overhead = measure_overhead(kernels, repeats, 20_000 if args.quick else 200_000)
        startups = []
        for name in startup_names:
            print(f"timing start-up of {name} ...", file=sys.stderr, flush=True)
            startups.append(measure_startup(name, startup_repeats))
    finally:
        shutil.rmtree(own_cache, ignore_errors=True)

    meta = {
        "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {loopscale.config.usable_cores()} usable cores"
                   f"{' (--quick)' if args.quick else ''}",
        "python": platform.python_version(), "numba": numba.__version__,
        "numpy": np.__version__, "loopscale": loopscale.__version__,
        "repeats": str(repeats),
        "level": os.environ.get("LOOPSCALE_LEVEL", ""),
        "load": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
    }
    table = render(rows, overhead, startups, meta)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n", encoding="utf-8")
    missed = (
        [r.case.name for r in rows if r.ratio > TARGET_RATIO or r.speedup < TARGET_SPEEDUP]
        + (["call overhead"] if overhead and overhead[2] > TARGET_OVERHEAD_NS else [])
        + [f"start-up {s.name}" for s in startups
           if s.compile_ratio > TARGET_COMPILE_RATIO or s.warm_percent > TARGET_WARM_PERCENT])
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
