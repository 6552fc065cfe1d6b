"""What the loop analysis produces, and how it resolves names.

:class:`LoopAnalysis` and :class:`ArrayRole` are the inspectable result
(``f.analysis``); :class:`Resolver` looks up the globals a function refers to
(helpers, ``prange``).  Plain data, no analysis logic.
"""

from __future__ import annotations

import ast
import builtins
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._astutil import closure_values

__all__ = ["ArrayRole", "LoopAnalysis", "Resolver", "NP_EXTREMA"]

#: NumPy's elementwise extrema as a reduction (``s = np.maximum(s, x[i])``): the
#: function's name -> the operator and the stem of its form (see
#: :attr:`LoopAnalysis.reduction_forms`).  ``maximum`` and ``minimum`` let a
#: NaN through; ``fmax`` and ``fmin`` pass over one.
NP_EXTREMA = {"maximum": ("max", "np"), "minimum": ("min", "np"),
              "fmax": ("max", "npf"), "fmin": ("min", "npf")}


@dataclass(frozen=True)
class ArrayRole:
    """How one array (a parameter or a local) is used by the analysed loop.

    Attributes
    ----------
    read, written : bool
        Whether the loop reads / writes its elements.
    access : str
        ``"aligned"``: every access uses the loop variable in position ``axis``
        (no offset); ``"offset"``: the loop variable plus constant offsets
        (``u[i - 1]``); ``"mirrored"``: a triangle and its mirror image,
        ``D[i, j]`` and ``D[j, i]`` with ``j`` on one side of ``i`` (the loop
        variable on ``axis`` and on ``mirror_axis``: each iteration has its own
        elements, but not a slab along one axis); ``"owned"``: every access is
        at one and the same index, distinct for each iteration and never
        negative, in one position (``out[2 * i]``, ``out[n - 1 - i]``,
        ``out[i * m + j]`` for ``j`` in ``range(m)``: each iteration its own
        elements, not a slab); ``"anywhere"``: some access
        is at an index that does not follow the loop variable, or the whole
        array is used.
    axis : int or None
        The position indexed by the loop variable, when there is one.
    offsets : tuple of int
        The constant offsets seen in position ``axis`` (``(0,)`` for aligned).
    floors : tuple of int or None
        Per offset, the least value of the loop variable at which an access at
        that offset runs, where the conditions around every such access set one
        (``if i > 0: u[i - 1]`` gives 1 for offset -1); None where an access
        runs without such a condition; empty when not known.
    mirror_axis : int or None
        For ``"mirrored"``: the other axis the loop variable indexes.
    index : tuple of str
        For ``"owned"``: the indices the accesses use in that position, as
        written (``("2 * i", "2 * i + 1")``).
    """

    read: bool
    written: bool
    access: str
    axis: int | None = None
    offsets: tuple[int, ...] = ()
    floors: tuple[int | None, ...] = ()
    mirror_axis: int | None = None
    index: tuple[str, ...] = ()

    def describe(self) -> str:
        what = "+".join(w for w, on in (("read", self.read), ("written", self.written)) if on)
        if self.access == "anywhere":
            return f"{what or 'used'}, accessed anywhere"
        if self.access == "mirrored":
            return (f"{what or 'used'}, a triangle and its mirror image (the loop variable "
                    f"on axis {self.axis} and, for the mirror, on axis {self.mirror_axis}): "
                    "each iteration its own elements")
        if self.access == "owned":
            at = ", ".join(f"`{t}`" for t in self.index)
            one = len(self.index) == 1
            return (f"{what or 'used'}, at the {'index' if one else 'indices'} {at}, which "
                    f"{'differs' if one else 'differ'} from one iteration to the next: each "
                    "iteration its own elements")
        if self.access == "through a view":
            return (f"{what or 'used'}, through a local view of it (`b = a[1:]`, `a.T`...): "
                    "independent in the view's indices")
        offs = ", ".join(f"{o:+d}" if o else "0" for o in self.offsets)
        return f"{what or 'used'}, {self.access} with the loop variable on axis {self.axis}" + (
            f" (offsets {offs})" if self.access == "offset" else "")


@dataclass(frozen=True)
class LoopAnalysis:
    """What the analysis found about a decorated function's loop.

    Attributes
    ----------
    function : str
        Qualified name of the function.
    filename : str
        Source file of the function.
    lineno : int or None
        Line of the analysed loop's header, or None when there is no
        candidate loop.
    loop_var : str or None
        The loop variable.
    parallel : bool
        True when the iterations were proven independent (or asserted with
        ``prange``) and the loop runs as a chunked parallel plan.
    reason : str or None
        Why the loop runs sequentially, naming the line; None when parallel.
    reductions : Mapping[str, str]
        Reduction variables and their operator (``"+"``, ``"*"``, ``"min"``,
        ``"max"``, or ``"set"`` for a flag, see :attr:`reduction_sets`).
    privates : tuple of str
        Names private to each iteration.
    arrays : Mapping[str, ArrayRole]
        The role of each array the loop indexes.
    forced : bool
        The loop was written with ``prange``.
    ndim_limits : Mapping[str, tuple[int, str]]
        Arrays for which the verdict holds only up to a number of dimensions:
        name -> (most dimensions, why the loop is sequential beyond them).
        ``row = out[i]; row += x`` updates a number when ``out`` is 1-D and a
        row of ``out`` in place when it is 2-D; nothing in the code says which,
        so a call with more dimensions runs the loop sequentially.
    """

    function: str
    filename: str
    lineno: int | None
    loop_var: str | None
    parallel: bool
    reason: str | None
    reductions: Mapping[str, str] = field(default_factory=dict)
    privates: tuple[str, ...] = ()
    arrays: Mapping[str, ArrayRole] = field(default_factory=dict)
    forced: bool = False
    loop_index: int | None = None  # position of the loop in the function body
    range_args: tuple[ast.expr, ...] = field(default=(), repr=False, compare=False)
    other_loops: tuple[tuple[int, str], ...] = ()  # (line, reason) of loops not chosen
    calls_blas: bool = False  # the loop calls np.dot, @, np.linalg... (BLAS via SciPy)
    #: how each reduction updates its accumulator (see ``_LoopChecker._reduction_form``):
    #: ``"aug"``/``"assign"``/``"mixed"`` for ``+``/``*``, ``"strict"``/``"loose"``/``"last"``
    #: for ``min``/``max`` (``"np"``/``"np_last"``/``"npf"``/``"npf_last"``: NumPy's
    #: ``maximum``/``minimum``, ``fmax``/``fmin``); the combine of the per-block
    #: partials repeats it
    reduction_forms: Mapping[str, str] = field(default_factory=dict, repr=False)
    ndim_limits: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    #: ``t = a[i]; t += c``: an array the loop writes only when it has more than
    #: this many dimensions (then ``t`` is a row of it, else a number) -> that count
    written_beyond: Mapping[str, int] = field(default_factory=dict)
    #: ``if d < best: best = d; idx = i``: a min/max reduction -> the names that
    #: follow it (its position); combined with it, from the block that holds it
    reduction_payloads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``if x[i] < 0: found = True``: a flag (operator ``"set"``) -> the source of
    #: the one constant the loop assigns it; set when any iteration assigned it
    reduction_sets: Mapping[str, str] = field(default_factory=dict)
    #: ``h[b] += w`` into an array made before the loop, at any index: each block
    #: sums into an array of its own (blocks long enough that these stay small
    #: beside the loop's work)
    reduction_scatters: tuple[str, ...] = ()
    #: those of :attr:`reduction_scatters` that are arguments (their dtype is known
    #: at call time) -> what they add: ``"count"`` (positive integer constants:
    #: exact into any array), ``"int"`` (integer constants: exact into integers,
    #: not bools), ``"any"`` (into floats only: an integer or bool array is added
    #: into in order; see ``ls_scatter_in_order``)
    scatter_params: Mapping[str, str] = field(default_factory=dict)

    def reduction_text(self, name: str) -> str:
        """``best (min, with idx)``: a reduction for :meth:`summary` and ``explain()``."""
        if name in self.reduction_sets:
            return f"{name} (set to {self.reduction_sets[name]} by any iteration)"
        if name in self.reduction_scatters:
            return f"{name} ({self.reductions[name]}, at any index: an array per block)"
        pays = self.reduction_payloads.get(name, ())
        with_ = (", with " + ", ".join(pays)) if pays else ""
        return f"{name} ({self.reductions[name]}{with_})"

    def beyond_ndim(self, values: Mapping[str, Any]) -> str | None:
        """Why the loop must run sequentially for these arrays (name -> value) when
        one has more dimensions than :attr:`ndim_limits` allows; None otherwise."""
        for name, (most, why) in self.ndim_limits.items():
            ndim = getattr(values.get(name), "ndim", None)
            if isinstance(ndim, int) and ndim > most:
                return (f"`{name}` has {ndim} dimensions, where the code's own indexing "
                        f"shows at most {most}, and then {why}")
        return None

    def writes(self, name: str, value: Any) -> bool:
        """Whether the loop may write the array *name* when it is *value*."""
        role = self.arrays.get(name)
        if role is None or not role.written:
            return False
        most = self.written_beyond.get(name)
        return most is None or getattr(value, "ndim", most + 1) > most

    def summary(self) -> str:
        """A one-line verdict."""
        where = f"{self.filename}:{self.lineno}" if self.lineno else self.filename
        if self.parallel:
            red = ", ".join(self.reduction_text(k) for k in self.reductions)
            return (f"loop over {self.loop_var!r} at {where} is parallel"
                    + (f"; reductions: {red}" if red else ""))
        return f"runs sequentially: {self.reason}"


class Resolver:
    """Looks up the global names of a function (for helpers and ``prange``)."""

    def __init__(self, func: types.FunctionType, prange_objects: Iterable[Any] = ()) -> None:
        self.func = func
        self.globals = func.__globals__
        self.closure: dict[str, Any] = closure_values(func)
        self.prange_ids = {id(p) for p in prange_objects}

    def value(self, node: ast.expr) -> Any:
        """The object a ``Name`` or dotted ``Attribute`` refers to, or None."""
        if isinstance(node, ast.Name):
            if node.id in self.closure:
                return self.closure[node.id]
            if node.id in self.globals:
                return self.globals[node.id]
            return getattr(builtins, node.id, None)
        if isinstance(node, ast.Attribute):
            base = self.value(node.value)
            if isinstance(base, types.ModuleType):
                return getattr(base, node.attr, None)
        return None

    def is_range(self, node: ast.expr) -> str | None:
        """``"range"`` or ``"prange"`` when *node* names one of them."""
        v = self.value(node)
        if v is range:
            return "range"
        if v is not None and id(v) in self.prange_ids:
            return "prange"
        return None

    def helper(self, node: ast.expr) -> types.FunctionType | None:
        """The plain Python function a call's ``func`` refers to, if any."""
        v = self.value(node)
        v = getattr(v, "py_func", v)  # an accelerated function or a Numba dispatcher
        if isinstance(v, types.FunctionType):
            return v
        return None
