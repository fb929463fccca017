"""``rounds`` mode in the RTL (``docs/architecture.md`` section 7, ``rtl/rounds.py``) against the simulator.

The array is smaller than the pieces live at once: at every step each core runs its pieces in turn,
each round reading its images, membranes and its sources' spike bits (or the host's input) from
DRAM, integrating, firing and writing its membranes and spikes back, all on one DRAM channel. The
bench compares every step's cycles, every piece's membranes and spike rows as the DRAM holds them
at every barrier, every core's busy cycles and the logits.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import HAVE_ICARUS
from spikeforge.mapping import HardwareConfig, compile
from spikeforge.mapping.connectivity import slot_sources
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig, MemoryConfig
from spikeforge.rtl import RtlError, export_rtl
from spikeforge.rtl.cosim import cosim, cosim_array, cosim_rounds, rounds_spec
from spikeforge.rtl.rounds import SEL_HOST, SEL_MEMBRANE, SEL_PARAMS, SEL_SPIKES, SEL_SYNAPSE, rounds_plan
from spikeforge.rtl.scenarios import (
    attention_network,
    dense_network,
    dense_program,
    pooled_network,
    residual_conv_network,
)
from spikeforge.sim import Simulator


def rounds_program(case: str):
    """Four hidden layers on two cores (three rounds on one, two on the other, both on the channel at
    once); DIF neurons with an identity (residual) slot on one core (four rounds per step at most); a
    residual conv block on two cores (graded host input into conv tiles, identity slots between
    tiles, a pool_dense read-out: 9 pieces); an attention score block on two cores (two product
    pieces, their membranes in lane banks and their running counts as state, beside whole-word
    pieces on the same core); a 2 x 2 max-pool on one core."""
    if case == "deep":
        graph, rows, cols = dense_network(5, (12, 16, 16, 16, 16), timesteps=2), 1, 2
    elif case == "residual":
        graph, rows, cols = dense_network(8, (12, 16, 16, 16), timesteps=2, residual=True, dif=True), 1, 1
    elif case == "attention":
        graph, rows, cols = attention_network(1), 1, 2
    elif case == "pool":
        graph, rows, cols = pooled_network(1), 1, 1
    else:
        graph, rows, cols = residual_conv_network(2, channels=4, side=4), 1, 2
    program = dense_program(graph, rows, cols, neurons=16, lanes=4)
    assert program.plan.mode == "rounds"
    x = np.random.default_rng(1).integers(0, 16, graph.input.size).reshape(graph.input.shape)
    return program, x


@pytest.mark.rtl
@pytest.mark.icarus  # skipped without iverilog, fails under SPIKEFORGE_REQUIRE_PEERS (conftest)
@pytest.mark.parametrize("case", ["residual", "conv", "attention", "pool"])
def test_a_rounds_program_matches_the_simulator_at_every_step(case):
    program, x = rounds_program(case)
    run = Simulator(program, trace=True).run(x)
    plan = rounds_plan(program)
    steps = len(run.trace)
    rounds = {t: [u for us in plan.units.values() for u in us if u.lo <= t < u.hi] for t in range(steps)}
    assert max(len(tl) for tl in program.plan.timeline) >= 3  # a core runs three pieces or more in turn
    if len(plan.units) > 1:  # two cores wait on the one DRAM channel at the same step
        assert any(len({int(program.plan.core[u.piece]) for u in r}) > 1 for r in rounds.values())
    kinds = {s.kind for p in program.pieces for s in p.slots}
    expect = {
        "residual": {"dense", "identity"},
        "conv": {"conv", "identity", "pool_dense"},
        "attention": {"dense", "product_a", "product_b"},
        "pool": {"dense", "pool"},
    }
    assert kinds == expect[case]
    if case == "attention":  # a core holds banked product pieces and whole-word pieces; counts are state
        assert any({u.banked for u in us} == {True, False} for us in plan.units.values())
        assert all(u.n_count > 0 for us in plan.units.values() for u in us if u.banked)
    if case == "pool":  # the max-pool's counts are state: k**2 * ceil(n/lanes) words after its maxima
        (pool,) = [u for us in plan.units.values() for u in us if program.pieces[u.piece].kind == "maxpool"]
        groups = -(-pool.init.n // 4)
        assert pool.n_count == 4 * groups
        state = [d for d in pool.load if d[0] == SEL_SYNAPSE and d[2] >= pool.state_base]
        assert [d[1:4] for d in state] == [(w, pool.state_base + groups + w, 1) for w in range(pool.n_count)]
    report = cosim_array(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == steps
    assert report.rounds == sum(len(r) for r in rounds.values()) > steps
    assert report.membranes == steps * sum(p.n for p in program.pieces)  # every piece, every barrier, from DRAM
    fired = sum(p.n for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None)
    assert report.spikes == fired > 0
    assert report.busy_checks == steps * len(plan.units)
    assert report.logits == program.graph.output.size
    # running counts (products, the max-pool), read back from the DRAM at every barrier
    assert report.counts == steps * sum(u.n_count for us in plan.units.values() for u in us)
    assert (report.counts > 0) == (case in ("attention", "pool"))
    assert "rounds through DRAM: match" in report.format()


def wide_rounds_program(case: str):
    """A rounds case on a short, wide DRAM channel (64 bytes per cycle, 2 cycles of latency), whose
    rounds' words outnumber their transfers' cycles, so one word per cycle cannot move them."""
    program, x = rounds_program(case)
    memory = MemoryConfig(dram_bytes_per_cycle=64, dram_latency_cycles=2)
    program = compile(program.graph, dataclasses.replace(program.hardware, memory=memory))
    assert program.plan.mode == "rounds"
    return program, x


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize("case", ["residual", "pool"])
def test_a_short_wide_dram_channel_moves_several_words_per_cycle_and_matches_the_simulator(case):
    """``residual``: the output's load of 19 descriptors (13 of them its registers) in 4 cycles, 7 a
    cycle; ``pool``: the max-pool's load of 30 descriptors (16 registers: its tile's origin too) in 5
    cycles, 8 a cycle (its write-back of 11 words, maxima, counts and row, in 3 cycles needs 6)."""
    program, x = wide_rounds_program(case)
    plan = rounds_plan(program)
    units = [u for us in plan.units.values() for u in us]
    pairs = [(len(u.load), u.load_cycles) for u in units] + [(u.n_wb, u.wb_cycles) for u in units]
    assert any(n >= d for n, d in pairs if n)  # refused by one word per cycle
    assert plan.ports == max(-(-n // (d - 1)) for n, d in pairs if n) == {"residual": 7, "pool": 8}[case]
    run = Simulator(program, trace=True).run(x)
    steps = len(run.trace)
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == steps
    assert report.rounds == sum(u.lo <= t < u.hi for t in range(steps) for u in units) > steps
    assert report.membranes == steps * sum(p.n for p in program.pieces)
    assert report.spikes == sum(p.n for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None) > 0
    assert report.counts == steps * sum(u.n_count for u in units) and (report.counts > 0) == (case == "pool")
    assert report.busy_checks == steps and report.logits == program.graph.output.size


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_dma_engine_one_port_short_on_a_wide_channel_is_reported():
    """Five descriptors a cycle where 6 are needed: the output's load (17 descriptors in 4 cycles)
    still has its last descriptors unread when its transfer ends, so its round integrates without
    their sources: reported at its first round (step 7), in the step's cycles."""
    program, x = wide_rounds_program("residual")
    plan = rounds_plan(program)
    plan.ports -= 1
    short = [u for us in plan.units.values() for u in us if -(-len(u.load) // plan.ports) >= u.load_cycles]
    assert [program.pieces[u.piece].kind for u in short] == ["output"] and short[0].lo == 7
    report = cosim_rounds(program, x, plan=plan)
    assert not report.ok
    m = report.mismatches[0]
    assert m["step"] == 7 and "cycles of the step" in m["what"], report.format()


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_dram_channel_one_cycle_slow_is_reported_at_the_first_step_with_a_round():
    """One round at the first step: its load and its write-back each take a cycle more."""
    program, x = rounds_program("deep")
    run = Simulator(program).run(x)
    slow = rounds_plan(program, latency_delta=1)
    first = min(u.lo for us in slow.units.values() for u in us)
    assert sum(u.lo <= first < u.hi for us in slow.units.values() for u in us) == 1
    report = cosim_array(program, x, inits=slow)
    assert not report.ok
    m = report.mismatches[0]
    assert m["step"] == first and "cycles of the step" in m["what"]
    assert (m["expected"], m["got"]) == (int(run.step_cycles[first]), int(run.step_cycles[first]) + 2)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_sequencer_that_starts_a_step_late_is_reported():
    """The array starts each step in the cycle the last one's barrier closes; a sequencer one cycle
    late is reported at step 0, in that cycle (step 0 still under way)."""
    program, x = rounds_program("deep")
    report = cosim_array(program, x, late_phase=1)
    m = report.mismatches[0]
    assert m["what"] == "array phase and step of the next step in the cycle done rises"
    assert (m["step"], m["expected"], m["got"]) == (0, ["rounds", 1], ["rounds", 0])
    with pytest.raises(RtlError, match=r"a rounds-mode array has no phase P to skip .*; drop skip_p\."):
        cosim_array(program, x, skip_p=True)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_in_a_write_back_or_a_dram_image_is_reported_where_it_lands():
    """Both in one run, on piece 0 (h1) at its first round: bit 2 of its first synapse word in the
    DRAM (the weight of input 0 onto neuron 0) puts neuron 0 off by ``4 * x[0]``; bit 3 of lane 1
    of the first membrane word it writes back puts neuron 1 off by 8. Nothing differs before."""
    program, x = rounds_program("deep")
    plan = rounds_plan(program)
    unit = next(u for us in plan.units.values() for u in us if u.piece == 0)
    sel, _, addr, *_ = next(d for d in unit.load if d[0] == SEL_SYNAPSE)  # its first synapse word
    assert x[0] != 0
    report = cosim_rounds(program, x, dram_flip=(addr, 2), wb_flip=(0, 24 + 3))
    assert not report.ok and min(m["step"] for m in report.mismatches) == unit.lo
    first = {}
    for m in report.mismatches:
        first.setdefault((m.get("piece"), m["neuron"]), m)
    w, v = first[0, 0], first[0, 1]
    assert (w["step"], w["what"], abs(w["got"] - w["expected"])) == (unit.lo, "membrane (DRAM state)", 4 * int(x[0]))
    assert (v["step"], v["what"], abs(v["got"] - v["expected"])) == (unit.lo, "membrane (DRAM state)", 8)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_chunk_table_that_drops_a_needed_source_is_reported_at_the_first_step_it_fired():
    """The feeder's chunk table of ``h2``'s first chunk (``h1``'s spike word) with the bit of its first
    needed source cleared: that ``h1`` neuron's spikes never reach ``h2``, whose membranes are off at the
    first step the neuron fired the step before (``delay`` 0), on its core only; nothing before."""
    from spikeforge.sim import Simulator

    program, x = rounds_program("deep")
    plan = rounds_plan(program)
    k, u = next((k, u) for k, us in plan.units.items() for u in us if u.init.population == "h2")
    mask, slot, graded, base = u.chunk_table[0]
    assert graded == 0 and mask
    bit = (mask & -mask).bit_length() - 1  # the chunk's lowest needed bit
    source = plan.neurons[base + bit]
    u.chunk_table[0] = (mask & ~(1 << bit), slot, graded, base)
    run = Simulator(program, trace=True).run(x)
    holder = next(q for q in program.pieces if q.population == "h1" and source in q.neurons)
    local = list(holder.neurons).index(source)
    first = next(
        t
        for t in range(max(u.lo, 1), u.hi)
        if run.trace[t - 1].spikes[holder.id] is not None and run.trace[t - 1].spikes[holder.id][local]
    )
    report = cosim_rounds(program, x, plan=plan)
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first, report.format()
    assert {(m["core"], m.get("piece", u.piece)) for m in report.mismatches if m["step"] == step} == {(k, u.piece)}


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_round_missing_from_the_schedule_is_reported_at_its_step():
    """``h2``'s window one step shorter in the plan the RTL is built from: the schedule memory leaves out
    its round at its last step, so its membranes and spike row are stale there, on its core, and the
    step is shorter; every earlier step matches."""
    program, x = rounds_program("deep")
    plan = rounds_plan(program)
    k, j, u = next((k, j, u) for k, us in plan.units.items() for j, u in enumerate(us) if u.init.population == "h2")
    last = u.hi - 1
    assert j in plan.schedule(k)[last]
    plan.units[k][j] = dataclasses.replace(u, hi=last)
    assert j not in plan.schedule(k)[last]
    report = cosim_rounds(program, x, plan=plan)
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == last, report.format()
    at = [m for m in report.mismatches if m["step"] == step]
    # its core's state and busy cycles, and the step's cycles (the array's: core None)
    assert {(m["core"], m.get("piece", u.piece)) for m in at} <= {(k, u.piece), (None, u.piece)}
    assert any(m["core"] == k for m in at) and any(m["core"] is None for m in at), report.format()


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_in_a_max_pool_count_write_back_is_reported_and_read_back_next_round():
    """Bit 3 (8) of the max-pool's first count word (``C[0, 0]``, ``count_bits = 4``) flipped as it
    is written back at every round: the count word is off by 8 at its first round's barrier, and at
    the next round the count read back in raises output 0's window maximum past the simulator's."""
    program, x = rounds_program("pool")
    plan = rounds_plan(program)
    (pool,) = [u for us in plan.units.values() for u in us if program.pieces[u.piece].kind == "maxpool"]
    groups = -(-pool.init.n // 4)
    report = cosim_rounds(program, x, wb_flip=(pool.piece, 3, groups))
    assert not report.ok
    first = {}
    for m in report.mismatches:
        first.setdefault((m["what"], m["neuron"]), m)
    assert min(m["step"] for m in report.mismatches) == pool.lo
    c = first["running-count word (DRAM state)", 0]
    assert (c["step"], c["piece"], c["got"] ^ c["expected"]) == (pool.lo, pool.piece, 8)
    v = first["membrane (DRAM state)", 0]
    assert (v["step"], v["piece"]) == (pool.lo + 1, pool.piece) and v["got"] > v["expected"]


def split_program(cols: int):
    """Split fan-ins. On one core: fan-in 40 over 16 axons, a slice of 16 neurons that is a root and
    two partial chunks, then the output. On two: fan-in 16 over 8 axons, three slices of a root and
    one chunk (two on core 0, one on core 1), and the output's fan-in of 40, a root and a chunk (core
    1), both cores loading chunks on the one channel at steps 1 and 2."""
    graph = dense_network(4, (40, 16) if cols == 1 else (16, 40), timesteps=2)
    program = dense_program(graph, 1, cols, axons=16 if cols == 1 else 8)
    assert program.plan.mode == "rounds"
    x = np.random.default_rng(1).integers(1, 16, graph.input.size).reshape(graph.input.shape)
    return program, x


def chunk_units(plan):
    """The plan's rounds of partial chunks (each continues its root's round)."""
    return [u for us in plan.units.values() for u in us if u.root >= 0]


def expected_rounds(program, steps: int) -> int:
    """Rounds a rounds program runs in ``steps`` steps: one per slice (timeline entry) and step of its
    window (a split slice's chunks load and integrate within its root's round)."""
    windows = [program.round_steps(program.pieces[r]) for tl in program.plan.timeline for r in tl]
    return sum(len(range(w.start, min(w.stop, steps))) for w in windows)


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize("cols", [1, 2])
def test_a_slice_split_into_chunks_loads_them_one_at_a_time_and_matches_the_simulator(cols):
    """Section 7: the root's load and integration, then each chunk's, each one request on the channel;
    a chunk's events add into the root's accumulators (the simulator's phase P moves its sums there),
    then the root fires and writes back. On two cores, core 1's first load (requested at cycle 0) is
    served between core 0's root load and its chunk loads (requested after the root integrated)."""
    program, x = split_program(cols)
    plan = rounds_plan(program)
    mem = program.hardware.memory
    chunks = chunk_units(plan)
    roots = sorted({u.root for u in chunks})
    assert [sum(u.root == r for u in chunks) for r in roots] == ([2] if cols == 1 else [1, 1, 1, 1])
    for us in plan.units.values():
        for j, u in enumerate(us):
            piece = program.pieces[u.piece]
            b_in, b_out = program.round_traffic(piece)
            assert u.load_cycles == mem.dram_latency_cycles + -(-b_in // mem.dram_bytes_per_cycle)
            if u.root >= 0:  # right after its root (or the root's earlier chunk); no state, no parameters
                assert piece.kind == "partial" and us[j - 1].piece in (u.root, u.piece - 1) and b_out == 0
                assert u.n_wb == 0 and not any(d[0] in (SEL_MEMBRANE, SEL_PARAMS) for d in u.load)
                assert u.piece not in plan.state_base and (u.lo, u.hi) == (us[j - 1].lo, us[j - 1].hi)
    if cols == 2:  # both cores run split slices at the same steps, core 0 two in turn; the output is split
        assert sorted(int(program.plan.core[r]) for r in roots) == [0, 0, 1, 1]
        assert program.pieces[roots[-1]].kind == "output"
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    steps = program.graph.total_steps
    assert report.step_cycles == report.steps == steps
    assert report.rounds == expected_rounds(program, steps)
    assert report.membranes == steps * sum(p.n for p in program.pieces if p.kind != "partial")
    assert report.busy_checks == steps * cols and report.logits == program.graph.output.size


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_chunk_loaded_late_or_integrated_with_its_roots_weights_is_reported():
    """Both in one run, on the first chunk of the one-core slice: its load one cycle longer makes its
    first step (step 1) one cycle longer, its busy cycles unchanged; its synapse words left unloaded
    make it integrate with its root's weights still in the SRAM, so at step 1 the root's membranes
    (and spikes), nothing else, differ (later steps differ through the spikes that follow)."""
    program, x = split_program(1)
    plan = rounds_plan(program)
    chunk = chunk_units(plan)[0]
    chunk.load_cycles += 1
    chunk.load = [d for d in chunk.load if d[0] != SEL_SYNAPSE]
    run = Simulator(program).run(x)
    report = cosim_rounds(program, x, plan=plan)
    assert not report.ok
    assert min(m["step"] for m in report.mismatches) == chunk.lo
    first = [m for m in report.mismatches if m["step"] == chunk.lo]
    (cyc,) = [m for m in first if "cycles" in m["what"]]
    assert cyc["what"].startswith("cycles of the step") and cyc["expected"] == int(run.step_cycles[chunk.lo])
    assert cyc["got"] == cyc["expected"] + 1
    v = [m for m in first if m is not cyc]
    assert {m["piece"] for m in v} == {chunk.root} and any(m["what"] == "membrane (DRAM state)" for m in v)
    assert {m["what"] for m in v} <= {"membrane (DRAM state)", "spike (DRAM row)"}


def conv_split_program(case: str):
    """The residual conv block with ``h1 -> conv -> h2`` split at channel boundaries, on one core.
    ``banked``: 2 channels of 4 x 4 on 32 neurons and 8 lanes, 3 axons (12 synapse words: one input
    channel's 3 x 3 kernel each): h1 and h2 one 2 x 4 x 4 tile each, its channel block of 2 on the
    lane banks, an event reaching all 9 taps; h2 a root (identity slot, input channel 0) and a chunk
    (channel 1). ``whole``: 4 channels of 2 x 2 on 16 neurons and 4 lanes, 5 axons: whole words, h2 a
    root (identity, channels 0-1) and a chunk (channels 2-3)."""
    ch, side, neurons, lanes, axons = (2, 4, 32, 8, 3) if case == "banked" else (4, 2, 16, 4, 5)
    graph = residual_conv_network(2, channels=ch, side=side)
    program = dense_program(graph, 1, 1, neurons=neurons, lanes=lanes, axons=axons)
    assert program.plan.mode == "rounds"
    x = np.random.default_rng(1).integers(0, 16, graph.input.size).reshape(graph.input.shape)
    return program, x


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize("case", ["banked", "whole"])
def test_a_conv_slice_split_at_channel_boundaries_matches_the_simulator(case):
    """Section 2's conv chunks in rounds mode: a chunk holds the kernels of a run of input channels
    and adds the events of those channels, tap by tap, into its root's accumulators (on the lane banks
    when the channel block is not a multiple of the lanes), the root's identity slot and first
    channels before it; the root fires and writes back once."""
    program, x = conv_split_program(case)
    plan = rounds_plan(program)
    chunks = chunk_units(plan)
    assert len(chunks) == 1
    (chunk,) = chunks
    root = next(u for us in plan.units.values() for u in us if u.piece == chunk.root)
    rp, cp = program.pieces[root.piece], program.pieces[chunk.piece]
    assert [s.kind for s in rp.slots] == ["identity", "conv"] and [s.kind for s in cp.slots] == ["conv"]
    # the chunk takes the channels after the root's, up to the last
    assert rp.slots[1].lo == 0 and rp.slots[1].hi == cp.slots[0].lo and cp.slots[0].hi == rp.geometry["c1"]
    hw_size = int(np.prod(program.graph.population("h1").shape[1:]))
    assert {f[1] // hw_size for f in chunk.feed} == set(range(cp.slots[0].lo, cp.slots[0].hi))
    assert root.banked == chunk.banked == (case == "banked")
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    steps = program.graph.total_steps
    assert report.step_cycles == report.steps == steps
    assert report.rounds == expected_rounds(program, steps)
    assert report.membranes == steps * sum(p.n for p in program.pieces if p.kind != "partial")
    run = Simulator(program, trace=True).run(x)
    assert report.spikes == sum(p.n for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None)
    assert any(tr.spikes[root.piece] is not None and tr.spikes[root.piece].any() for tr in run.trace)
    assert report.busy_checks == steps and report.logits == program.graph.output.size


def test_rounds_programs_are_exported_with_their_dram(tmp_path):
    program, _ = rounds_program("deep")
    manifest = export_rtl(program.hardware, tmp_path, program)
    plan = rounds_plan(program)
    assert manifest["mode"] == "rounds" and manifest["dram"]["words"] == len(plan.dram)
    assert manifest["dram"]["words_per_cycle"] == plan.ports == 1
    lines = (tmp_path / "dram.hex").read_text().split()
    assert [int(v, 16) for v in lines] == plan.dram
    rounds = [r for c in manifest["cores"] for r in c["rounds"]]
    assert sorted(r["piece"] for r in rounds) == list(range(len(program.pieces)))
    mem = program.hardware.memory
    for r in rounds:
        b_in, b_out = program.round_traffic(program.pieces[r["piece"]])
        assert (r["load_bytes"], r["writeback_bytes"]) == (b_in, b_out)
        assert r["load_cycles"] == mem.dram_latency_cycles + -(-b_in // mem.dram_bytes_per_cycle)
        assert r["writeback_cycles"] == mem.dram_latency_cycles + -(-b_out // mem.dram_bytes_per_cycle)
        assert r["steps"] == [
            program.round_steps(program.pieces[r["piece"]]).start,
            program.round_steps(program.pieces[r["piece"]]).stop,
        ]
    # the DRAM holds each piece's v0 where its membranes are written back, and its synapse words packed
    unit = next(u for us in plan.units.values() for u in us if u.piece == 0)
    v0 = [int(plan.dram[unit.state_base] >> (24 * q) & 0xFFFFFF) for q in range(4)]
    assert v0 == [int(v) for v in program.images(0)["params"].fields[:4, 2]]
    assert json.loads((tmp_path / "manifest.json").read_text())["mode"] == "rounds"
    if HAVE_ICARUS:
        out = subprocess.run(
            ["iverilog", "-g2012", "-o", str(tmp_path / "a.out"), str(tmp_path / "core_array.sv")],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr


def test_what_rounds_mode_does_not_run_is_refused_with_a_sentence(mbe_mlp8):
    # the compiler splits neuron, output and mbe slices only (mapping/pieces.py); a program whose max-pool
    # or product piece has partial chunks is not one it makes, and the RTL names the piece and refuses it
    program, _ = split_program(1)
    root = chunk_units(rounds_plan(program))[0].root
    for kind in ("maxpool", "product"):
        pieces = tuple(dataclasses.replace(p, kind=kind) if p.id == root else p for p in program.pieces)
        with pytest.raises(RtlError, match=rf"piece {root} \('h1', kind '{kind}'\) is split into partial chunks; the "):
            rounds_plan(dataclasses.replace(program, pieces=pieces))
    # MBE pieces are run (tests/test_rtl_rounds_mbe.py): the bundled MBE MLP on one core of 16 axons is
    # planned with its mbe slices split (fan-in 96: a root and chunks), each chunk after its root, and
    # each mbe round loading its table words and X and basis blocks, and writing a payload row
    hw = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(axons=16, neuron_models=("if", "mbe")))
    program = compile(mbe_mlp8, hw)
    assert program.plan.mode == "rounds"
    plan = rounds_plan(program)
    assert any(program.pieces[u.root].kind == "mbe" for u in chunk_units(plan))
    mbe = [u for us in plan.units.values() for u in us if program.pieces[u.piece].kind == "mbe"]
    lanes = program.hardware.core.lanes
    assert mbe and all(u.n_mem == (u.init.bases + 1) * -(-u.init.n // lanes) and u.n_lut > 0 for u in mbe)
    # a chunk keeps no state in the RTL: a trace with a chunk's sums left at a barrier cannot be compared
    program, x = split_program(1)
    run = Simulator(program, trace=True).run(x)
    chunk = chunk_units(rounds_plan(program))[0]
    assert all(not tr.membranes[chunk.piece].any() for tr in run.trace)  # section 8: zero at every barrier
    run.trace[2].membranes[chunk.piece][3] = 1
    with pytest.raises(RtlError, match=rf"non-zero partial sums of piece {chunk.piece} at the barrier of step 2;"):
        rounds_spec(program, rounds_plan(program), run, x)
    # at most MAX_DMA_PORTS (16) words per cycle: h1's 83 descriptors (13 registers) in a transfer of
    # 1 cycle (no latency, a channel wider than the round) or 6 (5 cycles of latency) do not fit; 6
    # cycles of latency, the least the error names, fit every round
    core = CoreConfig(axons=16, neurons=16, lanes=1, slots=4, routing_entries=64, spike_history_steps=8)
    for latency in (0, 5, 6):
        memory = MemoryConfig(dram_latency_cycles=latency, dram_bytes_per_cycle=4096)
        hw = HardwareConfig(array=ArrayConfig(1, 1), core=core, memory=memory)
        program = compile(dense_network(6, (12, 16, 16), timesteps=2), hw)
        assert program.plan.mode == "rounds"
        if latency < 6:
            msg = r"reads 83 DRAM words in a transfer of (1 cycle|6 cycles), .* dram_latency_cycles to at least 6\."
            with pytest.raises(RtlError, match=msg):
                rounds_plan(program)
        else:
            assert rounds_plan(program).ports <= 16
    # rounds_plan is for rounds programs; the one-core bench points rounds programs to the array bench
    resident = dense_program(dense_network(1, (12, 16)), 2, 2)
    with pytest.raises(RtlError, match=r"rounds_plan needs a program in 'rounds' mode; this one is 'resident'"):
        rounds_plan(resident)
    program, x = rounds_program("residual")
    with pytest.raises(RtlError, match=r"'rounds' mode .*: co-simulate it on the whole array"):
        cosim(program, x)


def check_chunk_table(plan, u) -> None:
    """The core's feeder reads, per chunk, its chunk table word: the mask's bits (in order) are the
    bits of the chunk's feed positions, its slot and graded flag theirs, and the neuron table at its
    base plus each bit is that position's global source index; so the feeder's lowest pending
    ``(chunk, bit)`` is the plan's feed order."""
    assert len(u.chunk_table) == len(u.chunks)
    for (e0, cnt), (mask, slot, graded, base) in zip(u.chunks, u.chunk_table):
        feed = u.feed[e0 : e0 + cnt]
        assert [b for b in range(plan.width) if mask >> b & 1] == [f[3] for f in feed]
        assert {(f[0], f[2]) for f in feed} == {(slot, graded)}
        assert [plan.neurons[base + f[3]] for f in feed] == [f[1] for f in feed]


def check_schedule(plan, k) -> None:
    """Core ``k``'s schedule memory: at each step the units whose window holds it, in unit order, each
    slice's root first and its chunks right after it (what the control's `next entry` relies on),
    and nothing past the last step."""
    units = plan.units[k]
    sched = plan.schedule(k)
    assert len(sched) == plan.steps + 1 and sched[-1] == []
    for t, todo in enumerate(sched):
        assert todo == sorted(j for j, x in enumerate(units) if x.lo <= t < x.hi)
        for a, b in zip(todo, todo[1:]):  # a chunk follows its root or the root's previous chunk
            if units[b].root >= 0:
                assert units[a].piece == units[b].root or units[a].root == units[b].root
        assert not todo or units[todo[0]].root < 0


@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(3, 20), min_size=2, max_size=4),
    lanes=st.sampled_from([2, 4]),
    cols=st.integers(1, 2),
    residual=st.booleans(),
    delay=st.integers(0, 3),
)
def test_a_round_reads_exactly_the_sources_its_slots_need_and_its_state_where_it_wrote_it(
    seed, sizes, lanes, cols, residual, delay
):
    """The plan alone (no Icarus): per round and slot, the feeder's positions are the slot's sources
    (``slot_sources``), each once, filled by one spike or host descriptor per chunk in order, and the
    chunk table says which bits of each chunk they are (``check_chunk_table``); the
    membrane descriptors read the words the write-back writes; state and spike regions do not overlap;
    the transfers take section 7's cycles."""
    graph = dense_network(seed, (12, *sizes), timesteps=2, residual=residual)
    late = tuple(dataclasses.replace(p, delay=delay) if p.dst == "h2" else p for p in graph.projections)
    graph = dataclasses.replace(graph, projections=late)  # h1 -> h2 `delay` steps late
    program = dense_program(graph, 1, cols, neurons=16, lanes=lanes, axons=32)
    assume(program.plan.mode == "rounds" and all(p.kind != "partial" for p in program.pieces))
    plan = rounds_plan(program)
    mem = program.hardware.memory
    regions = []
    for us in plan.units.values():
        for u in us:
            piece = program.pieces[u.piece]
            groups = -(-piece.n // lanes)
            for k, s in enumerate(piece.slots):
                got = sorted(f[1] for f in u.feed if f[0] == k)
                assert got == sorted(int(v) for v in slot_sources(graph, piece, s))
                assert all(f[2] == int(s.src == graph.input.name) for f in u.feed if f[0] == k)
            feeds = [d for d in u.load if d[0] in (SEL_SPIKES, SEL_HOST)]
            assert [d[1] for d in feeds] == list(range(len(u.chunks)))
            assert [e0 for e0, _ in u.chunks] == list(np.cumsum([0] + [n for _, n in u.chunks])[:-1])
            assert sum(n for _, n in u.chunks) == len(u.feed)
            check_chunk_table(plan, u)
            assert [d[2] for d in u.load if d[0] == SEL_MEMBRANE] == list(range(u.state_base, u.state_base + groups))
            assert sum(d[0] == SEL_PARAMS for d in u.load) == groups
            assert u.n_wb == groups + (-(-piece.n // plan.width) if piece.kind == "neuron" else 0)
            b_in, b_out = program.round_traffic(piece)
            assert u.load_cycles == mem.dram_latency_cycles + -(-b_in // mem.dram_bytes_per_cycle)
            assert u.wb_cycles == mem.dram_latency_cycles + -(-b_out // mem.dram_bytes_per_cycle)
            assert (u.lo, u.hi) == (program.round_steps(piece).start, program.round_steps(piece).stop)
            regions.append((u.state_base, u.state_base + groups))
            if u.spike_base >= 0:
                regions.append((u.spike_base, u.spike_base + ((1 << plan.ring_shift) << plan.spike_shift)))
    for k in plan.units:
        check_schedule(plan, k)
    regions.sort()
    assert all(a[1] <= b[0] for a, b in zip(regions, regions[1:]))
    assert regions[-1][1] <= plan.host_base and plan.host_base + plan.host_words == len(plan.dram)
    # a piece's rows are a ring of the least power of two rows that holds each until its last reader
    need = max((d[3] for us in plan.units.values() for u in us for d in u.load if d[0] == SEL_SPIKES), default=0) + 2
    assert 1 << plan.ring_shift >= need > 1 << (plan.ring_shift - 1)


def test_spikeforge_rtl_writes_a_rounds_program(tmp_path, capsys):
    from spikeforge.cli import main
    from spikeforge.mapping.program import save_program

    program, _ = rounds_program("residual")
    save_program(program, tmp_path / "prog")

    def value(v):
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    sections = program.hardware.to_dict().items()
    toml = "".join(f"[{sec}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items()) for sec, body in sections)
    (tmp_path / "hw.toml").write_text(toml)
    argv = ["rtl", "--hardware", str(tmp_path / "hw.toml"), "--program", str(tmp_path / "prog")]
    assert main([*argv, "--out", str(tmp_path / "rtl")]) == 0
    out = capsys.readouterr().out
    assert "rounds mode: core_array.sv with its DMA engine, dram.hex" in out and "4 rounds per step at most" in out
    assert json.loads((tmp_path / "rtl" / "manifest.json").read_text())["mode"] == "rounds"


@pytest.mark.rtl
@pytest.mark.icarus
def test_spike_rows_live_in_a_ring_of_the_largest_delay_plus_two():
    """``h2 -> h3`` two steps late, T = 6, on one core: the rows are a ring of 4 (the least power of
    two of at least 2 + 2), written at every step of ``h2``'s six-step window and read two steps
    after; exact at every step. A ring of 2 (the plan's ``ring_shift`` one less) overwrites a row
    before its reader has read it: reported at step 6."""
    graph = dense_network(5, (12, 16, 16, 16, 16), timesteps=6)
    late = tuple(dataclasses.replace(p, delay=2) if p.dst == "h3" else p for p in graph.projections)
    program = dense_program(dataclasses.replace(graph, projections=late), 1, 1, neurons=16, lanes=4)
    assert program.plan.mode == "rounds" and program.graph.total_steps == 13
    plan = rounds_plan(program)
    assert 1 << plan.ring_shift == 4
    x = np.random.default_rng(1).integers(0, 16, 12)
    report = cosim_rounds(program, x, plan=plan)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == 13 and report.spikes > 0
    plan.ring_shift -= 1
    report = cosim_rounds(program, x, plan=plan)
    assert not report.ok and min(m["step"] for m in report.mismatches) == 6, report.format()
