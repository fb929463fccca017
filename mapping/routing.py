"""Multicast routing tables of range entries (``docs/architecture.md`` section 3).

For every source piece, one entry per (destination piece, slot) and per run of consecutive local
neurons that the slot needs: ``first``, ``last`` (local indices, inclusive), ``dest`` (piece id,
turned into core coordinates by the placement), ``slot`` (index in the destination's slot list)
and ``delay`` (the projection's delay buffer, in steps). The host has a table of the same form
for the input population (its "local" index is the flat input index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.models.graph import SNNGraph

from .connectivity import slot_sources
from .pieces import MappingError, Piece

__all__ = ["HOST", "RoutingTable", "build_routing", "runs"]

#: Source id of the host (the input population) in traffic matrices and tables.
HOST = -1


@dataclass(frozen=True, eq=False)
class RoutingTable:
    """Range entries of one source, ``entries[k] = (first, last, dest, slot, delay)``."""

    source: int
    entries: np.ndarray

    @property
    def flits_per_neuron(self) -> np.ndarray:
        """How many flits each local neuron's spike produces (its multicast fan-out)."""
        size = int(self.entries[:, 1].max()) + 1 if len(self.entries) else 0
        count = np.zeros(size + 1, np.int64)
        np.add.at(count, self.entries[:, 0], 1)
        np.add.at(count, self.entries[:, 1] + 1, -1)
        return np.cumsum(count)[:size]


def runs(mask: np.ndarray) -> np.ndarray:
    """``(first, last)`` pairs (inclusive) of the runs of True in a boolean vector."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return np.stack([edges[0::2], edges[1::2] - 1], axis=1) if edges.size else np.zeros((0, 2), np.int64)


def build_routing(
    graph: SNNGraph, pieces: list[Piece], max_entries: int
) -> tuple[dict[int, RoutingTable], dict[tuple[int, int], int]]:
    """Routing tables of every spiking piece and of the host, and the traffic between pieces.

    Returns
    -------
    tables : dict of source piece id (or :data:`HOST`) to :class:`RoutingTable`
    traffic : dict of (source, destination) piece ids to the number of source neurons routed
        (the flits one step with every source neuron firing would send)
    """
    by_pop: dict[str, list[Piece]] = {}
    for p in pieces:
        if p.kind != "partial":  # partial pieces send partial sums to their root, not spikes
            by_pop.setdefault(p.population, []).append(p)
    inputs = graph.input
    host_piece = Piece(HOST, inputs.name, "host", np.arange(inputs.size), (), HOST, 0)
    by_pop[inputs.name] = [host_piece]
    entries: dict[int, list[tuple[int, int, int, int, int]]] = {}
    traffic: dict[tuple[int, int], int] = {}
    for dst in pieces:
        for k, slot in enumerate(dst.slots):
            proj = graph.projections[slot.proj]
            if slot.kind == "product_a":
                delay = proj.delay_a
            elif slot.kind == "product_b":
                delay = proj.delay_b
            else:
                delay = proj.delay
            needed = np.zeros(graph.population(slot.src).size, bool)
            needed[slot_sources(graph, dst, slot)] = True
            for src in by_pop[slot.src]:
                mask = needed[src.neurons]
                count = int(mask.sum())
                if not count:
                    continue
                traffic[(src.id, dst.id)] = traffic.get((src.id, dst.id), 0) + count
                for first, last in runs(mask):
                    entries.setdefault(src.id, []).append((int(first), int(last), dst.id, k, delay))
    tables = {}
    for sid, rows in entries.items():
        if sid != HOST and len(rows) > max_entries:
            p = pieces[sid]
            raise MappingError(
                f"piece {sid} of population {p.population!r} needs {len(rows)} routing entries; "
                f"[core] routing_entries is {max_entries}. Raise it."
            )
        tables[sid] = RoutingTable(sid, np.array(sorted(rows, key=lambda r: (r[4], r[0], r[2], r[3])), np.int64))
    return tables, traffic
