"""Task-graph scheduling state: plain data and the functions that move it on.

This module is the scheduler's brain with the threads taken out, in the manner
of dask's ``dask/local.py``.  A graph is described only by its dependencies, a
``dict`` mapping each task key to the keys it needs.  The state of a run is a
:class:`GraphState` of plain dicts, sets and lists; these functions read and
update it, and nothing here starts a thread, takes a lock or looks at a
clock.  The driver in :mod:`._graph` (worker threads, a result queue, Ctrl-C)
calls them from one thread only, so every ordering, cancellation and memory
rule is tested here without concurrency.

The life of a task::

    waiting --(last dependency finishes)--> ready --start_task--> running
    running --finish_task--> finished          running --fail_task--> failed
    waiting / ready --fail_task or cancel_pending--> cancelled

Rules
-----
* **Checked before anything runs.**  :func:`check_graph` rejects a dependency
  on a key that is not in the graph and any cycle, naming the keys, so a bad
  graph never starts half of its tasks.
* **Order.**  Each key has a priority (by default the order in which the
  tasks were added).  ``ready`` is a stack, as in dask: the first ready tasks
  are pushed so that the highest priority is on top, and the dependents that a
  finishing task makes ready are pushed on top of those, so the run goes depth
  first and intermediate results are freed early.
* **Memory.**  ``waiting_data`` counts, for each finished key, the dependents
  that still need its value; :func:`finish_task` returns the keys whose value
  no one needs any more (and that the caller did not ask for), to be dropped.
* **Failure.**  :func:`fail_task` cancels every task that has not started:
  ``ready`` is emptied and ``waiting`` is cleared.  Tasks already running keep
  running; when they finish they make nothing ready.  The run is over when
  nothing is running and nothing is ready (:func:`is_done`).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "GraphState",
    "STATUSES",
    "cancel_pending",
    "check_graph",
    "cull",
    "fail_task",
    "find_cycle",
    "find_missing",
    "finish_task",
    "is_done",
    "start_state",
    "start_task",
    "task_status",
]

Key = Hashable

#: The statuses :func:`task_status` reports, in life order.
STATUSES = ("waiting", "ready", "running", "finished", "failed", "cancelled")


@dataclass
class GraphState:
    """The state of one run of a task graph.

    Attributes
    ----------
    dependencies : dict
        ``key -> frozenset`` of the keys it needs (constant during a run).
    dependents : dict
        ``key -> frozenset`` of the keys that need it (constant).
    priority : dict
        ``key -> int``; lower runs first among ready tasks (constant).
    keep : frozenset
        Keys whose results are returned, never released.
    waiting : dict
        ``key -> int``: for tasks not yet ready, how many dependencies have
        not finished.
    waiting_data : dict
        ``key -> set``: for finished tasks whose value is still held, the
        dependents that have not finished yet.
    ready : list
        Tasks that can start; the next one is at the end.
    running, finished, failed, cancelled : set
        Tasks in those states.
    """

    dependencies: dict[Key, frozenset[Key]]
    dependents: dict[Key, frozenset[Key]]
    priority: dict[Key, int]
    keep: frozenset[Key]
    waiting: dict[Key, int] = field(default_factory=dict)
    waiting_data: dict[Key, set[Key]] = field(default_factory=dict)
    ready: list[Key] = field(default_factory=list)
    running: set[Key] = field(default_factory=set)
    finished: set[Key] = field(default_factory=set)
    failed: set[Key] = field(default_factory=set)
    cancelled: set[Key] = field(default_factory=set)


def _names(keys: Iterable[Key]) -> str:
    return ", ".join(repr(k) for k in keys)


def find_missing(dependencies: Mapping[Key, Collection[Key]]) -> dict[Key, list[Key]]:
    """Tasks that depend on keys the graph does not have.

    Parameters
    ----------
    dependencies : mapping
        ``key -> keys it needs``.

    Returns
    -------
    dict
        ``key -> [missing keys]``, in the graph's order; empty when none.

    Examples
    --------
    >>> find_missing({"a": [], "b": ["a", "x"]})
    {'b': ['x']}
    """
    missing: dict[Key, list[Key]] = {}
    for key, deps in dependencies.items():
        absent = [d for d in deps if d not in dependencies]
        if absent:
            missing[key] = absent
    return missing


def find_cycle(dependencies: Mapping[Key, Collection[Key]]) -> list[Key] | None:
    """One cycle of the graph, as a closed path of keys, or None.

    Depth-first search without recursion (a chain of 100,000 tasks is fine).
    Keys missing from the graph are ignored here (see :func:`find_missing`).

    Examples
    --------
    >>> find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]})
    ['a', 'c', 'b', 'a']
    >>> find_cycle({"a": [], "b": ["a"]}) is None
    True
    """
    done: set[Key] = set()
    for root in dependencies:
        if root in done:
            continue
        path: list[Key] = [root]
        on_path = {root}
        stack = [iter(dependencies[root])]
        while stack:
            for dep in stack[-1]:
                if dep in on_path:
                    return path[path.index(dep):] + [dep]
                if dep in done or dep not in dependencies:
                    continue
                path.append(dep)
                on_path.add(dep)
                stack.append(iter(dependencies[dep]))
                break
            else:
                stack.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
    return None


#: Keys named at most in a message about the graph (the rest are counted).
_SHOWN = 20


def check_graph(dependencies: Mapping[Key, Collection[Key]]) -> None:
    """Raise ValueError, naming the keys, if a dependency is missing or the graph has a cycle.

    Examples
    --------
    >>> check_graph({"a": [], "b": ["a"]})
    >>> check_graph({"a": ["b"], "b": ["a"]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the task graph has a cycle of 2 tasks: 'a' -> 'b' -> 'a'. ...
    """
    missing = find_missing(dependencies)
    if missing:
        lines = "; ".join(f"task {k!r} needs {_names(v)}"
                          for k, v in itertools.islice(missing.items(), _SHOWN))
        if len(missing) > _SHOWN:
            lines += f"; and {len(missing) - _SHOWN} more tasks"
        raise ValueError(
            f"the task graph depends on keys that are not in it: {lines}. Add those tasks "
            "(graph.add(key, fn, ...)) or fix the references.")
    cycle = find_cycle(dependencies)
    if cycle is not None:
        path = list(map(repr, cycle))
        if len(path) > _SHOWN:  # (a cycle through 100,000 tasks made a 900 KB message)
            path[_SHOWN // 2:-_SHOWN // 2] = [f"... {len(path) - _SHOWN} more ..."]
        raise ValueError(
            f"the task graph has a cycle of {len(cycle) - 1} tasks: {' -> '.join(path)}. "
            "A task cannot "
            "depend, directly or through others, on its own result; remove one of these "
            "dependencies.")


def cull(dependencies: Mapping[Key, Collection[Key]],
         keys: Iterable[Key]) -> dict[Key, tuple[Key, ...]]:
    """The part of the graph that *keys* need: them and everything they depend on.

    The result keeps the graph's order (and each task's dependencies, as a
    tuple, in theirs).  Missing keys are kept as
    dependencies (so :func:`check_graph` still reports them).

    Examples
    --------
    >>> sorted(cull({"a": [], "b": ["a"], "c": []}, ["b"]))
    ['a', 'b']
    """
    needed: set[Key] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key in needed:
            continue
        needed.add(key)
        stack.extend(d for d in dependencies.get(key, ()) if d not in needed)
    return {k: tuple(v) for k, v in dependencies.items() if k in needed}


def start_state(dependencies: Mapping[Key, Collection[Key]], keep: Iterable[Key] | None = None,
                priority: Mapping[Key, int] | None = None) -> GraphState:
    """The state before the first task starts.

    Parameters
    ----------
    dependencies : mapping
        ``key -> keys it needs``; the graph must pass :func:`check_graph`.
    keep : iterable, optional
        Keys whose results are returned and so never released (default: all).
    priority : mapping, optional
        ``key -> int``, lower first (default: the order of *dependencies*).

    Examples
    --------
    >>> s = start_state({"a": [], "b": [], "c": ["a", "b"]})
    >>> s.ready       # the next task is at the end
    ['b', 'a']
    >>> s.waiting
    {'c': 2}
    """
    deps = {k: frozenset(v) for k, v in dependencies.items()}
    rdeps: dict[Key, set[Key]] = {k: set() for k in deps}
    for key, needs in deps.items():
        for d in needs:
            rdeps[d].add(key)
    if priority is None:
        priority = {k: i for i, k in enumerate(deps)}
    state = GraphState(
        dependencies=deps,
        dependents={k: frozenset(v) for k, v in rdeps.items()},
        priority=dict(priority),
        keep=frozenset(deps if keep is None else keep),
    )
    state.waiting = {k: len(v) for k, v in deps.items() if v}
    state.ready = sorted((k for k, v in deps.items() if not v), key=state.priority.__getitem__,
                         reverse=True)
    return state


def start_task(state: GraphState) -> Key | None:
    """Take the next ready task and mark it running; None if none is ready.

    Examples
    --------
    >>> s = start_state({"a": [], "b": ["a"]})
    >>> start_task(s), start_task(s), s.running
    ('a', None, {'a'})
    """
    if not state.ready:
        return None
    key = state.ready.pop()
    state.running.add(key)
    return key


def finish_task(state: GraphState, key: Key) -> tuple[list[Key], list[Key]]:
    """Record that running task *key* succeeded.

    Returns
    -------
    newly_ready : list
        Dependents that became ready (already pushed on ``state.ready``).
    release : list
        Keys whose values no remaining task needs and that are not in
        ``state.keep``: the caller may drop them.

    Examples
    --------
    >>> s = start_state({"a": [], "b": ["a"]}, keep=["b"])
    >>> finish_task(s, start_task(s))
    (['b'], [])
    >>> finish_task(s, start_task(s))    # 'a' is no longer needed
    ([], ['a'])
    """
    state.running.discard(key)
    state.finished.add(key)
    newly: list[Key] = []
    for dep in state.dependents[key]:
        count = state.waiting.get(dep)
        if count is None:  # cancelled after a failure
            continue
        if count == 1:
            del state.waiting[dep]
            newly.append(dep)
        else:
            state.waiting[dep] = count - 1
    newly.sort(key=state.priority.__getitem__, reverse=True)
    state.ready.extend(newly)

    release: list[Key] = []
    pending = {d for d in state.dependents[key] if d not in state.cancelled}
    if pending:
        state.waiting_data[key] = pending
    elif key not in state.keep:
        release.append(key)
    for dep in state.dependencies[key]:
        users = state.waiting_data.get(dep)
        if users is None:
            continue
        users.discard(key)
        if not users:
            del state.waiting_data[dep]
            if dep not in state.keep:
                release.append(dep)
    release.sort(key=state.priority.__getitem__)
    return newly, release


def cancel_pending(state: GraphState) -> list[Key]:
    """Cancel every task that has not started; return them in priority order.

    Running tasks are left alone.  Used on failure and on interrupt.

    Examples
    --------
    >>> s = start_state({"a": [], "b": [], "c": ["a"]})
    >>> start_task(s)
    'a'
    >>> cancel_pending(s), s.ready, s.waiting
    (['b', 'c'], [], {})
    """
    gone = list(state.ready) + list(state.waiting)
    gone.sort(key=state.priority.__getitem__)
    state.cancelled.update(gone)
    state.ready.clear()
    state.waiting.clear()
    for users in state.waiting_data.values():
        users.difference_update(gone)
    return gone


def fail_task(state: GraphState, key: Key) -> list[Key]:
    """Record that running task *key* raised; cancel what has not started.

    Returns the cancelled keys (see :func:`cancel_pending`).

    Examples
    --------
    >>> s = start_state({"a": [], "b": [], "c": ["a", "b"]})
    >>> fail_task(s, start_task(s))
    ['b', 'c']
    >>> is_done(s), s.failed
    (True, {'a'})
    """
    state.running.discard(key)
    state.failed.add(key)
    return cancel_pending(state)


def is_done(state: GraphState) -> bool:
    """Whether the run is over: nothing running and nothing left to start.

    Examples
    --------
    >>> s = start_state({"a": []})
    >>> is_done(s)
    False
    >>> _ = finish_task(s, start_task(s))
    >>> is_done(s)
    True
    """
    return not state.running and not state.ready and not state.waiting


def task_status(state: GraphState) -> dict[Key, str]:
    """Each key's status, one of :data:`STATUSES`, in the graph's order.

    Examples
    --------
    >>> s = start_state({"a": [], "b": ["a"]})
    >>> _ = start_task(s)
    >>> task_status(s)
    {'a': 'running', 'b': 'waiting'}
    """
    ready = set(state.ready)
    out: dict[Key, str] = {}
    for key in state.dependencies:
        if key in state.finished:
            out[key] = "finished"
        elif key in state.failed:
            out[key] = "failed"
        elif key in state.running:
            out[key] = "running"
        elif key in state.cancelled:
            out[key] = "cancelled"
        elif key in ready:
            out[key] = "ready"
        else:
            out[key] = "waiting"
    return out
