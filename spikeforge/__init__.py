"""SpikeForge: spiking-transformer conversion, mapping, simulation and RTL for neuromorphic arrays."""

from pathlib import Path as _Path

__version__ = "0.1.0"
__all__ = ["__version__"]

# In a source checkout, ``python -m spikeforge`` run from the repository root imports this folder
# rather than the installed package; its subpackages are the sibling folders models/, mapping/,
# sim/ and rtl/, so put the repository root on this package's search path in that case only.
_root = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "models").is_dir() and (_root / "models" / "graph.py").is_file():
    __path__.append(str(_root))  # noqa: F821  (__path__ is defined for packages)
