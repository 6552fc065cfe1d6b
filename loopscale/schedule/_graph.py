"""Task graphs: callables with dependencies, run on worker threads as they resolve.

A :class:`TaskGraph` is built one task at a time: ``graph.add(key, fn, *args,
**kwargs)`` returns a :class:`TaskRef`, and a ``TaskRef`` placed among another
task's arguments (directly, or inside a ``list``, ``tuple`` or ``dict``) is
both a dependency and a placeholder for that task's result.  Any callable is
a task: a plain Python function, a Numba dispatcher, an ``@accelerate``
function.  :func:`run_graph` (or ``graph.run()``) runs it and returns the
results.

The design is dask's ``local.py``: the bookkeeping (what is ready, what waits
on what, what to cancel, which results can be dropped) lives in
:mod:`._graph_state` as plain functions over plain data, tested without
threads.  This module only drives it:

* the **caller's thread is the scheduler**.  It validates the graph (a missing
  dependency or a cycle is a ``ValueError`` before anything runs), hands ready
  tasks to worker threads through a queue, never more than ``max_workers`` at
  a time, and waits on a result queue in short slices so that Ctrl-C is seen
  at once;
* **worker threads** (started as needed, at most ``max_workers``, one run's
  own, daemonic) call the task and post ``(key, ok, value)`` back;
* the **first failure** cancels every task that has not started; tasks already
  running finish; then the caller gets the exception once, of its own type,
  naming the task key, with the worker's exception (and traceback) as
  ``__cause__``.  All worker threads have exited by then;
* **Ctrl-C** (or any exception in the caller, a failing progress callback
  included) cancels what has not started and is raised at once; the worker
  threads leave as soon as their current task returns, and start nothing new;
* **one thread budget**: with more than one worker, each worker counts as
  being inside a parallel region (:func:`~loopscale.schedule.in_worker`), so
  a parallel loop or a graph run from a task runs serially on that worker
  rather than multiplying threads.  With ``max_workers=1`` the single worker
  lets a task's own parallel loops use the pool.  While a run has more
  than one worker, BLAS/OpenMP pools are limited to each worker's share of
  the cores (and restored afterwards).

After a run, ``graph.status`` holds each task's final status, and
:meth:`TaskGraph.to_dot` colours the nodes by it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeAlias

from .. import config
from ..errors import relocated
from ._budget import blas_limit, init_worker, serialize_parallel_calls
from ._chunking import validate_max_workers
from ._graph_state import (
    GraphState,
    cancel_pending,
    check_graph,
    cull,
    fail_task,
    finish_task,
    is_done,
    start_state,
    start_task,
    task_status,
)
from ._pool import _LOCAL, in_worker

__all__ = ["TaskGraph", "TaskRef", "run_graph"]

Key = Hashable
ProgressCallback: TypeAlias = Callable[[int, int], object]
Progress: TypeAlias = "bool | ProgressCallback | None"

_POLL_S = 0.1  # the scheduler wakes at least this often: Ctrl-C on every platform
_DOT_FORMATS = {".dot": None, ".gv": None, ".png": "png", ".svg": "svg", ".pdf": "pdf"}
_RANKDIRS = ("TB", "BT", "LR", "RL")
_COLOURS = {"finished": "palegreen", "failed": "salmon", "running": "gold",
            "cancelled": "lightgrey", "ready": "white", "waiting": "white"}


@dataclass(frozen=True)
class TaskRef:
    """A reference to the result of the task called *key*.

    Returned by :meth:`TaskGraph.add` and :meth:`TaskGraph.ref`; put it among
    another task's arguments to make that task depend on this one.

    Examples
    --------
    >>> TaskRef("load")
    TaskRef('load')
    """

    key: Key

    def __repr__(self) -> str:
        return f"TaskRef({self.key!r})"


@dataclass(frozen=True)
class _Task:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    dependencies: tuple[Key, ...]  # in the order first referenced
    has_refs: bool


def _find_refs(obj: Any, out: dict[Key, None], seen: set[int] | None = None) -> None:
    """Add the keys of every TaskRef in *obj* to *out*: through lists, tuples
    (named ones too), dicts, sets and dataclass instances, as Dask does (a
    dataclass met again, a back-reference, is not walked twice)."""
    kind = type(obj)
    if kind is TaskRef:
        out[obj.key] = None
    elif kind is list or kind is tuple or kind is set or kind is frozenset or (
            isinstance(obj, tuple) and hasattr(obj, "_fields")):
        for item in obj:
            _find_refs(item, out, seen)
    elif kind is dict:
        for item in obj.values():
            _find_refs(item, out, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        seen = set() if seen is None else seen
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for field in dataclasses.fields(obj):
            _find_refs(getattr(obj, field.name), out, seen)


def _substitute(obj: Any, results: dict[Key, Any], seen: set[int] | None = None) -> Any:
    """*obj* with every TaskRef replaced by its task's result (containers rebuilt;
    a dataclass met again on the way, a back-reference, is left as it is)."""
    kind = type(obj)
    if kind is TaskRef:
        return results[obj.key]
    if kind is list:
        return [_substitute(item, results, seen) for item in obj]
    if kind is tuple:
        return tuple(_substitute(item, results, seen) for item in obj)
    if kind is dict:
        return {k: _substitute(v, results, seen) for k, v in obj.items()}
    if kind is set or kind is frozenset:
        return kind(_substitute(item, results, seen) for item in obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return kind(*(_substitute(item, results, seen) for item in obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        seen = set() if seen is None else seen
        if id(obj) in seen:
            return obj
        seen.add(id(obj))
        changed = {}
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            got = _substitute(value, results, seen)
            if got is not value:
                changed[field.name] = got
        if not changed:
            return obj
        new = copy.copy(obj)
        for name, value in changed.items():
            object.__setattr__(new, name, value)  # frozen ones too
        return new
    return obj


def _fn_name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, functools.partial):
        return f"partial({_fn_name(fn.func)})"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _dot_string(text: str) -> str:
    """*text* as a double-quoted Graphviz string (``\\n`` stays a line break)."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


class TaskGraph:
    """A set of tasks with dependencies, run in parallel as the dependencies resolve.

    Build it with :meth:`add`; run it with :meth:`run` (or :func:`run_graph`);
    look at it with :meth:`to_dot` and :meth:`visualize`.

    Examples
    --------
    >>> import operator
    >>> graph = TaskGraph()
    >>> a = graph.add("a", operator.add, 1, 2)
    >>> b = graph.add("b", operator.mul, a, 10)
    >>> c = graph.add("c", sum, [a, b])
    >>> graph.run()
    {'a': 3, 'b': 30, 'c': 33}
    >>> graph.run(keys=["b"])
    {'b': 30}
    >>> graph.dependencies["c"] == {"a", "b"}
    True
    """

    def __init__(self) -> None:
        self._tasks: dict[Key, _Task] = {}
        self._status: dict[Key, str] = {}

    def add(self, key: Key, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskRef:
        """Add the task *key*: ``fn(*args, **kwargs)``, with TaskRefs replaced by results.

        Parameters
        ----------
        key : hashable
            The task's name, unique in the graph (a string, an int, a tuple...).
        fn : callable
            What the task calls, on a worker thread.
        *args, **kwargs
            Its arguments.  Each :class:`TaskRef` among them — directly or inside
            a ``list``, ``tuple``, named tuple, ``dict`` (its values), ``set``,
            ``frozenset`` or dataclass instance, at any depth — makes this
            task depend on the referenced one and is replaced by its result.

        Returns
        -------
        TaskRef
            A reference to this task's result, to pass to later tasks.

        Raises
        ------
        ValueError
            If *key* is already in the graph.
        TypeError
            If *key* is not hashable or *fn* is not callable.

        Examples
        --------
        >>> graph = TaskGraph()
        >>> x = graph.add("x", int, "41")
        >>> graph.add("y", lambda v, step: v + step, x, step=1)
        TaskRef('y')
        >>> graph.run(keys=["y"])
        {'y': 42}
        """
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"a task key must be hashable (a str, int or tuple); got "
                            f"{key!r} of type {type(key).__name__}.") from None
        if not callable(fn):
            raise TypeError(f"task {key!r}: fn must be callable; got {fn!r}. Pass the function "
                            "itself, then its arguments: graph.add(key, fn, *args).")
        if key in self._tasks:
            raise ValueError(f"task {key!r} is already in the graph; every key must be unique.")
        deps: dict[Key, None] = {}
        _find_refs(args, deps)
        _find_refs(kwargs, deps)
        self._tasks[key] = _Task(fn, args, kwargs, tuple(deps), bool(deps))
        return TaskRef(key)

    def ref(self, key: Key) -> TaskRef:
        """A reference to task *key*, which may be added later.

        Examples
        --------
        >>> graph = TaskGraph()
        >>> total = graph.add("total", sum, [graph.ref("x"), graph.ref("y")])
        >>> _ = graph.add("x", int, 1)
        >>> _ = graph.add("y", int, 2)
        >>> graph.run(keys=["total"])
        {'total': 3}
        """
        return TaskRef(key)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __iter__(self) -> Iterator[Key]:
        return iter(self._tasks)

    def __repr__(self) -> str:
        return f"<TaskGraph: {len(self._tasks)} tasks>"

    @property
    def dependencies(self) -> dict[Key, frozenset[Key]]:
        """``key -> frozenset`` of the keys that task needs, in the order added."""
        return {k: frozenset(t.dependencies) for k, t in self._tasks.items()}

    @property
    def status(self) -> dict[Key, str]:
        """Each task's status after the last run (``finished``, ``failed``,
        ``running`` when interrupted, ``cancelled``, ``waiting``, ``ready``);
        empty before the first run."""
        return dict(self._status)

    def run(self, keys: Iterable[Key] | None = None, *, max_workers: int | None = None,
            progress: Progress = None) -> dict[Key, Any]:
        """Run the graph; see :func:`run_graph`."""
        return run_graph(self, keys, max_workers=max_workers, progress=progress)

    # -- viewing -----------------------------------------------------------------------------

    def to_dot(self, *, rankdir: str = "TB") -> str:
        """The graph as Graphviz ``dot`` text.

        One box per task, labelled with its key and its function's name; an
        arrow from each dependency to the task that needs it.  After a run the
        boxes are coloured by status: finished green, failed red, running
        (interrupted) gold, cancelled grey.

        Parameters
        ----------
        rankdir : {"TB", "BT", "LR", "RL"}
            Graphviz layout direction (default top to bottom).

        Examples
        --------
        >>> graph = TaskGraph()
        >>> a = graph.add("a", abs, -1)
        >>> _ = graph.add("b", str, a)
        >>> print(graph.to_dot(), end="")
        digraph taskgraph {
          rankdir=TB;
          node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica];
          t0 [label="a\\nabs", tooltip="not run"];
          t1 [label="b\\nstr", tooltip="not run"];
          t0 -> t1;
        }
        """
        if rankdir not in _RANKDIRS:
            raise ValueError(f"rankdir must be one of {', '.join(map(repr, _RANKDIRS))}; got "
                             f"{rankdir!r}.")
        ids = {key: f"t{i}" for i, key in enumerate(self._tasks)}
        lines = ["digraph taskgraph {", f"  rankdir={rankdir};",
                 '  node [shape=box, style="rounded,filled", fillcolor=white, '
                 "fontname=Helvetica];"]
        status = self._status
        for key, task in self._tasks.items():
            label = _dot_string(f"{key}\n{_fn_name(task.fn)}")
            state = status.get(key)
            attrs = f"label={label}, tooltip={_dot_string(state or 'not run')}"
            if state is not None and _COLOURS[state] != "white":
                attrs += f", fillcolor={_COLOURS[state]}"
            lines.append(f"  {ids[key]} [{attrs}];")
        missing: dict[Key, str] = {}
        for key, task in self._tasks.items():
            for dep in task.dependencies:
                if dep not in ids:  # shown dashed, so a broken graph can still be viewed
                    if dep not in missing:
                        missing[dep] = f"m{len(missing)}"
                        lines.append(f"  {missing[dep]} [label={_dot_string(str(dep))}, "
                                     'style="dashed", tooltip="missing"];')
                    lines.append(f"  {missing[dep]} -> {ids[key]};")
                else:
                    lines.append(f"  {ids[dep]} -> {ids[key]};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def visualize(self, filename: str | Path = "taskgraph.dot", *,
                  rankdir: str = "TB") -> Path:
        """Write the graph for viewing: ``dot`` text, and an image when asked for.

        The suffix of *filename* chooses: ``.dot`` or ``.gv`` (or none, which
        means ``.dot``) writes the Graphviz text only; ``.png``, ``.svg`` or
        ``.pdf`` writes the text next to it (same name, ``.dot``) and renders
        the image with Graphviz's ``dot`` program, as Dask's ``visualize``
        does.

        Parameters
        ----------
        filename : str or Path
            Where to write.
        rankdir : {"TB", "BT", "LR", "RL"}
            Graphviz layout direction.

        Returns
        -------
        Path
            The file written for *filename* (the image, when one was asked for).

        Raises
        ------
        FileNotFoundError
            An image was asked for and the ``dot`` program is not installed
            (the ``.dot`` file is written all the same).
        RuntimeError
            ``dot`` failed; its message is included.
        ValueError
            An unknown suffix.

        Examples
        --------
        >>> import os, tempfile
        >>> graph = TaskGraph()
        >>> _ = graph.add("a", abs, -1)
        >>> path = graph.visualize(os.path.join(tempfile.mkdtemp(), "pipeline.dot"))
        >>> path.read_text().startswith("digraph")
        True
        >>> graph.visualize("pipeline.png")  # doctest: +SKIP
        PosixPath('pipeline.png')
        """
        path = Path(filename)
        suffix = path.suffix.lower()
        if suffix == "":
            path, suffix = path.with_suffix(".dot"), ".dot"
        if suffix not in _DOT_FORMATS:
            raise ValueError(f"visualize writes {', '.join(_DOT_FORMATS)} files; got "
                             f"{str(filename)!r}. Use one of those suffixes.")
        text = self.to_dot(rankdir=rankdir)
        fmt = _DOT_FORMATS[suffix]
        dot_path = path if fmt is None else path.with_suffix(".dot")
        dot_path.write_text(text, encoding="utf-8")
        if fmt is None:
            return path
        program = shutil.which("dot")
        if program is None:
            raise FileNotFoundError(
                f"rendering {str(path)!r} needs the Graphviz program 'dot', which is not on "
                f"PATH. The graph was written to {str(dot_path)!r}; install Graphviz "
                "(apt install graphviz, brew install graphviz or conda install graphviz) to "
                "render images, or ask for a .dot file.")
        try:
            proc = subprocess.run([program, f"-T{fmt}", "-o", str(path), str(dot_path)],
                                  capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"Graphviz 'dot' did not render {str(path)!r} within 120 s.") \
                from exc
        if proc.returncode != 0:
            raise RuntimeError(f"Graphviz 'dot' failed to render {str(path)!r} (status "
                               f"{proc.returncode}): {proc.stderr.strip()}")
        return path


# -- progress ----------------------------------------------------------------------------------


class _Progress:
    """Calls a user callback; the base of the terminal line."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback

    def update(self, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(done, total)

    def close(self) -> None:
        pass


class _TerminalProgress(_Progress):
    """``[loopscale] 12/1000 tasks`` on one line of a terminal, at most 10 times a second."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(None)
        self.stream = stream
        self.last = float("-inf")
        self.shown = False

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        self.stream.write(f"\r[loopscale] {done}/{total} tasks")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _make_progress(progress: Progress) -> _Progress:
    if progress is None or progress is False:
        return _Progress(None)
    if progress is True:
        stream = sys.stderr
        if stream is not None and stream.isatty():
            return _TerminalProgress(stream)
        return _Progress(None)
    if callable(progress):
        return _Progress(progress)
    raise TypeError(f"progress must be None, True, False or a callable(done, total); got "
                    f"{progress!r}.")


# -- running -----------------------------------------------------------------------------------


def _task_error(key: Key, exc: BaseException) -> BaseException:
    """*exc* (same type, arguments and attributes) naming the task; ``task_key``."""
    new = relocated(exc, f"task {key!r}")
    try:
        new.task_key = key  # type: ignore[attr-defined]
    except Exception:
        pass
    return new


def _raise_task_error(key: Key, exc: BaseException) -> None:
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit... as they are
        raise exc
    new = _task_error(key, exc)
    if new is exc:
        raise exc
    raise new from exc


def _call_args(task: _Task, results: dict[Key, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if not task.has_refs:
        return task.args, task.kwargs
    return _substitute(task.args, results), _substitute(task.kwargs, results)


def _worker(inbox: queue.SimpleQueue[Any], outbox: queue.SimpleQueue[Any],
            stop: threading.Event, in_region: bool, workers: int = 1,
            collectives: bool = True) -> None:
    if in_region:
        _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
        init_worker(workers)  # this thread's share of the cores for Numba and OpenMP
    if not collectives:  # run from a task of distribute.map: so are the graph's tasks
        with config.without_collectives():
            _work(inbox, outbox, stop)
    else:
        _work(inbox, outbox, stop)


def _work(inbox: queue.SimpleQueue[Any], outbox: queue.SimpleQueue[Any],
          stop: threading.Event) -> None:
    while True:
        item = inbox.get()
        if item is None:
            return
        key, fn, args, kwargs = item
        del item
        if stop.is_set():  # the run was interrupted: start nothing new
            continue
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            outbox.put((key, False, exc))
        else:
            outbox.put((key, True, value))
            del value
        del fn, args, kwargs


def _get(outbox: queue.SimpleQueue[Any]) -> Any:
    while True:
        try:
            return outbox.get(timeout=_POLL_S)
        except queue.Empty:
            continue


def _drive_threads(tasks: dict[Key, _Task], state: GraphState, workers: int,
                   report: _Progress) -> dict[Key, Any]:
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    collectives = config.collectives_allowed()
    threads: list[threading.Thread] = []
    results: dict[Key, Any] = {}
    total = len(tasks)
    done = 0
    error: tuple[Key, BaseException] | None = None
    clean = False
    try:
        while True:
            while state.ready and len(state.running) < workers:
                key = start_task(state)
                if len(threads) < len(state.running):
                    if workers > 1 and not threads:
                        serialize_parallel_calls()  # before two threads can launch
                    t = threading.Thread(target=_worker, args=(inbox, outbox, stop, workers > 1,
                                                                        workers, collectives),
                                         name=f"loopscale-graph-{len(threads) + 1}",
                                         daemon=True)
                    t.start()
                    threads.append(t)
                task = tasks[key]
                args, kwargs = _call_args(task, results)
                inbox.put((key, task.fn, args, kwargs))
                del args, kwargs
            if is_done(state):
                break
            key, ok, value = _get(outbox)
            if ok:
                results[key] = value
                _, release = finish_task(state, key)
                for k in release:
                    results.pop(k, None)
                done += 1
                report.update(done, total)
            else:
                fail_task(state, key)
                if error is None:
                    error = (key, value)
            del value
        clean = True
    finally:
        if not clean:  # interrupted: cancel, and let the workers go without waiting
            stop.set()
            cancel_pending(state)
        for _ in threads:
            inbox.put(None)
        if clean:
            for t in threads:
                t.join()
        report.close()
    if error is not None:
        key, exc = error
        error = None
        _raise_task_error(key, exc)
    return results


def _drive_inline(tasks: dict[Key, _Task], state: GraphState,
                  report: _Progress) -> dict[Key, Any]:
    """Run the graph on the calling thread (a graph started from inside a worker)."""
    results: dict[Key, Any] = {}
    total = len(tasks)
    done = 0
    try:
        while (key := start_task(state)) is not None:
            task = tasks[key]
            args, kwargs = _call_args(task, results)
            try:
                value = task.fn(*args, **kwargs)
            except Exception as exc:
                fail_task(state, key)
                new = _task_error(key, exc)
                if new is exc:
                    raise
                raise new from exc
            results[key] = value
            _, release = finish_task(state, key)
            for k in release:
                results.pop(k, None)
            done += 1
            report.update(done, total)
    finally:
        cancel_pending(state)
        report.close()
    return results


def _requested(graph: TaskGraph, keys: Iterable[Key] | None) -> list[Key]:
    if keys is None:
        return list(graph)
    try:
        one = keys in graph  # one key (a tuple is a key, as in Dask, when the graph has it)
    except TypeError:  # a list or set of keys
        one = False
    if one or isinstance(keys, (str, bytes)):
        keys = [keys]  # type: ignore[list-item]
    wanted = list(dict.fromkeys(keys))
    absent = [k for k in wanted if k not in graph]
    if absent:
        raise ValueError(f"keys not in the graph: {', '.join(map(repr, absent))}; the graph "
                         f"has {len(graph)} tasks (list(graph) shows their keys).")
    return wanted


def run_graph(graph: TaskGraph, keys: Iterable[Key] | None = None, *,
              max_workers: int | None = None, progress: Progress = None) -> dict[Key, Any]:
    """Run a task graph on worker threads; return the results.

    Each task starts as soon as all the tasks it references have finished, on
    one of up to *max_workers* threads.  Only the tasks that *keys* need are
    run, and results that no later task and no requested key needs are
    dropped as soon as possible.

    Parameters
    ----------
    graph : TaskGraph
        The tasks.
    keys : iterable of keys, optional
        The results wanted (default: every task's).  A single string key may
        be passed as is.
    max_workers : int, optional
        Tasks that may run at once (default: ``LOOPSCALE_MAX_WORKERS`` or the
        usable cores).  Called from inside a worker, the graph runs serially
        on that worker.
    progress : None, True or callable, optional
        ``callable(done, total)`` is called on the calling thread with
        ``(0, total)`` before the first task and after each task finishes;
        ``True`` prints a one-line counter to stderr when stderr is a
        terminal (and nothing otherwise).

    Returns
    -------
    dict
        ``key -> result`` for *keys*, in their order (the graph's order by
        default).

    Raises
    ------
    ValueError
        Before anything runs: a task references a key that is not in the
        graph, the graph has a cycle, or a requested key is not in it.
    Exception
        The first task that fails: its exception's type, the message naming
        the task key (also on the ``task_key`` attribute), the original as
        ``__cause__``.  Tasks not started by then never start; those running
        finish first.
    KeyboardInterrupt
        Ctrl-C while waiting, raised at once; nothing new starts.

    Examples
    --------
    >>> graph = TaskGraph()
    >>> a = graph.add("a", pow, 2, 10)
    >>> b = graph.add("b", pow, 3, 2)
    >>> _ = graph.add("c", max, a, b)
    >>> run_graph(graph, ["c"], max_workers=2)
    {'c': 1024}
    >>> _ = graph.add("bad", int, "x")
    >>> run_graph(graph)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: invalid literal for int() with base 10: 'x' (raised in task 'bad')
    """
    if not isinstance(graph, TaskGraph):
        raise TypeError(f"run_graph expects a TaskGraph; got {type(graph).__name__}.")
    workers = validate_max_workers(max_workers)
    if workers is None:
        workers = config.max_workers_default()
    report = _make_progress(progress)
    wanted = _requested(graph, keys)
    tasks = dict(graph._tasks)  # a snapshot: adding tasks during a run changes nothing
    dependencies = {k: t.dependencies for k, t in tasks.items()}
    if keys is not None:
        dependencies = cull(dependencies, wanted)
    check_graph(dependencies)
    tasks = {k: tasks[k] for k in dependencies}
    state = start_state(dependencies, keep=wanted)
    if not tasks:
        graph._status = {}
        return {}
    report.update(0, len(tasks))
    try:
        if in_worker():
            results = _drive_inline(tasks, state, report)
        else:
            n = min(workers, len(tasks))
            with blas_limit(n):  # n threads may call BLAS at once: each gets its share
                results = _drive_threads(tasks, state, n, report)
    finally:
        graph._status = task_status(state)
    return {k: results[k] for k in wanted}
