"""Loadable context registers (``docs/rtl.md``, "Swap mode"): what shapes a core's logic (a piece's
structure key) and what a swap core's loader writes into its registers (no co-simulation here:
``tests/test_rtl_swap.py`` co-simulates contexts shared by pieces of one structure)."""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Fragment
from amaranth.sim import Simulator as AmaranthSim
from test_rtl_swap import swap_program

from spikeforge.rtl.core import Core
from spikeforge.rtl.piece import (
    CONTEXT_REGISTERS,
    REGISTER_BITS,
    ROUTE_REGISTERS,
    SLOT_REGISTERS,
    register_values,
    structure_key,
)
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
    # what shapes the logic separates contexts: a lane group more, another delay, a tile's index ROM
    assert structure_key(dataclasses.replace(b, n=b.n - 4)) != structure_key(a)
    routing = np.array(b.routing)
    routing[0, 5] += 1
    assert structure_key(dataclasses.replace(b, routing=routing)) != structure_key(a)
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


def test_a_context_built_for_one_piece_takes_anothers_registers_from_its_write_ports():
    """Two writes per cycle (``cfg_en`` bit q, ``cfg_addr`` and ``cfg_data`` word q): after them every
    register holds ``h4``'s value (a negative value as its two's complement low bits); a cycle with
    ``cfg_en`` low changes nothing."""
    program, a, b = shared_pair()
    slots = list(b.slots)
    slots[0] = dataclasses.replace(slots[0], weight=-3)  # a signed value through the record's low bits
    b = dataclasses.replace(b, slots=tuple(slots))
    dut = Core(program.hardware, a, cfg_ports=2)
    want = register_values(b)
    seen = {}

    async def bench(ctx):
        mask = (1 << REGISTER_BITS) - 1
        for i in range(0, len(want), 2):
            pair = want[i : i + 2]
            ctx.set(dut.cfg_en, (1 << len(pair)) - 1)
            ctx.set(dut.cfg_addr, sum(a_ << (q * dut.reg_bits) for q, a_ in enumerate(range(i, i + len(pair)))))
            ctx.set(dut.cfg_data, sum((v & mask) << (q * REGISTER_BITS) for q, v in enumerate(pair)))
            await ctx.tick()
        ctx.set(dut.cfg_en, 0)
        ctx.set(dut.cfg_data, 0)
        await ctx.tick()
        regs = list(dut.regs.values())
        regs += [x for k, sl in enumerate(b.slots) for x in dut.slot_regs[k]]
        regs += [x for e in dut.routes for x in e]
        seen["regs"] = [ctx.get(x) for x in regs]

    sim = AmaranthSim(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["regs"] == want
    assert want[len(CONTEXT_REGISTERS) + 2] == -3  # slot 0's weight, read back signed
