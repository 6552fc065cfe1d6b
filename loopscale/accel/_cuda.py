"""The CUDA target: an analysed parallel loop run as a grid-stride GPU kernel.

Entry points for the decorator:

:func:`cuda_status`
    ``(available, reason)``, never raising.  Whether a GPU can be used is
    probed once per process in a *child* Python process (initialising a
    broken driver can crash the process that does it); under Numba's CUDA
    simulator (``NUMBA_ENABLE_CUDASIM=1``) no probe is needed.

:func:`call_cuda`
    The whole CUDA call of an accelerated function: availability (raising
    :class:`~loopscale.errors.CudaUnavailableError`, or with ``fallback=True``
    warning once and returning :data:`RUN_ON_CPU`), then :func:`run_cuda`.

:func:`run_cuda`
    Runs the function: prologue as Python, the loop as a kernel, epilogue as
    Python (see :mod:`._cuda_codegen` for why).  Returns the function's
    result, or a :class:`RunOnCpu` marker when the loop must stay on the CPU
    (it is not parallel, or it reduces into an array); the caller then runs
    the CPU path and ``explain()`` shows the marker's reason.

Data movement.  NumPy arrays the loop uses are copied to the device once per
call; only those the loop writes (their role in ``analysis.arrays``) are
copied back, into the caller's arrays.  Objects with
``__cuda_array_interface__`` (CuPy arrays, Numba device arrays) are passed to
the kernel as they are and never copied; a prologue that allocates with
``np.zeros_like(x)`` of a CuPy ``x`` gets a CuPy array (NumPy dispatches to
CuPy), so the result stays on the device.  Before copying, the bytes needed
are compared with the device's free memory.  Transfer and kernel times of the
last call are kept in ``accelerated.last_cuda_timings``.

Launch configuration.  ``threads_per_block`` (a power of two, 32..1024;
default 256) and ``blocks_per_grid`` (default 8 per multiprocessor, never
more than the iterations need) are the options of the ``cuda`` level:
``loopscale.level("cuda", threads_per_block=128)``.  The simulator defaults
to 32 threads and at most 2 blocks, which keeps simulated kernels quick.

Reductions.  Each thread accumulates its grid-stride share from the
identity; each block reduces its threads' values by a shared-memory tree;
the host combines the per-block partials in block order starting from the
variable's value before the loop.  The order depends only on the iteration
count and the launch configuration, so repeated runs give identical results.
Integer reductions equal the CPU result exactly; floating-point sums and
products are reassociated (thread, tree and block order instead of the CPU's
fixed blocks), so they match within rounding: a relative difference of order
``n * eps`` of the dtype (the tests use ``rtol=1e-12`` for float64 and
``1e-4`` for float32 at n <= 200).  ``min``/``max`` are exact.
"""

from __future__ import annotations

import ast
import builtins
import functools
import json
import math
import os
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import config, errors
from ..errors import ArgumentError, ArgumentValueError, CompileError, CudaUnavailableError
from . import _codegen, _compile, _runtime
from ._astutil import closure_values
from ._cuda_codegen import CudaCode, generate_cuda
from ._model import LoopAnalysis, Resolver

__all__ = [
    "RunOnCpu",
    "RUN_ON_CPU",
    "CUDA_OPTIONS",
    "INSTALL_HINT",
    "cuda_status",
    "unavailable_message",
    "call_cuda",
    "run_cuda",
    "check_device_memory",
    "compile_ptx",
    "format_timings",
]

INSTALL_HINT = "pip install 'loopscale[cuda]'  (or: pip install numba-cuda)"

#: Options of the ``cuda`` level and their meaning.
CUDA_OPTIONS = {
    "threads_per_block": "threads in a block, a power of two from 32 to 1024 (default 256)",
    "blocks_per_grid": "blocks in the grid (default: 8 per multiprocessor, capped by the "
                       "iterations)",
}

_ARG_MARK = "loopscale-argument:"

#: The device-memory error (a MemoryError that gives requested and free bytes).
DeviceMemoryError: type[BaseException] = errors.CudaMemoryError


def _sliced(node: ast.AST) -> bool:
    """*node* is a subscript with a slice in its index (``M[i, :]``, ``x[a:b]``)."""
    if not isinstance(node, ast.Subscript):
        return False
    idx = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return any(isinstance(e, ast.Slice) for e in idx)


def _array_arithmetic(fdef: Any, analysis: LoopAnalysis) -> str | None:
    """Why the loop has no device form because its body computes with whole rows
    (``M[i, :] * 0.5``, ``-x[a:b]``): a kernel cannot allocate the arrays such
    expressions make (Numba's CUDA target refuses them; its simulator raised a
    bare TypeError).  None when it does not."""
    if fdef is None or analysis.loop_index is None:
        return None
    loop = fdef.body[analysis.loop_index]
    for node in ast.walk(loop):
        operands: list[ast.AST] = []
        if isinstance(node, ast.BinOp):
            operands = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp):
            operands = [node.operand]
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.AugAssign):
            operands = [node.target, node.value]
        if any(_sliced(o) for o in operands):
            return (f"line {node.lineno}: `{ast.unparse(node)}` computes with a slice of an "
                    "array, which makes a new array: a CUDA kernel cannot allocate one. Write "
                    "the inner loop (`for j in range(...)`) element by element to run it on "
                    "the device")
    return None


def _cpu_only(analysis: LoopAnalysis) -> str | None:
    """Why a parallel loop has no device form, or None."""
    for key in analysis.reduction_scatters:
        return (f"`{key}` is added into at any index (`{key}[...] += ...`): the device "
                "reduction combines numbers, not arrays")
    for key, op in analysis.reductions.items():
        if op in ("|", "&", "^"):
            return (f"`{key}` is combined with `{op}`: the device reduction combines sums, "
                    "products, minima and maxima only")
    for key, form in analysis.reduction_forms.items():
        if form in _codegen.NP_FORMS:
            fn = _codegen.np_function(analysis.reductions[key], form)
            return (f"`{key}` is combined with np.{fn}(), whose NaN and tie rules the device "
                    "reduction does not repeat (when the data holds no NaN, `"
                    f"{key} = {analysis.reductions[key]}({key}, ...)` runs on the device)")
    for key, value in analysis.reduction_sets.items():
        return (f"`{key}` is set to {value} when any iteration sets it: the device "
                "reduction combines sums, products, minima and maxima only")
    for key, pays in analysis.reduction_payloads.items():
        if pays:
            names = ", ".join(f"`{p}`" for p in pays)
            return (f"{names} follow{'s' if len(pays) == 1 else ''} the {analysis.reductions[key]}"
                    f" of `{key}` (the position of the best value): the device reduction "
                    "keeps values, not positions")
    return None


class RunOnCpu:
    """Returned by :func:`run_cuda` when the loop stays on the CPU; :attr:`reason` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"RunOnCpu({self.reason!r})"


#: The marker :func:`call_cuda` returns after a ``fallback=True`` warning.
RUN_ON_CPU = RunOnCpu("CUDA is not available (fallback=True)")


# ---------------------------------------------------------------------------
# availability

_PROBE = r"""
import json, sys
out = {"available": False, "reason": None, "devices": 0}
try:
    from numba import cuda
except Exception as exc:
    out["reason"] = "import: %s: %s" % (type(exc).__name__, exc)
    print(json.dumps(out)); sys.exit(0)
try:
    out["implementation"] = getattr(cuda, "implementation", "unknown")
    if cuda.is_available():
        out["devices"] = len(cuda.list_devices())
        out["available"] = out["devices"] > 0
        if not out["available"]:
            out["reason"] = "the CUDA driver reports no devices"
    else:
        try:
            cuda.list_devices()[0]
            out["reason"] = "numba.cuda.is_available() is False"
        except Exception as exc:
            out["reason"] = " ".join(str(exc).split()) or type(exc).__name__
except Exception as exc:
    out["reason"] = "%s: %s" % (type(exc).__name__, " ".join(str(exc).split()))
print(json.dumps(out))
"""


def _simulator() -> bool:
    try:
        from numba.core import config as nb_config
    except Exception:  # pragma: no cover - numba is a dependency
        return False
    return bool(getattr(nb_config, "ENABLE_CUDASIM", False))


def _explain_reason(raw: str) -> str:
    text = " ".join(raw.split())
    low = text.lower()
    if text.startswith("import:"):
        return ("the numba-cuda package is not installed (numba.cuda cannot be imported: "
                f"{text[7:].strip()}); install it with: {INSTALL_HINT}")
    if "driver library cannot be found" in low or "libcuda" in low:
        return ("no CUDA driver: the NVIDIA driver library (libcuda) cannot be found on this "
                "machine; install the NVIDIA driver or run on a machine with a GPU")
    if ("no cuda-capable device" in low or "reports no devices" in low or "no device" in low
            or "no_device" in low):  # CUDA_ERROR_NO_DEVICE (CUDA_VISIBLE_DEVICES="")
        return "no CUDA device: the driver is installed but reports no GPU"
    return text


def _probe_child(timeout: float = 120.0) -> tuple[bool, str]:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return False, f"probing CUDA did not finish within {timeout:g} s (a hung driver?)"
    except OSError as exc:
        return False, f"could not start a Python process to probe CUDA: {exc}"
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-300:]
        return False, (f"probing CUDA crashed the probe process (exit status "
                       f"{proc.returncode}): {tail or 'no message'}")
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, f"the CUDA probe printed nothing usable: {proc.stdout[-200:]!r}"
    if out.get("available"):
        return True, f"{out.get('devices')} CUDA device(s) ({out.get('implementation')} " \
                     "numba.cuda)"
    return False, _explain_reason(str(out.get("reason") or "unknown"))


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """Whether CUDA kernels can run here, and why (not).

    Never raises.  The reason names what is missing: the numba-cuda package
    (with the install command), the driver, or a device.

    Returns
    -------
    (bool, str)

    Examples
    --------
    >>> from loopscale.accel._cuda import cuda_status
    >>> ok, reason = cuda_status()  # doctest: +SKIP
    """
    try:
        if _simulator():
            try:
                import numba.cuda  # noqa: F401
            except Exception as exc:
                return False, _explain_reason(f"import: {type(exc).__name__}: {exc}")
            return True, "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        return _probe_child()
    except Exception as exc:  # pragma: no cover - belt and braces
        return False, f"probing CUDA failed: {type(exc).__name__}: {exc}"


def broken_install(exc: BaseException) -> str | None:
    """The reason, when *exc* is numba-cuda failing inside its own code against
    this NumPy (an ``AttributeError`` on the ``numpy`` module raised from
    numba-cuda's files), else None.

    Seen on 2026-11-22: numba-cuda 0.30.4 registers an overload for
    ``np.row_stack``, which NumPy 2.5 removed, so the first CUDA compilation
    failed deep inside numba-cuda although the driver and device were fine.
    """
    if not isinstance(exc, AttributeError) or "module 'numpy' has no attribute" not in str(exc):
        return None
    tb, inside = exc.__traceback__, False
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
        inside = inside or "numba_cuda/" in name or "numba/cuda/" in name
        tb = tb.tb_next
    if not inside:
        return None
    try:
        from importlib.metadata import version

        ver = version("numba-cuda")
    except Exception:  # noqa: BLE001 - the name only
        ver = "(version unknown)"
    major, minor = (np.__version__.split(".") + ["0"])[:2]
    return (f"numba-cuda {ver} does not work with NumPy {np.__version__}: compiling the "
            f"kernel failed inside numba-cuda ({exc}); install a NumPy it supports "
            f"(pip install 'numpy<{major}.{minor}') or a numba-cuda release made for NumPy "
            f"{major}.{minor}")


def unavailable_message(reason: str, function: str = "") -> str:
    """The message of :class:`CudaUnavailableError` for *reason*."""
    who = f"{function}(): " if function else ""
    return (f"{who}target 'cuda' cannot run on this machine: {reason}. To use a GPU, install "
            f"the CUDA support ({INSTALL_HINT}) on a machine with an NVIDIA GPU and driver; "
            "otherwise use target='cpu', or @accelerate(target='cuda', fallback=True) to run "
            "on the CPU with a warning.")


# ---------------------------------------------------------------------------
# device helpers and arrays


def _cuda() -> Any:
    from numba import cuda

    return cuda


def rank_device(local_rank: int, local_size: int | None, count: int
                ) -> tuple[int, str | None]:
    """The GPU a rank uses, ``local_rank % count``, and a warning when GPUs are shared.

    Examples
    --------
    >>> rank_device(5, 8, 4)[0]
    1
    >>> print(rank_device(5, 8, 4)[1])  # doctest: +ELLIPSIS
    8 MPI ranks on this node share 4 GPU(s): ... (this rank: local rank 5, GPU 1).
    >>> rank_device(1, 2, 4)
    (1, None)
    """
    device = local_rank % count
    ranks = local_size if local_size is not None else local_rank + 1
    if ranks > count:
        return device, (f"{ranks if local_size is not None else 'more than ' + str(count)} "
                        f"MPI ranks on this node share {count} GPU(s): ranks with the same "
                        f"local rank modulo {count} use the same GPU (this rank: local rank "
                        f"{local_rank}, GPU {device}).")
    return device, None


_DEVICE_CHOSEN: list[int] = []


def select_rank_device() -> int | None:
    """Under an MPI launcher with more than one rank, make this process use the GPU
    ``local_rank % device_count`` (once per process; warns when ranks share a GPU).

    The local rank is read from the launcher's environment (``OMPI_COMM_WORLD_LOCAL_RANK``,
    ``MPI_LOCALRANKID``, ``SLURM_LOCALID``...), or, when it gives none, the global rank
    is used.  Returns the device number, or None when not launched with several ranks.
    """
    if _DEVICE_CHOSEN:
        return _DEVICE_CHOSEN[0]
    if config.launcher_world_size() <= 1:
        return None
    found = config.launcher_local_rank()
    local, size = found if found is not None else (config.launcher_rank() or 0, None)
    cuda = _cuda()
    count = len(cuda.gpus)
    if count < 1:
        return None
    device, warning = rank_device(local, size, count)
    cuda.select_device(device)
    _DEVICE_CHOSEN.append(device)
    if warning:
        warnings.warn(warning, errors.LoopscaleWarning, stacklevel=5)
    return device


def _is_device_array(value: Any) -> bool:
    if hasattr(value, "__cuda_array_interface__"):
        return True
    # the simulator's device arrays have no __cuda_array_interface__
    return type(value).__name__ == "FakeCUDAArray" and hasattr(value, "copy_to_host")


def _memory_info() -> tuple[float, float]:
    """(free, total) bytes of the current device."""
    info = _cuda().current_context().get_memory_info()
    return float(info[0]), float(info[1])


def check_device_memory(requested: int) -> None:
    """Raise a memory error when *requested* bytes exceed the device's free memory.

    The message states both numbers; nothing is allocated, so a smaller
    request afterwards works.
    """
    free, total = _memory_info()
    if requested > free:
        raise DeviceMemoryError(
            f"the CUDA call needs {requested:,} bytes on the device, but only {free:,.0f} "
            f"bytes of {total:,.0f} are free: pass smaller arrays, free device memory (drop "
            "CuPy arrays, cupy.get_default_memory_pool().free_all_blocks()), or keep the data "
            "on the device (CuPy arrays are not copied).")


def _is_oom(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'code', '')} {exc}".upper()
    return "OUT_OF_MEMORY" in text or "OUT OF MEMORY" in text


class _DeviceHelpers(_compile.HelperCompiler):
    """Plain Python helpers called by the loop, compiled as CUDA device functions."""

    def convert(self, value: Any) -> Any:
        import numba

        if isinstance(value, self.accelerated_type):
            value = value.py_func  # type: ignore[attr-defined]
        if type(value).__module__.startswith("numba.cuda"):
            return value  # already a CUDA function (or the simulator's)
        if isinstance(value, numba.core.dispatcher.Dispatcher):
            value = value.py_func  # a user's @njit helper: its Python source, for the device
        if isinstance(value, types.FunctionType):
            return self.helper(value)
        return value

    def jit(self, func: types.FunctionType) -> Any:
        return _cuda().jit(device=True, **self.options)(func)


def _lookup(func: types.FunctionType, names: frozenset[str]) -> dict[str, Any]:
    closure: dict[str, Any] = closure_values(func)
    out = {}
    for name in names:
        if name in closure:
            out[name] = closure[name]
        elif name in func.__globals__:
            out[name] = func.__globals__[name]
    return out


def _nb_type(value: Any) -> Any:
    """Numba's (CPU) type of a kernel argument; device arrays typed as host arrays."""
    import numba
    from numba import types as nbt

    if _is_device_array(value):
        cai = getattr(value, "__cuda_array_interface__", None)
        if cai is not None:
            dtype, ndim = np.dtype(cai["typestr"]), len(cai["shape"])
        else:
            dtype, ndim = np.dtype(value.dtype), len(value.shape)
        return nbt.Array(numba.from_dtype(dtype), ndim, "A")
    return numba.typeof(value, numba.core.typing.typeof.Purpose.argument)


# ---------------------------------------------------------------------------
# the program of one accelerated function


class _Program:
    """The generated host function, kernels and typing function of one function."""

    def __init__(self, acc: Any, fdef: ast.FunctionDef, analysis: LoopAnalysis) -> None:
        from ._decorator import Accelerated
        from ._intake import prange_objects

        func = acc.py_func
        self.acc = acc
        self.func = func
        self.analysis = analysis
        resolver = Resolver(func, prange_objects())
        base = "".join(c if c.isalnum() else "_" for c in func.__qualname__)
        self.code: CudaCode = generate_cuda(fdef, analysis,
                                            lambda node: resolver.is_range(node) == "prange",
                                            base, func.__code__.co_filename, func.__qualname__)
        filename = func.__code__.co_filename
        # host: the user's own globals (a copy) and closure, plus the launcher
        ns: dict[str, Any] = dict(func.__globals__)
        ns.update(_lookup(func, self.code.loaded))
        ns["__ls_launch"] = self.launch
        ns["__ls_len0"] = _runtime.ls_len0
        ns["__ls_dim"] = _runtime.ls_dim
        ns["__ls_seqlen"] = _runtime.ls_seqlen
        ns.update(_codegen.defaults(func))
        exec(compile(self.code.host_module, filename, "exec"), ns)
        self.host = ns[self.code.host]
        # kernel: the loop's names, helpers as device functions
        self.fastmath = bool(getattr(acc, "fastmath", False))
        self.helpers = _DeviceHelpers({"fastmath": self.fastmath} if not _simulator() else {},
                                      Accelerated)
        self.kernel_names = {k: self.helpers.convert(v)
                             for k, v in _lookup(func, self.code.loaded).items()}
        self.kernels: dict[tuple[Any, ...], Any] = {}
        self.types_disp: Any = None
        if self.code.types_module is not None:
            helpers = _compile.HelperCompiler(_compile.numba_options(self.fastmath, False),
                                              Accelerated)
            loaded = {n.id for n in ast.walk(self.code.types_module)
                      if isinstance(n, ast.Name)}
            tns, _ = _compile.build_namespace(func, loaded, helpers)
            exec(compile(self.code.types_module, filename, "exec"), tns)
            import numba

            self.types_disp = numba.njit(tns[str(self.code.types)])
        self.local = threading.local()
        self.lock = threading.Lock()

    # -- typing -------------------------------------------------------------
    def reduction_dtypes(self, lo: int, step: int, n: int, reds: tuple[Any, ...],
                         state: tuple[Any, ...]) -> tuple[np.dtype, ...] | str:
        """The partials' dtypes, or a reason the reductions cannot run on the device."""
        from numba import types as nbt
        from numba.np.numpy_support import as_dtype

        sig = tuple(_nb_type(v) for v in (lo, step, n, *reds, *state))
        disp = self.types_disp
        with self.lock:
            if sig not in disp.overloads:
                try:
                    disp.compile(sig)
                except Exception as exc:
                    if _compile.is_numba_compile_error(exc):
                        raise _compile.compile_error(exc, self.func) from exc
                    raise
        rtype = disp.overloads[sig].signature.return_type
        out = []
        for (name, _), t in zip(self.code.reductions, rtype, strict=True):
            if isinstance(t, nbt.Array):
                return f"the reduction into `{name}` accumulates an array; only scalar " \
                       "reductions run on the device"
            if not isinstance(t, (nbt.Integer, nbt.Float, nbt.Complex, nbt.Boolean)):
                return f"the reduction into `{name}` has type {t}, which the device " \
                       "reduction does not support"
            out.append(as_dtype(t))
        return tuple(out)

    def kernel_function(self, tpb: int, dtypes: tuple[np.dtype, ...]) -> types.FunctionType:
        """The kernel as a Python function in its namespace (for ``cuda.jit``)."""
        import numba

        ns: dict[str, Any] = {"__builtins__": builtins, "__name__": self.func.__module__}
        ns.update(self.kernel_names)
        ns["__ls_cuda"] = _cuda()
        ns["__ls_TPB"] = tpb
        for (name, _), dt in zip(self.code.reductions, dtypes, strict=True):
            ns[f"__ls_dt_{name}"] = numba.from_dtype(dt)
        exec(compile(self.code.kernel_module, self.func.__code__.co_filename, "exec"), ns)
        return ns[self.code.kernel]  # type: ignore[no-any-return]

    def kernel(self, tpb: int, dtypes: tuple[np.dtype, ...]) -> tuple[Any, bool]:
        """The compiled kernel for a block size and reduction dtypes (and whether new)."""
        key = (tpb, tuple(str(d) for d in dtypes))
        with self.lock:
            found = self.kernels.get(key)
            if found is not None:
                return found, False
            opts = {} if _simulator() else {"fastmath": self.fastmath}
            kern = _cuda().jit(**opts)(self.kernel_function(tpb, dtypes))
            self.kernels[key] = kern
            return kern, True

    def ptx(self, lo: int, step: int, n: int, reds: tuple[Any, ...], values: tuple[Any, ...],
            dtypes: tuple[np.dtype, ...]) -> str:
        """PTX of the kernel for these values (compiled for the device, never run)."""
        import numba

        tpb, cc = self.local.dry_config
        idents = [_identity(op, r, dt) for (_, op), r, dt in zip(
            self.code.reductions, reds, dtypes, strict=True)]
        sig = [numba.int64, numba.int64, numba.int64]
        sig += [numba.from_dtype(dt)[::1] for dt in dtypes]
        sig += [numba.typeof(v) for v in idents]
        for v in values:
            if isinstance(v, np.ndarray):
                v = np.ascontiguousarray(v)  # as cuda.to_device gives it
            sig.append(_nb_type(v) if _is_device_array(v) else numba.typeof(v))
        try:
            ptx, _ = _cuda().compile_ptx(self.kernel_function(tpb, dtypes), tuple(sig), cc=cc,
                                         fastmath=self.fastmath)
        except Exception as exc:
            if _compile.is_numba_compile_error(exc):
                raise _compile.compile_error(exc, self.func) from exc
            raise
        return ptx  # type: ignore[no-any-return]

    # -- one call -------------------------------------------------------------
    def launch(self, lo: int, step: int, n: int, reds: tuple[Any, ...],
               state: tuple[Any, ...]) -> tuple[Any, ...]:
        """Run the loop on the device (called from the generated host function)."""
        cuda = _cuda()
        timings = self.local.timings
        options = self.local.options
        roles = self.analysis.arrays
        lo, step, n = int(lo), int(step), int(n)
        timings["n"] = n
        values = []
        host_arrays: list[tuple[str, np.ndarray]] = []
        for name, value in zip(self.code.state, state, strict=True):
            values.append(_prepare(name, value, self.func, roles))
            if isinstance(values[-1], np.ndarray):
                host_arrays.append((name, values[-1]))
        dtypes: tuple[np.dtype, ...] = ()
        if self.code.reductions:
            found = self.reduction_dtypes(lo, step, n, reds, tuple(values))
            if isinstance(found, str):
                raise _StayOnCpu(found)
            dtypes = found
        written = [(nm, a) for nm, a in host_arrays
                   if nm not in roles or roles[nm].written]
        for nm, a in written:  # a written array seen under another name would diverge
            for other, b in host_arrays:
                if other != nm and b is not a and _runtime.overlaps(a, b):
                    raise _StayOnCpu(f"the arrays `{nm}` and `{other}` share memory and the "
                                     "loop writes one of them")
        if getattr(self.local, "dry", None) is not None:
            self.local.dry = self.ptx(lo, step, n, reds, tuple(values), dtypes)
            raise _DryRun
        if n == 0:
            timings.update(to_device_s=0.0, kernel_s=0.0, to_host_s=0.0, bytes_to_device=0,
                           bytes_to_host=0, blocks=0, threads_per_block=0, compiled=False)
            return tuple(reds)
        tpb, blocks = _launch_config(options, n)
        timings.update(blocks=blocks, threads_per_block=tpb)
        unique = {id(a): a for _, a in host_arrays}
        need = sum(a.nbytes for a in unique.values()) + sum(
            blocks * dt.itemsize for dt in dtypes)
        check_device_memory(need)
        # to the device
        t0 = time.perf_counter()
        dev: dict[int, Any] = {}
        try:
            for key, a in unique.items():
                dev[key] = cuda.to_device(np.ascontiguousarray(a))
            parts = [cuda.device_array(blocks, dtype=dt) for dt in dtypes]
        except Exception as exc:
            dev.clear()
            if _is_oom(exc):
                _flush()
                free, total = _memory_info()
                raise DeviceMemoryError(
                    f"the CUDA call needs {need:,} bytes on the device and the allocation "
                    f"failed ({exc}); {free:,.0f} bytes of {total:,.0f} are free now.") from exc
            raise
        timings["to_device_s"] = time.perf_counter() - t0
        timings["bytes_to_device"] = sum(a.nbytes for a in unique.values())
        args = [dev[id(v)] if isinstance(v, np.ndarray) else v for v in values]
        idents = [_identity(op, r, dt) for (_, op), r, dt in zip(
            self.code.reductions, reds, dtypes, strict=True)]
        kern, new = self.kernel(tpb, dtypes)
        timings["compiled"] = new
        t0 = time.perf_counter()
        try:
            kern[blocks, tpb](lo, step, n, *parts, *idents, *args)
            cuda.synchronize()
        except CompileError:
            raise
        except Exception as exc:
            if _compile.is_numba_compile_error(exc):
                err = _compile.compile_error(exc, self.func)
                raise CompileError(f"{err} (compiling the loop as a CUDA kernel)",
                                   function=err.function, filename=err.filename,
                                   lineno=err.lineno) from exc
            broken = broken_install(exc)
            if broken is not None:
                raise CudaUnavailableError(unavailable_message(
                    broken, getattr(self.func, "__qualname__", ""))) from exc
            raise
        timings["kernel_s"] = time.perf_counter() - t0
        # back to the host: written arrays, then the partials
        t0 = time.perf_counter()
        back = 0
        done: set[int] = set()
        for _, a in written:
            if id(a) in done:
                continue
            done.add(id(a))
            if a.flags.c_contiguous:
                dev[id(a)].copy_to_host(a)
            else:
                a[...] = dev[id(a)].copy_to_host()
            back += a.nbytes
        host_parts = [p.copy_to_host() for p in parts]
        timings["to_host_s"] = time.perf_counter() - t0
        timings["bytes_to_host"] = back
        out = []
        for (_, op), s0, hp in zip(self.code.reductions, reds, host_parts, strict=True):
            out.append(_combine(op, s0, hp))
        return tuple(out)


class _StayOnCpu(Exception):
    """Internal: found while launching that the loop must run on the CPU."""


class _DryRun(Exception):
    """Internal: the host function stops at the launch (PTX compilation only)."""


def _flush() -> None:
    try:
        _cuda().current_context().deallocations.clear()
    except Exception:
        pass


def _identity(op: str, s0: Any, dtype: np.dtype) -> Any:
    if op == "+":
        return dtype.type(0)
    if op == "*":
        return dtype.type(1)
    return dtype.type(s0)


def _combine(op: str, s0: Any, parts: np.ndarray) -> Any:
    """``s0`` combined with each partial in block order (a fixed order)."""
    acc = s0
    for p in parts:
        if op == "+":
            acc = acc + p
        elif op == "*":
            acc = acc * p
        elif op == "min":
            acc = min(acc, p)
        else:
            acc = max(acc, p)
    return acc.item() if isinstance(acc, np.generic) else acc


def _prepare(name: str, value: Any, func: types.FunctionType,
             roles: Mapping[str, Any]) -> Any:
    """A state value as the kernel takes it, or a TypeError naming it."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind in "OUSV":
            raise ArgumentError(
                f"{_what(name, func)} is an array of dtype {value.dtype}, which cannot be moved "
                "to the CUDA device: pass a numeric array.")
        return value
    if _is_device_array(value):
        return value
    if isinstance(value, (bool, int, float, complex, np.generic)):
        return value
    if isinstance(value, tuple) and all(isinstance(v, (bool, int, float, complex, np.generic))
                                        for v in value):
        return value
    mod = type(value).__module__
    if mod == "pandas" or mod.startswith("pandas."):
        if name in roles and roles[name].written:
            raise ArgumentError(
                f"{_what(name, func)} is a pandas {type(value).__name__} that the loop writes; "
                "pass a NumPy array and build the pandas object from it afterwards.")
        return value.to_numpy()
    if isinstance(value, list):
        if name in roles and roles[name].written:
            raise ArgumentError(
                f"{_what(name, func)} is a list, but the loop writes to it: pass a NumPy array "
                f"(np.asarray({name})) and read the result from it.")
        try:
            arr = np.asarray(value)
        except Exception:
            arr = None
        if arr is not None and arr.dtype.kind in "biufc":
            return arr
    raise ArgumentError(
        f"{_what(name, func)} is a {type(value).__module__}.{type(value).__qualname__} object, "
        "which cannot be moved to the CUDA device: pass NumPy or CuPy arrays, numbers or "
        "tuples of numbers.")


def _what(name: str, func: types.FunctionType) -> str:
    params = func.__code__.co_varnames[:func.__code__.co_argcount
                                       + func.__code__.co_kwonlyargcount]
    kind = "argument" if name in params else "variable"
    return f"{kind} {name!r} of {func.__qualname__}()"


def _launch_config(options: Mapping[str, Any], n: int) -> tuple[int, int]:
    """(threads_per_block, blocks) for *n* iterations."""
    from ..errors import LevelError

    unknown = set(options) - set(CUDA_OPTIONS)
    if unknown:
        raise LevelError(f"unknown option(s) {sorted(unknown)!r} for the 'cuda' level; valid "
                         f"options: {', '.join(CUDA_OPTIONS)}.")
    sim = _simulator()
    tpb = options.get("threads_per_block")
    if tpb is None:
        tpb = 32 if sim else 256
    if (not isinstance(tpb, int) or isinstance(tpb, bool) or tpb < 32 or tpb > 1024
            or tpb & (tpb - 1)):
        raise LevelError(f"threads_per_block must be a power of two from 32 to 1024; got "
                         f"{tpb!r}.")
    blocks = options.get("blocks_per_grid")
    if blocks is None:
        if sim:
            blocks = 2
        else:
            dev = _cuda().get_current_device()
            blocks = 8 * int(getattr(dev, "MULTIPROCESSOR_COUNT", 16))
        blocks = max(1, min(blocks, math.ceil(n / tpb)))
    elif not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1:
        raise LevelError(f"blocks_per_grid must be a positive integer; got {blocks!r}.")
    return tpb, blocks


# ---------------------------------------------------------------------------
# entry points


def _program(acc: Any, fdef: ast.FunctionDef, analysis: LoopAnalysis) -> _Program:
    prog = acc.__dict__.get("_cuda_program")
    if prog is None:
        prog = _Program(acc, fdef, analysis)
        acc.__dict__["_cuda_program"] = prog
    return prog


def run_cuda(acc: Any, fdef: ast.FunctionDef | None, analysis: LoopAnalysis,
             args: tuple[Any, ...], kwargs: dict[str, Any],
             options: Mapping[str, Any] | None = None) -> Any:
    """Run accelerated function *acc* with its loop as a CUDA kernel.

    Parameters
    ----------
    acc : Accelerated
        The decorated function (``.py_func``, ``.fastmath``); the timings of
        the call are stored on it as ``last_cuda_timings``.
    fdef : ast.FunctionDef
        Its parsed ``def`` with absolute line numbers (``acc._tree``).
    analysis : LoopAnalysis
    args, kwargs
        The call's arguments.
    options : mapping
        Options of the ``cuda`` level (see :data:`CUDA_OPTIONS`).

    Returns
    -------
    The function's result, or a :class:`RunOnCpu` marker when the loop must
    run on the CPU.
    """
    if not analysis.parallel or analysis.loop_index is None or fdef is None:
        marker = RunOnCpu(f"the loop runs on the CPU: {analysis.reason or 'not parallel'}")
        acc.__dict__["last_cuda_timings"] = {"on_cpu": marker.reason}
        return marker
    why_cpu = _cpu_only(analysis) or _array_arithmetic(fdef, analysis)
    if why_cpu is not None:
        marker = RunOnCpu(f"the loop runs on the CPU: {why_cpu}")
        acc.__dict__["last_cuda_timings"] = {"on_cpu": marker.reason}
        return marker
    if analysis.ndim_limits:
        # `c = a[i]; c += x`: a number for the dimensions the code shows, a row
        # updated in place (a loop-carried dependence) for more
        try:
            bound = acc.__signature__.bind(*args, **kwargs).arguments
        except TypeError:
            bound = {}
        why = (analysis.beyond_ndim(bound) if set(analysis.ndim_limits) <= set(bound) else
               "the loop views an array made before it (`c = a[i]; c += x`), whose "
               "dimensions decide whether the iterations are independent")
        if why is not None:
            marker = RunOnCpu(f"the loop runs on the CPU: {why}")
            acc.__dict__["last_cuda_timings"] = {"on_cpu": marker.reason}
            return marker
    prog = _program(acc, fdef, analysis)
    timings: dict[str, Any] = {"device": "simulator" if _simulator() else "gpu"}
    prog.local.timings = timings
    prog.local.options = dict(options or {})
    t0 = time.perf_counter()
    try:
        result = prog.host(*args, **kwargs)
    except _StayOnCpu as exc:
        marker = RunOnCpu(f"the loop runs on the CPU: {exc}")
        acc.__dict__["last_cuda_timings"] = {"on_cpu": marker.reason}
        return marker
    except ValueError as exc:
        if str(exc).startswith(_ARG_MARK):
            raise ArgumentValueError(str(exc)[len(_ARG_MARK):].strip()) from None
        raise
    timings["total_s"] = time.perf_counter() - t0
    acc.__dict__["last_cuda_timings"] = timings
    return result


def compile_ptx(acc: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None,
                threads_per_block: int = 256, cc: tuple[int, int] = (8, 0)) -> str | RunOnCpu:
    """The PTX that a call of *acc* with *args* would launch, compiled for
    compute capability *cc* without a GPU (needs NVVM, from
    ``pip install 'numba-cuda[cu12]'``) and without running anything but the
    prologue.  A :class:`RunOnCpu` when the loop would stay on the CPU."""
    analysis = acc.analysis
    if not analysis.parallel or analysis.loop_index is None:
        return RunOnCpu(f"the loop runs on the CPU: {analysis.reason or 'not parallel'}")
    why_cpu = _cpu_only(analysis) or _array_arithmetic(acc.__dict__.get("_tree"), analysis)
    if why_cpu is not None:
        return RunOnCpu(f"the loop runs on the CPU: {why_cpu}")
    prog = _program(acc, acc.__dict__.get("_tree"), analysis)
    prog.local.timings = {}
    prog.local.options = {}
    prog.local.dry = ""
    prog.local.dry_config = (threads_per_block, cc)
    try:
        prog.host(*args, **(kwargs or {}))
    except _DryRun:
        return prog.local.dry  # type: ignore[no-any-return]
    except _StayOnCpu as exc:
        return RunOnCpu(f"the loop runs on the CPU: {exc}")
    finally:
        prog.local.dry = None
    raise RuntimeError("the host function did not reach the loop")


def call_cuda(acc: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: Mapping[str, Any] | None = None) -> Any:
    """The CUDA call of *acc*: check availability, then :func:`run_cuda`.

    Raises :class:`~loopscale.errors.CudaUnavailableError` when no GPU can be
    used, unless ``acc.fallback`` is set: then warns once
    (:class:`~loopscale.errors.FallbackWarning`) and returns
    :data:`RUN_ON_CPU`, as it returns a :class:`RunOnCpu` for loops that stay
    on the CPU.
    """
    ok, reason = cuda_status()
    if not ok:
        message = unavailable_message(reason, acc.py_func.__qualname__)
        if not getattr(acc, "fallback", False):
            raise CudaUnavailableError(message)
        if not acc.__dict__.get("_cuda_warned"):
            acc.__dict__["_cuda_warned"] = True
            warnings.warn(f"{message}\n  Running on the CPU instead (fallback=True).",
                          errors.FallbackWarning, stacklevel=4)
        acc.__dict__["last_cuda_timings"] = {"on_cpu": RUN_ON_CPU.reason}
        return RUN_ON_CPU
    select_rank_device()
    analysis = acc.analysis  # parses the function (and sets acc._tree) on first use
    return run_cuda(acc, acc.__dict__.get("_tree"), analysis, args, kwargs, options)


def format_timings(timings: Mapping[str, Any] | None) -> str | None:
    """One line for ``explain()`` about the last CUDA call, or None."""
    if not timings:
        return None
    if "on_cpu" in timings:
        return f"  cuda: {timings['on_cpu']}"
    if timings.get("n") == 0:
        return "  last cuda run: 0 iterations, no kernel launched"
    if "kernel_s" not in timings:
        return None
    comp = " (including compilation)" if timings.get("compiled") else ""
    return (f"  last cuda run ({timings.get('device')}): {timings['n']} iterations on "
            f"{timings['blocks']} blocks x {timings['threads_per_block']} threads; to device "
            f"{timings['to_device_s'] * 1e3:.3f} ms ({timings['bytes_to_device']:,} B), kernel "
            f"{timings['kernel_s'] * 1e3:.3f} ms{comp}, to host {timings['to_host_s'] * 1e3:.3f}"
            f" ms ({timings['bytes_to_host']:,} B)")
