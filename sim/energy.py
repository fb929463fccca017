"""Energy model: activity counters times per-event energies read from a profile TOML file.

A profile (``docs/energy.md``) gives the energy of each event in pJ, the SRAM energy per bit of
each core memory (or a table of array size against energy that is interpolated for the sizes of
the given hardware), the DRAM energy per bit and the leakage power per core. It lists the
components it models; the others are zero and are named in :attr:`EnergyBreakdown.not_modelled`.

Equations, all for one whole run, in pJ (``N_x`` are the :class:`~spikeforge.sim.counters.Counters`)::

    synaptic_ops   = N_synaptic_ops * synaptic_op_pj + N_macs * mac_pj
    sram           = sum over memories m of  read_bits[m] * read_pj_per_bit[m]
                                           + write_bits[m] * write_pj_per_bit[m]
    neuron_updates = N_neuron_updates * neuron_update_pj + N_spikes * spike_pj
    noc            = N_flits * noc_flit_pj + N_hops_ew * noc_hop_ew_pj + N_hops_ns * noc_hop_ns_pj
    dram           = 8 * dram_bytes * dram_pj_per_bit
    leakage        = leakage_mw_per_core * cores * cycles / frequency_mhz * 1e3
    total          = the sum of the six above
    paper_convention = 4.6 * N_macs + 0.9 * N_synaptic_ops     (fixed, whatever the profile)

(``1 mW`` for ``cycles / (frequency_mhz * 1e6)`` seconds is ``1e3 * cycles / frequency_mhz`` pJ.)

Shipped profiles live in ``sim/profiles/*.toml``: ``horowitz45`` (45 nm components), ``paper``
(the compute-only convention of the spiking-transformer papers) and ``loihi`` (Loihi's
pre-silicon per-event table).
"""

from __future__ import annotations

import importlib.resources
import math
import operator
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from spikeforge.mapping.hardware import HardwareConfig, index_bits
from spikeforge.models.errors import SpikeForgeError

from .counters import MEMORIES, Counters

__all__ = [
    "EnergyError",
    "COMPONENTS",
    "COMPONENT_KEYS",
    "PAPER_AC_PJ",
    "PAPER_MAC_PJ",
    "BREAK_EVEN_SPIKES_PER_SYNAPSE",
    "EnergyProfile",
    "EnergyBreakdown",
    "shipped_profiles",
    "memory_bytes",
    "parse_profile",
    "load_profile",
    "energy_breakdown",
    "spikes_per_synapse",
    "break_even",
]


class EnergyError(SpikeForgeError):
    """An energy profile is malformed, or counters or hardware do not fit it."""


#: Components of the breakdown, in report order.
COMPONENTS = ("synaptic_ops", "sram", "neuron_updates", "noc", "dram", "leakage")

#: Scalar keys of ``[profile]`` that each component needs (``sram`` uses tables instead).
COMPONENT_KEYS: dict[str, tuple[str, ...]] = {
    "synaptic_ops": ("synaptic_op_pj", "mac_pj"),
    "sram": (),
    "neuron_updates": ("neuron_update_pj", "spike_pj"),
    "noc": ("noc_flit_pj", "noc_hop_ew_pj", "noc_hop_ns_pj"),
    "dram": ("dram_pj_per_bit",),
    "leakage": ("leakage_mw_per_core",),
}

_SCALARS = tuple(k for c in COMPONENTS for k in COMPONENT_KEYS[c])
_TEXT_KEYS = ("name", "description", "sources")
_PROFILE_KEYS = (*_TEXT_KEYS, "components", *_SCALARS)
_TABLES = ("profile", "sram_read_pj_per_bit", "sram_write_pj_per_bit", "sram_by_size")
_SIZE_KEYS = ("array_bytes", "read_pj_per_64bit", "write_pj_per_64bit")

#: The spiking-transformer papers' constants (45 nm, fp32 add and multiply-add; conversion.md A.6).
PAPER_AC_PJ = 0.9
PAPER_MAC_PJ = 4.6

#: Published break-even of SNN energy, spikes per synapse per inference (Dampfhoffer et al.).
BREAK_EVEN_SPIKES_PER_SYNAPSE = (0.15, 1.38)


def _number(where: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a finite float >= 0 (> 0 when ``positive``), or an :class:`EnergyError`."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EnergyError(f"{where} must be a number {bound}, got {value!r}.")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise EnergyError(f"{where} = {value} is out of range; allowed: a finite number {bound}.")
    return float(value)


def _count(name: str, value: Any, lo: int = 0) -> int:
    """A counter as a whole number >= ``lo``."""
    try:
        n = operator.index(value)
    except TypeError:
        raise EnergyError(f"counter {name} must be a whole number >= {lo}, got {value!r}.") from None
    if n < lo:
        raise EnergyError(f"counter {name} = {n} is out of range; allowed: >= {lo}.")
    return n


def memory_bytes(hardware: HardwareConfig) -> dict[str, int]:
    """Size in bytes of each core memory of :data:`~spikeforge.sim.counters.MEMORIES`.

    From ``docs/architecture.md`` section 3, rounded up to whole bytes::

        synapse  = axons * neurons * weight_bits / 8
        membrane = neurons * v_bits / 8
        params   = neurons * 3 * v_bits / 8
        history  = spike_history_steps * neurons / 8
        routing  = routing_entries * (2 bits(neurons) + bits(cols) + bits(rows)
                                      + bits(slots) + bits(spike_history_steps)) / 8
        counts   = synapse   (running counts are stored in the synapse SRAM)
    """
    core, array = hardware.core, hardware.array
    entry = (
        2 * index_bits(core.neurons)
        + index_bits(array.cols)
        + index_bits(array.rows)
        + index_bits(core.slots)
        + index_bits(core.spike_history_steps)
    )
    bits = {
        "synapse": core.synapse_bits,
        "membrane": core.neurons * core.v_bits,
        "params": core.neurons * 3 * core.v_bits,
        "history": core.spike_history_steps * core.neurons,
        "routing": core.routing_entries * entry,
    }
    bits["counts"] = bits["synapse"]
    return {m: -(-bits[m] // 8) for m in MEMORIES}


def _interp_loglog(x: float, xs: tuple[int, ...], ys: tuple[float, ...]) -> float:
    """Piecewise-linear interpolation of ``log y`` against ``log x``; ``y`` of the end point outside."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            f = math.log(x / xs[i - 1]) / math.log(xs[i] / xs[i - 1])
            return ys[i - 1] * (ys[i] / ys[i - 1]) ** f
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class EnergyProfile:
    """Per-event energies of one profile, resolved for one hardware.

    Attributes
    ----------
    name, description, sources : str
        From ``[profile]``; ``sources`` cites each number, "(assumed)" and "(recalled)" marked.
    components : tuple of str
        Components of :data:`COMPONENTS` the profile models; the others are zero.
    synaptic_op_pj, mac_pj : float
        One accumulate of a weight into a membrane; one multiply-accumulate of a graded input.
    neuron_update_pj, spike_pj : float
        One neuron update (phase F); one emitted spike.
    noc_flit_pj, noc_hop_ew_pj, noc_hop_ns_pj : float
        One flit injected; one east-west / north-south link traversal.
    dram_pj_per_bit : float
        One bit moved between DRAM and the cores.
    leakage_mw_per_core : float
        Static power of one core, in mW.
    sram_read_pj_per_bit, sram_write_pj_per_bit : dict of str to float
        Energy per bit read from / written to each memory of ``MEMORIES``.
    sram_by_size : dict or None
        The profile's size table (``array_bytes``, ``read_pj_per_64bit``, ``write_pj_per_64bit``)
        when the per-bit energies were interpolated from it; None when the profile gives them.
    sram_array_bytes : dict of str to int or None
        Memory sizes the size table was interpolated at (:func:`memory_bytes` of the hardware).
    origin : str
        The file the profile was read from.
    notes : tuple of str
        What the model had to assume while resolving the profile (e.g. a size outside the table).
    """

    name: str
    description: str
    sources: str
    components: tuple[str, ...]
    synaptic_op_pj: float = 0.0
    mac_pj: float = 0.0
    neuron_update_pj: float = 0.0
    spike_pj: float = 0.0
    noc_flit_pj: float = 0.0
    noc_hop_ew_pj: float = 0.0
    noc_hop_ns_pj: float = 0.0
    dram_pj_per_bit: float = 0.0
    leakage_mw_per_core: float = 0.0
    sram_read_pj_per_bit: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MEMORIES, 0.0))
    sram_write_pj_per_bit: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MEMORIES, 0.0))
    sram_by_size: dict[str, list[float]] | None = None
    sram_array_bytes: dict[str, int] | None = None
    origin: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "notes", tuple(self.notes))
        for key in _TEXT_KEYS:
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise EnergyError(f"[profile] {key} must be a non-empty string, got {getattr(self, key)!r}.")
        bad = [c for c in self.components if c not in COMPONENTS]
        if bad or not self.components or len(set(self.components)) != len(self.components):
            raise EnergyError(
                f"[profile] components = {list(self.components)} is invalid; "
                f"allowed: a non-empty list without repeats from {list(COMPONENTS)}."
            )
        for key in _SCALARS:
            object.__setattr__(self, key, _number(f"[profile] {key}", getattr(self, key)))
        for table in ("sram_read_pj_per_bit", "sram_write_pj_per_bit"):
            values = getattr(self, table)
            if not isinstance(values, dict) or set(values) != set(MEMORIES):
                raise EnergyError(f"[{table}] must give exactly the memories {', '.join(MEMORIES)}.")
            object.__setattr__(self, table, {m: _number(f"[{table}] {m}", values[m]) for m in MEMORIES})
        for comp in self.not_modelled:
            keys = [f"[profile] {k}" for k in COMPONENT_KEYS[comp] if getattr(self, k)]
            if comp == "sram":
                keys += [
                    f"[{t}] {m}"
                    for t in ("sram_read_pj_per_bit", "sram_write_pj_per_bit")
                    for m in MEMORIES
                    if getattr(self, t)[m]
                ]
            if keys:
                raise EnergyError(f"{keys[0]} is non-zero but component {comp!r} is not in [profile] components.")

    @property
    def not_modelled(self) -> tuple[str, ...]:
        """Components of :data:`COMPONENTS` this profile does not model (reported as zero)."""
        return tuple(c for c in COMPONENTS if c not in self.components)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary of every field plus ``not_modelled``."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["components"] = list(self.components)
        out["not_modelled"] = list(self.not_modelled)
        out["notes"] = list(self.notes)
        for key in ("sram_read_pj_per_bit", "sram_write_pj_per_bit", "sram_array_bytes"):
            out[key] = None if out[key] is None else dict(out[key])
        if self.sram_by_size is not None:
            out["sram_by_size"] = {k: list(v) for k, v in self.sram_by_size.items()}
        return out


def shipped_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped in ``spikeforge.sim/profiles/`` (file stems, sorted)."""
    folder = importlib.resources.files("spikeforge.sim") / "profiles"
    return tuple(sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml")))


def _sram_from_size_table(
    table: Any, hardware: HardwareConfig, source: str
) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]], dict[str, int], list[str]]:
    if not isinstance(table, dict):
        raise EnergyError(f"{source}: sram_by_size must be a [sram_by_size] table, not a value.")
    for key in table:
        if key not in _SIZE_KEYS:
            raise EnergyError(
                f"{source}: unknown key {key!r} in [sram_by_size]; allowed keys: {', '.join(_SIZE_KEYS)}."
            )
    cols: dict[str, list[float]] = {}
    for key in _SIZE_KEYS:
        values = table.get(key)
        if not isinstance(values, list) or not values:
            raise EnergyError(f"{source}: [sram_by_size] {key} must be a non-empty list of numbers.")
        cols[key] = [_number(f"{source}: [sram_by_size] {key}[{i}]", v, positive=True) for i, v in enumerate(values)]
    if len({len(v) for v in cols.values()}) != 1:
        raise EnergyError(
            f"{source}: [sram_by_size] lists must have the same length, got "
            + ", ".join(f"{k} {len(v)}" for k, v in cols.items())
            + "."
        )
    xs = tuple(int(x) for x in cols["array_bytes"])
    if any(x != v for x, v in zip(xs, cols["array_bytes"])) or any(b <= a for a, b in zip(xs, xs[1:])):
        raise EnergyError(f"{source}: [sram_by_size] array_bytes must be whole numbers in increasing order.")
    sizes = memory_bytes(hardware)
    notes = []
    for m in MEMORIES:
        if sizes[m] < xs[0] or sizes[m] > xs[-1]:
            end = xs[0] if sizes[m] < xs[0] else xs[-1]
            kind = "upper" if sizes[m] < xs[0] else "lower"
            notes.append(
                f"memory {m!r} ({sizes[m]} B) is outside the size table ({xs[0]}..{xs[-1]} B): "
                f"the {end} B figure is used, an {kind} bound."
            )
    read = {m: _interp_loglog(sizes[m], xs, tuple(cols["read_pj_per_64bit"])) / 64 for m in MEMORIES}
    write = {m: _interp_loglog(sizes[m], xs, tuple(cols["write_pj_per_64bit"])) / 64 for m in MEMORIES}
    return read, write, {**cols, "array_bytes": list(xs)}, sizes, notes


def _sram_table(data: dict[str, Any], table: str, source: str) -> dict[str, float]:
    values = data.get(table)
    if values is None:
        raise EnergyError(f"{source}: [{table}] is missing; component 'sram' needs it (or an [sram_by_size] table).")
    if not isinstance(values, dict):
        raise EnergyError(f"{source}: {table} must be a [{table}] table, not a value.")
    for key in values:
        if key not in MEMORIES:
            raise EnergyError(f"{source}: unknown key {key!r} in [{table}]; allowed keys: {', '.join(MEMORIES)}.")
    missing = [m for m in MEMORIES if m not in values]
    if missing:
        raise EnergyError(f"{source}: [{table}] lacks memory {missing[0]!r}; give all of {', '.join(MEMORIES)}.")
    return {m: _number(f"{source}: [{table}] {m}", values[m]) for m in MEMORIES}


def parse_profile(data: dict[str, Any], hardware: HardwareConfig, source: str = "energy profile") -> EnergyProfile:
    """Build an :class:`EnergyProfile` from parsed TOML, resolving SRAM energies for ``hardware``.

    Every key of ``[profile]`` that a listed component needs must be present; keys (and SRAM
    tables) of components not listed must be absent. Unknown tables and keys are refused by name.
    """
    if not isinstance(hardware, HardwareConfig):
        raise EnergyError(f"{source}: hardware must be a HardwareConfig, got {type(hardware).__name__}.")
    for name in data:
        if name not in _TABLES:
            raise EnergyError(f"{source}: unknown table or key {name!r}; allowed tables: {', '.join(_TABLES)}.")
    prof = data.get("profile")
    if not isinstance(prof, dict):
        raise EnergyError(f"{source}: no [profile] table; add one with name, description, sources and components.")
    for key in prof:
        if key not in _PROFILE_KEYS:
            raise EnergyError(f"{source}: unknown key {key!r} in [profile]; allowed keys: {', '.join(_PROFILE_KEYS)}.")
    for key in (*_TEXT_KEYS, "components"):
        if key not in prof:
            raise EnergyError(f"{source}: [profile] lacks {key!r}.")
    components = prof["components"]
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise EnergyError(f"{source}: [profile] components must be a list of names from {list(COMPONENTS)}.")
    for comp in COMPONENTS:
        for key in COMPONENT_KEYS[comp]:
            if comp in components and key not in prof:
                raise EnergyError(f"{source}: [profile] lacks {key!r}, needed by component {comp!r}.")
            if comp not in components and key in prof:
                raise EnergyError(
                    f"{source}: [profile] {key} belongs to component {comp!r}, which components does not list; "
                    f"add {comp!r} to components or remove the key."
                )
    sram_tables = [t for t in ("sram_read_pj_per_bit", "sram_write_pj_per_bit", "sram_by_size") if t in data]
    kwargs: dict[str, Any] = {}
    notes: list[str] = []
    if "sram" not in components:
        if sram_tables:
            raise EnergyError(
                f"{source}: [{sram_tables[0]}] is given but components does not list 'sram'; "
                "add 'sram' to components or remove the table."
            )
    elif "sram_by_size" in data:
        if len(sram_tables) > 1:
            raise EnergyError(
                f"{source}: give either [sram_by_size] or [sram_read_pj_per_bit] and [sram_write_pj_per_bit], not both."
            )
        read, write, table, sizes, notes = _sram_from_size_table(data["sram_by_size"], hardware, source)
        kwargs.update(
            sram_read_pj_per_bit=read, sram_write_pj_per_bit=write, sram_by_size=table, sram_array_bytes=sizes
        )
    else:
        kwargs["sram_read_pj_per_bit"] = _sram_table(data, "sram_read_pj_per_bit", source)
        kwargs["sram_write_pj_per_bit"] = _sram_table(data, "sram_write_pj_per_bit", source)
    try:
        return EnergyProfile(
            name=prof["name"],
            description=prof["description"],
            sources=prof["sources"],
            components=tuple(components),
            **{k: prof[k] for k in _SCALARS if k in prof},
            **kwargs,
            origin=source,
            notes=tuple(notes),
        )
    except EnergyError as exc:
        raise EnergyError(f"{source}: {exc}") from None


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise EnergyError(f"{label}: not valid TOML ({exc}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EnergyError(f"{label}: cannot be read ({exc}).") from None


def load_profile(name_or_path: str | Path, hardware: HardwareConfig) -> EnergyProfile:
    """Read a shipped profile by name, or a profile TOML file by path, resolved for ``hardware``.

    A shipped name (:func:`shipped_profiles`) takes precedence over a file of the same name in the
    working directory; write ``./name`` to load such a file.
    """
    shipped = shipped_profiles()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        resource = importlib.resources.files("spikeforge.sim") / "profiles" / f"{name_or_path}.toml"
        with importlib.resources.as_file(resource) as path:
            return parse_profile(_read_toml(path, f"profile {name_or_path!r}"), hardware, str(resource))
    path = Path(name_or_path)
    if not path.is_file():
        raise EnergyError(
            f"unknown energy profile {str(name_or_path)!r}: not a shipped profile "
            f"({', '.join(shipped)}) and no file at that path."
        )
    return parse_profile(_read_toml(path, str(path)), hardware, str(path))


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of a run (or of one inference) by component, in pJ.

    Attributes
    ----------
    profile : str
        Name of the profile.
    scope : str
        ``"run"`` (the whole run) or ``"inference"`` (divided by ``samples``).
    samples : int
        Inferences in the run.
    synaptic_ops, sram, neuron_updates, noc, dram, leakage : float
        The components (module docstring); zero for components in ``not_modelled``.
    total : float
        Their sum: the hardware-model energy.
    paper_convention : float
        ``4.6 pJ * macs + 0.9 pJ * synaptic_ops`` whatever the profile (compute only).
    sram_by_memory : dict of str to float
        The ``sram`` component split by memory.
    modelled, not_modelled : tuple of str
        Components the profile models, and those it does not (their zeros mean "unknown").
    """

    profile: str
    scope: str
    samples: int
    synaptic_ops: float
    sram: float
    neuron_updates: float
    noc: float
    dram: float
    leakage: float
    total: float
    paper_convention: float
    sram_by_memory: dict[str, float]
    modelled: tuple[str, ...]
    not_modelled: tuple[str, ...]

    def per_inference(self) -> EnergyBreakdown:
        """The same breakdown divided by ``samples`` (``scope = "inference"``)."""
        if self.scope != "run":
            raise EnergyError(f"this breakdown is already per {self.scope}; call per_inference() on the run's.")
        n = self.samples
        scaled = {k: getattr(self, k) / n for k in (*COMPONENTS, "total", "paper_convention")}
        return replace(
            self, scope="inference", sram_by_memory={m: v / n for m, v in self.sram_by_memory.items()}, **scaled
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary, with the unit and labels for reports."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["sram_by_memory"] = dict(self.sram_by_memory)
        out["modelled"] = list(self.modelled)
        out["not_modelled"] = list(self.not_modelled)
        out["unit"] = "pJ"
        out["total_label"] = f"hardware model, profile {self.profile!r}"
        out["paper_convention_label"] = "paper convention: 4.6 pJ/MAC + 0.9 pJ/AC, compute only"
        return out


def energy_breakdown(counters: Counters, profile: EnergyProfile, hardware: HardwareConfig) -> EnergyBreakdown:
    """Energy of the run that produced ``counters``, by the equations of the module docstring.

    ``hardware`` supplies the clock for leakage; a profile whose SRAM energies were interpolated
    for other memory sizes is refused.
    """
    if not isinstance(profile, EnergyProfile):
        raise EnergyError(f"profile must be an EnergyProfile (see load_profile), got {type(profile).__name__}.")
    if not isinstance(hardware, HardwareConfig):
        raise EnergyError(f"hardware must be a HardwareConfig, got {type(hardware).__name__}.")
    if profile.sram_array_bytes is not None and profile.sram_array_bytes != memory_bytes(hardware):
        raise EnergyError(
            f"profile {profile.name!r} was resolved for other memory sizes ({profile.sram_array_bytes} B) than "
            f"this hardware's ({memory_bytes(hardware)} B); load it again with this hardware."
        )
    c = {
        name: _count(name, getattr(counters, name))
        for name in (
            "spikes",
            "synaptic_ops",
            "macs",
            "neuron_updates",
            "noc_flits",
            "noc_hops_ew",
            "noc_hops_ns",
            "dram_bytes",
            "cycles",
        )
    }
    cores = _count("cores", counters.cores, 1)
    samples = _count("samples", counters.samples, 1)
    sram_by_memory = {}
    for direction in ("read", "write"):
        bits = getattr(counters, f"sram_{direction}_bits")
        unknown = [m for m in bits if m not in MEMORIES]
        if unknown:
            raise EnergyError(
                f"counter sram_{direction}_bits has unknown memory {unknown[0]!r}; memories: {', '.join(MEMORIES)}."
            )
    for m in MEMORIES:
        r = _count(f"sram_read_bits[{m!r}]", counters.sram_read_bits.get(m, 0))
        w = _count(f"sram_write_bits[{m!r}]", counters.sram_write_bits.get(m, 0))
        sram_by_memory[m] = r * profile.sram_read_pj_per_bit[m] + w * profile.sram_write_pj_per_bit[m]
    p = profile
    parts = {
        "synaptic_ops": c["synaptic_ops"] * p.synaptic_op_pj + c["macs"] * p.mac_pj,
        "sram": sum(sram_by_memory.values()),
        "neuron_updates": c["neuron_updates"] * p.neuron_update_pj + c["spikes"] * p.spike_pj,
        "noc": c["noc_flits"] * p.noc_flit_pj + c["noc_hops_ew"] * p.noc_hop_ew_pj + c["noc_hops_ns"] * p.noc_hop_ns_pj,
        "dram": c["dram_bytes"] * 8 * p.dram_pj_per_bit,
        "leakage": p.leakage_mw_per_core * cores * c["cycles"] / hardware.clock.frequency_mhz * 1e3,
    }
    return EnergyBreakdown(
        profile=p.name,
        scope="run",
        samples=samples,
        **parts,
        total=sum(parts.values()),
        paper_convention=PAPER_MAC_PJ * c["macs"] + PAPER_AC_PJ * c["synaptic_ops"],
        sram_by_memory=sram_by_memory,
        modelled=p.components,
        not_modelled=p.not_modelled,
    )


def spikes_per_synapse(counters: Counters, synapses: int) -> float:
    """Spikes reaching each synapse per inference: ``(synaptic_ops + payload_macs) / (samples * synapses)``.

    MBE payloads (intensity-weighted spikes) count as spikes here; host input values do not.

    ``synapses`` is the number of synapses of the network counted as dense-equivalent
    connections (a convolution's shared kernel counts once per output position it reaches).
    """
    n = _count("synapses", synapses, 1)
    events = _count("synaptic_ops", counters.synaptic_ops) + _count("payload_macs", counters.payload_macs)
    return events / (_count("samples", counters.samples, 1) * n)


def break_even(spikes_per_synapse: float) -> dict[str, Any]:
    """Where a run sits against the published SNN energy break-even.

    Dampfhoffer et al. find an SNN saves energy over the equivalent ANN accelerator below 0.15 to
    1.38 spikes per synapse per inference (the bound depends on the hardware's data movement);
    Yan et al. put it below about 5.7 % spike rate at T = 5. The range is closed: a value equal
    to a bound is inside it.

    Returns
    -------
    dict
        ``spikes_per_synapse``, ``range`` ``[low, high]``, ``verdict`` (starting "below the range",
        "inside the range" or "above the range"), ``source`` and ``reference`` (Yan et al.).
    """
    value = _number("spikes_per_synapse", spikes_per_synapse)
    low, high = BREAK_EVEN_SPIKES_PER_SYNAPSE
    if value < low:
        verdict = "below the range: SNN energy advantage likely"
    elif value <= high:
        verdict = "inside the range: SNN energy advantage depends on the hardware's memory and data-movement costs"
    else:
        verdict = "above the range: SNN energy advantage unlikely; an ANN accelerator is likely cheaper"
    return {
        "spikes_per_synapse": value,
        "range": [low, high],
        "verdict": verdict,
        "source": "Dampfhoffer et al., 'Are SNNs really more energy-efficient than ANNs?' (IEEE TETCI 2023, recalled)",
        "reference": "Yan et al.: SNN advantage below about 5.7 % spike rate at T = 5 (0.057 x 5 = 0.285 spikes "
        "per synapse per inference if the rate is per neuron per step)",
    }
