"""Child process of the verdict step: compile one function, optionally time it.

Run as ``python -m loopscale.profiler._trial REQUEST RESULT``: REQUEST is a
pickle written by :mod:`._verdict`, RESULT the JSON file this writes.  Kept
in its own process so that a compiler crash, a segfault in compiled code or a
hang costs the profiler nothing but a line in the report.

The function is rebuilt from its source file without running the script:
only the file's top-level imports, definitions and constant assignments are
executed (each on its own; one that fails is skipped), in a module of its
own whose code keeps the file's name and line numbers, so that
``loopscale.accel`` reads the same source the profiler saw.
"""

from __future__ import annotations

import ast
import copy
import json
import linecache
import os
import pickle
import sys
import time
import types
from typing import Any

_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_constant(node: ast.AST) -> bool:
    return not any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.NamedExpr))
                   for n in ast.walk(node))


def load_function(filename: str, qualname: str) -> Any:
    """The function *qualname* of *filename*, defined without running the script."""
    from loopscale.profiler._loops import read_source

    raw = read_source(filename)
    tree = ast.parse(raw, filename)
    if not os.path.isfile(filename):
        # inside a zip file: give linecache the source, which loopscale.accel
        # reads through inspect (an entry without a modification time is kept)
        lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
        linecache.cache[filename] = (len(raw), None, lines, filename)
    module = types.ModuleType("__loopscale_trial__")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    for stmt in tree.body:
        keep = isinstance(stmt, _KEEP) or (
            isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None
            and _is_constant(stmt.value))
        if not keep:
            continue
        code = compile(ast.Module(body=[stmt], type_ignores=[]), filename, "exec")
        try:
            exec(code, module.__dict__)  # noqa: S102 - the user's own definitions
        except Exception:  # noqa: BLE001 - an import that fails here: skip it
            continue
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


_ITEM_TYPES = {"bool": bool, "int": int, "float": float, "complex": complex}


def _substitute(kind: str) -> Any:
    """A tiny stand-in of the same type for an argument too large to copy
    (``float64[:, :]``, ``list[float] of 2,000,000 items``)."""
    import numpy as np

    kind = kind.split(" of ", 1)[0]
    if kind.startswith(("list[", "tuple[")) and kind.endswith("]"):
        container, item = kind[:-1].split("[", 1)
        if item in _ITEM_TYPES:
            items = [_ITEM_TYPES[item](0)] * 2
            return items if container == "list" else tuple(items)
        raise LookupError(kind)
    if "[" in kind and kind.endswith("]"):
        dtype, dims = kind.split("[", 1)
        ndim = dims.count(":")
        return np.zeros((2,) * ndim, dtype=dtype)
    raise LookupError(kind)


def _uncaptured(name: str, kind: str) -> dict[str, Any]:
    """The verdict when argument *name* of type *kind* could not be copied."""
    base = kind.split(" of ", 1)[0]
    if base in ("dict", "set", "frozenset"):
        return {"accelerable": False, "status": "refused",
                "reason": f"argument `{name}` is a {base}, which compiled code cannot take: "
                          "pass NumPy arrays (one per field), numbers or tuples"}
    if "." in base and not base.startswith(("numpy.", "pandas.")):
        return {"accelerable": False, "status": "refused",
                "reason": f"argument `{name}` is a {base} object, which compiled code cannot "
                          "take: pass the NumPy arrays and numbers it holds instead"}
    return {"accelerable": None, "status": "not-checked",
            "reason": f"argument `{name}` ({kind}) was too large or too complex to copy "
                      "while profiling, so the function was not compiled"}


def _compare(a: Any, b: Any) -> str | None:
    """None when *a* and *b* agree (floats within 1e-7 relative), else how they differ."""
    import numpy as np

    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return f"lengths {len(a)} and {len(b)}"
        for x, y in zip(a, b, strict=False):
            diff = _compare(x, y)
            if diff:
                return diff
        return None
    if a is None or b is None:
        return None if a is b else f"{a!r} and {b!r}"
    try:
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape:
            return f"shapes {x.shape} and {y.shape}"
        if x.dtype.kind in "fc" or y.dtype.kind in "fc":
            if np.allclose(x, y, rtol=1e-7, atol=1e-12, equal_nan=True):
                return None
            return f"max abs difference {np.nanmax(np.abs(x - y)):.3g}"
        return None if np.array_equal(x, y) else "values differ"
    except Exception:  # noqa: BLE001
        return None if a == b else f"{a!r} and {b!r}"


def check(request: dict[str, Any]) -> dict[str, Any]:
    """Compile (and with ``mode == "trial"`` time) one function; return the verdict."""
    from loopscale import accelerate
    from loopscale.errors import LoopscaleError

    for path in reversed(request.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    func = load_function(request["file"], request["qualname"])
    params = [p for p in request["params"]]
    args = request["args"]
    values = []
    substituted = []
    for name in params:
        if name in args:
            values.append(args[name])
        else:
            kind = request["kinds"].get(name, "unknown")
            try:
                values.append(_substitute(kind))
                substituted.append(name)
            except LookupError:
                return _uncaptured(name, kind)
    acc = accelerate(func)
    start = time.perf_counter()
    try:
        if request["mode"] == "trial":
            compiled_result = acc(*copy.deepcopy(values))
        else:  # compile for the captured types only: a long or endless loop is not run
            acc.compile_for(*values)
    except LoopscaleError as exc:
        return {"accelerable": False, "status": "refused", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a run on stand-in values may fail
        return {"accelerable": None, "status": "error",
                "reason": f"compiling or running it raised {type(exc).__name__}: {exc}"}
    first_call = time.perf_counter() - start
    out: dict[str, Any] = {"accelerable": True, "status": "compiled", "reason": None,
                           "compile_seconds": first_call}
    if request["mode"] != "trial":
        return out
    if substituted:
        which = ", ".join(f"{name!r} ({request['kinds'].get(name, '?')})"
                          for name in substituted)
        out["status"] = "not-trialled"
        out["reason"] = (f"compiles (for arguments of the types seen); no trial, since "
                         f"{which} {'was' if len(substituted) == 1 else 'were'} too large "
                         "to copy while profiling")
        return out
    py_values = copy.deepcopy(values)
    start = time.perf_counter()
    py_result = func(*py_values)
    py_seconds = time.perf_counter() - start
    best = float("inf")
    deadline = time.perf_counter() + max(py_seconds, 0.2)
    while True:
        c_values = copy.deepcopy(values)
        start = time.perf_counter()
        compiled_result = acc(*c_values)
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    diff = _compare(py_result, compiled_result) or _compare(py_values, c_values)
    out.update(python_seconds=py_seconds, compiled_seconds=best,
               speedup=py_seconds / best if best > 0 else None, status="trialled")
    if diff:
        out.update(accelerable=False, status="mismatch",
                   reason=f"compiles, but on the captured arguments its result differs "
                          f"from the Python function's ({diff})")
    return out


def main(argv: list[str]) -> int:
    request_path, result_path = argv
    with open(request_path, "rb") as fh:
        request = pickle.load(fh)
    try:
        result = check(request)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        result = {"accelerable": None, "status": "error",
                  "reason": f"the check raised {type(exc).__name__}: {exc}"}
    with open(result_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
