"""MBE units, graded products and graded max-pools in the rounds-mode RTL (``rtl/rounds.py``,
``docs/architecture.md`` sections 4.3-4.5 and 7) against the simulator.

A round of an ``mbe`` piece reads its table words (image), its ``X`` and basis membranes and its
shift words (state) from DRAM and writes the state and its payload row (``v_bits`` per unit) back;
a round reading an MBE population or a graded max-pool reads those payload rows. Graded products and
max-pools keep their running payload sums as state. The graphs are the simulator's feature graphs
(``tests/test_mbe_vit_hardware.py``), small enough for about 15 s of Icarus each.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_mbe_vit_hardware import SPLITS, mbe_core, pool_graph, product_graph, runnable, split_graph
from test_rtl_rounds import check_chunk_table, check_schedule, expected_rounds

from conftest import hw_of
from spikeforge.mapping import compile
from spikeforge.mapping.connectivity import slot_sources
from spikeforge.rtl.cosim import cosim_rounds
from spikeforge.rtl.rounds import (
    SEL_HOST,
    SEL_LUT,
    SEL_MEMBRANE,
    SEL_PARAMS,
    SEL_REGS,
    SEL_SHIFT,
    SEL_SPIKES,
    SEL_SUMS,
    SEL_SYNAPSE,
    rounds_plan,
)
from spikeforge.sim import Simulator


def mbe_rounds_program(case: str):
    """``product``: in -> a (MBE, fed by the host) -> b (MBE, fed by a: payload rows through DRAM)
    -> a x b (graded product, running payload sums) -> p (MBE, its membranes on the lane banks)
    -> out, on 1 x 2; a and b have an ``inv`` split (shift words as state); ``pool``: in -> m (MBE,
    ``inv`` split, in four pieces whose shift words share the core's shift memory in turn) -> a graded
    2 x 2 max-pool (payload sums, payload rows) -> m2 (MBE) and out, on 1 x 1."""
    rng = np.random.default_rng(3)
    if case == "product":
        graph, x = runnable(lambda r: product_graph(r, 2, "mbe", "matmul", False, "inv", True), rng, (1, 4))
        hw = hw_of(1, 2, neurons=32, lanes=4, **mbe_core())
    else:
        graph, x = runnable(lambda r: pool_graph(r, 2, 2, 1, "inv"), rng, (1, 5))
        hw = hw_of(1, 1, neurons=16, lanes=4, **mbe_core())
    program = compile(graph, hw)
    assert program.plan.mode == "rounds"
    return program, x[0]


def units_of(plan, program, population):
    return [u for us in plan.units.values() for u in us if program.pieces[u.piece].population == population]


@pytest.mark.rtl
@pytest.mark.icarus  # skipped without iverilog, fails under SPIKEFORGE_REQUIRE_PEERS (conftest)
@pytest.mark.parametrize("case", ["product", "pool"])
def test_mbe_rounds_match_the_simulator_at_every_step(case):
    program, x = mbe_rounds_program(case)
    run = Simulator(program, trace=True).run(x)
    plan = rounds_plan(program)
    steps = len(run.trace)
    units = [u for us in plan.units.values() for u in us]
    kinds = {program.pieces[u.piece].kind for u in units}
    lanes = program.hardware.core.lanes
    for u in units:
        if program.pieces[u.piece].kind == "mbe":  # X and N basis blocks; tables loaded as the image
            assert u.n_mem == (u.init.bases + 1) * -(-u.init.n // lanes) and u.n_lut > 0 and u.row_bits == 32
            assert sum(d[0] == SEL_LUT for d in u.load) == u.n_lut
    if case == "product":
        assert kinds == {"mbe", "output"} and len(plan.units) == 2
        (b,) = units_of(plan, program, "b")  # b reads a's payload rows: v_bits values, graded events
        assert any(d[0] == SEL_SPIKES for d in b.load) and all(f[2] == 1 for f in b.feed if f[0] == 0)
        target = units_of(plan, program, "p")
        assert target and all(u.graded_sums and u.banked for u in target)  # its X and bases on the banks
        assert all(sum(d[0] == SEL_SUMS for d in u.load) == u.n_count > 0 for u in target)
        for u in units_of(plan, program, "a") + [b]:  # the inv split's shift words are state
            assert sum(d[0] == SEL_SHIFT for d in u.load) == u.n_shift == -(-u.init.n // lanes)
    else:
        assert kinds == {"mbe", "maxpool", "output"}
        (pool,) = units_of(plan, program, "mx")
        assert pool.graded_sums and pool.row_bits == 32 and pool.n_count == 4 * -(-pool.init.n // lanes)
        m = units_of(plan, program, "m")
        assert len(m) == 4 and all(u.n_shift == 1 for u in m)  # one shift word each, all at word 0
        shifts = {int(v) for tr in run.trace for u in m if tr.sums[u.piece] is not None for v in tr.sums[u.piece]}
        assert len(shifts) >= 2  # a shift word not loaded back would show
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == steps
    assert report.rounds == sum(u.lo <= t < u.hi for t in range(steps) for u in units)
    assert report.membranes == steps * sum(len(run.trace[0].membranes[p.id]) for p in program.pieces)
    rows = sum(p.n for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None)
    assert report.spikes == rows > 0  # every payload (and spike) row, every step
    emitted = [tr.spikes[p.id] for tr in run.trace for p in program.pieces if tr.spikes[p.id] is not None]
    assert len({int(v) for row in emitted for v in row if v}) >= 3  # payloads, not bits
    assert report.counts == steps * sum(u.n_count + u.n_shift for u in units) > 0  # sums and shifts, every barrier
    assert report.logits == program.graph.output.size


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_in_a_payload_row_is_reported_and_read_by_the_next_round():
    """Bit 5 of a's first payload-row word flipped as it is written back at every round: at a's first
    output step unit 0's payload in the DRAM is 32 off (nothing differs before: the rows of steps it
    does not emit at are read by no round), and at the next step b's round reads that row, so b's
    membranes differ from the simulator's from then on."""
    program, x = mbe_rounds_program("product")
    plan = rounds_plan(program)
    (a,) = units_of(plan, program, "a")
    (b,) = units_of(plan, program, "b")
    emit = program.graph.schedule()["a"].out_start
    row0 = a.n_mem + a.n_count + a.n_shift  # the write-back: membranes, sums, shifts, then the row
    report = cosim_rounds(program, x, wb_flip=(a.piece, 5, row0))
    assert not report.ok
    first = min(report.mismatches, key=lambda m: m["step"])
    assert (first["step"], first["piece"], first["what"], first["neuron"]) == (emit, a.piece, "payload (DRAM row)", 0)
    assert first["got"] - first["expected"] in (32, -32)
    hit = [m for m in report.mismatches if m.get("piece") == b.piece and m["what"] == "membrane (DRAM state)"]
    assert hit and min(m["step"] for m in hit) == emit + 1


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["chain", "product", "pool"]),
    split=st.sampled_from(SPLITS),
    lanes=st.sampled_from([1, 2, 4]),
    cols=st.integers(1, 2),
    axons=st.sampled_from([1, 256]),
)
def test_an_mbe_round_reads_its_payload_sources_and_its_state_where_it_wrote_it(seed, kind, split, lanes, cols, axons):
    """The plan alone (no Icarus): payload sources (MBE units, graded max-pools, the host) are read
    as ``v_bits`` values, ``width // v_bits`` to a word, spike sources as bits, each slot's sources
    exactly once; an mbe piece loads its table words and ``(N + 1) * ceil(n/lanes)`` membrane words,
    then its sums and shift words, from where its write-back writes them, and its row is ``v_bits``
    per unit; state, rows and images do not overlap; the transfers take section 7's cycles. With one
    axon the chain's slices split into chunks: a chunk reads its sources only (no parameters, tables
    or state) and writes nothing back; its slice writes back its pieces' bytes together."""
    rng = np.random.default_rng(seed)
    if kind == "chain":
        graph, _ = runnable(lambda r: split_graph(r, 2, (split, "inv"), width=4), rng, (1, 5))
    elif kind == "product":
        graph, _ = runnable(lambda r: product_graph(r, 2, "neuron", "elementwise", False, split, False), rng, (1, 4))
    else:
        graph, _ = runnable(lambda r: pool_graph(r, 2, 2, 1, split), rng, (1, 5))
    axons = axons if kind == "chain" else 256  # products and pools keep their sums in the synapse SRAM
    program = compile(graph, hw_of(1, cols, neurons=32, lanes=lanes, axons=axons, **mbe_core()))
    assume(program.plan.mode == "rounds")
    plan = rounds_plan(program)
    # an mbe slice splits into chunks exactly when its slots' synapse words exceed one SRAM's
    # `axons * neurons / lanes` (only with one axon here, and not always: on one lane m1's 9 rows of 2
    # words fit 32 words), and every chunk fits
    capacity = axons * 32 // lanes
    for p in program.pieces:
        if p.kind == "mbe":
            words = [len(program.images(q.id)["synapse"].fields) for q in program.pieces if q.root == p.id]
            assert max(words) <= capacity and (len(words) > 1) == (sum(words) > capacity)
    split_roots = {program.pieces[u.root].kind for us in plan.units.values() for u in us if u.root >= 0}
    assert "mbe" not in split_roots or axons == 1
    mem, vb = program.hardware.memory, program.hardware.core.v_bits
    payload = {p.name for p in graph.populations if p.kind in ("input", "mbe") or graph.graded(p.name)}
    regions = []
    for us in plan.units.values():
        for u in us:
            piece = program.pieces[u.piece]
            for k, s in enumerate(piece.slots):
                got = sorted(f[1] for f in u.feed if f[0] == k)
                assert got == sorted(int(v) for v in slot_sources(graph, piece, s))
                graded = int(s.src in payload)
                assert all(
                    f[2] == graded and f[3] < (plan.width // vb if graded else plan.width) for f in u.feed if f[0] == k
                )
            assert len([d for d in u.load if d[0] in (SEL_SPIKES, SEL_HOST)]) == len(u.chunks)
            check_chunk_table(plan, u)  # payload chunks: the mask's bits are value positions
            b_in, b_out = program.round_traffic(piece)
            assert u.load_cycles == mem.dram_latency_cycles + -(-b_in // mem.dram_bytes_per_cycle)
            if u.root >= 0:  # a partial chunk: registers, sources and synapse words only, after its root
                assert piece.kind == "partial" and b_out == 0 and u.n_wb == 0 and u.piece not in plan.state_base
                assert {d[0] for d in u.load} <= {SEL_REGS, SEL_SYNAPSE, SEL_SPIKES, SEL_HOST}
                continue
            slice_out = sum(program.round_traffic(q)[1] for q in program.pieces if q.root == u.piece)
            assert u.wb_cycles == mem.dram_latency_cycles + -(-slice_out // mem.dram_bytes_per_cycle)
            groups = -(-piece.n // lanes)
            assert u.n_mem == (u.init.bases + 1) * groups
            assert u.row_bits == (vb if piece.population in payload else 1)
            assert u.n_lut == (len(program.images(u.piece)["params"].fields) - piece.n if piece.kind == "mbe" else 0)
            state = [d[2] for d in u.load if d[0] in (SEL_MEMBRANE, SEL_SUMS, SEL_SHIFT)]
            state += [d[2] for d in u.load if d[0] == SEL_SYNAPSE and d[2] >= u.state_base]
            assert sorted(state) == list(range(u.state_base, u.state_base + u.n_mem + u.n_count + u.n_shift))
            rows = -(-piece.n * u.row_bits // plan.width) if u.spike_base >= 0 else 0
            assert u.n_wb == u.n_mem + u.n_count + u.n_shift + rows
            regions.append((u.state_base, u.state_base + u.n_mem + u.n_count + u.n_shift))
            if u.spike_base >= 0:
                assert rows <= 1 << plan.spike_shift  # a row fits its step's slot
                regions.append((u.spike_base, u.spike_base + ((1 << plan.ring_shift) << plan.spike_shift)))
            images = [d[2] for d in u.load if d[0] in (SEL_PARAMS, SEL_LUT)]  # below every piece's state
            assert images and max(images) < min(plan.state_base.values())
    for k in plan.units:  # split slices too: a root's chunks right after it in each step's list
        check_schedule(plan, k)
    regions.sort()
    assert all(a[1] <= b[0] for a, b in zip(regions, regions[1:]))
    assert regions[-1][1] <= plan.host_base and plan.host_base + plan.host_words == len(plan.dram)


def mbe_split_program():
    """``in -> m0 -> m1 -> out`` (``split_graph``: ``inv`` and ``exp2`` splits, ``in -> m1`` early,
    ``T = 2``) on one core of 16 units, 4 lanes and one axon (4 synapse words, a row of up to 4
    units a word): m0's first slice is an ``mbe`` root and a chunk of host values; m1's first slice a
    root (m0's first four payloads) and two chunks, the first with m0's fifth payload and host
    values, its second a root and two chunks of host values; the output a root and a chunk of m1's
    payloads."""
    rng = np.random.default_rng(1)
    graph, x = runnable(lambda r: split_graph(r, 2, ("inv", "exp2"), width=5), rng, (1, 5))
    program = compile(graph, hw_of(1, 1, neurons=16, lanes=4, axons=1, **mbe_core()))
    assert program.plan.mode == "rounds"
    return program, x[0]


@pytest.mark.rtl
@pytest.mark.icarus
def test_an_mbe_slice_split_into_chunks_adds_them_into_x_and_matches_the_simulator():
    """Section 7 with MBE roots: the root's round loads its tables, ``X``, basis blocks and shift
    words and integrates; each chunk (its synapse and source words only) adds its events, graded
    payloads of m0 and host values, into the root's ``X`` (membrane words ``0 .. ceil(n/lanes) - 1``,
    whole words: a split slice of MBE units is never fed by a product); then the root's passes run
    and the slice writes its state and payload row back once. Every step's cycles, every membrane
    (``X`` and both basis blocks), shift word, payload row and busy count match."""
    program, x = mbe_split_program()
    plan = rounds_plan(program)
    units = [u for us in plan.units.values() for u in us]
    by_piece = {u.piece: u for u in units}
    chunks = [u for u in units if u.root >= 0]
    roots = {u.root for u in chunks}
    assert sorted(program.pieces[r].kind for r in roots) == ["mbe", "mbe", "mbe", "output"]
    lanes = program.hardware.core.lanes
    for r in roots:
        if program.pieces[r].kind == "mbe":  # the slice's state is its root's: X, bases, shifts
            root = by_piece[r]
            assert not root.banked and root.n_mem == 3 * -(-root.init.n // lanes) and root.n_shift > 0
            assert sum(d[0] == SEL_SHIFT for d in root.load) == root.n_shift and root.n_lut > 0
    for u in chunks:  # no parameters, tables or state of its own, nothing written back
        assert u.n_wb == u.n_mem == u.n_shift == u.n_lut == 0 and u.piece not in plan.state_base
        assert not any(d[0] in (SEL_PARAMS, SEL_LUT, SEL_MEMBRANE, SEL_SHIFT, SEL_SUMS) for d in u.load)
    # m1's first chunks read m0's payload rows (graded events, v_bits values) beside host values
    m0 = [f for u in chunks for f in u.feed if program.pieces[u.piece].slots[f[0]].src == "m0"]
    assert m0 and all(f[2] for f in m0)
    run = Simulator(program, trace=True).run(x)
    steps = len(run.trace)
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == steps
    assert report.rounds == expected_rounds(program, steps)
    kept = [p for p in program.pieces if p.kind != "partial"]
    assert report.membranes == steps * sum(len(run.trace[0].membranes[p.id]) for p in kept)
    assert report.spikes == sum(p.n for tr in run.trace for p in kept if tr.spikes[p.id] is not None) > 0
    assert report.counts == steps * sum(u.n_shift for u in units) > 0
    assert report.logits == program.graph.output.size


@pytest.mark.rtl
@pytest.mark.icarus
def test_an_mbe_chunk_that_reads_no_payload_row_is_reported_at_the_roots_x():
    """The descriptors of m0's payload rows left out of the first m1 chunk that reads them (its host
    words stay): at the first step a non-zero payload of its m0 units arrives, that step's cycles and
    the root's ``X`` (and what its passes make of it) differ, nothing else there (later steps differ
    through what follows)."""
    program, x = mbe_split_program()
    plan = rounds_plan(program)
    chunk = next(
        u for us in plan.units.values() for u in us if u.root >= 0 and program.pieces[u.piece].slots[0].src == "m0"
    )
    chunk.load = [d for d in chunk.load if d[0] != SEL_SPIKES]  # its host words stay
    srcs = [f[1] for f in chunk.feed if program.pieces[chunk.piece].slots[f[0]].src == "m0"]
    raster = Simulator(program).run(x, record=True).rasters["m0"][:, srcs]
    arrive = int(np.flatnonzero(raster.any(axis=1))[0]) + 1  # delay 0
    report = cosim_rounds(program, x, plan=plan)
    assert not report.ok
    assert min(m["step"] for m in report.mismatches) == arrive
    first = [m for m in report.mismatches if m["step"] == arrive]
    assert any(m["what"].startswith("cycles of the step") for m in first)
    v = [m for m in first if "piece" in m]
    assert {m["piece"] for m in v} == {chunk.root} and {m["what"] for m in v} == {"membrane (DRAM state)"}
    groups = -(-program.pieces[chunk.root].n // program.hardware.core.lanes)
    assert any(m["neuron"] < groups * program.hardware.core.lanes for m in v)  # X (then the basis blocks)
