"""The ``spikeforge`` command: a thin layer over the library functions.

Every user error (bad file, bad value) is reported as one sentence on stderr with exit
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .models.errors import SpikeForgeError

__all__ = ["main", "build_parser", "reference_markdown"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import format_report, run_demo

    report = run_demo(
        model=args.model,
        out=args.out,
        timesteps=args.timesteps,
        neuron=args.neuron,
        samples=args.samples,
        data=args.data,
        progress=not args.quiet,
    )
    print(format_report(report))
    if args.out:
        plots = f" and the plots: {', '.join(report['plots'])}" if report["plots"] else ""
        print(f"wrote {Path(args.out) / 'report.json'}{plots}")
    return 0


def _cmd_accuracy(args: argparse.Namespace) -> int:
    import numpy as np

    from .demo import accuracy_by_timesteps, format_accuracy_table
    from .models import float_forward, load_digits, load_model

    ckpt = load_model(args.model)
    data = load_digits()
    float_acc = float(np.mean(float_forward(ckpt, data.x_test).argmax(1) == data.y_test))
    rows = accuracy_by_timesteps(args.model, range(1, args.max_timesteps + 1), progress=not args.quiet)
    print(format_accuracy_table(rows, float_acc, ckpt.config.levels))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .models import convert, load_model, save_graph
    from .models.mbe_graph import mlp_to_mbe_graph
    from .workflow import mlp_checkpoint

    mlp = mlp_checkpoint(args.model)
    if mlp is not None:  # the MBE path: a float MLP, converted without retraining
        graph = mlp_to_mbe_graph(mlp, args.timesteps or 16, weight_bits=args.weight_bits, v_bits=args.v_bits)
    else:
        graph = convert(
            load_model(args.model),
            timesteps=args.timesteps,
            weight_bits=args.weight_bits,
            v_bits=args.v_bits,
            neuron=args.neuron,
        )
    try:
        save_graph(graph, args.out)
    except OSError as exc:
        raise SpikeForgeError(f"cannot write {args.out}: {exc.strerror}.") from None
    neurons = sum(p.size for p in graph.populations if p.kind in ("neuron", "maxpool", "mbe"))
    synapses = sum(p.synapses for p in graph.projections)
    print(
        f"{len(graph.populations)} populations, {neurons} neurons, {synapses} stored weights, "
        f"T = {graph.timesteps}, {graph.total_steps} steps ({graph.latency_steps} latency); wrote {args.out}"
    )
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    from .workflow import map_model

    program = map_model(args.model, args.hardware, args.out, args.timesteps, images=args.images)
    print(program.report().format())
    if args.out:
        print(
            f"wrote {args.out}/graph.npz, program.npz, mapping.txt, mapping.json" + (", images/" if args.images else "")
        )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .sim import format_summary
    from .workflow import simulate_model

    result = simulate_model(
        args.model,
        args.hardware,
        samples=args.samples,
        out=args.out,
        data=args.data,
        profile=args.profile,
        timesteps=args.timesteps,
        progress=not args.quiet,
    )
    print(format_summary(result))
    if args.out:
        print(f"wrote {Path(args.out) / 'result.json'}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .plots import draw_all
    from .sweep import run_sweep

    result = run_sweep(
        args.sweep,
        args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        model=args.model,
        samples=args.samples,
        progress=not args.quiet,
    )
    print(format_sweep(result.rows, result.parameters))
    print(f"{result.computed} points simulated, {result.reused} reused from {result.out / 'points'}", end="")
    print(f", {len(result.failed)} failed (see the error column)" if result.failed else "")
    if len(result.failed) < len(result.rows):
        from .sweep import load_sweep_result

        doc = load_sweep_result(result.out)
        draw_all(result.rows, doc["per_population"], result.out, doc["settings"].get("model", ""))
        print(f"wrote {result.out / 'sweep.csv'}, sweep.json and the plots (*.png)")
    return 0 if not result.failed else 1


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plots import draw_all
    from .sweep import load_sweep_result

    doc = load_sweep_result(args.dir)
    out = args.out or args.dir
    paths = draw_all(doc["rows"], doc["per_population"], out, doc["settings"].get("model", ""))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def format_sweep(rows: list[dict], parameters: tuple[str, ...]) -> str:
    """The table ``spikeforge sweep`` prints: one line per point."""
    head = f"{'point':>5}  {'design point':<28} {'mode':<8} {'accuracy':>8} {'cycles':>12} {'latency':>11} "
    head += f"{'energy':>10} {'paper conv.':>11} {'EDP (pJ s)':>10}"
    lines = [head]
    for r in rows:
        if r["error"]:
            lines.append(f"{r['point']:>5}  {r['label']:<28} failed: {r['error']}")
            continue
        acc = "-" if r["accuracy_snn"] is None else f"{r['accuracy_snn']:.4f}"
        lines.append(
            f"{r['point']:>5}  {r['label']:<28} {r['mode']:<8} {acc:>8} {r['cycles_per_inference']:>12,.0f} "
            f"{r['latency_s'] * 1e6:>8,.1f} us {r['energy_total_pj'] / 1e6:>7.3g} uJ "
            f"{r['energy_paper_convention_pj'] / 1e3:>8.4g} nJ {r['edp_pj_s']:>10.3g}"
        )
    return "\n".join(lines)


@contextmanager
def _stages(quiet: bool) -> Iterator[None]:
    """Progress of an RTL run on stderr: on a terminal, one line with the stage under way
    (``spikeforge.rtl.progress``) and the time elapsed, refreshed every second (the long stages are
    single calls into Amaranth, Yosys or Icarus); elsewhere (a log file, CI) one line per stage with
    the time it started, not a line a second; nothing when ``quiet``."""
    if quiet:
        yield
        return
    from .rtl.progress import reporting

    if not sys.stderr.isatty():
        t0 = time.monotonic()

        def line(name: str) -> None:
            minutes, seconds = divmod(int(time.monotonic() - t0), 60)
            print(f"[{minutes:02d}:{seconds:02d}] {name}", file=sys.stderr, flush=True)

        with reporting(line):
            yield
        line("done")
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc="starting", bar_format="{desc} [{elapsed}]")
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        with reporting(lambda name: bar.set_description_str(name, refresh=True)):
            yield
    finally:
        stop.set()
        ticker.join()
        bar.set_description_str("done", refresh=True)
        bar.close()


def _cmd_rtl(args: argparse.Namespace) -> int:
    from .mapping import load_hardware, load_program
    from .rtl import export_rtl

    hw = load_hardware(args.hardware)
    program = load_program(args.program, hw) if args.program else None
    with _stages(args.quiet):
        manifest = export_rtl(hw, args.out, program)
    for mod in manifest["modules"]:
        mems = ", ".join(mod["memories"])
        print(f"{mod['file']}: module {mod['module']}, {len(mod['ports'])} ports, memories {mems}")
    if manifest.get("mode") == "swap":
        d = manifest["dram"]
        loads = sum(len(c["pieces"]) for c in manifest["cores"])
        print(
            f"swap mode: {manifest['file']} with its DMA engine, {d['file']} ({d['words']} records of "
            f"{d['bits']} bits: {loads} piece loads) and {Path(args.out) / 'manifest.json'}"
        )
        return 0
    if manifest.get("mode") == "rounds":
        d = manifest["dram"]
        rounds = sum(len(c["rounds"]) for c in manifest["cores"])
        print(
            f"rounds mode: {manifest['file']} with its DMA engine, {d['file']} ({d['words']} words of "
            f"{d['bits']} bits: {rounds} rounds per step at most) and {Path(args.out) / 'manifest.json'}"
        )
        return 0
    print(f"wrote {len(manifest['modules'])} SystemVerilog modules, init files and {Path(args.out) / 'manifest.json'}")
    if program is None:
        # a core's logic is elaborated for the piece structures it runs (docs/rtl.md, "Not yet built")
        print(
            "no --program: every core is idle (its logic is generated for the pieces of a program; "
            "write one with `spikeforge map --out DIR` and pass --program DIR)"
        )
    return 0


def _cmd_cosim(args: argparse.Namespace) -> int:
    from .workflow import cosim_model

    with _stages(args.quiet):
        report = cosim_model(args.model, args.hardware, samples=args.samples, data=args.data, workdir=args.workdir)
    print(report.format())
    return 0 if report.ok else 1


def _cmd_fpga(args: argparse.Namespace) -> int:
    from .mapping import load_hardware, load_program
    from .rtl.fpga import build_fpga, fpga_design

    hw = load_hardware(args.hardware)
    program = load_program(args.program, hw) if args.program else None
    dut, what = fpga_design(hw, program)
    r = build_fpga(dut, args.target, args.out, freq_mhz=args.freq, design=what)
    print(f"{args.target}: {what}")
    print(f"  logic cells {r.luts:,}/{r.luts_total:,}  flip-flops {r.ffs:,}/{r.ffs_total:,}  ", end="")
    print(f"block RAMs {r.brams}/{r.brams_total}  DSPs {r.dsps}/{r.dsps_total}  Fmax {r.fmax_mhz:.1f} MHz")
    print(f"  (the observing top adds {r.wrapper_ffs} flip-flops); wrote {Path(args.out) / 'fpga.json'} and the logs")
    return 0


def _cmd_import_nir(args: argparse.Namespace) -> int:
    from .models import save_graph
    from .models.nir_io import import_nir

    imported = import_nir(
        args.file,
        timesteps=args.timesteps,
        dt=args.dt,
        weight_bits=args.weight_bits,
        v_bits=args.v_bits,
        value_bits=args.value_bits,
    )
    g = imported.graph
    try:
        save_graph(g, args.out)
    except OSError as exc:
        raise SpikeForgeError(f"cannot write {args.out}: {exc.strerror}.") from None
    for p in g.populations[1:]:
        err = imported.rounding[p.name]
        how = "exact" if err == 0 else f"rounded, largest error {err:.3g} (in NIR units)"
        print(f"{p.name}: {p.kind} {p.shape}, scale {imported.scales[p.name]:g}, {how}")
    print(f"T = {g.timesteps}, {g.total_steps} steps; {'exact' if imported.exact else 'NOT exact'}; wrote {args.out}")
    return 0


def _cmd_export_nir(args: argparse.Namespace) -> int:
    from .models.nir_io import export_nir
    from .workflow import graph_for

    graph = graph_for(args.model, args.timesteps)
    export_nir(graph, args.out)
    print(f"wrote {args.out}: {len(graph.populations)} populations, {len(graph.projections)} projections")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SpikeForgeError(
            "training needs PyTorch: pip install torch==2.13.0 (CPU), then pip install 'spikeforge[train]'."
        ) from None
    from .models.train import main as train_main

    argv = ["--out", str(args.out), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    if args.data:
        argv += ["--data", str(args.data)]
    return train_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``spikeforge`` command."""
    ap = argparse.ArgumentParser(prog="spikeforge", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo", help="convert the bundled model, check it, simulate it on the 4 x 4 array, report and plot"
    )
    d.add_argument(
        "--model",
        default="tiny-digits",
        help="bundled model (tiny-digits; tiny-digits-vit: a standard ViT, MBE conversion) or checkpoint .npz",
    )
    d.add_argument("--out", type=Path, help="directory for report.json and the plots")
    d.add_argument("--timesteps", type=_positive_int, help="time steps T (default: the model's levels L)")
    d.add_argument("--neuron", choices=("dif", "if"), default="dif", help="delayed IF (exact) or plain IF")
    d.add_argument("--samples", type=_positive_int, help="evaluate only the first N test images")
    d.add_argument("--data", type=Path, help="data set .npz (default: bundled digits)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)

    a = sub.add_parser("accuracy", help="table of ANN and SNN (IF, DIF) accuracy for T = 1..N on the digits")
    a.add_argument("--model", default="tiny-digits", help="bundled model name or checkpoint .npz")
    a.add_argument("--max-timesteps", type=_positive_int, default=8, help="largest T of the table")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_accuracy)

    c = sub.add_parser("convert", help="convert a checkpoint to an integer SNN graph file")
    c.add_argument(
        "--model",
        default="tiny-digits",
        help="bundled model (tiny-digits: CSDformer; tiny-digits-mlp: MBE, no retraining) or checkpoint .npz",
    )
    c.add_argument("--out", type=Path, required=True, help="graph file to write (.npz)")
    c.add_argument("--timesteps", type=_positive_int, help="time steps T (default: the model's levels L)")
    c.add_argument("--neuron", choices=("dif", "if"), default="dif", help="delayed IF (exact) or plain IF")
    c.add_argument("--weight-bits", type=_positive_int, default=8, help="signed weight width")
    c.add_argument("--v-bits", type=_positive_int, default=24, help="signed membrane, threshold and bias width")
    c.set_defaults(func=_cmd_convert)

    m = sub.add_parser("map", help="map a model onto a core array and print the mapping report")
    m.add_argument(
        "--model", default="tiny-digits", help="bundled model (tiny-digits, tiny-digits-mlp), checkpoint or graph .npz"
    )
    m.add_argument("--hardware", type=Path, required=True, help="hardware description (.toml)")
    m.add_argument("--out", type=Path, help="directory for the program")
    m.add_argument("--timesteps", type=_positive_int, help="T when converting a checkpoint")
    m.add_argument("--images", action="store_true", help="also write every piece's memory images")
    m.set_defaults(func=_cmd_map)

    s = sub.add_parser("simulate", help="map a model and run the cycle-level simulator on test images")
    s.add_argument(
        "--model",
        default="tiny-digits",
        help="bundled model (tiny-digits, tiny-digits-mlp), checkpoint, graph .npz or program dir",
    )
    s.add_argument("--hardware", type=Path, required=True, help="hardware description (.toml)")
    s.add_argument("--samples", type=_positive_int, help="simulate the first N test images (default: all)")
    s.add_argument("--out", type=Path, help="directory for result.json")
    s.add_argument("--data", type=Path, help="data set .npz (default: bundled digits)")
    s.add_argument(
        "--profile", help="energy profile: horowitz45, paper, loihi or a .toml (default: the hardware file's)"
    )
    s.add_argument("--timesteps", type=_positive_int, help="T when converting a checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_simulate)

    w = sub.add_parser("sweep", help="map and simulate a model at every point of a sweep file; CSV, JSON, plots")
    w.add_argument("sweep", type=Path, help="sweep file (.toml): hardware sections plus [sweep]")
    w.add_argument("--out", type=Path, default=Path("sweep-results"), help="result directory (default: %(default)s)")
    w.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786); default: local processes")
    w.add_argument("--workers", type=_positive_int, help="local processes (default: one per CPU)")
    w.add_argument("--model", help="override the sweep file's model")
    w.add_argument("--samples", type=_positive_int, help="override the sweep file's number of test images")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_cmd_sweep)

    pl = sub.add_parser("plot", help="redraw a sweep's plots from DIR/sweep.json")
    pl.add_argument("dir", type=Path, help="a sweep's result directory")
    pl.add_argument("--out", type=Path, help="where to write the PNG files (default: DIR)")
    pl.set_defaults(func=_cmd_plot)

    r = sub.add_parser("rtl", help="write the SystemVerilog of the cores, memory init files and a manifest")
    r.add_argument("--hardware", type=Path, required=True, help="hardware description (.toml)")
    r.add_argument("--program", type=Path, help="program directory of `spikeforge map` (memories initialised)")
    r.add_argument("--out", type=Path, required=True, help="directory for the .sv, .hex and manifest.json files")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.set_defaults(func=_cmd_rtl)

    cs = sub.add_parser("cosim", help="run the RTL on Icarus Verilog and compare it with the simulator cycle for cycle")
    cs.add_argument("--model", default="tiny-digits", help="bundled model, checkpoint, graph .npz or program dir")
    cs.add_argument("--hardware", type=Path, required=True, help="hardware description (.toml)")
    cs.add_argument("--samples", type=_positive_int, default=1, help="co-simulate the first N test images")
    cs.add_argument("--data", type=Path, help="data set .npz (default: bundled digits)")
    cs.add_argument("--workdir", type=Path, help="keep the generated SystemVerilog and Icarus build here")
    cs.add_argument("--quiet", action="store_true", help="no progress line")
    cs.set_defaults(func=_cmd_cosim)

    fp = sub.add_parser("fpga", help="synthesise, place and route the generated array for an FPGA (fpga extra)")
    fp.add_argument("--hardware", type=Path, required=True, help="hardware description (.toml)")
    fp.add_argument("--target", required=True, choices=("ecp5-85k", "ecp5-25k", "ice40-up5k"), help="device")
    fp.add_argument("--program", type=Path, help="program directory (default: a dense demonstration network)")
    fp.add_argument("--out", type=Path, default=Path("fpga-out"), help="directory for fpga.json and the logs")
    fp.add_argument("--freq", type=float, default=100.0, help="clock constraint in MHz (default: %(default)s)")
    fp.set_defaults(func=_cmd_fpga)

    ni = sub.add_parser("import-nir", help="convert a NIR file (snnTorch, Norse, Sinabs, ...) into an SNN graph")
    ni.add_argument("file", type=Path, help="NIR file (.nir, HDF5)")
    ni.add_argument("--out", type=Path, required=True, help="graph file to write (.npz)")
    ni.add_argument("--timesteps", type=_positive_int, help="steps T to present the input (required unless recorded)")
    ni.add_argument(
        "--dt", type=float, default=1e-4, help="time step of the LIF discretisation in s (default: %(default)s)"
    )
    ni.add_argument("--weight-bits", type=_positive_int, help="signed weight width (default: 8)")
    ni.add_argument("--v-bits", type=_positive_int, help="signed membrane and threshold width (default: 24)")
    ni.add_argument("--value-bits", type=_positive_int, help="unsigned input value width (default: 8)")
    ni.set_defaults(func=_cmd_import_nir)

    ne = sub.add_parser("export-nir", help="write the NIR-expressible part of a model as a NIR file")
    ne.add_argument("model", help="bundled model, checkpoint or graph .npz")
    ne.add_argument("--out", type=Path, required=True, help="NIR file to write")
    ne.add_argument("--timesteps", type=_positive_int, help="T when converting a checkpoint")
    ne.set_defaults(func=_cmd_export_nir)

    t = sub.add_parser("train", help="quantization-aware training (needs the train extra)")
    t.add_argument("--out", type=Path, required=True, help="checkpoint to write (.npz)")
    t.add_argument("--data", type=Path, help="data set .npz (default: bundled digits)")
    t.add_argument("--epochs", type=_positive_int, default=150, help="training epochs")
    t.add_argument("--seed", type=int, default=0, help="seed of every random choice (weights are reproducible)")
    t.set_defaults(func=_cmd_train)
    return ap


def reference_markdown() -> str:
    """``docs/cli.md``: every verb and option, generated from the parser so it cannot drift.

    Regenerate with ``python scripts/gen_cli_reference.py``; a test compares the file to this.
    """
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    out = [
        "# Command-line reference",
        "",
        "Generated from the parser by `python scripts/gen_cli_reference.py`; `tests/test_cli.py` checks",
        "that this page is current. Every verb is a thin layer over a library function (named in each",
        "section). A user error prints one sentence, `spikeforge VERB: error: ...`, and exits with 2.",
        "",
        "| verb | what it does |",
        "|---|---|",
    ]
    out += [f"| [`{name}`](#spikeforge-{name}) | {helps[name]} |" for name in sub.choices]
    for name, parser in sub.choices.items():
        func = parser.get_default("func")
        out += ["", f"## spikeforge {name}", "", helps[name][0].upper() + helps[name][1:] + ".", ""]
        usage = argparse.HelpFormatter(parser.prog, width=100)  # fixed width: the page must not depend on the tty
        usage.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
        out += ["```", usage.format_help().strip(), "```", ""]
        out += ["| argument | meaning |", "|---|---|"]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = ", ".join(action.option_strings) or action.dest
            meaning = (action.help or "") % {"default": action.default} if action.help else ""
            if action.choices:
                meaning += f" (one of {', '.join(map(str, action.choices))})"
            if action.required or not action.option_strings:
                meaning += " (required)"
            elif action.default not in (None, False) and "default" not in meaning:
                meaning += f" (default: {action.default})"
            out.append(f"| `{flag}` | {meaning.strip()} |")
        out += ["", f"Library function: `{_LIBRARY[func.__name__]}`."]
    return "\n".join(out) + "\n"


#: The library function behind each verb (for the reference page).
_LIBRARY = {
    "_cmd_demo": "spikeforge.demo.run_demo",
    "_cmd_accuracy": "spikeforge.demo.accuracy_by_timesteps",
    "_cmd_convert": "spikeforge.models.convert",
    "_cmd_map": "spikeforge.workflow.map_model",
    "_cmd_simulate": "spikeforge.workflow.simulate_model",
    "_cmd_sweep": "spikeforge.sweep.run_sweep",
    "_cmd_plot": "spikeforge.plots.draw_all",
    "_cmd_rtl": "spikeforge.rtl.export_rtl",
    "_cmd_cosim": "spikeforge.workflow.cosim_model",
    "_cmd_fpga": "spikeforge.rtl.fpga.build_fpga",
    "_cmd_import_nir": "spikeforge.models.nir_io.import_nir",
    "_cmd_export_nir": "spikeforge.models.nir_io.export_nir",
    "_cmd_train": "spikeforge.models.train.main",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spikeforge`` console command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpikeForgeError as exc:
        print(f"spikeforge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
