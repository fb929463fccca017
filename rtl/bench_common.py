"""What the two cocotb benches share (:mod:`~spikeforge.rtl.bench_core`, :mod:`~spikeforge.rtl.bench_array`).

Clock start-up, cycle stepping, the "done low at ``end - 1``, high at ``end``" check of a phase,
the scoreboard of membranes and spike rows read through the debug ports, and the results file.
Subclasses say where their mismatches are (:meth:`BenchBase.location`).

Two ways to step the clock: a free-running cocotb clock (the one-core bench: after an edge the
outputs read are those of the cycle that edge ended), or the bench's own (``manual``: the array
benches, whose array runs its steps by itself): :meth:`BenchBase.edges` then raises and lowers
``clk``, and afterwards the bench is inside the next cycle with its register state settled, so
reads (after a ``Timer`` for inputs just written) are that cycle's, and debug reads through the
combinational ports may take any simulated time without a clock edge passing.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

__all__ = ["signed", "BenchBase", "start", "write_results"]


def signed(v: int, bits: int) -> int:
    """``v`` read as a ``bits``-wide two's complement number."""
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


class BenchBase:
    """Cycle stepping, phase-end checks and the debug-port scoreboard of one bench.

    Parameters
    ----------
    dut : cocotb handle
    spec : dict
        The simulator's transactions (``$SPIKEFORGE_COSIM_IN``).
    counters : tuple of str
        The names of what the bench counts as compared (reported beside the mismatches).
    """

    #: Prefix of the signal name in cycle-check mismatches ("array " in the array bench).
    where = ""
    #: The bench drives ``clk`` itself (see the module's docstring; :func:`start` with ``clock=False``).
    manual = False

    def __init__(self, dut, spec: dict, counters: tuple[str, ...]) -> None:
        self.dut, self.spec = dut, spec
        self.cycles = 0
        self.mismatches: list[dict] = []
        self.compared = dict.fromkeys(counters, 0)

    def location(self) -> dict:
        """Fields every mismatch of this bench carries (the one-core bench: its core and piece)."""
        return {"core": None}

    def mismatch(self, step: int, what: str, expected, got, neuron: int | None = None, **where) -> None:
        """Record a difference: step, location (``where`` overrides :meth:`location`), what, values."""
        loc = self.location() | where
        self.mismatches.append({"step": step, **loc, "what": what, "neuron": neuron, "expected": expected, "got": got})

    async def edges(self, k: int) -> None:
        """Advance ``k`` cycles: afterwards the outputs read are those of the last cycle advanced over
        (``manual``: those of the cycle after it, the one now under way)."""
        if k > 0 and self.manual:
            for _ in range(k):
                self.dut.clk.value = 1
                await Timer(5, "ns")
                self.dut.clk.value = 0
                await Timer(5, "ns")
            self.cycles += k
        elif k > 0:
            await ClockCycles(self.dut.clk, k)
            self.cycles += k

    def check(self, t: int, name: str, cycle: int, expect: int) -> None:
        """Compare output ``name`` (read now, as of ``cycle``) with ``expect``; X or Z is a mismatch."""
        val = getattr(self.dut, name).value
        got = int(val) if val.is_resolvable else str(val)
        self.compared["cycle_checks"] += 1
        if got != expect:
            self.mismatch(t, f"{self.where}{name} at cycle {cycle}", expect, got)

    async def expect_end(self, t: int, done: str, end: int) -> None:
        """After cycle 0 of a phase: ``done`` high at 0 when ``end == 0``, else low at ``end - 1``, high at ``end``."""
        self.check(t, done, 0, int(end == 0))
        if end > 1:
            await self.edges(end - 1)
            self.check(t, done, end - 1, 0)
        if end > 0:
            await self.edges(1)
            self.check(t, done, end, 1)

    async def score_state(
        self,
        t: int,
        n: int,
        membranes: list,
        spikes: list | None,
        positions: list | None = None,
        hist_bits: int = 1,
        **where,
    ) -> None:
        """Read the membranes (and the spike row of step ``t``, ``n`` entries of ``hist_bits`` each:
        an mbe piece's payloads) through the debug ports and score them.

        ``positions[j]`` is the membrane position (``word * lanes + lane``) of local neuron ``j``
        (the skewed banks of a product piece); local order when absent."""
        dut, sp = self.dut, self.spec
        lanes, vb = sp["lanes"], sp["v_bits"]
        got_v = []
        for g in range(-(-len(membranes) // lanes)):
            dut.dbg_maddr.value = g
            await Timer(1, "ps")  # the read ports are combinational
            word = int(dut.dbg_v.value)
            got_v += [signed((word >> (lane * vb)) & ((1 << vb) - 1), vb) for lane in range(lanes)]
        if positions is not None:
            got_v = [got_v[q] for q in positions]
        for j, (e, g_) in enumerate(zip(membranes, got_v)):
            self.compared["membranes"] += 1
            if e != g_:
                self.mismatch(t, "membrane", e, g_, neuron=j, **where)
        if spikes is not None:
            dut.dbg_haddr.value = t % sp["history"]
            await Timer(1, "ps")
            word = int(dut.dbg_h.value)
            for j, e in enumerate(spikes[:n]):
                self.compared["spikes"] += 1
                got = (word >> (j * hist_bits)) & ((1 << hist_bits) - 1)
                got = signed(got, hist_bits) if hist_bits > 1 else got
                if e != got:
                    self.mismatch(t, "payload" if hist_bits > 1 else "spike", e, got, neuron=j, **where)

    async def score_sums(self, t: int, sums: list, positions: list, **where) -> None:
        """Read the running sums, maxima and shift words through ``dbg_saddr`` and score them: element
        ``j`` of the simulator's ``sums`` is at position ``positions[j]`` (``word * lanes + lane``)."""
        dut, sp = self.dut, self.spec
        lanes, vb = sp["lanes"], sp["v_bits"]
        words: dict[int, int] = {}
        for j, (e, q) in enumerate(zip(sums, positions)):
            w = q // lanes
            if w not in words:
                dut.dbg_saddr.value = w
                await Timer(1, "ps")
                words[w] = int(dut.dbg_s.value)
            got = signed((words[w] >> ((q % lanes) * vb)) & ((1 << vb) - 1), vb)
            self.compared["sums"] += 1
            if e != got:
                self.mismatch(t, "running sum, maximum or shift word", e, got, neuron=j, **where)


async def start(dut, inputs: tuple[str, ...], clock: bool = True) -> None:
    """Drive ``inputs`` low, start the clock low and wait for its first rising edge (``clock=False``:
    raise it once and lower it; the bench steps the clock itself from then on)."""
    for name in inputs:
        getattr(dut, name).value = 0
    if not clock:
        dut.clk.value = 0
        await Timer(1, "ns")
        dut.clk.value = 1
        await Timer(5, "ns")
        dut.clk.value = 0
        await Timer(5, "ns")
        return
    await Timer(1, "ns")
    # low first: an X -> 1 clock at time 0 is a posedge that would load X into every register
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
    await RisingEdge(dut.clk)


def write_results(bench: BenchBase, wall: float) -> None:
    """The counts, cycles, wall time and mismatches, to ``$SPIKEFORGE_COSIM_OUT``."""
    with open(os.environ["SPIKEFORGE_COSIM_OUT"], "w") as fh:
        out = {"compared": bench.compared, "cycles": bench.cycles, "wall_s": wall, "mismatches": bench.mismatches}
        json.dump(out, fh)
