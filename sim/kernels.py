"""Numba kernels: event generation, event delivery, firing, partial sums and the mesh.

Each kernel implements one part of ``docs/architecture.md`` over the flat arrays of
:mod:`spikeforge.sim.lowering`; loops run over events and neurons that are active, never over
every synapse of the model.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES

from .lowering import PIECE_FIELDS, SLOT_FIELDS

__all__ = ["gen_flits", "deliver", "fire", "partial_sums", "mesh_phase", "STAT_FIELDS"]

# column indices (module constants are frozen into the compiled code)
KIND, N, OFF, POP, CORE, ROOT, IN_START, OUT_START = (
    PIECE_FIELDS.index(k) for k in ("kind", "n", "off", "pop", "core", "root", "in_start", "out_start")
)
G0 = PIECE_FIELDS.index("g0")
CNT_OFF, CNT_LEN = PIECE_FIELDS.index("cnt_off"), PIECE_FIELDS.index("cnt_len")
SK, SPROJ, SLO, SHI, SSRC, SWOFF, SCI, SH, SW, SKH, SKW, SSTRIDE, SPAD, SWEIGHT, SWROW, SINV, SDELAY = (
    SLOT_FIELDS.index(k) for k in SLOT_FIELDS
)
CONV, DENSE, POOL_DENSE, IDENTITY, PROD_A, PROD_B, POOL = (
    SLOT_CODES[k] for k in ("conv", "dense", "pool_dense", "identity", "product_a", "product_b", "pool")
)
NEURON, PARTIAL, PRODUCT, MAXPOOL, OUTPUT = (
    PIECE_CODES[k] for k in ("neuron", "partial", "product", "maxpool", "output")
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
)
ST = {k: i for i, k in enumerate(STAT_FIELDS)}
ST_OPS, ST_MACS, ST_UPD, ST_SPK, ST_SYN, ST_MR, ST_MW, ST_PR, ST_HR, ST_HW, ST_RR, ST_CR, ST_CW = range(13)


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
                        stats[ST_HR] += pieces[src, N]  # one history row per delay group
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
    piece_ops,
    stats,
):
    """Apply every flit to its destination piece (section 4.1's table).

    Writes each flit's cycle cost into ``cost`` and adds its accumulations to ``piece_ops``.
    """
    for i in range(f_dst.shape[0]):
        p, k, s, val = f_dst[i], f_slot[i], f_s[i], f_val[i]
        kind = slots[k, SK]
        off, n = pieces[p, OFF], pieces[p, N]
        ops = 0
        c_cost = 1
        if kind == CONV:
            ci, hh, ww = slots[k, SCI], slots[k, SH], slots[k, SW]
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
            for u in range(kh):
                num = y + pad - u
                if num < 0 or num % st != 0:
                    continue
                oy = num // st
                if oy < y0 or oy >= y1:
                    continue
                for v in range(kw):
                    numx = xx + pad - v
                    if numx < 0 or numx % st != 0:
                        continue
                    ox = numx // st
                    if ox < x0 or ox >= x1:
                        continue
                    pos = (oy - y0) * tw + (ox - x0)
                    widx = woff + ((c0 * ci + c) * kh + u) * kw + v
                    step = ci * kh * kw
                    dst = off + pos * cb
                    for co in range(cb):
                        state[dst + co] += val * weights[widx + co * step]
                    r += 1
            groups = _ceil(cb, lanes)
            c_cost = max(1, r * groups)
            ops = r * cb
            stats[ST_SYN] += r * groups * lanes * wbits
            stats[ST_MR] += r * groups * lanes * vbits
            stats[ST_MW] += r * groups * lanes * vbits
        elif kind == DENSE or kind == POOL_DENSE:
            woff, wrow = slots[k, SWOFF], slots[k, SWROW]
            col = s if kind == DENSE else s // (slots[k, SH] * slots[k, SW])
            for j in range(n):
                state[off + j] += val * weights[woff + neurons[off + j] * wrow + col]
            groups = _ceil(n, lanes)
            c_cost = groups
            ops = n
            stats[ST_SYN] += groups * lanes * wbits
            stats[ST_MR] += groups * lanes * vbits
            stats[ST_MW] += groups * lanes * vbits
        elif kind == IDENTITY:
            local = loc_local[pop_off[pieces[p, POP]] + s]
            state[off + local] += val * slots[k, SWEIGHT]
            ops = 1
            stats[ST_MR] += vbits
            stats[ST_MW] += vbits
        elif kind == PROD_A or kind == PROD_B:
            inv = slots[k, SINV] + s
            a1, a2 = inverse[inv, 1], inverse[inv, 2]  # routing sends a piece only its own head's operands
            i0, i1, j0, j1 = (
                pieces[p, G0 + 1],
                pieces[p, G0 + 2],
                pieces[p, G0 + 3],
                pieces[p, G0 + 4],
            )
            ni, nj = i1 - i0, j1 - j0
            cc = pieces[p, CNT_LEN] // (ni + nj)
            cbase = pieces[p, CNT_OFF]
            w = slots[k, SWEIGHT]
            if kind == PROD_A:  # (h, i, c): add w * Bbar[c, J] to row i, then Abar[i, c] += 1
                ii, c = a1 - i0, a2
                for jj in range(nj):
                    state[off + ii * nj + jj] += w * counts[cbase + ni * cc + c * nj + jj]
                counts[cbase + ii * cc + c] += 1
                m = nj
            else:  # (h, c, j): add w * Abar[I, c] to column j, then Bbar[c, j] += 1
                c, jj = a1, a2 - j0
                for ii in range(ni):
                    state[off + ii * nj + jj] += w * counts[cbase + ii * cc + c]
                counts[cbase + ni * cc + c * nj + jj] += 1
                m = ni
            groups = _ceil(m, lanes)
            c_cost = groups + 1
            ops = m
            stats[ST_CR] += m * cbits + cbits
            stats[ST_CW] += cbits
            stats[ST_MR] += groups * lanes * vbits
            stats[ST_MW] += groups * lanes * vbits
        elif kind == POOL:
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
            counts[cidx] += 1
            midx = cbase + n * kk * kk + local
            if counts[cidx] > counts[midx]:
                counts[midx] = counts[cidx]
                counts[midx + n] = 1  # mark the output
            ops = 1
            stats[ST_CR] += cbits
            stats[ST_CW] += cbits
            stats[ST_MR] += vbits
            stats[ST_MW] += vbits
        cost[i] = c_cost
        if f_graded[i]:
            stats[ST_MACS] += ops
        else:
            stats[ST_OPS] += ops
        piece_ops[p] += ops


@njit(cache=True)
def partial_sums(t, T, pieces, state, lanes, vbits, stats):
    """Phase P: every partial piece in its input window sends its non-zero sums to its root.

    Returns ``(src_piece, dst_piece, scan_cycles_per_piece)`` of the partial-sum flits.
    """
    n_pieces = pieces.shape[0]
    total = 0
    for p in range(n_pieces):
        if pieces[p, KIND] == PARTIAL and pieces[p, IN_START] <= t < pieces[p, IN_START] + T:
            off = pieces[p, OFF]
            for j in range(pieces[p, N]):
                if state[off + j] != 0:
                    total += 1
    f_src = np.empty(total, np.int64)
    f_dst = np.empty(total, np.int64)
    scan = np.zeros(n_pieces, np.int64)
    total = 0
    for p in range(n_pieces):
        if pieces[p, KIND] == PARTIAL and pieces[p, IN_START] <= t < pieces[p, IN_START] + T:
            off, n, root = pieces[p, OFF], pieces[p, N], pieces[p, ROOT]
            roff = pieces[root, OFF]
            scan[p] = _ceil(n, lanes)
            stats[ST_MR] += n * vbits
            for j in range(n):
                if state[off + j] != 0:
                    state[roff + j] += state[off + j]
                    state[off + j] = 0
                    stats[ST_MR] += vbits
                    stats[ST_MW] += vbits
                    f_src[total] = p
                    f_dst[total] = root
                    total += 1
    return f_src, f_dst, scan


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
        if kind == MAXPOOL:
            if not (in_s <= t < in_s + T):
                continue
            base = ring_off[pop] + (t % ring_depth[pop]) * pop_size[pop]
            kk_n = pieces[p, CNT_LEN] - 2 * n
            mark = pieces[p, CNT_OFF] + kk_n + n
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
        for j in range(n):
            v = state[off + j]
            if bias_on:
                v += params[off + j, 1]
            if fire_on:
                th = params[off + j, 0]
                sp = 1 if v >= th else 0
                v -= th * sp
                ring[base + neurons[off + j]] = sp
                piece_spikes[p] += sp
                stats[ST_SPK] += sp
            if v < vlo or v > vhi:
                bad = True
            state[off + j] = v
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


@njit(cache=True)
def mesh_phase(f_src_core, f_dst_core, f_cost, start, rows, cols, buf, fifo, pipeline, core_busy, noc):
    """Cycle-level mesh and event FIFOs for one phase (``docs/architecture.md`` section 6).

    ``f_src_core`` gives each flit's injector (a core, or ``rows*cols`` for the host at router
    (0, 0)'s west port), grouped by injector in injection order; ``start[injector]`` is the
    cycle its encoder may begin. Returns the phase length in cycles; adds each core's event
    cycles to ``core_busy`` and ``[flits, hops_ew, hops_ns, stall_cycles]`` to ``noc``.
    """
    nf = f_src_core.shape[0]
    if nf == 0:
        return 0
    n = rows * cols
    n_src = n + 1
    # injector queues (flits are grouped by injector)
    q_lo = np.full(n_src, nf, np.int64)
    q_hi = np.zeros(n_src, np.int64)
    for i in range(nf):
        s = f_src_core[i]
        if q_lo[s] == nf:
            q_lo[s] = i
        q_hi[s] = i + 1
    q_ptr = q_lo.copy()
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
    rin0 = np.zeros(n * 5, np.int64)
    cf0 = np.zeros(n, np.int64)
    moved = np.zeros(n * 5, np.bool_)
    while popped < nf:
        # fast-forward over cycles where only cores are busy
        if in_net == 0:
            pending = False
            for s in range(n_src):
                if q_ptr[s] < q_hi[s]:
                    pending = True
                    break
            if not pending:
                nxt = -1
                for k in range(n):
                    if cf_cnt[k] > 0 and (nxt < 0 or busy_until[k] < nxt):
                        nxt = busy_until[k]
                if nxt > c:
                    c = nxt
        rin0[:] = rin_cnt
        cf0[:] = cf_cnt
        # a. cores pop their FIFO head when idle
        for k in range(n):
            if busy_until[k] <= c and cf0[k] > 0:
                f = cf_buf[k, cf_head[k]]
                if ready[f] <= c:
                    cf_head[k] = (cf_head[k] + 1) % fifo
                    cf_cnt[k] -= 1
                    busy_until[k] = c + f_cost[f]
                    last_end[k] = busy_until[k]
                    core_busy[k] += f_cost[f]
                    popped += 1
        # b. encoders inject one flit per cycle into the local (or, for the host, west) input FIFO
        for s in range(n_src):
            if q_ptr[s] < q_hi[s] and c >= start[s]:
                port = s * 5 + 4 if s < n else 3  # host: router 0, west
                if rin0[port] < buf:
                    f = q_ptr[s]
                    rin_buf[port, (rin_head[port] + rin_cnt[port]) % buf] = f
                    rin_cnt[port] += 1
                    ready[f] = c + 1
                    q_ptr[s] += 1
                    in_net += 1
                    noc[0] += 1
        # c. routers: every output port grants one eligible head, round-robin, if downstream had room
        moved[:] = False
        for r in range(n):
            ry, rx = r // cols, r % cols
            for o in range(5):
                chosen = -1
                for step in range(1, 6):
                    i = (rr[r * 5 + o] + step) % 5
                    port = r * 5 + i
                    if rin0[port] == 0 or rin_cnt[port] == 0 or moved[port]:
                        continue
                    f = rin_buf[port, rin_head[port]]
                    if ready[f] > c:
                        continue
                    d = f_dst_core[f]
                    dy, dx = d // cols, d % cols
                    if dx > rx:
                        want = 2
                    elif dx < rx:
                        want = 3
                    elif dy > ry:
                        want = 1
                    elif dy < ry:
                        want = 0
                    else:
                        want = 4
                    if want == o:
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
                    if o >= 2:
                        noc[1] += 1
                    else:
                        noc[2] += 1
                rin_head[port] = (rin_head[port] + 1) % buf
                rin_cnt[port] -= 1
                ready[f] = c + 1
                rr[r * 5 + o] = chosen
                moved[port] = True
        for port in range(n * 5):  # heads that were eligible at the start of the cycle and stayed
            if rin0[port] > 0 and not moved[port]:
                f = rin_buf[port, rin_head[port]]
                if ready[f] <= c:
                    noc[3] += 1
        c += 1
    end = 0
    for k in range(n):
        if last_end[k] > end:
            end = last_end[k]
    return end + pipeline
