"""Bit-exact memory images of a piece, as the RTL loads them (``docs/architecture.md`` section 3).

Every memory is a list of words; a word is a row of integer fields packed low field first, each
field two's complement in its width, the word little-endian in ``ceil(bits / 8)`` bytes.
:class:`MemoryImage` holds the field values and widths and turns them into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.models.graph import SNNGraph

from .hardware import HardwareConfig, index_bits
from .pieces import Piece, mbe_param_words

__all__ = [
    "MemoryImage",
    "SLOT_CODES",
    "PIECE_CODES",
    "MBE_SPLIT_CODES",
    "synapse_image",
    "param_image",
    "mbe_param_words",
    "slot_image",
    "routing_image",
    "FLIT_INDEX_BITS",
    "operand_field_bits",
    "index_table_bits",
]

#: Bits of a flit's ``index`` field (section 6), and of an entry of a neuron index table (section 4.3).
FLIT_INDEX_BITS = 24

SLOT_CODES = {"conv": 0, "dense": 1, "pool_dense": 2, "identity": 3, "product_a": 4, "product_b": 5, "pool": 6}
#: Codes of the MBE exponent splits in the parameter image (section 4.5).
MBE_SPLIT_CODES = {"none": 0, "exp2": 1, "inv": 2, "invsqrt": 3}
PIECE_CODES = {"neuron": 0, "partial": 1, "product": 2, "maxpool": 3, "output": 4, "mbe": 5}


@dataclass(frozen=True, eq=False)
class MemoryImage:
    """Words of one memory: ``fields[word, k]`` is field ``k``, ``widths[k]`` bits wide."""

    name: str
    fields: np.ndarray
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        # a value wider than its field would be packed with its high bits cut off (to_bytes), and a
        # core reading the image would see another number: refuse instead of losing it
        f = np.asarray(self.fields)
        if f.size == 0:
            return
        for k, width in enumerate(self.widths):
            col = f[:, k]
            lo, hi = int(col.min()), int(col.max())
            if lo < -(1 << (width - 1)) or hi >= 1 << width:
                bad = lo if lo < -(1 << (width - 1)) else hi
                raise ValueError(
                    f"the {self.name} image's field {k} holds {bad}, which does not fit its {width} bits "
                    "(docs/architecture.md section 3); a smaller core ([core] axons, neurons) or a smaller "
                    "layer keeps it in range."
                )

    @property
    def word_bits(self) -> int:
        """Bits per word."""
        return sum(self.widths)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed image."""
        return len(self.fields) * ((self.word_bits + 7) // 8)

    def to_bytes(self) -> bytes:
        """Pack: field 0 in the lowest bits of each word, words little-endian, back to back."""
        if self.fields.size == 0:
            return b""
        cols = []
        for k, width in enumerate(self.widths):
            v = self.fields[:, k].astype(np.int64) & ((1 << width) - 1)
            cols.append(((v[:, None] >> np.arange(width)) & 1).astype(np.uint8))
        bits = np.concatenate(cols, axis=1)
        pad = (-bits.shape[1]) % 8
        bits = np.pad(bits, ((0, 0), (0, pad)))
        return np.packbits(bits, axis=1, bitorder="little").tobytes()

    @staticmethod
    def from_bytes(name: str, data: bytes, widths: tuple[int, ...], signed: tuple[bool, ...]) -> MemoryImage:
        """Unpack bytes written by :meth:`to_bytes` (``signed[k]``: sign-extend field ``k``)."""
        word_bytes = (sum(widths) + 7) // 8
        raw = np.frombuffer(data, np.uint8).reshape(-1, word_bytes)
        bits = np.unpackbits(raw, axis=1, bitorder="little").astype(np.int64)
        out = np.zeros((raw.shape[0], len(widths)), np.int64)
        offset = 0
        for k, width in enumerate(widths):
            v = bits[:, offset : offset + width] @ (1 << np.arange(width, dtype=np.int64))
            if signed[k]:
                v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
            out[:, k] = v
            offset += width
        return MemoryImage(name, out, tuple(widths))


def _slot_words(graph: SNNGraph, piece: Piece, slot, lanes: int) -> np.ndarray:
    """Words of one slot: each row's weights padded to ``row_words * lanes`` lanes."""
    proj = graph.projections[slot.proj]
    if slot.kind == "conv":
        g = piece.geometry
        k = proj.kernel[g["c0"] : g["c1"], slot.lo : slot.hi]  # (cb, ci, kh, kw)
        block = k.transpose(1, 2, 3, 0).reshape(-1, k.shape[0])  # row (ci, u, v); lanes over local channels
    else:  # dense: one row per source index; pool_dense: one row per channel
        block = proj.weight[piece.neurons][:, slot.lo : slot.hi].T
    padded = np.zeros((block.shape[0], slot.row_words * lanes), np.int64)
    padded[:, : block.shape[1]] = block
    return padded.reshape(-1, lanes)


def synapse_image(graph: SNNGraph, piece: Piece, hw: HardwareConfig) -> MemoryImage:
    """Synapse SRAM words used by the piece's slots, from word 0, ``lanes`` weights each.

    Slot ``k``'s row ``r`` occupies words ``base + r * row_words`` onwards; lane ``l`` of a word
    holds the weight to local channel (conv) or local neuron ``group * lanes + l``.
    """
    core = hw.core
    words = [_slot_words(graph, piece, s, core.lanes) for s in piece.slots if s.kind in ("conv", "dense", "pool_dense")]
    data = np.concatenate(words) if words else np.zeros((0, core.lanes), np.int64)
    return MemoryImage("synapse", data, (core.weight_bits,) * core.lanes)


def param_image(graph: SNNGraph, piece: Piece, hw: HardwareConfig) -> MemoryImage:
    """Parameter SRAM: ``threshold``, ``bias``, ``v0`` per local neuron (zeros where unused).

    An ``mbe`` piece follows its ``n`` unit words (``0``, ``bias``, ``0``) with its tables:
    word ``n + b*T + k`` holds ``(VTH[b, k], R[b, k], DI[b, k])``, word ``n + N*T + b`` holds
    ``(C_b, 0, 0)`` and the last word ``(x_lo, x_hi, B)`` (``B``: the output bias). The exponent
    split is in basis 0's offset word: ``(C_0, split | split_bits << 2 | exp_bias << 8,
    shift_base)``, ``split`` coded 0 none, 1 exp2, 2 inv, 3 invsqrt (all zero without a split).
    """
    pop = graph.population(piece.population)
    vb = hw.core.v_bits
    f = np.zeros((piece.n, 3), np.int64)
    if piece.kind in ("neuron", "product"):
        f[:, 0], f[:, 1], f[:, 2] = pop.threshold[piece.neurons], pop.bias[piece.neurons], pop.v0[piece.neurons]
    elif piece.kind in ("output", "mbe"):
        f[:, 1] = pop.bias[piece.neurons]
    if piece.kind == "mbe":
        table = np.stack([pop.vth, pop.reset, pop.intensity], axis=-1).reshape(-1, 3)
        offsets = np.zeros((pop.bases, 3), np.int64)
        offsets[:, 0] = pop.offset
        exp_bias = pop.exp_bias if pop.split == "invsqrt" else 0  # only invsqrt reads it
        offsets[0, 1] = MBE_SPLIT_CODES[pop.split] | pop.split_bits << 2 | exp_bias << 8
        offsets[0, 2] = pop.shift_base
        f = np.concatenate([f, table, offsets, [[pop.x_lo, pop.x_hi, pop.out_bias]]]).astype(np.int64)
    return MemoryImage("params", f, (vb, vb, vb))


def slot_image(graph: SNNGraph, piece: Piece, hw: HardwareConfig) -> MemoryImage:
    """Slot registers: kind, lo, hi, first word, weight, source (C, H, W), kernel, stride, padding and
    words per row (``row_words``: the row stride, fixed by the slice geometry, so the last, narrower
    slice of a population keeps its full-width stride)."""
    widths = (3, 24, 24, 16, hw.core.v_bits, 16, 16, 16, 4, 4, 4, 4, 16)
    f = np.zeros((len(piece.slots), len(widths)), np.int64)
    for k, slot in enumerate(piece.slots):
        proj = graph.projections[slot.proj]
        src = graph.population(slot.src)
        shape = tuple(src.shape) + (1,) * (3 - len(src.shape)) if len(src.shape) <= 3 else (src.size, 1, 1)
        kh = kw = stride = pad = 0
        if slot.kind == "conv":
            _, _, kh, kw = proj.kernel.shape
            stride, pad = proj.stride, proj.padding
        elif slot.kind == "pool":
            kh = kw = stride = proj.kernel
        weight = proj.weight if slot.kind in ("identity", "product_a", "product_b") else 0
        f[k] = (SLOT_CODES[slot.kind], slot.lo, slot.hi, slot.base, weight, *shape, kh, kw, stride, pad, slot.row_words)
    return MemoryImage("slots", f, widths)


def routing_image(entries: np.ndarray, core_of: np.ndarray, hw: HardwareConfig) -> MemoryImage:
    """Routing table: ``first``, ``last``, ``x``, ``y``, ``slot``, ``delay`` per range entry."""
    core = hw.core
    nb = index_bits(core.neurons)
    widths = (
        nb,
        nb,
        index_bits(hw.array.cols),
        index_bits(hw.array.rows),
        index_bits(core.slots),
        index_bits(core.spike_history_steps),
    )
    f = np.zeros((len(entries), 6), np.int64)
    if len(entries):
        y, x = np.divmod(core_of[entries[:, 2]], hw.array.cols)
        f[:] = np.stack([entries[:, 0], entries[:, 1], x, y, entries[:, 3], entries[:, 4]], axis=1)
    return MemoryImage("routing", f, widths)


def operand_field_bits(hw: HardwareConfig) -> int:
    """Bits of a row or a column field of a product's operand table entry (section 4.3): enough for
    any block the core can hold (``|I|, |J| <= neurons``; ``C`` times a count row's words fits the
    synapse SRAM's ``axons * neurons / lanes`` words)."""
    c = hw.core
    return index_bits(max(c.neurons, c.axons * c.neurons // c.lanes))


def index_table_bits(graph: SNNGraph, piece: Piece, hw: HardwareConfig, encoder: bool = True) -> int:
    """Bits of the index tables loaded with a piece fed by a product (section 4.3), 0 for other pieces.

    The operand table maps an operand's source index to its place in the block, both operands in
    one entry: entry ``s`` holds the ``(i, c)`` of the ``a`` source ``lo_a + s`` and the ``(c, j)`` of
    the ``b`` source ``lo_b + s``, four fields of :func:`operand_field_bits`, for ``s`` from 0 to the
    larger span ``max(hi - lo + 1)`` of the two operands' source indices (``lo``, ``hi``: a side's
    lowest and highest). The neuron index table gives each of the ``n`` target neurons its global
    index, :data:`FLIT_INDEX_BITS` each (a product's targets follow its output index table, in any
    order); the encoder reads it, so without one (``encoder=False``: rounds mode, section 7, where
    spikes go to DRAM as rows) there is none::

        bits = span * 4 * operand_field_bits + encoder * n * FLIT_INDEX_BITS
    """
    slot = next((x for x in piece.slots if x.kind == "product_a"), None)
    if slot is None:
        return 0
    proj = graph.projections[slot.proj]
    g = piece.geometry
    a = proj.a_index[g["h"], g["i0"] : g["i1"], :]
    b = proj.b_index[g["h"], :, g["j0"] : g["j1"]]
    span = max(int(t.max()) - int(t.min()) + 1 for t in (a, b))
    return span * 4 * operand_field_bits(hw) + (piece.n * FLIT_INDEX_BITS if encoder else 0)
