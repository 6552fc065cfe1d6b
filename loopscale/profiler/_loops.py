"""Loop attribution: map samples to the loops whose lines they ran on.

A :class:`SourceIndex` parses one source file and records, for every line,
the chain of loops that enclose it *within the same function* (innermost
first): ``for``/``async for``/``while`` statements, comprehensions, and
``frame.apply(f, axis=1)`` calls (a row loop that pandas runs).
A loop spans its header (all lines, for multi-line headers) and its body;
an ``else:`` clause is not part of it.  ``def``/``lambda``/``class`` bodies
start a new, empty chain, so a function defined inside a loop is not charged
to that loop when it runs later.  Comprehensions do not start a new chain:
on 3.11 they run as their own code objects (``<listcomp>``) whose lines map
to the comprehension and the loops around it, and on 3.12+ they are inlined
into the enclosing function, which maps the same way.

:func:`attribute` turns a :class:`~loopscale.profiler._session.Session` into
one :class:`LoopStat` per loop:

- **self** time: samples whose innermost user frame (the deepest frame in the
  user's files, so time inside NumPy's or pandas' Python wrappers counts for
  the user line that called them) is on a line whose innermost loop is this one;
- **inclusive** time: samples with any user frame inside this loop or a loop
  it contains (each sample counted once per loop, however many frames match).

When a file cannot be read or has changed since profiling started (its
modification time is later, or a sampled line lies past its end), its
samples are reported per line (``kind == "line"``) and one message says so.
"""

from __future__ import annotations

import ast
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._session import Session

__all__ = ["LoopInfo", "LoopStat", "SourceIndex", "Attribution", "attribute", "load_index",
           "read_source"]

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class LoopInfo:
    """A loop in a source file.

    ``function`` is the qualified name of the enclosing function
    (``"<module>"`` at top level), ``def_line`` the line of its ``def``
    keyword (0 at top level) and ``first_line`` the line of its first
    decorator (or ``def_line`` without one), as ``co_firstlineno`` has it.
    """

    file: str
    line: int
    end_line: int
    kind: str
    function: str
    def_line: int = 0
    first_line: int = 0


@dataclass(frozen=True)
class LoopStat:
    """Time charged to one loop (or, in the line-level fallback, to one line)."""

    loop: LoopInfo
    self_seconds: float
    inclusive_seconds: float
    python_seconds: float
    native_seconds: float

    @property
    def python_fraction(self) -> float:
        """Share of the inclusive time spent running Python bytecode."""
        return self.python_seconds / self.inclusive_seconds if self.inclusive_seconds else 0.0


@dataclass(frozen=True)
class Attribution:
    """Loops sorted hottest first, per-line self times, and messages."""

    loops: tuple[LoopStat, ...]
    total_seconds: float
    line_seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    messages: tuple[str, ...] = ()


def _is_row_apply(node: ast.AST) -> bool:
    """``frame.apply(f, axis=1)``: a loop over rows, run by pandas."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "apply"
            and any(k.arg == "axis" and isinstance(k.value, ast.Constant)
                    and k.value.value in (1, "columns") for k in node.keywords))


def _scope_name(node: ast.AST) -> str:
    return getattr(node, "name", "<lambda>")


class SourceIndex:
    """Line → enclosing loops for one parsed source file."""

    def __init__(self, filename: str, source: str) -> None:
        self.filename = filename
        self.source = source
        self.lines = source.splitlines()
        self.tree = ast.parse(source, filename)
        self.loops: list[LoopInfo] = []
        self.nodes: dict[int, ast.AST] = {}
        self.functions: dict[str, ast.AST] = {}
        self._chains: dict[int, tuple[LoopInfo, ...]] = {}
        # the chains of statements and for/while loops only, and per line the
        # comprehensions and row applies on it with their exact extents
        self._base: dict[int, tuple[LoopInfo, ...]] = {}
        self._spans: dict[int, list[tuple[tuple[int, int], tuple[int, int],
                                          tuple[LoopInfo, ...]]]] = {}
        self._visit(self.tree, (), "", None)

    def _loop_span(self, node: ast.AST) -> tuple[int, int]:
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            end = max(getattr(n, "end_lineno", None) or n.lineno for n in node.body)
            return node.lineno, end
        return node.lineno, node.end_lineno or node.lineno  # type: ignore[attr-defined]

    def _visit(self, node: ast.AST, chain: tuple[LoopInfo, ...], qual: str,
               func: ast.AST | None) -> None:
        """Mark the lines under *node*; later (inner) marks overwrite earlier ones."""
        for child in ast.iter_child_nodes(node):
            self._visit_node(child, node, chain, qual, func)

    def _visit_node(self, child: ast.AST, parent: ast.AST, chain: tuple[LoopInfo, ...],
                    qual: str, func: ast.AST | None) -> None:
        if isinstance(child, _SCOPES):
            name = _scope_name(child)
            if not qual:
                inner = name
            elif isinstance(parent, ast.ClassDef):
                inner = f"{qual}.{name}"
            else:
                inner = f"{qual}.<locals>.{name}"
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(inner, child)
            if isinstance(child, ast.stmt):
                self._mark(child, chain)
            # decorators and defaults run in this scope, the body in a new one
            for sub in ast.iter_child_nodes(child):
                if isinstance(child, ast.Lambda) and sub is child.body:
                    self._visit_node(sub, child, (), inner, child)
                elif isinstance(sub, ast.stmt):
                    self._mark(sub, ())
                    self._visit_node(sub, child, (), inner,
                                     func if isinstance(child, ast.ClassDef) else child)
                else:
                    self._visit_node(sub, parent, chain, qual, func)
            return
        here = chain
        if isinstance(child, (ast.For, ast.AsyncFor, ast.While) + _COMPREHENSIONS) \
                or _is_row_apply(child):
            here = (self._add_loop(child, qual, func),) + chain
            start, end = self._loop_span(child)
            statement = isinstance(child, (ast.For, ast.AsyncFor, ast.While))
            for line in range(start, end + 1):
                self._chains[line] = here
                if statement:
                    self._base[line] = here
                else:
                    self._spans.setdefault(line, []).append(
                        ((start, getattr(child, "col_offset", 0)),
                         (end, getattr(child, "end_col_offset", None) or 0), here))
            if statement:
                for sub in ast.iter_child_nodes(child):
                    if isinstance(sub, ast.stmt) and sub in child.orelse:
                        self._mark(sub, chain)  # the else clause runs once, outside
                        self._visit_node(sub, child, chain, qual, func)
                    else:
                        self._visit_node(sub, child, here, qual, func)
                return
        elif isinstance(child, ast.stmt):
            self._mark(child, chain)
        self._visit(child, here, qual, func)

    def _add_loop(self, node: ast.AST, qual: str, func: ast.AST | None) -> LoopInfo:
        start, end = self._loop_span(node)
        kind = {ast.For: "for", ast.AsyncFor: "for", ast.While: "while",
                ast.Call: "apply"}.get(type(node), "comprehension")
        def_line = getattr(func, "lineno", 0)
        decs = getattr(func, "decorator_list", [])
        info = LoopInfo(self.filename, start, end, kind, qual or "<module>",
                        def_line, decs[0].lineno if decs else def_line)
        self.loops.append(info)
        self.nodes.setdefault(start, node)
        return info

    def _mark(self, node: ast.AST, chain: tuple[LoopInfo, ...]) -> None:
        start = getattr(node, "lineno", None)
        end = getattr(node, "end_lineno", None) or start
        if start is None:
            return
        for line in range(start, end + 1):
            self._chains[line] = chain
            self._base[line] = chain

    def chain(self, line: int) -> tuple[LoopInfo, ...]:
        """Loops enclosing *line*, innermost first (empty outside loops).

        A line holding a comprehension (or a row ``apply``) counts as inside it;
        :meth:`chain_at` tells the comprehension from the rest of its line.
        """
        return self._chains.get(line, ())

    def chain_at(self, line: int, col: int = -1) -> tuple[LoopInfo, ...]:
        """Loops enclosing column *col* of *line*, innermost first.

        On a line that holds comprehensions, an instruction inside one belongs to
        it (and the loops around it), one elsewhere on the line -- a call before
        or after the comprehension -- only to the loops around the line.  With
        ``col < 0`` (unknown) this is :meth:`chain`.
        """
        spans = self._spans.get(line)
        if spans is None or col < 0:
            return self._chains.get(line, ())
        here = (line, col)
        found = None
        for start, end, chain in spans:  # outer first: the last match is innermost
            if start <= here < end:
                found = chain
        return found if found is not None else self._base.get(line, ())

    def chain_outside(self, line: int) -> tuple[LoopInfo, ...]:
        """Loops enclosing *line* but not its comprehensions: where a function's own frame
        is, without a column (Python 3.10), when a comprehension is a code object of
        its own -- whose frame, above it, is charged to the comprehension."""
        return tuple(loop for loop in self._chains.get(line, ())
                     if loop.kind != "comprehension")

    def function_node(self, qualname: str) -> ast.AST | None:
        return self.functions.get(qualname)


def _archive_member(filename: str) -> tuple[str, str] | None:
    """``(archive, member)`` when *filename* lies inside a zip file
    (``app.zip/pkg/__main__.py``, as ``python app.zip`` names it), else None."""
    head, tail = filename, ""
    while True:
        head, part = os.path.split(head)
        if not part:
            return None
        tail = part if not tail else f"{part}/{tail}"
        if os.path.isfile(head):
            return (head, tail) if zipfile.is_zipfile(head) else None


def read_source(filename: str) -> bytes:
    """The bytes of source file *filename*, also when it lies inside a zip file.

    Raises
    ------
    OSError
        When it cannot be read.
    """
    try:
        with open(filename, "rb") as fh:
            return fh.read()
    except OSError:
        inside = _archive_member(filename)
        if inside is None:
            raise
        try:
            with zipfile.ZipFile(inside[0]) as archive:
                return archive.read(inside[1])
        except (KeyError, zipfile.BadZipFile) as exc:
            raise OSError(f"cannot read {filename!r}: {exc}") from exc


def source_mtime(filename: str) -> float:
    """When *filename* (or the zip file holding it) was last modified."""
    try:
        return os.path.getmtime(filename)
    except OSError:
        inside = _archive_member(filename)
        if inside is None:
            raise
        return os.path.getmtime(inside[0])


def load_index(filename: str, started: float | None = None,
               ) -> tuple[SourceIndex | None, str | None]:
    """The index of *filename*, or ``(None, why)`` when it is missing or changed."""
    try:
        if started is not None and started > 0 and source_mtime(filename) > started:
            return None, "was modified after profiling started"
        raw = read_source(filename)
        return SourceIndex(filename, raw.decode("utf-8", errors="replace")), None
    except OSError:
        return None, "cannot be read"
    except (SyntaxError, ValueError):
        return None, "does not parse"


_COMPREHENSION_NAMES = ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>")


def _enclosing(function: str) -> str:
    """The function a comprehension's code object runs in (``f`` for
    ``f.<locals>.<listcomp>``): on 3.11 a comprehension is a function of its own,
    on 3.12+ it is inlined, and its lines belong to the enclosing function."""
    head, sep, tail = function.rpartition(".<locals>.")
    if tail in _COMPREHENSION_NAMES:
        return head if sep else "<module>"
    return function


def attribute(session: Session, *, is_user_file: Callable[[str], bool] | None = None,
              indexes: dict[str, SourceIndex | None] | None = None) -> Attribution:
    """Charge the session's samples to loops (pure apart from reading sources).

    *indexes* maps file names to ready indexes (or None for "unavailable");
    files not in it are read from disk.  *is_user_file* decides which files'
    loops are reported (default: not the standard library, site-packages or
    loopscale itself).
    """
    if is_user_file is None:
        from ._sampler import is_user_file as default_user_file

        is_user_file = default_user_file
    indexes = dict(indexes or {})
    messages: list[str] = []
    fallback: set[str] = set()

    def index_of(filename: str) -> SourceIndex | None:
        if filename not in indexes:
            index, why = load_index(filename, session.start_time)
            indexes[filename] = index
            if index is None and filename not in fallback:
                fallback.add(filename)
                messages.append(f"{filename} {why}: its time is reported per line, "
                                "not per loop")
        return indexes[filename]

    self_s: dict[LoopInfo, float] = {}
    incl: dict[LoopInfo, float] = {}
    py: dict[LoopInfo, float] = {}
    line_seconds: dict[tuple[str, int], float] = {}
    total = 0.0
    # samples with the same stack are charged once, with their summed weights
    # (a deep recursion repeats the same few stacks hundreds of frames deep)
    groups: dict[tuple[Any, ...], list[float]] = {}
    for sample in session.samples:
        total += sample.weight
        weights = groups.get(sample.stack)
        if weights is None:
            weights = groups[sample.stack] = [0.0, 0.0]
        weights[sample.native] += sample.weight
    chains: dict[Any, tuple[LoopInfo, ...]] = {}
    user_files: dict[str, bool] = {}

    def is_user(filename: str) -> bool:
        flag = user_files.get(filename)
        if flag is None:
            flag = user_files[filename] = bool(is_user_file(filename))  # type: ignore[misc]
        return flag

    # a file with fewer lines than were sampled was edited: all of it goes per line
    longest: dict[str, int] = {}
    for frame in dict.fromkeys(f for stack in groups for f in stack):
        if frame[1] > longest.get(frame[0], 0) and is_user(frame[0]):
            longest[frame[0]] = frame[1]
    for filename, line in longest.items():
        index = index_of(filename)
        if index is not None and line > len(index.lines):
            indexes[filename] = None
            if filename not in fallback:
                fallback.add(filename)
                messages.append(f"{filename} has fewer lines than were sampled (edited "
                                "since profiling?): its time is reported per line, "
                                "not per loop")

    def chain_of(frame: Any) -> tuple[LoopInfo, ...]:
        chain = chains.get(frame)
        if chain is None:
            index = index_of(frame[0])
            if index is None:
                chain = (LoopInfo(frame[0], frame[1], frame[1], "line",
                                  _enclosing(frame[2])),)
            else:
                col = frame[3] if len(frame) > 3 else -1
                if col < 0 and frame[2].rpartition(".")[2] not in _COMPREHENSION_NAMES:
                    chain = index.chain_outside(frame[1])
                else:
                    chain = index.chain_at(frame[1], col)
            chains[frame] = chain
        return chain

    for stack, (python_w, native_w) in groups.items():
        weight = python_w + native_w
        innermost = None
        for frame in reversed(stack):
            if is_user(frame[0]):
                innermost = frame
                break
        if innermost is None:
            continue
        seen: set[LoopInfo] = set()
        for frame in dict.fromkeys(stack):
            if is_user(frame[0]):
                seen.update(chain_of(frame))
        chain = chain_of(innermost)
        if chain:
            self_s[chain[0]] = self_s.get(chain[0], 0.0) + weight
        for loop in seen:
            incl[loop] = incl.get(loop, 0.0) + weight
            if python_w:
                py[loop] = py.get(loop, 0.0) + python_w
        key = (innermost[0], innermost[1])
        line_seconds[key] = line_seconds.get(key, 0.0) + weight
    stats = [LoopStat(loop, self_s.get(loop, 0.0), seconds, py.get(loop, 0.0),
                      seconds - py.get(loop, 0.0))
             for loop, seconds in incl.items()]
    stats.sort(key=lambda s: (-s.inclusive_seconds, -s.self_seconds, s.loop.file, s.loop.line))
    return Attribution(tuple(stats), total, line_seconds, tuple(messages))
