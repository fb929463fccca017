"""Amaranth RTL of the core array and its cocotb co-simulation against the simulator (``docs/rtl.md``).

Entry points: :func:`export_rtl` (SystemVerilog, memory init files, manifest) and :func:`cosim`
(every core of a resident program replayed on Icarus Verilog and compared cycle for cycle).
"""

from .cosim import CoreReport, CosimReport, cosim, cosim_core, require_icarus
from .errors import CosimMismatch, RtlError, ToolMissingError
from .export import export_rtl, to_sv
from .piece import check_hardware, piece_init

__all__ = [
    "CoreReport",
    "CosimReport",
    "CosimMismatch",
    "RtlError",
    "ToolMissingError",
    "check_hardware",
    "cosim",
    "cosim_core",
    "export_rtl",
    "piece_init",
    "require_icarus",
    "to_sv",
]
