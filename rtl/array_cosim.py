"""Whole-array co-simulation (resident and ``swap`` programs): :func:`array_spec` turns the simulator's
trace into the array bench's transactions (:mod:`spikeforge.rtl.bench_array`: host flits, every
packet, membranes, cycles, the host's read-out), :func:`cosim_array` runs it on one input and
:func:`cosim_samples` on several (what ``spikeforge cosim`` prints)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.mapping import Program
from spikeforge.mapping.hardware import index_bits
from spikeforge.sim import Simulator

from .core import TYPE_GRADED, TYPE_PARTIAL, TYPE_SPIKE
from .errors import RtlError
from .icarus import _bench_in, _design_sv, require_icarus
from .piece import (
    history_bits,
    membrane_positions,
    readout_order,
    sum_positions,
)
from .progress import stage

__all__ = [
    "ArrayReport",
    "array_spec",
    "cosim_array",
    "SamplesReport",
    "cosim_samples",
]


@dataclass
class ArrayReport:
    """What the whole-array co-simulation compared, and the mismatches (first first)."""

    cores: int
    steps: int
    host_flits: int
    cycle_checks: int
    membranes: int
    spikes: int
    busy_checks: int
    packet_counts: int
    rtl_cycles: int
    rtl_wall_s: float
    mismatches: list[dict] = field(default_factory=list)
    #: logits the host read over the read-out port after the last step, and the cycles that took
    logits: int = 0
    readout_cycles: int = 0
    #: steps whose cycles (phases and the barrier unit's barriers) were compared with the simulator's
    step_cycles: int = 0
    #: swap mode: DRAM stall cycles the RTL waited in all (each step's compared with the simulator's),
    #: and the steps that waited
    stall_cycles: int = 0
    stalled_steps: int = 0
    #: rounds mode: rounds run in all (each a DRAM load, integration, firing and a write-back), and
    #: running-count words of product pieces compared
    rounds: int = 0
    counts: int = 0
    #: running payload sums, max-pool counts and MBE shift words compared at the barriers (section 8)
    sums: int = 0
    #: the cores' phase-I packets compared one by one (cycle, type, slot, index, payload, destination)
    packets: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing differed."""
        return not self.mismatches

    def format(self) -> str:
        """What matched, or the first mismatch with its step, core and neuron."""
        head = (
            f"array of {self.cores} cores: {self.steps} steps, {self.host_flits} host flits, {self.cycle_checks} "
            f"cycle checks (phase ends and barriers), {self.membranes} membranes, {self.spikes} spikes, "
            f"{self.busy_checks} busy counts, {self.packet_counts} packet counts, {self.step_cycles} step cycle "
            f"counts, {self.logits} logits read "
            f"by the host in {self.readout_cycles} cycles"
        )
        if self.packets:
            head += f", {self.packets} packets compared one by one"
        if self.sums:
            head += f", {self.sums} running sums, counts and shift words"
        if self.stall_cycles or self.stalled_steps:
            head += f", {self.stall_cycles} DRAM stall cycles over {self.stalled_steps} steps"
        if self.rounds:
            head += f", {self.counts} running-count words, {self.rounds} rounds through DRAM"
        if self.ok:
            return head + ": match"
        m = self.mismatches[0]
        where = f"step {m['step']}" + (f", core {m['core']}" if m.get("core") is not None else "")
        if m.get("neuron") is not None:
            where += f", neuron {m['neuron']}"
        return (
            head
            + f": MISMATCH ({len(self.mismatches)}): {where}: {m['what']}: simulator {m['expected']}, "
            + (f"RTL {m['got']}")
        )


def array_spec(program: Program, run) -> dict:
    """The array bench's transactions from a simulator run with ``trace=True``: the host's flits with
    their injection cycles, ``I(t)``, ``F(t)``, per core its membranes, spikes, busy cycles and flits
    sent, and every core's packets of phases I and P (injection cycle and content) in order."""
    hw = program.hardware
    c = hw.core
    core_of = np.asarray(program.plan.core)
    positions = [membrane_positions(program, p.id) for p in program.pieces]  # where dbg_maddr finds them
    swap = program.plan.mode == "swap"
    live = np.asarray(program.plan.live)
    steps = []
    for tr in run.trace:
        host = np.flatnonzero(tr.flit_src < 0)
        host = host[np.argsort(tr.flit_inject[host], kind="stable")]
        flits = []
        for i in host:
            y, x = divmod(int(core_of[tr.flit_piece[i]]), hw.array.cols)
            flits.append(
                [
                    int(tr.flit_inject[i]),
                    TYPE_GRADED,
                    int(tr.flit_slot[i]),
                    int(tr.flit_index[i]),
                    int(tr.flit_value[i]),
                    x,
                    y,
                ]
            )
        # every core's phase-I packets in the order (and at the cycle) its encoder put them into its router
        sent = np.flatnonzero(tr.flit_src >= 0)
        sent = sent[np.argsort(tr.flit_inject[sent], kind="stable")]
        out: dict[int, list] = {}
        for i in sent:
            y, x = divmod(int(core_of[tr.flit_piece[i]]), hw.array.cols)
            graded = bool(tr.flit_graded[i])  # an mbe piece's (or a graded max-pool's) payload flits
            ftype, pay = (TYPE_GRADED, int(tr.flit_value[i])) if graded else (TYPE_SPIKE, 0)
            packet = [int(tr.flit_inject[i]), ftype, int(tr.flit_slot[i]), int(tr.flit_index[i]), pay, x, y]
            out.setdefault(int(core_of[tr.flit_src[i]]), []).append(packet)
        # phase P's packets: a partial piece's non-zero sums to its root (section 4.2), the sum in v_bits
        out_p: dict[int, list] = {}
        vmask, vsign = (1 << c.v_bits) - 1, 1 << (c.v_bits - 1)
        for i in np.argsort(tr.psum_inject, kind="stable"):
            y, x = divmod(int(core_of[tr.psum_piece[i]]), hw.array.cols)
            value = ((int(tr.psum_value[i]) & vmask) ^ vsign) - vsign
            packet = [int(tr.psum_inject[i]), TYPE_PARTIAL, 0, int(tr.psum_index[i]), value, x, y]
            out_p.setdefault(int(core_of[tr.psum_src[i]]), []).append(packet)
        per_core_f = np.bincount(core_of, weights=tr.fire_cycles, minlength=hw.array.cores)
        cores = []
        for p in program.pieces:
            if swap and not live[p.id, 0] <= tr.step < live[p.id, 1]:
                continue  # in swap mode a core's memories hold the piece only while it is live
            k = int(core_of[p.id])
            spikes = tr.spikes[p.id]
            sums = tr.sums[p.id]
            cores.append(
                {
                    "core": k,
                    "n": p.n,
                    "positions": positions[p.id],
                    "hist_bits": history_bits(program, p.id),
                    "membranes": [int(v) for v in tr.membranes[p.id]],
                    "spikes": None if spikes is None else [int(v) for v in spikes],
                    "busy": int(tr.core_busy[k]),
                    "sent": int((tr.flit_src == p.id).sum()),
                    # running payload sums, max-pool counts, MBE shift words (section 8), at dbg_saddr
                    "sums": None if sums is None else [int(v) for v in sums],
                    "sum_positions": None if sums is None else sum_positions(program, p.id),
                }
            )
        steps.append(
            {
                "t": tr.step,
                "cycles": int(run.step_cycles[tr.step]),
                "stall": int(run.step_stall[tr.step]) if run.step_stall is not None else 0,
                "host": flits,
                "phase_i": max(int(tr.phase_i), 0),
                "phase_p": int(tr.phase_p),
                "phase_f": int(per_core_f.max(initial=0)),
                "cores": cores,
                "out": [out.get(k, []) for k in range(hw.array.cores)],
                "out_p": [out_p.get(k, []) for k in range(hw.array.cores)],
            }
        )
    # the host's read-out after the last step (section 5): each output piece's accumulators, in piece
    # order, local neuron j at word j // lanes, lane j % lanes; expected: the simulator's logits
    readout = [
        {
            "core": int(core_of[p.id]),
            "words": -(-p.n // c.lanes),
            # per position of the words read: the output neuron there (-1: none, reads 0)
            "outputs": [int(p.neurons[j]) if j >= 0 else -1 for j in readout_order(program, p.id)],
            "logits": [int(run.logits[p.neurons[j]]) if j >= 0 else 0 for j in readout_order(program, p.id)],
        }
        for p in program.pieces
        if p.kind == "output"
    ]
    return {
        "swap": swap,
        "readout": readout,
        "lanes": c.lanes,
        "v_bits": c.v_bits,
        "history": c.spike_history_steps,
        "barrier": hw.barrier_cycles,
        "out_widths": [2, index_bits(c.slots), 24, c.v_bits, index_bits(hw.array.cols), index_bits(hw.array.rows)],
        "steps": steps,
    }


def cosim_array(
    program: Program,
    x: np.ndarray,
    workdir: str | Path | None = None,
    *,
    inits=None,
    readout_fault: bool = False,
    extra_barrier_cycles: int = 0,
    dram_flip: tuple[int, int] | None = None,
    skip_p: bool = False,
    late_phase: int = 0,
    design_dir: str | Path | None = None,
) -> ArrayReport:
    """Co-simulate the whole array (cores, encoders, routers) of a resident or swap ``program`` on input ``x``
    (a ``rounds`` program goes to :func:`cosim_rounds`, ``inits`` then its plan).

    The bench (``rtl/bench_array.py``) gives ``go`` once, then drives only the host port, watches
    the array's sequencer (``step``, ``phase``) and barriers, reads the state at every barrier and,
    after the last step, the logits over the host's read-out port; ``inits`` replaces the cores'
    pieces and ``readout_fault``, ``extra_barrier_cycles``, ``skip_p``, ``late_phase`` are
    :class:`~spikeforge.rtl.array.CoreArray`'s hooks (mutation tests), as ``dram_flip`` (a flipped
    bit of a DRAM record, swap mode). In swap mode the bench also compares the cycles the array
    waits for a step's pieces (``phase`` load) with the simulator's DRAM stall of the step
    (``SampleRun.step_stall``). ``design_dir``: where the design is compiled (default ``workdir``); a
    later call with the same design and ``design_dir`` runs its bench on that build.
    Returns an :class:`ArrayReport`.

    Raises
    ------
    RtlError
        When ``skip_p`` is given for a ``rounds`` program (it has no phase P).
    """
    from .array import CoreArray, array_inits
    from .rounds_cosim import cosim_rounds  # (it reports in an ArrayReport of this module)
    from .rounds_plan import RoundsPlan

    if program.plan.mode == "rounds" or isinstance(inits, RoundsPlan):
        if skip_p:
            raise RtlError("a rounds-mode array has no phase P to skip (partial sums move through DRAM); drop skip_p.")
        return cosim_rounds(
            program, x, workdir, plan=inits, dram_flip=dram_flip, late_phase=late_phase, design_dir=design_dir
        )
    inits = inits if inits is not None else array_inits(program)
    run = Simulator(program, trace=True).run(x)
    spec = array_spec(program, run)
    sv = _design_sv(
        CoreArray,
        "core_array",
        program.hardware,
        inits,
        steps=program.graph.total_steps,
        readout_fault=readout_fault,
        extra_barrier_cycles=extra_barrier_cycles,
        dram_flip=dram_flip,
        skip_p=skip_p,
        late_phase=late_phase,
    )
    res = _bench_in(workdir, sv, spec, top="core_array", bench="bench_array", design_dir=design_dir)
    cmp_ = res["compared"]
    return ArrayReport(
        cores=program.hardware.array.cores,
        steps=cmp_["steps"],
        host_flits=cmp_["host_flits"],
        cycle_checks=cmp_["cycle_checks"],
        membranes=cmp_["membranes"],
        spikes=cmp_["spikes"],
        busy_checks=cmp_["busy"],
        packet_counts=cmp_["packets"],
        rtl_cycles=res["cycles"],
        rtl_wall_s=res["wall_s"],
        mismatches=res["mismatches"],
        logits=cmp_["logits"],
        readout_cycles=cmp_["readout_cycles"],
        step_cycles=cmp_["step_cycles"],
        stall_cycles=cmp_["stall_cycles"],
        stalled_steps=cmp_["stalled_steps"],
        sums=cmp_.get("sums", 0),
        packets=cmp_["out_packets"],
    )


@dataclass
class SamplesReport:
    """Whole-array co-simulation of several samples (what ``spikeforge cosim`` prints)."""

    reports: list[ArrayReport]

    @property
    def ok(self) -> bool:
        """True when every sample matched."""
        return all(r.ok for r in self.reports)

    def format(self) -> str:
        """One line per sample: what matched, or its first mismatch (step, core, neuron)."""
        lines = [f"sample {i}: {r.format()}" for i, r in enumerate(self.reports)]
        cycles = sum(r.rtl_cycles for r in self.reports)
        wall = sum(r.rtl_wall_s for r in self.reports)
        verdict = "all samples match" if self.ok else "MISMATCH"
        lines.append(f"{verdict}: {cycles} RTL cycles simulated at {cycles / max(wall, 1e-9):,.0f} cycles/s")
        return "\n".join(lines)


def cosim_samples(
    program: Program, inputs: np.ndarray, samples: int = 1, workdir: str | Path | None = None
) -> SamplesReport:
    """Co-simulate the whole array on the first ``samples`` inputs (entry point of ``spikeforge cosim``).

    The samples share one design: it is generated and compiled once, and the bench runs once per
    sample on that build (the input enters through the host port or, in rounds mode, the DRAM).

    Parameters
    ----------
    program : Program
        A program compiled for the hardware file (resident, swap or rounds mode).
    inputs : ndarray
        Input samples, shape ``(N, *input shape)``.
    samples : int
        How many of them to run (each is a fresh inference: the array is built with ``v0``).
    workdir : path, optional
        Keep the SystemVerilog and its Icarus build there, and each sample's spec, result and log in
        ``sample<i>`` below it (default: a temporary directory, removed afterwards).

    Raises
    ------
    RtlError
        A piece or slot kind the RTL does not build yet (in ``rounds`` mode: what
        :func:`~spikeforge.rtl.rounds.rounds_plan` refuses).
    ToolMissingError
        Icarus Verilog, cocotb or Yosys missing.
    """
    from .array import array_inits

    stage("planning the array")
    array_inits(program)  # refuse before running anything
    require_icarus()
    reports = []
    n = min(samples, len(inputs))
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="spikeforge-cosim-"))
    try:
        for i in range(n):
            stage(f"sample {i + 1} of {n}: the simulator's trace")
            reports.append(cosim_array(program, inputs[i], root / f"sample{i}", design_dir=root))
    finally:
        if workdir is None and not os.environ.get("SPIKEFORGE_KEEP_COSIM"):
            shutil.rmtree(root, ignore_errors=True)
    return SamplesReport(reports)
