"""The ``loopscale`` command: ``info``, ``demo``, ``profile`` and ``run``.

Thin by design: this module parses arguments and hands each verb to the
module that implements it, imported only when that verb is used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Verbs that are designed but not written yet, and the issue that tracks each.
PLANNED: dict[str, tuple[int, str]] = {}

#: Verbs whose arguments go, untouched, to the module that implements them
#: (they take a script and the script's own arguments).
PASSTHROUGH = {
    "profile": ("loopscale.profiler", "find the slow Python loops of a script and say which "
                "compile"),
}

#: Exit status of a verb that is not implemented yet (as for a usage error).
EXIT_PLANNED = 2


def _info(args: argparse.Namespace) -> int:
    from . import _info

    return _info.main(as_json=args.json)


def _demo(args: argparse.Namespace) -> int:
    from . import _demo

    return _demo.run_demo("quick" if args.quick else args.size)


def _run(args: argparse.Namespace) -> int:
    from .distribute import run_script

    try:
        if args.module is not None:  # (-m takes the rest of the line: its module's arguments)
            if not args.module:
                raise ValueError("-m needs a module name (as python -m).")
            return int(run_script(args.nprocs, None, args.module[1:], launcher=args.launcher,
                                  module=args.module[0]))
        if args.script is None:
            raise ValueError("give a script to run (loopscale run -n P script.py [args]), "
                             "or a module (loopscale run -n P -m package.module [args]).")
        return int(run_script(args.nprocs, args.script, args.args, launcher=args.launcher))
    except (FileNotFoundError, ValueError) as exc:
        print(f"loopscale run: {exc}", file=sys.stderr)
        return 2


def _planned(args: argparse.Namespace) -> int:
    issue, _ = PLANNED[args.command]
    print(
        f"loopscale {args.command}: not implemented yet (planned; see issue #{issue}).\n"
        "Meanwhile, decorate a function with @loopscale.accelerate and run your "
        "script with python (LOOPSCALE_LEVEL chooses the level). "
        "'loopscale demo' shows it; 'loopscale info' describes this machine.",
        file=sys.stderr,
    )
    return EXIT_PLANNED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``loopscale`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="loopscale",
        description="Take numeric Python loops from one core to many cores to many nodes.",
    )
    parser.add_argument("--version", action="version", version=f"loopscale {__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="command")

    info = verbs.add_parser(
        "info",
        help="versions, cores, threading layers, MPI, CUDA and cache directory",
        description="Describe this installation and machine: versions, cores, Numba "
        "threading layers, the MPI library, CUDA devices and the cache directory. "
        "MPI and CUDA are probed in child processes.",
    )
    info.add_argument("--json", action="store_true", help="print the report as a JSON object")
    info.set_defaults(handler=_info)

    demo = verbs.add_parser(
        "demo",
        help="time a plain-Python loop, then the same function accelerated",
        description="Time a plain-Python Mandelbrot kernel, then the same function "
        "decorated with @loopscale.accelerate at each available level, check the "
        "results agree, and print what the compiler found.",
    )
    sizes = demo.add_mutually_exclusive_group()
    sizes.add_argument(
        "--size",
        choices=("small", "medium"),
        default="small",
        help="problem size (default: small, about 1-3 s as plain Python)",
    )
    sizes.add_argument("--quick", action="store_true", help="a tiny problem, for smoke tests")
    demo.set_defaults(handler=_demo)

    run = verbs.add_parser(
        "run",
        help="run a script on P MPI ranks; a failure on one rank stops them all",
        description="Launch 'python SCRIPT ARGS' (or 'python -m MODULE ARGS') on NPROCS "
        "MPI ranks with the installed "
        "mpiexec (or --launcher), so that an unhandled exception on any rank stops every "
        "rank with that rank's traceback, and pass the exit status through.",
    )
    run.add_argument("-n", "--nprocs", type=int, required=True, help="number of MPI ranks")
    run.add_argument("--launcher", default=None,
                     help="the launcher command (default: mpiexec next to Python, or on PATH)")
    run.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE ...",
                     help="run a module as 'python -m MODULE ARGS' does, instead of a script")
    run.add_argument("script", nargs="?", help="the Python script to run")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    run.set_defaults(handler=_run)

    for verb, (_module, summary) in PASSTHROUGH.items():
        sub = verbs.add_parser(verb, help=summary, add_help=False,
                               description=f"{summary}. 'loopscale {verb} --help' for options.")
        sub.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    for verb, (issue, summary) in PLANNED.items():
        planned = verbs.add_parser(
            verb,
            help=f"{summary} (planned, issue #{issue})",
            description=f"{summary}. Planned, not implemented yet (issue #{issue}).",
        )
        planned.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        planned.set_defaults(handler=_planned)
    return parser


#: ``loopscale run``'s options that take a value in the next argument.
_RUN_VALUED = ("-n", "--nprocs", "--launcher")


def _run_split(rest: Sequence[str]) -> int | None:
    """Where the script's (or ``-m`` module's) own arguments begin in *rest*, the
    arguments after ``run``; None when there is no script.

    Everything after the script goes to it as it is, as ``python script.py``
    passes it (a ``--`` included: argparse would drop the first one)."""
    k = 0
    while k < len(rest):
        token = rest[k]
        if token == "--":  # the end of run's options: the script is next
            return k + 2 if k + 1 < len(rest) else None
        if token == "-m":
            return k + 2 if k + 1 < len(rest) else None
        if token in _RUN_VALUED:
            k += 2
        elif token.startswith("-") and token != "-":
            k += 1
        else:
            return k + 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``loopscale`` command with *argv* (default ``sys.argv[1:]``); return its status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        module = importlib.import_module(PASSTHROUGH[argv[0]][0])
        return int(module.main(argv[1:]))
    verbatim: list[str] | None = None
    if argv and argv[0] == "run":
        split = _run_split(argv[1:])
        if split is not None:
            argv, verbatim = argv[:1 + split], argv[1 + split:]
    parser = build_parser()
    try:
        # Planned verbs accept anything (``loopscale run -n 4 script.py``) and only
        # say they are planned; the other verbs reject what they do not know.
        args, unknown = parser.parse_known_args(argv)
        if unknown and args.command not in PLANNED:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if verbatim is not None:
        if args.module is not None:
            args.module = [*args.module, *verbatim]
        else:
            args.args = verbatim
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
