"""The hardware description users write: a TOML file read into frozen dataclasses.

Sections follow the hardware's levels (``[array]``, ``[core]``, ``[noc]``, ``[memory]``,
``[clock]``, ``[energy]``), units are in the key names, every key has a default (the
``configs/array-4x4.toml`` array), unknown keys are refused by name and every value is
range-checked with a message giving the allowed range. The meaning of each key is the
hardware contract, ``docs/architecture.md``.

A ``[sweep]`` section (read by :func:`load_sweep`) lists values for dotted keys::

    [sweep]
    mode = "zip"                       # or "product" (every combination)
    "array.rows" = [1, 2, 4]
    "array.cols" = [1, 2, 4]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from spikeforge.models.errors import SpikeForgeError

__all__ = [
    "HardwareError",
    "ArrayConfig",
    "CoreConfig",
    "NocConfig",
    "MemoryConfig",
    "ClockConfig",
    "EnergyConfig",
    "HardwareConfig",
    "SweepSpec",
    "SWEEP_SETTINGS",
    "load_hardware",
    "parse_hardware",
    "load_sweep",
    "index_bits",
]


class HardwareError(SpikeForgeError):
    """A hardware or sweep description is malformed or out of range."""


def index_bits(n: int) -> int:
    """Width of an index into ``n`` items: ``max(1, ceil(log2(n)))``."""
    return max(1, (int(n) - 1).bit_length())


def _check(section: str, key: str, value: Any, lo: float, hi: float, kind: type = int) -> None:
    name = f"[{section}] {key}"
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise HardwareError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}.")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise HardwareError(f"{name} must be a number in {lo}..{hi}, got {value!r}.")
    if not lo <= value <= hi:
        raise HardwareError(f"{name} = {value} is out of range; allowed: {lo}..{hi}.")


@dataclass(frozen=True)
class ArrayConfig:
    """``rows x cols`` cores in a 2-D mesh."""

    rows: int = 4
    cols: int = 4

    def __post_init__(self) -> None:
        _check("array", "rows", self.rows, 1, 64)
        _check("array", "cols", self.cols, 1, 64)

    @property
    def cores(self) -> int:
        """Number of cores."""
        return self.rows * self.cols


@dataclass(frozen=True)
class CoreConfig:
    """One neuromorphic core (``docs/architecture.md`` sections 2-4)."""

    axons: int = 256
    neurons: int = 256
    weight_bits: int = 8
    v_bits: int = 24
    lanes: int = 16
    input_fifo_events: int = 64
    pipeline_cycles: int = 3
    spike_history_steps: int = 32
    routing_entries: int = 1024
    slots: int = 4
    count_bits: int = 4
    neuron_models: tuple[str, ...] = ("if", "dif")

    def __post_init__(self) -> None:
        object.__setattr__(self, "neuron_models", tuple(self.neuron_models))
        _check("core", "axons", self.axons, 1, 65536)
        _check("core", "neurons", self.neurons, 1, 65536)
        _check("core", "weight_bits", self.weight_bits, 2, 16)
        _check("core", "v_bits", self.v_bits, 8, 32)
        _check("core", "lanes", self.lanes, 1, 1024)
        if self.neurons % self.lanes:
            raise HardwareError(
                f"[core] lanes = {self.lanes} must divide neurons = {self.neurons}; allowed: divisors of neurons."
            )
        _check("core", "input_fifo_events", self.input_fifo_events, 1, 65536)
        _check("core", "pipeline_cycles", self.pipeline_cycles, 0, 64)
        _check("core", "spike_history_steps", self.spike_history_steps, 1, 4096)
        _check("core", "routing_entries", self.routing_entries, 1, 1 << 20)
        _check("core", "slots", self.slots, 1, 16)
        _check("core", "count_bits", self.count_bits, 1, 16)
        known = {"if", "dif", "mbe"}
        bad = [m for m in self.neuron_models if m not in known]
        if bad or not self.neuron_models:
            raise HardwareError(f"[core] neuron_models has {bad or 'nothing'}; allowed: a list from {sorted(known)}.")

    @property
    def groups(self) -> int:
        """Lane groups per row: ``neurons / lanes``."""
        return self.neurons // self.lanes

    @property
    def synapse_bits(self) -> int:
        """Capacity of the synapse SRAM in bits."""
        return self.axons * self.neurons * self.weight_bits


@dataclass(frozen=True)
class NocConfig:
    """Mesh network: buffers and barrier (``docs/architecture.md`` section 6)."""

    router_buffer_flits: int = 4
    barrier_cycles: int = 0  # 0: derive rows + cols

    def __post_init__(self) -> None:
        _check("noc", "router_buffer_flits", self.router_buffer_flits, 1, 1024)
        _check("noc", "barrier_cycles", self.barrier_cycles, 0, 1_000_000)


@dataclass(frozen=True)
class MemoryConfig:
    """Off-array DRAM reached through one shared DMA channel."""

    dram_bytes_per_cycle: int = 16
    dram_latency_cycles: int = 100
    dram_capacity_mib: int = 4096

    def __post_init__(self) -> None:
        _check("memory", "dram_bytes_per_cycle", self.dram_bytes_per_cycle, 1, 4096)
        _check("memory", "dram_latency_cycles", self.dram_latency_cycles, 0, 100_000)
        _check("memory", "dram_capacity_mib", self.dram_capacity_mib, 1, 1 << 20)


@dataclass(frozen=True)
class ClockConfig:
    """Clock of the whole array."""

    frequency_mhz: float = 500.0

    def __post_init__(self) -> None:
        _check("clock", "frequency_mhz", self.frequency_mhz, 1, 10_000, float)


@dataclass(frozen=True)
class EnergyConfig:
    """Energy profile: a shipped profile name or a path to a profile TOML file."""

    profile: str = "horowitz45"

    def __post_init__(self) -> None:
        if not isinstance(self.profile, str) or not self.profile:
            raise HardwareError(f"[energy] profile must be a profile name or file path, got {self.profile!r}.")


_SECTIONS: dict[str, type] = {
    "array": ArrayConfig,
    "core": CoreConfig,
    "noc": NocConfig,
    "memory": MemoryConfig,
    "clock": ClockConfig,
    "energy": EnergyConfig,
}


@dataclass(frozen=True)
class HardwareConfig:
    """The whole hardware description; ``HardwareConfig()`` is the default 4 x 4 array."""

    array: ArrayConfig = field(default_factory=ArrayConfig)
    core: CoreConfig = field(default_factory=CoreConfig)
    noc: NocConfig = field(default_factory=NocConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    @property
    def barrier_cycles(self) -> int:
        """Cycles of one global barrier (``rows + cols`` unless set)."""
        return self.noc.barrier_cycles or (self.array.rows + self.array.cols)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain dictionary, one entry per section (TOML/JSON-serialisable)."""
        out = asdict(self)
        out["core"]["neuron_models"] = list(self.core.neuron_models)
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the canonical description; programs record it to detect a mismatch."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def with_value(self, dotted: str, value: Any) -> HardwareConfig:
        """A copy with ``section.key`` set to ``value`` (validated)."""
        section, key = _split_key(dotted)
        sub = getattr(self, section)
        return replace(self, **{section: _build_section(section, {**asdict(sub), key: value})})


def _split_key(dotted: str) -> tuple[str, str]:
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise HardwareError(
            f"unknown parameter {dotted!r}; write it as section.key with a section from {sorted(_SECTIONS)}."
        )
    section, key = parts
    names = [f.name for f in fields(_SECTIONS[section])]
    if key not in names:
        raise HardwareError(f"unknown parameter {dotted!r}; keys of [{section}]: {', '.join(names)}.")
    return section, key


def _build_section(section: str, values: dict[str, Any]) -> Any:
    cls = _SECTIONS[section]
    names = [f.name for f in fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise HardwareError(f"unknown key {unknown[0]!r} in [{section}]; allowed keys: {', '.join(names)}.")
    try:
        return cls(**values)
    except TypeError as exc:  # e.g. a list where a number belongs
        raise HardwareError(f"[{section}]: {exc}.") from None


def parse_hardware(data: dict[str, Any], source: str = "hardware description") -> HardwareConfig:
    """Build a :class:`HardwareConfig` from parsed TOML (a ``[sweep]`` section is ignored here)."""
    sections = {}
    for name, values in data.items():
        if name == "sweep":
            continue
        if name not in _SECTIONS:
            raise HardwareError(f"{source}: unknown section [{name}]; allowed: {', '.join(_SECTIONS)}, sweep.")
        if not isinstance(values, dict):
            raise HardwareError(f"{source}: {name} must be a [{name}] table, not a value.")
        sections[name] = _build_section(name, values)
    return HardwareConfig(**sections)


def _read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise HardwareError(f"{path}: no such hardware file.") from None
    except tomllib.TOMLDecodeError as exc:
        raise HardwareError(f"{path}: not valid TOML ({exc}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HardwareError(f"{path}: cannot be read ({exc}).") from None


def load_hardware(path: str | Path) -> HardwareConfig:
    """Read a hardware TOML file."""
    return parse_hardware(_read_toml(path), str(path))


#: What a ``[sweep]`` section may set besides ``mode`` and the parameter lists: the run of each point.
SWEEP_SETTINGS: dict[str, type] = {"model": str, "samples": int, "timesteps": int, "data": str, "fpga": str}


@dataclass(frozen=True)
class SweepSpec:
    """A design-space sweep: a base hardware and the points to visit."""

    base: HardwareConfig
    parameters: tuple[str, ...]
    points: tuple[dict[str, Any], ...]
    mode: str
    settings: dict[str, Any] = field(default_factory=dict)  # SWEEP_SETTINGS given in [sweep]

    def configs(self) -> list[HardwareConfig]:
        """The hardware of every point, in order."""
        out = []
        for point in self.points:
            hw = self.base
            for key, value in point.items():
                hw = hw.with_value(key, value)
            out.append(hw)
        return out


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file: hardware sections (the base) plus a ``[sweep]`` section.

    Every value of every list is validated when the sweep is read; a bad entry is named with
    its parameter and index.
    """
    data = _read_toml(path)
    base = parse_hardware(data, str(path))
    sweep = data.get("sweep")
    if not isinstance(sweep, dict):
        raise HardwareError(f"{path}: no [sweep] section; add one with at least one parameter list.")
    mode = sweep.get("mode", "zip")
    if mode not in ("zip", "product"):
        raise HardwareError(f"{path}: [sweep] mode must be 'zip' or 'product', got {mode!r}.")
    settings = {}
    for key, kind in SWEEP_SETTINGS.items():
        if key not in sweep:
            continue
        value = sweep[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise HardwareError(f"{path}: [sweep] {key} must be a whole number >= 1, got {value!r}.")
        if kind is str and (not isinstance(value, str) or not value):
            raise HardwareError(f"{path}: [sweep] {key} must be a non-empty string, got {value!r}.")
        settings[key] = value
    lists = {k: v for k, v in sweep.items() if k != "mode" and k not in SWEEP_SETTINGS}
    if not lists:
        raise HardwareError(f"{path}: the [sweep] section lists no parameter; the sweep would be empty.")
    for key, values in lists.items():
        _split_key(key)
        if not isinstance(values, list) or not values:
            raise HardwareError(f"{path}: [sweep] {key!r} must be a non-empty list of values.")
        for i, value in enumerate(values):
            try:
                base.with_value(key, value)
            except HardwareError as exc:
                raise HardwareError(f"{path}: [sweep] {key!r} entry {i} ({value!r}) is invalid: {exc}") from None
    names = tuple(lists)
    if mode == "zip":
        lengths = {len(v) for v in lists.values()}
        if len(lengths) != 1:
            raise HardwareError(f"{path}: in zip mode every [sweep] list needs the same length, got {sorted(lengths)}.")
        points = tuple(dict(zip(names, combo)) for combo in zip(*lists.values()))
    else:
        points = tuple(dict(zip(names, combo)) for combo in itertools.product(*lists.values()))
    spec = SweepSpec(base=base, parameters=names, points=points, mode=mode, settings=settings)
    for i, point in enumerate(points):  # combinations can be invalid where single values are not
        try:
            SweepSpec(base, names, (point,), mode).configs()
        except HardwareError as exc:
            raise HardwareError(f"{path}: sweep point {i} {point} is invalid: {exc}") from None
    return spec
