"""The documentation builds without a single warning.

Runs ``sphinx-build -W -b html`` on ``docs/`` into a temporary directory, in a
child process with a timeout.  Skipped, with the reason, when the tools of the
``docs`` extra (sphinx, myst-parser, numpydoc) are not installed; the ``test``
extra does not install them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"
TIMEOUT_S = 240
NEEDED = {"sphinx": "sphinx", "myst_parser": "myst-parser", "numpydoc": "numpydoc"}


def _missing() -> list[str]:
    return [dist for mod, dist in NEEDED.items() if importlib.util.find_spec(mod) is None]


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 30)
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        pytest.skip(f"building the docs needs {', '.join(missing)} "
                    "(pip install -e '.[docs]'); the test extra does not install them")
    env = dict(os.environ)
    env["LOOPSCALE_CACHE_DIR"] = str(tmp_path / "cache")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
               "-d", str(tmp_path / "doctrees"), str(DOCS_DIR), str(tmp_path / "html")]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"sphinx-build did not finish within {TIMEOUT_S} s\n{exc.stderr}")
    assert proc.returncode == 0, (
        f"sphinx-build -W failed (status {proc.returncode}):\n"
        f"--- stderr ---\n{proc.stderr}\n--- stdout (tail) ---\n{proc.stdout[-3000:]}")
    for page in ("index", "user_guide", "api", "architecture", "benchmarks"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), f"{page}.html was not built"
