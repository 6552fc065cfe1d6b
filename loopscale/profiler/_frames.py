"""Reading frames: where each frame of a stack is, cheaply, tick after tick.

A sample's stack is a tuple of ``(filename, line, function, column)`` frames
(see :mod:`._session`).  Turning a live frame object into one costs a line
table lookup, a qualified name and a column; :class:`_CodeInfo` computes
these once per code object and instruction.  :class:`_StackCache` keeps the
last stack of each thread so that a tick reads only the frames that changed
since the previous one -- what keeps the sampler cheap on deep stacks (a
recursion 400 frames deep).  :func:`at_call` tells whether a frame is at a
call instruction (so inside, or just back from, a C function), and
:meth:`_CodeInfo.with_exit_line` whether it is at a ``with`` block's exit.
"""

from __future__ import annotations

import bisect
import dis
import inspect
import os
from types import CodeType
from typing import Any

from ._session import Frame

__all__ = ["at_call", "stack_of", "PROFILER_DIR", "PACKAGE_DIR"]

_CALL_OPS = frozenset(op for name, op in dis.opmap.items()
                      if name.startswith("CALL") or name == "PRECALL")
_CACHE = dis.opmap.get("CACHE", -1)
#: Frames of files under these directories are the profiler's / loopscale's own.
PROFILER_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(PROFILER_DIR)
_RUNPY = ("runpy.py", "<frozen runpy>")
_GENERATOR_FLAGS = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
                    | inspect.CO_ITERABLE_COROUTINE)
_NONE_LOADS = frozenset(op for name, op in dis.opmap.items() if name == "LOAD_CONST")


def _call_offsets(code: CodeType) -> frozenset[int]:
    """Offsets of *code*'s call instructions (and of the caches that follow them)."""
    raw = code.co_code
    found: set[int] = set()
    in_call = False
    for i in range(0, len(raw), 2):
        op = raw[i]
        if op == _CACHE and in_call:  # a frame inside the call points at its caches
            found.add(i)
            continue
        in_call = op in _CALL_OPS
        if in_call:
            found.add(i)
    return frozenset(found)


def _with_exits(code: CodeType) -> dict[int, int]:
    """Offsets of the calls of ``with`` blocks' ``__exit__`` on normal exit, each mapped
    to the line of the instruction before the exit sequence (the block's last line).

    The normal exit of a ``with`` block is ``LOAD_CONST None`` three times, then
    ``CALL 2`` (with a ``PRECALL 2`` before it on 3.11); on 3.10 it is
    ``LOAD_CONST None``, ``DUP_TOP`` twice, then ``CALL_FUNCTION 3``.  No
    other source compiles to these sequences.
    """
    try:
        instrs = [i for i in dis.get_instructions(code) if i.opname != "CACHE"]
    except Exception:  # noqa: BLE001 - odd code: no with blocks found
        return {}
    exits: dict[int, int] = {}
    line = code.co_firstlineno
    lines: list[int] = []
    for ins in instrs:
        positions = getattr(ins, "positions", None)  # 3.11+; 3.10 has starts_line
        here = positions.lineno if positions is not None else ins.starts_line
        line = here if here is not None else line
        lines.append(line)

    def is_none(m: int) -> bool:
        return m >= 0 and instrs[m].opcode in _NONE_LOADS and instrs[m].argval is None

    for k, ins in enumerate(instrs):
        if ins.opname == "CALL" and ins.arg == 2:
            j = k - 1
            if j >= 0 and instrs[j].opname == "PRECALL":
                j -= 1
            first = j - 2
            if not (is_none(j) and is_none(j - 1) and is_none(j - 2)):
                continue
        elif ins.opname == "CALL_FUNCTION" and ins.arg == 3:
            first = k - 3
            if not (k >= 3 and instrs[k - 1].opname == instrs[k - 2].opname == "DUP_TOP"
                    and is_none(k - 3)):
                continue
        else:
            continue
        if first < 1:
            continue
        body_line = lines[first - 1]
        end = instrs[k + 1].offset if k + 1 < len(instrs) else len(code.co_code)
        for off in range(ins.offset, end, 2):  # the call and its caches
            exits[off] = body_line
    return exits


def at_call(frame: Any) -> bool:
    """Whether *frame*'s current instruction is a call (so it is in a C function)."""
    try:
        return frame.f_lasti in _code_info(frame.f_code).calls
    except (AttributeError, TypeError):
        return False


def _qualname(code: Any) -> str:
    return getattr(code, "co_qualname", None) or code.co_name


class _CodeInfo:
    """What the sampler needs of one code object, computed once (see :func:`_code_info`)."""

    __slots__ = ("code", "cut", "qualname", "calls", "_frames", "_positions", "_lines",
                 "_with_exits")

    def __init__(self, code: CodeType) -> None:
        self.code = code  # held, so that the id() this is filed under stays unique
        filename = code.co_filename
        # the profiler's entry point and runpy: everything outside is ours
        self.cut = filename.startswith(PROFILER_DIR) or filename.endswith(_RUNPY)
        self.qualname = _qualname(code)
        self.calls = _call_offsets(code)
        self._frames: dict[int, Frame] = {}
        self._positions: list[tuple[int | None, int | None]] | None = None
        self._lines: tuple[list[int], list[int]] | None = None
        self._with_exits: dict[int, int] | None = None

    def frame(self, lasti: int) -> Frame:
        """The ``(filename, line, function, column)`` of instruction *lasti*."""
        frame = self._frames.get(lasti)
        if frame is None:
            line, col = self.position(lasti)
            frame = self._frames[lasti] = (self.code.co_filename, line, self.qualname, col)
        return frame

    def position(self, lasti: int) -> tuple[int, int]:
        """Line and start column (-1 when unknown) of instruction *lasti*.

        An instruction without a line -- on Python 3.11 the jump back to a
        loop's head after a body ending in an ``if`` has none, and would be
        charged to the ``def`` line, outside the loop -- takes the position of
        the nearest earlier instruction that has one.
        """
        code = self.code
        if lasti < 0:
            return code.co_firstlineno, -1
        if self._positions is None:
            if hasattr(code, "co_positions"):
                self._positions = [(p[0], p[2]) for p in code.co_positions()]
            else:  # Python 3.10: lines only
                self._positions = []
        positions = self._positions
        if not positions:
            return self.line_at(lasti), -1
        j = min(lasti // 2, len(positions) - 1)
        while j >= 0:
            line, col = positions[j]
            if line is not None:
                return line, -1 if col is None else col
            j -= 1
        return code.co_firstlineno, -1

    def line_table(self) -> tuple[list[int], list[int]]:
        """Instruction ranges' start offsets and lines, a range without a line
        taking the line before it."""
        if self._lines is None:
            starts, lines = [], []
            last = self.code.co_firstlineno
            for start, _end, line in self.code.co_lines():
                last = line if line is not None else last
                starts.append(start)
                lines.append(last)
            self._lines = (starts, lines)
        return self._lines

    def line_at(self, lasti: int) -> int:
        starts, lines = self.line_table()
        pos = bisect.bisect_right(starts, lasti) - 1
        return lines[pos] if pos >= 0 else self.code.co_firstlineno

    def line_before(self, lasti: int) -> int:
        """The line of the nearest instruction before *lasti* on another line than its own."""
        starts, lines = self.line_table()
        pos = bisect.bisect_right(starts, lasti) - 1
        if pos < 0:
            return self.code.co_firstlineno
        here = lines[pos]
        for line in reversed(lines[:pos]):
            if line != here:
                return line
        return here

    def with_exit_line(self, lasti: int) -> int | None:
        """The block's last line when *lasti* is a ``with`` block's exit call, else None."""
        if self._with_exits is None:
            self._with_exits = _with_exits(self.code)
        return self._with_exits.get(lasti)


_code_infos: dict[int, _CodeInfo] = {}


def _code_info(code: CodeType) -> _CodeInfo:
    """The :class:`_CodeInfo` of *code*, filed under ``id(code)``: hashing a code
    object hashes its constants, nested code objects included, at every lookup."""
    info = _code_infos.get(id(code))
    if info is None or info.code is not code:
        info = _code_infos[id(code)] = _CodeInfo(code)
    return info


def stack_of(frame: Any) -> tuple[Frame, ...]:
    """The stack ending at *frame*, outermost first, without the profiler's own frames."""
    frames: list[Frame] = []
    while frame is not None:
        info = _code_info(frame.f_code)
        if info.cut:
            break
        frames.append(info.frame(frame.f_lasti))
        frame = frame.f_back
    frames.reverse()
    return tuple(frames)


#: The stack cache holds every this-many-th frame (counted from the bottom) and the
#: top few (see :class:`_StackCache`).
_HOLD_EVERY = 16
_HOLD_TOP = 4


class _StackCache:
    """The last stack seen on one thread, to walk only what changed since.

    A frame object that is still on the stack at the same instruction as at
    the previous tick has the same callers below it as then: a function's
    caller cannot move while it runs.  (Generators and coroutines are the
    exception -- each resumption may come from another caller -- so the walk
    goes on past them.)  So each tick walks down from the top only until it
    meets such a frame, and reuses the rest of the previous stack.

    Only some frame objects are held from one tick to the next -- every
    :data:`_HOLD_EVERY`-th from the bottom and the top :data:`_HOLD_TOP` --
    since CPython copies a held frame's locals when its function returns: a
    held frame's ``id()`` cannot be reused by a new frame meanwhile, and
    only held frames are recognised.  A walk thus goes at most
    :data:`_HOLD_EVERY` frames further down than it must.  Where each tick
    finds a new deep stack (a recursion redone between ticks), the walk is
    whole, but consecutive frames of the same function at the same
    instruction are resolved once.
    """

    __slots__ = ("frames", "held", "depths", "lastis", "pos", "members", "walked")

    def __init__(self) -> None:
        self.frames: list[Frame] = []  # bottom first
        self.held: list[Any] = []      # held frame objects, by increasing depth
        self.depths: list[int] = []    # their depths (0 = bottom)
        self.lastis: list[int] = []    # their instructions when seen
        self.pos: dict[int, int] = {}  # id(held frame object) -> index in held
        self.members: set[Any] = set()  # the held frame objects
        self.walked = 0  # frames the last walk read (for tests)

    def walk(self, top: Any) -> tuple[tuple[Frame, ...], list[Any]]:
        """The stack ending at *top* (as :func:`stack_of`), and the new frame objects
        of each run of frames of one function (innermost first): those whose
        arguments may need capturing."""
        held, lastis, pos = self.held, self.lastis, self.pos
        members = self.members
        new: list[Any] = []          # the frame objects not seen before, top down,
        found: list[Frame] = []      # their frames
        found_lastis: list[int] = []  # and instructions
        firsts: list[Any] = []
        keep = 0
        last_code: Any = None
        last_lasti = -2
        last_frame: Frame = ()
        f = top
        while f is not None:
            lasti = f.f_lasti
            code = f.f_code
            if f in members:  # a held frame (frames hash and compare by identity)
                j = pos[id(f)]
                if lastis[j] == lasti and not code.co_flags & _GENERATOR_FLAGS:
                    keep = self.depths[j] + 1
                    break
            if code is not last_code or lasti != last_lasti:
                info = _code_infos.get(id(code))
                if info is None or info.code is not code:
                    info = _code_info(code)
                if info.cut:
                    break  # the profiler's own frames: everything below is ours
                if code is not last_code:
                    firsts.append(f)
                last_frame = info.frame(lasti)
                last_code, last_lasti = code, lasti
            new.append(f)
            found.append(last_frame)
            found_lastis.append(lasti)
            f = f.f_back
        self.walked = len(new)
        # forget what changed, then hold some of the new frames
        depths = self.depths
        while depths and depths[-1] >= keep:
            gone = held.pop()
            del pos[id(gone)]
            members.discard(gone)
            depths.pop()
            lastis.pop()
        frames = self.frames
        del frames[keep:]
        found.reverse()
        frames.extend(found)
        n = len(found)
        total = keep + n
        first = keep + (-keep) % _HOLD_EVERY  # the first multiple of _HOLD_EVERY >= keep
        top_from = max(keep, total - _HOLD_TOP)
        for depth in range(first, top_from, _HOLD_EVERY):
            self._hold(new, total - 1 - depth, depth, found_lastis)
        for depth in range(top_from, total):
            self._hold(new, total - 1 - depth, depth, found_lastis)
        return tuple(frames), firsts

    def _hold(self, new: list[Any], i: int, depth: int, found_lastis: list[int]) -> None:
        obj = new[i]
        self.pos[id(obj)] = len(self.held)
        self.members.add(obj)
        self.held.append(obj)
        self.depths.append(depth)
        self.lastis.append(found_lastis[i])

