"""Tutorial 1 — profile, then accelerate.

The workflow loopscale is built for, on one core:

1. Profile the plain-Python script and find the loop that takes the time.
2. Decorate the function holding that loop with ``@accelerate``.
3. Ask the compiler what it found: ``f.explain()``.
4. Check that the compiled function returns what the Python one does.
5. Time it — after the first call, which compiles.

Run it::

    python tutorials/01_accelerate.py               # about 200,000 options
    python tutorials/01_accelerate.py --size small  # a few seconds, for tests

The kernel prices European options with the Black–Scholes formula.  It calls
a helper, ``cnd``; only the entry point is decorated, and the helper is
compiled with it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import sys
import time

import numpy as np

from loopscale import accelerate

INV_SQRT2 = 1.0 / math.sqrt(2.0)


def cnd(d):
    """Cumulative distribution function of the standard normal distribution."""
    return 0.5 * (1.0 + math.erf(d * INV_SQRT2))


# Step 2 is this one line.  Delete it and the script still runs — as Python.
@accelerate
def black_scholes(stock, strike, years, rate, vol, call, put):
    """Prices of European call and put options, written as a plain loop."""
    for i in range(stock.shape[0]):
        s = stock[i]
        k = strike[i]
        t = years[i]
        sqrt_t = math.sqrt(t)
        d1 = (math.log(s / k) + (rate + 0.5 * vol * vol) * t) / (vol * sqrt_t)
        d2 = d1 - vol * sqrt_t
        discount = math.exp(-rate * t)
        call[i] = s * cnd(d1) - k * discount * cnd(d2)
        put[i] = k * discount * (1.0 - cnd(d2)) - s * (1.0 - cnd(d1))


RATE = 0.02
VOL = 0.30
SIZES = {"small": 20_000, "medium": 200_000, "large": 2_000_000}


def make_options(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random stock prices, strikes and years to expiry for *n* options."""
    rng = np.random.default_rng(seed)
    return rng.uniform(5.0, 30.0, n), rng.uniform(1.0, 100.0, n), rng.uniform(0.25, 10.0, n)


def best_time(func, *args, repeat: int = 5) -> float:
    """The best of *repeat* timings of ``func(*args)``, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium",
                        help="number of options: small (tests), medium (default), large")
    n = SIZES[parser.parse_args(argv).size]
    stock, strike, years = make_options(n)
    # Outputs are allocated once, outside anything we time, and reused.
    call, put = np.empty(n), np.empty(n)
    call_py, put_py = np.empty(n), np.empty(n)
    python_version = black_scholes.py_func  # the undecorated function

    print(f"== 1. Profile the plain-Python version ({n:,} options)")
    profiler = cProfile.Profile()
    profiler.runcall(python_version, stock, strike, years, RATE, VOL, call_py, put_py)
    report = io.StringIO()
    pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(4)
    for line in report.getvalue().splitlines():
        if "ncalls" in line or "black_scholes" in line or "cnd" in line or "erf" in line:
            print("   ", line.strip())
    print("    -> the time is spent in the loop of black_scholes and the helper it calls\n"
          "       for every option: that loop is what to accelerate.\n")

    print("== 2. Decorate it: `@accelerate` on black_scholes (see the source)\n")

    print("== 3. What the compiler found")
    t0 = time.perf_counter()
    black_scholes(stock, strike, years, RATE, VOL, call, put)  # first call: compiles
    first_call = time.perf_counter() - t0
    print("    " + black_scholes.explain().replace("\n", "\n    "))
    print(f"    parallel: {black_scholes.analysis.parallel}; the first call took "
          f"{first_call:.2f} s (compiling, or loading from the cache)\n")

    print("== 4. Check the result against Python")
    black_scholes(stock, strike, years, RATE, VOL, call, put)
    scale = float(np.abs(call_py).max())
    agree = (np.allclose(call, call_py, rtol=1e-12, atol=1e-12 * scale)
             and np.allclose(put, put_py, rtol=1e-12, atol=1e-12 * scale))
    worst = float(np.max(np.abs(call - call_py)))
    print(f"    largest difference in the call prices: {worst:.1e}")
    if not agree:
        print("    results DIFFER from Python", file=sys.stderr)
        return 1
    print("    results agree with Python (rtol 1e-12)\n")

    print("== 5. Time it (best of several calls, after the first)")
    t_python = best_time(python_version, stock, strike, years, RATE, VOL, call_py, put_py,
                         repeat=1 if n > 100_000 else 3)
    t_accel = best_time(black_scholes, stock, strike, years, RATE, VOL, call, put)
    print(f"    Python:      {t_python * 1e3:10.2f} ms")
    print(f"    accelerate:  {t_accel * 1e3:10.2f} ms   ({t_python / t_accel:,.0f}x faster)")
    print("\nDone: profiled, decorated, explained, checked and timed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
