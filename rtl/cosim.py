"""Cycle-exact co-simulation of the RTL cores against the Python simulator (cocotb + Icarus Verilog).

:func:`core_spec` turns the simulator's trace (``Simulator(..., trace=True)``) into the
transactions of one core: the flits that reach its event FIFO with the cycle each can be popped,
and per step the expected end of phase I, phase-F cycles, busy cycles, membranes and spikes.
:func:`cosim_core` generates that core's SystemVerilog, runs :mod:`spikeforge.rtl.bench_core` on it
and returns a :class:`CoreReport`; :func:`cosim` does it for every core of a program.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.mapping import Program
from spikeforge.mapping.hardware import index_bits
from spikeforge.sim import Simulator

from .core import SHIFT_BITS, TYPE_GRADED, TYPE_PARTIAL, TYPE_SPIKE, Core
from .errors import RtlError, ToolMissingError
from .export import to_sv
from .piece import (
    PieceInit,
    history_bits,
    membrane_positions,
    neuron_positions,
    piece_init,
    readout_order,
    sum_positions,
)

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


def require_icarus() -> str:
    """Path of ``iverilog``, or :class:`ToolMissingError` saying how to install it."""
    path = shutil.which("iverilog")
    if path is None:
        raise ToolMissingError(
            "Icarus Verilog (iverilog) is not installed: install it (Debian: apt-get install iverilog) "
            "to run the RTL co-simulation."
        )
    return path


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


#: SystemVerilog of the last few designs converted, by a digest of what built them (see :func:`_design_sv`)
_SV_CACHE: OrderedDict[bytes, str] = OrderedDict()
_SV_CACHE_SIZE = 4


def _design_sv(make, name: str, *args, **kwargs) -> str:
    """``to_sv(make(*args, **kwargs), name)``, converted once for equal arguments.

    A design is a function of its constructor's arguments, and Amaranth's conversion costs seconds
    (most of an array co-simulation): the samples of :func:`cosim_samples` and a clean run repeated
    with other inputs reuse it. The key is the SHA-256 of the pickled arguments (lossless, so a
    changed weight or hook is another design); only the last ``_SV_CACHE_SIZE`` designs are kept.
    """
    key = hashlib.sha256(
        pickle.dumps((make.__module__, make.__qualname__, name, args, sorted(kwargs.items())))
    ).digest()
    sv = _SV_CACHE.pop(key, None)
    if sv is None:
        sv = to_sv(make(*args, **kwargs), name)
    _SV_CACHE[key] = sv
    while len(_SV_CACHE) > _SV_CACHE_SIZE:
        _SV_CACHE.popitem(last=False)
    return sv


def _bench_in(workdir: str | Path | None, sv: str, spec: dict, **names) -> dict:
    """:func:`_run_bench` in ``workdir``, or in a temporary one removed afterwards (kept when the
    environment sets ``SPIKEFORGE_KEEP_COSIM``)."""
    if workdir is not None:
        return _run_bench(sv, spec, Path(workdir), **names)
    tmp = tempfile.mkdtemp(prefix="spikeforge-cosim-")
    try:
        return _run_bench(sv, spec, Path(tmp), **names)
    finally:
        if not os.environ.get("SPIKEFORGE_KEEP_COSIM"):
            shutil.rmtree(tmp, ignore_errors=True)


def _run_bench(sv: str, spec: dict, workdir: Path, top: str = "core", bench: str = "bench_core") -> dict:
    """Compile ``sv`` (module ``top``) with Icarus and run the cocotb ``bench`` on ``spec``; return its result."""
    require_icarus()
    try:
        from cocotb_tools.runner import get_runner
    except ImportError:
        raise ToolMissingError("cocotb is not installed: install the rtl extra (pip install -e '.[rtl]').") from None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{top}.sv").write_text(sv)
    (workdir / "spec.json").write_text(json.dumps(spec))
    out = workdir / "result.json"
    if out.exists():
        out.unlink()
    runner = get_runner("icarus")
    runner.build(
        sources=[workdir / f"{top}.sv"],
        hdl_toplevel=top,
        build_dir=workdir / "build",
        timescale=("1ns", "1ps"),
        always=True,
        log_file=workdir / "build.log",
    )
    try:
        runner.test(
            test_module=f"spikeforge.rtl.{bench}",
            hdl_toplevel=top,
            build_dir=workdir / "build",
            test_dir=workdir,
            timescale=("1ns", "1ps"),
            extra_env={"SPIKEFORGE_COSIM_IN": str(workdir / "spec.json"), "SPIKEFORGE_COSIM_OUT": str(out)},
            log_file=workdir / "sim.log",
        )
    except SystemExit:  # the runner exits when the bench itself crashed (under pytest)
        pass
    if not out.exists():
        log = (workdir / "sim.log").read_text(errors="replace")[-3000:] if (workdir / "sim.log").exists() else ""
        raise RtlError(f"the cocotb bench crashed before writing its result (workdir {workdir}):\n{log}")
    return json.loads(out.read_text())


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
    (``SampleRun.step_stall``).
    Returns an :class:`ArrayReport`.

    Raises
    ------
    RtlError
        When ``skip_p`` is given for a ``rounds`` program (it has no phase P).
    """
    from .array import CoreArray, array_inits
    from .rounds import RoundsPlan

    if program.plan.mode == "rounds" or isinstance(inits, RoundsPlan):
        if skip_p:
            raise RtlError("a rounds-mode array has no phase P to skip (partial sums move through DRAM); drop skip_p.")
        return cosim_rounds(program, x, workdir, plan=inits, dram_flip=dram_flip, late_phase=late_phase)
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
    res = _bench_in(workdir, sv, spec, top="core_array", bench="bench_array")
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

    Parameters
    ----------
    program : Program
        A resident program compiled for the hardware file.
    inputs : ndarray
        Input samples, shape ``(N, *input shape)``.
    samples : int
        How many of them to run (each is a fresh inference: the array is built with ``v0``).
    workdir : path, optional
        Keep the SystemVerilog, builds and logs there (one folder per sample).

    Raises
    ------
    RtlError
        A piece or slot kind the RTL does not build yet (in ``rounds`` mode: what
        :func:`~spikeforge.rtl.rounds.rounds_plan` refuses).
    ToolMissingError
        Icarus Verilog, cocotb or Yosys missing.
    """
    from .array import array_inits

    array_inits(program)  # refuse before running anything
    require_icarus()
    reports = []
    for i in range(min(samples, len(inputs))):
        sub = None if workdir is None else Path(workdir) / f"sample{i}"
        reports.append(cosim_array(program, inputs[i], sub))
    return SamplesReport(reports)


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
) -> ArrayReport:
    """Co-simulate a ``rounds`` program (``rtl/rounds.py``) on input ``x`` against the simulator.

    The bench (``rtl/bench_rounds.py``) writes the input into the DRAM, starts every step and
    compares its cycles (every round's load, integration, firing and write-back on the one DRAM
    channel, and the barrier), every piece's membranes and spike rows as written back to the DRAM,
    every core's busy cycles and the logits. ``plan`` replaces the program's
    :class:`~spikeforge.rtl.rounds.RoundsPlan` (the mutation tests pass ``latency_delta``);
    ``dram_flip``, ``wb_flip`` and ``late_phase`` are :class:`~spikeforge.rtl.rounds.RoundsArray`'s hooks.

    Raises
    ------
    RtlError
        When the program is not in rounds mode or has a piece the rounds-mode RTL does not run.
    """
    from .rounds import RoundsArray, rounds_plan

    plan = plan if plan is not None else rounds_plan(program)
    run = Simulator(program, trace=True).run(x, record=True)
    spec = rounds_spec(program, plan, run, x)
    top = RoundsArray(program.hardware, plan, dram_flip=dram_flip, wb_flip=wb_flip, late_phase=late_phase)
    sv = to_sv(top, "core_array")
    res = _bench_in(workdir, sv, spec, top="core_array", bench="bench_rounds")
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
