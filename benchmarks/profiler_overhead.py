"""Overhead of ``loopscale profile`` at the default interval (target: at most 1.3x).

Runs two workloads (a pure-Python loop of about 1.5 s and a NumPy-heavy
script of about 0.5 s) as plain ``python script.py`` and under
``python -m loopscale.profiler --check none script.py`` (best of *repeat*
runs each, interpreter start included in both) and prints the ratios: end
to end, and without the one-off cost of importing the profiler (about
0.05 s: ``import loopscale`` does not load Numba).

    python benchmarks/profiler_overhead.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
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
        for _ in range(200):
            b = a @ a
            c = np.sort(b, axis=1)
            a = c / c.max()
    """,
}


def _best(cmd: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    bare = _best([sys.executable, "-c", "pass"], opts.repeat)
    imported = _best([sys.executable, "-c", "import loopscale.profiler"], opts.repeat)
    startup = imported - bare
    print(f"import loopscale.profiler: {startup:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for name, code in WORKLOADS.items():
            path = os.path.join(tmp, "w.py")
            with open(path, "w") as fh:
                fh.write(textwrap.dedent(code))
            plain = _best([sys.executable, path], opts.repeat)
            prof = _best([sys.executable, "-m", "loopscale.profiler", "--check", "none",
                           path], opts.repeat)
            print(f"{name:18s} plain {plain:6.2f} s  profiled {prof:6.2f} s  "
                  f"overhead {prof / plain:.2f}x end to end, "
                  f"{(prof - startup) / plain:.2f}x without the import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
