"""Rounds-mode contexts per piece structure (``docs/rtl.md``, "Rounds mode"): each core position
builds one context per structure key, and every round's load writes the piece's register values,
read from its DRAM image, into that context before the round's first event."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_rtl_rounds import rounds_program, split_program

from spikeforge.mapping import compile
from spikeforge.mapping.images import PIECE_CODES
from spikeforge.rtl.cosim import cosim_rounds
from spikeforge.rtl.memories import entries_per_word, operand_field_bits, operand_words
from spikeforge.rtl.piece import (
    CONTEXT_REGISTERS,
    CONV_REGISTERS,
    MBE_REGISTERS,
    OPERAND_REGISTERS,
    REGISTER_BITS,
    SLOT_REGISTERS,
    TILE_REGISTERS,
    context_registers,
    conv_values,
    is_conv,
    is_tile,
    operand_bases,
    register_addresses,
    register_names,
    register_values,
    slice_extent,
    structure_key,
    tile_offsets,
)
from spikeforge.rtl.rounds import SEL_OPS, SEL_REGS, rounds_plan
from spikeforge.rtl.scenarios import attention_pair_network, conv_stack_network, dense_network, dense_program


def values_of(p, names) -> list[int]:
    """The values of ``p``'s registers called ``names`` (``register_names``)."""
    values, at = register_values(p), register_names(p)
    return [values[at.index(k)] for k in names]


def check_registers(plan) -> None:
    """Every round's load starts with one descriptor per register, reading the piece's values from
    its DRAM image into the register of that name in its context (``context_registers``: as many
    slots and routing entries as the most of the context's pieces); rounds share a context iff their
    keys are equal."""
    for us in plan.units.values():
        for u in us:
            values = register_values(u.init)
            layout = context_registers([v.init for v in us if v.context == u.context])
            regs = u.load[: len(values)]
            assert [d[:2] for d in regs] == [(SEL_REGS, a) for a in register_addresses(u.init, layout)]
            assert [layout[d[1]] for d in regs] == register_names(u.init)
            assert all(d[0] != SEL_REGS for d in u.load[len(values) :])
            assert [plan.dram[d[2]] for d in regs] == [v & ((1 << REGISTER_BITS) - 1) for v in values]
        for a in us:
            for b in us:
                assert (a.context == b.context) == (structure_key(a.init) == structure_key(b.init))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(3, 20), min_size=2, max_size=4),
    lanes=st.sampled_from([2, 4]),
    cols=st.integers(1, 2),
)
def test_every_round_loads_its_registers_first_from_its_dram_image(seed, sizes, lanes, cols):
    graph = dense_network(seed, (12, *sizes), timesteps=2)
    program = dense_program(graph, 1, cols, neurons=16, lanes=lanes, axons=32)
    assume(program.plan.mode == "rounds")
    check_registers(rounds_plan(program))


def test_a_slices_chunks_share_a_context_and_its_root_has_its_own():
    """One core: the root of the split slice, its two partial chunks, the output."""
    program, _ = split_program(1)
    (units,) = rounds_plan(program).units.values()
    assert [u.root >= 0 for u in units] == [False, True, True, False]
    assert [u.context for u in units] == [0, 1, 1, 2]


def shared_rounds():
    """The deep case (four hidden layers and the output on two cores) and a core position whose
    rounds outnumber its contexts; the round that runs in a context another piece set up first."""
    program, x = rounds_program("deep")
    plan = rounds_plan(program)
    check_registers(plan)
    k, us = next((k, us) for k, us in plan.units.items() if max(u.context for u in us) + 1 < len(us))
    later = next(u for j, u in enumerate(us) if u.context in [v.context for v in us[:j]])
    return program, x, plan, k, later


@pytest.mark.rtl
@pytest.mark.icarus
def test_rounds_in_a_shared_context_match_the_simulator_at_every_step():
    """The deep case at the plan's one descriptor per cycle: core 0 runs ``h2`` and ``h4`` in one
    context, core 1 ``h1`` and ``h3`` in one and the output in another."""
    program, x, plan, k, later = shared_rounds()
    contexts = {k: len({u.context for u in us}) for k, us in plan.units.items()}
    assert contexts == {0: 1, 1: 2} and {k: len(us) for k, us in plan.units.items()} == {0: 2, 1: 3}
    assert plan.ports == 1
    report = cosim_rounds(program, x, plan=plan)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps
    assert report.membranes == report.steps * sum(p.n for p in program.pieces) and report.spikes > 0


@pytest.mark.rtl
@pytest.mark.icarus
def test_registers_landing_in_the_grant_cycle_go_to_the_new_rounds_context():
    """The max-pool case (two ``h`` slices in one context, the max-pool and the output in their own)
    with 16 descriptors per cycle, more than its transfers need (the loads end earlier, the transfers
    do not): a round's 13 registers (16 for the max-pool: its tile's origin too) all land in its grant
    cycle, when a round granted in the cycle it
    is requested is not yet the core's current one. Exact at every step (written into the previous
    round's context instead, a membrane differs at step 3)."""
    program, x = rounds_program("pool")
    plan = rounds_plan(program)
    check_registers(plan)
    (units,) = plan.units.values()
    assert [u.context for u in units] == [0, 0, 1, 2]
    assert [len(register_values(u.init)) for u in units] == [13, 13, 16, 13]
    plan.ports = 16
    report = cosim_rounds(program, x, plan=plan)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_a_register_word_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of slot 0's ``base`` (its first synapse word) in the DRAM image of a round that shares
    its context: the round reads its weights one word (a lane group) further on, so its membranes
    are first off at the first step its slot has a source spike, on its core; nothing before."""
    from spikeforge.sim import Simulator

    program, x, plan, k, later = shared_rounds()
    values = register_values(later.init)
    at = len(CONTEXT_REGISTERS) + SLOT_REGISTERS.index("base")  # slot 0's base
    word = later.load[at][2]
    assert later.load[at][:2] == (SEL_REGS, at) and plan.dram[word] == values[at]
    run = Simulator(program, trace=True).run(x)
    slot = program.pieces[later.piece].slots[0]
    delay = int(program.graph.projections[slot.proj].delay)
    sources = [q.id for q in program.pieces if q.population == slot.src]

    def emitted(t: int) -> bool:  # a source piece spiked at step t
        return any(run.trace[t].spikes[q] is not None and run.trace[t].spikes[q].any() for q in sources)

    first = next(t for t in range(max(later.lo, delay + 1), later.hi) if emitted(t - 1 - delay))
    assert (first, k, later.init.population) == (4, 0, "h4")
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first
    at_first = [m for m in report.mismatches if m["step"] == first]
    assert {(m["core"], m["piece"]) for m in at_first} == {(k, later.piece)}
    assert any(m["what"] == "membrane (DRAM state)" for m in at_first)


def test_the_tiles_of_a_layer_share_a_context_and_load_their_origin():
    """The residual conv block on two cores: each core runs two 4-channel tiles of ``h1`` and two of
    ``h2`` (rows 0-1 and 2-3 of one column half), all four in one context: ``h1``'s tiles have one
    slot (conv), ``h2``'s two (identity, conv), and a slot's kind is a register like a tile's origin
    ``(c0, y0, x0)``, which each round's load writes."""
    program, _ = rounds_program("conv")
    plan = rounds_plan(program)
    check_registers(plan)
    for us in plan.units.values():
        tiles = [u for u in us if is_tile(u.init)]
        assert len(tiles) == 4 and len({u.context for u in tiles}) == 1
        assert sorted(len(u.init.slots) for u in tiles) == [1, 1, 2, 2]
        for layer in ("h1", "h2"):
            origins = [tuple(u.init.geometry[k] for k in TILE_REGISTERS) for u in tiles if u.init.population == layer]
            assert len(set(origins)) == 2 and {y0 for _, y0, _ in origins} == {0, 2}


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_a_tiles_origin_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of ``y0`` (2 -> 3) of the second ``h1`` tile on core 0, in its round's DRAM register
    words: the tile's context places its positions a row lower, so its membranes, spikes and the
    core's busy cycles are off at the first step the host's values reach it; nothing before."""
    program, x = rounds_program("conv")
    plan = rounds_plan(program)
    later = [u for u in plan.units[0] if u.init.population == "h1"][1]
    values = register_values(later.init)
    at = register_names(later.init).index("y0")
    word = later.load[at][2]
    # the tile has one slot in a context of two (h2's tiles): y0 is further on in the context
    layout = context_registers([u.init for u in plan.units[0] if u.context == later.context])
    assert later.load[at][:2] == (SEL_REGS, layout.index("y0")) and layout.index("y0") == at + 5
    assert plan.dram[word] == values[at] == 2
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    first = min(m["step"] for m in report.mismatches)
    at_first = [m for m in report.mismatches if m["step"] == first]
    # its membranes and spike row, and core 0's busy cycles (the taps an event reaches moved too)
    assert {m["core"] for m in at_first} == {0} and {m.get("piece", later.piece) for m in at_first} == {later.piece}
    assert {m["what"] for m in at_first} == {"membrane (DRAM state)", "spike (DRAM row)", "busy cycles of the step"}
    assert first == later.lo == program.graph.schedule()["h1"].in_start


def test_the_heads_of_an_attention_block_share_a_context_and_load_their_operand_bases():
    """The attention score block on two cores: core 1 runs ``att`` of head 0 and of head 1 in one
    context; the operand tables are offsets from ``a_base`` and ``b_base`` (0 and 16: head 1's ``q`` and
    ``k`` rows are head 0's, 16 sources on), registers each round's load writes."""
    program, _ = rounds_program("attention")
    plan = rounds_plan(program)
    check_registers(plan)
    heads = [u for u in plan.units[1] if u.init.population == "att"]
    assert len({u.context for u in heads}) == 1
    assert [operand_bases(u.init) for u in heads] == [(0, 0), (16, 16)]
    assert [values_of(u.init, OPERAND_REGISTERS) for u in heads] == [[0, 0], [16, 16]]


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_an_operand_base_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of head 1's ``a_base`` (16 -> 17) in its round's DRAM register words: each ``q`` spike is
    counted as the next source's, so head 1's running counts (and from them its membranes) are off
    at the first step a ``q`` spike reaches it, on core 1 only; nothing before."""
    from spikeforge.sim import Simulator

    program, x = rounds_program("attention")
    plan = rounds_plan(program)
    later = [u for u in plan.units[1] if u.init.population == "att"][1]
    values = register_values(later.init)
    at = register_names(later.init).index("a_base")
    word = later.load[at][2]
    assert later.load[at][:2] == (SEL_REGS, at) and plan.dram[word] == values[at] == 16
    run = Simulator(program, trace=True).run(x)
    slot = program.pieces[later.piece].slots[0]  # product_a: q
    delay = int(program.graph.projections[slot.proj].delay_a)
    qs = [q.id for q in program.pieces if q.population == slot.src]
    # the first step whose q spikes (emitted 1 + delay steps before) include one of head 1's rows
    rows = set(later.init.operands[0])
    first = next(
        t
        for t in range(later.lo, later.hi)
        if t - 1 - delay >= 0
        and any(
            run.trace[t - 1 - delay].spikes[q] is not None
            and rows & {int(program.pieces[q].neurons[j]) for j in np.flatnonzero(run.trace[t - 1 - delay].spikes[q])}
            for q in qs
        )
    )
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first, report.format()
    at_first = [m for m in report.mismatches if m["step"] == step]
    assert {m["core"] for m in at_first} == {1} and {m.get("piece", later.piece) for m in at_first} == {later.piece}


def test_the_mlps_two_gelu_layers_share_a_context_and_load_their_clip_ranges(mbe_mlp8):
    """The bundled MBE MLP on one default core: ``gelu0`` (two slices) and ``gelu1`` run in one
    context; each round loads its ``X`` clip range and payload start (``MBE_REGISTERS``: the table's
    last word, the only table constants that differ between the layers)."""
    from spikeforge.mapping import HardwareConfig
    from spikeforge.mapping.hardware import ArrayConfig, CoreConfig

    hw = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(neuron_models=("if", "mbe")))
    program = compile(mbe_mlp8, hw)
    assert program.plan.mode == "rounds"
    plan = rounds_plan(program)
    check_registers(plan)
    (units,) = plan.units.values()
    mbe = [u for u in units if program.pieces[u.piece].kind == "mbe"]
    assert [u.init.population for u in mbe] == ["gelu0", "gelu0", "gelu1"] and len({u.context for u in mbe}) == 1
    consts = [tuple(values_of(u.init, MBE_REGISTERS)) for u in mbe]
    assert consts == [tuple(int(v) for v in u.init.params[-1][:3]) for u in mbe]
    assert consts[0] == consts[1] != consts[2]


def conv_stack_program():
    """Two convolutions (3 x 3 with padding 1 from the host, 2 x 2 with stride 2 from ``h1``) on one
    core of 16 neurons and 4 lanes: every tile of ``h1`` and ``h2`` is a conv piece of 4 channels."""
    graph = conv_stack_network(3, channels=4, side=4)
    program = dense_program(graph, 1, 1, neurons=16, lanes=4)
    assert program.plan.mode == "rounds"
    x = np.random.default_rng(2).integers(0, 16, graph.input.size).reshape(graph.input.shape)
    return program, x


def test_conv_pieces_of_different_kernels_strides_and_extents_share_one_context():
    """The conv stack's ``h1`` tiles (3 x 3 kernel, padding 1, source 1 x 4 x 4, 4 x 2 x 2 tiles) and
    its ``h2`` tile (2 x 2 kernel, stride 2, source 4 x 4 x 4, 4 x 2 x 2) run in one context: the
    geometry is in registers (``CONV_REGISTERS``) each round's load writes, and a conv tile's local
    neurons are where ``tile_offsets`` puts them (the encoder computes their indices from them)."""
    program, _ = conv_stack_program()
    plan = rounds_plan(program)
    check_registers(plan)
    (units,) = plan.units.values()
    convs = [u for u in units if is_conv(u.init)]
    assert {u.init.population for u in convs} == {"h1", "h2"} and len({u.context for u in convs}) == 1
    geometry = {u.init.population: tuple(conv_values(u.init)[5:]) for u in convs}
    assert geometry == {"h1": (4, 4, 3, 3, 1, 1), "h2": (4, 4, 2, 2, 2, 0)}
    for u in convs:
        assert values_of(u.init, CONV_REGISTERS) == conv_values(u.init)
        cb, th, tw, h, w = conv_values(u.init)[:5]
        assert [v - u.init.first for v in u.init.neurons] == tile_offsets(cb, th, tw, h, w)


def test_a_conv_piece_whose_neurons_are_not_in_tile_order_is_refused_with_a_sentence():
    """A conv context computes a local neuron's global index from its registers (``tile_offsets``):
    a conv tile whose neurons come in another order (two swapped) is refused, naming the piece."""
    import dataclasses

    from spikeforge.rtl import RtlError
    from spikeforge.rtl.piece import piece_init

    program, _ = conv_stack_program()
    pid = next(p.id for p in program.pieces if p.population == "h1")
    piece = program.pieces[pid]
    assert piece_init(program, pid).neurons == tuple(int(v) for v in piece.neurons)  # in order: accepted
    neurons = piece.neurons.copy()
    neurons[[1, 2]] = neurons[[2, 1]]
    pieces = list(program.pieces)
    pieces[pid] = dataclasses.replace(piece, neurons=neurons)
    bad = dataclasses.replace(program, pieces=tuple(pieces))
    with pytest.raises(RtlError, match=rf"piece {pid} \('h1'\) orders its neurons otherwise .*tile_offsets"):
        piece_init(bad, pid)


@pytest.mark.rtl
@pytest.mark.icarus
def test_conv_pieces_sharing_a_context_match_the_simulator_at_every_step():
    """The conv stack in rounds mode: every step's membranes, spike rows and busy cycles exact."""
    program, x = conv_stack_program()
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps
    assert report.spikes > 0


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_a_conv_stride_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of ``h2``'s ``stride`` register (2 -> 3) in its round's DRAM register words: its context
    places the taps of each ``h1`` spike elsewhere, so its membranes (or the core's busy cycles) are
    off at the first step ``h1`` spikes reach it, on that round's piece; nothing before."""
    from spikeforge.sim import Simulator

    program, x = conv_stack_program()
    plan = rounds_plan(program)
    (units,) = plan.units.values()
    later = next(u for u in units if u.init.population == "h2")
    values = register_values(later.init)
    at = register_names(later.init).index("stride")
    word = later.load[at][2]
    assert later.load[at][:2] == (SEL_REGS, at) and plan.dram[word] == values[at] == 2
    run = Simulator(program, trace=True).run(x)
    h1 = [q.id for q in program.pieces if q.population == "h1"]
    delay = int(program.graph.projections[program.pieces[later.piece].slots[0].proj].delay)
    first = next(
        t
        for t in range(max(later.lo, 1 + delay), later.hi)
        if any(run.trace[t - 1 - delay].spikes[q] is not None and run.trace[t - 1 - delay].spikes[q].any() for q in h1)
    )
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first, report.format()
    at_first = [m for m in report.mismatches if m["step"] == step]
    assert {m.get("piece", later.piece) for m in at_first} == {later.piece}


@pytest.mark.rtl
@pytest.mark.icarus
@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    lanes=st.sampled_from([1, 2, 4]),
)
def test_any_second_convolution_shares_the_first_ones_context_and_matches_the_simulator(
    seed, kernel, stride, padding, lanes
):
    """A second convolution of any kernel up to 3 x 3 (not necessarily square), stride and padding
    after a 3 x 3 one, on one core in rounds mode: the conv pieces of both layers whose channel
    blocks agree on lane banks share one context, and every step is exact."""
    graph = conv_stack_network(seed, channels=4, side=4, layers=((*kernel, stride, padding),))
    program = dense_program(graph, 1, 1, neurons=16, lanes=lanes)
    assume(program.plan.mode == "rounds")
    plan = rounds_plan(program)
    check_registers(plan)
    (units,) = plan.units.values()
    convs = [u for u in units if is_conv(u.init)]
    assert {u.init.population for u in convs} == {"h1", "h2"}
    # both layers' pieces have one conv slot and no routing entry (rounds): one context per lane layout
    banks = {lanes > 1 and slice_extent(u.init)[0] % lanes != 0 for u in convs}
    assert len({u.context for u in convs}) == len(banks)
    x = np.random.default_rng(seed).integers(0, 16, graph.input.size).reshape(graph.input.shape)
    report = cosim_rounds(program, x, plan=plan)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_a_slot_kind_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of slot 0's ``kind`` (identity, 3 -> pool_dense, 2) of the first ``h2`` tile on core 0, in
    its round's DRAM register words: the context (shared with ``h1``'s one-slot tiles) treats the
    residual events as rows of weights, so the tile's membranes or the core's busy cycles are off at
    the first step an ``h1`` spike reaches the tile; nothing before."""
    from spikeforge.sim import Simulator

    program, x = rounds_program("conv")
    plan = rounds_plan(program)
    later = next(u for u in plan.units[0] if u.init.population == "h2")
    at = register_names(later.init).index("slot0.kind")
    word = later.load[at][2]
    assert plan.dram[word] == register_values(later.init)[at] == 3  # identity
    slot = program.pieces[later.piece].slots[0]
    assert slot.kind == "identity"
    delay = int(program.graph.projections[slot.proj].delay)
    run = Simulator(program, trace=True).run(x)
    mine = set(later.init.neurons)  # identity: h1's neuron i reaches h2's neuron i
    h1 = [q for q in program.pieces if q.population == "h1"]

    def reaches(t: int) -> bool:
        tr = run.trace[t - 1 - delay]
        return any(
            tr.spikes[q.id] is not None and mine & {int(q.neurons[j]) for j in np.flatnonzero(tr.spikes[q.id])}
            for q in h1
        )

    first = next(t for t in range(max(later.lo, 1 + delay), later.hi) if reaches(t))
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first, report.format()
    assert {m["core"] for m in report.mismatches if m["step"] == step} == {0}


def product_pair_program():
    """``att = q x k^T`` and ``o = att x v`` (4 x 4 blocks over 4 contraction indices, the second
    reading its operands transposed and writing ``o`` transposed) on one core of 16 neurons, 4 lanes."""
    graph = attention_pair_network(1)
    program = dense_program(graph, 1, 1, neurons=16, lanes=4)
    assert program.plan.mode == "rounds"
    x = np.random.default_rng(1).integers(0, 16, graph.input.size).reshape(graph.input.shape)
    return program, x


def unpack_operands(hw, words, bases) -> tuple[dict, dict]:
    """The ``a`` and ``b`` tables (source -> (row, col)) that operand table ``words`` hold, for the
    sources whose entry is not all zeros (and source ``base`` itself, whose entry may be ``(0, 0)``)."""
    f = operand_field_bits(hw)
    per = entries_per_word(hw, 4 * f)
    mask = (1 << f) - 1
    tables: tuple[dict, dict] = ({}, {})
    for e in range(len(words) * per):
        entry = words[e // per] >> (4 * f * (e % per))
        for side in (0, 1):
            half = entry >> (2 * f * side)
            row, col = half & mask, (half >> f) & mask
            if row or col or e == 0:
                tables[side][bases[side] + e] = (row, col)
    return tables


def test_two_products_with_different_tables_share_a_context_and_load_their_tables():
    """``att`` and ``o`` differ in their operand index tables (and ``o``'s neurons are numbered
    transposed) but not in structure: one context, whose operand table memory each round's load
    fills from the piece's DRAM image (``SEL_OPS``: :func:`operand_words`, which decode back to the
    tables). No encoder runs in rounds mode, so no neuron index table is loaded."""
    program, _ = product_pair_program()
    plan = rounds_plan(program)
    check_registers(plan)
    (units,) = plan.units.values()
    prods = {u.init.population: u for u in units if u.init.kind == PIECE_CODES["product"]}
    assert set(prods) == {"att", "o"} and prods["att"].context == prods["o"].context
    att, o = prods["att"].init, prods["o"].init
    assert att.operands != o.operands
    assert list(o.neurons) != list(range(o.first, o.first + o.n))  # transposed: a table, not a range
    hw = program.hardware
    for u in prods.values():
        words = operand_words(hw, u.init)
        ops = [d for d in u.load if d[0] == SEL_OPS]
        assert [d[1] for d in ops] == list(range(len(words))) == list(range(u.n_ops))
        assert [plan.dram[d[2]] for d in ops] == words
        assert unpack_operands(hw, words, operand_bases(u.init)) == u.init.operands
    assert all(d[0] in range(SEL_OPS + 1) for u in units for d in u.load)


@pytest.mark.rtl
@pytest.mark.icarus
def test_products_sharing_a_context_match_the_simulator_at_every_step():
    """The two products in one context: every step's membranes, running counts, spike rows and busy
    cycles exact."""
    program, x = product_pair_program()
    report = cosim_rounds(program, x)
    assert report.ok, report.format()
    assert report.step_cycles == report.steps == program.graph.total_steps
    assert report.spikes > 0 and report.counts > 0


@pytest.mark.rtl
@pytest.mark.icarus
def test_a_flipped_bit_of_an_operand_table_word_in_the_dram_is_reported_at_its_first_event_step():
    """Bit 0 of ``o``'s first operand table word in its round's DRAM image: the ``a`` source at offset
    0 (``att`` neuron 0) decodes as row 1 instead of 0, so ``o``'s running counts and membranes are off
    at the first step that source's spike reaches ``o`` (``att`` fired it the step before), and not
    before."""
    from spikeforge.sim import Simulator

    program, x = product_pair_program()
    plan = rounds_plan(program)
    (units,) = plan.units.values()
    o = next(u for u in units if u.init.population == "o")
    word = next(d[2] for d in o.load if d[0] == SEL_OPS and d[1] == 0)
    assert plan.dram[word] & 1 == 0 and o.init.operands[0][operand_bases(o.init)[0]] == (0, 0)
    run = Simulator(program, trace=True).run(x)
    att = next(q for q in program.pieces if q.population == "att")
    src = operand_bases(o.init)[0]
    local = list(att.neurons).index(src)
    first = next(
        t
        for t in range(max(o.lo, 1), o.hi)
        if run.trace[t - 1].spikes[att.id] is not None and run.trace[t - 1].spikes[att.id][local]
    )
    report = cosim_rounds(program, x, plan=plan, dram_flip=(word, 0))
    assert not report.ok
    step = min(m["step"] for m in report.mismatches)
    assert step == first, report.format()
    assert {m.get("piece", o.piece) for m in report.mismatches if m["step"] == step} == {o.piece}
