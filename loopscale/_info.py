"""``loopscale info``: what this machine and installation offer each level.

The report answers the questions a bug report needs answered first: which
versions of loopscale and its compilers are installed, which MPI library
mpi4py would load, how many cores this process may use, which Numba
threading layers are importable, whether a CUDA device is visible, and where
compiled code is cached.

Gathering it must not change the process that asks.  In particular it never
initialises MPI or CUDA here: the MPI library version, the threading layers
and the CUDA devices are each found by a short child Python process (the
three run concurrently, each with a timeout), so a broken driver, a hanging
MPI runtime or a missing shared library shows up as ``not available: <reason>``
instead of a crash or a hang.  Only the standard library, Numba's
``numba.config`` and :mod:`loopscale.config` are used in-process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from . import config

__all__ = ["PROBE_TIMEOUT", "collect_info", "format_info", "run_probes"]

#: Seconds each child probe may take before it is killed and reported as such.
PROBE_TIMEOUT = 30.0

#: The packages whose versions the report lists (distribution names).
PACKAGES = ("numpy", "numba", "llvmlite", "mpi4py")

# Each probe prints one JSON object as the last line of its standard output.

_MPI_PROBE = """
import json
import mpi4py
mpi4py.rc.initialize = False  # MPI_Get_library_version may be called before MPI_Init
mpi4py.rc.finalize = False
from mpi4py import MPI
vendor, version = MPI.get_vendor()
print(json.dumps({
    "vendor": vendor,
    "vendor_version": ".".join(str(v) for v in version),
    "standard": "%d.%d" % MPI.Get_version(),
    "library_version": MPI.Get_library_version(),
}))
"""

_THREADING_PROBE = """
import importlib, json
layers = {}
for layer, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
    try:
        mod = importlib.import_module("numba.np.ufunc." + module)
        if layer == "tbb":
            from numba.np.ufunc.parallel import _check_tbb_version_compatible
            _check_tbb_version_compatible()
        layers[layer] = {"importable": True, "detail": getattr(mod, "openmp_vendor", None)}
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        layers[layer] = {"importable": False, "detail": text}
print(json.dumps(layers))
"""

_CUDA_PROBE = """
import json
result = {"available": False, "devices": [], "reason": None, "simulator": False}
try:
    from numba import config
    result["simulator"] = bool(getattr(config, "ENABLE_CUDASIM", False))
    from numba import cuda
    if cuda.is_available():
        for index, dev in enumerate(cuda.list_devices()):
            name = getattr(dev, "name", None) or "simulated device"
            name = name.decode() if isinstance(name, bytes) else str(name)
            cc = getattr(dev, "compute_capability", None)
            result["devices"].append({
                "id": getattr(dev, "id", index),
                "name": name,
                "compute_capability": ".".join(str(c) for c in cc) if cc else None,
            })
        result["available"] = bool(result["devices"])
        if not result["devices"]:
            result["reason"] = "the CUDA driver reports no devices"
    else:
        try:
            cuda.list_devices()[0]
            result["reason"] = "numba.cuda.is_available() is False"
        except Exception as exc:
            result["reason"] = str(exc) or type(exc).__name__
except Exception as exc:
    result["reason"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(result))
"""


@dataclass(frozen=True)
class ProbeResult:
    """What a child probe printed, or why it printed nothing usable."""

    value: Any = None
    error: str | None = None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def run_probes(codes: Mapping[str, str], timeout: float = PROBE_TIMEOUT) -> dict[str, ProbeResult]:
    """Run each snippet of *codes* in its own child Python process, concurrently.

    Each snippet must print a JSON value as the last line of its standard
    output.  A snippet that fails, prints no JSON or runs past *timeout*
    seconds (it is then killed) gives a :class:`ProbeResult` whose ``error``
    says why.
    """
    started: dict[str, subprocess.Popen[str]] = {}
    results: dict[str, ProbeResult] = {}
    for name, code in codes.items():
        try:
            started[name] = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as exc:
            results[name] = ProbeResult(error=f"could not start {sys.executable}: {exc}")
    deadline = time.monotonic() + timeout
    for name, proc in started.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            results[name] = ProbeResult(error=f"the probe did not finish within {timeout:g} s")
            continue
        if proc.returncode != 0:
            results[name] = ProbeResult(error=_one_line(_last_error_line(stderr)))
            continue
        lines = [line for line in stdout.splitlines() if line.strip()]
        try:
            results[name] = ProbeResult(value=json.loads(lines[-1]))
        except (IndexError, ValueError):
            results[name] = ProbeResult(error="the probe printed no result")
    return {name: results[name] for name in codes}


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mpiexec() -> str | None:
    """The ``mpiexec`` next to this Python (as pip's ``mpich`` installs it), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("mpiexec")


def _mpi_section(probe: ProbeResult) -> dict[str, Any]:
    section: dict[str, Any] = {
        "library": None,
        "standard": None,
        "library_version": None,
        "mpiexec": _mpiexec(),
        "error": probe.error,
    }
    if probe.value is not None:
        value = probe.value
        section["library"] = f"{value['vendor']} {value['vendor_version']}"
        section["standard"] = value["standard"]
        section["library_version"] = value["library_version"].strip()
    return section


def _threading_section(probe: ProbeResult) -> dict[str, Any]:
    import numba  # already imported by loopscale.accel; reading its config starts no threads

    layers: dict[str, Any] = probe.value if probe.value is not None else {}
    return {
        "layer": str(getattr(numba.config, "THREADING_LAYER", "default")),
        "priority": list(getattr(numba.config, "THREADING_LAYER_PRIORITY", [])),
        "num_threads": int(getattr(numba.config, "NUMBA_NUM_THREADS", 0)),
        "importable": [name for name, v in layers.items() if v["importable"]],
        "not_importable": {name: v["detail"] for name, v in layers.items() if not v["importable"]},
        "error": probe.error,
    }


def _cuda_reason(raw: str) -> str:
    text = " ".join(raw.split())
    text = text.removeprefix("CudaSupportError: ").removeprefix("Error at driver init: ")
    # Numba repeats the driver's message after " : "; keep one copy.
    head, sep, _ = text.partition(" : ")
    return _one_line((head if sep else text).rstrip(" :"))


def _cuda_section(probe: ProbeResult) -> dict[str, Any]:
    if probe.value is None:
        return {
            "available": False,
            "devices": [],
            "simulator": False,
            "reason": probe.error or "unknown",
        }
    value = dict(probe.value)
    if value.get("reason"):
        value["reason"] = _cuda_reason(value["reason"])
    return value


def _level_section() -> dict[str, Any]:
    section: dict[str, Any] = {"installed": list(config.installed_levels())}
    try:
        setting = config.current_level()
    except Exception as exc:  # an invalid LOOPSCALE_LEVEL is worth reporting, not crashing on
        section.update(current=None, source=None, error=_one_line(str(exc)))
    else:
        section.update(current=setting.name, source=setting.source, error=None)
    return section


def collect_info(timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Gather the ``loopscale info`` report as a JSON-serialisable dict.

    MPI and CUDA are probed in child processes, so calling this never imports
    ``mpi4py.MPI`` or ``numba.cuda`` into the calling process.

    Parameters
    ----------
    timeout : float
        Seconds the child probes may take, together.

    Examples
    --------
    >>> from loopscale._info import collect_info
    >>> info = collect_info()
    >>> info["cores"]["usable"] >= 1
    True
    """
    from . import __version__

    probes = run_probes(
        {"mpi": _MPI_PROBE, "threading": _THREADING_PROBE, "cuda": _CUDA_PROBE}, timeout
    )
    cache = config.cache_dir()
    return {
        "loopscale": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "mpi": _mpi_section(probes["mpi"]),
        "cores": {"usable": config.usable_cores(), "cpu_count": os.cpu_count()},
        "threading": _threading_section(probes["threading"]),
        "cuda": _cuda_section(probes["cuda"]),
        "vector_math": _vector_math_section(),
        "cache_dir": {"path": cache, "exists": os.path.isdir(cache)},
        "level": _level_section(),
    }


def _vector_math_section() -> dict[str, Any]:
    """Whether compiled loops call glibc's vector math library here."""
    try:
        from .accel import _lowering

        used, text = _lowering.status()
    except Exception as exc:  # noqa: BLE001 - a report, never a failure
        used, text = False, f"unknown: {type(exc).__name__}: {exc}"
    return {"used": used, "description": text}


def _not_available(reason: str | None) -> str:
    return f"not available: {reason or 'unknown reason'}"


def _format_mpi(mpi: Mapping[str, Any]) -> str:
    if mpi["error"]:
        return _not_available(mpi["error"])
    return f"{mpi['library']} (MPI standard {mpi['standard']})"


def _format_threading(threading: Mapping[str, Any]) -> str:
    text = f"{threading['layer']} (NUMBA_NUM_THREADS={threading['num_threads']}); "
    if threading["error"]:
        return text + f"importable layers unknown: {threading['error']}"
    text += "importable: " + (", ".join(threading["importable"]) or "none")
    missing = threading["not_importable"]
    if missing:
        text += "; not importable: " + ", ".join(
            f"{name} ({_one_line(reason, 80)})" for name, reason in missing.items()
        )
    return text


def _format_cuda(cuda: Mapping[str, Any]) -> str:
    if not cuda["available"]:
        return _not_available(cuda["reason"])
    devices = "; ".join(
        f"{d['id']}: {d['name']}"
        + (f" (compute capability {d['compute_capability']})" if d["compute_capability"] else "")
        for d in cuda["devices"]
    )
    simulator = " [CUDA simulator]" if cuda.get("simulator") else ""
    return f"{len(cuda['devices'])} device(s): {devices}{simulator}"


def _format_level(level: Mapping[str, Any]) -> str:
    installed = ", ".join(level["installed"])
    if level["error"]:
        return f"invalid: {level['error']}"
    return f"{level['current']} (from {level['source']}); installed levels: {installed}"


def format_info(info: Mapping[str, Any]) -> str:
    """Render :func:`collect_info`'s dict as aligned ``label  value`` lines."""
    python = info["python"]
    cores = info["cores"]
    cache = info["cache_dir"]
    rows = [
        ("loopscale", info["loopscale"]),
        ("python", f"{python['version']} ({python['implementation']}) {python['executable']}"),
        ("platform", info["platform"]),
    ]
    rows += [(name, version) for name, version in info["packages"].items()]
    rows += [
        ("MPI library", _format_mpi(info["mpi"])),
        ("mpiexec", info["mpi"]["mpiexec"] or "not found next to Python or on PATH"),
        (
            "cores",
            f"{cores['usable']} usable by this process "
            f"(affinity and cgroup quota); os.cpu_count() = {cores['cpu_count']}",
        ),
        ("threading layer", _format_threading(info["threading"])),
        ("CUDA", _format_cuda(info["cuda"])),
        ("vector math", info["vector_math"]["description"]),
        ("cache directory", cache["path"] + ("" if cache["exists"] else " (not created yet)")),
        ("level", _format_level(info["level"])),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def main(as_json: bool = False) -> int:
    """Print the report (as JSON when *as_json*); the ``loopscale info`` command."""
    info = collect_info()
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))
    return 0
