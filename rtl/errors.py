"""Errors of RTL generation and co-simulation, each a sentence saying what to install or change."""

from __future__ import annotations

from spikeforge.models.errors import SpikeForgeError

__all__ = ["RtlError", "ToolMissingError", "CosimMismatch"]


class RtlError(SpikeForgeError):
    """The hardware description or program cannot be built by this RTL generator."""


class ToolMissingError(RtlError):
    """A tool the RTL flow needs (Yosys, Icarus Verilog, cocotb) is not installed."""


class CosimMismatch(RtlError):
    """The RTL and the simulator disagree (raised by callers that want an exception, not a report)."""
