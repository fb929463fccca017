"""Product pieces on the skewed membrane banks (``docs/architecture.md`` section 4.3), on Amaranth's
simulator (no Icarus): the layout of :func:`~spikeforge.rtl.piece.product_banks`, and the cost and
the membranes of operand events on cores of 1, 4 and 16 lanes against the rules of 4.3 by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES
from spikeforge.rtl.core import TYPE_SPIKE, Core
from spikeforge.rtl.memories import (
    INDEX_BITS,
    entries_per_word,
    index_word_bits,
    index_words,
    operand_field_bits,
    operand_word_bits,
    operand_words,
)
from spikeforge.rtl.piece import PieceInit, SlotInit, membrane_order, product_banks

pytestmark = pytest.mark.rtl

VB, WEIGHT = 16, 3


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16])
def test_the_banks_take_a_row_and_a_column_in_ceil_m_over_lanes_and_fit_phase_f(lanes):
    """Every block up to 24 x 24: one neuron per bank and group of a row or a column, the words of
    every bank ``0 .. ceil(n/lanes) - 1`` (phase F's ``ceil(n/lanes)`` cycles), no two neurons in one
    place."""
    for ni in range(1, 25):
        for nj in range(1, 25):
            bank, addr = product_banks(ni, nj, lanes)
            words = math.ceil(ni * nj / lanes)
            assert addr.min() >= 0 and addr.max() < words, (ni, nj)
            assert len({(int(b), int(a)) for b, a in zip(bank.ravel(), addr.ravel())}) == ni * nj
            for g in range(0, nj, lanes):  # row groups
                assert all(len(set(bank[i, g : g + lanes].tolist())) == len(bank[i, g : g + lanes]) for i in range(ni))
            for h in range(0, ni, lanes):  # column groups
                assert all(len(set(bank[h : h + lanes, j].tolist())) == len(bank[h : h + lanes, j]) for j in range(nj))
            if ni % lanes == 0:  # whole groups of rows: the contract's (i + j) mod lanes
                assert (bank == (np.arange(ni)[:, None] + np.arange(nj)[None, :]) % lanes).all()


def product_piece(ni, nj, nc, neurons, lanes, seed=0):
    """A product piece of an ``ni x nj`` block with contraction ``nc``: operand ``a`` source
    ``i * nc + c``, operand ``b`` source ``c * nj + j``."""
    rng = np.random.default_rng(seed)
    n = ni * nj
    params = np.stack([np.full(n, 1000), np.zeros(n, np.int64), rng.integers(-50, 50, n)], axis=1)
    a = {i * nc + c: (i, c) for i in range(ni) for c in range(nc)}
    b = {c * nj + j: (c, j) for c in range(nc) for j in range(nj)}
    return PieceInit(
        kind=PIECE_CODES["product"],
        n=n,
        in_start=1,
        out_start=2,
        timesteps=4,
        first=0,
        slots=(SlotInit(SLOT_CODES["product_a"], 0, 0, 0, WEIGHT), SlotInit(SLOT_CODES["product_b"], 0, 0, 0, WEIGHT)),
        synapse=np.zeros((0, lanes), np.int64),
        params=params,
        geometry={"h": 0, "i0": 0, "i1": ni, "j0": 0, "j1": nj},
        operands=(a, b),
        contraction=nc,
    )


def expected(piece, events, lanes, abar0=None, bbar0=None):
    """Section 4.3 by hand: membranes (local order), event ends and the cost of each event; the
    counts start at ``abar0``, ``bbar0`` (zero by default)."""
    g = piece.geometry
    ni, nj, nc = g["i1"], g["j1"], piece.contraction
    v = piece.params[:, 2].copy().reshape(ni, nj)
    abar = np.zeros((ni, nc), np.int64) if abar0 is None else abar0.copy()
    bbar = np.zeros((nc, nj), np.int64) if bbar0 is None else bbar0.copy()
    costs = []
    for slot, src in events:
        if slot == 0:
            i, c = piece.operands[0][src]
            v[i, :] += WEIGHT * bbar[c, :]
            abar[i, c] += 1
            costs.append(-(-nj // lanes) + 1)
        else:
            c, j = piece.operands[1][src]
            v[:, j] += WEIGHT * abar[:, c]
            bbar[c, j] += 1
            costs.append(-(-ni // lanes) + 1)
    return v.reshape(-1), costs


def run_events(hw, piece, events, **core_kw):
    """Push ``events`` (slot, source) back to back from cycle 0; return i_done's first cycle, busy
    and the membranes in local order (through :func:`membrane_order`)."""
    dut = Core(hw, piece, **core_kw)
    c = hw.core
    seen = {}
    order = membrane_order(hw, piece)

    async def bench(ctx):
        ctx.set(dut.step, 1)
        ctx.set(dut.start, 1)
        k, cyc = 0, 0
        while True:
            if k < len(events) and ctx.get(dut.events.ready):
                slot, src = events[k]
                flit = {"type": TYPE_SPIKE, "slot": slot, "index": src, "payload": 0, "x": 0, "y": 0}
                ctx.set(dut.events.payload, flit)
                ctx.set(dut.events.valid, 1)
                k += 1
            else:
                ctx.set(dut.events.valid, 0)
            if k == len(events) and cyc > len(events) and ctx.get(dut.i_done):
                break
            await ctx.tick()
            ctx.set(dut.start, 0)
            cyc += 1
        seen["done"] = cyc
        seen["last_end"] = ctx.get(dut.last_end)
        seen["busy"] = ctx.get(dut.busy)
        flat = []
        for w in range(c.neurons // c.lanes):
            ctx.set(dut.dbg_maddr, w)
            word = ctx.get(dut.dbg_v)
            for lane in range(c.lanes):
                x = (word >> (lane * VB)) & ((1 << VB) - 1)
                flat.append(x - (1 << VB) if x >> (VB - 1) else x)
        v = np.zeros(piece.n, np.int64)
        v[order[order >= 0]] = np.asarray(flat)[order >= 0]
        seen["v"] = v

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


BLOCKS = [(1, 3, 2, 2), (4, 5, 7, 3), (4, 6, 6, 2), (16, 16, 16, 2), (16, 3, 17, 2)]


@pytest.mark.parametrize(("lanes", "ni", "nj", "nc"), BLOCKS)
def test_operand_events_cost_ceil_m_over_lanes_plus_one_and_update_rows_and_columns(lanes, ni, nj, nc):
    neurons = max(64, -(-ni * nj // lanes) * lanes)
    neurons = 1 << (neurons - 1).bit_length()
    hw = HardwareConfig(
        array=ArrayConfig(1, 1),
        core=CoreConfig(axons=16, neurons=neurons, lanes=lanes, v_bits=VB, pipeline_cycles=3, input_fifo_events=64),
    )
    piece = product_piece(ni, nj, nc, neurons, lanes)
    rng = np.random.default_rng(ni * 100 + nj)
    srcs_a, srcs_b = list(piece.operands[0]), list(piece.operands[1])
    events = []
    for _ in range(24):
        if rng.random() < 0.5:
            events.append((0, int(rng.choice(srcs_a))))
        else:
            events.append((1, int(rng.choice(srcs_b))))
    v, costs = expected(piece, events, lanes)
    seen = run_events(hw, piece, events)
    # the first event is written at cycle 0 and popped at 1; back to back after that
    assert seen["last_end"] == 1 + sum(costs)
    assert seen["busy"] == sum(costs)
    assert seen["v"].tolist() == v.tolist()


@pytest.mark.parametrize(("lanes", "ni", "nj", "nc"), [(1, 3, 2, 2), (4, 5, 7, 3), (16, 3, 17, 2)])
def test_the_running_counts_are_read_from_the_synapse_sram_at_their_words(lanes, ni, nj, nc):
    """The counts live in the synapse SRAM (section 4.3; rtl.core.count_words): ``Abar[:, c]`` at
    words ``c * ceil(ni/lanes) + h``, then ``Bbar[c, :]`` at ``nc * ceil(ni/lanes) + c * ceil(nj/lanes)
    + g``, count ``l`` of a word in bits ``l * count_bits``. Counts placed there before the events
    (as a piece loaded with them would have) are what the events read and increment."""
    neurons = 1 << (max(64, -(-ni * nj // lanes) * lanes) - 1).bit_length()
    core = CoreConfig(axons=16, neurons=neurons, lanes=lanes, v_bits=VB, pipeline_cycles=3, input_fifo_events=64)
    hw = HardwareConfig(array=ArrayConfig(1, 1), core=core)
    rng = np.random.default_rng(lanes + ni)
    abar0, bbar0 = rng.integers(0, 4, (ni, nc)), rng.integers(0, 4, (nc, nj))
    gi, gj, cb, wb = -(-ni // lanes), -(-nj // lanes), core.count_bits, core.weight_bits
    raw = [0] * (nc * (gi + gj))
    for i in range(ni):
        for c in range(nc):
            raw[c * gi + i // lanes] |= int(abar0[i, c]) << (i % lanes * cb)
    for c in range(nc):
        for j in range(nj):
            raw[nc * gi + c * gj + j // lanes] |= int(bbar0[c, j]) << (j % lanes * cb)
    # the image holds `lanes` signed weight_bits fields per word: cut each raw word into them
    fields = [[(r >> (k * wb)) & ((1 << wb) - 1) for k in range(lanes)] for r in raw]
    synapse = np.array([[f - (1 << wb) if f >> (wb - 1) else f for f in row] for row in fields], np.int64)
    piece = dataclasses.replace(product_piece(ni, nj, nc, neurons, lanes), synapse=synapse)
    srcs_a, srcs_b = list(piece.operands[0]), list(piece.operands[1])
    events = [(int(k), int(rng.choice(srcs_a if k == 0 else srcs_b))) for k in rng.integers(0, 2, 16)]
    v, costs = expected(piece, events, lanes, abar0, bbar0)
    seen = run_events(hw, piece, events)
    assert seen["v"].tolist() == v.tolist()
    assert seen["last_end"] == 1 + sum(costs)
    v_zero, _ = expected(piece, events, lanes)  # the same events from zero counts give other membranes
    assert v_zero.tolist() != v.tolist()


@pytest.mark.parametrize(("fault", "what"), [("extra_cycle", "cycles"), ("word_offset", "membranes")])
def test_a_wrong_product_cost_or_bank_word_is_seen(fault, what):
    """The two mutations of the product unit: one extra cycle per operand event (the ends move) and a
    column update one word off in its banks (other neurons' membranes change)."""
    lanes, ni, nj, nc = 4, 5, 7, 3
    hw = HardwareConfig(
        array=ArrayConfig(1, 1),
        core=CoreConfig(axons=16, neurons=64, lanes=lanes, v_bits=VB, pipeline_cycles=3, input_fifo_events=64),
    )
    piece = product_piece(ni, nj, nc, 64, lanes)
    events = [(0, 0), (1, 0), (0, 3), (1, 1), (1, 7), (0, 4)]  # a(0,0) b(0,0) a(1,0) b(0,1) b(1,0) a(1,1)
    v, costs = expected(piece, events, lanes)
    good = run_events(hw, piece, events)
    bad = run_events(hw, piece, events, product_fault=fault)
    assert good["last_end"] == 1 + sum(costs) and good["v"].tolist() == v.tolist()
    if what == "cycles":
        assert bad["last_end"] == 1 + sum(costs) + len(events) and bad["v"].tolist() == v.tolist()
    else:
        assert bad["last_end"] == good["last_end"] and bad["v"].tolist() != v.tolist()


def test_phase_f_of_a_banked_block_takes_ceil_n_over_lanes_and_fires_in_local_order():
    """A 6 x 6 block on 4 lanes (where bank ``(i + j) mod 4`` would hold 10 neurons): phase F in
    ``ceil(36/4) = 9`` cycles, each neuron with its own threshold and bias (the parameter SRAM in bank
    positions) and its spike in its local bit of the history row."""
    lanes, ni, nj = 4, 6, 6
    hw = HardwareConfig(
        array=ArrayConfig(1, 1),
        core=CoreConfig(axons=16, neurons=64, lanes=lanes, v_bits=VB, pipeline_cycles=3, input_fifo_events=8),
    )
    rng = np.random.default_rng(3)
    base = product_piece(ni, nj, 2, 64, lanes)
    n = ni * nj
    params = np.stack([rng.integers(1, 60, n), rng.integers(-5, 6, n), rng.integers(0, 80, n)], axis=1)
    piece = dataclasses.replace(base, params=params)
    step = 2  # in the input window (bias) and the firing window
    order = membrane_order(hw, piece)
    dut = Core(hw, piece)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.step, step)
        ctx.set(dut.fire, 1)
        done = []
        for _ in range(11):
            done.append(ctx.get(dut.f_done))
            await ctx.tick()
            ctx.set(dut.fire, 0)
        seen["f_done"] = done
        flat = []
        for w in range(64 // lanes):
            ctx.set(dut.dbg_maddr, w)
            word = ctx.get(dut.dbg_v)
            for lane in range(lanes):
                x = (word >> (lane * VB)) & ((1 << VB) - 1)
                flat.append(x - (1 << VB) if x >> (VB - 1) else x)
        v = np.zeros(n, np.int64)
        v[order[order >= 0]] = np.asarray(flat)[order >= 0]
        seen["v"] = v
        ctx.set(dut.dbg_haddr, step % hw.core.spike_history_steps)
        seen["spikes"] = [(ctx.get(dut.dbg_h) >> j) & 1 for j in range(64)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    v = params[:, 2] + params[:, 1]
    s = v >= params[:, 0]
    assert 0 < s.sum() < n
    assert seen["f_done"] == [0] * 9 + [1, 1]
    assert seen["v"].tolist() == (v - params[:, 0] * s).tolist()
    assert seen["spikes"] == s.astype(int).tolist() + [0] * (64 - n)


def test_a_conv_event_on_a_channel_block_that_is_not_a_multiple_of_lanes():
    """6 output channels on 4 lanes (two groups, the second half used), 3 x 3 tile, 3 x 3 kernel,
    padding 1: a spike at the centre reaches all 9 positions, one at a corner 4, each ``ceil(6/4) = 2``
    cycles; every channel of every reached position gets its own weight although a position's
    channels start at lane ``(pos * 6) mod 4``."""
    lanes, cb, side, k = 4, 6, 3, 3
    hw = HardwareConfig(
        array=ArrayConfig(1, 1),
        core=CoreConfig(axons=16, neurons=64, lanes=lanes, v_bits=VB, pipeline_cycles=3, input_fifo_events=8),
    )
    rng = np.random.default_rng(4)
    kernel = rng.integers(-20, 21, (cb, 1, k, k))
    groups = -(-cb // lanes)
    syn = np.zeros((k * k * groups, lanes), np.int64)
    for u in range(k):
        for v in range(k):
            for g in range(groups):
                for lane in range(lanes):
                    if g * lanes + lane < cb:
                        syn[(u * k + v) * groups + g, lane] = kernel[g * lanes + lane, 0, u, v]
    n = side * side * cb
    v0 = rng.integers(-30, 30, n)
    conv = SlotInit(SLOT_CODES["conv"], 0, 1, 0, 0, groups, (1, side, side), k, k, 1, 1)
    piece = PieceInit(
        kind=PIECE_CODES["neuron"],
        n=n,
        in_start=1,
        out_start=1,
        timesteps=4,
        first=0,
        slots=(conv,),
        synapse=syn,
        params=np.stack([np.full(n, 1000), np.zeros(n, np.int64), v0], axis=1),
        geometry={"c0": 0, "c1": cb, "y0": 0, "y1": side, "x0": 0, "x1": side},
    )
    events = [(0, 4), (0, 0)]  # source (0, 1, 1): 9 positions; (0, 0, 0): 4
    seen = run_events(hw, piece, events)
    v = v0.reshape(side * side, cb).copy()
    reached = 0
    for s in (4, 0):
        y, x = divmod(s, side)
        for oy in range(side):
            for ox in range(side):
                u, w = y - oy + 1, x - ox + 1
                if 0 <= u < k and 0 <= w < k:
                    v[oy * side + ox] += kernel[:, 0, u, w]
                    reached += 1
    assert reached == 9 + 4
    assert seen["last_end"] == 1 + reached * groups and seen["busy"] == reached * groups
    assert seen["v"].tolist() == v.reshape(-1).tolist()


@settings(max_examples=40, deadline=None)
@given(
    ni=st.integers(1, 6),
    nj=st.integers(1, 6),
    nc=st.integers(1, 6),
    lanes=st.sampled_from([1, 2, 4, 16]),
    base=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_the_operand_and_index_tables_hold_any_permutation_of_sources_and_neurons(
    ni, nj, nc, lanes, base, stride, seed
):
    """Any operand tables (sources ``base + stride * k`` in any order) and any numbering of the
    neurons: every entry of :func:`operand_words` and :func:`index_words` decodes back to the source's
    ``(row, col)`` and the neuron's offset from ``first`` (zeros at offsets no source names), packed
    :func:`entries_per_word` to a word, the words no wider than the memory's."""
    rng = np.random.default_rng(seed)
    hw = HardwareConfig(array=ArrayConfig(1, 1), core=CoreConfig(neurons=64, lanes=lanes, axons=64, v_bits=VB))
    piece = product_piece(ni, nj, nc, 64, lanes)
    pa, pb = rng.permutation(ni * nc), rng.permutation(nc * nj)
    a = {base[0] + stride * int(k): (i, c) for k, (i, c) in zip(pa, [(i, c) for i in range(ni) for c in range(nc)])}
    b = {base[1] + stride * int(k): (c, j) for k, (c, j) in zip(pb, [(c, j) for c in range(nc) for j in range(nj)])}
    neurons = tuple(int(v) for v in 100 + rng.permutation(ni * nj) * stride)
    first = neurons[0]
    piece = dataclasses.replace(piece, operands=(a, b), neurons=neurons, first=first)
    f = operand_field_bits(hw)
    per = entries_per_word(hw, 4 * f)
    words = operand_words(hw, piece)
    assert all(w < 1 << operand_word_bits(hw) for w in words)
    lo = (min(a), min(b))
    for side, table in enumerate((a, b)):
        for off in range(len(words) * per):
            entry = words[off // per] >> (4 * f * (off % per) + 2 * f * side) & ((1 << 2 * f) - 1)
            want = table.get(lo[side] + off, (0, 0))
            assert (entry & ((1 << f) - 1), entry >> f) == want
    iper = entries_per_word(hw, INDEX_BITS)
    idx = index_words(hw, piece)
    assert len(idx) == -(-len(neurons) // iper) and all(w < 1 << index_word_bits(hw) for w in idx)
    got = [idx[j // iper] >> (INDEX_BITS * (j % iper)) & ((1 << INDEX_BITS) - 1) for j in range(len(neurons))]
    assert [(first + g) % (1 << INDEX_BITS) for g in got] == list(neurons)


@pytest.mark.parametrize("hardware", ["configs/array-4x4.toml", "configs/array-1x1.toml"])
def test_a_pieces_dram_image_counts_the_index_tables_the_rtl_loads(hardware):
    """Section 7: a piece fed by a product loads its operand table (one entry of four fields per
    source index in the larger operand span) and, where an encoder reads it (swap, not rounds),
    its neuron index table (24 bits per neuron) with its image. Counted from the RTL's own tables
    (``piece_init``'s operand dicts, the words of ``operand_words`` and ``index_words``)."""
    from spikeforge.mapping import compile
    from spikeforge.mapping.hardware import load_hardware
    from spikeforge.mapping.images import index_table_bits
    from spikeforge.rtl.piece import piece_init
    from spikeforge.workflow import graph_for

    program = compile(graph_for("tiny-digits"), load_hardware(hardware))
    hw, mode = program.hardware, program.plan.mode
    f = operand_field_bits(hw)
    fed = [p for p in program.pieces if program.has_product(p)]
    assert len(fed) == 8 and mode == {"configs/array-4x4.toml": "swap", "configs/array-1x1.toml": "rounds"}[hardware]
    for p in fed:
        init = piece_init(program, p.id)
        span = max(max(t) - min(t) + 1 for t in init.operands)
        bits = span * 4 * f + (len(init.neurons) * INDEX_BITS if mode == "swap" else 0)
        assert index_table_bits(program.graph, p, hw, encoder=mode == "swap") == bits
        # the RTL's memories hold exactly those entries, packed entries_per_word to a word
        assert len(operand_words(hw, init)) == -(-span // entries_per_word(hw, 4 * f))
        assert len(index_words(hw, init)) == -(-len(init.neurons) // entries_per_word(hw, INDEX_BITS))
        routing = program.routing.get(p.id)
        rest = program.synapse_bits(p) + program.param_words(p) * 3 * hw.core.v_bits + len(p.slots) * 128
        rest += 0 if routing is None else len(routing.entries) * 64
        assert program.image_bytes(p) == -(-(rest + bits) // 8)
    others = [p for p in program.pieces if not program.has_product(p)]
    assert all(index_table_bits(program.graph, p, hw) == 0 for p in others)


def test_a_product_whose_operand_sources_span_more_than_the_table_is_refused_with_a_sentence():
    """Operand ``a`` names ``q`` neurons 0 and 150, ``b`` ``k`` neurons 3 and 190: the tables span 151 and
    188 source indices, more than the 64 entries a core of 16 axons, 16 neurons and 4 lanes holds."""
    from spikeforge.models.graph import (
        DenseProjection,
        InputPopulation,
        NeuronPopulation,
        OutputPopulation,
        ProductProjection,
        SNNGraph,
    )
    from spikeforge.rtl import RtlError
    from spikeforge.rtl.piece import piece_init
    from spikeforge.rtl.scenarios import dense_program

    def neurons(name, n, threshold):
        return NeuronPopulation(name, (n,), threshold=np.full(n, threshold), bias=np.zeros(n, int), v0=np.zeros(n, int))

    pops = (
        InputPopulation("in", (4,), value_bits=4),
        neurons("q", 200, 50),
        neurons("k", 200, 50),
        neurons("att", 1, 5),
        OutputPopulation("out", (2,), bias=np.zeros(2, int)),
    )
    projs = (
        DenseProjection("in", "q", np.ones((200, 4), int)),
        DenseProjection("in", "k", np.ones((200, 4), int)),
        ProductProjection("q", "k", "att", np.array([[[0, 150]]]), np.array([[[3], [190]]]), np.array([[[0]]])),
        DenseProjection("att", "out", np.ones((2, 1), int)),
    )
    program = dense_program(SNNGraph(pops, projs, timesteps=2), 2, 8, neurons=16, lanes=4, axons=16)
    pid = next(p.id for p in program.pieces if p.kind == "product")
    with pytest.raises(RtlError, match=r"piece \d+ \('att'\) .* span 188 indices; .* \(64\): number the operands"):
        piece_init(program, pid)
