"""``--diff``: the unified patch that decorates accelerable hot functions.

For each function whose hot loop was found accelerable, ``@accelerate`` is
inserted directly above its ``def`` line (below any other decorators, so it
wraps the plain function), and ``from loopscale import accelerate`` after
the file's leading docstring, ``__future__`` imports and top import block,
unless the file already imports it.  Paths in the patch are relative to the
current directory when the file is under it (apply with ``patch -p0`` there);
other files keep absolute paths, which ``patch`` refuses unless told the name.
"""

from __future__ import annotations

import ast
import difflib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["render", "patch_source"]

IMPORT = "from loopscale import accelerate"


def _import_line(tree: ast.Module) -> int:
    """0-based index of the line before which the import goes."""
    after = 0
    for pos, stmt in enumerate(tree.body):
        is_doc = pos == 0 and isinstance(stmt, ast.Expr) and isinstance(
            stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
        if is_doc or isinstance(stmt, (ast.Import, ast.ImportFrom)):
            after = stmt.end_lineno or stmt.lineno
        else:
            break
    return after


def patch_source(source: str, def_lines: list[int]) -> str:
    """*source* with ``@accelerate`` above each ``def`` at *def_lines* (1-based)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    has_import = any(
        isinstance(n, ast.ImportFrom) and n.module == "loopscale"
        and any(a.name == "accelerate" and a.asname is None for a in n.names)
        for n in tree.body)
    already = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target).split(".")[-1] == "accelerate":
                    already.add(node.lineno)
    for line in sorted(set(def_lines) - already, reverse=True):
        text = lines[line - 1]
        indent = text[: len(text) - len(text.lstrip())]
        lines.insert(line - 1, f"{indent}@accelerate\n")
    if not has_import and set(def_lines) - already:
        at = _import_line(tree)
        lines.insert(at, IMPORT + "\n")
    return "".join(lines)


def render(report: Report) -> str:
    """The patch for every accelerable hot function in *report* ('' when none)."""
    by_file: dict[str, list[int]] = {}
    for loop in report.loops:
        if loop.accelerable and loop.def_line:
            by_file.setdefault(loop.file, [])
            if loop.def_line not in by_file[loop.file]:
                by_file[loop.file].append(loop.def_line)
    out = []
    for path, def_lines in sorted(by_file.items()):
        try:
            with open(path, encoding="utf-8") as fh:
                before = fh.read()
        except OSError:
            continue
        after = patch_source(before, def_lines)
        if after == before:
            continue
        rel = os.path.relpath(path)
        name = rel if not rel.startswith("..") else path
        out.extend(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        fromfile=name, tofile=name))
    return "".join(out)
