"""``python -m loopscale.distribute script.py [args]`` (or ``-m module [args]``): run a
script with abort on failure.

What ``loopscale run`` starts on every rank (like ``python -m mpi4py``): the
script runs as ``__main__``; an unhandled exception on any rank prints that
rank's traceback once and aborts the job; ``sys.exit(n)`` or ``raise
SystemExit(n)`` with ``n != 0`` aborts it with status ``n``.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args == ["-m"]:
        sys.stderr.write("usage: python -m loopscale.distribute script.py [args...]\n"
                         "       python -m loopscale.distribute -m module [args...]\n")
        raise SystemExit(2 if not args or args == ["-m"] else 0)
    from . import _mpi

    _mpi.install_abort_handler()
    module = args[1] if args[0] == "-m" else None
    if module is not None:  # as `python -m module`: the current directory first
        args = args[1:]
        sys.path[0] = os.getcwd()
        import importlib.util

        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        script = (spec.origin if spec is not None and spec.origin else module)
    else:
        script = args[0]
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    sys.argv[:] = args
    try:
        if module is not None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        _mpi.set_exit_status(exc.code)
        raise
    except BaseException as exc:
        if not _mpi.launched():
            raise
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != os.path.realpath(script) \
                and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        sys.excepthook(type(exc), exc, tb or exc.__traceback__)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
