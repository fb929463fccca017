"""Where a ``Simulator.run`` of the 4096 -> 4096 dense layer (``bench_sim.py``'s) spends its time.

    python scripts/profile_sim.py [--repeat 30]

Times, interleaved run after run (medians and minima, ms), with a warm Numba cache:
- ``run``: one ``Simulator.run`` on the default 4 x 4 array (``rounds`` mode, one
  ``kernels.run_rounds`` call);
- ``stepwise``: the same inference with its kernels called from Python step by step (as before
  ``run_rounds``), and the time inside each: ``round_rows`` (both layers' rows, the partial sums
  of the scratch row included), ``partial_sums``, ``fire``, ``round_timing``; ``stepwise`` less
  their sum is the Python side;
- ``bare32``: ``bench_sim.bare_layer`` with 32-bit membranes, the row-accumulate floor;
and the cProfile of ``--repeat`` runs (the Python side).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sim import N, T, bare_layer, dense_layer  # noqa: E402

from spikeforge.mapping import HardwareConfig, compile  # noqa: E402
from spikeforge.models.executor import check_input  # noqa: E402
from spikeforge.models.graph import signed_range  # noqa: E402
from spikeforge.sim import Simulator  # noqa: E402
from spikeforge.sim import kernels as K  # noqa: E402
from spikeforge.sim.lowering import aligned  # noqa: E402


def stepwise(sim: Simulator, x: np.ndarray) -> dict[str, float]:
    """One inference with the run's kernels called from Python step by step, as before
    ``run_rounds`` (the same calls, the same results); returns the seconds spent in each."""
    low, core, mem, prog = sim.low, sim.hw.core, sim.hw.memory, sim.program
    xin = check_input(prog.graph, x[None])[0]
    vlo, vhi = signed_range(prog.graph.v_bits)
    n, tab, r = len(prog.pieces), sim._tables, sim.rounds
    state, counts = aligned(sim.state0), np.zeros(low.total_counts, np.int64)
    ring = np.zeros(int((low.ring_depth * low.pop_size).sum()), np.int8)
    busy = np.zeros(sim.hw.array.cores, np.int64)
    spent = dict.fromkeys(("round_rows", "partial_sums", "fire", "round_timing"), 0.0)
    for t in range(sim.steps):
        cost, fire_cycles = np.zeros(n, np.int64), np.zeros(n, np.int64)
        t0 = time.perf_counter()
        K.round_rows(t, sim.T, *tab[:8], *tab[9:11], ring, low.ring_off, low.ring_depth, low.pop_size,
                     low.pop_out_start, low.input_pop, low.pop_graded, xin, low.weights, state, core.lanes,
                     core.weight_bits, core.v_bits, cost, sim.piece_ops, sim.stats)  # fmt: skip
        t1 = time.perf_counter()
        K.partial_sums(t, sim.T, low.pieces, state, core.lanes, core.v_bits, sim.stats, False, tab[8])
        t2 = time.perf_counter()
        K.fire(t, sim.T, low.pieces, low.params, low.neurons, state, counts, ring, low.ring_off, low.ring_depth,
               low.pop_size, core.lanes, core.v_bits, vlo, vhi, sim.piece_spikes, fire_cycles, sim.stats, low.lut,
               sim.piece_clipped)  # fmt: skip
        t3 = time.perf_counter()
        K.round_timing(t, r["core_ptr"], r["units"], r["unit_ptr"], r["unit_pieces"], r["lo"], r["hi"], r["b_in"],
                       r["b_out"], cost, fire_cycles, core.pipeline_cycles, mem.dram_latency_cycles,
                       mem.dram_bytes_per_cycle, busy)  # fmt: skip
        t4 = time.perf_counter()
        for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[key] += dt
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    graph, x, w, th = dense_layer()
    sim = Simulator(compile(graph, HardwareConfig()))
    wt = aligned(w.T.astype(np.int8).reshape(-1)).reshape(N, N)  # placed as bench_sim.py places them
    active, th64, v = np.flatnonzero(x).astype(np.int64), th.astype(np.int64), aligned(np.zeros(N, np.int32))
    fns = {"run": lambda: sim.run(x), "bare32": lambda: bare_layer(wt, active, th64, T, v)}
    for fn in fns.values():
        fn()  # warm-up: compilation
    stepwise(sim, x)
    times: dict[str, list[float]] = {k: [] for k in (*fns, "stepwise")}
    for _ in range(args.repeat):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for key, dt in stepwise(sim, x).items():
            times.setdefault(key, []).append(dt)
        times["stepwise"].append(time.perf_counter() - t0)
    print(f"{'':14s} {'median ms':>10s} {'min ms':>8s}")
    for key, ts in times.items():
        print(f"{key:14s} {np.median(ts) * 1e3:10.3f} {np.min(ts) * 1e3:8.3f}")
    print(f"run / bare32: {np.median(times['run']) / np.median(times['bare32']):.2f} (medians)")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.repeat):
        sim.run(x)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
