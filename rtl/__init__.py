"""Amaranth RTL of the core array and its cocotb co-simulation against the simulator (``docs/rtl.md``).

Entry points: :func:`export_rtl` (SystemVerilog of the array, memory init files, manifest),
:func:`cosim_samples` / :func:`cosim_array` (the whole array on Icarus Verilog against the
simulator, cycle for cycle; a ``rounds`` program through :func:`cosim_rounds`) and :func:`cosim` /
:func:`cosim_core` (each core alone, replaying the flits the simulator delivered to it).

The names are imported on first use (PEP 562): every co-simulation starts a Python inside Icarus
that imports a bench (``spikeforge.rtl.bench_*``, which needs only cocotb), and importing this
package eagerly there would load Amaranth, numba and the simulator each time (about 2 s of CPU
per co-simulation).
"""

from __future__ import annotations

import importlib
import sys
import types

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

# which submodule defines each public name
_HOME = {
    **dict.fromkeys(
        (
            "ArrayReport",
            "CoreReport",
            "CosimReport",
            "SamplesReport",
            "cosim",
            "cosim_array",
            "cosim_core",
            "cosim_rounds",
            "cosim_samples",
            "require_icarus",
        ),
        "cosim",
    ),
    **dict.fromkeys(("CosimMismatch", "RtlError", "ToolMissingError"), "errors"),
    **dict.fromkeys(("export_rtl", "to_sv"), "export"),
    **dict.fromkeys(("check_hardware", "piece_init"), "piece"),
}


def __getattr__(name: str):
    """The public name ``name`` from its submodule, imported now (then cached in this module)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """This package's module type: importing the submodule ``cosim`` binds the package's ``cosim`` to
    the function of that name, not the submodule (what an eager ``from .cosim import cosim`` did)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "cosim" and isinstance(value, types.ModuleType):
            value = value.cosim
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
