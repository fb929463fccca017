"""FPGA utilisation and Fmax of generated configurations, written up in docs/fpga.md.

    python scripts/bench_fpga.py [--target ecp5-85k] [--out benchmarks/results/bench_fpga.json]

Each configuration is built by ``spikeforge.rtl.fpga`` (YoWASP Yosys + nextpnr) holding the
demonstration network (``rtl.fpga.demonstration_program``); builds go to ``build/fpga/<name>``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.rtl.fpga import build_fpga, fpga_design

ROOT = Path(__file__).resolve().parents[1]


def _hw(rows: int, cols: int, neurons: int, lanes: int) -> HardwareConfig:
    return HardwareConfig(array=ArrayConfig(rows, cols), core=CoreConfig(axons=neurons, neurons=neurons, lanes=lanes))


CONFIGS = {
    "1 core, 16 neurons, 4 lanes": _hw(1, 1, 16, 4),
    "2 x 2, 16 neurons, 4 lanes": _hw(2, 2, 16, 4),
    "1 core, 64 neurons, 16 lanes": _hw(1, 1, 64, 16),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="ecp5-85k")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_fpga.json")
    ap.add_argument("--only", help="build only the configurations whose name contains this")
    args = ap.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name, hw in CONFIGS.items():
        if args.only and args.only not in name:
            continue
        dut, what = fpga_design(hw)
        t0 = time.time()
        r = build_fpga(dut, args.target, ROOT / "build" / "fpga" / name.replace(" ", "").replace(",", "_"), design=what)
        row = {k: v for k, v in r.to_dict().items() if k not in ("logs",)}
        row["wall_seconds"] = round(time.time() - t0, 1)
        results[f"{args.target}: {name}"] = row
        print(
            f"{args.target} {name}: {r.luts:,} LUT4 cells, {r.ffs:,} FFs, {r.brams} BRAM, {r.dsps} DSP, "
            f"Fmax {r.fmax_mhz:.1f} MHz ({row['wall_seconds']} s)"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
