"""Cycle-exact co-simulation of the RTL cores against the Python simulator (cocotb + Icarus Verilog).

:func:`core_spec` turns the simulator's trace (``Simulator(..., trace=True)``) into the
transactions of one core: the flits that reach its event FIFO with the cycle each can be popped,
and per step the expected end of phase I, phase-F cycles, busy cycles, membranes and spikes.
:func:`cosim_core` generates that core's SystemVerilog, runs :mod:`spikeforge.rtl.bench_core` on it
and returns a :class:`CoreReport`; :func:`cosim` does it for every core of a program.
The whole-array and rounds-mode co-simulations (:mod:`~spikeforge.rtl.array_cosim`,
:mod:`~spikeforge.rtl.rounds_cosim`) and :func:`require_icarus` are re-exported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.mapping import Program
from spikeforge.mapping.hardware import index_bits
from spikeforge.sim import Simulator

from .array_cosim import ArrayReport, SamplesReport, array_spec, cosim_array, cosim_samples
from .core import TYPE_GRADED, TYPE_SPIKE, Core
from .errors import RtlError
from .icarus import _bench_in, _design_sv, require_icarus
from .piece import (
    PieceInit,
    history_bits,
    membrane_positions,
    piece_init,
    sum_positions,
)
from .rounds_cosim import cosim_rounds, rounds_spec

__all__ = [
    "ArrayReport",
    "CoreReport",
    "CosimReport",
    "array_spec",
    "core_spec",
    "cosim",
    "cosim_array",
    "cosim_core",
    "cosim_rounds",
    "rounds_spec",
    "cosim_samples",
    "SamplesReport",
    "require_icarus",
]


@dataclass
class CoreReport:
    """What one core's co-simulation compared, and the mismatches (first first)."""

    core: int
    piece: int
    population: str
    steps: int
    events: int
    cycle_checks: int
    membranes: int
    spikes: int
    busy_checks: int
    packets: int
    rtl_cycles: int
    rtl_wall_s: float
    mismatches: list[dict] = field(default_factory=list)
    #: running payload sums, graded max-pool maxima and MBE shift words compared (section 8)
    sums: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing differed."""
        return not self.mismatches

    def first_mismatch(self) -> str:
        """The first difference as a sentence ('' when none)."""
        if not self.mismatches:
            return ""
        m = self.mismatches[0]
        where = f"step {m['step']}, core {m['core']} (piece {m['piece']} {self.population!r})"
        if m.get("neuron") is not None:
            where += f", neuron {m['neuron']}"
        return f"{where}: {m['what']}: simulator {m['expected']}, RTL {m['got']}"


@dataclass
class CosimReport:
    """Co-simulation of every core of a program over some samples."""

    cores: list[CoreReport]
    sim_cycles: int
    sim_wall_s: float

    @property
    def ok(self) -> bool:
        """True when every core matched."""
        return all(c.ok for c in self.cores)

    def format(self) -> str:
        """What matched (events, steps, cycle checks, membranes, spikes), or the first mismatch."""
        lines = []
        for c in self.cores:
            status = "match" if c.ok else f"MISMATCH ({len(c.mismatches)}): {c.first_mismatch()}"
            lines.append(
                f"core {c.core} piece {c.piece} {c.population!r}: {c.steps} steps, {c.events} events in, "
                f"{c.packets} packets out, "
                f"{c.cycle_checks} cycle checks, {c.busy_checks} busy counts, {c.membranes} membranes, "
                f"{c.spikes} spikes, {c.sums} sums and shift words: {status}"
            )
        return "\n".join(lines)


def core_spec(program: Program, piece_id: int, runs: list, init: PieceInit | None = None) -> dict:
    """The bench's transactions for the core holding ``piece_id`` from simulator runs with ``trace=True``.

    Steps of several samples are concatenated: the RTL core keeps its state between samples only
    if the program's membranes start at ``v0`` for each sample, so each run is one sample on a core
    freshly loaded (the bench restarts it; see :func:`cosim_core`).
    """
    hw = program.hardware
    core = int(program.plan.core[piece_id])
    pinit = init if init is not None else piece_init(program, piece_id)
    steps = []
    for tr in runs[0].trace:
        sel = np.flatnonzero(tr.flit_piece == piece_id)
        sel = sel[np.argsort(tr.flit_arrive[sel], kind="stable")]
        events = [
            [
                int(tr.flit_arrive[i]),
                TYPE_GRADED if tr.flit_graded[i] else TYPE_SPIKE,
                int(tr.flit_slot[i]),
                int(tr.flit_index[i]),
                int(tr.flit_value[i]) if tr.flit_graded[i] else 0,
            ]
            for i in sel
        ]
        spikes = tr.spikes[piece_id]
        out = np.flatnonzero(tr.flit_src == piece_id)
        out = out[np.argsort(tr.flit_inject[out], kind="stable")]
        packets = []
        for i in out:
            y, x = divmod(int(program.plan.core[tr.flit_piece[i]]), hw.array.cols)
            graded = bool(tr.flit_graded[i])  # an mbe piece's payload flits
            ftype, pay = (TYPE_GRADED, int(tr.flit_value[i])) if graded else (TYPE_SPIKE, 0)
            packets.append([int(tr.flit_inject[i]), ftype, int(tr.flit_slot[i]), int(tr.flit_index[i]), pay, x, y])
        steps.append(
            {
                "t": tr.step,
                "events": events,
                "out": packets,
                "core_end": int(tr.core_end[core]) if events else -1,
                "busy": int(tr.core_busy[core]),
                "fire_cycles": int(tr.fire_cycles[piece_id]),
                "membranes": [int(v) for v in tr.membranes[piece_id]],
                "spikes": None if spikes is None else [int(v) for v in spikes],
                "sums": None if tr.sums[piece_id] is None else [int(v) for v in tr.sums[piece_id]],
            }
        )
    c = hw.core
    return {
        "sum_positions": sum_positions(program, piece_id),
        "core": core,
        "piece": piece_id,
        "population": program.pieces[piece_id].population,
        "n": pinit.n,
        # banked product membranes map back to neuron order; an mbe piece's X and basis blocks are read as laid out
        "positions": membrane_positions(program, piece_id),
        "hist_bits": history_bits(program, piece_id),
        "lanes": c.lanes,
        "v_bits": c.v_bits,
        "slot_bits": index_bits(c.slots),
        "pipeline": c.pipeline_cycles,
        "history": c.spike_history_steps,
        "groups_max": c.neurons // c.lanes,
        "barrier": hw.barrier_cycles,
        "out_widths": [2, index_bits(c.slots), 24, c.v_bits, index_bits(hw.array.cols), index_bits(hw.array.rows)],
        "steps": steps,
    }


def _refuse_not_resident(program: Program) -> None:
    """The one-core bench replays a core holding one piece for the whole run."""
    if program.plan.mode != "resident":
        what = {
            "swap": "pieces loaded from DRAM at run time",
            "rounds": "every core runs its pieces in turn at every step, their state in DRAM",
        }.get(program.plan.mode, "not resident")
        raise RtlError(
            "the one-core bench replays resident programs (one piece per core for the whole run); this one is in "
            f"{program.plan.mode!r} mode ({what}): co-simulate it on the whole array (cosim_array, "
            "cosim_samples, spikeforge cosim)."
        )


def _refuse_phase_p(program: Program, piece_id: int) -> None:
    """The one-core bench drives phases I and F only: a partial piece and its root need phase P."""
    piece = program.pieces[piece_id]
    if piece.kind == "partial" or any(p.kind == "partial" and p.root == piece_id for p in program.pieces):
        what = "a partial piece" if piece.kind == "partial" else "the root of partial pieces"
        raise RtlError(
            f"piece {piece_id} ({piece.population}) is {what}, whose partial sums (phase P) the one-core bench "
            "does not replay: co-simulate this program with the whole array (cosim_array or cosim_samples)."
        )


def cosim_core(
    program: Program,
    piece_id: int,
    x: np.ndarray,
    workdir: str | Path | None = None,
    *,
    init: PieceInit | None = None,
    extra_dense_cycles: int = 0,
    product_fault: str = "",
    run=None,
) -> CoreReport:
    """Co-simulate the core holding ``piece_id`` on one input ``x`` against the simulator.

    Parameters
    ----------
    program : Program
        A ``resident`` program (every piece on its own core for the whole run).
    piece_id : int
        The piece whose core is built and compared.
    x : ndarray
        One input sample (the graph's input shape).
    workdir : path, optional
        Where the SystemVerilog, the build and the logs go (default: a temporary directory).
    init : PieceInit, optional
        The core's registers and images (default: from the program; the mutation tests pass an
        altered copy, the expected transactions still come from the unaltered program).
    extra_dense_cycles : int
        Test hook of :class:`~spikeforge.rtl.core.Core` (a wrong cycle cost).
    product_fault : str
        Test hook of :class:`~spikeforge.rtl.core.Core` (a wrong product cost or bank word).
    run : SampleRun, optional
        A simulator run with ``trace=True`` of ``x`` to reuse.

    Returns
    -------
    CoreReport

    Raises
    ------
    RtlError
        When the program is not resident, or ``piece_id`` is a partial piece or the root of one
        (phase P needs the whole array: :func:`cosim_array`).
    """
    _refuse_not_resident(program)
    _refuse_phase_p(program, piece_id)
    if run is None:
        run = Simulator(program, trace=True).run(x)
    spec = core_spec(program, piece_id, [run])
    pinit = init if init is not None else piece_init(program, piece_id)
    sv = _design_sv(
        Core, "core", program.hardware, pinit, extra_dense_cycles=extra_dense_cycles, product_fault=product_fault
    )
    res = _bench_in(workdir, sv, spec)
    cmp_ = res["compared"]
    return CoreReport(
        core=spec["core"],
        piece=piece_id,
        population=spec["population"],
        steps=cmp_["steps"],
        events=cmp_["events"],
        cycle_checks=cmp_["cycle_checks"],
        membranes=cmp_["membranes"],
        spikes=cmp_["spikes"],
        busy_checks=cmp_["busy"],
        packets=cmp_["packets"],
        rtl_cycles=res["cycles"],
        rtl_wall_s=res["wall_s"],
        mismatches=res["mismatches"],
        sums=cmp_.get("sums", 0),
    )


def cosim(program: Program, x: np.ndarray, workdir: str | Path | None = None) -> CosimReport:
    """Co-simulate every core of a resident ``program`` on input ``x``; see :func:`cosim_core`.

    Raises
    ------
    RtlError
        When a piece uses something the RTL does not build yet, or the program is not resident
        (a swap program: :func:`cosim_array`).
    ToolMissingError
        When Icarus Verilog or cocotb is missing.
    """
    _refuse_not_resident(program)
    for p in program.pieces:  # refuse before running anything
        _refuse_phase_p(program, p.id)
        piece_init(program, p.id)
    sim = Simulator(program, trace=True)
    t0 = time.perf_counter()
    run = sim.run(x)
    sim_wall = time.perf_counter() - t0
    reports = []
    for p in program.pieces:
        sub = None if workdir is None else Path(workdir) / f"piece{p.id}"
        reports.append(cosim_core(program, p.id, x, sub, run=run))
    return CosimReport(reports, int(run.step_cycles.sum()), sim_wall)
