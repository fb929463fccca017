"""``rounds`` mode in the RTL (``docs/architecture.md`` section 7): every core runs its pieces in turn.

A program in ``rounds`` mode has more pieces live at once than the array has cores. At every step
each core position runs the rounds of its timeline (``Program.plan.timeline``) whose piece is in
its round window (``Program.round_steps``), one after another, through one DRAM channel:

1. *load* (``b_in`` bytes of ``Program.round_traffic``): the DMA engine walks the round's
   descriptors, ``RoundsPlan.ports`` per cycle from the grant: the piece's register values (into its
   context's registers, ``Core(..., cfg_ports=ports)``), the synapse words the piece uses, its
   parameter words, an ``mbe`` piece's table words (section 4.5), its state (membranes, a max-pool's window
   maxima, an ``mbe`` piece's ``X`` and basis blocks, as written back at its last round, ``v0``
   before the first; a product's or a spiking max-pool's running-count words after them, into the
   synapse SRAM where the core keeps them, or a graded product's or max-pool's running payload
   sums, into the sums memory; an ``mbe`` piece's shift words) and, per slot whose source emitted
   in its window at ``t - 1 - delay``, the words of the source's rows (spike bits, or ``v_bits``
   payloads of MBE units and graded max-pools, from the DRAM rows the source's pieces wrote back at
   that step) or of the host's input values (written by the host before the run) that hold the
   slot's sources. They go into the core's memories and into the piece's *feeder*: one pending bit
   (and, for payload and host words, one value) per source the slot needs;
2. *integrate*: from the cycle before the transfer ends, the feeder hands the core's event FIFO one
   event per cycle (the lowest pending position: its slot, global source index, and a payload or
   host value as a graded payload), so the core (:class:`~spikeforge.rtl.core.Core`, one context per
   piece structure on shared memories as in :mod:`~spikeforge.rtl.swap`, its registers written by
   the load) pops them back to back from the
   cycle the transfer ends; its ``i_done`` (``pipeline_cycles`` after the last event) starts
   phase F in the same cycle, and its ``f_done`` (its phase-F cycles later: ``ceil(n/lanes)``, an
   ``mbe`` piece's passes, a graded max-pool's ``kernel**2`` per group) makes the write-back
   request. A slice split into partial chunks runs 1. and 2. for its root, then for each chunk
   whose window holds the step (piece order; each load one request, made in the cycle the previous
   piece's ``i_done`` rises); a chunk's context adds its events into the root's accumulators (the
   shared membrane SRAM), and after the last piece the root's context fires;
3. *write back* (``b_out`` bytes; a split slice's pieces' together): one cycle after the grant,
   ``RoundsPlan.ports`` words per cycle, the membrane words, the count or payload-sum words, the shift words and
   (for a neuron, product, max-pool or ``mbe`` piece) its row of step ``t`` (``n`` spike bits or
   ``v_bits`` payloads, zero when it did not emit at ``t``) into the DRAM.

The channel serves one transfer of ``b`` bytes at a time, ``dram_latency_cycles + ceil(b /
dram_bytes_per_cycle)`` cycles, requests in the order they are made (simultaneous ones: lower core
first). The step ends when every core's last write-back has ended; ``done`` rises
``barrier_cycles`` later. No flit crosses a router and no encoder runs. The DRAM's contents are
the state at each barrier (section 8): the bench reads them through ``dbg_daddr``/``dbg_ddata``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig, Program
from spikeforge.mapping.connectivity import slot_sources
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES
from spikeforge.mapping.pieces import mbe_shifts

from .barrier import BarrierUnit
from .core import (
    CYCLE_BITS,
    SHIFT_BITS,
    STEP_BITS,
    TYPE_GRADED,
    TYPE_SPIKE,
    Core,
    banked_membrane,
    count_words,
    hist_bits,
    memory_words,
    sum_words,
)
from .errors import RtlError
from .memories import operand_word_bits
from .piece import REGISTER_BITS, PieceInit, check_hardware, piece_init, register_addresses, register_values
from .sequencer import Sequencer
from .swap import context_families, context_layouts, context_of, dma_ports

__all__ = [
    "RoundsPlan",
    "RoundUnit",
    "rounds_plan",
    "RoundsArray",
    "SEL_SYNAPSE",
    "SEL_PARAMS",
    "SEL_MEMBRANE",
    "SEL_SPIKES",
    "SEL_HOST",
    "SEL_SUMS",
    "SEL_LUT",
    "SEL_SHIFT",
    "SEL_REGS",
    "SEL_OPS",
    "SEL_FIELD_BITS",
]

#: Descriptor targets: a core memory, or the feeder (a source's spike or payload word, a word of
#: host values); then the running payload sums, an MBE piece's table words and its shift words;
#: then one register of the round's context (:func:`~spikeforge.rtl.piece.register_values`); then a
#: word of a product's operand index tables (:func:`~spikeforge.rtl.memories.operand_words`), in a
#: ``SEL_FIELD_BITS`` field of the descriptor. (No encoder runs in rounds mode, so a piece fed by a
#: product loads no neuron index table.)
SEL_SYNAPSE, SEL_PARAMS, SEL_MEMBRANE, SEL_SPIKES, SEL_HOST, SEL_SUMS, SEL_LUT, SEL_SHIFT, SEL_REGS, SEL_OPS = range(10)
SEL_FIELD_BITS = 4
#: Piece kinds whose rounds write a spike row (MBE units, graded max-pools: a payload row) back.
SPIKING = ("neuron", "maxpool", "product", "mbe")


@dataclass
class RoundUnit:
    """One round of a core: its piece, round window ``lo <= t < hi``, DMA descriptors and feeder.

    ``load``: descriptors ``(sel, target, dram address, delay, window lo, window hi)``, the piece's
    registers first (``SEL_REGS``: ``target`` is the register's index in
    :func:`~spikeforge.rtl.piece.register_values`, written into the round's ``context``). A synapse
    descriptor writes ``delay`` (reused as a count) consecutive synapse words from ``target`` on; a
    spike descriptor adds ``(t - 1 - delay) << spike_shift`` to the address; spike and host words
    are read only when ``t - 1 - delay`` is in the source's firing window ``[window lo, window hi)``
    (``target``: the feeder chunk). ``chunks[c] = (first, count)``: the feeder positions the
    ``c``-th spike or host word fills; ``feed[e] = (slot, global source index, graded, bit)``:
    position ``e``'s event and its bit (spike words) or value (host and payload words, ``bit``-th
    ``v_bits`` value) in the word. ``n_wb``: words written back (``n_mem`` membrane words,
    ``n_count`` running-count or payload-sum words, ``n_shift`` shift words, then the row of
    ``row_bits`` per unit). ``root``: for a partial chunk, its root's piece (the chunk's round
    continues the root's: no parameters, no state, no write-back of its own); -1 for a slice's root.
    """

    piece: int
    init: PieceInit
    lo: int
    hi: int
    load: list[tuple[int, int, int, int, int, int]]
    chunks: list[tuple[int, int]]
    feed: list[tuple[int, int, int, int]]
    load_bytes: int
    wb_bytes: int
    load_cycles: int
    wb_cycles: int
    n_wb: int
    n_count: int  # product and max-pool pieces: running-count words, written back after the membranes
    banked: bool  # membranes in lane banks (products, conv blocks not a multiple of the lanes)
    state_base: int
    spike_base: int  # -1: the piece emits no spikes (output pieces)
    n_mem: int = 0  # membrane words: ceil(n/lanes), (N + 1) * ceil(n/lanes) for an mbe piece (4.5)
    n_shift: int = 0  # an mbe piece's shift words (lanes SHIFT_BITS shifts each), after the counts
    row_bits: int = 1  # bits per unit of its row: 1 (a spike), v_bits (a payload)
    graded_sums: bool = False  # its running sums are v_bits payload sums (the sums memory)
    n_lut: int = 0  # an mbe piece's table words (its image, loaded into the table memory)
    n_ops: int = 0  # a piece fed by a product: its operand table words (its image, section 4.3)
    root: int = -1  # a partial chunk: its root piece, whose round it continues (-1: a slice's root)
    #: the core's context the round runs in: rounds of pieces with equal structure keys share one
    #: (``rtl.swap.context_of``), its registers written by the round's SEL_REGS descriptors
    context: int = 0


@dataclass
class RoundsPlan:
    """What the rounds-mode array is generated from: each core's rounds in timeline order and the DRAM.

    ``dram``: the DRAM's initial words of ``width`` bits (images, then state: membranes, counts or
    payload sums, shift words; then zeroed spike and payload rows, then the host's input words,
    which the host writes before the run). Synapse words are packed ``syn_per_word`` to a DRAM word
    (lane group 0 low), rows ``width`` bits per word (local unit 0 lowest, 1 or ``v_bits`` bits per
    unit), host values ``host_per_word`` of ``v_bits`` per word; parameter, table, membrane, sum
    and shift words one per DRAM word. ``state_base[p]`` and ``spike_base[p]``: where piece ``p``'s
    membranes and spike rows lie (a ring: the row of step ``t`` at ``spike_base[p] + ((t mod 2^ring_shift)
    << spike_shift)``, ``2^ring_shift`` at least the largest delay + 2, so no row is overwritten before
    its last reader has read it);
    ``host_base`` and ``host_words`` the input's words. ``ports``: the descriptors a load and the
    words a write-back move per cycle (one DRAM port and one port on each core memory each), the
    fewest with which every round's fit its transfer (``rtl.swap.dma_ports``).
    """

    units: dict[int, list[RoundUnit]]
    dram: list[int] = field(default_factory=list)
    width: int = 1
    syn_per_word: int = 1
    host_per_word: int = 1
    spike_shift: int = 0
    #: a piece's rows are a ring of ``1 << ring_shift`` steps, at least its readers' largest delay + 2
    ring_shift: int = 1
    state_base: dict[int, int] = field(default_factory=dict)
    spike_base: dict[int, int] = field(default_factory=dict)
    host_base: int = 0
    host_words: int = 0
    steps: int = 0
    ports: int = 1  # descriptors (loads) and words (write-backs) the DMA engine moves per cycle


def _refuse(program: Program, pid: int) -> None:
    """What the rounds-mode RTL does not run, one sentence each."""
    piece = program.pieces[pid]
    chunks = [p for p in program.pieces if p.kind == "partial" and p.root == pid]
    if chunks and piece.kind not in ("neuron", "output", "mbe"):
        # mapping/pieces.py sizes max-pool and product slices (mbe and output units fed by a product too)
        # to fit one core and never gives them chunks, so only a program not made by compile() gets here
        raise RtlError(
            f"piece {pid} ({piece.population!r}, kind {piece.kind!r}) is split into partial chunks; the compiler "
            "(mapping/pieces.py) splits the fan-ins of neuron, output and mbe slices only, and the rounds-mode RTL "
            "adds chunks into the accumulators of those only, so it does not run it."
        )
    w = program.round_steps(piece)
    for q in chunks:
        cw = program.round_steps(q)
        if not (w.start <= cw.start and cw.stop <= w.stop):
            raise RtlError(
                f"partial piece {q.id} ({q.population!r}) runs rounds at steps {cw.start}..{cw.stop - 1}, outside "
                f"its root's {w.start}..{w.stop - 1}; the rounds-mode RTL loads a slice's chunks after its root, "
                "so it does not run it."
            )
    # every other piece kind (neuron, output, max-pool, product, mbe), partial chunks of neuron, output
    # and mbe slices (into whole-word X: an mbe slice with chunks is never fed by a product), and every
    # source population (the host, spikes, MBE and graded max-pool payloads)
    # run in rounds


def rounds_plan(program: Program, latency_delta: int = 0) -> RoundsPlan:
    """The rounds-mode array of ``program``: each core's rounds, their descriptors and the DRAM image.

    ``latency_delta`` (test hook, 0 in generated hardware) adds cycles to every transfer: a DRAM
    channel whose latency differs from the hardware file's.

    Raises
    ------
    RtlError
        When the program is not in rounds mode, when a piece is of a kind the rounds-mode RTL does
        not run, or when a round's descriptors or write-back words would need more than
        ``rtl.swap.MAX_DMA_PORTS`` per cycle to fit its transfer.
    """
    hw = program.hardware
    check_hardware(hw)
    if program.plan.mode != "rounds":
        raise RtlError(f"rounds_plan needs a program in 'rounds' mode; this one is {program.plan.mode!r}.")
    c, mem = hw.core, hw.memory
    lanes, vb = c.lanes, c.v_bits
    graph = program.graph
    sched = graph.schedule()
    T = graph.timesteps
    steps = graph.total_steps
    # a slice's round loads its root, then its partial chunks in piece order (section 7)
    members = {
        pid: [pid] + [p.id for p in program.pieces if p.kind == "partial" and p.root == pid]
        for tl in program.plan.timeline
        for pid in tl
    }
    for pid in sorted(members):  # the first piece in program order is named
        _refuse(program, pid)
    used = [q for tl in program.plan.timeline for pid in tl for q in members[pid]]
    inits = {pid: piece_init(program, pid) for pid in used}
    has_mbe = any(p.kind == PIECE_CODES["mbe"] for p in inits.values())
    # a DRAM word holds a synapse word, a parameter word, a membrane or sum word, (MBE) a table row
    # and a register value
    has_ops = any(p.operands[0] for p in inits.values())  # a product's operand tables (section 4.3)
    width = max(
        lanes * c.weight_bits,
        lanes * 2 * vb,
        lanes * vb,
        3 * vb if has_mbe else 0,
        operand_word_bits(hw) if has_ops else 0,
        REGISTER_BITS,
    )
    plan = RoundsPlan({}, width=width, syn_per_word=width // (lanes * c.weight_bits), host_per_word=width // vb)
    # a row is `neurons` spikes, or `neurons` payloads of v_bits on an MBE core (hist_bits)
    plan.spike_shift = max(0, (-(-c.neurons * hist_bits(hw) // width) - 1).bit_length())
    plan.steps = steps
    # a row of step t is read at steps t + 1 + delay (section 4.1): a ring of max delay + 2 rows, a
    # power of two (the address takes the step's low bits), keeps each until its last reader
    delays = [
        int(getattr(pr, a)) for pr in graph.projections for a in ("delay", "delay_a", "delay_b") if hasattr(pr, a)
    ]
    plan.ring_shift = (max(delays, default=0) + 1).bit_length()
    spm = plan.syn_per_word
    # state after the membranes: a product's or a max-pool's running counts or payload sums (sections
    # 4.3, 4.4), an MBE piece's shift words (4.5), as the simulator's round bytes count them
    ncount = {pid: _count_words(hw, p) for pid, p in inits.items()}
    # a partial chunk keeps no membranes (Program.state_words): its sums are added into its root's
    nmem = {
        pid: 0 if p.kind == PIECE_CODES["partial"] else (p.bases + 1) * -(-p.n // lanes) for pid, p in inits.items()
    }
    nshift = {
        pid: -(-p.n // lanes) if p.kind == PIECE_CODES["mbe"] and mbe_shifts(graph.population(p.population)) else 0
        for pid, p in inits.items()
    }
    # the DRAM: images, then state, then spike and payload rows, then the host's input words
    image_base: dict[int, tuple[int, int, int, int]] = {}
    words: list[int] = []
    mwords: dict[int, dict[str, list[int]]] = {}
    sbits = lanes * c.weight_bits
    for pid in used:
        p = inits[pid]
        mw = {name: w for name, w, _ in memory_words(hw, p)}
        mwords[pid] = mw
        groups = -(-p.n // lanes)
        # a piece with payload sums keeps no weights in the synapse SRAM: its sums are its state
        syn = [] if p.graded_sums else mw["synapse"][: len(p.synapse)]
        packed = [sum(w << (i * sbits) for i, w in enumerate(syn[r : r + spm])) for r in range(0, len(syn), spm)]
        # a partial chunk never fires: it needs no parameters (its root's stay in the parameter SRAM)
        params = [] if p.kind == PIECE_CODES["partial"] else mw["params"][:groups]
        # the image starts with the piece's register values (two's complement, one a word)
        regs = [v & ((1 << REGISTER_BITS) - 1) for v in register_values(p)]
        syn0 = len(words) + len(regs)
        image_base[pid] = (len(words), syn0, syn0 + len(packed), syn0 + len(packed) + len(params))
        words += regs + packed + params + mw.get("lut", []) + mw.get("operands", [])
    for pid in used:
        if inits[pid].kind == PIECE_CODES["partial"]:
            continue  # no state of its own: its events go into the root's accumulators (below)
        plan.state_base[pid] = len(words)
        sums = mwords[pid]["synapse"][: ncount[pid]] if inits[pid].graded_sums else [0] * ncount[pid]
        words += mwords[pid]["membrane"][: nmem[pid]] + sums + [0] * nshift[pid]
    for pid in used:
        if program.pieces[pid].kind in SPIKING:
            plan.spike_base[pid] = len(words)
            words += [0] * ((1 << plan.ring_shift) << plan.spike_shift)
    inp = graph.input
    hpw = plan.host_per_word
    plan.host_base, plan.host_words = len(words), -(-inp.size // hpw)
    words += [0] * plan.host_words
    plan.dram = words
    transfers = []  # (what, DRAM words, cycles) of every round's load and write-back
    for k, timeline in enumerate(program.plan.timeline):
        if not timeline:
            continue
        plan.units[k] = []
        order = [q for root in timeline for q in members[root]]
        ctx_of = context_of([inits[q] for q in order])
        layouts = context_layouts([inits[q] for q in order])
        for j_unit, pid in enumerate(order):
            piece, p = program.pieces[pid], inits[pid]
            chunk = piece.kind == "partial"
            groups = -(-p.n // lanes)
            reg0, syn0, par0, lut0 = image_base[pid]
            nsyn = 0 if p.graded_sums else len(p.synapse)
            nlut = len(mwords[pid].get("lut", []))
            nops = len(mwords[pid].get("operands", []))
            base = plan.state_base.get(pid, 0)
            # the registers first: written in the load's first cycles, long before the core starts
            # each register to its address in the context's layout (it may hold more slots and entries)
            addrs = register_addresses(p, layouts[ctx_of[j_unit]])
            load = [(SEL_REGS, a, reg0 + i, 0, 0, 0) for i, a in enumerate(addrs)]
            load += [(SEL_SYNAPSE, r * spm, syn0 + r, min(spm, nsyn - r * spm), 0, 0) for r in range(-(-nsyn // spm))]
            load += [(SEL_PARAMS, a, par0 + a, 0, 0, 0) for a in range(0 if chunk else groups)]
            load += [(SEL_LUT, a, lut0 + a, 0, 0, 0) for a in range(nlut)]
            load += [(SEL_OPS, a, lut0 + nlut + a, 0, 0, 0) for a in range(nops)]
            load += [(SEL_MEMBRANE, a, base + a, 0, 0, 0) for a in range(nmem[pid])]
            base += nmem[pid]
            if p.graded_sums:
                load += [(SEL_SUMS, a, base + a, 0, 0, 0) for a in range(ncount[pid])]
            else:
                load += [(SEL_SYNAPSE, a, base + a, 1, 0, 0) for a in range(ncount[pid])]
            base += ncount[pid]
            load += [(SEL_SHIFT, a, base + a, 0, 0, 0) for a in range(nshift[pid])]
            chunks: list[tuple[int, int]] = []
            feed: list[tuple[int, int, int, int]] = []
            for k_slot, s in enumerate(piece.slots):
                proj = graph.projections[s.proj]
                delay = {"product_a": "delay_a", "product_b": "delay_b"}.get(s.kind, "delay")
                delay = int(getattr(proj, delay))
                need = {int(v) for v in slot_sources(graph, piece, s)}
                src = graph.population(s.src)
                host = src.kind == "input"
                # payloads (host values, MBE units, graded max-pools) are v_bits values, spikes bits
                graded = host or _payloads(graph, s.src)
                w0 = 0 if host else sched[s.src].out_start
                per = hpw if graded else width  # sources per DRAM word
                holders = (
                    [(-1, np.arange(inp.size))]
                    if host
                    # a source's rows are its spiking pieces' (its partial chunks emit nothing)
                    else [(q.id, q.neurons) for q in program.pieces if q.population == s.src and q.kind != "partial"]
                )
                for qid, neurons in holders:
                    for g in range(-(-len(neurons) // per)):
                        hits = [
                            (k_slot, int(neurons[j]), int(graded), j - g * per)
                            for j in range(g * per, min(len(neurons), g * per + per))
                            if int(neurons[j]) in need
                        ]
                        if not hits:
                            continue
                        addr = plan.host_base + g if host else plan.spike_base[qid] + g
                        load.append((SEL_HOST if host else SEL_SPIKES, len(chunks), addr, delay, w0, w0 + T))
                        chunks.append((len(feed), len(hits)))
                        feed += hits
            b_in, _ = program.round_traffic(piece)
            # the slice writes back once, its pieces' bytes together (a chunk's: none, it has no state)
            b_out = 0 if chunk else sum(program.round_traffic(program.pieces[q])[1] for q in members[pid])
            dl = mem.dram_latency_cycles + -(-b_in // mem.dram_bytes_per_cycle) + int(latency_delta)
            dw = mem.dram_latency_cycles + -(-b_out // mem.dram_bytes_per_cycle) + int(latency_delta)
            row_bits = vb if _payloads(graph, p.population) else 1
            n_row = -(-p.n * row_bits // width) if piece.kind in SPIKING else 0
            n_wb = 0 if chunk else nmem[pid] + ncount[pid] + nshift[pid] + n_row
            transfers.append((f"a round of piece {pid} ({p.population!r}) reads", len(load), dl))
            transfers.append((f"a round of piece {pid} ({p.population!r}) writes back", n_wb, dw))
            w = program.round_steps(piece)
            plan.units[k].append(
                RoundUnit(
                    piece=pid,
                    init=p,
                    lo=w.start,
                    hi=w.stop,
                    load=load,
                    chunks=chunks,
                    feed=feed,
                    load_bytes=b_in,
                    wb_bytes=b_out,
                    load_cycles=dl,
                    wb_cycles=dw,
                    n_wb=n_wb,
                    n_count=ncount[pid],
                    # mbe and output units fed by a product keep their membranes in the banks too (4.3)
                    banked=banked_membrane(hw, p) or any(sl.kind == SLOT_CODES["product_a"] for sl in p.slots),
                    state_base=plan.state_base.get(pid, 0),
                    spike_base=plan.spike_base.get(pid, -1),
                    n_mem=nmem[pid],
                    n_shift=nshift[pid],
                    row_bits=row_bits,
                    graded_sums=p.graded_sums,
                    n_lut=nlut,
                    n_ops=nops,
                    root=piece.root if chunk else -1,
                    context=ctx_of[j_unit],
                )
            )
    plan.ports = dma_ports(transfers, mem.dram_latency_cycles)
    return plan


def _payloads(graph, population: str) -> bool:
    """Whether a population's rows hold ``v_bits`` payloads (MBE units, max-pools of payloads)."""
    pop = graph.population(population)
    return pop.kind == "mbe" or (pop.kind == "maxpool" and graph.graded(population))


def _count_words(hw: HardwareConfig, p: PieceInit) -> int:
    """Synapse words of a piece's running counts: a product's (``rtl.core.count_words``), a spiking
    max-pool's (``kernel**2 * ceil(n/lanes)``: count ``w`` of output ``j`` in word ``w * ceil(n/lanes)
    + j // lanes``, section 4.4); a piece with running payload sums: its ``rtl.core.sum_words`` words of
    ``lanes`` ``v_bits`` sums; 0 for other pieces."""
    lanes = hw.core.lanes
    if p.graded_sums:
        return sum_words(hw, p)
    if p.kind == PIECE_CODES["maxpool"]:
        return p.slots[0].kernel ** 2 * -(-p.n // lanes)
    if p.kind != PIECE_CODES["product"]:
        return 0
    g = p.geometry
    return count_words(g["i1"] - g["i0"], g["j1"] - g["j0"], p.contraction, lanes)


def _lowest(m: Module, bits: Signal, name: str) -> Signal:
    """Index of the lowest set bit of ``bits`` (0 when none)."""
    sel = Signal(range(max(2, len(bits))), name=name)
    for e in reversed(range(len(bits))):
        with m.If(bits[e]):
            m.d.comb += sel.eq(e)
    return sel


class RoundsArray(wiring.Component):
    """The rounds-mode array: per core position one :class:`~spikeforge.rtl.core.Core` context per
    piece structure of its timeline (``RoundUnit.context``) on shared memories, its registers written
    by each round's load, a feeder per piece, and the DMA engine with the DRAM.

    Ports: ``go`` (run the inference: the :class:`~spikeforge.rtl.sequencer.Sequencer` starts step 0
    in this cycle and each next step in the cycle ``done`` rises), ``step``, ``phase`` (``PH_ROUNDS``
    while a step runs), ``running``, ``finished``, ``done`` (the last write-back of the step ended
    ``barrier_cycles`` ago; the next step's cycle 0), the host's DRAM write port (``hw_en``,
    ``hw_addr``, ``hw_data``: the input words, before the run), the DRAM read port of the bench
    (``dbg_daddr`` -> ``dbg_ddata``, combinational) and the busy cycles of the step of core
    ``dbg_core`` (``dbg_busy``: cycles its rounds integrate and fire, ``pipeline_cycles`` included,
    as the simulator counts them in rounds mode).

    ``dram_flip = (word, bit)`` (test hook) flips a bit of the DRAM's initial contents;
    ``wb_flip = (piece, bit)`` or ``(piece, bit, word)`` flips a bit of the word (default 0, the
    first membrane word; then the running-count or payload-sum words, the shift words, then the row)
    the piece writes back at every round; ``late_phase`` (test hook) starts each step that many
    cycles after ``done`` rises.
    """

    def __init__(
        self,
        hw: HardwareConfig,
        plan: RoundsPlan,
        *,
        dram_flip: tuple[int, int] | None = None,
        wb_flip: tuple[int, ...] | None = None,
        late_phase: int = 0,
    ) -> None:
        check_hardware(hw)
        self.hw, self.plan = hw, plan
        self.dram_flip, self.wb_flip = dram_flip, wb_flip
        self.sequencer = Sequencer(plan.steps, rounds=True, late=late_phase)
        depth = max(1, len(plan.dram))
        super().__init__(
            {
                "go": In(1),
                "step": Out(STEP_BITS),
                "phase": Out(3),
                "running": Out(1),
                "finished": Out(1),
                "done": Out(1),
                "hw_en": In(1),
                "hw_addr": In(range(depth)),
                "hw_data": In(plan.width),
                "dbg_daddr": In(range(depth)),
                "dbg_ddata": Out(plan.width),
                "dbg_core": In(index_bits(hw.array.cores)),
                "dbg_busy": Out(CYCLE_BITS),
            }
        )

    def elaborate(self, platform):
        m = Module()
        hw, plan = self.hw, self.plan
        c = hw.core
        lanes, vb, wb = c.lanes, c.v_bits, c.weight_bits
        gmax = c.neurons // lanes
        syn_words = max(1, c.axons * c.neurons // lanes)
        width = plan.width
        words = list(plan.dram) or [0]
        if self.dram_flip is not None:
            words[self.dram_flip[0]] ^= 1 << self.dram_flip[1]
        m.submodules.dram = dram = Memory(shape=unsigned(width), depth=len(words), init=words)
        R = plan.ports  # descriptors (loads) and words (write-backs) per cycle
        d_rds = [dram.read_port(domain="comb") for _ in range(R)]  # the channel's reads (a load's descriptors)
        d_wrs = [dram.write_port() for _ in range(R)]  # write-backs
        h_wr = dram.write_port()  # the host's input words, before the run
        d_dbg = dram.read_port(domain="comb")
        m.d.comb += [h_wr.addr.eq(self.hw_addr), h_wr.data.eq(self.hw_data), h_wr.en.eq(self.hw_en)]
        m.d.comb += [d_dbg.addr.eq(self.dbg_daddr), self.dbg_ddata.eq(d_dbg.data)]

        cores = sorted(plan.units)
        ncores = len(cores)
        m.submodules.sequencer = seq = self.sequencer
        start, step = seq.start, seq.step  # step `step`'s rounds run from its cycle 0 (`start`)
        m.d.comb += [
            seq.go.eq(self.go),
            seq.ready.eq(1),
            seq.plive.eq(0),  # partial sums move through DRAM: no phase P
            self.step.eq(seq.step),
            self.phase.eq(seq.phase),
            self.running.eq(seq.running),
            self.finished.eq(seq.finished),
        ]
        # the step's cycle counter: requests are stamped with the cycle they are made
        cyc = Signal(CYCLE_BITS)
        now = Signal(CYCLE_BITS)
        m.d.comb += now.eq(Mux(start, 0, cyc))
        m.d.sync += cyc.eq(now + 1)

        # the descriptor ROM: every round's load descriptors, concatenated
        descs = [d for k in cores for u in plan.units[k] for d in u.load] or [(0, 0, 0, 0, 0, 0)]
        descs += [(0, 0, 0, 0, 0, 0)] * (R - 1)  # read (never used) when a load's last cycle has fewer than R
        abits = index_bits(len(words))
        nchunk = max([len(u.chunks) for k in cores for u in plan.units[k]] + [1])
        # table targets: an mbe piece's table words, a product's operand table words
        nlut = max([max(u.n_lut, u.n_ops) for k in cores for u in plan.units[k]] + [1])
        nregs = max([d[1] + 1 for k in cores for u in plan.units[k] for d in u.load if d[0] == SEL_REGS] + [1])
        tbits = max(index_bits(syn_words), index_bits(nchunk), index_bits(nlut), index_bits(gmax), index_bits(nregs))
        fields = [SEL_FIELD_BITS, tbits, abits, STEP_BITS, STEP_BITS, STEP_BITS]
        def_w = sum(fields)

        def pack(d):
            w, sh = 0, 0
            for v, f in zip(d, fields):
                w |= int(v) << sh
                sh += f
            return w

        m.submodules.desc = drom = Memory(shape=unsigned(def_w), depth=len(descs), init=[pack(d) for d in descs])
        dscs = [drom.read_port(domain="comb") for _ in range(R)]
        first_desc, pos = {}, 0
        for k in cores:
            for j, u in enumerate(plan.units[k]):
                first_desc[k, j] = pos
                pos += len(u.load)

        # ---- the channel
        busy = Signal()
        who = Signal(range(max(2, ncores)))
        is_wb = Signal()  # the transfer under way is a write-back
        maxdur = max(
            [u.load_cycles for k in cores for u in plan.units[k]]
            + [u.wb_cycles for k in cores for u in plan.units[k]]
            + [1]
        )
        rem = Signal(range(maxdur + 1))
        rem_now = Signal.like(rem)
        m.d.comb += rem_now.eq(rem - 1)
        finishing = Signal()
        m.d.comb += finishing.eq(busy & (rem_now == 0))
        free = ~busy | finishing

        # ---- per core: its rounds' windows, state and requests
        ST_DONE, ST_REQ_LOAD, ST_LOAD, ST_RUN_I, ST_RUN_F, ST_REQ_WB, ST_WB = range(7)
        core_state = {}
        req, stamp_now, req_wb, req_unit = [], [], [], []
        idle_terms = []
        busy_count = {}
        for i, k in enumerate(cores):
            units = plan.units[k]
            nu = len(units)
            st = Signal(range(7), name=f"st_{k}", init=ST_DONE)
            u = Signal(range(max(2, nu)), name=f"u_{k}")
            stamp = Signal(CYCLE_BITS, name=f"stamp_{k}")
            active = [(step >= x.lo) & (step < x.hi) for x in units]
            first_u, has_first = Signal.like(u, name=f"first_{k}"), Signal(name=f"has_first_{k}")
            for j in reversed(range(nu)):
                with m.If(active[j]):
                    m.d.comb += [first_u.eq(j), has_first.eq(1)]
            # a slice's pieces are consecutive units, root first: after a write-back the next active
            # slice's root; after a piece's integration the next active chunk of its slice, if any
            roots = [
                j if x.root < 0 else next(r for r in range(j, -1, -1) if units[r].root < 0) for j, x in enumerate(units)
            ]
            root_now = Signal.like(u, name=f"root_{k}")
            m.d.comb += root_now.eq(Array(Const(r, len(u)) for r in roots)[u])
            after_u, has_after = Signal.like(u, name=f"after_{k}"), Signal(name=f"has_after_{k}")
            chunk_u, has_chunk = Signal.like(u, name=f"chunk_{k}"), Signal(name=f"has_chunk_{k}")
            for j in reversed(range(nu)):
                if units[j].root < 0:
                    with m.If(active[j] & (u < j)):
                        m.d.comb += [after_u.eq(j), has_after.eq(1)]
                else:
                    with m.If(active[j] & (u < j) & (root_now == roots[j])):
                        m.d.comb += [chunk_u.eq(j), has_chunk.eq(1)]
            mine = busy & (who == i)
            ld_finish = finishing & (who == i) & ~is_wb
            wb_finish = finishing & (who == i) & is_wb
            pre = mine & ~is_wb & (rem_now == 1)  # the cycle before the load ends: the feeder starts
            # the piece's context: start when its load ends, fire when phase I is done, write back when F is
            ctx_i_done = Signal(name=f"ctx_i_done_{k}")
            ctx_f_done = Signal(name=f"ctx_f_done_{k}")
            i_now = Signal(name=f"i_now_{k}")
            i_end = Signal(name=f"i_end_{k}")  # the piece's integration is done: load the next chunk, or fire
            chunk_now = Signal(name=f"chunk_now_{k}")
            fire_now = Signal(name=f"fire_now_{k}")
            f_now = Signal(name=f"f_now_{k}")
            wb_new = Signal(name=f"wb_new_{k}")
            ld_new = Signal(name=f"ld_new_{k}")
            m.d.comb += [
                i_now.eq(ld_finish | (st == ST_RUN_I)),
                i_end.eq(i_now & ctx_i_done),
                chunk_now.eq(i_end & has_chunk),
                fire_now.eq(i_end & ~has_chunk),
                f_now.eq(fire_now | (st == ST_RUN_F)),
                wb_new.eq(f_now & ctx_f_done),
                ld_new.eq(Mux(start, has_first, (wb_finish & has_after) | chunk_now)),
            ]
            r = Signal(name=f"req_{k}")
            rw = Signal(name=f"req_wb_{k}")
            ru = Signal.like(u, name=f"req_unit_{k}")
            rs = Signal(CYCLE_BITS, name=f"req_stamp_{k}")
            waiting = (st == ST_REQ_LOAD) | (st == ST_REQ_WB)
            m.d.comb += [
                r.eq((waiting & ~start) | ld_new | wb_new),
                rw.eq(Mux(waiting & ~start, st == ST_REQ_WB, wb_new)),
                # a load: the first round, the next chunk or the next slice; a write-back: the slice's root
                ru.eq(Mux(ld_new, Mux(start, first_u, Mux(chunk_now, chunk_u, after_u)), Mux(wb_new, root_now, u))),
                rs.eq(Mux(waiting & ~start, stamp, now)),
            ]
            req.append(r)
            req_wb.append(rw)
            req_unit.append(ru)
            stamp_now.append(rs)
            core_state[k] = dict(
                st=st,
                u=u,
                stamp=stamp,
                ld_finish=ld_finish,
                wb_finish=wb_finish,
                pre=pre,
                i_now=i_now,
                i_end=i_end,
                root_now=root_now,
                fire_now=fire_now,
                f_now=f_now,
                wb_new=wb_new,
                ld_new=ld_new,
                has_after=has_after,
                ctx_i_done=ctx_i_done,
                ctx_f_done=ctx_f_done,
            )
            idle_terms.append(Mux(start, ~has_first, ((st == ST_DONE) & ~ld_new) | (wb_finish & ~has_after)))
            bc = Signal(CYCLE_BITS, name=f"busy_{k}")
            # a chunk's integration ends in the cycle its successor's load is requested: not counted
            m.d.sync += bc.eq(Mux(start, 0, bc) + ((i_now | f_now) & ~wb_new & ~chunk_now))
            busy_count[k] = bc

        # ---- the arbiter: the oldest request, then the lowest core
        wins = []
        for i in range(ncores):
            w = req[i]
            for q in range(ncores):
                if q != i:
                    before = (stamp_now[i] < stamp_now[q]) | ((stamp_now[i] == stamp_now[q]) & Const(int(i < q)))
                    w = w & (~req[q] | before)
            win = Signal(name=f"win_{cores[i]}")
            m.d.comb += win.eq(w)
            wins.append(win)
        grant = Signal()
        m.d.comb += grant.eq(free & Cat(*wins).any() if wins else 0)
        g_dur = Signal.like(rem)
        g_n = Signal(range(len(descs) + max([u.n_wb for k in cores for u in plan.units[k]] + [0]) + 2))
        g_first = Signal(range(len(descs) + 1))
        for i, k in enumerate(cores):
            units = plan.units[k]
            with m.If(wins[i]):
                ju = req_unit[i]
                ld_dur = Array(Const(x.load_cycles, len(g_dur)) for x in units)[ju]
                wb_dur = Array(Const(x.wb_cycles, len(g_dur)) for x in units)[ju]
                ld_n = Array(Const(len(x.load), len(g_n)) for x in units)[ju]
                wb_n = Array(Const(x.n_wb, len(g_n)) for x in units)[ju]
                m.d.comb += [
                    g_dur.eq(Mux(req_wb[i], wb_dur, ld_dur)),
                    g_n.eq(Mux(req_wb[i], wb_n, ld_n)),
                    g_first.eq(Array(Const(first_desc[k, j], len(g_first)) for j in range(len(units)))[ju]),
                ]
        g_who = Signal.like(who)
        g_wb = Signal()
        for i in range(ncores):
            with m.If(wins[i]):
                m.d.comb += [g_who.eq(i), g_wb.eq(req_wb[i])]
        # per core state updates
        for i, k in enumerate(cores):
            s = core_state[k]
            st = s["st"]
            granted = grant & wins[i]
            with m.If(granted):
                m.d.sync += [st.eq(Mux(req_wb[i], ST_WB, ST_LOAD)), s["u"].eq(req_unit[i])]
            with m.Elif(req[i]):
                m.d.sync += [st.eq(Mux(req_wb[i], ST_REQ_WB, ST_REQ_LOAD)), s["u"].eq(req_unit[i])]
                m.d.sync += s["stamp"].eq(stamp_now[i])
            with m.Elif(s["f_now"]):
                m.d.sync += st.eq(ST_RUN_F)
            with m.Elif(s["i_now"]):
                m.d.sync += st.eq(ST_RUN_I)
            with m.Elif(s["wb_finish"] | start):
                m.d.sync += st.eq(ST_DONE)
        # the channel's transfer: descriptors (loads) or write-back words, R per cycle
        idx = Signal.like(g_n)  # next record of the transfer
        n_rec = Signal.like(g_n)
        first_r = Signal.like(g_first)
        wb_i = Signal.like(g_n)  # write-backs: the word written this cycle (one cycle after the grant)
        wb_on = Signal()
        with m.If(grant):
            m.d.sync += [busy.eq(1), who.eq(g_who), is_wb.eq(g_wb), rem.eq(g_dur), first_r.eq(g_first), n_rec.eq(g_n)]
            m.d.sync += [idx.eq(Mux(g_wb, 0, R)), wb_on.eq(g_wb & (g_n > 0)), wb_i.eq(0)]
        with m.Else():
            with m.If(finishing):
                m.d.sync += busy.eq(0)
            with m.Elif(busy):
                m.d.sync += rem.eq(rem_now)
            with m.If(busy & ~is_wb & (idx < n_rec)):
                m.d.sync += idx.eq(idx + R)
            with m.If(wb_on):
                m.d.sync += [wb_i.eq(wb_i + R), wb_on.eq(wb_i + R < n_rec)]
        # the load records of this cycle: the grant's first R, then R per cycle; record q of the
        # cycle is (sel, tgt, delay, en, data) in lds[q]
        ld_who = Mux(grant, g_who, who)
        lds = []
        for q, (dsc, d_rd) in enumerate(zip(dscs, d_rds)):
            ld_valid = Signal(name=f"ld_valid_{q}")
            m.d.comb += ld_valid.eq(Mux(grant, ~g_wb & (g_n > q), busy & ~is_wb & (idx + q < n_rec)))
            m.d.comb += dsc.addr.eq(Mux(grant, g_first, first_r + idx) + q)
            parts, off = [], 0
            for f in fields:
                parts.append(dsc.data[off : off + f])
                off += f
            sel, tgt, base, delay, wlo, whi = parts
            src_step = Signal(STEP_BITS + 1, name=f"src_step_{q}")
            m.d.comb += src_step.eq(step - 1 - delay)
            spk = sel == SEL_SPIKES
            gated = (sel == SEL_SPIKES) | (sel == SEL_HOST)
            in_win = (step >= delay + 1) & (src_step >= wlo) & (src_step < whi)
            ring_row = src_step[: plan.ring_shift]  # (t - 1 - delay) mod 2^ring_shift: the ring's row
            m.d.comb += d_rd.addr.eq(base + Mux(spk, ring_row << plan.spike_shift, 0))
            ld_en = Signal(name=f"ld_en_{q}")
            m.d.comb += ld_en.eq(ld_valid & (~gated | in_win))
            lds.append({"sel": sel, "tgt": tgt, "delay": delay, "en": ld_en, "data": d_rd.data})

        # ---- each core position: shared memories, one context and one feeder per round
        sbits = lanes * wb
        for i, k in enumerate(cores):
            s = core_state[k]
            units = plan.units[k]
            # membrane organisations its pieces use: lane banks and whole words (both when it holds both)
            orgs = {x.banked for x in units}
            shared = {
                "syn": Memory(shape=unsigned(sbits), depth=syn_words, init=[]),
                "par": Memory(shape=unsigned(lanes * 2 * vb), depth=gmax, init=[]),
                "hist": Memory(shape=unsigned(c.neurons * hist_bits(hw)), depth=c.spike_history_steps, init=[]),
            }
            # one history of hist_bits per unit serves spike rows and payload rows alike (the write-back
            # reads it masked to the piece's row bits); a Core context names the payload rows' `hist_g`
            shared["hist_g"] = shared["hist"]
            if True in orgs:
                shared["banks"] = [Memory(shape=unsigned(vb), depth=gmax, init=[]) for _ in range(lanes)]
            if False in orgs:
                shared["mem"] = Memory(shape=unsigned(lanes * vb), depth=gmax, init=[])
            # running payload sums in words of `lanes` v_bits sums: the synapse SRAM's bits, a memory of
            # that width beside the weight words (a departure from section 3 in area only, as for the banks)
            nsums = max([x.n_count for x in units if x.graded_sums] + [0])
            if nsums:
                shared["sums"] = Memory(shape=unsigned(lanes * vb), depth=nsums, init=[])
            # an mbe piece's table words (loaded as its image) and its shift words (loaded as state)
            if any(x.n_lut for x in units):
                shared["lut"] = Memory(shape=unsigned(3 * vb), depth=max(x.n_lut for x in units), init=[])
            if any(x.n_ops for x in units):  # a product's operand index tables (section 4.3)
                depth = max(x.n_ops for x in units)
                shared["operands"] = Memory(shape=unsigned(operand_word_bits(hw)), depth=depth, init=[])
            if any(x.n_shift for x in units):
                shared["shift"] = Memory(shape=unsigned(lanes * SHIFT_BITS), depth=gmax, init=[])
            # one context per piece structure (RoundUnit.context), built from its first round's piece;
            # each round's load rewrites its registers (only the running round's context is used)
            ctx_of = [x.context for x in units]
            families = context_families([x.init for x in units])  # numbered as RoundUnit.context
            assert all(any(q is x.init for q in families[x.context]) for x in units)
            ctxs = [Core(hw, f[0], shared=shared, cfg_ports=R, family=f, encoder=False) for f in families]
            for j, ctx in enumerate(ctxs):
                m.submodules[f"core{k}_ctx{j}"] = ctx
            mine = [ld["en"] & (ld_who == i) for ld in lds]
            # the round the records of this cycle load: the grant cycle's are the new round's (u
            # changes a cycle later)
            ld_unit = Mux(grant & wins[i], req_unit[i], s["u"])
            ld_ctx = Array(Const(c_, range(len(ctxs))) for c_ in ctx_of)[ld_unit]
            for c_, ctx in enumerate(ctxs):
                en = [mine_ld & (ld["sel"] == SEL_REGS) & (ld_ctx == c_) for ld, mine_ld in zip(lds, mine)]
                m.d.comb += [
                    ctx.cfg_en.eq(Cat(*en)),
                    ctx.cfg_addr.eq(Cat(*[ld["tgt"][: ctx.reg_bits] for ld in lds])),
                    ctx.cfg_data.eq(Cat(*[ld["data"][:REGISTER_BITS] for ld in lds])),
                ]
            # a membrane word goes to every organisation (lane l of it to word `tgt` of bank l)
            mem_ports = [(shared["mem"], slice(0, lanes * vb))] if "mem" in shared else []
            mem_ports += [(b, slice(q * vb, (q + 1) * vb)) for q, b in enumerate(shared.get("banks", []))]
            # the loader: write ports for each record of the cycle (a round's records write distinct words)
            for ld, mine_ld in zip(lds, mine):
                self._loader_port(m, shared, mem_ports, ld, mine_ld)
            # the write-back's reads: a membrane word (of the piece's organisation), a count or sum word, a
            # shift word, a word of the step's history row
            groups_now = Array(Const(x.n_mem, range(gmax + 1)) for x in units)[s["u"]]
            counts_now = Array(Const(x.n_count, range(syn_words + 1)) for x in units)[s["u"]]
            shifts_now = Array(Const(x.n_shift, range(gmax + 1)) for x in units)[s["u"]]
            sums_now = Array(Const(int(x.graded_sums), 1) for x in units)[s["u"]]
            banked_now = Array(Const(int(x.banked), 1) for x in units)[s["u"]]
            hist_rd = shared["hist"].read_port(domain="comb")
            m.d.comb += hist_rd.addr.eq(step % c.spike_history_steps)
            for name in ("syn", "par", "hist", "mem", "sums", "lut", "shift", "operands"):
                if name in shared:
                    m.submodules[f"core{k}_{name}"] = shared[name]
            for q, bank in enumerate(shared.get("banks", [])):
                m.submodules[f"core{k}_bank{q}"] = bank
            # the steps a piece emits at: its firing window, a max-pool unit's input window (section 4.4)
            emit = [x.init.in_start if x.init.kind == PIECE_CODES["maxpool"] else x.init.out_start for x in units]
            fired_now = Array(
                ((step >= e0) & (step < e0 + x.init.timesteps)) if x.spike_base >= 0 else Const(0)
                for e0, x in zip(emit, units)
            )[s["u"]]
            # the row's bits past the piece's n units (1 or v_bits each) may be another piece's: masked
            hbits = c.neurons * hist_bits(hw)
            nmask = Array(Const((1 << x.init.n * x.row_bits) - 1, hbits) for x in units)[s["u"]]
            state_base = Array(Const(x.state_base, abits + 1) for x in units)[s["u"]]
            spike_base = Array(Const(max(0, x.spike_base), abits + 1) for x in units)[s["u"]]
            ring_now = step[: plan.ring_shift]  # the ring's row of this step
            # the write-back's words of this cycle: word wb_i + q on DRAM write port q
            for q, d_wr in enumerate(d_wrs):
                wi = Signal.like(wb_i, name=f"wb_i_{k}_{q}")
                m.d.comb += wi.eq(wb_i + q)
                mem_words = []
                for mm, _ in mem_ports:
                    r = mm.read_port(domain="comb")
                    m.d.comb += r.addr.eq(wi)
                    mem_words.append(r.data)
                whole = mem_words[0] if "mem" in shared else Const(0, lanes * vb)
                banked_word = Cat(*mem_words[1:] if "mem" in shared else mem_words) if "banks" in shared else whole
                mword_rd = Mux(banked_now, banked_word, whole)
                syn_rd = shared["syn"].read_port(domain="comb")
                m.d.comb += syn_rd.addr.eq(wi - groups_now)
                state_rd = syn_rd.data
                if "sums" in shared:
                    sums_rd = shared["sums"].read_port(domain="comb")
                    m.d.comb += sums_rd.addr.eq(wi - groups_now)
                    state_rd = Mux(sums_now, sums_rd.data, syn_rd.data)
                if "shift" in shared:
                    shift_rd = shared["shift"].read_port(domain="comb")
                    m.d.comb += shift_rd.addr.eq(wi - groups_now - counts_now)
                    state_rd = Mux(wi < groups_now + counts_now, state_rd, shift_rd.data)
                grp = Signal(range(2 * gmax + syn_words + 1), name=f"wb_grp_{k}_{q}")
                m.d.comb += grp.eq(wi - groups_now - counts_now - shifts_now)
                spike_word = Mux(fired_now, ((hist_rd.data & nmask) >> (grp * width))[:width], 0)
                with m.If(wb_on & (who == i) & (wi < n_rec)):
                    is_mem = wi < groups_now
                    is_state = wi < groups_now + counts_now + shifts_now
                    wword = Signal(width, name=f"wb_word_{k}_{q}")
                    m.d.comb += wword.eq(Mux(is_mem, mword_rd, Mux(is_state, state_rd, spike_word)))
                    if self.wb_flip is not None:
                        hits = [j for j, x in enumerate(units) if x.piece == self.wb_flip[0]]
                        if hits:
                            at = self.wb_flip[2] if len(self.wb_flip) > 2 else 0
                            flip = (s["u"] == hits[0]) & (wi == at)
                            wword = wword ^ Mux(flip, Const(1 << self.wb_flip[1], width), 0)
                    m.d.comb += [
                        d_wr.en.eq(1),
                        d_wr.addr.eq(
                            Mux(
                                is_state,
                                state_base + wi,
                                spike_base + (ring_now << plan.spike_shift) + grp,
                            )
                        ),
                        d_wr.data.eq(wword),
                    ]
            # contexts: the running round's starts, the slice root's fires (after its chunks)
            ctx_now = Array(Const(c_, range(len(ctxs))) for c_ in ctx_of)[s["u"]]
            root_ctx = Array(Const(c_, range(len(ctxs))) for c_ in ctx_of)[s["root_now"]]
            for c_, ctx in enumerate(ctxs):
                m.d.comb += [
                    ctx.step.eq(step),
                    ctx.start.eq(s["ld_finish"] & (ctx_now == c_)),
                    ctx.fire.eq(s["fire_now"] & (root_ctx == c_)),
                    ctx.pphase.eq(0),
                    ctx.flits.ready.eq(0),  # no flit crosses the mesh in rounds mode
                ]
            # feeders: one per round, the running round's drives its context's event port
            for j, x in enumerate(units):
                on = s["u"] == j
                ctx = ctxs[ctx_of[j]]
                if x.feed:
                    self._feeder(
                        m,
                        x,
                        ctx,
                        f"{k}_{j}",
                        s,
                        on,
                        grant & wins[i] & ~g_wb & (req_unit[i] == j),
                        # the grant cycle's records are already the new round's (u changes a cycle later)
                        [
                            (mine_ld & Mux(grant & wins[i], req_unit[i] == j, on), ld["sel"], ld["tgt"], ld["data"])
                            for ld, mine_ld in zip(lds, mine)
                        ],
                    )
            m.d.comb += [
                s["ctx_i_done"].eq(Array(ctx.i_done for ctx in ctxs)[ctx_now]),
                s["ctx_f_done"].eq(Array(ctx.f_done for ctx in ctxs)[root_ctx]),
            ]

        # ---- the barrier: every core's last write-back ended, then barrier_cycles
        cond = Signal()
        acc = Const(1)
        for t_ in idle_terms:
            acc = acc & t_
        m.d.comb += cond.eq(acc)
        m.submodules.barrier = barrier = BarrierUnit(hw.barrier_cycles)
        m.d.comb += [
            barrier.cond.eq(cond),
            barrier.restart.eq(seq.restart),
            self.done.eq(barrier.done),
            seq.done.eq(barrier.done),  # the sequencer starts the next step in the cycle it rises
        ]
        for k in cores:
            with m.If(self.dbg_core == k):
                m.d.comb += self.dbg_busy.eq(busy_count[k])
        return m

    def _loader_port(self, m: Module, shared: dict, mem_ports: list, ld: dict, mine) -> None:
        """One load record's write ports: a synapse descriptor writes its ``delay`` (count) words, one
        port each; the others one word of the memory ``sel`` names (a membrane word to every organisation)."""
        c = self.hw.core
        lanes, vb = c.lanes, c.v_bits
        sbits = lanes * c.weight_bits
        sel, tgt, delay, data = ld["sel"], ld["tgt"], ld["delay"], ld["data"]
        for q in range(self.plan.syn_per_word):
            syn_w = shared["syn"].write_port()
            m.d.comb += [
                syn_w.addr.eq(tgt + q),
                syn_w.data.eq(data[q * sbits : (q + 1) * sbits]),
                syn_w.en.eq(mine & (sel == SEL_SYNAPSE) & (delay > q)),
            ]
        par_w = shared["par"].write_port()
        m.d.comb += [par_w.addr.eq(tgt), par_w.data.eq(data[: lanes * 2 * vb]), par_w.en.eq(mine & (sel == SEL_PARAMS))]
        for name, code in (("sums", SEL_SUMS), ("lut", SEL_LUT), ("shift", SEL_SHIFT), ("operands", SEL_OPS)):
            if name in shared:
                wp = shared[name].write_port()
                bits = shared[name].shape.width
                m.d.comb += [wp.addr.eq(tgt), wp.data.eq(data[:bits]), wp.en.eq(mine & (sel == code))]
        for mm, part in mem_ports:
            w = mm.write_port()
            m.d.comb += [w.addr.eq(tgt), w.data.eq(data[part]), w.en.eq(mine & (sel == SEL_MEMBRANE))]

    def _feeder(self, m: Module, x: RoundUnit, ctx: Core, tag: str, s: dict, on, new_round, records) -> None:
        """The feeder of round ``x``: one pending bit (and host value) per source position, filled by
        the round's spike and host words (``records``: ``(this round's, sel, tgt, data)`` of each record
        of the cycle); from the cycle before the load ends it offers the core's event FIFO the lowest
        pending position, one per cycle, and clears it when taken."""
        vb = self.hw.core.v_bits
        ne = len(x.feed)
        pend = Signal(ne, name=f"pend_{tag}")
        vals = {e: Signal(signed(vb), name=f"val_{tag}_{e}") for e, f in enumerate(x.feed) if f[2]}
        feeding = Signal(name=f"feeding_{tag}")
        feed_now = (s["pre"] & on) | feeding
        with m.If(s["pre"] & on):
            m.d.sync += feeding.eq(1)
        with m.If(s["i_end"] & on):
            m.d.sync += feeding.eq(0)
        e_sel = _lowest(m, pend, f"esel_{tag}")
        valid = feed_now & pend.any() & on
        graded = Array(Const(f[2], 1) for f in x.feed)[e_sel]
        value = Array(vals.get(e, Const(0, signed(vb))) for e in range(ne))[e_sel]
        with m.If(on):  # the context may be shared with other rounds' feeders: the running round's drives it
            m.d.comb += [
                ctx.events.valid.eq(valid),
                ctx.events.payload.type.eq(Mux(graded, TYPE_GRADED, TYPE_SPIKE)),
                ctx.events.payload.slot.eq(Array(Const(f[0], index_bits(self.hw.core.slots)) for f in x.feed)[e_sel]),
                ctx.events.payload.index.eq(Array(Const(f[1], 24) for f in x.feed)[e_sel]),
                ctx.events.payload.payload.eq(Mux(graded, value, 0)),
            ]
        nxt = Signal(ne, name=f"pend_next_{tag}")
        m.d.comb += nxt.eq(pend)
        with m.If(new_round):
            m.d.comb += nxt.eq(0)  # a new round of this piece: nothing pending yet
        with m.Elif(valid & ctx.events.ready):
            m.d.comb += nxt.eq(pend & ~(Const(1, ne) << e_sel)[:ne])
        # the round's spike and host words, in descriptor order: chunk c fills its positions (the
        # records of one cycle are different chunks', so they fill disjoint positions)
        for ld, sel, tgt, data in records:
            with m.If(ld & ((sel == SEL_SPIKES) | (sel == SEL_HOST))):
                for ch, (e0, cnt) in enumerate(x.chunks):
                    with m.If(tgt == ch):
                        bits = []
                        for e in range(e0, e0 + cnt):
                            b = x.feed[e][3]
                            if x.feed[e][2]:
                                v = data[b * vb : (b + 1) * vb].as_signed()
                                m.d.sync += vals[e].eq(v)
                                bits.append(v != 0)
                            else:
                                bits.append(data[b])
                        m.d.comb += nxt[e0 : e0 + cnt].eq(Cat(*bits))
        m.d.sync += pend.eq(nxt)
