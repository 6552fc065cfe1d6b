"""Tutorial 2 — every core of one machine, the same answer.

Tutorial 1 compiled a loop for one core.  The same decorated function runs on
every core of the machine by changing the *level*, not the code:

1. ``with loopscale.level("threads")`` (or ``LOOPSCALE_LEVEL=threads``; the
   default level ``auto`` picks it for loops long enough to gain) runs the
   function's parallel loop on a pool of threads.  Compiled code releases the
   GIL, and the threads share the NumPy arrays: nothing is copied.
2. The answer is the ``serial`` level's **bit for bit**, floats included, for
   any number of workers and any scheduling policy: reductions are summed per
   fixed block and the blocks combined in a fixed order.
3. A time loop (each step reads the last) runs in order, but the independent
   loops *inside* it run on the pool at each step; ``explain()`` says which.
4. For work that is not one loop: ``schedule.parallel_for`` runs any
   ``fn(start, stop, ...)`` over chunks; ``schedule.Executor`` is a
   ``concurrent.futures`` executor on the same pool; ``schedule.run_graph``
   runs tasks as their dependencies finish.

Run it::

    python tutorials/02_threads.py               # a few seconds a step
    python tutorials/02_threads.py --size small  # seconds (tests)

The kernel is a gravitational n-body simulation: forces (O(n²), independent
per body), then a leapfrog update, for a number of time steps.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import loopscale
from loopscale import accelerate, schedule

SIZES = {"small": (400, 5), "medium": (2000, 10), "large": (6000, 10)}


@accelerate
def simulate(pos, vel, mass, steps, dt):
    """Leapfrog time steps of an n-body system, in place; returns the total
    kinetic energy after the last step."""
    n = pos.shape[0]
    acc = np.zeros_like(pos)
    for _step in range(steps):            # in order: each step reads the last
        for i in range(n):                # independent: runs on the pool
            ax = 0.0
            ay = 0.0
            for j in range(n):
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                r2 = dx * dx + dy * dy + 1e-3
                inv = mass[j] / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
            acc[i, 0] = ax
            acc[i, 1] = ay
        for i in range(n):                # independent too (short: may stay inline)
            vel[i, 0] += dt * acc[i, 0]
            vel[i, 1] += dt * acc[i, 1]
            pos[i, 0] += dt * vel[i, 0]
            pos[i, 1] += dt * vel[i, 1]
    energy = 0.0
    for i in range(n):
        energy += 0.5 * mass[i] * (vel[i, 0] * vel[i, 0] + vel[i, 1] * vel[i, 1])
    return energy


@accelerate
def potential(pos, mass):
    """Total potential energy: a triangular loop (row i has n - 1 - i terms),
    whose uneven rows the scheduler balances."""
    n = pos.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            total -= mass[i] * mass[j] / math.sqrt(dx * dx + dy * dy + 1e-3)
    return total


def run(level: str, pos0: np.ndarray, vel0: np.ndarray, mass: np.ndarray, steps: int,
        **options: object) -> tuple[float, np.ndarray, float]:
    pos, vel = pos0.copy(), vel0.copy()
    with loopscale.level(level, **options):
        t0 = time.perf_counter()
        energy = simulate(pos, vel, mass, steps, 1e-4)
        seconds = time.perf_counter() - t0
    return energy, pos, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    args = parser.parse_args()
    n, steps = SIZES[args.size]
    rng = np.random.default_rng(42)
    pos0 = rng.uniform(-1.0, 1.0, (n, 2))
    vel0 = np.zeros((n, 2))
    mass = rng.uniform(0.5, 1.5, n)
    workers = loopscale.config.usable_cores()
    print(f"{n} bodies, {steps} steps, {workers} usable core(s)")

    # --- 1. What runs in parallel --------------------------------------------------
    print(simulate.explain())

    # --- 2. serial, then threads: the same bits ------------------------------------
    # compile (and warm the cache): the first passes of an inner loop are also
    # timed on one core, to learn whether the pool gains
    run("serial", pos0, vel0, mass, 1)
    run("threads", pos0, vel0, mass, 4)
    e1, p1, t1 = run("serial", pos0, vel0, mass, steps)
    e2, p2, t2 = run("threads", pos0, vel0, mass, steps)
    assert e1 == e2 and p1.tobytes() == p2.tobytes(), "threads differ from serial"
    for k in (1, 2, 3):                     # any number of workers, any policy
        for policy in ("static", "dynamic", "guided"):
            e, p, _ = run("threads", pos0, vel0, mass, steps, max_workers=k, policy=policy)
            assert e == e1 and p.tobytes() == p1.tobytes(), (k, policy)
    print(f"serial {t1 * 1e3:.1f} ms, threads {t2 * 1e3:.1f} ms "
          f"({t1 / t2:.2f}x); threads results are the serial ones, bit for bit")

    # --- 3. an uneven loop, balanced -----------------------------------------------
    with loopscale.level("serial"):
        u1 = potential(pos0, mass)
    with loopscale.level("threads"):
        u2 = potential(pos0, mass)
    assert u1 == u2
    print(f"potential energy {u1:.6f} (threads: the same)")

    # --- 4. beyond one loop: parallel_for, Executor, a task graph -------------------
    counts = np.zeros(n, dtype=np.int64)

    def neighbours(start: int, stop: int, pos: np.ndarray, out: np.ndarray) -> None:
        for i in range(start, stop):        # plain Python here: any fn(start, stop, ...)
            d = np.hypot(pos[:, 0] - pos[i, 0], pos[:, 1] - pos[i, 1])
            out[i] = int((d < 0.1).sum()) - 1

    schedule.parallel_for(neighbours, n, pos0, counts)
    print(f"parallel_for: {counts.mean():.2f} neighbours within 0.1 on average")

    with schedule.Executor() as ex:         # concurrent.futures, on the same pool
        energies = list(ex.map(lambda k: run("serial", pos0, vel0, mass, k)[0], [1, 2]))
    print(f"Executor.map: energies after 1 and 2 steps {energies[0]:.6g}, {energies[1]:.6g}")

    graph = schedule.TaskGraph()            # tasks that reference others wait for them
    a = graph.add("potential", potential, pos0, mass)
    b = graph.add("kinetic", lambda: run("serial", pos0, vel0, mass, 1)[0])
    graph.add("total", lambda u, k: u + k, a, b)
    results = schedule.run_graph(graph)
    print(f"task graph: total energy after one step {results['total']:.6f}")
    print("Done: the threads level gave the serial answer at every worker count and policy")


if __name__ == "__main__":
    main()
