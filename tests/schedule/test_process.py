"""schedule.ProcessExecutor: worker processes, NumPy arrays through shared memory."""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import subprocess
import sys
import textwrap
import time
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path

import numba
import numpy as np
import pytest

from loopscale.errors import WorkerError
from loopscale.schedule._process import ProcessExecutor
from loopscale.schedule._sharedmem import Space, dumps

MB = 1 << 20


# Tasks run in the workers, so they live at module level (pickled by reference).
def array_summary(a, scale=1.0):
    return float(a.sum()) * scale, a.shape, a.dtype.str, a.flags.writeable


def identity(a):
    return a


def copied(a):
    return a.copy()


def doubled(a):
    return a * 2


def write_first(a, value):
    a[0] = value
    return float(a[0])


def fill_column(out, column, value):
    out[:, column] = value


def fill_all(out, value):
    out[...] = value


def raise_value_error(x):
    raise ValueError(f"bad value {x}")


def worker_pid(_=None):
    return os.getpid()


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def add(x, y):
    return x + y


@numba.njit(nogil=True)
def compiled_square(x):
    return x * x


class Scaler:
    """A callable with state of its own: pickled with every task, never kept."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k


def failing_initializer():
    raise OSError("no licence server")


def _segments():
    """Our segments in the shared-memory directory (this process's executors)."""
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if directory is None:
        pytest.skip("no /dev/shm on this system")
    return {n for n in os.listdir(directory) if n.startswith(f"loopscale-{os.getpid()}-")}


@pytest.fixture(scope="module")
def ex():
    with ProcessExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture
def pipe_bytes(monkeypatch):
    """Bytes sent to and received from worker processes through their pipes."""
    counts = {"sent": 0, "received": 0}
    send, recv = Connection.send_bytes, Connection.recv_bytes

    def counting_send(self, buf, *args):
        counts["sent"] += len(memoryview(buf).cast("B"))
        return send(self, buf, *args)

    def counting_recv(self, *args):
        data = recv(self, *args)
        counts["received"] += len(data)
        return data

    monkeypatch.setattr(Connection, "send_bytes", counting_send)
    monkeypatch.setattr(Connection, "recv_bytes", counting_recv)
    return counts


@pytest.mark.timeout(60)
def test_a_50_mb_array_argument_and_result_are_not_pickled(ex, pipe_bytes):
    a = np.random.default_rng(0).random(50 * MB // 8)
    ex.submit(worker_pid).result()  # workers up before counting
    pipe_bytes.update(sent=0, received=0)
    total, shape, dtype, writeable = ex.submit(array_summary, a, scale=2.0).result()
    assert total == float(a.sum()) * 2.0 and shape == a.shape and dtype == a.dtype.str
    assert not writeable  # mmap_mode="r": the task cannot change the caller's data
    out = ex.submit(doubled, a).result()
    np.testing.assert_array_equal(out, a * 2)
    assert out.flags.writeable
    assert pipe_bytes["sent"] < 64 * 1024, f"{pipe_bytes['sent']} bytes went through the pipes"
    assert pipe_bytes["received"] < 64 * 1024


@pytest.mark.timeout(30)
def test_the_pickler_replaces_large_arrays_by_references():
    space = Space(f"loopscale-{os.getpid()}-unit-", MB, "r")
    a = np.arange(4 * MB // 8, dtype=np.float64)
    small = np.arange(10.0)
    data, pickler = dumps((a, small), space, unlink_on_receipt=False)
    try:
        assert len(data) < 4096 < a.nbytes
        assert pickler.shared_bytes == a.nbytes
        back, back_small = pickle.loads(data)
        np.testing.assert_array_equal(back, a)
        np.testing.assert_array_equal(back_small, small)
        assert not back.flags.writeable and back_small.flags.writeable
    finally:
        for path in pickler.created:
            os.unlink(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("task", [identity, copied])
@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.arange(MB, dtype=np.float32).reshape(1024, -1)),
    lambda: np.arange(3 * MB // 8, dtype=np.int64)[::3],
    lambda: np.arange(3 * MB // 8, dtype=np.int64)[::-1],
    lambda: np.arange(3 * MB // 8, dtype=np.int64).reshape(3, -1)[:, 5:-7],
    lambda: np.zeros(MB // 4, dtype=[("x", "<f8"), ("n", "<i4")]),
    lambda: np.arange(4, dtype=np.int64),
], ids=["fortran", "strided", "reversed", "sliced-2d", "structured", "small"])
def test_arrays_of_any_layout_arrive_and_return_equal(ex, make, task):
    a = make()
    if a.dtype.names:
        a["x"] = np.arange(a.shape[0]) * 0.5
        a["n"] = np.arange(a.shape[0])
    back = ex.submit(task, a).result()
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)


@pytest.mark.timeout(60)
def test_argument_arrays_are_read_only_unless_copy_on_write_is_asked_for(ex):
    a = np.zeros(2 * MB // 8)
    with pytest.raises(ValueError, match="read-only") as info:
        ex.submit(write_first, a, 5.0).result()
    # the bare NumPy message gets what to do
    notes = "".join(getattr(info.value, "__notes__", ()))
    assert "read-only shared memory" in notes and "mmap_mode='c'" in notes, notes
    assert "share(" in notes and "x.copy()" in notes, notes
    frozen = np.zeros(8)
    frozen.flags.writeable = False  # (a small one, pickled: read-only of its own)
    with pytest.raises(ValueError, match="read-only") as info:
        ex.submit(write_first, frozen, 5.0).result()
    assert not getattr(info.value, "__notes__", None)
    with ProcessExecutor(max_workers=1, mmap_mode="c") as cow:
        assert cow.submit(write_first, a, 5.0).result() == 5.0
    assert a[0] == 0.0  # the task wrote its private copy


def tail_view(a):
    return a[10:]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("task", [identity, tail_view])
def test_an_argument_array_returned_as_the_result_is_writable(ex, task):
    # it comes back by reference to the argument's segment: mapped copy-on-write,
    # so that it is writable as any result is, and the caller's array is untouched
    a = np.arange(2 * MB // 8, dtype=np.float64)
    back = ex.submit(task, a).result()
    assert back.flags.writeable
    back[0] = -1.0
    assert back[0] == -1.0 and a[0] == 0.0 and a[10] == 10.0
    np.testing.assert_array_equal(back[1:], task(a)[1:])


@pytest.mark.timeout(60)
def test_shared_arrays_are_written_in_place_by_tasks(ex):
    out = ex.share(np.zeros((512, 256)))
    futs = [ex.submit(fill_column, out, c, float(c)) for c in range(0, 256, 32)]
    cf.wait(futs, timeout=30)
    [f.result() for f in futs]
    expected = np.zeros((512, 256))
    expected[:, ::32] = np.arange(0, 256, 32)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.timeout(60)
def test_a_shared_0d_array_keeps_its_shape(ex):
    for value in (np.array(4.0), np.array(7, dtype=np.int32)):
        shared = ex.share(value)
        assert shared.shape == () and shared.dtype == value.dtype and shared == value
        ex.submit(fill_all, shared, 9).result()
        assert shared == 9


@pytest.mark.timeout(60)
def test_map_keeps_order_and_workers_are_reused(ex):
    assert list(ex.map(add, range(20), range(20), chunksize=3)) == [2 * i for i in range(20)]
    pids = set(ex.map(worker_pid, range(40)))
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    assert pids == set(ex.map(worker_pid, range(40), chunksize=5)) | pids
    assert len(pids | set(ex.map(worker_pid, range(40)))) <= 2


@pytest.mark.timeout(60)
def test_exceptions_carry_the_worker_traceback(ex):
    with pytest.raises(ValueError, match="bad value 3") as info:
        ex.submit(raise_value_error, 3).result()
    assert "raise_value_error" in str(info.value.__cause__)
    it = ex.map(raise_value_error, [1, 2])
    with pytest.raises(ValueError, match="bad value 1"):
        next(it)
    assert ex.submit(add, 1, 2).result() == 3  # still usable


@pytest.mark.timeout(60)
def test_an_unpicklable_task_fails_its_future_only(ex):
    fut = ex.submit(lambda: 1)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        fut.result(timeout=30)
    assert ex.submit(add, 2, 2).result() == 4


@pytest.mark.timeout(60)
def test_map_timeout_raises(ex):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        list(ex.map(sleep_then, [2.0] * 4, range(4), timeout=0.2))
    assert time.monotonic() - t0 < 1.5


@pytest.mark.timeout(60)
def test_a_crashing_worker_raises_worker_error_promptly_and_cleans_up():
    before = _segments()
    ex = ProcessExecutor(max_workers=2)
    assert ex.submit(array_summary, np.ones(2 * MB // 8)).result()[0] == 2 * MB // 8
    t0 = time.monotonic()
    crash = ex.submit(os._exit, 3)
    queued = []
    for _ in range(4):
        try:
            queued.append(ex.submit(sleep_then, 0.5, np.ones(2 * MB // 8)))
        except WorkerError:  # the crash was seen already: new work is refused, as it should
            break
    with pytest.raises(BrokenProcessPool, match="exited with status 3") as info:
        crash.result(timeout=30)  # as ProcessPoolExecutor's code expects it
    assert isinstance(info.value, WorkerError)
    again = pickle.loads(pickle.dumps(info.value))  # by name: it travels between processes
    assert type(again) is type(info.value) and str(again) == str(info.value)
    assert time.monotonic() - t0 < 10
    for f in queued:
        with pytest.raises(WorkerError):
            f.result(timeout=30)
    with pytest.raises(WorkerError):
        ex.submit(add, 1, 1)
    ex.shutdown()
    assert _segments() == before


@pytest.mark.timeout(60)
def test_shutdown_removes_every_segment_and_refuses_new_work():
    before = _segments()
    ex = ProcessExecutor(max_workers=2)
    shared = ex.share(np.ones(2 * MB // 8))
    results = [ex.submit(doubled, np.full(2 * MB // 8, float(i))) for i in range(6)]
    assert [float(f.result()[0]) for f in results] == [2.0 * i for i in range(6)]
    assert ex.submit(array_summary, shared).result()[0] == 2 * MB // 8
    assert _segments() - before  # the shared array's segment exists until shutdown
    ex.shutdown()
    assert _segments() == before
    assert shared.sum() == 2 * MB // 8  # the caller's mapping outlives the file
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(add, 1, 1)


@pytest.mark.timeout(60)
def test_a_failing_initializer_breaks_the_executor_with_its_traceback():
    with ProcessExecutor(max_workers=1, initializer=failing_initializer) as ex:
        with pytest.raises(WorkerError, match="initializer failed") as info:
            ex.submit(add, 1, 1).result(timeout=30)
        assert "no licence server" in str(info.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError)])
def test_bad_max_workers_is_refused(bad, error):
    with pytest.raises(error, match="max_workers"):
        ProcessExecutor(max_workers=bad)


@pytest.mark.timeout(30)
def test_bad_options_are_refused_with_the_valid_values():
    with pytest.raises(ValueError, match="'r', 'c'"):
        ProcessExecutor(mmap_mode="w+")
    with pytest.raises(ValueError, match="'forkserver', 'spawn', 'fork'"):
        ProcessExecutor(mp_context="threads")
    with pytest.raises(ValueError, match="max_nbytes"):
        ProcessExecutor(max_nbytes=-1)


def _run_script(script: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """Run *script* (with *args*) in its own directory as ``python script.py``."""
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=script.parent)


@pytest.mark.timeout(240)
def test_a_script_s_accelerated_function_compiles_in_the_worker_processes(tmp_path):
    # The script's module (loaded again in each spawned worker) imports Numba and
    # starts its threads before the worker limits its share of the cores: the
    # limit must not make Numba's next compilation fail (it re-reads
    # NUMBA_NUM_THREADS from the environment).  A cold cache: the workers compile.
    script = tmp_path / "script.py"
    script.write_text(
        "import numpy as np\n"
        "import loopscale\n"
        "from loopscale import accelerate\n"
        "from loopscale.schedule import ProcessExecutor\n"
        "\n"
        "@accelerate\n"
        "def total(x):\n"
        "    s = 0.0\n"
        "    for i in range(x.shape[0]):\n"
        "        s += x[i]\n"
        "    return s\n"
        "\n"
        "def run_at(level, x):\n"
        "    with loopscale.level(level):\n"
        "        return total(x)\n"
        "\n"
        "if __name__ == '__main__':\n"
        "    x = np.arange(100_000, dtype=np.float64)\n"
        "    with loopscale.level('serial'):\n"
        "        ref = total(x)\n"
        "    with ProcessExecutor(max_workers=2) as ex:\n"
        "        levels = ('serial', 'threads', 'auto')\n"
        "        got = [ex.submit(run_at, lvl, x).result() for lvl in levels]\n"
        "    assert got == [ref] * 3, (got, ref)\n"
        "    print('ok')\n")
    env = dict(os.environ, LOOPSCALE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NUMBA_NUM_THREADS", None)
    proc = _run_script(script, env=env, timeout=220)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["shutdown(wait=False)", "no shutdown"])
def test_tasks_a_script_queues_at_its_end_all_run(tmp_path, ending):
    # The workers start after the script's last line has run, when Python has
    # deleted __main__.__file__: they must still find the script's function
    # (ProcessPoolExecutor runs all of them too).
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "script.py"
    last = "    ex.shutdown(wait=False)\n" if ending != "no shutdown" else ""
    script.write_text(
        "import sys\n"
        "from loopscale.schedule import ProcessExecutor\n"
        "\n"
        "def touch(i):\n"
        "    open(f'{sys.argv[1]}/{i}', 'w').close()\n"
        "\n"
        "if __name__ == '__main__':\n"
        "    ex = ProcessExecutor(max_workers=2)\n"
        "    futures = [ex.submit(touch, i) for i in range(10)]\n" + last)
    proc = _run_script(script, str(marks))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(int(p.name) for p in marks.iterdir()) == list(range(10)), proc.stderr[-3000:]


@pytest.mark.timeout(120)
def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path):
    # Each worker runs the script's top level again to find its functions: an
    # unguarded script makes an executor there.  The worker says so (file and
    # line) and ends; the caller's error says what happened, with no hang and
    # no process started from a worker.
    head = ("from loopscale.schedule import ProcessExecutor\n"
            "\n"
            "def square(x):\n"
            "    return x * x\n"
            "\n")
    use = ("with ProcessExecutor(max_workers=2) as ex:\n"
           "    print(list(ex.map(square, range(5))))\n")
    script = tmp_path / "noguard.py"
    script.write_text(head + use)
    proc = _run_script(script)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    err = proc.stderr
    assert f"a ProcessExecutor was created ({script}:6) while a worker process" in err, err
    assert 'under `if __name__ == "__main__":`' in err, err
    assert "BrokenProcessPool" in err and "died before it finished a task" in err, err
    # guarded, the same script runs
    script.write_text(head + "if __name__ == '__main__':\n" + textwrap.indent(use, "    "))
    proc = _run_script(script)
    assert proc.returncode == 0 and proc.stdout.strip() == "[0, 1, 4, 9, 16]", proc.stderr


@pytest.mark.timeout(120)
def test_a_function_goes_to_each_worker_once_and_state_is_never_kept(pipe_bytes):
    # a Numba dispatcher pickles by value (about a kilobyte, tens of µs): sent to
    # each worker once, then named by number; a callable object is sent every time
    blob = len(pickle.dumps(compiled_square))
    assert blob > 300
    with ProcessExecutor(max_workers=2) as ex:
        assert list(ex.map(compiled_square, range(4))) == [0, 1, 4, 9]
        pipe_bytes.update(sent=0, received=0)
        assert list(ex.map(compiled_square, range(200))) == [i * i for i in range(200)]
        assert pipe_bytes["sent"] < 200 * blob / 4, (pipe_bytes, blob)
        scale = Scaler(2)
        assert ex.submit(scale, 5).result() == 10
        scale.k = 3
        assert ex.submit(scale, 5).result() == 15
        assert [ex.submit(Scaler(k), 1).result() for k in range(6)] == list(range(6))


@pytest.mark.timeout(120)
def test_a_bound_builtin_method_is_pickled_with_every_task():
    # dict.get is a builtin function bound to a dict whose state may change: it
    # must not be kept by number like a module-level function or a builtin
    table = {"k": 1}
    with ProcessExecutor(max_workers=1) as ex:
        assert ex.submit(table.get, "k").result() == 1
        table["k"] = 2
        assert ex.submit(table.get, "k").result() == 2
        assert ex.submit(len, [1, 2, 3]).result() == 3


@pytest.mark.timeout(120)
def test_short_tasks_are_sent_ahead_but_never_wait_behind_a_long_one():
    with ProcessExecutor(max_workers=2) as ex:
        # short tasks: a worker gets the next one while it runs one (never more)
        futures = [ex.submit(sleep_then, 0.001, i) for i in range(300)]
        depth = 0
        while not all(f.done() for f in futures):
            depth = max([depth, *(len(w.jobs) for w in list(ex._core.workers))])
        assert [f.result() for f in futures] == list(range(300))
        assert depth == 2
        # a task of the same function that runs long: nothing is queued behind it,
        # so the short ones all finish on the other worker while it runs
        t0 = time.monotonic()
        slow = ex.submit(sleep_then, 3.0, "slow")
        time.sleep(0.2)
        short = [ex.submit(sleep_then, 0.002, i) for i in range(40)]
        done, _ = cf.wait(short, timeout=2.0)
        assert len(done) == 40 and not slow.done(), time.monotonic() - t0
        assert slow.result() == "slow"


def pid_and_double(x):
    return os.getpid(), 2 * x


@pytest.mark.timeout(120)
def test_max_tasks_per_child_replaces_workers_and_loses_nothing():
    # as ProcessPoolExecutor(max_tasks_per_child=...) / Pool(maxtasksperchild=...):
    # a worker exits after that many tasks (a map chunk is one) and a fresh one
    # takes its place; no result is lost, no task waits on a worker that exits,
    # and no exited worker is reported as a crash
    with ProcessExecutor(max_workers=2, max_tasks_per_child=3) as ex:
        res = [f.result(timeout=60) for f in [ex.submit(pid_and_double, i) for i in range(10)]]
        assert [r[1] for r in res] == [2 * i for i in range(10)]
        per_pid: dict[int, int] = {}
        for p, _ in res:
            per_pid[p] = per_pid.get(p, 0) + 1
        assert max(per_pid.values()) <= 3 and len(per_pid) >= 4, per_pid
        arrays = [np.full(200_000, float(k)) for k in range(7)]  # through shared memory
        got = list(ex.map(array_summary, arrays, timeout=60))
        assert [g[0] for g in got] == [200_000.0 * k for k in range(7)]
        chunked = list(ex.map(pid_and_double, range(24), chunksize=4, timeout=60))
        assert [c[1] for c in chunked] == [2 * i for i in range(24)]
        assert len({c[0] for c in chunked}) >= 2  # 6 chunks, at most 3 per worker
        assert len(ex._core.workers) <= 2
    assert not ex._core.retired  # every retired worker was joined
    for w in [p for p in per_pid]:
        with pytest.raises(ProcessLookupError):
            os.kill(w, 0)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("3", TypeError)])
def test_bad_max_tasks_per_child_is_refused(bad, error):
    with pytest.raises(error, match="max_tasks_per_child"):
        ProcessExecutor(max_tasks_per_child=bad)
