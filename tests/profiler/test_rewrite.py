"""pandas row-loop rewrites: the suggested code runs and gives the loop's values."""

from __future__ import annotations

import math
import runpy
import textwrap

import numpy as np
import pytest

from loopscale.profiler._loops import SourceIndex
from loopscale.profiler._verdict import pandas_suggestion

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.timeout(120)

ROWS = textwrap.dedent('''\
    import math

    def rows(df, w):
        out = []
        for _, row in df.iterrows():
            out.append(math.sqrt(row["a"] + row.b) * row["c"] * w)
        return out

    def loc(df):
        total = 0.0
        for i in df.index:
            if df.loc[i, "qty"] > 1:
                df.loc[i, "value"] = df.at[i, "price"] * df.loc[i, "qty"]
                total += df.loc[i, "price"]
        return total

    def picked(df):
        big = []
        for k in range(len(df)):
            if df["price"].iat[k] > 5:
                big.append(df["qty"].iloc[k] + k)
        return big

    def tuples(df):
        return sum(t.price * 2 for t in df.itertuples())

    def applied(df):
        return df.apply(lambda r: r["a"] * r["b"] + 1, axis=1)

    def score(r):
        x = r["a"] - r["b"]
        return x * x

    def named(df):
        return df.apply(score, axis=1)

    def opaque(df):
        out = []
        for _, row in df.iterrows():
            out.append(str(row.name) + row["tag"])
        return out
    ''')


def _frame():
    rng = np.random.default_rng(1)
    n = 50
    return pd.DataFrame({"a": rng.random(n) + 1, "b": rng.random(n), "c": rng.random(n),
                         "price": rng.random(n) * 10, "qty": rng.integers(0, 4, n) * 1.0,
                         "tag": ["x"] * n}, index=np.arange(100, 100 + n))


def _suggestion(line):
    index = SourceIndex("rows.py", ROWS)
    loop = next(loop for loop in index.loops if loop.line == line)
    text = pandas_suggestion(index, loop)
    assert text is not None
    prose, _, code = text.partition("\n\n")
    compile(code, "<suggestion>", "exec")  # always valid Python
    return prose, code


def _original():
    ns: dict = {}
    exec(compile(ROWS, "rows.py", "exec"), ns)  # noqa: S102 - the test's own source
    return ns


_RUNS = [0]


def _run(code, tmp_path, **names):
    """Run the suggested code from a file (accelerate reads its source) with *names*."""
    _RUNS[0] += 1
    path = tmp_path / f"suggested_{_RUNS[0]}.py"
    path.write_text(code)
    return runpy.run_path(str(path), init_globals={"math": math, **names})


def test_iterrows_append_with_a_weight_runs_and_lists_columns_in_source_order(tmp_path):
    prose, code = _suggestion(5)
    assert "`df.iterrows()` builds a Python object per row" in prose
    # source order a, b, c (a breadth-first walk finds c first)
    assert "rows_rows(df['a'].to_numpy(), df['b'].to_numpy(), df['c'].to_numpy(), w," in code
    df = _frame()
    ns = _run(code, tmp_path, df=df, w=2.0, out=[])
    np.testing.assert_allclose(ns["out"], _original()["rows"](df, 2.0), rtol=1e-12)


def test_loc_loop_writing_a_column_with_a_condition_and_a_total_runs(tmp_path):
    _, code = _suggestion(11)
    expect_df = _frame()
    expect = _original()["loc"](expect_df)
    df = _frame()
    ns = _run(code, tmp_path, df=df, total=0.0)
    assert ns["total"] == pytest.approx(expect, rel=1e-12)
    np.testing.assert_allclose(df["value"].to_numpy(), expect_df["value"].to_numpy(),
                               rtol=1e-12, equal_nan=True)


def test_positional_loop_appending_under_a_condition_runs(tmp_path):
    _, code = _suggestion(19)
    df = _frame()
    ns = _run(code, tmp_path, df=df, big=[])
    np.testing.assert_allclose(ns["big"], _original()["picked"](df), rtol=1e-12)


def test_itertuples_generator_apply_lambda_and_applied_function_run(tmp_path):
    df = _frame()
    original = _original()
    _, code = _suggestion(25)
    ns = _run(code, tmp_path, df=df)
    assert sum(ns["result_values"].tolist()) == pytest.approx(original["tuples"](df))
    for line, name in ((28, "applied"), (35, "named")):
        _, code = _suggestion(line)
        ns = _run(code, tmp_path, df=df)
        got = pd.Series(ns["result_values"], index=df.index)
        np.testing.assert_allclose(got, original[name](df), rtol=1e-12)
        assert "pd.Series(result_values, index=df.index)" in code


def test_a_body_using_the_whole_row_gets_a_marked_template():
    prose, code = _suggestion(39)
    assert "a template" in prose and "# the loop's body, reading tag[i]" in code
