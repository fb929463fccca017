# amaranth: UnusedElaboratable=no
"""The barrier unit (``rtl/barrier.py``, section 4) on Amaranth's simulator: ``done`` rises
``barrier_cycles`` after the done condition first holds, stays high while it holds, and restarts
with every phase or step; it is a register, so a restart in the cycle it rises does not lower it there."""

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
    """The docstring's equations: ``now = 0`` on a restart, else the count; ``done = count >=
    cycles``; the next count is 0 without ``cond``, else ``min(now + 1, cycles)``."""
    count, out = 0, []
    for c, r in zip(cond, restart):
        now = 0 if r else count
        out.append(int(count >= cycles))
        count = min(now + 1, cycles) if c else 0
    return out


def test_done_rises_barrier_cycles_after_the_condition_holds_by_hand():
    # the condition holds from cycle 2: done at 2 + 3 = 5 and after; it drops at 9 (done a cycle
    # later: a register) and rises again at 10 + 3 = 13
    cond = [0, 0] + [1] * 7 + [0] + [1] * 5
    got = done_per_cycle(3, cond, [1] + [0] * (len(cond) - 1))
    assert [c for c, d in enumerate(got) if d] == [5, 6, 7, 8, 9, 13, 14]
    # a restart in the cycle done rises (the next phase's cycle 0, as the sequencer gives it) keeps
    # done high in that cycle and counts the barrier again from it, the condition held or not
    got = done_per_cycle(2, [1] * 8, [1, 0, 1, 0, 1, 0, 0, 0])
    assert got == [0, 0, 1, 0, 1, 0, 1, 1]
    assert done_per_cycle(1, [1, 1, 1], [1, 0, 0]) == [0, 1, 1]  # one cycle: done the cycle after cond


@given(
    cycles=st.integers(1, 6),
    seq=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=24),
)
def test_the_barrier_unit_follows_its_equations(cycles, seq):
    cond, restart = [c for c, _ in seq], [r for _, r in seq]
    assert done_per_cycle(cycles, cond, restart) == reference(cycles, cond, restart)


@pytest.mark.parametrize("cycles", [0, -1])
def test_a_barrier_under_one_cycle_is_refused_with_a_sentence(cycles):
    with pytest.raises(ValueError, match=rf"a barrier of {cycles} cycles cannot close a phase .* must be 1 or more"):
        BarrierUnit(cycles)
