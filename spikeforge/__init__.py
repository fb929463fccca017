"""SpikeForge: spiking-transformer conversion, mapping, simulation and RTL for neuromorphic arrays."""

__version__ = "0.1.0"
__all__ = ["__version__"]
