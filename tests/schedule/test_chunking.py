"""Chunk planning is pure arithmetic: every policy covers the blocks exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopscale.schedule import POLICIES, plan_chunks
from loopscale.schedule._chunking import covers_exactly, validate_max_workers


@settings(max_examples=300, deadline=None)
@given(nblocks=st.integers(0, 5000), workers=st.integers(1, 64),
       policy=st.sampled_from(POLICIES), chunksize=st.one_of(st.none(), st.integers(1, 300)),
       cost=st.one_of(st.none(), st.floats(1e-9, 1e-2)))
def test_every_policy_covers_every_block_once_in_order(nblocks, workers, policy, chunksize,
                                                       cost):
    chunks = plan_chunks(nblocks, workers, policy, chunksize, cost)
    assert covers_exactly(chunks, nblocks)


def test_static_gives_one_even_chunk_per_worker():
    assert plan_chunks(10, 3, "static") == [(0, 4), (4, 7), (7, 10)]


def test_fewer_blocks_than_workers_gives_one_block_each():
    assert plan_chunks(2, 8, "static") == [(0, 1), (1, 2)]


def test_guided_chunks_shrink():
    sizes = [c1 - c0 for c0, c1 in plan_chunks(1000, 4, "guided")]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 125 and sizes[-1] >= 1


def test_auto_keeps_a_cheap_loop_in_one_chunk():
    # 100 blocks of 0.1 us: splitting would cost more than the loop
    assert plan_chunks(100, 8, "auto", seconds_per_block=1e-7) == [(0, 100)]


def test_auto_chunks_are_at_least_50_microseconds():
    chunks = plan_chunks(10_000, 4, "auto", seconds_per_block=1e-6)
    assert all(c1 - c0 >= 50 for c0, c1 in chunks[:-1])  # the last takes what is left


@pytest.mark.parametrize("policy", ["fastest", "", None, 3])
def test_unknown_policy_lists_the_valid_ones(policy):
    with pytest.raises(ValueError, match="'static', 'dynamic', 'guided', 'auto'"):
        plan_chunks(10, 2, policy)


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                     ("4", TypeError), (True, TypeError)])
def test_max_workers_must_be_a_positive_integer(bad, exc):
    with pytest.raises(exc, match="max_workers"):
        validate_max_workers(bad)
