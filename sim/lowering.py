"""Lower a :class:`~spikeforge.mapping.Program` into flat integer arrays for the Numba kernels.

Everything the kernels touch is a numpy array indexed by offsets: pieces, slots, weights, the
per-population locator of each neuron's piece, the product operand decoders, the MBE tables, the
routing entries, and the state (membranes, running counts, max-pool registers, MBE basis
membranes, spike history rings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.mapping import Program
from spikeforge.mapping.images import MBE_SPLIT_CODES, PIECE_CODES, SLOT_CODES
from spikeforge.mapping.pieces import first_arrivals, product_sum_bits
from spikeforge.mapping.routing import HOST
from spikeforge.models.graph import SNNGraph, membrane_bounds, signed_range

__all__ = ["Lowered", "lower", "state_bound", "state_width", "aligned", "PIECE_FIELDS", "SLOT_FIELDS"]

#: The largest value an int32 state word holds.
INT32_MAX = (1 << 31) - 1

#: Columns of the piece table.
PIECE_FIELDS = (
    "kind",
    "n",
    "off",
    "pop",
    "core",
    "root",
    "in_start",
    "out_start",
    "g0",
    "g1",
    "g2",
    "g3",
    "g4",
    "g5",  # c0 c1 y0 y1 x0 x1, or h i0 i1 j0 j1, or lo hi
    "cnt_off",
    "cnt_len",
    "slot0",
    "nslots",
    "hist_bits",  # bits one step of the piece's output takes in the history (n; n * v_bits for mbe)
    "lut_off",  # mbe: offsets C (N), then (VTH, R, DI) per (basis, step), in ``Lowered.lut``
    "bases",
    "x_lo",
    "x_hi",
    "acc_start",  # first step inputs arrive (in_start, or earlier for an MBE population's early inputs)
    "pc_off",  # pieces fed by a product: running counts (or payload sums) Abar then Bbar, in counts
    "pc_c",  # the product's contraction length C
    "pc_bits",  # bits of one running-count word: count_bits, or v_bits for payload sums
    "split",  # mbe: exponent split code (mapping.images.MBE_SPLIT_CODES), its bits, exp_bias,
    "split_bits",
    "exp_bias",
    "shift_base",  # shift_base and output bias B; the per-unit shifts follow U in counts
    "out_bias",
    "pool_graded",  # maxpool: 1 when its source emits payloads (running sums of payloads, graded output)
)
#: Columns of the slot table.
SLOT_FIELDS = (
    "kind",
    "proj",
    "lo",
    "hi",
    "src_pop",
    "w_off",
    "ci",
    "h",
    "w",
    "kh",
    "kw",
    "stride",
    "pad",
    "weight",
    "wrow",
    "inv_off",
    "delay",
    "fwd_off",
    "fwd_d1",
    "fwd_d2",
)

P = {name: i for i, name in enumerate(PIECE_FIELDS)}
S = {name: i for i, name in enumerate(SLOT_FIELDS)}


@dataclass
class Lowered:
    """Flat arrays of a program (see the module docstring); ``P`` and ``S`` name the columns."""

    program: Program
    pieces: np.ndarray  # (n_pieces, len(PIECE_FIELDS))
    slots: np.ndarray  # (n_slots, len(SLOT_FIELDS))
    neurons: np.ndarray  # global index (in its population) of every piece-local neuron, by piece offset
    params: np.ndarray  # (total, 3): threshold, bias, v0 per piece-local neuron
    weights: np.ndarray  # conv kernels (ci, kh, kw, co); dense, pool_dense matrices transposed (stride: wrow)
    inverse: np.ndarray  # product operand decoders: (h, row, col) per source neuron, at inv_off
    forward: np.ndarray  # product operand index maps, flattened (h, d1, d2) -> source, at fwd_off
    pop_out_start: np.ndarray  # first step of each population's firing window (input: 0)
    pop_size: np.ndarray
    pop_off: np.ndarray  # offset of each population in the locator arrays
    loc_piece: np.ndarray  # root piece holding each population neuron
    loc_local: np.ndarray  # its local index there
    ring_off: np.ndarray  # spike history ring of each population: offset and depth
    ring_depth: np.ndarray
    route_src: np.ndarray  # routing entries: source piece (-1 host), first, last, dest piece, slot row, delay
    route_ptr: np.ndarray  # entries of source piece p at route_ptr[p]:route_ptr[p+1]; host at the end
    pop_index: dict[str, int]
    total_state: int
    total_counts: int
    input_pop: int
    lut: np.ndarray  # MBE tables of every mbe piece, at its lut_off
    slot_piece: np.ndarray  # the piece of every slot
    row_group_ptr: np.ndarray  # dense/pool_dense slots reading the same source rows: group g is
    row_group_slots: np.ndarray  # row_group_slots[row_group_ptr[g]:row_group_ptr[g + 1]], by state offset
    row_group_fused: np.ndarray  # width of the group's one long row when its slices are adjacent, else 0
    row_group_root: np.ndarray  # state offset of the roots of a group of partial slices summed in passing, else -1
    row_group_tw: np.ndarray  # short fused dense groups: their rows again, target-major (one row per neuron)
    row_group_tw_off: np.ndarray  # offset of each group's target-major block in row_group_tw, else -1
    pop_graded: np.ndarray  # 1 where a population's output is a graded value (input, mbe)


def aligned(values: np.ndarray, align: int = 64) -> np.ndarray:
    """A copy of 1-D ``values`` whose first element starts on an ``align``-byte boundary.

    numpy places large arrays 16 bytes past a page start (small ones at any 16-byte offset); rows
    added with 32- and 64-byte vector loads and stores then straddle cache lines, and a run's
    speed came to depend on where its arrays happened to land. The simulator's weights, state
    and scratch row, and ``bench_sim.py``'s bare kernel's, are placed with this.
    """
    buf = np.empty(values.size + align // values.itemsize, values.dtype)
    start = (-buf.ctypes.data % align) // values.itemsize
    out = buf[start : start + values.size]
    out[:] = values
    return out


def state_bound(graph: SNNGraph) -> int:
    """A proven bound on ``|value|`` of every word the kernels keep in the ``state`` array.

    The state holds membranes, output and partial accumulators and MBE input accumulators. The
    simulator checks after every step's phase F that each of them lies in the graph's ``v_bits``
    range (else it stops with an error), so a step starts with ``|v| <= 2**(v_bits - 1)``. Within
    the step a word gains at most what it can gain over its whole window, which
    :func:`~spikeforge.models.graph.membrane_bounds` bounds (``|v0| + T |b| + sum |w| * max_total``;
    a partial piece's accumulator, emptied every step, gains less), and a reset subtracts one
    threshold. So no word, partial sum or intermediate of an addition exceeds
    ``2**(v_bits - 1) + max(membrane_bounds) + max |threshold|`` before the range check sees it.
    """
    _, vhi = signed_range(graph.v_bits)
    gain = max(membrane_bounds(graph).values(), default=0)
    th = max(
        (int(np.abs(p.threshold).max()) for p in graph.populations if getattr(p, "threshold", None) is not None),
        default=0,
    )
    return vhi + 1 + gain + th


def state_width(graph: SNNGraph) -> int:
    """32 where :func:`state_bound` fits int32 (8 lanes per AVX2 add instead of 4), else 64."""
    return 32 if state_bound(graph) <= INT32_MAX else 64


def lower(program: Program) -> Lowered:
    """Flatten ``program`` (``rounds`` mode carries no routing: its rounds read sources by slot geometry)."""
    graph = program.graph
    pops = graph.populations
    pop_index = {p.name: i for i, p in enumerate(pops)}
    pop_size = np.array([p.size for p in pops], np.int64)
    pop_off = np.concatenate([[0], np.cumsum(pop_size)])[:-1].astype(np.int64)
    sched = graph.schedule()
    arrival = first_arrivals(graph)

    # weights of every projection, flattened; operand decoders of products; max-pool outputs
    w_off = np.zeros(len(graph.projections), np.int64)
    chunks, inv_chunks = [], []
    inv_off = np.zeros(len(graph.projections) * 2, np.int64)
    fwd_chunks = []
    w_total = inv_total = 0
    for i, proj in enumerate(graph.projections):
        w_off[i] = w_total
        if proj.kind == "conv":  # (ci, kh, kw, co): one event's output channels are contiguous
            arr = np.ascontiguousarray(proj.kernel.transpose(1, 2, 3, 0))
        elif proj.kind in ("dense", "pool_dense"):
            # the whole matrix once, source-major: a slice's row is a contiguous run of it, and the
            # rows of neighbouring slices lie side by side (round_rows reads them in one sweep)
            arr = np.ascontiguousarray(proj.weight.T)
        else:
            arr = np.zeros(0, np.int64)
        chunks.append(arr.reshape(-1))
        w_total += arr.size
        if proj.kind == "product":
            for side, (index, src) in enumerate(((proj.a_index, proj.src_a), (proj.b_index, proj.src_b))):
                n_src = graph.population(src).size
                inv = np.full((n_src, 3), -1, np.int64)
                hh, rr, cc = np.meshgrid(*(np.arange(d) for d in index.shape), indexing="ij")
                flat = index.reshape(-1)  # names each source once (mapping checks it)
                inv[flat] = np.stack([hh.reshape(-1), rr.reshape(-1), cc.reshape(-1)], 1)
                inv_off[2 * i + side] = inv_total
                inv_chunks.append(inv)
                fwd_chunks.append(flat.astype(np.int64))
                inv_total += n_src
    inverse = np.concatenate(inv_chunks) if inv_chunks else np.zeros((0, 3), np.int64)
    forward = np.concatenate(fwd_chunks) if fwd_chunks else np.zeros(0, np.int64)
    fwd_off = np.zeros(len(graph.projections) * 2, np.int64)
    acc = 0
    for i, proj in enumerate(graph.projections):
        if proj.kind == "product":
            fwd_off[2 * i], fwd_off[2 * i + 1] = acc, acc + proj.a_index.size
            acc += proj.a_index.size + proj.b_index.size

    # pieces and slots
    n_pieces = len(program.pieces)
    ptab = np.zeros((n_pieces, len(PIECE_FIELDS)), np.int64)
    srows = []
    loc_piece = np.full(int(pop_size.sum()), -1, np.int64)
    loc_local = np.full(int(pop_size.sum()), -1, np.int64)
    # State offsets: by population, then fan-in chunk, then slice, so the slices of one chunk sit
    # side by side (with the transposed weights, round_rows then adds one long row per source)
    rank: dict[int, int] = {}
    seen: dict[int, int] = {}
    for p in program.pieces:
        rank[p.id] = seen.get(p.root, 0)
        seen[p.root] = rank[p.id] + 1
    state_off: dict[int, int] = {}
    total = 0
    for p in sorted(program.pieces, key=lambda q: (pop_index[q.population], rank[q.id], q.slice_index, q.id)):
        state_off[p.id] = total
        total += p.n
    neurons_arr = np.zeros(total, np.int64)
    params_arr = np.zeros((total, 3), np.int64)
    off = cnt = 0
    luts, lut_total = [], 0
    groups: dict[tuple, list[int]] = {}  # row slots that read the same source rows (round_rows)
    slot_piece: list[int] = []
    vbits = program.hardware.core.v_bits
    for p in program.pieces:
        pop = graph.population(p.population)
        pi = pop_index[p.population]
        g = p.geometry
        row = ptab[p.id]
        off = state_off[p.id]
        row[P["kind"]], row[P["n"]], row[P["off"]], row[P["pop"]] = PIECE_CODES[p.kind], p.n, off, pi
        row[P["core"]], row[P["root"]] = program.plan.core[p.id], p.root
        row[P["in_start"]], row[P["out_start"]] = sched[p.population].in_start, sched[p.population].out_start
        if "c0" in g:
            geo = (g["c0"], g["c1"], g["y0"], g["y1"], g["x0"], g["x1"])
        elif "h" in g:
            geo = (g["h"], g["i0"], g["i1"], g["j0"], g["j1"], 0)
        else:
            geo = (g["lo"], g["hi"], 0, 0, 0, 0)
        row[P["g0"] : P["g5"] + 1] = geo
        row[P["cnt_off"]] = cnt
        row[P["acc_start"]] = arrival[p.population]
        if program.has_product(p):  # after the basis membranes and shifts of an mbe piece
            proj = graph.projections[p.slots[0].proj]
            ni, nj, nc = g["i1"] - g["i0"], g["j1"] - g["j0"], proj.a_index.shape[2]
            row[P["pc_off"]] = cnt + (p.n * (pop.bases + 1) if p.kind == "mbe" else 0)
            row[P["pc_c"]], row[P["pc_bits"]] = nc, product_sum_bits(graph, proj, program.hardware.core)
            row[P["cnt_len"]] = (ni + nj) * nc  # Abar (ni x C) then Bbar (C x nj)
        if p.kind == "maxpool":
            k = graph.projections[p.slots[0].proj].kernel
            row[P["cnt_len"]] = p.n * k * k + 2 * p.n  # input counts, then window maxima, then marks
            row[P["pool_graded"]] = int(graph.graded(p.population))
        elif p.kind == "mbe":
            row[P["cnt_len"]] += p.n * (pop.bases + 1)  # basis membranes U, unit-major, then the shifts
            row[P["split"]], row[P["split_bits"]] = MBE_SPLIT_CODES[pop.split], pop.split_bits
            row[P["exp_bias"]], row[P["shift_base"]], row[P["out_bias"]] = pop.exp_bias, pop.shift_base, pop.out_bias
            row[P["lut_off"]], row[P["bases"]], row[P["x_lo"]], row[P["x_hi"]] = (
                lut_total,
                pop.bases,
                pop.x_lo,
                pop.x_hi,
            )
            table = np.concatenate([pop.offset, np.stack([pop.vth, pop.reset, pop.intensity], -1).reshape(-1)])
            luts.append(table)
            lut_total += table.size
        row[P["hist_bits"]] = p.n * vbits if p.kind == "mbe" or graph.graded(p.population) else p.n
        cnt += row[P["cnt_len"]]
        row[P["slot0"]], row[P["nslots"]] = len(srows), len(p.slots)
        for slot in p.slots:
            srow = _slot_row(graph, slot, w_off, inv_off, fwd_off, pop_index)
            if slot.kind in ("dense", "pool_dense"):  # the slot's rows, one per source row, n wide
                weight = graph.projections[slot.proj].weight
                first = int(p.neurons[0]) if p.n else 0
                if np.array_equal(p.neurons, np.arange(first, first + p.n)):  # a run of the matrix
                    stride = weight.shape[0]
                    srow[S["w_off"]] = w_off[slot.proj] + slot.lo * stride + first
                    srow[S["wrow"]] = stride
                else:  # neurons out of order: a block of its own, n wide
                    block = weight[p.neurons][:, slot.lo : slot.hi].T
                    chunks.append(block.reshape(-1))
                    srow[S["w_off"]], srow[S["wrow"]] = w_total, p.n
                    w_total += block.size
                groups.setdefault((slot.proj, slot.lo, slot.hi), []).append(len(srows))
            slot_piece.append(p.id)
            srows.append(srow)
        neurons_arr[off : off + p.n] = p.neurons
        prm = params_arr[off : off + p.n]
        if p.kind in ("neuron", "product"):
            prm[:, 0], prm[:, 1], prm[:, 2] = pop.threshold[p.neurons], pop.bias[p.neurons], pop.v0[p.neurons]
        elif p.kind in ("output", "mbe"):
            prm[:, 1] = pop.bias[p.neurons]
        if p.kind != "partial":
            loc_piece[pop_off[pi] + p.neurons] = p.id
            loc_local[pop_off[pi] + p.neurons] = np.arange(p.n)
    slots = np.array(srows, np.int64).reshape(-1, len(SLOT_FIELDS))
    # a row group whose slices are adjacent in both the state and the weights is one long row
    group_list = [sorted(g, key=lambda k: ptab[slot_piece[k], P["off"]]) for g in groups.values()]
    fused = np.zeros(len(group_list), np.int64)
    for gi, g in enumerate(group_list):
        offs = np.array([ptab[slot_piece[k], P["off"]] for k in g])
        ns = np.array([ptab[slot_piece[k], P["n"]] for k in g])
        wbs, strides = slots[g, S["w_off"]], slots[g, S["wrow"]]
        if (strides == strides[0]).all() and (np.diff(offs) == ns[:-1]).all() and (np.diff(wbs) == ns[:-1]).all():
            fused[gi] = ns.sum()
    root_off = _scratch_roots(program, ptab, slots, slot_piece, group_list, fused, neurons_arr)
    # weights as narrow as the graph stores them (validated to fit weight_bits <= 16): int8 rows
    # halve the memory traffic of int16 ones; the kernels widen them in the add
    wtype = np.int8 if graph.weight_bits <= 8 else np.int16
    weights = aligned(np.concatenate(chunks).astype(wtype) if chunks else np.zeros(0, wtype))
    tw, tw_off = _target_major(slots, group_list, fused, weights)

    # spike history rings: depth = longest outgoing delay + 2 (the step being read and written)
    depth = np.full(len(pops), 2, np.int64)
    for proj in graph.projections:
        for src, delay in proj.sources:
            depth[pop_index[src]] = max(depth[pop_index[src]], delay + 2)
    ring_off = np.concatenate([[0], np.cumsum(depth * pop_size)])[:-1].astype(np.int64)

    # routing entries, with slot rows resolved to the global slot table; rounds mode has none: a
    # round reads its sources' spike bits from DRAM (kernels.gen_round_events)
    routing = program.routing if program.plan.mode != "rounds" else {}
    rows = []
    ptr = np.zeros(n_pieces + 2, np.int64)
    for sid in list(range(n_pieces)) + [HOST]:
        table = routing.get(sid)
        if table is not None:
            for first, last, dest, k, delay in table.entries:
                rows.append((sid, first, last, dest, ptab[dest, P["slot0"]] + k, delay))
        ptr[(sid if sid != HOST else n_pieces) + 1] = len(rows)
    route = np.array(rows, np.int64).reshape(-1, 6)
    return Lowered(
        program=program,
        pieces=ptab,
        slots=slots,
        neurons=neurons_arr,
        params=params_arr,
        weights=weights,
        inverse=inverse,
        forward=forward,
        pop_out_start=np.array([0 if p.kind == "input" else sched[p.name].out_start for p in pops], np.int64),
        pop_size=pop_size,
        pop_off=pop_off,
        loc_piece=loc_piece,
        loc_local=loc_local,
        ring_off=ring_off,
        ring_depth=depth,
        route_src=route,
        route_ptr=ptr,
        pop_index=pop_index,
        total_state=total,
        total_counts=cnt,
        input_pop=pop_index[graph.input.name],
        lut=np.concatenate(luts).astype(np.int64) if luts else np.zeros(0, np.int64),
        slot_piece=np.array(slot_piece, np.int64),
        row_group_ptr=np.concatenate([[0], np.cumsum([len(g) for g in group_list])]).astype(np.int64),
        row_group_slots=np.array([k for g in group_list for k in g], np.int64),
        row_group_fused=fused,
        row_group_root=root_off,
        row_group_tw=tw,
        row_group_tw_off=tw_off,
        pop_graded=np.array([graph.graded(p.name) for p in pops], np.int64),
    )


def _scratch_roots(program, ptab, slots, slot_piece, group_list, fused, neurons) -> np.ndarray:
    """Per row group, the state offset of its roots' one long row where the group's partial sums
    can be formed in a scratch row and added to the roots as they are made, else -1.

    That is exact where the partial pieces' state words are zero at every step's start and every
    step's sums are moved in that step (phase P): the group is fused, each of its pieces is a
    partial piece with this one slot, its roots hold the same neurons in one adjacent run, and
    the slot's events arrive only at steps where phase P moves the piece's sums
    (``acc_start <= t < in_start + T``; the state starts at zero and phase P empties it).
    """
    graph = program.graph
    sched = graph.schedule()
    T = graph.timesteps
    out = np.full(len(group_list), -1, np.int64)
    for gi, g in enumerate(group_list):
        ps = [slot_piece[k] for k in g]
        if fused[gi] == 0 or any(ptab[p, P["kind"]] != PIECE_CODES["partial"] or ptab[p, P["nslots"]] != 1 for p in ps):
            continue
        roots = [ptab[p, P["root"]] for p in ps]
        off0, roff0 = ptab[ps[0], P["off"]], ptab[roots[0], P["off"]]
        if any(ptab[r, P["off"]] - roff0 != ptab[p, P["off"]] - off0 or ptab[r, P["n"]] != ptab[p, P["n"]]
               for p, r in zip(ps, roots)):  # fmt: skip
            continue
        width = int(fused[gi])
        if not np.array_equal(neurons[off0 : off0 + width], neurons[roff0 : roff0 + width]):
            continue
        src = graph.populations[slots[g[0], S["src_pop"]]]
        first = (0 if src.kind == "input" else sched[src.name].out_start) + 1 + slots[g[0], S["delay"]]
        p0 = ptab[ps[0]]
        if p0[P["acc_start"]] <= first and first + T <= p0[P["in_start"]] + T:
            out[gi] = roff0
    return out


def _target_major(slots, group_list, fused, weights) -> tuple[np.ndarray, np.ndarray]:
    """For each fused dense group narrower than ``kernels.SHORT_ROW``, its ``width x rows`` block
    ``tw[j, r] = weights[w_off + r * wrow + j]`` (the same words, one row per target neuron), so
    that a busy step adds ``sum_r value[r] * tw[j, r]`` per neuron instead of a short row per event."""
    from .kernels import SHORT_ROW  # the kernels' threshold for short rows

    blocks, offs, total = [], np.full(len(group_list), -1, np.int64), 0
    for gi, g in enumerate(group_list):
        k = g[0]
        if not 0 < fused[gi] < SHORT_ROW or slots[k, S["kind"]] != SLOT_CODES["dense"]:
            continue
        rows = slots[k, S["hi"]] - slots[k, S["lo"]]
        j, r = np.arange(fused[gi])[:, None], np.arange(rows)[None, :]
        blocks.append(weights[slots[k, S["w_off"]] + r * slots[k, S["wrow"]] + j].reshape(-1))
        offs[gi], total = total, total + blocks[-1].size
    return (np.concatenate(blocks) if blocks else np.zeros(0, weights.dtype)), offs


def _slot_row(graph, slot, w_off, inv_off, fwd_off, pop_index) -> list[int]:
    proj = graph.projections[slot.proj]
    src = graph.population(slot.src)
    shape = tuple(src.shape) if len(src.shape) == 3 else (src.size, 1, 1)
    r = [0] * len(SLOT_FIELDS)
    r[S["kind"]], r[S["proj"]], r[S["lo"]], r[S["hi"]] = SLOT_CODES[slot.kind], slot.proj, slot.lo, slot.hi
    r[S["src_pop"]], r[S["w_off"]] = pop_index[slot.src], w_off[slot.proj]
    r[S["ci"]], r[S["h"]], r[S["w"]] = shape
    if slot.kind == "conv":
        _, ci, kh, kw = proj.kernel.shape
        r[S["kh"]], r[S["kw"]], r[S["stride"]], r[S["pad"]] = kh, kw, proj.stride, proj.padding
        r[S["ci"]] = ci
        r[S["wrow"]] = proj.kernel.shape[0]  # output channels: the stride between (c, u, v) rows
    elif slot.kind == "pool":
        r[S["kh"]] = r[S["kw"]] = r[S["stride"]] = proj.kernel
    if slot.kind in ("identity", "product_a", "product_b"):
        r[S["weight"]] = proj.weight
    if slot.kind == "product_a":
        r[S["inv_off"]], r[S["delay"]] = inv_off[2 * slot.proj], proj.delay_a
        r[S["fwd_off"]], (_, r[S["fwd_d1"]], r[S["fwd_d2"]]) = fwd_off[2 * slot.proj], proj.a_index.shape
    elif slot.kind == "product_b":
        r[S["inv_off"]], r[S["delay"]] = inv_off[2 * slot.proj + 1], proj.delay_b
        r[S["fwd_off"]], (_, r[S["fwd_d1"]], r[S["fwd_d2"]]) = fwd_off[2 * slot.proj + 1], proj.b_index.shape
    else:
        r[S["delay"]] = proj.delay
    return r
