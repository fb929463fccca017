"""The cycle-level simulator: runs a :class:`~spikeforge.mapping.Program` step by step.

Per step, Numba kernels generate the flits of phase I from the spike-history rings and routing
entries (in ``rounds`` mode: the events each round reads from DRAM), apply them to the
destination pieces, run the mesh cycle by cycle, exchange partial sums (phase P) and fire
(phase F). simpy orchestrates only coarse events: ``swap`` mode's piece loads on the DRAM
channel and the steps that wait for them; ``rounds`` mode's channel is the Numba arbiter
``kernels.round_timing`` (hundreds of thousands of round transfers per inference at ImageNet size).
Functional results do not depend on the timing: integer additions commute and every pair of
operand spikes of a product is counted once whatever the arrival order
(``docs/architecture.md`` section 4.3), so the spike rasters equal the reference executor's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from spikeforge.mapping import Program
from spikeforge.mapping.hardware import index_bits
from spikeforge.mapping.images import PIECE_CODES, SLOT_CODES
from spikeforge.models.errors import GraphError
from spikeforge.models.executor import check_input
from spikeforge.models.graph import signed_range

from . import kernels as K
from .counters import Counters
from .lowering import INT32_MAX, Lowered, P, S, aligned, lower, state_bound

__all__ = ["SampleRun", "Simulator", "StepTrace"]


@dataclass
class SampleRun:
    """One inference: logits, optional rasters, and the cycles of every step.

    ``trace`` (only with ``Simulator(..., trace=True)``): one :class:`StepTrace` per step.
    ``step_stall``: per step, the cycles it waited for DRAM loads before it started (``swap`` mode,
    section 7; zeros otherwise), not included in ``step_cycles``.
    """

    logits: np.ndarray
    step_cycles: np.ndarray
    rasters: dict[str, np.ndarray] = field(default_factory=dict)
    trace: list[StepTrace] = field(default_factory=list)
    step_stall: np.ndarray | None = None


@dataclass
class StepTrace:
    """What the RTL co-simulation compares at one step (``docs/architecture.md`` sections 4, 8).

    Flits of phase I (in generation order): source piece (``-1`` the host), destination piece,
    the slot's index in that piece, source index, value, graded (host) or spike, the cycle its
    encoder injected it and the first cycle the destination core can pop it (``-1``: rounds
    mode, no mesh). ``phase_i``, ``phase_p``: the cycles of phases I and P (0: none). Per core:
    the end of phase I for it (end of its last event + ``pipeline_cycles``; ``-1`` without events)
    and its busy cycles. Per piece: its phase-F cycles, membranes after phase F and, where it
    fired, its spikes (else ``None``). An ``mbe`` piece's membranes are its membrane SRAM of
    section 4.5 (``X``, then one block of ``ceil(n/lanes) * lanes`` words per basis, zero past
    ``n``) and its spikes the payloads ``P`` of its history entry. ``sums`` per piece: the other
    SRAM state of the MBE ViT's units that section 8 compares, else ``None``: the running payload
    sums of a graded product (``Abar`` row-major ``(|I|, C)``, then ``Bbar`` ``(C, |J|)``), a max-pool's
    running counts or payload sums (unit-major, ``kernel**2`` each; its membranes are its window maxima,
    which the contract keeps in the membrane SRAM), and an MBE unit's output-shift words.
    """

    step: int
    flit_src: np.ndarray
    flit_inject: np.ndarray
    flit_piece: np.ndarray
    flit_slot: np.ndarray
    flit_index: np.ndarray
    flit_value: np.ndarray
    flit_graded: np.ndarray
    flit_arrive: np.ndarray
    phase_i: int
    phase_p: int
    core_end: np.ndarray
    core_busy: np.ndarray
    fire_cycles: np.ndarray
    membranes: list[np.ndarray]
    spikes: list[np.ndarray | None]
    sums: list[np.ndarray | None] = field(default_factory=list)
    #: phase P's packets (section 4.2), in the order the partial pieces send them: source (partial)
    #: piece, destination (root) piece, local neuron, sum, and the cycle from the phase's cycle 0 its
    #: encoder injected it
    psum_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    psum_piece: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    psum_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    psum_value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    psum_inject: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


class Simulator:
    """Runs one program; reusable over many samples (counters accumulate).

    Parameters
    ----------
    program : Program
        The compiled network.
    trace : bool
        Record a :class:`StepTrace` per step in :attr:`SampleRun.trace` (for the RTL co-simulation;
        off by default: the kernels then compile without the trace).
    width : int or None
        Bits of the state words (membranes, accumulators, partial sums) the kernels add into: 32
        or 64. ``None`` (the default) takes 32 where :func:`~spikeforge.sim.lowering.state_bound`
        proves every such value fits int32 (twice the lanes per vector add), else 64; forcing 32
        on a program without that proof is refused. Results do not depend on the width.
    """

    def __init__(self, program: Program, trace: bool = False, width: int | None = None) -> None:
        self.program = program
        self.trace = trace
        self.hw = program.hardware
        bound = state_bound(program.graph)
        if width is None:
            width = 32 if bound <= INT32_MAX else 64
        elif width not in (32, 64):
            raise ValueError(f"width must be 32 or 64, got {width!r}.")
        elif width == 32 and bound > INT32_MAX:
            raise ValueError(f"32-bit state refused: this program's state words can reach {bound}, beyond int32.")
        self.width = width
        self.state_dtype = np.int32 if width == 32 else np.int64
        self.low: Lowered = lower(program)
        self.rounds = self._rounds_tables() if program.plan.mode == "rounds" else {}
        graph = program.graph
        self.T = graph.timesteps
        self.steps = graph.total_steps
        self.sched = graph.schedule()
        core = self.hw.core
        self.entry_bits = (
            2 * index_bits(core.neurons)
            + index_bits(self.hw.array.cols)
            + index_bits(self.hw.array.rows)
            + index_bits(core.slots)
            + index_bits(core.spike_history_steps)
        )
        self.counters = Counters(cores=self.hw.array.cores, samples=0)
        self.stats = np.zeros(len(K.STAT_FIELDS), np.int64)
        self.noc = np.zeros(4, np.int64)
        self.piece_spikes = np.zeros(len(program.pieces), np.int64)
        self.piece_clipped = np.zeros(len(program.pieces), np.int64)  # MBE units clamped to their range
        kinds = self.low.pieces[:, P["kind"]]
        # every sample starts from these states: membranes of neuron and product pieces at v0
        self.state0 = np.zeros(self.low.total_state, self.state_dtype)
        for p in np.flatnonzero((kinds == PIECE_CODES["neuron"]) | (kinds == PIECE_CODES["product"])):
            o, n = self.low.pieces[p, P["off"]], self.low.pieces[p, P["n"]]
            self.state0[o : o + n] = self.low.params[o : o + n, 2]
        self.has_mbe = bool((kinds == PIECE_CODES["mbe"]).any())
        # graded code by source piece, the host last (1: host value, 2: MBE payload, 0: spike);
        # both graded kinds are multiplied in
        payload = (kinds == PIECE_CODES["mbe"]) | (self.low.pieces[:, P["pool_graded"]] == 1)  # a max of payloads
        self.graded_src = np.append(np.where(payload, 2, 0), 1).astype(np.int8)
        self.piece_ops = np.zeros(len(program.pieces), np.int64)
        # the state word of each output neuron's accumulator (the logits), found once
        outs = [p for p in program.pieces if p.kind == "output"]
        self._n_logits = program.graph.output.size
        self._logit_words = (
            np.concatenate([np.asarray(p.neurons, np.int64) for p in outs]),
            np.concatenate([self.low.pieces[p.id, P["off"]] + np.arange(p.n, dtype=np.int64) for p in outs]),
        )
        # rounds mode without the trace: round_rows applies dense and pool_dense slots, and
        # gen_round_events the others (a kernel call per step saved where there are none)
        row_kinds = (SLOT_CODES["dense"], SLOT_CODES["pool_dense"])
        self.other_slots = not np.isin(self.low.slots[:, S["kind"]], row_kinds).all()
        # pieces whose partial sums round_rows forms in a scratch row and moves (phase P scans them)
        low = self.low
        moved = np.zeros(len(program.pieces), np.bool_)
        for g in np.flatnonzero(low.row_group_root >= 0):
            moved[low.slot_piece[low.row_group_slots[low.row_group_ptr[g] : low.row_group_ptr[g + 1]]]] = True
        scratch = aligned(np.zeros(int(low.row_group_fused.max(initial=0)), self.state_dtype))
        self._tables = (low.pieces, low.slots, low.slot_piece, low.row_group_ptr, low.row_group_slots)
        self._tables += (low.row_group_fused, low.row_group_root, scratch, moved, low.row_group_tw)
        self._tables += (low.row_group_tw_off, low.neurons, low.forward)
        self._tables += (low.params, low.lut, low.weights, low.inverse, low.pop_off, low.loc_local, low.ring_off)
        self._tables += (low.ring_depth, low.pop_size, low.pop_out_start, low.pop_graded)
        self.step_spikes_total = np.zeros(self.steps, np.int64)
        self.step_phases_total = np.zeros((self.steps, 3), np.int64)  # phase I, P, F cycles (not rounds mode)
        self.core_busy = np.zeros(self.hw.array.cores, np.int64)
        self.core_step_busy = np.zeros((self.steps, self.hw.array.cores), np.int64)  # per step, per core
        self.step_cycles_total = np.zeros(self.steps, np.int64)
        self.dram_bytes = 0
        self.dram_stall = 0
        self.cycles = 0

    # ------------------------------------------------------------------ one sample
    def run(self, x: np.ndarray, record: bool = False) -> SampleRun:
        """Simulate one input ``x`` (shape of the graph's input); return its logits and step cycles."""
        low, hw, T = self.low, self.hw, self.T
        prog = self.program
        xin = check_input(prog.graph, np.asarray(x)[None])[0]
        pieces = low.pieces
        state = aligned(self.state0)  # vector rows start on cache lines
        counts = np.zeros(low.total_counts, np.int64)
        # spikes are bits; MBE units emit v_bits payloads, so a graph with them keeps wide rings
        ring = np.zeros(int((low.ring_depth * low.pop_size).sum()), np.int64 if self.has_mbe else np.int8)
        core_of = pieces[:, P["core"]]
        n_cores = hw.array.cores
        lanes, wb, vb, cb = hw.core.lanes, hw.core.weight_bits, hw.core.v_bits, hw.core.count_bits
        vlo, vhi = signed_range(prog.graph.v_bits)
        barrier = hw.barrier_cycles
        has_partial = bool((pieces[:, P["kind"]] == 1).any())
        rasters = (
            {
                p.name: np.zeros((self.steps, p.size), np.int64 if prog.graph.graded(p.name) else np.int8)
                for p in prog.graph.populations
                if p.kind != "output"
            }
            if record
            else {}
        )
        step_cycles = np.zeros(self.steps, np.int64)
        step_spikes = np.zeros(self.steps, np.int64)
        phases = np.zeros((self.steps, 3), np.int64)
        core_step = np.zeros((self.steps, n_cores), np.int64)

        rounds = prog.plan.mode == "rounds"
        traces: list[StepTrace] = []
        if rounds and not self.trace:  # no flits, no event list: rounds read their sources from DRAM
            self._run_rounds(xin, state, counts, ring, step_cycles, step_spikes, core_step, rasters)
        else:
            for t in range(self.steps):
                arrive = core_end = inject = None
                piece_cost = np.zeros(len(pieces), np.int64)
                mem_args = (low.weights, low.inverse, low.pop_off, low.loc_local, state, counts, lanes, wb, vb, cb)
                if rounds:  # traced: the events as a list (the trace records every one)
                    f_dst, f_slot, f_s, f_val, f_graded = K.gen_round_events(
                        t,
                        T,
                        pieces,
                        low.slots,
                        low.neurons,
                        low.forward,
                        ring,
                        low.ring_off,
                        low.ring_depth,
                        low.pop_size,
                        low.pop_out_start,
                        low.input_pop,
                        low.pop_graded,
                        xin,
                    )
                    K.deliver(
                        f_dst,
                        f_slot,
                        f_s,
                        f_val,
                        f_graded,
                        pieces,
                        low.slots,
                        low.neurons,
                        *mem_args,
                        np.zeros(f_dst.size, np.int64),
                        piece_cost,
                        self.piece_ops,
                        self.stats,
                    )
                else:
                    f_src, f_dst, f_slot, f_s, f_val = K.gen_flits(
                        t,
                        T,
                        pieces,
                        low.route_src,
                        low.route_ptr,
                        low.neurons,
                        ring,
                        low.ring_off,
                        low.ring_depth,
                        low.pop_size,
                        low.input_pop,
                        xin,
                        self.entry_bits,
                        self.stats,
                    )
                    cost = np.zeros(f_dst.size, np.int64)
                    K.deliver(
                        f_dst,
                        f_slot,
                        f_s,
                        f_val,
                        self.graded_src[f_src],  # index -1 (the host) is the table's last entry
                        pieces,
                        low.slots,
                        low.neurons,
                        *mem_args,
                        cost,
                        piece_cost,
                        self.piece_ops,
                        self.stats,
                    )
                busy = core_step[t]
                phase_i = -1
                if prog.plan.mode != "rounds":
                    src_core = np.where(f_src < 0, n_cores, core_of[np.maximum(f_src, 0)])
                    order = np.argsort(src_core, kind="stable")
                    if self.trace:
                        arrive, core_end = np.full(f_dst.size, -1, np.int64), np.full(n_cores, -1, np.int64)
                        inject = np.full(f_dst.size, -1, np.int64)
                    phase_i = K.mesh_phase(
                        src_core[order],
                        core_of[f_dst[order]],
                        cost[order],
                        np.zeros(n_cores + 1, np.int64),
                        hw.array.rows,
                        hw.array.cols,
                        hw.noc.router_buffer_flits,
                        hw.core.input_fifo_events,
                        hw.core.pipeline_cycles,
                        busy,
                        self.noc,
                        arrive,
                        core_end,
                        inject,
                    )
                    if arrive is not None:
                        unsorted = np.empty_like(arrive)
                        unsorted[order] = arrive
                        arrive = unsorted
                        unsorted = np.empty_like(inject)
                        unsorted[order] = inject
                        inject = unsorted
                before = state.copy() if self.trace and has_partial and not rounds else None
                p_src, p_dst, scan = K.partial_sums(t, T, pieces, state, lanes, vb, self.stats)
                p_inject = np.full(p_src.size, -1, np.int64) if before is not None else None
                fire_cycles = np.zeros(len(pieces), np.int64)
                spikes_before = int(self.stats[K.ST_SPK])
                bad = K.fire(
                    t,
                    T,
                    pieces,
                    low.params,
                    low.neurons,
                    state,
                    counts,
                    ring,
                    low.ring_off,
                    low.ring_depth,
                    low.pop_size,
                    lanes,
                    vb,
                    vlo,
                    vhi,
                    self.piece_spikes,
                    fire_cycles,
                    self.stats,
                    low.lut,
                    self.piece_clipped,
                )
                if bad >= 0:
                    raise self._range_error(bad, t)
                step_spikes[t] = int(self.stats[K.ST_SPK]) - spikes_before
                if prog.plan.mode != "rounds":
                    cycles = phase_i + barrier
                    phases[t, 0] = phase_i
                    if has_partial and scan.any():
                        start = np.zeros(n_cores + 1, np.int64)
                        np.maximum.at(start, core_of[np.flatnonzero(scan)], scan[scan > 0])
                        order = np.argsort(core_of[p_src], kind="stable")
                        inj = None if p_inject is None else np.full(p_src.size, -1, np.int64)
                        phase_p = K.mesh_phase(
                            core_of[p_src][order],
                            core_of[p_dst][order],
                            np.ones(p_src.size, np.int64),
                            start,
                            hw.array.rows,
                            hw.array.cols,
                            hw.noc.router_buffer_flits,
                            hw.core.input_fifo_events,
                            hw.core.pipeline_cycles,
                            busy,
                            self.noc,
                            None,
                            None,
                            inj,
                        )
                        if inj is not None:
                            p_inject[order] = inj
                        phases[t, 1] = max(phase_p, int(scan.max()))
                        cycles += phases[t, 1] + barrier
                    np.add.at(busy, core_of, fire_cycles)
                    phases[t, 2] = _phase_f(core_of, fire_cycles, n_cores)
                    cycles += phases[t, 2] + barrier
                    step_cycles[t] = cycles
                else:
                    step_cycles[t] = self._round_step(t, piece_cost, fire_cycles, busy)
                if self.trace:
                    src = np.full(f_dst.size, -1, np.int64) if rounds else f_src
                    graded = f_graded if rounds else self.graded_src[f_src]
                    trace = self._step_trace(t, src, f_dst, f_slot, f_s, f_val, graded, arrive, core_end, phase_i)
                    traces.append(trace)
                    if inject is not None:
                        traces[-1].flit_inject[:] = inject
                    traces[-1].fire_cycles[:] = fire_cycles
                    if before is not None and p_src.size:
                        self._trace_partial(traces[-1], p_src, p_dst, before, p_inject)
                    traces[-1].phase_p = int(phases[t, 1])
                    traces[-1].core_busy[:] = busy
                    self._trace_state(traces[-1], t, state, ring, counts)
                if record:
                    for pop in prog.graph.populations:
                        if pop.kind == "output":
                            continue
                        w = self.sched[pop.name]
                        lo = 0 if pop.kind == "input" else w.out_start
                        if lo <= t < lo + T:
                            if pop.kind == "input":
                                rasters[pop.name][t] = xin
                            else:
                                i = low.pop_index[pop.name]
                                base = low.ring_off[i] + (t % low.ring_depth[i]) * low.pop_size[i]
                                rasters[pop.name][t] = ring[base : base + pop.size]
        step_stall = np.zeros(self.steps, np.int64)
        total = self._timeline(step_cycles, step_stall)
        logits = self._logits(state)
        self.counters.samples += 1
        self.cycles += total
        self.step_cycles_total += step_cycles
        self.step_spikes_total += step_spikes
        self.step_phases_total += phases
        self.core_busy += core_step.sum(axis=0)
        self.core_step_busy += core_step
        return SampleRun(logits=logits, step_cycles=step_cycles, rasters=rasters, trace=traces, step_stall=step_stall)

    def _run_rounds(self, xin, state, counts, ring, step_cycles, step_spikes, core_step, rasters) -> None:
        """``rounds`` mode without the trace: dense rows only in one call of :func:`~spikeforge.sim.kernels.run_rounds`,
        other programs through the same kernels step by step (:meth:`_rounds_by_step`)."""
        low, core, mem, prog = self.low, self.hw.core, self.hw.memory, self.program
        vlo, vhi = signed_range(prog.graph.v_bits)
        hw = (self.T, self.steps, low.input_pop, core.lanes, core.weight_bits, core.v_bits, core.count_bits)
        hw += (vlo, vhi, core.pipeline_cycles, mem.dram_latency_cycles, mem.dram_bytes_per_cycle)
        hw += (self.hw.barrier_cycles,)
        out = (self.piece_ops, self.piece_spikes, self.piece_clipped, self.stats, step_cycles, step_spikes, core_step)
        hist = np.zeros((self.steps, int(low.pop_size.sum())) if rasters else (0, 0), np.int64)
        r = self.rounds
        plan = (r["core_ptr"], r["units"], r["unit_ptr"], r["unit_pieces"], r["lo"], r["hi"], r["b_in"], r["b_out"])
        if self.other_slots:  # conv, product, pool or MBE events: the same kernels, called step by step
            bad, t, moved = self._rounds_by_step(plan, hw, xin, state, counts, ring, out, hist)
        else:  # dense rows only: one compiled loop over the steps
            bad, t, moved = K.run_rounds(self._tables, plan, hw, xin, state, counts, ring, out, hist)
        self.dram_bytes += int(moved)
        if bad >= 0:
            raise self._range_error(bad, t)
        for pop in prog.graph.populations if rasters else ():
            if pop.kind == "output":
                continue
            lo = 0 if pop.kind == "input" else self.sched[pop.name].out_start
            i = low.pop_index[pop.name]
            if pop.kind == "input":
                rasters[pop.name][lo : lo + self.T] = xin
            else:
                seg = hist[lo : lo + self.T, low.pop_off[i] : low.pop_off[i] + pop.size]
                rasters[pop.name][lo : lo + self.T] = seg

    def _rounds_by_step(self, plan, hw, xin, state, counts, ring, out, hist) -> tuple[int, int, int]:
        """:func:`~spikeforge.sim.kernels.run_rounds`'s loop in Python, for programs with events other than rows.

        Compiled into the one-call loop, ``gen_round_events`` (the largest kernel) cost about 9 s
        more Numba compilation on the ImageNet-size shape and ran slower there; one call per kernel
        per step costs little at that size (377 steps of tens of milliseconds each).
        """
        (pieces, slots, slot_piece, g_ptr, g_slots, g_fused, g_root, scratch, moved, tw, g_tw) = self._tables[:11]
        (neurons, forward, params, lut, weights, inverse, pop_off, loc_local) = self._tables[11:19]
        (ring_off, ring_depth, pop_size, pop_out_start, pop_graded) = self._tables[19:]
        T, steps, input_pop, lanes, wbits, vbits, cbits, vlo, vhi, pipeline, latency, bpc, barrier = hw
        piece_ops, piece_spikes, piece_clipped, stats, step_cycles, step_spikes, core_step = out
        apply = (weights, inverse, pop_off, loc_local, state, counts, lanes, wbits, vbits, cbits)
        n_pieces = pieces.shape[0]
        dram = 0
        for t in range(steps):
            piece_cost = np.zeros(n_pieces, np.int64)
            fire_cycles = np.zeros(n_pieces, np.int64)
            K.round_rows(
                t, T, pieces, slots, slot_piece, g_ptr, g_slots, g_fused, g_root, scratch, tw, g_tw, ring, ring_off,
                ring_depth, pop_size, pop_out_start, input_pop, pop_graded, xin, weights, state, lanes, wbits,
                vbits, piece_cost, piece_ops, stats,
            )  # fmt: skip
            K.gen_round_events(
                t, T, pieces, slots, neurons, forward, ring, ring_off, ring_depth, pop_size, pop_out_start,
                input_pop, pop_graded, xin, True, (*apply, piece_cost, piece_ops, stats),
            )  # fmt: skip
            K.partial_sums(t, T, pieces, state, lanes, vbits, stats, False, moved)
            before = int(stats[K.ST_SPK])
            bad = K.fire(
                t, T, pieces, params, neurons, state, counts, ring, ring_off, ring_depth, pop_size, lanes, vbits,
                vlo, vhi, piece_spikes, fire_cycles, stats, lut, piece_clipped,
            )  # fmt: skip
            if bad >= 0:
                return bad, t, dram
            step_spikes[t] = int(stats[K.ST_SPK]) - before
            end, moved_bytes = K.round_timing(
                t, *plan, piece_cost, fire_cycles, pipeline, latency, bpc, core_step[t],
            )  # fmt: skip
            dram += int(moved_bytes)
            step_cycles[t] = int(end) + barrier
            if hist.shape[0] > 0:
                col = 0
                for i in range(pop_size.shape[0]):
                    base = ring_off[i] + (t % ring_depth[i]) * pop_size[i]
                    hist[t, col : col + pop_size[i]] = ring[base : base + pop_size[i]]
                    col += pop_size[i]
        return -1, -1, dram

    # ------------------------------------------------------------------ opt-in trace
    def _step_trace(self, t, f_src, f_dst, f_slot, f_s, f_val, graded, arrive, core_end, phase_i) -> StepTrace:
        low = self.low
        nf = f_dst.size
        slot0 = low.pieces[f_dst, P["slot0"]] if nf else np.zeros(0, np.int64)
        n_cores, n_pieces = self.hw.array.cores, len(self.program.pieces)
        return StepTrace(
            step=t,
            flit_src=np.asarray(f_src, np.int64).copy(),
            flit_inject=np.full(nf, -1, np.int64),
            flit_piece=f_dst.copy(),
            flit_slot=(f_slot - slot0).astype(np.int64),
            flit_index=f_s.copy(),
            flit_value=f_val.copy(),
            flit_graded=np.asarray(graded, np.bool_).copy(),
            flit_arrive=arrive if arrive is not None else np.full(nf, -1, np.int64),
            phase_i=int(phase_i),
            phase_p=0,
            core_end=core_end if core_end is not None else np.full(n_cores, -1, np.int64),
            core_busy=np.zeros(n_cores, np.int64),
            fire_cycles=np.zeros(n_pieces, np.int64),
            membranes=[],
            spikes=[],
        )

    def _trace_partial(self, tr: StepTrace, p_src, p_dst, before: np.ndarray, inject: np.ndarray) -> None:
        """Phase P's packets (section 4.2): per partial piece, in piece order, one per non-zero sum in
        ascending local order (as :func:`~spikeforge.sim.kernels.partial_sums` lists them), from the
        sums ``before`` the phase moved them."""
        low = self.low
        index, value = np.empty(p_src.size, np.int64), np.empty(p_src.size, np.int64)
        at = 0
        for p in np.unique(p_src):  # ascending: the kernel's piece order
            o, n = low.pieces[p, P["off"]], low.pieces[p, P["n"]]
            nz = np.flatnonzero(before[o : o + n])
            index[at : at + nz.size], value[at : at + nz.size] = nz, before[o + nz]
            at += nz.size
        assert at == p_src.size and (p_src[:-1] <= p_src[1:]).all()
        tr.psum_src, tr.psum_piece, tr.psum_index, tr.psum_value = p_src.copy(), p_dst.copy(), index, value
        tr.psum_inject = inject.copy()

    def _trace_state(self, tr: StepTrace, t: int, state: np.ndarray, ring: np.ndarray, counts: np.ndarray) -> None:
        low, T = self.low, self.T
        lanes = self.hw.core.lanes
        for p in self.program.pieces:
            o, n = low.pieces[p.id, P["off"]], p.n
            key = "in_start" if p.kind == "maxpool" else "out_start"  # a max-pool unit emits in its input window
            out_s = low.pieces[p.id, P[key]]
            if p.kind == "mbe":
                # the membrane SRAM of section 4.5: X, then one lane-aligned block per basis (zero padded)
                nb, u0 = low.pieces[p.id, P["bases"]], low.pieces[p.id, P["cnt_off"]]
                g = -(-n // lanes) * lanes
                words = np.zeros((nb + 1, g), np.int64)
                words[0, :n] = state[o : o + n]
                words[1:, :n] = counts[u0 : u0 + n * nb].reshape(n, nb).T
                tr.membranes.append(words.reshape(-1))
            elif p.kind == "maxpool":
                # a max-pool's membrane SRAM holds its window maxima (M_prev when graded; section 3)
                mx = low.pieces[p.id, P["cnt_off"]] + low.pieces[p.id, P["cnt_len"]] - 2 * n
                tr.membranes.append(counts[mx : mx + n].astype(np.int64))
            else:
                tr.membranes.append(state[o : o + n].astype(np.int64))
            tr.sums.append(self._trace_sums(p, counts))
            if p.kind in ("neuron", "product", "maxpool", "mbe") and out_s <= t < out_s + T:
                i = low.pop_index[p.population]
                base = low.ring_off[i] + (t % low.ring_depth[i]) * low.pop_size[i]
                tr.spikes.append(ring[base + p.neurons].astype(np.int64))  # mbe: the payloads P
            else:
                tr.spikes.append(None)

    def _trace_sums(self, p, counts: np.ndarray) -> np.ndarray | None:
        """A piece's graded running sums, graded max-pool maxima and MBE shift words (``StepTrace.sums``)."""
        row = self.low.pieces[p.id]
        vbits = self.hw.core.v_bits
        parts = []
        if self.program.has_product(p) and row[P["pc_bits"]] == vbits:  # running payload sums (4.3)
            g = p.geometry
            o, size = row[P["pc_off"]], (g["i1"] - g["i0"] + g["j1"] - g["j0"]) * row[P["pc_c"]]
            parts.append(counts[o : o + size])
        if p.kind == "maxpool":  # the running counts or payload sums (the maxima are the membranes)
            o = row[P["cnt_off"]]
            parts.append(counts[o : o + row[P["cnt_len"]] - 2 * p.n])
        if p.kind == "mbe" and (row[P["split"]] or row[P["shift_base"]]):
            o = row[P["cnt_off"]] + p.n * row[P["bases"]]
            parts.append(counts[o : o + p.n])
        return np.concatenate(parts).astype(np.int64) if parts else None

    # ------------------------------------------------------------------ helpers
    def _range_error(self, piece: int, t: int) -> GraphError:
        name, bits = self.program.pieces[piece].population, self.program.graph.v_bits
        return GraphError(f"membrane of population {name!r} left the {bits}-bit range at step {t}.")

    def _logits(self, state: np.ndarray) -> np.ndarray:
        dst, src = self._logit_words
        logits = np.zeros(self._n_logits, np.int64)
        logits[dst] = state[src]
        return logits

    def _round_step(self, t, per_piece, fire_cycles, busy) -> int:
        """Rounds mode: every core runs its live slices in turn through the shared DRAM channel."""
        r, mem = self.rounds, self.hw.memory
        end, moved = K.round_timing(
            t,
            r["core_ptr"],
            r["units"],
            r["unit_ptr"],
            r["unit_pieces"],
            r["lo"],
            r["hi"],
            r["b_in"],
            r["b_out"],
            per_piece,
            fire_cycles,
            self.hw.core.pipeline_cycles,
            mem.dram_latency_cycles,
            mem.dram_bytes_per_cycle,
            busy,
        )
        self.dram_bytes += int(moved)
        return int(end) + self.hw.barrier_cycles

    def _rounds_tables(self) -> dict[str, np.ndarray]:
        """Flat tables of the rounds plan: each core's slices in order, each slice's pieces, each
        piece's round window and DRAM bytes in and out (``Program.round_steps``, ``round_traffic``)."""
        prog = self.program
        n = len(prog.pieces)
        roots = np.array([p.root for p in prog.pieces], np.int64)
        lo, hi = np.zeros(n, np.int64), np.zeros(n, np.int64)
        b_in, b_out = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for p in prog.pieces:
            w = prog.round_steps(p)
            lo[p.id], hi[p.id] = w.start, w.stop
            b_in[p.id], b_out[p.id] = prog.round_traffic(p)
        lengths = [len(tl) for tl in prog.plan.timeline]
        return {
            "core_ptr": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "units": np.array([r for tl in prog.plan.timeline for r in tl], np.int64),
            "unit_ptr": np.concatenate([[0], np.cumsum(np.bincount(roots, minlength=n))]).astype(np.int64),
            "unit_pieces": np.argsort(roots, kind="stable").astype(np.int64),
            "lo": lo,
            "hi": hi,
            "b_in": b_in,
            "b_out": b_out,
        }

    def _timeline(self, step_cycles: np.ndarray, step_stall: np.ndarray) -> int:
        """Total cycles of one inference: steps back to back; in swap mode a step also waits for the
        DRAM loads of the pieces that become live in it (simpy: loads queue on one channel); each
        step's wait goes to ``step_stall``."""
        prog = self.program
        if prog.plan.mode != "swap":
            return int(step_cycles.sum())
        mem = self.hw.memory
        live = prog.plan.live
        env = simpy.Environment()
        dram = simpy.Resource(env, capacity=1)
        # loaders waiting for the end of a step; woken in core order, so that requests made at the
        # same step end reach the channel lower core index first (section 7)
        waiting: dict[int, list[tuple[int, simpy.Event]]] = {}
        loaded = {p.id: env.event() for p in prog.pieces}

        def loader(core, timeline):
            prev_end = 0
            for pid in timeline:
                if prev_end > 0:
                    wake = env.event()
                    waiting.setdefault(prev_end - 1, []).append((core, wake))
                    yield wake  # the previous piece's last live step is over
                nbytes = prog.image_bytes(prog.pieces[pid])
                with dram.request() as req:
                    yield req
                    yield env.timeout(mem.dram_latency_cycles + -(-nbytes // mem.dram_bytes_per_cycle))
                self.dram_bytes += nbytes
                loaded[pid].succeed()
                prev_end = int(live[pid, 1])

        def stepper():
            for t in range(self.steps):
                starting = [loaded[p] for p in range(len(prog.pieces)) if live[p, 0] == t]
                before = env.now
                if starting:
                    yield env.all_of(starting)
                self.dram_stall += int(env.now - before)
                step_stall[t] = int(env.now - before)
                yield env.timeout(int(step_cycles[t]))
                for _, wake in sorted(waiting.pop(t, []), key=lambda w: w[0]):
                    wake.succeed()

        for core, timeline in enumerate(prog.plan.timeline):
            if timeline:
                env.process(loader(core, timeline))
        env.process(stepper())
        env.run()
        return int(env.now)

    # ------------------------------------------------------------------ totals
    def totals(self) -> Counters:
        """Counters of every sample run so far."""
        c = self.counters
        s = dict(zip(K.STAT_FIELDS, self.stats.tolist()))
        c.spikes, c.synaptic_ops, c.macs, c.neuron_updates = (
            s["spikes"],
            s["synaptic_ops"],
            s["macs"],
            s["neuron_updates"],
        )
        c.payload_macs = s["payload_macs"]
        c.sram_read_bits = {
            "synapse": s["syn_read"],
            "membrane": s["mem_read"],
            "params": s["par_read"],
            "history": s["hist_read"],
            "routing": s["route_read"],
            "counts": s["cnt_read"],
        }
        c.sram_write_bits = {
            "synapse": 0,
            "membrane": s["mem_write"],
            "params": 0,
            "history": s["hist_write"],
            "routing": 0,
            "counts": s["cnt_write"],
        }
        c.noc_flits, c.noc_hops_ew, c.noc_hops_ns, c.noc_stall_cycles = (int(v) for v in self.noc)
        c.dram_bytes = self.dram_bytes
        c.cycles = self.cycles
        return c


def _phase_f(core_of: np.ndarray, fire_cycles: np.ndarray, n_cores: int) -> int:
    """F(t): the longest core, a core updating its pieces one after another (section 4.4)."""
    per_core = np.bincount(core_of, weights=fire_cycles, minlength=n_cores)
    return int(per_core.max(initial=0))
