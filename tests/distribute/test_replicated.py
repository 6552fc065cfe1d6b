"""Replicated mode under a real mpiexec: every rank holds the serial result, to the bit."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.mpi

#: Kernels of every shape the exchange must handle, checked against the serial
#: level at many sizes (0, 1, fewer iterations than ranks, primes, uneven).
KERNELS = r'''
import math, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def nbody(pos, mass):                       # 2-D output allocated inside, rows on axis 0
    n = mass.shape[0]
    acc = np.zeros_like(pos)
    for i in range(n):
        ax = 0.0
        ay = 0.0
        for j in range(n):
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            r2 = dx * dx + dy * dy + 0.01
            inv = mass[j] / (r2 * math.sqrt(r2))
            ax += dx * inv
            ay += dy * inv
        acc[i, 0] = ax
        acc[i, 1] = ay
    return acc


@accelerate
def stats(x):                               # float reductions: sum, max, product-ish
    s = 0.0
    m = -1e300
    q = 1.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
        m = max(m, x[i])
        q *= 1.0 + x[i] * 1e-3
    return s, m, q


@accelerate
def int_total(k):                           # integer reduction
    t = 0
    for i in range(k.shape[0]):
        t += k[i] * (i % 7)
    return t


@accelerate
def columns(a, out):                        # the loop variable indexes axis 1
    for j in range(a.shape[1]):
        for i in range(a.shape[0]):
            out[i, j] = a[i, j] * 2.0 + j


@accelerate
def stencil(u, out):                        # reads at offsets, writes the interior
    for i in range(1, u.shape[0] - 1):
        out[i] = 0.25 * u[i - 1] + 0.5 * u[i] + 0.25 * u[i + 1]


@accelerate
def backwards(x, out):                      # negative step
    for i in range(x.shape[0] - 1, -1, -1):
        out[i] = x[i] * 3.0 - i


@accelerate
def strided(x, out):                        # step 3 from 1, with a reduction
    s = 0.0
    for i in range(1, x.shape[0], 3):
        out[i] = math.sin(x[i])
        s += out[i]
    return s


@accelerate
def triangle(x):                            # uneven work per iteration, f32 output
    n = x.shape[0]
    out = np.zeros(n, dtype=np.float32)
    for i in range(n):
        e = 0.0
        for j in range(i + 1, n):
            e += 1.0 / (1.0 + abs(x[i] - x[j]))
        out[i] = e
    return out


@accelerate
def mandel(xs, ys, maxiter, counts):        # uneven work, int output, 2-D
    for i in range(ys.shape[0]):
        for j in range(xs.shape[0]):
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + xs[j], 2.0 * zr * zi + ys[i]
                k += 1
            counts[i, j] = k


@accelerate
def cplx(z, out):                           # complex output and reduction
    t = 0j
    for i in range(z.shape[0]):
        out[i] = z[i] * z[i] + 1j
        t += out[i]
    return t


@accelerate
def argmax_last(k):                         # the position of a max, ties: the last
    best = -1000
    at = -1
    for i in range(k.shape[0]):
        if k[i] >= best:
            best = k[i]
            at = i
    return best, at


@accelerate
def histogram(k):                           # adds into an array at any index; a flag
    h = np.zeros(7, np.int64)
    w = np.zeros(7)
    neg = False
    for i in range(k.shape[0]):
        h[k[i] % 7] += 1
        w[k[i] % 7] += 0.1 * k[i]
        if k[i] < -45:
            neg = True
    return h, w, neg


@accelerate
def symmetric(x):                           # a triangle and its mirror image
    n = x.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            D[i, j] = D[j, i] = abs(x[i] - x[j]) * (1.0 + x[j])
    return D


@accelerate
def running_rows(out):                      # a number per row if 1-D; a chain of rows if 2-D
    for i in range(1, out.shape[0]):
        row = out[i]
        row += out[i - 1]


def run_all(n, rng):
    pos = rng.random((n, 2))
    mass = rng.random(n) + 0.5
    x = rng.random(n)
    k = rng.integers(-50, 50, n)
    a = rng.random((3, n))
    z = rng.random(n) + 1j * rng.random(n)
    xs = np.linspace(-2.0, 0.6, 17)
    ys = np.linspace(-1.2, 1.2, n)
    res = {}
    res["nbody"] = nbody(pos, mass)
    res["stats"] = stats(x)
    res["int_total"] = int_total(k)
    res["argmax_last"] = argmax_last(k)
    res["histogram"] = histogram(k)
    res["symmetric"] = symmetric(x[:200])
    out = np.full((3, n), -1.0); columns(a, out); res["columns"] = out
    out = np.full(n, -1.0); stencil(x, out); res["stencil"] = out
    out = np.full(n, -1.0); backwards(x, out); res["backwards"] = out
    out = np.full(n, -1.0); res["strided_sum"] = strided(x, out); res["strided"] = out
    res["triangle"] = triangle(x)
    counts = np.zeros((n, 17), dtype=np.int32); mandel(xs, ys, 60, counts)
    res["mandel"] = counts
    out = np.zeros(n, dtype=np.complex128); res["cplx_sum"] = cplx(z, out); res["cplx"] = out
    out = rng.random((n, 3)); running_rows(out); res["rows2d"] = out
    out = rng.random(n); running_rows(out); res["rows1d"] = out
    return res


def as_bytes(value):
    if isinstance(value, tuple):
        return b"|".join(as_bytes(v) for v in value)
    return np.asarray(value).tobytes() + str(np.asarray(value).dtype).encode()


SIZES = sorted({0, 1, 2, 3, 5, 7, 13, 97, 1009, 2048})
rng_seed = 12345
failures = []
for n in SIZES:
    with loopscale.level("serial"):
        want = run_all(n, np.random.default_rng(rng_seed + n))
    with loopscale.level("mpi"):
        got = run_all(n, np.random.default_rng(rng_seed + n))
    for name in want:
        if as_bytes(want[name]) != as_bytes(got[name]):
            failures.append(f"{name} n={n}")
me, size = distribute.rank(), distribute.size()
print(f"rank {me}/{size}: " + ("OK" if not failures else "DIFFER " + ", ".join(failures)),
      flush=True)
print(f"rank {me} mpi4py.MPI loaded: {'mpi4py.MPI' in sys.modules}", flush=True)
sys.exit(1 if failures else 0)
'''


@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_every_rank_holds_the_serial_result_to_the_bit(mpi_warm, nprocs: int) -> None:
    run = mpi_warm(KERNELS, nprocs)
    assert run.returncode == 0, run.describe()
    for r in range(nprocs):
        assert f"rank {r}/{nprocs}: OK" in run.stdout, run.describe()


def test_one_process_without_launcher_runs_the_same_script_without_mpi(mpi_warm) -> None:
    run = mpi_warm(KERNELS, how="python")
    assert run.returncode == 0, run.describe()
    assert "rank 0/1: OK" in run.stdout, run.describe()
    assert "rank 0 mpi4py.MPI loaded: False" in run.stdout, run.describe()


#: Each rank stamps the iterations it ran with its own rank number (the inputs
#: differ on purpose, so the agreement check is off): the gathered stamps show
#: that the work was really split, evenly, and that every rank got the same map.
OWNERS = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def stamp(x, r, out):
    for i in range(x.shape[0]):
        w = 0.0
        for j in range(i % 97):          # uneven work
            w += x[j % x.shape[0]]
        out[i] = r + 0.0 * w


me, size = distribute.rank(), distribute.size()
n = 20011
out = np.full(n, -1.0)
with loopscale.level("mpi", check="none"):
    stamp(np.ones(n), float(me), out)
counts = np.bincount(out.astype(np.int64), minlength=size)
every = distribute.comm().allgather(out.tobytes())
same = all(b == every[0] for b in every)
runs = int(np.count_nonzero(np.diff(out)))  # a block partition would give size-1
print(f"rank {me}: counts={counts.tolist()} same={same} runs={runs}", flush=True)
ok = same and (out >= 0).all() and counts.min() > 0.8 * n / size and runs > 4 * size
sys.exit(0 if ok else 1)
'''


def test_blocks_are_dealt_round_robin_over_all_ranks(mpi) -> None:
    run = mpi(OWNERS, 3)
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("same=True") == 3, run.describe()


#: Eight ranks start with an empty cache directory and compile the same kernel
#: into it at once; a second job then loads it from the cache.
CACHE = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


def helper(v):
    return v * v + 1.0


@accelerate
def poly(x):
    out = np.empty_like(x)
    s = 0.0
    for i in range(x.shape[0]):
        out[i] = helper(x[i]) - 0.5 * x[i]
        s += out[i]
    return out, s


x = np.linspace(0.0, 3.0, 4099)
with loopscale.level("mpi"):
    got, s = poly(x)
want = x * x + 1.0 - 0.5 * x
with loopscale.level("serial"):
    ref, rs = poly(x)
ok = np.array_equal(got, want) and got.tobytes() == ref.tobytes() and s == rs
print(f"rank {distribute.rank()}: {'OK' if ok else 'WRONG'}", flush=True)
sys.exit(0 if ok else 1)
'''


@pytest.mark.slow
def test_eight_ranks_compiling_into_one_cache_get_correct_results(mpi) -> None:
    script = mpi.write(CACHE)
    for attempt in ("cold", "warm"):
        run = mpi(script, 8)
        assert run.returncode == 0, f"{attempt} cache:\n" + run.describe()
        assert run.stdout.count(": OK") == 8, f"{attempt} cache:\n" + run.describe()
    assert any(mpi.cache.rglob("*")), "nothing was cached"
