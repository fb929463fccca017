"""When each piece is live, which core holds it, and what streams from DRAM.

Live interval of a piece (steps, end exclusive): from its population's ``in_start`` (or the first
arrival of an MBE population's early inputs) to the last
step its output encoder still sends (``out_start + T + 1 + max outgoing delay``); partial and
output pieces only during their input window.

Mode (``docs/architecture.md`` section 7): ``resident`` when every piece gets its own core,
``swap`` when the pieces live at any one step fit the array (cores take pieces one after
another, loading weights from DRAM in between), ``rounds`` otherwise.

Placement (resident and swap) is greedy then improved: pieces in order of their first live step
go to the free core that minimises traffic x Manhattan distance to the pieces already placed
(the host sits at core (0, 0)); then whole core timelines are swapped pairwise while that lowers
the total traffic-weighted distance. A placement that keeps heavy talkers adjacent shortens
paths and contention, the quantity that dominates NoC latency and energy. The naive baseline,
kept for comparison, fills cores in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.models.graph import SNNGraph

from .hardware import HardwareConfig
from .pieces import MappingError, Piece, first_arrivals
from .routing import HOST

__all__ = ["Plan", "live_intervals", "choose_mode", "place", "place_naive", "assign_rounds", "traffic_cost"]


@dataclass(frozen=True, eq=False)
class Plan:
    """Where and when: ``core[p]`` (row-major core index), ``live[p] = (start, end)``, and per core
    the pieces it holds in order (``timeline``); in rounds mode ``timeline`` lists each core's
    slices (root piece ids) in round order."""

    mode: str
    core: np.ndarray
    live: np.ndarray
    timeline: tuple[tuple[int, ...], ...]


def live_intervals(graph: SNNGraph, pieces: list[Piece], history_steps: int) -> np.ndarray:
    """``(n_pieces, 2)`` array of ``[start, end)`` live steps."""
    sched = graph.schedule()
    T = graph.timesteps
    out_delay: dict[str, int] = {}
    longest = (0, "", "", "")
    for proj in graph.projections:
        for src, delay in proj.sources:
            out_delay[src] = max(out_delay.get(src, 0), delay)
            longest = max(longest, (delay, proj.kind, src, proj.dst))
    delay, kind, src, dst = longest
    if delay + 1 > history_steps:
        raise MappingError(
            f"the {kind} projection {src!r} -> {dst!r} delays spikes by {delay} steps; the spike history keeps "
            f"{history_steps}. Raise [core] spike_history_steps to {delay + 1}."
        )
    first = first_arrivals(graph)  # an MBE population's early inputs make its pieces live earlier
    live = np.zeros((len(pieces), 2), np.int64)
    for p in pieces:
        w = sched[p.population]
        start = first[p.population]
        if p.kind in ("partial", "output"):
            live[p.id] = (start, w.in_start + T)
        else:
            live[p.id] = (start, w.out_start + T + 1 + out_delay.get(p.population, 0))
    return live


def _max_overlap(live: np.ndarray) -> int:
    events = np.concatenate(
        [np.stack([live[:, 0], np.ones(len(live))], 1), np.stack([live[:, 1], -np.ones(len(live))], 1)]
    )
    events = events[np.lexsort((events[:, 1], events[:, 0]))]  # ends before starts at the same step
    return int(np.cumsum(events[:, 1]).max()) if len(events) else 0


def choose_mode(live: np.ndarray, cores: int) -> str:
    """``resident``, ``swap`` or ``rounds`` (see the module docstring)."""
    if len(live) <= cores:
        return "resident"
    if _max_overlap(live) <= cores:
        return "swap"
    return "rounds"


def _distances(rows: int, cols: int) -> np.ndarray:
    y, x = np.divmod(np.arange(rows * cols), cols)
    return np.abs(y[:, None] - y[None, :]) + np.abs(x[:, None] - x[None, :])


def traffic_cost(core: np.ndarray, traffic: dict[tuple[int, int], int], cols: int) -> tuple[float, int]:
    """``(sum of traffic x hops, sum of traffic)``; the host is at core 0."""
    total = weight = 0
    for (s, d), w in traffic.items():
        cs = 0 if s == HOST else core[s]
        ys, xs = divmod(int(cs), cols)
        yd, xd = divmod(int(core[d]), cols)
        total += w * (abs(ys - yd) + abs(xs - xd))
        weight += w
    return float(total), int(weight)


def _timelines(order: list[int], live: np.ndarray, n_cores: int, pick, exclusive: bool) -> np.ndarray:
    """Give each piece a core free over its live interval (``exclusive``: a core for each piece)."""
    core = np.full(len(live), -1, np.int64)
    free_at = np.zeros(n_cores, np.int64)
    never = np.iinfo(np.int64).max
    for p in order:
        free = np.flatnonzero(free_at <= live[p, 0])
        if free.size == 0:
            raise MappingError("internal: no free core for a piece although the live pieces fit the array.")
        k = pick(p, free, core)
        core[p] = k
        free_at[k] = never if exclusive else live[p, 1]
    return core


def place_naive(pieces: list[Piece], live: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Baseline: pieces in id order to the first free core in row-major order."""
    order = sorted(range(len(pieces)), key=lambda p: (live[p, 0], p))
    exclusive = len(pieces) <= hw.array.cores
    return _timelines(order, live, hw.array.cores, lambda p, free, core: int(free[0]), exclusive)


def place(
    pieces: list[Piece], live: np.ndarray, traffic: dict[tuple[int, int], int], hw: HardwareConfig, passes: int = 8
) -> np.ndarray:
    """Traffic-aware placement: greedy construction, then pairwise swaps of core timelines."""
    n, cores, cols = len(pieces), hw.array.cores, hw.array.cols
    dist = _distances(hw.array.rows, cols)
    w = np.zeros((n + 1, n + 1))  # index n is the host
    for (s, d), v in traffic.items():
        a, b = (n if s == HOST else s), d
        w[a, b] += v
        w[b, a] += v

    def pick(p: int, free: np.ndarray, core: np.ndarray) -> int:
        placed = np.flatnonzero(core >= 0)
        cost = dist[np.ix_(free, core[placed])] @ w[p, placed] + dist[free, 0] * w[p, n]
        return int(free[np.argmin(cost)])  # ties: lowest row-major index

    order = sorted(range(n), key=lambda p: (live[p, 0], p))
    core = _timelines(order, live, cores, pick, exclusive=n <= cores)
    # core-to-core traffic, then improve the assignment of timelines to physical cores
    c = np.zeros((cores + 1, cores + 1))
    owner = np.append(core, cores)  # host -> virtual core index `cores`
    np.add.at(c, (owner[:, None].repeat(n + 1, 1), owner[None, :].repeat(n + 1, 0)), w)
    perm = np.arange(cores)  # timeline t sits on physical core perm[t]
    d_ext = np.zeros((cores + 1, cores + 1))
    d_ext[:cores, :cores] = dist
    d_ext[cores, :cores] = dist[0]
    d_ext[:cores, cores] = dist[:, 0]

    used = np.unique(core)
    for _ in range(passes):
        improved = False
        for a in used:
            for b in range(cores):
                if a == b:
                    continue
                pa, pb = perm[a], perm[b]
                full = np.append(perm, cores)
                diff = c[a] - c[b]
                diff[[a, b]] = 0.0  # the a-b term itself does not change
                delta = 2.0 * float(diff @ (d_ext[pb, full] - d_ext[pa, full]))
                if delta < -1e-9:
                    perm[a], perm[b] = pb, pa
                    improved = True
        if not improved:
            break
    return perm[core]


def assign_rounds(pieces: list[Piece], live: np.ndarray, hw: HardwareConfig) -> tuple[np.ndarray, tuple]:
    """Rounds mode: whole slices (root and partials) to cores, longest work first (LPT)."""
    cores = hw.array.cores
    units: dict[int, list[int]] = {}
    for p in pieces:
        units.setdefault(p.root, []).append(p.id)
    work = {
        r: sum((pieces[q].words + 1) * pieces[q].n for q in ids) * int(live[r, 1] - live[r, 0])
        for r, ids in units.items()
    }
    load = np.zeros(cores)
    core = np.zeros(len(pieces), np.int64)
    lists: list[list[int]] = [[] for _ in range(cores)]
    for r in sorted(units, key=lambda r: (-work[r], r)):
        k = int(np.argmin(load))
        load[k] += work[r]
        for q in units[r]:
            core[q] = k
        lists[k].append(r)
    timeline = tuple(tuple(sorted(lst)) for lst in lists)  # rounds in graph (topological) order
    return core, timeline
