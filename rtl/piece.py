"""What one core's RTL is built from: the core parameters and the piece it holds, from a Program.

The registers and memories of ``docs/architecture.md`` section 3 are filled from the program's
bit-exact images (:meth:`spikeforge.mapping.Program.images`): synapse words, parameter words
(``threshold``, ``bias``, ``v0``), slot registers, plus the context registers (kind, ``n``,
``in_start``, ``out_start``, ``T``, the slice's first neuron). :func:`check_buildable` says in one
sentence what the generator cannot build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spikeforge.mapping import HardwareConfig, Program
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES
from spikeforge.mapping.pieces import first_arrivals, product_sum_bits

from .errors import RtlError

__all__ = [
    "MAX_V_BITS",
    "MAX_WEIGHT_BITS",
    "SUPPORTED_PIECES",
    "SUPPORTED_SLOTS",
    "MIN_PIPELINE",
    "SlotInit",
    "PieceInit",
    "CONTEXT_REGISTERS",
    "SLOT_REGISTERS",
    "ROUTE_REGISTERS",
    "TILE_REGISTERS",
    "OPERAND_REGISTERS",
    "MBE_REGISTERS",
    "operand_bases",
    "REGISTER_BITS",
    "register_values",
    "register_names",
    "context_registers",
    "register_addresses",
    "is_tile",
    "slice_extent",
    "structure_key",
    "CONV_REGISTERS",
    "is_conv",
    "conv_values",
    "tile_offsets",
    "check_hardware",
    "piece_init",
    "empty_piece",
    "bank_shifts",
    "product_banks",
    "membrane_order",
    "neuron_positions",
    "sum_positions",
    "history_bits",
    "membrane_positions",
    "readout_order",
]

#: Widths the generator supports (the per-lane multiplier and the 24-bit flit index bound them).
MAX_V_BITS = 32
MAX_WEIGHT_BITS = 16
#: Piece and slot kinds this core implements (the rest of the contract is listed in docs/rtl.md).
SUPPORTED_PIECES = ("neuron", "output", "partial", "maxpool", "product", "mbe")
SUPPORTED_SLOTS = ("dense", "identity", "pool", "conv", "pool_dense", "product_a", "product_b")
#: The datapath writes a group back one cycle after it is issued, so the core can only be done
#: ``pipeline_cycles >= 1`` after its last event ends.
MIN_PIPELINE = 1


@dataclass(frozen=True)
class SlotInit:
    """One slot register: kind code, row space ``lo..hi``, first synapse word, weight (identity), and
    words per row (``row_words``, the slot image's last field: the compiler sizes rows for the slice
    geometry's full width, which can exceed ``ceil(n/lanes)`` on a population's last slice)."""

    kind: int
    lo: int
    hi: int
    base: int
    weight: int
    row_words: int = 0
    src_shape: tuple[int, int, int] = (1, 1, 1)  # (C, H, W) of the source population
    kernel: int = 0  # kernel height (conv), window side (pool, kernel == stride)
    kernel_w: int = 0
    stride: int = 0
    pad: int = 0


@dataclass(frozen=True)
class PieceInit:
    """Context registers and memory images of the piece a core holds (zeros: an idle core)."""

    kind: int
    n: int
    in_start: int
    out_start: int
    timesteps: int
    first: int  # global index of local neuron 0 (range slices)
    slots: tuple[SlotInit, ...]
    synapse: np.ndarray  # (words, lanes) signed weights
    params: np.ndarray  # (n, 3): threshold, bias, v0
    routing: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.int64))  # first last x y slot delay
    piece_id: int = -1
    population: str = ""
    root_x: int = 0  # partial pieces: the core of the root piece their sums go to
    root_y: int = 0
    neurons: tuple[int, ...] = ()  # global index of every local neuron (the encoder's flit index)
    geometry: dict = field(default_factory=dict)
    # product pieces: operand source index -> (row, column) of the piece's counts, per operand slot
    operands: tuple[dict, dict] = ({}, {})
    contraction: int = 0  # C
    meta: dict = field(default_factory=dict)
    bases: int = 0  # mbe pieces: N (params then holds the tables after the n unit words, section 4.5)
    #: first arrival (section 4): in_start, or earlier for an MBE population's early inputs; a partial
    #: piece sends its sums from then on (-1: in_start)
    acc_start: int = -1
    #: the running counts are v_bits payload sums: a product with an MBE operand (section 4.3) or a
    #: max-pool of MBE payloads (section 4.4)
    graded_sums: bool = False
    #: (C, H, W) of the piece's population ((size, 1, 1) when it is not 3-D): an identity event names
    #: the neuron it reaches by its index in this shape, whatever the source's shape
    shape: tuple[int, int, int] = (1, 1, 1)


#: The registers of a piece that a swap core's loader writes (``docs/rtl.md``, "Swap mode"), in
#: address order: the context registers, then per slot, then the kind-specific ones below, then per
#: routing entry (last: a context holds as many entries as the most of the pieces that share it, and
#: a piece with fewer loads its own and its count, ``entries``). Everything else of a
#: :class:`PieceInit` shapes the logic (:func:`structure_key`).
#: The step registers come first, acc_start (the earliest) before in_start, out_start and T: the loader
#: rewrites a shared context that is still active, and with the starts written before the lengths
#: every window read in between is either the old piece's (over) or the new one's (not begun).
CONTEXT_REGISTERS = ("acc_start", "in_start", "out_start", "timesteps", "first", "root_x", "root_y", "entries")
SLOT_REGISTERS = ("lo", "base", "weight", "row_words", "kind")
ROUTE_REGISTERS = ("first", "last", "x", "y", "slot", "delay")
#: A channel x tile slice's origin (section 2: channels ``c0 ..``, positions ``(y0 .., x0 ..)``), after the
#: slots; its extent ``(cb, th, tw)`` shapes the logic (but for a conv piece's). Range slices have none.
TILE_REGISTERS = ("c0", "y0", "x0")
#: A ``conv`` piece (a neuron tile slice with a ``conv`` slot, section 2), after the tile's origin: its
#: extent (``cb, th, tw``), its population's ``H, W`` (the encoder's index and identity sources are
#: positions in it), the ``conv`` slot's source ``H, W``, kernel ``kh, kw``, stride and padding. The
#: context is sized for the largest kernel and channel block of the pieces that share it; only
#: whether the channel block is a multiple of ``lanes`` (per-lane membrane banks) shapes the logic.
CONV_REGISTERS = ("cb", "th", "tw", "pop_h", "pop_w", "src_h", "src_w", "kh", "kw", "stride", "pad")
#: A piece fed by a product (section 4.3): the lowest source index of each operand's table, after the
#: slots (and a tile's origin); the tables themselves, as offsets from them, are the operand table
#: memory's words (:func:`~spikeforge.rtl.memories.operand_words`), loaded with the piece.
OPERAND_REGISTERS = ("a_base", "b_base")
#: An ``mbe`` piece (section 4.5): the clip range of ``X`` and the payload's start ``B`` (the table's
#: last word), after the operand bases; the table's other constants (the split's code, the shift
#: base) and ``T`` shape the logic.
MBE_REGISTERS = ("x_lo", "x_hi", "out_bias")
#: Bits of a register record's value (two's complement: a slot's weight may be negative).
REGISTER_BITS = 32


def register_values(p: PieceInit) -> list[int]:
    """The values of ``p``'s loadable registers in address order (:data:`CONTEXT_REGISTERS`, then
    :data:`SLOT_REGISTERS` of slot 0, 1, .., then for a channel x tile slice :data:`TILE_REGISTERS`,
    for a conv piece :data:`CONV_REGISTERS`, for a piece fed by a product :data:`OPERAND_REGISTERS`,
    for an ``mbe`` piece :data:`MBE_REGISTERS`, then :data:`ROUTE_REGISTERS` of entry 0, 1, ..;
    :func:`register_names` names them).

    ``acc_start`` is the resolved first arrival (``in_start`` where ``p.acc_start`` is -1), ``entries``
    the number of routing entries. A slot's ``hi`` is not a register of the datapath: the router
    delivers only the slot's rows.
    """
    acc = p.in_start if p.acc_start < 0 else p.acc_start
    ctx = [acc, p.in_start, p.out_start, p.timesteps, p.first, p.root_x, p.root_y, len(p.routing)]
    slots = [v for s in p.slots for v in (s.lo, s.base, s.weight, s.row_words, s.kind)]
    routes = [int(v) for e in np.asarray(p.routing, np.int64).tolist() for v in e[:6]]
    tile = [p.geometry[k] for k in TILE_REGISTERS] if is_tile(p) else []
    mbe = [int(v) for v in p.params[-1][:3]] if p.kind == PIECE_CODES["mbe"] else []
    return [int(v) for v in ctx + slots + tile + conv_values(p) + list(operand_bases(p)) + mbe + routes]


def register_names(p: PieceInit) -> list[str]:
    """The names of :func:`register_values`, in order: a context register's name, ``slot{k}.{name}``,
    a tile, conv, operand or MBE register's name, ``route{k}.{name}``."""
    return _names(p, len(p.slots), len(p.routing))


def _names(p: PieceInit, slots: int, entries: int) -> list[str]:
    names = list(CONTEXT_REGISTERS) + [f"slot{k}.{r}" for k in range(slots) for r in SLOT_REGISTERS]
    names += list(TILE_REGISTERS) if is_tile(p) else []
    names += list(CONV_REGISTERS) if is_conv(p) else []
    names += list(OPERAND_REGISTERS) if operand_bases(p) else []
    names += list(MBE_REGISTERS) if p.kind == PIECE_CODES["mbe"] else []
    return names + [f"route{k}.{r}" for k in range(entries) for r in ROUTE_REGISTERS]


def context_registers(family: Sequence[PieceInit]) -> list[str]:
    """The registers of a context shared by ``family`` (pieces of one :func:`structure_key`), by name in
    address order: as :func:`register_names`, with as many slots and routing entries as the most of
    them. A piece's register ``i`` is at address ``context_registers(family).index(register_names(p)[i])``
    (:func:`register_addresses`): a piece with fewer slots or entries writes only its own."""
    return _names(family[0], max(len(q.slots) for q in family), max(len(q.routing) for q in family))


def register_addresses(p: PieceInit, layout: Sequence[str]) -> list[int]:
    """The address in a context's ``layout`` (:func:`context_registers`) of each of ``p``'s registers."""
    at = {name: a for a, name in enumerate(layout)}
    return [at[name] for name in register_names(p)]


def is_conv(p: PieceInit) -> bool:
    """Whether ``p`` is a ``conv`` piece, whose geometry is in :data:`CONV_REGISTERS`: a ``neuron``
    channel x tile slice with a ``conv`` slot (and perhaps an ``identity`` slot)."""
    return p.kind == PIECE_CODES["neuron"] and is_tile(p) and any(s.kind == SLOT_CODES["conv"] for s in p.slots)


def conv_values(p: PieceInit) -> list[int]:
    """The values of :data:`CONV_REGISTERS` (``[]`` when ``p`` is not :func:`is_conv`)."""
    if not is_conv(p):
        return []
    sl = next(s for s in p.slots if s.kind == SLOT_CODES["conv"])
    return [*slice_extent(p), *p.shape[1:], *sl.src_shape[1:], sl.kernel, sl.kernel_w, sl.stride, sl.pad]


def tile_offsets(cb: int, th: int, tw: int, h: int, w: int) -> list[int]:
    """A channel x tile slice's local neurons as offsets from local 0's global index, in a population
    of ``(C, h, w)``: local ``j = (py * tw + px) * cb + ch`` is neuron ``(c0 + ch, y0 + py, x0 + px)``,
    ``ch * h * w + py * w + px`` after ``(c0, y0, x0)`` (the order ``mapping/pieces.py`` gives them)."""
    return [ch * h * w + py * w + px for py in range(th) for px in range(tw) for ch in range(cb)]


def operand_bases(p: PieceInit) -> tuple[int, ...]:
    """The values of :data:`OPERAND_REGISTERS`: each operand table's lowest source index (``()``
    when ``p`` is not fed by a product)."""
    return tuple(min(t) for t in p.operands) if p.operands[0] else ()


def is_tile(p: PieceInit) -> bool:
    """Whether ``p`` is a channel x tile slice (its origin is in :data:`TILE_REGISTERS`)."""
    return "c0" in p.geometry


def slice_extent(p: PieceInit) -> tuple:
    """The extent of ``p``'s slice, without its origin: ``(cb, th, tw)`` of a channel x tile slice,
    ``(|I|, |J|)`` of a product block, ``()`` for a range slice (its ``first`` is a register)."""
    g = p.geometry
    if is_tile(p):
        return (g["c1"] - g["c0"], g["y1"] - g["y0"], g["x1"] - g["x0"])
    if "i0" in g:
        return (g["i1"] - g["i0"], g["j1"] - g["j0"])
    return ()


def structure_key(p: PieceInit) -> tuple:
    """Everything of ``p`` that shapes a core's logic; pieces with equal keys can share one context.

    The key holds the piece kind, ``n`` (its lane groups set the phase-F and dense-event lengths), the
    slot kinds, the source shapes of the slots that decode ``(ch, y, x)`` and their convolution or
    pooling geometry, the slice's extent (:func:`slice_extent`: its origin and a range slice's
    ``first`` are registers), a product's contraction (its index tables are a loaded memory,
    :func:`~spikeforge.rtl.memories.operand_words`), MBE bases and table structure (``T`` and the
    constants read from the parameter image at elaboration), whether the counts are payload sums,
    and the encoder's index offsets (but for a piece fed by a product: a loaded table,
    :func:`~spikeforge.rtl.memories.index_words`) and the population shape of a tile slice. The
    values :func:`register_values` lists are not in it, nor the number of routing entries: a context
    holds as many as the most of its pieces (one history read port and one priority encoder each)
    and a piece loads its count. A conv piece
    (:func:`is_conv`) keeps its geometry in :data:`CONV_REGISTERS` and its slots' kinds in registers
    (a conv slot, perhaps an identity slot): its key is whether its channel block is a multiple of
    the lanes (lane banks) and payload sums.
    """
    if is_conv(p):
        # a conv piece's geometry and slot kinds are in registers: whether its channel block fills
        # whole words of `lanes` (the synapse image's width) remains
        lanes = p.synapse.shape[1] if p.synapse.ndim == 2 else 1
        banked = lanes > 1 and slice_extent(p)[0] % lanes != 0
        return ("conv", banked, p.graded_sums)
    contiguous = list(p.neurons) == list(range(p.first, p.first + len(p.neurons)))
    # a tile slice's encoder index is `first` (its local neuron 0) plus a ROM of offsets that only the
    # extent and the population shape fix
    shaped = {SLOT_CODES[k] for k in ("conv", "pool", "pool_dense", "identity")}  # decode (ch, y, x)
    slots = tuple(
        (s.kind, tuple(int(v) for v in s.src_shape) if s.kind in shaped else (), s.kernel, s.kernel_w, s.stride, s.pad)
        for s in p.slots
    )
    mbe = ()
    if p.kind == PIECE_CODES["mbe"]:  # the table constants Core reads at elaboration (section 4.5)
        code = tuple(int(v) for v in p.params[p.n + p.bases * p.timesteps][1:3])
        mbe = (p.timesteps, len(p.params), code)
    return (
        p.kind,
        p.n,
        slots,
        slice_extent(p),
        p.contraction,
        p.bases,
        p.graded_sums,
        mbe,
        # (a piece fed by a product reads its neurons' offsets from a loaded table, rtl.memories.index_words)
        None if contiguous or p.operands[0] else tuple(v - p.first for v in p.neurons),
        p.shape if "c0" in p.geometry else (),  # a tile slice decodes identity sources in this shape
    )


def check_hardware(hw: HardwareConfig) -> None:
    """Raise :class:`RtlError` when the generator cannot build ``hw``'s core."""
    core = hw.core
    if core.v_bits > MAX_V_BITS:
        raise RtlError(f"[core] v_bits = {core.v_bits} is wider than the RTL supports ({MAX_V_BITS}); lower it.")
    if core.weight_bits > MAX_WEIGHT_BITS:
        raise RtlError(
            f"[core] weight_bits = {core.weight_bits} is wider than the RTL supports ({MAX_WEIGHT_BITS}); lower it."
        )
    if core.pipeline_cycles < MIN_PIPELINE:
        raise RtlError(
            f"[core] pipeline_cycles = {core.pipeline_cycles} is shorter than the RTL datapath "
            f"(a group is written back {MIN_PIPELINE} cycle after it is issued); set it to >= {MIN_PIPELINE}."
        )
    words = core.axons * core.neurons // core.lanes
    if core.neurons > 1 << 16 or words > 1 << 16:
        # a slot's first word `base` is a 16-bit register (docs/architecture.md section 3)
        raise RtlError(
            f"[core] axons x neurons / lanes = {core.axons} x {core.neurons} / {core.lanes} makes a synapse SRAM of "
            f"{words} words, more than the 2^16 a slot register's 16-bit base addresses: lower axons or neurons, "
            "or raise lanes."
        )


def empty_piece(hw: HardwareConfig) -> PieceInit:
    """An idle core: no neurons, no slots, zero memories."""
    return PieceInit(0, 0, 0, 0, 0, 0, (), np.zeros((0, hw.core.lanes), np.int64), np.zeros((0, 3), np.int64))


def piece_init(program: Program, piece_id: int) -> PieceInit:
    """The registers and images of ``program``'s piece ``piece_id``, checked against what the RTL builds.

    Raises
    ------
    RtlError
        When the piece uses a kind of piece or slot the generator does not implement yet.
    """
    check_hardware(program.hardware)
    piece = program.pieces[piece_id]
    if piece.kind not in SUPPORTED_PIECES:
        raise RtlError(
            f"piece {piece_id} ({piece.population!r}) is a {piece.kind!r} piece; the RTL core implements "
            f"{', '.join(SUPPORTED_PIECES)} pieces so far (docs/rtl.md lists what is missing)."
        )
    for s in piece.slots:
        if s.kind not in SUPPORTED_SLOTS:
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) has a {s.kind!r} slot; the RTL core implements "
                f"{', '.join(SUPPORTED_SLOTS)} slots so far (docs/rtl.md lists what is missing)."
            )
        if s.kind == "conv":
            convs = {
                (program.graph.projections[x.proj].kernel.shape[2:], program.graph.projections[x.proj].stride)
                for x in piece.slots
                if x.kind == "conv"
            }
            if len(convs) > 1 or any(x.kind not in ("conv", "identity") for x in piece.slots):
                raise RtlError(
                    f"piece {piece_id} ({piece.population!r}) mixes convolutions of different kernels or strides; "
                    "the RTL core generates one convolution geometry per piece."
                )
    operands: tuple[dict, dict] = ({}, {})
    contraction = 0
    graded_sums = False
    if any(s.kind == "product_a" for s in piece.slots):  # a product piece, or mbe / output units fed by one
        proj = program.graph.projections[piece.slots[0].proj]
        g = piece.geometry
        contraction = int(proj.a_index.shape[2])
        a = {
            int(proj.a_index[g["h"], i, c]): (i - g["i0"], c)
            for i in range(g["i0"], g["i1"])
            for c in range(contraction)
        }
        b = {
            int(proj.b_index[g["h"], c, j]): (c, j - g["j0"])
            for c in range(contraction)
            for j in range(g["j0"], g["j1"])
        }
        operands = (a, b)
        core = program.hardware.core
        ni, nj = g["i1"] - g["i0"], g["j1"] - g["j0"]
        lanes = core.lanes
        words = contraction * (-(-ni // lanes) + -(-nj // lanes))  # rtl.core.count_words
        graded_sums = product_sum_bits(program.graph, proj, core) == core.v_bits  # an MBE operand
        sram_bits = core.axons * core.neurons * core.weight_bits
        if graded_sums and words * lanes * core.v_bits > sram_bits:
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) is a {ni} x {nj} product block over {contraction} "
                f"contraction indices with MBE operands; its running payload sums take {words} words of {lanes} "
                f"sums of {core.v_bits} bits, more than the synapse SRAM's {sram_bits} bits: recompile it with "
                "smaller blocks or more axons."
            )
        if not graded_sums and (core.count_bits > core.weight_bits or words > core.axons * core.neurons // lanes):
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) is a {ni} x {nj} product block over {contraction} "
                f"contraction indices; its running counts take {words} synapse words of {lanes} counts of "
                f"{core.count_bits} bits, and the synapse SRAM has {core.axons * core.neurons // lanes} words of "
                f"{lanes} weights of {core.weight_bits} bits: recompile it with smaller blocks or more axons."
            )
        # the operand table memory (rtl.memories.operand_words): one entry per offset of a source from
        # its table's lowest index, at most as many entries as the synapse SRAM has words
        spans = [max(t) - min(t) + 1 for t in (a, b)]
        syn_words = core.axons * core.neurons // lanes
        if max(spans) > syn_words:
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) is fed by a product whose operand sources span "
                f"{max(spans)} indices; the core's operand table holds one entry per index, at most as many as "
                f"the synapse SRAM has words ({syn_words}): number the operands' neurons closer together (a "
                "head's sources in one run) or raise axons."
            )
    if piece.kind == "maxpool":
        graded_sums = program.graph.graded(piece.population)  # running payload sums (section 4.4)
        core = program.hardware.core
        k = int(program.graph.projections[piece.slots[0].proj].kernel)
        words = k * k * -(-piece.n // core.lanes)
        bits = core.v_bits if graded_sums else core.weight_bits  # a count word takes a whole weight word
        if (not graded_sums and core.count_bits > core.weight_bits) or words * core.lanes * bits > (
            core.axons * core.neurons * core.weight_bits
        ):
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) is a max-pool of {piece.n} outputs with {k} x {k} windows; "
                f"its running counts take {words} synapse words of {core.lanes} counts of {bits} bits, which do "
                "not fit the synapse SRAM (or count_bits exceeds weight_bits): recompile it with smaller slices."
            )
    bases = 0
    if piece.kind == "mbe":
        bases = int(program.graph.population(piece.population).bases)
        core = program.hardware.core
        groups = -(-piece.n // core.lanes)
        if (bases + 1) * groups > core.neurons // core.lanes:
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) is an mbe piece of {piece.n} units with {bases} bases; "
                f"its {bases + 1} membrane blocks of {groups} lane groups do not fit the {core.neurons // core.lanes} "
                "words of the membrane SRAM (recompile it for this hardware file)."
            )
    images = program.images(piece_id)
    sched = program.graph.schedule()[piece.population]
    slots = tuple(
        SlotInit(*(int(v) for v in f[:5]), int(f[12]), tuple(f[5:8]), *(int(v) for v in f[8:12]))
        for f in images["slots"].fields.tolist()
    )
    # global index of local neuron 0: a range slice's lo, a tile slice's (c0, y0, x0)
    first = int(piece.neurons[0]) if len(piece.neurons) else int(piece.geometry.get("lo", 0))
    pop_shape = tuple(program.graph.population(piece.population).shape)
    root_y, root_x = divmod(int(program.plan.core[piece.root]), program.hardware.array.cols)
    init = PieceInit(
        kind=PIECE_CODES[piece.kind],
        n=piece.n,
        in_start=int(sched.in_start),
        out_start=int(sched.out_start),
        timesteps=int(program.graph.timesteps),
        first=first,
        slots=slots,
        synapse=images["synapse"].fields.astype(np.int64),
        params=images["params"].fields.astype(np.int64),
        routing=images["routing"].fields.astype(np.int64),
        piece_id=piece_id,
        population=piece.population,
        root_x=root_x,
        root_y=root_y,
        neurons=tuple(int(v) for v in piece.neurons),
        geometry=dict(piece.geometry),
        operands=operands,
        contraction=contraction,
        bases=bases,
        acc_start=int(first_arrivals(program.graph)[piece.population]),
        graded_sums=graded_sums,
        shape=pop_shape if len(pop_shape) == 3 else (int(np.prod(pop_shape)), 1, 1),
    )
    if is_conv(init):
        # a loadable conv context computes a local neuron's global index from its registers
        cb, th, tw, h, w = conv_values(init)[:5]
        if [v - first for v in init.neurons] != tile_offsets(cb, th, tw, h, w):
            raise RtlError(
                f"piece {piece_id} ({piece.population!r}) orders its neurons otherwise than (position, channel) "
                "within its tile; the RTL's conv contexts compute a neuron's index in that order "
                "(rtl.piece.tile_offsets), so it does not run it."
            )
    return init


def bank_shifts(ni: int, lanes: int) -> list[int]:
    """Row shifts ``s_i`` of a product block's skewed banks (section 4.3): neuron ``(i, j)`` is in bank
    ``(j + s_i) mod lanes``. ``s_i = i mod lanes`` for the rows of whole groups of ``lanes`` rows; the
    last ``r = ni mod lanes`` rows spread evenly over the banks, ``s = floor(t * lanes / r)`` for the
    ``t``-th of them, so that every bank holds at most ``ceil(ni * nj / lanes)`` neurons (with ``i``
    there, a 6 x 6 block on 4 lanes would put 10 neurons in one bank and phase F would need 10 cycles,
    not 9)."""
    r = ni % lanes
    return [i % lanes for i in range(ni - r)] + [(t * lanes) // r for t in range(r)]


def product_banks(ni: int, nj: int, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Bank and word of every neuron ``(i, j)`` of an ``ni x nj`` product block (section 4.3).

    Bank ``(j + s_i) mod lanes`` (:func:`bank_shifts`); word ``P[i, bank] + j // lanes``, where
    ``P[i, l]`` counts the neurons of bank ``l`` in rows ``0 .. i-1``: each bank is filled row by row
    from word 0, so the block takes words ``0 .. ceil(ni * nj / lanes) - 1`` of every bank. Row ``i``
    group ``g`` (``j`` in ``g*lanes .. g*lanes + lanes - 1``) and column ``j`` group ``h`` (``i`` in
    ``h*lanes ..``) each touch every bank at most once: one cycle per group.
    """
    s = np.asarray(bank_shifts(ni, lanes), np.int64)
    jj = np.arange(nj)
    bank = (jj[None, :] + s[:, None]) % lanes
    per_row = np.stack([(bank == lane).sum(axis=1) for lane in range(lanes)], axis=1)  # (ni, lanes)
    prefix = np.concatenate([np.zeros((1, lanes), np.int64), np.cumsum(per_row, axis=0)[:-1]])
    addr = prefix[np.arange(ni)[:, None], bank] + jj[None, :] // lanes
    return bank, addr


def membrane_order(hw: HardwareConfig, piece: PieceInit) -> np.ndarray:
    """The local neuron at each membrane position ``word * lanes + lane``, ``-1`` where none.

    Local order (``word * lanes + lane = local``) except in pieces fed by a product (``product``
    pieces, and ``mbe`` and ``output`` pieces with the two operand slots), whose membranes sit in the
    skewed banks of :func:`product_banks` (lane ``l`` of word ``w`` is word ``w`` of bank ``l``; an
    ``mbe`` piece's ``X`` here and each basis block at the same positions of its own words). The
    parameter SRAM uses the same positions; the benches map the membranes back through it.
    """
    return _order(hw, any(s.kind == SLOT_CODES["product_a"] for s in piece.slots), piece.n, piece.geometry)


def neuron_positions(hw: HardwareConfig, piece) -> list[int]:
    """Membrane position (``word * lanes + lane``) of each local neuron of a program's ``piece``."""
    order = _order(hw, any(s.kind == "product_a" for s in piece.slots), piece.n, piece.geometry)
    pos = np.empty(piece.n, np.int64)
    pos[order[order >= 0]] = np.flatnonzero(order >= 0)
    return pos.tolist()


def _order(hw: HardwareConfig, product: bool, n: int, geometry: dict) -> np.ndarray:
    lanes, gmax = hw.core.lanes, hw.core.neurons // hw.core.lanes
    order = np.full(gmax * lanes, -1, np.int64)
    if product and n:
        ni, nj = geometry["i1"] - geometry["i0"], geometry["j1"] - geometry["j0"]
        bank, addr = product_banks(ni, nj, lanes)
        order[(addr * lanes + bank).reshape(-1)] = np.arange(ni * nj)
    else:
        order[:n] = np.arange(n)
    return order


def slot_bits(hw: HardwareConfig) -> int:
    """Width of a flit's slot field."""
    return index_bits(hw.core.slots)


def sum_positions(program: Program, piece_id: int) -> list[int]:
    """Position (``word * lanes + lane`` of the core's ``dbg_saddr`` space) of each element of the
    simulator's ``StepTrace.sums`` for the piece: the running payload sums of a graded product
    (``Abar[i, c]`` at word ``c * ceil(|I|/lanes) + i // lanes``, then ``Bbar[c, j]`` at word
    ``C * ceil(|I|/lanes) + c * ceil(|J|/lanes) + j // lanes``, :func:`~spikeforge.rtl.core.count_words`
    in all) or of a graded max-pool (``C[j, w]`` at word ``w * ceil(n/lanes) + j // lanes``), then the
    output-shift words of MBE units with a split or shift, unit ``j`` at its membrane position."""
    piece = program.pieces[piece_id]
    lanes = program.hardware.core.lanes
    out: list[int] = []
    words = 0  # words of the sums before the shift memory
    if piece.kind != "maxpool" and piece_init(program, piece_id).graded_sums:
        g = piece.geometry
        ni, nj = g["i1"] - g["i0"], g["j1"] - g["j0"]
        nc = int(program.graph.projections[piece.slots[0].proj].a_index.shape[2])
        gi, gj = -(-ni // lanes), -(-nj // lanes)
        out += [(c * gi + i // lanes) * lanes + i % lanes for i in range(ni) for c in range(nc)]
        out += [(nc * gi + c * gj + j // lanes) * lanes + j % lanes for c in range(nc) for j in range(nj)]
        words = max(1, nc * (gi + gj))
    if piece.kind == "maxpool":  # counts, or payload sums when graded
        k2, groups = program.graph.projections[piece.slots[0].proj].kernel ** 2, -(-piece.n // lanes)
        out += [(w * groups + j // lanes) * lanes + j % lanes for j in range(piece.n) for w in range(k2)]
    if piece.kind == "mbe":
        pop = program.graph.population(piece.population)
        if pop.split != "none" or pop.shift_base:
            out += [words * lanes + q for q in neuron_positions(program.hardware, piece)]
    return out


def history_bits(program: Program, piece_id: int) -> int:
    """Bits of one unit's history entry the benches read: ``v_bits`` for payloads (an ``mbe`` piece,
    a max-pool of MBE payloads), else 1 (a spike)."""
    piece = program.pieces[piece_id]
    graded = piece.kind == "mbe" or (piece.kind == "maxpool" and program.graph.graded(piece.population))
    return program.hardware.core.v_bits if graded else 1


def membrane_positions(program: Program, piece_id: int) -> list[int] | None:
    """Where the benches read each membrane the simulator's trace lists (``word * lanes + lane``):
    :func:`neuron_positions`, except for ``mbe`` pieces, whose trace is their membrane SRAM of section
    4.5 (``X``, then one block of ``ceil(n/lanes) * lanes`` words per basis, zero past ``n``): read as
    laid out (``None``), or, fed by a product, block by block at the skewed banks' positions (the
    padding at the positions no unit uses, which stay 0)."""
    hw, piece = program.hardware, program.pieces[piece_id]
    if piece.kind != "mbe":
        return neuron_positions(hw, piece)
    if not any(s.kind == "product_a" for s in piece.slots):
        return None
    lanes = hw.core.lanes
    groups = -(-piece.n // lanes)
    block = np.asarray(neuron_positions(hw, piece) + [0] * (groups * lanes - piece.n))
    free = sorted(set(range(groups * lanes)) - set(block[: piece.n].tolist()))
    block[piece.n :] = free
    bases = int(program.graph.population(piece.population).bases)
    return [int(b * groups * lanes + q) for b in range(bases + 1) for q in block]


def readout_order(program: Program, piece_id: int) -> list[int]:
    """The local output neuron at each position (``word * lanes + lane``) of the words the host reads
    from an ``output`` piece: local order (``0 .. n-1``), or the skewed banks of an output fed by a
    product, ``-1`` where no neuron is (the host knows the block's layout and maps the words back)."""
    hw, piece = program.hardware, program.pieces[piece_id]
    banked = any(s.kind == "product_a" for s in piece.slots)
    order = _order(hw, banked, piece.n, piece.geometry)
    return order[: -(-piece.n // hw.core.lanes) * hw.core.lanes if banked else piece.n].tolist()
