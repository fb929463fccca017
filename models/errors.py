"""Errors SpikeForge raises for bad input: one sentence that says what is wrong and what to do.

Every error a user can cause derives from :class:`SpikeForgeError`; the command line prints its
message alone (no traceback) and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "SpikeForgeError",
    "ConversionError",
    "GraphError",
    "FileFormatError",
    "DatasetError",
]


class SpikeForgeError(Exception):
    """Base class of the errors caused by input: configuration, files, models, data."""


class ConversionError(SpikeForgeError):
    """A checkpoint or model cannot be converted to a spiking network."""


class GraphError(SpikeForgeError):
    """An SNN graph is inconsistent (shapes, widths, timing) or a run parameter is out of range."""


class FileFormatError(SpikeForgeError):
    """A file is not what it claims to be: corrupt, truncated, wrong format or version."""


class DatasetError(SpikeForgeError):
    """A data set file has missing keys, wrong shapes or values out of range."""
