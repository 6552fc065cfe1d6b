"""The least value of the loop variable that conditions guarantee where an array is read.

``_guard_floors`` lets a distributed call read ``u[i - 1]`` under ``if i > 0:``
(the row before 0 is never read) and lets the threads level split a loop whose
negative index is guarded.  A floor must never claim more than holds: each case
runs the loop in plain Python and checks the claim against the values the loop
variable really takes at that read.
"""

from __future__ import annotations

import ast
import textwrap

import pytest

from loopscale.accel._loopcheck import _guard_floors

# (loop source, the floor expected at the read `u[i - 1]` or `u[i - 2]`; None: no claim)
CASES = {
    "if": ("if i > 0:\n    x = u[i - 1]", 1),
    "else of or": ("if i == 0 or i == n - 1:\n    x = 0\nelse:\n    x = u[i - 1]", 1),
    "conditional expression": ("x = u[i - 1] if i >= 1 else 0.0", 1),
    "continue": ("if i == 0:\n    continue\nx = u[i - 1]", 1),
    "not": ("if not i < 2:\n    x = u[i - 2]", 2),
    "chain": ("if 0 < i < n - 1:\n    x = u[i - 1]", 1),
    "shifted": ("if i - 1 >= 0:\n    x = u[i - 1]", 1),
    "constant first": ("if -1 + i >= 0:\n    x = u[i - 1]", 1),
    "and": ("if i >= 2 and flag:\n    x = u[i - 2]", 2),
    "or of guards": ("if i > 3 or i == 2:\n    x = u[i - 2]", 2),
    "elif chain": ("if i == 0:\n    x = 0\nelif i == 1:\n    x = u[i - 1]\n"
                   "else:\n    x = u[i - 2]", 2),
    "truth": ("x = u[i - 1] if i else 0.0", 1),
    "not truth": ("if not i:\n    continue\nx = u[i - 1]", 1),
    "membership": ("if i in (0, 1, n - 1):\n    continue\nx = u[i - 2]", 2),
    "membership one of": ("if i in (2, 3):\n    x = u[i - 2]", 2),
    "short circuit": ("x = i > 0 and u[i - 1] > 0", 1),
    # no claim: the condition does not bound the variable, or it is rebound
    "other variable": ("if j > 0:\n    x = u[i - 1]", None),
    "or with a non-guard": ("if i > 0 or flag:\n    x = u[i - 1]", None),
    "then branch of or": ("if i == 0 or i == n - 1:\n    x = u[i - 1]", None),
    "membership with a name": ("if i in (1, m):\n    x = u[i - 1]", None),
    "not equal elsewhere": ("if i != 3:\n    x = u[i - 1]", None),
    "rebound": ("if i > 0:\n    i = i - 1\n    x = u[i - 1]", None),
    "walrus": ("if i > 0:\n    (i := i - 1)\n    x = u[i - 1]", None),
}


def _floors(body: str, header: str = "for i in range(n):"):
    loop = ast.parse(header + "\n" + textwrap.indent(body, "    ")).body[0]
    floors = _guard_floors(loop, "i")
    reads = [node for node in ast.walk(loop) if isinstance(node, ast.Subscript)
             and ast.unparse(node.slice).startswith("i - ")]
    return loop, floors, reads


@pytest.mark.parametrize("name", list(CASES))
def test_the_floor_of_a_guarded_read(name):
    body, expected = CASES[name]
    _, floors, reads = _floors(body)
    claimed = [floors.get(id(r)) for r in reads]
    assert max(claimed, key=lambda c: -1 if c is None else c) == expected, claimed


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("header", ["for i in range(n):", "for i in range(n - 1, -1, -1):",
                                    "for i in range(2, n):", "for i in range(-3, n):"])
def test_a_floor_never_claims_more_than_the_loop_does(name, header):
    # run the loop (without its subscripts' effects) and record, at every read
    # with a claim, the value the loop variable really has there
    body, _ = CASES[name]
    loop, floors, reads = _floors(body, header)
    seen: dict[int, list[int]] = {id(r): [] for r in reads}

    class Probe(ast.NodeTransformer):
        def visit_Subscript(self, node):
            self.generic_visit(node)
            if id(node) in seen:
                return ast.Call(func=ast.Name("__seen", ast.Load()),
                                args=[ast.Constant(id(node)), ast.Name("i", ast.Load()), node],
                                keywords=[])
            return node

    probed = ast.fix_missing_locations(Probe().visit(ast.Module(body=[loop], type_ignores=[])))

    def note(key, value, result):
        seen[key].append(value)
        return result

    class Any:
        def __getitem__(self, k):
            return 1.0

    for n in (0, 1, 2, 3, 5, 8):
        for flag in (False, True):
            env = {"__seen": note, "n": n, "m": 2, "j": 1, "flag": flag, "u": Any()}
            exec(compile(probed, "<loop>", "exec"), env)
    for r in reads:
        claim = floors.get(id(r))
        if claim is not None and seen[id(r)]:
            assert min(seen[id(r)]) >= claim, (name, header, claim, seen[id(r)])
