"""A compiled program: pieces, plan, routing and memory images for one graph on one array.

Saved as a directory: ``graph.npz`` (the SNN graph, ``docs/formats.md``) and ``program.npz``
(format ``spikeforge-program`` version 1: the hardware description and its fingerprint, every
piece with its slots and neurons, the plan, the routing tables). Memory images are derived from
the two on demand (:meth:`Program.images`), and written as files by ``spikeforge map --images``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikeforge.models.errors import FileFormatError
from spikeforge.models.graph import SNNGraph
from spikeforge.models.graph_io import load_graph, save_graph
from spikeforge.models.npzio import read_npz, write_npz

from .connectivity import slot_source_count
from .hardware import HardwareConfig, HardwareError, parse_hardware
from .images import MemoryImage, index_table_bits, param_image, routing_image, slot_image, synapse_image
from .pieces import (
    SHIFT_BITS,
    Piece,
    Slot,
    first_arrivals,
    mbe_param_words,
    mbe_shifts,
    pool_count_bits,
    product_sum_bits,
)
from .plan import Plan, traffic_cost
from .routing import HOST, RoutingTable

__all__ = ["FORMAT", "VERSION", "Program", "MappingReport", "save_program", "load_program"]

FORMAT = "spikeforge-program"
VERSION = 1


@dataclass(frozen=True)
class MappingReport:
    """Figures of a mapping, all computed from the program (see :meth:`Program.report`)."""

    mode: str
    pieces: int
    cores_used: int
    cores: int
    max_live_pieces: int
    neurons_per_core: dict[int, int]
    synapses_per_core: dict[int, int]
    synapse_occupancy: dict[int, float]
    membrane_occupancy: dict[int, float]
    packets_per_spike: float
    average_hops: float
    dram_bytes_per_inference: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary."""
        return dict(self.__dict__)

    def format(self) -> str:
        """Human-readable table."""
        lines = [
            f"mode {self.mode}: {self.pieces} pieces on {self.cores_used} of {self.cores} cores "
            f"(at most {self.max_live_pieces} live at once)",
            (
                f"expected packets per spike {self.packets_per_spike:.2f}, "
                f"average hop distance {self.average_hops:.2f}, "
                if self.mode != "rounds"
                else "no packets on the mesh (rounds mode: spikes go through DRAM), "
            )
            + f"DRAM bytes per inference {self.dram_bytes_per_inference:,}",
            "core  neurons  synapses  synapse SRAM  membrane SRAM  (peak over the pieces it holds)",
        ]
        for k in sorted(self.neurons_per_core):
            lines.append(
                f"{k:4d}  {self.neurons_per_core[k]:7d}  {self.synapses_per_core[k]:8d}  "
                f"{self.synapse_occupancy[k]:11.1%}  {self.membrane_occupancy[k]:12.1%}"
            )
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Program:
    """A graph mapped onto a hardware description."""

    graph: SNNGraph
    hardware: HardwareConfig
    pieces: tuple[Piece, ...]
    plan: Plan
    routing: dict[int, RoutingTable]
    traffic: dict[tuple[int, int], int]

    def core_xy(self, piece: int) -> tuple[int, int]:
        """``(x, y)`` of the core holding ``piece`` (x is the column)."""
        y, x = divmod(int(self.plan.core[piece]), self.hardware.array.cols)
        return x, y

    def stored_synapses(self, piece: Piece) -> int:
        """Weights (or running counts) a piece stores."""
        total = 0
        for slot in piece.slots:
            proj = self.graph.projections[slot.proj]
            if slot.kind == "conv":
                total += slot.rows * (piece.geometry["c1"] - piece.geometry["c0"])  # the kernel block
            elif slot.kind in ("dense", "pool_dense"):
                total += slot.rows * piece.n
            elif slot.kind == "identity":
                total += 1
            elif slot.kind == "product_a":
                g = piece.geometry
                total += (g["i1"] - g["i0"] + g["j1"] - g["j0"]) * proj.a_index.shape[2]
            elif slot.kind == "pool":
                total += piece.n * proj.kernel**2
        return total

    def synapse_bits(self, piece: Piece) -> int:
        """Synapse SRAM bits a piece occupies (weights in whole lane words, or counts: ``count_bits``
        each, ``v_bits`` for the running payload sums of a product with an MBE operand)."""
        core = self.hardware.core
        if piece.kind == "maxpool":
            proj = self.graph.projections[piece.slots[0].proj]
            return self.stored_synapses(piece) * pool_count_bits(self.graph, proj, core)
        if self.has_product(piece):
            proj = self.graph.projections[piece.slots[0].proj]
            return self.stored_synapses(piece) * product_sum_bits(self.graph, proj, core)
        return piece.words * core.lanes * core.weight_bits

    @staticmethod
    def has_product(piece: Piece) -> bool:
        """True for a piece fed by a product (a ``product`` piece, or an ``mbe`` or ``output`` piece
        whose slots are the two operands of section 4.3)."""
        return any(s.kind == "product_a" for s in piece.slots)

    def images(self, piece_id: int) -> dict[str, MemoryImage]:
        """Bit-exact memory images of one piece (synapse, params, slots, routing)."""
        piece = self.pieces[piece_id]
        out = {
            "synapse": synapse_image(self.graph, piece, self.hardware),
            "params": param_image(self.graph, piece, self.hardware),
            "slots": slot_image(self.graph, piece, self.hardware),
        }
        table = self.routing.get(piece_id)
        entries = table.entries if table is not None else np.zeros((0, 5), np.int64)
        out["routing"] = routing_image(entries, self.plan.core, self.hardware)
        return out

    def param_words(self, piece: Piece) -> int:
        """Parameter SRAM words of a piece (an ``mbe`` piece adds its tables)."""
        if piece.kind == "mbe":
            pop = self.graph.population(piece.population)
            return mbe_param_words(piece.n, pop.bases, self.graph.timesteps)
        return piece.n

    def state_words(self, piece: Piece) -> int:
        """Membrane SRAM words of a piece: one per neuron, none for partial pieces; an MBE piece uses
        ``N + 1`` blocks of ``ceil(n/lanes) * lanes`` words (``X``, then one block per basis)."""
        if piece.kind == "partial":
            return 0
        if piece.kind == "mbe":
            lanes = self.hardware.core.lanes
            return (self.graph.population(piece.population).bases + 1) * -(-piece.n // lanes) * lanes
        return piece.n

    def image_bytes(self, piece: Piece) -> int:
        """Bytes loaded from DRAM to make a piece resident (synapse rows, params, slots, routing, and
        for a piece fed by a product its index tables, ``images.index_table_bits``)."""
        core = self.hardware.core
        params = self.param_words(piece) * 3 * core.v_bits
        slots = len(piece.slots) * 128
        table = self.routing.get(piece.id)
        routing = 0 if table is None else len(table.entries) * 64
        # the neuron index table is the encoder's: none in rounds mode (no routing table either)
        tables = index_table_bits(self.graph, piece, self.hardware, encoder=self.plan.mode != "rounds")
        return -(-(self.synapse_bits(piece) + params + slots + routing + tables) // 8)

    def dram_bytes_per_inference(self) -> int:
        """DRAM traffic of one inference by the plan's mode (``docs/architecture.md`` section 7)."""
        if self.plan.mode == "resident":
            return 0
        if self.plan.mode == "swap":
            return sum(self.image_bytes(p) for p in self.pieces)
        return sum(len(self.round_steps(p)) * sum(self.round_traffic(p)) for p in self.pieces)

    def round_steps(self, piece: Piece) -> range:
        """Steps at which a piece runs a round (rounds mode): from the first arrival of its inputs
        (its input window, or earlier for an MBE population with early inputs), and for neuron,
        product and MBE pieces until its firing window closes."""
        w = self.graph.schedule()[piece.population]
        first = first_arrivals(self.graph)[piece.population]
        T = self.graph.timesteps
        if piece.kind in ("neuron", "product", "mbe"):
            return range(first, w.out_start + T)
        return range(first, w.in_start + T)

    def round_traffic(self, piece: Piece) -> tuple[int, int]:
        """Bytes a piece moves in one round (rounds mode): ``(in, out)``.

        In: its image, its state (membranes, running counts) and one bit per source neuron its
        slots need; out: its state and one bit per spike it may emit.
        """
        core = self.hardware.core
        state = self.state_words(piece) * core.v_bits
        if piece.kind == "maxpool" or self.has_product(piece):
            state += self.synapse_bits(piece)
        if piece.kind == "mbe" and mbe_shifts(self.graph.population(piece.population)):
            state += piece.n * SHIFT_BITS  # the units' output shifts (section 4.5)
        # an MBE source's output is a v_bits payload per unit, not a spike bit
        spikes_in = sum(
            slot_source_count(self.graph, piece, s) * (core.v_bits if self._payloads(s.src) else 1) for s in piece.slots
        )
        spikes_out = 0 if piece.kind in ("partial", "output") else piece.n
        if self._payloads(piece.population):
            spikes_out *= core.v_bits
        return self.image_bytes(piece) + -(-(state + spikes_in) // 8), -(-(state + spikes_out) // 8)

    def _payloads(self, population: str) -> bool:
        """True where a population emits ``v_bits`` payloads: MBE units and max-pools of them."""
        pop = self.graph.population(population)
        return pop.kind == "mbe" or (pop.kind == "maxpool" and self.graph.graded(population))

    def report(self) -> MappingReport:
        """Cores used, occupancy and traffic figures of the mapping."""
        core = self.hardware.core
        neurons: dict[int, int] = {}
        synapses: dict[int, int] = {}
        syn_occ: dict[int, float] = {}
        mem_occ: dict[int, float] = {}
        for p in self.pieces:
            k = int(self.plan.core[p.id])
            n = 0 if p.kind == "partial" else p.n
            neurons[k] = max(neurons.get(k, 0), n)
            synapses[k] = max(synapses.get(k, 0), self.stored_synapses(p))
            syn_occ[k] = max(syn_occ.get(k, 0.0), self.synapse_bits(p) / core.synapse_bits)
            mem_occ[k] = max(mem_occ.get(k, 0.0), max(p.n, self.state_words(p)) / core.neurons)
        flits = sum(int(t.flits_per_neuron.sum()) for s, t in self.routing.items() if s != HOST)
        spiking = sum(p.n for p in self.pieces if p.kind in ("neuron", "product", "maxpool", "mbe"))
        hop_sum, weight = traffic_cost(self.plan.core, self.traffic, self.hardware.array.cols)
        live = self.plan.live
        starts = np.unique(live[:, 0])
        max_live = int(max(((live[:, 0] <= t) & (t < live[:, 1])).sum() for t in starts)) if len(live) else 0
        return MappingReport(
            mode=self.plan.mode,
            pieces=len(self.pieces),
            cores_used=len(neurons),
            cores=self.hardware.array.cores,
            max_live_pieces=max_live,
            neurons_per_core=neurons,
            synapses_per_core=synapses,
            synapse_occupancy=syn_occ,
            membrane_occupancy=mem_occ,
            packets_per_spike=flits / spiking if spiking else 0.0,
            average_hops=hop_sum / weight if weight else 0.0,
            dram_bytes_per_inference=self.dram_bytes_per_inference(),
        )


def save_program(program: Program, directory: str | Path) -> None:
    """Write ``graph.npz`` and ``program.npz`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_graph(program.graph, directory / "graph.npz")
    arrays: dict[str, np.ndarray] = {
        "plan.core": program.plan.core,
        "plan.live": program.plan.live,
    }
    pieces = []
    for p in program.pieces:
        arrays[f"piece.{p.id}.neurons"] = p.neurons
        pieces.append(
            {
                "population": p.population,
                "kind": p.kind,
                "root": p.root,
                "slice": p.slice_index,
                "geometry": p.geometry,
                "slots": [s.__dict__ for s in p.slots],
            }
        )
    for sid, table in program.routing.items():
        arrays[f"routing.{sid}"] = table.entries
    header = {
        "format": FORMAT,
        "version": VERSION,
        "hardware": program.hardware.to_dict(),
        "fingerprint": program.hardware.fingerprint(),
        "mode": program.plan.mode,
        "timeline": [list(t) for t in program.plan.timeline],
        "pieces": pieces,
        "traffic": [[s, d, v] for (s, d), v in program.traffic.items()],
    }
    write_npz(directory / "program.npz", header, arrays)


def load_program(directory: str | Path, hardware: HardwareConfig | None = None) -> Program:
    """Read a program directory; with ``hardware``, refuse a program compiled for other hardware."""
    directory = Path(directory)
    graph = load_graph(directory / "graph.npz")
    header, arrays = read_npz(directory / "program.npz", expected_format=FORMAT)
    if header.get("version") != VERSION:
        raise FileFormatError(
            f"{directory}: program format version {header.get('version')!r} is not supported (this SpikeForge "
            f"reads {VERSION}); map the model again."
        )
    try:
        hw = parse_hardware(header["hardware"], f"{directory}/program.npz")
        if hw.fingerprint() != header["fingerprint"]:
            raise FileFormatError(
                f"{directory}: the stored hardware does not match its fingerprint; the file was edited."
            )
        if hardware is not None and hardware.fingerprint() != hw.fingerprint():
            raise HardwareError(
                f"{directory} was compiled for another hardware description; map the model again for this one."
            )
        pieces = tuple(
            Piece(
                i,
                e["population"],
                e["kind"],
                arrays[f"piece.{i}.neurons"],
                tuple(Slot(**s) for s in e["slots"]),
                e["root"],
                e["slice"],
                dict(e["geometry"]),
            )
            for i, e in enumerate(header["pieces"])
        )
        routing = {
            int(k.split(".", 1)[1]): RoutingTable(int(k.split(".", 1)[1]), v)
            for k, v in arrays.items()
            if k.startswith("routing.")
        }
        plan = Plan(
            header["mode"], arrays["plan.core"], arrays["plan.live"], tuple(tuple(t) for t in header["timeline"])
        )
        traffic = {(int(s), int(d)): int(v) for s, d, v in header["traffic"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{directory}: malformed program ({exc}).") from None
    return Program(graph, hw, pieces, plan, routing, traffic)
