"""Loadable context registers (``docs/rtl.md``, "Swap mode"): what shapes a core's logic (a piece's
structure key) and what a swap core's loader writes into its registers (no co-simulation here:
``tests/test_rtl_swap.py`` co-simulates contexts shared by pieces of one structure)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator as AmaranthSim
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rtl_swap import swap_program

from spikeforge.rtl.core import Core
from spikeforge.rtl.piece import (
    CONTEXT_REGISTERS,
    REGISTER_BITS,
    ROUTE_REGISTERS,
    SLOT_REGISTERS,
    piece_init,
    register_names,
    register_values,
    structure_key,
)
from spikeforge.rtl.scenarios import dense_network, dense_program
from spikeforge.rtl.swap import SwapCore, context_of, swap_plan


def shared_pair():
    """Core 0 of the 1 x 3 case: ``h1`` then ``h4``, 16 neurons each, one dense slot, one route."""
    program, _ = swap_program("1x3")
    plan = swap_plan(program)
    a, b = plan.contexts[0]
    return program, a, b


def test_pieces_of_one_structure_share_a_key_and_differ_only_in_register_values():
    program, a, b = shared_pair()
    assert (a.population, b.population) == ("h1", "h4")
    assert structure_key(a) == structure_key(b) and context_of([a, b]) == [0, 0]
    va, vb = register_values(a), register_values(b)
    per = len(CONTEXT_REGISTERS), len(SLOT_REGISTERS) * len(a.slots), len(ROUTE_REGISTERS) * len(a.routing)
    assert len(va) == sum(per)
    assert va != vb  # another layer: other windows, another slot row space and route
    # what shapes the logic separates contexts: a lane group more, a tile's index ROM; an entry's
    # delay (its history read port's row) and the number of entries are registers (a context holds
    # the most entries of its pieces, each loads its count)
    assert structure_key(dataclasses.replace(b, n=b.n - 4)) != structure_key(a)
    routing = np.array(b.routing)
    two = dataclasses.replace(b, routing=np.concatenate([routing, routing]))
    assert structure_key(two) == structure_key(a) and context_of([a, two]) == [0, 0]
    entries = CONTEXT_REGISTERS.index("entries")
    assert (register_values(a)[entries], register_values(two)[entries]) == (1, 2)
    assert register_names(two)[-len(ROUTE_REGISTERS) :] == [f"route1.{r}" for r in ROUTE_REGISTERS]
    routing[0, 5] += 1
    later = dataclasses.replace(b, routing=routing)
    assert structure_key(later) == structure_key(a)
    assert register_values(later)[-1] == register_values(b)[-1] + 1  # the last entry's last register: delay
    assert ROUTE_REGISTERS[-1] == "delay"
    assert structure_key(dataclasses.replace(b, neurons=tuple(reversed(b.neurons)))) != structure_key(a)
    assert context_of([a, dataclasses.replace(b, n=b.n - 4), b]) == [0, 1, 0]


def test_a_swap_core_builds_one_context_for_pieces_of_one_structure():
    """Core 0 of the 1 x 3 case holds two pieces and elaborates one context with loadable registers;
    with a piece of another structure between them, two."""
    program, a, b = shared_pair()
    plan = swap_plan(program)
    for pieces, n in (([a, b], 1), ([a, dataclasses.replace(b, n=b.n - 4), b], 2)):
        core = SwapCore(program.hardware, pieces, plan.data_bits, plan.addr_bits, plan.ports)
        Fragment.get(core, None)  # the contexts are elaborated too
        assert len(core.cores) == n < len(pieces)
        assert all(ctx.cfg_ports == plan.ports for ctx in core.cores)


@settings(max_examples=8, deadline=None)
@given(ports=st.integers(1, 3), data=st.data())
def test_a_context_built_for_one_piece_takes_any_register_values_from_its_write_ports(ports, data):
    """``ports`` writes per cycle (``cfg_en`` bit q, ``cfg_addr`` and ``cfg_data`` word q), in an order
    drawn at random: after them every register holds its value (a signed one, such as a slot's
    weight, from the record's low bits in two's complement); a cycle with ``cfg_en`` low changes
    nothing. The values: ``h4``'s, or any that fit the registers."""
    program, a, b = shared_pair()
    dut = Core(program.hardware, a, cfg_ports=ports)
    sim = AmaranthSim(dut)  # elaborates the context: its register signals exist from here on
    regs = list(dut.regs.values()) + [x for sl in dut.slot_regs for x in sl] + [x for e in dut.routes for x in e]
    regs += list(dut.origin.values())  # none: a range slice
    if data.draw(st.booleans(), label="h4's values"):
        want = register_values(b)
    else:
        want = []
        for x in regs:
            bits, signed = len(x), x.shape().signed
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            want.append(data.draw(st.integers(lo, hi)))
    order = data.draw(st.permutations(range(len(want))), label="write order")
    seen = {}

    async def bench(ctx):
        mask = (1 << REGISTER_BITS) - 1
        for i in range(0, len(order), ports):
            batch = order[i : i + ports]
            ctx.set(dut.cfg_en, (1 << len(batch)) - 1)
            ctx.set(dut.cfg_addr, sum(r << (q * dut.reg_bits) for q, r in enumerate(batch)))
            ctx.set(dut.cfg_data, sum((want[r] & mask) << (q * REGISTER_BITS) for q, r in enumerate(batch)))
            await ctx.tick()
        ctx.set(dut.cfg_en, 0)
        ctx.set(dut.cfg_data, 0)
        await ctx.tick()
        seen["regs"] = [ctx.get(x) for x in regs]

    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["regs"] == want


@pytest.mark.parametrize("ports", [1, 2, 3])
def test_a_partial_context_rewritten_while_active_never_reports_a_live_window(ports):
    """A swap core rewrites a shared context while it is still the active one, and the sequencer
    reads its ``plive`` (phase P) at any cycle. Written in ``CONTEXT_REGISTERS``' order, starts before
    ``T``, the window ``[acc_start, in_start + T)`` never holds the current step between two writes:
    the old piece's (steps 0-1) is over, the new one's (from step 4) not begun. (With ``in_start``
    written before ``acc_start``, ``[0, 5 + 2)`` would hold step 3 for a cycle.)"""
    program = dense_program(dense_network(3, (40, 16, 8)), 1, 3, neurons=16, lanes=4, axons=16)
    (pid,) = [p.id for p in program.pieces if p.kind == "partial"][:1]
    base = piece_init(program, pid)
    old = dataclasses.replace(base, in_start=0, out_start=0, timesteps=2, acc_start=0)
    new = dataclasses.replace(base, in_start=5, out_start=5, timesteps=6, acc_start=4)
    dut = Core(program.hardware, old, cfg_ports=ports)
    want = register_values(new)
    seen = []

    async def bench(ctx):
        mask = (1 << REGISTER_BITS) - 1
        ctx.set(dut.step, 3)
        for i in range(0, len(want), ports):
            batch = list(range(i, min(i + ports, len(want))))
            ctx.set(dut.cfg_en, (1 << len(batch)) - 1)
            ctx.set(dut.cfg_addr, sum(r << (q * dut.reg_bits) for q, r in enumerate(batch)))
            ctx.set(dut.cfg_data, sum((want[r] & mask) << (q * REGISTER_BITS) for q, r in enumerate(batch)))
            seen.append(ctx.get(dut.plive))
            await ctx.tick()
        ctx.set(dut.cfg_en, 0)
        seen.append(ctx.get(dut.plive))
        ctx.set(dut.step, 4)
        seen.append(ctx.get(dut.plive))  # the new window has begun

    sim = AmaranthSim(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen[:-1] == [0] * (len(seen) - 1) and seen[-1] == 1
