"""Measure the mapping figures quoted in docs/mapping.md.

Usage: ``python scripts/bench_mapping.py`` (about 15 s). Prints, for the bundled model on the
three shipped arrays, the mapping report's figures and the naive placement's hop distance, then
the ImageNet-size shape's sizes and conversion / compilation / report times on the default array.
"""

from __future__ import annotations

import time

import numpy as np

from spikeforge.mapping import HardwareConfig, compile, load_hardware
from spikeforge.mapping.plan import place_naive, traffic_cost
from spikeforge.models import convert, load_model
from spikeforge.models.synthetic import imagenet_config, random_checkpoint


def main() -> None:
    graph = convert(load_model("tiny-digits"))
    print(
        "| array | mode | pieces | cores used | live at once | packets per spike | average hops "
        "| naive placement hops | DRAM bytes per inference |"
    )
    for size in ("1x1", "4x4", "16x16"):
        hw = load_hardware(f"configs/array-{size}.toml")
        program = compile(graph, hw)
        r = program.report()
        naive = "-"
        if r.mode != "rounds":
            cost, weight = traffic_cost(
                place_naive(list(program.pieces), program.plan.live, hw), program.traffic, hw.array.cols
            )
            naive = f"{cost / weight:.2f}"
        print(
            f"| {size} | {r.mode} | {r.pieces} | {r.cores_used} | {r.max_live_pieces} | {r.packets_per_spike:.2f} "
            f"| {r.average_hops:.2f} | {naive} | {r.dram_bytes_per_inference:,} |"
        )
    t0 = time.perf_counter()
    big = convert(random_checkpoint(imagenet_config(), 0))
    t1 = time.perf_counter()
    program = compile(big, HardwareConfig())
    t2 = time.perf_counter()
    r = program.report()
    t3 = time.perf_counter()
    neurons = sum(p.size for p in big.populations if p.kind != "input")
    print(
        f"ImageNet-size: {neurons:,} neurons/units in {len(big.populations)} populations, {big.total_steps} steps; "
        f"{r.pieces:,} pieces, at most {r.max_live_pieces:,} live, mode {r.mode}, "
        f"DRAM {r.dram_bytes_per_inference / 1e9:.1f} GB per inference"
    )
    print(f"convert {t1 - t0:.1f} s, compile {t2 - t1:.1f} s, report {t3 - t2:.1f} s")
    assert np.isfinite(r.average_hops)


if __name__ == "__main__":
    main()
