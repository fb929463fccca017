"""Bit-vector helpers shared by the units: the lowest set bit of a vector as a handful of wide cells.

The encoders (section 4.1), the phase-P scan and the rounds feeder pick the lowest pending neuron,
entry or source every cycle. A chain of one multiplexer per bit (``with m.If(bits[j])`` from the
top) builds as many cells as the vector has bits; :func:`lowest_set` isolates the lowest set bit
(``x & -x``) and encodes it with one masked OR-reduce per index bit: the same function in a netlist
of a few wide cells.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal, Value

__all__ = ["lowest_set"]


def lowest_set(m: Module, bits: Value, name: str) -> Signal:
    """The index of the lowest set bit of ``bits`` (0 when none is set), combinationally.

    ``iso = bits & -bits`` (two's complement) keeps the lowest set bit alone; index bit ``b`` is
    whether it is at a position whose bit ``b`` is 1, ``(iso & M_b) != 0`` with ``M_b`` the mask of
    those positions.
    """
    n = len(bits)
    iso = Signal(n, name=f"{name}_iso")
    m.d.comb += iso.eq(bits & (~bits + 1)[:n])
    idx = Signal(range(max(2, n)), name=name)
    masks = [sum(1 << j for j in range(n) if j >> b & 1) for b in range(len(idx))]
    m.d.comb += idx.eq(Cat(*((iso & Const(mask, n)).any() for mask in masks)))
    return idx
