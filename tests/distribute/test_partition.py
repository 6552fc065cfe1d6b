"""Partition arithmetic of the mpi level: pure functions, no MPI."""

from __future__ import annotations

import types

import numpy as np
import pytest

from loopscale.distribute._partition import (
    deal,
    default_chunksize,
    describe_inputs,
    fingerprint,
    mismatch_message,
    piece_length,
    pieces,
)


@pytest.mark.parametrize("nblocks", [0, 1, 2, 3, 7, 64, 97, 1000])
@pytest.mark.parametrize("nranks", [1, 2, 3, 4, 8])
def test_deal_gives_every_block_to_exactly_one_rank(nblocks: int, nranks: int) -> None:
    dealt = deal(nblocks, nranks)
    assert len(dealt) == nranks
    blocks = sorted(b for chunks in dealt for c0, c1 in chunks for b in range(c0, c1))
    assert blocks == list(range(nblocks))


def test_deal_balances_work_that_grows_along_the_loop() -> None:
    # a triangular loop: block b costs b; a block partition gives rank 1 three times
    # rank 0's work at P = 2; the zigzag deal keeps the ranks within a few percent
    nblocks, nranks = 4096, 2
    work = [sum(sum(range(c0, c1)) for c0, c1 in chunks) for chunks in deal(nblocks, nranks)]
    assert max(work) / (sum(work) / nranks) < 1.02
    blockwise = [sum(range(0, 2048)), sum(range(2048, 4096))]
    assert max(blockwise) / (sum(blockwise) / 2) > 1.4


@pytest.mark.parametrize("nblocks", [1, 5, 31, 33, 97, 1000, 1500, 4099])
@pytest.mark.parametrize("nranks", [2, 3, 4, 7])
def test_deal_gives_the_ranks_equal_shares_of_equal_blocks(nblocks: int, nranks: int) -> None:
    # blocks that cost the same (n-body rows): the ranks' shares differ by one
    # block at most, so no rank waits for another at the exchange (chunks of a
    # fixed size left a short last chunk: 764 against 736 blocks at 1500 on 2)
    shares = [sum(c1 - c0 for c0, c1 in chunks) for chunks in deal(nblocks, nranks)]
    assert max(shares) - min(shares) <= 1, shares
    assert deal(nblocks, nranks, 7) != deal(nblocks, nranks) or nblocks <= 7


def test_deal_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="nranks must be greater than 0"):
        deal(10, 0)
    with pytest.raises(ValueError, match="chunksize must be greater than 0"):
        deal(10, 2, 0)
    assert default_chunksize(0, 4) == 1


def _brute(chunks, block, n, lo, step, offsets, length):
    out = []
    for c0, c1 in chunks:
        for k in range(c0 * block, min(c1 * block, n)):
            for off in offsets:
                idx = lo + k * step + off
                if idx < 0:
                    idx += length
                if 0 <= idx < length:
                    out.append(idx)
    return sorted(out)


@pytest.mark.parametrize("lo,step,offsets", [(0, 1, (0,)), (1, 3, (0,)), (9, -1, (0,)),
                                             (0, 1, (-1,)), (1, 2, (1,)), (0, 1, (0, 1))])
def test_pieces_select_the_elements_the_iterations_write(lo, step, offsets) -> None:
    n, block, length = 10, 3, 12
    chunks = deal(-(-n // block), 2, 1)[1]
    got = []
    for p in pieces(chunks, block=block, n=n, lo=lo, step=step, offsets=offsets,
                    length=length):
        sel = np.arange(length)[p]
        assert piece_length(p, length) == sel.size
        got.extend(sel.tolist())
    assert sorted(got) == _brute(chunks, block, n, lo, step, offsets, length)


def _plan(**changes):
    role = types.SimpleNamespace(read=True, written=False)
    base = dict(function="f", n=10, lo=0, step=1, nblocks=10, block=1,
                arg_names=("lo", "step", "n", "block", "x", "c"),
                args=(0, 1, 10, 1, np.ones(10), 2.0), arrays={"x": role})
    base.update(changes)
    return types.SimpleNamespace(**base)


def test_fingerprint_changes_with_shape_dtype_and_scalars_only() -> None:
    ref = fingerprint(describe_inputs(_plan()))
    assert fingerprint(describe_inputs(_plan())) == ref
    assert fingerprint(describe_inputs(_plan(args=(0, 1, 10, 1, np.zeros(10), 2.0)))) == ref
    for args in [(0, 1, 10, 1, np.ones(11), 2.0), (0, 1, 10, 1, np.ones(10, "f4"), 2.0),
                 (0, 1, 10, 1, np.ones(10), 2.5)]:
        assert fingerprint(describe_inputs(_plan(args=args))) != ref
    values = fingerprint(describe_inputs(_plan(), "values"))
    changed = describe_inputs(_plan(args=(0, 1, 10, 1, np.zeros(10), 2.0)), "values")
    assert fingerprint(changed) != values


def test_mismatch_message_names_only_the_fields_that_differ() -> None:
    a = describe_inputs(_plan())
    b = describe_inputs(_plan(args=(0, 1, 10, 1, np.ones(10, "f4"), 2.0)))
    text = mismatch_message("f", [a, a, b])
    assert "x: rank 0: <f8[10]; rank 1: <f8[10]; rank 2: <f4[10]" in text
    assert "c:" not in text and "iterations" not in text


def test_a_quick_fingerprint_tells_signed_zeros_and_sampled_elements_apart():
    """The fingerprint of a replicated call is hashed from a description cached by
    a cheap key: the key must tell apart what the description tells apart
    (``-0.0`` and ``0.0`` are equal as keys), whatever was cached first."""
    import types

    from loopscale.accel._model import ArrayRole
    from loopscale.distribute import _level

    def plan(c, x, out):
        return types.SimpleNamespace(
            function="f", n=8, lo=0, step=1, nblocks=8, block=1,
            arg_names=("lo", "step", "n", "block", "c", "x", "out"),
            args=(0, 1, 8, 1, c, x, out),
            arrays={"x": ArrayRole(read=True, written=False, access="aligned", axis=0),
                    "out": ArrayRole(read=False, written=True, access="aligned", axis=0)})

    x, out = np.arange(8.0), np.zeros(8)
    for first, second in ((0.0, -0.0), (-0.0, 0.0), (float("nan"), 0.0)):
        _level._STATIC.clear()
        a = _level.quick_fingerprint(plan(first, x, out))
        b = _level.quick_fingerprint(plan(second, x, out))
        assert a != b and a == _level.quick_fingerprint(plan(first, x, out))
    base = _level.quick_fingerprint(plan(1.0, x, out))
    assert _level.quick_fingerprint(plan(1.0, x, np.ones(8))) == base  # an output's contents
    y = x.copy()
    y[3] = -1.0  # a sampled element of an array the loop only reads
    assert _level.quick_fingerprint(plan(1.0, y, out)) != base
    assert _level.quick_fingerprint(plan(1, x, out)) != base  # int 1 is not float 1.0


def test_the_read_window_holds_every_element_the_loop_reads_and_no_more():
    from loopscale.accel._model import ArrayRole
    from loopscale.distribute._partition import read_window

    def role(offsets, floors=None, axis=0, access="offset"):
        return ArrayRole(read=True, written=False, access=access, axis=axis,
                         offsets=offsets, floors=floors or (None,) * len(offsets))

    v = np.arange(100.0)
    # range(1, 99): v[i - 1], v[i + 1] reach 0..99; v[i] alone 1..98
    assert np.array_equal(read_window(v, role((-1, 1)), 1, 1, 98), v)
    assert np.array_equal(read_window(v, role((0,), access="aligned"), 1, 1, 98), v[1:99])
    # `v[i - 1] if i > 0` over range(97): from v[0], never v[-1]
    assert np.array_equal(read_window(v, role((-1,), (1,)), 0, 1, 97), v[0:96])
    # unguarded v[i - 1] at i = 0 wraps around to the end: the whole array
    assert read_window(v, role((-1,)), 0, 1, 97) is v
    # a reversed loop: range(98, 0, -2) reads v[98], v[96], ..., v[2] (+1)
    assert np.array_equal(read_window(v, role((0, 1)), 98, -2, 49), v[2:100])
    # along axis 1 of a table; nothing when the loop is empty; anywhere: all
    t = np.arange(60.0).reshape(6, 10)
    assert np.array_equal(read_window(t, role((0,), axis=1), 2, 1, 5), t[:, 2:7])
    assert read_window(v, role((0,)), 0, 1, 0).size == 0
    assert read_window(v, role((), access="anywhere", axis=None), 0, 1, 10) is v
    # the window is what the loop reads: brute force over random loops and offsets
    rng = np.random.default_rng(3)
    for _ in range(300):
        lo, step, n = int(rng.integers(0, 20)), int(rng.choice([1, 2, 3, -1, -2])), \
            int(rng.integers(1, 30))
        offs = tuple(sorted({int(o) for o in rng.integers(-3, 4, 2)}))
        idx = [lo + k * step + o for k in range(n) for o in offs]
        if min(idx) < 0 or max(idx) >= 100:
            continue
        w = read_window(v, role(offs), lo, step, n)
        assert set(idx) <= set(w.tolist()), (lo, step, n, offs)
        assert w.size == max(idx) - min(idx) + 1, (lo, step, n, offs)
