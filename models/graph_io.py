"""The SNN graph file format: ``.npz`` arrays plus a JSON header, independent of PyTorch.

Format ``spikeforge-snn-graph``, version 1. The JSON header (key ``__header__``) holds::

    {"format": "spikeforge-snn-graph", "version": 1,
     "timesteps": T, "weight_bits": 8, "v_bits": 24, "metadata": {...},
     "populations": [{"name", "kind", "shape", ...scalars}, ...],    # topological order
     "projections": [{"kind", "src"/"src_a"/"src_b", "dst", ...scalars}, ...]}

Integer arrays are stored as ``pop.<i>.<field>`` (``threshold``, ``bias``, ``v0``) and
``proj.<i>.<field>`` (MBE populations add ``vth``, ``reset``, ``intensity``, ``offset``; projections
``weight``, ``kernel``, ``a_index``, ``b_index``, ``out_index``), with
``i`` the item's position in its list. Scalars per kind: input ``value_bits``; neuron
``delay``; mbe ``x_lo``, ``x_hi``; conv ``stride``, ``padding``; pool ``kernel``, ``stride``; identity and product
``weight``; every projection ``delay`` (products: ``delay_a``, ``delay_b``). Documented for
users in ``docs/formats.md``.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FileFormatError, GraphError
from .graph import (
    ConvProjection,
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    MaxPoolPopulation,
    MBEPopulation,
    NeuronPopulation,
    OutputPopulation,
    PoolDenseProjection,
    PoolProjection,
    ProductProjection,
    SNNGraph,
)
from .npzio import read_npz, write_npz

__all__ = ["FORMAT", "VERSION", "save_graph", "load_graph"]

FORMAT = "spikeforge-snn-graph"
VERSION = 1

_POPULATIONS = {
    "input": InputPopulation,
    "neuron": NeuronPopulation,
    "maxpool": MaxPoolPopulation,
    "mbe": MBEPopulation,
    "output": OutputPopulation,
}
_PROJECTIONS = {
    "dense": DenseProjection,
    "conv": ConvProjection,
    "identity": IdentityProjection,
    "pool_dense": PoolDenseProjection,
    "pool": PoolProjection,
    "product": ProductProjection,
}


def _split(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Header entry of a population/projection; its arrays go into ``arrays``."""
    entry: dict[str, Any] = {"kind": obj.kind}
    for f in fields(obj):
        if f.name == "kind":
            continue
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{f.name}"] = value
        elif isinstance(value, tuple):
            entry[f.name] = list(value)
        else:
            entry[f.name] = value
    return entry


def save_graph(graph: SNNGraph, path: str | Path) -> None:
    """Write ``graph`` to ``path`` in the ``spikeforge-snn-graph`` format."""
    arrays: dict[str, np.ndarray] = {}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "timesteps": graph.timesteps,
        "weight_bits": graph.weight_bits,
        "v_bits": graph.v_bits,
        "metadata": graph.metadata,
        "populations": [_split(p, f"pop.{i}", arrays) for i, p in enumerate(graph.populations)],
        "projections": [_split(p, f"proj.{i}", arrays) for i, p in enumerate(graph.projections)],
    }
    write_npz(path, header, arrays)


def _build(entry: Any, prefix: str, arrays: dict[str, np.ndarray], table: dict[str, type], path: Path) -> Any:
    if not isinstance(entry, dict) or entry.get("kind") not in table:
        kind = entry.get("kind") if isinstance(entry, dict) else entry
        raise FileFormatError(f"{path}: {prefix} has unknown kind {kind!r}; expected one of {sorted(table)}.")
    cls = table[entry["kind"]]
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "kind" or not f.init:
            continue
        key = f"{prefix}.{f.name}"
        if key in arrays:
            kwargs[f.name] = arrays[key]
        elif f.name in entry:
            kwargs[f.name] = tuple(entry[f.name]) if f.name == "shape" else entry[f.name]
        elif f.default not in (MISSING, None):  # scalar with a default value
            continue
        else:
            raise FileFormatError(f"{path}: {prefix} ({entry['kind']}) lacks field {f.name!r}.")
    unknown = set(entry) - {f.name for f in fields(cls)}
    if unknown:
        raise FileFormatError(f"{path}: {prefix} has unknown field(s) {', '.join(sorted(unknown))}.")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise FileFormatError(f"{path}: {prefix} is incomplete ({exc}).") from None


def load_graph(path: str | Path) -> SNNGraph:
    """Read and validate a graph written by :func:`save_graph`.

    Raises
    ------
    FileFormatError
        Not a graph file, corrupt or truncated, another format version, missing fields.
    GraphError
        The file is well formed but the graph is inconsistent (shapes, widths, timing).
    """
    path = Path(path)
    header, arrays = read_npz(path, expected_format=FORMAT)
    if header.get("version") != VERSION:
        raise FileFormatError(
            f"{path}: graph format version {header.get('version')!r} is not supported (this SpikeForge "
            f"reads version {VERSION}); convert the model again with this version."
        )
    for key in ("timesteps", "weight_bits", "v_bits", "populations", "projections"):
        if key not in header:
            raise FileFormatError(f"{path}: the header lacks {key!r}.")
    if not isinstance(header["populations"], list) or not isinstance(header["projections"], list):
        raise FileFormatError(f"{path}: 'populations' and 'projections' must be lists.")
    try:
        pops = [_build(e, f"pop.{i}", arrays, _POPULATIONS, path) for i, e in enumerate(header["populations"])]
        projs = [_build(e, f"proj.{i}", arrays, _PROJECTIONS, path) for i, e in enumerate(header["projections"])]
        return SNNGraph(
            tuple(pops),
            tuple(projs),
            int(header["timesteps"]),
            int(header["weight_bits"]),
            int(header["v_bits"]),
            dict(header.get("metadata") or {}),
        )
    except GraphError as exc:
        raise GraphError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: malformed graph ({exc}).") from None
