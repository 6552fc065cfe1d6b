"""Verdicts: can the function around a hot loop be accelerated, and how much faster is it?

For each hot loop the enclosing function is compiled with
:func:`loopscale.accelerate` on the arguments captured while sampling, in a
child process (:mod:`._trial`) with a timeout, so that a compiler crash or a
hang is contained and reported as such.  Mode ``"compile"`` only compiles
(and runs once: Numba compiles on the first call); mode ``"trial"`` also
runs the Python function and the compiled one on copies of the captured
arguments, compares their results (return value and arrays changed in
place) and reports the measured speedup.

Loops that need no child get their verdict here: a loop at module level, a
function nested in another one.  pandas row loops (``iterrows``,
``itertuples``, ``apply(axis=1)``, ``.loc``/``.at`` inside a loop over the
index) get a rewrite suggestion from their syntax alone.
"""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._loops import LoopInfo, SourceIndex
from ._session import Session

__all__ = ["Verdict", "CHECKS", "check_loops", "pandas_suggestion", "pandas_argument_reason"]

#: ``check=`` choices: no verdicts, compile only, compile and time.
CHECKS = ("none", "compile", "trial")


@dataclass(frozen=True)
class Verdict:
    """Whether a loop's function compiles, why not, and the measured speedup."""

    accelerable: bool | None
    reason: str | None = None
    speedup: float | None = None
    status: str = "not-checked"
    suggestion: str | None = None


def pandas_suggestion(index: SourceIndex, loop: LoopInfo) -> str | None:
    """A concrete rewrite for a pandas row loop, or None when *loop* is not one
    (see :mod:`._rewrite`)."""
    from ._rewrite import suggest

    return suggest(index, loop)


#: Attributes a pandas object shares with the array ``to_numpy()`` gives.
_ARRAY_ATTRS = frozenset({"shape", "size", "ndim", "dtype", "T"})
_PANDAS_KINDS = {"pandas.DataFrame": "DataFrame", "pandas.Series": "Series"}


def _is_pandas_attribute(attr: str, kind: str) -> bool:
    """Whether ``obj.attr`` is pandas API (``loc``, ``iat``, ``apply``...), not a column."""
    pd = sys.modules.get("pandas")
    if pd is not None:
        return hasattr(getattr(pd, kind), attr)
    return attr in ("loc", "iloc", "at", "iat", "values", "index", "columns", "apply",
                    "iterrows", "itertuples", "to_numpy", "sum", "mean")


def _row_names(func: ast.AST, frame: str) -> set[str]:
    """Names bound to the rows of *frame* in *func* (``for _, row in frame.iterrows()``,
    ``for row in frame.itertuples()``, ``frame.apply(lambda row: ..., axis=1)``)."""
    rows: set[str] = set()
    for node in ast.walk(func):
        it, target = getattr(node, "iter", None), getattr(node, "target", None)
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) \
                and isinstance(it.func.value, ast.Name) and it.func.value.id == frame:
            if it.func.attr == "iterrows" and isinstance(target, ast.Tuple) \
                    and len(target.elts) == 2 and isinstance(target.elts[1], ast.Name):
                rows.add(target.elts[1].id)
            elif it.func.attr == "itertuples" and isinstance(target, ast.Name):
                rows.add(target.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "apply" and isinstance(node.func.value, ast.Name) \
                and node.func.value.id == frame and node.args \
                and isinstance(node.args[0], ast.Lambda) and node.args[0].args.args:
            rows.add(node.args[0].args.args[0].arg)
    return rows


def _columns_of_row_function(index: SourceIndex, qualname: str) -> list[str]:
    """Columns a function applied to rows reads from its first parameter, in order."""
    func = index.function_node(qualname)
    args = getattr(getattr(func, "args", None), "args", None)
    if not args:
        return []
    row = args[0].arg
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(func):  # type: ignore[arg-type]
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id == row and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            found.append((node.lineno, node.col_offset, node.slice.value))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == row and not node.attr.startswith("_") \
                and node.attr not in ("Index", "name", "index"):
            found.append((node.lineno, node.col_offset, node.attr))
    return list(dict.fromkeys(col for *_, col in sorted(found)))


def pandas_argument_reason(index: SourceIndex, qualname: str,
                           kinds: dict[str, str]) -> str | None:
    """Why *qualname* cannot compile as written when it takes a pandas object that it
    uses as one (by column name, ``.loc``, methods), in plain words with the line;
    None when it takes none or uses it as an array only (``df.shape``, ``s[i]``)."""
    func = index.function_node(qualname)
    if func is None:
        return None
    for name, kind in kinds.items():
        what = _PANDAS_KINDS.get(kind)
        if what is None:
            continue
        uses: list[tuple[int, int, int, str | None]] = []  # line, col, order, column read
        written: set[str] = set()
        rows = _row_names(func, name)
        for node in ast.walk(func):
            if isinstance(getattr(node, "ctx", None), ast.Store):
                key = getattr(node, "slice", None)
                if isinstance(key, ast.Tuple) and len(key.elts) == 2:
                    key = key.elts[1]  # df.loc[i, "c"] = ...
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    written.add(key.value)  # a column the function writes is no input
                continue
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str):
                if node.value.id == name:
                    uses.append((node.lineno, node.col_offset, 0, node.slice.value))
                elif node.value.id in rows:  # row["c"] in a loop over its rows
                    uses.append((node.lineno, node.col_offset, 0, node.slice.value))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in rows and not node.attr.startswith("_") \
                    and node.attr not in ("Index", "name", "index"):
                uses.append((node.lineno, node.col_offset, 0, node.attr))  # row.c
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == name and node.attr not in _ARRAY_ATTRS:
                api = what == "Series" or _is_pandas_attribute(node.attr, what)
                uses.append((node.lineno, node.col_offset, 0, None if api else node.attr))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "apply" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == name and node.args \
                    and isinstance(node.args[0], ast.Name):
                # frame.apply(f, axis=1): the columns f reads from its row, here
                for k, col in enumerate(_columns_of_row_function(index, node.args[0].id), 1):
                    uses.append((node.lineno, node.col_offset, k, col))
        if not uses:
            continue
        uses.sort()
        line = uses[0][0]
        text = index.lines[line - 1].strip() if line <= len(index.lines) else ""
        where = f"line {line}: `{text}`" if text else f"line {line}"
        if what == "Series":
            return (f"argument `{name}` is a pandas Series ({where}): pass it as a NumPy "
                    f"array ({name}.to_numpy()) and index it with [i]")
        read = [col for *_, col in uses if col is not None]
        columns = list(dict.fromkeys(c for c in read if c not in written)) \
            or list(dict.fromkeys(read))
        arrays = ", ".join(f"{name}[{col!r}].to_numpy()" for col in columns) \
            or f"{name}['<column>'].to_numpy()"
        return (f"argument `{name}` is a pandas DataFrame ({where}): pass its columns as "
                f"NumPy arrays ({arrays}) and index them with [i]")
    return None


def _local_verdict(loop: LoopInfo, index: SourceIndex | None = None) -> Verdict | None:
    if loop.kind == "line":  # a line, not a loop: its source could not be matched
        return Verdict(None, "source unavailable or changed: not checked")
    if loop.function == "<module>":
        return Verdict(False, f"the loop at line {loop.line} runs at module level; move it "
                              "into a function and decorate that function with @accelerate",
                       status="refused")
    if "<locals>" in loop.function:
        return Verdict(None, f"{loop.function}() is defined inside another function, where "
                             "the check cannot reach it: not checked (@accelerate takes it "
                             "there; decorate it and call it to see)")
    if "." in loop.function:
        owner, method = loop.function.rsplit(".", 1)
        attrs = _self_attributes(index, loop.function) if index is not None else []
        uses = f" (and the values it reads from the object: {', '.join(attrs)})" \
            if attrs else ""
        return Verdict(False, f"{loop.function}() is a method of class {owner}; @accelerate "
                              "takes plain functions: move the loop into a module-level "
                              f"function that takes the arrays and numbers it uses{uses}, "
                              f"decorate that, and call it from {method}()",
                       status="refused")
    return None


def _self_attributes(index: SourceIndex, qualname: str) -> list[str]:
    """``self.w``-style reads in method *qualname*, in source order."""
    func = index.function_node(qualname)
    args = getattr(getattr(func, "args", None), "args", None)
    if func is None or not args:
        return []
    this = args[0].arg
    found = sorted((n.lineno, n.col_offset, f"{this}.{n.attr}") for n in ast.walk(func)
                   if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                   and n.value.id == this and isinstance(n.ctx, ast.Load))
    return list(dict.fromkeys(text for _, _, text in found))


def _picklable(args: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in args.items():
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001 - leave it out; the kind still describes it
            continue
        out[name] = value
    return out


def _run_child(request: dict[str, Any], timeout: float) -> Verdict:
    with tempfile.TemporaryDirectory(prefix="loopscale-verdict-") as tmp:
        req_path = os.path.join(tmp, "request.pickle")
        res_path = os.path.join(tmp, "result.json")
        with open(req_path, "wb") as fh:
            pickle.dump(request, fh)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "loopscale.profiler._trial", req_path, res_path],
                capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Verdict(None, f"the check did not finish within {timeout:g} s and was "
                                 "stopped (the compiled or Python run may hang on these "
                                 "arguments)", status="timeout")
        if proc.returncode != 0 or not os.path.exists(res_path):
            if proc.returncode < 0:
                try:
                    how = f"was killed by {signal.Signals(-proc.returncode).name}"
                except ValueError:
                    how = f"was killed by signal {-proc.returncode}"
            else:
                how = f"exited with status {proc.returncode}"
            tail = (proc.stderr.strip().splitlines() or [""])[-1]
            return Verdict(None, f"the check crashed: its process {how}"
                                 + (f" ({tail})" if tail else ""), status="crashed")
        with open(res_path) as fh:
            result = json.load(fh)
    reason = result.get("reason")
    if reason:
        reason = " ".join(reason.split())
    return Verdict(result.get("accelerable"), reason, result.get("speedup"),
                   result.get("status", "compiled"))


def check_loops(loops: Iterable[LoopInfo], session: Session, *, check: str = "compile",
                timeout: float = 60.0, max_workers: int = 2,
                indexes: dict[str, SourceIndex | None] | None = None,
                sys_path: list[str] | None = None) -> dict[LoopInfo, Verdict]:
    """A verdict for each of *loops* (one check per enclosing function)."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(map(repr, CHECKS))}; got {check!r}")
    loops = list(loops)
    verdicts: dict[LoopInfo, Verdict] = {}
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for loop in loops:
        local = _local_verdict(loop, (indexes or {}).get(loop.file)) \
            if check != "none" else Verdict(None)
        if local is not None:
            verdicts[loop] = local
            continue
        key = (loop.file, loop.function)
        if key in jobs:
            continue
        cap = session.capture_for(loop.file, loop.function)
        if cap is None:
            verdicts[loop] = Verdict(None, "no arguments were captured for "
                                           f"{loop.function}(): not checked")
            continue
        index = (indexes or {}).get(loop.file)
        pandas_reason = pandas_argument_reason(index, loop.function, dict(cap.kinds)) \
            if index is not None else None
        if pandas_reason is not None:
            verdicts[loop] = Verdict(False, pandas_reason, status="refused")
            continue
        jobs[key] = {"file": loop.file, "qualname": loop.function, "mode": check,
                     "params": [p for p in cap.params], "args": _picklable(dict(cap.args)),
                     "kinds": dict(cap.kinds), "sys_path": list(sys_path or [])}
    results: dict[tuple[str, str], Verdict] = {}
    if jobs:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
            futures = {key: pool.submit(_run_child, req, timeout) for key, req in jobs.items()}
            results = {key: fut.result() for key, fut in futures.items()}
    for loop in loops:
        verdict = verdicts.get(loop) or results.get((loop.file, loop.function), Verdict(None))
        index = (indexes or {}).get(loop.file)
        suggestion = pandas_suggestion(index, loop) if index is not None else None
        if suggestion:
            verdict = Verdict(verdict.accelerable, verdict.reason, verdict.speedup,
                              verdict.status, suggestion)
        verdicts[loop] = verdict
    return verdicts
