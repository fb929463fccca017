"""The barrier unit (``rtl/barrier.py``, section 4) on Amaranth's simulator: ``done`` rises
``barrier_cycles`` after the done condition first holds, stays high while it holds, and restarts
with every phase or step."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator
from hypothesis import given
from hypothesis import strategies as st

from spikeforge.rtl.barrier import BarrierUnit


def done_per_cycle(cycles: int, cond: list[int], restart: list[int]) -> list[int]:
    """``done`` of every cycle on the hardware, inputs set per cycle."""
    dut = BarrierUnit(cycles)
    out: list[int] = []

    async def bench(ctx):
        for c, r in zip(cond, restart):
            ctx.set(dut.cond, c)
            ctx.set(dut.restart, r)
            out.append(ctx.get(dut.done))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def reference(cycles: int, cond: list[int], restart: list[int]) -> list[int]:
    """The docstring's equations: ``now = 0`` on a restart, else the count; ``done = cond & now >=
    cycles``; the next count is 0 without ``cond``, else ``min(now + 1, cycles)``."""
    count, out = 0, []
    for c, r in zip(cond, restart):
        now = 0 if r else count
        out.append(int(c and now >= cycles))
        count = min(now + 1, cycles) if c else 0
    return out


def test_done_rises_barrier_cycles_after_the_condition_holds_by_hand():
    # the condition holds from cycle 2: done at 2 + 3 = 5 and after; it drops at 9 and rises again at 13
    cond = [0, 0] + [1] * 7 + [0] + [1] * 5
    got = done_per_cycle(3, cond, [1] + [0] * (len(cond) - 1))
    assert [c for c, d in enumerate(got) if d] == [5, 6, 7, 8, 13, 14]
    # a restart (the next phase's cycle 0) counts the barrier again from 0, the condition held or not
    got = done_per_cycle(2, [1] * 8, [1, 0, 0, 0, 1, 0, 0, 0])
    assert got == [0, 0, 1, 1, 0, 0, 1, 1]
    assert done_per_cycle(0, [0, 1, 1], [1, 0, 0]) == [0, 1, 1]  # no barrier: done is the condition


@given(
    cycles=st.integers(0, 6),
    seq=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=24),
)
def test_the_barrier_unit_follows_its_equations(cycles, seq):
    cond, restart = [c for c, _ in seq], [r for _, r in seq]
    assert done_per_cycle(cycles, cond, restart) == reference(cycles, cond, restart)


def test_a_negative_barrier_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match=r"a barrier of -1 cycles is negative; barrier_cycles must be 0 or more"):
        BarrierUnit(-1)
