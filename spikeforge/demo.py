"""The main job: convert a bundled model, run it as an SNN on its test set, report.

``report.json`` keys (stable; later stages add hardware figures beside them):

``model``, ``timesteps``, ``samples``, ``neuron``, ``accuracy`` (``ann_quantized``, ``snn``,
``float_qat``: fractions in [0, 1]), ``exactness`` (``logits_equal_samples``,
``neurons_checked``, ``neurons_mismatched``, ``exact``), ``latency_steps``, ``total_steps``,
``spikes_per_inference`` and ``spikes_per_population``; from the cycle-level simulator on the
hardware (default: the 4 x 4 array of ``docs/architecture.md``): ``hardware``,
``synaptic_ops_per_inference``, ``cycles_per_inference``, ``latency_s``, ``memory_traffic_bytes``,
``energy_pj`` and ``simulation`` (the whole :class:`~spikeforge.sim.SimResult`); with ``out``,
``plots`` (the PNG files written beside the report, :data:`spikeforge.plots.PLOT_FILES`).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .mapping import HardwareConfig, compile, load_hardware
from .mapping.pieces import MappingError
from .models import convert, float_forward, load_digits, load_model
from .models.errors import SpikeForgeError
from .models.evaluate import evaluate_graph
from .models.executor import run_snn
from .models.mbe_graph import mlp_to_mbe_graph
from .models.mlp import mlp_forward
from .models.npzio import read_npz
from .models.vit import FORMAT as VIT_FORMAT
from .models.vit import vit_forward
from .plots import draw_all
from .sim import simulate
from .sweep import SweepPoint, result_row
from .workflow import check_writable, mlp_checkpoint, test_split, vit_checkpoint

#: Figures copied from the simulation into the report's top level.
SIM_KEYS = ("synaptic_ops_per_inference", "cycles_per_inference", "latency_s", "memory_traffic_bytes", "energy_pj")

__all__ = ["run_demo", "format_report", "is_vit_model", "accuracy_by_timesteps", "format_accuracy_table"]


def run_demo(
    model: str = "tiny-digits",
    out: str | Path | None = None,
    timesteps: int | None = None,
    neuron: str = "dif",
    samples: int | None = None,
    data: str | Path | None = None,
    progress: bool = True,
    hardware: str | Path | None = None,
) -> dict[str, Any]:
    """Convert ``model``, evaluate the integer ANN and the SNN, write ``out/report.json``.

    Parameters
    ----------
    model : str
        Bundled model name or checkpoint path.
    out : path, optional
        Directory for ``report.json`` (created if needed).
    timesteps : int, optional
        ``T`` (default: the model's quantizer levels).
    neuron : {"dif", "if"}
        Neuron model of the conversion.
    samples : int, optional
        Evaluate only the first ``samples`` test images.
    data : path, optional
        Data set ``.npz`` (default: the bundled digits).
    hardware : path, optional
        Hardware description for the simulation (default: the built-in 4 x 4 array).
    """
    t0 = time.time()
    if is_vit_model(model):
        return _run_mbe_demo(str(model), out, timesteps, neuron, samples, data, hardware, progress, t0)
    mlp = mlp_checkpoint(model)
    if mlp is not None:
        return _run_mbe_mlp_demo(str(model), mlp, out, timesteps, neuron, samples, data, hardware, progress, t0)
    ckpt = load_model(model)
    x, y = test_split(data, samples)
    if x.shape[1:] != ckpt.config.image_shape:
        raise SpikeForgeError(
            f"the data's images are {x.shape[1:]} but model {model!r} expects {ckpt.config.image_shape}."
        )
    hw = load_hardware(hardware) if hardware is not None else HardwareConfig()
    if out is not None:
        check_writable(out)
    graph = convert(ckpt, timesteps=timesteps, neuron=neuron)  # type: ignore[arg-type]
    float_acc = float(np.mean(float_forward(ckpt, x).argmax(1) == y))
    ev = evaluate_graph(graph, x, y, progress=progress)
    report: dict[str, Any] = {
        "model": str(model),
        "timesteps": graph.timesteps,
        "levels": ckpt.config.levels,
        "samples": ev.samples,
        "neuron": neuron,
        "accuracy": {"ann_quantized": ev.ann_accuracy, "snn": ev.snn_accuracy, "float_qat": float_acc},
        "exactness": {
            "logits_equal_samples": ev.logits_equal,
            "neurons_checked": ev.neurons_checked,
            "neurons_mismatched": ev.neurons_mismatched,
            "exact": ev.exact,
        },
        "total_steps": graph.total_steps,
        "latency_steps": graph.latency_steps,
        "spikes_per_inference": ev.spikes_per_inference,
        "spikes_per_population": ev.spikes_per_population,
    }
    sim = simulate(
        compile(graph, hw),
        x,
        y,
        model=str(model),
        hardware=str(hardware or "default 4x4"),
        float_accuracy=float_acc,
        progress=progress,
    )
    return _finish(report, sim, hw, out, model, t0)


def _finish(report: dict[str, Any], sim, hw: HardwareConfig, out, model, t0: float) -> dict[str, Any]:
    """Copy the simulation into the report, draw the plots and write ``out/report.json``."""
    report["hardware"] = sim.hardware
    for key in SIM_KEYS:
        report[key] = getattr(sim, key)
    report["simulation"] = sim.to_dict()
    if out is not None:
        out = Path(out)
        label = SweepPoint(index=0, values={}, hardware=hw, settings={}).label
        row = {"point": 0, "label": label, **result_row(report["simulation"], hw)}
        try:
            out.mkdir(parents=True, exist_ok=True)
            report["plots"] = [p.name for p in draw_all([row], sim.per_population, out, str(model))]
            report["wall_seconds"] = round(time.time() - t0, 2)
            (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise SpikeForgeError(f"cannot write the report to {out}: {exc.strerror}.") from None
    else:
        report["wall_seconds"] = round(time.time() - t0, 2)
    return report


def _run_mbe_mlp_demo(model, mlp, out, timesteps, neuron, samples, data, hardware, progress, t0) -> dict[str, Any]:
    """The demo for a float GELU MLP: MBE conversion to an integer graph, executor, then the hardware.

    Default hardware: the built-in 4 x 4 array with the ``mbe`` neuron model added.
    ``accuracy`` has ``ann_float`` (the float MLP) and ``snn`` (the functional executor);
    ``exactness`` compares the simulated logits with the executor's.
    """
    if neuron != "dif":
        raise SpikeForgeError(f"{model} converts with MBE neurons; --neuron {neuron} applies to CSDformer models.")
    x, y = test_split(data, samples)
    if out is not None:
        check_writable(out)
    if hardware is not None:
        hw = load_hardware(hardware)
    else:
        base = HardwareConfig()
        hw = replace(base, core=replace(base.core, neuron_models=(*base.core.neuron_models, "mbe")))
    graph = mlp_to_mbe_graph(mlp, timesteps or 16)
    _check_image_shape(x, graph, model)
    run = run_snn(graph, x, record=False)
    mbe_pops = [p.name for p in graph.populations if p.kind == "mbe"]
    float_acc = float(np.mean(mlp_forward(mlp, x).argmax(1) == y))
    sim = simulate(
        compile(graph, hw),
        x,
        y,
        model=model,
        hardware=str(hardware or "default 4x4 + mbe"),
        float_accuracy=float_acc,
        progress=progress,
    )
    report: dict[str, Any] = {
        "model": model,
        "timesteps": graph.timesteps,
        "samples": len(x),
        "neuron": "mbe",
        "accuracy": {"ann_float": float_acc, "snn": float(np.mean(run.logits.argmax(1) == y))},
        "exactness": dict(sim.exactness),
        "total_steps": graph.total_steps,
        "latency_steps": graph.latency_steps,
        "spikes_per_inference": sum(float(run.counts[k].sum()) for k in mbe_pops) / len(x),
        "spikes_per_population": {k: float(run.counts[k].sum()) / len(x) for k in mbe_pops},
        "clipped_units": {k: int(run.clipped[k].sum()) for k in mbe_pops},
    }
    return _finish(report, sim, hw, out, model, t0)


def _check_image_shape(x: np.ndarray, graph, model) -> None:
    if tuple(x.shape[1:]) != tuple(graph.input.shape):
        raise SpikeForgeError(f"the data's images are {x.shape[1:]} but model {model!r} expects {graph.input.shape}.")


def is_vit_model(model: str | Path) -> bool:
    """True for the bundled ``tiny-digits-vit`` or a ViT checkpoint file (the MBE conversion's input)."""
    if str(model) == "tiny-digits-vit":
        return True
    path = Path(str(model))
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        return read_npz(path)[0].get("format") == VIT_FORMAT
    except SpikeForgeError:
        return False


def _run_mbe_demo(model, out, timesteps, neuron, samples, data, hardware, progress, t0) -> dict[str, Any]:
    """The demo for a standard ViT: training-free MBE conversion to an integer graph, then the hardware.

    Default hardware: the built-in 4 x 4 array with the ``mbe`` neuron model, the graph's widths
    (10-bit weights, 32-bit membranes) and 8 slots per piece; the ViT runs in rounds mode there.
    ``accuracy`` has ``ann_float`` (the float ViT) and ``snn`` (the graph on the functional
    executor: the hardware's integer arithmetic); ``mbe`` has the graph's units, firing rate per
    operator and widths. When the mapping cannot place the graph, ``simulation`` is ``None`` and
    ``not_simulated`` says why.
    """
    from .models.vit_graph import VitGraphOptions, operator_of, vit_to_mbe_graph

    if neuron != "dif":
        raise SpikeForgeError(f"{model} converts with MBE neurons; --neuron {neuron} applies to CSDformer models.")
    ckpt = vit_checkpoint(model)
    x, y = test_split(data, samples)
    if out is not None:
        check_writable(out)
    opts = VitGraphOptions(timesteps=timesteps or 16)
    if hardware is not None:
        hw = load_hardware(hardware)
    else:
        base = HardwareConfig()
        core = replace(
            base.core,
            neuron_models=(*base.core.neuron_models, "mbe"),
            weight_bits=opts.weight_bits,
            v_bits=opts.v_bits,
            slots=8,  # a LayerNorm's accumulators take the embedding and every earlier block output
        )
        hw = replace(base, core=core)
    graph = vit_to_mbe_graph(ckpt, opts)
    _check_image_shape(x, graph, model)
    run = run_snn(graph, x, record=False)
    mbe_pops = [p for p in graph.populations if p.kind == "mbe"]
    float_acc = float(np.mean(vit_forward(ckpt, x).argmax(1) == y))
    fired: dict[str, list[int]] = {}
    for p in mbe_pops:
        r = fired.setdefault(operator_of(p.name), [0, 0])
        r[0] += int(run.counts[p.name].sum())
        r[1] += len(x) * p.size * p.bases * graph.timesteps
    report: dict[str, Any] = {
        "model": model,
        "timesteps": graph.timesteps,
        "samples": len(x),
        "neuron": "mbe",
        "accuracy": {"ann_float": float_acc, "snn": float(np.mean(run.logits.argmax(1) == y))},
        "total_steps": graph.total_steps,
        "latency_steps": graph.latency_steps,
        "spikes_per_inference": sum(float(run.counts[p.name].sum()) for p in mbe_pops) / len(x),
        "spikes_per_population": {p.name: float(run.counts[p.name].sum()) / len(x) for p in mbe_pops},
        "clipped_units": {p.name: int(run.clipped[p.name].sum()) for p in mbe_pops},
        "mbe": {
            "units": sum(p.size for p in mbe_pops),
            "firing_rate_per_operator": {k: v[0] / v[1] for k, v in sorted(fired.items())},
            "weight_bits": graph.weight_bits,
            "v_bits": graph.v_bits,
        },
    }
    try:
        program = compile(graph, hw)
    except MappingError as exc:
        report["hardware"] = str(hardware or "default 4x4 + mbe")
        report["simulation"] = None
        report["not_simulated"] = f"the mapping cannot place the converted ViT: {exc}"
        report["plots"] = []
        report["wall_seconds"] = round(time.time() - t0, 2)
        if out is not None:
            try:
                (Path(out) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            except OSError as exc2:
                raise SpikeForgeError(f"cannot write the report to {out}: {exc2.strerror}.") from None
        return report
    sim = simulate(
        program,
        x,
        y,
        model=model,
        hardware=str(hardware or "default 4x4 + mbe"),
        float_accuracy=float_acc,
        progress=progress,
    )
    report["exactness"] = dict(sim.exactness)
    return _finish(report, sim, hw, out, model, t0)


def _format_mbe_report(report: dict[str, Any]) -> str:
    """An MBE graph the mapping could not place: accuracy and spikes from the functional executor."""
    acc, mbe = report["accuracy"], report["mbe"]
    rates = ", ".join(f"{k} {v:.1%}" for k, v in mbe["firing_rate_per_operator"].items())
    return "\n".join(
        [
            f"model {report['model']}  T = {report['timesteps']}  neuron mbe (integer LUT units)  "
            f"samples {report['samples']}",
            f"  accuracy  float ANN {acc['ann_float']:.4f} | MBE SNN {acc['snn']:.4f}",
            f"  steps {report['total_steps']}  spikes per inference {report['spikes_per_inference']:,.0f}  "
            f"units clipped to calibrated ranges: {sum(report['clipped_units'].values())}",
            f"  firing rate per operator: {rates}",
            f"  not simulated: {report['not_simulated']}",
        ]
    )


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary of a demo report."""
    if report.get("neuron") == "mbe" and report.get("simulation") is None:
        return _format_mbe_report(report)
    acc, ex = report["accuracy"], report["exactness"]
    if report.get("neuron") == "mbe":  # an MBE graph on the hardware (tiny-digits-mlp)
        lines = [
            f"model {report['model']}  T = {report['timesteps']}  neuron mbe (integer LUT units)  "
            f"samples {report['samples']}",
            f"  accuracy  float ANN {acc['ann_float']:.4f} | MBE SNN {acc['snn']:.4f}",
            f"  simulated == functional executor: {'yes' if ex['exact'] else 'NO'} "
            f"({ex['logits_equal_samples']}/{report['samples']} logit vectors equal)",
            f"  steps {report['total_steps']} (one window per MBE layer)  spikes per inference "
            f"{report['spikes_per_inference']:.0f}  units clipped to calibrated ranges: "
            f"{sum(report['clipped_units'].values())}",
        ]
    else:
        lines = [
            f"model {report['model']}  T = {report['timesteps']} (L = {report['levels']})  neuron {report['neuron']}  "
            f"samples {report['samples']}",
            f"  accuracy  float QAT {acc['float_qat']:.4f} | quantized ANN (integer) {acc['ann_quantized']:.4f} | "
            f"SNN {acc['snn']:.4f}",
            f"  SNN == integer ANN: {'yes' if ex['exact'] else 'NO'} "
            f"({ex['neurons_checked'] - ex['neurons_mismatched']}/{ex['neurons_checked']} spike counts equal, "
            f"{ex['logits_equal_samples']}/{report['samples']} logit vectors equal)",
            f"  steps {report['total_steps']} ({report['latency_steps']} of latency from hops and DIF delays)  "
            f"spikes per inference {report['spikes_per_inference']:.0f}",
        ]
    if "simulation" in report:
        from .sim import SimResult, format_summary

        sim = SimResult(**report["simulation"])
        lines.append(f"cycle-level simulation on {sim.hardware} ({sim.cores_used}/{sim.cores} cores, {sim.mode}):")
        lines += ["  " + line for line in format_summary(sim).splitlines()[1:]]
    return "\n".join(lines)


def accuracy_by_timesteps(
    model: str = "tiny-digits", timesteps: range = range(1, 9), progress: bool = True
) -> list[dict[str, Any]]:
    """Accuracy of the integer ANN and of the SNN (plain IF and DIF) for each ``T``.

    For each ``T`` the model is converted for ``T`` steps (a ``T``-level integer ANN; the QAT
    model was trained with ``L`` levels) and the whole bundled test split is evaluated.
    """
    ckpt = load_model(model)
    data = load_digits()
    rows = []
    steps = list(timesteps)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=2 * len(steps), desc="T sweep", unit="run")
    for T in steps:
        row: dict[str, Any] = {"timesteps": T}
        for neuron in ("if", "dif"):
            graph = convert(ckpt, timesteps=T, neuron=neuron)  # type: ignore[arg-type]
            ev = evaluate_graph(graph, data.x_test, data.y_test)
            row["ann_quantized"] = ev.ann_accuracy
            row[f"snn_{neuron}"] = ev.snn_accuracy
            row[f"mismatched_{neuron}"] = ev.neurons_mismatched / ev.neurons_checked
            row[f"latency_steps_{neuron}"] = graph.latency_steps
            row[f"total_steps_{neuron}"] = graph.total_steps
            if bar is not None:
                bar.update(1)
        rows.append(row)
    if bar is not None:
        bar.close()
    return rows


def format_accuracy_table(rows: list[dict[str, Any]], float_acc: float, levels: int) -> str:
    """Markdown table of :func:`accuracy_by_timesteps` results."""
    out = [
        f"float QAT model (L = {levels}): {float_acc:.4f}",
        "",
        "| T | integer ANN | SNN, plain IF | IF counts wrong | SNN, DIF (d = T-1) | DIF counts wrong "
        "| steps IF (latency) | steps DIF (latency) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['timesteps']} | {r['ann_quantized']:.4f} | {r['snn_if']:.4f} | {r['mismatched_if']:.2%} "
            f"| {r['snn_dif']:.4f} | {r['mismatched_dif']:.2%} | {r['total_steps_if']} ({r['latency_steps_if']}) "
            f"| {r['total_steps_dif']} ({r['latency_steps_dif']}) |"
        )
    return "\n".join(out)
