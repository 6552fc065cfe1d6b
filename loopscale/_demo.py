"""``loopscale demo``: one plain-Python kernel, timed at every rung that exists.

The kernel is the Mandelbrot set written as a newcomer would write it: plain
``for`` and ``while`` loops over NumPy arrays.  The demo times it as Python,
then decorates the same function with :func:`loopscale.accelerate` and times
it again at each rung of the ladder -- ``serial`` (compiled, one core),
``threads``, ``mpi``, ``cuda``.  A rung is measured only when its executor is
really installed; the others are listed as planned, with no numbers.

For a compiled rung the first call (which compiles, or loads the compiled code
from the on-disk cache) is reported apart from the run time (the best of
several calls), and the result is checked against the Python result: integer
results must be identical, float results equal within ``rtol=1e-12``.

Adding a rung means adding a :class:`Rung` to :data:`RUNGS` whose ``level`` is
the name its executor registers under the ``loopscale.levels`` entry point.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from . import config
from .errors import CudaUnavailableError, LoopscaleError

__all__ = ["RUNGS", "SIZES", "Rung", "Size", "compare_results", "mandelbrot", "run_demo"]

#: Relative tolerance for float results (integer results must be identical).
FLOAT_RTOL = 1e-12


def mandelbrot(xs: np.ndarray, ys: np.ndarray, max_iter: int) -> np.ndarray:
    """Escape-time counts of the Mandelbrot set on the grid ``ys x xs``.

    Deliberately plain Python: every point is a few hundred interpreted float
    operations, which is what makes it slow without a compiler.  The rows are
    independent (each ``out[j, i]`` is written once, ``x``, ``y``, ``n`` are
    private), so the outer loop is parallel.
    """
    out = np.zeros((ys.shape[0], xs.shape[0]), dtype=np.int64)
    for j in range(ys.shape[0]):
        y0 = ys[j]
        for i in range(xs.shape[0]):
            x0 = xs[i]
            x = 0.0
            y = 0.0
            n = 0
            while n < max_iter and x * x + y * y <= 4.0:
                xt = x * x - y * y + x0
                y = 2.0 * x * y + y0
                x = xt
                n += 1
            out[j, i] = n
    return out


@dataclass(frozen=True)
class Size:
    """A problem size: a ``height x width`` grid and the iteration cap."""

    width: int
    height: int
    max_iter: int
    repeat: int

    def arguments(self) -> tuple[np.ndarray, np.ndarray, int]:
        xs = np.linspace(-2.2, 0.8, self.width)
        ys = np.linspace(-1.2, 1.2, self.height)
        return xs, ys, self.max_iter


#: ``small`` takes about 1-2 s as plain Python on one core of a 2020s laptop;
#: ``medium`` about 5 times that; ``quick`` is a smoke test.
SIZES: dict[str, Size] = {
    "quick": Size(width=60, height=40, max_iter=50, repeat=3),
    "small": Size(width=480, height=320, max_iter=100, repeat=5),
    "medium": Size(width=960, height=640, max_iter=150, repeat=5),
}


@dataclass(frozen=True)
class Rung:
    """One rung of the ladder, measured when its level's executor is installed."""

    level: str
    what: str
    missing: str  # printed, with no numbers, when the rung cannot be measured here
    in_process: bool = True  # False: needs a launcher (mpiexec), not measured by the demo


RUNGS: tuple[Rung, ...] = (
    Rung("serial", "compiled, one core", "not available (reinstall loopscale)"),
    Rung("threads", "compiled, all local cores", "not available yet (planned)"),
    Rung("mpi", "compiled, 2 MPI ranks", "not available (no mpi level installed)",
         in_process=False),
    Rung("cuda", "compiled for an NVIDIA GPU", "not available (no cuda level installed)"),
)


@dataclass(frozen=True)
class Timing:
    first_call: float  # seconds; includes compiling or loading from the cache
    best: float  # seconds; best of the repeated calls
    result: Any


def compare_results(expected: Any, got: Any) -> tuple[bool, str]:
    """Whether *got* equals *expected*: integers exactly, floats within ``rtol=1e-12``.

    Returns the verdict and a short description of it.
    """
    expected = np.asarray(expected)
    got = np.asarray(got)
    if expected.shape != got.shape:
        return False, f"shape {got.shape} differs from Python's {expected.shape}"
    if expected.dtype.kind in "biu" and got.dtype.kind in "biu":
        differ = int(np.count_nonzero(expected != got))
        if differ:
            return False, f"{differ} of {expected.size} values differ from Python's"
        return True, f"identical to Python ({got.dtype}, exact)"
    if np.allclose(got, expected, rtol=FLOAT_RTOL, atol=0.0, equal_nan=True):
        return True, f"equal to Python within rtol={FLOAT_RTOL:g} ({got.dtype})"
    worst = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)))
    return False, f"differs from Python: largest relative error {worst:.3g}"


def _time_calls(func: Callable[..., Any], args: tuple[Any, ...], repeat: int) -> Timing:
    start = time.perf_counter()
    result = func(*args)
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - start)
    return Timing(first, best, result)


_MPI_CHILD = """
import json, sys, time
import numpy as np
import loopscale
from loopscale import accelerate, config
from loopscale._demo import SIZES, _time_calls, mandelbrot
from loopscale.distribute import rank
spec = SIZES[sys.argv[1]]
f = accelerate(mandelbrot)
with loopscale.level("mpi"):
    timing = _time_calls(f, spec.arguments(), spec.repeat)
if rank() == 0:
    np.save(sys.argv[2] + ".npy", np.asarray(timing.result))
    with open(sys.argv[2] + ".json", "w") as fh:
        json.dump({"first": timing.first_call, "best": timing.best}, fh)
"""


def _mpi_rung(size: str, reference: Any, serial_result: Any, python_time: float,
              what: str) -> tuple[str, bool]:
    """Run the kernel at level ``mpi`` under ``mpiexec -n 2``; the table row and verdict."""
    import json
    import subprocess
    import tempfile

    from .distribute._launch import find_launcher

    try:
        launcher = find_launcher()
    except (FileNotFoundError, ValueError) as exc:
        return f"mpi: not available: {exc}", True
    with tempfile.TemporaryDirectory() as tmp:
        stem = os.path.join(tmp, "mpi")
        cmd = [*launcher, "-n", "2", sys.executable, "-c", _MPI_CHILD, size, stem]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "mpi: failed: mpiexec -n 2 did not finish within 300 s", False
        if proc.returncode != 0 or not os.path.exists(stem + ".json"):
            tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
            return f"mpi: failed (exit status {proc.returncode}): {tail}", False
        result = np.load(stem + ".npy")
        with open(stem + ".json") as fh:
            timing = json.load(fh)
    ok, verdict = compare_results(reference, result)
    if serial_result is not None and ok:
        ok = np.array_equal(np.asarray(serial_result), result)
        verdict += ", bit for bit the serial result" if ok else ", DIFFERS from serial"
    speedup = python_time / timing["best"] if timing["best"] > 0 else float("inf")
    return (f"{'mpi':<8} {what:<27} {_seconds(timing['first']):>11} "
            f"{_seconds(timing['best']):>10} {speedup:>7.0f}x  {verdict}"), ok


def _seconds(value: float) -> str:
    if value >= 1.0:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} us"


def _source_without_docstring(func: Callable[..., Any]) -> list[str]:
    lines = inspect.getsource(func).splitlines()
    body = ast.parse(textwrap.dedent("\n".join(lines))).body[0]
    first = body.body[0] if isinstance(body, ast.FunctionDef) and body.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and first.end_lineno is not None
    ):
        del lines[first.lineno - 1 : first.end_lineno]
    return lines


def run_demo(size: str = "small", out: TextIO | None = None) -> int:
    """Run the demo at *size* (``quick``, ``small`` or ``medium``), printing to *out*.

    Returns the exit status: 0 when every measured rung matched the Python
    result, 1 when one did not or failed to compile.
    """
    from . import accelerate, level

    out = sys.stdout if out is None else out
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}; got {size!r}")
    spec = SIZES[size]
    args = spec.arguments()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(
        f"loopscale demo: Mandelbrot set on a {spec.height} x {spec.width} grid, "
        f"at most {spec.max_iter} iterations per point"
    )
    say(f"The kernel is plain Python, from {inspect.getsourcefile(mandelbrot)}:")
    say()
    say("    " + "\n    ".join(_source_without_docstring(mandelbrot)))
    say()
    say("Running it as plain Python (once; this is the slow part)...")
    start = time.perf_counter()
    reference = mandelbrot(*args)
    python_time = time.perf_counter() - start

    accelerated = accelerate(mandelbrot)
    installed = set(config.installed_levels())
    best_of = f"best of {spec.repeat}"
    header = (
        f"{'rung':<8} {'what runs':<27} {'first call':>11} {best_of:>10} {'speedup':>8}  result"
    )
    rows = [
        header,
        "-" * len(header),
        f"{'python':<8} {'the interpreter, one core':<27} {'':>11} "
        f"{_seconds(python_time):>10} {'1x':>8}  reference",
    ]
    status = 0
    serial_result = None
    for rung in RUNGS:
        if rung.level not in installed:
            rows.append(f"{rung.level}: {rung.missing}")
            continue
        if not rung.in_process:
            row, ok = _mpi_rung(size, reference, serial_result, python_time, rung.what)
            rows.append(row)
            status = status if ok else 1
            continue
        try:
            with level(rung.level):
                timing = _time_calls(accelerated, args, spec.repeat)
        except CudaUnavailableError as exc:
            rows.append(f"{rung.level}: not available: {exc}")
            continue
        except LoopscaleError as exc:
            rows.append(f"{rung.level}: failed: {exc}")
            status = 1
            continue
        what = rung.what
        if rung.level == "threads":
            try:
                what = f"compiled, {config.max_workers_default()} threads"
            except LoopscaleError:
                pass
        ok, verdict = compare_results(reference, timing.result)
        if rung.level == "serial":
            serial_result = timing.result
        elif serial_result is not None and ok:
            same = np.array_equal(np.asarray(serial_result), np.asarray(timing.result))
            ok = same
            verdict += ", bit for bit the serial result" if same else ", DIFFERS from serial"
        status = status if ok else 1
        speedup = python_time / timing.best if timing.best > 0 else float("inf")
        rows.append(
            f"{rung.level:<8} {what:<27} {_seconds(timing.first_call):>11} "
            f"{_seconds(timing.best):>10} {speedup:>7.0f}x  {verdict}"
        )
    say()
    for row in rows:
        say(row)
    say()
    say("'first call' compiles the function (or loads it from the on-disk cache in")
    say(f"{config.cache_dir()}); the later calls run the compiled code.")
    say()
    say("What the compiler found (f.explain()):")
    say()
    try:
        explanation = accelerated.explain()
    except LoopscaleError as exc:
        explanation = f"explain() failed: {exc}"
        status = 1
    say("    " + "\n    ".join(explanation.splitlines()))
    say()
    analysis = accelerated.analysis
    if analysis.parallel:
        say(
            "f.analysis.parallel is True: a parallel level (threads, mpi, cuda) may split "
            "this loop."
        )
        if "threads" not in installed:
            say("Those levels are planned; today the serial level runs it on one core.")
    else:
        say(f"f.analysis.parallel is False: {analysis.reason}")
    return status
