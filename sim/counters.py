"""Activity counters of a simulation: what the energy model multiplies by per-event costs.

All counts are integers for one whole run (sum over samples); divide by the number of samples
for per-inference figures. Memories are named as in ``docs/architecture.md`` section 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MEMORIES", "Counters"]

#: On-core memories whose traffic is counted, in bits.
MEMORIES = ("synapse", "membrane", "params", "history", "routing", "counts")


@dataclass
class Counters:
    """Totals of one run.

    Attributes
    ----------
    spikes : int
        Spikes emitted by neuron, product and max-pool pieces.
    synaptic_ops : int
        Accumulations of a weight (or running count) into a membrane, one per synapse reached.
    macs : int
        Multiply-accumulates of graded events (host input values and MBE payloads), one per
        synapse reached.
    payload_macs : int
        The part of ``macs`` delivered from MBE units: intensity-weighted spikes, which count as
        synaptic events for the break-even figure.
    neuron_updates : int
        Neuron (and accumulator, max-pool unit) updates in phase F.
    sram_read_bits, sram_write_bits : dict of str to int
        Bits read from / written to each memory of :data:`MEMORIES`.
    noc_flits : int
        Flits injected into the mesh (spikes, graded values, partial sums).
    noc_hops_ew, noc_hops_ns : int
        Router-to-router link traversals, east-west and north-south.
    noc_stall_cycles : int
        Router output-port cycles in which a flit waited for that port and did not move.
    dram_bytes : int
        Bytes moved between DRAM and the cores.
    cycles : int
        Clock cycles of the whole run (the critical path).
    cores : int
        Cores of the array (for leakage).
    samples : int
        Inferences in the run.
    """

    spikes: int = 0
    synaptic_ops: int = 0
    macs: int = 0
    payload_macs: int = 0
    neuron_updates: int = 0
    sram_read_bits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MEMORIES, 0))
    sram_write_bits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MEMORIES, 0))
    noc_flits: int = 0
    noc_hops_ew: int = 0
    noc_hops_ns: int = 0
    noc_stall_cycles: int = 0
    dram_bytes: int = 0
    cycles: int = 0
    cores: int = 1
    samples: int = 1

    @property
    def noc_hops(self) -> int:
        """All link traversals."""
        return self.noc_hops_ew + self.noc_hops_ns
