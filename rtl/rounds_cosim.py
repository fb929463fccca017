"""Co-simulation of ``rounds`` programs: :func:`rounds_spec` turns the simulator's trace into the
rounds bench's transactions (:mod:`spikeforge.rtl.bench_rounds`: the DRAM's state at every barrier,
cycles, busy counts, logits) and :func:`cosim_rounds` runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeforge.mapping import Program
from spikeforge.sim import Simulator

from .array_cosim import ArrayReport
from .core import SHIFT_BITS
from .errors import RtlError
from .icarus import _bench_in, _design_sv
from .piece import (
    membrane_positions,
    neuron_positions,
    sum_positions,
)

__all__ = [
    "rounds_spec",
    "cosim_rounds",
]


def rounds_spec(program: Program, plan, run, x: np.ndarray) -> dict:
    """The rounds bench's transactions from a simulator run with ``trace=True``: the host's input
    words for the DRAM, each step's cycles, every piece's membranes and spikes at every barrier with
    where the DRAM keeps them, every core's busy cycles, and the logits."""
    from spikeforge.models.executor import check_input

    hw = program.hardware
    c = hw.core
    lanes, vb = c.lanes, c.v_bits
    xin = check_input(program.graph, np.asarray(x)[None])[0].astype(np.int64)
    per = plan.host_per_word
    xin = np.concatenate([xin, np.zeros(plan.host_words * per - xin.size, np.int64)])
    mask = (1 << vb) - 1
    host = [
        [plan.host_base + g, sum((int(v) & mask) << (q * vb) for q, v in enumerate(xin[g * per : g * per + per]))]
        for g in range(plan.host_words)
    ]
    core_of = np.asarray(program.plan.core)
    pids = sorted(plan.state_base)
    unit = {u.piece: u for us in plan.units.values() for u in us}
    counts = _running_counts(program, run, len(run.trace))
    cores = sorted(plan.units)
    steps = []
    chunks = [p.id for p in program.pieces if p.kind == "partial"]
    for tr in run.trace:
        # a partial chunk keeps no state in rounds mode: its events go into its root's accumulators,
        # which the bench compares; the simulator moves its sums there too (phase P), leaving it zero
        for pid in chunks:
            if np.any(tr.membranes[pid]):
                raise RtlError(
                    f"the simulator's trace holds non-zero partial sums of piece {pid} at the barrier of step "
                    f"{tr.step}; section 8 has them zero and the rounds-mode RTL keeps none, so it cannot compare them."
                )
        pieces = []
        for pid in pids:
            spikes = tr.spikes[pid]
            u = unit[pid]
            pieces.append(
                {
                    "piece": pid,
                    "core": int(core_of[pid]),
                    "n": program.pieces[pid].n,
                    # a banked piece's membranes lie at its bank positions (word * lanes + lane); an mbe
                    # piece's are X and its basis blocks, as laid out or at the banks' positions
                    "positions": membrane_positions(program, pid),
                    "mem_words": u.n_mem,
                    "row_bits": u.row_bits,
                    "state_base": plan.state_base[pid],
                    "membranes": [int(v) for v in tr.membranes[pid]],
                    "spike_base": plan.spike_base.get(pid, -1),
                    "spikes": None if spikes is None or pid not in plan.spike_base else [int(v) for v in spikes],
                    # the state words after its membranes: a product's running counts (4.3), a max-pool's
                    # counts or payload sums (4.4), a graded product's payload sums, MBE shift words (4.5)
                    "counts": counts[pid][tr.step]
                    if pid in counts and not u.graded_sums
                    else _state_words(program, u, tr.sums[pid]),
                }
            )
        steps.append(
            {
                "t": tr.step,
                "cycles": int(run.step_cycles[tr.step]),
                "pieces": pieces,
                "busy": [[k, int(tr.core_busy[k])] for k in cores],
            }
        )
    readout = [
        {
            "piece": p.id,
            "state_base": plan.state_base[p.id],
            # a banked output (fed by a graded product) keeps logit j at its bank position
            "positions": neuron_positions(hw, p) if unit[p.id].banked else None,
            "outputs": [int(i) for i in p.neurons],
            "logits": [int(run.logits[i]) for i in p.neurons],
        }
        for p in program.pieces
        if p.kind == "output"
    ]
    return {
        "lanes": lanes,
        "v_bits": vb,
        "barrier": hw.barrier_cycles,
        "spike_shift": plan.spike_shift,
        "ring_shift": plan.ring_shift,
        "width": plan.width,
        "host": host,
        "steps": steps,
        "readout": readout,
    }


def _state_words(program: Program, u, sums: np.ndarray | None) -> list[int] | None:
    """The DRAM words of a round's state after its membranes (``RoundUnit`` ``u``) from the simulator's
    ``StepTrace.sums``: a spiking max-pool's counts (``count_bits`` fields) or a graded product's or
    max-pool's payload sums (``v_bits``), ``n_count`` words, then an mbe piece's shift words
    (``SHIFT_BITS``), each value in field ``lane`` of the word where
    :func:`~spikeforge.rtl.piece.sum_positions` places it (``word * lanes + lane``); ``None`` when
    the piece has no such state."""
    if sums is None or not u.n_count + u.n_shift:
        return None
    c = program.hardware.core
    words = [0] * (u.n_count + u.n_shift)
    for pos, v in zip(sum_positions(program, u.piece), sums):
        word, lane = divmod(pos, c.lanes)
        bits = SHIFT_BITS if word >= u.n_count else (c.v_bits if u.graded_sums else c.count_bits)
        words[word] |= (int(v) & ((1 << bits) - 1)) << (lane * bits)
    return words


def _running_counts(program: Program, run, steps: int) -> dict[int, list[list[int]]]:
    """Each product piece's count words at every barrier, from the operands' spike rasters: ``Abar[i,
    c]`` counts the spikes of ``a[A[h, i, c]]`` integrated so far (emitted at ``e``, integrated at
    ``e + 1 + delay_a``), ``Bbar`` likewise, in the RTL's layout (``rtl/core.py``: ``lanes`` counts
    of ``count_bits`` per word, ``Abar[:, c]`` rows then ``Bbar[c, :]`` columns, each row padded)."""
    c = program.hardware.core
    lanes, cb = c.lanes, c.count_bits
    out: dict[int, list[list[int]]] = {}
    for p in program.pieces:
        if p.kind != "product":
            continue
        proj = program.graph.projections[p.slots[0].proj]
        g = p.geometry
        rows = {}
        for src, idx, delay in (
            (proj.src_a, proj.a_index[g["h"], g["i0"] : g["i1"], :], proj.delay_a),
            (proj.src_b, proj.b_index[g["h"], :, g["j0"] : g["j1"]].T, proj.delay_b),
        ):
            raster = run.rasters[src].astype(np.int64)  # (steps, size): spikes emitted at each step
            got = np.zeros((steps, *idx.shape), np.int64)
            for t in range(steps):
                e = t - 1 - delay  # the emissions integrated at step t
                got[t] = (got[t - 1] if t else 0) + (raster[e][idx] if 0 <= e < raster.shape[0] else 0)
            rows[src is proj.src_a] = got  # (steps, |I| or |J|, C)
        words = []
        for t in range(steps):
            w = []
            for key in (True, False):  # Abar[:, c] then Bbar[c, :]: a row per c, lanes per word
                m = rows[key][t]
                for ci in range(m.shape[1]):
                    col = m[:, ci]
                    for h in range(-(-len(col) // lanes)):
                        part = col[h * lanes : h * lanes + lanes]
                        w.append(sum((int(v) & ((1 << cb) - 1)) << (q * cb) for q, v in enumerate(part)))
            words.append(w)
        out[p.id] = words
    return out


def cosim_rounds(
    program: Program,
    x: np.ndarray,
    workdir: str | Path | None = None,
    *,
    plan=None,
    dram_flip: tuple[int, int] | None = None,
    wb_flip: tuple[int, ...] | None = None,
    late_phase: int = 0,
    design_dir: str | Path | None = None,
) -> ArrayReport:
    """Co-simulate a ``rounds`` program (``rtl/rounds.py``) on input ``x`` against the simulator.

    The bench (``rtl/bench_rounds.py``) writes the input into the DRAM, starts every step and
    compares its cycles (every round's load, integration, firing and write-back on the one DRAM
    channel, and the barrier), every piece's membranes and spike rows as written back to the DRAM,
    every core's busy cycles and the logits. ``plan`` replaces the program's
    :class:`~spikeforge.rtl.rounds.RoundsPlan` (the mutation tests pass ``latency_delta``);
    ``dram_flip``, ``wb_flip`` and ``late_phase`` are :class:`~spikeforge.rtl.rounds.RoundsArray`'s hooks.
    The design is converted once for equal arguments and compiled in ``design_dir`` (default
    ``workdir``), where a later call with the same design reuses the build.

    Raises
    ------
    RtlError
        When the program is not in rounds mode or has a piece the rounds-mode RTL does not run.
    """
    from .rounds import RoundsArray, rounds_plan

    plan = plan if plan is not None else rounds_plan(program)
    run = Simulator(program, trace=True).run(x, record=True)
    spec = rounds_spec(program, plan, run, x)
    sv = _design_sv(
        RoundsArray, "core_array", program.hardware, plan, dram_flip=dram_flip, wb_flip=wb_flip, late_phase=late_phase
    )
    res = _bench_in(workdir, sv, spec, top="core_array", bench="bench_rounds", design_dir=design_dir)
    cmp_ = res["compared"]
    return ArrayReport(
        cores=program.hardware.array.cores,
        steps=cmp_["steps"],
        host_flits=0,
        cycle_checks=cmp_["cycle_checks"],
        membranes=cmp_["membranes"],
        spikes=cmp_["spikes"],
        busy_checks=cmp_["busy"],
        packet_counts=0,
        rtl_cycles=res["cycles"],
        rtl_wall_s=res["wall_s"],
        mismatches=res["mismatches"],
        logits=cmp_["logits"],
        readout_cycles=0,
        step_cycles=cmp_["step_cycles"],
        rounds=sum(len(range(u.lo, min(u.hi, len(run.trace)))) for us in plan.units.values() for u in us if u.root < 0),
        counts=cmp_["counts"],
    )
