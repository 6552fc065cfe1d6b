"""Pure transforms: synthetic sessions with exact weights, no timer, no threads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from loopscale.profiler import Sample, Session, build_report
from loopscale.profiler._diff import patch_source
from loopscale.profiler._loops import SourceIndex, attribute
from loopscale.profiler._render_json import LOOP_KEYS
from loopscale.profiler._verdict import pandas_suggestion

pytestmark = pytest.mark.timeout(60)

SOURCE = textwrap.dedent('''\
    import functools

    def small(x):
        return x + 1

    @functools.lru_cache(
        maxsize=None)
    def work(n):
        total = 0
        for i in range(
                n):
            total += small(i)
            for j in range(3):
                total += j
        squares = [k * k
                   for k in range(n)]
        while total > 0:
            total -= 1
        else:
            total = 0
        return total
    ''')


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "work.py"
    path.write_text(SOURCE)
    return str(path)


def _session(path, samples, **kw):
    return Session(samples=tuple(samples), duration=10.0, interval=0.001, ticks=10_000, **kw)


def _stack(path, *lines):
    return tuple((path, line, fn) for line, fn in lines)


def test_index_maps_lines_to_innermost_loop_with_decorators_and_multiline_headers(script):
    index = SourceIndex(script, SOURCE)
    kinds = {(loop.line, loop.end_line): loop.kind for loop in index.loops}
    assert kinds == {(10, 14): "for", (13, 14): "for", (15, 16): "comprehension",
                     (17, 18): "while"}
    assert [loop.line for loop in index.chain(11)] == [10]  # second header line
    assert [loop.line for loop in index.chain(14)] == [13, 10]
    assert [loop.line for loop in index.chain(16)] == [15]
    assert index.chain(20) == ()  # the else clause runs once, outside the loop
    assert index.chain(4) == ()
    work = index.chain(12)[0]
    assert (work.function, work.def_line, work.first_line) == ("work", 8, 6)


def test_self_and_inclusive_seconds_are_exact(script):
    samples = [
        Sample(_stack(script, (21, "<module>"), (12, "work")), 0.5),               # outer self
        Sample(_stack(script, (21, "<module>"), (12, "work"), (4, "small")), 2.0),  # callee
        Sample(_stack(script, (21, "<module>"), (14, "work")), 1.0, native=True),  # inner
        Sample(_stack(script, (21, "<module>"), (16, "work"),
                      (16, "work.<locals>.<listcomp>")), 0.25),                   # 3.11 comp
        Sample(_stack(script, (9, "work")), 0.25),                                 # no loop
    ]
    att = attribute(_session(script, samples), is_user_file=lambda f: True)
    got = {loop.loop.line: (loop.self_seconds, loop.inclusive_seconds, loop.python_seconds)
           for loop in att.loops}
    assert got == {10: (0.5, 3.5, 2.5), 13: (1.0, 1.0, 0.0), 15: (0.25, 0.25, 0.25)}
    assert att.total_seconds == 4.0
    assert att.line_seconds[(script, 4)] == 2.0
    assert [loop.loop.line for loop in att.loops] == [10, 13, 15]  # hottest first


def test_library_frames_above_a_user_line_count_as_its_self_time(script):
    lib = "/usr/lib/python3/numpy/core/fromnumeric.py"
    samples = [Sample(_stack(script, (14, "work")) + ((lib, 10, "sum"),), 1.0)]
    att = attribute(_session(script, samples), is_user_file=lambda f: f == script)
    assert [(s.loop.line, s.self_seconds) for s in att.loops] == [(13, 1.0), (10, 0.0)]


def test_missing_source_falls_back_to_lines_with_one_message(tmp_path):
    gone = str(tmp_path / "gone.py")
    samples = [Sample(((gone, 3, "f"),), 1.0), Sample(((gone, 3, "f"),), 1.0),
               Sample(((gone, 5, "f"),), 2.0)]
    att = attribute(_session(gone, samples), is_user_file=lambda f: True)
    assert [(s.loop.kind, s.loop.line, s.inclusive_seconds) for s in att.loops] == [
        ("line", 3, 2.0), ("line", 5, 2.0)]  # a tie: in line order
    assert len(att.messages) == 1 and "gone.py cannot be read" in att.messages[0]


def test_source_edited_after_start_falls_back_to_lines(script):
    samples = [Sample(((script, 12, "work"),), 1.0)]
    session = _session(script, samples, start_time=os.path.getmtime(script) - 10)
    att = attribute(session, is_user_file=lambda f: True)
    assert [s.loop.kind for s in att.loops] == ["line"]
    assert "modified after profiling started" in att.messages[0]
    fresh = attribute(_session(script, samples, start_time=time.time() + 10),
                      is_user_file=lambda f: True)
    assert [s.loop.kind for s in fresh.loops] == ["for"]


def test_json_has_exactly_the_schema_and_fraction_is_inclusive_share(script):
    samples = [Sample(((script, 12, "work"),), 3.0), Sample(((script, 9, "work"),), 1.0)]
    report = build_report(_session(script, samples), check="none")
    data = json.loads(json.dumps(report.as_dict()))
    assert data["total_seconds"] == 4.0 and data["samples"] == 2
    assert list(data["loops"][0]) == list(LOOP_KEYS)
    loop = data["loops"][0]
    assert (loop["line"], loop["end_line"], loop["function"]) == (10, 14, "work")
    assert loop["fraction"] == 0.75 and loop["python_fraction"] == 1.0
    assert loop["accelerable"] is None and loop["speedup"] is None


def test_module_level_loop_is_not_accelerable_with_reason(tmp_path):
    path = tmp_path / "flat.py"
    path.write_text("total = 0\nfor i in range(10):\n    total += i\n")
    samples = [Sample(((str(path), 3, "<module>"),), 1.0)]
    report = build_report(_session(str(path), samples), check="compile")
    (loop,) = report.loops
    assert loop.accelerable is False and "module level" in loop.reason
    assert "not accelerable" in report.to_text()


PANDAS = textwrap.dedent('''\
    def rows(df):
        out = []
        for _, row in df.iterrows():
            out.append(row["price"] * row["qty"])
        return out

    def loc(df):
        for i in df.index:
            df.loc[i, "total"] = df.loc[i, "price"] * 2

    def tuples(df):
        return sum(t.price for t in df.itertuples())

    def apply(df):
        return df.apply(lambda r: r["a"] + r["b"], axis=1)

    def plain(x):
        for i in range(len(x)):
            x[i] += 1
    ''')


@pytest.mark.parametrize(("line", "expect"), [
    (3, ["df.iterrows()", "df['price'].to_numpy()", "df['qty'].to_numpy()"]),
    (8, [".loc[...]", "df['price'].to_numpy()", "df['total'] = total_values"]),
    (12, ["df.itertuples()", "df['price'].to_numpy()"]),
    (15, ["df.apply(..., axis=1)"]),
])
def test_pandas_row_loops_get_a_rewrite_suggestion(tmp_path, line, expect):
    index = SourceIndex(str(tmp_path / "p.py"), PANDAS)
    loop = next(loop for loop in index.loops if loop.line == line)
    text = pandas_suggestion(index, loop)
    assert text is not None and "\n@accelerate\ndef " in text
    for part in expect:
        assert part in text


def test_plain_loop_gets_no_pandas_suggestion(tmp_path):
    index = SourceIndex(str(tmp_path / "p.py"), PANDAS)
    loop = next(loop for loop in index.loops if loop.line == 18)
    assert pandas_suggestion(index, loop) is None


def test_diff_inserts_decorator_and_import_and_applies(tmp_path):
    src = '"""doc"""\nimport math\n\n\ndef f(x):\n    for i in range(3):\n        x += i\n' \
          '    return x\n\n\nclass C:\n    pass\n'
    out = patch_source(src, [5])
    assert out.splitlines()[2] == "from loopscale import accelerate"
    assert "@accelerate\ndef f(x):" in out
    assert patch_source(out, [7]) == out  # already decorated, import present


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch program")
def test_report_diff_applies_with_patch(script, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.chdir(tmp_path)
    samples = [Sample(((script, 12, "work"),), 1.0)]
    report = build_report(_session(script, samples), check="none")
    report = replace(report, loops=tuple(replace(lp, accelerable=True) for lp in report.loops))
    diff = report.to_diff()
    assert "+@accelerate" in diff and "+from loopscale import accelerate" in diff
    proc = subprocess.run(["patch", "-p0", "--dry-run"], input=diff, text=True,
                          capture_output=True, cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    subprocess.run(["patch", "-p0"], input=diff, text=True, capture_output=True,
                   cwd=tmp_path, timeout=30, check=True)
    with open(script) as fh:
        patched = fh.read().splitlines()
    assert patched[7:9] == ["    maxsize=None)", "@accelerate"]
    compile("\n".join(patched), script, "exec")


def test_html_is_self_contained_and_annotates_source(script, tmp_path):
    samples = [Sample(((script, 12, "work"),), 3.0), Sample(((script, 9, "work"),), 1.0)]
    page = build_report(_session(script, samples), check="none").to_html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for external in ("http://", "https://", "<script", "src=", "<link"):
        assert external not in page
    assert "total += small(i)" in page and "75.0%" in page
    assert "rgba(255,80,0,0.750)" in page  # line 12 holds 3 of 4 seconds


COMPS = textwrap.dedent('''\
    def work(xs, data):
        for k in range(3):
            t = sum([x * x for x in xs]) + len(sorted(data))
            u = sum(x for x in
                    xs) + k
    ''')


def test_a_call_beside_a_comprehension_on_its_line_is_not_charged_to_it(tmp_path):
    path = str(tmp_path / "comps.py")
    (tmp_path / "comps.py").write_text(COMPS)
    index = SourceIndex(path, COMPS)
    loops = {(loop.line, loop.kind): loop for loop in index.loops}
    outer, comp = loops[(2, "for")], loops[(3, "comprehension")]
    gen = loops[(4, "comprehension")]
    col_sorted = COMPS.splitlines()[2].index("sorted")
    col_comp = COMPS.splitlines()[2].index("[")
    assert index.chain_at(3, col_sorted) == (outer,)        # the call beside it
    assert index.chain_at(3, col_comp + 1) == (comp, outer)  # inside it
    assert index.chain_at(3, 4) == (outer,)                  # `t = ` before it
    assert index.chain_at(3, -1) == (comp, outer)            # no column: the line
    assert index.chain_at(5, 12) == (gen, outer)             # a genexpr's second line
    assert index.chain_at(5, 100) == (outer,)                # ... and what follows it
    samples = [
        Sample(((path, 3, "work", col_sorted),), 3.0, native=True),              # sorted
        Sample(((path, 3, "work", col_comp),                                      # 3.11:
                (path, 3, "work.<locals>.<listcomp>", col_comp + 1)), 1.0),      # own code
        Sample(((path, 3, "work", col_comp + 1),), 0.5),                          # 3.12
        # Python 3.10 has no columns: the function's own frame is beside the
        # comprehension, whose code object, when running, is a frame of its own
        Sample(((path, 3, "work"),), 2.0, native=True),
        Sample(((path, 3, "work"), (path, 3, "work.<locals>.<listcomp>")), 0.25),
    ]
    att = attribute(_session(path, samples), is_user_file=lambda f: True)
    got = {s.loop.line: (s.self_seconds, s.inclusive_seconds) for s in att.loops}
    assert got == {2: (5.0, 6.75), 3: (1.75, 1.75)}


def test_line_level_fallback_charges_a_comprehension_to_its_functions_line(tmp_path):
    gone = str(tmp_path / "gone.py")
    samples = [
        Sample(((gone, 7, "<module>"), (gone, 3, "work"),
                (gone, 3, "work.<locals>.<listcomp>")), 2.0),   # Python 3.11
        Sample(((gone, 7, "<module>"), (gone, 3, "work")), 1.0),   # inlined (3.12+)
        Sample(((gone, 9, "<module>"), (gone, 9, "<listcomp>")), 1.0),  # at module level
    ]
    att = attribute(_session(gone, samples), is_user_file=lambda f: True)
    got = {(s.loop.line, s.loop.function): (s.self_seconds, s.inclusive_seconds)
           for s in att.loops}
    assert got == {(7, "<module>"): (0.0, 3.0), (3, "work"): (3.0, 3.0),
                   (9, "<module>"): (1.0, 1.0)}


def test_dataframe_reason_lists_the_columns_read_through_rows_not_those_written(tmp_path):
    from loopscale.profiler._verdict import pandas_argument_reason

    source = textwrap.dedent('''\
        def engineer(df, discount):
            feats = []
            for idx, row in df.iterrows():
                feats.append(row["total"] / row.tenure * (1 - discount))
            df["score"] = feats
            return df
        ''')
    index = SourceIndex(str(tmp_path / "f.py"), source)
    reason = pandas_argument_reason(index, "engineer",
                                    {"df": "pandas.DataFrame", "discount": "float"})
    assert reason == ("argument `df` is a pandas DataFrame (line 3: `for idx, row in "
                      "df.iterrows():`): pass its columns as NumPy arrays "
                      "(df['total'].to_numpy(), df['tenure'].to_numpy()) and index them "
                      "with [i]")
    assert pandas_argument_reason(index, "engineer", {"df": "float64[:, :]"}) is None


def test_dataframe_reason_reads_the_columns_of_a_function_applied_to_rows(tmp_path):
    from loopscale.profiler._verdict import pandas_argument_reason

    source = textwrap.dedent('''\
        def risk(row):
            base = row["debt"] / (row.income + 1.0)
            return base * 2.0 if row["late"] > 2 else base

        def score(df):
            df["risk"] = df.apply(risk, axis=1)
            return df["risk"].mean()
        ''')
    index = SourceIndex(str(tmp_path / "a.py"), source)
    reason = pandas_argument_reason(index, "score", {"df": "pandas.DataFrame"})
    assert reason == ("argument `df` is a pandas DataFrame (line 6: `df[\"risk\"] = "
                      "df.apply(risk, axis=1)`): pass its columns as NumPy arrays "
                      "(df['debt'].to_numpy(), df['income'].to_numpy(), "
                      "df['late'].to_numpy()) and index them with [i]")
