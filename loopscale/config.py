"""Configuration: every ``LOOPSCALE_*`` environment variable and the level context.

This is the one module that reads loopscale's environment variables; every
other module asks it.  Standard library only (a leaf of the package graph).

=========================  ==========================================================
variable                   meaning
=========================  ==========================================================
``LOOPSCALE_LEVEL``        default level: ``auto`` (default), ``serial``, ``threads``,
                           ``mpi``, ``cuda`` or a level added by a third party
``LOOPSCALE_MAX_WORKERS``  default worker count for the ``threads`` level
``LOOPSCALE_DISABLE``      ``1`` runs every decorated function as plain Python
``LOOPSCALE_CACHE_DIR``    where generated code and compiled machine code are cached
                           (default ``$XDG_CACHE_HOME/loopscale`` or
                           ``~/.cache/loopscale``)
``LOOPSCALE_VECTOR_MATH``  ``0`` keeps the C library's scalar ``exp``, ``log``...
                           in compiled loops instead of glibc's vector ones
``LOOPSCALE_MPI_WAIT``     seconds a rank waits for the others in one of a
                           distributed call's collectives before it says so on
                           stderr (default 60; ``0``: never)
``LOOPSCALE_MPI_TIMEOUT``  seconds after which such a wait ends the job with
                           status 1 (default: never)
=========================  ==========================================================

The level in force is a :mod:`contextvars` variable, so ``with level(...)``
blocks nest, and each thread and asyncio task sees its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import operator
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import LevelError

__all__ = [
    "LEVEL_ENTRY_POINT_GROUP",
    "LevelSetting",
    "level",
    "current_level",
    "installed_levels",
    "disabled",
    "cache_dir",
    "vector_math",
    "mpi_wait_warning",
    "mpi_timeout",
    "max_workers_default",
    "usable_cores",
    "launcher_world_size",
    "launcher_rank",
]

#: The entry-point group through which executors for levels are found.
LEVEL_ENTRY_POINT_GROUP = "loopscale.levels"

#: ``auto`` is resolved by the caller; it is not an executor of its own.
AUTO = "auto"

_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class LevelSetting:
    """The level in force: its name and the options given with it."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "default"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def disabled() -> bool:
    """Whether ``LOOPSCALE_DISABLE`` asks for plain Python everywhere.

    Read at decoration time, as ``NUMBA_DISABLE_JIT`` is.
    """
    return _env("LOOPSCALE_DISABLE").lower() in _TRUE


def vector_math() -> bool:
    """Whether compiled loops may call glibc's vector math library (``libmvec``)
    for ``exp``, ``log``, ``sin``... (``LOOPSCALE_VECTOR_MATH``, default on;
    ``0`` keeps the C library's scalar functions, bit-for-bit as Numba's).

    Read when a function is first compiled.
    """
    return _env("LOOPSCALE_VECTOR_MATH", "1").lower() not in {"0", "false", "no", "off"}


def _seconds(name: str, default: float | None) -> float | None:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or math.isinf(value):
        raise LevelError(f"{name} must be a number of seconds (0 or more); got {raw!r}. "
                         f"Unset it for the default, or give e.g. {name}=120.")
    return value or None


def mpi_wait_warning() -> float | None:
    """Seconds a rank waits in a distributed call's collective before it says so
    (``LOOPSCALE_MPI_WAIT``, default 60; None when ``0``)."""
    return _seconds("LOOPSCALE_MPI_WAIT", 60.0)


def mpi_timeout() -> float | None:
    """Seconds after which a wait in a distributed call's collective ends the job
    (``LOOPSCALE_MPI_TIMEOUT``; None, the default, waits as long as it takes)."""
    return _seconds("LOOPSCALE_MPI_TIMEOUT", None)


def cache_dir() -> str:
    """The directory for loopscale's on-disk cache (``LOOPSCALE_CACHE_DIR``)."""
    explicit = _env("LOOPSCALE_CACHE_DIR")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = _env("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "loopscale")


#: How long a read of the cgroup CPU quota is reused: reading it opens files
#: (~20 us, more on a cold cache), and :func:`usable_cores` is asked at every
#: call of a decorated function whose level does not fix ``max_workers``.
_QUOTA_SECONDS = 1.0
_QUOTA_READ: list[Any] = [-1e9, None]  # [monotonic time of the read, quota]


def _cgroup_quota() -> float | None:
    """CPU quota of this process's cgroup in cores, or None when unlimited
    (read at most once per :data:`_QUOTA_SECONDS`: a quota seldom changes)."""
    now = time.monotonic()
    if now - _QUOTA_READ[0] < _QUOTA_SECONDS:
        return _QUOTA_READ[1]  # type: ignore[no-any-return]
    quota = _read_cgroup_quota()
    _QUOTA_READ[:] = [now, quota]
    return quota


def _read_cgroup_quota() -> float | None:
    try:  # cgroup v2
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota_us = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period_us = int(fh.read())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may use: CPU affinity, capped by the cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


#: Variables through which MPI launchers tell a process the size of its job.
_MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                  "SLURM_NTASKS", "MV2_COMM_WORLD_SIZE", "I_MPI_INFO_NP")
_MPI_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID",
                  "MV2_COMM_WORLD_RANK")


#: Set by :func:`forget_launcher` in a process this one started (not an MPI rank).
_NOT_A_RANK = False

#: Prefixes of the variables by which a launcher tells a process it is a rank
#: and how to reach the launcher (MPICH/Hydra's PMI_FD, PMIx's server URI...).
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_COMM_WORLD_", "MV2_COMM_WORLD_", "MPI_LOCAL",
                      "HYDRA_", "I_MPI_INFO_", "PALS_")


def forget_launcher() -> None:
    """In a process started by an MPI rank (a ``ProcessExecutor`` worker): it is no
    rank of the job, though it inherited the launcher's environment.

    Without this, the ``auto`` level would pick ``mpi`` in it and initialising
    MPI there would write to the launcher's connection inherited by number
    (MPICH's ``PMI_FD``: another file in the child), then abort.  The
    launcher's identity variables are removed, so that MPI started in it later
    (``from mpi4py import MPI``) is a job of its own, and its children inherit
    the clean environment.
    """
    global _NOT_A_RANK
    _NOT_A_RANK = True
    names = set(_MPI_SIZE_VARS) | set(_MPI_RANK_VARS) | set(_MPI_LOCAL_RANK_VARS) | set(
        _MPI_LOCAL_SIZE_VARS)
    for var in list(os.environ):
        if var.startswith(_LAUNCHER_PREFIXES) or (var in names and not var.startswith("SLURM_")):
            os.environ.pop(var, None)


def launcher_world_size() -> int:
    """Ranks in the MPI job this process was launched in, read from the
    launcher's environment (without initialising MPI); 1 when not launched by
    an MPI launcher.  ``SLURM_NTASKS`` counts only with a rank variable set."""
    if _NOT_A_RANK:
        return 1
    for var in _MPI_SIZE_VARS:
        raw = _env(var)
        if raw.isdigit():
            if var == "SLURM_NTASKS" and not any(_env(r) for r in _MPI_RANK_VARS[:3]):
                continue
            return max(1, int(raw))
    return 1


#: This process's rank among the ranks on its node, by launcher: Open MPI, MPICH/Hydra
#: and Intel MPI, MVAPICH, Slurm, Cray PALS, Flux.
_MPI_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                        "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PALS_LOCAL_RANKID",
                        "FLUX_TASK_LOCAL_ID")
_MPI_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                        "MV2_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")


def launcher_local_rank() -> tuple[int, int | None] | None:
    """This process's rank among the ranks on its node, and how many there are
    (None when the launcher does not say), from the launcher's environment
    (MPI is not initialised); None when the launcher gives no local rank."""
    if _NOT_A_RANK:
        return None
    for var in _MPI_LOCAL_RANK_VARS:
        raw = _env(var)
        if raw.isdigit():
            size = None
            for svar in _MPI_LOCAL_SIZE_VARS:
                sraw = _env(svar)
                if sraw.isdigit():
                    size = int(sraw)
                    break
            return int(raw), size
    return None


def launcher_rank() -> int | None:
    """This process's rank according to the launcher's environment, or None."""
    if _NOT_A_RANK:
        return None
    for var in _MPI_RANK_VARS:
        raw = _env(var)
        if raw.isdigit():
            return int(raw)
    return None


#: A rank writes its process id here, in its environment: a process that finds
#: another process's id there was started by a rank (a subprocess or a fork of
#: the script) and is no rank of the job, although it inherited the launcher's
#: variables (taking itself for one, it would initialise MPI on the launcher's
#: connection and die in MPICH's PMI_Init).
_RANK_PID_VAR = "LOOPSCALE_RANK_PID"


def _mark_rank() -> None:
    marker = os.environ.get(_RANK_PID_VAR)
    me = str(os.getpid())
    if marker is None:
        if launcher_world_size() > 1:
            os.environ[_RANK_PID_VAR] = me
    elif marker != me:
        forget_launcher()
        os.environ.pop(_RANK_PID_VAR, None)


_mark_rank()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_rank)


def as_integer(value: Any) -> int | None:
    """*value* as an ``int`` when it is an integer (a Python or NumPy integer, as
    ``ThreadPoolExecutor`` takes for a count), else None (a bool, a float, a
    string...)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # (refuses floats and NumPy bools)
    except TypeError:
        return None


def _parse_max_workers(value: Any, source: str) -> int:
    number = as_integer(value)
    if number is None and isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value)
    if number is None:
        raise LevelError(
            f"max_workers must be a positive integer; got {value!r} (from {source}). "
            f"Use an integer between 1 and the number of cores ({usable_cores()}).")
    if number <= 0:
        raise LevelError(
            f"max_workers must be greater than 0; got {value!r} (from {source})."
        )
    return number


def max_workers_default() -> int:
    """Workers for the ``threads`` level: ``LOOPSCALE_MAX_WORKERS`` or the usable cores."""
    raw = _env("LOOPSCALE_MAX_WORKERS")
    if raw:
        return _parse_max_workers(raw, "LOOPSCALE_MAX_WORKERS")
    return usable_cores()


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=LEVEL_ENTRY_POINT_GROUP)}


def installed_levels() -> tuple[str, ...]:
    """Names of the levels whose executors are installed (plus ``auto``)."""
    names = set(_entry_points())
    names.add("serial")  # built into accel, present even in a source checkout
    names.add("cuda")  # a target of accel (it says why when no GPU can be used)
    return tuple(sorted(names)) + (AUTO,)


def level_entry_point(name: str) -> Any | None:
    """The entry point registered for level *name*, or None."""
    return _entry_points().get(name)


def _validate_level(name: Any, source: str) -> str:
    if not isinstance(name, str):
        raise LevelError(
            f"level must be a string; got {name!r} (from {source}). "
            f"Installed levels: {', '.join(installed_levels())}."
        )
    name = name.strip().lower()
    if name not in installed_levels():
        raise LevelError(
            f"unknown or not installed level {name!r} (from {source}). "
            f"Installed levels: {', '.join(installed_levels())}. "
            "Levels come from packages that register the 'loopscale.levels' entry point; "
            "reinstall loopscale (pip install -e .) if a built-in level is missing."
        )
    return name


_DEFAULT: LevelSetting | None = None
_LEVEL: contextvars.ContextVar[LevelSetting | None] = contextvars.ContextVar(
    "loopscale_level", default=None
)


_NO_COLLECTIVES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "loopscale_no_collectives", default=False
)


def collectives_allowed() -> bool:
    """Whether ``auto`` may pick a level whose calls are collective (``mpi``): not
    inside a task of ``distribute.map``, where the other ranks are elsewhere."""
    return not _NO_COLLECTIVES.get()


@contextlib.contextmanager
def without_collectives() -> Iterator[None]:
    """Inside the block, ``auto`` never picks a collective level (see
    :func:`collectives_allowed`): a task farm runs its tasks so."""
    token = _NO_COLLECTIVES.set(True)
    try:
        yield
    finally:
        _NO_COLLECTIVES.reset(token)


def _default_level() -> LevelSetting:
    global _DEFAULT
    if _DEFAULT is None:
        raw = _env("LOOPSCALE_LEVEL")
        if raw:
            _DEFAULT = LevelSetting(_validate_level(raw, "LOOPSCALE_LEVEL"),
                                    source="LOOPSCALE_LEVEL")
        else:
            _DEFAULT = LevelSetting(AUTO, source="default")
    return _DEFAULT


def current_level() -> LevelSetting:
    """The level in force here: the innermost ``with level(...)`` or ``LOOPSCALE_LEVEL``."""
    setting = _LEVEL.get()
    return setting if setting is not None else _default_level()


@contextlib.contextmanager
def level(name: str, **options: Any) -> Iterator[LevelSetting]:
    """Run the decorated functions called inside the block at level *name*.

    Parameters
    ----------
    name : str
        ``"auto"``, ``"serial"``, ``"threads"``, ``"mpi"``, ``"cuda"`` or a
        level a third-party package registered.
    **options
        Options for the level's executor, for example ``max_workers=4`` for
        ``threads``.

    Raises
    ------
    loopscale.errors.LevelError
        When the level is unknown or its executor is not installed; the message
        lists the installed levels.

    Examples
    --------
    >>> import loopscale
    >>> with loopscale.level("serial"):
    ...     pass
    """
    name = _validate_level(name, "loopscale.level()")
    if "max_workers" in options and options["max_workers"] is not None:
        options["max_workers"] = _parse_max_workers(options["max_workers"], "max_workers=")
    token = _LEVEL.set(LevelSetting(name, MappingProxyType(dict(options)), source="level()"))
    try:
        yield _LEVEL.get()  # type: ignore[misc]
    finally:
        _LEVEL.reset(token)
