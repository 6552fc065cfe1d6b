"""The threads level against the serial level and against Numba ``prange``.

Run from the repository root::

    python benchmarks/threads_vs_serial.py                # full sizes, ~2-3 minutes
    python benchmarks/threads_vs_serial.py --quick        # tiny sizes (a smoke test)
    python benchmarks/threads_vs_serial.py --workers 1 2 4 8 16 --scale 8 --output table.md

For each kernel, the same plain-Python source runs as

* ``serial``: ``loopscale.accelerate`` at ``level("serial")`` (one core);
* ``threads``: the same decorated function at ``level("threads", max_workers=W)``;
* ``prange``: a hand-written ``numba.njit(parallel=True, nogil=True)`` version
  whose outer loop is ``numba.prange`` (Numba's default static schedule and
  threading layer; ``numba.set_num_threads(W)``).

Every repeat runs all variants once, in rotating order, and the table reports
the median time of each and the ratios: ``serial/threads`` (the speedup) and
``threads/prange`` (<= 1.0 means loopscale is as fast as Numba's own parallel
loop or faster).  Outputs are allocated by the kernels themselves, so the
allocator is told to keep freed memory (``MALLOC_MMAP_MAX_=0``, large
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_ARENA_MAX=1``; the script re-executes
itself with them) and every variant is run twice before timing.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time

_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 34), "MALLOC_ARENA_MAX": "1"}
if any(os.environ.get(k) != v for k, v in _ENV.items()) and __name__ == "__main__":
    os.environ.update(_ENV)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numba  # noqa: E402
import numpy as np  # noqa: E402

import loopscale  # noqa: E402
from loopscale import accelerate  # noqa: E402

# ---------------------------------------------------------------------------
# kernels: plain Python, decorated below; prange twins written by hand


def cnd(d):
    return 0.5 * (1.0 + math.erf(d / math.sqrt(2.0)))


def black_scholes(S, K, T, r, v):
    out = np.empty_like(S)
    for i in range(S.shape[0]):
        d1 = (math.log(S[i] / K[i]) + (r + 0.5 * v * v) * T[i]) / (v * math.sqrt(T[i]))
        d2 = d1 - v * math.sqrt(T[i])
        out[i] = S[i] * cnd(d1) - K[i] * math.exp(-r * T[i]) * cnd(d2)
    return out


def nbody(pos, mass):
    n = pos.shape[0]
    acc = np.zeros_like(pos)
    for i in range(n):
        ax = 0.0
        ay = 0.0
        az = 0.0
        for j in range(n):
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            dz = pos[j, 2] - pos[i, 2]
            r2 = dx * dx + dy * dy + dz * dz + 1e-3
            inv = mass[j] / (r2 * math.sqrt(r2))
            ax += dx * inv
            ay += dy * inv
            az += dz * inv
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az
    return acc


def nbody_steps(pos0, vel0, mass, steps, dt):
    """Time steps of a leapfrog n-body: the step loop is sequential, its force and
    update loops are independent (run on the pool at each step: see the guide's
    "Parallel loops inside a sequential loop")."""
    pos = pos0.copy()
    vel = vel0.copy()
    n = pos.shape[0]
    acc = np.zeros_like(pos)
    for _s in range(steps):
        for i in range(n):
            ax = 0.0
            ay = 0.0
            az = 0.0
            for j in range(n):
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                dz = pos[j, 2] - pos[i, 2]
                r2 = dx * dx + dy * dy + dz * dz + 1e-3
                inv = mass[j] / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
                az += dz * inv
            acc[i, 0] = ax
            acc[i, 1] = ay
            acc[i, 2] = az
        for i in range(n):
            for k in range(3):
                vel[i, k] += dt * acc[i, k]
                pos[i, k] += dt * vel[i, k]
    return pos


def kde(points, data, bw):
    out = np.empty(points.shape[0])
    norm = 1.0 / (data.shape[0] * bw * math.sqrt(2.0 * math.pi))
    for i in range(points.shape[0]):
        s = 0.0
        for j in range(data.shape[0]):
            z = (points[i] - data[j]) / bw
            s += math.exp(-0.5 * z * z)
        out[i] = s * norm
    return out


def mandelbrot(h, w, maxiter):
    out = np.zeros((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            cr = -2.0 + 3.0 * x / w
            ci = -1.0 + 2.0 * y / h
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                k += 1
            out[y, x] = k
    return out


def pair_energy(x):
    e = 0.0
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            d = abs(x[i] - x[j]) + 1.0
            e += 1.0 / (d * d)
    return e


def histogram(x, w, nbins):
    h = np.zeros(nbins)
    for i in range(x.shape[0]):
        b = int(x[i] * nbins)
        if b >= nbins:
            b = nbins - 1
        h[b] += w[i]
    return h


def counts_into(x, h):
    # a histogram into the caller's array (a sum at any index into an argument)
    h[:] = 0
    m = h.shape[0]
    for i in range(x.shape[0]):
        b = int(x[i] * m)
        if b >= m:
            b = m - 1
        h[b] += 1
    return h


def nearest(X, q):
    best = np.inf
    at = -1
    for i in range(X.shape[0]):
        s = 0.0
        for k in range(X.shape[1]):
            t = X[i, k] - q[k]
            s += t * t
        if s < best:
            best = s
            at = i
    return at, best


_cnd_nb = numba.njit(nogil=True)(cnd)


@numba.njit(parallel=True, nogil=True)
def black_scholes_prange(S, K, T, r, v):
    out = np.empty_like(S)
    for i in numba.prange(S.shape[0]):
        d1 = (math.log(S[i] / K[i]) + (r + 0.5 * v * v) * T[i]) / (v * math.sqrt(T[i]))
        d2 = d1 - v * math.sqrt(T[i])
        out[i] = S[i] * _cnd_nb(d1) - K[i] * math.exp(-r * T[i]) * _cnd_nb(d2)
    return out


@numba.njit(parallel=True, nogil=True)
def nbody_prange(pos, mass):
    n = pos.shape[0]
    acc = np.zeros_like(pos)
    for i in numba.prange(n):
        ax = 0.0
        ay = 0.0
        az = 0.0
        for j in range(n):
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            dz = pos[j, 2] - pos[i, 2]
            r2 = dx * dx + dy * dy + dz * dz + 1e-3
            inv = mass[j] / (r2 * math.sqrt(r2))
            ax += dx * inv
            ay += dy * inv
            az += dz * inv
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az
    return acc


@numba.njit(parallel=True, nogil=True)
def nbody_steps_prange(pos0, vel0, mass, steps, dt):
    pos = pos0.copy()
    vel = vel0.copy()
    n = pos.shape[0]
    acc = np.zeros_like(pos)
    for _s in range(steps):
        for i in numba.prange(n):
            ax = 0.0
            ay = 0.0
            az = 0.0
            for j in range(n):
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                dz = pos[j, 2] - pos[i, 2]
                r2 = dx * dx + dy * dy + dz * dz + 1e-3
                inv = mass[j] / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
                az += dz * inv
            acc[i, 0] = ax
            acc[i, 1] = ay
            acc[i, 2] = az
        for i in numba.prange(n):
            for k in range(3):
                vel[i, k] += dt * acc[i, k]
                pos[i, k] += dt * vel[i, k]
    return pos


@numba.njit(parallel=True, nogil=True)
def kde_prange(points, data, bw):
    out = np.empty(points.shape[0])
    norm = 1.0 / (data.shape[0] * bw * math.sqrt(2.0 * math.pi))
    for i in numba.prange(points.shape[0]):
        s = 0.0
        for j in range(data.shape[0]):
            z = (points[i] - data[j]) / bw
            s += math.exp(-0.5 * z * z)
        out[i] = s * norm
    return out


@numba.njit(parallel=True, nogil=True)
def mandelbrot_prange(h, w, maxiter):
    out = np.zeros((h, w), dtype=np.int64)
    for y in numba.prange(h):
        for x in range(w):
            cr = -2.0 + 3.0 * x / w
            ci = -1.0 + 2.0 * y / h
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                k += 1
            out[y, x] = k
    return out


@numba.njit(parallel=True, nogil=True)
def pair_energy_prange(x):
    e = 0.0
    for i in numba.prange(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            d = abs(x[i] - x[j]) + 1.0
            e += 1.0 / (d * d)
    return e


@numba.njit(parallel=True, nogil=True)
def counts_into_prange(x, h):
    chunks = numba.get_num_threads()
    n, m = x.shape[0], h.shape[0]
    local = np.zeros((chunks, m), dtype=h.dtype)
    for c in numba.prange(chunks):
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            b = int(x[i] * m)
            if b >= m:
                b = m - 1
            local[c, b] += 1
    h[:] = local.sum(axis=0)
    return h


@numba.njit(parallel=True, nogil=True)
def histogram_prange(x, w, nbins):
    # Numba's prange has no reduction into an array at any index (`h[b] += ...`
    # in a prange races): the usual hand-written form, a histogram per chunk
    chunks = numba.get_num_threads()
    n = x.shape[0]
    local = np.zeros((chunks, nbins))
    for c in numba.prange(chunks):
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            b = int(x[i] * nbins)
            if b >= nbins:
                b = nbins - 1
            local[c, b] += w[i]
    return local.sum(axis=0)


@numba.njit(parallel=True, nogil=True)
def nearest_prange(X, q):
    # no argmin reduction in prange either: a best per chunk, then the first best
    chunks = numba.get_num_threads()
    n = X.shape[0]
    bests = np.full(chunks, np.inf)
    ats = np.full(chunks, -1)
    for c in numba.prange(chunks):
        best = np.inf
        at = -1
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            s = 0.0
            for k in range(X.shape[1]):
                t = X[i, k] - q[k]
                s += t * t
            if s < best:
                best = s
                at = i
        bests[c] = best
        ats[c] = at
    best = np.inf
    at = -1
    for c in range(chunks):
        if bests[c] < best:
            best = bests[c]
            at = ats[c]
    return at, best


def cases(scale: float) -> list[tuple[str, object, object, tuple]]:
    """The kernels and their inputs; *scale* multiplies the work of each
    (linear sizes by *scale*, the pairwise and 2-D ones by its square root)."""
    rng = np.random.default_rng(42)
    s = scale
    n_bs = int(2_000_000 * s)
    n_nb = int(2000 * math.sqrt(s))
    m_kde = int(3000 * math.sqrt(s))
    n_tri = int(8000 * math.sqrt(s))
    h, w = (int(800 * math.sqrt(s)), int(1200 * math.sqrt(s)))
    return [
        ("n-body forces", nbody, nbody_prange,
         (rng.random((n_nb, 3)), rng.random(n_nb) + 0.5)),
        ("n-body, 10 time steps", nbody_steps, nbody_steps_prange,
         (rng.random((n_nb // 2, 3)), np.zeros((n_nb // 2, 3)), rng.random(n_nb // 2) + 0.5,
          10, 1e-4)),
        ("Black-Scholes (helper)", black_scholes, black_scholes_prange,
         (rng.random(n_bs) + 1.0, rng.random(n_bs) + 1.0, rng.random(n_bs) + 0.1, 0.05, 0.2)),
        ("Gaussian KDE", kde, kde_prange, (rng.random(m_kde), rng.random(m_kde), 0.1)),
        ("Mandelbrot", mandelbrot, mandelbrot_prange, (h, w, 200)),
        ("triangular pair energy", pair_energy, pair_energy_prange, (rng.random(n_tri),)),
        ("weighted histogram", histogram, histogram_prange,
         (rng.random(n_bs * 2), rng.random(n_bs * 2), 64)),
        ("counts into an argument", counts_into, counts_into_prange,
         (rng.random(n_bs * 2), np.zeros(64, np.int64))),
        ("nearest point (argmin)", nearest, nearest_prange,
         (rng.random((n_bs, 4)), np.full(4, 0.5))),
    ]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _timed(fn, args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def measure(workers_list: list[int], repeats: int, scale: float) -> list[dict[str, object]]:
    rows = []
    for label, py, twin, args in cases(scale):
        f = accelerate(py)
        with loopscale.level("serial"):
            ref = f(*args)
        variants: dict[str, object] = {}

        def serial(f=f, args=args):
            with loopscale.level("serial"):
                return _timed(f, args)

        variants["serial"] = serial
        for w in workers_list:
            def threads(f=f, args=args, w=w):
                with loopscale.level("threads", max_workers=w):
                    return _timed(f, args)

            def prange(twin=twin, args=args, w=w):
                numba.set_num_threads(min(w, numba.config.NUMBA_NUM_THREADS))
                return _timed(twin, args)

            variants[f"threads{w}"] = threads
            variants[f"prange{w}"] = prange
            with loopscale.level("threads", max_workers=w):
                got = f(*args)
            same = np.array_equal(np.asarray(got), np.asarray(ref))
            if not same:
                raise SystemExit(f"{label}: threads({w}) differs from serial")
        for v in variants.values():  # compile, warm caches and pages
            v()
            v()
        times: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for r in range(repeats):
            order = names[r % len(names):] + names[: r % len(names)]
            for k in order:
                times[k].append(variants[k]())  # type: ignore[operator]
                # Let the last runtime's threads go idle before the next one is
                # timed: after a parallel region, libgomp's workers (Numba's
                # prange on the omp layer) spin for about 6 ms and would take a
                # core from whatever runs next (measured: the threads level
                # 8.4 ms right after prange, 6.5 ms otherwise).  The wait spins
                # rather than sleeps: on these VMs a core left idle for tens of
                # milliseconds takes long to wake, and every variant's second
                # thread would start late (measured: 2-thread runs as slow as
                # 1-thread ones after a 50 ms sleep).
                _spin(0.010)
        med = {k: statistics.median(v) for k, v in times.items()}
        for w in workers_list:
            rows.append({
                "kernel": label, "workers": w, "serial_s": med["serial"],
                "threads_s": med[f"threads{w}"], "prange_s": med[f"prange{w}"],
                "speedup": med["serial"] / med[f"threads{w}"],
                "vs_prange": med[f"threads{w}"] / med[f"prange{w}"],
            })
    return rows


def table(rows: list[dict[str, object]]) -> str:
    out = ["| kernel | workers | serial (ms) | threads (ms) | prange (ms) | speedup over serial "
           "| threads / prange |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['kernel']} | {r['workers']} | {r['serial_s'] * 1e3:.1f} | "
                   f"{r['threads_s'] * 1e3:.1f} | {r['prange_s'] * 1e3:.1f} | "
                   f"{r['speedup']:.2f}x | {r['vs_prange']:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--quick", action="store_true", help="--scale 0.05 and 3 repeats")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply each kernel's work by this (8 or 16 for a many-core host)")
    p.add_argument("--output", default=None)
    a = p.parse_args(argv)
    workers = a.workers or [loopscale.config.usable_cores()]
    repeats = 3 if a.quick else a.repeats
    rows = measure(workers, repeats, 0.05 if a.quick else a.scale)
    head = (f"threads level vs serial vs Numba prange — {datetime.date.today()}, "
            f"{platform.node()}, {loopscale.config.usable_cores()} usable cores, "
            f"numba {numba.__version__}, layer {numba.threading_layer()}, median of {repeats}\n"
            f"command: python benchmarks/threads_vs_serial.py "
            f"{' '.join(sys.argv[1:])}".rstrip())
    text = head + "\n\n" + table(rows) + "\n"
    print(text)
    if a.output:
        with open(a.output, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
