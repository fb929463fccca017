"""What the ``rounds``-mode array is generated from (``docs/architecture.md`` section 7): each core's
rounds in timeline order (:class:`RoundUnit`: the piece, its round window, its DMA descriptors, its
feeder's source table, its transfers' cycles and the context it runs in) and the DRAM's initial
words (:class:`RoundsPlan`), from a :class:`~spikeforge.mapping.Program` (:func:`rounds_plan`). The
hardware that runs them is :class:`~spikeforge.rtl.rounds.RoundsArray`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikeforge.mapping import HardwareConfig, Program
from spikeforge.mapping.connectivity import slot_sources
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES
from spikeforge.mapping.pieces import mbe_shifts

from .core import (
    banked_membrane,
    count_words,
    hist_bits,
    memory_words,
    sum_words,
)
from .errors import RtlError
from .memories import operand_word_bits
from .piece import REGISTER_BITS, PieceInit, check_hardware, piece_init, register_addresses, register_values
from .swap import context_layouts, context_of, dma_ports

__all__ = [
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
    "SPIKING",
    "RoundUnit",
    "RoundsPlan",
    "rounds_plan",
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
    #: per chunk, what the core's feeder needs of it (its words in the feeder's chunk table memory):
    #: ``(mask, slot, graded, base)``: the bits (values, when graded) of the chunk's DRAM word that are
    #: sources the slot needs, the slot, whether they are payloads, and where bit 0's global source
    #: index lies in ``RoundsPlan.neurons`` (bit ``b``'s at ``base + b``)
    chunk_table: list[tuple[int, int, int, int]] = field(default_factory=list)


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
    #: the feeders' neuron table: every source population's spiking pieces' neurons (global source
    #: indices, local order) and the host's inputs, each holder once, from ``neuron_base[holder]``
    #: (a piece's id, -1 for the host)
    neurons: list[int] = field(default_factory=list)
    neuron_base: dict[int, int] = field(default_factory=dict)

    def schedule(self, core: int) -> list[list[int]]:
        """The rounds core ``core`` runs at each step ``0 .. steps`` (one empty list past the last): the
        units whose window holds the step, in unit order (a slice's root, then its chunks whose
        window holds it, before the next slice), the contents of the core's schedule memory."""
        units = self.units[core]
        return [[j for j, x in enumerate(units) if x.lo <= t < x.hi] for t in range(self.steps + 1)]


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
            table: list[tuple[int, int, int, int]] = []  # per chunk: mask, slot, graded, neuron-table base
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
                    if qid not in plan.neuron_base:  # the holder's neurons in the feeders' neuron table
                        plan.neuron_base[qid] = len(plan.neurons)
                        plan.neurons += [int(v) for v in neurons]
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
                        mask = sum(1 << h[3] for h in hits)
                        table.append((mask, k_slot, int(graded), plan.neuron_base[qid] + g * per))
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
                    chunk_table=table,
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
