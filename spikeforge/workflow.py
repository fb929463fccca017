"""Library functions behind the command line: find a model, map it, write the results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .mapping import HardwareConfig, Program, compile, load_hardware, load_program, save_program
from .models import SNNGraph, convert, float_forward, load_digits, load_graph, load_model, load_npz_dataset
from .models.errors import FileFormatError, SpikeForgeError
from .models.mbe_graph import mlp_to_mbe_graph
from .models.mlp import FORMAT as MLP_FORMAT
from .models.mlp import MLPCheckpoint, load_mlp, mlp_forward
from .models.npzio import read_npz
from .models.vit import FORMAT as VIT_FORMAT
from .models.vit import ViTCheckpoint, load_vit, vit_forward
from .models.vit_graph import VitGraphOptions, vit_to_mbe_graph
from .sim import SimResult, simulate

__all__ = [
    "graph_for",
    "mlp_checkpoint",
    "vit_checkpoint",
    "map_model",
    "write_images",
    "simulate_model",
    "check_writable",
    "cosim_model",
    "test_split",
]


MBE_MODEL = "tiny-digits-mlp"
VIT_MODEL = "tiny-digits-vit"


def mlp_checkpoint(model: str | Path) -> MLPCheckpoint | None:
    """The float MLP that ``model`` names (the bundled one or an ``spikeforge-mlp`` file), else None."""
    if str(model) == MBE_MODEL:
        return load_mlp()
    path = Path(str(model))
    if path.suffix == ".npz" and path.is_file() and read_npz(path)[0].get("format") == MLP_FORMAT:
        return load_mlp(path)
    return None


def vit_checkpoint(model: str | Path) -> ViTCheckpoint | None:
    """The float ViT that ``model`` names (the bundled one or an ``spikeforge-vit`` file), else None."""
    if str(model) == VIT_MODEL:
        return load_vit()
    path = Path(str(model))
    if path.suffix == ".npz" and path.is_file() and read_npz(path)[0].get("format") == VIT_FORMAT:
        return load_vit(path)
    return None


def graph_for(model: str | Path, timesteps: int | None = None, neuron: str = "dif") -> SNNGraph:
    """An SNN graph from a bundled model name, a float checkpoint, or a graph file.

    ``tiny-digits-mlp`` and ``tiny-digits-vit`` (and any ``spikeforge-mlp`` or ``spikeforge-vit``
    checkpoint) go through the training-free MBE conversion
    (:func:`spikeforge.models.mbe_graph.mlp_to_mbe_graph`,
    :func:`spikeforge.models.vit_graph.vit_to_mbe_graph`; ``T = 16`` by default); every other
    checkpoint through CSDformer's (``neuron`` picks DIF or IF).
    """
    mlp = mlp_checkpoint(model)
    if mlp is not None:
        return mlp_to_mbe_graph(mlp, 16 if timesteps is None else timesteps)
    vit = vit_checkpoint(model)
    if vit is not None:
        return vit_to_mbe_graph(vit, VitGraphOptions(timesteps=16 if timesteps is None else timesteps))
    path = Path(str(model))
    if path.suffix == ".npz" and path.is_file():
        try:
            header, _ = read_npz(path)
        except FileFormatError:
            raise
        if header.get("format") == "spikeforge-snn-graph":
            graph = load_graph(path)
            if timesteps is not None and timesteps != graph.timesteps:
                raise SpikeForgeError(
                    f"{path} is a graph converted for T = {graph.timesteps}; convert the checkpoint again for "
                    f"T = {timesteps}."
                )
            return graph
    return convert(load_model(model), timesteps=timesteps, neuron=neuron)  # type: ignore[arg-type]


def map_model(
    model: str | Path,
    hardware: str | Path | HardwareConfig,
    out: str | Path | None = None,
    timesteps: int | None = None,
    images: bool = False,
) -> Program:
    """Convert (if needed) and map ``model`` onto ``hardware``; write the program to ``out``."""
    hw = hardware if isinstance(hardware, HardwareConfig) else load_hardware(hardware)
    program = compile(graph_for(model, timesteps), hw)
    if out is not None:
        out = Path(out)
        try:
            save_program(program, out)
            report = program.report()
            (out / "mapping.txt").write_text(report.format() + "\n")
            (out / "mapping.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
            if images:
                write_images(program, out / "images")
        except OSError as exc:
            raise SpikeForgeError(f"cannot write the program to {out}: {exc.strerror}.") from None
    return program


def write_images(program: Program, directory: Path) -> None:
    """Write every piece's memory images as ``.bin`` files plus ``manifest.json`` (field widths)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = []
    for piece in program.pieces:
        for name, image in program.images(piece.id).items():
            fname = f"piece-{piece.id:05d}-{name}.bin"
            (directory / fname).write_bytes(image.to_bytes())
            manifest.append(
                {
                    "piece": piece.id,
                    "memory": name,
                    "file": fname,
                    "words": len(image.fields),
                    "field_bits": list(image.widths),
                }
            )
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def check_writable(directory: str | Path) -> Path:
    """Create ``directory`` if needed and make sure a file can be written there (before a long run)."""
    directory = Path(directory)
    probe = directory / ".spikeforge-write-test"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SpikeForgeError(f"cannot write results to {directory}: {exc.strerror}.") from None
    return directory


def simulate_model(
    model: str | Path,
    hardware: str | Path | HardwareConfig,
    samples: int | None = None,
    out: str | Path | None = None,
    data: str | Path | None = None,
    profile: str | None = None,
    timesteps: int | None = None,
    progress: bool = True,
) -> SimResult:
    """Map ``model`` onto ``hardware`` and simulate the first ``samples`` test images.

    ``model`` is a bundled model name, a checkpoint, a graph file or a program directory written
    by ``spikeforge map`` (which must have been compiled for ``hardware``). Writes
    ``out/result.json`` when ``out`` is given.
    """
    hw = hardware if isinstance(hardware, HardwareConfig) else load_hardware(hardware)
    if out is not None:
        check_writable(out)
    x, y = test_split(data, samples)
    path = Path(str(model))
    program = _program_for(model, hw, timesteps)
    _check_shape(x, program, model)
    float_acc = None
    mlp = None if path.is_dir() else mlp_checkpoint(model)
    vit = None if path.is_dir() else vit_checkpoint(model)
    if mlp is not None:
        float_acc = float(np.mean(mlp_forward(mlp, x).argmax(1) == y))
    elif vit is not None:
        float_acc = float(np.mean(vit_forward(vit, x).argmax(1) == y))
    elif not path.is_dir() and not (
        path.suffix == ".npz" and read_npz(path)[0].get("format") == "spikeforge-snn-graph"
    ):
        float_acc = float(np.mean(float_forward(load_model(model), x).argmax(1) == y))
    result = simulate(
        program,
        x,
        y,
        model=str(model),
        hardware=str(hardware) if not isinstance(hardware, HardwareConfig) else "",
        float_accuracy=float_acc,
        profile=profile,
        progress=progress,
    )
    if out is not None:
        result.save(out)
    return result


def test_split(data=None, samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` test images and labels of ``data``: a data set ``.npz`` path, a loaded
    :class:`~spikeforge.models.datasets.Dataset`, or ``None`` for the bundled digits."""
    dataset = data if hasattr(data, "x_test") else (load_npz_dataset(data) if data else load_digits())
    x, y = dataset.x_test, dataset.y_test
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= len(x):
            raise SpikeForgeError(f"samples must be in 1..{len(x)} (the test split's size), got {samples}.")
        x, y = x[:samples], y[:samples]
    return x, y


def _program_for(model: str | Path, hw: HardwareConfig, timesteps: int | None = None) -> Program:
    """A program directory of ``spikeforge map`` loaded for ``hw``, or ``model`` converted and compiled."""
    path = Path(str(model))
    return load_program(path, hw) if path.is_dir() else compile(graph_for(model, timesteps), hw)


def _check_shape(x: np.ndarray, program: Program, model: str | Path) -> None:
    shape = tuple(program.graph.input.shape)
    if tuple(x.shape[1:]) != shape:
        raise SpikeForgeError(f"the data's images are {tuple(x.shape[1:])} but model {str(model)!r} expects {shape}.")


def cosim_model(
    model: str | Path,
    hardware: str | Path | HardwareConfig,
    samples: int = 1,
    data: str | Path | None = None,
    workdir: str | Path | None = None,
):
    """Co-simulate ``model`` mapped onto ``hardware``: the whole RTL array on Icarus against the simulator.

    Returns the :class:`spikeforge.rtl.cosim.SamplesReport` of the first ``samples`` test images
    (per sample: host flits, phase ends, every core's membranes, spikes, busy cycles and sent
    flits). Refuses, before running anything, programs the RTL cannot build yet (``docs/rtl.md``).
    """
    from .rtl.cosim import cosim_samples

    hw = hardware if isinstance(hardware, HardwareConfig) else load_hardware(hardware)
    x, _ = test_split(data, samples)
    program = _program_for(model, hw)
    _check_shape(x, program, model)
    return cosim_samples(program, x, samples, workdir)
