"""Rewrite suggestions for pandas row loops: the same loop over column arrays, compiled.

A hot loop that walks a DataFrame's rows (``iterrows``, ``itertuples``,
``apply(..., axis=1)``, ``.loc``/``.at``/``.iat`` inside a loop over the
index) is slow because pandas builds a Python object per row or looks up one
cell at a time.  :func:`suggest` writes the replacement: an ``@accelerate``
kernel whose loop reads ``price[i]`` where the original read
``row["price"]``, called with ``df["price"].to_numpy()``, and the lines that
put its results where the loop put them.

The loop body is translated statement by statement:

- a read of a column through the row (``row["c"]``, ``row.c``,
  ``df.loc[i, "c"]``, ``df.at[i, "c"]``, ``df["c"].iat[i]``...) becomes
  ``c[i]``, the column passed in as an array; columns are listed in the order
  the code first reads them;
- ``values.append(e)`` fills an array, appended to ``values`` afterwards;
  ``df.loc[i, "c"] = e`` (or ``.at``) fills an array stored as column ``c``
  afterwards; ``total += e`` (``-=``, ``*=``) is a reduction the kernel
  returns; other assignments are the body's own temporaries; ``if``,
  ``for ... in range(...)``, ``continue``, ``break`` and ``pass`` are kept;
- the enclosing function's other local names the body reads (a weight ``w``)
  are passed to the kernel; module-level names (``math``, ``np``) stay global.

A body using anything else (the row as a whole, the index label, a method
call with effects) gets the same kernel as a template to complete, and says so.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import sys
from dataclasses import dataclass, field

from ._loops import LoopInfo, SourceIndex

__all__ = ["suggest"]

_LOOKUPS = ("loc", "at", "iloc", "iat")
_ROW_API = frozenset({"index", "name", "Index", "values", "to_dict", "to_numpy", "get",
                      "keys", "items", "loc", "iloc", "at", "iat"})
_REDUCE_OPS = (ast.Add, ast.Sub, ast.Mult)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class _Untranslatable(Exception):
    """The body does something the rewrite cannot carry over as it is."""


@dataclass
class _RowLoop:
    """A row loop found in the source, before translation."""

    frame: str                    # the DataFrame expression, as written ("df")
    why: str                      # what makes it slow, one phrase
    line: int
    body: list[ast.stmt]
    rows: set[str] = field(default_factory=set)  # names bound to the row
    label: str | None = None      # the loop variable of a loop over index labels
    position: str | None = None   # the loop variable of a loop over positions
    apply_call: str | None = None  # the `df.apply(...)` call, for apply loops
    comprehension: str | None = None  # the comprehension, for one over rows


class _Translator:
    """Translate one row loop's body into a kernel body over column arrays."""

    def __init__(self, loop: _RowLoop, local_names: set[str]) -> None:
        self.loop = loop
        self.local_names = local_names
        self.columns: dict[str, str] = {}       # column -> parameter name
        self.outputs: dict[str, str] = {}       # list name -> array name
        self.column_outputs: dict[str, str] = {}  # column written -> array name
        self.reductions: list[str] = []
        self.counters: dict[str, str] = {}     # list name -> count of items appended
        self.depth = 0                          # inside how many if/for statements
        self.temporaries: set[str] = set()
        self.free: list[str] = []
        self.taken: set[str] = set()
        for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
            if isinstance(node, ast.Name):
                self.taken.add(node.id)
        label = loop.label if loop.label and not loop.label.startswith("_") else None
        self.index = loop.position or label or self._fresh("i")

    # -- names ------------------------------------------------------------------------

    def _fresh(self, base: str) -> str:
        base = re.sub(r"\W", "_", base) or "col"
        if base[0].isdigit():
            base = "c_" + base
        if keyword.iskeyword(base) or hasattr(builtins, base):
            base += "_"
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name

    def _column(self, col: str) -> ast.expr:
        if col not in self.columns:
            self.columns[col] = self._fresh(col)
        return self._at(self.columns[col])

    def _at(self, array: str) -> ast.expr:
        return ast.Subscript(value=ast.Name(array, ast.Load()),
                             slice=ast.Name(self.index, ast.Load()), ctx=ast.Load())

    # -- reads ------------------------------------------------------------------------

    def _is_frame(self, node: ast.expr) -> bool:
        return ast.unparse(node) == self.loop.frame

    def _is_label(self, node: ast.expr) -> bool:
        names = {self.loop.label, self.loop.position} - {None}
        return isinstance(node, ast.Name) and node.id in names

    def _cell(self, node: ast.expr) -> str | None:
        """The column that *node* reads one cell of, in the current row, or None."""
        if isinstance(node, ast.Subscript):
            key, base = node.slice, node.value
            if isinstance(base, ast.Name) and base.id in self.loop.rows:
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    return key.value  # row["c"]
                raise _Untranslatable
            if isinstance(base, ast.Attribute) and base.attr in ("loc", "at") \
                    and self._is_frame(base.value) and isinstance(key, ast.Tuple) \
                    and len(key.elts) == 2 and self._is_label(key.elts[0]) \
                    and isinstance(key.elts[1], ast.Constant) \
                    and isinstance(key.elts[1].value, str):
                return key.elts[1].value  # df.loc[i, "c"], df.at[i, "c"]
            if isinstance(base, ast.Attribute) and base.attr in _LOOKUPS \
                    and self._is_label(key):
                series = base.value  # df["c"].iat[i], df.c.loc[i]
            elif self._is_label(key):
                series = base        # df["c"][i]
            else:
                series = None
            if series is not None:
                col = self._series_column(series)
                if col is not None:
                    return col
            if isinstance(key, ast.Constant) and isinstance(key.value, str) \
                    and isinstance(base, ast.Subscript) and isinstance(base.value, ast.Attribute) \
                    and base.value.attr in ("loc", "iloc") and self._is_frame(base.value.value) \
                    and self._is_label(base.slice):
                return key.value     # df.iloc[i]["c"]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in self.loop.rows:
            if node.attr in _ROW_API or node.attr.startswith("_"):
                raise _Untranslatable
            return node.attr         # row.c
        return None

    def _series_column(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Subscript) and self._is_frame(node.value) \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            return node.slice.value
        if isinstance(node, ast.Attribute) and self._is_frame(node.value) \
                and node.attr not in _LOOKUPS:
            return node.attr
        return None

    def expr(self, node: ast.expr) -> ast.expr:
        """*node* with its cell reads replaced; raise when a row is used otherwise."""
        col = self._cell(node)
        if col is not None:
            return self._column(col)
        if isinstance(node, ast.Name):
            if node.id in self.loop.rows or node.id == self.loop.label \
                    or node.id == self.loop.frame:
                raise _Untranslatable  # the whole row, or an index label
            if node.id == self.loop.position:
                return ast.Name(self.index, ast.Load())
            if node.id in self.local_names and node.id not in self.temporaries \
                    and node.id not in self.reductions and node.id not in self.free:
                self.free.append(node.id)
            return node
        if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            raise _Untranslatable
        new = type(node)(**{f: getattr(node, f) for f in node._fields})
        for name, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(new, name, self.expr(value))
            elif isinstance(value, list):
                setattr(new, name, [self.expr(v) if isinstance(v, ast.expr) else v
                                    for v in value])
        return new

    # -- statements -------------------------------------------------------------------

    def body(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            new = self.stmt(s)
            if isinstance(new, ast.If) and isinstance(new.test, ast.Constant) \
                    and new.test.value is True:
                out.extend(new.body)  # several statements for one
            else:
                out.append(new)
        return out

    def stmt(self, node: ast.stmt) -> ast.stmt:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute) \
                and node.value.func.attr == "append" \
                and isinstance(node.value.func.value, ast.Name) \
                and len(node.value.args) == 1 and not node.value.keywords:
            target = node.value.func.value.id
            if target not in self.outputs:
                self.outputs[target] = self._fresh(f"{target}_values")
            value = self.expr(node.value.args[0])
            if self.depth == 0 and target not in self.counters:
                return self._store(self.outputs[target], value)
            # appended under a condition: count the items appended
            if target not in self.counters:
                self.counters[target] = self._fresh(f"n_{target}")
                self.reductions.append(self.counters[target])
            count = self.counters[target]
            store = ast.Assign(targets=[ast.Subscript(
                value=ast.Name(self.outputs[target], ast.Load()),
                slice=ast.Name(count, ast.Load()), ctx=ast.Store())], value=value, lineno=0)
            step = ast.AugAssign(target=ast.Name(count, ast.Store()), op=ast.Add(),
                                 value=ast.Constant(1), lineno=0)
            return ast.If(test=ast.Constant(True), body=[store, step], orelse=[], lineno=0)
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            lhs = node.targets[0]
            written = self._written_column(lhs)
            if written is not None:
                if written not in self.column_outputs:
                    self.column_outputs[written] = self._fresh(f"{written}_values")
                return self._store(self.column_outputs[written], self.expr(node.value))
            if isinstance(lhs, ast.Name) and lhs.id not in self.loop.rows:
                value = self.expr(node.value)
                self.temporaries.add(lhs.id)
                return ast.Assign(targets=[lhs], value=value, lineno=0)
            raise _Untranslatable
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) \
                and isinstance(node.op, _REDUCE_OPS):
            name = node.target.id
            if name not in self.temporaries and name not in self.reductions:
                self.reductions.append(name)
            value = self.expr(node.value)
            return ast.AugAssign(target=node.target, op=node.op, value=value, lineno=0)
        if isinstance(node, ast.If):
            test = self.expr(node.test)
            self.depth += 1
            try:
                return ast.If(test=test, body=self.body(node.body),
                              orelse=self.body(node.orelse), lineno=0)
            finally:
                self.depth -= 1
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) \
                and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) \
                and node.iter.func.id == "range" and not node.orelse:
            self.temporaries.add(node.target.id)
            it = self.expr(node.iter)
            self.depth += 1
            try:
                return ast.For(target=node.target, iter=it, body=self.body(node.body),
                               orelse=[], lineno=0)
            finally:
                self.depth -= 1
        if isinstance(node, (ast.Pass, ast.Continue, ast.Break)):
            return node
        raise _Untranslatable

    def _written_column(self, target: ast.expr) -> str | None:
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute) \
                and target.value.attr in ("loc", "at") and self._is_frame(target.value.value) \
                and isinstance(target.slice, ast.Tuple) and len(target.slice.elts) == 2 \
                and self._is_label(target.slice.elts[0]) \
                and isinstance(target.slice.elts[1], ast.Constant) \
                and isinstance(target.slice.elts[1].value, str):
            return target.slice.elts[1].value
        return None

    def _store(self, array: str, value: ast.expr) -> ast.stmt:
        target = ast.Subscript(value=ast.Name(array, ast.Load()),
                               slice=ast.Name(self.index, ast.Load()), ctx=ast.Store())
        return ast.Assign(targets=[target], value=value, lineno=0)


def _find(index: SourceIndex, loop: LoopInfo) -> _RowLoop | None:
    node = index.nodes.get(loop.line)
    if node is None:
        return None
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)) and len(node.generators) == 1 \
            and not node.generators[0].ifs:
        gen = node.generators[0]
        it = gen.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) \
                and it.func.attr in ("iterrows", "itertuples"):
            frame = ast.unparse(it.func.value)
            found = _RowLoop(frame, f"`{frame}.{it.func.attr}()` builds a Python object "
                                    "per row", node.lineno, [ast.Return(value=node.elt)],
                             comprehension=ast.unparse(node))
            _bind_rows(found, gen.target, it.func.attr)
            return found if found.rows else None
    if isinstance(node, (ast.For, ast.AsyncFor)):
        it = node.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) \
                and it.func.attr in ("iterrows", "itertuples"):
            frame = ast.unparse(it.func.value)
            found = _RowLoop(frame, f"`{frame}.{it.func.attr}()` builds a Python object "
                                    "per row", node.lineno, node.body)
            _bind_rows(found, node.target, it.func.attr)
            return found if found.rows else None
        over, position = None, False
        if isinstance(it, ast.Attribute) and it.attr == "index":
            over = ast.unparse(it.value)
        elif isinstance(it, ast.Call) and isinstance(it.func, ast.Name) \
                and it.func.id == "range" and len(it.args) == 1 \
                and isinstance(it.args[0], ast.Call) and isinstance(it.args[0].func, ast.Name) \
                and it.args[0].func.id == "len" and len(it.args[0].args) == 1:
            over, position = ast.unparse(it.args[0].args[0]), True
        if over is not None and isinstance(node.target, ast.Name):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and sub.attr in _LOOKUPS:
                    found = _RowLoop(over, f"`.{sub.attr}[...]` inside a loop over the rows "
                                           f"of `{over}` looks up one cell at a time",
                                     node.lineno, node.body)
                    if position:
                        found.position = node.target.id
                    else:
                        found.label = node.target.id
                    return found
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                and sub.func.attr == "apply" and sub.args and any(
                    k.arg == "axis" and isinstance(k.value, ast.Constant)
                    and k.value.value in (1, "columns") for k in sub.keywords):
            frame = ast.unparse(sub.func.value)
            found = _RowLoop(frame, f"`{frame}.apply(..., axis=1)` calls Python once per row",
                             sub.lineno, [], apply_call=ast.unparse(sub))
            func = sub.args[0]
            if isinstance(func, ast.Lambda) and len(func.args.args) == 1:
                found.rows.add(func.args.args[0].arg)
                found.body = [ast.Return(value=func.body)]
            elif isinstance(func, ast.Name):
                applied = index.function_node(func.id)
                args = getattr(applied, "args", None)
                if args is not None and len(args.args) == 1:
                    found.rows.add(args.args[0].arg)
                    found.body = list(getattr(applied, "body", []))
            return found
    return None


def _bind_rows(found: _RowLoop, target: ast.expr, method: str) -> None:
    """Note the names the loop binds: ``idx, row`` for iterrows, ``row`` for itertuples."""
    if method == "iterrows" and isinstance(target, ast.Tuple) and len(target.elts) == 2:
        label, row = target.elts
        found.label = label.id if isinstance(label, ast.Name) else None
        if isinstance(row, ast.Name):
            found.rows.add(row.id)
    elif method == "itertuples" and isinstance(target, ast.Name):
        found.rows.add(target.id)


def _local_names(index: SourceIndex, loop: LoopInfo) -> set[str]:
    """Parameters and assigned names of the function around *loop* (none at module level)."""
    func = index.function_node(loop.function)
    if func is None:
        return set()
    names = {a.arg for a in ast.walk(func.args)  # type: ignore[attr-defined]
             if isinstance(a, ast.arg)}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _apply_body(found: _RowLoop) -> list[ast.stmt]:
    """An applied function's body with its final ``return e`` as ``result.append(e)``."""
    body = found.body
    if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None \
            or any(isinstance(n, ast.Return) for s in body[:-1] for n in ast.walk(s)):
        raise _Untranslatable
    append = ast.Expr(value=ast.Call(
        func=ast.Attribute(value=ast.Name("result", ast.Load()), attr="append",
                           ctx=ast.Load()),
        args=[body[-1].value], keywords=[]))
    return [*body[:-1], append]


def _code(found: _RowLoop, tr: _Translator, kernel_body: list[ast.stmt], kernel: str,
          where: str) -> list[str]:
    frame = found.frame
    # a name read before the body assigns it carries a value from one row to the
    # next (`total = total + x`): it goes in and comes back out, as a reduction
    for name in [n for n in tr.free if n in tr.temporaries or n in tr.reductions]:
        tr.free.remove(name)
        if name not in tr.reductions:
            tr.reductions.append(name)
    arrays = [*tr.outputs.values(), *tr.column_outputs.values()]
    params = [*tr.columns.values(), *tr.free, *arrays, *tr.reductions]
    sized = next(iter(tr.columns.values()), None) or (arrays[0] if arrays else None)
    if sized is None:
        raise _Untranslatable
    loop = ast.For(target=ast.Name(tr.index, ast.Store()),
                   iter=ast.Call(func=ast.Name("range", ast.Load()),
                                 args=[ast.parse(f"{sized}.shape[0]", mode="eval").body],
                                 keywords=[]),
                   body=kernel_body, orelse=[], lineno=0)
    body: list[ast.stmt] = [loop]
    if tr.reductions:
        ret = ", ".join(tr.reductions)
        body.append(ast.parse(f"return {ret}").body[0])
    func = ast.FunctionDef(name=kernel, args=ast.arguments(
        posonlyargs=[], args=[ast.arg(p) for p in params], kwonlyargs=[], kw_defaults=[],
        defaults=[]), body=body, decorator_list=[ast.Name("accelerate", ast.Load())],
        returns=None, lineno=0)
    if sys.version_info >= (3, 12):
        func.type_params = []
    lines = ["import numpy as np", "from loopscale import accelerate", "",
             "", *ast.unparse(ast.fix_missing_locations(func)).splitlines(), "", "",
             f"# {where}:"]
    for array in tr.outputs.values():
        lines.append(f"{array} = np.empty(len({frame}))")
    for col, array in tr.column_outputs.items():  # rows the loop skips keep their value
        lines.append(f"{array} = ({frame}[{col!r}].to_numpy(dtype=float, copy=True) "
                     f"if {col!r} in {frame} else np.full(len({frame}), np.nan))")
    for count in tr.counters.values():
        lines.append(f"{count} = 0")
    args = [f"{frame}[{col!r}].to_numpy()" for col in tr.columns]
    args += [*tr.free, *arrays, *tr.reductions]
    call = f"{kernel}({', '.join(args)})"
    lines.append(f"{', '.join(tr.reductions)} = {call}" if tr.reductions else call)
    for name, array in tr.outputs.items():
        if name in tr.counters:
            array = f"{array}[:{tr.counters[name]}]"
        if found.apply_call is not None:
            lines.append(f"# use pd.Series({array}, index={frame}.index) where "
                         f"`{found.apply_call}` was")
        elif found.comprehension is not None:
            lines.append(f"# use {array}.tolist() where `{found.comprehension}` was")
        else:
            lines.append(f"{name}.extend({array}.tolist())")
    for col, array in tr.column_outputs.items():
        lines.append(f"{frame}[{col!r}] = {array}")
    return lines


def suggest(index: SourceIndex, loop: LoopInfo) -> str | None:
    """A rewrite of *loop* as an accelerated kernel over column arrays (text with the
    code after a blank line), or None when *loop* is not a pandas row loop."""
    found = _find(index, loop)
    if found is None:
        return None
    function = loop.function.rsplit(".", 1)[-1]
    kernel = f"{function}_rows" if function.isidentifier() else "rows_kernel"
    local = _local_names(index, loop)
    tr = _Translator(found, local)
    where = (f"in {loop.function}(), instead of the loop at line {found.line}"
             if found.apply_call is None and found.comprehension is None else
             f"in {loop.function}(), before line {found.line}")
    if loop.function == "<module>":
        where = where.replace(f"in {loop.function}(), ", "")
    try:
        whole = found.apply_call is not None or found.comprehension is not None
        body = _apply_body(found) if whole else found.body
        _columns_read(found, tr)  # parameters in the order the code reads the columns
        kernel_body = tr.body(body)
        lines = _code(found, tr, kernel_body, kernel, where)
        head = (f"{found.why}; the same loop over column arrays, compiled (it replaces "
                f"the loop and gives the same values):")
    except _Untranslatable:
        tr = _Translator(found, local)
        cols = _columns_read(found, tr)
        out = tr._fresh("out")
        params = ", ".join([*cols.values(), out])
        reads = ", ".join(f"{p}[i]" for p in cols.values()) or "the columns' arrays"
        args = ", ".join([*(f"{found.frame}[{c!r}].to_numpy()" for c in cols), out])
        lines = ["import numpy as np", "from loopscale import accelerate", "", "",
                 "@accelerate", f"def {kernel}({params}):",
                 f"    for i in range({out}.shape[0]):",
                 f"        {out}[i] = ...  # the loop's body, reading {reads}", "", "",
                 f"# {where}:", f"{out} = np.empty(len({found.frame}))",
                 f"{kernel}({args})"]
        head = (f"{found.why}; pass the columns as arrays to an accelerated kernel "
                "(a template: the loop's body uses more than the rows' cells, so write "
                "it in where marked):")
    return head + "\n\n" + "\n".join(lines)


def _columns_read(found: _RowLoop, tr: _Translator) -> dict[str, str]:
    """The columns the loop reads, in source order, for the template."""
    seen: list[tuple[int, int, str]] = []
    for stmt in found.body:
        for node in ast.walk(stmt):
            if isinstance(getattr(node, "ctx", None), ast.Store):
                continue  # a column written, not read
            try:
                col = tr._cell(node) if isinstance(node, ast.expr) else None
            except _Untranslatable:
                col = None
            if col is not None:
                seen.append((getattr(node, "lineno", 0), getattr(node, "col_offset", 0), col))
    for _, _, col in sorted(seen):
        tr._column(col)
    return tr.columns
