"""cocotb bench of the whole core array (started by :func:`spikeforge.rtl.cosim.cosim_array`).

The bench is the host and the barrier controller; everything between (encoders, routers, event
FIFOs, cores) is the RTL's own. Per step ``t``, from the simulator's trace (``$SPIKEFORGE_COSIM_IN``):

* phase I: ``start`` at cycle 0; the host driver offers its flits one per cycle from cycle 0 on
  router (0, 0)'s west port, and each must be taken at the cycle the simulator's host injected it;
  the array's ``i_done`` must be low at ``I(t) - 1`` and high at ``I(t)``;
* phase P, at the steps the simulator has one: ``start`` with ``pphase`` at cycle 0; partial
  pieces scan and send their sums through the mesh to their roots; ``i_done`` low at
  ``P(t) - 1``, high at ``P(t)``;
* phase F: ``fire`` at cycle 0; ``f_done`` low at ``F(t) - 1``, high at ``F(t)``;
* barrier: for every core, every membrane, the spike row of ``t`` where its piece fired, its busy
  cycles and the number of flits its encoder sent, exactly.

Results go to ``$SPIKEFORGE_COSIM_OUT`` as in :mod:`spikeforge.rtl.bench_core`.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

__all__ = ["array_bench"]


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


class _ArrayBench:
    def __init__(self, dut, spec: dict) -> None:
        self.dut, self.spec = dut, spec
        self.cycles = 0
        self.mismatches: list[dict] = []
        self.compared = {
            "host_flits": 0,
            "cycle_checks": 0,
            "membranes": 0,
            "spikes": 0,
            "busy": 0,
            "packets": 0,
            "steps": 0,
        }

    def mismatch(self, step, what, expected, got, core=None, neuron=None) -> None:
        self.mismatches.append(
            {"step": step, "core": core, "what": what, "neuron": neuron, "expected": expected, "got": got}
        )

    async def edges(self, k: int) -> None:
        if k > 0:
            await ClockCycles(self.dut.clk, k)
            self.cycles += k

    def pack(self, fields: list[int]) -> int:
        word, shift = 0, 0
        for v, width in zip(fields, self.spec["out_widths"]):
            word |= (v & ((1 << width) - 1)) << shift
            shift += width
        return word

    async def check(self, t: int, name: str, cycle: int, expect: int) -> None:
        got = int(getattr(self.dut, name).value)
        self.compared["cycle_checks"] += 1
        if got != expect:
            self.mismatch(t, f"array {name} at cycle {cycle}", expect, got)

    async def phase_i(self, st: dict) -> None:
        dut, t = self.dut, st["t"]
        dut.step.value = t
        dut.start.value = 1
        dut.host_done.value = int(not st["host"])
        c = 0  # inputs written now apply to cycle c; after the next edge the outputs read are c's
        for fl in st["host"]:
            dut.host__payload.value = self.pack(fl[1:])
            dut.host__valid.value = 1
            while True:
                await self.edges(1)
                dut.start.value = 0
                taken = int(dut.host__ready.value)
                c += 1
                if taken:
                    break
                if c > fl[0]:
                    break
            self.compared["host_flits"] += 1
            if c - 1 != fl[0]:
                self.mismatch(t, "host flit taken at cycle", fl[0], c - 1)
        dut.host__valid.value = 0
        dut.host_done.value = 1
        if c == 0:
            await self.edges(1)
            dut.start.value = 0
            c = 1
        end = st["phase_i"]
        if end <= 0:
            if c == 1:
                await self.check(t, "i_done", 0, 1)
            return
        if end - 1 < c - 1:
            self.mismatch(t, "phase I ends before the host finished", end, c - 1)
            return
        await self.edges(end - c)
        await self.check(t, "i_done", end - 1, 0)
        await self.edges(1)
        await self.check(t, "i_done", end, 1)

    async def phase_p(self, st: dict) -> None:
        """Phase P (section 4.2): partial pieces scan and send their sums; it ends at ``P(t)``."""
        dut, t, end = self.dut, st["t"], st["phase_p"]
        dut.step.value = t
        dut.start.value = 1
        dut.pphase.value = 1
        dut.host_done.value = 1
        await self.edges(1)
        dut.start.value = 0
        dut.pphase.value = 0
        await self.check(t, "i_done", 0, int(end == 0))
        if end > 1:
            await self.edges(end - 1)
            await self.check(t, "i_done", end - 1, 0)
        if end > 0:
            await self.edges(1)
            await self.check(t, "i_done", end, 1)
        await self.edges(self.spec["barrier"])

    async def phase_f(self, st: dict) -> None:
        dut, t, f = self.dut, st["t"], st["phase_f"]
        dut.fire.value = 1
        await self.edges(1)
        dut.fire.value = 0
        await self.check(t, "f_done", 0, int(f == 0))
        if f > 1:
            await self.edges(f - 1)
            await self.check(t, "f_done", f - 1, 0)
        if f > 0:
            await self.edges(1)
            await self.check(t, "f_done", f, 1)

    async def barrier(self, st: dict) -> None:
        dut, sp, t = self.dut, self.spec, st["t"]
        lanes, vb = sp["lanes"], sp["v_bits"]
        for core in st["cores"]:
            k, n = core["core"], core["n"]
            dut.dbg_core.value = k
            got_v = []
            for g in range(-(-n // lanes)):
                dut.dbg_maddr.value = g
                await Timer(1, "ps")
                word = int(dut.dbg_v.value)
                got_v += [_signed((word >> (lane * vb)) & ((1 << vb) - 1), vb) for lane in range(lanes)]
            for j, (e, g_) in enumerate(zip(core["membranes"], got_v[:n])):
                self.compared["membranes"] += 1
                if e != g_:
                    self.mismatch(t, "membrane", e, g_, core=k, neuron=j)
            if core["spikes"] is not None:
                dut.dbg_haddr.value = t % sp["history"]
                await Timer(1, "ps")
                word = int(dut.dbg_h.value)
                for j, e in enumerate(core["spikes"]):
                    self.compared["spikes"] += 1
                    if e != (word >> j) & 1:
                        self.mismatch(t, "spike", e, (word >> j) & 1, core=k, neuron=j)
            for name, key in (("dbg_busy", "busy"), ("dbg_sent", "sent")):
                got = int(getattr(dut, name).value)
                self.compared["busy" if key == "busy" else "packets"] += 1
                if got != core[key]:
                    what = "busy cycles of the step" if key == "busy" else "flits sent in phase I"
                    self.mismatch(t, what, core[key], got, core=k)
        await self.edges(sp["barrier"])
        self.compared["steps"] += 1


@cocotb.test()
async def array_bench(dut):
    """Replay the host's flits of every step on the array and score it against the simulator."""
    with open(os.environ["SPIKEFORGE_COSIM_IN"]) as fh:
        spec = json.load(fh)
    bench = _ArrayBench(dut, spec)
    names = ("rst", "start", "pphase", "fire", "host__valid", "host__payload", "host_done", "step")
    for name in names + ("dbg_core", "dbg_maddr", "dbg_haddr"):
        getattr(dut, name).value = 0
    await Timer(1, "ns")
    # low first: an X -> 1 clock at time 0 is a posedge that would load X into every register
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
    await RisingEdge(dut.clk)
    t0 = time.perf_counter()
    for st in spec["steps"]:
        await bench.phase_i(st)
        if st["phase_p"] > 0:
            await bench.phase_p(st)
        await bench.phase_f(st)
        await bench.barrier(st)
    wall = time.perf_counter() - t0
    with open(os.environ["SPIKEFORGE_COSIM_OUT"], "w") as fh:
        json.dump(
            {"compared": bench.compared, "cycles": bench.cycles, "wall_s": wall, "mismatches": bench.mismatches}, fh
        )
