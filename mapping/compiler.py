"""``compile(graph, hardware) -> Program``: partition, plan, route, place.

1. :func:`~spikeforge.mapping.pieces.partition` cuts populations into core-sized pieces.
2. :func:`~spikeforge.mapping.plan.live_intervals` finds when each piece is live;
   :func:`~spikeforge.mapping.plan.choose_mode` picks ``resident``, ``swap`` or ``rounds``.
3. In ``resident`` and ``swap`` mode, :func:`~spikeforge.mapping.routing.build_routing` builds
   the multicast range tables and the traffic they imply, and
   :func:`~spikeforge.mapping.plan.place` places pieces to keep that traffic local. In
   ``rounds`` mode spikes go through DRAM and slices are balanced over the cores instead.
"""

from __future__ import annotations

from spikeforge.models.graph import SNNGraph

from .hardware import HardwareConfig
from .pieces import MappingError, partition
from .plan import Plan, assign_rounds, choose_mode, live_intervals, place
from .program import Program
from .routing import build_routing

__all__ = ["compile"]


def compile(graph: SNNGraph, hardware: HardwareConfig | None = None) -> Program:  # noqa: A001 (the documented name)
    """Map ``graph`` onto ``hardware`` (default: the 4 x 4 array).

    Raises
    ------
    MappingError
        Something of the graph cannot fit the hardware, named with the limit it hits.
    """
    hw = hardware or HardwareConfig()
    pieces = partition(graph, hw)
    live = live_intervals(graph, pieces, hw.core.spike_history_steps)
    mode = choose_mode(live, hw.array.cores)
    if mode == "rounds":
        core, timeline = assign_rounds(pieces, live, hw)
        routing, traffic = {}, {}
    else:
        routing, traffic = build_routing(graph, pieces, hw.core.routing_entries)
        core = place(pieces, live, traffic, hw)
        lists: list[list[int]] = [[] for _ in range(hw.array.cores)]
        for p in sorted(range(len(pieces)), key=lambda p: (live[p, 0], p)):
            lists[int(core[p])].append(p)
        timeline = tuple(tuple(t) for t in lists)
    program = Program(graph, hw, tuple(pieces), Plan(mode, core, live, timeline), routing, traffic)
    if mode != "resident":
        needed = sum(program.image_bytes(p) for p in pieces)
        capacity = hw.memory.dram_capacity_mib * 1024 * 1024
        if needed > capacity:
            raise MappingError(
                f"the program's images need {needed / 2**20:.1f} MiB of DRAM; [memory] dram_capacity_mib is "
                f"{hw.memory.dram_capacity_mib}."
            )
    return program
