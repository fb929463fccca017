"""The max-pool unit (section 4.4): running counts and window maxima, or graded payload sums.

Functions of a :class:`~spikeforge.rtl.core.Core` under elaboration: they read its hardware file, its
piece and its registers and add their logic to the core's module ``m``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Const, Module, Mux, Signal, signed

from .piece import TILE_REGISTERS, slice_extent

if TYPE_CHECKING:
    from .core import Core

__all__ = [
    "pool_state",
    "pool_count_write",
    "pool_local",
    "pool_sum_word",
    "pool_fire",
    "pool_write",
]


def pool_state(core: Core, m: Module) -> dict:
    """Max-pool unit state (section 4.4) beside its SRAMs: the marks of the outputs whose maximum rose
    (``n`` bits, cleared by phase F). The running counts are in the synapse SRAM (count ``w`` of
    output ``j`` at word ``w * ceil(n/lanes) + j // lanes``, ``count_bits`` field ``j mod lanes``)
    and the window maxima ``M`` in the membrane SRAM (word ``j // lanes``, lane ``j mod lanes``)."""
    return {"marks": Signal(max(1, core.hw.core.neurons), name="pool_marks")}


def pool_count_write(core, m, mp, syn_rd, syn_w, mem_rd_data, mem_wr, iss_saddr, iss_maddr, pool_ev, pool_lane) -> None:
    """Write-back of a spike into a max-pool window (one cycle, section 4.4): the count's word and
    the maximum's word were read in the pop cycle; now ``C += 1`` is written back, and if ``C > M``
    the maximum takes it (the membrane word with that lane replaced) and the output is marked. Both
    read ports are transparent to these writes, so back-to-back spikes see each other."""
    c = core.hw.core
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


def pool_local(core: Core, m: Module, head, k: int):
    """Local output ``((oy - y0) * tw + (ox - x0)) * cb + (ch - c0)`` of a max-pool input
    ``s = (ch, y, x)`` (``o = (ch, y // k, x // k)``) and its place ``(y % k) * k + x % k`` in the window."""
    p = core.piece
    _, hh, ww = p.slots[0].src_shape
    c0, y0, x0 = (core.origin[k] for k in TILE_REGISTERS)
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


def pool_sum_word(core: Core, m: Module, head):
    """A graded max-pool's payload event (section 4.4): the word ``w * groups + j // lanes`` and lane
    ``j mod lanes`` of the running sum ``C[j, w]`` it adds to (one cycle: read now, written next)."""
    lanes = core.hw.core.lanes
    groups = -(-core.piece.n // lanes)
    local, win = pool_local(core, m, head, core.piece.slots[0].kernel)
    return win * groups + local // lanes, local % lanes


def pool_fire(core: Core, m: Module, first, f_iss, f_addr, f_raddr, k2: int) -> dict:
    """Phase F of a graded max-pool: lane group ``g`` takes ``kernel**2`` cycles, cycle ``w`` reading
    the word of the window's sums ``w`` (``w * groups + g``), so each lane sees its unit's sums one per
    cycle; the membrane word ``g`` (``M_prev``) is read in the same cycles. ``ceil(n/lanes) * kernel**2``
    cycles, as the simulator."""
    groups = -(-core.piece.n // core.hw.core.lanes)
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


def pool_write(
    core, m, pf, syn_rd, syn_w, mem_rd_data, mem_wr, hist_wr, iss_saddr, w_f, w_maddr, pool_ev, pool_lane, iss_val
) -> None:
    """Write-back of a graded max-pool (section 4.4). An event adds its payload to its lane of the
    sum word read in its cycle. In phase F each lane keeps the running maximum ``M`` of its unit's
    sums over the group's ``kernel**2`` cycles; in the last it emits ``M - M_prev`` (a ``v_bits``
    history entry, sent as a graded flit) and writes ``M`` over ``M_prev`` in the membrane SRAM."""
    c = core.hw.core
    lanes, vb, gmax = c.lanes, c.v_bits, core.groups_max
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
