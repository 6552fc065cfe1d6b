"""``loopscale profile`` on real scripts, each in a child process with a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from loopscale.profiler._render_json import LOOP_KEYS

PROFILE = [sys.executable, "-m", "loopscale.profiler"]


def _write(tmp_path, name, code):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def _profile(args, *, timeout=90, env=None, cwd=None):
    child_env = dict(os.environ)
    child_env.update(env or {})
    return subprocess.run(PROFILE + list(args), capture_output=True, text=True,
                          timeout=timeout, env=child_env, cwd=cwd)


SPLIT = '''\
    import json, sys, time

    def small(x):
        return x * 3 + 1

    def run(n, m):
        t0 = time.perf_counter()
        total = 0
        for i in range(n):              # loop A: calls a function per iteration
            total += small(i)
        t1 = time.perf_counter()
        acc = 0.0
        for j in range(m):              # loop B: plain arithmetic
            acc += j * 0.5
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    # plant an 80/20 split: time the loops, size them, sum every run's times
    n = m = 200_000
    ta = tb = 0.0
    for _ in range(3):
        a, b = run(n, m)
        ta, tb = ta + a, tb + b
        n, m = int(n * 0.8 / a), int(m * 0.2 / b)
    json.dump({"a": ta, "b": tb}, open(sys.argv[1], "w"))
'''


@pytest.mark.timeout(120)
def test_planted_80_20_split_is_reported_within_5_points(tmp_path):
    script = _write(tmp_path, "split.py", SPLIT)
    truth, out = tmp_path / "truth.json", tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script, str(truth)])
    assert proc.returncode == 0, proc.stderr
    times = json.loads(truth.read_text())
    report = json.loads(out.read_text())
    total = report["total_seconds"]
    loops = {lp["line"]: lp for lp in report["loops"]}
    # planted near 80/20 (the machine's timing noise moves it a little)
    assert times["a"] / (times["a"] + times["b"]) == pytest.approx(0.8, abs=0.15)
    for line, key in ((9, "a"), (13, "b")):
        assert loops[line]["fraction"] == pytest.approx(times[key] / total, abs=0.05), loops
    # loop A's callee is inclusive, not self time
    assert loops[9]["self_seconds"] < loops[9]["inclusive_seconds"]


@pytest.mark.timeout(60)
def test_gil_holding_c_call_is_charged_to_its_line(tmp_path):
    script = _write(tmp_path, "sort.py", '''\
        import random, sys
        from loopscale.profiler import profile
        data = [random.random() for _ in range(3_000_000)]
        with profile(check="none") as p:
            ordered = sorted(data)
        r = p.report
        share = r.line_seconds.get((__file__, 5), 0.0) / r.total_seconds
        native = sum(s.weight for s in r.session.samples if s.native) / r.total_seconds
        print(share, native)
    ''')
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stderr
    share, native = map(float, proc.stdout.split())
    assert share >= 0.8
    assert native >= 0.5  # the sort is a C call: mostly native time


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("body", "status", "partial"), [
    ("import sys\nsys.exit(3)\n", 3, False),
    ("raise ValueError('boom')\n", 1, True),
    ("raise KeyboardInterrupt\n", 130, True),
    ("x = 1\n", 0, False),
])
def test_exit_status_is_preserved_and_report_written(tmp_path, body, status, partial):
    script = _write(tmp_path, "s.py", "for i in range(20000):\n    pass\n" + body)
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == status, proc.stderr
    report = json.loads(out.read_text())
    assert report["partial"] is partial and report["exit_status"] == status
    if status == 1:
        assert proc.stderr.startswith("Traceback (most recent call last):\n  File \""
                                      + script)
        assert "ValueError: boom" in proc.stderr and "loopscale" not in proc.stderr.split(
            "ValueError")[0]


@pytest.mark.timeout(60)
def test_ctrl_c_writes_a_partial_report_and_exits_130(tmp_path):
    script = _write(tmp_path, "spin.py", '''\
        import sys
        print("ready", flush=True)
        while True:
            pass
    ''')
    out = tmp_path / "r.json"
    proc = subprocess.Popen(PROFILE + ["--check", "none", "--json", str(out), script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "KeyboardInterrupt" in err
    report = json.loads(out.read_text())
    assert report["partial"] is True and report["loops"][0]["line"] == 3


def _python(args, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd)


@pytest.mark.timeout(60)
def test_missing_script_gives_pythons_message_and_status(tmp_path):
    ours = _profile(["nope.py"], cwd=tmp_path)
    theirs = _python(["nope.py"], cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 2
    assert ours.stderr.split(": ", 1)[1] == theirs.stderr.split(": ", 1)[1]


@pytest.mark.timeout(60)
def test_syntax_error_gives_pythons_message_and_status(tmp_path):
    _write(tmp_path, "bad.py", "x = 1\ndef (:\n")
    ours = _profile(["bad.py"], cwd=tmp_path)
    theirs = _python(["bad.py"], cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr


@pytest.mark.timeout(60)
def test_script_needing_arguments_fails_as_under_python(tmp_path):
    _write(tmp_path, "args.py", '''\
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("n", type=int)
        print(p.parse_args().n * 2)
    ''')
    ours = _profile(["--check", "none", "args.py"], cwd=tmp_path)
    theirs = _python(["args.py"], cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 2
    assert theirs.stderr.strip() in ours.stderr
    ok = _profile(["--check", "none", "args.py", "21"], cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, "42\n")


@pytest.mark.timeout(60)
def test_script_installing_its_own_sigalrm_handler_still_gets_its_signals(tmp_path):
    script = _write(tmp_path, "alarm.py", '''\
        import signal, time
        hits = []
        signal.signal(signal.SIGALRM, lambda s, f: hits.append(s))
        signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            sum(range(1000))
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        print(len(hits))
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 10  # the script's handler ran, about 30 times
    report = json.loads(out.read_text())
    assert report["mode"] == "thread"
    assert any("SIGALRM" in m for m in report["messages"])
    assert report["loops"] and report["loops"][0]["line"] == 6  # still sampled


@pytest.mark.timeout(60)
def test_existing_handler_makes_profile_use_a_thread_and_mode_signal_refuses(tmp_path):
    script = _write(tmp_path, "pre.py", '''\
        import signal
        from loopscale.profiler import profile
        signal.signal(signal.SIGALRM, lambda s, f: None)
        with profile(check="none") as p:
            sum(i * i for i in range(300_000))
        print(p.session.mode, p.session.messages[0])
        try:
            with profile(mode="signal"):
                pass
        except RuntimeError as exc:
            print(exc)
    ''')
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("thread sampling with a thread: SIGALRM already has a handler")
    assert second.startswith("cannot sample with SIGALRM")


KERNEL = '''\
    import numpy as np

    def kernel(x, out):
        for i in range(x.shape[0]):
            out[i] = x[i] * x[i] + 1.0

    def lookup(d, keys):
        s = 0
        for k in keys:
            s += d[k]
        return s

    x = np.random.rand(20_000)
    out = np.empty_like(x)
    for _ in range(15):
        kernel(x, out)
    d = {i: i for i in range(1000)}
    for _ in range(400):  # ~25 % of the run: well above the 5 % a verdict needs, even
        lookup(d, list(range(1000)) * 5)  # on a loaded machine
'''


@pytest.mark.timeout(150)
def test_verdicts_trial_diff_html_and_json(tmp_path):
    _write(tmp_path, "k.py", KERNEL)
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    proc = _profile(["--trial", "--diff", "--json", str(out), "--html", str(page), "k.py"],
                    cwd=tmp_path, timeout=140)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report) >= {"total_seconds", "samples", "loops"}
    assert isinstance(report["total_seconds"], float) and isinstance(report["samples"], int)
    loops = {lp["line"]: lp for lp in report["loops"]}
    for loop in report["loops"]:
        assert list(loop) == list(LOOP_KEYS)
    assert loops[4]["accelerable"] is True and loops[4]["speedup"] > 1.0
    assert loops[9]["accelerable"] is False and "dict" in loops[9]["reason"], \
        (loops[9]["fraction"], loops[9]["reason"])
    assert loops[15]["accelerable"] is False and "module level" in loops[15]["reason"]
    html = page.read_text()
    assert "out[i] = x[i] * x[i] + 1.0" in html and "http" not in html
    # the patch applies and the patched script runs
    assert "+@accelerate\n def kernel(x, out):" in proc.stdout
    assert proc.stdout.count("+@accelerate") == 1
    applied = subprocess.run(["patch", "-p0"], input=proc.stdout, text=True, cwd=tmp_path,
                             capture_output=True, timeout=30)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert subprocess.run([sys.executable, "k.py"], cwd=tmp_path, timeout=90).returncode == 0


@pytest.mark.timeout(60)
def test_each_mpi_rank_writes_its_own_report(tmp_path):
    script = _write(tmp_path, "r.py", "for i in range(100000):\n    pass\n")
    proc = _profile(["--check", "none", "--json", "out.json", script], cwd=tmp_path,
                    env={"PMI_RANK": "1", "PMI_SIZE": "2"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.rank1.json").read_text())["rank"] == 1
    assert (tmp_path / "loopscale-profile.rank1.txt").exists()
    assert not (tmp_path / "out.json").exists()


@pytest.mark.timeout(180)
def test_scheduler_threads_time_is_charged_to_the_loop_that_started_them(tmp_path):
    # a loop calling an accelerated function at the threads level: the pool
    # threads' compiled chunks must count for that loop's line, not for
    # loopscale's pool frames
    script = _write(tmp_path, "threaded.py", '''\
        import math, threading
        import numpy as np
        import loopscale
        from loopscale import accelerate
        from loopscale.profiler import profile

        @accelerate
        def heavy(x, out):
            for i in range(x.shape[0]):
                v = x[i]
                for k in range(400):
                    v = math.sin(v) + 0.5
                out[i] = v

        x = np.linspace(0.0, 1.0, 40_000)
        out = np.empty_like(x)
        with loopscale.level("threads", max_workers=2):
            heavy(x, out)                      # compile outside the profile
            with profile(check="none", timer="wall") as p:
                for rep in range(12):
                    heavy(x, out)              # line 21
        r = p.report
        main = threading.main_thread().ident
        worker = sum(s.weight for s in r.session.samples if s.thread != main)
        on_line = sum(s.weight for s in r.session.samples
                      if any(f[0] == __file__ and f[1] == 21 for f in s.stack))
        total = sum(s.weight for s in r.session.samples)
        print(worker / total, on_line / total)
    ''')
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=170)
    assert proc.returncode == 0, proc.stderr
    worker, on_line = map(float, proc.stdout.split())
    assert worker > 0.2  # the pool thread was sampled
    assert on_line > 0.9  # and its time belongs to the loop's line


@pytest.mark.timeout(60)
def test_a_loop_body_ending_in_an_if_is_charged_to_the_loop(tmp_path):
    # on Python 3.11 the jump back to the loop's head has no line number
    script = _write(tmp_path, "tail_if.py", '''\
        def poke(n):
            s = 0
            for i in range(n):
                s += i
                if i < 0:
                    s = 0
        poke(3_000_000)
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == 0, proc.stderr
    loops = {lp["line"]: lp for lp in json.loads(out.read_text())["loops"]}
    assert 3 in loops and loops[3]["fraction"] >= 0.8, loops


@pytest.mark.timeout(60)
def test_a_recursive_decorated_function_profiles_its_outermost_call(tmp_path):
    script = _write(tmp_path, "fib.py", '''\
        from loopscale.profiler import profile

        @profile(check="none")
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        print(fib(24), fib.profile.report.samples > 0)
        print(fib(5), fib.profile.report.samples >= 0)
    ''')
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["46368", "True", "5", "True"]


@pytest.mark.timeout(60)
def test_an_endless_loop_interrupted_is_checked_without_being_run_again(tmp_path):
    script = _write(tmp_path, "endless.py", '''\
        import os, signal, threading
        import numpy as np

        def spin(x):
            s = 0.0
            while True:
                for i in range(x.shape[0]):
                    s += x[i]

        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        spin(np.ones(1000))
    ''')
    out = tmp_path / "r.json"
    t0 = time.perf_counter()
    proc = _profile(["--json", str(out), "--timeout", "40", script], timeout=55)
    assert proc.returncode == 130, proc.stderr
    assert time.perf_counter() - t0 < 30  # the compile check did not run spin() again
    report = json.loads(out.read_text())
    assert any(lp["accelerable"] for lp in report["loops"]), report


@pytest.mark.timeout(60)
def test_output_paths_are_the_callers_even_when_the_script_changes_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    script = _write(tmp_path, "mover.py", '''\
        import os
        os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sub"))
        total = sum(i * i for i in range(500_000))
    ''')
    proc = _profile(["--check", "none", "--json", "out.json", "--html", "out.html", script],
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.json").exists() and (tmp_path / "out.html").exists()
    assert not (tmp_path / "sub" / "out.json").exists()


@pytest.mark.timeout(60)
def test_a_main_thread_waiting_for_a_worker_is_not_charged_beside_it(tmp_path):
    script = _write(tmp_path, "joined.py", '''\
        import threading

        def work(n):
            s = 0
            for i in range(n):
                s += i * i % 7
            return s

        t = threading.Thread(target=work, args=(3_000_000,))
        t.start()
        t.join()
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == 0, proc.stderr
    loops = {lp["line"]: lp for lp in json.loads(out.read_text())["loops"]}
    assert loops[5]["fraction"] > 0.85, loops


@pytest.mark.timeout(60)
def test_operators_on_big_arrays_and_sleeps_are_native_time(tmp_path):
    # `a * a` is no call instruction, and sleep waits inside C: both are native
    script = _write(tmp_path, "native.py", '''\
        import time
        import numpy as np

        def products(a, k):
            for _ in range(k):
                c = a * a + a
            return c

        def naps(k):
            for _ in range(k):
                time.sleep(0.02)

        def plain(n):
            s = 0
            for i in range(n):
                s += i * i % 7
            return s

        products(np.random.default_rng(0).random(3_000_000), 15)
        naps(10)
        plain(2_000_000)
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == 0, proc.stderr
    loops = {lp["line"]: lp for lp in json.loads(out.read_text())["loops"]}
    assert loops[5]["python_fraction"] < 0.5, loops[5]
    assert loops[10]["python_fraction"] < 0.3, loops[10]
    assert loops[15]["python_fraction"] > 0.9, loops[15]


@pytest.mark.timeout(60)
def test_comprehension_gets_its_own_time_not_its_lines_and_callees_keep_theirs(tmp_path):
    # a comprehension inside a loop calls a helper with a loop of its own; a C
    # call beside the comprehension, on its line, belongs to the loop around it
    script = _write(tmp_path, "comps.py", '''\
        import random

        def helper(v):
            s = 0
            for i in range(v):
                s += i
            return s

        def work(data, reps):
            out = 0
            for _ in range(reps):
                out += sum([helper(v) for v in (60_000, 60_000)]) + len(sorted(data))
            return out

        work([random.random() for _ in range(20_000)], 60)
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    loops = {(lp["line"], lp["end_line"]): lp for lp in report["loops"]}
    helper, outer, comp = loops[(5, 6)], loops[(11, 12)], loops[(12, 12)]
    total = report["total_seconds"]
    assert outer["fraction"] > 0.9
    # sorted() is about 40% of the time: the loop's own, not the comprehension's
    assert outer["self_seconds"] / total > 0.25, loops
    assert comp["self_seconds"] / total < 0.05, loops
    # the comprehension includes its helper's loop, and little else
    assert comp["inclusive_seconds"] >= helper["inclusive_seconds"]
    assert comp["fraction"] - helper["fraction"] < 0.05, loops


@pytest.mark.timeout(60)
def test_edited_source_reports_a_comprehension_on_its_functions_line(tmp_path):
    # the script edits itself, so the report falls back to lines: the
    # comprehension's code object (3.11) and its function share one line entry
    script = _write(tmp_path, "edits.py", '''\
        import os, time

        def work(n):
            return sum([i * i % 7 for i in range(n)])

        for _ in range(30):
            work(100_000)
        time.sleep(0.01)
        with open(__file__, "a") as fh:
            fh.write("# edited\\n")
        os.utime(__file__, None)
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--check", "none", "--json", str(out), script])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert any("modified after profiling started" in m for m in report["messages"])
    on_line = [lp for lp in report["loops"] if lp["line"] == 4]
    assert [lp["function"] for lp in on_line] == ["work"], on_line
    assert on_line[0]["fraction"] > 0.8 and on_line[0]["self_seconds"] > 0


@pytest.mark.timeout(60)
def test_a_held_tick_handled_at_a_with_exit_is_charged_to_the_blocks_line(tmp_path):
    # storing the new set frees the old one, a million floats, in code that checks
    # no signals: CPython runs the handler only after the lock's __exit__, a call
    # numbered with the `with` line
    script = _write(tmp_path, "held.py", '''\
        import threading
        from loopscale.profiler import profile

        def body(lock, n):
            for _ in range(6):
                with lock:
                    values = set(map(float, range(n)))
            return values

        with profile(check="none") as p:
            body(threading.Lock(), 1_000_000)
        r = p.report
        print(r.line_seconds.get((__file__, 7), 0.0) / r.total_seconds,
              r.line_seconds.get((__file__, 6), 0.0) / r.total_seconds)
    ''')
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stderr
    body_line, with_line = map(float, proc.stdout.split())
    assert body_line >= 0.9 and with_line < 0.05, (body_line, with_line)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_a_directory_or_zip_with_main_runs_as_python_runs_it(tmp_path, kind):
    import zipfile

    app = tmp_path / "app"
    app.mkdir()
    (app / "helpers.py").write_text("SCALE = 3\n")
    (app / "__main__.py").write_text(textwrap.dedent('''\
        import sys
        import numpy as np
        from helpers import SCALE

        def kernel(x):
            s = 0.0
            for i in range(x.shape[0]):
                s += x[i] * SCALE
            return s

        print(sys.argv, sys.path[0] == sys.argv[0] or sys.path[0], __name__)
        x = np.ones(300_000)
        print(kernel(x) + kernel(x))
    '''))
    arg = "app"
    if kind == "zip":
        with zipfile.ZipFile(tmp_path / "app.zip", "w") as archive:
            for name in ("__main__.py", "helpers.py"):
                archive.write(app / name, name)
        arg = "app.zip"
    theirs = _python([arg, "-v"], cwd=tmp_path)
    out = tmp_path / "r.json"
    ours = _profile(["--json", str(out), arg, "-v"], cwd=tmp_path)
    assert theirs.returncode == 0, theirs.stderr
    assert (ours.returncode, ours.stdout) == (0, theirs.stdout), ours.stderr
    loops = {lp["line"]: lp for lp in json.loads(out.read_text())["loops"]}
    assert loops[7]["file"] == str(tmp_path / arg / "__main__.py")
    assert loops[7]["function"] == "kernel" and loops[7]["accelerable"] is True, loops[7]


@pytest.mark.timeout(60)
def test_a_directory_without_main_fails_as_under_python(tmp_path):
    (tmp_path / "empty").mkdir()
    ours = _profile(["empty"], cwd=tmp_path)
    theirs = _python(["empty"], cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr


@pytest.mark.timeout(60)
def test_argv0_and_path0_are_as_python_sets_them(tmp_path):
    (tmp_path / "real").mkdir()
    _write(tmp_path / "real", "s.py", "import sys\nprint(sys.argv[0], sys.path[0])\n")
    (tmp_path / "link.py").symlink_to(tmp_path / "real" / "s.py")
    for arg in ("link.py", "real/s.py"):
        theirs = _python([arg], cwd=tmp_path)
        ours = _profile(["--check", "none", arg], cwd=tmp_path)
        assert (ours.returncode, ours.stdout) == (0, theirs.stdout), ours.stderr


@pytest.mark.timeout(150)
def test_dataframe_argument_and_long_list_get_plain_verdicts(tmp_path):
    pytest.importorskip("pandas")
    script = _write(tmp_path, "frames.py", '''\
        import numpy as np
        import pandas as pd

        def score(df, w):
            total = 0.0
            for i in range(len(df)):
                total += df["price"].iat[i] * w + df.qty.iat[i]
            return total

        def scaled(xs):
            s = 0.0
            for i in range(len(xs)):
                s += xs[i] * 2.0
            return s

        df = pd.DataFrame({"qty": np.ones(5_000), "price": np.arange(5_000.0)})
        score(df, 2.0)
        values = [float(i) for i in range(2_000_000)]
        scaled(values)
        scaled(values)
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--trial", "--json", str(out), script], timeout=140)
    assert proc.returncode == 0, proc.stderr
    loops = {lp["line"]: lp for lp in json.loads(out.read_text())["loops"]}
    frame = loops[6]
    assert frame["accelerable"] is False
    assert frame["reason"].startswith(
        'argument `df` is a pandas DataFrame (line 7: `total += df["price"].iat[i] * w + '
        'df.qty.iat[i]`): pass its columns as NumPy arrays (df[\'price\'].to_numpy(), '
        'df[\'qty\'].to_numpy())'), frame["reason"]
    big = loops[12]
    assert big["accelerable"] is True and big["speedup"] is None
    assert "no trial" in big["reason"] and "'xs' (list[float] of 2,000,000 items)" in \
        big["reason"], big["reason"]


@pytest.mark.timeout(150)
def test_methods_nested_functions_and_object_arguments_get_plain_verdicts(tmp_path):
    script = _write(tmp_path, "objs.py", '''\
        import queue
        import numpy as np

        class Model:
            def __init__(self, w):
                self.w = w

            def predict(self, x):
                out = np.empty_like(x)
                for i in range(x.shape[0]):
                    out[i] = x[i] * self.w + 1.0
                return out

        def drain(q, n):
            s = 0.0
            for i in range(n):
                s += q.get() * 2.0
            return s

        def outer(x):
            def inner(y):
                t = 0.0
                for i in range(y.shape[0]):
                    t += y[i] * y[i]
                return t
            return inner(x) + inner(x)

        def main():
            q = queue.Queue()
            for i in range(150_000):
                q.put(float(i))
            x = np.ones(200_000)
            for _ in range(4):
                Model(2.0).predict(x)
            drain(q, 150_000)
            outer(np.ones(400_000))

        main()
    ''')
    out = tmp_path / "r.json"
    proc = _profile(["--json", str(out), script], timeout=140)
    assert proc.returncode == 0, proc.stderr
    loops = {lp["line"]: lp for lp in json.loads(out.read_text())["loops"]}
    method, drain, inner = loops[10], loops[16], loops[23]
    assert method["accelerable"] is False and method["reason"].startswith(
        "Model.predict() is a method of class Model; @accelerate takes plain functions"), method
    assert "self.w" in method["reason"]
    assert drain["accelerable"] is False and drain["reason"] == (
        "argument `q` is a queue.Queue object, which compiled code cannot take: pass the "
        "NumPy arrays and numbers it holds instead")
    assert inner["accelerable"] is None and "not checked" in inner["reason"], inner


def _other_pythons():
    import glob
    import shutil

    found = {}
    for minor in (10, 12, 13):
        if (3, minor) == sys.version_info[:2]:
            continue
        candidates = [shutil.which(f"python3.{minor}")] + sorted(glob.glob(
            os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/python")))
        for exe in candidates:
            if exe and subprocess.run([exe, "-c", "pass"], capture_output=True,
                                      timeout=30).returncode == 0:
                found[f"3.{minor}"] = exe
                break
    return found


OTHER_PYTHONS = _other_pythons()


@pytest.mark.timeout(120)
@pytest.mark.skipif(not OTHER_PYTHONS, reason="no other CPython 3.10-3.13 on this machine")
@pytest.mark.parametrize("version", sorted(OTHER_PYTHONS) or ["none"])
def test_profiler_core_runs_on_other_python_versions(tmp_path, version):
    # the sampler and attribution need the standard library only: run them under
    # another interpreter found here (a comprehension beside a call, a with exit)
    script = _write(tmp_path, "v.py", '''\
        import threading

        def helper(v):
            s = 0
            for i in range(v):
                s += i
            return s

        def work(data, reps):
            out = 0
            with threading.Lock():
                for _ in range(reps):
                    out += sum([helper(v) for v in (20_000, 20_000)]) + len(sorted(data))
            return out

        work([float((i * 7919) % 100003) for i in range(100_000)], 40)
    ''')
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    proc = subprocess.run([OTHER_PYTHONS[version], "-m", "loopscale.profiler", "--check",
                           "none", "--json", str(out), script], capture_output=True,
                          text=True, timeout=100, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert not any("failed" in m for m in report["messages"]), report["messages"]
    loops = {(lp["line"], lp["end_line"]): lp for lp in report["loops"]}
    # the comprehension holds its helper's loop, not the sort beside it.  The sort
    # (~5 ms) is longer than the 1 ms interval, so every one holds a tick and its
    # share (~0.75 on 3.10-3.13) is no sampling accident: a sort shorter than the
    # interval is caught or missed by a periodic timer in phase with the loop
    # (20,000 floats, 0.7 ms in a 3 ms iteration, read 0.17-0.42 of the time)
    assert loops[(13, 13)]["fraction"] - loops[(5, 6)]["fraction"] < 0.05, loops
    assert loops[(12, 13)]["self_seconds"] / report["total_seconds"] > 0.5, loops
