"""What a call checks before it runs, and how it reports what it finds.

Each test compiles for real (no mocks): wrong call signatures name the user's
function; arguments that overlap in memory keep the same answer at every level;
guarded reads past the end are not refused ahead of time; unsupported dtypes,
``None``, arrays of the wrong dimension and pandas objects are named; an
exception in the loop is reported in one format at every level; a module-level
array written by the kernel is explained; a prologue the threads level cannot
outline falls back to the fused serial code.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import warnings

import numpy as np
import pytest

import loopscale
from loopscale import accelerate, level
from loopscale.errors import (
    ArgumentError,
    ArgumentValueError,
    CompileError,
    FallbackWarning,
    SerializationWarning,
)

pytestmark = pytest.mark.timeout(300)

THIS_FILE = os.path.basename(__file__)


def line_of(func, text: str) -> int:
    lines, start = inspect.getsourcelines(func)
    hits = [start + k for k, line in enumerate(lines) if text in line]
    assert len(hits) == 1, f"{text!r} occurs {len(hits)} times"
    return hits[0]


# ---------------------------------------------------------------------------
# wrong call signatures name the user's function
# ---------------------------------------------------------------------------


def saxpy(a, x, y, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]


saxpy_acc = accelerate(saxpy)


@pytest.mark.parametrize("call, expected", [
    (lambda x: saxpy_acc(2.0, x, x), "saxpy() missing 1 required positional argument: 'out'"),
    (lambda x: saxpy_acc(2.0, x, x, x, x),
     "saxpy() takes 4 positional arguments but 5 were given"),
    (lambda x: saxpy_acc(2.0, x, x, outt=x), "saxpy() got an unexpected keyword argument 'outt'"),
], ids=["missing", "extra", "unknown-keyword"])
def test_a_wrong_call_is_reported_under_the_functions_own_name(call, expected):
    with pytest.raises(TypeError) as info:
        call(np.ones(4))
    assert str(info.value) == expected
    assert "__call__" not in str(info.value)


def test_the_accelerated_function_still_calls_and_binds_like_the_original():
    x = np.arange(4.0)
    out = np.zeros(4)
    saxpy_acc(2.0, x, x, out=out)
    np.testing.assert_array_equal(out, 3 * x)
    assert str(inspect.signature(saxpy_acc)) == "(a, x, y, out)"


# ---------------------------------------------------------------------------
# the pre-run length check looks only at accesses made on every iteration
# ---------------------------------------------------------------------------


def diff_guarded_equal(x, out):
    n = x.shape[0]
    for i in range(n):
        if i == n - 1:
            out[i] = 0.0
            continue
        out[i] = x[i + 1] - x[i]


def diff_guarded_ge(x, out):
    n = x.shape[0]
    for i in range(n):
        if i + 2 >= n:
            continue
        out[i] = x[i + 2] - x[i]


def diff_guarded_raise(x, out):
    n = x.shape[0]
    for i in range(n):
        if i + 1 >= n:
            raise ValueError("past the end")
        out[i] = x[i + 1] - x[i]


@pytest.mark.parametrize("fn", [diff_guarded_equal, diff_guarded_ge], ids=lambda f: f.__name__)
@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_read_past_the_end_behind_a_guard_that_skips_it_runs_like_python(fn, lvl):
    acc = accelerate(fn)
    x = np.random.default_rng(0).random(5003)
    expected, out = np.zeros_like(x), np.zeros_like(x)
    fn(x, expected)
    with level(lvl):
        acc(x, out)
    np.testing.assert_array_equal(out, expected)


def test_a_guard_that_raises_is_not_replaced_by_the_length_check():
    acc = accelerate(diff_guarded_raise)
    x = np.arange(10.0)
    with pytest.raises(ValueError, match="past the end") as info:
        acc(x, np.zeros(10))
    assert not isinstance(info.value, ArgumentValueError)


def test_an_unguarded_read_past_the_end_is_still_refused_before_running():
    @accelerate
    def diff_unguarded(x, out):
        for i in range(out.shape[0]):
            out[i] = x[i + 1] - x[i]

    with pytest.raises(ArgumentValueError, match=r"argument 'x' .*reads `x\[i \+ 1\]`"):
        diff_unguarded(np.arange(10.0), np.zeros(10))


def test_the_length_check_says_an_output_is_written_not_read():
    with pytest.raises(ArgumentValueError) as info:
        saxpy_acc(2.0, np.ones(10), np.ones(10), np.zeros(5))
    msg = str(info.value)
    assert "argument 'out'" in msg
    assert "writes `out[i]`" in msg and "reads `out[i]`" not in msg
