# amaranth: UnusedElaboratable=no
"""The array's sequencer (``rtl/sequencer.py``, section 4) on Amaranth's simulator: after ``go`` it runs
every step's phases, each starting in the cycle the barrier of the one before closes; phase P only
where a core reports a live partial piece; a swap-mode step only once its pieces are loaded."""

from __future__ import annotations

import pytest
from amaranth import Elaboratable, Module
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.rtl.barrier import BarrierUnit
from spikeforge.rtl.sequencer import PH_F, PH_I, PH_IDLE, PH_LOAD, PH_P, PH_ROUNDS, Sequencer

OUTS = ("step", "phase", "start", "pphase", "fire", "restart", "step_end", "launch", "running", "finished")


def outputs_per_cycle(seq: Sequencer, inputs: list[tuple[int, int, int, int]]) -> list[dict]:
    """Every output of every cycle, ``(go, done, ready, plive)`` set per cycle."""
    out: list[dict] = []

    async def bench(ctx):
        for go, done, ready, plive in inputs:
            for port, v in zip((seq.go, seq.done, seq.ready, seq.plive), (go, done, ready, plive)):
                ctx.set(port, v)
            out.append({name: ctx.get(getattr(seq, name)) for name in OUTS})
            await ctx.tick()

    sim = Simulator(seq)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def reference(steps: int, rounds: bool, inputs: list[tuple[int, int, int, int]]) -> list[dict]:
    """The docstring's table, cycle by cycle (``ph``, ``t``, ``fin``: the registered state; ``wait``:
    the step a load phase waits to start)."""
    ph, t, wait, fin, out = PH_IDLE, 0, 0, 0, []
    first = PH_ROUNDS if rounds else PH_I
    for go, done, ready, plive in inputs:
        ph_n, t_n, fin_n, enter, step_end, launch = ph, t, fin, 0, 0, 0
        on = bool(ready or rounds)
        if ph == PH_IDLE and go:
            ph_n, t_n, wait, fin_n, enter, launch = (first if on else PH_LOAD), 0, 0, 0, int(on), 1
        elif ph == PH_LOAD and ready:
            ph_n, t_n, enter = PH_I, wait, 1
        elif ph == PH_I and done:
            ph_n, enter = (PH_P if plive else PH_F), 1
        elif ph == PH_P and done:
            ph_n, enter = PH_F, 1
        elif ph in (PH_F, PH_ROUNDS) and done:
            step_end = int(ph == PH_F)
            if t == steps - 1:
                ph_n, fin_n = PH_IDLE, 1
            elif on:
                ph_n, t_n, enter = first, t + 1, 1
            else:
                ph_n, wait = PH_LOAD, t + 1  # `step` stays t until step t + 1 starts
        out.append(
            {
                "step": t_n,
                "phase": ph_n,
                "start": int(enter and ph_n != PH_F),
                "pphase": int(enter and ph_n == PH_P),
                "fire": int(enter and ph_n == PH_F),
                "restart": enter,
                "step_end": step_end,
                "launch": launch,
                "running": int(ph_n != PH_IDLE),
                "finished": fin_n,
            }
        )
        ph, t, fin = ph_n, t_n, fin_n
    return out


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 3),
    rounds=st.booleans(),
    inputs=st.lists(st.tuples(*(st.integers(0, 1) for _ in range(4))), min_size=1, max_size=40),
)
def test_the_sequencer_follows_its_table(steps, rounds, inputs):
    assert outputs_per_cycle(Sequencer(steps, rounds=rounds), inputs) == reference(steps, rounds, inputs)


class _Loop(Elaboratable):
    """A sequencer closing its phases through a barrier unit whose condition the test drives."""

    def __init__(self, steps: int, bar: int, **hooks) -> None:
        self.seq, self.bar = Sequencer(steps, **hooks), BarrierUnit(bar)

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq, m.submodules.bar = self.seq, self.bar
        m.d.comb += [self.seq.done.eq(self.bar.done), self.bar.restart.eq(self.seq.restart)]
        return m


def phase_starts(ends: dict, plive: set, unready: tuple, bar: int = 2, **hooks) -> tuple[list, int]:
    """Run 3 steps: phase ``(t, code)`` ends ``ends[t, code]`` cycles after its cycle 0, a partial
    piece is live at the steps in ``plive``, ``ready`` is low in the cycles ``unready`` (lo, hi).
    Returns ``(cycle, phase, step)`` of every cycle a phase starts and the cycle ``finished`` rises."""
    dut = _Loop(3, bar, **hooks)
    seq = dut.seq
    seen, fin = [], []

    async def bench(ctx):
        s, cur = 0, None
        for c in range(200):
            ctx.set(seq.go, int(c == 0))
            ctx.set(seq.ready, int(not unready[0] <= c < unready[1]))
            t = ctx.get(seq.step)  # plive depends on the step, not the step on plive
            ctx.set(seq.plive, int(t in plive))
            if ctx.get(seq.restart):
                s, cur = c, (t, ctx.get(seq.phase))
                seen.append((c, cur[1], t))
            if ctx.get(seq.finished) and not fin:
                fin.append(c)
            ctx.set(dut.bar.cond, int(cur is not None and c - s >= ends.get(cur, 0)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen, fin[0]


def test_each_phase_starts_in_the_cycle_the_last_barrier_closes_by_hand():
    # step 0: I ends at 3, F at 1; step 1: I at 0, P at 2 (a partial piece is live), F at 4; step 2:
    # I at 5, F at 0 and its pieces loaded only at cycle 30; barrier 2 cycles
    ends = {(0, PH_I): 3, (0, PH_F): 1, (1, PH_I): 0, (1, PH_P): 2, (1, PH_F): 4, (2, PH_I): 5, (2, PH_F): 0}
    seen, fin = phase_starts(ends, plive={1}, unready=(20, 30))
    # 0 + 3 + 2 = 5, 5 + 1 + 2 = 8 (step 1), +2 = 10 (P), +4 = 14 (F), +6 = 20: step 2 waits for its
    # pieces until 30 (a stall of 10), +7 = 37 (F), +2 = 39: finished
    assert seen == [
        (0, PH_I, 0),
        (5, PH_F, 0),
        (8, PH_I, 1),
        (10, PH_P, 1),
        (14, PH_F, 1),
        (30, PH_I, 2),
        (37, PH_F, 2),
    ]
    assert fin == 39
    # the hooks a mutation test uses: phase P left out, or every phase one cycle late
    assert [p for _, p, _ in phase_starts(ends, {1}, (20, 30), skip_p=True)[0]].count(PH_P) == 0
    late, fin_late = phase_starts(ends, plive={1}, unready=(0, 0), late=1)
    assert [c for c, _, _ in late] == [0, 6, 10, 13, 18, 25, 33] and fin_late == 36


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, r"an inference of 0 steps cannot be sequenced; it needs 1 to 65535\."),
        ({"steps": 2, "late": -1}, r"a sequencer -1 cycles late is negative; the late hook must be 0 or more\."),
    ],
)
def test_a_bad_sequencer_is_refused_with_a_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sequencer(**kwargs)
