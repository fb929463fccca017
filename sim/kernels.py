"""Numba kernels: event generation, event delivery, firing, partial sums, the mesh, and the
untraced ``rounds`` loop over a whole inference (``run_rounds``).

Each kernel implements one part of ``docs/architecture.md`` over the flat arrays of
:mod:`spikeforge.sim.lowering`; loops run over events and neurons that are active, never over
every synapse of the model.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES

from .lowering import PIECE_FIELDS, SLOT_FIELDS

__all__ = [
    "gen_flits",
    "gen_round_events",
    "deliver",
    "fire",
    "partial_sums",
    "mesh_phase",
    "round_timing",
    "round_rows",
    "run_rounds",
    "STAT_FIELDS",
]

# column indices (module constants are frozen into the compiled code)
KIND, N, OFF, POP, CORE, ROOT, IN_START, OUT_START = (
    PIECE_FIELDS.index(k) for k in ("kind", "n", "off", "pop", "core", "root", "in_start", "out_start")
)
G0 = PIECE_FIELDS.index("g0")
CNT_OFF, CNT_LEN = PIECE_FIELDS.index("cnt_off"), PIECE_FIELDS.index("cnt_len")
SLOT0, NSLOTS = PIECE_FIELDS.index("slot0"), PIECE_FIELDS.index("nslots")
HIST_BITS, LUT_OFF, BASES, X_LO, X_HI = (
    PIECE_FIELDS.index(k) for k in ("hist_bits", "lut_off", "bases", "x_lo", "x_hi")
)
ACC_START, PC_OFF, PC_C, PC_BITS = (PIECE_FIELDS.index(k) for k in ("acc_start", "pc_off", "pc_c", "pc_bits"))
POOL_GRADED = PIECE_FIELDS.index("pool_graded")
SPLIT, SPLIT_BITS, EXP_BIAS, SHIFT_BASE, OUT_BIAS = (
    PIECE_FIELDS.index(k) for k in ("split", "split_bits", "exp_bias", "shift_base", "out_bias")
)
#: bits of an MBE unit's output-shift word (section 4.5)
SHIFT_BITS = 7
SK, SPROJ, SLO, SHI, SSRC, SWOFF, SCI, SH, SW, SKH, SKW, SSTRIDE, SPAD, SWEIGHT, SWROW, SINV, SDELAY = (
    SLOT_FIELDS.index(k) for k in SLOT_FIELDS[:17]
)
SFWD, SD1, SD2 = (SLOT_FIELDS.index(k) for k in ("fwd_off", "fwd_d1", "fwd_d2"))
CONV, DENSE, POOL_DENSE, IDENTITY, PROD_A, PROD_B, POOL = (
    SLOT_CODES[k] for k in ("conv", "dense", "pool_dense", "identity", "product_a", "product_b", "pool")
)
NEURON, PARTIAL, PRODUCT, MAXPOOL, OUTPUT, MBE = (
    PIECE_CODES[k] for k in ("neuron", "partial", "product", "maxpool", "output", "mbe")
)

#: Per-run statistics accumulated by the kernels, in this order.
STAT_FIELDS = (
    "synaptic_ops",
    "macs",
    "neuron_updates",
    "spikes",
    "syn_read",
    "mem_read",
    "mem_write",
    "par_read",
    "hist_read",
    "hist_write",
    "route_read",
    "cnt_read",
    "cnt_write",
    "payload_macs",
)
ST = {k: i for i, k in enumerate(STAT_FIELDS)}
ST_OPS, ST_MACS, ST_UPD, ST_SPK, ST_SYN, ST_MR, ST_MW, ST_PR, ST_HR, ST_HW, ST_RR, ST_CR, ST_CW, ST_PMACS = range(14)


@njit(cache=True)
def _ceil(a, b):
    return (a + b - 1) // b


@njit(cache=True)
def gen_flits(
    t, T, pieces, route, route_ptr, neurons, ring, ring_off, ring_depth, pop_size, input_pop, x, entry_bits, stats
):
    """Flits of phase I at step ``t`` in contract order (source by source, entry by entry).

    Returns ``(src, dst_piece, slot, s, value)``: ``src`` is the source piece (``-1`` the host).
    """
    n_pieces = pieces.shape[0]
    total = 0
    f_src = np.empty(0, np.int64)
    f_dst = np.empty(0, np.int64)
    f_slot = np.empty(0, np.int64)
    f_s = np.empty(0, np.int64)
    f_val = np.empty(0, np.int64)
    for pass_ in range(2):
        if pass_ == 1:
            f_src = np.empty(total, np.int64)
            f_dst = np.empty(total, np.int64)
            f_slot = np.empty(total, np.int64)
            f_s = np.empty(total, np.int64)
            f_val = np.empty(total, np.int64)
            total = 0
        for src in range(n_pieces + 1):
            lo, hi = route_ptr[src], route_ptr[src + 1]
            if lo == hi:
                continue
            host = src == n_pieces
            if host:
                pop = input_pop
                fire_lo, fire_hi = 0, T
            else:
                pop = pieces[src, POP]
                fire_lo = pieces[src, OUT_START]
                fire_hi = fire_lo + T
            size, depth = pop_size[pop], ring_depth[pop]
            last_delay = -1
            for e in range(lo, hi):
                delay = route[e, 5]
                step = t - 1 - delay
                if step < fire_lo or step >= fire_hi:
                    continue
                if pass_ == 0:
                    if delay != last_delay and not host:
                        stats[ST_HR] += pieces[src, HIST_BITS]  # one history row per delay group
                    stats[ST_RR] += entry_bits
                last_delay = delay
                base = ring_off[pop] + (step % depth) * size
                for j in range(route[e, 1], route[e, 2] + 1):
                    if host:
                        g = j
                        val = x[g]
                    else:
                        g = neurons[pieces[src, OFF] + j]
                        val = ring[base + g]
                    if val == 0:
                        continue
                    if pass_ == 1:
                        f_src[total] = -1 if host else src
                        f_dst[total] = route[e, 3]
                        f_slot[total] = route[e, 4]
                        f_s[total] = g
                        f_val[total] = val
                    total += 1
    return f_src, f_dst, f_slot, f_s, f_val


@njit(cache=True, inline="always")
def _accumulate(v, w, val):
    """``v += val * w`` over views (zero-based indices let LLVM vectorize; spikes skip the multiply)."""
    if val == 1:
        for j in range(v.shape[0]):
            v[j] += w[j]
    else:
        for j in range(v.shape[0]):
            v[j] += val * w[j]


#: a short dense group takes the dot-product path when at least one source in this many is non-zero
DOT_DENSITY = 8
#: fused rows shorter than this are added by index (``_short_rows``): an array view per event
#: (reference counted) and a vector loop's set-up cost a 10-word row about 20-40 ns, several
#: times its additions (measured on the 4096 -> 4096 layer's second layer)
SHORT_ROW = 32


@njit(cache=True)
def _short_rows(src, base, lo, hi, scale, v, vo, w, w0, wrow, n, tw, tw_off):
    """One fused group of short rows (``n < SHORT_ROW``): ``v[vo + j] += sum_s src[base + s] *
    w[w0 + row(s) * wrow + j]`` over the non-zero ``src`` (the events); returns the events.

    Sparse steps add a row per event, by index (no view per event). Where the group has a
    target-major copy (``tw_off >= 0``, dense: ``tw[tw_off + j * rows + r]`` is row ``r``'s word
    ``j``) and at least one source in ``DOT_DENSITY`` is non-zero, each neuron's sum is one dot
    product over all sources instead (vectorized; the same integer sum).
    """
    events = 0
    for s in range(lo * scale, hi * scale):
        events += src[base + s] != 0
    rows = hi - lo
    if tw_off >= 0 and events * DOT_DENSITY >= rows:
        for j in range(n):
            acc = 0
            row = tw[tw_off + j * rows : tw_off + (j + 1) * rows]
            vals = src[base + lo : base + hi]
            for r in range(rows):
                acc += vals[r] * row[r]
            v[vo + j] += acc
        return events
    for s in range(lo * scale, hi * scale):
        val = src[base + s]
        if val == 0:
            continue
        wb = w0 + ((s - lo) if scale == 1 else (s // scale - lo)) * wrow
        if val == 1:
            for j in range(n):
                v[vo + j] += w[wb + j]
        else:
            for j in range(n):
                v[vo + j] += val * w[wb + j]
    return events


@njit(cache=True)
def _long_rows(src, base, lo, hi, scale, acc, w, w0, wrow, fresh):
    """One fused group of long rows: ``acc += src[base + s] * w[w0 + row(s) * wrow:][:n]`` for
    every non-zero ``src``, the first one assigned instead where ``fresh`` (a scratch row);
    returns the events. A function of its own, like :func:`_short_rows`, so that each loop is
    compiled apart from ``round_rows``' other paths."""
    n = acc.shape[0]
    events = 0
    for s in range(lo * scale, hi * scale):
        val = src[base + s]
        if val == 0:
            continue
        wb = w0 + ((s - lo) if scale == 1 else (s // scale - lo)) * wrow
        if fresh and events == 0:
            _assign(acc, w[wb : wb + n], val)
        else:
            _accumulate(acc, w[wb : wb + n], val)
        events += 1
    return events


@njit(cache=True, inline="always")
def _assign(v, w, val):
    """``v = val * w`` over views (a scratch row's first sum)."""
    if val == 1:
        for j in range(v.shape[0]):
            v[j] = w[j]
    else:
        for j in range(v.shape[0]):
            v[j] = val * w[j]


@njit(cache=True, inline="always")
def _add_count(root, part):
    """``root += part`` over views; returns how many of ``part`` are non-zero."""
    nonzero = 0
    for j in range(part.shape[0]):
        a = part[j]
        nonzero += a != 0
        root[j] += a
    return nonzero


@njit(cache=True)
def _reaches(coord, pad, k, stride, lo, hi):
    """True when some output coordinate in ``lo..hi-1`` takes input ``coord`` through a tap."""
    for u in range(k):
        num = coord + pad - u
        if num >= 0 and num % stride == 0 and lo <= num // stride < hi:
            return True
    return False


@njit(cache=True)
def gen_round_events(
    t,
    T,
    pieces,
    slots,
    neurons,
    forward,
    ring,
    ring_off,
    ring_depth,
    pop_size,
    pop_out_start,
    input_pop,
    pop_graded,
    x,
    skip_rows=False,
    apply=None,
):
    """Rounds mode: the events each piece reads from DRAM at step ``t`` (architecture section 7).

    For every slot, the source neurons it needs (by the slot's geometry, as
    ``mapping.connectivity.slot_sources``) that emitted at ``t - 1 - delay``, piece by piece.
    Returns ``(dst_piece, slot, s, value, graded)``. Events are counted, then written, at each
    slot kind's site: a shared inline helper for the recording measured 40 % slower at ImageNet size.
    With ``skip_rows``, dense and pool_dense slots are left to :func:`round_rows`.

    With ``apply = (weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits,
    piece_cost, piece_ops, stats)`` each event is applied where it is found, in the same order and
    with the same counts as :func:`deliver` applying the list, and no list is built (empty arrays
    come back): the untraced rounds path, where the list and its second pass cost as much as the
    events at ImageNet size.
    """
    total = 0
    f_dst = np.empty(0, np.int64)
    f_slot = np.empty(0, np.int64)
    f_s = np.empty(0, np.int64)
    f_val = np.empty(0, np.int64)
    f_gr = np.empty(0, np.int8)
    a_syn = a_mr = a_mw = a_cr = a_cw = 0  # applying: statistics kept in registers
    og = np.zeros(3, np.int64)  # accumulations by graded code
    if apply is not None:
        (
            weights,
            inverse,
            pop_off,
            loc_local,
            state,
            counts,
            lanes,
            wbits,
            vbits,
            cbits,
            piece_cost,
            piece_ops,
            stats,
        ) = apply
    for pass_ in range(2 if apply is None else 1):  # count, then fill (or apply)
        if pass_ == 1:
            f_dst = np.empty(total, np.int64)
            f_slot = np.empty(total, np.int64)
            f_s = np.empty(total, np.int64)
            f_val = np.empty(total, np.int64)
            f_gr = np.empty(total, np.int8)
            total = 0
        for p in range(pieces.shape[0]):
            off, n = pieces[p, OFF], pieces[p, N]
            pc = po = 0  # applying: the piece's cycles and accumulations
            for k in range(pieces[p, SLOT0], pieces[p, SLOT0] + pieces[p, NSLOTS]):
                src = slots[k, SSRC]
                step = t - 1 - slots[k, SDELAY]
                if step < pop_out_start[src] or step >= pop_out_start[src] + T:
                    continue
                host = src == input_pop
                graded = 1 if host else (2 if pop_graded[src] == 1 else 0)  # host input, MBE payload, spike
                base = ring_off[src] + (step % ring_depth[src]) * pop_size[src]
                kind = slots[k, SK]
                lo, hi = slots[k, SLO], slots[k, SHI]
                if (kind == DENSE or kind == POOL_DENSE) and skip_rows:
                    continue  # round_rows applies these without an event list
                if kind == DENSE or kind == POOL_DENSE:
                    scale = 1 if kind == DENSE else slots[k, SH] * slots[k, SW]
                    for s in range(lo * scale, hi * scale):
                        v = x[s] if host else ring[base + s]
                        if v != 0:
                            if apply is not None:
                                c_cost, ops, syn, mr, mw, cr, cw = _row_event(
                                    p,
                                    k,
                                    s,
                                    v,
                                    pieces,
                                    slots,
                                    weights,
                                    inverse,
                                    pop_off,
                                    loc_local,
                                    state,
                                    counts,
                                    lanes,
                                    wbits,
                                    vbits,
                                    cbits,
                                )
                                pc += c_cost
                                po += ops
                                og[graded] += ops
                                a_syn += syn
                                a_mr += mr
                                a_mw += mw
                                a_cr += cr
                                a_cw += cw
                            elif pass_ == 1:
                                f_dst[total], f_slot[total], f_s[total] = p, k, s
                                f_val[total], f_gr[total] = v, graded
                            total += 1
                elif kind == CONV:
                    hh, ww, kh, kw = slots[k, SH], slots[k, SW], slots[k, SKH], slots[k, SKW]
                    st, pad = slots[k, SSTRIDE], slots[k, SPAD]
                    y0, y1, x0, x1 = pieces[p, G0 + 2], pieces[p, G0 + 3], pieces[p, G0 + 4], pieces[p, G0 + 5]
                    ya, yb = max(0, y0 * st - pad), min(hh, (y1 - 1) * st + kh - pad)
                    xa, xb = max(0, x0 * st - pad), min(ww, (x1 - 1) * st + kw - pad)
                    all_y, all_x = kh >= st, kw >= st  # taps cover every input between: no gaps
                    for c in range(lo, hi):
                        for y in range(ya, yb):
                            if not all_y and not _reaches(y, pad, kh, st, y0, y1):
                                continue
                            for xx in range(xa, xb):
                                s = (c * hh + y) * ww + xx
                                v = x[s] if host else ring[base + s]
                                if v != 0 and (all_x or _reaches(xx, pad, kw, st, x0, x1)):
                                    if apply is not None:
                                        c_cost, ops, syn, mr, mw, cr, cw = _conv_event(
                                            p,
                                            k,
                                            s,
                                            v,
                                            pieces,
                                            slots,
                                            weights,
                                            inverse,
                                            pop_off,
                                            loc_local,
                                            state,
                                            counts,
                                            lanes,
                                            wbits,
                                            vbits,
                                            cbits,
                                        )
                                        pc += c_cost
                                        po += ops
                                        og[graded] += ops
                                        a_syn += syn
                                        a_mr += mr
                                        a_mw += mw
                                        a_cr += cr
                                        a_cw += cw
                                    elif pass_ == 1:
                                        f_dst[total], f_slot[total], f_s[total] = p, k, s
                                        f_val[total], f_gr[total] = v, graded
                                    total += 1
                elif kind == IDENTITY:
                    for j in range(n):
                        s = neurons[off + j]
                        v = x[s] if host else ring[base + s]
                        if v != 0:
                            if apply is not None:
                                c_cost, ops, syn, mr, mw, cr, cw = _identity_event(
                                    p,
                                    k,
                                    s,
                                    v,
                                    pieces,
                                    slots,
                                    weights,
                                    inverse,
                                    pop_off,
                                    loc_local,
                                    state,
                                    counts,
                                    lanes,
                                    wbits,
                                    vbits,
                                    cbits,
                                )
                                pc += c_cost
                                po += ops
                                og[graded] += ops
                                a_syn += syn
                                a_mr += mr
                                a_mw += mw
                                a_cr += cr
                                a_cw += cw
                            elif pass_ == 1:
                                f_dst[total], f_slot[total], f_s[total] = p, k, s
                                f_val[total], f_gr[total] = v, graded
                            total += 1
                elif kind == PROD_A or kind == PROD_B:
                    ph, d1, d2, fo = pieces[p, G0], slots[k, SD1], slots[k, SD2], slots[k, SFWD]
                    if kind == PROD_A:  # index (H, I, C): rows i0..i1, every c
                        a0, a1, b0, b1 = pieces[p, G0 + 1], pieces[p, G0 + 2], 0, d2
                    else:  # index (H, C, J): every c, columns j0..j1
                        a0, a1, b0, b1 = 0, d1, pieces[p, G0 + 3], pieces[p, G0 + 4]
                    for a in range(a0, a1):
                        for b in range(b0, b1):
                            s = forward[fo + (ph * d1 + a) * d2 + b]
                            v = x[s] if host else ring[base + s]
                            if v != 0:
                                if apply is not None:
                                    c_cost, ops, syn, mr, mw, cr, cw = _product_event(
                                        p,
                                        k,
                                        s,
                                        v,
                                        pieces,
                                        slots,
                                        weights,
                                        inverse,
                                        pop_off,
                                        loc_local,
                                        state,
                                        counts,
                                        lanes,
                                        wbits,
                                        vbits,
                                        cbits,
                                    )
                                    pc += c_cost
                                    po += ops
                                    og[graded] += ops
                                    a_syn += syn
                                    a_mr += mr
                                    a_mw += mw
                                    a_cr += cr
                                    a_cw += cw
                                elif pass_ == 1:
                                    f_dst[total], f_slot[total], f_s[total] = p, k, s
                                    f_val[total], f_gr[total] = v, graded
                                total += 1
                elif kind == POOL:
                    kk, hh, ww = slots[k, SKH], slots[k, SH], slots[k, SW]
                    ho, wo = hh // kk, ww // kk
                    for j in range(n):
                        o = neurons[off + j]
                        c = o // (ho * wo)
                        oy = (o - c * ho * wo) // wo
                        ox = o - c * ho * wo - oy * wo
                        for u in range(kk):
                            for w_ in range(kk):
                                s = (c * hh + oy * kk + u) * ww + ox * kk + w_
                                v = x[s] if host else ring[base + s]
                                if v != 0:
                                    if apply is not None:
                                        c_cost, ops, syn, mr, mw, cr, cw = _pool_event(
                                            p,
                                            k,
                                            s,
                                            v,
                                            pieces,
                                            slots,
                                            weights,
                                            inverse,
                                            pop_off,
                                            loc_local,
                                            state,
                                            counts,
                                            lanes,
                                            wbits,
                                            vbits,
                                            cbits,
                                        )
                                        pc += c_cost
                                        po += ops
                                        og[0] += ops  # a count, or a payload added as it is: not a MAC
                                        a_syn += syn
                                        a_mr += mr
                                        a_mw += mw
                                        a_cr += cr
                                        a_cw += cw
                                    elif pass_ == 1:
                                        f_dst[total], f_slot[total], f_s[total] = p, k, s
                                        f_val[total], f_gr[total] = v, graded
                                    total += 1
            if apply is not None:
                piece_cost[p] += pc
                piece_ops[p] += po
    if apply is not None:
        stats[ST_OPS] += og[0]
        stats[ST_MACS] += og[1] + og[2]
        stats[ST_PMACS] += og[2]
        stats[ST_SYN] += a_syn
        stats[ST_MR] += a_mr
        stats[ST_MW] += a_mw
        stats[ST_CR] += a_cr
        stats[ST_CW] += a_cw
    return f_dst, f_slot, f_s, f_val, f_gr


@njit(cache=True)
def round_timing(
    t,
    core_ptr,
    units,
    unit_ptr,
    unit_pieces,
    win_lo,
    win_hi,
    b_in,
    b_out,
    piece_cost,
    fire_cycles,
    pipeline,
    latency,
    bytes_per_cycle,
    core_busy,
):
    """Rounds mode, one step: each core runs its slices in timeline order through one DRAM channel.

    A slice's round loads and integrates its pieces one at a time, root and partial chunks in
    ``unit_pieces`` order (a chunk exists because the slice's synapses do not fit one synapse SRAM
    together): piece ``i`` loads ``b_in[i]`` bytes, then integrates (its events' cycles, plus
    ``pipeline`` if any, so the SRAM is free before the next load); then the slice fires and
    writes back the sum of its pieces' ``b_out``. The channel serves requests one at a time in
    request order (ties: lower core first). Returns ``(cycles until the last write-back ends,
    DRAM bytes)``.
    """
    n_cores = core_ptr.shape[0] - 1
    pos = core_ptr[:-1].copy()  # next unit of each core
    ready = np.zeros(n_cores, np.int64)  # when each core issues its next request
    phase = np.zeros(n_cores, np.int64)  # 0: next request loads piece cur_q, 1: a write-back
    cur_q = np.full(n_cores, -1, np.int64)  # the piece (index into unit_pieces) to load next, -1: none
    cur_end = np.zeros(n_cores, np.int64)  # end of the current unit's pieces in unit_pieces
    cur_out = np.zeros(n_cores, np.int64)
    cur_fire = np.zeros(n_cores, np.int64)
    done = np.zeros(n_cores, np.bool_)
    free = 0
    end = 0
    moved = 0
    while True:
        # each waiting core's next active round
        pick = -1
        for k in range(n_cores):
            if done[k]:
                continue
            if phase[k] == 0 and cur_q[k] < 0:
                while pos[k] < core_ptr[k + 1]:
                    u = units[pos[k]]
                    pos[k] += 1
                    first = -1
                    bo = fire = 0
                    for q in range(unit_ptr[u], unit_ptr[u + 1]):
                        piece = unit_pieces[q]
                        if win_lo[piece] <= t < win_hi[piece] and b_in[piece] > 0:
                            if first < 0:
                                first = q
                            bo += b_out[piece]
                            fire += fire_cycles[piece]
                    if first >= 0:
                        cur_q[k], cur_end[k], cur_out[k], cur_fire[k] = first, unit_ptr[u + 1], bo, fire
                        break
                if cur_q[k] < 0:
                    done[k] = True
                    continue
            if pick < 0 or ready[k] < ready[pick]:
                pick = k
        if pick < 0:
            break
        k = pick
        start = max(ready[k], free)
        if phase[k] == 0:
            piece = unit_pieces[cur_q[k]]
            free = start + latency + (b_in[piece] + bytes_per_cycle - 1) // bytes_per_cycle
            moved += b_in[piece]
            work = piece_cost[piece] + (pipeline if piece_cost[piece] > 0 else 0)
            q = cur_q[k] + 1  # the slice's next piece in its window
            while q < cur_end[k] and not (
                win_lo[unit_pieces[q]] <= t < win_hi[unit_pieces[q]] and b_in[unit_pieces[q]] > 0
            ):
                q += 1
            if q < cur_end[k]:
                cur_q[k] = q
            else:  # the last piece: fire, then write back
                work += cur_fire[k]
                phase[k] = 1
            core_busy[k] += work
            ready[k] = free + work
        else:
            free = start + latency + (cur_out[k] + bytes_per_cycle - 1) // bytes_per_cycle
            moved += cur_out[k]
            ready[k] = free
            end = max(end, free)
            phase[k] = 0
            cur_q[k] = -1
    return end, moved


@njit(cache=True)
def round_rows(
    t,
    T,
    pieces,
    slots,
    slot_piece,
    group_ptr,
    group_slots,
    group_fused,
    group_root,
    scratch,
    tw,
    group_tw,
    ring,
    ring_off,
    ring_depth,
    pop_size,
    pop_out_start,
    input_pop,
    pop_graded,
    x,
    weights,
    state,
    lanes,
    wbits,
    vbits,
    piece_cost,
    piece_ops,
    stats,
):
    """Rounds mode, dense and pool_dense slots: each piece reads its sources' outputs and adds rows.

    The same events, costs and counts as :func:`gen_round_events` then :func:`deliver` (a row event
    costs ``ceil(n/lanes)`` cycles; rounds add costs per piece, so order does not matter), without
    building an event list: at 4096 x 4096 the list and the per-event dispatch cost as much as
    the additions. Slots that read the same source rows (the slices of one population, one
    fan-in chunk) are swept together, source by source, so each source's row is read as one
    contiguous run of the transposed matrix; when the slices' states are adjacent too
    (``group_fused``: the lowering orders states by chunk, then slice) it is one long addition.

    Where ``group_root[g] >= 0`` (partial slices whose sums phase P would move to their roots in
    this very step, from words that start the step at zero: ``lowering._scratch_roots``), the
    group's rows are summed in the cache-resident ``scratch`` row instead, then added to the roots
    at ``group_root[g]``, counting the non-zero sums for phase P's membrane reads and writes
    (``partial_sums`` then only scans those pieces): the same sums, counts and final state, with
    one membrane row in cache instead of one per fan-in chunk. With ``moved`` phase P is told which.
    Short fused dense rows may be summed per target neuron from ``tw`` (``_short_rows``).
    """
    for g in range(group_ptr.shape[0] - 1):
        q0, q1 = group_ptr[g], group_ptr[g + 1]
        k0 = group_slots[q0]
        kind, src = slots[k0, SK], slots[k0, SSRC]
        step = t - 1 - slots[k0, SDELAY]
        if step < pop_out_start[src] or step >= pop_out_start[src] + T:
            continue
        host = src == input_pop
        graded = 1 if host else (2 if pop_graded[src] == 1 else 0)
        base = ring_off[src] + (step % ring_depth[src]) * pop_size[src]
        lo, hi = slots[k0, SLO], slots[k0, SHI]
        scale = 1 if kind == DENSE else slots[k0, SH] * slots[k0, SW]
        events = 0
        width = group_fused[g]
        off0 = pieces[slot_piece[k0], OFF]
        root = group_root[g]
        acc, acc_off = (scratch, 0) if root >= 0 else (state, off0)
        w0, wrow = slots[k0, SWOFF], slots[k0, SWROW]
        if 0 < width < SHORT_ROW and root < 0:  # short rows by index, no view per event
            short = (lo, hi, scale, state, off0, weights, w0, wrow, width, tw, group_tw[g])
            events = _short_rows(x, 0, *short) if host else _short_rows(ring, base, *short)
        elif width > 0:  # the slices side by side: one long row per event
            long = (lo, hi, scale, acc[acc_off : acc_off + width], weights, w0, wrow, root >= 0)
            events = _long_rows(x, 0, *long) if host else _long_rows(ring, base, *long)
        else:  # slices apart: a row each
            for s in range(lo * scale, hi * scale):
                val = x[s] if host else ring[base + s]
                if val == 0:
                    continue
                row = s - lo if scale == 1 else s // scale - lo
                for q in range(q0, q1):
                    k = group_slots[q]
                    p = slot_piece[k]
                    off, n, wb = pieces[p, OFF], pieces[p, N], slots[k, SWOFF] + row * slots[k, SWROW]
                    _accumulate(state[off : off + n], weights[wb : wb + n], val)
                events += 1
        if root >= 0 and events > 0:  # phase P's move, done here: root += sums (non-zero ones counted)
            nonzero = _add_count(state[root : root + width], acc[:width])
            stats[ST_MR] += nonzero * vbits
            stats[ST_MW] += nonzero * vbits
        for q in range(q0, q1):
            p = slot_piece[group_slots[q]]
            n = pieces[p, N]
            groups = _ceil(n, lanes)
            piece_cost[p] += events * groups
            ops = events * n
            piece_ops[p] += ops
            if graded:
                stats[ST_MACS] += ops
                if graded == 2:
                    stats[ST_PMACS] += ops
            else:
                stats[ST_OPS] += ops
            stats[ST_SYN] += events * groups * lanes * wbits
            stats[ST_MR] += events * groups * lanes * vbits
            stats[ST_MW] += events * groups * lanes * vbits


@njit(cache=True, inline="always")
def _conv_event(
    p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
):
    """A source spike or value into a ``conv`` slot: one row of ``cb`` channels per tap that reaches the piece."""
    syn = mr = mw = cr = cw = 0
    ops = 0
    c_cost = 1
    off = pieces[p, OFF]
    hh, ww = slots[k, SH], slots[k, SW]
    kh, kw, st, pad = slots[k, SKH], slots[k, SKW], slots[k, SSTRIDE], slots[k, SPAD]
    c = s // (hh * ww)
    rem = s - c * hh * ww
    y = rem // ww
    xx = rem - y * ww
    c0, c1, y0, y1, x0, x1 = (
        pieces[p, G0],
        pieces[p, G0 + 1],
        pieces[p, G0 + 2],
        pieces[p, G0 + 3],
        pieces[p, G0 + 4],
        pieces[p, G0 + 5],
    )
    cb, tw = c1 - c0, x1 - x0
    woff = slots[k, SWOFF]
    r = 0
    wrow = slots[k, SWROW]
    for u in range(kh):
        num = y + pad - u
        if st == 1:  # the common case, without integer divisions
            oy = num
        elif num < 0 or num % st != 0:
            continue
        else:
            oy = num // st
        if oy < y0 or oy >= y1:
            continue
        for v in range(kw):
            numx = xx + pad - v
            if st == 1:
                ox = numx
            elif numx < 0 or numx % st != 0:
                continue
            else:
                ox = numx // st
            if ox < x0 or ox >= x1:
                continue
            pos = (oy - y0) * tw + (ox - x0)
            widx = woff + ((c * kh + u) * kw + v) * wrow + c0
            _accumulate(state[off + pos * cb : off + pos * cb + cb], weights[widx : widx + cb], val)
            r += 1
    groups = _ceil(cb, lanes)
    c_cost = max(1, r * groups)
    ops = r * cb
    syn += r * groups * lanes * wbits
    mr += r * groups * lanes * vbits
    mw += r * groups * lanes * vbits
    return c_cost, ops, syn, mr, mw, cr, cw


@njit(cache=True, inline="always")
def _row_event(
    p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
):
    """A source into a ``dense`` or ``pool_dense`` slot: one row of ``n``."""
    syn = mr = mw = cr = cw = 0
    ops = 0
    c_cost = 1
    off, n = pieces[p, OFF], pieces[p, N]
    kind = slots[k, SK]
    lo = slots[k, SLO]
    row = (s if kind == DENSE else s // (slots[k, SH] * slots[k, SW])) - lo
    base = slots[k, SWOFF] + row * slots[k, SWROW]
    _accumulate(state[off : off + n], weights[base : base + n], val)
    groups = _ceil(n, lanes)
    c_cost = groups
    ops = n
    syn += groups * lanes * wbits
    mr += groups * lanes * vbits
    mw += groups * lanes * vbits
    return c_cost, ops, syn, mr, mw, cr, cw


@njit(cache=True, inline="always")
def _identity_event(
    p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
):
    """A source into an ``identity`` slot: one membrane."""
    syn = mr = mw = cr = cw = 0
    ops = 0
    c_cost = 1
    off = pieces[p, OFF]
    local = loc_local[pop_off[pieces[p, POP]] + s]
    state[off + local] += val * slots[k, SWEIGHT]
    ops = 1
    mr += vbits
    mw += vbits
    return c_cost, ops, syn, mr, mw, cr, cw


@njit(cache=True, inline="always")
def _product_event(
    p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
):
    """An operand spike of a product (section 4.3): a row or column of running counts."""
    syn = mr = mw = cr = cw = 0
    ops = 0
    c_cost = 1
    off = pieces[p, OFF]
    kind = slots[k, SK]
    inv = slots[k, SINV] + s
    a1, a2 = inverse[inv, 1], inverse[inv, 2]  # routing sends a piece only its own head's operands
    i0, i1, j0, j1 = (
        pieces[p, G0 + 1],
        pieces[p, G0 + 2],
        pieces[p, G0 + 3],
        pieces[p, G0 + 4],
    )
    ni, nj = i1 - i0, j1 - j0
    cc = pieces[p, PC_C]
    cbase = pieces[p, PC_OFF]
    # a spike is val = 1; an MBE payload multiplies, and the running counts are payload sums
    w = slots[k, SWEIGHT] * val
    if kind == PROD_A:  # (h, i, c): add w a * Bbar[c, J] to row i, then Abar[i, c] += a
        ii, c = a1 - i0, a2
        for jj in range(nj):
            state[off + ii * nj + jj] += w * counts[cbase + ni * cc + c * nj + jj]
        counts[cbase + ii * cc + c] += val
        m = nj
    else:  # (h, c, j): add w b * Abar[I, c] to column j, then Bbar[c, j] += b
        c, jj = a1, a2 - j0
        for ii in range(ni):
            state[off + ii * nj + jj] += w * counts[cbase + ii * cc + c]
        counts[cbase + ni * cc + c * nj + jj] += val
        m = ni
    groups = _ceil(m, lanes)
    c_cost = groups + 1
    ops = m
    pbits = pieces[p, PC_BITS]
    cr += m * pbits + pbits
    cw += pbits
    mr += groups * lanes * vbits
    mw += groups * lanes * vbits
    return c_cost, ops, syn, mr, mw, cr, cw


@njit(cache=True, inline="always")
def _pool_event(
    p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
):
    """A spike into a max-pool window: its count and the window's maximum (a payload: its running sum)."""
    syn = mr = mw = cr = cw = 0
    ops = 0
    c_cost = 1
    n = pieces[p, N]
    kk = slots[k, SKH]
    hh, ww = slots[k, SH], slots[k, SW]
    c = s // (hh * ww)
    rem = s - c * hh * ww
    y = rem // ww
    xx = rem - y * ww
    ho, wo = hh // kk, ww // kk
    out = c * ho * wo + (y // kk) * wo + (xx // kk)
    local = loc_local[pop_off[pieces[p, POP]] + out]
    cbase = pieces[p, CNT_OFF]
    cidx = cbase + local * kk * kk + (y % kk) * kk + (xx % kk)
    ops = 1
    if pieces[p, POOL_GRADED]:  # a running sum of payloads; the maximum is taken in phase F
        counts[cidx] += val
        cr += vbits
        cw += vbits
        return c_cost, ops, syn, mr, mw, cr, cw
    counts[cidx] += 1
    midx = cbase + n * kk * kk + local
    if counts[cidx] > counts[midx]:
        counts[midx] = counts[cidx]
        counts[midx + n] = 1  # mark the output
    cr += cbits
    cw += cbits
    mr += vbits
    mw += vbits
    return c_cost, ops, syn, mr, mw, cr, cw


@njit(cache=True, inline="always")
def _apply(
    p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
):
    """One event (source ``s``, value ``val``) into slot ``k`` of piece ``p`` (section 4.1's table).

    Returns ``(cycles, accumulations, synapse bits read, membrane bits read, membrane bits
    written, count bits read, count bits written)``. Each kind's work is an inline function, so
    that :func:`gen_round_events` applies events where it finds them without a call per event.
    """
    kind = slots[k, SK]
    if kind == CONV:
        return _conv_event(
            p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
        )
    if kind == DENSE or kind == POOL_DENSE:
        return _row_event(
            p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
        )
    if kind == IDENTITY:
        return _identity_event(
            p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
        )
    if kind == PROD_A or kind == PROD_B:
        return _product_event(
            p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
        )
    if kind == POOL:
        return _pool_event(
            p, k, s, val, pieces, slots, weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits
        )
    return 1, 0, 0, 0, 0, 0, 0


@njit(cache=True)
def deliver(
    f_dst,
    f_slot,
    f_s,
    f_val,
    f_graded,
    pieces,
    slots,
    neurons,
    weights,
    inverse,
    pop_off,
    loc_local,
    state,
    counts,
    lanes,
    wbits,
    vbits,
    cbits,
    cost,
    piece_cost,
    piece_ops,
    stats,
):
    """Apply every flit to its destination piece (section 4.1's table, :func:`_apply`).

    Writes each flit's cycle cost into ``cost``, adds it to ``piece_cost`` and its accumulations
    to ``piece_ops``.
    """
    a_syn = a_mr = a_mw = a_cr = a_cw = 0  # statistics kept in registers
    for i in range(f_dst.shape[0]):
        p = f_dst[i]
        c_cost, ops, syn, mr, mw, cr, cw = _apply(
            p, f_slot[i], f_s[i], f_val[i], pieces, slots, weights, inverse, pop_off, loc_local, state, counts,
            lanes, wbits, vbits, cbits,
        )  # fmt: skip
        a_syn += syn
        a_mr += mr
        a_mw += mw
        a_cr += cr
        a_cw += cw
        cost[i] = c_cost
        piece_cost[p] += c_cost
        # a payload into a max-pool is added as it is (no weight): an accumulate, not a MAC
        add_only = slots[f_slot[i], SK] == POOL
        if f_graded[i] and not add_only:  # 1: host input value, 2: MBE payload (an intensity-weighted spike)
            stats[ST_MACS] += ops
            if f_graded[i] == 2:
                stats[ST_PMACS] += ops
        else:
            stats[ST_OPS] += ops
        piece_ops[p] += ops
    stats[ST_SYN] += a_syn
    stats[ST_MR] += a_mr
    stats[ST_MW] += a_mw
    stats[ST_CR] += a_cr
    stats[ST_CW] += a_cw


@njit(cache=True, inline="always")
def _move_sums(part, root):
    """``root += part``, ``part = 0`` over views (disjoint pieces; LLVM vectorizes each loop); returns
    how many sums were non-zero."""
    nonzero = 0
    for j in range(part.shape[0]):
        nonzero += part[j] != 0
    for j in range(part.shape[0]):
        root[j] += part[j]
        part[j] = 0
    return nonzero


@njit(cache=True)
def partial_sums(t, T, pieces, state, lanes, vbits, stats, flits=True, moved=None):
    """Phase P: every partial piece in its input window sends its non-zero sums to its root.

    Returns ``(src_piece, dst_piece, scan_cycles_per_piece)`` of the partial-sum flits (none
    listed when ``flits`` is false: rounds mode moves partial sums through DRAM, not the mesh).
    Pieces where ``moved`` is set had their sums moved (and counted) by :func:`round_rows`; they
    are only scanned here.
    """
    n_pieces = pieces.shape[0]
    bound = 0  # one pass: size the flit arrays by the scanned neurons, then trim
    for p in range(n_pieces):
        if flits and pieces[p, KIND] == PARTIAL and pieces[p, ACC_START] <= t < pieces[p, IN_START] + T:
            bound += pieces[p, N]
    f_src = np.empty(bound, np.int64)
    f_dst = np.empty(bound, np.int64)
    scan = np.zeros(n_pieces, np.int64)
    total = 0
    scanned = 0
    for p in range(n_pieces):
        if pieces[p, KIND] == PARTIAL and pieces[p, ACC_START] <= t < pieces[p, IN_START] + T:
            off, n, root = pieces[p, OFF], pieces[p, N], pieces[p, ROOT]
            roff = pieces[root, OFF]
            scan[p] = _ceil(n, lanes)
            scanned += n
            if moved is not None and moved[p]:
                continue
            if not flits:
                total += _move_sums(state[off : off + n], state[roff : roff + n])
                continue
            for j in range(n):
                a = state[off + j]
                if a != 0:
                    state[roff + j] += a
                    state[off + j] = 0
                    f_src[total] = p
                    f_dst[total] = root
                    total += 1
    stats[ST_MR] += (scanned + total) * vbits
    stats[ST_MW] += total * vbits
    if not flits:
        return f_src, f_dst, scan
    return f_src[:total], f_dst[:total], scan


@njit(cache=True)
def fire(
    t,
    T,
    pieces,
    params,
    neurons,
    state,
    counts,
    ring,
    ring_off,
    ring_depth,
    pop_size,
    lanes,
    vbits,
    vlo,
    vhi,
    piece_spikes,
    fire_cycles,
    stats,
    lut,
    piece_clipped,
):
    """Phase F at step ``t``; returns the first piece whose membrane left the v_bits range, or -1."""
    for p in range(pieces.shape[0]):
        kind = pieces[p, KIND]
        if kind == PARTIAL:
            continue
        in_s, out_s, n, off, pop = (
            pieces[p, IN_START],
            pieces[p, OUT_START],
            pieces[p, N],
            pieces[p, OFF],
            pieces[p, POP],
        )
        if kind == MBE:
            if not (in_s <= t < out_s + T):
                continue
            if _mbe_step(
                t,
                T,
                p,
                pieces,
                params,
                neurons,
                state,
                counts,
                ring,
                ring_off,
                ring_depth,
                pop_size,
                lanes,
                vbits,
                vlo,
                vhi,
                piece_spikes,
                fire_cycles,
                stats,
                lut,
                piece_clipped,
            ):
                return p
            continue
        if kind == MAXPOOL:
            if not (in_s <= t < in_s + T):
                continue
            base = ring_off[pop] + (t % ring_depth[pop]) * pop_size[pop]
            kk_n = pieces[p, CNT_LEN] - 2 * n
            mark = pieces[p, CNT_OFF] + kk_n + n
            if pieces[p, POOL_GRADED]:  # o = max of the window's running sums - the last maximum
                k2 = kk_n // n if n else 0
                cbase, mx = pieces[p, CNT_OFF], pieces[p, CNT_OFF] + kk_n
                for j in range(n):
                    m = counts[cbase + j * k2]
                    for w in range(1, k2):
                        m = max(m, counts[cbase + j * k2 + w])
                    ring[base + neurons[off + j]] = m - counts[mx + j]
                    counts[mx + j] = m
                stats[ST_UPD] += n
                stats[ST_HW] += n
                stats[ST_CR] += n * k2 * vbits
                stats[ST_CW] += n * vbits
                fire_cycles[p] = _ceil(n, lanes) * k2
                continue
            for j in range(n):
                sp = counts[mark + j]
                ring[base + neurons[off + j]] = sp
                counts[mark + j] = 0
                piece_spikes[p] += sp
                stats[ST_SPK] += sp
            stats[ST_UPD] += n
            stats[ST_HW] += n
            fire_cycles[p] = _ceil(n, lanes)
            continue
        if not (in_s <= t < out_s + T):
            continue
        bias_on = in_s <= t < in_s + T
        fire_on = kind != OUTPUT and out_s <= t < out_s + T
        base = ring_off[pop] + (t % ring_depth[pop]) * pop_size[pop]
        bad = False
        spikes = 0  # in a register: a counter in memory chains every neuron's update to the last
        for j in range(n):
            v = state[off + j]
            if bias_on:
                v += params[off + j, 1]
            if fire_on:
                th = params[off + j, 0]
                sp = 1 if v >= th else 0
                v -= th * sp
                ring[base + neurons[off + j]] = sp
                spikes += sp
            bad |= v < vlo or v > vhi
            state[off + j] = v
        piece_spikes[p] += spikes
        stats[ST_SPK] += spikes
        stats[ST_UPD] += n
        stats[ST_MR] += n * vbits
        stats[ST_MW] += n * vbits
        stats[ST_PR] += n * 2 * vbits
        if fire_on:
            stats[ST_HW] += n
        fire_cycles[p] = _ceil(n, lanes)
        if bad:
            return p
    return -1


@njit(cache=True, inline="always")
def _shift_floor(x, sh):
    """``floor(x * 2**sh)``: a left shift for ``sh >= 0``, an arithmetic right shift otherwise."""
    if sh >= 0:
        return x << sh
    return x >> min(-sh, 63)


@njit(cache=True)
def _mbe_split(x, split, bits, exp_bias, shift_base):
    """The split unit of section 4.5 on a clamped ``X``: ``(u, sh)`` (``models.neurons.mbe_split``)."""
    if split == 0:
        return x, shift_base
    if split == 1:  # exp2
        e = x >> bits
        return x - (e << bits), shift_base + e
    length = 0  # the priority encoder: bit length of X (>= 1 here)
    y = x
    while y > 0:
        y >>= 1
        length += 1
    if split == 2:  # inv
        return _shift_floor(x, bits - length), shift_base - length
    e = length + exp_bias  # invsqrt
    parity = e & 1
    return _shift_floor(x, bits + parity - length), shift_base - (e - parity) // 2


@njit(cache=True)
def _mbe_step(
    t,
    T,
    p,
    pieces,
    params,
    neurons,
    state,
    counts,
    ring,
    ring_off,
    ring_depth,
    pop_size,
    lanes,
    vbits,
    vlo,
    vhi,
    piece_spikes,
    fire_cycles,
    stats,
    lut,
    piece_clipped,
):
    """Phase F of an ``mbe`` piece (architecture section 4.4); True when a value left the v_bits range.

    ``state[off + j]`` is unit ``j``'s input accumulator ``X``; ``counts[cnt_off + j*N + b]`` its
    basis membrane ``U_b``; ``lut[lut_off:]`` holds ``C`` (N) then ``(VTH, R, DI)`` per ``(b, k)``.
    """
    in_s, out_s, n, off, pop = pieces[p, IN_START], pieces[p, OUT_START], pieces[p, N], pieces[p, OFF], pieces[p, POP]
    nb, lo_off, u0 = pieces[p, BASES], pieces[p, LUT_OFF], pieces[p, CNT_OFF]
    x_lo, x_hi = pieces[p, X_LO], pieces[p, X_HI]
    split, sbits, ebias, sbase = pieces[p, SPLIT], pieces[p, SPLIT_BITS], pieces[p, EXP_BIAS], pieces[p, SHIFT_BASE]
    shifted = split != 0 or sbase != 0
    sh0 = u0 + n * nb  # the units' output shifts follow the basis membranes
    bias_on = t < in_s + T
    k = t - out_s  # output step; < 0 while only integrating
    bad = False
    if bias_on:
        for j in range(n):
            x = state[off + j] + params[off + j, 1]
            state[off + j] = x
            if x < vlo or x > vhi:
                bad = True
        stats[ST_MR] += n * vbits
        stats[ST_MW] += n * vbits
        stats[ST_PR] += n * vbits
    cycles = _ceil(n, lanes) if (bias_on or k == 0) else 0
    if k >= 0:
        base = ring_off[pop] + (t % ring_depth[pop]) * pop_size[pop]
        spikes = 0
        tab = lo_off + nb
        for j in range(n):
            if k == 0:  # clamp X, split it and start the bases: U_b = u - C_b
                x = state[off + j]
                if x < x_lo or x > x_hi:
                    piece_clipped[p] += 1
                x = min(max(x, x_lo), x_hi)
                if shifted:
                    x, shift = _mbe_split(x, split, sbits, ebias, sbase)
                    counts[sh0 + j] = shift
                for b in range(nb):
                    counts[u0 + j * nb + b] = x - lut[lo_off + b]
            pay = pieces[p, OUT_BIAS] if k == 0 else 0
            for b in range(nb):
                e = tab + (b * T + k) * 3
                u = counts[u0 + j * nb + b]
                if u >= lut[e]:
                    u -= lut[e + 1]
                    pay += lut[e + 2]
                    spikes += 1
                    counts[u0 + j * nb + b] = u
                if u < vlo or u > vhi:
                    bad = True
            if shifted:  # the barrel shifter in front of the history write
                pay = _shift_floor(pay, counts[sh0 + j])
            ring[base + neurons[off + j]] = pay
        piece_spikes[p] += spikes
        stats[ST_SPK] += spikes
        stats[ST_UPD] += n * nb
        stats[ST_MR] += n * nb * vbits  # X at k == 0, U after
        stats[ST_MW] += n * nb * vbits
        stats[ST_PR] += nb * 3 * vbits + (nb * vbits if k == 0 else 0)  # one table row per basis (and C)
        stats[ST_HW] += n * vbits
        if shifted:  # the shift words: written at k = 0, read at every output step
            stats[ST_MR] += n * SHIFT_BITS
            if k == 0:
                stats[ST_MW] += n * SHIFT_BITS
        cycles += nb * _ceil(n, lanes)  # one pass per basis, its table row broadcast to the lanes
    elif bias_on:
        stats[ST_UPD] += n
    fire_cycles[p] = cycles
    return bad


@njit(cache=True)
def mesh_phase(
    f_src_core,
    f_dst_core,
    f_cost,
    start,
    rows,
    cols,
    buf,
    fifo,
    pipeline,
    core_busy,
    noc,
    arrive=None,
    core_end=None,
    inject=None,
):
    """Cycle-level mesh and event FIFOs for one phase (``docs/architecture.md`` section 6).

    ``f_src_core`` gives each flit's injector (a core, or ``rows*cols`` for the host at router
    (0, 0)'s west port), grouped by injector in injection order; ``start[injector]`` is the
    cycle its encoder may begin. Returns the phase length in cycles; adds each core's event
    cycles to ``core_busy`` and ``[flits, hops_ew, hops_ns, stall_cycles]`` to ``noc``.

    Opt-in trace (for the RTL co-simulation; ``None`` compiles it away): ``arrive[f]`` gets the
    first cycle flit ``f`` can be popped from its core's FIFO (it entered the FIFO in the cycle
    before); ``inject[f]`` the cycle its encoder put it into the router; ``core_end[k]`` the end
    of core ``k``'s last event plus ``pipeline`` (``-1``: no event).

    Every decision of a cycle reads the occupancy at its start, so routers, cores and encoders
    are independent within a cycle; the loops visit only those holding or sending flits.
    """
    nf = f_src_core.shape[0]
    if nf == 0:
        return 0
    n = rows * cols
    n_src = n + 1
    # injector queues (flits are grouped by injector), and the injectors with flits left
    q_lo = np.full(n_src, nf, np.int64)
    q_hi = np.zeros(n_src, np.int64)
    for i in range(nf):
        s = f_src_core[i]
        if q_lo[s] == nf:
            q_lo[s] = i
        q_hi[s] = i + 1
    q_ptr = q_lo.copy()
    inj = np.empty(n_src, np.int64)
    n_inj = 0
    for s in range(n_src):
        if q_lo[s] < q_hi[s]:
            inj[n_inj] = s
            n_inj += 1
    # router input FIFOs: port order N, S, E, W, L
    rin_buf = np.zeros((n * 5, buf), np.int64)
    rin_head = np.zeros(n * 5, np.int64)
    rin_cnt = np.zeros(n * 5, np.int64)
    cf_buf = np.zeros((n, fifo), np.int64)
    cf_head = np.zeros(n, np.int64)
    cf_cnt = np.zeros(n, np.int64)
    ready = np.zeros(nf, np.int64)
    rr = np.full(n * 5, 4, np.int64)  # last granted input port per output port
    busy_until = np.zeros(n, np.int64)
    last_end = np.full(n, -1, np.int64)
    popped = 0
    in_net = 0
    c = 0
    rin0 = np.zeros(n * 5, np.int64)  # occupancy at the start of the cycle (zero where nothing is)
    cf0 = np.zeros(n, np.int64)
    moved = np.zeros(n * 5, np.bool_)
    want = np.full(5, -1, np.int64)
    load = np.zeros(n, np.int64)  # flits buffered in each router's input FIFOs
    load0 = np.zeros(n, np.int64)
    act_r = np.empty(n, np.int64)  # routers holding flits (and those that just emptied)
    in_r = np.zeros(n, np.bool_)
    n_r = 0
    act_c = np.empty(n, np.int64)  # cores with events queued
    in_c = np.zeros(n, np.bool_)
    n_c = 0
    while popped < nf:
        # fast-forward over cycles where only cores are busy
        if in_net == 0 and n_inj == 0:
            nxt = -1
            for q in range(n_c):
                k = act_c[q]
                if cf_cnt[k] > 0 and (nxt < 0 or busy_until[k] < nxt):
                    nxt = busy_until[k]
            if nxt > c:
                c = nxt
        # start-of-cycle snapshots over the active routers and cores; drop the empty ones
        m = 0
        for q in range(n_r):
            r = act_r[q]
            if load[r] > 0:
                for port in range(r * 5, r * 5 + 5):
                    rin0[port] = rin_cnt[port]
                    moved[port] = False
                load0[r] = load[r]
                act_r[m] = r
                m += 1
            else:
                for port in range(r * 5, r * 5 + 5):
                    rin0[port] = 0
                load0[r] = 0
                in_r[r] = False
        n_r = m
        m = 0
        for q in range(n_c):
            k = act_c[q]
            cf0[k] = cf_cnt[k]
            if cf_cnt[k] > 0:
                act_c[m] = k
                m += 1
            else:
                in_c[k] = False
        n_c = m
        # a. cores pop their FIFO head when idle
        for q in range(n_c):
            k = act_c[q]
            if busy_until[k] <= c:
                f = cf_buf[k, cf_head[k]]
                if ready[f] <= c:
                    cf_head[k] = (cf_head[k] + 1) % fifo
                    cf_cnt[k] -= 1
                    busy_until[k] = c + f_cost[f]
                    last_end[k] = busy_until[k]
                    core_busy[k] += f_cost[f]
                    popped += 1
        # b. encoders inject one flit per cycle into the local (or, for the host, west) input FIFO
        m = 0
        for q in range(n_inj):
            s = inj[q]
            if c >= start[s]:
                port = s * 5 + 4 if s < n else 3  # host: router 0, west
                if rin0[port] < buf:
                    f = q_ptr[s]
                    rin_buf[port, (rin_head[port] + rin_cnt[port]) % buf] = f
                    rin_cnt[port] += 1
                    r = port // 5
                    load[r] += 1
                    if not in_r[r]:
                        in_r[r] = True
                        act_r[n_r] = r
                        n_r += 1
                    ready[f] = c + 1
                    if inject is not None:
                        inject[f] = c
                    q_ptr[s] += 1
                    in_net += 1
                    noc[0] += 1
            if q_ptr[s] < q_hi[s]:
                inj[m] = s
                m += 1
        n_inj = m
        # c. routers: every output port grants one eligible head, round-robin, if downstream had room
        n_r_start = n_r
        for q in range(n_r_start):
            r = act_r[q]
            if load0[r] == 0:  # joined this cycle: nothing of it is eligible yet
                continue
            ry, rx = r // cols, r % cols
            for i in range(5):  # the output each eligible head wants (XY routing)
                port = r * 5 + i
                want[i] = -1
                if rin0[port] > 0:
                    f = rin_buf[port, rin_head[port]]
                    if ready[f] <= c:
                        d = f_dst_core[f]
                        dy, dx = d // cols, d % cols
                        if dx > rx:
                            want[i] = 2
                        elif dx < rx:
                            want[i] = 3
                        elif dy > ry:
                            want[i] = 1
                        elif dy < ry:
                            want[i] = 0
                        else:
                            want[i] = 4
            for o in range(5):
                chosen = -1
                for step in range(1, 6):
                    i = (rr[r * 5 + o] + step) % 5
                    if want[i] == o:
                        chosen = i
                        break
                if chosen < 0:
                    continue
                port = r * 5 + chosen
                f = rin_buf[port, rin_head[port]]
                if o == 4:
                    if cf0[r] >= fifo:
                        continue
                    cf_buf[r, (cf_head[r] + cf_cnt[r]) % fifo] = f
                    cf_cnt[r] += 1
                    if arrive is not None:
                        arrive[f] = c + 1
                    if not in_c[r]:
                        in_c[r] = True
                        act_c[n_c] = r
                        n_c += 1
                    in_net -= 1
                else:
                    if o == 0:
                        nb, inp = r - cols, 1  # to the north neighbour, arriving on its south port
                    elif o == 1:
                        nb, inp = r + cols, 0
                    elif o == 2:
                        nb, inp = r + 1, 3
                    else:
                        nb, inp = r - 1, 2
                    dport = nb * 5 + inp
                    if rin0[dport] >= buf:
                        continue
                    rin_buf[dport, (rin_head[dport] + rin_cnt[dport]) % buf] = f
                    rin_cnt[dport] += 1
                    load[nb] += 1
                    if not in_r[nb]:
                        in_r[nb] = True
                        act_r[n_r] = nb
                        n_r += 1
                    if o >= 2:
                        noc[1] += 1
                    else:
                        noc[2] += 1
                rin_head[port] = (rin_head[port] + 1) % buf
                rin_cnt[port] -= 1
                load[r] -= 1
                ready[f] = c + 1
                rr[r * 5 + o] = chosen
                moved[port] = True
            for i in range(5):  # heads that were eligible at the start of the cycle and stayed
                if want[i] >= 0 and not moved[r * 5 + i]:
                    noc[3] += 1
        c += 1
    end = 0
    for k in range(n):
        if last_end[k] > end:
            end = last_end[k]
        if core_end is not None:
            core_end[k] = last_end[k] + pipeline if last_end[k] >= 0 else -1
    return end + pipeline


@njit(cache=True)
def run_rounds(tables, rounds, hw, x, state, counts, ring, out, hist):
    """Simulate every step of one inference in ``rounds`` mode, in one call; returns ``(piece, step)`` of the
    first membrane out of range (phase F stops there) or ``(-1, -1)``, and the DRAM bytes moved.

    Only for programs whose slots are all dense or pool_dense rows (``round_rows`` applies them);
    the engine calls the same kernels step by step, ``gen_round_events`` among them, for the rest.

    Parameters
    ----------
    tables : tuple of ndarray
        The lowered program (``Lowered``): pieces, slots, slot_piece, row_group_ptr,
        row_group_slots, row_group_fused, row_group_root, the scratch row, the ``moved`` mask of
        pieces whose sums ``round_rows`` moves, row_group_tw, row_group_tw_off, neurons, forward,
        params, lut, weights, inverse, pop_off, loc_local, ring_off, ring_depth, pop_size,
        pop_out_start, pop_graded.
    rounds : tuple of ndarray
        The rounds plan (``Simulator._rounds_tables``): core_ptr, units, unit_ptr, unit_pieces,
        lo, hi, b_in, b_out.
    hw : tuple of int
        T, steps, input_pop, lanes, weight_bits, v_bits, count_bits, v_lo, v_hi, pipeline cycles,
        DRAM latency, DRAM bytes per cycle, barrier cycles.
    x, state, counts, ring : ndarray
        The input, and the state, running counts and spike-history rings the kernels update.
    out : tuple of ndarray
        Accumulated in place: piece_ops, piece_spikes, piece_clipped, stats; written per step:
        step_cycles, step_spikes, core_step (per step, per core busy cycles).
    hist : ndarray, shape (steps, sum of population sizes) or (0, 0)
        Where it has rows, every population's history entry of each step after phase F (the
        rasters of ``Simulator.run(..., record=True)``).

    Notes
    -----
    The untraced ``rounds`` path of :class:`~spikeforge.sim.engine.Simulator`: running each step's
    kernels from Python cost about a fifth of a 4096 -> 4096 layer's run in dispatch (about ten
    calls of 15-25 arrays each per step) and allocations. It lives in this module because Numba's
    cache checks only the caller's source file: a driver elsewhere would keep stale copies of
    these kernels after they change. ``gen_round_events`` is not compiled in: on the ImageNet-size
    shape it added about 9 s of compilation and ran slower inside the loop. Step ``t``'s cycles are
    ``round_timing``'s end of the last write-back plus the barrier,
    ``step_cycles[t] = end(t) + barrier``, and the DRAM bytes are the sum of its transfers.
    """
    (pieces, slots, slot_piece, g_ptr, g_slots, g_fused, g_root, scratch, moved, tw, g_tw) = tables[:11]
    (neurons, forward, params, lut, weights, inverse, pop_off, loc_local) = tables[11:19]
    (ring_off, ring_depth, pop_size, pop_out_start, pop_graded) = tables[19:]
    core_ptr, units, unit_ptr, unit_pieces, win_lo, win_hi, b_in, b_out = rounds
    T, steps, input_pop, lanes, wbits, vbits, cbits, vlo, vhi, pipeline, latency, bpc, barrier = hw
    piece_ops, piece_spikes, piece_clipped, stats, step_cycles, step_spikes, core_step = out
    n_pieces = pieces.shape[0]
    piece_cost = np.zeros(n_pieces, np.int64)
    fire_cycles = np.zeros(n_pieces, np.int64)
    dram = 0
    for t in range(steps):
        piece_cost[:] = 0
        fire_cycles[:] = 0
        round_rows(
            t, T, pieces, slots, slot_piece, g_ptr, g_slots, g_fused, g_root, scratch, tw, g_tw, ring, ring_off,
            ring_depth, pop_size, pop_out_start, input_pop, pop_graded, x, weights, state, lanes, wbits, vbits,
            piece_cost, piece_ops, stats,
        )  # fmt: skip
        partial_sums(t, T, pieces, state, lanes, vbits, stats, False, moved)
        before = stats[ST_SPK]
        bad = fire(
            t, T, pieces, params, neurons, state, counts, ring, ring_off, ring_depth, pop_size, lanes, vbits,
            vlo, vhi, piece_spikes, fire_cycles, stats, lut, piece_clipped,
        )  # fmt: skip
        if bad >= 0:
            return bad, t, dram
        step_spikes[t] = stats[ST_SPK] - before
        end, moved_bytes = round_timing(
            t, core_ptr, units, unit_ptr, unit_pieces, win_lo, win_hi, b_in, b_out, piece_cost, fire_cycles,
            pipeline, latency, bpc, core_step[t],
        )  # fmt: skip
        dram += moved_bytes
        step_cycles[t] = end + barrier
        if hist.shape[0] > 0:
            col = 0
            for i in range(pop_size.shape[0]):
                base = ring_off[i] + (t % ring_depth[i]) * pop_size[i]
                for j in range(pop_size[i]):
                    hist[t, col + j] = ring[base + j]
                col += pop_size[i]
    return -1, -1, dram
