"""Collection: sample the running program's stacks and weigh each sample by time.

Design
------
A sample is taken on each tick of an interval timer.  Two drivers exist:

``signal`` (the default on the main thread)
    ``setitimer(ITIMER_REAL)`` (``timer="wall"``) or ``ITIMER_PROF``
    (``timer="cpu"``) sends SIGALRM/SIGPROF every *interval* seconds.  CPython
    runs the Python-level handler on the main thread at its next "eval
    breaker" check: a backward jump, a function entry, or the return of a C
    call.  The handler receives the interrupted frame.

``thread`` (the fallback)
    A daemon thread sleeps *interval* seconds, then reads every thread's
    frame with :func:`sys._current_frames`.  Used when the profiler is not
    started on the main thread, when the signal already has a handler or the
    timer is already armed, and -- switching mid-run -- when the profiled
    script installs its own handler for the profiler's signal or arms the
    same timer (``signal.signal``, ``signal.setitimer`` and ``signal.alarm``
    are wrapped while profiling to notice).  The script's handler is then
    installed exactly as it asked and runs as written.

**Weights.**  Each sample is weighted by the clock time since the previous
tick, not by the interval.  A C call that holds the GIL for two seconds
(``sorted`` of millions of floats) delays the next tick by two seconds; that
tick's stack is still at the call, so the two seconds are charged to that
line in full.  When code that checks no signals is followed by a ``with``
block's exit, CPython may first run the handler after the exit call, which
is numbered with the ``with`` line; a held tick found there while the
process ran is charged to the block's last line instead.

**Python versus native time** is a heuristic, stated here so the numbers
can be read honestly.  When the top frame's current instruction is a call
(``PRECALL``/``CALL``/``CALL_FUNCTION_EX``, found from ``f_lasti``), the
frame is inside -- or has just returned from -- a call that pushed no Python
frame, i.e. a C function.  For such a sample, the part of the weight beyond
one interval is native time (the tick was held back by the C call) and one
interval is Python time; for the other threads and in thread mode, where the
thread was caught *inside* the call, the whole weight is native.  A sample
whose top instruction is not a call is Python time.  Two refinements use
how late the handler ran after its timer expired (``getitimer``) and the
process's CPU time since the last tick: a non-call sample whose handler ran
more than a fifth of an interval late while the process kept running was
held in C code that checks no signals (an operator such as ``a @ b`` on big
arrays), and that part is native; a call sample on time while the process
hardly ran was caught inside a C function that waits and checks signals
(``time.sleep``, I/O, a lock), and is native whole.  On Linux the main
thread's run-queue wait (``/proc/thread-self/schedstat``) is read too: time
it waited for a CPU on a busy machine is left out of these tests, and a held
tick's waiting time is split between Python and native time as its running
time is.  Time in C code reached
through a Python-level wrapper is classified by the innermost Python frame.

**Threads.**  Every tick also reads the other threads' frames through
:func:`sys._current_frames`; each busy thread gets a sample with the same
weight, so ``total_seconds`` sums time over threads.  Threads blocked in the
standard library's waiting functions (``threading``, ``queue``,
``selectors``...) are idle and not sampled; the main thread is too while
another thread works (it waits for them: ``join``, ``result``), but not when
it waits alone (then its wait is where the program's time goes).

**Cost of a tick.**  Each tick reads only the part of each stack that changed
since the previous tick (:class:`_StackCache`): a frame still on the stack at
the same instruction has the same callers as before.  Each code object's line
table, positions, call instructions and ``with`` exits are computed once
(:class:`_CodeInfo`, filed by ``id``: hashing a code object hashes its
constants at every lookup).  A recursion hundreds of frames deep thus costs a
few frames per tick while its bottom runs, and one pass over the frames (each
run of frames at the same place resolved once) when it is redone between
ticks.

**Arguments.**  The first time a function defined in user code (not the
standard library, site-packages or loopscale) is seen, its parameters are
read from the frame: small values are copied (arrays up to
:data:`COPY_LIMIT` bytes, numbers, strings, small containers, small pandas
objects), the others are described by type.  The verdict step compiles the
function with them.  The values are those of the parameters at the moment of
the sample, which may differ from the values at the call.

The clock is injectable (``clock=``) and :meth:`Sampler.tick` is the whole
per-sample logic, so tests drive it with a fake clock and hand-made frames.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from ._capture import COPY_LIMIT, capture_args, copy_small, describe
from ._frames import (
    PACKAGE_DIR,
    _code_info,
    _code_infos,
    _qualname,
    _StackCache,
    at_call,
    stack_of,
)
from ._session import Capture, Frame, Sample, Session

__all__ = ["Sampler", "DEFAULT_INTERVAL", "TIMERS", "MODES", "COPY_LIMIT", "at_call",
           "capture_args", "copy_small", "describe", "is_user_file", "stack_of"]

#: Default sampling interval in seconds.
DEFAULT_INTERVAL = 0.001
#: ``timer=`` choices: the clock that drives and weighs samples.
TIMERS = ("wall", "cpu")
#: ``mode=`` choices.
MODES = ("auto", "signal", "thread")
#: Below this fraction of the requested rate, the achieved rate is reported as a problem.
LOW_RATE_FRACTION = 0.5

_TIMER_SIGNAL = {"wall": ("ITIMER_REAL", "SIGALRM"), "cpu": ("ITIMER_PROF", "SIGPROF")}
_IDLE_FILES = ("threading.py", "queue.py", "selectors.py", "socket.py", "ssl.py",
               os.path.join("concurrent", "futures", "thread.py"),
               os.path.join("concurrent", "futures", "_base.py"),
               os.path.join("multiprocessing", "connection.py"))
_PACKAGE_DIR = PACKAGE_DIR

_real_signal = signal.signal
_real_setitimer = signal.setitimer
_real_alarm = signal.alarm


@functools.cache
def _gil_pread() -> Callable[[int], bytes] | None:
    """``read(fd)``: the first 96 bytes of *fd* by libc ``pread``, the GIL held.

    ``ctypes.PyDLL`` calls a C function without releasing the GIL (a
    ``/proc`` read takes a microsecond).  None where there is no such libc.
    """
    try:
        import ctypes

        pread = ctypes.PyDLL(None, use_errno=True).pread
        pread.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long)
        pread.restype = ctypes.c_ssize_t
    except (ImportError, OSError, AttributeError):
        return None
    buf = ctypes.create_string_buffer(96)

    def read(fd: int) -> bytes:
        n = pread(fd, buf, 96, 0)
        if n < 0:
            raise OSError(ctypes.get_errno(), "pread failed")
        return buf.raw[:n]

    return read


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.add(_PACKAGE_DIR)
    return tuple(sorted(os.path.realpath(d) + os.sep for d in dirs if d))


_LIBRARY_DIRS = _library_dirs()
_user_file_cache: dict[str, bool] = {}


def is_user_file(filename: str) -> bool:
    """Whether *filename* is the user's code (not stdlib, site-packages or loopscale)."""
    cached = _user_file_cache.get(filename)
    if cached is None:
        if filename.startswith("<") or not filename:
            cached = False
        else:
            real = os.path.realpath(filename)
            cached = not real.startswith(_LIBRARY_DIRS)
        _user_file_cache[filename] = cached
    return cached


def _is_idle(frame: Any) -> bool:
    filename = frame.f_code.co_filename
    return filename.endswith(_IDLE_FILES) and not is_user_file(filename)


class Sampler:
    """Take weighted stack samples until :meth:`stop`; return a :class:`Session`.

    Parameters
    ----------
    interval : float
        Seconds between samples (default :data:`DEFAULT_INTERVAL`).
    timer : str
        ``"wall"`` (elapsed time, ``ITIMER_REAL``/SIGALRM) or ``"cpu"``
        (process CPU time, ``ITIMER_PROF``/SIGPROF).
    mode : str
        ``"auto"`` (signals on the main thread, else a sampling thread),
        ``"signal"`` (refuse with :class:`RuntimeError` naming the signal when
        signals cannot be used) or ``"thread"``.
    clock : callable, optional
        Returns seconds; default :func:`time.perf_counter` (``wall``) or
        :func:`time.process_time` (``cpu``).  Tests pass a fake clock.
    capture : bool
        Capture arguments of user functions (for verdicts).
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL, *, timer: str = "wall",
                 mode: str = "auto", clock: Callable[[], float] | None = None,
                 capture: bool = True) -> None:
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) \
                or not 0 < interval <= 10:
            raise ValueError(f"interval must be a number of seconds in (0, 10]; got "
                             f"{interval!r}. The default is {DEFAULT_INTERVAL}.")
        if timer not in TIMERS:
            raise ValueError(f"timer must be one of {', '.join(map(repr, TIMERS))}; "
                             f"got {timer!r}.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")
        self.interval = float(interval)
        self.timer = timer
        self.mode = mode
        self.clock = clock or (time.perf_counter if timer == "wall" else time.process_time)
        self.capture = capture
        which, signame = _TIMER_SIGNAL[timer]
        self._which: int = getattr(signal, which)
        self._signum: int = getattr(signal, signame)
        self.signal_name = signame
        self._samples: list[Sample] = []
        self._captures: dict[int, tuple[CodeType, Capture]] = {}
        self._stacks: dict[int, _StackCache] = {}  # per thread: the last stack
        self._interned: dict[tuple[Frame, ...], tuple[Frame, ...]] = {}  # distinct stacks
        self._messages: list[str] = []
        self._ticks = 0
        self._last = 0.0
        self._start = 0.0
        self._start_wall = 0.0
        self._running = False
        self._driver = ""
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._main_ident = threading.main_thread().ident
        self._old_handler: Any = None
        self._held = 0.0  # main-thread time a tick could not charge (see _charge_held)
        self._main_seen: tuple[tuple[Frame, ...], bool] | None = None  # stack, at a call
        self._last_cpu = 0.0  # time.process_time() at the last tick (signal mode)
        self._wait_fd: int | None = None  # the main thread's /proc schedstat (Linux)
        self._pread: Callable[[int], bytes] | None = None  # how it is read (_gil_pread)
        self._last_wait: float | None = None  # its run-queue wait at the last tick
        self._old_switch: float | None = None  # sys.getswitchinterval() to restore
        self._patched = False
        self._in_tick = False
        self._tick_error = False  # a tick raised (reported once)

    # -- the per-sample logic (pure apart from reading frames) ------------------------------

    def tick(self, now: float, frames: dict[int, Any], *, caught_in_call: bool = False,
             late: float | None = None, cpu: float | None = None,
             waited: float | None = None) -> None:
        """Record one tick at clock time *now* for the threads' top *frames*.

        *caught_in_call* is true when the frames were read while their threads
        ran (thread mode, and other threads in signal mode): a thread at a call
        instruction is then inside a C call and all its time is native.  On
        the main thread in signal mode it is false: the handler runs after a C
        call returned, so only the part of the weight beyond one interval is
        native.  In signal mode *late* is how long after its timer expiry the
        handler ran, *cpu* the process's CPU seconds since the last tick and
        *waited* the seconds the main thread waited for a CPU meanwhile (see
        the module's description of Python versus native time).
        """
        if self._in_tick:
            return  # see _on_signal
        self._in_tick = True
        try:
            self._safe_tick(now, frames, caught_in_call, late, cpu, waited)
        finally:
            self._in_tick = False

    def _safe_tick(self, now: float, frames: dict[int, Any], caught_in_call: bool,
                   late: float | None, cpu: float | None, waited: float | None = None) -> None:
        try:
            self._tick(now, frames, caught_in_call, late, cpu, waited)
        except Exception as exc:  # noqa: BLE001 - the profiler must never break the program
            if not self._tick_error:
                self._tick_error = True
                self._messages.append(f"a sample failed and was skipped ({type(exc).__name__}: "
                                      f"{exc}); please report this as a loopscale bug")

    def _tick(self, now: float, frames: dict[int, Any], caught_in_call: bool,
              late: float | None, cpu: float | None, waited: float | None = None) -> None:
        elapsed = now - self._last
        self._last = now
        self._ticks += 1
        if elapsed <= 0:
            return
        # a scheduler thread running a chunk of someone's parallel loop is charged
        # to that someone's stack: the user's loop that called the accelerated
        # function (read from loopscale's pool, if loaded; not imported here)
        pool = sys.modules.get("loopscale.schedule._pool")
        working_for: dict[int, int] = dict(getattr(pool, "WORKING_FOR", {}) or {})
        main_frame = frames.get(self._main_ident)
        # the main thread waiting (join, queue, futures) while other threads work:
        # their samples carry that time; alone, its wait is the program's time
        main_waits = main_frame is not None and _is_idle(main_frame) and any(
            f is not None and i != self._main_ident and not _is_idle(f)
            for i, f in frames.items())
        caches = self._stacks
        if len(caches) > len(frames):  # threads gone: let go of their frames
            for gone in [i for i in caches if i not in frames]:
                del caches[gone]
        for ident, frame in frames.items():
            if frame is None or (main_waits and ident == self._main_ident):
                continue
            owner = working_for.get(ident)
            if owner is not None and frames.get(owner) is not None:
                stack = self._walk(owner, frames[owner])
                if stack:
                    self._samples.append(Sample(stack, elapsed, ident, True))
                    continue
            in_call = at_call(frame)
            main_signal = not caught_in_call and ident == self._main_ident
            if ident != self._main_ident and _is_idle(frame):
                continue
            stack = self._walk(ident, frame)
            if not stack:
                if main_signal:
                    # the handler ran inside the profiler's own code (its exit,
                    # right after a C call that checks no signals ended the block):
                    # keep the time for the user's frame (see stop())
                    self._held += elapsed
                continue
            # the time the main thread could run: not the time it waited for a CPU
            # on a busy machine (read from the kernel where it says)
            running = max(0.0, elapsed - (waited or 0.0))
            if in_call and main_signal and running > 2.0 * self.interval \
                    and (cpu is None or cpu >= 0.5 * running):
                body_line = _code_info(frame.f_code).with_exit_line(frame.f_lasti)
                if body_line is not None:
                    # a held tick handled at a `with` block's exit while the process
                    # ran: the time was held by the block's last line (a C call or a
                    # deallocation there that checks no signals), not by the `with`
                    # line the exit call is numbered with (an exit that waits, such
                    # as a database commit, leaves the CPU idle and keeps its line)
                    top = stack[-1]
                    stack = stack[:-1] + ((top[0], body_line, top[2], -1),)
            if ident == self._main_ident and (is_user_file(stack[-1][0])
                                              or stack[-1][0].startswith(_PACKAGE_DIR)):
                self._main_seen = (stack, in_call)
            if not in_call:
                native = 0.0
                # held: the handler ran well after its timer expired -- or, where
                # the kernel tells how long the thread waited for a CPU, it ran
                # more than two intervals after the last tick (a long hold lets the
                # timer expire many times; `late` is then only the last phase)
                # (a lateness the wait explains is no hold)
                held = late is not None and (late - (waited or 0.0) > 0.2 * self.interval or (
                    waited is not None and running > 2.0 * self.interval))
                if main_signal and held and cpu is not None and cpu >= 0.5 * running > 0.0:
                    # the handler ran well after its tick while the process ran: the
                    # interpreter, which checks for signals at every call and loop
                    # jump, was held in C code that checks none (an operator, `a @ b`)
                    native = min(running, max(late, running - self.interval))
                    # the time it waited for a CPU meanwhile is split as it ran
                    native = min(elapsed, native * elapsed / running)
                if native < elapsed:
                    self._samples.append(Sample(stack, elapsed - native, ident, False))
                if native > 0.0:
                    self._samples.append(Sample(stack, native, ident, True))
            elif not main_signal:
                self._samples.append(Sample(stack, elapsed, ident, True))
            elif cpu is not None and cpu < 0.5 * running:
                # at a call, on time, and the process hardly ran: the handler ran from
                # inside a C function that waits (sleep, I/O, a lock) and checks signals
                self._samples.append(Sample(stack, elapsed, ident, True))
            else:
                # one interval of Python, the rest in the C call; the time the thread
                # waited for a CPU meanwhile is split alike
                python = min(elapsed, self.interval) if running <= 0.0 \
                    else elapsed * min(running, self.interval) / running
                self._samples.append(Sample(stack, python, ident, False))
                if elapsed > python:
                    self._samples.append(Sample(stack, elapsed - python, ident, True))

    def _walk(self, ident: int, frame: Any) -> tuple[Frame, ...]:
        """The stack of thread *ident*, whose top frame is *frame*; new frames' user
        functions have their arguments captured."""
        cache = self._stacks.get(ident)
        if cache is None:
            cache = self._stacks[ident] = _StackCache()
        stack, firsts = cache.walk(frame)
        if self.capture:
            for obj in firsts:
                self._capture(obj)
        # samples share one tuple per distinct stack: a recursion 400 frames deep
        # held 3 kB a sample (200 MB a minute at 1 ms), now a few distinct stacks
        return self._interned.setdefault(stack, stack)

    def _capture(self, frame: Any) -> None:
        code = frame.f_code
        if id(code) in self._captures or not is_user_file(code.co_filename) \
                or code.co_name.startswith("<"):
            return
        try:
            cap = capture_args(frame)
        except Exception:  # noqa: BLE001 - never let capture break the program
            cap = Capture(code.co_filename, _qualname(code), code.co_firstlineno, ())
        self._captures[id(code)] = (code, cap)  # the code is held: its id stays unique

    # -- drivers --------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A timer signal that arrives while this handler runs (a busy machine can
        # stop it for longer than an interval) is handled inside it, with the
        # handler's own frame as the interrupted one: that tick would find no user
        # frame on the main thread -- and lose the main thread's and its pool
        # threads' time -- so it is skipped, and its time goes to the next tick.
        if self._in_tick or (frame is not None and frame.f_code is _ON_SIGNAL_CODE):
            return
        self._in_tick = True
        try:
            now = self.clock()
            frames: dict[int, Any] = dict(sys._current_frames())
            frames[self._main_ident] = frame  # the interrupted frame, not the handler's
            if self._thread is not None:
                frames.pop(self._thread.ident, None)
            remaining = signal.getitimer(self._which)[0]
            cpu = time.process_time()
            late = self.interval - remaining if 0.0 < remaining <= self.interval else None
            wait = self._read_wait()
            waited = None if wait is None or self._last_wait is None \
                else wait - self._last_wait
            self._safe_tick(now, frames, False, late, cpu - self._last_cpu, waited)
            self._last_cpu, self._last_wait = cpu, wait
        finally:
            self._in_tick = False

    def _open_wait(self) -> None:
        """Open the main thread's scheduler statistics, where Linux has them.

        They are read with a ``pread`` that keeps the GIL (:func:`_gil_pread`):
        ``os.pread`` releases it, and a handler that releases and at once
        retakes the GIL every millisecond starves every other thread of the
        program (a waiting thread asks for the GIL only after a switch interval
        with no switch; each release is one), so that a 50 ms
        ``threading.Timer`` fired after seconds, or never.  Without such a read
        the wait is not measured.
        """
        self._wait_fd = None
        self._pread = _gil_pread()
        if self._pread is None:
            return
        try:
            self._wait_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except (OSError, AttributeError):
            self._wait_fd = None
        self._last_wait = self._read_wait()

    def _read_wait(self) -> float | None:
        """Seconds the main thread has waited for a CPU (run-queue time), or None."""
        if self._wait_fd is None:
            return None
        try:
            return int(self._pread(self._wait_fd).split()[1]) / 1e9  # type: ignore[misc]
        except (OSError, ValueError, IndexError):
            return None

    def _close_wait(self) -> None:
        if self._wait_fd is not None:
            try:
                os.close(self._wait_fd)
            except OSError:
                pass
            self._wait_fd = None

    def _thread_loop(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop_event.wait(max(0.0, due - time.monotonic())):
            # ticks are due on a fixed schedule: the time a tick takes (and the wait
            # for the GIL) is not added to every interval
            due = max(due + self.interval, time.monotonic() + self.interval / 2)
            if self._driver != "thread":
                return
            now = self.clock()
            frames = dict(sys._current_frames())
            frames.pop(threading.get_ident(), None)
            self.tick(now, frames, caught_in_call=True)

    def _start_thread(self) -> None:
        self._driver = "thread"
        self._stop_event.clear()
        # the sampling thread needs the GIL at every tick: a thread running Python
        # gives it up only every switch interval (5 ms by default), which would cap
        # the rate near 200/s; ask for a switch four times per interval meanwhile
        if self._old_switch is None:
            self._old_switch = sys.getswitchinterval()
            sys.setswitchinterval(min(self._old_switch, self.interval / 4))
        self._thread = threading.Thread(target=self._thread_loop, name="loopscale-profiler",
                                        daemon=True)
        self._thread.start()

    def _signal_usable(self) -> str | None:
        """None when signals can drive sampling, else the reason they cannot."""
        if threading.current_thread() is not threading.main_thread():
            return "the profiler was started outside the main thread"
        handler = signal.getsignal(self._signum)
        if handler not in (signal.SIG_DFL, signal.SIG_IGN, None):
            return (f"{self.signal_name} already has a handler ({handler!r}); it is left "
                    "in place")
        if signal.getitimer(self._which) != (0.0, 0.0):
            return f"the {self.signal_name} interval timer is already armed"
        return None

    def start(self) -> None:
        """Start sampling."""
        if self._running:
            raise RuntimeError("this Sampler is already running; stop() it first")
        self._running = True
        self._start_wall = time.time()
        self._start = self._last = self.clock()
        self._last_cpu = time.process_time()
        reason = None if self.mode == "thread" else self._signal_usable()
        if self.mode == "signal" and reason is not None:
            self._running = False
            raise RuntimeError(
                f"cannot sample with {self.signal_name}: {reason}. Use mode='thread' "
                "(a sampling thread) or mode='auto'.")
        if self.mode == "thread" or reason is not None:
            if reason is not None:
                self._messages.append(f"sampling with a thread: {reason}")
            self._start_thread()
            return
        self._driver = "signal"
        if self.timer == "wall":  # CPU-time ticks exclude the wait already
            self._open_wait()
        self._old_handler = _real_signal(self._signum, self._on_signal)
        self._patch_signal_module()
        _real_setitimer(self._which, self.interval, self.interval)

    def _switch_to_thread(self, why: str) -> None:
        """The script wants our signal or timer: hand it over, keep sampling with a thread."""
        if self._driver != "signal":
            return
        _real_setitimer(self._which, 0.0, 0.0)
        _real_signal(self._signum, self._old_handler)
        self._messages.append(
            f"the script {why}; the profiler gave {self.signal_name} back to it and "
            "switched to a sampling thread (the script's handler runs as written)")
        self._start_thread()

    def _patch_signal_module(self) -> None:
        sampler = self

        def signal_(signalnum: int, handler: Any) -> Any:
            if signalnum == sampler._signum and sampler._driver == "signal":
                sampler._switch_to_thread(f"installed its own handler for {sampler.signal_name}")
            return _real_signal(signalnum, handler)

        def setitimer(which: int, seconds: float, interval: float = 0.0) -> Any:
            if which == sampler._which and sampler._driver == "signal":
                sampler._switch_to_thread(f"armed the timer of {sampler.signal_name} "
                                          "(signal.setitimer)")
            return _real_setitimer(which, seconds, interval)

        def alarm(seconds: int) -> int:
            if sampler._signum == signal.SIGALRM and sampler._driver == "signal":
                sampler._switch_to_thread("called signal.alarm (SIGALRM)")
            return _real_alarm(seconds)

        for fake, real in ((signal_, _real_signal), (setitimer, _real_setitimer),
                           (alarm, _real_alarm)):
            fake.__doc__, fake.__name__ = real.__doc__, real.__name__
        signal.signal, signal.setitimer, signal.alarm = (  # type: ignore[assignment]
            signal_, setitimer, alarm)
        self._patched = True

    def _unpatch_signal_module(self) -> None:
        if self._patched:
            signal.signal, signal.setitimer, signal.alarm = (  # type: ignore[assignment]
                _real_signal, _real_setitimer, _real_alarm)
            self._patched = False

    def stop(self, *, partial: bool = False, exit_status: int | None = None,
             argv: tuple[str, ...] = (), rank: int | None = None) -> Session:
        """Stop sampling and return what was collected."""
        if not self._running:
            raise RuntimeError("this Sampler is not running; start() it first")
        end = self.clock()
        if self._driver == "signal":
            _real_setitimer(self._which, 0.0, 0.0)
            _real_signal(self._signum, self._old_handler)
            self._charge_held(end)
        self._close_wait()
        self._unpatch_signal_module()
        driver, self._driver = self._driver, ""
        self._stop_event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._old_switch is not None:
            sys.setswitchinterval(self._old_switch)
            self._old_switch = None
        self._running = False
        self._stacks.clear()  # the frames held for the next tick's walk
        self._interned.clear()
        _code_infos.clear()  # and the code objects held by the frame cache
        return self.session(end - self._start, partial=partial, exit_status=exit_status,
                            argv=argv, rank=rank, mode=driver)

    def _charge_held(self, end: float) -> None:
        """Charge time no tick could charge to the user's frame that stops the run.

        A C call that checks no signals (``sorted`` of millions of items) can hold
        the tick back until the profiler's own exit code runs, where the user's
        line is not on the stack.  That tick's time goes where the main thread
        was last seen if that was inside a call (a nogil kernel running on),
        else to the line the user's frame ran before it called the profiler (a
        ``with`` block's last line), as native time beyond one interval.
        """
        held, self._held = self._held, 0.0
        if held <= 2.0 * self.interval:
            return
        if self._main_seen is not None and self._main_seen[1]:
            # last seen inside a call (a nogil kernel, a C function): it ran on
            self._samples.append(Sample(self._main_seen[0], held, self._main_ident, True))
            return
        frame = sys._getframe(1)
        while frame is not None and not is_user_file(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None or frame.f_lasti < 0:
            return
        stack = stack_of(frame)
        if not stack:
            return
        line = _code_info(frame.f_code).line_before(frame.f_lasti)
        stack = stack[:-1] + ((stack[-1][0], line, stack[-1][2], -1),)
        python = min(held, self.interval)
        self._samples.append(Sample(stack, python, self._main_ident, False))
        self._samples.append(Sample(stack, held - python, self._main_ident, True))

    def session(self, duration: float, *, mode: str = "", partial: bool = False,
                exit_status: int | None = None, argv: tuple[str, ...] = (),
                rank: int | None = None) -> Session:
        """The samples so far as a :class:`Session` of *duration* seconds."""
        messages = list(self._messages)
        if duration > 0 and self._ticks / duration < LOW_RATE_FRACTION / self.interval \
                and duration >= 20 * self.interval:
            messages.append(
                f"achieved {self._ticks / duration:.0f} samples/s, far below the requested "
                f"{1 / self.interval:.0f}/s (long C calls holding the GIL, or a busy "
                "machine, delay ticks); each sample is weighted by the time it covers, "
                "so shares stay right, but short events may be missed")
        return Session(
            samples=tuple(self._samples), duration=duration, interval=self.interval,
            mode=mode or self._driver or "signal", timer=self.timer, ticks=self._ticks,
            start_time=self._start_wall, partial=partial, exit_status=exit_status,
            argv=argv, captures=tuple(c for _, c in self._captures.values()),
            messages=tuple(messages),
            rank=rank)


_ON_SIGNAL_CODE = Sampler._on_signal.__code__
