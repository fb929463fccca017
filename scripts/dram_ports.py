"""Which DRAM channels the swap- and rounds-mode RTL builds, and with how many records per cycle.

    python scripts/dram_ports.py

For the bundled models on the bundled hardware files that map them in ``swap`` or ``rounds`` mode,
each ``[memory]`` channel of a grid (``dram_bytes_per_cycle`` 16 to 128, ``dram_latency_cycles`` 0
to 100) is compiled and planned (``swap_plan``, ``rounds_plan``: no simulation). Prints, per point,
the plan's mode and the DMA engine's records (swap) or words (rounds) per cycle, with the cores'
contexts (one per piece structure) against their pieces (and, in rounds mode, the DRAM's words with
its ring of spike rows), or the generator's refusal. A
transfer of ``b`` bytes takes ``latency + ceil(b / bytes_per_cycle)`` cycles (section 7); the
engine needs as many records per cycle as make every piece's or round's words fit those cycles.
"""

from __future__ import annotations

import dataclasses

from spikeforge.mapping import compile
from spikeforge.mapping.hardware import load_hardware
from spikeforge.rtl import RtlError
from spikeforge.rtl.rounds import rounds_plan
from spikeforge.rtl.swap import context_of, swap_plan
from spikeforge.workflow import graph_for

CASES = (
    ("tiny-digits-mlp", "configs/array-1x3-mbe.toml"),
    ("tiny-digits-mlp", "configs/array-1x1-mbe.toml"),
    ("tiny-digits", "configs/array-1x1.toml"),
    ("tiny-digits", "configs/array-4x4.toml"),
)
BYTES_PER_CYCLE = (16, 32, 64, 128)
LATENCY = (0, 20, 100)


def main() -> None:
    for model, path in CASES:
        graph, base = graph_for(model), load_hardware(path)
        for bpc in BYTES_PER_CYCLE:
            for lat in LATENCY:
                memory = dataclasses.replace(base.memory, dram_bytes_per_cycle=bpc, dram_latency_cycles=lat)
                program = compile(graph, dataclasses.replace(base, memory=memory))
                mode = program.plan.mode
                try:
                    plan = swap_plan(program) if mode == "swap" else rounds_plan(program)
                    got = f"{plan.ports} per cycle"
                    if mode == "swap":  # the swap cores' contexts: one per piece structure (rtl.swap.context_of)
                        ctxs = sum(max(context_of(ps)) + 1 for ps in plan.contexts.values())
                        got += f", {ctxs} contexts for {sum(len(ps) for ps in plan.contexts.values())} pieces"
                    else:  # the rounds cores' contexts, one per structure of their rounds' pieces (RoundUnit.context)
                        ctxs = sum(max(u.context for u in us) + 1 for us in plan.units.values())
                        got += f", {ctxs} contexts for {sum(len(us) for us in plan.units.values())} rounds' pieces"
                        # the DRAM's words, spike rows in a ring of 2^ring_shift steps (RoundsPlan.ring_shift)
                        got += f", {len(plan.dram)} DRAM words (rows: a ring of {1 << plan.ring_shift} steps)"
                except RtlError as e:
                    got = f"refused: {e}"
                print(f"{model:16} {path:28} bytes/cycle {bpc:3} latency {lat:3} {mode:6} {got}", flush=True)


if __name__ == "__main__":
    main()
