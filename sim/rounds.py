"""One Numba call per inference for ``rounds`` mode without the trace.

:class:`~spikeforge.sim.engine.Simulator` ran each step's kernels from Python: on the 4096 ->
4096 layer that dispatch (about ten calls of 15-25 arrays each per step) and the per-step
allocations cost as much as a fifth of the run. :func:`run_rounds` runs every step's kernels,
in the same order with the same arguments (``round_rows``, ``gen_round_events`` applying events
where found, ``partial_sums``, ``fire``, ``round_timing``), inside one compiled loop; the traced
path keeps the per-step Python loop, and ``tests/test_sim.py`` holds the two to equal results.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import ST_SPK, fire, gen_round_events, partial_sums, round_rows, round_timing

__all__ = ["run_rounds"]


@njit(cache=True)
def run_rounds(tables, rounds, hw, x, state, counts, ring, other_slots, out, hist):
    """Simulate every step of one inference in ``rounds`` mode; returns ``(piece, step)`` of the
    first membrane out of range (phase F stops there) or ``(-1, -1)``, and the DRAM bytes moved.

    Parameters
    ----------
    tables : tuple of ndarray
        The lowered program (``Lowered``): pieces, slots, slot_piece, row_group_ptr,
        row_group_slots, row_group_fused, row_group_root, the scratch row, the ``moved`` mask of
        pieces whose sums ``round_rows`` moves, row_group_tw, row_group_tw_off, neurons, forward,
        params, lut, weights, inverse, pop_off, loc_local, ring_off, ring_depth, pop_size,
        pop_out_start, pop_graded.
    rounds : tuple of ndarray
        The rounds plan (``Simulator._rounds_tables``): core_ptr, units, unit_ptr, unit_pieces,
        lo, hi, b_in, b_out.
    hw : tuple of int
        T, steps, input_pop, lanes, weight_bits, v_bits, count_bits, v_lo, v_hi, pipeline cycles,
        DRAM latency, DRAM bytes per cycle, barrier cycles.
    x, state, counts, ring : ndarray
        The input, and the state, running counts and spike-history rings the kernels update.
    other_slots : bool or None
        ``True`` where slots other than dense and pool_dense exist (``gen_round_events`` applies
        their events), else ``None``: the call is then left out of the compiled code (it is the
        largest kernel; dense-only programs compile without it).
    out : tuple of ndarray
        Accumulated in place: piece_ops, piece_spikes, piece_clipped, stats; written per step:
        step_cycles, step_spikes, core_step (per step, per core busy cycles).
    hist : ndarray, shape (steps, sum of population sizes) or (0, 0)
        Where it has rows, every population's history entry of each step after phase F (the
        rasters of ``Simulator.run(..., record=True)``).

    Notes
    -----
    Step ``t``'s cycles are ``round_timing``'s end of the last write-back plus the barrier:
    ``step_cycles[t] = end(t) + barrier``, and the DRAM bytes are the sum of its transfers.
    """
    (pieces, slots, slot_piece, g_ptr, g_slots, g_fused, g_root, scratch, moved, tw, g_tw) = tables[:11]
    (neurons, forward, params, lut, weights, inverse, pop_off, loc_local) = tables[11:19]
    (ring_off, ring_depth, pop_size, pop_out_start, pop_graded) = tables[19:]
    core_ptr, units, unit_ptr, unit_pieces, win_lo, win_hi, b_in, b_out = rounds
    T, steps, input_pop, lanes, wbits, vbits, cbits, vlo, vhi, pipeline, latency, bpc, barrier = hw
    piece_ops, piece_spikes, piece_clipped, stats, step_cycles, step_spikes, core_step = out
    n_pieces = pieces.shape[0]
    piece_cost = np.zeros(n_pieces, np.int64)
    fire_cycles = np.zeros(n_pieces, np.int64)
    dram = 0
    for t in range(steps):
        piece_cost[:] = 0
        fire_cycles[:] = 0
        round_rows(
            t, T, pieces, slots, slot_piece, g_ptr, g_slots, g_fused, g_root, scratch, tw, g_tw, ring, ring_off,
            ring_depth, pop_size, pop_out_start, input_pop, pop_graded, x, weights, state, lanes, wbits, vbits,
            piece_cost, piece_ops, stats,
        )  # fmt: skip
        if other_slots is not None:  # typed None: the branch and its kernel are not compiled
            apply = (weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits)
            gen_round_events(
                t, T, pieces, slots, neurons, forward, ring, ring_off, ring_depth, pop_size, pop_out_start,
                input_pop, pop_graded, x, True, (*apply, piece_cost, piece_ops, stats),
            )  # fmt: skip
        partial_sums(t, T, pieces, state, lanes, vbits, stats, False, moved)
        before = stats[ST_SPK]
        bad = fire(
            t, T, pieces, params, neurons, state, counts, ring, ring_off, ring_depth, pop_size, lanes, vbits,
            vlo, vhi, piece_spikes, fire_cycles, stats, lut, piece_clipped,
        )  # fmt: skip
        if bad >= 0:
            return bad, t, dram
        step_spikes[t] = stats[ST_SPK] - before
        end, moved_bytes = round_timing(
            t, core_ptr, units, unit_ptr, unit_pieces, win_lo, win_hi, b_in, b_out, piece_cost, fire_cycles,
            pipeline, latency, bpc, core_step[t],
        )  # fmt: skip
        dram += moved_bytes
        step_cycles[t] = end + barrier
        if hist.shape[0] > 0:
            col = 0
            for i in range(pop_size.shape[0]):
                base = ring_off[i] + (t % ring_depth[i]) * pop_size[i]
                for j in range(pop_size[i]):
                    hist[t, col + j] = ring[base + j]
                col += pop_size[i]
    return -1, -1, dram
