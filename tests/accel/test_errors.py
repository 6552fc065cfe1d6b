"""Errors a person can act on: compile errors, fallback, refusals, bad arguments,
exceptions raised inside compiled loops, and ``LOOPSCALE_DISABLE``.

The uncompilable constructs below were checked against Numba 0.68: each makes
``numba.njit`` raise a ``numba.core.errors.TypingError`` (an unknown builtin
``open``, ``except KeyError`` -- Numba only matches ``Exception`` --, a dict
whose value type changes, a list of ``object()``, an unknown ``np.linalg``
function).
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numba.core.errors
import numpy as np
import pytest

import loopscale.errors as errors
from loopscale import accelerate, level
from loopscale.errors import (
    ArgumentError,
    ArgumentValueError,
    CompileError,
    FallbackWarning,
    LoopscaleError,
    UnsupportedFunctionError,
)

from .kernels import KERNELS_BY_NAME, accelerated

pytestmark = pytest.mark.timeout(300)

THIS_FILE = os.path.basename(__file__)
REPO_ROOT = Path(__file__).resolve().parents[2]


def line_of(func, text: str) -> int:
    lines, start = inspect.getsourcelines(func)
    hits = [start + k for k, line in enumerate(lines) if text in line]
    assert len(hits) == 1, f"{text!r} occurs {len(hits)} times in {func.__name__}"
    return hits[0]


def names_location(message: str, filename: str, lineno: int) -> bool:
    """``file.py:12``, ``file.py", line 12``, ``file.py (12)`` ... all count."""
    return re.search(re.escape(filename) + r"\D{0,20}\b" + str(lineno) + r"\b", message) is not None


def names_argument(message: str, name: str) -> bool:
    return re.search(rf"['\"`]{re.escape(name)}['\"`]", message) is not None


# ---------------------------------------------------------------------------
# kernels Numba cannot compile
# ---------------------------------------------------------------------------


def opens_a_file(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    fh = open("/nonexistent/loopscale")
    return s + fh.read()


def catches_key_error(x, out):
    for i in range(x.shape[0]):
        try:
            out[i] = x[i] * 2.0
        except KeyError:
            out[i] = 0.0
    return out


def dict_with_changing_value_type(x):
    d = {"a": 1.0}
    d["b"] = "text"
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * d["a"]
    return s


def list_of_objects(x):
    items = [object()]
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s, len(items)


def unsupported_linalg(a, out):
    for i in range(a.shape[0]):
        out[i] = a[i, 0]
    return np.linalg.tensorsolve(a, out)


def _helper_that_opens(v):
    fh = open("/nonexistent/loopscale")
    return v + fh.read()


def calls_bad_helper(x, out):
    for i in range(x.shape[0]):
        out[i] = _helper_that_opens(x[i])


opens_a_file_acc = accelerate(opens_a_file)
catches_key_error_acc = accelerate(catches_key_error)
dict_with_changing_value_type_acc = accelerate(dict_with_changing_value_type)
list_of_objects_acc = accelerate(list_of_objects)
unsupported_linalg_acc = accelerate(unsupported_linalg)
calls_bad_helper_acc = accelerate(calls_bad_helper)


def imports_inside(x):
    import math  # compiled code cannot import

    s = 0.0
    for i in range(x.shape[0]):
        s += math.sqrt(x[i])
    return s


imports_inside_acc = accelerate(imports_inside)

COMPILE_CASES = [
    # (decorated, args factory, [(function, text of the construct's line(s))], words)
    (opens_a_file_acc, lambda: (np.ones(5),), [(opens_a_file, "open(")], ["open"]),
    (
        catches_key_error_acc,
        lambda: (np.ones(5), np.zeros(5)),
        [(catches_key_error, "try:"), (catches_key_error, "except KeyError:")],
        ["KeyError", "except"],
    ),
    (
        dict_with_changing_value_type_acc,
        lambda: (np.ones(5),),
        [(dict_with_changing_value_type, 'd["b"] = "text"')],
        [],
    ),
    (list_of_objects_acc, lambda: (np.ones(5),), [(list_of_objects, "[object()]")], ["object"]),
    (
        unsupported_linalg_acc,
        lambda: (np.eye(3), np.zeros(3)),
        [(unsupported_linalg, "tensorsolve")],
        ["tensorsolve"],
    ),
    (
        calls_bad_helper_acc,
        lambda: (np.ones(5), np.zeros(5)),
        [(_helper_that_opens, "open(")],
        ["open"],
    ),
    (
        imports_inside_acc,
        lambda: (np.ones(5),),
        [(imports_inside, "import math")],
        ["an `import` statement", "module level"],
    ),
]


@pytest.mark.parametrize(
    "fn, make_args, where, words", COMPILE_CASES, ids=[c[0].__name__ for c in COMPILE_CASES]
)
def test_uncompilable_construct_raises_compile_error_naming_function_file_and_line(
    fn, make_args, where, words
):
    with pytest.raises(CompileError) as info:
        fn(*make_args())
    message = str(info.value)
    assert fn.__name__ in message or any(f.__name__ in message for f, _ in where), message
    lines = [line_of(f, text) for f, text in where]
    assert any(names_location(message, THIS_FILE, n) for n in lines), (
        f"none of {THIS_FILE}:{lines} in:\n{message}"
    )
    if words:
        assert any(w in message for w in words), message
    cause = info.value.__cause__
    numbas = (numba.core.errors.NumbaError,  # (an opcode's error is not one of those)
              getattr(numba.core.errors, "UnsupportedBytecodeError", numba.core.errors.NumbaError))
    assert isinstance(cause, numbas), repr(cause)
    assert isinstance(info.value, TypeError) and isinstance(info.value, LoopscaleError)


def half_sum_with_a_float_bound(x):
    s = 0.0
    for i in range(x.shape[0] / 2):  # `/` where `//` was meant
        s += x[i]
    return s


def prefix_with_a_float_bound(x, out):
    for i in range(1, x.shape[0] / 2):
        out[i] = out[i - 1] + x[i]


@pytest.mark.parametrize("func, make_args", [
    (half_sum_with_a_float_bound, lambda: (np.ones(10),)),
    (prefix_with_a_float_bound, lambda: (np.ones(10), np.zeros(10))),
], ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_float_range_bound_is_a_type_error_naming_the_bound(func, make_args, lvl):
    with pytest.raises(TypeError) as py_info:  # what Python itself says
        func(*make_args())
    assert "integer" in str(py_info.value)
    fn = accelerate(func)
    options = {"max_workers": 2} if lvl == "threads" else {}
    with level(lvl, **options), pytest.raises(CompileError) as info:
        fn(*make_args())
    message = str(info.value)
    assert isinstance(info.value, TypeError)
    assert "range() bound `x.shape[0] / 2`" in message, message
    assert names_location(message, THIS_FILE, line_of(func, "/ 2")), message
    assert "`//`" in message and "int(" in message, message
    assert "ls_put" not in message and "sequence of integers" not in message, message


def test_compile_error_is_raised_at_every_call_not_only_the_first():
    for _ in range(2):
        with pytest.raises(CompileError):
            opens_a_file_acc(np.ones(3))


def test_decorating_an_uncompilable_function_does_not_raise():
    fn = accelerate(opens_a_file)  # the error belongs to the first call
    assert fn.py_func is opens_a_file


def test_compile_error_message_is_not_just_numbas():
    with pytest.raises(CompileError) as info:
        catches_key_error_acc(np.ones(3), np.zeros(3))
    assert str(info.value) != str(info.value.__cause__)


@accelerate
def _gather(x, idx, out):
    for i in range(out.shape[0]):
        out[i] = x[idx[i]]


@accelerate
def _saxpy(a, x, y, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]


@pytest.mark.parametrize("call, words", [
    (lambda: _gather(np.arange(5.0), np.floor(np.arange(5.0) / 2), np.zeros(5)),
     ["indexing an array with a float (float64)", "idx.astype(np.int64)", "`//`"]),
    (lambda: _saxpy("2.0", np.ones(3), np.ones(3), np.zeros(3)),
     ["arithmetic (`mul`) with a string", "float(a)"]),
    (lambda: _saxpy(2.0, np.ones(3) * 1j, np.ones(3), np.zeros(3)),
     ["storing a complex128 value in an array of float64", "dtype=np.complex128", ".real"]),
])
def test_common_argument_mistakes_get_their_own_advice(call, words):
    # (Numba's "no implementation of getitem/mul/setitem" named the operation,
    # not the mistake)
    with pytest.raises(CompileError) as info:
        call()
    text = str(info.value)
    assert "test_errors.py:" in text and "Called with:" in text, text
    for word in words:
        assert word in text, text


# ---------------------------------------------------------------------------
# fallback
# ---------------------------------------------------------------------------


def test_fallback_runs_python_and_warns_exactly_once_over_two_calls():
    fn = accelerate(fallback=True)(catches_key_error)
    x = np.arange(6.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fn(x, np.zeros(6))
        second = fn(x, np.zeros(6))
    fallback = [w for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallback) == 1, [str(w.message) for w in caught]
    assert "catches_key_error" in str(fallback[0].message)
    expected = catches_key_error(x, np.zeros(6))
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected)


def test_fallback_warns_once_per_decorated_function():
    a = accelerate(fallback=True)(dict_with_changing_value_type)
    b = accelerate(fallback=True)(list_of_objects)
    x = np.arange(4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert a(x) == dict_with_changing_value_type(x)
            assert b(x) == list_of_objects(x)
    fallback = [w for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallback) == 2, [str(w.message) for w in fallback]


def test_fallback_is_silent_when_the_function_compiles():
    kernel = KERNELS_BY_NAME["total"]
    fn = accelerate(fallback=True)(kernel.func)
    x = np.ones(10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fn(x) == 10.0
    assert not [w for w in caught if issubclass(w.category, FallbackWarning)]


class _Params:
    k = 2.0


def _scale_by(x, p, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * p


def _scale_by_attribute(x, p, out):
    for i in range(x.shape[0]):
        out[i] = x[i] * p.k


def test_fallback_runs_python_for_an_argument_compiled_code_cannot_take():
    # an arbitrary object: that call runs as Python; a later call with a number
    # still runs compiled, and without fallback the argument is named
    x = np.arange(5.0)
    fn = accelerate(fallback=True)(_scale_by_attribute)
    out = np.zeros(5)
    with pytest.warns(FallbackWarning, match=r"(?s)argument 'p' .*_Params object.*Python "
                      r"function for this call"):
        fn(x, _Params(), out)
    np.testing.assert_array_equal(out, x * 2.0)
    g = accelerate(fallback=True)(_scale_by)
    for bad in (_Params(), {"k": 2.0}, {2.0}):  # (as Python: a float times an object)
        with pytest.warns(FallbackWarning), pytest.raises(TypeError):
            g(x, bad, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        g(x, 3.0, out)
    np.testing.assert_array_equal(out, x * 3.0)
    assert g._python_mode is False, "the numeric call ran as Python"
    with pytest.raises(ArgumentError, match=r"argument 'p' of _scale_by_attribute\(\)"):
        accelerate(_scale_by_attribute)(x, _Params(), out)


def test_fallback_warning_is_a_user_warning():
    assert issubclass(FallbackWarning, UserWarning)


# ---------------------------------------------------------------------------
# refusals at decoration time
# ---------------------------------------------------------------------------


def generator_kernel(x):
    for i in range(x.shape[0]):
        yield x[i]


class Plain:
    def method(self, x):
        return x


def _exec_defined():
    namespace: dict = {}
    exec("def made_by_exec(x):\n    return x\n", namespace)
    return namespace["made_by_exec"]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(len, id="builtin-len"),
        pytest.param(sorted, id="builtin-sorted"),
        pytest.param(_exec_defined(), id="exec-defined"),
        pytest.param(eval("lambda x: x"), id="eval-lambda"),
        pytest.param(generator_kernel, id="generator"),
        pytest.param(Plain().method, id="bound-method"),
        pytest.param(Plain.method, id="function-defined-in-class-body"),
    ],
)
def test_decoration_refuses_what_cannot_be_compiled(target):
    with pytest.raises(UnsupportedFunctionError) as info:
        accelerate(target)
    assert isinstance(info.value, TypeError)
    with pytest.raises(UnsupportedFunctionError):
        accelerate(cache=False)(target)


def test_decorating_a_method_in_a_class_body_is_refused():
    with pytest.raises(UnsupportedFunctionError) as info:

        class Holder:
            @accelerate
            def step(self, x):
                return x

    assert "step" in str(info.value)


def test_refusal_of_a_generator_names_it():
    with pytest.raises(UnsupportedFunctionError) as info:
        accelerate(generator_kernel)
    assert "generator_kernel" in str(info.value)


# ---------------------------------------------------------------------------
# argument errors
# ---------------------------------------------------------------------------


class Opaque:
    pass


def add(x, y, out):
    for i in range(len(x)):
        out[i] = x[i] + y[i]


add_acc = accelerate(add)


def _axpy_args(n=10):
    return KERNELS_BY_NAME["axpy"].make_args(n, np.random.default_rng(0))


def test_list_where_an_array_is_read_is_converted_or_refused_by_name():
    # The contract refuses lists where an array is *written*; a list that is
    # only read may be converted, but then the answer must be Python's.
    a, x, y, out = _axpy_args()
    fn = accelerate(KERNELS_BY_NAME["axpy"].func)
    try:
        fn(a, list(x), y, out)
    except ArgumentError as exc:
        assert names_argument(str(exc), "x"), str(exc)
    else:
        np.testing.assert_array_equal(out, a * x + y)


def test_list_where_an_array_is_written_raises_argument_error_naming_it():
    a, x, y, out = _axpy_args()
    with pytest.raises(ArgumentError) as info:
        accelerate(KERNELS_BY_NAME["axpy"].func)(a, x, y, [0.0] * 10)
    assert names_argument(str(info.value), "out"), str(info.value)
    assert isinstance(info.value, TypeError)


def test_list_output_is_refused_even_after_a_list_input_was_accepted():
    a, x, y, out = _axpy_args()
    fn = accelerate(KERNELS_BY_NAME["axpy"].func)
    try:
        fn(a, list(x), y, out)  # may be accepted (converted)
    except ArgumentError:
        pass
    written = [0.0] * 10
    with pytest.raises(ArgumentError) as info:
        fn(a, x, y, written)  # results would be lost in a temporary copy
    assert names_argument(str(info.value), "out"), str(info.value)


def test_plain_object_argument_raises_argument_error_naming_it():
    a, x, y, out = _axpy_args()
    with pytest.raises(ArgumentError) as info:
        accelerated(KERNELS_BY_NAME["axpy"])(a, x, Opaque(), out)
    assert names_argument(str(info.value), "y"), str(info.value)


def test_read_only_output_raises_argument_value_error_naming_it():
    a, x, y, out = _axpy_args()
    out.setflags(write=False)
    with pytest.raises(ArgumentValueError) as info:
        accelerated(KERNELS_BY_NAME["axpy"])(a, x, y, out)
    assert names_argument(str(info.value), "out"), str(info.value)
    assert isinstance(info.value, ValueError)
    np.testing.assert_array_equal(out, 0.0)


def test_read_only_input_is_accepted():
    a, x, y, out = _axpy_args()
    x.setflags(write=False)
    y.setflags(write=False)
    accelerated(KERNELS_BY_NAME["axpy"])(a, x, y, out)
    np.testing.assert_array_equal(out, a * x + y)


def test_shorter_input_than_the_loop_needs_raises_argument_value_error_naming_it():
    x = np.ones(10)
    with pytest.raises(ArgumentValueError) as info:
        add_acc(x, np.ones(7), np.zeros(10))
    assert names_argument(str(info.value), "y"), str(info.value)


def test_shorter_output_than_the_loop_needs_raises_argument_value_error_naming_it():
    x = np.ones(10)
    with pytest.raises(ArgumentValueError) as info:
        add_acc(x, np.ones(10), np.zeros(3))
    assert names_argument(str(info.value), "out"), str(info.value)


def test_consistent_shapes_are_accepted_after_a_shape_error():
    with pytest.raises(ArgumentValueError):
        add_acc(np.ones(4), np.ones(3), np.zeros(4))
    out = np.zeros(4)
    add_acc(np.arange(4.0), np.ones(4), out)
    np.testing.assert_array_equal(out, np.arange(4.0) + 1.0)


# ---------------------------------------------------------------------------
# exceptions inside the compiled loop
# ---------------------------------------------------------------------------


def gather(x, idx, out):
    for i in range(idx.shape[0]):
        out[i] = x[idx[i]]


def int_divide(x, d, out):
    for i in range(x.shape[0]):
        out[i] = x[i] // d[i]


gather_checked = accelerate(boundscheck=True)(gather)
int_divide_acc = accelerate(int_divide)


def _ranges_in(message: str) -> list[tuple[int, int]]:
    after = message[message.lower().find("iteration"):]
    pairs = re.findall(r"(\d[\d_,]*)\s*(?:\.\.\.?|-|–|to|:|,\s*)\s*(\d[\d_,]*)", after)
    return [(int(re.sub(r"[_,]", "", a)), int(re.sub(r"[_,]", "", b))) for a, b in pairs]


def _assert_iteration_range_contains(message: str, bad: int) -> None:
    assert "iteration" in message.lower(), message
    ranges = _ranges_in(message)
    assert any(lo <= bad <= hi for lo, hi in ranges), f"no range containing {bad} in {message!r}"


@pytest.mark.parametrize("lvl", [None, "serial"])
@pytest.mark.parametrize("n, bad", [(10, 7), (100_003, 77_777)])
def test_out_of_range_index_raises_index_error_with_the_iteration_range(lvl, n, bad):
    x = np.arange(float(n))
    idx = np.arange(n, dtype=np.int64)
    idx[bad] = n + 5
    out = np.zeros(n)
    with pytest.raises(IndexError) as info:
        if lvl is None:
            gather_checked(x, idx, out)
        else:
            with level(lvl):
                gather_checked(x, idx, out)
    _assert_iteration_range_contains(str(info.value), bad)


@pytest.mark.parametrize("n, bad", [(9, 4), (100_003, 50_001)])
def test_integer_division_by_zero_raises_zero_division_error_with_the_iteration_range(n, bad):
    x = np.arange(n, dtype=np.int64)
    d = np.ones(n, dtype=np.int64)
    d[bad] = 0
    with pytest.raises(ZeroDivisionError) as info:
        int_divide_acc(x, d, np.zeros(n, dtype=np.int64))
    _assert_iteration_range_contains(str(info.value), bad)


def int_divide_sequential(x, d, out):
    acc = 0
    for i in range(x.shape[0]):
        acc = acc + x[i] // d[i]
        out[i] = acc


def int_divide_reduction(x, d, out):
    s = 0
    for i in range(x.shape[0]):
        s += x[i] // d[i]
    return s


def _floor_divide(a, b):
    return a // b


def int_divide_in_helper(x, d, out):
    for i in range(x.shape[0]):
        out[i] = _floor_divide(x[i], d[i])


@pytest.mark.parametrize(
    "fn",
    [
        accelerate(int_divide_sequential),
        accelerate(int_divide_reduction),
        accelerate(int_divide_in_helper),
    ],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("n, bad", [(9, 4), (100_003, 60_001)])
def test_division_by_zero_in_any_loop_shape_reports_the_iteration_range(fn, n, bad):
    x = np.arange(n, dtype=np.int64)
    d = np.ones(n, dtype=np.int64)
    d[bad] = 0
    with pytest.raises(ZeroDivisionError) as info:
        fn(x, d, np.zeros(n, dtype=np.int64))
    _assert_iteration_range_contains(str(info.value), bad)


@pytest.mark.timeout(60)
def test_function_works_again_after_an_exception_in_the_loop():
    n = 100_003
    d = np.ones(n, dtype=np.int64)
    d[123] = 0
    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            int_divide_acc(np.arange(n, dtype=np.int64), d, np.zeros(n, dtype=np.int64))
    out = np.zeros(n, dtype=np.int64)
    int_divide_acc(np.arange(n, dtype=np.int64) * 6, np.full(n, 3, dtype=np.int64), out)
    np.testing.assert_array_equal(out, np.arange(n, dtype=np.int64) * 2)


def test_in_range_gather_with_boundscheck_gives_python_result():
    x = np.arange(50.0)
    idx = np.random.default_rng(0).integers(0, 50, 1000)
    out = np.zeros(1000)
    gather_checked(x, idx, out)
    np.testing.assert_array_equal(out, x[idx])


# ---------------------------------------------------------------------------
# the hierarchy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, std",
    [
        (CompileError, TypeError),
        (UnsupportedFunctionError, TypeError),
        (ArgumentError, TypeError),
        (ArgumentValueError, ValueError),
    ],
)
def test_error_classes_refine_the_standard_exception(cls, std):
    assert issubclass(cls, LoopscaleError) and issubclass(cls, std)
    assert getattr(errors, cls.__name__) is cls


# ---------------------------------------------------------------------------
# LOOPSCALE_DISABLE
# ---------------------------------------------------------------------------


def test_disable_set_at_decoration_runs_plain_python(monkeypatch):
    monkeypatch.setenv("LOOPSCALE_DISABLE", "1")
    fn = accelerate(catches_key_error)
    monkeypatch.delenv("LOOPSCALE_DISABLE")
    assert fn.py_func is catches_key_error
    x = np.arange(5.0)
    np.testing.assert_array_equal(fn(x, np.zeros(5)), x * 2.0)  # no CompileError


def test_disable_set_after_decoration_has_no_effect(monkeypatch):
    fn = accelerate(catches_key_error)
    monkeypatch.setenv("LOOPSCALE_DISABLE", "1")
    with pytest.raises(CompileError):
        fn(np.arange(5.0), np.zeros(5))


def _run_script(
    source: str, env_extra: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
        cwd=tmp_path,
    )


@pytest.mark.timeout(120)
def test_import_and_decorate_work_with_disable_in_a_fresh_process(tmp_path):
    proc = _run_script(
        """
        import numpy as np
        import loopscale
        from loopscale import accelerate

        def kernel(x, out):
            for i in range(x.shape[0]):
                try:
                    out[i] = x[i] + 1.0
                except KeyError:
                    out[i] = 0.0
            return out

        fn = accelerate(kernel)
        result = fn(np.arange(3.0), np.zeros(3))
        print("RESULT", result.tolist(), fn.py_func is kernel)
        """,
        {"LOOPSCALE_DISABLE": "1"},
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RESULT [1.0, 2.0, 3.0] True" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.timeout(120)
def test_distributed_arrays_at_the_cuda_level_are_refused_as_with_target_cuda():
    # they ran on the CPU without a word, where NumPy arguments get
    # CudaUnavailableError here and target="cuda" refuses distributed arrays
    from loopscale import distribute

    def double(u, out):
        for i in range(u.shape[0]):
            out[i] = 2.0 * u[i]

    fn = accelerate(double)
    u = distribute.scatter(np.arange(8.0))
    v = distribute.zeros_like(u)
    with level("cuda"):
        with pytest.raises(errors.DistributionError, match="the 'cuda' level runs on one GPU"):
            fn(u, v)
    fn(u, v)  # at the default level: on the CPU, as before
    assert np.array_equal(distribute.gather(v), 2.0 * np.arange(8.0))


@pytest.mark.timeout(120)
def test_an_error_raised_while_handling_another_is_located_in_its_own_loop():
    # g's chunk raises while the caller handles f's error: g's own exception is
    # reported (not f's, reached through __context__ of g's)
    def f(x):
        s = 0.0
        for i in range(x.shape[0]):
            if x[i] > 0.5:
                raise ValueError("from f")
            s += x[i]
        return s

    def g(x):
        s = 0.0
        for i in range(x.shape[0]):
            if x[i] > 0.5:
                raise KeyError("from g")
            s += x[i]
        return s

    ff, gg = accelerate(f), accelerate(g)
    x = np.zeros(20_000)
    x[15_000] = 1.0
    with level("threads", max_workers=2):
        with pytest.raises(KeyError, match="from g") as info:
            try:
                ff(x)
            except ValueError:
                gg(x)
    assert "from f" not in str(info.value)


def _uses_an_undefined_name(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * SCALE_NEVER_DEFINED  # noqa: F821 - the user's mistake
    return s


def _unpacks_a_number(x):
    s = 0.0
    for i in range(x.shape[0]):
        a, b = x[i]
        s += a * b
    return s


def test_an_undefined_name_is_named_at_the_line_that_uses_it():
    f = accelerate(_uses_an_undefined_name)
    with pytest.raises(CompileError) as info:
        f(np.ones(4))
    msg = str(info.value)
    line = line_of(_uses_an_undefined_name, "SCALE_NEVER_DEFINED")
    assert names_location(msg, THIS_FILE, line), msg
    assert "the name `SCALE_NEVER_DEFINED` is not defined" in msg, msg
    assert "pass it in as an argument" in msg, msg


def test_unpacking_a_number_says_what_was_unpacked():
    f = accelerate(_unpacks_a_number)
    with pytest.raises(CompileError) as info:
        f(np.ones(4))
    msg = str(info.value)
    assert names_location(msg, THIS_FILE, line_of(_unpacks_a_number, "a, b = x[i]")), msg
    assert "unpacking a float64 into several names" in msg, msg
    np.testing.assert_allclose(f(np.ones((4, 2)) * 2.0), _unpacks_a_number(np.ones((4, 2)) * 2.0))


def _formats(x, w):
    return (f"{x[0]:.3f}|{int(x[2]):05d}|{x[0]:{w}.2f}|{x[0] > 1}|{str(x[1])}|{'s'}|"
            f"{(1, 2.5)}|{x[1]}|{str(7)}")


def _refuses_negatives(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] < 0:
            raise ValueError(f"negative value {x[i]} at {i}")
        s += x[i]
    return s


def test_strings_of_floats_are_pythons_not_numbas():
    """Numba's str(1.5) and f"{1.5}" are '<object type:float64>': compiled code
    formats as Python does, in a returned string and in an exception's message
    at every level."""
    x = np.array([1.5, 0.1, 7.0])
    assert accelerate(_formats)(x, 8) == _formats(x, 8)
    f = accelerate(_refuses_negatives)
    y = np.ones(50_000)
    y[31_337] = -0.25
    for lvl in ("serial", "threads"):
        with level(lvl), pytest.raises(ValueError) as info:
            f(y)
        assert str(info.value).startswith("negative value -0.25 at 31337 (raised in "), \
            str(info.value)


def times_text(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * "2"
    return s


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_a_compile_error_carries_numbas_error_once(lvl) -> None:
    # the build without deferred division checks, and the fused serial code run
    # after the plan failed, were tried inside the first failure's handler: the
    # traceback showed Numba's error two or three times ("During handling of the
    # above exception, another exception occurred")
    acc = accelerate(cache=False)(times_text)
    with level(lvl), pytest.raises(errors.CompileError) as info:
        acc(np.arange(3.0))
    chain = _chain(info.value)
    numba_errors = [e for e in chain if isinstance(e, numba.core.errors.TypingError)]
    assert len(numba_errors) == 1, [type(e).__name__ for e in chain]
    assert sum(isinstance(e, errors.CompileError) for e in chain) == 1


def halvings(k, out):
    for i in range(k.shape[0]):
        out[i] = 2 ** (-k[i]) + 3 ** k[i]


def powers_of_floats(x, e, out):
    for i in range(x.shape[0]):
        out[i] = x[i] ** e[i] + x[i] ** 2 + 2.0 ** -e[i]


@pytest.mark.parametrize("lvl", ["serial", "threads"])
def test_an_integer_to_a_negative_integer_power_raises_instead_of_giving_0(lvl) -> None:
    # Numba gives 2 ** -3 == 0 (an integer); Python a float, NumPy's int64 a
    # ValueError: the compiled code gave a silently wrong 0
    acc = accelerate(halvings)
    k = np.array([1, 2, -3, 4])
    with level(lvl), pytest.raises(ValueError, match="negative integer power.*2.0 \\*\\* -k"):
        acc(-k, np.zeros(4))
    out = np.zeros(4)
    with level(lvl):
        acc(np.array([0, 0, 0]), out[:3])
    np.testing.assert_array_equal(out[:3], [2.0, 2.0, 2.0])


def test_float_powers_are_unchanged() -> None:
    rng = np.random.default_rng(2)
    x, e = rng.random(1000) + 0.5, rng.integers(-3, 4, 1000)
    out, want = np.zeros(1000), np.zeros(1000)
    accelerate(powers_of_floats)(x, e, out)
    powers_of_floats(x, e, want)
    np.testing.assert_allclose(out, want, rtol=1e-15)


def add_n(x, n):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i] + n
    return out


def smooth_copy(u, steps):
    new = u.copy()
    for i in range(1, new.shape[0] - 1):
        new[i] = 0.5 * (u[i - 1] + u[i + 1])
    return new


def clip_scalars(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = np.clip(x[i], -1.0, 1.0)
    return out


def test_an_integer_beyond_64_bits_is_named_as_such() -> None:
    with pytest.raises(errors.ArgumentValueError, match=r"argument 'n' .* is the integer "
                                                        r"1180591620717411303424, which does "
                                                        r"not fit in 64 bits"):
        accelerate(add_n)(np.arange(3.0), 2 ** 70)


def test_none_for_an_argument_used_by_a_method_is_named() -> None:
    line = inspect.getsourcelines(smooth_copy)[1] + 1
    with pytest.raises(errors.ArgumentError, match=rf"argument 'u' .* is None, but the "
                                                   rf"function uses `u.copy` \(line {line}\)"):
        accelerate(smooth_copy)(None, 3)


def test_a_numpy_function_numba_lacks_for_scalars_is_named_not_its_insides() -> None:
    with pytest.raises(errors.CompileError, match=r"calling `clip` with arguments") as info:
        accelerate(clip_scalars)(np.linspace(-2.0, 2.0, 5))
    assert "attribute `shape`" not in str(info.value)
