"""Initial words and sizes of a core's memories (``docs/architecture.md`` section 3), from a piece's images."""

from __future__ import annotations

import numpy as np

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.images import FLIT_INDEX_BITS, PIECE_CODES, SLOT_CODES, operand_field_bits

from .piece import REGISTER_BITS, PieceInit, membrane_order, operand_bases

__all__ = [
    "memory_words",
    "sum_words",
    "count_words",
    "banked_membrane",
    "hist_bits",
    "operand_field_bits",
    "operand_words",
    "INDEX_BITS",
    "index_words",
    "entries_per_word",
    "operand_word_bits",
    "index_word_bits",
    "index_depth",
]

#: Bits of a neuron index table entry (:func:`index_words`): a flit's ``index`` field (section 6).
INDEX_BITS = FLIT_INDEX_BITS


def _pack(values: np.ndarray, width: int) -> list[int]:
    """Rows of signed integers -> one word per row, element 0 in the low bits."""
    mask = (1 << width) - 1
    out = []
    for row in np.asarray(values, np.int64).tolist():
        word = 0
        for k, v in enumerate(row):
            word |= (int(v) & mask) << (k * width)
        out.append(word)
    return out


def memory_words(hw: HardwareConfig, p: PieceInit) -> list[tuple[str, list[int], int]]:
    """Initial words of the core's memories: ``(name, words, bits per word)`` for synapse, params, membrane.

    Synapse: ``axons * neurons / lanes`` words of ``lanes`` weights (a piece with running payload
    sums: :func:`sum_words` words of ``lanes`` ``v_bits`` sums, from the image); params: ``neurons / lanes``
    words of ``(threshold, bias)`` per lane; membrane: ``neurons / lanes`` words of ``v0`` per lane
    (zero for output pieces). Lane 0 in the low bits, two's complement. Parameters and membranes are
    at the positions of :func:`membrane_order` (lane ``l`` of membrane word ``w`` is word ``w`` of
    bank ``l`` in a product piece).
    """
    c = hw.core
    lanes, gmax = c.lanes, c.neurons // c.lanes
    syn_words = max(1, c.axons * c.neurons // lanes)
    syn_bits = lanes * c.weight_bits
    syn = _pack(p.synapse, c.weight_bits) + [0] * (syn_words - len(p.synapse))
    if p.graded_sums:  # running payload sums: the same SRAM as words of `lanes` v_bits sums
        depth = sum_words(hw, p)
        syn, syn_bits = (
            _pack(p.synapse[:depth], c.v_bits) + [0] * (depth - min(depth, len(p.synapse))),
            lanes * c.v_bits,
        )
    params = np.zeros((gmax * lanes, 3), np.int64)
    order = membrane_order(hw, p)  # product pieces: the skewed banks of section 4.3
    # (an mbe piece's tables follow its n unit words in p.params: only the n unit words go here, see `lut`)
    params[order >= 0] = p.params[order[order >= 0]]
    keeps_v0 = p.kind in (PIECE_CODES["neuron"], PIECE_CODES["product"])
    v0 = params[:, 2].copy() if keeps_v0 else np.zeros(gmax * lanes, np.int64)
    par = _pack(params[:, :2].reshape(gmax, lanes * 2), c.v_bits)
    mem = _pack(v0.reshape(gmax, lanes), c.v_bits)
    out = [
        ("synapse", syn, syn_bits),
        ("params", par, lanes * 2 * c.v_bits),
        ("membrane", mem, lanes * c.v_bits),
    ]
    if p.kind == PIECE_CODES["mbe"]:  # the table words of the parameter image, one per word
        out.append(("lut", _pack(p.params[p.n :], c.v_bits), 3 * c.v_bits))
    if operand_bases(p):  # fed by a product: its operands' index tables (section 4.3), its neurons'
        out.append(("operands", operand_words(hw, p), operand_word_bits(hw)))
        out.append(("index", index_words(hw, p), index_word_bits(hw)))
    return out


def operand_word_bits(hw: HardwareConfig) -> int:
    """Bits of an operand table word (:func:`operand_words`)."""
    f = operand_field_bits(hw)
    return entries_per_word(hw, 4 * f) * 4 * f


def index_word_bits(hw: HardwareConfig) -> int:
    """Bits of a neuron index table word (:func:`index_words`)."""
    return entries_per_word(hw, INDEX_BITS) * INDEX_BITS


def index_depth(hw: HardwareConfig) -> int:
    """Words of a neuron index table that holds any piece's (``neurons`` entries)."""
    return -(-hw.core.neurons // entries_per_word(hw, INDEX_BITS))


def entries_per_word(hw: HardwareConfig, bits: int) -> int:
    """Table entries of ``bits`` packed into one word of a table memory (and of its DRAM records): the
    most, a power of two, that fit the widest of a synapse word, a parameter word and a register
    record (words the DMA moves anyway), at least 1. Entry ``e`` is entry ``e % K`` of word ``e // K``."""
    c = hw.core
    width = max(c.lanes * c.weight_bits, c.lanes * 2 * c.v_bits, REGISTER_BITS)
    k = 1
    while 2 * k * bits <= width:
        k *= 2
    return k


def _pack_entries(entries: list[int], bits: int, k: int) -> list[int]:
    """``entries`` (each below ``2**bits``) packed ``k`` to a word, entry 0 in the low bits."""
    return [sum(e << (t * bits) for t, e in enumerate(entries[w : w + k])) for w in range(0, len(entries), k)]


def operand_words(hw: HardwareConfig, p: PieceInit) -> list[int]:
    """The operand index tables of a piece fed by a product (section 4.3) as the words of the core's
    operand table memory. Entry ``s`` holds, from bit 0, the ``(i, c)`` of the ``a`` source at offset
    ``s`` from the ``a`` table's lowest source index (register ``a_base``) and the ``(c, j)`` of the ``b``
    source at offset ``s`` from ``b_base``, :func:`operand_field_bits` each; an offset no source of a
    side names holds zeros there (the router delivers only the slot's sources). As many entries as
    the larger table's span of offsets, :func:`entries_per_word` to a word."""
    f = operand_field_bits(hw)
    bases = operand_bases(p)
    span = max([src - base + 1 for table, base in zip(p.operands, bases) for src in table] + [1])
    entries = [0] * span
    for side, (table, base) in enumerate(zip(p.operands, bases)):
        for src, (row, col) in table.items():
            entries[src - base] |= (row | col << f) << (2 * f * side)
    return _pack_entries(entries, 4 * f, entries_per_word(hw, 4 * f))


def index_words(hw: HardwareConfig, p: PieceInit) -> list[int]:
    """The neuron index table of a piece fed by a product: entry ``j`` is local neuron ``j``'s global
    index (the flit's ``index``, section 6) minus local 0's (register ``first``), modulo
    ``2**INDEX_BITS`` (the encoder's sum wraps back to the index), :func:`entries_per_word` to a word.
    A product's target neurons follow its ``out_index`` table, in any order: the encoder reads the
    entry of the neuron it sends."""
    mask = (1 << INDEX_BITS) - 1
    entries = [(int(v) - p.first) & mask for v in p.neurons] or [0]
    return _pack_entries(entries, INDEX_BITS, entries_per_word(hw, INDEX_BITS))


def sum_words(hw: HardwareConfig, p: PieceInit) -> int:
    """Words of ``lanes`` ``v_bits`` sums that hold a piece's running payload sums (at least 1): a
    graded product's :func:`count_words`, or ``kernel**2 * ceil(n/lanes)`` for a graded max-pool."""
    lanes = hw.core.lanes
    if p.kind == PIECE_CODES["maxpool"]:
        return max(1, p.slots[0].kernel ** 2 * -(-p.n // lanes))
    ni, nj = p.geometry["i1"] - p.geometry["i0"], p.geometry["j1"] - p.geometry["j0"]
    return max(1, count_words(ni, nj, p.contraction, lanes))


def count_words(ni: int, nj: int, nc: int, lanes: int) -> int:
    """Synapse words of a product block's running counts (section 4.3): ``Abar`` as ``C`` rows of
    ``ceil(|I|/lanes)`` words, then ``Bbar`` as ``C`` rows of ``ceil(|J|/lanes)`` words, ``lanes``
    counts per word."""
    return nc * (-(-ni // lanes) + -(-nj // lanes))


def banked_membrane(hw: HardwareConfig, p: PieceInit) -> bool:
    """Whether the piece's membrane SRAM is ``lanes`` banks with their own addresses: a product piece
    (section 4.3) or conv slots whose channel block is not a multiple of the lanes."""
    conv_cb = next((p.geometry["c1"] - p.geometry["c0"] for sl in p.slots if sl.kind == SLOT_CODES["conv"]), 0)
    return p.kind == PIECE_CODES["product"] or (hw.core.lanes > 1 and conv_cb % hw.core.lanes != 0)


def hist_bits(hw: HardwareConfig) -> int:
    """Bits per neuron of a history row: ``v_bits`` on a core that can hold MBE units (their payloads)."""
    return hw.core.v_bits if "mbe" in hw.core.neuron_models else 1
