"""Partition arithmetic for the ``mpi`` level: pure functions over plain data.

Which blocks a rank runs
------------------------
A loop plan's iteration space is cut by ``accel`` into ``nblocks`` fixed
blocks; reductions are combined per block in block order, so *which* rank
runs a block never changes the answer.  It only changes the speed: a plain
block partition (rank r takes the r-th contiguous share) leaves one rank
with most of the work when the cost per iteration varies (Mandelbrot rows,
triangular pairwise loops).  :func:`deal` cuts the blocks into chunks of
about ``nblocks / (16 P)`` blocks and deals them like cards, alternating the
direction each round (0, 1, …, P-1, P-1, …, 1, 0, 0, 1, …), so that work
growing or shrinking along the loop lands evenly on every rank.

Which elements a rank sends
---------------------------
Iteration ``k`` has loop-variable value ``lo + k * step``; an array written
at ``a[..., i + off, ...]`` (``off`` in its role's offsets, the loop variable
on axis ``axis``) gets element ``lo + k * step + off`` of that axis written.
:func:`pieces` turns a rank's chunks into the index sets of that axis — a
``slice`` when the set is an in-bounds arithmetic progression (the usual
case, no index array is built), an index array otherwise (negative indices
wrap as NumPy's and Numba's do).  Sender and receivers compute the same
pieces from the same plan, so only the data travels.

Do the ranks agree?
-------------------
:func:`describe_inputs` lists, as ``(field, value)`` strings, what must be
the same on every rank for replicated mode (iteration space, dtypes, shapes,
scalar arguments), :func:`fingerprint` hashes that list into one signed
64-bit integer for an ``Allreduce``, and :func:`mismatch_message` explains a
disagreement from every rank's list.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["deal", "default_chunksize", "pieces", "piece_length", "row_bytes",
           "describe_inputs",
           "fingerprint", "mismatch_message", "CHECKS", "SAMPLE_ELEMENTS"]

#: The valid values of the ``check`` option of the ``mpi`` level.
CHECKS = ("shapes", "values", "none")

Piece = slice | np.ndarray


def default_chunksize(nblocks: int, nranks: int) -> int:
    """Blocks per dealt chunk: about 16 chunks per rank, at least one block."""
    return max(1, nblocks // (16 * max(1, nranks)))


def deal(nblocks: int, nranks: int, chunksize: int | None = None
         ) -> list[list[tuple[int, int]]]:
    """Each rank's chunks ``(c0, c1)`` of blocks, dealt round-robin in zigzag order.

    Every block is in exactly one chunk of exactly one rank.  With *chunksize*
    the chunks have that many blocks (the last one fewer); without, the blocks
    are cut into ``16 * nranks`` chunks (one block each when there are fewer
    blocks), the first ``nblocks % (16 * nranks)`` of them one block longer,
    so that the ranks' shares differ by one block at most: when the blocks
    cost the same, the ranks finish together (chunks of
    :func:`default_chunksize` blocks left the last chunk short, and one rank
    had 4 % more work than the other at 1,500 blocks on two ranks).

    Examples
    --------
    >>> deal(10, 2, 2)
    [[(0, 2), (6, 8), (8, 10)], [(2, 4), (4, 6)]]
    >>> deal(1, 3)
    [[(0, 1)], [], []]
    >>> [sum(c1 - c0 for c0, c1 in chunks) for chunks in deal(1500, 2)]
    [750, 750]
    """
    if nranks < 1:
        raise ValueError(f"nranks must be greater than 0; got {nranks!r}.")
    if chunksize is not None:
        if chunksize < 1:
            raise ValueError(f"chunksize must be greater than 0; got {chunksize!r}.")
        bounds = list(range(0, nblocks, chunksize)) + [nblocks]
    else:
        nchunks = min(nblocks, 16 * nranks)
        size, extra = divmod(nblocks, max(1, nchunks))
        bounds = [j * size + min(j, extra) for j in range(nchunks + 1)]
    out: list[list[tuple[int, int]]] = [[] for _ in range(nranks)]
    for j in range(len(bounds) - 1):
        rnd, pos = divmod(j, nranks)
        owner = pos if rnd % 2 == 0 else nranks - 1 - pos
        out[owner].append((bounds[j], bounds[j + 1]))
    return out


def row_bytes(x: Any) -> int:
    """The bytes of one row (one index along axis 0) of the array *x* (anything
    with ``dtype`` and ``shape``): what a message of whole rows counts by."""
    return x.dtype.itemsize * int(np.prod(x.shape[1:], dtype=np.int64))


def _iterations(chunk: tuple[int, int], block: int, n: int) -> tuple[int, int]:
    c0, c1 = chunk
    return c0 * block, min(c1 * block, n)


def pieces(chunks: Sequence[tuple[int, int]], *, block: int, n: int, lo: int, step: int,
           offsets: Sequence[int], length: int) -> list[Piece]:
    """The index sets, along an axis of *length*, that the iterations of *chunks* write.

    Examples
    --------
    >>> pieces([(0, 1), (2, 3)], block=4, n=10, lo=0, step=1, offsets=(0,), length=10)
    [slice(0, 4, 1), slice(8, 10, 1)]
    >>> pieces([(0, 1)], block=3, n=3, lo=0, step=1, offsets=(-1,), length=5)
    [array([4, 0, 1])]
    """
    out: list[Piece] = []
    for chunk in chunks:
        k0, k1 = _iterations(chunk, block, n)
        if k0 >= k1:
            continue
        for off in offsets:
            first = lo + k0 * step + off
            last = lo + (k1 - 1) * step + off
            low, high = min(first, last), max(first, last)
            if 0 <= low and high < length:
                out.append(slice(low, high + 1, abs(step)) if step else slice(low, low + 1, 1))
                continue
            idx = lo + off + np.arange(k0, k1, dtype=np.int64) * step
            idx = np.where(idx < 0, idx + length, idx)
            idx = idx[(idx >= 0) & (idx < length)]
            if idx.size:
                out.append(idx)
    return out


def piece_length(piece: Piece, length: int) -> int:
    """How many indices *piece* selects along an axis of *length*."""
    if isinstance(piece, slice):
        return len(range(*piece.indices(length)))
    return int(piece.size)


#: Elements of an array the loop only reads that the default check compares
#: across ranks (evenly spaced, raw bytes): O(1), about a microsecond an array.
SAMPLE_ELEMENTS = 16


def dtype_text(dtype: np.dtype) -> str:
    """*dtype* in a description: its ``str`` (``<f8``), or for a record dtype its
    fields (whose ``str``, ``|V12``, says only the size)."""
    return dtype.str if dtype.names is None else str(dtype.descr)


def sample_bytes(value: np.ndarray) -> bytes:
    """The raw bytes of up to :data:`SAMPLE_ELEMENTS` evenly spaced elements of
    *value* (not empty, not of objects): what the default check compares of an
    array the loop only reads."""
    step = -(-value.size // SAMPLE_ELEMENTS)
    # `flat` with a step picks them without copying a non-contiguous array
    picked = value.ravel()[::step] if value.flags.c_contiguous else value.flat[::step]
    return picked.tobytes()


def read_window(value: np.ndarray, role: Any, lo: int, step: int, n: int) -> np.ndarray:
    """The part of *value* that a loop over ``range(lo, lo + n * step, step)``
    with *role* (an ``ArrayRole``) may read: along its axis, from the least to
    the greatest index its reads at a constant offset reach (a guarded read,
    ``u[i - 1]`` under ``if i > 0``, from where its guard holds).  What the loop
    never reads, the ends of an ``np.empty`` scratch array that no rank
    filled, must not count as an input that differs by rank.  The whole array
    when the reads may go anywhere or wrap around."""
    axis = getattr(role, "axis", None)
    if n <= 0:
        return value[:0] if value.ndim else value.reshape(1)[:0]  # (nothing is read)
    if (axis is None or axis >= value.ndim
            or getattr(role, "access", None) not in ("aligned", "offset")):
        return value
    first, last = lo, lo + (n - 1) * step
    if first > last:
        first, last = last, first
    offs = role.offsets or (0,)
    floors = tuple(role.floors or ())[:len(offs)]
    floors += (None,) * (len(offs) - len(floors))
    low = min(o + (first if f is None else max(first, f))
              for o, f in zip(offs, floors, strict=True))
    high = max(offs) + last
    size = value.shape[axis]
    if low < 0:
        return value  # (a negative index wraps around to the end)
    index = [slice(None)] * value.ndim
    index[axis] = slice(low, min(high, size - 1) + 1)
    return value[tuple(index)]


def _describe_value(value: Any, with_values: bool, sample: bool = False,
                    read: np.ndarray | None = None) -> str:
    """*value* in a description; an array's contents (*with_values*: hashed, or
    *sample*: sampled) are taken from *read*, the part the loop reads, when given."""
    if isinstance(value, np.ndarray):
        text = f"{dtype_text(value.dtype)}{list(value.shape)}"
        part = value if read is None else read
        if with_values:
            digest = hashlib.blake2b(digest_size=8)
            digest.update(np.ascontiguousarray(part).view(np.uint8).data)
            text += f" #{digest.hexdigest()}"
        elif sample and part.size and not value.dtype.hasobject:
            text += f" ~{zlib.crc32(sample_bytes(part)):08x}"
        return text
    if isinstance(value, (bool, int, float, complex, np.generic, str, type(None))):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe_value(v, with_values, sample) for v in value) + ")"
    return type(value).__name__


def describe_inputs(plan: Any, check: str = "shapes", no_values: Sequence[str] = (),
                    sample: bool = False) -> list[tuple[str, str]]:
    """What must agree across ranks for *plan*, as ``(field, value)`` strings.

    Only the arrays the loop reads and does not write are its inputs whose
    contents count: with ``check="values"`` their contents are hashed, and with
    *sample* (the ``mpi`` level's default check) a few evenly spaced elements
    of them are (:func:`_sample`), except for those named in *no_values*
    (distributed arrays, whose rows differ by rank).  An array the loop writes
    (an output buffer, whose old contents may differ by rank and are not read
    before they are written; an array updated in place too), reduction
    partials and arrays the loop does not index are described by dtype and
    shape only.
    """
    fields = [("function", plan.function),
              ("iterations", f"n={plan.n} lo={plan.lo} step={plan.step}"),
              ("blocks", f"{plan.nblocks} blocks of {plan.block} iterations")]
    names = plan.arg_names or tuple(f"arg{i}" for i in range(len(plan.args)))
    values = check == "values"
    for name, value in zip(names, plan.args, strict=False):
        if name in ("lo", "step", "n", "block"):
            continue
        role = plan.arrays.get(name)
        read = (role is not None and role.read and not role.written
                and name not in no_values)
        part = (read_window(value, role, plan.lo, plan.step, plan.n)
                if read and isinstance(value, np.ndarray) else None)
        fields.append((name, _describe_value(value, values and read, sample and read, part)))
    return fields


def fingerprint(fields: Sequence[tuple[str, str]]) -> int:
    """A signed 64-bit hash of *fields* (for an ``Allreduce`` with ``MAX``)."""
    digest = hashlib.blake2b("\x1f".join(f"{k}\x1e{v}" for k, v in fields).encode(),
                             digest_size=8)
    return int.from_bytes(digest.digest(), "little", signed=True)


#: The ``"call"`` field of a call with distributed arrays (``_level.DISTRIBUTED``).
_DISTRIBUTED_CALL = "distributed arrays (DistArray arguments)"

#: The sample's checksum in a description (``" ~1a2b3c4d"``).
_SAMPLED = re.compile(r" ~[0-9a-f]{8}")


def _sites_line(sites: Sequence[str]) -> str:
    """Where each rank made its call (``""``: none known)."""
    if not any(sites):
        return ""
    if len(set(sites)) == 1:
        return f"\n  called at: {sites[0]} (every rank)"
    return "\n  called at: " + "; ".join(f"rank {r}: {s or '(unknown)'}"
                                         for r, s in enumerate(sites))


#: The field that carries a rank's own error (see :func:`error_field`).
ERROR = "error"

#: The field that names the ``mpi`` level's ``check`` option in an agreement.
CHECK = "check"


def error_field(exc: BaseException) -> tuple[str, str]:
    """The agreement field of a rank's own error *exc* (its argument was refused
    before the call's first collective): its type's name and its text."""
    return (ERROR, f"{type(exc).__name__}: {exc}")


def _call_of(table: dict[str, str], function: str) -> str:
    """Which call a rank is in, as a mismatch names it."""
    name, kind = table.get("function"), table.get("call", "")
    if name is None:  # a library call: its "call" field names it (``distribute.gather()``)
        return kind or f"{function}()"
    return f"{name}() with {kind or 'its arguments'}"


def same_call(per_rank: Sequence[Sequence[tuple[str, str]]]) -> bool:
    """Whether every rank's fields describe the same call (function and kind)."""
    return len({_call_of(dict(f), "") for f in per_rank}) == 1


def shared_error(function: str, per_rank: Sequence[Sequence[tuple[str, str]]]
                 ) -> tuple[str, str]:
    """The error every rank raises when some ranks refused their arguments
    (:func:`error_field`): the type of the first such rank's error, and a text
    that starts with that rank's own text and names each rank's error."""
    errors = [dict(f).get(ERROR) for f in per_rank]
    bad = [r for r, e in enumerate(errors) if e is not None]
    first = errors[bad[0]]
    assert first is not None
    kind, _, text = first.partition(": ")
    ok = [r for r, e in enumerate(errors) if e is None]
    if len({errors[r] for r in bad}) == 1:
        who = (f"rank {bad[0]}: this error" if len(bad) == 1
               else f"ranks {', '.join(map(str, bad))}: this error")
    else:
        who = "; ".join(f"rank {r}: " + ("this error" if errors[r] == first
                                          else str(errors[r]))
                        for r in bad)
    if ok:
        who += (f"; rank{'s' if len(ok) > 1 else ''} {', '.join(map(str, ok))}: "
                "valid arguments")
    return kind, (f"{text}\n  ({who})\nEvery rank raises this error: a collective call of "
                  f"{function}() begins only when its arguments are valid on every rank. "
                  "Fix the argument on the rank(s) named; no data moved.")


def mismatch_message(function: str, per_rank: Sequence[Sequence[tuple[str, str]]],
                     distributed: bool = False, sites: Sequence[str] = (),
                     advice: str = "") -> str:
    """Explain how the ranks' inputs to *function* differ, field by field
    (*distributed*: a call with distributed arrays, not replicated mode;
    *sites*: where each rank's call was made, ``file:line``; *advice*: what to
    do, for a library call, in place of the accelerated calls' advice).

    When the ranks are not even in the same call (their ``"function"`` or
    ``"call"`` fields differ: one rank skipped a call the others made), says
    which call each rank is in, and where: the same text on every rank.
    """
    tables = [dict(fields) for fields in per_rank]
    calls = [_call_of(t, function) for t in tables]
    where = _sites_line(sites)
    if len(set(calls)) > 1:
        shown = "; ".join(f"rank {r}: {c}" for r, c in enumerate(calls))
        return ("the MPI ranks are not in the same call: " + shown + where
                + "\nEvery rank of the communicator must make the same distributed calls "
                "(calls with distributed arrays, calls at the 'mpi' level, scatter, "
                "gather, allgather, from_local, the loaders, the constructors and "
                "distribute.map) in the same order; a rank that skips one (an `if "
                "rank == 0:` around it, an exception caught on one rank, a loop that runs "
                "another number of times) meets the other ranks in its next call.  No "
                "rank computed anything; every rank raises this error.")
    kinds = {t.get("call", "") for t in tables if "function" in t} - {""}
    if kinds:
        distributed = kinds == {_DISTRIBUTED_CALL}
    keys: list[str] = []
    for fields in per_rank:
        for k, _ in fields:
            if k not in keys:
                keys.append(k)
    options = len({t.get(CHECK) for t in tables}) > 1
    if options:  # check="none" describes nothing else: the rest says nothing
        keys = [k for k in keys if all(k in t for t in tables)]
    lines = []
    contents = False
    for k in keys:
        values = [t.get(k, "(missing)") for t in tables]
        if len(set(values)) > 1:
            plain = [_SAMPLED.sub("", v) for v in values]
            if len(set(plain)) > 1:  # the dtype or shape differs: the sample says no more
                values = plain
            shown = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            lines.append(f"  {k}: {shown}")
            contents |= any(" ~" in v or " #" in v for v in values)
    head = (f"the inputs of {function}() differ across MPI ranks:\n" + "\n".join(lines)
            + where)
    if options:
        return (head + "\nThe 'mpi' level's options must be the same on every rank: "
                "check=\"none\" skips comparing the inputs, which every rank must agree "
                "to do (or not); set the level the same way on every rank (the same "
                "`with loopscale.level(\"mpi\", ...)` or LOOPSCALE_LEVEL).  No rank "
                "computed anything; every rank raises this error.")
    if advice:
        return head + "\n" + advice
    if distributed:
        return (head + "\nA call with distributed arrays (DistArray arguments) is collective: "
                "every rank must make it with the same scalar arguments, the same shapes "
                "and dtypes of its NumPy arguments and distributed arrays of the same "
                "global shape and rows; compute the scalars identically on every rank (or "
                "agree on them first, e.g. comm.bcast), and pass a NumPy argument that "
                "differs by rank as a distributed array (distribute.from_local).")
    text = (head + "\nAt the 'mpi' level with plain NumPy arrays (replicated mode) every rank "
            "must call the function with the same shapes, dtypes and scalar arguments")
    if contents:
        text += (" and the same contents of the arrays the loop reads (#: a hash of the "
                 "contents; ~: of a sample of elements)")
    text += ("; compute them identically on every rank (seed random generators the same "
             "way), or distribute the data explicitly.")
    if contents:
        text += (" An array that holds each rank's own block of the data (as in an mpi4py "
                 "program) is not replicated data: make it one distributed array with "
                 "distribute.from_local(block) and pass that, or gather the blocks "
                 "(comm.allgather) to pass the whole array on every rank.")
    return text


# -- distributed mode: which iterations a rank runs, which rows it touches ------------------

def owned_iterations(lo: int, step: int, n: int, row0: int, row1: int) -> tuple[int, int]:
    """The iterations ``[k0, k1)`` of ``range`` ``lo + k * step`` (``0 <= k < n``)
    whose value lies in ``[row0, row1)``: a contiguous run (empty as ``k0 == k1``).

    Examples
    --------
    >>> owned_iterations(1, 1, 8, 0, 5)     # range(1, 9), rows 0..4: i = 1..4
    (0, 4)
    >>> owned_iterations(9, -2, 5, 3, 8)    # range(9, -1, -2), rows 3..7: i = 7, 5, 3
    (1, 4)
    """
    if n <= 0 or row0 >= row1:
        return 0, 0
    if step > 0:
        k0 = -((lo - row0) // step)          # ceil((row0 - lo) / step)
        k1 = -((lo - row1) // step)          # ceil((row1 - lo) / step)
    elif step < 0:
        k0 = (row1 - 1 - lo) // step         # first k with lo + k*step <= row1 - 1
        k0 = k0 if lo + k0 * step <= row1 - 1 else k0 + 1
        k1 = (row0 - lo) // step + 1         # first k with lo + k*step < row0
    else:
        k0, k1 = (0, n) if row0 <= lo < row1 else (0, 0)
    k0, k1 = max(0, min(k0, n)), max(0, min(k1, n))
    return (k0, k1) if k0 < k1 else (0, 0)


Segment = tuple[int, int, int, int]  # kernel range c0, c1 and iterations k0, k1


def computed_segments(k0: int, k1: int, *, n: int, block: int, nblocks: int,
                      reductions: bool) -> list[Segment]:
    """What a rank owning iterations ``[k0, k1)`` runs: kernel ranges with their iterations.

    Without reductions the kernel's blocks are single iterations: the rank runs
    exactly its own.  With reductions a block's partial must be computed by one
    rank, in order: a rank runs the blocks that *start* in its iterations, the
    last of which may run past ``k1`` into the next rank's rows (its own
    segment, second in the list); the iterations before its first block start
    are run by the rank before it.

    Examples
    --------
    >>> computed_segments(3, 10, n=20, block=4, nblocks=5, reductions=True)
    [(1, 2, 4, 8), (2, 3, 8, 12)]
    >>> computed_segments(3, 10, n=20, block=1, nblocks=20, reductions=False)
    [(3, 10, 3, 10)]
    """
    if k0 >= k1:
        return []
    if not reductions:
        return [(k0, k1, k0, k1)]
    b0 = -(-k0 // block)
    b1 = min(-(-k1 // block), nblocks)
    if b0 >= b1:
        return []
    bx = b1 if min(b1 * block, n) <= k1 else b1 - 1
    out = []
    if b0 < bx:
        out.append((b0, bx, b0 * block, min(bx * block, n)))
    if bx < b1:
        out.append((bx, b1, bx * block, min(b1 * block, n)))
    return out


def row_hull(lo: int, step: int, k0: int, k1: int, offsets: Sequence[int]) -> tuple[int, int]:
    """The rows ``[r0, r1)`` spanned by ``lo + k * step + off`` for ``k0 <= k < k1``."""
    first, last = lo + k0 * step, lo + (k1 - 1) * step
    return min(first, last) + min(offsets), max(first, last) + max(offsets) + 1
