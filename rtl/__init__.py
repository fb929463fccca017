"""Amaranth RTL of the core array and its cocotb co-simulation against the simulator (``docs/rtl.md``).

Entry points: :func:`export_rtl` (SystemVerilog of the array, memory init files, manifest),
:func:`cosim_samples` / :func:`cosim_array` (the whole array on Icarus Verilog against the
simulator, cycle for cycle; a ``rounds`` program through :func:`cosim_rounds`) and :func:`cosim` /
:func:`cosim_core` (each core alone, replaying the flits the simulator delivered to it).
"""

from .cosim import (
    ArrayReport,
    CoreReport,
    CosimReport,
    SamplesReport,
    cosim,
    cosim_array,
    cosim_core,
    cosim_rounds,
    cosim_samples,
    require_icarus,
)
from .errors import CosimMismatch, RtlError, ToolMissingError
from .export import export_rtl, to_sv
from .piece import check_hardware, piece_init

__all__ = [
    "ArrayReport",
    "SamplesReport",
    "cosim_array",
    "cosim_samples",
    "CoreReport",
    "CosimReport",
    "CosimMismatch",
    "RtlError",
    "ToolMissingError",
    "check_hardware",
    "cosim",
    "cosim_core",
    "cosim_rounds",
    "export_rtl",
    "piece_init",
    "require_icarus",
    "to_sv",
]
