"""``loopscale.profiler.profile()``: profile a block or a function from Python."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ._report import Report, build_report
from ._sampler import DEFAULT_INTERVAL, Sampler
from ._session import Session

__all__ = ["Profile", "profile"]

F = TypeVar("F", bound=Callable[..., Any])


class Profile:
    """A profiling run: a context manager, and a decorator for functions.

    The report is built (and hot functions checked) on first access to
    :attr:`report`.  See :func:`profile` for the parameters.
    """

    def __init__(self, *, interval: float = DEFAULT_INTERVAL, timer: str = "wall",
                 mode: str = "auto", check: str = "compile", timeout: float = 60.0,
                 clock: Callable[[], float] | None = None) -> None:
        self._options = {"interval": interval, "timer": timer, "mode": mode, "clock": clock}
        Sampler(**self._options)  # validate now, not at the first with-block
        self.check = check
        self.timeout = timeout
        self.session: Session | None = None
        self._sampler: Sampler | None = None
        self._report: Report | None = None
        self._depth = 0  # nested entries: a recursive decorated function, nested blocks

    def __enter__(self) -> Profile:
        self._depth += 1
        if self._depth > 1:
            return self  # already sampling: the outermost block owns the run
        try:
            self._sampler = Sampler(**self._options)
            self.session, self._report = None, None
            self._sampler.start()
        except BaseException:
            self._depth -= 1
            self._sampler = None
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth > 0 or self._sampler is None:
            return
        sampler, self._sampler = self._sampler, None
        self.session = sampler.stop(partial=exc_type is not None)

    @property
    def report(self) -> Report:
        """The :class:`Report` of the last run."""
        if self.session is None:
            raise RuntimeError("no profile yet: use `with profile() as p:` and read "
                               "p.report after the block")
        if self._report is None:
            self._report = build_report(self.session, check=self.check, timeout=self.timeout,
                                        sys_path=[p for p in sys.path if p] or [os.getcwd()])
        return self._report

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        wrapper.profile = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


def profile(func: Callable[..., Any] | None = None, /, *,
            interval: float = DEFAULT_INTERVAL, timer: str = "wall", mode: str = "auto",
            check: str = "compile", timeout: float = 60.0,
            clock: Callable[[], float] | None = None) -> Any:
    """Profile a block (``with profile() as p:``) or a function (``@profile``).

    Parameters
    ----------
    interval : float
        Seconds between samples.
    timer : str
        ``"wall"`` or ``"cpu"``.
    mode : str
        ``"auto"``, ``"signal"`` or ``"thread"`` (see :class:`Sampler`).
    check : str
        ``"none"``, ``"compile"`` (compile each hot function with
        ``loopscale.accel`` in a child process) or ``"trial"`` (also time it).
    timeout : float
        Seconds each check may take.

    Returns
    -------
    Profile or callable
        The :class:`Profile` (``p.report`` after the block), or the decorated
        function, whose ``.profile.report`` describes its last call.

    Examples
    --------
    >>> from loopscale.profiler import profile
    >>> with profile(check="none") as p:
    ...     total = sum(i * i for i in range(100_000))
    >>> p.report.samples >= 0
    True
    """
    prof = Profile(interval=interval, timer=timer, mode=mode, check=check, timeout=timeout,
                   clock=clock)
    return prof(func) if func is not None else prof
