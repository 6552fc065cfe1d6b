"""Overhead of ``loopscale profile`` at the default interval (target: at most 1.3x).

Runs each workload as plain ``python script.py`` and under
``python -m loopscale.profiler --check none script.py``, alternating the two
(plain, profiled, plain, profiled...) so that a busy machine slows both
alike, and prints the median and the spread of the per-pair ratios: end to
end, and without the one-off cost of importing the profiler (about 0.05 s:
``import loopscale`` does not load Numba).  The 1-minute load average is
printed before and after: on a shared machine, quote it with the figures.

Workloads (each about 1.5-2 s plain):

- a pure-Python loop;
- a NumPy-heavy script (matrix products and sorts);
- a recursion 400 frames deep whose time is spent at the bottom (the stack
  below the running frame stays the same from tick to tick);
- a recursion 400 frames deep that goes up and down all the time (each tick
  finds a new stack).

    python benchmarks/profiler_overhead.py [--repeat 5] [--only deep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

WORKLOADS = {
    "pure-python loop": """
        def f(n):
            s = 0
            for i in range(n):
                s += i * i % 7
            return s
        f(30_000_000)
    """,
    "numpy-heavy": """
        import numpy as np
        rng = np.random.default_rng(0)
        a = rng.random((400, 400))
        for _ in range(600):
            b = a @ a
            c = np.sort(b, axis=1)
            a = c / c.max()
    """,
    "deep recursion, leaf": """
        import sys
        sys.setrecursionlimit(10_000)

        def descend(depth, n):
            if depth == 0:
                s = 0
                for i in range(n):
                    s += i * i % 7
                return s
            return descend(depth - 1, n) + 1

        total = 0
        for _ in range(1_500):
            total += descend(400, 20_000)
    """,
    "deep recursion, up and down": """
        import sys
        sys.setrecursionlimit(10_000)

        def path(depth):
            if depth == 0:
                return 1
            return path(depth - 1) + 1

        total = 0
        for _ in range(40_000):
            total += path(400)
    """,
}


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs per workload")
    parser.add_argument("--only", default="", help="run the workloads whose name has this")
    opts = parser.parse_args()
    print(f"1-minute load average at start: {_load()}")
    bare = min(_time([sys.executable, "-c", "pass"]) for _ in range(opts.repeat))
    imported = min(_time([sys.executable, "-c", "import loopscale.profiler"])
                   for _ in range(opts.repeat))
    startup = max(0.0, imported - bare)
    print(f"import loopscale.profiler: {startup:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for name, code in WORKLOADS.items():
            if opts.only not in name:
                continue
            path = os.path.join(tmp, "w.py")
            with open(path, "w") as fh:
                fh.write(textwrap.dedent(code))
            ratios, ratios_net, plains, profs = [], [], [], []
            for _ in range(opts.repeat):
                plain = _time([sys.executable, path])
                prof = _time([sys.executable, "-m", "loopscale.profiler", "--check", "none",
                              path])
                plains.append(plain)
                profs.append(prof)
                ratios.append(prof / plain)
                ratios_net.append((prof - startup) / plain)
            print(f"{name:28s} plain {min(plains):5.2f} s  profiled {min(profs):5.2f} s  "
                  f"overhead {statistics.median(ratios):.2f}x end to end "
                  f"(pairs {min(ratios):.2f}-{max(ratios):.2f}), "
                  f"{statistics.median(ratios_net):.2f}x without the import")
    print(f"1-minute load average at end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
