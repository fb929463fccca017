"""Widths and flit formats shared by the core, its units, the routers and the array (``docs/architecture.md``
section 6): step and cycle counters, flit types, the MBE shift word, and the flit layouts."""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import FLIT_INDEX_BITS

__all__ = [
    "STEP_BITS",
    "CYCLE_BITS",
    "TYPE_SPIKE",
    "TYPE_GRADED",
    "TYPE_PARTIAL",
    "SHIFT_BITS",
    "flit_layout",
    "out_flit_layout",
]

#: bits of a time-step counter and of a cycle counter
STEP_BITS = 16
CYCLE_BITS = 32
TYPE_SPIKE, TYPE_GRADED, TYPE_PARTIAL = 0, 1, 2
#: bits of an MBE unit's output-shift word (section 4.5)
SHIFT_BITS = 7


def flit_layout(hw: HardwareConfig) -> data.StructLayout:
    """The part of a flit the core reads (section 6): ``type``, ``slot``, ``index``, ``payload``."""
    return data.StructLayout(
        {
            "type": unsigned(2),
            "slot": unsigned(index_bits(hw.core.slots)),
            "index": unsigned(FLIT_INDEX_BITS),
            "payload": signed(hw.core.v_bits),
        }
    )


def out_flit_layout(hw: HardwareConfig) -> data.StructLayout:
    """A whole flit (section 6), low to high: ``type``, ``slot``, ``index``, ``payload``, ``x``, ``y``."""
    where = {"x": unsigned(index_bits(hw.array.cols)), "y": unsigned(index_bits(hw.array.rows))}
    return data.StructLayout({**flit_layout(hw).members, **where})
