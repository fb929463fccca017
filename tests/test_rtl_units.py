"""The RTL core on Amaranth's own simulator: hand-computed cycle scenarios, no Icarus needed (fast).

Core: 8 neurons, 4 lanes (2 lane groups), a piece of n = 6 neurons (the second group is half
used), ``pipeline_cycles`` = 3, an event FIFO of 2. Cycle 0 is the cycle ``start`` is high; a flit
written in cycle ``c`` can be popped from cycle ``c + 1`` (``docs/architecture.md`` section 6).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES
from spikeforge.rtl.core import TYPE_GRADED, TYPE_SPIKE, Core
from spikeforge.rtl.piece import PieceInit, SlotInit

pytestmark = pytest.mark.rtl

HW = HardwareConfig(
    array=ArrayConfig(1, 1),
    core=CoreConfig(
        axons=4, neurons=8, lanes=4, v_bits=16, weight_bits=8, pipeline_cycles=3, input_fifo_events=2, slots=2
    ),
)
N, LANES, VB = 6, 4, 16
W = np.arange(1, 4 * 8 + 1).reshape(4, 8) * np.where(np.arange(8) % 2, -1, 1)  # W[source row, neuron]
W[:, N:] = 0  # padding lanes hold 0
THRESHOLD, BIAS, V0 = 40, 2, np.arange(N) * 3
IDENTITY_WEIGHT = 7


ROUTING = np.array([[0, 5, 0, 0, 1, 0], [2, 3, 0, 0, 0, 0]])  # first, last, x, y, slot, delay


def piece() -> PieceInit:
    params = np.stack([np.full(N, THRESHOLD), np.full(N, BIAS), V0], axis=1)
    return PieceInit(
        kind=PIECE_CODES["neuron"],
        n=N,
        in_start=1,
        out_start=1,
        timesteps=2,
        first=10,  # the slice holds population neurons 10..15
        slots=(
            SlotInit(SLOT_CODES["dense"], 0, 4, 0, 0, row_words=2),
            SlotInit(SLOT_CODES["identity"], 0, 0, 0, IDENTITY_WEIGHT),
        ),
        synapse=W.reshape(-1, LANES),
        params=params,
        routing=ROUTING,
    )


def flit(ftype, slot, index, payload=0):
    return {"type": ftype, "slot": slot, "index": index, "payload": payload, "x": 0, "y": 0}


def run(bench, dut):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


async def membranes(ctx, dut):
    out = []
    for g in range(2):
        ctx.set(dut.dbg_maddr, g)
        word = ctx.get(dut.dbg_v)
        for lane in range(LANES):
            v = (word >> (lane * VB)) & 0xFFFF
            out.append(v - (1 << VB) if v >> (VB - 1) else v)
    return out[:N]


async def phase_i(ctx, dut, pushes, step=1):
    """Start phase I, write ``pushes`` = {cycle: flit}; return the first cycle ``i_done`` is high after them."""
    ctx.set(dut.step, step)
    ctx.set(dut.start, 1)
    last = max(pushes, default=0)
    c = 0
    while True:
        if c in pushes:
            assert ctx.get(dut.events.ready), f"FIFO full at cycle {c}"
            ctx.set(dut.events.payload, pushes[c])
            ctx.set(dut.events.valid, 1)
        else:
            ctx.set(dut.events.valid, 0)
        if c > last and ctx.get(dut.i_done):
            return c
        await ctx.tick()
        ctx.set(dut.start, 0)
        c += 1


def test_a_graded_dense_event_costs_one_cycle_per_lane_group():
    dut = Core(HW, piece())
    seen = {}

    async def bench(ctx):
        # written at cycle 1, popped at 2, groups at 2 and 3: ends at 4, done at 4 + 3
        seen["done"] = await phase_i(ctx, dut, {1: flit(TYPE_GRADED, 0, 2, payload=-3)})
        seen["busy"] = ctx.get(dut.busy)
        seen["v"] = await membranes(ctx, dut)

    run(bench, dut)
    assert seen["done"] == 2 + 2 + 3
    assert seen["busy"] == 2
    assert seen["v"] == list(V0 + -3 * W[2, :N])


def test_events_start_at_max_of_arrival_and_previous_end():
    dut = Core(HW, piece())
    seen = {}

    async def bench(ctx):
        # spikes from sources 0 and 3 written at cycles 1 and 2: popped at 2 (ends 4) and 4 (ends 6)
        pushes = {1: flit(TYPE_SPIKE, 0, 0), 2: flit(TYPE_SPIKE, 0, 3)}
        seen["done"] = await phase_i(ctx, dut, pushes)
        seen["last_end"] = ctx.get(dut.last_end)
        seen["v"] = await membranes(ctx, dut)

    run(bench, dut)
    assert seen["last_end"] == 6 and seen["done"] == 6 + 3
    assert seen["v"] == list(V0 + W[0, :N] + W[3, :N])


def test_identity_events_hit_one_neuron_or_none_in_one_cycle():
    dut = Core(HW, piece())
    seen = {}

    async def bench(ctx):
        # population neuron 15 is local 5 (lane 1 of group 1); neuron 3 is not in the piece
        pushes = {1: flit(TYPE_SPIKE, 1, 15), 2: flit(TYPE_GRADED, 1, 15, payload=2), 3: flit(TYPE_SPIKE, 1, 3)}
        seen["done"] = await phase_i(ctx, dut, pushes)
        seen["busy"] = ctx.get(dut.busy)
        seen["v"] = await membranes(ctx, dut)

    run(bench, dut)
    expect = V0.copy()
    expect[5] += 3 * IDENTITY_WEIGHT
    assert seen["v"] == list(expect)
    assert seen["busy"] == 3 and seen["done"] == 5 + 3  # popped at 2, 3, 4: the last ends at 5


def test_the_event_fifo_holds_input_fifo_events_flits():
    dut = Core(HW, piece())
    seen = {}

    async def bench(ctx):
        ctx.set(dut.start, 1)
        ctx.set(dut.fire, 1)  # a core in phase F pops nothing: the FIFO only fills
        ctx.set(dut.step, 0)  # outside the update window: F does nothing
        readies = []
        for _ in range(3):
            readies.append(ctx.get(dut.events.ready))
            ctx.set(dut.events.payload, flit(TYPE_SPIKE, 0, 0))
            ctx.set(dut.events.valid, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
        seen["ready"] = readies

    run(bench, dut)
    assert seen["ready"] == [1, 1, 0]


@pytest.mark.parametrize(("step", "bias_on", "fire_on"), [(0, False, False), (1, True, True), (2, True, True)])
def test_phase_f_adds_bias_fires_and_resets_by_subtraction(step, bias_on, fire_on):
    dut = Core(HW, piece())
    seen = {}
    add = 30  # a graded event from source 1 with value 1 first, so some neurons cross the threshold

    async def bench(ctx):
        await phase_i(ctx, dut, {1: flit(TYPE_GRADED, 0, 1, payload=add)}, step=step)
        ctx.set(dut.step, step)
        ctx.set(dut.fire, 1)
        done = []
        for _ in range(4):
            done.append(ctx.get(dut.f_done))
            await ctx.tick()
            ctx.set(dut.fire, 0)
        seen["f_done"] = done
        seen["v"] = await membranes(ctx, dut)
        ctx.set(dut.dbg_haddr, step % HW.core.spike_history_steps)
        seen["spikes"] = [(ctx.get(dut.dbg_h) >> j) & 1 for j in range(8)]

    run(bench, dut)
    v = V0 + add * W[1, :N]
    updating = 1 <= step < 1 + 2
    if bias_on:
        v = v + BIAS
    s = (v >= THRESHOLD) & fire_on
    v = v - THRESHOLD * s
    assert seen["v"] == list(v)
    # F(t) = ceil(6 / 4) = 2 cycles when updating: f_done low at cycles 0, 1, high from 2
    assert seen["f_done"] == ([0, 0, 1, 1] if updating else [1, 1, 1, 1])
    if fire_on:
        assert seen["spikes"] == list(s.astype(int)) + [0, 0]  # lanes past n never fire
        assert 0 < s.sum() < N


@pytest.mark.parametrize("stall", [False, True])
def test_the_encoder_sends_each_entrys_spikes_one_flit_per_cycle(stall):
    """Spikes of step 1 leave in phase I of step 2: entry 0 (neurons 0..5) then entry 1 (2..3), in
    ascending order, from cycle 0, one per cycle the router takes (``ready``), none after."""
    dut = Core(HW, piece())
    seen = {}

    async def bench(ctx):
        await phase_i(ctx, dut, {1: flit(TYPE_GRADED, 0, 1, payload=30)}, step=1)
        ctx.set(dut.fire, 1)
        await ctx.tick()
        ctx.set(dut.fire, 0)
        await ctx.tick().repeat(3)
        ctx.set(dut.dbg_haddr, 1)
        seen["spikes"] = [(ctx.get(dut.dbg_h) >> j) & 1 for j in range(N)]
        ctx.set(dut.step, 2)
        ctx.set(dut.start, 1)
        got = []
        for c in range(16):
            ready = 0 if stall and c % 3 == 1 else 1
            ctx.set(dut.flits.ready, ready)
            if ctx.get(dut.flits.valid) and ready:
                f = ctx.get(dut.flits.payload)
                got.append((c, f.slot, f.index, f.type))
            await ctx.tick()
            ctx.set(dut.start, 0)
        seen["got"] = got

    run(bench, dut)
    fired = [j for j in range(N) if seen["spikes"][j]]
    assert 2 <= len(fired) < N
    want = [(1, 10 + j, TYPE_SPIKE) for j in fired] + [(0, 10 + j, TYPE_SPIKE) for j in fired if 2 <= j <= 3]
    assert [g[1:] for g in seen["got"]] == want
    cycles = [g[0] for g in seen["got"]]
    if not stall:
        assert cycles == list(range(len(want)))
    else:
        assert cycles == [c for c in range(16) if c % 3 != 1][: len(want)]
