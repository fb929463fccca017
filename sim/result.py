"""What a simulation reports: :class:`SimResult`, JSON-serialisable, schema in ``docs/simulator.md``.

Every per-inference figure is the run's total divided by the number of samples. Memory traffic
is in bytes (SRAM bits read plus written, over 8), energy in pJ.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spikeforge.models.errors import SpikeForgeError

__all__ = ["SCHEMA", "SCHEMA_VERSION", "SimResult", "format_summary"]

SCHEMA = "spikeforge-sim-result"
SCHEMA_VERSION = 1


@dataclass
class SimResult:
    """Figures of one simulation run, per inference unless named otherwise.

    Attributes
    ----------
    model, hardware : str
        What was simulated (names or paths as the user gave them).
    hardware_fingerprint : str
        Fingerprint of the hardware description the program was compiled for.
    mode : str
        The plan's mode: ``resident``, ``swap`` or ``rounds``.
    cores, cores_used : int
        Cores of the array, and cores that hold a piece.
    samples, timesteps, total_steps : int
        Inferences simulated, ``T``, and steps per inference (``T`` plus latency).
    clock_mhz : float
        Clock of the latency figure.
    accuracy : dict
        ``snn`` (the simulator's predictions), ``ann_quantized`` (the integer ANN on the same
        samples) and ``float_qat`` (the float model; ``None`` when only a graph was given). An
        MBE graph has ``ann_float`` (its float ANN) instead of ``float_qat``.
        ``None`` values where no labels were given.
    exactness : dict
        ``logits_equal_samples``: samples whose simulated logits equal the functional executor's;
        ``exact``: all of them (``None`` when the reference was not run).
    spikes_per_inference, synaptic_ops_per_inference, macs_per_inference, neuron_updates_per_inference : float
    cycles_per_inference : float
        Clock cycles of one inference (critical path, DRAM stalls included).
    latency_s : float
        ``cycles_per_inference / clock``.
    memory_traffic_bytes : dict of str to float
        Bytes read plus written per on-core memory, and ``dram``.
    sram_bits : dict
        ``read`` and ``write``: bits per memory.
    noc : dict
        ``flits``, ``hops``, ``hops_ew``, ``hops_ns``, ``stall_cycles``.
    dram_stall_cycles : float
        Cycles steps waited for weight loads (``swap`` mode).
    energy_pj : dict
        ``total``, one key per component, ``paper_convention``.
    energy : dict
        The full breakdown (profile, SRAM by memory, what is not modelled).
    energy_total_by_profile : dict of str to float
        The hardware-model total under every shipped profile.
    break_even : dict
        Spikes per synapse per inference against the published SNN break-even.
    per_population : dict
        ``spikes`` and ``synaptic_ops`` per population.
    per_step : dict
        ``cycles`` and ``spikes`` per step; ``phase_i``, ``phase_p``, ``phase_f`` cycles when the
        mode is not ``rounds``.
    per_core : dict
        ``busy_cycles``, ``spikes`` and ``synaptic_ops`` per core; ``busy_cycles_per_step``
        (steps x cores): the cycles each core spent on events and updates at each step.
    critical_path : dict
        ``compute_cycles`` (sum of step cycles), ``dram_stall_cycles``, ``barrier_cycles_per_phase``,
        ``busiest_core`` and its ``busiest_core_cycles``.
    wall_seconds : float
        Wall-clock time of the run (numba compilation included on a first run).
    """

    model: str
    hardware: str
    hardware_fingerprint: str
    mode: str
    cores: int
    cores_used: int
    samples: int
    timesteps: int
    total_steps: int
    clock_mhz: float
    accuracy: dict[str, float | None]
    exactness: dict[str, Any]
    spikes_per_inference: float
    synaptic_ops_per_inference: float
    macs_per_inference: float
    neuron_updates_per_inference: float
    cycles_per_inference: float
    latency_s: float
    memory_traffic_bytes: dict[str, float]
    sram_bits: dict[str, dict[str, float]]
    noc: dict[str, float]
    dram_stall_cycles: float
    energy_pj: dict[str, float]
    energy: dict[str, Any]
    energy_total_by_profile: dict[str, float]
    break_even: dict[str, Any]
    per_population: dict[str, dict[str, float]]
    per_step: dict[str, list[float]]
    per_core: dict[str, list[float]]
    critical_path: dict[str, Any]
    wall_seconds: float
    schema: str = field(default=SCHEMA)
    schema_version: int = field(default=SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON types only)."""
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/result.json`` (directory created if needed); return its path."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "result.json"
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise SpikeForgeError(f"cannot write the result to {directory}: {exc.strerror}.") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> SimResult:
        """Read a ``result.json`` written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SpikeForgeError(f"cannot read a simulation result from {path}: {exc}.") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise SpikeForgeError(f"{path} is not a SpikeForge simulation result (schema {SCHEMA!r}).")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SpikeForgeError(
                f"{path} has result schema version {data.get('schema_version')}; this SpikeForge reads version "
                f"{SCHEMA_VERSION}."
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpikeForgeError(f"{path} does not match the result schema: {exc}.") from None


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _energy(pj: float) -> str:
    for scale, unit in ((1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def format_summary(result: SimResult) -> str:
    """The summary table printed by ``spikeforge simulate``: one row per figure, per inference."""
    acc = result.accuracy
    rows = [("model", f"{result.model} (T = {result.timesteps}, {result.total_steps} steps)")]
    rows.append(("hardware", f"{result.hardware}: {result.cores_used}/{result.cores} cores, mode {result.mode}"))
    rows.append(("samples", str(result.samples)))
    if acc.get("snn") is not None:
        parts = [f"simulated SNN {acc['snn']:.4f}"]
        if acc.get("ann_quantized") is not None:
            parts.append(f"integer ANN {acc['ann_quantized']:.4f}")
        if acc.get("float_qat") is not None:
            parts.append(f"float QAT {acc['float_qat']:.4f}")
        if acc.get("ann_float") is not None:
            parts.append(f"float ANN {acc['ann_float']:.4f}")
        rows.append(("accuracy", " | ".join(parts)))
    ex = result.exactness
    if ex.get("exact") is not None:
        rows.append(("== reference", f"{ex['logits_equal_samples']}/{result.samples} logit vectors equal"))
    rows += [
        ("spikes", f"{result.spikes_per_inference:,.0f}"),
        ("synaptic ops", f"{result.synaptic_ops_per_inference:,.0f} (+ {result.macs_per_inference:,.0f} MACs)"),
        ("cycles", f"{result.cycles_per_inference:,.0f}"),
        ("latency", f"{result.latency_s * 1e6:,.1f} us at {result.clock_mhz:g} MHz"),
        (
            "SRAM traffic",
            _si(sum(v for k, v in result.memory_traffic_bytes.items() if k != "dram"), "B")
            + " ("
            + ", ".join(f"{k} {_si(v, 'B')}" for k, v in result.memory_traffic_bytes.items() if k != "dram" and v)
            + ")",
        ),
        ("DRAM traffic", _si(result.memory_traffic_bytes.get("dram", 0.0), "B")),
        (
            "NoC",
            f"{result.noc['flits']:,.0f} flits, {result.noc['hops']:,.0f} hops, "
            f"{result.noc['stall_cycles']:,.0f} stall cycles",
        ),
        (f"energy ({result.energy['profile']})", _energy(result.energy_pj["total"])),
        (
            "energy (paper conv.)",
            _energy(result.energy_pj["paper_convention"]) + "  compute only, 0.9 pJ/AC 4.6 pJ/MAC",
        ),
        ("spikes/synapse", f"{result.break_even['spikes_per_synapse']:.3g}: {result.break_even['verdict']}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["per inference:"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    comps = ", ".join(
        f"{k} {_energy(result.energy_pj[k])}"
        for k in ("synaptic_ops", "sram", "neuron_updates", "noc", "dram", "leakage")
    )
    lines.append(f"  {''.ljust(width)}  breakdown: {comps}")
    return "\n".join(lines)
