"""A corpus of plain-Python loop kernels for testing and benchmarking ``accelerate``.

Every kernel here is an ordinary, undecorated Python function: the tests
decorate them with :func:`loopscale.accelerate` and compare the compiled result
with the plain-Python one; the benchmarks time them.  Module-level helpers
(``cnd``, ``gauss_cdf``, ``gelu``, ``_stash``) are called from kernels so that
transitive compilation of helpers is exercised.

Each entry of :data:`KERNELS` is a :class:`Kernel`: the function, an input
generator ``make_args(n, rng)`` that returns a fresh tuple of arguments for a
problem of "size" ``n`` (for linear kernels the number of loop iterations; for
quadratic and cubic kernels a side length derived from ``n`` so that the work
grows roughly linearly with ``n``), the expected verdict of the loop analysis
(``parallel``), a ``kind`` label, the expected reductions of the analysed loop
(``None`` where the test should not check them) and whether the compiled result
must equal the Python result bit for bit (``exact``).

Comparison rules (the compiler's documented promise):

* integers, and every float result that is not a reduction over the analysed
  loop, must match exactly when ``fastmath=False``, except results through
  ``exp``, ``log``, ``sin``... (glibc's vector versions, within 4 units in the
  last place of the C library's: ``black_scholes``, ``gelu_map``);
* float reductions are combined per fixed block, so they may differ by
  rounding: ``rtol=1e-10`` for float64 and complex128, ``rtol=1e-4`` for
  float32 (see :func:`assert_results_match`).

All generated data avoids divisions by zero, overflow and cancellation-prone
sums, so that both NumPy scalars (in Python) and Numba see the same values and
no NumPy ``RuntimeWarning`` is raised.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopscale import prange

__all__ = [
    "Kernel",
    "KERNELS",
    "KERNELS_BY_NAME",
    "assert_results_match",
    "accelerated",
    "copy_args",
    "line_of",
]


def line_of(func, text: str) -> int:
    """Absolute line number (in func's file) of the one source line containing *text*."""
    lines, start = inspect.getsourcelines(func)
    hits = [start + k for k, line in enumerate(lines) if text in line]
    assert len(hits) == 1, f"{text!r} occurs {len(hits)} times in {func.__name__}"
    return hits[0]


# ---------------------------------------------------------------------------
# helpers (compiled transitively; never decorated)
# ---------------------------------------------------------------------------

A1 = 0.31938153
A2 = -0.356563782
A3 = 1.781477937
A4 = -1.821255978
A5 = 1.330274429
RSQRT2PI = 0.39894228040143267794
INV_SQRT2 = 0.7071067811865476


def cnd(d):
    """Cumulative normal distribution (Abramowitz-Stegun polynomial; math.exp)."""
    k = 1.0 / (1.0 + 0.2316419 * abs(d))
    ret = RSQRT2PI * math.exp(-0.5 * d * d) * (k * (A1 + k * (A2 + k * (A3 + k * (A4 + k * A5)))))
    if d > 0:
        ret = 1.0 - ret
    return ret


def gauss_cdf(v):
    """Normal CDF through math.erf."""
    return 0.5 * (1.0 + math.erf(v * INV_SQRT2))


def gelu(v):
    """A helper that calls another helper."""
    return v * gauss_cdf(v)


def _stash(buf, v):
    """A helper that writes a shared array (makes the calling loop unsafe)."""
    buf[0] = v


# ---------------------------------------------------------------------------
# elementwise maps
# ---------------------------------------------------------------------------


def axpy(a, x, y, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]


def polynomial(x, out):
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = ((2.0 * v - 3.0) * v + 0.5) * v + 1.0


def clip(x, lo, hi, out):
    for i in range(x.shape[0]):
        if x[i] < lo:
            out[i] = lo
        elif x[i] > hi:
            out[i] = hi
        else:
            out[i] = x[i]


def sqrt_or_zero_continue(x, out):
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            out[i] = 0.0
            continue
        out[i] = math.sqrt(x[i])


def double_alloc(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = 2.0 * x[i] + 1.0
    return out


def scale_returns_out(x, c, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * c
    return out


def every_third(x, out):
    for i in range(0, x.shape[0], 3):
        out[i] = x[i] * 2.0 + 1.0


def reverse_step(x, out):
    for i in range(x.shape[0] - 1, -1, -1):
        out[i] = x[i] - 0.5


def black_scholes(stock, strike, years, rate, vol, call, put):
    for i in range(stock.shape[0]):
        s = stock[i]
        k = strike[i]
        t = years[i]
        sqrt_t = math.sqrt(t)
        d1 = (math.log(s / k) + (rate + 0.5 * vol * vol) * t) / (vol * sqrt_t)
        d2 = d1 - vol * sqrt_t
        cnd_d1 = cnd(d1)
        cnd_d2 = cnd(d2)
        exp_rt = math.exp(-rate * t)
        call[i] = s * cnd_d1 - k * exp_rt * cnd_d2
        put[i] = k * exp_rt * (1.0 - cnd_d2) - s * (1.0 - cnd_d1)


def gelu_map(x, out):
    for i in range(x.shape[0]):
        out[i] = gelu(x[i])


def complex_map(z, c, out):
    for i in range(z.shape[0]):
        out[i] = z[i] * z[i] + c * z[i].conjugate()


def saxpy32(a, x, y, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]


def int_ops(x, out):
    for i in range(x.shape[0]):
        out[i] = (x[i] * x[i] - 3 * x[i] + 7) // 5 + x[i] % 7


def permute_prange(x, perm, out):
    # The analysis cannot prove out[perm[i]] independent; prange asserts it.
    for i in prange(x.shape[0]):
        out[perm[i]] = x[i] * 3.0


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------


def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


def total_explicit(x):
    s = 0.0
    for i in range(x.shape[0]):
        s = s + x[i]
    return s


def negative_total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s -= x[i]
    return s


def sum_of_squares(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


def dot(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s


def dot_zip(x, y):
    s = 0.0
    for a, b in zip(x, y):  # noqa: B905 - read by position (x[i], y[i]): what it iterates is an array
        s += a * b
    return s


def total_items(x):
    s = 0.0
    for v in x:
        s += v
    return s


def axpy_enumerate(a, x, y, out):
    for i, (u, v) in enumerate(zip(x, y)):  # noqa: B905 - as users write it
        out[i] = a * u + v


def row_norms_enumerate(m, out):
    for i, row in enumerate(m):
        t = 0.0
        for v in row:
            t += v * v
        out[i] = math.sqrt(t)


def product(x):
    p = 1.0
    for i in range(x.shape[0]):
        p *= x[i]
    return p


def count_above(x, threshold):
    c = 0
    for i in range(x.shape[0]):
        if x[i] > threshold:
            c += 1
    return c


def int_total(x):
    s = 0
    for i in range(x.shape[0]):
        s += x[i]
    return s


def sum_and_sumsq(x):
    s = 0.0
    s2 = 0.0
    for i in range(x.shape[0]):
        s += x[i]
        s2 += x[i] * x[i]
    return s, s2


def min_max_builtin(x):
    lo = np.inf
    hi = -np.inf
    for i in range(x.shape[0]):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    return lo, hi


def min_max_if(x):
    lo = np.inf
    hi = -np.inf
    for i in range(x.shape[0]):
        if x[i] < lo:
            lo = x[i]
        if x[i] > hi:
            hi = x[i]
    return lo, hi


def mean(x):
    n = x.shape[0]
    s = 0.0
    for i in range(n):
        s += x[i]
    return s / max(n, 1)


def variance(x):
    n = x.shape[0]
    s = 0.0
    s2 = 0.0
    for i in range(n):
        s += x[i]
        s2 += x[i] * x[i]
    m = s / max(n, 1)
    return s2 / max(n, 1) - m * m


def sum_positive_continue(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            continue
        s += x[i]
    return s


def weighted_reverse_step_sum(x):
    s = 0.0
    for i in range(x.shape[0] - 1, -1, -2):
        s += x[i] * (i + 1)
    return s


def complex_total(z):
    s = 0j
    for i in range(z.shape[0]):
        s += z[i]
    return s


def total32(x):
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s += x[i]
    return s


# ---------------------------------------------------------------------------
# stencils and nested loops
# ---------------------------------------------------------------------------


def stencil_1d(u, out):
    n = u.shape[0]
    for i in range(1, n - 1):
        out[i] = (u[i - 1] + u[i] + u[i + 1]) / 3


def laplacian_2d(u, out):
    n = u.shape[0]
    m = u.shape[1]
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            out[i, j] = u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1] - 4.0 * u[i, j]


def matvec(a, x, out):
    for i in range(a.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += a[i, j] * x[j]
        out[i] = s


def matmul(a, b, c):
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            acc = 0.0
            for k in range(a.shape[1]):
                acc += a[i, k] * b[k, j]
            c[i, j] = acc


def pairwise_potential(pos, out):
    n = pos.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(i + 1, n):
            d = pos[i] - pos[j]
            s += 1.0 / (d * d + 1.0)
        out[i] = s


def nbody(pos, mass, eps):
    n = mass.shape[0]
    acc = np.zeros_like(pos)
    for i in range(n):
        ax = ay = az = 0.0
        for j in range(n):
            if j != i:
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                dz = pos[j, 2] - pos[i, 2]
                r2 = dx * dx + dy * dy + dz * dz + eps
                inv = mass[j] / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
                az += dz * inv
        acc[i, 0] = ax
        acc[i, 1] = ay
        acc[i, 2] = az
    return acc


def mandelbrot(xs, ys, maxiter, counts):
    for i in range(ys.shape[0]):
        for j in range(xs.shape[0]):
            cr = xs[j]
            ci = ys[i]
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                k += 1
            counts[i, j] = k


# ---------------------------------------------------------------------------
# loops that must run sequentially (the analysis must refuse them)
# ---------------------------------------------------------------------------


def prefix_sum(x, out):
    n = x.shape[0]
    if n == 0:
        return
    out[0] = x[0]
    for i in range(1, n):
        out[i] = out[i - 1] + x[i]


def scalar_recurrence(x, out):
    acc = 0.0
    for i in range(x.shape[0]):
        acc = acc * 0.5 + x[i]
        out[i] = acc


def histogram(x, bins):
    nb = bins.shape[0]
    for i in range(x.shape[0]):
        k = int(x[i] * nb)
        if k >= nb:
            k = nb - 1
        bins[k] += 1


def scatter_store(x, idx, out):
    for i in range(x.shape[0]):
        out[idx[i]] = x[i]  # the last iteration to reach an element wins


def find_first(x, value):
    for i in range(x.shape[0]):
        if x[i] == value:
            return i
    return -1


def first_negative_break(x):
    pos = -1
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            pos = i
            break
    return pos


def helper_shared_write(x, buf, out):
    for i in range(x.shape[0]):
        _stash(buf, x[i] * 2.0)
        out[i] = buf[0] + 1.0


def heat_timestep(u, steps):
    for _t in range(steps):
        u[1:-1] = u[1:-1] + 0.1 * (u[:-2] - 2.0 * u[1:-1] + u[2:])
    return u


def reverse_in_place(out):
    n = out.shape[0]
    for i in range(n):
        out[i] = out[n - 1 - i]


def last_value(x, out):
    t = 0.0
    for i in range(x.shape[0]):
        t = x[i] * 2.0
        out[i] = t
    return t


# ---------------------------------------------------------------------------
# input generators
# ---------------------------------------------------------------------------


def _u(rng: np.random.Generator, n: int, lo: float = 0.5, hi: float = 2.0) -> np.ndarray:
    return rng.uniform(lo, hi, n)


def _normal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def _side2(n: int) -> int:
    """Side length of a 2-D problem whose element count grows like n."""
    return math.isqrt(n)


def _bodies(n: int) -> int:
    """Body count of a quadratic (all-pairs) problem: about 8 n pairs."""
    return math.isqrt(8 * n)


def _side3(n: int) -> int:
    """Side length of a cubic problem (matmul): about 4 n multiply-adds."""
    return int(round((4 * n) ** (1.0 / 3.0)))


def _args_axpy(n, rng):
    return (1.5, _normal(rng, n), _normal(rng, n), np.zeros(n))


def _args_x_out(n, rng):
    return (_normal(rng, n), np.zeros(n))


def _args_clip(n, rng):
    return (_normal(rng, n), -0.5, 0.75, np.zeros(n))


def _args_x(n, rng):
    return (_u(rng, n),)


def _args_x_normal(n, rng):
    return (_normal(rng, n),)


def _args_scale(n, rng):
    return (_normal(rng, n), 0.25, np.zeros(n))


def _args_black_scholes(n, rng):
    return (
        rng.uniform(5.0, 30.0, n),
        rng.uniform(1.0, 100.0, n),
        rng.uniform(0.25, 10.0, n),
        0.02,
        0.30,
        np.zeros(n),
        np.zeros(n),
    )


def _args_complex_map(n, rng):
    z = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    return (z, 0.5 - 0.25j, np.zeros(n, dtype=np.complex128))


def _args_complex_total(n, rng):
    return (rng.uniform(0.5, 2.0, n) + 1j * rng.uniform(0.5, 2.0, n),)


def _args_saxpy32(n, rng):
    return (
        np.float32(1.25),
        rng.standard_normal(n).astype(np.float32),
        rng.standard_normal(n).astype(np.float32),
        np.zeros(n, dtype=np.float32),
    )


def _args_total32(n, rng):
    return (rng.uniform(0.5, 2.0, n).astype(np.float32),)


def _args_int_ops(n, rng):
    return (rng.integers(-1000, 1000, n, dtype=np.int64), np.zeros(n, dtype=np.int64))


def _args_int_total(n, rng):
    return (rng.integers(-10**6, 10**6, n, dtype=np.int64),)


def _args_permute(n, rng):
    return (_normal(rng, n), rng.permutation(n).astype(np.int64), np.zeros(n))


def _args_dot(n, rng):
    return (_u(rng, n), _u(rng, n))


def _args_product(n, rng):
    return (rng.uniform(0.9, 1.1, n),)


def _args_count(n, rng):
    return (_normal(rng, n), 0.25)


def _args_mixed_sign(n, rng):
    # positive values are summed; negative ones skipped (no cancellation)
    x = _u(rng, n)
    x[rng.random(n) < 0.3] *= -1.0
    return (x,)


def _args_stencil_1d(n, rng):
    return (_normal(rng, n), np.zeros(n))


def _args_laplacian(n, rng):
    s = _side2(n)
    return (rng.standard_normal((s, s + 2)), np.zeros((s, s + 2)))


def _args_matvec(n, rng):
    s = _side2(n)
    return (rng.standard_normal((s, s + 1)), rng.standard_normal(s + 1), np.zeros(s))


def _args_matvec_rows(n, rng):
    s = _side2(n)
    return (rng.standard_normal((s, s + 1)), np.zeros(s))


def _args_matmul(n, rng):
    s = _side3(n)
    return (
        rng.standard_normal((s, s + 1)),
        rng.standard_normal((s + 1, s + 2)),
        np.zeros((s, s + 2)),
    )


def _args_pairwise(n, rng):
    m = _bodies(n)
    return (rng.standard_normal(m), np.zeros(m))


def _args_nbody(n, rng):
    m = _bodies(n)
    return (rng.standard_normal((m, 3)), rng.uniform(0.5, 2.0, m), 0.01)


def _args_mandelbrot(n, rng):
    s = _side2(n)
    xs = np.linspace(-2.0, 0.6, s + 1)
    ys = np.linspace(-1.2, 1.2, s)
    return (xs, ys, 40, np.zeros((s, s + 1), dtype=np.int64))


def _args_histogram(n, rng):
    return (rng.random(n), np.zeros(7, dtype=np.int64))


def _args_scatter_store(n, rng):
    return (rng.random(n), rng.integers(0, 5, n), np.zeros(5))


def _args_find_first(n, rng):
    x = rng.integers(0, 10, n).astype(np.float64)
    return (x, 3.0)


def _args_first_negative(n, rng):
    x = _u(rng, n)
    if n:
        x[rng.integers(0, n)] = -1.0
    return (x,)


def _args_helper_shared(n, rng):
    return (_normal(rng, n), np.zeros(1), np.zeros(n))


def _args_heat(n, rng):
    return (_normal(rng, n), 5)


def _args_reverse_in_place(n, rng):
    return (_normal(rng, n),)


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """One corpus entry.

    Attributes
    ----------
    name : str
        Unique name (the function's ``__name__``).
    func : callable
        The plain, undecorated Python function.
    make_args : callable
        ``make_args(n, rng) -> tuple`` returning fresh arguments.
    parallel : bool
        Whether the analysis must find the (outermost) loop parallel.
    kind : str
        ``"map"``, ``"reduction"``, ``"stencil"``, ``"nested"`` or ``"sequential"``.
    reductions : mapping or None
        Expected ``analysis.reductions`` of the analysed loop; ``None`` = not checked.
    exact : bool
        Whether the compiled result must equal the Python result bit for bit.
    """

    name: str
    func: Callable[..., Any]
    make_args: Callable[[int, np.random.Generator], tuple]
    parallel: bool
    kind: str
    reductions: Mapping[str, str] | None = field(default=None)
    exact: bool = True


def _k(func, make_args, parallel, kind, reductions=None, exact=True):
    return Kernel(func.__name__, func, make_args, parallel, kind, reductions, exact)


_PLUS = {"s": "+"}

KERNELS: list[Kernel] = [
    # elementwise maps: exact
    _k(axpy, _args_axpy, True, "map", {}),
    _k(polynomial, _args_x_out, True, "map", {}),
    _k(clip, _args_clip, True, "map", {}),
    _k(sqrt_or_zero_continue, _args_x_out, True, "map", {}),
    _k(double_alloc, _args_x_normal, True, "map", {}),
    _k(scale_returns_out, _args_scale, True, "map", {}),
    _k(every_third, _args_x_out, True, "map", {}),
    _k(reverse_step, _args_x_out, True, "map", {}),
    _k(black_scholes, _args_black_scholes, True, "map", {}, exact=False),  # exp, log
    _k(gelu_map, _args_x_out, True, "map", {}, exact=False),  # tanh
    _k(complex_map, _args_complex_map, True, "map", {}),
    _k(saxpy32, _args_saxpy32, True, "map", {}),
    _k(int_ops, _args_int_ops, True, "map", {}),
    _k(permute_prange, _args_permute, True, "map"),
    _k(axpy_enumerate, _args_axpy, True, "map", {}),
    # reductions: rounding may differ for floats
    _k(total, _args_x, True, "reduction", _PLUS, exact=False),
    _k(total_explicit, _args_x, True, "reduction", _PLUS, exact=False),
    _k(negative_total, _args_x, True, "reduction", _PLUS, exact=False),
    _k(sum_of_squares, _args_x, True, "reduction", _PLUS, exact=False),
    _k(dot, _args_dot, True, "reduction", _PLUS, exact=False),
    _k(dot_zip, _args_dot, True, "reduction", _PLUS, exact=False),
    _k(total_items, _args_x, True, "reduction", _PLUS, exact=False),
    _k(product, _args_product, True, "reduction", {"p": "*"}, exact=False),
    _k(count_above, _args_count, True, "reduction", {"c": "+"}),
    _k(int_total, _args_int_total, True, "reduction", _PLUS),
    _k(sum_and_sumsq, _args_x, True, "reduction", {"s": "+", "s2": "+"}, exact=False),
    _k(min_max_builtin, _args_x_normal, True, "reduction", {"lo": "min", "hi": "max"}),
    _k(min_max_if, _args_x_normal, True, "reduction", {"lo": "min", "hi": "max"}),
    _k(mean, _args_x, True, "reduction", _PLUS, exact=False),
    _k(variance, _args_x, True, "reduction", {"s": "+", "s2": "+"}, exact=False),
    _k(sum_positive_continue, _args_mixed_sign, True, "reduction", _PLUS, exact=False),
    _k(weighted_reverse_step_sum, _args_x, True, "reduction", _PLUS, exact=False),
    _k(complex_total, _args_complex_total, True, "reduction", _PLUS, exact=False),
    _k(total32, _args_total32, True, "reduction", _PLUS, exact=False),
    # stencils and nested loops: the outer loop is elementwise, inner sums are
    # private per iteration and run in order, so results are exact
    _k(stencil_1d, _args_stencil_1d, True, "stencil", {}),
    _k(laplacian_2d, _args_laplacian, True, "stencil", {}),
    _k(matvec, _args_matvec, True, "nested"),
    _k(matmul, _args_matmul, True, "nested"),
    _k(pairwise_potential, _args_pairwise, True, "nested"),
    _k(nbody, _args_nbody, True, "nested"),
    _k(mandelbrot, _args_mandelbrot, True, "nested"),
    _k(row_norms_enumerate, _args_matvec_rows, True, "nested"),
    # a sum into an argument at any index: an array per block, on the CPU only
    _k(histogram, _args_histogram, True, "scatter", {"bins": "+"}),
    # sequential: carried dependences, scatters, early exits
    _k(prefix_sum, _args_x_out, False, "sequential"),
    _k(scalar_recurrence, _args_x_out, False, "sequential"),
    _k(scatter_store, _args_scatter_store, False, "sequential"),
    _k(find_first, _args_find_first, False, "sequential"),
    _k(first_negative_break, _args_first_negative, False, "sequential"),
    _k(helper_shared_write, _args_helper_shared, False, "sequential"),
    _k(heat_timestep, _args_heat, False, "sequential"),
    _k(reverse_in_place, _args_reverse_in_place, False, "sequential"),
    _k(last_value, _args_x_out, False, "sequential"),
]

KERNELS_BY_NAME: dict[str, Kernel] = {k.name: k for k in KERNELS}
assert len(KERNELS_BY_NAME) == len(KERNELS), "kernel names must be unique"


# ---------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------


def copy_args(args: tuple) -> tuple:
    """Copy every array argument, keeping its memory layout and strides' shape."""
    return tuple(a.copy(order="K") if isinstance(a, np.ndarray) else a for a in args)


def _rtol_for(value: Any) -> float:
    dtype = np.asarray(value).dtype
    if dtype in (np.float32, np.complex64):
        return 1e-4
    return 1e-10  # float64 / complex128


def assert_results_match(got: Any, expected: Any, *, exact: bool, what: str = "result") -> None:
    """Assert a compiled result equals the Python one.

    ``exact=True``: bit-for-bit (``assert_array_equal``; NaNs equal).
    ``exact=False``: floats within ``rtol=1e-10`` (float64, complex128) or
    ``rtol=1e-4`` (float32); integers and booleans are still compared exactly.
    """
    if isinstance(expected, tuple):
        assert isinstance(got, tuple), f"{what}: expected a tuple, got {type(got).__name__}"
        assert len(got) == len(expected), f"{what}: tuple lengths differ"
        for k, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_results_match(g, e, exact=exact, what=f"{what}[{k}]")
        return
    if expected is None:
        assert got is None, f"{what}: expected None, got {got!r}"
        return
    g = np.asarray(got)
    e = np.asarray(expected)
    assert g.shape == e.shape, f"{what}: shape {g.shape} != {e.shape}"
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), f"{what}: expected an ndarray, got {type(got)}"
        assert g.dtype == e.dtype, f"{what}: dtype {g.dtype} != {e.dtype}"
    inexact = np.issubdtype(e.dtype, np.inexact)
    if exact or not inexact:
        np.testing.assert_array_equal(g, e, err_msg=what, strict=False)
    else:
        np.testing.assert_allclose(g, e, rtol=_rtol_for(e), atol=0, err_msg=what)


# ---------------------------------------------------------------------------
# decorated versions, compiled once per process and shared by the test modules
# ---------------------------------------------------------------------------

_ACCELERATED: dict[tuple, Any] = {}


def accelerated(kernel: Kernel, **options: Any) -> Any:
    """``accelerate(kernel.func, **options)``, decorated once per process."""
    key = (kernel.name, tuple(sorted(options.items())))
    if key not in _ACCELERATED:
        from loopscale import accelerate

        _ACCELERATED[key] = accelerate(**options)(kernel.func) if options else accelerate(
            kernel.func
        )
    return _ACCELERATED[key]
