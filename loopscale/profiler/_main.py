"""``loopscale profile script.py [args]``: run a script as ``__main__`` under the profiler.

The script runs as ``python script.py`` would run it: ``sys.argv`` is
``[script, *args]`` (the script as given), ``sys.path[0]`` its directory
(symbolic links resolved), its module is ``__main__``.  A directory or zip
file holding a ``__main__.py`` runs as ``python app/`` runs it: that module,
with the directory or zip file first on ``sys.path``.  What Python prints
and returns for a missing script, a syntax error, an uncaught exception,
``sys.exit(n)`` or Ctrl-C (status 130) is printed and returned here too;
the report is written in every case, marked partial when the script did not
finish normally.  Under an MPI launcher with more than one rank, every output
file name carries ``.rank<N>`` and the table goes to
``loopscale-profile.rank<N>.txt``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import types
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._report import build_report
from ._sampler import DEFAULT_INTERVAL, MODES, TIMERS, Sampler
from ._verdict import CHECKS

__all__ = ["main", "build_parser", "rank_path", "find_target", "run_script", "Target"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopscale profile",
        description="Run a Python script, find the loops that take its time, and check "
                    "which of their functions @accelerate compiles.")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"seconds between samples (default {DEFAULT_INTERVAL})")
    parser.add_argument("--timer", choices=TIMERS, default="wall",
                        help="wall-clock (default) or process CPU time")
    parser.add_argument("--mode", choices=MODES, default="auto",
                        help="timer signals (default on the main thread) or a sampling thread")
    parser.add_argument("--check", choices=CHECKS, default="compile",
                        help="verdicts: none, compile (default) or trial")
    parser.add_argument("--trial", action="store_const", const="trial", dest="check",
                        help="also run the compiled functions on the captured arguments, "
                             "check the results and measure the speedup")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds each compile/trial check may take (default 60)")
    parser.add_argument("--top", type=int, default=5, help="hot loops to check (default 5)")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    parser.add_argument("--diff", action="store_true",
                        help="print the patch adding @accelerate to accelerable hot functions")
    parser.add_argument("script", help="the Python script to run (or a directory or zip "
                                       "file with a __main__.py, as python runs them)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the script")
    return parser


def rank_path(path: str, rank: int | None) -> str:
    """*path* with ``.rank<N>`` before its extension when *rank* is not None."""
    if rank is None:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}.rank{rank}{ext}"


def _mpi_rank() -> int | None:
    from .. import config

    return config.launcher_rank() if config.launcher_world_size() > 1 else None


def _print_exception(exc: BaseException) -> None:
    """Print *exc* as Python does, without the profiler's own frames."""
    tb = exc.__traceback__
    if tb is not None:
        tb = tb.tb_next  # our exec() frame
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code
    print(code, file=sys.stderr)
    return 1


@dataclass(frozen=True)
class Target:
    """What ``python ARG`` would run: a script, or the ``__main__`` module of a
    directory or zip file.

    ``argv0`` is *ARG* as given; ``path`` the file to report (absolute);
    ``path0`` what goes first on ``sys.path``: the script's directory
    (symbolic links resolved, as Python does) or the directory / zip file.
    """

    argv0: str
    path: str
    path0: str
    code: types.CodeType
    spec: Any = None


class NoMainError(Exception):
    """*ARG* is a directory or zip file without a ``__main__`` module."""


def find_target(arg: str) -> Target:
    """The :class:`Target` for ``python ARG``.

    Raises
    ------
    OSError
        When *ARG* cannot be read (as ``python`` reports it).
    NoMainError
        When *ARG* is a directory or zip file without ``__main__.py``.
    SyntaxError
        When the code does not compile.
    """
    path = os.path.abspath(arg)
    importer = None
    if os.path.isdir(path) or (os.path.isfile(path) and zipfile.is_zipfile(path)):
        import pkgutil

        importer = pkgutil.get_importer(path)
    if importer is not None:  # python runs its __main__ module, with it on sys.path
        spec = importer.find_spec("__main__")  # type: ignore[union-attr]
        loader = getattr(spec, "loader", None)
        code = loader.get_code("__main__") if loader is not None else None
        if spec is None or code is None:
            raise NoMainError(f"can't find '__main__' module in {path!r}")
        return Target(arg, spec.origin or path, path, code, spec)
    with open(path, "rb") as fh:
        source = fh.read()
    code = compile(source, path, "exec", dont_inherit=True)
    return Target(arg, path, os.path.dirname(os.path.realpath(path)), code)


def run_script(target: Target, args: Sequence[str], sampler: Sampler
               ) -> tuple[int, bool, object]:
    """Run *target* as ``__main__`` under *sampler*; return (status, partial, session)."""
    module = types.ModuleType("__main__")
    module.__file__ = target.path
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    if target.spec is not None:
        module.__spec__ = target.spec
        module.__loader__ = target.spec.loader
        module.__package__ = ""
    saved = sys.argv, sys.path[0] if sys.path else None, sys.modules.get("__main__")
    sys.argv = [target.argv0, *args]
    if sys.path:
        sys.path[0] = target.path0
    else:
        sys.path.insert(0, target.path0)
    sys.modules["__main__"] = module
    status, partial = 0, False
    sampler.start()
    try:
        exec(target.code, module.__dict__)  # noqa: S102 - running the user's script is the point
    except SystemExit as exc:
        status = _exit_status(exc)
    except KeyboardInterrupt as exc:
        status, partial = 130, True
        _print_exception(exc)
    except BaseException as exc:  # noqa: BLE001 - reported as Python reports it
        status, partial = 1, True
        _print_exception(exc)
    finally:
        session = sampler.stop(partial=partial, exit_status=status,
                               argv=(target.path, *args), rank=_mpi_rank())
        sys.argv = saved[0]
        if saved[1] is not None:
            sys.path[0] = saved[1]
        if saved[2] is not None:
            sys.modules["__main__"] = saved[2]
    return status, partial, session


def main(argv: Sequence[str] | None = None) -> int:
    """``loopscale profile``: run a script under the profiler and report; return its status."""
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
        sampler = Sampler(opts.interval, timer=opts.timer, mode=opts.mode)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    except ValueError as exc:
        print(f"loopscale profile: {exc}", file=sys.stderr)
        return 2
    start_dir = os.getcwd()  # output paths are the user's, even if the script chdirs
    try:
        target = find_target(opts.script)
    except NoMainError as exc:
        print(f"{sys.executable}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{sys.executable}: can't open file {os.path.abspath(opts.script)!r}: "
              f"[Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
        return 2
    except SyntaxError as exc:
        traceback.print_exception(type(exc), exc, None, file=sys.stderr)
        return 1
    status, _partial, session = run_script(target, opts.args, sampler)
    report = build_report(session, check=opts.check, top=opts.top,  # type: ignore[arg-type]
                          timeout=opts.timeout, sys_path=[target.path0])
    rank = report.session.rank
    text = report.to_text()
    if rank is not None:
        name = os.path.join(start_dir, rank_path("loopscale-profile.txt", rank))
        with open(name, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"loopscale profile: rank {rank} report in {name}", file=sys.stderr)
    else:
        sys.stderr.write(text)
    for option, render in ((opts.json, report.as_dict), (opts.html, report.to_html)):
        if option:
            out_path = os.path.join(start_dir, rank_path(option, rank))
            with open(out_path, "w", encoding="utf-8") as fh:
                if render == report.as_dict:
                    import json

                    json.dump(report.as_dict(), fh, indent=2)
                    fh.write("\n")
                else:
                    fh.write(report.to_html())
    if opts.diff:
        sys.stdout.write(report.to_diff())
    return status
