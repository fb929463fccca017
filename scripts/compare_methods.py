"""Compare the two conversion methods on the same data and the same arrays.

CSDformer (``tiny-digits``: QAT, NReLU attention, DIF neurons) and MBE (``tiny-digits-vit``: a
standard float ViT with softmax, LayerNorm and GELU converted without retraining, and
``tiny-digits-mlp``, a float GELU MLP) are mapped onto each array and simulated cycle by cycle on
the same test images; the table gives accuracy, time steps, spikes, cycles, latency and energy
per inference (docs/mbe.md quotes it). Default arrays: ``configs/array-8x8-mbe-vit.toml`` (the
ViT runs in rounds mode there) and ``configs/array-24x24-mbe-vit.toml`` (the ViT fits resident).

    python scripts/compare_methods.py [--samples N] [--hardware FILE ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from spikeforge.workflow import simulate_model

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
HARDWARE = [CONFIGS / "array-8x8-mbe-vit.toml", CONFIGS / "array-24x24-mbe-vit.toml"]
RUNS = [
    ("CSDformer (QAT, DIF)", "tiny-digits", None),
    ("MBE (training-free)", "tiny-digits-vit", 8),
    ("MBE (training-free)", "tiny-digits-vit", 16),
    ("MBE (training-free)", "tiny-digits-mlp", 16),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--hardware", type=Path, nargs="+", default=HARDWARE, help="arrays (default: both above)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    rows = []
    print(
        "| array | method | model | T | steps | float acc. | SNN acc. | spikes | synaptic ops + MACs | cycles "
        "| mode | energy (horowitz45) | paper convention |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for hardware, (method, model, t) in ((h, r) for h in args.hardware for r in RUNS):
        t0 = time.time()
        r = simulate_model(model, hardware, samples=args.samples, timesteps=t, progress=False)
        acc = r.accuracy
        flt = acc.get("float_qat") if acc.get("float_qat") is not None else acc.get("ann_float")
        row = {
            "hardware": hardware.name,
            "method": method,
            "model": model,
            "timesteps": r.timesteps,
            "total_steps": r.total_steps,
            "float_accuracy": flt,
            "snn_accuracy": acc["snn"],
            "exact": r.exactness["exact"],
            "spikes": r.spikes_per_inference,
            "synaptic_ops": r.synaptic_ops_per_inference,
            "macs": r.macs_per_inference,
            "cycles": r.cycles_per_inference,
            "latency_s": r.latency_s,
            "energy_pj": r.energy_pj["total"],
            "paper_convention_pj": r.energy_pj["paper_convention"],
            "mode": r.mode,
            "cores_used": r.cores_used,
            "samples": r.samples,
            "wall_s": round(time.time() - t0, 1),
        }
        rows.append(row)
        print(
            f"| {hardware.stem.removeprefix('array-')} | {method} | {model} | {r.timesteps} | {r.total_steps} | "
            f"{flt:.4f} | {acc['snn']:.4f} | {row['spikes']:,.0f} | {row['synaptic_ops']:,.0f} + {row['macs']:,.0f} | "
            f"{row['cycles']:,.0f} | {r.mode} | {row['energy_pj'] / 1e6:.2f} uJ | "
            f"{row['paper_convention_pj'] / 1e3:.0f} nJ |",
            flush=True,
        )
    print(
        f"\n{rows[0]['samples']} test images; every run equal to the functional executor: "
        f"{all(r['exact'] for r in rows)}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
