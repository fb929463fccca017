"""Partition an SNN graph into core-sized pieces (``docs/architecture.md`` section 2).

Each population is cut into slices of at most ``neurons`` neurons; each slice gets one *slot*
per incoming projection, and when the slots' synapse rows exceed ``axons`` the rows are split
into chunks: chunk 0 stays with the slice (the *root* piece), every further chunk becomes a
``partial`` piece that sends partial sums to the root.

Slices of ``(C, H, W)`` populations are a block of channels times a tile of positions; the
search over ``(cb, th, tw)`` minimises the number of slices, then channel blocks, then tile
aspect. All of this is arithmetic on the projections' geometry, so an ImageNet-size model
partitions in a fraction of a second.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spikeforge.models.graph import SNNGraph

from .hardware import HardwareConfig, HardwareError

__all__ = [
    "SHIFT_BITS",
    "MappingError",
    "Slot",
    "Piece",
    "first_arrivals",
    "mbe_param_words",
    "mbe_shifts",
    "mbe_width",
    "partition",
    "pool_count_bits",
    "product_sum_bits",
    "slice_search",
]

ROW_SLOTS = ("conv", "dense", "pool_dense")


class MappingError(HardwareError):
    """The graph cannot be mapped onto the hardware as described."""


@dataclass(frozen=True)
class Slot:
    """One incoming projection (or a chunk of one) of a piece.

    ``lo:hi`` is the slot's share of the projection's row space: input channels for ``conv``
    and ``pool_dense``, source indices for ``dense``. Its ``rows`` rows of ``row_words`` words
    each start at word ``base`` of the synapse SRAM.
    """

    proj: int
    kind: str
    src: str
    lo: int = 0
    hi: int = 0
    base: int = 0
    rows: int = 0
    row_words: int = 0

    @property
    def words(self) -> int:
        """Synapse SRAM words the slot occupies."""
        return self.rows * self.row_words


@dataclass(frozen=True, eq=False)
class Piece:
    """What one core holds at a time: a slice of one population and the slots that feed it.

    ``neurons`` are global indices into the population in local order; ``geometry`` describes
    the slice (``c0, c1, y0, y1, x0, x1`` for channel-block x tile slices; ``lo, hi`` for ranges;
    ``h, i0, i1, j0, j1`` for products).
    """

    id: int
    population: str
    kind: str
    neurons: np.ndarray
    slots: tuple[Slot, ...]
    root: int
    slice_index: int
    geometry: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Neurons (units, accumulators) in the piece."""
        return int(self.neurons.size)

    @property
    def words(self) -> int:
        """Synapse SRAM words used by the piece's slots."""
        return sum(s.words for s in self.slots)


#: Width of an MBE unit's output-shift word (section 4.5): a signed shift in -62..62.
SHIFT_BITS = 7


def mbe_shifts(pop: Any) -> bool:
    """True when an MBE population's payloads are shifted (an exponent split or ``shift_base``)."""
    return pop.split != "none" or pop.shift_base != 0


def mbe_param_words(n: int, bases: int, timesteps: int) -> int:
    """Parameter SRAM words of an MBE piece of ``n`` units: units, table rows, offsets, range."""
    return n + bases * timesteps + bases + 1


def mbe_width(pop: Any, timesteps: int, core: Any) -> int:
    """Most units of MBE population ``pop`` one piece holds (section 4.5), or a MappingError."""
    blocks = pop.bases + 1
    tables = mbe_param_words(0, pop.bases, timesteps)
    # X and each basis take a block of whole lane groups: (N + 1) * ceil(n / lanes) * lanes words
    width = min((core.neurons // core.lanes // blocks) * core.lanes, core.neurons - tables)
    if width < 1:
        raise MappingError(
            f"MBE population {pop.name!r} needs {blocks} membrane blocks of whole lane groups per slice "
            f"({blocks} x {core.lanes} words for one unit) and {tables} parameter words for its tables "
            f"(N = {pop.bases}, T = {timesteps}); the core has {core.neurons} words. "
            "Raise [core] neurons or lower lanes."
        )
    return width


def slice_search(c: int, h: int, w: int, capacity: int, fits: Any = None, chunks: Any = None) -> tuple[int, int, int]:
    """Best ``(cb, th, tw)``: fewest pieces, then fewest channel blocks, then squarest tiles.

    ``fits(cb, th, tw)`` (vectorised over numpy arrays) may add constraints beyond
    ``cb * th * tw <= capacity``; ``chunks(cb, th, tw)`` gives the pieces per slice (fan-in
    chunks; default 1).
    """
    cb, th, tw = np.meshgrid(
        np.arange(1, min(c, capacity) + 1), np.arange(1, h + 1), np.arange(1, w + 1), indexing="ij"
    )
    ok = cb * th * tw <= capacity
    if fits is not None:
        ok &= fits(cb, th, tw)
    if not ok.any():
        raise MappingError("no slice of even one neuron fits the core.")
    cb, th, tw = cb[ok], th[ok], tw[ok]
    blocks = -(-c // cb)
    slices = blocks * -(-h // th) * -(-w // tw)
    if chunks is not None:
        slices = slices * chunks(cb, th, tw)
    order = np.lexsort((-th, np.abs(th - tw), blocks, slices))
    i = order[0]
    return int(cb[i]), int(th[i]), int(tw[i])


def _tiles(c: int, h: int, w: int, cb: int, th: int, tw: int):
    """Yield ``(geometry, global indices in local order)`` of every channel-block x tile slice."""
    for y0 in range(0, h, th):
        for x0 in range(0, w, tw):
            for c0 in range(0, c, cb):
                c1, y1, x1 = min(c, c0 + cb), min(h, y0 + th), min(w, x0 + tw)
                ys, xs, cs = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), np.arange(c0, c1), indexing="ij")
                idx = (cs * h * w + ys * w + xs).reshape(-1)
                yield {"c0": c0, "c1": c1, "y0": y0, "y1": y1, "x0": x0, "x1": x1}, idx


def _row_space(graph: SNNGraph, idx: int) -> tuple[int, int]:
    """``(rows, rows per unit of the slot's lo:hi range)`` of a row-holding projection."""
    proj = graph.projections[idx]
    src = graph.population(proj.src)
    if proj.kind == "conv":
        _, ci, kh, kw = proj.kernel.shape
        return ci * kh * kw, kh * kw
    if proj.kind == "dense":
        return src.size, 1
    return src.shape[0], 1  # pool_dense: one row per source channel


def _dense_ranges(graph: SNNGraph, incoming: list[int], neurons: np.ndarray) -> dict[int, tuple[int, int]]:
    """Per dense projection, the source range ``[lo, hi)`` outside which every weight into ``neurons`` is 0.

    A slice takes only those rows: sources outside the range are not connected to it (their
    weights are zero), so they are neither routed to it nor stored (block-diagonal, token-wise
    matrices such as the MBE ViT's cost per slice what their non-zero blocks cost).
    """
    out = {}
    for idx in incoming:
        proj = graph.projections[idx]
        if proj.kind == "dense":
            cols = np.flatnonzero(np.any(proj.weight[neurons] != 0, axis=0))
            out[idx] = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
    return out


def _chunk_slots(
    graph: SNNGraph,
    incoming: list[int],
    cap_words: int,
    width: int,
    lanes: int,
    pop: str,
    ranges: dict[int, tuple[int, int]] | None = None,
) -> list[list[Slot]]:
    """Pack the row-holding projections' rows into chunks of at most ``cap_words`` words.

    ``width`` is the row width in weights: the channel block for conv slots, the slice's neurons
    for dense and pool_dense slots; a row takes ``ceil(width / lanes)`` words. ``ranges`` limits
    dense projections to the source ranges of :func:`_dense_ranges` (an empty range: no slot).
    """
    row_words = -(-width // lanes)
    chunks: list[list[Slot]] = [[]]
    used = 0
    for idx in incoming:
        proj = graph.projections[idx]
        if proj.kind not in ROW_SLOTS:
            continue
        total, per_unit = _row_space(graph, idx)
        unit_words = per_unit * row_words
        if unit_words > cap_words:
            raise MappingError(
                f"population {pop!r}: one input channel of its {proj.kind} projection needs {unit_words} synapse "
                f"words (the kernel), more than the core's {cap_words}; raise [core] axons."
            )
        units = total // per_unit
        lo = 0
        if ranges is not None and idx in ranges:
            lo, units = ranges[idx]
        while lo < units:
            room = (cap_words - used) // unit_words
            if room == 0:
                chunks.append([])
                used = 0
                continue
            hi = min(units, lo + room)
            chunks[-1].append(Slot(idx, proj.kind, proj.src, lo, hi, used, (hi - lo) * per_unit, row_words))
            used += (hi - lo) * unit_words
            lo = hi
    return chunks


def _words_per_slice(graph: SNNGraph, incoming: list[int], width: np.ndarray, lanes: int) -> np.ndarray:
    """Synapse words a slice needs for rows ``width`` weights wide (vectorised over widths)."""
    total = np.zeros_like(width)
    for idx in incoming:
        if graph.projections[idx].kind in ROW_SLOTS:
            total = total + _row_space(graph, idx)[0] * -(-width // lanes)
    return total


def partition(graph: SNNGraph, hw: HardwareConfig) -> list[Piece]:
    """Cut every population of ``graph`` into pieces that fit one core of ``hw``.

    Raises
    ------
    MappingError
        A population that cannot fit a core even split (named, with the limit it hits).
    """
    core = hw.core
    if graph.weight_bits > core.weight_bits:
        raise MappingError(
            f"the graph's weights are {graph.weight_bits}-bit but the core stores {core.weight_bits}-bit weights; "
            f"convert with --weight-bits {core.weight_bits} or raise [core] weight_bits."
        )
    if graph.v_bits > core.v_bits:
        raise MappingError(
            f"the graph needs {graph.v_bits}-bit membranes but the core has {core.v_bits}; raise [core] v_bits."
        )
    needs_dif = any(p.kind == "neuron" and p.delay > 0 for p in graph.populations)
    if needs_dif and "dif" not in core.neuron_models:
        raise MappingError("the graph uses DIF neurons but [core] neuron_models lacks 'dif'.")
    uses_mbe = any(p.kind == "mbe" for p in graph.populations)
    if uses_mbe and "mbe" not in core.neuron_models:
        raise MappingError("the graph uses MBE neurons but [core] neuron_models lacks 'mbe'.")
    room = core.v_bits - 8  # exp_bias shares a parameter field with the split code and bits (section 4.5)
    lo, hi = (-(1 << (room - 1)), (1 << (room - 1)) - 1) if room >= 1 else (0, 0)
    for pop in graph.populations:
        if pop.kind == "mbe" and pop.split == "invsqrt" and not lo <= pop.exp_bias <= hi:
            raise MappingError(
                f"MBE population {pop.name!r} has exp_bias = {pop.exp_bias}; the parameter field that holds it "
                f"(section 4.5) keeps {max(room, 0)} signed bits on a {core.v_bits}-bit core."
            )
    pieces: list[Piece] = []

    def add(pop: str, kind: str, neurons: np.ndarray, slots, root: int | None, sl: int, geo: dict) -> int:
        if len(slots) > core.slots:
            raise MappingError(
                f"population {pop!r} needs {len(slots)} projection slots in one piece; the core has "
                f"{core.slots}. Raise [core] slots."
            )
        pid = len(pieces)
        pieces.append(
            Piece(pid, pop, kind, np.asarray(neurons, np.int64), tuple(slots), pid if root is None else root, sl, geo)
        )
        return pid

    for pop in graph.populations:
        if pop.kind == "input":
            continue
        incoming = [i for i, p in enumerate(graph.projections) if p.dst == pop.name]
        kinds = {graph.projections[i].kind for i in incoming}
        if pop.kind == "maxpool":
            _partition_maxpool(graph, hw, pop, incoming[0], add)
        elif "product" in kinds:
            if len(incoming) != 1:
                raise MappingError(
                    f"population {pop.name!r} mixes a product with other projections; the "
                    "running-count mode needs the product to be its only input."
                )
            _partition_product(graph, hw, pop, incoming[0], graph.timesteps, add)
        else:
            _partition_rows(graph, hw, pop, incoming, kinds, add)
    return pieces


def pool_count_bits(graph: SNNGraph, proj: Any, core: Any) -> int:
    """Bits of one running-count word of a max-pool piece: ``count_bits``, or ``v_bits`` when it pools
    MBE payloads (running payload sums, section 4.3)."""
    return core.v_bits if graph.graded(proj.src) else core.count_bits


def product_sum_bits(graph: SNNGraph, proj: Any, core: Any) -> int:
    """Bits of one running-count word of a product's piece (section 4.3): ``count_bits`` for
    spike operands, ``v_bits`` when an operand is an MBE population (running payload sums)."""
    graded = any(graph.population(s).kind == "mbe" for s, _ in proj.sources)
    return core.v_bits if graded else core.count_bits


def first_arrivals(graph: SNNGraph) -> dict[str, int]:
    """First step anything arrives at each population: its ``in_start``, or earlier for an MBE
    population whose inputs arrive in earlier windows (``X`` holds them; section 4.5). Cached per
    graph (a rounds plan asks once per piece)."""
    cached = _ARRIVALS.get(graph)
    if cached is None:
        sched = graph.schedule()
        cached = {name: w.in_start for name, w in sched.items()}
        for proj in graph.projections:
            for src, delay in proj.sources:
                cached[proj.dst] = min(cached[proj.dst], sched[src].out_start + 1 + delay)
        _ARRIVALS[graph] = cached
    return dict(cached)


_ARRIVALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _partition_rows(graph, hw, pop, incoming, kinds, add) -> None:
    core = hw.core
    cap = core.axons * core.groups  # synapse SRAM words
    identity = [
        Slot(i, "identity", graph.projections[i].src) for i in incoming if graph.projections[i].kind == "identity"
    ]
    root_kind = pop.kind if pop.kind in ("output", "mbe") else "neuron"
    if pop.kind == "mbe":  # contiguous ranges of units; each unit takes N + 1 membrane words
        if "conv" in kinds:
            raise MappingError(
                f"MBE population {pop.name!r} is fed by a convolution; MBE pieces are cut into ranges of units "
                "and take dense and identity projections only."
            )
        n = pop.size
        width = min(n, mbe_width(pop, graph.timesteps, core))
        slices = [
            ({"lo": lo, "hi": min(n, lo + width)}, np.arange(lo, min(n, lo + width))) for lo in range(0, n, width)
        ]
    elif "conv" in kinds or (len(pop.shape) == 3 and kinds <= {"identity"}):
        if kinds - {"conv", "identity"}:
            raise MappingError(
                f"population {pop.name!r} mixes convolution with {sorted(kinds - {'conv', 'identity'})} "
                "projections; a piece's address generation needs one geometry."
            )
        c, h, w = pop.shape

        def chunks(cb, th, tw):  # conv rows are one channel block wide
            return np.maximum(1, -(-_words_per_slice(graph, incoming, cb, core.lanes) // cap))

        cb, th, tw = slice_search(c, h, w, core.neurons, chunks=chunks)
        slices = list(_tiles(c, h, w, cb, th, tw))
        width = cb
    else:
        n = pop.size
        width = min(n, core.neurons)
        slices = [
            ({"lo": lo, "hi": min(n, lo + width)}, np.arange(lo, min(n, lo + width))) for lo in range(0, n, width)
        ]
    full = _chunk_slots(graph, incoming, cap, width, core.lanes, pop.name)
    whole = {i: (0, graph.population(graph.projections[i].src).size) for i in incoming}
    for si, (geo, idx) in enumerate(slices):
        ranges = _dense_ranges(graph, incoming, idx)
        trimmed = any(r != whole[i] for i, r in ranges.items())
        chunk_slots = _chunk_slots(graph, incoming, cap, width, core.lanes, pop.name, ranges) if trimmed else full
        root = add(pop.name, root_kind, idx, identity + chunk_slots[0], None, si, geo)
        for chunk in chunk_slots[1:]:
            add(pop.name, "partial", idx, chunk, root, si, geo)


def _partition_maxpool(graph, hw, pop, idx, add) -> None:
    proj = graph.projections[idx]
    if proj.kernel != proj.stride:
        raise MappingError(
            f"max-pool {pop.name!r} has kernel {proj.kernel} and stride {proj.stride}; the max-pool unit "
            "supports non-overlapping windows (kernel == stride) only."
        )
    core = hw.core
    k2 = proj.kernel**2
    c, h, w = pop.shape
    bits = pool_count_bits(graph, proj, core)
    if graph.graded(proj.src):
        bound = graph.population(proj.src).emission_bound()
        if bound > (1 << (core.v_bits - 1)) - 1:
            raise MappingError(
                f"max-pool {pop.name!r} keeps running sums of {proj.src!r}'s payloads, which can reach {bound}; "
                f"that does not fit the {core.v_bits}-bit words that hold them. Raise [core] v_bits."
            )

    def fits(cb, th, tw):  # every input of the slice's windows needs a running count
        return cb * th * tw * k2 * bits <= core.synapse_bits

    cb, th, tw = slice_search(c, h, w, core.neurons, fits)
    for si, (geo, outs) in enumerate(_tiles(c, h, w, cb, th, tw)):
        add(pop.name, "maxpool", outs, [Slot(idx, "pool", proj.src)], None, si, geo)


def _partition_product(graph, hw, pop, idx, T, add) -> None:
    """Product pieces (section 4.3): IF/DIF neurons (``product``), MBE units (``mbe``) or output
    accumulators (``output``) in ``(h, I-block, J-block)`` slices, the running counts (or, with an
    MBE operand, running payload sums) of both operands in the synapse SRAM."""
    proj = graph.projections[idx]
    core = hw.core
    kinds = {"neuron": "product", "mbe": "mbe", "output": "output"}  # the graph's only product targets
    bits = product_sum_bits(graph, proj, core)
    if bits == core.count_bits:
        if T > (1 << core.count_bits) - 1:
            raise MappingError(
                f"population {pop.name!r} keeps running spike counts up to T = {T}, which needs "
                f"{T.bit_length()} bits; [core] count_bits is {core.count_bits}."
            )
    else:
        vhi = (1 << (core.v_bits - 1)) - 1
        for src, _ in proj.sources:
            s = graph.population(src)
            bound = s.emission_bound() if s.kind == "mbe" else T
            if bound > vhi:
                raise MappingError(
                    f"population {pop.name!r}: the running sum of the payloads of its product operand {src!r} can "
                    f"reach {bound}, which does not fit the {core.v_bits}-bit running-sum words (section 4.3); "
                    "raise [core] v_bits or narrow the operand's tables."
                )
    for side, index in (("a", proj.a_index), ("b", proj.b_index)):
        if np.unique(index).size != index.size:
            raise MappingError(
                f"population {pop.name!r}: operand {side} of its product names a source neuron twice; the "
                "running-count mode needs each operand spike to stand for one (row, column)."
            )
    nh, ni, nc = proj.a_index.shape
    nj = proj.b_index.shape[2]
    capacity = mbe_width(pop, T, core) if pop.kind == "mbe" else core.neurons

    def fits(_, ib, jb):
        return (ib + jb) * nc * bits <= core.synapse_bits

    _, ib, jb = slice_search(1, ni, nj, capacity, fits)
    si = 0
    for h in range(nh):
        for i0 in range(0, ni, ib):
            for j0 in range(0, nj, jb):
                i1, j1 = min(ni, i0 + ib), min(nj, j0 + jb)
                outs = proj.out_index[h, i0:i1, j0:j1].reshape(-1)
                slots = [Slot(idx, "product_a", proj.src_a), Slot(idx, "product_b", proj.src_b)]
                geo = {"h": h, "i0": i0, "i1": i1, "j0": j0, "j1": j1}
                add(pop.name, kinds[pop.kind], outs, slots, None, si, geo)
                si += 1
