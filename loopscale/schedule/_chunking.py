"""Chunk planning: how a range of blocks is cut into the pieces workers claim.

Pure functions over integers, tested without threads.  A *chunk* is a half-open
range ``[c0, c1)`` of block indices; every planner returns chunks that cover
``[0, nblocks)`` exactly once, in increasing order, so that results never
depend on the plan (reductions are per block, combined later in block order).

Policies (the ``policy=`` argument, as OpenMP's ``schedule`` clause):

``static``
    ``max_workers`` equal contiguous chunks (or chunks of ``chunksize``
    blocks dealt round-robin when one is given).  Lowest overhead; suits
    loops whose iterations cost the same.
``dynamic``
    Chunks of ``chunksize`` blocks (default: enough for ~8 chunks per
    worker) claimed by whichever worker is free.  Balances uneven loops.
``guided``
    Chunks that shrink as the work runs out: each is the remaining work
    divided by twice the worker count, never below ``chunksize``.  Balances
    uneven loops with fewer claims than ``dynamic``.
``auto``
    ``guided`` with its smallest chunk sized from the measured cost per block
    so that no chunk is shorter than ~50 µs (tiny loops are not drowned in
    overhead), or ``static`` when the loop is too small to split.  With many
    workers the floor rises to about 25 µs per worker: claiming a chunk and
    calling its kernel hold the GIL for a few microseconds, one worker at a
    time, so sixteen workers on 50 µs chunks would queue for the GIL.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from .. import config

__all__ = ["POLICIES", "plan_chunks", "validate_policy", "validate_max_workers",
           "validate_chunksize", "validate_progress",
           "MIN_CHUNK_SECONDS", "min_chunk_seconds"]

#: The scheduling policies, in the order documented.
POLICIES = ("static", "dynamic", "guided", "auto")

#: ``auto`` aims for chunks at least this long, so claiming one (~1-5 µs) is cheap.
MIN_CHUNK_SECONDS = 50e-6

#: ... and at least this long per worker: the claims (and the calls into the
#: compiled kernel) take the GIL one worker at a time, a few microseconds
#: each, so the workers together must not ask for it more often than it can
#: be handed round (measured on 16 cores: 5.5 µs per chunk whatever the
#: worker count, 375 µs to start a region of 16 workers).
CHUNK_SECONDS_PER_WORKER = 25e-6


def min_chunk_seconds(workers: int) -> float:
    """The shortest chunk ``auto`` plans for *workers* workers."""
    return max(MIN_CHUNK_SECONDS, CHUNK_SECONDS_PER_WORKER * workers)


def validate_policy(policy: object) -> str:
    """*policy* if it is one of :data:`POLICIES`, else a ValueError listing them."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(map(repr, POLICIES))}; got "
                         f"{policy!r}.")
    return policy


def validate_max_workers(max_workers: object, *, name: str = "max_workers") -> int | None:
    """*max_workers* as a positive int (None stays None), else a clear error."""
    if max_workers is None:
        return None
    return _positive(max_workers, name)


def _positive(value: object, name: str) -> int:
    """*value*, an int or a NumPy integer greater than 0, as an int; else a clear error."""
    number = config.as_integer(value)
    if number is None:
        raise TypeError(f"{name} must be a positive integer or None; got {value!r}.")
    if number <= 0:
        raise ValueError(f"{name} must be greater than 0; got {value!r}.")
    return number


def validate_chunksize(chunksize: object) -> int | None:
    if chunksize is None:
        return None
    return _positive(chunksize, "chunksize")


def validate_progress(progress: object) -> None:
    """Refuse a *progress* option that is not True, False or None (``"no"`` is true)."""
    if progress is not None and progress is not True and progress is not False:
        raise TypeError(f"progress must be True, False or None; got {progress!r}.")


def _even(nblocks: int, pieces: int) -> list[tuple[int, int]]:
    pieces = max(1, min(pieces, nblocks))
    base, extra = divmod(nblocks, pieces)
    out, start = [], 0
    for p in range(pieces):
        stop = start + base + (1 if p < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _fixed(nblocks: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, nblocks)) for s in range(0, nblocks, size)]


def _guided(nblocks: int, workers: int, minimum: int) -> list[tuple[int, int]]:
    out, start = [], 0
    while start < nblocks:
        size = max(minimum, math.ceil((nblocks - start) / (2 * workers)))
        stop = min(nblocks, start + size)
        out.append((start, stop))
        start = stop
    return out


def plan_chunks(nblocks: int, workers: int, policy: str = "auto", chunksize: int | None = None,
                seconds_per_block: float | None = None) -> list[tuple[int, int]]:
    """Cut ``[0, nblocks)`` into chunks for *workers* workers.

    Parameters
    ----------
    nblocks : int
        Number of blocks (>= 0).
    workers : int
        Number of workers that will claim chunks (>= 1).
    policy : str
        One of :data:`POLICIES`.
    chunksize : int, optional
        Blocks per chunk (``static``, ``dynamic``) or the smallest chunk
        (``guided``, ``auto``).
    seconds_per_block : float, optional
        Measured cost of one block, used by ``auto``.

    Returns
    -------
    list of (int, int)
        Chunks covering ``[0, nblocks)`` in increasing order.
    """
    validate_policy(policy)
    if nblocks <= 0:
        return []
    workers = max(1, workers)
    if workers == 1:
        return [(0, nblocks)]
    if policy == "auto":
        minimum = chunksize or 1
        if seconds_per_block is not None and seconds_per_block > 0:
            minimum = max(minimum, math.ceil(min_chunk_seconds(workers) / seconds_per_block))
            if nblocks * seconds_per_block < 2 * MIN_CHUNK_SECONDS:
                return [(0, nblocks)]
        return list(_planned(nblocks, workers, "guided", minimum))
    return list(_planned(nblocks, workers, policy, chunksize))


@functools.lru_cache(maxsize=256)
def _planned(nblocks: int, workers: int, policy: str, chunksize: int | None
             ) -> tuple[tuple[int, int], ...]:
    """The chunks of a plan, kept: a loop called again and again has the same
    plan each time (cutting 2000 blocks anew took 5-12 us a call)."""
    if policy == "static":
        return tuple(_fixed(nblocks, chunksize) if chunksize else _even(nblocks, workers))
    if policy == "dynamic":
        return tuple(_fixed(nblocks, chunksize or max(1, nblocks // (8 * workers))))
    return tuple(_guided(nblocks, workers, chunksize or 1))


def covers_exactly(chunks: Sequence[tuple[int, int]], nblocks: int) -> bool:
    """Whether *chunks* cover ``[0, nblocks)`` once each, in order (for tests)."""
    pos = 0
    for c0, c1 in chunks:
        if c0 != pos or c1 <= c0:
            return False
        pos = c1
    return pos == nblocks
