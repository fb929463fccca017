"""``swap`` mode in the RTL (``docs/architecture.md`` section 7): pieces loaded from DRAM at run time.

A core position whose timeline holds several pieces is a :class:`SwapCore`: one set of core
memories (synapse, membrane, parameter SRAMs and the spike history), empty at reset, shared by one
*context* per piece structure of its timeline (:func:`~spikeforge.rtl.piece.structure_key`: the
datapath, with the slot, context and routing-entry values in registers that the loader rewrites
from each piece's register records, :func:`~spikeforge.rtl.piece.register_values`). A core whose pieces keep
their membranes in lane banks (products, conv blocks that are not a multiple of the lanes) and in
whole words has one membrane SRAM of each organisation (the loader writes membrane records to
both). The :class:`DmaEngine` holds the DRAM, a memory initialised with every piece's images as
write records, and the one DRAM channel: each core's loader requests its next piece as soon as the
previous piece's last live step has ended (the first piece at reset), the channel serves one
transfer at a time, oldest request first and simultaneous ones lower core index first, and a
transfer of ``b`` bytes (``Program.image_bytes``) takes ``dram_latency_cycles + ceil(b /
dram_bytes_per_cycle)`` cycles, during which the engine streams the piece's records (``SwapPlan.ports``
per cycle) into the core's memories through the loader's write ports. In the cycle a transfer ends, the loaded
piece's context becomes the core's active one. A piece's records restore what the simulator starts it with:
its registers (first), its synapse words (or zeroed running counts and payload sums), parameters,
``v0`` (an ``mbe`` piece: its ``X`` and basis blocks and output shifts, zero), an ``mbe``
piece's table words and, for a piece fed by a product, its operand index tables and its neurons'
index table (section 4.3; section 7's image bytes count them, ``mapping.images.index_table_bits``).
``ready`` says whether every piece that
becomes live at the next step is loaded: the array's sequencer starts the step only then, and the
wait is the step's DRAM stall.

Cycles of the contract: the array's :class:`~spikeforge.rtl.sequencer.Sequencer` starts each phase
in the cycle the barrier of the one before closes, so every clock cycle is one of the contract's
(phases and stalls alike) and the channel counts every cycle. The loaders make their first requests
in the cycle the inference starts (``go``), the contract's cycle 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig, Program
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES

from .core import (
    CYCLE_BITS,
    SHIFT_BITS,
    STEP_BITS,
    Core,
    banked_membrane,
    count_words,
    hist_bits,
    memory_words,
    out_flit_layout,
    sum_words,
)
from .errors import RtlError
from .memories import index_depth, index_word_bits, operand_word_bits, operand_words
from .piece import (
    REGISTER_BITS,
    PieceInit,
    check_hardware,
    context_registers,
    piece_init,
    register_addresses,
    register_values,
    structure_key,
)
from .tables import FieldTable

__all__ = [
    "SwapPlan",
    "swap_plan",
    "SwapCore",
    "DmaEngine",
    "dma_ports",
    "MAX_DMA_PORTS",
    "SEL_SYNAPSE",
    "SEL_PARAMS",
    "SEL_MEMBRANE",
    "SEL_TABLE",
    "SEL_REGS",
    "SEL_OPERANDS",
    "SEL_INDEX",
    "SEL_BITS",
    "context_of",
    "register_bits",
    "context_layouts",
    "context_families",
]

#: Record targets: which memory of the core a DRAM record writes (SEL_TABLE: an MBE piece's table
#: words, the parameter image's words after its ``n`` unit words, section 4.5; SEL_REGS: one
#: register of a context, :func:`~spikeforge.rtl.piece.register_values`; SEL_OPERANDS: a word of a
#: product's operand index tables, :func:`~spikeforge.rtl.memories.operand_words`; SEL_INDEX: a word
#: of the neuron index table of a piece fed by a product, :func:`~spikeforge.rtl.memories.index_words`),
#: in a ``SEL_BITS`` field.
SEL_SYNAPSE, SEL_PARAMS, SEL_MEMBRANE, SEL_TABLE, SEL_REGS, SEL_OPERANDS, SEL_INDEX = 0, 1, 2, 3, 4, 5, 6
SEL_BITS = 3
#: The most DRAM words the DMA engine moves per cycle (read ports on the DRAM, write ports on each
#: core memory, swap and rounds mode alike): its area grows with them.
MAX_DMA_PORTS = 16


def dma_ports(transfers: list[tuple[str, int, int]], latency: int) -> int:
    """The DRAM words per cycle the DMA engine needs so that each transfer's words fit its cycles.

    ``transfers``: ``(what, words, cycles)`` each. A word lands a cycle after it is read, so ``p``
    words per cycle fit a transfer when ``ceil(words / p) < cycles``: ``p = max ceil(words / (cycles
    - 1))`` over the transfers with words (1 when none has any).

    Raises
    ------
    RtlError
        When that exceeds :data:`MAX_DMA_PORTS` (or a transfer with words lasts one cycle), naming the
        first such transfer (``what``, e.g. "piece 3 ('h1') loads") and the ``dram_latency_cycles``
        (now ``latency``) with which every transfer fits.
    """
    moved = [(what, w, c) for what, w, c in transfers if w > 0]
    bad = [(what, w, c) for what, w, c in moved if c < 2 or -(-w // (c - 1)) > MAX_DMA_PORTS]
    if bad:
        what, w, c = bad[0]
        fit = max(latency + -(-w_ // MAX_DMA_PORTS) + 1 - c_ for _, w_, c_ in moved)
        raise RtlError(
            f"{what} {w} DRAM words in a transfer of {c} cycle{'s' * (c != 1)}, but the DMA engine moves at most "
            f"{MAX_DMA_PORTS} words per cycle and each lands a cycle after it is read, so a transfer must last "
            f"more than ceil(words / {MAX_DMA_PORTS}) cycles; raise [memory] dram_latency_cycles to at least {fit}."
        )
    return max([-(-w // (c - 1)) for _, w, c in moved] + [1])


def context_of(pieces: list[PieceInit]) -> list[int]:
    """The context of each of a core's pieces: pieces with equal
    :func:`~spikeforge.rtl.piece.structure_key` share one, numbered in order of first appearance."""
    keys: dict = {}
    return [keys.setdefault(structure_key(p), len(keys)) for p in pieces]


def context_families(pieces: list[PieceInit]) -> list[list[PieceInit]]:
    """The pieces of each context of a core (numbered as :func:`context_of` numbers them), in order:
    a context's first piece sets its registers at reset, all of them size it."""
    ctx_of = context_of(pieces)
    return [[p for p, c in zip(pieces, ctx_of) if c == j] for j in range(max(ctx_of) + 1)]


def context_layouts(pieces: list[PieceInit]) -> list[list[str]]:
    """The register layout (:func:`~spikeforge.rtl.piece.context_registers`) of each context of a core's
    pieces (:func:`context_families`)."""
    return [context_registers(f) for f in context_families(pieces)]


def register_bits(pieces: list[PieceInit]) -> int:
    """Bits of a register's address in a core's register records: a record's ``addr`` is ``context <<
    register_bits | address`` (the register's place in its context's
    :func:`~spikeforge.rtl.piece.context_registers`)."""
    return index_bits(max(len(layout) for layout in context_layouts(pieces)))


@dataclass
class SwapPlan:
    """What the swap-mode array is generated from.

    ``contexts[k]``: the pieces of core ``k``'s timeline, in order; ``live_start[k][j]`` the first live
    step of its ``j``-th piece and ``live_end[k][j]`` the step after its last; ``first_rec[k][j]``,
    ``n_rec[k][j]`` its records in ``records``; ``duration[k][j]`` its transfer's cycles
    (``dram_latency_cycles + ceil(image_bytes / dram_bytes_per_cycle)``); ``nbytes[k][j]`` its bytes.
    ``records``: the DRAM's words, each ``sel | addr << SEL_BITS | data << (SEL_BITS + addr_bits)``
    (a piece's register records first: ``addr = context << register_bits | index``). ``ports``: the
    records the DMA engine reads and the loader writes per cycle (one write port each on every core
    memory), the fewest with which every piece's records fit its transfer,
    ``ceil(n_rec / ports) < duration``.
    """

    contexts: dict[int, list[PieceInit]]
    live_start: dict[int, list[int]]
    live_end: dict[int, list[int]]
    first_rec: dict[int, list[int]]
    n_rec: dict[int, list[int]]
    duration: dict[int, list[int]]
    nbytes: dict[int, list[int]]
    records: list[int] = field(default_factory=list)
    addr_bits: int = 1
    data_bits: int = 1
    ports: int = 1

    def record(self, core: int, j: int, i: int) -> tuple[int, int, int]:
        """``(sel, addr, data)`` of record ``i`` of core ``core``'s ``j``-th piece."""
        w = self.records[self.first_rec[core][j] + i]
        return w & 7, (w >> SEL_BITS) & ((1 << self.addr_bits) - 1), w >> (SEL_BITS + self.addr_bits)


def swap_plan(program: Program, latency_delta: int = 0) -> SwapPlan:
    """The swap-mode array of ``program``: each core's contexts, their DRAM records and transfers.

    ``latency_delta`` (test hook, 0 in generated hardware) adds cycles to every transfer: a DRAM
    channel whose latency differs from the hardware file's.

    The DMA engine writes ``ports`` records per cycle, the fewest that let every piece's ``n`` records
    land within its transfer of ``d`` cycles (``ceil(n / ports) < d``, i.e. ``ports = max ceil(n /
    (d - 1))``; 1 on the tests' and the bundled files' defaults, more when ``dram_bytes_per_cycle``
    outgrows a record or the latency is short), so the transfer keeps section 7's cycles.

    Raises
    ------
    RtlError
        When the program is not in swap mode, or when a piece's records would need more than
        :data:`MAX_DMA_PORTS` per cycle (:func:`dma_ports`).
    """
    hw = program.hardware
    check_hardware(hw)
    if program.plan.mode != "swap":
        raise RtlError(f"swap_plan needs a program in 'swap' mode; this one is {program.plan.mode!r}.")
    c, mem = hw.core, hw.memory
    lanes = c.lanes
    syn_words = max(1, c.axons * c.neurons // lanes)
    inits = {k: [piece_init(program, pid) for pid in tl] for k, tl in enumerate(program.plan.timeline) if tl}
    every = [p for ps in inits.values() for p in ps]
    # addresses: synapse words, payload-sum words, MBE table words (the membrane's are fewer), and the
    # registers of every context
    regs = [max(context_of(ps)) + 1 << register_bits(ps) for ps in inits.values()]
    depth = max(
        [syn_words]
        + [sum_words(hw, p) for p in every if p.graded_sums]
        + [_table_rows(p) for p in every]
        + [_operand_rows(hw, p) for p in every]
        + regs
    )
    abits = index_bits(depth)
    dbits = max(lanes * c.weight_bits, lanes * 2 * c.v_bits, lanes * c.v_bits, 3 * c.v_bits, REGISTER_BITS)
    if any(_operand_rows(hw, p) for p in every):
        dbits = max(dbits, operand_word_bits(hw), index_word_bits(hw))
    if any(_output_shifts(p) for p in every):  # membrane records carry the shift words beside them
        dbits = max(dbits, lanes * (c.v_bits + SHIFT_BITS))
    plan = SwapPlan({}, {}, {}, {}, {}, {}, {}, [], abits, dbits)
    live = program.plan.live
    for k, timeline in enumerate(program.plan.timeline):
        if not timeline:
            continue
        plan.contexts[k] = inits[k]
        for key in ("live_start", "live_end", "first_rec", "n_rec", "duration", "nbytes"):
            getattr(plan, key)[k] = []
        ctx_of, rbits = context_of(inits[k]), register_bits(inits[k])
        layouts = context_layouts(inits[k])
        for j, (pid, p) in enumerate(zip(timeline, inits[k])):
            words = {name: w for name, w, _ in memory_words(hw, p)}
            groups = -(-p.n // lanes)
            used = len(p.synapse)
            if p.kind == PIECE_CODES["product"]:  # its running counts start at zero (section 4.3)
                g = p.geometry
                used = count_words(g["i1"] - g["i0"], g["j1"] - g["j0"], p.contraction, lanes)
            if p.kind == PIECE_CODES["maxpool"]:  # and so do a max-pool's (section 4.4)
                used = p.slots[0].kernel ** 2 * groups
            if p.graded_sums:  # running payload sums (an MBE operand, 4.3; MBE payloads, 4.4): zeros
                used = sum_words(hw, p)
            # an mbe piece's state is X and one block per basis (section 4.5), all zero when it is loaded;
            # the records of X's words also write the units' output-shift words beside them (zeros
            # above the membrane word's bits): the simulator loads a piece with no shift yet
            state = groups * (p.bases + 1 if p.kind == PIECE_CODES["mbe"] else 1)
            # the registers first: their windows (in_start, out_start, acc_start) are in the future
            # once written, so the context, active while it is rewritten, stays quiet
            mask = (1 << REGISTER_BITS) - 1
            addrs = register_addresses(p, layouts[ctx_of[j]])
            recs = [(SEL_REGS, ctx_of[j] << rbits | a, v & mask) for a, v in zip(addrs, register_values(p))]
            recs += [(SEL_SYNAPSE, a, w) for a, w in enumerate(words["synapse"][:used])]
            recs += [(SEL_PARAMS, a, words["params"][a]) for a in range(groups)]
            recs += [(SEL_MEMBRANE, a, words["membrane"][a]) for a in range(state)]
            recs += [(SEL_TABLE, a, w) for a, w in enumerate(words.get("lut", []))]
            recs += [(SEL_OPERANDS, a, w) for a, w in enumerate(words.get("operands", []))]
            recs += [(SEL_INDEX, a, w) for a, w in enumerate(words.get("index", []))]
            nbytes = program.image_bytes(program.pieces[pid])
            dur = mem.dram_latency_cycles + -(-nbytes // mem.dram_bytes_per_cycle) + int(latency_delta)
            plan.live_start[k].append(int(live[pid, 0]))
            plan.live_end[k].append(int(live[pid, 1]))
            plan.first_rec[k].append(len(plan.records))
            plan.n_rec[k].append(len(recs))
            plan.duration[k].append(dur)
            plan.nbytes[k].append(nbytes)
            plan.records += [sel | a << SEL_BITS | d << (SEL_BITS + abits) for sel, a, d in recs]
    loads = [
        (f"piece {p.piece_id} ({p.population!r}) loads", plan.n_rec[k][j], plan.duration[k][j])
        for k, ps in plan.contexts.items()
        for j, p in enumerate(ps)
    ]
    plan.ports = dma_ports(loads, mem.dram_latency_cycles)
    return plan


def _table_rows(p: PieceInit) -> int:
    """Table words of an ``mbe`` piece (its parameter image past the ``n`` unit words), else 0."""
    return len(p.params) - p.n if p.kind == PIECE_CODES["mbe"] else 0


def _operand_rows(hw: HardwareConfig, p: PieceInit) -> int:
    """Operand table words of a piece fed by a product (:func:`~spikeforge.rtl.memories.operand_words`), else 0."""
    return len(operand_words(hw, p)) if p.operands[0] else 0


def _payload_rows(p: PieceInit) -> bool:
    """Whether the piece's history entries are ``v_bits`` payloads (an ``mbe`` piece, a graded
    max-pool; sections 4.4, 4.5) rather than spike bits."""
    return p.kind == PIECE_CODES["mbe"] or (p.graded_sums and p.kind == PIECE_CODES["maxpool"])


def _output_shifts(p: PieceInit) -> bool:
    """Whether an ``mbe`` piece keeps an output-shift word per unit (a split or a shift base, read
    from basis 0's offset word as :class:`~spikeforge.rtl.core.Core` reads it, section 4.5)."""
    if p.kind != PIECE_CODES["mbe"]:
        return False
    code, shift_base = (int(v) for v in p.params[p.n + p.bases * p.timesteps][1:3])
    return bool(code & 3 or shift_base)


class SwapCore(wiring.Component):
    """A core position holding several pieces one after another: one :class:`~spikeforge.rtl.core.Core`
    context per structure of its pieces (:func:`context_of`) on one shared set of memories, the
    context of piece ``active`` connected to the router and the controls, and the loader's write ports
    (``ld_en``, ``ld_sel``, ``ld_addr``, ``ld_data``): memory records into the shared memories,
    register records (``SEL_REGS``) into the registers of the context their ``addr`` names.
    ``cores``: the contexts, once elaborated."""

    def __init__(
        self, hw: HardwareConfig, contexts: list[PieceInit], data_bits: int, addr_bits: int, ports: int = 1
    ) -> None:
        self.hw = hw
        self.contexts = list(contexts)
        self.ports = ports
        c = hw.core
        gmax = c.neurons // c.lanes
        # membrane organisations its pieces use: lane banks (products, conv blocks that are not a
        # multiple of the lanes) and whole words; a core holding both kinds gets both SRAMs
        # (mbe and output units fed by a product keep theirs in the skewed banks too, section 4.3)
        self.organisations = {
            banked_membrane(hw, p) or any(s.kind == SLOT_CODES["product_a"] for s in p.slots) for p in self.contexts
        }
        super().__init__(
            {
                "events": In(stream.Signature(out_flit_layout(hw))),
                "step": In(STEP_BITS),
                "start": In(1),
                "fire": In(1),
                "pphase": In(1),
                "plive": Out(1),
                "i_done": Out(1),
                "f_done": Out(1),
                "busy": Out(CYCLE_BITS),
                "sent": Out(CYCLE_BITS),
                "dbg_maddr": In(index_bits(gmax)),
                "dbg_v": Out(c.lanes * c.v_bits),
                "dbg_haddr": In(index_bits(c.spike_history_steps)),
                "dbg_h": Out(c.neurons * hist_bits(hw)),
                "dbg_saddr": In(16),
                "dbg_s": Out(c.lanes * c.v_bits),
                "rd_addr": In(index_bits(gmax)),
                "rd_data": Out(c.lanes * c.v_bits),
                "flits": Out(stream.Signature(out_flit_layout(hw))),
                "active": In(range(max(2, len(self.contexts)))),
                "ld_en": In(ports),
                "ld_sel": In(SEL_BITS * ports),
                "ld_addr": In(addr_bits * ports),
                "ld_data": In(data_bits * ports),
            }
        )

    def elaborate(self, platform):
        m = Module()
        hw, c = self.hw, self.hw.core
        lanes, vb, wb = c.lanes, c.v_bits, c.weight_bits
        gmax = c.neurons // lanes
        syn_words = max(1, c.axons * c.neurons // lanes)
        pieces = self.contexts
        shared = {
            "syn": Memory(shape=unsigned(lanes * wb), depth=syn_words, init=[]),
            "par": Memory(shape=unsigned(lanes * 2 * vb), depth=gmax, init=[]),
        }
        # per kind of state its pieces keep: spike-bit or payload history rows, payload sums (the
        # synapse SRAM's bits as words of v_bits sums), MBE tables and output-shift words
        hdepth = c.spike_history_steps
        if any(not _payload_rows(p) for p in pieces):
            shared["hist"] = Memory(shape=unsigned(c.neurons), depth=hdepth, init=[])
        if any(_payload_rows(p) for p in pieces):
            shared["hist_g"] = Memory(shape=unsigned(c.neurons * vb), depth=hdepth, init=[])
        if any(p.graded_sums for p in pieces):
            depth = max(sum_words(hw, p) for p in pieces if p.graded_sums)
            shared["sums"] = Memory(shape=unsigned(lanes * vb), depth=depth, init=[])
        if any(_table_rows(p) for p in pieces):
            shared["lut"] = Memory(shape=unsigned(3 * vb), depth=max(_table_rows(p) for p in pieces), init=[])
        if any(_output_shifts(p) for p in pieces):
            shared["shift"] = Memory(shape=unsigned(lanes * SHIFT_BITS), depth=gmax, init=[])
        if any(_operand_rows(hw, p) for p in pieces):  # a product's index tables (section 4.3)
            depth = max(_operand_rows(hw, p) for p in pieces)
            shared["operands"] = Memory(shape=unsigned(operand_word_bits(hw)), depth=depth, init=[])
            # and the global index of each of its neurons, as an offset from `first` (the encoder's)
            shared["index"] = Memory(shape=unsigned(index_word_bits(hw)), depth=index_depth(hw), init=[])
        if True in self.organisations:
            shared["banks"] = [Memory(shape=unsigned(vb), depth=gmax, init=[]) for _ in range(lanes)]
        if False in self.organisations:
            shared["mem"] = Memory(shape=unsigned(lanes * vb), depth=gmax, init=[])
        # one context per structure: the first piece of each at reset, its registers rewritten by the
        # loader with every piece loaded into it
        ctx_of = context_of(pieces)
        ctxs = self.cores = [
            Core(hw, f[0], shared=shared, cfg_ports=self.ports, family=f) for f in context_families(pieces)
        ]
        # the contexts first: they ask for their ports before the memories are elaborated
        for j, ctx in enumerate(ctxs):
            m.submodules[f"ctx{j}"] = ctx
        # the loader: per record of the cycle (ports of them), one write port on every memory; a
        # piece's records write distinct words, so the ports never collide
        abits, dbits = len(self.ld_addr) // self.ports, len(self.ld_data) // self.ports
        for q in range(self.ports):
            self._loader_port(
                m,
                shared,
                self.ld_en[q],
                self.ld_sel.word_select(q, SEL_BITS),
                self.ld_addr.word_select(q, abits),
                self.ld_data.word_select(q, dbits),
            )
        # register records: addr = context << rbits | register
        rbits = register_bits(pieces)
        for j, ctx in enumerate(ctxs):
            en, addr, data = [], [], []
            for q in range(self.ports):
                a = self.ld_addr.word_select(q, abits)
                sel = self.ld_sel.word_select(q, SEL_BITS)
                en.append(self.ld_en[q] & (sel == SEL_REGS) & (a >> rbits == j) & (a[:rbits] >> ctx.reg_bits == 0))
                addr.append(a[: ctx.reg_bits])
                data.append(self.ld_data.word_select(q, dbits)[:REGISTER_BITS])
            m.d.comb += [ctx.cfg_en.eq(Cat(*en)), ctx.cfg_addr.eq(Cat(*addr)), ctx.cfg_data.eq(Cat(*data))]
        for name in ("syn", "par", "hist", "hist_g", "sums", "lut", "shift", "operands", "index"):
            if name in shared:
                m.submodules[name] = shared[name]
        if "banks" in shared:
            for lane, bank in enumerate(shared["banks"]):
                m.submodules[f"mem_bank{lane}"] = bank
        if "mem" in shared:
            m.submodules.mem = shared["mem"]
        # the active piece's context: connected to the router, the controls and the outputs; the others idle
        active = Signal(range(max(2, len(ctxs))))
        # the piece -> context table (a memory initialised from the plan)
        ctx_table = FieldTable(m, "contexts", [{"ctx": j} for j in ctx_of])
        m.d.comb += active.eq(ctx_table.read(m, self.active)["ctx"])
        for j, ctx in enumerate(ctxs):
            on = active == j
            m.d.comb += [
                ctx.events.payload.eq(self.events.payload),
                ctx.events.valid.eq(self.events.valid & on),
                ctx.flits.ready.eq(self.flits.ready & on),
                ctx.step.eq(self.step),
                ctx.start.eq(self.start & on),
                ctx.fire.eq(self.fire & on),
                ctx.pphase.eq(self.pphase & on),
                ctx.dbg_maddr.eq(self.dbg_maddr),
                ctx.dbg_haddr.eq(self.dbg_haddr),
                ctx.dbg_saddr.eq(self.dbg_saddr),
                ctx.rd_addr.eq(self.rd_addr),
            ]
            with m.If(on):
                m.d.comb += [
                    self.events.ready.eq(ctx.events.ready),
                    self.flits.valid.eq(ctx.flits.valid),
                    self.flits.payload.eq(ctx.flits.payload),
                    self.i_done.eq(ctx.i_done),
                    self.f_done.eq(ctx.f_done),
                    self.plive.eq(ctx.plive),
                    self.busy.eq(ctx.busy),
                    self.sent.eq(ctx.sent),
                    self.dbg_v.eq(ctx.dbg_v),
                    self.dbg_h.eq(ctx.dbg_h),
                    self.dbg_s.eq(ctx.dbg_s),
                    self.rd_data.eq(ctx.rd_data),
                ]
        return m

    def _loader_port(self, m: Module, shared: dict, en, sel, addr, data) -> None:
        """One record's write ports: ``data`` into the memory ``sel`` names (and its other views)."""
        c = self.hw.core
        lanes, vb, wb = c.lanes, c.v_bits, c.weight_bits
        gmax = c.neurons // lanes
        syn_w = shared["syn"].write_port()
        par_w = shared["par"].write_port()
        m.d.comb += [
            syn_w.addr.eq(addr),
            syn_w.data.eq(data[: lanes * wb]),
            syn_w.en.eq(en & (sel == SEL_SYNAPSE)),
            par_w.addr.eq(addr),
            par_w.data.eq(data[: lanes * 2 * vb]),
            par_w.en.eq(en & (sel == SEL_PARAMS)),
        ]
        if "banks" in shared:  # lane l of a membrane record is word addr of bank l
            for lane, bank in enumerate(shared["banks"]):
                w = bank.write_port()
                m.d.comb += [
                    w.addr.eq(addr),
                    w.data.eq(data[lane * vb : (lane + 1) * vb]),
                    w.en.eq(en & (sel == SEL_MEMBRANE)),
                ]
        if "mem" in shared:  # (a core with both organisations writes the record to both)
            w = shared["mem"].write_port()
            m.d.comb += [
                w.addr.eq(addr),
                w.data.eq(data[: lanes * vb]),
                w.en.eq(en & (sel == SEL_MEMBRANE)),
            ]
        if "sums" in shared:  # synapse records also land in the sums' view of the SRAM's bits
            w = shared["sums"].write_port()
            m.d.comb += [
                w.addr.eq(addr),
                w.data.eq(data[: lanes * vb]),
                w.en.eq(en & (sel == SEL_SYNAPSE) & (addr < shared["sums"].depth)),
            ]
        if "shift" in shared:  # (the bits of a membrane record past its lanes * v_bits)
            w = shared["shift"].write_port()
            m.d.comb += [
                w.addr.eq(addr),
                w.data.eq(data[lanes * vb : lanes * (vb + SHIFT_BITS)]),
                w.en.eq(en & (sel == SEL_MEMBRANE) & (addr < gmax)),
            ]
        for name, code in (("lut", SEL_TABLE), ("operands", SEL_OPERANDS), ("index", SEL_INDEX)):
            if name in shared:
                w = shared[name].write_port()
                m.d.comb += [
                    w.addr.eq(addr),
                    w.data.eq(data[: shared[name].shape.width]),
                    w.en.eq(en & (sel == code)),
                ]


class DmaEngine(wiring.Component):
    """The DRAM, its one channel and every core's loader (section 7, ``swap``).

    Inputs: ``launch`` (the inference starts: every loader requests its first piece), ``step_end``
    (the barrier of a phase F has just closed: the step ``nxt - 1`` is over), ``nxt`` (the next step
    to run). Outputs: per core ``k`` its write ports (``ld_en_k``, one bit per record of the cycle;
    ``ld_sel``, ``ld_addr``, ``ld_data`` are common, ``plan.ports`` records side by side) and
    ``active_k`` (the context of its last loaded piece, from the cycle its transfer ends); ``ready``
    (every piece live from ``nxt`` on is loaded); ``busy`` (a transfer under way).
    """

    def __init__(self, hw: HardwareConfig, plan: SwapPlan, flip: tuple[int, int] | None = None) -> None:
        self.hw, self.plan = hw, plan
        self.flip = flip  # test hook: (record, bit) flipped in the DRAM's contents
        self.cores = sorted(plan.contexts)
        members = {
            "launch": In(1),
            "step_end": In(1),
            "nxt": In(STEP_BITS),
            "ready": Out(1),
            "busy": Out(1),
            "ld_sel": Out(SEL_BITS * plan.ports),
            "ld_addr": Out(plan.addr_bits * plan.ports),
            "ld_data": Out(plan.data_bits * plan.ports),
        }
        for k in self.cores:
            members[f"ld_en_{k}"] = Out(plan.ports)
            members[f"active_{k}"] = Out(range(max(2, len(plan.contexts[k]))))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        words = list(plan.records) or [0]
        if self.flip is not None:
            rec, bit = self.flip
            words[rec] ^= 1 << bit
        width = SEL_BITS + plan.addr_bits + plan.data_bits
        ports = plan.ports
        # one read port per record of the cycle; the zero words past the records are read (not
        # written anywhere) when a piece's last cycle holds fewer than `ports` records
        words += [0] * (ports - 1)
        m.submodules.dram = dram = Memory(shape=unsigned(width), depth=len(words), init=words)
        rds = [dram.read_port() for _ in range(ports)]
        maxdur = max(d for k in self.cores for d in plan.duration[k])
        ncores = len(self.cores)

        # the channel: one transfer at a time
        busy = Signal()
        who = Signal(range(max(2, ncores)))  # position in self.cores of the core being served
        rem = Signal(range(maxdur + 1))  # cycles left of the transfer
        rem_now = Signal.like(rem)
        m.d.comb += rem_now.eq(rem - 1)
        finishing = Signal()
        m.d.comb += finishing.eq(busy & (rem_now == 0))
        free = ~busy | finishing
        m.d.comb += self.busy.eq(busy)

        # per core: pieces loaded, pieces requested, and the step of the pending request
        loaded, asked, stamp, new, req, tables = [], [], [], [], [], []
        for i, k in enumerate(self.cores):
            nctx = len(plan.contexts[k])
            ld = Signal(range(nctx + 1), name=f"loaded_{k}")
            ak = Signal(range(nctx + 1), name=f"asked_{k}")
            st = Signal(STEP_BITS + 1, name=f"stamp_{k}")
            nw = Signal(name=f"new_{k}")
            rq = Signal(name=f"req_{k}")
            # the core's piece table (a memory initialised from the plan): per piece its first record,
            # records, transfer cycles and the step after its last live one
            tab = self._piece_table(m, k)
            prev = tab.read(m, Mux(ak > 0, ak - 1, 0))  # the piece before the next one to ask for
            # the first piece when the inference starts; piece j once piece j - 1's last live step is over
            cond = ((ak == 0) & self.launch) | ((ak > 0) & self.step_end & (self.nxt == prev["live_end"]))
            m.d.comb += nw.eq((ak < nctx) & cond)
            pending = (ak > ld) & ~(busy & (who == i))  # not while its own transfer runs or ends
            m.d.comb += rq.eq(pending | nw)
            with m.If(nw):
                m.d.sync += [ak.eq(ak + 1), st.eq(self.nxt)]
            loaded.append(ld)
            tables.append(tab)
            asked.append(ak)
            stamp.append(Mux(nw, self.nxt, st))
            new.append(nw)
            req.append(rq)
        # the arbiter: the oldest request (lowest stamp: the step boundary it was made at), then the
        # lowest core index
        wins = []
        for i in range(ncores):
            w = req[i]
            for q in range(ncores):
                if q != i:
                    before = (stamp[i] < stamp[q]) | ((stamp[i] == stamp[q]) & Const(int(i < q)))
                    w = w & (~req[q] | before)
            win = Signal(name=f"win_{self.cores[i]}")
            m.d.comb += win.eq(w)
            wins.append(win)
        grant = Signal()
        m.d.comb += grant.eq(free & Cat(*wins).any())
        g_first = Signal(range(max(2, len(words))))
        g_n = Signal(range(max(2, len(words) + 1)))
        g_dur = Signal.like(rem)
        g_who = Signal.like(who)
        for i, table in enumerate(tables):
            nxt_piece = table.read(m, loaded[i])  # the core's next piece: all before it are loaded
            with m.If(wins[i]):
                m.d.comb += [
                    g_who.eq(i),
                    g_first.eq(nxt_piece["first_rec"]),
                    g_n.eq(nxt_piece["n_rec"]),
                    g_dur.eq(nxt_piece["duration"]),
                ]
        with m.If(finishing):
            m.d.sync += busy.eq(0)
            for i in range(ncores):
                with m.If(who == i):
                    m.d.sync += loaded[i].eq(loaded[i] + 1)
        with m.Elif(busy):
            m.d.sync += rem.eq(rem_now)

        # the records: `ports` read per cycle from the grant on, written into the core one cycle later
        ptr = Signal(range(len(words) + ports))
        left = Signal.like(g_n)
        w_valid = Signal(range(ports + 1))  # records of the cycle being written
        w_who = Signal.like(who)
        base = Mux(grant, g_first, ptr)
        for q, rd in enumerate(rds):
            m.d.comb += rd.addr.eq(base + q)
        now = Mux(grant, g_n, left)  # records still to read
        take = Mux(now > ports, ports, now)
        with m.If(grant):
            m.d.sync += [busy.eq(1), who.eq(g_who), rem.eq(g_dur), w_who.eq(g_who)]
        m.d.sync += [ptr.eq(base + take), left.eq(now - take), w_valid.eq(take)]
        for q, rd in enumerate(rds):
            m.d.comb += [
                self.ld_sel.word_select(q, SEL_BITS).eq(rd.data[:SEL_BITS]),
                self.ld_addr.word_select(q, plan.addr_bits).eq(rd.data[SEL_BITS : SEL_BITS + plan.addr_bits]),
                self.ld_data.word_select(q, plan.data_bits).eq(rd.data[SEL_BITS + plan.addr_bits :]),
            ]
        ready = Const(1)
        for i, k in enumerate(self.cores):
            en = Cat(*[(w_valid > q) & (w_who == i) for q in range(ports)])
            m.d.comb += getattr(self, f"ld_en_{k}").eq(en)
            done_now = Signal.like(loaded[i], name=f"done_now_{k}")
            m.d.comb += done_now.eq(loaded[i] + (finishing & (who == i)))  # a transfer ending now counts
            # the loaded piece's context is active from the cycle its transfer ends (its records are
            # all written by then): the sequencer may start its first step in that very cycle
            m.d.comb += getattr(self, f"active_{k}").eq(Mux(done_now > 0, done_now - 1, 0))
            # every piece live from `nxt` on is loaded: the core's need table (a memory initialised
            # from the plan) gives, per step, 1 + the last of its pieces whose first live step it is
            need = [0] * (max(plan.live_start[k]) + 1)
            for j, t in enumerate(plan.live_start[k]):
                need[t] = j + 1
            needed = FieldTable(m, f"need{k}", [{"pieces": v} for v in need]).read(m, self.nxt)["pieces"]
            ready = ready & ((self.nxt >= len(need)) | (done_now >= needed))
        m.d.comb += self.ready.eq(ready)
        return m

    def _piece_table(self, m: Module, k: int) -> FieldTable:
        """Core ``k``'s piece table: per piece of its timeline its first DRAM record, its number of
        records, its transfer's cycles and the step after its last live one."""
        plan = self.plan
        rows = [
            {"first_rec": f, "n_rec": n, "duration": d, "live_end": e}
            for f, n, d, e in zip(plan.first_rec[k], plan.n_rec[k], plan.duration[k], plan.live_end[k])
        ]
        return FieldTable(m, f"pieces{k}", rows)
