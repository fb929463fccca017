"""Speed of the RTL co-simulation (cocotb + Icarus Verilog) and of the Python simulator on one scenario.

Scenario: ``in (16 graded) -> h1 (256 DIF) -> h2 (8 DIF) -> out (3)`` on a 2 x 3 array of
256-neuron, 16-lane cores (resident: one piece per core), T = 4. The RTL figures are the cycles
the Icarus run advanced, divided by the bench's wall time (elaboration and compilation not
counted), of the 256-neuron core alone (``cosim_core``) and of the whole array (``cosim_array``:
six cores, six routers); the simulator figure is the cycles of every step of the whole array
divided by the wall time of ``Simulator.run`` (median of ``--repeat`` runs after a warm-up).
Writes ``benchmarks/results/bench_rtl.json``::

    python scripts/bench_rtl.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from spikeforge.rtl import cosim_array, cosim_core
from spikeforge.rtl.scenarios import dense_network, dense_program
from spikeforge.sim import Simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/bench_rtl.json")
    args = ap.parse_args()
    graph = dense_network(3, (16, 256, 8), dif=True)
    program = dense_program(graph, 2, 3, neurons=256, lanes=16)
    assert program.plan.mode == "resident"
    x = np.random.default_rng(3).integers(0, 16, 16)
    piece = next(p.id for p in program.pieces if p.population == "h1")

    sim = Simulator(program, trace=True)
    run = sim.run(x)  # warm-up (JIT)
    sim_cycles = int(run.step_cycles.sum())
    walls = []
    for _ in range(args.repeat):
        s = Simulator(program)
        t0 = time.perf_counter()
        s.run(x)
        walls.append(time.perf_counter() - t0)
    sim_wall = statistics.median(walls)

    rtl = []
    for _ in range(args.repeat):
        rep = cosim_core(program, piece, x, run=run)
        assert rep.ok, rep.first_mismatch()
        rtl.append((rep.rtl_cycles, rep.rtl_wall_s))
    rtl_cycles = rtl[0][0]
    rtl_wall = statistics.median(w for _, w in rtl)
    arr = []
    for _ in range(args.repeat):
        rep_a = cosim_array(program, x)
        assert rep_a.ok, rep_a.format()
        arr.append((rep_a.rtl_cycles, rep_a.rtl_wall_s))
    arr_cycles = arr[0][0]
    arr_wall = statistics.median(w for _, w in arr)
    result = {
        "scenario": "in 16 -> h1 256 DIF -> h2 8 DIF -> out 3, 2x3 array of 256-neuron 16-lane cores, T=4",
        "rtl_core": "h1 (256 neurons, 16 lanes)",
        "rtl_events": rep.events,
        "rtl_cycles": rtl_cycles,
        "rtl_wall_s": rtl_wall,
        "rtl_cycles_per_s": rtl_cycles / rtl_wall,
        "sim_array_cycles": sim_cycles,
        "sim_wall_s": sim_wall,
        "sim_cycles_per_s": sim_cycles / sim_wall,
        "ratio_sim_over_rtl": (sim_cycles / sim_wall) / (rtl_cycles / rtl_wall),
        "rtl_array_cycles": arr_cycles,
        "rtl_array_wall_s": arr_wall,
        "rtl_array_cycles_per_s": arr_cycles / arr_wall,
        "ratio_sim_over_rtl_array": (sim_cycles / sim_wall) / (arr_cycles / arr_wall),
        "repeat": args.repeat,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
