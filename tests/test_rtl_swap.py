"""``swap`` mode in the RTL (``docs/architecture.md`` section 7, ``rtl/swap.py``) against the simulator.

A network deeper than the array: its pieces share cores over time, so every core's memories start
empty and the DMA engine loads each piece from DRAM over one channel when the previous piece on its
core has finished. The array's sequencer starts a step only when its pieces are loaded; the cycles
the bench sees it wait (``phase`` load) must equal the simulator's DRAM stall of the step, and
everything the resident benches compare (phase ends, barriers, step cycles, membranes, spikes,
busy and sent counts, logits) must match as well.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator as AmaranthSim

from conftest import HAVE_ICARUS
from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.rtl import RtlError, export_rtl
from spikeforge.rtl.array import array_inits
from spikeforge.rtl.cosim import cosim, cosim_array
from spikeforge.rtl.piece import CONTEXT_REGISTERS, SLOT_REGISTERS, conv_values, register_names, register_values
from spikeforge.rtl.scenarios import conv_stack_network, dense_network, dense_program
from spikeforge.rtl.swap import SEL_BITS, SEL_MEMBRANE, SEL_REGS, DmaEngine, SwapPlan, context_of, swap_plan
from spikeforge.sim import Simulator

# (layer sizes, T, rows, cols, seed, axons): four hidden layers on three cores (two cores load a
# second piece); six on a 2 x 2 array (three cores load a second piece); a fan-in of 40 over 16
# axons on a 2 x 2 array (h1's root and two partial pieces; two cores load a second piece after
# a partial one, so phase P runs on loaded pieces); DIF neurons and an identity (residual) slot on
# 1 x 3 (one core loads three pieces one after another, one core stays idle)
CASES = {
    "1x3": ((12, 16, 16, 16, 16), 2, 1, 3, 3, None),
    "2x2": ((12, 16, 16, 16, 16, 16, 16), 3, 2, 2, 5, None),
    "partial": ((40, 16, 16, 16, 16), 2, 2, 2, 4, 16),
    "residual": ((12, 16, 16, 16, 16), 2, 1, 3, 8, None),
}


def swap_program(case: str):
    sizes, timesteps, rows, cols, seed, axons = CASES[case]
    residual = case == "residual"
    graph = dense_network(seed, sizes, timesteps=timesteps, residual=residual, dif=residual)
    program = dense_program(graph, rows, cols, neurons=16, lanes=4, axons=axons)
    assert program.plan.mode == "swap"
    assert len(program.pieces) > program.hardware.array.cores
    x = np.random.default_rng(seed).integers(0, 16, sizes[0])
    return program, x


@pytest.mark.rtl
@pytest.mark.icarus  # skipped without iverilog, fails under SPIKEFORGE_REQUIRE_PEERS (conftest)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_swap_program_loads_its_pieces_from_dram_and_matches_the_simulator(case):
    program, x = swap_program(case)
    assert any(len(tl) > 1 for tl in program.plan.timeline)  # some core loads a second piece at run time
    contexts = {k: max(context_of(ps)) + 1 for k, ps in swap_plan(program).contexts.items()}
    if case in ("1x3", "2x2", "partial"):  # dense layers of one structure share a context, rewritten by loads
        assert any(contexts[k] < len(tl) for k, tl in enumerate(program.plan.timeline) if tl)
    if case == "residual":
        assert max(len(tl) for tl in program.plan.timeline) == 3
        assert {"dense", "identity"} == {s.kind for p in program.pieces for s in p.slots}
    sim = Simulator(program, trace=True)
    run = sim.run(x)
    assert run.step_stall.sum() == sim.dram_stall > 0
    report = cosim_array(program, x)
    assert report.ok, report.format()
    # every step's wait for DRAM and its cycles compared; the stalls add up to the simulator's
    assert report.step_cycles == report.steps == len(run.trace)
    assert report.stall_cycles == int(run.step_stall.sum())
    assert report.stalled_steps == int((run.step_stall > 0).sum()) >= 3
    live = program.plan.live
    expect = sum(p.n for tr in run.trace for p in program.pieces if live[p.id, 0] <= tr.step < live[p.id, 1])
    assert report.membranes == expect  # the membranes of every piece while it is loaded
    assert report.spikes > 0 and report.logits == program.graph.output.size
    assert "DRAM stall cycles" in report.format()


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_dram_channel_one_cycle_slow_is_reported_at_the_first_stalled_step():
    program, x = swap_program("1x3")
    run = Simulator(program).run(x)
    first = int(np.flatnonzero(run.step_stall)[0])
    report = cosim_array(program, x, inits=swap_plan(program, latency_delta=1))
    assert not report.ok
    m = report.mismatches[0]
    assert m["step"] == first and "DRAM stall" in m["what"]
    assert (m["expected"], m["got"]) == (int(run.step_stall[first]), int(run.step_stall[first]) + 1)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_in_a_dram_image_is_reported_where_the_piece_is_loaded():
    """v0 of neuron 0 of a core's second piece, bit 4, in the DRAM: its membrane at its first live step."""
    program, x = swap_program("1x3")
    plan = swap_plan(program)
    k = next(k for k, ctxs in plan.contexts.items() if len(ctxs) > 1)
    rec = next(i for i in range(plan.n_rec[k][1]) if plan.record(k, 1, i)[:2] == (SEL_MEMBRANE, 0))
    report = cosim_array(program, x, dram_flip=(plan.first_rec[k][1] + rec, SEL_BITS + plan.addr_bits + 4))
    assert not report.ok
    m = report.mismatches[0]
    assert (m["step"], m["core"], m["what"], m["neuron"]) == (plan.live_start[k][1], k, "membrane", 0)
    assert abs(m["got"] - m["expected"]) == 16


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_in_a_register_record_is_reported_where_the_shared_context_runs_the_piece():
    """Bit 0 of slot 0's ``base`` in the DRAM's register records of ``h4``, loaded into the context
    ``h1`` ran on core 0 (one structure, one context): every dense event of ``h4`` reads the synapse
    words one word on, so its membranes are wrong from the first step an event reaches it; every
    step before matches (``h1``'s, with the context's reset registers, and the load itself)."""
    program, x = swap_program("1x3")
    plan = swap_plan(program)
    a, b = plan.contexts[0]
    assert context_of([a, b]) == [0, 0] and b.population == "h4"
    base = len(CONTEXT_REGISTERS) + SLOT_REGISTERS.index("base")  # slot 0's base register
    assert plan.record(0, 1, base) == (SEL_REGS, base, b.slots[0].base)  # context 0, the registers first
    run = Simulator(program, trace=True).run(x)
    first = next(tr.step for tr in run.trace if (np.asarray(tr.flit_piece) == b.piece_id).any())
    report = cosim_array(program, x, dram_flip=(plan.first_rec[0][1] + base, SEL_BITS + plan.addr_bits))
    assert not report.ok
    m = report.mismatches[0]
    assert (m["step"], m["core"], m["what"]) == (first, 0, "membrane"), report.format()


def test_the_dma_engine_serves_one_transfer_at_a_time_in_request_order():
    """Hand-computed: three cores request when the inference starts (served 0, 1, 2: 5, 3 and 2
    cycles), none before; every cycle counts (the sequencer repeats none); core 0's second piece is
    requested when its first piece's last step ends."""
    plan = SwapPlan(
        contexts={0: [None, None], 1: [None], 2: [None]},
        live_start={0: [1, 3], 1: [1], 2: [0]},
        live_end={0: [3, 5], 1: [4], 2: [2]},
        first_rec={0: [0, 2], 1: [3], 2: [4]},
        n_rec={0: [2, 1], 1: [1], 2: [1]},
        duration={0: [5, 4], 1: [3], 2: [2]},
        nbytes={0: [0, 0], 1: [0], 2: [0]},
        records=[(w << 5 | a << 3 | 0) for a, w in ((1, 11), (2, 12), (0, 13), (3, 14), (0, 15))],
        addr_bits=2,
        data_bits=8,
    )
    dut = DmaEngine(HardwareConfig(array=ArrayConfig(1, 3)), plan)
    seen = {"ready": [], "busy": [], "writes": [], "active0": []}

    async def bench(ctx):
        for c in range(26):
            ctx.set(dut.launch, int(c == 2))  # go: the loaders' first requests
            if c == 12 + 2:  # step 2 is over: core 0's first piece (live until 3) ended; the next is step 3
                ctx.set(dut.nxt, 3)
                ctx.set(dut.step_end, 1)
            else:
                ctx.set(dut.step_end, 0)
            seen["ready"].append(ctx.get(dut.ready))
            seen["busy"].append(ctx.get(dut.busy))
            seen["active0"].append(ctx.get(dut.active_0))
            for k in range(3):
                if ctx.get(getattr(dut, f"ld_en_{k}")):
                    seen["writes"].append((c, k, ctx.get(dut.ld_addr), ctx.get(dut.ld_data)))
            await ctx.tick()

    sim = AmaranthSim(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # nothing before go (cycle 2); then core 0: cycles 0-4 after it, core 1: 5-7, core 2: 8-9 (step
    # 0's piece): ready for step 0 at cycle 10 after go
    assert seen["busy"][:3] == [0, 0, 0] and seen["ready"][:2] == [0, 0] and min(w[0] for w in seen["writes"]) == 3
    seen = {key: v[2:] for key, v in seen.items()} | {"writes": [(c - 2, *w) for c, *w in seen["writes"]]}
    assert seen["ready"][:11] == [0] * 10 + [1]
    assert seen["busy"][:11] == [0] + [1] * 10  # busy is the registered state: from the cycle after the grant
    assert seen["writes"][:4] == [(1, 0, 1, 11), (2, 0, 2, 12), (6, 1, 3, 14), (9, 2, 0, 15)]
    # core 0's second piece: requested at cycle 12, 4 cycles
    assert seen["writes"][4] == (13, 0, 0, 13)
    assert seen["busy"][12:17] == [0, 1, 1, 1, 1] and seen["busy"][17] == 0
    assert seen["ready"][12:17] == [0] * 4 + [1]  # step 3 needs it: ready at cycle 16 = 12 + 4
    assert seen["active0"][15] == 0 and seen["active0"][16] == 1  # active in the cycle its transfer ends


def test_swap_programs_are_exported_with_their_dram_and_rounds_pieces_the_rtl_lacks_are_named(tmp_path, mbe_mlp8):
    program, _ = swap_program("1x3")
    manifest = export_rtl(program.hardware, tmp_path, program)
    plan = swap_plan(program)
    assert manifest["mode"] == "swap" and manifest["dram"]["words"] == len(plan.records)
    assert manifest["dram"]["records_per_cycle"] == plan.ports == 1
    lines = (tmp_path / "dram.hex").read_text().split()
    assert [int(v, 16) for v in lines] == plan.records
    loads = [p for c in manifest["cores"] for p in c["pieces"]]
    assert sorted(p["piece"] for p in loads) == list(range(len(program.pieces)))
    mem = program.hardware.memory
    for p in loads:
        nbytes = program.image_bytes(program.pieces[p["piece"]])
        assert p["bytes"] == nbytes
        assert p["transfer_cycles"] == mem.dram_latency_cycles + -(-nbytes // mem.dram_bytes_per_cycle)
    # each piece's records are its registers and images: the synapse words it uses, then parameters
    # and v0 per lane group
    k = int(program.plan.core[0])
    regs = len(register_values(plan.contexts[k][0]))
    assert plan.n_rec[k][0] == regs + program.pieces[0].words + 2 * -(-program.pieces[0].n // 4)
    if HAVE_ICARUS:
        import subprocess

        out = subprocess.run(
            ["iverilog", "-g2012", "-o", str(tmp_path / "a.out"), str(tmp_path / "core_array.sv")],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
    from spikeforge.mapping import compile

    # rounds programs are built (tests/test_rtl_rounds.py), MBE pieces too (tests/test_rtl_rounds_mbe.py)
    hw = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(neuron_models=("if", "dif", "mbe")))
    rounds = compile(mbe_mlp8, hw)
    assert rounds.plan.mode == "rounds"
    assert {rounds.pieces[u.piece].kind for us in array_inits(rounds).units.values() for u in us} == {"mbe", "output"}
    # the one-core bench replays resident programs only: a swap program goes to the array bench
    with pytest.raises(RtlError, match=r"co-simulate it on the whole array"):
        cosim(program, np.zeros(12, np.int64))


#: A hardware file with a wide, short DRAM channel: 64 bytes per cycle, 20 cycles of latency (the
#: 1 x 3 case's cores). A piece's 29 to 89 records (its registers and images) outnumber its
#: transfer's 22 to 27 cycles, which the DMA engine of one record per cycle refused; it writes 4 a cycle.
WIDE_DRAM = """
[array]
rows = 1
cols = 3

[core]
axons = 16
neurons = 16
lanes = 4
slots = 4
routing_entries = 64
spike_history_steps = 8

[memory]
dram_bytes_per_cycle = 64
dram_latency_cycles = 20
"""


def wide_dram_program(tmp_path):
    from spikeforge.mapping import compile
    from spikeforge.mapping.hardware import load_hardware

    (tmp_path / "wide.toml").write_text(WIDE_DRAM)
    hw = load_hardware(tmp_path / "wide.toml")
    program, x = swap_program("1x3")
    assert hw.core == program.hardware.core  # the 1 x 3 case, on the wide channel
    program = compile(program.graph, hw)
    assert program.plan.mode == "swap"
    return program, x


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_wide_short_dram_channel_loads_several_records_per_cycle_and_matches_the_simulator(tmp_path):
    program, x = wide_dram_program(tmp_path)
    plan = swap_plan(program)
    pairs = [(n, d) for k in plan.contexts for n, d in zip(plan.n_rec[k], plan.duration[k])]
    assert any(n >= d for n, d in pairs)  # refused by one record per cycle
    assert plan.ports == max(-(-n // (d - 1)) for n, d in pairs) == 4
    assert any(-(-n // (plan.ports - 1)) >= d for n, d in pairs)  # no fewer would do
    run = Simulator(program, trace=True).run(x)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == len(run.trace)
    assert report.stall_cycles == int(run.step_stall.sum()) > 0 and report.stalled_steps >= 3
    assert report.spikes > 0 and report.logits == program.graph.output.size


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_dma_engine_one_write_port_short_lands_words_after_the_transfer_and_is_reported(tmp_path):
    """With 3 records a cycle instead of 4, a piece's last records land after its transfer has ended,
    where its context (active from the cycle its transfer ends) reads them: reported as membranes
    at the first step with events (core 1's first piece, step 2)."""
    program, x = wide_dram_program(tmp_path)
    plan = swap_plan(program)
    plan.ports -= 1
    report = cosim_array(program, x, inits=plan)
    assert not report.ok
    first = report.mismatches[0]
    assert (first["step"], first["core"], first["what"]) == (2, 1, "membrane"), report.format()


def test_the_dma_engine_writes_several_records_a_cycle_by_hand():
    """Two write ports: core 0's three records land at cycle 1 (two) and 2 (one), its transfer of 3
    cycles ends at 3, where core 1 is granted; its two records land together at cycle 4."""
    plan = SwapPlan(
        contexts={0: [None], 1: [None]},
        live_start={0: [0], 1: [0]},
        live_end={0: [2], 1: [2]},
        first_rec={0: [0], 1: [3]},
        n_rec={0: [3], 1: [2]},
        duration={0: [3], 1: [2]},
        nbytes={0: [0], 1: [0]},
        records=[(w << 5 | a << 3 | 0) for a, w in ((1, 11), (2, 12), (3, 13), (0, 14), (1, 15))],
        addr_bits=2,
        data_bits=8,
        ports=2,
    )
    dut = DmaEngine(HardwareConfig(array=ArrayConfig(1, 2)), plan)
    seen = {"ready": [], "writes": []}

    async def bench(ctx):
        for c in range(8):
            ctx.set(dut.launch, int(c == 0))  # go: the loaders' first requests
            seen["ready"].append(ctx.get(dut.ready))
            for k in range(2):
                en = ctx.get(getattr(dut, f"ld_en_{k}"))
                addr, data = ctx.get(dut.ld_addr), ctx.get(dut.ld_data)
                for q in range(2):
                    if en >> q & 1:
                        seen["writes"].append((c, k, addr >> (2 * q) & 3, data >> (8 * q) & 255))
            await ctx.tick()

    sim = AmaranthSim(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["writes"] == [(1, 0, 1, 11), (1, 0, 2, 12), (2, 0, 3, 13), (4, 1, 0, 14), (4, 1, 1, 15)]
    assert seen["ready"] == [0] * 5 + [1] * 3  # core 1's transfer (cycles 3-4) ends at 5


def test_a_piece_whose_transfer_is_too_short_for_any_record_is_refused():
    """No latency and a channel wider than every piece: each transfer takes one cycle, in which a
    record can be read but not yet written. The first piece is named; the latency fits every piece:
    the largest, 307 records at 16 a cycle (its routing entry's delay among its registers), needs 20 + 1
    cycles, 20 of latency beside its one."""
    graph = dense_network(3, CASES["1x3"][0], timesteps=2)
    core = CoreConfig(axons=16, neurons=16, lanes=1, slots=4, routing_entries=64, spike_history_steps=8)
    from spikeforge.mapping import compile
    from spikeforge.mapping.hardware import MemoryConfig

    memory = MemoryConfig(dram_latency_cycles=0, dram_bytes_per_cycle=4096)
    program = compile(graph, HardwareConfig(array=ArrayConfig(1, 3), core=core, memory=memory))
    assert program.plan.mode == "swap"
    msg = r"piece 0 \('h1'\) loads 243 DRAM words in a transfer of 1 cycle, .* dram_latency_cycles to at least 20\."
    with pytest.raises(RtlError, match=msg):
        swap_plan(program)
    memory = MemoryConfig(dram_latency_cycles=20, dram_bytes_per_cycle=4096)  # the latency named: 16 a cycle
    assert swap_plan(compile(graph, HardwareConfig(array=ArrayConfig(1, 3), core=core, memory=memory))).ports == 16


def delayed_swap_program():
    """The 1 x 3 case with ``h1 -> h2`` one step late (a projection delay of 1): core 0 runs ``h1``,
    whose routing entry has delay 1, then ``h4``, whose entry has delay 0, in one context (seed 11:
    ``h4`` sends the output 6 spikes)."""
    sizes, timesteps, rows, cols, _, axons = CASES["1x3"]
    seed = 11
    graph = dense_network(seed, sizes, timesteps=timesteps)
    late = tuple(dataclasses.replace(p, delay=1) if p.dst == "h2" else p for p in graph.projections)
    graph = dataclasses.replace(graph, projections=late)
    program = dense_program(graph, rows, cols, neurons=16, lanes=4, axons=axons)
    assert program.plan.mode == "swap"
    a, b = swap_plan(program).contexts[0]
    assert (a.population, b.population) == ("h1", "h4") and context_of([a, b]) == [0, 0]
    assert [int(e[5]) for e in a.routing] == [1] and [int(e[5]) for e in b.routing] == [0]
    return program, np.random.default_rng(seed).integers(0, 16, sizes[0]), b


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_shared_context_sends_each_pieces_spikes_after_its_own_delay():
    """An entry's delay is a register: the context reads the history row ``t - 1 - delay`` of the
    delay its loader wrote (1 for ``h1``, then 0 for ``h4``). Exact at every step; with bit 0 of
    ``h4``'s delay record flipped (0 -> 1) its spikes reach the output a step late, and the first
    step they should have arrived at is reported."""
    program, x, b = delayed_swap_program()
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps
    plan = swap_plan(program)
    delay = len(register_values(b)) - 1  # the one routing entry's last register
    assert plan.record(0, 1, delay) == (SEL_REGS, delay, 0)
    run = Simulator(program, trace=True).run(x)
    out = next(p.id for p in program.pieces if p.population == "out")
    first = next(tr.step for tr in run.trace if (np.asarray(tr.flit_piece) == out).any())
    report = cosim_array(program, x, dram_flip=(plan.first_rec[0][1] + delay, SEL_BITS + plan.addr_bits))
    assert not report.ok
    assert report.mismatches[0]["step"] == first, report.format()


@pytest.mark.rtl
@pytest.mark.icarus
def test_conv_pieces_of_different_geometry_share_a_swap_context_and_match_the_simulator():
    """Four convolutions at ``T = 2`` on 1 x 3 cores of 64 neurons: core 0 loads ``h1`` (3 x 3, padding
    1, from the host's 1 x 4 x 4, 64 neurons) and later ``h4`` (1 x 1 from ``h3``'s 4 x 2 x 2, 16
    neurons) into one context, which its register records rewrite; every step, packet and DRAM
    stall is the simulator's."""
    layers = ((2, 2, 2, 0), (3, 3, 1, 1), (1, 1, 1, 0))
    graph = conv_stack_network(1, channels=4, side=4, layers=layers, timesteps=2)
    program = dense_program(graph, 1, 3, neurons=64, lanes=4)
    assert program.plan.mode == "swap"
    a, b = swap_plan(program).contexts[0]
    assert (a.population, b.population) == ("h1", "h4") and context_of([a, b]) == [0, 0]
    assert conv_values(a) == [4, 4, 4, 4, 4, 4, 4, 3, 3, 1, 1] and conv_values(b) == [4, 2, 2, 2, 2, 2, 2, 1, 1, 1, 0]
    x = np.random.default_rng(1).integers(0, 16, graph.input.size).reshape(graph.input.shape)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps and report.spikes > 0


@pytest.mark.rtl
@pytest.mark.icarus
def test_pieces_with_different_numbers_of_routing_entries_share_a_context_that_reads_each_ones_count():
    """The residual case: core 0 loads ``h1`` (1 routing entry) and later ``h3`` (2: to ``h4``'s dense
    and identity slots) into one context of 2 entries; each loads its count, ``entries``, and the
    encoder reads no entry past it (matched at every step in the test above). Bit 1 of ``h3``'s count
    record flipped (2 -> 0): none of its spikes is sent, reported at the first step it sends one in
    the simulator; nothing before."""
    program, x = swap_program("residual")
    plan = swap_plan(program)
    a, b = plan.contexts[0][:2]
    assert (a.population, len(a.routing), b.population, len(b.routing)) == ("h1", 1, "h3", 2)
    assert context_of([a, b]) == [0, 0]
    at = register_names(b).index("entries")
    assert plan.record(0, 1, at) == (SEL_REGS, at, 2)
    run = Simulator(program, trace=True).run(x)
    first = next(tr.step for tr in run.trace if (np.asarray(tr.flit_src) == b.piece_id).any())
    report = cosim_array(program, x, dram_flip=(plan.first_rec[0][1] + at, SEL_BITS + plan.addr_bits + 1))
    assert not report.ok
    assert report.mismatches[0]["step"] == first, report.format()
