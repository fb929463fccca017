"""Co-simulate some cores of the MBE-converted ViT against the simulator, one core at a time (not in CI).

The whole ViT needs more cores at once than the 8 x 8 file holds (rounds mode, which the RTL does not
build); on ``configs/array-24x24-mbe-vit.toml`` it is resident, so every core can be replayed alone on
the one-core bench (``spikeforge.rtl.cosim_core``) from the simulator's trace of one digit::

    python scripts/cosim_vit_pieces.py --populations b0.s,b0.m,b0.e,b0.rs,b0.ev --per-population 1

prints, per core, what was compared (events, packets, membranes, payloads, running sums and shift
words, phase ends, busy cycles) and whether everything matched.
"""

from __future__ import annotations

import argparse
import time

from spikeforge.mapping import compile, load_hardware
from spikeforge.models import load_digits
from spikeforge.models.vit import load_vit
from spikeforge.models.vit_graph import VitGraphOptions, vit_to_mbe_graph
from spikeforge.rtl import cosim_core
from spikeforge.sim import Simulator

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, compile the ViT, run the simulator once with its trace and replay the cores."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", default="configs/array-24x24-mbe-vit.toml")
    ap.add_argument("--populations", default="b0.s,b0.m,b0.e,b0.rs,b0.ev", help="comma-separated population names")
    ap.add_argument("--per-population", type=int, default=1, help="pieces co-simulated per population")
    ap.add_argument("--timesteps", type=int, default=8)
    ap.add_argument("--sample", type=int, default=0, help="index of the test digit")
    args = ap.parse_args(argv)
    digits = load_digits()
    graph = vit_to_mbe_graph(load_vit(), VitGraphOptions(timesteps=args.timesteps), digits, fit=False)
    program = compile(graph, load_hardware(args.hardware))
    print(f"{len(program.pieces)} pieces, plan {program.plan.mode}, {program.hardware.array.cores} cores")
    x = digits.x_test[args.sample].astype("int64")
    t0 = time.perf_counter()
    run = Simulator(program, trace=True).run(x)
    print(f"simulator: {len(run.trace)} steps, {int(run.step_cycles.sum())} cycles, {time.perf_counter() - t0:.1f} s")
    ok = True
    for name in args.populations.split(","):
        pieces = [p for p in program.pieces if p.population == name][: args.per_population]
        for p in pieces:
            t0 = time.perf_counter()
            rep = cosim_core(program, p.id, x, run=run)
            ok &= rep.ok
            status = "match" if rep.ok else f"MISMATCH ({len(rep.mismatches)}): {rep.first_mismatch()}"
            print(
                f"{name} piece {p.id} ({p.kind}, n = {p.n}): {rep.steps} steps, {rep.events} events in, "
                f"{rep.packets} packets out, {rep.cycle_checks} cycle checks, {rep.busy_checks} busy counts, "
                f"{rep.membranes} membranes, {rep.spikes} payloads or spikes, {rep.sums} sums and shift words, "
                f"{rep.rtl_cycles} RTL cycles, {time.perf_counter() - t0:.0f} s: {status}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
