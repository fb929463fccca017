"""Bit-vector helpers shared by the units, built as a handful of cells with few combinational edges.

The encoders (section 4.1), the phase-P scan and the rounds feeder pick the lowest pending neuron,
entry or source every cycle, and a swap context's encoder masks each routing entry's neuron range,
loaded at run time. A chain of one multiplexer or one comparator per bit builds as many cells as
the vector has bits. A shift by a run-time amount is one cell, but Amaranth's netlist check
(``check_comb_cycles``) walks an edge from every output bit to every input bit of it, ``O(n^2)``
per shifter, and so does a carry chain: with 256-neuron cores those edges were most of the time
to convert a swap array. :func:`lowest_set` and :func:`at_least` compute the same functions from
cells of a few bits each (a prefix OR in ``log2 n`` steps of constant shifts; a two-level
thermometer code).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal, Value

__all__ = ["lowest_set", "at_least"]


def _prefix_or(m: Module, bits: Value, name: str) -> Signal:
    """``p[j] = bits[0] | ... | bits[j]``, in ``ceil(log2 n)`` steps of constant shifts."""
    n = len(bits)
    p = bits
    step, k = 1, 0
    while step < n:
        q = Signal(n, name=f"{name}_or{k}")
        # a shift by a constant as a slice: a shift operator cell, even by a constant, has an edge
        # from every output bit to every input bit in the netlist
        m.d.comb += q.eq(p | Cat(Const(0, step), p[: n - step]))
        p, step, k = q, step * 2, k + 1
    return p


def lowest_set(m: Module, bits: Value, name: str) -> Signal:
    """The index of the lowest set bit of ``bits`` (0 when none is set), combinationally.

    ``iso[j] = bits[j] & ~(bits[0] | ... | bits[j-1])`` keeps the lowest set bit alone (the same as
    ``bits & -bits``, without a carry chain); index bit ``b`` is whether it is at a position whose
    bit ``b`` is 1, ``(iso & M_b) != 0`` with ``M_b`` the mask of those positions.
    """
    n = len(bits)
    seen = _prefix_or(m, bits, f"{name}_seen")
    iso = Signal(n, name=f"{name}_iso")
    m.d.comb += iso.eq(bits & ~Cat(Const(0, 1), seen[: n - 1]))
    idx = Signal(range(max(2, n)), name=name)
    masks = [sum(1 << j for j in range(n) if j >> b & 1) for b in range(len(idx))]
    m.d.comb += idx.eq(Cat(*((iso & Const(mask, n)).any() for mask in masks)))
    return idx


def at_least(m: Module, value: Value, n: int, name: str) -> Signal:
    """``n`` bits, bit ``j`` set when ``j >= value`` (unsigned; all clear when ``value >= n``).

    Two-level: with ``j = a * B + b`` and ``value = A * B + r`` (``B`` a power of two near
    ``sqrt(n)``), ``j >= value`` when ``a > A``, or ``a == A`` and ``b >= r``: two comparators per
    block and one per position in a block, instead of a comparator per bit or a shifter.
    """
    expr = Value.cast(value).as_unsigned()
    value = Signal(len(expr), name=f"{name}_value")  # one cell for the expression, not one per use
    m.d.comb += value.eq(expr)
    lb = max(1, (max(1, n - 1).bit_length() + 1) // 2)  # B = 2**lb
    block = 1 << lb
    hi, lo = value[lb:], value[:lb]
    ge_lo = Signal(block, name=f"{name}_lo")
    m.d.comb += ge_lo.eq(Cat(*(lo <= b for b in range(block))))
    na = -(-n // block)
    past = Signal(na, name=f"{name}_past")  # block a lies wholly at or past value (a > A)
    at = Signal(na, name=f"{name}_at")  # block a holds value (a == A)
    m.d.comb += [past.eq(Cat(*(hi < a for a in range(na)))), at.eq(Cat(*(hi == a for a in range(na))))]
    out = Signal(n, name=name)
    parts = []
    for a in range(na):
        width = min(block, n - a * block)
        parts.append(past[a].replicate(width) | (at[a].replicate(width) & ge_lo[:width]))
    m.d.comb += out.eq(Cat(*parts))
    return out
