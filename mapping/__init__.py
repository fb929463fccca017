"""Hardware description and the compiler that maps SNN graphs onto a core array.

Reads :mod:`spikeforge.models` graphs; knows nothing of simulation or RTL. The hardware
contract it compiles for is ``docs/architecture.md``.
"""

from .compiler import compile
from .hardware import HardwareConfig, HardwareError, SweepSpec, load_hardware, load_sweep, parse_hardware
from .pieces import MappingError, Piece, Slot
from .program import MappingReport, Program, load_program, save_program

__all__ = [
    "HardwareConfig",
    "HardwareError",
    "MappingError",
    "MappingReport",
    "Piece",
    "Program",
    "Slot",
    "SweepSpec",
    "compile",
    "load_hardware",
    "load_program",
    "load_sweep",
    "parse_hardware",
    "save_program",
]
