"""One neuromorphic core in Amaranth: event FIFO, synapse/membrane/parameter SRAMs, lanes, IF/DIF unit.

Implements ``docs/architecture.md`` sections 3, 4.1 (phase I) and 4.4 (phase F): the event FIFO, the
phase-I issue unit of ``dense``, ``pool_dense`` and ``identity`` slots and partial sums, phase F of IF
and DIF units and the write-back. The other datapaths are units of their own, functions of the core
under elaboration: ``conv`` slots and tile slices (:mod:`.conv_unit`), spike x spike products
(:mod:`.product_unit`), max-pools (:mod:`.pool_unit`), MBE units (:mod:`.mbe_unit`), and the output
encoder and partial-sum scan (:mod:`.output_unit`); memory images are :mod:`.memories`, flit formats
:mod:`.flits`. For a ``neuron`` piece with ``dense`` and ``identity`` slots:

* Phase I. Flits enter the event FIFO (``input_fifo_events`` deep; ``events.ready`` is "had room
  at the start of the cycle"). An idle core pops the head at cycle ``p`` and issues one lane group
  per cycle: a ``dense`` event from source ``s`` issues groups ``g = 0 .. ceil(n/lanes) - 1`` at
  synapse word ``base + (s - lo) * row_words + g`` and membrane word ``g``, adding
  ``val * w[l]`` to lane ``l`` (``val`` = 1 for a spike, the payload for a graded flit); an
  ``identity`` event adds ``val * weight`` to local neuron ``s - first`` (1 cycle, none if outside the
  piece). The next pop is at ``p + cost``, so event ``e`` starts at ``max(arrival(e), end(e-1))``.
  ``i_done`` rises ``pipeline_cycles`` after the end of the last event (``last_end``).
* Phase F. On ``fire`` at step ``t`` (input ``step``), if ``in_start <= t < out_start + T``, groups
  ``g = 0 .. ceil(n/lanes) - 1`` are issued one per cycle: ``v += bias`` if
  ``in_start <= t < in_start + T``; for neuron pieces, if ``out_start <= t < out_start + T``:
  ``s = v >= threshold``, ``v -= threshold * s``, and the spike bits go to history row
  ``t mod spike_history_steps``. ``f_done`` rises ``ceil(n/lanes)`` cycles after ``fire``.

Datapath: a group is issued (addresses to synchronous SRAM read ports) in one cycle and added and
written back in the next; the membrane read port is transparent to the write port, so back-to-back
groups on the same word need no stall. ``busy`` counts issue cycles since ``start`` (the core's
per-step busy cycles of the simulator). The debug ports read membranes and history rows
combinationally, for the benches only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES

from .conv_unit import conv_unit, tile_local
from .flits import (
    CYCLE_BITS,
    SHIFT_BITS,
    STEP_BITS,
    TYPE_GRADED,
    TYPE_PARTIAL,
    TYPE_SPIKE,
    flit_layout,
    out_flit_layout,
)
from .mbe_unit import mbe_issue, mbe_lane
from .memories import banked_membrane, count_words, hist_bits, memory_words, sum_words
from .output_unit import encoder, partial_sums
from .piece import (
    CONTEXT_REGISTERS,
    CONV_REGISTERS,
    MBE_REGISTERS,
    OPERAND_REGISTERS,
    REGISTER_BITS,
    ROUTE_REGISTERS,
    TILE_REGISTERS,
    PieceInit,
    check_hardware,
    context_registers,
    conv_values,
    empty_piece,
    is_conv,
    is_tile,
    membrane_order,
    operand_bases,
    slice_extent,
    structure_key,
)
from .pool_unit import (
    pool_count_write,
    pool_fire,
    pool_local,
    pool_state,
    pool_sum_word,
    pool_write,
)
from .product_unit import product_unit

__all__ = [
    "Core",
    "banked_membrane",
    "count_words",
    "sum_words",
    "flit_layout",
    "out_flit_layout",
    "memory_words",
    "hist_bits",
    "STEP_BITS",
    "CYCLE_BITS",
    "SHIFT_BITS",
    "TYPE_SPIKE",
    "TYPE_GRADED",
    "TYPE_PARTIAL",
]


class Core(wiring.Component):
    """One core holding one piece, its memories initialised from the piece's images.

    Parameters
    ----------
    hw : HardwareConfig
        Widths and sizes (``[core]``).
    piece : PieceInit, optional
        The piece it holds (default: an idle core).
    extra_dense_cycles : int
        Test hook: adds cycles to every dense event (a deliberately wrong cycle cost for the
        mutation tests). Always 0 in generated hardware.
    product_fault : str
        Test hook of product pieces (mutation tests; empty in generated hardware): ``"extra_cycle"``
        makes every operand event one cycle longer, ``"word_offset"`` sends each lane of a column
        update (operand ``b``) to the next word of its bank, ``"count_one"`` adds 1 to the event's own
        running sum instead of its payload (a count where a payload sum is due).
    shared : dict, optional
        Swap and rounds mode: the core position's memories (``syn``, ``par``, ``hist`` and ``mem`` or
        ``banks``; ``sums``, ``hist_g``, ``lut`` and ``shift`` for pieces with payload sums, payload
        rows, MBE tables and output shifts), used instead of memories of its own initialised from the
        piece; a swap core's loader (:class:`~spikeforge.rtl.swap.SwapCore`) or the rounds-mode DMA
        engine (:mod:`~spikeforge.rtl.rounds`) fills them.
    family : sequence of PieceInit, optional
        Swap and rounds mode: the pieces that share this context (``piece`` among them); a ``conv``
        context (:func:`~spikeforge.rtl.piece.is_conv`) is sized for the largest kernel and channel
        block of them. Default: ``piece`` alone.
    cfg_ports : int
        Swap mode: the register writes per cycle the context takes (ports ``cfg_en``, one bit each,
        ``cfg_addr`` and ``cfg_data``, side by side). The registers of
        :func:`~spikeforge.rtl.piece.register_values` (context, slot and routing-entry values) start
        at ``piece``'s, and ``cfg_en[q]`` sets register ``cfg_addr[q]`` to the low bits of
        ``cfg_data[q]`` at the next clock edge. 0 (resident cores): no write ports, the registers
        keep ``piece``'s values.
    encoder : bool
        Whether the core's flits leave it (section 4.1). Rounds mode: False, its spikes go to DRAM as
        rows and the flit port stays unread; the flit's ``index`` is then the local neuron plus
        ``first`` (a piece fed by a product loads no neuron index table).
    """

    def __init__(
        self,
        hw: HardwareConfig,
        piece: PieceInit | None = None,
        *,
        extra_dense_cycles: int = 0,
        product_fault: str = "",
        shared: dict | None = None,
        cfg_ports: int = 0,
        family: Sequence[PieceInit] = (),
        encoder: bool = True,
    ) -> None:
        check_hardware(hw)
        self.hw = hw
        self.piece = piece if piece is not None else empty_piece(hw)
        self.family = list(family) or [self.piece]
        self.encoder = bool(encoder)
        keys = {structure_key(q) for q in self.family}
        if len(keys) != 1 or structure_key(self.piece) not in keys:
            raise ValueError("a context's family must be pieces of one structure, its piece among them")
        # swap mode (rtl/swap.py): the synapse, membrane, parameter and history memories belong to
        # the core position and are shared by the contexts of its pieces; they start empty and the
        # DMA loader fills them from DRAM (keys syn, par, hist and mem or banks)
        self.shared = shared
        self.extra_dense_cycles = int(extra_dense_cycles)
        if product_fault not in ("", "extra_cycle", "word_offset", "count_one"):
            raise ValueError(f"unknown product_fault {product_fault!r}")
        self.product_fault = product_fault
        c = hw.core
        self.groups_max = c.neurons // c.lanes
        self.cfg_ports = int(cfg_ports)
        # slots and routing entries: as many as the most of the family's pieces (each loads its own, and
        # the entries' count); its register addresses, by name
        self.max_entries = max(len(q.routing) for q in self.family)
        self.max_slots = max(len(q.slots) for q in self.family)
        self.layout = context_registers(self.family)
        self.reg_bits = index_bits(len(self.layout))
        cfg = {}
        if self.cfg_ports:  # the swap loader's register writes
            q = self.cfg_ports
            cfg = {"cfg_en": In(q), "cfg_addr": In(self.reg_bits * q), "cfg_data": In(REGISTER_BITS * q)}
        super().__init__(
            {
                **cfg,
                "events": In(stream.Signature(out_flit_layout(hw))),  # x, y unused: the router's business
                "step": In(STEP_BITS),
                "start": In(1),
                "fire": In(1),
                "pphase": In(1),  # with `start`: the event phase that begins is phase P (partial sums)
                "plive": Out(1),  # a partial piece with sums to scan at `step`: phase P runs (the sequencer)
                "i_done": Out(1),
                "f_done": Out(1),
                "last_end": Out(CYCLE_BITS),
                "busy": Out(CYCLE_BITS),
                "sent": Out(CYCLE_BITS),
                "dbg_maddr": In(index_bits(self.groups_max)),
                "dbg_v": Out(c.lanes * c.v_bits),
                "dbg_haddr": In(index_bits(c.spike_history_steps)),
                "dbg_h": Out(c.neurons * hist_bits(hw)),
                # the MBE ViT units' other SRAM state (section 8): running payload sums, graded max-pool
                # maxima, output-shift words; word dbg_saddr, lanes values of v_bits (sign-extended)
                "dbg_saddr": In(16),
                "dbg_s": Out(c.lanes * c.v_bits),
                "rd_addr": In(index_bits(self.groups_max)),  # the host's read-out (section 5), output pieces
                "rd_data": Out(c.lanes * c.v_bits),  # membrane word rd_addr of the cycle before
                "flits": Out(stream.Signature(out_flit_layout(hw))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        c, p = self.hw.core, self.piece
        lanes, vb, wb = c.lanes, c.v_bits, c.weight_bits
        gmax = self.groups_max
        # n and its lane groups (cycles per dense event and per phase F), a tile's and a conv slot's
        # geometry: a loadable conv context's registers, else constants (a resident core's registers
        # never change, and constants keep its logic as small as before); sizes and flags always come
        # from the piece's constants (groups_c)
        conv_regs = [Signal(16, name=k, init=v) for k, v in zip(CONV_REGISTERS, conv_values(p))]
        self.geom = self._geometry(m, conv_regs)
        n, groups = self.geom["n"], self.geom["groups"]
        groups_c = -(-p.n // lanes)

        dbg_sources = []  # (words, memory, bits per lane) read by dbg_saddr, one after the other
        # ---- memories (section 3), initialised from the piece's images
        init = {name: words for name, words, _ in memory_words(self.hw, p)}
        syn_words = len(init["synapse"])
        sh = self.shared
        # fed by a product (section 4.3): a product piece, or mbe / output units with the two operand slots
        is_product = any(sl.kind == SLOT_CODES["product_a"] for sl in p.slots)
        graded_sums = p.graded_sums and is_product
        graded_pool = p.graded_sums and p.kind == PIECE_CODES["maxpool"]  # a max-pool of MBE payloads (4.4)
        k2 = p.slots[0].kernel ** 2 if graded_pool and p.slots else 1  # sums per unit read in phase F
        if graded_pool or graded_sums:
            # running payload sums: the same SRAM bits as words of `lanes` v_bits sums; a graded
            # max-pool's sum w of unit j at word w * groups + j // lanes, lane j % lanes (section 4.4),
            # a product's Abar then Bbar rows (section 4.3). A resident core's sums start as the
            # synapse image (zeros); a swap core's loader writes those zeros into its `sums` view
            pw = sum_words(self.hw, p)
            if sh is None:
                m.submodules.syn = syn = Memory(shape=unsigned(lanes * vb), depth=pw, init=init["synapse"])
            else:
                syn = sh["sums"]
            dbg_sources.append((pw, syn, vb))
        elif sh is None:
            m.submodules.syn = syn = Memory(shape=unsigned(lanes * wb), depth=syn_words, init=init["synapse"])
        else:
            syn = sh["syn"]
        conv_banked = banked_membrane(self.hw, p) and not is_product  # conv channel groups that start mid-word
        self.conv_banked = conv_banked
        banked = is_product or conv_banked  # one membrane bank per lane, each with its own address
        order = membrane_order(self.hw, p)
        if banked and sh is not None:
            banks = sh["banks"]
        elif banked:
            vmask = (1 << vb) - 1
            banks = []
            for lane in range(lanes):
                bank = Memory(shape=unsigned(vb), depth=gmax, init=[w >> (lane * vb) & vmask for w in init["membrane"]])
                m.submodules[f"mem_bank{lane}"] = bank
                banks.append(bank)
        elif sh is not None:
            mem = sh["mem"]
        else:
            m.submodules.mem = mem = Memory(shape=unsigned(lanes * vb), depth=gmax, init=init["membrane"])
        # parameter SRAM: threshold and bias per lane (v0 is only needed when the piece is loaded)
        if sh is None:
            m.submodules.par = par = Memory(shape=unsigned(lanes * 2 * vb), depth=gmax, init=init["params"])
        else:
            par = sh["par"]
        hdepth = c.spike_history_steps  # one row of `neurons` bits per step, written a lane group at a time
        is_mbe = p.kind == PIECE_CODES["mbe"]
        hb = vb if (is_mbe or graded_pool) else 1  # a v_bits payload per unit (sections 4.4, 4.5)
        if sh is None:
            m.submodules.hist = hist = Memory(shape=unsigned(c.neurons * hb), depth=hdepth, init=[])
        else:  # a swap core keeps a spike-bit and a payload history when its pieces need both (a
            # rounds core position names its one history, hist_bits wide, both ways)
            hist = sh["hist" if hb == 1 else "hist_g"]

        if is_product or p.kind == PIECE_CODES["maxpool"]:  # running counts or sums: read-modify-write
            syn_cnt_w = syn.write_port()
            syn_rd = syn.read_port(transparent_for=(syn_cnt_w,))
        else:
            syn_rd = syn.read_port()
        if banked:
            bank_wr = [b.write_port() for b in banks]
            bank_rd = [b.read_port(transparent_for=(w,)) for b, w in zip(banks, bank_wr)]
            dbg_banks = [b.read_port(domain="comb") for b in banks]
            m.d.comb += [d.addr.eq(self.dbg_maddr) for d in dbg_banks]
            m.d.comb += self.dbg_v.eq(Cat(*(d.data for d in dbg_banks)))
            mem_rd_data = Cat(*(r.data for r in bank_rd))
        else:
            mem_wr = mem.write_port()
            mem_rd = mem.read_port(transparent_for=(mem_wr,))
            dbg_mem = mem.read_port(domain="comb")
            m.d.comb += [dbg_mem.addr.eq(self.dbg_maddr), self.dbg_v.eq(dbg_mem.data)]
            mem_rd_data = mem_rd.data
        if p.kind == PIECE_CODES["output"]:
            # the host reads the accumulators after the last step (section 5): a synchronous read
            # port of the membrane SRAM (or its banks), one lane group per cycle, one cycle latency
            host_rds = [b.read_port() for b in banks] if banked else [mem.read_port()]
            m.d.comb += [r.addr.eq(self.rd_addr) for r in host_rds]
            m.d.comb += self.rd_data.eq(Cat(*(r.data for r in host_rds)))
        par_rd = par.read_port()
        hist_wr = hist.write_port(granularity=hb if is_product else lanes * hb)  # banked: one entry per unit
        dbg_hist = hist.read_port(domain="comb")
        m.d.comb += [
            dbg_hist.addr.eq(self.dbg_haddr),
            self.dbg_h.eq(dbg_hist.data),
        ]

        # ---- slot and context registers (written only by a swap core's loader, between pieces)
        nslot = 1 << index_bits(c.slots)
        slot_list = list(p.slots) + [None] * (nslot - len(p.slots))

        def reg(name, shape, init):
            return Signal(shape, name=name, init=init)

        s_kind = Array(reg(f"slot{k}_kind", 3, s.kind if s else 7) for k, s in enumerate(slot_list))
        s_lo = Array(reg(f"slot{k}_lo", 24, s.lo if s else 0) for k, s in enumerate(slot_list))
        s_base = Array(reg(f"slot{k}_base", 16, s.base if s else 0) for k, s in enumerate(slot_list))
        s_weight = Array(reg(f"slot{k}_weight", signed(vb), s.weight if s else 0) for k, s in enumerate(slot_list))
        s_rw = Array(
            reg(f"slot{k}_row_words", range(gmax + 1), s.row_words if s else 0) for k, s in enumerate(slot_list)
        )
        # the context registers (a swap core's loader rewrites them with a piece of the same structure)
        cols, rows = self.hw.array.cols, self.hw.array.rows
        r = self.regs = {  # in CONTEXT_REGISTERS' order
            "acc_start": reg("acc_start", STEP_BITS, p.in_start if p.acc_start < 0 else p.acc_start),
            "in_start": reg("in_start", STEP_BITS, p.in_start),
            "out_start": reg("out_start", STEP_BITS, p.out_start),
            "timesteps": reg("timesteps", STEP_BITS, p.timesteps),
            "first": reg("first", 24, p.first),
            "root_x": reg("root_x", index_bits(cols), p.root_x),
            "root_y": reg("root_y", index_bits(rows), p.root_y),
            "entries": reg("entries", range(self.max_entries + 1), len(p.routing)),
        }
        # as many routing entries as the most of the family's pieces (the piece's own first, then zeros:
        # a piece with fewer loads its count, and the encoder skips the entries past it)
        table = np.zeros((self.max_entries, 6), np.int64)
        table[: len(p.routing)] = np.asarray(p.routing, np.int64).reshape(-1, p.routing.shape[-1])[:, :6]
        routes = [
            [
                reg(f"route{k}_{f}", shape, int(v))
                for f, shape, v in zip(
                    ROUTE_REGISTERS,
                    (
                        range(c.neurons),
                        range(c.neurons),
                        index_bits(cols),
                        index_bits(rows),
                        index_bits(c.slots),
                        range(c.spike_history_steps),
                    ),
                    e[:6],
                )
            ]
            for k, e in enumerate(table.tolist())
        ]
        self.routes = routes
        # a tile slice's origin (its extent shapes the logic): channels c0 .., positions (y0 .., x0 ..)
        self.origin = {k: reg(k, 16, int(p.geometry[k])) for k in TILE_REGISTERS} if is_tile(p) else {}
        # a piece fed by a product: each operand table's lowest source index (the tables are offsets)
        self.operand_base = [reg(k, 24, v) for k, v in zip(OPERAND_REGISTERS, operand_bases(p))]
        # an mbe piece: X's clip range and the payload's start B (section 4.5)
        mbe_values = [int(v) for v in p.params[-1][:3]] if p.kind == PIECE_CODES["mbe"] else []
        self.mbe_regs = [reg(k, signed(vb), v) for k, v in zip(MBE_REGISTERS, mbe_values)]
        # the context's registers in address order (context_registers): context, then per slot lo, base,
        # weight, row_words, kind (as many slots as the most of the family's pieces), then a tile slice's
        # origin, a conv piece's geometry, a product's operand bases, an mbe piece's constants, then per entry
        self.slot_regs = [(s_lo[k], s_base[k], s_weight[k], s_rw[k], s_kind[k]) for k in range(self.max_slots)]
        loadable = list(r.values()) + [x for regs in self.slot_regs for x in regs]
        loadable += list(self.origin.values()) + conv_regs + self.operand_base + self.mbe_regs
        loadable += [x for e in routes for x in e]
        assert tuple(r) == CONTEXT_REGISTERS and len(loadable) == len(self.layout)
        for q in range(self.cfg_ports):  # the loader's writes: distinct registers per cycle
            addr = self.cfg_addr.word_select(q, self.reg_bits)
            value = self.cfg_data.word_select(q, REGISTER_BITS)
            with m.If(self.cfg_en[q]):
                with m.Switch(addr):
                    for a, x in enumerate(loadable):
                        with m.Case(a):
                            m.d.sync += x.eq(value[: len(x)])
        is_neuron = p.kind in (PIECE_CODES["neuron"], PIECE_CODES["product"])  # IF/DIF units
        is_maxpool = p.kind == PIECE_CODES["maxpool"]
        mp = pool_state(self, m) if is_maxpool and not graded_pool else {}
        in_start, out_start, T = r["in_start"], r["out_start"], r["timesteps"]

        # ---- event FIFO
        m.submodules.fifo = q = fifo.SyncFIFO(width=len(self.events.payload.as_value()), depth=c.input_fifo_events)
        m.d.comb += [
            q.w_data.eq(self.events.payload.as_value()),
            q.w_en.eq(self.events.valid),
            self.events.ready.eq(q.w_rdy),
        ]
        head = data.View(out_flit_layout(self.hw), q.r_data)

        # ---- phase-I issue unit
        now = Signal(CYCLE_BITS)  # cycles since `start`
        cyc = Signal(CYCLE_BITS)
        m.d.comb += now.eq(Mux(self.start, 0, cyc))
        m.d.sync += cyc.eq(now + 1)
        # issue cycles left of the current event: a dense event's groups, or a conv event's reached taps
        # times its channel groups (up to kh * kw * ceil(cb/lanes), more than gmax on a small core)
        conv_max = self.geom["KH"] * self.geom["KW"] * self.geom["GC"] if "KH" in self.geom else 0
        rem = Signal(range(max(gmax + self.extra_dense_cycles + 2, conv_max + 1)))
        g = Signal(range(gmax + 1))
        cur_addr = Signal(range(syn_words + gmax + 1))  # synapse word of the next group
        cur_val = Signal(signed(vb))
        cur_dense = Signal()
        last_end = Signal(CYCLE_BITS)
        had = Signal()  # an event was popped since `start`
        busy = Signal(CYCLE_BITS)
        m.d.comb += [self.last_end.eq(last_end), self.busy.eq(busy)]

        # one issued group: (valid, membrane word, synapse word used?, val, identity lane mask / weight)
        iss_valid = Signal()
        iss_maddr = Signal(range(max(2, gmax)))
        iss_saddr = Signal(range(syn_words + gmax + 1))
        iss_val = Signal(signed(vb))
        iss_dense = Signal()
        iss_lane = Signal(range(max(2, lanes)))
        iss_hit = Signal()
        iss_weight = Signal(signed(vb))
        pool_ev = Signal()  # a graded max-pool's payload event: its sum's word is read this cycle
        pool_lane = Signal(range(max(2, lanes)))

        kind = s_kind[head.slot]
        is_psum = head.type == TYPE_PARTIAL  # a partial sum for local neuron `index` (section 4.2)
        conv = None
        prod = None
        val = Mux(head.type == TYPE_SPIKE, 1, head.payload)
        row = Signal(24)  # the event's row in its slot: source index (dense) or channel (pool_dense), minus lo
        m.d.comb += row.eq((head.index - s_lo[head.slot]).as_unsigned()[:24])
        for k, sl in enumerate(p.slots):
            if sl.kind == SLOT_CODES["pool_dense"]:
                _, sh, sw = sl.src_shape
                with m.If(head.slot == k):
                    m.d.comb += row.eq((head.index // (sh * sw) - s_lo[k]).as_unsigned()[:24])
        local = Signal(signed(26))
        if is_tile(p) and any(sl.kind == SLOT_CODES["identity"] for q in self.family for sl in q.slots):
            # channel x tile slice: identity source (ch, y, x) -> local, -1 outside
            m.d.comb += local.eq(Mux(is_psum, head.index, tile_local(self, head.index)))
        else:
            m.d.comb += local.eq(Mux(is_psum, head.index, head.index - r["first"]))
        clear_busy = self.start & ~self.pphase  # busy counts the whole step: phases I, P and F
        f_active = Signal()  # phase F in progress
        idle = rem == 0
        pop = Signal()
        m.d.comb += pop.eq(idle & q.r_rdy & ~f_active & ~self.fire)
        if any(sl.kind == SLOT_CODES["conv"] for sl in p.slots):
            conv = conv_unit(self, m, head, pop, idle, cur_dense, s_lo, s_base, s_rw, kind, is_psum)
        prod = product_unit(self, m, head, pop, idle, kind, is_psum, val, s_weight) if is_product else None
        m.d.comb += q.r_en.eq(pop)
        with m.If(self.start):
            m.d.sync += [last_end.eq(0), had.eq(0)]
        with m.If(clear_busy):
            m.d.sync += busy.eq(0)
        with m.If(pop):
            m.d.sync += had.eq(1)
            if conv is not None:
                with m.If(~is_psum & (kind == SLOT_CODES["conv"])):
                    m.d.comb += [iss_valid.eq(conv["any"]), iss_dense.eq(1), iss_val.eq(val)]
                    m.d.comb += [iss_maddr.eq(conv["maddr"]), iss_saddr.eq(conv["saddr"])]
                    m.d.sync += [rem.eq(conv["cost"] - 1), last_end.eq(now + conv["cost"]), cur_val.eq(val)]
                    m.d.sync += [cur_dense.eq(0)]
            if prod is not None:
                is_prod = ~is_psum & ((kind == SLOT_CODES["product_a"]) | (kind == SLOT_CODES["product_b"]))
                with m.If(is_prod):  # group 0 of the row or column now, ceil(m/lanes) groups, then the count
                    m.d.comb += [iss_valid.eq(1), iss_dense.eq(0), iss_val.eq(prod["w"]), iss_saddr.eq(prod["saddr"])]
                    cost = prod["groups"] + 1 + (self.product_fault == "extra_cycle")
                    m.d.sync += [rem.eq(cost - 1), last_end.eq(now + cost), cur_dense.eq(0)]
            rowwise = (kind == SLOT_CODES["dense"]) | (kind == SLOT_CODES["pool_dense"])
            with m.Elif(~is_psum & rowwise) if (conv is not None or prod is not None) else m.If(~is_psum & rowwise):
                cost = groups + self.extra_dense_cycles
                m.d.comb += [
                    iss_valid.eq(groups > 0),
                    iss_dense.eq(1),
                    iss_maddr.eq(0),
                    iss_saddr.eq(s_base[head.slot] + row * s_rw[head.slot]),
                    iss_val.eq(val),
                ]
                m.d.sync += [
                    rem.eq(cost - 1),
                    g.eq(1),
                    cur_addr.eq(s_base[head.slot] + row * s_rw[head.slot] + 1),
                    cur_val.eq(val),
                    cur_dense.eq(1),
                    last_end.eq(now + cost),
                ]
            with m.Else():  # identity, partial sum (and any other slot code): one cycle
                m.d.comb += [
                    iss_valid.eq(is_psum | (kind == SLOT_CODES["identity"])),
                    iss_dense.eq(0),
                    iss_maddr.eq(local.as_unsigned() // lanes),
                    iss_lane.eq(local.as_unsigned() % lanes),
                    iss_hit.eq((local >= 0) & (local < n)),
                    iss_weight.eq(Mux(is_psum, 1, s_weight[head.slot])),
                    iss_val.eq(val),
                ]
                m.d.sync += [rem.eq(0), last_end.eq(now + 1)]
                if graded_pool:  # read the sum's word now, add the payload and write it back next cycle
                    with m.If(~is_psum & (kind == SLOT_CODES["pool"])):
                        paddr, plane = pool_sum_word(self, m, head)
                        m.d.comb += [iss_saddr.eq(paddr), pool_ev.eq(1), pool_lane.eq(plane)]
                elif is_maxpool:  # the count's word (synapse SRAM) and the maximum's (membrane) now
                    with m.If(~is_psum & (kind == SLOT_CODES["pool"])):
                        paddr, plane = pool_sum_word(self, m, head)
                        local, _ = pool_local(self, m, head, p.slots[0].kernel)
                        m.d.comb += [iss_saddr.eq(paddr), pool_ev.eq(1), pool_lane.eq(plane)]
                        m.d.comb += iss_maddr.eq(local // lanes)
            m.d.sync += busy.eq(Mux(clear_busy, 0, busy) + 1)
        with m.Elif(~idle):
            # later groups of a dense event (the extra test cycles issue nothing), or of a conv event
            m.d.comb += [
                iss_valid.eq(cur_dense & (g < groups)),
                iss_dense.eq(1),
                iss_maddr.eq(g),
                iss_saddr.eq(cur_addr),
                iss_val.eq(cur_val),
            ]
            if conv is not None:
                with m.If(conv["active"]):
                    m.d.comb += [iss_valid.eq(conv["any"]), iss_maddr.eq(conv["maddr"]), iss_saddr.eq(conv["saddr"])]
            if prod is not None:  # the k-th lane group of a product event; the last cycle issues nothing
                m.d.comb += [iss_valid.eq(prod["k"] < prod["groups_r"]), iss_dense.eq(0), iss_val.eq(prod["w"])]
                m.d.comb += iss_saddr.eq(prod["saddr"])  # the last cycle reads the event's own count
            m.d.sync += [rem.eq(rem - 1), g.eq(g + 1), cur_addr.eq(cur_addr + 1)]
            m.d.sync += busy.eq(Mux(clear_busy, 0, busy) + 1)
        ended = ~(had & ~self.start) | (now >= last_end + c.pipeline_cycles)
        p_busy = Signal()  # a partial piece scanning or sending its sums
        m.d.comb += self.i_done.eq(~q.r_rdy & idle & ended & ~p_busy)

        # ---- phase-F issue unit
        step = self.step
        fires = groups_c > 0 and p.kind in (
            PIECE_CODES["neuron"],
            PIECE_CODES["output"],
            PIECE_CODES["maxpool"],
            PIECE_CODES["product"],
            PIECE_CODES["mbe"],
        )
        last_update = (in_start + T) if is_maxpool else (out_start + T)  # a max-pool unit emits in its input window
        updating = ((step >= in_start) & (step < last_update)) if fires else Const(0)
        f_max = max(gmax, groups_c * k2)  # issue cycles of the longest phase F (a graded max-pool: groups * kernel**2)
        fk = Signal(range(f_max + 1))
        f_step = Signal(STEP_BITS)
        m.d.comb += self.f_done.eq(~f_active & ~(self.fire & updating))
        f_iss = Signal()
        f_addr = Signal(range(max(2, gmax)))
        f_len = Signal(range(f_max + 2))  # issue cycles of this phase F (an mbe piece: its passes, section 4.5)
        f_len_r = Signal.like(f_len)
        m.d.comb += f_len.eq(groups * k2)  # a graded max-pool: each unit's kernel**2 sums, one per cycle
        with m.If(self.fire & updating):
            m.d.comb += [f_iss.eq(1), f_addr.eq(0)]
            m.d.sync += [fk.eq(1), f_active.eq(f_len > 1), f_step.eq(step), f_len_r.eq(f_len)]
            m.d.sync += busy.eq(busy + 1)
        with m.Elif(f_active):
            m.d.comb += [f_iss.eq(1), f_addr.eq(fk)]
            m.d.sync += [fk.eq(fk + 1), f_active.eq(fk + 1 < f_len_r)]
            m.d.sync += busy.eq(busy + 1)
        f_t = Mux(self.fire, step, f_step)
        bias_on = (f_t >= in_start) & (f_t < in_start + T)
        if is_maxpool:
            fire_on = (f_t >= in_start) & (f_t < in_start + T)
        else:
            fire_on = (f_t >= out_start) & (f_t < out_start + T) if is_neuron else Const(0)
        f_raddr = Signal.like(f_addr)  # the membrane word phase F reads (an mbe pass at k = 0 reads X)
        m.d.comb += f_raddr.eq(f_addr)
        mb = None
        pf = pool_fire(self, m, self.fire & updating, f_iss, f_addr, f_raddr, k2) if graded_pool else None
        if is_mbe:
            mb = mbe_issue(self, m, init["lut"], self.fire & updating, f_iss, f_t, f_len, f_addr, f_raddr)

        # ---- read stage (issue cycle): addresses to the synchronous read ports
        m.d.comb += [syn_rd.addr.eq(Mux(f_iss, pf["saddr"], iss_saddr) if pf else iss_saddr), par_rd.addr.eq(f_addr)]
        if is_product:  # each bank its own word: the lane's neuron of the row or column (phase F: one word)
            m.d.comb += [r.addr.eq(Mux(f_iss, f_raddr, a)) for r, a in zip(bank_rd, prod["addr"])]
        elif conv_banked:  # a conv group: each bank the word of its channel; other events one word for all
            for r, (a, _, _) in zip(bank_rd, conv["lanes"]):
                m.d.comb += r.addr.eq(Mux(f_iss, f_addr, Mux(iss_dense, a, iss_maddr)))
        else:  # f_raddr: an mbe pass at k = 0 reads X instead of its basis block
            m.d.comb += mem_rd.addr.eq(Mux(f_iss, f_raddr, iss_maddr))
        # ---- add / fire and write-back stage (next cycle)
        w_valid = Signal()
        w_f = Signal()
        w_maddr = Signal(range(max(2, gmax)))
        w_val = Signal(signed(vb))
        w_dense = Signal()
        w_lane = Signal(range(max(2, lanes)))
        w_hit = Signal()
        w_weight = Signal(signed(vb))
        w_bias_on = Signal()
        w_fire_on = Signal()
        w_hrow = Signal(range(max(2, hdepth)))
        m.d.sync += [
            w_valid.eq(iss_valid & ~f_iss),
            w_f.eq(f_iss),
            w_maddr.eq(Mux(f_iss, f_addr, iss_maddr)),
            w_val.eq(iss_val),
            w_dense.eq(iss_dense),
            w_lane.eq(iss_lane),
            w_hit.eq(iss_hit),
            w_weight.eq(iss_weight),
            w_bias_on.eq(bias_on),
            w_fire_on.eq(fire_on),
            w_hrow.eq(f_t % c.spike_history_steps),
        ]
        if conv_banked:  # per lane: its channel's word, the synapse lane of its weight, whether it has one
            w_baddr = [Signal(range(max(2, gmax)), name=f"w_baddr{k}") for k in range(lanes)]
            w_bk = [Signal(range(lanes), name=f"w_bk{k}") for k in range(lanes)]
            w_bval = [Signal(name=f"w_bvalid{k}") for k in range(lanes)]
            for k, (a, sl_, ok) in enumerate(conv["lanes"]):
                m.d.sync += [w_baddr[k].eq(a), w_bk[k].eq(sl_), w_bval[k].eq(ok)]
            syn_lanes = Array(syn_rd.data[k * wb : (k + 1) * wb].as_signed() for k in range(lanes))
        if is_product:  # per lane: its neuron's word, the other operand's count, whether the lane has a neuron
            w_baddr = [Signal(range(max(2, gmax)), name=f"w_baddr{k}") for k in range(lanes)]
            w_bsel = [Signal(range(max(2, lanes)), name=f"w_bsel{k}") for k in range(lanes)]
            w_bval = [Signal(name=f"w_bvalid{k}") for k in range(lanes)]
            for k in range(lanes):
                m.d.sync += [
                    w_baddr[k].eq(prod["addr"][k]),
                    w_bsel[k].eq(prod["sel"][k]),
                    w_bval[k].eq(prod["valid"][k]),
                ]
            # each lane's count: its place in the count word read in the issue cycle (section 4.3)
            cb_ = c.v_bits if graded_sums else c.count_bits  # payload sums are signed v_bits words
            w_bcnt = [syn_rd.data.word_select(w_bsel[k], cb_) for k in range(lanes)]
            if graded_sums:
                w_bcnt = [x.as_signed() for x in w_bcnt]
            # the event's own count: read in its last cycle, written back incremented in the next
            w_inc = Signal()
            w_inc_lane = Signal(range(max(2, lanes)))
            w_inc_addr = Signal.like(iss_saddr)
            w_inc_val = Signal(signed(c.v_bits))  # what the event adds to its own count or sum
            m.d.sync += [w_inc.eq(prod["inc"]), w_inc_lane.eq(prod["inc_lane"]), w_inc_addr.eq(iss_saddr)]
            m.d.sync += w_inc_val.eq(1 if self.product_fault == "count_one" else prod["val"])
            bumped = Cat(
                (syn_rd.data[k * cb_ : (k + 1) * cb_] + Mux(w_inc_lane == k, w_inc_val, 0))[:cb_] for k in range(lanes)
            )
            m.d.comb += [syn_cnt_w.addr.eq(w_inc_addr), syn_cnt_w.data.eq(bumped), syn_cnt_w.en.eq(w_inc)]
            occupied = Array(
                Const(sum(1 << k for k in range(lanes) if order[w * lanes + k] >= 0), lanes) for w in range(gmax)
            )
            if mb is not None:  # an mbe piece's units sit at the same bank positions in every block
                mb["occupied"] = occupied
        new_v = []
        spikes = []
        for lane in range(lanes):
            v = mem_rd_data[lane * vb : (lane + 1) * vb].as_signed()
            w = syn_rd.data[lane * wb : (lane + 1) * wb].as_signed()
            th = par_rd.data[(2 * lane) * vb : (2 * lane + 1) * vb].as_signed()
            b = par_rd.data[(2 * lane + 1) * vb : (2 * lane + 2) * vb].as_signed()
            add = Mux(w_dense, w_val * w, Mux(w_hit & (w_lane == lane), w_val * w_weight, 0))
            if is_product:
                add = Mux(w_bval[lane], w_val * w_bcnt[lane], 0)
            elif conv_banked:  # the weight of this bank's channel: the synapse word rotated
                add = Mux(w_dense, Mux(w_bval[lane], w_val * syn_lanes[w_bk[lane]], 0), add)
            v_in = Signal(signed(vb), name=f"v_in{lane}")
            m.d.comb += v_in.eq(v + add)
            vb_ = Signal(signed(vb), name=f"v_bias{lane}")
            m.d.comb += vb_.eq(v + Mux(w_bias_on, b, 0))
            in_piece = occupied[w_maddr][lane] if is_product else (w_maddr * lanes + lane) < n
            s = Signal(name=f"spike{lane}")
            if graded_pool:  # its emissions are payloads (_pool_write), no spike bits
                m.d.comb += s.eq(0)
            elif is_maxpool:  # the marks of this lane group (section 4.4), cleared below
                m.d.comb += s.eq(w_fire_on & (mp["marks"] >> (w_maddr * lanes))[lane] & in_piece)
            else:
                m.d.comb += s.eq(w_fire_on & (vb_ >= th) & in_piece)
            v_f = Signal(signed(vb), name=f"v_fire{lane}")
            m.d.comb += v_f.eq(vb_ - Mux(s, th, 0))
            new_v.append(Mux(w_f, v_f, v_in))
            spikes.append(s)
            if mb is not None:  # a basis pass of an mbe piece replaces the IF update
                u, pay = mbe_lane(self, m, mb, lane, v)
                new_v[-1] = Mux(w_f & mb["w_basis"], u, new_v[-1])
                mb["pay"].append(pay)
        m.d.comb += hist_wr.addr.eq(w_hrow)
        if conv_banked:
            for k in range(lanes):
                m.d.comb += [
                    bank_wr[k].addr.eq(Mux(w_f | ~w_dense, w_maddr, w_baddr[k])),
                    bank_wr[k].data.eq(new_v[k]),
                    bank_wr[k].en.eq(w_f | (w_valid & (~w_dense | w_bval[k]))),
                ]
            m.d.comb += [
                hist_wr.data.eq(Cat(*spikes).replicate(gmax)),
                hist_wr.en.eq(Mux(w_f & w_fire_on, (Const(1, gmax) << w_maddr)[:gmax], 0)),
            ]
        elif is_product:  # lane l of word w is local neuron order[w * lanes + l]: its history bit
            for k in range(lanes):
                m.d.comb += [
                    bank_wr[k].addr.eq(Mux(w_f, w_maddr, w_baddr[k])),
                    bank_wr[k].data.eq(new_v[k]),
                    bank_wr[k].en.eq(w_f | (w_valid & w_bval[k])),
                ]
            pos = {int(q): i for i, q in enumerate(order) if q >= 0}
            bits = [spikes[pos[q] % lanes] if q in pos else Const(0) for q in range(c.neurons)]
            ens = [(w_f & w_fire_on & (w_maddr == pos[q] // lanes)) if q in pos else Const(0) for q in range(c.neurons)]
            m.d.comb += [hist_wr.data.eq(Cat(*bits)), hist_wr.en.eq(Cat(*ens))]
        else:
            m.d.comb += [
                mem_wr.addr.eq(w_maddr),
                mem_wr.data.eq(Cat(*new_v)),
                mem_wr.en.eq(w_valid | (w_f & (0 if is_maxpool else 1))),
                hist_wr.data.eq(Cat(*spikes).replicate(gmax)),
                hist_wr.en.eq(Mux(w_f & w_fire_on, (Const(1, gmax) << w_maddr)[:gmax], 0)),
            ]
        if mb is not None:  # payloads: summed over the passes, to the history row after the last one
            with m.If(w_f & mb["w_basis"]):
                m.d.sync += mb["acc"][mb["w_g"]].eq(Cat(*mb["pay"]))
            last = w_f & mb["w_basis"] & (mb["w_pass"] == p.bases)
            if is_product:  # units on the skewed banks: lane l of word w is unit order[w * lanes + l]
                pos = {int(q): i for i, q in enumerate(order) if q >= 0}
                ents = [mb["out"][pos[q] % lanes] if q in pos else Const(0, vb) for q in range(c.neurons)]
                ens = [(last & (mb["w_g"] == pos[q] // lanes)) if q in pos else Const(0) for q in range(c.neurons)]
                m.d.comb += [hist_wr.data.eq(Cat(*ents)), hist_wr.en.eq(Cat(*ens))]
            else:
                m.d.comb += [
                    hist_wr.data.eq(Cat(*mb["out"]).replicate(gmax)),
                    hist_wr.en.eq(Mux(last, (Const(1, gmax) << mb["w_g"])[:gmax], 0)),
                ]
            if mb["shm"] is not None:  # pass 1 at k = 0 writes each unit's shift word (section 4.5)
                sh_wr = mb["shm"].write_port()
                m.d.comb += [
                    sh_wr.addr.eq(mb["w_g"]),
                    sh_wr.data.eq(Cat(*mb["sh"])),
                    sh_wr.en.eq(w_f & mb["w_basis"] & mb["w_k0"] & (mb["w_pass"] == 1)),
                ]
                dbg_sources.append((gmax, mb["shm"], SHIFT_BITS))
        if is_maxpool and not graded_pool:
            pool_count_write(
                self, m, mp, syn_rd, syn_cnt_w, mem_rd_data, mem_wr, iss_saddr, iss_maddr, pool_ev, pool_lane
            )
            with m.If(w_f):
                group = Const((1 << lanes) - 1, c.neurons) << (w_maddr * lanes)
                m.d.sync += mp["marks"].eq(mp["marks"] & ~group[: len(mp["marks"])])
            words = max(1, p.slots[0].kernel ** 2 * groups_c)
            dbg_sources.append((words, syn, (c.count_bits, False)))
        if graded_pool:
            pool_write(
                self,
                m,
                pf,
                syn_rd,
                syn_cnt_w,
                mem_rd_data,
                mem_wr,
                hist_wr,
                iss_saddr,
                w_f,
                w_maddr,
                pool_ev,
                pool_lane,
                iss_val,
            )
        pmode = Signal()  # the event phase in progress is phase P
        with m.If(self.start):
            m.d.sync += pmode.eq(self.pphase)
        pmode_now = Mux(self.start, self.pphase, pmode)
        encoder(self, m, hist, pmode_now)
        if p.kind == PIECE_CODES["partial"] and groups_c > 0:
            partial_sums(self, m, banks if banked else [mem], bank_wr if banked else [mem_wr], pmode_now, p_busy)
        else:  # no sums to scan: phase P does not run for this core
            m.d.comb += [p_busy.eq(0), self.plive.eq(0)]
        self._dbg_state(m, dbg_sources)
        return m

    def _geometry(self, m: Module, conv_regs: list[Signal]) -> dict:
        """What of the piece's size the logic reads: ``n`` and its lane groups ``ceil(n/lanes)``, a tile
        slice's extent ``cb, th, tw`` and population ``pop_h, pop_w``, a conv slot's source ``src_h,
        src_w``, ``kh, kw``, ``stride`` and ``pad``. In a loadable conv context (``cfg_ports``,
        :func:`~spikeforge.rtl.piece.is_conv`) they are its :data:`~spikeforge.rtl.piece.CONV_REGISTERS`
        (``n = cb * th * tw``), else the piece's constants. ``KH``, ``KW``, ``GC``: the largest kernel
        and ``ceil(cb/lanes)`` of the family, which size the conv unit."""
        c, p = self.hw.core, self.piece
        lanes = c.lanes
        geo: dict = {"n": p.n, "groups": -(-p.n // lanes)}
        if is_tile(p):
            cb, th, tw = slice_extent(p)
            geo.update(cb=cb, th=th, tw=tw, pop_h=p.shape[1], pop_w=p.shape[2])
        conv = SLOT_CODES["conv"]
        if any(sl.kind == conv for sl in p.slots):
            sl = next(x for x in p.slots if x.kind == conv)
            geo.update(src_h=sl.src_shape[1], src_w=sl.src_shape[2], kh=sl.kernel, kw=sl.kernel_w)
            geo.update(stride=sl.stride, pad=sl.pad)
            slots = [next(x for x in q.slots if x.kind == conv) for q in self.family]
            geo.update(KH=max(x.kernel for x in slots), KW=max(x.kernel_w for x in slots))
            geo["GC"] = max(-(-slice_extent(q)[0] // lanes) for q in self.family)
        if self.cfg_ports and is_conv(p):
            assert p.n == geo["cb"] * geo["th"] * geo["tw"]
            geo.update(zip(CONV_REGISTERS, conv_regs))
            n = Signal(range(c.neurons + 1), name="conv_n")
            groups = Signal(range(c.neurons // lanes + 1), name="conv_groups")
            m.d.comb += [n.eq(geo["cb"] * geo["th"] * geo["tw"]), groups.eq((n + lanes - 1) // lanes)]
            geo.update(n=n, groups=groups)
        return geo

    def _dbg_state(self, m: Module, sources: list) -> None:
        """Debug read of the state that section 8 compares beyond membranes and history (benches only):
        the memories of ``sources`` one after the other from word 0 of ``dbg_saddr``, each lane's value
        extended from its ``bits`` to ``v_bits`` in ``dbg_s`` (sign-extended; ``(bits, False)``: counts,
        zero-extended)."""
        lanes, vb = self.hw.core.lanes, self.hw.core.v_bits
        start = 0
        for words, mem, width in sources:
            bits, is_signed = width if isinstance(width, tuple) else (width, True)
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(self.dbg_saddr - start)
            ext = [Signal(signed(vb), name=f"dbg_s{start}_{k}") for k in range(lanes)]
            vals = [rp.data.word_select(k, bits) for k in range(lanes)]
            m.d.comb += [e.eq(v.as_signed() if is_signed else v) for e, v in zip(ext, vals)]
            with m.If((self.dbg_saddr >= start) & (self.dbg_saddr < start + words)):
                m.d.comb += self.dbg_s.eq(Cat(*ext))
            start += words
