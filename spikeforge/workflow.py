"""Library functions behind the command line: find a model, map it, write the results."""

from __future__ import annotations

import json
from pathlib import Path

from .mapping import HardwareConfig, Program, compile, load_hardware, save_program
from .models import SNNGraph, convert, load_graph, load_model
from .models.errors import FileFormatError, SpikeForgeError
from .models.npzio import read_npz

__all__ = ["graph_for", "map_model", "write_images"]


def graph_for(model: str | Path, timesteps: int | None = None, neuron: str = "dif") -> SNNGraph:
    """An SNN graph from a bundled model name, a float checkpoint, or a graph file."""
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
