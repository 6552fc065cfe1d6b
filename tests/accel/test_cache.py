"""The on-disk cache: a second process compiles nothing; editing a helper recompiles.

Each scenario runs a small script in fresh subprocesses with
``LOOPSCALE_CACHE_DIR`` pointing into ``tmp_path``.  The script counts Numba
compile events (``numba:compile``) with a listener registered before loopscale
is imported and prints the count and the result as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

COUNTER = """\
import json
import numpy as np
from numba.core import event


class CompileCounter(event.Listener):
    def __init__(self):
        self.count = 0

    def on_start(self, ev):
        pass

    def on_end(self, ev):
        self.count += 1


counter = CompileCounter()
event.register("numba:compile", counter)

from loopscale import accelerate  # noqa: E402
"""

SAME_FILE = COUNTER + """

def offset(v):
    return v * 3.0 + 1.0


@accelerate
def kernel(x, out):
    for i in range(x.shape[0]):
        out[i] = offset(x[i])
    return out


x = np.arange(10.0)
out = kernel(x, np.zeros(10))
print(json.dumps({"compiles": counter.count, "result": out.tolist()}))
"""

OTHER_MODULE_HELPER = """\
def offset(v):
    return v * 3.0 + 1.0
"""

OTHER_MODULE_MAIN = COUNTER + """
from helpers_mod import offset  # noqa: E402


@accelerate
def kernel(x, out):
    s = 0.0
    for i in range(x.shape[0]):
        out[i] = offset(x[i])
        s += out[i]
    return s


x = np.arange(10.0)
out = np.zeros(10)
s = kernel(x, out)
print(json.dumps({"compiles": counter.count, "result": out.tolist(), "sum": s}))
"""


def _run(script: Path, cache_dir: Path) -> dict:
    env = dict(os.environ)
    env["LOOPSCALE_CACHE_DIR"] = str(cache_dir)
    env.pop("LOOPSCALE_DISABLE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=script.parent,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last)


def _expected(scale: float) -> list[float]:
    return [v * scale + 1.0 for v in range(10)]


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_second_process_loads_from_cache_without_compiling(tmp_path):
    cache = tmp_path / "cache"
    script = tmp_path / "same_file.py"
    script.write_text(SAME_FILE)

    first = _run(script, cache)
    assert first["result"] == _expected(3.0)
    assert first["compiles"] > 0
    assert _files_under(cache), "nothing was written under LOOPSCALE_CACHE_DIR"

    second = _run(script, cache)
    assert second["result"] == _expected(3.0)
    assert second["compiles"] == 0


def test_editing_a_helper_in_the_same_file_invalidates_the_cache(tmp_path):
    cache = tmp_path / "cache"
    script = tmp_path / "same_file.py"
    script.write_text(SAME_FILE)
    assert _run(script, cache)["compiles"] > 0
    assert _run(script, cache)["compiles"] == 0

    # Same length, so a size-based stamp cannot see the change.
    script.write_text(SAME_FILE.replace("v * 3.0 + 1.0", "v * 5.0 + 1.0"))
    edited = _run(script, cache)
    assert edited["result"] == _expected(5.0)
    assert edited["compiles"] > 0

    again = _run(script, cache)
    assert again["result"] == _expected(5.0)
    assert again["compiles"] == 0


def test_editing_a_helper_in_another_module_invalidates_the_cache(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "helpers_mod.py").write_text(OTHER_MODULE_HELPER)
    script = tmp_path / "main_script.py"
    script.write_text(OTHER_MODULE_MAIN)

    first = _run(script, cache)
    assert first["result"] == _expected(3.0) and first["compiles"] > 0
    second = _run(script, cache)
    assert second["result"] == _expected(3.0) and second["compiles"] == 0

    # Only the helper's module changes; the decorated function's file does not.
    (tmp_path / "helpers_mod.py").write_text(OTHER_MODULE_HELPER.replace("3.0", "5.0"))
    edited = _run(script, cache)
    assert edited["result"] == _expected(5.0)
    assert edited["sum"] == sum(_expected(5.0))
    assert edited["compiles"] > 0


PARAMS_MAIN = COUNTER + """
import params_mod  # noqa: E402
from helpers_mod import offset, scaled  # noqa: E402


@accelerate
def kernel(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * params_mod.SCALE + offset(x[i]) + scaled(x[i])
    return out


x = np.arange(10.0)
out = kernel(x, np.zeros(10))
print(json.dumps({"compiles": counter.count, "result": out.tolist(),
                  "python": kernel.py_func(x, np.zeros(10)).tolist()}))
"""

PARAMS_HELPERS = """\
import params_mod


def offset(v):
    return v + params_mod.grid.SHIFT


def scaled(v, by=2.0):
    return v * by
"""


@pytest.mark.parametrize("edit", [
    ("params_mod.py", "SCALE = 3.0", "SCALE = 5.0"),        # read as module.NAME
    ("grid.py", "SHIFT = 1.0", "SHIFT = 7.0"),                 # module.sub.NAME, in a helper
    ("helpers_mod.py", "by=2.0", "by=4.0"),                    # a helper's default
])
def test_editing_a_constant_read_through_a_module_or_a_default_invalidates_the_cache(
        tmp_path, edit):
    # Numba compiles these in as constants: a key without them reused stale
    # code in a new process (silently wrong results)
    cache = tmp_path / "cache"
    (tmp_path / "grid.py").write_text("SHIFT = 1.0\n")
    (tmp_path / "params_mod.py").write_text("import grid\nSCALE = 3.0\n")
    (tmp_path / "helpers_mod.py").write_text(PARAMS_HELPERS)
    script = tmp_path / "main_script.py"
    script.write_text(PARAMS_MAIN)
    first = _run(script, cache)
    assert first["result"] == first["python"] and first["compiles"] > 0
    assert _run(script, cache)["compiles"] == 0
    name, old, new = edit
    path = tmp_path / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    edited = _run(script, cache)
    assert edited["result"] == edited["python"] != first["result"], edited
    assert edited["compiles"] > 0


def test_cache_directory_is_the_one_configured(tmp_path):
    script = tmp_path / "same_file.py"
    script.write_text(SAME_FILE)
    a, b = tmp_path / "a", tmp_path / "b"
    _run(script, a)
    assert _files_under(a)
    # A different cache directory starts cold.
    assert _run(script, b)["compiles"] > 0


def test_counter_script_detects_compiles_without_loopscale_cache(tmp_path):
    # Guards the harness itself: plain numba.njit with no cache compiles every time.
    script = tmp_path / "plain.py"
    script.write_text(
        textwrap.dedent(
            """\
            import json
            import numba
            from numba.core import event

            class C(event.Listener):
                count = 0
                def on_start(self, ev):
                    pass
                def on_end(self, ev):
                    C.count += 1

            event.register("numba:compile", C())

            @numba.njit
            def f(x):
                return x + 1

            f(1)
            print(json.dumps({"compiles": C.count}))
            """
        )
    )
    assert _run(script, tmp_path / "unused")["compiles"] > 0


WARM_MIX = COUNTER + """
import math
import sys


@accelerate
def scaled(x, out):
    for i in range(x.shape[0]):
        out[i] = math.exp(x[i]) * 2.0
    return out


@accelerate
def fresh_array(x):
    out = np.empty(x.shape[0] + 1)
    for i in range(x.shape[0]):
        out[i] = x[i] * 0.5
    out[x.shape[0]] = np.sum(x)
    return out, x.shape[0]


@accelerate
def divide(a, b, out):
    for i in range(a.shape[0]):
        out[i] = a[i] // b[i]
    return out


@accelerate(boundscheck=True)
def gather(x, idx, out):
    for i in range(idx.shape[0]):
        out[i] = x[idx[i]]
    return out


x = np.linspace(0.0, 1.0, 9)
first = scaled(x, np.zeros(9)).tolist()
arr, n = fresh_array(x)
errors = []
try:
    divide(np.arange(6), np.array([1, 2, 0, 1, 1, 1]), np.zeros(6, dtype=np.int64))
except ZeroDivisionError as exc:
    errors.append(str(exc))
try:
    gather(x, np.array([0, 1, 99]), np.zeros(3))
except IndexError as exc:
    errors.append(str(exc))
loaded = counter.count
if sys.argv[1:] == ["more"]:
    # After loading from the cache, compile something new in the same process:
    # a second signature of a cached kernel, and a kernel defined now.
    x32 = x.astype(np.float32)
    second_sig = scaled(x32, np.zeros(9, dtype=np.float32)).tolist()

    @accelerate
    def later(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += math.log1p(x[i]) + np.sqrt(x[i])
        return s

    more = [second_sig, later(x)]
else:
    more = None
print(json.dumps({"compiles": loaded, "after": counter.count, "first": first,
                  "arr": arr.tolist(), "n": n, "errors": errors, "more": more}))
"""


def test_a_warm_start_loads_every_kind_of_entry_and_later_compiles_still_work(tmp_path):
    # Loading from the cache skips Numba's full target set-up; the entries must
    # still run (math, arrays made inside, exceptions raised in compiled code),
    # and anything compiled later in that process must still compile.
    import math

    cache = tmp_path / "cache"
    script = tmp_path / "warm_mix.py"
    script.write_text(WARM_MIX)
    cold = _run(script, cache)
    assert cold["compiles"] > 0
    x = [i / 8 for i in range(9)]
    # (glibc's vector exp: within 4 units in the last place of the C library's)
    assert cold["first"] == pytest.approx([math.exp(v) * 2.0 for v in x], rel=4 * 2.0**-52)
    assert cold["arr"][:9] == [v * 0.5 for v in x]
    assert cold["arr"][9] == pytest.approx(sum(x), rel=1e-15)
    assert cold["n"] == 9
    assert len(cold["errors"]) == 2
    assert all("iteration" in e for e in cold["errors"]), cold["errors"]

    for extra in ([], ["more"]):
        env_script = [str(script), *extra]
        warm = _run_args(env_script, cache, tmp_path)
        assert warm["compiles"] == 0
        assert warm["first"] == cold["first"]
        assert warm["arr"] == cold["arr"] and warm["n"] == 9
        assert warm["errors"] == cold["errors"]
        if extra:
            assert warm["after"] > 0
            assert warm["more"][0] == pytest.approx(cold["first"], rel=1e-6)
            expected = sum(math.log1p(v) + math.sqrt(v) for v in x)
            assert warm["more"][1] == pytest.approx(expected, rel=1e-12)


def _run_args(argv: list[str], cache_dir: Path, cwd: Path) -> dict:
    env = dict(os.environ)
    env["LOOPSCALE_CACHE_DIR"] = str(cache_dir)
    env.pop("LOOPSCALE_DISABLE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CORPUS_RUN = COUNTER + """
import hashlib
import sys

sys.path.insert(0, sys.argv[1])
from loopscale import level  # noqa: E402
from tests.accel.kernels import KERNELS, accelerated  # noqa: E402


def digest(value, h):
    if isinstance(value, tuple):
        for v in value:
            digest(v, h)
    elif isinstance(value, np.ndarray):
        h.update(str(value.dtype).encode() + repr(value.shape).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(repr(value).encode())


out = {}
with level(sys.argv[2]):
    for k in KERNELS:
        args = k.make_args(37, np.random.default_rng(5))
        result = accelerated(k)(*args)
        h = hashlib.sha256()
        digest((result, args), h)
        out[k.name] = h.hexdigest()
print(json.dumps({"compiles": counter.count, "digests": out}))
"""


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_every_corpus_kernel_loads_warm_with_the_same_results(tmp_path, lvl):
    # The whole corpus (maps, reductions, helpers, complex, float32, arrays made
    # inside, sequential loops) in a new process from a filled cache: nothing
    # compiles, and every output and argument is the same bit for bit.
    cache = tmp_path / "cache"
    script = tmp_path / "corpus_run.py"
    script.write_text(CORPUS_RUN)
    cold = _run_args([str(script), str(REPO_ROOT), lvl], cache, tmp_path)
    assert cold["compiles"] > 25
    warm = _run_args([str(script), str(REPO_ROOT), lvl], cache, tmp_path)
    assert warm["compiles"] == 0
    assert warm["digests"] == cold["digests"]


LOADED_BY_PATH = COUNTER + """
import importlib.util
import sys

# a kernel file loaded by path under a name that is not in sys.modules (as
# some notebook tools and plugin loaders do): Numba's cache cannot rebuild the
# entry's environment in a new process (it imports the module by name)
spec = importlib.util.spec_from_file_location("loaded_by_path", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
kernel = accelerate(mod.kernel)
x = np.arange(10.0)
out = kernel(x, np.zeros(10))
print(json.dumps({"compiles": counter.count, "result": out.tolist()}))
"""


def test_a_kernel_from_a_module_that_cannot_be_imported_by_name_still_runs_warm(tmp_path):
    # A cached entry whose module cannot be imported is a miss, not an error
    # ("No module named '<dynamic>'" was reported as a missing optional package).
    kfile = tmp_path / "kfile.py"
    kfile.write_text("def kernel(x, out):\n    for i in range(x.shape[0]):\n"
                     "        out[i] = x[i] * 3.0 + 1.0\n    return out\n")
    script = tmp_path / "by_path.py"
    script.write_text(LOADED_BY_PATH)
    for _ in range(3):
        got = _run_args([str(script), str(kfile)], tmp_path / "cache", tmp_path)
        assert got["result"] == _expected(3.0)
