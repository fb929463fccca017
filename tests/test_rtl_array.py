"""The RTL array (cores, encoders, XY routers) against the simulator, end to end (``docs/rtl.md``).

cocotb + Icarus: the bench is only the host (router (0, 0)'s west port) and the barrier; every
flit between cores travels the RTL mesh. At every step the host's flits must be taken at the
simulator's cycles, phase I and phase F must end at the simulator's cycles, and every membrane,
spike, busy count and sent-flit count of every core must equal the simulator's. Router unit tests
run on Amaranth's simulator.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator as AmaranthSim

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig, NocConfig
from spikeforge.rtl.array import array_inits
from spikeforge.rtl.cosim import cosim_array
from spikeforge.rtl.export import to_sv
from spikeforge.rtl.router import Router
from spikeforge.rtl.scenarios import dense_network, dense_program
from spikeforge.sim import Simulator


def network(seed, sizes, rows, cols, **hw):
    graph = dense_network(seed, sizes, residual=True, dif=seed % 2 == 0)
    program = dense_program(graph, rows, cols, **hw)
    assert program.plan.mode == "resident"
    return program, np.random.default_rng(seed).integers(0, 16, sizes[0])


def check_counts(report, program, x):
    run = Simulator(program, trace=True).run(x)
    assert report.steps == len(run.trace)
    assert report.host_flits == sum(int((tr.flit_src < 0).sum()) for tr in run.trace) > 0
    assert report.membranes == len(run.trace) * sum(p.n for p in program.pieces)
    assert report.spikes > 0 and report.packet_counts == report.busy_checks == len(run.trace) * len(program.pieces)
    assert report.step_cycles == len(run.trace)  # the barrier unit's phases add up to every step's cycles
    # every core's packets, one by one: phase I's (the host's are the host flits) and phase P's partial sums
    sent = sum(int((tr.flit_src >= 0).sum()) + tr.psum_src.size for tr in run.trace)
    assert report.packets == sent > 0


@pytest.fixture(scope="module")
def two_by_two():
    """The 2 x 2 array's network, its input and the clean co-simulation (run once for the tests below)."""
    program, x = network(1, (12, 16, 16), 2, 2)
    return program, x, cosim_array(program, x)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_two_by_two_array_runs_a_multi_layer_network_like_the_simulator(two_by_two):
    program, x, report = two_by_two
    assert {int(c) for c in program.plan.core} == {0, 1, 3}  # three cores, two of them a hop apart
    assert report.ok, report.format()
    check_counts(report, program, x)


@pytest.mark.rtl
@pytest.mark.icarus
def test_the_host_reads_the_simulators_logits_and_a_wrong_accumulator_is_reported(two_by_two):
    """Section 5's read-out: after the last step the host reads every output piece's accumulators
    over the array's read port (one word per cycle, ``ceil(n/lanes) + 1`` cycles); the logits equal
    the simulator's. A read-out addressing the next word (a wrong accumulator) is reported."""
    program, x, report = two_by_two
    logits = Simulator(program).run(x).logits
    assert np.count_nonzero(logits) == len(logits) == len(set(logits.tolist()))  # every logit tells
    out = [p for p in program.pieces if p.kind == "output"]
    words = sum(-(-p.n // program.hardware.core.lanes) for p in out)
    assert report.ok, report.format()
    assert report.logits == len(logits) and report.readout_cycles == words + 1
    bad = cosim_array(program, x, readout_fault=True)
    assert not bad.ok and all(m["what"] == "logit read by the host" for m in bad.mismatches)
    m = bad.mismatches[0]
    assert m["core"] == int(program.plan.core[out[0].id]) and m["expected"] == logits[m["neuron"]]
    assert "logit read by the host" in bad.format()


@pytest.mark.rtl
@pytest.mark.icarus
def test_the_barrier_unit_closes_every_phase_after_barrier_cycles_like_the_simulator():
    """Section 4's barriers in hardware: the array's ``done`` rises ``barrier_cycles`` (here set to 7
    in the hardware file, not the derived ``rows + cols``) after each phase's end, so the phases and
    their barriers add up to the simulator's cycles of every step; a barrier unit one cycle slow
    is reported at its ``done``."""
    from spikeforge.mapping import compile

    base, x = network(1, (12, 16, 16), 2, 2)
    program = compile(base.graph, base.hardware.with_value("noc.barrier_cycles", 7))
    assert program.hardware.barrier_cycles == 7 and program.plan.mode == "resident"
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)
    bad = cosim_array(program, x, extra_barrier_cycles=1)
    assert not bad.ok
    m = bad.mismatches[0]
    assert m["what"].startswith("array done (the barrier unit)") and (m["step"], m["expected"], m["got"]) == (
        0,
        Simulator(program, trace=True).run(x).trace[0].phase_i + 7,
        m["expected"] + 1,
    )
    assert any(m["what"].startswith("cycles of the step") for m in bad.mismatches)


@pytest.mark.rtl
@pytest.mark.icarus
def test_backpressure_and_contention_match_the_simulator_cycle_for_cycle():
    """One-flit router buffers and two-event core FIFOs: hundreds of stall cycles in the mesh."""
    program, x = network(2, (12, 24, 16, 16), 2, 3, input_fifo_events=2, router_buffer_flits=1)
    sim = Simulator(program)
    sim.run(x)
    assert sim.totals().noc_stall_cycles > 100
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_weight_bit_in_the_array_is_reported_with_step_core_and_neuron():
    program, x = network(1, (12, 16, 16), 2, 2)
    inits = array_inits(program)
    k = int(program.plan.core[1])  # h2
    syn = inits[k].synapse.copy()
    syn[:, 1] ^= 2  # lane 1 of every word: neurons 1, 5, 9, 13
    inits[k] = dataclasses.replace(inits[k], synapse=syn)
    report = cosim_array(program, x, inits=inits)
    assert not report.ok
    m = report.mismatches[0]
    assert m["core"] == k and m["neuron"] % 4 == 1 and m["what"] in ("membrane", "spike")
    assert f"core {k}, neuron {m['neuron']}" in report.format()


@pytest.mark.rtl
@pytest.mark.icarus
def test_packets_with_the_slots_of_two_routing_entries_swapped_are_reported_one_by_one():
    """``h1`` sends each spike to ``h2``'s identity slot (entry 0) and its dense slot (entry 1). With
    the two entries' slots swapped, ``h2`` gets the same events in the other order and ends every
    step with the same membranes, spikes, busy cycles and flit counts: only the packet monitor sees
    it, at the first step ``h1`` sends (packet 0: slot 1, not 0), and nothing else differs."""
    program, x = network(1, (12, 16, 16), 2, 2)
    inits = array_inits(program)
    routing = np.array(inits[0].routing)
    assert inits[0].population == "h1" and routing[:, 4].tolist() == [0, 1]
    routing[:, 4] = [1, 0]
    inits[0] = dataclasses.replace(inits[0], routing=routing)
    report = cosim_array(program, x, inits=inits)
    assert not report.ok
    run = Simulator(program, trace=True).run(x)
    first = next(tr.step for tr in run.trace if (tr.flit_src == 0).any())
    m = report.mismatches[0]
    assert (m["step"], m["core"]) == (first, 0) and m["what"].startswith("packet 0 sent in phase I")
    want, got = m["expected"], m["got"]
    assert want[2] == 0 and got[2] == 1 and want[:2] + want[3:] == got[:2] + got[3:]  # the slot field alone
    assert all(m["what"].startswith("packet ") and m["core"] == 0 for m in report.mismatches)


# --------------------------------------------------------------------------- router on Amaranth's simulator
HW = HardwareConfig(array=ArrayConfig(2, 4), core=CoreConfig(neurons=16, lanes=4, axons=16), noc=NocConfig(2))


def flit(x, y, index):
    return {"type": 0, "slot": 0, "index": index, "payload": 0, "x": x, "y": y}


def drive(router, pushes, ready, cycles):
    """``pushes[cycle] = {port: flit}``; ``ready[port](cycle)``; returns {port: [(cycle, index)]} taken."""
    taken: dict[str, list] = {}

    async def bench(ctx):
        for c in range(cycles):
            for p in ("n", "s", "e", "w", "l"):
                f = pushes.get(c, {}).get(p)
                ctx.set(getattr(router, f"in_{p}").valid, f is not None)
                if f is not None:
                    ctx.set(getattr(router, f"in_{p}").payload, f)
                ctx.set(getattr(router, f"out_{p}").ready, ready.get(p, lambda c: 1)(c))
            for p in ("n", "s", "e", "w", "l"):
                out = getattr(router, f"out_{p}")
                if ctx.get(out.valid) and ctx.get(out.ready):
                    taken.setdefault(p, []).append((c, ctx.get(out.payload).index))
            await ctx.tick()

    sim = AmaranthSim(router)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken


def test_xy_routing_picks_the_column_first_then_the_row():
    r = Router(HW, 1, 0)
    pushes = {0: {"l": flit(3, 1, 1), "w": flit(1, 1, 2), "e": flit(0, 0, 3), "s": flit(1, 0, 4)}}
    taken = drive(r, pushes, {}, 4)
    # written at cycle 0, eligible from cycle 1
    assert taken == {"e": [(1, 1)], "s": [(1, 2)], "w": [(1, 3)], "l": [(1, 4)]}


def test_round_robin_starts_after_the_last_grant_and_a_full_downstream_holds():
    r = Router(HW, 1, 0)
    # local and west both want east at cycle 1: after L (the initial last grant) comes W (section 6's example)
    pushes = {0: {"l": flit(3, 0, 10), "w": flit(3, 0, 20)}, 1: {"l": flit(3, 0, 11), "w": flit(3, 0, 21)}}
    taken = drive(r, pushes, {"e": lambda c: int(c != 3)}, 8)
    # W at 1, L at 2, (cycle 3: downstream full) W at 4, L at 5
    assert taken["e"] == [(1, 20), (2, 10), (4, 21), (5, 11)]


@pytest.mark.rtl
@pytest.mark.icarus
def test_cosim_samples_prints_what_matched_per_sample(monkeypatch, tmp_path):
    """Two samples, one design: converted once (``_design_sv``), compiled once, its bench run twice;
    another design in the same folder is compiled again."""
    import importlib

    from spikeforge.rtl import cosim_samples
    from spikeforge.rtl.progress import reporting

    converted = []
    module = importlib.import_module("spikeforge.rtl.icarus")  # where designs are converted and cached
    monkeypatch.setattr(module, "to_sv", lambda c, name: converted.append(name) or to_sv(c, name))
    monkeypatch.setattr(module, "_SV_CACHE", type(module._SV_CACHE)())  # empty: the first sample converts
    program, _ = network(1, (12, 16, 16), 2, 2)
    xs = np.random.default_rng(7).integers(0, 16, (3, 12))
    stages = []
    with reporting(stages.append):
        summary = cosim_samples(program, xs, samples=2, workdir=tmp_path)
    assert summary.ok and len(summary.reports) == 2 and converted == ["core_array"]
    assert [s.split(" (")[0] for s in stages if s.startswith("Icarus")] == [
        "Icarus: compiling core_array",
        "Icarus: running bench_array on core_array",
        "Icarus: running bench_array on core_array",
    ]
    # the design and its build once, each sample's transactions and result in its own folder
    assert (tmp_path / "core_array.sv").exists() and (tmp_path / "build" / "sim.vvp").exists()
    assert all((tmp_path / f"sample{i}" / "result.json").exists() for i in range(2))
    assert not (tmp_path / "sample0" / "core_array.sv").exists()
    text = summary.format()
    assert "sample 0: array of 4 cores" in text and "sample 1:" in text and "all samples match" in text
    # the build is stamped with its design's digest: another design (a flipped weight bit) in that
    # folder is compiled again, not run on the old build, and its mismatch seen
    inits = array_inits(program)
    k = int(program.plan.core[1])
    inits[k] = dataclasses.replace(inits[k], synapse=inits[k].synapse ^ 2)
    stages.clear()
    with reporting(stages.append):
        assert not cosim_array(program, xs[0], tmp_path / "flipped", inits=inits, design_dir=tmp_path).ok
    assert sum(s.startswith("Icarus: compiling") for s in stages) == 1


def test_cosim_of_a_non_resident_program_names_what_the_rtl_lacks(mbe_mlp8):
    from spikeforge.mapping import compile
    from spikeforge.mapping.hardware import CoreConfig, MemoryConfig
    from spikeforge.rtl import RtlError, cosim_samples

    memory = MemoryConfig(dram_latency_cycles=0, dram_bytes_per_cycle=4096)
    core = CoreConfig(neuron_models=("if", "dif", "mbe"))
    program = compile(mbe_mlp8, HardwareConfig(array=ArrayConfig(1, 1), core=core, memory=memory))
    assert program.plan.mode == "rounds"
    # rounds mode: the DMA engine moves at most 16 words per cycle, too few for a round's words on this
    # channel (gelu0: 16 register words, then its images and state); refused before anything runs
    with pytest.raises(RtlError, match=r"reads 105 DRAM words in a transfer of 2 cycles, but .* at most 16 words"):
        cosim_samples(program, np.zeros((1, *program.graph.input.shape), np.int64))


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize("lanes", [1, 4])
def test_partial_sums_of_a_split_fan_in_match_the_simulator(lanes):
    """Fan-in 40 over 16 axons: h1's root and two partial pieces; phase P scans, sends and clears."""
    graph = dense_network(4, (40, 16, 16), dif=True)
    program = dense_program(graph, 2, 3, axons=16, lanes=lanes)
    assert sorted(p.kind for p in program.pieces).count("partial") == 2
    x = np.random.default_rng(4).integers(0, 16, 40)
    run = Simulator(program, trace=True).run(x)
    assert sum(tr.phase_p > 0 for tr in run.trace) == graph.timesteps
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)
    if lanes == 4:  # a flipped weight in a partial piece reaches the root's membranes through phase P
        inits = array_inits(program)
        part = next(p for p in program.pieces if p.kind == "partial")
        k = int(program.plan.core[part.id])
        syn = inits[k].synapse.copy()
        syn[:, 0] ^= 1
        inits[k] = dataclasses.replace(inits[k], synapse=syn)
        bad = cosim_array(program, x, inits=inits)
        root_core = int(program.plan.core[part.root])
        assert not bad.ok and bad.mismatches[0]["core"] == root_core and bad.mismatches[0]["neuron"] % 4 == 0
        # and the packet monitor names the partial sums it sent (phase P, the partial piece's core)
        psums = [m for m in bad.mismatches if m["what"].startswith("packet ") and "phase P" in m["what"]]
        assert psums and {m["core"] for m in psums} == {k} and psums[0]["step"] == bad.mismatches[0]["step"]


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_sequencer_that_skips_phase_p_or_starts_a_phase_late_is_reported():
    """The array runs its own phases: a sequencer that never runs phase P is reported at the first
    step with one, at that phase's cycle 0 (phase F under way instead); one that starts each phase a
    cycle after the barrier closes is reported at step 0, in the cycle phase P should have started."""
    graph = dense_network(4, (40, 16, 16), dif=True)
    program = dense_program(graph, 2, 3, axons=16, lanes=1)
    x = np.random.default_rng(4).integers(0, 16, 40)
    run = Simulator(program, trace=True).run(x)
    first_p = next(tr.step for tr in run.trace if tr.phase_p > 0)
    m = cosim_array(program, x, skip_p=True).mismatches[0]
    assert m["what"].startswith("array phase and step at the phase's cycle 0")
    assert (m["step"], m["expected"], m["got"]) == (first_p, ["P", first_p], ["F", first_p])
    late = cosim_array(program, x, late_phase=1)
    m = late.mismatches[0]
    end = run.trace[0].phase_i + program.hardware.barrier_cycles
    assert m["what"] == "array cycle the phase after I starts (the cycle done rises)"
    assert (m["step"], m["expected"], m["got"]) == (0, end, end + 1)
    assert any(m["what"].startswith("cycles of the step") for m in late.mismatches)


@pytest.mark.rtl
@pytest.mark.icarus
def test_max_pool_pieces_match_the_simulator_in_the_array_and_alone():
    """``h (2, 4, 4) -> 2 x 2 max-pool -> out``: running counts, window maxima and marks; the pool
    piece is a channel x tile slice, so its encoder sends global indices out of local order."""
    from spikeforge.rtl import cosim_core, piece_init
    from spikeforge.rtl.scenarios import pooled_network

    program = dense_program(pooled_network(5), 2, 3, neurons=16, lanes=4)
    pool = next(p for p in program.pieces if p.kind == "maxpool")
    assert pool.neurons.tolist() != sorted(pool.neurons.tolist())
    x = np.random.default_rng(5).integers(0, 16, 12)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)
    mp = cosim_core(program, pool.id, x)  # every packet of the pool piece, one by one
    assert mp.ok, mp.first_mismatch()
    assert mp.events > 0 and mp.packets > 0 and mp.spikes > 0
    assert mp.sums == mp.steps * pool.n * 4  # every running count in the synapse SRAM, at every barrier
    init = piece_init(program, pool.id)  # the local -> global index ROM reversed: wrong packets
    bad = cosim_core(program, pool.id, x, init=dataclasses.replace(init, neurons=init.neurons[::-1]))
    assert not bad.ok and bad.mismatches[0]["what"].startswith("output packet")


def test_round_robin_restarts_from_local_at_every_phase():
    """``mesh_phase`` starts every phase with "last granted: L"; the router's ``start`` does the same,
    so a phase's first contention goes to W even if W was granted last in the previous phase."""
    r = Router(HW, 1, 0)
    taken: list = []

    async def bench(ctx):
        pushes = {0: {"w": flit(3, 0, 1)}, 4: {"l": flit(3, 0, 10), "w": flit(3, 0, 20)}}
        for c in range(8):
            ctx.set(r.start, int(c == 3))
            for p in ("w", "l"):
                f = pushes.get(c, {}).get(p)
                ctx.set(getattr(r, f"in_{p}").valid, f is not None)
                if f is not None:
                    ctx.set(getattr(r, f"in_{p}").payload, f)
            ctx.set(r.out_e.ready, 1)
            if ctx.get(r.out_e.valid):
                taken.append((c, ctx.get(r.out_e.payload).index))
            await ctx.tick()

    sim = AmaranthSim(r)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert taken == [(1, 1), (5, 20), (6, 10)]  # without the restart, L (after W) would go first


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize(("stride", "neurons", "lanes"), [(1, 48, 4), (2, 16, 1)])
def test_convolutions_match_the_simulator_in_the_array(stride, neurons, lanes):
    """``in (1, 6, 6) -> 3 x 3 conv (padding 1) -> h (4, ...) -> out`` on channel x tile slices: taps
    that reach no local position cost nothing, reached ones ``ceil(cb/lanes)`` cycles each; heavy
    host multicast and spike traffic (over a thousand stall cycles with stride 1)."""
    from spikeforge.rtl.scenarios import conv_network

    program = dense_program(conv_network(6, stride=stride), 2, 3, neurons=neurons, lanes=lanes, axons=160)
    assert program.plan.mode == "resident" and any(s.kind == "conv" for p in program.pieces for s in p.slots)
    x = np.random.default_rng(6).integers(0, 16, (1, 6, 6))
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_residual_conv_block_with_pool_dense_matches_the_simulator():
    """``conv -> h1 -> conv -> h2 (+ identity from h1) -> pool_dense -> out`` on a 3 x 3 array: identity
    slots on channel x tile slices map ``(ch, y, x)`` to the local neuron, pool_dense rows are channels."""
    from spikeforge.rtl.scenarios import residual_conv_network

    program = dense_program(residual_conv_network(7), 3, 3, neurons=48, lanes=4, axons=160)
    kinds = {s.kind for p in program.pieces for s in p.slots}
    assert {"conv", "identity", "pool_dense"} <= kinds and program.plan.mode == "resident"
    x = np.random.default_rng(7).integers(0, 16, (1, 6, 6))
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)


@pytest.mark.rtl
@pytest.mark.icarus
def test_spike_by_spike_products_match_the_simulator():
    """An attention score block ``att[h] = q[h] k[h]`` (2 heads, 4 tokens, head_dim 4) in the running-count
    mode on a 3 x 3 array; a wrong product weight is reported at the product piece."""
    from spikeforge.rtl.scenarios import attention_network

    program = dense_program(attention_network(8), 3, 3, neurons=16, lanes=1, axons=32)
    prods = [p for p in program.pieces if p.kind == "product"]
    assert len(prods) == 2 and program.plan.mode == "resident"
    x = np.random.default_rng(8).integers(0, 16, 12)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)
    inits = array_inits(program)
    k = int(program.plan.core[prods[0].id])
    slots = tuple(dataclasses.replace(s, weight=s.weight + 1) for s in inits[k].slots)
    inits[k] = dataclasses.replace(inits[k], slots=slots)
    bad = cosim_array(program, x, inits=inits)
    assert not bad.ok and bad.mismatches[0]["core"] == k and bad.mismatches[0]["what"] == "membrane"


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_product_whose_tables_and_neurons_are_transposed_matches_the_simulator():
    """``o = att x v`` reads its operands transposed and numbers its neurons transposed: its operand
    table and neuron index table memories (``rtl.memories.operand_words``, ``index_words``) give the
    sources' rows and columns and the flits' indices; every packet, membrane and cycle of the array is
    the simulator's, and two entries of ``o``'s neuron index table swapped are reported at the packets
    of the core that holds it, with the other neuron's index."""
    from spikeforge.rtl.scenarios import attention_pair_network

    program = dense_program(attention_pair_network(3), 2, 4, neurons=16, lanes=4)
    assert program.plan.mode == "resident"
    o = next(p for p in program.pieces if p.population == "o")
    assert list(o.neurons) != sorted(o.neurons)
    x = np.random.default_rng(3).integers(0, 16, 12)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)
    inits = array_inits(program)
    k = int(program.plan.core[o.id])
    # swap the global indices of o's local neurons 0 and 1: their spikes leave under each other's index
    neurons = list(inits[k].neurons)
    neurons[0], neurons[1] = neurons[1], neurons[0]
    inits[k] = dataclasses.replace(inits[k], neurons=tuple(neurons))
    bad = cosim_array(program, x, inits=inits)
    assert not bad.ok
    first = min(m["step"] for m in bad.mismatches)
    sent = [m for m in bad.mismatches if m["step"] == first and m["core"] == k]
    assert sent and all(m["what"].startswith("packet") for m in sent), bad.format()
    # the packet's index field (4th) is the other neuron's
    assert {(m["expected"][3], m["got"][3]) for m in sent} <= {(neurons[1], neurons[0]), (neurons[0], neurons[1])}


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize(
    ("network", "channels", "neurons", "lanes", "axons"),
    [
        ("conv", 6, 64, 4, 40),
        ("conv", 5, 64, 16, 60),
        ("residual", 4, 48, 8, 160),
        pytest.param("split", 4, 16, 8, 16, marks=pytest.mark.slow),
    ],
)
def test_conv_slices_whose_channel_block_is_not_a_multiple_of_lanes_match_the_simulator(
    network, channels, neurons, lanes, axons
):
    """Channel blocks of 6 channels on 4 lanes, 5 on 16 and 4 on 8 (with identity slots, the residual
    block; split over 16 axons into root and partial pieces on a 6 x 6 array, so phase P scans the
    banks): a position's channel groups start mid-word, so each lane is its own membrane bank and
    the synapse word is rotated onto the banks; every cycle, membrane and spike equals the
    simulator's."""
    from spikeforge.rtl.scenarios import conv_network, residual_conv_network

    if network == "conv":
        program = dense_program(conv_network(6, channels=channels), 2, 3, neurons=neurons, lanes=lanes, axons=axons)
    else:
        side = 6 if network == "split" else 3
        program = dense_program(residual_conv_network(7), side, side, neurons=neurons, lanes=lanes, axons=axons)
        assert any(p.kind == "partial" for p in program.pieces) == (network == "split")
    cbs = {p.geometry["c1"] - p.geometry["c0"] for p in program.pieces if "c0" in p.geometry}
    assert cbs == {channels} and channels % lanes and program.plan.mode == "resident"
    x = np.random.default_rng(6).integers(0, 16, program.graph.input.shape)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)


@pytest.mark.rtl
@pytest.mark.icarus
@pytest.mark.parametrize(
    ("tokens", "head_dim", "neurons", "lanes", "blocks"),
    [(5, 3, 16, 4, {(5, 3), (5, 2)}), (9, 3, 64, 16, {(9, 7), (9, 2)})],
)
def test_products_on_skewed_banks_match_the_simulator_in_the_array(tokens, head_dim, neurons, lanes, blocks):
    """Attention score blocks on 4- and 16-lane cores (section 4.3's skewed membrane banks): product
    blocks of 5 x 3 and 5 x 2 on 4 lanes, 9 x 7 and 9 x 2 on 16, none a multiple of the lanes, so a
    row and a column take ``ceil(m/lanes) + 1`` cycles with partly used lane groups; every membrane,
    spike, cycle and busy count of the array equals the simulator's."""
    from spikeforge.rtl.scenarios import attention_network

    graph = attention_network(11, tokens=tokens, head_dim=head_dim)
    program = dense_program(graph, 3, 3, neurons=neurons, lanes=lanes, axons=64)
    prods = [p for p in program.pieces if p.kind == "product"]
    assert {(p.geometry["i1"] - p.geometry["i0"], p.geometry["j1"] - p.geometry["j0"]) for p in prods} == blocks
    x = np.random.default_rng(tokens).integers(0, 16, 12)
    report = cosim_array(program, x)
    assert report.ok, report.format()
    check_counts(report, program, x)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.icarus
@pytest.mark.parametrize(("lanes", "side"), [(4, 8), (16, 16)])
def test_the_bundled_models_products_on_multi_lane_cores_match_the_simulator(tiny_graph, digits, lanes, side):
    """The bundled model on 4- and 16-lane cores (resident, every piece builds): the cores of its
    first attention score product (``b0.att``, Q K^T, head 0, 16 x 16 tokens) and of its first
    attention-value product (``b0.o``, Att V) replay the flits the whole model's simulation delivered
    to them, and every membrane, spike, packet and cycle matches."""
    from spikeforge.mapping import compile
    from spikeforge.rtl import cosim_core

    program = compile(tiny_graph, HardwareConfig(array=ArrayConfig(side, side), core=CoreConfig(lanes=lanes)))
    assert program.plan.mode == "resident"
    x = digits.x_test[0]
    run = Simulator(program, trace=True).run(x)
    for name in ("b0.att", "b0.o"):
        prod = next(p for p in program.pieces if p.kind == "product" and p.population == name)
        rep = cosim_core(program, prod.id, x, run=run)
        assert rep.ok, rep.first_mismatch()
        assert rep.events > 300 and rep.packets > 200 and rep.spikes > 0
        assert rep.membranes == prod.n * len(run.trace)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.icarus
def test_the_bundled_models_attention_product_core_matches_the_simulator(tiny_graph, digits):
    """The bundled model on an 8 x 8 array of one-lane cores (resident, every piece builds): the core
    of its first attention product (``b0.att``, head 0, 16 x 16 tokens) replays the flits the whole
    model's simulation delivered to it, and every membrane, spike, packet and cycle matches."""
    from spikeforge.mapping import compile
    from spikeforge.rtl import cosim_core, piece_init

    program = compile(tiny_graph, HardwareConfig(array=ArrayConfig(8, 8), core=CoreConfig(lanes=1)))
    assert program.plan.mode == "resident"
    for p in program.pieces:
        piece_init(program, p.id)  # the whole model builds
    att = next(p for p in program.pieces if p.kind == "product")
    x = digits.x_test[0]
    run = Simulator(program, trace=True).run(x)
    rep = cosim_core(program, att.id, x, run=run)
    assert rep.ok, rep.first_mismatch()
    assert rep.events > 100 and rep.packets > 100 and rep.spikes > 0 and rep.membranes == att.n * len(run.trace)
