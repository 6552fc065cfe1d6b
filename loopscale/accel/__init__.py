"""The compiler: ``@accelerate`` turns a numeric Python loop into a chunked,
Numba-compiled plan that every level (serial, threads, MPI) runs to the same
result.  Knows nothing of threads or MPI: executors are found by level name.
"""

from ._analysis import ArrayRole, LoopAnalysis
from ._decorator import TARGETS, Accelerated, accelerate, prange
from ._executor import Executor, LoopPlan, SerialExecutor, get_executor

__all__ = [
    "TARGETS",
    "Accelerated",
    "ArrayRole",
    "Executor",
    "LoopAnalysis",
    "LoopPlan",
    "SerialExecutor",
    "accelerate",
    "get_executor",
    "prange",
]
