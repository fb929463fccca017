"""Cycle-level, event-driven simulator of a mapped program (``docs/simulator.md``).

Numba kernels do the per-event and per-neuron work inside cores and the cycle-level mesh;
simpy orchestrates the coarse events of weight streaming (``swap`` mode: piece loads queued on
the DRAM channel, steps waiting for them); ``rounds`` mode's channel arbiter is a Numba kernel.
:func:`simulate` is the entry point; :class:`Simulator` runs one sample at a time for tests and
tools that want rasters.
"""

from .counters import MEMORIES, Counters
from .energy import (
    EnergyBreakdown,
    EnergyError,
    EnergyProfile,
    break_even,
    energy_breakdown,
    load_profile,
    shipped_profiles,
    spikes_per_synapse,
)
from .engine import SampleRun, Simulator
from .result import SimResult, format_summary
from .simulate import SimulationError, dense_equivalent_synapses, estimate_memory_bytes, simulate

__all__ = [
    "MEMORIES",
    "Counters",
    "EnergyBreakdown",
    "EnergyError",
    "EnergyProfile",
    "break_even",
    "energy_breakdown",
    "load_profile",
    "shipped_profiles",
    "spikes_per_synapse",
    "SampleRun",
    "Simulator",
    "SimResult",
    "format_summary",
    "SimulationError",
    "dense_equivalent_synapses",
    "estimate_memory_bytes",
    "simulate",
]
