"""The multi-basis (MBE) unit's phase F (section 4.5): its passes, the split and the payloads.

Functions of a :class:`~spikeforge.rtl.core.Core` under elaboration: they read its hardware file, its
piece and its registers and add their logic to the core's module ``m``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from .flits import SHIFT_BITS, STEP_BITS

if TYPE_CHECKING:
    from .core import Core

__all__ = [
    "mbe_issue",
    "mbe_lane",
    "mbe_split",
]


def mbe_issue(core: Core, m: Module, lut_words, first, f_iss, f_t, f_len, f_addr, f_raddr) -> dict:
    """Phase F of an ``mbe`` piece (section 4.5): its passes, ``ceil(n/lanes)`` cycles each.

    Pass 0, in the input window: ``X += bias`` (membrane words ``0 .. groups - 1``). Passes
    ``b + 1``, at output steps ``k = t - out_start`` in ``0 .. T - 1``: basis ``b``, whose
    membrane block starts at word ``(b + 1) * groups``; at ``k = 0`` the pass reads ``X``
    instead. The table row ``(VTH, R, DI)`` of ``(b, k)`` and the offset ``C_b`` are read from
    the table memory (the parameter image's words after the ``n`` unit words, one per word) in
    the issue cycle and broadcast to the lanes in the next.
    """
    c, p = core.hw.core, core.piece
    vb, nb, T = c.v_bits, p.bases, p.timesteps
    groups = -(-p.n // c.lanes)
    step = core.step
    r = core.regs  # T stays the piece's: it shapes the table's addresses (structure_key)
    bias_now = (step >= r["in_start"]) & (step < r["in_start"] + T)
    out_now = (step >= r["out_start"]) & (step < r["out_start"] + T)
    m.d.comb += f_len.eq(Mux(bias_now, groups, 0) + Mux(out_now, nb * groups, 0))
    sh = core.shared or {}
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
    x_lo, x_hi, out_bias = core.mbe_regs  # MBE_REGISTERS: the table's last word, loaded with the piece
    code, shift_base = (int(v) for v in p.params[p.n + nb * T][1:3])  # basis 0's offset word (section 4.5)
    split, split_bits, exp_bias = code & 3, (code >> 2) & 63, code >> 8
    shm = None
    if split or shift_base:  # the shift memory: a 7-bit word per unit, beside the membrane SRAM
        if "shift" in sh:  # shared by the core position's pieces (rounds: state, loaded and written back)
            shm = sh["shift"]
        else:
            m.submodules.shift_mem = shm = Memory(shape=unsigned(c.lanes * SHIFT_BITS), depth=core.groups_max, init=[])
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


def mbe_lane(core: Core, m: Module, mb: dict, lane: int, v):
    """One lane of a basis pass: ``U = clip(X, x_lo, x_hi) - C_b`` at ``k = 0`` (else ``U``),
    ``s = U >= VTH``, ``U -= s * R``, ``P += s * DI`` (``P = s * DI`` in the first pass). Lanes
    past ``n`` stay 0 and never fire. Returns the new ``U`` and ``P``."""
    c, p = core.hw.core, core.piece
    vb = c.v_bits
    row = mb["row"]
    vth, r, di = (row.word_select(i, vb).as_signed() for i in range(3))
    cb = mb["off"].word_select(0, vb).as_signed()
    x_lo, x_hi = mb["x_lo"], mb["x_hi"]
    xc = Signal(signed(vb), name=f"mbe_xc{lane}")
    m.d.comb += xc.eq(Mux(v < x_lo, x_lo, Mux(v > x_hi, x_hi, v)))
    x_in, sh = mbe_split(core, m, mb, lane, xc)
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


def mbe_split(core: Core, m: Module, mb: dict, lane: int, xc):
    """The split unit of one lane (section 4.5) on the clamped ``X``: the basis input ``u`` and the
    output shift ``sh``. ``exp2``: ``e = X >> b``, ``u = X - (e << b)``, ``sh = shift_base + e``;
    ``inv``: ``u = floor(X * 2^(b - L))``, ``sh = shift_base - L``; ``invsqrt``: ``E = L + exp_bias``,
    ``p = E mod 2``, ``u = floor(X * 2^(b + p - L))``, ``sh = shift_base - (E - p) / 2``; ``none``:
    ``u = X``. ``L`` is the bit length of ``X`` (a priority encoder); both shifts are barrel shifters.
    Combinational in the cycle that reads ``X``: no extra cycles."""
    vb = core.hw.core.v_bits
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
