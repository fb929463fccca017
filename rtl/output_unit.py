"""What a core sends: the output encoder (section 4.1) and a partial piece's sums (section 4.2).

Functions of a :class:`~spikeforge.rtl.core.Core` under elaboration: they read its hardware file, its
piece and its registers and add their logic to the core's module ``m``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from spikeforge.mapping.images import PIECE_CODES

from .bits import at_least, lowest_set
from .flits import CYCLE_BITS, STEP_BITS, TYPE_GRADED, TYPE_PARTIAL, TYPE_SPIKE, out_flit_layout
from .memories import INDEX_BITS, entries_per_word, index_words
from .piece import is_conv

if TYPE_CHECKING:
    from .core import Core

__all__ = [
    "partial_sums",
    "encoder",
]


def partial_sums(core: Core, m: Module, mems: list, mem_wrs: list, pmode_now, p_busy) -> None:
    """Phase P of a partial piece (section 4.2), from its first arrival (``in_start``, or earlier
    for an MBE population's early inputs) to ``in_start + T - 1``.

    Scan: lane group ``k`` of the accumulators at cycle ``k`` (``ceil(n/lanes)`` cycles), latched
    and cleared. Then one flit per cycle the router takes, ascending local index, one per
    non-zero sum: ``type`` 2, ``index`` the local neuron, ``payload`` the sum, to the root's core.
    """
    c, p = core.hw.core, core.piece
    lanes, vb, n = c.lanes, c.v_bits, p.n
    groups = -(-n // lanes)
    scan_rds = [mm.read_port(domain="comb") for mm in mems]  # the membrane, or its banks (lane order)
    scan_data = Cat(*(r.data for r in scan_rds))
    scan_k = Signal(range(groups + 1))
    scan_on = Signal()
    r = core.regs
    first = r["acc_start"]  # early inputs (section 4.5): from the first arrival
    win = (core.step >= first) & (core.step < r["in_start"] + r["timesteps"])
    m.d.comb += core.plive.eq(win)  # the simulator's phase P: a partial piece in this window (section 4.2)
    begin = core.start & core.pphase & win
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
    pick = lowest_set(m, nz, "psum_pick")
    out = core.flits
    flit_v = data.View(out_flit_layout(core.hw), out.payload)
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


def encoder(core: Core, m: Module, hist: Memory, pmode_now) -> None:
    """Output encoder (section 4.1): from cycle 0 of phase I, one flit per cycle the router took.

    For each routing entry in table order whose step ``t - 1 - delay`` is in the piece's firing
    window, each neuron of its range that fired then, ascending. The generator builds one history
    read port (at the entry's ``delay`` register) and one masked priority encoder per entry the
    context holds (the most of its pieces'; a loaded piece's count, the ``entries`` register, masks
    the rest): the contract skips silent neurons and entries at no cost, which a sequential scan of
    the table could not do. An entry's range, destination, slot and delay are registers; a resident
    core's encoder masks the range (constant), a swap context's (the loader rewrites the range)
    masks the neurons from the later of ``first`` and the resume point and takes the lowest pending
    one if it is not past ``last`` (:func:`~spikeforge.rtl.bits.at_least`, ``lowest_set``).
    """
    c, p = core.hw.core, core.piece
    r = core.regs
    T, out_start, H = r["timesteps"], r["out_start"], c.spike_history_steps
    entries = [tuple(int(v) for v in e) for e in p.routing]
    entries += [(0,) * 6] * (core.max_entries - len(entries))  # a context's entries past the piece's
    e_cur = Signal(range(max(2, len(entries) + 1)))  # entry being sent
    j_cur = Signal(range(c.neurons + 1))  # next local neuron to consider in it
    with m.If(core.start):
        m.d.sync += [e_cur.eq(0), j_cur.eq(0)]
    t = core.step
    graded = p.kind == PIECE_CODES["mbe"] or (p.graded_sums and p.kind == PIECE_CODES["maxpool"])
    cands, words = [], []  # per entry: (pending?, lowest pending local index), its payload row
    e_now = Mux(core.start, 0, e_cur)
    j_now = Mux(core.start, 0, j_cur)
    # a resident core: the entry being sent resumes at j_now (a mask shared by its entries)
    resume = None if core.cfg_ports else at_least(m, j_now, c.neurons, "enc_resume")
    for k, (first, last, *_rest) in enumerate(entries):
        # the entry's delay is a register: its own history read port, at row (t - 1 - delay) mod H
        rp = hist.read_port(domain="comb")
        src_step = Signal(signed(STEP_BITS + 2), name=f"enc_step{k}")
        m.d.comb += [src_step.eq(t - 1 - core.routes[k][5]), rp.addr.eq(src_step.as_unsigned() % H)]
        in_win = (src_step >= out_start) & (src_step < out_start + T)
        if core.cfg_ports:  # the loaded piece's entries only: its context may hold more
            in_win = in_win & (k < r["entries"])
        row = rp.data
        if graded:
            # payload rows (an mbe piece, a graded max-pool): a unit is pending when its payload is not 0
            row = Signal(c.neurons, name=f"enc_nz{k}")
            m.d.comb += row.eq(Cat(rp.data.word_select(j, c.v_bits).any() for j in range(c.neurons)))
            words.append(rp.data)
        mask = Signal(c.neurons, name=f"enc_mask{k}")
        if core.cfg_ports:
            # the range from the entry's registers, lo .. hi: the lowest pending neuron at or past
            # the start (lo, or past it where this entry resumes) is the entry's next unless it is
            # past hi. One thermometer code per entry (rtl.bits.at_least), no range mask.
            lo_k, hi_k = core.routes[k][0], core.routes[k][1]
            start = Signal(range(c.neurons + 1), name=f"enc_start{k}")
            m.d.comb += start.eq(Mux((e_now == k) & (j_now > lo_k), j_now, lo_k))
            from_start = at_least(m, start, c.neurons, f"enc_from{k}")
            m.d.comb += mask.eq(Mux(in_win & (e_now <= k), row & from_start, 0))
            low = lowest_set(m, mask, f"enc_low{k}")
            cands.append((mask.any() & (low <= hi_k), low))
            continue
        span = sum(1 << j for j in range(first, last + 1))
        ge = Signal(c.neurons, name=f"enc_ge{k}")  # neurons at or after the resume point
        ones = Const((1 << c.neurons) - 1, c.neurons)
        m.d.comb += ge.eq(Mux(e_now == k, resume, Mux(e_now < k, ones, 0)))
        m.d.comb += mask.eq(Mux(in_win, row & span & ge, 0))
        low = lowest_set(m, mask, f"enc_low{k}")  # (mask is 0 outside first .. last)
        cands.append((mask.any(), low))
    out = core.flits
    flit_v = data.View(out_flit_layout(core.hw), out.payload)
    chosen_k = Signal(range(max(2, len(entries) + 1)))
    chosen_j = Signal(range(c.neurons))
    found = Signal()
    for k in reversed(range(len(entries))):
        pend, low = cands[k]
        _, _, x, y, slot, _ = core.routes[k]
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
    if core.cfg_ports and is_conv(p):
        # a loadable conv context: local j = (py * tw + px) * cb + ch is ch * H * W + py * W + px after
        # local 0 (rtl.piece.tile_offsets), from the registers
        gm = core.geom
        ch, pos = chosen_j % gm["cb"], chosen_j // gm["cb"]
        py, px = pos // gm["tw"], pos % gm["tw"]
        m.d.comb += flit_v.index.eq(ch * gm["pop_h"] * gm["pop_w"] + py * gm["pop_w"] + px + r["first"])
    elif p.operands[0] and core.encoder:
        # fed by a product: local -> global source index, `first` plus the neuron index table's entry
        # (rtl.memories.index_words; a loaded image in swap mode, no encoder runs in rounds mode)
        per = entries_per_word(core.hw, INDEX_BITS)  # entry j: entry j % per of word j // per
        if core.shared is not None:
            table = core.shared["index"]
        else:
            words = index_words(core.hw, p)
            m.submodules.index = table = Memory(shape=unsigned(per * INDEX_BITS), depth=len(words), init=words)
        rd = table.read_port(domain="comb")
        lsb = (per - 1).bit_length()
        m.d.comb += rd.addr.eq(chosen_j[lsb:])
        m.d.comb += flit_v.index.eq(rd.data.word_select(chosen_j[:lsb] if lsb else 0, INDEX_BITS) + r["first"])
    elif p.neurons and list(p.neurons) != list(range(p.first, p.first + len(p.neurons))):
        # tile slices: local -> global source index, `first` (local 0's) plus an offset the extent fixes
        rom = Array(Const(v - p.first, 24) for v in p.neurons)
        m.d.comb += flit_v.index.eq(rom[chosen_j] + r["first"])
    else:
        m.d.comb += flit_v.index.eq(chosen_j + r["first"])
    m.d.comb += out.valid.eq(send)
    sent = Signal(CYCLE_BITS)  # spike flits sent since phase I began
    m.d.comb += core.sent.eq(sent)
    clear = core.start & ~core.pphase
    with m.If(clear):
        m.d.sync += sent.eq(0)
    with m.If(send & out.ready):
        m.d.sync += [e_cur.eq(chosen_k), j_cur.eq(chosen_j + 1), sent.eq(Mux(clear, 0, sent) + 1)]
