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
