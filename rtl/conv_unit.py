"""The ``conv`` slot's address generation (section 2) and a channel x tile slice's local index.

Functions of a :class:`~spikeforge.rtl.core.Core` under elaboration: they read its hardware file, its
piece and its registers and add their logic to the core's module ``m``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed

from spikeforge.mapping.images import SLOT_CODES

from .piece import TILE_REGISTERS

if TYPE_CHECKING:
    from .core import Core

__all__ = [
    "conv_unit",
    "tile_local",
]


def conv_unit(core: Core, m: Module, head, pop, idle, cur_dense, s_lo, s_base, s_rw, kind, is_psum) -> dict:
    """Address generation of ``conv`` slots (section 2): an event from ``s = (ch, y, x)`` reaches
    every local position ``(oy, ox)`` with ``oy * stride + u - pad = y``, ``ox * stride + v - pad =
    x`` for a tap ``(u, v)``; each reached tap takes ``G = ceil(cb/lanes)`` cycles (synapse word
    ``base + (((ch - lo) * kh + u) * kw + v) * row_words + g``, membrane word ``pos * G + g``), taps in
    ``(u, v)`` order, at least one cycle per event. With ``cb`` a multiple of ``lanes`` (the
    membrane words then hold whole channel groups of one position), or else per-lane banks: the
    group's channels are locals ``pos * cb + g * lanes ..``, consecutive, so each is in its own
    bank (``local mod lanes``) at word ``local // lanes``; bank ``l`` takes channel
    ``g * lanes + (l - r) mod lanes`` (``r`` the first one's bank), i.e. the synapse word rotated
    by ``r`` lanes (``lanes`` per-lane entries: word, synapse lane, has a channel).

    The geometry (``core.geom``) is constants in a resident core and registers in a loadable conv
    context, whose taps are those of the family's largest kernel ``KH x KW``, tap ``(u, v)`` taking
    part when ``u < kh`` and ``v < kw``."""
    c = core.hw.core
    lanes = c.lanes
    gm = core.geom
    hh, ww = gm["src_h"], gm["src_w"]
    kh, kw, st, pad = gm["kh"], gm["kw"], gm["stride"], gm["pad"]
    cb, th, tw = gm["cb"], gm["th"], gm["tw"]
    KH, KW, GC = gm["KH"], gm["KW"], gm["GC"]
    y0, x0 = core.origin["y0"], core.origin["x0"]
    gc = (cb + lanes - 1) // lanes  # ceil(cb/lanes): a constant, or a value of the registers
    ntap = KH * KW  # mask bits: the family's largest kernel
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
    g_r = Signal(range(GC + 1))
    y = Mux(pop, y_h, y_r)
    x = Mux(pop, x_h, x_r)
    base = Signal(24)
    m.d.comb += base.eq(Mux(pop, s_base[head.slot] + (ch_h - s_lo[head.slot]) * (kh * kw) * rw, base_r))
    hits, poss, offs = [], [], []
    for u in range(KH):
        for v in range(KW):
            ny = Signal(signed(18), name=f"conv_ny{u}_{v}")
            nx = Signal(signed(18), name=f"conv_nx{u}_{v}")
            m.d.comb += [ny.eq(y + pad - u), nx.eq(x + pad - v)]
            oy = ny.as_unsigned() // st
            ox = nx.as_unsigned() // st
            ok = (ny >= 0) & (nx >= 0)
            if not isinstance(st, int) or st > 1:
                ok = ok & (ny.as_unsigned() % st == 0) & (nx.as_unsigned() % st == 0)
            ok = ok & (oy >= y0) & (oy < y0 + th) & (ox >= x0) & (ox < x0 + tw)
            if not isinstance(kh, int) or not isinstance(kw, int):
                ok = ok & (u < kh) & (v < kw)  # a tap of the piece's kernel, not only of the largest
            hit = Signal(name=f"conv_hit{u}_{v}")
            pos = Signal(range(max(2, c.neurons)), name=f"conv_pos{u}_{v}")
            m.d.comb += [hit.eq(ok), pos.eq((oy - y0) * tw + (ox - x0))]
            hits.append(hit)
            poss.append(pos)
            offs.append(u * kw + v)  # the tap's synapse row in the piece's kernel
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
    cost = Signal(range(max(2, ntap * GC + 1)))
    m.d.comb += cost.eq(Mux(r == 0, 1, r * gc))
    maddr = Array(poss)[tap] * gc + g_now
    # with the piece's own kernel the mask bit is the tap's row; a family's largest kernel numbers
    # its taps u * KW + v, the synapse rows u * kw + v
    row = tap if isinstance(kw, int) and kw == KW else Array(offs)[tap]
    saddr = base + row * rw + g_now
    lane_ports = []
    if core.conv_banked:  # the position's channels start mid-word: each bank its own word, weights rotated
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


def tile_local(core: Core, index):
    """Local index of population neuron ``index = (ch, y, x)`` in this channel x tile slice:
    ``((y - y0) * tw + (x - x0)) * cb + (ch - c0)``, or -1 when it is not in the slice. The index
    is decoded in the piece's own population shape: an identity source has the same size, not
    necessarily the same shape (a flat ``(C*H*W,)`` source feeds neuron ``index`` all the same)."""
    c0, y0, x0 = (core.origin[k] for k in TILE_REGISTERS)
    gm = core.geom  # constants, or a loadable conv context's registers
    cb, th, tw, hh, ww = gm["cb"], gm["th"], gm["tw"], gm["pop_h"], gm["pop_w"]
    ch, rem = index // (hh * ww), index % (hh * ww)
    y, x = rem // ww, rem % ww
    inside = (ch >= c0) & (ch < c0 + cb) & (y >= y0) & (y < y0 + th) & (x >= x0) & (x < x0 + tw)
    return Mux(inside, ((y - y0) * tw + (x - x0)) * cb + (ch - c0), -1)
