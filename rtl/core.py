"""One neuromorphic core in Amaranth: event FIFO, synapse/membrane/parameter SRAMs, lanes, IF/DIF unit.

Implements ``docs/architecture.md`` sections 3, 4.1 (phase I) and 4.4 (phase F) for ``neuron`` and
``output`` pieces with ``dense`` and ``identity`` slots:

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

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES

from .piece import (
    CONTEXT_REGISTERS,
    MBE_REGISTERS,
    OPERAND_REGISTERS,
    REGISTER_BITS,
    ROUTE_REGISTERS,
    TILE_REGISTERS,
    PieceInit,
    bank_shifts,
    check_hardware,
    empty_piece,
    is_tile,
    membrane_order,
    operand_bases,
    product_banks,
    register_values,
    slice_extent,
)

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
]

STEP_BITS = 16
CYCLE_BITS = 32
TYPE_SPIKE, TYPE_GRADED, TYPE_PARTIAL = 0, 1, 2
#: bits of an MBE unit's output-shift word (section 4.5)
SHIFT_BITS = 7


def flit_layout(hw: HardwareConfig) -> data.StructLayout:
    """The part of a flit the core reads (section 6): ``type``, ``slot``, ``index``, ``payload``."""
    return data.StructLayout(
        {
            "type": unsigned(2),
            "slot": unsigned(index_bits(hw.core.slots)),
            "index": unsigned(24),
            "payload": signed(hw.core.v_bits),
        }
    )


def out_flit_layout(hw: HardwareConfig) -> data.StructLayout:
    """A whole flit (section 6), low to high: ``type``, ``slot``, ``index``, ``payload``, ``x``, ``y``."""
    return data.StructLayout(
        {
            "type": unsigned(2),
            "slot": unsigned(index_bits(hw.core.slots)),
            "index": unsigned(24),
            "payload": signed(hw.core.v_bits),
            "x": unsigned(index_bits(hw.array.cols)),
            "y": unsigned(index_bits(hw.array.rows)),
        }
    )


def _pack(values: np.ndarray, width: int) -> list[int]:
    """Rows of signed integers -> one word per row, element 0 in the low bits."""
    mask = (1 << width) - 1
    out = []
    for row in np.asarray(values, np.int64).tolist():
        word = 0
        for k, v in enumerate(row):
            word |= (int(v) & mask) << (k * width)
        out.append(word)
    return out


def memory_words(hw: HardwareConfig, p: PieceInit) -> list[tuple[str, list[int], int]]:
    """Initial words of the core's memories: ``(name, words, bits per word)`` for synapse, params, membrane.

    Synapse: ``axons * neurons / lanes`` words of ``lanes`` weights (a piece with running payload
    sums: :func:`sum_words` words of ``lanes`` ``v_bits`` sums, from the image); params: ``neurons / lanes``
    words of ``(threshold, bias)`` per lane; membrane: ``neurons / lanes`` words of ``v0`` per lane
    (zero for output pieces). Lane 0 in the low bits, two's complement. Parameters and membranes are
    at the positions of :func:`membrane_order` (lane ``l`` of membrane word ``w`` is word ``w`` of
    bank ``l`` in a product piece).
    """
    c = hw.core
    lanes, gmax = c.lanes, c.neurons // c.lanes
    syn_words = max(1, c.axons * c.neurons // lanes)
    syn_bits = lanes * c.weight_bits
    syn = _pack(p.synapse, c.weight_bits) + [0] * (syn_words - len(p.synapse))
    if p.graded_sums:  # running payload sums: the same SRAM as words of `lanes` v_bits sums
        depth = sum_words(hw, p)
        syn, syn_bits = (
            _pack(p.synapse[:depth], c.v_bits) + [0] * (depth - min(depth, len(p.synapse))),
            lanes * c.v_bits,
        )
    params = np.zeros((gmax * lanes, 3), np.int64)
    order = membrane_order(hw, p)  # product pieces: the skewed banks of section 4.3
    # (an mbe piece's tables follow its n unit words in p.params: only the n unit words go here, see `lut`)
    params[order >= 0] = p.params[order[order >= 0]]
    keeps_v0 = p.kind in (PIECE_CODES["neuron"], PIECE_CODES["product"])
    v0 = params[:, 2].copy() if keeps_v0 else np.zeros(gmax * lanes, np.int64)
    par = _pack(params[:, :2].reshape(gmax, lanes * 2), c.v_bits)
    mem = _pack(v0.reshape(gmax, lanes), c.v_bits)
    out = [
        ("synapse", syn, syn_bits),
        ("params", par, lanes * 2 * c.v_bits),
        ("membrane", mem, lanes * c.v_bits),
    ]
    if p.kind == PIECE_CODES["mbe"]:  # the table words of the parameter image, one per word
        out.append(("lut", _pack(p.params[p.n :], c.v_bits), 3 * c.v_bits))
    return out


def sum_words(hw: HardwareConfig, p: PieceInit) -> int:
    """Words of ``lanes`` ``v_bits`` sums that hold a piece's running payload sums (at least 1): a
    graded product's :func:`count_words`, or ``kernel**2 * ceil(n/lanes)`` for a graded max-pool."""
    lanes = hw.core.lanes
    if p.kind == PIECE_CODES["maxpool"]:
        return max(1, p.slots[0].kernel ** 2 * -(-p.n // lanes))
    ni, nj = p.geometry["i1"] - p.geometry["i0"], p.geometry["j1"] - p.geometry["j0"]
    return max(1, count_words(ni, nj, p.contraction, lanes))


def count_words(ni: int, nj: int, nc: int, lanes: int) -> int:
    """Synapse words of a product block's running counts (section 4.3): ``Abar`` as ``C`` rows of
    ``ceil(|I|/lanes)`` words, then ``Bbar`` as ``C`` rows of ``ceil(|J|/lanes)`` words, ``lanes``
    counts per word."""
    return nc * (-(-ni // lanes) + -(-nj // lanes))


def banked_membrane(hw: HardwareConfig, p: PieceInit) -> bool:
    """Whether the piece's membrane SRAM is ``lanes`` banks with their own addresses: a product piece
    (section 4.3) or conv slots whose channel block is not a multiple of the lanes."""
    conv_cb = next((p.geometry["c1"] - p.geometry["c0"] for sl in p.slots if sl.kind == SLOT_CODES["conv"]), 0)
    return p.kind == PIECE_CODES["product"] or (hw.core.lanes > 1 and conv_cb % hw.core.lanes != 0)


def hist_bits(hw: HardwareConfig) -> int:
    """Bits per neuron of a history row: ``v_bits`` on a core that can hold MBE units (their payloads)."""
    return hw.core.v_bits if "mbe" in hw.core.neuron_models else 1


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
    cfg_ports : int
        Swap mode: the register writes per cycle the context takes (ports ``cfg_en``, one bit each,
        ``cfg_addr`` and ``cfg_data``, side by side). The registers of
        :func:`~spikeforge.rtl.piece.register_values` (context, slot and routing-entry values) start
        at ``piece``'s, and ``cfg_en[q]`` sets register ``cfg_addr[q]`` to the low bits of
        ``cfg_data[q]`` at the next clock edge. 0 (resident cores): no write ports, the registers
        keep ``piece``'s values.
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
    ) -> None:
        check_hardware(hw)
        self.hw = hw
        self.piece = piece if piece is not None else empty_piece(hw)
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
        self.reg_bits = index_bits(len(register_values(self.piece)))
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
        n = p.n
        groups = -(-n // lanes)  # lane groups of this piece: cycles per dense event and per phase F

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
        }
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
            for k, e in enumerate(np.asarray(p.routing, np.int64).tolist())
        ]
        self.routes = routes
        # a tile slice's origin (its extent shapes the logic): channels c0 .., positions (y0 .., x0 ..)
        self.origin = {k: reg(k, 16, int(p.geometry[k])) for k in TILE_REGISTERS} if is_tile(p) else {}
        # a piece fed by a product: each operand table's lowest source index (the tables are offsets)
        self.operand_base = [reg(k, 24, v) for k, v in zip(OPERAND_REGISTERS, operand_bases(p))]
        # an mbe piece: X's clip range and the payload's start B (section 4.5)
        mbe_values = [int(v) for v in p.params[-1][:3]] if p.kind == PIECE_CODES["mbe"] else []
        self.mbe_regs = [reg(k, signed(vb), v) for k, v in zip(MBE_REGISTERS, mbe_values)]
        # register_values' order: context, then per slot lo, base, weight, row_words, then per entry,
        # then a tile slice's origin, a product's operand bases, an mbe piece's constants
        self.slot_regs = [(s_lo[k], s_base[k], s_weight[k], s_rw[k]) for k in range(len(p.slots))]
        loadable = list(r.values()) + [x for regs in self.slot_regs for x in regs]
        loadable += [x for e in routes for x in e] + list(self.origin.values()) + self.operand_base
        loadable += self.mbe_regs
        assert tuple(r) == CONTEXT_REGISTERS and len(loadable) == len(register_values(p))
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
        mp = self._pool_state(m) if is_maxpool and not graded_pool else {}
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
        conv_sl = next((sl for sl in p.slots if sl.kind == SLOT_CODES["conv"]), None)
        conv_max = 0
        if conv_sl is not None:
            conv_max = conv_sl.kernel * conv_sl.kernel_w * -(-slice_extent(p)[0] // lanes)
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
        if is_tile(p) and any(sl.kind == SLOT_CODES["identity"] for sl in p.slots):
            # channel x tile slice: identity source (ch, y, x) -> local, -1 outside
            m.d.comb += local.eq(Mux(is_psum, head.index, self._tile_local(head.index)))
        else:
            m.d.comb += local.eq(Mux(is_psum, head.index, head.index - r["first"]))
        clear_busy = self.start & ~self.pphase  # busy counts the whole step: phases I, P and F
        f_active = Signal()  # phase F in progress
        idle = rem == 0
        pop = Signal()
        m.d.comb += pop.eq(idle & q.r_rdy & ~f_active & ~self.fire)
        if any(sl.kind == SLOT_CODES["conv"] for sl in p.slots):
            conv = self._conv_unit(m, head, pop, idle, cur_dense, s_lo, s_base, s_rw, kind, is_psum)
        prod = self._product_unit(m, head, pop, idle, kind, is_psum, val, s_weight) if is_product else None
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
                        paddr, plane = self._pool_sum_word(m, head)
                        m.d.comb += [iss_saddr.eq(paddr), pool_ev.eq(1), pool_lane.eq(plane)]
                elif is_maxpool:  # the count's word (synapse SRAM) and the maximum's (membrane) now
                    with m.If(~is_psum & (kind == SLOT_CODES["pool"])):
                        paddr, plane = self._pool_sum_word(m, head)
                        local, _ = self._pool_local(m, head, p.slots[0].kernel)
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
        fires = groups > 0 and p.kind in (
            PIECE_CODES["neuron"],
            PIECE_CODES["output"],
            PIECE_CODES["maxpool"],
            PIECE_CODES["product"],
            PIECE_CODES["mbe"],
        )
        last_update = (in_start + T) if is_maxpool else (out_start + T)  # a max-pool unit emits in its input window
        updating = ((step >= in_start) & (step < last_update)) if fires else Const(0)
        f_max = max(gmax, groups * k2)  # issue cycles of the longest phase F (a graded max-pool: groups * kernel**2)
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
        pf = self._pool_fire(m, self.fire & updating, f_iss, f_addr, f_raddr, k2) if graded_pool else None
        if is_mbe:
            mb = self._mbe_issue(m, init["lut"], self.fire & updating, f_iss, f_t, f_len, f_addr, f_raddr)

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
                u, pay = self._mbe_lane(m, mb, lane, v)
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
            self._pool_count_write(
                m, mp, syn_rd, syn_cnt_w, mem_rd_data, mem_wr, iss_saddr, iss_maddr, pool_ev, pool_lane
            )
            with m.If(w_f):
                group = Const((1 << lanes) - 1, c.neurons) << (w_maddr * lanes)
                m.d.sync += mp["marks"].eq(mp["marks"] & ~group[: len(mp["marks"])])
            words = max(1, p.slots[0].kernel ** 2 * groups)
            dbg_sources.append((words, syn, (c.count_bits, False)))
        if graded_pool:
            self._pool_write(
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
        self._encoder(m, hist, pmode_now)
        if p.kind == PIECE_CODES["partial"] and groups > 0:
            self._partial_sums(m, banks if banked else [mem], bank_wr if banked else [mem_wr], pmode_now, p_busy)
        else:  # no sums to scan: phase P does not run for this core
            m.d.comb += [p_busy.eq(0), self.plive.eq(0)]
        self._dbg_state(m, dbg_sources)
        return m

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

    def _mbe_issue(self, m: Module, lut_words, first, f_iss, f_t, f_len, f_addr, f_raddr) -> dict:
        """Phase F of an ``mbe`` piece (section 4.5): its passes, ``ceil(n/lanes)`` cycles each.

        Pass 0, in the input window: ``X += bias`` (membrane words ``0 .. groups - 1``). Passes
        ``b + 1``, at output steps ``k = t - out_start`` in ``0 .. T - 1``: basis ``b``, whose
        membrane block starts at word ``(b + 1) * groups``; at ``k = 0`` the pass reads ``X``
        instead. The table row ``(VTH, R, DI)`` of ``(b, k)`` and the offset ``C_b`` are read from
        the table memory (the parameter image's words after the ``n`` unit words, one per word) in
        the issue cycle and broadcast to the lanes in the next.
        """
        c, p = self.hw.core, self.piece
        vb, nb, T = c.v_bits, p.bases, p.timesteps
        groups = -(-p.n // c.lanes)
        step = self.step
        r = self.regs  # T stays the piece's: it shapes the table's addresses (structure_key)
        bias_now = (step >= r["in_start"]) & (step < r["in_start"] + T)
        out_now = (step >= r["out_start"]) & (step < r["out_start"] + T)
        m.d.comb += f_len.eq(Mux(bias_now, groups, 0) + Mux(out_now, nb * groups, 0))
        sh = self.shared or {}
        if "lut" in sh:  # swap and rounds mode: the loader writes the piece's table words when it is loaded
            lut = sh["lut"]
        else:
            m.submodules.lut = lut = Memory(shape=unsigned(3 * vb), depth=len(lut_words), init=lut_words)
        row_rd, off_rd = lut.read_port(), lut.read_port()
        mpass = Signal(range(nb + 2), name="mbe_pass")  # pass and lane group of the next issue
        mg = Signal(range(groups + 1), name="mbe_group")
        cur_pass = Signal(range(nb + 2), name="mbe_cur_pass")
        cur_g = Signal(range(groups + 1), name="mbe_cur_group")
        m.d.comb += [cur_pass.eq(Mux(first, Mux(bias_now, 0, 1), mpass)), cur_g.eq(Mux(first, 0, mg))]
        k = Signal(signed(STEP_BITS + 2), name="mbe_k")
        m.d.comb += k.eq(f_t - r["out_start"])
        k0 = k == 0
        word = cur_pass * groups + cur_g
        with m.If(f_iss):
            last = cur_g == groups - 1
            m.d.sync += [mpass.eq(Mux(last, cur_pass + 1, cur_pass)), mg.eq(Mux(last, 0, cur_g + 1))]
            m.d.comb += [f_addr.eq(word), f_raddr.eq(Mux(k0, cur_g, word))]
        m.d.comb += [
            row_rd.addr.eq(((cur_pass - 1) * T + k).as_unsigned()),
            off_rd.addr.eq(nb * T + cur_pass - 1),
        ]
        w_pass = Signal(range(nb + 2), name="mbe_w_pass")
        w_g = Signal(range(groups + 1), name="mbe_w_group")
        w_k0 = Signal(name="mbe_w_k0")
        w_basis = Signal(name="mbe_w_basis")
        m.d.sync += [w_pass.eq(cur_pass), w_g.eq(cur_g), w_k0.eq(k0)]
        m.d.comb += w_basis.eq(w_pass != 0)
        acc = Array(Signal(c.lanes * vb, name=f"mbe_p{g}") for g in range(groups))  # payloads of the step
        acc_now = Signal(c.lanes * vb, name="mbe_p_now")
        m.d.comb += acc_now.eq(acc[w_g])
        x_lo, x_hi, out_bias = self.mbe_regs  # MBE_REGISTERS: the table's last word, loaded with the piece
        code, shift_base = (int(v) for v in p.params[p.n + nb * T][1:3])  # basis 0's offset word (section 4.5)
        split, split_bits, exp_bias = code & 3, (code >> 2) & 63, code >> 8
        shm = None
        if split or shift_base:  # the shift memory: a 7-bit word per unit, beside the membrane SRAM
            if "shift" in sh:  # shared by the core position's pieces (rounds: state, loaded and written back)
                shm = sh["shift"]
            else:
                m.submodules.shift_mem = shm = Memory(
                    shape=unsigned(c.lanes * SHIFT_BITS), depth=self.groups_max, init=[]
                )
            sh_rd = shm.read_port()  # read in the issue cycle: the unit's shift at output steps k > 0
            m.d.comb += sh_rd.addr.eq(cur_g)
        return {
            "split": split,
            "split_bits": split_bits,
            "exp_bias": exp_bias,
            "shift_base": shift_base,
            "out_bias": out_bias,
            "shm": shm,
            "sh_old": sh_rd.data if shm is not None else None,
            "sh": [],
            "out": [],
            "w_pass": w_pass,
            "w_g": w_g,
            "w_k0": w_k0,
            "w_basis": w_basis,
            "row": row_rd.data,
            "off": off_rd.data,
            "acc": acc,
            "acc_now": acc_now,
            "x_lo": x_lo,
            "x_hi": x_hi,
            "pay": [],
        }

    def _mbe_lane(self, m: Module, mb: dict, lane: int, v):
        """One lane of a basis pass: ``U = clip(X, x_lo, x_hi) - C_b`` at ``k = 0`` (else ``U``),
        ``s = U >= VTH``, ``U -= s * R``, ``P += s * DI`` (``P = s * DI`` in the first pass). Lanes
        past ``n`` stay 0 and never fire. Returns the new ``U`` and ``P``."""
        c, p = self.hw.core, self.piece
        vb = c.v_bits
        row = mb["row"]
        vth, r, di = (row.word_select(i, vb).as_signed() for i in range(3))
        cb = mb["off"].word_select(0, vb).as_signed()
        x_lo, x_hi = mb["x_lo"], mb["x_hi"]
        xc = Signal(signed(vb), name=f"mbe_xc{lane}")
        m.d.comb += xc.eq(Mux(v < x_lo, x_lo, Mux(v > x_hi, x_hi, v)))
        x_in, sh = self._mbe_split(m, mb, lane, xc)
        u0 = Signal(signed(vb), name=f"mbe_u0_{lane}")
        m.d.comb += u0.eq(Mux(mb["w_k0"], x_in - cb, v))
        occupied = mb.get("occupied")  # fed by a product: the units' bank positions (section 4.3)
        inside = occupied[mb["w_g"]][lane] if occupied is not None else (mb["w_g"] * c.lanes + lane) < p.n
        s = Signal(name=f"mbe_s{lane}")
        m.d.comb += s.eq((u0 >= vth) & inside)
        u = Signal(signed(vb), name=f"mbe_u{lane}")
        m.d.comb += u.eq(Mux(inside, u0 - Mux(s, r, 0), 0))
        old = mb["acc_now"].word_select(lane, vb).as_signed()
        pay = Signal(signed(vb), name=f"mbe_pay{lane}")
        first = Mux(mb["w_k0"], mb["out_bias"], 0)  # the payload starts each output step at B (k = 0) or 0
        m.d.comb += pay.eq(Mux(mb["w_pass"] == 1, first, old) + Mux(s, di, 0))
        out = pay
        if mb["shm"] is not None:  # the second barrel shifter, on the way into the history
            shift = Signal(signed(SHIFT_BITS), name=f"mbe_shift{lane}")
            old_sh = mb["sh_old"].word_select(lane, SHIFT_BITS).as_signed()
            m.d.comb += shift.eq(Mux(mb["w_k0"], sh, old_sh))  # k = 0: this pass's split, else the memory
            out = Signal(signed(vb), name=f"mbe_out{lane}")
            left = (pay << shift.as_unsigned()[: SHIFT_BITS - 1])[:vb]
            m.d.comb += out.eq(Mux(shift >= 0, left, pay >> (-shift).as_unsigned()[: SHIFT_BITS - 1]))
            mb["sh"].append(Mux(inside, sh, 0)[:SHIFT_BITS])
        mb["out"].append(out)
        return u, pay

    def _mbe_split(self, m: Module, mb: dict, lane: int, xc):
        """The split unit of one lane (section 4.5) on the clamped ``X``: the basis input ``u`` and the
        output shift ``sh``. ``exp2``: ``e = X >> b``, ``u = X - (e << b)``, ``sh = shift_base + e``;
        ``inv``: ``u = floor(X * 2^(b - L))``, ``sh = shift_base - L``; ``invsqrt``: ``E = L + exp_bias``,
        ``p = E mod 2``, ``u = floor(X * 2^(b + p - L))``, ``sh = shift_base - (E - p) / 2``; ``none``:
        ``u = X``. ``L`` is the bit length of ``X`` (a priority encoder); both shifts are barrel shifters.
        Combinational in the cycle that reads ``X``: no extra cycles."""
        vb = self.hw.core.v_bits
        split, b, base = mb["split"], mb["split_bits"], mb["shift_base"]
        sh = Signal(signed(vb), name=f"mbe_sh{lane}")
        if split == 0:
            m.d.comb += sh.eq(base)
            return xc, sh
        u = Signal(signed(vb), name=f"mbe_split_u{lane}")
        if split == 1:  # exp2
            e = xc >> b
            m.d.comb += [u.eq(xc - (e << b)), sh.eq(base + e)]
            return u, sh
        length = Signal(range(vb + 1), name=f"mbe_len{lane}")  # priority encoder: bit length of X >= 1
        for k in range(vb - 1):
            with m.If(xc[k]):
                m.d.comb += length.eq(k + 1)
        amt = Signal(signed(8), name=f"mbe_amt{lane}")  # u = floor(X * 2^amt)
        if split == 2:  # inv
            m.d.comb += [amt.eq(b - length), sh.eq(base - length)]
        else:  # invsqrt
            e = Signal(signed(8), name=f"mbe_e{lane}")
            m.d.comb += [e.eq(length + mb["exp_bias"]), amt.eq(b + e[0] - length), sh.eq(base - (e >> 1))]
        left = (xc << amt.as_unsigned()[:6])[:vb]  # |amt| <= 63: split_bits < 64, 1 <= L <= v_bits
        m.d.comb += u.eq(Mux(amt >= 0, left, xc >> (-amt).as_unsigned()[:6]))
        return u, sh

    def _conv_unit(self, m: Module, head, pop, idle, cur_dense, s_lo, s_base, s_rw, kind, is_psum) -> dict:
        """Address generation of ``conv`` slots (section 2): an event from ``s = (ch, y, x)`` reaches
        every local position ``(oy, ox)`` with ``oy * stride + u - pad = y``, ``ox * stride + v - pad =
        x`` for a tap ``(u, v)``; each reached tap takes ``G = ceil(cb/lanes)`` cycles (synapse word
        ``base + (((ch - lo) * kh + u) * kw + v) * row_words + g``, membrane word ``pos * G + g``), taps in
        ``(u, v)`` order, at least one cycle per event. With ``cb`` a multiple of ``lanes`` (the
        membrane words then hold whole channel groups of one position), or else per-lane banks: the
        group's channels are locals ``pos * cb + g * lanes ..``, consecutive, so each is in its own
        bank (``local mod lanes``) at word ``local // lanes``; bank ``l`` takes channel
        ``g * lanes + (l - r) mod lanes`` (``r`` the first one's bank), i.e. the synapse word rotated
        by ``r`` lanes (``lanes`` per-lane entries: word, synapse lane, has a channel)."""
        c, p = self.hw.core, self.piece
        lanes = c.lanes
        sl = next(x for x in p.slots if x.kind == SLOT_CODES["conv"])
        _, hh, ww = sl.src_shape
        kh, kw, st, pad = sl.kernel, sl.kernel_w, sl.stride, sl.pad
        cb, th, tw = slice_extent(p)
        y0, x0 = self.origin["y0"], self.origin["x0"]
        gc = -(-cb // lanes)
        ntap = kh * kw
        is_conv = ~is_psum & (kind == SLOT_CODES["conv"])
        # decode the event at the pop; hold it in registers for its later cycles
        s_in = head.index
        ch_h, rem_h = s_in // (hh * ww), s_in % (hh * ww)
        y_h, x_h = rem_h // ww, rem_h % ww
        y_r, x_r, base_r = Signal(16), Signal(16), Signal(24)
        # the synapse row stride is the slot's row_words: sized for the population's full channel
        # block, it exceeds G on the last, narrower block (section 2)
        rw_r = Signal.like(s_rw[0])
        rw = Mux(pop, s_rw[head.slot], rw_r)
        mask_r = Signal(ntap)
        g_r = Signal(range(gc + 1))
        y = Mux(pop, y_h, y_r)
        x = Mux(pop, x_h, x_r)
        base = Signal(24)
        m.d.comb += base.eq(Mux(pop, s_base[head.slot] + (ch_h - s_lo[head.slot]) * ntap * rw, base_r))
        hits, poss = [], []
        for u in range(kh):
            for v in range(kw):
                ny = Signal(signed(18), name=f"conv_ny{u}_{v}")
                nx = Signal(signed(18), name=f"conv_nx{u}_{v}")
                m.d.comb += [ny.eq(y + pad - u), nx.eq(x + pad - v)]
                oy = ny.as_unsigned() // st
                ox = nx.as_unsigned() // st
                ok = (ny >= 0) & (nx >= 0)
                if st > 1:
                    ok = ok & (ny.as_unsigned() % st == 0) & (nx.as_unsigned() % st == 0)
                ok = ok & (oy >= y0) & (oy < y0 + th) & (ox >= x0) & (ox < x0 + tw)
                hit = Signal(name=f"conv_hit{u}_{v}")
                pos = Signal(range(max(2, c.neurons)), name=f"conv_pos{u}_{v}")
                m.d.comb += [hit.eq(ok), pos.eq((oy - y0) * tw + (ox - x0))]
                hits.append(hit)
                poss.append(pos)
        mask_h = Signal(ntap)
        m.d.comb += mask_h.eq(Cat(*hits))
        mask = Signal(ntap)
        m.d.comb += mask.eq(Mux(pop, mask_h, mask_r))
        g_now = Mux(pop, 0, g_r)
        tap = Signal(range(max(2, ntap)))
        for t in reversed(range(ntap)):
            with m.If(mask[t]):
                m.d.comb += tap.eq(t)
        r = Signal(range(ntap + 1))
        m.d.comb += r.eq(sum(h.as_unsigned() for h in hits))
        cost = Signal(range(max(2, ntap * gc + 1)))
        m.d.comb += cost.eq(Mux(r == 0, 1, r * gc))
        maddr = Array(poss)[tap] * gc + g_now
        saddr = base + tap * rw + g_now
        lane_ports = []
        if cb % lanes:  # the position's channels start mid-word: each bank its own word, weights rotated
            first = Signal(range(max(2, c.neurons + lanes)), name="conv_first")  # local of the group's channel 0
            m.d.comb += first.eq(Array(poss)[tap] * cb + g_now * lanes)
            q, r = first // lanes, first % lanes
            left = cb - g_now * lanes  # channels left from this group on
            for lane in range(lanes):
                k = Signal(range(lanes), name=f"conv_k{lane}")  # the group's channel (synapse lane) in this bank
                m.d.comb += k.eq(Mux(r <= lane, lane - r, lane + lanes - r))
                lane_ports.append((q + (r > lane), k, k < left))
        with m.If((pop & is_conv) | (~idle & ~cur_dense)):
            last_g = g_now == gc - 1
            m.d.sync += [
                g_r.eq(Mux(last_g, 0, g_now + 1)),
                mask_r.eq(Mux(last_g, mask & ~(Const(1, ntap) << tap)[:ntap], mask)),
                y_r.eq(y),
                x_r.eq(x),
                base_r.eq(base),
                rw_r.eq(rw),
            ]
        return {
            "any": mask.any(),
            "maddr": maddr,
            "saddr": saddr,
            "cost": cost,
            "active": ~cur_dense,
            "lanes": lane_ports,
        }

    def _product_unit(self, m: Module, head, pop, idle, kind, is_psum, val, s_weight) -> dict:
        """The running-count mode (section 4.3) on the skewed membrane banks. An ``a`` spike ``(i, c)``
        adds ``w * Bbar[c, j]`` to ``out[i, j]`` for every ``j`` of the piece, then ``Abar[i, c] += 1``;
        a ``b`` spike ``(c, j)`` adds ``w * Abar[i, c]`` to ``out[i, j]`` for every ``i``, then
        ``Bbar[c, j] += 1``: ``ceil(m/lanes)`` lane groups, one per cycle, plus one cycle. Neuron
        ``(i, j)`` is in bank ``(j + s_i) mod lanes`` at word ``P[i, bank] + j // lanes``
        (:func:`~spikeforge.rtl.piece.product_banks`), so group ``g`` of row ``i`` gives lane ``l`` the
        neuron ``j = g * lanes + (l - s_i) mod lanes`` and group ``h`` of column ``j`` the row of its
        ``h``-th group of rows whose shift is ``(l - j) mod lanes``; every lane reads its own word.

        The counts are in the synapse SRAM (section 4.3), ``lanes`` counts of ``count_bits`` per word
        (count ``l`` in bits ``l * count_bits`` up): ``Abar[:, c]`` at words ``c * gi + h`` (rows ``h *
        lanes ..`` of contraction index ``c``), then ``Bbar[c, :]`` at words ``C * gi + c * gj + g``
        (:func:`count_words`). A group reads the other operand's count word of its rows or columns in its
        issue cycle and each lane picks its neuron's count; the extra cycle reads the word of the
        event's own count, which is written back incremented in the next cycle (the read port is
        transparent to that write, so a following event sees the new count). Each operand's source
        index is mapped to its ``(row, column)`` by the piece's index table.

        Returns, for the cycle in progress, per lane the bank word, the count's position in the word
        read and whether the lane has a neuron, the synapse word to read, whether the cycle reads the
        event's own count (and its lane), plus the groups of the event being popped and of the one in
        progress."""
        c, p = self.hw.core, self.piece
        lanes = c.lanes
        g = p.geometry
        ni, nj, nc = g["i1"] - g["i0"], g["j1"] - g["j0"], p.contraction
        gi, gj = -(-ni // lanes), -(-nj // lanes)
        w = s_weight[next(k for k, sl in enumerate(p.slots) if sl.kind == SLOT_CODES["product_a"])]
        is_a = kind == SLOT_CODES["product_a"]
        # decode the operand: (row, col) of a (i, c) or of b (c, j)
        row, col = Signal(range(max(2, ni, nc) + 1)), Signal(range(max(2, nc, nj) + 1))
        a_map, b_map = p.operands
        a_lo, b_lo = operand_bases(p)
        a_rel = Signal(signed(26), name="prod_a_off")  # the source's offset in its operand's table
        b_rel = Signal(signed(26), name="prod_b_off")
        m.d.comb += [a_rel.eq(head.index - self.operand_base[0]), b_rel.eq(head.index - self.operand_base[1])]
        with m.If(is_a):
            for src, (i, k) in a_map.items():
                with m.If(a_rel == src - a_lo):
                    m.d.comb += [row.eq(i), col.eq(k)]
        with m.Else():
            for src, (k, j) in b_map.items():
                with m.If(b_rel == src - b_lo):
                    m.d.comb += [row.eq(k), col.eq(j)]
        side_r = Signal()  # 1: an a event
        row_r, col_r = Signal.like(row), Signal.like(col)
        k_r = Signal(range(max(gi, gj) + 2))
        groups_h = Mux(is_a, gj, gi)
        groups_r = Signal(range(max(gi, gj) + 1))
        cur_prod = Signal()  # the event in progress is an operand event
        is_ev = pop & ~is_psum & ((kind == SLOT_CODES["product_a"]) | (kind == SLOT_CODES["product_b"]))
        with m.If(pop):
            m.d.sync += cur_prod.eq(is_ev)
        val_r = Signal(signed(c.v_bits), name="prod_val")  # the event's value: 1 (spike) or its payload
        with m.If(is_ev):
            m.d.sync += [side_r.eq(is_a), row_r.eq(row), col_r.eq(col), k_r.eq(1), groups_r.eq(groups_h)]
            m.d.sync += val_r.eq(val)
        with m.Elif(~idle):
            m.d.sync += k_r.eq(k_r + 1)

        # the lane group in progress: the popped event's group 0, or group k_r of the held one
        side = Signal()
        rw, cl = Signal.like(row), Signal.like(col)
        kk = Signal.like(k_r)
        m.d.comb += [
            side.eq(Mux(is_ev, is_a, side_r)),
            rw.eq(Mux(is_ev, row, row_r)),
            cl.eq(Mux(is_ev, col, col_r)),
            kk.eq(Mux(is_ev, 0, k_r)),
        ]
        # the count words: Abar[:, c] from word 0, Bbar[c, :] after them (section 4.3)
        words = count_words(ni, nj, nc, lanes)
        saddr = Signal(range(max(2, words + 1)))
        inc = Signal()  # this cycle reads the word of the event's own count
        inc_lane = Signal(range(max(2, lanes)))
        m.d.comb += inc.eq(~is_ev & ~idle & cur_prod & (k_r == groups_r))
        b0 = nc * gi
        with m.If(inc):  # a: Abar[i = rw, c = cl]; b: Bbar[c = rw, j = cl]
            m.d.comb += [
                saddr.eq(Mux(side, cl * gi + rw // lanes, b0 + rw * gj + cl // lanes)),
                inc_lane.eq(Mux(side, rw % lanes, cl % lanes)),
            ]
        with m.Else():  # a: Bbar[c = cl, group kk of columns]; b: Abar[group kk of rows, c = rw]
            m.d.comb += saddr.eq(Mux(side, b0 + cl * gj + kk, rw * gi + kk))
        shifts = bank_shifts(ni, lanes)
        bank, addr = product_banks(ni, nj, lanes)
        prefix = [
            [int(addr[i][bank[i] == lane].min()) if (bank[i] == lane).any() else 0 for lane in range(lanes)]
            for i in range(ni)
        ]
        # group h of rows: the row whose shift is d (mod lanes), ni when none
        by_shift = [
            [
                next((i for i in range(h * lanes, min(ni, h * lanes + lanes)) if shifts[i] % lanes == d), ni)
                for d in range(lanes)
            ]
            for h in range(gi)
        ]
        by_shift_t = Array(Array(Const(v, range(ni + 1)) for v in r) for r in by_shift)
        word_of_col = Array(Const(j // lanes, range(gj + 1)) for j in range(nj))
        out_addr, out_sel, out_valid = [], [], []
        for lane in range(lanes):
            pre = Array(Const(prefix[i][lane], range(max(2, c.neurons))) for i in range(ni))
            # a: row i = rw, contraction c = cl; lane's column j = kk * lanes + (lane - s_i) mod lanes
            off = Array(Const((lane - shifts[i]) % lanes, range(max(2, lanes))) for i in range(ni))
            ja = Signal(range(max(2, (gj + 1) * lanes)), name=f"prod_j{lane}")
            m.d.comb += ja.eq(kk * lanes + off[rw])
            # b: contraction c = rw, column j = cl; lane's row i: shift (lane - j) mod lanes in row group kk
            dcol = Array(Const((lane - j) % lanes, range(max(2, lanes))) for j in range(nj))
            ib = Signal(range(ni + 1), name=f"prod_i{lane}")
            m.d.comb += ib.eq(by_shift_t[kk][dcol[cl]])
            a_addr = pre[rw] + kk
            b_addr = pre[ib] + word_of_col[cl] + (self.product_fault == "word_offset")
            la, ls, lv = (
                Signal(range(max(2, c.neurons)), name=f"prod_addr{lane}"),
                Signal(range(max(2, lanes)), name=f"prod_sel{lane}"),
                Signal(name=f"prod_valid{lane}"),
            )
            m.d.comb += [
                la.eq(Mux(side, a_addr, b_addr)),
                # the lane's count in the word read: column j's (a) or row i's (b) place in its group
                ls.eq(Mux(side, off[rw], (ib - kk * lanes)[: len(ls)])),
                lv.eq(Mux(side, ja < nj, ib < ni)),
            ]
            out_addr.append(la)
            out_sel.append(ls)
            out_valid.append(lv)
        # w * p, formed once per event: a spike's p is 1; an MBE payload multiplies (graded operands)
        wv = Signal(signed(2 * c.v_bits), name="prod_wv")
        m.d.comb += wv.eq(w * Mux(is_ev, val, val_r))
        return {
            "groups": groups_h,
            "groups_r": groups_r,
            "k": k_r,
            "w": wv,
            "val": Mux(is_ev, val, val_r),
            "addr": out_addr,
            "sel": out_sel,
            "valid": out_valid,
            "saddr": saddr,
            "inc": inc,
            "inc_lane": inc_lane,
        }

    def _tile_local(self, index):
        """Local index of population neuron ``index = (ch, y, x)`` in this channel x tile slice:
        ``((y - y0) * tw + (x - x0)) * cb + (ch - c0)``, or -1 when it is not in the slice. The index
        is decoded in the piece's own population shape: an identity source has the same size, not
        necessarily the same shape (a flat ``(C*H*W,)`` source feeds neuron ``index`` all the same)."""
        p = self.piece
        c0, y0, x0 = (self.origin[k] for k in TILE_REGISTERS)
        cb, th, tw = slice_extent(p)
        _, hh, ww = p.shape
        ch, rem = index // (hh * ww), index % (hh * ww)
        y, x = rem // ww, rem % ww
        inside = (ch >= c0) & (ch < c0 + cb) & (y >= y0) & (y < y0 + th) & (x >= x0) & (x < x0 + tw)
        return Mux(inside, ((y - y0) * tw + (x - x0)) * cb + (ch - c0), -1)

    def _pool_state(self, m: Module) -> dict:
        """Max-pool unit state (section 4.4) beside its SRAMs: the marks of the outputs whose maximum rose
        (``n`` bits, cleared by phase F). The running counts are in the synapse SRAM (count ``w`` of
        output ``j`` at word ``w * ceil(n/lanes) + j // lanes``, ``count_bits`` field ``j mod lanes``)
        and the window maxima ``M`` in the membrane SRAM (word ``j // lanes``, lane ``j mod lanes``)."""
        return {"marks": Signal(max(1, self.hw.core.neurons), name="pool_marks")}

    def _pool_count_write(
        self, m, mp, syn_rd, syn_w, mem_rd_data, mem_wr, iss_saddr, iss_maddr, pool_ev, pool_lane
    ) -> None:
        """Write-back of a spike into a max-pool window (one cycle, section 4.4): the count's word and
        the maximum's word were read in the pop cycle; now ``C += 1`` is written back, and if ``C > M``
        the maximum takes it (the membrane word with that lane replaced) and the output is marked. Both
        read ports are transparent to these writes, so back-to-back spikes see each other."""
        c = self.hw.core
        lanes, vb, cb = c.lanes, c.v_bits, c.count_bits
        w_ev, w_lane = Signal(name="pool_w_ev"), Signal.like(pool_lane, name="pool_w_lane")
        w_saddr, w_maddr = Signal.like(iss_saddr, name="pool_w_saddr"), Signal.like(iss_maddr, name="pool_w_maddr")
        m.d.sync += [w_ev.eq(pool_ev), w_lane.eq(pool_lane), w_saddr.eq(iss_saddr), w_maddr.eq(iss_maddr)]
        count = Signal(cb + 1, name="pool_new_count")
        m.d.comb += count.eq(syn_rd.data.word_select(w_lane, cb) + 1)
        bumped = Cat(Mux(w_lane == k, count[:cb], syn_rd.data.word_select(k, cb)) for k in range(lanes))
        maximum = mem_rd_data.word_select(w_lane, vb).as_signed()
        raised = Cat(Mux(w_lane == k, count, mem_rd_data.word_select(k, vb)) for k in range(lanes))
        higher = w_ev & (count > maximum)
        m.d.comb += [syn_w.addr.eq(w_saddr), syn_w.data.eq(bumped[: len(syn_w.data)]), syn_w.en.eq(w_ev)]
        with m.If(w_ev):
            m.d.comb += [mem_wr.addr.eq(w_maddr), mem_wr.data.eq(raised), mem_wr.en.eq(higher)]
        with m.If(higher):
            m.d.sync += mp["marks"].bit_select(w_maddr * lanes + w_lane, 1).eq(1)

    def _pool_local(self, m: Module, head, k: int):
        """Local output ``((oy - y0) * tw + (ox - x0)) * cb + (ch - c0)`` of a max-pool input
        ``s = (ch, y, x)`` (``o = (ch, y // k, x // k)``) and its place ``(y % k) * k + x % k`` in the window."""
        p = self.piece
        _, hh, ww = p.slots[0].src_shape
        c0, y0, x0 = (self.origin[k] for k in TILE_REGISTERS)
        cb, _, tw = slice_extent(p)
        s = head.index
        ch, rem = s // (hh * ww), s % (hh * ww)
        y, x = rem // ww, rem % ww
        local = Signal(range(max(2, p.n + 1)), name="pool_out")
        win = Signal(range(max(2, k * k)), name="pool_win")
        m.d.comb += [
            local.eq(((y // k - y0) * tw + (x // k - x0)) * cb + (ch - c0)),
            win.eq((y % k) * k + (x % k)),
        ]
        return local, win

    def _pool_sum_word(self, m: Module, head):
        """A graded max-pool's payload event (section 4.4): the word ``w * groups + j // lanes`` and lane
        ``j mod lanes`` of the running sum ``C[j, w]`` it adds to (one cycle: read now, written next)."""
        lanes = self.hw.core.lanes
        groups = -(-self.piece.n // lanes)
        local, win = self._pool_local(m, head, self.piece.slots[0].kernel)
        return win * groups + local // lanes, local % lanes

    def _pool_fire(self, m: Module, first, f_iss, f_addr, f_raddr, k2: int) -> dict:
        """Phase F of a graded max-pool: lane group ``g`` takes ``kernel**2`` cycles, cycle ``w`` reading
        the word of the window's sums ``w`` (``w * groups + g``), so each lane sees its unit's sums one per
        cycle; the membrane word ``g`` (``M_prev``) is read in the same cycles. ``ceil(n/lanes) * kernel**2``
        cycles, as the simulator."""
        groups = -(-self.piece.n // self.hw.core.lanes)
        pg = Signal(range(groups + 1), name="poolf_group")
        pw = Signal(range(k2 + 1), name="poolf_win")
        cur_g = Signal.like(pg)
        cur_w = Signal.like(pw)
        m.d.comb += [cur_g.eq(Mux(first, 0, pg)), cur_w.eq(Mux(first, 0, pw))]
        saddr = Signal(range(max(2, k2 * groups)), name="poolf_saddr")
        m.d.comb += saddr.eq(cur_w * groups + cur_g)
        with m.If(f_iss):
            last = cur_w == k2 - 1
            m.d.sync += [pw.eq(Mux(last, 0, cur_w + 1)), pg.eq(Mux(last, cur_g + 1, cur_g))]
            m.d.comb += [f_addr.eq(cur_g), f_raddr.eq(cur_g)]
        w_first, w_last = Signal(name="poolf_w_first"), Signal(name="poolf_w_last")
        m.d.sync += [w_first.eq(cur_w == 0), w_last.eq(cur_w == k2 - 1)]
        return {"saddr": saddr, "w_first": w_first, "w_last": w_last}

    def _pool_write(
        self, m, pf, syn_rd, syn_w, mem_rd_data, mem_wr, hist_wr, iss_saddr, w_f, w_maddr, pool_ev, pool_lane, iss_val
    ) -> None:
        """Write-back of a graded max-pool (section 4.4). An event adds its payload to its lane of the
        sum word read in its cycle. In phase F each lane keeps the running maximum ``M`` of its unit's
        sums over the group's ``kernel**2`` cycles; in the last it emits ``M - M_prev`` (a ``v_bits``
        history entry, sent as a graded flit) and writes ``M`` over ``M_prev`` in the membrane SRAM."""
        c = self.hw.core
        lanes, vb, gmax = c.lanes, c.v_bits, self.groups_max
        w_ev, w_lane, w_addr, w_val = Signal(), Signal.like(pool_lane), Signal.like(iss_saddr), Signal(signed(vb))
        m.d.sync += [w_ev.eq(pool_ev), w_lane.eq(pool_lane), w_addr.eq(iss_saddr), w_val.eq(iss_val)]
        added = Cat((syn_rd.data.word_select(k, vb) + Mux(w_lane == k, w_val, 0))[:vb] for k in range(lanes))
        m.d.comb += [syn_w.addr.eq(w_addr), syn_w.data.eq(added), syn_w.en.eq(w_ev)]
        runs, outs = [], []
        for k in range(lanes):
            cur = syn_rd.data.word_select(k, vb).as_signed()
            run = Signal(signed(vb), name=f"pool_max{k}")
            new = Signal(signed(vb), name=f"pool_max_new{k}")
            m.d.comb += new.eq(Mux(pf["w_first"] | (cur > run), cur, run))
            with m.If(w_f):
                m.d.sync += run.eq(new)
            out = Signal(signed(vb), name=f"pool_emit{k}")
            m.d.comb += out.eq(new - mem_rd_data.word_select(k, vb).as_signed())
            runs.append(new)
            outs.append(out)
        emit = w_f & pf["w_last"]
        m.d.comb += [
            mem_wr.addr.eq(w_maddr),
            mem_wr.data.eq(Cat(*runs)),
            mem_wr.en.eq(emit),
            hist_wr.data.eq(Cat(*outs).replicate(gmax)),
            hist_wr.en.eq(Mux(emit, (Const(1, gmax) << w_maddr)[:gmax], 0)),
        ]

    def _partial_sums(self, m: Module, mems: list, mem_wrs: list, pmode_now, p_busy) -> None:
        """Phase P of a partial piece (section 4.2), from its first arrival (``in_start``, or earlier
        for an MBE population's early inputs) to ``in_start + T - 1``.

        Scan: lane group ``k`` of the accumulators at cycle ``k`` (``ceil(n/lanes)`` cycles), latched
        and cleared. Then one flit per cycle the router takes, ascending local index, one per
        non-zero sum: ``type`` 2, ``index`` the local neuron, ``payload`` the sum, to the root's core.
        """
        c, p = self.hw.core, self.piece
        lanes, vb, n = c.lanes, c.v_bits, p.n
        groups = -(-n // lanes)
        scan_rds = [mm.read_port(domain="comb") for mm in mems]  # the membrane, or its banks (lane order)
        scan_data = Cat(*(r.data for r in scan_rds))
        scan_k = Signal(range(groups + 1))
        scan_on = Signal()
        r = self.regs
        first = r["acc_start"]  # early inputs (section 4.5): from the first arrival
        win = (self.step >= first) & (self.step < r["in_start"] + r["timesteps"])
        m.d.comb += self.plive.eq(win)  # the simulator's phase P: a partial piece in this window (section 4.2)
        begin = self.start & self.pphase & win
        sk = Signal(range(groups + 1))
        m.d.comb += sk.eq(Mux(begin, 0, scan_k))
        scanning = begin | scan_on
        accs = [Signal(signed(vb), name=f"psum{j}") for j in range(n)]
        nz = Signal(n)  # sums left to send
        m.d.comb += [r.addr.eq(sk) for r in scan_rds]
        with m.If(scanning):
            m.d.sync += [scan_k.eq(sk + 1), scan_on.eq(sk + 1 < groups)]
            for k in range(groups):
                with m.If(sk == k):
                    for lane in range(lanes):
                        j = k * lanes + lane
                        if j < n:
                            v = scan_data[lane * vb : (lane + 1) * vb].as_signed()
                            m.d.sync += [accs[j].eq(v), nz[j].eq(v != 0)]
            for wr in mem_wrs:
                m.d.comb += [wr.addr.eq(sk), wr.data.eq(0), wr.en.eq(1)]
        pick = Signal(range(max(2, n)))
        for j in reversed(range(n)):
            with m.If(nz[j]):
                m.d.comb += pick.eq(j)
        out = self.flits
        flit_v = data.View(out_flit_layout(self.hw), out.payload)
        sending = ~scanning & nz.any()
        with m.If(pmode_now):
            m.d.comb += [
                out.valid.eq(sending),
                flit_v.type.eq(TYPE_PARTIAL),
                flit_v.slot.eq(0),
                flit_v.index.eq(pick),
                flit_v.payload.eq(Array(accs)[pick]),
                flit_v.x.eq(r["root_x"]),
                flit_v.y.eq(r["root_y"]),
            ]
        with m.If(sending & out.ready):
            m.d.sync += nz.eq(nz & ~(Const(1, n) << pick)[:n])
        m.d.comb += p_busy.eq(scanning | nz.any())

    def _encoder(self, m: Module, hist: Memory, pmode_now) -> None:
        """Output encoder (section 4.1): from cycle 0 of phase I, one flit per cycle the router took.

        For each routing entry in table order whose step ``t - 1 - delay`` is in the piece's firing
        window, each neuron of its range that fired then, ascending. The number of entries is the
        piece's (fixed while it is loaded), so the generator builds one history read port (at the
        entry's ``delay`` register) and one masked priority encoder per entry: the contract skips
        silent neurons and entries at no cost, which a sequential scan of the table could not do. An
        entry's range, destination, slot and delay are registers; a resident core's encoder spans only the
        range (constant), a swap context's spans all ``neurons`` (the loader rewrites the range).
        """
        c, p = self.hw.core, self.piece
        r = self.regs
        T, out_start, H = r["timesteps"], r["out_start"], c.spike_history_steps
        entries = [tuple(int(v) for v in e) for e in p.routing]
        e_cur = Signal(range(max(2, len(entries) + 1)))  # entry being sent
        j_cur = Signal(range(c.neurons + 1))  # next local neuron to consider in it
        with m.If(self.start):
            m.d.sync += [e_cur.eq(0), j_cur.eq(0)]
        t = self.step
        graded = p.kind == PIECE_CODES["mbe"] or (p.graded_sums and p.kind == PIECE_CODES["maxpool"])
        cands, words = [], []  # per entry: (pending?, lowest pending local index), its payload row
        e_now = Mux(self.start, 0, e_cur)
        j_now = Mux(self.start, 0, j_cur)
        for k, (first, last, *_rest) in enumerate(entries):
            # the entry's delay is a register: its own history read port, at row (t - 1 - delay) mod H
            rp = hist.read_port(domain="comb")
            src_step = Signal(signed(STEP_BITS + 2), name=f"enc_step{k}")
            m.d.comb += [src_step.eq(t - 1 - self.routes[k][5]), rp.addr.eq(src_step.as_unsigned() % H)]
            in_win = (src_step >= out_start) & (src_step < out_start + T)
            row = rp.data
            if graded:
                # payload rows (an mbe piece, a graded max-pool): a unit is pending when its payload is not 0
                row = Signal(c.neurons, name=f"enc_nz{k}")
                m.d.comb += row.eq(Cat(rp.data.word_select(j, c.v_bits).any() for j in range(c.neurons)))
                words.append(rp.data)
            span = sum(1 << j for j in range(first, last + 1))
            if self.cfg_ports:  # the range from the entry's registers: i in first .. last
                lo_k, hi_k = self.routes[k][0], self.routes[k][1]
                span = Signal(c.neurons, name=f"enc_span{k}")
                m.d.comb += span.eq(Cat((lo_k <= j) & (j <= hi_k) for j in range(c.neurons)))
                first, last = 0, c.neurons - 1
            mask = Signal(c.neurons, name=f"enc_mask{k}")
            ge = Signal(c.neurons, name=f"enc_ge{k}")  # neurons at or after the resume point
            ones = Const((1 << c.neurons) - 1, c.neurons)
            m.d.comb += ge.eq(Mux(e_now == k, (ones << j_now)[: c.neurons], Mux(e_now < k, ones, 0)))
            m.d.comb += mask.eq(Mux(in_win, row & span & ge, 0))
            low = Signal(range(c.neurons), name=f"enc_low{k}")
            for j in reversed(range(first, last + 1)):
                with m.If(mask[j]):
                    m.d.comb += low.eq(j)
            cands.append((mask.any(), low))
        out = self.flits
        flit_v = data.View(out_flit_layout(self.hw), out.payload)
        chosen_k = Signal(range(max(2, len(entries) + 1)))
        chosen_j = Signal(range(c.neurons))
        found = Signal()
        for k in reversed(range(len(entries))):
            pend, low = cands[k]
            _, _, x, y, slot, _ = self.routes[k]
            with m.If(pend):
                m.d.comb += [
                    found.eq(1),
                    chosen_k.eq(k),
                    chosen_j.eq(low),
                    flit_v.type.eq(TYPE_GRADED if words else TYPE_SPIKE),
                    flit_v.slot.eq(slot),
                    flit_v.x.eq(x),
                    flit_v.y.eq(y),
                ]
                if words:
                    m.d.comb += flit_v.payload.eq(words[k].word_select(low, c.v_bits))
        send = found & ~pmode_now  # phase P: the spikes were sent in phase I
        if p.neurons and list(p.neurons) != list(range(p.first, p.first + len(p.neurons))):
            # tile slices: local -> global source index, `first` (local 0's) plus an offset the extent fixes
            rom = Array(Const(v - p.first, 24) for v in p.neurons)
            m.d.comb += flit_v.index.eq(rom[chosen_j] + r["first"])
        else:
            m.d.comb += flit_v.index.eq(chosen_j + r["first"])
        m.d.comb += out.valid.eq(send)
        sent = Signal(CYCLE_BITS)  # spike flits sent since phase I began
        m.d.comb += self.sent.eq(sent)
        clear = self.start & ~self.pphase
        with m.If(clear):
            m.d.sync += sent.eq(0)
        with m.If(send & out.ready):
            m.d.sync += [e_cur.eq(chosen_k), j_cur.eq(chosen_j + 1), sent.eq(Mux(clear, 0, sent) + 1)]
