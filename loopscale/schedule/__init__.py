"""The shared-memory scheduler: every local core, the same answer.

``schedule`` runs chunk functions — compiled, nogil, over shared NumPy arrays —
on a pool of persistent worker threads.  It knows nothing of ``accel``: the
``threads`` level's executor (:class:`ThreadsExecutor`, registered under the
``loopscale.levels`` entry point) receives a loop plan and runs its chunk
kernel over the plan's blocks.  :func:`parallel_for` is the same building block
for any ``fn(start, stop, *args)``.

Scheduling policies are those of OpenMP: ``static``, ``dynamic``, ``guided``
and ``auto`` (see :mod:`loopscale.schedule._chunking`).
"""

from ._chunking import POLICIES, plan_chunks
from ._executor import Executor
from ._graph import TaskGraph, TaskRef, run_graph
from ._parallel import ThreadsExecutor, parallel_for
from ._pool import WorkerPool, in_worker
from ._process import ProcessExecutor

__all__ = ["POLICIES", "Executor", "ProcessExecutor", "TaskGraph", "TaskRef", "ThreadsExecutor",
           "WorkerPool", "in_worker", "parallel_for", "plan_chunks", "run_graph"]
