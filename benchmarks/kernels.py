"""The kernels that loopscale's benchmarks time, written once as plain Python.

Each kernel is a plain ``def`` with explicit loops, as a newcomer would write
it.  The benchmarks run three versions of the same source:

* the function itself, as pure Python;
* ``numba.njit(nogil=True)`` applied to the same function (the ``*_njit``
  names below); the Black--Scholes twin is written out again because Numba
  needs its helper ``cnd`` compiled explicitly, whereas ``@accelerate``
  compiles helpers itself;
* ``loopscale.accelerate`` applied to the same function (by the caller, so
  that this module imports Numba but not loopscale and can time either alone).

Outputs are arguments, allocated by the caller outside the timed region.
``make_inputs(name, size)`` builds the arguments of kernel *name*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["KERNELS", "NJIT", "make_inputs", "njit_cached", "work"]



def nbody(pos, mass, eps, acc):
    """Softened gravitational acceleration on each of n bodies in the plane."""
    n = mass.shape[0]
    for i in range(n):
        xi = pos[i, 0]
        yi = pos[i, 1]
        ax = 0.0
        ay = 0.0
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            r2 = dx * dx + dy * dy + eps
            inv = mass[j] / (r2 * math.sqrt(r2))
            ax += dx * inv
            ay += dy * inv
        acc[i, 0] = ax
        acc[i, 1] = ay


# Abramowitz & Stegun 26.2.17, the cumulative normal used by the classic
# Black-Scholes benchmarks (Numba's own example among them)
_A1, _A2, _A3, _A4, _A5 = 0.31938153, -0.356563782, 1.781477937, -1.821255978, 1.330274429
_RSQRT2PI = 0.39894228040143267794


def cnd(d):
    """Cumulative distribution function of the standard normal (polynomial, |error| < 7.5e-8)."""
    k = 1.0 / (1.0 + 0.2316419 * abs(d))
    value = _RSQRT2PI * math.exp(-0.5 * d * d) * (
        k * (_A1 + k * (_A2 + k * (_A3 + k * (_A4 + k * _A5)))))
    if d > 0:
        value = 1.0 - value
    return value


def black_scholes(stock, strike, years, rate, vol, call, put):
    """European call and put prices for n options."""
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


def mandelbrot(xs, ys, maxiter, counts):
    """Escape-time iteration counts on the grid ``ys x xs``."""
    for i in range(ys.shape[0]):
        ci = ys[i]
        for j in range(xs.shape[0]):
            cr = xs[j]
            zr = 0.0
            zi = 0.0
            k = 0
            while k < maxiter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                k += 1
            counts[i, j] = k


def sum_of_squares(x):
    """The sum of ``x[i] ** 2`` (a reduction)."""
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


def stencil2d(u, out):
    """One Jacobi sweep of the 5-point Laplace stencil on the interior of u."""
    n = u.shape[0]
    m = u.shape[1]
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])


def first(x):
    """The trivial kernel used to measure call overhead."""
    return x[0]


# -- the hand-written Numba versions -------------------------------------------------

_cnd_njit = numba.njit(nogil=True)(cnd)


def _black_scholes_for_njit(stock, strike, years, rate, vol, call, put):
    for i in range(stock.shape[0]):
        s = stock[i]
        k = strike[i]
        t = years[i]
        sqrt_t = math.sqrt(t)
        d1 = (math.log(s / k) + (rate + 0.5 * vol * vol) * t) / (vol * sqrt_t)
        d2 = d1 - vol * sqrt_t
        cnd_d1 = _cnd_njit(d1)
        cnd_d2 = _cnd_njit(d2)
        exp_rt = math.exp(-rate * t)
        call[i] = s * cnd_d1 - k * exp_rt * cnd_d2
        put[i] = k * exp_rt * (1.0 - cnd_d2) - s * (1.0 - cnd_d1)


#: The plain-Python kernels, by name.
KERNELS: dict[str, Callable[..., Any]] = {
    "nbody": nbody,
    "black_scholes": black_scholes,
    "mandelbrot": mandelbrot,
    "sum_of_squares": sum_of_squares,
    "stencil2d": stencil2d,
    "first": first,
}

#: ``numba.njit(nogil=True)`` versions, by name.
NJIT: dict[str, Callable[..., Any]] = {
    name: numba.njit(nogil=True)(_black_scholes_for_njit if name == "black_scholes" else fn)
    for name, fn in KERNELS.items()
}


def njit_cached(name: str) -> Callable[..., Any]:
    """A fresh ``numba.njit(nogil=True, cache=True)`` version of kernel *name*.

    The start-up benchmark uses it as the reference for a warm start: Numba's
    own on-disk cache (under ``NUMBA_CACHE_DIR``).
    """
    fn = _black_scholes_for_njit if name == "black_scholes" else KERNELS[name]
    return numba.njit(nogil=True, cache=True)(fn)


def make_inputs(name: str, size: int, seed: int = 0) -> tuple[Any, ...]:
    """Arguments for kernel *name* at *size*, outputs included (preallocated).

    *size* is the number of bodies (``nbody``), options (``black_scholes``),
    elements (``sum_of_squares``, ``first``), or the grid width (``mandelbrot``:
    ``size x 3/4 size`` pixels; ``stencil2d``: ``size x size``).
    """
    rng = np.random.default_rng(seed)
    if name == "nbody":
        pos = rng.uniform(-1.0, 1.0, (size, 2))
        mass = rng.uniform(0.5, 1.5, size)
        return pos, mass, 1e-3, np.zeros((size, 2))
    if name == "black_scholes":
        stock = rng.uniform(5.0, 30.0, size)
        strike = rng.uniform(1.0, 100.0, size)
        years = rng.uniform(0.25, 10.0, size)
        return stock, strike, years, 0.02, 0.30, np.zeros(size), np.zeros(size)
    if name == "mandelbrot":
        width = size
        height = max(1, (3 * size) // 4)
        xs = np.linspace(-2.0, 0.6, width)
        ys = np.linspace(-1.2, 1.2, height)
        return xs, ys, 100, np.zeros((height, width), dtype=np.int64)
    if name in ("sum_of_squares", "first"):
        return (rng.uniform(-1.0, 1.0, size),)
    if name == "stencil2d":
        return rng.uniform(0.0, 1.0, (size, size)), np.zeros((size, size))
    raise ValueError(f"unknown kernel {name!r}; choose from {sorted(KERNELS)}")


def work(name: str, size: int) -> float:
    """Inner-loop iterations of kernel *name* at *size* (to scale Python timings).

    For Mandelbrot this is the pixel count: a smaller grid over the same region
    has about the same mean iteration count per pixel.
    """
    if name == "nbody":
        return float(size) * size
    if name in ("black_scholes", "sum_of_squares", "first"):
        return float(size)
    if name == "mandelbrot":
        return float(size) * max(1, (3 * size) // 4)
    if name == "stencil2d":
        return float(max(0, size - 2)) ** 2
    raise ValueError(f"unknown kernel {name!r}; choose from {sorted(KERNELS)}")
