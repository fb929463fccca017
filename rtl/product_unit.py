"""The running-count mode of spike x spike products (section 4.3) on skewed membrane banks.

Functions of a :class:`~spikeforge.rtl.core.Core` under elaboration: they read its hardware file, its
piece and its registers and add their logic to the core's module ``m``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from spikeforge.mapping.images import SLOT_CODES

from .memories import count_words, entries_per_word, operand_field_bits, operand_words
from .piece import bank_shifts, product_banks

if TYPE_CHECKING:
    from .core import Core

__all__ = [
    "product_unit",
]


def product_unit(core: Core, m: Module, head, pop, idle, kind, is_psum, val, s_weight) -> dict:
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
    index is mapped to its ``(row, column)`` by the piece's index tables, held in the operand table
    memory (:func:`~spikeforge.rtl.memories.operand_words`: one entry per offset from the tables'
    base registers ``a_base``, ``b_base``), so pieces with different tables share a context.

    Returns, for the cycle in progress, per lane the bank word, the count's position in the word
    read and whether the lane has a neuron, the synapse word to read, whether the cycle reads the
    event's own count (and its lane), plus the groups of the event being popped and of the one in
    progress."""
    c, p = core.hw.core, core.piece
    lanes = c.lanes
    g = p.geometry
    ni, nj, nc = g["i1"] - g["i0"], g["j1"] - g["j0"], p.contraction
    gi, gj = -(-ni // lanes), -(-nj // lanes)
    w = s_weight[next(k for k, sl in enumerate(p.slots) if sl.kind == SLOT_CODES["product_a"])]
    is_a = kind == SLOT_CODES["product_a"]
    # decode the operand: (row, col) of a (i, c) or of b (c, j), from the operand table memory (a
    # loaded image in swap and rounds mode): entry `offset` holds a's (i, c) and b's (c, j) at that
    # offset from each table's base register; an asynchronous read, so the event is decoded in the
    # cycle it is popped
    row, col = Signal(range(max(2, ni, nc) + 1)), Signal(range(max(2, nc, nj) + 1))
    f = operand_field_bits(core.hw)
    per = entries_per_word(core.hw, 4 * f)  # entry e: entry e % per of word e // per
    sh = core.shared
    if sh is not None:  # swap and rounds mode: the core position's memory, the loader fills it
        table = sh["operands"]
    else:
        words = operand_words(core.hw, p)
        m.submodules.operands = table = Memory(shape=unsigned(per * 4 * f), depth=len(words), init=words)
    tab_rd = table.read_port(domain="comb")
    a_rel = Signal(signed(26), name="prod_a_off")  # the source's offset in its operand's table
    b_rel = Signal(signed(26), name="prod_b_off")
    m.d.comb += [a_rel.eq(head.index - core.operand_base[0]), b_rel.eq(head.index - core.operand_base[1])]
    rel = Signal(signed(26), name="prod_off")
    m.d.comb += rel.eq(Mux(is_a, a_rel, b_rel))
    lsb = (per - 1).bit_length()
    m.d.comb += tab_rd.addr.eq(rel.as_unsigned()[lsb:])
    entry = tab_rd.data.word_select(rel.as_unsigned()[:lsb] if lsb else 0, 4 * f).word_select(~is_a, 2 * f)
    with m.If((rel >= 0) & (rel < table.depth * per)):  # (an offset outside the table decodes as (0, 0))
        m.d.comb += [row.eq(entry[:f]), col.eq(entry[f:])]
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
        b_addr = pre[ib] + word_of_col[cl] + (core.product_fault == "word_offset")
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
