"""Every airspeed-velocity benchmark in ``asv_bench/`` sets up and runs once.

asv reports a benchmark whose ``setup`` raises as failed, and nothing else in
the suite imports these modules: a renamed helper broke every threads
benchmark unseen (``peers.cases(quick=False)`` after ``cases`` took a scale).
Only the mechanics are checked (each ``time_*`` method runs once with the first
parameters); timings live in asv's results, not in tests.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "asv_bench" / "benchmarks").glob("bench_*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"asv_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cases():
    for path in MODULES:
        module = _load(path)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.startswith("_") or cls.__module__ != module.__name__:
                continue
            if any(m.startswith(("time_", "track_", "mem_", "peakmem_")) for m in dir(cls)):
                yield pytest.param(path, name, id=f"{path.stem}.{name}")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path, name", list(_cases()))
def test_the_benchmark_sets_up_and_runs_once(path: Path, name: str) -> None:
    cls = getattr(_load(path), name)
    params = getattr(cls, "params", [])
    if params and not isinstance(params[0], list):
        params = [params]
    combos = list(itertools.product(*params)) if params else [()]
    bench = cls()
    for combo in combos:  # the first combination this machine can run
        try:
            if hasattr(bench, "setup"):
                bench.setup(*combo)
        except NotImplementedError:  # (asv's way to skip: more workers than cores)
            continue
        break
    else:
        pytest.skip(f"no parameters of {name} run here: {combos}")
    try:
        methods = [m for m in dir(bench)
                   if m.startswith(("time_", "track_", "mem_", "peakmem_"))]
        assert methods, name
        for m in methods:
            getattr(bench, m)(*combo)
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*combo)
