"""Every collective call begins with the ranks' agreement: an argument that differs
between ranks, or that one rank refuses, is the same clear error on every rank,
at once (no rank waits), and the ranks go on together."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.mpi

#: Stops well before the hard timeout: a hang would show as this being exceeded.
PROMPT = 40.0

#: ``script.py OUT``: each case is made with an argument that differs on the last
#: rank (``who``); every rank writes what it raised, case by case, to OUT/rankR.json.
CASES = r'''
import json, os, sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


@accelerate
def rev(x, out):
    for i in range(x.shape[0]):
        out[x.shape[0] - 1 - i] = x[i]


out_dir = sys.argv[1]
me, size = distribute.rank(), distribute.size()
who = size - 1
odd = me == who
x = np.arange(100.0)
u = distribute.scatter(x if me == 0 else None)
np.save(os.path.join(out_dir, f"x{me}.npy"), np.full(6, float(me)))
distribute.comm().Barrier()
report = {}


def level(**options):
    return loopscale.level("mpi", **options)


cases = {
    "gather-root": lambda: distribute.gather(u, root=me),
    "gather-root-range": lambda: distribute.gather(u, root=7 if odd else 0),
    "scatter-root": lambda: distribute.scatter(x, root=me),
    "allgather-not-distributed": lambda: distribute.allgather(u.local if odd else u),
    "map-results": lambda: distribute.map(abs, [1, -2], results="root" if odd else "all"),
    "map-chunksize": lambda: distribute.map(abs, [1, -2, 3], chunksize=2 if odd else 1),
    "map-bad-chunksize": lambda: distribute.map(abs, [1, -2], chunksize=0 if odd else 1),
    "level-bad-option": None,
    "level-check-none": None,
    "distributed-bad-option": None,
    "zeros-shape": lambda: distribute.zeros(10 + odd),
    "zeros-bad-shape": lambda: distribute.zeros(-1 if odd else 5),
    "full-object-dtype": lambda: distribute.full(4, 1.0, dtype=object if odd else float),
    "zeros_like-dtype": lambda: distribute.zeros_like(u, dtype=np.float32 if odd else None),
    "from_local-shape": lambda: distribute.from_local(np.zeros((2, 3 if odd else 2))),
    "load_npy-path": lambda: distribute.load_npy(os.path.join(out_dir, f"x{me}.npy")),
    "load_npy-missing": lambda: distribute.load_npy(
        os.path.join(out_dir, "missing.npy" if odd else "x0.npy")),
    "other-call": lambda: distribute.allgather(u) if odd else distribute.zeros(4),
    "replicated-length": None,
}


def run_level_check_none():
    with level(check="none" if odd else "shapes"):
        total(x)


def run_distributed_bad_option():
    with level(check="bogus" if odd else "shapes"):
        total(u)


cases["level-check-none"] = run_level_check_none
cases["distributed-bad-option"] = run_distributed_bad_option


def run_level_bad_option():
    with level(chunksize=0 if odd else None):
        total(x)


def run_replicated_length():
    with level():
        total(np.ones(3000 if odd else 100))


cases["level-bad-option"] = run_level_bad_option
cases["replicated-length"] = run_replicated_length

for case, fn in cases.items():
    try:
        fn()
        report[case] = "NOT DETECTED"
    except Exception as exc:
        report[case] = f"{type(exc).__name__}: {exc}"
    # after each refusal the ranks are still together
    report[case + " then"] = float(distribute.allgather(u).sum())

with level():
    rev(x, np.empty(100))
report["stats"] = distribute.last_call_stats()
with open(os.path.join(out_dir, f"rank{me}.json"), "w") as fh:
    json.dump(report, fh)
sys.stdout.write(f"rank {me} finished\n")
sys.stdout.flush()
'''

#: What each case must raise on every rank (``{who}``: the rank whose argument differs).
EXPECTED = {
    "gather-root": ("ArgumentValueError", [r"the inputs of distribute\.gather\(\) differ",
                                           r"root: rank 0: 0; rank 1: 1",
                                           r"the same root"]),
    "gather-root-range": ("ArgumentValueError", [r"^ArgumentValueError: root must be a rank "
                                                 r"from 0 to \d; got 7\.",
                                                 r"rank {who}: this error",
                                                 r"ranks? 0(, 1)?: valid arguments"]),
    "scatter-root": ("ArgumentValueError", [r"distribute\.scatter\(\) differ",
                                            r"root: rank 0: 0; rank 1: 1"]),
    "allgather-not-distributed": ("ArgumentError", [r"must be a DistArray",
                                                    r"rank {who}: this error"]),
    "map-results": ("ArgumentValueError", [r"distribute\.map\(\) differ",
                                           r"results: rank 0: 'all';.* rank {who}: 'root'"]),
    "map-chunksize": ("ArgumentValueError", [r"chunksize: rank 0: 1;.* rank {who}: 2",
                                             r"only the root's iterable is read"]),
    "map-bad-chunksize": ("ValueError", [r"chunksize must be greater than 0",
                                         r"rank {who}: this error"]),
    "level-bad-option": ("LevelError", [r"chunksize must be a positive number",
                                        r"rank {who}: this error"]),
    "level-check-none": ("ArgumentValueError", [r"check: rank 0: shapes;.* rank {who}: none",
                                                r"options must be the same on every rank"]),
    "distributed-bad-option": ("LevelError", [r"check must be one of",
                                              r"rank {who}: this error"]),
    "zeros-shape": ("ArgumentValueError", [r"shape: rank 0: \(10,\);.* rank {who}: \(11,\)",
                                           r"distribute\.zeros\(\) is collective"]),
    "zeros-bad-shape": ("ArgumentValueError", [r"shape must have at least one axis",
                                               r"rank {who}: this error"]),
    "full-object-dtype": ("ArgumentError", [r"dtype object", r"rank {who}: this error"]),
    "zeros_like-dtype": ("ArgumentValueError", [r"dtype: rank 0: <f8;.* rank {who}: <f4"]),
    "from_local-shape": ("ArgumentValueError", [r"must agree in every axis but the first",
                                                r"block: rank 0: dtype <f8, shape \(rows, 2\)"]),
    "load_npy-path": ("ArgumentValueError", [r"path: rank 0: .*x0\.npy;.* rank {who}: "
                                             r".*x{who}\.npy",
                                             r"the same path"]),
    "load_npy-missing": ("ArgumentValueError", [r"missing\.npy", r"rank {who}: this error"]),
    "other-call": ("ArgumentValueError", [r"not in the same call: rank 0: "
                                          r"distribute\.zeros\(\);.* rank {who}: "
                                          r"distribute\.allgather\(\)"]),
    "replicated-length": ("ArgumentValueError", [r"x: rank 0: <f8\[100\];.* rank {who}: "
                                                 r"<f8\[3000\]",
                                                 r"blocks: rank 0: \d+ blocks of \d+ "
                                                 r"iterations"]),
}


@pytest.mark.parametrize("ranks", [2, 3])
def test_an_argument_that_differs_on_one_rank_is_the_same_error_on_every_rank(
        mpi_warm, tmp_path, ranks) -> None:
    run = mpi_warm(CASES, ranks, [str(tmp_path)], timeout=240,
                   env={"LOOPSCALE_MPI_WAIT": "10", "LOOPSCALE_MPI_TIMEOUT": "30"})
    assert run.returncode == 0, run.describe()
    assert run.seconds < 4 * PROMPT, run.describe()
    assert "has waited" not in run.stderr, run.describe()  # nobody waited for the watchdog
    assert len(re.findall(r"rank \d finished", run.stdout)) == ranks, run.describe()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(ranks)]
    who = ranks - 1
    whole = float(sum(range(100)))
    for case, (kind, patterns) in EXPECTED.items():
        texts = [report[case] for report in reports]
        # the same error, the same text, on every rank
        assert texts == [texts[0]] * ranks, (case, texts)
        text = texts[0]
        assert text.startswith(f"{kind}: "), (case, text)
        for pattern in patterns:
            assert re.search(pattern.format(who=who), text, re.S), (case, pattern, text)
        for report in reports:
            assert report[case + " then"] == whole, (case, report)
    assert "replicated mode" not in reports[0]["zeros-shape"]
    for report in reports:
        assert report["stats"] == {"function": "rev", "ranks": ranks, "bytes_moved": 0,
                                   "mode": "replicated, whole loop on every rank"}, report


#: A bad ``max_workers`` is refused by ``loopscale.level()`` itself, on the rank
#: that passes it, before any call: unhandled, it stops the job at once.
BAD_WORKERS = r'''
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


me = distribute.rank()
with loopscale.level("mpi", max_workers=0 if me == 1 else None):
    total(np.arange(100.0))
'''


def test_a_bad_max_workers_on_one_rank_stops_the_job_at_once(mpi_warm) -> None:
    run = mpi_warm(BAD_WORKERS, 2, timeout=120,
                   env={"LOOPSCALE_MPI_WAIT": "10", "LOOPSCALE_MPI_TIMEOUT": "30"})
    assert run.returncode != 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert re.search(r"^\[rank 1\] .*LevelError: max_workers must be greater than 0",
                     run.stderr, re.M), run.describe()
    assert "has waited" not in run.stderr, run.describe()


#: Per-rank max_workers that differ (valid ones): the first call counts the ranks
#: on each node on every rank (a rank given max_workers skipped it, and hung).
WORKERS_DIFFER = r'''
import sys
import numpy as np
import loopscale
from loopscale import accelerate, distribute


@accelerate
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


me = distribute.rank()
with loopscale.level("mpi", max_workers=1 if me == 1 else None):
    got = total(np.arange(1000.0))
sys.stdout.write(f"rank {me} total {got}\n")
sys.stdout.flush()
'''


def test_max_workers_that_differ_by_rank_still_run(mpi_warm) -> None:
    run = mpi_warm(WORKERS_DIFFER, 2, timeout=120,
                   env={"LOOPSCALE_MPI_WAIT": "10", "LOOPSCALE_MPI_TIMEOUT": "30"})
    assert run.returncode == 0, run.describe()
    assert run.seconds < PROMPT, run.describe()
    assert len(re.findall(r"rank \d total 499500\.0", run.stdout)) == 2, run.describe()
