"""Importing loopscale is cheap and side-effect free; configuration is read in one place."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "loopscale"

#: Modules whose import would initialise MPI or CUDA (or load a GPU runtime).
HEAVY_MODULES = ("mpi4py.MPI", "numba.cuda", "numba_cuda", "cupy")


@pytest.mark.parametrize(
    "module",
    [
        "loopscale",
        "loopscale.accel",
        "loopscale.schedule",
        "loopscale.distribute",
        "loopscale.profiler",
        "loopscale.cli",
    ],
)
def test_import_does_not_initialise_mpi_or_cuda(module: str, run_python) -> None:
    proc = run_python(
        f"""
        import json, sys
        import {module}
        print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))
        """,
        timeout=60,
    )
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import {module} imported {loaded}"


def test_installed_version_matches_package_version(run_python) -> None:
    proc = run_python(
        """
        from importlib import metadata
        import loopscale
        print(metadata.version("loopscale"), loopscale.__version__)
        """
    )
    installed, package = proc.stdout.split()
    assert installed == package


# --- LOOPSCALE_* environment variables are read only in loopscale/config.py ---------


def _names_loopscale_variable(node: ast.AST) -> bool:
    """Whether *node* is a literal naming a LOOPSCALE_* variable.

    For example ``"LOOPSCALE_LEVEL"`` or ``f"LOOPSCALE_{name}"``.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("LOOPSCALE_")
    if isinstance(node, ast.JoinedStr) and node.values:
        return _names_loopscale_variable(node.values[0])
    return False


#: Calls that look a variable up by name: os.getenv(k), environ.get(k), .pop, .setdefault,
#: and name.startswith("LOOPSCALE_") used to filter os.environ.
_LOOKUPS = frozenset({"getenv", "getenvb", "get", "pop", "setdefault", "startswith"})


def find_loopscale_variable_reads(source: str, filename: str = "<source>") -> list[str]:
    """Places in *source* that look up a LOOPSCALE_* name, as 'file:line: code'."""
    tree = ast.parse(source, filename)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        key: ast.AST | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _LOOKUPS:
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.In, ast.NotIn)) for op in node.ops
        ):
            key = node.left
        if key is not None and _names_loopscale_variable(key):
            found.append((node.lineno, f"{filename}:{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_variable_read_finder_catches_every_form() -> None:
    source = """
import os
from os import environ, getenv
a = os.environ.get("LOOPSCALE_LEVEL")
b = os.environ["LOOPSCALE_MAX_WORKERS"]
c = getenv("LOOPSCALE_DISABLE", "")
d = "LOOPSCALE_CACHE_DIR" in environ
e = environ.get(f"LOOPSCALE_{name}")
f = [k for k in os.environ if k.startswith("LOOPSCALE_")]
"""
    lines = [hit.split(":")[1] for hit in find_loopscale_variable_reads(source)]
    assert lines == ["4", "5", "6", "7", "8", "9"]


def test_variable_read_finder_ignores_messages_and_other_variables() -> None:
    source = '''
"""Set LOOPSCALE_LEVEL=threads to use every core."""
import os
message = "unknown level; set LOOPSCALE_LEVEL to one of serial, threads"
threads = os.environ.get("OMP_NUM_THREADS")
child_env = {**os.environ, "LOOPSCALE_LEVEL": "serial"}
'''
    assert find_loopscale_variable_reads(source) == []


def test_loopscale_variables_are_read_only_in_config() -> None:
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    assert PACKAGE_DIR / "config.py" in sources
    found = []
    for path in sources:
        if path == PACKAGE_DIR / "config.py":
            continue
        relative = str(path.relative_to(PACKAGE_DIR.parent))
        found += find_loopscale_variable_reads(path.read_text(encoding="utf-8"), relative)
    assert found == [], (
        "LOOPSCALE_* variables must be read only in loopscale/config.py "
        "(add a function there and call it):\n" + "\n".join(found)
    )
