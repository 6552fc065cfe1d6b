"""Task graphs: the pure state machine (no threads), then runs on worker threads.

The first half drives :mod:`loopscale.schedule._graph_state` by hand, one step
at a time, as dask's ``test_local.py`` does: ordering, ready sets, release of
intermediate values and cancellation are checked exactly, with no thread and
no clock.  The second half runs real graphs: results, concurrency (proved with
a barrier, not timings), failure, Ctrl-C, progress and the Graphviz export.
"""

from __future__ import annotations

import io
import operator
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import weakref

import numba
import pytest

from loopscale.schedule import in_worker
from loopscale.schedule._graph import TaskGraph, TaskRef, run_graph
from loopscale.schedule._graph_state import (
    cancel_pending,
    check_graph,
    cull,
    fail_task,
    find_cycle,
    find_missing,
    finish_task,
    is_done,
    start_state,
    start_task,
    task_status,
)

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def _graph_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopscale-graph-")]


def _drive_serially(dependencies, **kwargs):
    """Run the state machine to the end on one 'worker'; return the start order."""
    state = start_state(dependencies, **kwargs)
    order = []
    while (key := start_task(state)) is not None:
        order.append(key)
        finish_task(state, key)
    assert is_done(state)
    return order, state


# -- the state machine, without threads --------------------------------------------------------


@pytest.mark.timeout(10)
def test_start_state_has_roots_ready_and_counts_unfinished_dependencies():
    state = start_state(DIAMOND)
    assert state.ready == ["a"]
    assert state.waiting == {"b": 1, "c": 1, "d": 2}
    assert state.dependents == {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}
    assert state.running == state.finished == set()
    assert task_status(state) == {"a": "ready", "b": "waiting", "c": "waiting", "d": "waiting"}


@pytest.mark.timeout(10)
def test_finishing_the_last_dependency_makes_a_task_ready():
    state = start_state(DIAMOND)
    assert start_task(state) == "a"
    assert start_task(state) is None  # nothing else is ready while 'a' runs
    newly, _ = finish_task(state, "a")
    assert newly == ["c", "b"]  # pushed so that 'b' (added first) is on top
    assert start_task(state) == "b"
    assert finish_task(state, "b")[0] == []  # 'd' still waits for 'c'
    assert state.waiting == {"d": 1}
    assert start_task(state) == "c"
    assert finish_task(state, "c")[0] == ["d"]
    assert task_status(state)["d"] == "ready"


@pytest.mark.timeout(10)
def test_serial_order_respects_dependencies_and_goes_depth_first():
    deps = {"x1": [], "x2": [], "y1": ["x1"], "y2": ["x2"], "z": ["y1", "y2"]}
    order, state = _drive_serially(deps)
    assert order == ["x1", "y1", "x2", "y2", "z"]  # finish one branch before the next
    for key, needs in deps.items():
        assert all(order.index(n) < order.index(key) for n in needs)
    assert state.finished == set(deps)


@pytest.mark.timeout(10)
def test_priority_decides_among_ready_tasks():
    deps = {"a": [], "b": [], "c": []}
    order, _ = _drive_serially(deps, priority={"a": 2, "b": 0, "c": 1})
    assert order == ["b", "c", "a"]


@pytest.mark.timeout(10)
def test_values_are_released_once_no_remaining_task_needs_them():
    state = start_state({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, keep=["d"])
    released = []
    while (key := start_task(state)) is not None:
        released.append((key, finish_task(state, key)[1]))
    assert released == [("a", []), ("b", []), ("c", ["a"]), ("d", ["b", "c"])]
    assert state.waiting_data == {}


@pytest.mark.timeout(10)
def test_kept_keys_are_never_released():
    state = start_state({"a": [], "b": ["a"]}, keep=["a", "b"])
    released = []
    while (key := start_task(state)) is not None:
        released += finish_task(state, key)[1]
    assert released == []


@pytest.mark.timeout(10)
def test_failure_cancels_every_task_not_started_and_lets_running_ones_finish():
    deps = {"a": [], "b": [], "c": [], "d": ["a"], "e": ["b", "d"]}
    state = start_state(deps)
    assert [start_task(state), start_task(state)] == ["a", "b"]  # two workers busy
    cancelled = fail_task(state, "a")
    assert cancelled == ["c", "d", "e"]
    assert state.ready == [] and state.waiting == {}
    assert not is_done(state)  # 'b' is still running
    assert start_task(state) is None  # nothing new may start
    newly, _ = finish_task(state, "b")
    assert newly == []  # its dependent 'e' was cancelled
    assert is_done(state)
    assert task_status(state) == {"a": "failed", "b": "finished", "c": "cancelled",
                                  "d": "cancelled", "e": "cancelled"}


@pytest.mark.timeout(10)
def test_cancel_pending_leaves_running_tasks_running():
    state = start_state(DIAMOND)
    start_task(state)
    assert cancel_pending(state) == ["b", "c", "d"]
    assert state.running == {"a"}
    assert task_status(state)["a"] == "running"


@pytest.mark.timeout(10)
def test_missing_dependencies_are_found_and_named():
    assert find_missing({"a": ["x"], "b": ["a", "y", "z"]}) == {"a": ["x"], "b": ["y", "z"]}
    with pytest.raises(ValueError, match=r"task 'b' needs 'y', 'z'") as info:
        check_graph({"a": [], "b": ["a", "y", "z"]})
    assert "not in it" in str(info.value)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("deps, cycle", [
    ({"a": ["a"]}, ["a", "a"]),
    ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
    ({"r": [], "a": ["r", "c"], "b": ["a"], "c": ["b"]}, ["a", "c", "b", "a"]),
])
def test_cycles_are_found_as_closed_paths(deps, cycle):
    assert find_cycle(deps) == cycle
    with pytest.raises(ValueError, match=f"cycle of {len(cycle) - 1} tasks: "
                       + re.escape(" -> ".join(map(repr, cycle)))):
        check_graph(deps)


@pytest.mark.timeout(10)
def test_a_long_chain_is_checked_without_recursion():
    n = 100_000
    deps = {0: []} | {i: [i - 1] for i in range(1, n)}
    assert find_cycle(deps) is None
    deps[0] = [n - 1]
    assert len(find_cycle(deps)) == n + 1
    with pytest.raises(ValueError) as info:  # named in a message of a readable size
        check_graph(deps)
    text = str(info.value)
    assert len(text) < 1000 and f"cycle of {n} tasks" in text and "more ..." in text, text
    missing = {k: [-k] for k in range(1, 51)}
    with pytest.raises(ValueError, match="and 30 more tasks") as info:
        check_graph(missing)
    assert len(str(info.value)) < 1500


@pytest.mark.timeout(10)
def test_cull_keeps_only_what_the_requested_keys_need():
    deps = {"a": [], "b": ["a"], "c": [], "d": ["c"], "e": ["b"]}
    assert list(cull(deps, ["b"])) == ["a", "b"]
    assert list(cull(deps, ["e", "d"])) == ["a", "b", "c", "d", "e"]


# -- running graphs ----------------------------------------------------------------------------


@numba.njit(nogil=True)
def _triangle(n):
    s = 0
    for i in range(n + 1):
        s += i
    return s


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_workers", [1, 2, 4])
def test_diamond_graph_of_plain_and_compiled_callables(max_workers):
    graph = TaskGraph()
    a = graph.add("a", _triangle, 100)  # a Numba dispatcher is just a callable
    b = graph.add("b", operator.mul, a, 2)
    c = graph.add("c", lambda x, *, plus: x + plus, a, plus=1)
    graph.add("d", lambda pair, extra: pair[0] + pair[1] + extra["k"], (b, c), {"k": a})
    assert graph.run(max_workers=max_workers) == {"a": 5050, "b": 10100, "c": 5051,
                                                  "d": 20201}
    assert graph.status == dict.fromkeys("abcd", "finished")
    assert _graph_threads() == []


@pytest.mark.timeout(30)
def test_independent_tasks_run_concurrently_but_never_beyond_max_workers():
    workers = 4
    barrier = threading.Barrier(workers, timeout=10)  # passes only when 4 tasks overlap
    lock = threading.Lock()
    running = 0
    most = 0

    def task(i):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            barrier.wait()
            time.sleep(0.01)
        finally:
            with lock:
                running -= 1
        return i * i

    graph = TaskGraph()
    for i in range(3 * workers):
        graph.add(i, task, i)
    assert graph.run(max_workers=workers) == {i: i * i for i in range(3 * workers)}
    assert most == workers


@pytest.mark.timeout(30)
def test_workers_count_as_a_parallel_region_so_nested_work_runs_serially():
    inner = TaskGraph()
    inner.add("x", operator.add, 1, 2)
    graph = TaskGraph()
    graph.add("flag", in_worker)
    graph.add("nested", lambda: (in_worker(), run_graph(inner, max_workers=4)))
    out = graph.run(max_workers=2)
    assert out["flag"] is True
    assert out["nested"] == (True, {"x": 3})
    assert graph.run(max_workers=1)["flag"] is False  # one worker: the pool stays available


@pytest.mark.timeout(60)
def test_a_thousand_task_graph_gives_the_serial_answer():
    rng = random.Random(12345)
    n = 1000
    parents = {i: rng.sample(range(i), k=min(i, rng.randint(0, 4))) for i in range(n)}
    expected = {}
    for i in range(n):  # the reference, in topological order
        expected[i] = (i + sum(expected[p] for p in parents[i])) % 1_000_003

    def combine(i, *values):
        return (i + sum(values)) % 1_000_003

    graph = TaskGraph()
    for i in rng.sample(range(n), n):  # added in random order, through forward references
        graph.add(i, combine, i, *[graph.ref(p) for p in parents[i]])
    assert graph.run(max_workers=4) == {i: expected[i] for i in graph}
    assert graph.run([n - 1, 0], max_workers=3) == {n - 1: expected[n - 1], 0: expected[0]}


@pytest.mark.timeout(30)
def test_refs_inside_named_tuples_sets_and_dataclasses_are_resolved():
    import collections
    import dataclasses

    Pair = collections.namedtuple("Pair", "left right")

    @dataclasses.dataclass(frozen=True)
    class Job:
        data: object
        scale: int = 1

    graph = TaskGraph()
    a = graph.add("a", int, 2)
    b = graph.add("b", int, 3)
    graph.add("pair", lambda p: (type(p).__name__, p.left * p.right), Pair(a, b))
    graph.add("set", sorted, {a, b})
    graph.add("job", lambda j: (type(j).__name__, j.data["x"][0] * j.scale), Job({"x": [a]}, 5))
    got = graph.run(keys=["pair", "set", "job"], max_workers=2)
    assert got == {"pair": ("Pair", 6), "set": [2, 3], "job": ("Job", 10)}
    assert graph.dependencies["job"] == frozenset({"a"})


@pytest.mark.timeout(30)
def test_a_dataclass_with_a_back_reference_is_walked_once():
    import dataclasses

    @dataclasses.dataclass(eq=False)
    class Node:
        value: object
        parent: object = None
        children: list = dataclasses.field(default_factory=list)

    graph = TaskGraph()
    a = graph.add("a", int, 7)
    root = Node(a)
    root.children.append(Node(1, parent=root))  # a cycle: root -> child -> root
    graph.add("sum", lambda n: n.value + n.children[0].value, root)
    assert graph.run(keys=["sum"], max_workers=2) == {"sum": 8}


@pytest.mark.timeout(30)
def test_graph_tasks_run_from_a_farm_task_never_pick_a_collective_level():
    from loopscale import config

    graph = TaskGraph()
    for k in range(4):
        graph.add(k, config.collectives_allowed)
    with config.without_collectives():
        assert set(graph.run(max_workers=2).values()) == {False}
    assert set(graph.run(max_workers=2).values()) == {True}


@pytest.mark.timeout(30)
def test_a_tuple_key_asked_for_alone_is_one_key():
    graph = TaskGraph()
    graph.add(("x", 0), int, 4)
    graph.add(("x", 1), int, 5)
    assert graph.run(keys=("x", 1), max_workers=2) == {("x", 1): 5}
    assert graph.run(keys=[("x", 0), ("x", 1)], max_workers=2) == {("x", 0): 4, ("x", 1): 5}


@pytest.mark.timeout(30)
def test_only_the_tasks_the_requested_keys_need_are_run():
    calls = []
    graph = TaskGraph()
    a = graph.add("a", calls.append, "a")
    graph.add("b", lambda _: calls.append("b"), a)
    graph.add("c", calls.append, "c")
    assert graph.run(keys="b", max_workers=2) == {"b": None}
    assert sorted(calls) == ["a", "b"]
    with pytest.raises(ValueError, match=r"keys not in the graph: 'zz'"):
        graph.run(keys=["b", "zz"])


class _Blob:
    pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize("keys, freed", [(["c"], True), (["a", "c"], False)])
def test_intermediate_results_are_dropped_once_no_task_needs_them(keys, freed):
    refs = []

    def make():
        blob = _Blob()
        refs.append(weakref.ref(blob))
        return blob

    def is_freed(_, patience):
        deadline = time.monotonic() + patience
        while refs[0]() is not None and time.monotonic() < deadline:
            time.sleep(0.005)
        return refs[0]() is None

    graph = TaskGraph()
    a = graph.add("a", make)
    b = graph.add("b", lambda blob: 1, a)
    graph.add("c", is_freed, b, 2.0 if freed else 0.2)
    assert graph.run(keys, max_workers=2)["c"] is freed


@pytest.mark.timeout(30)
def test_first_failure_cancels_what_has_not_started_and_is_raised_once_with_its_key():
    started = []
    lock = threading.Lock()
    slow_done = threading.Event()

    def bad():
        raise ValueError("no such column")

    def slow():
        time.sleep(0.2)
        slow_done.set()

    def count(i):
        with lock:
            started.append(i)
        time.sleep(0.01)

    graph = TaskGraph()
    b = graph.add("bad", bad)
    graph.add("slow", slow)
    for i in range(50):
        graph.add(("work", i), count, i)
    graph.add("after-bad", count, b)

    with pytest.raises(ValueError) as info:
        graph.run(max_workers=2)
    err = info.value
    assert type(err) is ValueError
    assert str(err) == "no such column (raised in task 'bad')"
    assert err.task_key == "bad"
    cause = err.__cause__
    assert type(cause) is ValueError and str(cause) == "no such column"
    assert "bad" in [f.co_name for f in _frames(cause.__traceback__)]  # the worker's traceback
    assert cause.__cause__ is None
    assert slow_done.is_set()  # the running task finished before the caller was told
    assert started == []  # both workers were busy: nothing else ever started
    status = graph.status
    assert status["bad"] == "failed" and status["slow"] == "finished"
    assert {status[("work", i)] for i in range(50)} == {"cancelled"}
    assert status["after-bad"] == "cancelled"
    assert _graph_threads() == []
    assert graph.run(keys=["slow"], max_workers=2) == {"slow": None}  # usable again


def _frames(tb):
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


class _TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


class _HTTPError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


@pytest.mark.timeout(30)
def test_a_task_exception_keeps_its_type_arguments_and_attributes():
    """The caller's exception is a copy of the task's (same type, args and
    attributes), naming the task in its message, or in a note where the message
    is not its one string argument; one that cannot be copied comes itself."""
    import json
    import subprocess

    cases = [
        (_HTTPError(503), "HTTP 503 (raised in task ('save', 3))", {"status": 503}),
        (FileNotFoundError(2, "No such file", "x.txt"), None,
         {"errno": 2, "filename": "x.txt"}),
        (json.JSONDecodeError("bad", "doc", 1), "(raised in task ('save', 3))",
         {"doc": "doc", "pos": 1}),
        (subprocess.CalledProcessError(3, "ls"), None, {"returncode": 3, "cmd": "ls"}),
        (KeyError("k"), None, {"args": ("k",)}),
        (_TwoArgError(7, "disk full"), None, {"args": ("7: disk full",)}),
    ]
    for original, message, attributes in cases:
        def fail(original=original):
            raise original

        graph = TaskGraph()
        graph.add(("save", 3), fail)
        with pytest.raises(type(original)) as info:
            graph.run(max_workers=2)
        got = info.value
        for name, value in attributes.items():
            assert getattr(got, name) == value, (original, name)
        assert got.task_key == ("save", 3)
        if message is not None:
            assert message in str(got)
            assert got.__cause__ is original
        else:
            assert "raised in task ('save', 3)" in getattr(got, "__notes__", []), original
        if isinstance(original, _TwoArgError):  # cannot be rebuilt from its args
            assert got is original


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["cycle", "missing"])
def test_bad_graphs_are_rejected_before_any_task_runs(kind):
    calls = []
    graph = TaskGraph()
    graph.add("root", calls.append, 1)
    if kind == "cycle":
        graph.add("p", calls.append, graph.ref("q"))
        graph.add("q", calls.append, graph.ref("p"))
        message = r"cycle of 2 tasks: 'p' -> 'q' -> 'p'"
    else:
        graph.add("p", calls.append, [graph.ref("nowhere")])
        message = r"task 'p' needs 'nowhere'"
    with pytest.raises(ValueError, match=message):
        graph.run(max_workers=2)
    assert calls == []
    assert "-> t1" in graph.to_dot()  # a broken graph can still be looked at


@pytest.mark.timeout(30)
def test_ctrl_c_while_waiting_is_raised_at_once_and_starts_nothing_new():
    release = threading.Event()
    started = []

    def hold(name):
        started.append(name)
        release.wait(10)

    graph = TaskGraph()
    graph.add("long-1", hold, "long-1")
    graph.add("long-2", hold, "long-2")
    for i in range(20):
        graph.add(i, hold, i)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            graph.run(max_workers=2)
        elapsed = time.perf_counter() - t0
    finally:
        timer.cancel()
        release.set()
    assert elapsed < 1.5
    status = graph.status
    assert status["long-1"] == status["long-2"] == "running"
    assert {status[i] for i in range(20)} == {"cancelled"}
    for t in _graph_threads():  # the workers leave once their task returns
        t.join(5)
    assert _graph_threads() == []
    assert sorted(started, key=str) == ["long-1", "long-2"]
    assert graph.run(keys=[0], max_workers=2) == {0: None}


@pytest.mark.timeout(30)
def test_progress_callback_sees_every_task_finish_on_the_calling_thread():
    seen = []
    caller = threading.get_ident()
    graph = TaskGraph()
    for i in range(5):
        graph.add(i, operator.neg, i)
    graph.run(max_workers=3,
              progress=lambda done, total: seen.append((done, total, threading.get_ident())))
    assert [(d, t) for d, t, _ in seen] == [(i, 5) for i in range(6)]
    assert {ident for *_, ident in seen} == {caller}


@pytest.mark.timeout(30)
def test_progress_true_prints_only_to_a_terminal(monkeypatch, capsys):
    graph = TaskGraph()
    for i in range(3):
        graph.add(i, abs, i)
    graph.run(progress=True)  # pytest's captured stderr is not a terminal
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    graph.run(progress=True)
    text = term.getvalue()
    assert text.startswith("\r[loopscale] ") and text.endswith("3/3 tasks\n")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_workers": 0}, ValueError, "max_workers must be greater than 0"),
    ({"max_workers": 1.5}, TypeError, "max_workers must be a positive integer"),
    ({"progress": "bar"}, TypeError, "progress must be None, True, False or a callable"),
])
def test_bad_run_options_are_rejected(kwargs, error, message):
    graph = TaskGraph()
    graph.add("a", abs, 1)
    with pytest.raises(error, match=message):
        graph.run(**kwargs)


@pytest.mark.timeout(10)
def test_bad_tasks_are_rejected_when_added():
    graph = TaskGraph()
    assert graph.add("a", abs, -1) == TaskRef("a")
    with pytest.raises(ValueError, match="'a' is already in the graph"):
        graph.add("a", abs, -2)
    with pytest.raises(TypeError, match="must be hashable"):
        graph.add(["a"], abs, 1)
    with pytest.raises(TypeError, match="fn must be callable"):
        graph.add("b", 42)
    assert len(graph) == 1 and "a" in graph and graph.dependencies == {"a": frozenset()}
    with pytest.raises(TypeError, match="expects a TaskGraph"):
        run_graph({"a": (abs, 1)})


# -- viewing -----------------------------------------------------------------------------------

_NODE = re.compile(r'^  (\w+) \[label="((?:[^"\\]|\\.)*)"(.*)\];$')
_EDGE = re.compile(r"^  (\w+) -> (\w+);$")


def _parse_dot(text):
    lines = text.splitlines()
    assert lines[0] == "digraph taskgraph {" and lines[-1] == "}"
    nodes, edges = {}, set()
    for line in lines[1:-1]:
        if m := _NODE.match(line):
            nodes[m.group(1)] = (m.group(2), m.group(3))
        elif m := _EDGE.match(line):
            edges.add((m.group(1), m.group(2)))
        else:
            assert line.startswith(("  rankdir=", "  node [")), line
    return nodes, edges


def _dot_graph():
    graph = TaskGraph()
    a = graph.add("load", _triangle, 3)
    b = graph.add('say "hi"', str, a)
    c = graph.add(("part", 1), operator.neg, a)
    graph.add("join", lambda *v: v, b, c)
    return graph


@pytest.mark.timeout(30)
def test_to_dot_has_one_labelled_node_per_task_and_one_edge_per_dependency():
    nodes, edges = _parse_dot(_dot_graph().to_dot())
    labels = {i: label for i, (label, _) in nodes.items()}
    assert labels == {"t0": r"load\n_triangle", "t1": r"say \"hi\"\nstr",
                      "t2": r"('part', 1)\nneg",
                      "t3": r"join\n_dot_graph.<locals>.<lambda>"}
    assert edges == {("t0", "t1"), ("t0", "t2"), ("t1", "t3"), ("t2", "t3")}
    if shutil.which("dot"):  # Graphviz itself accepts it
        subprocess.run(["dot", "-Tcanon"], input=_dot_graph().to_dot(), text=True, check=True,
                       capture_output=True, timeout=30)


@pytest.mark.timeout(30)
def test_to_dot_colours_nodes_by_their_status_after_a_run():
    graph = TaskGraph()
    a = graph.add("ok", abs, -1)
    graph.add("boom", operator.truediv, a, 0)
    graph.add("later", abs, graph.ref("boom"))
    before, _ = _parse_dot(graph.to_dot())
    assert all("fillcolor" not in attrs for _, attrs in before.values())
    with pytest.raises(ZeroDivisionError):
        graph.run(max_workers=2)
    after, _ = _parse_dot(graph.to_dot())
    colours = {i: re.search(r"fillcolor=(\w+)", attrs).group(1) for i, (_, attrs) in
               after.items()}
    assert colours == {"t0": "palegreen", "t1": "salmon", "t2": "lightgrey"}
    with pytest.raises(ValueError, match="rankdir must be one of"):
        graph.to_dot(rankdir="up")


@pytest.mark.timeout(30)
def test_visualize_writes_the_dot_file(tmp_path):
    graph = _dot_graph()
    out = graph.visualize(tmp_path / "pipeline.dot", rankdir="LR")
    assert out == tmp_path / "pipeline.dot"
    assert out.read_text() == graph.to_dot(rankdir="LR")
    assert graph.visualize(tmp_path / "plain").read_text() == graph.to_dot()
    with pytest.raises(ValueError, match=r"\.svg"):
        graph.visualize(tmp_path / "pipeline.jpeg")


@pytest.mark.timeout(30)
def test_visualize_names_the_missing_dot_program(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(FileNotFoundError, match=r"Graphviz program 'dot'.*not on PATH"):
        _dot_graph().visualize(tmp_path / "g.png")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")  # the text is still written
    assert not (tmp_path / "g.png").exists()


@pytest.mark.timeout(30)
@pytest.mark.skipif(os.name != "posix", reason="a shell-script stand-in for dot")
def test_visualize_calls_dot_to_render_and_reports_its_failure(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "dot"
    fake.write_text('#!/bin/sh\necho "$@" > "$3"\n[ "$1" = "-Tsvg" ] || '
                    '{ echo "bad format $1" >&2; exit 3; }\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    graph = _dot_graph()
    out = graph.visualize(tmp_path / "g.svg")
    assert out.read_text().split() == ["-Tsvg", "-o", str(tmp_path / "g.svg"),
                                       str(tmp_path / "g.dot")]
    with pytest.raises(RuntimeError, match=r"status 3\): bad format -Tpdf"):
        graph.visualize(tmp_path / "g.pdf")


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_visualize_renders_an_image_with_graphviz(tmp_path, suffix, magic):
    graph = _dot_graph()
    graph.run(max_workers=2)
    out = graph.visualize(tmp_path / f"g{suffix}")
    assert out.read_bytes().startswith(magic)
    assert (tmp_path / "g.dot").is_file()
