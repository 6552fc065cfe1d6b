"""The contract between the compiler and the executors of levels.

``accel`` hands an executor a :class:`LoopPlan`: a compiled chunk kernel that
runs any range of blocks ``[c0, c1)`` of the loop (writing outputs and the
per-block reduction partials), with the arguments to pass it.  The executor
decides which worker runs which blocks and in what order; ``accel`` runs the
prologue before and, after :meth:`Executor.run` returns, combines the partials
in block order and runs the epilogue.  Because the blocks and the combine
order depend only on the iteration count, every executor returns the same
result to the bit.

Executors are found by level name through the ``loopscale.levels`` entry-point
group (see :func:`get_executor`); ``schedule`` and ``distribute`` register
theirs, and a third party can add one the same way.  The ``serial`` executor
lives here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .. import config
from ..errors import LevelError
from ._analysis import ArrayRole

__all__ = ["LoopPlan", "Executor", "SerialExecutor", "get_executor"]


@dataclass(frozen=True)
class LoopPlan:
    """One parallel loop, ready to run.

    Attributes
    ----------
    function : str
        Qualified name of the decorated function (for messages).
    n : int
        Number of iterations.
    block : int
        Iterations per block (the last block may be shorter).
    nblocks : int
        Number of blocks; the kernel takes block indices.
    kernel : callable
        ``kernel(c0, c1, *args)`` runs blocks ``[c0, c1)``.  It is a nogil
        Numba dispatcher: threads may call it concurrently on disjoint blocks.
    args : tuple
        The trailing arguments of every kernel call.
    lo, step : int
        Loop variable value of iteration ``k`` is ``lo + k * step``.
    has_reductions : bool
        Whether blocks carry reduction partials (then chunks must be whole
        blocks, which the kernel's block indices guarantee).
    arrays : Mapping[str, ArrayRole]
        Roles of the arrays the loop touches (for executors that move data).
    arg_names : tuple of str
        The name of each entry of :attr:`args`: ``"lo"``, ``"step"``, ``"n"``,
        ``"block"``, then ``"partial:<var>"`` for each reduction's per-block
        partials (an array whose first axis is the block index), then the names
        of the state variables (the user's names: arguments and locals of the
        prologue) that the loop reads or writes.  An executor that moves data
        (MPI) finds written arrays by name in :attr:`arrays`.
    calls_blas : bool
        The loop calls BLAS (``np.dot``, ``@``, ``np.linalg``...), so an
        executor running blocks on several threads should limit the BLAS
        library's own threads.
    """

    function: str
    n: int
    block: int
    nblocks: int
    kernel: Any
    args: tuple[Any, ...]
    lo: int = 0
    step: int = 1
    has_reductions: bool = False
    arrays: Mapping[str, ArrayRole] = field(default_factory=dict)
    nogil: bool = True
    arg_names: tuple[str, ...] = ()
    calls_blas: bool = False

    def _again(self, n: int, block: int, nblocks: int, args: tuple[Any, ...], lo: int,
               step: int) -> LoopPlan:
        """This plan with another iteration space and arguments (the other fields
        kept): what ``dataclasses.replace`` does, in a tenth of the time, for the
        plans ``accel`` makes call after call."""
        new = object.__new__(LoopPlan)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields["n"], fields["block"], fields["nblocks"] = n, block, nblocks
        fields["args"], fields["lo"], fields["step"] = args, lo, step
        return new

    def arg(self, name: str) -> Any:
        """The kernel argument called *name* (see :attr:`arg_names`)."""
        return self.args[self.arg_names.index(name)]

    @property
    def partials(self) -> dict[str, Any]:
        """Reduction variable -> its per-block partials array."""
        return {n.split(":", 1)[1]: a for n, a in zip(self.arg_names, self.args, strict=False)
                if n.startswith("partial:")}

    def iteration_values(self, c0: int, c1: int) -> tuple[int, int]:
        """First and last loop-variable values of blocks ``[c0, c1)``."""
        k0 = c0 * self.block
        k1 = min(c1 * self.block, self.n) - 1
        return self.lo + k0 * self.step, self.lo + k1 * self.step


@runtime_checkable
class Executor(Protocol):
    """What a level's executor provides."""

    name: str

    def run(self, plan: LoopPlan) -> None:
        """Run every block of *plan* exactly once; return when all are done.

        An exception in a chunk must reach the caller (once), with the others
        stopped."""


class SerialExecutor:
    """The ``serial`` level: every block, in order, on the calling thread."""

    name = "serial"

    def __init__(self, **options: Any) -> None:
        if options:
            raise LevelError(
                f"the 'serial' level takes no options; got {sorted(options)!r}. "
                "Options such as max_workers belong to the 'threads' level."
            )

    def run(self, plan: LoopPlan) -> None:
        if plan.nblocks:
            plan.kernel(0, plan.nblocks, *plan.args)


@functools.cache
def _executor_class(name: str) -> Any:
    if name == "serial":
        return SerialExecutor
    ep = config.level_entry_point(name)
    if ep is None:
        raise LevelError(
            f"no executor is installed for level {name!r}. Installed levels: "
            f"{', '.join(config.installed_levels())}."
        )
    try:
        return ep.load()
    except Exception as exc:  # a broken plugin: say which
        raise LevelError(f"the executor for level {name!r} ({ep.value}) failed to load: "
                         f"{exc}") from exc


def get_executor(name: str, options: Mapping[str, Any] | None = None) -> Executor:
    """An executor for level *name*, constructed with *options*."""
    cls = _executor_class(name)
    return cls(**dict(options or {}))
