"""Run a program over a batch of samples and report a :class:`~spikeforge.sim.result.SimResult`.

The entry point of the simulator: checks the input and the memory the run needs before it
starts, simulates sample by sample (progress bar), compares the logits with the functional
executor's, and turns the counters into per-inference figures and energy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from spikeforge.mapping import Program
from spikeforge.mapping.connectivity import slot_source_count
from spikeforge.models.errors import SpikeForgeError
from spikeforge.models.executor import check_input, run_snn
from spikeforge.models.graph import SNNGraph
from spikeforge.models.integer_ann import run_integer_ann

from .counters import MEMORIES, Counters
from .energy import break_even, energy_breakdown, load_profile, shipped_profiles, spikes_per_synapse
from .engine import Simulator
from .lowering import P
from .result import SimResult

__all__ = ["SimulationError", "simulate", "dense_equivalent_synapses", "estimate_memory_bytes", "available_memory"]


class SimulationError(SpikeForgeError):
    """A simulation that cannot run as asked (input, memory)."""


def dense_equivalent_synapses(graph: SNNGraph) -> int:
    """Connections of the network counted as (source neuron, target neuron) pairs.

    A convolution's kernel counts once per output position it reaches (padding excluded), a
    product ``out[h, i, j] = sum_c a[h, i, c] b[h, c, j]`` counts ``2 C`` per output, a max-pool
    one per input. This is the denominator of spikes per synapse.
    """
    total = 0
    for proj in graph.projections:
        if proj.kind in ("dense", "pool_dense"):
            total += proj.weight.shape[0] * graph.population(proj.src).size  # pool_dense: every (c, y, x)
        elif proj.kind == "conv":
            co, ci, kh, kw = proj.kernel.shape
            _, h, w = graph.population(proj.src).shape
            _, ho, wo = graph.population(proj.dst).shape
            ys = _valid_taps(h, ho, kh, proj.stride, proj.padding)
            xs = _valid_taps(w, wo, kw, proj.stride, proj.padding)
            total += co * ci * ys * xs
        elif proj.kind in ("identity", "pool"):
            total += graph.population(proj.src).size
        elif proj.kind == "product":
            total += 2 * proj.a_index.shape[2] * graph.population(proj.dst).size
    return int(total)


def _valid_taps(size: int, out: int, k: int, stride: int, pad: int) -> int:
    """Sum over output positions of the kernel taps that land inside the input (one axis)."""
    pos = np.arange(out)[:, None] * stride - pad + np.arange(k)[None, :]
    return int(((pos >= 0) & (pos < size)).sum())


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``), or total memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def estimate_memory_bytes(program: Program) -> int:
    """Upper estimate of the memory the simulator needs for ``program`` (lowered arrays, state, flits).

    Events of one step are bounded by the neurons every routing entry may carry (in ``rounds``
    mode: the source neurons every slot needs), each taking six 8-byte words while it lives.
    """
    graph = program.graph
    weights = sum(proj.synapses for proj in graph.projections)
    neurons = sum(p.n for p in program.pieces)
    depth = max((d for proj in graph.projections for _, d in proj.sources), default=0) + 2
    ring = depth * sum(p.size for p in graph.populations)
    if program.plan.mode != "rounds":
        entries = sum(len(t.entries) for t in program.routing.values())
        span = sum(last - first + 1 for t in program.routing.values() for first, last, *_ in t.entries)
    else:  # no routing: each round reads the sources its slots need
        entries = 0
        span = sum(slot_source_count(graph, p, s) for p in program.pieces for s in p.slots)
    words = weights + 6 * neurons + ring + 6 * entries + 6 * span + 4 * graph.input.size
    return 8 * words


def _check_memory(program: Program, available: int | None) -> None:
    need = estimate_memory_bytes(program)
    have = available_memory() if available is None else available
    if need > have:
        raise SimulationError(
            f"simulating this program needs about {need / 2**30:.1f} GiB of memory but {have / 2**30:.1f} GiB is "
            "available; use a larger array (fewer rounds to lower) or a machine with more memory."
        )


def simulate(
    program: Program,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    profile: str | None = None,
    model: str = "",
    hardware: str = "",
    float_accuracy: float | None = None,
    reference: bool = True,
    progress: bool = True,
    memory_limit: int | None = None,
) -> SimResult:
    """Simulate ``program`` on every sample of ``x`` and report per-inference figures.

    Parameters
    ----------
    program : Program
        The compiled network (``spikeforge.mapping.compile``).
    x : ndarray of int, shape (samples, *input_shape)
        Integer inputs, as for the functional executor.
    y : ndarray of int, shape (samples,), optional
        Labels; accuracy is ``None`` without them.
    profile : str, optional
        Energy profile: a shipped name or a TOML path (default: the hardware file's
        ``[energy] profile``).
    model, hardware : str
        Names recorded in the result.
    float_accuracy : float, optional
        Accuracy of the float model on the same samples (recorded as ``accuracy.float_qat`` for a
        CSDformer graph, ``accuracy.ann_float`` for an MBE graph, whose float model is a plain ANN).
    reference : bool
        Also run the functional executor and the integer ANN on the same samples (exactness,
        ``accuracy.ann_quantized``).
    progress : bool
        Show a progress bar.
    memory_limit : int, optional
        Bytes the run may use (default: the machine's available memory).
    """
    t0 = time.time()
    x = np.asarray(x)
    if x.ndim == len(program.graph.input.shape):
        raise SimulationError(f"x must be a batch shaped (samples, {', '.join(map(str, program.graph.input.shape))}).")
    xin = check_input(program.graph, x)
    if len(xin) == 0:
        raise SimulationError("no samples to simulate; pass at least one.")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(xin),):
            raise SimulationError(f"labels have shape {y.shape}, expected ({len(xin)},).")
    # a bad profile fails here, before the long part
    energy_profile = load_profile(profile or program.hardware.energy.profile, program.hardware)
    _check_memory(program, memory_limit)

    sim = Simulator(program)
    logits = np.zeros((len(x), program.graph.output.size), np.int64)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(x), desc="simulating", unit="sample")
    for i in range(len(x)):
        logits[i] = sim.run(x[i]).logits
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    counters = sim.totals()

    accuracy: dict[str, float | None] = {"snn": None, "ann_quantized": None, "float_qat": float_accuracy}
    has_mbe = any(p.kind == "mbe" for p in program.graph.populations)
    if has_mbe:
        accuracy["float_qat"], accuracy["ann_float"] = None, float_accuracy
    exactness: dict[str, Any] = {"logits_equal_samples": None, "exact": None}
    if y is not None:
        accuracy["snn"] = float(np.mean(logits.argmax(1) == y))
    if reference:
        ref = run_snn(program.graph, x, record=False).logits
        eq = int(np.all(ref == logits, axis=1).sum())
        exactness = {"logits_equal_samples": eq, "exact": eq == len(x)}
        # the integer ANN twin exists for IF/DIF graphs; an MBE graph's ANN is its float model
        if y is not None and not has_mbe:
            accuracy["ann_quantized"] = float(np.mean(run_integer_ann(program.graph, x).logits.argmax(1) == y))
    return _result(program, sim, counters, energy_profile, accuracy, exactness, model, hardware, time.time() - t0)


def _result(program, sim, counters: Counters, energy_profile, accuracy, exactness, model, hardware, wall) -> SimResult:
    hw = program.hardware
    n = counters.samples
    breakdown = energy_breakdown(counters, energy_profile, hw).per_inference()
    parts = breakdown.to_dict()
    energy_pj = {
        k: parts[k]
        for k in ("total", "synaptic_ops", "sram", "neuron_updates", "noc", "dram", "leakage", "paper_convention")
    }
    by_profile = {
        name: energy_breakdown(counters, load_profile(name, hw), hw).per_inference().total
        for name in shipped_profiles()
    }
    traffic = {m: (counters.sram_read_bits[m] + counters.sram_write_bits[m]) / 8 / n for m in MEMORIES}
    traffic["dram"] = counters.dram_bytes / n
    pops = program.graph.populations
    pop_of = np.array([sim.low.pop_index[p.population] for p in program.pieces], np.int64)
    core_of = sim.low.pieces[:, P["core"]]
    pop_spikes = np.bincount(pop_of, weights=sim.piece_spikes, minlength=len(pops))
    pop_ops = np.bincount(pop_of, weights=sim.piece_ops, minlength=len(pops))
    pop_clipped = np.bincount(pop_of, weights=sim.piece_clipped, minlength=len(pops))
    cores = hw.array.cores
    per_core = {
        "busy_cycles": (sim.core_busy / n).tolist(),
        "busy_cycles_per_step": (sim.core_step_busy / n).tolist(),
        "spikes": (np.bincount(core_of, weights=sim.piece_spikes, minlength=cores) / n).tolist(),
        "synaptic_ops": (np.bincount(core_of, weights=sim.piece_ops, minlength=cores) / n).tolist(),
    }
    per_step: dict[str, list[float]] = {
        "cycles": (sim.step_cycles_total / n).tolist(),
        "spikes": (sim.step_spikes_total / n).tolist(),
    }
    if program.plan.mode != "rounds":
        for k, name in enumerate(("phase_i", "phase_p", "phase_f")):
            per_step[name] = (sim.step_phases_total[:, k] / n).tolist()
    busiest = int(np.argmax(sim.core_busy))
    synapses = dense_equivalent_synapses(program.graph)
    return SimResult(
        model=str(model),
        hardware=str(hardware),
        hardware_fingerprint=hw.fingerprint(),
        mode=program.plan.mode,
        cores=cores,
        cores_used=int(np.unique(program.plan.core[program.plan.core >= 0]).size),
        samples=n,
        timesteps=program.graph.timesteps,
        total_steps=program.graph.total_steps,
        clock_mhz=float(hw.clock.frequency_mhz),
        accuracy=accuracy,
        exactness=exactness,
        spikes_per_inference=counters.spikes / n,
        synaptic_ops_per_inference=counters.synaptic_ops / n,
        macs_per_inference=counters.macs / n,
        neuron_updates_per_inference=counters.neuron_updates / n,
        cycles_per_inference=counters.cycles / n,
        latency_s=counters.cycles / n / (hw.clock.frequency_mhz * 1e6),
        memory_traffic_bytes=traffic,
        sram_bits={
            "read": {m: v / n for m, v in counters.sram_read_bits.items()},
            "write": {m: v / n for m, v in counters.sram_write_bits.items()},
        },
        noc={
            "flits": counters.noc_flits / n,
            "hops": counters.noc_hops / n,
            "hops_ew": counters.noc_hops_ew / n,
            "hops_ns": counters.noc_hops_ns / n,
            "stall_cycles": counters.noc_stall_cycles / n,
        },
        dram_stall_cycles=sim.dram_stall / n,
        energy_pj=energy_pj,
        energy=parts,
        energy_total_by_profile=by_profile,
        break_even=break_even(spikes_per_synapse(counters, synapses)) | {"synapses": synapses},
        per_population={
            p.name: _population_entry(p, i, pop_spikes, pop_ops, pop_clipped, n, program) for i, p in enumerate(pops)
        },
        per_step=per_step,
        per_core=per_core,
        critical_path={
            "compute_cycles": float(sim.step_cycles_total.sum() / n),
            "dram_stall_cycles": sim.dram_stall / n,
            "barrier_cycles_per_phase": hw.barrier_cycles,
            "busiest_core": busiest,
            "busiest_core_cycles": float(sim.core_busy[busiest] / n),
        },
        wall_seconds=round(wall, 3),
    )


def _population_entry(p, i, pop_spikes, pop_ops, pop_clipped, n, program) -> dict[str, Any]:
    bases = p.bases if p.kind == "mbe" else 1
    entry = {
        "spikes": float(pop_spikes[i] / n),
        "synaptic_ops": float(pop_ops[i] / n),
        "kind": p.kind,
        "neurons": int(p.size),
        # spikes per neuron (MBE: per basis) per time step of the population's firing window
        "firing_rate": float(pop_spikes[i] / n / (p.size * bases * program.graph.timesteps)),
    }
    if p.kind == "mbe":
        entry["bases"] = bases
        entry["clipped"] = float(pop_clipped[i] / n)  # units clamped to the calibrated range, per inference
    return entry
